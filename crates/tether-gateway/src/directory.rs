//! `GET /api/routes`: what this gateway serves, for its home page and for people exploring it.
//!
//! ```json
//! {"version": "0.1.0",
//!  "websocket": [{"path": "/ws", "kind": "pubsub", "subprotocols": ["tether.pubsub.v1"]}],
//!  "pages": [{"path": "/ticker", "title": "Market ticker"}],
//!  "http": [{"path": "/api/topics", "methods": ["GET"], "what": "..."}],
//!  "compression": true,
//!  "anonymous": {"subscribe": ["*"], "publish": ["*"]}}
//! ```
//!
//! `pages` is empty when a static root replaces the built-in pages; `anonymous` is `null` when
//! a client without a token is refused.

use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::response::{self, Body};
use crate::server::State;
use crate::static_files::StaticFiles;

/// The built-in pages people navigate to, with their titles.
pub(crate) const PAGES: &[(&str, &str)] = &[
    ("/", "Home and connection inspector"),
    ("/ticker", "Market ticker"),
    ("/scores", "Score cards"),
    ("/game", "Territory, a shared game"),
    ("/chat", "Chat room"),
    ("/tether.js", "The browser client (ES module)"),
];

/// The HTTP endpoints beside the WebSocket routes.
const HTTP: &[(&str, &str, &str)] = &[
    (
        "/api/publish/{topic}",
        "POST",
        "publish the request body to a topic (?key= for latest-per-key topics)",
    ),
    (
        "/api/topics",
        "GET",
        "the topics with their positions and subscribers",
    ),
    ("/api/routes", "GET", "this list"),
    (
        "/healthz",
        "GET",
        "health: 200 ok, 503 degraded or stopping",
    ),
    ("/metrics", "GET", "Prometheus metrics"),
];

/// Answers `GET /api/routes`.
pub(crate) fn routes(state: &State, method: &Method) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return response::method_not_allowed("GET, HEAD");
    }
    response::json(StatusCode::OK, &describe(state))
}

fn describe(state: &State) -> Value {
    let websocket: Vec<Value> = state
        .routes
        .load()
        .iter()
        .map(|r| {
            json!({
                "path": r.path,
                "kind": r.kind.name(),
                "prefix": r.prefix,
                "subprotocols": r.options.subprotocols,
            })
        })
        .collect();
    let pages: Vec<Value> = match state.statics {
        StaticFiles::BuiltIn { .. } => PAGES
            .iter()
            .map(|(path, title)| json!({"path": path, "title": title}))
            .collect(),
        StaticFiles::Directory { .. } => Vec::new(),
    };
    let http: Vec<Value> = HTTP
        .iter()
        .map(|(path, methods, what)| json!({"path": path, "methods": [methods], "what": what}))
        .collect();
    let anonymous = state
        .auth
        .authenticate(None)
        .ok()
        .map(|p| json!({"subscribe": p.subscribe, "publish": p.publish}));
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "websocket": websocket,
        "pages": pages,
        "http": http,
        "compression": state.limits.compression,
        "anonymous": anonymous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages;

    #[test]
    fn every_listed_page_is_built_in() {
        for (path, _) in PAGES {
            assert!(pages::find(path).is_some(), "{path}");
        }
    }
}
