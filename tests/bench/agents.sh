#!/usr/bin/env bash
# Client agents (issue 12 item 6), with the release build (make build/herald), on loopback:
# three servers (127.0.11.1-3: `herald agent -server -bootstrap-expect 3`) and N clients
# (127.0.12.1-N: `herald agent` without -server, `-retry-join` to the servers' gossip port),
# every agent `-dns-workers 1 -log-level info`. In order:
#   1. registration on a client -> answer on every other agent's DNS: PUT
#      /v1/agent/service/register of a new name on a client (in turn), every other agent's DNS
#      polled over UDP from the PUT's send until it answers with the record; p50/p99/max over
#      --regs registrations, and the polling resolution that bounds them (goal: p99 < 10 ms);
#   2. DNS QPS and CPU per query on a client vs a follower server: dns.sh's small set
#      (registered through the catalog API), its query file, dnsperf pinned (agent on CPU 0,
#      dnsperf on CPU 1) and unpinned, interleaved, median of --reps (goal: within 5%);
#   3. the bytes per second the servers send on their server port to keep the clients'
#      replicas current (ss -tin bytes_acked per connection to a client's address): idle (the
#      heartbeat), then at --rate catalog writes per second; per client and per write, and
#      extrapolated to 1,000 clients;
#   4. catch-up of a client away for --catchup writes: the client stopped, the KV writes
#      through the leader as fast as it takes them, then one catalog registration; the client
#      started again from its data dir; time until its replica's applied index reaches the
#      leader's and its DNS answers the last write.
# The engine is tests/bench/agents.py (/usr/bin/python3); dnsperf runs through
# tests/bench/dns_bench.py measure (the agent's CPU from /proc/PID/stat, as dns.sh).
#
# usage: tests/bench/agents.sh [--record] [--quick] [--clients N] [--regs N] [--reps N]
#                              [--duration S] [--bytes-s S] [--rate W] [--catchup N]
#                              [--poll-ms MS] [--phases 1234] [--wait-quiet S]
#   --record      replace the agents.sh section of tests/bench/RESULTS.md with this run's
#                 figures (between <!-- agents.sh: begin ...--> and <!-- agents.sh: end -->)
#   --quick       small counts: --clients 3 --regs 20 --reps 1 --duration 2 --bytes-s 3
#                 --catchup 3000 (under a minute); the full run takes about 5 minutes
#   --clients N   client agents (default 10, at most 250)
#   --regs N      registrations measured in 1 (default 200, after 5 not counted)
#   --reps N      dnsperf runs per agent and mode in 2 (default 3); --duration S each (10)
#   --bytes-s S   length of each window in 3 (default 20 s); --rate W writes/s (default 100)
#   --catchup N   writes while the client is away in 4 (default 100000)
#   --poll-ms MS  at most one query per agent every MS in 1 (default 1)
#   --phases      which measurements (default 1234)
#   --keep DIR    copy the run's JSON files and the agents' logs into DIR (created) at the end
#   --wait-quiet S  first wait up to S seconds (default 0) for 5 quiet seconds (other
#                 programs under 0.1 core); the run goes ahead after S regardless, and other
#                 programs' CPU is recorded with each figure
#   HERALD_BIN=path  use that binary instead of building build/herald with make
# The agents run from a copy of the binary taken at the start (others may rebuild it).
#
# Addresses: 127.0.11.1-3 and 127.0.12.1-N (HTTP 8500, DNS 8600, server 8300, gossip 8301);
# all must be free. Everything started is stopped by pid (the pid files in the run dir,
# rewritten by agents.py at each restart) on exit, failure or Ctrl-C; the temp dir is removed.
# Needs: make's build deps, dnsperf, ss, taskset, /usr/bin/python3.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RECORD=0
QUIET=0
CLIENTS=10
REGS=200
REPS=3
DUR=10
BYTES_S=20
RATE=100
CATCHUP=100000
POLL_MS=1
PHASES=1234
KEEP=
ORIG_ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
    --record) RECORD=1 ;;
    --quick) CLIENTS=3 REGS=20 REPS=1 DUR=2 BYTES_S=3 CATCHUP=3000 ;;
    --wait-quiet) QUIET=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --regs) REGS=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --bytes-s) BYTES_S=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --catchup) CATCHUP=$2; shift ;;
    --poll-ms) POLL_MS=$2; shift ;;
    --phases) PHASES=$2; shift ;;
    --keep) KEEP=$2; shift ;;
    -h | --help) sed -n '2,48p' "$0"; exit 0 ;;
    *) echo "agents.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $CLIENTS =~ ^[1-9][0-9]{0,2}$ && $CLIENTS -le 250 && $REGS =~ ^[1-9][0-9]{0,4}$ &&
    $REPS =~ ^[1-9][0-9]?$ && $DUR =~ ^[1-9][0-9]{0,2}$ && $BYTES_S =~ ^[1-9][0-9]{0,3}$ &&
    $RATE =~ ^[1-9][0-9]{0,3}$ && $CATCHUP =~ ^[1-9][0-9]{0,6}$ &&
    $POLL_MS =~ ^[0-9]+(\.[0-9]+)?$ && $PHASES =~ ^[1-4]+$ && $QUIET =~ ^[0-9]{1,4}$ ]] ||
    { echo "agents.sh: --clients 1..250, --regs 1..99999, --reps 1..99, --duration 1..999," \
           "--bytes-s 1..9999, --rate 1..9999, --catchup 1..9999999, --poll-ms MS," \
           "--phases of 1234, --wait-quiet 0..9999" >&2; exit 2; }

[ -x "$PY" ] || die "$PY not found"
for t in dnsperf ss taskset make; do
    command -v $t >/dev/null || die "$t not found"
done

bench_tmp herald-agents-bench
# shellcheck disable=SC2317 # called by bench_cleanup
bench_pids() {
    local f
    for f in "$TMP"/*.pid; do [ -f "$f" ] && cat "$f"; done
    return 0
}
BENCH_LOGS=(h1.log h2.log h3.log c1.log)

ADDRS=(127.0.11.1 127.0.11.2 127.0.11.3)
for ((i = 1; i <= CLIENTS; i++)); do ADDRS+=("127.0.12.$i"); done
for a in "${ADDRS[@]}"; do
    for p in 8500 8600 8300 8301; do ! port_busy "$a" $p || die "$a:$p is in use"; done
done

bench_commit
if [ -n "${HERALD_BIN:-}" ]; then
    HERALD=$HERALD_BIN
    log "using HERALD_BIN=$HERALD"
    [ -x "$HERALD" ] || die "$HERALD not built"
else
    log "build (make build/herald)"
    make -C "$ROOT" --no-print-directory build/herald >"$TMP/make.log" 2>&1 ||
        { tail -20 "$TMP/make.log" >&2; die make; }
    HERALD="$ROOT/build/herald"
fi
bench_dirty tests/bench
BIN_ORIG=$HERALD
bench_copy_bin
log "running a copy of $BIN_ORIG (md5 $(md5sum "$HERALD" | cut -c1-12)...)"

bench_quiet "$QUIET"

T0=$SECONDS
log "3 servers and $CLIENTS clients; phases $PHASES"
(cd "$BENCH" && $PY agents.py run --run "$TMP" --bin "$HERALD" --clients "$CLIENTS" \
    --regs "$REGS" --poll-ms "$POLL_MS" --dns-reps "$REPS" --dns-duration "$DUR" \
    --bytes-s "$BYTES_S" --rate "$RATE" --catchup "$CATCHUP" --phases "$PHASES") \
    >"$TMP/agents.json" || die "agents.py run"
for f in "$TMP"/*.pid; do
    gone "$(cat "$f")" || die "left pid $(cat "$f") running ($f)"
done
log "measuring took $((SECONDS - T0)) s"

bench_meta bin="${HERALD_BIN:-}" \
    server_cmd="herald agent -server -bootstrap-expect 3 -data-dir \$TMP/data-hN -bind 127.0.11.N -client 127.0.11.N -node hN -retry-interval 1s -dns-workers 1 -log-level info -retry-join 127.0.11.1 -retry-join 127.0.11.2 -retry-join 127.0.11.3" \
    client_cmd="herald agent -data-dir \$TMP/data-cN -bind 127.0.12.N -client 127.0.12.N -node cN -retry-interval 1s -dns-workers 1 -log-level info -retry-join 127.0.11.1 -retry-join 127.0.11.2 -retry-join 127.0.11.3" \
    load="load average (1/5/15 min) before the run $LOAD_START, after $(cut -d' ' -f1-3 /proc/loadavg); measuring took $((SECONDS - T0)) s"
bench_report "$PY" "$BENCH/agents.py" report
if [ -n "$KEEP" ]; then
    mkdir -p "$KEEP" || die "--keep: mkdir $KEEP"
    cp "$TMP"/*.json "$TMP"/*.jsonl* "$TMP"/*.log "$KEEP"/ 2>/dev/null || true
    log "kept the run's JSON and logs in $KEEP"
fi
