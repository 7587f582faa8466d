// The demo page in headless Chromium while its api restarts: the page's EventSource fails,
// the client reconnects by itself with its growing delay, and the new stream's first event
// brings the counts changed while the api was down, without a reload.
//
// The restarted api is one of the test's own, a second tally-api on the test stack's Postgres
// and NATS (TALLY_TEST_API_BIN, TALLY_TEST_API_DATABASE_URL, TALLY_TEST_NATS_URL, which
// `./dev test` sets); the like is written through the test stack's api meanwhile.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { after, before, describe, test } from "node:test";

import { startDemoServer } from "../serve.mjs";
import { createPost, demoUrl, launchChromium, newUserId, required, tokenFor } from "./browser.mjs";

const api = required("TALLY_API_URL").replace(/\/+$/, "");
const secret = required("TALLY_JWT_SECRET");
const demoPort = Number(required("TALLY_DEMO_PORT"));
const apiBin = required("TALLY_TEST_API_BIN");
const databaseUrl = required("TALLY_TEST_API_DATABASE_URL");
const natsUrl = required("TALLY_TEST_NATS_URL");

let demo;
let browser;

before(async () => {
  demo = await startDemoServer({ port: demoPort });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  demo?.server.close();
});

/** A loopback port nothing listens on now. */
async function freePort() {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  server.close();
  await once(server, "close");
  return port;
}

/** Starts a tally-api on `port` and resolves once it answers /healthz; returns the process. */
async function startApi(port) {
  const child = spawn(apiBin, [], {
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      NATS_URL: natsUrl,
      TALLY_HTTP_ADDR: `127.0.0.1:${port}`,
      TALLY_JWT_SECRET: secret,
      TALLY_CORS_ORIGINS: demo.origin,
      TALLY_INSTANCE: `demo-restart-${port}`,
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the test's api exited with ${child.exitCode}`);
    const up = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
    if (up) return child;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("the test's api did not answer /healthz within 30 s");
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function stopApi(child) {
  if (child.exitCode !== null) return;
  child.kill("SIGTERM");
  await once(child, "exit");
}

describe("the demo page while its api restarts", () => {
  test("the page reconnects by itself and shows the counts changed while the api was down, without a reload", async () => {
    const postId = await createPost(api, tokenFor(newUserId("author"), secret));
    const port = await freePort();
    const ownApi = `http://127.0.0.1:${port}`;
    let child = await startApi(port);
    try {
      const page = await (await browser.createBrowserContext()).newPage();
      await page.goto(demoUrl(demo.origin, { api: ownApi, token: tokenFor(newUserId("bob"), secret), posts: [postId] }));
      await page.waitForFunction(() => document.querySelector("#live")?.dataset.state === "open", { timeout: 15_000 });
      await page.evaluate(() => {
        window.notReloaded = true;
      });

      await stopApi(child);
      await page.waitForFunction(() => document.querySelector("#live")?.dataset.state === "retrying", { timeout: 15_000 });
      const liked = await fetch(`${api}/v1/likes`, {
        method: "POST",
        headers: { authorization: `Bearer ${tokenFor(newUserId("carol"), secret)}`, "content-type": "application/json" },
        body: JSON.stringify({ post_id: postId }),
      });
      assert.equal(liked.status, 201);
      child = await startApi(port);
      await page.waitForFunction(
        (id) =>
          document.querySelector("#live")?.dataset.state === "open" &&
          document.querySelector(`[data-post-id="${id}"] .likes`)?.textContent === "1",
        { timeout: 30_000 },
        postId,
      );

      assert.equal(await page.evaluate(() => window.notReloaded), true, "the page was not reloaded");
    } finally {
      await stopApi(child);
    }
  });
});
