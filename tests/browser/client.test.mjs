// Unit tests of tether.js (as GET /tether.js serves it) against a real `tether serve`, with
// Node's `ws` as its WebSocket: acks and errors, unsubscribe, resume across a network drop
// without a gap, recovered: false after a restart, state events and the backoff.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Gateway, Proxy, until } from "./lib/gateway.mjs";
import { loadTether, StateLog, WebSocket } from "./lib/client.mjs";

let gateway;
let tether;
const clients = [];

before(async () => {
  gateway = await new Gateway(["--no-demo"]).start();
  tether = await loadTether(gateway.url);
});

after(async () => {
  for (const c of clients) c.close();
  await gateway.stop();
});

/** A client of `base` (ws://...) with fast backoff, closed after the tests. */
function client(base = gateway.url, options = {}) {
  const c = tether.connect(base.replace("http", "ws") + "/ws", {
    WebSocket,
    backoff: { initial: 50, max: 400 },
    ...options,
  });
  clients.push(c);
  return c;
}

test("subscribe, publish and their acks; a publisher subscribed to its topic gets the message", async () => {
  const c = client();
  const got = [];
  const ack = await c.subscribe("unit.basic", (m) => got.push(m));
  assert.equal(ack.type, "ack");
  assert.equal(ack.topics["unit.basic"].offset, 0);
  const published = await c.publish("unit.basic", { n: 1 }, { key: "k" });
  assert.equal(published.topic, "unit.basic");
  assert.equal(published.offset, 1);
  await until(() => got.length === 1, "the message");
  assert.deepEqual(got[0].data, { n: 1 });
  assert.equal(got[0].key, "k");
  assert.equal(got[0].epoch, published.epoch);
  assert.equal(typeof got[0].ts, "number");
  assert.equal(got[0].replayed, false);
});

test("server errors reject the request's promise with the code; the connection goes on", async () => {
  const c = client();
  await assert.rejects(c.publish("bad*topic", 1), (e) => e.code === "invalid_topic");
  await assert.rejects(c.subscribe("a..b", () => {}), (e) => e.code === "invalid_topic");
  await assert.rejects(c.unsubscribe("never.subscribed"), (e) => e.code === "not_subscribed");
  assert.equal((await c.publish("unit.after-errors", null)).offset, 1);
  assert.equal(c.state, "open");
});

test("presence lists the clients subscribed to a presence topic, and refuses other topics", async () => {
  const a = client();
  const b = client();
  const topic = "chat.unit-presence";
  assert.deepEqual(await a.presence(topic), { topic, count: 0, clients: [], truncated: false });
  await a.subscribe(topic, () => {});
  await a.subscribe(topic, () => {});
  await b.subscribe(topic, () => {});
  const seen = await b.presence(topic);
  assert.equal(seen.count, 2);
  assert.equal(seen.truncated, false);
  assert.equal(new Set(seen.clients.map((c) => c.client)).size, 2);
  assert.ok(seen.clients.every((c) => c.user === undefined), "no auth: no user");
  await a.unsubscribe(topic);
  assert.equal((await b.presence(topic)).count, 1);
  await assert.rejects(b.presence("unit.no-presence"), (e) => e.code === "presence_disabled");
  await assert.rejects(b.presence("chat.*"), (e) => e.code === "invalid_topic");
});

test("unsubscribe stops the messages of that topic", async () => {
  const c = client();
  const got = [];
  await c.subscribe("unit.unsub", (m) => got.push(m.offset));
  await c.subscribe("unit.sentinel", (m) => got.push("sentinel"));
  await gateway.publish("unit.unsub", 1);
  await until(() => got.length === 1, "the first message");
  await c.unsubscribe("unit.unsub");
  await gateway.publish("unit.unsub", 2);
  await gateway.publish("unit.sentinel", 3);
  await until(() => got.includes("sentinel"), "the sentinel");
  assert.deepEqual(got, [1, "sentinel"]);
});

test("a pattern with history replays what the gateway retains, marked replayed, then live", async () => {
  await gateway.publish("unit.hist.a", 1);
  await gateway.publish("unit.hist.b", 2);
  const c = client();
  const got = [];
  await c.subscribe("unit.hist.*", (m) => got.push(`${m.topic}:${m.offset}:${m.replayed}`), { history: true });
  await until(() => got.length === 2, "the replay");
  await gateway.publish("unit.hist.a", 3);
  await until(() => got.length === 3, "the live message");
  assert.deepEqual(got.sort(), ["unit.hist.a:1:true", "unit.hist.a:2:false", "unit.hist.b:1:true"]);
});

test("across a network drop the client reconnects and resumes every subscription without a gap", async () => {
  const proxy = await new Proxy(() => gateway.port).start();
  try {
    const c = client(proxy.url);
    const log = new StateLog(c);
    const exact = [];
    const pattern = [];
    await c.subscribe("unit.drop", (m) => exact.push(m.offset));
    await c.subscribe("unit.dropped.*", (m) => pattern.push(`${m.topic}:${m.offset}`));
    for (let i = 0; i < 3; i++) {
      await gateway.publish("unit.drop", i);
      await gateway.publish("unit.dropped.x", i);
    }
    await until(() => exact.length === 3 && pattern.length === 3, "the first messages");
    // The network goes down; messages go on being published meanwhile.
    proxy.blocked = true;
    const reconnecting = log.next((d) => d.state === "reconnecting", "reconnecting");
    assert.ok(proxy.cut() > 0);
    const lost = await reconnecting;
    assert.equal(lost.code, 1006);
    for (let i = 3; i < 8; i++) {
      await gateway.publish("unit.drop", i);
      await gateway.publish("unit.dropped.x", i);
    }
    await gateway.publish("unit.dropped.new", "created while away");
    const resets = [];
    c.addEventListener("reset", (e) => resets.push(e.detail));
    const reopened = log.next((d) => d.state === "open", "open again");
    proxy.blocked = false;
    await reopened;
    await until(() => exact.length === 8 && pattern.length === 9, "the missed messages");
    assert.deepEqual(exact, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(pattern.filter((p) => p.startsWith("unit.dropped.x")),
      [1, 2, 3, 4, 5, 6, 7, 8].map((n) => `unit.dropped.x:${n}`));
    assert.ok(pattern.includes("unit.dropped.new:1"));
    assert.deepEqual(resets, []);
  } finally {
    await proxy.stop();
  }
});

test("state events, the backoff, and recovered: false after a restart of the gateway", async () => {
  const c = client(gateway.url, { backoff: { initial: 40, max: 160, factor: 2, jitter: 0.5 } });
  const log = new StateLog(c);
  const got = [];
  const resets = [];
  await c.subscribe("unit.restart", (m) => got.push([m.epoch, m.offset]), {
    onReset: (topic) => resets.push(topic),
  });
  const first = await gateway.publish("unit.restart", "before");
  await until(() => got.length === 1, "the message before the restart");
  const goingAway = log.next((d) => d.state === "reconnecting", "reconnecting");
  await gateway.stop();
  // The gateway said goodbye with 1001 (graceful shutdown).
  assert.equal((await goingAway).code, 1001);
  // While it is down, attempts fail with growing delays: base 40, 80, 160, 160 ms, less up
  // to half of that as jitter.
  const delays = [];
  while (delays.length < 4) {
    const d = await log.next((e) => e.state === "reconnecting" && e.code === 1006, "a failed attempt");
    delays.push(d.delay);
  }
  const bases = [80, 160, 160, 160];
  delays.forEach((delay, i) => {
    assert.ok(delay <= bases[i] && delay >= bases[i] / 2, `attempt ${i + 2}: ${delay} ms for base ${bases[i]}`);
  });
  await gateway.start();
  const after = await gateway.publish("unit.restart", "after");
  assert.notEqual(after.epoch, first.epoch, "an in-memory hub starts a new epoch");
  await until(() => got.length === 2, "the message published after the restart");
  assert.deepEqual(resets, ["unit.restart"]);
  assert.deepEqual(got[1], [after.epoch, 1]);
  const closed = log.next((d) => d.state === "closed", "closed");
  c.close(4000, "unit test done");
  const detail = await closed;
  assert.equal(detail.code, 4000);
  assert.equal(detail.reason, "");
  const states = log.events.map((e) => e.state);
  assert.equal(states.at(-1), "closed");
  assert.ok(states.includes("open"));
});
