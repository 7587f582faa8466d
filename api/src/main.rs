//! The `tally-api` binary: serves the REST api, or prints a dev token or the OpenAPI spec.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tally_api::{Application, Config, auth::TokenKeys};
use tally_runtime::instance::LogFormat;

#[derive(Parser)]
#[command(version, about = "tally's REST api")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the api (the default). Boxed: the configuration dwarfs the other commands.
    Serve(Box<Config>),
    /// Print a bearer token for USER_ID, signed with TALLY_JWT_SECRET.
    Token {
        /// The user id to put in the token's `sub`.
        user_id: String,
        /// How long the token is valid, in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl_secs: u64,
        #[arg(
            long,
            env = "TALLY_JWT_SECRET",
            value_name = "TALLY_JWT_SECRET",
            hide_env_values = true
        )]
        jwt_secret: String,
    },
    /// Print the OpenAPI spec the api serves at /openapi.json.
    Openapi,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Serve(config)) => serve(*config).await,
        None => serve(Config::from_env_or_exit()).await,
        Some(Command::Token {
            user_id,
            ttl_secs,
            jwt_secret,
        }) => {
            let token = TokenKeys::hs256(jwt_secret.as_bytes())
                .issue(&user_id, Duration::from_secs(ttl_secs))
                .context("signing the token")?;
            println!("{token}");
            Ok(())
        }
        Some(Command::Openapi) => {
            println!("{}", tally_api::spec_json());
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let format = tracing_subscriber::fmt::format();
    tracing_subscriber::fmt()
        .event_format(LogFormat::new(config.instance.clone(), format))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,poem=warn".into()),
        )
        .init();
    tracing::info!(?config, "starting");
    let app = Application::build(config).await?;
    app.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("stopped cleanly");
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
    tracing::info!("shutdown signal received: finishing in-flight requests");
}
