//! The Lever permissions switchyard uses, call by call. An OAuth scope and the matching box of an
//! API key's permissions are the same permission; the scope string names it in errors.
//!
//! | call | permission | when |
//! | --- | --- | --- |
//! | `GET /opportunities/:id` | `opportunities:read:admin` | every trigger and every write-back |
//! | `POST /opportunities/:id/addTags`, `removeTags`, `addLinks` | `opportunities:write:admin` | every write-back |
//! | `GET /stages` | `stages:read:admin` | stage names (cached), connection check |
//! | `POST /opportunities/:id/notes` | `notes:write:admin` | only if the connector writes notes (Justifacts, Canditech) |
//! | `GET /postings/:id` | `postings:read:admin` | only if a rule names a posting (the posting's name is read) |
//!
//! switchyard reads neither Lever's notes (the notes it wrote are in its store) nor postings it
//! does not need (a posting's tags are already on the opportunities that applied to it).

/// One Lever API call: how errors name it, and the permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// `GET /postings/:id`.
    pub label: &'static str,
    /// `postings:read:admin`.
    pub permission: &'static str,
}

/// `GET /opportunities/:id?expand=applications`.
pub const GET_OPPORTUNITY: Endpoint = Endpoint {
    label: "GET /opportunities/:id",
    permission: "opportunities:read:admin",
};
/// `POST /opportunities/:id/addTags`.
pub const ADD_TAGS: Endpoint = Endpoint {
    label: "POST /opportunities/:id/addTags",
    permission: "opportunities:write:admin",
};
/// `POST /opportunities/:id/removeTags`.
pub const REMOVE_TAGS: Endpoint = Endpoint {
    label: "POST /opportunities/:id/removeTags",
    permission: "opportunities:write:admin",
};
/// `POST /opportunities/:id/addLinks`.
pub const ADD_LINKS: Endpoint = Endpoint {
    label: "POST /opportunities/:id/addLinks",
    permission: "opportunities:write:admin",
};
/// `POST /opportunities/:id/notes`.
pub const ADD_NOTE: Endpoint = Endpoint {
    label: "POST /opportunities/:id/notes",
    permission: "notes:write:admin",
};
/// `GET /postings/:id`.
pub const GET_POSTING: Endpoint = Endpoint {
    label: "GET /postings/:id",
    permission: "postings:read:admin",
};
/// `GET /stages`.
pub const LIST_STAGES: Endpoint = Endpoint {
    label: "GET /stages",
    permission: "stages:read:admin",
};

/// The default OAuth scopes of the host's Lever app (`[lever_oauth].scopes`): every permission
/// above, so one app serves every connector and rule. `offline_access` is added on top.
pub const DEFAULT_SCOPES: [&str; 5] = [
    "opportunities:read:admin",
    "opportunities:write:admin",
    "stages:read:admin",
    "notes:write:admin",
    "postings:read:admin",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_scopes_cover_every_call_and_nothing_else() {
        let calls = [
            GET_OPPORTUNITY,
            ADD_TAGS,
            REMOVE_TAGS,
            ADD_LINKS,
            ADD_NOTE,
            GET_POSTING,
            LIST_STAGES,
        ];
        for call in calls {
            assert!(DEFAULT_SCOPES.contains(&call.permission), "{call:?}");
        }
        for scope in DEFAULT_SCOPES {
            assert!(calls.iter().any(|c| c.permission == scope), "{scope} unused");
        }
    }
}
