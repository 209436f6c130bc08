//! `dana-bff`: Dana's backend-for-frontend, and the commands that look after its database.

mod access_log;
mod app;
mod auth;
mod body;
mod body_limit;
mod commands;
mod db;
mod error;
mod flows;
mod integrations;
mod knowledge;
mod metrics;
mod migrate;
mod proxy;
mod routes;
mod server;
mod session;
mod settings;
mod telemetry;
mod upstream;

#[cfg(test)]
mod allocator_tests {
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // The index is mimalloc.h's; the option after it is named by the bindings.
        assert_eq!(
            libmimalloc_sys::mi_option_use_numa_nodes - 1,
            super::MI_OPTION_PURGE_DELAY
        );
        super::tune_allocator();
        // SAFETY: reads an option.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) },
            0
        );
    }
}

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

/// mimalloc in place of glibc's malloc: see the note in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (v3, as bundled by libmimalloc-sys 0.1.49, which names
/// the options around it but not this one).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory freed back to mimalloc goes back to the OS at once rather than after its default
/// second: a streamed upload frees its buffers as fast as it makes them, and with the delay the
/// BFF's peak RSS over a 1 GiB upload was 69 MiB (52 MiB with none; the target is < 64 MiB).
fn tune_allocator() {
    // SAFETY: sets one of mimalloc's options, which may be done at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

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
    /// Moves files still held base64-encoded in knowledge_files.content_base64 into the bucket.
    /// Safe to stop and run again. Uses BFF_DB_URL and the storage settings.
    BackfillKnowledge {
        /// Rows read per batch.
        #[arg(long, default_value_t = 500)]
        batch: i64,
        /// Files moved at the same time.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Decode and check every row, store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Lists objects without rows, rows without objects, stale pending rows and uploads.
    ReconcileKnowledge {
        /// Settle what is found.
        #[arg(long)]
        fix: bool,
        /// Pending rows and multipart uploads younger than this many seconds are left alone.
        #[arg(long, default_value_t = 3600)]
        stale_after_secs: u64,
    },
}

/// Buffers of at least this size are mapped and unmapped on their own, not carved from malloc's
/// arenas. glibc raises this threshold after the first large buffer is freed, after which the
/// 8 MiB upload parts come from arenas shared by the worker threads and fragment them: a 1 GiB
/// upload then leaves the process at ~90 MB instead of ~35 MB (BENCHMARKS.md).
const MMAP_THRESHOLD: i32 = 1024 * 1024;

fn main() -> anyhow::Result<()> {
    tune_allocator();
    // SAFETY: mallopt only changes an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
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
        Command::BackfillKnowledge {
            batch,
            concurrency,
            dry_run,
        } => {
            let (db, store) = knowledge_from_env()?;
            let options = commands::backfill::BackfillOptions {
                batch: batch.max(1),
                concurrency,
                dry_run,
            };
            run_command(commands::backfill::command(db, store, options))
        }
        Command::ReconcileKnowledge {
            fix,
            stale_after_secs,
        } => {
            let (db, store) = knowledge_from_env()?;
            run_command(commands::reconcile::command(
                db,
                store,
                fix,
                std::time::Duration::from_secs(stale_after_secs),
            ))
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

/// The database (BFF_DB_URL) and the bucket, for the knowledge commands.
fn knowledge_from_env() -> anyhow::Result<(db::Db, dana_storage::KnowledgeStore)> {
    let url = std::env::var("BFF_DB_URL")
        .map_err(|_| anyhow::anyhow!("BFF_DB_URL is not set (the BFF's own database login)"))?;
    Ok((db::Db::new(&url, 20)?, storage_from_env()?))
}

fn run_command(
    work: impl std::future::Future<Output = anyhow::Result<bool>>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let clean = runtime.block_on(work)?;
    if !clean {
        std::process::exit(1);
    }
    Ok(())
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
    // Worker 0's runtime; server::serve starts the others (one current-thread runtime each).
    let runtime = tokio::runtime::Builder::new_current_thread()
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
        server::serve(Arc::new(app), listener, workers, server::shutdown_signal()).await?;
        Ok(())
    })
}
