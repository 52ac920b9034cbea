//! What `switchyard serve --config switchyard.example.toml` loads: the production connectors
//! only. The test and benchmark components (misbehave, hostile, twin, the rejection fixtures)
//! build into plugins/fixtures/target/, apart from the connectors directory.

#[test]
fn the_example_config_loads_only_the_production_connectors() {
    let root = switchyard_tests::root();
    let text = std::fs::read_to_string(root.join("switchyard.example.toml")).expect("the example");
    let config: toml::Table = toml::from_str(&text).expect("the example parses");
    let dir = config["runtime"]["connectors_dir"]
        .as_str()
        .expect("runtime.connectors_dir");
    let entries = std::fs::read_dir(root.join(dir)).expect("the connectors dir (scripts/setup.sh)");
    let mut loaded: Vec<String> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    loaded.sort();
    assert_eq!(loaded, ["canditech", "certn", "justifacts"]);
}
