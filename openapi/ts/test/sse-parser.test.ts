// The text/event-stream parser the live helper's fetch transport uses, on streams written out
// as strings: the api's own events, and the corners of the format a proxy or another server
// may produce (line endings, chunks cut anywhere, comments, multi-line data, ids, retry).
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { SseParser, type SseEvent } from "../src/index.ts";

/** Parses `chunks` in order and returns what came out. */
function parse(...chunks: string[]): { events: SseEvent[]; retries: number[]; comments: string[] } {
  const events: SseEvent[] = [];
  const retries: number[] = [];
  const comments: string[] = [];
  const parser = new SseParser({
    onEvent: (event) => events.push(event),
    onRetry: (ms) => retries.push(ms),
    onComment: (text) => comments.push(text),
  });
  for (const chunk of chunks) parser.push(chunk);
  return { events, retries, comments };
}

const COUNTS = '{"post_id":"0193a000-0000-7000-8000-000000000001","likes":3,"comments":1,"updated_at":"2026-12-02T01:00:00Z"}';

describe("the event-stream parser", () => {
  test("a stream as the api writes it gives its counts and missing events with their ids", () => {
    const stream =
      `event: counts\nid: 0193a000-0000-7000-8000-000000000001@1\ndata: ${COUNTS}\n\n` +
      `: keep-alive\n\n` +
      `event: missing\ndata: {"post_id":"0193a000-0000-7000-8000-000000000002"}\n\n`;

    const { events, comments } = parse(stream);

    assert.deepEqual(events, [
      { type: "counts", data: COUNTS, lastEventId: "0193a000-0000-7000-8000-000000000001@1" },
      {
        type: "missing",
        data: '{"post_id":"0193a000-0000-7000-8000-000000000002"}',
        // An id persists until another one replaces it.
        lastEventId: "0193a000-0000-7000-8000-000000000001@1",
      },
    ]);
    assert.deepEqual(comments, ["keep-alive"]);
  });

  test("an event cut into one-character chunks comes out whole, once", () => {
    const stream = `event: counts\r\nid: a@1\r\ndata: ${COUNTS}\r\n\r\n`;

    const { events } = parse(...stream.split(""));

    assert.deepEqual(events, [{ type: "counts", data: COUNTS, lastEventId: "a@1" }]);
  });

  test("CR, LF and CRLF all end lines, and a CRLF split between chunks is one line break", () => {
    const { events } = parse("data: one\r", "\ndata: two\rdata: three\n\r", "\n", "data: four\n\n");

    assert.deepEqual(
      events.map((e) => e.data),
      ["one\ntwo\nthree", "four"],
    );
  });

  test("an event without a type is a message, and a field without a colon or space still counts", () => {
    const { events } = parse("data\ndata:x\n\n");

    assert.deepEqual(events, [{ type: "message", data: "\nx", lastEventId: "" }]);
  });

  test("an event without data dispatches nothing, and its type does not leak into the next one", () => {
    const { events } = parse("event: counts\n\ndata: later\n\n");

    assert.deepEqual(events, [{ type: "message", data: "later", lastEventId: "" }]);
  });

  test("an event the stream ends in the middle of is dropped", () => {
    const { events } = parse(`event: counts\ndata: ${COUNTS}\n`);

    assert.deepEqual(events, []);
  });

  test("retry with digits only is reported, other values and unknown fields are ignored", () => {
    const { events, retries } = parse("retry: 2500\nretry: 1s\nfoo: bar\ndata: x\n\n");

    assert.deepEqual(retries, [2500]);
    assert.deepEqual(events.map((e) => e.data), ["x"]);
  });

  test("an id holding NUL is ignored and an empty id resets the last id", () => {
    const { events } = parse("id: first\ndata: 1\n\nid: bad\0id\ndata: 2\n\nid\ndata: 3\n\n");

    assert.deepEqual(
      events.map((e) => e.lastEventId),
      ["first", "first", ""],
    );
  });
});
