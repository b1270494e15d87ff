//! What the Redis backplane writes and reads, as pure functions: key names, the notification
//! each publish sends to every node, the replies of the Lua scripts, and the `recovered`
//! rule of a resume.
//!
//! # Keys (for topic `T`)
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `tether:{T}:meta` | hash | `epoch` (16 hex digits, set once with HSETNX), `last` (the newest offset, HINCRBY), `evicted` (the highest offset dropped by the count or age bound) |
//! | `tether:{T}:log` | stream | one entry per retained record, id `OFFSET-0`, fields `at` (Redis time, ms), `ts`, `data`, `key` |
//! | `tether:{T}:keys` | hash | latest-per-key topics: key → offset of its retained record |
//! | `tether:{T}:presence` | sorted set | presence topics: member = a client's entry (JSON `{"client","user"}`), score = when it expires (Redis time, ms); the set expires a TTL after its last refresh |
//! | `tether:topics` | set | every topic published to |
//!
//! The stream id's first part is the offset, so "after offset N" is the id range
//! `(N+1)-0 ..`. Offsets come from the `last` counter, bumped in the same script as the
//! XADD: they are dense, start at 1, and are the same on every node.

use std::sync::Arc;

use ::redis::Value;
use bytes::Bytes;

use crate::hub::backplane::ReplayFrom;
use crate::hub::presence::{PresenceEntry, PresenceList};
use crate::hub::record::{Epoch, Position, Record};

/// The pub/sub channel every publish notifies and every node subscribes to.
pub(crate) const CHANNEL: &str = "tether:records";

/// The set of every topic published to.
pub(crate) const TOPICS_KEY: &str = "tether:topics";

/// The keys of one topic. The braces are a Redis Cluster hash tag: a topic's keys share a
/// slot.
pub(crate) struct TopicKeys {
    pub(crate) meta: String,
    pub(crate) log: String,
    pub(crate) keys: String,
    pub(crate) presence: String,
}

impl TopicKeys {
    pub(crate) fn new(topic: &str) -> TopicKeys {
        TopicKeys {
            meta: format!("tether:{{{topic}}}:meta"),
            log: format!("tether:{{{topic}}}:log"),
            keys: format!("tether:{{{topic}}}:keys"),
            presence: format!("tether:{{{topic}}}:presence"),
        }
    }
}

/// The read script's `client_epoch` and `after` arguments for a replay from `from`: `after`
/// is -1 for no records at all; the script resets it to 0 when the client's epoch is not the
/// topic's or its offset is ahead of the topic's.
pub(crate) fn read_arguments(from: ReplayFrom) -> (String, i64) {
    match from {
        ReplayFrom::Now => (String::new(), -1),
        ReplayFrom::Start => (String::new(), 0),
        ReplayFrom::After(p) => (
            p.epoch.to_string(),
            i64::try_from(p.offset).unwrap_or(i64::MAX),
        ),
    }
}

/// Whether a replay from `from` covers everything the client missed, given the topic's
/// state (the same rule as the in-memory log's).
pub(crate) fn recovered(from: ReplayFrom, state: &LogState) -> bool {
    match from {
        ReplayFrom::Now => true,
        ReplayFrom::Start => state.evicted == 0,
        ReplayFrom::After(since) => {
            since.epoch == state.epoch
                && since.offset <= state.last
                && since.offset >= state.evicted
        }
    }
}

/// A topic's state as the read script reports it, with the records it read.
#[derive(Debug)]
pub(crate) struct LogState {
    pub(crate) epoch: Epoch,
    /// The newest offset (0 when none yet).
    pub(crate) last: u64,
    /// The highest offset dropped by the count or age bound.
    pub(crate) evicted: u64,
    /// Records in the stream.
    pub(crate) retained: usize,
    pub(crate) records: Vec<Arc<Record>>,
}

/// Parses the read script's reply: `[epoch, last, evicted, retained, (offset, ts, key|nil,
/// data)*]`.
pub(crate) fn parse_read_reply(topic: &Arc<str>, reply: Value) -> Result<LogState, String> {
    let Value::Array(items) = reply else {
        return Err(format!("unexpected reply to the read script: {reply:?}"));
    };
    if items.len() < 4 || (items.len() - 4) % 4 != 0 {
        return Err(format!(
            "the read script replied {} values, not 4 + 4 per record",
            items.len()
        ));
    }
    let epoch: Epoch = text(&items[0])?.parse()?;
    let last = unsigned(&items[1])?;
    let evicted = unsigned(&items[2])?;
    let retained = usize::try_from(unsigned(&items[3])?).map_err(|e| e.to_string())?;
    let mut records = Vec::with_capacity((items.len() - 4) / 4);
    for entry in items[4..].chunks_exact(4) {
        let offset = unsigned(&entry[0])?;
        let timestamp_ms = text(&entry[1])?
            .parse::<u64>()
            .map_err(|e| format!("entry {offset}: ts: {e}"))?;
        let key = match &entry[2] {
            Value::Nil => None,
            other => Some(Arc::from(text(other)?)),
        };
        let data = Bytes::from(bytes(&entry[3])?.to_vec());
        records.push(Arc::new(Record::new(
            topic.clone(),
            Position { epoch, offset },
            key,
            timestamp_ms,
            data,
        )));
    }
    Ok(LogState {
        epoch,
        last,
        evicted,
        retained,
        records,
    })
}

/// What the publish script answered.
#[derive(Debug)]
pub(crate) struct Published<'a> {
    pub(crate) position: Position,
    pub(crate) retained: usize,
    /// The notification the caller must `PUBLISH` itself (when it asked the script not to).
    pub(crate) notification: Option<&'a [u8]>,
}

/// Parses the publish script's reply: `[epoch, offset, retained]`, or
/// `[epoch, offset, retained, notification]` when the script did not notify.
pub(crate) fn parse_publish_reply(reply: &Value) -> Result<Published<'_>, String> {
    match reply {
        Value::Array(items) if items.len() == 3 || items.len() == 4 => {
            let epoch = text(&items[0])?.parse()?;
            let offset = unsigned(&items[1])?;
            let retained = usize::try_from(unsigned(&items[2])?).map_err(|e| e.to_string())?;
            let notification = items.get(3).map(bytes).transpose()?;
            Ok(Published {
                position: Position { epoch, offset },
                retained,
                notification,
            })
        }
        other => Err(format!("unexpected reply to the publish script: {other:?}")),
    }
}

/// Parses a notification on [`CHANNEL`]: a header line `EPOCH OFFSET TS TOPIC_LEN KEY_LEN`
/// (`KEY_LEN` -1 for no key), then the topic, the key and the data, unseparated.
pub(crate) fn parse_notification(payload: &[u8]) -> Result<Record, String> {
    let newline = payload
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("a notification without a header line")?;
    let header = std::str::from_utf8(&payload[..newline]).map_err(|e| e.to_string())?;
    let fields: Vec<&str> = header.split(' ').collect();
    let [epoch, offset, ts, topic_len, key_len] = fields[..] else {
        return Err(format!(
            "a notification header of {} fields, not 5",
            fields.len()
        ));
    };
    let number = |name: &str, s: &str| {
        s.parse::<u64>()
            .map_err(|e| format!("notification {name} {s:?}: {e}"))
    };
    let epoch: Epoch = epoch.parse()?;
    let offset = number("offset", offset)?;
    let ts = number("ts", ts)?;
    let topic_len =
        usize::try_from(number("topic length", topic_len)?).map_err(|e| e.to_string())?;
    let key_len = match key_len {
        "-1" => None,
        n => Some(usize::try_from(number("key length", n)?).map_err(|e| e.to_string())?),
    };
    let body = &payload[newline + 1..];
    let key_end = topic_len + key_len.unwrap_or(0);
    if body.len() < key_end {
        return Err("a notification shorter than its header says".into());
    }
    let topic = std::str::from_utf8(&body[..topic_len]).map_err(|e| e.to_string())?;
    let key = match key_len {
        Some(_) => Some(Arc::from(
            std::str::from_utf8(&body[topic_len..key_end]).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    Ok(Record::new(
        topic.into(),
        Position { epoch, offset },
        key,
        ts,
        Bytes::copy_from_slice(&body[key_end..]),
    ))
}

/// The role in a `ROLE` reply (`master`, `slave`, `sentinel`): its first element.
pub(crate) fn role(reply: &Value) -> Option<&str> {
    match reply {
        Value::Array(items) => items.first().and_then(|first| text(first).ok()),
        _ => None,
    }
}

/// The number of replicas in a master's `ROLE` reply, `["master", offset, [[ip, port,
/// offset], ...]]`; `None` for any other reply.
pub(crate) fn role_replicas(reply: &Value) -> Option<usize> {
    match reply {
        Value::Array(items) if role(reply) == Some("master") => match items.get(2) {
            Some(Value::Array(replicas)) => Some(replicas.len()),
            _ => None,
        },
        _ => None,
    }
}

/// Parses the presence query script's reply, `[count, member*]`: the count and the entries,
/// sorted by client id.
pub(crate) fn parse_presence_reply(reply: &Value) -> Result<PresenceList, String> {
    let Value::Array(items) = reply else {
        return Err(format!(
            "unexpected reply to the presence script: {reply:?}"
        ));
    };
    let Some((count, members)) = items.split_first() else {
        return Err("the presence script replied nothing".into());
    };
    let count = usize::try_from(unsigned(count)?).map_err(|e| e.to_string())?;
    let mut clients = members
        .iter()
        .map(|m| PresenceEntry::from_member(bytes(m)?))
        .collect::<Result<Vec<_>, _>>()?;
    if clients.len() > count {
        return Err(format!(
            "the presence script listed {} entries of {count}",
            clients.len()
        ));
    }
    clients.sort();
    Ok(PresenceList { count, clients })
}

fn bytes(value: &Value) -> Result<&[u8], String> {
    match value {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        other => Err(format!("expected a string, got {other:?}")),
    }
}

fn text(value: &Value) -> Result<&str, String> {
    std::str::from_utf8(bytes(value)?).map_err(|e| e.to_string())
}

fn unsigned(value: &Value) -> Result<u64, String> {
    match value {
        Value::Int(n) => u64::try_from(*n).map_err(|_| format!("expected a count, got {n}")),
        other => text(other)?
            .parse()
            .map_err(|e| format!("expected a count: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_replies_parse_sorted_and_bad_ones_are_refused() {
        let member = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let reply = Value::Array(vec![
            Value::Int(3),
            member(r#"{"client":"b-2"}"#),
            member(r#"{"client":"a-1","user":"alice"}"#),
        ]);
        let list = parse_presence_reply(&reply).unwrap();
        assert_eq!(list.count, 3);
        assert_eq!(
            list.clients,
            [
                PresenceEntry::new("a-1", Some("alice")),
                PresenceEntry::new("b-2", None)
            ]
        );
        assert!(list.truncated());
        assert!(parse_presence_reply(&Value::Array(vec![])).is_err());
        assert!(parse_presence_reply(&Value::Int(1)).is_err());
        let bad = Value::Array(vec![Value::Int(1), member("{\"who\":1}")]);
        assert!(
            parse_presence_reply(&bad)
                .unwrap_err()
                .contains("presence entry")
        );
        let too_many = Value::Array(vec![Value::Int(0), member(r#"{"client":"a"}"#)]);
        assert!(parse_presence_reply(&too_many).is_err());
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn state(epoch: u64, last: u64, evicted: u64) -> LogState {
        LogState {
            epoch: Epoch::from_u64(epoch),
            last,
            evicted,
            retained: 0,
            records: Vec::new(),
        }
    }

    fn after(epoch: u64, offset: u64) -> ReplayFrom {
        ReplayFrom::After(Position {
            epoch: Epoch::from_u64(epoch),
            offset,
        })
    }

    #[test]
    fn keys_share_a_cluster_hash_tag() {
        let keys = TopicKeys::new("prices.AAPL");
        assert_eq!(keys.meta, "tether:{prices.AAPL}:meta");
        assert_eq!(keys.log, "tether:{prices.AAPL}:log");
        assert_eq!(keys.keys, "tether:{prices.AAPL}:keys");
        assert_eq!(keys.presence, "tether:{prices.AAPL}:presence");
    }

    #[test]
    fn read_arguments_say_where_records_start() {
        assert_eq!(read_arguments(ReplayFrom::Now), (String::new(), -1));
        assert_eq!(read_arguments(ReplayFrom::Start), (String::new(), 0));
        assert_eq!(
            read_arguments(after(0xab, 7)),
            ("00000000000000ab".to_string(), 7)
        );
    }

    #[test]
    fn recovered_follows_the_in_memory_rule() {
        let s = state(1, 10, 4);
        assert!(recovered(ReplayFrom::Now, &s));
        assert!(!recovered(ReplayFrom::Start, &s));
        assert!(recovered(ReplayFrom::Start, &state(1, 10, 0)));
        assert!(recovered(after(1, 4), &s));
        assert!(recovered(after(1, 10), &s));
        assert!(!recovered(after(1, 3), &s), "offset 4 is gone");
        assert!(!recovered(after(1, 11), &s), "ahead of the topic");
        assert!(!recovered(after(2, 10), &s), "another epoch");
    }

    #[test]
    fn read_reply_parses_into_records() {
        let reply = Value::Array(vec![
            bulk("00000000000000ff"),
            Value::Int(9),
            Value::Int(6),
            Value::Int(2),
            Value::Int(8),
            bulk("1700000000000"),
            Value::Nil,
            bulk("{\"a\":1}"),
            Value::Int(9),
            bulk("1700000000001"),
            bulk("AAPL"),
            bulk("2"),
        ]);
        let topic: Arc<str> = "t".into();
        let state = parse_read_reply(&topic, reply).unwrap();
        assert_eq!((state.last, state.evicted, state.retained), (9, 6, 2));
        let got: Vec<_> = state
            .records
            .iter()
            .map(|r| {
                (
                    r.position().offset,
                    r.key().map(|k| k.to_string()),
                    r.data().clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (8, None, Bytes::from_static(b"{\"a\":1}")),
                (9, Some("AAPL".into()), Bytes::from_static(b"2"))
            ]
        );
        assert_eq!(state.records[1].timestamp_ms(), 1_700_000_000_001);
        assert!(parse_read_reply(&topic, Value::Array(vec![bulk("x")])).is_err());
        assert!(parse_read_reply(&topic, Value::Nil).is_err());
    }

    #[test]
    fn notification_parses_with_and_without_key() {
        let r = parse_notification(b"00000000000000ff 42 17 4 3\nab.cKEY{\"x\":[1]}").unwrap();
        assert_eq!(&**r.topic(), "ab.c");
        assert_eq!(r.position().offset, 42);
        assert_eq!(r.position().epoch, Epoch::from_u64(0xff));
        assert_eq!(r.key().map(|k| &**k), Some("KEY"));
        assert_eq!(r.timestamp_ms(), 17);
        assert_eq!(&r.data()[..], b"{\"x\":[1]}");
        let keyless = parse_notification(b"00000000000000ff 1 17 1 -1\nt\"a\nb\"").unwrap();
        assert_eq!(keyless.key(), None);
        assert_eq!(&keyless.data()[..], b"\"a\nb\"");
        for bad in [
            &b"no header"[..],
            b"00000000000000ff 1 17 9 -1\nt",
            b"zz 1 17 1 -1\nt1",
            b"00000000000000ff 1 17 1\nt1",
        ] {
            assert!(parse_notification(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn role_is_the_first_element_of_the_role_reply() {
        let master = Value::Array(vec![bulk("master"), Value::Int(0), Value::Array(vec![])]);
        assert_eq!(role(&master), Some("master"));
        let replica = Value::Array(vec![bulk("slave"), bulk("127.0.0.1"), Value::Int(6379)]);
        assert_eq!(role(&replica), Some("slave"));
        assert_eq!(role(&Value::Okay), None);
        assert_eq!(role(&Value::Array(vec![])), None);
        assert_eq!(role_replicas(&master), Some(0));
        let replica_entry = || Value::Array(vec![bulk("127.0.0.1"), bulk("6380"), bulk("1234")]);
        let two = Value::Array(vec![
            bulk("master"),
            Value::Int(1234),
            Value::Array(vec![replica_entry(), replica_entry()]),
        ]);
        assert_eq!(role_replicas(&two), Some(2));
        assert_eq!(role_replicas(&replica), None);
        assert_eq!(role_replicas(&Value::Okay), None);
    }

    #[test]
    fn publish_reply_parses() {
        let reply = Value::Array(vec![bulk("0000000000000001"), Value::Int(3), Value::Int(3)]);
        let published = parse_publish_reply(&reply).unwrap();
        assert_eq!((published.position.offset, published.retained), (3, 3));
        assert_eq!(published.notification, None);
        let reply = Value::Array(vec![
            bulk("0000000000000001"),
            Value::Int(4),
            Value::Int(2),
            bulk("0000000000000001 4 17 1 -1\nt{}"),
        ]);
        let published = parse_publish_reply(&reply).unwrap();
        assert_eq!(published.position.offset, 4);
        let note = parse_notification(published.notification.unwrap()).unwrap();
        assert_eq!(note.position(), published.position);
        assert!(parse_publish_reply(&Value::Okay).is_err());
        let wrong = Value::Array(vec![bulk("0000000000000001"), Value::Int(4)]);
        assert!(parse_publish_reply(&wrong).is_err());
    }
}
