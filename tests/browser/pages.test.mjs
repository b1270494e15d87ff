// End-to-end tests of the built-in pages in headless Chromium against a real `tether serve`
// (demo feeds on). They take the screenshots in docs/screenshots/ that README.md shows.
//
// Restarts and history: the default hub keeps history in memory, so a restarted gateway has
// none of the old history and new epochs. What the tests show, and how:
// - a network drop (a TCP proxy between browser and gateway cuts every connection and refuses
//   new ones for a while) while messages are published: the page reconnects, resumes from its
//   last {epoch, offset}, and shows every offset once, with no reset notice (recovered: true);
// - a restart of the gateway (SIGTERM, start again on the same port): the page reconnects,
//   the gateway answers the resume with recovered: false, the page shows that it reloaded,
//   and it shows every message of the new epoch from offset 1 (published while it was still
//   reconnecting or after), none missing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Gateway, Proxy, PATIENCE } from "./lib/gateway.mjs";
import { launch, open, screenshot } from "./lib/browser.mjs";

let gateway;
let proxy;
let browser;

before(async () => {
  gateway = await new Gateway().start();
  proxy = await new Proxy(() => gateway.port).start();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await proxy?.stop();
  await gateway?.stop();
});

const desktop = () => browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: "light" });
const noPageErrors = (page) => assert.deepEqual(page.problems.filter((p) => p.startsWith("page error")), []);
const noErrors = (page) => assert.deepEqual(page.problems, []);

test("the ticker shows values that update within a few seconds, with latency", async () => {
  const context = await desktop();
  const page = await open(context, `${gateway.url}/ticker`);
  await page.locator('#quotes tr[data-symbol="TTX"]').waitFor({ timeout: PATIENCE });
  await page.waitForFunction(() => document.querySelectorAll("#quotes tr").length === 7, null, { timeout: PATIENCE });
  const first = await page.locator("#s-count").textContent();
  const firstIndex = await page.locator("#index-price").textContent();
  // The index moves every 250 ms: a new value and more updates within 5 s.
  await page.waitForFunction(
    ([count, index]) => document.getElementById("s-count").textContent !== count
      && document.getElementById("index-price").textContent !== index,
    [first, firstIndex], { timeout: 5000 });
  await page.waitForFunction(() => /\d+ ms/.test(document.getElementById("s-latency").textContent), null, { timeout: 5000 });
  assert.equal(await page.locator("#status").getAttribute("data-state"), "open");
  // Sparklines fill as ticks arrive.
  await page.waitForFunction(() => document.querySelectorAll("#quotes polyline").length === 7, null, { timeout: 10000 });
  await page.waitForFunction(() => {
    const index = [...document.querySelectorAll("#index-chart polyline")][0];
    return index && index.getAttribute("points").split(" ").length >= 20;
  }, null, { timeout: 10000 });
  await screenshot(page, "ticker", { fullPage: true });
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, colorScheme: "light" });
  const small = await open(phone, `${gateway.url}/ticker`);
  await small.waitForFunction(() => document.querySelectorAll("#quotes polyline").length === 7, null, { timeout: 10000 });
  await screenshot(small, "ticker-phone");
  noErrors(page);
  noErrors(small);
  await phone.close();
  await context.close();
});

test("the score card shows every match and updates", async () => {
  const context = await desktop();
  const page = await open(context, `${gateway.url}/scores`);
  await page.waitForFunction(() => document.querySelectorAll("#cards .match").length === 3, null, { timeout: PATIENCE });
  const minutes = await page.locator("#cards .minute").allTextContents();
  // A match minute passes every second (or a card says full time).
  await page.waitForFunction((before) => {
    const now = [...document.querySelectorAll("#cards .minute")].map((m) => m.textContent);
    return now.some((m, i) => m !== before[i]);
  }, minutes, { timeout: 5000 });
  const score = await page.locator("#cards .score").first().textContent();
  assert.match(score, /^\d+ – \d+$/);
  await screenshot(page, "scores", { fullPage: true });
  noErrors(page);
  await context.close();
});

test("two browsers chat: each sees the other's messages", async () => {
  const ann = await desktop();
  const bob = await desktop();
  const a = await open(ann, `${gateway.url}/chat?name=Ann`);
  const b = await open(bob, `${gateway.url}/chat?name=Bob`);
  for (const page of [a, b]) await page.waitForFunction(() => window.tether.state === "open", null, { timeout: PATIENCE });
  await a.fill("#text", "Hi Bob, the ticker is up today");
  await a.click("#send");
  await b.locator("#messages .message", { hasText: "Hi Bob, the ticker is up today" }).waitFor({ timeout: 5000 });
  await b.fill("#text", "Hello Ann! Want a game of Territory?");
  await b.press("#text", "Enter");
  await a.locator("#messages .message", { hasText: "Want a game of Territory?" }).waitFor({ timeout: 5000 });
  assert.equal(await b.locator("#messages .message strong", { hasText: "Ann" }).count(), 1);
  assert.equal(await a.locator("#messages .message.mine").count(), 1);
  await a.fill("#text", "Sure, see you on /game");
  await a.click("#send");
  await b.locator("#messages .message", { hasText: "see you on /game" }).waitFor({ timeout: 5000 });
  await screenshot(b, "chat");
  noErrors(a);
  noErrors(b);
  await ann.close();
  await bob.close();
});

test("two browsers play Territory: each sees the other's moves at once", async () => {
  const ann = await desktop();
  const bob = await desktop();
  const a = await open(ann, `${gateway.url}/game?name=Ann`);
  const b = await open(bob, `${gateway.url}/game?name=Bob`);
  for (const page of [a, b]) await page.waitForFunction(() => window.tether.state === "open", null, { timeout: PATIENCE });
  await a.click("#new-round");
  await b.locator("#round", { hasText: "Ann" }).waitFor({ timeout: 5000 });
  const annCells = [0, 1, 2, 13, 14, 26, 27, 40, 52, 53];
  const bobCells = [143, 142, 131, 130, 118, 119, 107, 95, 94];
  for (let i = 0; i < Math.max(annCells.length, bobCells.length); i++) {
    if (annCells[i] !== undefined) await a.click(`.cell[data-cell="${annCells[i]}"]`);
    if (bobCells[i] !== undefined) await b.click(`.cell[data-cell="${bobCells[i]}"]`);
  }
  // Bob takes one of Ann's cells.
  await b.click('.cell[data-cell="53"]');
  for (const page of [a, b]) {
    await page.waitForFunction(() => document.querySelectorAll('.cell[data-owner="Ann"]').length === 9
      && document.querySelectorAll('.cell[data-owner="Bob"]').length === 10, null, { timeout: 5000 });
    assert.equal(await page.locator('.cell[data-cell="53"]').getAttribute("data-owner"), "Bob");
    assert.equal(await page.locator('#players tr[data-player="Bob"] td.num').textContent(), "10");
  }
  // A late browser sees the same board, from the topic's history.
  const late = await open(await desktop(), `${gateway.url}/game?name=Cyd`);
  await late.waitForFunction(() => document.querySelectorAll('.cell[data-owner="Bob"]').length === 10, null, { timeout: 5000 });
  assert.equal(await late.locator('.cell[data-owner="Ann"]').count(), 9);
  await screenshot(a, "game");
  noErrors(a);
  noErrors(b);
  await ann.close();
  await bob.close();
});

test("the connection panel shows the handshake, the subprotocol and permessage-deflate, frames, ping, and close 4000", async () => {
  const context = await desktop();
  const page = await open(context, `${gateway.url}/`);
  await page.locator("#f-protocol", { hasText: "tether.inspect.v1" }).waitFor({ timeout: PATIENCE });
  assert.match(await page.locator("#f-extensions").textContent(), /^permessage-deflate/);
  // The gateway's report of the handshake it saw.
  await page.locator("#h-request", { hasText: "sec-websocket-protocol: tether.inspect.v1" }).waitFor({ timeout: 5000 });
  assert.match(await page.locator("#h-request").textContent(), /sec-websocket-extensions: permessage-deflate/);
  assert.match(await page.locator("#h-response").textContent(), /^HTTP\/1.1 101/);
  assert.match(await page.locator("#h-response").textContent(), /sec-websocket-extensions: permessage-deflate; server_no_context_takeover|sec-websocket-extensions: permessage-deflate/);
  // The routes the gateway reports.
  await page.locator("#ws-routes tr", { hasText: "/ws" }).waitFor({ timeout: 5000 });
  // A text message long enough to be compressed, a binary one, a ping.
  await page.click("#send-text");
  await page.locator("#log li", { hasText: "compressed (RSV1=1)" }).waitFor({ timeout: 5000 });
  await page.locator("#log li", { hasText: "text message, 74 B" }).first().waitFor({ timeout: 5000 });
  await page.fill("#message", "tiny");
  await page.click("#send-binary");
  await page.locator("#log li", { hasText: "received binary of 4 B" }).waitFor({ timeout: 5000 });
  await page.locator("#log li", { hasText: "not compressed (RSV1=0)" }).waitFor({ timeout: 5000 });
  await page.locator("#log li", { hasText: "binary message, 4 B: [116 105 110 121]" }).waitFor({ timeout: 5000 });
  await page.click("#send-ping");
  await page.locator("#log li", { hasText: /pong frame from the browser, payload "inspect-1", round trip \d/ }).waitFor({ timeout: 5000 });
  await screenshot(page, "home", { fullPage: true });
  // The gateway closes with 4000 and a reason: both shown.
  await page.click("#close-server");
  await page.locator("#f-close", { hasText: "4000 done for today (clean)" }).waitFor({ timeout: 5000 });
  assert.equal(await page.locator("#status").getAttribute("data-state"), "closed");
  // The browser closes with 4000 and a reason: the gateway's answer echoes the code.
  await page.click("#connect");
  await page.locator("#f-state", { hasText: "open" }).waitFor({ timeout: 5000 });
  await page.fill("#close-reason", "leaving now");
  await page.click("#close-browser");
  await page.locator("#log li", { hasText: 'close(4000, "leaving now")' }).waitFor({ timeout: 5000 });
  await page.locator("#f-close", { hasText: "4000" }).waitFor({ timeout: 5000 });
  // The pub/sub route negotiates its subprotocol and permessage-deflate too.
  await page.selectOption("#endpoint", "/ws|tether.pubsub.v1");
  await page.click("#connect");
  await page.locator("#f-protocol", { hasText: "tether.pubsub.v1" }).waitFor({ timeout: 5000 });
  assert.match(await page.locator("#f-extensions").textContent(), /^permessage-deflate; server_no_context_takeover/);
  noErrors(page);
  await context.close();
});

/** The chat messages a page shows, as "epoch:offset". */
const shown = (page) => page.$$eval("#messages .message", (items) => items.map((i) => `${i.dataset.epoch}:${i.dataset.offset}`));

test("a network drop and a restart: the pages reconnect and miss no message", async () => {
  const topic = "chat.lobby";
  const context = await desktop();
  const page = await open(context, `${proxy.url}/chat?name=Dee`);
  const ticker = await open(context, `${proxy.url}/ticker`);
  await page.waitForFunction(() => window.tether.state === "open", null, { timeout: PATIENCE });
  const before = (await shown(page)).length;
  const positions = [];
  for (let i = 1; i <= 3; i++) positions.push(await gateway.publish(topic, { from: "api", text: `before the drop ${i}` }));
  const epoch = positions[0].epoch;
  await page.waitForFunction((n) => document.querySelectorAll("#messages .message").length === n, before + 3, { timeout: 5000 });

  // Network drop: connections cut, reconnects refused while five messages are published.
  proxy.blocked = true;
  assert.ok(proxy.cut() > 0);
  await page.locator('#status[data-state="reconnecting"]').waitFor({ timeout: 5000 });
  for (let i = 1; i <= 5; i++) positions.push(await gateway.publish(topic, { from: "api", text: `during the drop ${i}` }));
  proxy.blocked = false;
  await page.waitForFunction((n) => document.querySelectorAll("#messages .message").length === n, before + 8, { timeout: PATIENCE });
  await page.locator('#status[data-state="open"]').waitFor({ timeout: 5000 });
  const offsets = (await shown(page)).filter((s) => s.startsWith(epoch + ":")).map((s) => Number(s.split(":")[1]));
  const expected = Array.from({ length: offsets.at(-1) }, (_, i) => i + 1);
  assert.deepEqual(offsets, expected, "every offset of the epoch once, in order");
  assert.equal(offsets.at(-1), positions.at(-1).offset);
  assert.equal(await page.locator("#notice").isHidden(), true, "no reset after a resumed drop");

  // Restart: a new in-memory hub. Messages published before the page is back must show too.
  await gateway.stop();
  await page.locator('#status[data-state="reconnecting"]').waitFor({ timeout: 5000 });
  proxy.blocked = true;
  await gateway.start();
  const after = [];
  for (let i = 1; i <= 3; i++) after.push(await gateway.publish(topic, { from: "api", text: `after the restart ${i}` }));
  assert.notEqual(after[0].epoch, epoch);
  proxy.blocked = false;
  await page.locator("#notice", { hasText: "recovered: false" }).waitFor({ timeout: PATIENCE });
  await page.waitForFunction((e) => [...document.querySelectorAll("#messages .message")].filter((m) => m.dataset.epoch === e).length === 3,
    after[0].epoch, { timeout: PATIENCE });
  await gateway.publish(topic, { from: "api", text: "live after the restart" });
  await page.waitForFunction(() => document.querySelectorAll("#messages .message").length === 4, null, { timeout: 5000 });
  assert.deepEqual(await shown(page), [1, 2, 3, 4].map((n) => `${after[0].epoch}:${n}`));
  // The ticker came back too and updates again.
  await ticker.locator('#status[data-state="open"]').waitFor({ timeout: PATIENCE });
  const count = await ticker.locator("#s-count").textContent();
  await ticker.waitForFunction((c) => document.getElementById("s-count").textContent !== c, count, { timeout: 5000 });
  noPageErrors(page);
  noPageErrors(ticker);
  await context.close();
});
