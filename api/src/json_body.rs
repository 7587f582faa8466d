//! Strict JSON request bodies, checked before poem-openapi parses them: it takes any
//! `application/*+json` and any charset, ignores `Content-Encoding` (a gzip body then fails as
//! "expected value"), and lets the last of two equal keys win, so
//! `{"post_id":"<missing>","post_id":"<real>"}` would like the real post. Here a body must be
//! `application/json` (charset utf-8 or none) and unencoded, else 415; a repeated key in any
//! object is a 400.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use poem::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE};
use poem::http::{HeaderValue, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response, Result};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::problem::Problem;

fn unsupported(detail: String) -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        detail,
    )
}

/// Whether a `Content-Type` is `application/json`, bare or with `charset=utf-8` (JSON is
/// UTF-8 by RFC 8259; any other charset would be misread).
fn is_plain_json(content_type: &str) -> bool {
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        && parts.all(|param| {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            let value = value.trim().trim_matches('"');
            name.trim().eq_ignore_ascii_case("charset") && value.eq_ignore_ascii_case("utf-8")
        })
}

/// The 415 a request with a body earns, if any: a content coding other than identity, or a
/// type other than plain JSON. A request without a body has nothing to decode.
fn media_problem(req: &Request, has_body: bool) -> Option<Problem> {
    if !has_body {
        return None;
    }
    let encodings = req.headers().get_all(CONTENT_ENCODING);
    for encoding in encodings {
        let value = encoding.to_str().unwrap_or("?");
        if value
            .split(',')
            .any(|coding| !coding.trim().eq_ignore_ascii_case("identity"))
        {
            return Some(unsupported(format!(
                "Content-Encoding `{value}` is not supported: send the body unencoded"
            )));
        }
    }
    let content_type = req.headers().get(CONTENT_TYPE).map(|v| v.to_str());
    match content_type {
        Some(Ok(value)) if is_plain_json(value) => None,
        Some(Ok(value)) => Some(unsupported(format!(
            "Content-Type `{value}` is not accepted: send `application/json` (UTF-8)"
        ))),
        Some(Err(_)) => Some(unsupported(
            "the Content-Type is not readable: send `application/json` (UTF-8)".to_owned(),
        )),
        None => Some(unsupported(
            "the body has no Content-Type: send `application/json` (UTF-8)".to_owned(),
        )),
    }
}

/// Answers 415 to a body that is not plain JSON, and 400 to JSON with a repeated key; passes
/// everything else on. The body has been read into memory already (see `body_limit`).
pub async fn check<E: Endpoint>(next: E, mut req: Request) -> Result<Response> {
    let body = req.take_body().into_bytes().await?;
    if let Some(problem) = media_problem(&req, !body.is_empty()) {
        let mut response = problem.into_response();
        if response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            // RFC 9110 15.5.16: say which codings would have been accepted.
            response
                .headers_mut()
                .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
        return Ok(response);
    }
    if let Some(key) = repeated_key(&body) {
        return Ok(Problem::bad_request(format!(
            "the JSON body has the key `{key}` twice in one object: send each key once"
        ))
        .into_response());
    }
    req.set_body(body);
    Ok(next.call(req).await?.into_response())
}

/// The first key that appears twice in one object of `json`, at any depth. Malformed JSON
/// gives None: the body's parser reports that in its own words.
pub fn repeated_key(json: &[u8]) -> Option<String> {
    let found = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let _ = Scan { found: &found }.deserialize(&mut deserializer);
    found.into_inner()
}

/// Walks a JSON value, stopping at the first repeated key (recorded in `found`).
#[derive(Clone, Copy)]
struct Scan<'a> {
    found: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) {
                *self.found.borrow_mut() = Some(key);
                return Err(de::Error::custom("repeated key"));
            }
            map.next_value_seed(self)?;
            keys.insert(key);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_repeated_in_any_object_is_found_and_distinct_keys_are_not() {
        assert_eq!(repeated_key(br#"{"a":1,"a":2}"#), Some("a".into()));
        assert_eq!(
            repeated_key(br#"{"x":[{"b":1},{"c":{"d":1,"d\u0000":2,"d":3}}]}"#),
            Some("d".into())
        );
        assert_eq!(
            repeated_key(br#"{"post_id":1,"post\u005fid":2}"#),
            Some("post_id".into())
        );
        assert_eq!(repeated_key(br#"{"a":{"a":1},"b":[1,"a"]}"#), None);
        assert_eq!(repeated_key(br#"{"a":"#), None);
    }

    #[test]
    fn only_application_json_in_utf8_is_plain_json() {
        for accepted in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(is_plain_json(accepted), "{accepted}");
        }
        for refused in [
            "application/merge-patch+json",
            "application/json; charset=iso-8859-1",
            "application/json; boundary=x",
            "text/json",
            "application/jsonx",
        ] {
            assert!(!is_plain_json(refused), "{refused}");
        }
    }
}
