#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd that the `k8s-testenv` tests start, from Go modules pinned in
# k8s-testenv/go/go.mod (k8s.io/kubernetes + one `replace` per staging module, go.etcd.io/etcd/server/v3).
#
# Output: ${FAIRWAY_KUBE_BIN:-$HOME/.cache/fairway-kube/bin}/{kube-apiserver-v$KUBE,etcd-v$ETCD}.
# The binaries are keyed by version and the build is skipped when both exist, so only the first run
# pays (~4 min on 2 cores, plus the module download). Needs Go >= the go directive in go.mod and the
# Go module proxy. Set FAIRWAY_KUBE_REBUILD=1 to force a rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSION=v1.34.4   # must match `k8s.io/kubernetes` in k8s-testenv/go/go.mod
ETCD_VERSION=v3.6.4    # must match `go.etcd.io/etcd/server/v3` in k8s-testenv/go/go.mod
BIN_DIR="${FAIRWAY_KUBE_BIN:-$HOME/.cache/fairway-kube/bin}"
APISERVER="$BIN_DIR/kube-apiserver-$KUBE_VERSION"
ETCD="$BIN_DIR/etcd-$ETCD_VERSION"
GO_DIR="$PWD/k8s-testenv/go"

for pin in "k8s.io/kubernetes $KUBE_VERSION" "go.etcd.io/etcd/server/v3 $ETCD_VERSION"; do
  if ! grep -q "^[[:space:]]*$pin\$" "$GO_DIR/go.mod"; then
    echo "build-kube-testbin.sh: $GO_DIR/go.mod does not pin '$pin'; update the versions in this script" >&2
    exit 2
  fi
done

if [ -x "$APISERVER" ] && [ -x "$ETCD" ] && [ "${FAIRWAY_KUBE_REBUILD:-0}" != 1 ]; then
  echo "build-kube-testbin.sh: cached $APISERVER and $ETCD"
  exit 0
fi

if ! command -v go >/dev/null; then
  echo "build-kube-testbin.sh: 'go' not found; install Go (see k8s-testenv/README.md)" >&2
  exit 2
fi

mkdir -p "$BIN_DIR"
cd "$GO_DIR"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
ver_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ver_flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ver_flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

build() { # build <output> <package> <ldflags...>
  local out="$1" pkg="$2"; shift 2
  echo "== go build $pkg -> $out"
  go build -trimpath -ldflags="-s -w $*" -o "$out.tmp" "$pkg"
  mv "$out.tmp" "$out"
}
[ -x "$ETCD" ] && [ "${FAIRWAY_KUBE_REBUILD:-0}" != 1 ] || \
  build "$ETCD" go.etcd.io/etcd/server/v3 "-X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION"
[ -x "$APISERVER" ] && [ "${FAIRWAY_KUBE_REBUILD:-0}" != 1 ] || \
  build "$APISERVER" k8s.io/kubernetes/cmd/kube-apiserver "$ver_flags"

"$APISERVER" --version
"$ETCD" --version | head -1
