//! The feed read, `GET /v1/posts?ids=a,b,c`: posts in the order asked with their counts,
//! unknown ids reported rather than fatal, and every malformed list a 4xx problem.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::TestApp;

async fn feed(app: &TestApp, query: &str) -> (StatusCode, Value) {
    let response = app
        .request(Method::GET, &format!("/v1/posts{query}"), None)
        .send()
        .await
        .expect("an answer");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_feed_read_returns_posts_in_the_order_asked_and_reports_unknown_ids() {
    // Arrange
    let app = TestApp::spawn().await;
    let first = app.create_post("alice").await;
    let second = app.create_post("bob").await;
    let unknown = uuid::Uuid::now_v7().to_string();

    // Act
    let (status, body) = feed(&app, &format!("?ids={second},{unknown},{first},{second}")).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["posts"]
        .as_array()
        .expect("posts")
        .iter()
        .map(|post| post["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);
    assert_eq!(body["missing"], json!([unknown]));
    assert_eq!(body["posts"][0]["likes"], 0);

    app.stop().await;
}

#[tokio::test]
async fn missing_empty_oversized_and_malformed_id_lists_are_400_problems() {
    // Arrange
    let app = TestApp::spawn().await;
    let many = |n: usize| {
        (0..n)
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };

    // Act and assert
    for (what, query) in [
        ("no ids parameter", String::new()),
        ("an empty ids parameter", "?ids=".to_owned()),
        ("101 ids", format!("?ids={}", many(101))),
        ("1,000 ids", format!("?ids={}", many(1_000))),
        ("a malformed id", "?ids=not-a-uuid".to_owned()),
        (
            "SQL in ids",
            "?ids=%27%3B%20DROP%20TABLE%20posts%3B--".to_owned(),
        ),
        (
            "repeated ids parameters",
            format!("?ids={}&ids={}", many(1), many(1)),
        ),
    ] {
        let response = app
            .request(Method::GET, &format!("/v1/posts{query}"), None)
            .send()
            .await
            .unwrap_or_else(|err| panic!("{what}: no answer ({})", err.without_url()));
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(content_type, "application/problem+json", "{what}");
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM posts").await, 0);

    app.stop().await;
}

#[tokio::test]
async fn a_post_is_fetched_from_postgres_once_per_ttl_however_many_feeds_read_it() {
    // Arrange: three posts and an unknown id, read by six feeds within the cache's TTL (a
    // minute here, so the machine's speed cannot move an expiry into the test).
    let app = TestApp::spawn_with_api(|config| {
        config.counts_cache_ttl = Duration::from_secs(60);
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.create_post("alice").await);
    }
    ids.push(uuid::Uuid::now_v7().to_string());
    let query = format!("?ids={}", ids.join(","));

    // Act
    for _ in 0..6 {
        let (status, _) = feed(&app, &query).await;
        assert_eq!(status, StatusCode::OK);
    }

    // Assert: four misses, then hits only; unknown ids are cached too.
    let series =
        |result: &str| format!("tally_api_counts_cache_lookups_total{{result=\"{result}\"}}");
    assert_eq!(
        (
            app.counter(&series("miss")).await,
            app.counter(&series("hit")).await
        ),
        (Some(4), Some(20))
    );
    assert_eq!(
        app.counter("tally_api_counts_cache_queries_total").await,
        Some(1)
    );

    app.stop().await;
}
