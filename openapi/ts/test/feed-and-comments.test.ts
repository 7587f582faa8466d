// @ts-nocheck -- PENDING: remove this line once openapi/openapi.json has these endpoints.
// The client against a live api: the feed read, toggling, who liked, comments and deleting.
//
// Written against issue 3's endpoints before they were in the spec, so the response shapes
// (`posts`/`missing`, `items`/`next_cursor`, `liked`, `liked_by_me`) are the expected ones, not
// yet checked by tsc. To enable: regenerate the client (`./dev client`), delete the
// `@ts-nocheck` line and `PENDING` below, and fix what tsc then reports.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";

import { createTallyClient } from "../src/index.ts";
import { anonymousClient, apiUrl, eventually, userClient } from "./stack.ts";

const PENDING = {
  skip: "not in openapi/openapi.json yet: GET /v1/posts?ids=, DELETE /v1/posts/{post_id}, toggle, likers, comments",
};

describe("feed read", () => {
  test("sends ids comma-separated, as the api reads them", async () => {
    const urls: string[] = [];
    const tally = createTallyClient({
      baseUrl: apiUrl,
      fetch: async (request: Request) => {
        urls.push(request.url);
        return new Response("{}", { headers: { "content-type": "application/json" } });
      },
    });
    const ids = [randomUUID(), randomUUID(), randomUUID()];

    await tally.GET("/v1/posts", { params: { query: { ids } } });

    assert.equal(urls.length, 1);
    assert.equal(new URL(urls[0] ?? "").search, `?ids=${ids.join(",")}`);
  });

  test("returns the posts asked for with their counts, in the order asked, and reports unknown ids", PENDING, async () => {
    const { tally: alice } = await userClient("alice");
    const { tally: bob } = await userClient("bob");
    const first = (await alice.POST("/v1/posts", { body: {} })).data;
    const second = (await alice.POST("/v1/posts", { body: {} })).data;
    assert.ok(first && second);
    await bob.POST("/v1/likes", { body: { post_id: second.id } });
    const unknown = randomUUID();
    const ids = [second.id, unknown, first.id];

    const feed = await eventually(
      async () => (await bob.GET("/v1/posts", { params: { query: { ids } } })).data,
      (page) => page?.posts.find((post) => post.id === second.id)?.likes === 1,
    );

    assert.deepEqual(
      feed?.posts.map((post) => post.id),
      [second.id, first.id],
    );
    assert.deepEqual(
      feed?.posts.map((post) => [post.likes, post.liked_by_me]),
      [
        [1, true],
        [0, false],
      ],
    );
    assert.deepEqual(feed?.missing, [unknown]);
  });

  test("more than 100 ids is a 4xx problem", PENDING, async () => {
    const ids = Array.from({ length: 101 }, () => randomUUID());

    const { error, response } = await anonymousClient().GET("/v1/posts", { params: { query: { ids } } });

    assert.ok(response.status >= 400 && response.status < 500, `a 4xx, got ${response.status}`);
    assert.equal(error?.status, response.status);
  });
});

describe("toggle", () => {
  test("toggling likes, and toggling again unlikes", PENDING, async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const path = { post_id: post.id };

    const on = await alice.POST("/v1/likes/{post_id}/toggle", { params: { path } });
    const off = await alice.POST("/v1/likes/{post_id}/toggle", { params: { path } });

    assert.equal(on.response.status, 200);
    assert.deepEqual([on.data?.post_id, on.data?.liked], [post.id, true]);
    assert.deepEqual([off.data?.post_id, off.data?.liked], [post.id, false]);
    const read = await eventually(
      async () => (await alice.GET("/v1/posts/{post_id}", { params: { path } })).data,
      (current) => current?.likes === 0 && current.liked_by_me === false,
    );
    assert.equal(read?.likes, 0);
  });

  test("toggling a post that does not exist is a 404 problem", PENDING, async () => {
    const { tally } = await userClient("alice");

    const { error, response } = await tally.POST("/v1/likes/{post_id}/toggle", {
      params: { path: { post_id: randomUUID() } },
    });

    assert.equal(response.status, 404);
    assert.equal(error?.status, 404);
  });
});

describe("who liked", () => {
  test("pages through the likers newest first, each exactly once", PENDING, async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const likers: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { userId, tally } = await userClient(`liker${i}`);
      await tally.POST("/v1/likes", { body: { post_id: post.id } });
      likers.push(userId);
    }

    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const query = cursor === undefined ? { limit: 2 } : { limit: 2, cursor };
      const { data, error } = await anonymousClient().GET("/v1/posts/{post_id}/likes", {
        params: { path: { post_id: post.id }, query },
      });
      assert.equal(error, undefined);
      assert.ok(data);
      assert.ok(data.items.length <= 2);
      seen.push(...data.items.map((like) => like.user_id));
      cursor = data.next_cursor ?? undefined;
      pages++;
    } while (cursor !== undefined && pages < 10);

    assert.deepEqual(seen, [...likers].reverse());
    assert.equal(pages, 3);
  });
});

describe("comments", () => {
  test("a comment is listed newest first and counted", PENDING, async () => {
    const { tally: alice } = await userClient("alice");
    const { userId: bob, tally: bobClient } = await userClient("bob");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const path = { post_id: post.id };

    const first = await bobClient.POST("/v1/posts/{post_id}/comments", {
      params: { path },
      body: { body: "first!" },
    });
    const second = await bobClient.POST("/v1/posts/{post_id}/comments", {
      params: { path },
      body: { body: "second" },
    });

    assert.equal(first.response.status, 201);
    assert.equal(first.data?.author_id, bob);
    assert.equal(first.data?.body, "first!");
    const { data: page } = await anonymousClient().GET("/v1/posts/{post_id}/comments", { params: { path } });
    assert.deepEqual(
      page?.items.map((comment) => comment.id),
      [second.data?.id, first.data?.id],
    );
    const read = await eventually(
      async () => (await alice.GET("/v1/posts/{post_id}", { params: { path } })).data,
      (current) => current?.comments === 2,
    );
    assert.equal(read?.comments, 2);
  });

  test("an empty comment is a 4xx problem, and a body without `body` does not compile", PENDING, async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const params = { path: { post_id: post.id } };

    const empty = await alice.POST("/v1/posts/{post_id}/comments", { params, body: { body: "" } });
    // @ts-expect-error a comment needs its body
    const missing = await alice.POST("/v1/posts/{post_id}/comments", { params, body: {} });

    for (const { error, response } of [empty, missing]) {
      assert.ok([400, 422].includes(response.status), `400 or 422, got ${response.status}`);
      assert.equal(error?.status, response.status);
    }
  });

  test("the post's author may delete a comment, someone else may not", PENDING, async () => {
    const { tally: alice } = await userClient("alice");
    const { tally: bob } = await userClient("bob");
    const { tally: carol } = await userClient("carol");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const { data: comment } = await bob.POST("/v1/posts/{post_id}/comments", {
      params: { path: { post_id: post.id } },
      body: { body: "hello" },
    });
    assert.ok(comment);
    const path = { comment_id: comment.id };

    const forbidden = await carol.DELETE("/v1/comments/{comment_id}", { params: { path } });
    const deleted = await alice.DELETE("/v1/comments/{comment_id}", { params: { path } });

    assert.equal(forbidden.response.status, 403);
    assert.equal(forbidden.error?.status, 403);
    assert.equal(deleted.response.status, 204);
  });
});

describe("deleting a post", () => {
  test("only its author may, and afterwards it is a 404", PENDING, async () => {
    const { tally: alice } = await userClient("alice");
    const { tally: bob } = await userClient("bob");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const path = { post_id: post.id };

    const forbidden = await bob.DELETE("/v1/posts/{post_id}", { params: { path } });
    const deleted = await alice.DELETE("/v1/posts/{post_id}", { params: { path } });
    const like = await bob.POST("/v1/likes", { body: { post_id: post.id } });
    const read = await bob.GET("/v1/posts/{post_id}", { params: { path } });

    assert.equal(forbidden.response.status, 403);
    assert.equal(deleted.response.status, 204);
    assert.equal(like.response.status, 404);
    assert.equal(read.response.status, 404);
  });
});
