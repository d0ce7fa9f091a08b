"use strict";
// The routing stream (GET /v1/domains/{domain}/stream), read from a fetch() body so the
// token stays in the Authorization header: shared by the console and the agent inbox.

// Ids of recent events: a resume older than the server's buffer replays the whole buffer,
// and each event must count once.
const SEEN_LIMIT = 20000;

function newSeenEvents() {
  const ids = new Set();
  const order = [];
  return {
    // True the first time an id is offered.
    first(id) {
      if (ids.has(id)) return false;
      ids.add(id);
      order.push(id);
      if (order.length > SEEN_LIMIT) ids.delete(order.shift());
      return true;
    },
    clear() {
      ids.clear();
      order.length = 0;
    },
  };
}

// Read Server-Sent Events until the body ends: onEvent(type, data, id) once per event
// (an event seen before is skipped).
async function readEvents(reader, seenEvents, onEvent) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message", data = "", id = null;
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
        else if (line.startsWith("id:")) id = line.slice(3).trim();
      }
      if (id && !seenEvents.first(id)) continue;
      if (data) onEvent(type, data, id);
    }
  }
}
