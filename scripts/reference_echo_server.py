#!/usr/bin/env python3
"""Reference WebSocket echo server built on Python's `websockets` library.

An independent peer for Tether: the Autobahn runs use it to calibrate the suite
(which results a correct implementation gets), and tests can use it as a known-good
server. Echoes every text/binary message back unchanged, with permessage-deflate
enabled and a 64 MiB message limit (the 9.x cases send up to 16 MiB).

    python3 scripts/reference_echo_server.py 127.0.0.1:9001 [--deflate rfc|websockets|off]

Needs `websockets` (installed into .venv-conformance by scripts/setup-conformance.sh).
Stops cleanly on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

# websockets >= 14 fails a message of more than 4096 frames with 1009 "too many
# fragments"; the 9.3.x/9.4.x cases send up to 65536 (4 MiB in 64-byte frames).
# Read when websockets is imported, so set it first.
os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 20))

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

MAX_SIZE = 64 * 1024 * 1024


async def echo(ws: ServerConnection) -> None:
    try:
        async for message in ws:
            await ws.send(message)  # str -> text frame, bytes -> binary frame
    except ConnectionClosed:
        pass


def deflate_extensions(mode: str) -> list[ServerPerMessageDeflateFactory] | None:
    if mode == "off":
        return None
    if mode == "websockets":
        # the library's own defaults (what `compression="deflate"` gives)
        return [
            ServerPerMessageDeflateFactory(
                server_max_window_bits=12,
                client_max_window_bits=12,
                compress_settings={"memLevel": 5},
            )
        ]
    # "rfc": accept whatever the client offers, no limits of our own
    return [ServerPerMessageDeflateFactory()]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="HOST:PORT to listen on")
    parser.add_argument("--deflate", choices=["rfc", "websockets", "off"], default="rfc")
    args = parser.parse_args()
    host, _, port = args.address.rpartition(":")
    logging.basicConfig(level=logging.WARNING, format="reference_echo_server: %(message)s")

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)

    async with serve(
        echo,
        host or "127.0.0.1",
        int(port),
        compression=None,
        extensions=deflate_extensions(args.deflate),
        max_size=MAX_SIZE,
        max_queue=None,
        ping_interval=None,  # unsolicited pings would show up in the cases' event logs
        close_timeout=5,
    ):
        print(f"reference_echo_server: listening on {host}:{port}", file=sys.stderr, flush=True)
        try:
            await stop
        except asyncio.CancelledError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
