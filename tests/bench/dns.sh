#!/usr/bin/env bash
# DNS benchmark: Herald against NSD 4 and Knot 3 (Debian packages), all on loopback, same data:
#   - a small set (20 nodes, 50 services of 3 instances) registered in Herald through
#     PUT /v1/catalog/register, and the same records as a zone file `consul.` for NSD and Knot
#     (svcN.service.consul A ×3, _svcN._tcp.service.consul SRV ×3 with targets
#     nodeK.node.dc1.consul whose A are in the zone, so Additional is filled alike);
#   - the answers of all three are compared before measuring (tests/bench/dns_bench.py check);
#   - dnsperf over a query file of 50% A, 40% SRV, 10% NXDOMAIN (random names of the set):
#     maximum throughput (QPS, lost, server CPU µs per query from /proc/PID/stat) and a fixed
#     rate (default 20k QPS) with per-query latencies (-v: p50/p90/p99/p99.9); on the small set
#     with one worker also bursts (-q 500 outstanding: lost queries when a socket buffer fills);
#   - one worker each (servers pinned to CPU 0, dnsperf to CPU 1) and all workers (nproc each,
#     nothing pinned: dnsperf competes with the servers for the cores);
#   - a large set (--large instances, default 100,002: 1,000 nodes, 33,334 services of 3),
#     one worker: QPS against the small set, Herald's RSS (loading time recorded).
# Servers are interleaved (Herald, NSD, Knot, Herald, ...) over --reps repetitions; the report
# gives the median and min–max.
#
# usage: tests/bench/dns.sh [--record] [--quick] [--head] [--reps N] [--duration S]
#                           [--rate QPS] [--large N] [--clients C] [--outstanding Q]
#                           [--burst Q] [--wait-quiet S] [--no-all-workers]
#   --record      replace the dns.sh section of tests/bench/RESULTS.md with this run's figures
#   --quick       a smoke run: --reps 1 --duration 3 --large 10000 (about 2 minutes); the
#                 full run takes about 13 minutes
#   --head        measure the committed HEAD (git archive into the temp dir, then make)
#   --reps N      repetitions per server and test (default 3)
#   --duration S  seconds per dnsperf run (default 10)
#   --rate QPS    the fixed rate of the latency runs (default 20000)
#   --large N     instances of the large set (default 100002; 0: no large set)
#   --clients C, --outstanding Q   dnsperf -c and -q (default 4 and 100)
#   --burst Q     dnsperf -q of the burst runs (small set, one worker; default 500)
#   --wait-quiet S  wait up to S seconds (default 300) for 5 quiet seconds (other programs
#                 under 0.1 core) before measuring; the run goes ahead after S regardless, and
#                 the load is recorded
#   --no-all-workers  skip the all-workers runs
#
# Installs dnsperf, nsd and knot with apt-get when missing, and stops the daemons Debian's
# packages start (those running on the system config, /etc/nsd or /etc/knot); servers the
# script starts use configs in a temp dir and are stopped by pid on exit. Addresses: Herald
# 127.0.0.60 (DNS 8600, HTTP 8500, Raft 8300), NSD 127.0.0.61:8600, Knot 127.0.0.62:8600:
# all must be free. Needs: make's build deps, curl, dig, ss, taskset, /usr/bin/python3 with
# dnspython (Debian python3-dnspython).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HB="$PY $BENCH/dns_bench.py"
HADDR=127.0.0.60
NADDR=127.0.0.61
KADDR=127.0.0.62
DPORT=8600
URL="http://$HADDR:8500"
NODE=bench

RECORD=0
HEAD=0
QUIET=300
REPS=3
DUR=10
RATE=20000
LARGE=100002
CLIENTS=4
OUTST=100
BURST=500
ALLW=1
ORIG_ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
    --record) RECORD=1 ;;
    --head) HEAD=1 ;;
    --quick) REPS=1 DUR=3 LARGE=10000 ;;
    --wait-quiet) QUIET=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --large) LARGE=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --outstanding) OUTST=$2; shift ;;
    --burst) BURST=$2; shift ;;
    --no-all-workers) ALLW=0 ;;
    -h | --help) sed -n '2,44p' "$0"; exit 0 ;;
    *) echo "dns.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $REPS =~ ^[1-9][0-9]?$ && $DUR =~ ^[1-9][0-9]{0,2}$ && $RATE =~ ^[1-9][0-9]{2,6}$ &&
    $LARGE =~ ^[0-9]{1,7}$ && $CLIENTS =~ ^[1-9][0-9]{0,2}$ && $OUTST =~ ^[1-9][0-9]{0,4}$ &&
    $BURST =~ ^[1-9][0-9]{0,4}$ &&
    $QUIET =~ ^[0-9]{1,4}$ ]] ||
    { echo "dns.sh: --reps 1..99, --duration 1..999, --rate 100..9999999, --large 0..9999999," \
        "--clients 1..999, --outstanding 1..99999, --wait-quiet 0..9999" >&2; exit 2; }

# --- packages --------------------------------------------------------------------------------
need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v nsd >/dev/null || need+=(nsd)
command -v knotd >/dev/null || need+=(knot)
$PY -c 'import dns.message' 2>/dev/null || need+=(python3-dnspython)
command -v dig >/dev/null || need+=(bind9-dnsutils)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need[@]}" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${need[@]}" >/dev/null; } ||
        die "apt-get install ${need[*]}"
fi
for t in dnsperf nsd knotd dig curl ss taskset make; do
    command -v $t >/dev/null || die "$t not found"
done
# The packages' own daemons (started by the install where an init system runs them): stop the
# ones running on the system config. Others (e.g. integration tests' NSD on a temp config) are
# left alone; the port checks below catch a clash.
for pid in $(pgrep -x nsd || true) $(pgrep -x knotd || true); do
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
    if [[ $cmd != *" -c "* || $cmd == *" -c /etc/"* ]]; then
        log "stopping the system daemon pid $pid ($cmd)"
        kill -TERM "$pid" 2>/dev/null || true
    fi
done

bench_tmp herald-dnsbench
HPID=
NPID=
KPID=
bench_pids() { echo "$HPID $NPID $KPID"; }
BENCH_LOGS=(herald.log nsd.log knot.log)

for ap in $HADDR:8500 $HADDR:8300 $HADDR:$DPORT $NADDR:$DPORT $KADDR:$DPORT; do
    ! port_busy "${ap%:*}" "${ap#*:}" || die "$ap is in use"
done

bench_build
[ $HEAD = 1 ] || bench_copy_bin

NPROC=$(nproc)
[ "$NPROC" -ge 2 ] || die "needs at least 2 cores (server on CPU 0, dnsperf on CPU 1)"

# --- is the machine quiet? -------------------------------------------------------------------
bench_quiet "$QUIET"
PS_START=$(ps -eo pcpu=,comm= --sort=-pcpu | head -3 | awk '{ printf "%s%s %s%%", (NR > 1 ? ", " : ""), $2, $1 }')

# --- servers ---------------------------------------------------------------------------------
dig_ok() { # ADDR: the server answers the zone's SOA
    dig +time=1 +tries=1 +norec @"$1" -p $DPORT consul SOA 2>/dev/null | grep -q 'status: NOERROR'
}
alive() {
    local p
    for p in "$HPID" "$NPID" "$KPID"; do
        [ -z "$p" ] || kill -0 "$p" 2>/dev/null || die "server pid $p died (see its log)"
    done
}

# start_herald WORKERS DATADIR
HERALD_ARGS=()
start_herald() {
    HERALD_ARGS=(agent -server -bootstrap-expect 1 -data-dir "$2" -bind "$HADDR" -client "$HADDR"
        -node "$NODE" -log-level warn -dns-workers "$1")
    mkdir -p "$2"
    "$HERALD" "${HERALD_ARGS[@]}" >>"$TMP/herald.log" 2>&1 &
    HPID=$!
    wait_ready $HPID herald 600 herald_serves
    log "herald pid $HPID ready (-dns-workers $1)"
}
herald_serves() { herald_ready "$URL" "$NODE" && dig_ok $HADDR; }

# start_nsd WORKERS ZONEDIR
start_nsd() {
    local run="$TMP/nsd-run" reuse=no
    mkdir -p "$run"
    [ "$1" -gt 1 ] && reuse=yes
    cat >"$run/nsd.conf" <<EOF
server:
    ip-address: $NADDR@$DPORT
    server-count: $1
    reuseport: $reuse
    rrl-ratelimit: 0
    round-robin: yes
    username: ""
    chroot: ""
    zonesdir: "$2"
    database: ""
    zonelistfile: "$run/zone.list"
    xfrdfile: "$run/xfrd.state"
    xfrdir: "$run"
    pidfile: "$run/nsd.pid"
    logfile: "$TMP/nsd.log"
    verbosity: 0
remote-control:
    control-enable: no
zone:
    name: "consul"
    zonefile: "consul.zone"
EOF
    nsd -d -c "$run/nsd.conf" >>"$TMP/nsd.log" 2>&1 &
    NPID=$!
    wait_ready $NPID nsd 600 dig_ok $NADDR
    log "nsd pid $NPID ready (server-count $1)"
}

# start_knot WORKERS ZONEDIR
start_knot() {
    local run="$TMP/knot-run"
    rm -rf "$run"
    mkdir -p "$run/db"
    cat >"$run/knot.conf" <<EOF
server:
    rundir: "$run"
    pidfile: "$run/knot.pid"
    listen: $KADDR@$DPORT
    udp-workers: $1
    tcp-workers: $1
    background-workers: 1
    answer-rotation: on
log:
  - target: stderr
    any: warning
database:
    storage: "$run/db"
template:
  - id: default
    storage: "$2"
    journal-content: none
    zonefile-sync: -1
    zonefile-load: whole
zone:
  - domain: consul
    file: "consul.zone"
EOF
    knotd -c "$run/knot.conf" >>"$TMP/knot.log" 2>&1 &
    KPID=$!
    wait_ready $KPID knotd 600 dig_ok $KADDR
    log "knotd pid $KPID ready (udp-workers $1)"
}

stop_all() {
    stop_pid "$HPID"; HPID=
    stop_pid "$NPID"; NPID=
    stop_pid "$KPID"; KPID=
}

# Pins every thread of every process of the three servers to CPU 0.
pin_servers() {
    local p
    for p in $($HB tree-pids $HPID $NPID $KPID); do
        taskset -a -p -c 0 "$p" >/dev/null || die "taskset -a -p -c 0 $p"
    done
}

# --- measuring -------------------------------------------------------------------------------
RUNS="$TMP/runs.jsonl"
: >"$RUNS"
echo '{}' >"$TMP/sets.json"
echo '{}' >"$TMP/checks.json"
DP_BASE=(-p "$DPORT" -e -c "$CLIENTS" -q "$OUTST" -t 2)
srv_addr() { case $1 in herald) echo $HADDR ;; nsd) echo $NADDR ;; knot) echo $KADDR ;; esac; }
srv_pid() { case $1 in herald) echo $HPID ;; nsd) echo $NPID ;; knot) echo $KPID ;; esac; }

# run_one SET WORKERS MODE SERVER REP
run_one() {
    local set=$1 workers=$2 mode=$3 server=$4 rep=$5 pin=() dpx=(-l "$DUR") mx=() show res
    local base=("${DP_BASE[@]}")
    [ "$workers" = 1 ] && pin=(taskset -c 1)
    if [ "$mode" = fixed ]; then
        dpx+=(-Q "$RATE" -v)
        mx=(--verbose-latency)
    elif [ "$mode" = burst ]; then
        base=(-p "$DPORT" -e -c "$CLIENTS" -q "$BURST" -t 2)
    fi
    show="${pin[*]:+${pin[*]} }dnsperf -s <server> ${base[*]} -d queries-$set.txt ${dpx[*]}"
    # A run during which other user programs took over 0.1 core on average is disturbed (2
    # cores): it is repeated, at most twice, and the last attempt kept whatever it shows.
    local try rc max
    for try in 1 2 3; do
        alive
        max=(--max-other 0.1)
        [ $try = 3 ] && max=()
        rc=0
        res=$($HB measure "$RUNS" set="$set" workers="$workers" mode="$mode" server="$server" \
            rep="$rep" try="$try" cmd="$show" --server-pids "$(srv_pid "$server")" \
            --ignore-pids "$HPID $NPID $KPID" "${max[@]}" \
            --server-addr "$(srv_addr "$server"):$DPORT" "${mx[@]}" -- \
            "${pin[@]}" dnsperf -s "$(srv_addr "$server")" "${base[@]}" -d "$TMP/data-$set/queries.txt" \
            "${dpx[@]}") || rc=$?
        log "$set workers=$workers $mode $server #$rep: $res"
        [ $rc = 3 ] || break
        log "disturbed by other programs: again"
        sleep 2
    done
    [ $rc = 0 ] || die "dnsperf $set/$workers/$mode/$server #$rep (exit $rc)"
}

# warm SET: one pass over the query file against each server (fills Herald's answer cache)
warm() {
    local s
    for s in herald nsd knot; do
        dnsperf -s "$(srv_addr $s)" "${DP_BASE[@]}" -d "$TMP/data-$1/queries.txt" -n 1 -l 30 \
            >"$TMP/warm-$s.txt" 2>&1 || die "warm-up dnsperf against $s: $(tail -3 "$TMP/warm-$s.txt")"
    done
}

# series SET WORKERS [MODES]: maximum throughput then fixed rate, servers interleaved
series() {
    local rep s mode
    warm "$1"
    for mode in ${3:-max fixed}; do
        for ((rep = 1; rep <= REPS; rep++)); do
            for s in herald nsd knot; do
                run_one "$1" "$2" "$mode" "$s" "$rep"
            done
        done
    done
}

# json_set FILE KEY JSON: FILE[KEY] = JSON
json_set() {
    $PY - "$1" "$2" "$3" <<'EOF'
import json, sys
p, k, v = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
d = json.load(open(p))
cur = d
keys = k.split(".")
for x in keys[:-1]:
    cur = cur.setdefault(x, {})
cur[keys[-1]] = v
json.dump(d, open(p, "w"))
EOF
}

# prepare SET NODES SERVICES QUERIES MISSING: data, Herald loaded, NSD and Knot on the zone
prepare() {
    local set=$1 d="$TMP/data-$1" params ld
    params=$($HB gen "$d" --nodes "$2" --services "$3" --queries "$4" --missing "$5")
    json_set "$TMP/sets.json" "$set.params" "$params"
    start_herald 1 "$TMP/herald-$set"
    log "$set set: registering $($PY -c 'import json,sys; print(json.loads(sys.argv[1])["instances"])' "$params") instances"
    ld=$($HB load "$d" $HADDR:8500 --conc 32 --procs 2) || die "loading the $set set: $ld"
    log "$set set loaded: $ld"
    json_set "$TMP/sets.json" "$set.load" "$ld"
    sleep 2
    json_set "$TMP/sets.json" "$set.herald_mem" "$($HB mem $HPID)"
    start_nsd 1 "$d"
    start_knot 1 "$d"
    json_set "$TMP/sets.json" "$set.nsd_mem" "$($HB mem $NPID)"
    json_set "$TMP/sets.json" "$set.knot_mem" "$($HB mem $KPID)"
    log "$set set: RSS herald $($HB mem $HPID), nsd $($HB mem $NPID), knot $($HB mem $KPID)"
    check "$set"
}

check() {
    local out
    out=$($HB check "$TMP/data-$1" herald=$HADDR:$DPORT nsd=$NADDR:$DPORT knot=$KADDR:$DPORT) ||
        { echo "$out" >&2; die "the servers' answers differ ($1 set)"; }
    echo "$out" | sed '$d' >&2
    json_set "$TMP/checks.json" "$1" "$(echo "$out" | tail -1)"
}

T0=$SECONDS
# --- small set -------------------------------------------------------------------------------
prepare small 20 50 10000 1000
pin_servers
log "small set, one worker each: servers on CPU 0, dnsperf on CPU 1"
series small 1 "max burst fixed"
json_set "$TMP/sets.json" "small.herald_mem_after" "$($HB mem $HPID)"
if [ $ALLW = 1 ]; then
    stop_all
    start_herald "$NPROC" "$TMP/herald-small"
    start_nsd "$NPROC" "$TMP/data-small"
    start_knot "$NPROC" "$TMP/data-small"
    check small
    log "small set, all workers ($NPROC each), nothing pinned"
    series small all
fi
stop_all

# --- large set -------------------------------------------------------------------------------
if [ "$LARGE" -gt 0 ]; then
    services=$(((LARGE + 2) / 3))
    nodes=1000
    [ $nodes -le $services ] || nodes=$services
    [ $nodes -ge 3 ] || nodes=3
    prepare large $nodes $services $((services * 6)) 10000
    pin_servers
    log "large set, one worker each: servers on CPU 0, dnsperf on CPU 1"
    series large 1
    json_set "$TMP/sets.json" "large.herald_mem_after" "$($HB mem $HPID)"
    stop_all
fi
log "measuring took $((SECONDS - T0)) s"

# --- report ----------------------------------------------------------------------------------
bench_meta herald_cmd="herald agent -server -bootstrap-expect 1 -data-dir \$TMP/herald-<set> -bind $HADDR -client $HADDR -node $NODE -log-level warn -dns-workers 1" \
    all_workers="-dns-workers $NPROC" \
    nsd_version="$(nsd -v 2>&1 | head -1) (Debian $(dpkg-query -W -f='${Version}' nsd 2>/dev/null))" \
    nsd_cmd="nsd -d -c \$TMP/nsd-run/nsd.conf" \
    nsd_conf="ip-address $NADDR@$DPORT, server-count 1 (then $NPROC with reuseport: yes), rrl-ratelimit: 0, round-robin: yes (minimal-responses left off: it drops the SRV targets from Additional), database \"\", zone consul. from a file" \
    knot_version="$(knotd -V 2>&1 | head -1) (Debian $(dpkg-query -W -f='${Version}' knot 2>/dev/null))" \
    knot_cmd="knotd -c \$TMP/knot-run/knot.conf" \
    knot_conf="listen $KADDR@$DPORT, udp-workers 1, tcp-workers 1 (then $NPROC each), background-workers 1, answer-rotation: on, journal-content: none, zonefile-load: whole" \
    dnsperf_version="dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ { print $2; exit }') (Debian $(dpkg-query -W -f='${Version}' dnsperf 2>/dev/null))" \
    dnsperf_desc="-e (EDNS0) -c $CLIENTS -q $OUTST -t 2, $DUR s per run; maximum throughput without -Q, latency runs with -Q $RATE -v; each server warmed by one pass over the query file (-n 1) before its series; all traffic on loopback, UDP" \
    pinning="one-worker runs: every thread of every server process pinned to CPU 0 (taskset -a -p -c 0), dnsperf to CPU 1 (taskset -c 1); all-worker runs: nothing pinned, so dnsperf competes with the servers' $NPROC workers for the $NPROC cores" \
    load="load average (1/5/15 min) before the run $LOAD_START (busiest processes then: $PS_START), after $(cut -d' ' -f1-3 /proc/loadavg); measuring took $((SECONDS - T0)) s"
bench_report $HB report
