// createTallyClient itself, without a server: what it puts on the wire.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";

import { createTallyClient, isProblem, type TallyClientOptions } from "../src/index.ts";

/** A client whose requests are recorded and answered with `status` and `body`. */
function recording(options: Omit<TallyClientOptions, "baseUrl" | "fetch">, status = 200, body: unknown = {}) {
  const requests: Request[] = [];
  const tally = createTallyClient({
    ...options,
    baseUrl: "http://tally.test/",
    fetch: async (request: Request) => {
      requests.push(request);
      return new Response(JSON.stringify(body), {
        status,
        headers: { "content-type": status < 300 ? "application/json" : "application/problem+json" },
      });
    },
  });
  return { tally, requests };
}

describe("createTallyClient", () => {
  test("sends the token as a bearer header, to the base URL without its trailing slash", async () => {
    const { tally, requests } = recording({ token: "t0ken" });
    const post_id = randomUUID();

    await tally.GET("/v1/posts/{post_id}", { params: { path: { post_id } } });

    assert.equal(requests[0]?.url, `http://tally.test/v1/posts/${post_id}`);
    assert.equal(requests[0]?.headers.get("authorization"), "Bearer t0ken");
  });

  test("asks a token function before every request", async () => {
    let calls = 0;
    const { tally, requests } = recording({ token: async () => `token-${++calls}` });
    const params = { path: { post_id: randomUUID() } };

    await tally.GET("/v1/posts/{post_id}", { params });
    await tally.GET("/v1/posts/{post_id}", { params });

    assert.deepEqual(
      requests.map((request) => request.headers.get("authorization")),
      ["Bearer token-1", "Bearer token-2"],
    );
  });

  test("sends no authorization header without a token", async () => {
    const { tally, requests } = recording({ token: () => undefined });

    await tally.GET("/v1/posts/{post_id}", { params: { path: { post_id: randomUUID() } } });

    assert.equal(requests[0]?.headers.has("authorization"), false);
  });

  test("hands a problem body back as a typed error", async () => {
    const problem = { type: "/problems/not-found", title: "Not found", status: 404, detail: "no such post" };
    const { tally } = recording({}, 404, problem);

    const { data, error, response } = await tally.GET("/v1/posts/{post_id}", {
      params: { path: { post_id: randomUUID() } },
    });

    assert.equal(data, undefined);
    assert.equal(response.status, 404);
    assert.ok(isProblem(error));
    assert.deepEqual(error, problem);
  });
});
