//! The BFF's settings: the Supabase project's (shared names, see `dana_supabase::settings`) plus
//! the gateway's own, all prefixed `BFF_`.

use dana_supabase::{EnvReader, SettingsError, SupabaseSettings};
use http::HeaderValue;
use std::net::SocketAddr;
use std::time::Duration;

/// Heads larger than this are refused by the HTTP parser itself (a 431 without a body); the
/// BFF's own limit, below it, answers 431 with the usual JSON body.
pub const HEADER_BYTES_HARD_LIMIT: usize = 256 * 1024;
/// Header fields per request; more are refused by the HTTP parser (431, no body).
pub const MAX_HEADER_FIELDS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct BffSettings {
    pub supabase: SupabaseSettings,
    /// `BFF_LISTEN`, default 127.0.0.1:54321 (the API port `supabase start` uses).
    pub listen: SocketAddr,
    /// `BFF_CORS_ORIGINS`: comma-separated origins allowed to call from a browser. Empty: none.
    pub cors_origins: Vec<HeaderValue>,
    /// `BFF_MAX_BODY_BYTES`: request bodies above this get 413 (default 10 MiB).
    pub max_body_bytes: u64,
    /// `BFF_UPSTREAM_TIMEOUT_SECS`: how long PostgREST may take to start answering (default 30 s).
    pub upstream_timeout: Duration,
    /// `BFF_SHUTDOWN_GRACE_SECS`: how long in-flight requests may finish after SIGTERM (default 30 s).
    pub shutdown_grace: Duration,
    /// `BFF_LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `BFF_WORKER_THREADS`: request-handling threads (default: one per CPU core).
    pub worker_threads: usize,
    /// `BFF_MAX_HEADER_BYTES`: request heads (request line and headers) above this get 431
    /// (default 32 KiB, at most [`HEADER_BYTES_HARD_LIMIT`]).
    pub max_header_bytes: usize,
    /// `BFF_OPERATOR_TOKEN`: the operator's token. `/metrics` and the reasons behind `/readyz`
    /// need `Authorization: Bearer <token>`; without a token set, `/metrics` is off.
    pub operator_token: Option<String>,
}

impl BffSettings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::read(EnvReader::from_process_env())
    }

    pub fn read(mut env: EnvReader<'_>) -> Result<Self, SettingsError> {
        let supabase = SupabaseSettings::read(&mut env);
        let listen = env.parsed(
            "BFF_LISTEN",
            SocketAddr::from(([127, 0, 0, 1], 54321)),
            "a host:port address",
        );
        let cors_origins = env
            .optional("BFF_CORS_ORIGINS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .filter_map(|origin| match url::Url::parse(origin) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.path() == "/" && !origin.ends_with('/') => {
                    HeaderValue::from_str(origin).ok()
                }
                _ => {
                    env.problem(format!(
                        "BFF_CORS_ORIGINS: {origin:?} is not an origin like https://app.example.com (scheme, host, optional port; no path, no '*')"
                    ));
                    None
                }
            })
            .collect();
        let max_body_bytes =
            env.parsed("BFF_MAX_BODY_BYTES", 10 * 1024 * 1024, "a number of bytes");
        let upstream_timeout = env.seconds("BFF_UPSTREAM_TIMEOUT_SECS", Duration::from_secs(30));
        let shutdown_grace = env.seconds("BFF_SHUTDOWN_GRACE_SECS", Duration::from_secs(30));
        let log_format = match env.optional("BFF_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                env.problem(format!("BFF_LOG_FORMAT={other:?} must be text or json"));
                LogFormat::Text
            }
        };
        let operator_token = env.optional("BFF_OPERATOR_TOKEN");
        if operator_token.as_ref().is_some_and(|t| t.len() < 16) {
            env.problem("BFF_OPERATOR_TOKEN must be at least 16 characters");
        }
        let max_header_bytes = env.parsed("BFF_MAX_HEADER_BYTES", 32 * 1024, "a number of bytes");
        if !(1024..HEADER_BYTES_HARD_LIMIT).contains(&max_header_bytes) {
            env.problem(format!(
                "BFF_MAX_HEADER_BYTES must be from 1024 to {}",
                HEADER_BYTES_HARD_LIMIT - 1
            ));
        }
        let cores = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1);
        let worker_threads = env.parsed("BFF_WORKER_THREADS", cores, "a number of threads");
        if worker_threads == 0 {
            env.problem("BFF_WORKER_THREADS must be at least 1");
        }
        if upstream_timeout.is_zero() {
            env.problem("BFF_UPSTREAM_TIMEOUT_SECS must be above 0");
        }
        let settings = supabase.map(|supabase| Self {
            supabase,
            listen,
            cors_origins,
            max_body_bytes,
            upstream_timeout,
            shutdown_grace,
            log_format,
            worker_threads,
            max_header_bytes,
            operator_token,
        });
        env.finish(settings)
            .map(|s| s.expect("settings are complete when no problem was found"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(extra: &[(&str, &str)]) -> Result<BffSettings, SettingsError> {
        let mut map: HashMap<String, String> = [
            ("POSTGREST_URL", "http://127.0.0.1:3000"),
            ("BFF_DB_URL", "postgres://x"),
            ("ANON_KEY", "a"),
            ("SERVICE_ROLE_KEY", "s"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        map.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        BffSettings::read(EnvReader::new(move |k| map.get(k).cloned()))
    }

    #[test]
    fn defaults_fit_the_local_stack() {
        let s = read(&[]).unwrap();
        assert_eq!(s.listen.port(), 54321);
        assert_eq!(s.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(s.max_header_bytes, 32 * 1024);
        assert_eq!(s.operator_token, None);
        assert!(s.cors_origins.is_empty());
        assert_eq!(s.log_format, LogFormat::Text);
    }

    #[test]
    fn bad_gateway_settings_are_each_named() {
        let err = read(&[
            ("BFF_LISTEN", "everywhere"),
            (
                "BFF_CORS_ORIGINS",
                "https://ok.example.com, *, https://x.example.com/path",
            ),
            ("BFF_MAX_BODY_BYTES", "-1"),
            ("BFF_LOG_FORMAT", "xml"),
            ("BFF_MAX_HEADER_BYTES", "9999999"),
            ("BFF_OPERATOR_TOKEN", "short"),
        ])
        .unwrap_err();
        assert_eq!(err.problems.len(), 7, "{err}");
        let text = err.to_string();
        for needle in [
            "BFF_LISTEN",
            "\"*\"",
            "/path",
            "BFF_MAX_BODY_BYTES",
            "BFF_LOG_FORMAT",
            "BFF_MAX_HEADER_BYTES",
            "BFF_OPERATOR_TOKEN",
        ] {
            assert!(text.contains(needle), "{needle} missing in {text}");
        }
    }

    #[test]
    fn cors_origins_are_parsed() {
        let s = read(&[(
            "BFF_CORS_ORIGINS",
            "http://localhost:3000, https://app.example.com",
        )])
        .unwrap();
        assert_eq!(
            s.cors_origins,
            ["http://localhost:3000", "https://app.example.com"]
        );
    }
}
