// What the tests need from outside: where the api runs and how to sign its bearer tokens.
//
//   TALLY_API_URL     the api's base URL, e.g. http://127.0.0.1:8080 (required)
//   TALLY_JWT_SECRET  the api's HS256 key; tests sign tokens for made-up users with it (required)
//
// `./dev test` (or `./dev client test`) starts a private stack and sets both. Against your own
// `./dev up`: `eval "$(./dev env)"; TALLY_API_URL=http://$TALLY_HTTP_ADDR npm test`.
import { randomUUID } from "node:crypto";

import { SignJWT } from "jose";

import { createTallyClient, type TallyClient } from "../src/index.ts";

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set: the client's tests run against a live api. ` +
        `Run them with \`./dev client test\`, or see openapi/ts/README.md.`,
    );
  }
  return value;
}

export const apiUrl = required("TALLY_API_URL");
const secret = new TextEncoder().encode(required("TALLY_JWT_SECRET"));

/** A user id no other test (or earlier run against the same database) uses. */
export function newUserId(name: string): string {
  return `${name}-${randomUUID()}`;
}

/** A valid HS256 token for `userId`, expiring in `ttlSeconds` (negative: already expired). */
export async function tokenFor(userId: string, ttlSeconds = 300): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(userId)
    .setIssuedAt(now)
    .setExpirationTime(now + ttlSeconds)
    .sign(secret);
}

/** A client acting as a new user (named `name` in its id), and that user's id. */
export async function userClient(name: string): Promise<{ userId: string; tally: TallyClient }> {
  const userId = newUserId(name);
  const token = await tokenFor(userId);
  return { userId, tally: createTallyClient({ baseUrl: apiUrl, token }) };
}

/** A client without a token: what a logged-out visitor uses. */
export function anonymousClient(): TallyClient {
  return createTallyClient({ baseUrl: apiUrl });
}

/**
 * Calls `read` until `done` holds for its result, and returns that result. The counts are
 * eventually consistent (they trail writes by the pipeline's lag), so a test waits for them
 * to converge; it fails after `timeoutMs` with the last value it saw.
 */
export async function eventually<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await read();
  while (!done(last)) {
    if (Date.now() > deadline) {
      throw new Error(`did not converge within ${timeoutMs} ms; last value: ${JSON.stringify(last)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    last = await read();
  }
  return last;
}
