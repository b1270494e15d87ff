#!/usr/bin/env python3
"""A simple pipelined echo load for profiling when `tether bench` is not at hand.

    pyload.py HOST:PORT [--conns 64] [--size 16] [--in-flight 16] [--seconds 10]
    pyload.py HOST:PORT --idle N --server-pid PID


Opens the connections, then keeps `--in-flight` masked binary frames of `--size` bytes
outstanding on each: when a whole batch of replies is back (counted by bytes, the reply
frame being unmasked), the next batch goes out in one send. Prints messages/s. Not a
measuring tool (Python is slower than the servers): it only puts the server's hot path
under load for a profiler. Standard library only; 127.0.0.1 only.
"""

import argparse
import base64
import os
import re
import selectors
import socket
import time


def handshake(addr, source="127.0.0.1"):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), source_address=(source, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("closed during handshake")
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    assert head.endswith(b"\r\n\r\n"), "bytes after the handshake"
    s.setblocking(False)
    return s


def frame(size):
    mask = b"\x01\x02\x03\x04"
    payload = bytes(i % 251 for i in range(size))
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if size < 126:
        head = bytes([0x82, 0x80 | size])
    elif size < 65536:
        head = bytes([0x82, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x82, 0x80 | 127]) + size.to_bytes(8, "big")
    reply = (2 if size < 126 else 4 if size < 65536 else 10) + size
    return head + mask + masked, reply


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def idle(a):
    """Opens N connections from 127.0.0.1-16 and prints the server's RSS delta per one."""
    before = rss_kib(a.server_pid)
    conns = [handshake(a.addr, f"127.0.0.{1 + i % 16}") for i in range(a.idle)]
    time.sleep(1)  # let the server finish its bookkeeping of the last handshakes
    after = rss_kib(a.server_pid)
    per = (after - before) * 1024 / len(conns)
    print(f"{len(conns)} idle connections: RSS {before} -> {after} KiB, {per:,.0f} bytes each")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--in-flight", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--idle", type=int, default=0)
    p.add_argument("--server-pid", type=int, default=0)
    a = p.parse_args()
    if a.idle:
        return idle(a)
    one, reply = frame(a.size)
    batch = one * a.in_flight
    want = reply * a.in_flight
    sel = selectors.DefaultSelector()
    owed = {}
    for _ in range(a.conns):
        s = handshake(a.addr)
        sel.register(s, selectors.EVENT_READ)
        s.sendall(batch)
        owed[s] = want
    done = 0
    start = time.monotonic()
    end = start + a.seconds
    while time.monotonic() < end:
        for key, _ in sel.select(1.0):
            s = key.fileobj
            data = s.recv(1 << 20)
            if not data:
                raise SystemExit("server closed a connection")
            owed[s] -= len(data)
            while owed[s] <= 0:
                done += a.in_flight
                owed[s] += want
                s.sendall(batch)
    elapsed = time.monotonic() - start
    print(f"{done / elapsed:,.0f} messages/s over {a.conns} connections")


if __name__ == "__main__":
    main()
