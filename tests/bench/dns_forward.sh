#!/usr/bin/env bash
# Forwarded-names benchmark: Herald's recursion (libunbound, forwarding to an upstream) against
# unbound forwarding the same names to the same upstream, all on loopback:
#   - the upstream is NSD serving bench.example. (--names A records, h0..hN-1.bench.example);
#   - Herald: `herald agent -dev -recursor UPSTREAM -dns-workers W`; unbound: `forward-zone "."`
#     to the same upstream, num-threads W, no validation (as Herald by default), caches of the
#     same total size (32 MB: msg 1/3, rrset 2/3);
#   - both are warmed (every name asked until answered from the cache), then dnsperf asks the
#     cached names at maximum throughput: QPS, lost queries, server CPU µs per query (from
#     /proc/PID/stat, all threads: Herald's workers and their libunbound threads);
#   - one worker (servers pinned to CPU 0, dnsperf to CPU 1) and, unless --no-all-workers, all
#     workers (nproc each, nothing pinned);
#   - runs interleaved (Herald, unbound, Herald, ...) over --reps repetitions; the report gives
#     the median, min–max, and the ratio Herald / unbound of the medians in the same run.
#
# usage: tests/bench/dns_forward.sh [--record] [--reps N] [--duration S] [--names N]
#                                   [--clients C] [--outstanding Q] [--no-all-workers]
#   --record      replace the dns_forward.sh section of tests/bench/RESULTS.md with this run
#   --reps N      repetitions per server and test (default 3)
#   --duration S  seconds per dnsperf run (default 10)
#   --names N     distinct cached names (default 1000)
#   --clients C, --outstanding Q   dnsperf -c and -q (default 4 and 100)
#   --wait-quiet S  first wait up to S seconds (default 300) for 5 quiet seconds (other programs
#                 under 0.1 core); the run goes ahead after S regardless. Other programs' CPU
#                 during each measured run is recorded (cores; bold above 0.05)
#
# Addresses: NSD 127.0.0.70:5300, Herald 127.0.0.71 (DNS 8600, HTTP 8500, Raft 8300), unbound
# 127.0.0.72:8600; all must be free. Everything started is stopped by pid on exit; the temp dir
# is removed. Needs: make's build deps, dnsperf, nsd, unbound, dig, taskset, /usr/bin/python3.
# Does not touch the other sections of RESULTS.md (tests/bench/dns.sh has its own).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
UADDR=127.0.0.70
UPORT=5300
HADDR=127.0.0.71
BADDR=127.0.0.72
DPORT=8600

RECORD=0
REPS=3
DUR=10
NAMES=1000
CLIENTS=4
OUTST=100
ALLW=1
QUIET=300
ORIG_ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
    --record) RECORD=1 ;;
    --reps) REPS=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --names) NAMES=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --outstanding) OUTST=$2; shift ;;
    --no-all-workers) ALLW=0 ;;
    --wait-quiet) QUIET=$2; shift ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "dns_forward.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $REPS =~ ^[1-9][0-9]?$ && $DUR =~ ^[1-9][0-9]{0,2}$ && $NAMES =~ ^[1-9][0-9]{0,5}$ &&
    $CLIENTS =~ ^[1-9][0-9]{0,2}$ && $OUTST =~ ^[1-9][0-9]{0,4}$ && $QUIET =~ ^[0-9]{1,4}$ ]] ||
    { echo "dns_forward.sh: --reps 1..99, --duration 1..999, --names 1..999999," \
        "--clients 1..999, --outstanding 1..99999, --wait-quiet 0..9999" >&2; exit 2; }

for t in dnsperf nsd unbound dig taskset make ss; do
    command -v $t >/dev/null || die "$t not found (make deps installs it)"
done
for a in "$UADDR:$UPORT" "$HADDR:$DPORT" "$BADDR:$DPORT"; do
    if ss -Hlun "sport = :${a##*:}" | grep -q "${a%:*}:"; then die "$a is in use"; fi
done

bench_tmp herald-bench-fwd
NSD_PID=
HPID=
UBPID=
bench_pids() { echo "$HPID $UBPID $NSD_PID"; }
BENCH_LOGS=(nsd.log herald.log unbound.log)

bench_build
git -C "$ROOT" diff --quiet HEAD -- resolver admin base zone 2>/dev/null || COMMIT="$COMMIT (+ uncommitted changes)"

# --- the upstream: NSD with the names -----------------------------------------------------------
mkdir -p "$TMP/nsd"
{
    echo '$ORIGIN bench.example.'
    echo '$TTL 86400'
    echo '@ IN SOA ns hostmaster 1 3600 600 86400 3600'
    echo '@ IN NS ns'
    echo "ns IN A $UADDR"
    for ((i = 0; i < NAMES; i++)); do echo "h$i IN A 10.$((i / 65536 % 256)).$((i / 256 % 256)).$((i % 256))"; done
} >"$TMP/nsd/bench.zone"
cat >"$TMP/nsd/nsd.conf" <<EOF
server:
  ip-address: $UADDR@$UPORT
  pidfile: $TMP/nsd/nsd.pid
  zonesdir: $TMP/nsd
  database: ""
  username: ""
  chroot: ""
  xfrdfile: $TMP/nsd/xfrd.state
  zonelistfile: $TMP/nsd/zone.list
  server-count: 1
  rrl-ratelimit: 0
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: bench.example
  zonefile: bench.zone
EOF
nsd -d -c "$TMP/nsd/nsd.conf" >"$TMP/nsd.log" 2>&1 &
NSD_PID=$!

answers() { # addr port name
    dig @"$1" -p "$2" +time=1 +tries=1 +short "$3" 2>/dev/null | grep -q .
}
wait_ready $NSD_PID nsd 100 answers $UADDR $UPORT h0.bench.example

for ((i = 0; i < NAMES; i++)); do echo "h$i.bench.example A"; done >"$TMP/queries"

# --- the two servers ----------------------------------------------------------------------------
start_herald() { # workers cpu-list
    local w=$1 cpus=$2
    taskset -c "$cpus" "$HERALD" agent -dev -log-level warn -node bench -bind $HADDR \
        -client $HADDR -dns-workers "$w" -recursor $UADDR:$UPORT \
        >"$TMP/herald.log" 2>&1 &
    HPID=$!
    wait_ready $HPID herald 100 answers $HADDR $DPORT h0.bench.example
}
start_unbound() { # workers cpu-list
    local w=$1 cpus=$2
    mkdir -p "$TMP/unbound"
    cat >"$TMP/unbound/unbound.conf" <<EOF
server:
  interface: $BADDR@$DPORT
  port: $DPORT
  num-threads: $w
  username: ""
  chroot: ""
  directory: "$TMP/unbound"
  pidfile: "$TMP/unbound/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  msg-cache-size: 11m
  rrset-cache-size: 21m
  outgoing-range: 256
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: $UADDR@$UPORT
EOF
    taskset -c "$cpus" unbound -d -c "$TMP/unbound/unbound.conf" >"$TMP/unbound.log" 2>&1 &
    UBPID=$!
    wait_ready $UBPID unbound 100 answers $BADDR $DPORT h0.bench.example
}
stop_server() { # HPID or UBPID: SIGTERM, and it must be gone within 10 s
    local pid=${!1}
    kill "$pid" 2>/dev/null || true
    wait_gone "$pid" 100 || die "server $pid did not stop"
    wait "$pid" 2>/dev/null || true
    printf -v "$1" ''
}

# dnsperf against addr; prints "qps lost cpu_us_per_query other_cores"
measure() { # addr server-pid cpus-for-dnsperf
    local addr=$1 pid=$2 cpus=$3 out t0 t1 other
    $PY "$BENCH/cpu.py" snap "$TMP/snap0"
    t0=$(proc_ticks "$pid")
    out=$(taskset -c "$cpus" dnsperf -s "$addr" -p $DPORT -d "$TMP/queries" -l "$DUR" \
        -c "$CLIENTS" -q "$OUTST" 2>&1) || die "dnsperf: $out"
    t1=$(proc_ticks "$pid")
    $PY "$BENCH/cpu.py" snap "$TMP/snap1"
    # other programs: user CPU of everything but the server and the upstream (dnsperf started
    # and ended between the snapshots, so it is not seen)
    other=$($PY "$BENCH/cpu.py" other "$TMP/snap0" "$TMP/snap1" "$pid" "$NSD_PID" | cut -d' ' -f1)
    printf '%s\n' "$out" >"$TMP/dnsperf.out"
    $PY - "$t0" "$t1" "$TMP/dnsperf.out" "$other" "$DUR" <<'EOF'
import os, re, sys
text = open(sys.argv[3]).read()
qps = float(re.search(r"Queries per second:\s+([\d.]+)", text).group(1))
done = int(re.search(r"Queries completed:\s+(\d+)", text).group(1))
lost = int(re.search(r"Queries lost:\s+(\d+)", text).group(1))
ticks = int(sys.argv[2]) - int(sys.argv[1])
us = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / max(done, 1)
print("%.0f %d %.2f %.2f" % (qps, lost, us, float(sys.argv[4]) / float(sys.argv[5])))
EOF
}

warm() { # addr: every name answered from the cache of every worker (several passes, sockets)
    local addr=$1
    for _ in 1 2 3; do
        dnsperf -s "$addr" -p $DPORT -d "$TMP/queries" -n 1 -c "$CLIENTS" -q 10 >/dev/null 2>&1 || true
    done
    dnsperf -s "$addr" -p $DPORT -d "$TMP/queries" -l 2 -c "$CLIENTS" -q "$OUTST" >/dev/null 2>&1 || true
}

check_same() { # the two answer alike
    local a b
    a=$(dig @$HADDR -p $DPORT +short h7.bench.example)
    b=$(dig @$BADDR -p $DPORT +short h7.bench.example)
    [ -n "$a" ] && [ "$a" = "$b" ] || die "answers differ: herald '$a' unbound '$b'"
}

RESULTS="$TMP/results"
: >"$RESULTS"
run_config() { # label workers server-cpus dnsperf-cpus
    local label=$1 w=$2 scpu=$3 pcpu=$4 rep r
    for ((rep = 1; rep <= REPS; rep++)); do
        if [ "$rep" = 1 ]; then # both up once: they must answer alike
            start_herald "$w" "$scpu"
            start_unbound "$w" "$scpu"
            check_same
            stop_server UBPID
        else
            start_herald "$w" "$scpu"
        fi
        warm $HADDR
        r=$(measure $HADDR "$HPID" "$pcpu")
        log "$label rep $rep herald: $r"
        echo "$label herald $r" >>"$RESULTS"
        stop_server HPID
        start_unbound "$w" "$scpu"
        warm $BADDR
        r=$(measure $BADDR "$UBPID" "$pcpu")
        log "$label rep $rep unbound: $r"
        echo "$label unbound $r" >>"$RESULTS"
        stop_server UBPID
    done
}

NCPU=$(nproc)
bench_quiet "$QUIET" "$NSD_PID"
log "one worker: servers on CPU 0, dnsperf on CPU 1 ($REPS reps, ${DUR}s each)"
run_config "1w" 1 0 "$((NCPU > 1 ? 1 : 0))"
if [ $ALLW = 1 ]; then
    log "all workers ($NCPU): nothing pinned"
    run_config "${NCPU}w" "$NCPU" "0-$((NCPU - 1))" "0-$((NCPU - 1))"
fi
kill "$NSD_PID" 2>/dev/null || true

# --- report ---------------------------------------------------------------------------------------
REPORT="$TMP/report.md"
V_LIBUNBOUND=$(dpkg-query -W -f='${Version}' libunbound8 2>/dev/null || echo "?")
V_UNBOUND=$(unbound -V 2>/dev/null | sed -n '1s/^Version //p' || true)
V_NSD=$(nsd -v 2>&1 | sed -n '1s/^NSD version //p' || true)
V_DNSPERF=$(dnsperf -h 2>&1 | grep -m1 -io 'version [0-9.]*' | cut -d' ' -f2 || true)
V_CPU=$(sed -n '/model name/{s/.*: //p;q}' /proc/cpuinfo)
NOW=$(date -u '+%Y-%m-%d %H:%M UTC')
$PY - "$RESULTS" "$REPORT" <<EOF
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
by = {}
for label, server, qps, lost, us, other in rows:
    by.setdefault((label, server), []).append((float(qps), int(lost), float(us), float(other)))
labels = []
for label, *_ in rows:
    if label not in labels:
        labels.append(label)
out = []
out.append("## DNS: forwarded names, Herald's recursion against unbound (\`tests/bench/dns_forward.sh\`)")
out.append("")
out.append("- date: $NOW")
out.append("- machine: $NCPU cores, $V_CPU; Linux $(uname -r)")
out.append("- herald: commit $COMMIT, release build (\`make\`, -O2), \`herald agent -dev -log-level warn -dns-workers W -recursor $UADDR:$UPORT\` (libunbound $V_LIBUNBOUND, forwarding, one context and thread per worker)")
out.append("- unbound: $V_UNBOUND, \`forward-zone: \".\"\` to the same upstream, num-threads W, module-config iterator, msg/rrset caches 11m/21m")
out.append("- upstream: NSD $V_NSD on $UADDR:$UPORT serving $NAMES A records (bench.example.); every name cached in both before measuring")
out.append("- load: dnsperf $V_DNSPERF -c $CLIENTS -q $OUTST -l $DUR over the $NAMES names; runs interleaved, $REPS repetitions: median (min–max); lost: summed; server CPU: utime+stime of all its threads (Herald's workers and their libunbound threads) per completed query, median; other: CPU of every other program during the run, in cores, worst repetition (**bold** above 0.05: something else competed)")
out.append("- command: \`tests/bench/dns_forward.sh ${ORIG_ARGS[*]}\`")
out.append("")
out.append("| test | server | QPS | lost | server CPU µs/query | other (cores) |")
out.append("|---|---|---:|---:|---:|---:|")
ratios = []
for label in labels:
    med = {}
    for server in ("herald", "unbound"):
        v = by.get((label, server), [])
        if not v:
            continue
        q = [x[0] for x in v]
        med[server] = statistics.median(q)
        desc = "one worker (pinned to CPU 0, dnsperf on CPU 1)" if label == "1w" else "%s workers / threads, unpinned" % label[:-1]
        worst = max(x[3] for x in v)
        out.append("| %s | %s | %.0f (%.0f–%.0f) | %d | %.2f | %s |" % (desc, server, med[server], min(q), max(q),
                   sum(x[1] for x in v), statistics.median(x[2] for x in v),
                   ("**%.2f**" if worst > 0.05 else "%.2f") % worst))
    if len(med) == 2:
        ratios.append((label, med["herald"] / med["unbound"]))
out.append("")
out.append("Herald / unbound, cached forwarded names, medians of the same run:")
out.append("")
out.append("| | Herald / unbound |")
out.append("|---|---:|")
for label, r in ratios:
    out.append("| %s | %.2f× |" % ("one worker" if label == "1w" else label[:-1] + " workers", r))
open(sys.argv[2], "w").write("\n".join(out) + "\n")
EOF
cat "$REPORT"

if [ $RECORD = 1 ]; then
    $PY "$BENCH/report.py" record "$BENCH/RESULTS.md" dns_forward.sh "$REPORT" ||
        die "recording in RESULTS.md"
    log "recorded in tests/bench/RESULTS.md (dns_forward.sh section)"
fi
