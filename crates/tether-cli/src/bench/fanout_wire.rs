//! The pieces of `tether.pubsub.v1` (docs/PROTOCOL.md) the fan-out workload speaks: its
//! requests, built once, and the few fields it reads from the server's JSON, found by a
//! scan in place instead of a parse, so a subscriber's delivery costs no allocation.

use serde_json::json;

/// The subprotocol of the gateway's pub/sub route.
pub const SUBPROTOCOL: &str = "tether.pubsub.v1";

/// The field of the published data that carries the publish time: microseconds since the
/// start of the run (publisher and subscribers share one clock, in one process).
const STAMP_KEY: &[u8] = b"\"bench_us\":";

/// The field of the published data that marks the run's last publish (1) or not (0).
const LAST_KEY: &[u8] = b"\"last\":";

/// What a server message is, from its `type`.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Kind {
    /// `message`: a delivery.
    Message,
    /// `ack`: a request succeeded.
    Ack,
    /// `error`: a request failed.
    Error,
    /// Something else.
    Other,
}

/// The `type` of a server message. The gateway writes `type` first; other placements are
/// found by a scan.
pub fn kind(payload: &[u8]) -> Kind {
    let rest = payload
        .strip_prefix(b"{\"type\":\"")
        .or_else(|| find(payload, b"\"type\":\"").map(|at| &payload[at + b"\"type\":\"".len()..]));
    match rest {
        Some(r) if r.starts_with(b"message\"") => Kind::Message,
        Some(r) if r.starts_with(b"ack\"") => Kind::Ack,
        Some(r) if r.starts_with(b"error\"") => Kind::Error,
        _ => Kind::Other,
    }
}

/// The position of the first occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The unsigned integer after the first `key` (e.g. `"offset":`), spaces allowed.
fn number_after(payload: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(payload, key)? + key.len();
    let digits = payload[at..].trim_ascii_start();
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&digits[..len]).ok()?.parse().ok()
}

/// The first `offset` of a message or ack: the envelope's (it precedes `data`), or a
/// subscribe ack's position of its one topic.
pub fn offset(payload: &[u8]) -> Option<u64> {
    number_after(payload, b"\"offset\":")
}

/// The publish time the publisher put in the data, in microseconds since the run's start.
pub fn stamp_us(payload: &[u8]) -> Option<u64> {
    number_after(payload, STAMP_KEY)
}

/// Whether the publisher marked this as its last publish (`"last":1` after the stamp), so a
/// subscriber knows it has everything without being told.
pub fn is_last(payload: &[u8]) -> bool {
    find(payload, STAMP_KEY).is_some_and(|at| number_after(&payload[at..], LAST_KEY) == Some(1))
}

/// The `code` of an error reply, for the report.
pub fn error_code(payload: &[u8]) -> String {
    let key = b"\"code\":\"";
    find(payload, key)
        .map(|at| {
            let rest = &payload[at + key.len()..];
            let end = rest.iter().position(|&b| b == b'"').unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end]).into_owned()
        })
        .unwrap_or_else(|| String::from_utf8_lossy(payload).into_owned())
}

/// `{"type":"subscribe","id":1,"topic":TOPIC}`.
pub fn subscribe_request(topic: &str) -> Vec<u8> {
    json!({"type": "subscribe", "id": 1, "topic": topic})
        .to_string()
        .into_bytes()
}

/// The published data: the publish time and whether it is the last publish, padded with `x`
/// to `size` bytes when larger.
pub fn publish_data(stamp_us: u64, last: bool, size: usize) -> String {
    let mut data = format!(
        "{{\"bench_us\":{stamp_us},\"last\":{},\"pad\":\"",
        u8::from(last)
    );
    let pad = size.saturating_sub(data.len() + 2);
    data.extend(std::iter::repeat_n('x', pad));
    data.push_str("\"}");
    data
}

/// `{"type":"publish","id":ID,"topic":TOPIC,"data":DATA}` with `data` already JSON.
pub fn publish_request(id: u64, topic: &str, data: &str) -> String {
    format!(
        "{{\"type\":\"publish\",\"id\":{id},\"topic\":{},\"data\":{data}}}",
        json!(topic)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELIVERY: &[u8] = br#"{"type":"message","topic":"bench","epoch":"8f3a1c0b2e7d4a51","offset":43,"ts":1718000000123,"data":{"bench_us":1234567,"last":0,"pad":"xx"}}"#;

    #[test]
    fn deliveries_give_their_offset_and_stamp() {
        assert_eq!(kind(DELIVERY), Kind::Message);
        assert_eq!(offset(DELIVERY), Some(43));
        assert_eq!(stamp_us(DELIVERY), Some(1_234_567));
        assert!(!is_last(DELIVERY));
    }

    #[test]
    fn the_last_publish_is_marked_in_its_data() {
        let last = publish_data(5, true, 64);
        assert_eq!(last.len(), 64);
        assert!(is_last(last.as_bytes()));
        assert!(!is_last(publish_data(5, false, 64).as_bytes()));
        // Only the data's own mark counts, not a topic or field before it.
        let topic = br#"{"type":"message","topic":"x","last":1,"data":{"bench_us":1,"last":0}}"#;
        assert!(!is_last(topic));
        let delivery = format!(
            r#"{{"type":"message","topic":"t","offset":9,"data":{}}}"#,
            publish_data(3, true, 0)
        );
        assert!(is_last(delivery.as_bytes()));
    }

    #[test]
    fn acks_and_errors() {
        let ack =
            br#"{"type":"ack","id":1,"topics":{"bench":{"epoch":"8f3a1c0b2e7d4a51","offset":0}}}"#;
        assert_eq!(kind(ack), Kind::Ack);
        assert_eq!(offset(ack), Some(0));
        let publish_ack = br#"{"type":"ack","id":4,"topic":"bench","epoch":"8f","offset": 7}"#;
        assert_eq!(offset(publish_ack), Some(7));
        let error = br#"{"type":"error","id":1,"code":"forbidden","reason":"no"}"#;
        assert_eq!(kind(error), Kind::Error);
        assert_eq!(error_code(error), "forbidden");
        assert_eq!(kind(br#"{"id":1,"type":"ack"}"#), Kind::Ack);
        assert_eq!(kind(b"[]"), Kind::Other);
        assert_eq!(offset(br#"{"offset":"x"}"#), None);
    }

    #[test]
    fn requests_are_the_documented_json() {
        let subscribe: serde_json::Value =
            serde_json::from_slice(&subscribe_request("bench")).unwrap();
        assert_eq!(subscribe["type"], "subscribe");
        assert_eq!(subscribe["topic"], "bench");
        let data = publish_data(99, false, 64);
        assert_eq!(data.len(), 64);
        let publish: serde_json::Value =
            serde_json::from_str(&publish_request(5, "bench", &data)).unwrap();
        assert_eq!(publish["data"]["bench_us"], 99);
        assert_eq!(publish["id"], 5);
        assert_eq!(publish["data"]["last"], 0);
        assert_eq!(stamp_us(publish_data(7, false, 0).as_bytes()), Some(7));
    }
}
