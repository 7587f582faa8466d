//! `count_drift` follows `TALLY_UPDATER_INBOX_RETENTION_SECS` as the updater runs with it (the
//! updater records it in `updater_settings`), not a hard-coded 8 days: an unapplied event
//! younger than the retention is in flight, not drift.

use std::time::Duration;

use tally_tests::TestApp;

#[tokio::test]
async fn count_drift_follows_the_inbox_retention_the_updater_runs_with() {
    // Arrange: an updater configured with a 10-day retention records it, then stops.
    let app = TestApp::spawn_without_updater().await;
    let mut config = app.updater_config();
    config.inbox_retention = Duration::from_secs(10 * 24 * 3600);
    let updater = tally_updater::Updater::build(config)
        .await
        .expect("building the updater");
    let updater = app.spawn_updater(updater).await;
    TestApp::eventually(Duration::from_secs(30), || async {
        let recorded = app
            .scalar_i64(
                "SELECT coalesce(extract(epoch FROM max(inbox_retention)), 0)::bigint
                 FROM updater_settings",
            )
            .await;
        (recorded == 10 * 24 * 3600).then_some(())
    })
    .await
    .expect("the updater recorded its retention");
    updater.stop().await;
    // bob's like, not applied (no updater runs).
    let post = app.create_post("alice").await;
    let event = app.like("bob", &post).await.expect("the like's event id");
    let drifts_when_written = |days: i64| {
        let (db, event, post) = (&app.db, &event, &post);
        async move {
            db.execute(
                "UPDATE outbox SET created_at = now() - make_interval(days => $2::int)
                 WHERE event_id = $1::text::uuid",
                &[event, &(days as i32)],
            )
            .await
            .expect("backdating the event");
            db.query_one(
                "SELECT count(*) FROM count_drift WHERE post_id = $1::text::uuid",
                &[post],
            )
            .await
            .expect("reading count_drift")
            .get::<_, i64>(0)
                > 0
        }
    };

    // Act: the like written 9 days ago (inside the retention), then 11 days ago (past it).
    let inside = drifts_when_written(9).await;
    let past = drifts_when_written(11).await;

    // Assert: 9 days old it is in flight (the count, 0, is the likes, 1, less it); 11 days
    // old it can no longer be delivered, so the missing like is drift.
    assert!(!inside, "a 9-day-old unapplied event counted as drift");
    assert!(
        past,
        "an 11-day-old unapplied event still counted as in flight"
    );

    app.stop().await;
}
