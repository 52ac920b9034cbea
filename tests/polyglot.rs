//! Connectors written in Python (componentize-py) and JavaScript (componentize-js) run in the host
//! exactly like the Rust ones: Certn in Python and Justifacts in JavaScript, end to end over real
//! HTTP against the simulators (tags, links, notes at the Lever simulator); a Python call's
//! traceback reaches the event's recorded error; every template's and example's scenario passes
//! under `switchyard connector test`; `connector new` and `connector test` on the command line.
//!
//! The components are built by `scripts/toolchains.sh build` (scripts/test.sh runs it) into
//! `plugins/examples/target/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use switchyard::store::EventState;
use switchyard::wasm::harness;
use switchyard_sim::justifacts::{self, JustifactsOptions, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use switchyard_sim::lever::{NewOpportunity, Opportunity};
use switchyard_testkit::{Stack, CERTN, JUSTIFACTS, TRIGGER};
use switchyard_tests::{
    all_done, assert_result_in_secret_note_only, certn_tags, eventually, options, scratch,
};

const LONG: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `plugins/examples/target/<file>`, which must have been built.
fn built(file: &str) -> PathBuf {
    let path = root().join("plugins/examples/target").join(file);
    assert!(
        path.exists(),
        "{} missing: run `scripts/toolchains.sh build` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A stack whose connectors directory holds only `components` (copied from the examples), and
/// whose integrations are `keep`, each switched to the connector id given.
async fn polyglot_stack(
    name: &str,
    components: &[&str],
    keep: &[(&str, &str)],
    tweak: impl FnOnce(&mut switchyard_testkit::StackOptions),
) -> Stack {
    let mut opts = options(name, tweak);
    // In the data dir, which the stack owns (and removes).
    let dir = opts.data_dir.join("connectors-dir");
    std::fs::create_dir_all(&dir).expect("connectors dir");
    for c in components {
        std::fs::copy(built(c), dir.join(c)).expect("copy component");
    }
    opts.connectors_dir = dir.clone();
    opts.runtime.connectors_dir = dir;
    seed_code_cache(&opts.data_dir.join("cache"));
    let mut stack = Stack::prepare(opts).await.expect("simulators start");
    stack
        .config
        .integrations
        .retain(|i| keep.iter().any(|(id, _)| *id == i.id));
    for i in &mut stack.config.integrations {
        let (_, connector) = keep.iter().find(|(id, _)| *id == i.id).unwrap();
        i.connector = connector.to_string();
    }
    stack.run().await.expect("host starts")
}

/// Copies the compiled code `connector test` cached (scripts/toolchains.sh test fills it) into a
/// host's compiled-code cache: the harness's engine is configured as the runtime's, so the entries
/// fit and the host skips a multi-second compile of each Python/JavaScript component. Entries are
/// verified by digest before use; without them the host compiles, as on a fresh machine.
fn seed_code_cache(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(root().join("plugins/examples/target/compiled")) else {
        return;
    };
    std::fs::create_dir_all(dir).expect("cache dir");
    for e in entries.flatten() {
        let _ = std::fs::copy(e.path(), dir.join(e.file_name()));
    }
}

fn added(lever: &switchyard_sim::lever::LeverSim, label: &str) -> usize {
    lever
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/addTags") && r.body["tags"][0] == label)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn certn_in_python_goes_to_complete_with_one_tag_and_the_link_and_invites_once_when_the_answer_is_lost(
) {
    let s = polyglot_stack(
        "py-certn",
        &["certn_py.wasm"],
        &[(CERTN, "certn-py")],
        |o| {
            // The connector's vendor calls time out after 1 s: a slow invite answer is lost.
            o.runtime.http_timeout_ms = 1_000;
            o.certn.ignore_idempotency_keys = true;
        },
    )
    .await;

    // The happy path, as tests/spine.rs checks it for the Rust connector.
    let posting = s.lever.add_posting("Engineer", &["Engineering"]);
    let opp = s.candidate("Ada Lovelace", Some("ada@example.com"), &[], Some(&posting));
    assert_eq!(s.move_to(&opp, TRIGGER).await.unwrap(), 200);
    let done = s
        .wait_for(&opp, LONG, |o| {
            o.tags.contains(&"CERTN - Complete".to_string()) && !o.links.is_empty()
        })
        .await
        .unwrap();
    let apps = s.certn.applications();
    assert_eq!(apps.len(), 1, "exactly one invitation");
    assert_eq!(apps[0].applicant.email, "ada@example.com");
    assert_eq!(apps[0].package, "Basic", "the default package");
    assert_eq!(certn_tags(&done), vec!["CERTN - Complete"]);
    assert!(done.tags.contains(&"Engineering".to_string()));
    assert_eq!(done.links, vec![apps[0].report_url.clone().unwrap()]);
    for label in [
        "CERTN - Pending",
        "CERTN - Analyzing",
        "CERTN - Partial",
        "CERTN - Complete",
    ] {
        assert_eq!(added(&s.lever, label), 1, "{label} added exactly once");
    }
    // The last event's outcome is committed after its ATS write: wait for it.
    let events = all_done(&s, CERTN, LONG).await;
    assert!(events.iter().all(|e| e
        .connector_version
        .as_deref()
        .is_some_and(|v| v.starts_with("certn-py@"))));

    // Certn creates the application but answers after the connector gave up, and ignores
    // idempotency keys: the retry must find the application by our reference, not invite again.
    s.certn.set_latency(Duration::from_secs(3));
    let slow = s.candidate("Grace Hopper", Some("grace@example.com"), &[], None);
    assert_eq!(s.move_to(&slow, TRIGGER).await.unwrap(), 200);
    let done = s
        .wait_for(&slow, LONG, |o| {
            o.tags.contains(&"CERTN - Complete".to_string())
        })
        .await
        .unwrap();
    assert_eq!(certn_tags(&done), vec!["CERTN - Complete"]);
    assert_eq!(s.certn.invitations_for_email("grace@example.com"), 1);
    assert!(s.certn.emails_invited_more_than_once().is_empty());
    let events = s.host().app.store.events(CERTN, 50).unwrap();
    assert!(
        events.iter().any(|e| e.attempts > 1),
        "the lost answer made the first attempt fail: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn justifacts_in_javascript_completes_with_a_secret_note_refuses_forged_callbacks_and_notes_once(
) {
    let s = polyglot_stack(
        "js-justifacts",
        &["justifacts_js.wasm"],
        &[(JUSTIFACTS, "justifacts-js")],
        |o| {
            o.justifacts = Some(JustifactsOptions {
                step_delay: None,
                ..JustifactsOptions::default()
            })
        },
    )
    .await;
    let jf = s.justifacts.as_ref().unwrap();
    let candidate = |email: Option<&str>, posting_tags: &[&str]| {
        let posting = jf.lever.add_posting("Warehouse", posting_tags);
        jf.lever.add_opportunity(NewOpportunity {
            name: "Katherine Johnson".into(),
            emails: email.map(|e| vec![e.to_string()]).unwrap_or_default(),
            posting_id: Some(posting),
            ..NewOpportunity::default()
        })
    };
    let stage = jf.lever.stage_id(TRIGGER).unwrap();
    let jf_tags = |o: &Opportunity| -> Vec<String> {
        o.tags
            .iter()
            .filter(|t| t.starts_with("(Justifacts)"))
            .cloned()
            .collect()
    };
    let pending = "(Justifacts)In-Progress : Candidate";
    let complete = "(Justifacts)Complete";

    // No package tag: an error tag and a note saying what to fix, no order.
    let untagged = candidate(Some("u@example.com"), &["Warehouse"]);
    assert_eq!(
        jf.lever.move_to_stage(&untagged, &stage).await.unwrap(),
        200
    );
    let o = switchyard_testkit::wait_for(&jf.lever, &untagged, LONG, |o| !o.notes.is_empty())
        .await
        .unwrap();
    assert_eq!(jf_tags(&o), vec!["(Justifacts)ERROR (No Package Tag)"]);
    assert!(o.notes[0].value.contains("JUSTIFACTS BGC PKG"));
    assert_eq!(jf.sim.order_requests(), 0);

    let opp = candidate(
        Some("kj@example.com"),
        &["JUSTIFACTS BGC PKG: EmpCod[ID : 13558]"],
    );
    assert_eq!(jf.lever.move_to_stage(&opp, &stage).await.unwrap(), 200);
    switchyard_testkit::wait_for(&jf.lever, &opp, LONG, |o| {
        o.tags.contains(&pending.to_string())
    })
    .await
    .unwrap();
    let orders = jf.sim.order_list();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].package_code, "13558");
    let order = orders[0].order_id.clone();

    // A forged "Complete" signed with the wrong secret changes nothing.
    let body = json!({
        "event_id": "evt_forged", "event": "order.status_changed", "order_id": order, "reference": opp,
        "status": "Complete", "result": "Clear", "result_url": "https://evil.example/r",
        "occurred_at": "2026-11-23T00:00:00Z",
    })
    .to_string();
    let now = switchyard::clock::now_secs() as u64;
    let forged = reqwest::Client::new()
        .post(format!("http://{}/hooks/{JUSTIFACTS}/vendor", s.addr))
        .header(TIMESTAMP_HEADER, now.to_string())
        .header(
            SIGNATURE_HEADER,
            justifacts::sign("not-the-secret", now, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    jf.sim.advance(&order).await.unwrap();
    jf.sim.advance(&order).await.unwrap();
    let done = switchyard_testkit::wait_for(&jf.lever, &opp, LONG, |o| {
        o.tags.contains(&complete.to_string()) && !o.notes.is_empty()
    })
    .await
    .unwrap();
    assert_eq!(jf_tags(&done), vec![complete], "one status tag at a time");
    let url = jf.sim.order(&order).unwrap().result_url.unwrap();
    assert_result_in_secret_note_only(&done, &url);

    // Redelivered callbacks add no second note.
    assert_eq!(jf.sim.resend_last_callback(&order).await.unwrap(), 200);
    assert_eq!(jf.sim.resend_last_callback(&order).await.unwrap(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(jf.lever.opportunity(&opp).unwrap().notes.len(), 1);
    assert_eq!(added(&jf.lever, complete), 1);
    let events = s.host().app.store.events(JUSTIFACTS, 50).unwrap();
    assert!(events.iter().any(|e| e
        .connector_version
        .as_deref()
        .is_some_and(|v| v.starts_with("justifacts-js@"))));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_traceback_reaches_the_events_recorded_error() {
    // The Lever integration of the stack, served by a Python connector whose calls raise.
    let s = polyglot_stack(
        "py-broken",
        &["broken_py.wasm"],
        &[(CERTN, "broken-py")],
        |o| o.worker.max_attempts = 1,
    )
    .await;
    let opp = s.candidate("Ada Lovelace", Some("ada@example.com"), &[], None);
    assert_eq!(s.move_to(&opp, TRIGGER).await.unwrap(), 200);
    let store = &s.host().app.store;
    let dead = eventually("the event is dead-lettered", LONG, || {
        store
            .events(CERTN, 10)
            .ok()?
            .into_iter()
            .find(|e| e.state == EventState::Dead)
    })
    .await;
    let error = dead.last_error.unwrap_or_default();
    for part in [
        // What the author did and where, first; then the traceback itself.
        "imports module `switchyard_missing_module` inside a call (app.py, line 15, in _lazy_import)",
        "import it at the top of app.py",
        "Traceback",
        "ModuleNotFoundError",
        "switchyard_missing_module",
        "_lazy_import",
    ] {
        assert!(
            error.contains(part),
            "{part:?} not in the recorded error: {error}"
        );
    }
    assert!(error.len() <= 64 * 1024, "bounded: {} bytes", error.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thrown_js_error_and_a_js_build_with_wasi_http_are_explained_in_the_authors_terms() {
    let step = json!({
        "name": "start",
        "call": "start-screening",
        "request": { "idempotency-key": "lever:tok-1", "candidate": { "name": "Ada", "emails": ["a@example.com"] } },
        "expect": { "trap": true }
    });
    let dir = scratch("broken-js");
    let scenario = dir.join("scenario.json");
    std::fs::write(
        &scenario,
        json!({ "now": 1_700_000_000, "steps": [step] }).to_string(),
    )
    .unwrap();
    let opts = harness::Options {
        timeout_ms: 30_000,
        cache: cache(),
    };
    let report = harness::run(&built("broken_js.wasm"), &scenario, &opts)
        .await
        .expect("the component loads");
    let shown = report.render(false);
    assert!(report.passed(), "{shown}");
    for part in [
        "the JavaScript code threw an Error (\"the vendor said no\") from `startScreening`",
        "logic.js",
        "throw { tag: 'transient' | 'config' | 'rejected'",
    ] {
        assert!(shown.contains(part), "{part:?} not said:\n{shown}");
    }

    // Built without `--disable http`: refused at load, naming the flag.
    let refused = Command::new(switchyard_tests::host_process::binary())
        .args(["connector", "validate", "--cache"])
        .arg(cache().expect("a cache dir"))
        .arg(built("broken_js_http.wasm"))
        .output()
        .expect("run switchyard connector validate");
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--disable http fetch-event"), "{said}");
}

/// Every (component, scenario) the repository ships, built.
fn scenarios() -> Vec<(PathBuf, PathBuf)> {
    let ex = root().join("plugins/examples");
    let t = ex.join("target/templates");
    let mut all = vec![
        (built("certn_py.wasm"), ex.join("scenarios/certn-py.json")),
        (
            built("justifacts_js.wasm"),
            ex.join("scenarios/justifacts-js.json"),
        ),
        (
            built("template_python.wasm"),
            t.join("python/scenario.json"),
        ),
        (built("template_js.wasm"), t.join("js/scenario.json")),
    ];
    if root().join("plugins/sdk/Cargo.toml").exists() {
        all.push((built("template_rust.wasm"), t.join("rust/scenario.json")));
    } else {
        eprintln!("no plugins/sdk: the Rust template is not built, its scenario not run");
    }
    all
}

fn cache() -> Option<PathBuf> {
    Some(root().join("plugins/examples/target/compiled"))
}

#[test]
fn every_template_and_example_scenario_passes_under_connector_test() {
    let opts = harness::Options {
        cache: cache(),
        ..harness::Options::default()
    };
    for (wasm, scenario) in scenarios() {
        let report = harness::run_files(&wasm, &scenario, &opts).expect("usable");
        assert!(report.passed(), "{}", report.render(false));
        assert!(report.steps.len() > 5, "{}", report.render(false));
    }
}

#[test]
fn the_templates_pass_validate_as_created() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut files = vec!["template_python.wasm", "template_js.wasm"];
    if root().join("plugins/sdk/Cargo.toml").exists() {
        files.push("template_rust.wasm");
    }
    for file in files {
        let tag = runtime
            .block_on(switchyard::wasm::inspect::validate_with_cache(
                &built(file),
                Some("example-vendor"),
                &["api.example.com".to_string()],
                cache().as_deref(),
            ))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(tag.starts_with("example-vendor@0.1.0#"), "{tag}");
    }
}

/// `target.wasm32-wasip2.rustflags` of a cargo config file.
fn wasm_rustflags(config: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(config).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    let config: toml::Value =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    config["target"]["wasm32-wasip2"]["rustflags"]
        .as_array()
        .unwrap_or_else(|| panic!("no target.wasm32-wasip2.rustflags in {text}"))
        .iter()
        .map(|f| f.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_connector_created_from_the_rust_template_builds_with_our_connectors_settings() {
    // Our connectors and the template's build in CI both pick up the repository's root
    // `.cargo/config.toml`; an author's project, outside this repository, has only the one
    // `connector new` wrote. A drift between the two would go unnoticed by every other test.
    if !root().join("plugins/sdk/Cargo.toml").exists() {
        eprintln!("no plugins/sdk: the Rust template is not instantiated");
        return;
    }
    let ours = wasm_rustflags(&root().join(".cargo/config.toml"));
    let created =
        wasm_rustflags(&root().join("plugins/examples/target/templates/rust/.cargo/config.toml"));
    assert!(ours.iter().any(|f| f.contains("stack-size")), "{ours:?}");
    assert_eq!(created, ours);
}

/// The `switchyard` binary built beside this test (`cargo build --release --bins`).
fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("switchyard");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

fn run(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(binary()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn connector_test_exits_0_1_or_2_and_shows_what_differs() {
    let wasm = built("template_js.wasm");
    let good = root().join("plugins/examples/target/templates/js/scenario.json");
    let cache = cache().unwrap();
    let test = |scenario: &Path| {
        run(&[
            "connector".as_ref(),
            "test".as_ref(),
            wasm.as_os_str(),
            scenario.as_os_str(),
            "--cache".as_ref(),
            cache.as_os_str(),
        ])
    };
    let (code, out, err) = test(&good);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(" 0 failed"), "{out}");
    assert!(
        out.contains("http  POST https://api.example.com/invitations -> 201")
            && out.contains("state set order:lever:tok-1 = \"inv-1\"")
            && out.contains("status inv-1: pending \"Example Vendor - Pending\""),
        "the trace shows requests, state changes and statuses: {out}"
    );

    let dir = scratch("cli-test");
    let text = std::fs::read_to_string(&good).unwrap();
    let wrong = dir.join("wrong.json");
    std::fs::write(
        &wrong,
        text.replacen(
            "\"Example Vendor - Pending\"",
            "\"Example Vendor - Waiting\"",
            1,
        ),
    )
    .unwrap();
    let (code, out, _) = test(&wrong);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL invites with the idempotency key")
            && out.contains("result.status.label")
            && out.contains("- expected \"Example Vendor - Waiting\"")
            && out.contains("+ got      \"Example Vendor - Pending\""),
        "{out}"
    );
    assert!(out.contains(" 1 failed"), "{out}");

    // A request the scenario does not expect fails clearly.
    let unexpected = dir.join("unexpected.json");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let steps = v["steps"].as_array_mut().unwrap();
    let invite = steps
        .iter_mut()
        .find(|s| s["http"].as_array().is_some_and(|h| !h.is_empty()))
        .unwrap();
    invite["http"] = json!([]);
    std::fs::write(&unexpected, v.to_string()).unwrap();
    let (code, out, _) = test(&unexpected);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("a request not in the scenario"), "{out}");

    let typo = dir.join("typo.json");
    std::fs::write(
        &typo,
        r#"{ "steps": [ { "call": "list-packages", "expcet": {} } ] }"#,
    )
    .unwrap();
    let (code, _, err) = test(&typo);
    assert_eq!(code, 2);
    assert!(err.contains("unknown field `expcet`"), "{err}");
}

#[test]
fn connector_new_refuses_bad_names_and_non_empty_directories_and_fills_in_a_project() {
    let dir = scratch("cli-new");
    let (code, _, err) = run(&[
        "connector".as_ref(),
        "new".as_ref(),
        "Acme_Checks".as_ref(),
        "--lang".as_ref(),
        "js".as_ref(),
        "--dir".as_ref(),
        dir.join("x").as_os_str(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid connector name `Acme_Checks`"),
        "{err}"
    );
    assert!(!dir.join("x").exists(), "nothing written");

    let busy = dir.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "mine").unwrap();
    let (code, _, err) = run(&[
        "connector".as_ref(),
        "new".as_ref(),
        "acme-checks".as_ref(),
        "--lang".as_ref(),
        "python".as_ref(),
        "--dir".as_ref(),
        busy.as_os_str(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("is not an empty directory"), "{err}");
    assert_eq!(
        std::fs::read_dir(&busy).unwrap().count(),
        1,
        "nothing added"
    );

    let fresh = dir.join("acme");
    let (code, out, err) = run(&[
        "connector".as_ref(),
        "new".as_ref(),
        "acme-checks".as_ref(),
        "--lang".as_ref(),
        "js".as_ref(),
        "--dir".as_ref(),
        fresh.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("switchyard connector test"), "{out}");
    assert_eq!(
        std::fs::read_to_string(fresh.join("wit/connector.wit")).unwrap(),
        std::fs::read_to_string(root().join("wit/connector.wit")).unwrap(),
        "the served contract is copied"
    );
    let logic = std::fs::read_to_string(fresh.join("logic.js")).unwrap();
    assert!(logic.contains("id: 'acme-checks'") && logic.contains("Acme Checks - Pending"));
    for entry in walk(&fresh) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains("{{"),
            "placeholder left in {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
