//! Talking to Supabase the way its own gateway does.
//!
//! - [`settings`]: the project's settings read from the environment, every problem named at once;
//! - [`jwt`]: access-token verification (HS256 project secret and JWKS signing keys) and the
//!   claims Supabase Auth puts in its tokens;
//! - [`auth`]: Supabase Auth's token endpoints, for the BFF's sign-in sessions;
//! - [`rest`]: a PostgREST client for calls made *as the user* (their token, so RLS applies).

pub mod auth;
pub mod bounded;
pub mod jwt;
pub mod rest;
pub mod settings;
pub mod token_cache;

pub use jwt::{Claims, JwtError, JwtVerifier};
pub use settings::{EnvReader, SettingsError, SupabaseSettings};
