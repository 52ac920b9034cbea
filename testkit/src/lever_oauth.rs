//! The operator's side of Lever's OAuth connect, played against the Lever simulator:
//! [`simulator_app`] registers the host's OAuth app there, [`browser_connect`] does what the
//! operator's browser does (connect link → authorize → the host's callback).

use switchyard::app::App;
use switchyard::ats::lever::oauth::CALLBACK_PATH;
use switchyard::config::LeverOAuthConfig;
use switchyard_sim::lever::LeverSim;

/// The host's Lever OAuth app registered in the Lever simulator `lever`, redirecting to
/// `public_url` + [`CALLBACK_PATH`], on the simulator's authorize/token/revoke endpoints: what
/// goes into `Config::lever_oauth` for a demo or test customer connected through OAuth.
pub fn simulator_app(lever: &LeverSim, public_url: &str) -> LeverOAuthConfig {
    let redirect = format!("{}{CALLBACK_PATH}", public_url.trim_end_matches('/'));
    let (id, secret) = lever.register_oauth_client(&redirect);
    LeverOAuthConfig {
        authorize_url: lever.oauth_authorize_url(),
        token_url: lever.oauth_token_url(),
        revoke_url: lever.oauth_revoke_url(),
        ..LeverOAuthConfig::new(&id, &secret)
    }
}

/// Performs the whole connect dance for `integration` the way an operator's browser would,
/// against a Lever (simulator) that approves at once: asks for a connect link (as
/// `POST /admin/integrations/{id}/lever/connect` does), follows the redirect to Lever's
/// authorize page, and follows Lever's redirect back to this host's callback. Returns the
/// callback's JSON answer (`{"status":"connected","resumed_events":n,...}`). Follows redirects
/// only to the configured authorize page and back to this host's callback.
///
/// For the demo (the Canditech customer, configured with [`simulator_app`]) and tests: the Lever
/// simulator's authorize endpoint decides without a user.
pub async fn browser_connect(app: &App, integration: &str) -> anyhow::Result<serde_json::Value> {
    let (authorize, _) = app.lever_oauth.authorize_url(integration)?;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let consent = browser.get(&authorize).send().await?;
    anyhow::ensure!(
        consent.status() == reqwest::StatusCode::FOUND,
        "Lever's authorize page answered {} instead of redirecting back",
        consent.status()
    );
    let back = consent
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let callback = format!("{}{CALLBACK_PATH}", app.public_url);
    anyhow::ensure!(
        back.starts_with(&format!("{callback}?")),
        "Lever redirected somewhere else than this host's callback"
    );
    let resp = browser
        .get(&back)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    anyhow::ensure!(
        status.is_success(),
        "the callback answered {status}: {}",
        body["message"].as_str().unwrap_or_default()
    );
    Ok(body)
}
