//! The admin API end to end: connector versions (upload → validate → activate → rollback →
//! remove; an activation the database refuses serves nothing new), rejected uploads, a hot swap under webhook load, the compiled-code cache across
//! restarts, and integrations CRUD (persisted, secrets never echoed).
//!
//! Needs the built plugins and fixtures (see plugins/README.md).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use switchyard::store::EventState;
use switchyard_testkit::{CERTN, TRIGGER};
use switchyard_tests::support_admin::{
    self, fixture, plugin, restart, stack, variant, Admin, Body, TOKEN,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_api_is_off_without_a_token_and_refuses_a_missing_or_wrong_one() -> anyhow::Result<()>
{
    // No token configured: the whole admin API is absent.
    let data = support_admin::data_dir("off");
    let dir = support_admin::connectors_dir(&data, &["certn"]);
    let mut opts = switchyard_testkit::StackOptions::new(&dir, &data);
    opts.scratch = Some(data.0);
    let off = switchyard_testkit::Stack::start(opts).await?;
    let (status, _) = Admin::new(&off, Some(TOKEN)).get("/admin/connectors").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let on = stack("auth", &["certn"]).await?;
    for admin in [
        Admin::new(&on, None),
        Admin::new(&on, Some("test-admin-token-0123456780")),
    ] {
        for (method, path) in [
            (Method::GET, "/admin/connectors"),
            (Method::POST, "/admin/connectors/certn/rollback"),
            (Method::GET, "/admin/integrations"),
            (Method::DELETE, "/admin/integrations/demo-certn"),
        ] {
            let (status, body) = admin.call(method, path, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
            assert!(body["error"].is_string());
            assert_eq!(body["code"], "unauthorized");
        }
    }
    // Nothing was deleted by the refused requests.
    let (status, _) = Admin::new(&on, Some(TOKEN))
        .get("/admin/integrations/demo-certn")
        .await;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_validate_activate_rollback_and_remove_a_connector_version() -> anyhow::Result<()> {
    let stack = stack("lifecycle", &["certn"]).await?;
    let admin = Admin::new(&stack, Some(TOKEN));
    let original = admin.active("certn").await;
    assert!(original.starts_with("certn@"), "{original}");

    // Upload without activating: loaded, inactive, the original still serves.
    let v2 = variant(&plugin("certn"), "v2");
    let (status, body) = admin
        .post(
            "/admin/connectors/certn/versions",
            Some(Body::Bytes(v2.clone())),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let new_hash = body["version"]["hash"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(body["version"]["status"], "inactive");
    assert_eq!(body["version"]["contract_version"], "0.2.1");
    assert_eq!(body["version"]["manifest"]["id"], "certn");
    assert_eq!(admin.active("certn").await, original);

    // The same bytes again: nothing new.
    let (status, body) = admin
        .post("/admin/connectors/certn/versions", Some(Body::Bytes(v2)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["new"], false);

    // Activate by 12-character prefix; the old one becomes `previous`.
    let (status, body) = admin
        .post(
            &format!(
                "/admin/connectors/certn/versions/{}/activate",
                &new_hash[..12]
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let swapped = admin.active("certn").await;
    assert!(swapped.ends_with(&new_hash[..12]), "{swapped}");
    let (_, listing) = admin.get("/admin/connectors").await;
    let statuses: BTreeMap<String, String> = listing["connectors"][0]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                v["tag"].as_str().unwrap_or("").into(),
                v["status"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        statuses.get(&original).map(String::as_str),
        Some("previous"),
        "{listing}"
    );

    // A screening now runs on the new version, and its event says so.
    let ada = stack.candidate("Ada", Some("ada@example.com"), &[], None);
    assert_eq!(stack.move_to(&ada, TRIGGER).await?, 200);
    stack
        .wait_for(&ada, Duration::from_secs(30), |o| {
            o.tags.iter().any(|t| t.starts_with("CERTN - "))
        })
        .await?;
    let events = stack.host().app.store.events(CERTN, 10)?;
    assert!(events
        .iter()
        .any(|e| e.connector_version.as_deref() == Some(swapped.as_str())));

    // The serving version cannot be removed; rollback, then the unused one can.
    let (status, _) = admin
        .call(
            Method::DELETE,
            &format!("/admin/connectors/certn/versions/{new_hash}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = admin.post("/admin/connectors/certn/rollback", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(admin.active("certn").await, original);
    let (status, _) = admin
        .call(
            Method::DELETE,
            &format!("/admin/connectors/certn/versions/{new_hash}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = admin.get("/admin/connectors/certn").await;
    assert_eq!(body["versions"].as_array().map(Vec::len), Some(1), "{body}");
    let (status, _) = admin.post("/admin/connectors/nope/rollback", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_activation_the_database_refuses_leaves_the_served_version_as_the_database_names_it(
) -> anyhow::Result<()> {
    let stack = stack("refused-activation", &["certn"]).await?;
    let admin = Admin::new(&stack, Some(TOKEN));
    let serving = admin.active("certn").await;
    let hash = admin
        .upload("certn", variant(&plugin("certn"), "refused"))
        .await;
    // The database refuses to record a deployment (as a full disk or a lost server would).
    let db = rusqlite::Connection::open(&stack.config.storage.path)?;
    db.execute_batch(
        "CREATE TRIGGER refuse_insert BEFORE INSERT ON deployments
           BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;
         CREATE TRIGGER refuse_update BEFORE UPDATE ON deployments
           BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )?;
    let activate = format!("/admin/connectors/certn/versions/{hash}/activate");
    let (status, body) = admin.post(&activate, None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(
        admin.active("certn").await,
        serving,
        "not served here while the database does not name it"
    );
    db.execute_batch("DROP TRIGGER refuse_insert; DROP TRIGGER refuse_update;")?;
    let (status, body) = admin.post(&activate, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(admin.active("certn").await.ends_with(&hash[..12]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_uploads_say_why_and_leave_the_serving_version_untouched() -> anyhow::Result<()> {
    let stack = support_admin::stack_with("rejects", &["certn"], |c| {
        c.server.admin_max_upload_bytes = 4 << 20
    })
    .await?;
    let admin = Admin::new(&stack, Some(TOKEN));
    let serving = admin.active("certn").await;
    // Too large: 413 with a JSON reason, before any validation.
    let (status, body) = admin
        .post(
            "/admin/connectors/certn/versions?activate=true",
            Some(Body::Bytes(vec![0; 5 << 20])),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(body["code"], "too_large", "{body}");
    assert_eq!(admin.active("certn").await, serving);
    let cases: [(&str, Vec<u8>, &str); 7] = [
        (
            "not wasm",
            b"hello, I am not a component".to_vec(),
            "not a WebAssembly component",
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "not a WebAssembly component",
        ),
        ("wrong world", fixture("wrongworld"), "wrong world"),
        (
            "incompatible version",
            fixture("contract_v3"),
            "incompatible contract version",
        ),
        (
            "mistyped export",
            fixture("mistyped"),
            "`start-screening` export does not have the type",
        ),
        ("unapproved host", fixture("greedy"), "exfil.example.net"),
        ("another connector", plugin("misbehave"), "not `certn`"),
    ];
    for (what, bytes, reason) in cases {
        let (status, body) = admin
            .post(
                "/admin/connectors/certn/versions?activate=true",
                Some(Body::Bytes(bytes)),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{what}: {error}");
        assert_eq!(body["code"], "invalid", "{what}: {body}");
        assert_eq!(admin.active("certn").await, serving, "{what}");
        let (_, body) = admin.get("/admin/connectors/certn").await;
        assert_eq!(
            body["versions"].as_array().map(Vec::len),
            Some(1),
            "{what}: {body}"
        );
    }
    // And it still serves.
    let ada = stack.candidate("Ada", Some("ada@example.com"), &[], None);
    stack.move_to(&ada, TRIGGER).await?;
    stack
        .wait_for(&ada, Duration::from_secs(30), |o| {
            o.tags
                .iter()
                .any(|t| t == "CERTN - Pending" || t.starts_with("CERTN - "))
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_swaps_under_two_thousand_webhooks_lose_and_duplicate_nothing() -> anyhow::Result<()>
{
    const WEBHOOKS: usize = 2000;
    const SWAPS: usize = 20;
    let stack = stack("swap", &["misbehave"]).await?;
    let admin = Admin::new(&stack, Some(TOKEN));
    // Point the integration at the misbehave connector: no vendor round trips, so the load is
    // the host's own path (webhook → store → worker → connector → Lever write-back).
    let (status, body) = admin
        .call(
            Method::PATCH,
            "/admin/integrations/demo-certn",
            Some(Body::Json(json!({"connector": "misbehave"}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let a = admin.active("misbehave").await;
    let (status, body) = admin
        .post(
            "/admin/connectors/misbehave/versions",
            Some(Body::Bytes(variant(&plugin("misbehave"), "b"))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let b_hash = body["version"]["hash"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let b = body["version"]["tag"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let a_hash = a.rsplit('#').next().unwrap_or_default().to_string();

    let opportunities: Vec<String> = (0..WEBHOOKS)
        .map(|i| {
            stack.candidate(
                &format!("Candidate {i}"),
                Some(&format!("c{i}@example.com")),
                &[],
                None,
            )
        })
        .collect();
    let stack = Arc::new(stack);
    let sent = Arc::new(AtomicUsize::new(0));
    let swapper = {
        let (sent, admin, stack) = (sent.clone(), Admin::new(&stack, Some(TOKEN)), stack.clone());
        tokio::spawn(async move {
            let mut failures = 0;
            for swap in 0..SWAPS {
                // Spread the swaps over the processing (accepted minus still queued), which is
                // where connectors run: calls are in flight on the old version at every swap.
                loop {
                    let queued = stack.host().app.store.queue_depth().unwrap_or(0) as usize;
                    if sent.load(Ordering::SeqCst).saturating_sub(queued)
                        >= (swap + 1) * WEBHOOKS / (SWAPS + 1)
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let target = if swap % 2 == 0 { &b_hash } else { &a_hash };
                let (status, _) = admin
                    .post(
                        &format!("/admin/connectors/misbehave/versions/{target}/activate"),
                        None,
                    )
                    .await;
                failures += usize::from(status != StatusCode::OK);
            }
            failures
        })
    };
    let mut senders = tokio::task::JoinSet::new();
    for chunk in opportunities.chunks(WEBHOOKS / 8) {
        let (chunk, stack, sent) = (chunk.to_vec(), stack.clone(), sent.clone());
        senders.spawn(async move {
            let mut failed = 0;
            for opp in chunk {
                let status = stack.move_to(&opp, TRIGGER).await.unwrap_or(0);
                failed += usize::from(status != 200);
                sent.fetch_add(1, Ordering::SeqCst);
            }
            failed
        });
    }
    let mut failed_requests = 0;
    while let Some(r) = senders.join_next().await {
        failed_requests += r?;
    }
    assert_eq!(swapper.await?, 0, "every swap succeeded");
    assert_eq!(
        failed_requests, 0,
        "no webhook was refused during the swaps"
    );

    // Every event is processed, once, by one of the two versions.
    let store = &stack.host().app.store;
    let deadline = Instant::now() + Duration::from_secs(180);
    let events = loop {
        let events = store.events(CERTN, (WEBHOOKS * 2) as u32)?;
        let finished = events
            .iter()
            .filter(|e| e.state == EventState::Done)
            .count();
        if finished == WEBHOOKS || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(events.len(), WEBHOOKS, "one event per webhook");
    let mut by_version: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        assert_eq!(
            e.state,
            EventState::Done,
            "event {} is {:?}: {:?}",
            e.id,
            e.state,
            e.last_error
        );
        assert_eq!(
            e.attempts, 1,
            "event {} needed {} attempts: {:?}",
            e.id, e.attempts, e.last_error
        );
        let v = e.connector_version.clone().unwrap_or_default();
        assert!(v == a || v == b, "event {} handled by {v}", e.id);
        *by_version.entry(v).or_default() += 1;
    }
    for opp in &opportunities {
        assert_eq!(
            store.orders_of(CERTN, opp)?.len(),
            1,
            "exactly one screening for {opp}"
        );
    }
    assert_eq!(by_version.len(), 2, "both versions served: {by_version:?}");
    println!("events by version: {by_version:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_reuses_the_compiled_code_cache_rebuilds_a_corrupt_entry_and_keeps_the_active_version(
) -> anyhow::Result<()> {
    let stack = stack("cache", &["certn"]).await?;
    let admin = Admin::new(&stack, Some(TOKEN));
    let (status, body) = admin
        .post(
            "/admin/connectors/certn/versions?activate=true",
            Some(Body::Bytes(variant(&plugin("certn"), "kept"))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let uploaded = admin.active("certn").await;
    assert_eq!(body["version"]["compiled_from"], "compiled");

    let origins = |body: &serde_json::Value| -> Vec<String> {
        body["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v["compiled_from"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let stack = restart(stack).await?;
    let admin = Admin::new(&stack, Some(TOKEN));
    let (_, body) = admin.get("/admin/connectors/certn").await;
    assert_eq!(origins(&body), ["cache", "cache"], "{body}");
    assert_eq!(
        admin.active("certn").await,
        uploaded,
        "the operator's choice survives a restart"
    );

    // Corrupt every cache entry: they are detected, rebuilt, and the host serves as before.
    let cache = stack
        .config
        .storage
        .path
        .parent()
        .map(|d| d.join("cache"))
        .unwrap_or_default();
    for entry in std::fs::read_dir(&cache)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            let mut bytes = std::fs::read(&path)?;
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            std::fs::write(&path, bytes)?;
        }
    }
    let stack = restart(stack).await?;
    let admin = Admin::new(&stack, Some(TOKEN));
    let (_, body) = admin.get("/admin/connectors/certn").await;
    assert_eq!(origins(&body), ["compiled", "compiled"], "{body}");
    assert_eq!(admin.active("certn").await, uploaded);
    let ada = stack.candidate("Ada", Some("ada@example.com"), &[], None);
    stack.move_to(&ada, TRIGGER).await?;
    stack
        .wait_for(&ada, Duration::from_secs(30), |o| {
            o.tags.iter().any(|t| t.starts_with("CERTN - "))
        })
        .await?;
    // ... and the rebuilt entries are used again next time.
    let stack = restart(stack).await?;
    let (_, body) = Admin::new(&stack, Some(TOKEN))
        .get("/admin/connectors/certn")
        .await;
    assert_eq!(origins(&body), ["cache", "cache"], "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn integration_crud_survives_a_restart_and_never_echoes_a_secret() -> anyhow::Result<()> {
    let stack = stack("crud", &["certn"]).await?;
    let admin = Admin::new(&stack, Some(TOKEN));
    // The Lever API key is the simulator's real one, so the stored copy can be seen to work.
    let lever_key = stack.lever.api_key();
    let secrets = [
        lever_key.as_str(),
        "lever-sig-SECRET-2",
        "certn-key-SECRET-3",
        "certn-hook-SECRET-4",
    ];
    let create = json!({
        "id": "acme", "connector": "certn",
        "ats": {"kind": "lever", "api_base": stack.lever.api_base(), "api_key": secrets[0],
                "signature_token": secrets[1], "trigger_stage": "Background Check"},
        "settings": {"api-base": stack.certn.api_base()},
        "secrets": {"api-key": secrets[2], "webhook-secret": secrets[3]},
        "packages": [{"name": "Standard", "default": true, "params": {"checks": "criminal_record_check"}},
                     {"name": "Full", "params": {"checks": "criminal_record_check,employment_verification"}}]
    });
    let mut seen = Vec::new();
    let (status, body) = admin
        .post("/admin/integrations", Some(Body::Json(create.clone())))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["packages"][0]["default"], true);
    assert_eq!(body["secrets"], json!(["api-key", "webhook-secret"]));
    assert_eq!(body["ats"]["api_key_set"], true);
    seen.push(body);

    // Refused input changes nothing: a duplicate id, two defaults, a missing required secret.
    let (status, body) = admin
        .post("/admin/integrations", Some(Body::Json(create)))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let patch = |v| Body::Json(v);
    let (status, body) = admin
        .call(Method::PATCH, "/admin/integrations/acme",
            Some(patch(json!({"packages": [{"name": "A", "default": true}, {"name": "B", "default": true}]}))))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // Seed 000: "choose at least one service": Certn refuses a package without one, before
    // any candidate could be invited with it.
    let (status, body) = admin
        .call(Method::PATCH, "/admin/integrations/acme",
            Some(patch(json!({"packages": [{"name": "Standard", "default": true, "params": {"checks": "criminal_record_check"}},
                                           {"name": "Empty", "params": {}}]}))))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("\"Empty\" has no service"),
        "{body}"
    );
    let (_, body) = admin.get("/admin/integrations/acme").await;
    assert_eq!(body["packages"][1]["name"], "Full", "nothing saved: {body}");
    let (status, body) = admin
        .call(
            Method::PATCH,
            "/admin/integrations/acme",
            Some(patch(json!({"secrets": {"api-key": null}}))),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("api-key"),
        "{body}"
    );
    let (status, _) = admin
        .call(
            Method::PATCH,
            "/admin/integrations/acme",
            Some(patch(json!({"bogus": 1}))),
        )
        .await;
    assert!(status.is_client_error());

    // Update, disable, enable (which answers with the webhook URLs).
    let (status, body) = admin
        .call(
            Method::PATCH,
            "/admin/integrations/acme",
            Some(patch(json!({"ats": {"trigger_stage": "Screen"}}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ats"]["trigger_stage"], "Screen");
    seen.push(body);
    let (status, body) = admin.post("/admin/integrations/acme/disable", None).await;
    assert_eq!(
        (status, body["enabled"].clone()),
        (StatusCode::OK, json!(false))
    );
    seen.push(body);
    let (status, body) = admin.post("/admin/integrations/acme/enable", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["webhook_urls"]["lever"],
        format!("http://{}/hooks/acme/lever", stack.addr)
    );
    assert_eq!(
        body["webhook_urls"]["vendor"],
        format!("http://{}/hooks/acme/vendor", stack.addr)
    );
    seen.push(body);
    // Delete the config-file integration.
    let (status, _) = admin
        .call(Method::DELETE, "/admin/integrations/demo-certn", None)
        .await;
    assert_eq!(status, StatusCode::OK);

    let stack = restart(stack).await?;
    let admin = Admin::new(&stack, Some(TOKEN));
    assert_eq!(stack.lever.api_key(), lever_key);
    let (status, body) = admin.get("/admin/integrations/acme").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ats"]["trigger_stage"], "Screen");
    assert_eq!(body["enabled"], true);
    seen.push(body);
    let (_, body) = admin.get("/admin/integrations").await;
    let ids: Vec<&str> = body["integrations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["acme"],
        "the deleted config-file integration stays deleted"
    );
    seen.push(body);
    // The stored secrets are the ones given: the integration authenticates to Lever (its API key).
    let acme = stack
        .host()
        .app
        .integration("acme")
        .expect("acme is served");
    assert_eq!(acme.ats.kind(), "lever");
    acme.ats
        .check_connection()
        .await
        .expect("the stored API key authenticates to Lever");
    let text = seen.iter().map(|b| b.to_string()).collect::<String>();
    for secret in secrets {
        assert!(!text.contains(secret), "a response echoed {secret}");
    }
    let (status, _) = admin
        .call(Method::DELETE, "/admin/integrations/acme", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = admin.get("/admin/integrations/acme").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_mode_deploys_a_dropped_file_and_ignores_a_rejected_one() -> anyhow::Result<()> {
    let stack = support_admin::stack_with("watch", &["certn"], |c| c.runtime.watch = true).await?;
    let admin = Admin::new(&stack, Some(TOKEN));
    let dir = stack.config.runtime.connectors_dir.clone();
    let original = admin.active("certn").await;
    // A component asking for an unapproved host is refused, set aside; the original keeps serving.
    std::fs::write(dir.join("greedy.wasm"), fixture("greedy"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("greedy.wasm.rejected").exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        dir.join("greedy.wasm.rejected").exists(),
        "the rejected file is set aside"
    );
    assert!(!dir.join("greedy.wasm").exists());
    assert_eq!(admin.active("certn").await, original);
    // A new certn build dropped in is validated and activated.
    std::fs::write(
        dir.join("certn-next.wasm"),
        variant(&plugin("certn"), "next"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut active = original.clone();
    while active == original && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        active = admin.active("certn").await;
    }
    assert_ne!(active, original, "the dropped file was activated");
    let (_, body) = admin.get("/admin/connectors/certn").await;
    let versions = body["versions"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        versions.len(),
        2,
        "the greedy component was not loaded: {body}"
    );
    assert!(
        versions.iter().all(|v| v["manifest"]["version"] != "9.0.0"),
        "{body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_webhooks_by_outcome_invocations_by_version_and_the_queue(
) -> anyhow::Result<()> {
    let stack = stack("metrics", &["certn"]).await?;
    let ada = stack.candidate("Ada", Some("ada@example.com"), &[], None);
    assert_eq!(stack.move_to(&ada, TRIGGER).await?, 200);
    stack
        .wait_for(&ada, Duration::from_secs(30), |o| {
            o.tags.iter().any(|t| t.starts_with("CERTN - "))
        })
        .await?;
    let http = reqwest::Client::new();
    let bad = http
        .post(format!("http://{}/hooks/{CERTN}/lever", stack.addr))
        .body("{not json")
        .send()
        .await?;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let text = http
        .get(format!("http://{}/metrics", stack.addr))
        .send()
        .await?
        .text()
        .await?;
    let tag = Admin::new(&stack, Some(TOKEN)).active("certn").await;
    let version = tag.split_once('@').map(|(_, v)| v).unwrap_or_default();
    for expected in [
        "switchyard_webhooks_total{source=\"lever\",outcome=\"accepted\"} 1".to_string(),
        "switchyard_webhooks_total{source=\"lever\",outcome=\"malformed\"} 1".to_string(),
        format!("switchyard_invocations_total{{connector=\"certn\",version=\"{version}\",call=\"start-screening\",outcome=\"ok\"}} 1"),
        format!("switchyard_invocation_seconds_count{{connector=\"certn\",version=\"{version}\"}}"),
        "switchyard_queue_depth".to_string(),
        "switchyard_dead_letters_total 0".to_string(),
        "switchyard_event_retries_total".to_string(),
    ] {
        assert!(text.contains(&expected), "missing {expected} in\n{text}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lever_integration_runs_on_an_oauth_access_token_set_through_the_admin_api(
) -> anyhow::Result<()> {
    let stack = stack("oauth", &["certn"]).await?;
    let admin = Admin::new(&stack, Some(TOKEN));
    let token = stack.lever.oauth_token();
    let path = format!("/admin/integrations/{CERTN}");
    // Both credentials at once are refused, and change nothing.
    let (status, body) = admin
        .call(
            Method::PATCH,
            &path,
            Some(Body::Json(
                json!({"ats": {"api_key": "k", "oauth_access_token": token}}),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // Setting the token replaces the API key.
    let (status, body) = admin
        .call(
            Method::PATCH,
            &path,
            Some(Body::Json(json!({"ats": {"oauth_access_token": token}}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ats"]["oauth_access_token_set"], true);
    assert_eq!(body["ats"]["api_key_set"], false);
    assert!(!body.to_string().contains(&token), "{body}");

    // The whole flow now reads and writes Lever with the Bearer token (the key is gone).
    let opp = stack.candidate("Ada", Some("ada@example.com"), &[], None);
    stack.move_to(&opp, TRIGGER).await?;
    let done = stack
        .wait_for(&opp, Duration::from_secs(40), |o| {
            o.tags.contains(&"CERTN - Complete".to_string())
        })
        .await?;
    assert_eq!(done.links.len(), 1, "{done:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openapi_document_lists_every_admin_route_and_each_is_served() -> anyhow::Result<()> {
    let stack = stack("openapi", &["certn"]).await?;
    // Behind the token like the rest of the admin API.
    let (status, body) = Admin::new(&stack, None).get("/admin/openapi.json").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    let admin = Admin::new(&stack, Some(TOKEN));
    let (status, doc) = admin.get("/admin/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    // Every route the admin tests call is documented.
    for (method, path) in [
        ("GET", "/admin/connectors"),
        ("GET", "/admin/connectors/{id}"),
        ("POST", "/admin/connectors/versions"),
        ("POST", "/admin/connectors/{id}/versions"),
        ("POST", "/admin/connectors/{id}/versions/{hash}/activate"),
        ("DELETE", "/admin/connectors/{id}/versions/{hash}"),
        ("POST", "/admin/connectors/{id}/rollback"),
        ("GET", "/admin/integrations"),
        ("POST", "/admin/integrations"),
        ("GET", "/admin/integrations/{id}"),
        ("PATCH", "/admin/integrations/{id}"),
        ("DELETE", "/admin/integrations/{id}"),
        ("POST", "/admin/integrations/{id}/enable"),
        ("POST", "/admin/integrations/{id}/disable"),
        ("GET", "/admin/integrations/{id}/gem-keys"),
        ("POST", "/admin/integrations/{id}/gem-keys"),
        ("DELETE", "/admin/integrations/{id}/gem-keys/{key_id}"),
        ("POST", "/admin/integrations/{id}/lever/connect"),
        ("GET", "/admin/integrations/{id}/lever/connect"),
        ("POST", "/admin/integrations/{id}/lever/disconnect"),
        ("DELETE", "/admin/integrations/{id}/lever/disconnect"),
        ("GET", "/admin/events"),
        ("GET", "/admin/events/{id}"),
        ("DELETE", "/admin/events/{id}"),
        ("GET", "/admin/openapi.json"),
    ] {
        assert!(
            operations.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is not in the document"
        );
    }
    // And every documented operation is served: asked about things that do not exist, each is
    // answered by its handler (a coded error or a success), never by the router's bare 404/405.
    for (method, path) in &operations {
        let concrete = path
            .replace("{id}", "no-such-thing")
            .replace("{hash}", "0123456789abcdef")
            .replace("{key_id}", "no-such-key");
        let method = Method::from_bytes(method.as_bytes())?;
        let (status, body) = admin.call(method.clone(), &concrete, None).await;
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {concrete}"
        );
        if !status.is_success() {
            assert!(
                body["code"].is_string(),
                "{method} {concrete}: {status} {body}"
            );
        }
    }
    // A coded error keeps its message.
    let (status, body) = admin.get("/admin/integrations/no-such-thing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({ "error": "no integration `no-such-thing`", "code": "not_found" })
    );
    Ok(())
}

/// A config-file Certn package without a service stops the start with the reason (as an
/// unapproved host does), so no candidate is ever invited to an empty check.
#[tokio::test(flavor = "multi_thread")]
async fn a_config_file_package_without_a_service_stops_the_start() -> anyhow::Result<()> {
    let started = support_admin::stack_with("noservice", &["certn"], |c| {
        c.integrations[0].packages[0].params.clear();
    })
    .await;
    let Err(e) = started else {
        anyhow::bail!("the host started with a package without a service");
    };
    let message = format!("{e:#}");
    assert!(
        message.contains(&format!("integration `{CERTN}`")) && message.contains("has no service"),
        "{message}"
    );
    Ok(())
}
