# Sourced by the benchmarks: the local origin they download from.
#
#   write_nginx_conf WORK LISTEN  the config alone (WORK/nginx.conf), for an nginx started elsewhere
#   start_origin WORK PROBE    nginx on a free port of 127.0.0.1 serving WORK/root (temporary files in WORK/tmp),
#                              waits until PROBE (a path under the root) answers; sets origin_pid and origin_port.

# write_nginx_conf WORK LISTEN: nginx's config for serving WORK/root on LISTEN (ADDRESS:PORT).
write_nginx_conf() {
    local work=$1 listen=$2
    mkdir -p "$work/tmp"
    cat > "$work/nginx.conf" <<CONF
daemon off;
worker_processes 2;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path $work/tmp;
    proxy_temp_path $work/tmp;
    fastcgi_temp_path $work/tmp;
    uwsgi_temp_path $work/tmp;
    scgi_temp_path $work/tmp;
    server { listen $listen; root $work/root; }
}
CONF
}

start_origin() {
    local work=$1 probe=$2
    origin_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    write_nginx_conf "$work" "127.0.0.1:$origin_port"
    nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log" &
    origin_pid=$!
    for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$origin_port/$probe" && break; sleep 0.05; done
}
