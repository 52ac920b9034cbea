//! What a Lever credential may do: the permission each API route needs, and the check the gate
//! runs after authentication.
//!
//! Lever's OAuth scopes are `<resource>:<read|write>:admin`; an API key's permissions are the
//! same resources with read / write boxes ticked when the key was generated. The simulator uses
//! the scope strings for both. Each route needs exactly one of them, and the simulator is strict:
//! a `:write:` permission does **not** stand in for the matching `:read:` one. (Third-party guides
//! say Lever's write scopes include the reads; asking for both, as switchyard does, works either
//! way.) A call outside the credential's permissions gets `403 {"code":"Forbidden","message":
//! "Missing required permission: <scope>"}` — Lever's error shape; the exact message text is
//! unconfirmed and kept in [`forbidden_message`].

/// `GET /opportunities/:id`.
pub const OPPORTUNITIES_READ: &str = "opportunities:read:admin";
/// Tags, links and stage of an opportunity (`addTags`, `removeTags`, `addLinks`, `removeLinks`,
/// `PUT .../stage`).
pub const OPPORTUNITIES_WRITE: &str = "opportunities:write:admin";
/// `GET /opportunities/:id/notes`.
pub const NOTES_READ: &str = "notes:read:admin";
/// `POST /opportunities/:id/notes`.
pub const NOTES_WRITE: &str = "notes:write:admin";
/// `GET /postings`, `GET /postings/:id`.
pub const POSTINGS_READ: &str = "postings:read:admin";
/// `GET /stages`.
pub const STAGES_READ: &str = "stages:read:admin";
/// `GET /tags` (not served; a permission a key may carry).
pub const TAGS_READ: &str = "tags:read:admin";
/// Webhook management (not served; a permission a key may carry).
pub const WEBHOOKS_WRITE: &str = "webhooks:write:admin";

/// Every permission the simulator knows: what [`super::LeverSim::api_key`] (a key generated with
/// every box ticked) and the fixed [`super::LeverSim::oauth_token`] carry.
pub const ALL: [&str; 8] = [
    OPPORTUNITIES_READ,
    OPPORTUNITIES_WRITE,
    NOTES_READ,
    NOTES_WRITE,
    POSTINGS_READ,
    STAGES_READ,
    TAGS_READ,
    WEBHOOKS_WRITE,
];

/// The permission a request to `path` (below `/v1`) with `method` needs; `None` for a route the
/// simulator does not serve (it answers 404 whatever the credential).
pub fn required(method: &str, path: &str) -> Option<&'static str> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["v1", "opportunities", _]) => Some(OPPORTUNITIES_READ),
        (
            "POST",
            ["v1", "opportunities", _, "addTags" | "removeTags" | "addLinks" | "removeLinks"],
        )
        | ("PUT", ["v1", "opportunities", _, "stage"]) => Some(OPPORTUNITIES_WRITE),
        ("GET", ["v1", "opportunities", _, "notes"]) => Some(NOTES_READ),
        ("POST", ["v1", "opportunities", _, "notes"]) => Some(NOTES_WRITE),
        ("GET", ["v1", "postings"] | ["v1", "postings", _]) => Some(POSTINGS_READ),
        ("GET", ["v1", "stages"]) => Some(STAGES_READ),
        _ => None,
    }
}

/// The body message of the 403 for a call missing `permission`.
pub fn forbidden_message(permission: &str) -> String {
    format!("Missing required permission: {permission}")
}

/// Parses a space-separated scope string into the permissions it grants (`offline_access` and
/// unknown scopes grant nothing on the API).
pub fn from_scope(scope: &str) -> Vec<String> {
    scope
        .split_whitespace()
        .filter(|s| ALL.contains(s))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_served_route_needs_one_permission() {
        assert_eq!(
            required("GET", "/v1/opportunities/o1"),
            Some(OPPORTUNITIES_READ)
        );
        assert_eq!(
            required("POST", "/v1/opportunities/o1/addLinks"),
            Some(OPPORTUNITIES_WRITE)
        );
        assert_eq!(
            required("GET", "/v1/opportunities/o1/notes"),
            Some(NOTES_READ)
        );
        assert_eq!(
            required("POST", "/v1/opportunities/o1/notes"),
            Some(NOTES_WRITE)
        );
        assert_eq!(required("GET", "/v1/postings/p1"), Some(POSTINGS_READ));
        assert_eq!(required("GET", "/v1/postings"), Some(POSTINGS_READ));
        assert_eq!(required("GET", "/v1/stages"), Some(STAGES_READ));
        assert_eq!(required("DELETE", "/v1/stages"), None);
        assert_eq!(required("GET", "/v1/nothing"), None);
    }

    #[test]
    fn scopes_grant_only_known_api_permissions() {
        assert_eq!(
            from_scope("offline_access notes:write:admin bogus stages:read:admin"),
            vec![NOTES_WRITE.to_string(), STAGES_READ.to_string()]
        );
    }
}
