//! Count events: after each commit the updater publishes every changed post's new absolute
//! counts on core NATS, `tally.counts.<post_id>`, and none of them lands in the event stream.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use tally_sql::CountsChanged;
use tally_tests::TestApp;

/// Generous: only there to turn a count event that never comes into a failure, not a hang.
const ARRIVES_WITHIN: Duration = Duration::from_secs(20);

/// A core NATS subscription to every post's count events.
async fn subscribe(app: &TestApp) -> async_nats::Subscriber {
    let client = async_nats::connect(app.nats.url())
        .await
        .expect("connecting to NATS");
    let subscriber = client
        .subscribe(tally_sql::COUNTS_SUBJECTS)
        .await
        .expect("subscribing to the count events");
    client.flush().await.expect("the subscription reached NATS");
    subscriber
}

/// The next count event of `post_id` with `likes` and `comments` (earlier values of the same
/// post may come first); fails if none comes.
async fn counts_arrive(
    events: &mut async_nats::Subscriber,
    post_id: &str,
    likes: i64,
    comments: i64,
) -> CountsChanged {
    let wanted = async {
        while let Some(message) = events.next().await {
            let counts: CountsChanged =
                serde_json::from_slice(&message.payload).expect("a count event is JSON");
            assert_eq!(message.subject.as_str(), counts.subject());
            if counts.post_id.to_string() == post_id
                && (counts.likes, counts.comments) == (likes, comments)
            {
                return counts;
            }
        }
        panic!("the subscription ended");
    };
    tokio::time::timeout(ARRIVES_WITHIN, wanted)
        .await
        .unwrap_or_else(|_| {
            panic!("no count event of {post_id} with {likes} likes, {comments} comments")
        })
}

#[tokio::test]
async fn likes_and_comments_publish_the_posts_new_absolute_counts() {
    // Arrange
    let app = TestApp::spawn().await;
    let mut events = subscribe(&app).await;
    let post_id = app.create_post("alice").await;

    // Act and assert: each change is followed by the post's counts after it.
    app.like("bob", &post_id).await;
    let first = counts_arrive(&mut events, &post_id, 1, 0).await;
    app.like("carol", &post_id).await;
    counts_arrive(&mut events, &post_id, 2, 0).await;
    app.comment("dave", &post_id, "nice").await;
    let last = counts_arrive(&mut events, &post_id, 2, 1).await;

    assert!(
        last.updated_at > first.updated_at,
        "{first:?} then {last:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unlike_publishes_the_lower_count() {
    // Arrange
    let app = TestApp::spawn().await;
    let mut events = subscribe(&app).await;
    let post_id = app.create_post("alice").await;
    app.like("bob", &post_id).await;
    app.like("carol", &post_id).await;
    counts_arrive(&mut events, &post_id, 2, 0).await;

    // Act
    let response = app
        .request(Method::DELETE, &format!("/v1/likes/{post_id}"), Some("bob"))
        .send()
        .await
        .expect("unliking");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // Assert
    counts_arrive(&mut events, &post_id, 1, 0).await;
    app.stop().await;
}

#[tokio::test]
async fn count_events_stay_out_of_the_event_stream() {
    // Arrange
    let app = TestApp::spawn().await;
    let mut events = subscribe(&app).await;
    let post_id = app.create_post("alice").await;

    // Act
    app.like("bob", &post_id).await;
    counts_arrive(&mut events, &post_id, 1, 0).await;
    // One more commit after the count event: had the stream stored it, the updater would
    // have read it by then.
    app.like("carol", &post_id).await;
    counts_arrive(&mut events, &post_id, 2, 0).await;

    // Assert: the stream holds the post and its two likes only; nothing was dead-lettered.
    let js = app.nats.jetstream().await;
    let mut stream = js.get_stream(tally_sql::STREAM).await.expect("the stream");
    let stored = stream.info().await.expect("stream info").state.messages;
    assert_eq!(stored, 3, "the stream holds more than the three events");
    assert_eq!(app.scalar_i64("SELECT count(*) FROM dead_letters").await, 0);
    app.stop().await;
}
