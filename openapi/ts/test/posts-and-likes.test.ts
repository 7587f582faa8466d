// The client against a live api: posts, likes and their eventually consistent counts, read
// either by polling until they converge or at once with read-your-writes (`after_event`).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";

import type { Post } from "../src/index.ts";
import { anonymousClient, eventually, userClient } from "./stack.ts";

describe("posts", () => {
  test("registering a post returns it with zero counts, and registering it again changes nothing", async () => {
    const { userId, tally } = await userClient("alice");
    const id = randomUUID();

    const created = await tally.POST("/v1/posts", { body: { id } });
    const again = await tally.POST("/v1/posts", { body: { id } });

    assert.equal(created.response.status, 201);
    const post: Post | undefined = created.data;
    assert.equal(post?.id, id);
    assert.equal(post?.author_id, userId);
    assert.equal(post?.likes, 0);
    assert.equal(post?.comments, 0);
    assert.equal(again.response.status, 200);
    assert.equal(again.data?.id, id);
  });

  test("a post registered without an id gets one, and anyone can read it", async () => {
    const { tally } = await userClient("alice");

    const { data: created } = await tally.POST("/v1/posts", { body: {} });
    assert.ok(created, "the post was created");
    const { data: read, response } = await anonymousClient().GET("/v1/posts/{post_id}", {
      params: { path: { post_id: created.id } },
    });

    assert.equal(response.status, 200);
    assert.equal(read?.id, created.id);
  });
});

describe("likes", () => {
  test("a like shows in the post's count once the pipeline catches up", async () => {
    const { tally: alice } = await userClient("alice");
    const { userId: bob, tally: bobClient } = await userClient("bob");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);

    const liked = await bobClient.POST("/v1/likes", { body: { post_id: post.id } });

    assert.equal(liked.response.status, 201);
    assert.equal(liked.data?.post_id, post.id);
    assert.equal(liked.data?.user_id, bob);
    assert.ok(liked.data?.event_id, "a like that changed something carries its event id");
    const converged = await eventually(
      async () => (await alice.GET("/v1/posts/{post_id}", { params: { path: { post_id: post.id } } })).data,
      (read) => read?.likes === 1,
    );
    assert.equal(converged?.likes, 1);
  });

  test("unliking a post the caller does not like is a 204 that changes nothing", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);

    const result = await alice.DELETE("/v1/likes/{post_id}", { params: { path: { post_id: post.id } } });

    assert.equal(result.response.status, 204);
  });

  test("liking twice is one like: the second answer is a 200 without an event", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);

    await alice.POST("/v1/likes", { body: { post_id: post.id } });
    const again = await alice.POST("/v1/likes", { body: { post_id: post.id } });

    assert.equal(again.response.status, 200);
    assert.equal(again.data?.event_id ?? null, null);
  });

  test("unliking is a 204, and unliking again is still a 204", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const path = { post_id: post.id };
    await alice.POST("/v1/likes", { body: path });

    const unliked = await alice.DELETE("/v1/likes/{post_id}", { params: { path } });
    const again = await alice.DELETE("/v1/likes/{post_id}", { params: { path } });

    assert.equal(unliked.response.status, 204);
    assert.equal(again.response.status, 204);
  });

  test("an unlike brings the count back down: read-your-writes with the Tally-Event-Id of the unlike", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const path = { post_id: post.id };
    const { data: like } = await alice.POST("/v1/likes", { body: path });
    assert.ok(like?.event_id);
    const liked = await alice.GET("/v1/posts/{post_id}", { params: { path, query: { after_event: like.event_id } } });
    assert.equal(liked.data?.likes, 1);

    const unliked = await alice.DELETE("/v1/likes/{post_id}", { params: { path } });

    // A 204 has no body: the unlike's event id comes in the Tally-Event-Id header.
    const event = unliked.response.headers.get("tally-event-id");
    assert.ok(event, "an unlike that changed something names its event");
    const { data: read } = await alice.GET("/v1/posts/{post_id}", { params: { path, query: { after_event: event } } });
    assert.equal(read?.after_event_applied, true);
    assert.equal(read?.likes, 0);
    assert.equal(read?.liked_by_me, false);
  });
});

describe("read-your-writes", () => {
  test("a read with the like's event_id as after_event waits for it: the count includes the like at once", async () => {
    const { tally: alice } = await userClient("alice");
    const { tally: bob } = await userClient("bob");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const path = { post_id: post.id };

    const { data: like } = await bob.POST("/v1/likes", { body: { post_id: post.id } });
    assert.ok(like?.event_id);
    const { data: read, response } = await bob.GET("/v1/posts/{post_id}", {
      params: { path, query: { after_event: like.event_id } },
    });

    assert.equal(response.status, 200);
    assert.equal(read?.after_event_applied, true);
    assert.equal(read?.likes, 1);
    assert.equal(read?.liked_by_me, true);
  });

  test("a read without after_event says nothing about it", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);

    const { data: read } = await alice.GET("/v1/posts/{post_id}", { params: { path: { post_id: post.id } } });

    assert.ok(read);
    assert.equal("after_event_applied" in read, false);
  });

  test("an event that is never counted ends the wait with after_event_applied false", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);

    const started = Date.now();
    const { data: read, response } = await alice.GET("/v1/posts/{post_id}", {
      params: { path: { post_id: post.id }, query: { after_event: randomUUID() } },
    });

    assert.equal(response.status, 200);
    assert.equal(read?.after_event_applied, false);
    assert.ok(Date.now() - started < 11_000, "the wait is bounded (TALLY_READ_YOUR_WRITES_TIMEOUT_MS)");
  });
});

describe("liked_by_me", () => {
  test("is true for a reader who likes the post, false for one who does not, and absent without a token", async () => {
    const { tally: alice } = await userClient("alice");
    const { tally: bob } = await userClient("bob");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const params = { path: { post_id: post.id } };
    await bob.POST("/v1/likes", { body: { post_id: post.id } });

    // Read from the likes themselves: exact at once, no wait for the pipeline.
    const byBob = await bob.GET("/v1/posts/{post_id}", { params });
    const byAlice = await alice.GET("/v1/posts/{post_id}", { params });
    const anonymous = await anonymousClient().GET("/v1/posts/{post_id}", { params });

    assert.equal(byBob.data?.liked_by_me, true);
    assert.equal(byAlice.data?.liked_by_me, false);
    assert.ok(anonymous.data);
    assert.equal("liked_by_me" in anonymous.data, false, "an anonymous read has no liked_by_me");
    assert.equal(anonymous.data.liked_by_me, undefined);
  });
});
