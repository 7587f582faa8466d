//! `tally-updater reconcile --fix` as a role without the updater's grants names the role it
//! needs and what it may not do, instead of a bare "permission denied", and repairs nothing.

use tally_tests::process::binary;
use tally_tests::{TestApp, postgres};

#[tokio::test]
async fn reconcile_fix_as_the_api_role_names_the_role_it_needs() {
    // Arrange: a post whose count drifts, so --fix would have something to write.
    let app = TestApp::spawn_without_updater().await;
    let post = app.create_post("alice").await;
    app.db
        .execute(
            "INSERT INTO post_counts (post_id, likes) VALUES ($1::text::uuid, 7)",
            &[&post],
        )
        .await
        .expect("damaging the count");

    // Act: the api's role reads post_counts but may not write it, nor read the outbox.
    let output = tokio::process::Command::new(binary("tally-updater"))
        .args(["reconcile", "--fix"])
        .env("DATABASE_URL", postgres().url_as("tally_api", &app.db_name))
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("running tally-updater reconcile");

    // Assert
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    for needle in [
        "role tally_api may not",
        "UPDATE post_counts",
        "SELECT outbox",
        "reconcile --fix needs the grants of tally_updater",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in: {stderr}");
    }
    assert!(!stderr.contains("db error"), "{stderr}");
    assert_eq!(
        app.scalar_i64(&format!(
            "SELECT likes FROM post_counts WHERE post_id = '{post}'"
        ))
        .await,
        7
    );

    app.stop().await;
}
