//! What a request says beyond its path: query parameters and the bearer token.

use std::net::SocketAddr;

use http::HeaderMap;

/// The gateway's own address of the connection a request came on (a request extension set
/// by `crate::connection`): what the client connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LocalAddr(pub(crate) SocketAddr);

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
/// `+` stays `+` (paths and RFC 3986 queries), unless `plus_as_space`.
pub(crate) fn percent_decode(text: &str, plus_as_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded value of the first query parameter called `name`
/// (`application/x-www-form-urlencoded` rules, as browsers send them).
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true)? == name).then(|| percent_decode(value, true))
        })
        .next()
        .flatten()
}

/// `query` without its parameters called `name`; `None` when nothing is left. The other
/// parameters keep their order and their encoding, byte for byte.
pub(crate) fn query_without(query: Option<&str>, name: &str) -> Option<String> {
    let kept: Vec<&str> = query?
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(key, _)| key);
            percent_decode(key, true).is_none_or(|key| key != name)
        })
        .collect();
    let kept = kept.join("&");
    (!kept.is_empty()).then_some(kept)
}

/// Removes an `Authorization: Bearer` field, the gateway's own credential
/// ([`bearer_token`]); other schemes stay.
pub(crate) fn remove_bearer(headers: &mut HeaderMap) {
    let is_bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
    if is_bearer {
        headers.remove(http::header::AUTHORIZATION);
    }
}

/// The credential a client presents: `Authorization: Bearer <token>`, or else the `token`
/// query parameter (browsers cannot set headers on a WebSocket).
pub(crate) fn bearer_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        })
        .filter(|t| !t.is_empty());
    from_header.or_else(|| query_param(query, "token").filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_refuses_broken_ones() {
        assert_eq!(percent_decode("a%20b", false).as_deref(), Some("a b"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("%2e%2E", false).as_deref(), Some(".."));
        assert_eq!(percent_decode("%2", false), None);
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%ff", false), None);
    }

    #[test]
    fn drops_one_query_parameter_and_keeps_the_rest_as_sent() {
        let q = |s| query_without(Some(s), "token");
        assert_eq!(q("token=abc").as_deref(), None);
        assert_eq!(q("a=1&token=abc&b=%20").as_deref(), Some("a=1&b=%20"));
        assert_eq!(q("to%6Ben=abc&x").as_deref(), Some("x"));
        assert_eq!(q("tokens=1&token").as_deref(), Some("tokens=1"));
        assert_eq!(query_without(None, "token"), None);
    }

    #[test]
    fn removes_only_a_bearer_authorization() {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, "bearer x".parse().unwrap());
        remove_bearer(&mut h);
        assert!(h.is_empty());
        h.insert(http::header::AUTHORIZATION, "Basic eDp5".parse().unwrap());
        remove_bearer(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn finds_query_parameters() {
        let q = Some("a=1&token=abc%2Bdef&key=x+y&flag");
        assert_eq!(query_param(q, "token").as_deref(), Some("abc+def"));
        assert_eq!(query_param(q, "key").as_deref(), Some("x y"));
        assert_eq!(query_param(q, "flag").as_deref(), Some(""));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param(None, "token"), None);
    }

    #[test]
    fn bearer_from_header_first_then_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            bearer_token(&headers, Some("token=q")).as_deref(),
            Some("q")
        );
        headers.insert("authorization", "Bearer  h ".parse().unwrap());
        assert_eq!(
            bearer_token(&headers, Some("token=q")).as_deref(),
            Some("h")
        );
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&headers, None), None);
    }
}
