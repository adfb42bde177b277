#!/usr/bin/env bash
# Dead hosts leave DNS: kill -9 of a member of the gossip pool -> its services out of
# `web.service.consul` on every server, with the release build (make build/herald):
#   - setup A (N=3): three Herald servers, a service "web" registered on each through its own
#     agent; each round SIGKILLs a follower (in turn) and starts it again from its data dir;
#   - setup B (N=10): the same three servers and seven Debian `serf agent`s tagged as Consul
#     clients (role=node, dc=dc1, id=<uuid>, build=1.0.0:x, vsn=2), each with a "web" instance
#     at its address (PUT /v1/catalog/register on the node the leader registered); each round
#     SIGKILLs one serf agent (in turn) and starts it again, and waits until it is passing.
# On every surviving server, from the kill: gossip detection (its /v1/agent/members shows the
# victim failed, Status 4) and DNS removal (its `web.service.consul A` answer, polled over UDP
# every 10 ms, lacks the victim's address), and the split between them; after the restart, the
# time until the member is back in DNS and alive everywhere. Then, per setup, the Raft entries
# the leader writes during a quiet minute (its last_log_index; expect 0), and the false
# failures of the whole run (a healthy member ever shown not alive by any server; must be 0).
# The gossip timings in effect are read from the built sources (gossip_config_defaults), not
# assumed. The engine is tests/bench/deadhost.py (/usr/bin/python3, dnspython).
#
# usage: tests/bench/deadhost.sh [--record] [--rounds N] [--quiet-s S] [--setup a|b|ab]
#                                [--wait-quiet S]
#   --record      replace the deadhost.sh section of tests/bench/RESULTS.md with this run's
#                 figures (between <!-- deadhost.sh: begin ...--> and <!-- deadhost.sh: end -->)
#   --rounds N    kills per setup (default 10)
#   --quiet-s S   length of the quiet interval (default 60 s, the leader's reconcile_interval:
#                 one periodic full pass falls in it)
#   --setup       which setups (default ab)
#   --keep DIR    copy the run's JSON files and the agents' logs into DIR (created) at the end
#   --wait-quiet S  first wait up to S seconds for 5 quiet seconds (other programs using under
#                 0.1 core), as the machine may be shared; the run goes ahead after S
#                 regardless. Other programs' CPU during each round is recorded.
#   HERALD_BIN=path  use that binary instead of building build/herald with make
# The servers run from a copy of the binary taken at the start (others may rebuild it).
# About 6-9 minutes with the defaults (most of it the two quiet minutes and the kills'
# suspicion timeouts).
#
# Addresses: Herald on 127.0.6.1-3 (HTTP 8500, DNS 8600, server 8300, gossip 8301), serf agents
# on 127.0.7.1-7 (gossip 8301, RPC 7373); all must be free. Everything started is stopped by
# pid (the pid files in the run dir, rewritten by deadhost.py at each restart) on exit, failure
# or Ctrl-C; the temp dir is removed. Needs: make's build deps, serf, /usr/bin/python3 with
# dnspython (python3-dnspython).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HADDRS=(127.0.6.1 127.0.6.2 127.0.6.3)
SADDRS=(127.0.7.1 127.0.7.2 127.0.7.3 127.0.7.4 127.0.7.5 127.0.7.6 127.0.7.7)

RECORD=0
QUIET=0
ROUNDS=10
QUIET_S=60
SETUPS=ab
KEEP=
ORIG_ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
    --record) RECORD=1 ;;
    --wait-quiet) QUIET=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --quiet-s) QUIET_S=$2; shift ;;
    --setup) SETUPS=$2; shift ;;
    --keep) KEEP=$2; shift ;;
    -h | --help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "deadhost.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
REPS=$ROUNDS
[[ $ROUNDS =~ ^[1-9][0-9]?$ && $QUIET_S =~ ^[1-9][0-9]{0,3}$ && $QUIET =~ ^[0-9]{1,4}$ &&
    $SETUPS =~ ^(a|b|ab)$ ]] ||
    { echo "deadhost.sh: --rounds 1..99, --quiet-s 1..9999, --wait-quiet 0..9999," \
           "--setup a|b|ab" >&2; exit 2; }

[ -x "$PY" ] || die "$PY not found"
$PY -c 'import dns.message' 2>/dev/null || die "dnspython missing for $PY (python3-dnspython)"
[[ $SETUPS != *b* ]] || command -v serf >/dev/null || die "serf not found (Debian's serf)"

bench_tmp herald-deadhost-bench
# shellcheck disable=SC2317 # called by bench_cleanup
bench_pids() {
    local f
    for f in "$TMP"/setup_*/*.pid; do [ -f "$f" ] && cat "$f"; done
    return 0
}

for a in "${HADDRS[@]}"; do
    for p in 8500 8600 8300 8301; do ! port_busy "$a" $p || die "$a:$p is in use"; done
done
for a in "${SADDRS[@]}"; do
    for p in 8301 7373; do ! port_busy "$a" $p || die "$a:$p is in use"; done
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
BINSUM=$(md5sum "$HERALD" | cut -c1-12)
log "running a copy of $BIN_ORIG (md5 $BINSUM...)"
$PY "$BENCH/deadhost.py" gossip-params "$ROOT/gossip/swim.c" "$ROOT/admin/serf.c" \
    "$ROOT/admin/config.c" >"$TMP/gossip_params.json" || die "gossip-params"
[ -z "${HERALD_BIN:-}" ] || echo '{}' >"$TMP/gossip_params.json" # not known for another binary
log "gossip timings: $(cat "$TMP/gossip_params.json")"

bench_quiet "$QUIET"

for s in a b; do
    [[ $SETUPS == *$s* ]] || continue
    log "setup ${s^^}: $ROUNDS rounds, then ${QUIET_S}s quiet"
    BENCH_LOGS=("setup_$s/h1.log" "setup_$s/h2.log" "setup_$s/h3.log")
    $PY "$BENCH/deadhost.py" run --setup $s --run "$TMP" --bin "$HERALD" --rounds "$ROUNDS" \
        --quiet-s "$QUIET_S" >"$TMP/setup_$s.json" || die "setup $s"
    for f in "$TMP/setup_$s"/*.pid; do
        gone "$(cat "$f")" || die "setup $s left pid $(cat "$f") running"
    done
    clean=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["clean"])' \
        "$TMP/setup_$s.json")
    log "setup ${s^^} done: $clean of 3 servers logged a clean shutdown"
    [ "$clean" = 3 ] || die "a server did not shut down cleanly"
done

bench_meta bin="${HERALD_BIN:-}" bin_md5="$BINSUM" \
    herald_cmd="herald agent -server -bootstrap-expect 3 -data-dir \$TMP/hN -bind 127.0.6.N -client 127.0.6.N -node hN -retry-join 127.0.6.1 -retry-interval 1s -log-level info" \
    serf_cmd="serf agent -node sN -bind 127.0.7.N:8301 -rpc-addr 127.0.7.N:7373 -join 127.0.6.1:8301 -tag role=node -tag dc=dc1 -tag id=<uuid> -tag build=1.0.0:x -tag vsn=2" \
    serf_version="$(serf version 2>/dev/null | sed -n 1p)" rounds:int="$ROUNDS"
bench_report "$PY" "$BENCH/deadhost.py" report
if [ -n "$KEEP" ]; then
    mkdir -p "$KEEP" || die "--keep: mkdir $KEEP"
    cp "$TMP"/*.json "$KEEP"/ || die "--keep: cp"
    for d in "$TMP"/setup_?; do
        mkdir -p "$KEEP/${d##*/}"
        cp "$d"/*.log "$d"/*.argv "$KEEP/${d##*/}"/ || die "--keep: cp"
    done
    log "kept the run's JSON and logs in $KEEP"
fi
