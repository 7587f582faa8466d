//! `GET /v1/live` with ids that name no post (never created, or deleted): each is reported
//! once as a `missing` event and not followed, beside the posts that exist.

use std::time::Duration;

use reqwest::Method;
use tally_tests::TestApp;

const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn unknown_and_deleted_ids_are_reported_missing_once_in_the_order_asked() {
    // Arrange
    let app = TestApp::spawn().await;
    let live = app.create_post("alice").await;
    let deleted = app.create_post("alice").await;
    let deleted_answer = app
        .request(
            Method::DELETE,
            &format!("/v1/posts/{deleted}"),
            Some("alice"),
        )
        .send()
        .await
        .expect("deleting");
    assert!(deleted_answer.status().is_success());
    let unknown = uuid::Uuid::now_v7().to_string();

    // Act: the unknown id twice; it is one id.
    let mut stream = app.live(&[&unknown, &live, &deleted, &unknown]).await;
    let mut opening = Vec::new();
    for _ in 0..3 {
        opening.push(stream.next_event(PATIENCE).await.expect("an opening event"));
    }
    app.like("bob", &live).await;
    let (seen, arrived) = stream
        .counts_until(PATIENCE, |counts| counts["likes"] == 1)
        .await;

    // Assert
    let kinds: Vec<(&str, &str)> = opening
        .iter()
        .map(|(event, _, data)| (event.as_str(), data["post_id"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("missing", unknown.as_str()),
            ("counts", live.as_str()),
            ("missing", deleted.as_str())
        ]
    );
    assert!(opening[0].1.is_empty(), "a missing event has no id");
    assert!(arrived, "the live post's like never arrived: {seen:?}");
    assert!(
        seen.iter().all(|counts| counts["post_id"] == live.as_str()),
        "a missing id was followed: {seen:?}"
    );

    app.stop().await;
}
