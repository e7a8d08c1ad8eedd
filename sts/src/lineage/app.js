// The lineage page: sessions by person and time, and one session's delegation drawn as a tree.
// Everything shown comes from the ledger, and some of it (tool names, subjects) from agents: it
// is only ever set as text, never parsed as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function el(tag, attrs, text) {
  const e = tag === "svg" || tag === "g" || tag === "rect" || tag === "text" || tag === "path" || tag === "title"
    ? document.createElementNS(SVG, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function when(ts) {
  return new Date(ts * 1000).toISOString().replace("T", " ").replace(".000Z", "Z");
}

async function getJson(path) {
  const r = await fetch(path, { headers: { accept: "application/json" } });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

async function listSessions() {
  const params = new URLSearchParams();
  if ($("person").value) params.set("sub", $("person").value);
  params.set("hours", $("hours").value);
  const body = $("sessions-body");
  body.replaceChildren();
  const { sessions } = await getJson("/lineage/sessions?" + params);
  for (const s of sessions) {
    const row = el("tr", { "data-sid": s.sid });
    row.append(el("td", {}, s.person + (s.issuer ? " (" + s.issuer + ")" : "")), el("td", {}, when(s.first)), el("td", {}, String(s.hops)),
      el("td", {}, String(s.calls)), el("td", { class: s.refused ? "bad" : "" }, String(s.refused)));
    row.addEventListener("click", () => { location.hash = "sid=" + encodeURIComponent(s.sid); });
    body.append(row);
  }
  $("sessions-count").textContent = sessions.length + " session" + (sessions.length === 1 ? "" : "s");
}

// What a ledger record says, as a node: its kind (for colour) and lines of text.
function describe(r) {
  if (r.direction) {
    const who = (r.workload || "?").split("/").pop();
    const what = [r.method, r.name].filter(Boolean).join(" ");
    const ok = r.decision === "accepted" || r.decision === "allowed" || r.decision === "exchanged" || r.decision === "cache_hit";
    const kind = ok ? (what ? "call" : "seen") : "refused";
    const head = "[" + who + "] " + r.direction + " " + (what || (r.audience ? "to " + r.audience : "request"));
    return { kind, lines: [head, r.decision + " (" + r.reason + ")" + (r.rule ? " rule " + r.rule : "")], ts: r.ts };
  }
  if (r.by) {
    return { kind: "revocation", lines: [r.decision + " " + r.revoked + " (" + r.reason + ")", "by " + r.by + ": " + (r.why || "")], ts: r.ts };
  }
  const chain = (r.chain || []).join(" → ");
  const lines = [chain + " ⇒ " + (r.audience || "?"), r.decision + " (" + r.reason + ")" + (r.scope ? " scope [" + r.scope + "]" : "")];
  return { kind: r.decision === "granted" ? "hop" : "refused", lines, ts: r.ts };
}

// The session's records as a tree: an exchange under the token it was exchanged from, a report
// under the token it is about, the rest under the person.
function tree(records) {
  const minted = new Set(records.filter((r) => !r.direction && r.jti).map((r) => r.jti));
  const parentOf = (r) => r.direction ? (minted.has(r.jti) ? r.jti : null) : (r.parent_jti || null);
  const first = records.find((r) => r.sub) || {};
  const root = { node: { kind: "person", lines: [(first.sub || "?") + (first.sub_iss ? " (" + first.sub_iss + ")" : ""), "session " + (first.sid || "")] }, children: [] };
  const byJti = new Map();
  const nodes = records.map((r) => ({ record: r, node: describe(r), children: [] }));
  for (const n of nodes) if (!n.record.direction && n.record.jti) byJti.set(n.record.jti, n);
  for (const n of nodes) {
    const p = parentOf(n.record);
    (p && byJti.has(p) ? byJti.get(p) : root).children.push(n);
  }
  return root;
}

function draw(root) {
  // An outline: each record a box, indented under the token it is about, joined by elbows.
  const H = 44, GAP = 8, DX = 34, CH = 7.3;
  const placed = [];
  let row = 0;
  (function place(n, depth, parent) {
    const w = Math.max(260, 16 + CH * Math.max(...n.node.lines.map((l) => l.length)));
    const at = { n, x: 10 + depth * DX, y: 10 + row * (H + GAP), w, parent };
    row += 1;
    placed.push(at);
    for (const c of n.children) place(c, depth + 1, at);
  })(root, 0, null);
  const width = Math.max(...placed.map((p) => p.x + p.w)) + 20;
  const height = row * (H + GAP) + 20;
  const svg = el("svg", { width, height, viewBox: "0 0 " + width + " " + height, role: "img" });
  for (const p of placed) {
    if (!p.parent) continue;
    const x1 = p.parent.x + 14, y1 = p.parent.y + H, y2 = p.y + H / 2;
    svg.append(el("path", { d: "M" + x1 + " " + y1 + " V" + y2 + " H" + p.x, class: "edge" }));
  }
  for (const p of placed) {
    const g = el("g", { class: "node " + p.n.node.kind, "data-kind": p.n.node.kind, transform: "translate(" + p.x + "," + p.y + ")" });
    g.append(el("rect", { width: p.w, height: H, rx: 6 }));
    p.n.node.lines.forEach((line, i) => g.append(el("text", { x: 8, y: 18 + i * 17 }, line)));
    if (p.n.node.ts) g.append(el("title", {}, when(p.n.node.ts)));
    svg.append(g);
  }
  return svg;
}

async function showSession(sid) {
  const { records } = await getJson("/lineage/session?sid=" + encodeURIComponent(sid));
  $("session-title").textContent = "Session " + sid + " — " + records.length + " records";
  $("graph").replaceChildren(draw(tree(records)));
  $("graph").setAttribute("data-ready", "true");
}

function route() {
  const m = /sid=([^&]+)/.exec(location.hash);
  if (m) showSession(decodeURIComponent(m[1])).catch((e) => { $("session-title").textContent = String(e); });
}

window.addEventListener("hashchange", route);
$("filter").addEventListener("submit", (e) => { e.preventDefault(); listSessions(); });
listSessions().then(route).catch((e) => { $("sessions-count").textContent = String(e); });
