//! Small HTTP/1.1 pieces shared by both roles: tokens, comma-separated lists, field
//! validation, status lines and header serialization.

/// `tchar`: a byte allowed in a token.
///
/// RFC 9110 §5.6.2: `tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
/// "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// RFC 9110 §5.6.2: `token = 1*tchar`.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Whether `v` may be sent as a field value.
///
/// RFC 9110 §5.5: "Field values containing CR, LF, or NUL characters are invalid and
/// dangerous"; `field-vchar = VCHAR / obs-text`, with SP and HTAB allowed inside. Other
/// control characters are refused too.
pub(crate) fn is_field_value(v: &[u8]) -> bool {
    v.iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

/// Whether `b` may appear in an authority (`Host`): RFC 3986 §3.2.2 unreserved, pct-encoded
/// and sub-delims characters, `:` before the port, and the brackets of an IP literal.
pub(crate) fn is_authority_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b)
}

/// Removes optional whitespace around a value or a list element.
///
/// RFC 9110 §5.6.3: `OWS = *( SP / HTAB )`.
pub(crate) fn trim_ows(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

/// The values of every field line named `name` (ASCII case-insensitive), in order.
///
/// RFC 9110 §5.1: "Field names are case-insensitive".
pub(crate) fn values<'a, 'n>(
    headers: &'a [(String, Vec<u8>)],
    name: &'n str,
) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// The non-empty elements of a comma-separated list spread over several field lines.
///
/// RFC 9110 §5.3: several lines of one list-based field are one list joined by commas;
/// RFC 9110 §5.6.1.2: "a recipient MUST parse and ignore a reasonable number of empty list
/// elements". Only for lists whose elements never contain quoted commas.
pub(crate) fn list_elements<'a>(
    lines: impl Iterator<Item = &'a [u8]> + 'a,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    lines
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Whether any element of the list equals `token`, ASCII case-insensitively.
pub(crate) fn list_contains<'a>(lines: impl Iterator<Item = &'a [u8]> + 'a, token: &str) -> bool {
    list_elements(lines).any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

/// Field values for a message: lossily decoded, trimmed, joined with `, `.
pub(crate) fn join_lossy(values: &[&[u8]]) -> String {
    let parts: Vec<_> = values
        .iter()
        .map(|v| String::from_utf8_lossy(trim_ows(v)))
        .collect();
    parts.join(", ")
}

/// The standard reason phrase of a status code, or `"Unknown"`.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Appends `name: value\r\n`. The caller has checked both parts.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether an application-supplied header can be written safely: a token name and a value
/// without CR, LF, NUL or other controls (no header injection), not one of `reserved`.
pub(crate) fn is_writable_header(name: &str, value: &str, reserved: &[&str]) -> bool {
    is_token(name.as_bytes())
        && is_field_value(value.as_bytes())
        && !reserved.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Builds a complete error response: status line, `Connection`, `Content-Type`,
/// `Content-Length`, the given (already checked) headers, then the body.
pub(crate) fn error_response(
    status: u16,
    connection: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Vec<u8> {
    // RFC 9112 §4: status-code = 3DIGIT.
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    push_header(&mut out, "Connection", connection.as_bytes());
    push_header(&mut out, "Content-Type", b"text/plain; charset=utf-8");
    push_header(
        &mut out,
        "Content-Length",
        body.len().to_string().as_bytes(),
    );
    for (name, value) in headers {
        push_header(&mut out, name, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(is_token(b"permessage-deflate"));
        assert!(is_token(b"x!#$%&'*+-.^_`|~9"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a,b"));
        assert!(!is_token(b"a=b"));
        assert!(!is_token("é".as_bytes()));
    }

    #[test]
    fn field_values() {
        assert!(is_field_value(b"text/plain; q=1\tx"));
        assert!(is_field_value(&[0x80, 0xff]));
        assert!(!is_field_value(b"a\r\nX-Injected: 1"));
        assert!(!is_field_value(b"a\0"));
        assert!(!is_field_value(b"a\x7f"));
    }

    #[test]
    fn trimming() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
    }

    #[test]
    fn lists_over_several_lines() {
        let h = vec![
            ("Connection".to_string(), b"keep-alive, , ".to_vec()),
            ("Other".to_string(), b"upgrade".to_vec()),
            ("connection".to_string(), b" Upgrade ".to_vec()),
        ];
        let all: Vec<&[u8]> = list_elements(values(&h, "CONNECTION")).collect();
        assert_eq!(all, vec![&b"keep-alive"[..], &b"Upgrade"[..]]);
        assert!(list_contains(values(&h, "connection"), "upgrade"));
        assert!(!list_contains(values(&h, "connection"), "close"));
    }

    #[test]
    fn error_response_has_framing_headers() {
        let r = error_response(404, "close", &[("X-A", "b")], "nope");
        let text = String::from_utf8(r).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 404 Not Found\r\nConnection: close\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 4\r\nX-A: b\r\n\r\nnope"
        );
        let bad = String::from_utf8(error_response(7, "close", &[], "")).unwrap();
        assert!(bad.starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
    }
}
