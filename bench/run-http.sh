#!/usr/bin/env bash
# FiberLB against HAProxy (mode http) and nginx (http proxy) at equal thread counts, in
# one interleaved run: HTTP/1.1 keep-alive requests/s and latency at 64 and 256
# connections (wrk), a new connection per request (wrk, Connection: close), HTTPS
# keep-alive (wrk), HTTPS full handshakes/s (connrate: no session resumption), HTTP/2
# cleartext and over TLS (h2load), proxy CPU per request, and resident memory per idle
# keep-alive connection. Prints a table of medians and writes it to
# bench/results/http-latest.md.
#
# Run by hand, as root, on an otherwise idle machine (not in CI):   sudo bench/run-http.sh
# Knobs (environment): THREADS="1" RUNS=3 DURATION=5 IDLE_CONNS=10000 BASE_PORT=22000
#   ACCESS_LOG=0 CERT_KEY=ec BACKENDS=4 BACKEND_WORKERS=1 BODY_BYTES=128 H2_STREAMS=10
#   LOAD_THREADS= BENCH_NICE=-10 KEEP_WORK=0 SKIP_BUILD=0. See bench/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$HERE/lib.sh"
THREADS=${THREADS:-1}
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
IDLE_CONNS=${IDLE_CONNS:-10000}
BASE_PORT=${BASE_PORT:-22000}
ACCESS_LOG=${ACCESS_LOG:-0}
CERT_KEY=${CERT_KEY:-ec}
BACKENDS=${BACKENDS:-4}
BACKEND_WORKERS=${BACKEND_WORKERS:-1}
BODY_BYTES=${BODY_BYTES:-128}
H2_STREAMS=${H2_STREAMS:-10}
LOAD_THREADS=${LOAD_THREADS:-} # default: the proxies' thread count
# Client connections of each test (the 64/256 keep-alive pair is the issue's).
KA_CONNS=(64 256)
CLOSE_CONNS=64
TLS_CONNS=64
H2_CONNS=64
# Source addresses of connrate's clients (127.1.x.y), against TIME_WAIT port exhaustion.
SOURCES=64

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer (seconds)"
[[ $BACKENDS =~ ^[1-9]$ ]] || die "BACKENDS must be 1..9"
[[ $BODY_BYTES =~ ^[1-9][0-9]*$ && $BODY_BYTES -le 4000 ]] || die "BODY_BYTES must be 1..4000"
[[ $ACCESS_LOG == 0 || $ACCESS_LOG == 1 ]] || die "ACCESS_LOG must be 0 or 1"
[[ $CERT_KEY == ec || $CERT_KEY == rsa ]] || die "CERT_KEY must be ec or rsa"
bench_init fiberlb-bench-http
# shellcheck disable=SC2086 # THREADS is a list
pin_init $THREADS

BACKEND_PORTS=()
for ((i = 1; i <= BACKENDS; i++)); do BACKEND_PORTS+=($((BASE_PORT + 10 + i))); done
# HTTP (h1 and h2c by prior knowledge), HTTPS (h1 and h2 by ALPN); nginx needs a port of
# its own for h2c (a plain `listen … http2` there does not speak HTTP/1.1).
declare -A HTTP_FRONT=([fiberlb]=$((BASE_PORT + 101)) [haproxy]=$((BASE_PORT + 201)) [nginx]=$((BASE_PORT + 301)) [direct]=${BACKEND_PORTS[0]})
declare -A HTTPS_FRONT=([fiberlb]=$((BASE_PORT + 102)) [haproxy]=$((BASE_PORT + 202)) [nginx]=$((BASE_PORT + 302)))
declare -A H2C_FRONT=([fiberlb]=$((BASE_PORT + 101)) [haproxy]=$((BASE_PORT + 201)) [nginx]=$((BASE_PORT + 303)))

# ---------------------------------------------------------------- 1. tools and builds
apt_install_missing haproxy:haproxy nginx:nginx wrk:wrk h2load:nghttp2-client openssl:openssl curl:curl \
    ss:iproute2 pgrep:procps
build_release
raise_fd_limit
IDLE=$IDLE_CONNS
# Each idle connection costs the proxy one descriptor (its backend connections are
# pooled and few), but HAProxy reserves two per `maxconn` and refuses to start when the
# open-files limit cannot cover them.
if (((FD_LIMIT - 400) / 2 < IDLE)); then
    IDLE=$(((FD_LIMIT - 400) / 2 / 100 * 100))
    log "warning: open-files limit is $FD_LIMIT (hard); holding $IDLE idle connections instead of $IDLE_CONNS"
fi
((IDLE >= 1000)) || die "open-files limit $FD_LIMIT is too low for the idle-connection test"
raise_priority
ports_free "${BACKEND_PORTS[@]}" "${HTTP_FRONT[@]}" "${HTTPS_FRONT[@]}" "${H2C_FRONT[@]}"

# A self-signed certificate for bench.local and 127.0.0.1 (the clients connect to the IP;
# connrate sends SNI bench.local, wrk sends 127.0.0.1, h2load none).
CERT=$WORK/cert.pem KEY=$WORK/key.pem
if [[ $CERT_KEY == ec ]]; then
    keyopts=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
else
    keyopts=(-newkey rsa:2048)
fi
openssl req -x509 "${keyopts[@]}" -nodes -keyout "$KEY" -out "$CERT" -days 30 -subj /CN=bench.local \
    -addext 'subjectAltName=DNS:bench.local,IP:127.0.0.1' 2>"$WORK/openssl.err" || die "openssl req failed"
cat "$CERT" "$KEY" >"$WORK/haproxy.pem"

# ---------------------------------------------------------------- 2. backends
# One nginx with BACKENDS ports, each answering every request with the same small static
# body from memory (no disk, no logging); keep-alive without a request limit, so that the
# proxies' pooled backend connections are never recycled during a run.
BODY=$(head -c "$BODY_BYTES" /dev/zero | tr '\0' 'x')
{
    printf 'worker_processes %s;\nworker_rlimit_nofile %s;\ndaemon off;\n' "$BACKEND_WORKERS" "$FD_LIMIT"
    printf 'pid %s/backend.pid;\nerror_log %s/backend.error.log warn;\n' "$WORK" "$WORK"
    printf 'events { worker_connections %s; }\n' $((FD_LIMIT - 100))
    printf 'http {\n    access_log off;\n    keepalive_timeout 300s;\n    keepalive_requests 100000000;\n'
    printf '    default_type text/plain;\n'
    for p in "${BACKEND_PORTS[@]}"; do
        printf '    server { listen 127.0.0.1:%s reuseport backlog=4096; location / { return 200 "%s"; } }\n' "$p" "$BODY"
    done
    printf '}\n'
} >"$WORK/backend.conf"
nginx -q -t -e "$WORK/nginx-test.log" -c "$WORK/backend.conf" || die "nginx rejected $WORK/backend.conf"
start backend nginx -e "$WORK/backend.error.log" -c "$WORK/backend.conf"
for p in "${BACKEND_PORTS[@]}"; do wait_for 10 "backend :$p" port_open "$p"; done

# ---------------------------------------------------------------- proxies
# FiberLB's settings: everything default but where its access log goes.
if [[ $ACCESS_LOG == 1 ]]; then
    printf '[logging]\naccess_log = "%s/fiberlb-access.log"\n' "$WORK" >"$WORK/fiberlb.toml"
else
    printf '[logging]\naccess_log = "off"\n' >"$WORK/fiberlb.toml"
fi

start_fiberlb() {
    local t=$1 lb pool cert p
    fiberlb_serve "$t" --config "$WORK/fiberlb.toml"
    # A restart (idle_memory): the embedded store kept the configuration.
    [[ -e $FL_DATA/bench-configured ]] && return 0
    lb=$(fl lb create --org bench --name b -o json | json_id)
    pool=$(fl pool create --lb "$lb" --name web -o json | json_id)
    cert=$(fl cert create --org bench --name bench --cert-file "$CERT" --key-file "$KEY" -o json | json_id)
    [[ -n $lb && -n $pool && -n $cert ]] || die "fiberlb: could not create the LB, pool and certificate"
    for p in "${BACKEND_PORTS[@]}"; do
        fl backend add --pool "$pool" --name "b$p" --ip 127.0.0.1 --port "$p" >/dev/null
    done
    fl listener create --lb "$lb" --name http --protocol http --port "${HTTP_FRONT[fiberlb]}" --default-pool "$pool" >/dev/null
    fl listener create --lb "$lb" --name https --protocol https --port "${HTTPS_FRONT[fiberlb]}" \
        --certificate "$cert" --default-pool "$pool" >/dev/null
    touch "$FL_DATA/bench-configured"
}

start_haproxy() {
    local t=$1 cfg=$WORK/haproxy-$1.cfg p i=0
    {
        printf 'global\n    nbthread %s\n    maxconn %s\n    hard-stop-after 5s\n' "$t" $((IDLE + 50))
        [[ $ACCESS_LOG == 1 ]] && printf '    log stdout format raw local0\n'
        printf 'defaults\n    mode http\n    maxconn %s\n' $((IDLE + 50))
        printf '    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n'
        printf '    timeout http-request 10s\n    timeout http-keep-alive 60s\n'
        [[ $ACCESS_LOG == 1 ]] && printf '    log global\n    option httplog\n'
        # The request headers FiberLB adds by default.
        printf '    option forwardfor\n'
        printf '    unique-id-format %%{+X}o\\ %%ci:%%cp_%%fi:%%fp_%%Ts_%%rt:%%pid\n'
        printf 'frontend web\n    bind 127.0.0.1:%s\n' "${HTTP_FRONT[haproxy]}"
        printf '    bind 127.0.0.1:%s ssl crt %s alpn h2,http/1.1\n' "${HTTPS_FRONT[haproxy]}" "$WORK/haproxy.pem"
        printf '    http-request set-header X-Forwarded-Proto https if { ssl_fc }\n'
        printf '    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }\n'
        printf '    http-request set-header X-Forwarded-Host %%[req.hdr(host)]\n'
        printf '    http-request set-header X-Request-Id %%[unique-id] unless { req.hdr(x-request-id) -m found }\n'
        printf '    default_backend web\n'
        printf 'backend web\n    balance roundrobin\n'
        for p in "${BACKEND_PORTS[@]}"; do printf '    server b%s 127.0.0.1:%s\n' $((i++)) "$p"; done
    } >"$cfg"
    haproxy -q -c -f "$cfg" || die "haproxy rejected $cfg"
    start "haproxy-$t" haproxy -db -f "$cfg"
    PROXY_PID[haproxy]=$LAST_PID
}

# shellcheck disable=SC2016 # nginx variables, not shell ones
start_nginx() {
    local t=$1 cfg=$WORK/nginx-$1.conf p
    {
        printf 'worker_processes %s;\nworker_rlimit_nofile %s;\ndaemon off;\n' "$t" "$FD_LIMIT"
        printf 'pid %s/nginx-%s.pid;\nerror_log %s/nginx-%s.error.log warn;\n' "$WORK" "$t" "$WORK" "$t"
        printf 'events { worker_connections %s; }\n' $((FD_LIMIT - 100))
        printf 'http {\n'
        if [[ $ACCESS_LOG == 1 ]]; then
            printf '    access_log %s/nginx-access.log;\n' "$WORK"
        else
            printf '    access_log off;\n'
        fi
        # Like FiberLB's defaults: 60 s idle keep-alive, no per-connection request limit.
        printf '    keepalive_timeout 60s;\n    keepalive_requests 100000000;\n'
        printf '    upstream web {\n'
        for p in "${BACKEND_PORTS[@]}"; do printf '        server 127.0.0.1:%s;\n' "$p"; done
        # Enough idle backend connections for every client connection of the tests, so
        # that nginx does not close and reopen backend connections under load.
        printf '        keepalive 1024;\n        keepalive_requests 100000000;\n        keepalive_timeout 60s;\n    }\n'
        printf '    map $http_x_request_id $req_id { default $http_x_request_id; "" $request_id; }\n'
        printf '    server {\n'
        printf '        listen 127.0.0.1:%s reuseport backlog=4096;\n' "${HTTP_FRONT[nginx]}"
        printf '        listen 127.0.0.1:%s ssl http2 reuseport backlog=4096;\n' "${HTTPS_FRONT[nginx]}"
        printf '        listen 127.0.0.1:%s http2 reuseport backlog=4096;\n' "${H2C_FRONT[nginx]}"
        printf '        ssl_certificate %s;\n        ssl_certificate_key %s;\n' "$CERT" "$KEY"
        # nginx 1.22 leaves TLS 1.3 out by default; the others offer 1.2 and 1.3.
        printf '        ssl_protocols TLSv1.2 TLSv1.3;\n'
        printf '        location / {\n            proxy_pass http://web;\n            proxy_http_version 1.1;\n'
        printf '            proxy_set_header Connection "";\n            proxy_set_header Host $host;\n'
        # The request headers FiberLB adds by default.
        printf '            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n'
        printf '            proxy_set_header X-Forwarded-Proto $scheme;\n'
        printf '            proxy_set_header X-Forwarded-Host $host;\n'
        printf '            proxy_set_header X-Request-Id $req_id;\n'
        printf '        }\n    }\n}\n'
    } >"$cfg"
    nginx -q -t -e "$WORK/nginx-test.log" -c "$cfg" || die "nginx rejected $cfg"
    start "nginx-$t" nginx -e "$WORK/nginx-$t.error.log" -c "$cfg"
    PROXY_PID[nginx]=$LAST_PID
}

# listening PROXY PORT: PORT accepts connections; dies at once if the proxy has exited.
listening() {
    alive "${PROXY_PID[$1]}" ||
        die "$1 exited: $(cat "$WORK/$1-$T.err" "$WORK/$1-$T.error.log" 2>/dev/null | tail -n 3)"
    port_open "$2"
}
wait_listening() {
    local port
    for port in "${HTTP_FRONT[$1]}" "${HTTPS_FRONT[$1]}" "${H2C_FRONT[$1]}"; do
        wait_for 30 "$1 listening on :$port" listening "$1" "$port"
    done
}

# restart_proxy PROXY: replaces the proxy's process by a fresh one with the same
# configuration; the old one's logs are kept with a .N suffix.
RESTARTS=0
restart_proxy() {
    local p=$1 f
    stop_pid "${PROXY_PID[$p]}"
    RESTARTS=$((RESTARTS + 1))
    for f in "$WORK/$p-$T".{out,err,error.log}; do
        [[ -e $f ]] && mv "$f" "$f.$RESTARTS"
    done
    "start_$p" "$T"
    wait_listening "$p"
    pin_proxy "${PROXY_PID[$p]}" "$T"
}

# Before measuring: every proxy answers each protocol with the backend's body, and the
# protocol asked for is the one spoken. Also notes the TLS parameters each negotiates
# with an OpenSSL client (wrk's library).
check_proxy() {
    local p=$1 out
    out=$(curl -sS -m 5 -w ' %{http_code} %{http_version}' "http://127.0.0.1:${HTTP_FRONT[$p]}/" 2>&1) || die "$p: HTTP request failed: $out"
    [[ $out == "$BODY 200 1.1" ]] || die "$p: unexpected HTTP/1.1 answer: $out"
    [[ $p == direct ]] && return 0
    out=$(curl -sS -m 5 -k -w ' %{http_code} %{http_version}' --http1.1 "https://127.0.0.1:${HTTPS_FRONT[$p]}/" 2>&1) || die "$p: HTTPS request failed: $out"
    [[ $out == "$BODY 200 1.1" ]] || die "$p: unexpected HTTPS answer: $out"
    out=$(curl -sS -m 5 -w ' %{http_code} %{http_version}' --http2-prior-knowledge "http://127.0.0.1:${H2C_FRONT[$p]}/" 2>&1) || die "$p: h2c request failed: $out"
    [[ $out == "$BODY 200 2" ]] || die "$p: unexpected h2c answer: $out"
    out=$(curl -sS -m 5 -k -w ' %{http_code} %{http_version}' --http2 "https://127.0.0.1:${HTTPS_FRONT[$p]}/" 2>&1) || die "$p: h2 request failed: $out"
    [[ $out == "$BODY 200 2" ]] || die "$p: unexpected h2 (ALPN) answer: $out"
    TLS_INFO[$p]=$(openssl s_client -connect "127.0.0.1:${HTTPS_FRONT[$p]}" -brief </dev/null 2>&1 |
        awk -F': ' '/^Protocol version/ {v = $2} /^Ciphersuite/ {c = $2} /^(Server Temp Key|Peer Temp Key)/ {k = $2}
            END {printf "%s %s %s", v, c, k}')
}

# ---------------------------------------------------------------- 3. measurements
ERRS=$WORK/errors.tsv # threads  test  target  round  what
: >"$ERRS"
problem() {
    printf '%s\t%s\t%s\t%s\t%s\n' "$T" "$1" "$2" "$R" "$3" >>"$ERRS"
    log "$2 $1: $3"
}

# A wrk latency ("812.00us", "1.20ms", "2.00s") in milliseconds.
to_ms() { awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) printf "%.4f", v / 1000; else if (v ~ /ms$/) printf "%.4f", v + 0;
    else if (v ~ /m$/) printf "%.4f", v * 60000; else if (v ~ /s$/) printf "%.4f", v * 1000; else print "NA" }'; }

# proxy_cpu_us TARGET TICKS_BEFORE COUNT: the proxy's CPU time since TICKS_BEFORE per
# completed request (µs); empty for direct.
proxy_cpu_us() {
    local pid=${PROXY_PID[$1]:-} c1
    [[ $1 != direct && -n $pid && ${3:-0} -gt 0 ]] || return 0
    c1=$(cpu_ticks "$pid")
    awk -v t=$((c1 - $2)) -v n="$3" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}'
}

# wrk_test TARGET TEST CONNS URL [wrk args...]: records TEST_rps, TEST_p50, TEST_p99 (ms)
# and the proxy's CPU per request TEST_cpu; socket errors and non-2xx are reported.
wrk_test() {
    local p=$1 test=$2 conns=$3 url=$4 out c0=0 rps p50 p99 n errs non2xx lt=$LT
    shift 4
    ((lt <= conns)) || lt=$conns
    [[ $p != direct ]] && c0=$(cpu_ticks "${PROXY_PID[$p]}")
    out=$(timeout $((DURATION + 30)) wrk -t "$lt" -c "$conns" -d "${DURATION}s" --timeout 5s --latency "$@" "$url" 2>&1) || {
        problem "$test" "$p" "wrk failed: $(tail -n2 <<<"$out" | tr '\n' ' ')"
        return
    }
    echo "$out" >>"$WORK/wrk-$p.log"
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    errs=$(sed -n 's/^ *Socket errors: *//p' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
    [[ -n $errs ]] && problem "$test" "$p" "socket errors: $errs"
    [[ -n $non2xx ]] && problem "$test" "$p" "$non2xx non-2xx/3xx responses (of $n)"
    record "$T" "${test}_rps" "$p" "$R" "$rps"
    record "$T" "${test}_p50" "$p" "$R" "$([[ -n $p50 ]] && to_ms "$p50")"
    record "$T" "${test}_p99" "$p" "$R" "$([[ -n $p99 ]] && to_ms "$p99")"
    [[ $p != direct ]] && record "$T" "${test}_cpu" "$p" "$R" "$(proxy_cpu_us "$p" "$c0" "$n")"
    return 0
}

# h2_test TARGET TEST URL: h2load with H2_CONNS connections of H2_STREAMS concurrent
# streams for DURATION; records TEST_rps and TEST_cpu; checks the protocol spoken.
h2_test() {
    local p=$1 test=$2 url=$3 out c0 rps ok proto lt=$LT
    c0=$(cpu_ticks "${PROXY_PID[$p]}")
    out=$(timeout $((DURATION + 30)) h2load -t "$lt" -c "$H2_CONNS" -m "$H2_STREAMS" -D "$DURATION" "$url" 2>&1) || {
        problem "$test" "$p" "h2load failed: $(grep -v '^progress' <<<"$out" | tail -n2 | tr '\n' ' ')"
        return
    }
    grep -v '^progress\|^spawning\|^starting\|^Warm-up\|^Main benchmark' <<<"$out" >>"$WORK/h2load-$p.log"
    proto=$(sed -n 's/^Application protocol: *//p' <<<"$out")
    [[ $proto == h2 || $proto == h2c ]] || problem "$test" "$p" "h2load spoke ${proto:-?}, not HTTP/2"
    rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
    ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
    # Requests cut off when the duration ends count as "failed" but are not errors.
    awk '/^requests:/ {if ($12 + 0 > 0 || $14 + 0 > 0) exit 1}' <<<"$out" ||
        problem "$test" "$p" "$(grep '^requests:' <<<"$out")"
    awk '/^status codes:/ {if ($5 + $7 + $9 > 0) exit 1}' <<<"$out" ||
        problem "$test" "$p" "$(grep '^status codes:' <<<"$out")"
    record "$T" "${test}_rps" "$p" "$R" "$rps"
    record "$T" "${test}_cpu" "$p" "$R" "$(proxy_cpu_us "$p" "$c0" "${ok:-0}")"
}

# tls_handshakes TARGET: connrate opens TLS_CONNS concurrent connections in a loop, each
# a full handshake (resumption disabled, and checked) + GET + close; records hs and hs_cpu.
tls_handshakes() {
    local p=$1 out c0 rate total failed resumed
    c0=$(cpu_ticks "${PROXY_PID[$p]}")
    out=$(timeout $((DURATION + 30)) "$CONNRATE" rate --proto https --host bench.local --addr "127.0.0.1:${HTTPS_FRONT[$p]}" \
        --concurrency "$TLS_CONNS" --duration "$DURATION" --warmup 0.5 --threads "$LT" --sources "$SOURCES" 2>>"$WORK/connrate.err") || {
        problem hs "$p" "connrate failed: $out $(tail -n1 "$WORK/connrate.err")"
        return
    }
    rate=$(sed -n 's/^connects_per_sec=\([0-9]*\).*/\1/p' <<<"$out")
    total=$(sed -n 's/.* total_ok=\([0-9]*\).*/\1/p' <<<"$out")
    failed=$(sed -n 's/.* failed=\([0-9]*\).*/\1/p' <<<"$out")
    resumed=$(sed -n 's/.* resumed=\([0-9]*\).*/\1/p' <<<"$out")
    [[ $failed == 0 ]] || problem hs "$p" "$failed failed: $(tail -n1 "$WORK/connrate.err")"
    [[ $resumed == 0 ]] || problem hs "$p" "$resumed resumed handshakes (not full ones)"
    record "$T" hs "$p" "$R" "$rate"
    record "$T" hs_cpu "$p" "$R" "$(proxy_cpu_us "$p" "$c0" "${total:-0}")"
}

declare -A TLS_INFO=()
HOLDS=0
# Connections in flight while the idle ones are opened (and in the warm-up).
HOLD_CONCURRENCY=64

# The proxy's established client connections on its HTTP port.
client_conns() { ss -Htn state established "( sport = :${HTTP_FRONT[$1]} )" | wc -l; }
no_client_conns() { (($(client_conns "$1") == 0)); }

# The proxy's RSS (KiB) once it stops changing (it finishes the last requests'
# bookkeeping asynchronously), at most 4 s.
# Resident memory once it has stopped changing: the same reading for 2 s (10 samples
# 0.2 s apart), after at least 2 s, at most ~20 s. Idle connections are measured in their
# steady state: FiberLB lets go of an idle HTTP/1 connection's buffers after 100 ms and a
# worker thread returns freed pages to the OS within a second of going idle, where
# HAProxy and nginx free theirs right after each response; a single pair of equal
# readings 0.2 s apart caught FiberLB before either had happened.
settled_rss() {
    local pid=$1 prev=-1 now i same=0
    sleep 2
    for ((i = 0; i < 100; i++)); do
        now=$(rss_kib "$pid")
        if [[ $now == "$prev" ]]; then
            same=$((same + 1))
            ((same >= 10)) && break
        else
            same=0
        fi
        prev=$now
        sleep 0.2
    done
    echo "$now"
}

# Sets MEM_RESULT to the bytes of resident memory per idle keep-alive HTTP connection
# (one request answered on each). Each measurement starts a fresh proxy process: one that
# has served the load tests keeps megabytes of freed request buffers resident (allocator
# free lists, buffer pools), which idle connections would reuse unseen. The fresh one
# first serves HOLD_CONCURRENCY connections (one request each, then closed), so that
# the memory of that many requests in flight is in the "before" and only what each idle
# connection keeps is in the difference.
idle_memory() {
    local proxy=$1 pid name hold_pid before after held open out
    MEM_RESULT=NA
    restart_proxy "$proxy"
    pid=${PROXY_PID[$proxy]}
    out=$(timeout 60 "$CONNRATE" hold --proto http --addr "127.0.0.1:${HTTP_FRONT[$proxy]}" --count "$HOLD_CONCURRENCY" \
        --concurrency "$HOLD_CONCURRENCY" --sources "$SOURCES" --hold-secs 0 2>&1) || true
    if [[ $out != "held $HOLD_CONCURRENCY failed 0" ]]; then
        problem mem "$proxy" "warm-up failed: $out"
        return
    fi
    wait_for 30 "$proxy to close the warm-up connections" no_client_conns "$proxy"
    before=$(settled_rss "$pid")
    name=hold-$proxy-$((++HOLDS))
    start "$name" "$CONNRATE" hold --proto http --addr "127.0.0.1:${HTTP_FRONT[$proxy]}" --count "$IDLE" \
        --concurrency "$HOLD_CONCURRENCY" --sources "$SOURCES" --hold-secs 120
    hold_pid=$LAST_PID
    wait_for 60 "$IDLE idle connections through $proxy" grep -qs '^held' "$WORK/$name.out"
    held=$(awk '/^held/ {print $2 " " $4}' "$WORK/$name.out")
    after=$(settled_rss "$pid")
    open=$(client_conns "$proxy")
    stop_pid "$hold_pid"
    if [[ $held != "$IDLE 0" ]]; then
        problem mem "$proxy" "held/failed = $held of $IDLE ($(head -c 300 "$WORK/$name.err"))"
    elif ((open < IDLE)); then
        # The proxy closed some while we measured (an idle timeout): not comparable.
        problem mem "$proxy" "only $open of $IDLE connections still open at the measurement"
    else
        MEM_RESULT=$(((after - before) * 1024 / IDLE))
    fi
    # The next test starts only once the proxy has closed them.
    wait_for 60 "$proxy to close the idle connections" no_client_conns "$proxy"
}

CLK_TCK=$(getconf CLK_TCK)
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
NCPU=$(getconf _NPROCESSORS_ONLN) # not nproc: PIN=1 narrows this shell to fewer CPUs
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "cpu: $CPU x $NCPU; load average $LOAD_START; threads: $THREADS; runs: $RUNS; ${DURATION}s per test; idle connections: $IDLE"
((NCPU > 1)) || log "warning: one CPU: proxies and load tools share it"
TABLES=""
check_proxy direct

for T in $THREADS; do
    LT=${LOAD_THREADS:-$T}
    log "== $T thread(s): starting fiberlb, haproxy, nginx (load tools: $LT thread(s))"
    start_fiberlb "$T"
    start_haproxy "$T"
    start_nginx "$T"
    for p in "${PROXIES[@]}"; do
        wait_listening "$p"
        pin_proxy "${PROXY_PID[$p]}" "$T"
        check_proxy "$p"
        log "$p: TLS with an OpenSSL client: ${TLS_INFO[$p]}"
    done
    for ((R = 1; R <= RUNS; R++)); do
        # Rotate the order every round so no proxy always runs first.
        order=("${PROXIES[@]:$(((R - 1) % 3))}" "${PROXIES[@]:0:$(((R - 1) % 3))}")
        log "round $R/$RUNS (order: direct ${order[*]})"
        # Test by test, every proxy back to back: the samples one ratio compares are
        # seconds apart, not minutes, so the machine's drift (it is shared) hits them alike.
        for c in "${KA_CONNS[@]}"; do
            for p in direct "${order[@]}"; do
                wrk_test "$p" "ka$c" "$c" "http://127.0.0.1:${HTTP_FRONT[$p]}/"
            done
        done
        for p in direct "${order[@]}"; do
            wrk_test "$p" close "$CLOSE_CONNS" "http://127.0.0.1:${HTTP_FRONT[$p]}/" -H 'Connection: close'
        done
        for p in "${order[@]}"; do wrk_test "$p" tls "$TLS_CONNS" "https://127.0.0.1:${HTTPS_FRONT[$p]}/"; done
        for p in "${order[@]}"; do tls_handshakes "$p"; done
        for p in "${order[@]}"; do h2_test "$p" h2c "http://127.0.0.1:${H2C_FRONT[$p]}/"; done
        for p in "${order[@]}"; do h2_test "$p" h2 "https://127.0.0.1:${HTTPS_FRONT[$p]}/"; done
        for p in "${order[@]}"; do
            idle_memory "$p"
            record "$T" mem "$p" "$R" "$MEM_RESULT"
        done
        awk -F'\t' -v t="$T" -v r="$R" '$1 == t && $4 == r && $2 !~ /_p50$/ {printf "  %-10s %-8s %s\n", $2, $3, $5}' "$RAW" >&2
    done
    for p in "${PROXIES[@]}"; do
        stop_pid "${PROXY_PID[$p]}"
    done
    rows=""
    for c in "${KA_CONNS[@]}"; do
        rows+="$(row "$T" "ka${c}_rps" "HTTP/1.1 keep-alive, $c conns: requests/s" higher "%.0f")
$(row "$T" "ka${c}_p50" "HTTP/1.1 keep-alive, $c conns: latency p50 (ms)" lower "%.3f")
$(row "$T" "ka${c}_p99" "HTTP/1.1 keep-alive, $c conns: latency p99 (ms)" lower "%.3f")
$(row "$T" "ka${c}_cpu" "HTTP/1.1 keep-alive, $c conns: proxy CPU per request (µs)" lower "%.1f")
"
    done
    TABLES+="
### $T worker thread(s) per proxy

$TABLE_HEAD
$rows$(row "$T" close_rps "new connection per request ($CLOSE_CONNS conns): requests/s" higher "%.0f")
$(row "$T" close_p99 "new connection per request: latency p99 (ms)" lower "%.3f")
$(row "$T" close_cpu "new connection per request: proxy CPU per request (µs)" lower "%.1f")
$(row "$T" tls_rps "HTTPS keep-alive ($TLS_CONNS conns): requests/s" higher "%.0f")
$(row "$T" tls_p99 "HTTPS keep-alive: latency p99 (ms)" lower "%.3f")
$(row "$T" hs "HTTPS full handshakes/s (new TLS connection per request, $TLS_CONNS clients)" higher "%.0f")
$(row "$T" hs_cpu "HTTPS full handshake: proxy CPU per connection (µs)" lower "%.1f")
$(row "$T" h2c_rps "HTTP/2 cleartext (h2c), $H2_CONNS conns x $H2_STREAMS streams: requests/s" higher "%.0f")
$(row "$T" h2c_cpu "HTTP/2 cleartext: proxy CPU per request (µs)" lower "%.1f")
$(row "$T" h2_rps "HTTP/2 over TLS (ALPN h2), $H2_CONNS conns x $H2_STREAMS streams: requests/s" higher "%.0f")
$(row "$T" h2_cpu "HTTP/2 over TLS: proxy CPU per request (µs)" lower "%.1f")
$(row "$T" mem "RSS per idle keep-alive HTTP connection (bytes, $IDLE conns, fresh process)" lower "%.0f")
"
done

# ---------------------------------------------------------------- 4. report
if [[ -s $ERRS ]]; then
    CHECKS="Problems seen (threads, test, target, round, what):

\`\`\`
$(cat "$ERRS")
\`\`\`"
else
    CHECKS="No socket errors, no non-2xx responses, no failed or resumed handshakes, every idle connection held."
fi
mkdir -p "$HERE/results"
{
    echo "# FiberLB vs HAProxy vs nginx: L7 (HTTP) benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- CPU: $CPU, $NCPU logical CPUs; kernel $(uname -r)"
    echo "- load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- fiberlb $(fiberlb_version); $(haproxy -v | head -n1 | cut -d' ' -f1-3); $(nginx -v 2>&1 | cut -d' ' -f3); $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2); $(h2load --version | head -n1); $(openssl version | cut -d' ' -f1-2)"
    echo "- threads per proxy: $THREADS (fiberlb TOKIO_WORKER_THREADS, haproxy nbthread, nginx worker_processes); load tools: ${LOAD_THREADS:-same as the proxy} thread(s)"
    echo "- backends: $BACKENDS ports of one nginx ($BACKEND_WORKERS worker) answering a ${BODY_BYTES}-byte body from memory; access logs $([[ $ACCESS_LOG == 1 ]] && echo on || echo off) on all three"
    echo "- CPUs: $PIN_NOTE"
    echo "- medians of $RUNS interleaved rounds, ${DURATION}s per test; certificate: self-signed $([[ $CERT_KEY == ec ]] && echo 'ECDSA P-256' || echo 'RSA 2048')"
    for p in "${PROXIES[@]}"; do echo "- TLS negotiated by $p with an OpenSSL client: ${TLS_INFO[$p]:-?}"; done
    echo "- ratio: fiberlb / the better of haproxy and nginx; \"win\" = fiberlb at least as fast, or lower latency, CPU or memory"
    echo "- each round runs a test on every proxy back to back (order rotated per round); per-round ratio: that round's fiberlb / better other, its median over the rounds and the number of rounds fiberlb won"
    echo "- how each figure is measured: bench/README.md, section run-http.sh"
    echo "$TABLES"
    echo "$CHECKS"
    echo
    echo "Raw samples (threads, metric, target, round, value):"
    echo
    echo '```'
    cat "$RAW"
    echo '```'
} >"$HERE/results/http-latest.md"
echo "$TABLES"
echo "$CHECKS"
log "written to bench/results/http-latest.md"
