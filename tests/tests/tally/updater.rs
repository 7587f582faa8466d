//! The updater in production: exact counts under duplicates, crashes, poison, negative deltas
//! and two instances; reconcile finds and repairs drift; the inbox is pruned.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tally_sql::{Event, EventType};
use tally_tests::TestApp;
use tally_updater::reconcile::{self, Options};
use uuid::Uuid;

/// Publishes `payload` on `subject` straight to the stream under `msg_id`.
async fn publish(app: &TestApp, subject: &str, msg_id: &str, payload: Vec<u8>) {
    let js = app.nats.jetstream().await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(tally_sql::HEADER_MSG_ID, msg_id);
    js.publish_with_headers(subject.to_owned(), headers, payload.into())
        .await
        .expect("publishing")
        .await
        .expect("the stream acked");
}

/// Publishes `event` under its own id as message id.
async fn publish_event(app: &TestApp, event: &Event) {
    publish(
        app,
        &event.subject(),
        &event.id.to_string(),
        event.to_json().into_bytes(),
    )
    .await;
}

/// The stream's state as the durable consumer sees it: (pending, ack pending).
async fn consumer_backlog(app: &TestApp) -> (u64, usize) {
    let js = app.nats.jetstream().await;
    let stream = js.get_stream(tally_sql::STREAM).await.expect("the stream");
    let mut consumer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("tally-updater")
        .await
        .expect("the durable consumer");
    let info = consumer.info().await.expect("consumer info");
    (info.num_pending, info.num_ack_pending)
}

/// How many messages the stream holds.
async fn stream_messages(app: &TestApp) -> u64 {
    let js = app.nats.jetstream().await;
    match js.get_stream(tally_sql::STREAM).await {
        Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Waits until the durable consumer has nothing left to deliver or to be acked.
async fn drained(app: &TestApp) {
    let done = TestApp::eventually(Duration::from_secs(20), || async {
        (consumer_backlog(app).await == (0, 0)).then_some(())
    })
    .await;
    assert!(done.is_some(), "the updater never drained the stream");
}

async fn likes_of(app: &TestApp, post: Uuid) -> i64 {
    app.db
        .query_opt("SELECT likes FROM post_counts WHERE post_id = $1", &[&post])
        .await
        .expect("reading the count")
        .map(|row| row.get(0))
        .unwrap_or(0)
}

async fn metrics_text(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("a metrics body")
}

/// The value of the sample line starting with `prefix` (name and labels), or 0.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Builds an updater from `config` and runs it until the test stops it.
async fn run_updater(app: &TestApp, config: tally_updater::Config) -> tally_tests::SpawnedUpdater {
    app.spawn_updater(
        tally_updater::Updater::build(config)
            .await
            .expect("building an updater"),
    )
    .await
}

/// Publishes ann's like or unlike of `post`.
async fn publish_anns(app: &TestApp, kind: EventType, post: Uuid) {
    publish_event(app, &Event::new(kind, post, "author", "ann")).await;
}

/// An updater, built but not running, with no configured redeliveries, so only the ack wait
/// and the ack floor decide how long it holds back an event that would go negative.
async fn updater_holding_back_by_time(app: &TestApp, ack_wait: Duration) -> tally_updater::Updater {
    let mut config = app.updater_config();
    config.negative_retries = 0;
    config.ack_wait = ack_wait;
    tally_updater::Updater::build(config)
        .await
        .expect("building an updater")
}

/// Takes the next message off the durable consumer as another updater instance would, and
/// returns it unacked: JetStream keeps it from everyone else until its ack wait ends.
async fn take_as_another_updater(app: &TestApp) -> async_nats::jetstream::Message {
    use futures::StreamExt;
    let js = app.nats.jetstream().await;
    let consumer = js
        .get_stream(tally_sql::STREAM)
        .await
        .expect("the stream")
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("tally-updater")
        .await
        .expect("the durable consumer");
    let mut fetched = consumer
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .expect("fetching");
    fetched
        .next()
        .await
        .expect("a message to take")
        .expect("a message")
}

/// A like and its unlike on `post` were both applied: the count is back to zero, both ids are
/// in the inbox, and nothing was dead-lettered.
async fn like_and_unlike_both_applied(app: &TestApp, post: Uuid) {
    assert_eq!(app.scalar_i64("SELECT count(*) FROM dead_letters").await, 0);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM inbox").await, 2);
    assert_eq!(likes_of(app, post).await, 0);
}

fn options(fix: bool) -> Options {
    Options {
        post: None,
        fix,
        inbox_retention: tally_updater::config::DEFAULT_INBOX_RETENTION,
        progress: false,
    }
}

#[tokio::test]
async fn the_same_event_under_two_message_ids_is_counted_once() {
    // Arrange
    let app = TestApp::spawn_without_updater().await;
    let updater = run_updater(&app, app.updater_config()).await;
    let post = Uuid::now_v7();
    let event = Event::new(EventType::LikeAdded, post, "author", "ann");

    // Act: past JetStream's de-duplication, which only knows message ids.
    publish(
        &app,
        &event.subject(),
        "first",
        event.to_json().into_bytes(),
    )
    .await;
    publish(
        &app,
        &event.subject(),
        "second",
        event.to_json().into_bytes(),
    )
    .await;
    drained(&app).await;

    // Assert
    assert_eq!(likes_of(&app, post).await, 1);
    let metrics = metrics_text(updater.metrics_addr).await;
    assert_eq!(metric(&metrics, "tally_updater_events_applied_total"), 1.0);
    let duplicates = metric(
        &metrics,
        "tally_updater_duplicates_dropped_total{caught_in=\"memory\"}",
    ) + metric(
        &metrics,
        "tally_updater_duplicates_dropped_total{caught_in=\"inbox\"}",
    );
    assert_eq!(duplicates, 1.0, "{metrics}");
    assert!(metrics.contains("tally_updater_event_lag_seconds_count 1"));
    updater.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_crash_between_commit_and_ack_is_counted_once() {
    // Arrange: a short ack wait so the unacked event comes back quickly.
    let app = TestApp::spawn_without_updater().await;
    let mut config = app.updater_config();
    config.ack_wait = Duration::from_secs(1);
    let crashing = tally_updater::Updater::build(config.clone())
        .await
        .expect("building an updater")
        .crash_after_commit();
    let crashing = app.spawn_updater(crashing).await;
    let post = Uuid::now_v7();
    publish_anns(&app, EventType::LikeAdded, post).await;

    // Act: the first updater commits, then "dies" before acking.
    crashing.finished().await;
    assert_eq!(likes_of(&app, post).await, 1);
    assert_eq!(
        consumer_backlog(&app).await.1,
        1,
        "the event is still unacked"
    );
    let fresh = run_updater(&app, config).await;
    drained(&app).await;

    // Assert: redelivered, dropped by the inbox (the fresh instance's memory is empty).
    assert_eq!(likes_of(&app, post).await, 1);
    let metrics = metrics_text(fresh.metrics_addr).await;
    assert_eq!(
        metric(
            &metrics,
            "tally_updater_duplicates_dropped_total{caught_in=\"inbox\"}"
        ),
        1.0,
        "{metrics}"
    );
    fresh.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_and_everything_after_it_is_counted() {
    // Arrange
    let app = TestApp::spawn_without_updater().await;
    let post = Uuid::now_v7();
    let future = Event::new(EventType::LikeAdded, post, "author", "bob");
    let future_json = future.to_json().replace("\"version\":1", "\"version\":9");

    // Act: garbage, an unknown version, then good events.
    publish(
        &app,
        &format!("tally.like.added.{post}"),
        "garbage",
        b"{not json".to_vec(),
    )
    .await;
    publish(&app, &future.subject(), "future", future_json.into_bytes()).await;
    for user in ["ann", "cat"] {
        publish_event(
            &app,
            &Event::new(EventType::LikeAdded, post, "author", user),
        )
        .await;
    }
    let updater = run_updater(&app, app.updater_config()).await;
    drained(&app).await;

    // Assert: terminated (not pending), kept with the reason, and the rest applied.
    assert_eq!(likes_of(&app, post).await, 2);
    // Ordered by reason: the updater's workers may dead-letter them in either order.
    let reasons: Vec<String> = app
        .db
        .query("SELECT reason FROM dead_letters ORDER BY reason DESC", &[])
        .await
        .expect("reading dead letters")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].starts_with("payload is not a tally event"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("version 9 is not supported"),
        "{reasons:?}"
    );
    let metrics = metrics_text(updater.metrics_addr).await;
    assert_eq!(
        metric(
            &metrics,
            "tally_updater_dead_letters_total{reason=\"poison\"}"
        ),
        2.0
    );
    updater.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_delta_that_would_make_a_count_negative_is_dead_lettered_and_the_rest_applies() {
    // Arrange: the shortest hold (no configured retries, a 1 s ack wait: held 2 s).
    let app = TestApp::spawn_without_updater().await;
    let (broken, fine) = (Uuid::now_v7(), Uuid::now_v7());
    publish_event(
        &app,
        &Event::new(EventType::LikeAdded, fine, "author", "ann"),
    )
    .await;
    publish_event(
        &app,
        &Event::new(EventType::LikeRemoved, broken, "author", "bob"),
    )
    .await;
    publish_event(
        &app,
        &Event::new(EventType::CommentAdded, fine, "author", "cat"),
    )
    .await;
    let mut config = app.updater_config();
    config.negative_retries = 0;
    config.ack_wait = Duration::from_secs(1);

    // Act: all three land in one batch.
    let updater = run_updater(&app, config).await;
    drained(&app).await;

    // Assert: not clamped, not applied, dead-lettered; the rest of the batch applied.
    let row = app
        .db
        .query_one(
            "SELECT likes, comments FROM post_counts WHERE post_id = $1",
            &[&fine],
        )
        .await
        .expect("the fine post's counts");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 1));
    assert_eq!(likes_of(&app, broken).await, 0);
    let reason: String = app
        .db
        .query_one("SELECT reason FROM dead_letters", &[])
        .await
        .expect("one dead letter")
        .get(0);
    assert!(
        reason.contains(&format!("like count of post {broken} negative")),
        "{reason}"
    );
    assert_eq!(app.scalar_i64("SELECT count(*) FROM inbox").await, 2);
    let metrics = metrics_text(updater.metrics_addr).await;
    assert_eq!(
        metric(
            &metrics,
            "tally_updater_dead_letters_total{reason=\"negative\"}"
        ),
        1.0
    );
    updater.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn an_unlike_that_overtakes_its_like_waits_for_it_instead_of_going_negative() {
    // Arrange
    let app = TestApp::spawn_without_updater().await;
    let updater = run_updater(&app, app.updater_config()).await;
    let post = Uuid::now_v7();

    // Act: the unlike arrives first (as when another updater still holds the like).
    publish_anns(&app, EventType::LikeRemoved, post).await;
    assert!(
        counter_reaches(
            updater.metrics_addr,
            "tally_updater_negative_deferred_total",
            1.0
        )
        .await,
        "the unlike was never held back"
    );
    publish_anns(&app, EventType::LikeAdded, post).await;
    drained(&app).await;

    // Assert
    like_and_unlike_both_applied(&app, post).await;
    updater.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn an_unlike_waits_out_the_ack_wait_of_a_like_held_by_a_killed_updater() {
    // Arrange: a 5 s ack wait and no configured retries (the old rule dead-lettered the
    // unlike at once). A consumer that fetched the like and died holds it for the ack wait.
    let app = TestApp::spawn_without_updater().await;
    let updater = updater_holding_back_by_time(&app, Duration::from_secs(5)).await;
    let post = Uuid::now_v7();
    publish_anns(&app, EventType::LikeAdded, post).await;
    let like = take_as_another_updater(&app).await;
    assert!(like.subject.starts_with("tally.like.added."));
    // Dropped unacked: JetStream redelivers it only when the ack wait ends.
    drop(like);
    publish_anns(&app, EventType::LikeRemoved, post).await;

    // Act: the updater meets the unlike first.
    let updater = app.spawn_updater(updater).await;
    drained(&app).await;

    // Assert: held back until the like came back, then both applied.
    like_and_unlike_both_applied(&app, post).await;
    let text = metrics_text(updater.metrics_addr).await;
    assert!(metric(&text, "tally_updater_negative_deferred_total") >= 1.0);
    updater.stop().await;
    app.stop().await;
}

/// Waits until the updater's `name` counter reaches `at_least`.
async fn counter_reaches(addr: std::net::SocketAddr, name: &str, at_least: f64) -> bool {
    TestApp::eventually(Duration::from_secs(30), || async {
        (metric(&metrics_text(addr).await, name) >= at_least).then_some(())
    })
    .await
    .is_some()
}

#[tokio::test]
async fn batches_failing_while_postgres_refuses_do_not_use_up_an_unlikes_hold() {
    // Arrange: a 10 s ack wait holds an unlike for 20 s. The old rule counted deliveries
    // instead (6 here), and every failed batch is a delivery a second later.
    let app = TestApp::spawn_without_updater().await;
    let updater = app
        .spawn_updater(updater_holding_back_by_time(&app, Duration::from_secs(10)).await)
        .await;
    let post = Uuid::now_v7();
    publish_anns(&app, EventType::LikeRemoved, post).await;
    let addr = updater.metrics_addr;
    assert!(
        counter_reaches(addr, "tally_updater_negative_deferred_total", 1.0).await,
        "the unlike was never held back"
    );

    // Act: Postgres refuses the updater's batches for six deliveries of the unlike, then takes
    // them again; the like comes only after the unlike has been looked at once more.
    app.db
        .batch_execute("REVOKE INSERT ON inbox FROM tally_updater")
        .await
        .expect("revoking");
    assert!(
        counter_reaches(addr, "tally_updater_batches_failed_total", 6.0).await,
        "batches kept applying without INSERT on the inbox"
    );
    app.db
        .batch_execute("GRANT INSERT ON inbox TO tally_updater")
        .await
        .expect("granting");
    let looked_at_again = TestApp::eventually(Duration::from_secs(30), || async {
        let text = metrics_text(addr).await;
        let deferred = metric(&text, "tally_updater_negative_deferred_total");
        let dead = metric(
            &text,
            "tally_updater_dead_letters_total{reason=\"negative\"}",
        );
        (deferred + dead >= 2.0).then_some(())
    })
    .await;
    assert!(looked_at_again.is_some(), "the unlike was not redelivered");
    publish_anns(&app, EventType::LikeAdded, post).await;
    drained(&app).await;

    // Assert
    like_and_unlike_both_applied(&app, post).await;
    updater.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn an_unlike_is_held_while_an_earlier_event_is_unacked_however_long_that_takes() {
    // Arrange: a 1 s ack wait would give the unlike up after 2 s. The like before it is held
    // by a slow consumer that keeps asking for more time, as an updater stuck on a lock would.
    let app = TestApp::spawn_without_updater().await;
    let updater = updater_holding_back_by_time(&app, Duration::from_secs(1)).await;
    let post = Uuid::now_v7();
    publish_anns(&app, EventType::LikeAdded, post).await;
    let like = take_as_another_updater(&app).await;
    publish_anns(&app, EventType::LikeRemoved, post).await;

    // Act: the updater meets the unlike while the like stays in progress for 6 s, three
    // times what the time rule alone would wait; then the like is let go unacked.
    let updater = app.spawn_updater(updater).await;
    for _ in 0..20 {
        like.ack_with(async_nats::jetstream::AckKind::Progress)
            .await
            .expect("asking for more time");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(like);
    drained(&app).await;

    // Assert: held past twice the ack wait, never dead-lettered, then both applied.
    let held_secs: f64 = app
        .db
        .query_one(
            "SELECT extract(epoch FROM last_held_at - first_held_at)::float8 FROM held_back",
            &[],
        )
        .await
        .expect("the unlike's hold")
        .get(0);
    assert!(held_secs >= 2.0, "held only {held_secs} s");
    like_and_unlike_both_applied(&app, post).await;
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM events_held_back")
            .await,
        0,
        "the view lists only what is still held"
    );
    updater.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn an_updater_stopped_with_events_prefetched_hands_them_back_and_returns() {
    // Arrange: small batches, so most of a backlog waits prefetched in the pull stream.
    let app = TestApp::spawn_without_updater().await;
    let post = Uuid::now_v7();
    for n in 0..2_000 {
        publish_event(
            &app,
            &Event::new(EventType::LikeAdded, post, "author", &format!("user-{n}")),
        )
        .await;
    }
    let mut config = app.updater_config();
    config.batch_size = 10;
    let first = run_updater(&app, config.clone()).await;
    assert!(
        counter_reaches(
            first.metrics_addr,
            "tally_updater_events_applied_total",
            20.0
        )
        .await,
        "the first updater applied nothing"
    );

    // Act: stop it mid-backlog. Handing its prefetched events straight back once made the
    // server deliver them straight back to it, round and round, and stop never returned.
    let stopped = tokio::time::timeout(Duration::from_secs(30), first.stop()).await;
    let second = run_updater(&app, config).await;
    drained(&app).await;

    // Assert
    assert!(stopped.is_ok(), "the updater did not stop within 30 s");
    assert_eq!(likes_of(&app, post).await, 2_000);
    second.stop().await;
    app.stop().await;
}

/// A tiny deterministic generator (xorshift64*), so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// What a random workload wrote so far.
#[derive(Default)]
struct World {
    posts: Vec<Uuid>,
    liked: HashSet<(usize, usize)>,
    live_comments: HashMap<usize, Vec<Uuid>>,
    events: usize,
}

/// Writes `ops` random likes, unlikes, comments and comment removals across `world.posts`
/// the way the api does (domain rows and outbox rows in one transaction per chunk), so the
/// events travel the real relay.
async fn random_workload(app: &mut TestApp, world: &mut World, ops: usize, rng: &mut Rng) {
    const CHUNK: usize = 2_000;
    for _ in 0..ops.div_ceil(CHUNK) {
        let before_liked = world.liked.clone();
        let mut toggled = HashSet::new();
        let mut added_comments: Vec<(Uuid, usize)> = Vec::new();
        let mut removed_comments: HashSet<Uuid> = HashSet::new();
        let mut events: Vec<Event> = Vec::new();
        for _ in 0..CHUNK {
            let p = rng.below(world.posts.len());
            let post = world.posts[p];
            if rng.below(10) < 7 {
                let user = rng.below(30);
                toggled.insert((p, user));
                let actor = format!("user{user}");
                let kind = if world.liked.remove(&(p, user)) {
                    EventType::LikeRemoved
                } else {
                    world.liked.insert((p, user));
                    EventType::LikeAdded
                };
                events.push(Event::new(kind, post, "author", &actor));
            } else {
                let live = world.live_comments.entry(p).or_default();
                let mut event;
                if !live.is_empty() && rng.below(2) == 0 {
                    let comment = live.swap_remove(rng.below(live.len()));
                    removed_comments.insert(comment);
                    event = Event::new(EventType::CommentRemoved, post, "author", "someone");
                    event.comment_id = Some(comment);
                } else {
                    let comment = Uuid::now_v7();
                    live.push(comment);
                    added_comments.push((comment, p));
                    event = Event::new(EventType::CommentAdded, post, "author", "someone");
                    event.comment_id = Some(comment);
                }
                events.push(event);
            }
        }
        let (mut like_posts, mut like_users, mut unlike_posts, mut unlike_users) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &(p, user) in &toggled {
            let (was, is) = (
                before_liked.contains(&(p, user)),
                world.liked.contains(&(p, user)),
            );
            if !was && is {
                like_posts.push(world.posts[p]);
                like_users.push(format!("user{user}"));
            } else if was && !is {
                unlike_posts.push(world.posts[p]);
                unlike_users.push(format!("user{user}"));
            }
        }
        let new_ids: HashSet<Uuid> = added_comments.iter().map(|(c, _)| *c).collect();
        let comment_ids: Vec<Uuid> = added_comments.iter().map(|(c, _)| *c).collect();
        let comment_posts: Vec<Uuid> = added_comments
            .iter()
            .map(|(_, p)| world.posts[*p])
            .collect();
        let comment_gone: Vec<bool> = comment_ids
            .iter()
            .map(|c| removed_comments.contains(c))
            .collect();
        let old_removed: Vec<Uuid> = removed_comments.difference(&new_ids).copied().collect();

        let txn = app.db.transaction().await.expect("a transaction");
        txn.execute(
            "INSERT INTO likes (post_id, user_id) SELECT * FROM unnest($1::uuid[], $2::text[])",
            &[&like_posts, &like_users],
        )
        .await
        .expect("inserting likes");
        txn.execute(
            "DELETE FROM likes l USING unnest($1::uuid[], $2::text[]) AS d(post_id, user_id)
             WHERE l.post_id = d.post_id AND l.user_id = d.user_id",
            &[&unlike_posts, &unlike_users],
        )
        .await
        .expect("deleting likes");
        txn.execute(
            "INSERT INTO comments (comment_id, post_id, author_id, body, deleted_at)
             SELECT c, p, 'someone', 'nice', CASE WHEN gone THEN now() END
             FROM unnest($1::uuid[], $2::uuid[], $3::bool[]) AS x(c, p, gone)",
            &[&comment_ids, &comment_posts, &comment_gone],
        )
        .await
        .expect("inserting comments");
        txn.execute(
            "UPDATE comments SET deleted_at = now() WHERE comment_id = ANY($1)",
            &[&old_removed],
        )
        .await
        .expect("removing comments");
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let subjects: Vec<String> = events.iter().map(Event::subject).collect();
        let posts: Vec<Uuid> = events.iter().map(|e| e.post_id).collect();
        let payloads: Vec<String> = events.iter().map(Event::to_json).collect();
        txn.execute(
            "INSERT INTO outbox (event_id, event_type, subject, post_id, payload)
             SELECT e, t, s, p, j::json
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[])
                  WITH ORDINALITY AS x(e, t, s, p, j, n)
             ORDER BY n",
            &[&ids, &types, &subjects, &posts, &payloads],
        )
        .await
        .expect("inserting outbox rows");
        txn.commit().await.expect("committing a chunk");
        world.events += events.len();
    }
}

async fn create_posts(app: &TestApp, n: usize) -> Vec<Uuid> {
    let posts: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    app.db
        .execute(
            "INSERT INTO posts (post_id, author_id) SELECT unnest($1::uuid[]), 'author'",
            &[&posts],
        )
        .await
        .expect("inserting posts");
    posts
}

/// Waits until every outbox event is in the inbox or dead-lettered.
async fn applied_all(app: &TestApp, events: usize, timeout: Duration) {
    let done = TestApp::eventually(timeout, || async {
        let applied = app.scalar_i64("SELECT count(*) FROM inbox").await;
        (applied as usize >= events).then_some(())
    })
    .await;
    let applied = app.scalar_i64("SELECT count(*) FROM inbox").await;
    assert!(
        done.is_some(),
        "only {applied} of {events} events were applied"
    );
}

#[tokio::test]
async fn two_updaters_keep_fifty_thousand_random_events_exact() {
    // Arrange: two instances on one durable consumer, small batches so they interleave.
    let mut app = TestApp::spawn_without_updater().await;
    let mut config = app.updater_config();
    config.batch_size = 200;
    let mut updaters = Vec::new();
    for _ in 0..2 {
        let updater = tally_updater::Updater::build(config.clone())
            .await
            .expect("building an updater");
        updaters.push(app.spawn_updater(updater).await);
    }
    let mut world = World {
        posts: create_posts(&app, 1_000).await,
        ..World::default()
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // Act
    let started = std::time::Instant::now();
    random_workload(&mut app, &mut world, 50_000, &mut rng).await;
    let written = started.elapsed();
    let outcome = TestApp::eventually(Duration::from_secs(90), || async {
        let applied = app.scalar_i64("SELECT count(*) FROM inbox").await;
        (applied as usize >= world.events).then_some(())
    })
    .await;
    for updater in &updaters {
        let text = metrics_text(updater.metrics_addr).await;
        eprintln!(
            "updater: applied {}, deferred {}, failed batches {}, dead letters {}",
            metric(&text, "tally_updater_events_applied_total"),
            metric(&text, "tally_updater_negative_deferred_total"),
            metric(&text, "tally_updater_batches_failed_total"),
            metric(
                &text,
                "tally_updater_dead_letters_total{reason=\"negative\"}"
            ),
        );
    }
    assert!(outcome.is_some(), "not every event was applied");
    eprintln!(
        "{} events: written in {written:?}, all applied after {:?}",
        world.events,
        started.elapsed()
    );

    // Assert: reconcile finds nothing, and the view agrees.
    let report = reconcile::reconcile(&mut app.db, &options(false))
        .await
        .expect("reconciling");
    assert_eq!(report.checked, 1_000);
    assert_eq!(report.drift, Vec::new());
    assert_eq!(app.scalar_i64("SELECT count(*) FROM count_drift").await, 0);
    assert_eq!(
        app.scalar_i64("SELECT coalesce(sum(likes), 0)::int8 FROM post_counts")
            .await,
        world.liked.len() as i64
    );
    assert_eq!(app.scalar_i64("SELECT count(*) FROM dead_letters").await, 0);
    for updater in updaters {
        updater.stop().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn reconcile_detects_drift_and_fix_repairs_it() {
    // Arrange: a drained pipeline, then two counts damaged behind its back.
    let mut app = TestApp::spawn().await;
    let mut world = World {
        posts: create_posts(&app, 20).await,
        ..World::default()
    };
    random_workload(&mut app, &mut world, 2_000, &mut Rng(7)).await;
    applied_all(&app, world.events, Duration::from_secs(30)).await;
    let (damaged, deleted) = (world.posts[3], world.posts[11]);
    app.db
        .execute(
            "UPDATE post_counts SET likes = likes + 5, comments = comments + 1 WHERE post_id = $1",
            &[&damaged],
        )
        .await
        .expect("damaging a count");
    app.db
        .execute("DELETE FROM post_counts WHERE post_id = $1", &[&deleted])
        .await
        .expect("losing a count");

    // Act: as the updater's role, as the binary runs.
    let mut db = tally_tests::connect(&app.updater_config().database_url).await;
    let found = reconcile::reconcile(&mut db, &options(false))
        .await
        .expect("reconciling");
    let one = reconcile::reconcile(
        &mut db,
        &Options {
            post: Some(damaged),
            ..options(false)
        },
    )
    .await
    .expect("reconciling one post");
    let fixed = reconcile::reconcile(&mut db, &options(true))
        .await
        .expect("repairing");
    let after = reconcile::reconcile(&mut db, &options(false))
        .await
        .expect("reconciling again");

    // Assert
    let mut drifted: Vec<Uuid> = found.drift.iter().map(|d| d.post_id).collect();
    drifted.sort();
    let mut expected = vec![damaged, deleted];
    expected.sort();
    assert_eq!(drifted, expected);
    assert_eq!(found.checked, 20);
    assert_eq!(one.drift.len(), 1);
    assert_eq!(one.drift[0].counted_likes, one.drift[0].actual_likes + 5);
    assert_eq!(fixed.fixed, 2);
    assert!(after.drift.is_empty(), "{:?}", after.drift);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM count_drift").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn reconcile_fix_leaves_events_in_flight_to_the_updater() {
    // Arrange: events written and streamed, but no updater has applied them yet, and one
    // post's count is wrong on top of that.
    let mut app = TestApp::spawn_without_updater().await;
    let mut world = World {
        posts: create_posts(&app, 10).await,
        ..World::default()
    };
    random_workload(&mut app, &mut world, 500, &mut Rng(42)).await;
    let damaged = world.posts[0];
    app.db
        .execute(
            "INSERT INTO post_counts (post_id, likes) VALUES ($1, 7)",
            &[&damaged],
        )
        .await
        .expect("damaging a count");

    // The relay has streamed everything, which the updater has yet to apply.
    let streamed = TestApp::eventually(Duration::from_secs(20), || async {
        (stream_messages(&app).await >= world.events as u64).then_some(())
    })
    .await;
    assert!(streamed.is_some(), "the relay never streamed the workload");
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM count_drift").await,
        1,
        "the view counts only the damaged post as drift, not the events in flight"
    );

    // Act: repair while everything is in flight, then let the updater catch up.
    let mut db = tally_tests::connect(&app.updater_config().database_url).await;
    let fixed = reconcile::reconcile(&mut db, &options(true))
        .await
        .expect("repairing");
    let updater = run_updater(&app, app.updater_config()).await;
    applied_all(&app, world.events, Duration::from_secs(30)).await;

    // Assert: only the real drift was repaired, and no in-flight delta counted twice.
    assert_eq!(fixed.drift.len(), 1, "{:?}", fixed.drift);
    assert_eq!(fixed.drift[0].post_id, damaged);
    assert_eq!(fixed.drift[0].expected_likes(), 0);
    let after = reconcile::reconcile(&mut app.db, &options(false))
        .await
        .expect("reconciling again");
    assert!(after.drift.is_empty(), "{:?}", after.drift);
    updater.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn the_inbox_is_pruned_after_the_retention_in_batches() {
    // Arrange: 7 old ids and 3 recent ones.
    let app = TestApp::spawn().await;
    app.db
        .batch_execute(
            "INSERT INTO inbox (event_id, processed_at)
             SELECT gen_random_uuid(), now() - interval '9 days' FROM generate_series(1, 7);
             INSERT INTO inbox (event_id) SELECT gen_random_uuid() FROM generate_series(1, 3);",
        )
        .await
        .expect("filling the inbox");
    let updater_db = tally_tests::connect(&app.updater_config().database_url).await;

    // Act: as the updater's role, two rows per statement.
    let deleted = tally_updater::inbox::prune(
        &updater_db,
        tally_updater::config::DEFAULT_INBOX_RETENTION,
        2,
    )
    .await
    .expect("pruning");

    // Assert
    assert_eq!(deleted, 7);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM inbox").await, 3);
    app.stop().await;
}

#[tokio::test]
async fn held_back_rows_go_once_their_event_is_applied_dead_lettered_or_past_the_retention() {
    // Arrange: four holds; the first event was applied since, the second dead-lettered, the
    // third held longer ago than the retention, the fourth still waits.
    let app = TestApp::spawn_without_updater().await;
    let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let post = Uuid::now_v7();
    for id in &ids {
        app.db
            .execute(
                "INSERT INTO held_back (event_id, post_id, event_type) VALUES ($1, $2, 'like.removed')",
                &[id, &post],
            )
            .await
            .expect("recording a hold");
    }
    app.db
        .execute("INSERT INTO inbox (event_id) VALUES ($1)", &[&ids[0]])
        .await
        .expect("applying the first");
    app.db
        .execute(
            "INSERT INTO dead_letters (subject, event_id, payload, reason) VALUES ('tally.like.removed', $1, '', 'test')",
            &[&ids[1].to_string()],
        )
        .await
        .expect("dead-lettering the second");
    app.db
        .execute(
            "UPDATE held_back SET first_held_at = now() - interval '9 days' WHERE event_id = $1",
            &[&ids[2]],
        )
        .await
        .expect("aging the third");
    let updater_db = tally_tests::connect(&app.updater_config().database_url).await;

    // Act: as the updater's role.
    let deleted = tally_updater::inbox::prune_held_back(
        &updater_db,
        tally_updater::config::DEFAULT_INBOX_RETENTION,
    )
    .await
    .expect("pruning held_back");

    // Assert
    assert_eq!(deleted, 3);
    let left: Vec<Uuid> = app
        .db
        .query("SELECT event_id FROM held_back", &[])
        .await
        .expect("reading held_back")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(left, vec![ids[3]]);
    app.stop().await;
}

/// Measures how fast one updater drains a backlog: `TALLY_TEST_BACKLOG` like events (default
/// 100,000) across 1,000 posts, a tenth of them on one hot post, published straight to the
/// stream before the updater starts. Run with `--ignored --nocapture`; prints events/s.
#[tokio::test]
#[ignore = "a measurement, not a check: run explicitly"]
async fn backlog_throughput() {
    // Arrange
    let app = TestApp::spawn_without_updater().await;
    let events: usize = std::env::var("TALLY_TEST_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let posts: Vec<Uuid> = (0..1_000).map(|_| Uuid::now_v7()).collect();
    let js = app.nats.jetstream().await;
    let mut rng = Rng(3);
    for chunk in 0..events.div_ceil(1_000) {
        let mut acks = Vec::new();
        for i in 0..1_000.min(events - chunk * 1_000) {
            let post = if rng.below(10) == 0 {
                posts[0]
            } else {
                posts[rng.below(posts.len())]
            };
            let event = Event::new(
                EventType::LikeAdded,
                post,
                "author",
                &format!("u{chunk}-{i}"),
            );
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(tally_sql::HEADER_MSG_ID, event.id.to_string().as_str());
            acks.push(
                js.publish_with_headers(event.subject(), headers, event.to_json().into())
                    .await
                    .expect("publishing"),
            );
        }
        for ack in futures::future::join_all(acks.into_iter().map(|ack| ack.into_future())).await {
            ack.expect("the stream acked");
        }
    }

    // Act
    let started = std::time::Instant::now();
    let updater = run_updater(&app, app.updater_config()).await;
    applied_all(&app, events, Duration::from_secs(600)).await;
    let elapsed = started.elapsed();

    // Assert
    eprintln!(
        "backlog of {events} events applied in {elapsed:.2?}: {:.0} events/s",
        events as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(
        app.scalar_i64("SELECT sum(likes)::int8 FROM post_counts")
            .await,
        events as i64
    );
    updater.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_hot_post_costs_one_row_write_per_batch_not_one_per_like() {
    // Arrange: count every row write on post_counts, then a backlog of 2,000 likes on one post.
    let app = TestApp::spawn_without_updater().await;
    app.db
        .batch_execute(
            "CREATE TABLE row_writes (post_id uuid);
             CREATE FUNCTION count_row_write() RETURNS trigger LANGUAGE plpgsql
                 SECURITY DEFINER AS $$
             BEGIN INSERT INTO row_writes VALUES (NEW.post_id); RETURN NEW; END $$;
             CREATE TRIGGER count_row_write AFTER INSERT OR UPDATE ON post_counts
                 FOR EACH ROW EXECUTE FUNCTION count_row_write();",
        )
        .await
        .expect("installing the write counter");
    let hot = Uuid::now_v7();
    let js = app.nats.jetstream().await;
    let mut acks = Vec::new();
    for i in 0..2_000 {
        let event = Event::new(EventType::LikeAdded, hot, "author", &format!("fan{i}"));
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(tally_sql::HEADER_MSG_ID, event.id.to_string().as_str());
        acks.push(
            js.publish_with_headers(event.subject(), headers, event.to_json().into())
                .await
                .expect("publishing"),
        );
    }
    for ack in futures::future::join_all(acks.into_iter().map(|ack| ack.into_future())).await {
        ack.expect("the stream acked");
    }

    // Act
    let updater = run_updater(&app, app.updater_config()).await;
    applied_all(&app, 2_000, Duration::from_secs(30)).await;

    // Assert: exact, and one write per batch (batches of up to 500).
    assert_eq!(likes_of(&app, hot).await, 2_000);
    let writes = app.scalar_i64("SELECT count(*) FROM row_writes").await;
    let metrics = metrics_text(updater.metrics_addr).await;
    let batches = metric(&metrics, "tally_updater_batch_size_count");
    assert_eq!(writes as f64, batches, "{metrics}");
    assert!(writes <= 40, "{writes} row writes for 2,000 likes");
    updater.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn reconcile_fix_while_the_pipeline_runs_neither_loses_nor_doubles_a_delta() {
    // Arrange: two updaters, and damaged counts for reconcile to find mid-flight.
    let mut app = TestApp::spawn_without_updater().await;
    let mut config = app.updater_config();
    config.batch_size = 100;
    let mut updaters = Vec::new();
    for _ in 0..2 {
        let updater = tally_updater::Updater::build(config.clone())
            .await
            .expect("building an updater");
        updaters.push(app.spawn_updater(updater).await);
    }
    let mut world = World {
        posts: create_posts(&app, 50).await,
        ..World::default()
    };
    app.db
        .execute(
            "INSERT INTO post_counts (post_id, likes, comments)
             SELECT unnest($1::uuid[]), 9, 9",
            &[&world.posts[..5].to_vec()],
        )
        .await
        .expect("damaging counts");
    let mut db = tally_tests::connect(&app.updater_config().database_url).await;

    // Act: write 10,000 events while reconcile --fix runs over and over.
    let writing = std::sync::atomic::AtomicBool::new(true);
    let mut repaired = 0;
    let mut runs = 0;
    tokio::join!(
        async {
            random_workload(&mut app, &mut world, 10_000, &mut Rng(99)).await;
            writing.store(false, std::sync::atomic::Ordering::SeqCst);
        },
        async {
            while writing.load(std::sync::atomic::Ordering::SeqCst) || runs < 3 {
                let report = reconcile::reconcile(&mut db, &options(true))
                    .await
                    .expect("repairing while the pipeline runs");
                repaired += report.fixed;
                runs += 1;
            }
        }
    );
    applied_all(&app, world.events, Duration::from_secs(60)).await;

    // Assert: the damage was repaired, and nothing else was ever counted wrong.
    // Exactly the five damaged posts: a repair of any other would be a miscount.
    eprintln!("{runs} reconcile --fix runs while the pipeline ran");
    assert_eq!(repaired, 5, "{repaired} repairs in {runs} runs");
    let after = reconcile::reconcile(&mut db, &options(false))
        .await
        .expect("reconciling at the end");
    assert!(after.drift.is_empty(), "{:?}", after.drift);
    assert_eq!(
        app.scalar_i64("SELECT coalesce(sum(likes), 0)::int8 FROM post_counts")
            .await,
        world.liked.len() as i64
    );
    for updater in updaters {
        updater.stop().await;
    }
    app.stop().await;
}
