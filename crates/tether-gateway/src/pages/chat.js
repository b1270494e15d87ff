// Chat room: publish to chat.lobby, show what everyone publishes there.
import { connect } from "/tether.js";
import { $, el, bindStatus, colorFor, playerName, clock } from "/assets/ui.js";

const TOPIC = "chat.lobby";
const client = connect();
bindStatus(client);
window.tether = client;

let me = playerName();
let count = 0;
$("name").value = me;

function add(msg) {
  const m = msg.data;
  if (!m || typeof m.text !== "string") return;
  const from = String(m.from || "someone").slice(0, 24);
  const item = el("li", { class: from === me ? "message mine" : "message", "data-offset": msg.offset, "data-epoch": msg.epoch },
    el("span", { class: "avatar", style: `background:${colorFor(from)}`, "aria-hidden": "true" }, from.slice(0, 1).toUpperCase()),
    el("div", { class: "bubble" },
      el("div", { class: "meta" }, el("strong", {}, from), " ", el("time", { datetime: new Date(msg.ts).toISOString() }, clock(msg.ts))),
      el("p", { class: "text" }, m.text.slice(0, 500))));
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(item);
  while (list.children.length > 300) list.firstChild.remove();
  if (atBottom || from === me) list.scrollTop = list.scrollHeight;
  count += 1;
  $("count").textContent = `${count} message${count === 1 ? "" : "s"}`;
}

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  me = $("name").value.trim().slice(0, 24) || me;
  sessionStorage.setItem("tether.name", me);
  $("send").disabled = true;
  $("error").textContent = "";
  try {
    await client.publish(TOPIC, { from: me, text });
    $("text").value = "";
  } catch (e) {
    $("error").textContent = `Not sent: ${e.reason || e.message}`;
  } finally {
    $("send").disabled = false;
    $("text").focus();
  }
});

client.subscribe(TOPIC, add, {
  history: true,
  onReset: () => {
    $("messages").replaceChildren();
    count = 0;
    $("notice").hidden = false;
    $("notice").textContent = "The gateway restarted and lost the conversation (recovered: false): showing what it has now.";
  },
}).catch((e) => {
  $("error").textContent = `Cannot join the chat: ${e.reason || e.message}`;
});
