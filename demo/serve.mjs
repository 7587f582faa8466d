// The demo's static server: the page (index.html, main.js, style.css), the BUILT TypeScript
// client (openapi/ts/dist, `npm run build` there) at /client/ and its one dependency,
// openapi-fetch, at /vendor/openapi-fetch/. Nothing else is served: not the repository, not
// .dev/ (which holds the dev signing key).
//
//   node demo/serve.mjs [--host 127.0.0.1] [--port 5173]     (port 0: any free port)
//
// It runs on its own origin, so the page calls the api cross-origin, as a real frontend does:
// the api must list this origin in TALLY_CORS_ORIGINS. `./dev demo` starts it.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";

const demoDir = fileURLToPath(new URL(".", import.meta.url));
const clientDir = join(demoDir, "..", "openapi", "ts");

// URL prefix → folder, and which files under it may be served.
const MOUNTS = [
  { prefix: "/client/", dir: join(clientDir, "dist"), allow: /\.(js|js\.map)$/ },
  {
    prefix: "/vendor/openapi-fetch/",
    dir: join(clientDir, "node_modules", "openapi-fetch", "dist"),
    allow: /^index\.mjs(\.map)?$/,
  },
  { prefix: "/", dir: demoDir, allow: /^(index\.html|main\.js|style\.css)$/ },
];

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
};

/** The file a URL path names, or undefined when it names nothing this server serves. */
function resolve(pathname) {
  const path = pathname === "/" ? "/index.html" : pathname;
  for (const { prefix, dir, allow } of MOUNTS) {
    if (!path.startsWith(prefix)) continue;
    const rest = normalize(decodeURIComponent(path.slice(prefix.length)));
    if (rest.startsWith("..") || rest.includes(`${sep}..`) || !allow.test(rest)) return undefined;
    return join(dir, rest);
  }
  return undefined;
}

async function answer(request, response) {
  const { pathname } = new URL(request.url ?? "/", "http://demo");
  let file;
  try {
    file = request.method === "GET" || request.method === "HEAD" ? resolve(pathname) : undefined;
  } catch {
    // A broken %-escape (decodeURIComponent's URIError).
    response.writeHead(400, { "content-type": "text/plain; charset=utf-8" }).end("bad path\n");
    return;
  }
  const info = file && (await stat(file).catch(() => undefined));
  if (!file || !info?.isFile()) {
    response.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found\n");
    return;
  }
  response.writeHead(200, {
    "content-type": TYPES[extname(file)] ?? "application/octet-stream",
    "content-length": info.size,
    // Always the files on disk: a rebuilt client shows up on the next reload.
    "cache-control": "no-store",
  });
  if (request.method === "HEAD") response.end();
  else createReadStream(file).pipe(response);
}

/** Starts the server; resolves to it and the origin it serves (what TALLY_CORS_ORIGINS lists). */
export async function startDemoServer({ host = "127.0.0.1", port = 5173 } = {}) {
  const server = createServer((request, response) => {
    answer(request, response).catch(() => {
      if (!response.headersSent) response.writeHead(500);
      response.end();
    });
  });
  await new Promise((done, fail) => {
    server.once("error", fail);
    server.listen(port, host, done);
  });
  const address = server.address();
  return { server, origin: `http://${host}:${address.port}` };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i === -1 ? fallback : process.argv[i + 1];
  };
  const { origin } = await startDemoServer({ host: arg("host", "127.0.0.1"), port: Number(arg("port", "5173")) });
  console.log(`demo: serving ${origin} (Ctrl-C stops it)`);
}
