//! The status life cycle of an integration config.
//!
//! ```text
//!            verify ok                 verify fails
//!  pending ───────────► active ◄──────────► error
//!     ▲                   │  re-verified        │
//!     │ re-enable         ▼                     │
//!     └──────────────  disabled ◄───────────────┘   (any status can be disabled)
//! ```
//!
//! `active` and `error` are outcomes of verifying the credentials against the provider, which
//! only the service role (the BFF) or a superuser does; users may disable a config, re-enable it
//! (back to `pending`), or edit it (which also sends it back to `pending`). A disabled config
//! never jumps straight to `active`: it is re-enabled and re-verified.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Active,
    Error,
    Disabled,
}

impl Status {
    pub fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "pending" => Status::Pending,
            "active" => Status::Active,
            "error" => Status::Error,
            "disabled" => Status::Disabled,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Error => "error",
            Status::Disabled => "disabled",
        }
    }

    /// Statuses only a verification may set.
    pub fn needs_verification(self) -> bool {
        matches!(self, Status::Active | Status::Error)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a status change was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("status must be one of pending, active, error, disabled (got \"{0}\")")]
    Unknown(String),
    #[error(
        "status \"{0}\" is set by verifying the integration, which only the service role does"
    )]
    VerificationOnly(Status),
    #[error("a disabled integration cannot become {0} directly: re-enable it (status \"pending\") and verify it again")]
    FromDisabled(Status),
}

/// Checks a change from `from` (None on insert) to `to`. `verifier` is true for the service
/// role or a superuser.
pub fn check_transition(
    from: Option<Status>,
    to: Status,
    verifier: bool,
) -> Result<(), TransitionError> {
    if from == Some(to) {
        return Ok(());
    }
    if from == Some(Status::Disabled) && to != Status::Pending {
        return Err(TransitionError::FromDisabled(to));
    }
    if to.needs_verification() && !verifier {
        return Err(TransitionError::VerificationOnly(to));
    }
    Ok(())
}

#[cfg(test)]
mod unit {
    use super::Status::*;
    use super::*;

    #[test]
    fn users_cannot_mark_themselves_verified() {
        assert_eq!(
            check_transition(None, Active, false),
            Err(TransitionError::VerificationOnly(Active))
        );
        assert_eq!(
            check_transition(Some(Pending), Error, false),
            Err(TransitionError::VerificationOnly(Error))
        );
        assert!(check_transition(None, Pending, false).is_ok());
        assert!(check_transition(Some(Pending), Active, true).is_ok());
    }

    #[test]
    fn disabled_goes_back_through_pending() {
        for verifier in [false, true] {
            assert_eq!(
                check_transition(Some(Disabled), Active, verifier),
                Err(TransitionError::FromDisabled(Active))
            );
            assert!(check_transition(Some(Disabled), Pending, verifier).is_ok());
        }
        for from in [Pending, Active, Error] {
            assert!(check_transition(Some(from), Disabled, false).is_ok());
        }
    }
}
