//! One published message as the hub stores and delivers it: its topic, its place in the
//! topic's log (epoch and offset), and its `message` envelope, encoded once and framed once for
//! every subscriber.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tether::{Message, PreparedMessage, Utf8Bytes};
use tokio::time::Instant;

/// Envelopes shorter than this are not worth compressing (ticks, scores, acks).
const COMPRESS_MIN_SIZE: usize = 256;

/// The identity of one incarnation of a topic's log: random, chosen when the topic is
/// created. A different epoch means the history a client knew is gone (a restart of an
/// in-memory hub, for one). Written as 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epoch(u64);

impl Epoch {
    /// A fresh random epoch.
    pub fn random() -> Epoch {
        Epoch(rand::random())
    }

    /// The epoch with this numeric value (for backplanes that store it).
    pub const fn from_u64(value: u64) -> Epoch {
        Epoch(value)
    }

    /// The numeric value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for Epoch {
    type Err = String;

    fn from_str(s: &str) -> Result<Epoch, String> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{s:?} is not an epoch (16 hex digits)"));
        }
        u64::from_str_radix(s, 16)
            .map(Epoch)
            .map_err(|e| e.to_string())
    }
}

impl Serialize for Epoch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Epoch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Epoch, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A place in a topic's log: the epoch and the offset of a message (offsets start at 1; 0
/// is the position of an empty log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// The log's incarnation.
    pub epoch: Epoch,
    /// The message's number in the log, strictly increasing.
    pub offset: u64,
}

/// A message in a topic's log.
pub struct Record {
    topic: Arc<str>,
    position: Position,
    key: Option<Arc<str>>,
    timestamp_ms: u64,
    data: Bytes,
    received_at: Instant,
    frame: OnceLock<PreparedMessage>,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("topic", &self.topic)
            .field("position", &self.position)
            .field("key", &self.key)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("data_len", &self.data.len())
            .finish()
    }
}

impl Record {
    /// A record. `data` must be JSON text (the hub checks it on publish; a backplane hands
    /// back what it was given); `timestamp_ms` is the publish time in milliseconds since the
    /// Unix epoch. The local receive time, for the latency histogram, is now.
    pub fn new(
        topic: Arc<str>,
        position: Position,
        key: Option<Arc<str>>,
        timestamp_ms: u64,
        data: Bytes,
    ) -> Record {
        Record {
            topic,
            position,
            key,
            timestamp_ms,
            data,
            received_at: Instant::now(),
            frame: OnceLock::new(),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// Where the record is in its topic's log.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The key (latest-per-key topics keep only the newest record per key).
    pub fn key(&self) -> Option<&Arc<str>> {
        self.key.as_ref()
    }

    /// Publish time, milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The payload, JSON text.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// When this node received the record (the start of the publish-to-send latency).
    pub(crate) fn received_at(&self) -> Instant {
        self.received_at
    }

    /// The `message` envelope, framed once; every subscriber queues these same bytes. Envelopes
    /// of `COMPRESS_MIN_SIZE` bytes or more are also compressed once, without context, for the
    /// subscribers that negotiated `server_no_context_takeover` (RFC 7692 §7.1.1.1).
    pub(crate) fn frame(&self) -> &PreparedMessage {
        self.frame.get_or_init(|| {
            let text = Utf8Bytes::from(self.envelope());
            PreparedMessage::with_compression(&Message::Text(text), 1, COMPRESS_MIN_SIZE)
                .expect("a text message can always be prepared")
        })
    }

    /// The size of the framed envelope, in bytes.
    pub(crate) fn frame_len(&self) -> usize {
        self.frame().as_bytes().len()
    }

    /// The `message` envelope as JSON text (see docs/PROTOCOL.md).
    fn envelope(&self) -> String {
        let data = String::from_utf8_lossy(&self.data);
        let mut out = String::with_capacity(ENVELOPE_FIXED + self.topic.len() + data.len() + 80);
        out.push_str(r#"{"type":"message","topic":"#);
        push_json_string(&mut out, &self.topic);
        out.push_str(&format!(
            r#","epoch":"{}","offset":{}"#,
            self.position.epoch, self.position.offset
        ));
        if let Some(key) = &self.key {
            out.push_str(r#","key":"#);
            push_json_string(&mut out, key);
        }
        out.push_str(&format!(r#","ts":{},"data":"#, self.timestamp_ms));
        out.push_str(&data);
        out.push('}');
        out
    }
}

/// Bytes of the envelope besides the topic, key and data values: the braces, field names and
/// the longest epoch, offset and timestamp.
const ENVELOPE_FIXED: usize =
    r#"{"type":"message","topic":,"epoch":"","offset":,"key":,"ts":,"data":}"#.len() + 16 + 20 + 20;

/// The most a frame of a record with these fields can take, header included.
pub(crate) fn frame_len_bound(topic: &str, key: Option<&str>, data_len: usize) -> usize {
    let json_len = |s: &str| serde_json::to_string(s).map_or(s.len() * 6 + 2, |j| j.len());
    const MAX_FRAME_HEADER: usize = 10;
    MAX_FRAME_HEADER + ENVELOPE_FIXED + json_len(topic) + key.map_or(0, json_len) + data_len
}

fn push_json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string always serializes"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<&str>, data: &str) -> Record {
        Record::new(
            "prices.AAPL".into(),
            Position {
                epoch: Epoch::from_u64(0xabc),
                offset: 42,
            },
            key.map(Into::into),
            1_700_000_000_123,
            Bytes::from(data.to_owned()),
        )
    }

    #[test]
    fn epoch_prints_and_parses_as_16_hex_digits() {
        let epoch = Epoch::from_u64(0x1234_abcd);
        assert_eq!(epoch.to_string(), "000000001234abcd");
        assert_eq!("000000001234abcd".parse::<Epoch>(), Ok(epoch));
        assert!("1234abcd".parse::<Epoch>().is_err());
        assert!("000000001234abcg".parse::<Epoch>().is_err());
        assert_eq!(
            serde_json::to_string(&epoch).unwrap(),
            "\"000000001234abcd\""
        );
        let random = Epoch::random();
        assert_eq!(random.to_string().parse::<Epoch>(), Ok(random));
    }

    #[test]
    fn position_round_trips_through_json() {
        let pos = Position {
            epoch: Epoch::from_u64(7),
            offset: 9,
        };
        let json = serde_json::to_string(&pos).unwrap();
        assert_eq!(json, r#"{"epoch":"0000000000000007","offset":9}"#);
        assert_eq!(serde_json::from_str::<Position>(&json).unwrap(), pos);
        assert!(serde_json::from_str::<Position>(r#"{"epoch":"x","offset":1}"#).is_err());
    }

    #[test]
    fn envelope_is_the_documented_json() {
        let r = record(Some("AA\"PL"), r#"{"price": 1.5}"#);
        let value: serde_json::Value = serde_json::from_str(&r.envelope()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "type": "message", "topic": "prices.AAPL", "epoch": "0000000000000abc",
                "offset": 42, "key": "AA\"PL", "ts": 1_700_000_000_123u64, "data": {"price": 1.5}
            })
        );
        let keyless: serde_json::Value =
            serde_json::from_str(&record(None, "[1,2]").envelope()).unwrap();
        assert!(keyless.get("key").is_none());
    }

    #[test]
    fn frame_is_built_once_and_within_the_bound() {
        let r = record(Some("k"), "true");
        let first = r.frame().as_bytes().as_ptr();
        assert_eq!(first, r.frame().as_bytes().as_ptr());
        // RFC 6455 §5.2: an unmasked text frame with FIN set starts with 0x81.
        assert_eq!(r.frame().as_bytes()[0], 0x81);
        assert!(r.frame_len() <= frame_len_bound("prices.AAPL", Some("k"), 4));
        let big = record(None, &format!("\"{}\"", "x".repeat(70_000)));
        assert!(big.frame_len() <= frame_len_bound("prices.AAPL", None, 70_002));
    }
}
