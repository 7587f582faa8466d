// Live counts: `GET /v1/live?ids=…` as a callback. The api streams server-sent events, a
// `counts` event per post at once and whenever its counts change, a `missing` event per id
// naming no post; this turns them into `onCounts(counts)` and `onMissing(postId)` calls and
// keeps the stream open: when it fails or ends (the api restarting, a proxy cutting it, a 503
// because the api has too many streams open) it reconnects after a growing, jittered delay,
// and the new stream starts with every post's current counts again, so nothing is missed.
//
// In browsers it uses `EventSource`; where there is none (Node) it reads the stream from
// `fetch`'s body with the parser in sse.ts.
import type { components, paths } from "./schema.js";
import { SseParser, type SseEvent } from "./sse.js";

/** A post's absolute counts, as a `counts` event carries them (the spec's `LiveCounts`). */
export type LiveCounts = components["schemas"]["LiveCounts"];
/** The data of a `missing` event: an id naming no post (the spec's `LiveMissing`). */
export type LiveMissing = components["schemas"]["LiveMissing"];

// What the spec says `GET /v1/live` streams: events named `counts` or `missing`. If the spec's
// stream ever names another kind of event, this stops compiling until the helper handles it.
type StreamedEvent =
  paths["/v1/live"]["get"]["responses"][200]["content"]["text/event-stream"]["event"];
const handlesEveryKind: [StreamedEvent] extends ["counts" | "missing"] ? true : never = true;
void handlesEveryKind;

/** Why a live stream failed; the helper retries after `retryInMs`. */
export class LiveError extends Error {
  /** The HTTP status when the api answered something other than a stream (e.g. 503). */
  readonly status: number | undefined;
  /** How long until the next attempt. */
  readonly retryInMs: number;

  constructor(message: string, retryInMs: number, status?: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "LiveError";
    this.retryInMs = retryInMs;
    this.status = status;
  }
}

export interface LiveOptions {
  /** Called once for each id that names no post (never created, or deleted); it is not followed. */
  onMissing?: (postId: string) => void;
  /** Called when a stream is open and answering. */
  onOpen?: () => void;
  /** Called each time a stream fails or ends, before the helper reconnects. */
  onError?: (error: LiveError) => void;
  /** `auto` (the default): `EventSource` when there is one, else `fetch`. */
  transport?: "auto" | "eventsource" | "fetch";
  /** The first reconnection delay, in ms (default 500); it doubles per failure in a row. */
  minRetryMs?: number;
  /** The longest reconnection delay, in ms (default 30000). */
  maxRetryMs?: number;
  /**
   * fetch transport only: a stream silent this long (ms, default 45000: three of the api's
   * 15 s keep-alives) is taken for dead and reopened.
   */
  idleTimeoutMs?: number;
  /** Stops the stream when aborted, like the returned function. */
  signal?: AbortSignal;
}

/** Stops the stream and every reconnection; calling it again does nothing. */
export type StopLive = () => void;

const MAX_IDS = 100;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Whether `value` has the shape of a `counts` event's data. */
export function isLiveCounts(value: unknown): value is LiveCounts {
  if (typeof value !== "object" || value === null) return false;
  const v: Partial<Record<keyof LiveCounts, unknown>> = value;
  return (
    typeof v.post_id === "string" &&
    Number.isInteger(v.likes) &&
    Number.isInteger(v.comments) &&
    typeof v.updated_at === "string"
  );
}

/** Whether `value` has the shape of a `missing` event's data. */
function isLiveMissing(value: unknown): value is LiveMissing {
  if (typeof value !== "object" || value === null) return false;
  const v: Partial<Record<keyof LiveMissing, unknown>> = value;
  return typeof v.post_id === "string";
}

/** The ids as the api takes them, lower-case; throws on a list the api would refuse. */
function checkedIds(postIds: readonly string[]): string[] {
  if (postIds.length < 1 || postIds.length > MAX_IDS) {
    throw new RangeError(`live() takes 1 to ${MAX_IDS} post ids, got ${postIds.length}`);
  }
  return postIds.map((id) => {
    const lower = id.toLowerCase();
    if (!UUID.test(lower)) throw new TypeError(`live() takes post ids as UUIDs, got ${JSON.stringify(id)}`);
    return lower;
  });
}

/** What one connection attempt reports back to the loop in `live`. */
interface Connection {
  close(): void;
}

interface ConnectionHandlers {
  event(event: SseEvent): void;
  open(): void;
  retryHint(ms: number): void;
  fail(message: string, status?: number, retryAfterMs?: number, cause?: unknown): void;
}

/** The delay before attempt `failures + 1`: doubling from `min` to `max`, half of it random. */
function backoff(failures: number, min: number, max: number): number {
  const ceiling = Math.min(max, min * 2 ** failures);
  // Half fixed, half random: viewers dropped together do not all come back together.
  return ceiling / 2 + (Math.random() * ceiling) / 2;
}

/** Hands one event to the caller: counts of a followed post, or an id that names no post. */
function dispatch(
  event: SseEvent,
  following: Set<string>,
  onCounts: (counts: LiveCounts) => void,
  onMissing: ((postId: string) => void) | undefined,
): void {
  let data: unknown;
  try {
    data = JSON.parse(event.data);
  } catch {
    data = undefined;
  }
  if (event.type === "counts" && isLiveCounts(data)) {
    if (following.has(data.post_id)) onCounts(data);
  } else if (event.type === "missing" && isLiveMissing(data)) {
    // Reported once: later connections no longer ask for it.
    if (following.delete(data.post_id)) onMissing?.(data.post_id);
  }
  // Other event types are for later versions of the api: ignored, as EventSource would.
}

/**
 * Follows the counts of `postIds` (1 to 100 UUIDs) on the api at `baseUrl`: `onCounts` gets
 * each post's current counts at once and again whenever they change. Returns a function that
 * stops it. No token is needed: counts are public.
 */
export function live(
  baseUrl: string,
  postIds: readonly string[],
  onCounts: (counts: LiveCounts) => void,
  options: LiveOptions = {},
): StopLive {
  const following = new Set(checkedIds(postIds));
  const minRetry = options.minRetryMs ?? 500;
  const maxRetry = options.maxRetryMs ?? 30_000;
  const useEventSource =
    options.transport === "eventsource" ||
    ((options.transport ?? "auto") === "auto" && typeof globalThis.EventSource === "function");
  const base = baseUrl.replace(/\/+$/, "");

  let stopped = false;
  let failures = 0;
  let retryHint = 0;
  let lastEventId = "";
  let connection: Connection | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const handlers: ConnectionHandlers = {
    event(event) {
      if (stopped) return;
      failures = 0;
      lastEventId = event.lastEventId;
      dispatch(event, following, onCounts, options.onMissing);
    },
    open() {
      if (!stopped) options.onOpen?.();
    },
    retryHint(ms) {
      retryHint = ms;
    },
    fail(message, status, retryAfterMs = 0, cause) {
      if (stopped) return;
      connection?.close();
      connection = undefined;
      const delay = Math.max(backoff(failures++, minRetry, maxRetry), retryHint, Math.min(retryAfterMs, maxRetry));
      options.onError?.(new LiveError(message, delay, status, { cause }));
      timer = setTimeout(connect, delay);
    },
  };

  function connect(): void {
    timer = undefined;
    if (stopped) return;
    if (following.size === 0) return; // every id named no post: nothing to follow
    const url = `${base}/v1/live?ids=${[...following].join(",")}`;
    connection = useEventSource
      ? connectEventSource(url, handlers)
      : connectFetch(url, lastEventId, options.idleTimeoutMs ?? 45_000, handlers);
  }

  function stop(): void {
    if (stopped) return;
    stopped = true;
    if (timer !== undefined) clearTimeout(timer);
    connection?.close();
    connection = undefined;
    options.signal?.removeEventListener("abort", stop);
  }

  if (options.signal?.aborted) return stop;
  options.signal?.addEventListener("abort", stop);
  connect();
  return stop;
}

// A new EventSource per attempt rather than its own reconnection: that one never gives up
// retrying at a fixed pace, and stops for good on a 503, while this one backs off and retries.
function connectEventSource(url: string, on: ConnectionHandlers): Connection {
  const source = new EventSource(url);
  const forward = (type: string) => (message: MessageEvent<string>) =>
    on.event({ type, data: message.data, lastEventId: message.lastEventId });
  source.addEventListener("counts", forward("counts"));
  source.addEventListener("missing", forward("missing"));
  source.onopen = () => on.open();
  // EventSource tells neither why (status, network) nor the difference from the server ending
  // the stream: either way, try again later.
  source.onerror = () => on.fail("the live stream failed or ended");
  return { close: () => source.close() };
}

function connectFetch(url: string, lastEventId: string, idleMs: number, handlers: ConnectionHandlers): Connection {
  const controller = new AbortController();
  let closed = false;
  let idle: ReturnType<typeof setTimeout> | undefined;
  // Once closed, this connection reports nothing: a late chunk or idle timer of a stream
  // already given up must not fail (and so close) the stream that replaced it.
  const on: ConnectionHandlers = {
    event: (event) => closed || handlers.event(event),
    open: () => closed || handlers.open(),
    retryHint: (ms) => closed || handlers.retryHint(ms),
    fail: (...args) => closed || handlers.fail(...args),
  };
  const close = () => {
    closed = true;
    if (idle !== undefined) clearTimeout(idle);
    controller.abort();
  };
  const alive = () => {
    if (idle !== undefined) clearTimeout(idle);
    idle = setTimeout(() => on.fail(`the live stream was silent for ${idleMs} ms`), idleMs);
  };
  const headers: Record<string, string> = { accept: "text/event-stream" };
  if (lastEventId !== "") headers["last-event-id"] = lastEventId;

  (async () => {
    const response = await fetch(url, { headers, signal: controller.signal });
    const type = response.headers.get("content-type") ?? "";
    if (response.status !== 200 || !type.startsWith("text/event-stream") || !response.body) {
      const seconds = Number(response.headers.get("retry-after"));
      await response.body?.cancel();
      on.fail(
        `the api answered ${response.status} (${type || "no content type"}), not an event stream`,
        response.status,
        Number.isFinite(seconds) ? seconds * 1000 : 0,
      );
      return;
    }
    on.open();
    alive();
    const parser = new SseParser({ onEvent: on.event, onRetry: on.retryHint, onComment: alive });
    const decoder = new TextDecoder();
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      alive();
      parser.push(decoder.decode(value, { stream: true }));
    }
    on.fail("the api ended the live stream");
  })().catch((err: unknown) => on.fail(`the live stream failed: ${String(err)}`, undefined, 0, err));
  return { close };
}
