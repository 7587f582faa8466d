//! The whole flow: api → Postgres outbox → relay → JetStream → updater → post_counts.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::TestApp;

async fn like(app: &TestApp, user: &str, post_id: &str) -> StatusCode {
    app.request(Method::POST, "/v1/likes", Some(user))
        .json(&json!({ "post_id": post_id }))
        .send()
        .await
        .expect("POST /v1/likes")
        .status()
}

#[tokio::test]
async fn likes_travel_the_whole_pipeline_into_the_count() {
    // Arrange
    let app = TestApp::spawn().await;
    let post_id = app.create_post("author").await;

    // Act: three users like, one of them twice, one unlikes.
    assert_eq!(like(&app, "ann", &post_id).await, StatusCode::CREATED);
    assert_eq!(like(&app, "bob", &post_id).await, StatusCode::CREATED);
    assert_eq!(like(&app, "bob", &post_id).await, StatusCode::OK);
    assert_eq!(like(&app, "cat", &post_id).await, StatusCode::CREATED);
    let unliked = app
        .request(Method::DELETE, &format!("/v1/likes/{post_id}"), Some("cat"))
        .send()
        .await
        .expect("DELETE /v1/likes");
    assert_eq!(unliked.status(), StatusCode::NO_CONTENT);

    // Assert: the count converges to 2 ...
    let likes = TestApp::eventually(Duration::from_secs(10), || async {
        let post: Value = app
            .request(Method::GET, &format!("/v1/posts/{post_id}"), None)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (post["likes"] == 2).then_some(post["likes"].clone())
    })
    .await;
    assert_eq!(likes, Some(json!(2)), "the like count never reached 2");

    // ... from exactly 4 like events (plus the post's creation) in the outbox ...
    let like_events = app
        .scalar_i64("SELECT count(*) FROM outbox WHERE event_type LIKE 'like.%'")
        .await;
    assert_eq!(like_events, 4);

    // ... and exactly those events on the stream.
    let js = app.nats.jetstream().await;
    let stream = js
        .get_stream(tally_sql::STREAM)
        .await
        .expect("the stream exists");
    // The count can read 2 before cat's like and unlike (net zero) reach the stream, so
    // the stream gets its own bounded wait.
    let messages = TestApp::eventually(Duration::from_secs(10), || {
        let mut stream = stream.clone();
        async move {
            let messages = stream.info().await.ok()?.state.messages;
            (messages >= 5).then_some(messages)
        }
    })
    .await;
    assert_eq!(messages, Some(5), "4 like events and 1 post.created");
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: format!("tally.like.*.{post_id}"),
            ..Default::default()
        })
        .await
        .expect("an ephemeral consumer");
    let messages: Vec<_> = consumer
        .fetch()
        .max_messages(100)
        .messages()
        .await
        .expect("fetching")
        .collect()
        .await;
    assert_eq!(messages.len(), 4);

    app.stop().await;
}

#[tokio::test]
async fn an_event_carries_its_id_type_and_traceparent_onto_the_stream() {
    // Arrange
    let app = TestApp::spawn().await;
    let post_id = app.create_post("author").await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    // Act
    let response = app
        .request(Method::POST, "/v1/likes", Some("ann"))
        .header("traceparent", traceparent)
        .json(&json!({ "post_id": post_id }))
        .send()
        .await
        .expect("POST /v1/likes");
    let like: Value = response.json().await.expect("a like");
    let event_id = like["event_id"].as_str().expect("an event id").to_owned();

    // Assert
    let js = app.nats.jetstream().await;
    let message = TestApp::eventually(Duration::from_secs(10), || async {
        let stream = js.get_stream(tally_sql::STREAM).await.ok()?;
        stream
            .get_last_raw_message_by_subject(&format!("tally.like.added.{post_id}"))
            .await
            .ok()
    })
    .await
    .expect("the like event reached the stream");
    let headers = message.headers;
    assert_eq!(
        headers.get(tally_sql::HEADER_MSG_ID).map(|v| v.as_str()),
        Some(event_id.as_str())
    );
    assert_eq!(
        headers
            .get(tally_sql::HEADER_EVENT_TYPE)
            .map(|v| v.as_str()),
        Some("like.added")
    );
    assert_eq!(
        headers
            .get(tally_sql::HEADER_TRACEPARENT)
            .map(|v| v.as_str()),
        Some(traceparent)
    );
    let event = tally_sql::Event::decode(&message.payload).expect("a tally event");
    assert_eq!(event.id.to_string(), event_id);
    assert_eq!(event.post_author, "author");
    assert_eq!(event.actor, "ann");

    app.stop().await;
}
