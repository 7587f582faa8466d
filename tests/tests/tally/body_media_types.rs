//! A body is `application/json` in UTF-8 and unencoded, or it is a 415 problem: no `+json`
//! cousin, other charset or content coding is half-understood.

use reqwest::{Method, StatusCode};
use tally_tests::{TestApp, problem};

#[tokio::test]
async fn bodies_other_than_plain_unencoded_json_are_415_problems() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let like = format!(r#"{{"post_id":"{post}"}}"#);
    let refused = [
        ("application/merge-patch+json", None),
        ("application/json; charset=iso-8859-1", None),
        ("text/plain", None),
        ("application/json", Some("gzip")),
        ("application/json", Some("identity, br")),
    ];

    // Act and assert
    for (content_type, encoding) in refused {
        let mut request = app
            .request(Method::POST, "/v1/likes", Some("bob"))
            .header("content-type", content_type)
            .body(like.clone());
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        let response = request.send().await.expect("liking");
        let what = format!("{content_type} {encoding:?}");
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{what}: {body}");
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 0);

    for (content_type, encoding) in [
        ("application/json; charset=UTF-8", "identity"),
        ("Application/JSON", "identity"),
    ] {
        let response = app
            .request(
                Method::POST,
                "/v1/likes",
                Some(&format!("u-{content_type}")),
            )
            .header("content-type", content_type)
            .header("content-encoding", encoding)
            .body(like.clone())
            .send()
            .await
            .expect("liking");
        assert_eq!(response.status(), StatusCode::CREATED, "{content_type}");
    }

    app.stop().await;
}
