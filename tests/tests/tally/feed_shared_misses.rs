//! Concurrent feed reads that miss the same posts share one query: a cold page read by many
//! readers at once costs Postgres one lookup per post, not one per reader.

use std::time::Duration;

use reqwest::StatusCode;
use tally_tests::TestApp;

#[tokio::test]
async fn concurrent_cold_reads_of_the_same_posts_share_one_query() {
    // Arrange: three posts never read; the posts table held by a lock, so the first read's
    // query waits until every reader has missed.
    let app = TestApp::spawn_with_api(|config| {
        config.counts_cache_ttl = Duration::from_secs(600);
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.create_post("alice").await);
    }
    let path = format!("/v1/posts?ids={}", ids.join(","));
    const READERS: u64 = 8;
    app.db
        .batch_execute("BEGIN; LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("locking the posts");

    // Act
    let reads = futures::future::join_all((0..READERS).map(|_| app.get_json(&path, None)));
    let release = async {
        let all_missed = TestApp::eventually(Duration::from_secs(10), || async {
            let misses = app
                .counter("tally_api_counts_cache_lookups_total{result=\"miss\"}")
                .await;
            (misses == Some(READERS * 3)).then_some(())
        })
        .await;
        app.db.batch_execute("ROLLBACK").await.expect("unlocking");
        all_missed
    };
    let (answers, all_missed) = tokio::join!(reads, release);

    // Assert
    assert!(all_missed.is_some(), "the readers never all missed");
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["posts"].as_array().map(Vec::len), Some(3), "{body}");
    }
    assert_eq!(
        app.counter("tally_api_counts_cache_queries_total").await,
        Some(1)
    );

    app.stop().await;
}
