//! The async layer end to end: in-memory duplex pairs and real TCP sockets on port 0.

use std::ops::ControlFlow;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tether::{
    AcceptOptions, ClientBuilder, CloseCode, CloseFrame, Config, Error, Message, Rejection,
    WebSocket,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::net::TcpListener;

async fn pair_with(
    config: Config,
    options: AcceptOptions,
    client: ClientBuilder,
) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = duplex(1 << 20);
    let server = tokio::spawn(async move {
        tether::accept_with(a, config, move |_| Ok(options))
            .await
            .unwrap()
    });
    let (client, _) = client.connect_on(b).await.unwrap();
    (client, server.await.unwrap())
}

async fn pair() -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    pair_with(
        Config::default(),
        AcceptOptions::default(),
        ClientBuilder::new("ws://test/"),
    )
    .await
}

#[tokio::test]
async fn text_and_binary_round_trip() {
    let (mut client, mut server) = pair().await;
    client.send(Message::text("hello")).await.unwrap();
    client.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(
        server.next().await.unwrap().unwrap(),
        Message::text("hello")
    );
    assert_eq!(
        server.next().await.unwrap().unwrap(),
        Message::binary(vec![1, 2, 3])
    );
    server.send(Message::text("world")).await.unwrap();
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::text("world")
    );
}

#[tokio::test]
async fn compression_is_negotiated_by_default_and_works() {
    let (mut client, mut server) = pair().await;
    assert!(client.negotiated().compression && server.negotiated().compression);
    let big = "compressible ".repeat(10_000);
    client.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(server.next().await.unwrap().unwrap(), Message::text(big));
}

#[tokio::test]
async fn server_picks_subprotocol_by_its_own_preference() {
    let options = AcceptOptions {
        subprotocols: vec!["b".into(), "a".into()],
        ..Default::default()
    };
    let client = ClientBuilder::new("ws://test/")
        .subprotocol("a")
        .subprotocol("b");
    let (client, server) = pair_with(Config::default(), options, client).await;
    assert_eq!(client.subprotocol(), Some("b"));
    assert_eq!(server.subprotocol(), Some("b"));
}

#[tokio::test]
async fn ping_is_answered_while_reading() {
    let (mut client, mut server) = pair().await;
    client
        .send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    assert_eq!(
        server.next().await.unwrap().unwrap(),
        Message::Ping(Bytes::from_static(b"are you there"))
    );
    let reader = tokio::spawn(async move { server.next().await });
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::Pong(Bytes::from_static(b"are you there"))
    );
    drop(reader);
}

#[tokio::test]
async fn close_handshake_from_client_ends_both_streams() {
    let (mut client, mut server) = pair().await;
    let server_task = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(msg) = server.next().await {
            seen.push(msg.unwrap());
        }
        seen
    });
    client
        .close(Some(CloseFrame::new(4000, "bye")))
        .await
        .unwrap();
    let seen = server_task.await.unwrap();
    assert_eq!(
        seen,
        vec![Message::Close(Some(CloseFrame::new(4000, "bye")))]
    );
}

#[tokio::test]
async fn close_handshake_from_server_reports_code_to_client() {
    let (mut client, mut server) = pair().await;
    let server_task = tokio::spawn(async move {
        server
            .close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "restart")))
            .await
    });
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::Close(Some(CloseFrame::new(1001, "restart")))
    );
    assert!(
        client.next().await.is_none(),
        "the stream ends after the server closes the transport"
    );
    server_task.await.unwrap().unwrap();
}

#[tokio::test]
async fn dropped_transport_is_an_abnormal_closure() {
    let (mut client, server) = pair().await;
    drop(server);
    assert!(matches!(
        client.next().await,
        Some(Err(Error::AbnormalClosure))
    ));
    assert!(client.next().await.is_none());
}

#[tokio::test]
async fn rejection_by_the_application_reaches_the_client_with_its_status() {
    let (a, b) = duplex(1 << 16);
    let server = tokio::spawn(async move {
        tether::accept_with(a, Config::default(), |req| {
            Err(Rejection::new(
                401,
                format!("no token for {}", req.target()),
            ))
        })
        .await
    });
    let err = ClientBuilder::new("ws://test/private")
        .connect_on(b)
        .await
        .unwrap_err();
    match err {
        Error::HandshakeRefused(refused) => {
            assert_eq!(refused.status, 401);
            assert!(
                refused.body_text().contains("no token for /private"),
                "{refused:?}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(server.await.unwrap(), Err(Error::Rejected(401))));
}

#[tokio::test]
async fn malformed_handshake_gets_400_and_wrong_version_426() {
    for (request, status) in [
        (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], "400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", "426"),
    ] {
        let (a, mut b) = duplex(1 << 16);
        let server = tokio::spawn(async move { tether::accept(a).await });
        b.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        b.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{answer}");
        if status == "426" {
            assert!(answer.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{answer}");
        }
        assert!(matches!(server.await.unwrap(), Err(Error::Handshake(_))));
    }
}

#[tokio::test]
async fn oversized_handshake_gets_431() {
    let (a, mut b) = duplex(1 << 20);
    let server = tokio::spawn(async move { tether::accept(a).await });
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 20_000));
    let _ = b.write_all(&request).await;
    let mut answer = Vec::new();
    b.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(matches!(server.await.unwrap(), Err(Error::Handshake(_))));
}

#[tokio::test]
async fn split_halves_work_from_different_tasks() {
    let (client, mut server) = pair().await;
    let (mut reader, mut writer) = client.split();
    let writer_task = tokio::spawn(async move {
        for i in 0..100 {
            writer.send(Message::text(format!("{i}"))).await.unwrap();
        }
        writer
    });
    for i in 0..100 {
        let msg = server.next().await.unwrap().unwrap();
        assert_eq!(msg, Message::text(format!("{i}")));
        server.feed(msg).await.unwrap();
    }
    server.flush().await.unwrap();
    for i in 0..100 {
        assert_eq!(
            reader.next().await.unwrap().unwrap(),
            Message::text(format!("{i}"))
        );
    }
    let mut writer = writer_task.await.unwrap();
    writer.close().await.unwrap();
}

#[tokio::test]
async fn sending_waits_while_the_peer_does_not_read() {
    let mut config = Config::default();
    config.max_outbound_buffer = 64 << 10;
    config.deflate = None;
    let (a, b) = duplex(16 << 10);
    let server = tokio::spawn(async move {
        tether::accept_with(a, Config::default(), |_| Ok(Default::default()))
            .await
            .unwrap()
    });
    let (mut client, _) = ClientBuilder::new("ws://test/")
        .config(config)
        .connect_on(b)
        .await
        .unwrap();
    let mut server = server.await.unwrap();
    // The server does not read: the duplex buffer (16 KiB) and the outbound queue (64 KiB) fill.
    let mut sent = 0usize;
    let stalled = loop {
        let send = client.send(Message::binary(vec![0u8; 8 << 10]));
        match tokio::time::timeout(Duration::from_millis(200), send).await {
            Ok(result) => {
                result.unwrap();
                sent += 1;
            }
            Err(_) => break true,
        }
        assert!(sent < 1000, "sending never waited");
    };
    assert!(stalled);
    assert!(
        client.pending_bytes() <= (64 << 10) + (8 << 10) + 16,
        "queue bounded: {}",
        client.pending_bytes()
    );
    // Once the server reads, everything arrives.
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while let Some(Ok(Message::Binary(_))) = server.next().await {
            n += 1;
        }
        n
    });
    client.flush().await.unwrap();
    client.close(None).await.unwrap();
    assert!(reader.await.unwrap() >= sent);
}

#[tokio::test]
async fn dropping_a_pending_next_loses_nothing() {
    let (mut client, mut server) = pair().await;
    // Send a large message in pieces while the reader keeps timing out and retrying.
    let big = vec![42u8; 1 << 20];
    let sender = tokio::spawn({
        let big = big.clone();
        async move {
            server.send(Message::binary(big)).await.unwrap();
            server
        }
    });
    let msg = loop {
        match tokio::time::timeout(Duration::from_micros(50), client.next()).await {
            Ok(msg) => break msg.unwrap().unwrap(),
            Err(_) => continue,
        }
    };
    assert_eq!(msg, Message::binary(big));
    drop(sender.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn keepalive_pings_then_idle_timeout() {
    let (mut client, mut server) = pair().await;
    server.set_keepalive(Duration::from_secs(10), Duration::from_secs(30));
    // The client does not read, so it never answers; the server pings, then gives up.
    let result = server.next().await;
    assert!(
        matches!(result, Some(Err(Error::IdleTimeout))),
        "{result:?}"
    );
    let mut seen = Vec::new();
    while let Some(Ok(msg)) = client.next().await {
        seen.push(msg);
    }
    assert!(matches!(seen.first(), Some(Message::Ping(_))), "{seen:?}");
    assert!(
        matches!(seen.last(), Some(Message::Close(Some(f))) if f.code == CloseCode::POLICY_VIOLATION),
        "{seen:?}"
    );
}

#[tokio::test]
async fn real_tcp_sockets() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tether::accept(tcp).await.unwrap();
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_data() {
                ws.feed(msg).await.unwrap();
            }
        }
    });
    let (mut ws, response) = tether::connect(&format!("ws://{addr}/echo")).await.unwrap();
    assert_eq!(response.status, 101);
    for i in 0..1000 {
        ws.feed(Message::text(format!("message {i}")))
            .await
            .unwrap();
    }
    ws.flush().await.unwrap();
    for i in 0..1000 {
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("message {i}"))
        );
    }
    ws.close(None).await.unwrap();
    server.await.unwrap();
}

/// A transport that counts the write calls that reach it and records how much room each
/// read offers.
struct Instrumented {
    inner: DuplexStream,
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    offered: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
}

impl Instrumented {
    fn new(inner: DuplexStream) -> Self {
        Instrumented {
            inner,
            writes: Default::default(),
            offered: Default::default(),
        }
    }
}

impl tokio::io::AsyncRead for Instrumented {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.offered.lock().unwrap().push(buf.remaining());
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Instrumented {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the tests see of a server's instrumented transport.
struct Probe {
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    offered: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
}

/// How the instrumented echo server receives.
#[derive(Clone, Copy)]
enum Echo {
    /// `next()`, and `feed` for the reply.
    Owned,
    /// `for_each_ref` and the `Sender`; a message of `SHARE_THRESHOLD` bytes or more is taken
    /// (`take_lent`) and fed.
    Lent,
}

/// An echo server on an instrumented transport (replies queued, so all replies to one read
/// leave together), and a client without compression. The server's task returns how many
/// messages it echoed.
async fn instrumented_echo_with(
    echo: Echo,
) -> (
    WebSocket<DuplexStream>,
    Probe,
    tokio::task::JoinHandle<usize>,
) {
    let (a, b) = duplex(1 << 20);
    let transport = Instrumented::new(a);
    let probe = Probe {
        writes: transport.writes.clone(),
        offered: transport.offered.clone(),
    };
    let server = tokio::spawn(async move {
        let mut ws = tether::accept_with(transport, Config::default(), |_| Ok(Default::default()))
            .await
            .unwrap();
        let mut echoed = 0;
        match echo {
            Echo::Owned => {
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_data() {
                        ws.feed(msg).await.unwrap();
                        echoed += 1;
                    }
                }
            }
            Echo::Lent => loop {
                if let Some(msg) = ws.take_lent() {
                    assert!(msg.payload().len() >= tether::SHARE_THRESHOLD);
                    ws.feed(msg).await.unwrap();
                    echoed += 1;
                }
                let stopped = ws
                    .for_each_ref(|message, sender| {
                        if !message.is_data() {
                            return ControlFlow::Continue(());
                        }
                        if message.payload().len() >= tether::SHARE_THRESHOLD {
                            return ControlFlow::Break(());
                        }
                        sender.send_ref(message).unwrap();
                        echoed += 1;
                        ControlFlow::Continue(())
                    })
                    .await;
                match stopped {
                    Some(Ok(())) => {}
                    None => break,
                    Some(Err(e)) => panic!("{e}"),
                }
            },
        }
        echoed
    });
    let mut config = Config::default();
    config.deflate = None;
    let (client, _) = ClientBuilder::new("ws://test/")
        .config(config)
        .connect_on(b)
        .await
        .unwrap();
    (client, probe, server)
}

async fn instrumented_echo() -> (
    WebSocket<DuplexStream>,
    Probe,
    tokio::task::JoinHandle<usize>,
) {
    instrumented_echo_with(Echo::Owned).await
}

// The design claim of the driver: all replies produced by one read leave in one write.
#[tokio::test]
async fn replies_to_one_read_leave_in_one_write() {
    let (mut client, probe, server) = instrumented_echo().await;
    let writes = probe.writes;
    // 100 messages in one write: the server reads them in one read.
    for i in 0..100 {
        client
            .feed(Message::text(format!("pipelined {i}")))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    for i in 0..100 {
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::text(format!("pipelined {i}"))
        );
    }
    let handshake_writes = 1;
    assert_eq!(
        writes.load(std::sync::atomic::Ordering::SeqCst),
        handshake_writes + 1,
        "one write for 100 echoes"
    );
    client.close(None).await.unwrap();
    assert_eq!(server.await.unwrap(), 100);
}

// The same with messages lent to a handler: small ones answered from the read buffer, a large
// one taken and queued by reference, a ping answered by the engine in its place, in order.
#[tokio::test]
async fn a_handler_answers_lent_messages_in_order_with_one_write() {
    let (mut client, probe, server) = instrumented_echo_with(Echo::Lent).await;
    let mut sent = Vec::new();
    for i in 0..50 {
        sent.push(Message::text(format!("lent {i}")));
    }
    sent.insert(20, Message::binary(vec![7; 5000]));
    sent.insert(30, Message::Ping(Bytes::from_static(b"in between")));
    for msg in &sent {
        client.feed(msg.clone()).await.unwrap();
    }
    client.flush().await.unwrap();
    for want in &sent {
        let want = match want {
            Message::Ping(p) => Message::Pong(p.clone()),
            other => other.clone(),
        };
        assert_eq!(client.next().await.unwrap().unwrap(), want);
    }
    // The handshake, then the replies in three chunks: the small ones before the large one,
    // the large one by reference (not copied), the rest. This transport has no vectored
    // writes, so each chunk is a write; on TCP the three leave in one `writev`.
    assert_eq!(
        probe.writes.load(std::sync::atomic::Ordering::SeqCst),
        1 + 3,
        "one write per queued chunk"
    );
    client.close(None).await.unwrap();
    // The handler saw the close; `for_each_ref` then ended with the connection.
    assert_eq!(server.await.unwrap(), 51);
}

// Keepalive counts bytes, not whole messages: a peer slowly sending one large message is alive.
#[tokio::test(start_paused = true)]
async fn keepalive_counts_the_bytes_of_a_message_still_arriving() {
    let (mut client, mut server) = pair().await;
    server.set_keepalive(Duration::from_secs(10), Duration::from_secs(30));
    let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    // A masked binary frame of 1000 bytes (16-bit length), with an all-zero key.
    let mut frame = vec![0x82, 0x80 | 126, 0x03, 0xe8, 0, 0, 0, 0];
    frame.extend_from_slice(&payload);
    let writer = tokio::spawn(async move {
        // 80 s in all, 20 s between parts: longer than the idle timeout, never idle for it.
        for part in frame.chunks(frame.len().div_ceil(4)) {
            tokio::time::sleep(Duration::from_secs(20)).await;
            client.get_mut().write_all(part).await.unwrap();
        }
        client
    });
    let started = tokio::time::Instant::now();
    let msg = server.next().await.unwrap().unwrap();
    assert_eq!(msg, Message::binary(payload));
    assert!(started.elapsed() >= Duration::from_secs(80));
    drop(writer.await.unwrap());
}

/// Both peers stream more than their queues hold, each with a reader task and a writer task.
/// A sender's own queue must never stop its reader, or neither side drains the other and both
/// stall (seen through the gateway's bridge before sends were held at half the limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_streaming_both_ways_at_once_do_not_deadlock() {
    const TOTAL: usize = 16 << 20;
    const CHUNK: usize = 8 << 10;
    let mut config = Config::default();
    config.max_outbound_buffer = 64 << 10;
    config.deflate = None;
    let (a, b) = duplex(16 << 10);
    let server_config = config.clone();
    let server = tokio::spawn(async move {
        tether::accept_with(a, server_config, |_| Ok(Default::default()))
            .await
            .unwrap()
    });
    let (client, _) = ClientBuilder::new("ws://test/")
        .config(config)
        .connect_on(b)
        .await
        .unwrap();
    let server = server.await.unwrap();
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for ws in [client, server] {
        let (mut rx, mut tx) = ws.split();
        writers.push(tokio::spawn(async move {
            for _ in 0..TOTAL / CHUNK {
                tx.feed(Message::binary(vec![7u8; CHUNK])).await.unwrap();
            }
            tx.flush().await.unwrap();
            tx
        }));
        readers.push(tokio::spawn(async move {
            let mut received = 0;
            while received < TOTAL {
                match rx.next().await {
                    Some(Ok(Message::Binary(data))) => received += data.len(),
                    other => panic!("unexpected {other:?} after {received} bytes"),
                }
            }
            received
        }));
    }
    let all = async {
        for reader in readers {
            assert_eq!(reader.await.unwrap(), TOTAL);
        }
        for writer in writers {
            writer.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("the two peers deadlocked");
}

/// Large messages are read straight into the engine (a read sized for the frame, not the
/// shared 128 KiB buffer) and arrive whole and in order, mixed with small ones.
#[tokio::test]
async fn large_messages_are_read_straight_into_the_engine_and_arrive_whole() {
    let (mut client, probe, server) = instrumented_echo().await;
    let offered = probe.offered;
    let pattern = |len: usize, seed: u8| -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    };
    let messages = [
        Message::binary(pattern(64 << 10, 1)),
        Message::binary(pattern(64 << 10, 2)),
        Message::binary(pattern((1 << 20) + 7, 3)),
        Message::text("tether ".repeat(15_000)),
        Message::binary(pattern(10, 4)),
        Message::binary(pattern(64 << 10, 5)),
    ];
    for msg in &messages {
        client.send(msg.clone()).await.unwrap();
        assert_eq!(&client.next().await.unwrap().unwrap(), msg);
    }
    client.close(None).await.unwrap();
    assert_eq!(server.await.unwrap(), messages.len());
    let offered = offered.lock().unwrap();
    let frame = (64 << 10) + 14;
    assert!(
        offered.iter().any(|&n| n > frame && n < 2 * frame),
        "no read sized for a 64 KiB frame: {offered:?}"
    );
    assert!(
        offered.contains(&(128 << 10)),
        "small messages read through the shared buffer: {offered:?}"
    );
}
