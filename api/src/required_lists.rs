//! Required comma-separated query lists (`explode: false`), checked before poem-openapi
//! sees the request: poem-openapi 5 panics on such a parameter when it is absent (an
//! `unwrap` in its query extractor), which would make a client's mistake a 500. A list
//! sent as repeated parameters (`ids=a&ids=b`, what openapi-fetch sends by default) is
//! refused too: poem-openapi would silently read only the first.

use poem::{Endpoint, IntoResponse, Request, Response, Result};

use crate::problem::Problem;

/// (method, path, parameter) of every operation with a required `explode: false` list.
const REQUIRED_LISTS: &[(&str, &str, &str)] =
    &[("GET", "/v1/posts", "ids"), ("GET", "/v1/live", "ids")];

/// Answers 400 when a required list parameter is missing or repeated; passes everything
/// else on.
pub async fn check<E: Endpoint>(next: E, req: Request) -> Result<Response> {
    let path = req.uri().path().trim_end_matches('/');
    for (method, list_path, parameter) in REQUIRED_LISTS {
        if req.method().as_str() == *method && path == *list_path {
            let query = req.uri().query().unwrap_or_default();
            let occurrences = query
                .split('&')
                .filter(|pair| pair.split('=').next() == Some(*parameter))
                .count();
            if occurrences > 1 {
                return Ok(Problem::bad_request(format!(
                    "the query parameter `{parameter}` was given {occurrences} times: send it \
                     once, comma-separated (e.g. {parameter}=a,b,c)"
                ))
                .into_response());
            }
            if occurrences == 0 {
                return Ok(Problem::bad_request(format!(
                    "the query parameter `{parameter}` is required (comma-separated, e.g. \
                     {parameter}=a,b,c)"
                ))
                .into_response());
            }
        }
    }
    Ok(next.call(req).await?.into_response())
}
