// `tally.live` against the live api (in Node: the fetch transport and the event-stream parser):
// current counts at once, new counts after a write, missing ids reported once, stopping, and
// reconnecting with a growing delay when the api cannot be reached or answers no stream.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";

import { createTallyClient, LiveError, type LiveCounts } from "../src/index.ts";
import { anonymousClient, apiUrl, userClient } from "./stack.ts";

/** What a callback was called with, and a way to wait for a value it gets (or got already). */
function inbox<T>() {
  const values: T[] = [];
  const waiters: { take: (value: T) => boolean; found: (value: T) => void }[] = [];
  return {
    values,
    push(value: T): void {
      values.push(value);
      for (const waiter of waiters.filter((w) => w.take(value))) waiter.found(value);
    },
    /** The first value `take` accepts; fails after `timeoutMs` (a bound against a hang). */
    until(take: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
      const already = values.find(take);
      if (already !== undefined) return Promise.resolve(already);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`nothing matching within ${timeoutMs} ms; got ${JSON.stringify(values)}`)),
          timeoutMs,
        );
        waiters.push({ take, found: (value) => (clearTimeout(timer), resolve(value)) });
      });
    },
  };
}

/** A post made by a new user, and that user's client. */
async function newPost() {
  const { tally } = await userClient("author");
  const { data } = await tally.POST("/v1/posts", { body: {} });
  assert.ok(data, "the post was created");
  return { tally, postId: data.id };
}

describe("live counts", () => {
  test("a post's current counts come at once, and its new counts after a like", async () => {
    const { postId } = await newPost();
    const { tally: bob } = await userClient("bob");
    const counts = inbox<LiveCounts>();
    const stop = anonymousClient().live([postId], counts.push);

    try {
      const first = await counts.until(() => true);
      await bob.POST("/v1/likes", { body: { post_id: postId } });
      const liked = await counts.until((c) => c.likes === 1);

      assert.deepEqual({ ...first, updated_at: "" }, { post_id: postId, likes: 0, comments: 0, updated_at: "" });
      assert.equal(liked.post_id, postId);
      assert.equal(liked.comments, 0);
      assert.ok(!Number.isNaN(Date.parse(liked.updated_at)), `updated_at is a time: ${liked.updated_at}`);
    } finally {
      stop();
    }
  });

  test("an id that names no post is reported missing once, while the others are followed", async () => {
    const { postId } = await newPost();
    const unknown = randomUUID();
    const missing = inbox<string>();
    const counts = inbox<LiveCounts>();

    const stop = anonymousClient().live([unknown.toUpperCase(), postId], counts.push, { onMissing: missing.push });
    try {
      await missing.until(() => true);
      await counts.until(() => true);
    } finally {
      stop();
    }

    assert.deepEqual(missing.values, [unknown], "reported once, lower-case as the api names it");
    assert.deepEqual(counts.values.map((c) => c.post_id), [postId]);
  });

  test("after stop, a stream gets no more counts", async () => {
    const { postId } = await newPost();
    const { tally: bob } = await userClient("bob");
    const stopped = inbox<LiveCounts>();
    const stop = anonymousClient().live([postId], stopped.push);
    await stopped.until(() => true);

    stop();
    await bob.POST("/v1/likes", { body: { post_id: postId } });
    // A second watcher sees the like, so it was published while the first was stopped.
    const witness = inbox<LiveCounts>();
    const stopWitness = anonymousClient().live([postId], witness.push);
    try {
      await witness.until((c) => c.likes === 1);
    } finally {
      stopWitness();
    }

    assert.deepEqual(stopped.values.map((c) => c.likes), [0]);
  });

  test("a stream silent for longer than idleTimeoutMs is taken for dead and reopened, starting with the counts again", async () => {
    const { postId } = await newPost();
    const counts = inbox<LiveCounts>();
    const errors = inbox<LiveError>();

    // The api's keep-alive comes every 15 s: a 300 ms bound sees the stream as silent.
    const stop = anonymousClient().live([postId], counts.push, { idleTimeoutMs: 300, minRetryMs: 10, onError: errors.push });
    try {
      await errors.until(() => true);
      await counts.until(() => counts.values.length >= 2);
    } finally {
      stop();
    }

    assert.match(errors.values[0]?.message ?? "", /silent for 300 ms/);
    assert.deepEqual(counts.values.slice(0, 2).map((c) => [c.post_id, c.likes]), [[postId, 0], [postId, 0]]);
  });

  test("an api that cannot be reached is retried with a doubling, jittered delay", async () => {
    // A port nothing listens on: the api's own port + 1 is not guaranteed free, so ask the OS
    // for a port and close it again.
    const { createServer } = await import("node:net");
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    assert.ok(address && typeof address === "object");
    await new Promise((resolve) => server.close(resolve));
    const errors: LiveError[] = [];

    const tally = createTallyClient({ baseUrl: `http://127.0.0.1:${address.port}` });
    await new Promise<void>((resolve) => {
      const stop = tally.live([randomUUID()], () => {}, {
        minRetryMs: 20,
        maxRetryMs: 10_000,
        onError: (error) => {
          errors.push(error);
          if (errors.length === 5) {
            stop();
            resolve();
          }
        },
      });
    });

    errors.forEach((error, n) => {
      const ceiling = 20 * 2 ** n;
      assert.ok(error instanceof LiveError);
      assert.equal(error.status, undefined, "no answer, so no status");
      assert.ok(
        error.retryInMs >= ceiling / 2 && error.retryInMs <= ceiling,
        `retry ${n} waits ${error.retryInMs} ms, within [${ceiling / 2}, ${ceiling}]`,
      );
    });
  });

  test("an answer that is not an event stream is reported with its status, and retried", async () => {
    // Under a prefix the api does not serve, /v1/live is a 404 problem, not a stream.
    const tally = createTallyClient({ baseUrl: `${apiUrl}/no-such-prefix` });
    const errors: LiveError[] = [];

    await new Promise<void>((resolve) => {
      const stop = tally.live([randomUUID()], () => {}, {
        minRetryMs: 10,
        onError: (error) => {
          errors.push(error);
          if (errors.length === 2) {
            stop();
            resolve();
          }
        },
      });
    });

    assert.deepEqual(errors.map((error) => error.status), [404, 404]);
    assert.match(errors[0]?.message ?? "", /404/);
  });

  test("a list the api would refuse throws before anything is sent", () => {
    const tally = anonymousClient();
    const ids = Array.from({ length: 101 }, () => randomUUID());

    assert.throws(() => tally.live([], () => {}), RangeError);
    assert.throws(() => tally.live(ids, () => {}), RangeError);
    assert.throws(() => tally.live(["not-a-uuid"], () => {}), /not-a-uuid/);
  });
});
