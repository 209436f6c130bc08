//! Per-type validation of integration configs.
//!
//! Each integration type declares its fields once: whether a field is required, whether it is a
//! secret (moved out of `config` and encrypted), and how its value is checked. Validation collects
//! every problem instead of stopping at the first, so a form can show them all at once. Unknown
//! fields are refused too: a secret sent under an unexpected name must never be stored in clear.

use dana_egress::{mongodb_hosts, HostPolicy};
use serde_json::{Map, Value};

/// How a field's value is checked.
#[derive(Clone, Copy)]
enum Check {
    /// Any non-empty string.
    Text,
    /// A string starting with one of the prefixes, with no whitespace.
    Token(&'static [&'static str]),
    /// A string with no whitespace (an opaque token or id).
    Opaque,
    /// A host name or IP address.
    Host,
    /// A TCP port: an integer (or integer string) from 1 to 65535.
    Port,
    /// An e-mail address.
    Email,
    /// An absolute `https://` URL with a host.
    HttpsUrl,
    /// A string of decimal digits (or a non-negative integer).
    Digits,
    /// true or false.
    Bool,
    /// One of the listed strings (compared case-insensitively).
    OneOf(&'static [&'static str]),
    /// A Slack channel id: C…, G… or D… followed by upper-case letters and digits.
    SlackChannel,
    /// A hexadecimal string of at least 16 digits (Slack's signing secret).
    Hex,
    /// A Zendesk subdomain: lower-case letters, digits and dashes.
    Subdomain,
    /// A Google service-account key: a JSON object with client_email and private_key.
    ServiceAccountJson,
}

/// One field of an integration type.
#[derive(Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub required: bool,
    pub secret: bool,
    check: Check,
}

impl Field {
    /// The mask API roles see in place of this secret field's value (see [`super::secrets::mask`]):
    /// tokens may show their documented prefix and, when long, their last characters; passwords,
    /// connection strings and key files show nothing.
    pub fn mask(&self, secret: &str) -> String {
        let (prefix, tail) = match self.check {
            Check::Token(prefixes) => {
                let prefix = prefixes.iter().copied().find(|p| secret.starts_with(p));
                // A URI's tail is its database or options, not a random token.
                (prefix, !prefix.is_some_and(|p| p.ends_with("://")))
            }
            Check::Opaque | Check::Hex => (None, true),
            _ => (None, false),
        };
        super::secrets::mask(secret, prefix, tail)
    }
}

const fn field(name: &'static str, required: bool, secret: bool, check: Check) -> Field {
    Field {
        name,
        required,
        secret,
        check,
    }
}

const PG_SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];
const MYSQL_SSL_MODES: &[&str] = &[
    "disabled",
    "preferred",
    "required",
    "verify_ca",
    "verify_identity",
];

// Fields named `refresh_token`, `access_token` and `token_expires_at` are what an OAuth install
// through Dana (the BFF's provider table) stores.
const SLACK: &[Field] = &[
    // Rotating installs get `xoxe.xoxb-` tokens.
    field(
        "bot_token",
        true,
        true,
        Check::Token(&["xoxb-", "xoxe.xoxb-"]),
    ),
    // The default channel to post to; an install through OAuth has none yet.
    field("channel_id", false, false, Check::SlackChannel),
    field("refresh_token", false, true, Check::Token(&["xoxe-"])),
    field("token_expires_at", false, false, Check::Text),
    field("app_id", false, false, Check::Opaque),
    field("signing_secret", false, true, Check::Hex),
    field("user_token", false, true, Check::Token(&["xoxp-"])),
    field("team_id", false, false, Check::Opaque),
    field("team_name", false, false, Check::Text),
    field("bot_user_id", false, false, Check::Opaque),
    field("scope", false, false, Check::Text),
];
const EMAIL: &[Field] = &[
    field("smtp_host", true, false, Check::Host),
    field("smtp_port", true, false, Check::Port),
    field("username", true, false, Check::Text),
    field("password", true, true, Check::Text),
    field("from_address", true, false, Check::Email),
    field("from_name", false, false, Check::Text),
    field(
        "security",
        false,
        false,
        Check::OneOf(&["none", "starttls", "tls"]),
    ),
];
const HUBSPOT: &[Field] = &[
    field("access_token", true, true, Check::Opaque),
    field("refresh_token", false, true, Check::Opaque),
    field("token_expires_at", false, false, Check::Text),
    field("portal_id", false, false, Check::Digits),
];
// Either a connected app of the user's own (client id and secret), or an OAuth install.
const SALESFORCE: &[Field] = &[
    field("instance_url", true, false, Check::HttpsUrl),
    field("client_id", false, false, Check::Opaque),
    field("client_secret", false, true, Check::Opaque),
    field("access_token", false, true, Check::Opaque),
    field("refresh_token", false, true, Check::Opaque),
    field("token_expires_at", false, false, Check::Text),
    field("api_version", false, false, Check::Opaque),
];
// Either an API token (with the agent's e-mail), or an OAuth install.
const ZENDESK: &[Field] = &[
    field("subdomain", true, false, Check::Subdomain),
    field("email", false, false, Check::Email),
    field("api_token", false, true, Check::Opaque),
    field("access_token", false, true, Check::Opaque),
];
// Either a service-account key, or an OAuth install.
const GOOGLE_ANALYTICS: &[Field] = &[
    field("property_id", true, false, Check::Digits),
    field("credentials_json", false, true, Check::ServiceAccountJson),
    field("access_token", false, true, Check::Opaque),
    field("refresh_token", false, true, Check::Opaque),
    field("token_expires_at", false, false, Check::Text),
    field("measurement_id", false, false, Check::Token(&["G-"])),
    field("api_secret", false, true, Check::Opaque),
];

/// Types that take one of several sets of credentials: each set must be complete, and at least
/// one must be given.
const ALTERNATIVES: &[(&str, &[&[&str]])] = &[
    (
        "salesforce",
        &[&["client_id", "client_secret"], &["refresh_token"]],
    ),
    ("zendesk", &[&["email", "api_token"], &["access_token"]]),
    (
        "google_analytics",
        &[&["credentials_json"], &["refresh_token"]],
    ),
];
const POSTGRESQL: &[Field] = &[
    field("host", true, false, Check::Host),
    field("port", false, false, Check::Port),
    field("database", true, false, Check::Text),
    field("username", true, false, Check::Text),
    field("password", true, true, Check::Text),
    field("ssl_mode", false, false, Check::OneOf(PG_SSL_MODES)),
];
const MYSQL: &[Field] = &[
    field("host", true, false, Check::Host),
    field("port", false, false, Check::Port),
    field("database", true, false, Check::Text),
    field("username", true, false, Check::Text),
    field("password", true, true, Check::Text),
    field("ssl_mode", false, false, Check::OneOf(MYSQL_SSL_MODES)),
];
const SQLSERVER: &[Field] = &[
    field("host", true, false, Check::Host),
    field("port", false, false, Check::Port),
    field("database", true, false, Check::Text),
    field("username", true, false, Check::Text),
    field("password", true, true, Check::Text),
    field("encrypt", false, false, Check::Bool),
    field("trust_server_certificate", false, false, Check::Bool),
];
const MONGODB: &[Field] = &[
    field(
        "connection_string",
        true,
        true,
        Check::Token(&["mongodb://", "mongodb+srv://"]),
    ),
    field("database", true, false, Check::Text),
];

/// The field `name` of a type, if it has one.
pub fn field_named<'a>(fields: &'a [Field], name: &str) -> Option<&'a Field> {
    fields.iter().find(|f| f.name == name)
}

/// Every supported integration type and its fields.
pub const TYPES: &[(&str, &[Field])] = &[
    ("slack", SLACK),
    ("email", EMAIL),
    ("hubspot", HUBSPOT),
    ("salesforce", SALESFORCE),
    ("zendesk", ZENDESK),
    ("google_analytics", GOOGLE_ANALYTICS),
    ("postgresql", POSTGRESQL),
    ("mysql", MYSQL),
    ("sqlserver", SQLSERVER),
    ("mongodb", MONGODB),
];

/// The fields of `integration_type`, or None for an unknown type.
pub fn fields_of(integration_type: &str) -> Option<&'static [Field]> {
    TYPES
        .iter()
        .find(|(name, _)| *name == integration_type)
        .map(|(_, fields)| *fields)
}

/// The names of the supported types, for error messages.
pub fn type_names() -> String {
    TYPES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// Checks a config of `kind` (see [`validate`]) and its sets of alternative credentials.
pub fn validate_kind(kind: &str, config: &Map<String, Value>, hosts: &HostPolicy) -> Vec<Problem> {
    let Some(fields) = fields_of(kind) else {
        return vec![Problem::new("integration_type", "is not a supported type")];
    };
    let mut problems = validate(fields, config, hosts);
    let present = |name: &str| config.get(name).is_some_and(|v| !v.is_null());
    for (_, sets) in ALTERNATIVES.iter().filter(|(k, _)| *k == kind) {
        for set in sets.iter() {
            let given = set.iter().filter(|f| present(f)).count();
            if given > 0 && given < set.len() {
                let missing: Vec<&str> = set.iter().copied().filter(|f| !present(f)).collect();
                problems.push(Problem::new(
                    missing[0],
                    format!("is required together with {}", set.join(" and ")),
                ));
            }
        }
        if !sets.iter().any(|set| set.iter().all(|f| present(f))) {
            let described: Vec<String> = sets.iter().map(|set| set.join(" and ")).collect();
            problems.push(Problem::new(
                sets[0][0],
                format!("is required, or else {}", described[1..].join(", or ")),
            ));
        }
    }
    problems
}

/// One thing wrong with a config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub field: String,
    pub problem: String,
}

impl Problem {
    pub fn new(field: &str, problem: impl Into<String>) -> Problem {
        Problem {
            field: field.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Checks a complete config (settings and secrets together, as one object) against its type.
/// Hosts it names must pass `hosts` (public, unless allowed by the operator).
pub fn validate(fields: &[Field], config: &Map<String, Value>, hosts: &HostPolicy) -> Vec<Problem> {
    let mut problems = Vec::new();
    for key in config.keys() {
        if !fields.iter().any(|f| f.name == key) {
            problems.push(Problem::new(key, "is not a field of this integration type"));
        }
    }
    for f in fields {
        match config.get(f.name) {
            None | Some(Value::Null) if f.required => {
                problems.push(Problem::new(f.name, "is required"))
            }
            None | Some(Value::Null) => {}
            Some(value) => {
                if let Err(problem) = check(f.check, value, hosts) {
                    problems.push(Problem::new(f.name, problem));
                }
            }
        }
    }
    problems
}

fn check(check: Check, value: &Value, hosts: &HostPolicy) -> Result<(), String> {
    match check {
        Check::Port => {
            let port = match value {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse::<u64>().ok(),
                _ => None,
            };
            match port {
                Some(1..=65535) => Ok(()),
                _ => Err("must be a port number from 1 to 65535".into()),
            }
        }
        Check::Digits => match value {
            Value::Number(n) if n.is_u64() => Ok(()),
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
            _ => Err("must be a number made of digits".into()),
        },
        Check::Bool => match value {
            Value::Bool(_) => Ok(()),
            _ => Err("must be true or false".into()),
        },
        _ => {
            let Some(text) = value.as_str() else {
                return Err("must be a string".into());
            };
            if text.trim().is_empty() {
                return Err("must not be empty".into());
            }
            check_text(check, text)?;
            check_hosts(check, text, hosts)
        }
    }
}

/// The hosts a well-formed value names must be ones an integration may reach.
fn check_hosts(check: Check, text: &str, hosts: &HostPolicy) -> Result<(), String> {
    let named: Vec<String> = match check {
        Check::Host => vec![text.to_owned()],
        Check::HttpsUrl => url::Url::parse(text)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .into_iter()
            .collect(),
        Check::Token(prefixes) if prefixes.iter().any(|p| p.starts_with("mongodb")) => {
            let found = mongodb_hosts(text);
            if found.is_empty() {
                return Err("must name at least one host".into());
            }
            found
        }
        _ => return Ok(()),
    };
    named.iter().try_for_each(|host| hosts.check(host))
}

fn check_text(check: Check, text: &str) -> Result<(), String> {
    let no_space = !text.chars().any(char::is_whitespace);
    let ok = match check {
        Check::Text => true,
        Check::Opaque => no_space,
        Check::Token(prefixes) => {
            if !prefixes
                .iter()
                .any(|p| text.starts_with(p) && text.len() > p.len())
            {
                return Err(format!("must start with {}", prefixes.join(" or ")));
            }
            no_space
        }
        Check::Host => is_host(text),
        Check::Email => is_email(text),
        Check::HttpsUrl => {
            return match url::Url::parse(text) {
                Ok(u) if u.scheme() == "https" && u.host_str().is_some() => Ok(()),
                _ => Err("must be an https:// URL".into()),
            }
        }
        Check::OneOf(options) => {
            if options.iter().any(|o| o.eq_ignore_ascii_case(text)) {
                return Ok(());
            }
            return Err(format!("must be one of {}", options.join(", ")));
        }
        Check::SlackChannel => {
            let mut chars = text.chars();
            matches!(chars.next(), Some('C' | 'G' | 'D'))
                && text.len() >= 9
                && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        }
        Check::Hex => text.len() >= 16 && text.bytes().all(|b| b.is_ascii_hexdigit()),
        Check::Subdomain => {
            !text.starts_with('-')
                && text.len() <= 63
                && text
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }
        Check::ServiceAccountJson => {
            let parsed = serde_json::from_str::<Value>(text).ok();
            let has = |k: &str| {
                parsed
                    .as_ref()
                    .and_then(|v| v.get(k))
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            };
            if !(has("client_email") && has("private_key")) {
                return Err(
                    "must be a service-account key (JSON with client_email and private_key)".into(),
                );
            }
            true
        }
        Check::Port | Check::Digits | Check::Bool => unreachable!("checked before"),
    };
    if ok {
        Ok(())
    } else {
        Err(match check {
            Check::Opaque | Check::Token(_) => "must not contain whitespace".into(),
            Check::Host => "must be a host name or IP address".into(),
            Check::Email => "must be an e-mail address".into(),
            Check::SlackChannel => "must be a Slack channel id such as C0123456789".into(),
            Check::Hex => "must be a hexadecimal string of at least 16 digits".into(),
            Check::Subdomain => {
                "must be a subdomain of lower-case letters, digits and dashes".into()
            }
            _ => "is not valid".into(),
        })
    }
}

/// A DNS host name (RFC 1123 labels) or an IP address.
fn is_host(text: &str) -> bool {
    if text.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A deliberately plain check: one `@`, a non-empty local part without spaces, a host with a dot.
fn is_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !local.chars().any(|c| c.is_whitespace() || c == '@')
                && domain.contains('.')
                && is_host(domain)
        }
        None => false,
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use serde_json::json;

    fn problems(kind: &str, config: Value) -> Vec<String> {
        validate(
            fields_of(kind).unwrap(),
            config.as_object().unwrap(),
            &HostPolicy::default(),
        )
        .into_iter()
        .map(|p| format!("{}: {}", p.field, p.problem))
        .collect()
    }

    #[test]
    fn slack_lists_every_problem() {
        let found = problems(
            "slack",
            json!({"bot_token": "xoxp-123", "signing_secret": "nothex", "extra": 1}),
        );
        assert_eq!(
            found,
            vec![
                "extra: is not a field of this integration type",
                "bot_token: must start with xoxb- or xoxe.xoxb-",
                "signing_secret: must be a hexadecimal string of at least 16 digits",
            ]
        );
    }

    fn kind_problems(kind: &str, config: Value) -> Vec<String> {
        validate_kind(kind, config.as_object().unwrap(), &HostPolicy::default())
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.problem))
            .collect()
    }

    #[test]
    fn alternative_credentials_need_one_complete_set() {
        let url = "https://acme.my.salesforce.com";
        assert!(kind_problems(
            "salesforce",
            json!({"instance_url": url, "refresh_token": "r"})
        )
        .is_empty());
        assert!(kind_problems(
            "salesforce",
            json!({"instance_url": url, "client_id": "i", "client_secret": "s"})
        )
        .is_empty());
        assert_eq!(
            kind_problems("salesforce", json!({"instance_url": url, "client_id": "i"})),
            [
                "client_secret: is required together with client_id and client_secret",
                "client_id: is required, or else refresh_token"
            ]
        );
        assert_eq!(
            kind_problems("google_analytics", json!({"property_id": "1"})),
            ["credentials_json: is required, or else refresh_token"]
        );
        assert!(
            kind_problems("zendesk", json!({"subdomain": "acme", "access_token": "t"})).is_empty()
        );
    }

    #[test]
    fn email_port_range() {
        let base = json!({"smtp_host": "smtp.example.com", "username": "u", "password": "p",
                          "from_address": "a@example.com"});
        for (port, ok) in [
            (json!(0), false),
            (json!(1), true),
            (json!(65535), true),
            (json!(65536), false),
            (json!("587"), true),
            (json!("x"), false),
            (json!(true), false),
        ] {
            let mut c = base.clone();
            c["smtp_port"] = port.clone();
            assert_eq!(problems("email", c).is_empty(), ok, "port {port}");
        }
    }

    #[test]
    fn internal_hosts_are_refused_in_every_field_that_names_one() {
        let email = |host: &str| {
            problems(
                "email",
                json!({"smtp_host": host, "smtp_port": 25, "username": "u", "password": "p",
                       "from_address": "a@example.com"}),
            )
        };
        assert!(email("smtp.example.com").is_empty());
        assert!(email("169.254.169.254")[0].starts_with("smtp_host: 169.254.169.254 is a loopback"));
        let pg = problems(
            "postgresql",
            json!({"host": "localhost", "database": "d", "username": "u", "password": "p"}),
        );
        assert!(pg[0].starts_with("host: localhost names a local"), "{pg:?}");
        let sf = problems(
            "salesforce",
            json!({"instance_url": "https://10.0.0.8/", "client_id": "id", "client_secret": "s"}),
        );
        assert_eq!(sf.len(), 1, "{sf:?}");
        let mongo = |uri: &str| {
            problems(
                "mongodb",
                json!({"connection_string": uri, "database": "d"}),
            )
        };
        assert!(mongo("mongodb://u:p@db.example.com:27017/x").is_empty());
        assert_eq!(mongo("mongodb://u:p@db.example.com,127.0.0.1/x").len(), 1);
        let allowed = validate(
            fields_of("postgresql").unwrap(),
            json!({"host": "10.0.0.5", "database": "d", "username": "u", "password": "p"})
                .as_object()
                .unwrap(),
            &HostPolicy::parse("10.0.0.0/8"),
        );
        assert!(allowed.is_empty(), "{allowed:?}");
    }

    #[test]
    fn hosts_emails_urls() {
        assert!(is_host("db.internal") && is_host("10.0.0.1") && is_host("::1"));
        assert!(!is_host("bad host") && !is_host("-x.com") && !is_host("a..b"));
        assert!(is_email("ops@example.com") && !is_email("ops@localhost") && !is_email("@x.io"));
        let sf = |url: &str| {
            problems(
                "salesforce",
                json!({"instance_url": url, "client_id": "id", "client_secret": "s"}),
            )
        };
        assert!(sf("https://acme.my.salesforce.com").is_empty());
        assert!(sf("https://acme.my.salesforce.com").is_empty());
        assert_eq!(
            sf("http://acme.my.salesforce.com"),
            vec!["instance_url: must be an https:// URL"]
        );
    }
}
