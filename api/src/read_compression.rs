//! gzip or br for the cacheable reads (the answers that carry an `ETag`) when the client
//! accepts it. poem's own `Compression` middleware is not used: it would also code the
//! event streams of `/v1/live` (buffering them), give 304s a body, inflate coded request
//! bodies past the body limit, and pick a coding the client refused with `q=0`. Here only a
//! 200 or 304 with an `ETag` is touched, and its tag gets the coding's suffix so each
//! representation keeps its own strong validator.

use poem::http::{HeaderMap, HeaderValue, StatusCode, header};
use poem::web::{Compress, CompressionAlgo};
use poem::{Endpoint, IntoResponse, Request, Response, Result};

/// The codings offered, best first at equal `q`.
const OFFERED: [(&str, CompressionAlgo); 2] =
    [("br", CompressionAlgo::BR), ("gzip", CompressionAlgo::GZIP)];

/// Codes the body of a cacheable read when `Accept-Encoding` allows.
pub async fn negotiate<E: Endpoint>(next: E, req: Request) -> Result<Response> {
    let coding = preferred(req.headers());
    let mut resp = next.call(req).await?.into_response();
    let Some((name, algo)) = coding else {
        return Ok(resp);
    };
    let status = resp.status();
    if status != StatusCode::OK && status != StatusCode::NOT_MODIFIED {
        return Ok(resp);
    }
    let Some(tag) = resp
        .headers()
        .get(header::ETAG)
        .and_then(|tag| tag.to_str().ok())
        .and_then(|tag| coded_tag(tag, name))
    else {
        return Ok(resp);
    };
    resp.headers_mut().insert(header::ETAG, tag);
    Ok(if status == StatusCode::OK {
        Compress::new(resp, algo).into_response()
    } else {
        resp
    })
}

/// `"abc"` → `"abc-br"`.
fn coded_tag(tag: &str, coding: &str) -> Option<HeaderValue> {
    let inner = tag.strip_prefix('"')?.strip_suffix('"')?;
    HeaderValue::from_str(&format!("\"{inner}-{coding}\"")).ok()
}

/// The offered coding with the highest `q` above 0 in `Accept-Encoding` (`*` standing for
/// any not named), or None for identity.
fn preferred(headers: &HeaderMap) -> Option<(&'static str, CompressionAlgo)> {
    let mut quality = [None::<f32>; OFFERED.len()];
    let mut star = None::<f32>;
    let listed = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for item in listed {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default();
        let q = parts
            .find_map(|param| {
                param
                    .strip_prefix("q=")
                    .or_else(|| param.strip_prefix("Q="))
            })
            .map_or(Some(1.0), |q| q.parse::<f32>().ok());
        let Some(q) = q else { continue };
        if coding == "*" {
            star = Some(q);
        } else if let Some(at) = OFFERED
            .iter()
            .position(|(name, _)| coding.eq_ignore_ascii_case(name))
        {
            quality[at] = Some(q);
        }
    }
    let mut best: Option<(f32, usize)> = None;
    for (at, q) in quality.iter().enumerate() {
        let q = q.or(star).unwrap_or(0.0);
        if q > 0.0 && best.is_none_or(|(top, _)| q > top) {
            best = Some((q, at));
        }
    }
    best.map(|(_, at)| OFFERED[at])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(accept: &str) -> Option<&'static str> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(accept).expect("a header value"),
        );
        preferred(&headers).map(|(name, _)| name)
    }

    #[test]
    fn the_best_accepted_coding_wins_and_q_zero_refuses_one() {
        assert_eq!(pick("gzip, deflate, br"), Some("br"));
        assert_eq!(pick("gzip"), Some("gzip"));
        assert_eq!(pick("br;q=0.5, gzip;q=0.8"), Some("gzip"));
        assert_eq!(pick("br;q=0, gzip"), Some("gzip"));
        assert_eq!(pick("*;q=0.3, br;q=0"), Some("gzip"));
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("gzip;q=0, br;q=0"), None);
        assert_eq!(pick("zstd"), None);
    }

    #[test]
    fn a_coded_tag_names_its_coding() {
        assert_eq!(
            coded_tag("\"abc\"", "br")
                .as_ref()
                .and_then(|v| v.to_str().ok()),
            Some("\"abc-br\"")
        );
        assert!(coded_tag("W/\"abc\"", "br").is_none());
    }
}
