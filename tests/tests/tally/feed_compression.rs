//! gzip and br on the post reads: a client that accepts a coding gets the same JSON coded,
//! with a tag of its own that still revalidates; one that accepts none gets it plain.

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder};
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, ETAG, IF_NONE_MATCH};
use reqwest::{Method, StatusCode};
use tally_tests::TestApp;
use tokio::io::AsyncReadExt;

async fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    match coding {
        "gzip" => GzipDecoder::new(body).read_to_end(&mut plain).await,
        "br" => BrotliDecoder::new(body).read_to_end(&mut plain).await,
        other => panic!("unexpected coding {other}"),
    }
    .expect("a well-formed coded body");
    plain
}

#[tokio::test]
async fn a_coded_feed_decodes_to_the_same_json_and_revalidates_with_its_own_tag() {
    // Arrange
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for author in ["alice", "bob", "carol"] {
        ids.push(app.create_post(author).await);
    }
    let path = format!("/v1/posts?ids={}", ids.join(","));
    let plain = app
        .request(Method::GET, &path, None)
        .send()
        .await
        .expect("a feed");
    assert!(plain.headers().get(CONTENT_ENCODING).is_none());
    let plain_tag = plain.headers()[ETAG].to_str().expect("a tag").to_owned();
    let plain: serde_json::Value = plain.json().await.expect("JSON");

    for coding in ["gzip", "br"] {
        // Act
        let coded = app
            .request(Method::GET, &path, None)
            .header(ACCEPT_ENCODING, coding)
            .send()
            .await
            .expect("a coded feed");
        let tag = coded.headers()[ETAG].to_str().expect("a tag").to_owned();
        assert_eq!(coded.headers()[CONTENT_ENCODING], coding);
        let body = decode(coding, &coded.bytes().await.expect("a body")).await;
        let revalidated = app
            .request(Method::GET, &path, None)
            .header(ACCEPT_ENCODING, coding)
            .header(IF_NONE_MATCH, &tag)
            .send()
            .await
            .expect("a revalidation");

        // Assert
        let decoded: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(decoded, plain, "{coding}");
        assert_ne!(tag, plain_tag, "each representation has its own strong tag");
        assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED, "{coding}");
        assert!(revalidated.headers().get(CONTENT_ENCODING).is_none());
        assert!(revalidated.bytes().await.expect("a body").is_empty());
    }

    app.stop().await;
}

#[tokio::test]
async fn a_coding_refused_with_q_zero_or_not_offered_leaves_the_body_plain() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;

    for accept in ["gzip;q=0, br;q=0", "zstd", "identity"] {
        // Act
        let response = app
            .request(Method::GET, &format!("/v1/posts/{post}"), None)
            .header(ACCEPT_ENCODING, accept)
            .send()
            .await
            .expect("a post");

        // Assert
        assert_eq!(response.status(), StatusCode::OK, "{accept}");
        assert!(
            response.headers().get(CONTENT_ENCODING).is_none(),
            "{accept}"
        );
        let body: serde_json::Value = response.json().await.expect("plain JSON");
        assert_eq!(body["id"], post.as_str(), "{accept}");
    }

    app.stop().await;
}
