//! Postgres round trips per like as the api sends them: a second api, its database traffic
//! through a counting TCP proxy, takes likes one at a time after a warm-up (connections
//! opened, statements prepared). A round trip is the api sending after Postgres last spoke:
//! messages pipelined in one burst count once, as the network sees them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::stack::{JWT_SECRET, Stack};

/// Likes sent before counting, so connection start-up and statement preparation are left out.
const WARM_UP: u64 = 20;
/// Likes counted.
const COUNTED: u64 = 200;

/// Client bursts seen by the proxy, over every connection it carried.
#[derive(Debug, Default)]
struct Bursts(AtomicU64);

/// Accepts connections on `listener` and forwards each to `upstream`, counting bursts.
async fn proxy(listener: TcpListener, upstream: String, bursts: Arc<Bursts>) {
    while let Ok((client, _)) = listener.accept().await {
        let upstream = upstream.clone();
        let bursts = Arc::clone(&bursts);
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(&upstream).await {
                forward(client, server, bursts).await;
            }
        });
    }
}

/// Copies both ways; a client write counts as a new burst when the server spoke last (or
/// never): that is one round trip.
async fn forward(client: TcpStream, server: TcpStream, bursts: Arc<Bursts>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let server_spoke = Arc::new(AtomicBool::new(true));
    let spoke = Arc::clone(&server_spoke);
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = client_read.read(&mut buf).await {
            if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            if spoke.swap(false, Ordering::SeqCst) {
                bursts.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = server_read.read(&mut buf).await {
            if n == 0 || client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            server_spoke.store(true, Ordering::SeqCst);
        }
    };
    tokio::join!(up, down);
}

/// Sends likes `first..first + count` one at a time, each waiting for its answer.
async fn like_one_by_one(
    api_url: &str,
    post_ids: &[String],
    first: u64,
    count: u64,
) -> anyhow::Result<()> {
    let keys = tally_api::auth::TokenKeys::hs256(JWT_SECRET.as_bytes());
    let http = reqwest::Client::new();
    for n in first..first + count {
        let token = keys
            .issue(&format!("round-trip-user-{n}"), Duration::from_secs(600))
            .context("signing a token")?;
        let post = &post_ids[usize::try_from(n)? % post_ids.len()];
        let answer = http
            .post(format!("{api_url}/v1/likes"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "post_id": post }))
            .send()
            .await
            .context("liking through the counted api")?;
        if !answer.status().is_success() {
            bail!("a counted like answered {}", answer.status());
        }
    }
    Ok(())
}

/// Round trips per like, measured on a second api whose Postgres traffic is proxied.
pub async fn per_like(stack: &Stack, post_ids: &[String]) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let proxy_port = listener.local_addr()?.port();
    let bursts = Arc::new(Bursts::default());
    let proxy = tokio::spawn(proxy(listener, stack.pg_addr(), Arc::clone(&bursts)));
    let counted_api = stack
        .spawn_api_via(proxy_port, "tally-api-round-trips")
        .await?;

    like_one_by_one(&counted_api.url, post_ids, 0, WARM_UP).await?;
    let before = bursts.0.load(Ordering::SeqCst);
    like_one_by_one(&counted_api.url, post_ids, WARM_UP, COUNTED).await?;
    let after = bursts.0.load(Ordering::SeqCst);

    drop(counted_api);
    proxy.abort();
    Ok((after - before) as f64 / COUNTED as f64)
}
