//! `liked_by_me` on a warm signed-in feed read comes from a per-reader cache, and stays
//! right: the reader's own writes through this instance show at once, and a like written
//! through another instance shows once its event arrives.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tally_tests::TestApp;

#[tokio::test]
async fn a_readers_own_like_and_unlike_show_in_their_very_next_feed_read() {
    // Arrange: bob's answer for the post is cached as "not liked".
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let path = format!("/v1/posts?ids={post}");
    let (_, before) = app.get_json(&path, Some("bob")).await;
    assert_eq!(before["posts"][0]["liked_by_me"], false, "{before}");

    // Act and assert: no waiting between the write and the read.
    app.like("bob", &post).await;
    let (_, liked) = app.get_json(&path, Some("bob")).await;
    assert_eq!(liked["posts"][0]["liked_by_me"], true, "{liked}");

    let unliked = app
        .request(Method::DELETE, &format!("/v1/likes/{post}"), Some("bob"))
        .send()
        .await
        .expect("unliking");
    assert_eq!(unliked.status(), StatusCode::NO_CONTENT);
    let (_, after) = app.get_json(&path, Some("bob")).await;
    assert_eq!(after["posts"][0]["liked_by_me"], false, "{after}");

    app.stop().await;
}

#[tokio::test]
async fn a_like_written_through_another_instance_shows_once_its_event_arrives() {
    // Arrange: two api instances; bob's answer cached as "not liked" on the first.
    let mut app = TestApp::spawn().await;
    let other = app.spawn_another_api(|_| {}).await;
    let post = app.create_post("alice").await;
    let path = format!("/v1/posts?ids={post}");
    let (_, before) = app.get_json(&path, Some("bob")).await;
    assert_eq!(before["posts"][0]["liked_by_me"], false, "{before}");

    // Act: bob likes it through the other instance.
    let liked = app
        .http
        .post(format!("{other}/v1/likes"))
        .bearer_auth(app.token("bob"))
        .json(&json!({ "post_id": post }))
        .send()
        .await
        .expect("liking through the other api");
    assert_eq!(liked.status(), StatusCode::CREATED);

    // Assert
    let seen = TestApp::eventually(Duration::from_secs(10), || async {
        let (_, body) = app.get_json(&path, Some("bob")).await;
        (body["posts"][0]["liked_by_me"] == true).then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "the first instance never learned of the like"
    );

    app.stop().await;
}
