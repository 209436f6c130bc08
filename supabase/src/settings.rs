//! Settings of the Supabase project, read from the environment under the names `scripts/dev env`
//! prints, so `set -a; eval "$(scripts/dev env)"` is all a local run needs.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use url::Url;

/// Every missing or malformed setting, named, so one start-up attempt shows them all.
#[derive(Debug, thiserror::Error)]
pub struct SettingsError {
    pub problems: Vec<String>,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} setting(s) missing or malformed:",
            self.problems.len()
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Reads settings from a key→value source (the process environment in production, a map in
/// tests), collecting problems instead of stopping at the first.
pub struct EnvReader<'a> {
    lookup: Lookup<'a>,
    problems: Vec<String>,
}

impl Default for EnvReader<'static> {
    fn default() -> Self {
        Self::from_process_env()
    }
}

impl<'a> EnvReader<'a> {
    pub fn from_process_env() -> EnvReader<'static> {
        EnvReader::new(|name| std::env::var(name).ok())
    }

    pub fn new(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Self {
            lookup: Box::new(lookup),
            problems: Vec::new(),
        }
    }

    /// The trimmed value, `None` when unset or blank.
    pub fn optional(&mut self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&mut self, name: &str, what: &str) -> String {
        self.optional(name).unwrap_or_else(|| {
            self.problems.push(format!("{name} is not set ({what})"));
            String::new()
        })
    }

    pub fn parsed<T: FromStr>(&mut self, name: &str, default: T, what: &str) -> T
    where
        T::Err: fmt::Display,
    {
        match self.optional(name) {
            None => default,
            Some(raw) => raw.parse().unwrap_or_else(|e| {
                self.problems
                    .push(format!("{name}={raw:?} is not {what}: {e}"));
                default
            }),
        }
    }

    pub fn url(&mut self, name: &str, what: &str) -> Option<Url> {
        let raw = self.required(name, what);
        self.parse_url(name, &raw)
    }

    pub fn optional_url(&mut self, name: &str) -> Option<Url> {
        let raw = self.optional(name)?;
        self.parse_url(name, &raw)
    }

    fn parse_url(&mut self, name: &str, raw: &str) -> Option<Url> {
        if raw.is_empty() {
            return None;
        }
        match Url::parse(raw) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            Ok(_) => {
                self.problems
                    .push(format!("{name}={raw:?} must be an http:// or https:// URL"));
                None
            }
            Err(e) => {
                self.problems
                    .push(format!("{name}={raw:?} is not a URL: {e}"));
                None
            }
        }
    }

    pub fn seconds(&mut self, name: &str, default: Duration) -> Duration {
        self.seconds_up_to(name, default, 86_400)
    }

    /// Like [`EnvReader::seconds`], with another upper bound (lifetimes counted in days).
    pub fn seconds_up_to(&mut self, name: &str, default: Duration, max: u64) -> Duration {
        let secs = self.parsed(name, default.as_secs_f64(), "a number of seconds");
        if !(0.0..=max as f64).contains(&secs) {
            self.problems
                .push(format!("{name}={secs} must be between 0 and {max} seconds"));
            return default;
        }
        Duration::from_secs_f64(secs)
    }

    /// Records a problem found while checking values together.
    pub fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// `Ok(value)` when nothing was missing or malformed.
    pub fn finish<T>(self, value: T) -> Result<T, SettingsError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(SettingsError {
                problems: self.problems,
            })
        }
    }
}

/// True for `localhost` and loopback addresses.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Where the asymmetric signing keys of the project come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `https://<project>.supabase.co/auth/v1/.well-known/jwks.json`; refetched when a token names
    /// a key id not yet seen (key rotation), at most every [`crate::jwt::JWKS_REFETCH_INTERVAL`].
    Url(Url),
    File(PathBuf),
}

/// How access tokens are checked.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// The project's legacy HS256 secret (`JWT_SECRET`); optional when a JWKS is given.
    pub secret: Option<String>,
    pub jwks: Option<JwksSource>,
    /// When set, a token that carries an `aud` claim must name it (PostgREST's `jwt-aud`).
    pub audience: Option<String>,
    /// Allowed clock skew on `exp`, `nbf` and `iat` (PostgREST allows 30 s).
    pub leeway: Duration,
}

/// The Supabase project the BFF fronts.
#[derive(Debug, Clone)]
pub struct SupabaseSettings {
    /// PostgREST's own address (without `/rest/v1`).
    pub postgrest_url: Url,
    /// PostgREST's admin server, whose `/ready` says whether it can reach the database.
    pub postgrest_admin_url: Option<Url>,
    /// The BFF's own database login (least privileged; `dana_bff` on the local stack).
    pub db_url: String,
    /// Where browsers and supabase-js reach the BFF (`API_EXTERNAL_URL`, as Supabase names it):
    /// the base of links the BFF hands out (signed URLs, OAuth redirect URIs).
    pub api_external_url: Url,
    pub anon_key: String,
    pub service_role_key: String,
    pub jwt: JwtSettings,
}

impl SupabaseSettings {
    /// Reads the project settings into `env`'s problem list; `None` when one was unusable.
    pub fn read(env: &mut EnvReader<'_>) -> Option<Self> {
        let postgrest_url = env.url(
            "POSTGREST_URL",
            "PostgREST's address, e.g. http://127.0.0.1:3000",
        );
        let postgrest_admin_url = env.optional_url("POSTGREST_ADMIN_URL");
        let db_url = env.required(
            "BFF_DB_URL",
            "the BFF's PostgreSQL connection URL, as its own least-privileged role",
        );
        let api_external_url = env
            .optional_url("API_EXTERNAL_URL")
            .unwrap_or_else(|| Url::parse("http://127.0.0.1:54321").expect("a valid URL"));
        let anon_key = env.required("ANON_KEY", "the project's anon API key");
        let service_role_key =
            env.required("SERVICE_ROLE_KEY", "the project's service_role API key");
        let secret = env.optional("JWT_SECRET");
        let jwks = match (env.optional("JWT_JWKS_URL"), env.optional("JWT_JWKS_FILE")) {
            (Some(_), Some(_)) => {
                env.problem("JWT_JWKS_URL and JWT_JWKS_FILE are both set; set one");
                None
            }
            (Some(_), None) => match env.optional_url("JWT_JWKS_URL") {
                // Keys fetched in clear could be swapped on the way: only loopback may use http.
                Some(url) if url.scheme() == "http" && !is_loopback(&url) => {
                    env.problem(format!(
                        "JWT_JWKS_URL={url} must be an https:// URL (http is accepted for loopback hosts only)"
                    ));
                    None
                }
                other => other.map(JwksSource::Url),
            },
            (None, Some(path)) => Some(JwksSource::File(path.into())),
            (None, None) => None,
        };
        match &secret {
            None if jwks.is_none() => env.problem(
                "JWT_SECRET is not set (the project's JWT secret); set it, or JWT_JWKS_URL / JWT_JWKS_FILE",
            ),
            Some(s) if s.len() < 32 => env.problem("JWT_SECRET must be at least 32 characters (as PostgREST requires)"),
            _ => {}
        }
        let audience = env.optional("JWT_AUDIENCE");
        let leeway = env.seconds("JWT_LEEWAY_SECS", Duration::from_secs(30));
        Some(Self {
            postgrest_url: postgrest_url?,
            postgrest_admin_url,
            db_url,
            api_external_url,
            anon_key,
            service_role_key,
            jwt: JwtSettings {
                secret,
                jwks,
                audience,
                leeway,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<SupabaseSettings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut env = EnvReader::new(move |name| map.get(name).cloned());
        let settings = SupabaseSettings::read(&mut env);
        env.finish(settings)
            .map(|s| s.expect("no problems means settings"))
    }

    #[test]
    fn every_missing_setting_is_named_at_once() {
        let err = read(&[]).unwrap_err();
        let all = err.to_string();
        for name in [
            "POSTGREST_URL",
            "BFF_DB_URL",
            "ANON_KEY",
            "SERVICE_ROLE_KEY",
            "JWT_SECRET",
        ] {
            assert!(all.contains(name), "{name} not named in: {all}");
        }
        assert_eq!(err.problems.len(), 5, "{all}");
    }

    #[test]
    fn malformed_values_are_named_with_their_value() {
        let err = read(&[
            ("POSTGREST_URL", "ftp://x"),
            ("BFF_DB_URL", "postgres://x"),
            ("ANON_KEY", "a"),
            ("SERVICE_ROLE_KEY", "s"),
            ("JWT_SECRET", "short"),
            ("JWT_LEEWAY_SECS", "soon"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("POSTGREST_URL=\"ftp://x\" must be an http"),
            "{err}"
        );
        assert!(err.contains("at least 32 characters"), "{err}");
        assert!(err.contains("JWT_LEEWAY_SECS=\"soon\""), "{err}");
    }

    #[test]
    fn complete_settings_are_read() {
        let s = read(&[
            ("POSTGREST_URL", "http://127.0.0.1:3000"),
            ("BFF_DB_URL", "postgres://x"),
            ("ANON_KEY", "a"),
            ("SERVICE_ROLE_KEY", "s"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("JWT_AUDIENCE", "authenticated"),
        ])
        .unwrap();
        assert_eq!(s.postgrest_url.as_str(), "http://127.0.0.1:3000/");
        assert_eq!(s.jwt.audience.as_deref(), Some("authenticated"));
        assert_eq!(s.jwt.leeway, Duration::from_secs(30));
    }

    #[test]
    fn a_jwks_url_must_be_https_unless_it_is_local() {
        let base = [
            ("POSTGREST_URL", "http://127.0.0.1:3000"),
            ("BFF_DB_URL", "postgres://x"),
            ("ANON_KEY", "a"),
            ("SERVICE_ROLE_KEY", "s"),
        ];
        let with = |url: &str| {
            let mut pairs = base.to_vec();
            pairs.push(("JWT_JWKS_URL", url));
            read(&pairs)
        };
        let err = with("http://auth.example.com/.well-known/jwks.json").unwrap_err();
        assert!(err.to_string().contains("must be an https:// URL"), "{err}");
        assert!(with("https://auth.example.com/.well-known/jwks.json").is_ok());
        assert!(with("http://127.0.0.1:9999/jwks.json").is_ok());
        assert!(with("http://localhost:9999/jwks.json").is_ok());
    }

    #[test]
    fn a_jwks_alone_is_enough_to_verify_tokens() {
        let s = read(&[
            ("POSTGREST_URL", "http://127.0.0.1:3000"),
            ("BFF_DB_URL", "postgres://x"),
            ("ANON_KEY", "a"),
            ("SERVICE_ROLE_KEY", "s"),
            ("JWT_JWKS_FILE", "/etc/jwks.json"),
        ])
        .unwrap();
        assert_eq!(s.jwt.jwks, Some(JwksSource::File("/etc/jwks.json".into())));
    }
}
