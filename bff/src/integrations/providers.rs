//! The OAuth providers integrations install through: one entry each, read by one code path
//! (`oauth.rs`). An entry says where the provider's authorize and token endpoints are, which
//! scopes to ask, how its client authenticates, and where each field of its token answer goes in
//! the integration's config (`integration_configs`, validated and encrypted by the extension).
//!
//! Settings per provider, `{ENV}` being its `env` below: `{ENV}_CLIENT_ID` and
//! `{ENV}_CLIENT_SECRET` (the provider is off without them), and optional overrides
//! `{ENV}_AUTHORIZE_URL`, `{ENV}_TOKEN_URL`, `{ENV}_SCOPES` (tests point them at fakes). `{placeholders}` in URLs are filled from the install's own fields (a Zendesk subdomain).

use dana_supabase::EnvReader;

/// One provider.
#[derive(Debug)]
pub struct Provider {
    /// The integration type its installs become.
    pub integration_type: &'static str,
    /// Prefix of its settings.
    pub env: &'static str,
    pub authorize_url: &'static str,
    pub token_url: &'static str,
    pub scopes: &'static str,
    pub pkce: bool,
    /// (JSON pointer into the token answer, config field). `expires_in` becomes
    /// `token_expires_at` when the field is named so.
    pub token_fields: &'static [(&'static str, &'static str)],
    /// Fields the install takes from its start request and keeps in the config.
    pub install_fields: &'static [&'static str],
    /// Slack answers errors as HTTP 200 `{"ok": false, "error": …}`.
    pub ok_flag: bool,
}

pub const PROVIDERS: &[Provider] = &[
    Provider {
        integration_type: "slack",
        env: "SLACK",
        authorize_url: "https://slack.com/oauth/v2/authorize",
        token_url: "https://slack.com/api/oauth.v2.access",
        scopes: "chat:write,channels:read,channels:history,groups:history",
        pkce: true,
        token_fields: &[
            ("/access_token", "bot_token"),
            ("/refresh_token", "refresh_token"),
            ("/expires_in", "token_expires_at"),
            ("/team/id", "team_id"),
            ("/team/name", "team_name"),
            ("/bot_user_id", "bot_user_id"),
            ("/scope", "scope"),
            ("/app_id", "app_id"),
        ],
        install_fields: &["channel_id"],
        ok_flag: true,
    },
    Provider {
        integration_type: "hubspot",
        env: "HUBSPOT",
        authorize_url: "https://app.hubspot.com/oauth/authorize",
        token_url: "https://api.hubapi.com/oauth/v1/token",
        scopes: "crm.objects.contacts.read crm.objects.contacts.write",
        pkce: false,
        token_fields: &[
            ("/access_token", "access_token"),
            ("/refresh_token", "refresh_token"),
            ("/expires_in", "token_expires_at"),
        ],
        install_fields: &["portal_id"],
        ok_flag: false,
    },
    Provider {
        integration_type: "salesforce",
        env: "SALESFORCE",
        authorize_url: "https://login.salesforce.com/services/oauth2/authorize",
        token_url: "https://login.salesforce.com/services/oauth2/token",
        scopes: "api refresh_token",
        pkce: true,
        token_fields: &[
            ("/access_token", "access_token"),
            ("/refresh_token", "refresh_token"),
            ("/instance_url", "instance_url"),
        ],
        install_fields: &[],
        ok_flag: false,
    },
    Provider {
        integration_type: "zendesk",
        env: "ZENDESK",
        authorize_url: "https://{subdomain}.zendesk.com/oauth/authorizations/new",
        token_url: "https://{subdomain}.zendesk.com/oauth/tokens",
        scopes: "read write",
        pkce: true,
        token_fields: &[("/access_token", "access_token")],
        install_fields: &["subdomain"],
        ok_flag: false,
    },
    Provider {
        integration_type: "google_analytics",
        env: "GOOGLE",
        authorize_url: "https://accounts.google.com/o/oauth2/v2/auth",
        token_url: "https://oauth2.googleapis.com/token",
        scopes: "https://www.googleapis.com/auth/analytics.readonly",
        pkce: true,
        token_fields: &[
            ("/access_token", "access_token"),
            ("/refresh_token", "refresh_token"),
            ("/expires_in", "token_expires_at"),
        ],
        install_fields: &["property_id"],
        ok_flag: false,
    },
];

/// The provider installing integrations of `integration_type`.
pub fn provider(integration_type: &str) -> Option<&'static Provider> {
    PROVIDERS
        .iter()
        .find(|p| p.integration_type == integration_type)
}

/// A provider this deployment has credentials for. `Debug` leaves the client secret out.
#[derive(Clone)]
pub struct ConfiguredProvider {
    pub provider: &'static Provider,
    pub client_id: String,
    pub client_secret: String,
    pub authorize_url: String,
    pub token_url: String,
    pub scopes: String,
}

impl std::fmt::Debug for ConfiguredProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredProvider")
            .field("integration_type", &self.provider.integration_type)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl ConfiguredProvider {
    /// A URL with `{field}` placeholders filled from the install's fields.
    pub fn fill(
        template: &str,
        fields: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, String> {
        let mut out = template.to_owned();
        while let Some(start) = out.find('{') {
            let end = out[start..]
                .find('}')
                .map(|e| start + e)
                .ok_or("unbalanced { in a provider URL")?;
            let name = &out[start + 1..end];
            let value = fields
                .get(name)
                .and_then(|v| v.as_str())
                .filter(|v| {
                    !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
                .ok_or_else(|| {
                    format!("the install needs `{name}` (letters, digits and dashes)")
                })?;
            out.replace_range(start..=end, value);
        }
        Ok(out)
    }
}

/// Reads the providers' settings: the configured ones, and problems for half-configured ones.
pub fn read(env: &mut EnvReader<'_>) -> Vec<ConfiguredProvider> {
    let mut configured = Vec::new();
    for provider in PROVIDERS {
        let id = env.optional(&format!("{}_CLIENT_ID", provider.env));
        let secret = env.optional(&format!("{}_CLIENT_SECRET", provider.env));
        let (client_id, client_secret) = match (id, secret) {
            (None, None) => continue,
            (Some(id), Some(secret)) => (id, secret),
            _ => {
                env.problem(format!(
                    "{env}_CLIENT_ID and {env}_CLIENT_SECRET must be set together",
                    env = provider.env
                ));
                continue;
            }
        };
        let mut url = |suffix: &str, default: Option<&str>| -> Option<String> {
            let name = format!("{}_{suffix}", provider.env);
            match env.optional(&name) {
                Some(value) => {
                    let parsed = url::Url::parse(&value.replace(['{', '}'], ""));
                    if parsed
                        .as_ref()
                        .is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
                    {
                        Some(value.trim_end_matches('/').to_owned())
                    } else {
                        env.problem(format!("{name}={value:?} is not an http(s) URL"));
                        None
                    }
                }
                None => default.map(str::to_owned),
            }
        };
        let authorize_url = url("AUTHORIZE_URL", Some(provider.authorize_url));
        let token_url = url("TOKEN_URL", Some(provider.token_url));
        let scopes = env
            .optional(&format!("{}_SCOPES", provider.env))
            .unwrap_or_else(|| provider.scopes.to_owned());
        if let (Some(authorize_url), Some(token_url)) = (authorize_url, token_url) {
            configured.push(ConfiguredProvider {
                provider,
                client_id,
                client_secret,
                authorize_url,
                token_url,
                scopes,
            });
        }
    }
    configured
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read_from(pairs: &[(&str, &str)]) -> (Vec<ConfiguredProvider>, Vec<String>) {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut env = EnvReader::new(move |k| map.get(k).cloned());
        let configured = read(&mut env);
        let problems = env.finish(()).err().map(|e| e.problems).unwrap_or_default();
        (configured, problems)
    }

    #[test]
    fn a_provider_is_on_with_both_credentials_and_says_what_is_missing() {
        let (configured, problems) =
            read_from(&[("SLACK_CLIENT_ID", "1.2"), ("HUBSPOT_CLIENT_SECRET", "s")]);
        assert!(configured.is_empty());
        assert_eq!(problems.len(), 2, "{problems:?}");
        let (configured, problems) = read_from(&[
            ("SLACK_CLIENT_ID", "1.2"),
            ("SLACK_CLIENT_SECRET", "s"),
            ("SLACK_TOKEN_URL", "http://127.0.0.1:9/api/oauth.v2.access"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            configured[0].token_url,
            "http://127.0.0.1:9/api/oauth.v2.access"
        );
        assert_eq!(
            configured[0].authorize_url,
            "https://slack.com/oauth/v2/authorize"
        );
    }

    #[test]
    fn placeholders_are_filled_only_with_plain_names() {
        let fields = serde_json::json!({"subdomain": "acme"});
        let fields = fields.as_object().unwrap();
        assert_eq!(
            ConfiguredProvider::fill("https://{subdomain}.zendesk.com/oauth/tokens", fields)
                .unwrap(),
            "https://acme.zendesk.com/oauth/tokens"
        );
        let evil = serde_json::json!({"subdomain": "evil.com/x?"});
        assert!(ConfiguredProvider::fill(
            "https://{subdomain}.zendesk.com",
            evil.as_object().unwrap()
        )
        .is_err());
        assert!(ConfiguredProvider::fill(
            "https://{subdomain}.zendesk.com",
            &serde_json::Map::new()
        )
        .is_err());
    }

    #[test]
    fn every_provider_maps_into_fields_its_type_has() {
        // The extension's field lists, for the fields the table writes.
        let known: &[(&str, &[&str])] = &[
            (
                "slack",
                &[
                    "bot_token",
                    "refresh_token",
                    "token_expires_at",
                    "team_id",
                    "team_name",
                    "bot_user_id",
                    "scope",
                    "app_id",
                    "channel_id",
                ],
            ),
            (
                "hubspot",
                &[
                    "access_token",
                    "refresh_token",
                    "token_expires_at",
                    "portal_id",
                ],
            ),
            (
                "salesforce",
                &["access_token", "refresh_token", "instance_url"],
            ),
            ("zendesk", &["access_token", "subdomain"]),
            (
                "google_analytics",
                &[
                    "access_token",
                    "refresh_token",
                    "token_expires_at",
                    "property_id",
                ],
            ),
        ];
        for provider in PROVIDERS {
            let fields = known
                .iter()
                .find(|(t, _)| *t == provider.integration_type)
                .unwrap()
                .1;
            for (_, field) in provider.token_fields {
                assert!(
                    fields.contains(field),
                    "{} → {field}",
                    provider.integration_type
                );
            }
            for field in provider.install_fields {
                assert!(
                    fields.contains(field),
                    "{} → {field}",
                    provider.integration_type
                );
            }
        }
    }
}
