//! Posts: deleting them (author only; afterwards everything on them is a 404), and
//! `liked_by_me` on reads.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::{TestApp, problem};

async fn read(app: &TestApp, path: &str, user: Option<&str>) -> (StatusCode, Value) {
    let response = app
        .request(Method::GET, path, user)
        .send()
        .await
        .expect("an answer");
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn only_the_author_deletes_a_post_and_afterwards_it_and_writes_on_it_are_404() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    app.comment("bob", &post, "nice").await;
    app.like("bob", &post).await;
    let delete = |user| {
        app.request(Method::DELETE, &format!("/v1/posts/{post}"), Some(user))
            .send()
    };

    // Act
    let by_bob = delete("bob").await.expect("bob's delete");
    let by_alice = delete("alice").await.expect("alice's delete");
    let again = delete("alice").await.expect("alice's second delete");
    let by_bob_after = delete("bob")
        .await
        .expect("bob's delete of the deleted post");

    // Assert
    assert_eq!(problem(by_bob).await.0, StatusCode::FORBIDDEN);
    assert_eq!(by_alice.status(), StatusCode::NO_CONTENT);
    let event_id = by_alice
        .headers()
        .get("tally-event-id")
        .and_then(|v| v.to_str().ok())
        .expect("the delete names its event")
        .to_owned();
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    assert!(!again.headers().contains_key("tally-event-id"));
    assert_eq!(problem(by_bob_after).await.0, StatusCode::NOT_FOUND);
    let outbox: String = app
        .db
        .query_one(
            "SELECT event_type FROM outbox WHERE event_id = $1::text::uuid",
            &[&event_id],
        )
        .await
        .expect("the delete's event")
        .get(0);
    assert_eq!(outbox, "post.deleted");
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE event_type = 'post.deleted'")
            .await,
        1
    );

    let after = [
        (Method::GET, format!("/v1/posts/{post}"), None),
        (Method::GET, format!("/v1/posts/{post}/likes"), None),
        (Method::GET, format!("/v1/posts/{post}/comments"), None),
        (
            Method::POST,
            "/v1/likes".to_owned(),
            Some(json!({ "post_id": post })),
        ),
        (
            Method::POST,
            format!("/v1/posts/{post}/comments"),
            Some(json!({ "body": "too late" })),
        ),
    ];
    for (method, path, body) in after {
        let request = app.request(method.clone(), &path, Some("bob"));
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let response = request.send().await.expect("an answer");
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    // Taking a like or comment back still works: see deleted_post_removals.rs.
    let (status, feed) = read(&app, &format!("/v1/posts?ids={post}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(feed["missing"], json!([post]), "{feed}");
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM likes").await,
        1,
        "the like is kept: counts stay exact"
    );

    app.stop().await;
}

#[tokio::test]
async fn deleting_a_post_that_never_existed_or_with_a_malformed_id_is_a_4xx_problem() {
    let app = TestApp::spawn().await;
    for (path, expected) in [
        (
            format!("/v1/posts/{}", uuid::Uuid::now_v7()),
            StatusCode::NOT_FOUND,
        ),
        ("/v1/posts/not-a-uuid".to_owned(), StatusCode::BAD_REQUEST),
    ] {
        let response = app
            .request(Method::DELETE, &path, Some("alice"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(problem(response).await.0, expected, "{path}");
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM outbox").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn liked_by_me_tells_a_signed_in_reader_and_is_absent_for_anonymous_reads() {
    // Arrange
    let app = TestApp::spawn().await;
    let liked = app.create_post("alice").await;
    let other = app.create_post("alice").await;
    app.like("bob", &liked).await;

    // Act
    let (_, as_bob) = read(&app, &format!("/v1/posts/{liked}"), Some("bob")).await;
    let (_, as_carol) = read(&app, &format!("/v1/posts/{liked}"), Some("carol")).await;
    let (_, anonymous) = read(&app, &format!("/v1/posts/{liked}"), None).await;
    let (_, feed) = read(&app, &format!("/v1/posts?ids={other},{liked}"), Some("bob")).await;
    let (_, anonymous_feed) = read(&app, &format!("/v1/posts?ids={liked}"), None).await;

    // Assert
    assert_eq!(as_bob["liked_by_me"], true, "{as_bob}");
    assert_eq!(as_carol["liked_by_me"], false, "{as_carol}");
    assert!(anonymous.get("liked_by_me").is_none(), "{anonymous}");
    let flags: Vec<&Value> = feed["posts"]
        .as_array()
        .expect("posts")
        .iter()
        .map(|post| &post["liked_by_me"])
        .collect();
    assert_eq!(flags, [&json!(false), &json!(true)], "{feed}");
    assert!(
        anonymous_feed["posts"][0].get("liked_by_me").is_none(),
        "{anonymous_feed}"
    );

    app.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_as_rfc_9110_says() {
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let token = app.token("bob");
    let liked = app
        .request(Method::POST, "/v1/likes", None)
        .header("authorization", format!("bearer {token}"))
        .json(&json!({ "post_id": post }))
        .send()
        .await
        .expect("an answer");
    let (status, read) = {
        let response = app
            .request(Method::GET, &format!("/v1/posts/{post}"), None)
            .header("authorization", format!("BEARER {token}"))
            .send()
            .await
            .expect("an answer");
        (
            response.status(),
            response.json::<Value>().await.unwrap_or_default(),
        )
    };
    assert_eq!(liked.status(), StatusCode::CREATED);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["liked_by_me"], true, "{read}");
    app.stop().await;
}

#[tokio::test]
async fn a_read_with_an_invalid_token_is_a_401_problem_not_an_anonymous_read() {
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    for path in [
        format!("/v1/posts/{post}"),
        format!("/v1/posts?ids={post}"),
        format!("/v1/posts/{post}/likes"),
        format!("/v1/posts/{post}/comments"),
    ] {
        for authorization in [
            "Bearer not.a.jwt",
            "bearer not.a.jwt",
            "Basic YWxpY2U6c2VjcmV0",
        ] {
            let response = app
                .request(Method::GET, &path, None)
                .header("authorization", authorization)
                .send()
                .await
                .expect("an answer");
            let (status, body) = problem(response).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {authorization}");
            assert!(
                body["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("token") || d.contains("Bearer")),
                "{body}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn writes_waiting_on_a_post_being_deleted_see_the_delete_and_write_nothing() {
    // Arrange: a transaction holds alice's post as a delete does, while bob likes it and
    // comments on it: both must wait for it. (Removals wait too, and then go through: see
    // deleted_post_removals.rs.)
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    app.comment("bob", &post, "before").await;
    let events_before = app.scalar_i64("SELECT count(*) FROM outbox").await;
    let deleter = tally_tests::connect(&tally_tests::postgres().url(&app.db_name)).await;
    deleter
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM posts WHERE post_id = '{post}' FOR UPDATE"
        ))
        .await
        .expect("locking the post");
    let send = |method: Method, path: String, body: Option<Value>| {
        let request = app.request(method, &path, Some("bob"));
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        tokio::spawn(request.send())
    };
    let like = send(
        Method::POST,
        "/v1/likes".into(),
        Some(json!({ "post_id": post })),
    );
    let add = send(
        Method::POST,
        format!("/v1/posts/{post}/comments"),
        Some(json!({ "body": "during" })),
    );
    let waiting = TestApp::eventually(std::time::Duration::from_secs(10), || async {
        let waiting = app
            .scalar_i64(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .await;
        (waiting == 2).then_some(())
    })
    .await;
    assert!(waiting.is_some(), "the two writes wait on the post's lock");

    // Act: the delete commits.
    deleter
        .batch_execute(&format!(
            "UPDATE posts SET deleted_at = now() WHERE post_id = '{post}'; COMMIT"
        ))
        .await
        .expect("deleting the post");

    // Assert
    for (what, answer) in [("like", like), ("comment", add)] {
        let response = answer.await.expect("the request task").expect("an answer");
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{what}: {body}");
    }
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox").await,
        events_before,
        "no event for writes that waited on the delete"
    );
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 0);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM comments WHERE deleted_at IS NULL")
            .await,
        1
    );

    app.stop().await;
}
