//! `GET /v1/live` refuses a malformed id list as the feed read does: a 400 problem, never a
//! stream, a 5xx or a hang.

use reqwest::{Method, StatusCode};
use tally_tests::{TestApp, problem};

#[tokio::test]
async fn a_missing_empty_oversized_repeated_or_non_uuid_id_list_is_a_400_problem() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let too_many = (0..101)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let queries = [
        String::new(),
        "?ids=".to_owned(),
        "?ids=not-a-uuid".to_owned(),
        format!("?ids={post},42"),
        format!("?ids={too_many}"),
        format!("?ids={post}&ids={post}"),
    ];

    for query in queries {
        // Act
        let response = app
            .request(Method::GET, &format!("/v1/live{query}"), None)
            .send()
            .await
            .expect("an answer");

        // Assert
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("ids"), "{query}: {detail}");
    }

    app.stop().await;
}
