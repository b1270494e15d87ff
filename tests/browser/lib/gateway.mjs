// Test fixtures: a real `tether serve` process (stopped by its PID), a TCP proxy that can cut
// every connection through it (a network drop), and small HTTP helpers. Everything listens on
// 127.0.0.1 and port 0 or the port the first start got.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../..");

/** How long any single wait may take. */
export const PATIENCE = 15000;

/** The tether binary: $TETHER_BIN, else target/release/tether. */
export function tetherBinary() {
  const bin = process.env.TETHER_BIN || path.join(root, "target/release/tether");
  if (!existsSync(bin)) {
    throw new Error(`${bin} does not exist: build it with cargo build --release -p tether-cli`);
  }
  return bin;
}

/** A running `tether serve`. */
export class Gateway {
  constructor(args = []) {
    this.args = args;
    this.child = null;
    this.port = 0;
    this.stderr = "";
  }

  /** Starts the process (on the port of the first start, when restarting). */
  async start() {
    const listen = `127.0.0.1:${this.port}`;
    const env = { ...process.env, TETHER_LOG: "warn" };
    for (const key of Object.keys(env)) if (key.startsWith("TETHER_") && key !== "TETHER_LOG") delete env[key];
    const child = spawn(tetherBinary(), ["serve", "--listen", listen, ...this.args], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.child = child;
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    this.exited = exited;
    const address = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("tether did not start:\n" + this.stderr)), PATIENCE);
      child.stderr.setEncoding("utf8");
      child.stderr.on("data", (chunk) => {
        this.stderr += chunk;
        const found = /listening on http:\/\/([0-9.]+):(\d+)\//.exec(this.stderr);
        if (found) {
          clearTimeout(timer);
          resolve({ host: found[1], port: Number(found[2]) });
        }
      });
      exited.then(({ code }) => {
        clearTimeout(timer);
        reject(new Error(`tether exited with ${code} before listening:\n${this.stderr}`));
      });
    });
    this.port = address.port;
    this.stderr = "";
    return this;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** SIGTERM (a graceful stop: close 1001 to every client), then waits for the exit. */
  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), PATIENCE);
    const result = await this.exited;
    clearTimeout(timer);
    this.child = null;
    return result;
  }

  /** Stops and starts again on the same port: a fresh in-memory hub, so new epochs. */
  async restart() {
    await this.stop();
    await this.start();
  }

  /** POSTs `data` (JSON) to /api/publish/{topic}; resolves with {topic, epoch, offset}. */
  async publish(topic, data, key) {
    const query = key === undefined ? "" : `?key=${encodeURIComponent(key)}`;
    const response = await fetch(`${this.url}/api/publish/${topic}${query}`, {
      method: "POST",
      body: JSON.stringify(data),
    });
    if (!response.ok) throw new Error(`publish answered ${response.status}: ${await response.text()}`);
    return response.json();
  }
}

/** A TCP proxy to `target` (a port on 127.0.0.1) whose `cut()` drops every connection. */
export class Proxy {
  constructor(target) {
    this.target = target;
    this.sockets = new Set();
    /** While set, new connections are dropped at once (the network is down). */
    this.blocked = false;
    this.server = net.createServer((client) => {
      if (this.blocked) {
        client.destroy();
        return;
      }
      const upstream = net.connect(this.target(), "127.0.0.1");
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => {});
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = this.server.address().port;
    return this;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Drops every connection through the proxy without a closing handshake. */
  cut() {
    const count = this.sockets.size;
    for (const s of this.sockets) s.destroy();
    return count;
  }

  async stop() {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** Resolves when `check()` is truthy (polled every 25 ms), rejects after `ms`. */
export async function until(check, what, ms = PATIENCE) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
