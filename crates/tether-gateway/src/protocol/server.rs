//! The server's messages: `ack`, `error` and `message`, and their parsing for clients.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{ErrorCode, RequestId, ServerMessage};
use crate::hub::{Epoch, Position, PresenceEntry, PresenceList};

/// A request succeeded. Which fields are set depends on the request:
///
/// - `subscribe`: `topics`, the position of every topic subscribed, with `recovered` when
///   the subscribe resumed.
/// - `unsubscribe`: none besides `id`.
/// - `publish`: `topic`, `epoch` and `offset` of the published message.
/// - `presence`: `topic`, `count` (every client present) and `clients` (at most the
///   server's `hub.presence_max_clients`, sorted by client id), with `truncated: true` when
///   `clients` lists fewer than `count`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The request's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    /// For `subscribe`: each topic synced and where it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<BTreeMap<String, TopicStatus>>,
    /// For `publish` and `presence`: the topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// For `publish`: the message's epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
    /// For `publish`: the message's offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// For `presence`: how many clients are present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// For `presence`: the clients listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<Vec<PresenceEntry>>,
    /// For `presence`: `true` when `clients` lists fewer than `count` (absent otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// A topic's state in a `subscribe` ack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicStatus {
    /// The topic's epoch.
    pub epoch: Epoch,
    /// The offset the client is now at: replayed messages (if any) end here, live ones
    /// follow it.
    pub offset: u64,
    /// Present when the subscribe had `since`: whether everything missed was delivered.
    /// `false` means reload the topic's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
}

impl TopicStatus {
    /// The position.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.offset,
        }
    }
}

/// A request failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReply {
    /// The request's id, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    /// What kind of problem.
    pub code: ErrorCode,
    /// What is wrong, for people.
    pub reason: String,
}

/// A published message, as delivered to subscribers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// The topic.
    pub topic: String,
    /// The topic's epoch.
    pub epoch: Epoch,
    /// The message's offset in the topic.
    pub offset: u64,
    /// The key it was published with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Publish time, milliseconds since the Unix epoch.
    pub ts: u64,
    /// The payload.
    pub data: Box<RawValue>,
}

impl Delivery {
    /// The message's position.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.offset,
        }
    }
}

impl Ack {
    /// The ack of a subscribe.
    pub fn subscribed(id: Option<RequestId>, topics: BTreeMap<String, TopicStatus>) -> Self {
        Ack {
            id,
            topics: Some(topics),
            ..Ack::default()
        }
    }

    /// The ack of an unsubscribe.
    pub fn unsubscribed(id: Option<RequestId>) -> Self {
        Ack {
            id,
            ..Ack::default()
        }
    }

    /// The ack of a presence query.
    pub fn presence(id: Option<RequestId>, topic: String, list: PresenceList) -> Self {
        Ack {
            id,
            topic: Some(topic),
            count: Some(list.count),
            truncated: list.truncated(),
            clients: Some(list.clients),
            ..Ack::default()
        }
    }

    /// The ack of a publish.
    pub fn published(id: Option<RequestId>, topic: String, position: Position) -> Self {
        Ack {
            id,
            topic: Some(topic),
            epoch: Some(position.epoch),
            offset: Some(position.offset),
            ..Ack::default()
        }
    }
}

/// Just the `type` of a server message.
#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
}

impl ServerMessage {
    /// Parses a server message (for clients).
    pub fn parse(text: &str) -> Result<ServerMessage, String> {
        let kind: Kind<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let err = |e: serde_json::Error| format!("{}: {e}", kind.kind);
        match &*kind.kind {
            "ack" => parse_body(text).map(ServerMessage::Ack).map_err(err),
            "error" => parse_body(text).map(ServerMessage::Error).map_err(err),
            "message" => parse_body(text).map(ServerMessage::Message).map_err(err),
            other => Err(format!("unknown message type {other:?}")),
        }
    }
}

/// Parses `text` as `T` plus a `type` field. (`#[serde(flatten)]` cannot carry `RawValue` or
/// `deny_unknown_fields`, so the `type` field is cut out of the object instead.)
fn parse_body<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    let mut object: BTreeMap<&str, &RawValue> = serde_json::from_str(text)?;
    object.remove("type");
    serde_json::from_str(&serde_json::to_string(&object)?)
}
