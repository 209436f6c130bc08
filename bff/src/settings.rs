//! The BFF's settings: the Supabase project's (shared names, see `dana_supabase::settings`) plus
//! the gateway's own, all prefixed `BFF_`.

use dana_storage::StorageSettings;
use dana_supabase::{EnvReader, SettingsError, SupabaseSettings};
use http::HeaderValue;
use std::net::SocketAddr;
use std::time::Duration;

/// Heads larger than this are refused by the HTTP parser itself (a 431 without a body); the
/// BFF's own limit, below it, answers 431 with the usual JSON body.
pub const HEADER_BYTES_HARD_LIMIT: usize = 256 * 1024;

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
    /// `BFF_WORKER_THREADS`: event loops, one thread each (default: half the CPU cores, at least 1).
    pub worker_threads: usize,
    /// `BFF_MAX_HEADER_BYTES`: request heads (request line and headers) above this get 431
    /// (default 32 KiB, at most [`HEADER_BYTES_HARD_LIMIT`]).
    pub max_header_bytes: usize,
    /// `BFF_OPERATOR_TOKEN`: the operator's token. `/metrics` and the reasons behind `/readyz`
    /// need `Authorization: Bearer <token>`; without a token set, `/metrics` is off.
    pub operator_token: Option<String>,
    /// The S3 bucket of knowledge files; `None` when `STORAGE_S3_URL` is not set (the file
    /// routes then answer 501 naming it, the rest of the BFF works).
    pub storage: Option<StorageSettings>,
    pub knowledge: KnowledgeSettings,
    /// `SLACK_API_URL`: Slack's Web API (default `https://slack.com/api`), which the Slack
    /// routes call with each user's own stored bot token.
    pub slack_api_url: String,
    /// Sign-in sessions; `None` when `SUPABASE_AUTH_URL` is not set (the `/bff` and `/auth/v1`
    /// routes then answer 501 naming it, the rest of the BFF works).
    pub sessions: Option<SessionSettings>,
    /// The OAuth providers this deployment has credentials for (`SLACK_CLIENT_ID`, …).
    pub providers: Vec<crate::integrations::providers::ConfiguredProvider>,
}

/// Sessions and sign-in through Supabase Auth.
#[derive(Clone)]
pub struct SessionSettings {
    /// `SUPABASE_AUTH_URL`: Supabase Auth's base (`https://<ref>.supabase.co/auth/v1`).
    pub auth_url: url::Url,
    /// `BFF_SESSION_KEY`: 32 bytes (base64 or 64 hex digits) sealing the tokens kept for sessions.
    pub key: [u8; 32],
    /// `BFF_SESSION_LIFETIME_SECS`: how long a session lasts without use (default 7 days; each
    /// refresh moves it on). Keep it within Supabase Auth's own session limits.
    pub lifetime: Duration,
    /// `BFF_REFRESH_MARGIN_SECS`: access tokens are refreshed this long before they expire
    /// (default 60 s).
    pub refresh_margin: Duration,
}

impl std::fmt::Debug for SessionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSettings")
            .field("auth_url", &self.auth_url.as_str())
            .field("key", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .field("refresh_margin", &self.refresh_margin)
            .finish()
    }
}

/// The session settings: all or nothing around `SUPABASE_AUTH_URL`.
pub fn read_sessions(env: &mut EnvReader<'_>) -> Option<SessionSettings> {
    let auth_url = env.optional_url("SUPABASE_AUTH_URL");
    let key = env.optional("BFF_SESSION_KEY");
    let lifetime = env.seconds_up_to(
        "BFF_SESSION_LIFETIME_SECS",
        Duration::from_secs(7 * 24 * 3600),
        90 * 24 * 3600,
    );
    let refresh_margin = env.seconds("BFF_REFRESH_MARGIN_SECS", Duration::from_secs(60));
    if lifetime < Duration::from_secs(300) {
        env.problem("BFF_SESSION_LIFETIME_SECS must be at least 300");
    }
    let Some(auth_url) = auth_url else {
        if key.is_some() {
            env.problem(
                "BFF_SESSION_KEY is set but SUPABASE_AUTH_URL is not: sessions need Supabase Auth",
            );
        }
        return None;
    };
    let Some(key) = key else {
        env.problem("BFF_SESSION_KEY is required with SUPABASE_AUTH_URL (32 random bytes, base64: `openssl rand -base64 32`)");
        return None;
    };
    match parse_key(&key) {
        Some(key) => Some(SessionSettings {
            auth_url,
            key,
            lifetime,
            refresh_margin,
        }),
        None => {
            env.problem("BFF_SESSION_KEY must be 32 bytes, as base64 or 64 hex digits");
            None
        }
    }
}

fn parse_key(text: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
            .ok()?
    };
    bytes.try_into().ok()
}

/// Limits on knowledge files.
#[derive(Debug, Clone)]
pub struct KnowledgeSettings {
    /// `KNOWLEDGE_MAX_FILE_BYTES` (default 100 MiB).
    pub max_file_bytes: u64,
    /// `KNOWLEDGE_MIME_TYPES`: allowed types, `type/*` wildcards allowed.
    pub mime_types: Vec<String>,
}

/// The types a knowledge base takes by default: documents, data and pictures.
pub const DEFAULT_MIME_TYPES: &[&str] = &[
    "application/pdf",
    "text/plain",
    "text/markdown",
    "text/csv",
    "application/json",
    "text/html",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "image/png",
    "image/jpeg",
    "image/webp",
];

impl KnowledgeSettings {
    /// True when `content_type` (parameters ignored) is on the list.
    pub fn allows(&self, content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        self.mime_types
            .iter()
            .any(|allowed| match allowed.strip_suffix("/*") {
                Some(kind) => essence.split('/').next() == Some(kind) && essence.contains('/'),
                None => *allowed == essence,
            })
    }
}

/// The bucket's settings, under Supabase's names for its S3 endpoint where they exist. `None`
/// when `STORAGE_S3_URL` is unset; the others are then required.
pub fn read_storage(env: &mut EnvReader<'_>) -> Option<StorageSettings> {
    let endpoint = env.optional_url("STORAGE_S3_URL")?;
    let access_key_id = env.required("S3_PROTOCOL_ACCESS_KEY_ID", "the S3 access key id");
    let secret_access_key = env.required("S3_PROTOCOL_ACCESS_KEY_SECRET", "the S3 secret key");
    let region = env
        .optional("S3_REGION")
        .unwrap_or_else(|| "us-east-1".to_owned());
    let bucket = env
        .optional("KNOWLEDGE_BUCKET")
        .unwrap_or_else(|| "knowledge-files".to_owned());
    let part_size = env.parsed(
        "STORAGE_PART_SIZE_BYTES",
        StorageSettings::DEFAULT_PART_SIZE,
        "a number of bytes",
    );
    if part_size < StorageSettings::MIN_PART_SIZE {
        env.problem("STORAGE_PART_SIZE_BYTES must be at least 5 MiB (S3's smallest part)");
    }
    let parallel_parts = env.parsed("STORAGE_PARALLEL_PARTS", 2, "a number");
    Some(StorageSettings {
        endpoint,
        region,
        access_key_id,
        secret_access_key,
        bucket,
        force_path_style: env.parsed("STORAGE_S3_FORCE_PATH_STYLE", true, "true or false"),
        part_size,
        parallel_parts,
    })
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
        // Half the cores: the BFF shares its machine (or its CPU quota) with PostgREST and
        // PostgreSQL, whose work a proxied request waits on, and fewer event loops batch more
        // events per wake-up. On 2 cores one worker spent ~15 µs less CPU per proxied request
        // than two and served more requests per second (BENCHMARKS.md).
        let worker_threads = env.parsed(
            "BFF_WORKER_THREADS",
            (cores / 2).max(1),
            "a number of threads",
        );
        if worker_threads == 0 {
            env.problem("BFF_WORKER_THREADS must be at least 1");
        }
        if upstream_timeout.is_zero() {
            env.problem("BFF_UPSTREAM_TIMEOUT_SECS must be above 0");
        }
        let storage = read_storage(&mut env);
        let knowledge = KnowledgeSettings {
            max_file_bytes: env.parsed(
                "KNOWLEDGE_MAX_FILE_BYTES",
                100 * 1024 * 1024,
                "a number of bytes",
            ),
            mime_types: env
                .optional("KNOWLEDGE_MIME_TYPES")
                .map(|list| {
                    list.split(',')
                        .map(|t| t.trim().to_ascii_lowercase())
                        .filter(|t| !t.is_empty())
                        .collect()
                })
                .unwrap_or_else(|| DEFAULT_MIME_TYPES.iter().map(|t| t.to_string()).collect()),
        };
        let slack_api_url = env
            .optional_url("SLACK_API_URL")
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| "https://slack.com/api".to_owned());
        let sessions = read_sessions(&mut env);
        let providers = crate::integrations::providers::read(&mut env);
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
            storage,
            knowledge,
            slack_api_url,
            sessions,
            providers,
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
    fn storage_is_optional_but_complete_when_named() {
        assert!(read(&[]).unwrap().storage.is_none());
        let err = read(&[("STORAGE_S3_URL", "http://127.0.0.1:54333")]).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        let s = read(&[
            ("STORAGE_S3_URL", "http://127.0.0.1:54333"),
            ("S3_PROTOCOL_ACCESS_KEY_ID", "id"),
            ("S3_PROTOCOL_ACCESS_KEY_SECRET", "secret"),
        ])
        .unwrap();
        let storage = s.storage.unwrap();
        assert_eq!(storage.bucket, "knowledge-files");
        assert!(storage.force_path_style);
    }

    #[test]
    fn mime_types_match_with_wildcards_and_parameters() {
        let s = read(&[("KNOWLEDGE_MIME_TYPES", "application/pdf, image/*")]).unwrap();
        assert!(s.knowledge.allows("application/pdf"));
        assert!(s.knowledge.allows("Image/PNG; q=1"));
        assert!(!s.knowledge.allows("text/html"));
        assert!(!s.knowledge.allows("image"));
        assert!(read(&[])
            .unwrap()
            .knowledge
            .allows("text/plain;charset=UTF-8"));
    }

    #[test]
    fn sessions_need_the_auth_url_and_a_32_byte_key() {
        assert!(read(&[]).unwrap().sessions.is_none());
        let err = read(&[("SUPABASE_AUTH_URL", "http://127.0.0.1:54324")]).unwrap_err();
        assert!(
            err.to_string().contains("BFF_SESSION_KEY is required"),
            "{err}"
        );
        let err = read(&[("BFF_SESSION_KEY", "AAAA")]).unwrap_err();
        assert!(
            err.to_string().contains("SUPABASE_AUTH_URL is not"),
            "{err}"
        );
        let err = read(&[
            ("SUPABASE_AUTH_URL", "http://127.0.0.1:54324"),
            ("BFF_SESSION_KEY", "c2hvcnQ="),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
        let s = read(&[
            ("SUPABASE_AUTH_URL", "http://127.0.0.1:54324"),
            (
                "BFF_SESSION_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ])
        .unwrap();
        let sessions = s.sessions.unwrap();
        assert_eq!(sessions.key[31], 31);
        assert_eq!(sessions.lifetime, Duration::from_secs(7 * 24 * 3600));
        assert!(!format!("{sessions:?}").contains("AAEC"));
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
