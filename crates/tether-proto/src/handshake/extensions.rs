//! The `Sec-WebSocket-Extensions` header grammar (RFC 6455 §9.1), shared by both roles.

use super::http::{is_tchar, is_token};

/// One element of an extension list: the name and the parameters, values unquoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Extension {
    pub(crate) name: String,
    pub(crate) params: Vec<(String, Option<String>)>,
}

/// The header value breaks the grammar of RFC 6455 §9.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError;

/// Parses every `Sec-WebSocket-Extensions` line into one list, in order.
///
/// RFC 6455 §9.1: "Note that like other HTTP header fields, this header field MAY be split or
/// combined across multiple lines."
pub(crate) fn parse<'a>(
    lines: impl Iterator<Item = &'a [u8]>,
) -> Result<Vec<Extension>, SyntaxError> {
    let mut out = Vec::new();
    for line in lines {
        parse_line(line, &mut out)?;
    }
    Ok(out)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Result<u8, SyntaxError> {
        let b = self.peek().ok_or(SyntaxError)?;
        self.i += 1;
        Ok(b)
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Result<String, SyntaxError> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        if self.i == start {
            return Err(SyntaxError);
        }
        // Token bytes are ASCII.
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// RFC 9110 §5.6.4: `quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE`, with
    /// `qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text` and
    /// `quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )`. Returns the unescaped content.
    fn quoted_string(&mut self) -> Result<Vec<u8>, SyntaxError> {
        if self.next()? != b'"' {
            return Err(SyntaxError);
        }
        let mut v = Vec::new();
        loop {
            match self.next()? {
                b'"' => return Ok(v),
                b'\\' => match self.next()? {
                    e @ (b'\t' | b' '..=b'~' | 0x80..=0xff) => v.push(e),
                    _ => return Err(SyntaxError),
                },
                b @ (b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff) => v.push(b),
                _ => return Err(SyntaxError),
            }
        }
    }
}

// RFC 6455 §9.1:
//   extension-list = 1#extension
//   extension = extension-token *( ";" extension-param )
//   extension-param = token [ "=" (token | quoted-string) ]
// with optional whitespace around the separators; empty list elements are ignored
// (RFC 9110 §5.6.1.2).
fn parse_line(s: &[u8], out: &mut Vec<Extension>) -> Result<(), SyntaxError> {
    let mut c = Cursor { s, i: 0 };
    loop {
        c.skip_ows();
        match c.peek() {
            None => return Ok(()),
            Some(b',') => {
                c.i += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = c.token()?;
        let mut params = Vec::new();
        c.skip_ows();
        while c.peek() == Some(b';') {
            c.i += 1;
            c.skip_ows();
            let param = c.token()?;
            c.skip_ows();
            let mut value = None;
            if c.peek() == Some(b'=') {
                c.i += 1;
                c.skip_ows();
                let v = if c.peek() == Some(b'"') {
                    let v = c.quoted_string()?;
                    // RFC 6455 §9.1: "When using the quoted-string syntax variant, the value
                    // after quoted-string unescaping MUST conform to the 'token' ABNF."
                    if !is_token(&v) {
                        return Err(SyntaxError);
                    }
                    String::from_utf8_lossy(&v).into_owned()
                } else {
                    c.token()?
                };
                value = Some(v);
                c.skip_ows();
            }
            params.push((param, value));
        }
        match c.peek() {
            None => {}
            Some(b',') => c.i += 1,
            Some(_) => return Err(SyntaxError),
        }
        out.push(Extension { name, params });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Vec<Extension>, SyntaxError> {
        parse(std::iter::once(s.as_bytes()))
    }

    fn ext(name: &str, params: &[(&str, Option<&str>)]) -> Extension {
        Extension {
            name: name.into(),
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
                .collect(),
        }
    }

    #[test]
    fn grammar_accepts_lists_params_and_quoted_values() {
        let got = parse_str(
            " foo , permessage-deflate ;client_max_window_bits; \
             server_max_window_bits = \"10\",,bar",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                ext("foo", &[]),
                ext(
                    "permessage-deflate",
                    &[
                        ("client_max_window_bits", None),
                        ("server_max_window_bits", Some("10"))
                    ]
                ),
                ext("bar", &[]),
            ]
        );
        assert_eq!(
            parse_str("x; a=\"\\b\\c\"").unwrap(),
            vec![ext("x", &[("a", Some("bc"))])]
        );
        assert_eq!(parse_str("").unwrap(), vec![]);
        let lines: [&[u8]; 2] = [b"a", b"b; c"];
        assert_eq!(
            parse(lines.into_iter()).unwrap(),
            vec![ext("a", &[]), ext("b", &[("c", None)])]
        );
    }

    #[test]
    fn grammar_rejects_broken_tokens() {
        for bad in [
            "permessage-deflate; =x",
            "permessage-deflate;",
            "permessage-deflate; a=",
            "permessage-deflate; a b",
            "permessage deflate",
            "; a",
            "x; a=\"unterminated",
            "x; a=\"not a token\"",
            "x; a=\"comma,inside\"",
            "x; a=\"\"",
            "x; a=\"\\",
            "x; a=b=c",
            "x\"y\"",
            "é",
        ] {
            assert_eq!(parse_str(bad), Err(SyntaxError), "{bad:?}");
        }
    }

    /// A parameter as generated: name, value, whether to quote the value.
    type GenParam = (String, Option<String>, bool);

    /// Writes a list back in header syntax, quoting the values chosen by `quote`.
    fn serialize(list: &[(String, Vec<GenParam>)]) -> String {
        let mut out = Vec::new();
        for (name, params) in list {
            let mut e = name.clone();
            for (p, v, quote) in params {
                e.push_str(" ; ");
                e.push_str(p);
                match (v, quote) {
                    (Some(v), true) => e.push_str(&format!("=\"{v}\"")),
                    (Some(v), false) => e.push_str(&format!("={v}")),
                    (None, _) => {}
                }
            }
            out.push(e);
        }
        out.join(" ,")
    }

    use proptest::arbitrary::any;
    use proptest::collection::vec;
    use proptest::option;

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
            let _ = parse(std::iter::once(&bytes[..]));
        }

        #[test]
        fn serialized_lists_parse_back(
            list in vec(
                (
                    "[a-z][a-z-]{0,8}",
                    vec(("[a-z_]{1,8}", option::of("[0-9a-z]{1,4}"), any::<bool>()), 0..4),
                ),
                1..4,
            )
        ) {
            let parsed = parse_str(&serialize(&list)).unwrap();
            let want: Vec<Extension> = list
                .iter()
                .map(|(n, ps)| Extension {
                    name: n.clone(),
                    params: ps.iter().map(|(p, v, _)| (p.clone(), v.clone())).collect(),
                })
                .collect();
            proptest::prop_assert_eq!(parsed, want);
        }
    }
}
