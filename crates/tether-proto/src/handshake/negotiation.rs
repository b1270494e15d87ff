//! permessage-deflate negotiation (RFC 7692 §5 and §7.1): the server's choice among the
//! client's offers, the client's offer, and the client's check of the server's answer.

use super::error::ClientHandshakeError;
use super::extensions::Extension;
use crate::deflate::{DeflateConfig, DeflateParams};

/// The registered name of the extension (RFC 7692 §7).
pub(crate) const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// Window bits when a `*_max_window_bits` parameter is absent: RFC 7692 §7.1.2.1 "Absence of
/// this parameter ... indicates that the client can receive messages compressed using an LZ77
/// sliding window of up to 32,768 bytes".
const DEFAULT_WINDOW_BITS: u8 = 15;

/// Which message carries the parameters: they differ on `client_max_window_bits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Offer,
    Response,
}

/// permessage-deflate parameters as received, before negotiation.
#[derive(Debug, Default)]
struct Received {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

struct ParamError {
    param: String,
    problem: &'static str,
}

/// RFC 7692 §7.1.2.1: "This parameter has a decimal integer value without leading zeroes
/// between 8 to 15, inclusive".
fn window_bits(v: &str) -> Option<u8> {
    match v {
        "8" => Some(8),
        "9" => Some(9),
        "10" => Some(10),
        "11" => Some(11),
        "12" => Some(12),
        "13" => Some(13),
        "14" => Some(14),
        "15" => Some(15),
        _ => None,
    }
}

// RFC 7692 §5.1: a server MUST decline (and a client MUST fail on) "an extension parameter not
// defined for use in an offer [response]", "an extension parameter with an invalid value",
// and "multiple extension parameters with the same name".
fn parse_params(
    params: &[(String, Option<String>)],
    direction: Direction,
) -> Result<Received, ParamError> {
    let mut r = Received::default();
    for (name, value) in params {
        let err = |problem| {
            Err(ParamError {
                param: name.clone(),
                problem,
            })
        };
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" => {
                // RFC 7692 §7.1.1.1 and §7.1.1.2: the parameter "has no value".
                if value.is_some() {
                    return err("takes no value");
                }
                let flag = if lower.starts_with("server") {
                    &mut r.server_no_context_takeover
                } else {
                    &mut r.client_no_context_takeover
                };
                if *flag {
                    return err("duplicated");
                }
                *flag = true;
            }
            "server_max_window_bits" => {
                if r.server_max_window_bits.is_some() {
                    return err("duplicated");
                }
                match value.as_deref().and_then(window_bits) {
                    Some(bits) => r.server_max_window_bits = Some(bits),
                    None => return err("needs a value from 8 to 15"),
                }
            }
            "client_max_window_bits" => {
                if r.client_max_window_bits.is_some() {
                    return err("duplicated");
                }
                // RFC 7692 §7.1.2.2: in an offer "This parameter has no value or a decimal
                // integer value without leading zeroes between 8 to 15"; a response limits
                // the client's window, so it needs a value.
                r.client_max_window_bits = match (value.as_deref(), direction) {
                    (None, Direction::Offer) => Some(None),
                    (None, Direction::Response) => return err("needs a value in a response"),
                    (Some(v), _) => match window_bits(v) {
                        Some(bits) => Some(Some(bits)),
                        None => return err("needs a value from 8 to 15"),
                    },
                };
            }
            _ => return err("unknown parameter"),
        }
    }
    Ok(r)
}

/// The outcome of a server's negotiation: what both ends use, and the header value to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Agreement {
    pub(crate) params: DeflateParams,
    pub(crate) response: String,
}

/// Server side: accepts the first acceptable permessage-deflate offer, if any. Other
/// extensions are ignored (RFC 6455 §9.1: the server picks the extensions it supports).
pub(crate) fn negotiate(offers: &[Extension], config: &DeflateConfig) -> Option<Agreement> {
    offers
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
        .find_map(|offer| accept_offer(offer, config))
}

fn accept_offer(offer: &Extension, config: &DeflateConfig) -> Option<Agreement> {
    // RFC 7692 §5.1: decline an offer with unknown, invalid or duplicated parameters.
    let p = parse_params(&offer.params, Direction::Offer).ok()?;
    let our_server_bits = config.server_max_window_bits.clamp(8, 15);
    let our_client_bits = config.client_max_window_bits.clamp(8, 15);

    // RFC 7692 §7.1.1.1: "A server accepts an extension negotiation offer that includes the
    // "server_no_context_takeover" extension parameter by including [it] in the corresponding
    // extension negotiation response"; it "MAY include" it even when not offered.
    let server_no_context_takeover =
        p.server_no_context_takeover || config.server_no_context_takeover;
    // RFC 7692 §7.1.1.2: "A server MAY include the "client_no_context_takeover" extension
    // parameter in an extension negotiation response" (echoed when offered so that both ends
    // agree).
    let client_no_context_takeover =
        p.client_no_context_takeover || config.client_no_context_takeover;

    // RFC 7692 §7.1.2.1: "A server accepts an extension negotiation offer with this parameter
    // by including the "server_max_window_bits" extension parameter in the extension
    // negotiation response to send back to the client with the same or smaller value as the
    // offer", and "MAY include" it when not offered.
    let (server_bits, send_server_bits) = match p.server_max_window_bits {
        Some(offered) => (offered.min(our_server_bits), true),
        None => (our_server_bits, our_server_bits < DEFAULT_WINDOW_BITS),
    };

    let (client_bits, send_client_bits) = match p.client_max_window_bits {
        // RFC 7692 §7.1.2.2: "If a received extension negotiation offer doesn't have the
        // "client_max_window_bits" extension parameter, the corresponding extension
        // negotiation response to the offer MUST NOT include the "client_max_window_bits"
        // extension parameter." Such a client may use a 32 KiB window; if our configuration
        // allows less, decline the offer (the limit bounds our memory) rather than ignore it.
        None if our_client_bits < DEFAULT_WINDOW_BITS => return None,
        None => (DEFAULT_WINDOW_BITS, false),
        Some(None) => (our_client_bits, our_client_bits < DEFAULT_WINDOW_BITS),
        // RFC 7692 §7.1.2.2: the server may "use this value ... by including the
        // "client_max_window_bits" extension parameter in the corresponding extension
        // negotiation response to the offer with a value equal to or smaller than the
        // received value". Always answering it leaves no doubt about the client's window.
        Some(Some(offered)) => (offered.min(our_client_bits), true),
    };

    let mut response = String::from(PERMESSAGE_DEFLATE);
    if server_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if client_no_context_takeover {
        response.push_str("; client_no_context_takeover");
    }
    if send_server_bits {
        response.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    if send_client_bits {
        response.push_str(&format!("; client_max_window_bits={client_bits}"));
    }
    Some(Agreement {
        params: DeflateParams {
            server_no_context_takeover,
            client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        },
        response,
    })
}

/// Client side: the `Sec-WebSocket-Extensions` value offering permessage-deflate per `config`.
pub(crate) fn client_offer(config: &DeflateConfig) -> String {
    let server_bits = config.server_max_window_bits.clamp(8, 15);
    let client_bits = config.client_max_window_bits.clamp(8, 15);
    let mut offer = String::from(PERMESSAGE_DEFLATE);
    if config.server_no_context_takeover {
        offer.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        offer.push_str("; client_no_context_takeover");
    }
    if server_bits < DEFAULT_WINDOW_BITS {
        offer.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    // RFC 7692 §7.1.2.2: "A client MAY include the "client_max_window_bits" extension parameter
    // in an extension negotiation offer", without a value to say it supports the parameter,
    // with one to promise a smaller window.
    if client_bits < DEFAULT_WINDOW_BITS {
        offer.push_str(&format!("; client_max_window_bits={client_bits}"));
    } else {
        offer.push_str("; client_max_window_bits");
    }
    offer
}

/// Client side: checks the server's extension list against what we offered (`None`: nothing)
/// and returns the permessage-deflate parameters in force, if the server accepted it.
pub(crate) fn check_response(
    extensions: &[Extension],
    offered: Option<&DeflateConfig>,
) -> Result<Option<DeflateParams>, ClientHandshakeError> {
    let mut agreed = None;
    for e in extensions {
        // RFC 6455 §4.1: "If the response includes a |Sec-WebSocket-Extensions| header field
        // and this header field indicates the use of an extension that was not present in the
        // client's handshake ..., the client MUST _Fail the WebSocket Connection_."
        let offered = offered.filter(|_| e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE));
        let Some(config) = offered else {
            return Err(ClientHandshakeError::ExtensionNotOffered {
                name: e.name.clone(),
            });
        };
        if agreed.is_some() {
            return Err(ClientHandshakeError::DuplicateExtension {
                name: e.name.clone(),
            });
        }
        agreed = Some(accept_response(e, config)?);
    }
    Ok(agreed)
}

/// Intermediary side: the client's permessage-deflate offers that this engine can carry out,
/// in order. Other extensions, and offers a server would have to decline (RFC 7692 §5.1:
/// unknown, invalid or duplicated parameters), are left out, so an upstream can only accept
/// what the intermediary can speak on both legs.
pub(crate) fn forwardable_offers(offers: &[Extension]) -> Vec<Extension> {
    offers
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
        .filter(|e| parse_params(&e.params, Direction::Offer).is_ok())
        .cloned()
        .collect()
}

/// The `Sec-WebSocket-Extensions` value listing `offers` (RFC 6455 §9.1 grammar). Values are
/// tokens (window bits), written without quotes.
pub(crate) fn offers_header(offers: &[Extension]) -> String {
    let mut out = String::new();
    for (i, offer) in offers.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&offer.name);
        for (name, value) in &offer.params {
            out.push_str("; ");
            out.push_str(name);
            if let Some(v) = value {
                out.push('=');
                out.push_str(v);
            }
        }
    }
    out
}

/// Intermediary side: checks the upstream's extension list against the client's forwarded
/// `offers` (as a client checks an answer to its own offer, RFC 7692 §7.1) and returns the
/// parameters in force. The answer must accept one of the offers; the first offer it is a
/// valid answer to decides the parameters the answer leaves implicit.
pub(crate) fn check_forwarded_response(
    extensions: &[Extension],
    offers: &[Extension],
) -> Result<Option<DeflateParams>, ClientHandshakeError> {
    let mut agreed = None;
    for e in extensions {
        // RFC 6455 §4.1: an extension "that was not present in the client's handshake" fails
        // the connection.
        if offers.is_empty() || !e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
            return Err(ClientHandshakeError::ExtensionNotOffered {
                name: e.name.clone(),
            });
        }
        if agreed.is_some() {
            return Err(ClientHandshakeError::DuplicateExtension {
                name: e.name.clone(),
            });
        }
        let mut first_error = None;
        for offer in offers {
            match accept_forwarded(e, offer) {
                Ok(params) => {
                    agreed = Some(params);
                    break;
                }
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        if agreed.is_none() {
            return Err(first_error.expect("offers is not empty"));
        }
    }
    Ok(agreed)
}

/// Checks `response` as an answer to one forwarded `offer`.
fn accept_forwarded(
    response: &Extension,
    offer: &Extension,
) -> Result<DeflateParams, ClientHandshakeError> {
    let o = parse_params(&offer.params, Direction::Offer).map_err(|e| {
        ClientHandshakeError::InvalidExtensionParameter {
            param: e.param,
            problem: e.problem,
        }
    })?;
    // RFC 7692 §7.1.2.2: "If a received extension negotiation offer doesn't have the
    // "client_max_window_bits" extension parameter, the corresponding extension negotiation
    // response to the offer MUST NOT include the "client_max_window_bits" extension parameter."
    if o.client_max_window_bits.is_none()
        && response
            .params
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("client_max_window_bits"))
    {
        return Err(ClientHandshakeError::InvalidExtensionParameter {
            param: "client_max_window_bits".into(),
            problem: "not offered",
        });
    }
    let as_config = DeflateConfig {
        server_no_context_takeover: o.server_no_context_takeover,
        client_no_context_takeover: o.client_no_context_takeover,
        server_max_window_bits: o.server_max_window_bits.unwrap_or(DEFAULT_WINDOW_BITS),
        client_max_window_bits: o
            .client_max_window_bits
            .flatten()
            .unwrap_or(DEFAULT_WINDOW_BITS),
        ..DeflateConfig::default()
    };
    accept_response(response, &as_config)
}

fn accept_response(
    response: &Extension,
    config: &DeflateConfig,
) -> Result<DeflateParams, ClientHandshakeError> {
    let invalid = |param: &str, problem| ClientHandshakeError::InvalidExtensionParameter {
        param: param.to_string(),
        problem,
    };
    // RFC 7692 §5.1: fail on unknown, invalid or duplicated parameters.
    let p = parse_params(&response.params, Direction::Response)
        .map_err(|e| invalid(&e.param, e.problem))?;
    let our_server_bits = config.server_max_window_bits.clamp(8, 15);
    let our_client_bits = config.client_max_window_bits.clamp(8, 15);

    // RFC 7692 §7.1.1.1: the server accepts our server_no_context_takeover by including it;
    // a response without it does not answer our offer.
    if config.server_no_context_takeover && !p.server_no_context_takeover {
        return Err(invalid(
            "server_no_context_takeover",
            "requested but not granted",
        ));
    }
    // RFC 7692 §7.1.2.1: the server accepts our server_max_window_bits "by including the
    // "server_max_window_bits" extension parameter in the extension negotiation response ...
    // with the same or smaller value as the offer".
    let server_bits = match p.server_max_window_bits {
        Some(bits) if bits > our_server_bits => {
            return Err(invalid("server_max_window_bits", "larger than requested"));
        }
        Some(bits) => bits,
        None if our_server_bits < DEFAULT_WINDOW_BITS => {
            return Err(invalid(
                "server_max_window_bits",
                "requested but not granted",
            ));
        }
        None => DEFAULT_WINDOW_BITS,
    };
    // RFC 7692 §7.1.2.2: the response's value is "equal to or smaller than the received
    // value" (15 when we offered the parameter without one). Without it, the server accepts
    // any window, and we keep ours.
    let client_bits = match p.client_max_window_bits.flatten() {
        Some(bits) if bits > our_client_bits => {
            return Err(invalid("client_max_window_bits", "larger than offered"));
        }
        Some(bits) => bits,
        None => our_client_bits,
    };
    Ok(DeflateParams {
        server_no_context_takeover: p.server_no_context_takeover,
        // RFC 7692 §7.1.1.2: a response with it forbids context takeover; without it, we
        // still keep a promise made in our offer.
        client_no_context_takeover: p.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::extensions::parse;

    fn parse_str(s: &str) -> Vec<Extension> {
        parse(std::iter::once(s.as_bytes())).unwrap()
    }

    fn cfg(snct: bool, cnct: bool, s: u8, c: u8) -> DeflateConfig {
        DeflateConfig {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: s,
            client_max_window_bits: c,
            ..DeflateConfig::default()
        }
    }

    fn negotiate_str(s: &str, config: &DeflateConfig) -> Option<Agreement> {
        negotiate(&parse_str(s), config)
    }

    fn params(snct: bool, cnct: bool, s: u8, c: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: s,
            client_max_window_bits: c,
        }
    }

    #[test]
    fn autobahn_offers_with_the_default_config() {
        let d = DeflateConfig::default();
        let cases = [
            (
                "permessage-deflate",
                "permessage-deflate",
                params(false, false, 15, 15),
            ),
            (
                "permessage-deflate; client_no_context_takeover",
                "permessage-deflate; client_no_context_takeover",
                params(false, true, 15, 15),
            ),
            (
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; server_max_window_bits=8",
                params(false, false, 8, 15),
            ),
            (
                "permessage-deflate; client_no_context_takeover; server_max_window_bits=15",
                "permessage-deflate; client_no_context_takeover; server_max_window_bits=15",
                params(false, true, 15, 15),
            ),
            (
                "permessage-deflate; server_no_context_takeover; client_max_window_bits",
                "permessage-deflate; server_no_context_takeover",
                params(true, false, 15, 15),
            ),
        ];
        for (offer, response, p) in cases {
            let a = negotiate_str(offer, &d).unwrap();
            assert_eq!(a.response, response, "{offer}");
            assert_eq!(a.params, p, "{offer}");
        }
    }

    #[test]
    fn config_limits_are_applied() {
        let d = cfg(true, true, 10, 12);
        let a = negotiate_str("permessage-deflate; client_max_window_bits", &d).unwrap();
        assert_eq!(
            a.response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12"
        );
        assert_eq!(a.params, params(true, true, 10, 12));
        let a = negotiate_str(
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits=14",
            &d,
        )
        .unwrap();
        assert_eq!(a.params, params(true, true, 9, 12));
        // Offered smaller than our limit: we answer the offered value.
        let a = negotiate_str(
            "permessage-deflate; client_max_window_bits=10",
            &DeflateConfig::default(),
        )
        .unwrap();
        assert_eq!(a.response, "permessage-deflate; client_max_window_bits=10");
        assert_eq!(a.params, params(false, false, 15, 10));
    }

    #[test]
    fn first_acceptable_of_several_offers_wins() {
        let d = cfg(false, false, 15, 10);
        // The first offer cannot be limited to our client window: declined.
        let a = negotiate_str(
            "permessage-deflate; server_max_window_bits=9, \
             permessage-deflate; client_max_window_bits; server_max_window_bits=12, \
             permessage-deflate; client_max_window_bits",
            &d,
        )
        .unwrap();
        assert_eq!(a.params, params(false, false, 12, 10));
        assert_eq!(
            a.response,
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"
        );
        // Nothing acceptable: no extension.
        assert_eq!(negotiate_str("permessage-deflate", &d), None);
    }

    #[test]
    fn invalid_params_are_declined() {
        let d = DeflateConfig::default();
        for offer in [
            "permessage-deflate; unknown",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(negotiate_str(offer, &d), None, "{offer}");
        }
        let a = negotiate_str(
            "foo, permessage-deflate; x=1, PerMessage-Deflate; Server_Max_Window_Bits=\"11\"",
            &d,
        )
        .unwrap();
        assert_eq!(a.params, params(false, false, 11, 15));
    }

    #[test]
    fn client_offer_follows_the_config() {
        let mut d = DeflateConfig::default();
        assert_eq!(
            client_offer(&d),
            "permessage-deflate; client_max_window_bits"
        );
        d.server_no_context_takeover = true;
        d.client_no_context_takeover = true;
        d.server_max_window_bits = 9;
        d.client_max_window_bits = 11;
        assert_eq!(
            client_offer(&d),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9; client_max_window_bits=11"
        );
    }

    fn check(
        response: &str,
        offered: Option<&DeflateConfig>,
    ) -> Result<Option<DeflateParams>, ClientHandshakeError> {
        check_response(&parse_str(response), offered)
    }

    fn bad_param(param: &str, problem: &'static str) -> ClientHandshakeError {
        ClientHandshakeError::InvalidExtensionParameter {
            param: param.into(),
            problem,
        }
    }

    #[test]
    fn client_accepts_valid_answers() {
        let d = DeflateConfig::default();
        assert_eq!(check("", Some(&d)), Ok(None));
        assert_eq!(
            check("permessage-deflate", Some(&d)),
            Ok(Some(params(false, false, 15, 15)))
        );
        assert_eq!(
            check(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=9; client_max_window_bits=10",
                Some(&d)
            ),
            Ok(Some(params(true, true, 9, 10)))
        );
        let d = cfg(false, true, 12, 11);
        assert_eq!(
            check("permessage-deflate; server_max_window_bits=12", Some(&d)),
            Ok(Some(params(false, true, 12, 11)))
        );
    }

    #[test]
    fn client_rejects_answers_that_do_not_match_the_offer() {
        let d = DeflateConfig::default();
        assert_eq!(
            check("permessage-deflate", None),
            Err(ClientHandshakeError::ExtensionNotOffered {
                name: "permessage-deflate".into()
            })
        );
        assert_eq!(
            check("foo", Some(&d)),
            Err(ClientHandshakeError::ExtensionNotOffered { name: "foo".into() })
        );
        assert_eq!(
            check("permessage-deflate, permessage-deflate", Some(&d)),
            Err(ClientHandshakeError::DuplicateExtension {
                name: "permessage-deflate".into()
            })
        );
        assert_eq!(
            check("permessage-deflate; x", Some(&d)),
            Err(bad_param("x", "unknown parameter"))
        );
        assert_eq!(
            check("permessage-deflate; client_max_window_bits", Some(&d)),
            Err(bad_param(
                "client_max_window_bits",
                "needs a value in a response"
            ))
        );
        assert_eq!(
            check("permessage-deflate; server_max_window_bits=20", Some(&d)),
            Err(bad_param(
                "server_max_window_bits",
                "needs a value from 8 to 15"
            ))
        );
        assert_eq!(
            check(
                "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                Some(&d)
            ),
            Err(bad_param("client_no_context_takeover", "duplicated"))
        );
        let d = cfg(true, false, 10, 9);
        assert_eq!(
            check("permessage-deflate; server_max_window_bits=10", Some(&d)),
            Err(bad_param(
                "server_no_context_takeover",
                "requested but not granted"
            ))
        );
        assert_eq!(
            check("permessage-deflate; server_no_context_takeover", Some(&d)),
            Err(bad_param(
                "server_max_window_bits",
                "requested but not granted"
            ))
        );
        assert_eq!(
            check(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
                Some(&d)
            ),
            Err(bad_param("server_max_window_bits", "larger than requested"))
        );
        assert_eq!(
            check(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; \
                 client_max_window_bits=10",
                Some(&d)
            ),
            Err(bad_param("client_max_window_bits", "larger than offered"))
        );
    }

    #[test]
    fn our_own_offer_negotiates_with_our_own_server() {
        let client = cfg(false, true, 11, 15);
        let server = cfg(false, false, 15, 9);
        let a = negotiate_str(&client_offer(&client), &server).unwrap();
        let got = check(&a.response, Some(&client)).unwrap().unwrap();
        assert_eq!(got, a.params);
        assert_eq!(got, params(false, true, 11, 9));
    }

    #[test]
    fn forwarded_offers_keep_only_valid_permessage_deflate() {
        let offers = forwardable_offers(&parse_str(
            "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits, \
             permessage-deflate; foo=1, permessage-deflate; server_max_window_bits=10",
        ));
        assert_eq!(
            offers_header(&offers),
            "permessage-deflate; client_max_window_bits, \
             permessage-deflate; server_max_window_bits=10"
        );
    }

    #[test]
    fn rfc_7692_section_7_1_forwarded_answer_must_match_an_offer() {
        let offers = forwardable_offers(&parse_str(
            "permessage-deflate; server_max_window_bits=10, permessage-deflate",
        ));
        // The answer to the second offer: no window limit on the server.
        let params = check_forwarded_response(&parse_str("permessage-deflate"), &offers)
            .unwrap()
            .unwrap();
        assert_eq!(params.server_max_window_bits, 15);
        // The answer to the first offer.
        let params = check_forwarded_response(
            &parse_str("permessage-deflate; server_max_window_bits=9"),
            &offers,
        )
        .unwrap()
        .unwrap();
        assert_eq!(params.server_max_window_bits, 9);
        assert_eq!(params.client_max_window_bits, 15);
        // RFC 7692 §7.1.2.2: no client_max_window_bits in any offer, none in the answer.
        assert!(matches!(
            check_forwarded_response(
                &parse_str("permessage-deflate; client_max_window_bits=10"),
                &offers
            ),
            Err(ClientHandshakeError::InvalidExtensionParameter { .. })
        ));
        // Nothing offered: any extension in the answer fails.
        assert!(matches!(
            check_forwarded_response(&parse_str("permessage-deflate"), &[]),
            Err(ClientHandshakeError::ExtensionNotOffered { .. })
        ));
        assert_eq!(check_forwarded_response(&[], &offers), Ok(None));
    }

    #[test]
    fn forwarded_client_window_comes_from_the_answer_or_the_offer() {
        let offers =
            forwardable_offers(&parse_str("permessage-deflate; client_max_window_bits=11"));
        let implicit = check_forwarded_response(&parse_str("permessage-deflate"), &offers)
            .unwrap()
            .unwrap();
        assert_eq!(implicit.client_max_window_bits, 11);
        let explicit = check_forwarded_response(
            &parse_str("permessage-deflate; client_max_window_bits=9"),
            &offers,
        )
        .unwrap()
        .unwrap();
        assert_eq!(explicit.client_max_window_bits, 9);
        assert!(
            check_forwarded_response(
                &parse_str("permessage-deflate; client_max_window_bits=12"),
                &offers
            )
            .is_err()
        );
    }
}
