// What every built-in page shares: element helpers and the connection status pill.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/**
 * A new element: `el("td", { class: "num" }, "12.5")`. Children are nodes or text; text is
 * never parsed as markup, so published payloads cannot inject any.
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** An SVG element with attributes. */
export function svg(tag, attributes = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

const LABELS = {
  idle: "idle",
  connecting: "connecting…",
  open: "live",
  reconnecting: "reconnecting…",
  closed: "closed",
};

/** Shows `client`'s connection state in the header's status pill (#status). */
export function bindStatus(client) {
  const pill = $("status");
  const show = (detail) => {
    pill.dataset.state = detail.state;
    let text = LABELS[detail.state] || detail.state;
    if (detail.state === "reconnecting" && detail.delay !== undefined) {
      text = `reconnecting in ${(detail.delay / 1000).toFixed(1)} s`;
    }
    if (detail.state === "closed" && detail.code) text = `closed (${detail.code})`;
    pill.textContent = text;
    pill.title = detail.reason ? `last close: ${detail.code} ${detail.reason}` : "";
  };
  client.addEventListener("state", (e) => show(e.detail));
  show({ state: client.state });
}

/** A time of day, hh:mm:ss. */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** A stable color for a name (chat authors, game players): hue from the name's hash. */
export function colorFor(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 62% 42%)`;
}

/** This browser's player name, remembered per tab; `?name=` wins. */
export function playerName() {
  const fromUrl = new URLSearchParams(location.search).get("name");
  if (fromUrl) sessionStorage.setItem("tether.name", fromUrl.slice(0, 24));
  let name = sessionStorage.getItem("tether.name");
  if (!name) {
    const animals = ["otter", "lynx", "heron", "panda", "koala", "falcon", "gecko", "orca"];
    name = animals[Math.floor(Math.random() * animals.length)] + "-" + Math.floor(100 + Math.random() * 900);
    sessionStorage.setItem("tether.name", name);
  }
  return name;
}
