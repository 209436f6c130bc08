//! `dana`: the database half of Dana.
//!
//! * [`claims`]: `dana.jwt()`, `dana.uid()` and the other helpers RLS policies call;
//! * [`rls`]: policy sets applied in one call, and `dana.rls_audit()`;
//! * [`timestamps`]: the `dana.touch_updated_at()` trigger and `dana.track_timestamps()`;
//! * [`integrations`]: validation, encrypted secrets and the status life cycle of
//!   `public.integration_configs`;
//! * [`api_keys`]: API keys created and revoked through functions, never written directly;
//! * [`knowledge`]: the columns of `public.knowledge_files` only the system sets.
//!
//! Privileges: every function is the database owner's (`pg_database_owner`) and superusers';
//! API roles get only what policies, defaults and the user-facing calls need (`privileges`
//! below), and the service role's three secret functions are granted by the migrations.

use pgrx::prelude::*;

pub mod api_keys;
pub mod claims;
pub mod integrations;
pub mod knowledge;
pub mod rls;
pub mod timestamps;

::pgrx::pg_module_magic!();

extension_sql_file!(
    "../sql/timestamps.sql",
    name = "timestamps",
    requires = [timestamps::touch_updated_at]
);

extension_sql!(
    r#"
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA dana FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dana TO pg_database_owner;
-- What any role needs: the claim helpers policies and column defaults call, and the calls a
-- signed-in user makes for themself (each checks the caller and runs under their RLS).
GRANT EXECUTE ON FUNCTION
  dana.jwt(), dana.uid(), dana.role(), dana.email(), dana.tenant_id(), dana.tenant_role(),
  dana.is_tenant_admin(), dana.is_tenant_owner(), dana.is_platform_admin(), dana.is_admin(),
  dana.has_role(text),
  dana.upsert_integration_config(text, jsonb), dana.integration_types(),
  dana.create_api_key(text, text[], integer), dana.revoke_api_key(uuid)
  TO PUBLIC;
"#,
    name = "privileges",
    finalize
);

/// Raises an ERROR with a SQLSTATE, detail and hint (PostgREST passes all three to the client).
pub(crate) fn raise(
    code: pgrx::PgSqlErrorCode,
    message: String,
    detail: Option<String>,
    hint: Option<&str>,
) -> ! {
    let mut report = pgrx::pg_sys::panic::ErrorReport::new(code, message, "dana");
    if let Some(detail) = detail {
        report = report.set_detail(detail);
    }
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    integrations::secrets::define_settings();
    claims::define_settings();
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Used by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    /// The test cluster gets an encryption keyring, as `scripts/dev up` gives the local one.
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'dana'",
            "dana.secret_keys = '1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=,2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI='",
        ]
    }
}
