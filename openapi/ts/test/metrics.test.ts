// The client against a live api: /metrics, which answers OpenMetrics text rather than JSON.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";

import { anonymousClient } from "./stack.ts";

describe("metrics", () => {
  test("reads as OpenMetrics text (parseAs: text), counting requests by operation and status", async () => {
    const tally = anonymousClient();
    await tally.GET("/v1/posts/{post_id}", { params: { path: { post_id: randomUUID() } } });

    const { data, response } = await tally.GET("/metrics", { parseAs: "text" });

    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^application\/openmetrics-text/);
    const text: string | undefined = data;
    assert.ok(text);
    assert.ok(text.trimEnd().endsWith("# EOF"), "an OpenMetrics exposition ends with # EOF");
    assert.match(text, /^tally_api_requests_total\{operation="getPost",status="404"\} \d+$/m);
  });
});
