// The caller's live events (GET /v1/events) read with fetch, so the token goes in the
// Authorization header and never in a URL. Reconnects with Last-Event-ID after the stream ends
// (the server ends streams on time) or breaks, with a growing pause after failures.

import { forget, session } from "./api.js";

/** Splits an event stream's text into events: `{ id, event, data }`, as the SSE spec reads it. */
export class Parser {
  constructor() {
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.data = [];
    this.event = "";
    this.id = null;
  }

  /** Feeds decoded text; answers the events it completed. */
  push(text) {
    this.buffer += text;
    const events = [];
    let end;
    while ((end = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      // A lone CR at the end may be the first half of CR LF: wait for more.
      if (this.buffer[end] === "\r" && end === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + (this.buffer.startsWith("\r\n", end) ? 2 : 1));
      if (line === "") {
        if (this.data.length > 0) {
          events.push({ id: this.id, event: this.event || "message", data: this.data.join("\n") });
        }
        this.data = [];
        this.event = "";
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") this.data.push(value);
      else if (field === "event") this.event = value;
      else if (field === "id" && !value.includes("\0")) this.id = value;
    }
    return events;
  }
}

/**
 * Follows the stream until `stop()`. `onEvent(type, payload)` for each event; `onState(state)`
 * with "live", "reconnecting" or "stopped".
 */
export function follow(onEvent, onState) {
  const controller = new AbortController();
  let lastId = null;
  let failures = 0;
  let stopped = false;

  const wait = (ms) =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      controller.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      });
    });

  async function once() {
    const current = session();
    if (!current) {
      forget();
      return false;
    }
    const headers = { Accept: "text/event-stream", Authorization: "Bearer " + current.token };
    if (lastId) headers["Last-Event-ID"] = lastId;
    const response = await fetch("/v1/events", { headers, signal: controller.signal, cache: "no-store" });
    if (response.status === 401) {
      forget(current.token);
      return false;
    }
    if (!response.ok) throw new Error("the event stream answered " + response.status);
    onState("live");
    failures = 0;
    const parser = new Parser();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return true;
      for (const frame of parser.push(value)) {
        if (frame.id) lastId = frame.id;
        let payload = null;
        try {
          payload = JSON.parse(frame.data);
        } catch {
          continue;
        }
        onEvent(frame.event, payload);
      }
    }
  }

  (async () => {
    while (!stopped) {
      const opened = Date.now();
      try {
        if (!(await once())) break;
        // A stream that ends at once is not a healthy one: back off as after a failure.
        if (Date.now() - opened < 2000) failures += 1;
      } catch (error) {
        if (stopped || error.name === "AbortError") break;
        failures += 1;
      }
      if (stopped) break;
      onState("reconnecting");
      // Right away after a clean end; 1, 2, 4 ... 30 s after failures.
      if (failures > 0) await wait(Math.min(30000, 1000 * 2 ** (failures - 1)));
    }
    onState("stopped");
  })();

  return {
    stop() {
      stopped = true;
      controller.abort();
    },
  };
}
