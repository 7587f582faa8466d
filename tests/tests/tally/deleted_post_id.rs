//! `POST /v1/posts` with the id of a deleted post: the id stays spent, and the 409 says
//! whose post it is and that it was deleted.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tally_tests::{TestApp, problem};

#[tokio::test]
async fn creating_your_own_deleted_post_again_is_a_409_that_says_you_deleted_it() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let deleted = app
        .request(Method::DELETE, &format!("/v1/posts/{post}"), Some("alice"))
        .send()
        .await
        .expect("alice's delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let create = |user| {
        app.request(Method::POST, "/v1/posts", Some(user))
            .json(&json!({ "id": post }))
            .send()
    };

    // Act
    let by_alice = problem(create("alice").await.expect("alice's create")).await;
    let by_bob = problem(create("bob").await.expect("bob's create")).await;

    // Assert
    assert_eq!(by_alice.0, StatusCode::CONFLICT, "{}", by_alice.1);
    let detail = by_alice.1["detail"].as_str().expect("a detail");
    assert!(detail.contains("deleted"), "{detail}");
    assert!(!detail.contains("another author"), "{detail}");
    assert_eq!(by_bob.0, StatusCode::CONFLICT, "{}", by_bob.1);
    let detail = by_bob.1["detail"].as_str().expect("a detail");
    assert!(detail.contains("another author"), "{detail}");
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM posts WHERE deleted_at IS NULL")
            .await,
        0,
        "the post stays deleted"
    );

    app.stop().await;
}
