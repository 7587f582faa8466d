//! NATS going away does not end live streams: they stay open, and when NATS is back each
//! watched post's counts are read again, so a change no event carried still arrives.

use std::time::Duration;

use tally_tests::TestApp;

#[tokio::test]
async fn a_stream_stays_open_while_nats_is_down_and_resumes_with_reread_counts() {
    // Arrange
    let mut app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let mut stream = app.live(&[&post]).await;
    let first = stream.next_event(Duration::from_secs(20)).await;
    assert!(first.is_some_and(|(_, _, data)| data["likes"] == 0));

    // Act: NATS dies; meanwhile the counts change with no event to say so (as if the
    // updater's event were lost); then NATS comes back.
    app.nats.stop().await;
    app.db
        .execute(
            "INSERT INTO post_counts (post_id, likes, comments, updated_at)
             VALUES ($1::text::uuid, 7, 0, now())
             ON CONFLICT (post_id) DO UPDATE SET likes = 7, updated_at = now()",
            &[&post],
        )
        .await
        .expect("changing the counts behind the pipeline's back");
    let while_down = tokio::time::timeout(Duration::from_secs(2), stream.next()).await;
    app.nats.start_again().await;
    let (seen, arrived) = stream
        .counts_until(Duration::from_secs(30), |counts| counts["likes"] == 7)
        .await;

    // Assert: nothing came and nothing ended while NATS was down; the re-read came after.
    assert!(
        while_down.is_err(),
        "the stream sent or ended: {while_down:?}"
    );
    assert!(arrived, "the re-read counts never arrived: {seen:?}");

    drop(stream);
    app.stop().await;
}
