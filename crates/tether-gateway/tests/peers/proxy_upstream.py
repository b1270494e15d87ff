#!/usr/bin/env python3
"""A WebSocket upstream for the gateway's proxy tests, with Python's `websockets`.

    proxy_upstream.py

Listens on 127.0.0.1 (a free port) with subprotocols `chat.v2`, `chat.v1` and
permessage-deflate, and prints `listening PORT`. For each connection:

- sends one text message first: JSON with what the handshake showed this side (`path`,
  `subprotocol`, `extensions` it answered, the `offered_extensions`, `x_forwarded_for`,
  `x_forwarded_proto`, `forwarded`, `authorization`, and `hop_by_hop`: hop-by-hop fields that reached it);
- echoes every text and binary message, except the text `close-me`, which it answers by
  closing with 4001 "server bye";
- when the connection ends, prints `closed CODE REASON` (the client's close code and reason
  as received here).

Runs until killed.
"""

import asyncio
import json

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

HOP_BY_HOP = ["Keep-Alive", "TE", "Proxy-Connection", "X-Hop"]


async def handler(ws):
    headers = ws.request.headers
    await ws.send(
        json.dumps(
            {
                "path": ws.request.path,
                "subprotocol": ws.subprotocol,
                "extensions": ws.response.headers.get("Sec-WebSocket-Extensions"),
                "offered_extensions": headers.get("Sec-WebSocket-Extensions"),
                "x_forwarded_for": headers.get("X-Forwarded-For"),
                "x_forwarded_proto": headers.get("X-Forwarded-Proto"),
                "forwarded": headers.get("Forwarded"),
                "end_to_end": headers.get("X-End-To-End"),
                "authorization": headers.get("Authorization"),
                "hop_by_hop": [h for h in HOP_BY_HOP if h in headers],
            }
        )
    )
    try:
        async for message in ws:
            if message == "close-me":
                await ws.close(4001, "server bye")
                break
            await ws.send(message)
    except ConnectionClosed:
        pass  # codes other than 1000 and 1001 end the iteration with this
    await ws.wait_closed()
    code = ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else None
    reason = ws.protocol.close_rcvd.reason if ws.protocol.close_rcvd else ""
    print("closed", code, reason, flush=True)


async def main():
    async with serve(
        handler,
        "127.0.0.1",
        0,
        subprotocols=["chat.v2", "chat.v1"],
        compression="deflate",
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print("listening", port, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
