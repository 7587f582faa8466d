//! The `tally-updater` binary: applies the event stream to `post_counts` until SIGTERM, or
//! with `reconcile` checks (and with `--fix` repairs) the counts against the source tables.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use tally_sql::instance::LogFormat;
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
        Command::Reconcile(args) => run_reconcile(args).await,
    }
}

/// Prints the drift on stdout; exit code 1 when drift remains (found and not repaired).
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
    let report = reconcile::reconcile(&mut client, &options)
        .await
        .context("reconciling")?;
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
