//! `tally-updater reconcile --post ID` for an id that is no post says so and exits 2, rather
//! than reporting one post checked and no drift.

use tally_tests::process::binary;
use tally_tests::{TestApp, postgres};

#[tokio::test]
async fn reconcile_of_a_post_that_does_not_exist_says_so_and_exits_2() {
    // Arrange: a real post, so the database is not empty, and an id that is none.
    let app = TestApp::spawn().await;
    app.create_post("alice").await;
    let missing = uuid::Uuid::now_v7();

    // Act
    let output = tokio::process::Command::new(binary("tally-updater"))
        .args(["reconcile", "--post", &missing.to_string()])
        .env(
            "DATABASE_URL",
            postgres().url_as("tally_updater", &app.db_name),
        )
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("running tally-updater reconcile");

    // Assert
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("there is no post {missing}")),
        "{stderr}"
    );
    assert!(!stdout.contains("checked"), "{stdout}");

    app.stop().await;
}
