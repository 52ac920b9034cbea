//! Small text helpers every connector needs: headers, query strings, URL encoding, and keeping
//! vendor text short and free of secrets before it goes into an error or a log.

/// The first value that is not blank, trimmed (e.g. the candidate's first usable email).
pub fn first_non_empty(values: &[String]) -> Option<&str> {
    values.iter().map(|v| v.trim()).find(|v| !v.is_empty())
}

/// The first header named `name`, ignoring ASCII case (the host delivers names lower-case).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Percent-encodes `s` for a URL query value or path segment: everything but RFC 3986's
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte; a malformed
/// escape is kept as it is, and invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded value of the first parameter `name` in a raw query string (without `?`); a
/// parameter without `=` has the empty value.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// At most `max` characters of `s`, with `…` appended when something was cut.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// `text` with every non-empty secret replaced by `[redacted]` (vendors sometimes echo the
/// credentials they refused).
pub fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.trim().is_empty())
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "[redacted]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_non_empty_trims_and_skips_blanks() {
        let v = vec![" ".to_string(), " a@b.c ".to_string(), "x".to_string()];
        assert_eq!(first_non_empty(&v), Some("a@b.c"));
        assert_eq!(first_non_empty(&[]), None);
    }

    #[test]
    fn headers_ignore_case() {
        let h = vec![("x-signature".to_string(), "abc".to_string())];
        assert_eq!(header(&h, "X-Signature"), Some("abc"));
        assert_eq!(header(&h, "x-timestamp"), None);
    }

    #[test]
    fn urlencode_keeps_unreserved_only() {
        assert_eq!(urlencode("lever:tok-1"), "lever%3Atok-1");
        assert_eq!(urlencode("a b/c?d=é~_."), "a%20b%2Fc%3Fd%3D%C3%A9~_.");
        assert_eq!(percent_decode(&urlencode("gem:scr_2 é")), "gem:scr_2 é");
    }

    #[test]
    fn query_params_are_found_and_decoded() {
        assert_eq!(
            query_param("challenge=abc123", "challenge"),
            Some("abc123".into())
        );
        assert_eq!(
            query_param("x=1&challenge=a%20b+c%2", "challenge"),
            Some("a b c%2".into())
        );
        assert_eq!(query_param("challenge=", "challenge"), Some(String::new()));
        assert_eq!(query_param("challenges=1", "challenge"), None);
        assert_eq!(query_param("", "challenge"), None);
        assert_eq!(
            query_param("challenge=%zz%4", "challenge"),
            Some("%zz%4".into())
        );
    }

    #[test]
    fn truncate_and_scrub() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hi", 2), "hi");
        let s = scrub("bad token sk_1 (sk_1)", &["sk_1".into(), " ".into()]);
        assert_eq!(s, "bad token [redacted] ([redacted])");
    }
}
