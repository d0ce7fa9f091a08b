// Switchboard planning page: a domain's arrivals forecast beside what was measured, and
// staffing what-ifs that the router runs as jobs (POST …/staffing, then the job polled
// every POLL_MS with its progress). No build step, no dependencies; whatever the API
// answers goes into the page as text, never as markup.
"use strict";

const POLL_MS = 500;
const TICK_HOURS = [1, 2, 3, 6, 12];
const TICK_MIN_PX = 56;
const COLOR = {
  actual: "#5aa9f5", forecast: "#f0b429", required: "#4cc38a", scheduled: "#5aa9f5",
  erlangC: "#f0b429", erlangA: "#e08ef5", service: "#4cc38a", occupancy: "#5aa9f5", target: "#8b9bab",
};
const $ = (id) => document.getElementById(id);

const state = {
  domain: "", token: "",
  view: null, // the forecast shown
  forecastAsked: 0, // the latest forecast asked for: an older answer is dropped
  queues: [], channels: [], // the domain's measured streams, from an unfiltered forecast
  job: null, // the running job's id
  shown: null, // {result, target}: the staffing result shown
  required: null, // the last search's agents: {start, interval, values}
};

// -- the API -------------------------------------------------------------------

async function call(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + state.token } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`/v1/domains/${encodeURIComponent(state.domain)}${path}`, init);
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new Error((answer && answer.error) || `${response.status} ${response.statusText}`);
  return answer;
}

function notice(text, kind) {
  const el = $("notice");
  el.textContent = text || "";
  el.className = "notice " + (kind || "info");
  el.hidden = !text;
}

function setStatus(text, ok) {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + (ok ? "on" : "off");
}

// -- time in the domain's zone ---------------------------------------------------

const formats = new Map();

// The parts of an instant's date and time, in the forecast's time zone (local before one is known).
function zoned(epoch) {
  const zone = state.view ? state.view.time_zone : undefined;
  let format = formats.get(zone);
  if (!format) {
    const options = {
      weekday: "short", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    };
    try { format = new Intl.DateTimeFormat("en-GB", { ...options, timeZone: zone }); }
    catch { format = new Intl.DateTimeFormat("en-GB", options); } // a zone this browser lacks
    formats.set(zone, format);
  }
  const parts = {};
  for (const part of format.formatToParts(new Date(epoch * 1000))) parts[part.type] = part.value;
  return parts;
}

function when(epoch) {
  const t = zoned(epoch);
  return `${t.weekday} ${t.day}/${t.month} ${t.hour}:${t.minute}`;
}

// Midnight starting `date` (yyyy-mm-dd) in the forecast's time zone, in epoch seconds.
function midnight(date) {
  const [y, m, d] = date.split("-").map(Number);
  const wall = Date.UTC(y, m - 1, d) / 1000;
  const offset = (epoch) => {
    const t = zoned(epoch);
    return Date.UTC(Number(t.year), Number(t.month) - 1, Number(t.day), Number(t.hour), Number(t.minute)) / 1000 - epoch;
  };
  const guess = wall - offset(wall);
  return wall - offset(guess);
}

// Labels on the x axis: hours or days, spaced at least TICK_MIN_PX apart.
function timeTicks(start, interval, points, canvas) {
  const hourPx = ((canvas.clientWidth - 40) / points) * (3600 / interval);
  const hours = TICK_HOURS.find((h) => h * hourPx >= TICK_MIN_PX);
  const days = hours ? 1 : Math.ceil(TICK_MIN_PX / (24 * hourPx));
  const ticks = [];
  let midnights = 0;
  for (let i = 0; i < points; i++) {
    const t = zoned(start + i * interval);
    if (t.minute !== "00") continue;
    const hour = Number(t.hour);
    if (hour === 0) {
      if (midnights++ % days === 0) ticks.push({ at: i, text: `${t.weekday} ${Number(t.day)}` });
    } else if (hours && hour % hours === 0) {
      ticks.push({ at: i, text: `${t.hour}:00` });
    }
  }
  return ticks;
}

// -- formatting ------------------------------------------------------------------

function percent(share) {
  return share === null || share === undefined ? "–" : Math.round(share * 100) + "%";
}

function figure(value) {
  return value === null || value === undefined ? "–" : String(value);
}

function decimal(value) {
  return value.toLocaleString("en", { maximumFractionDigits: value < 100 ? 1 : 0 });
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

// -- forecast vs actual --------------------------------------------------------

function viewQuery() {
  const query = new URLSearchParams({ interval: $("interval").value, days: $("days-ahead").value });
  if ($("queue").value) query.set("queue", $("queue").value);
  if ($("channel").value) query.set("channel", $("channel").value);
  return query;
}

async function loadForecast() {
  const asked = ++state.forecastAsked;
  const filtered = $("queue").value || $("channel").value;
  const view = await call("GET", "/forecast?" + viewQuery());
  if (asked !== state.forecastAsked) return;
  state.view = view;
  if (!filtered) {
    state.queues = [...new Set(view.streams.map((s) => s.queue))].sort();
    state.channels = [...new Set(view.streams.map((s) => s.channel))].sort();
    fillSelect($("queue"), state.queues);
    fillSelect($("channel"), state.channels);
    fillRoster();
  }
  $("planning").hidden = false;
  renderForecast();
}

function fillSelect(select, values) {
  const chosen = select.value;
  while (select.options.length > 1) select.remove(1);
  for (const value of values) select.add(new Option(value, value, false, value === chosen));
}

// Per interval, the sum over the streams (missing figures count as none).
function summed(lists, length) {
  const sums = new Array(length).fill(0);
  for (const list of lists) list.forEach((v, i) => { if (i < length) sums[i] += v; });
  return sums;
}

function renderForecast() {
  const view = state.view;
  if (!view) return;
  const interval = view.interval_seconds;
  const past = Math.round((view.now - view.start) / interval);
  const points = view.streams.length ? view.streams[0].forecast.length : past;
  const actual = summed(view.streams.map((s) => s.actual), past);
  const forecast = summed(view.streams.map((s) => s.forecast), points);
  const canvas = $("chart-forecast");
  canvas.dataset.intervals = String(points);
  drawChart(canvas, [
    { label: "actual (measured)", color: COLOR.actual, values: actual },
    { label: "forecast", color: COLOR.forecast, values: forecast },
  ], { points, ticks: timeTicks(view.start, interval, points, canvas), markers: [{ at: past, text: "now" }] });
  $("zone").textContent = "Times in " + view.time_zone;
  const sum = (values) => Math.round(values.reduce((a, b) => a + b, 0)).toLocaleString("en");
  $("forecast-totals").textContent = view.streams.length
    ? `Past week: ${sum(actual)} arrivals measured, ${sum(forecast.slice(0, past))} forecast. ` +
      `Next ${((points - past) * interval) / 86400} days: ${sum(forecast.slice(past))} forecast.`
    : "No measured workload in the weeks before: nothing to forecast yet.";
  const list = $("backtest");
  list.replaceChildren();
  for (const stream of view.streams) {
    const li = document.createElement("li");
    const b = stream.backtest;
    const error = b
      ? `WAPE ${percent(b.wape)}, MAPE ${percent(b.mape)} on the last week of history held out (${b.intervals} intervals)`
      : "error not measured yet (a week of history or less)";
    li.textContent = `${stream.queue} · ${stream.channel}: ${stream.model} model; ${error}`;
    list.appendChild(li);
  }
}

// -- the staffing form ---------------------------------------------------------

// One capacity field per measured channel and one box per measured queue (what was typed stays).
function fillRoster() {
  const capacity = $("capacity");
  const typed = new Map([...capacity.querySelectorAll("input")].map((i) => [i.dataset.channel, i.value]));
  capacity.replaceChildren();
  for (const channel of state.channels) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    Object.assign(input, { type: "number", min: "0", max: "100", required: true, value: typed.get(channel) || "3" });
    input.dataset.channel = channel;
    label.append(channel + " ", input);
    capacity.appendChild(label);
  }
  const queues = $("group-queues");
  const ticked = new Set([...queues.querySelectorAll("input:checked")].map((i) => i.dataset.queue));
  const first = !queues.childElementCount;
  queues.replaceChildren();
  for (const queue of state.queues) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.checked = first || ticked.has(queue);
    input.dataset.queue = queue;
    label.append(input, " " + queue);
    queues.appendChild(label);
  }
}

function staffed(text) {
  const counts = text.split(",").map((part) => part.trim());
  if (!counts.every((c) => /^\d{1,4}$/.test(c))) {
    throw new Error("Agents: one whole number, or one per interval separated by commas");
  }
  return counts.map(Number);
}

function staffingRequest(search) {
  const name = $("group-name").value.trim();
  const capacity = {};
  for (const input of $("capacity").querySelectorAll("input")) {
    if (Number(input.value) > 0) capacity[input.dataset.channel] = Number(input.value);
  }
  const group = {
    name, capacity,
    queues: [...$("group-queues").querySelectorAll("input:checked")].map((i) => i.dataset.queue),
  };
  if (!search) group.staffed = staffed($("staffed").value);
  const body = {
    source: $("source").value,
    days: Number($("days").value),
    interval_seconds: Number($("interval").value),
    target: { within_seconds: Number($("within").value), share: Number($("share").value) / 100 },
    groups: [group],
    search: search ? name : null,
  };
  if ($("queue").value) body.queues = [$("queue").value];
  if ($("channel").value) body.channels = [$("channel").value];
  if ($("start-date").value) body.start = midnight($("start-date").value);
  return body;
}

function showJob(job) {
  const progress = $("job-progress");
  $("job").hidden = false;
  progress.max = Math.max(job.total, 1);
  if (job.total) progress.value = job.done; else progress.removeAttribute("value");
  const steps = job.total ? `: ${job.done} / ${job.total} steps` : "";
  $("job-status").textContent = job.status + steps;
  $("job").dataset.status = job.status;
}

function setRunning(id) {
  state.job = id;
  $("find").disabled = $("simulate").disabled = id !== null;
  if (id) $("job").dataset.jobId = id;
}

async function startStaffing(search) {
  if (state.job !== null) return;
  let body;
  try { body = staffingRequest(search); } catch (error) { notice(error.message, "error"); return; }
  notice("");
  setRunning("");
  showJob({ status: "starting", done: 0, total: 0 });
  try {
    const job = await call("POST", "/staffing", body);
    setRunning(job.job_id);
    showJob(job);
    setTimeout(() => followJob(job.job_id, body.target), POLL_MS);
  } catch (error) {
    setRunning(null);
    showJob({ status: "refused", done: 0, total: 0 });
    notice(error.message, "error");
  }
}

async function followJob(id, target) {
  let job;
  try {
    job = await call("GET", `/planning/jobs/${encodeURIComponent(id)}`);
  } catch (error) {
    if (state.job !== id) return;
    setRunning(null);
    notice(error.message, "error");
    return;
  }
  if (state.job !== id) return;
  showJob(job);
  if (job.status === "running") { setTimeout(() => followJob(id, target), POLL_MS); return; }
  setRunning(null);
  if (job.status === "completed") {
    state.shown = { result: job.result, target };
    if (job.result.searched) {
      const demand = job.result.demand;
      state.required = { start: demand.start, interval: demand.interval_seconds, values: job.result.staffed[job.result.searched] };
    }
    renderResult();
  } else {
    notice(job.error || "The job's process ended before it finished: start it again.", "error");
  }
}

// -- required vs scheduled -----------------------------------------------------

function renderResult() {
  if (!state.shown) return;
  const { result, target } = state.shown;
  const outcomes = result.report.intervals;
  const demand = result.demand;
  const points = outcomes.length;
  const group = result.searched || Object.keys(result.staffed)[0];
  const agents = result.staffed[group];
  $("no-result").hidden = true;
  $("result-charts").hidden = $("result-table").hidden = false;
  const series = [];
  const required = state.required;
  if (required && required.start === demand.start && required.interval === demand.interval_seconds && required.values.length === points) {
    series.push({ label: "required (search)", color: COLOR.required, values: required.values, step: true });
  }
  if (!result.searched) series.push({ label: "scheduled", color: COLOR.scheduled, values: agents, step: true });
  const erlangC = result.erlang.map((e) => e.erlang_c_agents);
  const erlangA = result.erlang.map((e) => e.erlang_a_agents);
  series.push({ label: "Erlang C", color: COLOR.erlangC, values: erlangC, step: true, dash: [6, 4] });
  if (erlangA.some((v) => v !== null)) series.push({ label: "Erlang A", color: COLOR.erlangA, values: erlangA, step: true, dash: [2, 3] });
  const ticks = timeTicks(demand.start, demand.interval_seconds, points, $("chart-agents"));
  $("chart-agents").dataset.intervals = String(points);
  drawChart($("chart-agents"), series, { points, ticks });
  drawChart($("chart-service"), [
    { label: "service level", color: COLOR.service, values: outcomes.map((o) => (o.service_level === null ? null : o.service_level * 100)) },
    { label: "occupancy", color: COLOR.occupancy, values: outcomes.map((o) => (o.occupancy === null ? null : o.occupancy * 100)) },
  ], {
    points, ticks, max: 100, format: (v) => Math.round(v) + "%",
    levels: [{ value: target.share * 100, text: `target ${percent(target.share)} within ${target.within_seconds} s`, color: COLOR.target }],
  });
  renderTotals(result, target);
  const body = $("intervals").querySelector("tbody");
  body.replaceChildren();
  const infeasible = new Set(result.infeasible);
  outcomes.forEach((outcome, i) => {
    const tr = document.createElement("tr");
    if (!outcome.met) tr.className = "missed";
    cell(tr, when(outcome.start));
    cell(tr, figure(outcome.arrivals), "num");
    cell(tr, figure(agents[i]) + (infeasible.has(i) ? "+" : ""), "num agents");
    cell(tr, percent(outcome.service_level), "num level");
    cell(tr, seconds(outcome.wait_p90_seconds), "num");
    cell(tr, percent(outcome.preferred_hit_ratio), "num");
    cell(tr, percent(outcome.occupancy), "num");
    cell(tr, figure(erlangC[i]), "num");
    cell(tr, figure(erlangA[i]), "num");
    body.appendChild(tr);
  });
}

function renderTotals(result, target) {
  const report = result.report;
  const what = result.searched ? `search for group ${result.searched}` : "simulation of the roster";
  const tiles = [
    ["Service level", percent(report.service_level), `target ${percent(target.share)} within ${target.within_seconds} s`],
    ["Intervals met", `${report.intervals_met} / ${report.intervals.length}`, result.infeasible.length ? `${result.infeasible.length} not met at the most agents tried` : what],
    ["Occupancy", percent(report.occupancy), `${report.arrivals.toLocaleString("en")} arrivals simulated`],
    ["Preferred-agent hits", percent(report.preferred_hit_ratio), "of the customers with a preferred agent"],
    ["Simulations", figure(result.simulations), `${decimal(report.simulated_seconds / 3600)} simulated hours each`],
    ["Simulated s per s", decimal(result.simulated_seconds_per_second), "all simulations, wall time"],
  ];
  const list = $("totals");
  list.replaceChildren();
  for (const [label, value, sub] of tiles) {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    const small = document.createElement("span");
    dt.textContent = label;
    dd.textContent = value;
    small.textContent = sub;
    div.append(dt, dd, small);
    list.appendChild(div);
  }
}

// -- start ---------------------------------------------------------------------

async function signIn(domain, token) {
  Object.assign(state, { domain, token, view: null, shown: null, required: null });
  setRunning(null); // a job of the domain signed in before is no longer followed
  $("job").hidden = $("result-charts").hidden = $("result-table").hidden = true;
  $("no-result").hidden = false;
  sessionStorage.setItem("switchboard.domain", domain);
  sessionStorage.setItem("switchboard.token", token);
  setStatus("signing in…", false);
  $("queue").value = $("channel").value = "";
  try {
    await loadForecast();
    setStatus("signed in: " + domain, true);
    notice("");
  } catch (error) {
    $("planning").hidden = true;
    setStatus("signed out", false);
    notice(error.message, "error");
  }
}

async function refresh() {
  if (!state.token || !$("view").reportValidity()) return;
  try { await loadForecast(); } catch (error) { notice(error.message, "error"); }
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("domain").value.trim(), $("token").value.trim());
});
$("view").addEventListener("change", refresh);
$("view").addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
$("staffing").addEventListener("submit", (event) => { event.preventDefault(); startStaffing(true); });
$("simulate").addEventListener("click", () => {
  if ($("staffing").reportValidity()) startStaffing(false);
});
let redraw = 0;
window.addEventListener("resize", () => {
  cancelAnimationFrame(redraw);
  redraw = requestAnimationFrame(() => { renderForecast(); renderResult(); });
});

const savedDomain = sessionStorage.getItem("switchboard.domain");
if (savedDomain) {
  $("domain").value = savedDomain;
  $("token").value = sessionStorage.getItem("switchboard.token") || "";
  signIn(savedDomain, $("token").value);
}
