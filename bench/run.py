#!/usr/bin/env python3
"""Measure Tether beside the Rust peers in bench/peers and write docs/PERFORMANCE.md.

    bench/run.sh [--quick] [--rounds N] [--only WORKLOAD ...] [--out docs/PERFORMANCE.md]

Builds Tether's echo server, the `tether` binary (its `tether bench` load tool and
`tether serve`) and the peers in release, then runs every workload against every server:
the server pinned to CPU 0 (`taskset -c 0`), the load tool to CPU 1 (`taskset -c 1`),
the servers interleaved A B C A B C for each round, the median of the rounds reported.
Every run is bounded (the load tool's --duration plus a timeout); traffic stays on
127.0.0.0/8. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO / "bench" / "peers"
TETHER = REPO / "target" / "release" / "tether"
ECHO = REPO / "target" / "release" / "examples" / "echo_server"
PEER_BIN = PEERS / "target" / "release"
NOFILE = 20000  # the hard limit on open files here

# Server name -> (command with {addr}, crate whose version is quoted).
SERVERS = {
    "tether": ([str(ECHO), "{addr}"], None),
    "tokio-tungstenite": ([str(PEER_BIN / "echo_tungstenite"), "{addr}"], "tokio-tungstenite"),
    "fastwebsockets": ([str(PEER_BIN / "echo_fastwebsockets"), "{addr}"], "fastwebsockets"),
    "tokio-websockets": ([str(PEER_BIN / "echo_tokio_websockets"), "{addr}"], "tokio-websockets"),
    "yawc": ([str(PEER_BIN / "echo_yawc"), "{addr}"], "yawc"),
}
ALL = list(SERVERS)
# The load tool's own ceiling: `tether bench null-echo` does the least an echo server can,
# so the tool is the bottleneck against it (not a peer, not in ALL).
NULL_ECHO = "null-echo (load tool ceiling)"
SERVERS[NULL_ECHO] = ([str(TETHER), "bench", "null-echo", "--listen", "{addr}"], None)
ECHO_SERVERS = [*ALL, NULL_ECHO]
DEFLATE = ["tether", "yawc"]

FANOUT_CONFIG = """listen = "{addr}"
[[routes]]
path = "/ws"
kind = "pubsub"
[limits]
max_connections = 20000
max_connections_per_ip = 20000
idle_timeout = "0s"
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> str:
    log("$ " + shlex.join(cmd))
    return subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE, **kw).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server not listening on {port} after {timeout} s")


def pinned(cpu: int, cmd: list[str]) -> list[str]:
    """`cmd` on one CPU with the open-files limit raised (exec keeps the PID)."""
    script = f"ulimit -n {NOFILE} 2>/dev/null || ulimit -n $(ulimit -Hn); exec \"$@\""
    return ["bash", "-c", script, "pinned", "taskset", "-c", str(cpu), *cmd]


class Server:
    """A server under test on a free port, pinned to CPU 0; stopped on exit."""

    def __init__(self, name: str, workdir: Path):
        self.name = name
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        if name == "tether-serve":
            config = workdir / "fanout.toml"
            config.write_text(FANOUT_CONFIG.format(addr=self.addr))
            cmd = [str(TETHER), "serve", "--config", str(config), "--no-demo", "--log", "warn"]
        else:
            cmd = [part.format(addr=self.addr) for part in SERVERS[name][0]]
        self.cmd = cmd
        self.log = open(workdir / f"{name}.log", "ab")

    def __enter__(self) -> "Server":
        self.proc = subprocess.Popen(pinned(0, self.cmd), stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        wait_listening(self.port, self.proc)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def load(args: list[str], budget: float) -> dict:
    """Runs `tether bench ARGS --json` on CPU 1 and returns its JSON."""
    cmd = pinned(1, [str(TETHER), "bench", *args, "--json"])
    log("$ " + shlex.join(cmd[5:]))
    out = subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE,
                         timeout=budget).stdout
    return json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------- workloads


def workloads(quick: bool) -> dict:
    d = "3s" if quick else "10s"
    secs = 3 if quick else 10
    n_idle = 2000 if quick else 10000
    return {
        "pipelined": {
            "title": "Pipelined echo: 64 connections x 16 B, 16 in flight each",
            "servers": ECHO_SERVERS, "metric": "messages_per_s", "unit": "msg/s",
            "args": lambda url, pid: ["echo", "--url", url, "-c", "64", "--size", "16",
                                      "--in-flight", "16", "--duration", d, "--warmup", "1s",
                                      "--server-pid", str(pid)],
            "budget": secs + 30,
        },
        "large": {
            "title": "Echo: 16 connections x 64 KiB, 1 in flight each",
            "servers": ECHO_SERVERS, "metric": "mb_per_s", "unit": "MB/s",
            "args": lambda url, pid: ["echo", "--url", url, "-c", "16", "--size", "65536",
                                      "--in-flight", "1", "--duration", d, "--warmup", "1s",
                                      "--server-pid", str(pid)],
            "budget": secs + 30,
        },
        "deflate": {
            "title": "permessage-deflate echo: 16 connections x 4 KiB, 4 in flight each",
            "servers": DEFLATE, "metric": "messages_per_s", "unit": "msg/s",
            "args": lambda url, pid: ["echo", "--url", url, "-c", "16", "--size", "4096",
                                      "--in-flight", "4", "--duration", d, "--warmup", "1s",
                                      "--deflate", "--server-pid", str(pid)],
            "budget": secs + 30,
        },
        "connect": {
            "title": "Connect rate: 16 concurrent clients, handshake then close",
            "servers": ALL, "metric": "messages_per_s", "unit": "handshakes/s",
            "args": lambda url, _pid: ["connect", "--url", url, "-c", "16", "--duration", d],
            "budget": secs + 30,
        },
        "idle": {
            "title": f"Memory per idle connection: {n_idle} connections (server RSS delta)",
            "servers": ALL, "metric": "bytes_per_connection", "unit": "bytes/conn",
            "lower_is_better": True,
            "args": lambda url, pid: ["idle", "--url", url, "-n", str(n_idle),
                                      "--sources", "127.0.0.1-127.0.0.16", "--hold", "5s",
                                      "--server-pid", str(pid)],
            "budget": 120,
        },
        # The target is about one publish: at one a second, each publish's fan-out is done
        # before the next, so p99 is the last subscribers' wait for that one record.
        "fanout": {
            "title": f"Fan-out latency on `tether serve`: {n_idle} subscribers, one publish a "
                     "second",
            "servers": ["tether-serve"], "metric": "deliveries_per_s", "unit": "deliveries/s",
            "path": "/ws",
            "args": lambda url, pid: ["fanout", "--url", url, "-n", str(n_idle),
                                      "--topic", "bench", "--rate", "1", "--duration", d,
                                      "--server-pid", str(pid)],
            "budget": secs + 120,
        },
        # Sustained: 1,000,000 deliveries/s offered, whatever the subscriber count.
        "fanout_sustained": {
            "title": f"Fan-out throughput on `tether serve`: {n_idle} subscribers, "
                     f"{1_000_000 // n_idle} publishes/s (1,000,000 deliveries/s offered)",
            "servers": ["tether-serve"], "metric": "deliveries_per_s", "unit": "deliveries/s",
            "path": "/ws",
            "args": lambda url, pid: ["fanout", "--url", url, "-n", str(n_idle),
                                      "--topic", "bench", "--rate", str(1_000_000 // n_idle),
                                      "--duration", d, "--server-pid", str(pid)],
            "budget": secs + 120,
        },
    }


def measure(name: str, spec: dict, rounds: int, workdir: Path) -> dict:
    """Rounds x servers, interleaved; every result kept."""
    results: dict[str, list[dict]] = {s: [] for s in spec["servers"]}
    for r in range(rounds):
        for server in spec["servers"]:
            log(f"== {name} round {r + 1}/{rounds}: {server}")
            try:
                with Server(server, workdir) as srv:
                    url = f"ws://{srv.addr}{spec.get('path', '/')}"
                    results[server].append(load(spec["args"](url, srv.proc.pid), spec["budget"]))
            except (subprocess.SubprocessError, RuntimeError, ValueError) as e:
                log(f"   failed: {e}")
                results[server].append({"failed": str(e)})
    return results


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if key in r and r[key] is not None]
    return statistics.median(values) if values else None


def median_latency(runs: list[dict], q: str) -> float | None:
    values = [r["latency_us"][q] for r in runs if "latency_us" in r]
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------- autobahn


def autobahn_compression(servers: list[str], workdir: Path) -> dict:
    """Seconds for the Autobahn compression cases (12.*, 13.*) and their tally, per server.

    Always the whole set, also with --quick: the target is about all of them."""
    out = {}
    for server in servers:
        cmd_line = " ".join(SERVERS[server][0]).replace("{addr}", "127.0.0.1:{port}")
        report = workdir / f"autobahn-{server}"
        cmd = [sys.executable, str(REPO / "scripts" / "autobahn.py"), "server",
               "--cmd", cmd_line, "--out", str(report), "-p", "2",
               "--expected", str(REPO / "conformance" / "expected-server.json"),
               "--timeout", "600", "-i", "12.*", "-i", "13.*"]
        log("$ " + shlex.join(cmd))
        start = time.monotonic()
        proc = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=900)
        seconds = time.monotonic() - start
        tail = [line for line in proc.stdout.splitlines() if "passed" in line]
        cpu = re.search(r"CPU seconds: kosoku ([\d.]+), server under test ([\d.]+|unknown)",
                        proc.stdout)
        out[server] = {"seconds": seconds, "ok": proc.returncode == 0,
                       "summary": tail[-1] if tail else proc.stdout.strip()[-200:],
                       "cases": " ".join(cmd[-4:]),
                       "kosoku_cpu_s": float(cpu[1]) if cpu else None,
                       "server_cpu_s": float(cpu[2]) if cpu and cpu[2] != "unknown" else None}
    return out


# --------------------------------------------------------------------------- report


def machine() -> list[str]:
    lscpu = subprocess.run(["lscpu"], text=True, stdout=subprocess.PIPE).stdout
    fields = dict(re.findall(r"^([^:]+):\s+(.*)$", lscpu, re.M))
    rustc = subprocess.run(["rustc", "--version"], text=True, stdout=subprocess.PIPE).stdout
    return [
        f"- CPU: {fields.get('Model name', '?')}, {fields.get('CPU(s)', '?')} CPUs "
        f"({fields.get('Thread(s) per core', '?')} thread(s) per core)",
        f"- Kernel: {platform.system()} {platform.release()}",
        f"- {rustc.strip()}",
        f"- Load average when the run started: {os.getloadavg()[0]:.2f} "
        "(above ~0.2 other work shared the machine: figures are noisy, ratios fairer)",
    ]


def lock_versions() -> dict[str, str]:
    text = (PEERS / "Cargo.lock").read_text()
    return dict(re.findall(r'name = "([^"]+)"\nversion = "([^"]+)"', text))


def fmt(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "failed"
    return f"{v:,.{digits}f}"


def fmt_measured(v: float | None, digits: int = 0) -> str:
    """A figure only some workloads measure (the server's CPU: echo, not connect)."""
    return "-" if v is None else fmt(v, digits)


def ratio_line(what: str, ours: float | None, best: float | None, target: float,
               lower_is_better: bool = False) -> str:
    if ours is None or best is None or best == 0:
        return f"- {what}: **not measured** (a run failed; see the log)"
    r = (best / ours) if lower_is_better else (ours / best)
    met = r >= target
    return f"- {what}: {r:.2f}x (target >= {target}x): **{'met' if met else 'missed'}**"


def report(args, specs: dict, results: dict, autobahn: dict | None, started: str) -> str:
    versions = lock_versions()
    lines = ["# Performance", "",
             "Generated by `bench/run.sh" + (" --quick" if args.quick else "") + "` on "
             f"{started}; rerun it to regenerate this file. Each server ran pinned to CPU 0 "
             "(`taskset -c 0`), the load tool (`tether bench`) to CPU 1; the servers were "
             f"interleaved A B C A B C over {args.rounds} rounds and each figure is the median "
             "of the rounds. Ratios are to the fastest Rust peer of the same run.", "",
             "## Machine", "", *machine(), "",
             "## Servers", "",
             "- tether: `crates/tether/examples/echo_server.rs` (one thread); fan-out on "
             "`tether serve`. Both run on jemalloc, as the `tether` binary ships (tether-cli's "
             "`jemalloc` feature, options in `.cargo/config.toml`); the peers on glibc's malloc, "
             "their default",
             f"- {NULL_ECHO}: `tether bench null-echo` (crates/tether-cli/src/bench/"
             "null_echo.rs), frames sent back unmasked with no other work: the load tool is "
             "the bottleneck against it, so its row is the most the tool measures here; a "
             "server well below it is the limit of its own run"]
    for name, (cmd, crate) in SERVERS.items():
        if crate:
            lines.append(f"- {name} {versions.get(crate, '?')}: `bench/peers/src/bin/"
                         f"{Path(cmd[0]).name}.rs`")
    lines += ["", "All on tokio " + versions.get("tokio", "?") + " (current-thread runtime); "
              "size limits raised to 64 MiB; yawc with permessage-deflate.", ""]
    summary: dict[str, dict] = {}
    for name, spec in specs.items():
        if name not in results:
            continue
        res = results[name]
        key = spec["metric"]
        low = spec.get("lower_is_better", False)
        meds = {s: median(runs, key) for s, runs in res.items()}
        peers = {s: v for s, v in meds.items()
                 if s not in ("tether", "tether-serve", NULL_ECHO) and v}
        best_peer = (min if low else max)(peers, key=peers.get) if peers else None
        summary[name] = {"meds": meds, "best": best_peer,
                         "best_value": peers.get(best_peer) if best_peer else None}
        lines += [f"## {spec['title']}", "",
                  "`tether bench " + shlex.join(spec["args"]("ws://127.0.0.1:PORT"
                                                              + spec.get("path", "/"), "PID"))
                  + "`", ""]
        if name == "idle":
            lines += ["| server | bytes/conn | RSS before (KiB) | RSS after (KiB) | errors | "
                      "ratio to best peer |", "|---|---:|---:|---:|---:|---:|"]
        elif name.startswith("fanout"):
            lines += ["| server | deliveries/s | published | deliveries | p50 us | p99 us | "
                      "p99.9 us | max us | drops | duplicates | errors | server CPU us per "
                      "delivery |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        else:
            first = "msg/s" if key == "mb_per_s" else spec["unit"]
            lines += [f"| server | {first} | MB/s | p50 us | p99 us | p99.9 us | "
                      "errors | load CPU % | load-bound | server CPU % | server CPU us per "
                      "message | ratio to best peer |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for server, runs in res.items():
            v = meds[server]
            best = summary[name]["best_value"]
            ratio = ("-" if not v or not best else
                     f"{(best / v if low else v / best):.2f}x")
            if name == "idle":
                lines.append(f"| {server} | {fmt(v)} | {fmt(median(runs, 'server_rss_before_kib'))}"
                             f" | {fmt(median(runs, 'server_rss_after_kib'))} | "
                             f"{fmt(median(runs, 'errors'))} | {ratio} |")
            elif name.startswith("fanout"):
                lines.append(
                    f"| {server} | {fmt(v)} | {fmt(median(runs, 'published'))} | "
                    f"{fmt(median(runs, 'deliveries'))} | {fmt(median_latency(runs, 'p50'))} | "
                    f"{fmt(median_latency(runs, 'p99'))} | {fmt(median_latency(runs, 'p999'))} | "
                    f"{fmt(median_latency(runs, 'max'))} | {fmt(median(runs, 'drops'))} | "
                    f"{fmt(median(runs, 'duplicates'))} | {fmt(median(runs, 'errors'))} | "
                    f"{fmt(median(runs, 'server_cpu_us_per_delivery'), 1)} |")
            else:
                bound = [r.get("load_bound") for r in runs if "load_bound" in r]
                lines.append(
                    f"| {server} | {fmt(median(runs, 'messages_per_s'))} | "
                    f"{fmt(median(runs, 'mb_per_s'), 1)} | "
                    f"{fmt(median_latency(runs, 'p50'))} | {fmt(median_latency(runs, 'p99'))} | "
                    f"{fmt(median_latency(runs, 'p999'))} | {fmt(median(runs, 'errors'))} | "
                    f"{fmt(median(runs, 'load_cpu_percent'))} | "
                    f"{'yes' if any(bound) else 'no'} | "
                    f"{fmt_measured(median(runs, 'server_cpu_percent'))} | "
                    f"{fmt_measured(median(runs, 'server_cpu_us_per_message'), 2)} | "
                    f"{ratio} |")
        failed = [f"{s}: {r['failed']}" for s, runs in res.items() for r in runs if "failed" in r]
        lines += [""] + [f"- failed run: {f}" for f in failed] + ([""] if failed else [])
    if autobahn:
        lines += ["## Autobahn compression cases", "",
                  "`python3 scripts/autobahn.py server --cmd CMD -p 2 "
                  "--expected conformance/expected-server.json CASES`", "",
                  "| server | cases | seconds | kosoku CPU s | server CPU s | result |",
                  "|---|---|---:|---:|---:|---|"]
        for server, a in autobahn.items():
            result = a["summary"] if a.get("ok") else f"failed: {a['summary']}"
            lines.append(f"| {server} | `{a['cases']}` | {a['seconds']:.1f} | "
                         f"{fmt_measured(a.get('kosoku_cpu_s'), 1)} | "
                         f"{fmt_measured(a.get('server_cpu_s'), 1)} | {result} |")
        lines.append("")
    lines += ["## Targets (issue #7)", ""]
    s = summary
    if "pipelined" in s:
        lines.append(ratio_line("Pipelined echo, tether / fastest Rust peer "
                                f"({s['pipelined']['best']})", s["pipelined"]["meds"].get("tether"),
                                s["pipelined"]["best_value"], 10))
    if "large" in s:
        lines.append(ratio_line(f"64 KiB echo, tether / fastest Rust peer ({s['large']['best']})",
                                s["large"]["meds"].get("tether"), s["large"]["best_value"], 1.2))
    for name in ("pipelined", "large"):
        # The server's side of the same runs: CPU per echoed message (lower is better),
        # which still compares servers when the load tool bounds the throughput.
        if name not in results:
            continue
        cost = {srv: median(runs, "server_cpu_us_per_message")
                for srv, runs in results[name].items()}
        ours = cost.get("tether")
        peer_cost = {srv: v for srv, v in cost.items() if srv not in ("tether", NULL_ECHO) and v}
        if ours and peer_cost:
            cheapest = min(peer_cost, key=peer_cost.get)
            lines.append(f"- {specs[name]['title']}, server CPU per message: tether "
                         f"{ours:.2f} us, the cheapest Rust peer ({cheapest}) "
                         f"{peer_cost[cheapest]:.2f} us: tether uses "
                         f"{ours / peer_cost[cheapest]:.2f}x its CPU per message (not a "
                         "target: the server's side of the throughput ratio, whatever bounds "
                         "the run)")
    for name in ("pipelined", "large"):
        ceiling = s.get(name, {}).get("meds", {}).get(NULL_ECHO)
        ours = s.get(name, {}).get("meds", {}).get("tether")
        if ceiling and ours:
            runs = results[name][NULL_ECHO]
            cpu = median(runs, "load_cpu_percent")
            if any(r.get("load_bound") for r in runs):
                lines.append(f"- {specs[name]['title']}: tether at {ours / ceiling:.2f} of the "
                             f"load tool's ceiling ({ours:,.0f} / {ceiling:,.0f} "
                             f"{specs[name]['unit']} against the null echo server)")
            else:
                lines.append(f"- {specs[name]['title']}: no ceiling measured, the load tool was "
                             f"not the bottleneck against the null echo server either (CPU "
                             f"{fmt(cpu)}%: the machine was shared); tether / null echo = "
                             f"{ours / ceiling:.2f}")
    if "idle" in s:
        v = s["idle"]["meds"].get("tether")
        lines.append(f"- Memory per idle connection: {fmt(v)} bytes (target <= 1024): "
                     f"**{'met' if v is not None and v <= 1024 else 'missed'}**")
    if "deflate" in s:
        lines.append(ratio_line("Deflate echo, tether / yawc", s["deflate"]["meds"].get("tether"),
                                s["deflate"]["meds"].get("yawc"), 2))
    if autobahn and "tether" in autobahn:
        a = autobahn["tether"]
        if not a.get("ok"):
            lines.append("- Autobahn compression cases: **not measured** (the run failed; see "
                         "the table)")
        else:
            t = a["seconds"]
            lines.append(f"- Autobahn compression cases (12.*, 13.*) in {t:.1f} s for tether "
                         f"(target < 30 s for the whole suite with compression): "
                         f"**{'met' if t < 30 else 'missed'}**")
            tool, testee = a.get("kosoku_cpu_s"), a.get("server_cpu_s")
            if tool is not None and testee is not None:
                bound = (" (kosoku's own CPU time alone is above 30 s: the run is the test "
                         "tool's, whatever the server)" if tool >= 30 else "")
                lines.append(f"- Autobahn compression cases, CPU: kosoku {tool:.1f} s, tether "
                             f"{testee:.1f} s{bound}")
    if "fanout" in s:
        runs = results["fanout"]["tether-serve"]
        p99 = median_latency(runs, "p99")
        lines.append(f"- Fan-out p99 publish-to-receive latency, one publish to "
                     f"{specs['fanout']['args']('', 0)[4]} subscribers: {fmt(p99)} us (target "
                     f"< 20 ms at 10,000): **{'met' if p99 is not None and p99 < 20000 else 'missed'}**"
                     f"; the server spent {fmt(median(runs, 'server_cpu_us_per_delivery'), 1)} us of CPU "
                     "per delivery from the first publish on")
    if "fanout_sustained" in s:
        d = s["fanout_sustained"]["meds"].get("tether-serve")
        e = s.get("pipelined", {}).get("meds", {}).get("tether")
        if d and e:
            lines.append(f"- Fan-out deliveries/s (1,000,000 offered) against tether's pipelined "
                         f"echo rate: {d:,.0f} / {e:,.0f} = {d / e:.2f}")
    lines += ["", "## What was tried (see git log and docs/perf/)", "", *TRIED]
    lines += ["", "## Raw results", "", "Every run's JSON is in `target/bench/results.json`.", ""]
    return "\n".join(lines)


# Kept by hand: the optimizations made so far and what the profile says is left.
TRIED = [
    "- Fan-out: each record is framed once and shared by every subscriber's queue; queued "
    "records leave in one write (1.0 us of server CPU per delivery at 100 publishes/s to "
    "10,000). One lone publish costs ~8 us of server CPU per subscriber (2026-12-04), 73% of "
    "it the kernel's, inside the one `writev` per delivery: on loopback the sender also runs "
    "the receiver's TCP input and wakes it (`docs/perf/fanout-10k.md`): ~60 ms of kernel "
    "work for 10,000 subscribers on one vCPU, so the < 20 ms target is out of reach with "
    "this setup. Until 2026-12-04 two faults of the load tool made a run's last publish "
    "~210 ms instead of ~80, and that publish was the p99 of the runs before (82-256 ms, "
    "\"bimodal\"): its subscribers hung up as soon as they had the last record, so the "
    "server tore connections down while it still delivered it (12 against 7.5-8.5 us of "
    "server CPU per delivery), and all 10,000 were told the last offset while its record was "
    "still on its way, so the tool was busy with them instead of reading. Now a run's "
    "publishes are counted up front, the last is marked in its data, and subscribers hang "
    "up once every delivery is in (tests in `crates/tether-cli/tests/bench.rs`).",
    "- Replies to one read leave in one vectored write (the driver writes only when it next "
    "waits for input; the echo server `feed`s): already so before issue #7's work.",
    "- Masking 16 bytes per step, a 4 KiB first outbound buffer (no reallocation per reply): "
    "callgrind ~1,054 -> ~898 instructions per echoed 16 B message (docs/perf/).",
    "- Idle memory: the deflate state and the echo server's handshake future boxed: "
    "2,445 -> 1,422 bytes per connection over 10,000 (bench/pyload.py --idle). Then the "
    "engine's `Config` shared by `Arc` (`Connection::server`/`client` and `accept_with` take "
    "`impl Into<Arc<Config>>`), its partial-frame and partial-message state boxed, the "
    "driver's pending error and a non-default `Negotiated` boxed: `Connection` 344 -> 184 "
    "bytes, `WebSocket<TcpStream>` 552 -> 256; the echo task waits for send room before it "
    "reads (so no message is held across a wait) and gets its handshake boxed from outside: "
    "its future is 280 bytes and tokio's task cell (128-byte aligned) 384. `tether bench idle` "
    "A/B against the previous build: 1,495 -> 1,077 bytes per connection over 2,000 and "
    "1,430 -> 1,036 over 10,000 (0.72x; docs/perf/idle-and-64k.md). What is left is "
    "tokio's: the task cell and the socket's `Arc<ScheduledIo>` (256 bytes, 128-aligned), "
    "with glibc's slack for aligned allocations; the next cell size down (256) needs a task "
    "future under ~160 bytes. heaptrack of 5,000 idle connections finds exactly those two "
    "allocations (384 + 256 bytes) and nothing of Tether's; the heap's pages come to ~1,037 "
    "bytes per connection, with mimalloc too (docs/perf/idle-and-64k.md): the figure sits on "
    "the 1 KiB line, 1,018-1,054 across runs.",
    "- 64 KiB echo: `strace -c` showed 3 `brk` calls and 2 page faults per message (glibc "
    "trimming and regrowing the heap as the read buffer, a doubled 128 KiB message `Vec` and "
    "the reply came and went). The engine now sizes a fresh read buffer for the frame that "
    "starts in it (at most twice what arrived), lets a single-frame binary message wait whole "
    "in the read buffer and leave without a copy, and grows a split frame's message buffer "
    "towards the frame's end instead of doubling: page faults 2.04 -> 0.02 per message, "
    "server CPU per message about halved, 64 KiB echo ~1.5-2x (A/B against the previous "
    "build with CI running beside it, so noisy).",
    "- 64 KiB echo, measured again on a loaded machine (docs/perf/idle-and-64k.md): "
    "`strace -c -f` shows the same system calls per message for Tether and tokio-websockets "
    "on both sides (server: 1 `writev` with the header and the uncopied payload, 2 `recvfrom`; "
    "load tool: 1 `sendto`, 1 `recvfrom` that gets the whole reply, 1 EAGAIN), and server "
    "CPU per message is the same within noise (~25 us each, task-clock); perf puts the "
    "kernel's copies at ~31% of the server, `apply_mask` ~10%, the copy from the shared read "
    "buffer ~5%. The 0.55x of an earlier quick run did not reproduce: the quick run on a "
    "quiet machine on 2026-12-02 gave 1.12x tokio-websockets, with the load tool at 95% of "
    "its core (load-bound, so a lower bound). The shared read buffer is now 128 KiB, so a "
    "64 KiB message arrives in one `recvfrom` instead of two. The server CPU column "
    "(`--server-pid`, added 2026-12-03) puts every server at ~20-25 us per 64 KiB message, "
    "the null echo server (no unmasking, no framing) among them, so the kernel's loopback "
    "copies are most of the cost; in the run of 2026-12-03 Tether spent ~1.2x the CPU of "
    "tokio-websockets per message (1.06x in a quick run the same day); the copy from the "
    "shared read buffer below, which tokio-websockets does not make, is ~5% of that by the "
    "perf profile above, and the rest of the gap is not yet explained. 1.2x the fastest "
    "peer would need Tether under ~16 us, below the null echo server.",
    "- The load tool itself (`tether bench echo`): sequence-numbered messages checked by "
    "header (`--verify full` checks every byte), one read and one write per batch in a "
    "polled loop: user instructions per message 576 -> 296, system calls per message halved. "
    "With it the pipelined ratio went from 7.75x (tool-bound) to ~10x; `tether bench "
    "null-echo` measures the tool's own ceiling (a row of the pipelined table).",
    "- 64 KiB echo, 2026-12-03 (a quieter machine, load average under 0.3 before the runs): "
    "three changes, each A/B'd against the build before it (`tether bench echo` 16 x 64 KiB, "
    "3 rounds interleaved, medians of server CPU per message). (1) Large frames are read "
    "straight into the engine's buffer (`Connection::direct_read_len`/`receive_into`: while "
    "a data frame of 32 KiB or more arrives, or after one), not copied out of the shared "
    "read buffer: 14.69 -> 14.03 us; 256 KiB messages 78.3 -> 75.0 us; pipelined unchanged. "
    "(2) The load tool spent a copy on every echoed byte it did not check, and was the "
    "bottleneck (97-99% of its core): with `--verify sequence` it now reads an echo of 4 KiB "
    "or more up to its sequence number and has the kernel discard the rest "
    "(`recv(MSG_TRUNC)`), 65,905 -> 80,837 msg/s against tokio-websockets, the tool at "
    "84-89%, so the servers decide the run. That showed tokio-websockets ahead (12.3 against "
    "13.2 us), and perf showed why: `apply_mask` was 15% of Tether's samples, "
    "tokio-websockets' AVX-512 masking 6%. (3) Masking in fixed 16-byte byte loops (SSE2 "
    "vectors; the `u128` words compiled to scalar pairs) from a 64-byte boundary (a payload "
    "behind a 14-byte header straddled cache lines): criterion 1.57 -> 0.96 us at 64 KiB, "
    "1.83 -> 0.97 us behind a header; in the server 13.0 -> 11.9 us per message, "
    "tokio-websockets 12.5. AVX2 and AVX-512 versions measured no faster, so no unsafe. "
    "`strace -c` of Tether's server: 1 `writev` and 1 `recvfrom` per message, 0.07 "
    "`epoll_wait`; perf: ~87% of its CPU is the kernel's. 1.2x would need Tether under "
    "~10 us per message, where the kernel's copies alone are ~10.",
    "- Idle memory, 2026-12-03: (1) above first added 8 bytes to `Connection` (184 -> 192), "
    "which took the echo task's cell from 384 to 512 bytes: 1,112-1,124 bytes per idle "
    "connection against 1,029-1,042; the size is now kept in one byte and a test holds "
    "`Connection` to 184. jemalloc as the echo server's global allocator (a scratch build, "
    "not committed) packs tokio's two 128-aligned allocations without glibc's slack: "
    "669-671 bytes per connection against 1,030-1,032 with glibc (interleaved), but the "
    "64 KiB echo 8% slower (13.0 against 12.1 us per message), pipelined 3% faster: not "
    "adopted then.",
    "- jemalloc adopted, 2026-12-03 (third session): the 64 KiB echo's loss came from its "
    "read buffer (64 KiB + 4 KiB of slack), above jemalloc's 32 KiB thread-cache limit, so "
    "every message took a block from the arena and gave it back. With the thread cache "
    "raised to 128 KiB and 4 blocks per large size class (`tcache_max:131072,"
    "tcache_nslots_large:4`, compiled in through `.cargo/config.toml`), A/B against glibc, "
    "3 rounds interleaved, 16 x 64 KiB: 60,330 against 61,568 msg/s (jemalloc's defaults "
    "54,117 against 57,626 in the round before); pipelined 2,985,636 against 3,003,902; "
    "idle 692 against 1,043 bytes per connection. The `tether` binary and the echo server "
    "now run on it (tether-cli's default `jemalloc` feature; `--no-default-features` builds "
    "on the system allocator). The idle figure of this file is jemalloc's; with glibc it "
    "is ~1,030-1,045 (the A/Bs above). The peers stay on glibc, their default. Freed pages "
    "go back after 1 s (`dirty_decay_ms:1000`; jemalloc's default 10 s), at no cost measured "
    "here. The cost: the hostile matrix's 3,000 half-open handshakes at once take 25-28 KiB "
    "per connection on jemalloc against 17-18 on glibc (SECURITY.md). The fan-out p99 of this "
    "run (~200 ms, against ~82 ms on the last machine) is not the allocator's: A/B on this "
    "machine, 3 rounds each, jemalloc 200, 199, 101 ms, glibc 222, 86, 204 ms (one publish a "
    "second to 10,000 subscribers; bimodal on both: the load tool's doing, see the "
    "fan-out entry).",
    "- Autobahn compression cases, 2026-12-04: `scripts/autobahn.py` now reports the CPU "
    "seconds of kosoku and of the server under test (the table above). kosoku alone used "
    "129.5 s of CPU in this run; it works as about one core whatever `-p` (12.1.* alone: "
    "9.1 s at -p 1, 5.65 s at -p 4 and at -p 8, ~6.8 s of its CPU each time), so the < 30 "
    "s target is out of reach with this tool on this machine. The echo server used 58.2 s "
    "as well, on its one thread, 79% of it in zlib-rs (perf of 12.2.10-12.2.18, 128 KiB "
    "BMP messages: level-1 `deflate_quick` 59%, inflate 20%): with a free test tool it "
    "would still need compression about twice as fast, or a second core. Where kosoku's "
    "CPU goes (perf of kosoku on 12.2.*, 11,396 samples): 62% is zlib-rs compressing what it "
    "sends (`deflate_medium` 36.5%, `longest_match` 12.8%, `flush_block_only` 8.6%, "
    "`pqdownheap` 3.3%), 11% inflating the echoes (`inflate_fast`); its own work, whatever "
    "the server does. On 2 cores kosoku's 129.5 s alone take at least 65 s of wall time.",
    "- Pipelined echo, 2026-12-04: messages lent to a handler (`WebSocket::for_each_ref`, the "
    "engine's `Connection::for_each_ref`). The echo server's handler gets each message of one "
    "frame straight from the parser as a `&[u8]` or `&str` view of the read buffer and "
    "copies the reply into the outbound buffer through a `Sender` borrowed beside it: no "
    "`Bytes` per message (its split, freeze and drop were ~6% of the server's CPU) and no "
    "return to the task between messages. Interleaved A/B, 3 rounds of 6 s, 64 x 16 B x 16 "
    "in flight: 281-285 ns of server CPU per message before, 252-267 after; a throwaway "
    "echo inside the parser (the floor for any receive API) measured 241-251. Criterion "
    "(`cargo bench -p tether-proto --bench frame -- echo`, 1000 x 16 B text): 46.7 us with "
    "`poll_event` + `send`, 33.2 us with `for_each_ref` + `send_ref` (1.41x). The 64 KiB and "
    "deflate echoes are unchanged: a message of 2 KiB or more is taken (`take_lent`) and "
    "queued by reference as before.",
    "- 64 KiB echo, 2026-12-04, perf of the server (the lending build, 4 s, 16 x 64 KiB): "
    "88.8% kernel (`_copy_to_iter` 29.3% and `_copy_from_iter` 12.3%: the loopback copies "
    "every server makes), unmasking (RFC 6455 §5.3) 7.3%, the rest of Tether 3.6%. At zero "
    "user-space cost Tether would still spend ~11.5 us of the 12.9 us per message, above "
    "the 10.6 us that 1.2x the fastest peer (12.67 us) allows: the target cannot be met on "
    "loopback on this machine.",
    "- Not yet tried: pipelined echo: 76-81% of the server's CPU is now the kernel's (one "
    "`recvfrom` and one `writev` per 16 messages; the wake-up of the load tool inside our "
    "`writev` alone is ~8%), and the load tool runs at 92-95% of its core, so little is left "
    "to win on the server. "
    "Deflate: a load tool that sends precompressed frames (a stored block for the sequence "
    "number before the compressed pattern) would lift the tool's ceiling.",
]


def build(skip: bool) -> None:
    if skip:
        return
    run(["cargo", "build", "--release", "-p", "tether", "--example", "echo_server"], cwd=REPO)
    run(["cargo", "build", "--release", "-p", "tether-cli"], cwd=REPO)
    run(["cargo", "build", "--release", "--locked"], cwd=PEERS)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 s runs, 2,000 idle connections, "
                   "a subset of the Autobahn compression cases")
    p.add_argument("--rounds", type=int, default=None, help="rounds per server (default 3, "
                   "2 with --quick)")
    p.add_argument("--only", nargs="*", default=None,
                   help="workloads: pipelined large deflate connect idle fanout fanout_sustained "
                   "autobahn")
    p.add_argument("--skip-build", action="store_true")
    p.add_argument("--out", default=str(REPO / "docs" / "PERFORMANCE.md"))
    args = p.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 3)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    build(args.skip_build)
    workdir = REPO / "target" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    specs = workloads(args.quick)
    wanted = args.only or [*specs, "autobahn"]
    results = {}
    for name, spec in specs.items():
        if name in wanted:
            results[name] = measure(name, spec, args.rounds, workdir)
            (workdir / "results.json").write_text(json.dumps(results, indent=1))
    autobahn = autobahn_compression(DEFLATE, workdir) if "autobahn" in wanted else None
    (workdir / "results.json").write_text(json.dumps({"runs": results, "autobahn": autobahn},
                                                     indent=1))
    text = report(args, specs, results, autobahn, started)
    Path(args.out).write_text(text)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
