//! Lever as an authorized app: the OAuth 2.0 authorization-code flow (with PKCE) through the
//! host's one Lever OAuth app (`[lever_oauth]`), on the `oauth2` crate.
//!
//! - [`LeverOAuth::authorize_url`]: a connect link for one integration — Lever's authorize page
//!   with the client id, the redirect URI (`<public_url>/oauth/lever/callback`), the scopes plus
//!   `offline_access`, the audience, a PKCE challenge and a fresh `state`. The `state` is
//!   single-use, bound to the integration, expires after `state_ttl_secs`, and is stored (as a
//!   hash, with the PKCE verifier) so a restart does not break a pending link.
//! - [`LeverOAuth::exchange`]: the callback's code → tokens.
//! - [`TokenSource`]: what the Lever client asks for a Bearer token. It refreshes the access
//!   token `refresh_margin_secs` before it expires, and once more when the API answers 401; a
//!   rotated refresh token replaces the old one. Refreshes of one integration are serialized
//!   across every host on the database ([`crate::store::LockName::OAuthRefresh`]), and the
//!   stored grant is read again under the lock (with it, one round trip on PostgreSQL when no
//!   other host holds it: [`Store::lock_oauth_refresh`]): a token another host refreshed
//!   meanwhile is used as is (a rotated refresh token works once: two refreshes would burn it).
//! - Revocation: Lever answering the refresh with `invalid_grant`, or a 401 right after a
//!   refresh, disconnects the integration (tokens deleted, reason and time recorded); its events
//!   are parked until a new grant ([`crate::store::oauth`]). [`LeverOAuth::disconnect`] is the
//!   operator's side: RFC 7009 revocation at Lever, then the tokens deleted either way.
//!
//! No token or client secret is ever logged or put in an error: errors name Lever's error code
//! and description only.

use std::sync::Arc;

use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError,
    RevocationUrl, Scope, StandardRevocableToken, TokenResponse, TokenUrl,
};

use super::error::LeverError;
use crate::ats::Disconnected;
use crate::config::{LeverOAuthConfig, Secret};
use crate::metrics::Metrics;
use crate::store::oauth::OAuthTokens;
use crate::store::{now_ms, HeldLock, Store, StoreError};

/// Path of the OAuth callback (the redirect URI registered with Lever is the public URL + this).
pub const CALLBACK_PATH: &str = "/oauth/lever/callback";
/// The scope that makes Lever issue a refresh token.
pub const OFFLINE_ACCESS: &str = "offline_access";

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointSet, EndpointSet>;

/// An OAuth step that failed. Never carries a token or the client secret.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("this host has no Lever OAuth app configured ([lever_oauth] in the config file)")]
    NotConfigured,
    #[error("[lever_oauth] is invalid: {0}")]
    Config(String),
    /// Lever's token endpoint answered an OAuth error (`invalid_grant`, ...).
    #[error("Lever refused: {0}")]
    Refused(String),
    /// The token endpoint could not be reached or answered something unreadable.
    #[error("Lever's token endpoint is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct OAuthApp {
    client: Client,
    config: LeverOAuthConfig,
}

/// The host's Lever OAuth app. One per host.
pub struct LeverOAuth {
    app: Option<OAuthApp>,
    store: Store,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
}

/// A refresh or exchange that failed, classified.
enum TokenFailure {
    /// `invalid_grant`: the grant is gone (revoked, rotated away, expired).
    InvalidGrant(String),
    Other(OAuthError),
}

fn classify(
    e: RequestTokenError<
        oauth2::HttpClientError<reqwest::Error>,
        oauth2::StandardErrorResponse<BasicErrorResponseType>,
    >,
) -> TokenFailure {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let text = match r.error_description() {
                Some(d) => format!("{} ({d})", r.error()),
                None => r.error().to_string(),
            };
            if *r.error() == BasicErrorResponseType::InvalidGrant {
                TokenFailure::InvalidGrant(text)
            } else {
                TokenFailure::Other(OAuthError::Refused(text))
            }
        }
        // Neither the body (it may hold tokens) nor the URL goes into the message.
        RequestTokenError::Request(_) => {
            TokenFailure::Other(OAuthError::Unavailable("request failed".into()))
        }
        RequestTokenError::Parse(_, _) => {
            TokenFailure::Other(OAuthError::Unavailable("unreadable answer".into()))
        }
        RequestTokenError::Other(m) => TokenFailure::Other(OAuthError::Unavailable(m)),
    }
}

fn tokens_of(resp: &BasicTokenResponse, previous_refresh: Option<&Secret>) -> OAuthTokens {
    let now = now_ms();
    OAuthTokens {
        access_token: Secret::new(resp.access_token().secret().clone()),
        // Lever rotates refresh tokens; keep the old one only if no new one came.
        refresh_token: resp
            .refresh_token()
            .map(|t| Secret::new(t.secret().clone()))
            .or_else(|| previous_refresh.cloned()),
        expires_at: resp.expires_in().map(|d| now + d.as_millis() as i64),
        scope: resp
            .scopes()
            .map(|s| s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(" ")),
        connected_at: now,
        refreshed_at: None,
    }
}

impl LeverOAuth {
    /// The host's app from `[lever_oauth]` (or none), redirecting to `public_url` + [`CALLBACK_PATH`].
    pub fn new(
        config: Option<&LeverOAuthConfig>,
        public_url: &str,
        store: Store,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Result<LeverOAuth, OAuthError> {
        let app = match config {
            None => None,
            Some(c) => {
                let bad = |what: &str, e: url::ParseError| {
                    OAuthError::Config(format!("{what} is not a URL: {e}"))
                };
                let client = BasicClient::new(ClientId::new(c.client_id.clone()))
                    .set_client_secret(ClientSecret::new(c.client_secret.expose().to_string()))
                    .set_auth_uri(
                        AuthUrl::new(c.authorize_url.clone())
                            .map_err(|e| bad("authorize_url", e))?,
                    )
                    .set_token_uri(
                        TokenUrl::new(c.token_url.clone()).map_err(|e| bad("token_url", e))?,
                    )
                    .set_revocation_url(
                        RevocationUrl::new(c.revoke_url.clone())
                            .map_err(|e| bad("revoke_url", e))?,
                    )
                    .set_redirect_uri(
                        RedirectUrl::new(format!("{public_url}{CALLBACK_PATH}"))
                            .map_err(|e| bad("server.public_url", e))?,
                    );
                Some(OAuthApp {
                    client,
                    config: c.clone(),
                })
            }
        };
        Ok(LeverOAuth {
            app,
            store,
            http,
            metrics,
        })
    }

    fn app(&self) -> Result<&OAuthApp, OAuthError> {
        self.app.as_ref().ok_or(OAuthError::NotConfigured)
    }

    /// The redirect URI to register with Lever, when an app is configured.
    pub fn redirect_uri(&self) -> Option<String> {
        self.app
            .as_ref()
            .and_then(|a| a.client.redirect_uri().map(|u| u.to_string()))
    }

    /// A fresh connect link for `integration`: Lever's authorize URL and when its `state`
    /// expires (unix ms). The state is stored before the link is returned.
    pub fn authorize_url(&self, integration: &str) -> Result<(String, i64), OAuthError> {
        let app = self.app()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = app
            .client
            .authorize_url(CsrfToken::new_random)
            .add_extra_param("audience", app.config.audience.clone())
            .set_pkce_challenge(challenge);
        let mut scopes: Vec<&str> = app.config.scopes.iter().map(String::as_str).collect();
        if !scopes.contains(&OFFLINE_ACCESS) {
            scopes.push(OFFLINE_ACCESS);
        }
        for scope in scopes {
            request = request.add_scope(Scope::new(scope.to_string()));
        }
        let (url, state) = request.url();
        let expires_at = now_ms() + app.config.state_ttl_secs as i64 * 1000;
        self.store
            .oauth_put_state(state.secret(), integration, verifier.secret(), expires_at)?;
        Ok((url.to_string(), expires_at))
    }

    /// Exchanges the callback's `code` (with the state's PKCE verifier) for tokens.
    pub async fn exchange(
        &self,
        code: &str,
        pkce_verifier: &Secret,
    ) -> Result<OAuthTokens, OAuthError> {
        let app = self.app()?;
        let resp = app
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose().to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| match classify(e) {
                TokenFailure::InvalidGrant(m) => OAuthError::Refused(m),
                TokenFailure::Other(e) => e,
            })?;
        self.metrics.lever_oauth("code_exchanged");
        Ok(tokens_of(&resp, None))
    }

    /// The operator disconnects `integration`: revokes the grant at Lever (RFC 7009, the
    /// refresh token, else the access token) and deletes the stored tokens either way.
    /// Returns whether tokens were stored, and the revocation's failure, if any.
    pub async fn disconnect(
        &self,
        integration: &str,
    ) -> Result<(bool, Option<String>), OAuthError> {
        let (_guard, stored) = self.lock_refresh(integration).await?;
        let Some(tokens) = stored else {
            self.store
                .oauth_disconnect(integration, "disconnected by the operator")?;
            return Ok((false, None));
        };
        let revoke_error = match self.app() {
            Err(e) => Some(e.to_string()),
            Ok(app) => self.revoke_at_lever(app, &tokens).await.err(),
        };
        self.store
            .oauth_disconnect(integration, "disconnected by the operator")?;
        self.metrics.lever_oauth("disconnected");
        match &revoke_error {
            None => tracing::info!(%integration, "Lever grant revoked; tokens deleted"),
            Some(e) => {
                tracing::warn!(%integration, error = %e, "Lever revocation failed; tokens deleted anyway")
            }
        }
        Ok((true, revoke_error))
    }

    /// RFC 7009: revokes the grant of `tokens` (its refresh token, else its access token).
    async fn revoke_at_lever(&self, app: &OAuthApp, tokens: &OAuthTokens) -> Result<(), String> {
        let (token, hint) = match &tokens.refresh_token {
            Some(r) => (r, "refresh_token"),
            None => (&tokens.access_token, "access_token"),
        };
        let url = app.client.revocation_url().url();
        if url.scheme() != "https" {
            // The oauth2 crate revokes over HTTPS only; plain HTTP is for a simulator on loopback.
            return self.revoke_over_loopback(app, url, token, hint).await;
        }
        let token = match hint {
            "refresh_token" => {
                StandardRevocableToken::RefreshToken(RefreshToken::new(token.expose().into()))
            }
            _ => {
                StandardRevocableToken::AccessToken(oauth2::AccessToken::new(token.expose().into()))
            }
        };
        let request = app.client.revoke_token(token).map_err(|e| e.to_string())?;
        match request.request_async(&self.http).await {
            Ok(()) => Ok(()),
            Err(RequestTokenError::ServerResponse(r)) => Err(r.error().to_string()),
            Err(_) => Err("Lever's revocation endpoint is unavailable".into()),
        }
    }

    /// The same RFC 7009 request as the oauth2 crate sends (form body, client credentials as
    /// HTTP Basic), for an `http://` revocation URL on a loopback address only.
    async fn revoke_over_loopback(
        &self,
        app: &OAuthApp,
        url: &url::Url,
        token: &Secret,
        hint: &str,
    ) -> Result<(), String> {
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        if !loopback {
            return Err("revoke_url must be https (plain http only on loopback)".into());
        }
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let resp = self
            .http
            .post(url.as_str())
            .basic_auth(
                enc(&app.config.client_id),
                Some(enc(app.config.client_secret.expose())),
            )
            .form(&[("token", token.expose()), ("token_type_hint", hint)])
            .send()
            .await
            .map_err(|_| "Lever's revocation endpoint is unavailable".to_string())?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            status => Err(format!("Lever's revocation endpoint answered {status}")),
        }
    }

    /// The Bearer tokens of `integration`, for its Lever client.
    pub fn tokens_for(self: &Arc<Self>, integration: &str) -> TokenSource {
        TokenSource {
            oauth: self.clone(),
            integration: integration.to_string(),
        }
    }

    /// Holds off every other host's refresh (and disconnect) of `integration`, with its stored
    /// tokens read under the lock (a refresh another host made meanwhile is seen).
    async fn lock_refresh(
        &self,
        integration: &str,
    ) -> Result<(HeldLock, Option<OAuthTokens>), StoreError> {
        self.store.lock_oauth_refresh(integration).await
    }

    /// Records that Lever no longer honours the grant: tokens deleted, reason and time kept.
    fn lost(&self, integration: &str, reason: &str) -> LeverError {
        match self.store.oauth_disconnect(integration, reason) {
            Ok(_) => {
                self.metrics.lever_oauth("revoked");
                tracing::error!(%integration, %reason, "Lever integration disconnected: it is off until connected again (candidates moved meanwhile are not sent)");
            }
            Err(e) => tracing::error!(%integration, error = %e, "cannot record the disconnection"),
        }
        LeverError::Disconnected(reason.to_string())
    }

    /// Why the integration cannot call Lever now, if it cannot (no grant): never connected
    /// yet, or its access revoked (or disconnected by the operator) and when.
    pub fn not_connected(&self, integration: &str) -> Result<Option<Disconnected>, StoreError> {
        if self.store.oauth_tokens(integration)?.is_some() {
            return Ok(None);
        }
        let row = self.store.connection(integration)?;
        Ok(Some(match (row.disconnected_at, row.disconnect_reason) {
            (Some(at), Some(why)) => Disconnected::Revoked(format!(
                "disconnected from Lever at {}: {why}",
                crate::clock::rfc3339(at / 1000)
            )),
            _ => Disconnected::NotYet(
                "not connected to Lever yet (open the integration's connect link)".into(),
            ),
        }))
    }
}

/// One integration's Bearer tokens, as its Lever client uses them.
#[derive(Clone)]
pub struct TokenSource {
    oauth: Arc<LeverOAuth>,
    integration: String,
}

impl TokenSource {
    /// A usable access token: the stored one, refreshed first when it expires within
    /// `refresh_margin_secs`.
    pub async fn access_token(&self) -> Result<Secret, LeverError> {
        let tokens = self.stored()?;
        let margin = self
            .oauth
            .app
            .as_ref()
            .map_or(0, |a| a.config.refresh_margin_secs as i64 * 1000);
        match tokens.expires_at {
            Some(at) if at - margin <= now_ms() => self.refresh(Some(&tokens.access_token)).await,
            _ => Ok(tokens.access_token),
        }
    }

    /// Lever answered 401 to `rejected`: refresh (unless another call already did) and return
    /// the new token.
    pub async fn after_unauthorized(&self, rejected: &Secret) -> Result<Secret, LeverError> {
        self.oauth.metrics.lever_oauth("unauthorized");
        self.refresh(Some(rejected)).await
    }

    /// Lever answered 401 again to a token fresh from a refresh: the grant is dead.
    pub fn rejected_after_refresh(&self) -> LeverError {
        self.oauth.lost(
            &self.integration,
            "Lever answered 401 to a freshly refreshed access token (the app's access was revoked)",
        )
    }

    fn stored(&self) -> Result<OAuthTokens, LeverError> {
        self.connected(self.oauth.store.oauth_tokens(&self.integration))
    }

    /// The tokens `read` found, or why there are none (not connected, or the read failed).
    fn connected(
        &self,
        read: Result<Option<OAuthTokens>, StoreError>,
    ) -> Result<OAuthTokens, LeverError> {
        match read {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(LeverError::Disconnected(
                self.oauth
                    .not_connected(&self.integration)
                    .ok()
                    .flatten()
                    .map_or_else(|| "not connected to Lever".into(), |d| d.to_string()),
            )),
            Err(e) => Err(LeverError::Transient(e.to_string())),
        }
    }

    /// Refreshes under the integration's lock (every host's). `seen`: the access token the
    /// caller had; if the stored one differs, another call (of any host) refreshed meanwhile and
    /// its token is returned as is.
    async fn refresh(&self, seen: Option<&Secret>) -> Result<Secret, LeverError> {
        let (held, stored) = self
            .oauth
            .lock_refresh(&self.integration)
            .await
            .map_err(|e| LeverError::Transient(e.to_string()))?;
        let tokens = self.connected(Ok(stored))?;
        if seen.is_some_and(|s| *s != tokens.access_token) {
            return Ok(tokens.access_token);
        }
        let app = self
            .oauth
            .app()
            .map_err(|e| LeverError::Transient(e.to_string()))?;
        let Some(refresh) = &tokens.refresh_token else {
            return Err(self.oauth.lost(
                &self.integration,
                "the access token expired and Lever issued no refresh token (offline_access)",
            ));
        };
        // A refresh token works once: never spend it without the lock.
        held.still_held()
            .await
            .map_err(|e| LeverError::Transient(e.to_string()))?;
        let result = app
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh.expose().to_string()))
            .request_async(&self.oauth.http)
            .await;
        match result.map_err(classify) {
            Ok(resp) => {
                let fresh = tokens_of(&resp, Some(refresh));
                let stored = self
                    .oauth
                    .store
                    .oauth_refreshed(&self.integration, &fresh)
                    .map_err(|e| LeverError::Transient(e.to_string()))?;
                if !stored {
                    return Err(LeverError::Disconnected("disconnected meanwhile".into()));
                }
                self.oauth.metrics.lever_oauth("refreshed");
                tracing::info!(integration = %self.integration, "Lever access token refreshed");
                Ok(fresh.access_token)
            }
            Err(TokenFailure::InvalidGrant(why)) => Err(self.oauth.lost(
                &self.integration,
                &format!("Lever refused the refresh token: {why}"),
            )),
            Err(TokenFailure::Other(e)) => {
                self.oauth.metrics.lever_oauth("refresh_failed");
                Err(LeverError::Transient(format!("token refresh failed: {e}")))
            }
        }
    }
}
