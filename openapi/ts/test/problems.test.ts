// Errors through the client: every non-2xx answer is a typed RFC 9457 problem, and calls the
// spec does not allow do not compile (each `@ts-expect-error` fails tsc once it stops being one).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";

import { createTallyClient, isProblem, type Problem } from "../src/index.ts";
import { anonymousClient, apiUrl, newUserId, tokenFor, userClient } from "./stack.ts";

function assertProblem(
  result: { error?: Problem | undefined; response: Response },
  status: number,
): Problem {
  assert.equal(result.response.status, status);
  assert.match(result.response.headers.get("content-type") ?? "", /^application\/problem\+json/);
  const problem = result.error;
  assert.ok(isProblem(problem), `a problem body, got ${JSON.stringify(problem)}`);
  assert.equal(problem.status, status);
  assert.ok(problem.title.length > 0);
  assert.ok(problem.detail.length > 0);
  return problem;
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
    const [header, payload] = (await tokenFor(newUserId("mallory"))).split(".");
    const forged = `${header}.${payload}.${Buffer.from("not the signature").toString("base64url")}`;
    const tally = createTallyClient({ baseUrl: apiUrl, token: forged });

    const result = await tally.POST("/v1/likes", { body: { post_id: post.id } });

    assertProblem(result, 401);
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

  test("a body of the wrong type does not compile, and the api refuses it with a 4xx problem", async () => {
    const { tally } = await userClient("bob");

    // @ts-expect-error post_id is a string (a UUID), not a number
    const result = await tally.POST("/v1/likes", { body: { post_id: 42 } });

    const problem = assertProblem(result, result.response.status);
    assert.ok([400, 422].includes(problem.status), `400 or 422, got ${problem.status}`);
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
}
