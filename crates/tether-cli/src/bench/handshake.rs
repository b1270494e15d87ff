//! The opening handshake over raw TCP (RFC 6455 §4.1), built and checked by `tether_proto`,
//! optionally from a chosen local source address; and the closing handshake (§7.1.2).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tether_proto::Config;
use tether_proto::frame::OpCode;
use tether_proto::handshake::{ClientRequest, client_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use super::frame::{ReadBuffer, close_frame, complete_frame};
use super::recorder::{Recorder, Totals};
use super::target::Target;

/// What is asked for in every handshake of a run.
#[derive(Clone, Debug)]
pub struct HandshakeSpec {
    /// The server's address.
    pub addr: SocketAddr,
    /// Host header and resource.
    pub request: ClientRequest,
    /// The engine configuration: limits for the answer; no compression offered.
    pub config: Config,
}

impl HandshakeSpec {
    /// The handshake for `target`, offering `subprotocol` if given.
    pub fn new(target: &Target, addr: SocketAddr, subprotocol: Option<&str>) -> HandshakeSpec {
        let mut request = ClientRequest::new(target.authority.clone(), target.resource.clone());
        request.subprotocols = subprotocol.into_iter().map(String::from).collect();
        let mut config = Config::default();
        config.deflate = None;
        HandshakeSpec {
            addr,
            request,
            config,
        }
    }
}

/// Connects (from `local` if given), sends the opening handshake and checks the answer.
///
/// On success `buf` holds the bytes received after the answer's head: the start of the
/// WebSocket stream. The buffer is the caller's, to be reused.
pub async fn open(
    spec: &HandshakeSpec,
    local: Option<IpAddr>,
    buf: &mut Vec<u8>,
) -> Result<TcpStream, String> {
    let socket = match spec.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("cannot make a socket: {e}"))?;
    if let Some(ip) = local {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("cannot bind the source address {ip}: {e}"))?;
    }
    let mut stream = socket
        .connect(spec.addr)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", spec.addr))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
    let (request, pending) = client_request(&spec.request, &spec.config, rand::random());
    stream
        .write_all(&request)
        .await
        .map_err(|e| format!("cannot send the handshake: {e}"))?;
    buf.clear();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match pending.parse_response(buf, &spec.config) {
            Ok(None) => continue,
            Ok(Some((_response, head_len))) => {
                buf.drain(..head_len);
                return Ok(stream);
            }
            Err(e) => return Err(format!("handshake refused: {e}")),
        }
    }
}

/// A connection after its handshake.
#[derive(Debug)]
pub struct Opened {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes the server sent right after its answer (often none).
    pub leftover: Box<[u8]>,
}

/// Opens `count` connections, at most `concurrency` handshakes at once, spreading them
/// over the `sources` addresses (round-robin; none: the system's choice). Results are in
/// connection order. With `totals`, each handshake's time is recorded there.
pub async fn open_many(
    spec: Arc<HandshakeSpec>,
    count: usize,
    sources: Arc<[IpAddr]>,
    concurrency: usize,
    totals: Option<Arc<Totals>>,
) -> Vec<Result<Opened, String>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.min(count) {
        let (spec, sources, next) = (spec.clone(), sources.clone(), next.clone());
        let totals = totals.clone();
        workers.spawn(async move {
            let mut recorder = totals.as_deref().map(Recorder::new);
            let mut opened = Vec::new();
            let mut buf = Vec::with_capacity(1024);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return opened;
                }
                let local = (!sources.is_empty()).then(|| sources[index % sources.len()]);
                let started = Instant::now();
                let result = open(&spec, local, &mut buf).await.map(|stream| Opened {
                    stream,
                    leftover: buf.as_slice().into(),
                });
                if let Some(recorder) = &mut recorder {
                    let now = Instant::now();
                    match &result {
                        Ok(_) => recorder.record(now, now - started, 0),
                        Err(e) => recorder.totals().error(|| e.clone()),
                    }
                }
                opened.push((index, result));
            }
        });
    }
    let mut all: Vec<Option<Result<Opened, String>>> = (0..count).map(|_| None).collect();
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(opened) => {
                for (index, result) in opened {
                    all[index] = Some(result);
                }
            }
            Err(e) => tracing::debug!("a connecting task failed: {e}"),
        }
    }
    all.into_iter()
        .map(|slot| slot.unwrap_or_else(|| Err("the connecting task failed".into())))
        .collect()
}

/// Finishes the frame being written (`tail`), sends a close and reads until the server's
/// close and its end of the TCP connection, skipping the echoes still in flight. RFC 6455
/// §7.1.1: "the server SHOULD close the underlying TCP connection first", so the TIME_WAIT
/// state stays on the server's side and a client opening connections all day keeps its
/// ports. Returns whether the server's close frame came.
pub async fn close(
    stream: &mut TcpStream,
    tail: &[u8],
    read: &mut ReadBuffer,
) -> std::io::Result<bool> {
    stream.write_all(tail).await?;
    stream.write_all(&close_frame()).await?;
    let mut closed = false;
    loop {
        while let Ok(Some((header, range))) = complete_frame(read.filled()) {
            closed |= header.opcode == OpCode::Close;
            read.consume(range.end);
        }
        let n = stream.read(read.spare()).await?;
        if n == 0 {
            return Ok(closed);
        }
        read.advance(n);
    }
}
