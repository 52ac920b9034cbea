//! `switchyard serve` with `storage.url` (PostgreSQL): what an operator sees at start-up. The
//! store's behaviour on PostgreSQL is the store's own conformance suite (`host/src/store/`).

use std::process::{Command, Output};

use switchyard_tests::host_process::binary;

/// Runs `switchyard serve` on a config whose `[storage]` is `storage` and waits for it to exit
/// (it must: neither case below starts the server).
fn serve_with(storage: &str, env: &[(&str, &str)]) -> Output {
    let dir = switchyard_tests::scratch("pg-serve");
    let config = dir.join("switchyard.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\npath = {:?}\n{storage}\n",
        dir.join("data/switchyard.db")
    );
    std::fs::write(&config, text).expect("write config");
    let mut cmd = Command::new(binary());
    cmd.args(["serve", "--config"]).arg(&config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Bounded: a host that started anyway would be a failure, not a hang.
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn switchyard");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("switchyard serve kept running with an unusable storage.url");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn an_unreachable_postgres_is_named_without_its_password_and_serve_exits_non_zero() {
    // Port 1 on loopback: nothing listens there.
    let out = serve_with(
        "url = \"postgres://switchyard@127.0.0.1:1/switchyard\"\npassword = \"env:SY_TEST_PG_PASSWORD\"",
        &[("SY_TEST_PG_PASSWORD", "hunter2-do-not-print")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot reach PostgreSQL at postgres://switchyard@127.0.0.1:1/switchyard"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stderr.contains("hunter2") && !stdout.contains("hunter2"),
        "{stderr}{stdout}"
    );
}

#[tokio::test]
async fn a_reachable_postgres_is_migrated_and_served() {
    let url = switchyard_testkit::pg::database();
    let dir = switchyard_tests::scratch("pg-serve");
    let addr = switchyard_testkit::ports::free_loopback_addr().expect("a free port");
    let config = dir.join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n\n[storage]\npath = {:?}\nurl = {url:?}\n",
            dir.join("data/switchyard.db")
        ),
    )
    .expect("write config");
    let host = switchyard_tests::host_process::serve(&config, addr).await;
    let store = switchyard::store::Store::open_postgres(&url, None).expect("the database opens");
    assert_eq!(
        store.schema_version().expect("version"),
        switchyard::store::migrations::latest()
    );
    assert_eq!(
        store.live_runs().expect("runs").len(),
        1,
        "the host registered its run in PostgreSQL"
    );
    drop(host);
}
