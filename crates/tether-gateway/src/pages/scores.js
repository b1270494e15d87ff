// Score cards: one card per match on scores.*, flashing on goals, with a feed of events.
import { connect } from "/tether.js";
import { $, el, bindStatus, clock } from "/assets/ui.js";

const client = connect();
bindStatus(client);
window.tether = client;

const cards = new Map(); // topic -> {card, parts, last}
const STATUS = { live: "Live", half_time: "Half time", full_time: "Full time" };

function cardFor(topic, c) {
  let entry = cards.get(topic);
  if (entry) return entry;
  const parts = {
    home: el("span", { class: "team" }),
    away: el("span", { class: "team away" }),
    score: el("span", { class: "score", "data-field": "score" }),
    badge: el("span", { class: "badge" }),
    minute: el("span", { class: "minute" }),
    bar: el("span", { class: "bar-fill" }),
    event: el("p", { class: "event" }),
  };
  const card = el("article", { class: "panel match", "data-topic": topic, "aria-label": `${c.home} against ${c.away}` },
    el("div", { class: "match-head" }, parts.badge, parts.minute, el("span", { class: "tag" }, topic)),
    el("div", { class: "teams" }, parts.home, parts.score, parts.away),
    el("div", { class: "bar", "aria-hidden": "true" }, parts.bar),
    parts.event);
  entry = { card, parts, last: null };
  cards.set(topic, entry);
  $("cards").append(card);
  return entry;
}

function show(msg) {
  const c = msg.data;
  if (!c || typeof c.home !== "string") return;
  const entry = cardFor(msg.topic, c);
  const { parts } = entry;
  parts.home.textContent = c.home;
  parts.away.textContent = c.away;
  parts.score.textContent = `${c.home_score} – ${c.away_score}`;
  parts.badge.textContent = STATUS[c.status] || c.status;
  parts.badge.dataset.status = c.status;
  parts.minute.textContent = c.status === "full_time" ? "90'" : `${c.minute}'`;
  parts.bar.style.width = Math.min(100, (c.minute / 90) * 100) + "%";
  parts.event.textContent = c.last_event || "";
  const last = entry.last;
  const goal = last && (c.home_score > last.home_score || c.away_score > last.away_score);
  if (goal) {
    entry.card.classList.remove("goal");
    void entry.card.offsetWidth;
    entry.card.classList.add("goal");
  }
  // The first card of a match tells its latest event; later ones, goals and whistles.
  if (!last || goal || c.status !== last.status) {
    const line = el("li", { class: goal ? "in" : "sys" }, el("span", { class: "dir", "aria-hidden": "true" }, goal ? "●" : "•"),
      el("span", { class: "what" }, `${c.home} ${c.home_score} – ${c.away_score} ${c.away}: ${c.last_event}`),
      el("span", { class: "src" }, clock(c.time || msg.ts)));
    $("events").prepend(line);
    while ($("events").children.length > 50) $("events").lastChild.remove();
  }
  entry.last = c;
}

client.subscribe("scores.*", show, {
  history: true,
  onReset: () => {
    $("notice").hidden = false;
    $("notice").textContent = "The gateway restarted and its history is gone (recovered: false): cards reloaded.";
  },
}).catch((e) => {
  $("notice").hidden = false;
  $("notice").textContent = `Cannot subscribe to scores.*: ${e.reason || e.message}`;
});
