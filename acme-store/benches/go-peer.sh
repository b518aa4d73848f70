#!/usr/bin/env bash
# Side-by-side: acme-store vs Traefik's own path (Go encoding/json with Traefik's store types)
# reading and re-writing the same N-certificate acme.json, measured in this run.
# Usage: acme-store/benches/go-peer.sh [N=10000] [ITERATIONS=10]
set -euo pipefail
n=${1:-10000}
iterations=${2:-10}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo build -q --release -p acme-store --example store_roundtrip
bin=${CARGO_TARGET_DIR:-$here/../../target}/release/examples/store_roundtrip
"$bin" gen "$tmp/acme.json" "$n"
echo "file: $n certificates, $(stat -c %s "$tmp/acme.json") bytes; mean of $iterations iterations"
ours=$("$bin" time "$tmp/acme.json" "$iterations")
(cd "$here/go" && GO111MODULE=off GOTOOLCHAIN=local go build -o "$tmp/peer" peer_roundtrip.go)
peer=$("$tmp/peer" "$tmp/acme.json" "$iterations")
printf '%-28s %12s %12s\n' implementation parse_ms write_ms
printf '%-28s %12s %12s\n' "acme-store (Rust)" "$(sed 's/.*parse_ms=\([^ ]*\).*/\1/' <<<"$ours")" "$(sed 's/.*write_ms=\([^ ]*\).*/\1/' <<<"$ours")"
printf '%-28s %12s %12s\n' "Traefik types (Go json)" "$(sed 's/.*parse_ms=\([^ ]*\).*/\1/' <<<"$peer")" "$(sed 's/.*write_ms=\([^ ]*\).*/\1/' <<<"$peer")"
