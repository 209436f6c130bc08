//! Helpers shared by the end-to-end tests. They run against the local stack, configured by the
//! variables `scripts/dev env` prints: taken from the environment when `scripts/dev test` (or
//! `set -a; eval "$(scripts/dev env)"`) set them, otherwise the harness runs `scripts/dev up`
//! once itself — so a bare `cargo test` works too.

pub mod browser_session;
pub mod fakes;
pub mod processes;
pub mod storage;
pub mod tokens;

use std::collections::HashMap;
use std::sync::OnceLock;
use tokio_postgres::{Client, NoTls};

/// The stack's settings (`scripts/dev env`), starting the stack when none are in the environment.
pub fn stack_env() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        if std::env::var_os("API_URL").is_some() {
            return std::env::vars().collect();
        }
        let dev = repo_path("scripts/dev");
        let up = std::process::Command::new(&dev)
            .arg("up")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("scripts/dev runs");
        assert!(up.success(), "`scripts/dev up` failed");
        let env = std::process::Command::new(&dev)
            .arg("env")
            .output()
            .expect("scripts/dev env runs");
        assert!(env.status.success(), "`scripts/dev env` failed");
        String::from_utf8(env.stdout)
            .expect("UTF-8 settings")
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

/// One of the stack's settings.
pub fn setting(name: &str) -> String {
    stack_env()
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not among `scripts/dev env`'s settings"))
}

/// A path inside the repository.
pub fn repo_path(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// Stack settings the gateway tests use, read once.
pub struct Stack {
    pub api_url: String,
    pub postgrest_url: String,
    pub anon_key: String,
    pub service_role_key: String,
    pub alice_jwt: String,
    pub bob_jwt: String,
}

impl Stack {
    pub fn from_env() -> Self {
        Self {
            api_url: setting("API_URL"),
            postgrest_url: setting("POSTGREST_URL"),
            anon_key: setting("ANON_KEY"),
            service_role_key: setting("SERVICE_ROLE_KEY"),
            alice_jwt: setting("DEMO_ALICE_JWT"),
            bob_jwt: setting("DEMO_BOB_JWT"),
        }
    }
}

/// A superuser connection to the stack's database.
pub async fn connect() -> Client {
    let (client, connection) = tokio_postgres::connect(&setting("DB_URL"), NoTls)
        .await
        .expect("the local stack's PostgreSQL is reachable");
    tokio::spawn(connection);
    client
}

/// The first column of every row of `sql`, as text.
pub async fn strings(db: &Client, sql: &str) -> Vec<String> {
    db.query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The demo users of `seeds/seed.sql`.
pub mod demo {
    pub const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
    pub const BOB: &str = "b0b00000-0000-4000-8000-000000000002";
    pub const ADMIN: &str = "ad000000-0000-4000-8000-000000000003";
    /// The owner of "Other Co": a tenant admin of the *other* tenant.
    pub const OLGA: &str = "0190a000-0000-4000-8000-000000000004";
    /// A platform admin (app_metadata.platform_admin), of no tenant.
    pub const OPS: &str = "0b500000-0000-4000-8000-000000000005";
    pub const TENANT_DEMO: &str = "10000000-0000-4000-8000-000000000001";
    pub const TENANT_OTHER: &str = "20000000-0000-4000-8000-000000000002";
}
