//! A `redis-server` of the test's own, on a free port with persistence off, stopped by PID
//! when dropped. The Debian package `redis-server` comes from `.ci/run`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Process, free_port, required_program};

/// A running redis-server.
pub struct Redis {
    pub process: Process,
    pub port: u16,
    /// Its working directory (replication writes RDB files there), removed when dropped.
    dir: PathBuf,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh working directory for the redis-server on `port`.
fn scratch_dir(port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tether-redis-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Redis {
    /// Starts one; `None` (after saying so) when redis-server is missing outside CI.
    pub fn start() -> Option<Redis> {
        Redis::start_with(&[], "Ready to accept connections")
    }

    /// A replica of `master` (`--replicaof`), returned once its first sync is done.
    pub fn replica_of(master: &Redis) -> Option<Redis> {
        let port = master.port.to_string();
        Redis::start_with(
            &["--replicaof", "127.0.0.1", &port],
            "MASTER <-> REPLICA sync: Finished with success",
        )
    }

    /// A TLS-only one (`--port 0 --tls-port PORT`) with the certificate and key files
    /// given, clients not asked for certificates.
    pub fn start_tls(cert: &Path, key: &Path) -> Option<Redis> {
        let program = required_program("redis-server", "redis-server")?;
        for _ in 0..5 {
            let port = free_port();
            let dir = scratch_dir(port);
            let mut command = Command::new(&program);
            command
                .arg("--dir")
                .arg(&dir)
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(cert)
                .args(["--tls-auth-clients", "no"])
                .stdin(Stdio::null());
            let mut process = Process::spawn(command);
            while let Some(line) = process.next_stdout_line() {
                if line.contains("Ready to accept connections") {
                    return Some(Redis { process, port, dir });
                }
            }
        }
        panic!("redis-server (TLS) did not start on any of 5 free ports");
    }

    /// A Redis Sentinel (`redis-server CONF --sentinel`) that monitors `master` as `name`
    /// with quorum 1 and short timeouts (down after 300 ms); returned once it has found
    /// `replicas` replicas. Its config file lives in `dir`.
    pub fn sentinel(master: &Redis, name: &str, replicas: usize, dir: &Path) -> Option<Redis> {
        let program = required_program("redis-server", "redis-server")?;
        for attempt in 0..5 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{port}-{attempt}.conf"));
            let work = scratch_dir(port);
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\n\
                     sentinel monitor {name} 127.0.0.1 {} 1\n\
                     sentinel down-after-milliseconds {name} 300\n\
                     sentinel failover-timeout {name} 2000\n",
                    master.port
                ),
            )
            .unwrap();
            let mut command = Command::new(&program);
            command
                .arg(&conf)
                .arg("--sentinel")
                .arg("--dir")
                .arg(&work)
                .stdin(Stdio::null());
            let mut process = Process::spawn(command);
            let mut found = 0;
            while let Some(line) = process.next_stdout_line() {
                if line.contains("+slave ") {
                    found += 1;
                    if found == replicas {
                        return Some(Redis {
                            process,
                            port,
                            dir: work,
                        });
                    }
                }
            }
        }
        panic!("redis sentinel did not start on any of 5 free ports");
    }

    fn start_with(extra: &[&str], ready: &str) -> Option<Redis> {
        let program = required_program("redis-server", "redis-server")?;
        // A port can be taken between `free_port` and the bind: try another.
        for _ in 0..5 {
            let port = free_port();
            let dir = scratch_dir(port);
            if let Some(process) = spawn_on(&program, port, &dir, extra, ready) {
                return Some(Redis { process, port, dir });
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Kills the server (SIGKILL, by PID) and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
    }

    /// Starts a new server on the same port (after [`kill`](Self::kill)): it comes back
    /// empty, as persistence is off.
    pub fn start_again(&mut self) {
        let program = required_program("redis-server", "redis-server").unwrap();
        self.process = spawn_on(
            &program,
            self.port,
            &self.dir,
            &[],
            "Ready to accept connections",
        )
        .expect("redis-server did not start again");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server by PID.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.process.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} redis-server");
    }
}

/// A redis-server on `port` working in `dir`, once it logged `ready`; `None` if it did not
/// get there.
fn spawn_on(program: &Path, port: u16, dir: &Path, extra: &[&str], ready: &str) -> Option<Process> {
    let mut command = Command::new(program);
    command
        .arg("--dir")
        .arg(dir)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        // A replica's first sync starts at once, not after the default 5 s.
        .args(["--repl-diskless-sync-delay", "0"])
        .args(extra)
        .stdin(Stdio::null());
    let mut process = Process::spawn(command);
    while let Some(line) = process.next_stdout_line() {
        if line.contains(ready) {
            return Some(process);
        }
    }
    None
}
