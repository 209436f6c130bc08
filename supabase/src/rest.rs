//! The BFF's own PostgREST calls, made as the user.
//!
//! The proxy streams the browser's requests through untouched; this client is for requests the
//! BFF itself makes on a user's behalf (integration settings, knowledge rows, ...). It always sends
//! the user's own token, so the database applies that user's RLS; there is deliberately no
//! constructor that borrows the service role.

use postgrest::Postgrest;
use url::Url;

/// A PostgREST client bound to one caller's token.
pub struct UserRest {
    client: Postgrest,
}

impl UserRest {
    /// `postgrest_url` is PostgREST's own address (the BFF talks to it directly, not through
    /// `/rest/v1`); `anon_key` goes in `apikey` as Supabase clients send it; `access_token` is the
    /// caller's verified JWT.
    pub fn new(postgrest_url: &Url, anon_key: &str, access_token: &str) -> Self {
        let base = postgrest_url.as_str().trim_end_matches('/');
        let client = Postgrest::new(base)
            .insert_header("apikey", anon_key)
            .insert_header("Authorization", format!("Bearer {access_token}"));
        Self { client }
    }

    /// A query on a table or view (`select`, filters, `insert`, ... from postgrest-rs).
    pub fn from(&self, table: &str) -> postgrest::Builder {
        self.client.from(table)
    }

    /// A call of a database function with JSON arguments.
    pub fn rpc(&self, function: &str, params: impl Into<String>) -> postgrest::Builder {
        self.client.rpc(function, params.into())
    }
}
