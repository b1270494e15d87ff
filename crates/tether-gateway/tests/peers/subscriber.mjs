// Subscribe to a topic through the gateway with Node's `ws`, as an independent peer.
//
//     node subscriber.mjs ws://127.0.0.1:PORT/ws TOPIC
//
// Prints `subprotocol: ...` and `extensions: ...` (the response's Sec-WebSocket-Extensions),
// `ready` once the subscribe is acknowledged, then `message: {...}` for the first message of
// TOPIC, and exits 0. Exits 1 on an error reply, a close, or after 20 s.

import WebSocket from "ws";

const [url, topic] = process.argv.slice(2);
const timer = setTimeout(() => {
  console.log("timeout");
  process.exit(1);
}, 20000);

const ws = new WebSocket(url, "tether.pubsub.v1", { perMessageDeflate: true });
ws.on("upgrade", (response) => {
  console.log("extensions:", response.headers["sec-websocket-extensions"] ?? "");
});
ws.on("open", () => {
  console.log("subprotocol:", ws.protocol);
  ws.send(JSON.stringify({ type: "subscribe", id: 1, topic }));
});
ws.on("message", (data) => {
  const msg = JSON.parse(data.toString());
  if (msg.type === "ack" && msg.id === 1) {
    console.log("ready");
  } else if (msg.type === "message" && msg.topic === topic) {
    console.log("message:", JSON.stringify(msg));
    clearTimeout(timer);
    ws.close(1000);
  } else if (msg.type === "error") {
    console.log("error:", JSON.stringify(msg));
    process.exit(1);
  }
});
ws.on("close", (code) => {
  process.exitCode = code === 1000 ? 0 : 1;
});
ws.on("error", (error) => {
  console.log("error:", error.message);
  process.exit(1);
});
