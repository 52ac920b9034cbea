//! The signed-in session of a request ([`Current`]), put into the request by `auth::guard` and
//! read by every page: its role, its CSRF token, and who it is in the audit log.

use crate::store::console::{Role, Session};

/// The signed-in session of a request, put there by `auth::guard`.
#[derive(Clone)]
pub struct Current {
    pub session: Session,
}

impl Current {
    /// The role.
    pub fn role(&self) -> Role {
        self.session.role
    }

    /// Who this is in the audit log: the role, the client address and the session's short id
    /// (tokens are shared per role, so the session tells two operators apart).
    pub fn actor(&self) -> String {
        let short = self.session.id_hash.get(..8).unwrap_or("");
        format!(
            "{} ({}, session {short})",
            self.session.role.as_str(),
            self.session.client
        )
    }
}
