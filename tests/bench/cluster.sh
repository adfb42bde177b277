#!/usr/bin/env bash
# Cluster benchmark: a 3-server Herald (release build) on loopback, and a 3-member etcd.
#   - replicated KV PUT/s with 64 concurrent clients (wrk, tests/bench/put.lua against Herald,
#     etcd_put.lua against etcd's v3 JSON gateway: same keys, same 100-byte values), to the
#     leader and to a follower, Herald and etcd interleaved over --reps repetitions (median,
#     min–max, and the Herald/etcd ratio; target >= 2x);
#   - registration -> visible in DNS on all three servers, p50/p99 over --regs registrations
#     (target p99 < 10 ms);
#   - leader kill (SIGKILL) under writes -> first acknowledged write, --kills rounds (every
#     round shown; target: median <= 0.5 s, worst <= 0.8 s), with every acknowledged write
#     checked on every server afterwards; the same for etcd's leader (its members restarted
#     from their data dirs), in the same run, before Herald's;
#   - catch-up time of a wiped server (catalog and Raft state removed, node-id kept) after
#     --entries KV entries were written while it was away; then the same wipe again with no
#     writes in between.
# With --restart, instead of all that (no etcd): restart of a loaded cluster. --entries KV
# entries (wrk, --fill-conns connections to the leader: one connection leaves nothing to
# batch, at least one Raft entry per write, so the applied Raft index passes --entries too)
# and --services service registrations are written; then --restarts rounds of: all three
# servers stopped (SIGTERM) and started again at once, timed from exec to the first DNS answer for a registered
# service, the first ?stale read with the right data, a leader, the first acknowledged write;
# and --restarts rounds of: one server killed (SIGKILL; leader or not, in turn), --away-writes
# KV writes through the two others, down --down seconds at least (default 5: the others'
# reconnect backoff, 50 ms doubling to 250 ms, is long at its cap), then started again, timed
# to its first DNS answer and ?stale read and to being caught up (applied index, digest).
# Data dir sizes and the Raft entries replayed at start (the agent's "consensus: started ...
# index=N" less its latest snapshot's index) are recorded. Target: serving within 2 s.
# With --soak, instead of all that (no etcd): --minutes of writes (8 writer threads on all
# three servers) while one follower is SIGSTOPped --stop-ms at a time (continued 100-700 ms in
# between): elections counted by Raft term changes (target: none), and every acknowledged
# write checked on every server afterwards.
# The measuring clients are tests/bench/cluster_bench.py (and wrk); the report too.
#
# usage: tests/bench/cluster.sh [--record] [--reps N] [--duration SECONDS] [--regs N]
#                               [--kills N] [--entries N] [--no-etcd] [--wait-quiet S]
#        tests/bench/cluster.sh --restart [--record] [--entries N] [--fill-conns C]
#                               [--services N] [--restarts N] [--away-writes N] [--down S]
#                               [--wait-quiet S]
#        tests/bench/cluster.sh --soak [--record] [--minutes M] [--stop-ms S] [--wait-quiet S]
#   --record    replace the cluster.sh section of tests/bench/RESULTS.md with this run's
#               figures (between <!-- cluster.sh: begin --> and <!-- cluster.sh: end -->;
#               with --restart, its own section between <!-- cluster.sh --restart: begin ...-->
#               and <!-- cluster.sh --restart: end -->; with --soak, <!-- cluster.sh --soak ...)
#   --wait-quiet S  first wait up to S seconds for 5 quiet seconds (other programs using under
#               0.1 core), as the machine may be shared; the run goes ahead after S regardless
#   --restart   the restart measurements only (defaults: --entries 100000 --fill-conns 1
#               --services 1000 --restarts 5 --away-writes 1000 --down 5; about 5 minutes)
#   --soak      the starved-follower soak only (defaults: --minutes 10 --stop-ms 300)
#   HERALD_BIN=path  use that binary instead of building build/herald with make
# The servers run from a copy of the binary taken at the start (others may rebuild it meanwhile).
#
# Addresses: Herald on 127.0.3.1-3 (HTTP 8500, DNS 8600, server 8300), etcd on
# 127.0.3.11-13 (2379/2380); all must be free. Everything the script starts is stopped by pid
# on exit, failure or Ctrl-C (Herald servers restarted by cluster_bench.py too: their pids are
# in the run dir); the temp dir is removed. If etcd is missing, Debian's etcd-server is
# installed with apt-get (and the system etcd the package may start is stopped).
# Needs: make's build deps, wrk, curl, /usr/bin/python3.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HADDRS=(127.0.3.1 127.0.3.2 127.0.3.3)
EADDRS=(127.0.3.11 127.0.3.12 127.0.3.13)
SERVERS=$(IFS=,; echo "${HADDRS[*]}")

RECORD=0
QUIET=0
REPS=3
DUR=10
REGS=500
KILLS=5
ENTRIES=100000
ETCD=1
RESTART=0
FILLC=1
SERVICES=1000
RESTARTS=5
AWAY=1000
DOWN=5
SOAK=0
MINUTES=10
STOPMS=300
ORIG_ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
    --record) RECORD=1 ;;
    --wait-quiet) QUIET=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --regs) REGS=$2; shift ;;
    --kills) KILLS=$2; shift ;;
    --entries) ENTRIES=$2; shift ;;
    --no-etcd) ETCD=0 ;;
    --restart) RESTART=1 ;;
    --fill-conns) FILLC=$2; shift ;;
    --services) SERVICES=$2; shift ;;
    --restarts) RESTARTS=$2; shift ;;
    --away-writes) AWAY=$2; shift ;;
    --down) DOWN=$2; shift ;;
    --soak) SOAK=1 ;;
    --minutes) MINUTES=$2; shift ;;
    --stop-ms) STOPMS=$2; shift ;;
    -h | --help) sed -n '2,57p' "$0"; exit 0 ;;
    *) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $REPS =~ ^[1-9][0-9]?$ && $DUR =~ ^[1-9][0-9]{0,2}$ && $REGS =~ ^[1-9][0-9]{0,4}$ &&
    $KILLS =~ ^[1-9][0-9]?$ && $ENTRIES =~ ^[1-9][0-9]{0,6}$ && $QUIET =~ ^[0-9]{1,4}$ ]] ||
    { echo "cluster.sh: --reps 1..99, --duration 1..999, --regs 1..99999, --kills 1..99," \
           "--entries 1..9999999, --wait-quiet 0..9999" >&2; exit 2; }
[[ $FILLC =~ ^[1-9][0-9]{0,2}$ && $SERVICES =~ ^[1-9][0-9]{0,4}$ &&
    $RESTARTS =~ ^[1-9][0-9]?$ && $AWAY =~ ^[1-9][0-9]{0,5}$ && $DOWN =~ ^[0-9]{1,3}$ ]] ||
    { echo "cluster.sh: --fill-conns 1..999, --services 1..99999, --restarts 1..99," \
           "--away-writes 1..999999, --down 0..999" >&2; exit 2; }
[[ $MINUTES =~ ^[1-9][0-9]{0,2}$ && $STOPMS =~ ^[1-9][0-9]{0,3}$ ]] ||
    { echo "cluster.sh: --minutes 1..999, --stop-ms 1..9999" >&2; exit 2; }
[ $RESTART = 0 ] || ETCD=0
[ $SOAK = 0 ] || ETCD=0

for t in wrk curl; do command -v $t >/dev/null || die "$t not found"; done
[ -x $PY ] || die "$PY not found"

bench_tmp herald-cluster-bench
WRKPID=
herald_pids() {
    local f
    for f in "$TMP"/h[0-9].pid; do [ -f "$f" ] && cat "$f"; done
    return 0
}
# etcd members: e<i>.pid and e<i>.argv, like Herald's (cluster_bench.py restarts them too)
etcd_pids() {
    local f
    for f in "$TMP"/e[0-9].pid; do [ -f "$f" ] && cat "$f"; done
    return 0
}
# shellcheck disable=SC2046,SC2086 # one word per pid
bench_pids() { echo $WRKPID $(herald_pids) $(etcd_pids); }
BENCH_LOGS=(h1.log h2.log h3.log)

for a in "${HADDRS[@]}"; do
    for p in 8500 8300; do port_free "$a" $p || die "$a:$p is in use"; done
done

if [ $ETCD = 1 ] && ! command -v etcd >/dev/null; then
    log "etcd not installed: apt-get install etcd-server"
    DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server >"$TMP/apt.log" 2>&1 ||
        die "apt-get install etcd-server: $(tail -3 "$TMP/apt.log")"
    # The package may start its own etcd on 127.0.0.1:2379; not ours to keep running.
    if [ -x /etc/init.d/etcd ]; then service etcd stop >/dev/null 2>&1 || true; fi
fi
if [ $ETCD = 1 ]; then
    for a in "${EADDRS[@]}"; do
        for p in 2379 2380; do port_free "$a" $p || die "$a:$p is in use"; done
    done
fi

if [ -n "${HERALD_BIN:-}" ]; then
    bench_commit
    HERALD=$HERALD_BIN
    log "using HERALD_BIN=$HERALD"
    [ -x "$HERALD" ] || die "$HERALD not built"
else
    bench_build
fi
bench_dirty tests
BIN_ORIG=$HERALD
bench_copy_bin
BINSUM=$(md5sum "$HERALD" | cut -c1-12)
BINTIME=$(date -u -r "$BIN_ORIG" '+%Y-%m-%d %H:%M UTC')
log "running a copy of $BIN_ORIG (md5 $BINSUM...)"

# --- machine facts -------------------------------------------------------------------------
bench_disk
bench_quiet "$QUIET"

# --- start the three Herald servers ------------------------------------------------------------
# start_herald I: server I (1-based); its argv (JSON) in h<I>.argv, its pid in h<I>.pid.
start_herald() {
    local i=$1 a=${HADDRS[$(($1 - 1))]} j
    local argv=("$HERALD" agent -server -bootstrap-expect 3 -data-dir "$TMP/h$i" -bind "$a"
        -client "$a" -node "h$i" -log-level info)
    for j in "${HADDRS[@]}"; do argv+=(-retry-join "$j"); done
    mkdir -p "$TMP/h$i"
    $PY -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${argv[@]}" >"$TMP/h$i.argv"
    "${argv[@]}" >>"$TMP/h$i.log" 2>&1 &
    echo $! >"$TMP/h$i.pid"
}
for i in 3 1 2; do start_herald $i; done
log "herald pids $(herald_pids | tr '\n' ' ')"
LEADER=$($PY "$BENCH/cluster_bench.py" wait --servers "$SERVERS" --timeout 60) ||
    die "the Herald cluster did not form (one leader, three nodes) within 60 s"
log "herald cluster ready: leader $LEADER"

alive() {
    local pid
    for pid in $(herald_pids); do kill -0 "$pid" 2>/dev/null || die "herald pid $pid died"; done
}

# fill_kv URL ENTRIES THREADS CONNS: ENTRIES unique keys fill/t<thread>-<n> (100-byte values)
# written by wrk (put.lua with FILL_PER_THREAD) with THREADS threads and CONNS connections;
# each thread leaves a mark file when done, then wrk is interrupted. Its BENCH line goes to
# fill.tsv.
fill_kv() {
    local url=$1 entries=$2 threads=$3 conns=$4 t k ok=0 rc=0 line
    rm -f "$TMP"/fill-mark-*
    FILL_MARK="$TMP/fill-mark-" FILL_PER_THREAD=$(((entries + threads - 1) / threads)) \
        timeout 900 wrk -t"$threads" -c"$conns" -d600s --timeout 10s --latency \
        -s "$BENCH/put.lua" "$url" >"$TMP/wrk-fill.txt" 2>&1 &
    WRKPID=$!
    for ((k = 0; k < 6000; k++)); do
        ok=1
        for ((t = 0; t < threads; t++)); do [ -f "$TMP/fill-mark-$t" ] || ok=0; done
        [ $ok = 1 ] && break
        kill -0 $WRKPID 2>/dev/null || break
        sleep 0.1
    done
    [ $ok = 1 ] || die "wrk fill did not finish in 600 s"
    sleep 0.5 # the last requests in flight
    kill -INT $WRKPID 2>/dev/null || true
    wait $WRKPID || rc=$?
    WRKPID=
    [ $rc = 0 ] || die "wrk fill exited $rc: $(tail -3 "$TMP/wrk-fill.txt")"
    line=$(grep '^BENCH ' "$TMP/wrk-fill.txt") || die "wrk fill: no BENCH line"
    echo "fill 1 ${line#BENCH }" >"$TMP/fill.tsv"
    log "fill: $line"
}

# --- restart of a loaded cluster (--restart) ----------------------------------------------------
restart_bench() {
    local threads=$((FILLC < 2 ? 1 : 2))
    log "restart: load $ENTRIES KV entries (wrk -t$threads -c$FILLC to the leader $LEADER)"
    fill_kv "http://$LEADER:8500" "$ENTRIES" $threads "$FILLC"
    log "restart: register $SERVICES services"
    $PY "$BENCH/cluster_bench.py" regs --servers "$SERVERS" -n "$SERVICES" >"$TMP/regs.json" ||
        die "regs"
    log "$(cat "$TMP/regs.json")"
    alive
    log "restart: all three servers stopped (SIGTERM) and started at once, $RESTARTS rounds"
    $PY "$BENCH/cluster_bench.py" restart --mode all --servers "$SERVERS" --run "$TMP" \
        --rounds "$RESTARTS" -n "$SERVICES" --prefix fill --timeout 30 \
        >"$TMP/restart_all.json" || die "restart all"
    alive
    log "restart: one server killed (SIGKILL), $AWAY writes, down ${DOWN}s, started again," \
        "$RESTARTS rounds"
    $PY "$BENCH/cluster_bench.py" restart --mode one --servers "$SERVERS" --run "$TMP" \
        --rounds "$RESTARTS" -n "$SERVICES" --prefix fill --timeout 30 --writes "$AWAY" \
        --down "$DOWN" >"$TMP/restart_one.json" || die "restart one"
    alive
}

ETCD_DESC=
if [ $RESTART = 1 ]; then
    restart_bench
elif [ $SOAK = 1 ]; then
    log "soak: $MINUTES min of writes, one follower SIGSTOPped ${STOPMS} ms at a time"
    $PY "$BENCH/cluster_bench.py" soak --servers "$SERVERS" --run "$TMP" --minutes "$MINUTES" \
        --stop-ms "$STOPMS" >"$TMP/soak.json" || die "soak"
    log "$(cat "$TMP/soak.json")"
    alive
else
    # --- etcd ----------------------------------------------------------------------------------
    if [ $ETCD = 1 ]; then
        init=
        for i in 1 2 3; do init+="${init:+,}e$i=http://${EADDRS[$((i - 1))]}:2380"; done
        for i in 1 2 3; do
            a=${EADDRS[$((i - 1))]}
            mkdir -p "$TMP/e$i"
            eargv=(etcd --name "e$i" --data-dir "$TMP/e$i" --listen-client-urls "http://$a:2379"
                --advertise-client-urls "http://$a:2379" --listen-peer-urls "http://$a:2380"
                --initial-advertise-peer-urls "http://$a:2380" --initial-cluster "$init"
                --initial-cluster-state new --initial-cluster-token herald-bench
                --log-level warn)
            $PY -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${eargv[@]}" >"$TMP/e$i.argv"
            "${eargv[@]}" >>"$TMP/e$i.log" 2>&1 &
            echo $! >"$TMP/e$i.pid"
        done
        for i in 1 2 3; do
            wait_ready "$(cat "$TMP/e$i.pid")" "etcd e$i" 300 etcd_healthy "http://${EADDRS[$((i - 1))]}:2379"
        done
        ETCD_DESC="$(etcd --version 2>/dev/null | sed -n 1p) (Debian etcd-server), three members on 127.0.3.11-13, defaults (fsync on, heartbeat 100 ms, election 1000 ms), v3 JSON gateway"
        log "etcd pids $(etcd_pids | tr '\n' ' ')ready"
    fi
    # The etcd member that leads, and one that does not (maintenance/status through the gateway).
    etcd_role() {
        local want=$1 a st me ld
        for a in "${EADDRS[@]}"; do
            st=$(curl -fsS -m 5 -X POST "http://$a:2379/v3/maintenance/status" -d '{}') || continue
            me=$(echo "$st" | $PY -c 'import json,sys; d=json.load(sys.stdin); print(d["header"]["member_id"])')
            ld=$(echo "$st" | $PY -c 'import json,sys; d=json.load(sys.stdin); print(d["leader"])')
            if [ "$want" = leader ] && [ "$me" = "$ld" ]; then echo "$a"; return; fi
            if [ "$want" = follower ] && [ "$me" != "$ld" ]; then echo "$a"; return; fi
        done
        return 1
    }

    # --- throughput ----------------------------------------------------------------------------
    : >"$TMP/wrk.tsv"
    HZ=$(getconf CLK_TCK)
    # run_wrk NAME REP URL SCRIPT PIDS...
    run_wrk() {
        local name=$1 rep=$2 url=$3 script=$4 line s0 s1 other
        shift 4
        $PY "$BENCH/cpu.py" snap "$TMP/cpu-a.json"
        s0=$(proc_ticks "$@")
        timeout $((DUR + 60)) wrk -t2 -c64 -d"${DUR}s" --timeout 10s --latency \
            -s "$BENCH/$script" "$url" >"$TMP/wrk-$name-$rep.txt" 2>&1 ||
            die "wrk $name: $(tail -3 "$TMP/wrk-$name-$rep.txt")"
        s1=$(proc_ticks "$@")
        $PY "$BENCH/cpu.py" snap "$TMP/cpu-b.json"
        # shellcheck disable=SC2046 # one word per pid
        other=$($PY "$BENCH/cpu.py" other "$TMP/cpu-a.json" "$TMP/cpu-b.json" $$ $(herald_pids) \
            $(etcd_pids))
        line=$(grep '^BENCH ' "$TMP/wrk-$name-$rep.txt") || die "wrk $name: no BENCH line"
        line="$line $(awk -v s=$((s1 - s0)) -v hz="$HZ" -v o="$other" 'BEGIN {
            split(o, x, " ")
            printf "server_cpu_s=%.3f foreign_cpu_s=%.3f kthread_cpu_s=%.3f", s / hz, x[1], x[2] }')"
        echo "$name $rep ${line#BENCH }" >>"$TMP/wrk.tsv"
        log "$name #$rep ($url): $(echo "$line" | grep -oE '(rps|p99_ms|err_status|foreign_cpu_s)=[0-9.-]*' | tr '\n' ' ')"
    }
    curl -fsS -m 5 -X PUT --data-binary "$(head -c 100 /dev/zero | tr '\0' v)" \
        "http://$LEADER:8500/v1/kv/bench/key1" | grep true >/dev/null || die "PUT bench/key1"
    for ((rep = 1; rep <= REPS; rep++)); do
        for target in leader follower; do
            alive
            h=$($PY "$BENCH/cluster_bench.py" $target --servers "$SERVERS" --timeout 30) ||
                die "no Herald $target"
            # shellcheck disable=SC2046 # one word per pid
            run_wrk herald_put_$target $rep "http://$h:8500" put.lua $(herald_pids)
            if [ $ETCD = 1 ]; then
                e=$(etcd_role $target) || die "no etcd $target"
                # shellcheck disable=SC2046 # one word per pid
                run_wrk etcd_put_$target $rep "http://$e:2379" etcd_put.lua $(etcd_pids)
            fi
        done
    done
    alive

    # --- etcd leader kill -> first acknowledged write (before Herald's, same run) ----------------
    if [ $ETCD = 1 ]; then
        log "etcd leader kill (SIGKILL) under writes, $KILLS rounds"
        $PY "$BENCH/cluster_bench.py" failover --kind etcd --run "$TMP" --rounds "$KILLS" \
            --servers "$(IFS=,; echo "${EADDRS[*]}")" >"$TMP/etcd_failover.json" ||
            die "etcd failover"
        log "$(cat "$TMP/etcd_failover.json")"
    fi
    for pid in $(etcd_pids); do stop_pid "$pid"; done
    rm -f "$TMP"/e[0-9].pid

    # --- registration -> DNS on all three ------------------------------------------------------
    # The PUT runs leave hundreds of MB of dirty pages (Herald's and etcd's): flush them and
    # pause, or their write-back lands in these registrations' fsyncs (p99 35 ms vs 2 ms).
    t_sync=$(date +%s%N)
    sync
    sync_s=$((($(date +%s%N) - t_sync) / 1000000))e-3
    sleep 5
    log "registration -> visible in DNS on all three servers, $REGS registrations (sync ${sync_s}s)"
    $PY "$BENCH/cluster_bench.py" dnsvis --servers "$SERVERS" -n "$REGS" >"$TMP/dnsvis.json" ||
        die "dnsvis"
    $PY - "$TMP/dnsvis.json" "$sync_s" <<'PYEOF' || die "dnsvis sync time"
import json, sys
d = json.load(open(sys.argv[1]))
d["sync_s"] = "%.2f" % float(sys.argv[2])
json.dump(d, open(sys.argv[1], "w"))
PYEOF
    log "$(cat "$TMP/dnsvis.json")"
    alive

    # --- leader kill -> first acknowledged write -----------------------------------------------
    log "leader kill (SIGKILL) under writes, $KILLS rounds"
    $PY "$BENCH/cluster_bench.py" failover --servers "$SERVERS" --run "$TMP" --rounds "$KILLS" \
        >"$TMP/failover.json" || die "failover"
    log "$(cat "$TMP/failover.json")"
    alive

    # --- catch-up of a wiped server with ENTRIES entries ---------------------------------------
    log "stop a follower and wipe its catalog and Raft state"
    $PY "$BENCH/cluster_bench.py" wipe --servers "$SERVERS" --run "$TMP" >"$TMP/wipe.json" ||
        die "wipe"
    WIPED=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["server"])' "$TMP/wipe.json")
    LEADER=$($PY "$BENCH/cluster_bench.py" leader --servers "$(echo "$SERVERS" | tr , '\n' |
        grep -vx "$WIPED" | paste -sd,)")
    log "load $ENTRIES KV entries (wrk -c64 to the leader $LEADER) while $WIPED is away"
    fill_kv "http://$LEADER:8500" "$ENTRIES" 2 64
    log "start $WIPED again and time its catch-up"
    $PY "$BENCH/cluster_bench.py" catchup --servers "$SERVERS" --run "$TMP" --server "$WIPED" \
        --prefix fill --entries "$ENTRIES" --timeout 60 >"$TMP/catchup.json" || die "catchup"
    log "$(cat "$TMP/catchup.json")"
    alive
fi

# --- graceful stop ---------------------------------------------------------------------------
# Servers restarted by cluster_bench.py are not children of this shell (no exit code here):
# a clean stop is told by the log's last line, "shutdown complete".
for pid in $(herald_pids); do
    kill -TERM "$pid"
done
for pid in $(herald_pids); do
    wait_gone "$pid" 300 || die "herald pid $pid still running 30 s after SIGTERM"
    wait "$pid" 2>/dev/null || true
done
rm -f "$TMP"/h[0-9].pid
clean=0
for i in 1 2 3; do
    tail -n 1 "$TMP/h$i.log" | grep -q "shutdown complete" && clean=$((clean + 1))
done
echo "{\"clean\": $clean}" >"$TMP/stop.json"
log "herald servers stopped: $clean of 3 logged a clean shutdown"
[ $clean = 3 ] || die "a server did not shut down cleanly"

# --- report ----------------------------------------------------------------------------------
WRKARGS="wrk -t2 -c64 -d${DUR}s --timeout 10s --latency, tests/bench/put.lua (rotating keys bench/t<thread>-<0..999>, 100-byte body) and etcd_put.lua (the same keys and values)"
[ $RESTART = 0 ] ||
    WRKARGS="wrk -t$((FILLC < 2 ? 1 : 2)) -c$FILLC --timeout 10s, tests/bench/put.lua with FILL_PER_THREAD (unique keys fill/t<thread>-<n>, 100-byte values) to the leader"
bench_meta datafs="$DATAFS" fsync="$FSYNC" bin="${HERALD_BIN:-}" \
    herald_cmd="herald agent -server -bootstrap-expect 3 -data-dir \$TMP/hN -bind 127.0.3.N -client 127.0.3.N -node hN -log-level info -retry-join 127.0.3.1 -retry-join 127.0.3.2 -retry-join 127.0.3.3" \
    wrk="$(wrk -v 2>&1 | sed -n 1p | awk '{print "wrk " $2}')" wrk_args="$WRKARGS" \
    bin_md5="$BINSUM" bin_time="$BINTIME" restart:bool="$RESTART" fill_conns:int="$FILLC" \
    services:int="$SERVICES" away_writes:int="$AWAY" down:int="$DOWN" etcd="$ETCD_DESC" \
    kills:int="$KILLS" soak:bool="$SOAK" minutes:int="$MINUTES" stop_ms:int="$STOPMS"
bench_report $PY "$BENCH/cluster_bench.py" report
