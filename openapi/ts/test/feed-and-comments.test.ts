// The client against a live api: the feed read, toggling, who liked, comments and deleting.
//
// Where a test needs the counts to include its own writes it reads them with `after_event` (the
// write's `event_id`): the read waits until the pipeline counted that event and says so in
// `after_event_applied`, so no test polls.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";

import { createTallyClient, type Comment, type Feed, type LikersPage, type LikeToggle } from "../src/index.ts";
import { assertProblem } from "./problem.ts";
import { anonymousClient, apiUrl, userClient } from "./stack.ts";

// One page of two likers or comments: the first page without a cursor, the next one with
// the previous page's `next_cursor`. (As functions, so a paging loop's cursor does not make
// tsc infer the call's type from itself.)
function likersPage(post_id: string, cursor: string | undefined) {
  const query = cursor === undefined ? { limit: 2 } : { limit: 2, cursor };
  return anonymousClient().GET("/v1/posts/{post_id}/likes", { params: { path: { post_id }, query } });
}

function commentsPage(post_id: string, cursor: string | undefined) {
  const query = cursor === undefined ? { limit: 2 } : { limit: 2, cursor };
  return anonymousClient().GET("/v1/posts/{post_id}/comments", { params: { path: { post_id }, query } });
}

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

  test("returns the posts asked for with their counts, in the order asked, and reports unknown ids", async () => {
    const { tally: alice } = await userClient("alice");
    const { tally: bob } = await userClient("bob");
    const first = (await alice.POST("/v1/posts", { body: {} })).data;
    const second = (await alice.POST("/v1/posts", { body: {} })).data;
    assert.ok(first && second);
    const like = (await bob.POST("/v1/likes", { body: { post_id: second.id } })).data;
    assert.ok(like?.event_id);
    const unknown = randomUUID();
    const ids = [second.id, unknown, first.id, second.id];

    // Read-your-writes on the feed read too: the counts include bob's like.
    const { data: feed } = await bob.GET("/v1/posts", {
      params: { query: { ids, after_event: like.event_id } },
    });

    const page: Feed | undefined = feed;
    assert.equal(page?.after_event_applied, true);
    assert.deepEqual(
      page?.posts.map((post) => post.id),
      [second.id, first.id],
      "in the order asked, each once",
    );
    assert.deepEqual(
      page?.posts.map((post) => [post.likes, post.liked_by_me]),
      [
        [1, true],
        [0, false],
      ],
    );
    assert.deepEqual(page?.missing, [unknown]);
  });

  test("an anonymous feed read has no liked_by_me", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    await alice.POST("/v1/likes", { body: { post_id: post.id } });

    const { data: feed } = await anonymousClient().GET("/v1/posts", { params: { query: { ids: [post.id] } } });

    assert.equal(feed?.posts.length, 1);
    assert.equal(feed?.posts[0] && "liked_by_me" in feed.posts[0], false);
    assert.equal(feed && "after_event_applied" in feed, false, "only with after_event");
  });

  test("more than 100 ids is a 400 problem", async () => {
    const ids = Array.from({ length: 101 }, () => randomUUID());

    const result = await anonymousClient().GET("/v1/posts", { params: { query: { ids } } });

    assertProblem(result, 400);
  });

  test("a deleted post is listed as missing", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    await alice.DELETE("/v1/posts/{post_id}", { params: { path: { post_id: post.id } } });

    const { data: feed } = await alice.GET("/v1/posts", { params: { query: { ids: [post.id] } } });

    assert.deepEqual(feed?.posts, []);
    assert.deepEqual(feed?.missing, [post.id]);
  });
});

describe("toggle", () => {
  test("toggling likes, and toggling again unlikes", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const path = { post_id: post.id };

    const on = await alice.POST("/v1/likes/{post_id}/toggle", { params: { path } });
    const off = await alice.POST("/v1/likes/{post_id}/toggle", { params: { path } });

    assert.equal(on.response.status, 200);
    const toggled: LikeToggle | undefined = on.data;
    assert.deepEqual([toggled?.post_id, toggled?.liked], [post.id, true]);
    assert.deepEqual([off.data?.post_id, off.data?.liked], [post.id, false]);
    assert.ok(on.data?.event_id && off.data?.event_id, "each toggle writes an event");
    assert.notEqual(on.data.event_id, off.data.event_id);
    // Read-your-writes: wait for both toggles' events, then the count is exact.
    await alice.GET("/v1/posts/{post_id}", { params: { path, query: { after_event: on.data.event_id } } });
    const { data: read } = await alice.GET("/v1/posts/{post_id}", {
      params: { path, query: { after_event: off.data.event_id } },
    });
    assert.equal(read?.after_event_applied, true);
    assert.equal(read?.likes, 0);
    assert.equal(read?.liked_by_me, false);
  });

  test("toggling a post that does not exist is a 404 problem", async () => {
    const { tally } = await userClient("alice");

    const result = await tally.POST("/v1/likes/{post_id}/toggle", {
      params: { path: { post_id: randomUUID() } },
    });

    assertProblem(result, 404);
  });
});

describe("who liked", () => {
  test("pages through the likers newest first, each exactly once", async () => {
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
    const times: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const result = await likersPage(post.id, cursor);
      assert.equal(result.error, undefined);
      const page: LikersPage | undefined = result.data;
      assert.ok(page);
      assert.ok(page.items.length <= 2);
      seen.push(...page.items.map((liker) => liker.user_id));
      times.push(...page.items.map((liker) => liker.created_at));
      cursor = page.next_cursor ?? undefined;
      pages++;
    } while (cursor !== undefined && pages < 10);

    assert.deepEqual(seen, [...likers].reverse());
    assert.equal(pages, 3);
    const instants = times.map((time) => Date.parse(time));
    assert.deepEqual(
      instants,
      [...instants].sort((a, b) => b - a),
      "newest like first",
    );
  });

  test("an unlike drops the liker from the list", async () => {
    const { tally: alice } = await userClient("alice");
    const { userId: bob, tally: bobClient } = await userClient("bob");
    const { userId: carol, tally: carolClient } = await userClient("carol");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const path = { post_id: post.id };
    await bobClient.POST("/v1/likes", { body: path });
    await carolClient.POST("/v1/likes", { body: path });

    await bobClient.DELETE("/v1/likes/{post_id}", { params: { path } });
    const { data: page } = await anonymousClient().GET("/v1/posts/{post_id}/likes", { params: { path } });

    assert.deepEqual(
      page?.items.map((liker) => liker.user_id),
      [carol],
    );
    assert.equal(page?.next_cursor, null);
    assert.ok(!page?.items.some((liker) => liker.user_id === bob));
  });
});

describe("comments", () => {
  test("a comment is listed newest first and counted", async () => {
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
    const comment: Comment | undefined = first.data;
    assert.equal(comment?.author_id, bob);
    assert.equal(comment?.post_id, post.id);
    assert.equal(comment?.body, "first!");
    assert.ok(first.data?.event_id && second.data?.event_id, "each comment writes an event");
    const { data: page } = await anonymousClient().GET("/v1/posts/{post_id}/comments", { params: { path } });
    assert.deepEqual(
      page?.items.map((listed) => [listed.id, listed.body, listed.event_id]),
      [
        [second.data.id, "second", null],
        [first.data.id, "first!", null],
      ],
    );
    assert.equal(page?.next_cursor, null);
    // Read-your-writes for two writes: a read after each event; the last one sees both.
    let read;
    for (const after_event of [first.data.event_id, second.data.event_id]) {
      read = (await alice.GET("/v1/posts/{post_id}", { params: { path, query: { after_event } } })).data;
      assert.equal(read?.after_event_applied, true);
    }
    assert.equal(read?.comments, 2);
  });

  test("sending a comment again with its id is a 200 that adds nothing; another body under that id is a 409", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const params = { path: { post_id: post.id } };
    const id = randomUUID();

    const created = await alice.POST("/v1/posts/{post_id}/comments", { params, body: { id, body: "once" } });
    const again = await alice.POST("/v1/posts/{post_id}/comments", { params, body: { id, body: "once" } });
    const other = await alice.POST("/v1/posts/{post_id}/comments", { params, body: { id, body: "twice" } });

    assert.equal(created.response.status, 201);
    assert.equal(created.data?.id, id);
    assert.equal(again.response.status, 200);
    assert.equal(again.data?.id, id);
    assert.equal(again.data?.event_id, null, "nothing changed, so no event");
    assertProblem(other, 409);
    const { data: page } = await alice.GET("/v1/posts/{post_id}/comments", { params });
    assert.deepEqual(
      page?.items.map((comment) => comment.body),
      ["once"],
    );
  });

  test("pages through the comments newest first, each exactly once", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const params = { path: { post_id: post.id } };
    const written: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { data } = await alice.POST("/v1/posts/{post_id}/comments", { params, body: { body: `#${i}` } });
      assert.ok(data);
      written.push(data.id);
    }

    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const { data: page } = await commentsPage(post.id, cursor);
      assert.ok(page);
      seen.push(...page.items.map((comment) => comment.id));
      cursor = page.next_cursor ?? undefined;
      pages++;
    } while (cursor !== undefined && pages < 10);

    assert.deepEqual(seen, [...written].reverse());
    assert.equal(pages, 3);
  });

  test("an empty comment is a 400 problem, and a body without `body` does not compile", async () => {
    const { tally: alice } = await userClient("alice");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const params = { path: { post_id: post.id } };

    const empty = await alice.POST("/v1/posts/{post_id}/comments", { params, body: { body: "" } });
    const blank = await alice.POST("/v1/posts/{post_id}/comments", { params, body: { body: " \n\t" } });
    // @ts-expect-error a comment needs its body
    const missing = await alice.POST("/v1/posts/{post_id}/comments", { params, body: {} });

    for (const result of [empty, blank, missing]) assertProblem(result, 400);
  });

  test("the post's author may delete a comment, someone else may not", async () => {
    const { tally: alice } = await userClient("alice");
    const { tally: bob } = await userClient("bob");
    const { tally: carol } = await userClient("carol");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const params = { path: { post_id: post.id } };
    const { data: comment } = await bob.POST("/v1/posts/{post_id}/comments", { params, body: { body: "hello" } });
    assert.ok(comment);
    const path = { comment_id: comment.id };

    const forbidden = await carol.DELETE("/v1/comments/{comment_id}", { params: { path } });
    const still = await carol.GET("/v1/posts/{post_id}/comments", { params });
    const deleted = await alice.DELETE("/v1/comments/{comment_id}", { params: { path } });
    const gone = await carol.GET("/v1/posts/{post_id}/comments", { params });

    assertProblem(forbidden, 403);
    assert.deepEqual(
      still.data?.items.map((listed) => listed.id),
      [comment.id],
      "a refused delete leaves the comment",
    );
    assert.equal(deleted.response.status, 204);
    assert.deepEqual(gone.data?.items, []);
  });

  test("a comment's author may delete it; deleting it again is a 204 without an event", async () => {
    const { tally: alice } = await userClient("alice");
    const { tally: bob } = await userClient("bob");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const postPath = { post_id: post.id };
    const { data: comment } = await bob.POST("/v1/posts/{post_id}/comments", {
      params: { path: postPath },
      body: { body: "oops" },
    });
    assert.ok(comment?.event_id);
    const path = { comment_id: comment.id };

    const deleted = await bob.DELETE("/v1/comments/{comment_id}", { params: { path } });
    const again = await bob.DELETE("/v1/comments/{comment_id}", { params: { path } });

    assert.equal(deleted.response.status, 204);
    const event = deleted.response.headers.get("tally-event-id");
    assert.ok(event, "a delete that changed something names its event in Tally-Event-Id");
    assert.equal(again.response.status, 204);
    assert.equal(again.response.headers.get("tally-event-id"), null);
    // Read-your-writes after a delete: its event comes in the Tally-Event-Id header.
    await alice.GET("/v1/posts/{post_id}", { params: { path: postPath, query: { after_event: comment.event_id } } });
    const { data: read } = await alice.GET("/v1/posts/{post_id}", {
      params: { path: postPath, query: { after_event: event } },
    });
    assert.equal(read?.after_event_applied, true);
    assert.equal(read?.comments, 0);
  });
});

describe("deleting a post", () => {
  test("only its author may, and afterwards it is a 404", async () => {
    const { tally: alice } = await userClient("alice");
    const { tally: bob } = await userClient("bob");
    const { data: post } = await alice.POST("/v1/posts", { body: {} });
    assert.ok(post);
    const path = { post_id: post.id };

    const forbidden = await bob.DELETE("/v1/posts/{post_id}", { params: { path } });
    const deleted = await alice.DELETE("/v1/posts/{post_id}", { params: { path } });
    const again = await alice.DELETE("/v1/posts/{post_id}", { params: { path } });
    const like = await bob.POST("/v1/likes", { body: { post_id: post.id } });
    const comment = await bob.POST("/v1/posts/{post_id}/comments", { params: { path }, body: { body: "hi" } });
    const read = await bob.GET("/v1/posts/{post_id}", { params: { path } });

    assertProblem(forbidden, 403);
    assert.equal(deleted.response.status, 204);
    assert.ok(deleted.response.headers.get("tally-event-id"));
    assert.equal(again.response.status, 204, "deleting again changes nothing");
    assert.equal(again.response.headers.get("tally-event-id"), null);
    assertProblem(like, 404);
    assertProblem(comment, 404);
    assertProblem(read, 404);
  });
});
