"""A Python `websockets` server for tether-cli's tests: records what each client sent.

Prints `PORT <n>` once listening on 127.0.0.1 (port 0: a free one), then one JSON line per
event on stdout:
  {"event": "request", "path": ..., "headers": [[name, value], ...]}  every handshake request
  {"event": "open", "path": ..., "subprotocol": ...}                    every accepted connection
  {"event": "closed", "path": ..., "code": ..., "reason": ...}          when one ends
Paths:
  /refuse     answers 403 with a body, no upgrade
  /close4000  closes at once with 4000 "custom goodbye"
  anything    echoes every message (text as text, binary as binary)
Subprotocols offered: chat.v1 is accepted when the client offers it.
"""

import asyncio
import json
from http import HTTPStatus

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


def record(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def process_request(connection, request):
    record("request", path=request.path, headers=[[k, v] for k, v in request.headers.raw_items()])
    if request.path == "/refuse":
        return connection.respond(HTTPStatus.FORBIDDEN, "origin not allowed here\n")
    return None


def select_subprotocol(connection, offered):
    return "chat.v1" if "chat.v1" in offered else None


async def handler(ws):
    path = ws.request.path
    record("open", path=path, subprotocol=ws.subprotocol)
    if path == "/close4000":
        await ws.close(4000, "custom goodbye")
    else:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass  # closes other than 1000 and 1001 end the loop with this
    await ws.wait_closed()
    code = ws.close_code
    record("closed", path=path, code=code, reason=ws.close_reason)


async def main():
    async with serve(
        handler,
        "127.0.0.1",
        0,
        select_subprotocol=select_subprotocol,
        process_request=process_request,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
