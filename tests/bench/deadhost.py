#!/usr/bin/python3
"""Engine and report of tests/bench/deadhost.sh: "a host dies -> it leaves DNS".

    deadhost.py run --setup a|b --run DIR --bin HERALD [--rounds N] [--quiet-s S]
    deadhost.py gossip-params SWIM_C SERF_C CONFIG_C       the gossip timings in effect (JSON)
    deadhost.py report DIR [--record RESULTS.md]

run starts its processes itself, in DIR/<setup>/ (h<i>.pid, h<i>.argv, h<i>.log for the Herald
servers, s<i>.* for the serf agents; a pid file is rewritten at each restart, so deadhost.sh,
which stops whatever pids those files name at its exit, always has the current one), and
writes one JSON object on stdout.

Setup a (N=3): three Herald servers on 127.0.6.1-3 (`-server -bootstrap-expect 3 -retry-join
127.0.6.1 -retry-interval 1s -log-level info`), a service "web" registered on each through its
own agent (PUT /v1/agent/service/register). Each round SIGKILLs a follower (in turn), then
starts it again from its data dir.

Setup b (N=10): the same three servers, and seven Debian `serf agent`s on 127.0.7.1-7 tagged
as Consul clients (role=node, dc=dc1, id=<uuid>, build=1.0.0:x, vsn=2; joined to 127.0.6.1),
each given a "web" instance at its own address through PUT /v1/catalog/register once the
leader has registered its node. Each round SIGKILLs one serf agent (in turn), then starts it
again with the same tags and id.

Measured by pollers that run throughout, one thread per server and per kind, every 10 ms
(time.monotonic at the answer): GET /v1/agent/members (keep-alive HTTP) and a raw UDP query
`web.service.consul A` to the server's DNS port (dnspython for the wire format). Only
changes are kept. From the kill: gossip detection on a server = its first members list with
the victim's Status 4 (failed); DNS removal = its first answer without the victim's address.
A false failure is any member shown with a Status other than 1 (alive) by a server while it
is not the victim of the round (the victim counts as healthy again once every server has it
alive and back in DNS); a false DNS drop, an answer missing a healthy member's address.
Every wait is bounded.
"""
import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import dns.flags
import dns.message
import dns.rdatatype

import cpu
import report
from report import load

BEGIN, END = "<!-- deadhost.sh: begin -->", "<!-- deadhost.sh: end -->"
SERVERS = ["127.0.6.1", "127.0.6.2", "127.0.6.3"]
CLIENTS = ["127.0.7.%d" % i for i in range(1, 8)]
POLL = 0.010  # poll interval of the measuring threads
QNAME = "web.service.consul."
ALIVE, LEAVING, LEFT, FAILED = 1, 2, 3, 4


def log(msg):
    print("[deadhost.py %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def until(fn, timeout, what, interval=0.02):
    """fn()'s first true value within timeout seconds (tried every interval); exits if none."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)  # polling interval of a bounded wait
    raise SystemExit("deadhost: timed out after %ss waiting for %s" % (timeout, what))


def pct(xs, p):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


# ---- HTTP ----------------------------------------------------------------------------------------

def hreq(addr, method, path, body=None, timeout=5):
    c = http.client.HTTPConnection(addr, 8500, timeout=timeout)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def get_json(addr, path, timeout=2):
    try:
        st, body = hreq(addr, "GET", path, timeout=timeout)
        return json.loads(body) if st == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None


def put_ok(addr, path, obj):
    try:
        st, body = hreq(addr, "PUT", path, json.dumps(obj), timeout=10)
    except (OSError, http.client.HTTPException):
        return False
    return st == 200


def agreed_leader(servers):
    views = set()
    for s in servers:
        v = get_json(s, "/v1/status/leader", timeout=1)
        if not v:
            return None
        views.add(v)
    if len(views) != 1:
        return None
    ip = views.pop().rsplit(":", 1)[0]
    return ip if ip in servers else None


def raft_stats(addr):
    d = get_json(addr, "/v1/agent/self")
    return d["Stats"]["raft"] if d else None


# ---- processes -----------------------------------------------------------------------------------

class Proc:
    """A server or serf agent we start (and restart) ourselves; pid, argv and log in run dir."""

    def __init__(self, run, name, addr, argv):
        self.run, self.name, self.addr, self.argv = run, name, addr, argv
        self.proc = None
        with open(self.path("argv"), "w") as f:
            json.dump(argv, f)

    def path(self, ext):
        return os.path.join(self.run, "%s.%s" % (self.name, ext))

    def start(self):
        with open(self.path("log"), "ab") as lf:
            self.proc = subprocess.Popen(self.argv, stdout=lf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        with open(self.path("pid") + ".tmp", "w") as f:
            f.write("%d\n" % self.proc.pid)
        os.replace(self.path("pid") + ".tmp", self.path("pid"))
        return time.monotonic()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        t = time.monotonic()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        return t

    def stop(self, timeout=30):
        """SIGTERM and wait; SIGKILL after timeout. The exit code (None if it had to be killed)."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None


def server_proc(run, herald, i):
    a = SERVERS[i - 1]
    d = os.path.join(run, "h%d" % i)
    os.makedirs(d, exist_ok=True)
    argv = [herald, "agent", "-server", "-bootstrap-expect", "3", "-data-dir", d, "-bind", a,
            "-client", a, "-node", "h%d" % i, "-retry-join", SERVERS[0], "-retry-interval",
            "1s", "-log-level", "info"]
    return Proc(run, "h%d" % i, a, argv)


def serf_proc(run, i):
    a = CLIENTS[i - 1]
    argv = ["serf", "agent", "-node", "s%d" % i, "-bind", "%s:8301" % a, "-rpc-addr",
            "%s:7373" % a, "-join", "%s:8301" % SERVERS[0], "-tag", "role=node", "-tag",
            "dc=dc1", "-tag", "id=%s" % uuid.uuid4(), "-tag", "build=1.0.0:x", "-tag", "vsn=2"]
    return Proc(run, "s%d" % i, a, argv)


# ---- the pollers ---------------------------------------------------------------------------------

class Track:
    """Shared state: who may be down now (the round's victim), the false failures seen."""

    def __init__(self):
        self.lock = threading.Lock()
        self.down = set()        # member names expected not alive
        self.down_addrs = set()  # their addresses (not expected in DNS)
        self.all_addrs = set()   # every web address expected in DNS when all are healthy
        self.false_members = []  # (server, member, status, t)
        self.false_dns = []      # (server, missing addresses, t)
        self.stop = threading.Event()


class Poller(threading.Thread):
    """One server, one kind (members or dns): a sample every POLL s, changes kept as
    (t, value); value None when the server does not answer."""

    def __init__(self, server, kind, track, server_name):
        super().__init__(daemon=True)
        self.server, self.kind, self.track, self.server_name = server, kind, track, server_name
        self.lock = threading.Lock()
        self.changes = []
        self.samples = 0
        self.errors = 0
        self.last = object()
        self.last_t = None
        self.prev_send = None
        self.bracket = {}  # change time -> its time less the previous query's send time

    def record(self, t_send, t, v):
        with self.lock:
            self.samples += 1
            self.last_t = t
            if v != self.last:
                self.changes.append((t, v))
                # the change happened after the previous query was sent: its bracket
                self.bracket[t] = t - self.prev_send if self.prev_send is not None else None
                self.last = v
            self.prev_send = t_send

    def bracket_at(self, t):
        with self.lock:
            return self.bracket.get(t)

    def snapshot(self):
        with self.lock:
            return list(self.changes), self.last_t

    def run(self):
        if self.kind == "members":
            self.run_members()
        else:
            self.run_dns()

    def check_false(self, t, v):
        tr = self.track
        if v is None or self.server_name in tr.down:
            return
        if self.kind == "members":
            bad = [(n, st) for n, st in v if st != ALIVE and n not in tr.down]
            if bad:
                with tr.lock:
                    for n, st in bad:
                        tr.false_members.append((self.server_name, n, st, t))
        else:
            missing = tr.all_addrs - tr.down_addrs - set(v)
            if missing:
                with tr.lock:
                    tr.false_dns.append((self.server_name, sorted(missing), t))

    def run_members(self):
        conn = None
        nxt = time.monotonic()
        while not self.track.stop.is_set():
            v = None
            t_send = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.server, 8500, timeout=1)
                conn.request("GET", "/v1/agent/members")
                r = conn.getresponse()
                body = r.read()
                if r.status == 200:
                    v = tuple(sorted((m["Name"], m["Status"]) for m in json.loads(body)))
            except (OSError, ValueError, http.client.HTTPException):
                if conn:
                    conn.close()
                conn = None
            t = time.monotonic()
            if v is None:
                self.errors += 1
            self.record(t_send, t, v)
            self.check_false(t, v)
            nxt = max(nxt + POLL, t)
            time.sleep(max(0, nxt - time.monotonic()))

    def run_dns(self):
        so = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        so.connect((self.server, 8600))
        so.settimeout(0.1)
        nxt = time.monotonic()
        while not self.track.stop.is_set():
            q = dns.message.make_query(QNAME, dns.rdatatype.A)
            q.flags &= ~dns.flags.RD
            v = None
            t_send = time.monotonic()
            try:
                so.send(q.to_wire())
                while True:
                    resp = dns.message.from_wire(so.recv(4096))
                    if resp.id == q.id:
                        break
                if resp.flags & dns.flags.TC:
                    raise ValueError("truncated")
                v = tuple(sorted(rd.address for rr in resp.answer
                                 if rr.rdtype == dns.rdatatype.A for rd in rr))
            except (OSError, ValueError, dns.exception.DNSException):
                pass
            t = time.monotonic()
            if v is None:
                self.errors += 1
            self.record(t_send, t, v)
            self.check_false(t, v)
            nxt = max(nxt + POLL, t)
            time.sleep(max(0, nxt - time.monotonic()))
        so.close()


def first_after(changes, t0, pred):
    """The first moment at or after t0 when the value satisfied pred (t0 itself if the value
    in force then already did), or None."""
    cur = None
    for t, v in changes:
        if t < t0:
            cur = v
            continue
        if cur is not None and pred(cur):
            return t0
        cur = None
        if v is not None and pred(v):
            return t
    return t0 if cur is not None and pred(cur) else None


def last_into(changes, t0, pred):
    """Time of the last change after t0 into a value satisfying pred, after which it held to
    the end (the moment it was back for good), or None."""
    t_in = None
    prev_ok = False
    for t, v in changes:
        ok = v is not None and pred(v)
        if t >= t0 and ok and not prev_ok:
            t_in = t
        prev_ok = ok
    return t_in if prev_ok else None


def flaps(changes, t0, pred):
    """How many times, after t0, the value went from satisfying pred to not (a live answer)."""
    n = 0
    was = None
    for t, v in changes:
        if v is None:
            continue
        ok = pred(v)
        if t >= t0 and was is True and not ok:
            n += 1
        was = ok
    return n


# ---- a setup -------------------------------------------------------------------------------------

class Setup:
    def __init__(self, a):
        self.a = a
        self.run = os.path.join(a.run, "setup_" + a.setup)
        os.makedirs(self.run, exist_ok=True)
        self.servers = [server_proc(self.run, a.bin, i) for i in (1, 2, 3)]
        self.clients = [serf_proc(self.run, i) for i in range(1, 8)] if a.setup == "b" else []
        self.track = Track()
        self.pollers = {}
        self.mine = {str(os.getpid()), str(os.getppid())}

    def members(self):
        return self.servers + self.clients

    def our_pids(self):
        for p in self.members():
            if p.proc:
                self.mine.add(str(p.proc.pid))
        return self.mine

    def addr_of(self, name):
        return next(p.addr for p in self.members() if p.name == name)

    def view(self, server, kind):
        return self.pollers[(server, kind)].snapshot()

    def steady(self, hold=1.0):
        """Every server lists every member alive and answers with every web address, and has
        for hold seconds (by its pollers)."""
        names = {p.name for p in self.members()}
        now = time.monotonic()
        for s in SERVERS:
            for kind in ("members", "dns"):
                ch, last_t = self.view(s, kind)
                if not ch or last_t is None or now - last_t > 0.5:
                    return False
                t, v = ch[-1]
                if v is None or now - t < hold:
                    return False
                if kind == "members":
                    if any(st != ALIVE for _, st in v) or {n for n, _ in v} != names:
                        return False
                elif set(v) != self.track.all_addrs:
                    return False
        return True

    def wait_steady(self, timeout, what):
        until(self.steady, timeout, what, interval=0.05)

    def start_pollers(self):
        for p in self.servers:
            for kind in ("members", "dns"):
                t = Poller(p.addr, kind, self.track, p.name)
                self.pollers[(p.addr, kind)] = t
                t.start()

    def form(self):
        for p in (self.servers[2], self.servers[0], self.servers[1]):
            p.start()
        t0 = time.monotonic()
        leader = until(lambda: agreed_leader(SERVERS), 60, "an agreed leader")
        log("setup %s: leader %s after %.1f s" % (self.a.setup, leader, time.monotonic() - t0))
        for p in self.servers:
            until(lambda: put_ok(p.addr, "/v1/agent/service/register",
                                 {"Name": "web", "Port": 80}), 30, "web on %s" % p.name)
            self.track.all_addrs.add(p.addr)
        for c in self.clients:
            c.start()

        def registered(c):
            for s in SERVERS:
                h = get_json(s, "/v1/health/node/%s?stale" % c.name)
                if not h or not any(x["CheckID"] == "serfHealth" and x["Status"] == "passing"
                                    for x in h):
                    return False
            return True
        for c in self.clients:
            until(lambda: registered(c), 60, "serf agent %s registered by the leader" % c.name)
            until(lambda: put_ok(leader, "/v1/catalog/register", {
                "Node": c.name, "Address": c.addr, "Service": {"Service": "web", "Port": 80}}),
                30, "web on %s" % c.name)
            self.track.all_addrs.add(c.addr)
        self.start_pollers()
        self.wait_steady(90, "the pool steady after formation")
        return leader

    def leader(self):
        return until(lambda: agreed_leader([p.addr for p in self.servers if p.alive()]), 30,
                     "an agreed leader")

    def round(self, r, victim, leader):
        tr = self.track
        survivors = [s for s in SERVERS if s != victim.addr]
        before = raft_stats(leader)
        c0 = cpu.snap()
        with tr.lock:
            tr.down.add(victim.name)
            tr.down_addrs.add(victim.addr)
        vip = victim.addr
        t_kill = victim.kill9()

        def gone_everywhere():
            for s in survivors:
                ch, _ = self.view(s, "members")
                if first_after(ch, t_kill, lambda v: (victim.name, FAILED) in v) is None:
                    return False
                ch, _ = self.view(s, "dns")
                if first_after(ch, t_kill, lambda v: vip not in v) is None:
                    return False
            return True
        until(gone_everywhere, 90, "round %d: %s failed and out of DNS on every survivor"
              % (r, victim.name), interval=0.05)
        det, gone, brackets = {}, {}, []
        for s in survivors:
            ch, _ = self.view(s, "members")
            t = first_after(ch, t_kill, lambda v: (victim.name, FAILED) in v)
            det[s] = t - t_kill
            brackets.append(self.pollers[(s, "members")].bracket_at(t))
            ch, _ = self.view(s, "dns")
            t = first_after(ch, t_kill, lambda v: vip not in v)
            gone[s] = t - t_kill
            brackets.append(self.pollers[(s, "dns")].bracket_at(t))
        mid = raft_stats(leader)
        t_start = victim.start()
        if victim in self.servers:
            self.our_pids()

        def back():
            for s in SERVERS:
                ch, _ = self.view(s, "members")
                if not ch or ch[-1][1] is None or (victim.name, ALIVE) not in ch[-1][1]:
                    return False
                ch, _ = self.view(s, "dns")
                if not ch or ch[-1][1] is None or vip not in ch[-1][1]:
                    return False
            return True
        until(back, 120, "round %d: %s back alive and in DNS on every server"
              % (r, victim.name), interval=0.05)
        self.wait_steady(60, "round %d: the pool steady again" % r)
        with tr.lock:
            tr.down.discard(victim.name)
            tr.down_addrs.discard(victim.addr)
        after = raft_stats(leader)
        c1 = cpu.snap()
        t_end = time.monotonic()
        back_dns, back_alive, dns_flaps = {}, {}, {}
        for s in SERVERS:
            ch, _ = self.view(s, "dns")
            back_dns[s] = last_into(ch, t_start, lambda v: vip in v) - t_start
            dns_flaps[s] = flaps(ch, t_start, lambda v: vip in v)
            ch, _ = self.view(s, "members")
            back_alive[s] = last_into(ch, t_start, lambda v: (victim.name, ALIVE) in v) - t_start
        sees_all = None
        if victim in self.servers:
            names = {p.name for p in self.members()}
            ch, _ = self.view(victim.addr, "members")
            t_all = last_into(ch, t_start, lambda v: {n for n, st in v if st == ALIVE} == names)
            sees_all = t_all - t_start if t_all is not None else None
        user, _ = cpu.other(c0, c1, self.our_pids())
        out = {"round": r, "victim_sees_all_s": sees_all, "brackets_s": brackets,
               "victim": victim.name, "victim_addr": vip, "leader": leader,
               "detect_s": det, "dns_gone_s": gone,
               "leader_detect_s": det.get(leader),
               "back_dns_s": back_dns, "back_alive_s": back_alive, "dns_flaps_after_restart":
               dns_flaps, "raft_entries_failure": mid["last_log_index"] - before[
                   "last_log_index"] if mid and before else None,
               "raft_entries_back": after["last_log_index"] - mid["last_log_index"]
               if after and mid else None,
               "other_cpu_cores": user / (t_end - t_kill + 1e-9)}
        log("round %d: %s killed: detection %s, out of DNS %s; back in DNS %s (alive %s)" % (
            r, victim.name, fmt_map(det), fmt_map(gone), fmt_map(back_dns),
            fmt_map(back_alive)))
        return out

    def quiet_minute(self, leader):
        self.wait_steady(60, "the pool steady before the quiet minute")
        c0 = cpu.snap()
        s0 = until(lambda: raft_stats(leader), 10, "the leader's /v1/agent/self")
        t0 = time.monotonic()
        lines0 = self.reconcile_lines(leader)
        time.sleep(self.a.quiet_s)  # the measured interval itself, not a synchronisation
        s1 = until(lambda: raft_stats(leader), 10, "the leader's /v1/agent/self")
        c1 = cpu.snap()
        user, _ = cpu.other(c0, c1, self.our_pids())
        lead_after = agreed_leader(SERVERS)
        out = {"seconds": time.monotonic() - t0, "leader": leader, "leader_after": lead_after,
               "last_log_index": [s0["last_log_index"], s1["last_log_index"]],
               "catalog_index": [s0["catalog_index"], s1["catalog_index"]],
               "term": [s0["term"], s1["term"]],
               "reconcile_log_lines": self.reconcile_lines(leader)[len(lines0):],
               "still_steady": self.steady(hold=0),
               "other_cpu_cores": user / self.a.quiet_s}
        log("quiet %.0f s: leader last_log_index %d -> %d, catalog index %s -> %s" % (
            out["seconds"], s0["last_log_index"], s1["last_log_index"], s0["catalog_index"],
            s1["catalog_index"]))
        return out

    def reconcile_lines(self, leader):
        p = next(p for p in self.servers if p.addr == leader)
        try:
            with open(p.path("log"), errors="replace") as f:
                return [ln.rstrip("\n") for ln in f if " reconcile: " in ln]
        except OSError:
            return []

    def log_notes(self):
        """The servers' warn and error lines (the usual "open to anyone" one left out)."""
        out = []
        for p in self.servers:
            try:
                with open(p.path("log"), errors="replace") as f:
                    for ln in f:
                        if re.search(r"Z (warn|error|err|fatal) ", ln) and \
                                "is open to anyone" not in ln:
                            out.append("%s: %s" % (p.name, ln.rstrip("\n")))
            except OSError:
                pass
        return out

    def stop_all(self):
        res = {}
        for c in self.clients:
            res[c.name] = c.stop()
        clean = 0
        for p in self.servers:
            rc = p.stop()
            res[p.name] = rc
            try:
                with open(p.path("log"), errors="replace") as f:
                    last = f.read().rstrip("\n").rsplit("\n", 1)[-1]
                clean += rc == 0 and "shutdown complete" in last
            except OSError:
                pass
        return res, clean

    def go(self):
        a = self.a
        try:
            leader = self.form()
            rounds = []
            t_run = time.monotonic()
            cpu0 = os.times()
            k = 0
            for r in range(1, a.rounds + 1):
                leader = self.leader()
                if a.setup == "a":
                    # followers in turn: the next server after the last victim that does not lead
                    cands = [p for p in self.servers if p.addr != leader]
                    victim = None
                    for j in range(len(self.servers)):
                        p = self.servers[(k + j) % len(self.servers)]
                        if p in cands:
                            victim = p
                            k = (k + j + 1) % len(self.servers)
                            break
                else:
                    victim = self.clients[(r - 1) % len(self.clients)]
                rounds.append(self.round(r, victim, leader))
            t_rounds = time.monotonic() - t_run
            cpu1 = os.times()
            engine = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / t_rounds
            quiet = self.quiet_minute(self.leader())
            samples = {"%s/%s" % k: (p.samples, p.errors) for k, p in self.pollers.items()}
        finally:
            self.track.stop.set()
            for p in self.pollers.values():
                p.join(5)
            stops, clean = self.stop_all()
        notes = self.log_notes()
        tr = self.track
        return {"setup": a.setup, "n": len(self.members()), "rounds": rounds,
                "rounds_s": t_rounds, "engine_cpu_cores": engine, "quiet": quiet,
                "poll_s": POLL, "samples": samples,
                "false_members": tr.false_members, "false_dns": tr.false_dns,
                "stops": stops, "clean": clean, "log_notes": notes,
                "serf_argv": self.clients[0].argv if self.clients else None,
                "server_argv": self.servers[0].argv}


def fmt_map(d):
    return " ".join("%s=%.2f" % (k.rsplit(".", 1)[-1], v) for k, v in sorted(d.items()))


def cmd_run(a):
    out = Setup(a).go()
    print(json.dumps(out))


# ---- gossip timings in effect ----------------------------------------------------------------

def cmd_gossip_params(a):
    """The timing fields gossip_config_defaults sets in SWIM_C (memberlist's LAN defaults unless
    someone changed them), overridden by a number the agent assigns them in SERF_C (gc.X = N)
    or a default its config table (CONFIG_C) gives a gossip_lan key: the benchmark sets no
    gossip_lan key, so these are what its agents run with."""
    keep = ("probe_interval_ms", "probe_timeout_ms", "gossip_interval_ms", "gossip_nodes",
            "suspicion_mult", "suspicion_max_timeout_mult", "retransmit_mult", "indirect_checks",
            "awareness_max_multiplier", "push_pull_interval_ms", "reconnect_interval_ms")

    def wanted(k):
        return k in keep or "suspicion" in k or "probe" in k

    def read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""
    out = {}
    m = re.search(r"void gossip_config_defaults\(struct gossip_config \*c\)\s*\{(.*?)\n\}",
                  read(a.swim), re.S)
    for k, v in re.findall(r"c->(\w+)\s*=\s*([^;]+);", m.group(1) if m else ""):
        if wanted(k):
            out[k] = v.strip()
    for k, v in re.findall(r"\bgc\.(\w+)\s*=\s*(\d[^;]*);", read(a.serf)):
        if wanted(k):
            out[k] = v.strip() + " (admin/serf.c)"
    for k, v in re.findall(r'"gossip_lan\.(\w+)"[^}]*?\.def\s*=\s*([^,}]+)', read(a.config)):
        out["gossip_lan." + k] = v.strip() + " (config default)"
    print(json.dumps(out))


# ---- the report ----------------------------------------------------------------------------------

def s2(x):
    return "—" if x is None else "%.2f" % x


def ms(x):
    return "—" if x is None else "%.0f" % (x * 1e3)


def pm(xs, f=s2):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    return "%s / %s" % (f(pct(xs, 50)), f(max(xs)))


def figures(d):
    """The rows of the summary table for one setup's JSON."""
    rs = d["rounds"]
    first = [min(r["detect_s"].values()) for r in rs]
    every = [max(r["detect_s"].values()) for r in rs]
    gone = [max(r["dns_gone_s"].values()) for r in rs]
    split = [g - r["leader_detect_s"] for r in rs for g in r["dns_gone_s"].values()
             if r["leader_detect_s"] is not None]
    split_all = [max(r["dns_gone_s"].values()) - r["leader_detect_s"] for r in rs
                 if r["leader_detect_s"] is not None]
    split_own = [r["dns_gone_s"][s] - r["detect_s"][s] for r in rs for s in r["detect_s"]]
    back = [max(v for k, v in r["back_dns_s"].items() if k != r["victim_addr"]) for r in rs]
    back_self = [r["back_dns_s"].get(r["victim_addr"]) for r in rs]
    alive = [max(r["back_alive_s"].values()) for r in rs]
    q = d["quiet"]
    fm = d["false_members"]
    fd = d["false_dns"]
    return {
        "first": pm(first), "every": pm(every), "gone": pm(gone), "split": pm(split, ms),
        "split_all": pm(split_all, ms), "split_own": pm(split_own, ms),
        "entries_fail": ", ".join(sorted({str(r["raft_entries_failure"]) for r in rs})),
        "back": pm(back), "back_self": pm(back_self), "alive": pm(alive),
        "flaps": sum(v for r in rs for k, v in r["dns_flaps_after_restart"].items()
                     if k != r["victim_addr"]),
        "flaps_self": sum(r["dns_flaps_after_restart"].get(r["victim_addr"], 0) for r in rs),
        "sees_all": pm([r.get("victim_sees_all_s") for r in rs]),
        "quiet": "%d (last_log_index %d → %d; catalog index %d → %d; %.0f s%s)" % (
            q["last_log_index"][1] - q["last_log_index"][0], q["last_log_index"][0],
            q["last_log_index"][1], q["catalog_index"][0], q["catalog_index"][1], q["seconds"],
            "" if q["leader_after"] == q["leader"] else "; **the leader changed**"),
        "false": "%d%s" % (len({(s, n) for s, n, _, _ in fm}),
                           "" if not fm else " (%d samples)" % len(fm)),
        "false_dns": "%d%s" % (len({s for s, _, _ in fd}), "" if not fd else
                               " (%d answers)" % len(fd)),
        "cpu": max(r["other_cpu_cores"] for r in rs),
        "cpu_quiet": q["other_cpu_cores"],
        "engine": d.get("engine_cpu_cores"),
        "brackets": pm([b for r in rs for b in r.get("brackets_s", []) if b is not None], ms),
        "samples": sum(n for n, _ in d["samples"].values()) / d["rounds_s"],
    }


def section(d):
    meta = load(os.path.join(d, "meta.json"))
    sa = load(os.path.join(d, "setup_a.json"))
    sb = load(os.path.join(d, "setup_b.json"))
    gp = load(os.path.join(d, "gossip_params.json"), {})
    setups = [(x, lab) for x, lab in (
        (sa, "A: N=3, three servers; kill -9 a follower"),
        (sb, "B: N=10, three servers + seven serf agents as Consul clients; kill -9 a serf "
             "agent")) if x]
    o = ["## Dead hosts leave DNS (`tests/bench/deadhost.sh`)", ""]
    o += report.machine(meta)
    o.append("- herald: commit %s%s, release build (`make build/herald`, -O2; the servers run a "
             "copy, md5 %s…), three servers on 127.0.6.1-3, each `%s`" % (
                 meta["commit"], " (+ uncommitted changes)" if meta["dirty"] else "",
                 meta.get("bin_md5", "?"), meta["herald_cmd"]))
    if sb:
        o.append("- serf: %s (Debian), seven agents on 127.0.7.1-7, each `%s` (serf's own "
                 "`-profile lan` timings)" % (meta.get("serf_version", "?"), meta["serf_cmd"]))
    if gp:
        o.append("- gossip timings in effect (no `gossip_lan` key given, so "
                 "`gossip_config_defaults` of the built commit, read from gossip/swim.c): %s" %
                 ", ".join("%s %s" % (k, v) for k, v in gp.items()))
    o.append("- command: `%s`" % meta["command"])
    o.append("")
    o.append("Every round SIGKILLs one member, then starts it again (same data dir, flags, node "
             "ID) once it is out of DNS everywhere, and waits until every server lists it alive "
             "and answers with its address again, held for 1 s, before the next round. "
             "Pollers run all along, one thread per server and kind, every %.0f ms "
             "(`time.monotonic` at the answer, so each time is late by up to one interval): "
             "`GET /v1/agent/members` on a keep-alive connection, and a UDP query "
             "`web.service.consul A` to the server's DNS port. Gossip detection on a server = "
             "its first member list with the victim's Status 4 (failed); DNS removal = its "
             "first answer without the victim's address; both from the kill. The split is DNS "
             "removal on a server minus detection on the leader (the leader's reconcile writes "
             "serfHealth critical: reconcile + Raft commit + apply on that server). Times in "
             "seconds unless marked ms; p50 / max over the rounds." % (POLL * 1e3))
    o.append("")
    o.append("| | " + " | ".join(lab for _, lab in setups) + " |")
    o.append("|---|" + "---:|" * len(setups))
    fs = [figures(x) for x, _ in setups]
    rows = [
        ("rounds (survivors measured)", lambda x, f: "%d (%d servers)" % (
            len(x["rounds"]), len(x["rounds"][0]["detect_s"]))),
        ("gossip detection, first server", lambda x, f: f["first"]),
        ("gossip detection, every server (the last one)", lambda x, f: f["every"]),
        ("**DNS removal, every server (the last one)**", lambda x, f: "**%s**" % f["gone"]),
        ("split: DNS removal minus the leader's detection, each server, ms",
         lambda x, f: f["split"]),
        ("... the last server's DNS removal minus the leader's detection, ms",
         lambda x, f: f["split_all"]),
        ("... a server's DNS removal minus its own detection, ms", lambda x, f: f["split_own"]),
        ("Raft entries per failure (the leader's last_log_index: the reconcile's write, "
         "and the barrier that carries its commit to the followers, consensus/propose.c)",
         lambda x, f: f["entries_fail"]),
        ("restart → back in DNS, every other server", lambda x, f: f["back"]),
        ("restart → back in DNS on the restarted server itself",
         lambda x, f: f["back_self"] if x["setup"] == "a" else "—"),
        ("restart → listed alive, every server", lambda x, f: f["alive"]),
        ("restart → the restarted server itself lists every member alive",
         lambda x, f: f["sees_all"] if x["setup"] == "a" else "—"),
        ("DNS answers that dropped the restarted member again after its return: other "
         "servers / the restarted server itself", lambda x, f: "%d / %s" % (
             f["flaps"], f["flaps_self"] if x["setup"] == "a" else "—")),
        ("**Raft entries written by reconciliation in a quiet minute**",
         lambda x, f: "**%s**" % f["quiet"]),
        ("**false failures** (a healthy member shown not alive by any server: members)",
         lambda x, f: "**%s**" % f["false"]),
        ("a healthy member's address missing from an answer (servers)",
         lambda x, f: f["false_dns"]),
        ("other programs' CPU, cores: worst round / quiet minute", lambda x, f: "%s / %s" % (
            ("%.2f" if f["cpu"] < 0.1 else "**%.2f**") % f["cpu"],
            ("%.2f" if f["cpu_quiet"] < 0.1 else "**%.2f**") % f["cpu_quiet"])),
        ("resolution: a change's first answer less the previous query's send, ms",
         lambda x, f: f["brackets"]),
        ("the measuring process's own CPU during the rounds, cores (samples/s, all pollers)",
         lambda x, f: "%.2f (%.0f)" % (f["engine"], f["samples"])),
    ]
    for label, fn in rows:
        o.append("| %s | %s |" % (label, " | ".join(fn(x, f) for (x, _), f in zip(setups, fs))))
    o.append("")
    contended = [f for f in fs if f["cpu"] >= 0.1 or f["cpu_quiet"] >= 0.1]
    if contended:
        o.append("Measured under contention: other programs used up to %.2f of the 2 cores "
                 "during a round (bold above 0.1); the times include that." %
                 max(max(f["cpu"], f["cpu_quiet"]) for f in fs))
        o.append("")
    for x, lab in setups:
        o.append("Setup %s, every round (detection / DNS removal per surviving server, s; the "
                 "leader marked *):" % lab.split(":")[0])
        o.append("")
        o.append("| round | killed | detection | DNS removal | restart → back in DNS (others) "
                 "| → alive everywhere%s | Raft entries fail / back | resolution, ms | "
                 "other CPU |" % (
                     " (→ it lists all alive)" if x["setup"] == "a" else ""))
        o.append("|---:|---|---|---|---:|---:|---:|---:|---:|")
        for r in x["rounds"]:
            def per(m):
                return " ".join("%s%s %s" % (s.rsplit(".", 1)[-1], "*" if s == r["leader"]
                                             else "", s2(v)) for s, v in sorted(m.items()))
            bs = [b for b in r.get("brackets_s", []) if b is not None]
            o.append("| %d | %s | %s | %s | %s | %s | %s / %s | %s | %s |" % (
                r["round"], r["victim"], per(r["detect_s"]), per(r["dns_gone_s"]),
                s2(max(v for k, v in r["back_dns_s"].items() if k != r["victim_addr"])),
                s2(max(r["back_alive_s"].values())) + (
                    " (%s)" % s2(r.get("victim_sees_all_s")) if x["setup"] == "a" else ""),
                r["raft_entries_failure"],
                r["raft_entries_back"], ms(max(bs)) if bs else "—",
                ("%.2f" if r["other_cpu_cores"] < 0.1 else "**%.2f**")
                % r["other_cpu_cores"]))
        o.append("")
        if x["false_members"] or x["false_dns"]:
            o.append("False failures seen (first few): %s" % "; ".join(
                "%s showed %s status %s" % (s, n, st) for s, n, st, _ in x["false_members"][:5]))
            o.append("")
        if x["log_notes"]:
            o.append("Warnings in the servers' logs (%d; first few): %s" % (
                len(x["log_notes"]), "; ".join("`%s`" % ln for ln in x["log_notes"][:4])))
            o.append("")
    cl = ", ".join("%s: %d of 3" % (x["setup"].upper(), x["clean"]) for x, _ in setups)
    o.append("Stop: SIGTERM to everything at the end of each setup; clean server shutdowns "
             "(exit 0, `shutdown complete`): %s." % cl)
    o.append("")
    return "\n".join(o)


def cmd_report(a):
    report.publish(section(a.dir), a.record, BEGIN, END)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--setup", choices=("a", "b"), required=True)
    r.add_argument("--run", required=True)
    r.add_argument("--bin", required=True)
    r.add_argument("--rounds", type=int, default=10)
    r.add_argument("--quiet-s", type=float, default=60)
    g = sub.add_parser("gossip-params")
    g.add_argument("swim")
    g.add_argument("serf")
    g.add_argument("config")
    rp = sub.add_parser("report")
    rp.add_argument("dir")
    rp.add_argument("--record")
    a = p.parse_args()
    {"run": cmd_run, "gossip-params": cmd_gossip_params, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
