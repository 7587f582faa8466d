// The tally client: a typed openapi-fetch client over the generated `schema.ts`.
//
// ```ts
// const tally = createTallyClient({ baseUrl: "https://tally.example", token: () => session.jwt });
// const { data, error } = await tally.GET("/v1/posts/{post_id}", {
//   params: { path: { post_id } },
// });
// ```
//
// Every call resolves to `{ data, error, response }`: `data` is typed by the operation's 2xx
// bodies and `error` by its declared error bodies (a `Problem`, RFC 9457); `response.status`
// tells which one came. Paths, methods, parameters and bodies are checked at compile time.
//
// Live counts (`GET /v1/live`, server-sent events) come through `tally.live`:
//
// ```ts
// const stop = tally.live(postIds, (counts) => render(counts.post_id, counts.likes), {
//   onMissing: (postId) => hide(postId),
// });
// ```
import createClient, { type Client, type ClientOptions } from "openapi-fetch";

// `.js`: the path the built package has (dist/schema.js and .d.ts); tsc and tsx map it to
// schema.ts here.
import type { components, operations, paths } from "./schema.js";
import { live, type LiveCounts, type LiveOptions, type StopLive } from "./live.js";

export type { components, operations, paths };
export {
  isLiveCounts,
  live,
  LiveError,
  type LiveCounts,
  type LiveMissing,
  type LiveOptions,
  type StopLive,
} from "./live.js";
export { SseParser, type SseEvent, type SseHandlers } from "./sse.js";

type Schemas = components["schemas"];

/** A post with its like and comment counts (and `liked_by_me` on reads with a token). */
export type Post = Schemas["Post"];
/** The body of `POST /v1/posts`. */
export type NewPost = Schemas["NewPost"];
/** One user's like of one post. */
export type Like = Schemas["Like"];
/** The body of `POST /v1/likes`. */
export type NewLike = Schemas["NewLike"];
/** The answer of `POST /v1/likes/{post_id}/toggle`: which way the like went. */
export type LikeToggle = Schemas["LikeToggle"];
/** The answer of `GET /v1/posts?ids=…`: the posts found, in the order asked, and the ids missing. */
export type Feed = Schemas["Feed"];
/** A user who likes a post, and since when. */
export type Liker = Schemas["Liker"];
/** One page of `GET /v1/posts/{post_id}/likes`, newest like first. */
export type LikersPage = Schemas["LikersPage"];
/** A comment on a post. */
export type Comment = Schemas["Comment"];
/** The body of `POST /v1/posts/{post_id}/comments`. */
export type NewComment = Schemas["NewComment"];
/** One page of `GET /v1/posts/{post_id}/comments`, newest first. */
export type CommentsPage = Schemas["CommentsPage"];
/** An RFC 9457 problem: the body of every non-2xx answer. */
export type Problem = Schemas["Problem"];

/** A bearer token, or a function giving the current one (called before every request). */
export type TokenSource =
  | string
  | (() => string | null | undefined | Promise<string | null | undefined>);

export interface TallyClientOptions extends Omit<ClientOptions, "baseUrl" | "querySerializer"> {
  /** Where the api listens, e.g. `http://127.0.0.1:8080` (no trailing `/v1`). */
  baseUrl: string;
  /** The caller's JWT. Reads work without one; writes answer 401 without a valid one. */
  token?: TokenSource;
}

export type TallyClient = Client<paths> & {
  /**
   * Follows the counts of `postIds` (1 to 100 post UUIDs) over `GET /v1/live`: `onCounts`
   * gets each post's current counts at once and again whenever they change, and the stream
   * reconnects by itself with a growing delay. Returns the function that stops it.
   */
  live(postIds: readonly string[], onCounts: (counts: LiveCounts) => void, options?: LiveOptions): StopLive;
};

/**
 * Creates a client for the tally api at `baseUrl`, sending `Authorization: Bearer <token>`
 * when a token is given.
 */
export function createTallyClient({ baseUrl, token, ...rest }: TallyClientOptions): TallyClient {
  const base = baseUrl.replace(/\/+$/, "");
  const client = createClient<paths>({
    ...rest,
    baseUrl: base,
    // The spec declares `ids` as `style: form, explode: false` (`ids=a,b,c`), but openapi-fetch
    // does not read that from the spec and would send `ids=a&ids=b`, which the server refuses
    // with a 400 (repeated `ids`). So every array goes out comma-separated.
    querySerializer: { array: { style: "form", explode: false } },
  });
  if (token !== undefined) {
    client.use({
      async onRequest({ request }) {
        const value = typeof token === "function" ? await token() : token;
        if (value) request.headers.set("Authorization", `Bearer ${value}`);
        return request;
      },
    });
  }
  return Object.assign(client, {
    live: (postIds: readonly string[], onCounts: (counts: LiveCounts) => void, options?: LiveOptions) =>
      live(base, postIds, onCounts, options),
  });
}

/** Whether `value` is a problem body (narrows an unknown error, e.g. from a middleware). */
export function isProblem(value: unknown): value is Problem {
  if (typeof value !== "object" || value === null) return false;
  const candidate: { type?: unknown; title?: unknown; status?: unknown } = value;
  return (
    typeof candidate.type === "string" &&
    typeof candidate.title === "string" &&
    typeof candidate.status === "number"
  );
}
