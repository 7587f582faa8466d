//! Applies the embedded migrations in `sql/migrations` to a database.

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("could not take the migration lock")]
    Lock(#[source] tokio_postgres::Error),
    #[error("applying migrations failed")]
    Apply(#[source] refinery::Error),
}

/// Arbitrary but fixed: serializes concurrent migrators of one database.
const MIGRATION_LOCK: i64 = 0x7461_6c6c_795f_6d69;

/// Brings the database to the newest schema. Safe to call from several processes at once:
/// a session advisory lock makes them take turns, and refinery skips applied versions.
///
/// The connected role must own the schema and be allowed to create roles with REPLICATION
/// (a superuser in practice), since the first migration creates the service roles.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(MigrateError::Lock)?;
    let applied = embedded::migrations::runner()
        .run_async(client)
        .await
        .map(|_| ())
        .map_err(MigrateError::Apply);
    // The lock is session-scoped, so a failed unlock only lasts until the connection closes.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    applied
}
