//! The file store: permissions, atomic locked updates, corruption handling, watching, and
//! multi-process safety (two writers; a writer SIGKILLed 200 times).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use acme_store::{
    AcmeDocument, CertStore, CertStoreExt, Error, FileStore, FileStoreOptions, Format, StoredCert,
};

fn no_watch() -> FileStoreOptions {
    FileStoreOptions {
        watch: false,
        ..FileStoreOptions::default()
    }
}

fn dummy(main: &str) -> StoredCert {
    StoredCert {
        certificate: Some("Q2VydGlmaWNhdGU=".into()),
        key: Some("Q2VydGlmaWNhdGUgS2V5".into()),
        store: "default".into(),
        domain: acme_store::Domain {
            main: main.into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn add(store: &FileStore, resolver: &str, main: &str) -> Result<(), Error> {
    store
        .modify(|doc| {
            doc.resolvers
                .entry(resolver.into())
                .or_default()
                .upsert(dummy(main));
            Ok(())
        })
        .map(|_| ())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn mains(path: &Path, resolver: &str) -> Vec<String> {
    let doc = AcmeDocument::parse(&std::fs::read(path).unwrap()).unwrap();
    doc.resolvers.get(resolver).map_or_else(Vec::new, |r| {
        r.certificates
            .iter()
            .map(|c| c.domain.main.clone())
            .collect()
    })
}

#[test]
fn missing_file_is_empty_and_created_0600_on_first_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.json");
    let store = FileStore::open(&path, no_watch()).unwrap();
    assert!(store.snapshot().document().resolvers.is_empty());
    assert!(!path.exists(), "opening alone does not create the file");
    add(&store, "le", "a.example.com").unwrap();
    assert_eq!(mode(&path), 0o600);
    assert!(dir.path().join("acme.json.lock").exists());
    assert_eq!(mains(&path, "le"), ["a.example.com"]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.ends_with('\n'));
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_symlinked_store_is_written_through_and_stays_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("data");
    std::fs::create_dir(&real_dir).unwrap();
    let real = real_dir.join("acme.json");
    let link = dir.path().join("acme.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let store = FileStore::open(&link, no_watch()).unwrap();
    add(&store, "le", "a.example.com").unwrap();
    add(&store, "le", "b.example.com").unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(mains(&real, "le"), ["a.example.com", "b.example.com"]);
    assert_eq!(mode(&real), 0o600);
    // The lock is beside the file itself, so writers reaching it through the link and through
    // its real path share one lock and never lose each other's updates.
    assert!(real_dir.join("acme.json.lock").exists());
    assert!(!dir.path().join("acme.json.lock").exists());
    let writers: Vec<_> = [link.clone(), real.clone(), link.clone(), real.clone()]
        .into_iter()
        .enumerate()
        .map(|(t, path)| {
            std::thread::spawn(move || {
                let store = FileStore::open(&path, no_watch()).unwrap();
                for i in 0..25 {
                    add(&store, "le", &format!("t{t}-{i}.example.com")).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(mains(&real, "le").len(), 102);
}

#[test]
fn group_readable_file_is_refused_unless_opted_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.json");
    std::fs::write(&path, "{}").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = FileStore::open(&path, no_watch()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::InsecurePermissions { mode: 0o640, .. }),
        "{msg}"
    );
    assert!(
        msg.contains(&path.display().to_string())
            && msg.contains("640")
            && msg.contains("chmod 600"),
        "{msg}"
    );

    let opts = FileStoreOptions {
        allow_insecure_permissions: true,
        ..no_watch()
    };
    let store = FileStore::open(&path, opts).unwrap();
    add(&store, "le", "a.example.com").unwrap();
    assert_eq!(mode(&path), 0o640, "an opted-in mode is kept");
}

#[test]
fn corrupt_file_is_reported_with_position_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.json");
    let corrupt = "{\n  \"le\": {\n    \"Account\": nul\n";
    std::fs::write(&path, corrupt).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let msg = FileStore::open(&path, no_watch()).unwrap_err().to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("line 3, column 16"),
        "{msg}"
    );

    // A store opened before the corruption refuses to update over it.
    std::fs::write(&path, "{}").unwrap();
    let store = FileStore::open(&path, no_watch()).unwrap();
    std::fs::write(&path, corrupt).unwrap();
    let err = add(&store, "le", "a.example.com").unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), corrupt);
}

#[test]
fn legacy_is_read_only_and_v1_stays_v1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.json");
    std::fs::write(
        &path,
        r#"{"Email": "a@b.c", "PrivateKey": null, "DomainsCertificate": {"Certs": []}}"#,
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store = FileStore::open(&path, no_watch()).unwrap();
    assert_eq!(store.snapshot().document().format, Format::Legacy);
    assert!(matches!(
        add(&store, "default", "x.com"),
        Err(Error::ReadOnlyLegacy { .. })
    ));

    std::fs::write(
        &path,
        r#"{"Account": null, "Certificates": null, "HTTPChallenges": null, "TLSChallenges": {}}"#,
    )
    .unwrap();
    let store = FileStore::open(&path, no_watch()).unwrap();
    add(&store, acme_store::V1_RESOLVER, "x.com").unwrap();
    let doc = AcmeDocument::parse(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc.format, Format::V1);
    assert!(
        add(&store, "le", "y.com").is_err(),
        "a v1 file has one resolver"
    );
}

#[test]
fn unchanged_update_does_not_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.json");
    let store = FileStore::open(&path, no_watch()).unwrap();
    add(&store, "le", "a.example.com").unwrap();
    let before = std::fs::metadata(&path).unwrap();
    let snap = store.modify(|_| Ok(())).unwrap();
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&before),
        std::os::unix::fs::MetadataExt::ino(&after)
    );
    assert_eq!(snap.generation(), store.snapshot().generation());
    // A failing closure changes nothing.
    let err = store
        .modify(|_| Err(Error::Rejected("no".into())))
        .unwrap_err();
    assert!(matches!(err, Error::Rejected(_)));
}

#[test]
fn updates_from_other_instances_are_merged_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.json");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = FileStore::open(&path, no_watch()).unwrap();
                for i in 0..25 {
                    add(&store, "le", &format!("t{t}-{i}.example.com")).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(mains(&path, "le").len(), 100);
}

/// Another program's non-atomic write (truncate, then write) seen half-way leaves an empty file:
/// the store keeps serving its certificates, and takes the finished write.
#[test]
fn an_emptied_file_keeps_the_certificates_until_the_write_finishes() {
    let certs = |snap: &acme_store::Snapshot| {
        snap.document()
            .resolvers
            .get("le")
            .map_or(0, |r| r.certificates.len())
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.json");
    let writer = FileStore::open(&path, no_watch()).unwrap();
    add(&writer, "le", "a.example.com").unwrap();
    let full = std::fs::read(&path).unwrap();
    let reader = FileStore::open(&path, no_watch()).unwrap();
    let before = reader.snapshot();
    assert_eq!(certs(&before), 1);
    // Truncated…
    std::fs::write(&path, "").unwrap();
    assert!(reader.reload().unwrap().is_none());
    assert_eq!(reader.snapshot().generation(), before.generation());
    assert_eq!(certs(&reader.snapshot()), 1);
    // …then written out again: the same content, nothing to publish.
    std::fs::write(&path, &full).unwrap();
    assert!(reader.reload().unwrap().is_none());
    assert_eq!(reader.snapshot().generation(), before.generation());
    // A real change after that is read.
    add(&writer, "le", "b.example.com").unwrap();
    let after = reader
        .reload()
        .unwrap()
        .expect("the finished write is read");
    assert_eq!(certs(&after), 2);
}

#[test]
fn watch_publishes_changes_made_by_another_writer() {
    watch_sees_change(true);
}

#[test]
fn polling_alone_also_sees_changes() {
    watch_sees_change(false);
}

fn watch_sees_change(notify: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.json");
    let opts = FileStoreOptions {
        notify,
        poll_interval: Duration::from_millis(200),
        ..FileStoreOptions::default()
    };
    let watched = FileStore::open(&path, opts).unwrap();
    let mut rx = watched.subscribe();
    let writer = FileStore::open(&path, no_watch()).unwrap();
    add(&writer, "le", "a.example.com").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let snap = rx.borrow_and_update().clone();
        if snap.document().resolvers.contains_key("le") {
            assert_eq!(watched.snapshot().generation(), snap.generation());
            break;
        }
        assert!(Instant::now() < deadline, "the watch never saw the change");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A corrupt external write keeps the last good snapshot.
    let good = watched.snapshot();
    let plain = FileStore::open(&path, no_watch()).unwrap();
    std::fs::write(&path, "{ nope").unwrap();
    let err = plain.reload().unwrap_err().to_string();
    assert!(err.contains("line 1, column 3"), "{err}");
    std::thread::sleep(Duration::from_millis(600)); // several poll intervals
    assert_eq!(watched.snapshot().generation(), good.generation());
    assert_eq!(plain.snapshot().generation(), 1);
}

// ---- child processes ----

const CHILD_FILE: &str = "ACME_STORE_TEST_CHILD_FILE";
const CHILD_PREFIX: &str = "ACME_STORE_TEST_CHILD_PREFIX";
const CHILD_COUNT: &str = "ACME_STORE_TEST_CHILD_COUNT";

/// Not a test on its own: the body of the child processes below. It adds entries one by one
/// and prints `ACK <name>` after each update returned success.
#[test]
#[ignore = "helper: run as a child process by the multi-process tests"]
fn child_writer() {
    let Ok(path) = std::env::var(CHILD_FILE) else {
        return;
    };
    let prefix = std::env::var(CHILD_PREFIX).unwrap();
    let count: usize = std::env::var(CHILD_COUNT).unwrap().parse().unwrap();
    let store = FileStore::open(&path, no_watch()).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        add(&store, "r", &name).unwrap();
        std::io::Write::write_all(&mut out, format!("ACK {name}\n").as_bytes()).unwrap();
        std::io::Write::flush(&mut out).unwrap();
    }
}

fn child(path: &Path, prefix: &str, count: usize) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_FILE, path)
        .env(CHILD_PREFIX, prefix)
        .env(CHILD_COUNT, count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn collect_acks(child: &mut std::process::Child) -> std::thread::JoinHandle<Vec<String>> {
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest may print "test child_writer ... " before the first line.
            .filter_map(|l| l.find("ACK ").map(|i| l[i + 4..].to_owned()))
            .collect()
    })
}

#[test]
fn two_processes_times_500_updates_leave_1000_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.json");
    let mut children: Vec<_> = ["p1", "p2"].iter().map(|p| child(&path, p, 500)).collect();
    let readers: Vec<_> = children.iter_mut().map(collect_acks).collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    let acks: usize = readers.into_iter().map(|r| r.join().unwrap().len()).sum();
    assert_eq!(acks, 1000);
    let names: HashSet<String> = mains(&path, "r").into_iter().collect();
    assert_eq!(names.len(), 1000);
    assert_eq!(mode(&path), 0o600);
}

/// xorshift64*: enough randomness for kill timing without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn sigkill_at_random_moments_never_loses_acknowledged_updates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.json");
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill-timing seed {seed}");
    let mut rng = Rng(seed);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let started = Instant::now();
    let mut kills = 0;
    for run in 0..200 {
        let mut c = child(&path, &format!("k{run}"), usize::MAX);
        // Forward the acknowledgements as they come, so the kill can wait for the first one:
        // every kill then lands inside the update loop (not during process start-up, where
        // there is nothing to lose), at a random point of some update.
        let stdout = c.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(i) = line.find("ACK ") {
                    let _ = tx.send(line[i + 4..].to_owned());
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("run {run}: the child never completed an update"));
        std::thread::sleep(Duration::from_micros(rng.next() % 25_000));
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        kills += 1;
        reader.join().unwrap();
        let mut acked_now = vec![first];
        acked_now.extend(rx.try_iter());
        acked.lock().unwrap().extend(acked_now);
        // After every kill: the file (if any) parses and holds every acknowledged update.
        if path.exists() {
            let present: HashSet<String> = mains(&path, "r").into_iter().collect();
            for name in acked.lock().unwrap().iter() {
                assert!(
                    present.contains(name),
                    "run {run}: acknowledged {name} is missing (seed {seed})"
                );
            }
        }
    }
    assert_eq!(kills, 200);
    assert_eq!(mode(&path), 0o600);
    eprintln!(
        "{} acknowledged updates survived 200 SIGKILLs in {:?}",
        acked.lock().unwrap().len(),
        started.elapsed()
    );
    assert!(
        !acked.lock().unwrap().is_empty(),
        "the children never completed an update"
    );
    // Stale temporary files of killed writers are cleaned by the next writer.
    let store = FileStore::open(&path, no_watch()).unwrap();
    add(&store, "r", "final").unwrap();
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp.")
        })
        .count();
    assert_eq!(leftovers, 0);
}
