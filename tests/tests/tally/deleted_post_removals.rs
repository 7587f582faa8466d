//! Taking back a like or a comment on a deleted post: removals go through (204, with their
//! event, so the counts stay exact), while turning a like on is a 404; a removal waiting on
//! the post's delete goes through once the delete commits.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tally_tests::{TestApp, problem};

async fn delete_post(app: &TestApp, post: &str) {
    let response = app
        .request(Method::DELETE, &format!("/v1/posts/{post}"), Some("alice"))
        .send()
        .await
        .expect("alice's delete");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

/// The `Tally-Event-Id` of a 204, asserting the status.
fn event_of_204(response: &reqwest::Response, what: &str) -> Option<String> {
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{what}");
    response
        .headers()
        .get("tally-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn send(app: &TestApp, method: Method, path: &str, user: &str) -> reqwest::Response {
    app.request(method, path, Some(user))
        .send()
        .await
        .expect("an answer")
}

async fn event_type(app: &TestApp, event_id: &str) -> String {
    app.db
        .query_one(
            "SELECT event_type FROM outbox WHERE event_id = $1::text::uuid",
            &[&event_id],
        )
        .await
        .expect("the removal's event")
        .get(0)
}

#[tokio::test]
async fn unliking_and_uncommenting_a_deleted_post_succeed_with_their_events_and_counts_follow() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let comment = app.comment("bob", &post, "nice").await;
    app.like("bob", &post).await.expect("bob's like is new");
    delete_post(&app, &post).await;

    // Act
    let unlike = send(&app, Method::DELETE, &format!("/v1/likes/{post}"), "bob").await;
    let unlike_again = send(&app, Method::DELETE, &format!("/v1/likes/{post}"), "bob").await;
    let uncomment = send(
        &app,
        Method::DELETE,
        &format!("/v1/comments/{comment}"),
        "bob",
    )
    .await;
    let uncomment_again = send(
        &app,
        Method::DELETE,
        &format!("/v1/comments/{comment}"),
        "bob",
    )
    .await;

    // Assert
    let unlike_event = event_of_204(&unlike, "unlike").expect("the unlike names its event");
    assert_eq!(event_of_204(&unlike_again, "unlike again"), None);
    let uncomment_event =
        event_of_204(&uncomment, "comment delete").expect("the comment delete names its event");
    assert_eq!(event_of_204(&uncomment_again, "comment delete again"), None);
    assert_eq!(event_type(&app, &unlike_event).await, "like.removed");
    assert_eq!(event_type(&app, &uncomment_event).await, "comment.removed");
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 0);
    let applied = TestApp::eventually(Duration::from_secs(10), || async {
        let unapplied = app
            .scalar_i64(
                "SELECT count(*) FROM outbox o
                 WHERE NOT EXISTS (SELECT 1 FROM inbox i WHERE i.event_id = o.event_id)",
            )
            .await;
        (unapplied == 0).then_some(())
    })
    .await;
    assert!(applied.is_some(), "the updater applies every event");
    let counts = app
        .scalar_i64(&format!(
            "SELECT coalesce(sum(likes * 10 + comments), 0)::bigint FROM post_counts
             WHERE post_id = '{post}'"
        ))
        .await;
    assert_eq!(counts, 0, "the like and the comment are counted out");
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM count_drift").await,
        0,
        "the counts stay exact"
    );

    app.stop().await;
}

#[tokio::test]
async fn toggling_on_a_deleted_post_turns_a_like_off_but_never_on() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    app.like("bob", &post).await.expect("bob's like is new");
    delete_post(&app, &post).await;
    let toggle = format!("/v1/likes/{post}/toggle");

    // Act
    let off = send(&app, Method::POST, &toggle, "bob").await;
    let (off_status, off): (StatusCode, Value) = (off.status(), off.json().await.expect("json"));
    let on_again = problem(send(&app, Method::POST, &toggle, "bob").await).await;
    let on_by_carol = problem(send(&app, Method::POST, &toggle, "carol").await).await;

    // Assert
    assert_eq!(off_status, StatusCode::OK, "{off}");
    assert_eq!(off["liked"], false, "{off}");
    let event_id = off["event_id"].as_str().expect("the toggle's event");
    assert_eq!(event_type(&app, event_id).await, "like.removed");
    assert_eq!(on_again.0, StatusCode::NOT_FOUND, "{}", on_again.1);
    assert_eq!(on_by_carol.0, StatusCode::NOT_FOUND, "{}", on_by_carol.1);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 0);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE event_type = 'like.added'")
            .await,
        1,
        "no like was turned on after the delete"
    );

    app.stop().await;
}

#[tokio::test]
async fn removals_waiting_on_a_post_being_deleted_go_through_once_it_commits() {
    // Arrange: a transaction holds alice's post as a delete does, while bob unlikes it and
    // deletes his comment: both wait for it.
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let comment = app.comment("bob", &post, "before").await;
    app.like("bob", &post).await.expect("bob's like is new");
    let deleter = tally_tests::connect(&tally_tests::postgres().url(&app.db_name)).await;
    deleter
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM posts WHERE post_id = '{post}' FOR UPDATE"
        ))
        .await
        .expect("locking the post");
    let spawn_delete = |path: String| tokio::spawn(send_owned(&app, path));
    let unlike = spawn_delete(format!("/v1/likes/{post}"));
    let uncomment = spawn_delete(format!("/v1/comments/{comment}"));
    let waiting = TestApp::eventually(Duration::from_secs(10), || async {
        let waiting = app
            .scalar_i64(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .await;
        (waiting == 2).then_some(())
    })
    .await;
    assert!(
        waiting.is_some(),
        "the two removals wait on the post's lock"
    );

    // Act: the delete commits.
    deleter
        .batch_execute(&format!(
            "UPDATE posts SET deleted_at = now() WHERE post_id = '{post}'; COMMIT"
        ))
        .await
        .expect("deleting the post");

    // Assert
    for (what, answer) in [("unlike", unlike), ("comment delete", uncomment)] {
        let response = answer.await.expect("the request task");
        assert!(
            event_of_204(&response, what).is_some(),
            "{what} names its event"
        );
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 0);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM comments WHERE deleted_at IS NULL")
            .await,
        0
    );

    app.stop().await;
}

/// `DELETE {path}` as bob, as a future that owns what it needs (for `tokio::spawn`).
fn send_owned(
    app: &TestApp,
    path: String,
) -> impl std::future::Future<Output = reqwest::Response> + Send + 'static {
    let request = app.request(Method::DELETE, &path, Some("bob"));
    async move { request.send().await.expect("an answer") }
}
