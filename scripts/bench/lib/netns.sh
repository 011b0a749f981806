# Two network namespaces for the network benchmarks (sourced): a client, where the downloader under test runs, and
# an origin, where nginx serves files on 10.99.0.1:8080 (and on each link's .1 address). Traffic goes only between
# them. Every process started with netns_spawn, and both namespaces, go on exit.
#
#   netns_setup WORK RATE LINK:SUBNET...   e.g. netns_setup "$work" 4mbit wired:77 wwan:78
#       each link is a veth pair NAME0 (client, 10.SUBNET.0.2/24) / NAME1 (origin, 10.SUBNET.0.1/24); the
#       origin→client direction is shaped by tc tbf at RATE; the client's default route goes by the first link.
#   netns_nginx WORK                       nginx in the origin, serving WORK/root
#   netns_spawn COMMAND...                 runs COMMAND in the background, stopped on exit
#
# Sets $client and $origin (the namespaces' names) and $netns_pids.

. "$(dirname "${BASH_SOURCE[0]}")/origin.sh"

netns_pids=()

netns_cleanup() {
    local status=$?
    for pid in "${netns_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${netns_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    ip netns del "$client" 2>/dev/null || true
    ip netns del "$origin" 2>/dev/null || true
    if [ $status -ne 0 ] && [ $status -ne 130 ] && [ $status -ne 143 ] && [ -s "$netns_work/agent.log" ]; then
        echo "--- the agent's log (last lines)" >&2
        tail -n 30 "$netns_work/agent.log" >&2
    fi
    rm -rf "$netns_work"
    exit $status
}

netns_setup() {
    netns_work=$1
    local rate=$2
    shift 2
    client=barge-bench-client-$$
    origin=barge-bench-origin-$$
    trap netns_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    ip netns add "$client"
    ip netns add "$origin"
    ip -n "$client" link set lo up
    ip -n "$origin" link set lo up
    ip -n "$origin" addr add 10.99.0.1/32 dev lo
    local first=""
    for link in "$@"; do
        local name=${link%:*} subnet=${link#*:}
        ip -n "$client" link add "${name}0" type veth peer name "${name}1"
        ip -n "$client" link set "${name}1" netns "$origin"
        ip -n "$origin" addr add "10.$subnet.0.1/24" dev "${name}1"
        ip -n "$origin" link set "${name}1" up
        ip -n "$client" addr add "10.$subnet.0.2/24" dev "${name}0"
        ip -n "$client" link set "${name}0" up
        tc -n "$origin" qdisc add dev "${name}1" root tbf rate "$rate" burst 32kbit latency 400ms
        [ -n "$first" ] || first="10.$subnet.0.1 dev ${name}0"
    done
    # shellcheck disable=SC2086
    ip -n "$client" route add default via $first
}

netns_spawn() {
    "$@" &
    netns_pids+=($!)
}

netns_nginx() {
    local work=$1
    # Workers run unprivileged: the work directory is readable by all.
    chmod 755 "$work"
    mkdir -p "$work/root"
    write_nginx_conf "$work" 0.0.0.0:8080
    netns_spawn ip netns exec "$origin" nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log"
    local probe
    probe=$(cd "$work/root" && ls | head -n 1)
    for _ in $(seq 1 100); do
        ip netns exec "$client" curl -s -o /dev/null --max-time 1 -r 0-0 "http://10.99.0.1:8080/$probe" && return 0
        sleep 0.05
    done
    echo "the origin did not start" >&2
    cat "$work/error.log" >&2
    return 1
}
