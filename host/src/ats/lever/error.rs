//! [`LeverError`]: how a call to Lever failed. Its own module so that the API client and the
//! OAuth token source, which use each other, both depend on it rather than on one another's.

/// A Lever API failure. Messages never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum LeverError {
    /// Rate limited, 5xx, timeout or connection failure: try again later.
    #[error("Lever unavailable: {0}")]
    Transient(String),
    /// 401: the credential is wrong, expired or revoked.
    #[error("Lever refused the credential ({0})")]
    Unauthorized(u16),
    /// 403: the credential is valid but lacks the permission this call needs. Not retried: it
    /// waits until someone grants the permission.
    #[error(
        "Lever refused {call}: the credential lacks permission {permission} (grant it on the API \
         key, or add the scope to [lever_oauth].scopes and connect again); Lever said: {message}"
    )]
    Forbidden {
        /// The call, e.g. `GET /postings/:id`.
        call: &'static str,
        /// The permission (OAuth scope) the call needs, e.g. `postings:read:admin`.
        permission: &'static str,
        /// Lever's error message, shortened.
        message: String,
    },
    /// An OAuth integration without a usable grant (never connected, revoked, disconnected).
    #[error("Lever integration not connected: {0}")]
    Disconnected(String),
    /// Any other 4xx.
    #[error("Lever answered {status}: {message}")]
    Rejected { status: u16, message: String },
}

impl LeverError {
    /// Whether a later retry may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, LeverError::Transient(_))
    }
}
