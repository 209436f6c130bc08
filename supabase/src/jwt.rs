//! Access-token verification as Supabase's API gateway and PostgREST do it.
//!
//! Supabase projects sign with the legacy HS256 project secret, with asymmetric keys published
//! as a JWKS (ES256/RS256/EdDSA), or both during a migration. [`JwtVerifier`] accepts either:
//! an `HS256` token is checked with the secret only, an asymmetric one with the JWKS key its
//! header names (never the other way round, so a public key can never serve as an HMAC secret).

use crate::settings::{JwksSource, JwtSettings};
use crate::token_cache::{TokenCache, TOKEN_CACHE_CAPACITY, TOKEN_CACHE_MAX_AGE};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::RwLock;

/// A JWKS is fetched at most this often, successful or not, so tokens with made-up key ids (or an
/// unreachable JWKS URL) cannot turn the BFF into a request amplifier against Supabase Auth.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// How long fetched keys are trusted when the answer gives no `Cache-Control: max-age`.
pub const JWKS_DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);
/// Bounds on an answer's `max-age`, so a key revoked at the provider stops verifying soon.
pub const JWKS_MAX_AGE_RANGE: (Duration, Duration) =
    (Duration::from_secs(30), Duration::from_secs(3600));
/// When a refetch fails, keys past their max age keep verifying this much longer (an outage of
/// Supabase Auth should not sign everyone out at once), then the BFF answers 503.
pub const JWKS_STALE_GRACE: Duration = Duration::from_secs(3600);
/// A JWKS answer larger than this is refused (real ones are a few kB).
pub const JWKS_MAX_BYTES: usize = 256 * 1024;

/// The claims Supabase Auth puts in an access token (and the API keys carry: `role` only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// The user id; absent in the anon and service_role API keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The database role PostgREST switches to: `anon`, `authenticated`, `service_role`.
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_anonymous: Option<bool>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub app_metadata: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub user_metadata: Value,
    /// Everything else (`aud`, `iss`, `aal`, custom claims), kept so nothing is lost.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Claims {
    /// The user id as a UUID, when the token belongs to a signed-in user.
    pub fn user_id(&self) -> Option<&str> {
        self.sub.as_deref().filter(|_| self.role == "authenticated")
    }
}

/// Why a token was refused. The messages are PostgREST's own where it has one, so clients that
/// match on them see the same text through the BFF.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("Expected 3 parts in JWT; got {0}")]
    Malformed(usize),
    #[error("JWT cryptographic operation failed")]
    BadSignature,
    #[error("JWT expired")]
    Expired,
    #[error("JWT not yet valid")]
    NotYetValid,
    #[error("JWT issued at future")]
    IssuedInFuture,
    #[error("JWT not in audience")]
    WrongAudience,
    #[error("JWT has no \"role\" claim")]
    MissingRole,
    #[error("JWT algorithm {0} is not accepted")]
    AlgorithmNotAccepted(String),
    #[error("JWT key id {0:?} is not in the project's JWKS")]
    UnknownKey(String),
    #[error("JWT is not valid: {0}")]
    Invalid(String),
    /// The JWKS could not be loaded: the token may be fine, the BFF cannot tell.
    #[error("the signing keys could not be loaded: {0}")]
    KeysUnavailable(String),
}

impl JwtError {
    /// PostgREST's error code for this failure: PGRST301 for tokens that cannot be decoded or
    /// verified, PGRST303 for tokens whose claims are refused.
    pub fn postgrest_code(&self) -> &'static str {
        match self {
            JwtError::Expired
            | JwtError::NotYetValid
            | JwtError::IssuedInFuture
            | JwtError::WrongAudience => "PGRST303",
            _ => "PGRST301",
        }
    }
}

/// A JWKS, when it was fetched, how long it may be trusted, and when a fetch was last tried.
struct KeyCache {
    keys: JwkSet,
    fetched_at: Option<Instant>,
    max_age: Duration,
    last_attempt: Option<Instant>,
    /// Why the last attempt failed, answered to callers until the next attempt is allowed.
    last_error: Option<JwtError>,
}

impl KeyCache {
    fn age(&self) -> Option<Duration> {
        self.fetched_at.map(|at| at.elapsed())
    }
}

/// Verifies access tokens; cheap to clone (shared key cache).
#[derive(Clone)]
pub struct JwtVerifier {
    secret: Option<Arc<DecodingKey>>,
    jwks: Option<JwksSource>,
    cache: Arc<RwLock<KeyCache>>,
    /// Held while a JWKS fetch runs: concurrent misses wait for the one fetch (single flight).
    fetching: Arc<tokio::sync::Mutex<()>>,
    http: reqwest::Client,
    audience: Option<String>,
    leeway: Duration,
    /// Tokens verified already (see `token_cache`).
    verified: Arc<TokenCache>,
}

const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

impl JwtVerifier {
    pub fn new(settings: &JwtSettings) -> Result<Self, JwtError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| JwtError::KeysUnavailable(e.to_string()))?;
        Ok(Self {
            secret: settings
                .secret
                .as_ref()
                .map(|s| Arc::new(DecodingKey::from_secret(s.as_bytes()))),
            jwks: settings.jwks.clone(),
            cache: Arc::new(RwLock::new(KeyCache {
                keys: JwkSet { keys: vec![] },
                fetched_at: None,
                max_age: JWKS_DEFAULT_MAX_AGE,
                last_attempt: None,
                last_error: None,
            })),
            fetching: Arc::new(tokio::sync::Mutex::new(())),
            http,
            audience: settings.audience.clone(),
            leeway: settings.leeway,
            verified: Arc::new(TokenCache::new(TOKEN_CACHE_CAPACITY, TOKEN_CACHE_MAX_AGE)),
        })
    }

    /// Loads the JWKS now, so a bad file or URL is reported at start-up rather than at the first
    /// request. Without a JWKS this does nothing.
    pub async fn preload(&self) -> Result<usize, JwtError> {
        if self.jwks.is_none() {
            return Ok(0);
        }
        let _fetching = self.fetching.lock().await;
        self.reload_keys().await
    }

    /// Verifies a user's access token and returns its claims. When an audience is configured the
    /// token must name it: Supabase Auth always sets `aud`, so a token without one is not its.
    ///
    /// The claims are shared (`Arc`): a token seen before is answered from the cache without a
    /// copy of its claims.
    pub async fn verify(&self, token: &str) -> Result<Arc<Claims>, JwtError> {
        self.verify_with(token, Audience::Required).await
    }

    /// Verifies one of the project's own API keys (the anon and service_role keys, recognised by
    /// the caller comparing the whole key). They carry no `aud`, so none is required; one that
    /// is present must still match.
    pub async fn verify_project_key(&self, token: &str) -> Result<Arc<Claims>, JwtError> {
        self.verify_with(token, Audience::IfPresent).await
    }

    async fn verify_with(&self, token: &str, audience: Audience) -> Result<Arc<Claims>, JwtError> {
        let audience_required = audience == Audience::Required;
        if let Some((claims, key_set)) = self.verified.get(token, audience_required) {
            if self.key_set_current(key_set).await {
                return Ok(claims);
            }
        }
        let (claims, trust) = self.verify_uncached(token, audience).await?;
        let claims = Arc::new(claims);
        let key_set = match trust {
            Trust::Secret => None,
            Trust::Jwks(fetched_at) => Some(fetched_at),
            Trust::StaleJwks => return Ok(claims),
        };
        self.verified
            .insert(token, audience_required, &claims, self.leeway, key_set);
        Ok(claims)
    }

    /// True while the JWKS keys a cached token was verified with (fetched at `key_set`) are the
    /// ones held and within their max age; always true for the HS256 secret (`None`).
    async fn key_set_current(&self, key_set: Option<Instant>) -> bool {
        let Some(fetched_at) = key_set else {
            return true;
        };
        let cache = self.cache.read().await;
        cache.fetched_at == Some(fetched_at) && cache.age().is_some_and(|age| age < cache.max_age)
    }

    /// Tokens verified so far and still kept (for tests of the cache's bounds).
    pub fn cached_tokens(&self) -> usize {
        self.verified.len()
    }

    async fn verify_uncached(
        &self,
        token: &str,
        audience: Audience,
    ) -> Result<(Claims, Trust), JwtError> {
        let parts = token.split('.').count();
        if parts != 3 {
            return Err(JwtError::Malformed(parts));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JwtError::Invalid(e.to_string()))?;
        let (key, trust) = self.key_for(header.alg, header.kid.as_deref()).await?;
        let claims = self.decode(token, header.alg, &key, audience)?;
        if claims.role.is_empty() {
            return Err(JwtError::MissingRole);
        }
        Ok((claims, trust))
    }

    async fn key_for(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<(Arc<DecodingKey>, Trust), JwtError> {
        if alg == Algorithm::HS256 {
            return self
                .secret
                .clone()
                .map(|key| (key, Trust::Secret))
                .ok_or_else(|| JwtError::AlgorithmNotAccepted("HS256".into()));
        }
        if !ASYMMETRIC.contains(&alg) || self.jwks.is_none() {
            return Err(JwtError::AlgorithmNotAccepted(format!("{alg:?}")));
        }
        {
            let cache = self.cache.read().await;
            if let (Some(fetched_at), true) = (
                cache.fetched_at,
                cache.age().is_some_and(|age| age < cache.max_age),
            ) {
                if let Some(key) = cached_key(&cache, alg, kid)? {
                    return Ok((key, Trust::Jwks(fetched_at)));
                }
            }
        }
        // Past its max age (a key revoked at the provider must stop verifying), or an unknown key
        // id (the project may have rotated keys): fetch again, rate-limited.
        let refetched = self.refetch().await;
        let cache = self.cache.read().await;
        let usable = cache
            .age()
            .is_some_and(|age| age < cache.max_age + JWKS_STALE_GRACE);
        let fresh = cache.age().is_some_and(|age| age < cache.max_age);
        match cached_key(&cache, alg, kid)? {
            Some(key) if usable => {
                if let Err(e) = &refetched {
                    tracing::warn!(error = %e, "JWKS refetch failed; verifying with keys past their max age");
                }
                let trust = match (cache.fetched_at, fresh) {
                    (Some(at), true) => Trust::Jwks(at),
                    _ => Trust::StaleJwks,
                };
                Ok((key, trust))
            }
            Some(_) => Err(refetched.err().unwrap_or_else(|| {
                JwtError::KeysUnavailable(
                    "the signing keys are past their max age and could not be fetched again".into(),
                )
            })),
            None => {
                refetched?;
                Err(JwtError::UnknownKey(kid.unwrap_or("").to_owned()))
            }
        }
    }

    /// Fetches the JWKS again, unless a fetch was tried within [`JWKS_REFETCH_INTERVAL`] (then
    /// the keys at hand are all there is). One fetch at a time: concurrent callers wait for it.
    async fn refetch(&self) -> Result<(), JwtError> {
        let _fetching = self.fetching.lock().await;
        {
            let cache = self.cache.read().await;
            if cache
                .last_attempt
                .is_some_and(|at| at.elapsed() < JWKS_REFETCH_INTERVAL)
            {
                return cache.last_error.clone().map_or(Ok(()), Err);
            }
        }
        let result = self.reload_keys().await.map(|_| ());
        self.cache.write().await.last_error = result.as_ref().err().cloned();
        result
    }

    /// Fetches the JWKS now and replaces the cache; the caller holds `fetching`. The attempt is
    /// recorded before the fetch, so failures count against the rate limit too.
    async fn reload_keys(&self) -> Result<usize, JwtError> {
        self.cache.write().await.last_attempt = Some(Instant::now());
        let (raw, max_age) = match self.jwks.as_ref() {
            Some(JwksSource::File(path)) => (
                tokio::fs::read(path)
                    .await
                    .map_err(|e| JwtError::KeysUnavailable(format!("{}: {e}", path.display())))?,
                JWKS_DEFAULT_MAX_AGE,
            ),
            Some(JwksSource::Url(url)) => {
                let unavailable =
                    |e: &dyn std::fmt::Display| JwtError::KeysUnavailable(format!("{url}: {e}"));
                let response = self
                    .http
                    .get(url.clone())
                    .send()
                    .await
                    .map_err(|e| unavailable(&e))?;
                if !response.status().is_success() {
                    return Err(unavailable(&format!("HTTP {}", response.status())));
                }
                let max_age = max_age_of(response.headers());
                let body = crate::bounded::read_body(response, JWKS_MAX_BYTES)
                    .await
                    .map_err(|e| match e {
                        crate::bounded::BodyError::TooLarge(_) => {
                            unavailable(&format!("the JWKS is larger than {JWKS_MAX_BYTES} bytes"))
                        }
                        other => unavailable(&other),
                    })?;
                (body, max_age)
            }
            None => return Ok(0),
        };
        let keys: JwkSet = serde_json::from_slice(&raw)
            .map_err(|e| JwtError::KeysUnavailable(format!("not a JWKS: {e}")))?;
        let count = keys.keys.len();
        let mut cache = self.cache.write().await;
        cache.keys = keys;
        cache.fetched_at = Some(Instant::now());
        cache.max_age = max_age;
        Ok(count)
    }

    fn decode(
        &self,
        token: &str,
        alg: Algorithm,
        key: &DecodingKey,
        audience: Audience,
    ) -> Result<Claims, JwtError> {
        use jsonwebtoken::errors::ErrorKind;
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        // Supabase's API keys and PostgREST accept tokens without `exp`; checked when present.
        validation.required_spec_claims.clear();
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                if audience == Audience::Required {
                    validation.required_spec_claims.insert("aud".to_owned());
                }
            }
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidAudience => JwtError::WrongAudience,
            ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => JwtError::WrongAudience,
            ErrorKind::InvalidSignature => JwtError::BadSignature,
            ErrorKind::InvalidAlgorithm => JwtError::AlgorithmNotAccepted(format!("{alg:?}")),
            ErrorKind::Json(e) if e.to_string().contains("role") => JwtError::MissingRole,
            _ => JwtError::Invalid(e.to_string()),
        })?;
        // jsonwebtoken leaves `iat` alone; PostgREST refuses tokens issued in the future.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if data
            .claims
            .iat
            .is_some_and(|iat| iat > now + self.leeway.as_secs() as i64)
        {
            return Err(JwtError::IssuedInFuture);
        }
        Ok(data.claims)
    }
}

/// The key for `alg`/`kid` in the cache, checked to be meant for `alg`.
fn cached_key(
    cache: &KeyCache,
    alg: Algorithm,
    kid: Option<&str>,
) -> Result<Option<Arc<DecodingKey>>, JwtError> {
    let jwk: Option<&Jwk> = match kid {
        Some(kid) => cache.keys.find(kid),
        // A token without `kid` is accepted only when the set holds exactly one key.
        None if cache.keys.keys.len() == 1 => cache.keys.keys.first(),
        None => None,
    };
    let Some(jwk) = jwk else { return Ok(None) };
    if let Some(key_alg) = jwk
        .common
        .key_algorithm
        .and_then(|a| Algorithm::try_from(a).ok())
    {
        if key_alg != alg {
            return Err(JwtError::AlgorithmNotAccepted(format!(
                "{alg:?} for a {key_alg:?} key"
            )));
        }
    }
    DecodingKey::from_jwk(jwk)
        .map(|k| Some(Arc::new(k)))
        .map_err(|e| JwtError::Invalid(e.to_string()))
}

/// What a verified token's signature was checked with, which says how long the result may be
/// kept: the secret does not change while the BFF runs; JWKS keys are trusted while fresh.
enum Trust {
    Secret,
    Jwks(Instant),
    /// Keys past their max age, used during a JWKS outage: verified, never cached.
    StaleJwks,
}

/// Whether a token must carry the configured audience.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Audience {
    Required,
    IfPresent,
}

/// `max-age` of a `Cache-Control` header, clamped to [`JWKS_MAX_AGE_RANGE`].
fn max_age_of(headers: &reqwest::header::HeaderMap) -> Duration {
    let seconds = headers
        .get_all(reqwest::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|directive| {
            let (name, value) = directive.trim().split_once('=')?;
            name.eq_ignore_ascii_case("max-age")
                .then(|| value.trim().parse::<u64>().ok())
                .flatten()
        });
    let (low, high) = JWKS_MAX_AGE_RANGE;
    seconds
        .map(Duration::from_secs)
        .unwrap_or(JWKS_DEFAULT_MAX_AGE)
        .clamp(low, high)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
    // A P-256 key made for these tests only (openssl ecparam -name prime256v1 -genkey).
    const EC_PRIVATE_PEM: &str = include_str!("../testdata/es256-private.pem");
    const EC_JWKS: &str = include_str!("../testdata/jwks.json");

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn settings(jwks: Option<JwksSource>, audience: Option<&str>) -> JwtSettings {
        JwtSettings {
            secret: Some(SECRET.into()),
            jwks,
            audience: audience.map(Into::into),
            leeway: Duration::from_secs(30),
        }
    }

    fn hs256(claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn es256(kid: Option<&str>, claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = kid.map(Into::into);
        encode(
            &header,
            &claims,
            &EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn user(exp_in: i64) -> Value {
        json!({"sub": "a11ce000-0000-4000-8000-000000000001", "role": "authenticated",
               "aud": "authenticated", "exp": now() + exp_in, "iat": now() - 10,
               "email": "alice@example.com", "app_metadata": {"provider": "email"}, "aal": "aal1"})
    }

    fn jwks_file() -> JwksSource {
        let path = std::env::temp_dir().join(format!("dana-jwks-{}.json", std::process::id()));
        std::fs::write(&path, EC_JWKS).unwrap();
        JwksSource::File(path)
    }

    #[tokio::test]
    async fn a_cached_token_is_refused_at_once_after_its_exp() {
        let mut no_leeway = settings(None, Some("authenticated"));
        no_leeway.leeway = Duration::ZERO;
        let v = JwtVerifier::new(&no_leeway).unwrap();
        let token = hs256(user(1));
        assert!(v.verify(&token).await.is_ok());
        assert_eq!(v.cached_tokens(), 1, "a verified token is kept");
        assert!(v.verify(&token).await.is_ok(), "served from the cache");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(v.cached_tokens(), 1, "still held");
        assert_eq!(v.verify(&token).await.unwrap_err(), JwtError::Expired);
    }

    #[tokio::test]
    async fn a_project_key_cached_without_audience_does_not_pass_as_a_users_token() {
        let v = JwtVerifier::new(&settings(None, Some("authenticated"))).unwrap();
        let key = hs256(json!({"role": "authenticated", "sub": "x", "exp": now() + 3600}));
        assert!(v.verify_project_key(&key).await.is_ok());
        assert_eq!(v.verify(&key).await.unwrap_err(), JwtError::WrongAudience);
        // A token failing verification is never kept.
        assert_eq!(v.cached_tokens(), 1);
        let forged = format!("{}x", hs256(user(3600)));
        assert!(v.verify(&forged).await.is_err());
        assert!(v.verify(&forged).await.is_err());
        assert_eq!(v.cached_tokens(), 1);
    }

    #[tokio::test]
    async fn a_valid_hs256_user_token_gives_its_claims() {
        let v = JwtVerifier::new(&settings(None, Some("authenticated"))).unwrap();
        let claims = v.verify(&hs256(user(3600))).await.unwrap();
        assert_eq!(
            claims.user_id(),
            Some("a11ce000-0000-4000-8000-000000000001")
        );
        assert_eq!(claims.email.as_deref(), Some("alice@example.com"));
        assert_eq!(
            claims.other.get("aal"),
            Some(&json!("aal1")),
            "unknown claims are kept"
        );
    }

    #[tokio::test]
    async fn a_project_key_without_exp_or_aud_is_accepted() {
        let v = JwtVerifier::new(&settings(None, Some("authenticated"))).unwrap();
        let key = hs256(json!({"role": "anon", "iss": "supabase"}));
        let claims = v.verify_project_key(&key).await.unwrap();
        assert_eq!(claims.role, "anon");
        assert_eq!(claims.user_id(), None);
        // The same token as a user's access token lacks the audience Supabase Auth always sets.
        assert_eq!(v.verify(&key).await.unwrap_err(), JwtError::WrongAudience);
        // A key that names another audience is refused either way.
        let foreign = hs256(json!({"role": "anon", "aud": "elsewhere"}));
        assert_eq!(
            v.verify_project_key(&foreign).await.unwrap_err(),
            JwtError::WrongAudience
        );
    }

    #[tokio::test]
    async fn refused_tokens_say_why() {
        let v = JwtVerifier::new(&settings(None, Some("authenticated"))).unwrap();
        let wrong_key = encode(
            &Header::new(Algorithm::HS256),
            &user(3600),
            &EncodingKey::from_secret(b"another-secret-another-secret-000"),
        )
        .unwrap();
        let mut other_aud = user(3600);
        other_aud["aud"] = json!("someone-else");
        let mut future_iat = user(3600);
        future_iat["iat"] = json!(now() + 3600);
        let mut not_yet = user(7200);
        not_yet["nbf"] = json!(now() + 3600);
        let cases = [
            ("garbage", JwtError::Malformed(1)),
            ("a.b", JwtError::Malformed(2)),
            (wrong_key.as_str(), JwtError::BadSignature),
            (&hs256(user(-120)), JwtError::Expired),
            (&hs256(other_aud), JwtError::WrongAudience),
            (&hs256(future_iat), JwtError::IssuedInFuture),
            (&hs256(not_yet), JwtError::NotYetValid),
            (
                &hs256(json!({"sub": "x", "exp": now() + 60})),
                JwtError::MissingRole,
            ),
        ];
        for (token, expected) in cases {
            assert_eq!(
                v.verify(token).await.unwrap_err(),
                expected,
                "token {token}"
            );
        }
    }

    #[tokio::test]
    async fn clock_skew_within_the_leeway_is_tolerated() {
        let v = JwtVerifier::new(&settings(None, None)).unwrap();
        assert!(v.verify(&hs256(user(-10))).await.is_ok());
    }

    #[tokio::test]
    async fn a_token_with_alg_none_is_refused() {
        let v = JwtVerifier::new(&settings(None, None)).unwrap();
        // {"alg":"none","typ":"JWT"} . {"role":"service_role"} . (no signature)
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.";
        assert!(v.verify(token).await.is_err());
    }

    #[tokio::test]
    async fn es256_tokens_are_checked_against_the_jwks() {
        let v = JwtVerifier::new(&settings(Some(jwks_file()), Some("authenticated"))).unwrap();
        assert_eq!(v.preload().await.unwrap(), 1);
        let claims = v
            .verify(&es256(Some("dana-test-es256"), user(3600)))
            .await
            .unwrap();
        assert_eq!(claims.role, "authenticated");
        assert_eq!(
            v.verify(&es256(Some("rotated-away"), user(3600)))
                .await
                .unwrap_err(),
            JwtError::UnknownKey("rotated-away".into())
        );
        // The HS256 path never uses JWKS keys, and the JWKS path never the HS256 secret.
        let v_no_secret = JwtVerifier::new(&JwtSettings {
            secret: None,
            ..settings(Some(jwks_file()), None)
        })
        .unwrap();
        assert!(matches!(
            v_no_secret.verify(&hs256(user(3600))).await.unwrap_err(),
            JwtError::AlgorithmNotAccepted(_)
        ));
    }

    #[tokio::test]
    async fn an_asymmetric_token_without_a_jwks_is_refused() {
        let v = JwtVerifier::new(&settings(None, None)).unwrap();
        assert!(matches!(
            v.verify(&es256(Some("dana-test-es256"), user(3600)))
                .await
                .unwrap_err(),
            JwtError::AlgorithmNotAccepted(_)
        ));
    }

    /// A stand-in for Supabase Auth's `/auth/v1/.well-known/jwks.json`: answers every request
    /// with the current `response` (a whole HTTP/1.1 response, changeable while it runs) and
    /// counts the requests.
    async fn fake_jwks_endpoint(
        response: String,
    ) -> (
        url::Url,
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<std::sync::Mutex<String>>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!(
            "http://{}/auth/v1/.well-known/jwks.json",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let current = Arc::new(std::sync::Mutex::new(response));
        let (counter, answer) = (hits.clone(), current.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let response = answer.lock().unwrap().clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    // A slow endpoint, so concurrent misses overlap.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        (url, hits, current)
    }

    fn ok_response(body: &str, extra_headers: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}connection: close\r\n\r\n{body}",
            body.len()
        )
    }

    const FAILING: &str =
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

    fn hits(counter: &std::sync::atomic::AtomicUsize) -> usize {
        counter.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_jwks_url_is_fetched_once_and_its_keys_verify() {
        let (url, counter, _) = fake_jwks_endpoint(ok_response(EC_JWKS, "")).await;
        let v = JwtVerifier::new(&settings(Some(JwksSource::Url(url)), None)).unwrap();
        for _ in 0..3 {
            assert!(v
                .verify(&es256(Some("dana-test-es256"), user(3600)))
                .await
                .is_ok());
        }
        assert_eq!(hits(&counter), 1, "keys are cached");
        // An unknown key id right after a load does not refetch (rate limit).
        assert!(v.verify(&es256(Some("other"), user(3600))).await.is_err());
        assert_eq!(hits(&counter), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn failed_fetches_count_against_the_rate_limit_and_misses_share_one_fetch() {
        let (url, counter, _) = fake_jwks_endpoint(FAILING.into()).await;
        let v = JwtVerifier::new(&settings(Some(JwksSource::Url(url)), None)).unwrap();
        // Ten tokens with made-up key ids, verified at the same time: one fetch between them.
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let (v, token) = (v.clone(), es256(Some(&format!("made-up-{i}")), user(3600)));
                tokio::spawn(async move { v.verify(&token).await })
            })
            .collect();
        for task in tasks {
            let result = task.await.unwrap();
            assert!(
                matches!(result, Err(JwtError::KeysUnavailable(_))),
                "{result:?}"
            );
        }
        assert_eq!(hits(&counter), 1, "concurrent misses fetch once");
        // While the URL keeps failing, more misses do not fetch again within the interval.
        for i in 0..5 {
            let _ = v
                .verify(&es256(Some(&format!("again-{i}")), user(3600)))
                .await;
        }
        assert_eq!(
            hits(&counter),
            1,
            "attempts, not successes, are rate-limited"
        );
    }

    #[tokio::test]
    async fn keys_expire_after_their_max_age_and_a_revoked_key_stops_verifying() {
        let (url, counter, answer) = fake_jwks_endpoint(ok_response(
            EC_JWKS,
            "cache-control: public, max-age=120\r\n",
        ))
        .await;
        let v = JwtVerifier::new(&settings(Some(JwksSource::Url(url)), None)).unwrap();
        let token = es256(Some("dana-test-es256"), user(3600));
        assert!(v.verify(&token).await.is_ok());
        assert_eq!(v.cache.read().await.max_age, Duration::from_secs(120));
        // The provider revokes the key; once the keys are older than their max age, it is gone.
        *answer.lock().unwrap() = ok_response(r#"{"keys":[]}"#, "");
        age_cache(&v, Duration::from_secs(121)).await;
        assert_eq!(
            v.verify(&token).await.unwrap_err(),
            JwtError::UnknownKey("dana-test-es256".into())
        );
        assert_eq!(hits(&counter), 2);
    }

    #[tokio::test]
    async fn stale_keys_carry_over_an_outage_for_a_grace_period_only() {
        let (url, _, answer) = fake_jwks_endpoint(ok_response(EC_JWKS, "")).await;
        let v = JwtVerifier::new(&settings(Some(JwksSource::Url(url)), None)).unwrap();
        let token = es256(Some("dana-test-es256"), user(3600));
        assert!(v.verify(&token).await.is_ok());
        *answer.lock().unwrap() = FAILING.into();
        age_cache(&v, JWKS_DEFAULT_MAX_AGE + Duration::from_secs(60)).await;
        assert!(v.verify(&token).await.is_ok(), "within the grace period");
        age_cache(
            &v,
            JWKS_DEFAULT_MAX_AGE + JWKS_STALE_GRACE + Duration::from_secs(1),
        )
        .await;
        assert!(matches!(
            v.verify(&token).await.unwrap_err(),
            JwtError::KeysUnavailable(_)
        ));
    }

    #[tokio::test]
    async fn an_oversized_jwks_is_refused() {
        let huge = format!(
            r#"{{"keys":[],"padding":"{}"}}"#,
            "x".repeat(JWKS_MAX_BYTES)
        );
        let (url, _, _) = fake_jwks_endpoint(ok_response(&huge, "")).await;
        let v = JwtVerifier::new(&settings(Some(JwksSource::Url(url)), None)).unwrap();
        let err = v.preload().await.unwrap_err();
        assert!(
            matches!(&err, JwtError::KeysUnavailable(m) if m.contains("larger than")),
            "{err}"
        );
    }

    /// Makes the cached keys look `age` old, with no fetch attempted since.
    async fn age_cache(v: &JwtVerifier, age: Duration) {
        let mut cache = v.cache.write().await;
        cache.fetched_at = Some(Instant::now() - age);
        cache.last_attempt = None;
    }

    #[tokio::test]
    async fn a_redirecting_jwks_url_is_not_followed() {
        let (url, _, _) = fake_jwks_endpoint(
            "HTTP/1.1 302 Found\r\nlocation: http://attacker.example/jwks.json\r\ncontent-length: 0\r\n\r\n".into(),
        )
        .await;
        let v = JwtVerifier::new(&settings(Some(JwksSource::Url(url)), None)).unwrap();
        let err = v.preload().await.unwrap_err();
        assert!(
            matches!(&err, JwtError::KeysUnavailable(m) if m.contains("302")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unreadable_jwks_is_reported() {
        let v = JwtVerifier::new(&settings(
            Some(JwksSource::File("/nonexistent/jwks.json".into())),
            None,
        ))
        .unwrap();
        assert!(
            matches!(v.preload().await.unwrap_err(), JwtError::KeysUnavailable(m) if m.contains("/nonexistent"))
        );
    }
}
