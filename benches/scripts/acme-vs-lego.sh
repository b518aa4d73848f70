#!/usr/bin/env bash
# ACME issuance throughput: fairway-controller vs lego, 100 certificates each from a fresh
# Pebble with the same configuration, measured in the same run.
#
# Pebble (scripts/build-pebble.sh's v2.10.3 if built, else Debian 2.4.0; or $FAIRWAY_PEBBLE): PEBBLE_VA_NOSLEEP=1, nonce rejection 0 %, authz reuse
# 0 %, pebble-challtestsrv as its DNS (every name -> 127.0.0.1), HTTP-01 on one port.
#   fairway: one fairway-controller process, 100 [[acme.certificates]], serving HTTP-01 on that
#            port itself (max_in_flight = $INFLIGHT, by default as many as lego gets processes;
#            order budget opened to 1000/s so the
#            default 10/10 s throttle does not cap the run).
#   lego:    100 parallel `lego run` processes (HTTP-01 webroot; nginx serves the webroot on
#            that port), each registering its own account, as in a per-domain script.
# Each client gets its own fresh Pebble. Time = start of the client(s) until all 100
# certificates exist (fairway: in acme.json; lego: 100 .crt files); account registration counts.
#
# Usage: benches/scripts/acme-vs-lego.sh     (env: N=100 INFLIGHT=$N LEGO_PARALLEL=$N
#        FAIRWAY_PROFILE=release|debug FAIRWAY_CONTROLLER=prebuilt-binary FAIRWAY_PEBBLE=...
#        FAIRWAY_PEBBLE_CHALLTESTSRV=...
#        KEEP=1 keeps the scratch directory with every log, SKIP_LEGO=1 runs fairway only)
# Needs: pebble, pebble-challtestsrv (Debian pebble), lego, nginx (nginx-light), openssl, curl, bc, cargo.
set -euo pipefail

N=${N:-100}
INFLIGHT=${INFLIGHT:-$N}
LEGO_PARALLEL=${LEGO_PARALLEL:-$N}
PROFILE=${FAIRWAY_PROFILE:-release}
TIMEOUT=${TIMEOUT:-300}
# Default: the Pebble scripts/build-pebble.sh builds (the one the README's numbers used), else Debian's.
PINNED_PEBBLE=${FAIRWAY_PEBBLE_DIR:-$HOME/.cache/fairway-pebble}/v2.10.3
if [ -x "$PINNED_PEBBLE/pebble" ] && [ -x "$PINNED_PEBBLE/pebble-challtestsrv" ]; then
    DEFAULT_PEBBLE=$PINNED_PEBBLE/pebble DEFAULT_CHALLTESTSRV=$PINNED_PEBBLE/pebble-challtestsrv
else
    DEFAULT_PEBBLE=/usr/bin/pebble DEFAULT_CHALLTESTSRV=/usr/bin/pebble-challtestsrv
fi
PEBBLE=${FAIRWAY_PEBBLE:-$DEFAULT_PEBBLE}
CHALLTESTSRV=${FAIRWAY_PEBBLE_CHALLTESTSRV:-$DEFAULT_CHALLTESTSRV}
BASE_PORT=${BASE_PORT:-24100}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/fairway-target}

for tool in "$PEBBLE" "$CHALLTESTSRV" lego nginx openssl cargo; do
    command -v "$tool" >/dev/null || { echo "acme-vs-lego: $tool not found" >&2; exit 2; }
done

if [ -n "${FAIRWAY_CONTROLLER:-}" ]; then
    CONTROLLER=$FAIRWAY_CONTROLLER   # a prebuilt binary (A/B runs); no build
else
    echo "building fairway-controller ($PROFILE)..." >&2
    if [ "$PROFILE" = release ]; then
        cargo build --quiet --release -p bins --bin fairway-controller --manifest-path "$ROOT/Cargo.toml"
    else
        cargo build --quiet -p bins --bin fairway-controller --manifest-path "$ROOT/Cargo.toml"
    fi
    CONTROLLER="$CARGO_TARGET_DIR/$PROFILE/fairway-controller"
fi

WORK=$(mktemp -d /tmp/acme-vs-lego.XXXXXX)
PIDS=()
stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
cleanup() { stop_all; if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

ACME_PORT=$BASE_PORT; MGMT_PORT=$((BASE_PORT + 1)); DNS_PORT=$((BASE_PORT + 2))
DNS_MGMT_PORT=$((BASE_PORT + 3)); HTTP_PORT=$((BASE_PORT + 4)); TLS_PORT=$((BASE_PORT + 5))

# Pebble's listener: a test CA and a leaf for localhost/127.0.0.1 signed by it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -subj "/CN=acme-vs-lego test CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$WORK/key.pem" -out "$WORK/leaf.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$WORK/leaf.ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
    -days 2 -extfile "$WORK/leaf.ext" -out "$WORK/cert.pem" 2>/dev/null
cat > "$WORK/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$ACME_PORT", "managementListenAddress": "127.0.0.1:$MGMT_PORT",
 "certificate": "$WORK/cert.pem", "privateKey": "$WORK/key.pem", "httpPort": $HTTP_PORT,
 "tlsPort": $TLS_PORT, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON

# challtestsrv >= 1.4 (Pebble >= 2.5) renamed -dns01 to -dnsserver and added DoH on :8443.
# (Capture the help first: `-h` exits non-zero, and under pipefail `-h | grep -q` fails whenever
# grep's early exit or the exit status wins the race.)
CHALLTESTSRV_HELP=$("$CHALLTESTSRV" -h 2>&1 || true)
if [[ $CHALLTESTSRV_HELP == *-dnsserver* ]]; then
    DNS_FLAGS=(-dnsserver "127.0.0.1:$DNS_PORT" -doh "")
else
    DNS_FLAGS=(-dns01 "127.0.0.1:$DNS_PORT")
fi

start_pebble() { # $1 = log name
    "$CHALLTESTSRV" -http01 "" -https01 "" -tlsalpn01 "" "${DNS_FLAGS[@]}" \
        -management "127.0.0.1:$DNS_MGMT_PORT" -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
        >"$WORK/$1-dns.log" 2>&1 &
    PIDS+=($!)
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
        "$PEBBLE" -config "$WORK/pebble.json" -dnsserver "127.0.0.1:$DNS_PORT" >"$WORK/$1-pebble.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        curl -s --cacert "$WORK/ca.pem" "https://127.0.0.1:$ACME_PORT/dir" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "acme-vs-lego: Pebble did not start" >&2; cat "$WORK/$1-pebble.log" >&2; exit 1
}

now() { date +%s.%N; }

# --- fairway-controller ---------------------------------------------------------------------
start_pebble fairway
mkdir -p "$WORK/fairway"
{
    cat <<TOML
[acme]
store = "acme.json"
challenge_address = "127.0.0.1:$HTTP_PORT"
leader_retry_ms = 50
max_in_flight = $INFLIGHT
budget = { orders = 1000, window_secs = 1 }
call_timeout_secs = 30

[acme.resolvers.pebble]
directory = "https://127.0.0.1:$ACME_PORT/dir"
email = "bench@fairway.test"
ca_bundle = "$WORK/ca.pem"
TOML
    for i in $(seq 1 "$N"); do
        printf '\n[[acme.certificates]]\nresolver = "pebble"\nmain = "f%d.bench.test"\n' "$i"
    done
} > "$WORK/fairway/fairway.toml"
count_fairway() { grep -o '"main": "f[0-9]*\.bench\.test"' "$WORK/fairway/acme.json" 2>/dev/null | wc -l; }
t0=$(now)
RUST_LOG=warn "$CONTROLLER" --config "$WORK/fairway/fairway.toml" 2>"$WORK/fairway/controller.log" &
CONTROLLER_PID=$!
PIDS+=($CONTROLLER_PID)
deadline=$(( $(date +%s) + TIMEOUT ))
while [ "$(count_fairway)" -lt "$N" ]; do
    if [ "$(date +%s)" -ge "$deadline" ] || ! kill -0 "$CONTROLLER_PID" 2>/dev/null; then
        echo "acme-vs-lego: fairway-controller issued $(count_fairway)/$N (Pebble stopped answering?)" >&2
        tail -5 "$WORK/fairway/controller.log" >&2
        break
    fi
    sleep 0.05
done
t1=$(now)
FAIRWAY_OK=$(count_fairway)
FAIRWAY_S=$(echo "$t1 - $t0" | bc -l)
stop_all

# --- lego ------------------------------------------------------------------------------------
LEGO_OK=0; LEGO_S=1
if [ "${SKIP_LEGO:-0}" != 1 ]; then
start_pebble lego
mkdir -p "$WORK/lego/webroot" "$WORK/lego/nginx"
NGINX_USER=""; [ "$(id -u)" -eq 0 ] && NGINX_USER="user root;"
cat > "$WORK/lego/nginx/nginx.conf" <<CONF
$NGINX_USER
worker_processes 1;
daemon off;
pid $WORK/lego/nginx/nginx.pid;
error_log $WORK/lego/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/lego/nginx;
    proxy_temp_path $WORK/lego/nginx;
    fastcgi_temp_path $WORK/lego/nginx;
    uwsgi_temp_path $WORK/lego/nginx;
    scgi_temp_path $WORK/lego/nginx;
    server { listen 127.0.0.1:$HTTP_PORT; root $WORK/lego/webroot; }
}
CONF
nginx -c "$WORK/lego/nginx/nginx.conf" -e "$WORK/lego/nginx/error.log" &
PIDS+=($!)
sleep 0.3
t0=$(now)
(
    for i in $(seq 1 "$N"); do
        while [ "$(jobs -rp | wc -l)" -ge "$LEGO_PARALLEL" ]; do wait -n || true; done
        LEGO_CA_CERTIFICATES="$WORK/ca.pem" timeout "$TIMEOUT" lego --server "https://127.0.0.1:$ACME_PORT/dir" \
            --email "bench@fairway.test" --accept-tos --key-type ec256 --domains "l$i.bench.test" \
            --http --http.webroot "$WORK/lego/webroot" --path "$WORK/lego/p$i" run \
            >"$WORK/lego/lego-$i.log" 2>&1 &
    done
    wait
)
t1=$(now)
LEGO_OK=$(find "$WORK/lego" -path '*/certificates/*.crt' ! -name '*.issuer.crt' | wc -l)
LEGO_S=$(echo "$t1 - $t0" | bc -l)
stop_all
fi

# --- table ------------------------------------------------------------------------------------
rate() { echo "scale=2; $1 / $2" | bc -l; }
FAIRWAY_RATE=$(rate "$FAIRWAY_OK" "$FAIRWAY_S")
LEGO_RATE=$(rate "$LEGO_OK" "$LEGO_S")
echo
printf '%-38s %8s %10s %10s\n' "client ($N certificates, Pebble NOSLEEP)" "issued" "seconds" "certs/s"
printf '%-38s %8s %10.2f %10s\n' "fairway-controller ($PROFILE, $INFLIGHT in flight)" "$FAIRWAY_OK" "$FAIRWAY_S" "$FAIRWAY_RATE"
printf '%-38s %8s %10.2f %10s\n' "lego ($LEGO_PARALLEL parallel processes)" "$LEGO_OK" "$LEGO_S" "$LEGO_RATE"
if [ "$LEGO_OK" -gt 0 ] && [ "$FAIRWAY_OK" -gt 0 ]; then
    printf 'ratio fairway/lego: %sx\n' "$(echo "scale=2; $FAIRWAY_RATE / $LEGO_RATE" | bc -l)"
fi
