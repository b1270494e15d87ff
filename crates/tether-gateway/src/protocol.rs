//! The `tether.pubsub.v1` messages: JSON text, one object per WebSocket message, with a
//! `type` field. Both sides' shapes are here, so a client (the CLI's `pub` and `sub`) uses the
//! same definitions as the server. `docs/PROTOCOL.md` describes them with examples.
//!
//! Client to server: `subscribe`, `unsubscribe`, `publish`, `presence`. Server to client:
//! `ack`, `error`, `message`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::hub::Position;

pub use crate::hub::Epoch;

/// The WebSocket subprotocol name.
pub const SUBPROTOCOL: &str = "tether.pubsub.v1";

/// The longest request id of text, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// A request's `id`, echoed in the reply: a string (at most [`MAX_ID_LEN`] bytes) or a
/// non-negative integer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// A number.
    Number(u64),
    /// A string.
    Text(String),
}

/// Where a subscribe resumes: a position (exact topic) or positions per topic (pattern).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Since {
    /// `{"epoch": "...", "offset": 42}`.
    Position(Position),
    /// `{"<topic>": {"epoch": "...", "offset": 42}, ...}`.
    Topics(BTreeMap<String, Position>),
}

impl<'de> Deserialize<'de> for Since {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Since, D::Error> {
        use serde::de::Error;
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        if map.get("epoch").is_some_and(serde_json::Value::is_string) {
            return serde_json::from_value(serde_json::Value::Object(map))
                .map(Since::Position)
                .map_err(|e| D::Error::custom(format!("since: {e}")));
        }
        map.into_iter()
            .map(|(topic, position)| {
                serde_json::from_value(position)
                    .map(|p| (topic.clone(), p))
                    .map_err(|e| D::Error::custom(format!("since.{topic}: {e}")))
            })
            .collect::<Result<_, _>>()
            .map(Since::Topics)
    }
}

/// A client's request.
#[derive(Clone, Debug)]
pub enum Request {
    /// Receive a topic's (or a pattern's topics') messages, resuming after `since`.
    Subscribe {
        /// Echoed in the reply.
        id: Option<RequestId>,
        /// A topic, `prefix.*` or `*`.
        topic: String,
        /// Where to resume; `None` for live messages only.
        since: Option<Since>,
    },
    /// Stop receiving what a `subscribe` with the same `topic` asked for.
    Unsubscribe {
        /// Echoed in the reply.
        id: Option<RequestId>,
        /// As given to `subscribe`.
        topic: String,
    },
    /// Publish any JSON value to a topic.
    Publish {
        /// Echoed in the reply.
        id: Option<RequestId>,
        /// The topic.
        topic: String,
        /// The payload.
        data: Box<RawValue>,
        /// For latest-per-key topics and queues.
        key: Option<String>,
    },
    /// Which clients subscribe to a topic (one whose policy keeps presence), on every node.
    Presence {
        /// Echoed in the reply.
        id: Option<RequestId>,
        /// The topic (not a pattern).
        topic: String,
    },
}

/// What the parser accepts, before the per-type checks.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<RequestId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<Since>,
    #[serde(
        default,
        borrow,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    data: Option<&'a RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<Cow<'a, str>>,
}

/// `Some` for any value, `null` included (plain `Option` would read `null` as absent).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Only the id, from a request that fails to parse otherwise.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<RequestId>,
}

/// A refused request, to be answered with an `error` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// The request's id, when it could be read.
    pub id: Option<RequestId>,
    /// What kind of problem.
    pub code: ErrorCode,
    /// What is wrong, for people.
    pub reason: String,
}

impl RequestError {
    /// An error with `code` and `reason`.
    pub fn new(id: Option<RequestId>, code: ErrorCode, reason: impl Into<String>) -> Self {
        RequestError {
            id,
            code,
            reason: reason.into(),
        }
    }

    /// The `error` message answering it.
    pub fn to_reply(&self) -> ServerMessage {
        ServerMessage::Error(ErrorReply {
            id: self.id.clone(),
            code: self.code,
            reason: self.reason.clone(),
        })
    }
}

impl Request {
    /// Parses one text message. Errors carry the id when the text had a readable one.
    pub fn parse(text: &str) -> Result<Request, RequestError> {
        let wire: Wire<'_> = serde_json::from_str(text).map_err(|e| {
            let id = serde_json::from_str::<IdOnly>(text).ok().and_then(|w| w.id);
            let code = if e.is_syntax() || e.is_eof() {
                ErrorCode::MalformedJson
            } else {
                ErrorCode::BadRequest
            };
            RequestError::new(id, code, e.to_string())
        })?;
        let id = wire.id.clone();
        let bad = |reason: String| RequestError::new(id.clone(), ErrorCode::BadRequest, reason);
        if let Some(RequestId::Text(text)) = &wire.id
            && text.len() > MAX_ID_LEN
        {
            return Err(RequestError::new(
                None,
                ErrorCode::BadRequest,
                format!("id: at most {MAX_ID_LEN} bytes"),
            ));
        }
        let allowed: &[&str] = match &*wire.kind {
            "subscribe" => &["topic", "since"],
            "unsubscribe" => &["topic"],
            "publish" => &["topic", "data", "key"],
            "presence" => &["topic"],
            other => {
                return Err(RequestError::new(
                    id,
                    ErrorCode::UnknownType,
                    format!(
                        "unknown type {other:?} (expected subscribe, unsubscribe, publish or presence)"
                    ),
                ));
            }
        };
        let present = [
            ("topic", wire.topic.is_some()),
            ("since", wire.since.is_some()),
            ("data", wire.data.is_some()),
            ("key", wire.key.is_some()),
        ];
        for (field, is_present) in present {
            if is_present && !allowed.contains(&field) {
                return Err(bad(format!("{} does not take {field:?}", wire.kind)));
            }
        }
        let topic = wire
            .topic
            .ok_or_else(|| bad(format!("{} needs \"topic\"", wire.kind)))?
            .into_owned();
        if let Some(key) = &wire.key
            && key.len() > MAX_KEY_LEN
        {
            return Err(bad(format!("key: at most {MAX_KEY_LEN} bytes")));
        }
        Ok(match &*wire.kind {
            "subscribe" => Request::Subscribe {
                id,
                topic,
                since: wire.since,
            },
            "unsubscribe" => Request::Unsubscribe { id, topic },
            "presence" => Request::Presence { id, topic },
            _ => Request::Publish {
                data: wire
                    .data
                    .ok_or_else(|| bad("publish needs \"data\"".into()))?
                    .to_owned(),
                id,
                topic,
                key: wire.key.map(Cow::into_owned),
            },
        })
    }

    /// The request as JSON text.
    pub fn to_json(&self) -> String {
        let (kind, id, topic) = match self {
            Request::Subscribe { id, topic, .. } => ("subscribe", id, topic),
            Request::Unsubscribe { id, topic } => ("unsubscribe", id, topic),
            Request::Publish { id, topic, .. } => ("publish", id, topic),
            Request::Presence { id, topic } => ("presence", id, topic),
        };
        let wire = Wire {
            kind: kind.into(),
            id: id.clone(),
            topic: Some(topic.as_str().into()),
            since: match self {
                Request::Subscribe { since, .. } => since.clone(),
                _ => None,
            },
            data: match self {
                Request::Publish { data, .. } => Some(data),
                _ => None,
            },
            key: match self {
                Request::Publish { key, .. } => key.as_deref().map(Into::into),
                _ => None,
            },
        };
        serde_json::to_string(&wire).expect("a request always serializes")
    }

    /// The request's id.
    pub fn id(&self) -> Option<&RequestId> {
        match self {
            Request::Subscribe { id, .. }
            | Request::Unsubscribe { id, .. }
            | Request::Publish { id, .. }
            | Request::Presence { id, .. } => id.as_ref(),
        }
    }
}

/// What went wrong with a request, for programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The text is not JSON.
    MalformedJson,
    /// JSON, but not a valid request (missing, unknown or mistyped field).
    BadRequest,
    /// `type` is none of the known ones.
    UnknownType,
    /// The topic or pattern is not valid.
    InvalidTopic,
    /// The client's permissions do not allow it.
    Forbidden,
    /// `unsubscribe` for something not subscribed.
    NotSubscribed,
    /// The connection has as many subscriptions as allowed.
    TooManySubscriptions,
    /// The message is larger than allowed.
    TooLarge,
    /// The hub cannot serve the request now (backplane failure).
    Unavailable,
    /// `presence` for a topic whose policy does not keep presence.
    PresenceDisabled,
}

/// A message from the server.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// A request succeeded.
    Ack(Ack),
    /// A request failed.
    Error(ErrorReply),
    /// A published message.
    Message(Delivery),
}

pub mod resume;
mod server;

pub use crate::hub::PresenceEntry;
pub use server::{Ack, Delivery, ErrorReply, TopicStatus};

impl fmt::Display for ServerMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests;
