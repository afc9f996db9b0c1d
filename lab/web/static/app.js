// lab web's page: the lab as `lab graph` draws it, kept live by server-sent events, with the walk of
// `lab trace`, the table of `lab netpol matrix`, the exercise panel and (with --allow-actions) node
// and fault actions. No library: the picture is laid out here, in columns as lab graph's DOT is
// (Services on top, the nodes side by side, the underlay switch below, its hosts at the bottom).
"use strict";

const TOKEN = meta("lab-token");
const ACTIONS = meta("lab-actions") === "on";
const SVGNS = "http://www.w3.org/2000/svg";
const BOX_W = 170, LINE_H = 14, PAD = 5, GAP = 14, PODS_PER_ROW = 2;

let snap = null;        // the last snapshot from the server
let picked = [];        // up to two {target, box} clicked for a trace
let walk = null;        // the last trace's document

function meta(name) { return document.querySelector(`meta[name="${name}"]`).content; }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

async function api(path, body) {
  const opts = {headers: {"X-Lab-Token": TOKEN}};
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const doc = await r.json();
  if (!r.ok) throw new Error(doc.error || `${r.status}`);
  return doc;
}

function say(id, text, error) {
  const p = document.getElementById(id);
  p.textContent = text;
  p.classList.toggle("error", !!error);
}

// --- live ---------------------------------------------------------------------------------------

function connect() {
  const events = new EventSource("/api/events");   // it reconnects by itself after an error
  events.addEventListener("state", (e) => render(JSON.parse(e.data)));
  events.onopen = () => live(true, "live");
  events.onerror = () => live(false, "reconnecting…");
}

function live(on, text) {
  const s = document.getElementById("live");
  s.className = "live " + (on ? "on" : "off");
  s.textContent = text;
}

function render(s) {
  if (s.gone) { live(false, "lab gone: " + s.gone); return; }
  snap = s;
  document.getElementById("title").textContent = s.graph.title;
  document.getElementById("notes").textContent = s.graph.notes.join(" ");
  drawPicture(s.graph);
  if (!document.body.dataset.firstPaint) document.body.dataset.firstPaint = Math.round(performance.now());  // ms since navigation
  fillNodes(s.nodes);
  fillPods(s.pods);
  fillServices(s.services);
  fillFaults(s.faults);
  fillNamespaces(s.pods);
  if (walk) drawWalk(walk);
  document.body.dataset.version = s.version;
}

// --- the picture --------------------------------------------------------------------------------

function size(b) { return {w: BOX_W, h: b.lines.length * LINE_H + 2 * PAD}; }

// Positions of every box and cluster: {id: {x, y, w, h}}.
function layout(g) {
  const pos = {}, frames = [];
  const nodes = g.clusters.filter((c) => c.kind === "node");
  const services = [...g.clusters.filter((c) => c.kind === "ingresses"),     // Ingresses above the Services
                    ...g.clusters.filter((c) => c.kind === "services")];
  const colW = PODS_PER_ROW * (BOX_W + GAP) + GAP;
  const width = Math.max(nodes.length * (colW + GAP) + GAP, 3 * (BOX_W + GAP) + GAP);
  let y = GAP;
  for (const c of services) {                      // Ingresses, Services: wrapped rows above the nodes
    const perRow = Math.max(1, Math.floor((width - 3 * GAP) / (BOX_W + GAP)));
    const top = y, titleH = c.lines.length * LINE_H + PAD;
    y += titleH + PAD;
    let rowH = 0;
    c.boxes.forEach((b, i) => {
      const s = size(b);
      if (i && i % perRow === 0) { y += rowH + GAP; rowH = 0; }
      pos[b.id] = {x: 2 * GAP + (i % perRow) * (BOX_W + GAP), y, ...s};
      rowH = Math.max(rowH, s.h);
    });
    y += rowH + GAP;
    frames.push({c, x: GAP, y: top, w: width - 2 * GAP, h: y - top});
    y += GAP;
  }
  let bottom = y;
  nodes.forEach((c, n) => {                        // each node a column: pods, then its devices
    const x0 = GAP + n * (colW + GAP);
    let cy = y + c.lines.length * LINE_H + 2 * PAD;
    const pods = c.boxes.filter((b) => ["pod", "group", "host-pod"].includes(b.kind));
    const below = ["device", "vtep", "eth0"];        // from the pods down to the wire, as the packet goes
    const infra = c.boxes.filter((b) => !pods.includes(b)).sort((a, b) => below.indexOf(a.kind) - below.indexOf(b.kind));
    let rowH = 0;
    pods.forEach((b, i) => {
      const s = size(b);
      if (i && i % PODS_PER_ROW === 0) { cy += rowH + GAP; rowH = 0; }
      pos[b.id] = {x: x0 + GAP + (i % PODS_PER_ROW) * (BOX_W + GAP), y: cy, ...s};
      rowH = Math.max(rowH, s.h);
    });
    cy += rowH + 2 * GAP;
    for (const b of infra) {
      const s = size(b);
      pos[b.id] = {x: x0 + (colW - BOX_W) / 2, y: cy, ...s};
      cy += s.h + GAP;
    }
    frames.push({c, x: x0, y, w: colW, h: cy - y});
    bottom = Math.max(bottom, cy);
  });
  y = bottom + 3 * GAP;
  const rows = [g.boxes.filter((b) => b.kind === "switch"), g.boxes.filter((b) => b.kind !== "switch")];
  for (const row of rows) {                        // the underlay (and public segment), then the hosts
    let rowH = 0;
    const start = Math.max(GAP, (width - row.length * (BOX_W + GAP)) / 2);
    row.forEach((b, i) => {
      const s = size(b);
      pos[b.id] = {x: start + i * (BOX_W + GAP), y, ...s};
      rowH = Math.max(rowH, s.h);
    });
    if (row.length) y += rowH + 3 * GAP;
  }
  return {pos, frames, width, height: y};
}

function center(r) { return {x: r.x + r.w / 2, y: r.y + r.h / 2}; }

// Where the line from the box's centre toward p leaves the box.
function edge(r, p) {
  const c = center(r), dx = p.x - c.x, dy = p.y - c.y;
  if (!dx && !dy) return c;
  const k = Math.min(dx ? (r.w / 2) / Math.abs(dx) : Infinity, dy ? (r.h / 2) / Math.abs(dy) : Infinity);
  return {x: c.x + dx * k, y: c.y + dy * k};
}

function linkPath(a, b, curved) {
  const ca = center(a), cb = center(b);
  if (!curved) {
    const p = edge(a, cb), q = edge(b, ca);
    return {d: `M${p.x},${p.y} L${q.x},${q.y}`, mid: {x: (p.x + q.x) / 2, y: (p.y + q.y) / 2}};
  }
  const ctl = {x: (ca.x + cb.x) / 2, y: Math.max(ca.y, cb.y) + 60};  // under the nodes, clear of the pods
  const p = edge(a, ctl), q = edge(b, ctl);
  return {d: `M${p.x},${p.y} Q${ctl.x},${ctl.y} ${q.x},${q.y}`, mid: {x: ctl.x, y: (p.y + q.y) / 4 + ctl.y / 2}};
}

function boxGroup(b, r) {
  const pod = b.keys.length === 1 && snap.pods.find((p) => p.key === b.keys[0]);
  const cls = ["box", b.kind];
  if (b.target) cls.push("clickable");
  if (pod && !pod.ready) cls.push("not-ready");
  const g = svg("g", {class: cls.join(" "), "data-id": b.id, "data-keys": b.keys.join(" "), "data-target": b.target});
  g.append(svg("rect", {x: r.x, y: r.y, width: r.w, height: r.h, rx: 4}));
  const text = svg("text", {x: r.x + PAD, y: r.y + PAD + LINE_H - 3});
  b.lines.forEach((line, i) => {
    const t = svg("tspan", {x: r.x + PAD, dy: i ? LINE_H : 0});
    t.textContent = line.length > 27 ? line.slice(0, 26) + "…" : line;
    text.append(t);
  });
  const title = svg("title", {});
  title.textContent = b.lines.join("\n") + (pod ? `\n${pod.ready ? "ready" : "NOT ready"}` : "");
  g.append(text, title);
  if (b.target) g.addEventListener("click", () => pick(b.target, b.id));
  return g;
}

function drawPicture(g) {
  const {pos, frames, width, height} = layout(g);
  const root = document.getElementById("picture");
  root.replaceChildren();
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  root.setAttribute("width", width);
  root.setAttribute("height", height);
  const defs = svg("defs", {});
  const marker = svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
                                orient: "auto-start-reverse"});
  marker.append(svg("path", {d: "M0,0 L10,5 L0,10 z", fill: "#2e7d32"}));
  const walkMarker = marker.cloneNode(true);
  walkMarker.setAttribute("id", "walk-arrow");
  walkMarker.firstChild.setAttribute("fill", "#e67e22");
  defs.append(marker, walkMarker);
  root.append(defs);
  const status = Object.fromEntries(snap.nodes.map((n) => [n.name, n.status]));
  for (const f of frames) {
    const node = f.c.keys[0];
    const cls = ["cluster", f.c.kind];
    if (f.c.kind === "node" && status[node] === "NotReady") cls.push("stopped");
    const frame = svg("g", {class: cls.join(" "), "data-id": f.c.id, "data-node": node || ""});
    frame.append(svg("rect", {x: f.x, y: f.y, width: f.w, height: f.h, rx: 8}));
    const lines = f.c.kind === "node" ? [`${f.c.lines[0]} — ${status[node]}`, ...f.c.lines.slice(1)] : f.c.lines;
    lines.forEach((line, i) => {
      const t = svg("text", {x: f.x + PAD * 2, y: f.y + PAD + LINE_H * (i + 1) - 2, class: i ? "" : "title"});
      t.textContent = line;
      frame.append(t);
    });
    root.append(frame);
  }
  const said = new Set();
  const links = svg("g", {class: "links"});
  for (const l of g.links) {
    const a = pos[l.src], b = pos[l.dst];
    if (!a || !b) continue;
    const curved = l.kind === "tunnel" || l.kind === "bgp";
    const {d, mid} = linkPath(a, b, curved);
    const attrs = {d, class: "link " + l.kind};
    if (l.kind === "endpoint" || l.kind === "route") attrs["marker-end"] = "url(#arrow)";
    links.append(svg("path", attrs));
    if (l.label && !said.has(l.kind + l.label)) {
      said.add(l.kind + l.label);
      const t = svg("text", {x: mid.x + 4, y: mid.y - 4, class: "link-label"});
      t.textContent = l.label;
      links.append(t);
    }
  }
  root.append(links);
  const boxes = [...g.boxes, ...g.clusters.flatMap((c) => c.boxes)];
  for (const b of boxes) root.append(boxGroup(b, pos[b.id]));
  root.append(svg("g", {id: "walk-layer"}));
  root.layout = pos;
  markPicked();
}

// --- the walk -----------------------------------------------------------------------------------

function pick(target, box) {
  if (picked.length === 2) picked = [];
  picked.push({target, box});
  markPicked();
  document.getElementById("trace-src").value = picked[0].target;
  document.getElementById("trace-dst").value = picked.length === 2 ? destination(picked[0], picked[1]) : "";
  if (picked.length === 2) trace(picked[0].target, destination(picked[0], picked[1]), "TCP");
}

// A host and a NodePort Service: the walk to the Service's NodePort on the first node.
function destination(src, dst) {
  if (src.target.startsWith("host/") && dst.target.startsWith("svc/")) {
    const svc = snap.services.find((s) => s.target === dst.target);
    const np = svc && svc.ports.find((p) => p.nodePort);
    if (np) return `node/${snap.nodes[0].name}:${np.nodePort}`;
  }
  return dst.target;
}

function markPicked() {
  const ids = new Set(picked.map((p) => p.box));
  document.querySelectorAll("#picture g.box").forEach((g) => g.classList.toggle("selected", ids.has(g.dataset.id)));
  const targets = new Set(picked.map((p) => p.target));
  document.querySelectorAll("#pods tr[data-target]").forEach((tr) => tr.classList.toggle("selected", targets.has(tr.dataset.target)));
}

async function trace(src, dst, protocol) {
  walk = null;
  offerPcap(null);
  document.getElementById("walk-layer")?.replaceChildren();
  document.getElementById("trace-table").replaceChildren();
  say("trace-status", `tracing ${src} → ${dst} ${protocol}… (the probe is sent and watched in the kernel)`);
  try {
    walk = await api(`/api/trace?src=${encodeURIComponent(src)}&dst=${encodeURIComponent(dst)}&protocol=${protocol}`);
  } catch (e) {
    say("trace-status", `${src} → ${dst}: ${e.message}`, true);
    return;
  }
  say("trace-status", `${walk.trace}: ${walk.verdict}`);
  fillTrace(walk);
  drawWalk(walk);
  offerPcap(walk.pcap);
}

// The trace's captures as one pcap, by the opaque id the server gave the walk; fetched with the token
// (a plain link could not send it), then saved by the browser.
function offerPcap(id) {
  const p = document.getElementById("trace-pcap"), a = document.getElementById("trace-pcap-link");
  p.hidden = !id;
  a.dataset.id = id || "";
  a.dataset.url = id ? `/api/trace.pcap?id=${encodeURIComponent(id)}` : "";
}

async function downloadPcap(e) {
  e.preventDefault();
  const a = e.currentTarget;
  if (!a.dataset.url) return;
  const r = await fetch(a.dataset.url, {headers: {"X-Lab-Token": TOKEN}});
  if (!r.ok) { say("trace-status", `the pcap: ${(await r.json()).error || r.status}`, true); return; }
  const url = URL.createObjectURL(await r.blob());
  const save = el("a", {href: url, download: `lab-trace-${a.dataset.id.slice(-16)}.pcap`});
  document.body.append(save);
  save.click();
  save.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function fillTrace(doc) {
  const rows = doc.rows.map((r) => el("tr", {class: r.mark === "≠" ? "differs" : "", "data-step": r.step},
    el("td", {}, r.step), el("td", {}, r.component), el("td", {}, r.predicted), el("td", {}, r.observed),
    el("td", {class: r.mark === "≠" ? "mark-differs" : ""}, r.mark)));
  document.getElementById("trace-table").replaceChildren(
    el("tr", {}, el("th", {}, "step"), el("th", {}, "component"), el("th", {}, "predicted"),
       el("th", {}, "observed"), el("th", {}, "")), ...rows);
  const caps = Object.entries((doc.observed || {}).captures || {})
    .map(([ns, list]) => `${ns}:\n` + list.map((c) => `  ${c.interface} ${c.direction} ${c.text}`).join("\n")).join("\n");
  document.querySelector("#trace-captures pre").textContent = caps || "no captures (tcpdump not installed, or nothing seen)";
}

// The walk on the picture: the boxes its hops happen in, in order, joined; a differing step in red.
function drawWalk(doc) {
  const layer = document.getElementById("walk-layer");
  const pos = document.getElementById("picture").layout;
  if (!layer || !pos) return;
  layer.replaceChildren();
  const stops = [];
  const kind = Object.fromEntries(doc.predicted.map((h) => [String(h.step), h.kind]));
  const wire = (snap.graph.boxes.find((b) => b.kind === "switch") || {}).id;
  for (const r of doc.rows) {
    if (kind[r.step] === "reply") continue;           // the way back is in the table: the line shows the way there
    const id = r.component === "underlay" ? wire : snap.netns[r.namespace];
    if (!id || !pos[id]) continue;
    const last = stops[stops.length - 1];
    if (last && last.id === id) { last.steps.push(r.step); last.differs ||= r.mark === "≠"; }
    else stops.push({id, steps: [r.step], differs: r.mark === "≠"});
  }
  document.querySelectorAll("#picture g.box").forEach((g) => g.classList.remove("on-walk", "differs"));
  for (const s of stops) {
    const g = document.querySelector(`#picture g.box[data-id="${s.id}"]`);
    g.classList.add("on-walk");
    if (s.differs) g.classList.add("differs");
  }
  if (stops.length > 1) {
    const pts = stops.map((s) => center(pos[s.id]));
    const d = pts.map((p, i) => `${i ? "L" : "M"}${p.x},${p.y}`).join(" ");
    layer.append(svg("path", {d, class: "walk", "marker-end": "url(#walk-arrow)", "data-boxes": stops.map((s) => s.id).join(" ")}));
  }
  stops.forEach((s, i) => {
    const r = pos[s.id];
    const dot = svg("g", {class: "stop"});
    dot.append(svg("circle", {cx: r.x + r.w - 4, cy: r.y + 4, r: 9, class: "step" + (s.differs ? " differs" : "")}));
    const t = svg("text", {x: r.x + r.w - 4, y: r.y + 8, "text-anchor": "middle", class: "step"});
    t.textContent = i + 1;
    const title = svg("title", {});
    title.textContent = "steps " + s.steps.join(", ");
    dot.append(t, title);
    layer.append(dot);
  });
}

// --- tables -------------------------------------------------------------------------------------

function fillNodes(nodes) {
  const head = el("tr", {}, ["name", "status", "role", "IP", "podCIDR"].map((h) => el("th", {}, h)), el("th", {class: "action"}, ""));
  const rows = nodes.map((n) => el("tr", {"data-node": n.name},
    el("td", {}, n.name), el("td", {class: "status " + n.status}, n.status), el("td", {}, n.role),
    el("td", {}, n.ip), el("td", {}, n.podCIDR),
    el("td", {class: "action"}, el("button", {type: "button", "data-action": n.status === "Ready" ? "node-stop" : "node-start",
      on: {click: () => act({action: n.status === "Ready" ? "node-stop" : "node-start", node: n.name})}},
      n.status === "Ready" ? "stop" : "start"))));
  document.getElementById("nodes").replaceChildren(head, ...rows);
}

function fillPods(pods) {
  const head = el("tr", {}, ["namespace", "name", "ready", "IP", "node"].map((h) => el("th", {}, h)));
  const rows = pods.map((p) => el("tr", {"data-pod": p.key, "data-target": p.target,
      on: {click: () => pick(p.target, boxOf(p.key))}},
    el("td", {}, p.namespace), el("td", {}, p.name),
    el("td", {class: p.ready ? "ready" : "not-ready"}, p.ready ? "1/1" : "0/1"),
    el("td", {}, p.ip + (p.hostNetwork ? " (hostNetwork)" : "")), el("td", {}, p.node)));
  document.getElementById("pods").replaceChildren(head, ...rows);
  markPicked();
}

function boxOf(key) {
  const all = [...snap.graph.boxes, ...snap.graph.clusters.flatMap((c) => c.boxes)];
  const b = all.find((x) => x.keys.includes(key));
  return b ? b.id : "";
}

function fillServices(services) {
  const head = el("tr", {}, ["namespace/name", "type", "cluster IP", "ports"].map((h) => el("th", {}, h)));
  const rows = services.map((s) => el("tr", {"data-service": s.key},
    el("td", {}, s.key), el("td", {}, s.type), el("td", {}, s.clusterIP || "None"),
    el("td", {}, s.ports.map((p) => `${p.port}${p.nodePort ? ":" + p.nodePort : ""}/${p.protocol}`).join(", "))));
  document.getElementById("services").replaceChildren(head, ...rows);
}

function fillFaults(faults) {
  const head = el("tr", {}, ["id", "kind", "target", "params"].map((h) => el("th", {}, h)), el("th", {class: "action"}, ""));
  const rows = faults.map((f) => el("tr", {"data-fault": f.id},
    el("td", {}, f.id), el("td", {}, f.kind), el("td", {}, f.target),
    el("td", {}, Object.entries(f.params).map(([k, v]) => `${k}=${v}`).join(" ") || "-"),
    el("td", {class: "action"}, el("button", {type: "button", on: {click: () => act({action: "fault-clear", id: f.id})}}, "clear"))));
  document.getElementById("faults").replaceChildren(head, ...rows);
  if (!faults.length) document.getElementById("faults").append(el("tr", {}, el("td", {colspan: 5}, "no active faults")));
}

function fillNamespaces(pods) {
  const select = document.getElementById("policy-namespace");
  const have = new Set([...select.options].map((o) => o.value));
  for (const ns of [...new Set(pods.map((p) => p.namespace))].sort()) {
    if (!have.has(ns)) select.append(el("option", {value: ns}, ns));
  }
}

// --- actions ------------------------------------------------------------------------------------

async function act(body) {
  say("action-status", `${body.action}…`);
  try {
    say("action-status", (await api("/api/action", body)).done);
  } catch (e) {
    say("action-status", e.message, true);
  }
}

async function loadFaultKinds() {
  const kinds = await api("/api/fault-kinds");
  document.getElementById("fault-kind").replaceChildren(
    ...kinds.map((k) => el("option", {value: k.kind, title: `${k.help} (targets: ${k.targets.join(", ")})`}, k.kind)));
}

function addFault(e) {
  e.preventDefault();
  const params = {};
  for (const word of document.getElementById("fault-params").value.split(/\s+/).filter(Boolean)) {
    const [k, ...v] = word.split("=");
    params[k] = v.join("=");
  }
  act({action: "fault-add", kind: document.getElementById("fault-kind").value,
       target: document.getElementById("fault-target").value.trim(), params});
}

// --- policies -----------------------------------------------------------------------------------

const MARKS = {"allowed": ".", "denied": "X", "refused": "R", "error": "E", "not served": "-"};

async function measure(e) {
  e.preventDefault();
  const ns = document.getElementById("policy-namespace").value;
  say("policy-status", "measuring: a probe for every pair on every port served…");
  document.getElementById("policy").replaceChildren();
  let m;
  try {
    m = await api(`/api/netpol?namespace=${encodeURIComponent(ns)}`);
  } catch (err) {
    say("policy-status", err.message, true);
    return;
  }
  const cells = new Map(m.cells.map((c) => [`${c.src}|${c.dst}|${c.port}|${c.protocol}`, c]));
  const grids = m.cases.map(({port, protocol}) => {
    const head = el("tr", {}, el("th", {}, `${port}/${protocol}`), m.destinations.map((d) => el("th", {class: "dst"}, d)));
    const rows = m.sources.map((s) => el("tr", {}, el("th", {}, s), m.destinations.map((d) => {
      const c = cells.get(`${s}|${d}|${port}|${protocol}`);
      const cls = ["cell", c.observed.replace(" ", "-")];
      if (c.differs) cls.push("differs");
      const why = c.expected === null ? "not served" : `policies say ${c.expected}, observed ${c.observed}` + (c.error ? ` (${c.error})` : "");
      return el("td", {class: cls.join(" "), title: `${s} → ${d} ${port}/${protocol}: ${why}; click to trace`,
        "data-src": s, "data-dst": d, "data-port": port, "data-protocol": protocol,
        "data-observed": c.observed, "data-expected": c.expected === null ? "" : c.expected,
        on: {click: () => trace(`pod/${s}`, `pod/${d}:${port}`, protocol)}}, MARKS[c.observed] + (c.differs ? "*" : ""));
    })));
    return el("table", {class: "grid"}, head, ...rows);
  });
  document.getElementById("policy").replaceChildren(...grids);
  say("policy-status", `${m.probed} cells probed: ` + (m.differences ? `${m.differences} differ from what the policies say (*)` :
      "observed = what the policies say") + ". '.' reply, 'X' dropped, 'R' refused, 'E' error, '-' not served. A click on a cell traces it.");
}

// --- the exercise -------------------------------------------------------------------------------

async function loadExercise(graded) {
  const box = document.getElementById("exercise");
  let ex;
  try {
    ex = await api(graded ? "/api/exercise/status" : "/api/exercise");
  } catch (e) {
    box.replaceChildren(el("p", {class: "error"}, e.message));
    return;
  }
  if (!ex.exercise) { box.replaceChildren(el("p", {}, ex.message)); return; }
  const head = el("tr", {}, ["task", "title", "visible tests", "status", ""].map((h) => el("th", {}, h)));
  const rows = ex.tasks.map((t) => el("tr", {"data-task": t.id},
    el("td", {}, t.id), el("td", {}, t.title),
    el("td", {}, t.outcomes ? t.outcomes.map((o) => el("div", {class: o.passed ? "ready" : "not-ready"},
      `${o.passed ? "✓" : "✗"} ${o.name}${o.passed || !o.reason ? "" : ": " + o.reason}`)) : t.tests.map((n) => el("div", {}, n))),
    el("td", {}, t.status ? t.status + (t.locked_by && t.locked_by.length ? ` (finish ${t.locked_by.join(", ")})` : "") : "not checked"),
    el("td", {}, el("button", {type: "button", on: {click: () => hint(t.id)}}, `hint (${t.hints_used} used)`))));
  box.replaceChildren(
    el("p", {}, `${ex.exercise}: ${ex.title} `,
       el("button", {type: "button", id: "exercise-check", on: {click: () => loadExercise(true)}}, "check (visible tests)")),
    ex.error ? el("p", {class: "error"}, ex.error) : "",
    el("table", {class: "grid"}, head, ...rows), el("p", {id: "hint"}, ""),
    el("p", {class: "help"}, "Hidden tests and answers are graded by lab exercise grade only."));
}

async function hint(task) {
  try {
    say("hint", (await api("/api/exercise/hint", {task})).hint);
  } catch (e) {
    say("hint", e.message, true);
  }
}

// --- start --------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  if (!ACTIONS) document.body.classList.add("actions-off");
  document.getElementById("trace-form").addEventListener("submit", (e) => {
    e.preventDefault();
    trace(document.getElementById("trace-src").value.trim(), document.getElementById("trace-dst").value.trim(),
          document.getElementById("trace-protocol").value);
  });
  document.getElementById("trace-clear").addEventListener("click", () => {
    picked = []; walk = null; markPicked();
    document.getElementById("walk-layer")?.replaceChildren();
    document.querySelectorAll("#picture g.box").forEach((g) => g.classList.remove("on-walk", "differs"));
    document.getElementById("trace-table").replaceChildren();
    offerPcap(null);
    say("trace-status", "");
  });
  document.getElementById("trace-pcap-link").addEventListener("click", downloadPcap);
  document.getElementById("fault-form").addEventListener("submit", addFault);
  document.getElementById("policy-form").addEventListener("submit", measure);
  if (ACTIONS) loadFaultKinds().catch((e) => say("action-status", e.message, true));
  loadExercise(false);
  connect();
});
