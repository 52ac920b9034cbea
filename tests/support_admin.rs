//! Helpers for the admin API tests: a stack with the admin API on, an authorized client, the
//! built components, and distinct-but-equivalent variants of a component.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use switchyard_testkit::{Stack, StackOptions};

/// The admin token every test stack uses.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// A built component, e.g. `certn` (plugins/target/...) or `misbehave` (plugins/fixtures/target/...).
pub fn plugin(name: &str) -> Vec<u8> {
    let path = crate::component(name);
    read(&path, "scripts/test.sh")
}

/// A built rejection fixture, e.g. `greedy` (plugins/fixtures/target/...).
pub fn fixture(name: &str) -> Vec<u8> {
    read(
        &crate::fixtures_dir().join(format!("{name}.wasm")),
        "cargo build --release --target wasm32-wasip2 --manifest-path plugins/fixtures/Cargo.toml",
    )
}

fn read(path: &Path, build: &str) -> Vec<u8> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}; build it first: {build}", path.display()))
}

/// The same component with a custom section appended: identical behaviour, a different hash,
/// so the host sees a new version.
pub fn variant(component: &[u8], label: &str) -> Vec<u8> {
    let name = b"switchyard-test-variant";
    let mut payload = leb(name.len());
    payload.extend_from_slice(name);
    payload.extend_from_slice(label.as_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section id
    out.extend(leb(payload.len()));
    out.extend(payload);
    out
}

fn leb(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A connectors dir holding copies of the named plugins only (so tests do not depend on what
/// else was built), under `data`.
pub fn connectors_dir(data: &Path, names: &[&str]) -> PathBuf {
    let dir = data.join("connectors-dir");
    std::fs::create_dir_all(&dir).expect("create connectors dir");
    for name in names {
        std::fs::write(dir.join(format!("{name}.wasm")), plugin(name)).expect("copy plugin");
    }
    dir
}

/// A fresh data dir, removed when it drops.
pub fn data_dir(test: &str) -> crate::Scratch {
    crate::scratch(&format!("admin-{test}"))
}

/// A stack with the admin API on (token [`TOKEN`]) serving `plugins`.
pub async fn stack(test: &str, plugins: &[&str]) -> anyhow::Result<Stack> {
    stack_with(test, plugins, |_| {}).await
}

/// [`stack`], with the host's config adjusted by `adjust` first.
pub async fn stack_with(
    test: &str,
    plugins: &[&str],
    adjust: impl FnOnce(&mut switchyard::Config),
) -> anyhow::Result<Stack> {
    let data = data_dir(test);
    let dir = connectors_dir(&data, plugins);
    let mut opts = StackOptions::new(&dir, &data);
    opts.scratch = Some(data.0);
    let mut stack = Stack::prepare(opts).await?;
    stack.config.server.admin_token = Some(switchyard::config::Secret::new(TOKEN));
    adjust(&mut stack.config);
    stack.run().await
}

/// Restarts the stack's host on the same address, data and config.
pub async fn restart(stack: Stack) -> anyhow::Result<Stack> {
    let mut stack = stack;
    if let Some(host) = stack.host.take() {
        host.shutdown().await;
    }
    stack.run().await
}

/// An admin API client.
pub struct Admin {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Admin {
    /// A client of `stack` using `token` (None: no Authorization header).
    pub fn new(stack: &Stack, token: Option<&str>) -> Admin {
        Admin::at(format!("http://{}", stack.addr), token)
    }

    /// A client of the host at `base` (`http://host:port`).
    pub fn at(base: String, token: Option<&str>) -> Admin {
        Admin {
            base,
            // No pooled connections: a request the server answers without reading its body
            // (a 413) leaves the connection unusable, and the next request must not inherit it.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("an HTTP client"),
            token: token.map(str::to_string),
        }
    }

    /// Sends a request; returns the status and the JSON body (Null if none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Bytes(b)) => req.body(b),
            None => req,
        };
        let resp = req.send().await.expect("admin request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<Body>) -> (StatusCode, Value) {
        self.call(Method::POST, path, body).await
    }

    /// Uploads `bytes` as a new version of connector `id` (not activated); its hash.
    pub async fn upload(&self, id: &str, bytes: Vec<u8>) -> String {
        let path = format!("/admin/connectors/{id}/versions");
        let (status, body) = self.post(&path, Some(Body::Bytes(bytes))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["version"]["hash"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The serving version's tag of connector `id`.
    pub async fn active(&self, id: &str) -> String {
        let (_, body) = self.get(&format!("/admin/connectors/{id}")).await;
        body["versions"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["status"] == "active"))
            .and_then(|v| v["tag"].as_str())
            .unwrap_or_default()
            .to_string()
    }
}

/// A request body.
pub enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}
