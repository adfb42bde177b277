#!/usr/bin/env bash
# HTTP benchmark of one single-node Herald server on loopback:
#   - KV PUT/s (each PUT is a Raft commit + an LMDB write txn, group-committed per loop
#     iteration) at c=1, c=16 and c=64, with wrk latency p50/p99;
#   - KV GET/s of one key, default consistency and ?stale, c=64;
#   - memory of N (5,000) parked blocking queries, one TCP connection each (tests/bench/park.py),
#     on the fresh agent and again after the throughput runs, and the time one PUT takes to
#     wake them all; with the second set parked, PUT c=64 to other keys runs again (the cost
#     of parked KV queries for writers, and the memory under both);
#   - optionally the same PUT/GET mix against a single-member etcd (if `etcd` is installed:
#     Debian's etcd-server), through its v3 JSON gateway, as a ratio.
# Throughput tests are interleaved over --reps repetitions (median, min–max in the report).
#
# usage: tests/bench/http.sh [--record] [--head] [--wait-quiet S] [--reps N] [--duration SECONDS]
#                            [--park N] [--no-etcd]
#   --record        replace the http.sh section of tests/bench/RESULTS.md with this run's figures
#   --head          measure the committed HEAD: build `git archive HEAD` in the temp dir instead
#                   of running make in the work tree (whose uncommitted edits are left out)
#   --wait-quiet S  first wait up to S seconds for 5 quiet seconds (other programs using under
#                   0.1 core), as the machine may be shared; after S the run goes ahead anyway
#   --reps N (3), --duration S (10, per wrk run), --park N (5000), --no-etcd
#
# Uses 127.0.0.50 (Herald: HTTP 8500, Raft 8300) and 127.0.0.51 (etcd: 2379/2380); both must be
# free. Everything the script starts is stopped by pid on exit, failure or Ctrl-C; its temp
# dir is removed. Needs: make's build deps, wrk, curl, ss, /usr/bin/python3.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ADDR=127.0.0.50
URL="http://$ADDR:8500"
EADDR=127.0.0.51
EURL="http://$EADDR:2379"
NODE=bench

RECORD=0
HEAD=0
QUIET=0
REPS=3
DUR=10
PARK=5000
ETCD=1
ORIG_ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
    --record) RECORD=1 ;;
    --head) HEAD=1 ;;
    --wait-quiet) QUIET=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --park) PARK=$2; shift ;;
    --no-etcd) ETCD=0 ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "http.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $REPS =~ ^[1-9][0-9]?$ && $DUR =~ ^[1-9][0-9]{0,2}$ && $PARK =~ ^[1-9][0-9]{0,4}$ &&
    $QUIET =~ ^[0-9]{1,4}$ ]] ||
    { echo "http.sh: --reps 1..99, --duration 1..999, --park 1..99999, --wait-quiet 0..9999" >&2
      exit 2; }

for t in wrk curl ss; do command -v $t >/dev/null || die "$t not found"; done
[ -x $PY ] || die "$PY not found"
if [ $ETCD = 1 ] && ! command -v etcd >/dev/null; then
    log "etcd not installed (Debian: apt-get install etcd-server): skipping the etcd comparison"
    ETCD=0
fi

# One connection per parked query on both ends (the agent raises its own soft limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((PARK + 200)) ] ||
    die "open-file limit $(ulimit -n) is too low for --park $PARK"

bench_tmp herald-bench
HPID=
EPID=
PARKPID=
bench_pids() { echo "$PARKPID $HPID $EPID"; }
BENCH_LOGS=(herald.log etcd.log)

port_free $ADDR 8500 || die "$ADDR:8500 is in use"
[ $ETCD = 0 ] || port_free $EADDR 2379 || die "$EADDR:2379 is in use"

bench_build

# --- machine facts -------------------------------------------------------------------------
bench_disk
bench_quiet "$QUIET"
awk '{ exit !($1 > 0.5) }' /proc/loadavg &&
    log "warning: load average ${LOAD_START%% *} before the run: something else is busy; figures may be low"

# --- start Herald --------------------------------------------------------------------------
# Every parked query comes from this one client address: raise limits.http_max_conns_per_client
# (default 200) and http_max_conns (default 16384) above --park.
echo "{\"limits\": {\"http_max_conns\": $((PARK + 1000)), \"http_max_conns_per_client\": $((PARK + 1000))}}" \
    >"$TMP/herald.json"
HERALD_ARGS=(agent -server -bootstrap-expect 1 -data-dir "$TMP/herald" -bind "$ADDR" -client "$ADDR"
    -node "$NODE" -log-level warn -config-file "$TMP/herald.json")
mkdir -p "$TMP/herald"
"$HERALD" "${HERALD_ARGS[@]}" >"$TMP/herald.log" 2>&1 &
HPID=$!
log "herald pid $HPID: ${HERALD_ARGS[*]}"
wait_ready $HPID herald 300 herald_ready "$URL" "$NODE"
log "herald ready: leader $LEADER_SEEN"

alive() { kill -0 $HPID 2>/dev/null || die "herald died (see its log)"; }

# --- memory of parked blocking queries, fresh agent -----------------------------------------
log "park $PARK blocking queries (fresh agent)"
$PY "$BENCH/park.py" --addr $ADDR --pid $HPID -n "$PARK" >"$TMP/park-fresh.json" ||
    die "park.py (fresh agent) failed: $(cat "$TMP/park-fresh.json")"
log "$(cat "$TMP/park-fresh.json")"
alive

# --- etcd (optional) -----------------------------------------------------------------------
ETCD_DESC=
if [ $ETCD = 1 ]; then
    mkdir -p "$TMP/etcd"
    etcd --name bench --data-dir "$TMP/etcd" --listen-client-urls "$EURL" \
        --advertise-client-urls "$EURL" --listen-peer-urls "http://$EADDR:2380" \
        --initial-advertise-peer-urls "http://$EADDR:2380" \
        --initial-cluster "bench=http://$EADDR:2380" --log-level warn >"$TMP/etcd.log" 2>&1 &
    EPID=$!
    wait_ready $EPID etcd 300 etcd_healthy "$EURL"
    curl -fsS -m 5 "$EURL/v3/kv/put" -d '{"key":"YmVuY2gva2V5MQ==","value":"'"$(head -c 100 /dev/zero | tr '\0' v | base64 -w0)"'"}' >/dev/null ||
        die "etcd put bench/key1"
    ETCD_DESC="$(etcd --version | head -1) (Debian etcd-server), one member on $EADDR, defaults (fsync on), v3 JSON gateway with tests/bench/etcd_put.lua / etcd_get.lua"
    log "etcd pid $EPID ready"
fi

# --- throughput ----------------------------------------------------------------------------
curl -fsS -m 5 -X PUT --data-binary "$(head -c 100 /dev/zero | tr '\0' v)" "$URL/v1/kv/bench/key1" |
    grep -q true || die "PUT bench/key1"

: >"$TMP/wrk.tsv"
# CPU accounting around each wrk run: Herald's and etcd's utime+stime (/proc/PID/stat) give
# the server's CPU per request; tests/bench/cpu.py sums what every other user process used
# meanwhile ("other": on a 2-core machine anything else running skews the figures; the report
# flags it), and kernel threads apart (block I/O completions of the server's own writes). wrk
# itself has exited by the second snapshot and is not counted.
HZ=$(getconf CLK_TCK)
# wait_quiet S: wait up to S seconds for 2 s in which other user processes use < 0.2 s of CPU.
wait_quiet() {
    local end=$((SECONDS + $1)) other
    while [ $SECONDS -lt $end ]; do
        other=$(other_cpu 2 "$HPID" ${EPID:+"$EPID"})
        awk -v o="$other" 'BEGIN { exit !(o < 0.2) }' && return 0
    done
    return 0
}
# run_wrk NAME REP THREADS CONNS SCRIPT URL [ENV=VAL]
# A run during which other user programs took over 0.1 core on average is disturbed (2 cores):
# it is run again, after waiting up to 20 s for quiet, at most twice; the last run counts and
# the report shows its "other CPU".
run_wrk() {
    local name=$1 rep=$2 t=$3 c=$4 script=$5 url=$6 line h0 h1 e0 e1 other try
    shift 6
    for ((try = 1; try <= 3; try++)); do
        $PY "$BENCH/cpu.py" snap "$TMP/cpu-a.json"
        h0=$(proc_ticks "$HPID") e0=$(proc_ticks "$EPID")
        env "$@" timeout $((DUR + 60)) wrk -t"$t" -c"$c" -d"${DUR}s" --timeout 10s --latency \
            -s "$BENCH/$script" "$url" >"$TMP/wrk-$name-$rep.txt" 2>&1 ||
            die "wrk $name: $(tail -3 "$TMP/wrk-$name-$rep.txt")"
        h1=$(proc_ticks "$HPID") e1=$(proc_ticks "$EPID")
        $PY "$BENCH/cpu.py" snap "$TMP/cpu-b.json"
        other=$($PY "$BENCH/cpu.py" other "$TMP/cpu-a.json" "$TMP/cpu-b.json" $$ "$HPID" \
            ${EPID:+"$EPID"})
        line=$(grep '^BENCH ' "$TMP/wrk-$name-$rep.txt") || die "wrk $name: no BENCH line"
        line="$line $(awk -v h=$((h1 - h0)) -v e=$((e1 - e0)) -v hz="$HZ" -v o="$other" \
            -v try=$try 'BEGIN { split(o, x, " ")
            printf "herald_cpu_s=%.3f etcd_cpu_s=%.3f foreign_cpu_s=%.3f kthread_cpu_s=%.3f try=%d",
                h / hz, e / hz, x[1], x[2], try }')"
        log "$name #$rep: $(echo "$line" | grep -oE '(rps|p99_ms|err_status|herald_cpu_s|foreign_cpu_s|try)=[0-9.-]*' | tr '\n' ' ')"
        awk -v o="${other%% *}" -v d="$DUR" 'BEGIN { exit !(o / d > 0.1) }' || break
        [ $try = 3 ] || { log "$name #$rep disturbed by other programs: again"; wait_quiet 20; }
    done
    echo "$name $rep ${line#BENCH }" >>"$TMP/wrk.tsv"
}
for ((rep = 1; rep <= REPS; rep++)); do
    for c in 1 16 64; do
        t=2
        [ $c = 1 ] && t=1
        alive
        run_wrk put_c$c $rep $t $c put.lua "$URL"
        [ $ETCD = 0 ] || run_wrk etcd_put_c$c $rep $t $c etcd_put.lua "$EURL"
    done
    alive
    run_wrk get_c64 $rep 2 64 get.lua "$URL/v1/kv/bench/key1"
    [ $ETCD = 0 ] || run_wrk etcd_get_c64 $rep 2 64 etcd_get.lua "$EURL"
    alive
    run_wrk get_stale_c64 $rep 2 64 get.lua "$URL/v1/kv/bench/key1?stale"
    [ $ETCD = 0 ] || run_wrk etcd_get_ser_c64 $rep 2 64 etcd_get.lua "$EURL" ETCD_SERIALIZABLE=1
done
alive
stop_pid "$EPID"
EPID=

# --- memory after load, and parked queries again ---------------------------------------------
sleep 1
$PY -c '
import json, sys
d = {}
for line in open("/proc/%s/status" % sys.argv[1]):
    k, _, v = line.partition(":")
    if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
        d[k] = int(v.split()[0])
print(json.dumps(d))' $HPID >"$TMP/rss.json"
log "agent memory after the throughput runs: $(cat "$TMP/rss.json")"
log "park $PARK blocking queries (after the throughput runs), then PUT c=64 while they stay parked"
rm -f "$TMP/parked" "$TMP/release"
$PY "$BENCH/park.py" --addr $ADDR --pid $HPID -n "$PARK" --ready-file "$TMP/parked" \
    --release-file "$TMP/release" --max-hold $((REPS * 3 * (DUR + 75) + 60)) \
    >"$TMP/park-loaded.json" 2>"$TMP/park-loaded.err" &
PARKPID=$!
for ((i = 0; i < 1200; i++)); do
    [ -f "$TMP/parked" ] && break
    kill -0 $PARKPID 2>/dev/null || break
    sleep 0.1
done
[ -f "$TMP/parked" ] || die "park.py (loaded agent): $(cat "$TMP/park-loaded.err")"
# A PUT to bench/* changes nothing the parked queries (on key park) wait for: they must stay
# parked (park.py fails if one is answered), and the agent re-checks them on KV commits.
for ((rep = 1; rep <= REPS; rep++)); do
    alive
    kill -0 $PARKPID 2>/dev/null || die "park.py (loaded agent): $(cat "$TMP/park-loaded.err")"
    run_wrk put_c64_parked $rep 2 64 put.lua "$URL"
done
touch "$TMP/release"
rc=0
for ((i = 0; i < 1200; i++)); do
    kill -0 $PARKPID 2>/dev/null || break
    sleep 0.1
done
kill -0 $PARKPID 2>/dev/null && die "park.py (loaded agent) still running 120 s after release"
wait $PARKPID || rc=$?
PARKPID=
[ $rc = 0 ] || die "park.py (loaded agent) failed: $(cat "$TMP/park-loaded.err" "$TMP/park-loaded.json")"
log "$(cat "$TMP/park-loaded.json")"

# --- graceful stop ---------------------------------------------------------------------------
alive
t0=$EPOCHREALTIME
kill -TERM $HPID
wait_gone $HPID 200 || die "herald still running 20 s after SIGTERM"
rc=0
wait $HPID || rc=$?
HPID=
secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
echo "{\"rc\": $rc, \"seconds\": $secs}" >"$TMP/stop.json"
log "herald stopped: exit $rc after ${secs}s"

# --- report ----------------------------------------------------------------------------------
bench_meta datafs="$DATAFS" fsync="$FSYNC" \
    herald_cmd="\`herald ${HERALD_ARGS[*]//$TMP/\$TMP}\`" \
    wrk="$(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}')" \
    wrk_args="wrk -t2 (-t1 at c=1) -d${DUR}s --timeout 10s --latency, scripts tests/bench/put.lua (rotating keys bench/t<thread>-<0..999>, 100-byte body) and get.lua" \
    etcd="$ETCD_DESC"
bench_report $PY "$BENCH/report.py"
[ $rc = 0 ] || die "herald exited $rc on SIGTERM"
