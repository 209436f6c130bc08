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

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    integrations::secrets::define_settings();
    // SAFETY: _PG_init runs once per backend, before any of our functions.
    unsafe { claims::install_statement_hook() };
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests;

/// Used by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    /// The test cluster gets an encryption keyring, as `scripts/dev up` gives the local one.
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "dana.secret_keys = '1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=,2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI='",
        ]
    }
}
