//! Presence: which clients subscribe to a topic, on every node.
//!
//! A topic whose policy says `presence = true` keeps one entry per connection that holds an
//! exact subscription to it (patterns do not count): the connection's client id, unique
//! across nodes, and its user (the JWT's string `sub`) when it has one. A connection joins
//! once however often it resubscribes, and leaves on unsubscribe and on close. The
//! [`Backplane`](super::Backplane) shares the entries between nodes; the Redis one keeps them
//! with an expiry that every node refreshes, so the entries of a node that dies without
//! leaving disappear within `hub.presence_ttl`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The longest user kept in a presence entry, in bytes; a longer one is cut at a character
/// boundary.
pub const MAX_USER_LEN: usize = 256;

/// One connection subscribed to a topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceEntry {
    /// The connection's id, unique across nodes (`NODE-SEQUENCE`).
    pub client: String,
    /// Who the client is (a JWT's string `sub`), when auth says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl PresenceEntry {
    /// The entry of `client`, with `user` cut to [`MAX_USER_LEN`] bytes.
    pub fn new(client: impl Into<String>, user: Option<&str>) -> PresenceEntry {
        PresenceEntry {
            client: client.into(),
            user: user.map(|u| {
                let mut end = u.len().min(MAX_USER_LEN);
                while !u.is_char_boundary(end) {
                    end -= 1;
                }
                u[..end].to_string()
            }),
        }
    }

    /// The entry as one string (JSON), as a backplane stores it.
    pub(crate) fn to_member(&self) -> String {
        serde_json::to_string(self).expect("an entry always serializes")
    }

    /// Parses what [`to_member`](Self::to_member) wrote.
    pub(crate) fn from_member(text: &[u8]) -> Result<PresenceEntry, String> {
        serde_json::from_slice(text).map_err(|e| format!("bad presence entry: {e}"))
    }
}

/// The answer to a presence query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresenceList {
    /// How many clients are present.
    pub count: usize,
    /// Some of them (all when `count` is at most the query's limit), sorted by client id.
    pub clients: Vec<PresenceEntry>,
}

impl PresenceList {
    /// Whether `clients` lists fewer than `count`.
    pub fn truncated(&self) -> bool {
        self.clients.len() < self.count
    }
}

/// Why a presence query was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresenceError {
    /// The topic name is not valid (patterns are not topics); the text says why.
    InvalidTopic(String),
    /// No topic policy enables presence for the topic.
    NotEnabled(String),
    /// The backplane failed.
    Backplane(String),
}

impl fmt::Display for PresenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PresenceError::InvalidTopic(why) => write!(f, "invalid topic: {why}"),
            PresenceError::NotEnabled(topic) => write!(
                f,
                "presence is not enabled for {topic:?} (set presence = true in its [[hub.topics]] entry)"
            ),
            PresenceError::Backplane(why) => write!(f, "backplane unavailable: {why}"),
        }
    }
}

impl std::error::Error for PresenceError {}

/// A random id for this process, so client ids are unique across nodes.
pub(crate) fn node_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Presence entries by topic, in this process: all of them for the in-memory backplane,
/// this node's own for the Redis one (which refreshes them). Its size is bounded by the
/// connections times their subscriptions.
#[derive(Debug, Default)]
pub(crate) struct LocalPresence {
    topics: HashMap<Arc<str>, BTreeSet<PresenceEntry>>,
    entries: usize,
}

impl LocalPresence {
    /// Adds `entry` to `topic`; `false` if it was there already.
    pub(crate) fn join(&mut self, topic: &str, entry: &PresenceEntry) -> bool {
        let added = match self.topics.get_mut(topic) {
            Some(set) => set.insert(entry.clone()),
            None => {
                self.topics
                    .insert(topic.into(), BTreeSet::from([entry.clone()]));
                true
            }
        };
        self.entries += usize::from(added);
        added
    }

    /// Removes `entry` from `topic`; `false` if it was not there.
    pub(crate) fn leave(&mut self, topic: &str, entry: &PresenceEntry) -> bool {
        let Some(set) = self.topics.get_mut(topic) else {
            return false;
        };
        let removed = set.remove(entry);
        if set.is_empty() {
            self.topics.remove(topic);
        }
        self.entries -= usize::from(removed);
        removed
    }

    /// Whether `topic` has `entry`.
    pub(crate) fn contains(&self, topic: &str, entry: &PresenceEntry) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|set| set.contains(entry))
    }

    /// The entries of `topic`, at most `limit` of them listed.
    pub(crate) fn list(&self, topic: &str, limit: usize) -> PresenceList {
        let Some(set) = self.topics.get(topic) else {
            return PresenceList::default();
        };
        PresenceList {
            count: set.len(),
            clients: set.iter().take(limit).cloned().collect(),
        }
    }

    /// Every topic with its entries.
    pub(crate) fn snapshot(&self) -> Vec<(Arc<str>, Vec<PresenceEntry>)> {
        self.topics
            .iter()
            .map(|(topic, set)| (topic.clone(), set.iter().cloned().collect()))
            .collect()
    }

    /// Entries over all topics.
    pub(crate) fn len(&self) -> usize {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_long_users_are_cut_at_a_char_boundary() {
        let entry = PresenceEntry::new("a-1", Some("alice"));
        let member = entry.to_member();
        assert_eq!(member, r#"{"client":"a-1","user":"alice"}"#);
        assert_eq!(PresenceEntry::from_member(member.as_bytes()), Ok(entry));
        let anonymous = PresenceEntry::new("a-2", None);
        assert_eq!(anonymous.to_member(), r#"{"client":"a-2"}"#);
        let long = "é".repeat(MAX_USER_LEN);
        let cut = PresenceEntry::new("a-3", Some(&long)).user.unwrap();
        assert_eq!(cut.len(), MAX_USER_LEN);
        assert!(long.starts_with(&cut));
        let odd = format!("x{long}");
        let cut = PresenceEntry::new("a-4", Some(&odd)).user.unwrap();
        assert_eq!(cut.len(), MAX_USER_LEN - 1);
        assert!(PresenceEntry::from_member(b"{\"client\":1}").is_err());
        assert!(PresenceEntry::from_member(b"{\"client\":\"a\",\"x\":1}").is_err());
    }

    #[test]
    fn local_presence_counts_each_entry_once_and_truncates_lists() {
        let mut presence = LocalPresence::default();
        let a = PresenceEntry::new("n-1", Some("alice"));
        let b = PresenceEntry::new("n-2", None);
        assert!(presence.join("room", &a));
        assert!(!presence.join("room", &a));
        assert!(presence.join("room", &b));
        assert!(presence.join("other", &a));
        assert_eq!(presence.len(), 3);
        let list = presence.list("room", 10);
        assert_eq!(
            (list.count, list.clients.clone()),
            (2, vec![a.clone(), b.clone()])
        );
        assert!(!list.truncated());
        let short = presence.list("room", 1);
        assert_eq!((short.count, short.clients.len()), (2, 1));
        assert!(short.truncated());
        assert!(presence.contains("room", &a));
        assert!(presence.leave("room", &a));
        assert!(!presence.contains("room", &a));
        assert!(!presence.leave("room", &a));
        assert!(!presence.leave("nowhere", &a));
        assert!(presence.leave("room", &b));
        assert_eq!(presence.list("room", 10), PresenceList::default());
        assert_eq!(presence.len(), 1);
        assert_eq!(presence.snapshot(), vec![(Arc::from("other"), vec![a])]);
    }

    #[test]
    fn node_ids_are_sixteen_hex_digits_and_differ() {
        let (a, b) = (node_id(), node_id());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
