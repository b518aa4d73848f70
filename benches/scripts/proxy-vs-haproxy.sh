#!/usr/bin/env bash
# Reverse proxying: fairway-proxy vs HAProxy vs nginx, one backend, measured in the same run.
#
# Set-up (all on 127.0.0.1):
#   backend   nginx, 1 worker, `return 200` with a 13-byte body
#   nginx     proxy, 1 worker, upstream keepalive 64 + proxy_http_version 1.1 + Connection ""
#   haproxy   nbthread 1, http-reuse always
#   fairway   fairway-proxy --workers 1 (release build)
# Every proxy has a plain HTTP/1.1 listener and a TLS listener (ALPN h2, http/1.1) with the
# same ECDSA P-256 certificate; access logs are off everywhere.
# Pinning (2+ CPUs): the proxy under test alone on CPU 0; backend and load generator on CPU 1.
#
# Scenarios, each after a warm-up pass, proxies measured one after another:
#   h1   wrk  -t1 -c$WRK_CONNS -d$DURATION --latency     (HTTP/1.1 keep-alive, plain)
#   h2   h2load -t1 -c$H2_CONNS -m$H2_STREAMS -D$DURATION (h2 over TLS; p50/p99 from --log-file)
# Then memory: idle RSS after start, and RSS growth per idle TLS connection with
# $IDLE_CONNS connections held open (handshake done, no request), for each proxy.
#
# Usage: benches/scripts/proxy-vs-haproxy.sh
#   env: DURATION=10 WRK_CONNS=64 H2_CONNS=16 H2_STREAMS=32 IDLE_CONNS=10000 (0 skips)
#        H1_ROUNDS=0 ROUND_SECS=5: also N paired h1 rounds, order rotated, medians compared
# Needs: nginx (nginx-light), haproxy, wrk, h2load (nghttp2-client), openssl, python3, cargo.
set -euo pipefail

DURATION=${DURATION:-10}
WRK_CONNS=${WRK_CONNS:-64}
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-32}
IDLE_CONNS=${IDLE_CONNS:-10000}
H1_ROUNDS=${H1_ROUNDS:-0}
ROUND_SECS=${ROUND_SECS:-5}
BASE_PORT=${BASE_PORT:-19000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/fairway-target}

for tool in nginx haproxy wrk h2load openssl python3 taskset cargo; do
    command -v "$tool" >/dev/null || { echo "proxy-vs-haproxy: $tool not found" >&2; exit 2; }
done
if [ "$(nproc)" -ge 2 ]; then PROXY_CPU=(taskset -c 0); CLIENT_CPU=(taskset -c 1); else PROXY_CPU=(); CLIENT_CPU=(); fi

echo "building fairway-proxy (release)..." >&2
cargo build --quiet --release -p bins --bin fairway-proxy --manifest-path "$ROOT/Cargo.toml"
FAIRWAY_BIN="$CARGO_TARGET_DIR/release/fairway-proxy"

BACKEND=$BASE_PORT
NGINX_H1=$((BASE_PORT + 1)); NGINX_TLS=$((BASE_PORT + 2))
HAPROXY_H1=$((BASE_PORT + 11)); HAPROXY_TLS=$((BASE_PORT + 12))
FAIRWAY_H1=$((BASE_PORT + 21)); FAIRWAY_TLS=$((BASE_PORT + 22)); FAIRWAY_ADMIN=$((BASE_PORT + 23))

source "$(dirname "$0")/common.sh"
bench_workdir proxy-vs-haproxy
# 10k idle connections: raise the descriptor limit (root may raise the hard limit too).
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 7 \
    -subj /CN=bench.test -addext subjectAltName=DNS:bench.test 2>/dev/null
chmod 600 "$WORK/key.pem"
cat "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/haproxy.pem"

nginx_conf "$WORK/backend" "
  server {
    listen 127.0.0.1:$BACKEND reuseport backlog=4096;
    location / { default_type text/plain; return 200 \"Hello, world\n\"; }
  }" "worker_rlimit_nofile 20000;"
nginx_conf "$WORK/nginx" "
  upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_H1 backlog=4096;
    listen 127.0.0.1:$NGINX_TLS ssl http2 backlog=4096;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }" "worker_rlimit_nofile 20000;"

cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  # 2 descriptors per proxied connection: stay under a 20000 hard limit.
  maxconn 9500
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 30s
  timeout http-request 300s
  timeout http-keep-alive 300s
  http-reuse always
frontend h1
  bind 127.0.0.1:$HAPROXY_H1
  bind 127.0.0.1:$HAPROXY_TLS ssl crt $WORK/haproxy.pem alpn h2,http/1.1
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND
CONF

cat > "$WORK/fairway.toml" <<CONF
[entrypoints.web]
address = "127.0.0.1:$FAIRWAY_H1"
[entrypoints.websecure]
address = "127.0.0.1:$FAIRWAY_TLS"
tls = { alpn = ["h2", "http/1.1"] }
[routers.all]
rule = "PathPrefix(\`/\`)"
service = "backend"
[services.backend]
[[services.backend.endpoints]]
url = "http://127.0.0.1:$BACKEND"
[tls]
default_certificate = { cert = "cert.pem", key = "key.pem" }
[limits]
header_read_timeout = "300s"
idle_timeout = "300s"
[admin]
address = "127.0.0.1:$FAIRWAY_ADMIN"
CONF


"${CLIENT_CPU[@]}" nginx -c "$WORK/backend/nginx.conf" -p "$WORK/backend" & PIDS+=($!)
wait_port "$BACKEND"

declare -A PID H1PORT TLSPORT
start_proxy() { # $1 = name
    case $1 in
        nginx)   "${PROXY_CPU[@]}" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" & ;;
        haproxy) "${PROXY_CPU[@]}" haproxy -f "$WORK/haproxy.cfg" -db & ;;
        fairway) FAIRWAY_LOG=warn "${PROXY_CPU[@]}" "$FAIRWAY_BIN" --config "$WORK/fairway.toml" --workers 1 >/dev/null & ;;
    esac
    PID[$1]=$!; PIDS+=("${PID[$1]}")
    wait_port "${H1PORT[$1]}"; wait_port "${TLSPORT[$1]}"
    sleep 0.3
}
stop_proxy() { kill "${PID[$1]}" 2>/dev/null || true; wait "${PID[$1]}" 2>/dev/null || true; }
H1PORT=([nginx]=$NGINX_H1 [haproxy]=$HAPROXY_H1 [fairway]=$FAIRWAY_H1)
TLSPORT=([nginx]=$NGINX_TLS [haproxy]=$HAPROXY_TLS [fairway]=$FAIRWAY_TLS)
PROXIES=(fairway haproxy nginx)

# wrk latency figure -> milliseconds
to_ms() { awk -v v="$1" 'BEGIN { u=v; gsub(/[0-9.]/,"",u); n=v+0;
    if (u=="us") n/=1000; else if (u=="s") n*=1000; else if (u=="m") n*=60000; printf "%.2f", n }'; }

# For the main (process) pid: nginx's worker is the child.
rss_kb() { # $1 = name
    local pid=${PID[$1]}
    if [ "$1" = nginx ]; then pid=$(pgrep -P "$pid" | head -1); fi
    awk '/^VmRSS/ { print $2 }' "/proc/$pid/status"
}

# CPU seconds (user + system) the proxy used so far, from /proc/PID/stat.
HZ=$(getconf CLK_TCK)
cpu_s() { # $1 = name
    local pid=${PID[$1]}
    if [ "$1" = nginx ]; then pid=$(pgrep -P "$pid" | head -1); fi
    awk -v hz="$HZ" '{ sub(/.*\) /, ""); printf "%.3f", ($12 + $13) / hz }' "/proc/$pid/stat"
}
per_cpu() { awk -v r="$1" -v d="$DURATION" -v c="$2" 'BEGIN { if (c <= 0) print "-"; else printf "%.0f", r * d / c }'; }

declare -A H1_RPS H1_P50 H1_P99 H2_RPS H2_P50 H2_P99 IDLE_RSS PER_CONN H1_CPU H2_CPU
for p in "${PROXIES[@]}"; do
    echo "== $p" >&2
    start_proxy "$p"
    IDLE_RSS[$p]=$(rss_kb "$p")
    url="http://127.0.0.1:${H1PORT[$p]}/"
    "${CLIENT_CPU[@]}" wrk -t1 -c"$WRK_CONNS" -d2s "$url" >/dev/null
    c0=$(cpu_s "$p")
    out=$("${CLIENT_CPU[@]}" wrk -t1 -c"$WRK_CONNS" -d"${DURATION}s" --latency "$url")
    c1=$(cpu_s "$p")
    errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ { print }')
    [ -n "$errors" ] && echo "  wrk: $errors" >&2
    H1_RPS[$p]=$(echo "$out" | awk '/^Requests\/sec/ { printf "%.0f", $2 }')
    H1_P50[$p]=$(to_ms "$(echo "$out" | awk '$1=="50%" { print $2 }')")
    H1_P99[$p]=$(to_ms "$(echo "$out" | awk '$1=="99%" { print $2 }')")
    H1_CPU[$p]=$(per_cpu "${H1_RPS[$p]}" "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')")

    turl="https://127.0.0.1:${TLSPORT[$p]}/"
    "${CLIENT_CPU[@]}" h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D2 "$turl" >/dev/null 2>&1 || true
    c0=$(cpu_s "$p")
    out=$("${CLIENT_CPU[@]}" h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D"$DURATION" \
        --log-file="$WORK/h2-$p.log" "$turl" 2>&1)
    c1=$(cpu_s "$p")
    echo "$out" | grep -q "h2" || echo "  h2load: no h2 negotiated?" >&2
    H2_RPS[$p]=$(echo "$out" | awk '/^finished in/ { gsub(",",""); printf "%.0f", $4 }')
    H2_CPU[$p]=$(per_cpu "${H2_RPS[$p]}" "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')")
    sort -n -k3 "$WORK/h2-$p.log" | awk -F'\t' '
        { d[NR] = $3 }
        END {
            if (NR == 0) { print "- -"; exit }
            i = int(NR * 0.50); if (i < 1) i = 1
            j = int(NR * 0.99); if (j < 1) j = 1
            printf "%.2f %.2f\n", d[i] / 1000, d[j] / 1000
        }' > "$WORK/h2-$p.pct"
    read -r H2_P50[$p] H2_P99[$p] < "$WORK/h2-$p.pct"

    if [ "$IDLE_CONNS" -gt 0 ]; then
        before=$(rss_kb "$p")
        want=$IDLE_CONNS
        # HAProxy reserves descriptors for maxconn up front; hold at most what it accepts.
        if [ "$p" = haproxy ] && [ "$want" -gt 9000 ]; then want=9000; fi
        "${CLIENT_CPU[@]}" python3 - "${TLSPORT[$p]}" "$want" "$WORK/idle-$p.ready" "$WORK/idle-$p.done" <<'PY' &
import asyncio, os, ssl, sys
port, n, ready, done = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
async def main():
    sem = asyncio.Semaphore(200)
    async def one():
        async with sem:
            return await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    conns = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    ok = sum(1 for c in conns if not isinstance(c, BaseException))
    open(ready, "w").write(str(ok))
    while not os.path.exists(done):
        await asyncio.sleep(0.2)
asyncio.run(main())
PY
        holder=$!
        for _ in $(seq 1 1200); do [ -f "$WORK/idle-$p.ready" ] && break; sleep 0.1; done
        sleep 1
        held=$(cat "$WORK/idle-$p.ready" 2>/dev/null || echo 0)
        after=$(rss_kb "$p")
        touch "$WORK/idle-$p.done"; wait "$holder" 2>/dev/null || true
        if [ "$held" -gt 0 ]; then
            PER_CONN[$p]=$(awk -v a="$after" -v b="$before" -v n="$held" 'BEGIN { printf "%.1f", (a-b)*1024/n/1024 }')
        else
            PER_CONN[$p]="-"
        fi
        echo "  idle TLS connections held: $held" >&2
    else
        PER_CONN[$p]="-"
    fi
    stop_proxy "$p"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "-"; else printf "%.2fx", a/b }'; }

# Paired h1 rounds (H1_ROUNDS > 0): on a small shared VM one run per proxy is at the mercy of
# whatever else runs at that moment, and the proxy measured first in a round tends to win. Each
# round runs every proxy once (wrk -d$ROUND_SECS) in an order rotated from round to round; the
# medians of req per CPU-second and of user-space CPU per request are compared.
declare -A R_CPU R_USER R_P99
if [ "$H1_ROUNDS" -gt 0 ]; then
    user_s() { # $1 = name: user CPU seconds so far
        local pid=${PID[$1]}
        if [ "$1" = nginx ]; then pid=$(pgrep -P "$pid" | head -1); fi
        awk -v hz="$HZ" '{ sub(/.*\) /, ""); printf "%.3f", $12 / hz }' "/proc/$pid/stat"
    }
    for round in $(seq "$H1_ROUNDS"); do
        shift_by=$(( (round - 1) % ${#PROXIES[@]} ))
        order=("${PROXIES[@]:$shift_by}" "${PROXIES[@]:0:$shift_by}")
        for p in "${order[@]}"; do
            start_proxy "$p"
            url="http://127.0.0.1:${H1PORT[$p]}/"
            "${CLIENT_CPU[@]}" wrk -t1 -c"$WRK_CONNS" -d1s "$url" >/dev/null
            c0=$(cpu_s "$p"); u0=$(user_s "$p")
            out=$("${CLIENT_CPU[@]}" wrk -t1 -c"$WRK_CONNS" -d"${ROUND_SECS}s" --latency "$url")
            c1=$(cpu_s "$p"); u1=$(user_s "$p")
            stop_proxy "$p"
            n=$(awk '/requests in/ { print $1 }' <<<"$out")
            R_CPU[$p]+="$(awk -v n="$n" -v c="$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" 'BEGIN { printf "%.0f", n / c }') "
            R_USER[$p]+="$(awk -v n="$n" -v a="$u0" -v b="$u1" 'BEGIN { printf "%.2f", (b - a) / n * 1e6 }') "
            R_P99[$p]+="$(to_ms "$(awk '$1=="99%" { print $2 }' <<<"$out")") "
        done
        echo "  round $round (${order[*]}) done" >&2
    done
fi
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
echo "proxy-vs-haproxy: $(nproc) CPUs, proxy pinned to CPU 0, ${DURATION}s per run, load average $(cut -d' ' -f1 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "req/s = seen by the client; req/CPU-s = requests per second of proxy CPU time (user+sys)"
printf "%-8s | %8s %9s %6s %7s | %8s %9s %6s %7s | %8s | %6s\n" \
    proxy "h1 req/s" "req/CPU-s" "p50ms" "p99ms" "h2 req/s" "req/CPU-s" "p50ms" "p99ms" "idle RSS" "KB/TLS"
printf -- "---------+-------------------------------------+-------------------------------------+----------+-------\n"
for p in "${PROXIES[@]}"; do
    printf "%-8s | %8s %9s %6s %7s | %8s %9s %6s %7s | %5s MB | %6s\n" "$p" \
        "${H1_RPS[$p]}" "${H1_CPU[$p]}" "${H1_P50[$p]}" "${H1_P99[$p]}" \
        "${H2_RPS[$p]}" "${H2_CPU[$p]}" "${H2_P50[$p]}" "${H2_P99[$p]}" \
        "$(awk -v k="${IDLE_RSS[$p]}" 'BEGIN { printf "%.1f", k/1024 }')" "${PER_CONN[$p]}"
done
echo
if [ "$H1_ROUNDS" -gt 0 ]; then
    echo
    echo "paired h1 rounds: $H1_ROUNDS x ${ROUND_SECS}s per proxy, order rotated; medians"
    printf "%-8s | %9s %12s %7s | %s\n" proxy "req/CPU-s" "user us/req" "p99ms" "req/CPU-s per round"
    for p in "${PROXIES[@]}"; do
        printf "%-8s | %9s %12s %7s | %s\n" "$p" "$(median "${R_CPU[$p]}")" \
            "$(median "${R_USER[$p]}")" "$(median "${R_P99[$p]}")" "${R_CPU[$p]}"
    done
    for peer in haproxy nginx; do
        echo "paired, fairway vs $peer: h1 req/CPU-s $(ratio "$(median "${R_CPU[fairway]}")" "$(median "${R_CPU[$peer]}")"), p99 $(ratio "$(median "${R_P99[fairway]}")" "$(median "${R_P99[$peer]}")")"
    done
    echo
fi
for peer in haproxy nginx; do
    echo "fairway vs $peer: h1 req/s $(ratio "${H1_RPS[fairway]}" "${H1_RPS[$peer]}"), h1 req/CPU-s $(ratio "${H1_CPU[fairway]}" "${H1_CPU[$peer]}"), h1 p99 $(ratio "${H1_P99[fairway]}" "${H1_P99[$peer]}"); h2 req/s $(ratio "${H2_RPS[fairway]}" "${H2_RPS[$peer]}"), h2 req/CPU-s $(ratio "${H2_CPU[fairway]}" "${H2_CPU[$peer]}"), h2 p99 $(ratio "${H2_P99[fairway]}" "${H2_P99[$peer]}")"
done
