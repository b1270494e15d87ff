//! A `redis-server` of the test's own, on a free port with persistence off, stopped by PID
//! when dropped. The Debian package `redis-server` comes from `.ci/run`.

use std::process::{Command, Stdio};

use super::{Process, free_port, required_program};

/// A running redis-server.
pub struct Redis {
    pub process: Process,
    pub port: u16,
}

impl Redis {
    /// Starts one; `None` (after saying so) when redis-server is missing outside CI.
    pub fn start() -> Option<Redis> {
        let program = required_program("redis-server", "redis-server")?;
        // A port can be taken between `free_port` and the bind: try another.
        for _ in 0..5 {
            let port = free_port();
            if let Some(process) = spawn_on(&program, port) {
                return Some(Redis { process, port });
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
        self.process = spawn_on(&program, self.port).expect("redis-server did not start again");
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

/// A redis-server on `port`, once it is ready; `None` if it did not get there.
fn spawn_on(program: &std::path::Path, port: u16) -> Option<Process> {
    let mut command = Command::new(program);
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdin(Stdio::null());
    let mut process = Process::spawn(command);
    while let Some(line) = process.next_stdout_line() {
        if line.contains("Ready to accept connections") {
            return Some(process);
        }
    }
    None
}
