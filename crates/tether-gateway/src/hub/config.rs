//! The hub's settings (the `[hub]` table of the gateway's config file) and their resolution
//! into the policy of one topic.

use std::time::Duration;

use serde::Deserialize;

use super::pattern::Pattern;
use super::topic::HistoryPolicy;

/// The smallest allowed `queue_bytes`.
const MIN_QUEUE_BYTES: usize = 1024;

/// The largest allowed history age: one year.
const MAX_HISTORY_AGE_SECS: u64 = 365 * 24 * 3600;

/// Settings of the pub/sub hub.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// Messages retained per topic for resume. Default 1000. Bounds history memory to this
    /// many messages per topic.
    pub history_count: usize,
    /// Seconds a message is retained for resume. Default 300.
    pub history_age_secs: u64,
    /// The per-connection outbound queue bound, in bytes of encoded messages. Default 1 MiB.
    /// A published message (its encoded `message` envelope) larger than this is refused.
    /// A number of bytes or a string with a unit (`"1 MiB"`).
    #[serde(deserialize_with = "crate::config::units::size")]
    pub queue_bytes: usize,
    /// What happens to a subscriber whose queue is over `queue_bytes`. Default `disconnect`.
    pub slow_consumer: SlowConsumerPolicy,
    /// Per-topic overrides; the first entry whose pattern matches a topic applies.
    pub topics: Vec<TopicPolicy>,
    /// Where topics' order, offsets and history live. Default `memory` (this node only);
    /// `redis` shares them between every node on the same Redis (`redis_url`).
    pub backplane: BackplaneKind,
    /// The Redis of `backplane = "redis"`, e.g. `redis://127.0.0.1:6379/0`; `rediss://` for
    /// TLS (the system's root certificates; `#insecure` at the end skips verification). No
    /// default. With `redis_sentinels` it is optional and gives only the master's
    /// credentials, database and TLS: its host and port are not used.
    pub redis_url: Option<String>,
    /// Redis Sentinel: the sentinels to ask where the master of `redis_master` is (asked
    /// again at every reconnect, so the nodes follow a failover), e.g.
    /// `["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"]`. Default none (standalone).
    pub redis_sentinels: Vec<String>,
    /// With `redis_sentinels`: the master's name in the sentinels' configuration. Required
    /// with them.
    pub redis_master: Option<String>,
    /// Replicas that must confirm a publish before it is acknowledged (Redis `WAIT`): a
    /// number, or `"all"`. Default 0 (no wait). A publish not confirmed within half of
    /// `redis_timeout` is refused (it is in the master's stream and may still be delivered,
    /// like any publish that timed out). With Sentinel use `"all"`: the sentinels may promote
    /// any replica, so only a publish every replica has is sure to survive a failover.
    pub redis_wait_replicas: WaitReplicas,
    /// How long a Redis connect or command may take before it counts as failed (the publish
    /// is refused, the link reconnects). Default 2 s; between 10 ms and 60 s.
    #[serde(deserialize_with = "crate::config::units::duration")]
    pub redis_timeout: Duration,
    /// How often the link pings Redis, so a Redis that stops answering is noticed within
    /// this plus `redis_timeout`. Default 1 s; between 10 ms and 60 s.
    #[serde(deserialize_with = "crate::config::units::duration")]
    pub redis_ping_interval: Duration,
    /// The longest wait between reconnection attempts (the wait doubles from 50 ms).
    /// Default 2 s; between 10 ms and 60 s.
    #[serde(deserialize_with = "crate::config::units::duration")]
    pub redis_max_backoff: Duration,
    /// What a publish gets while Redis is unreachable. Default `refuse`: at once HTTP 503 or
    /// the WebSocket `unavailable` error. `buffer`: the node holds it, unacknowledged, until
    /// Redis is back (then appends it and acknowledges it, in arrival order) or until
    /// `redis_buffer_wait` passes (then refuses it). Either way a publish is acknowledged only
    /// once it is in Redis.
    pub redis_outage: OutagePolicy,
    /// With `redis_outage = "buffer"`: the most publish payload bytes a node holds at once
    /// while Redis is unreachable; a publish that would go over is refused. Default 4 MiB;
    /// at most 1 GiB. A number of bytes or a string with a unit (`"4 MiB"`).
    #[serde(deserialize_with = "crate::config::units::size")]
    pub redis_buffer_bytes: usize,
    /// With `redis_outage = "buffer"`: how long a held publish waits for Redis before it is
    /// refused. Default 5 s; between 10 ms and 10 min.
    #[serde(deserialize_with = "crate::config::units::duration")]
    pub redis_buffer_wait: Duration,
    /// How long a presence entry outlives its node's last refresh (nodes refresh theirs every
    /// third of it), so the clients of a node that dies without leaving disappear within
    /// this. Used by the Redis backplane. Default 15 s; between 300 ms and 1 h.
    #[serde(deserialize_with = "crate::config::units::duration")]
    pub presence_ttl: Duration,
    /// The most entries one presence reply lists (the count is always the full one; the
    /// reply says `truncated`). Bounds the reply's size and the query's work. Default 1000;
    /// between 1 and 100000.
    pub presence_max_clients: usize,
}

/// What a publish gets while the Redis backplane is unreachable (`hub.redis_outage`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutagePolicy {
    /// Refused at once (HTTP 503, WebSocket `unavailable`).
    #[default]
    Refuse,
    /// Held, unacknowledged, within `redis_buffer_bytes` and `redis_buffer_wait`, and
    /// appended in arrival order once Redis is back.
    Buffer,
}

/// How many replicas must have a publish before it is acknowledged (`hub.redis_wait_replicas`):
/// a number in the config file, or `"all"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitReplicas {
    /// This many (0: no wait).
    Count(u32),
    /// Every replica the master lists (`ROLE`, asked at each connect and health check), and
    /// at least one. Redis replicates asynchronously and Sentinel may promote any replica it
    /// finds fit, so a publish that only some replicas have can be lost in a failover; one
    /// that every replica has cannot, short of a replica that was cut off from the master
    /// just then and is promoted anyway.
    All,
}

impl<'de> Deserialize<'de> for WaitReplicas {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = WaitReplicas;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of replicas or \"all\"")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<WaitReplicas, E> {
                u32::try_from(n)
                    .map(WaitReplicas::Count)
                    .map_err(|_| E::custom(format!("a number of replicas from 0, not {n}")))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<WaitReplicas, E> {
                u32::try_from(n)
                    .map(WaitReplicas::Count)
                    .map_err(|_| E::custom(format!("too many replicas: {n}")))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<WaitReplicas, E> {
                match s {
                    "all" => Ok(WaitReplicas::All),
                    _ => Err(E::custom(format!(
                        "a number of replicas or \"all\", not \"{s}\""
                    ))),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Which backplane the hub uses.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BackplaneKind {
    /// In this process: one node.
    Memory,
    /// Redis streams and pub/sub: any number of nodes on one Redis.
    Redis,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            history_count: 1000,
            history_age_secs: 300,
            queue_bytes: 1 << 20,
            slow_consumer: SlowConsumerPolicy::Disconnect,
            topics: Vec::new(),
            backplane: BackplaneKind::Memory,
            redis_url: None,
            redis_sentinels: Vec::new(),
            redis_master: None,
            redis_wait_replicas: WaitReplicas::Count(0),
            redis_timeout: Duration::from_secs(2),
            redis_ping_interval: Duration::from_secs(1),
            redis_max_backoff: Duration::from_secs(2),
            redis_outage: OutagePolicy::Refuse,
            redis_buffer_bytes: 4 << 20,
            redis_buffer_wait: Duration::from_secs(5),
            presence_ttl: Duration::from_secs(15),
            presence_max_clients: 1000,
        }
    }
}

/// Settings for the topics that match `pattern`; unset fields take the hub-wide values.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopicPolicy {
    /// An exact topic, a prefix ending in `.*`, or `*`.
    pub pattern: String,
    /// Messages retained per topic.
    #[serde(default)]
    pub history_count: Option<usize>,
    /// Seconds a message is retained.
    #[serde(default)]
    pub history_age_secs: Option<u64>,
    /// Retain only the latest message per `key` (a ticker's current price per symbol).
    #[serde(default)]
    pub latest_per_key: bool,
    /// What happens to a subscriber that does not keep up.
    #[serde(default)]
    pub slow_consumer: Option<SlowConsumerPolicy>,
    /// Keep the presence of these topics: which clients subscribe to each (exact
    /// subscriptions only), on every node. Default false.
    #[serde(default)]
    pub presence: bool,
}

/// What to do when a subscriber's outbound queue is over its bound.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SlowConsumerPolicy {
    /// Close the connection with 1008 "slow consumer".
    Disconnect,
    /// Drop the oldest queued messages until the new one fits.
    DropOldest,
    /// Replace a queued message of the same topic and key; without one, drop the oldest.
    KeepLatestPerKey,
}

impl HubConfig {
    /// Checks every field; the error names the key, e.g. `hub.topics[2].pattern: ...`.
    pub fn validate(&self) -> Result<(), String> {
        if self.queue_bytes < MIN_QUEUE_BYTES {
            return Err(format!(
                "hub.queue_bytes: must be at least {MIN_QUEUE_BYTES}, not {}",
                self.queue_bytes
            ));
        }
        check_age("hub.history_age_secs", self.history_age_secs)?;
        self.validate_redis()?;
        if !(MIN_PRESENCE_TTL..=MAX_PRESENCE_TTL).contains(&self.presence_ttl) {
            return Err(format!(
                "hub.presence_ttl: must be between {MIN_PRESENCE_TTL:?} and {MAX_PRESENCE_TTL:?}, not {:?}",
                self.presence_ttl
            ));
        }
        if !(1..=MAX_PRESENCE_CLIENTS).contains(&self.presence_max_clients) {
            return Err(format!(
                "hub.presence_max_clients: must be between 1 and {MAX_PRESENCE_CLIENTS}, not {}",
                self.presence_max_clients
            ));
        }
        let mut seen: Vec<Pattern> = Vec::new();
        for (i, policy) in self.topics.iter().enumerate() {
            let pattern = Pattern::parse(&policy.pattern)
                .map_err(|e| format!("hub.topics[{i}].pattern: {e}"))?;
            if seen.contains(&pattern) {
                return Err(format!(
                    "hub.topics[{i}].pattern: {:?} is listed twice; only the first entry would apply",
                    policy.pattern
                ));
            }
            seen.push(pattern);
            if let Some(age) = policy.history_age_secs {
                check_age(&format!("hub.topics[{i}].history_age_secs"), age)?;
            }
        }
        Ok(())
    }
}

impl HubConfig {
    fn validate_redis(&self) -> Result<(), String> {
        for (key, value) in [
            ("hub.redis_timeout", self.redis_timeout),
            ("hub.redis_ping_interval", self.redis_ping_interval),
            ("hub.redis_max_backoff", self.redis_max_backoff),
        ] {
            if !(MIN_REDIS_DURATION..=MAX_REDIS_DURATION).contains(&value) {
                return Err(format!(
                    "{key}: must be between {MIN_REDIS_DURATION:?} and {MAX_REDIS_DURATION:?}, not {value:?}"
                ));
            }
        }
        if !(MIN_REDIS_DURATION..=MAX_BUFFER_WAIT).contains(&self.redis_buffer_wait) {
            return Err(format!(
                "hub.redis_buffer_wait: must be between {MIN_REDIS_DURATION:?} and {MAX_BUFFER_WAIT:?}, not {:?}",
                self.redis_buffer_wait
            ));
        }
        if self.redis_buffer_bytes > MAX_BUFFER_BYTES {
            return Err(format!(
                "hub.redis_buffer_bytes: at most {MAX_BUFFER_BYTES} (1 GiB), not {}",
                self.redis_buffer_bytes
            ));
        }
        if let WaitReplicas::Count(n) = self.redis_wait_replicas
            && n > MAX_WAIT_REPLICAS
        {
            return Err(format!(
                "hub.redis_wait_replicas: at most {MAX_WAIT_REPLICAS}, not {n}"
            ));
        }
        for (i, url) in self.redis_sentinels.iter().enumerate() {
            check_redis_url(&format!("hub.redis_sentinels[{i}]"), url)?;
        }
        match (self.redis_sentinels.is_empty(), &self.redis_master) {
            (false, None) => {
                return Err("hub.redis_master: required with hub.redis_sentinels".into());
            }
            (true, Some(_)) => {
                return Err("hub.redis_master: only with hub.redis_sentinels".into());
            }
            (false, Some(name)) if name.is_empty() => {
                return Err("hub.redis_master: must not be empty".into());
            }
            _ => {}
        }
        if let Some(url) = &self.redis_url {
            check_redis_url("hub.redis_url", url)?;
        }
        if self.backplane == BackplaneKind::Redis
            && self.redis_url.is_none()
            && self.redis_sentinels.is_empty()
        {
            return Err(
                "hub.redis_url: required when hub.backplane = \"redis\" (or hub.redis_sentinels)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The bounds of `presence_ttl`.
const MIN_PRESENCE_TTL: Duration = Duration::from_millis(300);
const MAX_PRESENCE_TTL: Duration = Duration::from_secs(3600);

/// The largest allowed `presence_max_clients`.
const MAX_PRESENCE_CLIENTS: usize = 100_000;

/// The bounds of the Redis timeouts.
const MIN_REDIS_DURATION: Duration = Duration::from_millis(10);
const MAX_REDIS_DURATION: Duration = Duration::from_secs(60);
/// The most `redis_wait_replicas`.
const MAX_WAIT_REPLICAS: u32 = 16;
/// The longest `redis_buffer_wait`.
const MAX_BUFFER_WAIT: Duration = Duration::from_secs(600);
/// The largest `redis_buffer_bytes`.
const MAX_BUFFER_BYTES: usize = 1 << 30;

fn check_redis_url(key: &str, url: &str) -> Result<(), String> {
    ::redis::parse_redis_url(url)
        .map(|_| ())
        .ok_or_else(|| format!("{key}: {url:?} is not a redis:// or rediss:// URL"))
}

fn check_age(key: &str, secs: u64) -> Result<(), String> {
    if secs > MAX_HISTORY_AGE_SECS {
        return Err(format!(
            "{key}: at most {MAX_HISTORY_AGE_SECS} (one year), not {secs}"
        ));
    }
    Ok(())
}

/// Everything the hub needs to know about one topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicSettings {
    /// What the topic's history retains.
    pub history: HistoryPolicy,
    /// How its subscribers' queues overflow.
    pub slow_consumer: SlowConsumerPolicy,
    /// Whether the topic keeps presence.
    pub presence: bool,
}

/// The config with its patterns parsed, ready to answer "which settings for this topic".
#[derive(Debug)]
pub(crate) struct Policies {
    rules: Vec<(Pattern, TopicPolicy)>,
    defaults: TopicSettings,
}

impl Policies {
    /// Compiles `config`; entries whose pattern does not parse are skipped (call
    /// [`HubConfig::validate`] first to refuse them).
    pub(crate) fn new(config: &HubConfig) -> Self {
        let rules = config
            .topics
            .iter()
            .filter_map(|p| Pattern::parse(&p.pattern).ok().map(|pat| (pat, p.clone())))
            .collect();
        Policies {
            rules,
            defaults: TopicSettings {
                history: HistoryPolicy {
                    count: config.history_count,
                    age: Duration::from_secs(config.history_age_secs),
                    latest_per_key: false,
                },
                slow_consumer: config.slow_consumer,
                presence: false,
            },
        }
    }

    /// The settings of `topic`: the first matching override, completed by the defaults.
    pub(crate) fn for_topic(&self, topic: &str) -> TopicSettings {
        let Some((_, rule)) = self.rules.iter().find(|(p, _)| p.matches(topic)) else {
            return self.defaults;
        };
        TopicSettings {
            history: HistoryPolicy {
                count: rule.history_count.unwrap_or(self.defaults.history.count),
                age: rule
                    .history_age_secs
                    .map_or(self.defaults.history.age, Duration::from_secs),
                latest_per_key: rule.latest_per_key,
            },
            slow_consumer: rule.slow_consumer.unwrap_or(self.defaults.slow_consumer),
            presence: rule.presence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pattern: &str) -> TopicPolicy {
        TopicPolicy {
            pattern: pattern.into(),
            history_count: None,
            history_age_secs: None,
            latest_per_key: false,
            slow_consumer: None,
            presence: false,
        }
    }

    #[test]
    fn presence_is_opt_in_per_topic_and_its_limits_are_checked() {
        let parse = |text: &str| toml::from_str::<HubConfig>(text).map(|c| c.validate());
        let config: HubConfig = toml::from_str(
            "presence_ttl = \"2s\"\npresence_max_clients = 5\n\
             [[topics]]\npattern = \"chat.*\"\npresence = true\n\
             [[topics]]\npattern = \"*\"\n",
        )
        .unwrap();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.presence_ttl, Duration::from_secs(2));
        assert_eq!(config.presence_max_clients, 5);
        let policies = Policies::new(&config);
        assert!(policies.for_topic("chat.lobby").presence);
        assert!(!policies.for_topic("news").presence);
        assert!(
            !Policies::new(&HubConfig::default())
                .for_topic("chat.lobby")
                .presence
        );
        assert_eq!(HubConfig::default().presence_ttl, Duration::from_secs(15));
        assert_eq!(HubConfig::default().presence_max_clients, 1000);
        let err = parse("presence_ttl = \"100ms\"").unwrap().unwrap_err();
        assert!(
            err.starts_with("hub.presence_ttl: must be between"),
            "{err}"
        );
        let err = parse("presence_ttl = \"2h\"").unwrap().unwrap_err();
        assert!(err.starts_with("hub.presence_ttl: "), "{err}");
        let err = parse("presence_max_clients = 0").unwrap().unwrap_err();
        assert!(err.starts_with("hub.presence_max_clients: "), "{err}");
        let err = parse("presence_max_clients = 100001").unwrap().unwrap_err();
        assert!(err.starts_with("hub.presence_max_clients: "), "{err}");
        assert!(parse("[[topics]]\npattern = \"a\"\npresence = \"yes\"").is_err());
    }

    #[test]
    fn defaults_are_documented_values_and_valid() {
        let config = HubConfig::default();
        assert_eq!(config.history_count, 1000);
        assert_eq!(config.history_age_secs, 300);
        assert_eq!(config.queue_bytes, 1 << 20);
        assert_eq!(config.slow_consumer, SlowConsumerPolicy::Disconnect);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn validate_names_the_key() {
        let mut config = HubConfig {
            topics: vec![policy("a.*"), policy("b"), policy("c.*.d")],
            ..HubConfig::default()
        };
        let err = config.validate().unwrap_err();
        assert!(err.starts_with("hub.topics[2].pattern: "), "{err}");
        config.topics[2] = policy("a.*");
        let err = config.validate().unwrap_err();
        assert!(err.starts_with("hub.topics[2].pattern: "), "{err}");
        config.topics.pop();
        config.queue_bytes = 10;
        assert!(
            config
                .validate()
                .unwrap_err()
                .starts_with("hub.queue_bytes")
        );
        config.queue_bytes = 4096;
        config.topics[1].history_age_secs = Some(u64::MAX);
        let err = config.validate().unwrap_err();
        assert!(err.starts_with("hub.topics[1].history_age_secs"), "{err}");
    }

    #[test]
    fn redis_keys_are_checked_and_named() {
        let parse = |text: &str| toml::from_str::<HubConfig>(text).map(|c| c.validate());
        let config: HubConfig = toml::from_str("").unwrap();
        assert_eq!(config.backplane, BackplaneKind::Memory);
        assert_eq!(config.redis_timeout, Duration::from_secs(2));
        let err = parse("backplane = \"redis\"").unwrap().unwrap_err();
        assert!(err.starts_with("hub.redis_url: required"), "{err}");
        let err = parse("backplane = \"redis\"\nredis_url = \"http://x\"").unwrap();
        assert!(err.unwrap_err().starts_with("hub.redis_url: "));
        let ok = parse("backplane = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"");
        assert_eq!(ok.unwrap(), Ok(()));
        let err = parse("redis_timeout = \"0s\"").unwrap().unwrap_err();
        assert!(
            err.starts_with("hub.redis_timeout: must be between"),
            "{err}"
        );
        let err = parse("redis_max_backoff = \"2m\"").unwrap().unwrap_err();
        assert!(err.starts_with("hub.redis_max_backoff: "), "{err}");
        assert!(parse("backplane = \"kafka\"").is_err());
        assert_eq!(config.redis_outage, OutagePolicy::Refuse);
        assert_eq!(config.redis_buffer_bytes, 4 << 20);
        assert_eq!(config.redis_buffer_wait, Duration::from_secs(5));
        let buffered: HubConfig = toml::from_str(
            "redis_outage = \"buffer\"\nredis_buffer_bytes = \"1 MiB\"\nredis_buffer_wait = \"2s\"",
        )
        .unwrap();
        assert_eq!(buffered.redis_outage, OutagePolicy::Buffer);
        assert_eq!(buffered.redis_buffer_bytes, 1 << 20);
        assert_eq!(buffered.validate(), Ok(()));
        assert!(parse("redis_outage = \"drop\"").is_err());
        // Sentinel: the master's name is required with sentinels, and only with them.
        let sentinel = "backplane = \"redis\"\nredis_sentinels = [\"redis://127.0.0.1:26379\"]\n";
        let err = parse(sentinel).unwrap().unwrap_err();
        assert!(err.starts_with("hub.redis_master: required"), "{err}");
        assert_eq!(
            parse(&format!(
                "{sentinel}redis_master = \"m\"\nredis_wait_replicas = 1"
            ))
            .unwrap(),
            Ok(())
        );
        let err = parse("redis_master = \"m\"").unwrap().unwrap_err();
        assert!(err.starts_with("hub.redis_master: only with"), "{err}");
        let err = parse(&format!("{sentinel}redis_master = \"\""))
            .unwrap()
            .unwrap_err();
        assert!(
            err.starts_with("hub.redis_master: must not be empty"),
            "{err}"
        );
        let err = parse("redis_sentinels = [\"http://x\"]\nredis_master = \"m\"")
            .unwrap()
            .unwrap_err();
        assert!(err.starts_with("hub.redis_sentinels[0]: "), "{err}");
        let parse_config = toml::from_str::<HubConfig>;
        let all = parse_config("redis_wait_replicas = \"all\"").unwrap();
        assert_eq!(all.redis_wait_replicas, WaitReplicas::All);
        assert_eq!(
            parse_config("redis_wait_replicas = 2")
                .unwrap()
                .redis_wait_replicas,
            WaitReplicas::Count(2)
        );
        assert!(parse("redis_wait_replicas = \"most\"").is_err());
        assert!(parse("redis_wait_replicas = -1").is_err());
        let err = parse("redis_wait_replicas = 17").unwrap().unwrap_err();
        assert!(
            err.starts_with("hub.redis_wait_replicas: at most 16"),
            "{err}"
        );
        let err = parse("redis_buffer_wait = \"1h\"").unwrap().unwrap_err();
        assert!(
            err.starts_with("hub.redis_buffer_wait: must be between"),
            "{err}"
        );
        let err = parse("redis_buffer_bytes = \"2 GiB\"")
            .unwrap()
            .unwrap_err();
        assert!(err.starts_with("hub.redis_buffer_bytes: at most"), "{err}");
    }

    #[test]
    fn config_deserializes_with_defaults_and_refuses_unknown_keys() {
        let config: HubConfig = serde_json::from_str(
            r#"{"queue_bytes": 4096, "topics": [
                {"pattern": "prices.*", "latest_per_key": true, "slow_consumer": "keep_latest_per_key"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(config.history_count, 1000);
        assert_eq!(config.queue_bytes, 4096);
        assert!(config.topics[0].latest_per_key);
        assert_eq!(
            config.topics[0].slow_consumer,
            Some(SlowConsumerPolicy::KeepLatestPerKey)
        );
        assert!(serde_json::from_str::<HubConfig>(r#"{"queue": 1}"#).is_err());
        assert!(
            serde_json::from_str::<HubConfig>(r#"{"topics": [{"pattern": "a", "x": 1}]}"#).is_err()
        );
        assert!(serde_json::from_str::<HubConfig>(r#"{"slow_consumer": "drop_oldest"}"#).is_ok());
    }

    #[test]
    fn first_matching_topic_policy_wins() {
        let config = HubConfig {
            history_count: 10,
            topics: vec![
                TopicPolicy {
                    history_count: Some(1),
                    latest_per_key: true,
                    slow_consumer: Some(SlowConsumerPolicy::DropOldest),
                    ..policy("prices.*")
                },
                TopicPolicy {
                    history_count: Some(2),
                    history_age_secs: Some(5),
                    ..policy("*")
                },
            ],
            ..HubConfig::default()
        };
        let policies = Policies::new(&config);
        let prices = policies.for_topic("prices.AAPL");
        assert_eq!(prices.history.count, 1);
        assert!(prices.history.latest_per_key);
        assert_eq!(prices.history.age, Duration::from_secs(300));
        assert_eq!(prices.slow_consumer, SlowConsumerPolicy::DropOldest);
        let other = policies.for_topic("news");
        assert_eq!(other.history.count, 2);
        assert_eq!(other.history.age, Duration::from_secs(5));
        assert!(!other.history.latest_per_key);
        assert_eq!(other.slow_consumer, SlowConsumerPolicy::Disconnect);
        let bare = Policies::new(&HubConfig::default()).for_topic("x");
        assert_eq!(bare.history.count, 1000);
    }
}
