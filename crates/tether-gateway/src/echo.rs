//! The echo service: every text and binary message comes back as it went out.

use futures_util::{SinkExt, StreamExt};
use tether::{CloseCode, CloseFrame, Message, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::config::RouteKind;
use crate::metrics::Metrics;
use crate::shutdown::signalled;

/// Echoes until the peer closes, the connection fails, or `shutdown` flips to `true`; then
/// closes with 1001 and waits for the closing handshake. Messages are counted in `metrics`.
///
/// Replies are queued with `feed`, so all replies to one read leave in one write.
pub(crate) async fn serve<S>(
    mut ws: WebSocket<S>,
    mut shutdown: watch::Receiver<bool>,
    metrics: &Metrics,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            biased;
            down = signalled(&mut shutdown) => {
                if down {
                    let frame = CloseFrame::new(CloseCode::GOING_AWAY, "server shutting down");
                    let _ = ws.close(Some(frame)).await;
                }
                return;
            }
            msg = ws.next() => match msg {
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                    metrics.messages(RouteKind::Echo, 1, 0);
                    if ws.feed(msg).await.is_err() {
                        return;
                    }
                    metrics.messages(RouteKind::Echo, 0, 1);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use tether::{ClientBuilder, Config};
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn echoes_then_says_going_away_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let ws = tether::accept_with(tcp, Config::default(), |_| Ok(Default::default()))
                .await
                .unwrap();
            let metrics = Metrics::new();
            serve(ws, rx, &metrics).await;
            let mut out = String::new();
            metrics.render(&mut out);
            out
        });
        let (mut client, _) = ClientBuilder::new(format!("ws://{addr}/"))
            .connect()
            .await
            .unwrap();
        client.send(Message::text("one")).await.unwrap();
        client.send(Message::binary(&b"two"[..])).await.unwrap();
        assert_eq!(client.next().await.unwrap().unwrap(), Message::text("one"));
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::binary(&b"two"[..])
        );
        tx.send(true).unwrap();
        match client.next().await.unwrap().unwrap() {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::GOING_AWAY),
            other => panic!("expected close 1001, got {other:?}"),
        }
        assert!(client.next().await.is_none());
        let metrics = server.await.unwrap();
        assert!(metrics.contains("tether_websocket_messages_sent_total{kind=\"echo\"} 2\n"));
    }
}
