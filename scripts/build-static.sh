#!/usr/bin/env bash
# Static (musl, static-pie) release builds of fairway, fairway-proxy, fairway-controller and
# fairway-speaker, stripped, copied into OUT_DIR. The Dockerfile's build stage runs exactly this;
# on a Debian host it needs `musl-tools cmake clang` and `rustup target add x86_64-unknown-linux-musl`.
#
#   scripts/build-static.sh OUT_DIR
set -euo pipefail

OUT=${1:?usage: scripts/build-static.sh OUT_DIR}
TARGET=x86_64-unknown-linux-musl
ROOT=$(cd "$(dirname "$0")/.." && pwd)

# aws-lc-rs (rustls' provider) compiles its C code with musl-gcc.
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}
export RUSTFLAGS="-C target-feature=+crt-static"
# The image ships no debug info (the workspace's release profile keeps it for perf).
export CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols
# Its own target dir: other RUSTFLAGS would otherwise rebuild the host build's dependencies.
export CARGO_TARGET_DIR=${STATIC_TARGET_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/fairway-target}-static}

cargo build --release --locked --target "$TARGET" -p bins --manifest-path "$ROOT/Cargo.toml"
mkdir -p "$OUT"
for b in fairway fairway-proxy fairway-controller fairway-speaker; do
    cp "$CARGO_TARGET_DIR/$TARGET/release/$b" "$OUT/"
done
ls -l "$OUT"
