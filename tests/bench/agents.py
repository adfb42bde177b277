#!/usr/bin/python3
"""Engine and report of tests/bench/agents.sh: client agents (issue 12 item 6).

    agents.py run --run DIR --bin HERALD [--clients N] [--regs N] [--poll-ms MS]
                  [--dns-reps N] [--dns-duration S] [--bytes-s S] [--rate W]
                  [--catchup N] [--phases 1234]
    agents.py report DIR [--record RESULTS.md]

run starts its processes itself, in DIR/ (<name>.pid, <name>.argv, <name>.log; a pid file is
rewritten at each restart, so agents.sh, which stops whatever pids those files name at its
exit, always has the current one), and writes one JSON object on stdout. The pool: three
servers on 127.0.11.1-3 (`-server -bootstrap-expect 3 -retry-join <the three>`) and N clients
on 127.0.12.1-N (`herald agent` without -server, `-retry-join <the three>`), every agent with
`-dns-workers 1 -log-level info` and the default ports (HTTP 8500, DNS 8600, server 8300,
gossip 8301) on its own address. Then, in order:

1. registration -> DNS: PUT /v1/agent/service/register of a new name on a client (in turn),
   and from the moment the request is sent, every other agent's DNS is polled over UDP (that
   name, A; one query outstanding per agent, the next sent on the answer, at most one per
   --poll-ms per agent, all from one thread with select) until it answers with the record;
   per agent the time from the PUT's send to that answer. The first answer with the record
   is late by at most the time since the previous (negative) query was sent: that bracket is
   recorded too.
2. DNS on a client vs a server: the small set of dns.sh (20 nodes, 50 services x 3,
   dns_bench.py gen/load, through PUT /v1/catalog/register on the leader), the same query
   file, dnsperf (dns_bench.py measure: QPS, the agent's CPU from /proc/PID/stat) against
   one client and one follower server, the two interleaved, pinned (the agent's threads on
   CPU 0, dnsperf on CPU 1) and unpinned, --dns-reps times each.
3. replication bytes: the payload bytes each server sends on its server port (8300) to the
   clients' addresses, from `ss -tin` (bytes_acked, segs_out per connection) before and
   after a window of --bytes-s seconds: first idle (heartbeats only), then with --rate catalog
   writes per second (PUT /v1/catalog/register to the leader, paced).
4. catch-up: a client is stopped (SIGTERM), --catchup KV writes go through the leader as fast
   as it takes them (32 keep-alive connections), then one catalog registration (the last
   write); the client is started again from its data dir, and the time until its HTTP
   answers, its replica's applied index (/v1/agent/self Stats.raft.applied_index) reaches
   the leader's, and its DNS answers the last write's name, is measured (polled every 10 ms).
Every wait is bounded.
"""
import argparse
import http.client
import json
import os
import random
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time

import cpu
import report
from deadhost import Proc, agreed_leader, get_json, pct, put_ok, until
from report import load, med

BEGIN, END = report.markers("agents.sh")
SERVERS = ["127.0.11.%d" % i for i in (1, 2, 3)]
BENCH = os.path.dirname(os.path.abspath(__file__))
HZ = os.sysconf("SC_CLK_TCK")


def log(msg):
    print("[agents.py %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def client_addrs(n):
    return ["127.0.12.%d" % i for i in range(1, n + 1)]


def dns_query_wire(name, qid):
    """A query for NAME A, no RD, EDNS0 (4096)."""
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 1)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)
    q += b"\0" + struct.pack(">HHIH", 41, 4096, 0, 0)
    return q


def dns_has_answer(data, qid):
    """(matches, answered): the reply is to qid; NOERROR with at least one answer record."""
    if len(data) < 12:
        return False, False
    rid, flags, _, an = struct.unpack(">HHHH", data[:8])
    return rid == qid, (flags & 0xF) == 0 and an > 0


def dns_answers(addr, name, timeout=0.5):
    so = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        so.settimeout(timeout)
        qid = random.randrange(65536)
        so.sendto(dns_query_wire(name, qid), (addr, 8600))
        while True:
            data = so.recv(4096)
            m, ok = dns_has_answer(data, qid)
            if m:
                return ok
    except OSError:
        return False
    finally:
        so.close()


def self_raft(addr):
    d = get_json(addr, "/v1/agent/self", timeout=1)
    return d["Stats"]["raft"] if d else None


def applied(addr):
    r = self_raft(addr)
    return r["applied_index"] if r else None


def steal_ticks():
    """The machine's steal time (ticks, all CPUs: a hypervisor running others on our cores)."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


def tree_pids(pid):
    out = subprocess.run([sys.executable, os.path.join(BENCH, "dns_bench.py"), "tree-pids",
                          str(pid)], capture_output=True, text=True, check=True).stdout
    return out.split()


class Pool:
    def __init__(self, a):
        self.a = a
        self.run = a.run
        self.clients_addr = client_addrs(a.clients)
        self.servers = [self.proc("h%d" % (i + 1), ad, True) for i, ad in enumerate(SERVERS)]
        self.clients = [self.proc("c%d" % (i + 1), ad, False)
                        for i, ad in enumerate(self.clients_addr)]

    def proc(self, name, addr, server):
        d = os.path.join(self.run, "data-" + name)
        os.makedirs(d, exist_ok=True)
        argv = [self.a.bin, "agent"] + (["-server", "-bootstrap-expect", "3"] if server else [])
        argv += ["-data-dir", d, "-bind", addr, "-client", addr, "-node", name,
                 "-retry-interval", "1s", "-dns-workers", "1", "-log-level", "info"]
        for s in SERVERS:
            argv += ["-retry-join", s]
        p = Proc(self.run, name, addr, argv)
        p.is_server = server
        return p

    def all(self):
        return self.servers + self.clients

    def leader(self):
        return until(lambda: agreed_leader(SERVERS), 60, "an agreed leader")

    def form(self):
        t0 = time.monotonic()
        for p in self.servers:
            p.start()
        leader = self.leader()
        log("leader %s after %.1f s" % (leader, time.monotonic() - t0))
        for c in self.clients:
            c.start()
        self.wait_current(120, "every client in the catalog with a current replica")
        log("pool of %d formed after %.1f s" % (len(self.all()), time.monotonic() - t0))
        return leader

    def wait_current(self, timeout, what):
        def ok():
            nodes = get_json(SERVERS[0], "/v1/catalog/nodes?stale", timeout=2)
            names = {n["Node"] for n in nodes or []}
            if any(p.name not in names for p in self.all()):
                return False
            want = applied(self.leader_addr())
            if not want:
                return False
            return all((applied(c.addr) or 0) >= want for c in self.clients)
        until(ok, timeout, what, interval=0.1)

    def leader_addr(self):
        return agreed_leader(SERVERS) or SERVERS[0]

    def pids(self):
        return [p.proc.pid for p in self.all() if p.alive()]

    def stop_all(self):
        out = {}
        for p in self.clients + self.servers:
            out[p.name] = p.stop()
        clean = sum(1 for p in self.all() if "shutdown complete" in open(p.path("log")).read())
        return out, clean


# ---- 1. registration on a client -> answer on every other agent's DNS ----------------------

def http_put_raw(addr, path, obj):
    body = json.dumps(obj).encode()
    return ("PUT %s HTTP/1.1\r\nHost: %s:8500\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (path, addr, len(body))).encode() + body


def http_status(buf):
    """(status, complete) of a response in buf (Content-Length bodies only)."""
    h = buf.find(b"\r\n\r\n")
    if h < 0:
        return None, False
    head = buf[:h].decode("latin-1")
    st = int(head.split()[1])
    m = re.search(r"(?im)^content-length:\s*(\d+)", head)
    n = int(m.group(1)) if m else 0
    return st, len(buf) >= h + 4 + n


def reg_round(i, origin, agents, poll_s, timeout=10.0):
    """Registers reg<i> on origin; {agent: seconds to its first answer with the record},
    {agent: bracket}, the PUT's time, the engine's queries."""
    name = "reg%d.service.consul" % i
    socks, qid, last_send, prev_send = {}, {}, {}, {}
    for ad in agents:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect((ad, 8600))
        socks[s] = ad
        qid[ad] = random.randrange(65536)
    hs = socket.create_connection((origin, 8500), timeout=5)
    hs.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    hs.setblocking(False)
    req = http_put_raw(origin, "/v1/agent/service/register",
                       {"Name": "reg%d" % i, "ID": "reg%d" % i, "Port": 8000 + i % 1000})
    got, bracket, hbuf, put_s, queries = {}, {}, b"", None, 0
    due = {}
    t0 = time.monotonic()
    hs.sendall(req)

    def send(ad, s, now):
        nonlocal queries
        qid[ad] = (qid[ad] + 1) & 0xFFFF
        try:
            s.send(dns_query_wire(name, qid[ad]))
        except BlockingIOError:
            pass
        prev_send[ad] = last_send.get(ad, t0)
        last_send[ad] = now
        queries += 1
    for s, ad in socks.items():
        send(ad, s, time.monotonic())
    deadline = t0 + timeout
    try:
        while len(got) < len(agents) or put_s is None:
            now = time.monotonic()
            if now > deadline:
                break
            for s, ad in socks.items():
                if ad not in got and ad in due and now >= due[ad]:
                    del due[ad]
                    send(ad, s, now)
                elif ad not in got and ad not in due and now - last_send[ad] > 0.2:
                    send(ad, s, now)  # lost: ask again
            waits = [due[x] - now for x in due] + [0.05]
            rd = [s for s, ad in socks.items() if ad not in got]
            if put_s is None:
                rd.append(hs)
            r, _, _ = select.select(rd, [], [], max(0.0, min(waits)))
            now = time.monotonic()
            for s in r:
                if s is hs:
                    data = hs.recv(65536)
                    if not data:
                        raise SystemExit("agents: %s closed the registration's connection"
                                         % origin)
                    hbuf += data
                    st, done = http_status(hbuf)
                    if done:
                        if st != 200:
                            raise SystemExit("agents: register reg%d on %s: %s" % (i, origin,
                                                                                   hbuf[:300]))
                        put_s = now - t0
                    continue
                ad = socks[s]
                try:
                    data = s.recv(4096)
                except (BlockingIOError, ConnectionRefusedError):
                    continue
                match, ok = dns_has_answer(data, qid[ad])
                if not match:
                    continue
                if ok:
                    got[ad] = now - t0
                    bracket[ad] = now - prev_send[ad]
                else:
                    due[ad] = last_send[ad] + poll_s
    finally:
        hs.close()
        for s in socks:
            s.close()
    return got, bracket, put_s, queries


def phase_reg(pool, a):
    agents = [p.addr for p in pool.all()]
    kind = {p.addr: ("server" if p.is_server else "client") for p in pool.all()}
    rounds = []
    c0 = cpu.snap()
    e0 = os.times()
    w0 = time.monotonic()
    nwarm = 5
    for i in range(a.regs + nwarm):
        origin = pool.clients_addr[i % len(pool.clients_addr)]
        others = [x for x in agents if x != origin]
        got, br, put_s, nq = reg_round(i, origin, others + [origin], a.poll_ms / 1e3)
        if i < nwarm:
            continue
        missing = [x for x in others + [origin] if x not in got]
        rounds.append({"i": i, "origin": origin, "put_s": put_s, "queries": nq,
                       "others": {x: got.get(x) for x in others},
                       "self": got.get(origin), "brackets": {x: br.get(x) for x in others},
                       "missing": missing})
        if missing:
            log("reg%d: no answer within 10 s from %s" % (i, " ".join(missing)))
    wall = time.monotonic() - w0
    e1 = os.times()
    c1 = cpu.snap()
    herald = {str(p) for p in pool.pids()}
    herald_cpu = sum(max(0, c1[p][0] - c0.get(p, [0])[0]) for p in herald if p in c1) / HZ
    user, kern = cpu.other(c0, c1, herald | {str(os.getpid()), str(os.getppid())})
    all_t = [t for r in rounds for t in r["others"].values() if t is not None]
    worst = [max(t for t in r["others"].values() if t is not None) for r in rounds]
    by = {"server": [], "client": []}
    for r in rounds:
        for x, t in r["others"].items():
            if t is not None:
                by[kind[x]].append(t)
    brs = [b for r in rounds for b in r["brackets"].values() if b is not None]
    out = {"regs": len(rounds), "agents_polled": len(agents) - 1, "poll_ms": a.poll_ms,
           "wall_s": wall, "engine_cpu_cores": (e1.user + e1.system - e0.user - e0.system) / wall,
           "herald_cpu_cores": herald_cpu / wall, "other_cpu_cores": user / wall,
           "kthread_cpu_cores": kern / wall,
           "queries_per_s": sum(r["queries"] for r in rounds) / wall,
           "missing": sum(len(r["missing"]) for r in rounds),
           "rounds": rounds}

    def stats(xs):
        return {"n": len(xs), "p50": pct(xs, 50), "p90": pct(xs, 90), "p99": pct(xs, 99),
                "max": max(xs) if xs else None}
    out["all"] = stats(all_t)
    out["worst_per_reg"] = stats(worst)
    out["servers"] = stats(by["server"])
    out["clients"] = stats(by["client"])
    out["self"] = stats([r["self"] for r in rounds if r["self"] is not None])
    out["put"] = stats([r["put_s"] for r in rounds if r["put_s"] is not None])
    out["bracket"] = stats(brs)
    log("registration -> DNS on every other agent: p50 %.2f ms, p99 %.2f ms, max %.2f ms "
        "(%d answers; brackets p50 %.2f ms max %.2f ms; PUT p50 %.2f ms)" % (
            out["all"]["p50"] * 1e3, out["all"]["p99"] * 1e3, out["all"]["max"] * 1e3,
            len(all_t), out["bracket"]["p50"] * 1e3, out["bracket"]["max"] * 1e3,
            out["put"]["p50"] * 1e3))
    return out


# ---- 2. DNS on a client vs a server ----------------------------------------------------------

def phase_dns(pool, a, leader):
    d = os.path.join(pool.run, "data-small")
    hb = [sys.executable, os.path.join(BENCH, "dns_bench.py")]
    params = json.loads(subprocess.run(hb + ["gen", d, "--nodes", "20", "--services", "50",
                                             "--queries", "10000", "--missing", "1000"],
                                       capture_output=True, text=True, check=True).stdout)
    ld = subprocess.run(hb + ["load", d, leader + ":8500", "--conc", "8", "--procs", "1"],
                        capture_output=True, text=True)
    if ld.returncode != 0:
        raise SystemExit("agents: loading the small set: %s %s" % (ld.stdout, ld.stderr))
    log("small set loaded through %s: %s" % (leader, ld.stdout.strip()))
    pool.wait_current(60, "every replica current after the small set")
    srv = next(p for p in pool.servers if p.addr != leader)
    cli = pool.clients[0]
    chk = subprocess.run(hb + ["check", d, "client=%s:8600" % cli.addr,
                               "server=%s:8600" % srv.addr], capture_output=True, text=True)
    if chk.returncode != 0:
        raise SystemExit("agents: the client's and the server's answers differ:\n%s%s"
                         % (chk.stdout[-3000:], chk.stderr[-2000:]))
    check = json.loads(chk.stdout.strip().splitlines()[-1])
    log("client %s and server %s answer alike: %s" % (cli.addr, srv.addr, check))
    runs = os.path.join(pool.run, "dns-runs.jsonl")
    base = ["-p", "8600", "-e", "-c", "4", "-q", "100", "-t", "2"]
    qf = os.path.join(d, "queries.txt")
    for p in (cli, srv):  # warm: one pass each (fills the answer cache)
        subprocess.run(["dnsperf", "-s", p.addr] + base + ["-d", qf, "-n", "1", "-l", "30"],
                       capture_output=True, check=True)
    ncpu = os.cpu_count()
    allcpu = "0-%d" % (ncpu - 1)

    def pin(p, cpus):
        for pid in tree_pids(p.proc.pid):
            subprocess.run(["taskset", "-a", "-p", "-c", cpus, pid], capture_output=True,
                           check=True)
    steal = {}
    for rep in range(1, a.dns_reps + 1):
        for mode in ("pinned", "unpinned"):
            for p in (cli, srv):
                role = "client" if p is cli else "server"
                pre = []
                if mode == "pinned":
                    pin(p, "0")
                    pre = ["taskset", "-c", "1"]
                for attempt in (1, 2, 3):
                    cmd = hb + ["measure", runs, "role=" + role, "mode=" + mode,
                                "rep=%d" % rep, "agent=" + p.addr, "try=%d" % attempt,
                                "--server-pids", str(p.proc.pid), "--ignore-pids",
                                " ".join(str(x) for x in pool.pids()),
                                "--server-addr", "%s:8600" % p.addr]
                    if attempt < 3:
                        cmd += ["--max-other", "0.1"]
                    cmd += ["--"] + pre + ["dnsperf", "-s", p.addr] + base + [
                        "-d", qf, "-l", str(a.dns_duration)]
                    st0 = steal_ticks()
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    steal["%s/%s/%d/%d" % (role, mode, rep, attempt)] = \
                        (steal_ticks() - st0) / HZ
                    log("dns %s %s #%d: %s" % (role, mode, rep, r.stdout.strip()))
                    if r.returncode != 3:
                        break
                    log("disturbed by other programs: again")
                if r.returncode != 0:
                    raise SystemExit("agents: dnsperf failed: %s" % r.stderr[-2000:])
                if mode == "pinned":
                    pin(p, allcpu)
    recs = [json.loads(x) for x in open(runs)]
    return {"params": params, "load": json.loads(ld.stdout), "check": check,
            "client": cli.addr, "server": srv.addr, "runs": recs, "steal_s": steal,
            "duration_s": a.dns_duration, "dnsperf": " ".join(base)}


# ---- 3. bytes a server sends to keep the clients current -------------------------------------

def ss_conns(server, clients):
    """{(local, peer): (bytes_acked, bytes_received, segs_out)} of the TCP connections on
    server:8300 whose peer is one of clients."""
    out = subprocess.run(["ss", "-Htin", "state", "established", "( sport = :8300 )"],
                         capture_output=True, text=True, check=True).stdout
    res = {}
    cur = None
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            f = line.split()
            # Recv-Q Send-Q Local Peer
            cur = None
            if len(f) >= 4 and f[2] == "%s:8300" % server and f[3].rsplit(":", 1)[0] in clients:
                cur = (f[2], f[3])
            continue
        if cur:
            def num(k):
                m = re.search(r"\b%s:(\d+)" % k, line)
                return int(m.group(1)) if m else 0
            res[cur] = (num("bytes_acked"), num("bytes_received"), num("segs_out"))
    return res


def ss_all(clients):
    return {s: ss_conns(s, clients) for s in SERVERS}


def ss_delta(a, b):
    """Per server: (bytes sent, bytes received, segments sent, connections) between a and b
    (a connection new in b counts from 0)."""
    out = {}
    for s in SERVERS:
        sent = recv = segs = 0
        for k, v in b[s].items():
            v0 = a[s].get(k, (0, 0, 0))
            sent += v[0] - v0[0]
            recv += v[1] - v0[1]
            segs += v[2] - v0[2]
        out[s] = {"sent": sent, "recv": recv, "segs": segs, "conns": len(b[s])}
    return out


def pace_writes(leader, rate, secs, tag):
    """PUT /v1/catalog/register to the leader at rate per second for secs (two keep-alive
    connections, paced by a schedule); the count done and failed."""
    n = int(rate * secs)
    done = [0, 0]
    lock = threading.Lock()
    t0 = time.monotonic() + 0.05
    nthreads = 4

    def work(k):
        conn = http.client.HTTPConnection(leader, 8500, timeout=10)
        for j in range(k, n, nthreads):
            time.sleep(max(0, t0 + j / rate - time.monotonic()))
            body = json.dumps({"Datacenter": "dc1", "Node": "w%s-%d" % (tag, j % 200),
                               "Address": "10.%d.%d.%d" % (200, (j // 250) % 250, j % 250 + 1),
                               "Service": {"ID": "wsvc-%d" % j, "Service": "wsvc%d" % (j % 50),
                                           "Port": 1000 + j % 5000, "Tags": ["v1", "bench"]}})
            ok = False
            try:
                conn.request("PUT", "/v1/catalog/register", body=body,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                ok = r.status == 200 and r.read().strip() == b"true"
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(leader, 8500, timeout=10)
            with lock:
                done[0 if ok else 1] += 1
        conn.close()
    ts = [threading.Thread(target=work, args=(k,)) for k in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return done[0], done[1], time.monotonic() - t0


def phase_bytes(pool, a, leader):
    clients = set(pool.clients_addr)
    out = {"window_s": a.bytes_s, "rate": a.rate, "clients": len(clients)}
    pool.wait_current(60, "every replica current before the byte count")
    i0 = applied(leader)
    s0, t0 = ss_all(clients), time.monotonic()
    time.sleep(a.bytes_s)  # the measuring window: idle, heartbeats only
    s1, t1 = ss_all(clients), time.monotonic()
    i1 = applied(leader)
    out["idle"] = {"per_server": ss_delta(s0, s1), "seconds": t1 - t0, "entries": i1 - i0}
    log("idle %.1f s: %s (leader's applied index +%d)" % (t1 - t0, out["idle"]["per_server"],
                                                           i1 - i0))
    s0, t0 = ss_all(clients), time.monotonic()
    i0 = applied(leader)
    ok, bad, wsecs = pace_writes(leader, a.rate, a.bytes_s, "b")
    pool.wait_current(60, "every replica current after the writes")
    s1, t1 = ss_all(clients), time.monotonic()
    i1 = applied(leader)
    out["writes"] = {"per_server": ss_delta(s0, s1), "seconds": t1 - t0, "ok": ok,
                     "failed": bad, "write_s": wsecs, "entries": i1 - i0}
    log("%d writes (%d failed) in %.1f s, window %.1f s: %s (leader's applied index +%d)" % (
        ok, bad, wsecs, t1 - t0, out["writes"]["per_server"], i1 - i0))
    # which server each client follows: the one it sends FOLLOW requests to (most bytes)
    follow = {}
    for s in SERVERS:
        for (_, peer), v in s1[s].items():
            c = peer.rsplit(":", 1)[0]
            if v[0] > follow.get(c, ("", -1))[1]:
                follow[c] = (s, v[0])
    out["follows"] = {c: v[0] for c, v in sorted(follow.items())}
    return out


# ---- 4. catch-up of a client away for N writes ------------------------------------------------

def kv_load(leader, n=None, conc=32, until_index=None, tag="away", limit_s=600):
    """KV PUTs to the leader on conc keep-alive connections: n of them, or (until_index) until
    the leader's applied index reaches until_index. (writes done, seconds, errors)."""
    errors, done = [0], [0]
    lock = threading.Lock()
    stop = threading.Event()
    val = "x" * 64
    t0 = time.monotonic()

    def work(k):
        conn = http.client.HTTPConnection(leader, 8500, timeout=30)
        err = j = 0
        while not stop.is_set() and (n is None or k + j * conc < n):
            key = k + j * conc
            j += 1
            for _ in range(3):
                try:
                    conn.request("PUT", "/v1/kv/%s/%07d" % (tag, key), body="%s-%d" % (val, key))
                    r = conn.getresponse()
                    if r.status == 200 and r.read().strip() == b"true":
                        with lock:
                            done[0] += 1
                        break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(leader, 8500, timeout=30)
            else:
                err += 1
                if err > 100:
                    break
        conn.close()
        with lock:
            errors[0] += err
    ts = [threading.Thread(target=work, args=(k,)) for k in range(conc)]
    for t in ts:
        t.start()
    if until_index is not None:
        while time.monotonic() - t0 < limit_s and (applied(leader) or 0) < until_index:
            time.sleep(0.2)  # polling the leader's applied index (bounded by limit_s)
        stop.set()
    for t in ts:
        t.join()
    return done[0], time.monotonic() - t0, errors[0]


def catchup_round(pool, leader, victim, mode, count, conc):
    """Stops victim; writes (mode "writes": count KV writes; mode "entries": KV writes until
    the leader's applied index is count past the victim's), then one catalog registration;
    starts victim and times its catch-up."""
    pool.wait_current(60, "every replica current before the catch-up")
    before = applied(victim.addr)
    rc = victim.stop()
    log("catch-up (%s %d): client %s stopped (exit %s) at applied index %s" % (
        mode, count, victim.name, rc, before))
    if mode == "writes":
        n, secs, errs = kv_load(leader, n=count, conc=conc, tag="away-w")
    else:
        n, secs, errs = kv_load(leader, conc=conc, until_index=before + count, tag="away-e")
    if errs:
        raise SystemExit("agents: %d KV writes failed" % errs)
    last = "catchup-%s" % mode
    until(lambda: put_ok(leader, "/v1/catalog/register", {
        "Node": "catchup-node", "Address": "10.250.0.1",
        "Service": {"Service": last, "Port": 4242}}), 30, "the last write")
    target = applied(leader)
    log("%d KV writes in %.1f s (%.0f/s, %d connections); then %s; leader's applied index %d "
        "(%d entries after the client's)" % (n, secs, n / secs, conc, last, target,
                                             target - before))
    raft = self_raft(leader)
    log_off = os.path.getsize(victim.path("log"))
    srv_off = {p.name: os.path.getsize(p.path("log")) for p in pool.servers}
    t0 = victim.start()
    http_up = first_move = caught = dns = None
    samples = []
    deadline = t0 + 300
    steady = "%s.node.consul" % pool.clients[0].name  # in the replica before the stop
    steady_ok = []  # times its DNS answered the steady name
    dns_t = [None]
    done = threading.Event()

    def dns_poll():  # its own thread: the HTTP polls below may wait on a busy agent
        while not done.is_set() and time.monotonic() < deadline:
            if dns_t[0] is None and dns_answers(victim.addr, last + ".service.consul",
                                                timeout=0.2):
                dns_t[0] = time.monotonic() - t0
            if dns_answers(victim.addr, steady, timeout=0.2):
                steady_ok.append(time.monotonic() - t0)
            time.sleep(0.005)  # polling interval (bounded by the deadline)
    th = threading.Thread(target=dns_poll)
    th.start()
    while time.monotonic() < deadline and (caught is None or dns_t[0] is None):
        d = get_json(victim.addr, "/v1/agent/self", timeout=0.25)
        r = d["Stats"]["raft"] if d else None
        now = time.monotonic() - t0
        if r is not None:
            if http_up is None:
                http_up = now
            samples.append((round(now, 3), r["applied_index"]))
            if first_move is None and r["applied_index"] > (before or 0):
                first_move = now
            if caught is None and r["applied_index"] >= target:
                caught = now
        time.sleep(0.01)  # polling interval (bounded by the deadline)
    done.set()
    th.join()
    dns = dns_t[0]
    if caught is None or dns is None:
        raise SystemExit("agents: the restarted client did not catch up within 300 s")
    log("catch-up: HTTP up %.2f s, first entries %.2f s, applied index %d reached %.2f s, DNS "
        "%.2f s after start" % (http_up, first_move, target, caught, dns))
    # Did gossip take the client for dead meanwhile? Its suspicion runs up to a few seconds
    # after a stall: the servers' logs of the catch-up and the next 5 s (measuring window).
    time.sleep(5)
    fails = []
    for p in pool.servers:
        with open(p.path("log"), errors="replace") as f:
            f.seek(srv_off[p.name])
            fails += ["%s: %s" % (p.name, ln.split(" ", 1)[-1]) for ln in f.read().splitlines()
                      if "member %s fail" % victim.name in ln]
    with open(victim.path("log"), errors="replace") as f:
        f.seek(log_off)
        logtxt = f.read()
    notes = [ln for ln in logtxt.splitlines() if "snapshot" in ln.lower() or
             "following server" in ln][:6]
    return {"mode": mode, "count": count, "writes": n, "conc": conc, "write_s": secs,
            "applied_before": before, "target": target, "leader_raft": raft,
            "http_up_s": http_up, "first_move_s": first_move, "caught_up_s": caught,
            "dns_s": dns, "client": victim.name, "log_notes": notes,
            "snapshot": any("snapshot restored" in ln for ln in notes),
            "gossip_fail": fails,
            "steady_first_s": steady_ok[0] if steady_ok else None,
            "steady_max_gap_s": max((b - a for a, b in zip(steady_ok, steady_ok[1:])),
                                    default=None),
            "http_max_gap_s": max((b[0] - a[0] for a, b in zip(samples, samples[1:])),
                                  default=None),
            "samples": samples[::max(1, len(samples) // 200)]}


def phase_catchup(pool, a, leader):
    victim = pool.clients[-1]
    out = [catchup_round(pool, leader, victim, "writes", a.catchup, 32)]
    out.append(catchup_round(pool, leader, victim, "entries", a.catchup, 8))
    return out


def cmd_run(a):
    pool = Pool(a)
    out = {"clients": a.clients, "phases": a.phases}
    try:
        leader = pool.form()
        out["leader"] = leader
        if "1" in a.phases:
            out["reg"] = phase_reg(pool, a)
        if "2" in a.phases:
            out["dns"] = phase_dns(pool, a, leader)
        if "3" in a.phases:
            out["bytes"] = phase_bytes(pool, a, leader)
        if "4" in a.phases:
            out["catchup"] = phase_catchup(pool, a, leader)
        out["leader_after"] = agreed_leader(SERVERS)
    finally:
        out["stops"], out["clean"] = pool.stop_all()
    out["agents"] = len(pool.all())
    out["argv_server"] = pool.servers[0].argv
    out["argv_client"] = pool.clients[0].argv
    print(json.dumps(out))


# ---- the report ----------------------------------------------------------------------------------

def ms(x):
    return "—" if x is None else "%.2f" % (x * 1e3)


def pair(runs, mode, k):
    """client ÷ server of k per repetition (the last attempt of each)."""
    last = {}
    for z in runs:
        last[(z["role"], z["rep"])] = z if z["mode"] == mode else last.get((z["role"], z["rep"]))
    return [last[("client", rep)][k] / last[("server", rep)][k]
            for (role, rep) in sorted(last) if role == "client" and last.get(("server", rep))
            and last[(role, rep)]]


def goals(r):
    """The issue's goals against this run's figures (the summary at the top)."""
    o = ["Against the goals of issue 12 item 6:", ""]
    g = r.get("reg")
    if g:
        p99 = g["all"]["p99"]
        o.append("- registration on a client → answer on every other agent's DNS: p99 %.2f ms "
                 "over %d answers (max %.2f ms): %s the 10 ms goal on loopback." % (
                     p99 * 1e3, g["all"]["n"], g["all"]["max"] * 1e3,
                     "**within**" if p99 < 0.010 else "**not within**"))
    dn = r.get("dns")
    if dn:
        parts = []
        ok = {"qps": True, "cpu_us_per_q": True}
        for mode in ("pinned", "unpinned"):
            q = med(pair(dn["runs"], mode, "qps"))
            c = med(pair(dn["runs"], mode, "cpu_us_per_q"))
            ok["qps"] = ok["qps"] and abs(q - 1) <= 0.05
            ok["cpu_us_per_q"] = ok["cpu_us_per_q"] and abs(c - 1) <= 0.05
            parts.append("%s: QPS ×%.3f, CPU per query ×%.3f" % (mode, q, c))

        def verdict(k, what):
            return "%s **%s** within 5%%" % (what, "is" if ok[k] else "is not")
        o.append("- DNS on a client against a server (client ÷ server, median of the paired "
                 "repetitions): %s: %s; %s%s." % (
                     "; ".join(parts), verdict("cpu_us_per_q", "CPU per query"),
                     verdict("qps", "QPS"), "" if ok["qps"] and ok["cpu_us_per_q"] else
                     " in both modes (see the runs' spread below: the machine is shared, and "
                     "dnsperf's own core is contended too)"))
    b = r.get("bytes")
    if b:
        o.append("- bytes to keep 1,000 clients current at %d writes/s: see the table below "
                 "(extrapolated from %d real clients, method written there)." % (
                     b["rate"], b["clients"]))
    cs = r.get("catchup")
    if cs:
        o.append("- catch-up of a client away for %d writes: %s." % (cs[0]["count"], "; ".join(
            "%s round %.2f s to the leader's applied index (%d entries behind%s)" % (
                c["mode"], c["caught_up_s"], c["target"] - (c["applied_before"] or 0),
                ", snapshot" if c["snapshot"] else "") for c in cs)))
    o.append("")
    return o


def section(d):
    meta = load(os.path.join(d, "meta.json"))
    r = load(os.path.join(d, "agents.json"))
    o = ["## Client agents (`tests/bench/agents.sh`)", ""]
    o += report.machine(meta)
    o.append("- herald: commit %s%s, release build (`make build/herald`, -O2; the agents run a "
             "copy), three servers on 127.0.11.1-3 (`%s`) and %d clients on 127.0.12.1-%d "
             "(`%s`)" % (meta["commit"], " (+ uncommitted changes)" if meta["dirty"] else "",
                         meta["server_cmd"], r["clients"], r["clients"], meta["client_cmd"]))
    o.append("- command: `%s`" % meta["command"])
    o.append("")
    o += goals(r)
    g = r.get("reg")
    if g:
        o.append("### Registration on a client → answer on every other agent's DNS")
        o.append("")
        o.append("%d registrations (after 5 not counted), each `PUT /v1/agent/service/register` "
                 "of a new name on a client, the clients in turn; from the moment the request "
                 "is sent, the %d other agents' DNS (3 servers, %d clients) are polled over UDP "
                 "(`regN.service.consul A`) by one thread: one query outstanding per agent, the "
                 "next at most every %.1f ms, until each answers with the record. Times in ms "
                 "from the PUT's send." % (g["regs"], g["agents_polled"],
                                           g["agents_polled"] - 3, g["poll_ms"]))
        o.append("")
        o.append("| | answers | p50 | p90 | p99 | max |")
        o.append("|---|---:|---:|---:|---:|---:|")
        for k, lab in (("all", "**every other agent** (each answer)"),
                       ("worst_per_reg", "the last agent to answer, per registration"),
                       ("servers", "servers"), ("clients", "other clients"),
                       ("self", "the registering client's own DNS"),
                       ("put", "the PUT's own answer (200)"),
                       ("bracket", "resolution: the first positive answer less the previous "
                                   "query's send")):
            s = g[k]
            o.append("| %s | %d | %s | %s | %s | %s |" % (
                lab, s["n"], ms(s["p50"]), ms(s["p90"]), ms(s["p99"]), ms(s["max"])))
        o.append("")
        o.append("Polling bounds the figure: an agent's time is its first answer with the "
                 "record, which can be late by up to the resolution row (the record became "
                 "visible after the previous, negative, query was sent), so a time is an upper "
                 "bound by that much. During the registrations the poller sent %.0f queries/s "
                 "and used %.2f core; the %d agents used %.2f core; other programs %.2f core "
                 "(the machine has %s cores: the poller, the agents and the writes share "
                 "them). Registrations not answered within 10 s: %d." % (
                     g["queries_per_s"], g["engine_cpu_cores"], r["agents"],
                     g["herald_cpu_cores"], g["other_cpu_cores"], meta["nproc"], g["missing"]))
        o.append("")
    dn = r.get("dns")
    if dn:
        o.append("### DNS on a client vs a server")
        o.append("")
        o.append("dns.sh's small set (%d nodes, %d services × 3, registered through `PUT "
                 "/v1/catalog/register` on the leader), the same query file (50%% A, 40%% SRV, "
                 "10%% NXDOMAIN); client %s and follower server %s, both `-dns-workers 1`, "
                 "answers checked alike first (%d names compared, %d mismatches); `dnsperf %s "
                 "-l %d`, the two interleaved; "
                 "pinned: the agent's threads on CPU 0 and dnsperf on CPU 1, unpinned: "
                 "neither (the other %d agents never pinned). CPU per query is the agent's "
                 "utime+stime over the run (/proc/PID/stat) divided by the answered queries. "
                 "Median (min–max) of %d runs." % (
                     dn["params"]["nodes"], dn["params"]["services"], dn["client"],
                     dn["server"], dn["check"].get("compared", 0),
                     dn["check"].get("mismatches", 0), dn["dnsperf"], dn["duration_s"],
                     r["agents"] - 2, max(int(z["rep"]) for z in dn["runs"])))
        o.append("")
        o.append("| | QPS | CPU µs/query | lost | client ÷ server, QPS | CPU/query |")
        o.append("|---|---:|---:|---:|---:|---:|")
        for mode in ("pinned", "unpinned"):
            vals = {}
            for role in ("client", "server"):
                rs = [z for z in dn["runs"] if z["role"] == role and z["mode"] == mode]
                vals[role] = rs
            mq = {k: med([z["qps"] for z in v]) for k, v in vals.items() if v}
            mc = {k: med([z["cpu_us_per_q"] for z in v]) for k, v in vals.items() if v}
            for role in ("client", "server"):
                rs = vals[role]
                if not rs:
                    continue
                o.append("| %s, %s | %s | %s | %d | %s | %s |" % (
                    role, mode, report.fmt_range([z["qps"] for z in rs], "%.0f"),
                    report.fmt_range([z["cpu_us_per_q"] for z in rs], "%.2f"),
                    sum(z["lost"] or 0 for z in rs),
                    "%.3f" % (mq["client"] / mq["server"]) if role == "client" and
                    len(mq) == 2 else "",
                    "%.3f" % (mc["client"] / mc["server"]) if role == "client" and
                    len(mc) == 2 else ""))
        o.append("")
        o.append("Paired by repetition (client ÷ server of the same repetition and mode, run "
                 "back to back), median (min–max): %s." % "; ".join(
                     "%s: QPS %s, CPU per query %s" % (
                         mode, report.fmt_range(pair(dn["runs"], mode, "qps"), "%.3f"),
                         report.fmt_range(pair(dn["runs"], mode, "cpu_us_per_q"), "%.3f"))
                     for mode in ("pinned", "unpinned")))
        o.append("")
        st = dn.get("steal_s", {})
        if st:
            o.append("Steal time (the hypervisor giving our cores to others) during a run: up "
                     "to %.2f s of CPU (median %.2f s) in a %d s run." % (
                         max(st.values()), med(list(st.values())), dn["duration_s"]))
            o.append("")
        oth = [z["other_cpu_s"] / z["wall_s"] for z in dn["runs"]]
        o.append("Other programs (not the agents, not dnsperf) used up to %.2f core during a "
                 "run." % max(oth))
        o.append("")
    b = r.get("bytes")
    if b:
        o.append("### Bytes a server sends to keep client replicas current")
        o.append("")
        idle, wr = b["idle"], b["writes"]

        def tot(x, k):
            return sum(v[k] for v in x["per_server"].values())
        n = b["clients"]
        hb = tot(idle, "sent") / idle["seconds"] / n
        hb_segs = tot(idle, "segs") / idle["seconds"] / n
        w_bps = tot(wr, "sent") / wr["seconds"]
        per_write = (tot(wr, "sent") - hb * n * wr["seconds"]) / max(1, wr["ok"]) / n
        segs_write = (tot(wr, "segs") - hb_segs * n * wr["seconds"]) / max(1, wr["ok"]) / n
        rate = b["rate"]
        k1 = 1000 * (hb + rate * per_write)
        k1_wire = k1 + 1000 * (hb_segs + rate * segs_write) * 66
        o.append("Method: the payload bytes each server's TCP sockets on the server port "
                 "(8300) acknowledged to the clients' addresses (`ss -tin`: bytes_acked, and "
                 "segs_out for the segments), summed over connections, before and after a "
                 "window. Idle window: %.1f s, no writes (the replication heartbeat: a client "
                 "that has everything has its FOLLOW request held up to 250 ms, then answered "
                 "with the header alone). Write window: %d catalog registrations (`PUT "
                 "/v1/catalog/register` to the leader, node + service with two tags; %d failed) "
                 "paced at %d/s over %.1f s, the window closed once every replica was current "
                 "(%.1f s); the leader's applied index rose by %d (a write alone in its flush is "
                 "followed by a barrier entry that carries its commit, consensus/propose.c, "
                 "so up to 2 entries per write reach the clients). Per-write bytes per client = "
                 "(bytes in the write window − heartbeat bytes/s × clients × window) ÷ writes "
                 "÷ clients." % (idle["seconds"], wr["ok"], wr["failed"], rate,
                                 wr["write_s"], wr["seconds"], wr["entries"]))
        o.append("")
        o.append("| | %d real clients | per client | 1,000 clients (extrapolated) |" % n)
        o.append("|---|---:|---:|---:|")
        o.append("| heartbeat, idle: bytes/s sent (segments/s) | %.0f (%.1f) | %.0f (%.2f) | "
                 "%.0f (%.0f) |" % (hb * n, hb_segs * n, hb, hb_segs, hb * 1000,
                                    hb_segs * 1000))
        o.append("| bytes sent per catalog write (segments) | %.0f (%.2f) | %.0f (%.2f) | — |"
                 % (per_write * n, segs_write * n, per_write, segs_write))
        o.append("| **at %d writes/s: bytes/s sent** | %.0f | %.0f | **%.2f MB/s in all, "
                 "%.2f MB/s per server** (%.2f and %.2f MB/s with 66 B of Ethernet+IP+TCP "
                 "headers per segment) |" % (
                     rate, w_bps, w_bps / n, k1 / 1e6, k1 / 3e6, k1_wire / 1e6,
                     k1_wire / 3e6))
        o.append("")
        per = ", ".join("%s: %d B (%d connections)" % (s, v["sent"], v["conns"])
                        for s, v in sorted(wr["per_server"].items()))
        folls = {}
        for c, s in b["follows"].items():
            folls[s] = folls.get(s, 0) + 1
        o.append("Per server in the write window: %s; clients following each server: %s. The "
                 "servers spread their clients (each follows one at random), so with 1,000 "
                 "clients each of three servers sends about a third of the total. Extrapolation "
                 "assumes the cost is linear in clients: every write wakes every held FOLLOW "
                 "request, one reply per write per client at this rate (at higher rates one "
                 "reply carries several entries and the per-write figure falls). The servers "
                 "received %.0f B/s from the clients in the idle window (the FOLLOW requests)."
                 % (per, ", ".join("%s: %d" % (s, k)
                                   for s, k in sorted(folls.items())),
                    tot(idle, "recv") / idle["seconds"]))
        o.append("")
    cs = r.get("catchup")
    if cs:
        o.append("### Catch-up of a client away for %d writes" % cs[0]["count"])
        o.append("")
        o.append("The last client is stopped (SIGTERM), KV writes (`PUT /v1/kv/...`, 70-byte "
                 "values) go to the leader, then one catalog registration (the last write); "
                 "the client is started again from its data dir and polled every 10 ms from "
                 "its start (its `/v1/agent/self` Stats.raft.applied_index with a 0.25 s "
                 "timeout, its DNS for the last write's name, and for `c1.node.consul`, a name "
                 "its replica had before the stop, to see whether it answers while it catches "
                 "up). Two rounds: **writes**, %d KV writes as fast as the "
                 "leader takes them (32 connections: the leader batches concurrent writes, so "
                 "they are fewer Raft entries), and **entries**, KV writes (8 connections) "
                 "until the leader's applied index is %d entries past the client's." % (
                     cs[0]["count"], cs[0]["count"]))
        o.append("")
        o.append("| round | writes (per s) | entries behind | HTTP up, s | first entries "
                 "applied, s | **applied index = the leader's, s** | DNS answers the last "
                 "write, s | snapshot | DNS of an old name: first answer / longest gap, s | "
                 "longest gap between HTTP answers, s | servers that marked it failed |")
        o.append("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
        for c in cs:
            o.append("| %s | %d (%.0f) | %d | %.2f | %.2f | **%.2f** | %.2f | %s | %s / %s | "
                     "%s | %s |" % (
                         c["mode"], c["writes"], c["writes"] / c["write_s"],
                         c["target"] - (c["applied_before"] or 0), c["http_up_s"],
                         c["first_move_s"], c["caught_up_s"], c["dns_s"],
                         "yes" if c["snapshot"] else "no",
                         report.fmt_range([c["steady_first_s"]], "%.2f").split(" ")[0]
                         if c.get("steady_first_s") is not None else "—",
                         "%.2f" % c["steady_max_gap_s"] if c.get("steady_max_gap_s")
                         is not None else "—",
                         "%.2f" % c["http_max_gap_s"] if c.get("http_max_gap_s")
                         is not None else "—",
                         ("**%d**" % len({x.split(":")[0] for x in c["gossip_fail"]})
                          if c.get("gossip_fail") else "0") if "gossip_fail" in c else "—"))
        o.append("")
        stalls = [c for c in cs if (c.get("http_max_gap_s") or 0) > 0.5 or c.get("gossip_fail")]
        gap = max(c.get("http_max_gap_s") or 0 for c in cs)
        if stalls:
            o.append("**A stall (a regression to look at):** a client applies a reply's entries "
                     "(up to 4096, each its own store commit) a slice at a time on its loop "
                     "(REPL_APPLY_SLICE_MS, consensus/replica.c), so that its loop keeps "
                     "answering gossip and HTTP while it catches up; this run still saw its "
                     "HTTP go %.2f s without an answer%s." % (
                         gap,
                         "" if not any(c.get("gossip_fail") for c in cs) else
                         ", and gossip took it for dead (%s)" %
                         "; ".join("`%s`" % x for c in cs for x in c.get("gossip_fail", [])[:3])))
        else:
            o.append("While it caught up its HTTP kept answering (the longest gap between answers "
                     "%.2f s) and no server marked it failed: a client applies a reply's entries "
                     "(up to 4096, each its own store commit) a slice at a time on its loop "
                     "(REPL_APPLY_SLICE_MS, consensus/replica.c). Before that, this benchmark "
                     "found the loop held for 2.85-4.75 s and every server marking the client "
                     "failed (`tests/integration/test_client_catchup.py`)." % gap)
        o.append("")
        o.append("The servers retain at most 65,536 entries and 16 MiB of them for followers "
                 "(consensus/replica.c), and a server keeps none until a client first asks it; "
                 "a client behind what its server keeps gets the catalog snapshot first, then "
                 "the tail. The restarted client's log: %s" % " / ".join(
                     "%s: %s" % (c["mode"], "; ".join("`%s`" % ln.split(" ", 1)[-1][-150:]
                                                      for ln in c["log_notes"][:3]) or "—")
                     for c in cs))
        o.append("")
    o.append("Stop: SIGTERM to every agent at the end; clean shutdowns (`shutdown complete`): "
             "%d of %d; the leader %s all along." % (
                 r["clean"], r["agents"], "stayed" if r.get("leader_after") == r["leader"]
                 else "**changed**"))
    o.append("")
    return "\n".join(o)


def cmd_report(a):
    report.publish(section(a.dir), a.record, BEGIN, END)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--run", required=True)
    r.add_argument("--bin", required=True)
    r.add_argument("--clients", type=int, default=10)
    r.add_argument("--regs", type=int, default=200)
    r.add_argument("--poll-ms", type=float, default=1.0)
    r.add_argument("--dns-reps", type=int, default=3)
    r.add_argument("--dns-duration", type=int, default=10)
    r.add_argument("--bytes-s", type=float, default=20)
    r.add_argument("--rate", type=float, default=100)
    r.add_argument("--catchup", type=int, default=100000)
    r.add_argument("--phases", default="1234")
    rp = sub.add_parser("report")
    rp.add_argument("dir")
    rp.add_argument("--record")
    a = p.parse_args()
    {"run": cmd_run, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
