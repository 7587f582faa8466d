// A parser for the `text/event-stream` format (the WHATWG HTML standard's "server-sent
// events"), for the live helper's fetch transport: Node has no `EventSource`, so there the
// stream is read from `fetch`'s body and parsed here exactly as a browser would parse it.
//
// Text goes in as it arrives, in chunks cut anywhere (inside a line, between `\r` and `\n`);
// each complete event comes out once its blank line arrives. An event cut off by the end of
// the stream is dropped, as the standard says.

/** One dispatched event: its `event:` type (`message` when none), data and last event id. */
export interface SseEvent {
  /** The `event:` field, or `message` when the event had none. */
  type: string;
  /** The `data:` lines joined with `\n`. */
  data: string;
  /** The stream's last event id when this event was dispatched (`id:` fields persist). */
  lastEventId: string;
}

/** What the parser reports besides events. */
export interface SseHandlers {
  /** A complete event. */
  onEvent: (event: SseEvent) => void;
  /** A valid `retry:` field: the reconnection time the server asks for, in milliseconds. */
  onRetry?: (ms: number) => void;
  /** A comment line (`: keep-alive`), without its leading colon. */
  onComment?: (text: string) => void;
}

export class SseParser {
  readonly #handlers: SseHandlers;
  #buffer = "";
  // A chunk ended in `\r`: a `\n` opening the next chunk belongs to the same line break.
  #pendingCr = false;
  #data: string[] = [];
  #type = "";
  #lastEventId = "";

  constructor(handlers: SseHandlers) {
    this.#handlers = handlers;
  }

  /** The last event id seen so far (what a reconnect sends as `Last-Event-ID`). */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /** Feeds the next piece of the stream's text (already decoded from UTF-8). */
  push(chunk: string): void {
    let text = chunk;
    if (this.#pendingCr) {
      this.#pendingCr = false;
      if (text.startsWith("\n")) text = text.slice(1);
    }
    const buffer = this.#buffer + text;
    let start = 0;
    for (let i = 0; i < buffer.length; i++) {
      const c = buffer[i];
      if (c !== "\n" && c !== "\r") continue;
      this.#line(buffer.slice(start, i));
      if (c === "\r") {
        if (i + 1 === buffer.length) this.#pendingCr = true;
        else if (buffer[i + 1] === "\n") i++;
      }
      start = i + 1;
    }
    this.#buffer = buffer.slice(start);
  }

  #line(line: string): void {
    if (line === "") {
      this.#dispatch();
      return;
    }
    if (line.startsWith(":")) {
      this.#handlers.onComment?.(line.slice(1).replace(/^ /, ""));
      return;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
    switch (field) {
      case "event":
        this.#type = value;
        break;
      case "data":
        this.#data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.#lastEventId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.#handlers.onRetry?.(Number(value));
        break;
      default:
        // Unknown fields are ignored, as the standard says.
        break;
    }
  }

  #dispatch(): void {
    const data = this.#data;
    const type = this.#type;
    this.#data = [];
    this.#type = "";
    if (data.length === 0) return;
    this.#handlers.onEvent({
      type: type === "" ? "message" : type,
      data: data.join("\n"),
      lastEventId: this.#lastEventId,
    });
  }
}
