//! The spec declares the page cursors' exact format, and every cursor of that format gets a
//! page (as schemathesis generates them): only one of another format, or another list's, is a
//! 400.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tally_tests::{TestApp, problem};

const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn random_chars(rng: &mut fastrand::Rng, n: usize) -> String {
    (0..n)
        .map(|_| BASE64URL[rng.usize(..BASE64URL.len())] as char)
        .collect()
}

/// A random string of the likers cursor's format: the tag, 3 to 173 quanta, and maybe a
/// canonical partial quantum.
fn likers_cursor(rng: &mut fastrand::Rng) -> String {
    let quanta = rng.usize(3..=173);
    let mut cursor = format!("bDEu{}", random_chars(rng, 4 * quanta));
    match rng.u8(0..3) {
        0 => {}
        1 => {
            cursor.push_str(&random_chars(rng, 1));
            cursor.push(['A', 'Q', 'g', 'w'][rng.usize(..4)]);
        }
        _ => {
            cursor.push_str(&random_chars(rng, 2));
            cursor.push(b"AEIMQUYcgkosw048"[rng.usize(..16)] as char);
        }
    }
    cursor
}

fn comments_cursor(rng: &mut fastrand::Rng) -> String {
    format!("YzEu{}", random_chars(rng, 32))
}

/// The schema of `operation`'s `cursor` parameter in the served spec.
fn cursor_schema<'a>(spec: &'a Value, path: &str) -> &'a Value {
    spec["paths"][path]["get"]["parameters"]
        .as_array()
        .and_then(|params| params.iter().find(|p| p["name"] == "cursor"))
        .map(|p| &p["schema"])
        .expect("a cursor parameter")
}

#[tokio::test]
async fn every_cursor_of_the_declared_format_gets_a_page() {
    // Arrange: a post with a like and a comment, and random cursors of both formats.
    let app = TestApp::spawn_without_updater().await;
    let post = app.create_post("alice").await;
    app.like("bob", &post).await;
    app.comment("bob", &post, "hi").await;
    let spec: Value = app
        .request(Method::GET, "/openapi.json", None)
        .send()
        .await
        .expect("the spec")
        .json()
        .await
        .expect("JSON");
    let mut rng = fastrand::Rng::with_seed(12);

    // Act and assert
    for (list, make) in [
        ("likes", likers_cursor as fn(&mut fastrand::Rng) -> String),
        ("comments", comments_cursor),
    ] {
        let schema = cursor_schema(&spec, &format!("/v1/posts/{{post_id}}/{list}"));
        assert!(schema["pattern"].is_string(), "{list}: {schema}");
        let min = schema["minLength"].as_u64().expect("minLength") as usize;
        let max = schema["maxLength"].as_u64().expect("maxLength") as usize;
        for _ in 0..40 {
            let cursor = make(&mut rng);
            assert!((min..=max).contains(&cursor.len()), "{list}: {cursor}");
            let response = app
                .request(
                    Method::GET,
                    &format!("/v1/posts/{post}/{list}?cursor={cursor}"),
                    None,
                )
                .send()
                .await
                .expect("an answer");
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            assert_eq!(status, StatusCode::OK, "{list} {cursor}: {body}");
        }
    }

    app.stop().await;
}

#[tokio::test]
async fn a_cursor_of_another_format_or_list_is_a_400() {
    // Arrange
    let app = TestApp::spawn_without_updater().await;
    let post = app.create_post("alice").await;
    let mut rng = fastrand::Rng::with_seed(7);

    // Act and assert
    for (list, cursor) in [
        ("likes", comments_cursor(&mut rng)),
        ("comments", likers_cursor(&mut rng)),
        ("likes", "bDEuAAAAAAAAAAAAYh".to_owned()),
        ("comments", format!("YzEu{}", random_chars(&mut rng, 31))),
    ] {
        let response = app
            .request(
                Method::GET,
                &format!("/v1/posts/{post}/{list}?cursor={cursor}"),
                None,
            )
            .send()
            .await
            .expect("an answer");
        assert_eq!(
            problem(response).await.0,
            StatusCode::BAD_REQUEST,
            "{list} {cursor}"
        );
    }

    app.stop().await;
}
