// tether.js: a browser client for the Tether gateway's pub/sub protocol (tether.pubsub.v1,
// docs/PROTOCOL.md). An ES module without dependencies, served by every gateway at /tether.js.
//
//   import { connect } from "/tether.js";
//   const client = connect();                       // ws(s)://<this host>/ws
//   client.addEventListener("state", (e) => console.log(e.detail.state));
//   await client.subscribe("stocks.*", (msg) => console.log(msg.topic, msg.data));
//   await client.publish("chat.lobby", { text: "hi" });
//   const { count, clients } = await client.presence("chat.lobby");  // [{client, user}]
//
// What it does for the page:
// - promise-based acks: subscribe, unsubscribe, publish and presence resolve with the server's ack and
//   reject with its error ({code, reason}, see docs/PROTOCOL.md), or with code
//   "connection_lost" when the connection drops before the ack (a publish may then have
//   happened or not), or "timeout";
// - reconnects with exponential backoff and jitter, and resubscribes every subscription from
//   the position ({epoch, offset}) of the last message it handled per topic, so nothing is
//   missed across a drop when the gateway's history still holds it;
// - when the server answers a resume with recovered: false (the history it knew is gone, e.g.
//   the gateway restarted), it fires a "reset" event and the subscription's onReset: the page
//   drops its state for that topic; what the server still retains follows as messages;
// - every message handed to a handler is the envelope {topic, epoch, offset, key, ts, data}
//   plus `replayed`: true when it came from the gateway's history on (re)subscribe;
// - "gap" events when offsets skip (the gateway dropped messages for a slow page);
// - "state" events: connecting, open, reconnecting (with the delay and attempt), closed (with
//   the close code and reason); "close" events for every closed socket; "error" events for
//   server errors that answer no request.
//
// Outside a browser (Node's tests), pass a WebSocket implementation: connect(url,
// { WebSocket }).

/** The subprotocol of the gateway's pub/sub routes. */
export const SUBPROTOCOL = "tether.pubsub.v1";

/** An epoch no topic has: resuming from it replays everything the topic retains. */
const NO_EPOCH = "0000000000000000";

const DEFAULTS = {
  protocols: [SUBPROTOCOL],
  backoff: { initial: 250, max: 10000, factor: 2, jitter: 0.5 },
  ackTimeout: 10000,
  maxQueued: 1000,
  WebSocket: globalThis.WebSocket,
};

/** An error from the server or the connection: `code` is what programs match on. */
export class TetherError extends Error {
  constructor(code, reason) {
    super(`${code}: ${reason}`);
    this.name = "TetherError";
    this.code = code;
    this.reason = reason;
  }
}

/** The gateway's pub/sub URL for this page: ws(s)://host/ws, with the page's ?token= if any. */
export function defaultUrl(path = "/ws") {
  const loc = globalThis.location;
  const scheme = loc.protocol === "https:" ? "wss://" : "ws://";
  const token = new URLSearchParams(loc.search).get("token");
  return scheme + loc.host + path + (token ? "?token=" + encodeURIComponent(token) : "");
}

/** Whether `topic` is covered by the subscription `pattern` (exact, `prefix.*` or `*`). */
export function matches(pattern, topic) {
  if (pattern === "*") return true;
  if (pattern.endsWith(".*")) return topic.startsWith(pattern.slice(0, -1));
  return pattern === topic;
}

const isPattern = (topic) => topic === "*" || topic.endsWith(".*");

/** Opens a client; it connects at once and keeps reconnecting until `close()`. */
export function connect(url = defaultUrl(), options = {}) {
  const client = new TetherClient(url, options);
  client.connect();
  return client;
}

export class TetherClient extends EventTarget {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = { ...DEFAULTS, ...options, backoff: { ...DEFAULTS.backoff, ...options.backoff } };
    if (typeof this.options.WebSocket !== "function") {
      throw new TypeError("no WebSocket implementation: pass { WebSocket } outside a browser");
    }
    /** "idle", "connecting", "open", "reconnecting" or "closed". */
    this.state = "idle";
    /** topic -> {epoch, offset} of the last message handled. */
    this.positions = new Map();
    /** subscription topic (or pattern) -> {handlers, history, onReset, acked, waiters}. */
    this.subscriptions = new Map();
    this.socket = null;
    this.attempt = 0;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, timer, request}
    this.replayUntil = new Map(); // topic -> the position up to which messages are replayed
    this.queued = []; // requests waiting for the connection to open
    this.timer = null;
    this.stopped = false;
  }

  /** Starts connecting (again, after `close()`). */
  connect() {
    this.stopped = false;
    clearTimeout(this.timer);
    this.#open();
  }

  /**
   * Subscribes `handler` to a topic, `prefix.*` or `*`. Resolves with the ack ({topics}).
   * Options: `history: true` replays what the gateway retains before live messages (the
   * latest value per key on latest-per-key topics); `onReset(topic)` runs when a resume could
   * not be complete (recovered: false).
   */
  subscribe(topic, handler, { history = false, onReset = null } = {}) {
    let sub = this.subscriptions.get(topic);
    if (!sub) {
      sub = { handlers: new Set(), history, onReset, acked: false, waiters: [] };
      this.subscriptions.set(topic, sub);
    }
    if (handler) sub.handlers.add(handler);
    if (onReset) sub.onReset = onReset;
    if (sub.acked) return Promise.resolve(sub.ack);
    const waiting = new Promise((resolve, reject) => sub.waiters.push({ resolve, reject }));
    if (sub.waiters.length === 1 && this.state === "open") this.#sendSubscribe(topic, sub);
    return waiting;
  }

  /** Ends a subscription (every handler of it). Resolves with the ack. */
  unsubscribe(topic) {
    const sub = this.subscriptions.get(topic);
    if (!sub) return Promise.reject(new TetherError("not_subscribed", `not subscribed to ${topic}`));
    this.subscriptions.delete(topic);
    for (const w of sub.waiters) w.reject(new TetherError("unsubscribed", topic));
    if (this.state !== "open") return Promise.resolve({ type: "ack" });
    return this.#request({ type: "unsubscribe", topic });
  }

  /** Publishes `data` (any JSON value) to `topic`. Resolves with {topic, epoch, offset}. */
  publish(topic, data, { key } = {}) {
    const request = { type: "publish", topic, data: data === undefined ? null : data };
    if (key !== undefined) request.key = String(key);
    return this.#request(request);
  }

  /**
   * Who subscribes to `topic` (exactly, on any node of the gateway), for a topic whose policy
   * keeps presence. Resolves with {topic, count, clients: [{client, user}], truncated}:
   * `clients` lists at most the gateway's `hub.presence_max_clients`; `truncated` is true when
   * it lists fewer than `count`. Rejects with "presence_disabled" for other topics.
   */
  async presence(topic) {
    const ack = await this.#request({ type: "presence", topic });
    return { topic: ack.topic, count: ack.count, clients: ack.clients, truncated: ack.truncated === true };
  }

  /** Closes for good (no reconnect) with `code` and `reason`. */
  close(code = 1000, reason = "") {
    this.stopped = true;
    clearTimeout(this.timer);
    const socket = this.socket;
    if (socket && socket.readyState <= 1) socket.close(code, reason);
    else this.#setState("closed", { code, reason });
  }

  #setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }

  #open() {
    const { WebSocket: Impl, protocols } = this.options;
    this.#setState(this.attempt === 0 ? "connecting" : "reconnecting", { attempt: this.attempt });
    let socket;
    try {
      socket = new Impl(this.url, protocols);
    } catch (e) {
      // A malformed URL never connects: stop with the reason.
      this.stopped = true;
      this.#setState("closed", { code: 1006, reason: String(e.message || e) });
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (socket !== this.socket) return;
      this.attempt = 0;
      this.#setState("open", { protocol: socket.protocol, extensions: socket.extensions });
      for (const [topic, sub] of this.subscriptions) this.#sendSubscribe(topic, sub);
      const queued = this.queued.splice(0);
      for (const entry of queued) this.#transmit(entry);
    };
    socket.onmessage = (event) => {
      if (socket !== this.socket || typeof event.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      this.#receive(msg);
    };
    // Every failure ends in a close event; that is where the client reacts.
    socket.onerror = () => {};
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      const detail = { code: event.code, reason: event.reason, wasClean: event.wasClean };
      this.dispatchEvent(new CustomEvent("close", { detail }));
      for (const [id, entry] of this.pending) {
        clearTimeout(entry.timer);
        entry.reject(new TetherError("connection_lost", "the connection closed before the answer"));
        this.pending.delete(id);
      }
      if (this.stopped) {
        for (const entry of this.queued.splice(0)) {
          entry.reject(new TetherError("closed", "the client was closed"));
        }
        this.#setState("closed", detail);
        return;
      }
      const { initial, max, factor, jitter } = this.options.backoff;
      const base = Math.min(max, initial * factor ** this.attempt);
      const delay = Math.round(base * (1 - jitter * Math.random()));
      this.attempt += 1;
      this.#setState("reconnecting", { ...detail, delay, attempt: this.attempt });
      this.timer = setTimeout(() => this.#open(), delay);
    };
  }

  #sendSubscribe(topic, sub) {
    const request = { type: "subscribe", topic };
    let resuming = false;
    if (isPattern(topic)) {
      const since = {};
      for (const [t, position] of this.positions) if (matches(topic, t)) since[t] = position;
      if (Object.keys(since).length || sub.history || sub.acked) {
        request.since = since;
        resuming = Object.keys(since).length > 0;
      }
    } else {
      const position = this.positions.get(topic);
      if (position) {
        request.since = position;
        resuming = true;
      } else if (sub.history || sub.acked) {
        request.since = { epoch: NO_EPOCH, offset: 0 };
      }
    }
    // The ack is handled as it arrives, before the replayed messages that follow it.
    this.#enqueue({
      request,
      resolve: (ack) => this.#subscribed(topic, sub, ack, request.since !== undefined, resuming),
      reject: (error) => {
        if (error.code === "connection_lost") return; // sent again on the next open
        for (const w of sub.waiters.splice(0)) w.reject(error);
        if (!sub.acked && this.subscriptions.get(topic) === sub) this.subscriptions.delete(topic);
      },
    });
  }

  #subscribed(topic, sub, ack, replaying, resuming) {
    for (const [t, status] of Object.entries(ack.topics || {})) {
      // Live only: the ack's position is where this client starts. With a replay, the
      // messages up to it follow and move the position themselves.
      if (!replaying && !this.positions.has(t)) {
        this.positions.set(t, { epoch: status.epoch, offset: status.offset });
      }
      if (replaying) this.replayUntil.set(t, { epoch: status.epoch, offset: status.offset });
      if (resuming && status.recovered === false && this.positions.has(t)) {
        // The history this client knew is gone: forget its position, tell the page.
        this.positions.delete(t);
        const detail = { topic: t, subscription: topic, epoch: status.epoch, offset: status.offset };
        if (sub.onReset) sub.onReset(t, detail);
        this.dispatchEvent(new CustomEvent("reset", { detail }));
      }
    }
    sub.acked = true;
    sub.ack = ack;
    for (const w of sub.waiters.splice(0)) w.resolve(ack);
  }

  #receive(msg) {
    if (msg.type === "message") {
      const known = this.positions.get(msg.topic);
      if (known && known.epoch === msg.epoch && msg.offset <= known.offset) return; // seen
      if (known && known.epoch === msg.epoch && msg.offset > known.offset + 1) {
        const detail = { topic: msg.topic, from: known.offset + 1, to: msg.offset - 1 };
        this.dispatchEvent(new CustomEvent("gap", { detail }));
      }
      this.positions.set(msg.topic, { epoch: msg.epoch, offset: msg.offset });
      // Replayed from history (it was published before the subscribe's ack), or live.
      const until = this.replayUntil.get(msg.topic);
      msg.replayed = Boolean(until && until.epoch === msg.epoch && msg.offset <= until.offset);
      if (until && (until.epoch !== msg.epoch || msg.offset >= until.offset)) {
        this.replayUntil.delete(msg.topic);
      }
      for (const [pattern, sub] of this.subscriptions) {
        if (!matches(pattern, msg.topic)) continue;
        for (const handler of sub.handlers) {
          try {
            handler(msg);
          } catch (e) {
            console.error("tether.js: a message handler failed", e);
          }
        }
      }
      return;
    }
    const entry = msg.id === undefined ? undefined : this.pending.get(msg.id);
    if (!entry) {
      if (msg.type === "error") this.dispatchEvent(new CustomEvent("error", { detail: msg }));
      return;
    }
    this.pending.delete(msg.id);
    clearTimeout(entry.timer);
    if (msg.type === "ack") entry.resolve(msg);
    else entry.reject(new TetherError(msg.code || "error", msg.reason || "refused"));
  }

  #request(request) {
    return new Promise((resolve, reject) => this.#enqueue({ request, resolve, reject }));
  }

  /** Sends a request now, or when the connection opens. */
  #enqueue(entry) {
    if (this.state === "open") this.#transmit(entry);
    else if (this.stopped) entry.reject(new TetherError("closed", "the client was closed"));
    else if (this.queued.length >= this.options.maxQueued) {
      entry.reject(new TetherError("queue_full", "too many requests wait for the connection"));
    } else this.queued.push(entry);
  }

  #transmit(entry) {
    const id = this.nextId++;
    entry.timer = setTimeout(() => {
      if (this.pending.delete(id)) entry.reject(new TetherError("timeout", "no answer in time"));
    }, this.options.ackTimeout);
    this.pending.set(id, entry);
    this.socket.send(JSON.stringify({ ...entry.request, id }));
  }
}
