//! `GET /v1/live`: a stream starts with each post's current counts and then pushes every
//! change; a reconnecting `EventSource` (with `Last-Event-ID`) gets the current counts at once.

use std::time::Duration;

use reqwest::Method;
use tally_tests::TestApp;
use tally_tests::sse::SseReader;

/// Long enough for the pipeline on a loaded machine; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_stream_starts_with_the_current_counts_then_pushes_a_like() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let mut stream = app.live(&[&post]).await;
    let (event, id, first) = stream.next_event(PATIENCE).await.expect("a first event");
    assert_eq!(event, "counts");
    assert_eq!(first["post_id"], post.as_str());
    assert_eq!(
        (first["likes"].as_i64(), first["comments"].as_i64()),
        (Some(0), Some(0))
    );
    assert!(id.starts_with(&format!("{post}@")), "{id}");

    // Act
    app.like("bob", &post).await;

    // Assert
    let (seen, arrived) = stream
        .counts_until(PATIENCE, |counts| counts["likes"] == 1)
        .await;
    assert!(arrived, "the like never arrived: {seen:?}");
    let last = seen.last().expect("an event");
    assert_eq!(last["post_id"], post.as_str());
    assert!(last["updated_at"].is_string(), "{last}");

    app.stop().await;
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_gets_the_current_counts_at_once() {
    // Arrange: a first stream saw the post at 0 likes; a like lands while it is gone.
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let mut first = app.live(&[&post]).await;
    let (_, last_id, _) = first.next_event(PATIENCE).await.expect("a first event");
    drop(first);
    app.like("bob", &post).await;
    let counted = TestApp::eventually(PATIENCE, || async {
        let likes = app
            .scalar_i64(&format!(
                "SELECT coalesce((SELECT likes FROM post_counts WHERE post_id = '{post}'), 0)"
            ))
            .await;
        (likes == 1).then_some(())
    })
    .await;
    assert!(counted.is_some(), "the like was never counted");

    // Act: reconnect as an EventSource does.
    let response = app
        .request(Method::GET, &format!("/v1/live?ids={post}"), None)
        .header("Last-Event-ID", last_id)
        .send()
        .await
        .expect("reconnecting");
    let mut stream = SseReader::new(response);

    // Assert: the first event is the current counts, not a replay.
    let (event, _, counts) = stream.next_event(PATIENCE).await.expect("an event");
    assert_eq!(event, "counts");
    assert_eq!(counts["likes"], 1);

    app.stop().await;
}
