// Market ticker: stocks.* with a sparkline per symbol, flashes on every tick, and the latency
// from publish (the envelope's ts) to arrival.
import { connect } from "/tether.js";
import { $, el, svg, bindStatus } from "/assets/ui.js";

const POINTS = 60;
const INDEX = "TTX";
const client = connect();
bindStatus(client);
window.tether = client; // for the browser tests and the curious

const rows = new Map(); // symbol -> {row, cells, history}
const latencies = [];
let count = 0;
let resets = 0;
const arrivals = [];

const money = (x) => Number(x).toFixed(2);
const signed = (x, suffix = "") => (x > 0 ? "+" : x < 0 ? "−" : "") + Math.abs(x).toFixed(2) + suffix;

/** A sparkline of `values` as an SVG polyline, green when above the first point. */
function sparkline(values, width, height, label) {
  const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  if (values.length < 2) return chart;
  const min = Math.min(...values);
  const max = Math.max(...values);
  const span = max - min || 1;
  const x = (i) => (i / (values.length - 1)) * (width - 4) + 2;
  const y = (v) => height - 3 - ((v - min) / span) * (height - 6);
  const points = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const rising = values[values.length - 1] >= values[0];
  const color = rising ? "var(--up)" : "var(--down)";
  const area = `${x(0).toFixed(1)},${height} ${points} ${x(values.length - 1).toFixed(1)},${height}`;
  chart.append(
    svg("polygon", { points: area, fill: color, opacity: "0.12" }),
    svg("polyline", { points, fill: "none", stroke: color, "stroke-width": "1.8", "stroke-linejoin": "round" }),
  );
  return chart;
}

function flash(node, tick) {
  if (tick !== "up" && tick !== "down") return;
  node.classList.remove("flash-up", "flash-down");
  void node.offsetWidth; // restart the animation
  node.classList.add("flash-" + tick);
}

function rowFor(quote) {
  let entry = rows.get(quote.symbol);
  if (entry) return entry;
  const cells = {
    price: el("td", { class: "num", "data-field": "price" }),
    change: el("td", { class: "num" }),
    pct: el("td", { class: "num" }),
    chart: el("td"),
    latency: el("td", { class: "num mono" }, "–"),
  };
  const row = el("tr", { "data-symbol": quote.symbol },
    el("td", {}, el("strong", {}, quote.symbol)), el("td", { class: "note", style: "margin:0" }, quote.name || ""),
    cells.price, cells.change, cells.pct, cells.chart, cells.latency);
  entry = { row, cells, history: [] };
  rows.set(quote.symbol, entry);
  const body = $("quotes");
  const after = [...body.children].find((r) => r.dataset.symbol > quote.symbol && r.dataset.symbol !== INDEX);
  if (quote.symbol === INDEX) body.prepend(row);
  else body.insertBefore(row, after || null);
  return entry;
}

function show(msg) {
  const quote = msg.data;
  if (!quote || typeof quote.symbol !== "string") return;
  count += 1;
  const now = Date.now();
  arrivals.push(now);
  const latency = msg.replayed ? null : Math.max(0, now - msg.ts);
  if (latency !== null) {
    latencies.push(latency);
    if (latencies.length > 100) latencies.shift();
  }
  const entry = rowFor(quote);
  entry.history.push(quote.price);
  if (entry.history.length > POINTS) entry.history.shift();
  const { cells } = entry;
  cells.price.textContent = money(quote.price);
  cells.change.textContent = signed(quote.change);
  cells.pct.textContent = signed(quote.change_pct, "%");
  cells.change.className = cells.pct.className = "num " + (quote.change >= 0 ? "up" : "down");
  cells.chart.replaceChildren(sparkline(entry.history, 140, 30, `${quote.symbol}, last ${entry.history.length} prices`));
  cells.latency.textContent = latency === null ? "replayed" : latency + " ms";
  flash(cells.price, quote.tick);
  entry.row.dataset.offset = msg.offset;
  if (quote.symbol === INDEX) {
    $("index-price").textContent = money(quote.price);
    $("index-change").textContent = `${signed(quote.change)} (${signed(quote.change_pct, "%")})`;
    $("index-change").className = quote.change >= 0 ? "up" : "down";
    const width = Math.max(240, $("index-chart").clientWidth || 320);
    $("index-chart").replaceChildren(sparkline(entry.history, width, 70, `Tether Index, last ${entry.history.length} values`));
    flash($("index-price"), quote.tick);
  }
}

function stats() {
  const now = Date.now();
  while (arrivals.length && arrivals[0] < now - 5000) arrivals.shift();
  $("s-count").textContent = count.toLocaleString();
  $("s-rate").textContent = arrivals.length ? (arrivals.length / 5).toFixed(1) : "–";
  if (latencies.length) {
    const sorted = [...latencies].sort((a, b) => a - b);
    $("s-latency").textContent = latencies[latencies.length - 1] + " ms";
    $("s-median").textContent = sorted[Math.floor(sorted.length / 2)] + " ms";
  }
  $("s-resets").textContent = resets;
}
setInterval(stats, 500);

client.subscribe("stocks.*", show, {
  history: true,
  onReset: () => {
    resets += 1;
    const notice = $("notice");
    notice.hidden = false;
    notice.textContent = "The gateway restarted and its history is gone (recovered: false): quotes reloaded from what it has now.";
  },
}).catch((e) => {
  $("notice").hidden = false;
  $("notice").textContent = `Cannot subscribe to stocks.*: ${e.reason || e.message}`;
});
