//! Hostile input against the real `tether serve` over real sockets (issue 8): a matrix of
//! malformed handshakes, protocol violations, compression bombs, oversized messages, path
//! traversal, bad credentials and connection floods, each with its exact expected answer.
//! Throughout, a probe client does echo round trips (its latency is reported and bounded),
//! the server's RSS is read before and after each phase (its growth is bounded), and the
//! server must stay up. The table printed here is the one in SECURITY.md.
#![cfg(target_os = "linux")]

mod cases_access;
mod cases_deflate;
mod cases_frames;
mod cases_http;
mod floods;
mod probe;
mod server;
mod table;
mod wire;

use std::time::Duration;

use server::Server;
use table::Outcome;

/// RSS one half-open connection may cost the server, in KiB. Connections still sending their
/// request head are bounded by `handshake_timeout`, `max_pending_per_ip` per address and the
/// open-files limit (see SECURITY.md): each is a hyper connection with its 8 KiB
/// read buffer, write buffer and task. Measured in a debug build with all 3,000 arriving at
/// once: 25-28 KiB on jemalloc (the binary's allocator), 17-18 on glibc.
/// 40 KiB leaves a margin; an unbounded buffer (a 1 GiB bomb, a 2^63 length) would go far
/// past the total.
const RSS_PER_HALF_OPEN_KIB: u64 = 40;
/// Largest RSS growth allowed over the whole attack, in MiB: the half-open flood plus 16 MiB.
const RSS_GROWTH_LIMIT_MIB: u64 = floods::HALF_OPEN as u64 * RSS_PER_HALF_OPEN_KIB / 1024 + 16;
/// Largest RSS growth over the frame cases and deflate bombs, in MiB: one connection at a
/// time holds at most a 1 MiB message (the limit) plus its frame buffer, its inflated copy
/// and the echo going out, a few MiB; 1 GiB of inflated zeros would be 1024 MiB.
const MESSAGE_PHASE_GROWTH_LIMIT_MIB: u64 = 16;
/// Slowest probe round trip allowed while under attack (generous: 2 shared cores).
const PROBE_MAX: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_exact_answers_and_others_stay_served() {
    let open_files = open_files_limit();
    assert!(
        open_files >= floods::HALF_OPEN as u64 + 1024,
        "the half-open flood needs {} open files, the limit is {open_files}: raise it with \
         `ulimit -n 20000` (scripts/test.sh does)",
        floods::HALF_OPEN + 1024
    );
    let dir = std::env::temp_dir().join(format!("tether-hostile-{}", std::process::id()));
    let mut server = Server::start(&dir);
    let addr = server.addr;
    let probe = probe::Probe::start(addr).await;
    // Warm up: one of each kind of exchange, so allocator arenas exist before the baseline.
    let _ = cases_access::run(addr).await;
    let rss_before = server.rss_kib();
    let fds_before = server.open_fds();
    let mut rss = vec![("start".to_string(), rss_before)];
    let mut outcomes: Vec<Outcome> = Vec::new();

    outcomes.extend(cases_http::run(addr).await);
    rss.push(("handshake cases".into(), server.rss_kib()));
    outcomes.push(floods::slowloris(addr).await);
    let (served, dropped) = floods::half_open(&server).await;
    outcomes.push(served);
    outcomes.push(dropped);
    outcomes.push(floods::pending_per_ip(&server).await);
    rss.push(("floods".into(), server.rss_kib()));
    let rss_before_frames = server.rss_kib();
    outcomes.extend(cases_frames::run(addr).await);
    rss.push(("frame cases".into(), server.rss_kib()));
    outcomes.extend(cases_deflate::run(addr).await);
    let rss_after_bombs = server.rss_kib();
    rss.push(("deflate bombs".into(), rss_after_bombs));
    outcomes.extend(cases_access::run(addr).await);
    rss.push(("access cases".into(), server.rss_kib()));
    let alive = server.alive();
    let fds_after = server.open_fds();

    let probe_result = probe.finish().await;
    println!("\n{}", table::render(&outcomes));
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed()).collect();
    println!(
        "{} cases, {} as expected, {} not",
        outcomes.len(),
        outcomes.len() - failed.len(),
        failed.len()
    );
    for (phase, kib) in &rss {
        println!("VmRSS after {phase:<16} {:>8.1} MiB", *kib as f64 / 1024.0);
    }
    let flood_kib = rss[2].1.saturating_sub(rss[1].1);
    println!(
        "half-open flood: {flood_kib} KiB more RSS, {} KiB per connection (allowed {RSS_PER_HALF_OPEN_KIB})",
        flood_kib / floods::HALF_OPEN as u64
    );
    let peak = rss.iter().map(|(_, k)| *k).max().unwrap();
    let growth_mib = peak.saturating_sub(rss_before) / 1024;
    println!(
        "RSS growth at peak: {growth_mib} MiB (limit {RSS_GROWTH_LIMIT_MIB} MiB); open fds {fds_before} before, {fds_after} after"
    );
    let mut latencies = probe_result.expect("the probe client must be served throughout");
    latencies.sort();
    let (p50, p99, max) = (
        probe::quantile(&latencies, 0.5),
        probe::quantile(&latencies, 0.99),
        *latencies.last().unwrap(),
    );
    println!(
        "probe: {} echo round trips, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (limit {:?})",
        latencies.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        PROBE_MAX
    );

    assert!(alive, "tether serve exited during the attack");
    assert!(outcomes.len() >= 40, "only {} cases", outcomes.len());
    assert!(
        failed.is_empty(),
        "{} cases got another answer than expected",
        failed.len()
    );
    assert!(
        growth_mib < RSS_GROWTH_LIMIT_MIB,
        "RSS grew by {growth_mib} MiB"
    );
    // Frames, 1 MiB messages and the 1 GiB bomb hold at most a message at a time.
    let message_growth_mib = rss_after_bombs.saturating_sub(rss_before_frames) / 1024;
    assert!(
        message_growth_mib < MESSAGE_PHASE_GROWTH_LIMIT_MIB,
        "RSS grew by {message_growth_mib} MiB over the frame cases and the deflate bombs"
    );
    assert!(max < PROBE_MAX, "a probe round trip took {max:?}");
    assert!(
        fds_after <= fds_before + 4,
        "file descriptors leaked: {fds_before} -> {fds_after}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The soft limit on open files of this process (inherited by `tether serve`).
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}
