// The client as a user installs it: `npm pack` here (which builds dist/ through `prepare`),
// the tarball installed into a new project outside this folder (offline when npm's cache
// holds openapi-fetch, as after `npm ci` here), then used from plain Node ESM against the
// live api and type-checked by a strict tsc (this folder's typescript) as a TypeScript
// project would.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";

import { apiUrl } from "./stack.ts";

const run = promisify(execFile);
const clientDir = fileURLToPath(new URL("..", import.meta.url));
const tsc = join(clientDir, "node_modules", "typescript", "bin", "tsc");

// Plain JavaScript, as a Node project without a build step writes it.
const ESM_SCRIPT = `
import { createTallyClient, isProblem } from "@tally/client";

const tally = createTallyClient({ baseUrl: process.env.TALLY_API_URL + "/" });
const missing = "00000000-0000-7000-8000-00000000abcd";
const post = await tally.GET("/v1/posts/{post_id}", { params: { path: { post_id: missing } } });
const other = "00000000-0000-7000-8000-00000000abce";
const feed = await tally.GET("/v1/posts", { params: { query: { ids: [missing, other] } } });
console.log(JSON.stringify({
  status: post.response.status,
  problem: isProblem(post.error),
  feedStatus: feed.response.status,
  missing: feed.data?.missing,
}));
`;

// Strict TypeScript against the package's .d.ts: the unused @ts-expect-error lines would fail
// the check if the types were missing (everything \`any\`).
const TS_FILE = `
import { createTallyClient, isProblem, type NewComment, type Post } from "@tally/client";
import type { TallyClient } from "@tally/client";

const tally: TallyClient = createTallyClient({ baseUrl: "http://127.0.0.1:8080", token: "jwt" });

export async function likes(post_id: string): Promise<number | undefined> {
  const { data, error } = await tally.GET("/v1/posts/{post_id}", {
    params: { path: { post_id } },
  });
  if (isProblem(error)) return undefined;
  const post: Post | undefined = data;
  return post?.likes;
}

export async function comment(post_id: string): Promise<void> {
  await tally.POST("/v1/posts/{post_id}/comments", {
    params: { path: { post_id } },
    body: { body: "Lovely photo!" } satisfies NewComment,
  });
  // @ts-expect-error: no such path
  await tally.GET("/v1/no-such-path");
  // @ts-expect-error: post_id is a string
  await tally.POST("/v1/likes", { body: { post_id: 42 } });
}
`;

const TS_CONFIG = {
  compilerOptions: {
    target: "ES2022",
    lib: ["ES2022", "DOM"],
    module: "NodeNext",
    moduleResolution: "NodeNext",
    types: [],
    strict: true,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    noEmit: true,
    // The package's own .d.ts are checked too, not taken on trust; TypeScript's lib files are.
    skipLibCheck: false,
    skipDefaultLibCheck: true,
  },
  files: ["use.ts"],
};

describe("the packed package", () => {
  let scratch = "";

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), "tally-client-package-"));
    await run("npm", ["pack", "--silent", "--pack-destination", scratch], { cwd: clientDir });
    const tarball = (await readdir(scratch)).find((name) => name.endsWith(".tgz"));
    assert.ok(tarball, "npm pack wrote no tarball");
    await writeFile(
      join(scratch, "package.json"),
      JSON.stringify({ name: "scratch", private: true, type: "module" }),
    );
    await run(
      "npm",
      ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", `./${tarball}`],
      { cwd: scratch },
    );
  });

  after(async () => {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  test("imports from plain Node ESM, builds a client and calls the api with it", async () => {
    await writeFile(join(scratch, "use.mjs"), ESM_SCRIPT);

    const { stdout } = await run(process.execPath, ["use.mjs"], {
      cwd: scratch,
      env: { ...process.env, TALLY_API_URL: apiUrl },
    });

    const seen: unknown = JSON.parse(stdout);
    assert.deepEqual(seen, {
      status: 404,
      problem: true,
      feedStatus: 200,
      missing: ["00000000-0000-7000-8000-00000000abcd", "00000000-0000-7000-8000-00000000abce"],
    });
  });

  test("type-checks a TypeScript file using its types (its .d.ts) under a strict tsc", async () => {
    await writeFile(join(scratch, "use.ts"), TS_FILE);
    await writeFile(join(scratch, "tsconfig.json"), JSON.stringify(TS_CONFIG));

    const args = [tsc, "-p", "tsconfig.json", "--listFiles"];
    const { code, stdout } = await run(process.execPath, args, { cwd: scratch }).then(
      ({ stdout }) => ({ code: 0, stdout }),
      (err: { code?: number; stdout?: string }) => ({
        code: err.code ?? 1,
        stdout: err.stdout ?? String(err),
      }),
    );

    const lines = stdout.split("\n");
    assert.deepEqual(lines.filter((line) => line.includes("error TS")), [], "tsc found errors");
    assert.equal(code, 0, stdout);
    // Declarations only: a consumer's tsc never compiles the package's sources under its own
    // settings (nor would its output run: Node cannot load them).
    const fromPackage = lines.filter((line) => line.includes("/node_modules/@tally/client/"));
    assert.ok(fromPackage.some((line) => line.endsWith("/@tally/client/dist/index.d.ts")), stdout);
    assert.deepEqual(fromPackage.filter((line) => !line.endsWith(".d.ts")), []);
  });
});
