#!/usr/bin/env bash
# Transactions (issue 13, item 6): one PUT /v1/txn of 64 KV sets against 64 single PUTs on a
# 3-server Herald cluster (release build), sent to the leader and to a follower: wall time and
# Raft entries (the leader's last_log_index before and after), median and min–max over
# --rounds rounds. The measuring client and its report are tests/bench/txn_bench.py; the
# servers are started by tests/integration's helpers (herald_test.cluster) and stopped by pid.
#
# usage: tests/bench/txn.sh [--record] [--rounds N]
#   --record    replace the txn.sh section of tests/bench/RESULTS.md (between
#               <!-- txn.sh: begin --> and <!-- txn.sh: end -->) with this run's figures
#   HERALD_BIN=path  use that binary instead of building build/herald
#   HERALD_TEST_ADDR_OFFSET=N  where the servers' 127.0.x.y addresses start (default 1700)
# Contention: the load average and the CPUs are recorded with the figures (the machine may
# be shared; the figures are wall times).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RECORD=0
ROUNDS=10
while [ $# -gt 0 ]; do
    case $1 in
    --record) RECORD=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "txn.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "txn.sh: --rounds 1..99" >&2; exit 2; }

bench_tmp herald-txn-bench
bench_commit
if [ -n "${HERALD_BIN:-}" ]; then
    HERALD=$HERALD_BIN
else
    log "build (make build/herald)"
    make -C "$ROOT" --no-print-directory -j2 build/herald >"$TMP/make.log" 2>&1 ||
        { tail -20 "$TMP/make.log" >&2; die make; }
    HERALD="$ROOT/build/herald"
fi
bench_dirty tests/bench
bench_copy_bin
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date -u '+%Y-%m-%d %H:%M UTC')
log "running $ROUNDS rounds with a copy of the binary (commit $COMMIT, dirty=$DIRTY)"
HERALD_BIN=$HERALD HERALD_TEST_ADDR_OFFSET=${HERALD_TEST_ADDR_OFFSET:-1700} \
    $PY "$BENCH/txn_bench.py" --rounds "$ROUNDS" >"$TMP/table.md" || die "txn_bench.py"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

{
    echo "<!-- txn.sh: begin -->"
    echo "## Transactions: one txn of 64 KV sets vs 64 single PUTs (\`tests/bench/txn.sh\`)"
    echo
    echo "Command: \`tests/bench/txn.sh --rounds $ROUNDS$([ "$RECORD" = 1 ] && echo ' --record')\`; $START; commit" \
        "$COMMIT$([ "$DIRTY" = 1 ] && echo ' (work tree with uncommitted changes)'); release" \
        "build; 3 servers on loopback; values of 100 bytes; round 0 (warm-up) not counted."
    echo "Contention: $(nproc) CPUs shared with other engineers' builds and tests; load" \
        "average $LOAD_BEFORE before, $LOAD_AFTER after."
    echo
    cat "$TMP/table.md"
    echo
    echo "<!-- txn.sh: end -->"
} >"$TMP/section.md"
cat "$TMP/section.md"
if [ "$RECORD" = 1 ]; then
    $PY - "$ROOT/tests/bench/RESULTS.md" "$TMP/section.md" <<'PYEOF'
import sys
path, sec = sys.argv[1], open(sys.argv[2]).read()
text = open(path).read()
b, e = "<!-- txn.sh: begin -->", "<!-- txn.sh: end -->"
if b in text and e in text:
    text = text[:text.index(b)] + sec.rstrip("\n") + text[text.index(e) + len(e):]
else:
    text = text.rstrip("\n") + "\n\n" + sec
open(path, "w").write(text)
PYEOF
    log "recorded in tests/bench/RESULTS.md"
fi
