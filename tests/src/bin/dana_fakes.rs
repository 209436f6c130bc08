//! `dana-fakes auth|slack`: the fakes of Supabase Auth and Slack (see `dana_e2e::fakes`), as
//! servers of their own, for the local stack. Settings come from the environment. These are
//! fakes for development and tests, never for production.

use clap::{Parser, Subcommand};
use dana_e2e::fakes::slack::{FakeSlack, SlackConfig};
use dana_e2e::fakes::supabase_auth::{AuthConfig, FakeAuth};
use std::time::Duration;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    fake: Fake,
}

#[derive(Subcommand)]
enum Fake {
    /// A fake Supabase Auth on `--listen`.
    Auth {
        #[arg(long, env = "FAKE_AUTH_LISTEN", default_value = "127.0.0.1:54324")]
        listen: String,
        #[arg(long, env = "JWT_SECRET")]
        jwt_secret: String,
        /// The database whose auth.users signs in (superuser URL).
        #[arg(long, env = "DB_URL")]
        db_url: String,
        #[arg(
            long,
            env = "FAKE_AUTH_SITE_URL",
            default_value = "http://localhost:3000"
        )]
        site_url: String,
        /// Comma-separated prefixes a redirect_to must start with.
        #[arg(long, env = "FAKE_AUTH_REDIRECT_ALLOW")]
        redirect_allow: String,
        #[arg(long, env = "FAKE_AUTH_ACCESS_TTL_SECS", default_value_t = 3600)]
        access_ttl_secs: u64,
        /// Public base URL of the auth server (the issuer of its tokens).
        #[arg(
            long,
            env = "FAKE_AUTH_ISSUER",
            default_value = "http://127.0.0.1:54321"
        )]
        issuer: String,
    },
    /// A fake Slack on `--listen`.
    Slack {
        #[arg(long, env = "FAKE_SLACK_LISTEN", default_value = "127.0.0.1:54325")]
        listen: String,
        #[arg(long, env = "SLACK_CLIENT_ID")]
        client_id: String,
        #[arg(long, env = "SLACK_CLIENT_SECRET")]
        client_secret: String,
        /// Comma-separated redirect URIs registered for the app.
        #[arg(long, env = "FAKE_SLACK_REDIRECT_URIS")]
        redirect_uris: String,
        /// Token rotation: bot tokens expire after this many seconds (0: no rotation).
        #[arg(long, env = "FAKE_SLACK_ROTATION_SECS", default_value_t = 43200)]
        rotation_secs: u64,
    },
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::main]
async fn main() {
    match Cli::parse().fake {
        Fake::Auth {
            listen,
            jwt_secret,
            db_url,
            site_url,
            redirect_allow,
            access_ttl_secs,
            issuer,
        } => {
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .expect("binding the fake's port");
            FakeAuth::start(
                listener,
                AuthConfig {
                    jwt_secret,
                    db_url,
                    site_url,
                    redirect_allow: list(&redirect_allow),
                    access_ttl: Duration::from_secs(access_ttl_secs),
                    issuer,
                },
            );
            eprintln!("fake Supabase Auth on {listen}");
        }
        Fake::Slack {
            listen,
            client_id,
            client_secret,
            redirect_uris,
            rotation_secs,
        } => {
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .expect("binding the fake's port");
            FakeSlack::start(
                listener,
                SlackConfig {
                    client_id,
                    client_secret,
                    redirect_uris: list(&redirect_uris),
                    rotation: (rotation_secs > 0).then(|| Duration::from_secs(rotation_secs)),
                },
            );
            eprintln!("fake Slack on {listen}");
        }
    }
    tokio::signal::ctrl_c().await.ok();
}
