// Switchboard agent inbox: a reference agent desktop on the public agent API only, with no
// build step and no dependencies. The agent's routing stream is read with fetch() streaming
// so that the bearer token travels in the Authorization header (EventSource cannot send
// headers). Everything a customer wrote is put in the page with textContent, never as markup.
// This file: signing in, presence, the stream, offers and the agent's list;
// inbox-conversation.js: one conversation, the customer's history and the actions on them.
// Both are deferred classic scripts sharing their top-level names.
"use strict";

const POLL_MS = 4000;
const QUEUES_MS = 30000;
const PAGE = 50;
const STORE = "switchboard.inbox.";
const $ = (id) => document.getElementById(id);

const DECLINE_REASONS = [
  ["on_a_call", "On a call"],
  ["wrong_language", "Wrong language"],
  ["not_my_topic", "Not my topic"],
  ["end_of_shift", "End of shift"],
];

// The router's refusal codes (409), in words.
const REASONS = {
  reply_window_closed: "the channel's reply window has closed: the customer has to write again before a free-form reply can go out (or send an approved template)",
  conversation_closed: "the conversation is closed",
  not_owner: "you do not own this conversation (any more)",
  not_owned: "you do not own this conversation (any more)",
  not_offered_to_agent: "this offer is no longer yours (it expired, or moved on)",
  owned_by_another_agent: "another agent owns it already",
  already_owner: "that agent owns it already",
  already_offered: "it is offered to that agent already",
  unknown_conversation: "the router does not know this conversation",
  unknown_agent: "there is no such agent",
  unknown_queue: "there is no such queue",
  until_not_in_future: "pick a time in the future",
  until_too_far: "a snooze lasts at most 90 days",
  at_capacity: "no free slot on this channel",
  away: "the agent is away",
  offline: "the agent is offline",
  no_channel: "the agent does not take this channel",
  missing_skill: "the agent lacks a skill it needs",
  not_in_queue: "the agent is not in its queue",
};

const state = {
  signedIn: false, domain: "", agent: "", token: "", presenceAsked: null,
  abort: null, lastEventId: null, timers: [], refreshTimer: null, refreshOpen: false,
  offers: new Map(), // conversation id -> offer
  mine: new Map(), // conversation id -> list item (or a provisional one from the stream)
  order: [], pages: 1, nextCursor: null, listSeq: 0,
  snoozed: new Map(), // conversation id -> { until, updated_at }
  unread: new Set(),
  open: null, view: null, contextDirty: false,
  history: { customer: null, entries: new Map(), cursor: null, loadedOlder: false },
};

const enc = encodeURIComponent;

function api(path) {
  return `/v1/domains/${enc(state.domain)}${path}`;
}

async function call(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + state.token } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(api(path), init);
  } catch (error) {
    return { status: 0, body: { error: "the service cannot be reached" } };
  }
  const answer = await response.json().catch(() => ({}));
  if (response.status === 401 && state.signedIn) {
    signOut("Your token was refused (expired or revoked): sign in again.");
  }
  return { status: response.status, body: answer };
}

function explain(result) {
  const code = result.body && result.body.error;
  if (result.status === 409) return REASONS[code] ? `${REASONS[code]} (${code})` : code;
  if (result.status === 503) return "the service is unavailable for a moment: try again";
  if (result.status === 0) return code;
  return code || `HTTP ${result.status}`;
}

function notice(text, kind) {
  const el = $("notice");
  el.textContent = text;
  el.className = "notice " + (kind || "info");
  el.hidden = !text;
}

function setStatus(text, ok) {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + (ok ? "on" : "off");
}

// -- formatting ----------------------------------------------------------------

function duration(seconds) {
  seconds = Math.max(0, seconds);
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}

function clock(epoch) {
  if (epoch === null || epoch === undefined) return "–";
  const at = new Date(epoch * 1000);
  const today = new Date().toDateString() === at.toDateString();
  return today ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : at.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

function now() {
  return Date.now() / 1000;
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined && text !== null) el.textContent = String(text);
  return el;
}

function badge(text, kind) {
  return element("span", "badge " + (kind || ""), text);
}

// Keeps the children of ``list`` in the order of ``keys``, reusing each key's element so a
// refresh neither loses the keyboard focus nor the reader's place.
function sync(list, keys, make, update) {
  const existing = new Map([...list.children].map((el) => [el.dataset.key, el]));
  let cursor = list.firstChild;
  for (const key of keys) {
    let el = existing.get(key);
    existing.delete(key);
    if (!el) {
      el = make(key);
      el.dataset.key = key;
    }
    update(el, key);
    if (el === cursor) cursor = cursor.nextSibling;
    else list.insertBefore(el, cursor);
  }
  for (const el of existing.values()) el.remove();
}

// -- signing in ----------------------------------------------------------------

async function signIn(domain, token) {
  Object.assign(state, { domain, agent: "", token });
  notice("");
  setStatus("signing in…", false);
  // The token says whose it is; only an agent's token has conversations of its own.
  const caller = await call("GET", "/me");
  if (caller.status !== 200) {
    const why = {
      0: "the service cannot be reached",
      401: "this token is not valid (mistyped, expired or revoked)",
      403: `this token is not valid in domain ${domain}`,
      404: `there is no domain ${domain}`,
    }[caller.status] || explain(caller);
    return refuseSignIn(`Cannot sign in: ${why}.`);
  }
  if (caller.body.scope !== "agent" || !caller.body.agent_id) {
    return refuseSignIn("Cannot sign in: this is not an agent token: use the agent's own token.");
  }
  const agent = caller.body.agent_id;
  state.agent = agent;
  const me = await call("GET", `/agents/${enc(agent)}`);
  if (me.status !== 200) {
    const why = me.status === 404 ? `agent ${agent} is not registered` : explain(me);
    return refuseSignIn(`Cannot sign in: ${why}.`);
  }
  sessionStorage.setItem(STORE + "domain", domain);
  sessionStorage.setItem(STORE + "token", token);
  state.signedIn = true;
  $("signin").hidden = true;
  $("signed-in").hidden = false;
  $("inbox").hidden = false;
  renderMe(me.body);
  state.abort = new AbortController();
  follow(state.abort.signal);
  refreshMine();
  loadQueues();
  state.timers.push(setInterval(poll, POLL_MS), setInterval(loadQueues, QUEUES_MS), setInterval(tick, 1000));
}

function refuseSignIn(text) {
  state.token = "";
  setStatus("signed out", false);
  notice(text, "error");
}

function signOut(reason) {
  if (state.abort) state.abort.abort();
  state.timers.forEach(clearInterval);
  clearTimeout(state.refreshTimer);
  sessionStorage.removeItem(STORE + "token");
  sessionStorage.removeItem(STORE + "open");
  Object.assign(state, {
    signedIn: false, token: "", presenceAsked: null, abort: null, lastEventId: null, timers: [], order: [], pages: 1,
    nextCursor: null, open: null, view: null, contextDirty: false,
  });
  for (const map of [state.offers, state.mine, state.snoozed, state.unread, state.history.entries]) map.clear();
  seen.clear();
  for (const id of ["offers", "mine", "timeline", "history", "facts"]) $(id).replaceChildren();
  $("token").value = "";
  $("signin").hidden = false;
  $("signed-in").hidden = true;
  $("inbox").hidden = true;
  $("conversation-body").hidden = true;
  $("conversation-empty").hidden = false;
  document.title = "Switchboard inbox";
  setStatus("signed out", false);
  notice(reason || "", reason ? "error" : "info");
}

function renderMe(agent) {
  $("me").textContent = agent.name ? `${agent.name} (${agent.agent_id})` : agent.agent_id;
  // A read made before the router applied a change just asked for would undo it on screen.
  const asked = state.presenceAsked;
  const shown = asked && asked.until > Date.now() && asked.presence !== agent.presence ? asked.presence : agent.presence;
  showPresence(shown);
  const slots = Object.entries(agent.capacity || {})
    .map(([channel, capacity]) => `${channel} ${(agent.load || {})[channel] || 0}/${capacity}`);
  const s = agent.stats || {};
  const median = s.median_first_response_seconds_today;
  $("today").textContent = `Today: ${s.handled_today || 0} handled · first response median `
    + `${median === null || median === undefined ? "–" : duration(median)} · load ${slots.join(", ") || "none"}`;
}

async function refreshMe() {
  const me = await call("GET", `/agents/${enc(state.agent)}`);
  if (me.status === 200) renderMe(me.body);
}

async function setPresence(presence) {
  const result = await call("POST", `/agents/${enc(state.agent)}/presence`, { status: presence });
  if (result.status !== 202) return notice(`Presence refused: ${explain(result)}.`, "error");
  state.presenceAsked = { presence, until: Date.now() + 5000 };
  showPresence(presence);
  notice(`You are ${presence}.`, "ok");
}

function showPresence(presence) {
  for (const button of document.querySelectorAll("[data-presence]")) {
    button.setAttribute("aria-pressed", String(button.dataset.presence === presence));
  }
}

// -- the stream ----------------------------------------------------------------

async function follow(signal) {
  while (!signal.aborted) {
    try {
      const headers = { Authorization: "Bearer " + state.token };
      if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
      const response = await fetch(api(`/stream?agent_id=${enc(state.agent)}`), { headers, signal });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        setStatus(`stream: ${response.status} ${body.error || ""}`, false);
        if ([401, 403, 404].includes(response.status)) return;
      } else {
        setStatus("live", true);
        // Events missed while away are in the lists: catch up with them at once.
        scheduleRefresh(state.open);
        await readStream(response.body.getReader());
        setStatus("reconnecting…", false);
      }
    } catch (error) {
      if (signal.aborted) return;
      setStatus("reconnecting…", false);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

const seen = newSeenEvents();

function readStream(reader) {
  return readEvents(reader, seen, (type, data, id) => {
    if (id) state.lastEventId = id;
    onEvent(type, data);
  });
}

const KEEPS_OFFER = new Set(["conversation.offered", "conversation.updated", "message.routed", "conversation.reply_window_closed"]);

function onEvent(type, data) {
  let e;
  try { e = JSON.parse(data); } catch { return; }
  const id = e.conversation_id;
  if (!id || type.startsWith("command.")) return;
  const me = state.agent;
  if (type === "conversation.offered" && e.agent_id === me) {
    if (!e.expires_at || e.expires_at > now()) {
      state.offers.set(id, { ...offerOf(e), expires_at: e.expires_at, seen_at: Date.now() });
    }
  } else if (!KEEPS_OFFER.has(type)) {
    state.offers.delete(id);
  }
  if (type === "conversation.assigned" && e.agent_id === me && !state.mine.has(id)) {
    state.mine.set(id, provisional(e));
    state.order = [id, ...state.order.filter((other) => other !== id)];
  } else if ((type === "conversation.reassigned" && e.from_agent_id === me) || type === "conversation.closed") {
    state.mine.delete(id);
    state.order = state.order.filter((other) => other !== id);
  } else if (type === "conversation.snoozed") {
    state.snoozed.set(id, { until: e.until, updated_at: null });
  } else if (type === "message.routed" && id !== state.open) {
    state.unread.add(id);
  }
  renderOffers();
  renderMine();
  scheduleRefresh(id);
}

function offerOf(item) {
  return { conversation_id: item.conversation_id, channel: item.channel, customer_id: item.customer_id, queue: item.queue };
}

function provisional(e) {
  return {
    ...offerOf(e), status: "assigned", owner_agent_id: e.agent_id, priority: 0,
    last_customer_message_at: e.occurred_at, last_agent_reply_at: null,
    reply_window_closed: Boolean(e.reply_window_closed), updated_at: e.occurred_at, provisional: Date.now(),
  };
}

// Refreshes coalesce: a burst of events costs one list request (and one of the open
// conversation when the burst concerns it).
function scheduleRefresh(conversationId) {
  if (conversationId && conversationId === state.open) state.refreshOpen = true;
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => {
    refreshMine();
    refreshMe();
    if (state.refreshOpen && state.open) {
      loadConversation();
      loadHistory(false);
    }
    state.refreshOpen = false;
  }, 150);
}

function poll() {
  refreshMine();
  refreshMe();
  if (state.open) {
    loadConversation();
    loadHistory(false);
  }
}

function tick() {
  for (const [id, offer] of state.offers) {
    if (offer.expires_at && offer.expires_at <= now()) state.offers.delete(id);
  }
  renderOffers();
  renderMine();
}

// -- offers and the agent's conversations ----------------------------------------

async function refreshMine() {
  const started = Date.now();
  const seq = ++state.listSeq;
  const items = [];
  let cursor = null;
  for (let page = 0; page < state.pages; page++) {
    const query = `/conversations?mine=true&limit=${PAGE}` + (cursor ? `&cursor=${enc(cursor)}` : "");
    const result = await call("GET", query);
    if (result.status !== 200) return notice(`Cannot refresh your conversations: ${explain(result)}.`, "error");
    items.push(...result.body.conversations);
    cursor = result.body.next_cursor;
    if (!cursor) break;
  }
  await learnSnoozes(items);
  if (seq !== state.listSeq || !state.signedIn) return; // a newer refresh answers instead
  state.nextCursor = cursor;
  const me = state.agent;
  const offered = new Map(items.filter((i) => i.status === "offered" && i.offered_to === me).map((i) => [i.conversation_id, i]));
  for (const [id, item] of offered) {
    if (!state.offers.has(id)) state.offers.set(id, { ...offerOf(item), expires_at: null, seen_at: started });
  }
  for (const [id, offer] of state.offers) {
    if (!offered.has(id) && offer.seen_at < started) state.offers.delete(id);
  }
  const owned = items.filter((i) => i.status !== "offered");
  const listed = new Set(owned.map((i) => i.conversation_id));
  const fresh = [...state.mine.values()].filter((i) => i.provisional && i.provisional > started && !listed.has(i.conversation_id));
  state.mine = new Map([...fresh, ...owned].map((i) => [i.conversation_id, i]));
  state.order = [...state.mine.keys()];
  renderOffers();
  renderMine();
}

// The list does not say whether an idle conversation is snoozed: its own view does. Asked
// once per change of the conversation (its updated_at).
async function learnSnoozes(items) {
  for (const item of items) {
    const id = item.conversation_id;
    if (item.status !== "idle") {
      state.snoozed.delete(id);
      continue;
    }
    const known = state.snoozed.get(id);
    if (known && (known.updated_at === item.updated_at || known.updated_at === null)) {
      known.updated_at = item.updated_at;
      continue;
    }
    const result = await call("GET", `/conversations/${enc(id)}?limit=1`);
    if (result.status === 200) state.snoozed.set(id, { until: result.body.snoozed_until, updated_at: item.updated_at });
  }
}

function renderOffers() {
  const ids = [...state.offers.keys()];
  sync($("offers"), ids, makeOffer, updateOffer);
  $("offer-count").textContent = ids.length;
  $("no-offers").hidden = ids.length > 0;
  document.title = ids.length ? `(${ids.length}) Switchboard inbox` : "Switchboard inbox";
}

function makeOffer(id) {
  const li = element("li", "offer");
  li.dataset.conversationId = id;
  const head = element("div", "head");
  head.append(element("span", "channel"), element("span", "who"), element("span", "queue"), element("span", "expires"));
  const accept = element("button", "accept", "Accept");
  accept.type = "button";
  accept.addEventListener("click", () => acceptOffer(id));
  const reason = element("select", "reason");
  reason.setAttribute("aria-label", "Reason for declining");
  for (const [code, label] of DECLINE_REASONS) {
    const option = element("option", "", label);
    option.value = code;
    reason.append(option);
  }
  const decline = element("button", "decline quiet", "Decline");
  decline.type = "button";
  decline.addEventListener("click", () => declineOffer(id, reason.value));
  const row = element("div", "row");
  row.append(accept, reason, decline);
  li.append(head, row);
  return li;
}

function updateOffer(li, id) {
  const offer = state.offers.get(id);
  const [channel, who, queue, expires] = li.querySelector(".head").children;
  channel.replaceChildren(badge(offer.channel, "channel"));
  who.textContent = offer.customer_id;
  queue.textContent = `queue ${offer.queue}`;
  expires.textContent = offer.expires_at ? `expires in ${duration(offer.expires_at - now())}` : "";
  li.querySelector(".accept").setAttribute("aria-label", `Accept ${offer.channel} conversation of ${offer.customer_id}`);
}

function renderMine() {
  sync($("mine"), state.order, makeRow, updateRow);
  $("mine-count").textContent = state.order.length;
  $("no-mine").hidden = state.order.length > 0;
  $("mine-more").hidden = !state.nextCursor;
}

function makeRow(id) {
  const li = element("li");
  li.dataset.conversationId = id;
  const button = element("button", "item");
  button.type = "button";
  button.append(element("span", "who"), element("span", "flags"), element("span", "wait"));
  button.addEventListener("click", () => openConversation(id));
  li.append(button);
  return li;
}

function updateRow(li, id) {
  const item = state.mine.get(id);
  const button = li.firstChild;
  const [who, flags, wait] = button.children;
  who.textContent = item.customer_id;
  const badges = [badge(item.channel, "channel"), badge(item.status, "state " + item.status)];
  const snooze = state.snoozed.get(id);
  if (snooze && snooze.until) badges.push(badge(`snoozed until ${clock(snooze.until)}`, "snoozed"));
  if (item.reply_window_closed) badges.push(badge("reply window closed", "warn"));
  if (item.priority) badges.push(badge(`priority ${item.priority}`, "priority"));
  if (state.unread.has(id)) badges.push(badge("new message", "new"));
  flags.replaceChildren(...badges);
  const answered = item.last_agent_reply_at && item.last_agent_reply_at >= item.last_customer_message_at;
  wait.textContent = answered ? `answered ${clock(item.last_agent_reply_at)}`
    : `waiting ${duration(now() - item.last_customer_message_at)}`;
  li.classList.toggle("waiting", !answered);
  button.setAttribute("aria-current", String(id === state.open));
}

async function acceptOffer(id) {
  const offer = state.offers.get(id);
  const result = await call("POST", `/conversations/${enc(id)}/accept`, {});
  if (result.status !== 202) {
    if (result.body.error === "not_offered_to_agent") state.offers.delete(id);
    renderOffers();
    return notice(`Accept refused: ${explain(result)}.`, "error");
  }
  state.offers.delete(id);
  if (offer && !state.mine.has(id)) {
    state.mine.set(id, provisional({ ...offer, agent_id: state.agent, occurred_at: now() }));
    state.order = [id, ...state.order.filter((other) => other !== id)];
  }
  renderOffers();
  renderMine();
  notice(result.body.status === "pending" ? "Accepted; the router has not confirmed it yet." : "Accepted.", "ok");
  openConversation(id);
}

async function declineOffer(id, reason) {
  const result = await call("POST", `/conversations/${enc(id)}/decline`, { reason });
  if (result.status !== 202 && result.body.error !== "not_offered_to_agent") {
    return notice(`Decline refused: ${explain(result)}.`, "error");
  }
  state.offers.delete(id);
  renderOffers();
  notice(result.status === 202 ? "Declined: it moves on to someone else." : `Decline: ${explain(result)}.`, "ok");
  focusFirst("#offers .accept, #mine .item");
}

function focusFirst(selector) {
  const next = document.querySelector(selector);
  if (next && document.activeElement === document.body) next.focus();
}

// -- wiring ----------------------------------------------------------------------

$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("domain").value.trim(), $("token").value.trim());
});
$("signout").addEventListener("click", () => signOut());
for (const button of document.querySelectorAll("[data-presence]")) {
  button.addEventListener("click", () => setPresence(button.dataset.presence));
}
$("mine-more").addEventListener("click", () => {
  state.pages += 1;
  refreshMine();
});

// Signed in already in this tab: once both scripts ran (they are deferred).
document.addEventListener("DOMContentLoaded", () => {
  const saved = {
    domain: sessionStorage.getItem(STORE + "domain"),
    token: sessionStorage.getItem(STORE + "token"),
  };
  if (saved.domain) $("domain").value = saved.domain;
  if (saved.domain && saved.token) {
    signIn(saved.domain, saved.token).then(() => {
      const open = sessionStorage.getItem(STORE + "open");
      if (state.signedIn && open) openConversation(open);
    });
  }
});
