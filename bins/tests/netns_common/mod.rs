//! Shell-outs shared by the network-namespace tests (`ip netns …`, `kill`): real Linux
//! networking, so these tests need root, which CI has.
#![allow(dead_code, unreachable_pub)]

use std::process::Command;

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Fails the test unless we are root, saying why root is needed.
pub fn require_root() {
    assert!(
        is_root(),
        "network namespace tests need root (ip netns, AF_PACKET); CI runs them as root"
    );
}

/// Runs `args` and returns its stdout; a failure fails the test with the command's stderr.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `args`; its stdout if it succeeded.
pub fn run_quiet(args: &[&str]) -> Option<String> {
    let out = Command::new(args[0]).args(&args[1..]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The speakers' logs `<dir>/n1.log` … `n<nodes>.log`, each under a `--- nN ---` header, for
/// assertion messages.
pub fn node_logs(dir: &std::path::Path, nodes: usize) -> String {
    (1..=nodes)
        .map(|n| {
            let log = std::fs::read_to_string(dir.join(format!("n{n}.log"))).unwrap_or_default();
            format!("--- n{n} ---\n{log}")
        })
        .collect()
}
