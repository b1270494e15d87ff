//! Demo feeds, so a newcomer sees live updates at once: a simulated stock index ticker on
//! `stocks.<SYMBOL>` and live score cards on `scores.<match>`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::watch;

use crate::hub::{Hub, HubConfig, SlowConsumerPolicy, TopicPolicy};
use crate::shutdown::signalled;

/// The ticker's symbols and opening prices.
const STOCKS: &[(&str, &str, f64)] = &[
    ("ACME", "Acme Corp", 182.40),
    ("GLBX", "Globex", 64.15),
    ("INIT", "Initech", 23.80),
    ("UMBR", "Umbrella", 141.05),
    ("WAYN", "Wayne Enterprises", 318.60),
    ("STRK", "Stark Industries", 407.25),
];

/// The index over all symbols, published as `stocks.TTX`.
const INDEX_SYMBOL: &str = "TTX";

/// The teams that play each other.
const MATCHES: &[(&str, &str)] = &[
    ("Rovers", "United"),
    ("Lions", "Tigers"),
    ("Harbor City", "Northside"),
];

/// Gives the demo topics their policies unless the config has some: history keeps the latest
/// quote per symbol and the latest card per match (so a page that subscribes with `since`
/// shows everything at once), and a slow page gets the newest values instead of a backlog.
pub(crate) fn add_topic_policies(hub: &mut HubConfig) {
    let add = |hub: &mut HubConfig, policy: TopicPolicy| {
        if !hub.topics.iter().any(|t| t.pattern == policy.pattern) {
            hub.topics.push(policy);
        }
    };
    add(
        hub,
        TopicPolicy {
            pattern: "stocks.*".into(),
            history_count: None,
            history_age_secs: None,
            latest_per_key: true,
            slow_consumer: Some(SlowConsumerPolicy::KeepLatestPerKey),
            presence: false,
        },
    );
    add(
        hub,
        TopicPolicy {
            pattern: "scores.*".into(),
            history_count: None,
            history_age_secs: None,
            latest_per_key: true,
            slow_consumer: Some(SlowConsumerPolicy::KeepLatestPerKey),
            presence: false,
        },
    );
}

/// Publishes the demo feeds until `shutdown` flips.
pub(crate) async fn run(hub: Arc<Hub>, mut shutdown: watch::Receiver<bool>) {
    let mut rng = SmallRng::from_os_rng();
    let mut stocks = Ticker::new();
    let mut games: Vec<Game> = (0..MATCHES.len()).map(|i| Game::new(i, &mut rng)).collect();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Every symbol and match at once, so a first page view is complete.
    for (i, (symbol, name, open)) in STOCKS.iter().enumerate() {
        let price = stocks.prices[i];
        publish(
            &hub,
            &format!("stocks.{symbol}"),
            quote(symbol, name, *open, price, price),
            symbol.to_string(),
        )
        .await;
    }
    for game in &games {
        publish(
            &hub,
            &format!("scores.{}", game.id),
            game.card("live"),
            game.id.clone(),
        )
        .await;
    }
    for n in 0u64.. {
        tokio::select! {
            _ = signalled(&mut shutdown) => return,
            _ = tick.tick() => {}
        }
        // Two symbols move every 250 ms, the index with them: about 12 updates a second.
        for _ in 0..2 {
            let (symbol, quote) = stocks.step(&mut rng);
            publish(&hub, &format!("stocks.{symbol}"), quote, symbol).await;
        }
        let (symbol, quote) = stocks.index();
        publish(&hub, &format!("stocks.{symbol}"), quote, symbol).await;
        // A match minute every second.
        if n % 4 == 0 {
            for game in &mut games {
                if let Some(card) = game.step(&mut rng) {
                    let id = game.id.clone();
                    publish(&hub, &format!("scores.{id}"), card, id).await;
                }
            }
        }
    }
}

async fn publish(hub: &Hub, topic: &str, value: serde_json::Value, key: String) {
    let data = Bytes::from(value.to_string());
    if let Err(e) = hub.publish(topic, data, Some(key)).await {
        tracing::warn!("demo feed cannot publish to {topic}: {e}");
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Prices doing a random walk.
struct Ticker {
    prices: Vec<f64>,
}

impl Ticker {
    fn new() -> Self {
        Ticker {
            prices: STOCKS.iter().map(|s| s.2).collect(),
        }
    }

    /// Moves one symbol by up to ±0.5 % and returns its quote.
    fn step(&mut self, rng: &mut SmallRng) -> (String, serde_json::Value) {
        let i = rng.random_range(0..STOCKS.len());
        let (symbol, name, open) = STOCKS[i];
        let before = self.prices[i];
        let after = (before * (1.0 + rng.random_range(-0.005..0.005))).max(0.01);
        self.prices[i] = after;
        (symbol.to_string(), quote(symbol, name, open, before, after))
    }

    /// The index: the average move of all symbols since the open, based at 1000.
    fn index(&self) -> (String, serde_json::Value) {
        let level = |prices: &mut dyn Iterator<Item = f64>| {
            1000.0 * prices.zip(STOCKS).map(|(p, s)| p / s.2).sum::<f64>() / STOCKS.len() as f64
        };
        let value = level(&mut self.prices.iter().copied());
        (
            INDEX_SYMBOL.to_string(),
            quote(INDEX_SYMBOL, "Tether Index", 1000.0, value, value),
        )
    }
}

fn quote(symbol: &str, name: &str, open: f64, before: f64, after: f64) -> serde_json::Value {
    let round = |x: f64| (x * 100.0).round() / 100.0;
    json!({
        "symbol": symbol,
        "name": name,
        "price": round(after),
        "change": round(after - open),
        "change_pct": round((after - open) / open * 100.0),
        "tick": if after > before { "up" } else if after < before { "down" } else { "flat" },
        "time": now_millis(),
    })
}

/// A match that plays 90 minutes, rests, and starts again.
struct Game {
    id: String,
    home: &'static str,
    away: &'static str,
    score: (u32, u32),
    minute: u32,
    last_event: String,
    /// Minutes left to wait after the final whistle before kick-off again.
    pause: u32,
}

impl Game {
    fn new(i: usize, rng: &mut SmallRng) -> Self {
        let (home, away) = MATCHES[i];
        let slug = |s: &str| s.to_ascii_lowercase().replace(' ', "-");
        let mut game = Game {
            id: format!("{}-vs-{}", slug(home), slug(away)),
            home,
            away,
            score: (0, 0),
            minute: 0,
            last_event: "Kick-off".into(),
            pause: 0,
        };
        // Start the matches at different points so the page shows variety at once.
        for _ in 0..rng.random_range(0..70) {
            game.step(rng);
        }
        game
    }

    /// Plays a minute; returns the card to publish, if anything is shown.
    fn step(&mut self, rng: &mut SmallRng) -> Option<serde_json::Value> {
        if self.pause > 0 {
            self.pause -= 1;
            if self.pause == 0 {
                self.score = (0, 0);
                self.minute = 0;
                self.last_event = "Kick-off".into();
            } else {
                return None;
            }
        } else if self.minute >= 90 {
            self.pause = 15;
            self.last_event = "Full time".into();
            return Some(self.card("full_time"));
        } else {
            self.minute += 1;
            if rng.random_bool(0.03) {
                self.score.0 += 1;
                self.last_event = format!("Goal! {} ({}')", self.home, self.minute);
            } else if rng.random_bool(0.03) {
                self.score.1 += 1;
                self.last_event = format!("Goal! {} ({}')", self.away, self.minute);
            }
        }
        Some(self.card(if self.minute == 45 {
            "half_time"
        } else {
            "live"
        }))
    }

    fn card(&self, status: &str) -> serde_json::Value {
        json!({
            "match": self.id,
            "home": self.home,
            "away": self.away,
            "home_score": self.score.0,
            "away_score": self.score.1,
            "minute": self.minute,
            "status": status,
            "last_event": self.last_event,
            "time": now_millis(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_added_once_and_never_replace_the_config() {
        let mut hub = HubConfig::default();
        add_topic_policies(&mut hub);
        add_topic_policies(&mut hub);
        assert_eq!(hub.topics.len(), 2);
        assert!(hub.topics[0].latest_per_key);
        assert_eq!(hub.validate(), Ok(()));
    }

    #[test]
    fn ticker_moves_prices_and_index_follows() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut ticker = Ticker::new();
        let (symbol, quote) = ticker.step(&mut rng);
        assert!(STOCKS.iter().any(|s| s.0 == symbol));
        assert!(quote["price"].as_f64().unwrap() > 0.0);
        let (index, level) = ticker.index();
        assert_eq!(index, INDEX_SYMBOL);
        assert!((level["price"].as_f64().unwrap() - 1000.0).abs() < 10.0);
    }

    #[test]
    fn a_game_reaches_full_time_and_restarts() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut game = Game::new(0, &mut rng);
        let mut statuses = Vec::new();
        for _ in 0..200 {
            if let Some(card) = game.step(&mut rng) {
                statuses.push(card["status"].as_str().unwrap().to_string());
            }
        }
        assert!(statuses.iter().any(|s| s == "full_time"));
        assert!(game.minute < 90 || game.pause > 0);
        assert_eq!(game.id, "rovers-vs-united");
    }
}
