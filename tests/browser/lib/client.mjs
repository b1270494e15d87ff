// Loads tether.js as the gateway serves it (GET /tether.js), so the tests check the embedded
// file, and gives it Node's `ws` as the WebSocket implementation.
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import WebSocket from "ws";

// Node 18 has EventTarget and Event but no global CustomEvent; browsers and Node 20 do.
if (typeof globalThis.CustomEvent !== "function") {
  globalThis.CustomEvent = class CustomEvent extends Event {
    constructor(type, options = {}) {
      super(type, options);
      this.detail = options.detail ?? null;
    }
  };
}

/** The module served at `${baseUrl}/tether.js`. */
export async function loadTether(baseUrl) {
  const response = await fetch(`${baseUrl}/tether.js`);
  if (!response.ok) throw new Error(`GET /tether.js answered ${response.status}`);
  const type = response.headers.get("content-type");
  if (!type.startsWith("text/javascript")) throw new Error(`/tether.js has content type ${type}`);
  const dir = mkdtempSync(path.join(tmpdir(), "tether-js-"));
  const file = path.join(dir, "tether.mjs");
  writeFileSync(file, await response.text());
  try {
    return await import(pathToFileURL(file).href);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export { WebSocket };

/** Collects a client's "state" events, and resolves waits on them. */
export class StateLog {
  constructor(client) {
    this.events = [];
    this.waiters = [];
    client.addEventListener("state", (e) => {
      this.events.push(e.detail);
      this.waiters = this.waiters.filter((w) => !w(e.detail));
    });
  }

  /** Resolves with the first state event from now on for which `test` holds. */
  next(test, what = "a state event", ms = 15000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
      this.waiters.push((detail) => {
        if (!test(detail)) return false;
        clearTimeout(timer);
        resolve(detail);
        return true;
      });
    });
  }
}
