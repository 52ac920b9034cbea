//! The config file `switchyard_tests::serve` writes for `switchyard serve` children reads back
//! as the config it was written from, secrets included.

use switchyard::config::Config;
use switchyard_testkit::{CanditechSetup, Stack, StackOptions};

#[tokio::test]
async fn the_written_config_reads_back_as_the_same_config() {
    let data = switchyard_tests::scratch("config-toml");
    let mut opts = StackOptions::new(&data, &data);
    opts.justifacts = Some(Default::default());
    let mut canditech = CanditechSetup::new(Default::default());
    canditech.oauth = true;
    opts.canditech = Some(canditech);
    opts.extra = vec![("extra".into(), "misbehave".into(), "Stage".into())];
    let mut stack = Stack::prepare(opts).await.unwrap();
    stack.config.server.admin_token = Some(switchyard::config::Secret::new("admin"));
    let written = switchyard_tests::serve::config_toml(&stack.config);
    let read: Config = toml::from_str(&written).unwrap();
    // Debug hides secrets: compare them one by one.
    assert_eq!(format!("{read:?}"), format!("{:?}", stack.config));
    for (a, b) in read.integrations.iter().zip(&stack.config.integrations) {
        let secrets = |i: &switchyard::config::IntegrationConfig| {
            let mut s: Vec<String> = i.secrets.values().map(|v| v.expose().into()).collect();
            if let switchyard::config::AtsConfig::Lever(l) = &i.ats {
                s.push(l.signature_token.expose().into());
                s.extend(l.api_key.as_ref().map(|k| k.expose().to_string()));
            }
            s
        };
        assert_eq!(secrets(a), secrets(b), "{}", a.id);
    }
    assert_eq!(
        read.server.admin_token.map(|t| t.expose().to_string()),
        Some("admin".into())
    );
}
