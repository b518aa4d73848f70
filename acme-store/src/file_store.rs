//! The `acme.json` file store: locked read-modify-write, atomic replacement, 0600, and a watch
//! that picks up other processes' changes (Traefik never re-reads, #8248).
//!
//! Every update takes an exclusive `flock` on `<file>.lock` beside the file (beside the target
//! when the store path is a symlink; a separate file, because the store
//! itself is replaced by `rename` and a lock on a replaced inode protects nothing), re-reads the
//! store under the lock, applies the change, writes a temporary file in the same directory,
//! fsyncs it, renames it over the store and fsyncs the directory. A crash at any moment leaves
//! either the old or the new complete file (#4451, #10984). Readers never take the lock.

use std::collections::hash_map::DefaultHasher;
use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::document::{AcmeDocument, Format};
use crate::error::Error;
use crate::snapshot::{Publisher, Snapshot};
use crate::store::{CertStore, UpdateFn};

/// How a [`FileStore`] treats its file.
#[derive(Clone, Debug)]
pub struct FileStoreOptions {
    /// Accept a store file readable or writable by group or others (e.g. a PVC with `fsGroup`
    /// giving 0660). Off by default, like Traefik.
    pub allow_insecure_permissions: bool,
    /// Watch the file and publish a snapshot when another process changes it.
    pub watch: bool,
    /// Use inotify (via `notify`) for prompt updates. Without it, or when it cannot be set up,
    /// only the metadata poll below notices changes.
    pub notify: bool,
    /// How often the watch also checks the file's metadata, in case inotify events are missed
    /// (network file systems, some container overlays). Costs one `stat` per interval.
    pub poll_interval: Duration,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            allow_insecure_permissions: false,
            watch: true,
            notify: true,
            poll_interval: Duration::from_secs(2),
        }
    }
}

/// Identity of the file content last seen, to skip re-reading unchanged files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    hash: u64,
}

struct Inner {
    path: PathBuf,
    options: FileStoreOptions,
    publisher: Publisher,
    /// Serialises updates and reloads inside this process (the flock serialises processes).
    state: Mutex<State>,
}

#[derive(Clone, Copy, Default)]
struct State {
    /// The file as last looked at (parsed or not).
    seen: Option<Seen>,
    /// `(len, hash)` of the bytes the published snapshot's document was read from or written as.
    published: Option<(u64, u64)>,
}

/// A [`CertStore`] over a Traefik-compatible `acme.json` file.
pub struct FileStore {
    inner: Arc<Inner>,
    watch: Option<Watch>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.inner.path)
            .field("watching", &self.watch.is_some())
            .finish()
    }
}

impl FileStore {
    /// Opens the store at `path`. A missing file is an empty store (it is created, 0600, on the
    /// first update); an empty file too. Corrupt JSON is an error naming line and column.
    pub fn open(path: impl Into<PathBuf>, options: FileStoreOptions) -> Result<Self, Error> {
        let path = path.into();
        let (doc, seen) = match read_file(&path, options.allow_insecure_permissions)? {
            Some((bytes, seen)) => (parse(&path, &bytes)?, Some(seen)),
            None => (AcmeDocument::default(), None),
        };
        let inner = Arc::new(Inner {
            path,
            publisher: Publisher::new(doc),
            state: Mutex::new(State {
                seen,
                published: seen.map(|s| (s.len, s.hash)),
            }),
            options,
        });
        let watch = if inner.options.watch {
            Some(Watch::start(&inner)?)
        } else {
            None
        };
        Ok(FileStore { inner, watch })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Re-reads the file now and publishes a snapshot if it changed. The watch does this on its
    /// own; this is for callers that want to be sure (tests, `SIGHUP` handlers).
    pub fn reload(&self) -> Result<Option<Arc<Snapshot>>, Error> {
        self.inner.reload()
    }
}

impl CertStore for FileStore {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.publisher.load()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.publisher.subscribe()
    }

    fn update(&self, f: &mut UpdateFn<'_>) -> Result<Arc<Snapshot>, Error> {
        self.inner.update(f)
    }
}

impl Inner {
    fn update(&self, f: &mut UpdateFn<'_>) -> Result<Arc<Snapshot>, Error> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let lock = lock_store(&self.path)?;

        // Re-read under the lock: another process may have written since we last looked.
        let current = read_file(&self.path, self.options.allow_insecure_permissions)?;
        let published = self.publisher.load();
        let mut doc = match &current {
            // Unchanged since we read or wrote it: skip parsing (the bulk of an update's cost).
            Some((_, seen)) if state.published == Some((seen.len, seen.hash)) => {
                AcmeDocument::clone(published.document())
            }
            Some((bytes, _)) => parse(&self.path, bytes)?,
            None => AcmeDocument::default(),
        };
        if doc.format == Format::Legacy {
            return Err(Error::ReadOnlyLegacy {
                path: self.path.clone(),
            });
        }
        let before = doc.clone();
        f(&mut doc)?;
        let current_seen = current.as_ref().map(|(_, s)| *s);
        let current_key = current_seen.map(|s| (s.len, s.hash));
        if doc == before {
            state.seen = current_seen;
            if current_key != state.published {
                // Another process changed the file and our watch has not caught up yet.
                state.published = current_key;
                return Ok(self.publisher.publish(doc));
            }
            return Ok(published);
        }
        let text = doc.to_json().map_err(|source| Error::Format {
            path: self.path.clone(),
            source,
        })?;
        let mode = match fs::metadata(&self.path) {
            Ok(m) if self.options.allow_insecure_permissions => m.permissions().mode() & 0o777,
            _ => 0o600,
        };
        remove_stale_temps(&resolve_symlinks(&self.path)?);
        write_atomic(&self.path, text.as_bytes(), mode)?;
        let seen = stat(&self.path, text.as_bytes())?;
        *state = State {
            seen: Some(seen),
            published: Some((seen.len, seen.hash)),
        };
        let snap = self.publisher.publish(doc);
        drop(lock);
        Ok(snap)
    }

    fn reload(&self) -> Result<Option<Arc<Snapshot>>, Error> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(seen), Ok(meta)) = (state.seen, fs::metadata(&self.path))
            && seen.dev == meta.dev()
            && seen.ino == meta.ino()
            && seen.len == meta.len()
            && seen.mtime_ns == mtime_ns(&meta)
        {
            return Ok(None);
        }
        let Some((bytes, seen)) = read_file(&self.path, self.options.allow_insecure_permissions)?
        else {
            // Deleted: keep serving what we have; the next update recreates the file.
            return Ok(None);
        };
        if bytes.is_empty() && state.published.is_some_and(|(len, _)| len > 0) {
            // Emptied, like deleted: most likely another program's non-atomic write (truncate,
            // then write; Traefik writes acme.json that way) caught half-way. Keep serving what
            // we have, and do not remember this state, so the finished write is read.
            return Ok(None);
        }
        // Remember the content even if it does not parse, so a corrupt file is reported once.
        state.seen = Some(seen);
        if state.published == Some((seen.len, seen.hash)) {
            return Ok(None);
        }
        let doc = parse(&self.path, &bytes)?;
        state.published = Some((seen.len, seen.hash));
        Ok(Some(self.publisher.publish(doc)))
    }
}

/// Takes the store's write lock: an exclusive `flock` on the lock file beside the file the store
/// path leads to. Symlinks are followed first (as the write does), so processes that reach the
/// same file by different paths (a symlink and its target, a re-pointed `..data` link) share one
/// lock rather than each locking a different file beside its own path.
fn lock_store(path: &Path) -> Result<File, Error> {
    lock_exclusive(&lock_path_for(&resolve_symlinks(path)?))
}

/// `<dir>/<name>.lock`: the lock file beside the store.
fn lock_path_for(path: &Path) -> PathBuf {
    let mut lock_name = path.file_name().unwrap_or_default().to_os_string();
    lock_name.push(".lock");
    path.with_file_name(lock_name)
}

/// Opens (creating, 0600) and exclusively `flock`s the lock file; unlocked when dropped.
fn lock_exclusive(lock_path: &Path) -> Result<File, Error> {
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(lock_path)
        .map_err(|e| Error::io(lock_path, "open lock file", e))?;
    lock.lock().map_err(|e| Error::io(lock_path, "lock", e))?;
    Ok(lock)
}

/// What [`FileStore::migrate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Migration {
    /// The file already was v2/v3 (or did not exist); nothing was written.
    AlreadyV2,
    /// The file was converted; the original bytes are in `backup`.
    Migrated {
        /// The generation it was in.
        from: Format,
        /// Where the original was saved (0600).
        backup: PathBuf,
    },
}

impl FileStore {
    /// Converts a v1 or legacy file to v2 in place, under the store lock, the way
    /// `traefik-migration-tool acme` does (see [`AcmeDocument::migrate_to_v2`]). The original is
    /// first saved as `<file>.v1.bak` / `<file>.legacy.bak` (a timestamp is appended if that
    /// exists already).
    pub fn migrate(
        path: &Path,
        resolver: &str,
        options: &FileStoreOptions,
    ) -> Result<Migration, Error> {
        let _lock = lock_store(path)?;
        let Some((bytes, _)) = read_file(path, options.allow_insecure_permissions)? else {
            return Ok(Migration::AlreadyV2);
        };
        let doc = parse(path, &bytes)?;
        let from = doc.format;
        let tag = match from {
            Format::V2 => return Ok(Migration::AlreadyV2),
            Format::V1 => "v1",
            Format::Legacy => "legacy",
        };
        let mut backup = PathBuf::from(format!("{}.{tag}.bak", path.display()));
        if backup.exists() {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            backup = PathBuf::from(format!("{}.{tag}.bak.{secs}", path.display()));
        }
        write_atomic(&backup, &bytes, 0o600)?;
        let text = doc
            .migrate_to_v2(resolver)
            .to_json()
            .map_err(|source| Error::Format {
                path: path.to_owned(),
                source,
            })?;
        write_atomic(path, text.as_bytes(), 0o600)?;
        Ok(Migration::Migrated { from, backup })
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<AcmeDocument, Error> {
    AcmeDocument::parse(bytes).map_err(|source| Error::Format {
        path: path.to_owned(),
        source,
    })
}

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn stat(path: &Path, bytes: &[u8]) -> Result<Seen, Error> {
    let meta = fs::metadata(path).map_err(|e| Error::io(path, "stat", e))?;
    Ok(Seen {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        mtime_ns: mtime_ns(&meta),
        hash: hash_bytes(bytes),
    })
}

/// Checks the mode of an existing store file: Traefik's rule (`perm & 0o077 != 0` is refused).
pub fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<(), Error> {
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Reads the file and its identity; `None` if it does not exist.
fn read_file(path: &Path, allow_insecure: bool) -> Result<Option<(Vec<u8>, Seen)>, Error> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, "open", e)),
    };
    let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
    if !allow_insecure {
        check_permissions(path, &meta)?;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| Error::io(path, "read", e))?;
    let seen = Seen {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        mtime_ns: mtime_ns(&meta),
        hash: hash_bytes(&bytes),
    };
    Ok(Some((bytes, seen)))
}

fn temp_prefix(path: &Path) -> String {
    format!(
        ".{}.tmp.",
        path.file_name().unwrap_or_default().to_string_lossy()
    )
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Removes temporary files left by writers that died mid-write. Called under the lock, when no
/// other writer can be between creating and renaming its temporary file.
fn remove_stale_temps(path: &Path) {
    let prefix = temp_prefix(path);
    if let Ok(dir) = fs::read_dir(parent_dir(path)) {
        for entry in dir.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Writes `bytes` to `path` atomically and durably: temp file in the same directory (created
/// with `mode`), fsync, rename over `path`, fsync the directory. If `path` is a symlink, its
/// target is replaced (as `os.WriteFile` would write through it) and the link is kept.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let resolved = resolve_symlinks(path)?;
    let path = resolved.as_path();
    let dir = parent_dir(path);
    let tmp = dir.join(format!(
        "{}{}.{}",
        temp_prefix(path),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, "create temporary file", e))?;
        // The umask may have masked bits off `mode`; an opted-in wider mode is set explicitly.
        if mode != 0o600 {
            f.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io(&tmp, "chmod", e))?;
        }
        f.write_all(bytes)
            .map_err(|e| Error::io(&tmp, "write", e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, "fsync", e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io(path, "rename temporary file into place", e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "fsync directory", e))
}

/// Follows `path` through symlinks (possibly dangling) to the file that should be replaced.
fn resolve_symlinks(path: &Path) -> Result<PathBuf, Error> {
    let mut current = path.to_owned();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let target =
                    fs::read_link(&current).map_err(|e| Error::io(&current, "read symlink", e))?;
                current = parent_dir(&current).join(target);
            }
            _ => return Ok(current),
        }
    }
    Err(Error::io(
        path,
        "resolve symlink",
        io::Error::other("too many levels of symbolic links"),
    ))
}

enum Msg {
    Changed,
}

/// The background watch: inotify (via `notify`) on the directory, plus a metadata poll.
struct Watch {
    watcher: Option<notify::RecommendedWatcher>,
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    fn start(inner: &Arc<Inner>) -> Result<Self, Error> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let watcher = if inner.options.notify {
            match start_notify(&inner.path, tx.clone()) {
                Ok(w) => Some(w),
                Err(message) => {
                    // E.g. the inotify watch limit is reached: polling still works.
                    tracing::warn!(path = %inner.path.display(), %message, "file watch unavailable; polling instead");
                    None
                }
            }
        } else {
            None
        };
        let path_for_error = inner.path.clone();
        let inner = Arc::clone(inner);
        let poll = inner.options.poll_interval;
        let thread = std::thread::Builder::new()
            .name("acme-store-watch".into())
            .spawn(move || {
                loop {
                    match rx.recv_timeout(poll) {
                        Ok(Msg::Changed) => {
                            // Coalesce a burst of events (create, write, rename) into one reload.
                            while let Ok(Msg::Changed) = rx.recv_timeout(Duration::from_millis(20)) {}
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    if let Err(e) = inner.reload() {
                        tracing::warn!(error = %e, "acme store changed on disk but cannot be loaded; keeping the previous certificates");
                    }
                }
            })
            .map_err(|e| Error::io(path_for_error, "spawn watch thread", e))?;
        Ok(Watch {
            watcher,
            tx: Some(tx),
            thread: Some(thread),
        })
    }
}

/// Watches the store's directory (the file itself is replaced by rename, so a watch on its inode
/// would go stale) and forwards events about the store file.
fn start_notify(path: &Path, tx: mpsc::Sender<Msg>) -> Result<notify::RecommendedWatcher, String> {
    use notify::Watcher as _;
    let file_name = path.file_name().map(|n| n.to_owned());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && ev
                .paths
                .iter()
                .any(|p| p.file_name() == file_name.as_deref())
        {
            let _ = tx.send(Msg::Changed);
        }
    })
    .map_err(|e| e.to_string())?;
    watcher
        .watch(parent_dir(path), notify::RecursiveMode::NonRecursive)
        .map_err(|e| e.to_string())?;
    Ok(watcher)
}

impl Drop for Watch {
    fn drop(&mut self) {
        // Dropping both senders disconnects the channel, which ends the thread.
        self.watcher.take();
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
