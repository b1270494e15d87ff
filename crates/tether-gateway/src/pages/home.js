// Home: the gateway's routes (from /api/routes) and the connection inspector.
import { $, el } from "/assets/ui.js";
import { startInspector } from "/assets/inspector.js";

async function showRoutes() {
  const response = await fetch("/api/routes");
  if (!response.ok) throw new Error(`/api/routes answered ${response.status}`);
  const info = await response.json();
  $("version").textContent = "tether " + info.version;
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  for (const route of info.websocket) {
    const protocols = route.subprotocols.length ? route.subprotocols.join(", ") : "none";
    $("ws-routes").append(el("tr", {},
      el("td", {}, el("code", {}, scheme + location.host + route.path + (route.prefix ? "/…" : ""))),
      el("td", {}, route.kind),
      el("td", {}, el("code", {}, protocols))));
  }
  for (const page of info.pages) {
    $("page-routes").append(el("tr", {},
      el("td", {}, el("a", { href: page.path }, page.path)), el("td", {}, page.title)));
  }
  if (!info.pages.length) {
    $("page-routes").append(el("tr", {}, el("td", { colspan: 2 }, "a static root replaces the built-in pages")));
  }
  for (const api of info.http) {
    const target = api.methods.includes("GET") && !api.path.includes("{")
      ? el("a", { href: api.path }, api.path) : el("code", {}, api.path);
    $("http-routes").append(el("tr", {},
      el("td", {}, el("span", { class: "tag" }, api.methods.join(", ")), " ", target),
      el("td", {}, api.what)));
  }
  const anonymous = info.anonymous;
  $("anonymous").textContent = anonymous
    ? `Clients without a token may subscribe to ${anonymous.subscribe.join(", ") || "nothing"} and publish to ${anonymous.publish.join(", ") || "nothing"}.`
      + ` Permessage-deflate is ${info.compression ? "offered" : "off"}.`
    : "Clients need a token (Authorization: Bearer, or ?token=).";
}

showRoutes().catch((e) => { $("anonymous").textContent = "Routes unavailable: " + e.message; });
startInspector();
