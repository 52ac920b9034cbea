//! Helpers shared by the simulators: a loopback server handle, random tokens, HMAC and time.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::body::Bytes;
use hmac::{Hmac, Mac};
use rand::Rng as _;
use sha2::Sha256;

/// Largest request body the simulators accept (1 MiB).
pub const MAX_BODY: usize = 1 << 20;

/// A running loopback HTTP server. The server task is aborted when the handle is dropped.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The socket address the server listens on (always `127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `127.0.0.1:0` (loopback only) and serves `router` on it in a background task.
pub async fn serve_loopback(router: axum::Router) -> anyhow::Result<ServerHandle> {
    serve(bind_loopback().await?, router)
}

/// Binds a free port on `127.0.0.1` (loopback only), for servers that need their address before
/// building their router; then pass the listener to [`serve`].
pub async fn bind_loopback() -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("binding a loopback port")
}

/// Serves `router` on `listener` in a background task (must be called inside a tokio runtime).
pub fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
) -> anyhow::Result<ServerHandle> {
    let addr = listener.local_addr().context("reading the bound address")?;
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "simulators only listen on loopback, not {addr}"
    );
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            tracing::debug!(%err, "simulator server stopped");
        }
    });
    Ok(ServerHandle { addr, task })
}

/// An HTTP client for outgoing simulator traffic (webhooks, callbacks): no proxy, bounded
/// timeout, and redirects are not followed (a 3xx answer counts as a failed delivery).
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .context("building the simulator HTTP client")
}

/// `len` random lowercase hex characters (`len` is rounded up to an even number).
pub fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len.div_ceil(2)];
    rand::thread_rng().fill(bytes.as_mut_slice());
    let mut s = hex::encode(bytes);
    s.truncate(len);
    s
}

/// `len` random ASCII letters and digits.
pub fn random_alnum(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A fresh random UUID (v4) as text.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Lowercase hex of HMAC-SHA256(`key`, `msg`).
pub fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The current UTC time as RFC 3339 text with microseconds, e.g. `2024-05-01T12:00:00.000123Z`.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// `t` as UTC RFC 3339 text with microseconds (times before the epoch clamp to the epoch).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let (y, m, day) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A request body as JSON for logs: `null` when empty, the raw text when it is not JSON.
pub fn body_for_log(bytes: &Bytes) -> serde_json::Value {
    if bytes.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // leap day 2000
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_431_454_330_072);
        assert_eq!(rfc3339(t), "2015-05-12T18:12:10.072000Z");
    }

    #[test]
    fn random_hex_has_requested_length() {
        let s = random_hex(48);
        assert_eq!(s.len(), 48);
        assert!(s.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(random_hex(7).len(), 7);
    }
}
