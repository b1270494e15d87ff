//! The HTTP API beside the WebSockets: publish, list topics, health, metrics.
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /api/publish/{topic}[?key=K]`, body = payload | 200 `{"topic","epoch","offset"}`; 400 bad topic, 401/403, 413 too large |
//! | `GET /api/presence/{topic}` | 200 `{"topic","count","clients":[{"client","user"}],"truncated"}`; 400 bad topic, 401/403, 404 presence not enabled, 503 backplane down |
//! | `GET /api/topics` | 200 `{"topics": [{"topic","subscribers","epoch","offset","retained"}]}` |
//! | `GET /api/routes` | 200 what the gateway serves ([`crate::directory`]) |
//! | `GET /healthz` | 200 `{"status":"ok"}`, 503 when degraded or shutting down |
//! | `GET /metrics` | Prometheus text |

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body as HttpBody;
use serde_json::json;

use crate::auth::AuthError;
use crate::hub::{Health, Permissions, PresenceError, PublishError, validate_topic};
use crate::metrics::Refusal;
use crate::request::{bearer_token, percent_decode, query_param};
use crate::response::{self, Body};
use crate::server::State;

/// Whether `path` belongs to the API (so no WebSocket route or file may claim it).
pub(crate) fn is_api_path(path: &str) -> bool {
    path == "/healthz" || path == "/metrics" || path == "/api" || path.starts_with("/api/")
}

/// Answers a request whose path [`is_api_path`].
pub(crate) async fn handle<B>(state: &Arc<State>, req: Request<B>) -> Response<Body>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/healthz" => health(state, req.method()),
        "/metrics" => metrics(state, req.method()),
        "/api/topics" => topics(state, &req),
        "/api/routes" => crate::directory::routes(state, req.method()),
        _ => {
            if let Some(topic) = path.strip_prefix("/api/publish/") {
                publish(state, topic, req).await
            } else if let Some(topic) = path.strip_prefix("/api/presence/") {
                match presence_request(state, topic, &req) {
                    Ok(topic) => presence(state, &topic).await,
                    Err(refusal) => *refusal,
                }
            } else {
                response::json_error(StatusCode::NOT_FOUND, "no such API endpoint")
            }
        }
    }
}

fn health(state: &State, method: &Method) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return response::method_not_allowed("GET, HEAD");
    }
    if state.tasks.is_shutting_down() {
        return response::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "shutting_down"}),
        );
    }
    match state.hub.health() {
        Health::Ok => response::json(StatusCode::OK, &json!({"status": "ok"})),
        Health::Degraded(reason) => response::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "degraded", "reason": reason}),
        ),
    }
}

fn metrics(state: &State, method: &Method) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return response::method_not_allowed("GET, HEAD");
    }
    let mut out = String::with_capacity(8 << 10);
    state.metrics.render(&mut out);
    state.hub.render_metrics(&mut out);
    response::with_type(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        out,
    )
}

/// The caller's permissions.
fn authenticate<B>(state: &State, req: &Request<B>) -> Result<Permissions, AuthError> {
    let token = bearer_token(req.headers(), req.uri().query());
    state.auth.authenticate(token.as_deref())
}

/// The 401 for refused credentials.
fn unauthorized(state: &State, e: &AuthError) -> Response<Body> {
    state.metrics.refused(Refusal::Unauthorized);
    response::unauthorized(e, matches!(e, AuthError::Invalid(_)))
}

fn topics<B>(state: &State, req: &Request<B>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return response::method_not_allowed("GET, HEAD");
    }
    let permissions = match authenticate(state, req) {
        Ok(p) => p,
        Err(e) => return unauthorized(state, &e),
    };
    let mut topics = state.hub.topics();
    topics.retain(|t| permissions.can_subscribe(&t.topic));
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    response::json(StatusCode::OK, &json!({ "topics": topics }))
}

async fn publish<B>(state: &State, raw_topic: &str, req: Request<B>) -> Response<Body>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.method() != Method::POST {
        return response::method_not_allowed("POST");
    }
    let Some(topic) = percent_decode(raw_topic, false) else {
        return response::json_error(StatusCode::BAD_REQUEST, "bad escape in the topic");
    };
    if let Err(why) = validate_topic(&topic) {
        return response::json_error(StatusCode::BAD_REQUEST, format!("invalid topic: {why}"));
    }
    let permissions = match authenticate(state, &req) {
        Ok(p) => p,
        Err(e) => return unauthorized(state, &e),
    };
    if !permissions.can_publish(&topic) {
        return response::json_error(
            StatusCode::FORBIDDEN,
            format!("this token may not publish to {topic:?}"),
        );
    }
    let key = query_param(req.uri().query(), "key").filter(|k| !k.is_empty());
    let limit = state.limits.max_message_size;
    let too_large = || {
        response::json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the payload is larger than {limit} bytes"),
        )
    };
    if req.body().size_hint().lower() > limit as u64 {
        return too_large();
    }
    let data = match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => {
            return response::json_error(StatusCode::BAD_REQUEST, format!("reading the body: {e}"));
        }
    };
    match state.hub.publish(&topic, data, key).await {
        Ok(position) => response::json(
            StatusCode::OK,
            &json!({"topic": topic, "epoch": position.epoch, "offset": position.offset}),
        ),
        Err(e @ PublishError::InvalidTopic(_)) => response::json_error(StatusCode::BAD_REQUEST, e),
        Err(e @ PublishError::TooLarge { .. }) => {
            response::json_error(StatusCode::PAYLOAD_TOO_LARGE, e)
        }
        Err(e @ PublishError::Backplane(_)) => {
            response::json_error(StatusCode::SERVICE_UNAVAILABLE, e)
        }
    }
}

/// The checks of a presence request: method, topic, token, permission (the caller must be
/// allowed to subscribe to the topic). The topic, or the refusal.
fn presence_request<B>(
    state: &State,
    raw_topic: &str,
    req: &Request<B>,
) -> Result<String, Box<Response<Body>>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(Box::new(response::method_not_allowed("GET, HEAD")));
    }
    let Some(topic) = percent_decode(raw_topic, false) else {
        return Err(Box::new(response::json_error(
            StatusCode::BAD_REQUEST,
            "bad escape in the topic",
        )));
    };
    if let Err(why) = validate_topic(&topic) {
        return Err(Box::new(response::json_error(
            StatusCode::BAD_REQUEST,
            format!("invalid topic: {why}"),
        )));
    }
    let permissions = authenticate(state, req).map_err(|e| Box::new(unauthorized(state, &e)))?;
    if !permissions.can_subscribe(&topic) {
        return Err(Box::new(response::json_error(
            StatusCode::FORBIDDEN,
            format!("this token may not see the presence of {topic:?}"),
        )));
    }
    Ok(topic)
}

/// Who subscribes to a presence topic, on every node.
async fn presence(state: &State, topic: &str) -> Response<Body> {
    match state.hub.presence(topic).await {
        Ok(list) => response::json(
            StatusCode::OK,
            &json!({
                "topic": topic,
                "count": list.count,
                "truncated": list.truncated(),
                "clients": list.clients,
            }),
        ),
        Err(e @ PresenceError::InvalidTopic(_)) => response::json_error(StatusCode::BAD_REQUEST, e),
        Err(e @ PresenceError::NotEnabled(_)) => response::json_error(StatusCode::NOT_FOUND, e),
        Err(e @ PresenceError::Backplane(_)) => {
            response::json_error(StatusCode::SERVICE_UNAVAILABLE, e)
        }
    }
}
