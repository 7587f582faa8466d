// Generates src/schema.ts (the client's types) from the committed spec, ../openapi.json.
//
//   node scripts/generate.mjs          write src/schema.ts       (npm run generate, ./dev client)
//   node scripts/generate.mjs --check  fail when src/schema.ts differs from what the spec gives
//                                      (npm run check:generated, part of ./dev test)
//
// Uses openapi-typescript's library API with its defaults, so the output is the same as its
// CLI's; the check compares in memory and writes nothing.
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString, COMMENT_HEADER } from "openapi-typescript";

const specUrl = new URL("../../openapi.json", import.meta.url);
const schemaUrl = new URL("../src/schema.ts", import.meta.url);
const REGENERATE = "./dev client   (or, in openapi/ts: npm run generate)";

const check = process.argv.includes("--check");

const ast = await openapiTS(specUrl, { silent: true });
const generated = `${COMMENT_HEADER}${astToString(ast)}`;
const schemaPath = fileURLToPath(schemaUrl);

if (check) {
  const committed = await readFile(schemaUrl, "utf8").catch(() => "");
  if (committed !== generated) {
    console.error(
      `openapi/ts/src/schema.ts is stale: it does not match openapi/openapi.json.\n` +
        `Regenerate it with:\n  ${REGENERATE}\nand commit the result.`,
    );
    process.exit(1);
  }
  console.log("openapi/ts/src/schema.ts matches openapi/openapi.json");
} else {
  await writeFile(schemaUrl, generated);
  console.log(`wrote ${schemaPath}`);
}
