#!/usr/bin/python3
"""Gossip side by side: N of our engines (tests/tools/gossip_node, release build: `make
build/tests/tools/gossip_node`) and N of Debian's serf agents, each pool on its own loopback
addresses, both with memberlist's LAN timings (probe 1 s, suspicion 4 x max(1, log10 N) s).

For each pool: time to converge after N-1 joins to the first member; our idle UDP bytes sent
per member per second once the joins' gossip has settled (serf's is not measured here: issue 11
quotes ~280 B/s); then one member
is killed (SIGKILL) and the time until the first and until every survivor marks it failed is
taken (ours: their event lines; serf: `serf members` polled by one thread per survivor, so
its figures carry ~50 ms of polling), with any healthy member marked failed counted as a
false positive. --rounds repeats the kill on fresh pools.

usage: tests/bench/gossip.py [--n 10] [--rounds 3] [--idle 10] [--settle 5]
"""
import argparse
import json
import os
import statistics
import subprocess
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NODE = os.path.join(ROOT, "build", "tests", "tools", "gossip_node")
PORT = 7946


def until(fn, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.05)  # polling interval of a bounded wait
    raise SystemExit("timed out: %s" % what)


class Ours:
    def __init__(self, n, net):
        self.n, self.procs, self.events = n, [], {}
        self.addrs = ["127.0.%d.%d" % (net, 10 + i) for i in range(n)]
        for i, a in enumerate(self.addrs):
            argv = [NODE, "-node", "h%d" % i, "-bind", "%s:%d" % (a, PORT)]
            if i:
                argv += ["-join", "%s:%d" % (self.addrs[0], PORT)]
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
            self.procs.append(p)
            self.events[i] = []
            threading.Thread(target=self._read, args=(i, p), daemon=True).start()

    def _read(self, i, p):
        for line in p.stdout:
            self.events[i].append((time.monotonic(), json.loads(line)))

    def alive_seen(self, i):
        st = {}
        for _, e in list(self.events[i]):
            if e["event"] in ("join", "fail", "leave"):
                st[e["name"]] = e["event"]
        return sum(v == "join" for v in st.values())

    def converged(self):
        return all(self.alive_seen(i) == self.n for i in range(self.n))

    def bytes_out(self):
        total = 0
        for i, p in enumerate(self.procs):
            k = len(self.events[i])
            p.stdin.write("stats\n")
            p.stdin.flush()
            ev = until(lambda: next((e for _, e in self.events[i][k:] if e["event"] == "stats"),
                                    None), 10, "stats")
            total += ev["udp_bytes_out"]
        return total

    def failed_at(self, i, name):
        return next((t for t, e in list(self.events[i])
                     if e["event"] == "fail" and e["name"] == name), None)

    def false_positives(self, victim):
        return sum(1 for i in range(self.n) for _, e in self.events[i]
                   if e["event"] == "fail" and e["name"] != "h%d" % victim)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.stdin.write("quit\n")
                p.stdin.flush()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def serf_members(addr):
    out = subprocess.run(["serf", "members", "-rpc-addr=%s:7373" % addr, "-format=json"],
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        return {}
    return {m["name"]: m["status"] for m in json.loads(out.stdout)["members"]}


class Serfs:
    def __init__(self, n, net):
        self.n, self.procs = n, []
        self.addrs = ["127.0.%d.%d" % (net, 10 + i) for i in range(n)]
        for i, a in enumerate(self.addrs):
            argv = ["serf", "agent", "-node", "s%d" % i, "-bind", "%s:%d" % (a, PORT),
                    "-rpc-addr", "%s:7373" % a, "-log-level", "warn"]
            if i:
                argv += ["-join", "%s:%d" % (self.addrs[0], PORT)]
            self.procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
            until(lambda: "s%d" % i in serf_members(a), 20, "serf agent s%d" % i)

    def converged(self):
        return all(sum(v == "alive" for v in serf_members(a).values()) == self.n
                   for a in self.addrs)

    def watch_failure(self, victim, t0, timeout):
        seen, bad = {}, []

        def poll(i):
            end = t0 + timeout
            while time.monotonic() < end:
                m = serf_members(self.addrs[i])
                bad.extend(k for k, v in m.items() if v == "failed" and k != "s%d" % victim)
                if m.get("s%d" % victim) == "failed":
                    seen[i] = time.monotonic() - t0
                    return
                time.sleep(0.02)  # polling interval of a bounded wait

        ts = [threading.Thread(target=poll, args=(i,)) for i in range(self.n) if i != victim]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return seen, len(set(bad))

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def fmt(xs):
    return "%.2f / %.2f / %.2f" % (min(xs), statistics.median(xs), max(xs)) if xs else "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=float, default=10)
    ap.add_argument("--settle", type=float, default=5,
                    help="seconds after converging before the idle window (the joins' gossip)")
    args = ap.parse_args()
    assert os.path.exists(NODE), "make build/tests/tools/gossip_node first"
    res = {"ours": {"conv": [], "first": [], "all": [], "fp": 0, "bw": []},
           "serf": {"conv": [], "first": [], "all": [], "fp": 0}}
    for r in range(args.rounds):
        t = time.monotonic()
        pool = Ours(args.n, 9)
        try:
            until(pool.converged, 60, "our pool converged")
            res["ours"]["conv"].append(time.monotonic() - t)
            t0 = time.monotonic()
            until(lambda: time.monotonic() - t0 >= args.settle, args.settle + 5, "settle")
            b0, t0 = pool.bytes_out(), time.monotonic()
            until(lambda: time.monotonic() - t0 >= args.idle, args.idle + 5, "idle window")
            res["ours"]["bw"].append((pool.bytes_out() - b0) / (time.monotonic() - t0) / args.n)
            victim = args.n - 1
            t0 = time.monotonic()
            pool.procs[victim].kill()
            times = until(lambda: (lambda v: v if None not in v else None)(
                [pool.failed_at(i, "h%d" % victim) for i in range(victim)]), 120,
                "our failure detection")
            res["ours"]["first"].append(min(times) - t0)
            res["ours"]["all"].append(max(times) - t0)
            res["ours"]["fp"] += pool.false_positives(victim)
        finally:
            pool.stop()
        t = time.monotonic()
        serfs = Serfs(args.n, 10)
        try:
            until(serfs.converged, 60, "serf pool converged")
            res["serf"]["conv"].append(time.monotonic() - t)
            victim = args.n - 1
            t0 = time.monotonic()
            serfs.procs[victim].kill()
            seen, fp = serfs.watch_failure(victim, t0, 120)
            if len(seen) != args.n - 1:
                raise SystemExit("serf: not every survivor saw the failure")
            res["serf"]["first"].append(min(seen.values()))
            res["serf"]["all"].append(max(seen.values()))
            res["serf"]["fp"] += fp
        finally:
            serfs.stop()
        print("round %d done" % (r + 1), flush=True)
    print("N=%d, %d rounds; seconds as min / median / max" % (args.n, args.rounds))
    print("| pool | converge (start+join) | failure: first | failure: all | false failed |"
          " idle UDP B/s per member |")
    print("|---|---|---|---|---:|---:|")
    o, s = res["ours"], res["serf"]
    print("| ours | %s | %s | %s | %d | %.0f |" % (fmt(o["conv"]), fmt(o["first"]),
                                                 fmt(o["all"]), o["fp"],
                                                 statistics.median(o["bw"])))
    print("| serf | %s | %s | %s | %d | - |" % (fmt(s["conv"]), fmt(s["first"]), fmt(s["all"]),
                                              s["fp"]))


if __name__ == "__main__":
    main()
