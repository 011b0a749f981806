#!/usr/bin/env bash
# The main job on the built-in default: the agent mirroring the example manifests from a local origin.
#
#   scripts/run.sh [--seconds N]      (default: until every job settles, at most 60 s)
#
# Installs the system packages, builds barge, rewrites examples/manifests.d to fetch from an nginx on 127.0.0.1
# (barge-demo writes the origin's files and the demo config under $BARGE_DEMO_DIR, default /tmp/barge-demo), starts
# `barge agent` on it, and prints `barge status` every two seconds while the jobs fill up. Works offline.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=60
[ "${1:-}" = "--seconds" ] && limit=$2

bash scripts/install-deps.sh
swift build --product barge >/dev/null
swift build --product barge-demo >/dev/null
bin="$(swift build --show-bin-path)"
demo="${BARGE_DEMO_DIR:-/tmp/barge-demo}"
rm -rf "$demo"
mkdir -p "$demo"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
tus_port=$(free_port)
"$bin/barge-demo" examples/manifests.d "$demo" "$port" "$tus_port"
# The example logs go to a local tus server (tuspyserver, in the venv install-deps.sh made).
venv="${BARGE_TEST_VENV:-${HOME:-/root}/.cache/barge/test-venv}"
"$venv/bin/python" scripts/servers/tus-server.py --port "$tus_port" --dir "$demo/uploads" >/dev/null 2>"$demo/tus.log" &
tus_pid=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$tus_port") 2>/dev/null && break; sleep 0.1; done

mkdir -p "$demo/nginx"
cat > "$demo/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $demo/nginx/nginx.pid;
error_log $demo/nginx/error.log warn;
events { worker_connections 64; }
http {
    access_log $demo/nginx/access.log;
    default_type application/octet-stream;
    client_body_temp_path $demo/nginx; proxy_temp_path $demo/nginx; fastcgi_temp_path $demo/nginx;
    uwsgi_temp_path $demo/nginx; scgi_temp_path $demo/nginx;
    server { listen 127.0.0.1:$port; root $demo/origin; }
}
CONF
nginx -p "$demo/nginx" -c "$demo/nginx/nginx.conf" -e "$demo/nginx/error.log" &
nginx_pid=$!
"$bin/barge" agent --config "$demo/barge.yaml" 2>"$demo/agent.log" &
agent_pid=$!
cleanup() {
    kill "$agent_pid" 2>/dev/null; wait "$agent_pid" 2>/dev/null
    kill "$nginx_pid" "$tus_pid" 2>/dev/null || true
}
trap cleanup EXIT

echo "== barge agent --config $demo/barge.yaml (origin http://127.0.0.1:$port, files in $demo/root;"
echo "   logs shipped to the tus server http://127.0.0.1:$tus_port/files/, uploads in $demo/uploads)"
for _ in $(seq 1 50); do "$bin/barge" status --config "$demo/barge.yaml" >/dev/null 2>&1 && break; sleep 0.1; done
start=$SECONDS
while true; do
    status=$("$bin/barge" status --config "$demo/barge.yaml")
    echo
    echo "== barge status ($((SECONDS - start)) s)"
    echo "$status"
    busy=$(echo "$status" | awk 'NR > 2 && ($2 == "queued" || $2 == "connecting" || $2 == "transferring")' | wc -l)
    [ "$busy" -eq 0 ] || [ $((SECONDS - start)) -ge "$limit" ] && break
    sleep 2
done
echo
echo "== barge net (the agent's network monitor: each uplink, its cost and why, the rates now)"
"$bin/barge" net --config "$demo/barge.yaml"
echo
echo "== files mirrored under $demo/root"
find "$demo/root" -type f -exec ls -l {} + | sed "s|$demo/root||"
echo
echo "== logs shipped: the tus server's uploads in $demo/uploads; the sources moved aside"
ls -l "$demo/uploads" | grep -v '\.info$' | tail -n +2
find "$demo/root" -path '*shipped*' -type f | sed "s|$demo/root||"
echo
echo "The demo agent stops now. To keep it running: $bin/barge agent --config $demo/barge.yaml"
echo "and in another terminal: $bin/barge status --config $demo/barge.yaml  (or: barge watch)"
