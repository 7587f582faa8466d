//! The `tally-relay` binary: reads its configuration from the environment and relays the
//! outbox to JetStream until SIGTERM or ctrl-c.

use anyhow::Context;
use tally_relay::{Config, Relay};
use tally_runtime::instance::LogFormat;

// One thread: the relay's tasks (the replication reader, the session, the NATS connection,
// the ack task) hand each event from one to the next, and on one thread those hand-offs are
// queue pushes rather than wake-ups of a parked worker thread; the connection task then also
// writes many publishes per syscall. The heavy work (decoding in walsender, storing in
// nats-server) runs in those processes anyway.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_args().context("reading the configuration")?;
    let format = tracing_subscriber::fmt::format();
    tracing_subscriber::fmt()
        .event_format(LogFormat::new(config.instance.clone(), format))
        .with_env_filter(
            // pgwire-replication logs every failed session at ERROR, standing by included;
            // the relay logs each with its meaning and fix, once.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,pgwire_replication=off".into()),
        )
        .init();
    tracing::info!(?config, "starting");
    let relay = Relay::build(config).await.context("starting the relay")?;
    relay.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}

/// Resolves on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(err) => {
                    tracing::error!(error = %err, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received: confirming what JetStream acknowledged");
}
