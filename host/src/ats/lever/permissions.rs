//! The Lever permissions switchyard uses, call by call. An OAuth scope and the matching box of an
//! API key's permissions are the same permission; the scope string names it in errors.
//!
//! | call | permission | when |
//! | --- | --- | --- |
//! | `GET /opportunities/:id` | `opportunities:read:admin` | every trigger and every write-back |
//! | `POST /opportunities/:id/addTags`, `removeTags`, `addLinks` | `opportunities:write:admin` | every write-back |
//! | `GET /stages` | `stages:read:admin` | stage names (cached), connection check |
//! | `POST /opportunities/:id/notes` | `notes:write:admin` | only if the connector writes notes (Justifacts, Canditech) |
//! | `GET /opportunities/:id/notes` | `notes:read:admin` | with notes write: only after a note's write was interrupted (a lost answer, a crash), to learn whether Lever kept it, so that no note is written twice |
//! | `GET /postings/:id` | `postings:read:admin` | only if a rule names a posting (the posting's name is read) |
//! | `GET /postings` | `postings:read:admin` | only when an operator picks a rule's posting in the console's setup wizard |
//!
//! switchyard does not read Lever's notes otherwise (the notes it wrote are in its store), nor
//! postings it does not need outside the wizard's picker (a posting's tags are already on the opportunities that applied to
//! it).

/// One Lever API call: how errors name it, and the permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// `GET /postings/:id`.
    pub label: &'static str,
    /// `postings:read:admin`.
    pub permission: &'static str,
}

const fn call(label: &'static str, permission: &'static str) -> Endpoint {
    Endpoint { label, permission }
}

const OPPORTUNITIES_READ: &str = "opportunities:read:admin";
const OPPORTUNITIES_WRITE: &str = "opportunities:write:admin";

/// `GET /opportunities/:id?expand=applications`.
pub const GET_OPPORTUNITY: Endpoint = call("GET /opportunities/:id", OPPORTUNITIES_READ);
/// `POST /opportunities/:id/addTags`.
pub const ADD_TAGS: Endpoint = call("POST /opportunities/:id/addTags", OPPORTUNITIES_WRITE);
/// `POST /opportunities/:id/removeTags`.
pub const REMOVE_TAGS: Endpoint = call("POST /opportunities/:id/removeTags", OPPORTUNITIES_WRITE);
/// `POST /opportunities/:id/addLinks`.
pub const ADD_LINKS: Endpoint = call("POST /opportunities/:id/addLinks", OPPORTUNITIES_WRITE);
/// `POST /opportunities/:id/notes`.
pub const ADD_NOTE: Endpoint = call("POST /opportunities/:id/notes", "notes:write:admin");
/// `GET /opportunities/:id/notes`.
pub const LIST_NOTES: Endpoint = call("GET /opportunities/:id/notes", "notes:read:admin");
/// `GET /postings/:id`.
pub const GET_POSTING: Endpoint = call("GET /postings/:id", "postings:read:admin");
/// `GET /postings` (the console's rule picker).
pub const LIST_POSTINGS: Endpoint = call("GET /postings", "postings:read:admin");
/// `GET /stages`.
pub const LIST_STAGES: Endpoint = call("GET /stages", "stages:read:admin");

/// The default OAuth scopes of the host's Lever app (`[lever_oauth].scopes`): every permission
/// above, so one app serves every connector and rule. `offline_access` is added on top.
pub const DEFAULT_SCOPES: [&str; 6] = [
    OPPORTUNITIES_READ,
    OPPORTUNITIES_WRITE,
    LIST_STAGES.permission,
    ADD_NOTE.permission,
    LIST_NOTES.permission,
    GET_POSTING.permission,
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
            LIST_NOTES,
            GET_POSTING,
            LIST_POSTINGS,
            LIST_STAGES,
        ];
        for call in calls {
            assert!(DEFAULT_SCOPES.contains(&call.permission), "{call:?}");
        }
        for scope in DEFAULT_SCOPES {
            assert!(
                calls.iter().any(|c| c.permission == scope),
                "{scope} unused"
            );
        }
    }
}
