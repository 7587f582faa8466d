// What the browser test and the screenshot share: a headless Chromium (Debian's, never a
// downloaded one), bearer tokens for made-up users, and the demo page's URL for one of them.
//
//   TALLY_API_URL      the api, e.g. http://127.0.0.1:8080 (required)
//   TALLY_JWT_SECRET   its HS256 key, to sign tokens for the test's users (required)
//   TALLY_DEMO_PORT    where the demo server listens; the api's TALLY_CORS_ORIGINS must list
//                      http://127.0.0.1:<port> (required: `./dev test` picks and passes one)
//   TALLY_CHROMIUM     the browser (default /usr/bin/chromium)
import { createHmac, randomUUID } from "node:crypto";

import puppeteer from "puppeteer-core";

export function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: the demo's browser test runs inside \`./dev test\` (or \`./dev client test\`)`);
  }
  return value;
}

/** A user id no earlier run against the same database used. */
export function newUserId(name) {
  return `${name}-${randomUUID().slice(0, 8)}`;
}

/** An HS256 JWT for `userId`, valid for an hour: what an identity provider would issue. */
export function tokenFor(userId, secret) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({ sub: userId, iat: now, exp: now + 3600 })}`;
  const signature = createHmac("sha256", secret).update(unsigned).digest("base64url");
  return `${unsigned}.${signature}`;
}

/** The demo page's URL for a user: settings after `#`, as `./dev demo` prints them. */
export function demoUrl(origin, { api, token, posts }) {
  const settings = new URLSearchParams({ api, token, posts: posts.join(",") });
  return `${origin}/#${settings}`;
}

/** Headless Chromium from the system (`--no-sandbox` only as root, where it must). */
export function launchChromium() {
  const args = ["--disable-dev-shm-usage"];
  if (process.getuid?.() === 0) args.push("--no-sandbox");
  return puppeteer.launch({
    executablePath: process.env.TALLY_CHROMIUM || "/usr/bin/chromium",
    headless: true, // the new headless mode (--headless=new)
    args,
  });
}

/** Creates a post as the user with `token` through the api itself (Node: no CORS here). */
export async function createPost(api, token) {
  const response = await fetch(`${api}/v1/posts`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ id: randomUUID() }),
  });
  if (response.status !== 201) throw new Error(`creating a post answered ${response.status}: ${await response.text()}`);
  return (await response.json()).id;
}
