//! Tokens shaped like Supabase Auth's, signed with the stack's JWT secret (or a test key), for
//! the cases the demo tokens do not cover: expired, wrong audience, wrong key.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims of a signed-in user, valid for an hour.
pub fn user_claims(user_id: &str) -> Value {
    json!({
        "sub": user_id, "role": "authenticated", "aud": "authenticated",
        "iat": now(), "exp": now() + 3600, "email": format!("{user_id}@test.dana.dev"),
        "app_metadata": {"provider": "email"}, "user_metadata": {}, "session_id": uuid::Uuid::new_v4(),
    })
}

/// Signs with the stack's HS256 secret.
pub fn hs256(claims: &Value) -> String {
    hs256_with(&crate::setting("JWT_SECRET"), claims)
}

pub fn hs256_with(secret: &str, claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Signs with the ES256 test key whose public half is `supabase/testdata/jwks.json`.
pub fn es256(kid: &str, claims: &Value) -> String {
    let pem = std::fs::read(crate::repo_path("supabase/testdata/es256-private.pem")).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, &EncodingKey::from_ec_pem(&pem).unwrap()).unwrap()
}
