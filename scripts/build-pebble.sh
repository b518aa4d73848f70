#!/usr/bin/env bash
# Builds an ARI-capable Pebble (RFC 9773 `renewalInfo`, `replaces`) from its pinned Go module:
# Debian's pebble 2.4.0 predates ARI, so the acme-issuer ARI test and the acme-vs-lego bench use
# this one.
#
# Output: ${FAIRWAY_PEBBLE_DIR:-$HOME/.cache/fairway-pebble}/$VERSION/{pebble,pebble-challtestsrv}.
# Keyed by version and skipped when both exist (first build ~1 min plus the module download).
# Needs Go and the Go module proxy. FAIRWAY_PEBBLE_REBUILD=1 forces a rebuild.
set -euo pipefail

VERSION=v2.10.3   # also named in acme-issuer/tests/support/pebble.rs (ARI_PEBBLE_VERSION)
OUT="${FAIRWAY_PEBBLE_DIR:-$HOME/.cache/fairway-pebble}/$VERSION"

if [ -x "$OUT/pebble" ] && [ -x "$OUT/pebble-challtestsrv" ] && [ "${FAIRWAY_PEBBLE_REBUILD:-0}" != 1 ]; then
  echo "build-pebble.sh: cached $OUT/pebble and $OUT/pebble-challtestsrv"
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "build-pebble.sh: 'go' not found; install Go (the same one scripts/build-kube-testbin.sh uses)" >&2
  exit 2
fi
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== go install github.com/letsencrypt/pebble/v2/cmd/{pebble,pebble-challtestsrv}@$VERSION"
GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath \
  "github.com/letsencrypt/pebble/v2/cmd/pebble@$VERSION" \
  "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@$VERSION"
mv "$tmp/pebble" "$tmp/pebble-challtestsrv" "$OUT/"
echo "build-pebble.sh: built $OUT/pebble and $OUT/pebble-challtestsrv"
