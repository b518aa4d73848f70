#!/usr/bin/env bash
# User-space instructions per proxied HTTP/1.1 request: fairway-proxy vs HAProxy (and nginx),
# counted by valgrind's callgrind in the same run. Unlike req/s on a shared VM, the count does
# not move with the neighbours' load, so a change of a few per cent in the proxy's own work is
# visible; the kernel's part (the same 2 receives + 2 sends per request for all three, see
# `strace -c`) is not counted.
#
# Set-up (all on 127.0.0.1): backend nginx (1 worker, `return 200`, 13-byte body); each proxy
# with one worker/thread, upstream keep-alive, access logs off; client h2load --h1 -c16.
# Per proxy: start under callgrind, $WARMUP requests, zero the counters, $N requests, dump;
# instructions per request = dumped total / N (startup and warm-up excluded).
#
# Usage: benches/scripts/proxy-instructions.sh
#   env: N=20000 WARMUP=2000 PROXIES="fairway haproxy nginx" FAIRWAY_BIN=<release build>
# Needs: valgrind, nginx, haproxy, h2load (nghttp2-client), cargo.
set -euo pipefail

N=${N:-20000}
WARMUP=${WARMUP:-2000}
PROXIES=${PROXIES:-fairway haproxy nginx}
BASE_PORT=${BASE_PORT:-19500}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/fairway-target}

for tool in valgrind callgrind_control nginx haproxy h2load cargo; do
    command -v "$tool" >/dev/null || { echo "proxy-instructions: $tool not found" >&2; exit 2; }
done
if [ -z "${FAIRWAY_BIN:-}" ]; then
    echo "building fairway-proxy (release)..." >&2
    cargo build --quiet --release -p bins --bin fairway-proxy --manifest-path "$ROOT/Cargo.toml"
    FAIRWAY_BIN="$CARGO_TARGET_DIR/release/fairway-proxy"
fi

BACKEND=$BASE_PORT
declare -A PORT=([fairway]=$((BASE_PORT + 1)) [haproxy]=$((BASE_PORT + 2)) [nginx]=$((BASE_PORT + 3)))
source "$(dirname "$0")/common.sh"
bench_workdir proxy-instructions

nginx_conf "$WORK/backend" "
  server {
    listen 127.0.0.1:$BACKEND;
    location / { default_type text/plain; return 200 \"Hello, world\n\"; }
  }"
nginx_conf "$WORK/nginx" "
  upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; }
  server {
    listen 127.0.0.1:${PORT[nginx]};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }" "master_process off;"
cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 30s
  http-reuse always
frontend h1
  bind 127.0.0.1:${PORT[haproxy]}
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND
CONF
cat > "$WORK/fairway.toml" <<CONF
[entrypoints.web]
address = "127.0.0.1:${PORT[fairway]}"
[routers.all]
rule = "PathPrefix(\`/\`)"
service = "backend"
[services.backend]
[[services.backend.endpoints]]
url = "http://127.0.0.1:$BACKEND"
CONF


nginx -c "$WORK/backend/nginx.conf" -p "$WORK/backend" & PIDS+=($!)
wait_port "$BACKEND"

declare -A IR
for p in $PROXIES; do
    out="$WORK/callgrind.$p"
    case $p in
        fairway) cmd=("$FAIRWAY_BIN" --config "$WORK/fairway.toml" --workers 1) ;;
        haproxy) cmd=(haproxy -f "$WORK/haproxy.cfg" -db) ;;
        nginx)   cmd=(nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx") ;;
        *) echo "proxy-instructions: unknown proxy $p" >&2; exit 2 ;;
    esac
    FAIRWAY_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out.%p" "${cmd[@]}" \
        >/dev/null 2>"$WORK/$p.valgrind.log" &
    vpid=$!; PIDS+=("$vpid")
    wait_port "${PORT[$p]}" 600
    h2load --h1 -n "$WARMUP" -c 16 "http://127.0.0.1:${PORT[$p]}/" >/dev/null
    callgrind_control -z "$vpid" >/dev/null 2>&1
    done_line=$(h2load --h1 -n "$N" -c 16 "http://127.0.0.1:${PORT[$p]}/" | grep '^requests:')
    ok=$(awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "succeeded,") print $i }' <<<"$done_line")
    [ "$ok" = "$N" ] || { echo "proxy-instructions: $p: $done_line" >&2; exit 1; }
    callgrind_control -d "$vpid" >/dev/null 2>&1
    # The dump is complete when callgrind_control returns; no clean exit is needed (HAProxy
    # under valgrind does not finish its soft stop).
    kill -KILL "$vpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    # The dump taken after zeroing is the file with the `.1` suffix.
    total=$(awk '/^summary:/ { print $2; exit }' "$out".*.1)
    IR[$p]=$(( total / N ))
    echo "  $p done" >&2
done

echo "proxy-instructions: user-space instructions per proxied HTTP/1.1 request (callgrind)"
echo "$N requests after $WARMUP warm-up, h2load --h1 -c16, $(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-8s | %12s\n' proxy "instr/req"
printf -- '---------+-------------\n'
for p in $PROXIES; do printf '%-8s | %12s\n' "$p" "${IR[$p]}"; done
for p in $PROXIES; do
    [ "$p" = fairway ] || [ -z "${IR[fairway]:-}" ] && continue
    awk -v a="${IR[fairway]}" -v b="${IR[$p]}" -v p="$p" \
        'BEGIN { printf "fairway vs %s: %.2fx the instructions per request\n", p, a / b }'
done
