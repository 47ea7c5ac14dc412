# shellcheck shell=bash disable=SC2034  # variables used by the scripts that source this
# Helpers shared by bench/run.sh (L4) and bench/run-http.sh (L7); sourced, not run.
#
# Conventions: everything a script starts goes through `start` (PID kept in STARTED and
# killed on exit, by PID only); samples go to $RAW as "threads metric target round value"
# lines; `row` turns them into a markdown table row of medians with the FiberLB / best
# other ratio. The caller sets KEEP_WORK, BENCH_NICE and SKIP_BUILD (or leaves the
# defaults below) and calls `bench_init PREFIX` first.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
KEEP_WORK=${KEEP_WORK:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
# Scheduling weight of the benchmark's processes against everything else on the machine
# (autogroup nice, and plain nice). 0 leaves priorities alone.
BENCH_NICE=${BENCH_NICE:--10}
FIBERLB=$ROOT/target/release/fiberlb
CONNRATE=$BENCH_DIR/connrate/target/release/connrate
PROXIES=(fiberlb haproxy nginx)
declare -A PROXY_PID=()

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# bench_init PREFIX: checks root, makes the work directory $WORK (/tmp/PREFIX.XXXXXX),
# sets the exit trap that stops everything started and removes $WORK, and $RAW.
bench_init() {
    [[ $EUID -eq 0 ]] || die "run as root (apt-get, ulimit, ports)"
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    STARTED=() # every PID this script started, killed on exit
    AUTOGROUP_NICE="" # the session's autogroup nice before we changed it
    RAW=$WORK/raw.tsv # threads  metric  target  round  value
    : >"$RAW"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local rc=$? pid
    [[ -n $AUTOGROUP_NICE ]] && echo "$AUTOGROUP_NICE" >/proc/self/autogroup 2>/dev/null
    for pid in "${STARTED[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED[@]}"; do
        stop_pid "$pid"
    done
    if [[ $KEEP_WORK == 1 || $rc -ne 0 ]]; then
        log "logs and configs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}

# True while PID runs (a zombie awaiting our `wait` does not count).
alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# Stops a PID we started: SIGTERM, up to 5 s grace, SIGKILL; then reaps it and forgets
# it, so that cleanup never signals a PID the system has since given to someone else.
stop_pid() {
    local pid=$1 i keep=() p
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
    for p in "${STARTED[@]}"; do
        [[ $p == "$pid" ]] || keep+=("$p")
    done
    STARTED=("${keep[@]}")
}

# start NAME CMD...: runs CMD in the background with stdout/stderr in $WORK/NAME.{out,err};
# the PID is left in $LAST_PID.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    LAST_PID=$!
    STARTED+=("$LAST_PID")
}

# wait_for TIMEOUT_S DESCRIPTION CMD...: polls CMD until it succeeds.
wait_for() {
    local timeout=$1 what=$2 deadline=$((SECONDS + $1))
    shift 2
    until "$@"; do
        ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
        sleep 0.1
    done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_free() { ! ss -Htln "sport = :$1" | grep -q .; }
ports_free() {
    local p
    for p in "$@"; do
        port_free "$p" || die "port $p is in use (set BASE_PORT)"
    done
}

# apt_install_missing CHECK:PACKAGE...: installs PACKAGE when CHECK is missing; CHECK is a
# command name, or an absolute path that must exist.
apt_install_missing() {
    local pkgs=() spec check
    for spec in "$@"; do
        check=${spec%%:*}
        if [[ $check == /* ]]; then
            [[ -e $check ]] || pkgs+=("${spec#*:}")
        else
            command -v "$check" >/dev/null || pkgs+=("${spec#*:}")
        fi
    done
    if ((${#pkgs[@]})); then
        log "installing ${pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
}

# Builds fiberlb (release) and bench/connrate unless SKIP_BUILD=1 and both exist.
build_release() {
    command -v cargo >/dev/null || die "cargo not found (install the Rust toolchain)"
    if [[ $SKIP_BUILD == 1 && -x $FIBERLB && -x $CONNRATE ]]; then
        log "SKIP_BUILD=1: using the existing $FIBERLB and $CONNRATE"
    else
        log "building fiberlb (release) and bench/connrate"
        (cd "$ROOT" && cargo build --release -q -p fiberlb-node --bin fiberlb)
        cargo build --release -q --manifest-path "$BENCH_DIR/connrate/Cargo.toml"
    fi
}

# Raises the open-files limit as far as allowed; sets FD_LIMIT.
raise_fd_limit() {
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    ulimit -n 1048576 2>/dev/null || true
    FD_LIMIT=$(ulimit -n)
}

# On a shared machine, other jobs would otherwise take CPU time in bursts and decide the
# outcome. With autogroup scheduling (the default on desktop kernels) nice only matters
# within a session, so the session's group weight is raised too (and restored on exit).
raise_priority() {
    [[ $BENCH_NICE != 0 ]] || return 0
    if [[ -w /proc/self/autogroup ]]; then
        AUTOGROUP_NICE=$(awk '{print $3}' /proc/self/autogroup)
        echo "$BENCH_NICE" >/proc/self/autogroup 2>/dev/null || AUTOGROUP_NICE=""
    fi
    renice -n "$BENCH_NICE" -p $$ >/dev/null || true
}

json_id() { grep -o '"id": *"[^"]*"' | head -n1 | sed 's/.*"\([^"]*\)"$/\1/'; }

# fiberlb_serve THREADS [SERVE_ARGS...]: starts `fiberlb serve` with TOKIO_WORKER_THREADS,
# bound to 127.0.0.1, with a fresh data directory, and waits until it is ready. Sets
# PROXY_PID[fiberlb], FL_DATA and FL_GRPC for `fl` (the CLI against that node).
fiberlb_serve() {
    local t=$1
    shift
    FL_DATA=$WORK/fiberlb-data-$t
    mkdir -p "$FL_DATA"
    start "fiberlb-$t" env TOKIO_WORKER_THREADS="$t" "$FIBERLB" serve --data-dir "$FL_DATA" \
        --grpc-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --bind-address 127.0.0.1 "$@"
    PROXY_PID[fiberlb]=$LAST_PID
    wait_for 30 "fiberlb ready" grep -qs '^fiberlb ready' "$WORK/fiberlb-$t.out"
    FL_GRPC=$(sed -n 's/^fiberlb ready grpc=\([^ ]*\).*/\1/p' "$WORK/fiberlb-$t.out" | head -n1)
}
fl() { FIBERLB_TOKEN=$(cat "$FL_DATA/bootstrap-token") "$FIBERLB" --endpoint "http://$FL_GRPC" "$@"; }

# The PIDs of a proxy: the process and its children (nginx workers).
proxy_pids() {
    echo "$1"
    pgrep -P "$1" || true
}
rss_kib() {
    local pid sum=0 v
    for pid in $(proxy_pids "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
fd_count() {
    local pid sum=0
    for pid in $(proxy_pids "$1"); do
        sum=$((sum + $(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)))
    done
    echo "$sum"
}
# CPU time (user + system, clock ticks) of a proxy's processes.
cpu_ticks() {
    local pid sum=0 v
    for pid in $(proxy_pids "$1"); do
        v=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# PIN=1: proxies on CPUs 0..T-1, everything else the benchmark starts (backends, load
# tools) on the CPUs above the largest thread count, so that the kernel never puts a
# load generator on a proxy's CPU. Without it (the default) the scheduler places all of
# them, and with the load tools, the backend and the proxy keeping two vCPUs busy,
# a proxy's latency tail is mostly how often it gets preempted (README, L7 notes).
PIN=${PIN:-0}
PIN_NOTE="not pinned: the scheduler places proxies, backends and load tools"

# pin_init THREADS...: with PIN=1, moves this shell, and so everything it starts from
# now on, to the CPUs no proxy uses.
pin_init() {
    [[ $PIN == 1 ]] || return 0
    local n max=0 t
    n=$(getconf _NPROCESSORS_ONLN)
    for t in "$@"; do ((t > max)) && max=$t; done
    ((max < n)) || die "PIN=1 needs more CPUs ($n) than proxy threads ($max)"
    command -v taskset >/dev/null || die "PIN=1 needs taskset (util-linux)"
    taskset -p -c "$max-$((n - 1))" $$ >/dev/null || die "cannot pin the benchmark's shell"
    PIN_NOTE="pinned: a proxy with T threads on CPUs 0..T-1, backends and load tools on CPUs $max..$((n - 1))"
}

# pin_proxy PID THREADS: with PIN=1, the proxy's processes, every thread, onto CPUs
# 0..THREADS-1 (threads they start later inherit it).
pin_proxy() {
    [[ $PIN == 1 ]] || return 0
    local pid
    for pid in $(proxy_pids "$1"); do
        taskset -a -p -c "0-$(($2 - 1))" "$pid" >/dev/null || die "cannot pin process $pid"
    done
}

# record THREADS METRIC TARGET ROUND VALUE: one sample (an empty VALUE is recorded NA).
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-NA}" >>"$RAW"; }

# median THREADS METRIC TARGET: the median of the samples; NA when every sample failed,
# "none" when there is no sample at all.
# awk: the median of v[1..k] (k > 0), sorting v in place.
AWK_MEDIAN='function med(v, k,    i, j, x) {
    for (i = 2; i <= k; i++) {x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x}
    return (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
}'

median() {
    awk -F'\t' -v t="$1" -v m="$2" -v p="$3" "$AWK_MEDIAN"'
        $1 == t && $2 == m && $3 == p {n++; if ($5 != "NA") v[++k] = $5 + 0}
        END {
            if (!n) {print "none"; exit}
            if (!k) {print "NA"; exit}
            print med(v, k)
        }' "$RAW"
}

# paired THREADS METRIC higher|lower: the median over rounds of each round's own ratio
# fiberlb / best of the other two, with how many rounds fiberlb won ("1.02 (6/9)").
# The three samples of one round and metric run back to back (seconds apart), so this
# ratio cancels the machine's slow drift that a ratio of medians, taken over samples
# minutes apart, keeps. NA without a round where fiberlb and another proxy both measured.
paired() {
    awk -F'\t' -v t="$1" -v m="$2" -v h="$3" "$AWK_MEDIAN"'
        $1 == t && $2 == m && $5 != "NA" && ($3 == "fiberlb" || $3 == "haproxy" || $3 == "nginx") {
            v[$4, $3] = $5 + 0; rounds[$4] = 1
        }
        END {
            for (r in rounds) {
                if (!((r, "fiberlb") in v)) continue
                best = ""
                for (o = 0; o < 2; o++) {
                    p = o ? "nginx" : "haproxy"
                    if (!((r, p) in v)) continue
                    x = v[r, p]
                    if (best == "" || (h == "higher" ? x > best : x < best)) best = x
                }
                if (best == "" || best == 0) continue
                q[++k] = v[r, "fiberlb"] / best
                if (h == "higher" ? q[k] >= 1 : q[k] < 1) wins++
            }
            if (!k) {print "NA"; exit}
            printf "%.2f (%d/%d)", med(q, k), wins, k
        }' "$RAW"
}

# The header of the tables `row` fills.
TABLE_HEAD='| metric | fiberlb | haproxy | nginx | fiberlb / best other (medians) | per-round ratio: median (rounds won) | direct (no proxy) |
|---|---|---|---|---|---|---|'

# row THREADS METRIC LABEL higher|lower PRINTF_FORMAT: one markdown table row with the
# medians of fiberlb, haproxy, nginx, the ratio fiberlb / best of the other two (with
# win/loss), the paired per-round ratio and the direct (no proxy) median, "n/a" when
# there is no direct sample.
row() {
    local t=$1 metric=$2 label=$3 better=$4 fmt=$5 best="" ratio p
    declare -A med=()
    for p in "${PROXIES[@]}" direct; do
        med[$p]=$(median "$t" "$metric" "$p")
        [[ ${med[$p]} == none ]] && med[$p]=NA
    done
    [[ $(median "$t" "$metric" direct) == none ]] && med[direct]=n/a
    for p in haproxy nginx; do
        [[ ${med[$p]} == NA ]] && continue
        if [[ -z $best ]] || awk -v a="${med[$p]}" -v b="$best" -v h="$better" 'BEGIN {exit !((h == "higher") ? a > b : a < b)}'; then
            best=${med[$p]}
        fi
    done
    if [[ ${med[fiberlb]} == NA || -z $best ]] || awk -v b="$best" 'BEGIN {exit !(b == 0)}'; then
        ratio=NA
    else
        ratio=$(awk -v a="${med[fiberlb]}" -v b="$best" -v h="$better" 'BEGIN {
            r = a / b; win = (h == "higher") ? r >= 1 : r < 1
            printf "%.2f (%s)", r, win ? "win" : "loss" }')
    fi
    fmtv() {
        if [[ $1 == NA || $1 == n/a ]]; then
            echo "$1"
        else
            awk -v v="$1" -v f="$fmt" 'BEGIN {printf f, v}'
        fi
    }
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$(fmtv "${med[fiberlb]}")" "$(fmtv "${med[haproxy]}")" \
        "$(fmtv "${med[nginx]}")" "$ratio" "$(paired "$t" "$metric" "$better")" "$(fmtv "${med[direct]}")"
}

# One line naming the fiberlb commit (and whether node/ or api/ has uncommitted changes,
# and when the binary was built if the script did not build it).
fiberlb_version() {
    local v
    v=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null) || v='?'
    (cd "$ROOT" && git diff --quiet HEAD -- node api 2>/dev/null) || v+=' (+ uncommitted changes)'
    # An existing binary may be older than the tree.
    [[ $SKIP_BUILD == 1 ]] && v+=", binary built $(date -u -r "$FIBERLB" '+%Y-%m-%d %H:%M UTC') (SKIP_BUILD=1)"
    echo "$v"
}
