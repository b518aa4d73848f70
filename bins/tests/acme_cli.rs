//! Integration tests of `fairway acme ...` against generated certificates.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair};
use time::{Duration, OffsetDateTime};

fn fairway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fairway"))
        .args(args)
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `name.crt` (leaf + CA) and `name.key` into `dir`; returns their paths.
fn material(
    dir: &Path,
    name: &str,
    dns: &[&str],
    rsa: bool,
    from: OffsetDateTime,
    until: OffsetDateTime,
) -> (PathBuf, PathBuf) {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Fairway CLI Test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = if rsa {
        KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap()
    } else {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
    };
    let mut params =
        CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, dns[0]);
    params.not_before = from;
    params.not_after = until;
    let leaf = params.signed_by(&key, &issuer).unwrap();
    let crt = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&crt, format!("{}{}", leaf.pem(), ca_cert.pem())).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (crt, k)
}

fn valid(dir: &Path, name: &str, dns: &[&str], rsa: bool) -> (PathBuf, PathBuf) {
    let now = OffsetDateTime::now_utc();
    material(
        dir,
        name,
        dns,
        rsa,
        now - Duration::days(1),
        now + Duration::days(80),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn import(file: &Path, resolver: &str, (crt, key): &(PathBuf, PathBuf)) -> Output {
    fairway(&[
        "acme",
        "import",
        "--file",
        s(file),
        "--resolver",
        resolver,
        "--cert",
        s(crt),
        "--key",
        s(key),
    ])
}

#[test]
fn import_creates_the_file_and_list_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.json");
    let a = valid(
        dir.path(),
        "a",
        &["a.example.com", "www.a.example.com"],
        false,
    );
    let o = import(&file, "le", &a);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let b = valid(dir.path(), "b", &["*.b.example.com"], true);
    assert_eq!(code(&import(&file, "other", &b)), 0);
    let before_replace = std::fs::read_to_string(&file).unwrap();

    let o = fairway(&["acme", "list", "--file", s(&file), "--output", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["resolver"], "le");
    assert_eq!(rows[0]["main"], "a.example.com");
    assert_eq!(rows[0]["sans"], serde_json::json!(["www.a.example.com"]));
    assert_eq!(rows[0]["key_type"], "EC256");
    assert_eq!(rows[0]["store"], "default");
    assert!(
        rows[0]["issuer"]
            .as_str()
            .unwrap()
            .contains("Fairway CLI Test CA")
    );
    let not_after = rows[0]["not_after"].as_str().unwrap();
    OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(rows[1]["main"], "*.b.example.com");
    assert_eq!(rows[1]["key_type"], "RSA2048");
    let keys: Vec<_> = rows[0].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys.len(), 7, "{keys:?}");
    // The fields come in the documented order.
    let text = stdout(&o);
    let first = &text[..text.find('}').unwrap()];
    let at = |k: &str| first.find(&format!("\"{k}\":")).unwrap_or(usize::MAX);
    let order = [
        "resolver",
        "main",
        "sans",
        "not_after",
        "issuer",
        "key_type",
        "store",
    ];
    assert!(
        order.windows(2).all(|w| at(w[0]) < at(w[1])),
        "field order: {first}"
    );
    assert!(not_after_is_utc(rows[0]["not_after"].as_str().unwrap()));

    let o = fairway(&["acme", "list", "--file", s(&file), "--resolver", "other"]);
    assert_eq!(code(&o), 0);
    assert!(
        stdout(&o).contains("*.b.example.com") && !stdout(&o).contains("a.example.com  "),
        "{}",
        stdout(&o)
    );

    // Re-importing the same domain set replaces it; the other resolver's bytes do not change.
    let a2 = valid(
        dir.path(),
        "a2",
        &["www.a.example.com", "a.example.com"],
        false,
    );
    let o = import(&file, "le", &a2);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("replaced"), "{}", stdout(&o));
    let after = std::fs::read_to_string(&file).unwrap();
    let other_part = |t: &str| t[t.find("\"other\"").unwrap()..].to_owned();
    assert_eq!(other_part(&after), other_part(&before_replace));
    let o = fairway(&["acme", "list", "--file", s(&file), "--output", "json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&o))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn import_refuses_a_key_that_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.json");
    let (crt, _) = valid(dir.path(), "a", &["a.example.com"], false);
    let (_, other_key) = valid(dir.path(), "b", &["b.example.com"], false);
    let o = import(&file, "le", &(crt, other_key));
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("a.crt") && err.contains("key mismatch"),
        "{err}"
    );
    assert!(!file.exists());
}

#[test]
fn check_names_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.json");
    let good = valid(dir.path(), "good", &["good.example.com"], false);
    assert_eq!(code(&import(&file, "le", &good)), 0);
    let o = fairway(&["acme", "check", "--file", s(&file)]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("1 certificate(s) OK"));

    let now = OffsetDateTime::now_utc();
    let soon = material(
        dir.path(),
        "soon",
        &["soon.example.com"],
        false,
        now - Duration::days(80),
        now + Duration::days(10),
    );
    let old = material(
        dir.path(),
        "old",
        &["old.example.com"],
        false,
        now - Duration::days(100),
        now - Duration::days(10),
    );
    assert_eq!(code(&import(&file, "le", &soon)), 0);
    assert_eq!(code(&import(&file, "le", &old)), 0);
    let o = fairway(&["acme", "check", "--file", s(&file)]);
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    assert!(
        out.contains("domain `soon.example.com`") && out.contains("expiring soon"),
        "{out}"
    );
    assert!(
        out.contains("domain `old.example.com`") && out.contains("expired on"),
        "{out}"
    );
    let o = fairway(&["acme", "check", "--file", s(&file), "--warn-days", "5"]);
    assert!(!stdout(&o).contains("expiring soon"), "{}", stdout(&o));

    // A swapped key and an undecodable entry, written by hand.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let certs = doc["le"]["Certificates"].as_array_mut().unwrap();
    let other_key = certs[1]["key"].clone();
    certs[0]["key"] = other_key;
    certs.push(serde_json::json!({"domain": {"main": "junk.example.com"}, "certificate": "Q2VydGlmaWNhdGU=", "key": "Q2VydGlmaWNhdGUgS2V5", "Store": "default"}));
    std::fs::write(&file, serde_json::to_string(&doc).unwrap()).unwrap();
    let o = fairway(&["acme", "check", "--file", s(&file)]);
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    assert!(
        out.contains("domain `good.example.com`") && out.contains("key mismatch"),
        "{out}"
    );
    assert!(
        out.contains("domain `junk.example.com`") && out.contains("undecodable"),
        "{out}"
    );
}

#[test]
fn dump_writes_the_certs_dumper_layout() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.json");
    let a = valid(dir.path(), "a", &["a.example.com"], false);
    let w = valid(dir.path(), "w", &["*.w.example.com"], false);
    assert_eq!(code(&import(&file, "le", &a)), 0);
    assert_eq!(code(&import(&file, "le", &w)), 0);
    let dest = dir.path().join("out");
    let o = fairway(&["acme", "dump", "--file", s(&file), "--dest", s(&dest)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let crt = dest.join("certs/a.example.com.crt");
    let key = dest.join("private/a.example.com.key");
    assert_eq!(std::fs::read(&crt).unwrap(), std::fs::read(&a.0).unwrap());
    assert_eq!(std::fs::read(&key).unwrap(), std::fs::read(&a.1).unwrap());
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(dest.join("certs/_.w.example.com.crt").exists());
}

fn fixture(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/acme-json")
        .join(name);
    if p.exists() {
        p
    } else {
        PathBuf::from("/work/shared/fixtures/acme-json").join(name)
    }
}

#[test]
fn migrate_converts_v1_like_the_migration_tool_and_keeps_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.json");
    let original = std::fs::read(fixture("migration-tool-v1.6-acme.json")).unwrap();
    std::fs::write(&file, &original).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = fairway(&[
        "acme",
        "migrate",
        "--file",
        s(&file),
        "--resolver",
        "myresolver",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let expected = std::fs::read(fixture("migration-tool-v2-new-acme.json")).unwrap();
    assert_eq!(
        std::fs::read(&file).unwrap(),
        expected.strip_suffix(b"\n").unwrap_or(&expected)
    );
    let backup = dir.path().join("acme.json.v1.bak");
    assert_eq!(std::fs::read(&backup).unwrap(), original);
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Running it again is a no-op.
    let o = fairway(&["acme", "migrate", "--file", s(&file)]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("already"), "{}", stdout(&o));
}

#[test]
fn bad_input_exits_2_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.json");

    let o = fairway(&["acme", "list", "--file", s(&file)]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains(s(&file)) && stderr(&o).contains("no such file"),
        "{}",
        stderr(&o)
    );

    std::fs::write(&file, "{\n  \"le\": {\n    \"Account\": nul\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = fairway(&["acme", "check", "--file", s(&file)]);
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(s(&file)) && err.contains("line 3, column 16"),
        "{err}"
    );

    std::fs::write(&file, "{}").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = fairway(&["acme", "list", "--file", s(&file)]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("644") && stderr(&o).contains("chmod 600"),
        "{}",
        stderr(&o)
    );
    let o = fairway(&[
        "acme",
        "list",
        "--file",
        s(&file),
        "--allow-insecure-permissions",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    let o = fairway(&["acme", "import", "--file", s(&file)]);
    assert_eq!(code(&o), 2, "missing arguments are bad usage");
}

#[test]
fn legacy_fixture_lists_its_real_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.json");
    std::fs::copy(fixture("traefik-v1.7-legacy-acme_example.json"), &file).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = fairway(&["acme", "list", "--file", s(&file), "--output", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rows[0]["main"], "local1.com");
    assert!(
        rows[0]["issuer"]
            .as_str()
            .unwrap()
            .contains("h2ppy h2cker fake CA")
    );
}

/// The `privateKey` OCTET STRING of a PKCS#8 DER key: the SEC1 (EC) or PKCS#1 (RSA) key.
fn pkcs8_inner(der: &[u8]) -> Vec<u8> {
    fn tlv(d: &[u8]) -> (&[u8], &[u8]) {
        let (len, hdr) = if d[1] < 0x80 {
            (d[1] as usize, 2)
        } else {
            let n = (d[1] & 0x7f) as usize;
            (
                d[2..2 + n]
                    .iter()
                    .fold(0usize, |a, b| (a << 8) | *b as usize),
                2 + n,
            )
        };
        (&d[hdr..hdr + len], &d[hdr + len..])
    }
    let (seq, _) = tlv(der);
    let (_, rest) = tlv(seq); // version
    let (_, rest) = tlv(rest); // algorithm
    tlv(rest).0.to_vec()
}

#[test]
fn import_stores_a_sec1_key_as_pkcs8() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.json");
    let (crt, key) = valid(dir.path(), "a", &["a.example.com"], false);
    let pkcs8 = std::fs::read_to_string(&key).unwrap();
    let b64: String = pkcs8.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let sec1 = base64::engine::general_purpose::STANDARD.encode(pkcs8_inner(&der));
    let sec1_path = dir.path().join("sec1.key");
    std::fs::write(
        &sec1_path,
        format!("-----BEGIN EC PRIVATE KEY-----\n{sec1}\n-----END EC PRIVATE KEY-----\n"),
    )
    .unwrap();
    let o = import(&file, "le", &(crt, sec1_path));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = fairway(&["acme", "check", "--file", s(&file)]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let dest = dir.path().join("out");
    assert_eq!(
        code(&fairway(&[
            "acme",
            "dump",
            "--file",
            s(&file),
            "--dest",
            s(&dest)
        ])),
        0
    );
    let dumped = std::fs::read_to_string(dest.join("private/a.example.com.key")).unwrap();
    assert!(
        dumped.starts_with("-----BEGIN PRIVATE KEY-----"),
        "{dumped}"
    );
}

#[test]
fn usage_errors_are_one_line_and_exit_2_help_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.json");
    let cases: [&[&str]; 5] = [
        &["acme", "import", "--file", s(&file)],
        &["acme", "check", "--file", s(&file), "--warn-days", "soon"],
        &["acme", "list", "--file", s(&file), "--output", "yaml"],
        &["acme", "lst", "--file", s(&file)],
        &["acme"],
    ];
    for args in cases {
        let o = fairway(args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("fairway: "), "{args:?}: {err}");
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
    let err = stderr(&fairway(cases[0]));
    assert!(
        err.contains("--resolver") && err.contains("--cert") && err.contains("--key"),
        "names what is missing: {err}"
    );
    assert!(err.contains("usage: fairway acme import"), "{err}");
    assert!(stderr(&fairway(cases[1])).contains("'soon'"));
    assert!(stderr(&fairway(cases[2])).contains("'yaml'"));

    let o = fairway(&["acme", "list", "--help"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("--output"), "{}", stdout(&o));
    assert_eq!(code(&fairway(&["--version"])), 0);
}

/// Names read from the file (resolver, domain) can hold control characters; every problem is
/// still one line, and undecodable rows are listed with null details.
#[test]
fn problems_stay_one_line_each_and_undecodable_rows_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.json");
    std::fs::write(
        &file,
        r#"{"le\nx": {"Account": null, "Certificates": [
            {"domain": {"main": "evil\nname.example.com"}, "certificate": "Q2VydGlmaWNhdGU=", "key": "Q2VydGlmaWNhdGUgS2V5", "Store": "default"},
            {"domain": {"main": "nokey.example.com"}, "certificate": "Q2VydGlmaWNhdGU=", "Store": "default"}]}}"#,
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let o = fairway(&["acme", "check", "--file", s(&file)]);
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains(r"resolver `le\nx`, domain `evil\nname.example.com`")
            && out.contains("undecodable"),
        "{out}"
    );
    assert!(
        out.contains("domain `nokey.example.com`") && out.contains("undecodable: no key"),
        "{out}"
    );

    let o = fairway(&["acme", "list", "--file", s(&file)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let table = stdout(&o);
    assert_eq!(table.lines().count(), 3, "header and two rows: {table}");
    assert!(table.contains(r"evil\nname.example.com"), "{table}");

    let o = fairway(&["acme", "list", "--file", s(&file), "--output", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 2, "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["resolver"], "le\nx");
    assert_eq!(rows[0]["main"], "evil\nname.example.com");
    assert_eq!(rows[0]["sans"], serde_json::json!([]));
    for field in ["not_after", "issuer", "key_type"] {
        assert!(rows[0][field].is_null(), "{field}: {}", rows[0]);
    }
    assert_eq!(rows[0]["store"], "default");

    // dump writes what it can and exits 1 for the entry it had to skip.
    let dest = dir.path().join("out");
    let o = fairway(&["acme", "dump", "--file", s(&file), "--dest", s(&dest)]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("domain `nokey.example.com`") && stderr(&o).contains("skipped"),
        "{}",
        stderr(&o)
    );
    assert!(!dest.join("certs/nokey.example.com.crt").exists());
}

#[test]
fn migrate_converts_the_legacy_fixture_with_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.json");
    let original = std::fs::read(fixture("traefik-v1.7-legacy-acme_example.json")).unwrap();
    std::fs::write(&file, &original).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Legacy files are read-only: import refuses and points at migrate.
    let a = valid(dir.path(), "a", &["a.example.com"], false);
    let o = import(&file, "default", &a);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("fairway acme migrate"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&file).unwrap(), original);

    let o = fairway(&["acme", "migrate", "--file", s(&file), "--resolver", "le"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        std::fs::read(dir.path().join("acme.json.legacy.bak")).unwrap(),
        original
    );
    let o = fairway(&["acme", "list", "--file", s(&file), "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rows[0]["resolver"], "le");
    assert_eq!(rows[0]["main"], "local1.com");
    assert_eq!(rows[0]["store"], "default");
    // Now v2: import works and keeps the migrated certificate.
    assert_eq!(code(&import(&file, "le", &a)), 0);
    let o = fairway(&["acme", "list", "--file", s(&file), "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
}

/// `fairway acme list` writes UTC timestamps: `…Z`.
fn not_after_is_utc(t: &str) -> bool {
    t.ends_with('Z') && t.len() == "2026-01-01T00:00:00Z".len()
}
