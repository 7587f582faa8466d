//! `GET /v1/live`: a feed's counts, pushed as server-sent events. The route lives here; the
//! fan-out hub (`hub`), the per-connection coalescer (`stream`), the events (`events`) and
//! the NATS subscription with its repairs (`subscriber`) in their own files.

pub mod events;
pub mod hub;
pub mod stream;
pub mod subscriber;

use std::collections::HashSet;

use poem::web::Data;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use tracing::instrument;
use uuid::Uuid;

use crate::examples;
use crate::live::events::{LiveEvent, LiveEvents, LiveMissing};
use crate::live::hub::{Hub, Latest};
use crate::live::stream::Coalescer;
use crate::problem::{Problem, RequestRejected, ServiceError, reject};
use crate::store::Store;
use crate::tags::ApiTags;

/// Seconds a client refused for want of a stream slot should wait.
const FULL_RETRY_SECS: u32 = 5;

/// How fast a live stream may send: `TALLY_LIVE_MAX_PER_SEC`.
#[derive(Debug, Clone, Copy)]
pub struct LiveRate {
    pub max_per_sec: u32,
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "reject")]
pub enum LiveResponse {
    /// The stream: one `counts` event per post found, one `missing` event per id that names
    /// none, then a `counts` event whenever a found post's counts change (at most
    /// `TALLY_LIVE_MAX_PER_SEC` per post, 4 by default, each with the newest counts), and
    /// `: keep-alive` every 15 s. Each `counts` event has an `id`.
    #[oai(status = 200)]
    Ok(LiveEvents),
    /// `ids` is missing, empty, longer than 100 ids, or holds something other than UUIDs.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// `TALLY_LIVE_MAX_CONNECTIONS` streams are open already, or Postgres is unreachable:
    /// retry after the delay in `Retry-After` (seconds).
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    /// A bug: the request was valid but the server failed. Logged with details.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}

impl RequestRejected for LiveResponse {
    fn rejected(problem: Problem) -> Self {
        Self::BadRequest(Json(problem))
    }
}

impl From<ServiceError> for LiveResponse {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Unavailable(problem, retry) => Self::Unavailable(problem, retry),
            ServiceError::Internal(problem) => Self::Internal(problem),
        }
    }
}

/// Live counts.
#[derive(Debug)]
pub struct LiveApi;

#[OpenApi(tag = "ApiTags::Live")]
impl LiveApi {
    /// Follow posts' counts (server-sent events)
    ///
    /// A `text/event-stream` of the counts of the posts named by `ids` (1 to 100,
    /// comma-separated, as `GET /v1/posts` takes them): first their current counts, then
    /// every change, coalesced to at most `TALLY_LIVE_MAX_PER_SEC` events per post. Open it
    /// with an `EventSource`; when it reconnects (sending `Last-Event-ID`) it gets the
    /// current counts again at once. Public: no token needed.
    #[oai(path = "/v1/live", method = "get", operation_id = "live")]
    #[instrument(skip_all, fields(ids = ids.0.len()))]
    async fn live(
        &self,
        store: Data<&Store>,
        hub: Data<&Hub>,
        rate: Data<&LiveRate>,
        /// 1 to 100 post ids, comma-separated.
        #[oai(
            explode = false,
            validator(min_items = 1, max_items = 100),
            example = "examples::feed_ids"
        )]
        ids: Query<Vec<Uuid>>,
        /// Sent by a reconnecting `EventSource`: the last event's `id`. The current counts
        /// come first on every connection, so nothing else depends on it.
        #[oai(name = "Last-Event-ID", example = "examples::last_event_id")]
        last_event_id: Header<Option<String>>,
    ) -> LiveResponse {
        let Some(slot) = hub.try_open() else {
            return full();
        };
        if let Some(last) = last_event_id.0 {
            tracing::debug!(last_event_id = %last, "live stream resumed");
        }
        let mut asked = Vec::with_capacity(ids.0.len());
        for id in ids.0 {
            if !asked.contains(&id) {
                asked.push(id);
            }
        }
        // Watch first, read second: a change committed in between reaches the channel, and
        // the hub keeps whichever of the two is newer.
        let watching: Vec<_> = asked.iter().map(|id| (*id, hub.watch(*id))).collect();
        let rows = match store.live_counts(&asked).await {
            Ok(rows) => rows,
            Err(err) => return ServiceError::from(err).into(),
        };
        let found: HashSet<Uuid> = rows.iter().map(|row| row.post_id).collect();
        for row in rows {
            hub.offer(row.into());
        }
        let (opening, followed) = opening(watching, &found);
        let stream = Coalescer::new(hub.clone(), slot, opening, followed, rate.max_per_sec);
        LiveResponse::Ok(LiveEvents(stream.into_stream()))
    }
}

/// The answer when `TALLY_LIVE_MAX_CONNECTIONS` streams are open.
fn full() -> LiveResponse {
    LiveResponse::Unavailable(
        Json(Problem::new(
            poem::http::StatusCode::SERVICE_UNAVAILABLE,
            "too-many-streams",
            "the api has as many live streams open as it allows; retry after the given delay",
        )),
        FULL_RETRY_SECS,
    )
}

/// The opening events, in the order asked (current counts, or `missing`), and the posts
/// to follow with their channels.
fn opening(
    watching: Vec<(Uuid, Latest)>,
    found: &HashSet<Uuid>,
) -> (Vec<LiveEvent>, Vec<(Uuid, Latest)>) {
    let mut opening = Vec::with_capacity(watching.len());
    let mut followed = Vec::with_capacity(watching.len());
    for (post_id, mut latest) in watching {
        // Found by the read (not by the channel, which another stream may have filled
        // before the post was deleted).
        let current = latest.borrow_and_update().clone();
        match current {
            Some(newest) if found.contains(&post_id) => {
                opening.push(LiveEvent::Counts(newest.counts));
                followed.push((post_id, latest));
            }
            _ => opening.push(LiveEvent::Missing(LiveMissing { post_id })),
        }
    }
    (opening, followed)
}
