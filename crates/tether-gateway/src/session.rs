//! One pub/sub WebSocket connection: requests in, acks and messages out.
//!
//! The task waits on three things at once: the client's next message (`next()` is
//! cancel-safe), its outbound queue (publishers push into it and wake the task), and the
//! shutdown signal. Queued frames are handed to the engine in batches of about
//! [`WRITE_BUDGET`] bytes and only while the engine holds less than that, so a client that
//! reads slowly leaves its messages in the bounded queue, where the slow-consumer policy
//! applies, instead of in an ever-growing socket buffer. The engine writes them out when the
//! task polls `next()` (one vectored write) and answers pings by itself.

use std::collections::{BTreeMap, VecDeque};
use std::future::poll_fn;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tether::{CloseCode, CloseFrame, Message, WebSocket};
use tether_proto::SendError;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

use crate::hub::{
    Member, Pattern, Permissions, PresenceError, PublishError, Queued, Resume, SlowConsumer,
    validate_topic,
};
use crate::protocol::{
    Ack, ErrorCode, Request, RequestError, RequestId, ServerMessage, Since, TopicStatus,
};

/// Bytes of messages the engine may hold before the task waits for the socket. Frames are
/// shared with every other subscriber, so this costs little memory of its own; past it,
/// messages wait in the bounded queue where the slow-consumer policy sees them.
const WRITE_BUDGET: usize = 64 << 10;

/// Most subscriptions one connection may hold.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 4096;

/// How long a reply may wait for room in a full engine before the client counts as a slow
/// consumer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The most a closing handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Rounds of "fill the engine, let it write" per wake-up before yielding.
const ROUNDS_PER_WAKE: usize = 8;

/// Why the loop ended.
enum End {
    /// The connection is over (closed by the client, or failed).
    Finished,
    /// The server is shutting down: close with 1001.
    Shutdown,
    /// The client fell behind under the `disconnect` policy: close with 1008.
    SlowConsumer,
}

/// Why [`Session::fill`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The queue is empty; its waker is registered.
    QueueEmpty,
    /// The engine holds [`WRITE_BUDGET`] bytes.
    Budget,
    /// The engine refused more (its `max_outbound_buffer` is below our budget).
    EngineFull,
}

enum Event {
    Incoming(Option<Result<Message, tether::Error>>),
    SlowConsumer,
}

struct Session {
    member: Member,
    permissions: Permissions,
    /// Records taken from the queue that the engine had no room for yet.
    backlog: VecDeque<Queued>,
    deliveries: crate::hub::DeliveryBatch,
}

/// Serves the connection until it is over.
pub(crate) async fn run<S>(
    member: Member,
    mut ws: WebSocket<S>,
    permissions: Permissions,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session {
        member,
        permissions,
        backlog: VecDeque::new(),
        deliveries: Default::default(),
    };
    let end = session.drive(&mut ws, &mut shutdown).await;
    session.flush_stats();
    // Unsubscribe before closing: nothing more is queued for this connection.
    drop(session);
    let frame = match end {
        End::Finished => None,
        End::Shutdown => Some(CloseFrame::new(CloseCode::GOING_AWAY, "going away")),
        End::SlowConsumer => Some(CloseFrame::new(
            CloseCode::POLICY_VIOLATION,
            "slow consumer",
        )),
    };
    // Finishes the closing handshake (or, after a failure, waits for the transport to end).
    let _ = timeout(CLOSE_TIMEOUT, ws.close(frame)).await;
}

impl Session {
    async fn drive<S>(&mut self, ws: &mut WebSocket<S>, shutdown: &mut watch::Receiver<bool>) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut watching = true;
        loop {
            if *shutdown.borrow_and_update() {
                return End::Shutdown;
            }
            let event = tokio::select! {
                biased;
                changed = shutdown.changed(), if watching => {
                    // A dropped sender means no shutdown will ever come.
                    watching = changed.is_ok();
                    continue;
                }
                event = poll_fn(|cx| self.poll_event(cx, ws)) => event,
            };
            let result = match event {
                Event::Incoming(Some(Ok(Message::Text(text)))) => {
                    let reply = self.handle(text.as_str()).await;
                    self.reply(ws, shutdown, reply).await
                }
                Event::Incoming(Some(Ok(Message::Binary(_)))) => {
                    let reply = RequestError::new(
                        None,
                        ErrorCode::BadRequest,
                        "binary messages are not part of tether.pubsub.v1: send JSON text",
                    );
                    self.reply(ws, shutdown, reply.to_reply()).await
                }
                // Pings are answered by the engine; a close is answered by it too, and the
                // stream ends after the handshake.
                Event::Incoming(Some(Ok(_))) => Ok(()),
                Event::Incoming(Some(Err(_)) | None) => Err(End::Finished),
                Event::SlowConsumer => Err(End::SlowConsumer),
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    /// Hands queued records to the engine while it has room, and polls the engine (which
    /// writes what it holds, then reads). Ready with the client's next message, or when the
    /// queue was closed for a slow consumer.
    fn poll_event<S>(&mut self, cx: &mut Context<'_>, ws: &mut WebSocket<S>) -> Poll<Event>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        for _ in 0..ROUNDS_PER_WAKE {
            let stop = match self.fill(cx, ws) {
                Err(SlowConsumer) => return Poll::Ready(Event::SlowConsumer),
                Ok(stop) => stop,
            };
            if let Poll::Ready(item) = ws.poll_next_unpin(cx) {
                return Poll::Ready(Event::Incoming(item));
            }
            // The engine wrote what the socket took. Sleep when a waker is registered: the
            // queue's (it was empty) or the socket's (bytes are left, so the write was
            // pending). Otherwise room was made and records wait: go round again.
            let pending = ws.pending_bytes();
            let socket_waits = pending > 0 && (pending >= WRITE_BUDGET || stop == Stop::EngineFull);
            if stop == Stop::QueueEmpty || socket_waits {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Moves records from the queue into the engine up to [`WRITE_BUDGET`], and says why it
    /// stopped.
    fn fill<S>(&mut self, cx: &mut Context<'_>, ws: &mut WebSocket<S>) -> Result<Stop, SlowConsumer>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Poll::Ready(e) = self.member.outbox().poll_closed(cx) {
            return Err(e);
        }
        let now = Instant::now();
        let mut stop = Stop::Budget;
        'fill: while ws.pending_bytes() < WRITE_BUDGET {
            if self.backlog.is_empty() {
                let budget = WRITE_BUDGET - ws.pending_bytes();
                match self
                    .member
                    .outbox()
                    .poll_take(cx, &mut self.backlog, budget)
                {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => {
                        stop = Stop::QueueEmpty;
                        break;
                    }
                }
            }
            while let Some(item) = self.backlog.front() {
                if ws.pending_bytes() >= WRITE_BUDGET {
                    break 'fill;
                }
                match ws.queue_prepared(item.record.frame()) {
                    Ok(()) => {
                        let latency = item
                            .live
                            .then(|| now.saturating_duration_since(item.record.received_at()));
                        self.deliveries.observe(latency);
                    }
                    // The engine's own limit is below our budget: wait for the socket.
                    Err(tether::Error::Send(SendError::Full)) => {
                        stop = Stop::EngineFull;
                        break 'fill;
                    }
                    // The connection is closing: the record is moot.
                    Err(_) => {}
                }
                self.backlog.pop_front();
            }
        }
        self.flush_stats();
        Ok(stop)
    }

    fn flush_stats(&mut self) {
        self.member.hub().stats().merge(&mut self.deliveries);
    }

    /// Queues a reply; when the engine is full, waits (bounded) for the socket to take some.
    async fn reply<S>(
        &mut self,
        ws: &mut WebSocket<S>,
        shutdown: &mut watch::Receiver<bool>,
        reply: ServerMessage,
    ) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let message = Message::text(reply.to_string());
        match ws.queue(message.clone()) {
            Err(tether::Error::Send(SendError::Full)) => {}
            Ok(()) | Err(_) => return Ok(()),
        }
        tokio::select! {
            flushed = timeout(REPLY_TIMEOUT, ws.flush()) => match flushed {
                Ok(Ok(())) => {
                    let _ = ws.queue(message);
                    Ok(())
                }
                Ok(Err(_)) => Err(End::Finished),
                Err(_) => {
                    self.member.hub().stats().count_slow_consumer_disconnect();
                    Err(End::SlowConsumer)
                }
            },
            _ = shutdown_requested(shutdown) => Err(End::Shutdown),
        }
    }

    /// Answers one request.
    async fn handle(&mut self, text: &str) -> ServerMessage {
        let request = match Request::parse(text) {
            Ok(request) => request,
            Err(e) => return e.to_reply(),
        };
        let id = request.id().cloned();
        let result = match request {
            Request::Subscribe { id, topic, since } => self.subscribe(id, &topic, since).await,
            Request::Unsubscribe { id, topic } => self.unsubscribe(id, &topic),
            Request::Publish {
                id,
                topic,
                data,
                key,
            } => self.publish(id, &topic, data.get(), key).await,
            Request::Presence { id, topic } => self.presence(id, &topic).await,
        };
        result.unwrap_or_else(|(code, reason)| RequestError::new(id, code, reason).to_reply())
    }

    async fn subscribe(
        &mut self,
        id: Option<RequestId>,
        topic: &str,
        since: Option<Since>,
    ) -> Result<ServerMessage, (ErrorCode, String)> {
        let pattern = Pattern::parse(topic).map_err(|e| (ErrorCode::InvalidTopic, e))?;
        if !self.permissions.can_subscribe(topic) {
            return Err((
                ErrorCode::Forbidden,
                format!("not allowed to subscribe to {topic:?}"),
            ));
        }
        if !self.member.is_subscribed(&pattern)
            && self.member.subscription_count() >= MAX_SUBSCRIPTIONS
        {
            return Err((
                ErrorCode::TooManySubscriptions,
                format!("a connection may hold {MAX_SUBSCRIPTIONS} subscriptions"),
            ));
        }
        let resume = match (&pattern, &since) {
            (_, None) => Resume::Live,
            (Pattern::Exact(_), Some(Since::Position(position))) => Resume::After(*position),
            (_, Some(Since::Position(_))) => {
                return Err((
                    ErrorCode::BadRequest,
                    format!(
                        "since: for pattern {topic:?}, give positions per topic: {{\"<topic>\": {{\"epoch\": ..., \"offset\": ...}}}}"
                    ),
                ));
            }
            (_, Some(Since::Topics(positions))) => {
                check_since_topics(&pattern, positions)?;
                Resume::Topics(positions)
            }
        };
        let synced = self
            .member
            .subscribe(pattern, resume)
            .await
            .map_err(|e| (ErrorCode::Unavailable, e.to_string()))?;
        let topics = synced
            .into_iter()
            .map(|t| {
                let status = TopicStatus {
                    epoch: t.position.epoch,
                    offset: t.position.offset,
                    recovered: t.recovered,
                };
                (t.topic.to_string(), status)
            })
            .collect();
        Ok(ServerMessage::Ack(Ack::subscribed(id, topics)))
    }

    fn unsubscribe(
        &mut self,
        id: Option<RequestId>,
        topic: &str,
    ) -> Result<ServerMessage, (ErrorCode, String)> {
        let pattern = Pattern::parse(topic).map_err(|e| (ErrorCode::InvalidTopic, e))?;
        if !self.member.unsubscribe(&pattern) {
            return Err((
                ErrorCode::NotSubscribed,
                format!("not subscribed to {topic:?}"),
            ));
        }
        Ok(ServerMessage::Ack(Ack::unsubscribed(id)))
    }

    async fn publish(
        &mut self,
        id: Option<RequestId>,
        topic: &str,
        data: &str,
        key: Option<String>,
    ) -> Result<ServerMessage, (ErrorCode, String)> {
        validate_topic(topic).map_err(|e| (ErrorCode::InvalidTopic, e))?;
        if !self.permissions.can_publish(topic) {
            return Err((
                ErrorCode::Forbidden,
                format!("not allowed to publish to {topic:?}"),
            ));
        }
        let data = Bytes::copy_from_slice(data.as_bytes());
        match self.member.hub().publish(topic, data, key).await {
            Ok(position) => Ok(ServerMessage::Ack(Ack::published(
                id,
                topic.into(),
                position,
            ))),
            Err(e @ PublishError::InvalidTopic(_)) => Err((ErrorCode::InvalidTopic, e.to_string())),
            Err(e @ PublishError::TooLarge { .. }) => Err((ErrorCode::TooLarge, e.to_string())),
            Err(e @ PublishError::Backplane(_)) => Err((ErrorCode::Unavailable, e.to_string())),
        }
    }
}

impl Session {
    /// Who subscribes to `topic`; a client that may subscribe to it may ask.
    async fn presence(
        &mut self,
        id: Option<RequestId>,
        topic: &str,
    ) -> Result<ServerMessage, (ErrorCode, String)> {
        validate_topic(topic).map_err(|e| (ErrorCode::InvalidTopic, e))?;
        if !self.permissions.can_subscribe(topic) {
            return Err((
                ErrorCode::Forbidden,
                format!("not allowed to see the presence of {topic:?}"),
            ));
        }
        match self.member.hub().presence(topic).await {
            Ok(list) => Ok(ServerMessage::Ack(Ack::presence(id, topic.into(), list))),
            Err(e @ PresenceError::InvalidTopic(_)) => {
                Err((ErrorCode::InvalidTopic, e.to_string()))
            }
            Err(e @ PresenceError::NotEnabled(_)) => {
                Err((ErrorCode::PresenceDisabled, e.to_string()))
            }
            Err(e @ PresenceError::Backplane(_)) => Err((ErrorCode::Unavailable, e.to_string())),
        }
    }
}

/// Resolves when shutdown is asked for; never, if the sender is gone.
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|&stop| stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Every topic in a pattern's `since` must be a topic the pattern matches.
fn check_since_topics(
    pattern: &Pattern,
    positions: &BTreeMap<String, crate::hub::Position>,
) -> Result<(), (ErrorCode, String)> {
    for topic in positions.keys() {
        if let Err(e) = validate_topic(topic) {
            return Err((ErrorCode::BadRequest, format!("since: {e}")));
        }
        if !pattern.matches(topic) {
            return Err((
                ErrorCode::BadRequest,
                format!("since: {pattern} does not match topic {topic:?}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Epoch, Position};

    #[test]
    fn since_topics_must_be_valid_and_matched_by_the_pattern() {
        let position = Position {
            epoch: Epoch::from_u64(1),
            offset: 1,
        };
        let pattern = Pattern::parse("a.*").unwrap();
        let mut since = BTreeMap::new();
        since.insert("a.b".to_owned(), position);
        assert_eq!(check_since_topics(&pattern, &since), Ok(()));
        since.insert("b".to_owned(), position);
        let (code, reason) = check_since_topics(&pattern, &since).unwrap_err();
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(
            reason.contains("a.* does not match topic \"b\""),
            "{reason}"
        );
        since.clear();
        since.insert("a..b".to_owned(), position);
        assert!(check_since_topics(&pattern, &since).is_err());
    }

    #[test]
    fn the_write_budget_stays_below_the_engines_default_limit() {
        assert!(WRITE_BUDGET < tether::Config::default().max_outbound_buffer);
    }
}
