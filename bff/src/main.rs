//! `dana-bff`: Dana's backend-for-frontend, and the commands that look after its database.

mod migrate;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "dana-bff", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        Command::Migrate { db_url, dir } => {
            let applied = migrate::run(&db_url, &dir).await?;
            if applied.is_empty() {
                println!("migrations: database is up to date");
            }
            for name in applied {
                println!("migrations: applied {name}");
            }
        }
    }
    Ok(())
}
