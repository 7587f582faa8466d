//! A hot post does not flood its viewers: one stream gets at most `TALLY_LIVE_MAX_PER_SEC`
//! events per second for it, each carrying the newest counts, and the last one the final
//! counts.

use std::time::{Duration, Instant};

use reqwest::Method;
use tally_tests::TestApp;

const LIKES: usize = 200;
const WAVE: usize = 5;
/// The default `TALLY_LIVE_MAX_PER_SEC`.
const MAX_PER_SEC: u32 = 4;

#[tokio::test]
async fn a_hot_post_gives_a_viewer_at_most_the_rate_and_ends_on_the_final_counts() {
    // Arrange
    let app = TestApp::spawn_with_api(|config| config.live_max_per_sec = MAX_PER_SEC).await;
    let post = app.create_post("alice").await;
    let mut stream = app.live(&[&post]).await;
    let first = stream.next_event(Duration::from_secs(20)).await;
    assert!(first.is_some_and(|(event, _, data)| event == "counts" && data["likes"] == 0));
    let started = Instant::now();

    // Act: LIKES users like it in waves of five, a wave every few tens of milliseconds (so
    // the updater commits many times a second), while the stream reads.
    let likes = async {
        for wave in 0..LIKES / WAVE {
            futures::future::join_all((0..WAVE).map(|i| {
                let user = format!("fan-{}", wave * WAVE + i);
                let (app, post) = (&app, &post);
                async move { app.like(&user, post).await }
            }))
            .await;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    };
    let reading = stream.counts_until(Duration::from_secs(60), |counts| {
        counts["likes"] == LIKES as i64
    });
    let (_, (seen, arrived)) = tokio::join!(likes, reading);
    let elapsed = started.elapsed();

    // Assert: every event newer than the one before, the last the final counts, and no more
    // events than the rate allows over the time they took.
    assert!(arrived, "the final counts never arrived: {seen:?}");
    let counts: Vec<i64> = seen.iter().filter_map(|c| c["likes"].as_i64()).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    let allowed = (elapsed.as_secs_f64().ceil() as usize + 1) * MAX_PER_SEC as usize;
    assert!(
        counts.len() <= allowed,
        "{} events in {elapsed:?}: {counts:?}",
        counts.len()
    );
    let metrics = app
        .request(Method::GET, "/metrics", None)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    let coalesced = metrics
        .lines()
        .find_map(|line| line.strip_prefix("tally_api_live_events_coalesced_total "))
        .and_then(|value| value.trim().parse::<f64>().ok());
    assert!(
        coalesced.is_some_and(|n| n > 0.0),
        "{elapsed:?} {counts:?} {metrics}"
    );

    drop(stream);
    app.stop().await;
}
