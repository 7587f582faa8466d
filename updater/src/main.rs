//! The `tally-updater` binary: applies the event stream to `post_counts` until SIGTERM, or
//! with `reconcile` checks (and with `--fix` repairs) the counts against the source tables.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use tally_runtime::instance::LogFormat;
use tally_updater::reconcile::ReconcileError;
use tally_updater::{Command, ReconcileArgs, Updater, reconcile};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let command = Command::from_env_or_exit();
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        );
    match &command {
        // A run is one replica among several: its lines say which.
        Command::Run(config) => logs
            .event_format(LogFormat::new(
                config.instance.clone(),
                tracing_subscriber::fmt::format(),
            ))
            .init(),
        Command::Reconcile(_) => logs.init(),
    }
    match command {
        Command::Run(config) => {
            tracing::info!(?config, "starting");
            let updater = Updater::build(config).await?;
            updater.run_until_stopped(shutdown_signal()).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reconcile(args) => Ok(match run_reconcile(args).await {
            Ok(code) => code,
            Err(err) => {
                // The message names what to do (e.g. the role to run as); a bare error and
                // exit 1 would read as "drift found".
                eprintln!("tally-updater reconcile: {err:#}");
                let no_such_post = matches!(
                    err.downcast_ref::<ReconcileError>(),
                    Some(ReconcileError::NoSuchPost(_))
                );
                ExitCode::from(if no_such_post { 2 } else { 3 })
            }
        }),
    }
}

/// Prints the drift on stdout; exit code 1 when drift remains (found and not repaired), 2
/// when `--post` names no post, 3 when it could not run (connection, grants, database).
async fn run_reconcile(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let (mut client, connection) =
        tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
            .await
            .context("connecting to DATABASE_URL")?;
    tokio::spawn(connection);
    let options = reconcile::Options {
        post: args.post,
        fix: args.fix,
        inbox_retention: args.inbox_retention,
        progress: std::io::stderr().is_terminal(),
    };
    let report = match reconcile::reconcile(&mut client, &options).await {
        Ok(report) => report,
        // Complete messages by themselves: no context to add.
        Err(err @ (ReconcileError::NoSuchPost(_) | ReconcileError::PermissionDenied { .. })) => {
            return Err(err.into());
        }
        Err(err) => return Err(anyhow::Error::new(err).context("reconciling")),
    };
    for drift in &report.drift {
        println!("drift {drift}");
    }
    println!(
        "checked {} posts: {} in drift, {} repaired",
        report.checked,
        report.drift.len(),
        report.fixed
    );
    if report.drift.len() as u64 > report.fixed {
        Ok(ExitCode::from(1))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// Resolves on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = ctrl_c.await;
        return;
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown signal received: finishing the batch in flight");
}
