//! `#[pg_test]`s: every SQL function of the extension, error paths included. Each test runs in
//! its own transaction, which is rolled back; roles created here disappear with it.

mod api_keys;
mod claims;
mod integrations;
mod knowledge;
mod rls;
mod timestamps;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// The first column of every row of `sql`, as text (NULLs are a test failure).
pub(crate) fn strings(sql: &str) -> Vec<String> {
    strings_with_args(sql, &[])
}

pub(crate) fn strings_with_args(sql: &str, args: &[DatumWithOid]) -> Vec<String> {
    Spi::connect(|c| {
        c.select(sql, None, args)
            .unwrap()
            .map(|r| r.get::<String>(1).unwrap().unwrap())
            .collect()
    })
}

extension_sql!(
    r#"
CREATE SCHEMA IF NOT EXISTS tests;
-- The SQLSTATE and message of the error `sql` raises, or NULL when it succeeds. The EXCEPTION
-- block runs `sql` in a subtransaction, so a test can go on after an expected error.
CREATE FUNCTION tests.error_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  detail text;
BEGIN
  EXECUTE sql;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
  RETURN SQLSTATE || ': ' || SQLERRM || coalesce(' | ' || nullif(detail, ''), '');
END $$;
"#,
    name = "test_helpers",
    requires = ["claims_comments"]
);

/// Runs `sql`; panics with the error when it fails.
pub fn run(sql: &str) {
    Spi::run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The first column of the first row of `sql`.
pub fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
    Spi::get_one::<T>(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The error `sql` raises ("SQLSTATE: message | detail"), or None.
pub fn error_of(sql: &str) -> Option<String> {
    Spi::get_one_with_args::<String>("SELECT tests.error_of($1)", &[sql.into()]).unwrap()
}

/// Sets the JWT claims the way PostgREST 12 does, for the rest of the transaction.
pub fn set_claims(json: &str) {
    Spi::run_with_args(
        "SELECT set_config('request.jwt.claims', $1, true)",
        &[json.into()],
    )
    .unwrap();
}

pub const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
pub const BOB: &str = "b0b00000-0000-4000-8000-000000000002";

pub fn claims_of(user: &str) -> String {
    format!(r#"{{"sub":"{user}","role":"authenticated"}}"#)
}
