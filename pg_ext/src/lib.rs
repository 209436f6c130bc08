//! `dana`: the database half of Dana.
//!
//! * [`claims`]: `dana.jwt()`, `dana.uid()` and the other helpers RLS policies call;
//! * [`rls`]: policy sets applied in one call, and `dana.rls_audit()`;
//! * [`timestamps`]: the `dana.touch_updated_at()` trigger and `dana.track_timestamps()`;
//! * [`integrations`]: validation, encrypted secrets and the status life cycle of
//!   `public.integration_configs`.

use pgrx::prelude::*;

pub mod claims;
pub mod integrations;
pub mod rls;
pub mod timestamps;

::pgrx::pg_module_magic!();

extension_sql_file!(
    "../sql/timestamps.sql",
    name = "timestamps",
    requires = [timestamps::touch_updated_at]
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
    // SAFETY: _PG_init runs once per backend, before any of our functions.
    unsafe { claims::install_statement_hook() };
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
