//! `recent_events` answers "is this event counted yet?": who caused each event, whether the
//! relay has it in the stream (published and confirmed to Postgres), and whether the updater
//! applied it.

use std::time::Duration;

use tally_tests::TestApp;

/// The event's (actor, in_stream, applied, state) as the view shows it.
async fn progress(app: &TestApp, event_id: &str) -> (String, bool, Option<bool>, String) {
    let row = app
        .db
        .query_one(
            "SELECT actor, in_stream, applied, state FROM recent_events
             WHERE event_id = $1::text::uuid",
            &[&event_id],
        )
        .await
        .expect("reading recent_events");
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

/// Polls until the event reaches `state`; a checkpoint logs the running-transactions record
/// that lets the relay's slot vouch for it (Postgres logs one every 15 s while WAL is written).
async fn reaches(
    app: &TestApp,
    event_id: &str,
    state: &str,
) -> (String, bool, Option<bool>, String) {
    TestApp::eventually(Duration::from_secs(60), || async {
        let seen = progress(app, event_id).await;
        if seen.3 == state {
            return Some(seen);
        }
        app.db
            .batch_execute("CHECKPOINT")
            .await
            .expect("checkpoint");
        // A checkpoint is cluster-wide: once a second keeps the other tests' clusters unhurried.
        tokio::time::sleep(Duration::from_secs(1)).await;
        None
    })
    .await
    .unwrap_or_else(|| panic!("event {event_id} never reached {state:?}"))
}

#[tokio::test]
async fn recent_events_shows_who_acted_and_whether_each_event_is_in_the_stream_and_counted() {
    // Arrange: no updater yet, and NATS down while bob likes, so the relay cannot publish.
    let mut app = TestApp::spawn_without_updater().await;
    let post = app.create_post("alice").await;
    app.nats.stop().await;
    let event = app.like("bob", &post).await.expect("the like's event id");

    // Act and assert: written, not in the stream.
    assert_eq!(
        progress(&app, &event).await,
        ("bob".into(), false, Some(false), "not yet in stream".into())
    );

    // In the stream once NATS is back and the relay confirmed it; not counted yet.
    app.nats.start_again().await;
    assert_eq!(
        reaches(&app, &event, "in stream").await,
        ("bob".into(), true, Some(false), "in stream".into())
    );

    // Counted once an updater applied it.
    let updater = tally_updater::Updater::build(app.updater_config())
        .await
        .expect("building the updater");
    let updater = app.spawn_updater(updater).await;
    assert_eq!(
        reaches(&app, &event, "counted").await,
        ("bob".into(), true, Some(true), "counted".into())
    );

    updater.stop().await;
    app.stop().await;
}
