//! Retention end to end: a pass prunes a finished screening (events, attempts, order, notes)
//! and a redelivery of its webhook or callback afterwards is still a duplicate; dead letters stay
//! until an operator removes them; old connector versions go, the active and previous stay.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use switchyard_testkit::{CERTN, TRIGGER};
use switchyard_tests::all_done;
use switchyard_tests::support_admin::{plugin, stack_with, variant, Admin, Body, TOKEN};

const LONG: Duration = Duration::from_secs(30);

/// An instant after which everything finished until now is older than the window.
fn past_the_window(app: &switchyard::app::App) -> i64 {
    switchyard::clock::now_ms() + app.config.storage.retention().as_millis() as i64 + 1_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pruned_screening_stays_deduplicated_and_dead_letters_wait_for_an_operator(
) -> anyhow::Result<()> {
    let s = stack_with("retention-prune", &["certn"], |_| {}).await?;
    let app = s.host().app.clone();
    let opp = s.candidate("Ada", Some("ada@example.com"), &[], None);
    s.move_to(&opp, TRIGGER).await?;
    s.wait_for(&opp, LONG, |o| {
        o.tags.contains(&"CERTN - Complete".to_string())
    })
    .await?;
    let finished = all_done(&s, CERTN, LONG).await;
    assert!(finished.len() >= 2, "the trigger and at least one status");
    let dead = app
        .store
        .record_failure(CERTN, "vendor.callback", "{}", "trapped", "certn@x")?;

    let report = switchyard::retention::pass(&app, past_the_window(&app)).await?;

    assert_eq!(report.pruned.events as usize, finished.len(), "{report:?}");
    assert_eq!(report.pruned.orders, 1, "{report:?}");
    let left = app.store.list_events(Some(CERTN), None, 500)?;
    assert_eq!(
        left.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![dead],
        "only the dead letter is kept"
    );

    // Lever re-runs the delivery and Certn re-sends its last callback: both answered as
    // duplicates, nothing queued, nobody invited again.
    let app_id = s.certn.applications()[0].id.clone();
    assert_eq!(s.lever.rerun_delivery(0).await?, 200);
    assert_eq!(s.certn.resend_last_callback(&app_id).await?, 200);
    assert_eq!(app.store.list_events(Some(CERTN), None, 500)?.len(), 1);
    assert_eq!(s.certn.invite_requests(), 1);

    // The dead letter outlives any number of passes, until an operator removes it.
    switchyard::retention::pass(&app, past_the_window(&app)).await?;
    let admin = Admin::new(&s, Some(TOKEN));
    let (status, body) = admin.get(&format!("/admin/events/{dead}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = admin
        .call(Method::DELETE, &format!("/admin/events/{dead}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["removed"], dead);
    let (status, _) = admin.get(&format!("/admin/events/{dead}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin
        .call(Method::DELETE, &format!("/admin/events/{dead}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin.call(Method::DELETE, "/admin/events/x", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The metrics say what went and how big the database is.
    let metrics = reqwest::get(format!("{}/metrics", s.host_url()))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("switchyard_retention_pruned_rows_total{table=\"events\"}"),
        "{metrics}"
    );
    let bytes = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_database_bytes "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_default();
    assert!(bytes > 0, "database size: {metrics}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_a_dead_event_can_be_removed() -> anyhow::Result<()> {
    let s = stack_with("retention-live", &["certn"], |_| {}).await?;
    let app = s.host().app.clone();
    let opp = s.candidate("Ada", Some("ada@example.com"), &[], None);
    s.move_to(&opp, TRIGGER).await?;
    let done = all_done(&s, CERTN, LONG).await;
    let admin = Admin::new(&s, Some(TOKEN));
    let (status, body) = admin
        .call(
            Method::DELETE,
            &format!("/admin/events/{}", done[0].id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "conflict");
    assert!(
        app.store.event_detail(done[0].id)?.is_some(),
        "nothing removed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_connector_versions_go_but_never_the_active_or_the_rollback_target(
) -> anyhow::Result<()> {
    let s = stack_with("retention-versions", &["certn"], |c| {
        c.storage.keep_connector_versions = 2;
    })
    .await?;
    let app = s.host().app.clone();
    let admin = Admin::new(&s, Some(TOKEN));
    let original = admin.active("certn").await;
    let mut hashes = Vec::new();
    for label in ["v1", "v2", "v3", "v4"] {
        let bytes = variant(&plugin("certn"), label);
        let (status, body) = admin
            .post("/admin/connectors/certn/versions", Some(Body::Bytes(bytes)))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        hashes.push(
            body["version"]["hash"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    // v1 serves; the original is the rollback target; v2..v4 are only loaded.
    let (status, body) = admin
        .post(
            &format!("/admin/connectors/certn/versions/{}/activate", hashes[0]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let report = switchyard::retention::pass(&app, switchyard::clock::now_ms()).await?;

    // The newest two (v3, v4) plus the active and previous ones stay; v2 goes.
    assert_eq!(report.versions_removed.len(), 1, "{report:?}");
    let (_, body) = admin.get("/admin/connectors/certn").await;
    let kept: Vec<String> = body["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["hash"].as_str().map(str::to_string))
        .collect();
    assert_eq!(kept.len(), 4, "{body}");
    assert!(!kept.contains(&hashes[1]), "v2 removed: {kept:?}");
    for h in [&hashes[0], &hashes[2], &hashes[3]] {
        assert!(kept.contains(h), "{h} kept: {kept:?}");
    }
    assert!(original.starts_with("certn@"));
    let data = switchyard::wasm::deploy::data_dir(&app.config);
    let files = |dir: &str| -> Vec<String> {
        std::fs::read_dir(data.join(dir))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let stored: Vec<String> = app
        .store
        .components()?
        .into_iter()
        .map(|c| c.hash)
        .collect();
    assert!(!stored.contains(&hashes[1]), "v2's stored bytes deleted");
    assert!(
        stored.contains(&hashes[0]),
        "the active version's bytes kept"
    );
    assert!(
        !files("cache").iter().any(|f| f.starts_with(&hashes[1])),
        "v2's compiled code deleted"
    );
    assert!(
        files("cache").iter().any(|f| f.starts_with(&hashes[3])),
        "v4's compiled code kept"
    );
    // Rollback still works: the previous version was kept.
    let (status, body) = admin.post("/admin/connectors/certn/rollback", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(())
}
