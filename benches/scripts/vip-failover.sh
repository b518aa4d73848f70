#!/usr/bin/env bash
# VIP failover, side by side: keepalived VRRPv3 (advert_int 1 and 0.1) vs fairway-speaker
# (default, safe and fast profiles), on real ARP in network namespaces.
#
# Topology (documentation ranges only): namespace <p>sw holds bridge br0; three speaker nodes
# <p>n1..n3 (198.51.100.11-13, 2001:db8::11-13, eth0 -> port pK on br0) and a client <p>cl
# (198.51.100.100) that pings the VIP 198.51.100.50 every 10 ms. Outage = largest gap between
# ping replies around the fault. Faults, each TRIALS times per setup, at a random phase:
#   hardkill  power loss: SIGKILL of every process of the owner's daemon and, at the same
#             instant, the owner's own NIC down (a killed daemon alone would leave the VIP on
#             the interface and the owner's kernel would keep answering: no outage to measure)
#   linkcut   the owner's bridge port goes down
#   graceful  SIGTERM of the owner's daemon (VRRP priority-0 advert / fairway release)
# Then a soak: fairway (default, safe and fast profiles) and keepalived (advert 0.1) run side by side for
# SOAK_SECS under CPU stress (STRESS_PER_CPU busy loops per core, default 2); every ownership
# change is a false failover.
#
# Usage (as root): benches/scripts/vip-failover.sh
#   TRIALS=10 SOAK_SECS=600 FAIRWAY_SPEAKER=/path/to/fairway-speaker SETUPS="ka1 ka01 fw fwsafe fwfast"
#   CASES="hardkill linkcut graceful" KEEP_LOGS=/some/dir (daemon logs survive the run)
#   SETUPS="" skips the failover trials (soak only)
set -euo pipefail

TRIALS=${TRIALS:-10}
SOAK_SECS=${SOAK_SECS:-600}
STRESS_PER_CPU=${STRESS_PER_CPU:-2}
SETUPS=${SETUPS:-"ka1 ka01 fw fwsafe fwfast"}
CASES=${CASES:-"hardkill linkcut graceful"}
VIP=198.51.100.50
PORT=7946
P="fwb-$$-"
WORK=$(mktemp -d /tmp/vip-failover-bench.XXXXXX)
STRESS_PIDS=()
PING_PID=""
declare -A DAEMON_PID

if [[ $(id -u) -ne 0 ]]; then
    echo "vip-failover.sh: needs root (network namespaces)" >&2
    exit 2
fi
for tool in ip ping keepalived awk; do
    command -v "$tool" >/dev/null || { echo "vip-failover.sh: missing $tool" >&2; exit 2; }
done
if [[ -z ${FAIRWAY_SPEAKER:-} ]]; then
    ROOT=$(cd "$(dirname "$0")/../.." && pwd)
    TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
    PROFILE=${PROFILE:-dev}
    (cd "$ROOT" && cargo build -q -p bins --bin fairway-speaker --profile "$PROFILE")
    [[ $PROFILE == dev ]] && PROFILE_DIR=debug || PROFILE_DIR=$PROFILE
    FAIRWAY_SPEAKER=$TARGET/$PROFILE_DIR/fairway-speaker
fi
[[ -x $FAIRWAY_SPEAKER ]] || { echo "vip-failover.sh: $FAIRWAY_SPEAKER not executable" >&2; exit 2; }

cleanup() {
    set +e
    for pid in "${STRESS_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    [[ -n $PING_PID ]] && kill "$PING_PID" 2>/dev/null
    stop_all
    # Daemons started in trial subshells, and keepalived's VRRP children (by recorded pid).
    # shellcheck disable=SC2046
    kill -KILL $(cat "$WORK"/all.pids "$WORK"/*.pid 2>/dev/null) 2>/dev/null
    for pfx in "$P" "${P}s-" "${P}t-" "${P}u-"; do
        for ns in sw n1 n2 n3 cl; do ip netns del "$pfx$ns" 2>/dev/null; done
    done
    if [[ -n ${KEEP_LOGS:-} ]]; then
        mkdir -p "$KEEP_LOGS" && cp "$WORK"/*.log "$KEEP_LOGS"/ 2>/dev/null
        echo "logs kept in $KEEP_LOGS" >&2
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# topology <prefix>
topology() {
    local p=$1
    ip netns add "${p}sw"
    ip -n "${p}sw" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    ip -n "${p}sw" link set br0 up
    local k ns mac
    for k in 1 2 3 4; do
        if [[ $k == 4 ]]; then ns=${p}cl; mac=02:00:00:00:00:64; v4=198.51.100.100; v6=2001:db8::100
        else ns=${p}n$k; mac=02:00:00:00:00:1$k; v4=198.51.100.1$k; v6=2001:db8::1$k; fi
        ip netns add "$ns"
        ip -n "${p}sw" link add "p$k" type veth peer name eth0 netns "$ns"
        ip -n "${p}sw" link set "p$k" master br0 up
        ip -n "$ns" link set eth0 address "$mac"
        ip -n "$ns" addr add "$v4/24" dev eth0
        ip -n "$ns" addr add "$v6/64" dev eth0 nodad
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
    done
}

write_configs() {
    local p=$1 dir=$2
    mkdir -p "$dir"
    printf 'vip-failover-bench-shared-key-0123456789' >"$dir/key"
    chmod 600 "$dir/key"
    local k prio
    for k in 1 2 3; do
        prio=$((200 - 50 * k))
        for adv in 1 0.1; do
            cat >"$dir/ka-$adv-n$k.conf" <<KA
global_defs {
    router_id n$k
    vrrp_version 3
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority $prio
    advert_int $adv
    virtual_ipaddress {
        $VIP/32
    }
}
KA
        done
        for profile in default safe fast; do
            cat >"$dir/fw-$profile-n$k.toml" <<FW
[speaker]
node = "n$k"
interface = "eth0"
key_file = "$dir/key"
profile = "$profile"
[speaker.nodes]
n1 = "198.51.100.11:$PORT"
n2 = "198.51.100.12:$PORT"
n3 = "198.51.100.13:$PORT"
[[speaker.vips]]
address = "$VIP"
FW
        done
    done
}

# start_daemon <prefix> <setup> <k> <dir>
start_daemon() {
    local p=$1 setup=$2 k=$3 dir=$4 ns=${1}n$3
    case $setup in
        ka1|ka01)
            local adv=1; [[ $setup == ka01 ]] && adv=0.1
            ip netns exec "$ns" keepalived -n -l -D -P -f "$dir/ka-$adv-n$k.conf" \
                -p "$dir/ka-$p$k.pid" -r "$dir/ka-vrrp-$p$k.pid" >>"$dir/$setup-n$k.log" 2>&1 &
            ;;
        fw|fwsafe|fwfast)
            local profile=default
            [[ $setup == fwsafe ]] && profile=safe
            [[ $setup == fwfast ]] && profile=fast
            FAIRWAY_LOG=info ip netns exec "$ns" "$FAIRWAY_SPEAKER" \
                --config "$dir/fw-$profile-n$k.toml" >>"$dir/$setup-n$k.log" 2>&1 &
            ;;
    esac
    DAEMON_PID[$p$k]=$!
    echo "$!" >>"$WORK/all.pids"
}

# pids of a daemon: keepalived's VRRP child first (it gets SIGTERM via PR_SET_PDEATHSIG when
# the parent dies, and would then send a priority-0 advert), then the process we started
daemon_pids() {
    local key=$1 dir=$2 pids=""
    [[ -f $dir/ka-vrrp-$key.pid ]] && pids="$(cat "$dir/ka-vrrp-$key.pid" 2>/dev/null) "
    echo "$pids${DAEMON_PID[$key]:-}"
}

stop_all() {
    local key
    for key in "${!DAEMON_PID[@]}"; do
        # shellcheck disable=SC2046
        kill -KILL $(daemon_pids "$key" "$WORK") 2>/dev/null || true
    done
    wait 2>/dev/null || true
    DAEMON_PID=()
    rm -f "$WORK"/ka-*.pid
    : >"$WORK/all.pids"
}

holders() {
    local p=$1 k out=""
    for k in 1 2 3; do
        if ip -n "${p}n$k" -o addr show dev eth0 2>/dev/null | grep -q " $VIP/"; then out="$out $k"; fi
    done
    echo $out
}

wait_owner() {
    local p=$1 limit=$2 i h
    for ((i = 0; i < limit * 20; i++)); do
        h=$(holders "$p")
        if [[ -n $h && $h != *" "* ]]; then echo "$h"; return 0; fi
        sleep 0.05
    done
    return 1
}

now() { date +%s.%N; }

# one_trial <setup> <case>  -> prints outage seconds
one_trial() {
    local setup=$1 case=$2 k owner t0 h new=""
    for k in 1 2 3; do
        ip -n "${P}n$k" addr del "$VIP/32" dev eth0 2>/dev/null || true
        ip -n "${P}n$k" link set eth0 up
        ip -n "${P}sw" link set "p$k" up
    done
    ip -n "${P}cl" neigh flush dev eth0
    for k in 1 2 3; do start_daemon "$P" "$setup" "$k" "$WORK"; done
    wait_owner "$P" 15 >/dev/null || { echo "nan"; stop_all; return; }
    # Let start-up elections settle (VRRP preemption, fairway's startup hold), then look again.
    sleep 1
    owner=$(wait_owner "$P" 5) || { echo "nan"; stop_all; return; }
    ip netns exec "${P}cl" ping -D -n -i 0.01 -W 0.5 "$VIP" >"$WORK/ping.log" 2>/dev/null &
    PING_PID=$!
    echo "$PING_PID" >>"$WORK/all.pids"
    sleep "1.$((RANDOM % 1000))"
    t0=$(now)
    case $case in
        hardkill)
            # shellcheck disable=SC2046
            kill -KILL $(daemon_pids "$P$owner" "$WORK")
            ip -n "${P}n$owner" link set eth0 down
            ;;
        linkcut) ip -n "${P}sw" link set "p$owner" down ;;
        graceful) kill -TERM "${DAEMON_PID[$P$owner]}" ;;
    esac
    # Wait for another node to hold the VIP, then let replies resume.
    for ((k = 0; k < 300; k++)); do
        h=$(holders "$P")
        for x in $h; do [[ $x != "$owner" ]] && new=$x; done
        [[ -n $new ]] && break
        sleep 0.05
    done
    sleep 1.5
    kill "$PING_PID" 2>/dev/null || true
    wait "$PING_PID" 2>/dev/null || true
    PING_PID=""
    stop_all
    awk -v t0="$t0" -v now="$(now)" '
        /bytes from/ { gsub(/[\[\]]/, "", $1); t = $1 + 0
                       if (t <= t0) { last = t; next }
                       if (last > 0 && t - last > gap) gap = t - last
                       last = t }
        END { if (last <= t0) { printf "inf\n" } else { printf "%.3f\n", gap } }' "$WORK/ping.log"
}

# stats <values...> -> "p50 max"
stats() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "- -"; exit }
        p = v[int((NR + 1) / 2)]; m = v[NR]; printf "%s %s\n", p, m }'
}

label() {
    case $1 in
        ka1) echo "keepalived v3 advert 1s" ;;
        ka01) echo "keepalived v3 advert 0.1s" ;;
        fw) echo "fairway default (100ms x3)" ;;
        fwsafe) echo "fairway safe (250ms x5)" ;;
        fwfast) echo "fairway fast (50ms x3)" ;;
    esac
}

topology "$P"
write_configs "$P" "$WORK"
declare -A RESULT
for setup in $SETUPS; do
    for case in $CASES; do
        vals=()
        for ((t = 0; t < TRIALS; t++)); do
            v=$(one_trial "$setup" "$case")
            vals+=("$v")
        done
        echo "# $(label "$setup") $case: ${vals[*]}" >&2
        RESULT[$setup.$case]=$(stats "${vals[@]}")
    done
done

if [[ -n ${SETUPS// /} ]]; then
echo
echo "VIP failover outage in seconds, p50 / max of $TRIALS trials (10 ms pings, kernel $(uname -r))"
printf '%-28s' "setup"
for case in $CASES; do printf ' | %-17s' "$case"; done
echo
for setup in $SETUPS; do
    printf '%-28s' "$(label "$setup")"
    for case in $CASES; do
        read -r p50 max <<<"${RESULT[$setup.$case]}"
        printf ' | %-17s' "$p50 / $max"
    done
    echo
done
fi

if [[ $SOAK_SECS -gt 0 ]]; then
    ip -n "${P}cl" neigh flush dev eth0
    # Side-by-side soak: fairway default in topology $P, keepalived 0.1 s in "${P}s-",
    # fairway safe in "${P}t-", fairway fast in "${P}u-".
    Q="${P}s-"
    R="${P}t-"
    U="${P}u-"
    topology "$Q"
    topology "$R"
    topology "$U"
    for k in 1 2 3; do
        ip -n "${P}sw" link set "p$k" up
        ip -n "${P}n$k" addr del "$VIP/32" dev eth0 2>/dev/null || true
    done
    for k in 1 2 3; do
        start_daemon "$P" fw "$k" "$WORK"
        start_daemon "$Q" ka01 "$k" "$WORK"
        start_daemon "$R" fwsafe "$k" "$WORK"
        start_daemon "$U" fwfast "$k" "$WORK"
    done
    wait_owner "$P" 15 >/dev/null && wait_owner "$Q" 15 >/dev/null && wait_owner "$R" 15 >/dev/null && wait_owner "$U" 15 >/dev/null ||
        { echo "soak: no owner" >&2; exit 1; }
    sleep 2
    fw_before=$(cat "$WORK"/fw-n*.log | grep -c "again=false" || true)
    fws_before=$(cat "$WORK"/fwsafe-n*.log | grep -c "again=false" || true)
    fwf_before=$(cat "$WORK"/fwfast-n*.log | grep -c "again=false" || true)
    ka_before=$(cat "$WORK"/ka01-n*.log | grep -c "Entering MASTER STATE" || true)
    for ((i = 0; i < $(nproc) * STRESS_PER_CPU; i++)); do
        (while :; do :; done) &
        STRESS_PIDS+=($!)
    done
    sleep "$SOAK_SECS"
    for pid in "${STRESS_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    STRESS_PIDS=()
    fw_after=$(cat "$WORK"/fw-n*.log | grep -c "again=false" || true)
    fws_after=$(cat "$WORK"/fwsafe-n*.log | grep -c "again=false" || true)
    fwf_after=$(cat "$WORK"/fwfast-n*.log | grep -c "again=false" || true)
    ka_after=$(cat "$WORK"/ka01-n*.log | grep -c "Entering MASTER STATE" || true)
    echo
    echo "Soak: ${SOAK_SECS}s under CPU stress ($(( $(nproc) * STRESS_PER_CPU )) busy loops on $(nproc) CPUs), false failovers:"
    echo "  fairway default (100ms x3): $((fw_after - fw_before))"
    echo "  keepalived v3 advert 0.1s:  $((ka_after - ka_before))"
    echo "  fairway safe (250ms x5):    $((fws_after - fws_before))"
    echo "  fairway fast (50ms x3):     $((fwf_after - fwf_before))"
fi
