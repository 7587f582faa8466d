//! Group commit: likes that arrive while the api's like writers are busy share one
//! transaction, each with its own answer, row and event; a like that fails in a shared
//! transaction fails alone, and a like stuck on a lock holds no other like.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::{TestApp, problem};
use tokio::task::JoinHandle;

/// Slow likes (a trigger makes each take 300 ms), more than the api has like writers in
/// the tests, sent first so that every writer is busy while the others queue together.
const SLOW: usize = 4;
const QUEUED: usize = 24;

fn like(app: &TestApp, user: &str, post: &str) -> JoinHandle<reqwest::Result<reqwest::Response>> {
    let request = app
        .request(Method::POST, "/v1/likes", Some(user))
        .json(&json!({ "post_id": post }));
    tokio::spawn(request.send())
}

/// Makes likes by `slow-*` users take 300 ms (not a lock wait: it keeps a writer busy).
async fn slow_down_some_likes(app: &TestApp) {
    app.db
        .batch_execute(
            "CREATE FUNCTION slow_like() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.user_id LIKE 'slow-%' THEN PERFORM pg_sleep(0.3); END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER slow_like BEFORE INSERT ON likes
                 FOR EACH ROW EXECUTE FUNCTION slow_like();",
        )
        .await
        .expect("slowing some likes down");
}

/// Sends `SLOW` slow likes on `post`, then, once they are being written, the `queued`
/// (user, post) likes. Returns the answers, slow likes first.
async fn likes_queued_behind_slow_ones(
    app: &TestApp,
    post: &str,
    queued: &[(String, String)],
) -> Vec<reqwest::Response> {
    let mut answers: Vec<_> = (0..SLOW)
        .map(|n| like(app, &format!("slow-{n}"), post))
        .collect();
    let writing = TestApp::eventually(Duration::from_secs(10), || async {
        let sleeping = app
            .scalar_i64(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event = 'PgSleep'",
            )
            .await;
        (sleeping > 0).then_some(())
    })
    .await;
    assert!(writing.is_some(), "the slow likes are being written");
    answers.extend(queued.iter().map(|(user, post)| like(app, user, post)));
    let mut responses = Vec::new();
    for answer in answers {
        responses.push(answer.await.expect("the request task").expect("an answer"));
    }
    responses
}

async fn like_event_transactions(app: &TestApp) -> (i64, i64) {
    let row = app
        .db
        .query_one(
            "SELECT count(*), count(DISTINCT xmin::text) FROM outbox
             WHERE event_type = 'like.added'",
            &[],
        )
        .await
        .expect("counting like events");
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn likes_arriving_together_share_a_commit_and_each_keeps_its_answer_and_event() {
    // Arrange
    let app = TestApp::spawn().await;
    slow_down_some_likes(&app).await;
    let hot = app.create_post("alice").await;
    let other = app.create_post("alice").await;
    let queued: Vec<_> = (0..QUEUED)
        .map(|n| (format!("user-{n}"), other.clone()))
        .collect();

    // Act
    let responses = likes_queued_behind_slow_ones(&app, &hot, &queued).await;

    // Assert
    let mut event_ids = Vec::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("a like");
        event_ids.push(body["event_id"].as_str().expect("an event id").to_owned());
    }
    event_ids.sort();
    event_ids.dedup();
    let likes = SLOW + QUEUED;
    assert_eq!(event_ids.len(), likes, "one event per like");
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM likes").await,
        likes as i64
    );
    let (events, transactions) = like_event_transactions(&app).await;
    assert_eq!(events, likes as i64);
    assert!(
        transactions < events,
        "{events} likes in {transactions} transactions: some shared a commit"
    );

    app.stop().await;
}

#[tokio::test]
async fn a_like_that_fails_in_a_shared_transaction_fails_alone() {
    // Arrange: the likes table refuses mallory's like, as a broken invariant would.
    let app = TestApp::spawn().await;
    let hot = app.create_post("alice").await;
    let other = app.create_post("alice").await;
    app.db
        .batch_execute(
            "CREATE FUNCTION refuse_mallory() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.user_id = 'mallory' THEN RAISE EXCEPTION 'refused'; END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_mallory BEFORE INSERT ON likes
                 FOR EACH ROW EXECUTE FUNCTION refuse_mallory();",
        )
        .await
        .expect("refusing mallory's likes");
    slow_down_some_likes(&app).await;
    let mut queued: Vec<_> = (0..QUEUED)
        .map(|n| (format!("user-{n}"), other.clone()))
        .collect();
    queued.insert(QUEUED / 2, ("mallory".to_owned(), other.clone()));

    // Act
    let mut responses = likes_queued_behind_slow_ones(&app, &hot, &queued).await;

    // Assert
    let mallory = responses.remove(SLOW + QUEUED / 2);
    let (status, body) = problem(mallory).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(!body.to_string().contains("refused"), "{body}");
    for response in responses {
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let likes = (SLOW + QUEUED) as i64;
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, likes);
    assert_eq!(like_event_transactions(&app).await.0, likes);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM likes WHERE user_id = 'mallory'")
            .await,
        0
    );

    app.stop().await;
}

#[tokio::test]
async fn likes_stuck_on_a_locked_post_hold_no_like_of_another_post() {
    // Arrange: a transaction holds one post as a delete does, and more likes wait on it than
    // the api has like writers.
    let app = TestApp::spawn().await;
    let locked = app.create_post("alice").await;
    let other = app.create_post("alice").await;
    let locker = tally_tests::connect(&tally_tests::postgres().url(&app.db_name)).await;
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM posts WHERE post_id = '{locked}' FOR UPDATE"
        ))
        .await
        .expect("locking the post");
    let stuck: Vec<_> = (0..SLOW)
        .map(|n| like(&app, &format!("stuck-{n}"), &locked))
        .collect();
    let waiting = TestApp::eventually(Duration::from_secs(10), || async {
        let waiting = app
            .scalar_i64(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .await;
        (waiting > 0).then_some(())
    })
    .await;
    assert!(waiting.is_some(), "likes wait on the post's lock");

    // Act
    let free: Vec<_> = (0..QUEUED)
        .map(|n| like(&app, &format!("free-{n}"), &other))
        .collect();
    let mut free_statuses = Vec::new();
    for answer in free {
        let response = tokio::time::timeout(Duration::from_secs(20), answer)
            .await
            .expect("a like of another post answers while the lock is held")
            .expect("the request task")
            .expect("an answer");
        free_statuses.push(response.status());
    }
    let still_waiting = stuck.iter().filter(|like| !like.is_finished()).count();
    locker.batch_execute("COMMIT").await.expect("unlocking");

    // Assert
    assert!(
        free_statuses
            .iter()
            .all(|status| *status == StatusCode::CREATED)
    );
    assert!(still_waiting > 0, "the stuck likes waited for the lock");
    for answer in stuck {
        let response = answer.await.expect("the request task").expect("an answer");
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM likes").await,
        (SLOW + QUEUED) as i64
    );

    app.stop().await;
}
