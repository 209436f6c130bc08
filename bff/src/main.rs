//! `dana-bff`: Dana's backend-for-frontend, and the commands that look after its database.

mod app;
mod auth;
mod body;
mod error;
mod metrics;
mod migrate;
mod routes;
mod server;
mod settings;
mod telemetry;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "dana-bff", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the gateway. Settings come from the environment (see README: "BFF settings").
    Serve,
    /// Applies the SQL migrations in order, refusing any applied migration whose file changed.
    Migrate {
        /// PostgreSQL connection URL (as `scripts/dev env` prints it).
        #[arg(long, env = "DB_URL")]
        db_url: String,
        /// Folder of `YYYYMMDDHHMMSS_name.sql` files.
        #[arg(long, default_value = "migrations")]
        dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve => serve().await,
        Command::Migrate { db_url, dir } => {
            let applied = migrate::run(&db_url, &dir).await?;
            if applied.is_empty() {
                println!("migrations: database is up to date");
            }
            for name in applied {
                println!("migrations: applied {name}");
            }
            Ok(())
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let settings = match settings::BffSettings::from_env() {
        Ok(settings) => settings,
        Err(problems) => {
            eprintln!("dana-bff: cannot start. {problems}");
            std::process::exit(2);
        }
    };
    telemetry::init_logs(settings.log_format);
    let listen = settings.listen;
    let app = app::App::new(settings).context("setting up token verification")?;
    let keys = app.verifier.preload().await.context("loading the JWKS")?;
    if keys > 0 {
        tracing::info!(keys, "loaded JWKS signing keys");
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(%listen, postgrest = %app.settings.supabase.postgrest_url, "dana-bff serving");
    server::serve(Arc::new(app), listener, server::shutdown_signal()).await?;
    Ok(())
}
