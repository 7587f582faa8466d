//! The database roles hold only the grants their service needs: a bug (or an attacker) in one
//! service cannot write another service's tables.

use tally_tests::{TestApp, connect, postgres};
use tokio_postgres::error::SqlState;

/// Runs `sql` as `role` on the test's database and returns its SQLSTATE (None: it worked).
async fn attempt(app: &TestApp, role: &str, sql: &str) -> Option<SqlState> {
    let client = connect(&postgres().url_as(role, &app.db_name)).await;
    client.batch_execute(sql).await.err().map(|err| {
        err.code()
            .cloned()
            .unwrap_or_else(|| panic!("{role} running {sql}: {err}"))
    })
}

async fn assert_denied(app: &TestApp, role: &str, sql: &str) {
    assert_eq!(
        attempt(app, role, sql).await,
        Some(SqlState::INSUFFICIENT_PRIVILEGE),
        "{role} should not be allowed to run: {sql}"
    );
}

async fn assert_allowed(app: &TestApp, role: &str, sql: &str) {
    assert_eq!(
        attempt(app, role, sql).await,
        None,
        "{role} should be allowed to run: {sql}"
    );
}

const POST: &str = "00000000-0000-7000-8000-000000000001";

#[tokio::test]
async fn the_api_role_cannot_write_counts_or_the_updaters_ledger() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act and assert
    assert_denied(
        &app,
        "tally_api",
        &format!("INSERT INTO post_counts (post_id, likes, comments) VALUES ('{POST}', 1000, 0)"),
    )
    .await;
    assert_denied(
        &app,
        "tally_api",
        "UPDATE post_counts SET likes = likes + 1",
    )
    .await;
    assert_denied(&app, "tally_api", "DELETE FROM inbox").await;
    assert_denied(&app, "tally_api", "DELETE FROM dead_letters").await;
    assert_denied(&app, "tally_api", "DELETE FROM outbox").await;
    assert_denied(&app, "tally_api", "UPDATE outbox SET subject = 'x'").await;
    // What it needs still works.
    assert_allowed(&app, "tally_api", "SELECT likes FROM post_counts LIMIT 1").await;

    app.stop().await;
}

#[tokio::test]
async fn the_updater_role_cannot_write_likes_comments_posts_or_the_outbox() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act and assert
    assert_denied(
        &app,
        "tally_updater",
        &format!("INSERT INTO posts (post_id, author_id) VALUES ('{POST}', 'mallory')"),
    )
    .await;
    assert_denied(
        &app,
        "tally_updater",
        &format!("INSERT INTO likes (post_id, user_id) VALUES ('{POST}', 'mallory')"),
    )
    .await;
    assert_denied(&app, "tally_updater", "DELETE FROM likes").await;
    assert_denied(&app, "tally_updater", "DELETE FROM comments").await;
    assert_denied(&app, "tally_updater", "DELETE FROM outbox").await;
    // What it needs still works.
    assert_allowed(&app, "tally_updater", "SELECT count(*) FROM inbox").await;

    app.stop().await;
}

#[tokio::test]
async fn the_relay_role_can_only_read_the_outbox() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act and assert
    assert_allowed(&app, "tally_relay", "SELECT count(*) FROM outbox").await;
    assert_denied(&app, "tally_relay", "DELETE FROM outbox").await;
    assert_denied(&app, "tally_relay", "UPDATE outbox SET subject = 'x'").await;
    assert_denied(
        &app,
        "tally_relay",
        "INSERT INTO outbox (event_id, event_type, subject, post_id, payload) \
         VALUES (gen_random_uuid(), 'like.added', 'tally.like.added.x', gen_random_uuid(), '{}')",
    )
    .await;
    assert_denied(&app, "tally_relay", "SELECT count(*) FROM likes").await;
    assert_denied(&app, "tally_relay", "SELECT count(*) FROM comments").await;
    assert_denied(&app, "tally_relay", "UPDATE post_counts SET likes = 0").await;

    app.stop().await;
}
