//! Every error the BFF answers with itself, in PostgREST's JSON shape
//! (`{"code","message","details","hint"}`), so supabase-js surfaces it like any other.

use crate::body::{full, Body};
use crate::db::DbError;
use crate::knowledge::KnowledgeError;
use dana_storage::StorageError;
use dana_supabase::JwtError;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    pub details: Option<String>,
    pub hint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("No API key found in request")]
    NoCredentials,
    #[error("Invalid API key")]
    InvalidApiKey,
    #[error("Authorization header is not a Bearer token")]
    NotBearer,
    #[error(transparent)]
    Token(#[from] JwtError),
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("{upstream} is unreachable")]
    UpstreamDown {
        upstream: &'static str,
        details: String,
    },
    #[error("{upstream} did not answer within {seconds} s")]
    UpstreamTimeout {
        upstream: &'static str,
        seconds: f64,
    },
    #[error("{upstream} failed to answer")]
    UpstreamFailed {
        upstream: &'static str,
        details: String,
    },
    #[error("request headers are larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("the path must not contain . or .. segments")]
    DotSegments,
    #[error("no route for {0}")]
    NotFound(String),
    #[error("this needs the operator's token")]
    OperatorToken,
    #[error("metrics are off")]
    MetricsOff,
    #[error(transparent)]
    Knowledge(#[from] KnowledgeError),
    #[error("the requested range is not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("internal error")]
    Internal(String),
    /// An answer a route family decided on itself (sessions, integrations, Slack): each family's
    /// typed error says how it maps (see `Problem`).
    #[error("{}", .0.message)]
    Problem(Problem),
}

/// A fully decided error answer: status, PostgREST-shaped body, and what else the client needs.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<String>,
    pub hint: Option<String>,
    /// Seconds, for 429 and 503 answers that know when to come back.
    pub retry_after: Option<u64>,
    /// The session cookie is no good: the answer removes it.
    pub clear_session: bool,
}

impl Problem {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Problem {
        let code = match status.as_u16() {
            400 => "BFF400",
            401 => "BFF401",
            403 => "BFF403",
            404 => "BFF404",
            405 => "BFF405",
            409 => "BFF409",
            413 => "BFF413",
            415 => "BFF415",
            429 => "BFF429",
            501 => "BFF501",
            502 => "BFF502",
            503 => "BFF503",
            504 => "BFF504",
            _ if status.is_client_error() => "BFF400",
            _ => "BFF500",
        };
        Problem {
            status,
            code,
            message: message.into(),
            details: None,
            hint: None,
            retry_after: None,
            clear_session: false,
        }
    }

    pub fn details(mut self, details: impl Into<String>) -> Problem {
        self.details = Some(details.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Problem {
        self.hint = Some(hint.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::Problem(Problem::new(StatusCode::BAD_REQUEST, message))
    }

    /// A feature whose settings are missing: 501 naming them; the rest of the BFF works.
    pub fn not_configured(feature: &str, settings: &str) -> ApiError {
        ApiError::Problem(
            Problem::new(
                StatusCode::NOT_IMPLEMENTED,
                format!("{feature} is not configured on this server"),
            )
            .details(format!("missing setting: {settings}"))
            .hint(format!("Set {settings} and restart the BFF.")),
        )
    }

    /// A dependency could not be reached: 503 with `message`; the reason is logged, not shown.
    pub fn unavailable(message: &str, why: &str) -> Problem {
        tracing::warn!(error = why, "{message}");
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, message).hint("Retry later.")
    }

    /// The database could not be reached.
    pub fn database_unavailable(why: &str) -> Problem {
        Problem::unavailable("the database is unavailable", why)
    }

    pub fn method_not_allowed(allowed: &str) -> ApiError {
        ApiError::Problem(
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                .hint(format!("This route takes {allowed}.")),
        )
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        ApiError::Problem(problem)
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NoCredentials
            | ApiError::InvalidApiKey
            | ApiError::NotBearer
            | ApiError::OperatorToken => StatusCode::UNAUTHORIZED,
            ApiError::Token(JwtError::KeysUnavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Token(_) => StatusCode::UNAUTHORIZED,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UpstreamDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
            ApiError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::DotSegments => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) | ApiError::MetricsOff => StatusCode::NOT_FOUND,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Knowledge(e) => knowledge_status(e),
            ApiError::Problem(p) => p.status,
        }
    }

    fn body(&self) -> ErrorBody {
        let (code, details, hint) = match self {
            ApiError::NoCredentials => (
                "PGRST302",
                None,
                Some("Send the project's anon key in the apikey header, or a user's access token as Authorization: Bearer.".into()),
            ),
            ApiError::InvalidApiKey => ("PGRST301", None, Some("Double check the anon or service_role API key.".into())),
            ApiError::NotBearer => ("PGRST301", None, Some("Use Authorization: Bearer <access token>.".into())),
            ApiError::Token(JwtError::KeysUnavailable(why)) => ("BFF503", Some(why.clone()), None),
            ApiError::Token(e) => (e.postgrest_code(), None, None),
            ApiError::BodyTooLarge { .. } => ("BFF413", None, Some("Send a smaller body, or split the request.".into())),
            ApiError::UpstreamDown { details, .. } => ("BFF503", Some(details.clone()), Some("Retry later.".into())),
            ApiError::UpstreamTimeout { .. } => ("BFF504", None, Some("Narrow the query or retry later.".into())),
            ApiError::UpstreamFailed { details, .. } => ("BFF502", Some(details.clone()), None),
            ApiError::HeadersTooLarge { .. } => ("BFF431", None, Some("Send fewer or smaller headers (cookies included).".into())),
            ApiError::DotSegments => ("BFF400", None, Some("Name the resource directly, without . or .. (encoded or not).".into())),
            ApiError::NotFound(_) => ("BFF404", None, Some("The API lives under /rest/v1.".into())),
            ApiError::OperatorToken => ("BFF401", None, Some("Send Authorization: Bearer <BFF_OPERATOR_TOKEN>.".into())),
            ApiError::MetricsOff => ("BFF404", None, Some("Metrics are served only when BFF_OPERATOR_TOKEN is set.".into())),
            ApiError::RangeNotSatisfiable { size } => ("BFF416", Some(format!("the file has {size} bytes")), None),
            ApiError::Internal(why) => {
                tracing::error!(error = why, "internal error");
                ("BFF500", None, None)
            }
            ApiError::Knowledge(e) => knowledge_code(e),
            ApiError::Problem(p) => (p.code, p.details.clone(), p.hint.clone()),
        };
        ErrorBody {
            code,
            message: self.public_message(),
            details,
            hint,
        }
    }

    /// The message a client sees: the error's own, except for failures of a dependency, whose
    /// text (addresses, driver errors) stays in the log.
    fn public_message(&self) -> String {
        match self {
            ApiError::Knowledge(KnowledgeError::Storage(StorageError::Unavailable(_))) => {
                "storage is unavailable".into()
            }
            ApiError::Knowledge(KnowledgeError::Storage(StorageError::NotFound(_))) => {
                "no such file".into()
            }
            ApiError::Knowledge(KnowledgeError::Storage(_)) => "storage failed".into(),
            ApiError::Knowledge(KnowledgeError::Db(DbError::Unavailable(_))) => {
                "the database is unavailable".into()
            }
            ApiError::Knowledge(KnowledgeError::Db(DbError::Forbidden(why))) => why.clone(),
            ApiError::Knowledge(KnowledgeError::Db(_)) => "database error".into(),
            other => other.to_string(),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let json = serde_json::to_vec(&self.body()).expect("error bodies serialize");
        let mut response = Response::new(full(json));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if let ApiError::RangeNotSatisfiable { size } = &self {
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("digits"),
            );
        }
        if matches!(
            self,
            ApiError::BodyTooLarge { .. } | ApiError::Knowledge(KnowledgeError::TooLarge { .. })
        ) {
            // The rest of the body is not read: the connection ends after this answer.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let ApiError::Problem(problem) = &self {
            if let Some(seconds) = problem.retry_after {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            if problem.clear_session {
                headers.append(
                    header::SET_COOKIE,
                    crate::session::clear_cookie(crate::session::COOKIE),
                );
            }
        }
        if self.status() == StatusCode::UNAUTHORIZED {
            // As PostgREST does (RFC 6750), so clients can tell a token problem from the rest.
            let description = self.to_string().replace('"', "'");
            if let Ok(value) = HeaderValue::from_str(&format!(
                "Bearer error=\"invalid_token\", error_description=\"{description}\""
            )) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// The status of a knowledge-file failure: a dependency that is down is a 503 naming it.
fn knowledge_status(error: &KnowledgeError) -> StatusCode {
    match error {
        KnowledgeError::NotConfigured => StatusCode::NOT_IMPLEMENTED,
        KnowledgeError::NotSignedIn => StatusCode::UNAUTHORIZED,
        KnowledgeError::NotFound | KnowledgeError::Storage(StorageError::NotFound(_)) => {
            StatusCode::NOT_FOUND
        }
        KnowledgeError::AlreadyExists(_)
        | KnowledgeError::Busy
        | KnowledgeError::Db(DbError::Conflict(_)) => StatusCode::CONFLICT,
        KnowledgeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        KnowledgeError::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        KnowledgeError::BadKey(_) | KnowledgeError::BadBody(_) | KnowledgeError::Invalid(_) => {
            StatusCode::BAD_REQUEST
        }
        KnowledgeError::Storage(StorageError::InvalidRange) => StatusCode::RANGE_NOT_SATISFIABLE,
        KnowledgeError::Storage(StorageError::Unavailable(_))
        | KnowledgeError::Db(DbError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
        KnowledgeError::Db(DbError::Forbidden(_)) => StatusCode::FORBIDDEN,
        KnowledgeError::Storage(_) => StatusCode::BAD_GATEWAY,
        KnowledgeError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn knowledge_code(error: &KnowledgeError) -> (&'static str, Option<String>, Option<String>) {
    let code = match knowledge_status(error).as_u16() {
        400 => "BFF400",
        401 => "BFF401",
        403 => "BFF403",
        404 => "BFF404",
        409 => "BFF409",
        413 => "BFF413",
        415 => "BFF415",
        416 => "BFF416",
        501 => "BFF501",
        503 => "BFF503",
        502 => "BFF502",
        _ => "BFF500",
    };
    let (details, hint) = match error {
        KnowledgeError::Storage(StorageError::Unavailable(why)) => {
            tracing::warn!(error = why, "storage unavailable");
            (
                Some("storage is unavailable".to_owned()),
                Some("Retry later.".to_owned()),
            )
        }
        KnowledgeError::Db(DbError::Unavailable(why)) => {
            tracing::warn!(error = why, "database unavailable");
            (
                Some("the database is unavailable".to_owned()),
                Some("Retry later.".to_owned()),
            )
        }
        KnowledgeError::Storage(e) => {
            tracing::error!(error = %e, "storage error");
            (Some("storage refused the operation".to_owned()), None)
        }
        KnowledgeError::Db(e) => {
            tracing::error!(error = %e, "database error");
            (None, None)
        }
        KnowledgeError::UnsupportedType(_) => (
            None,
            Some("See KNOWLEDGE_MIME_TYPES for the accepted types.".to_owned()),
        ),
        _ => (None, None),
    };
    (code, details, hint)
}
