//! What the load tool asks of the operating system: more open files, its own CPU time, and
//! a server's resident memory.

use std::time::{Duration, Instant};

use rlimit::Resource;

/// File descriptors the tool needs besides its connections (stdio, the runtime's own).
const SPARE_FILES: u64 = 64;

/// Raises the soft limit on open files to the hard limit, and refuses a run whose
/// `connections` cannot fit under it.
pub fn raise_open_files_limit(connections: usize) -> Result<(), String> {
    let needed = connections as u64 + SPARE_FILES;
    let (soft, hard) = Resource::NOFILE
        .get()
        .map_err(|e| format!("cannot read the open files limit: {e}"))?;
    if needed <= soft {
        return Ok(());
    }
    if needed > hard {
        return Err(format!(
            "{connections} connections need {needed} open files, and this process may open \
             at most {hard} (the hard RLIMIT_NOFILE); run several load processes, each with \
             fewer connections"
        ));
    }
    Resource::NOFILE
        .set(hard, hard)
        .map_err(|e| format!("cannot raise the open files limit from {soft} to {hard}: {e}"))
}

/// Clock ticks per second of the times in `/proc/*/stat`: USER_HZ, 100 on every Linux
/// architecture (the kernel scales its internal HZ to it for userspace).
const USER_HZ: f64 = 100.0;

/// CPU time used by this process (user + system, all threads), from `/proc/self/stat`.
pub fn own_cpu_time() -> Option<Duration> {
    stat_cpu_time("/proc/self/stat")
}

/// CPU time used so far by process `pid` (user + system, all threads), from
/// `/proc/PID/stat`: the server's, when the load tool runs beside it.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    stat_cpu_time(&format!("/proc/{pid}/stat"))
}

fn stat_cpu_time(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The second field, the command, is in parentheses and may hold spaces.
    let after_command = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_command.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) of proc(5), counted from the state (field 3) here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / USER_HZ))
}

/// The load tool's own CPU use over a stretch of the run.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    cpu_at_start: Option<Duration>,
    wall_start: Instant,
}

/// Above this share of its threads' time the load tool is taken as the bottleneck.
pub const LOAD_BOUND_PERCENT: f64 = 90.0;

impl CpuMeter {
    /// Starts measuring now.
    pub fn start() -> CpuMeter {
        CpuMeter {
            cpu_at_start: own_cpu_time(),
            wall_start: Instant::now(),
        }
    }

    /// CPU time used since the start, as a percentage of wall time × `threads`; `None`
    /// where `/proc` cannot be read.
    pub fn percent(&self, threads: usize) -> Option<f64> {
        let used = own_cpu_time()?.checked_sub(self.cpu_at_start?)?;
        let wall = self.wall_start.elapsed().as_secs_f64() * threads.max(1) as f64;
        (wall > 0.0).then(|| used.as_secs_f64() / wall * 100.0)
    }
}

/// The CPU time process `pid` uses from `from` to `until` (waits for both; read from
/// `/proc/PID/stat`); `None` where it cannot be read.
pub async fn cpu_time_between(pid: u32, from: Instant, until: Instant) -> Option<Duration> {
    tokio::time::sleep_until(from.into()).await;
    let start = cpu_time(pid)?;
    tokio::time::sleep_until(until.into()).await;
    cpu_time(pid)?.checked_sub(start)
}

/// The resident set size of process `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("{path} has no VmRSS line"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_of_a_pid_reads_the_same_clock() {
        let own = own_cpu_time().expect("/proc/self/stat");
        let by_pid = cpu_time(std::process::id()).expect("/proc/PID/stat");
        assert!(by_pid >= own, "{by_pid:?} read after {own:?}");
        assert_eq!(cpu_time(u32::MAX), None, "no such process");
    }

    #[test]
    fn own_cpu_time_grows_with_work() {
        let before = own_cpu_time().expect("/proc/self/stat");
        // Busy until a tick is counted (at most 10 s of wall time on a loaded machine).
        let start = Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after <= before && start.elapsed() < Duration::from_secs(10) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            after = own_cpu_time().unwrap();
        }
        assert!(after > before, "{before:?} -> {after:?}");
    }

    #[test]
    fn rss_of_this_process_is_read() {
        let kib = rss_kib(std::process::id()).unwrap();
        assert!(kib > 100, "{kib} KiB");
        assert!(rss_kib(u32::MAX).is_err());
    }

    #[test]
    fn the_open_files_limit_refuses_impossible_counts() {
        let (_, hard) = Resource::NOFILE.get().unwrap();
        let err = raise_open_files_limit(hard as usize).unwrap_err();
        assert!(err.contains("hard RLIMIT_NOFILE"), "{err}");
        raise_open_files_limit(10).unwrap();
    }
}
