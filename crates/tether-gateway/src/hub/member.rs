//! One connection's membership in the hub: its subscriptions, its outbound queue, and
//! subscribe with resume.
//!
//! Subscribe is gap-free and duplicate-free while publishes race with it. The queue starts
//! holding live records aside, the subscription is registered (from here on every new record
//! reaches the queue), and only then is history read: a record is either in the replay or
//! delivered live after registration (the backplane makes a record visible to replay before
//! delivering it). The queue then emits the replay, moves the topic's cursor to the replayed
//! position, and releases the held records above it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::backplane::{BackplaneError, ReplayFrom};
use super::pattern::Pattern;
use super::presence::PresenceEntry;
use super::queue::{Outbox, Synced};
use super::record::Position;
use super::registry::{ConnectionId, Subscriber};
use super::{Hub, write};

/// Where a subscribe starts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Resume<'a> {
    /// Live messages only.
    Live,
    /// After this position of the (exact) topic.
    After(Position),
    /// After these positions, per topic; a matching topic missing here is replayed from its
    /// start (it is new to the client).
    Topics(&'a BTreeMap<String, Position>),
}

/// What a subscribe reports for one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TopicAck {
    pub(crate) topic: Arc<str>,
    /// Live messages after this position follow.
    pub(crate) position: Position,
    /// For a resume: whether everything missed was still retained.
    pub(crate) recovered: Option<bool>,
}

/// A connection of the hub. Dropping it removes its subscriptions.
#[derive(Debug)]
pub(crate) struct Member {
    hub: Arc<Hub>,
    id: ConnectionId,
    outbox: Arc<Outbox>,
    subscriptions: Vec<Pattern>,
    /// The connection's presence entry: its client id and user.
    presence: PresenceEntry,
    /// The topics whose presence it joined (exact subscriptions of presence topics).
    present: Vec<Arc<str>>,
}

impl Member {
    /// A connection with no subscriptions yet, and no user.
    #[cfg(test)]
    pub(crate) fn new(hub: Arc<Hub>) -> Member {
        Member::identified(hub, None)
    }

    /// A connection of `user` (as presence lists it) with no subscriptions yet. Its client
    /// id is the node's id and a sequence number: unique across nodes.
    pub(crate) fn identified(hub: Arc<Hub>, user: Option<&str>) -> Member {
        let id = hub.next_connection.fetch_add(1, Ordering::Relaxed);
        Member {
            id,
            outbox: Arc::new(Outbox::new(hub.queue_bytes)),
            presence: PresenceEntry::new(format!("{}-{id}", hub.node_id), user),
            hub,
            subscriptions: Vec::new(),
            present: Vec::new(),
        }
    }

    /// The connection's presence entry.
    #[cfg(test)]
    pub(crate) fn presence_entry(&self) -> &PresenceEntry {
        &self.presence
    }

    /// The connection's outbound queue.
    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The hub.
    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// How many subscriptions the connection has.
    pub(crate) fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    /// Whether the connection subscribes to exactly `pattern`.
    pub(crate) fn is_subscribed(&self, pattern: &Pattern) -> bool {
        self.subscriptions.contains(pattern)
    }

    /// Subscribes to `pattern` (again: a repeated subscribe replays per `resume` and keeps
    /// one subscription) and queues the replayed history. Returns the position of every topic
    /// synced, in topic order.
    pub(crate) async fn subscribe(
        &mut self,
        pattern: Pattern,
        resume: Resume<'_>,
    ) -> Result<Vec<TopicAck>, BackplaneError> {
        self.outbox.begin_sync();
        let new = !self.is_subscribed(&pattern);
        if new {
            let subscriber = Subscriber {
                id: self.id,
                outbox: self.outbox.clone(),
            };
            write(&self.hub.registry).add(&pattern, subscriber);
            self.hub.stats.add_subscriptions(1);
            self.subscriptions.push(pattern.clone());
        }
        match self.replay(&pattern, resume, new).await {
            Ok(synced) => {
                let acks = synced
                    .iter()
                    .map(|s| TopicAck {
                        topic: s.topic.clone(),
                        position: s.replay.position,
                        recovered: (!matches!(resume, Resume::Live)).then_some(s.replay.recovered),
                    })
                    .collect();
                self.outbox.finish_sync(&synced);
                if new {
                    self.join_presence(&pattern).await;
                }
                Ok(acks)
            }
            Err(e) => {
                self.outbox.finish_sync(&[]);
                if new {
                    self.unsubscribe(&pattern);
                }
                Err(e)
            }
        }
    }

    /// Joins the presence of `pattern` if it is a topic that keeps presence. A backplane
    /// failure does not fail the subscribe: the backplane shares the entry once it works.
    async fn join_presence(&mut self, pattern: &Pattern) {
        let Some(topic) = pattern.as_exact() else {
            return;
        };
        if !self.hub.policies.for_topic(topic).presence || self.is_present(topic) {
            return;
        }
        self.present.push(topic.into());
        if let Err(e) = self
            .hub
            .backplane
            .join_presence(topic, &self.presence)
            .await
        {
            tracing::debug!(client = %self.presence.client, topic, "presence join deferred: {e}");
        }
    }

    /// Whether the connection is in the presence of `topic`.
    pub(crate) fn is_present(&self, topic: &str) -> bool {
        self.present.iter().any(|t| &**t == topic)
    }

    async fn replay(
        &self,
        pattern: &Pattern,
        resume: Resume<'_>,
        new: bool,
    ) -> Result<Vec<Synced>, BackplaneError> {
        let backplane = &self.hub.backplane;
        if new {
            backplane.watch(pattern).await?;
        }
        let mut topics: Vec<Arc<str>> = match pattern {
            Pattern::Exact(topic) => vec![topic.as_str().into()],
            _ => backplane.topics_matching(pattern).await?,
        };
        if let (Resume::Topics(since), false) = (resume, pattern.as_exact().is_some()) {
            // Topics the client knew may be gone (a restart): they are synced too, so the
            // client learns `recovered: false` for them.
            topics.extend(
                since
                    .keys()
                    .filter(|t| pattern.matches(t))
                    .map(|t| Arc::from(t.as_str())),
            );
        }
        topics.sort();
        topics.dedup();
        let mut synced = Vec::with_capacity(topics.len());
        for topic in topics {
            let from = match resume {
                Resume::Live => ReplayFrom::Now,
                Resume::After(position) => ReplayFrom::After(position),
                Resume::Topics(since) => since
                    .get(&*topic)
                    .map_or(ReplayFrom::Start, |p| ReplayFrom::After(*p)),
            };
            let settings = self.hub.policies.for_topic(&topic);
            let replay = backplane.replay(&topic, from, settings.history).await?;
            synced.push(Synced {
                topic,
                replay,
                policy: settings.slow_consumer,
            });
        }
        Ok(synced)
    }

    /// Removes the subscription to exactly `pattern`; `false` if there was none. Queued
    /// messages of topics no other subscription covers are dropped.
    pub(crate) fn unsubscribe(&mut self, pattern: &Pattern) -> bool {
        let Some(index) = self.subscriptions.iter().position(|p| p == pattern) else {
            return false;
        };
        self.subscriptions.swap_remove(index);
        self.unregister(pattern);
        if let Some(topic) = pattern.as_exact()
            && let Some(index) = self.present.iter().position(|t| &**t == topic)
        {
            self.present.swap_remove(index);
            self.hub.backplane.leave_presence(topic, &self.presence);
        }
        let remaining = &self.subscriptions;
        self.outbox
            .retain_topics(|topic| remaining.iter().any(|p| p.matches(topic)));
        true
    }

    fn unregister(&self, pattern: &Pattern) {
        let mut registry = write(&self.hub.registry);
        if registry.remove(pattern, self.id) == Some(true) {
            // Under the registry lock, so a subscriber arriving now watches after this.
            self.hub.backplane.unwatch(pattern);
        }
        self.hub.stats.remove_subscriptions(1);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        for pattern in std::mem::take(&mut self.subscriptions) {
            self.unregister(&pattern);
        }
        for topic in std::mem::take(&mut self.present) {
            self.hub.backplane.leave_presence(&topic, &self.presence);
        }
        self.outbox.close();
    }
}
