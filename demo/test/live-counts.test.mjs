// The demo page in a real, headless Chromium, served from its own origin (so every call to the
// api is cross-origin and CORS is exercised for real): two users open the same feed, one
// clicks like, and the other's page shows the new count from the live stream within a second,
// without reloading (fails if the count never arrives); a comment and a like made on one page
// show on the other with its count, text and liker.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { startDemoServer } from "../serve.mjs";
import { createPost, demoUrl, launchChromium, newUserId, required, tokenFor } from "./browser.mjs";

const api = required("TALLY_API_URL").replace(/\/+$/, "");
const secret = required("TALLY_JWT_SECRET");
const demoPort = Number(required("TALLY_DEMO_PORT"));

/** How soon the other page must show the like: the bound, from the click. */
const LIVE_WITHIN_MS = 1000;

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

/** A page showing the feed `posts` as `userId`, in its own browser context (own storage). */
async function openAs(userId, posts) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  await page.goto(demoUrl(demo.origin, { api, token: tokenFor(userId, secret), posts }));
  return { page, errors };
}

/** Waits until the page's live stream is open and its post shows `likes`. */
async function waitForLive(page, postId, likes) {
  await page.waitForFunction(
    (id, want) =>
      document.querySelector("#live")?.dataset.state === "open" &&
      document.querySelector(`[data-post-id="${id}"] .likes`)?.textContent === want,
    { timeout: 15_000 },
    postId,
    String(likes),
  );
}

const likesShown = (page, postId) =>
  page.$eval(`[data-post-id="${postId}"] .likes`, (el) => el.textContent);

describe("the demo page in Chromium", () => {
  test("a like clicked on one user's page shows its new count on another user's page within a second, without a reload", async () => {
    const postId = await createPost(api, tokenFor(newUserId("author"), secret));
    const alice = await openAs(newUserId("alice"), [postId]);
    const bob = await openAs(newUserId("bob"), [postId]);
    await waitForLive(alice.page, postId, 0);
    await waitForLive(bob.page, postId, 0);
    await bob.page.evaluate(() => {
      window.notReloaded = true;
    });

    const clickedAt = Date.now();
    await alice.page.click(`[data-post-id="${postId}"] .like`);
    const arrived = await bob.page
      .waitForFunction(
        (id) => document.querySelector(`[data-post-id="${id}"] .likes`)?.textContent === "1",
        { timeout: LIVE_WITHIN_MS, polling: "mutation" },
        postId,
      )
      .then(() => Date.now() - clickedAt)
      .catch(async (err) => {
        throw new Error(
          `bob's page still shows ${await likesShown(bob.page, postId)} likes ${LIVE_WITHIN_MS} ms after alice's click ` +
            `(page errors: ${JSON.stringify(bob.errors)})`,
          { cause: err },
        );
      });

    console.log(`# the like showed on the other page ${arrived} ms after the click`);
    assert.notEqual(new URL(demo.origin).origin, new URL(api).origin, "the page is on another origin than the api");
    assert.equal(await bob.page.evaluate(() => window.notReloaded), true, "bob's page was not reloaded");
    await alice.page.waitForSelector(`[data-post-id="${postId}"] .like[aria-pressed="true"]`, { timeout: 5000 });
    assert.equal(await likesShown(alice.page, postId), "1");
    assert.deepEqual([...alice.errors, ...bob.errors], []);
  });

  test("New post puts a new post at the top of the feed and into the link, and follows it live", async () => {
    const existing = await createPost(api, tokenFor(newUserId("author"), secret));
    const alice = await openAs(newUserId("alice"), [existing]);
    await waitForLive(alice.page, existing, 0);

    await alice.page.click("#new-post");
    await alice.page.waitForFunction(() => document.querySelectorAll(".post").length === 2, { timeout: 15_000 });
    const ids = await alice.page.$$eval(".post", (posts) => posts.map((post) => post.dataset.postId));
    const created = ids[0];
    await waitForLive(alice.page, created, 0);
    await fetch(`${api}/v1/likes`, {
      method: "POST",
      headers: { authorization: `Bearer ${tokenFor(newUserId("carol"), secret)}`, "content-type": "application/json" },
      body: JSON.stringify({ post_id: created }),
    });
    await alice.page.waitForFunction(
      (id) => document.querySelector(`[data-post-id="${id}"] .likes`)?.textContent === "1",
      { timeout: 15_000 },
      created,
    );

    assert.equal(ids[1], existing);
    const link = new URLSearchParams(new URL(alice.page.url()).hash.slice(1));
    assert.deepEqual(link.get("posts")?.split(","), [created, existing]);
    assert.deepEqual(alice.errors, []);
  });

  test("a comment added on one user's page shows, with its count and the liker, on another user's page", async () => {
    const postId = await createPost(api, tokenFor(newUserId("author"), secret));
    const aliceId = newUserId("alice");
    const alice = await openAs(aliceId, [postId]);
    const bob = await openAs(newUserId("bob"), [postId]);
    await waitForLive(alice.page, postId, 0);
    await waitForLive(bob.page, postId, 0);

    await alice.page.click(`[data-post-id="${postId}"] .like`);
    await alice.page.type(`[data-post-id="${postId}"] input[name="body"]`, "Seen from Chromium");
    await alice.page.click(`[data-post-id="${postId}"] .add-comment button`);
    await bob.page.waitForFunction(
      (id, commenter) => {
        const post = document.querySelector(`[data-post-id="${id}"]`);
        return (
          post?.querySelector(".comments")?.textContent === "1" &&
          post.querySelector(".comment-list")?.textContent === `${commenter}: Seen from Chromium` &&
          post.querySelector(".likers-list")?.textContent === commenter
        );
      },
      { timeout: 15_000 },
      postId,
      aliceId,
    );

    assert.equal(await alice.page.$eval(`[data-post-id="${postId}"] input[name="body"]`, (el) => el.value), "", "the form was cleared");
    assert.deepEqual([...alice.errors, ...bob.errors], []);
  });
});
