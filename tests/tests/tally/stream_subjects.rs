//! A stream made before the count events captured `tally.>`: the relay narrows it to the
//! events' subjects at start, so the count events on `tally.counts.<post_id>` stay out of it
//! (stored, they would reach the updaters as undecodable events).

use async_nats::jetstream;
use tally_relay::config::StreamConfig;
use tally_relay::publisher::Publisher;
use tally_tests::NatsServer;

#[tokio::test]
async fn a_stream_made_with_the_old_subjects_is_narrowed_to_the_events() {
    // Arrange: the stream as an earlier relay made it, holding one event.
    let nats = NatsServer::start().await;
    let client = async_nats::connect(nats.url()).await.expect("connecting");
    let js = jetstream::new(client);
    js.create_stream(jetstream::stream::Config {
        name: tally_sql::STREAM.into(),
        subjects: vec![tally_sql::STREAM_SUBJECTS_BEFORE_COUNT_EVENTS.into()],
        ..Default::default()
    })
    .await
    .expect("creating the old stream");
    js.publish("tally.like.added.0193", "{}".into())
        .await
        .expect("publishing")
        .await
        .expect("stored");

    // Act
    let publisher = Publisher::connect(&nats.url(), "tally-relay/test", 16)
        .await
        .expect("connecting the relay's publisher");
    publisher
        .ensure_stream(&StreamConfig::default())
        .await
        .expect("ensuring the stream");

    // Assert: the events' subjects only, and what it held is still there.
    let mut stream = js.get_stream(tally_sql::STREAM).await.expect("the stream");
    let info = stream.info().await.expect("its info");
    assert_eq!(
        info.config.subjects,
        vec![tally_sql::STREAM_SUBJECTS.to_owned()]
    );
    assert_eq!(info.state.messages, 1);
    let counted = js
        .publish("tally.counts.0193", "{}".into())
        .await
        .expect("publishing")
        .await;
    assert!(
        counted.is_err(),
        "a count event must not be stored in the stream"
    );
}
