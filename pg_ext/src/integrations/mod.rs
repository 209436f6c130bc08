//! The logic behind `public.integration_configs`: per-user settings for Slack, HubSpot, e-mail
//! and the rest, validated, with secrets encrypted at rest and a status life cycle.
//!
//! The table itself is created by the migrations; `dana.integration_configs_guard()` is attached
//! to it as a BEFORE INSERT OR UPDATE trigger. A user (or the BFF acting as the user) writes a
//! config with the secrets in clear inside `config`; the trigger validates it, moves the secrets
//! into the encrypted `secrets` column, leaves masks in their place and enforces the life cycle.
//! Only `dana.integration_secrets()`, callable by the service role, returns secrets in clear.

pub mod lifecycle;
pub mod secrets;
pub mod validate;

use crate::raise;
use lifecycle::{check_transition, Status};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode, Uuid};
use secrets::{Binding, Keyring};
use serde_json::{Map, Value};
use validate::{field_named, fields_of, type_names, validate_kind, Problem};

/// The table the functions below work on.
const TABLE: &str = "public.integration_configs";
/// Character the masks use; a secret containing it is a mask sent back, never a real secret.
const MASK_MARK: char = '…';

/// True for the service role (the BFF) and superusers: they may verify configs and read secrets.
pub(crate) fn is_verifier() -> bool {
    // SAFETY: plain catalog lookups on the current user.
    unsafe {
        if pg_sys::superuser() {
            return true;
        }
        let service_role = pg_sys::get_role_oid(c"service_role".as_ptr(), true);
        service_role != pg_sys::InvalidOid
            && pg_sys::has_privs_of_role(pg_sys::GetUserId(), service_role)
    }
}

fn require_verifier(function: &str) {
    if !is_verifier() {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("{function} is only for the service role"),
            None,
            None,
        );
    }
}

/// The row values the guard works with.
struct Row {
    id: Option<Uuid>,
    user_id: Option<Uuid>,
    integration_type: Option<String>,
    config: Option<Value>,
    secrets: Option<Vec<u8>>,
    key_version: Option<i32>,
    status: Option<String>,
    last_verified_at: Option<TimestampWithTimeZone>,
    last_error: Option<String>,
}

impl Row {
    fn read(tuple: &PgHeapTuple<'_, impl WhoAllocated>) -> Row {
        fn get_err(e: impl std::fmt::Display) -> ! {
            raise(
                PgSqlErrorCode::ERRCODE_INVALID_OBJECT_DEFINITION,
                format!("dana.integration_configs_guard() is attached to a table that does not look like {TABLE}: {e}"),
                None,
                None,
            )
        }
        macro_rules! col {
            ($name:literal) => {
                tuple.get_by_name($name).unwrap_or_else(|e| get_err(e))
            };
        }
        Row {
            id: col!("id"),
            user_id: col!("user_id"),
            integration_type: col!("integration_type"),
            config: tuple
                .get_by_name::<JsonB>("config")
                .unwrap_or_else(|e| get_err(e))
                .map(|j| j.0),
            secrets: tuple
                .get_by_name::<&[u8]>("secrets")
                .unwrap_or_else(|e| get_err(e))
                .map(<[u8]>::to_vec),
            key_version: col!("secrets_key_version"),
            status: col!("status"),
            last_verified_at: col!("last_verified_at"),
            last_error: col!("last_error"),
        }
    }
}

/// BEFORE INSERT OR UPDATE FOR EACH ROW on `public.integration_configs`.
#[pg_trigger]
fn integration_configs_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, pgrx::trigger_support::PgTriggerError> {
    let new_tuple = trigger
        .new()
        .expect("BEFORE INSERT OR UPDATE row trigger has a new row");
    let new = Row::read(&new_tuple);
    let old = trigger.old().map(|t| Row::read(&t));
    let verifier = is_verifier();

    let (Some(id), Some(user_id), Some(kind)) = (new.id, new.user_id, new.integration_type.clone())
    else {
        raise(
            PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
            "integration configs need an id, a user_id and an integration_type".into(),
            None,
            Some("user_id defaults to the signed-in user; sign in, or pass it explicitly"),
        );
    };
    let Some(fields) = fields_of(&kind) else {
        raise(
            PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
            format!("unknown integration type \"{kind}\""),
            Some(format!("supported types: {}", type_names())),
            None,
        );
    };
    if let Some(old) = &old {
        if old.id != new.id
            || old.user_id != new.user_id
            || old.integration_type != new.integration_type
        {
            raise(
                PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
                "id, user_id and integration_type of an integration config cannot change".into(),
                None,
                Some("create a new config instead; to upsert, call rpc upsert_integration_config"),
            );
        }
    }
    refuse_managed_column_writes(&new, old.as_ref(), verifier);

    let (id_text, user_text) = (id.to_string(), user_id.to_string());
    let binding = Binding {
        row_id: &id_text,
        user_id: &user_text,
        integration_type: &kind,
    };

    // The secrets stored so far (UPDATE only).
    let stored: Map<String, Value> = match old
        .as_ref()
        .and_then(|o| o.secrets.as_ref().map(|s| (s, o.key_version)))
    {
        None => Map::new(),
        Some((sealed, version)) => {
            match try_open_secrets(&keyring(), version.unwrap_or(0), sealed, &binding) {
                Ok(map) => map,
                // Secrets no configured key opens (a key removed too early, a damaged row). Such
                // a row must not lock its owner out: an update that leaves config alone (disable
                // it, re-enable it) passes untouched, and a new config replaces the secrets,
                // which then have to be sent in full.
                Err(_) if old.as_ref().is_some_and(|o| o.config == new.config) => {
                    let mut out = new_tuple.into_owned();
                    apply_lifecycle(&mut out, &new, old.as_ref(), false, verifier);
                    return Ok(Some(out));
                }
                Err(_) => Map::new(),
            }
        }
    };

    let config = match new.config.clone().unwrap_or(Value::Object(Map::new())) {
        Value::Object(map) => map,
        _ => raise(
            PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
            format!("config of a {kind} integration must be a JSON object"),
            None,
            None,
        ),
    };
    let (settings, secrets) = split_config(fields, config, &stored);
    let mut merged = settings.clone();
    merged.extend(secrets.clone());
    let mut problems = validate_kind(&kind, &merged, &secrets::allowed_hosts());
    for (name, value) in &secrets {
        if value.as_str().is_some_and(|s| s.contains(MASK_MARK)) {
            problems.push(Problem::new(name, "looks like a masked value: send the secret itself, or leave the field out to keep the stored one"));
        }
    }
    if !problems.is_empty() {
        let listed: Vec<String> = problems
            .iter()
            .map(|p| format!("{} {}", p.field, p.problem))
            .collect();
        raise(
            PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
            format!("invalid {kind} integration config: {}", listed.join("; ")),
            Some(serde_json::to_string(&problems).expect("problems serialize")),
            None,
        );
    }

    let mut out = new_tuple.into_owned();

    // Seal the secrets, unless they and the key are unchanged.
    let secrets_changed = secrets != stored;
    if secrets.is_empty() {
        set_column(&mut out, "secrets", None::<Vec<u8>>);
        set_column(&mut out, "secrets_key_version", None::<i32>);
    } else {
        let keys = keyring();
        let stale_key = old.as_ref().and_then(|o| o.key_version) != Some(keys.current_version());
        if secrets_changed || stale_key {
            let plain = serde_json::to_vec(&secrets).expect("secrets serialize");
            let (version, sealed) = keys.seal(&plain, &binding);
            set_column(&mut out, "secrets", Some(sealed));
            set_column(&mut out, "secrets_key_version", Some(version));
        }
    }
    let mut visible = settings.clone();
    for (name, value) in &secrets {
        visible.insert(name.clone(), Value::String(mask_of(fields, name, value)));
    }
    let config_changed = old.as_ref().is_some_and(|o| {
        secrets_changed
            || o.config
                .as_ref()
                .and_then(Value::as_object)
                .map(|c| strip_secrets(fields, c))
                != Some(settings.clone())
    });
    set_column(&mut out, "config", Some(JsonB(Value::Object(visible))));

    apply_lifecycle(&mut out, &new, old.as_ref(), config_changed, verifier);
    Ok(Some(out))
}

fn set_column<T: IntoDatum>(
    out: &mut PgHeapTuple<'_, AllocatedByRust>,
    name: &str,
    value: Option<T>,
) {
    if let Err(e) = out.set_by_name(name, value) {
        raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("setting {name}: {e}"),
            None,
            None,
        );
    }
}

/// The stored secrets, decrypted, or why they cannot be.
fn try_open_secrets(
    keys: &Keyring,
    version: i32,
    sealed: &[u8],
    binding: &Binding,
) -> Result<Map<String, Value>, secrets::SecretError> {
    let plain = keys.open(version, sealed, binding)?;
    match serde_json::from_slice(&plain) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(secrets::SecretError::Undecryptable),
    }
}

/// The stored secrets, decrypted; an error when they cannot be.
fn open_secrets(
    keys: &Keyring,
    version: i32,
    sealed: &[u8],
    binding: &Binding,
) -> Map<String, Value> {
    try_open_secrets(keys, version, sealed, binding).unwrap_or_else(|e| {
        raise(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            e.to_string(),
            None,
            Some("the secrets must be entered again: update the config with every secret field"),
        )
    })
}

/// Splits a config into its settings and its secrets. A secret sent back as the mask of the
/// stored value keeps the stored value; a secret sent as null is removed; a secret left out
/// keeps the stored value (a client cannot send back what it was never shown).
fn split_config(
    fields: &[validate::Field],
    config: Map<String, Value>,
    stored: &Map<String, Value>,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut settings = Map::new();
    let mut secrets = Map::new();
    let sent: Vec<String> = config.keys().cloned().collect();
    for (name, value) in config {
        let secret = fields.iter().any(|f| f.secret && f.name == name);
        if !secret {
            settings.insert(name, value);
            continue;
        }
        let stored_value = stored.get(&name);
        match value {
            Value::Null => {}
            Value::String(s)
                if stored_value.map(|v| mask_of(fields, &name, v)).as_deref()
                    == Some(s.as_str()) =>
            {
                secrets.insert(name, stored_value.cloned().expect("matched a stored value"));
            }
            other => {
                secrets.insert(name, other);
            }
        }
    }
    for field in fields.iter().filter(|f| f.secret) {
        if !sent.iter().any(|s| s == field.name) {
            if let Some(value) = stored.get(field.name) {
                secrets.insert(field.name.to_owned(), value.clone());
            }
        }
    }
    (settings, secrets)
}

/// The mask of secret field `name` holding `value`.
fn mask_of(fields: &[validate::Field], name: &str, value: &Value) -> String {
    let text = value.as_str().unwrap_or_default();
    match field_named(fields, name) {
        Some(field) => field.mask(text),
        None => secrets::mask(text, None, false),
    }
}

/// The settings of a stored config: everything but the (masked) secrets.
fn strip_secrets(fields: &[validate::Field], config: &Map<String, Value>) -> Map<String, Value> {
    config
        .iter()
        .filter(|(name, _)| !fields.iter().any(|f| f.secret && f.name == name.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The encrypted columns and the verification record are written by dana only.
fn refuse_managed_column_writes(new: &Row, old: Option<&Row>, verifier: bool) {
    let tampered = match old {
        None => new.secrets.is_some() || new.key_version.is_some(),
        Some(old) => old.secrets != new.secrets || old.key_version != new.key_version,
    };
    if tampered {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "secrets and secrets_key_version are managed by dana".into(),
            None,
            Some("send secrets in clear inside config; they are encrypted on write"),
        );
    }
    if verifier {
        return;
    }
    let verification_touched = match old {
        None => new.last_verified_at.is_some() || new.last_error.is_some(),
        Some(old) => {
            old.last_verified_at != new.last_verified_at || old.last_error != new.last_error
        }
    };
    if verification_touched {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "last_verified_at and last_error are set by verification, which only the service role does".into(),
            None,
            None,
        );
    }
}

/// Enforces the status life cycle and keeps the verification record consistent with it.
fn apply_lifecycle(
    out: &mut PgHeapTuple<'_, AllocatedByRust>,
    new: &Row,
    old: Option<&Row>,
    config_changed: bool,
    verifier: bool,
) {
    let requested_text = new.status.clone().unwrap_or_else(|| "pending".into());
    let Some(mut requested) = Status::parse(&requested_text) else {
        raise(
            PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
            lifecycle::TransitionError::Unknown(requested_text).to_string(),
            None,
            None,
        );
    };
    let previous = old
        .and_then(|o| o.status.as_deref())
        .and_then(Status::parse);
    // An edited config must be verified again before it counts as working; the service role's
    // own writes (an OAuth install, a rotated token) come with their verification.
    if config_changed && !verifier && previous == Some(requested) && requested.needs_verification()
    {
        requested = Status::Pending;
    }
    if let Err(e) = check_transition(previous, requested, verifier) {
        raise(
            PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
            e.to_string(),
            None,
            None,
        );
    }
    set_column(out, "status", Some(requested.as_str().to_owned()));
    if previous == Some(requested) {
        return;
    }
    match requested {
        Status::Active => {
            // SAFETY: reads the transaction start time.
            let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
            let now = TimestampWithTimeZone::try_from(now).unwrap_or_else(|_| {
                raise(
                    PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                    "bad timestamp".into(),
                    None,
                    None,
                )
            });
            set_column(out, "last_verified_at", Some(now));
            set_column(out, "last_error", None::<String>);
        }
        Status::Error => {
            let error = new
                .last_error
                .clone()
                .unwrap_or_else(|| "verification failed".into());
            set_column(out, "last_error", Some(error));
        }
        // The last error stays on record until the next verification.
        Status::Pending | Status::Disabled => {}
    }
}

// ---------------------------------------------------------------------------------------------
// SQL functions
// ---------------------------------------------------------------------------------------------

/// The key ring from `dana.secret_keys`, or an error naming the setting's problem.
fn keyring() -> Keyring {
    Keyring::from_settings().unwrap_or_else(|e| {
        raise(
            PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR,
            e.to_string(),
            None,
            None,
        )
    })
}

/// The secrets of one config in clear, for the BFF (service role only).
#[pg_extern(volatile)]
fn integration_secrets(config_id: Uuid) -> JsonB {
    require_verifier("dana.integration_secrets()");
    let row = Spi::connect(|client| -> Result<_, pgrx::spi::Error> {
        let rows = client.select(
            &format!(
                "SELECT user_id, integration_type, secrets, secrets_key_version FROM {TABLE} WHERE id = $1"
            ),
            Some(1),
            &[config_id.into()],
        )?;
        match rows.into_iter().next() {
            None => Ok(None),
            Some(row) => Ok(Some((
                row.get::<Uuid>(1)?,
                row.get::<String>(2)?,
                row.get::<Vec<u8>>(3)?,
                row.get::<i32>(4)?,
            ))),
        }
    });
    let (user_id, kind, sealed, version) = match row {
        Ok(Some((Some(user_id), Some(kind), sealed, version))) => (user_id, kind, sealed, version),
        Ok(_) => raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!("no integration config with id {config_id}"),
            None,
            None,
        ),
        Err(e) => raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            e.to_string(),
            None,
            None,
        ),
    };
    let Some(sealed) = sealed else {
        return JsonB(Value::Object(Map::new()));
    };
    let keys = keyring();
    let (id_text, user_text) = (config_id.to_string(), user_id.to_string());
    let binding = Binding {
        row_id: &id_text,
        user_id: &user_text,
        integration_type: &kind,
    };
    JsonB(Value::Object(open_secrets(
        &keys,
        version.unwrap_or(0),
        &sealed,
        &binding,
    )))
}

/// Records the outcome of verifying a config's credentials (service role only); returns the new
/// status.
#[pg_extern(volatile)]
fn record_integration_verification(
    config_id: Uuid,
    ok: bool,
    error: default!(Option<&str>, "NULL"),
) -> String {
    require_verifier("dana.record_integration_verification()");
    let status = Spi::get_one_with_args::<String>(
        &format!(
            "UPDATE {TABLE} SET status = CASE WHEN $2 THEN 'active' ELSE 'error' END,
                                last_error = CASE WHEN $2 THEN NULL ELSE coalesce($3, 'verification failed') END
              WHERE id = $1 RETURNING status"
        ),
        &[config_id.into(), ok.into(), error.into()],
    );
    match status {
        Ok(Some(status)) => status,
        Ok(None) | Err(pgrx::spi::Error::InvalidPosition) => raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!("no integration config with id {config_id}"),
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

/// Creates or replaces the signed-in user's config of one type; returns its id. Secrets left
/// out of `config` keep their stored values.
#[pg_extern(volatile)]
fn upsert_integration_config(integration_type: &str, config: JsonB) -> Uuid {
    let Some(user_id) = crate::claims::current().sub.map(Uuid::from_bytes) else {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "dana.upsert_integration_config() needs a signed-in user".into(),
            None,
            None,
        );
    };
    let update = format!(
        "UPDATE {TABLE} SET config = $3 WHERE user_id = $1 AND integration_type = $2 RETURNING id"
    );
    let insert = format!(
        "INSERT INTO {TABLE} (user_id, integration_type, config) VALUES ($1, $2, $3) RETURNING id"
    );
    let run = |sql: &str| -> Option<Uuid> {
        match Spi::get_one_with_args::<Uuid>(
            sql,
            &[
                user_id.into(),
                integration_type.into(),
                JsonB(config.0.clone()).into(),
            ],
        ) {
            Ok(id) => id,
            Err(pgrx::spi::Error::InvalidPosition) => None,
            Err(e) => raise(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                e.to_string(),
                None,
                None,
            ),
        }
    };
    // UPDATE first, then INSERT: ON CONFLICT would hand the UPDATE the already-sealed proposed
    // row. A concurrent insert of the same type makes the INSERT fail on the unique key; the
    // caller retries and the UPDATE path takes it.
    run(&update).or_else(|| run(&insert)).unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "upsert returned no row".into(),
            None,
            None,
        )
    })
}

/// Re-seals every config whose secrets use an older key (service role only). A row whose
/// secrets no configured key opens is not resealed: it is marked `error` (unless disabled) so
/// its owner sees it must be entered again, and counted; it never stops the others.
#[pg_extern(volatile)]
fn rotate_integration_secrets(
) -> TableIterator<'static, (name!(resealed, i64), name!(undecryptable, i64))> {
    require_verifier("dana.rotate_integration_secrets()");
    let keys = keyring();
    let current = keys.current_version();
    let stale = format!("secrets IS NOT NULL AND secrets_key_version <> {current}");
    let counts = Spi::connect_mut(|client| -> Result<(i64, i64), pgrx::spi::Error> {
        let before = client
            .update(
                &format!("SELECT count(*) FROM {TABLE} WHERE {stale}"),
                None,
                &[],
            )?
            .first()
            .get::<i64>(1)?
            .unwrap_or(0);
        // The guard reseals each row it can open with the current key and leaves the rest as is.
        client.update(
            &format!("UPDATE {TABLE} SET updated_at = updated_at WHERE {stale}"),
            None,
            &[],
        )?;
        let stuck = client
            .update(
                &format!(
                    "WITH stuck AS (SELECT id, status FROM {TABLE} WHERE {stale}),
                          marked AS (UPDATE {TABLE} c SET status = 'error',
                                            last_error = 'the stored secrets cannot be decrypted with the configured keys: enter them again'
                                       FROM stuck WHERE c.id = stuck.id AND stuck.status <> 'disabled' RETURNING 1)
                     SELECT count(*) FROM stuck"
                ),
                None,
                &[],
            )?
            .first()
            .get::<i64>(1)?
            .unwrap_or(0);
        Ok((before - stuck, stuck))
    });
    let (resealed, stuck) = counts.unwrap_or_else(|e| {
        raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            e.to_string(),
            None,
            None,
        )
    });
    TableIterator::once((resealed, stuck))
}

/// What an archived payload (such as a refused legacy row) is bound to: its archive row's id.
fn archive_binding(archive_id: &str) -> Binding<'_> {
    Binding {
        row_id: archive_id,
        user_id: "",
        integration_type: "dana_meta.archive",
    }
}

/// Seals a JSON payload that must be kept but not in clear, bound to the id of the row that will
/// hold it. Used by `migrate_legacy_integrations_config()` for refused rows.
#[pg_extern(volatile)]
fn seal_archived(
    archive_id: Uuid,
    payload: JsonB,
) -> TableIterator<'static, (name!(key_version, i32), name!(sealed, Vec<u8>))> {
    let plain = serde_json::to_vec(&payload.0).expect("JSON serializes");
    let id = archive_id.to_string();
    let (version, sealed) = keyring().seal(&plain, &archive_binding(&id));
    TableIterator::once((version, sealed))
}

/// A refused legacy integrations row, in clear (service role only), to fix and re-enter it.
#[pg_extern(volatile)]
fn archived_legacy_integration(reject_id: Uuid) -> JsonB {
    require_verifier("dana.archived_legacy_integration()");
    let not_found = || -> ! {
        raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!("no refused legacy integration with id {reject_id}"),
            None,
            None,
        )
    };
    if Spi::get_one::<bool>(
        "SELECT to_regclass('dana_meta.integrations_config_rejects') IS NOT NULL",
    ) != Ok(Some(true))
    {
        not_found();
    }
    let (sealed, version) = match Spi::get_two_with_args::<Vec<u8>, i32>(
        "SELECT sealed_row, key_version FROM dana_meta.integrations_config_rejects WHERE id = $1",
        &[reject_id.into()],
    ) {
        Ok((Some(sealed), Some(version))) => (sealed, version),
        Ok(_) | Err(pgrx::spi::Error::InvalidPosition) => not_found(),
        Err(e) => raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            e.to_string(),
            None,
            None,
        ),
    };
    let id = reject_id.to_string();
    let plain = keyring()
        .open(version, &sealed, &archive_binding(&id))
        .unwrap_or_else(|e| {
            raise(
                PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                e.to_string(),
                None,
                None,
            )
        });
    JsonB(serde_json::from_slice(&plain).unwrap_or(Value::Null))
}

/// The supported integration types and their fields, for building forms.
#[pg_extern(immutable, parallel_safe)]
fn integration_types() -> TableIterator<
    'static,
    (
        name!(integration_type, String),
        name!(field, String),
        name!(required, bool),
        name!(secret, bool),
    ),
> {
    TableIterator::new(validate::TYPES.iter().flat_map(|(kind, fields)| {
        fields
            .iter()
            .map(move |f| (kind.to_string(), f.name.to_owned(), f.required, f.secret))
    }))
}

extension_sql!(
    r#"
COMMENT ON FUNCTION dana.integration_configs_guard() IS
  'BEFORE INSERT OR UPDATE trigger of public.integration_configs: validates config per type (listing every problem), encrypts secrets (XChaCha20-Poly1305, bound to row, user, type and key version) leaving masks in config, and enforces the status life cycle.';
COMMENT ON FUNCTION dana.integration_secrets(uuid) IS
  'The secrets of one integration config in clear. Service role (or superuser) only; grant EXECUTE to service_role.';
COMMENT ON FUNCTION dana.record_integration_verification(uuid, boolean, text) IS
  'Records the outcome of verifying a config against its provider: active (ok) or error with a message. Service role only. A disabled config must be re-enabled (pending) first.';
COMMENT ON FUNCTION dana.upsert_integration_config(text, jsonb) IS
  'Creates or replaces the signed-in user''s config of one type and returns its id. Secrets left out keep their stored values; masked values sent back are kept too.';
COMMENT ON FUNCTION dana.rotate_integration_secrets() IS
  'Re-encrypts every integration secret sealed with an older key version than the newest in dana.secret_keys. Returns how many configs are now sealed with the newest key, and how many could not be decrypted (those are marked error, unless disabled, and keep their old ciphertext). Service role only.';
COMMENT ON FUNCTION dana.seal_archived(uuid, jsonb) IS
  'Seals a JSON payload with the integration secrets'' keys, bound to the id of the archive row that keeps it (used for refused legacy rows).';
COMMENT ON FUNCTION dana.archived_legacy_integration(uuid) IS
  'A refused legacy integrations row from dana_meta.integrations_config_rejects, in clear. Service role only.';
COMMENT ON FUNCTION dana.integration_types() IS 'The supported integration types and their fields (required, secret).';
"#,
    name = "integrations_grants",
    requires = [
        integration_secrets,
        record_integration_verification,
        rotate_integration_secrets,
        integration_configs_guard,
        upsert_integration_config,
        integration_types,
        seal_archived,
        archived_legacy_integration
    ]
);

extension_sql_file!(
    "../../sql/legacy_integrations.sql",
    name = "legacy_integrations",
    requires = [integration_configs_guard, seal_archived]
);
