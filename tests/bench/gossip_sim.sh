#!/usr/bin/env bash
# Gossip simulation: tests/tools/gossip_sim (release build) at N = 10, 100 and 1,000 members,
# each with 0% and 5% datagram loss, latency 1 ± 0.5 ms: N engines in one process on a simulated
# network (gossip's net seam; TCP real over 127.120.x.y). Per run: convergence after N joins
# (every member, and 99% of them, lists N alive), idle UDP bytes and packets sent per member per
# second, a new member's join until every member lists it, a killed member until every survivor
# lists it failed, false positives (healthy members listed failed by anyone) and refutes, and
# the simulator's own cost (CPU, loop lag). The engine's default timings (gossip_config_defaults).
#
# One core runs the whole pool. Where it cannot keep up in real time (N=1000: the joins' burst
# of broadcasts, the push-pulls of 1,000-member states) the run goes in slow motion:
# --slow-1000 K (default 5) multiplies every duration of the engines and the network by K and
# the simulator reports simulated time (see tests/tools/gossip_sim.c), and members join at
# --join-rate-1000 R per second (default 20; 50 for N = 10 and 100). The loop-lag column says
# whether a run kept up.
#
# Members start and join one after another (R per second), each through a random member
# already in; "converge" is timed from the first join and from the last.
#
# usage: tests/bench/gossip_sim.sh [--n "10 100 1000"] [--loss "0 5"] [--latency MS]
#                                  [--jitter MS] [--slow-1000 K] [--join-rate-1000 R]
#                                  [--rounds R] [--quick]
#   --quick   N = 10 and 100 only, one round (about 3 minutes); the full run adds N=1000, 15 to
#             35 minutes per loss figure (more when the machine is busy: run nothing beside it)
#   --rounds  runs per configuration (default 1); the table lists each run
# Prints a Markdown table (and the JSON lines of the runs under $TMP, removed at exit).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

NS="10 100 1000"
LOSSES="0 5"
LATENCY=1
JITTER=0.5
SLOW1000=5
RATE1000=20
ROUNDS=1
ORIG_ARGS=("$@")
while [ $# -gt 0 ]; do
    case $1 in
    --n) NS=$2; shift 2 ;;
    --loss) LOSSES=$2; shift 2 ;;
    --latency) LATENCY=$2; shift 2 ;;
    --jitter) JITTER=$2; shift 2 ;;
    --slow-1000) SLOW1000=$2; shift 2 ;;
    --join-rate-1000) RATE1000=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --quick) NS="10 100"; ROUNDS=1; shift ;;
    *) die "unknown option $1 (see the usage at the top of $0)" ;;
    esac
done

bench_tmp gossip_sim
bench_commit
log "build (make build/tests/tools/gossip_sim)"
make -C "$ROOT" --no-print-directory build/tests/tools/gossip_sim >"$TMP/make.log" 2>&1 ||
    { tail -20 "$TMP/make.log" >&2; die make; }
cp "$ROOT/build/tests/tools/gossip_sim" "$TMP/gossip_sim"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

PORT=$((21000 + $$ % 20000))
for n in $NS; do
    slow=1 settle=5 rate=50
    [ "$n" -ge 100 ] && settle=15
    [ "$n" -ge 1000 ] && { slow=$SLOW1000; settle=30; rate=$RATE1000; }
    wait=-1 # -converge-wait: unbounded but for N=1000, where stragglers wait for a push-pull
    [ "$n" -ge 1000 ] && wait=30
    for loss in $LOSSES; do
        for ((r = 1; r <= ROUNDS; r++)); do
            log "N=$n loss=$loss% slow=$slow round $r"
            "$TMP/gossip_sim" -n "$n" -loss "$loss" -latency "$LATENCY" -jitter "$JITTER" \
                -slow "$slow" -join-rate "$rate" -settle "$settle" -converge-wait "$wait" -idle 10 -tail 5 -timeout 400 -net 120 \
                -port "$PORT" -json >"$TMP/run.out" 2>"$TMP/run.err" ||
                log "N=$n loss=$loss%: a phase did not complete (see its row)"
            sed -n '1,/^{/p' "$TMP/run.out" | grep -v '^{' >&2 || true
            tail -n 1 "$TMP/run.out" >>"$TMP/runs.jsonl"
        done
    done
done

echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); commit $COMMIT"
echo "- load average (1/5/15 min) before $LOAD_START, after $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- command: \`tests/bench/gossip_sim.sh${ORIG_ARGS[*]:+ ${ORIG_ARGS[*]}}\`;" \
    "latency $LATENCY ± $JITTER ms"
echo
$PY - "$TMP/runs.jsonl" <<'EOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def f(v, fmt="%.2f"):
    return "—" if v is None else fmt % v
print("| N | loss | converge: 99% / all (s) | all after the last join (s) | join → all (s) | kill → first / all failed (s)"
      " | false positives | refutes | idle B/s (pkt/s) per member | slow | CPU / wall (s) |"
      " loop lag mean / max (ms) |")
print("|---:|---:|---|---:|---:|---|---:|---:|---|---:|---|---|")
def conv_all(r):
    if r["converge_s"] is not None:
        return f(r["converge_s"])
    return "> %.0f (%d missed %d)" % (r["converge99_s"] + 30, r["stragglers"], r["missing"])
for r in runs:
    print("| %d | %g%% | %s / %s | %s | %s | %s / %s | %d | %d | %s (%s) | %g | %s / %s | %s / %s |%s"
          % (r["n"], r["loss"], f(r["converge99_s"]), conv_all(r),
             f(r["converge_after_last_s"]), f(r["join_all_s"]),
             f(r["fail_first_s"]), f(r["fail_all_s"]), r["false_positives"], r["refutes"],
             f(r["bw_bytes_s"], "%.0f"), f(r["pkts_s"], "%.1f"), r["slow"], f(r["cpu_s"], "%.1f"),
             f(r["wall_s"], "%.0f"), f(r["lag_mean_ms"], "%.1f"), f(r["lag_max_ms"], "%.0f"),
             "" if r["failed_phase"] is None else " phase %s did not complete" % r["failed_phase"]))
EOF
