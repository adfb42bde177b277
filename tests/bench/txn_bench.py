#!/usr/bin/python3
"""A transaction of 64 KV sets against 64 single PUTs on a 3-server Herald cluster (issue 13,
item 6). Driven by tests/bench/txn.sh, which builds the release binary and records the report.

Per round, against the leader and then against a follower (which forwards to the leader):
  - 64 single PUT /v1/kv/<key> one after the other (each waits for its commit),
  - 64 single PUTs at once (64 threads: the group commit may put several in one Raft entry),
  - one PUT /v1/txn with the same 64 sets;
each timed (wall time of the whole step) and counted in Raft log entries: the leader's
last_log_index from /v1/agent/self before and after (every log entry, barriers included; a
group-committed entry with several writes counts once). The report is Markdown on stdout:
median and min-max over the rounds. The cluster is started with tests/integration's helpers
(HERALD_BIN: the binary; HERALD_TEST_ADDR_OFFSET: the addresses), every process stopped by
pid at the end."""
import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from herald_test.cluster import Cluster  # noqa: E402

N_OPS = 64
VALUE = "x" * 100


def put(agent, path, body):
    req = urllib.request.Request(agent.http + path, data=body.encode(), method="PUT")
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()
        return r.status


def last_log_index(leader):
    with urllib.request.urlopen(leader.http + "/v1/agent/self", timeout=10) as r:
        return json.loads(r.read())["Stats"]["raft"]["last_log_index"]


def singles_serial(agent, prefix):
    for i in range(N_OPS):
        assert put(agent, "/v1/kv/%s/%02d" % (prefix, i), VALUE) == 200


def singles_parallel(agent, prefix):
    errors = []

    def one(i):
        try:
            assert put(agent, "/v1/kv/%s/%02d" % (prefix, i), VALUE) == 200
        except Exception as e:  # reported after the join
            errors.append(e)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(N_OPS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    assert not errors, errors


def one_txn(agent, prefix):
    import base64
    v = base64.b64encode(VALUE.encode()).decode()
    ops = [{"KV": {"Verb": "set", "Key": "%s/%02d" % (prefix, i), "Value": v}}
           for i in range(N_OPS)]
    assert put(agent, "/v1/txn", json.dumps(ops)) == 200


MODES = [("64 single PUTs, one after the other", singles_serial),
         ("64 single PUTs at once (64 threads)", singles_parallel),
         ("one txn of 64 sets", one_txn)]


def fmt(xs, unit):
    med = statistics.median(xs)
    if unit == "ms":
        return "%.1f (%.1f–%.1f)" % (med, min(xs), max(xs))
    return "%g (%g–%g)" % (med, min(xs), max(xs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="herald-txn-bench-") as tmp:
        c = Cluster(tmp, 3)
        try:
            c.start()
            leader = c.wait_leader()
            follower = c.followers(leader)[0]
            c.wait_converged()
            rows = []
            for target_name, target in (("leader", leader), ("follower", follower)):
                res = {m[0]: ([], []) for m in MODES}
                for r in range(args.rounds + 1):  # round 0 warms up, not counted
                    for name, fn in MODES:
                        log0 = last_log_index(leader)
                        t0 = time.monotonic()
                        fn(target, "b/%s/%d/%d" % (target_name, r, MODES.index((name, fn))))
                        dt = (time.monotonic() - t0) * 1000
                        log1 = last_log_index(leader)
                        if r:
                            res[name][0].append(dt)
                            res[name][1].append(log1 - log0)
                for name, _ in MODES:
                    ms, ents = res[name]
                    rows.append((target_name, name, fmt(ms, "ms"), fmt(ents, "n"),
                                 "%.2f" % (statistics.median(ms) / N_OPS)))
        finally:
            failures = c.stop_all()
            if failures:
                print("\n".join(failures), file=sys.stderr)
    print("| sent to | what | wall time, ms: median (min–max) | Raft log entries | ms per op |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| %s |" % " | ".join(row))


if __name__ == "__main__":
    main()
