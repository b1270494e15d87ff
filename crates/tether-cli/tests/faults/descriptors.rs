//! Out of file descriptors: `tether serve` under `prlimit --nofile=64:64` is sent connections
//! until `accept` fails with EMFILE. With the listen backlog full the server must not spin
//! (its CPU time over 3 s stays low: the accept backoff grows to 1 s), must not exit, must
//! count the failures in `tether_accept_errors_total`, and must serve new clients again once
//! connections are closed.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::gateway::{Gateway, cpu_ticks, open_fds};
use crate::support::{PATIENCE, required_program};

/// The server's open-files limit.
const NOFILE: usize = 64;
/// Connections the test opens: the server accepts until its limit, the rest wait in the
/// listen backlog.
const CONNECTIONS: usize = 150;
/// How long the server's CPU time is watched while the backlog is full.
const WATCH: Duration = Duration::from_secs(3);
/// CPU time allowed over `WATCH`, in clock ticks (normally 100 per second): 0.3 s. A loop
/// retrying `accept` at once would burn all 3 s; with the backoff it wakes about 5 times.
const CPU_TICKS_MAX: u64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_server_backs_off_and_recovers() {
    if required_program("prlimit", "util-linux").is_none() {
        return;
    }
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    // A silent connection is closed after handshake_timeout: long enough for the watch.
    let config = "listen = \"127.0.0.1:0\"\n[limits]\nhandshake_timeout = \"60s\"\n";
    let mut gateway = Gateway::start("faults-nofile.toml", config, &["prlimit", &nofile, "--"]);
    let pid = gateway.pid();
    let baseline = open_fds(pid);
    let mut held = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        // The kernel completes each handshake from the backlog, accepted or not.
        held.push(TcpStream::connect(gateway.addr).await.unwrap());
    }
    gateway
        .process
        .stderr_line("accept failed: Too many open files");
    // The server holds every descriptor it may have.
    let deadline = Instant::now() + PATIENCE;
    while open_fds(pid) < NOFILE {
        assert!(Instant::now() < deadline, "only {} fds open", open_fds(pid));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = cpu_ticks(pid);
    tokio::time::sleep(WATCH).await;
    let spent = cpu_ticks(pid) - before;
    assert!(gateway.alive(), "the server exited when out of descriptors");

    drop(held);
    // Closed connections free their descriptors; the backlog drains; new clients get in.
    let (status, _) = gateway.get("/healthz").await;
    assert_eq!(status, 200);
    let errors = gateway.metric("tether_accept_errors_total").await;
    let deadline = Instant::now() + PATIENCE;
    while open_fds(pid) > baseline + 2 {
        assert!(Instant::now() < deadline, "fds stay at {}", open_fds(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "faults: RLIMIT_NOFILE {NOFILE}, {CONNECTIONS} connections: {} fds at the limit, \
         CPU {spent} ticks over {WATCH:?} with the backlog full (limit {CPU_TICKS_MAX}), \
         {errors} accept errors counted, fds back to {} (baseline {baseline}), serving again",
        NOFILE,
        open_fds(pid)
    );
    assert!(
        spent <= CPU_TICKS_MAX,
        "the accept loop spins: {spent} ticks"
    );
    assert!(errors >= 1.0);
    assert!(gateway.alive());
}
