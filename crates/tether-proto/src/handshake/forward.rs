//! The opening handshake through an intermediary: a client's offers forwarded to an upstream
//! server, and the upstream's answer checked against them (RFC 6455 §4.1, RFC 7692 §7.1).

use super::client::{ClientRequest, OfferedDeflate, PendingHandshake, build_request};
use super::error::HandshakeError;
use super::extensions::Extension;
use super::negotiation;
use super::request::Request;
use super::server::{AcceptOptions, check_origin, validate};
use crate::Config;

/// What a client offered in its opening handshake, as an intermediary forwards it upstream:
/// its subprotocols, and those of its permessage-deflate offers this engine can carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedOffers {
    key: Vec<u8>,
    subprotocols: Vec<String>,
    deflate: Vec<Extension>,
}

/// Validates a client's request as [`super::accept`] does (RFC 6455 §4.2.1, the `Origin`
/// policy of `options`) and returns the offers to forward upstream.
///
/// Subprotocols are kept as offered, in order (the upstream chooses). Only permessage-deflate
/// offers that a server could accept are kept (RFC 7692 §5.1), and none when
/// `config.deflate` is `None`: the intermediary must be able to speak whatever the upstream
/// accepts on both legs. Other extensions are not forwarded.
pub fn forwarded_offers(
    request: &Request,
    config: &Config,
    options: &AcceptOptions,
) -> Result<ForwardedOffers, HandshakeError> {
    let checked = validate(request)?;
    check_origin(request, options)?;
    let subprotocols = checked
        .subprotocols
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let deflate = if config.deflate.is_some() {
        negotiation::forwardable_offers(&checked.extensions)
    } else {
        Vec::new()
    };
    Ok(ForwardedOffers {
        key: checked.key.to_vec(),
        subprotocols,
        deflate,
    })
}

impl ForwardedOffers {
    /// The client's subprotocols, most preferred first.
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }

    /// The `Sec-WebSocket-Extensions` value to forward, if any offer is left.
    pub fn extensions_header(&self) -> Option<String> {
        (!self.deflate.is_empty()).then(|| negotiation::offers_header(&self.deflate))
    }

    /// The `Sec-WebSocket-Accept` value of the client's `101` (RFC 6455 §4.2.2 step 5).
    pub fn client_accept(&self) -> String {
        super::accept_key(&self.key)
    }
}

/// Builds the upstream request for a forwarded handshake: `req` with `offers` (its own
/// subprotocols are ignored). The [`PendingHandshake`] checks the upstream's answer against
/// the client's offers: a subprotocol the client offered, a permessage-deflate answer valid
/// for one of its offers. `key` is 16 fresh random bytes, as for [`super::client_request`].
pub fn forwarding_request(
    req: &ClientRequest,
    offers: &ForwardedOffers,
    key: [u8; 16],
) -> (Vec<u8>, PendingHandshake) {
    build_request(
        req,
        &offers.subprotocols,
        offers.extensions_header(),
        OfferedDeflate::Forwarded(offers.deflate.clone()),
        key,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{ClientHandshakeError, parse_request};

    const BASE: &str = "GET /chat HTTP/1.1\r\nHost: proxy.example\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n";

    fn offers(extra: &str, config: &Config) -> Result<ForwardedOffers, HandshakeError> {
        let head = format!("{BASE}{extra}\r\n");
        let (request, _) = parse_request(head.as_bytes(), config).unwrap().unwrap();
        forwarded_offers(&request, config, &AcceptOptions::default())
    }

    fn answer(
        pending: &PendingHandshake,
        extra: &str,
    ) -> Result<(Option<String>, bool), ClientHandshakeError> {
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
            pending.expected_accept()
        );
        let (r, _) = pending
            .parse_response(head.as_bytes(), &Config::default())?
            .unwrap();
        Ok((r.subprotocol, r.deflate.is_some()))
    }

    #[test]
    fn offers_are_forwarded_and_the_answer_checked_against_them() {
        let o = offers(
            "Sec-WebSocket-Protocol: chat, superchat\r\n\
             Sec-WebSocket-Extensions: x-custom, permessage-deflate; client_max_window_bits\r\n",
            &Config::default(),
        )
        .unwrap();
        assert_eq!(o.subprotocols(), ["chat", "superchat"]);
        assert_eq!(
            o.extensions_header().as_deref(),
            Some("permessage-deflate; client_max_window_bits")
        );
        // RFC 6455 §1.3 example key.
        assert_eq!(o.client_accept(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let (bytes, pending) = forwarding_request(
            &ClientRequest::new("upstream:9000", "/base/chat"),
            &o,
            [7; 16],
        );
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("GET /base/chat HTTP/1.1\r\nHost: upstream:9000\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Protocol: chat, superchat\r\n"));
        assert!(text.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        ));
        assert_eq!(
            answer(
                &pending,
                "Sec-WebSocket-Protocol: superchat\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n"
            ),
            Ok((Some("superchat".into()), true))
        );
        assert!(matches!(
            answer(&pending, "Sec-WebSocket-Protocol: other\r\n"),
            Err(ClientHandshakeError::SubprotocolNotOffered { .. })
        ));
        assert!(matches!(
            answer(&pending, "Sec-WebSocket-Extensions: x-custom\r\n"),
            Err(ClientHandshakeError::ExtensionNotOffered { .. })
        ));
    }

    #[test]
    fn without_compression_nothing_is_offered_and_nothing_accepted() {
        let config = Config {
            deflate: None,
            ..Config::default()
        };
        let o = offers("Sec-WebSocket-Extensions: permessage-deflate\r\n", &config).unwrap();
        assert_eq!(o.extensions_header(), None);
        let (bytes, pending) = forwarding_request(&ClientRequest::new("u", "/"), &o, [7; 16]);
        assert!(!String::from_utf8(bytes).unwrap().contains("Extensions"));
        assert!(matches!(
            answer(&pending, "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
            Err(ClientHandshakeError::ExtensionNotOffered { .. })
        ));
    }

    #[test]
    fn a_bad_client_request_is_refused_as_accept_would() {
        let head = "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Version: 13\r\n\r\n";
        let (request, _) = parse_request(head.as_bytes(), &Config::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            forwarded_offers(&request, &Config::default(), &AcceptOptions::default()),
            Err(HandshakeError::MissingKey)
        );
    }
}
