//! The built-in pages, embedded in the binary: plain HTML, CSS and ES modules, no build step.
//!
//! | path | what |
//! | --- | --- |
//! | `/`, `/index.html` | Home: what this gateway serves, its routes, a live connection inspector |
//! | `/ticker` | Market ticker: `stocks.*` with sparklines and publish-to-arrival latency |
//! | `/scores` | Score cards: `scores.*` |
//! | `/game` | Territory: a shared board every browser plays on (`game.territory`) |
//! | `/chat` | Chat room (`chat.lobby`) |
//! | `/tether.js` | The browser client of `tether.pubsub.v1` (also served beside a static root) |
//! | `/assets/...` | The pages' style sheet and scripts |
//!
//! The chat and game pages publish to `chat.*` and `game.*`. With no `[auth]` configured (the
//! default of `tether serve`) everyone may publish anywhere; with auth on, list those patterns
//! under `[auth.anonymous] publish` for the pages to work without a token.
//!
//! Every file is answered with `Cache-Control: no-cache` and a strong `ETag` of its bytes, so a
//! browser revalidates (a cheap `304`) and never runs a page from an older binary.

use crate::hub::{HubConfig, SlowConsumerPolicy, TopicPolicy};

/// One embedded file.
pub(crate) struct Asset {
    /// The request path it answers.
    pub(crate) path: &'static str,
    /// Its `Content-Type`.
    pub(crate) content_type: &'static str,
    /// Its bytes.
    pub(crate) body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

macro_rules! asset {
    ($path:literal, $type:expr, $file:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("pages/", $file)),
        }
    };
}

/// Every built-in file. `/index.html` is the same page as `/`.
pub(crate) static ASSETS: &[Asset] = &[
    asset!("/", HTML, "home.html"),
    asset!("/index.html", HTML, "home.html"),
    asset!("/ticker", HTML, "ticker.html"),
    asset!("/scores", HTML, "scores.html"),
    asset!("/game", HTML, "game.html"),
    asset!("/chat", HTML, "chat.html"),
    asset!("/tether.js", JS, "tether.js"),
    asset!("/assets/style.css", CSS, "style.css"),
    asset!("/assets/ui.js", JS, "ui.js"),
    asset!("/assets/home.js", JS, "home.js"),
    asset!("/assets/inspector.js", JS, "inspector.js"),
    asset!("/assets/ticker.js", JS, "ticker.js"),
    asset!("/assets/scores.js", JS, "scores.js"),
    asset!("/assets/game.js", JS, "game.js"),
    asset!("/assets/chat.js", JS, "chat.js"),
    asset!("/favicon.svg", "image/svg+xml", "favicon.svg"),
];

/// The client library, which is served at `/tether.js` even when a static root replaces the
/// built-in pages (unless the root has its own).
pub(crate) const CLIENT_PATH: &str = "/tether.js";

/// The index of the asset at `path` in [`ASSETS`].
pub(crate) fn find(path: &str) -> Option<usize> {
    ASSETS.iter().position(|a| a.path == path)
}

/// Gives the pages' topics their policies unless the config has some: the chat keeps its last
/// 200 messages for an hour (a page that opens late shows the conversation) and keeps
/// presence (who is in the room), the game board keeps the latest claim of each cell for an
/// hour (the board is its history).
pub(crate) fn add_topic_policies(hub: &mut HubConfig) {
    for policy in [
        TopicPolicy {
            pattern: "chat.*".into(),
            history_count: Some(200),
            history_age_secs: Some(3600),
            latest_per_key: false,
            slow_consumer: Some(SlowConsumerPolicy::DropOldest),
            presence: true,
        },
        TopicPolicy {
            pattern: "game.*".into(),
            history_count: Some(1000),
            history_age_secs: Some(3600),
            latest_per_key: true,
            slow_consumer: Some(SlowConsumerPolicy::KeepLatestPerKey),
            presence: false,
        },
    ] {
        if !hub.topics.iter().any(|t| t.pattern == policy.pattern) {
            hub.topics.push(policy);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_unique_path_and_a_body() {
        for (i, asset) in ASSETS.iter().enumerate() {
            assert!(asset.path.starts_with('/'), "{}", asset.path);
            assert!(!asset.body.is_empty(), "{}", asset.path);
            assert_eq!(find(asset.path), Some(i), "{} is listed twice", asset.path);
        }
        assert!(find(CLIENT_PATH).is_some());
    }

    #[test]
    fn pages_link_only_to_assets_that_exist() {
        for asset in ASSETS.iter().filter(|a| a.content_type == HTML) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for quote in text.split(['"', '\'']).skip(1).step_by(2) {
                if quote.starts_with("/assets/") || quote == CLIENT_PATH {
                    assert!(find(quote).is_some(), "{} links to {quote}", asset.path);
                }
            }
        }
    }

    #[test]
    fn page_policies_are_valid_and_never_replace_the_config() {
        let mut hub = HubConfig::default();
        hub.topics.push(TopicPolicy {
            pattern: "chat.*".into(),
            history_count: Some(5),
            history_age_secs: None,
            latest_per_key: false,
            slow_consumer: None,
            presence: false,
        });
        add_topic_policies(&mut hub);
        add_topic_policies(&mut hub);
        assert_eq!(hub.topics.len(), 2);
        assert_eq!(hub.topics[0].history_count, Some(5));
        assert!(hub.topics[1].latest_per_key);
        assert_eq!(hub.validate(), Ok(()));
    }
}
