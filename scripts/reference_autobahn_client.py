#!/usr/bin/env python3
"""Reference Autobahn client testee built on Python's `websockets` library.

Follows the Autobahn fuzzingserver protocol: reads /getCaseCount, runs every case
with /runCase?case=N&agent=NAME echoing each message back until the server
closes, then calls /updateReports?agent=NAME. permessage-deflate is offered as
`permessage-deflate; client_no_context_takeover; client_max_window_bits`: kosoku's
fuzzingserver answers the 13.2/13.5/13.6 cases only to an offer with
client_no_context_takeover and 13.3-13.6 only to one with client_max_window_bits
(otherwise those cases come out UNIMPLEMENTED).

    python3 scripts/reference_autobahn_client.py ws://127.0.0.1:9001 [--agent NAME]

Needs `websockets` (installed into .venv-conformance by scripts/setup-conformance.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

# websockets >= 14 fails a message of more than 4096 frames ("too many fragments");
# the 9.3.x/9.4.x cases send up to 65536. Read at import, so set it first.
os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 20))

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

MAX_SIZE = 64 * 1024 * 1024


def options(deflate: bool) -> dict:
    return {
        "compression": None,
        "extensions": [
            ClientPerMessageDeflateFactory(
                client_no_context_takeover=True, client_max_window_bits=True
            )
        ]
        if deflate
        else None,
        "max_size": MAX_SIZE,
        "max_queue": None,
        "ping_interval": None,
        "close_timeout": 5,
    }


async def run_case(base: str, case: int, agent: str, deflate: bool) -> None:
    try:
        async with connect(f"{base}/runCase?case={case}&agent={agent}", **options(deflate)) as ws:
            async for message in ws:
                await ws.send(message)
    except (ConnectionClosed, InvalidHandshake, OSError, asyncio.TimeoutError):
        pass  # the case's verdict is kosoku's to give


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL of the fuzzingserver, e.g. ws://127.0.0.1:9001")
    parser.add_argument("--agent", default="websockets")
    parser.add_argument("--no-deflate", action="store_true")
    args = parser.parse_args()
    base = args.url.rstrip("/")

    async with connect(f"{base}/getCaseCount") as ws:
        count = int(json.loads(await ws.recv()))
    print(f"reference_autobahn_client: {count} cases", file=sys.stderr, flush=True)
    for case in range(1, count + 1):
        await run_case(base, case, args.agent, not args.no_deflate)
    async with connect(f"{base}/updateReports?agent={args.agent}") as ws:
        try:
            await ws.recv()
        except ConnectionClosed:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
