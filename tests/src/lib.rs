//! Helpers shared by the end-to-end tests. They run against the local stack that
//! `scripts/dev test` brings up, configured by the variables `scripts/dev env` prints.

use tokio_postgres::{Client, NoTls};

/// A setting from the environment, with a message that says how to get it.
pub fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `scripts/dev test` (or `set -a; eval \"$(scripts/dev env)\"`)")
    })
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
