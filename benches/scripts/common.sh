# Shared by the side-by-side scripts: `source "$(dirname "$0")/common.sh"` after `set -euo
# pipefail`. Provides a scratch directory with cleanup of started processes, a port wait, and
# the nginx configuration skeleton that backends and the nginx peer share.

# bench_workdir NAME: sets WORK (a fresh /tmp directory) and PIDS; on exit every pid in PIDS is
# killed and WORK removed.
bench_workdir() {
    BENCH_NAME=$1
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
}
bench_cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}

# wait_port PORT [TRIES]: until something accepts on 127.0.0.1:PORT (0.1 s per try, default
# 100), else the script fails naming the port.
wait_port() {
    for _ in $(seq 1 "${2:-100}"); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$BENCH_NAME: nothing listening on port $1" >&2
    exit 1
}

# nginx_conf DIR HTTP_BLOCK [MAIN_DIRECTIVES]: writes DIR/nginx.conf with one worker, no
# daemon, access log off, temp paths and logs inside DIR, very long keep-alive, and
# HTTP_BLOCK (server/upstream blocks) inside `http {}`.
nginx_conf() {
    mkdir -p "$1/logs" "$1/tmp"
    cat > "$1/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
${3:-}
events { worker_connections 32768; }
http {
  access_log off;
  client_body_temp_path $1/tmp/body;
  proxy_temp_path $1/tmp/proxy;
  fastcgi_temp_path $1/tmp/fastcgi;
  uwsgi_temp_path $1/tmp/uwsgi;
  scgi_temp_path $1/tmp/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_header_timeout 300s;
$2
}
CONF
}
