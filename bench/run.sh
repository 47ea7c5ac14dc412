#!/usr/bin/env bash
# FiberLB against HAProxy (mode tcp) and nginx (stream {}) at equal thread counts, in one
# interleaved run: TCP throughput (iperf3, 1 and 4 streams), new connections per second
# (connect + 1-byte echo + close through the proxy), and resident memory per idle proxied
# connection. Prints a table of medians and writes it to bench/results/latest.md.
#
# Run by hand, as root, on an otherwise idle machine (not in CI):   sudo bench/run.sh
# Knobs (environment): THREADS="1 2" RUNS=5 IPERF_SECS=5 RATE_SECS=3 RATE_CONCURRENCY=64
#   IDLE_CONNS=10000 BASE_PORT=21000 BENCH_NICE=-10 KEEP_WORK=0 SKIP_BUILD=0. See bench/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$HERE/lib.sh"
THREADS=${THREADS:-"1 2"}
RUNS=${RUNS:-5}
IPERF_SECS=${IPERF_SECS:-5}
RATE_SECS=${RATE_SECS:-3}
RATE_CONCURRENCY=${RATE_CONCURRENCY:-64}
IDLE_CONNS=${IDLE_CONNS:-10000}
BASE_PORT=${BASE_PORT:-21000}
# Client-side source addresses (127.1.x.y) for the load tool: one address runs out of
# ephemeral ports within seconds at these rates (TIME_WAIT).
SOURCES=64

IPERF_PORT=$((BASE_PORT + 1))
ECHO_PORTS=($((BASE_PORT + 11)) $((BASE_PORT + 12)) $((BASE_PORT + 13)) $((BASE_PORT + 14)))
declare -A IPERF_FRONT=([fiberlb]=$((BASE_PORT + 101)) [haproxy]=$((BASE_PORT + 201)) [nginx]=$((BASE_PORT + 301)) [direct]=$IPERF_PORT)
declare -A ECHO_FRONT=([fiberlb]=$((BASE_PORT + 102)) [haproxy]=$((BASE_PORT + 202)) [nginx]=$((BASE_PORT + 302)) [direct]=${ECHO_PORTS[0]})

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
bench_init fiberlb-bench
# shellcheck disable=SC2086 # THREADS is a list
pin_init $THREADS

# ---------------------------------------------------------------- 1. tools and builds
apt_install_missing haproxy:haproxy nginx:nginx /usr/lib/nginx/modules/ngx_stream_module.so:libnginx-mod-stream \
    iperf3:iperf3 ss:iproute2 pgrep:procps
build_release

# Each idle proxied connection costs the proxy two descriptors (client and backend), so
# the hard limit caps how many we can hold; only root with CAP_SYS_RESOURCE can raise it.
raise_fd_limit
IDLE=$IDLE_CONNS
if (((FD_LIMIT - 400) / 2 < IDLE)); then
    IDLE=$(((FD_LIMIT - 400) / 2 / 100 * 100))
    log "warning: open-files limit is $FD_LIMIT (hard); holding $IDLE idle connections instead of $IDLE_CONNS"
fi
((IDLE >= 1000)) || die "open-files limit $FD_LIMIT is too low for the idle-connection test"

raise_priority

ports_free $IPERF_PORT "${ECHO_PORTS[@]}" "${IPERF_FRONT[@]}" "${ECHO_FRONT[@]}"

# ---------------------------------------------------------------- 2. backends
start iperf3 iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" --idle-timeout 60
wait_for 10 "iperf3 server" port_open "$IPERF_PORT"
start echo "$CONNRATE" serve --threads 1 --listen "$(printf '127.0.0.1:%s,' "${ECHO_PORTS[@]}" | sed 's/,$//')"
for p in "${ECHO_PORTS[@]}"; do wait_for 10 "echo backend :$p" port_open "$p"; done

# ---------------------------------------------------------------- proxies
start_fiberlb() {
    local t=$1 lb pool_iperf pool_echo p
    # TCP keepalive off, as HAProxy and nginx leave it (the same socket options on all
    # three; FiberLB's default would cost two setsockopt calls per backend connection).
    printf '[proxy]\ntcp_keepalive_seconds = 0\n' >"$WORK/fiberlb-l4.toml"
    fiberlb_serve "$t" --config "$WORK/fiberlb-l4.toml"
    lb=$(fl lb create --org bench --name b -o json | json_id)
    pool_iperf=$(fl pool create --lb "$lb" --name iperf -o json | json_id)
    pool_echo=$(fl pool create --lb "$lb" --name echo -o json | json_id)
    [[ -n $lb && -n $pool_iperf && -n $pool_echo ]] || die "fiberlb: could not create the LB and pools"
    fl backend add --pool "$pool_iperf" --name iperf --ip 127.0.0.1 --port "$IPERF_PORT" >/dev/null
    for p in "${ECHO_PORTS[@]}"; do
        fl backend add --pool "$pool_echo" --name "e$p" --ip 127.0.0.1 --port "$p" >/dev/null
    done
    fl listener create --lb "$lb" --name iperf --protocol tcp --port "${IPERF_FRONT[fiberlb]}" --default-pool "$pool_iperf" >/dev/null
    fl listener create --lb "$lb" --name echo --protocol tcp --port "${ECHO_FRONT[fiberlb]}" --default-pool "$pool_echo" >/dev/null
}

start_haproxy() {
    local t=$1 cfg=$WORK/haproxy-$1.cfg p i=0
    {
        printf 'global\n    nbthread %s\n    maxconn %s\n    hard-stop-after 5s\n' "$t" $((IDLE + 50))
        printf 'defaults\n    mode tcp\n    maxconn %s\n    timeout connect 5s\n    timeout client 300s\n    timeout server 300s\n' $((IDLE + 50))
        printf 'frontend iperf\n    bind 127.0.0.1:%s\n    default_backend iperf\n' "${IPERF_FRONT[haproxy]}"
        printf 'backend iperf\n    server iperf 127.0.0.1:%s\n' "$IPERF_PORT"
        printf 'frontend echo\n    bind 127.0.0.1:%s\n    default_backend echo\n' "${ECHO_FRONT[haproxy]}"
        printf 'backend echo\n    balance roundrobin\n'
        for p in "${ECHO_PORTS[@]}"; do printf '    server e%s 127.0.0.1:%s\n' $((i++)) "$p"; done
    } >"$cfg"
    haproxy -q -c -f "$cfg" || die "haproxy rejected $cfg"
    start "haproxy-$t" haproxy -db -f "$cfg"
    PROXY_PID[haproxy]=$LAST_PID
}

start_nginx() {
    local t=$1 cfg=$WORK/nginx-$1.conf p
    {
        printf 'load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n'
        printf 'worker_processes %s;\nworker_rlimit_nofile %s;\ndaemon off;\n' "$t" "$FD_LIMIT"
        printf 'pid %s/nginx-%s.pid;\nerror_log %s/nginx-%s.error.log warn;\n' "$WORK" "$t" "$WORK" "$t"
        printf 'events { worker_connections %s; }\n' $((FD_LIMIT - 100))
        # Half-closes forwarded, as FiberLB and HAProxy do: nginx's default closes both
        # sides at the first FIN (fewer system calls, but it cuts off a backend still
        # answering a client that has finished sending).
        printf 'stream {\n    proxy_timeout 300s;\n    proxy_half_close on;\n'
        printf '    upstream iperf { server 127.0.0.1:%s; }\n' "$IPERF_PORT"
        printf '    upstream echo {\n'
        for p in "${ECHO_PORTS[@]}"; do printf '        server 127.0.0.1:%s;\n' "$p"; done
        printf '    }\n'
        printf '    server { listen 127.0.0.1:%s reuseport; proxy_pass iperf; }\n' "${IPERF_FRONT[nginx]}"
        printf '    server { listen 127.0.0.1:%s reuseport; proxy_pass echo; }\n}\n' "${ECHO_FRONT[nginx]}"
    } >"$cfg"
    nginx -q -t -e "$WORK/nginx-test.log" -c "$cfg" || die "nginx rejected $cfg"
    start "nginx-$t" nginx -e "$WORK/nginx-$t.error.log" -c "$cfg"
    PROXY_PID[nginx]=$LAST_PID
}

# ---------------------------------------------------------------- 3. measurements

# iperf3 receiver bitrate in Gbit/s, or NA.
iperf_gbps() {
    local port=$1 streams=$2 out
    out=$(timeout $((IPERF_SECS + 20)) iperf3 -c 127.0.0.1 -p "$port" -t "$IPERF_SECS" -P "$streams" -f m --connect-timeout 3000 2>&1) || {
        log "iperf3 to :$port failed: $(tail -n1 <<<"$out")"
        echo NA
        return
    }
    grep receiver <<<"$out" | tail -n1 | awk '{for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") {printf "%.3f\n", $(i-1) / 1000; exit}}'
}

# Prints "CONNECTIONS_PER_S PROXY_CPU_US_PER_CONNECTION" for target $1 (NA when unknown).
conn_rate() {
    local target=$1 port=${ECHO_FRONT[$1]} pid=${PROXY_PID[$1]:-} out c0=0 c1=0 rate total cpu=NA
    [[ -n $pid ]] && c0=$(cpu_ticks "$pid")
    out=$("$CONNRATE" rate --addr "127.0.0.1:$port" --concurrency "$RATE_CONCURRENCY" --duration "$RATE_SECS" \
        --sources "$SOURCES" 2>>"$WORK/connrate.err") || {
        log "connection rate through $target failed: $out"
        echo NA NA
        return
    }
    [[ -n $pid ]] && c1=$(cpu_ticks "$pid")
    grep -q 'failed=0' <<<"$out" || log "connection rate through $target had failures: $out"
    rate=$(sed -n 's/^connects_per_sec=\([0-9]*\).*/\1/p' <<<"$out")
    total=$(sed -n 's/.* total_ok=\([0-9]*\).*/\1/p' <<<"$out")
    if [[ -n $pid && ${total:-0} -gt 0 ]]; then
        cpu=$(awk -v t=$((c1 - c0)) -v n="$total" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
    fi
    echo "${rate:-NA} $cpu"
}

declare -A RSS_BASE=() FD_BASE=()
HOLDS=0

# Sets MEM_RESULT to the bytes of resident memory per idle proxied connection, against
# the RSS measured before the first hold (later rounds reuse memory the allocator kept, so
# a per-round "before" would hide it). Runs in the main shell: it keeps RSS_BASE and
# registers the holder's PID for cleanup.
idle_memory() {
    local proxy=$1 pid=${PROXY_PID[$1]} name hold_pid after prev i held
    if [[ -z ${RSS_BASE[$proxy]:-} ]]; then
        RSS_BASE[$proxy]=$(rss_kib "$pid")
        FD_BASE[$proxy]=$(fd_count "$pid")
    fi
    name=hold-$proxy-$((++HOLDS))
    start "$name" "$CONNRATE" hold --addr "127.0.0.1:${ECHO_FRONT[$proxy]}" --count "$IDLE" --concurrency 256 \
        --sources "$SOURCES" --hold-secs 300
    hold_pid=$LAST_PID
    wait_for 120 "$IDLE idle connections through $proxy" grep -qs '^held' "$WORK/$name.out"
    held=$(awk '/^held/ {print $2 " " $4}' "$WORK/$name.out")
    # Let RSS settle: the proxies finish the last round trips' bookkeeping asynchronously.
    prev=-1
    for ((i = 0; i < 20; i++)); do
        after=$(rss_kib "$pid")
        [[ $after == "$prev" ]] && break
        prev=$after
        sleep 0.2
    done
    stop_pid "$hold_pid"
    if [[ $held != "$IDLE 0" ]]; then
        log "$proxy: held/failed = $held of $IDLE ($(head -c 300 "$WORK/$name.err"))"
        MEM_RESULT=NA
    else
        MEM_RESULT=$(((after - RSS_BASE[$proxy]) * 1024 / IDLE))
    fi
    # The next test starts only once the proxy has closed both sides of every connection.
    fds_back() { (($(fd_count "$pid") <= FD_BASE[$proxy] + 16)); }
    wait_for 60 "$proxy to close the idle connections" fds_back
}

CLK_TCK=$(getconf CLK_TCK)
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
NCPU=$(getconf _NPROCESSORS_ONLN) # not nproc: PIN=1 narrows this shell to fewer CPUs
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "cpu: $CPU x $NCPU; load average $LOAD_START; threads: $THREADS; runs: $RUNS; idle connections: $IDLE"
((NCPU > 1)) || log "warning: one CPU: proxies and load tools share it"
TABLES=""

for t in $THREADS; do
    log "== $t thread(s): starting fiberlb, haproxy, nginx"
    start_fiberlb "$t"
    start_haproxy "$t"
    start_nginx "$t"
    for p in "${PROXIES[@]}"; do
        wait_for 30 "$p listening" port_open "${ECHO_FRONT[$p]}"
        wait_for 30 "$p listening" port_open "${IPERF_FRONT[$p]}"
        pin_proxy "${PROXY_PID[$p]}" "$t"
        # One short check that the proxy really carries traffic before measuring it.
        "$CONNRATE" rate --addr "127.0.0.1:${ECHO_FRONT[$p]}" --concurrency 8 --duration 0.5 --warmup 0 \
            --sources "$SOURCES" >/dev/null 2>>"$WORK/connrate.err" || die "$p does not proxy to the echo backends"
    done
    RSS_BASE=() FD_BASE=()
    for ((r = 1; r <= RUNS; r++)); do
        # Rotate the order every round so no proxy always runs first (or right after
        # another one's burst of TIME_WAIT sockets).
        order=("${PROXIES[@]:$(((r - 1) % 3))}" "${PROXIES[@]:0:$(((r - 1) % 3))}")
        log "round $r/$RUNS (order: direct ${order[*]})"
        # Test by test, every proxy back to back: the samples one ratio compares are
        # seconds apart, not minutes, so the machine's drift (it is shared) hits them alike.
        for p in direct "${order[@]}"; do record "$t" tput1 "$p" "$r" "$(iperf_gbps "${IPERF_FRONT[$p]}" 1)"; done
        for p in direct "${order[@]}"; do record "$t" tput4 "$p" "$r" "$(iperf_gbps "${IPERF_FRONT[$p]}" 4)"; done
        for p in direct "${order[@]}"; do
            read -r rate cpu < <(conn_rate "$p")
            record "$t" rate "$p" "$r" "$rate"
            [[ $p == direct ]] || record "$t" cpu "$p" "$r" "$cpu"
        done
        for p in "${order[@]}"; do
            idle_memory "$p"
            record "$t" mem "$p" "$r" "$MEM_RESULT"
        done
        awk -F'\t' -v t="$t" -v r="$r" '$1 == t && $4 == r {printf "  %-6s %-8s %s\n", $2, $3, $5}' "$RAW" >&2
    done
    for p in "${PROXIES[@]}"; do
        stop_pid "${PROXY_PID[$p]}"
    done
    TABLES+="
### $t worker thread(s) per proxy

$TABLE_HEAD
$(row "$t" tput1 "TCP throughput, 1 stream (Gbit/s)" higher "%.2f")
$(row "$t" tput4 "TCP throughput, 4 streams (Gbit/s)" higher "%.2f")
$(row "$t" rate "new connections/s (connect, 1-byte echo, close)" higher "%.0f")
$(row "$t" cpu "proxy CPU per new connection (µs, user+sys)" lower "%.1f")
$(row "$t" mem "RSS per idle proxied connection (bytes, $IDLE conns)" lower "%.0f")
"
done

# ---------------------------------------------------------------- 4. report
mkdir -p "$HERE/results"
{
    echo "# FiberLB vs HAProxy vs nginx (stream): L4 benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- CPU: $CPU, $NCPU logical CPUs; kernel $(uname -r)"
    echo "- load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- fiberlb $(fiberlb_version); $(haproxy -v | head -n1 | cut -d' ' -f1-3); $(nginx -v 2>&1 | cut -d' ' -f3); $(iperf3 -v | head -n1 | cut -d' ' -f1-2)"
    echo "- threads per proxy: $THREADS (fiberlb TOKIO_WORKER_THREADS, haproxy nbthread, nginx worker_processes)"
    echo "- same socket semantics on all three: TCP keepalive off (fiberlb tcp_keepalive_seconds = 0), half-closes forwarded (nginx proxy_half_close on)"
    echo "- CPUs: $PIN_NOTE"
    echo "- medians of $RUNS interleaved rounds; iperf3 -t $IPERF_SECS; connection rate: $RATE_CONCURRENCY concurrent clients for ${RATE_SECS}s; $IDLE idle connections"
    echo "- ratio: fiberlb / the better of haproxy and nginx; \"win\" = fiberlb at least as fast, or uses less memory"
    echo "- each round runs a test on every proxy back to back (order rotated per round); per-round ratio: that round's fiberlb / better other, its median over the rounds and the number of rounds fiberlb won"
    echo "$TABLES"
    echo "Raw samples (threads, metric, target, round, value):"
    echo
    echo '```'
    cat "$RAW"
    echo '```'
} >"$HERE/results/latest.md"
echo "$TABLES"
log "written to bench/results/latest.md"
