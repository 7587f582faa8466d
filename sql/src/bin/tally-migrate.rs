//! `tally-migrate`: brings the database named by DATABASE_URL to the newest schema.
//! Run it as the schema owner (a superuser in development): it creates the service roles.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .context("DATABASE_URL is not set: point it at the database to migrate, as its owner")?;
    let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .context("could not connect to DATABASE_URL")?;
    let connection = tokio::spawn(connection);
    tally_sql::migrate(&mut client)
        .await
        .map_err(|err| anyhow::anyhow!("{err}: {}", source_chain(&err)))?;
    drop(client);
    let _ = connection.await;
    println!("database schema is up to date");
    Ok(())
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = err.source();
    while let Some(inner) = source {
        parts.push(inner.to_string());
        source = inner.source();
    }
    parts.join(": ")
}
