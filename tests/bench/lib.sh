# Shared by the benchmark scripts of tests/bench (dns.sh, dns_forward.sh, http.sh, cluster.sh),
# sourced first: sets ROOT, BENCH and PY, and defines logging, process stopping, the temp dir
# and its cleanup, port checks, the build, waiting for a quiet machine, machine facts and the
# report (meta.json, RESULTS.md through report.py). Log lines carry the script's name.
# shellcheck shell=bash

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/../.." && pwd)
PY=/usr/bin/python3
BENCH_NAME=${0##*/}

log() { printf '[%s %(%H:%M:%S)T] %s\n' "$BENCH_NAME" -1 "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# --- processes -------------------------------------------------------------------------------
# gone PID: the process has exited (a zombie, a child of ours not reaped yet, counts as gone).
gone() {
    ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

# wait_gone PID TENTHS: waits up to TENTHS tenths of a second for PID to be gone.
wait_gone() {
    local i
    for ((i = 0; i < $2; i++)); do
        gone "$1" && return 0
        sleep 0.1
    done
    gone "$1"
}

# stop_pid PID: stops a process we started: SIGTERM, up to 10 s, then SIGKILL. Never by name.
stop_pid() {
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 100; then
        log "pid $pid still alive after SIGTERM + 10 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# wait_ready PID WHAT TENTHS CHECK...: runs CHECK every 0.1 s until it succeeds, at most TENTHS
# times; dies if PID exits meanwhile or CHECK never succeeds.
wait_ready() {
    local pid=$1 what=$2 n=$3 i
    shift 3
    for ((i = 0; i < n; i++)); do
        kill -0 "$pid" 2>/dev/null || die "$what exited at start"
        "$@" && return 0
        sleep 0.1
    done
    die "$what not ready within $((n / 10)) s"
}

# proc_ticks PID...: utime+stime ticks of the processes (0 for those gone or empty).
proc_ticks() {
    local sum=0 pid t
    for pid in "$@"; do
        if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
            t=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')
            sum=$((sum + t))
        fi
    done
    echo $sum
}

# --- temp dir and cleanup --------------------------------------------------------------------
# bench_tmp PREFIX: creates TMP (/tmp/PREFIX.XXXXXX) and the traps that, on exit, stop by pid
# every process bench_pids prints (the script redefines it), show the last lines of the logs
# named in BENCH_LOGS (files in TMP) if the script failed, and remove TMP.
BENCH_LOGS=()
bench_pids() { :; }
bench_tmp() {
    TMP=$(mktemp -d "/tmp/$1.XXXXXX")
    trap bench_cleanup EXIT
    trap 'log interrupted; exit 130' INT TERM
}
bench_cleanup() {
    local rc=$? pid f
    trap - EXIT INT TERM
    for pid in $(bench_pids); do stop_pid "$pid"; done
    if [ $rc -ne 0 ]; then
        for f in ${BENCH_LOGS[@]+"${BENCH_LOGS[@]}"}; do
            [ -s "$TMP/$f" ] || continue
            log "last lines of $f:"
            tail -n 15 "$TMP/$f" >&2 || true
        done
    fi
    rm -rf "$TMP"
    exit $rc
}

# --- ports -----------------------------------------------------------------------------------
# port_free ADDR PORT: nothing accepts a TCP connection on ADDR:PORT.
port_free() { ! (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# port_busy ADDR PORT: something listens (TCP or UDP) on ADDR:PORT, or on the wildcard at PORT.
port_busy() {
    ss -Hlnut "( sport = :$2 )" 2>/dev/null | awk -v a="$1:$2" '
        $5 == a || $5 == "0.0.0.0:" substr(a, index(a, ":") + 1) || $5 ~ /^\[::\]:/ || $5 ~ /^\*:/ { f = 1 }
        END { exit !f }'
}

# --- servers ---------------------------------------------------------------------------------
# herald_ready URL NODE: the agent at URL knows a leader (in LEADER_SEEN) and has node NODE.
herald_ready() {
    local node
    LEADER_SEEN=$(curl -fsS -m 1 "$1/v1/status/leader" 2>/dev/null || true)
    node=$(curl -fsS -m 1 "$1/v1/catalog/node/$2" 2>/dev/null || true)
    [ -n "$LEADER_SEEN" ] && [ "$LEADER_SEEN" != '""' ] && [ -n "$node" ] && [ "$node" != null ]
}

# etcd_healthy URL: etcd at URL (http://ADDR:2379) reports itself healthy.
etcd_healthy() { curl -fsS -m 1 "$1/health" 2>/dev/null | grep '"health":"true"' >/dev/null; }

# --- the build -------------------------------------------------------------------------------
bench_commit() { COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown); }

# bench_dirty PATH: DIRTY=1 if the work tree has uncommitted changes outside PATH, else 0.
bench_dirty() {
    DIRTY=0
    [ -z "$(git -C "$ROOT" status --porcelain -- ":!$1" 2>/dev/null)" ] || DIRTY=1
}

# bench_build: builds Herald; sets HERALD, COMMIT and DIRTY. With HEAD=1 the committed HEAD
# (git archive into $TMP/src, make there), else make in the work tree (DIRTY=1 if it has
# uncommitted changes outside tests/bench). make's output goes to $TMP/make.log.
bench_build() {
    bench_commit
    DIRTY=0
    if [ "${HEAD:-0}" = 1 ]; then
        log "build HEAD ($COMMIT) from git archive in $TMP/src"
        mkdir -p "$TMP/src"
        git -C "$ROOT" archive HEAD | tar -x -C "$TMP/src" || die "git archive HEAD"
        make -C "$TMP/src" -j"$(nproc)" --no-print-directory >"$TMP/make.log" 2>&1 ||
            { tail -20 "$TMP/make.log" >&2; die "make (HEAD)"; }
        HERALD="$TMP/src/build/herald"
    else
        log "build (make)"
        make -C "$ROOT" --no-print-directory >"$TMP/make.log" 2>&1 ||
            { tail -20 "$TMP/make.log" >&2; die make; }
        HERALD="$ROOT/build/herald"
        bench_dirty tests/bench
    fi
    [ -x "$HERALD" ] || die "$HERALD not built"
}

# bench_copy_bin: from now on HERALD is a copy taken now ($TMP/herald): the work tree is shared,
# and someone's make may replace build/herald during the run.
bench_copy_bin() {
    cp "$HERALD" "$TMP/herald" || die "copy $HERALD"
    HERALD="$TMP/herald"
}

# --- the machine -----------------------------------------------------------------------------
# other_cpu S [PID...]: seconds of CPU that user processes other than this script and PID...
# used in the next S seconds.
other_cpu() {
    local s=$1
    shift
    $PY "$BENCH/cpu.py" snap "$TMP/cpu-q0.json"
    sleep "$s"
    $PY "$BENCH/cpu.py" snap "$TMP/cpu-q1.json"
    $PY "$BENCH/cpu.py" other "$TMP/cpu-q0.json" "$TMP/cpu-q1.json" $$ "$@" | cut -d' ' -f1
}

# bench_quiet S [PID...]: waits up to S seconds (0: not at all) for 5 quiet seconds, in which
# other programs (not PID...) use under 0.1 core; after S it goes ahead regardless. Then sets
# LOAD_START, the load average (1/5/15 min).
bench_quiet() {
    local quiet=$1 end other
    shift
    if [ "$quiet" -gt 0 ]; then
        log "waiting up to ${quiet}s for 5 quiet seconds (load $(cut -d' ' -f1-3 /proc/loadavg))"
        end=$((SECONDS + quiet))
        while :; do
            other=$(other_cpu 5 "$@")
            awk -v o="$other" 'BEGIN { exit !(o < 0.5) }' &&
                { log "quiet (other programs: ${other}s of CPU in 5 s)"; break; }
            [ $SECONDS -lt $end ] ||
                { log "not quiet after ${quiet}s (other programs: ${other}s of CPU in 5 s): going ahead"; break; }
        done
    fi
    LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
}

# bench_disk: FSYNC, the time of fdatasync after a 4 KiB overwrite in TMP (200 samples), and
# DATAFS, TMP's file system and device.
bench_disk() {
    FSYNC=$($PY - "$TMP" <<'EOF'
import os, sys, time
p = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o600)
os.write(fd, b"\0" * (4096 * 64)); os.fsync(fd)
ts = []
for i in range(200):
    t = time.perf_counter(); os.pwrite(fd, b"x" * 4096, (i % 64) * 4096); os.fdatasync(fd)
    ts.append(time.perf_counter() - t)
os.close(fd); os.unlink(p)
ts.sort()
print("fdatasync after a 4 KiB overwrite: median %.3f ms, p99 %.3f ms (200 samples)"
      % (ts[100] * 1e3, ts[198] * 1e3))
EOF
)
    # shellcheck disable=SC2034 # used by the scripts
    DATAFS=$(df -T "$TMP" | awk 'NR==2 {print $2 " (" $1 ")"}')
    log "$FSYNC"
}

# --- the report ------------------------------------------------------------------------------
# bench_meta KEY=VALUE...: writes $TMP/meta.json: date, machine (nproc, cpu, kernel), commit,
# dirty, command (with ORIG_ARGS), reps (REPS), load (LOAD_START and now), then the pairs given
# (a later pair replaces an earlier one; KEY:int=N and KEY:bool=0|1 for numbers and flags).
bench_meta() {
    $PY "$BENCH/report.py" meta "$TMP/meta.json" \
        date="$(date -u '+%Y-%m-%d %H:%M UTC')" nproc="$(nproc)" \
        cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
        kernel="Linux $(uname -r)" commit="$COMMIT" dirty:bool="$DIRTY" \
        command="tests/bench/$BENCH_NAME${ORIG_ARGS[*]:+ ${ORIG_ARGS[*]}}" reps:int="$REPS" \
        load="load average (1/5/15 min) before the run $LOAD_START, after $(cut -d' ' -f1-3 /proc/loadavg)" \
        "$@" || die "writing meta.json"
}

# bench_report CMD...: prints the report of the run (CMD TMP); with RECORD=1 also puts it into
# RESULTS.md (CMD TMP --record RESULTS.md).
bench_report() {
    echo
    if [ "${RECORD:-0}" = 1 ]; then
        "$@" "$TMP" --record "$BENCH/RESULTS.md"
    else
        "$@" "$TMP"
    fi
}
