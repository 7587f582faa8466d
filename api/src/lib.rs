//! tally's REST api: takes posts, likes and comments, writes each change with its outbox event
//! in one Postgres transaction, and serves posts with their denormalized counts.
//!
//! Start it with [`Application::build`] then [`Application::run_until_stopped`]; tests do the
//! same on port 0.

pub mod auth;
pub mod body_limit;
pub mod comments;
pub mod config;
pub mod cors;
pub mod counts_cache;
pub mod cursor;
pub mod entry;
pub mod examples;
pub mod health;
pub mod http_cache;
pub mod http_limits;
pub mod json_body;
pub mod json_bytes;
pub mod liked_cache;
pub mod likes;
pub mod live;
pub mod metrics;
pub mod posts;
pub mod problem;
pub mod read_compression;
pub mod rejections;
pub mod required_lists;
pub mod spec;
pub mod store;
pub mod strict_string;
pub mod tags;
pub mod text_rules;
pub mod trace;
pub mod write_limit;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::middleware::{CatchPanic, Tracing};
use poem::{EndpointExt, IntoEndpoint, Route, Server};
use poem_openapi::OpenApiService;

pub use config::Config;

use crate::auth::{KeyError, TokenKeys};
use crate::comments::CommentsApi;
use crate::cors::Cors;
use crate::counts_cache::CountsCache;
use crate::entry::Entry;
use crate::health::HealthApi;
use crate::http_limits::{LimitedAcceptor, Timeouts};
use crate::liked_cache::LikedCache;
use crate::likes::LikesApi;
use crate::live::hub::Hub;
use crate::live::subscriber::Subscriber;
use crate::live::{LiveApi, LiveRate};
use crate::metrics::Metrics;
use crate::posts::{PostsApi, ReadYourWrites};
use crate::problem::{Problem, render_error};
use crate::store::Store;
use crate::write_limit::WriteLimiter;

/// The largest request body accepted; larger ones get a 413 before any parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The api's name in Postgres' `application_name` (`tally-api/<TALLY_INSTANCE>`).
pub const SERVICE: &str = "tally-api";

/// How long in-flight requests may run after a shutdown signal before they are cut off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the api could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Pool(#[from] store::PoolBuildError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("could not listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The OpenAPI service: every resource's operations, combined.
pub fn api_service() -> OpenApiService<(PostsApi, LikesApi, CommentsApi, LiveApi, HealthApi), ()> {
    OpenApiService::new(
        (PostsApi, LikesApi, CommentsApi, LiveApi, HealthApi),
        "tally",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Likes and comments with exact counts. Writes are durable when answered 2xx; \
             counts converge within the pipeline's lag (well under a second when healthy). \
             Reads are public; writes need `Authorization: Bearer <JWT>` whose `sub` is the \
             user. Every error is an RFC 9457 problem (application/problem+json).",
    )
    .license("Apache-2.0")
}

/// The spec as served at `/openapi.json`, pretty-printed as committed in `openapi/`.
pub fn spec_json() -> String {
    spec::finish(&api_service().spec())
}

/// A handler panicked: answer a 500 problem and keep serving (CatchPanic logs it).
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> poem::Response {
    Problem::internal().into_response()
}

/// A built api, bound to its port and ready to serve.
pub struct Application {
    acceptor: LimitedAcceptor,
    cors: Cors,
    local_addr: SocketAddr,
    store: Store,
    keys: Arc<TokenKeys>,
    read_your_writes: ReadYourWrites,
    counts: CountsCache,
    liked: LikedCache,
    limiter: WriteLimiter,
    metrics: Metrics,
    hub: Hub,
    live_rate: LiveRate,
    nats_url: String,
    client_name: String,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Binds the listener and builds the (lazily connecting) database pool.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let keys = TokenKeys::from_config(&config)?;
        let application_name = config.instance.client_name(SERVICE);
        let (pool_size, like_writers) = store::split_pool_size(config.db_pool_size);
        let pool = store::pool(
            &config.database_url,
            &application_name,
            pool_size,
            config.db_timeout,
        )?;
        let like_writers = store::like_writers_pool(
            &config.database_url,
            &application_name,
            like_writers,
            config.db_timeout,
        )?;
        let bind_error = |source| StartError::Bind {
            addr: config.http_addr,
            source,
        };
        let acceptor = TcpListener::bind(config.http_addr)
            .into_acceptor()
            .await
            .map_err(bind_error)?;
        let local_addr = acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().copied())
            .unwrap_or(config.http_addr);
        let timeouts = Timeouts {
            read: config.http_read_timeout,
            idle: config.http_idle_timeout,
        };
        let metrics = Metrics::new(&config.instance);
        Ok(Self {
            acceptor: LimitedAcceptor::new(acceptor, config.http_max_connections, timeouts),
            cors: Cors::new(config.cors_origins.unwrap_or_default()),
            local_addr,
            store: Store::new(pool, like_writers),
            keys: Arc::new(keys),
            read_your_writes: ReadYourWrites {
                timeout: config.read_your_writes_timeout,
            },
            counts: CountsCache::new(config.counts_cache_ttl, &metrics),
            liked: LikedCache::new(!config.counts_cache_ttl.is_zero()),
            limiter: WriteLimiter::new(config.write_rate_per_sec, config.write_burst),
            hub: Hub::new(config.live_max_connections as usize, metrics.clone()),
            live_rate: LiveRate {
                max_per_sec: config.live_max_per_sec,
            },
            nats_url: config.nats_url,
            client_name: application_name,
            metrics,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
    /// (up to a grace period) and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let service = api_service().server(format!("http://{}", self.local_addr));
        let spec = spec::finish(&service.spec());
        let allowed = spec::AllowedMethods::from_spec(&spec);
        let docs = service.scalar();
        // Users who stopped writing leave the limiter's memory; the task ends with the server.
        let limiter = self.limiter.clone();
        let forget = tokio::spawn(async move {
            let mut every = tokio::time::interval(write_limit::FORGET_INTERVAL);
            loop {
                every.tick().await;
                limiter.forget_idle();
            }
        });
        let live = Subscriber::start(
            self.hub.clone(),
            (self.counts.clone(), self.liked.clone()),
            self.store.clone(),
            &self.nats_url,
            self.client_name.clone(),
        )
        .await;
        // Live streams never finish by themselves: end them when the signal comes, so the
        // graceful shutdown does not wait its whole grace period on them.
        let hub = self.hub.clone();
        let shutdown = async move {
            shutdown.await;
            hub.close();
        };
        let spec = poem::endpoint::make_sync(move |_| {
            poem::Response::builder()
                .content_type("application/json; charset=utf-8")
                .body(spec.clone())
        });
        let app = Entry {
            operations: service.into_endpoint(),
            pages: Route::new().at("/openapi.json", spec).nest("/docs", docs),
        }
        .around(required_lists::check)
        .around(json_body::check)
        .around(read_compression::negotiate)
        // The endpoint's type nests past the compiler's query depth otherwise.
        .boxed()
        .with(body_limit::BodyLimit {
            max: MAX_BODY_BYTES,
        })
        .data(self.store)
        .data(self.keys)
        .data(self.read_your_writes)
        .data(self.counts)
        .data(self.liked)
        .data(self.limiter)
        .data(self.hub.clone())
        .data(self.live_rate)
        .data(self.metrics.clone())
        .catch_all_error(render_error)
        .with(CatchPanic::new().with_handler(panic_response))
        .with(allowed)
        .with(self.cors)
        .with(self.metrics)
        .with(Tracing)
        .with(self.acceptor.request_clock())
        .into_endpoint();
        tracing::info!(addr = %self.local_addr, "api listening");
        let served = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(SHUTDOWN_GRACE))
            .await;
        forget.abort();
        self.hub.close();
        live.stopped().await;
        served
    }
}
