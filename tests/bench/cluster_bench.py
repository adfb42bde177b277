#!/usr/bin/python3
"""Measurements of tests/bench/cluster.sh on a running 3-server Herald cluster, and its report.

    cluster_bench.py wait     --servers A,B,C [--timeout S]      one agreed leader, all nodes in
    cluster_bench.py leader   --servers A,B,C                     prints the leader's address
    cluster_bench.py follower --servers A,B,C                     prints a follower's address
    cluster_bench.py dnsvis   --servers A,B,C -n N                registration -> DNS on all
    cluster_bench.py failover --servers A,B,C --run DIR --rounds N [--kind herald|etcd]
    cluster_bench.py soak     --servers A,B,C --run DIR --minutes M [--stop-ms S]
                              one follower SIGSTOPped S ms at a time under writes
    cluster_bench.py catchup  --servers A,B,C --run DIR --prefix P --entries N
    cluster_bench.py regs     --servers A,B,C -n N                N services rs0.. (DNS probe)
    cluster_bench.py restart  --servers A,B,C --run DIR --mode all|one --rounds R -n N
                              [--writes W] [--timeout S]          restart of a loaded cluster
    cluster_bench.py report   DIR [--record RESULTS.md]

Servers are addresses with Herald's default ports (HTTP 8500, DNS 8600, server 8300). For
failover, catchup and restart, DIR holds for server number i (1-based, in --servers order) h<i>.pid (its
current pid; rewritten here when this script restarts it), h<i>.argv (its argv, JSON) and
h<i>.log (e<i>.* for etcd members: failover --kind etcd, client port 2379, v3 JSON gateway);
cluster.sh stops whatever pids those files name at its exit. Every wait is bounded.
Each measuring command prints one JSON object on stdout.
"""
import argparse
import base64
import http.client
import json
import os
import random
import select
import selectors
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

import cpu
import report
from report import load, read_wrk

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


def until(fn, timeout, interval):
    """fn()'s first true value within timeout seconds (tried every interval), or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    return None


def wait_for(fn, timeout, interval=0.02, what="condition"):
    v = until(fn, timeout, interval)
    if v:
        return v
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
    def __init__(self, run, i, addr, prefix="h"):
        self.run, self.i, self.addr, self.prefix = run, i, addr, prefix
        self.proc = None  # when restarted here

    def path(self, ext):
        return os.path.join(self.run, "%s%d.%s" % (self.prefix, self.i, ext))

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

def etcd_put_body(key):
    b64 = lambda x: base64.b64encode(x).decode()  # noqa: E731
    return json.dumps({"key": b64(key.encode()), "value": b64(b"x" * 100)})


def etcd_status(addr, timeout=0.5):
    """(member id, leader id) of an etcd member (maintenance/status), or None."""
    try:
        c = http.client.HTTPConnection(addr, 2379, timeout=timeout)
        try:
            c.request("POST", "/v3/maintenance/status", body="{}")
            r = c.getresponse()
            body = r.read()
        finally:
            c.close()
        if r.status != 200:
            return None
        d = json.loads(body)
        return d["header"]["member_id"], d["leader"]
    except (OSError, ValueError, KeyError, http.client.HTTPException):
        return None


def etcd_agreed_leader(servers, timeout=0.5):
    """The address of the etcd member every given member names as leader, or None."""
    st = {s: etcd_status(s, timeout) for s in servers}
    if not all(st.values()) or len({v[1] for v in st.values()}) != 1:
        return None
    leader = next(iter(st.values()))[1]
    for s, (me, _) in st.items():
        if me == leader:
            return s
    return None


def etcd_keys(addr, prefix):
    """Every key under prefix on one etcd member's own replica (serializable range)."""
    b64 = lambda x: base64.b64encode(x).decode()  # noqa: E731
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    c = http.client.HTTPConnection(addr, 2379, timeout=60)
    try:
        c.request("POST", "/v3/kv/range", body=json.dumps({
            "key": b64(prefix.encode()), "range_end": b64(end.encode()), "keys_only": True,
            "serializable": True}))
        r = c.getresponse()
        d = json.loads(r.read())
    except (OSError, ValueError, http.client.HTTPException):
        return set()  # not answering (yet): every key counts as missing
    finally:
        c.close()
    return {base64.b64decode(kv["key"]).decode() for kv in d.get("kvs", [])}


class Writers:
    def __init__(self, servers, n, prefix, kind="herald"):
        self.kind = kind
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
                    c = conns[s] = http.client.HTTPConnection(
                        s, 2379 if self.kind == "etcd" else 8500, timeout=5)
                if self.kind == "etcd":
                    c.request("POST", "/v3/kv/put", body=etcd_put_body(key))
                    r = c.getresponse()
                    ok = r.status == 200 and b'"header"' in r.read()
                else:
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


def probe_first_ack(servers, kind, t_kill, tag, acked, timeout=30, every=0.01, cap=500):
    """Time from t_kill to the first acknowledged write of a prober that, from t_kill on,
    opens a new connection and sends one write (Connection: close) every `every` s to the
    servers in turn, all outstanding at once (non-blocking, at most cap), so that the figure
    does not depend on client threads stuck in requests the cluster holds (etcd keeps a
    request sent while it has no leader until its request timeout, ~7 s, and the writer
    threads all end up in such requests). The acknowledged key goes to acked (t0, t1, key)."""
    port = 2379 if kind == "etcd" else 8500
    sel = selectors.DefaultSelector()
    n, next_at = 0, t_kill
    deadline = t_kill + timeout
    found = None
    try:
        while found is None and time.perf_counter() < deadline:
            now = time.perf_counter()
            if now >= next_at and len(sel.get_map()) < cap:
                addr = servers[n % len(servers)]
                n += 1
                key = "fo/probe-%s-%d" % (tag, n)
                if kind == "etcd":
                    body = etcd_put_body(key).encode()
                    head = "POST /v3/kv/put"
                else:
                    body = b"x" * 100
                    head = "PUT /v1/kv/" + key
                req = ("%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close"
                       "\r\n\r\n" % (head, addr, len(body))).encode() + body
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.connect_ex((addr, port))
                sel.register(sock, selectors.EVENT_WRITE,
                             {"req": req, "buf": b"", "t0": now, "key": key})
                next_at += every
            wait = max(0.0, min(next_at - time.perf_counter(), 0.01))
            for k, ev in sel.select(timeout=wait):
                sock, st = k.fileobj, k.data
                try:
                    if ev & selectors.EVENT_WRITE:
                        sock.send(st["req"])  # small: fits the empty send buffer
                        sel.modify(sock, selectors.EVENT_READ, st)
                        continue
                    d = sock.recv(65536)
                except OSError:
                    d = b""
                if d:
                    st["buf"] += d
                    continue
                sel.unregister(sock)
                sock.close()
                head, _, body = st["buf"].partition(b"\r\n\r\n")
                ok = head.startswith(b"HTTP/1.1 200") and (
                    b'"header"' in body if kind == "etcd" else body.strip() == b"true")
                if ok and found is None:
                    t1 = time.perf_counter()
                    acked.append((st["t0"], t1, st["key"]))
                    found = t1 - t_kill
    finally:
        for k in list(sel.get_map().values()):
            k.fileobj.close()
        sel.close()
    return found


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
    etcd = a.kind == "etcd"
    agreed = etcd_agreed_leader if etcd else agreed_leader
    srv = {s: Server(a.run, i + 1, s, "e" if etcd else "h") for i, s in enumerate(servers)}
    w = Writers(servers, a.writers, "fo", a.kind)
    for t in w.threads:
        t.start()
    rounds = []
    probe_acked = []
    try:
        for rnd in range(a.rounds):
            leader = wait_for(lambda: agreed(servers), 60, what="an agreed leader")
            time.sleep(1.0)
            survivors = [s for s in servers if s != leader]
            victim = srv[leader]
            t_kill = time.perf_counter()
            victim.signal(signal.SIGKILL)
            w.dead.add(leader)
            probe = {}
            prober = threading.Thread(target=lambda: probe.update(first=probe_first_ack(
                survivors, a.kind, t_kill, "%d" % rnd, probe_acked)), daemon=True)
            prober.start()
            new = wait_for(lambda: agreed(survivors, timeout=0.5), 30, interval=0.005,
                           what="a new leader")
            t_new = time.perf_counter() - t_kill
            prober.join(35)
            if probe.get("first") is None:
                raise SystemExit("no write acknowledged within 30 s of the kill")
            # the prober's, or a writer thread's if one came first
            first = min(x for x in (probe["first"], w.first_ack_after(t_kill)) if x is not None)
            if not victim.wait_gone(10):
                raise SystemExit("killed server %s still there" % leader)
            if victim.proc is not None:
                victim.proc.wait(5)
            victim.start()
            wait_for(lambda: agreed(servers), 60, what="the restarted server back")
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
    missing = 0
    if etcd:
        d = {"AppliedIndex": None}

        def lacking():
            n = 0
            for s in servers:
                keys = etcd_keys(s, "fo/")
                n += sum(1 for (_, _, k) in w.acked + probe_acked if k not in keys)
            return n
        # the restarted member may still be catching up: bounded wait for all keys everywhere
        until(lambda: lacking() == 0, 30, 0.5)
        missing = lacking()
    else:
        d = wait_for(lambda: converged(servers), 60, interval=0.2, what="identical catalogs")
        for s in servers:
            keys = set(get_json(s, "/v1/kv/fo/?keys&stale", timeout=30) or [])
            missing += sum(1 for (_, _, k) in w.acked + probe_acked if k not in keys)
    print(json.dumps({"kind": a.kind, "rounds": rounds, "writers": a.writers,
                      "acked": len(w.acked) + len(probe_acked),
                      "unknown": w.unknown, "missing_acked_on_any_server": missing,
                      "applied_index": d["AppliedIndex"],
                      "first_ack_ms_median": statistics.median(r["first_ack_ms"]
                                                               for r in rounds),
                      "new_leader_ms_median": statistics.median(r["new_leader_ms"]
                                                                for r in rounds)}))


# ---- a CPU-starved follower under writes ---------------------------------------------------------

def raft_term(addr, timeout=0.3):
    v = get_json(addr, "/v1/agent/self", timeout=timeout)
    try:
        return int(v["Stats"]["raft"]["term"])
    except (TypeError, KeyError, ValueError):
        return None


def cmd_soak(a):
    """Writers (as in failover) run for a.minutes on all three servers while one follower is
    SIGSTOPped a.stop_ms at a time, continued for a random 100-700 ms in between (starved of
    CPU about 40 % of the time, in bursts as long as 60 % of the election timeout). A
    thread polls every server's Raft term (/v1/agent/self) and leader every 50 ms: any term
    change is an election. At the end every acknowledged write must be on every server and the
    catalogs identical."""
    servers = servers_arg(a.servers)
    srv = {s: Server(a.run, i + 1, s) for i, s in enumerate(servers)}
    leader = wait_for(lambda: agreed_leader(servers), 60, what="an agreed leader")
    starved = [s for s in servers if s != leader][0]
    victim = srv[starved]
    terms = {s: raft_term(s, 5) for s in servers}
    term0 = max(t for t in terms.values() if t is not None)
    seen = {"terms": {term0}, "leaders": {leader}}
    stop_ev = threading.Event()

    def poll():
        while not stop_ev.is_set():
            for s in servers:
                t = raft_term(s)
                if t is not None:
                    seen["terms"].add(t)
                ld = get_json(s, "/v1/status/leader", timeout=0.3)
                if ld:
                    seen["leaders"].add(ld.rsplit(":", 1)[0])
            stop_ev.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    w = Writers(servers, a.writers, "soak")
    for t in w.threads:
        t.start()
    rng = random.Random(1)
    stops, stopped_s = 0, 0.0
    t_start = time.monotonic()
    deadline = t_start + a.minutes * 60
    next_note = t_start + 60
    try:
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            victim.signal(signal.SIGSTOP)
            time.sleep(a.stop_ms / 1000.0)
            victim.signal(signal.SIGCONT)
            stops += 1
            stopped_s += time.monotonic() - t0
            time.sleep(rng.uniform(0.1, 0.7))
            if time.monotonic() >= next_note:
                next_note += 60
                print("soak: %.0f min, %d stops, %d acknowledged, terms seen %s" % (
                    (time.monotonic() - t_start) / 60, stops, len(w.acked),
                    sorted(seen["terms"])), file=sys.stderr)
    finally:
        victim.signal(signal.SIGCONT)
        w.stop_ev.set()
        for t in w.threads:
            t.join(15)
        stop_ev.set()
        poller.join(5)
    elapsed = time.monotonic() - t_start
    d = wait_for(lambda: converged(servers), 60, interval=0.2, what="identical catalogs")
    term1 = max(t for t in (raft_term(s, 5) for s in servers) if t is not None)
    missing = 0
    for s in servers:
        keys = set(get_json(s, "/v1/kv/soak/?keys&stale", timeout=60) or [])
        missing += sum(1 for (_, _, k) in w.acked if k not in keys)
    lat = [(t1 - t0) * 1e3 for (t0, t1, _) in w.acked]
    print(json.dumps({"minutes": elapsed / 60, "stop_ms": a.stop_ms, "stops": stops,
                      "stopped_fraction": stopped_s / elapsed, "starved": starved,
                      "leader": leader, "writers": a.writers, "acked": len(w.acked),
                      "unknown": w.unknown, "missing_acked_on_any_server": missing,
                      "applied_index": d["AppliedIndex"], "term_start": term0,
                      "term_end": term1, "elections": term1 - term0,
                      "terms_seen": sorted(seen["terms"]),
                      "leaders_seen": sorted(seen["leaders"]),
                      "ack_ms_p50": pct(lat, 50), "ack_ms_p99": pct(lat, 99),
                      "ack_ms_max": max(lat) if lat else None}))


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


# ---- restart with a loaded catalog ---------------------------------------------------------------

RS_NODES = 10          # nodes rnode0..9 carrying the registered services
RS_PROBE = "rs%d"      # service names; the DNS probe asks for one of them


def rs_ip(k):
    return "10.78.%d.%d" % (k // 250, 1 + k % 250)


def cmd_regs(a):
    """Registers -n services rs0..rs<n-1> (one instance each, its own address) on RS_NODES
    nodes through PUT /v1/catalog/register, 8 threads spread over the servers; then checks
    that every server's catalog lists them (stale reads)."""
    servers = servers_arg(a.servers)
    wait_for(lambda: agreed_leader(servers), 60, what="an agreed leader")
    todo = list(range(a.n))
    lock = threading.Lock()
    errors = []

    def worker(tid):
        s = servers[tid % len(servers)]
        c = http.client.HTTPConnection(s, 8500, timeout=30)
        while True:
            with lock:
                if not todo or errors:
                    break
                k = todo.pop()
            node = "rnode%d" % (k % RS_NODES)
            body = json.dumps({"Node": node, "Address": "10.79.0.%d" % (1 + k % RS_NODES),
                               "Service": {"ID": RS_PROBE % k, "Service": RS_PROBE % k,
                                           "Port": 8000 + k % 1000, "Address": rs_ip(k)}})
            try:
                c.request("PUT", "/v1/catalog/register", body=body)
                r = c.getresponse()
                ok = r.status == 200 and r.read().strip() == b"true"
            except (OSError, http.client.HTTPException) as e:
                ok = False
                c.close()
                c = http.client.HTTPConnection(s, 8500, timeout=30)
                r = e
            if not ok:
                with lock:
                    errors.append("register %s on %s: %s" % (RS_PROBE % k, s, getattr(
                        r, "status", r)))
        c.close()
    t0 = time.perf_counter()
    ths = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(600)
    if errors:
        raise SystemExit(errors[0])
    took = time.perf_counter() - t0

    def listed():
        for s in servers:
            v = get_json(s, "/v1/catalog/services?stale", timeout=30) or {}
            if sum(1 for k in v if k.startswith("rs")) < a.n:
                return False
        return True
    wait_for(listed, 60, interval=0.2, what="the services on every server")
    print(json.dumps({"services": a.n, "nodes": RS_NODES, "seconds": took}))


def raft_files(ddir):
    """(latest snapshot index or 0, number of snapshots, segment files, raft dir bytes)."""
    rdir = os.path.join(ddir, "raft")
    snaps, segs = [], 0
    try:
        names = os.listdir(rdir)
    except OSError:
        names = []
    for n in names:
        if n.startswith("snapshot-") and not n.endswith(".meta"):
            try:
                snaps.append(int(n.split("-")[2]))
            except (IndexError, ValueError):
                pass
        elif n.startswith("open-") or (len(n) == 33 and n[16] == "-"):
            segs += 1
    return (max(snaps) if snaps else 0), len(snaps), segs, du(rdir)


def raft_stats(addr, timeout=2):
    v = get_json(addr, "/v1/agent/self", timeout=timeout)
    return (v or {}).get("Stats", {}).get("raft")


class LogTail(threading.Thread):
    """Follows a server's log file from an offset and stamps each line when it appears
    (polled every 5 ms: the agent writes its log unbuffered, one line per write, but stamps
    it with whole seconds only)."""

    def __init__(self, path, off):
        super().__init__(daemon=True)
        self.path, self.off = path, off
        self.lines = []  # (perf_counter, line)
        self.stop_ev = threading.Event()
        self.buf = b""

    def poll(self):
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.off)
                data = fh.read()
        except OSError:
            return
        if not data:
            return
        now = time.perf_counter()
        self.off += len(data)
        self.buf += data
        *full, self.buf = self.buf.split(b"\n")
        for ln in full:
            self.lines.append((now, ln.decode("utf-8", "replace")))

    def run(self):
        while not self.stop_ev.is_set():
            self.poll()
            time.sleep(0.005)
        self.poll()

    def first(self, pattern, t0):
        for t, ln in self.lines:
            if pattern in ln:
                return t - t0, ln
        return None, None


LOG_EVENTS = [("raft_started", "consensus: started id="),
              ("dns_listening", "dns: listening"),
              ("agent_started", "agent: started"),
              ("leader_known", "consensus: following leader"),
              ("became_leader", "consensus: became leader")]


def log_events(tail, t0):
    out = {}
    for key, pat in LOG_EVENTS:
        t, ln = tail.first(pat, t0)
        if t is not None:
            out[key] = t
            if key == "raft_started":
                try:
                    out["raft_index_at_start"] = int(ln.rsplit("index=", 1)[1].split()[0])
                except (IndexError, ValueError):
                    pass
    out["snapshot_lines"] = [ln.split(": ", 1)[-1] for _, ln in tail.lines
                             if "snapshot restored" in ln or "snapshot skipped" in ln]
    return out


class Probe(threading.Thread):
    """Calls fn() every interval seconds from go (an Event) until it returns true or until
    the deadline; .t is the perf_counter() of the first true answer (None: never)."""

    def __init__(self, fn, go, deadline, interval):
        super().__init__(daemon=True)
        self.fn, self.go, self.deadline, self.interval = fn, go, deadline, interval
        self.t = None
        self.tries = 0

    def run(self):
        self.go.wait(60)
        while time.perf_counter() < self.deadline:
            self.tries += 1
            if self.fn():
                self.t = time.perf_counter()
                return
            time.sleep(self.interval)


def dns_prober(addr, qname, ipb):
    """A probe function: one UDP query (waits up to 20 ms for its answer); true when the
    answer is NOERROR with the expected address. A closed port (ICMP unreachable) or a
    wrong answer is false."""
    so = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    so.connect((addr, 8600))
    state = {"qid": random.randrange(65536)}

    def fn():
        state["qid"] = qid = (state["qid"] + 1) & 0xFFFF
        try:
            so.send(dns_packet(qid, qname))
            end = time.perf_counter() + 0.02
            while True:
                left = end - time.perf_counter()
                if left <= 0:
                    return False
                rd, _, _ = select.select([so], [], [], left)
                if not rd:
                    return False
                resp = so.recv(4096)
                if len(resp) >= 2 and struct.unpack("!H", resp[:2])[0] == qid:
                    return dns_ok(resp, qid, ipb)
        except OSError:
            return False
    fn.sock = so
    return fn


def http_prober(addr, method, path, want=None, body=None, timeout=1.0):
    """A probe function: one request on a new connection; true on 200 whose body (stripped)
    is want, or one of want when it is a tuple (any body when want is None)."""
    wants = want if isinstance(want, tuple) else (want,)

    def fn():
        try:
            st, _, b = hreq(addr, method, path, body=body, timeout=timeout)
        except (OSError, http.client.HTTPException):
            return False
        return st == 200 and (want is None or b.strip() in wants)
    return fn


def leader_prober(addr):
    def fn():
        try:
            st, _, b = hreq(addr, "GET", "/v1/status/leader", timeout=1.0)
        except (OSError, http.client.HTTPException):
            return False
        return st == 200 and b.strip() not in (b"", b'""')
    return fn


def writer_prober(addr, prefix):
    seq = [0]

    def fn():
        seq[0] += 1
        try:
            st, _, b = hreq(addr, "PUT", "/v1/kv/%s-%d" % (prefix, seq[0]), body=b"w",
                            timeout=10)
        except (OSError, http.client.HTTPException):
            return False
        return st == 200 and b.strip() == b"true"
    return fn


def applied_prober(addr, target):
    def fn():
        r = raft_stats(addr, timeout=1)
        return bool(r) and r.get("applied_index", 0) >= target
    return fn


def digest_prober(servers, after):
    """True once the probe `after` succeeded and all servers' digests are equal (the
    restarted agent's own writes at start, e.g. its node sync, move the others too). A
    digest serializes the whole catalog: it is asked for only after `after`."""
    def fn():
        return after.t is not None and bool(converged(servers))
    return fn


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            x = f.read().rsplit(")", 1)[1].split()
        return int(x[11]) + int(x[12])
    except (OSError, ValueError, IndexError):
        return None


def put_marker(servers, key, value):
    leader = wait_for(lambda: agreed_leader(servers), 60, what="an agreed leader")
    st, _, b = hreq(leader, "PUT", "/v1/kv/" + key, body=value, timeout=10)
    if st != 200 or b.strip() != b"true":
        raise SystemExit("PUT %s on %s: %d %r" % (key, leader, st, b))


def wait_marker(servers, key, value, timeout=60):
    wait_for(lambda: all(http_prober(s, "GET", "/v1/kv/%s?stale&raw" % key, value)()
                         for s in servers), timeout, interval=0.05,
             what="%s on every server" % key)


def cmd_restart(a):
    """--mode all: each round stops the three servers (SIGTERM to all, waits for their exit)
    and starts them again at once; from each exec it times the first DNS answer naming the
    probe service's address, the first ?stale read returning the marker written just before
    the stop, the first non-empty /v1/status/leader, and the first acknowledged KV PUT (one
    writer per server, new connections, 10 ms apart).
    --mode one: each round kills one server (SIGKILL; rounds go round the three, leader or
    not), writes --writes KV entries and a new marker through the other two, waits until
    those two agree (digest) and until --down seconds have passed since the kill, and
    starts it again: from its exec, the first DNS answer, the
    first ?stale read of data it had before the kill, the first ?stale read of the marker
    written while it was down, its applied index reaching the others', and its digest equal
    to theirs."""
    servers = servers_arg(a.servers)
    srv = [Server(a.run, i + 1, s) for i, s in enumerate(servers)]
    k = a.n // 2
    qname, ipb = (RS_PROBE % k) + ".service.consul", socket.inet_aton(rs_ip(k))
    rounds = []
    for rnd in range(a.rounds):
        wait_for(lambda: agreed_leader(servers), 60, what="an agreed leader")
        token = ("restart-%s-%d-%d" % (a.mode, rnd, random.randrange(1 << 30))).encode()
        put_marker(servers, "restart/marker", token)
        wait_marker(servers, "restart/marker", token)
        d0 = wait_for(lambda: converged(servers), 120, interval=0.2, what="identical catalogs")
        leader = agreed_leader(servers)
        row = {"round": rnd + 1, "applied_index_before": d0["AppliedIndex"],
               "catalog_index_before": d0["CatalogIndex"], "servers": {}}
        for s in srv:
            st = raft_stats(s.addr) or {}
            row["servers"][s.addr] = {"last_log_index_before": st.get("last_log_index"),
                                      "data_dir_bytes": du(s.data_dir()),
                                      "catalog_bytes": du(os.path.join(s.data_dir(),
                                                                       "catalog"))}
        probes = {}
        go = threading.Event()
        if a.mode == "all":
            victims = srv
            t_stop = time.perf_counter()
            for s in srv:
                s.signal(signal.SIGTERM)
            for s in srv:
                if not s.wait_gone(30):
                    raise SystemExit("server %s did not stop within 30 s of SIGTERM" % s.addr)
                row["servers"][s.addr]["stop_s"] = time.perf_counter() - t_stop
                if s.proc is not None:
                    s.proc.wait(5)
            right = token
        else:
            v = srv[rnd % len(srv)]
            victims = [v]
            others = [s.addr for s in srv if s is not v]
            row["victim"], row["victim_was_leader"] = v.addr, v.addr == leader
            t_kill = time.perf_counter()
            v.signal(signal.SIGKILL)
            if not v.wait_gone(10):
                raise SystemExit("killed server %s still there" % v.addr)
            if v.proc is not None:
                v.proc.wait(5)
            # Writes while it is away: a.writes KV PUTs (8 threads, through the two others),
            # then a new marker.
            t_w = time.perf_counter()
            w = Writers(others, 8, "restart/away%d" % rnd)
            for t in w.threads:
                t.start()
            wait_for(lambda: len(w.acked) >= a.writes, 120, interval=0.01,
                     what="%d writes with a server down" % a.writes)
            w.stop_ev.set()
            for t in w.threads:
                t.join(15)
            row["writes_while_down"] = len(w.acked)
            row["writes_while_down_s"] = time.perf_counter() - t_w
            token2 = token + b"-away"
            put_marker(others, "restart/marker", token2)
            d1 = wait_for(lambda: converged(others), 120, interval=0.1,
                          what="the two others identical")
            row["target_applied_index"] = d1["AppliedIndex"]
            right = token2
            # Down for at least a.down seconds: the peers' reconnect backoff grows with the
            # time a server has been unreachable (see the report).
            time.sleep(max(0.0, t_kill + a.down - time.perf_counter()))
            row["down_s"] = time.perf_counter() - t_kill
        for s in victims:
            row["servers"][s.addr].update(zip(
                ("snapshot_index", "snapshots", "segments", "raft_bytes"),
                raft_files(s.data_dir())))
            row["servers"][s.addr]["data_dir_bytes_at_start"] = du(s.data_dir())
        deadline = time.perf_counter() + a.timeout + 5
        tails, socks = {}, []
        for s in victims:
            tails[s.addr] = LogTail(s.path("log"), log_size(s))
            dp = dns_prober(s.addr, qname, ipb)
            socks.append(dp.sock)
            probes[(s.addr, "dns")] = Probe(dp, go, deadline, 0.005)
            if a.mode == "all":
                probes[(s.addr, "stale_read")] = Probe(
                    http_prober(s.addr, "GET", "/v1/kv/restart/marker?stale&raw", right),
                    go, deadline, 0.01)
                probes[(s.addr, "leader")] = Probe(leader_prober(s.addr), go, deadline, 0.01)
                probes[(s.addr, "write")] = Probe(
                    writer_prober(s.addr, "restart/w%d/%s" % (rnd, s.addr)), go, deadline,
                    0.01)
            else:
                # Data it had before the kill (or, should it catch up before its first
                # answer, the marker written since).
                probes[(s.addr, "stale_read_old")] = Probe(
                    http_prober(s.addr, "GET", "/v1/kv/restart/marker?stale&raw",
                                (token, right)), go, deadline, 0.01)
                probes[(s.addr, "stale_read_new")] = Probe(
                    http_prober(s.addr, "GET", "/v1/kv/restart/marker?stale&raw", right),
                    go, deadline, 0.01)
                probes[(s.addr, "applied")] = ap = Probe(
                    applied_prober(s.addr, row["target_applied_index"]), go, deadline, 0.01)
                probes[(s.addr, "digest")] = Probe(digest_prober(servers, ap), go, deadline,
                                                   0.05)
        for p in probes.values():
            p.start()
        for t in tails.values():
            t.start()
        cpu_a = cpu.snap()
        t_exec = {}
        for s in victims:
            t_exec[s.addr] = time.perf_counter()
            s.start()
        go.set()
        t0 = min(t_exec.values())
        for p in probes.values():
            p.join(max(0.1, deadline - time.perf_counter() + 1))
        t_end = time.perf_counter()
        cpu_b = cpu.snap()
        for t in tails.values():
            t.stop_ev.set()
            t.join(2)
        for so in socks:
            so.close()
        skip = {str(os.getpid()), str(os.getppid())} | {str(s.pid) for s in srv}
        row["other_cpu_cores"] = cpu.other(cpu_a, cpu_b, skip)[0] / max(1e-3, t_end - t0)
        row["window_s"] = t_end - t0
        for s in victims:
            r = row["servers"][s.addr]
            r["cpu_s"] = (cpu_ticks(s.pid) or 0) / os.sysconf("SC_CLK_TCK")
            for (addr, what), p in probes.items():
                if addr == s.addr:
                    r[what] = None if p.t is None else p.t - t_exec[s.addr]
                    r[what + "_tries"] = p.tries
            r.update(log_events(tails[s.addr], t_exec[s.addr]))
            if "raft_index_at_start" in r:
                r["replayed_entries"] = r["raft_index_at_start"] - r["snapshot_index"]
        if a.mode == "all":
            for what in ("dns", "stale_read", "leader", "write"):
                ts = [probes[(s.addr, what)].t for s in victims]
                row[what + "_first"] = None if None in ts else min(ts) - t0
                row[what + "_all"] = None if None in ts else max(ts) - t0
        rounds.append(row)
        brief = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()
                 if k != "servers"}
        print("restart %s round %d: %s" % (a.mode, rnd + 1, json.dumps(brief)),
              file=sys.stderr)
        for s in victims:
            r = row["servers"][s.addr]
            print("  %s: %s" % (s.addr, json.dumps(
                {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                 if not k.endswith("_tries")})), file=sys.stderr)
        # Next round from a settled cluster.
        wait_for(lambda: agreed_leader(servers), 60, what="an agreed leader after the restart")
        wait_for(lambda: converged(servers), 120, interval=0.2, what="identical catalogs")
        time.sleep(1.0)
    keys = len(get_json(servers[0], "/v1/kv/%s/?keys&stale" % a.prefix, timeout=60) or [])
    print(json.dumps({"mode": a.mode, "rounds": rounds, "entries": keys,
                      "services": a.n, "probe": qname, "timeout_s": a.timeout}))


# ---- report --------------------------------------------------------------------------------

def stop_lines(stop):
    if not stop:
        return []
    return ["Stop: SIGTERM to the three servers; %d of 3 logged a clean shutdown." %
            stop.get("clean", 0), ""]


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
    o += report.machine(meta, "data dirs")
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
                 "everywhere within 2 s. Before this section, after the PUT runs: `sync` "
                 "(%s s) and a 5 s pause, so that the write-back of the PUT runs' (and etcd's) "
                 "data does not sit in these registrations' fsyncs." % (
                     vis["n"], vis["measured"], vis["misses"], vis.get("sync_s", "?")))
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
    efo = load(os.path.join(d, "etcd_failover.json"))
    if fo:
        o.append("### Leader kill (SIGKILL) → first acknowledged write")
        o.append("")
        o.append("%d writer threads (keep-alive HTTP, unique keys, 100-byte values) spread "
                 "over the live servers throughout; each round kills the leader after a "
                 "second of steady writes, measures the time until the survivors agree on a "
                 "new leader and until the first acknowledged write that was sent after the "
                 "kill, then restarts the killed server from its data dir and waits until all "
                 "three agree again. The first acknowledged write is a prober's (from the kill "
                 "on, one new connection with one write every 10 ms to the survivors in turn, "
                 "all outstanding at once), or a writer thread's if that came first: etcd holds "
                 "a request sent while it has no leader until its request timeout (~5-7 s), so "
                 "writer threads stuck in such requests would measure that timeout instead. "
                 "The same for etcd (its v3 JSON gateway: `POST "
                 "/v3/kv/put`, leaders from `maintenance/status`), in the same run, before "
                 "Herald's, with the etcd members alone on the machine; Herald at its default "
                 "settings (election timeout 500 ms, heartbeat 50 ms, pre-vote; a follower "
                 "whose leader's Raft stream ends starts a pre-vote at once, in turns by id: "
                 "consensus/failover.c), etcd at its own (election 1000 ms, heartbeat 100 ms)."
                 % fo["writers"])
        o.append("")
        o.append("| round | Herald: killed | new leader | new leader agreed, ms | first "
                 "acknowledged write, ms | etcd: new leader agreed, ms | first acknowledged "
                 "write, ms |")
        o.append("|---:|---|---|---:|---:|---:|---:|")
        erounds = efo["rounds"] if efo else []
        for i, r in enumerate(fo["rounds"]):
            e = erounds[i] if i < len(erounds) else None
            o.append("| %d | %s | %s | %.0f | %.0f | %s | %s |" % (
                i + 1, r["killed"], r["new_leader"], r["new_leader_ms"], r["first_ack_ms"],
                "%.0f" % e["new_leader_ms"] if e else "–",
                "%.0f" % e["first_ack_ms"] if e else "–"))
        o.append("")
        o.append("| first acknowledged write after the kill, ms | rounds | min | median | p90 "
                 "| max | writes acknowledged / failed or unknown | acknowledged writes missing "
                 "on any server afterwards |")
        o.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, x in (("Herald", fo), ("etcd", efo)):
            if not x:
                continue
            xs = [r["first_ack_ms"] for r in x["rounds"]]
            o.append("| %s | %d | %.0f | %.0f | %.0f | %.0f | %d / %d | **%d** |" % (
                name, len(xs), min(xs), statistics.median(xs), pct(xs, 90), max(xs),
                x["acked"], x["unknown"], x["missing_acked_on_any_server"]))
        xs = [r["first_ack_ms"] for r in fo["rounds"]]
        m, worst = statistics.median(xs), max(xs)
        o.append("")
        o.append("Herald: target median ≤ 500 ms and worst ≤ 800 ms: %s (median %.0f ms, "
                 "worst %.0f ms); the three catalogs identical (digest) at applied index %d."
                 % ("met" if m <= 500 and worst <= 800 else "**missed**", m, worst,
                    fo["applied_index"]))
        if efo:
            xe = [r["first_ack_ms"] for r in efo["rounds"]]
            o.append("Herald / etcd, median first acknowledged write: %.0f / %.0f ms." % (
                m, statistics.median(xe)))
        o.append("")
    if cu:
        o.append("### Catch-up of a wiped server")
        o.append("")
        fill_s = ""
        if fill:
            fill_s = " (wrk -c64 to the leader: %.1f s, %.0f PUT/s, with two servers of three)" % (
                fill[0]["duration_s"], fill[0]["rps"])
        o.append("A follower is stopped (SIGTERM) and its catalog and Raft state removed (its "
                 "`node-id` file kept, so its Raft id too; the leader notices its log went "
                 "backwards and removes and re-adds it); %d KV entries of 100 bytes are written meanwhile%s; "
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
    o += stop_lines(stop)
    return "\n".join(o)


RBEGIN, REND = report.markers("cluster.sh --restart")


def section_restart(d):
    meta = load(os.path.join(d, "meta.json"))
    fill = (read_wrk(os.path.join(d, "fill.tsv")).get("fill") or [None])[0]
    regs = load(os.path.join(d, "regs.json"), {})
    ra = load(os.path.join(d, "restart_all.json"))
    ro = load(os.path.join(d, "restart_one.json"))
    stop = load(os.path.join(d, "stop.json"), {})
    med = statistics.median
    target = 2.0

    def s_(x):
        return "—" if x is None else "%.3f" % x

    def mm(xs):
        """median / max of a list of seconds (None: a probe that never succeeded)."""
        if not xs:
            return "—", "—"
        if any(x is None for x in xs):
            ok = [x for x in xs if x is not None]
            return (s_(med(ok)) if ok else "—"), "**not within the timeout (%d of %d)**" % (
                len(xs) - len(ok), len(xs))
        return s_(med(xs)), s_(max(xs))

    def verdict(xs):
        if not xs or any(x is None for x in xs):
            return "**missed**"
        return "met" if max(xs) < target else "**missed** (max)" if med(xs) < target \
            else "**missed**"

    def rng(xs, fmt="%d"):
        xs = [x for x in xs if x is not None]
        if not xs:
            return "—"
        lo, hi = fmt % min(xs), fmt % max(xs)
        return lo if lo == hi else lo + "–" + hi

    o = ["## Cluster restart with a loaded catalog (`tests/bench/cluster.sh --restart`)", ""]
    o += report.machine(meta, "data dirs")
    o.append("- herald: %s, release build (`make`, -O2%s; the servers run a copy, md5 %s…, "
             "built %s), three servers on 127.0.3.1-3, each `%s`; default Raft settings "
             "(snapshot threshold 1024 entries, trailing 1024, election timeout 500 ms, "
             "heartbeat 50 ms)" % (
                 "work tree at commit %s%s" % (meta["commit"], " (+ uncommitted changes)"
                                               if meta["dirty"] else ""),
                 ", binary given as HERALD_BIN=%s" % meta["bin"] if meta.get("bin") else "",
                 meta.get("bin_md5", "?"), meta.get("bin_time", "?"), meta["herald_cmd"]))
    o.append("- command: `%s`" % meta["command"])
    o.append("")
    ent = ra["entries"] if ra else None
    if ra and ra["rounds"]:
        r0 = ra["rounds"][0]
        fill_s = ""
        if fill:
            fill_s = " in %.0f s (%.0f PUT/s; %s)" % (fill["duration_s"], fill["rps"],
                                                       meta["wrk_args"])
        o.append("Load: %d KV entries of 100 bytes, one PUT per key%s, then %d services "
                 "(`PUT /v1/catalog/register`, one instance each with its own address, on %d "
                 "nodes). Before the first restart the catalog was at applied Raft index %d: "
                 "more than one Raft entry per PUT, as one connection leaves nothing to batch." %
                 (ent, fill_s, regs.get("services", ra["services"]),
                  regs.get("nodes", RS_NODES), r0["applied_index_before"]))
        o.append("")
        sv = [x for r in ra["rounds"] for x in r["servers"].values()]
        o.append("Each server's data dir at the restarts (files' sizes, after the stop): %s MB, "
                 "of which the LMDB catalog %s MB and Raft %s MB (the latest snapshot, at "
                 "index %s, and the segments after it; %s MB while running, with libraft's "
                 "pre-allocated 8 MB open segments). Raft entries replayed at start (the "
                 "agent's `consensus: started … index=N` less its latest snapshot's index): "
                 "%s. %s" % (
                     rng([x["data_dir_bytes_at_start"] / 1e6 for x in sv], "%.1f"),
                     rng([x["catalog_bytes"] / 1e6 for x in sv], "%.1f"),
                     rng([x.get("raft_bytes", 0) / 1e6 for x in sv], "%.1f"),
                     rng([x.get("snapshot_index") for x in sv]),
                     rng([x["data_dir_bytes"] / 1e6 for x in sv], "%.1f"),
                     rng([x.get("replayed_entries") for x in sv]),
                     "Every start logged `snapshot skipped: catalog already at index …` (the "
                     "LMDB catalog is kept and the snapshot not loaded into it)."
                     if all(x.get("snapshot_lines") and "skipped" in x["snapshot_lines"][0]
                            for x in sv) else ""))
        o.append("")
        o.append("### All three stopped (SIGTERM) and started again at once")
        o.append("")
        o.append("%d rounds. Each round writes a new marker value (`restart/marker`), waits until "
                 "the three digests are equal, sends SIGTERM to the three servers, waits for "
                 "them to exit, and starts the three again with their flags. Probes start with "
                 "the exec: per server a UDP query `%s A` every 5 ms (20 ms wait for each "
                 "answer) until the answer carries the service's address; `GET "
                 "/v1/kv/restart/marker?stale&raw` every 10 ms until it returns the new marker; "
                 "`GET /v1/status/leader` every 10 ms until non-empty; a `PUT /v1/kv/...` every "
                 "10 ms until one is acknowledged (`true`). Times in seconds, from the exec of "
                 "the server asked (\"each server\") or of the first of the three." % (
                     len(ra["rounds"]), ra["probe"]))
        o.append("")
        o.append("| from the exec to | median s | max s | target < 2 s |")
        o.append("|---|---:|---:|---|")
        rows = []
        for key, label in (("dns", "first DNS answer with the service's address, each server"),
                           ("stale_read", "first `?stale` read with the right value, each "
                                          "server")):
            xs = [x[key] for r in ra["rounds"] for x in r["servers"].values()]
            rows.append((label, xs))
        rows.append(("a leader (first server reporting one)",
                     [r["leader_first"] for r in ra["rounds"]]))
        rows.append(("... known on all three", [r["leader_all"] for r in ra["rounds"]]))
        rows.append(("first acknowledged write (any server)",
                     [r["write_first"] for r in ra["rounds"]]))
        rows.append(("... a write acknowledged through each of the three",
                     [r["write_all"] for r in ra["rounds"]]))
        for label, xs in rows:
            m, x = mm(xs)
            o.append("| %s | %s | %s | %s |" % (label, m, x, verdict(xs)))
        o.append("")
        o.append("Where the time goes (the agent's log lines, stamped when they appeared in "
                 "the file, polled every 5 ms; the agent logs leadership changes from a 50 ms "
                 "tick):")
        o.append("")
        o.append("| round | stop (SIGTERM → exit), slowest s | `consensus: started` (Raft "
                 "state loaded), slowest s | `dns: listening`, slowest s | leader elected, s "
                 "| first write, s | replayed entries | other programs' CPU, cores |")
        o.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in ra["rounds"]:
            xs = list(r["servers"].values())

            def mx(k):
                v = [x.get(k) for x in xs]
                return None if None in v else max(v)
            o.append("| %d | %s | %s | %s | %s | %s | %s | %s |" % (
                r["round"], s_(mx("stop_s")), s_(mx("raft_started")),
                s_(mx("dns_listening")), s_(r["leader_first"]), s_(r["write_first"]),
                rng([x.get("replayed_entries") for x in xs]),
                ("%.2f" if r["other_cpu_cores"] < 0.1 else "**%.2f**") % r["other_cpu_cores"]))
        o.append("")
    if ro and ro["rounds"]:
        o.append("### One server killed (SIGKILL) and started again, the other two running")
        o.append("")
        o.append("%d rounds, the three servers in turn (so the leader too, when it is the "
                 "one). While it is down, %d KV writes (8 threads, through the two others) and "
                 "a new marker value; once the two others' digests are equal, and at least "
                 "%.0f s after the kill (down %s s), it is started again. From its exec: the first DNS answer (as above); the first `?stale` "
                 "read answered with data it had (the old marker, or the new one if it caught "
                 "up first); the first `?stale` read with the new marker; its applied index "
                 "(`/v1/agent/self`) reaching the others'; all three digests "
                 "(`/v1/operator/catalog/digest`) equal, polled every 50 ms after that." % (
                     len(ro["rounds"]), meta.get("away_writes", 0), meta.get("down", 0),
                     rng([r.get("down_s") for r in ro["rounds"]], "%.1f")))
        o.append("")
        o.append("| round | killed | was leader | written while down | DNS s | `?stale` "
                 "(had) s | log: `consensus: started` s | log: `following leader` s | "
                 "`?stale` (new) s | applied index caught up s | digests equal s | replayed "
                 "entries |")
        o.append("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in ro["rounds"]:
            x = r["servers"][r["victim"]]
            o.append("| %d | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r["round"], r["victim"], "yes" if r["victim_was_leader"] else "no",
                r["writes_while_down"], s_(x["dns"]), s_(x["stale_read_old"]),
                s_(x.get("raft_started")), s_(x.get("leader_known")),
                s_(x["stale_read_new"]), s_(x["applied"]), s_(x["digest"]),
                x.get("replayed_entries", "—")))
        o.append("")
        o.append("| from its exec to | median s | max s | target < 2 s |")
        o.append("|---|---:|---:|---|")
        for key, label in (("dns", "first DNS answer"),
                           ("stale_read_old", "first `?stale` read with data"),
                           ("stale_read_new", "`?stale` read with what was written while "
                                              "down"),
                           ("applied", "applied index caught up"),
                           ("digest", "all three digests equal")):
            xs = [r["servers"][r["victim"]][key] for r in ro["rounds"]]
            m, x = mm(xs)
            o.append("| %s | %s | %s | %s |" % (label, m, x, verdict(xs)))
        o.append("")
    o += stop_lines(stop)
    return "\n".join(o)


SBEGIN, SEND = report.markers("cluster.sh --soak")


def section_soak(d):
    meta = load(os.path.join(d, "meta.json"))
    so = load(os.path.join(d, "soak.json"))
    stop = load(os.path.join(d, "stop.json"), {})
    o = ["## Cluster under writes with a CPU-starved follower (`tests/bench/cluster.sh "
         "--soak`)", ""]
    o += report.machine(meta, "data dirs")
    o.append("- herald: commit %s%s, release build (`make`, -O2; the servers run a copy, md5 "
             "%s…), three servers on 127.0.3.1-3, each `%s`; default Raft settings (election "
             "timeout 500 ms, heartbeat 50 ms, pre-vote)" % (
                 meta["commit"], " (+ uncommitted changes)" if meta["dirty"] else "",
                 meta.get("bin_md5", "?"), meta["herald_cmd"]))
    o.append("- command: `%s`" % meta["command"])
    o.append("")
    if so:
        o.append("%d writer threads (keep-alive HTTP, unique keys, 100-byte values) on all "
                 "three servers for %.1f min; meanwhile one follower (%s) is stopped with "
                 "SIGSTOP for %d ms at a time and continued (SIGCONT) for a random 100-700 ms "
                 "in between: %d stops, stopped %.0f %% of the time. A poller reads every "
                 "server's Raft term (`/v1/agent/self`) and leader every 50 ms; an election "
                 "is a term change." % (
                     so["writers"], so["minutes"], so["starved"], so["stop_ms"], so["stops"],
                     so["stopped_fraction"] * 100))
        o.append("")
        o.append("| | |")
        o.append("|---|---:|")
        o.append("| elections (Raft term %d → %d; terms seen %s) | **%d** |" % (
            so["term_start"], so["term_end"], ", ".join(map(str, so["terms_seen"])),
            so["elections"]))
        o.append("| leaders seen | %s |" % ", ".join(so["leaders_seen"]))
        o.append("| writes acknowledged / failed or unknown | %d / %d |" % (
            so["acked"], so["unknown"]))
        o.append("| acknowledged writes missing on any server afterwards (the three catalogs "
                 "identical at applied index %d) | **%d** |" % (
                     so["applied_index"], so["missing_acked_on_any_server"]))
        o.append("| write latency p50 / p99 / max, ms | %.1f / %.1f / %.0f |" % (
            so["ack_ms_p50"], so["ack_ms_p99"], so["ack_ms_max"]))
        o.append("")
        o.append("Target: no election and no acknowledged write lost: %s." % (
            "met" if so["elections"] == 0 and so["missing_acked_on_any_server"] == 0
            else "**missed**"))
        o.append("")
    o += stop_lines(stop)
    return "\n".join(o)


def cmd_report(a):
    if os.path.exists(os.path.join(a.dir, "soak.json")):
        text = section_soak(a.dir)
        marks = (SBEGIN, SEND)
    elif os.path.exists(os.path.join(a.dir, "restart_all.json")):
        text = section_restart(a.dir)
        marks = (RBEGIN, REND)
    else:
        text = section(a.dir)
        marks = (BEGIN, END)
    report.publish(text, a.record, *marks)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("wait", "leader", "follower", "dnsvis", "failover", "wipe", "catchup", "regs",
                 "restart", "soak"):
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
        s.add_argument("--mode", choices=("all", "one"), default="all")
        s.add_argument("--writes", type=int, default=1000)
        s.add_argument("--down", type=float, default=0)
        s.add_argument("--kind", choices=("herald", "etcd"), default="herald")
        s.add_argument("--minutes", type=float, default=10)
        s.add_argument("--stop-ms", type=int, default=300)
    r = sub.add_parser("report")
    r.add_argument("dir")
    r.add_argument("--record")
    a = p.parse_args()
    cmds = {"wait": cmd_wait, "leader": cmd_leader, "follower": cmd_follower,
            "dnsvis": cmd_dnsvis, "failover": cmd_failover, "wipe": cmd_wipe,
            "catchup": cmd_catchup, "regs": cmd_regs, "restart": cmd_restart,
            "soak": cmd_soak, "report": cmd_report}
    cmds[a.cmd](a)


if __name__ == "__main__":
    main()
