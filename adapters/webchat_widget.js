/*
 * Switchboard web chat widget: one script tag puts a chat box on a page.
 *
 *   <script src="https://switchboard.example.com/v1/domains/acme/webchat/widget.js"
 *           data-domain="acme" data-login-url="/switchboard-login" async></script>
 *
 * Attributes: data-domain (default: the domain in the script's URL), data-login-url
 * (optional: a URL of the page's own site answering 200 with a signed login, see the
 * README, or anything else when nobody is signed in), data-title, data-open="true".
 *
 * It creates a session (or resumes the one kept in localStorage while its token is
 * valid, and for the same signed-in user only), refreshes the token before it expires,
 * keeps the conversation (the visitor's messages and the replies) in localStorage, sends
 * each message with an idempotency message_id (retried with the same id), and keeps a
 * WebSocket open for replies, reconnecting with backoff. The token reaches the socket as
 * a subprotocol, never in a URL. Message text is rendered with textContent only.
 *
 * When the domain has a pre-chat form (GET …/webchat/prechat), it is shown before the
 * first message: built with DOM calls and textContent (never markup of configured text),
 * required fields checked, the answers kept in localStorage with the session and sent
 * with every message (the router applies them when a message opens a conversation). A
 * later form that no longer fits the kept answers (a field gone, an option withdrawn, a
 * new required field) is asked again.
 * Plain JavaScript, no dependency; the page's site must be in webchat.allowed_origins.
 */
(function () {
  "use strict";

  var PROTOCOL = "switchboard.webchat.v1";
  var HISTORY_MAX = 200;
  var RECONNECT_MAX_MS = 30000;

  var script = document.currentScript || (function () {
    var all = document.querySelectorAll("script[src*='/webchat/widget.js']");
    return all[all.length - 1];
  })();
  if (!script) return;
  var src = new URL(script.src, document.baseURI);
  var at = src.pathname.indexOf("/v1/domains/");
  var base = src.origin + src.pathname.slice(0, Math.max(at, 0));
  var domain = script.getAttribute("data-domain") ||
    decodeURIComponent((src.pathname.slice(at).split("/")[3]) || "");
  var loginUrl = script.getAttribute("data-login-url");
  var api = base + "/v1/domains/" + encodeURIComponent(domain) + "/webchat";
  var storageKey = "switchboard.webchat." + domain;

  var state = null;        // {session_id, token, expires_at, user_id, history: [...], prechat}
  var form = [];           // the pre-chat fields: [{name, label, required, options?, max_chars?}]
  var socket = null;
  var attempts = 0;
  var reconnectTimer = null;
  var refreshTimer = null;
  var renewing = null;
  var ui = null;
  var memory = {};         // when localStorage is not available

  // -- storage ---------------------------------------------------------------------

  function load() {
    try {
      var text = window.localStorage.getItem(storageKey);
      return text ? JSON.parse(text) : null;
    } catch (e) {
      return memory[storageKey] || null;
    }
  }

  function save() {
    if (state.history.length > HISTORY_MAX) {
      state.history = state.history.slice(-HISTORY_MAX);
    }
    try {
      window.localStorage.setItem(storageKey, JSON.stringify(state));
    } catch (e) {
      memory[storageKey] = state;
    }
  }

  function now() {
    return Date.now() / 1000;
  }

  function randomId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  // -- the session and its token ------------------------------------------------------

  function fetchLogin() {
    if (!loginUrl) return Promise.resolve(null);
    return fetch(loginUrl, { credentials: "include", headers: { Accept: "application/json" } })
      .then(function (r) { return r.status === 200 ? r.json() : null; })
      .then(function (login) { return login && login.user_id && login.signature ? login : null; })
      .catch(function () { return null; });
  }

  function request(method, path, body, token) {
    var headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = "Bearer " + token;
    return fetch(api + path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      mode: "cors",
    });
  }

  function openSession(login, history, prechat) {
    return request("POST", "/sessions", login ? { login: login } : {}).then(function (r) {
      if (login && r.status >= 400 && r.status < 500) {
        // A login the service refuses (expired, badly signed): chat without it.
        login = null;
        history = [];
        prechat = null;
        return request("POST", "/sessions", {});
      }
      return r;
    }).then(function (r) {
      if (r.status !== 201) throw new Error("session refused: " + r.status);
      return r.json();
    }).then(function (created) {
      state = {
        session_id: created.session_id,
        token: created.token,
        expires_at: created.expires_at,
        user_id: login ? String(login.user_id) : null,
        history: history || [],
        prechat: prechat || null,  // the answers, once the visitor gave them
      };
      save();
    });
  }

  function refresh() {
    return request("POST", "/sessions/" + encodeURIComponent(state.session_id) + "/token", undefined, state.token)
      .then(function (r) {
        if (r.status === 401 || r.status === 403) return "expired";
        if (r.status !== 200) throw new Error("refresh failed: " + r.status);
        return r.json().then(function (renewed) {
          state.token = renewed.token;
          state.expires_at = renewed.expires_at;
          save();
          return "renewed";
        });
      });
  }

  // A valid token, whatever it takes: refreshed, or a new session (the same visitor
  // keeps the history; another one, or one who signed out, does not).
  function renew() {
    if (!renewing) {
      renewing = (state.expires_at > now() + 5 ? refresh() : Promise.resolve("expired"))
        .then(function (outcome) {
          if (outcome !== "expired") return null;
          return fetchLogin().then(function (login) {
            var same = (login ? String(login.user_id) : null) === state.user_id;
            return openSession(login, same ? state.history : [], same ? state.prechat : null);
          }).then(function () {
            render();
            reconnectNow();
          });
        })
        .then(function () { scheduleRefresh(); })
        .finally(function () { renewing = null; });
    }
    return renewing;
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    var left = state.expires_at - now();
    var wait = Math.max(5, left - Math.min(300, left / 2));
    refreshTimer = setTimeout(function () {
      renew().catch(function () { refreshTimer = setTimeout(scheduleRefresh, 30000); });
    }, Math.min(wait * 1000, 2147483647));
  }

  // -- messages -----------------------------------------------------------------------

  function send(text) {
    var entry = { key: "m-" + randomId(), from: "visitor", text: text, at: now(), status: "sending" };
    entry.message_id = entry.key.slice(2);
    state.history.push(entry);
    save();
    render();
    deliver(entry, 0);
  }

  function deliver(entry, tries) {
    var body = { session_id: state.session_id, message_id: entry.message_id, text: entry.text };
    if (state.prechat && Object.keys(state.prechat).length) body.prechat = state.prechat;
    request("POST", "/messages", body, state.token).then(function (r) {
      if (r.status === 202) {
        entry.status = "sent";
      } else if (r.status === 401 && tries < 2) {
        return renew().then(function () { deliver(entry, tries + 1); });
      } else if (r.status === 400 && tries < 2) {
        return r.json().catch(function () { return {}; }).then(function (refusal) {
          if (/^prechat/.test(String((refusal && refusal.error) || ""))) return formChanged(entry, tries);
          entry.status = "failed";
          save();
          render();
        });
      } else if (r.status === 503 || r.status === 429) {
        return retryLater(entry, tries);
      } else {
        entry.status = "failed";
      }
      save();
      render();
    }).catch(function () { retryLater(entry, tries); });
  }

  function retryLater(entry, tries) {
    if (tries >= 6) {
      entry.status = "failed";
      save();
      render();
      return;
    }
    setTimeout(function () { deliver(entry, tries + 1); }, 1000 * Math.pow(2, tries));
  }

  // Messages written but not acknowledged: sent (again: the message_id makes a repeat
  // harmless) once nothing stands in the way.
  function flushPending() {
    state.history.forEach(function (entry) {
      if (entry.from === "visitor" && entry.status === "sending") deliver(entry, 0);
    });
  }

  function received(reply) {
    var key = "r-" + reply.id;
    for (var i = 0; i < state.history.length; i++) {
      if (state.history[i].key === key) return;
    }
    state.history.push({
      key: key,
      from: "agent",
      text: String(reply.text || ""),
      attachments: reply.attachments || [],
      at: reply.sent_at || now(),
    });
    save();
    render();
  }

  // -- the pre-chat form --------------------------------------------------------------

  function fetchForm(fresh) {
    return fetch(api + "/prechat", {
      credentials: "omit",
      mode: "cors",
      cache: fresh ? "no-cache" : "default",
    }).then(function (r) {
      if (r.status !== 200) throw new Error("pre-chat form: " + r.status);
      return r.json();
    }).then(function (answer) {
      form = Array.isArray(answer.fields) ? answer.fields : [];
      if (state && state.prechat) state.prechat = fitted(state.prechat);
    });
  }

  function chars(text) {
    return Array.from(text).length;  // code points, as the service counts
  }

  // The answers that fit the form as it is now (a field gone, an option withdrawn or a
  // text now too long is dropped, and asked again when required).
  function fitted(answers) {
    var kept = {};
    form.forEach(function (field) {
      var value = typeof answers[field.name] === "string" ? answers[field.name] : "";
      if (!value) return;
      if (field.options && field.options.length) {
        if (!field.options.some(function (option) { return option.value === value; })) return;
      } else if (chars(value) > (field.max_chars || 256)) {
        return;
      }
      kept[field.name] = value;
    });
    return kept;
  }

  function formNeeded() {
    if (!state || !form.length) return false;
    if (!state.prechat) return true;
    return form.some(function (field) { return field.required && !state.prechat[field.name]; });
  }

  // The service refused the answers: the form changed since it was loaded. Load it again;
  // the message goes once the form is answered as it is now.
  function formChanged(entry, tries) {
    return fetchForm(true).then(function () {
      save();
      render();
      if (!formNeeded()) deliver(entry, tries + 1);
    });
  }

  function fillForm() {
    var node = ui.prechat;
    while (node.firstChild) node.removeChild(node.firstChild);
    var given = state.prechat || {};
    ui.controls = form.map(function (field, index) {
      var row = element("div", "field");
      var label = document.createElement("label");
      label.htmlFor = "switchboard-prechat-" + index;
      label.textContent = field.label + (field.required ? " *" : "");
      var control;
      if (field.options && field.options.length) {
        control = document.createElement("select");
        var none = document.createElement("option");
        none.value = "";
        none.textContent = "—";
        control.appendChild(none);
        field.options.forEach(function (option) {
          var choice = document.createElement("option");
          choice.value = String(option.value);
          choice.textContent = String(option.label);
          control.appendChild(choice);
        });
      } else {
        control = document.createElement("input");
        control.type = "text";
        control.maxLength = field.max_chars || 256;
      }
      control.id = label.htmlFor;
      control.name = String(field.name);
      control.value = given[field.name] || "";
      if (field.required) control.setAttribute("aria-required", "true");
      row.appendChild(label);
      row.appendChild(control);
      node.appendChild(row);
      return control;
    });
    var problem = element("div", "prechat-error");
    problem.setAttribute("role", "alert");
    var submit = element("button", "prechat-submit");
    submit.type = "submit";
    submit.textContent = "Start chat";
    node.appendChild(problem);
    node.appendChild(submit);
    ui.problem = problem;
  }

  function submitForm() {
    var answers = {};
    var missing = null;
    form.forEach(function (field, index) {
      var control = ui.controls[index];
      var value = String(control.value || "").trim();
      control.removeAttribute("aria-invalid");
      if (value) {
        answers[field.name] = value;
      } else if (field.required && !missing) {
        missing = control;
        control.setAttribute("aria-invalid", "true");
        ui.problem.textContent = "Please answer: " + field.label;
      }
    });
    if (missing) {
      missing.focus();
      return;
    }
    state.prechat = answers;
    save();
    render();
    ui.input.focus();
    flushPending();
  }

  // -- the socket ---------------------------------------------------------------------

  function connect() {
    clearTimeout(reconnectTimer);
    if (state.expires_at <= now() + 5) {
      renew().then(function () { if (!socket) connect(); }, scheduleReconnect);
      return;
    }
    if (socket) {
      var old = socket;
      socket = null;
      old.close();
    }
    var url = api.replace(/^http/, "ws") + "/sessions/" + encodeURIComponent(state.session_id) + "/socket";
    var ws = new WebSocket(url, [PROTOCOL, "bearer." + state.token]);
    var opened = false;
    socket = ws;
    setStatus("connecting");
    ws.onopen = function () {
      opened = true;
      attempts = 0;
      setStatus("connected");
    };
    ws.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message && (message.type === "reply" || message.type === "notification")) received(message);
    };
    ws.onclose = function () {
      if (socket !== ws) return;
      socket = null;
      setStatus("offline");
      if (!opened && attempts >= 2) {
        // Refused again and again: the token may no longer verify (a restarted server
        // without a configured secret). Renewing finds out, and opens a new session.
        renew().catch(function () {}).then(function () { if (!socket) scheduleReconnect(); });
      } else {
        scheduleReconnect();
      }
    };
  }

  function scheduleReconnect() {
    clearTimeout(reconnectTimer);
    var delay = Math.min(RECONNECT_MAX_MS, 1000 * Math.pow(2, attempts));
    attempts += 1;
    reconnectTimer = setTimeout(connect, delay * (0.5 + Math.random() / 2));
  }

  function reconnectNow() {
    attempts = 0;
    connect();
  }

  // -- the box ------------------------------------------------------------------------

  var STYLE = [
    ":host{all:initial;position:fixed;right:16px;bottom:16px;z-index:2147483000;",
    "font:14px/1.4 system-ui,sans-serif;color:#1d2330}",
    "button{font:inherit;cursor:pointer;border:0;border-radius:6px;background:#2458d3;color:#fff;padding:8px 14px}",
    ".panel{display:none;flex-direction:column;width:320px;height:420px;margin-bottom:8px;",
    "background:#fff;border:1px solid #cfd6e4;border-radius:10px;box-shadow:0 6px 24px rgba(0,0,0,.18);overflow:hidden}",
    ".panel.open{display:flex}",
    ".head{padding:10px 12px;background:#2458d3;color:#fff;font-weight:600;display:flex;justify-content:space-between}",
    ".status{font-weight:400;font-size:12px;opacity:.85}",
    ".log{flex:1;overflow-y:auto;padding:10px;display:flex;flex-direction:column;gap:6px;background:#f6f8fc}",
    ".msg{max-width:80%;padding:6px 10px;border-radius:10px;white-space:pre-wrap;word-wrap:break-word}",
    ".visitor{align-self:flex-end;background:#2458d3;color:#fff}",
    ".agent{align-self:flex-start;background:#fff;border:1px solid #dde3ee}",
    ".failed{opacity:.6;text-decoration:line-through}",
    ".msg a{color:inherit;display:block}",
    "form{display:flex;gap:6px;padding:8px;border-top:1px solid #e3e7ef}",
    "input{flex:1;font:inherit;padding:7px;border:1px solid #cfd6e4;border-radius:6px}",
    ".prechat{display:none;flex:1;flex-direction:column;gap:8px;overflow-y:auto;border-top:0}",
    ".prechat.open{display:flex}",
    ".field{display:flex;flex-direction:column;gap:3px}",
    ".field input,.field select{flex:none;font:inherit;padding:6px;border:1px solid #cfd6e4;border-radius:6px}",
    "[aria-invalid=true]{border-color:#c62828}",
    ".prechat-error{color:#c62828;min-height:1em}",
    ".hidden{display:none}",
    ".toggle{float:right}",
  ].join("");

  function build() {
    var host = document.createElement("div");
    host.id = "switchboard-webchat";
    var root = host.attachShadow({ mode: "open" });
    var style = document.createElement("style");
    style.textContent = STYLE;
    var panel = element("div", "panel");
    var head = element("div", "head");
    var title = element("span", "title");
    title.textContent = script.getAttribute("data-title") || "Chat with us";
    var status = element("span", "status");
    head.appendChild(title);
    head.appendChild(status);
    var log = element("div", "log");
    log.setAttribute("role", "log");
    log.setAttribute("aria-live", "polite");
    var prechat = element("form", "prechat");
    prechat.setAttribute("aria-label", "Before we start");
    prechat.noValidate = true;
    var compose = element("form", "compose");
    var input = element("input", "input");
    input.setAttribute("aria-label", "Message");
    input.setAttribute("maxlength", "4000");
    input.placeholder = "Write a message…";
    var submit = element("button", "send");
    submit.type = "submit";
    submit.textContent = "Send";
    compose.appendChild(input);
    compose.appendChild(submit);
    panel.appendChild(head);
    panel.appendChild(log);
    panel.appendChild(prechat);
    panel.appendChild(compose);
    var toggle = element("button", "toggle");
    toggle.type = "button";
    toggle.textContent = "Chat";
    toggle.setAttribute("aria-expanded", "false");
    root.appendChild(style);
    root.appendChild(panel);
    root.appendChild(toggle);
    toggle.addEventListener("click", function () {
      var open = panel.classList.toggle("open");
      toggle.setAttribute("aria-expanded", String(open));
      if (open) input.focus();
    });
    compose.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text || !state || formNeeded()) return;
      input.value = "";
      send(text);
    });
    prechat.addEventListener("submit", function (event) {
      event.preventDefault();
      if (state) submitForm();
    });
    if (script.getAttribute("data-open") === "true") {
      panel.classList.add("open");
      toggle.setAttribute("aria-expanded", "true");
    }
    document.body.appendChild(host);
    ui = {
      host: host,
      log: log,
      status: status,
      prechat: prechat,
      compose: compose,
      input: input,
      controls: [],
      problem: null,
    };
  }

  function element(tag, className) {
    var node = document.createElement(tag);
    node.className = className;
    return node;
  }

  function render() {
    if (!ui || !state) return;
    var asking = formNeeded();
    if (asking && !ui.prechat.classList.contains("open")) fillForm();  // not while typing
    ui.prechat.classList.toggle("open", asking);
    ui.log.classList.toggle("hidden", asking);
    ui.compose.classList.toggle("hidden", asking);
    var log = ui.log;
    while (log.firstChild) log.removeChild(log.firstChild);
    state.history.forEach(function (entry) {
      var bubble = element("div", "msg " + (entry.from === "agent" ? "agent" : "visitor"));
      if (entry.status === "failed") bubble.className += " failed";
      bubble.textContent = entry.text;
      (entry.attachments || []).forEach(function (attachment) {
        var url = String(attachment.url || "");
        if (!/^https?:\/\//i.test(url)) return;
        var link = document.createElement("a");
        link.href = url;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        link.textContent = attachment.filename || url;
        bubble.appendChild(link);
      });
      log.appendChild(bubble);
    });
    log.scrollTop = log.scrollHeight;
  }

  function setStatus(text) {
    if (!ui) return;
    ui.status.textContent = text;
    ui.host.setAttribute("data-state", text);
  }

  // -- start --------------------------------------------------------------------------

  function start() {
    build();
    setStatus("starting");
    Promise.all([fetchLogin(), fetchForm(false)]).then(function (found) {
      var login = found[0];
      var stored = load();
      var user = login ? String(login.user_id) : null;
      if (stored && (stored.user_id || null) !== user) stored = null; // another visitor, or signed out
      if (stored && stored.prechat) stored.prechat = fitted(stored.prechat);
      if (stored && stored.session_id && stored.expires_at > now() + 30) {
        state = stored;
        return null;
      }
      return openSession(login, stored ? stored.history : [], stored ? stored.prechat : null);
    }).then(function () {
      render();
      scheduleRefresh();
      connect();
      if (!formNeeded()) flushPending(); // not acknowledged before
    }).catch(function () {
      setStatus("unavailable");
      setTimeout(restart, 10000);
    });
  }

  function restart() {
    if (ui && ui.host.parentNode) ui.host.parentNode.removeChild(ui.host);
    start();
  }

  if (document.body) {
    start();
  } else {
    document.addEventListener("DOMContentLoaded", start);
  }
})();
