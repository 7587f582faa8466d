//! A warm feed read follows the counts without waiting for its cache to expire: the
//! updater's count events update cached posts in place, and a post older than the TTL is
//! read again in the background (what repairs a lost count event).

use std::time::Duration;

use reqwest::StatusCode;
use tally_tests::TestApp;

#[tokio::test]
async fn a_like_shows_in_a_warm_feed_read_through_its_count_event() {
    // Arrange: a TTL far longer than the test, so only the count event can bring the like.
    let app = TestApp::spawn_with_api(|config| {
        config.counts_cache_ttl = Duration::from_secs(600);
    })
    .await;
    let post = app.create_post("alice").await;
    let path = format!("/v1/posts?ids={post}");
    let (status, before) = app.get_json(&path, None).await;
    assert_eq!(
        (status, &before["posts"][0]["likes"]),
        (StatusCode::OK, &0.into())
    );

    // Act
    app.like("bob", &post).await;

    // Assert
    let seen = TestApp::eventually(Duration::from_secs(10), || async {
        let (_, body) = app.get_json(&path, None).await;
        (body["posts"][0]["likes"] == 1).then_some(())
    })
    .await;
    assert!(seen.is_some(), "the warm feed read never showed the like");

    app.stop().await;
}

#[tokio::test]
async fn counts_changed_without_an_event_show_once_the_cached_post_is_older_than_the_ttl() {
    // Arrange: a post read (and cached), then its counts set behind the pipeline's back, as
    // if their count event had been lost.
    let app = TestApp::spawn_with_api(|config| {
        config.counts_cache_ttl = Duration::from_millis(200);
    })
    .await;
    let post = app.create_post("alice").await;
    let path = format!("/v1/posts?ids={post}");
    let (_, before) = app.get_json(&path, None).await;
    assert_eq!(before["posts"][0]["likes"], 0);

    // Act
    app.db
        .execute(
            "INSERT INTO post_counts (post_id, likes, comments, updated_at)
             VALUES ($1::text::uuid, 7, 0, clock_timestamp())
             ON CONFLICT (post_id) DO UPDATE SET likes = 7, updated_at = clock_timestamp()",
            &[&post],
        )
        .await
        .expect("setting the counts");

    // Assert: a read past the TTL is answered from the cache and starts the re-read; a
    // later one has it.
    let seen = TestApp::eventually(Duration::from_secs(10), || async {
        let (_, body) = app.get_json(&path, None).await;
        (body["posts"][0]["likes"] == 7).then_some(())
    })
    .await;
    assert!(seen.is_some(), "the feed never read the post again");

    app.stop().await;
}
