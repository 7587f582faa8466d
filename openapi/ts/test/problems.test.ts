// Errors through the client: every non-2xx answer is a typed RFC 9457 problem, and calls the
// spec does not allow do not compile (each `@ts-expect-error` fails tsc once it stops being one).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";

import { createTallyClient, type NewComment, type NewLike } from "../src/index.ts";
import { assertProblem } from "./problem.ts";
import { anonymousClient, apiUrl, newUserId, tokenFor, userClient } from "./stack.ts";

/** A client whose token is signed with another key: a bad signature. */
async function forgedClient() {
  const [header, payload] = (await tokenFor(newUserId("mallory"))).split(".");
  const forged = `${header}.${payload}.${Buffer.from("not the signature").toString("base64url")}`;
  return createTallyClient({ baseUrl: apiUrl, token: forged });
}

describe("problems", () => {
  test("a write without a token is a 401 problem", async () => {
    const result = await anonymousClient().POST("/v1/posts", { body: {} });

    assertProblem(result, 401);
  });

  test("a write with an expired token is a 401 problem", async () => {
    const token = await tokenFor(newUserId("late"), -60);
    const tally = createTallyClient({ baseUrl: apiUrl, token });

    const result = await tally.POST("/v1/posts", { body: {} });

    assertProblem(result, 401);
  });

  test("a token signed with another key is a 401 problem", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const tally = await forgedClient();

    const result = await tally.POST("/v1/likes", { body: { post_id: post.id } });

    assertProblem(result, 401);
  });

  test("a read with an invalid token is a 401 problem, not an anonymous read", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const expired = createTallyClient({ baseUrl: apiUrl, token: await tokenFor(newUserId("late"), -60) });
    const forged = await forgedClient();
    const garbage = createTallyClient({ baseUrl: apiUrl, token: "not-a-jwt" });
    const params = { path: { post_id: post.id } };

    for (const tally of [expired, forged, garbage]) {
      assertProblem(await tally.GET("/v1/posts/{post_id}", { params }), 401);
      assertProblem(await tally.GET("/v1/posts", { params: { query: { ids: [post.id] } } }), 401);
    }
  });

  test("reading a post that does not exist is a 404 problem", async () => {
    const result = await anonymousClient().GET("/v1/posts/{post_id}", {
      params: { path: { post_id: randomUUID() } },
    });

    const problem = assertProblem(result, 404);
    assert.equal(result.data, undefined);
    assert.match(problem.type, /not-found/);
  });

  test("liking a post that does not exist is a 404 problem", async () => {
    const { tally } = await userClient("bob");

    const result = await tally.POST("/v1/likes", { body: { post_id: randomUUID() } });

    assertProblem(result, 404);
  });

  test("listing the likers or comments of a post that does not exist is a 404 problem", async () => {
    const params = { path: { post_id: randomUUID() } };

    assertProblem(await anonymousClient().GET("/v1/posts/{post_id}/likes", { params }), 404);
    assertProblem(await anonymousClient().GET("/v1/posts/{post_id}/comments", { params }), 404);
  });

  test("commenting on, deleting or deleting a comment of something that does not exist is a 404 problem", async () => {
    const { tally } = await userClient("bob");

    const comment = await tally.POST("/v1/posts/{post_id}/comments", {
      params: { path: { post_id: randomUUID() } },
      body: { body: "anyone there?" },
    });
    const post = await tally.DELETE("/v1/posts/{post_id}", { params: { path: { post_id: randomUUID() } } });
    const deleted = await tally.DELETE("/v1/comments/{comment_id}", {
      params: { path: { comment_id: randomUUID() } },
    });

    assertProblem(comment, 404);
    assertProblem(post, 404);
    assertProblem(deleted, 404);
  });

  test("deleting someone else's comment on someone else's post is a 403 problem", async () => {
    const { tally: alice } = await userClient("alice");
    const { tally: bob } = await userClient("bob");
    const { tally: mallory } = await userClient("mallory");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const { data: comment } = await bob.POST("/v1/posts/{post_id}/comments", {
      params: { path: { post_id: post.id } },
      body: { body: "mine" },
    });
    assert.ok(comment);

    const result = await mallory.DELETE("/v1/comments/{comment_id}", {
      params: { path: { comment_id: comment.id } },
    });

    const problem = assertProblem(result, 403);
    assert.match(problem.type, /forbidden/);
  });

  test("a body of the wrong type does not compile, and the api refuses it with a 400 problem", async () => {
    const { tally } = await userClient("bob");

    // @ts-expect-error post_id is a string (a UUID), not a number
    const result = await tally.POST("/v1/likes", { body: { post_id: 42 } });

    assertProblem(result, 400);
  });

  test("an unknown field does not compile against the body's type, and the api refuses it with a 400 problem", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const params = { path: { post_id: post.id } };

    // openapi-fetch infers its options object generically, so tsc does not flag an extra
    // field in an inline body (openapi-ts/openapi-typescript#1769); checked against the
    // body's own type (`satisfies`, or a typed variable) it does.
    // @ts-expect-error a comment has no `title`
    const comment = await alice.POST("/v1/posts/{post_id}/comments", { params, body: { body: "hi", title: "x" } satisfies NewComment });
    // @ts-expect-error a like has no `weight`
    const like: NewLike = { post_id: post.id, weight: 2 };
    const liked = await alice.POST("/v1/likes", { body: like });

    const problem = assertProblem(comment, 400);
    assert.match(problem.detail, /title/);
    assert.match(assertProblem(liked, 400).detail, /weight/);
  });

  test("a page size out of range, or a cursor the api did not hand out, is a 400 problem", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const path = { post_id: post.id };
    const tally = anonymousClient();

    for (const query of [{ limit: 0 }, { limit: 101 }, { cursor: "not-a-cursor" }]) {
      assertProblem(await tally.GET("/v1/posts/{post_id}/likes", { params: { path, query } }), 400);
      assertProblem(await tally.GET("/v1/posts/{post_id}/comments", { params: { path, query } }), 400);
    }
  });

  test("a likers cursor is not a comments cursor", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const path = { post_id: post.id };
    for (let i = 0; i < 2; i++) {
      const { tally } = await userClient(`liker${i}`);
      await tally.POST("/v1/likes", { body: path });
    }
    const { data: page } = await alice.GET("/v1/posts/{post_id}/likes", { params: { path, query: { limit: 1 } } });
    assert.ok(page?.next_cursor);

    const result = await alice.GET("/v1/posts/{post_id}/comments", {
      params: { path, query: { cursor: page.next_cursor } },
    });

    assertProblem(result, 400);
  });

  test("writing faster than the rate limit is a 429 problem with Retry-After", async () => {
    const { tally } = await userClient("hasty");
    const { data: post } = await tally.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const params = { path: { post_id: post.id } };

    // Unliking a post one does not like changes nothing, but it is a write all the same.
    const results = await Promise.all(
      Array.from({ length: 60 }, () => tally.DELETE("/v1/likes/{post_id}", { params })),
    );

    const limited = results.filter((result) => result.response.status === 429);
    assert.ok(limited.length > 0, "some of 60 writes at once are over the limit (burst 30, 10/s by default)");
    assert.ok(results.every((result) => [204, 429].includes(result.response.status)));
    for (const result of limited) assertProblem(result, 429);
    const retryAfter = Number(limited[0]?.response.headers.get("retry-after"));
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After in seconds, got ${retryAfter}`);
    await new Promise((resolve) => setTimeout(resolve, retryAfter * 1000));
    const later = await tally.DELETE("/v1/likes/{post_id}", { params });
    assert.equal(later.response.status, 204, "after Retry-After the write goes through");
    // Buckets are per user: someone else writes meanwhile.
    const { tally: other } = await userClient("patient");
    assert.equal((await other.DELETE("/v1/likes/{post_id}", { params })).response.status, 204);
  });

  test("a post id that is not a UUID is a 4xx problem", async () => {
    const result = await anonymousClient().GET("/v1/posts/{post_id}", {
      params: { path: { post_id: "not-a-uuid" } },
    });

    const problem = assertProblem(result, result.response.status);
    assert.ok([400, 404, 422].includes(problem.status), `a 4xx, got ${problem.status}`);
  });

  test("a like for someone else is a 403 problem", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);

    const result = await alice.POST("/v1/likes", {
      body: { post_id: post.id, user_id: newUserId("bob") },
    });

    assertProblem(result, 403);
  });

  test("a path the api does not have does not compile", async () => {
    const tally = anonymousClient();

    // @ts-expect-error there is no /v1/post/{post_id} (it is /v1/posts/{post_id})
    const result = await tally.GET("/v1/post/{post_id}", { params: { path: { post_id: randomUUID() } } });

    assert.equal(result.response.status, 404);
  });
});

// Calls that must not compile; never run, only type-checked.
export async function notCompiling(): Promise<void> {
  const tally = anonymousClient();
  // @ts-expect-error a like needs the post's id
  await tally.POST("/v1/likes", { body: {} });
  // @ts-expect-error posts are created with POST, not PUT
  await tally.PUT("/v1/posts", { body: {} });
  // @ts-expect-error the path parameter is post_id
  await tally.GET("/v1/posts/{post_id}", { params: { path: { id: randomUUID() } } });
  // @ts-expect-error the path parameter is required
  await tally.GET("/v1/posts/{post_id}", {});
  const { data } = await tally.GET("/v1/posts/{post_id}", {
    params: { path: { post_id: randomUUID() } },
  });
  // @ts-expect-error a post has no `title`
  void data?.title;
  if (data) {
    // @ts-expect-error liked_by_me is absent on anonymous reads: boolean | undefined
    const liked: boolean = data.liked_by_me;
    void liked;
  }

  const params = { path: { post_id: randomUUID() } };
  // @ts-expect-error there is no /v1/comments listing (comments are under their post)
  await tally.GET("/v1/comments", {});
  // @ts-expect-error comments are deleted at /v1/comments/{comment_id}, not under the post
  await tally.DELETE("/v1/posts/{post_id}/comments", { params });
  // @ts-expect-error the feed read needs its ids
  await tally.GET("/v1/posts", {});
  // @ts-expect-error ids is an array of post ids, not one comma-separated string
  await tally.GET("/v1/posts", { params: { query: { ids: "a,b" } } });
  // @ts-expect-error the comment's body is a string
  await tally.POST("/v1/posts/{post_id}/comments", { params, body: { body: 42 } });
  // @ts-expect-error commenting needs the post's id in the path
  await tally.POST("/v1/posts/{post_id}/comments", { body: { body: "hi" } });
  // @ts-expect-error a toggle takes no body
  await tally.POST("/v1/likes/{post_id}/toggle", { params, body: { liked: true } });
  // @ts-expect-error the comment's path parameter is comment_id
  await tally.DELETE("/v1/comments/{comment_id}", { params });
  // @ts-expect-error limit is a number
  await tally.GET("/v1/posts/{post_id}/likes", { params: { ...params, query: { limit: "2" } } });
  // @ts-expect-error after_event is an event id (a string)
  await tally.GET("/v1/posts/{post_id}", { params: { ...params, query: { after_event: 1 } } });
  const { data: likers } = await tally.GET("/v1/posts/{post_id}/likes", { params });
  // @ts-expect-error a liker has no comment body
  void likers?.items[0]?.body;
  const { data: comments } = await tally.GET("/v1/posts/{post_id}/comments", { params });
  if (comments) {
    // @ts-expect-error next_cursor is null on the last page: check it before passing it on
    const cursor: string = comments.next_cursor;
    void cursor;
  }
  // @ts-expect-error a NewComment needs its body, not only an id
  const comment: NewComment = { id: randomUUID() };
  void comment;
}
