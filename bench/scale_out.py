#!/usr/bin/env python3
"""Cross-node delivery on Redis against single-node delivery, in one run (issue #6).

Starts one redis-server and three `tether serve` nodes with `backplane = "redis"`, and one
node with the in-memory backplane, all on 127.0.0.1. Then, interleaved over --rounds, the same
`tether bench fanout` load (two load processes, each with N/2 subscribers on a topic of its
own and an HTTP publisher at --rate) in three layouts:

  memory      subscribers and publisher on the in-memory node (no Redis at all)
  redis-local subscribers and publisher on node 1 (every record still goes through Redis)
  cross-node  subscribers spread over nodes 1 and 2, the publisher on node 0

and prints a Markdown table of medians with the ratios to `memory` and to `redis-local`.
Every process it starts is stopped by its PID when it ends.

    python3 bench/scale_out.py --tether target/release/tether [--subscribers 1000]
        [--rate 200] [--duration 10s] [--rounds 2]
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, deadline_s=20):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} did not answer 200 in {deadline_s} s")


class Processes:
    """Every child, stopped by PID (SIGTERM, then SIGKILL) on exit."""

    def __init__(self):
        self.children = []

    def start(self, args, **kw):
        child = subprocess.Popen(args, stdin=subprocess.DEVNULL, **kw)
        self.children.append(child)
        return child

    def stop_all(self):
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def node(procs, tether, workdir, name, hub):
    port = free_port()
    config = os.path.join(workdir, f"{name}.toml")
    with open(config, "w") as f:
        f.write(
            f'listen = "127.0.0.1:{port}"\ndemo = false\n\n'
            '[[routes]]\npath = "/ws"\nkind = "pubsub"\n\n'
            "[limits]\nmax_connections = 20000\nmax_connections_per_ip = 20000\n"
            "max_pending_per_ip = 20000\n\n"
            f"[hub]\n{hub}"
        )
    procs.start([tether, "serve", "--config", config], stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(workdir, f"{name}.log"), "w"))
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return port


def run_layout(tether, sub_ports, pub_port, args, topic):
    """Two `tether bench fanout` processes at once, each with N/2 subscribers on its own
    topic and its own HTTP publisher at the full rate; process i subscribes on
    sub_ports[i % len(sub_ports)] and publishes on pub_port. Every layout thus carries the
    same load: 2 x rate publishes/s, rate x N deliveries/s."""
    per_process = args.subscribers // 2
    rate = args.rate
    sub_ports = [sub_ports[i % len(sub_ports)] for i in range(2)]
    runs = []
    for i, port in enumerate(sub_ports):
        cmd = [
            tether, "bench", "fanout",
            "--url", f"ws://127.0.0.1:{port}/ws",
            "--publish-url", f"http://127.0.0.1:{pub_port}/api/publish",
            "-n", str(per_process), "--topic", f"{topic}-{i}",
            "--rate", str(rate), "--duration", args.duration,
            "--sources", f"127.0.0.{10 + 16 * i}-127.0.0.{25 + 16 * i}",
            "--json",
        ]
        runs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
    results = []
    for r in runs:
        out, _ = r.communicate(timeout=600)
        results.append(json.loads(out))
    return {
        "deliveries_per_s": sum(r["deliveries_per_s"] for r in results),
        "p50_us": max(r["latency_us"]["p50"] for r in results),
        "p99_us": max(r["latency_us"]["p99"] for r in results),
        "drops": sum(r["drops"] for r in results),
        "duplicates": sum(r["duplicates"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "published": sum(r["published"] for r in results),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tether", default="target/release/tether")
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    procs = Processes()
    workdir = tempfile.mkdtemp(prefix="tether-scale-out-")
    try:
        redis_port = free_port()
        procs.start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(redis_port), "ping"],
                             capture_output=True).stdout.strip() != b"PONG":
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        hub = f'backplane = "redis"\nredis_url = "redis://127.0.0.1:{redis_port}/"\n'
        nodes = [node(procs, args.tether, workdir, f"node{i}", hub) for i in range(3)]
        memory = node(procs, args.tether, workdir, "memory", 'backplane = "memory"\n')
        layouts = {
            "memory": ([memory], memory),
            "redis-local": ([nodes[1]], nodes[1]),
            "cross-node": ([nodes[1], nodes[2]], nodes[0]),
        }
        figures = {name: [] for name in layouts}
        for rnd in range(args.rounds):
            for name, (subs, pub) in layouts.items():
                result = run_layout(args.tether, subs, pub, args, f"bench-{name}-{rnd}")
                figures[name].append(result)
                print(f"round {rnd + 1} {name}: {json.dumps(result)}", file=sys.stderr)
    finally:
        procs.stop_all()

    med = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for name, runs in figures.items()
    }
    print(f"{args.subscribers} subscribers on 2 topics, {args.rate:g} publishes/s per topic over HTTP, "
          f"{args.duration} per run, median of {args.rounds} interleaved rounds\n")
    print("| layout | deliveries/s | vs memory | vs redis-local | p50 ms | p99 ms "
          "| p99 vs redis-local | drops | duplicates | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, m in med.items():
        print(f"| {name} | {m['deliveries_per_s']:,.0f} "
              f"| {m['deliveries_per_s'] / med['memory']['deliveries_per_s']:.2f}x "
              f"| {m['deliveries_per_s'] / med['redis-local']['deliveries_per_s']:.2f}x "
              f"| {m['p50_us'] / 1e3:.2f} | {m['p99_us'] / 1e3:.2f} "
              f"| {m['p99_us'] / med['redis-local']['p99_us']:.2f}x "
              f"| {m['drops']:g} | {m['duplicates']:g} | {m['errors']:g} |")


if __name__ == "__main__":
    main()
