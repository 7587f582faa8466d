//! `POST /v1/likes/{post_id}/toggle`: the like button. Each toggle flips the like, writes one
//! event and says which way it went.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tally_tests::TestApp;

async fn toggle(app: &TestApp, user: Option<&str>, post_id: &str) -> (StatusCode, Value) {
    let response = app
        .request(Method::POST, &format!("/v1/likes/{post_id}/toggle"), user)
        .send()
        .await
        .expect("an answer");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn toggling_twice_likes_then_unlikes_with_one_event_each() {
    // Arrange
    let app = TestApp::spawn().await;
    let post_id = app.create_post("alice").await;

    // Act
    let (first_status, first) = toggle(&app, Some("bob"), &post_id).await;
    let (second_status, second) = toggle(&app, Some("bob"), &post_id).await;

    // Assert
    assert_eq!(first_status, StatusCode::OK, "{first}");
    assert_eq!(first["liked"], true);
    assert_eq!(second_status, StatusCode::OK, "{second}");
    assert_eq!(second["liked"], false);
    assert_ne!(first["event_id"], second["event_id"]);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 0);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE event_type LIKE 'like.%'")
            .await,
        2
    );
    let event_id = second["event_id"].as_str().expect("an event id");
    let read: Value = app
        .request(
            Method::GET,
            &format!("/v1/posts/{post_id}?after_event={event_id}"),
            None,
        )
        .send()
        .await
        .expect("reading the post")
        .json()
        .await
        .expect("a post");
    assert_eq!(read["after_event_applied"], true, "{read}");
    assert_eq!(read["likes"], 0, "{read}");

    app.stop().await;
}

#[tokio::test]
async fn toggling_without_a_token_an_unknown_post_or_a_malformed_id_is_a_4xx_problem() {
    // Arrange
    let app = TestApp::spawn().await;
    let post_id = app.create_post("alice").await;
    let unknown = uuid::Uuid::now_v7().to_string();

    // Act and assert
    for (what, user, post, expected) in [
        ("no token", None, post_id.as_str(), StatusCode::UNAUTHORIZED),
        (
            "unknown post",
            Some("bob"),
            unknown.as_str(),
            StatusCode::NOT_FOUND,
        ),
        (
            "malformed id",
            Some("bob"),
            "not-a-uuid",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, body) = toggle(&app, user, post).await;
        assert_eq!(status, expected, "{what}: {body}");
        assert_eq!(body["status"], expected.as_u16(), "{what}: {body}");
    }
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE event_type LIKE 'like.%'")
            .await,
        0
    );

    app.stop().await;
}

#[tokio::test]
async fn two_toggles_at_once_are_a_like_and_an_unlike_never_two_likes() {
    // Arrange
    let app = TestApp::spawn().await;
    let post_id = app.create_post("alice").await;

    // Act: a double click, twenty times over.
    let mut answers = Vec::new();
    for _ in 0..20 {
        let (first, second) = tokio::join!(
            toggle(&app, Some("bob"), &post_id),
            toggle(&app, Some("bob"), &post_id)
        );
        answers.push((first, second));
    }

    // Assert: each pair is one like and one unlike, each with its own event.
    for ((first_status, first), (second_status, second)) in &answers {
        assert_eq!(*first_status, StatusCode::OK, "{first}");
        assert_eq!(*second_status, StatusCode::OK, "{second}");
        let mut liked = [first["liked"].as_bool(), second["liked"].as_bool()];
        liked.sort();
        assert_eq!(liked, [Some(false), Some(true)], "{first} {second}");
        assert_ne!(first["event_id"], second["event_id"]);
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 0);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE event_type LIKE 'like.%'")
            .await,
        40
    );

    app.stop().await;
}

#[tokio::test]
async fn a_like_racing_the_same_users_unlike_is_answered_2xx() {
    // Arrange
    let app = TestApp::spawn().await;
    let post_id = app.create_post("alice").await;
    let like = || {
        app.request(Method::POST, "/v1/likes", Some("bob"))
            .json(&serde_json::json!({ "post_id": post_id }))
            .send()
    };
    let unlike = || {
        app.request(Method::DELETE, &format!("/v1/likes/{post_id}"), Some("bob"))
            .send()
    };

    // Act and assert: a like read back while an unlike removes it is retried, not a 500.
    for _ in 0..30 {
        let (a, b, c) = tokio::join!(like(), unlike(), like());
        for response in [a, b, c] {
            let status = response.expect("an answer").status();
            assert!(status.is_success(), "{status}");
        }
    }
    let likes = app.scalar_i64("SELECT count(*) FROM likes").await;
    let added = app
        .scalar_i64("SELECT count(*) FROM outbox WHERE event_type = 'like.added'")
        .await;
    let removed = app
        .scalar_i64("SELECT count(*) FROM outbox WHERE event_type = 'like.removed'")
        .await;
    assert_eq!(added - removed, likes, "the events add up to the likes");

    app.stop().await;
}
