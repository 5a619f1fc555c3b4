// NER live page: talks to the gateway over /ws (see webui/README.md for the protocol). No build step.
"use strict";

const FIXED_COLORS = { PER: "#FF5E5E", LOC: "#00FFFF", ORG: "#FFFF00" };
// Distinct neon colours for any other type the served model reports, in order of appearance.
const EXTRA_COLORS = ["#FF00FF", "#39FF14", "#FF9F1C", "#B967FF", "#05FFA1", "#FF71CE", "#4D7CFF", "#C6FF00",
                      "#FF3B3B", "#7DF9FF", "#FFD1DC", "#A0A0FF"];
const DEBOUNCE_MS = 300;
const TABLE_LIMIT = 1000;           // rows drawn; "Copy as JSON" always has them all
const LIVE_SHIFT_LIMIT = 20000;     // UTF-16 units: above this, stale highlights are hidden rather than moved per key
const SAMPLES = [
  ["清华", "张三在北京的清华大学读书。"],
  ["emoji", "😀欧阳娜娜从上海飞到乌鲁木齐，参加联合国的会议。"],
  ["mixed", "李四在微软公司（Microsoft）工作，周末去长江边钓鱼，王小明也来了。"],
  ["long ×600", null],
];

const $ = (id) => document.getElementById(id);
const el = {
  text: $("text"), highlights: $("highlights"), legend: $("legend"), tbody: document.querySelector("#entities tbody"),
  total: $("entity-total"), latency: $("latency"), busy: $("busy"), chars: $("char-count"), error: $("error"),
  banner: $("banner"), bannerText: $("banner-text"), retryNow: $("retry-now"), gateway: $("gateway-state"),
  triton: $("triton-state"), copy: $("copy-json"), note: $("table-note"), samples: $("samples"),
  int8: $("model-int8"), fp32: $("model-fp32"), modelInfo: $("model-info"),
};

const state = {
  ws: null, gateway: "connecting", retries: 0, retryTimer: null, retryAt: 0, countdown: null,
  tritonReady: null, models: new Map(), limits: {}, model: "ner",
  nextId: 0, latestId: 0, inflight: null, debounce: null,
  result: null,           // {id, text, model, entities: [... with u16Start/u16End], rtt, latencyMs}
  typeColors: new Map(), extraUsed: 0, paintQueued: false,
};

// ---------------------------------------------------------------------------------------------- colours & types
function colorFor(type) {
  if (FIXED_COLORS[type]) return FIXED_COLORS[type];
  if (!state.typeColors.has(type)) {
    state.typeColors.set(type, EXTRA_COLORS[state.extraUsed % EXTRA_COLORS.length]);
    state.extraUsed += 1;
  }
  return state.typeColors.get(type);
}

function withAlpha(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

function servedTypes() {
  const info = state.models.get(state.model);
  return info && info.entity_types && info.entity_types.length ? info.entity_types : ["PER", "LOC", "ORG"];
}

// ---------------------------------------------------------------------------------------------- offsets
// The server counts Unicode code points; the DOM counts UTF-16 units. One pass maps every code point index.
function codePointToUtf16(text) {
  const map = new Uint32Array(text.length + 1);
  let cp = 0;
  for (let u = 0; u < text.length; cp++) {
    map[cp] = u;
    const c = text.charCodeAt(u);
    u += (c >= 0xd800 && c <= 0xdbff && u + 1 < text.length && (text.charCodeAt(u + 1) & 0xfc00) === 0xdc00) ? 2 : 1;
  }
  map[cp] = text.length;
  return { map, count: cp };
}

function toUtf16(text, entities) {
  const { map, count } = codePointToUtf16(text);
  return entities.map((e) => {
    const ok = Number.isInteger(e.start) && Number.isInteger(e.end) && e.start >= 0 && e.end <= count && e.start < e.end;
    const u16Start = ok ? map[e.start] : 0;
    const u16End = ok ? map[e.end] : 0;
    return { ...e, u16Start, u16End, exact: ok && text.slice(u16Start, u16End) === e.span };
  });
}

function codePointLength(text) {
  let n = 0;
  for (let u = 0; u < text.length; u++, n++) {
    const c = text.charCodeAt(u);
    if (c >= 0xd800 && c <= 0xdbff && (text.charCodeAt(u + 1) & 0xfc00) === 0xdc00) u++;
  }
  return n;
}

// Moves the last answer's highlights over an edit made since: those before the edit stay, those after it shift,
// those it touched go until the next answer.
function shiftMarks(oldText, newText, marks) {
  if (oldText === newText) return marks;
  const max = Math.min(oldText.length, newText.length);
  let p = 0;
  while (p < max && oldText.charCodeAt(p) === newText.charCodeAt(p)) p++;
  let s = 0;
  while (s < max - p && oldText.charCodeAt(oldText.length - 1 - s) === newText.charCodeAt(newText.length - 1 - s)) s++;
  const editEnd = oldText.length - s;
  const delta = newText.length - oldText.length;
  const out = [];
  for (const m of marks) {
    if (m.u16End <= p) out.push(m);
    else if (m.u16Start >= editEnd) out.push({ ...m, u16Start: m.u16Start + delta, u16End: m.u16End + delta });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------- drawing
function paintHighlights() {
  state.paintQueued = false;
  const text = el.text.value;
  const r = state.result;
  el.highlights.classList.remove("stale");
  if (!r || !r.entities.length) {
    el.highlights.textContent = text + "\n";
    syncScroll();
    return;
  }
  if (r.text !== text && text.length > LIVE_SHIFT_LIMIT) {
    el.highlights.classList.add("stale"); // cheap: hide until the answer for this text arrives
    return;
  }
  const marks = shiftMarks(r.text, text, r.entities.filter((e) => e.exact));
  const frag = document.createDocumentFragment();
  let pos = 0;
  for (const m of marks) {
    if (m.u16Start < pos || m.u16End > text.length) continue;
    if (m.u16Start > pos) frag.append(text.slice(pos, m.u16Start));
    const mark = document.createElement("mark");
    const c = colorFor(m.type);
    mark.dataset.type = m.type;
    mark.dataset.start = String(m.start);
    mark.dataset.end = String(m.end);
    mark.style.setProperty("--c", c);
    mark.style.setProperty("--bgc", withAlpha(c, 0.22));
    mark.textContent = text.slice(m.u16Start, m.u16End);
    frag.append(mark);
    pos = m.u16End;
  }
  frag.append(text.slice(pos) + "\n"); // the trailing newline keeps the last (empty) line as tall as the textarea's
  el.highlights.replaceChildren(frag);
  syncScroll();
}

function queuePaint() {
  if (!state.paintQueued) {
    state.paintQueued = true;
    requestAnimationFrame(paintHighlights);
  }
}

function syncScroll() {
  el.highlights.scrollTop = el.text.scrollTop;
  el.highlights.scrollLeft = el.text.scrollLeft;
}

function renderLegend() {
  const counts = new Map();
  for (const t of servedTypes()) counts.set(t, 0);
  const entities = state.result ? state.result.entities : [];
  for (const e of entities) counts.set(e.type, (counts.get(e.type) || 0) + 1);
  const served = new Set(servedTypes());
  const frag = document.createDocumentFragment();
  for (const [type, n] of counts) {
    const li = document.createElement("li");
    li.dataset.type = type;
    li.style.setProperty("--c", colorFor(type));
    const sw = document.createElement("span");
    sw.className = "swatch";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = type;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = String(n);
    li.append(sw, name, count);
    if (!served.has(type)) {
      const extra = document.createElement("span");
      extra.className = "extra";
      extra.textContent = "(not in the model's list)";
      li.append(extra);
    }
    frag.append(li);
  }
  el.legend.replaceChildren(frag);
}

function renderTable() {
  const entities = state.result ? state.result.entities : [];
  const frag = document.createDocumentFragment();
  const shown = Math.min(entities.length, TABLE_LIMIT);
  for (let i = 0; i < shown; i++) {
    const e = entities[i];
    const tr = document.createElement("tr");
    tr.dataset.type = e.type;
    tr.dataset.start = String(e.start);
    tr.dataset.end = String(e.end);
    tr.dataset.score = String(e.score);
    if (!e.exact) {
      tr.className = "mismatch";
      tr.title = "span does not match the text at these offsets";
    }
    tr.style.setProperty("--c", colorFor(e.type));
    const cells = [[String(i + 1), "num"], [e.type, "type"], [e.span, "span"], [String(e.start), "num start"],
                   [String(e.end), "num end"], [Number(e.score).toFixed(4), "num score"]];
    for (const [value, cls] of cells) {
      const td = document.createElement("td");
      td.className = cls;
      td.textContent = value;
      tr.append(td);
    }
    frag.append(tr);
  }
  el.tbody.replaceChildren(frag);
  el.total.textContent = String(entities.length);
  el.note.hidden = entities.length <= TABLE_LIMIT;
  el.note.textContent = entities.length > TABLE_LIMIT
    ? `showing the first ${TABLE_LIMIT} of ${entities.length}; "Copy as JSON" has all of them` : "";
  el.copy.disabled = !state.result;
}

function renderLatency() {
  const r = state.result;
  if (!r) {
    el.latency.textContent = "round trip —";
    el.latency.dataset.ms = "";
    return;
  }
  el.latency.dataset.ms = r.rtt.toFixed(1);
  el.latency.textContent = `round trip ${r.rtt.toFixed(0)} ms · Triton ${Number(r.latencyMs).toFixed(0)} ms · ${r.model}`;
}

function showError(message) {
  el.error.hidden = !message;
  el.error.textContent = message || "";
}

function updateCharCount() {
  const n = codePointLength(el.text.value); // characters as the server counts them (code points)
  const limit = state.limits.max_text_chars;
  el.chars.textContent = `${n.toLocaleString()} characters` + (limit ? ` (limit ${limit.toLocaleString()})` : "");
}

// ---------------------------------------------------------------------------------------------- connection state
function setGateway(status) {
  state.gateway = status;
  document.body.dataset.gateway = status;
  el.gateway.className = "pill " + ({ connected: "ok", connecting: "warn", down: "bad" }[status] || "");
  el.gateway.textContent = { connected: "gateway: connected", connecting: "gateway: connecting…",
                             down: "gateway: down" }[status];
  if (status !== "connected") setTriton(null);
  renderBanner();
}

function setTriton(ready) {
  state.tritonReady = ready;
  document.body.dataset.triton = ready === null ? "unknown" : ready ? "ready" : "down";
  el.triton.className = "pill " + (ready === null ? "" : ready ? "ok" : "bad");
  el.triton.textContent = ready === null ? "Triton: unknown" : ready ? "Triton: ready" : "Triton: down";
  renderBanner();
}

function renderBanner() {
  clearInterval(state.countdown);
  state.countdown = null;
  if (state.gateway === "down") {
    const tick = () => {
      const s = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
      el.bannerText.textContent = `Gateway down: cannot reach ${location.host}. Reconnecting in ${s} s…`;
    };
    tick();
    state.countdown = setInterval(tick, 500);
    el.banner.className = "banner";
    el.retryNow.hidden = false;
    el.banner.hidden = false;
  } else if (state.gateway === "connected" && state.tritonReady === false) {
    el.bannerText.textContent = "Triton down: the gateway is up but the inference server is not ready. " +
                                "Results come back by themselves once it is.";
    el.banner.className = "banner warn";
    el.retryNow.hidden = true;
    el.banner.hidden = false;
  } else {
    el.banner.hidden = true;
  }
}

function applyStatus(msg) {
  state.models = new Map((msg.models || []).map((m) => [m.name, m]));
  state.limits = msg.limits || {};
  for (const [input, name] of [[el.int8, "ner"], [el.fp32, "ner_fp32"]]) {
    input.disabled = !state.models.has(name);
  }
  if (!state.models.has(state.model) && msg.default_model) selectModel(msg.default_model, false);
  describeModel();
  const wasDown = state.tritonReady === false;
  setTriton(Boolean(msg.triton_ready));
  renderLegend();
  updateCharCount();
  if (msg.type === "hello" || (wasDown && msg.triton_ready)) sendNow();
}

// ---------------------------------------------------------------------------------------------- WebSocket
function connect() {
  clearTimeout(state.retryTimer);
  setGateway("connecting");
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (err) {
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  ws.onopen = () => {
    state.retries = 0;
    setGateway("connected");
  };
  ws.onmessage = (ev) => onMessage(ev.data);
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.ws = null;
    state.inflight = null;
    el.busy.hidden = true;
    scheduleReconnect();
  };
  ws.onerror = () => {}; // onclose follows
}

function scheduleReconnect() {
  const cap = Math.min(15000, 500 * 2 ** state.retries); // 0.5 s, 1 s, 2 s … 15 s, with jitter
  const delay = cap / 2 + Math.random() * cap / 2;
  state.retries += 1;
  state.retryAt = Date.now() + delay;
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(connect, delay);
  setGateway("down");
}

function onMessage(data) {
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    return;
  }
  if (msg.type === "hello" || msg.type === "status") {
    applyStatus(msg);
    return;
  }
  if (msg.id === null || msg.id === undefined) {
    if (msg.error) showError(msg.error);
    return;
  }
  const sent = state.inflight;
  if (!sent || msg.id !== state.latestId || msg.id !== sent.id) return; // an answer to an older request: dropped
  state.inflight = null;
  el.busy.hidden = true;
  const rtt = performance.now() - sent.t0;
  if (msg.error) {
    if (msg.code === "busy") { // older requests of this page still in flight: ask again shortly
      setTimeout(() => { if (state.latestId === msg.id && !state.inflight) sendNow(); }, 500);
      return;
    }
    if (msg.code === "triton_unavailable" || msg.code === "model_not_ready") setTriton(false);
    showResult(null); // what is shown must belong to the text shown
    showError(msg.error);
    return;
  }
  if (state.tritonReady === false) setTriton(true);
  showError("");
  state.result = { id: msg.id, text: sent.text, model: msg.model, rtt, latencyMs: msg.latency_ms,
                   entities: toUtf16(sent.text, msg.entities || []) };
  const bad = state.result.entities.filter((e) => !e.exact).length;
  if (bad) showError(`${bad} entit${bad === 1 ? "y's" : "ies'"} offsets do not match the text (marked in the table)`);
  paintHighlights();
  renderLegend();
  renderTable();
  renderLatency();
}

function showResult(result) {
  state.result = result;
  paintHighlights();
  renderLegend();
  renderTable();
  renderLatency();
}

function sendNow() {
  clearTimeout(state.debounce);
  const text = el.text.value;
  const id = ++state.nextId;
  state.latestId = id; // whatever was in flight is now stale
  state.inflight = null;
  if (text === "") {
    el.busy.hidden = true;
    showError("");
    showResult(null);
    return;
  }
  const limit = state.limits.max_text_chars;
  if (limit && text.length > limit && codePointLength(text) > limit) {
    showResult(null);
    showError(`The text has ${codePointLength(text).toLocaleString()} characters; the limit is ${limit.toLocaleString()}.`);
    return;
  }
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return; // sent again on reconnect
  const payload = JSON.stringify({ id, text, model: state.model });
  if (state.limits.max_message_bytes && payload.length * 3 > state.limits.max_message_bytes &&
      new TextEncoder().encode(payload).length > state.limits.max_message_bytes) {
    showResult(null);
    showError(`The text is over the gateway's message limit of ${state.limits.max_message_bytes.toLocaleString()} bytes.`);
    return;
  }
  state.inflight = { id, text, model: state.model, t0: performance.now() };
  el.busy.hidden = false;
  state.ws.send(payload);
}

function scheduleSend() {
  clearTimeout(state.debounce);
  state.debounce = setTimeout(sendNow, DEBOUNCE_MS);
}

function selectModel(name, send = true) {
  state.model = name;
  el.int8.checked = name === "ner";
  el.fp32.checked = name === "ner_fp32";
  if (send) {
    describeModel();
    renderLegend();
    sendNow();
  }
}

function describeModel() {
  for (const t of servedTypes()) colorFor(t); // served types get their colours first, in the model's order
  const info = state.models.get(state.model);
  el.modelInfo.textContent = info
    ? `Model ${info.name} (${info.precision || "?"}): types ${servedTypes().join(", ")}; up to ` +
      `${(info.max_text_chars || state.limits.max_text_chars || 0).toLocaleString()} characters.` +
      (info.model_hash ? ` Model hash ${info.model_hash.slice(0, 19)}…` : "")
    : "";
  el.modelInfo.title = (info && info.model_hash) || "";
}

// ---------------------------------------------------------------------------------------------- wiring
function longSample() {
  const base = SAMPLES.slice(0, 3).map(([, t]) => t).join("");
  const parts = [];
  for (let i = 0; i < 600; i++) parts.push(base);
  return parts.join("\n");
}

function setText(text) {
  el.text.value = text;
  el.text.scrollTop = 0;
  updateCharCount();
  queuePaint();
  sendNow();
  el.text.focus();
}

for (const [label, text] of SAMPLES) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "sample";
  b.textContent = label;
  b.title = text || "a long text of about 30,000 characters";
  b.addEventListener("click", () => setText(text ?? longSample()));
  el.samples.append(b);
}

el.text.addEventListener("input", () => {
  updateCharCount();
  queuePaint();
  scheduleSend();
});
el.text.addEventListener("scroll", syncScroll, { passive: true });
new ResizeObserver(() => queuePaint()).observe(el.text);
el.int8.addEventListener("change", () => el.int8.checked && selectModel("ner"));
el.fp32.addEventListener("change", () => el.fp32.checked && selectModel("ner_fp32"));
el.retryNow.addEventListener("click", () => {
  state.retries = 0;
  connect();
});

el.copy.addEventListener("click", async () => {
  const r = state.result;
  if (!r) return;
  const json = JSON.stringify({
    model: r.model, text: r.text,
    entities: r.entities.map(({ type, start, end, span, score }) => ({ type, start, end, span, score })),
  }, null, 2);
  let ok = false;
  try {
    await navigator.clipboard.writeText(json);
    ok = true;
  } catch {
    const ta = document.createElement("textarea");
    ta.value = json;
    document.body.append(ta);
    ta.select();
    ok = document.execCommand("copy");
    ta.remove();
  }
  el.copy.textContent = ok ? "Copied ✓" : "Copy failed";
  setTimeout(() => { el.copy.textContent = "Copy as JSON"; }, 1500);
});

renderLegend();
renderTable();
updateCharCount();
connect();
