//! The caller's JWT claims, as PostgREST leaves them in the session.
//!
//! PostgREST 12 sets one setting, `request.jwt.claims`, to the JSON payload of the verified JWT.
//! Older PostgREST versions (and some hand-written tests) set `request.jwt.claim.sub`,
//! `request.jwt.claim.role` and `request.jwt.claim.email` instead; those are the fallback.
//!
//! The helpers are called from RLS policies, so they run once per row when a policy does not
//! wrap them as `(select dana.uid())`. Two caches keep that cheap:
//!
//! * a memo of the resolved claims, dropped whenever one of those settings changes. The
//!   extension defines the settings itself (as ordinary user-settable strings), with an assign
//!   hook: PostgreSQL calls it on every change — `SET`, `set_config()`, `RESET`, a function's
//!   `SET` clause, a rolled-back transaction or subtransaction restoring the old value — on every
//!   path (plain statements, `DO` and `CALL` bodies, `COPY` defaults, PL/pgSQL expressions). So a
//!   per-row call is a thread-local read, and never sees a previous identity.
//! * a per-backend cache of the *parsed* claims, keyed on the raw setting strings, so a pooled
//!   connection serving the same user again (PostgREST sets the claims on every request) does not
//!   parse the same JSON again.
//!
//! Absent, empty or malformed claims never raise an error (an error inside a policy would
//! break every query on the table): they resolve to "no claims", and the helpers return NULL.
//!
//! Two scopes of administration are kept apart, because one `is_admin()` serving both once let
//! a tenant's admin edit the platform's catalogues:
//!
//! * **platform admin** — the `service_role` (the platform's own key) or a user whose
//!   `app_metadata.platform_admin` is `true` (only the service role can write app_metadata);
//! * **tenant admin** — `app_metadata.role` is `owner` or `admin`, and that role holds only in
//!   the tenant named by `app_metadata.tenant_id`.

use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use serde_json::Value;
use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// The claims of the current request, with the fields the helpers need already extracted.
#[derive(Debug, Default)]
pub struct Claims {
    /// The whole payload, for `dana.jwt()`. `None` when there are no (valid) claims.
    pub payload: Option<Value>,
    pub sub: Option<[u8; 16]>,
    pub role: Option<String>,
    pub email: Option<String>,
    pub tenant_id: Option<[u8; 16]>,
    /// `app_metadata.role`: the caller's role in the tenant `tenant_id` (owner, admin, member).
    pub tenant_role: Option<String>,
    /// `app_metadata.roles`, when an application assigns several.
    pub app_roles: Vec<String>,
    /// `app_metadata.platform_admin = true`.
    pub platform_admin_claim: bool,
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
            tenant_role: text(app.and_then(|a| a.get("role"))),
            app_roles,
            platform_admin_claim: app.and_then(|a| a.get("platform_admin"))
                == Some(&Value::Bool(true)),
            payload: Some(payload),
        }
    }

    /// Claims from the legacy one-setting-per-claim form.
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

    /// The service role, or a user the platform made a platform admin.
    pub fn is_platform_admin(&self) -> bool {
        self.role.as_deref() == Some("service_role") || self.platform_admin_claim
    }

    /// The caller's role in their tenant; None without a tenant.
    pub fn role_in_tenant(&self) -> Option<&str> {
        self.tenant_id.and(self.tenant_role.as_deref())
    }

    /// Owner or admin of the tenant `tenant_id` (and of no other).
    pub fn is_tenant_admin(&self) -> bool {
        matches!(self.role_in_tenant(), Some("owner" | "admin"))
    }

    /// Owner of the tenant `tenant_id`.
    pub fn is_tenant_owner(&self) -> bool {
        self.role_in_tenant() == Some("owner")
    }

    /// True when `role` is the database role claim, the application role, or one of the
    /// application roles.
    pub fn has_role(&self, role: &str) -> bool {
        self.role.as_deref() == Some(role)
            || self.tenant_role.as_deref() == Some(role)
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
    /// The claims as resolved since the settings last changed; dropped by [`settings_changed`].
    static MEMO: RefCell<Option<Rc<Claims>>> = const { RefCell::new(None) };
}

/// The settings PostgREST (12, and older versions) uses to pass the verified claims.
static CLAIMS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static LEGACY_SUB: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static LEGACY_ROLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static LEGACY_EMAIL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Defines the claims settings with [`settings_changed`] as their assign hook. Called from
/// `_PG_init`. They stay what PostgREST expects: strings anyone may set, for the transaction
/// (`set_config(…, true)`) or the session; a value set before the library loaded is kept.
pub fn define_settings() {
    let settings: [(&'static CStr, &'static GucSetting<Option<CString>>); 4] = [
        (c"request.jwt.claims", &CLAIMS),
        (c"request.jwt.claim.sub", &LEGACY_SUB),
        (c"request.jwt.claim.role", &LEGACY_ROLE),
        (c"request.jwt.claim.email", &LEGACY_EMAIL),
    ];
    for (name, setting) in settings {
        // SAFETY: the assign hook is #[pg_guard]ed and only clears a thread-local.
        unsafe {
            GucRegistry::define_string_guc_with_hooks(
                name,
                c"The verified JWT claims of the current request (set by PostgREST).",
                c"Read by dana.jwt(), dana.uid() and the other claim helpers.",
                setting,
                GucContext::Userset,
                GucFlags::NO_SHOW_ALL,
                None,
                Some(settings_changed),
                None,
            );
        }
    }
}

/// Assign hook of the claims settings: whatever was resolved before no longer holds.
#[pg_guard]
unsafe extern "C-unwind" fn settings_changed(
    _new_value: *const std::ffi::c_char,
    _extra: *mut std::ffi::c_void,
) {
    // try_with: the hook also runs while the thread-locals are being torn down at exit.
    UID_STATE.store(UID_UNKNOWN, Ordering::Relaxed);
    let _ = MEMO.try_with(|memo| {
        if let Ok(mut memo) = memo.try_borrow_mut() {
            *memo = None;
        }
    });
}

// The memo's `sub`, for `dana_uid_fast`, which an unwrapped policy calls once per row: a
// thread-local lookup (`__tls_get_addr` in a loaded library) and the memo's `RefCell` cost ~45
// instructions of such a call. A backend runs extension code on its one thread, so process-wide
// statics serve as thread-locals would; they are written only where the memo is.
const UID_UNKNOWN: u8 = 0;
const UID_NULL: u8 = 1;
const UID_SET: u8 = 2;
static UID_STATE: AtomicU8 = AtomicU8::new(UID_UNKNOWN);
static UID_BYTES: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

fn publish_uid(sub: Option<[u8; 16]>) {
    match sub {
        Some(bytes) => {
            let (high, low) = bytes.split_at(8);
            UID_BYTES[0].store(
                u64::from_ne_bytes(high.try_into().unwrap_or_default()),
                Ordering::Relaxed,
            );
            UID_BYTES[1].store(
                u64::from_ne_bytes(low.try_into().unwrap_or_default()),
                Ordering::Relaxed,
            );
            UID_STATE.store(UID_SET, Ordering::Relaxed);
        }
        None => UID_STATE.store(UID_NULL, Ordering::Relaxed),
    }
}

/// The current claims: the memo, else the parsed cache, else a fresh parse.
pub fn current() -> Rc<Claims> {
    if let Some(claims) = MEMO.with(|m| m.borrow().clone()) {
        return claims;
    }
    let claims = resolve();
    MEMO.with(|m| *m.borrow_mut() = Some(claims.clone()));
    publish_uid(claims.sub);
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

/// The value of a setting; an empty value counts as absent, because that is what a `SET LOCAL`
/// reverts to after the transaction that set it.
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

    const TENANT: &str = "10000000-0000-4000-8000-000000000001";

    #[test]
    fn a_tenant_admin_is_no_platform_admin() {
        let c = Claims::from_json(&format!(
            r#"{{"role":"authenticated","app_metadata":{{"tenant_id":"{TENANT}","role":"admin","roles":["editor"]}}}}"#
        ));
        assert!(c.is_tenant_admin() && !c.is_tenant_owner());
        assert!(!c.is_platform_admin());
        assert!(c.has_role("editor") && c.has_role("admin") && c.has_role("authenticated"));
        assert!(!c.has_role("owner"));
    }

    #[test]
    fn a_tenant_role_without_a_tenant_counts_for_nothing() {
        let c = Claims::from_json(r#"{"role":"authenticated","app_metadata":{"role":"owner"}}"#);
        assert!(!c.is_tenant_admin() && !c.is_tenant_owner());
    }

    #[test]
    fn platform_admins_are_the_service_role_or_the_platform_claim() {
        assert!(Claims::from_json(r#"{"role":"service_role"}"#).is_platform_admin());
        assert!(Claims::from_json(
            r#"{"role":"authenticated","app_metadata":{"platform_admin":true}}"#
        )
        .is_platform_admin());
        // Only the boolean true counts, and nothing in user_metadata (users write that).
        for not_admin in [
            r#"{"role":"authenticated","app_metadata":{"platform_admin":"true"}}"#,
            r#"{"role":"authenticated","user_metadata":{"platform_admin":true}}"#,
            r#"{"role":"authenticated","platform_admin":true}"#,
            r#"{"role":"authenticated"}"#,
        ] {
            assert!(
                !Claims::from_json(not_admin).is_platform_admin(),
                "{not_admin}"
            );
        }
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
///
/// PostgreSQL calls [`dana_uid_fast`] (the SQL below names it), which answers from the memo and
/// comes here, through pgrx's generated `uid_wrapper`, only when the memo is empty.
#[pg_extern(
    stable,
    parallel_safe,
    sql = r#"
CREATE FUNCTION "uid"() RETURNS uuid
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'dana_uid_fast';
"#
)]
fn uid() -> Option<pgrx::Uuid> {
    current().sub.map(pgrx::Uuid::from_bytes)
}

/// Version-1 calling convention record of [`dana_uid_fast`], as `PG_FUNCTION_INFO_V1` makes it.
#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_dana_uid_fast() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

extern "C-unwind" {
    /// PostgreSQL's `palloc`, called directly rather than through pgrx's binding, which sets up
    /// an error boundary (a `sigsetjmp`) per call.
    #[link_name = "palloc"]
    fn palloc_unguarded(size: pg_sys::Size) -> *mut std::ffi::c_void;
}

/// `dana.uid()` as PostgreSQL calls it. Written against the raw calling convention because an
/// unwrapped `user_id = dana.uid()` policy calls it once per row, and pgrx's wrapper (panic
/// guard, and a guarded `palloc` for the by-reference uuid) cost more than the rest of the
/// call: ~360 instructions per row (BENCHMARKS.md).
///
/// When the memo holds the claims, nothing here can fail or panic: two atomic reads, one
/// `palloc` of 16 bytes (an out-of-memory error jumps out of this frame, which owns nothing
/// that needs dropping) and a copy. Anything else goes through pgrx's own wrapper of [`uid`],
/// with its guard.
///
/// # Safety
/// Called by PostgreSQL with a valid `fcinfo`, as for any V1 function.
#[no_mangle]
#[doc(hidden)]
pub unsafe extern "C-unwind" fn dana_uid_fast(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    match UID_STATE.load(Ordering::Relaxed) {
        UID_SET => {
            // SAFETY: palloc returns 16 writable bytes (MAXALIGNed) in the current memory context,
            // where PostgreSQL expects a by-reference result.
            let out = palloc_unguarded(16) as *mut [u64; 2];
            out.write([
                UID_BYTES[0].load(Ordering::Relaxed),
                UID_BYTES[1].load(Ordering::Relaxed),
            ]);
            pg_sys::Datum::from(out)
        }
        UID_NULL => {
            // SAFETY: fcinfo is valid for the call.
            (*fcinfo).isnull = true;
            pg_sys::Datum::from(0usize)
        }
        // SAFETY: the same call, handed to pgrx's guarded wrapper (which fills the memo).
        _ => uid_wrapper(fcinfo),
    }
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

/// The caller's role in their tenant (`app_metadata.role`), NULL without a tenant.
#[pg_extern(stable, parallel_safe)]
fn tenant_role() -> Option<String> {
    current().role_in_tenant().map(str::to_owned)
}

/// Owner or admin of the tenant `dana.tenant_id()`; that tenant only.
#[pg_extern(stable, parallel_safe)]
fn is_tenant_admin() -> bool {
    current().is_tenant_admin()
}

/// Owner of the tenant `dana.tenant_id()`.
#[pg_extern(stable, parallel_safe)]
fn is_tenant_owner() -> bool {
    current().is_tenant_owner()
}

/// The service role, or a user with `app_metadata.platform_admin = true`: every tenant's rows.
#[pg_extern(stable, parallel_safe)]
fn is_platform_admin() -> bool {
    current().is_platform_admin()
}

/// Deprecated alias of [`is_platform_admin`], kept so policies written against 0.1 still load.
/// It used to mean "app_metadata.role = admin", which let a tenant's admin act for the whole
/// platform; it now fails closed to the wider scope's rule.
#[pg_extern(stable, parallel_safe)]
fn is_admin() -> bool {
    current().is_platform_admin()
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
COMMENT ON FUNCTION dana.tenant_role() IS 'The caller''s role in the tenant dana.tenant_id() (app_metadata.role: owner, admin, member); NULL without a tenant.';
COMMENT ON FUNCTION dana.is_tenant_admin() IS 'True for an owner or admin of the tenant dana.tenant_id(). Scope: that tenant''s rows only; combine it with the tenant column in policies.';
COMMENT ON FUNCTION dana.is_tenant_owner() IS 'True for an owner of the tenant dana.tenant_id().';
COMMENT ON FUNCTION dana.is_platform_admin() IS 'True for the service role or a user whose app_metadata.platform_admin is true (only the service role writes app_metadata). Scope: the whole platform (catalogues, every user''s subscriptions and usage).';
COMMENT ON FUNCTION dana.is_admin() IS 'Deprecated: the same as dana.is_platform_admin(). Write dana.is_platform_admin() or dana.is_tenant_admin() to say which scope a policy means.';
COMMENT ON FUNCTION dana.has_role(text) IS 'True when the argument is the role claim, app_metadata.role, or an element of app_metadata.roles. Carries no scope: prefer is_tenant_admin() / is_platform_admin() in policies.';
"#,
    name = "claims_comments",
    requires = [
        jwt,
        uid,
        role,
        email,
        tenant_id,
        tenant_role,
        is_tenant_admin,
        is_tenant_owner,
        is_platform_admin,
        is_admin,
        has_role
    ]
);
