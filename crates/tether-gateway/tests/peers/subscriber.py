#!/usr/bin/env python3
"""Subscribe to a topic through the gateway with Python's `websockets`, as an independent peer.

    subscriber.py ws://127.0.0.1:PORT/ws TOPIC

Prints `subprotocol: ...` and `extensions: ...` (the response's Sec-WebSocket-Extensions),
`ready` once the subscribe is acknowledged, then `message: {...}` for the first message of
TOPIC, and exits 0. Exits 1 on an error reply, a close, or after 20 s.
"""

import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def main(url: str, topic: str) -> int:
    async with connect(url, subprotocols=["tether.pubsub.v1"], open_timeout=10) as ws:
        print("subprotocol:", ws.subprotocol, flush=True)
        print("extensions:", ws.response.headers.get("Sec-WebSocket-Extensions", ""), flush=True)
        await ws.send(json.dumps({"type": "subscribe", "id": 1, "topic": topic}))
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "ack" and msg.get("id") == 1:
                print("ready", flush=True)
            elif msg["type"] == "message" and msg["topic"] == topic:
                print("message:", json.dumps(msg), flush=True)
                return 0
            elif msg["type"] == "error":
                print("error:", json.dumps(msg), flush=True)
                return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 20)))
