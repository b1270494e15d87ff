//! Topic names, subscription patterns, and the permissions built from them.
//!
//! A topic name is 1 to 200 bytes of `[A-Za-z0-9_.:-]` whose dot-separated segments are not
//! empty (`prices.AAPL`, `chat:room-7`). A pattern is an exact topic, a prefix ending in `.*`
//! (`prices.*` matches `prices.AAPL` and `prices.eu.SAP`, not `prices` itself), or `*`
//! (every topic).

use std::fmt;

/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 200;

/// Checks a topic name; the error says what is wrong with it.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("a topic name cannot be empty".into());
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "a topic name is at most {MAX_TOPIC_LEN} bytes, this one has {}",
            topic.len()
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(format!(
            "{c:?} is not allowed in a topic name (letters, digits and _ . : - are)"
        ));
    }
    if topic.split('.').any(str::is_empty) {
        return Err(format!("topic {topic:?} has an empty segment"));
    }
    Ok(())
}

/// A parsed subscription pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// One topic.
    Exact(String),
    /// Every topic that starts with this prefix, which ends with a dot (`prices.` for
    /// `prices.*`).
    Prefix(String),
    /// Every topic (`*`).
    All,
}

impl Pattern {
    /// Parses `"*"`, `"a.b.*"` or an exact topic name.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text == "*" {
            return Ok(Pattern::All);
        }
        if let Some(base) = text.strip_suffix(".*") {
            validate_topic(base).map_err(|e| format!("in pattern {text:?}: {e}"))?;
            return Ok(Pattern::Prefix(format!("{base}.")));
        }
        if text.contains('*') {
            return Err(format!(
                "{text:?}: a wildcard is allowed only as a last segment (\"a.*\") or alone (\"*\")"
            ));
        }
        validate_topic(text)?;
        Ok(Pattern::Exact(text.to_owned()))
    }

    /// Whether `topic` (a valid topic name) is matched.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Pattern::Exact(t) => t == topic,
            Pattern::Prefix(prefix) => topic.len() > prefix.len() && topic.starts_with(prefix),
            Pattern::All => true,
        }
    }

    /// Whether every topic `other` matches is also matched by `self`.
    pub fn covers(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Pattern::All, _) => true,
            (Pattern::Prefix(p), Pattern::Exact(t)) => t.len() > p.len() && t.starts_with(p),
            (Pattern::Prefix(p), Pattern::Prefix(q)) => q.starts_with(p.as_str()),
            (Pattern::Exact(a), Pattern::Exact(b)) => a == b,
            _ => false,
        }
    }

    /// The exact topic, if this pattern is one.
    pub fn as_exact(&self) -> Option<&str> {
        match self {
            Pattern::Exact(t) => Some(t),
            _ => None,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(t) => f.write_str(t),
            Pattern::Prefix(p) => write!(f, "{p}*"),
            Pattern::All => f.write_str("*"),
        }
    }
}

/// What one client may do; patterns are exact topics, prefixes ending in ".*", or "*" for
/// everything.
///
/// A subscription is allowed when one `subscribe` pattern covers the whole of what is asked
/// for: `prices.*` allows `prices.AAPL` and `prices.eu.*`, but not `*` or `prices`. Patterns
/// that do not parse allow nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Patterns the client may subscribe to (or under).
    pub subscribe: Vec<String>,
    /// Patterns of the topics the client may publish to.
    pub publish: Vec<String>,
    /// Who the client is, as presence lists it: a JWT's `sub` when it is a string; `None`
    /// for static tokens, anonymous access and no auth.
    pub user: Option<String>,
}

impl Permissions {
    /// Everything allowed: `*` for both.
    pub fn allow_all() -> Self {
        Permissions {
            subscribe: vec!["*".into()],
            publish: vec!["*".into()],
            user: None,
        }
    }

    /// Whether the client may subscribe to `topic_or_pattern` (which must parse as a
    /// pattern).
    pub fn can_subscribe(&self, topic_or_pattern: &str) -> bool {
        let Ok(wanted) = Pattern::parse(topic_or_pattern) else {
            return false;
        };
        self.subscribe
            .iter()
            .filter_map(|p| Pattern::parse(p).ok())
            .any(|p| p.covers(&wanted))
    }

    /// Whether the client may publish to `topic` (which must be a valid topic name).
    pub fn can_publish(&self, topic: &str) -> bool {
        if validate_topic(topic).is_err() {
            return false;
        }
        self.publish
            .iter()
            .filter_map(|p| Pattern::parse(p).ok())
            .any(|p| p.matches(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_the_charset_and_length_rules() {
        assert!(validate_topic("prices.AAPL").is_ok());
        assert!(validate_topic("chat:room-7_x").is_ok());
        assert!(validate_topic(&"a".repeat(200)).is_ok());
        assert!(validate_topic(&"a".repeat(201)).is_err());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("a..b").is_err());
        assert!(validate_topic(".a").is_err());
        assert!(validate_topic("a.").is_err());
        assert!(validate_topic("a b").is_err());
        assert!(validate_topic("a/b").is_err());
        assert!(validate_topic("é").is_err());
        assert!(validate_topic("a.*").is_err());
    }

    #[test]
    fn patterns_parse_and_match() {
        assert_eq!(Pattern::parse("*"), Ok(Pattern::All));
        assert_eq!(
            Pattern::parse("prices.*"),
            Ok(Pattern::Prefix("prices.".into()))
        );
        assert_eq!(Pattern::parse("a.b"), Ok(Pattern::Exact("a.b".into())));
        assert!(Pattern::parse("a.*.b").is_err());
        assert!(Pattern::parse("a*").is_err());
        assert!(Pattern::parse(".*").is_err());
        assert!(Pattern::parse("**").is_err());

        let prices = Pattern::parse("prices.*").unwrap();
        assert!(prices.matches("prices.AAPL"));
        assert!(prices.matches("prices.eu.SAP"));
        assert!(!prices.matches("prices"));
        assert!(!prices.matches("pricesX.AAPL"));
        assert!(Pattern::All.matches("anything"));
        assert!(Pattern::parse("a.b").unwrap().matches("a.b"));
        assert!(!Pattern::parse("a.b").unwrap().matches("a.bc"));
        assert_eq!(prices.to_string(), "prices.*");
    }

    #[test]
    fn coverage_between_patterns() {
        let p = |s| Pattern::parse(s).unwrap();
        assert!(p("*").covers(&p("*")));
        assert!(p("*").covers(&p("a.b")));
        assert!(p("a.*").covers(&p("a.*")));
        assert!(p("a.*").covers(&p("a.b.*")));
        assert!(p("a.*").covers(&p("a.b")));
        assert!(!p("a.*").covers(&p("a")));
        assert!(!p("a.*").covers(&p("*")));
        assert!(!p("a.*").covers(&p("ab.*")));
        assert!(!p("a.b").covers(&p("a.b.*")));
        assert!(p("a.b").covers(&p("a.b")));
    }

    #[test]
    fn permissions_check_subscribe_and_publish() {
        let perms = Permissions {
            subscribe: vec!["prices.*".into(), "news".into(), "bad pattern".into()],
            publish: vec!["chat.*".into()],
            user: None,
        };
        assert!(perms.can_subscribe("prices.AAPL"));
        assert!(perms.can_subscribe("prices.eu.*"));
        assert!(perms.can_subscribe("news"));
        assert!(!perms.can_subscribe("news.*"));
        assert!(!perms.can_subscribe("*"));
        assert!(!perms.can_subscribe("bad pattern"));
        assert!(perms.can_publish("chat.room1"));
        assert!(!perms.can_publish("chat"));
        assert!(!perms.can_publish("prices.AAPL"));
        assert!(!perms.can_publish("chat.*"));
        assert!(!Permissions::default().can_subscribe("a"));
        let all = Permissions::allow_all();
        assert!(all.can_subscribe("*") && all.can_publish("x.y"));
    }
}
