// Switchboard supervisor console: no build step, no dependencies.
// The routing stream is read with fetch() streaming so that the bearer token travels in
// the Authorization header (EventSource cannot send headers); queues and agents are
// polled. Charts are drawn on <canvas> by drawChart (figures.js).
"use strict";

const BUCKET_MS = 5000;
const BUCKETS = 60; // five minutes of history
const POLL_MS = 3000;
const $ = (id) => document.getElementById(id);

const state = {
  domain: "", token: "", abort: null, lastEventId: null, timer: null,
  messages: 0, assigned: 0, strategies: {}, hits: 0, misses: 0, overflowed: 0,
  waits: [], buckets: [],
};

function bucket() {
  const now = Math.floor(Date.now() / BUCKET_MS) * BUCKET_MS;
  let last = state.buckets[state.buckets.length - 1];
  while (!last || last.t < now) {
    last = { t: last ? last.t + BUCKET_MS : now, messages: 0, assigned: 0, hits: 0, misses: 0, waits: [] };
    state.buckets.push(last);
  }
  while (state.buckets.length > BUCKETS) state.buckets.shift();
  return last;
}

function headers() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

function api(path) {
  return `/v1/domains/${encodeURIComponent(state.domain)}${path}`;
}

function setStatus(text, ok) {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + (ok ? "on" : "off");
}

function quantile(values, q) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

// -- the stream ----------------------------------------------------------------

function onEvent(type, data) {
  let e;
  try { e = JSON.parse(data); } catch { return; }
  const b = bucket();
  if (type === "message.routed") { state.messages++; b.messages++; }
  else if (type === "conversation.assigned") {
    state.assigned++; b.assigned++;
    state.strategies[e.strategy] = (state.strategies[e.strategy] || 0) + 1;
    const w = e.waited_seconds || 0;
    state.waits.push(w); b.waits.push(w);
    if (state.waits.length > 5000) state.waits.shift();
    if (e.preferred_agent_id) {
      if (e.preferred_agent_id === e.agent_id) { state.hits++; b.hits++; } else { state.misses++; b.misses++; }
    }
  } else if (type === "conversation.overflowed") state.overflowed++;
  logEvent(type, e);
}

function logEvent(type, e) {
  if (type === "message.routed" || type.startsWith("command.")) return;
  const li = document.createElement("li");
  const time = new Date().toLocaleTimeString();
  const who = e.agent_id ? ` → ${e.agent_id}` : "";
  const how = e.strategy ? ` (${e.strategy}, waited ${seconds(e.waited_seconds || 0)})` : "";
  li.innerHTML = `${time} <b></b> <span></span>`;
  li.querySelector("b").textContent = type;
  li.querySelector("span").textContent = `${e.channel || ""} ${(e.conversation_id || "").slice(0, 8)}${who}${how}`;
  const list = $("events");
  list.prepend(li);
  while (list.children.length > 14) list.lastChild.remove();
}

async function follow() {
  while (state.abort && !state.abort.signal.aborted) {
    try {
      const h = headers();
      if (state.lastEventId) h["Last-Event-ID"] = state.lastEventId;
      const response = await fetch(api("/stream"), { headers: h, signal: state.abort.signal });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        setStatus(`stream: ${response.status} ${body.error || ""}`, false);
        if (response.status === 401 || response.status === 403 || response.status === 404) return;
      } else {
        setStatus("live", true);
        await readStream(response.body.getReader());
        setStatus("reconnecting…", false);
      }
    } catch (error) {
      if (state.abort.signal.aborted) return;
      setStatus("reconnecting…", false);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const seen = newSeenEvents();

function readStream(reader) {
  return readEvents(reader, seen, (type, data, id) => {
    if (id) state.lastEventId = id;
    onEvent(type, data);
  });
}

// -- polling -------------------------------------------------------------------

async function poll() {
  try {
    const [q, a] = await Promise.all([
      fetch(api("/queues"), { headers: headers() }),
      fetch(api("/console/agents"), { headers: headers() }),
    ]);
    if (q.ok) renderQueues(await q.json());
    if (a.ok) renderAgents(await a.json());
    if (!q.ok || !a.ok) setStatus(`poll: ${q.ok ? a.status : q.status}`, false);
  } catch (error) { /* the stream shows the connection state */ }
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function renderQueues(view) {
  const body = $("queues").querySelector("tbody");
  body.replaceChildren();
  let waiting = 0, oldest = null;
  for (const q of view.queues) {
    const tr = document.createElement("tr");
    cell(tr, q.queue); cell(tr, q.waiting); cell(tr, seconds(q.oldest_wait_seconds));
    cell(tr, q.offered); cell(tr, q.agents_online); cell(tr, q.free_slots);
    cell(tr, seconds(q.estimated_wait_seconds));
    body.appendChild(tr);
    waiting += q.waiting;
    if (q.oldest_wait_seconds !== null && (oldest === null || q.oldest_wait_seconds > oldest)) oldest = q.oldest_wait_seconds;
  }
  $("waiting").textContent = waiting;
  $("oldest").textContent = "oldest " + seconds(oldest);
}

function renderAgents(view) {
  const body = $("agents").querySelector("tbody");
  body.replaceChildren();
  let online = 0, used = 0, total = 0;
  const order = { online: 0, away: 1, offline: 2 };
  const agents = [...view.agents].sort((a, b) => (order[a.presence] - order[b.presence]) || a.agent_id.localeCompare(b.agent_id));
  for (const a of agents) {
    const tr = document.createElement("tr");
    cell(tr, a.name ? `${a.name} (${a.agent_id})` : a.agent_id);
    const p = cell(tr, a.presence);
    const dot = document.createElement("span");
    dot.className = "dot " + a.presence;
    p.prepend(dot);
    let load = 0, cap = 0;
    const parts = [];
    for (const [channel, c] of Object.entries(a.capacity)) {
      const l = (a.load || {})[channel] || 0;
      load += l; cap += c;
      if (l) parts.push(`${channel} ${l}/${c}`);
    }
    const td = cell(tr, parts.join(" · ") || "idle");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = (cap ? Math.round((60 * load) / cap) : 0) + "px";
    td.prepend(bar);
    body.appendChild(tr);
    if (a.presence === "online") { online++; used += load; total += cap; }
  }
  $("online").textContent = `${online} / ${view.agents.length}`;
  $("overflowed").textContent = `occupancy ${total ? Math.round((100 * used) / total) : 0}% · overflowed ${state.overflowed}`;
}

// -- figures and charts --------------------------------------------------------

function render() {
  bucket();
  const recent = state.buckets.slice(-12).reduce((n, b) => n + b.messages, 0);
  $("messages").textContent = state.messages;
  $("messages-rate").textContent = `${recent} in the last minute`;
  $("assigned").textContent = state.assigned;
  $("strategies").textContent = Object.entries(state.strategies).map(([k, v]) => `${k} ${v}`).join(" · ") || "–";
  const total = state.hits + state.misses;
  $("hit-ratio").textContent = total ? Math.round((100 * state.hits) / total) + "%" : "–";
  $("hits").textContent = `${state.hits} hits, ${state.misses} misses`;
  $("wait-p50").textContent = seconds(quantile(state.waits, 0.5));
  $("wait-p95").textContent = "p95 " + seconds(quantile(state.waits, 0.95));
  const b = state.buckets;
  drawRecent($("chart-traffic"), [
    { color: "#5aa9f5", values: b.map((x) => x.messages) },
    { color: "#4cc38a", values: b.map((x) => x.assigned) },
  ]);
  drawRecent($("chart-waits"), [
    { color: "#f0b429", values: b.map((x) => (x.waits.length ? Math.max(...x.waits) : null)) },
    { color: "#4cc38a", values: b.map((x) => quantile(x.waits, 0.5)) },
  ]);
  drawRecent($("chart-hits"), [
    { color: "#4cc38a", values: b.map((x) => (x.hits + x.misses ? (100 * x.hits) / (x.hits + x.misses) : null)) },
  ], 100);
}

// The last BUCKETS buckets, the newest at the right edge.
function drawRecent(canvas, series, fixedMax) {
  drawChart(canvas, series.map((s) => ({ ...s, offset: BUCKETS - s.values.length })), {
    points: BUCKETS, max: fixedMax, ticks: [{ at: 0, text: "−5 min" }, { at: BUCKETS, text: "now" }],
  });
}

// -- start ---------------------------------------------------------------------

function connect(domain, token) {
  if (state.abort) state.abort.abort();
  Object.assign(state, {
    domain, token, abort: new AbortController(), lastEventId: null,
    messages: 0, assigned: 0, strategies: {}, hits: 0, misses: 0, overflowed: 0, waits: [], buckets: [],
  });
  seen.clear();
  sessionStorage.setItem("switchboard.domain", domain);
  sessionStorage.setItem("switchboard.token", token);
  setStatus("connecting…", false);
  follow();
  poll();
  clearInterval(state.timer);
  state.timer = setInterval(poll, POLL_MS);
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  connect($("domain").value.trim(), $("token").value.trim());
});

setInterval(render, 1000);
const savedDomain = sessionStorage.getItem("switchboard.domain");
if (savedDomain) {
  $("domain").value = savedDomain;
  $("token").value = sessionStorage.getItem("switchboard.token") || "";
  connect(savedDomain, $("token").value);
}
render();
