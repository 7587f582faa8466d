//! Startup checks on an ordinary Postgres connection: `wal_level` is `logical`, the
//! publication exists (created when missing and allowed), and the logical slot exists
//! (created when missing). pgwire-replication creates neither.

use tokio_postgres::error::SqlState;
use tracing::instrument;

use crate::config::Config;
use crate::error::RelayError;
use crate::outbox::OutboxEvent;
use crate::publisher::Publisher;

/// Makes the database ready to stream: checks `wal_level`, ensures the publication and slot.
/// Returns whether this call created the slot.
#[instrument(skip(config), fields(slot = %config.slot, publication = %config.publication))]
pub async fn prepare(config: &Config) -> Result<bool, RelayError> {
    let pg = config.postgres()?;
    let (client, connection) = pg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(RelayError::PostgresConnect)?;
    let connection = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "setup connection closed");
        }
    });
    let result = prepare_on(&client, config).await;
    drop(client);
    // The connection task ends once the client is gone; waiting closes it politely.
    let _ = connection.await;
    result
}

async fn prepare_on(client: &tokio_postgres::Client, config: &Config) -> Result<bool, RelayError> {
    check_wal_level(client).await?;
    check_replication_role(client).await?;
    ensure_publication(client, &config.publication).await?;
    ensure_slot(client, &config.slot).await
}

async fn check_wal_level(client: &tokio_postgres::Client) -> Result<(), RelayError> {
    let row = client
        .query_one("SELECT current_setting('wal_level')", &[])
        .await
        .map_err(|source| RelayError::Postgres {
            doing: "reading wal_level",
            source,
        })?;
    let found: String = row.get(0);
    if found == "logical" {
        Ok(())
    } else {
        Err(RelayError::WalLevel { found })
    }
}

async fn check_replication_role(client: &tokio_postgres::Client) -> Result<(), RelayError> {
    let row = client
        .query_one(
            "SELECT current_user::text, rolreplication OR rolsuper FROM pg_roles \
             WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|source| RelayError::Postgres {
            doing: "reading the role's REPLICATION attribute",
            source,
        })?;
    let role: String = row.get(0);
    let allowed: bool = row.get(1);
    if allowed {
        Ok(())
    } else {
        Err(RelayError::NoReplication { role })
    }
}

async fn ensure_publication(
    client: &tokio_postgres::Client,
    publication: &str,
) -> Result<(), RelayError> {
    let query = |doing| move |source| RelayError::Postgres { doing, source };
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(query("looking up the publication"))?
        .is_some();
    if !exists {
        // The name was checked to be a plain lower-case identifier, so it needs no quoting.
        let create =
            format!("CREATE PUBLICATION {publication} FOR TABLE outbox WITH (publish = 'insert')");
        match client.batch_execute(&create).await {
            Ok(()) => tracing::info!("created publication"),
            // Another relay created it first.
            Err(err) if err.code() == Some(&SqlState::DUPLICATE_OBJECT) => {}
            Err(source)
                if matches!(
                    source.code(),
                    Some(&SqlState::INSUFFICIENT_PRIVILEGE) | Some(&SqlState::UNDEFINED_TABLE)
                ) =>
            {
                return Err(RelayError::PublicationMissing {
                    publication: publication.to_owned(),
                    source,
                });
            }
            Err(source) => {
                return Err(RelayError::Postgres {
                    doing: "creating the publication",
                    source,
                });
            }
        }
    }
    let has_outbox = client
        .query_opt(
            "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND tablename = 'outbox'",
            &[&publication],
        )
        .await
        .map_err(query("checking the publication's tables"))?
        .is_some();
    if !has_outbox {
        tracing::warn!(
            "the publication does not include the outbox table: nothing will be relayed"
        );
    }
    Ok(())
}

async fn ensure_slot(client: &tokio_postgres::Client, slot: &str) -> Result<bool, RelayError> {
    let mut created = false;
    let lookup = "SELECT slot_type, plugin, database::text, current_database()::text, \
                  confirmed_flush_lsn::text \
                  FROM pg_replication_slots WHERE slot_name = $1";
    let mut row =
        client
            .query_opt(lookup, &[&slot])
            .await
            .map_err(|source| RelayError::Postgres {
                doing: "looking up the replication slot",
                source,
            })?;
    if row.is_none() {
        let creation = client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&slot],
            )
            .await;
        match creation {
            Ok(created_row) => {
                let lsn: String = created_row.get(0);
                created = true;
                tracing::info!(%lsn, "created replication slot");
            }
            // Another relay created it first.
            Err(err) if err.code() == Some(&SqlState::DUPLICATE_OBJECT) => {}
            Err(source) => {
                return Err(RelayError::Postgres {
                    doing: "creating the replication slot",
                    source,
                });
            }
        }
        row = client
            .query_opt(lookup, &[&slot])
            .await
            .map_err(|source| RelayError::Postgres {
                doing: "looking up the replication slot",
                source,
            })?;
    }
    let Some(row) = row else {
        // Dropped again between creating and looking: the next session will say so.
        return Ok(created);
    };
    let kind: String = row.get(0);
    let plugin: Option<String> = row.get(1);
    let database: Option<String> = row.get(2);
    let current: String = row.get(3);
    let confirmed: Option<String> = row.get(4);
    if kind != "logical"
        || plugin.as_deref() != Some("pgoutput")
        || database.as_deref() != Some(current.as_str())
    {
        return Err(RelayError::SlotMismatch {
            slot: slot.to_owned(),
            kind,
            plugin,
            database,
        });
    }
    tracing::info!(confirmed_flush_lsn = ?confirmed, "replication slot ready");
    Ok(created)
}

/// Publishes every outbox row committed before the slot existed, right after creating it:
/// the slot streams only what commits after its consistent point, and rows the api wrote
/// before the first relay started would otherwise never be relayed. Rows read here that the
/// slot streams too carry the same `Nats-Msg-Id`, so JetStream drops the second copy.
/// On failure the slot is dropped again, so the next attempt creates it and backfills anew.
#[instrument(skip_all, fields(slot = %config.slot))]
pub async fn backfill(config: &Config, publisher: &Publisher) -> Result<u64, RelayError> {
    let (client, connection) = config
        .postgres()?
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(RelayError::PostgresConnect)?;
    let connection = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "backfill connection closed");
        }
    });
    let result = backfill_on(&client, config, publisher).await;
    if result.is_err() {
        let dropped = client
            .execute("SELECT pg_drop_replication_slot($1)", &[&config.slot])
            .await;
        if let Err(err) = dropped {
            tracing::error!(error = %err, "the backfill failed and the new slot could not be dropped: rows written before it may never be relayed");
        }
    }
    drop(client);
    let _ = connection.await;
    result
}

async fn backfill_on(
    client: &tokio_postgres::Client,
    config: &Config,
    publisher: &Publisher,
) -> Result<u64, RelayError> {
    let rows = client
        .query(
            "SELECT event_id::text, event_type, subject, payload::text, headers::text \
             FROM outbox ORDER BY created_at",
            &[],
        )
        .await
        .map_err(|source| RelayError::Postgres {
            doing: "reading the outbox written before the slot",
            source,
        })?;
    let mut pending = std::collections::VecDeque::new();
    let mut published = 0u64;
    for row in &rows {
        let headers: Option<String> = row.get(4);
        let event = OutboxEvent::new(
            row.get(0),
            row.get::<_, &str>(1),
            row.get(2),
            bytes::Bytes::from(row.get::<_, String>(3)),
            headers.as_deref().map(str::as_bytes),
        );
        let event_id = event.event_id.clone();
        pending.push_back((event_id, publisher.publish(event).await?));
        if pending.len() >= config.max_in_flight {
            published += await_ack(pending.pop_front()).await?;
        }
    }
    while !pending.is_empty() {
        published += await_ack(pending.pop_front()).await?;
    }
    if published > 0 {
        tracing::info!(
            published,
            "published the outbox rows written before the slot existed"
        );
    }
    Ok(published)
}

async fn await_ack(
    pending: Option<(String, async_nats::jetstream::context::PublishAckFuture)>,
) -> Result<u64, RelayError> {
    let Some((event_id, ack)) = pending else {
        return Ok(0);
    };
    ack.await
        .map(|_| 1)
        .map_err(|source| RelayError::Ack { event_id, source })
}
