//! Helpers for the console tests: a stack with both console roles, an HTTP client that signs in
//! like a browser (cookie, CSRF field), and a headless Chromium driven over WebDriver.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use switchyard_testkit::Stack;

use crate::support_admin::{self, TOKEN};

/// The viewer token of every console test stack (the operator's is [`TOKEN`]).
pub const VIEWER: &str = "test-viewer-token-0123456789";

/// A stack with the admin API on, a viewer token, `plugins` loaded, and `adjust` applied.
pub async fn stack(
    test: &str,
    plugins: &[&str],
    adjust: impl FnOnce(&mut switchyard::Config),
) -> anyhow::Result<Stack> {
    support_admin::stack_with(&format!("console-{test}"), plugins, |config| {
        config.server.viewer_token = Some(switchyard::config::Secret::new(VIEWER));
        adjust(config);
    })
    .await
}

/// A console client: one browser's cookie and the CSRF token of its forms.
pub struct Console {
    base: String,
    http: reqwest::Client,
    /// `name=value` of the session cookie.
    pub cookie: String,
    /// The CSRF token of the last page read.
    pub csrf: String,
}

/// The value of `name="csrf"` in a page.
pub fn csrf_in(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().map(str::to_string)
}

impl Console {
    /// Opens the sign-in page of `stack` (an anonymous session with its CSRF token).
    pub async fn open(stack: &Stack) -> Console {
        Console::open_from(stack, None).await
    }

    /// [`Console::open`] from the loopback address `from` (another client, as the rate limit
    /// sees it).
    pub async fn open_from(stack: &Stack, from: Option<std::net::IpAddr>) -> Console {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(from)
            .build()
            .expect("an HTTP client");
        let mut console = Console {
            base: format!("http://{}", stack.addr),
            http,
            cookie: String::new(),
            csrf: String::new(),
        };
        let (status, page) = console.get("/console/sign-in").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        console
    }

    fn remember(&mut self, response: &reqwest::Response) {
        if let Some(set) = response
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
        {
            self.cookie = set.split(';').next().unwrap_or("").to_string();
        }
    }

    /// The raw `Set-Cookie` of a fresh sign-in page.
    pub async fn set_cookie_of_sign_in(stack: &Stack) -> String {
        let response = reqwest::get(format!("http://{}/console/sign-in", stack.addr))
            .await
            .expect("the sign-in page");
        response
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    /// GET `path` with the session cookie; returns the status and the body, and keeps the
    /// page's CSRF token.
    pub async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await
            .expect("a console request");
        self.remember(&response);
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if let Some(csrf) = csrf_in(&body) {
            self.csrf = csrf;
        }
        (status, body)
    }

    /// POSTs a form to `path` with `fields`, and the CSRF token `csrf` (None: without one).
    pub async fn post(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        csrf: Option<&str>,
    ) -> (StatusCode, String, String) {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        if let Some(csrf) = csrf {
            form.push(("csrf", csrf));
        }
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, &self.cookie)
            .form(&form)
            .send()
            .await
            .expect("a console request");
        self.remember(&response);
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, location, response.text().await.unwrap_or_default())
    }

    /// POSTs a form with this page's CSRF token.
    pub async fn act(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String, String) {
        let csrf = self.csrf.clone();
        self.post(path, fields, Some(&csrf)).await
    }

    /// Signs in with `token`; returns the status (303 when signed in).
    pub async fn sign_in(&mut self, token: &str) -> StatusCode {
        let (status, _, _) = self.act("/console/sign-in", &[("token", token)]).await;
        if status == StatusCode::SEE_OTHER {
            // The signed-in session's pages carry its own CSRF token.
            let (_, _) = self.get("/console/events").await;
        }
        status
    }

    /// A console signed in as the operator.
    pub async fn operator(stack: &Stack) -> Console {
        let mut console = Console::open(stack).await;
        assert_eq!(console.sign_in(TOKEN).await, StatusCode::SEE_OTHER);
        console
    }

    /// A console signed in as a viewer.
    pub async fn viewer(stack: &Stack) -> Console {
        let mut console = Console::open(stack).await;
        assert_eq!(console.sign_in(VIEWER).await, StatusCode::SEE_OTHER);
        console
    }
}

/// A chromedriver child process, killed when dropped; then its temporary directory (its and
/// Chromium's `TMPDIR`: profiles, scoped dirs) is removed.
pub struct Driver {
    child: Child,
    pub url: String,
    _tmp: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const BROWSER_MISSING: &str = "chromium and chromedriver are needed for the browser tests: \
    scripts/test.sh installs them (apt-get install chromium chromium-driver)";

/// Starts chromedriver on a free loopback port and waits (bounded) until it answers.
pub async fn driver() -> Driver {
    let port = switchyard_testkit::ports::free_loopback_addr()
        .map(|a| a.port())
        .expect("a free port");
    // Chromium's profile and chromedriver's scoped dirs go here, not in /tmp, where a killed
    // session would leave them.
    let tmp = tempfile::Builder::new()
        .prefix("switchyard-chromium-")
        .tempdir()
        .expect("a temporary directory");
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{BROWSER_MISSING}: {e}"));
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _tmp: tmp,
    };
    let status = format!("{}/status", driver.url);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if reqwest::get(&status)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return driver;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "chromedriver did not start: {BROWSER_MISSING}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A headless Chromium session (`--no-sandbox`: CI runs as root).
pub async fn browser(driver: &Driver) -> thirtyfour::WebDriver {
    use thirtyfour::ChromiumLikeCapabilities;
    let mut caps = thirtyfour::DesiredCapabilities::chrome();
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ] {
        caps.add_arg(arg).expect("a Chromium argument");
    }
    thirtyfour::WebDriver::new(&driver.url, caps)
        .await
        .unwrap_or_else(|e| panic!("cannot start a headless Chromium: {e}; {BROWSER_MISSING}"))
}

/// Where the console's screenshots go (shown in the README).
pub fn screenshots_dir() -> PathBuf {
    let dir = crate::root().join("docs/console");
    std::fs::create_dir_all(&dir).expect("docs/console");
    dir
}

/// The Lever API key permissions the setup wizard's tests paste: `docs/lever.md`'s Certn key,
/// plus *Postings* read to pick a rule's posting from the live list.
pub const WIZARD_KEY: [&str; 4] = [
    "opportunities:read:admin",
    "opportunities:write:admin",
    "stages:read:admin",
    "postings:read:admin",
];

/// The signature token Lever gave the stack's own `demo-certn` webhook (the wizard's tests
/// delete that integration and set it up again with the same webhook).
pub fn demo_signature_token(stack: &Stack) -> String {
    stack
        .config
        .integrations
        .iter()
        .find(|i| i.id == switchyard_testkit::CERTN)
        .and_then(|i| match &i.ats {
            switchyard::config::AtsConfig::Lever(l) => Some(l.signature_token.expose().to_string()),
            _ => None,
        })
        .expect("the stack's demo-certn Lever integration")
}

/// The setup wizard's settings step for a Lever (API key `key`, signature token `token`) →
/// Certn integration `id` on `stack`'s simulators: packages Basic (the default) and Premium.
pub fn lever_certn_settings(
    stack: &Stack,
    id: &str,
    key: &str,
    token: &str,
) -> Vec<(String, String)> {
    let certn = reqwest::Url::parse(&stack.certn.api_base()).expect("the Certn simulator's URL");
    let host = format!(
        "{}:{}",
        certn.host_str().unwrap_or("127.0.0.1"),
        certn.port_or_known_default().unwrap_or(80)
    );
    [
        ("id", id.to_string()),
        ("ats", "lever".into()),
        ("connector", "certn".into()),
        ("lever_auth", "api_key".into()),
        ("lever_api_key", key.into()),
        ("signature_token", token.into()),
        ("lever_api_base", stack.lever.api_base()),
        ("setting.api-base", stack.certn.api_base()),
        ("setting.api-key", stack.certn.api_key()),
        ("setting.webhook-secret", stack.certn.webhook_secret()),
        ("allowed_hosts", host),
        ("allow_loopback", "true".into()),
        ("default_package", "0".into()),
        ("package.0.name", "Basic".into()),
        ("package.0.checks", "criminal_record_check".into()),
        ("package.1.name", "Premium".into()),
        (
            "package.1.checks",
            "criminal_record_check,identity_verification".into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
