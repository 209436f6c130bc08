//! Helpers shared by the end-to-end tests. They run against the local stack that
//! `scripts/dev test` brings up, configured by the variables `scripts/dev env` prints.

pub mod processes;
pub mod tokens;

use tokio_postgres::{Client, NoTls};

/// A setting from the environment, with a message that says how to get it.
pub fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `scripts/dev test` (or `set -a; eval \"$(scripts/dev env)\"`)")
    })
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

/// The demo users of `seeds/seed.sql`.
pub mod demo {
    pub const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
    pub const BOB: &str = "b0b00000-0000-4000-8000-000000000002";
    pub const ADMIN: &str = "ad000000-0000-4000-8000-000000000003";
    pub const TENANT_DEMO: &str = "10000000-0000-4000-8000-000000000001";
    pub const TENANT_OTHER: &str = "20000000-0000-4000-8000-000000000002";
}
