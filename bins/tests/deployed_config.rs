//! The configuration shipped in `deploy/30-config.yaml` (its `fairway.toml` key) passes every
//! binary's `--check`, so a typo in the manifest fails CI rather than a rollout.

use std::path::Path;
use std::process::Command;

/// The `fairway.toml` of the ConfigMap, with the speaker's key file pointed at `key`.
fn deployed_toml(key: &Path) -> String {
    let yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/30-config.yaml"),
    )
    .unwrap();
    let (_, body) = yaml
        .split_once("fairway.toml: |\n")
        .expect("fairway.toml key");
    let toml: String = body
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    for section in [
        "[kubernetes]",
        "[acme]",
        "[speaker]",
        "[speaker.kubernetes]",
    ] {
        assert!(toml.contains(section), "{section} missing:\n{toml}");
    }
    toml.replace(
        "key_file = \"/etc/fairway-speaker/key\"",
        &format!("key_file = \"{}\"", key.display()),
    )
}

/// Runs `bin --check --config <deployed>` and returns its stdout.
fn check(bin: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "deployed-config-test-key-0123456789").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = dir.path().join("fairway.toml");
    std::fs::write(&path, deployed_toml(&key)).unwrap();
    let out = Command::new(bin)
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .env_remove("POD_NAMESPACE")
        .env("NODE_NAME", "node-a")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{bin}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn proxy_accepts_the_deployed_config() {
    check(env!("CARGO_BIN_EXE_fairway-proxy"));
}

#[test]
fn controller_accepts_the_deployed_config_in_kubernetes_mode() {
    let stdout = check(env!("CARGO_BIN_EXE_fairway-controller"));
    assert!(
        stdout
            .contains("kubernetes: Lease <pod namespace>/fairway-controller, 1 LoadBalancer pools"),
        "{stdout}"
    );
}

#[test]
fn speaker_accepts_the_deployed_config_in_kubernetes_mode() {
    let stdout = check(env!("CARGO_BIN_EXE_fairway-speaker"));
    assert!(
        stdout.contains("node node-a, members and VIPs from Kubernetes"),
        "{stdout}"
    );
}
