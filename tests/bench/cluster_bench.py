#!/usr/bin/python3
"""Measurements of tests/bench/cluster.sh on a running 3-server Herald cluster, and its report.

    cluster_bench.py wait     --servers A,B,C [--timeout S]      one agreed leader, all nodes in
    cluster_bench.py leader   --servers A,B,C                     prints the leader's address
    cluster_bench.py follower --servers A,B,C                     prints a follower's address
    cluster_bench.py dnsvis   --servers A,B,C -n N                registration -> DNS on all
    cluster_bench.py failover --servers A,B,C --run DIR --rounds N
    cluster_bench.py catchup  --servers A,B,C --run DIR --prefix P --entries N
    cluster_bench.py report   DIR [--record RESULTS.md]

Servers are addresses with Herald's default ports (HTTP 8500, DNS 8600, server 8300). For
failover and catchup, DIR holds for server number i (1-based, in --servers order) h<i>.pid (its
current pid; rewritten here when this script restarts it), h<i>.argv (its argv, JSON) and
h<i>.log; cluster.sh stops whatever pids those files name at its exit. Every wait is bounded.
Each measuring command prints one JSON object on stdout.
"""
import argparse
import http.client
import json
import os
import random
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

BEGIN = "<!-- cluster.sh: begin -->"
END = "<!-- cluster.sh: end -->"


# ---- HTTP and cluster state ------------------------------------------------------------------

def hreq(addr, method, path, body=None, timeout=5):
    c = http.client.HTTPConnection(addr, 8500, timeout=timeout)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def get_json(addr, path, timeout=5):
    try:
        st, _, body = hreq(addr, "GET", path, timeout=timeout)
    except OSError:
        return None
    if st != 200:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def agreed_leader(servers, timeout=1):
    """The address (without port) every given server names as leader, or None."""
    views = set()
    for s in servers:
        v = get_json(s, "/v1/status/leader", timeout=timeout)
        if not v:
            return None
        views.add(v)
    if len(views) != 1:
        return None
    ip = views.pop().rsplit(":", 1)[0]
    return ip if ip in servers else None


def wait_for(fn, timeout, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    raise SystemExit("cluster_bench: timed out after %ss waiting for %s" % (timeout, what))


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


# ---- processes ---------------------------------------------------------------------------------

class Server:
    def __init__(self, run, i, addr):
        self.run, self.i, self.addr = run, i, addr
        self.proc = None  # when restarted here

    def path(self, ext):
        return os.path.join(self.run, "h%d.%s" % (self.i, ext))

    @property
    def pid(self):
        with open(self.path("pid")) as f:
            return int(f.read().strip())

    def alive(self):
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, ValueError):
            return False

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_gone(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return True
            time.sleep(0.01)
        return False

    def start(self):
        with open(self.path("argv")) as f:
            argv = json.load(f)
        log = open(self.path("log"), "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        with open(self.path("pid") + ".tmp", "w") as f:
            f.write("%d\n" % self.proc.pid)
        os.replace(self.path("pid") + ".tmp", self.path("pid"))

    def data_dir(self):
        with open(self.path("argv")) as f:
            argv = json.load(f)
        return argv[argv.index("-data-dir") + 1]


def servers_arg(s):
    return [x for x in s.split(",") if x]


# ---- wait / leader -------------------------------------------------------------------------

def cmd_wait(a):
    servers = servers_arg(a.servers)
    leader = wait_for(lambda: agreed_leader(servers), a.timeout, what="an agreed leader")

    def nodes_everywhere():
        for s in servers:
            nodes = get_json(s, "/v1/catalog/nodes?stale")
            if not nodes or len(nodes) < len(servers):
                return False
        return True
    wait_for(nodes_everywhere, a.timeout, what="every server's node in every catalog")
    print(leader)


def cmd_leader(a):
    servers = servers_arg(a.servers)
    print(wait_for(lambda: agreed_leader(servers), a.timeout, what="an agreed leader"))


def cmd_follower(a):
    servers = servers_arg(a.servers)
    leader = wait_for(lambda: agreed_leader(servers), a.timeout, what="an agreed leader")
    print([s for s in servers if s != leader][0])


# ---- registration -> DNS on every server -------------------------------------------------------

def dns_packet(qid, name):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", 1, 1)


def dns_ok(resp, qid, ipbytes):
    if len(resp) < 12:
        return False
    rid, flags, _, an = struct.unpack("!HHHH", resp[:8])
    return rid == qid and flags & 0xF == 0 and an > 0 and ipbytes in resp[12:]


def cmd_dnsvis(a):
    """Registers N services, one at a time, on the servers in turn (PUT
    /v1/agent/service/register, a unique address each); after each PUT returns, polls every
    server's DNS (raw UDP, one query outstanding per server, re-sent at once on a negative
    answer) until all three answer with the new address."""
    servers = servers_arg(a.servers)
    leader = wait_for(lambda: agreed_leader(servers), 30, what="an agreed leader")
    socks = {}
    for s in servers:
        so = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        so.connect((s, 8600))
        so.setblocking(False)
        socks[s] = so
    conns = {s: http.client.HTTPConnection(s, 8500, timeout=10) for s in servers}
    qid = random.randrange(65536)
    rows = []
    misses = 0
    queries = 0
    for i in range(a.n):
        origin = servers[i % len(servers)]
        name = "vis%d" % i
        ip = "10.77.%d.%d" % (i // 250, 1 + i % 250)
        ipb = socket.inet_aton(ip)
        body = json.dumps({"Name": name, "ID": name, "Port": 80, "Address": ip})
        t0 = time.perf_counter()
        c = conns[origin]
        c.request("PUT", "/v1/agent/service/register", body=body)
        r = c.getresponse()
        r.read()
        t_ack = time.perf_counter()
        if r.status != 200:
            raise SystemExit("register on %s: %d" % (origin, r.status))
        pending = {s: None for s in servers}  # server -> qid outstanding
        seen = {}
        deadline = t_ack + 2.0
        qname = name + ".service.consul"
        while pending and time.perf_counter() < deadline:
            for s in pending:
                if pending[s] is None:
                    qid = (qid + 1) & 0xFFFF
                    pending[s] = qid
                    socks[s].send(dns_packet(qid, qname))
                    queries += 1
            rd, _, _ = select.select([socks[s] for s in pending], [], [], 0.005)
            now = time.perf_counter()
            for s in list(pending):
                if socks[s] not in rd:
                    continue
                while True:
                    try:
                        resp = socks[s].recv(4096)
                    except BlockingIOError:
                        break
                    if len(resp) >= 2 and struct.unpack("!H", resp[:2])[0] == pending[s]:
                        if dns_ok(resp, pending[s], ipb):
                            seen[s] = now
                            del pending[s]
                            break
                        pending[s] = None  # not there yet: ask again
                        break
            # A lost datagram: ask again after 5 ms without an answer.
            if not rd:
                for s in pending:
                    pending[s] = None
        if pending:
            misses += 1
            continue
        rows.append({"origin": "leader" if origin == leader else "follower",
                     "ack_ms": (t_ack - t0) * 1e3,
                     "all_from_start_ms": (max(seen.values()) - t0) * 1e3,
                     "all_after_ack_ms": (max(seen.values()) - t_ack) * 1e3})
    for c in conns.values():
        c.close()

    def stats(key, rs):
        xs = [r[key] for r in rs]
        return {"p50": pct(xs, 50), "p99": pct(xs, 99), "max": max(xs)} if xs else None
    out = {"n": a.n, "measured": len(rows), "misses": misses, "dns_queries": queries}
    for label, rs in (("all", rows), ("leader", [r for r in rows if r["origin"] == "leader"]),
                      ("follower", [r for r in rows if r["origin"] == "follower"])):
        out[label] = {k: stats(k, rs) for k in ("ack_ms", "all_from_start_ms",
                                                "all_after_ack_ms")}
        out[label]["n"] = len(rs)
    print(json.dumps(out))


# ---- leader kill -> first acknowledged write ---------------------------------------------------

class Writers:
    def __init__(self, servers, n, prefix):
        self.servers = servers
        self.dead = set()
        self.prefix = prefix
        self.lock = threading.Lock()
        self.acked = []  # (t_invoke, t_response, key)
        self.unknown = 0
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(n)]

    def run(self, tid):
        rng = random.Random(tid)
        seq = 0
        conns = {}
        while not self.stop_ev.is_set():
            live = [s for s in self.servers if s not in self.dead]
            s = rng.choice(live)
            seq += 1
            key = "%s/%d-%d" % (self.prefix, tid, seq)
            t0 = time.perf_counter()
            ok = False
            try:
                c = conns.get(s)
                if c is None:
                    c = conns[s] = http.client.HTTPConnection(s, 8500, timeout=5)
                c.request("PUT", "/v1/kv/" + key, body=b"x" * 100)
                r = c.getresponse()
                ok = r.status == 200 and r.read().strip() == b"true"
            except (OSError, http.client.HTTPException):
                c = conns.pop(s, None)
                if c:
                    c.close()
            t1 = time.perf_counter()
            with self.lock:
                if ok:
                    self.acked.append((t0, t1, key))
                else:
                    self.unknown += 1
            if not ok:
                time.sleep(0.005)
        for c in conns.values():
            c.close()

    def first_ack_after(self, t):
        with self.lock:
            ends = [t1 for (t0, t1, _) in self.acked if t0 >= t]
        return min(ends) - t if ends else None


def converged(servers):
    ds = [get_json(s, "/v1/operator/catalog/digest", timeout=30) for s in servers]
    if not all(ds):
        return None
    if len({(d["AppliedIndex"], d["Digest"]) for d in ds}) != 1:
        return None
    return ds[0]


def cmd_failover(a):
    """Writers (a.writers threads, keep-alive connections, unique keys, spread over the live
    servers) run throughout; each round kills the leader with SIGKILL after a second of
    steady writes and measures the time to a new leader all survivors agree on and to the
    first acknowledged write invoked after the kill; the killed server is then restarted
    from its data dir and the next round waits until all three agree again. At the end every
    acknowledged key must be on every server, and the three catalogs identical."""
    servers = servers_arg(a.servers)
    srv = {s: Server(a.run, i + 1, s) for i, s in enumerate(servers)}
    w = Writers(servers, a.writers, "fo")
    for t in w.threads:
        t.start()
    rounds = []
    try:
        for rnd in range(a.rounds):
            leader = wait_for(lambda: agreed_leader(servers), 60, what="an agreed leader")
            time.sleep(1.0)
            survivors = [s for s in servers if s != leader]
            victim = srv[leader]
            t_kill = time.perf_counter()
            victim.signal(signal.SIGKILL)
            w.dead.add(leader)
            new = wait_for(lambda: agreed_leader(survivors, timeout=0.5), 30, interval=0.005,
                           what="a new leader")
            t_new = time.perf_counter() - t_kill
            wait_for(lambda: w.first_ack_after(t_kill) is not None, 30, interval=0.005,
                     what="a write acknowledged after the kill")
            first = w.first_ack_after(t_kill)
            if not victim.wait_gone(10):
                raise SystemExit("killed server %s still there" % leader)
            if victim.proc is not None:
                victim.proc.wait(5)
            victim.start()
            wait_for(lambda: agreed_leader(servers), 60, what="the restarted server back")
            w.dead.discard(leader)
            rounds.append({"killed": leader, "new_leader": new, "new_leader_ms": t_new * 1e3,
                           "first_ack_ms": first * 1e3})
            print("round %d: killed %s, new leader %s after %.0f ms, first acknowledged write "
                  "after %.0f ms" % (rnd + 1, leader, new, t_new * 1e3, first * 1e3),
                  file=sys.stderr)
            time.sleep(0.5)
    finally:
        w.stop_ev.set()
        for t in w.threads:
            t.join(15)
    d = wait_for(lambda: converged(servers), 60, interval=0.2, what="identical catalogs")
    missing = 0
    for s in servers:
        keys = set(get_json(s, "/v1/kv/fo/?keys&stale", timeout=30) or [])
        missing += sum(1 for (_, _, k) in w.acked if k not in keys)
    print(json.dumps({"rounds": rounds, "writers": a.writers, "acked": len(w.acked),
                      "unknown": w.unknown, "missing_acked_on_any_server": missing,
                      "applied_index": d["AppliedIndex"],
                      "first_ack_ms_median": statistics.median(r["first_ack_ms"]
                                                               for r in rounds),
                      "new_leader_ms_median": statistics.median(r["new_leader_ms"]
                                                                for r in rounds)}))


# ---- catch-up of a wiped server ----------------------------------------------------------------

def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def until(fn, timeout, interval):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    return None


def stop_server(srv):
    srv.signal(signal.SIGTERM)
    if not srv.wait_gone(30):
        raise SystemExit("server %s did not stop in 30 s" % srv.addr)
    if srv.proc is not None:
        srv.proc.wait(5)


def wipe_server(srv):
    """Removes everything in the server's data dir but its node-id file (so it keeps its
    Raft id: the cluster's configuration still lists it). Returns the bytes removed."""
    ddir = srv.data_dir()
    before = du(ddir)
    for name in os.listdir(ddir):
        if name != "node-id":
            subprocess.run(["rm", "-rf", "--", os.path.join(ddir, name)], check=True)
    return before


def log_size(srv):
    try:
        return os.path.getsize(srv.path("log"))
    except OSError:
        return 0


def log_since(srv, off):
    with open(srv.path("log"), "rb") as fh:
        fh.seek(off)
        return fh.read().decode("utf-8", "replace")


def catalog_index(addr):
    try:
        st, h, _ = hreq(addr, "GET", "/v1/status/leader", timeout=2)
    except OSError:
        return None
    return int(h.get("X-Consul-Index", "0")) if st == 200 else None


def time_catch_up(servers, f, target, timeout):
    """Seconds from now until f's catalog index reaches target, and until all servers'
    digests are equal (None: not within timeout)."""
    t0 = time.perf_counter()
    ok = until(lambda: (catalog_index(f.addr) or 0) >= target, timeout, 0.01)
    t_cat = time.perf_counter() - t0 if ok else None
    d = until(lambda: converged(servers), max(1.0, timeout - (time.perf_counter() - t0)),
              0.05) if ok else None
    t_dig = time.perf_counter() - t0 if d else None
    return t_cat, t_dig, d


def cmd_wipe(a):
    """Stops a follower (SIGTERM) and removes its catalog and Raft state (node-id kept)."""
    servers = servers_arg(a.servers)
    srv = {s: Server(a.run, i + 1, s) for i, s in enumerate(servers)}
    leader = wait_for(lambda: agreed_leader(servers), 60, what="an agreed leader")
    wait_for(lambda: converged(servers), 60, interval=0.2, what="identical catalogs")
    f = srv[[s for s in servers if s != leader][0]]
    stop_server(f)
    print(json.dumps({"server": f.addr, "data_dir_bytes_before_wipe": wipe_server(f)}))


def cmd_catchup(a):
    """Phase 1: the follower wiped by `wipe` (and kept stopped while --entries were written)
    is started again with the same flags; times until its catalog index reaches the
    others' and until its digest equals theirs. Phase 2: it is stopped and wiped again at
    once (no writes in between) and started again: the same wait (bounded by --timeout);
    if it does not catch up, the leader is restarted (SIGTERM, start) and the catch-up
    timed from there."""
    servers = servers_arg(a.servers)
    srv = {s: Server(a.run, i + 1, s) for i, s in enumerate(servers)}
    f = srv[a.server]
    others = [s for s in servers if s != a.server]
    d0 = wait_for(lambda: converged(others), 120, interval=0.2, what="identical catalogs")
    leader = wait_for(lambda: agreed_leader(others), 60, what="an agreed leader")
    keys = get_json(leader, "/v1/kv/%s/?keys&stale" % a.prefix, timeout=60) or []
    if len(keys) < a.entries:
        raise SystemExit("only %d keys under %s/ (wanted %d)" % (len(keys), a.prefix,
                                                                  a.entries))
    out = {"entries": len(keys), "server": f.addr, "catalog_index": d0["CatalogIndex"],
           "timeout_s": a.timeout, "leader_data_dir_bytes": du(srv[leader].data_dir())}
    off = log_size(f)
    f.start()
    t_cat, t_dig, d = time_catch_up(servers, f, d0["CatalogIndex"], a.timeout)
    out.update({"catalog_caught_up_s": t_cat, "digest_equal_s": t_dig, "caught_up": bool(d),
                "applied_index": d["AppliedIndex"] if d else None,
                "snapshots_restored": log_since(f, off).count("snapshot restored"),
                "keys_on_wiped_server": len(get_json(f.addr, "/v1/kv/%s/?keys&stale" %
                                                     a.prefix, timeout=60) or []),
                "data_dir_bytes_after": du(f.data_dir())})
    if not d:
        out["wiped_server_digest"] = get_json(f.addr, "/v1/operator/catalog/digest")
        print(json.dumps(out))
        return
    # Phase 2: wiped again right away.
    leader = wait_for(lambda: agreed_leader(servers), 60, what="an agreed leader")
    d1 = wait_for(lambda: converged(servers), 60, interval=0.2, what="identical catalogs")
    stop_server(f)
    wipe_server(f)
    off = log_size(f)
    f.start()
    t_cat, t_dig, d = time_catch_up(servers, f, d1["CatalogIndex"], a.timeout)
    r = {"catalog_caught_up_s": t_cat, "digest_equal_s": t_dig, "caught_up": bool(d)}
    if not d:
        r["wiped_server_digest"] = get_json(f.addr, "/v1/operator/catalog/digest")
        r["leader_digest"] = get_json(leader, "/v1/operator/catalog/digest")
        lsrv = srv[leader]
        t1 = time.perf_counter()
        stop_server(lsrv)
        lsrv.start()
        t_restart = time.perf_counter() - t1
        t_cat2, t_dig2, d2 = time_catch_up(servers, f, d1["CatalogIndex"], a.timeout)
        r["after_leader_restart_catalog_s"] = None if t_cat2 is None else t_restart + t_cat2
        r["after_leader_restart_digest_s"] = None if t_dig2 is None else t_restart + t_dig2
    r["snapshots_restored"] = log_since(f, off).count("snapshot restored")
    out["again"] = r
    print(json.dumps(out))


# ---- report --------------------------------------------------------------------------------

def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return default


def read_wrk(path):
    runs = {}
    try:
        f = open(path)
    except FileNotFoundError:
        return runs
    with f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            rec = dict(p.split("=", 1) for p in parts[2:])
            runs.setdefault(parts[0], []).append({k: float(v) for k, v in rec.items()})
    return runs


TESTS = [
    ("herald_put_leader", "Herald KV PUT, c=64, to the leader"),
    ("etcd_put_leader", "etcd put, c=64, to the leader"),
    ("herald_put_follower", "Herald KV PUT, c=64, to a follower (forwarded)"),
    ("etcd_put_follower", "etcd put, c=64, to a follower (forwarded)"),
]
RATIOS = [("herald_put_leader", "etcd_put_leader", "PUT c=64, to the leader"),
          ("herald_put_follower", "etcd_put_follower", "PUT c=64, to a follower")]


def section(d):
    meta = load(os.path.join(d, "meta.json"))
    runs = read_wrk(os.path.join(d, "wrk.tsv"))
    vis = load(os.path.join(d, "dnsvis.json"))
    fo = load(os.path.join(d, "failover.json"))
    cu = load(os.path.join(d, "catchup.json"))
    fill = read_wrk(os.path.join(d, "fill.tsv")).get("fill")
    stop = load(os.path.join(d, "stop.json"), {})
    med = statistics.median
    o = ["## Cluster: replicated writes, DNS visibility, failover, catch-up "
         "(`tests/bench/cluster.sh`)", ""]
    o.append("- date: %s" % meta["date"])
    o.append("- machine: %s cores, %s; %s; data dirs on %s" % (
        meta["nproc"], meta["cpu"], meta["kernel"], meta["datafs"]))
    o.append("- disk: %s" % meta["fsync"])
    o.append("- %s" % meta["load"])
    o.append("- herald: commit %s%s, release build (`make`, -O2%s), three servers on "
             "127.0.3.1-3, each `%s`" % (
                 meta["commit"], " (+ uncommitted changes in the work tree)"
                 if meta["dirty"] else "",
                 ", built from a copy of the work tree: HERALD_BIN=%s" % meta["bin"]
                 if meta.get("bin") else "", meta["herald_cmd"]))
    if meta.get("etcd"):
        o.append("- etcd: %s" % meta["etcd"])
    o.append("- client: %s; %s; all traffic on loopback, all servers and clients on the "
             "same %s cores" % (meta["wrk"], meta["wrk_args"], meta["nproc"]))
    o.append("- command: `%s`" % meta["command"])
    o.append("")
    if runs:
        o.append("### Replicated KV PUT throughput, 64 concurrent clients")
        o.append("")
        o.append("Median of %d interleaved repetitions (Herald, etcd, Herald, etcd, ...), "
                 "(min–max) beside it; latency is wrk's (p50/p99: medians over the "
                 "repetitions). Server CPU: utime+stime of the three server processes per "
                 "request (median). Other CPU: what other user processes used meanwhile, in "
                 "cores, the worst repetition (**bold** above 0.1: something else competed "
                 "for the cores); in brackets kernel threads." % meta["reps"])
        o.append("")
        o.append("| test | requests/s | p50 ms | p99 ms | errors | 3 servers' CPU µs/req "
                 "| other CPU |")
        o.append("|---|---:|---:|---:|---:|---:|---:|")
        for key, label in TESTS:
            rs = runs.get(key)
            if not rs:
                continue
            errs = sum(int(r["err_connect"] + r["err_read"] + r["err_write"] +
                           r["err_status"] + r["err_timeout"]) for r in rs)
            cpu = med([r["server_cpu_s"] * 1e6 / r["requests"] for r in rs])
            other = max(r["foreign_cpu_s"] / r["duration_s"] for r in rs)
            kthr = max(r["kthread_cpu_s"] / r["duration_s"] for r in rs)
            o.append("| %s | %.0f (%.0f–%.0f) | %.2f | %.2f | %d | %.0f | %s (%.2f) |" % (
                label, med([r["rps"] for r in rs]), min(r["rps"] for r in rs),
                max(r["rps"] for r in rs), med([r["p50_ms"] for r in rs]),
                med([r["p99_ms"] for r in rs]), errs, cpu,
                ("%.2f" if other < 0.1 else "**%.2f**") % other, kthr))
        o.append("")
        o.append("| Herald / etcd, 3 servers each, same run (medians) | ratio | target |")
        o.append("|---|---:|---:|")
        for h, e, label in RATIOS:
            if h in runs and e in runs:
                ratio = med([r["rps"] for r in runs[h]]) / med([r["rps"] for r in runs[e]])
                o.append("| %s | %s | ≥ 2× |" % (
                    label, ("%.2f×" if ratio >= 2 else "**%.2f×** (missed)") % ratio))
        o.append("")
    if vis:
        a = vis["all"]
        o.append("### Registration → visible in DNS on all three servers")
        o.append("")
        o.append("%d registrations (`PUT /v1/agent/service/register`, a new service with its "
                 "own address each), one at a time, on the three servers in turn; after each "
                 "PUT returns, every server's DNS is polled (raw UDP, `<name>.service.consul "
                 "A`, one query outstanding per server, re-sent at once on a negative answer) "
                 "until all three answer with the new address. %d measured, %d not visible "
                 "everywhere within 2 s." % (vis["n"], vis["measured"], vis["misses"]))
        o.append("")
        o.append("| registered on | n | PUT acknowledged p50 / p99 ms | visible on all 3, "
                 "from the PUT's start, p50 / p99 / max ms | from the acknowledgement, "
                 "p50 / p99 ms |")
        o.append("|---|---:|---:|---:|---:|")
        for label in ("all", "leader", "follower"):
            x = vis[label]
            if not x["n"]:
                continue
            o.append("| %s | %d | %.2f / %.2f | %.2f / %.2f / %.2f | %.2f / %.2f |" % (
                {"all": "any (all)", "leader": "the leader",
                 "follower": "a follower (forwarded)"}[label], x["n"],
                x["ack_ms"]["p50"], x["ack_ms"]["p99"], x["all_from_start_ms"]["p50"],
                x["all_from_start_ms"]["p99"], x["all_from_start_ms"]["max"],
                x["all_after_ack_ms"]["p50"], x["all_after_ack_ms"]["p99"]))
        p99 = a["all_from_start_ms"]["p99"]
        o.append("")
        o.append("Target p99 < 10 ms (from the start of the registration): %s (%.2f ms)." % (
            "met" if p99 < 10 else "**missed**", p99))
        o.append("")
    if fo:
        o.append("### Leader kill (SIGKILL) → first acknowledged write")
        o.append("")
        o.append("%d writer threads (keep-alive HTTP, unique keys, 100-byte values) spread "
                 "over the live servers throughout; each round kills the leader after a "
                 "second of steady writes, measures the time until the survivors agree on a "
                 "new leader and until the first acknowledged write that was sent after the "
                 "kill, then restarts the killed server from its data dir and waits until all "
                 "three agree again." % fo["writers"])
        o.append("")
        o.append("| round | killed | new leader | new leader agreed, ms | first acknowledged "
                 "write, ms |")
        o.append("|---:|---|---|---:|---:|")
        for i, r in enumerate(fo["rounds"]):
            o.append("| %d | %s | %s | %.0f | %.0f |" % (i + 1, r["killed"], r["new_leader"],
                                                        r["new_leader_ms"], r["first_ack_ms"]))
        m = fo["first_ack_ms_median"]
        o.append("")
        o.append("Median of %d: new leader %.0f ms, **first acknowledged write %.0f ms** "
                 "(target < 1 s: %s). Writes: %d acknowledged, %d failed or unknown; "
                 "acknowledged writes missing on any server afterwards: **%d**; the three "
                 "catalogs identical (digest) at applied index %d." % (
                     len(fo["rounds"]), fo["new_leader_ms_median"], m,
                     "met" if m < 1000 else "**missed**", fo["acked"], fo["unknown"],
                     fo["missing_acked_on_any_server"], fo["applied_index"]))
        o.append("")
    if cu:
        o.append("### Catch-up of a wiped server")
        o.append("")
        fill_s = ""
        if fill:
            fill_s = " (wrk -c64 to the leader: %.1f s, %.0f PUT/s, with two servers of three)" % (
                fill[0]["duration_s"], fill[0]["rps"])
        o.append("A follower is stopped (SIGTERM) and its catalog and Raft state removed (its "
                 "`node-id` file kept, so its Raft id too: a server whose whole data dir is "
                 "removed comes back with a new id, which the cluster refuses while its old "
                 "entry holds the address); %d KV entries of 100 bytes are written meanwhile%s; "
                 "then it is started again with the same flags and caught up from the "
                 "leader's snapshot and log (%d snapshot restore(s) in its log)." % (
                     cu["entries"], fill_s, cu["snapshots_restored"]))
        o.append("")
        o.append("| | |")
        o.append("|---|---:|")
        if cu["caught_up"]:
            o.append("| its catalog index reached the others' (%d), from its start | **%.2f s** |"
                     % (cu["catalog_index"], cu["catalog_caught_up_s"]))
            o.append("| all three digests equal (applied index %d) | %.2f s |" % (
                cu["applied_index"], cu["digest_equal_s"]))
        else:
            w = cu.get("wiped_server_digest") or {}
            o.append("| caught up | **no: at applied index %s after %.0f s** |" % (
                w.get("AppliedIndex"), cu["timeout_s"]))
        o.append("| keys on the wiped server afterwards | %d |" % cu["keys_on_wiped_server"])
        o.append("| its data dir after the catch-up / the leader's | %.1f MB / %.1f MB |" % (
            cu["data_dir_bytes_after"] / 1e6, cu["leader_data_dir_bytes"] / 1e6))
        g = cu.get("again")
        if g:
            if g["caught_up"]:
                o.append("| wiped again at once (no writes in between), started: digests "
                         "equal | %.2f s |" % g["digest_equal_s"])
            else:
                w = g.get("wiped_server_digest") or {}
                ld = g.get("leader_digest") or {}
                o.append("| wiped again at once (no writes in between), started | **not caught "
                         "up after %.0f s** (applied index %s, the leader %s: it got the "
                         "snapshot, never the entries after it) |" % (
                             cu["timeout_s"], w.get("AppliedIndex"), ld.get("AppliedIndex")))
                if g.get("after_leader_restart_digest_s") is not None:
                    o.append("| ... then the leader restarted (SIGTERM, start): digests equal, "
                             "from the SIGTERM | %.2f s |" % g["after_leader_restart_digest_s"])
                else:
                    o.append("| ... then the leader restarted | **still not caught up** |")
        o.append("")
    if stop:
        o.append("Stop: SIGTERM to the three servers; %d of 3 logged a clean shutdown." %
                 stop.get("clean", 0))
        o.append("")
    return "\n".join(o)


def record(path, text):
    block = BEGIN + "\n" + text + END + "\n"
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = "# Benchmark results\n\nLatest figures of each script under tests/bench/, " \
              "with the exact command. Older runs are in git history.\n\n"
    if BEGIN in old and END in old:
        i = old.index(BEGIN)
        j = old.index(END) + len(END)
        if old[j:j + 1] == "\n":
            j += 1
        new = old[:i] + block + old[j:]
    else:
        new = old.rstrip("\n") + "\n\n" + block
    with open(path + ".tmp", "w") as f:
        f.write(new)
    os.replace(path + ".tmp", path)


def cmd_report(a):
    text = section(a.dir)
    print(text)
    if a.record:
        record(a.record, text)
        print("recorded in %s" % a.record)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("wait", "leader", "follower", "dnsvis", "failover", "wipe", "catchup"):
        s = sub.add_parser(name)
        s.add_argument("--servers", required=True)
        s.add_argument("--timeout", type=float, default=60)
        s.add_argument("--run")
        s.add_argument("-n", type=int, default=200)
        s.add_argument("--rounds", type=int, default=5)
        s.add_argument("--writers", type=int, default=8)
        s.add_argument("--prefix", default="fill")
        s.add_argument("--entries", type=int, default=100000)
        s.add_argument("--server")
    r = sub.add_parser("report")
    r.add_argument("dir")
    r.add_argument("--record")
    a = p.parse_args()
    cmds = {"wait": cmd_wait, "leader": cmd_leader, "follower": cmd_follower,
            "dnsvis": cmd_dnsvis, "failover": cmd_failover, "wipe": cmd_wipe,
            "catchup": cmd_catchup, "report": cmd_report}
    cmds[a.cmd](a)


if __name__ == "__main__":
    main()
