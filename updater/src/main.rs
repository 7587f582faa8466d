//! The `tally-updater` binary: applies the event stream to `post_counts` until SIGTERM.

use tally_updater::{Config, Updater};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env_or_exit();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    tracing::info!(?config, "starting");
    let updater = Updater::build(config).await?;
    updater.run_until_stopped(shutdown_signal()).await;
    Ok(())
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
