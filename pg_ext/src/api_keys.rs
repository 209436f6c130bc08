//! API keys of `public.api_keys`: created and revoked through functions, never written directly.
//!
//! `dana.create_api_key()` makes a random key, stores only its SHA-256 and returns the key once;
//! `dana.revoke_api_key()` sets `revoked_at` for good. The trigger `dana.api_keys_guard()` refuses
//! every other write by an API role, so nobody un-revokes a key, lifts its expiry or grants it
//! scopes of their own choosing. The functions run as the caller (no SECURITY DEFINER): RLS still
//! decides whose rows they reach; the guard tells their writes apart by a flag only this module
//! sets, for the duration of its own statement.

use crate::integrations::is_verifier;
use crate::raise;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::OsRng;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, Uuid};
use sha2::{Digest, Sha256};
use std::cell::Cell;

/// Scopes a user may give a key. Nothing here reaches beyond the user's own rows.
pub const SCOPES: &[&str] = &["read", "write"];
/// Longest lifetime of a key; keys always expire.
pub const MAX_DAYS: i32 = 365;
/// Characters of the key kept in clear (`key_prefix`), so a user can tell keys apart.
const PREFIX_LEN: usize = 12;
const RANDOM_CHARS: usize = 40;

thread_local! {
    /// True while this module's own statement writes `public.api_keys`.
    static WRITING: Cell<bool> = const { Cell::new(false) };
}

/// Sets [`WRITING`] for its lifetime; an error unwinding through the statement resets it too.
struct Writing;

impl Writing {
    fn start() -> Writing {
        WRITING.with(|w| w.set(true));
        Writing
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        WRITING.with(|w| w.set(false));
    }
}

/// A new key: `dana_` and 40 random letters and digits (about 238 bits).
fn new_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut key = String::from("dana_");
    let mut byte = [0u8; 1];
    while key.len() < 5 + RANDOM_CHARS {
        OsRng.fill_bytes(&mut byte);
        // 248 = 4 × 62: rejecting the rest keeps every character equally likely.
        if byte[0] < 248 {
            key.push(ALPHABET[(byte[0] % 62) as usize] as char);
        }
    }
    key
}

pub fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What is wrong with the arguments of `create_api_key`, all at once.
pub fn check_request(name: &str, scopes: &[String], expires_in_days: i32) -> Vec<String> {
    let mut problems = Vec::new();
    let length = name.trim().chars().count();
    if !(1..=100).contains(&length) {
        problems.push("name must have 1 to 100 characters".to_owned());
    }
    if scopes.is_empty() {
        problems.push(format!(
            "scopes must name at least one of {}",
            SCOPES.join(", ")
        ));
    }
    for scope in scopes {
        if !SCOPES.contains(&scope.as_str()) {
            problems.push(format!(
                "scope \"{scope}\" is not one of {}",
                SCOPES.join(", ")
            ));
        }
    }
    if !(1..=MAX_DAYS).contains(&expires_in_days) {
        problems.push(format!("expires_in_days must be 1 to {MAX_DAYS}"));
    }
    problems
}

/// Creates an API key for the signed-in user; the key itself is returned here and never again.
#[pg_extern(volatile)]
fn create_api_key(
    name: &str,
    scopes: default!(Vec<String>, "'{read}'"),
    expires_in_days: default!(i32, 90),
) -> TableIterator<
    'static,
    (
        name!(id, Uuid),
        name!(key, String),
        name!(key_prefix, String),
        name!(scopes, Vec<String>),
        name!(expires_at, TimestampWithTimeZone),
    ),
> {
    let Some(user_id) = crate::claims::current().sub.map(Uuid::from_bytes) else {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "dana.create_api_key() needs a signed-in user".into(),
            None,
            None,
        );
    };
    let problems = check_request(name, &scopes, expires_in_days);
    if !problems.is_empty() {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid API key request: {}", problems.join("; ")),
            None,
            None,
        );
    }
    let mut scopes = scopes;
    scopes.sort();
    scopes.dedup();
    let key = new_key();
    let prefix = key[..PREFIX_LEN].to_owned();
    let _writing = Writing::start();
    let row = Spi::connect_mut(|client| {
        let rows = client.update(
            "INSERT INTO public.api_keys (user_id, name, key_prefix, key_hash, scopes, expires_at)
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(days => $6))
             RETURNING id, expires_at",
            None,
            &[
                user_id.into(),
                name.trim().into(),
                prefix.as_str().into(),
                key_hash(&key).into(),
                scopes.clone().into(),
                expires_in_days.into(),
            ],
        )?;
        let row = rows.first();
        Ok::<_, pgrx::spi::Error>((row.get::<Uuid>(1)?, row.get::<TimestampWithTimeZone>(2)?))
    });
    match row {
        Ok((Some(id), Some(expires_at))) => {
            TableIterator::once((id, key, prefix, scopes, expires_at))
        }
        Ok(_) => raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "the new API key returned no row".into(),
            None,
            None,
        ),
        Err(e) => raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            e.to_string(),
            None,
            None,
        ),
    }
}

/// Revokes one of the caller's keys for good and returns when (at once for a revoked key).
#[pg_extern(volatile)]
fn revoke_api_key(key_id: Uuid) -> TimestampWithTimeZone {
    let _writing = Writing::start();
    let revoked = Spi::get_one_with_args::<TimestampWithTimeZone>(
        "WITH revoked AS (UPDATE public.api_keys SET revoked_at = now()
                           WHERE id = $1 AND revoked_at IS NULL RETURNING revoked_at)
         SELECT revoked_at FROM revoked
          UNION ALL SELECT revoked_at FROM public.api_keys WHERE id = $1 AND revoked_at IS NOT NULL",
        &[key_id.into()],
    );
    match revoked {
        Ok(Some(at)) => at,
        Ok(None) | Err(pgrx::spi::Error::InvalidPosition) => raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!("no API key with id {key_id}"),
            None,
            Some("keys are revoked by their owner; list yours with select on api_keys"),
        ),
        Err(e) => raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            e.to_string(),
            None,
            None,
        ),
    }
}

/// BEFORE INSERT OR UPDATE OR DELETE FOR EACH ROW on `public.api_keys`.
#[pg_trigger]
fn api_keys_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::trigger_support::PgTriggerError> {
    if !WRITING.with(Cell::get) && !is_verifier() {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "API keys cannot be written directly".into(),
            None,
            Some("create one with rpc create_api_key(name, scopes, expires_in_days) and revoke it with rpc revoke_api_key(key_id)"),
        );
    }
    Ok(trigger.new().or_else(|| trigger.old()))
}

extension_sql!(
    r#"
COMMENT ON FUNCTION dana.create_api_key(text, text[], integer) IS
  'Creates an API key for the signed-in user: returns the key once and stores only its SHA-256. Scopes from {read, write}; expires in 1 to 365 days.';
COMMENT ON FUNCTION dana.revoke_api_key(uuid) IS
  'Revokes one of the signed-in user''s API keys for good; returns when it was revoked.';
COMMENT ON FUNCTION dana.api_keys_guard() IS
  'Trigger of public.api_keys: refuses inserts, updates and deletes by API roles other than through dana.create_api_key() and dana.revoke_api_key().';
"#,
    name = "api_keys_comments",
    requires = [create_api_key, revoke_api_key, api_keys_guard]
);

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn keys_are_long_random_and_hashed() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 45);
        assert!(a.starts_with("dana_") && a[5..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(key_hash(&a).len(), 64);
        assert_eq!(
            key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn requests_are_checked_with_every_problem() {
        assert!(check_request("CI", &["read".into()], 30).is_empty());
        let problems = check_request(" ", &["admin".into()], 0);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[1].contains("\"admin\""));
        assert_eq!(check_request("x", &[], 400).len(), 2);
    }
}
