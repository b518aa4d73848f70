#!/usr/bin/env bash
# TLS termination: Fairway's tls-acceptor vs nginx, same certificate, one worker each,
# measured in the same run with h2load.
#
# What it measures: TLS TERMINATION ONLY, not proxying. Both servers answer every request
# with a fixed 13-byte body themselves (nginx `return 200`, our `tls_hello` example on a
# one-thread tokio runtime). Two numbers per server:
#   full TLS 1.3 handshakes/s  - every request on a new connection (`Connection: close`).
#                                h2load resumes sessions on reconnect, so this runs against a
#                                second instance of each server with resumption off (nginx:
#                                ssl_session_tickets off + ssl_session_cache off; ours:
#                                --tickets 0); tls_hello's counters confirm 0 resumed.
#   keep-alive HTTPS req/s     - HTTP/1.1 requests on 16 long-lived TLS connections
# Servers are pinned to CPU 0 and h2load (one thread) to CPU 1 when there are 2+ CPUs.
# Rounds alternate the servers; the table shows the median of the rounds.
#
# Each metric is reported twice: the rate h2load saw, and the rate per second of *server*
# CPU time (the server process's CPU time from /proc/PID/task/*/schedstat, read around each
# h2load run). On a small box the client (h2load verifies every handshake signature) and
# other load limit the first; the second is the server's capacity on one core, and is
# what the ratio column compares.
#
# Usage: benches/scripts/tls-vs-nginx.sh      (env: ROUNDS=3 FULL_N=3000 KA_N=60000 CLIENTS=16)
# Needs: nginx (Debian nginx-light), h2load (nghttp2-client), openssl, cargo.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
FULL_N=${FULL_N:-3000}
KA_N=${KA_N:-60000}
CLIENTS=${CLIENTS:-16}
OURS_PORT=${OURS_PORT:-18443}
NGINX_PORT=${NGINX_PORT:-18444}
OURS_FULL_PORT=${OURS_FULL_PORT:-18445}
NGINX_FULL_PORT=${NGINX_FULL_PORT:-18446}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/fairway-target}

for tool in nginx h2load openssl taskset cargo; do
    command -v "$tool" >/dev/null || { echo "tls-vs-nginx: $tool not found" >&2; exit 2; }
done

if [ "$(nproc)" -ge 2 ]; then SERVER_CPU=(taskset -c 0); CLIENT_CPU=(taskset -c 1); else SERVER_CPU=(); CLIENT_CPU=(); fi

echo "building tls_hello (release)..." >&2
cargo build --quiet --release -p tls-acceptor --example tls_hello --manifest-path "$ROOT/Cargo.toml"
OURS_BIN="$CARGO_TARGET_DIR/release/examples/tls_hello"

source "$(dirname "$0")/common.sh"
bench_workdir tls-vs-nginx

# One ECDSA P-256 certificate for both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 7 \
    -subj /CN=bench.test -addext subjectAltName=DNS:bench.test 2>/dev/null
chmod 600 "$WORK/key.pem"

mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/tmp/body;
  proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { default_type text/plain; return 200 "Hello, world\n"; }
  }
  server {
    listen 127.0.0.1:$NGINX_FULL_PORT ssl;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
    location / { default_type text/plain; return 200 "Hello, world\n"; }
  }
}
CONF

"${SERVER_CPU[@]}" nginx -p "$WORK/nginx" -e "$WORK/nginx/logs/error.log" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)
"${SERVER_CPU[@]}" "$OURS_BIN" --listen "127.0.0.1:$OURS_PORT" --cert "$WORK/cert.pem" --key "$WORK/key.pem" \
    --threads 1 2>"$WORK/ours.log" &
PIDS+=($!)
"${SERVER_CPU[@]}" "$OURS_BIN" --listen "127.0.0.1:$OURS_FULL_PORT" --cert "$WORK/cert.pem" --key "$WORK/key.pem" \
    --threads 1 --tickets 0 2>"$WORK/ours-full.log" &
PIDS+=($!)

# Worker pids: our example is one process; nginx's worker is the master's only child.
OURS_KA_PID=${PIDS[1]}
OURS_FULL_PID=${PIDS[2]}
for _ in $(seq 50); do
    NGINX_WORKER=$(cat "/proc/${PIDS[0]}/task/${PIDS[0]}/children" 2>/dev/null | awk '{ print $1 }')
    [ -n "$NGINX_WORKER" ] && break
    sleep 0.1
done
[ -n "$NGINX_WORKER" ] || { echo "tls-vs-nginx: no nginx worker" >&2; exit 1; }

# CPU time (ns) of a process, all threads.
cpu_ns() {
    local total=0 run _
    for f in /proc/"$1"/task/*/schedstat; do
        read -r run _ <"$f"
        total=$((total + run))
    done
    echo "$total"
}

wait_port "$OURS_PORT"
wait_port "$NGINX_PORT"
wait_port "$OURS_FULL_PORT"
wait_port "$NGINX_FULL_PORT"

# h2load SERVER_PID ARGS... -> "req/s req-per-server-CPU-second" (fails the run when a
# request failed or TLS 1.3 was not used).
h2() {
    local pid=$1 out before after
    shift
    before=$(cpu_ns "$pid")
    out=$("${CLIENT_CPU[@]}" h2load --h1 -t 1 "$@" 2>&1)
    after=$(cpu_ns "$pid")
    grep -q "TLS Protocol: TLSv1.3" <<<"$out" || { echo "tls-vs-nginx: not TLS 1.3: $out" >&2; exit 1; }
    grep -Eq "requests: .* 0 failed, 0 errored" <<<"$out" || { echo "tls-vs-nginx: failures: $out" >&2; exit 1; }
    awk -v cpu=$((after - before)) '/^finished in/ { rate = $4 } /^requests:/ { n = $2 }
        END { printf "%s %.0f\n", rate, n / (cpu / 1e9) }' <<<"$out"
}

declare -A RESULTS
for round in $(seq "$ROUNDS"); do
    for side in ours nginx; do
        ka_port=$OURS_PORT full_port=$OURS_FULL_PORT ka_pid=$OURS_KA_PID full_pid=$OURS_FULL_PID
        if [ "$side" = nginx ]; then
            ka_port=$NGINX_PORT full_port=$NGINX_FULL_PORT ka_pid=$NGINX_WORKER full_pid=$NGINX_WORKER
        fi
        h2 "$full_pid" -c "$CLIENTS" -n 200 "https://127.0.0.1:$full_port/" >/dev/null # warm-up
        read -r full full_cpu < <(h2 "$full_pid" -c "$CLIENTS" -n "$FULL_N" -H 'Connection: close' "https://127.0.0.1:$full_port/")
        read -r ka ka_cpu < <(h2 "$ka_pid" -c "$CLIENTS" -n "$KA_N" "https://127.0.0.1:$ka_port/")
        RESULTS[$side,full]+="$full "
        RESULTS[$side,full_cpu]+="$full_cpu "
        RESULTS[$side,ka]+="$ka "
        RESULTS[$side,ka_cpu]+="$ka_cpu "
        echo "round $round $side: full=$full hs/s ($full_cpu per CPU-s) keep-alive=$ka req/s ($ka_cpu per CPU-s)" >&2
    done
done

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

sleep 1.2 # let tls_hello print its final handshake counters
counters=$(grep -o '[0-9]* full, [0-9]* resumed' "$WORK/ours-full.log" | tail -1 || true)
case "$counters" in
    *" 0 resumed") ;;
    *) echo "tls-vs-nginx: the full-handshake instance resumed sessions ($counters)" >&2; exit 1 ;;
esac

echo
echo "TLS termination (not proxying): fairway tls-acceptor vs nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), 1 worker each,"
echo "ECDSA P-256, TLS 1.3, h2load $CLIENTS connections, median of $ROUNDS rounds"
echo "(full-handshake instances have resumption off; fairway counted: $counters)"
printf '%-50s %10s %10s %7s\n' "metric" "fairway" "nginx" "ratio"
for metric in full_cpu full ka_cpu ka; do
    ours=$(median "${RESULTS[ours,$metric]}")
    theirs=$(median "${RESULTS[nginx,$metric]}")
    case $metric in
        full_cpu) label="full TLS 1.3 handshakes per server CPU-second" ;;
        full) label="  full TLS 1.3 handshakes/s seen by h2load" ;;
        ka_cpu) label="keep-alive HTTPS requests per server CPU-second" ;;
        ka) label="  keep-alive HTTPS req/s seen by h2load" ;;
    esac
    printf '%-50s %10.0f %10.0f %6.2fx\n' "$label" "$ours" "$theirs" "$(awk -v a="$ours" -v b="$theirs" 'BEGIN { print a / b }')"
done
