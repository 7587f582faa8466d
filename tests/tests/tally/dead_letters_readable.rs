//! `dead_letters.payload` is bytea, which psql shows as hex; the `dead_letters_readable` view
//! shows each payload as JSON when it parses, else as text, else as escaped bytes.

use std::time::Duration;

use tally_tests::TestApp;

/// Publishes `payload` on a tally subject, as a broken producer would.
async fn publish(app: &TestApp, msg_id: &str, payload: &[u8]) {
    let js = app.nats.jetstream().await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(tally_sql::HEADER_MSG_ID, msg_id);
    let subject = format!("tally.like.added.{}", uuid::Uuid::now_v7());
    js.publish_with_headers(subject, headers, payload.to_vec().into())
        .await
        .expect("publishing")
        .await
        .expect("the stream acked");
}

#[tokio::test]
async fn dead_letters_readable_shows_payloads_as_json_text_or_escaped_bytes() {
    // Arrange: four payloads the updater cannot apply, dead-lettered for real.
    let app = TestApp::spawn().await;
    publish(&app, "json", br#"{"hello": "world"}"#).await;
    publish(&app, "text", b"not json at all").await;
    publish(&app, "binary", b"\xff\x00ok").await;
    // Deeper than Postgres's JSON parser's stack: text, never an error failing the view.
    let deep = "[".repeat(20_000);
    publish(&app, "deep", deep.as_bytes()).await;
    TestApp::eventually(Duration::from_secs(30), || async {
        (app.scalar_i64("SELECT count(*) FROM dead_letters").await == 4).then_some(())
    })
    .await
    .expect("the four payloads were dead-lettered");

    // Act: as an operator would, through the view (readable by the service roles too).
    let rows = app
        .db
        .query(
            "SELECT payload_format, payload, payload_text, payload_bytes
             FROM dead_letters_readable ORDER BY payload_bytes",
            &[],
        )
        .await
        .expect("reading dead_letters_readable");

    // Assert
    let seen: Vec<(String, Option<serde_json::Value>, String, i32)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("binary".to_owned(), None, r"\377\000ok".to_owned(), 4),
            ("text".to_owned(), None, "not json at all".to_owned(), 15),
            (
                "json".to_owned(),
                Some(serde_json::json!({"hello": "world"})),
                r#"{"hello": "world"}"#.to_owned(),
                18
            ),
            ("text".to_owned(), None, deep, 20_000),
        ]
    );

    app.stop().await;
}
