// The connection inspector of the home page: one raw WebSocket the user drives, with what the
// browser knows of it and, over tether.inspect.v1, what the gateway reports.
import { $, el } from "/assets/ui.js";

const encoder = new TextEncoder();
const MAX_LOG = 300;

/** Bytes of a message as it travels: UTF-8 for text. */
const byteLength = (data) => typeof data === "string" ? encoder.encode(data).length : data.byteLength;

export function startInspector() {
  let ws = null;
  let inspecting = false;
  let echoExpected = false; // the next data message is the echo an "echo" report announced

  const status = $("status");
  const setState = (state, text) => {
    status.dataset.state = state;
    status.textContent = text;
    $("f-state").textContent = text;
  };
  setState("idle", "not connected");

  const log = (direction, source, what) => {
    const cls = { "→": "out", "←": "in", "•": "sys" }[direction];
    const line = el("li", { class: cls },
      el("span", { class: "dir", "aria-label": { out: "sent", in: "received", sys: "event" }[cls] }, direction),
      el("span", { class: "what" }, what),
      el("span", { class: "src" }, source));
    const list = $("log");
    list.prepend(line);
    while (list.children.length > MAX_LOG) list.lastChild.remove();
  };

  const buttons = ["send-text", "send-binary", "send-ping", "close-browser", "close-server"];
  const enable = (open) => {
    for (const id of buttons) $(id).disabled = !open;
    $("send-ping").disabled = !open || !inspecting;
    $("close-server").disabled = !open || !inspecting;
    $("connect").textContent = open ? "Reconnect" : "Connect";
  };

  const showHeaders = (target, head) => {
    const first = target === "h-request"
      ? `${head.method} ${head.target} ${head.version}`
      : `HTTP/1.1 ${head.status} Switching Protocols`;
    $(target).textContent = [first, ...head.headers.map(([n, v]) => `${n}: ${v}`)].join("\n");
  };

  const preview = (text) => (text.length > 60 ? text.slice(0, 60) + "…" : text);

  function report(msg) {
    switch (msg.type) {
      case "handshake":
        showHeaders("h-request", msg.request);
        showHeaders("h-response", msg.response);
        log("•", "gateway", `handshake from ${msg.peer}: ${msg.request.headers.length} request headers, 101 with ${msg.response.headers.length}`);
        break;
      case "echo": {
        const { received: r, sent: s } = msg;
        log("•", "gateway", `received ${r.opcode} of ${r.length} B; echo goes out as ${s.frames} ${s.opcode} frame, FIN=${s.fin ? 1 : 0}, ${s.compressed ? "compressed (RSV1=1)" : "not compressed (RSV1=0)"}`);
        echoExpected = true;
        break;
      }
      case "ping":
        log("←", "gateway", `ping frame, payload "${msg.payload}" (the browser answers with a pong by itself)`);
        break;
      case "pong":
        log("•", "gateway", `pong frame from the browser, payload "${msg.payload}"` + (msg.rtt_ms !== undefined ? `, round trip ${msg.rtt_ms.toFixed(2)} ms` : ""));
        break;
      case "error":
        log("•", "gateway", "error: " + msg.reason);
        break;
      default:
        log("←", "browser", "text: " + preview(JSON.stringify(msg)));
    }
  }

  function connect() {
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "reconnecting");
    const [path, protocol] = $("endpoint").value.split("|");
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
    const offered = protocol ? [protocol] : [];
    $("f-url").textContent = url;
    $("f-offered").textContent = offered.length ? offered.join(", ") : "none";
    for (const id of ["f-protocol", "f-extensions", "f-close"]) $(id).textContent = "–";
    $("h-request").textContent = $("h-response").textContent = protocol === "tether.inspect.v1"
      ? "waiting for the gateway's report…"
      : "only reported over tether.inspect.v1";
    setState("connecting", "connecting…");
    log("•", "browser", `new WebSocket("${url}"${offered.length ? `, ["${offered.join('", "')}"]` : ""})`);
    const socket = new WebSocket(url, offered);
    socket.binaryType = "arraybuffer";
    ws = socket;
    socket.onopen = () => {
      if (socket !== ws) return;
      inspecting = socket.protocol === "tether.inspect.v1";
      echoExpected = false;
      setState("open", "open");
      $("f-protocol").textContent = socket.protocol || "none";
      $("f-extensions").textContent = socket.extensions || "none";
      log("•", "browser", `open: protocol "${socket.protocol}", extensions "${socket.extensions}"`);
      enable(true);
    };
    socket.onmessage = (event) => {
      if (socket !== ws) return;
      const data = event.data;
      if (inspecting && typeof data === "string" && !echoExpected) {
        try {
          return report(JSON.parse(data));
        } catch {
          /* not a report: show it as a message */
        }
      }
      echoExpected = false;
      const kind = typeof data === "string" ? "text" : "binary";
      const shown = typeof data === "string" ? `"${preview(data)}"` : `[${[...new Uint8Array(data).slice(0, 12)].join(" ")}${data.byteLength > 12 ? " …" : ""}]`;
      log("←", "browser", `${kind} message, ${byteLength(data)} B: ${shown}`);
    };
    socket.onerror = () => {
      if (socket === ws) log("•", "browser", "error (the browser gives no details; a close follows)");
    };
    socket.onclose = (event) => {
      if (socket !== ws) return;
      const reason = event.reason ? `"${event.reason}"` : "no reason";
      $("f-close").textContent = `${event.code} ${event.reason}`.trim() + (event.wasClean ? " (clean)" : " (not clean)");
      $("f-close").dataset.code = event.code;
      $("f-close").dataset.reason = event.reason;
      setState("closed", `closed ${event.code}`);
      log("•", "browser", `close: code ${event.code}, ${reason}, ${event.wasClean ? "clean" : "not clean"}`);
      enable(false);
    };
  }

  $("connect").onclick = connect;
  $("clear-log").onclick = () => { $("log").textContent = ""; };
  $("send-text").onclick = () => {
    const text = $("message").value;
    ws.send(text);
    log("→", "browser", `text message, ${byteLength(text)} B: "${preview(text)}"`);
  };
  $("send-binary").onclick = () => {
    const bytes = encoder.encode($("message").value);
    ws.send(bytes);
    log("→", "browser", `binary message, ${bytes.length} B`);
  };
  $("send-ping").onclick = () => {
    ws.send(JSON.stringify({ inspect: "ping" }));
    log("→", "browser", "asks the gateway to send a ping frame");
  };
  $("close-browser").onclick = () => {
    const code = Number($("close-code").value);
    const reason = $("close-reason").value;
    try {
      ws.close(code, reason);
      log("→", "browser", `close(${code}, "${reason}")`);
    } catch (e) {
      // Browsers refuse codes other than 1000 and 3000-4999, and reasons over 123 bytes.
      log("•", "browser", `close refused: ${e.message}`);
    }
  };
  $("close-server").onclick = () => {
    const code = Number($("close-code").value);
    const reason = $("close-reason").value;
    ws.send(JSON.stringify({ inspect: "close", code, reason }));
    log("→", "browser", `asks the gateway to close with ${code} "${reason}"`);
  };
  connect();
}
