//! Helpers of the client command tests: `tether serve` and peers as child processes (killed
//! by PID when dropped), and running a `tether` client command to its end.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod redis;

/// How long anything may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The `tether` binary under test.
pub fn tether() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    for var in ["TETHER_CONFIG", "TETHER_LISTEN", "TETHER_TOKEN"] {
        command.env_remove(var);
    }
    command.env("TETHER_LOG", "warn");
    command
}

/// A file in this test binary's scratch directory.
pub fn scratch_file(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A child process whose stdout and stderr lines are collected by threads; killed on drop.
pub struct Process {
    pub child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    pub seen_stdout: Vec<String>,
    pub seen_stderr: Vec<String>,
}

fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Process {
    /// Spawns `command` with piped stdout and stderr (and stdin as the command set it).
    pub fn spawn(mut command: Command) -> Process {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("cannot spawn");
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        Process {
            child,
            stdout,
            stderr,
            seen_stdout: Vec::new(),
            seen_stderr: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle`.
    pub fn stderr_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.seen_stderr.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no stderr line with {needle:?}; stderr so far:\n{}",
            self.seen_stderr.join("\n")
        );
    }

    /// The next stdout line, or `None` when stdout ended or stayed silent for `PATIENCE`.
    pub fn next_stdout_line(&mut self) -> Option<String> {
        self.stdout_line_within(PATIENCE)
    }

    /// The next stdout line if one comes within `wait`.
    pub fn stdout_line_within(&mut self, wait: Duration) -> Option<String> {
        let line = self.stdout.recv_timeout(wait).ok()?;
        self.seen_stdout.push(line.clone());
        Some(line)
    }

    /// The next stdout line.
    pub fn stdout_line(&mut self) -> String {
        match self.stdout.recv_timeout(PATIENCE) {
            Ok(line) => {
                self.seen_stdout.push(line.clone());
                line
            }
            Err(_) => {
                let stderr: Vec<String> = self.stderr.try_iter().collect();
                panic!(
                    "no stdout line in time; stdout so far:\n{}\nstderr:\n{}",
                    self.seen_stdout.join("\n"),
                    stderr.join("\n")
                )
            }
        }
    }

    /// Waits for the process to exit on its own; returns its status and all its output.
    pub fn wait(mut self) -> Output {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit in time"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reader threads end at the end of the streams.
        self.seen_stdout.extend(self.stdout.iter());
        self.seen_stderr.extend(self.stderr.iter());
        Output {
            status,
            stdout: self.seen_stdout.join("\n"),
            stderr: self.seen_stderr.join("\n"),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a finished command left.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The exit code (panics if a signal ended the process).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }
}

/// Runs `tether ARGS` with `input` on stdin (then EOF) to its end.
pub fn run(args: &[&str], input: &[u8]) -> Output {
    let mut command = tether();
    command.args(args).stdin(Stdio::piped());
    let mut process = Process::spawn(command);
    let mut stdin = process.child.stdin.take().unwrap();
    let input = input.to_vec();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
        // stdin drops here: EOF.
    });
    process.wait()
}

/// `tether serve` on a free port with the demo off, and optionally a config file.
pub struct Serve {
    pub addr: SocketAddr,
    pub process: Process,
}

impl Serve {
    pub fn start(config: Option<&str>) -> Serve {
        Serve::start_with(config, &[]).0
    }

    /// On `listen` (to restart a gateway where it was).
    pub fn start_at(listen: &str) -> Serve {
        Serve::start_on(listen, None, &[]).0
    }

    /// With more `serve` arguments; also returns the TLS address when `--tls-listen` is set.
    pub fn start_with(config: Option<&str>, args: &[&str]) -> (Serve, Option<SocketAddr>) {
        Serve::start_on("127.0.0.1:0", config, args)
    }

    fn start_on(listen: &str, config: Option<&str>, args: &[&str]) -> (Serve, Option<SocketAddr>) {
        let mut command = tether();
        command
            .args(["serve", "--listen", listen, "--no-demo"])
            .args(args)
            .stdin(Stdio::null());
        if let Some(text) = config {
            static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            command
                .arg("--config")
                .arg(scratch_file(&format!("serve-{n}.toml"), text));
        }
        let mut process = Process::spawn(command);
        let line = process.stderr_line("listening on http://");
        let addr = line
            .split("http://")
            .nth(1)
            .unwrap()
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let tls = args.contains(&"--tls-listen").then(|| {
            let line = process.stderr_line("listening on https://");
            line.split("https://")
                .nth(1)
                .unwrap()
                .trim_end_matches('/')
                .parse()
                .unwrap()
        });
        (Serve { addr, process }, tls)
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Stops it with SIGTERM (graceful: clients get close 1001) and waits for the exit.
    pub fn stop(self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.process.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = self.process.wait();
        assert_eq!(out.code(), 0, "{out:?}");
    }
}

/// A port nothing listens on: bound, then released.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Python of `.venv-conformance`, which has `websockets` (made by
/// `scripts/setup-conformance.sh`, which `scripts/test.sh` and `.ci/run` run).
pub fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-conformance/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run `bash scripts/setup-conformance.sh`",
        venv.display()
    );
    venv
}

/// A program the test needs; `None` (after saying so) when it is missing outside CI. In CI
/// (`CI` set) a missing one fails the test: `.ci/run` installs it.
pub fn required_program(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is missing in CI: .ci/run must install the Debian package {package}"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {name} is not installed (apt-get install {package}); CI installs it"
        );
    }
    found
}
