#!/usr/bin/env bash
# Locks (issue 13, item 6): lock hand-over time (holder gone -> the next `herald lock` runs its
# child, with the session TTL and the lock-delay accounted) and session renewals per second, on
# three release-build Herald servers on 127.0.90.1-3 (HTTP 8500, DNS 8600, server 8300, gossip
# 8301; all must be free). The engine is tests/bench/locks.py (its docstring says what each
# figure is).
#
# usage: tests/bench/locks.sh [--record] [--rounds N] [--renew-s S]
#   --record     replace the locks.sh section of tests/bench/RESULTS.md with this run's figures
#                (between <!-- locks.sh: begin ...--> and <!-- locks.sh: end -->)
#   --rounds N   rounds per hand-over kind (default 2; a killed holder's round takes ~20-45 s)
#   --renew-s S  seconds per renewal row (default 10)
#   HERALD_BIN=path  use that binary instead of building build/herald with make
# About 4 minutes with the defaults. Everything started is stopped by pid (the pid files in the
# run dir) on exit, failure or Ctrl-C; the temp dir is removed.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ADDRS=(127.0.90.1 127.0.90.2 127.0.90.3)

RECORD=0
ROUNDS=2
RENEW_S=10
ORIG_ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
    --record) RECORD=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    --renew-s) RENEW_S=$2; shift ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "locks.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $ROUNDS =~ ^[1-9][0-9]?$ && $RENEW_S =~ ^[1-9][0-9]{0,2}$ ]] ||
    { echo "locks.sh: --rounds 1..99, --renew-s 1..999" >&2; exit 2; }
[ -x "$PY" ] || die "$PY not found"

bench_tmp herald-locks-bench
# shellcheck disable=SC2317 # called by bench_cleanup
bench_pids() {
    local f
    for f in "$TMP"/*.pid; do [ -f "$f" ] && cat "$f"; done
    return 0
}
BENCH_LOGS=(h1.log h2.log h3.log)
for a in "${ADDRS[@]}"; do
    for p in 8500 8600 8300 8301; do ! port_busy "$a" $p || die "$a:$p is in use"; done
done

bench_commit
if [ -n "${HERALD_BIN:-}" ]; then
    HERALD=$HERALD_BIN
    [ -x "$HERALD" ] || die "$HERALD not built"
else
    log "build (make build/herald)"
    make -C "$ROOT" --no-print-directory build/herald >"$TMP/make.log" 2>&1 ||
        { tail -20 "$TMP/make.log" >&2; die make; }
    HERALD="$ROOT/build/herald"
fi
bench_dirty tests/bench
bench_copy_bin
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
META=$($PY -c 'import json, sys; print(json.dumps({"date": sys.argv[1], "commit": sys.argv[2],
"dirty": sys.argv[3] == "1", "command": sys.argv[4], "load": sys.argv[5]}))' \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" "$COMMIT" "$DIRTY" \
    "tests/bench/locks.sh ${ORIG_ARGS[*]:-}" "$LOAD")
ARGS=(--run "$TMP" --bin "$HERALD" --rounds "$ROUNDS" --renew-s "$RENEW_S" --meta "$META")
[ $RECORD = 0 ] || ARGS+=(--record "$BENCH/RESULTS.md")
log "running ($ROUNDS rounds per hand-over kind, ${RENEW_S}s per renewal row)"
cd "$BENCH"
$PY "$BENCH/locks.py" "${ARGS[@]}" || die "locks.py"
