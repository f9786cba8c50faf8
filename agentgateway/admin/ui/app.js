// agentgateway admin UI: one module, no dependencies, no build. Every text that comes from the
// config, a route or an upstream (tool descriptions, model output, agent cards) is put in the page
// as text (h() below), never as HTML. Calls go to this origin only (/ui/api/...); state-changing
// ones carry the admin plane's marker header.

const API = "/ui/api/";
const MARKER = { "x-agentgateway-admin": "1" };
const app = document.getElementById("app");
let timers = [];
let pageCleanups = []; // run when the page changes (open streams are closed)
let pageToken = 0;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v; // through the CSSOM: the CSP allows no style attribute
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const svgNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

async function getJSON(path) {
  const r = await fetch(API + path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

async function postJSON(path, body) {
  const r = await fetch(API + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...MARKER },
    body: JSON.stringify(body || {}),
  });
  let data = {};
  try { data = await r.json(); } catch (e) { data = { error: `HTTP ${r.status}` }; }
  return { status: r.status, data };
}

function every(ms, fn) {
  fn();
  timers.push(setInterval(fn, ms));
}

function chips(names, cls) {
  return (names || []).map((n) => h("span", { class: "chip " + (cls || "") }, n));
}

// ------------------------------------------------------------------ playground calls

// A request to a route, through the admin plane. Returns {status, headers, events} where events
// is an async iterator over JSON messages (a JSON body gives one, an SSE body one per event).
async function routeCall(route, { method = "POST", path = "", headers = {}, body, signal } = {}) {
  if (body !== undefined && !headers["content-type"]) headers = { ...headers, "content-type": "application/json" };
  const r = await fetch(API + "call", {
    signal,
    method: "POST",
    headers: { "content-type": "application/json", ...MARKER },
    body: JSON.stringify({ route, method, path, headers, body: body === undefined ? null : JSON.stringify(body) }),
  });
  const type = r.headers.get("x-upstream-content-type") || r.headers.get("content-type") || "";
  const upstream = {};
  for (const name of ["mcp-session-id", "mcp-protocol-version", "www-authenticate"]) {
    const v = r.headers.get("x-upstream-" + name);
    if (v !== null) upstream[name] = v;
  }
  return { status: r.status, type, headers: upstream, response: r, events: () => readEvents(r, type) };
}

const MAX_EVENT = 4 * 1024 * 1024; // characters of one server-sent event

async function* readEvents(response, type) {
  if (!response.body) return;
  if (!type.startsWith("text/event-stream")) {
    const text = await response.text();
    if (!text.trim()) return;
    try { yield JSON.parse(text); } catch (e) { yield { _text: text }; }
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data = [];
  let size = 0; // of the event being read: one over MAX_EVENT is dropped, not held
  let skipping = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    if (buffer.length > MAX_EVENT && buffer.indexOf("\n") < 0) {
      buffer = "";
      skipping = true; // (a line without an end: dropped up to its end)
    }
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, "");
      buffer = buffer.slice(nl + 1);
      if (line === "") {
        if (skipping) yield { _text: `(an event over ${MAX_EVENT} characters was dropped)` };
        else if (data.length) {
          const text = data.join("\n");
          if (text === "[DONE]") { data = []; size = 0; continue; }
          try { yield JSON.parse(text); } catch (e) { yield { _text: text }; }
        }
        data = []; size = 0; skipping = false;
      } else if (line.startsWith("data:") && !skipping) {
        size += line.length;
        if (size > MAX_EVENT) { data = []; skipping = true; }
        else data.push(line.slice(5).replace(/^ /, ""));
      }
    }
  }
  if (data.length) {
    try { yield JSON.parse(data.join("\n")); } catch (e) { /* a cut event */ }
  }
}

// ------------------------------------------------------------------ overview

let overviewSelection = null;

async function overview(token) {
  const root = h("div", {}, h("h1", {}, "Overview"));
  const summary = h("div", { class: "card", id: "summary" }, "loading…");
  const picture = h("div", { id: "picture" });
  const detail = h("div", { class: "card detail", id: "detail" }, h("span", { class: "muted" }, "Select a listener, route or backend."));
  const workers = h("div", { class: "card", id: "workers" });
  root.append(summary, h("div", { class: "row" }, h("div", { class: "grow" }, picture), h("div", { class: "side" }, detail, workers)));
  app.replaceChildren(root);
  let lastShape = "";
  every(3000, async () => {
    let data;
    try { data = await getJSON("overview"); } catch (e) { summary.replaceChildren(h("span", { class: "bad" }, String(e))); return; }
    if (token !== pageToken) return;
    renderSummary(summary, data);
    const shape = JSON.stringify(data.topology);
    if (shape !== lastShape) {
      lastShape = shape;
      renderPicture(picture, detail, data.topology);
    }
    renderWorkers(workers, data.workers || []);
  });
}

function renderSummary(el, data) {
  const st = data.status || {};
  const state = st.lastError
    ? h("span", { class: "bad" }, "last edit rejected: ", h("code", {}, st.lastError), " (the previous config keeps serving)")
    : h("span", { class: "ok" }, "serving the current config");
  el.replaceChildren(
    h("div", {}, "Config ", h("code", {}, st.source), `, generation ${st.generation}, ${st.workers} worker(s) `,
      st.ready ? h("span", { class: "ok" }, "ready") : h("span", { class: "bad" }, "not ready"), " — ", state),
    h("div", { class: "muted" }, "Planes: ", Object.entries(data.planes || {}).map(([k, v]) => `${k} ${v || "off"}`).join(" · "),
      data.topology.frontendPolicies.length ? " · frontend policies: " : "", chips(data.topology.frontendPolicies)),
  );
  const health = document.getElementById("health");
  if (health) health.replaceChildren(st.ready ? h("span", { class: "ok" }, "● ready") : h("span", { class: "bad" }, "● not ready"));
}

function renderPicture(el, detail, topo) {
  el.replaceChildren();
  if (!topo.binds.length) el.append(h("div", { class: "card muted" }, "No binds configured."));
  for (const bind of topo.binds) {
    const box = h("div", { class: "bind", "data-port": bind.port },
      h("div", { class: "title" }, `Port ${bind.port} `, h("span", { class: "muted" }, `(${bind.source})`)));
    const cols = [h("div", { class: "col" }), h("div", { class: "col" }), h("div", { class: "col" })];
    const links = [];
    for (const listener of bind.listeners) {
      const lnode = h("div", { class: "node listener" },
        h("div", { class: "name" }, listener.name),
        h("div", { class: "sub" }, `${listener.protocol} · ${listener.hostname || "any host"}`), chips(listener.policies));
      lnode.addEventListener("click", () => select(lnode, detail, listenerDetail(bind, listener)));
      cols[0].append(lnode);
      for (const route of listener.routes) {
        const rnode = h("div", { class: "node route", "data-route": route.name },
          h("div", { class: "name" }, route.name, " ", h("span", { class: "chip kind-" + route.kind }, route.kind)),
          h("div", { class: "sub" }, route.matches.join(" | ")), chips(route.policies));
        rnode.addEventListener("click", () => select(rnode, detail, routeDetail(route)));
        cols[1].append(rnode);
        links.push([lnode, rnode]);
        for (const backend of route.backends) {
          const bnode = h("div", { class: "node backend" },
            h("div", { class: "name" }, backend.label || backend.kind),
            h("div", { class: "sub" }, `${backend.kind} · weight ${backend.weight}`,
              backend.targets ? ` · ${backend.targets.length} target(s)` : "",
              backend.models && backend.models.length ? ` · ${backend.models.join(", ")}` : ""),
            chips(backend.policies),
            (backend.targets || []).map((t) => h("div", { class: "sub", "data-target": t.name }, `↳ ${t.name} (${t.kind}) `, h("span", { class: "target-state" }))));
          bnode.addEventListener("click", () => select(bnode, detail, backendDetail(route, backend)));
          cols[2].append(bnode);
          links.push([rnode, bnode]);
        }
      }
    }
    const svg = s("svg", { class: "links" });
    box.append(svg, ...cols);
    el.append(box);
    requestAnimationFrame(() => drawLinks(box, svg, links));
  }
}

function drawLinks(box, svg, links) {
  const base = box.getBoundingClientRect();
  svg.replaceChildren();
  for (const [a, b] of links) {
    const ra = a.getBoundingClientRect(), rb = b.getBoundingClientRect();
    const x1 = ra.right - base.left, y1 = ra.top + ra.height / 2 - base.top;
    const x2 = rb.left - base.left, y2 = rb.top + rb.height / 2 - base.top;
    const mx = (x1 + x2) / 2;
    svg.append(s("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
  }
}

function select(node, detail, content) {
  document.querySelectorAll(".node.selected").forEach((n) => n.classList.remove("selected"));
  node.classList.add("selected");
  detail.replaceChildren(content);
}

function listenerDetail(bind, l) {
  return h("div", {}, h("h3", {}, `Listener ${l.name}`),
    h("div", {}, `Port ${bind.port}, ${l.protocol}, host ${l.hostname || "any"}`),
    h("div", {}, `${l.routes.length} route(s)`), l.policies.length ? h("div", {}, "Policies: ", chips(l.policies)) : "");
}

function routeDetail(route) {
  const play = { mcp: "#mcp", llm: "#llm", a2a: "#a2a" }[route.kind];
  return h("div", {}, h("h3", {}, `Route ${route.name}`),
    h("div", { class: "muted" }, route.id),
    h("div", {}, "Matches: ", route.matches.join(" | ")),
    route.hostnames.length ? h("div", {}, "Hostnames: ", route.hostnames.join(", ")) : "",
    h("div", {}, "Policies: ", route.policies.length ? chips(route.policies) : h("span", { class: "muted" }, "none")),
    h("div", {}, "Backends: ", route.backends.map((b) => b.label || b.kind).join(", ") || "none"),
    play && route.call ? h("p", {}, h("a", { href: `${play}?route=${encodeURIComponent(route.id)}` }, `Try it in the ${route.kind.toUpperCase()} playground →`)) : "");
}

function backendDetail(route, b) {
  return h("div", {}, h("h3", {}, b.label || b.kind),
    h("div", {}, `Kind ${b.kind}, weight ${b.weight}, route ${route.name}`),
    b.policies.length ? h("div", {}, "Policies: ", chips(b.policies)) : "",
    b.models && b.models.length ? h("div", {}, "Models: ", b.models.join(", ")) : "",
    b.targets ? h("table", {}, h("tr", {}, h("th", {}, "target"), h("th", {}, "kind"), h("th", {}, "where")),
      b.targets.map((t) => h("tr", {}, h("td", {}, t.name), h("td", {}, t.kind), h("td", {}, h("code", {}, t.where))))) : "");
}

function renderWorkers(el, workers) {
  const rows = workers.map((w) => h("tr", {}, h("td", {}, `#${w.index}`), h("td", {}, w.pid ?? "?"),
    h("td", {}, w.connections ?? "?"), h("td", { class: "sessions" }, w.mcpSessions ?? "?"),
    h("td", {}, Object.values(w.mcp || {}).reduce((n, m) => n + m.stdioProcesses, 0))));
  const targets = Object.create(null); // keyed by target names: "constructor" is one of them, not Object's
  for (const w of workers) for (const svc of Object.values(w.mcp || {})) for (const [name, t] of Object.entries(svc.targets)) {
    const e = targets[name] || (targets[name] = { open: 0, closed: 0, kind: t.kind });
    e.open += t.open; e.closed += t.closed;
  }
  document.querySelectorAll("[data-target]").forEach((n) => {
    const t = targets[n.getAttribute("data-target")];
    const span = n.querySelector(".target-state");
    if (span) span.replaceChildren(t ? (t.open ? h("span", { class: "chip ok" }, `${t.open} connected`) : h("span", { class: "chip bad" }, "not connected")) : h("span", { class: "chip" }, "no session"));
  });
  const endpoints = workers.flatMap((w) => (w.endpoints || []).map((e) => ({ ...e, worker: w.index })));
  el.replaceChildren(h("h3", {}, "Workers"),
    h("table", {}, h("tr", {}, h("th", {}, "worker"), h("th", {}, "pid"), h("th", { title: "open client connections" }, "conns"), h("th", { title: "MCP sessions" }, "MCP sessions"), h("th", { title: "stdio MCP server processes" }, "stdio")), rows),
    h("h3", {}, "Upstream endpoints (passive health)"),
    endpoints.length ? h("table", {}, endpoints.map((e) => h("tr", {}, h("td", {}, e.endpoint), h("td", {}, `worker #${e.worker}`),
      h("td", {}, e.ejected ? h("span", { class: "chip bad" }, "ejected") : h("span", { class: "chip ok" }, "healthy")), h("td", {}, `score ${e.score}`))))
      : h("div", { class: "muted" }, "No backend has a health policy (outlier detection)."),
    Object.keys(targets).length ? h("div", {}, h("h3", {}, "MCP targets"), h("table", {}, Object.entries(targets).map(([n, t]) =>
      h("tr", {}, h("td", {}, n), h("td", {}, t.kind), h("td", {}, `${t.open} connected`), h("td", {}, t.closed ? h("span", { class: "bad" }, `${t.closed} failed or closed`) : ""))))) : "");
}

// ------------------------------------------------------------------ traffic

const COLORS = ["--c0", "--c1", "--c2", "--c3", "--c4", "--c5", "--c6", "--c7"].map((v) => getComputedStyle(document.documentElement).getPropertyValue(v).trim() || "#3056d3");

async function traffic(token) {
  const grid = h("div", { class: "charts" });
  const latencyRoute = h("select", { id: "latency-route" });
  app.replaceChildren(h("h1", {}, "Traffic ", h("span", { class: "muted" }, "(the last 15 minutes at most, sampled every 2 s from the gateway's own metrics)")), grid);
  every(2000, async () => {
    let data;
    try { data = await getJSON("traffic?window=900"); } catch (e) { return; }
    if (token !== pageToken) return;
    const cards = [];
    for (const [name, chart] of Object.entries(data.charts)) {
      if (name === "latency") {
        const routes = Object.keys(chart.routes);
        const chosen = routes.includes(latencyRoute.value) ? latencyRoute.value : (routes.find((r) => r === "(all routes)") || routes[0]);
        latencyRoute.replaceChildren(...routes.map((r) => h("option", { value: r, selected: r === chosen }, r)));
        latencyRoute.value = chosen || "";
        const series = chosen !== undefined ? chart.routes[chosen] : {};
        cards.push(chartCard(name, chart.title, chart.unit, data.times, series, latencyRoute));
      } else {
        cards.push(chartCard(name, chart.title, chart.unit, data.times, chart.series));
      }
    }
    const focused = document.activeElement === latencyRoute;
    grid.replaceChildren(...cards);
    if (focused) latencyRoute.focus();
  });
  latencyRoute.addEventListener("change", () => { /* next refresh draws it */ });
}

function chartCard(name, title, unit, times, series, control) {
  const W = 560, H = 180, L = 44, B = 20, T = 8, R = 8;
  // The last 15 minutes, or less while the gateway has not run that long.
  const now = Date.now() / 1000;
  const span = Math.min(900, Math.max(60, times.length ? now - times[0] + 2 : 60));
  const keys = Object.keys(series || {});
  let max = 0;
  for (const k of keys) for (const v of series[k]) if (v !== null && v > max) max = v;
  const top = max > 0 ? niceMax(max) : 1;
  const x = (t) => L + (W - L - R) * (1 - (now - t) / span);
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", "data-max": max, "data-series": keys.join("|") },
    s("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
    s("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
    s("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, fmt(top)),
    s("text", { x: L - 4, y: H - B, "text-anchor": "end" }, "0"),
    [-1, -2 / 3, -1 / 3, 0].map((f) => s("text", { x: x(now + f * span), y: H - 6, "text-anchor": f === -1 ? "start" : f === 0 ? "end" : "middle" }, f === 0 ? "now" : ago(-f * span))));
  keys.forEach((k, i) => {
    const points = [];
    series[k].forEach((v, j) => { if (v !== null && times[j] >= now - span) points.push(`${x(times[j]).toFixed(1)},${y(v).toFixed(1)}`); });
    if (points.length === 1) points.push(points[0].replace(/^[^,]+/, (px) => String(Number(px) + 2)));
    svg.append(s("polyline", { points: points.join(" "), stroke: COLORS[i % COLORS.length], "data-key": k }));
  });
  const last = (k) => { const v = series[k].filter((x) => x !== null); return v.length ? v[v.length - 1] : 0; };
  return h("div", { class: "card chart", "data-chart": name },
    h("div", { class: "row" }, h("h3", { class: "grow" }, title), control || ""),
    keys.length ? svg : h("div", { class: "muted", style: "height:180px" }, "No traffic in this window."),
    h("div", { class: "legend" }, keys.map((k, i) => h("span", { "data-key": k }, h("i", { style: `background:${COLORS[i % COLORS.length]}` }), `${k} `, h("span", { class: "muted" }, `${fmt(last(k))} ${unit}`)))));
}

function ago(seconds) {
  return seconds >= 90 ? `-${Math.round(seconds / 60)}m` : `-${Math.round(seconds)}s`;
}

function niceMax(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 100) return v.toFixed(0);
  if (v >= 1) return v.toFixed(2).replace(/\.?0+$/, "");
  return v.toPrecision(2).replace(/\.?0+$/, "") || "0";
}

// ------------------------------------------------------------------ config editor

async function config(token) {
  const data = await getJSON("config");
  if (token !== pageToken) return;
  let base = data.base;
  const gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
  const text = h("textarea", { id: "config-text", spellcheck: "false", wrap: "off", readonly: !data.editable });
  text.value = data.text;
  const errors = h("ul", { class: "errors", id: "config-errors" });
  const result = h("div", { id: "config-result" });
  const diff = h("pre", { class: "diff", id: "config-diff" });
  const validateBtn = h("button", { id: "validate" }, "Validate");
  const applyBtn = h("button", { class: "primary", id: "apply", disabled: !data.editable }, "Apply");
  const rollbackBtn = h("button", { id: "rollback", disabled: !data.editable || !data.history.length }, "Roll back");
  const history = h("div", { class: "muted", id: "config-history" });
  let errorLines = new Set();

  function renderGutter() {
    const n = text.value.split("\n").length;
    const spans = [];
    for (let i = 1; i <= n; i++) spans.push(h("span", { class: errorLines.has(i) ? "error" : "", "data-line": i }, i));
    gutter.replaceChildren(...spans);
    gutter.scrollTop = text.scrollTop;
  }
  function renderHistory(items) {
    rollbackBtn.disabled = !data.editable || !items.length;
    history.replaceChildren(items.length ? `Previous versions kept: ${items.length} (last: ${new Date(items[0].at * 1000).toLocaleTimeString()})` : "No previous version yet.");
  }
  function showErrors(list) {
    errorLines = new Set(list.map((e) => e.line).filter(Boolean));
    errors.replaceChildren(...list.map((e) => h("li", { "data-line": e.line, onclick: () => goToLine(text, e.line) }, `line ${e.line}: ${e.message}`)));
    renderGutter();
  }
  function showDiff(d) {
    diff.replaceChildren(...(d || "").split("\n").filter((l) => l).map((l) =>
      h("span", { class: l.startsWith("@@") ? "hunk" : l.startsWith("+") && !l.startsWith("+++") ? "add" : l.startsWith("-") && !l.startsWith("---") ? "del" : "" }, l + "\n")));
    if (!d) diff.replaceChildren(h("span", { class: "muted" }, "No change."));
  }
  async function validate() {
    const { status, data: v } = await postJSON("config/validate", { text: text.value });
    if (status !== 200) { result.replaceChildren(h("span", { class: "bad" }, `Not validated: ${v.error}`)); return false; }
    showErrors(v.errors || []);
    showDiff(v.diff);
    result.replaceChildren(v.valid ? h("span", { class: "ok" }, "Valid.") : h("span", { class: "bad" }, `${v.errors.length} problem(s).`));
    return v.valid;
  }
  text.addEventListener("input", () => { errorLines = new Set(); renderGutter(); });
  text.addEventListener("scroll", () => { gutter.scrollTop = text.scrollTop; });
  validateBtn.addEventListener("click", validate);
  applyBtn.addEventListener("click", async () => {
    applyBtn.disabled = true;
    const { status, data: r } = await postJSON("config/apply", { text: text.value, base });
    applyBtn.disabled = false;
    if (status === 422) { showErrors(r.errors || []); result.replaceChildren(h("span", { class: "bad" }, "Not applied: the config has problems (nothing was changed).")); return; }
    if (status !== 200) { result.replaceChildren(h("span", { class: "bad" }, `Not applied: ${r.error}`)); return; }
    showErrors([]);
    result.replaceChildren(r.lastError ? h("span", { class: "bad" }, `Written, but the gateway rejected it: ${r.lastError}`)
      : h("span", { class: "ok" }, r.applied ? `Applied: generation ${r.generation} is serving.` : "No change to apply."));
    await reload();
  });
  rollbackBtn.addEventListener("click", async () => {
    if (!confirm("Write the previous version of the config file back?")) return;
    const { status, data: r } = await postJSON("config/rollback", { base });
    result.replaceChildren(status === 200 ? h("span", { class: "ok" }, `Rolled back: generation ${r.generation} is serving.`) : h("span", { class: "bad" }, `Not rolled back: ${r.error}`));
    await reload();
  });
  async function reload() {
    const fresh = await getJSON("config");
    base = fresh.base;
    text.value = fresh.text;
    renderHistory(fresh.history);
    showDiff("");
    renderGutter();
  }
  app.replaceChildren(
    h("h1", {}, "Config"),
    h("div", { class: "card" },
      data.editable ? h("div", {}, "Editing ", h("code", {}, data.file), ". Secrets are shown as ", h("code", {}, "<redacted>"),
        ": leave them as they are to keep them, or type a new value. Apply writes the file and the gateway reloads it.")
        : h("div", { class: "warn", id: "read-only" }, "Read-only: ", data.readOnlyReason, "."),
      h("div", { class: "row", style: "margin:.6rem 0" }, validateBtn, applyBtn, rollbackBtn, result), history),
    h("div", { class: "row" },
      h("div", { class: "grow" }, h("div", { class: "editor" }, gutter, text), errors),
      h("div", { class: "grow" }, h("h3", {}, "Diff against the running config"), diff)));
  renderGutter();
  renderHistory(data.history);
  showDiff("");
}

function goToLine(textarea, line) {
  const lines = textarea.value.split("\n");
  let start = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
  textarea.focus();
  textarea.setSelectionRange(start, start + (lines[line - 1] || "").length);
  textarea.scrollTop = Math.max(0, (line - 5) * 18);
}

// ------------------------------------------------------------------ route pickers

async function routesOf(kind) {
  const data = await getJSON("overview");
  const out = [];
  for (const b of data.topology.binds) for (const l of b.listeners) for (const r of l.routes) if (r.kind === kind && r.call) out.push(r);
  return out;
}

function routePicker(routes, id) {
  const wanted = new URLSearchParams(location.hash.split("?")[1] || "").get("route");
  const sel = h("select", { id }, routes.map((r) => h("option", { value: r.id, selected: r.id === wanted }, `${r.name} (port ${r.call.port}${r.call.base || "/"})`)));
  return sel;
}

// What a playground keeps of what an upstream streams: a hostile or runaway one can send events
// for as long as the page is open, so lists keep their newest LOG_LINES entries and each entry
// shows at most EVENT_CHARS characters (the page's memory stays bounded however long it runs).
const LOG_LINES = 500;
const EVENT_CHARS = 2000;
const ANSWER_CHARS = 200000; // an LLM reply or an A2A answer shown (and kept in the chat)

function clip(text, limit = EVENT_CHARS) {
  text = String(text);
  return text.length > limit ? `${text.slice(0, limit)} … (${text.length - limit} more characters not shown)` : text;
}

function appendCapped(list, el) {
  list.append(el);
  while (list.childElementCount > LOG_LINES) list.firstElementChild.remove();
}

function logLine(log, cls, ...parts) {
  appendCapped(log, h("div", { class: cls }, ...parts.map((p) => (p instanceof Node ? p : clip(p)))));
  log.scrollTop = log.scrollHeight;
}

// ------------------------------------------------------------------ MCP playground

const MODERN = "2026-07-28";
const LEGACY = "2025-06-18";

function headerName(value) {
  return /^[\x20-\x7e]*$/.test(value) ? value : "=?base64?" + btoa(String.fromCharCode(...new TextEncoder().encode(value))) + "?=";
}

async function mcp(token) {
  const routes = await routesOf("mcp");
  if (token !== pageToken) return;
  const picker = routePicker(routes, "mcp-route");
  const era = h("select", { id: "mcp-era" }, h("option", { value: "legacy" }, `legacy (initialize, ${LEGACY})`), h("option", { value: "modern" }, `${MODERN} (stateless)`));
  const bearer = h("input", { id: "mcp-token", type: "password", placeholder: "only if the route asks for one", size: 30 });
  const connectBtn = h("button", { class: "primary", id: "mcp-connect" }, "Connect");
  const state = h("span", { id: "mcp-state", class: "muted" }, "not connected");
  const lists = h("div", { id: "mcp-lists" });
  const form = h("div", { id: "mcp-form" });
  const output = h("pre", { id: "mcp-result" });
  const log = h("pre", { class: "log", id: "mcp-log" });
  let session = null;
  let nextId = 1;
  let listener = null; // the AbortController of the session's notification stream
  pageCleanups.push(() => listener && listener.abort());

  async function rpc(method, params, isNotification) {
    const headers = { accept: "application/json, text/event-stream" };
    if (bearer.value) headers.authorization = `Bearer ${bearer.value}`;
    let body;
    if (session.era === "modern") {
      params = { ...(params || {}), _meta: { ...((params || {})._meta || {}), "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {}, "io.modelcontextprotocol/clientInfo": { name: "agentgateway-ui", version: "1" } } };
      headers["mcp-protocol-version"] = MODERN;
      headers["mcp-method"] = method;
      const nameKey = { "tools/call": "name", "prompts/get": "name", "resources/read": "uri" }[method];
      if (nameKey && params[nameKey] !== undefined) headers["mcp-name"] = headerName(String(params[nameKey]));
    } else {
      if (session.id) headers["mcp-session-id"] = session.id;
      if (session.version) headers["mcp-protocol-version"] = session.version;
    }
    const id = isNotification ? undefined : nextId++;
    body = { jsonrpc: "2.0", method, ...(id !== undefined ? { id } : {}), ...(params ? { params } : {}) };
    logLine(log, "", `→ ${method}`);
    const r = await routeCall(session.route, { path: "", headers, body });
    if (r.headers["mcp-session-id"]) session.id = r.headers["mcp-session-id"];
    if (r.status === 401) {
      const challenge = r.headers["www-authenticate"] || "";
      throw new Error(`the route asks for authentication (401${challenge ? ": " + challenge : ""}): enter a bearer token`);
    }
    let answer = null;
    for await (const msg of r.events()) {
      if (msg.id !== undefined && msg.id === id && (msg.result !== undefined || msg.error !== undefined)) answer = msg;
      else if (msg.method) logLine(log, "note", `← ${msg.method} ${JSON.stringify(msg.params || {})}`);
      else if (msg._text) logLine(log, "err", `← ${msg._text.slice(0, 500)}`);
    }
    if (isNotification) return null;
    if (!answer) throw new Error(`no answer to ${method} (HTTP ${r.status})`);
    if (answer.error) throw new Error(`${method}: ${answer.error.message} (${answer.error.code})`);
    return answer.result;
  }

  // Legacy sessions: the GET stream on which the server sends what is not an answer to a call
  // (list changes, log messages, its own requests), shown in the log while the page is open.
  async function listen() {
    if (listener) listener.abort();
    listener = new AbortController();
    const headers = { accept: "text/event-stream", "mcp-session-id": session.id };
    if (session.version) headers["mcp-protocol-version"] = session.version;
    if (bearer.value) headers.authorization = `Bearer ${bearer.value}`;
    try {
      const r = await routeCall(session.route, { method: "GET", headers, signal: listener.signal });
      if (r.status !== 200 || !r.type.startsWith("text/event-stream")) {
        logLine(log, "", `the server offers no notification stream (HTTP ${r.status})`);
        return;
      }
      logLine(log, "", "notification stream open");
      for await (const msg of r.events()) logLine(log, "note", `← ${msg.method || "message"} ${JSON.stringify(msg.params || msg)}`);
    } catch (e) {
      if (e.name !== "AbortError") logLine(log, "err", `notification stream: ${e.message || e}`);
    }
  }

  async function connect() {
    if (listener) listener.abort();
    session = { route: picker.value, era: era.value, id: null, version: null };
    lists.replaceChildren(); form.replaceChildren(); output.replaceChildren();
    try {
      if (session.era === "legacy") {
        const init = await rpc("initialize", { protocolVersion: LEGACY, capabilities: {}, clientInfo: { name: "agentgateway-ui", version: "1" } });
        session.version = init.protocolVersion;
        await rpc("notifications/initialized", undefined, true);
        state.replaceChildren(h("span", { class: "ok" }, `connected: ${init.serverInfo?.name || "server"} (${init.protocolVersion}${session.id ? ", session " + session.id.slice(0, 8) + "…" : ""})`));
        if (session.id) listen();
      } else {
        const d = await rpc("server/discover", {});
        state.replaceChildren(h("span", { class: "ok" }, `connected (${MODERN}): versions ${(d.supportedVersions || []).join(", ")}`));
      }
      await refreshLists();
    } catch (e) {
      state.replaceChildren(h("span", { class: "bad" }, String(e.message || e)));
      session = null;
    }
  }

  async function refreshLists() {
    const [tools, prompts, resources] = await Promise.all([
      rpc("tools/list", {}).catch((e) => ({ error: e })),
      rpc("prompts/list", {}).catch((e) => ({ error: e })),
      rpc("resources/list", {}).catch((e) => ({ error: e })),
    ]);
    lists.replaceChildren(
      h("h3", {}, "Tools"), h("div", { class: "list", id: "mcp-tools" }, (tools.tools || []).map((t) => h("button", { "data-tool": t.name, title: t.description || "", onclick: () => toolForm(t) }, t.name)), tools.error ? h("span", { class: "muted" }, String(tools.error.message)) : ""),
      h("h3", {}, "Prompts"), h("div", { class: "list" }, (prompts.prompts || []).map((p) => h("button", { title: p.description || "", onclick: () => promptForm(p) }, p.name)), prompts.error ? h("span", { class: "muted" }, String(prompts.error.message)) : ""),
      h("h3", {}, "Resources"), h("div", { class: "list" }, (resources.resources || []).map((r) => h("button", { title: r.uri, onclick: () => show(rpc("resources/read", { uri: r.uri })) }, r.name || r.uri)), resources.error ? h("span", { class: "muted" }, String(resources.error.message)) : ""));
  }

  async function show(promise) {
    output.replaceChildren(h("span", { class: "muted" }, "…"));
    try {
      const result = await promise;
      const texts = (result.content || result.messages?.map((m) => m.content) || result.contents || []).flat().map((c) => c.text).filter((t) => typeof t === "string");
      output.replaceChildren(...(texts.length ? [h("div", { id: "mcp-text", class: result.isError ? "bad" : "" }, texts.join("\n")), "\n"] : []), JSON.stringify(result, null, 2));
    } catch (e) {
      output.replaceChildren(h("span", { class: "bad" }, String(e.message || e)));
    }
  }

  function toolForm(tool) {
    const schema = tool.inputSchema || {};
    const fields = schemaFields(schema);
    const progress = h("input", { type: "checkbox", id: "mcp-progress" });
    form.replaceChildren(h("div", { class: "card" }, h("h3", {}, `Call ${tool.name}`), h("div", { class: "muted" }, tool.description || ""),
      fields.map((f) => f.el), h("label", {}, progress, " ask for progress notifications"),
      h("button", { class: "primary", id: "mcp-call", onclick: () => {
        let args;
        try { args = collect(fields); } catch (e) { output.replaceChildren(h("span", { class: "bad" }, e.message)); return; }
        const params = { name: tool.name, arguments: args };
        if (progress.checked) params._meta = { progressToken: `ui-${Date.now()}` };
        show(rpc("tools/call", params));
      } }, "Call")));
  }

  function promptForm(prompt) {
    const fields = (prompt.arguments || []).map((a) => field(a.name, { type: "string", description: a.description }, a.required));
    form.replaceChildren(h("div", { class: "card" }, h("h3", {}, `Prompt ${prompt.name}`), fields.map((f) => f.el),
      h("button", { class: "primary", onclick: () => show(rpc("prompts/get", { name: prompt.name, arguments: collect(fields) })) }, "Get")));
  }

  connectBtn.addEventListener("click", connect);
  app.replaceChildren(h("h1", {}, "MCP playground"),
    routes.length ? h("div", { class: "card row" }, h("label", {}, h("span", {}, "Route"), picker), h("label", {}, h("span", {}, "Protocol"), era),
      h("label", {}, h("span", {}, "Bearer token"), bearer), h("label", {}, h("span", {}, "\u00a0"), connectBtn), state)
      : h("div", { class: "card muted" }, "The running config has no MCP route."),
    h("div", { class: "row" }, h("div", { class: "grow card" }, lists), h("div", { class: "grow" }, form, h("h3", {}, "Result"), output)),
    h("h3", {}, "Messages and server notifications"), log);
}

// A form field per property of a JSON schema (objects and arrays as JSON text).
function schemaFields(schema) {
  const required = new Set(schema.required || []);
  return Object.entries(schema.properties || {}).map(([name, prop]) => field(name, prop || {}, required.has(name)));
}

function field(name, prop, required) {
  const type = Array.isArray(prop.type) ? prop.type.find((t) => t !== "null") : prop.type;
  let input;
  if (Array.isArray(prop.enum)) input = h("select", {}, required ? "" : h("option", { value: "" }, ""), prop.enum.map((v) => h("option", { value: JSON.stringify(v) }, String(v))));
  else if (type === "boolean") input = h("input", { type: "checkbox" });
  else if (type === "number" || type === "integer") input = h("input", { type: "number", step: type === "integer" ? "1" : "any" });
  else if (type === "object" || type === "array") input = h("textarea", { rows: 3, cols: 40, placeholder: type === "array" ? "[ ]" : "{ }" });
  else input = h("input", { type: "text", size: 40 });
  input.setAttribute("name", name);
  input.setAttribute("data-field", name);
  if (prop.default !== undefined && type !== "boolean") input.value = typeof prop.default === "string" ? prop.default : JSON.stringify(prop.default);
  const el = h("label", {}, h("span", {}, name, required ? " *" : "", prop.description ? ` — ${prop.description}` : ""), input);
  return { name, type, prop, required, input, el };
}

function collect(fields) {
  const out = {};
  for (const f of fields) {
    const raw = f.input.type === "checkbox" ? f.input.checked : f.input.value;
    if (f.input.type !== "checkbox" && raw === "") {
      if (f.required) throw new Error(`${f.name} is required`);
      continue;
    }
    if (f.input.tagName === "SELECT") out[f.name] = JSON.parse(raw);
    else if (f.type === "boolean") out[f.name] = raw;
    else if (f.type === "number" || f.type === "integer") out[f.name] = Number(raw);
    else if (f.type === "object" || f.type === "array") {
      try { out[f.name] = JSON.parse(raw); } catch (e) { throw new Error(`${f.name}: not JSON`); }
    } else out[f.name] = raw;
  }
  return out;
}

// ------------------------------------------------------------------ A2A playground

async function a2a(token) {
  const routes = await routesOf("a2a");
  if (token !== pageToken) return;
  const picker = routePicker(routes, "a2a-route");
  const cardBtn = h("button", { id: "a2a-card-fetch" }, "Fetch agent card");
  const card = h("div", { id: "a2a-card" });
  const input = h("input", { id: "a2a-input", type: "text", size: 50, placeholder: "a message to the agent" });
  const sendBtn = h("button", { class: "primary", id: "a2a-send" }, "Send (stream)");
  const events = h("ol", { class: "events", id: "a2a-events" });
  const answer = h("div", { id: "a2a-answer", class: "card" });
  let agentCard = null;

  async function fetchCard() {
    card.replaceChildren(h("span", { class: "muted" }, "…"));
    let r, c = null;
    // The 1.0 card's path, then the one 0.3 agents serve.
    for (const path of ["/.well-known/agent-card.json", "/.well-known/agent.json"]) {
      r = await routeCall(picker.value, { method: "GET", path, headers: { accept: "application/json" } });
      c = null;
      for await (const m of r.events()) c = m;
      if (r.status === 200 && c && !c._text) break;
    }
    if (r.status !== 200 || !c || c._text) { card.replaceChildren(h("span", { class: "bad" }, `no agent card (HTTP ${r.status})`)); return null; }
    agentCard = c;
    const interfaces = c.supportedInterfaces || (c.url ? [{ url: c.url, protocolBinding: c.preferredTransport || "JSONRPC", protocolVersion: c.protocolVersion }] : []);
    card.replaceChildren(h("div", { class: "card" }, h("h3", { id: "a2a-card-name" }, c.name || "agent"), h("div", {}, c.description || ""),
      h("div", { class: "muted" }, "Skills: ", (c.skills || []).map((sk) => sk.name).join(", ") || "none"),
      h("table", {}, interfaces.map((i) => h("tr", {}, h("td", {}, i.protocolBinding || i.transport), h("td", {}, i.protocolVersion || ""), h("td", {}, h("code", {}, i.url))))),
      h("details", {}, h("summary", {}, "card JSON"), h("pre", {}, JSON.stringify(c, null, 2)))));
    return c;
  }

  async function send() {
    const text = input.value;
    if (!text) return;
    events.replaceChildren();
    answer.replaceChildren(h("span", { class: "muted" }, "…"));
    const c = agentCard || (await fetchCard());
    const v1 = !c || (c.supportedInterfaces || []).some((i) => i.protocolBinding === "JSONRPC" && String(i.protocolVersion).startsWith("1"));
    const messageId = `ui-${Date.now()}`;
    const body = v1
      ? { jsonrpc: "2.0", id: 1, method: "SendStreamingMessage", params: { message: { messageId, role: "ROLE_USER", parts: [{ text }] } } }
      : { jsonrpc: "2.0", id: 1, method: "message/stream", params: { message: { kind: "message", messageId, role: "user", parts: [{ kind: "text", text }] } } };
    const headers = { accept: "text/event-stream", ...(v1 ? { "a2a-version": "1.0" } : {}) };
    const r = await routeCall(picker.value, { path: "/", headers, body });
    const texts = [];
    let answerLength = 0;
    let state = "";
    for await (const m of r.events()) {
      if (m.error) { appendCapped(events, h("li", { class: "bad" }, clip(`error ${m.error.code}: ${m.error.message}`))); continue; }
      const res = m.result || {};
      const [kind, ev] = v1 ? (Object.entries(res)[0] || ["?", {}]) : [res.kind, res];
      const st = ev.status?.state || ev.task?.status?.state;
      if (st) state = st;
      const parts = [...(ev.parts || []), ...(ev.artifact?.parts || []), ...(ev.status?.message?.parts || []), ...((ev.artifacts || []).flatMap((a) => a.parts || []))];
      const found = parts.map((p) => p.text).filter((t) => typeof t === "string");
      if ((kind === "artifactUpdate" || kind === "artifact-update" || kind === "message") && answerLength < ANSWER_CHARS) {
        texts.push(...found);
        answerLength += found.reduce((n, t) => n + t.length, 0);
      }
      appendCapped(events, h("li", { "data-kind": clip(kind, 100) }, clip(`${kind}${st ? " · " + st : ""}${found.length ? " · " + found.join(" ") : ""}`)));
    }
    answer.replaceChildren(h("div", { class: "muted" }, `HTTP ${r.status}${clip(state ? ", task " + state : "", 100)}`), h("div", { id: "a2a-text" }, clip(texts.join("\n"), ANSWER_CHARS)));
  }

  cardBtn.addEventListener("click", fetchCard);
  sendBtn.addEventListener("click", send);
  picker.addEventListener("change", () => { agentCard = null; card.replaceChildren(); });
  app.replaceChildren(h("h1", {}, "A2A playground"),
    routes.length ? h("div", { class: "card row" }, h("label", {}, h("span", {}, "Route"), picker), h("label", {}, h("span", {}, "\u00a0"), cardBtn)) : h("div", { class: "card muted" }, "The running config has no A2A route (a route with the a2a policy)."),
    card, h("div", { class: "card row" }, input, sendBtn), h("div", { class: "row" }, h("div", { class: "grow" }, h("h3", {}, "Answer"), answer), h("div", { class: "grow" }, h("h3", {}, "Stream events"), events)));
}

// ------------------------------------------------------------------ LLM playground

async function llm(token) {
  const routes = await routesOf("llm");
  if (token !== pageToken) return;
  const picker = routePicker(routes, "llm-route");
  const models = h("datalist", { id: "llm-models" });
  const model = h("input", { id: "llm-model", list: "llm-models", placeholder: "model", size: 24 });
  const system = h("input", { id: "llm-system", placeholder: "system prompt (optional)", size: 40 });
  const input = h("textarea", { id: "llm-input", rows: 3, cols: 60, placeholder: "Say something" });
  const sendBtn = h("button", { class: "primary", id: "llm-send" }, "Send");
  const resetBtn = h("button", {}, "New chat");
  const chat = h("div", { class: "chat", id: "llm-chat" });
  const stats = h("div", { class: "stats", id: "llm-stats" });
  let history = [];

  function fillModels() {
    const r = routes.find((x) => x.id === picker.value);
    models.replaceChildren(...((r && r.models) || []).map((m) => h("option", { value: m })));
    if (r && r.models && r.models.length && !r.models.includes(model.value)) model.value = r.models[0];
  }

  async function send() {
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    history.push({ role: "user", content: text });
    chat.append(h("div", { class: "msg user" }, text));
    const out = h("div", { class: "msg assistant" });
    chat.append(out);
    const messages = [...(system.value ? [{ role: "system", content: system.value }] : []), ...history];
    const started = performance.now();
    let first = null, usage = null, reply = "", failure = null;
    sendBtn.disabled = true;
    try {
      const r = await routeCall(picker.value, { path: "/v1/chat/completions", headers: { accept: "text/event-stream" },
        body: { model: model.value, messages, stream: true, stream_options: { include_usage: true } } });
      for await (const m of r.events()) {
        if (m.error) { failure = m.error.message || JSON.stringify(m.error); continue; }
        if (m._text) { failure = m._text; continue; }
        const delta = m.choices?.[0]?.delta?.content;
        if (delta) {
          if (first === null) first = performance.now();
          if (reply.length < ANSWER_CHARS) {
            reply = clip(reply + delta, ANSWER_CHARS);
            out.textContent = reply;
            chat.scrollTop = chat.scrollHeight;
          }
        }
        if (m.usage) usage = m.usage;
      }
      if (r.status !== 200 && !failure) failure = `HTTP ${r.status}`;
    } catch (e) { failure = String(e.message || e); }
    sendBtn.disabled = false;
    const total = performance.now() - started;
    if (failure) out.append(h("div", { class: "bad" }, failure));
    history.push({ role: "assistant", content: reply });
    stats.replaceChildren(
      h("span", { id: "llm-ttft" }, `time to first token: ${first === null ? "–" : Math.round(first - started) + " ms"}`), " · ",
      `total ${Math.round(total)} ms`, " · ",
      h("span", { id: "llm-usage" }, usage ? `tokens: ${usage.prompt_tokens} in, ${usage.completion_tokens} out` : "no usage reported"));
  }

  picker.addEventListener("change", fillModels);
  sendBtn.addEventListener("click", send);
  input.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send(); });
  resetBtn.addEventListener("click", () => { history = []; chat.replaceChildren(); stats.replaceChildren(); });
  app.replaceChildren(h("h1", {}, "LLM playground"),
    routes.length ? h("div", { class: "card row" }, h("label", {}, h("span", {}, "Route"), picker), h("label", {}, h("span", {}, "Model"), model, models), h("label", {}, h("span", {}, "System"), system))
      : h("div", { class: "card muted" }, "The running config has no LLM route."),
    h("div", { class: "card" }, chat), h("div", { class: "row" }, input, h("div", {}, sendBtn, " ", resetBtn)), stats);
  fillModels();
}

// ------------------------------------------------------------------ router

const PAGES = { overview, traffic, config, mcp, a2a, llm };

async function route() {
  for (const t of timers) clearInterval(t);
  timers = [];
  for (const cleanup of pageCleanups) cleanup();
  pageCleanups = [];
  const name = (location.hash.slice(1).split("?")[0]) || "overview";
  const page = PAGES[name] || overview;
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === (PAGES[name] ? name : "overview")));
  const token = ++pageToken;
  document.body.dataset.page = name;
  try {
    await page(token);
  } catch (e) {
    if (token === pageToken) app.replaceChildren(h("div", { class: "card bad" }, String(e.message || e)));
  }
  if (token === pageToken) document.body.dataset.ready = name;
}

window.addEventListener("hashchange", route);
route();
