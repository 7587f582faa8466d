// The demo's static server serves the page, the built client and openapi-fetch, and nothing
// else: not the repository around it, and above all not .dev/ with the dev signing key.
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, test } from "node:test";

import { startDemoServer } from "../serve.mjs";

let demo;

before(async () => {
  demo = await startDemoServer({ port: 0 });
});

after(() => demo?.server.close());

/** GETs `path` exactly as written (no normalizing of `..`), resolving to status and type. */
function get(path, method = "GET") {
  const { hostname, port } = new URL(demo.origin);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, path, method }, (response) => {
      response.resume();
      response.on("end", () => resolve({ status: response.statusCode, type: response.headers["content-type"] }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("the demo server", () => {
  test("it serves the page, its script and style, the built client and openapi-fetch", async () => {
    const answers = await Promise.all(
      ["/", "/main.js", "/style.css", "/client/index.js", "/client/live.js", "/vendor/openapi-fetch/index.mjs"].map((p) => get(p)),
    );

    assert.deepEqual(
      answers.map((a) => [a.status, a.type.split(";")[0]]),
      [
        [200, "text/html"],
        [200, "text/javascript"],
        [200, "text/css"],
        [200, "text/javascript"],
        [200, "text/javascript"],
        [200, "text/javascript"],
      ],
    );
  });

  test("it serves nothing else: no other file, no way out of its folders, no writes, no broken paths", async () => {
    const answers = await Promise.all([
      get("/package.json"),
      get("/serve.mjs"),
      get("/client/../../../.dev/jwt-secret"),
      get("/client/..%2F..%2F..%2F.dev%2Fjwt-secret"),
      get("/client/%2e%2e/%2e%2e/package.json"),
      get("/vendor/openapi-fetch/../package.json"),
      get("/%E0%A4%A"),
      get("/", "POST"),
    ]);

    assert.deepEqual(
      answers.map((a) => a.status),
      [404, 404, 404, 404, 404, 404, 400, 404],
    );
  });
});
