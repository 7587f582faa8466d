// What every non-2xx answer must be, checked through the client: an RFC 9457 problem body,
// served as application/problem+json, handed back as the call's typed `error`.
import assert from "node:assert/strict";

import { isProblem, type Problem } from "../src/index.ts";

/** Asserts that `result` is a `status` answer with a complete problem body, and returns it. */
export function assertProblem(
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
