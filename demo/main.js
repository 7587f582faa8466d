// The tally demo page: a feed of posts with a like button, counts, who liked, comments with
// "add comment", and counts that update live. Everything goes through the built TypeScript
// client (@tally/client, served from openapi/ts/dist); copy this file and swap the import for
// `import { createTallyClient } from "@tally/client"` in a bundled app.
//
// The page reads its settings from the part of the URL after `#` (never sent to a server):
//   api=http://127.0.0.1:8080   where the api runs (another origin: CORS)
//   token=<JWT>                  the user's bearer token (`./dev token alice`); none: read only
//   posts=<uuid>,<uuid>,…        the feed; "New post" adds to it
import { createTallyClient } from "/client/index.js";

const settings = new URLSearchParams(location.hash.slice(1));
const token = settings.get("token") || undefined;
const postIds = (settings.get("posts") ?? "").split(",").filter(Boolean);
const tally = createTallyClient({ baseUrl: settings.get("api") ?? "http://127.0.0.1:8080", token });

const feed = document.querySelector("#feed");
const liveStatus = document.querySelector("#live");
let stopLive = () => {};

/** Shows what went wrong: every error the api sends is an RFC 9457 problem. */
function showProblem(error) {
  const problem = document.querySelector("#problem");
  problem.hidden = !error;
  problem.textContent = error ? `${error.title ?? "Error"}: ${error.detail ?? ""}` : "";
}

/** The `sub` of a JWT, to say who is signed in (the api checks the token; this only shows it). */
function userOf(jwt) {
  try {
    return JSON.parse(atob(jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).sub;
  } catch {
    return undefined;
  }
}

/** The article of one post, made from the template the first time. */
function articleFor(post) {
  let article = feed.querySelector(`[data-post-id="${post.id}"]`);
  if (!article) {
    article = document.querySelector("#post-template").content.firstElementChild.cloneNode(true);
    article.dataset.postId = post.id;
    article.querySelector(".post-id").textContent = `…${post.id.slice(-8)}`;
    article.querySelector(".post-id").title = post.id;
    article.querySelector(".author").textContent = post.author_id;
    article.querySelector(".like").addEventListener("click", () => toggleLike(article));
    article.querySelector(".add-comment").addEventListener("submit", (event) => {
      event.preventDefault();
      addComment(article, event.target);
    });
    feed.append(article);
  }
  return article;
}

/** Writes a post's counts into its article (from the feed read or a live event). */
function showCounts(article, { likes, comments }) {
  const changed = article.dataset.likes !== String(likes) || article.dataset.comments !== String(comments);
  article.dataset.likes = likes;
  article.dataset.comments = comments;
  article.querySelector(".likes").textContent = likes;
  article.querySelector(".comments").textContent = comments;
  return changed;
}

/**
 * Whether a read begun now is still the newest when it answers: reads started by two live
 * events in a row may answer out of order, and the older must not overwrite the newer.
 */
function newest(article, what) {
  const turn = (Number(article.dataset[what]) || 0) + 1;
  article.dataset[what] = turn;
  return () => Number(article.dataset[what]) === turn;
}

async function showLikers(article) {
  const current = newest(article, "likersRead");
  const { data } = await tally.GET("/v1/posts/{post_id}/likes", {
    params: { path: { post_id: article.dataset.postId }, query: { limit: 5 } },
  });
  if (!current()) return;
  const names = (data?.items ?? []).map((liker) => liker.user_id);
  article.querySelector(".likers-list").textContent =
    names.length === 0 ? "nobody yet" : names.join(", ") + (data?.next_cursor ? " and others" : "");
}

async function showComments(article) {
  const current = newest(article, "commentsRead");
  const { data } = await tally.GET("/v1/posts/{post_id}/comments", {
    params: { path: { post_id: article.dataset.postId }, query: { limit: 5 } },
  });
  if (!current()) return;
  const items = (data?.items ?? []).map((comment) => {
    const li = document.createElement("li");
    li.textContent = `${comment.author_id}: ${comment.body}`; // textContent: never HTML
    return li;
  });
  article.querySelector(".comment-list").replaceChildren(...items);
}

// The like button is the toggle: it flips the caller's like and says which way it went. The
// count is not bumped here: the live stream brings the new count, to this page and every other.
async function toggleLike(article) {
  const { data, error } = await tally.POST("/v1/likes/{post_id}/toggle", {
    params: { path: { post_id: article.dataset.postId } },
  });
  showProblem(error);
  if (data) article.querySelector(".like").setAttribute("aria-pressed", String(data.liked));
}

async function addComment(article, form) {
  const { error } = await tally.POST("/v1/posts/{post_id}/comments", {
    params: { path: { post_id: article.dataset.postId } },
    body: { body: form.elements.body.value },
  });
  showProblem(error);
  if (!error) form.reset();
}

/** Reads the feed (counts, and with a token whether I like each post), then follows it live. */
async function load() {
  stopLive();
  if (postIds.length === 0) {
    feed.textContent = "No posts yet: press New post.";
    return;
  }
  const { data, error } = await tally.GET("/v1/posts", { params: { query: { ids: postIds } } });
  showProblem(error);
  if (!data) return;
  if (data.posts.length === 0) {
    feed.textContent = "None of these posts exists (any more): press New post.";
    return;
  }
  if (feed.querySelector(".post") === null) feed.replaceChildren();
  for (const post of data.posts) {
    const article = articleFor(post);
    showCounts(article, post);
    article.querySelector(".like").setAttribute("aria-pressed", String(post.liked_by_me ?? false));
    showLikers(article);
    showComments(article);
  }

  stopLive = tally.live(
    data.posts.map((post) => post.id),
    (counts) => {
      const article = feed.querySelector(`[data-post-id="${counts.post_id}"]`);
      if (article && showCounts(article, counts)) {
        showLikers(article);
        showComments(article);
      }
    },
    {
      onOpen: () => setLive("open", "live"),
      onError: (error) => setLive("retrying", `reconnecting in ${(error.retryInMs / 1000).toFixed(1)} s…`),
      onMissing: (postId) => feed.querySelector(`[data-post-id="${postId}"]`)?.remove(),
    },
  );
}

function setLive(state, text) {
  liveStatus.dataset.state = state;
  liveStatus.textContent = text;
}

// A new post goes to the front of the feed, and into the URL so the link shares it.
document.querySelector("#new-post").addEventListener("click", async () => {
  const { data, error } = await tally.POST("/v1/posts", { body: {} });
  showProblem(error);
  if (!data) return;
  postIds.unshift(data.id);
  settings.set("posts", postIds.join(","));
  history.replaceState(null, "", `#${settings}`);
  feed.replaceChildren();
  await load();
});

document.querySelector("#me").textContent = (token && userOf(token)) || "nobody (read only)";
document.querySelector("#new-post").disabled = !token;
load();
