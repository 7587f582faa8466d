//! The REST api's contract: status codes, problem bodies, idempotency, the served spec.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::{TestApp, problem};

#[tokio::test]
async fn liking_twice_counts_once() {
    // Arrange
    let app = TestApp::spawn().await;
    let post_id = app.create_post("author").await;
    let like = || {
        app.request(Method::POST, "/v1/likes", Some("ann"))
            .json(&json!({ "post_id": post_id }))
            .send()
    };

    // Act
    let first = like().await.expect("first like");
    let second = like().await.expect("second like");

    // Assert
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(second.status(), StatusCode::OK);
    let second: Value = second.json().await.expect("a like");
    assert_eq!(second["event_id"], Value::Null);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 1);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE event_type = 'like.added'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn writes_without_a_valid_token_are_401_problems() {
    let app = TestApp::spawn().await;
    let anonymous = app
        .request(Method::POST, "/v1/posts", None)
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(problem(anonymous).await.0, StatusCode::UNAUTHORIZED);

    let forged = app
        .http
        .post(format!("{}/v1/posts", app.api_url))
        .bearer_auth("not.a.jwt")
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(problem(forged).await.0, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_4xx_problem_never_a_5xx() {
    let app = TestApp::spawn().await;
    let post_id = app.create_post("author").await;
    let cases = [
        (
            "malformed JSON",
            app.request(Method::POST, "/v1/likes", Some("ann"))
                .header("content-type", "application/json")
                .body("{\"post_id\":"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "not a UUID",
            app.request(Method::POST, "/v1/likes", Some("ann"))
                .json(&json!({"post_id": "nope"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "wrong type",
            app.request(Method::POST, "/v1/likes", Some("ann"))
                .json(&json!({"post_id": 7})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a number for a string",
            app.request(Method::POST, "/v1/likes", Some("7"))
                .json(&json!({"post_id": post_id, "user_id": 7})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            app.request(Method::POST, "/v1/likes", Some("ann"))
                .json(&json!({"post_id": post_id, "x": 1})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "no content type",
            app.request(Method::POST, "/v1/likes", Some("ann"))
                .body(json!({"post_id": post_id}).to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "oversized body",
            app.request(Method::POST, "/v1/likes", Some("ann"))
                .header("content-type", "application/json")
                .body(vec![b' '; tally_api::MAX_BODY_BYTES + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "someone else's user_id",
            app.request(Method::POST, "/v1/likes", Some("ann"))
                .json(&json!({"post_id": post_id, "user_id": "bob"})),
            StatusCode::FORBIDDEN,
        ),
        (
            "missing post",
            app.request(Method::POST, "/v1/likes", Some("ann"))
                .json(&json!({"post_id": uuid::Uuid::now_v7()})),
            StatusCode::NOT_FOUND,
        ),
        (
            "invalid path UUID",
            app.request(Method::GET, "/v1/posts/xyz", None),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown post",
            app.request(
                Method::GET,
                &format!("/v1/posts/{}", uuid::Uuid::now_v7()),
                None,
            ),
            StatusCode::NOT_FOUND,
        ),
        (
            "unlike a missing post",
            app.request(
                Method::DELETE,
                &format!("/v1/likes/{}", uuid::Uuid::now_v7()),
                Some("ann"),
            ),
            StatusCode::NOT_FOUND,
        ),
        (
            "unknown route",
            app.request(Method::GET, "/v1/nope", None),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (case, request, expected) in cases {
        let response = request.send().await.expect(case);
        let (status, body) = problem(response).await;
        assert_eq!(status, expected, "{case}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn creating_a_post_is_idempotent_for_its_author_and_a_conflict_for_others() {
    let app = TestApp::spawn().await;
    let post_id = app.create_post("author").await;
    let again = app
        .request(Method::POST, "/v1/posts", Some("author"))
        .json(&json!({ "id": post_id }))
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), StatusCode::OK);
    let other = app
        .request(Method::POST, "/v1/posts", Some("mallory"))
        .json(&json!({ "id": post_id }))
        .send()
        .await
        .expect("request");
    assert_eq!(problem(other).await.0, StatusCode::CONFLICT);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE event_type = 'post.created'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn postgres_unreachable_is_a_503_with_retry_after() {
    // Arrange: an api pointed at a port nothing listens on.
    let port = tally_tests::cluster::free_port();
    let mut config =
        tally_tests::api_config(format!("postgres://tally_api@127.0.0.1:{port}/nowhere"));
    config.db_pool_size = 2;
    config.db_timeout = std::time::Duration::from_millis(500);
    let api = tally_api::Application::build(config)
        .await
        .expect("building the api");
    let url = format!(
        "http://{}/v1/posts/{}",
        api.local_addr(),
        uuid::Uuid::now_v7()
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(api.run_until_stopped(stop.clone().cancelled_owned()));

    // Act
    let response = reqwest::get(&url).await.expect("request");

    // Assert
    assert!(response.headers().contains_key("retry-after"));
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no connection details leak: {body}"
    );
    stop.cancel();
    server.await.expect("join").expect("server");
}

#[tokio::test]
async fn the_committed_spec_matches_the_served_one() {
    let app = TestApp::spawn().await;
    let served: Value = app
        .request(Method::GET, "/openapi.json", None)
        .send()
        .await
        .expect("GET /openapi.json")
        .json()
        .await
        .expect("JSON");
    let committed: Value = serde_json::from_str(include_str!("../../../openapi/openapi.json"))
        .expect("openapi/openapi.json is JSON");
    let strip_servers = |mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("servers");
        }
        v
    };
    assert!(
        strip_servers(served) == strip_servers(committed),
        "openapi/openapi.json is stale: regenerate it with `./dev openapi`"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failed_transaction_leaves_neither_the_domain_row_nor_the_outbox_row() {
    // Arrange: the outbox refuses every new row, as a full disk or a broken invariant would
    // fail the second statement of the transaction.
    let app = TestApp::spawn().await;
    let post_id = app.create_post("author").await;
    app.db
        .batch_execute("ALTER TABLE outbox ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
        .await
        .expect("breaking the outbox");

    // Act
    let like = app
        .request(Method::POST, "/v1/likes", Some("ann"))
        .json(&json!({ "post_id": post_id }))
        .send()
        .await
        .expect("an answer");
    let comment = app
        .request(
            Method::POST,
            &format!("/v1/posts/{post_id}/comments"),
            Some("ann"),
        )
        .json(&json!({ "body": "lost?" }))
        .send()
        .await
        .expect("an answer");

    // Assert: a 500 problem without database details, and nothing half-written.
    for response in [like, comment] {
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("refuse_all"), "{body}");
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 0);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM comments").await, 0);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox").await,
        1,
        "post.created only"
    );

    // And once the outbox takes rows again, the same like goes through whole.
    app.db
        .batch_execute("ALTER TABLE outbox DROP CONSTRAINT refuse_all")
        .await
        .expect("mending the outbox");
    let retried = app
        .request(Method::POST, "/v1/likes", Some("ann"))
        .json(&json!({ "post_id": post_id }))
        .send()
        .await
        .expect("an answer");
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 1);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM outbox").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_operation_and_status() {
    // Arrange
    let app = TestApp::spawn().await;
    let post_id = app.create_post("author").await;
    app.like("ann", &post_id).await;
    let missing = app
        .request(
            Method::GET,
            &format!("/v1/posts/{}", uuid::Uuid::now_v7()),
            None,
        )
        .send()
        .await
        .expect("an answer");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let _feed = app
        .request(Method::GET, &format!("/v1/posts?ids={post_id}"), None)
        .send()
        .await
        .expect("an answer");

    // Act
    let response = app
        .request(Method::GET, "/metrics", None)
        .send()
        .await
        .expect("GET /metrics");

    // Assert
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.expect("the metrics");
    for line in [
        r#"tally_api_requests_total{operation="createPost",status="201"} 1"#,
        r#"tally_api_requests_total{operation="likePost",status="201"} 1"#,
        r#"tally_api_requests_total{operation="getPost",status="404"} 1"#,
        r#"tally_api_counts_cache_lookups_total{result="miss"} 1"#,
        r#"tally_api_db_connections{state="idle"}"#,
        "# HELP tally_api_request_seconds",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_probes_the_spec_and_the_docs_answer() {
    let app = TestApp::spawn().await;
    for (path, status, content_type) in [
        ("/healthz", 200, "text/plain"),
        ("/readyz", 200, "text/plain"),
        ("/openapi.json", 200, "application/json"),
        ("/docs", 200, "text/html"),
    ] {
        let response = app
            .request(Method::GET, path, None)
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status().as_u16(), status, "{path}");
        let got = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(got.starts_with(content_type), "{path}: {got}");
    }
    let wrong_method = app
        .request(Method::PUT, "/v1/posts", None)
        .send()
        .await
        .expect("an answer");
    let allow = wrong_method
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(allow, "GET, HEAD, POST");
    assert_eq!(
        problem(wrong_method).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    app.stop().await;
}
