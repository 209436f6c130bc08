//! Access-token verification as Supabase's API gateway and PostgREST do it.
//!
//! Supabase projects sign with the legacy HS256 project secret, with asymmetric keys published
//! as a JWKS (ES256/RS256/EdDSA), or both during a migration. [`JwtVerifier`] accepts either:
//! an `HS256` token is checked with the secret only, an asymmetric one with the JWKS key its
//! header names (never the other way round, so a public key can never serve as an HMAC secret).

use crate::settings::{JwksSource, JwtSettings};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::RwLock;

/// A URL-sourced JWKS is refetched for an unseen key id at most this often, so a stream of tokens
/// with made-up key ids cannot turn the BFF into a request amplifier against Supabase Auth.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

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
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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

/// A JWKS and when it was last loaded.
struct KeyCache {
    keys: JwkSet,
    loaded_at: Option<Instant>,
}

/// Verifies access tokens; cheap to clone (shared key cache).
#[derive(Clone)]
pub struct JwtVerifier {
    secret: Option<Arc<DecodingKey>>,
    jwks: Option<JwksSource>,
    cache: Arc<RwLock<KeyCache>>,
    http: reqwest::Client,
    audience: Option<String>,
    leeway: Duration,
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
                loaded_at: None,
            })),
            http,
            audience: settings.audience.clone(),
            leeway: settings.leeway,
        })
    }

    /// Loads the JWKS now, so a bad file or URL is reported at start-up rather than at the first
    /// request. Without a JWKS this does nothing.
    pub async fn preload(&self) -> Result<usize, JwtError> {
        if self.jwks.is_none() {
            return Ok(0);
        }
        self.reload_keys().await
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let parts = token.split('.').count();
        if parts != 3 {
            return Err(JwtError::Malformed(parts));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JwtError::Invalid(e.to_string()))?;
        let key = self.key_for(header.alg, header.kid.as_deref()).await?;
        let claims = self.decode(token, header.alg, &key)?;
        if claims.role.is_empty() {
            return Err(JwtError::MissingRole);
        }
        Ok(claims)
    }

    async fn key_for(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Arc<DecodingKey>, JwtError> {
        if alg == Algorithm::HS256 {
            return self
                .secret
                .clone()
                .ok_or_else(|| JwtError::AlgorithmNotAccepted("HS256".into()));
        }
        if !ASYMMETRIC.contains(&alg) || self.jwks.is_none() {
            return Err(JwtError::AlgorithmNotAccepted(format!("{alg:?}")));
        }
        if let Some(key) = self.cached_key(alg, kid).await? {
            return Ok(key);
        }
        // Unknown key id: the project may have rotated keys. Reload (rate-limited) and retry once.
        let stale = {
            let cache = self.cache.read().await;
            cache
                .loaded_at
                .is_none_or(|at| at.elapsed() >= JWKS_REFETCH_INTERVAL)
        };
        if stale {
            self.reload_keys().await?;
            if let Some(key) = self.cached_key(alg, kid).await? {
                return Ok(key);
            }
        }
        Err(JwtError::UnknownKey(kid.unwrap_or("").to_owned()))
    }

    async fn cached_key(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Option<Arc<DecodingKey>>, JwtError> {
        let cache = self.cache.read().await;
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

    async fn reload_keys(&self) -> Result<usize, JwtError> {
        let raw = match self.jwks.as_ref() {
            Some(JwksSource::File(path)) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| JwtError::KeysUnavailable(format!("{}: {e}", path.display())))?,
            Some(JwksSource::Url(url)) => {
                let response = self
                    .http
                    .get(url.clone())
                    .send()
                    .await
                    .map_err(|e| JwtError::KeysUnavailable(format!("{url}: {e}")))?;
                if !response.status().is_success() {
                    return Err(JwtError::KeysUnavailable(format!(
                        "{url}: HTTP {}",
                        response.status()
                    )));
                }
                response
                    .text()
                    .await
                    .map_err(|e| JwtError::KeysUnavailable(format!("{url}: {e}")))?
            }
            None => return Ok(0),
        };
        let keys: JwkSet = serde_json::from_str(&raw)
            .map_err(|e| JwtError::KeysUnavailable(format!("not a JWKS: {e}")))?;
        let count = keys.keys.len();
        let mut cache = self.cache.write().await;
        *cache = KeyCache {
            keys,
            loaded_at: Some(Instant::now()),
        };
        Ok(count)
    }

    fn decode(&self, token: &str, alg: Algorithm, key: &DecodingKey) -> Result<Claims, JwtError> {
        use jsonwebtoken::errors::ErrorKind;
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        // Supabase's API keys and PostgREST accept tokens without `exp`; checked when present.
        validation.required_spec_claims.clear();
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidAudience => JwtError::WrongAudience,
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
    async fn an_api_key_without_exp_or_aud_is_accepted() {
        let v = JwtVerifier::new(&settings(None, Some("authenticated"))).unwrap();
        let claims = v
            .verify(&hs256(json!({"role": "anon", "iss": "supabase"})))
            .await
            .unwrap();
        assert_eq!(claims.role, "anon");
        assert_eq!(claims.user_id(), None);
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
    /// with `response` (a whole HTTP/1.1 response) and counts the requests.
    async fn fake_jwks_endpoint(
        response: String,
    ) -> (url::Url, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!(
            "http://{}/auth/v1/.well-known/jwks.json",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        (url, hits)
    }

    #[tokio::test]
    async fn a_jwks_url_is_fetched_once_and_its_keys_verify() {
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{EC_JWKS}",
            EC_JWKS.len()
        );
        let (url, hits) = fake_jwks_endpoint(response).await;
        let v = JwtVerifier::new(&settings(Some(JwksSource::Url(url)), None)).unwrap();
        for _ in 0..3 {
            assert!(v
                .verify(&es256(Some("dana-test-es256"), user(3600)))
                .await
                .is_ok());
        }
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "keys are cached"
        );
        // An unknown key id right after a load does not refetch (rate limit).
        assert!(v.verify(&es256(Some("other"), user(3600))).await.is_err());
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_redirecting_jwks_url_is_not_followed() {
        let (url, _) = fake_jwks_endpoint(
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
