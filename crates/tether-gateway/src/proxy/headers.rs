//! The header fields a proxy forwards, drops and adds (RFC 9110 §7.6, RFC 7239).

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// Whether the client reached the gateway over TLS: a request extension set by the
/// connection task, read for `X-Forwarded-Proto` and `Forwarded: proto=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClientScheme {
    /// `true` for https/wss.
    pub(crate) secure: bool,
}

impl ClientScheme {
    fn name(self) -> &'static str {
        if self.secure { "https" } else { "http" }
    }
}

/// RFC 9110 §7.6.1: "a proxy or gateway MUST ... remove any header or trailer fields that are
/// listed in the Connection field value", and intermediaries remove "Proxy-Connection,
/// Keep-Alive, TE, Transfer-Encoding, and Upgrade" too. Proxy-Authorization and
/// Proxy-Authenticate are addressed to this proxy (RFC 9110 §11.7).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// The end-to-end fields of `headers`: without the hop-by-hop ones and without those the
/// `Connection` field names.
pub(crate) fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if !HOP_BY_HOP.contains(name) && !named.contains(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Adds what the upstream needs to know about the client: `X-Forwarded-For` (appended to a
/// list the client may have brought), `X-Forwarded-Proto`, `X-Forwarded-Host` (the `Host`
/// the client asked for) and the standard `Forwarded` (RFC 7239 §4, appended likewise).
/// Call it on the forwarded fields before `Host` is replaced with the upstream's.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, scheme: ClientScheme) {
    let client = client.to_canonical();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    append_list(headers, "x-forwarded-for", &client.to_string());
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(scheme.name()),
    );
    if let Some(host) = &host
        && let Ok(v) = HeaderValue::from_str(host)
    {
        headers.insert(HeaderName::from_static("x-forwarded-host"), v);
    }
    // RFC 7239 §6: an IPv6 node is "[" IPv6address "]" and, with its ":", needs quoting
    // (RFC 7239 §4: values are tokens or quoted-strings); so does a host with a port.
    let node = match client {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let mut element = format!("for={node};proto={}", scheme.name());
    if let Some(host) = host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"')) {
        element.push_str(&format!(";host=\"{host}\""));
    }
    append_list(headers, "forwarded", &element);
}

/// Appends `item` to the comma-separated list in `name`, folding earlier lines into one.
fn append_list(headers: &mut HeaderMap, name: &'static str, item: &str) {
    let name = HeaderName::from_static(name);
    let mut items: Vec<String> = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    items.push(item.to_string());
    if let Ok(v) = HeaderValue::from_str(&items.join(", ")) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn rfc_9110_section_7_6_1_hop_by_hop_fields_are_dropped() {
        let kept = end_to_end(&map(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("cookie", "a=1"),
            ("accept", "text/html"),
        ]));
        let names: Vec<&str> = kept.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["cookie", "accept"]);
    }

    #[test]
    fn rfc_7239_forwarded_and_x_forwarded_fields_are_added() {
        let mut h = map(&[
            ("host", "app.example:8080"),
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        add_forwarded(
            &mut h,
            "127.0.0.1".parse().unwrap(),
            ClientScheme { secure: true },
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app.example:8080");
        assert_eq!(
            h["forwarded"],
            "for=203.0.113.9, for=127.0.0.1;proto=https;host=\"app.example:8080\""
        );
        let mut v6 = HeaderMap::new();
        add_forwarded(
            &mut v6,
            "::1".parse().unwrap(),
            ClientScheme { secure: false },
        );
        assert_eq!(v6["forwarded"], "for=\"[::1]\";proto=http");
        let mut mapped = HeaderMap::new();
        add_forwarded(
            &mut mapped,
            "::ffff:10.0.0.1".parse().unwrap(),
            ClientScheme { secure: false },
        );
        assert_eq!(mapped["x-forwarded-for"], "10.0.0.1");
    }
}
