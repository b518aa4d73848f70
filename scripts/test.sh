#!/usr/bin/env bash
# The whole Fairway test suite, on a fresh Debian machine (run as root: it installs the system
# packages the tests use). CI runs exactly this; so can you.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fairway-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1
# Toolchains as installed on the project's machines (rustup, Go), in case the caller's PATH lacks them.
export PATH="$PATH:$HOME/.cargo/bin:/usr/local/go/bin"

# System packages the tests and benches drive for real: openssl s_client and curl (TLS and binary
# tests), Pebble (ACME), iproute2/ping/tcpdump (network-namespace VIP and k8s tests), nginx (test
# upstreams), Chromium + chromedriver (dashboard test), and the peers of the side-by-side benches.
PACKAGES=(openssl ca-certificates curl util-linux pebble iproute2 iputils-ping tcpdump procps
  nginx-light haproxy wrk nghttp2-client keepalived lego chromium chromium-driver)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: missing Debian packages (${missing[*]}); run as root or install them" >&2
    exit 2
  fi
  echo "== apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

step() { echo; echo "== $*"; }

# The k8s-glue tests start a real kube-apiserver and etcd, built once from pinned Go modules and
# cached by version outside the clone (~4 min the first time, instant afterwards).
step "kube-apiserver + etcd test binaries"
bash scripts/build-kube-testbin.sh

# Debian's Pebble 2.4.0 has no ACME Renewal Information; the ARI test runs a pinned newer Pebble,
# built the same way (cached by version, ~1 min the first time).
step "ARI-capable Pebble"
bash scripts/build-pebble.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "cargo package (library crates)"
# Each library crate must be publishable on its own: package and verify-build every one of them
# (cargo resolves their path dependencies on each other through a temporary local registry).
# Cargo treats a registry crate as immutable: it reuses both the unpacked sources of a verified
# name-version (`registry/src/-<hash>/`) and its compiled artifacts, so a rerun would verify
# against stale copies of our own crates. Clear both first (dependencies stay cached).
LIBS=(acme-store ingress-router tls-acceptor ingress-proxy vip-failover acme-issuer k8s-glue)
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/ "$CARGO_TARGET_DIR/package"
cargo clean -q "${LIBS[@]/#/--package=}"
cargo package --locked -q "${LIBS[@]/#/--package=}"

# Every parser of untrusted bytes has a cargo-fuzz target (fuzz/README.md); each runs briefly
# here, on its committed seeds plus new inputs (nightly; ~13 min cold, ~2 min warm).
step "fuzz (7 targets x ${FUZZ_SECONDS:-10} s)"
cargo +nightly --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"

echo
echo "== all checks passed"
