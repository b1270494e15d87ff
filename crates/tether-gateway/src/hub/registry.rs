//! Node-local fan-out: which connections subscribe to what, and the delivery of each record
//! to their queues.
//!
//! Exact subscriptions are found by topic, prefix subscriptions by each prefix of the topic
//! that ends at a dot (`a.`, `a.b.` for `a.b.c`), and `*` under the empty prefix: a publish
//! costs one lookup per segment, whatever the number of subscriptions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use super::backplane::RecordSink;
use super::pattern::Pattern;
use super::queue::Outbox;
use super::record::Record;
use super::{Hub, read};

/// Identifies one connection within the hub.
pub(crate) type ConnectionId = u64;

/// One connection's entry under one pattern.
#[derive(Clone, Debug)]
pub(crate) struct Subscriber {
    pub(crate) id: ConnectionId,
    pub(crate) outbox: Arc<Outbox>,
}

/// The subscriptions of this node's connections.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    exact: HashMap<Arc<str>, Vec<Subscriber>>,
    /// By prefix: `"a.b."` for `a.b.*`, `""` for `*`.
    prefixes: HashMap<Arc<str>, Vec<Subscriber>>,
}

impl Registry {
    fn list<'a>(
        &'a mut self,
        pattern: &'a Pattern,
    ) -> (&'a mut HashMap<Arc<str>, Vec<Subscriber>>, &'a str) {
        match pattern {
            Pattern::Exact(topic) => (&mut self.exact, topic),
            Pattern::Prefix(prefix) => (&mut self.prefixes, prefix),
            Pattern::All => (&mut self.prefixes, ""),
        }
    }

    /// Adds a subscriber; `true` when it is the first on this node for `pattern`.
    pub(crate) fn add(&mut self, pattern: &Pattern, subscriber: Subscriber) -> bool {
        let (map, key) = self.list(pattern);
        let list = map.entry(key.into()).or_default();
        list.push(subscriber);
        list.len() == 1
    }

    /// Removes connection `id` from `pattern`: `None` if it was not there, `Some(true)` when
    /// it was the last subscriber of the pattern on this node.
    pub(crate) fn remove(&mut self, pattern: &Pattern, id: ConnectionId) -> Option<bool> {
        let (map, key) = self.list(pattern);
        let list = map.get_mut(key)?;
        let index = list.iter().position(|s| s.id == id)?;
        list.swap_remove(index);
        if list.is_empty() {
            map.remove(key);
            return Some(true);
        }
        Some(false)
    }

    /// Calls `f` for every subscription that matches `topic` (a connection with overlapping
    /// subscriptions comes once per subscription; its queue removes the duplicates).
    pub(crate) fn for_each_match(&self, topic: &str, mut f: impl FnMut(&Subscriber)) {
        let lists = self
            .exact
            .get(topic)
            .into_iter()
            .chain(self.prefixes.get(""))
            .chain(
                topic
                    .match_indices('.')
                    .filter_map(|(i, _)| self.prefixes.get(&topic[..=i])),
            );
        for list in lists {
            list.iter().for_each(&mut f);
        }
    }

    /// How many connections receive `topic`.
    pub(crate) fn count_matching(&self, topic: &str) -> usize {
        let mut ids = HashSet::new();
        self.for_each_match(topic, |s| {
            ids.insert(s.id);
        });
        ids.len()
    }
}

/// The hub's side of the backplane: records go to the queues of matching subscribers. Holds
/// the hub weakly, so the backplane (owned by the hub) does not keep it alive.
pub(crate) struct Fanout(pub(crate) Weak<Hub>);

impl RecordSink for Fanout {
    fn deliver(&self, record: Arc<Record>) {
        let Some(hub) = self.0.upgrade() else { return };
        let registry = read(&hub.registry);
        let mut policy = None;
        registry.for_each_match(record.topic(), |subscriber| {
            let policy =
                *policy.get_or_insert_with(|| hub.policies.for_topic(record.topic()).slow_consumer);
            subscriber.outbox.push(&record, policy, &hub.stats);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriber(id: ConnectionId) -> Subscriber {
        Subscriber {
            id,
            outbox: Arc::new(Outbox::new(1 << 20)),
        }
    }

    fn matching(registry: &Registry, topic: &str) -> Vec<ConnectionId> {
        let mut ids = Vec::new();
        registry.for_each_match(topic, |s| ids.push(s.id));
        ids.sort_unstable();
        ids
    }

    #[test]
    fn exact_prefix_and_all_subscriptions_match() {
        let p = |s| Pattern::parse(s).unwrap();
        let mut registry = Registry::default();
        assert!(registry.add(&p("a.b.c"), subscriber(1)));
        assert!(registry.add(&p("a.*"), subscriber(2)));
        assert!(registry.add(&p("a.b.*"), subscriber(3)));
        assert!(registry.add(&p("*"), subscriber(4)));
        assert!(!registry.add(&p("a.*"), subscriber(5)));
        assert_eq!(matching(&registry, "a.b.c"), [1, 2, 3, 4, 5]);
        assert_eq!(matching(&registry, "a.b"), [2, 4, 5]);
        assert_eq!(matching(&registry, "a"), [4]);
        assert_eq!(matching(&registry, "ab.c"), [4]);
        assert_eq!(registry.count_matching("a.b.c"), 5);
    }

    #[test]
    fn removing_reports_the_last_subscriber() {
        let p = |s| Pattern::parse(s).unwrap();
        let mut registry = Registry::default();
        registry.add(&p("a.*"), subscriber(1));
        registry.add(&p("a.*"), subscriber(2));
        registry.add(&p("a.*"), subscriber(2));
        assert_eq!(registry.count_matching("a.x"), 2);
        assert_eq!(registry.remove(&p("a.*"), 7), None);
        assert_eq!(registry.remove(&p("b"), 1), None);
        assert_eq!(registry.remove(&p("a.*"), 1), Some(false));
        assert_eq!(registry.remove(&p("a.*"), 2), Some(false));
        assert_eq!(registry.remove(&p("a.*"), 2), Some(true));
        assert_eq!(matching(&registry, "a.x"), Vec::<ConnectionId>::new());
    }
}
