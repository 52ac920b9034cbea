//! The status labels Justifacts' Lever integration shows, character for character.
//!
//! The two "In-Progress" labels really do differ in the spacing around the colon: that is how
//! Justifacts documents them and how existing Lever customers filter on them, so do not "fix" it.

/// Request sent to the applicant (vendor status `Initiated`).
pub const IN_PROGRESS_CANDIDATE: &str = "(Justifacts)In-Progress : Candidate";
/// The applicant completed the request; Justifacts is working (vendor status `In Process`).
pub const IN_PROGRESS_JUSTIFACTS: &str = "(Justifacts)In-Progress: Justifacts";
/// Justifacts completed the order (vendor status `Complete`).
pub const COMPLETE: &str = "(Justifacts)Complete";
/// The candidate has no email address, so no invitation could be sent.
pub const ERROR_NO_EMAIL: &str = "(Justifacts)ERROR (No Email)";
/// Neither the posting nor the opportunity carries a package tag.
pub const ERROR_NO_PACKAGE_TAG: &str = "(Justifacts)ERROR (No Package Tag)";
/// Package tags name two or more different package codes.
pub const ERROR_CONFLICTING_PACKAGE_TAGS: &str = "(Justifacts)ERROR (Conflicting Package Tags)";
/// A tag starts like a package tag but its package code cannot be read.
pub const ERROR_INVALID_PACKAGE_TAG: &str = "(Justifacts)ERROR (Invalid Package Tag)";
/// The order was cancelled (vendor status `Cancelled`).
pub const CANCELLED: &str = "(Justifacts)Cancelled";

/// Every label, in the order the manifest lists them.
pub const ALL: [&str; 8] = [
    IN_PROGRESS_CANDIDATE,
    IN_PROGRESS_JUSTIFACTS,
    COMPLETE,
    ERROR_NO_EMAIL,
    ERROR_NO_PACKAGE_TAG,
    ERROR_CONFLICTING_PACKAGE_TAGS,
    ERROR_INVALID_PACKAGE_TAG,
    CANCELLED,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_exact() {
        // Pinned byte for byte: recruiters' Lever filters depend on these strings.
        assert_eq!(IN_PROGRESS_CANDIDATE, "(Justifacts)In-Progress : Candidate");
        assert_eq!(
            IN_PROGRESS_JUSTIFACTS,
            "(Justifacts)In-Progress: Justifacts"
        );
        assert_eq!(COMPLETE, "(Justifacts)Complete");
        let mut sorted = ALL.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ALL.len(), "labels must be distinct");
    }
}
