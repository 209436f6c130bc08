//! What went wrong talking to S3, reduced to what a caller acts on.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// An S3 failure: the object or bucket is not there, the credentials are refused, the server
/// cannot be reached (or failed), or something else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("access denied by the storage server: {0}")]
    Denied(String),
    #[error("the storage server is unavailable: {0}")]
    Unavailable(String),
    #[error("the requested range is not satisfiable")]
    InvalidRange,
    #[error("storage error: {0}")]
    Other(String),
}

impl StorageError {
    /// Classifies an SDK error by what happened on the wire: the error code when the server sent
    /// one, else the HTTP status (HEAD answers have no body), else the transport failure.
    pub fn from_sdk<E>(error: SdkError<E, HttpResponse>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = error.raw_response().map(|r| r.status().as_u16());
        match &error {
            SdkError::DispatchFailure(e) => StorageError::Unavailable(format!("{e:?}")),
            SdkError::TimeoutError(_) => StorageError::Unavailable("the request timed out".into()),
            SdkError::ServiceError(service) => classify(
                service.err().code().unwrap_or(""),
                service.err().message().unwrap_or(""),
                status,
            ),
            other => classify("", &other.to_string(), status),
        }
    }
}

fn classify(code: &str, message: &str, status: Option<u16>) -> StorageError {
    let what = match (code, message) {
        ("", "") => format!("HTTP {}", status.unwrap_or(0)),
        ("", m) => m.to_owned(),
        (c, "") => c.to_owned(),
        (c, m) => format!("{c}: {m}"),
    };
    match (code, status) {
        ("NoSuchKey" | "NotFound" | "NoSuchBucket" | "NoSuchUpload", _) | (_, Some(404)) => {
            StorageError::NotFound(what)
        }
        ("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch", _)
        | (_, Some(401 | 403)) => StorageError::Denied(what),
        ("InvalidRange", _) | (_, Some(416)) => StorageError::InvalidRange,
        ("InternalError" | "ServiceUnavailable" | "SlowDown", _) | (_, Some(500..=599)) => {
            StorageError::Unavailable(what)
        }
        _ => StorageError::Other(what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_say_what_happened() {
        assert!(matches!(
            classify("NoSuchKey", "x", Some(404)),
            StorageError::NotFound(_)
        ));
        assert!(matches!(
            classify("", "", Some(404)),
            StorageError::NotFound(_)
        ));
        assert!(matches!(
            classify("SignatureDoesNotMatch", "", Some(403)),
            StorageError::Denied(_)
        ));
        assert!(matches!(
            classify("", "", Some(503)),
            StorageError::Unavailable(_)
        ));
        assert_eq!(
            classify("InvalidRange", "", Some(416)),
            StorageError::InvalidRange
        );
        assert!(matches!(
            classify("BadDigest", "", Some(400)),
            StorageError::Other(_)
        ));
    }
}
