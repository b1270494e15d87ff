// Territory: a shared board. A claim is a publish to game.territory keyed by its cell, so the
// topic's latest-per-key history is the board; "New round" publishes a round marker that
// clears it (history replays in offset order, so a late page rebuilds the same board).
import { connect } from "/tether.js";
import { $, el, bindStatus, colorFor, playerName, clock } from "/assets/ui.js";

const TOPIC = "game.territory";
const SIZE = 12;
const client = connect();
bindStatus(client);
window.tether = client;

let me = playerName();
const owners = new Array(SIZE * SIZE).fill(null);
const cells = [];

$("name").value = me;
$("name").addEventListener("change", () => {
  me = $("name").value.trim().slice(0, 24) || me;
  sessionStorage.setItem("tether.name", me);
  $("name").value = me;
  renderPlayers();
});

for (let i = 0; i < SIZE * SIZE; i++) {
  const cell = el("button", { class: "cell", "data-cell": i, "aria-label": `cell ${i + 1}, free`, role: "gridcell" });
  cell.addEventListener("click", () => claim(i));
  cells.push(cell);
  $("board").append(cell);
}

function claim(i) {
  if (owners[i] === me) return;
  client.publish(TOPIC, { kind: "claim", cell: i, player: me }, { key: `cell-${i}` }).catch((e) => {
    $("notice").hidden = false;
    $("notice").textContent = `Your move was not published: ${e.reason || e.message}`;
  });
}

function paint(i) {
  const owner = owners[i];
  const cell = cells[i];
  cell.style.background = owner ? colorFor(owner) : "";
  cell.dataset.owner = owner || "";
  cell.classList.toggle("mine", owner === me);
  cell.setAttribute("aria-label", `cell ${i + 1}, ${owner ? "claimed by " + owner : "free"}`);
}

function renderPlayers() {
  const counts = new Map();
  for (const owner of owners) if (owner) counts.set(owner, (counts.get(owner) || 0) + 1);
  const sorted = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  if (!counts.has(me)) sorted.push([me, 0]);
  $("players").replaceChildren(...sorted.map(([name, n]) => el("tr", { "data-player": name },
    el("td", {}, el("span", { class: "swatch", style: `background:${colorFor(name)}` }), name, name === me ? " (you)" : ""),
    el("td", { class: "num" }, n))));
}

function logMove(text, ts) {
  $("moves").prepend(el("li", { class: "in" }, el("span", { class: "dir" }, "•"),
    el("span", { class: "what" }, text), el("span", { class: "src" }, clock(ts))));
  while ($("moves").children.length > 40) $("moves").lastChild.remove();
}

function clearBoard() {
  owners.fill(null);
  cells.forEach((_, i) => paint(i));
}

function handle(msg) {
  const move = msg.data;
  if (!move || typeof move !== "object") return;
  if (move.kind === "round") {
    clearBoard();
    $("round").textContent = `Round started by ${move.player} at ${clock(msg.ts)}`;
    if (!msg.replayed) logMove(`${move.player} started a new round`, msg.ts);
  } else if (move.kind === "claim" && Number.isInteger(move.cell) && move.cell >= 0 && move.cell < owners.length) {
    const player = String(move.player || "someone").slice(0, 24);
    owners[move.cell] = player;
    paint(move.cell);
    if (!msg.replayed) logMove(`${player} claimed cell ${move.cell + 1}`, msg.ts);
  }
  renderPlayers();
}

$("new-round").addEventListener("click", () => {
  client.publish(TOPIC, { kind: "round", player: me }, { key: "round" });
});

renderPlayers();
client.subscribe(TOPIC, handle, {
  history: true,
  onReset: () => {
    clearBoard();
    renderPlayers();
    $("notice").hidden = false;
    $("notice").textContent = "The gateway lost the board (it restarted): showing what it has now.";
  },
}).catch((e) => {
  $("notice").hidden = false;
  $("notice").textContent = `Cannot join the game: ${e.reason || e.message}`;
});
