//! Several hosts on one PostgreSQL database, coordinated through it: one OAuth refresh per
//! integration across hosts (Lever rotates refresh tokens: a second refresh with the same token
//! would lock the customer out). The locks themselves are tested in `host/src/store/locks.rs`.

use std::sync::Arc;

use switchyard::ats::lever::oauth::LeverOAuth;
use switchyard::config::LeverOAuthConfig;
use switchyard::metrics::Metrics;
use switchyard::store::oauth::StateCheck;
use switchyard::store::Store;
use switchyard_sim::lever::LeverSim;
use switchyard_testkit::lever_oauth::simulator_app;

const INTEGRATION: &str = "certn";

/// A host's Lever OAuth app on its own connection pool to the shared database.
fn host(url: &str, app: &LeverOAuthConfig) -> Arc<LeverOAuth> {
    let store = Store::open_postgres(url, None).expect("store");
    Arc::new(
        LeverOAuth::new(
            Some(app),
            "http://127.0.0.1:9",
            store,
            reqwest::Client::new(),
            Arc::new(Metrics::default()),
        )
        .expect("OAuth app"),
    )
}

/// Connects `INTEGRATION` through `oauth` the way the callback does: consent at the simulator
/// (which approves at once), then the code exchanged and the grant stored.
async fn connect(oauth: &LeverOAuth, store: &Store) {
    let (authorize, _) = oauth.authorize_url(INTEGRATION).expect("connect link");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let consent = browser.get(&authorize).send().await.expect("authorize");
    let back = consent
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| reqwest::Url::parse(v).ok())
        .expect("redirected back with a code");
    let param = |name: &str| {
        back.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {name} in {back}"))
    };
    let StateCheck::Valid { pkce_verifier, .. } =
        store.oauth_take_state(&param("state")).expect("state")
    else {
        panic!("the state just issued is valid");
    };
    let tokens = oauth
        .exchange(&param("code"), &pkce_verifier)
        .await
        .expect("code exchanged");
    store.oauth_connect(INTEGRATION, &tokens).expect("stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_refreshing_one_grant_at_once_send_one_refresh_and_share_the_new_token() {
    let lever = LeverSim::start().await.expect("Lever simulator");
    let app = simulator_app(&lever, "http://127.0.0.1:9");
    let url = switchyard_testkit::pg::database();
    let (a, b) = (host(&url, &app), host(&url, &app));
    let store = Store::open_postgres(&url, None).expect("store");
    connect(&a, &store).await;
    let seen = store
        .oauth_tokens(INTEGRATION)
        .expect("read")
        .expect("connected")
        .access_token;

    // Lever answered 401 to the same token on both hosts, to three calls each, at once.
    let calls = [&a, &b, &a, &b, &a, &b].map(|oauth| {
        let source = oauth.tokens_for(INTEGRATION);
        let seen = seen.clone();
        tokio::spawn(async move { source.after_unauthorized(&seen).await })
    });
    let mut fresh = Vec::new();
    for call in calls {
        fresh.push(call.await.expect("joined").expect("a usable token"));
    }

    let requests = lever.token_requests();
    assert_eq!(
        (requests.refresh_token, requests.refused),
        (1, 0),
        "one refresh across hosts, no rotated-away token presented: {requests:?}"
    );
    let stored = store
        .oauth_tokens(INTEGRATION)
        .expect("read")
        .expect("still connected")
        .access_token;
    assert_ne!(stored, seen, "refreshed");
    assert!(
        fresh.iter().all(|t| *t == stored),
        "every call on every host got the new token"
    );
}
