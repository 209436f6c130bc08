//! OAuth 2 installs of integrations (authorization code with PKCE, and refresh of rotating
//! tokens), one code path for every entry of the provider table (`providers.rs`), on the oauth2
//! crate. Token requests go through a client that follows no redirects.

use super::providers::ConfiguredProvider;
use crate::error::{ApiError, Problem};
use chrono::{DateTime, Utc};
use http::StatusCode;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

/// Tokens due within this margin are refreshed before use.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Whatever else a provider's token answer carries (Slack: team, bot user, app id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderFields {
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}
impl ExtraTokenFields for ProviderFields {}

type TokenAnswer = StandardTokenResponse<ProviderFields, BasicTokenType>;
type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Why a token request gave no tokens.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The provider answered with an OAuth error (`invalid_grant`, Slack's `invalid_code`, …).
    #[error("the provider refused: {code}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        code: String,
        description: Option<String>,
    },
    #[error("the provider is unreachable or answered unreadably: {0}")]
    Unavailable(String),
}

impl From<ExchangeError> for ApiError {
    fn from(error: ExchangeError) -> Self {
        match error {
            ExchangeError::Refused { code, description } => Problem::new(
                StatusCode::BAD_GATEWAY,
                "the provider refused the code exchange; nothing was stored",
            )
            .details(match description {
                Some(d) => format!("{code}: {d}"),
                None => code,
            })
            .hint("Start the install again.")
            .into(),
            ExchangeError::Unavailable(why) => {
                Problem::unavailable("the provider is unreachable; nothing was stored", &why).into()
            }
        }
    }
}

/// The OAuth side of integrations: the configured providers and the HTTP client for them.
#[derive(Clone)]
pub struct OAuthInstalls {
    providers: Vec<ConfiguredProvider>,
    http: reqwest::Client,
}

impl OAuthInstalls {
    pub fn new(providers: Vec<ConfiguredProvider>, http: reqwest::Client) -> Self {
        Self { providers, http }
    }

    /// The configured provider installing `kind`: 404 when no provider installs it by OAuth,
    /// 501 naming the settings when one does but this deployment has no credentials for it.
    pub fn provider(&self, kind: &str) -> Result<&ConfiguredProvider, ApiError> {
        if let Some(configured) = self
            .providers
            .iter()
            .find(|p| p.provider.integration_type == kind)
        {
            return Ok(configured);
        }
        match super::providers::provider(kind) {
            Some(p) => Err(Problem::not_configured(
                &format!("OAuth installs of {kind}"),
                &format!("{env}_CLIENT_ID and {env}_CLIENT_SECRET", env = p.env),
            )),
            None => Err(Problem::new(
                StatusCode::NOT_FOUND,
                format!("{kind} is not installed by OAuth"),
            )
            .hint("Create the integration with POST /api/integrations.")
            .into()),
        }
    }

    fn client(
        &self,
        p: &ConfiguredProvider,
        fields: &Map<String, Value>,
        redirect_uri: &str,
    ) -> Result<OAuthClient, ApiError> {
        let bad =
            |what: &str, e: String| -> ApiError { Problem::bad_request(format!("{what}: {e}")) };
        let auth_url = ConfiguredProvider::fill(&p.authorize_url, fields)
            .map_err(|e| bad("authorize URL", e))?;
        let token_url =
            ConfiguredProvider::fill(&p.token_url, fields).map_err(|e| bad("token URL", e))?;
        Ok(oauth2::Client::new(ClientId::new(p.client_id.clone()))
            .set_client_secret(ClientSecret::new(p.client_secret.clone()))
            .set_auth_uri(AuthUrl::new(auth_url).map_err(|e| bad("authorize URL", e.to_string()))?)
            .set_token_uri(TokenUrl::new(token_url).map_err(|e| bad("token URL", e.to_string()))?)
            .set_redirect_uri(
                RedirectUrl::new(redirect_uri.to_owned())
                    .map_err(|e| bad("redirect URI", e.to_string()))?,
            )
            // Every provider of the table takes client_id and client_secret in the form body.
            .set_auth_type(AuthType::RequestBody))
    }

    /// Where to send the browser: the provider's authorize URL with scopes, `state` and the
    /// PKCE challenge of `verifier`.
    pub fn authorize_url(
        &self,
        p: &ConfiguredProvider,
        fields: &Map<String, Value>,
        redirect_uri: &str,
        state: &str,
        verifier: &str,
    ) -> Result<String, ApiError> {
        let client = self.client(p, fields, redirect_uri)?;
        let state = state.to_owned();
        let mut request = client
            .authorize_url(move || CsrfToken::new(state))
            // One scope parameter as the provider writes it (Slack: comma-separated).
            .add_scope(Scope::new(p.scopes.clone()));
        if p.provider.pkce {
            request = request.set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(
                &PkceCodeVerifier::new(verifier.to_owned()),
            ));
        }
        Ok(request.url().0.to_string())
    }

    /// Exchanges an authorization code; answers the config fields the provider's tokens fill.
    pub async fn exchange(
        &self,
        p: &ConfiguredProvider,
        fields: &Map<String, Value>,
        redirect_uri: &str,
        code: &str,
        verifier: &str,
    ) -> Result<Map<String, Value>, ExchangeError> {
        let client = self
            .client(p, fields, redirect_uri)
            .map_err(|e| ExchangeError::Unavailable(e.to_string()))?;
        let mut request = client.exchange_code(AuthorizationCode::new(code.to_owned()));
        if p.provider.pkce {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()));
        }
        let answer = request.request_async(&self.http).await;
        token_fields(p, answer)
    }

    /// Trades a refresh token for new tokens (rotating providers answer a new refresh token).
    pub async fn refresh(
        &self,
        p: &ConfiguredProvider,
        fields: &Map<String, Value>,
        redirect_uri: &str,
        refresh_token: &str,
    ) -> Result<Map<String, Value>, ExchangeError> {
        let client = self
            .client(p, fields, redirect_uri)
            .map_err(|e| ExchangeError::Unavailable(e.to_string()))?;
        let token = RefreshToken::new(refresh_token.to_owned());
        let answer = client
            .exchange_refresh_token(&token)
            .request_async(&self.http)
            .await;
        token_fields(p, answer)
    }
}

type TokenResult = Result<
    TokenAnswer,
    RequestTokenError<oauth2::HttpClientError<reqwest::Error>, BasicErrorResponse>,
>;

/// The config fields a token answer fills, by the provider's JSON pointers; `expires_in`
/// becomes `token_expires_at` (RFC 3339).
fn token_fields(
    p: &ConfiguredProvider,
    answer: TokenResult,
) -> Result<Map<String, Value>, ExchangeError> {
    let answer = match answer {
        Ok(answer) => {
            serde_json::to_value(&answer).map_err(|e| ExchangeError::Unavailable(e.to_string()))?
        }
        Err(RequestTokenError::ServerResponse(e)) => {
            return Err(ExchangeError::Refused {
                code: e.error().to_string(),
                description: e.error_description().cloned(),
            })
        }
        // Slack answers errors as HTTP 200 `{"ok": false, "error": …}`: not a token answer.
        Err(RequestTokenError::Parse(e, body)) => {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Err(match body["error"].as_str() {
                Some(code) if p.provider.ok_flag || body.get("access_token").is_none() => {
                    ExchangeError::Refused {
                        code: code.to_owned(),
                        description: body["error_description"].as_str().map(str::to_owned),
                    }
                }
                _ => ExchangeError::Unavailable(format!("not a token answer: {e}")),
            });
        }
        Err(RequestTokenError::Request(e)) => {
            return Err(ExchangeError::Unavailable(crate::proxy::root_cause(&e)))
        }
        Err(RequestTokenError::Other(e)) => return Err(ExchangeError::Unavailable(e)),
    };
    if p.provider.ok_flag && answer["ok"] != Value::Bool(true) {
        return Err(ExchangeError::Refused {
            code: answer["error"].as_str().unwrap_or("not_ok").to_owned(),
            description: None,
        });
    }
    let mut fields = Map::new();
    for (pointer, field) in p.provider.token_fields {
        let Some(value) = answer.pointer(pointer).filter(|v| !v.is_null()) else {
            continue;
        };
        let value = if *field == "token_expires_at" {
            let Some(seconds) = value.as_u64() else {
                continue;
            };
            let at = Utc::now() + chrono::Duration::seconds(seconds.min(10 * 365 * 86400) as i64);
            Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        } else {
            value.clone()
        };
        fields.insert((*field).to_owned(), value);
    }
    Ok(fields)
}

/// True when a config's token expires within [`REFRESH_MARGIN`] and it can be refreshed.
pub fn refresh_due(secrets: &super::Secrets) -> bool {
    let Some(expires) = secrets
        .get("token_expires_at")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    else {
        return false;
    };
    secrets.get("refresh_token").is_some()
        && expires.with_timezone(&Utc) - Utc::now()
            < chrono::Duration::from_std(REFRESH_MARGIN).expect("small")
}
