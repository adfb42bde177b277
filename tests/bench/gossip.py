#!/usr/bin/python3
"""Gossip side by side (issue 11, "Measured"): a pool of N of our engines
(tests/tools/gossip_node, release build) and a pool of N of Debian's serf agents (memberlist's
LAN defaults), one pool at a time, on the same machine, same N, same scenarios.

Where they run: a network namespace of the bench's own (the hub: a bridge br0 carrying every
member's address, 10.210.1.x ours, 10.210.2.x serf's), so the counters below see nothing but
the pools' traffic; the member that loses packets runs in a namespace of its own whose eth0
is a veth on the hub's bridge, with an nftables table there dropping 30% of what it sends and
30% of what it receives (`numgen random mod 100 < 30 drop` on its output and input hooks; this
kernel has no netem). The namespaces are created and removed by the bench (needs root).

Scenarios, each on a fresh pool (the pool's N-1 members join member 0 and converge; then
--settle seconds):
  kill  the N-th member joins: time until the first and until every member lists it alive
        (join convergence); --idle seconds of idle traffic are counted; then it is killed
        (SIGKILL): time until the first and until every survivor marks it failed.
  stop  the N-th member is SIGSTOPped until every other member marks it failed, and 2 s more;
        then SIGCONT: time until every member lists it alive again (it refutes).
  loss  the N-th member, in its own namespace, loses 30% of its packets both ways for
        --loss seconds.
In every scenario, a member other than the one killed or stopped that anyone marks failed
(the lossy one included) is a false positive: the figure must be 0.

How it is measured:
  - events: ours from gossip_node's JSON lines (each carries the engine's wall clock at the
    event); serf's from the agent's log (-log-level info), whose "serf: EventMemberFailed:
    NAME" line serf writes when the member's state changes, stamped when the bench reads it
    (a pipe away). Not serf's event handlers: the agent coalesces member events for 1 to 3 s
    before it runs them.
  - idle bytes per member: an nftables table in the hub counts, per pool, every IPv4 packet
    (headers included, UDP and TCP, push-pull included) sent from or to the gossip port by
    the pool's addresses, at the output hook (loopback traffic is seen once there); the
    window's bytes / seconds / N. serf's RPC port is not counted, and nothing polls it then.

usage: tests/bench/gossip.py [--n 10] [--rounds 3] [--idle S] [--settle 10] [--loss 60]
                             [--scenarios kill,stop,loss] [--impl ours,serf] [--json FILE]
                             [--set NAME=VALUE]...   (our gossip_node's -set: timings)
"""
import argparse
import ctypes
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NODE = os.path.join(ROOT, "build", "tests", "tools", "gossip_node")
PORT = 7946
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def run(*argv, check=True, input=None):
    r = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=30)
    if check and r.returncode != 0:
        raise SystemExit("%s: %s" % (" ".join(argv), r.stderr.strip()))
    return r


def until(fn, timeout, what):
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= end:
            raise TimeoutError("timed out: %s" % what)
        time.sleep(0.05)  # polling interval of a bounded wait


def pause(seconds):
    """Lets the pools run for a while (a measurement window, not a synchronisation)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(0.2, max(0.0, end - time.monotonic())))


class Lab:
    """The hub namespace (the bench's main thread moves into it) and lossy members' ones."""

    def __init__(self):
        self.tag = "hgb%d" % (os.getpid() % 100000)
        self.hub = self.tag + "-hub"
        self.extra = []
        self.own = None

    def __enter__(self):
        run("ip", "netns", "add", self.hub)
        run("ip", "-n", self.hub, "link", "set", "lo", "up")
        run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.hub, "addr", "add", "10.210.0.254/16", "dev", "br0")
        run("ip", "-n", self.hub, "link", "set", "br0", "up")
        self.own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open("/var/run/netns/" + self.hub, os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
        run("nft", "-f", "-", input="""table inet gbench {
  counter ours {}
  counter serf {}
  chain out {
    type filter hook output priority 0; policy accept;
    ip saddr 10.210.1.0/24 th sport %d counter name ours
    ip saddr 10.210.1.0/24 th dport %d th sport != %d counter name ours
    ip saddr 10.210.2.0/24 th sport %d counter name serf
    ip saddr 10.210.2.0/24 th dport %d th sport != %d counter name serf
  }
}
""" % ((PORT,) * 6))
        return self

    def __exit__(self, *exc):
        if self.own is not None:
            _libc.setns(self.own, CLONE_NEWNET)
            os.close(self.own)
        for ns in self.extra + [self.hub]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)

    def addr(self, ip):
        run("ip", "addr", "add", ip + "/32", "dev", "br0")

    def del_addr(self, ip):
        run("ip", "addr", "del", ip + "/32", "dev", "br0", check=False)

    def counter(self, name):
        out = run("nft", "-j", "list", "counter", "inet", "gbench", name).stdout
        for o in json.loads(out)["nftables"]:
            if "counter" in o:
                return o["counter"]["bytes"]
        raise SystemExit("no nft counter " + name)

    def lossy_ns(self, ip, i):
        """A namespace for one member: eth0 (ip/16) on the hub's bridge; returns its name."""
        ns = "%s-l%d" % (self.tag, len(self.extra))
        run("ip", "netns", "add", ns)
        self.extra.append(ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "link", "add", "vl%d" % i, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "link", "set", "vl%d" % i, "master", "br0")
        run("ip", "link", "set", "vl%d" % i, "up")
        run("ip", "-n", ns, "addr", "add", ip + "/16", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        return ns

    def lose(self, ns, pct):
        """Drops pct% of what the namespace's members send and receive."""
        run("ip", "netns", "exec", ns, "nft", "-f", "-", input="""table inet loss {
  chain in {
    type filter hook input priority 0; policy accept;
    iifname "eth0" numgen random mod 100 < %d drop
  }
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "eth0" numgen random mod 100 < %d drop
  }
}
""" % (pct, pct))


class Member:
    def __init__(self, proc):
        self.proc = proc

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)


class Pool:
    """Common to both pools: members, their events as (wall time, kind, member name)."""
    subnet = None
    prefix = None
    counter = None

    def __init__(self, lab, n, tmp, args):
        self.lab, self.n, self.tmp, self.args = lab, n, tmp, args
        self.members = [None] * n
        self.ns = [None] * n
        self.addrs = ["10.210.%d.%d" % (self.subnet, 10 + i) for i in range(n)]

    def name(self, i):
        return "%s%d" % (self.prefix, i)

    def start_member(self, i, netns=None):
        self.ns[i] = netns
        if netns:
            self.addrs[i] = "10.210.%d.250" % self.subnet
        else:
            self.lab.addr(self.addrs[i])
        argv = self.argv(i, self.addrs[0] if i else None)
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        self.members[i] = Member(self.spawn(i, argv))

    def status(self, i):
        """name -> last member event kind seen by member i ("join", "fail", "leave")."""
        st = {}
        for _, kind, name in self.events(i):
            st[name] = kind
        return st

    def sees_all(self, i, names):
        st = self.status(i)
        return all(st.get(x) == "join" for x in names)

    def form(self, count):
        """Starts members 0..count-1 and waits until each lists every one alive."""
        for i in range(count):
            self.start_member(i)
            if i == 0:
                until(lambda: self.sees_all(0, [self.name(0)]), 30, "first member up")
        names = [self.name(i) for i in range(count)]
        until(lambda: all(self.sees_all(i, names) for i in range(count)), 120,
              "%s pool of %d formed" % (self.prefix, count))

    def times(self, others, pred):
        """Per member of others: the first event time pred accepts, or None."""
        out = {}
        for i in others:
            out[i] = next((t for t, kind, name in self.events(i) if pred(t, kind, name)), None)
        return out

    def wait_all(self, others, pred, timeout, what):
        return until(lambda: (lambda v: v if None not in v.values() else None)(
            self.times(others, pred)), timeout, what)

    def false_positives(self, excused):
        """(members marked failed by anyone, how many such events) but for excused."""
        names, count = set(), 0
        for i in range(self.n):
            if self.members[i] is None:
                continue
            for _, kind, name in self.events(i):
                if kind == "fail" and name not in excused:
                    names.add(name)
                    count += 1
        return sorted(names), count

    def stop_all(self):
        for m in self.members:
            if m is not None:
                m.signal(signal.SIGCONT)
                m.signal(signal.SIGKILL)
        for m in self.members:
            if m is not None:
                try:
                    m.proc.wait(20)
                except subprocess.TimeoutExpired:
                    pass
        for i, a in enumerate(self.addrs):
            if self.members[i] is not None and not self.ns[i]:
                self.lab.del_addr(a)


class Ours(Pool):
    subnet, prefix, counter = 1, "h", "ours"

    def argv(self, i, join):
        argv = [NODE, "-node", self.name(i), "-bind", "%s:%d" % (self.addrs[i], PORT)]
        for s in self.args.set or []:
            argv += ["-set", s]
        if join:
            argv += ["-join", "%s:%d" % (join, PORT)]
        return argv

    def spawn(self, i, argv):
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        if not hasattr(self, "ev"):
            self.ev, self.raw = {}, {}
        self.ev[i], self.raw[i] = [], []
        threading.Thread(target=self._read, args=(i, p), daemon=True).start()
        return p

    def _read(self, i, p):
        for line in p.stdout:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            self.raw[i].append(e)
            if e["event"] in ("join", "fail", "leave"):
                self.ev[i].append((e.get("ts", time.time()), e["event"], e["name"]))

    def events(self, i):
        return list(self.ev.get(i, ()))

    def stats(self, i):
        k = len(self.raw[i])
        self.members[i].proc.stdin.write("stats\n")
        self.members[i].proc.stdin.flush()
        return until(lambda: next((e for e in self.raw[i][k:] if e["event"] == "stats"), None),
                     10, "stats")


class Serfs(Pool):
    subnet, prefix, counter = 2, "s", "serf"
    KINDS = {"Join": "join", "Failed": "fail", "Leave": "leave"}
    LINE = re.compile(r"serf: EventMember(Join|Failed|Leave): (\S+)")

    def argv(self, i, join):
        argv = ["serf", "agent", "-node", self.name(i), "-bind", "%s:%d" % (self.addrs[i], PORT),
                "-rpc-addr", "%s:7373" % self.addrs[i], "-log-level", "info"]
        if join:
            argv += ["-join", "%s:%d" % (join, PORT)]
        return argv

    def spawn(self, i, argv):
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if not hasattr(self, "ev"):
            self.ev = {}
        self.ev[i] = []
        threading.Thread(target=self._read, args=(i, p), daemon=True).start()
        return p

    def _read(self, i, p):
        for line in p.stdout:
            m = self.LINE.search(line)
            if m:
                self.ev[i].append((time.time(), self.KINDS[m.group(1)], m.group(2)))

    def events(self, i):
        return list(self.ev.get(i, ()))


def spread(xs):
    if not xs:
        return "-"
    if len(xs) == 1:
        return "%.2f" % xs[0]
    return "%.2f (%.2f-%.2f)" % (statistics.median(xs), min(xs), max(xs))


def scenario_kill(pool, args, res):
    n = pool.n
    pool.form(n - 1)
    pause(args.settle)
    v, vname = n - 1, pool.name(n - 1)
    t0 = time.time()
    pool.start_member(v)
    others = range(n - 1)
    seen = pool.wait_all(others, lambda t, k, x: k == "join" and x == vname, 60,
                         "join of %s seen by all" % vname)
    res["join_first"].append(min(seen.values()) - t0)
    res["join_all"].append(max(seen.values()) - t0)
    until(lambda: pool.sees_all(v, [pool.name(i) for i in range(n)]), 60, "newcomer converged")
    pause(args.settle)
    b0, t0 = pool.lab.counter(pool.counter), time.monotonic()
    pause(args.idle)
    b1, t1 = pool.lab.counter(pool.counter), time.monotonic()
    res["idle_bps"].append((b1 - b0) / (t1 - t0) / n)
    t0 = time.time()
    pool.members[v].signal(signal.SIGKILL)
    seen = pool.wait_all(others, lambda t, k, x: k == "fail" and x == vname and t >= t0, 120,
                         "failure of %s seen by all" % vname)
    res["fail_first"].append(min(seen.values()) - t0)
    res["fail_all"].append(max(seen.values()) - t0)
    names, count = pool.false_positives({vname})
    res["fp"] += count
    res["fp_names"] += names


def scenario_stop(pool, args, res):
    n = pool.n
    pool.form(n)
    pause(args.settle)
    v, vname = n - 1, pool.name(n - 1)
    others = range(n - 1)
    t0 = time.time()
    pool.members[v].signal(signal.SIGSTOP)
    try:
        seen = pool.wait_all(others, lambda t, k, x: k == "fail" and x == vname and t >= t0, 120,
                             "stopped %s marked failed by all" % vname)
        res["stop_fail_all"].append(max(seen.values()) - t0)
        pause(2)
    finally:
        t1 = time.time()
        pool.members[v].signal(signal.SIGCONT)
    try:
        seen = pool.wait_all(others, lambda t, k, x: k == "join" and x == vname and t >= t1, 120,
                             "%s alive again everywhere" % vname)
    except TimeoutError:
        for i in range(n):
            print(i, [(round(t - t0, 2), k, x) for t, k, x in pool.events(i) if t >= t0 - 1],
                  file=sys.stderr)
        raise
    res["back_all"].append(max(seen.values()) - t1)
    pause(args.settle)
    names, count = pool.false_positives({vname})
    res["fp"] += count
    res["fp_names"] += names


def scenario_loss(pool, args, res):
    n = pool.n
    pool.form(n - 1)
    v, vname = n - 1, pool.name(n - 1)
    ns = pool.lab.lossy_ns("10.210.%d.250" % pool.subnet, pool.subnet * 1000 + len(pool.lab.extra))
    pool.start_member(v, netns=ns)
    until(lambda: all(pool.sees_all(i, [pool.name(k) for k in range(n)]) for i in range(n)), 60,
          "pool with the lossy member formed")
    pause(args.settle)
    pool.lab.lose(ns, 30)
    pause(args.loss)
    names, count = pool.false_positives(set())
    res["fp"] += count
    res["fp_names"] += names
    res["loss_secs"] += args.loss
    if isinstance(pool, Ours):
        res["refutes"].append(pool.stats(v)["refutes"])
    run("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "loss", check=False)


SCENARIOS = {"kill": scenario_kill, "stop": scenario_stop, "loss": scenario_loss}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="kill rounds (fresh pools)")
    ap.add_argument("--idle", type=float, default=None,
                    help="idle window, default one push-pull period (memberlist's scaled 30 s)")
    ap.add_argument("--settle", type=float, default=10)
    ap.add_argument("--loss", type=float, default=60)
    ap.add_argument("--scenarios", default="kill,stop,loss")
    ap.add_argument("--impl", default="ours,serf")
    ap.add_argument("--set", action="append", help="gossip_node -set NAME=VALUE")
    ap.add_argument("--json", help="write the raw figures there too")
    args = ap.parse_args()
    if args.idle is None:
        # memberlist's pushPullScale, as ours: a window holds each member's push-pull once
        args.idle = 30 * (1 + max(0, math.ceil(math.log2(args.n) - 5))) if args.n > 32 else 30
    assert os.path.exists(NODE), "make build/tests/tools/gossip_node first"
    # SIGTERM (and SIGINT, which a background job ignores) clean up: processes, namespaces
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    assert os.geteuid() == 0, "the bench makes network namespaces: run it as root"
    impls = {"ours": Ours, "serf": Serfs}
    keys = ("join_first", "join_all", "idle_bps", "fail_first", "fail_all", "stop_fail_all",
            "back_all", "refutes", "fp_names")
    res = {k: {"fp": 0, "loss_secs": 0, **{x: [] for x in keys}}
           for k in args.impl.split(",")}
    fp_by = {k: {} for k in res}
    tmp = tempfile.mkdtemp(prefix="gossip-bench-")
    try:
        with Lab() as lab:
            for sc in args.scenarios.split(","):
                for r in range(args.rounds if sc == "kill" else 1):
                    for impl in res:
                        pool = impls[impl](lab, args.n, tmp, args)
                        before = res[impl]["fp"]
                        try:
                            SCENARIOS[sc](pool, args, res[impl])
                        finally:
                            pool.stop_all()
                        fp_by[impl][sc] = fp_by[impl].get(sc, 0) + res[impl]["fp"] - before
                        print("N=%d %s %s round %d done" % (args.n, impl, sc, r + 1), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("N=%d; seconds as median (min-max) over %d kill rounds" % (args.n, args.rounds))
    print("| pool | join seen: first | join seen: every member | failure (SIGKILL) seen: first "
          "| failure seen: every member | idle B/s per member | SIGSTOP: failed by all | "
          "SIGCONT: alive again everywhere | healthy marked failed (kill, stop, loss) |")
    print("|---|---|---|---|---|---:|---|---|---|")
    for impl, r in res.items():
        bw = statistics.median(r["idle_bps"]) if r["idle_bps"] else float("nan")
        fps = ", ".join(str(fp_by[impl].get(s, "-")) for s in ("kill", "stop", "loss"))
        print("| %s | %s | %s | %s | %s | %.0f | %s | %s | %s |" % (
            impl, spread(r["join_first"]), spread(r["join_all"]), spread(r["fail_first"]),
            spread(r["fail_all"]), bw, spread(r["stop_fail_all"]), spread(r["back_all"]), fps))
    if "ours" in res and "serf" in res and res["ours"]["fail_all"] and res["serf"]["fail_all"]:
        o, s = res["ours"], res["serf"]
        print()
        print("ours / serf: failure seen by every member %.2fx, idle bytes %.2fx, join seen by "
              "every member %.2fx" % (
                  statistics.median(o["fail_all"]) / statistics.median(s["fail_all"]),
                  statistics.median(o["idle_bps"]) / statistics.median(s["idle_bps"]),
                  statistics.median(o["join_all"]) / statistics.median(s["join_all"])))
    for impl, r in res.items():
        if r["loss_secs"]:
            print("%s: 30%% loss for %.0f s: %d false failures%s" % (
                impl, r["loss_secs"], fp_by[impl].get("loss", 0),
                ("; the lossy member refuted %s suspicions" % r["refutes"]) if r["refutes"]
                else ""))
        if r["fp_names"]:
            print("%s: members marked failed wrongly: %s" % (impl, sorted(set(r["fp_names"]))))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": args.n, "res": res, "fp_by": fp_by}, f, indent=1)
    bad = sum(r["fp"] for r in res.values())
    sys.exit(1 if bad and "ours" in res and res["ours"]["fp"] else 0)


if __name__ == "__main__":
    main()
