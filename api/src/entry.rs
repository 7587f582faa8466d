//! The api's front door: the spec and the docs through a router, every other request
//! straight to the operations. A router nesting the operations at `/` would copy and
//! re-validate every request's URI on the way in, and a feed read's is 2 kB of ids.

use poem::{Endpoint, IntoResponse, Request, Response, Result};

/// `operations` answers everything but `/openapi.json` and `/docs…`, which `pages` answers.
pub struct Entry<O, P> {
    pub operations: O,
    pub pages: P,
}

impl<O: Endpoint, P: Endpoint> Endpoint for Entry<O, P> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let path = req.uri().path();
        if path == "/openapi.json" || path == "/docs" || path.starts_with("/docs/") {
            self.pages.call(req).await.map(IntoResponse::into_response)
        } else {
            self.operations
                .call(req)
                .await
                .map(IntoResponse::into_response)
        }
    }
}

impl<O, P> std::fmt::Debug for Entry<O, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").finish_non_exhaustive()
    }
}
