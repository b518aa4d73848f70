//! `fairway acme ...`: inspect and edit a Traefik-compatible `acme.json`.
//!
//! Exit codes: 0 success, 1 a problem was found (check) or some entries were skipped (dump),
//! 2 bad usage or unreadable input. Errors are one line on stderr naming the file.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use acme_store::{
    CertEntry, CertStore, CertStoreExt, FileStore, FileStoreOptions, Migration, Snapshot,
    StoredCert, decode_base64,
};
use clap::{Args, Subcommand, ValueEnum};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Options shared by every `fairway acme` subcommand.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The `acme.json` file.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: PathBuf,
    /// Accept a store file that group or others may read (refused by default, like Traefik).
    #[arg(long)]
    pub allow_insecure_permissions: bool,
}

/// Output format of `fairway acme list`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns.
    #[default]
    Table,
    /// A JSON array of `{resolver, main, sans, not_after, issuer, key_type, store}`.
    Json,
}

/// `fairway acme` subcommands.
#[derive(Debug, Subcommand)]
pub enum AcmeCommand {
    /// List certificates, one row each.
    List {
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
        /// Only this resolver.
        #[arg(long)]
        resolver: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Write `DEST/certs/<main>.crt` (full chain) and `DEST/private/<main>.key` (0600), like
    /// traefik-certs-dumper.
    Dump {
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
        /// Destination directory.
        #[arg(long, value_name = "DIR")]
        dest: PathBuf,
    },
    /// Add or replace the certificate for the certificate's domain set (creates the file). The
    /// key is stored as PKCS#8.
    Import {
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
        /// Resolver to store it under.
        #[arg(long)]
        resolver: String,
        /// PEM certificate chain, leaf first.
        #[arg(long, value_name = "C.pem")]
        cert: PathBuf,
        /// PEM private key (PKCS#1, SEC1 or PKCS#8).
        #[arg(long, value_name = "K.pem")]
        key: PathBuf,
    },
    /// Exit 0 when every entry decodes, matches its key and is valid for `--warn-days` more days.
    Check {
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
        /// Report certificates expiring within this many days.
        #[arg(long, default_value_t = 30)]
        warn_days: u64,
    },
    /// Convert a Traefik v1 (or legacy) file to v2/v3, keeping a backup.
    Migrate {
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
        /// Name of the resolver the v1 content goes under.
        #[arg(long, default_value = acme_store::V1_RESOLVER)]
        resolver: String,
    },
}

/// A failure that ends the command with exit code 2: one line naming the file.
#[derive(Debug)]
struct Failure(String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<acme_store::Error> for Failure {
    fn from(e: acme_store::Error) -> Self {
        Failure(e.to_string())
    }
}

fn fail(path: &Path, what: impl fmt::Display) -> Failure {
    Failure(format!("{}: {what}", path.display()))
}

/// Runs a `fairway acme` subcommand.
pub fn run(cmd: AcmeCommand) -> ExitCode {
    let result = match cmd {
        AcmeCommand::List {
            store,
            resolver,
            output,
        } => list(&store, resolver.as_deref(), output),
        AcmeCommand::Dump { store, dest } => dump(&store, &dest),
        AcmeCommand::Import {
            store,
            resolver,
            cert,
            key,
        } => import(&store, &resolver, &cert, &key),
        AcmeCommand::Check { store, warn_days } => check(&store, warn_days, SystemTime::now()),
        AcmeCommand::Migrate { store, resolver } => migrate(&store, &resolver),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fairway acme: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// `what` on one line: control characters (a newline in a path, a resolver or domain name read
/// from the file) are shown escaped, so every error and every problem stays one line.
fn one_line(what: impl fmt::Display) -> String {
    let text = what.to_string();
    if !text.contains(char::is_control) {
        return text;
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn options(args: &StoreArgs) -> FileStoreOptions {
    FileStoreOptions {
        allow_insecure_permissions: args.allow_insecure_permissions,
        watch: false,
        ..FileStoreOptions::default()
    }
}

/// Loads an existing store (a missing file is an input error for the read-only commands).
fn load(args: &StoreArgs) -> Result<Arc<Snapshot>, Failure> {
    if !args.file.exists() {
        return Err(fail(&args.file, "no such file"));
    }
    Ok(FileStore::open(&args.file, options(args))?.snapshot())
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

fn list(
    args: &StoreArgs,
    resolver: Option<&str>,
    output: OutputFormat,
) -> Result<ExitCode, Failure> {
    let snap = load(args)?;
    let wanted = |r: &str| resolver.is_none_or(|w| w == r);
    let decoded: std::collections::HashMap<(&str, usize), &CertEntry> = snap
        .entries()
        .iter()
        .map(|e| ((e.resolver(), e.index()), e.as_ref()))
        .collect();
    let mut rows = Vec::new();
    // One row per stored certificate, in file order; undecodable ones have null details.
    for (name, data) in &snap.document().resolvers {
        if !wanted(name) {
            continue;
        }
        for (i, stored) in data.certificates.iter().enumerate() {
            rows.push(Row {
                resolver: name,
                stored,
                entry: decoded.get(&(name.as_str(), i)).copied(),
            });
        }
    }
    let mut out = std::io::stdout().lock();
    let text = match output {
        OutputFormat::Json => {
            let items: Vec<JsonRow<'_>> = rows.iter().map(Row::json).collect();
            serde_json::to_string_pretty(&items).unwrap_or_default() + "\n"
        }
        OutputFormat::Table => table(&rows),
    };
    let _ = out.write_all(text.as_bytes());
    for p in snap.problems().iter().filter(|p| wanted(&p.resolver)) {
        eprintln!(
            "fairway acme: {}",
            one_line(format_args!("{}: {p}", args.file.display()))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One element of `fairway acme list --output json`, fields in the documented order. The
/// decoded details are `null` for an entry that cannot be decoded.
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    resolver: &'a str,
    main: &'a str,
    sans: &'a [String],
    /// RFC 3339, UTC.
    not_after: Option<String>,
    issuer: Option<&'a str>,
    /// Traefik's `keyType` spelling: `EC256`, `RSA4096`, ...
    key_type: Option<String>,
    store: &'a str,
}

struct Row<'a> {
    resolver: &'a str,
    stored: &'a StoredCert,
    entry: Option<&'a CertEntry>,
}

impl<'a> Row<'a> {
    fn json(&self) -> JsonRow<'a> {
        JsonRow {
            resolver: self.resolver,
            main: &self.stored.domain.main,
            sans: &self.stored.domain.sans,
            not_after: self.entry.map(|e| rfc3339(e.not_after())),
            issuer: self.entry.map(CertEntry::issuer),
            key_type: self.entry.map(|e| e.key_type().to_string()),
            store: &self.stored.store,
        }
    }

    /// The table cells; names read from the file are escaped so each row stays one line.
    fn cells(&self) -> [String; 7] {
        let dash = || "-".to_owned();
        [
            one_line(self.resolver),
            one_line(&self.stored.domain.main),
            if self.stored.domain.sans.is_empty() {
                dash()
            } else {
                one_line(self.stored.domain.sans.join(","))
            },
            self.entry
                .map_or_else(|| "UNDECODABLE".into(), |e| rfc3339(e.not_after())),
            self.entry.map_or_else(dash, |e| e.issuer().to_owned()),
            self.entry.map_or_else(dash, |e| e.key_type().to_string()),
            one_line(&self.stored.store),
        ]
    }
}

fn table(rows: &[Row<'_>]) -> String {
    let header = [
        "RESOLVER",
        "MAIN",
        "SANS",
        "NOT_AFTER",
        "ISSUER",
        "KEY_TYPE",
        "STORE",
    ]
    .map(str::to_owned);
    let all: Vec<[String; 7]> = std::iter::once(header)
        .chain(rows.iter().map(Row::cells))
        .collect();
    let mut widths = [0usize; 7];
    for r in &all {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &all {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// File name for a domain: `*` (wildcards) and `/` cannot appear in it safely.
fn safe_name(main: &str) -> String {
    main.replace(['*', '/'], "_")
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Failure> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| fail(path, e))?;
    // An existing file keeps its old mode on open; set it explicitly.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| fail(path, e))?;
    f.write_all(bytes).map_err(|e| fail(path, e))
}

fn dump(args: &StoreArgs, dest: &Path) -> Result<ExitCode, Failure> {
    let snap = load(args)?;
    let certs = dest.join("certs");
    let private = dest.join("private");
    fs::create_dir_all(&certs).map_err(|e| fail(&certs, e))?;
    fs::create_dir_all(&private).map_err(|e| fail(&private, e))?;
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700))
        .map_err(|e| fail(&private, e))?;
    let mut skipped = 0;
    let mut written = 0;
    for (resolver, data) in &snap.document().resolvers {
        for (i, c) in data.certificates.iter().enumerate() {
            let decoded = c
                .certificate
                .as_deref()
                .zip(c.key.as_deref())
                .map(|(cert, key)| (decode_base64(cert), decode_base64(key)));
            let (Some((Ok(cert), Ok(key))), false) = (decoded, c.domain.main.is_empty()) else {
                eprintln!(
                    "fairway acme: {}",
                    one_line(format_args!(
                        "{}: resolver `{resolver}`, domain `{}` (certificate #{i}): skipped, certificate or key missing or not base64",
                        args.file.display(),
                        c.domain.main
                    ))
                );
                skipped += 1;
                continue;
            };
            let name = safe_name(&c.domain.main);
            write_file(&certs.join(format!("{name}.crt")), &cert, 0o644)?;
            write_file(&private.join(format!("{name}.key")), &key, 0o600)?;
            written += 1;
        }
    }
    for p in snap.problems() {
        eprintln!(
            "fairway acme: {}",
            one_line(format_args!("{}: {p}", args.file.display()))
        );
    }
    println!("dumped {written} certificate(s) to {}", dest.display());
    Ok(if skipped == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn import(args: &StoreArgs, resolver: &str, cert: &Path, key: &Path) -> Result<ExitCode, Failure> {
    let chain_pem = fs::read_to_string(cert).map_err(|e| fail(cert, e))?;
    let key_pem = fs::read_to_string(key).map_err(|e| fail(key, e))?;
    // Decode first: what goes into the store must be servable.
    let probe = StoredCert::from_pem("", &[], &chain_pem, &key_pem);
    let entry = CertEntry::decode(Arc::from(resolver), 0, &probe)
        .map_err(|kind| Failure(format!("{} / {}: {kind}", cert.display(), key.display())))?;
    let names = entry.names();
    let main = entry
        .common_name()
        .map(|cn| cn.to_ascii_lowercase())
        .filter(|cn| names.contains(cn))
        .or_else(|| names.first().cloned())
        .ok_or_else(|| fail(cert, "the certificate names no DNS name"))?;
    let sans: Vec<String> = names.iter().filter(|n| **n != main).cloned().collect();
    // Store PKCS#8, as lego v5 does; a PKCS#8 input is kept byte for byte.
    let key_pem = match entry.key().pem_label() {
        "PRIVATE KEY" => key_pem,
        _ => entry
            .key()
            .to_pkcs8_pem(entry.key_type())
            .unwrap_or(key_pem),
    };
    let stored = StoredCert::from_pem(&main, &sans, &chain_pem, &key_pem);
    let store = FileStore::open(&args.file, options(args))?;
    let mut replaced = false;
    store.modify(|doc| {
        replaced = doc
            .resolvers
            .entry(resolver.to_owned())
            .or_default()
            .upsert(stored.clone())
            .is_some();
        Ok(())
    })?;
    println!(
        "{} {main} in resolver `{resolver}` of {} (valid until {})",
        if replaced { "replaced" } else { "added" },
        args.file.display(),
        rfc3339(entry.not_after())
    );
    Ok(ExitCode::SUCCESS)
}

fn check(args: &StoreArgs, warn_days: u64, now: SystemTime) -> Result<ExitCode, Failure> {
    let snap = load(args)?;
    let file = one_line(args.file.display());
    let warn = Duration::from_secs(warn_days.saturating_mul(86_400));
    let mut problems = 0;
    for p in snap.problems() {
        println!("{file}: {}", one_line(p));
        problems += 1;
    }
    for e in snap.entries() {
        let label = one_line(format_args!(
            "resolver `{}`, domain `{}` (certificate #{})",
            e.resolver(),
            e.main(),
            e.index()
        ));
        if e.not_after() < now {
            println!("{file}: {label}: expired on {}", rfc3339(e.not_after()));
            problems += 1;
        } else if e.not_before() > now {
            println!(
                "{file}: {label}: not valid before {}",
                rfc3339(e.not_before())
            );
            problems += 1;
        } else if e.not_after() < now + warn {
            let days = e
                .not_after()
                .duration_since(now)
                .unwrap_or_default()
                .as_secs()
                / 86_400;
            println!(
                "{file}: {label}: expiring soon, in {days} day(s) on {}",
                rfc3339(e.not_after())
            );
            problems += 1;
        }
    }
    if problems == 0 {
        println!("{file}: {} certificate(s) OK", snap.entries().len());
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

fn migrate(args: &StoreArgs, resolver: &str) -> Result<ExitCode, Failure> {
    if !args.file.exists() {
        return Err(fail(&args.file, "no such file"));
    }
    match FileStore::migrate(&args.file, resolver, &options(args))? {
        Migration::AlreadyV2 => println!(
            "{}: already in the v2/v3 format; nothing to do",
            args.file.display()
        ),
        Migration::Migrated { from, backup } => println!(
            "{}: migrated from {from} to v2 (resolver `{resolver}`); backup at {}",
            args.file.display(),
            backup.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}
