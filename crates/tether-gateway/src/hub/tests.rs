//! The hub without sockets: publish checks, listings, metrics, subscribe with resume racing
//! publishes, and a failing backplane.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::*;

fn drain(member: &Member) -> Vec<Arc<Record>> {
    let mut out = VecDeque::new();
    let mut cx = Context::from_waker(Waker::noop());
    while let Poll::Ready(Ok(())) = member.outbox().poll_take(&mut cx, &mut out, usize::MAX) {}
    out.into_iter().map(|q| q.record).collect()
}

fn offsets(records: &[Arc<Record>]) -> Vec<u64> {
    records.iter().map(|r| r.position().offset).collect()
}

async fn publish_n(hub: &Hub, topic: &str, n: usize) -> Position {
    let mut last = None;
    for i in 0..n {
        last = Some(
            hub.publish(topic, Bytes::from(i.to_string()), None)
                .await
                .unwrap(),
        );
    }
    last.unwrap()
}

#[tokio::test]
async fn publish_checks_the_topic_and_the_size() {
    let hub = Hub::new(HubConfig {
        queue_bytes: 1024,
        ..HubConfig::default()
    });
    assert!(matches!(
        hub.publish("a.*", Bytes::from_static(b"1"), None).await,
        Err(PublishError::InvalidTopic(_))
    ));
    assert!(matches!(
        hub.publish("", Bytes::from_static(b"1"), None).await,
        Err(PublishError::InvalidTopic(_))
    ));
    let big = Bytes::from(vec![b'1'; 1000]);
    let err = hub.publish("t", big, None).await.unwrap_err();
    assert_eq!(err, PublishError::TooLarge { limit: 1024 });
    assert!(err.to_string().contains("1024"));
    let position = hub
        .publish("t", Bytes::from_static(b"[1]"), None)
        .await
        .unwrap();
    assert_eq!(position.offset, 1);
    assert_eq!(hub.stats().publishes(), 1);
}

#[test]
fn data_that_is_not_json_becomes_a_json_string() {
    assert_eq!(
        as_json(Bytes::from_static(b" {\"a\": 1}\n")),
        " {\"a\": 1}\n"
    );
    assert_eq!(
        as_json(Bytes::from_static(b"hello \"you\"")),
        r#""hello \"you\"""#
    );
    assert_eq!(as_json(Bytes::new()), r#""""#);
    assert_eq!(as_json(Bytes::from_static(b"\xff")), "\"\u{fffd}\"");
}

#[tokio::test]
async fn topics_metrics_and_health() {
    let hub = Hub::new(HubConfig::default());
    publish_n(&hub, "b.x", 3).await;
    publish_n(&hub, "a", 1).await;
    let mut member = Member::new(hub.clone());
    member
        .subscribe(Pattern::parse("b.*").unwrap(), Resume::Live)
        .await
        .unwrap();
    let topics = hub.topics();
    assert_eq!(topics.len(), 2);
    assert_eq!(
        (
            topics[0].topic.as_str(),
            topics[0].subscribers,
            topics[0].offset
        ),
        ("a", 0, 1)
    );
    assert_eq!(
        (
            topics[1].topic.as_str(),
            topics[1].subscribers,
            topics[1].retained
        ),
        ("b.x", 1, 3)
    );
    assert_eq!(topics[1].epoch.len(), 16);
    let mut metrics = String::new();
    hub.render_metrics(&mut metrics);
    assert!(metrics.contains("\ntether_pubsub_topics 2\n"), "{metrics}");
    assert!(metrics.contains("\ntether_pubsub_subscriptions 1\n"));
    assert!(metrics.contains("\ntether_pubsub_publishes_total 4\n"));
    assert_eq!(hub.health(), Health::Ok);
    drop(member);
    assert_eq!(hub.stats().subscriptions(), 0);
    assert_eq!(hub.topics()[1].subscribers, 0);
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_once_and_unsubscribe_stops_delivery() {
    let hub = Hub::new(HubConfig::default());
    let mut member = Member::new(hub.clone());
    for pattern in ["a.b", "a.*", "*"] {
        member
            .subscribe(Pattern::parse(pattern).unwrap(), Resume::Live)
            .await
            .unwrap();
    }
    publish_n(&hub, "a.b", 2).await;
    assert_eq!(offsets(&drain(&member)), [1, 2]);
    assert!(member.unsubscribe(&Pattern::parse("*").unwrap()));
    assert!(member.unsubscribe(&Pattern::parse("a.*").unwrap()));
    assert!(!member.unsubscribe(&Pattern::parse("a.*").unwrap()));
    publish_n(&hub, "a.c", 1).await;
    publish_n(&hub, "a.b", 1).await;
    let got: Vec<_> = drain(&member)
        .iter()
        .map(|r| r.topic().to_string())
        .collect();
    assert_eq!(got, ["a.b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_races_publishes_without_gap_or_duplicate() {
    let hub = Hub::new(HubConfig {
        history_count: 100_000,
        ..HubConfig::default()
    });
    let first = publish_n(&hub, "t", 100).await;
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move { publish_n(&hub, "t", 5000).await })
    };
    let mut member = Member::new(hub.clone());
    let since = Position {
        epoch: first.epoch,
        offset: 50,
    };
    let acks = member
        .subscribe(Pattern::parse("t").unwrap(), Resume::After(since))
        .await
        .unwrap();
    assert_eq!(acks[0].recovered, Some(true));
    let last = publisher.await.unwrap();
    let got = offsets(&drain(&member));
    let expected: Vec<u64> = (51..=last.offset).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_pattern_resume_covers_known_new_and_vanished_topics() {
    let hub = Hub::new(HubConfig::default());
    let known = publish_n(&hub, "p.known", 3).await;
    publish_n(&hub, "p.new", 2).await;
    let mut since = BTreeMap::new();
    since.insert("p.known".to_owned(), Position { offset: 1, ..known });
    let gone = Position {
        epoch: Epoch::from_u64(1),
        offset: 9,
    };
    since.insert("p.gone".to_owned(), gone);
    let mut member = Member::new(hub.clone());
    let acks = member
        .subscribe(Pattern::parse("p.*").unwrap(), Resume::Topics(&since))
        .await
        .unwrap();
    let summary: Vec<_> = acks
        .iter()
        .map(|a| (a.topic.to_string(), a.position.offset, a.recovered))
        .collect();
    assert_eq!(
        summary,
        [
            ("p.gone".to_owned(), 0, Some(false)),
            ("p.known".to_owned(), 3, Some(true)),
            ("p.new".to_owned(), 2, Some(true)),
        ]
    );
    let got: Vec<_> = drain(&member)
        .iter()
        .map(|r| (r.topic().to_string(), r.position().offset))
        .collect();
    assert_eq!(
        got,
        [
            ("p.known".to_owned(), 2),
            ("p.known".to_owned(), 3),
            ("p.new".to_owned(), 1),
            ("p.new".to_owned(), 2)
        ]
    );
}

fn presence_hub(max_clients: usize) -> Arc<Hub> {
    Hub::new(HubConfig {
        presence_max_clients: max_clients,
        topics: vec![TopicPolicy {
            pattern: "room.*".into(),
            history_count: None,
            history_age_secs: None,
            latest_per_key: false,
            slow_consumer: None,
            presence: true,
        }],
        ..HubConfig::default()
    })
}

fn clients(list: &PresenceList) -> Vec<(String, Option<String>)> {
    list.clients
        .iter()
        .map(|e| (e.client.clone(), e.user.clone()))
        .collect()
}

#[tokio::test]
async fn presence_counts_exact_subscriptions_once_and_leaves_on_unsubscribe_and_drop() {
    let hub = presence_hub(10);
    let p = |s| Pattern::parse(s).unwrap();
    let mut alice = Member::identified(hub.clone(), Some("alice"));
    let mut anonymous = Member::new(hub.clone());
    assert!(alice.presence_entry().client.starts_with(hub.node_id()));
    assert_ne!(
        alice.presence_entry().client,
        anonymous.presence_entry().client
    );
    for _ in 0..3 {
        alice.subscribe(p("room.a"), Resume::Live).await.unwrap();
    }
    // A pattern does not count, nor a topic without presence.
    anonymous
        .subscribe(p("room.*"), Resume::Live)
        .await
        .unwrap();
    anonymous.subscribe(p("other"), Resume::Live).await.unwrap();
    let list = hub.presence("room.a").await.unwrap();
    assert_eq!(list.count, 1);
    let alice_entry = (alice.presence_entry().client.clone(), Some("alice".into()));
    assert_eq!(clients(&list), std::slice::from_ref(&alice_entry));
    anonymous
        .subscribe(p("room.a"), Resume::Live)
        .await
        .unwrap();
    let list = hub.presence("room.a").await.unwrap();
    assert_eq!(list.count, 2);
    assert!(clients(&list).contains(&(anonymous.presence_entry().client.clone(), None)));
    let mut metrics = String::new();
    hub.render_metrics(&mut metrics);
    assert!(
        metrics.contains("\ntether_presence_entries 2\n"),
        "{metrics}"
    );
    assert!(anonymous.unsubscribe(&p("room.a")));
    assert_eq!(
        clients(&hub.presence("room.a").await.unwrap()),
        [alice_entry]
    );
    // Unsubscribing the pattern leaves the presence alone; dropping the member leaves.
    alice.subscribe(p("room.*"), Resume::Live).await.unwrap();
    assert!(alice.unsubscribe(&p("room.*")));
    assert_eq!(hub.presence("room.a").await.unwrap().count, 1);
    drop(alice);
    assert_eq!(
        hub.presence("room.a").await.unwrap(),
        PresenceList::default()
    );
    drop(anonymous);
    let mut metrics = String::new();
    hub.render_metrics(&mut metrics);
    assert!(
        metrics.contains("\ntether_presence_entries 0\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn presence_queries_are_checked_and_truncated() {
    let hub = presence_hub(2);
    assert!(matches!(
        hub.presence("room.*").await,
        Err(PresenceError::InvalidTopic(_))
    ));
    let err = hub.presence("other").await.unwrap_err();
    assert_eq!(err, PresenceError::NotEnabled("other".into()));
    assert!(err.to_string().contains("presence = true"), "{err}");
    let mut members = Vec::new();
    for _ in 0..3 {
        let mut member = Member::new(hub.clone());
        member
            .subscribe(Pattern::parse("room.big").unwrap(), Resume::Live)
            .await
            .unwrap();
        members.push(member);
    }
    let list = hub.presence("room.big").await.unwrap();
    assert_eq!((list.count, list.clients.len()), (3, 2));
    assert!(list.truncated());
}

/// A backplane that is down.
struct Down;

impl Backplane for Down {
    fn attach(&self, _sink: Arc<dyn RecordSink>) {}
    fn publish(&self, _p: Publication) -> BoxFuture<'_, Result<Position, BackplaneError>> {
        Box::pin(async { Err(BackplaneError("down".into())) })
    }
    fn replay<'a>(
        &'a self,
        _topic: &'a str,
        _from: ReplayFrom,
        _history: HistoryPolicy,
    ) -> BoxFuture<'a, Result<Replay, BackplaneError>> {
        Box::pin(async { Err(BackplaneError("down".into())) })
    }
    fn topics_matching<'a>(
        &'a self,
        _pattern: &'a Pattern,
    ) -> BoxFuture<'a, Result<Vec<Arc<str>>, BackplaneError>> {
        Box::pin(async { Err(BackplaneError("down".into())) })
    }
    fn watch<'a>(&'a self, _pattern: &'a Pattern) -> BoxFuture<'a, Result<(), BackplaneError>> {
        Box::pin(async { Ok(()) })
    }
    fn unwatch(&self, _pattern: &Pattern) {}
    fn topics(&self) -> Vec<TopicState> {
        Vec::new()
    }
    fn health(&self) -> Health {
        Health::Degraded("down".into())
    }
    fn join_presence<'a>(
        &'a self,
        _topic: &'a str,
        _entry: &'a PresenceEntry,
    ) -> BoxFuture<'a, Result<(), BackplaneError>> {
        Box::pin(async { Err(BackplaneError("down".into())) })
    }
    fn leave_presence(&self, _topic: &str, _entry: &PresenceEntry) {}
    fn presence<'a>(
        &'a self,
        _topic: &'a str,
        _limit: usize,
    ) -> BoxFuture<'a, Result<PresenceList, BackplaneError>> {
        Box::pin(async { Err(BackplaneError("down".into())) })
    }
    fn local_presence_entries(&self) -> usize {
        0
    }
}

#[tokio::test]
async fn a_failing_backplane_fails_requests_and_leaves_nothing_behind() {
    let hub = Hub::with_backplane(HubConfig::default(), Arc::new(Down));
    assert_eq!(
        hub.publish("t", Bytes::from_static(b"1"), None).await,
        Err(PublishError::Backplane("down".into()))
    );
    let mut member = Member::new(hub.clone());
    let pattern = Pattern::parse("t").unwrap();
    assert!(
        member
            .subscribe(pattern.clone(), Resume::Live)
            .await
            .is_err()
    );
    assert!(!member.is_subscribed(&pattern));
    assert_eq!(hub.stats().subscriptions(), 0);
    assert_eq!(hub.health(), Health::Degraded("down".into()));
    let enabled = Hub::with_backplane(
        HubConfig {
            topics: vec![TopicPolicy {
                pattern: "*".into(),
                history_count: None,
                history_age_secs: None,
                latest_per_key: false,
                slow_consumer: None,
                presence: true,
            }],
            ..HubConfig::default()
        },
        Arc::new(Down),
    );
    assert_eq!(
        enabled.presence("t").await,
        Err(PresenceError::Backplane("down".into()))
    );
}

#[test]
fn serve_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let hub = Hub::new(HubConfig::default());
    let (a, _b) = tokio::io::duplex(64);
    let conn = tether_proto::Connection::server(tether_proto::Config::default(), None);
    let ws = tether::WebSocket::from_connection(a, conn, Default::default(), &[]);
    let (_tx, rx) = watch::channel(false);
    let serve = hub.serve(ws, Permissions::allow_all(), rx);
    assert_send(&serve);
}
