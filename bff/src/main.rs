//! `dana-bff`: Dana's backend-for-frontend, and the commands that look after its database.

mod app;
mod auth;
mod body;
mod body_limit;
mod db;
mod error;
mod knowledge;
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
    /// Creates the knowledge-files bucket unless it exists (storage settings from the environment).
    EnsureBucket,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve => serve(),
        Command::Migrate { db_url, dir } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let applied = runtime.block_on(migrate::run(&db_url, &dir))?;
            if applied.is_empty() {
                println!("migrations: database is up to date");
            }
            for name in applied {
                println!("migrations: applied {name}");
            }
            Ok(())
        }
        Command::EnsureBucket => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let store = storage_from_env()?;
            let created = runtime.block_on(store.ensure_bucket())?;
            println!(
                "storage: bucket {} {}",
                store.bucket(),
                if created { "created" } else { "exists" }
            );
            Ok(())
        }
    }
}

/// The storage settings alone, for the commands that need nothing else.
fn storage_from_env() -> anyhow::Result<dana_storage::KnowledgeStore> {
    let mut env = dana_supabase::EnvReader::from_process_env();
    let storage = settings::read_storage(&mut env);
    let storage = env.finish(storage).map_err(|e| anyhow::anyhow!("{e}"))?;
    let storage = storage.ok_or_else(|| anyhow::anyhow!("STORAGE_S3_URL is not set"))?;
    Ok(dana_storage::KnowledgeStore::new(&storage))
}

fn serve() -> anyhow::Result<()> {
    let settings = match settings::BffSettings::from_env() {
        Ok(settings) => settings,
        Err(problems) => {
            eprintln!("dana-bff: cannot start. {problems}");
            std::process::exit(2);
        }
    };
    let _log_writer = telemetry::init_logs(settings.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.worker_threads)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listen = settings.listen;
        let workers = settings.worker_threads;
        let app = app::App::new(settings).context("setting up token verification")?;
        let keys = app.verifier.preload().await.context("loading the JWKS")?;
        if keys > 0 {
            tracing::info!(keys, "loaded JWKS signing keys");
        }
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        tracing::info!(%listen, workers, postgrest = %app.settings.supabase.postgrest_url, "dana-bff serving");
        server::serve(Arc::new(app), listener, server::shutdown_signal()).await?;
        Ok(())
    })
}
