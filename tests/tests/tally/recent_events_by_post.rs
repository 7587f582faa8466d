//! `recent_events` is every event the outbox holds, not the newest 50: filtering it by post
//! finds a post's event however many newer events other posts have.

use tally_tests::TestApp;

#[tokio::test]
async fn recent_events_finds_a_posts_event_behind_more_than_fifty_newer_ones() {
    // Arrange: bob likes alice's post, then 60 users like another post.
    let app = TestApp::spawn().await;
    let quiet = app.create_post("alice").await;
    let liked = app.like("bob", &quiet).await.expect("the like's event id");
    let busy = app.create_post("carol").await;
    for user in 0..60 {
        app.like(&format!("fan-{user}"), &busy).await;
    }

    // Act
    let rows = app
        .db
        .query(
            "SELECT event_id::text, event_type FROM recent_events
             WHERE post_id = $1::text::uuid",
            &[&quiet],
        )
        .await
        .expect("reading recent_events");

    // Assert: the post's two events, newest first.
    let events: Vec<(String, String)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], (liked, "like.added".to_owned()));
    assert_eq!(events[1].1, "post.created");
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM recent_events").await,
        63
    );

    app.stop().await;
}
