//! The console's setup wizard and secret rotation over HTTP: a Lever → Certn integration set up
//! from live lists ends working; bad input (no CSRF token, a viewer, invalid settings, a choice
//! not in the live list) changes nothing and says why beside each field; a posting named
//! `<script>` is shown as text; a rotated secret is shown once and never again.
//!
//! Needs the built plugins (see plugins/README.md).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use switchyard::config::AtsConfig;
use switchyard_testkit::{Stack, CERTN, TRIGGER};
use switchyard_tests::support_admin::{Admin, TOKEN};
use switchyard_tests::support_console::{
    self, demo_signature_token, lever_certn_settings, Console, WIZARD_KEY,
};

const LONG: Duration = Duration::from_secs(60);

fn refs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// A console stack whose `demo-certn` is deleted, for the wizard to set it up again.
async fn without_demo(test: &str) -> anyhow::Result<Stack> {
    let stack = support_console::stack(test, &["certn"], |_| {}).await?;
    let (status, body) = Admin::new(&stack, Some(TOKEN))
        .call(
            Method::DELETE,
            &format!("/admin/integrations/{CERTN}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(stack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wizard_sets_up_a_working_lever_certn_integration_from_live_lists() -> anyhow::Result<()>
{
    let stack = without_demo("wizard").await?;
    let posting = stack
        .lever
        .add_posting("<script>alert(1)</script> Engineer", &[]);
    let mut op = Console::operator(&stack).await;

    let (status, page) = op.get("/console/wizard").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (status, page) = op
        .get(&format!(
            "/console/wizard/settings?id={CERTN}&ats=lever&connector=certn"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for field in [
        "setting.api-key",
        "setting.webhook-secret",
        "signature_token",
    ] {
        assert!(
            page.contains(&format!("type=\"password\" id=\"{field}\"")),
            "{field} is write-only: {page}"
        );
    }

    let key = stack.lever.generate_api_key(&WIZARD_KEY);
    let token = demo_signature_token(&stack);
    let settings = lever_certn_settings(&stack, CERTN, &key, &token);
    let (status, location, body) = op.act("/console/wizard/settings", &refs(&settings)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location, format!("/console/wizard/{CERTN}/rules"));
    let created = stack.host().app.integration(CERTN).expect("created");
    assert!(!created.config.enabled, "paused until verified");

    // The live lists: the posting (escaped), the stages, the connector's packages.
    let (status, page) = op.get(&format!("/console/wizard/{CERTN}/rules")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt; Engineer"),
        "{page}"
    );
    assert!(!page.contains("<script>alert(1)"), "rendered as text");
    assert!(page.contains(&format!("value=\"{posting}\"")), "{page}");
    assert!(page.contains(&format!("value=\"{TRIGGER}\"")), "{page}");
    assert!(page.contains("value=\"Premium\""), "{page}");
    let rules = [
        ("trigger_stage", TRIGGER),
        ("rule.0.posting", posting.as_str()),
        ("rule.0.stage", ""),
        ("rule.0.package", "Premium"),
    ];
    let (status, location, body) = op
        .act(&format!("/console/wizard/{CERTN}/rules"), &rules)
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location, format!("/console/wizard/{CERTN}/finish"));

    let (status, page) = op.get(&format!("/console/wizard/{CERTN}/finish")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for url in ["/hooks/demo-certn/lever", "/hooks/demo-certn/vendor"] {
        assert!(
            page.contains(&format!("data-copy=\"http://{}{url}\"", stack.addr)),
            "{page}"
        );
    }
    let (status, location, body) = op
        .act(&format!("/console/wizard/{CERTN}/finish"), &[])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location, "/console/integrations?ok=set-up");
    let integration = stack.host().app.integration(CERTN).expect("kept");
    assert!(integration.config.enabled, "enabled once verified");

    // It works: a candidate of the posting gets the rule's package.
    let ada = stack.candidate("Ada Lovelace", Some("ada@example.com"), &[], Some(&posting));
    switchyard_tests::certn_complete(&stack, &ada, LONG).await;
    let applications = stack.certn.applications();
    assert_eq!(applications.len(), 1, "one invitation");
    assert_eq!(applications[0].package, "Premium", "the rule's package");

    // Every step is audited, and no secret is anywhere the console shows.
    let (_, audit) = op.get("/console/audit").await;
    for action in [
        "integration.create",
        "integration.rules",
        "integration.verify_and_enable",
    ] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
    let (_, integrations) = op.get("/console/integrations").await;
    for secret in [
        key.as_str(),
        token.as_str(),
        &stack.certn.api_key(),
        &stack.certn.webhook_secret(),
    ] {
        assert!(!audit.contains(secret) && !integrations.contains(secret));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wizards_bad_input_is_refused_beside_each_field_and_creates_nothing(
) -> anyhow::Result<()> {
    let stack = without_demo("wizard-bad").await?;
    let key = stack.lever.generate_api_key(&WIZARD_KEY);
    let token = demo_signature_token(&stack);
    let settings = lever_certn_settings(&stack, CERTN, &key, &token);
    let created = || stack.host().app.integration(CERTN).is_some();

    // No CSRF token, or another session's: 403, nothing created.
    let mut op = Console::operator(&stack).await;
    let other = Console::operator(&stack).await;
    for csrf in [None, Some(other.csrf.as_str())] {
        let (status, _, body) = op
            .post("/console/wizard/settings", &refs(&settings), csrf)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(!created());
    }

    // A viewer: 403 on the pages and the post, and the attempt is audited.
    let mut viewer = Console::viewer(&stack).await;
    let (status, _) = viewer.get("/console/wizard").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = viewer
        .act("/console/wizard/settings", &refs(&settings))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!created());
    let (_, audit) = op.get("/console/audit").await;
    assert!(audit.contains("POST /console/wizard/settings"), "{audit}");

    // Step 1: a bad id and an unknown connector, each beside its field.
    let (status, page) = op
        .get("/console/wizard/settings?id=bad%20id!&ats=lever&connector=nope")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("data-field=\"id\""), "{page}");
    assert!(page.contains("data-field=\"connector\""), "{page}");

    // Invalid settings: each problem beside its field; the secrets typed are not echoed.
    let bad: Vec<(String, String)> = settings
        .iter()
        .filter(|(k, _)| {
            k != "signature_token" && k != "setting.api-key" && k != "package.1.checks"
        })
        .cloned()
        .collect();
    let (status, _, page) = op.act("/console/wizard/settings", &refs(&bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    for field in ["signature_token", "setting.api-key", "package.1.checks"] {
        assert!(
            page.contains(&format!("data-field=\"{field}\"")),
            "{field}: {page}"
        );
    }
    assert!(!page.contains(&key), "the Lever key is not echoed");
    assert!(
        !page.contains(&stack.certn.webhook_secret()),
        "nor the vendor's secret"
    );
    assert!(!created());

    // A host the operator did not approve: refused by the shared validation, beside its field.
    let mut unapproved = settings.clone();
    for (k, v) in unapproved.iter_mut() {
        if k == "allowed_hosts" {
            *v = "evil.example".into();
        }
    }
    let (status, _, page) = op.act("/console/wizard/settings", &refs(&unapproved)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("data-field=\"allowed_hosts\""), "{page}");
    assert!(!created());

    // Created; then a rule naming a posting that is not in Lever's live list changes nothing.
    let (status, _, body) = op.act("/console/wizard/settings", &refs(&settings)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    op.get(&format!("/console/wizard/{CERTN}/rules")).await;
    let rules = [
        ("trigger_stage", TRIGGER),
        ("rule.0.posting", "no-such-posting"),
        ("rule.0.package", "Premium"),
    ];
    let (status, _, page) = op
        .act(&format!("/console/wizard/{CERTN}/rules"), &rules)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("data-field=\"rule.0.posting\""), "{page}");
    let integration = stack.host().app.integration(CERTN).expect("created");
    assert!(integration.config.rules.is_empty(), "no rule saved");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_rotate_in_one_click_are_audited_and_shown_once() -> anyhow::Result<()> {
    let stack = support_console::stack("rotate", &["certn"], |_| {}).await?;
    let mut op = Console::operator(&stack).await;
    op.get("/console/integrations").await;
    let lever_token = |stack: &Stack| match &stack
        .host()
        .app
        .integration(CERTN)
        .map(|i| i.config.ats.clone())
    {
        Some(AtsConfig::Lever(l)) => l.signature_token.expose().to_string(),
        _ => String::new(),
    };
    let rotate = format!("/console/integrations/{CERTN}/rotate/signature-token");

    // Lever: an empty token changes nothing; a new one replaces the old.
    let old = lever_token(&stack);
    let (status, _, _) = op.act(&rotate, &[("signature_token", " ")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(lever_token(&stack), old);
    let (status, location, _) = op
        .act(&rotate, &[("signature_token", "new-lever-token-1")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/console/integrations?ok=token-replaced");
    assert_eq!(lever_token(&stack), "new-lever-token-1");
    // Gem's rotations refuse a Lever integration.
    let (status, _, _) = op
        .act(
            &format!("/console/integrations/{CERTN}/rotate/gem-key"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A Gem integration, set up through the wizard: its key is generated there, shown once.
    let gem = "wiz-gem";
    let settings: Vec<(String, String)> = lever_certn_settings(&stack, gem, "", "")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("lever_") && k != "signature_token" && k != "ats")
        .chain([
            ("ats".to_string(), "gem".to_string()),
            ("gem_webhook_url".into(), "https://gem.example/hook".into()),
            ("gem_webhook_secret".into(), "first-gem-secret".into()),
        ])
        .collect();
    let (status, location, body) = op.act("/console/wizard/settings", &refs(&settings)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location, format!("/console/wizard/{gem}/finish"));
    let finish = format!("/console/wizard/{gem}/finish");
    op.get(&finish).await;
    let (status, _, page) = op.act(&finish, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "no key yet");
    assert!(page.contains("Gem API key"), "{page}");
    let key_path = format!("/console/integrations/{gem}/rotate/gem-key");
    let (status, _, page) = op.act(&key_path, &[]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let first = shown_secret(&page);
    let (status, location, _) = op.act(&finish, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/console/integrations?ok=set-up");

    // A new key: the old one is revoked at once; neither is on any page afterwards.
    let (_, _, page) = op.act(&key_path, &[]).await;
    let second = shown_secret(&page);
    assert_ne!(first, second);
    let store = &stack.host().app.store;
    use switchyard::ats::gem::keys::authenticate;
    assert!(
        authenticate(store, gem, &first)?.is_none(),
        "the old key is revoked"
    );
    assert!(
        authenticate(store, gem, &second)?.is_some(),
        "the new key works"
    );

    // Gem's webhook secret: the old one keeps signing for the overlap.
    let secret_path = format!("/console/integrations/{gem}/rotate/gem-webhook-secret");
    let (status, _, _) = op.act(&secret_path, &[("overlap_hours", "0")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, page) = op.act(&secret_path, &[("overlap_hours", "24")]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let secret = shown_secret(&page);
    let Some(AtsConfig::Gem(g)) = stack
        .host()
        .app
        .integration(gem)
        .map(|i| i.config.ats.clone())
    else {
        panic!("a Gem integration");
    };
    assert_eq!(g.webhook_secret.expose(), secret);
    assert_eq!(
        g.previous_webhook_secret.as_ref().map(|s| s.expose()),
        Some("first-gem-secret")
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let until = g.previous_secret_expires_at.unwrap_or(0);
    assert!((until - now - 24 * 3600).abs() < 120, "{until} vs {now}");

    let (_, integrations) = op.get("/console/integrations").await;
    let (_, audit) = op.get("/console/audit").await;
    for shown in [&first, &second, &secret, &"new-lever-token-1".to_string()] {
        assert!(!integrations.contains(shown.as_str()) && !audit.contains(shown.as_str()));
    }
    for action in [
        "integration.rotate_signature_token",
        "gem_key.rotate",
        "integration.rotate_gem_webhook_secret",
    ] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
    Ok(())
}

/// The secret a "shown once" page shows.
fn shown_secret(page: &str) -> String {
    let at = page
        .find("id=\"new-secret\"")
        .unwrap_or_else(|| panic!("no secret shown: {page}"));
    let from = page[at..]
        .find("data-copy=\"")
        .map(|i| at + i + "data-copy=\"".len());
    let from = from.unwrap_or_else(|| panic!("no copy button: {page}"));
    page[from..].split('"').next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wizard_connects_lever_as_an_app_and_goes_on_after_the_callback() -> anyhow::Result<()>
{
    use switchyard_tests::support_admin::{connectors_dir, data_dir};
    let data = data_dir("console-wizard-oauth");
    let _ = std::fs::remove_dir_all(&data);
    let dir = connectors_dir(&data, &["certn"]);
    let mut stack = Stack::prepare(switchyard_testkit::StackOptions::new(&dir, &data)).await?;
    stack.config.server.admin_token = Some(switchyard::config::Secret::new(TOKEN));
    let app = switchyard_testkit::lever_oauth::simulator_app(&stack.lever, &stack.host_url());
    stack.config.lever_oauth = Some(app);
    let stack = stack.run().await?;
    let (status, body) = Admin::new(&stack, Some(TOKEN))
        .call(
            Method::DELETE,
            &format!("/admin/integrations/{CERTN}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let posting = stack.lever.add_posting("Engineer", &[]);

    let mut op = Console::operator(&stack).await;
    let token = demo_signature_token(&stack);
    let settings: Vec<(String, String)> = lever_certn_settings(&stack, CERTN, "", &token)
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "lever_auth" => (k, "oauth".to_string()),
            _ => (k, v),
        })
        .filter(|(k, _)| k != "lever_api_key")
        .collect();
    op.get("/console/wizard").await;
    let (status, location, body) = op.act("/console/wizard/settings", &refs(&settings)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let connect = format!("/console/wizard/{CERTN}/connect");
    assert_eq!(location, connect);

    // Not connected yet: Verify Connection refuses and the integration stays paused.
    let (_, page) = op.get(&connect).await;
    assert!(page.contains("not_connected"), "{page}");
    let (status, _, page) = op
        .act(&format!("/console/wizard/{CERTN}/finish"), &[])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(
        !stack
            .host()
            .app
            .integration(CERTN)
            .expect("created")
            .config
            .enabled
    );

    // The connect link, opened as the customer's browser would; Lever sends it back.
    let (status, _, page) = op.act(&connect, &[]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let at = page.find("id=\"connect-link\"").expect("a connect link");
    let href = page[at..]
        .split("href=\"")
        .nth(1)
        .and_then(|h| h.split('"').next());
    let link = href.expect("the link's address").replace("&amp;", "&");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()?;
    let back = browser
        .get(&link)
        .header(reqwest::header::ACCEPT, "text/html")
        .send()
        .await?;
    assert_eq!(
        back.status(),
        StatusCode::OK,
        "the callback stored the grant"
    );
    let page = back.text().await?;
    assert!(
        page.contains(&format!("href=\"{connect}\"")),
        "the way back: {page}"
    );

    let (_, page) = op.get(&connect).await;
    assert!(
        page.contains(&format!("href=\"/console/wizard/{CERTN}/rules\"")),
        "{page}"
    );
    let (status, page) = op.get(&format!("/console/wizard/{CERTN}/rules")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains(&format!("value=\"{posting}\"")),
        "postings read with the grant: {page}"
    );
    let rules = [
        ("trigger_stage", TRIGGER),
        ("rule.0.posting", posting.as_str()),
        ("rule.0.package", "Premium"),
    ];
    let (status, _, body) = op
        .act(&format!("/console/wizard/{CERTN}/rules"), &rules)
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    op.get(&format!("/console/wizard/{CERTN}/finish")).await;
    let (status, location, body) = op
        .act(&format!("/console/wizard/{CERTN}/finish"), &[])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location, "/console/integrations?ok=set-up");

    let ada = stack.candidate("Ada Lovelace", Some("ada@example.com"), &[], Some(&posting));
    switchyard_tests::certn_complete(&stack, &ada, LONG).await;
    let (_, audit) = op.get("/console/audit").await;
    assert!(audit.contains("integration.lever_connect_link"), "{audit}");
    Ok(())
}
