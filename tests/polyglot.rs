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

use serde_json::json;
use switchyard::wasm::harness;
use switchyard_tests::scratch;

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
