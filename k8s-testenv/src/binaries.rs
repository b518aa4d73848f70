//! Where the pinned kube-apiserver and etcd binaries live.

use std::path::{Path, PathBuf};

use crate::Error;

/// The kube-apiserver version built by `scripts/build-kube-testbin.sh`.
pub const KUBE_VERSION: &str = "v1.34.4";
/// The etcd version built by `scripts/build-kube-testbin.sh`.
pub const ETCD_VERSION: &str = "v3.6.4";

/// Paths of the two binaries a control plane needs.
#[derive(Debug, Clone)]
pub struct KubeBinaries {
    /// `kube-apiserver-<version>`.
    pub apiserver: PathBuf,
    /// `etcd-<version>`.
    pub etcd: PathBuf,
}

impl KubeBinaries {
    /// Finds the binaries in `$FAIRWAY_KUBE_BIN`, else `$HOME/.cache/fairway-kube/bin` (the same
    /// default as the build script). Errors, naming the build script, when either is missing.
    pub fn locate() -> Result<Self, Error> {
        let dir = match std::env::var_os("FAIRWAY_KUBE_BIN") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| "/root".into());
                home.join(".cache/fairway-kube/bin")
            }
        };
        Self::in_dir(&dir)
    }

    /// The binaries in `dir`, checked to exist.
    pub fn in_dir(dir: &Path) -> Result<Self, Error> {
        let bins = KubeBinaries {
            apiserver: dir.join(format!("kube-apiserver-{KUBE_VERSION}")),
            etcd: dir.join(format!("etcd-{ETCD_VERSION}")),
        };
        for (what, path) in [("kube-apiserver", &bins.apiserver), ("etcd", &bins.etcd)] {
            if !path.is_file() {
                return Err(Error::MissingBinary {
                    what,
                    path: path.clone(),
                });
            }
        }
        Ok(bins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_the_build_script() {
        let dir = tempfile::tempdir().unwrap();
        let err = KubeBinaries::in_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("kube-apiserver-v1.34.4"), "{err}");
        assert!(err.contains("scripts/build-kube-testbin.sh"), "{err}");
    }
}
