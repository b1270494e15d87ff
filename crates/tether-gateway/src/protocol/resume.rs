//! The client side of resuming: [`Resume`] remembers, per topic, the position of the last
//! message handled, builds the `subscribe` requests that continue from there after a
//! reconnect, and sorts incoming messages into new, duplicate or after a gap. `tether sub`
//! uses it; any client of `tether.pubsub.v1` can.
//!
//! ```
//! use tether_gateway::protocol::resume::{Continuity, Resume};
//! use tether_gateway::protocol::ServerMessage;
//!
//! let mut resume = Resume::new(["chat.*".to_string()]).unwrap();
//! // First connection: live messages only.
//! let requests = resume.subscribe_requests();
//! assert!(requests[0].to_json().contains("\"topic\":\"chat.*\""));
//! let ack = r#"{"type":"ack","id":0,"topics":{"chat.lobby":{"epoch":"00000000000000aa","offset":7}}}"#;
//! let ServerMessage::Ack(ack) = ServerMessage::parse(ack).unwrap() else { unreachable!() };
//! resume.on_ack(&ack);
//! // After a reconnect, the subscribe resumes after offset 7.
//! let again = resume.subscribe_requests()[0].to_json();
//! assert!(again.contains(r#""since":{"chat.lobby":{"epoch":"00000000000000aa","offset":7}}"#));
//! ```

use std::collections::BTreeMap;

use super::{Ack, Delivery, Request, RequestId, Since};
use crate::hub::{Epoch, Pattern, Position};

/// How a delivered message relates to what was handled before on its topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Continuity {
    /// The next message: handle it.
    Next,
    /// At or before the last position handled (a replay overlapping what was seen): skip it.
    Duplicate,
    /// Later than the next one: `missing` messages were dropped for this client (a slow
    /// consumer policy) or are no longer in history. Handle it.
    Gap {
        /// How many offsets were skipped.
        missing: u64,
    },
    /// The topic's history was reset (another epoch): what the client knew is gone. Handle
    /// it; the client may want to reload the topic's state.
    NewEpoch {
        /// The epoch the client knew.
        was: Epoch,
    },
    /// The first message of a topic the client had no position for.
    First,
}

/// What to subscribe to and where each topic stands.
#[derive(Clone, Debug)]
pub struct Resume {
    subscriptions: Vec<(String, Pattern)>,
    positions: BTreeMap<String, Position>,
    /// Whether a subscribe was acknowledged once: from then on a pattern resumes with its
    /// (possibly empty) map, so topics created while disconnected are replayed in full.
    synced: bool,
}

impl Resume {
    /// Subscriptions to exact topics, `prefix.*` patterns or `*`; the error names a bad one.
    pub fn new(subscriptions: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let subscriptions = subscriptions
            .into_iter()
            .map(|text| Pattern::parse(&text).map(|p| (text, p)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Resume {
            subscriptions,
            positions: BTreeMap::new(),
            synced: false,
        })
    }

    /// Starts `topic` after `position` (for history: `tether sub --since`): the first
    /// subscribe then asks for what followed it.
    pub fn start_after(&mut self, topic: &str, position: Position) {
        self.positions.insert(topic.to_string(), position);
    }

    /// The position of the last message handled on `topic` (or its subscribe ack's).
    pub fn position(&self, topic: &str) -> Option<Position> {
        self.positions.get(topic).copied()
    }

    /// One `subscribe` per subscription, with `id` its index, resuming where each topic
    /// stands: an exact topic after its position, a pattern after the positions of the topics
    /// it matches (after the first ack, topics it does not list are replayed from their
    /// start, per `docs/PROTOCOL.md`).
    pub fn subscribe_requests(&self) -> Vec<Request> {
        self.subscriptions
            .iter()
            .enumerate()
            .map(|(i, (text, pattern))| {
                let since = match pattern {
                    Pattern::Exact(topic) => {
                        self.positions.get(topic).copied().map(Since::Position)
                    }
                    _ => {
                        let known: BTreeMap<String, Position> = self
                            .positions
                            .iter()
                            .filter(|(topic, _)| pattern.matches(topic))
                            .map(|(topic, position)| (topic.clone(), *position))
                            .collect();
                        (self.synced || !known.is_empty()).then_some(Since::Topics(known))
                    }
                };
                Request::Subscribe {
                    id: Some(RequestId::Number(i as u64)),
                    topic: text.clone(),
                    since,
                }
            })
            .collect()
    }

    /// Records a `subscribe` ack: topics without a position start at the ack's (the
    /// messages that follow it are new); topics with one keep it, since the replay that
    /// follows the ack starts after it.
    pub fn on_ack(&mut self, ack: &Ack) {
        if let Some(topics) = &ack.topics {
            self.synced = true;
            for (topic, status) in topics {
                self.positions
                    .entry(topic.clone())
                    .or_insert_with(|| status.position());
            }
        }
    }

    /// Sorts a delivered message and, unless it is a [`Continuity::Duplicate`], records its
    /// position as handled.
    pub fn on_delivery(&mut self, delivery: &Delivery) -> Continuity {
        let position = delivery.position();
        let continuity = match self.positions.get(&delivery.topic) {
            None => Continuity::First,
            Some(last) if last.epoch != position.epoch => Continuity::NewEpoch { was: last.epoch },
            Some(last) if position.offset <= last.offset => Continuity::Duplicate,
            Some(last) if position.offset == last.offset + 1 => Continuity::Next,
            Some(last) => Continuity::Gap {
                missing: position.offset - last.offset - 1,
            },
        };
        if continuity != Continuity::Duplicate {
            self.positions.insert(delivery.topic.clone(), position);
        }
        continuity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ServerMessage;

    fn delivery(topic: &str, epoch: u64, offset: u64) -> Delivery {
        let text = format!(
            r#"{{"type":"message","topic":"{topic}","epoch":"{epoch:016x}","offset":{offset},"ts":1,"data":null}}"#
        );
        match ServerMessage::parse(&text).unwrap() {
            ServerMessage::Message(d) => d,
            other => panic!("{other:?}"),
        }
    }

    fn at(epoch: u64, offset: u64) -> Position {
        Position {
            epoch: Epoch::from_u64(epoch),
            offset,
        }
    }

    #[test]
    fn an_exact_topic_resumes_after_the_last_message_handled() {
        let mut resume = Resume::new(["news".to_string()]).unwrap();
        assert_eq!(
            resume.subscribe_requests()[0].to_json(),
            r#"{"type":"subscribe","id":0,"topic":"news"}"#
        );
        assert_eq!(
            resume.on_delivery(&delivery("news", 1, 4)),
            Continuity::First
        );
        assert_eq!(
            resume.on_delivery(&delivery("news", 1, 5)),
            Continuity::Next
        );
        assert_eq!(
            resume.subscribe_requests()[0].to_json(),
            r#"{"type":"subscribe","id":0,"topic":"news","since":{"epoch":"0000000000000001","offset":5}}"#
        );
    }

    #[test]
    fn replays_that_overlap_are_duplicates_and_holes_are_gaps() {
        let mut resume = Resume::new(["news".to_string()]).unwrap();
        resume.start_after("news", at(1, 5));
        assert_eq!(
            resume.on_delivery(&delivery("news", 1, 5)),
            Continuity::Duplicate
        );
        assert_eq!(
            resume.on_delivery(&delivery("news", 1, 3)),
            Continuity::Duplicate
        );
        assert_eq!(resume.position("news"), Some(at(1, 5)));
        assert_eq!(
            resume.on_delivery(&delivery("news", 1, 9)),
            Continuity::Gap { missing: 3 }
        );
        assert_eq!(
            resume.on_delivery(&delivery("news", 2, 1)),
            Continuity::NewEpoch {
                was: Epoch::from_u64(1)
            }
        );
        assert_eq!(resume.position("news"), Some(at(2, 1)));
    }

    #[test]
    fn acks_give_a_start_only_to_topics_without_one() {
        let mut resume = Resume::new(["a.*".to_string(), "b".to_string()]).unwrap();
        resume.start_after("b", at(7, 2));
        let ack = r#"{"type":"ack","id":0,"topics":{"a.x":{"epoch":"0000000000000007","offset":3},"b":{"epoch":"0000000000000007","offset":9,"recovered":true}}}"#;
        let ServerMessage::Ack(ack) = ServerMessage::parse(ack).unwrap() else {
            panic!()
        };
        resume.on_ack(&ack);
        assert_eq!(resume.position("a.x"), Some(at(7, 3)));
        // The replay of 3..=9 follows the ack: b stays where it was.
        assert_eq!(resume.position("b"), Some(at(7, 2)));
        let requests: Vec<String> = resume
            .subscribe_requests()
            .iter()
            .map(Request::to_json)
            .collect();
        assert_eq!(
            requests,
            [
                r#"{"type":"subscribe","id":0,"topic":"a.*","since":{"a.x":{"epoch":"0000000000000007","offset":3}}}"#,
                r#"{"type":"subscribe","id":1,"topic":"b","since":{"epoch":"0000000000000007","offset":2}}"#,
            ]
        );
    }

    #[test]
    fn a_pattern_with_no_topics_yet_resumes_with_an_empty_map_after_its_first_ack() {
        let mut resume = Resume::new(["*".to_string()]).unwrap();
        assert_eq!(
            resume.subscribe_requests()[0].to_json(),
            r#"{"type":"subscribe","id":0,"topic":"*"}"#
        );
        let ServerMessage::Ack(ack) =
            ServerMessage::parse(r#"{"type":"ack","id":0,"topics":{}}"#).unwrap()
        else {
            panic!()
        };
        resume.on_ack(&ack);
        // Topics created while disconnected are then replayed from their start.
        assert_eq!(
            resume.subscribe_requests()[0].to_json(),
            r#"{"type":"subscribe","id":0,"topic":"*","since":{}}"#
        );
        assert!(Resume::new(["bad topic".to_string()]).is_err());
    }
}
