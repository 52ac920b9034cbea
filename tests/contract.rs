//! Contract versions side by side: one host (bindings of 0.2.1) serves a connector built against
//! `switchyard:connector@0.1.0` (the `certn-v01` fixture) and one built against 0.2.0
//! (`misbehave`, from the frozen `wit/0.2.0/`, whose signed callbacks go through the host's
//! `crypto` import) for two integrations at once, over HTTP against the simulators; versions it does not serve and
//! components that need more than the sandbox grants are refused in plain words; a trap's
//! recorded reason carries the guest's own words.
//!
//! Needs the built plugins and fixtures (see plugins/README.md).

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use switchyard::wasm::connector::{CallError, ScreeningRequest};
use switchyard::wasm::registry::Registry;
use switchyard::wasm::runtime::{CallContext, Caps, InvokeError, Runtime};
use switchyard_testkit::{Stack, StackOptions, CERTN, TRIGGER};
use switchyard_tests::scratch;
use switchyard_tests::support_admin::{self, fixture, plugin};

const LONG: Duration = Duration::from_secs(40);
const SIGNED: &str = "signed";
const SIGNED_STAGE: &str = "Signed Stage";
const SECRET: &str = "misbehave-test-secret";

#[tokio::test(flavor = "multi_thread")]
async fn a_0_1_connector_and_a_0_2_connector_serve_two_integrations_at_once() {
    let data = scratch("contract-side-by-side");
    let dir = data.join("connectors");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("certn_v01.wasm"), fixture("certn_v01")).unwrap();
    std::fs::write(dir.join("misbehave.wasm"), plugin("misbehave")).unwrap();
    let mut opts = StackOptions::new(&dir, &data);
    opts.extra = vec![(SIGNED.into(), "misbehave".into(), SIGNED_STAGE.into())];
    let mut s = Stack::prepare(opts).await.unwrap();
    // The Certn integration runs on the 0.1.0 build; the other one on the 0.2.0 misbehave.
    for i in &mut s.config.integrations {
        if i.id == CERTN {
            i.connector = "certn-v01".into();
        }
        if i.id == SIGNED {
            i.secrets.insert(
                "webhook-secret".into(),
                switchyard::config::Secret::new(SECRET),
            );
        }
    }
    let s = s.run().await.unwrap();
    let registry = &s.host().app.registry;
    let contract = |id: &str| registry.versions(id).unwrap()[0].contract_version.clone();
    assert_eq!(contract("certn-v01"), "0.1.0");
    assert_eq!(contract("misbehave"), "0.2.0");

    // Both flows at once.
    let ada = s.candidate("Ada Lovelace", Some("ada@example.com"), &[], None);
    let grace = s.candidate("Grace Hopper", Some("grace@example.com"), &[], None);
    s.move_to(&ada, TRIGGER).await.unwrap();
    s.move_to(&grace, SIGNED_STAGE).await.unwrap();

    // 0.1: invitation through outbound-http, Certn's signed callbacks verified by the guest.
    let opp = s
        .wait_for(&ada, LONG, |o| {
            o.tags.contains(&"CERTN - Complete".to_string())
        })
        .await
        .unwrap();
    assert!(!opp.links.is_empty(), "the report link is written: {opp:?}");

    // 0.2: started, then a callback signed with the integration's secret, checked by the host's
    // crypto import on the guest's behalf.
    s.wait_for(&grace, LONG, |o| {
        o.tags.contains(&"MISBEHAVE - Pending".to_string())
    })
    .await
    .unwrap();
    let store = &s.host().app.store;
    let order = store.orders_of(SIGNED, &grace).unwrap().remove(0).order_ref;
    let url = format!("http://{}/hooks/{SIGNED}/vendor", s.addr);
    let http = reqwest::Client::new();
    let forged = http
        .post(&url)
        .header(
            "x-misbehave-signature",
            sign(b"another key", order.as_bytes()),
        )
        .body(order.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401, "a forged signature is refused");
    let signed = http
        .post(&url)
        .header(
            "x-misbehave-signature",
            sign(SECRET.as_bytes(), order.as_bytes()),
        )
        .body(order.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    assert_eq!(
        signed.text().await.unwrap(),
        hex::encode(Sha256::digest(order.as_bytes())),
        "the guest's crypto.sha256 + crypto.encode answer"
    );
    let opp = s
        .wait_for(&grace, LONG, |o| {
            o.tags.contains(&"MISBEHAVE - Complete".to_string())
        })
        .await
        .unwrap();
    assert!(
        !opp.tags.contains(&"MISBEHAVE - Pending".to_string()),
        "one status tag: {:?}",
        opp.tags
    );
    // The 0.1 side is untouched by the 0.2 side's callbacks.
    let ada_now = s.lever.opportunity(&ada).unwrap();
    assert!(ada_now.tags.iter().all(|t| !t.starts_with("MISBEHAVE")));
}

fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn registry(caps: Caps) -> Registry {
    Registry::new(Runtime::new(10_000, caps).unwrap())
}

#[tokio::test]
async fn versions_it_does_not_serve_are_refused_naming_what_it_serves() {
    let e = registry(Caps::default())
        .load(fixture("contract_v3"), "test")
        .await
        .err()
        .expect("0.3.0 is refused")
        .to_string();
    assert!(e.contains("incompatible contract version"), "{e}");
    assert!(e.contains("0.3.0"), "{e}");
    assert!(e.contains("0.1.* and 0.2.*"), "{e}");
}

#[tokio::test]
async fn a_served_version_whose_export_has_the_wrong_type_is_refused_naming_the_export() {
    // The fixture speaks 0.2.1, but its `start-screening` takes a string: refused at load, as a
    // contract mismatch naming the export, not first at a candidate's screening.
    let e = registry(Caps::default())
        .load(fixture("mistyped"), "test")
        .await
        .err()
        .expect("a mistyped start-screening is refused")
        .to_string();
    assert!(
        e.contains("does not fit the switchyard:connector contract"),
        "{e}"
    );
    assert!(e.contains("`start-screening` export"), "{e}");
    assert!(e.contains("expected `record` found `string`"), "{e}");
    assert!(!e.contains("trapped"), "{e}");
}

#[tokio::test]
async fn a_component_needing_more_than_the_caps_is_refused_naming_the_setting() {
    let e = registry(Caps::default())
        .load(fixture("hungry"), "test")
        .await
        .err()
        .expect("1024 MiB is above the default cap")
        .to_string();
    assert!(e.contains("1024 MiB"), "{e}");
    assert!(e.contains("256 MiB"), "{e}");
    assert!(e.contains("runtime.max_memory_mib"), "{e}");

    // Raising the setting admits it.
    let roomy = Caps {
        max_memory_mib: 2048,
        ..Caps::default()
    };
    let loaded = registry(roomy)
        .load(fixture("hungry"), "test")
        .await
        .unwrap();
    assert_eq!(loaded.grant.memory_mib, 1024);

    // Too few instances for a component (Rust components have 3 core instances).
    let tight = Caps {
        max_instances: 2,
        ..Caps::default()
    };
    let e = registry(tight)
        .load(plugin("misbehave"), "test")
        .await
        .err()
        .expect("3 core instances do not fit in 2")
        .to_string();
    assert!(e.contains("runtime.max_instances"), "{e}");
    assert!(e.contains("limit of 2"), "{e}");
}

#[tokio::test]
async fn a_trap_records_the_guests_own_words_and_the_trap() {
    let registry = registry(Caps::default());
    let loaded = registry.load(plugin("misbehave"), "test").await.unwrap();
    let request = ScreeningRequest {
        idempotency_key: "k1".into(),
        name: "trap".into(),
        emails: vec![],
        phones: vec![],
        opportunity_id: "o1".into(),
        opportunity_tags: vec![],
        posting_id: None,
        posting_name: None,
        posting_tags: vec![],
        stage: None,
        package: None,
    };
    let err = loaded
        .start_screening(
            registry.runtime(),
            Arc::new(CallContext::detached()),
            &request,
        )
        .await
        .expect_err("misbehave traps on `trap`");
    let CallError::Invoke(InvokeError::Trap(reason)) = &err else {
        panic!("not a trap: {err:?}");
    };
    assert!(reason.contains("misbehave: trap requested"), "{reason}");
    assert!(reason.contains("unreachable"), "the trap itself: {reason}");
    assert!(reason.len() < 24 * 1024, "bounded: {} bytes", reason.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_integration_whose_connector_did_not_load_is_not_ready_until_a_valid_version_arrives() {
    let data = scratch("contract-not-ready");
    let dir = data.join("connectors");
    std::fs::create_dir_all(&dir).unwrap();
    // `certn.wasm` is a component the host refuses (it asks for more memory than allowed).
    std::fs::write(dir.join("certn.wasm"), fixture("hungry")).unwrap();
    std::fs::write(dir.join("misbehave.wasm"), plugin("misbehave")).unwrap();
    let mut opts = StackOptions::new(&dir, &data);
    opts.extra = vec![("other".into(), "misbehave".into(), SIGNED_STAGE.into())];
    let mut s = Stack::prepare(opts).await.unwrap();
    s.config.server.admin_token = Some(switchyard::config::Secret::new(support_admin::TOKEN));
    // The stack approved its simulators already; the operator also approves Certn itself.
    s.config.runtime.approved_hosts.push("api.certn.co".into());
    let s = s.run().await.unwrap();
    let admin = support_admin::Admin::new(&s, Some(support_admin::TOKEN));

    let entry = |body: &serde_json::Value, id: &str| {
        body["integrations"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["id"] == id).cloned())
            .unwrap_or_else(|| panic!("no integration {id}: {body}"))
    };
    let (status, body) = admin.get("/admin/integrations").await;
    assert_eq!(status, 200, "{body}");
    let certn = entry(&body, CERTN);
    assert_eq!(certn["ready"], false, "{certn}");
    let reason = certn["not_ready_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("certn.wasm"), "names the file: {reason}");
    assert!(
        reason.contains("runtime.max_memory_mib"),
        "and why: {reason}"
    );
    assert_eq!(
        entry(&body, "other")["ready"],
        true,
        "the neighbour is ready"
    );

    // Its webhooks are refused (503) and nothing is stored that could only be dead-lettered.
    let ada = s.candidate("Ada Lovelace", Some("ada@example.com"), &[], None);
    assert_eq!(s.move_to(&ada, TRIGGER).await.unwrap(), 503);
    assert!(s.host().app.store.events(CERTN, 10).unwrap().is_empty());
    let callback = reqwest::Client::new()
        .post(format!("http://{}/hooks/{CERTN}/vendor", s.addr))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(callback.status(), 503);
    assert!(callback.headers().contains_key("retry-after"));
    assert!(callback.text().await.unwrap().contains("not ready"));

    // A valid version makes it ready, and its webhooks flow.
    let (status, body) = admin
        .post(
            "/admin/connectors/certn/versions?activate=true",
            Some(support_admin::Body::Bytes(plugin("certn"))),
        )
        .await;
    assert!(status.is_success(), "{status}: {body}");
    let (_, body) = admin.get("/admin/integrations").await;
    let certn = entry(&body, CERTN);
    assert_eq!(certn["ready"], true, "{certn}");
    assert!(certn["not_ready_reason"].is_null(), "{certn}");
    let grace = s.candidate("Grace Hopper", Some("grace@example.com"), &[], None);
    assert_eq!(s.move_to(&grace, TRIGGER).await.unwrap(), 200);
    s.wait_for(&grace, LONG, |o| {
        o.tags.contains(&"CERTN - Complete".to_string())
    })
    .await
    .unwrap();
}

/// The `switchyard` binary next to this test's executable (scripts/test.sh builds it).
fn binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .join("switchyard");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release --bins`",
        bin.display()
    );
    bin
}

#[test]
fn connector_inspect_and_validate_exit_non_zero_with_the_reason() {
    let dir = scratch("contract-inspect");
    let hungry = dir.join("hungry.wasm");
    std::fs::write(&hungry, fixture("hungry")).unwrap();
    let good = dir.join("misbehave.wasm");
    std::fs::write(&good, plugin("misbehave")).unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(binary())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) =
        run(&["connector".as_ref(), "inspect".as_ref(), hungry.as_os_str()]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("runtime.max_memory_mib"), "{stderr}");
    assert!(
        stdout.contains("\"problem\""),
        "the report is still printed: {stdout}"
    );

    let (code, stdout, stderr) = run(&["connector".as_ref(), "inspect".as_ref(), good.as_os_str()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("\"contract_version\": \"0.2.0\""),
        "{stdout}"
    );

    let (code, _, stderr) = run(&[
        "connector".as_ref(),
        "validate".as_ref(),
        hungry.as_os_str(),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("1024 MiB") && stderr.contains("runtime.max_memory_mib"),
        "{stderr}"
    );

    // With the operator's config raising the cap, it validates.
    let config = dir.join("switchyard.toml");
    std::fs::write(&config, "[runtime]\nmax_memory_mib = 2048\n").unwrap();
    let (code, stdout, stderr) = run(&[
        "connector".as_ref(),
        "validate".as_ref(),
        hungry.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("hungry@1.0.0"), "{stdout}");
}
