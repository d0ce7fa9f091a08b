// Switchboard agent inbox, part two (after inbox.js): one conversation, the customer's
// history on every channel, and the agent's actions on the conversation.
"use strict";

// -- one conversation ------------------------------------------------------------

function openConversation(id) {
  if (state.open !== id) {
    state.open = id;
    sessionStorage.setItem(STORE + "open", id);
    if ($("notice").classList.contains("error")) notice(""); // it was about another one
    state.view = null;
    state.contextDirty = false;
    state.history = { customer: null, entries: new Map(), cursor: null, loadedOlder: false };
    $("timeline").replaceChildren();
    $("history").replaceChildren();
    $("customer").replaceChildren();
    $("reply-text").value = "";
  }
  state.unread.delete(id);
  $("conversation-empty").hidden = true;
  $("conversation-body").hidden = false;
  renderMine();
  loadConversation().then(() => loadHistory(false));
  $("conversation").focus();
}

async function loadConversation() {
  const id = state.open;
  const result = await call("GET", `/conversations/${enc(id)}?limit=200`);
  if (id !== state.open) return;
  if (result.status !== 200) return notice(`Cannot read the conversation: ${explain(result)}.`, "error");
  state.view = result.body;
  renderConversation(result.body);
}

function renderConversation(view) {
  const mine = view.owner_agent_id === state.agent;
  $("conversation-title").textContent = `Conversation with ${view.customer_id}`;
  const facts = [
    ["Status", view.status], ["Channel", view.channel], ["Queue", view.queue],
    ["Owner", view.owner_agent_id || "nobody"], ["Priority", view.priority],
    ["Opened", clock(view.opened_at)],
    ["Reply window", view.reply_window_closed ? "closed" : view.reply_window_ends_at ? `open until ${clock(view.reply_window_ends_at)}` : "none on this channel"],
  ];
  if (view.snoozed_until) facts.push(["Snoozed until", clock(view.snoozed_until)]);
  if (view.language) facts.push(["Language", view.language]);
  if (view.skills && view.skills.length) facts.push(["Skills", view.skills.join(", ")]);
  for (const [key, value] of Object.entries(view.attributes || {})) facts.push([key, value]);
  if (view.closed_at) facts.push(["Closed", `${clock(view.closed_at)} (${view.close_reason || "closed"})`]);
  const list = $("facts");
  list.replaceChildren();
  for (const [term, value] of facts) {
    const div = element("div", term === "Status" ? "status-" + view.status : "");
    div.append(element("dt", "", term), element("dd", "", value));
    list.append(div);
  }
  list.dataset.status = view.status;
  renderTimeline(view.timeline || []);
  const closed = view.status === "closed";
  $("reply-text").disabled = closed;
  $("reply-send").disabled = closed;
  $("reply-hint").textContent = closed ? "Closed: no more replies."
    : view.reply_window_closed ? "The reply window has closed: a free-form reply will be refused."
    : !mine ? `You do not own this conversation (${view.owner_agent_id || "nobody"} does).` : "";
  for (const id of ["snooze-hour", "snooze-tomorrow", "snooze-custom", "transfer-to-queue", "transfer-to-agent", "context-save", "close"]) {
    $(id).disabled = closed;
  }
  // Never under the agent's hands: not while they edit, nor where the focus is.
  if (!state.contextDirty && !$("attributes").contains(document.activeElement)) {
    $("priority").value = view.priority;
    renderAttributes(view.attributes || {});
  }
}

function renderTimeline(entries) {
  const list = $("timeline");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const keyed = new Map(entries.map((e) => [`${e.kind}:${e.message_id || e.assignment_id}`, e]));
  sync(list, [...keyed.keys()], (key) => element("li"), (li, key) => fillEntry(li, keyed.get(key), false));
  if (atBottom) list.scrollTop = list.scrollHeight;
}

// One timeline or history entry; ``history`` entries name their conversation and channel.
function fillEntry(li, e, history) {
  const meta = element("div", "meta");
  meta.append(element("time", "", clock(e.at)));
  const classes = [e.kind === "message" ? `msg ${e.direction}` : "note"];
  if (history) {
    const cid = e.conversation_id;
    meta.append(badge(e.channel, "channel"));
    if (state.mine.has(cid) && cid !== state.open) {
      const open = element("button", "link", `conversation ${cid.slice(0, 8)}`);
      open.type = "button";
      open.addEventListener("click", () => openConversation(cid));
      meta.append(open);
    } else {
      meta.append(element("span", "cid", cid === state.open ? "this conversation" : `conversation ${cid.slice(0, 8)}`));
    }
    if (cid === state.open) classes.push("current");
  }
  const parts = [meta];
  if (e.kind === "message") {
    meta.append(element("span", "", e.direction === "inbound" ? "customer" : e.agent_id || "agent"));
    if (e.status && e.direction === "outbound") meta.append(badge(e.status, "delivery " + e.status));
    if (e.error) meta.append(element("span", "error", e.error));
    parts.push(element("p", "text", e.text));
    for (const a of e.attachments || []) parts.push(attachment(a));
  } else {
    parts.push(element("p", "text", describe(e)));
  }
  li.className = classes.join(" ");
  li.replaceChildren(...parts);
}

function describe(e) {
  if (e.kind === "opened") return `Opened on ${e.channel} (queue ${e.queue}) from ${e.customer_id}`;
  if (e.kind === "closed") return `Closed (${e.reason || "closed"})`;
  const how = e.accepted_at ? `assigned to ${e.agent_id}` : `offered to ${e.agent_id}`;
  const end = e.ended_at ? ` · ended ${clock(e.ended_at)}: ${e.end_reason || "ended"}` : "";
  return `${how} (${e.strategy}, step ${e.step}, waited ${duration(e.waited_seconds)})${end}`;
}

function attachment(a) {
  const name = a.filename || a.url;
  // Only web links become links: a customer's javascript: or data: URL stays text.
  if (!/^https?:\/\//i.test(a.url)) return element("p", "attachment", `attachment: ${name}`);
  const link = element("a", "attachment", `attachment: ${name}`);
  link.href = a.url;
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  return link;
}

// -- the customer's history --------------------------------------------------------

const RANK = { opened: 0, message: 1, assignment: 2, closed: 3 };

function entryKey(e) {
  return `${e.kind}:${e.message_id || e.assignment_id || e.conversation_id}`;
}

async function loadHistory(older) {
  const id = state.open;
  const view = state.view;
  if (!view || view.conversation_id !== id) return;
  const h = state.history;
  if (h.customer === null) {
    const profile = await call("GET", `/customers/${enc(view.customer_id)}`);
    if (id !== state.open) return;
    if (profile.status === 200) {
      h.customer = profile.body.customer_id;
      renderCustomer(profile.body);
    } else {
      h.customer = view.customer_id;
    }
  }
  const cursor = older ? h.cursor : null;
  const query = `/customers/${enc(h.customer)}/history?limit=50` + (cursor ? `&cursor=${enc(cursor)}` : "");
  const result = await call("GET", query);
  if (id !== state.open || state.history !== h) return;
  if (result.status !== 200) return notice(`Cannot read the customer's history: ${explain(result)}.`, "error");
  for (const e of result.body.entries) h.entries.set(entryKey(e), e);
  if (older || !h.loadedOlder) h.cursor = result.body.next_cursor;
  if (older) h.loadedOlder = true;
  const list = $("history");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const keys = [...h.entries.keys()].sort((a, b) => {
    const x = h.entries.get(a), y = h.entries.get(b);
    return x.at - y.at || RANK[x.kind] - RANK[y.kind] || (a < b ? -1 : a > b ? 1 : 0);
  });
  sync(list, keys, () => element("li"), (li, key) => fillEntry(li, h.entries.get(key), true));
  if (atBottom && !older) list.scrollTop = list.scrollHeight;
  $("history-more").hidden = !h.cursor;
}

function plural(n, word) {
  return `${n || 0} ${word}${n === 1 ? "" : "s"}`;
}

function renderCustomer(profile) {
  const counts = profile.counts || {};
  const channels = Object.entries(counts.by_channel || {}).map(([channel, n]) => `${channel} ${n}`).join(", ");
  const el = $("customer");
  el.replaceChildren(
    element("strong", "", profile.customer_id),
    element("span", "", ` · ${plural(counts.conversations, "conversation")} (${channels || "none"}), ${plural(counts.messages, "message")}`),
  );
  const ids = profile.identities.filter((i) => i.identity !== profile.customer_id).map((i) => i.identity);
  if (ids.length) el.append(element("span", "identities", ` · also ${ids.join(", ")}`));
  if (profile.last_agent_id) el.append(element("span", "", ` · last served by ${profile.last_agent_id}`));
}

// -- actions on the open conversation ----------------------------------------------------

async function command(label, path, body, done) {
  const id = state.open;
  const result = await call("POST", `/conversations/${enc(id)}${path}`, body);
  if (result.status !== 202) {
    notice(`${label} refused: ${explain(result)}.`, "error");
    return false;
  }
  const pending = result.body.status === "pending";
  notice(pending ? `${label}: sent; the router has not confirmed it yet.` : `${label}: ${done}.`, "ok");
  scheduleRefresh(id);
  return true;
}

async function sendReply() {
  const text = $("reply-text").value;
  if (!text.trim() || !state.open) return;
  $("reply-send").disabled = true;
  const result = await call("POST", `/conversations/${enc(state.open)}/reply`, { text });
  $("reply-send").disabled = false;
  if (result.status !== 202) return notice(`Reply refused: ${explain(result)}.`, "error");
  $("reply-text").value = "";
  notice("Reply sent.", "ok");
  scheduleRefresh(state.open);
}

async function snooze(until) {
  if (!until || Number.isNaN(until)) return notice("Pick the time to snooze until.", "error");
  const id = state.open;
  if (await command("Snooze", "/snooze", { until: Math.floor(until) }, `back at ${clock(until)}`)) {
    state.snoozed.set(id, { until, updated_at: null });
    renderMine();
  }
}

function tomorrowAtNine() {
  const at = new Date();
  at.setDate(at.getDate() + 1);
  at.setHours(9, 0, 0, 0);
  return at.getTime() / 1000;
}

async function transfer(body, to) {
  const id = state.open;
  if (await command("Transfer", "/transfer", body, `transferred to ${to}`)) {
    state.mine.delete(id);
    state.order = state.order.filter((other) => other !== id);
    renderMine();
  }
}

async function closeConversation() {
  const id = state.open;
  if (await command("Close", "/close", { reason: "resolved" }, "closed as resolved")) {
    state.mine.delete(id);
    state.order = state.order.filter((other) => other !== id);
    renderMine();
  }
}

function renderAttributes(attributes) {
  const box = $("attributes");
  box.replaceChildren();
  for (const [key, value] of Object.entries(attributes)) addAttributeRow(key, value);
}

function addAttributeRow(key, value) {
  const row = element("div", "attribute");
  const name = element("input", "key");
  name.value = key;
  name.placeholder = "name";
  name.setAttribute("aria-label", "Attribute name");
  name.maxLength = 64;
  const val = element("input", "value");
  val.value = value;
  val.placeholder = "value";
  val.setAttribute("aria-label", "Attribute value");
  val.maxLength = 256;
  const remove = element("button", "quiet", "Remove");
  remove.type = "button";
  remove.setAttribute("aria-label", `Remove attribute ${key}`);
  remove.addEventListener("click", () => {
    row.remove();
    state.contextDirty = true;
  });
  row.append(name, val, remove);
  $("attributes").append(row);
  return name;
}

async function saveContext() {
  const view = state.view;
  if (!view) return;
  const body = {};
  const priority = $("priority").value.trim();
  if (priority !== "" && Number(priority) !== view.priority) body.priority = Number(priority);
  const attributes = {};
  for (const row of $("attributes").children) {
    const key = row.querySelector(".key").value.trim();
    if (key) attributes[key] = row.querySelector(".value").value;
  }
  if (JSON.stringify(attributes) !== JSON.stringify(view.attributes || {})) body.attributes = attributes;
  if (!Object.keys(body).length) return notice("Nothing changed.", "info");
  const id = state.open;
  const result = await call("PATCH", `/conversations/${enc(id)}`, body);
  if (result.status !== 202) return notice(`Saving the context refused: ${explain(result)}.`, "error");
  state.contextDirty = false;
  notice(result.body.status === "pending" ? "Context sent; the router has not confirmed it yet." : "Context saved.", "ok");
  scheduleRefresh(id);
}

async function loadQueues() {
  const result = await call("GET", "/queues");
  if (result.status !== 200) return;
  const select = $("transfer-queue");
  const chosen = select.value;
  select.replaceChildren(...result.body.queues.map((q) => {
    const option = element("option", "", `${q.queue} (${q.waiting} waiting)`);
    option.value = q.queue;
    return option;
  }));
  if (chosen) select.value = chosen;
}

// -- wiring ----------------------------------------------------------------------

$("history-more").addEventListener("click", () => loadHistory(true));
$("reply").addEventListener("submit", (event) => {
  event.preventDefault();
  sendReply();
});
$("reply-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    sendReply();
  }
});
$("snooze-hour").addEventListener("click", () => snooze(now() + 3600));
$("snooze-tomorrow").addEventListener("click", () => snooze(tomorrowAtNine()));
$("snooze-custom").addEventListener("click", () => snooze(new Date($("snooze-at").value).getTime() / 1000));
$("transfer-to-queue").addEventListener("click", () => {
  const queue = $("transfer-queue").value;
  if (queue) transfer({ to_queue: queue }, `queue ${queue}`);
});
$("transfer-to-agent").addEventListener("click", () => {
  const agent = $("transfer-agent").value.trim();
  if (agent) transfer({ to_agent_id: agent }, agent);
});
$("close").addEventListener("click", closeConversation);
$("context-save").addEventListener("click", saveContext);
$("attribute-add").addEventListener("click", () => {
  state.contextDirty = true;
  addAttributeRow("", "").focus();
});
for (const id of ["priority", "attributes"]) $(id).addEventListener("input", () => { state.contextDirty = true; });
