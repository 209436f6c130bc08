//! The caller's JWT claims, as PostgREST leaves them in the session.
//!
//! PostgREST 12 sets one GUC, `request.jwt.claims`, to the JSON payload of the verified JWT.
//! Older PostgREST versions (and some hand-written tests) set `request.jwt.claim.sub`,
//! `request.jwt.claim.role` and `request.jwt.claim.email` instead; those are the fallback.
//!
//! The helpers are called from RLS policies, so they run once per row when a policy does not
//! wrap them as `(select dana.uid())`. Two caches keep that cheap:
//!
//! * a per-backend cache of the *parsed* claims, keyed on the raw setting strings, so a pooled
//!   connection serving the same user does not parse the same JSON again;
//! * a per-statement memo of the resolved claims, cleared by an `ExecutorStart` hook, so calls
//!   after the first one in a statement do not even look the setting up. That is exactly the
//!   promise a `STABLE` function makes: within one statement its result does not change.
//!
//! Absent, empty or malformed claims never raise an error (an error inside a policy would
//! break every query on the table): they resolve to "no claims", and the helpers return NULL.

use pgrx::prelude::*;
use serde_json::Value;
use std::cell::RefCell;
use std::ffi::CStr;
use std::rc::Rc;

/// The claims of the current request, with the fields the helpers need already extracted.
#[derive(Debug, Default)]
pub struct Claims {
    /// The whole payload, for `dana.jwt()`. `None` when there are no (valid) claims.
    pub payload: Option<Value>,
    pub sub: Option<[u8; 16]>,
    pub role: Option<String>,
    pub email: Option<String>,
    pub tenant_id: Option<[u8; 16]>,
    /// `app_metadata.role`, the application-level role Supabase Auth lets admins assign.
    pub app_role: Option<String>,
    /// `app_metadata.roles`, when an application assigns several.
    pub app_roles: Vec<String>,
}

impl Claims {
    /// Builds the claims from a JSON payload. Anything but a JSON object means "no claims".
    pub fn from_json(raw: &str) -> Claims {
        match serde_json::from_str::<Value>(raw) {
            Ok(payload @ Value::Object(_)) => Claims::from_payload(payload),
            _ => Claims::default(),
        }
    }

    fn from_payload(payload: Value) -> Claims {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let app = payload.get("app_metadata");
        let app_roles = app
            .and_then(|a| a.get("roles"))
            .and_then(Value::as_array)
            .map(|roles| {
                roles
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Claims {
            sub: text(payload.get("sub")).as_deref().and_then(parse_uuid),
            role: text(payload.get("role")),
            email: text(payload.get("email")),
            tenant_id: text(app.and_then(|a| a.get("tenant_id")))
                .as_deref()
                .and_then(parse_uuid),
            app_role: text(app.and_then(|a| a.get("role"))),
            app_roles,
            payload: Some(payload),
        }
    }

    /// Claims from the legacy one-GUC-per-claim settings.
    fn from_legacy(sub: Option<&str>, role: Option<&str>, email: Option<&str>) -> Claims {
        let mut payload = serde_json::Map::new();
        for (key, value) in [("sub", sub), ("role", role), ("email", email)] {
            if let Some(value) = value {
                payload.insert(key.to_owned(), Value::String(value.to_owned()));
            }
        }
        if payload.is_empty() {
            return Claims::default();
        }
        Claims::from_payload(Value::Object(payload))
    }

    /// `app_metadata.role = 'admin'`, or the service role (which acts for the operator).
    pub fn is_admin(&self) -> bool {
        self.app_role.as_deref() == Some("admin") || self.role.as_deref() == Some("service_role")
    }

    /// True when `role` is the database role claim, the application role, or one of the
    /// application roles.
    pub fn has_role(&self, role: &str) -> bool {
        self.role.as_deref() == Some(role)
            || self.app_role.as_deref() == Some(role)
            || self.app_roles.iter().any(|r| r == role)
    }
}

/// Parses a UUID in its canonical hyphenated form (or the 32-hex-digit form), as `uuid_in` would.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    let hyphens = text.len() - hex.len();
    if hex.len() != 32 || !(hyphens == 0 || (hyphens == 4 && is_canonical_uuid(text))) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digits = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(out)
}

fn is_canonical_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36 && [8, 13, 18, 23].iter().all(|&i| bytes[i] == b'-')
}

/// The raw settings that identify the claims, compared to decide whether a cached parse is
/// still valid.
#[derive(PartialEq, Eq)]
struct RawSettings {
    claims: Option<Vec<u8>>,
    legacy: [Option<Vec<u8>>; 3],
}

struct ParsedCache {
    raw: RawSettings,
    claims: Rc<Claims>,
}

thread_local! {
    /// Parsed claims of the last distinct raw setting this backend saw.
    static PARSED: RefCell<Option<ParsedCache>> = const { RefCell::new(None) };
    /// Claims resolved in the current statement; cleared at every `ExecutorStart`.
    static STATEMENT: RefCell<Option<Rc<Claims>>> = const { RefCell::new(None) };
}

/// Forgets the per-statement memo. Called at the start of every statement.
pub fn forget_statement_claims() {
    STATEMENT.with(|s| s.borrow_mut().take());
}

/// The current claims: the statement's memo, else the parsed cache, else a fresh parse.
pub fn current() -> Rc<Claims> {
    if let Some(claims) = STATEMENT.with(|s| s.borrow().clone()) {
        return claims;
    }
    let claims = resolve();
    STATEMENT.with(|s| *s.borrow_mut() = Some(claims.clone()));
    claims
}

fn resolve() -> Rc<Claims> {
    let raw = RawSettings {
        claims: setting(c"request.jwt.claims"),
        legacy: [
            setting(c"request.jwt.claim.sub"),
            setting(c"request.jwt.claim.role"),
            setting(c"request.jwt.claim.email"),
        ],
    };
    PARSED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(hit) = cache.as_ref().filter(|c| c.raw == raw) {
            return hit.claims.clone();
        }
        let claims = Rc::new(parse(&raw));
        *cache = Some(ParsedCache {
            raw,
            claims: claims.clone(),
        });
        claims
    })
}

fn parse(raw: &RawSettings) -> Claims {
    if let Some(json) = &raw.claims {
        return Claims::from_json(&String::from_utf8_lossy(json));
    }
    let text = |v: &Option<Vec<u8>>| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    let [sub, role, email] = &raw.legacy;
    Claims::from_legacy(
        text(sub).as_deref(),
        text(role).as_deref(),
        text(email).as_deref(),
    )
}

/// The value of a (possibly undefined) setting; an empty value counts as absent, because that
/// is what a `SET LOCAL` placeholder reverts to after the transaction that set it.
fn setting(name: &CStr) -> Option<Vec<u8>> {
    // SAFETY: GetConfigOption with missing_ok = true returns NULL for an unknown setting, or a
    // pointer to the current value that stays valid until the setting changes; we copy it at once.
    let value = unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) };
    if value.is_null() {
        return None;
    }
    // SAFETY: a non-NULL result is a NUL-terminated C string.
    let bytes = unsafe { CStr::from_ptr(value) }.to_bytes();
    (!bytes.is_empty()).then(|| bytes.to_vec())
}

static mut PREVIOUS_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;

/// Chains our `ExecutorStart` hook in front of whatever was installed before.
///
/// # Safety
/// Must be called once, from `_PG_init`.
pub unsafe fn install_statement_hook() {
    unsafe {
        PREVIOUS_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: i32) {
    forget_statement_claims();
    unsafe {
        match PREVIOUS_EXECUTOR_START {
            Some(previous) => previous(query_desc, eflags),
            None => pg_sys::standard_ExecutorStart(query_desc, eflags),
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn uuid_forms() {
        assert!(parse_uuid("8a5f4a1e-3b5c-4d2e-9f10-1234567890ab").is_some());
        assert!(parse_uuid("8a5f4a1e3b5c4d2e9f101234567890ab").is_some());
        assert!(parse_uuid("8a5f4a1e-3b5c-4d2e-9f10-1234567890a").is_none());
        assert!(parse_uuid("8a5f-4a1e3b5c-4d2e-9f10-1234567890ab").is_none());
        assert!(parse_uuid("zz5f4a1e-3b5c-4d2e-9f10-1234567890ab").is_none());
        assert!(parse_uuid("").is_none());
    }

    #[test]
    fn malformed_json_is_no_claims() {
        assert!(Claims::from_json("{not json").payload.is_none());
        assert!(Claims::from_json("[1,2]").payload.is_none());
        assert!(Claims::from_json("\"text\"").payload.is_none());
    }

    #[test]
    fn admin_and_roles() {
        let c = Claims::from_json(
            r#"{"role":"authenticated","app_metadata":{"role":"admin","roles":["editor"]}}"#,
        );
        assert!(c.is_admin());
        assert!(c.has_role("editor") && c.has_role("admin") && c.has_role("authenticated"));
        assert!(!c.has_role("owner"));
        assert!(Claims::from_json(r#"{"role":"service_role"}"#).is_admin());
        assert!(!Claims::from_json(r#"{"role":"authenticated"}"#).is_admin());
    }
}

// ---------------------------------------------------------------------------------------------
// SQL functions
// ---------------------------------------------------------------------------------------------

/// The whole JWT payload as jsonb, or NULL when the request carries no (valid) claims.
#[pg_extern(stable, parallel_safe)]
fn jwt() -> Option<pgrx::JsonB> {
    current().payload.clone().map(pgrx::JsonB)
}

/// The `sub` claim as a uuid: the id of the signed-in user.
#[pg_extern(stable, parallel_safe)]
fn uid() -> Option<pgrx::Uuid> {
    current().sub.map(pgrx::Uuid::from_bytes)
}

/// The `role` claim: `anon`, `authenticated` or `service_role` with Supabase Auth.
#[pg_extern(stable, parallel_safe)]
fn role() -> Option<String> {
    current().role.clone()
}

/// The `email` claim.
#[pg_extern(stable, parallel_safe)]
fn email() -> Option<String> {
    current().email.clone()
}

/// `app_metadata.tenant_id` as a uuid (app_metadata is writable only by the service role).
#[pg_extern(stable, parallel_safe)]
fn tenant_id() -> Option<pgrx::Uuid> {
    current().tenant_id.map(pgrx::Uuid::from_bytes)
}

/// True for `app_metadata.role = 'admin'` or the service role; false without claims.
#[pg_extern(stable, parallel_safe)]
fn is_admin() -> bool {
    current().is_admin()
}

/// True when the caller holds `role` as database role, application role or one of its roles.
#[pg_extern(stable, parallel_safe)]
fn has_role(role: &str) -> bool {
    current().has_role(role)
}

extension_sql!(
    r#"
COMMENT ON FUNCTION dana.jwt() IS
  'The JWT payload of the current request (request.jwt.claims as PostgREST sets it, else the legacy request.jwt.claim.* settings); NULL when absent or malformed. Cached per statement: wrap as (select dana.jwt()) in policies.';
COMMENT ON FUNCTION dana.uid() IS
  'The sub claim as uuid (the signed-in user), NULL when absent or not a uuid. Use (select dana.uid()) in policies so it runs once per statement.';
COMMENT ON FUNCTION dana.role() IS 'The role claim (anon, authenticated, service_role), NULL when absent.';
COMMENT ON FUNCTION dana.email() IS 'The email claim, NULL when absent.';
COMMENT ON FUNCTION dana.tenant_id() IS 'app_metadata.tenant_id as uuid, NULL when absent or not a uuid.';
COMMENT ON FUNCTION dana.is_admin() IS 'True when app_metadata.role = ''admin'' or the role claim is service_role; false without claims.';
COMMENT ON FUNCTION dana.has_role(text) IS 'True when the argument is the role claim, app_metadata.role, or an element of app_metadata.roles.';
"#,
    name = "claims_comments",
    requires = [jwt, uid, role, email, tenant_id, is_admin, has_role]
);
