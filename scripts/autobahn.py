#!/usr/bin/env python3
"""Run the Autobahn TestSuite (through `kosoku`) against Tether and check the results.

    autobahn.py server --cmd "CMD with {port}" --expected conformance/expected-server.json --out OUT
    autobahn.py client --cmd "CMD with {url}"  --expected conformance/expected-client.json --out OUT
    autobahn.py expected --from OUT/index.json [--agent NAME] [--promote-to-ok] > FILE

`server`: starts the server under test on a free 127.0.0.1 port (its own process
group), waits until it accepts TCP connections, runs `kosoku` against it, stops it
(SIGTERM, then SIGKILL after a grace period), and compares OUT/index.json with the
expected file.

`server --upstream-cmd "CMD with {upstream_port}"`: first starts that process (the upstream
of a proxy under test) on its own free port and waits until it listens; `{upstream_port}`
may appear in --cmd too, and in the file given with --config-template, which is written to
OUT/ with the port filled in (`{config}` in --cmd is its path). The upstream is stopped
after the server under test.

`client`: starts `kosoku -m fuzzingserver` on a free port, runs the client testee
(`{url}` = ws://127.0.0.1:PORT) to completion, waits for kosoku to write its
reports and exit, and compares.

A case passes when its `behavior` and `behaviorClose` both equal the expected
file's. The last line printed is `autobahn-server: N passed, N failed` (or
`autobahn-client: ...`); the exit status is 0 only if nothing failed.

kosoku is looked up in .venv-conformance/bin (made by scripts/setup-conformance.sh),
then on PATH; $KOSOKU overrides both. The --cmd string is split like a shell
command line (shlex) and run without a shell, in the repository root; use
`sh -c '...'` if you need a shell. Its output goes to OUT/testee.log (-v echoes it).
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_KOSOKU = REPO / ".venv-conformance" / "bin" / "kosoku"
OUT_MARKER = ".autobahn-out"  # lets a later run clear an output directory this script made
GRACE_SECONDS = 5.0
HOST = "127.0.0.1"


class Failure(Exception):
    """A problem that ends the run (not a failed case): printed, exit status 2."""


class Terminated(BaseException):
    """SIGTERM/SIGHUP received: unwinds like Ctrl-C so every child gets stopped."""


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- case ids


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in case_id.split("."))


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """Mirror kosoku 0.1.0's selection: an id without `*` matches exactly; with `*`,
    `*` matches anything (dots too) and the match is anchored at the start only
    (kosoku's `13.*.1` selects 13.1.1 and 13.1.10-13.1.18)."""
    if "*" not in pattern:
        return re.compile(re.escape(pattern) + r"\Z")
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def select(ids: list[str], include: list[str] | None, exclude: list[str] | None) -> list[str]:
    inc = [pattern_regex(p) for p in include or []]
    exc = [pattern_regex(p) for p in exclude or []]
    chosen = [i for i in ids if not inc or any(r.match(i) for r in inc)]
    return [i for i in chosen if not any(r.match(i) for r in exc)]


# --------------------------------------------------------------------------- processes


def find_kosoku() -> str:
    env = os.environ.get("KOSOKU")
    if env:
        return env
    if VENV_KOSOKU.exists():
        return str(VENV_KOSOKU)
    found = shutil.which("kosoku")
    if found:
        return found
    raise Failure(
        f"kosoku not found (looked for $KOSOKU, {VENV_KOSOKU}, PATH): "
        "run `bash scripts/setup-conformance.sh` first"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Child:
    """A subprocess in its own process group, output teed to a log file."""

    def __init__(self, name: str, argv: list[str], logfile: Path, echo: bool = False):
        self.name = name
        self.argv = argv
        self.logfile = logfile
        self.lines: list[str] = []
        self._line_event = threading.Condition()
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C in a terminal doesn't reach it
            )
        except OSError as e:
            raise Failure(f"{name}: cannot start {shlex.join(argv)}: {e}") from e
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._pump, args=(echo,), daemon=True)
        self._reader.start()

    def _pump(self, echo: bool) -> None:
        assert self.proc.stdout is not None
        with open(self.logfile, "a", encoding="utf-8", errors="replace") as f:
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace")
                f.write(line)
                f.flush()
                if echo:
                    sys.stdout.write(f"  [{self.name}] {line}")
                    sys.stdout.flush()
                with self._line_event:
                    self.lines.append(line)
                    self._line_event.notify_all()
        with self._line_event:
            self._line_event.notify_all()

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for_line(self, regex: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._line_event:
            while True:
                for line in self.lines[seen:]:
                    m = regex.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (not self.running() and not self._reader.is_alive()):
                    return None
                self._line_event.wait(min(remaining, 0.2))

    def wait(self, timeout: float | None) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM to the child's process group (whose id is the child's PID), then
        SIGKILL after a grace period. Safe to call twice."""
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.pid}) ignored SIGTERM for {GRACE_SECONDS:.0f} s: SIGKILL")
                self._signal(signal.SIGKILL)
                self.proc.wait()
        else:
            # the leader is gone; make sure nothing it started lingers in its group
            self._signal(signal.SIGKILL)
        self._reader.join(2)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def tail(self, n: int = 25) -> str:
        return "".join(self.lines[-n:]).rstrip("\n") or "(no output)"


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process so far (Linux's /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # utime and stime are fields 14 and 15 of proc(5), 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_listening(child: Child, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = child.proc.poll()
        if code is not None:
            raise Failure(
                f"{child.name} exited with status {code} before listening on {HOST}:{port}\n"
                f"--- last output ({child.logfile}):\n{child.tail()}"
            )
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise Failure(
                f"{child.name} did not accept TCP connections on {HOST}:{port} within {timeout:.0f} s\n"
                f"--- last output ({child.logfile}):\n{child.tail()}"
            )
        time.sleep(0.1)


def prepare_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise Failure(f"--out {out} exists and is not a directory")
        if any(out.iterdir()):
            if not (out / OUT_MARKER).exists():
                raise Failure(
                    f"--out {out} is not empty and was not made by this script; "
                    "remove it or choose another directory"
                )
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / OUT_MARKER).write_text("made by scripts/autobahn.py; cleared on the next run\n")


def selection_args(include: list[str] | None, exclude: list[str] | None) -> list[str]:
    args: list[str] = []
    for p in include or []:
        args += ["-i", p]
    for p in exclude or []:
        args += ["-x", p]
    return args


# --------------------------------------------------------------------------- comparison


def load_expected(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise Failure(f"cannot read expected file {path}: {e}") from e
    if not isinstance(data, dict) or not data:
        raise Failure(f"{path}: expected a JSON object of case id -> {{behavior, behaviorClose}}")
    for case_id, v in data.items():
        if not re.fullmatch(r"\d+(\.\d+)+", case_id) or not isinstance(v, dict) or {
            "behavior",
            "behaviorClose",
        } - v.keys():
            raise Failure(f"{path}: bad entry {case_id!r}: {v!r}")
    return data


def load_results(index: Path, agent: str | None) -> tuple[str, dict[str, dict[str, Any]]]:
    try:
        data = json.loads(index.read_text())
    except (OSError, ValueError) as e:
        raise Failure(f"no usable report {index}: {e}") from e
    if not data:
        raise Failure(f"{index} holds no agent")
    if agent is not None:
        if agent not in data:
            raise Failure(f"{index}: no agent {agent!r} (agents: {', '.join(data)})")
        return agent, data[agent]
    if len(data) == 1:
        name = next(iter(data))
        return name, data[name]
    # kosoku names the agent after the server's `Server` header, or after the address
    # for cases whose handshake failed (e.g. the server died): merge them all
    merged: dict[str, dict[str, Any]] = {}
    for cases in data.values():
        merged.update(cases)
    return " + ".join(data), merged


def case_report(out: Path, entry: dict[str, Any]) -> dict[str, Any]:
    name = entry.get("reportfile")
    if not name:
        return {}
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return {}


def one_line(text: Any, limit: int = 300) -> str:
    s = re.sub(r"<br\s*/?>", " ", str(text))
    s = re.sub(r"\s+", " ", s).strip()
    return s if len(s) <= limit else s[: limit - 3] + "..."


def compare(
    label: str,
    out: Path,
    expected_path: Path,
    include: list[str] | None,
    exclude: list[str] | None,
    agent: str | None,
    started: float,
    extra_failures: list[str],
) -> int:
    expected_all = load_expected(expected_path)
    expected_ids = select(sorted(expected_all, key=case_key), include, exclude)
    agent_name, results = load_results(out / "index.json", agent)

    failures: list[str] = []
    passed = 0
    for case_id in sorted(set(expected_ids) | set(results), key=case_key):
        want = expected_all.get(case_id) if case_id in expected_ids else None
        got = results.get(case_id)
        if want is not None and got is not None:
            if (got.get("behavior"), got.get("behaviorClose")) == (
                want["behavior"],
                want["behaviorClose"],
            ):
                passed += 1
                continue
            rep = case_report(out, got)
            lines = [
                f"FAIL {case_id}: got behavior={got.get('behavior')} behaviorClose={got.get('behaviorClose')}, "
                f"expected behavior={want['behavior']} behaviorClose={want['behaviorClose']}"
            ]
            if rep:
                lines.append(f"    case:   {one_line(rep.get('description', ''))}")
                lines.append(f"    expect: {one_line(rep.get('expectation', ''))}")
                lines.append(f"    result: {one_line(rep.get('result', ''))}")
                close = one_line(rep.get("resultClose", ""))
                codes = f"remoteCloseCode={rep.get('remoteCloseCode')} localCloseCode={rep.get('localCloseCode')}"
                if rep.get("wasNotCleanReason"):
                    codes += f" notClean={one_line(rep['wasNotCleanReason'], 120)}"
                lines.append(f"    close:  {close} ({codes})")
                lines.append(f"    report: {out / got['reportfile']}")
            failures.append("\n".join(lines))
        elif want is not None:
            failures.append(
                f"FAIL {case_id}: missing from the results, "
                f"expected behavior={want['behavior']} behaviorClose={want['behaviorClose']}"
            )
        else:
            assert got is not None
            failures.append(
                f"FAIL {case_id}: not in {expected_path} but ran: "
                f"behavior={got.get('behavior')} behaviorClose={got.get('behaviorClose')}"
            )

    for f in failures:
        log(f)
    for f in extra_failures:
        log(f"FAIL {f}")

    timed = sorted(
        ((int(v.get("duration") or 0), cid) for cid, v in results.items()), reverse=True
    )[:5]
    log(f"{label}: agent {agent_name!r}, {len(results)} cases reported, reports in {out}/")
    if timed:
        log(
            f"{label}: slowest cases: "
            + ", ".join(f"{cid} {ms / 1000:.1f} s" if ms >= 1000 else f"{cid} {ms} ms" for ms, cid in timed)
        )
    log(f"{label}: total duration {time.monotonic() - started:.1f} s")
    failed = len(failures) + len(extra_failures)
    log(f"{label}: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


# --------------------------------------------------------------------------- commands


def fmt_cmd(template: str, **values: str) -> list[str]:
    try:
        argv = [part.format(**values) for part in shlex.split(template)]
    except (KeyError, IndexError, ValueError) as e:
        raise Failure(f"bad --cmd {template!r}: {e}") from e
    if not argv:
        raise Failure("empty --cmd")
    return argv


def run_server(args: argparse.Namespace) -> int:
    label = args.label or "autobahn-server"
    started = time.monotonic()
    out = Path(args.out).resolve()  # the children run in the repo root
    prepare_out(out)
    kosoku = find_kosoku()
    expected_path = Path(args.expected)
    if not select(sorted(load_expected(expected_path), key=case_key), args.include, args.exclude):
        raise Failure("--include/--exclude select no case of the expected file")

    port = free_port()
    children: list[Child] = []
    extra: list[str] = []
    values = {"port": str(port)}
    upstream: Child | None = None
    try:
        if args.upstream_cmd:
            upstream_port = free_port()
            while upstream_port == port:
                upstream_port = free_port()
            values["upstream_port"] = str(upstream_port)
            uargv = fmt_cmd(args.upstream_cmd, upstream_port=str(upstream_port))
            log(f"{label}: starting upstream: {shlex.join(uargv)} (log: {out / 'upstream.log'})")
            upstream = Child("upstream", uargv, out / "upstream.log", echo=args.verbose)
            children.append(upstream)
            wait_listening(upstream, upstream_port, args.startup_timeout)
            log(f"{label}: upstream pid {upstream.pid} listening on {HOST}:{upstream_port}")
        if args.config_template:
            template = Path(args.config_template)
            try:
                text = template.read_text()
            except OSError as e:
                raise Failure(f"cannot read --config-template {template}: {e}") from e
            rendered = out / template.name
            rendered.write_text(text.replace("{upstream_port}", values.get("upstream_port", "")))
            values["config"] = str(rendered)
        argv = fmt_cmd(args.cmd, **values)
        log(f"{label}: starting server under test: {shlex.join(argv)} (log: {out / 'testee.log'})")
        server = Child("server under test", argv, out / "testee.log", echo=args.verbose)
        children.append(server)
        wait_listening(server, port, args.startup_timeout)
        log(f"{label}: server pid {server.pid} listening on {HOST}:{port}")

        kargv = [kosoku, "-p", str(args.parallelism), "-o", str(out)]
        kargv += selection_args(args.include, args.exclude) + [f"{HOST}:{port}"]
        log(f"{label}: running {shlex.join(kargv)} (log: {out / 'kosoku.log'})")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        runner = Child("kosoku", kargv, out / "kosoku.log", echo=args.verbose)
        children.append(runner)
        code = runner.wait(args.timeout)
        if code is not None:
            # What the suite itself costs, beside the server's share: kosoku is the only
            # child reaped since `before`, so the difference is its CPU time alone.
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            tool = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            testee = process_cpu_seconds(server.pid)
            log(f"{label}: CPU seconds: kosoku {tool:.1f}, server under test "
                + ("unknown" if testee is None else f"{testee:.1f}"))
        if code is None:
            runner.stop()
            extra.append(f"kosoku did not finish within {args.timeout:.0f} s (--timeout)")
        elif not (out / "index.json").exists():
            raise Failure(
                f"kosoku exited with status {code} without writing {out / 'index.json'}\n"
                f"--- last output:\n{runner.tail()}"
            )
        if not server.running():
            extra.append(
                f"server under test exited with status {server.proc.returncode} during the run "
                f"(see {out / 'testee.log'})"
            )
        if upstream is not None and not upstream.running():
            extra.append(
                f"upstream exited with status {upstream.proc.returncode} during the run "
                f"(see {out / 'upstream.log'})"
            )
    finally:
        for child in reversed(children):
            child.stop()
    if not (out / "index.json").exists():
        for f in extra:
            log(f"FAIL {f}")
        raise Failure(f"no results in {out / 'index.json'}")
    return compare(label, out, expected_path, args.include, args.exclude, args.agent, started, extra)


LISTENING = re.compile(r"listening on ws://[^\s:]+:(\d+)")


def run_client(args: argparse.Namespace) -> int:
    label = args.label or "autobahn-client"
    started = time.monotonic()
    out = Path(args.out).resolve()  # the children run in the repo root
    prepare_out(out)
    kosoku = find_kosoku()
    expected_path = Path(args.expected)
    if not select(sorted(load_expected(expected_path), key=case_key), args.include, args.exclude):
        raise Failure("--include/--exclude select no case of the expected file")

    children: list[Child] = []
    extra: list[str] = []
    try:
        port = free_port()
        kargv = [kosoku, "-m", "fuzzingserver", "-o", str(out)]
        kargv += selection_args(args.include, args.exclude) + [f"{HOST}:{port}"]
        log(f"{label}: starting {shlex.join(kargv)} (log: {out / 'kosoku.log'})")
        fuzz = Child("kosoku", kargv, out / "kosoku.log", echo=args.verbose)
        children.append(fuzz)
        # kosoku prints "fuzzingserver listening on ws://HOST:PORT" once bound: wait for
        # that line rather than probing the port with connections it would have to serve.
        if fuzz.wait_for_line(LISTENING, args.startup_timeout) is None:
            state = "exited" if not fuzz.running() else "did not report listening"
            raise Failure(
                f"kosoku fuzzingserver {state} within {args.startup_timeout:.0f} s\n"
                f"--- last output:\n{fuzz.tail()}"
            )
        url = f"ws://{HOST}:{port}"
        log(f"{label}: kosoku pid {fuzz.pid} listening on {url}")

        argv = fmt_cmd(args.cmd, url=url, port=str(port))
        log(f"{label}: running client testee: {shlex.join(argv)} (log: {out / 'testee.log'})")
        client = Child("client testee", argv, out / "testee.log", echo=args.verbose)
        children.append(client)
        code = client.wait(args.timeout)
        if code is None:
            client.stop()
            extra.append(f"client testee did not finish within {args.timeout:.0f} s (--timeout)")
        elif code != 0:
            extra.append(
                f"client testee exited with status {code}\n--- last output ({out / 'testee.log'}):\n"
                + client.tail()
            )
        # after /updateReports kosoku writes the reports and exits by itself; a client
        # that failed has probably not called it, so don't wait long for that
        report_wait = args.report_timeout if code == 0 else min(args.report_timeout, 10)
        kcode = fuzz.wait(report_wait)
        if kcode is None:
            extra.append(
                f"kosoku did not write its reports and exit within {report_wait:.0f} s "
                "after the client finished (did the client call /updateReports?)"
            )
    finally:
        for child in reversed(children):
            child.stop()
    if not (out / "index.json").exists():
        for f in extra:
            log(f"FAIL {f}")
        raise Failure(f"no results in {out / 'index.json'}")
    return compare(label, out, expected_path, args.include, args.exclude, args.agent, started, extra)


def write_expected(args: argparse.Namespace) -> int:
    agent, results = load_results(Path(getattr(args, "from")), args.agent)
    lines = []
    for case_id in sorted(results, key=case_key):
        b, bc = results[case_id]["behavior"], results[case_id]["behaviorClose"]
        if not (b in ("OK", "INFORMATIONAL") and bc in ("OK", "INFORMATIONAL")):
            if args.promote_to_ok:
                print(f"note: {case_id} got {b}/{bc}: written as OK/OK", file=sys.stderr)
                b, bc = "OK", "OK"
            else:
                print(f"warning: {case_id} is {b}/{bc}: check before using", file=sys.stderr)
        entry = json.dumps({"behavior": b, "behaviorClose": bc})
        lines.append(f"  {json.dumps(case_id)}: {entry}")
    sys.stdout.write("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"{len(lines)} cases from agent {agent!r}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run the Autobahn TestSuite through kosoku and compare with expected results.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--expected", required=True, help="expected results (JSON: case id -> {behavior, behaviorClose})")
        p.add_argument("--out", required=True, help="report directory (cleared if a previous run of this script made it)")
        p.add_argument("--include", "-i", action="append", metavar="PATTERN", help="case id or `*` glob (repeatable)")
        p.add_argument("--exclude", "-x", action="append", metavar="PATTERN", help="case id or `*` glob (repeatable)")
        p.add_argument("--agent", help="agent in index.json to check (default: all of them, merged)")
        p.add_argument("--label", help="prefix of the summary line (default: autobahn-server / autobahn-client)")
        p.add_argument("--startup-timeout", type=float, default=30, help="seconds to wait for listening (default 30)")
        p.add_argument("--verbose", "-v", action="store_true", help="also echo the children's output")

    s = sub.add_parser("server", help="test a server: --cmd has a {port} placeholder")
    s.add_argument("--cmd", required=True)
    s.add_argument("--upstream-cmd", help="start this first (a proxy's upstream): {upstream_port} placeholder")
    s.add_argument("--config-template", help="file written to OUT/ with {upstream_port} filled in; {config} in --cmd")
    s.add_argument("--parallelism", "-p", type=int, default=2, help="kosoku -p (default 2)")
    s.add_argument("--timeout", type=float, default=1200, help="seconds for the whole kosoku run (default 1200)")
    common(s)

    c = sub.add_parser("client", help="test a client: --cmd has a {url} placeholder (ws://127.0.0.1:PORT)")
    c.add_argument("--cmd", required=True)
    c.add_argument("--timeout", type=float, default=1200, help="seconds for the client testee (default 1200)")
    c.add_argument("--report-timeout", type=float, default=60, help="seconds for kosoku to write reports and exit after the client finished (default 60; 10 if the client failed)")
    common(c)

    e = sub.add_parser("expected", help="print an expected file made from a run's index.json")
    e.add_argument("--from", required=True, metavar="INDEX_JSON")
    e.add_argument("--agent")
    e.add_argument("--promote-to-ok", action="store_true", help="write OK/OK for results that are neither OK nor INFORMATIONAL")
    return parser


def main() -> int:
    args = build_parser().parse_args()

    def on_signal(signum: int, _frame: Any) -> None:
        raise Terminated(signal.Signals(signum).name)

    # explicit, so Ctrl-C works even when started with SIGINT ignored (`cmd &` in a script)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        if args.command == "server":
            return run_server(args)
        if args.command == "client":
            return run_client(args)
        return write_expected(args)
    except Failure as e:
        label = getattr(args, "label", None) or f"autobahn-{args.command}"
        log(f"{label}: ERROR: {e}")
        return 2
    except (KeyboardInterrupt, Terminated) as e:
        log(f"autobahn.py: interrupted ({str(e) or 'SIGINT'}); children stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
