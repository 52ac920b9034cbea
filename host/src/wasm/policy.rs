//! Outbound policy: which hosts a connector may reach, and which addresses they may resolve to.
//!
//! - An entry is `name` or `name:port` (no scheme, path or wildcard). Without a port it means the
//!   scheme's default port: 443 for `https`, 80 for `http`; nothing else.
//! - An integration's `allowed_hosts` must be a subset of what the operator approved:
//!   `runtime.approved_hosts` plus the serving connector manifest's `outbound-hosts`
//!   ([`check_allowed`]); the host refuses anything else when it loads the config and in the
//!   admin API. A connector may call its manifest's hosts plus the integration's (the union).
//! - At connect time every resolved address is checked ([`forbidden`]): loopback, private,
//!   link-local (including the cloud metadata address 169.254.169.254), CGNAT, unique-local
//!   (including fd00:ec2::254), unspecified, multicast, broadcast and reserved ranges are refused,
//!   so DNS that points an allowed name at an internal address is caught. The per-integration
//!   `allow_loopback` opt-in (for simulators and tests) admits 127.0.0.0/8 and ::1 only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// One allowed or approved host: a name (lower-case) or IP literal, and an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub host: String,
    pub port: Option<u16>,
}

impl HostEntry {
    /// Parses `name`, `name:port`, `1.2.3.4:port` or `[::1]:port`.
    pub fn parse(entry: &str) -> Result<HostEntry, String> {
        let e = entry.trim();
        let bad = |why: &str| Err(format!("`{entry}` is not a host entry: {why}"));
        if e.is_empty() {
            return bad("empty");
        }
        if e.contains("://") || e.contains('/') || e.contains('*') || e.contains('@') {
            return bad("write `name` or `name:port`, without scheme, path or wildcard");
        }
        let (host, port) = if let Some(rest) = e.strip_prefix('[') {
            let Some((h, tail)) = rest.split_once(']') else {
                return bad("unclosed `[`");
            };
            match tail.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if tail.is_empty() => (h, None),
                None => return bad("junk after `]`"),
            }
        } else if e.matches(':').count() > 1 {
            (e, None) // a bare IPv6 literal
        } else {
            match e.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (e, None),
            }
        };
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return bad("the port must be 1-65535"),
            },
            None => None,
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !name_ok && host.parse::<IpAddr>().is_err() {
            return bad("not a host name or IP address");
        }
        Ok(HostEntry { host, port })
    }

    /// The (host, port) pairs this entry allows.
    fn pairs(&self) -> Vec<(String, u16)> {
        match self.port {
            Some(p) => vec![(self.host.clone(), p)],
            None => vec![(self.host.clone(), 443), (self.host.clone(), 80)],
        }
    }

    /// Whether a request to `host`:`port` (port as the URL gives it, defaulted by scheme)
    /// matches this entry.
    pub fn matches(&self, host: &str, port: u16, scheme_default: u16) -> bool {
        let host = host.trim_end_matches('.');
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.host.eq_ignore_ascii_case(host) && self.port.unwrap_or(scheme_default) == port
    }

    /// The literal IP address of this entry, if it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// Checks an integration's `allowed_hosts` against what the operator approved. `allow_loopback`
/// admits loopback literals and `localhost`; other internal literals are refused even when
/// approved (they are checked at connect time anyway; refusing early says why).
pub fn check_allowed(
    allowed: &[String],
    approved: &[String],
    manifest_hosts: &[String],
    allow_loopback: bool,
) -> Result<(), String> {
    let problems = allowed_problems(allowed, approved, manifest_hosts, allow_loopback);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Every problem [`check_allowed`] finds, one per entry (the unapproved ones together).
pub fn allowed_problems(
    allowed: &[String],
    approved: &[String],
    manifest_hosts: &[String],
    allow_loopback: bool,
) -> Vec<String> {
    let approved: Vec<(String, u16)> = approved
        .iter()
        .chain(manifest_hosts)
        .filter_map(|a| HostEntry::parse(a).ok())
        .flat_map(|e| e.pairs())
        .collect();
    let mut problems = Vec::new();
    let mut unapproved = Vec::new();
    for entry in allowed {
        let parsed = match HostEntry::parse(entry) {
            Ok(parsed) => parsed,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        let internal = match parsed.ip() {
            Some(ip) => forbidden(ip, allow_loopback),
            None if parsed.host == "localhost" && !allow_loopback => Some("loopback"),
            None => None,
        };
        if let Some(range) = internal {
            problems.push(internal_entry(entry, range));
            // Loopback needs approving too once admitted: say both now, not one per restart.
            if range != "loopback" {
                continue;
            }
        }
        if !parsed.pairs().iter().all(|p| approved.contains(p)) {
            unapproved.push(entry.as_str());
        }
    }
    if !unapproved.is_empty() {
        problems.push(format!(
            "allowed_hosts {} not approved by the operator: add them to runtime.approved_hosts \
             (or the connector's manifest outbound-hosts)",
            unapproved.join(", ")
        ));
    }
    problems
}

/// The refusal of an `allowed_hosts` entry that is an internal address (`range`: "loopback",
/// "private", ...), naming the setting that admits loopback.
pub fn internal_entry(entry: &str, range: &str) -> String {
    let fix = if range == "loopback" {
        " (set allow_loopback = true for a local simulator)"
    } else {
        ""
    };
    format!("allowed_hosts entry `{entry}` is a {range} address{fix}")
}

/// The entries of a manifest's `outbound-hosts` the operator did not approve (`approved`:
/// `runtime.approved_hosts`, plus the serving version's hosts when one serves), compared as
/// written, ignoring case. An upload with any is refused.
pub fn unapproved<'a>(hosts: &'a [String], approved: &[String]) -> Vec<&'a str> {
    hosts
        .iter()
        .filter(|h| !approved.iter().any(|a| a.eq_ignore_ascii_case(h)))
        .map(String::as_str)
        .collect()
}

/// The range `ip` falls in if a connector must not reach it, e.g. `private`; None if it may.
pub fn forbidden(ip: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4, allow_loopback),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4, allow_loopback);
            }
            forbidden_v6(v6, allow_loopback)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr, allow_loopback: bool) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        return (!allow_loopback).then_some("loopback");
    }
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        return Some("cloud metadata");
    }
    let range = if a == 0 {
        "unspecified"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if a == 100 && (64..128).contains(&b) {
        "CGNAT"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_broadcast()
        || a >= 240
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
    {
        "reserved"
    } else {
        return None;
    };
    Some(range)
}

fn forbidden_v6(ip: Ipv6Addr, allow_loopback: bool) -> Option<&'static str> {
    let seg = ip.segments();
    if ip.is_loopback() {
        return (!allow_loopback).then_some("loopback");
    }
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254) {
        return Some("cloud metadata");
    }
    let range = if ip.is_unspecified() {
        "unspecified"
    } else if seg[0] & 0xfe00 == 0xfc00 {
        "unique-local (private)"
    } else if seg[0] & 0xffc0 == 0xfe80 {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if seg[0] == 0x64 && seg[1] == 0xff9b {
        // NAT64: judge the embedded IPv4 address.
        let v4 = Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        );
        return forbidden_v4(v4, allow_loopback);
    } else if ip.to_ipv4().is_some() && seg[0..6] == [0; 6] {
        "IPv4-compatible (deprecated)"
    } else {
        return None;
    };
    Some(range)
}

/// The message of a resolution refused by [`GuardedResolver`]; found again in reqwest's error
/// chain to report `denied` rather than a connection error.
#[derive(Debug, thiserror::Error)]
#[error("{name} resolves only to addresses connectors may not reach ({ranges})")]
pub struct ForbiddenAddress {
    pub name: String,
    pub ranges: String,
}

/// A DNS resolver that drops forbidden addresses and fails when none are left.
pub struct GuardedResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        let name = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let mut ranges = Vec::new();
            let ok: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match forbidden(a.ip(), allow_loopback) {
                    Some(r) => {
                        ranges.push(r);
                        false
                    }
                    None => true,
                })
                .collect();
            if ok.is_empty() {
                ranges.dedup();
                let e: Box<dyn std::error::Error + Send + Sync> = Box::new(ForbiddenAddress {
                    name,
                    ranges: if ranges.is_empty() {
                        "no addresses".into()
                    } else {
                        ranges.join(", ")
                    },
                });
                return Err(e);
            }
            let addrs: reqwest::dns::Addrs = Box::new(ok.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP clients connectors' requests go through: one that refuses every internal address,
/// one that admits loopback (integrations with `allow_loopback`).
#[derive(Clone)]
pub struct OutboundClients {
    strict: reqwest::Client,
    loopback: reqwest::Client,
}

/// Idle connections kept per vendor host by [`OutboundClients::new`]: the default workers'.
const DEFAULT_IDLE_PER_HOST: usize = 16;

impl OutboundClients {
    /// Clients keeping the default workers' worth of idle connections per host.
    pub fn new() -> anyhow::Result<OutboundClients> {
        OutboundClients::sized(DEFAULT_IDLE_PER_HOST)
    }

    /// Clients keeping up to `idle_per_host` idle connections per vendor host: as many as calls
    /// run at once, so that a busy vendor's calls reuse connections instead of each opening
    /// (and the pool closing) one.
    pub fn sized(idle_per_host: usize) -> anyhow::Result<OutboundClients> {
        let build = |allow_loopback| {
            reqwest::Client::builder()
                // A redirect could lead to an unapproved host; a proxy from the environment
                // would bypass the address checks.
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(Arc::new(GuardedResolver { allow_loopback }))
                .pool_max_idle_per_host(idle_per_host.max(1))
                .build()
        };
        Ok(OutboundClients {
            strict: build(false)?,
            loopback: build(true)?,
        })
    }

    /// The client for an integration.
    pub fn for_policy(&self, allow_loopback: bool) -> reqwest::Client {
        if allow_loopback {
            self.loopback.clone()
        } else {
            self.strict.clone()
        }
    }
}

/// Whether reqwest's error was a resolution [`GuardedResolver`] refused, and its message.
pub fn refused_resolution(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(f) = s.downcast_ref::<ForbiddenAddress>() {
            return Some(f.to_string());
        }
        source = s.source();
    }
    None
}

/// reqwest's error as its kind and causes, without the URL (a query string may hold credentials;
/// reqwest's own text says only "error sending request for url (...)").
pub fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "cannot read the response"
    } else {
        "request failed"
    }
    .to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_forbidden_and_loopback_only_by_opt_in() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(forbidden(ip(a), false).is_some(), "{a}");
        }
        assert_eq!(
            forbidden(ip("169.254.169.254"), true),
            Some("cloud metadata")
        );
        assert_eq!(forbidden(ip("fd00:ec2::254"), true), Some("cloud metadata"));
        assert_eq!(forbidden(ip("127.0.0.1"), true), None);
        assert_eq!(forbidden(ip("::1"), true), None);
        assert!(forbidden(ip("10.0.0.1"), true).is_some());
        for a in [
            "93.184.216.34",
            "2606:2800:220:1::1",
            "8.8.8.8",
            "100.128.0.1",
        ] {
            assert_eq!(forbidden(ip(a), false), None, "{a}");
        }
    }

    #[test]
    fn entries_parse_with_optional_ports() {
        let e = |s: &str| HostEntry::parse(s).unwrap();
        assert_eq!(e("API.Certn.co").host, "api.certn.co");
        assert_eq!(e("127.0.0.1:4000").port, Some(4000));
        assert_eq!(e("[::1]:80").host, "::1");
        assert_eq!(e("::1").port, None);
        for bad in [
            "",
            "https://x",
            "x/y",
            "*.certn.co",
            "x:0",
            "x:99999",
            "a b",
        ] {
            assert!(HostEntry::parse(bad).is_err(), "{bad}");
        }
        assert!(e("api.certn.co").matches("api.certn.co", 443, 443));
        assert!(!e("api.certn.co").matches("api.certn.co", 8443, 443));
        assert!(e("api.certn.co:8443").matches("API.certn.co", 8443, 443));
    }

    #[test]
    fn allowed_hosts_must_be_approved_by_the_operator() {
        let approved = ["sandbox.certn.co".to_string(), "127.0.0.1:4000".to_string()];
        let manifest = ["api.certn.co".to_string()];
        let check = |allowed: &[&str], lo| {
            let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
            check_allowed(&allowed, &approved, &manifest, lo)
        };
        assert!(check(&["api.certn.co", "sandbox.certn.co:443"], false).is_ok());
        assert!(check(&["127.0.0.1:4000"], true).is_ok());
        let e = check(&["127.0.0.1:4000"], false).unwrap_err();
        assert!(e.contains("allow_loopback"), "{e}");
        let e = check(&["evil.example"], false).unwrap_err();
        assert!(
            e.contains("evil.example") && e.contains("approved_hosts"),
            "{e}"
        );
        assert!(
            check(&["api.certn.co:8443"], false).is_err(),
            "another port"
        );
        let e = check(&["169.254.169.254"], true).unwrap_err();
        assert!(e.contains("metadata"), "{e}");
        assert!(check(&["localhost:4000"], false).is_err());
        assert!(check(&["127.0.0.1:4001"], true).is_err(), "not approved");
    }

    #[tokio::test]
    async fn a_name_resolving_to_an_internal_address_is_refused_at_connect_time() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut head = [0u8; 1024];
                let _ = s.read(&mut head).await;
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
            }
        });
        let clients = OutboundClients::new().unwrap();
        // `localhost` is a name: only the resolved address says it is loopback.
        let url = format!("http://localhost:{port}/");
        let e = clients
            .for_policy(false)
            .get(&url)
            .send()
            .await
            .unwrap_err();
        let why = refused_resolution(&e).expect("refused by the resolver");
        assert!(why.contains("loopback"), "{why}");
        let ok = clients.for_policy(true).get(&url).send().await.unwrap();
        assert_eq!(ok.status(), 204, "admitted with allow_loopback");
    }
}
