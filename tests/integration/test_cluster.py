"""Raft clusters of real servers on loopback (DESIGN.md 1.3, 2.5, 2.6; consensus/consensus.h).

Formation in several start orders with delays; a registration on a follower (and on the
leader) visible over HTTP and DNS on every server within a second; default and ?consistent
reads on followers; kill -9 of the leader under continuous writes, five times in a row, with
DNS on the survivors never failing and every acknowledged write on every server afterwards
(identical catalogs: /v1/operator/catalog/digest); kill -9 of all three at once; SIGSTOP of a
majority (the minority acknowledges nothing, still serves ?stale reads and DNS) and SIGCONT;
a full-cluster restart; a wiped server caught up from a snapshot, or by log replication (the
leader replaces a server whose log went backwards), or coming back with a new node-id at its
old address (it replaces the stale server); servers joining (voters up to 5, then standby),
leaving (a follower, the leader) and removed with `herald operator raft remove-peer`; a server
that left and is started again rejoins; grow to five, remove one, restart three at once.

Every wait is bounded; every process is stopped by pid (make_cluster's teardown, which also
checks that each graceful stop exits 0 under ASan)."""
import base64
import random
import statistics
import subprocess
import threading
import time

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from conftest import HERALD, wait_until

SNAP_CONFIG = {"raft_snapshot_threshold": 64, "raft_trailing_logs": 64}


# ---- helpers --------------------------------------------------------------------------------

def dns_a(agent, name, timeout=2):
    """The A addresses for name from agent's DNS (UDP), or None for an error or no answer."""
    q = dns.message.make_query(name, "A")
    m = dns.query.udp(q, agent.addr, port=agent.dns_port, timeout=timeout)
    if m.rcode() != dns.rcode.NOERROR:
        return None
    return sorted(r.address for rr in m.answer if rr.rdtype == dns.rdatatype.A for r in rr)


def register(agent, sid, name, address, port=80):
    r = agent.put("/v1/agent/service/register",
                  {"Name": name, "ID": sid, "Port": port, "Address": address}, timeout=10)
    assert r.status == 200, (agent.addr, r.status, r.text)


def kv_keys(agent, prefix, timeout=10):
    """{key: value} of every key under prefix on agent's own replica (?stale)."""
    r = agent.get("/v1/kv/%s/?recurse&stale" % prefix, timeout=timeout)
    if r.status == 404:
        return {}
    assert r.status == 200, (agent.addr, r.status, r.text)
    return {e["Key"]: base64.b64decode(e["Value"] or "").decode() for e in r.json()}


def cli(agent, *args, timeout=60):
    return subprocess.run([HERALD] + list(args) + ["-http-addr", "%s:8500" % agent.addr],
                          capture_output=True, text=True, timeout=timeout)


class Writers:
    """n client threads writing unique keys (prefix/<thread>-<seq>) to random servers of
    targets() until stopped. A write is acknowledged only on 200 "true"; anything else
    (500, connection error, client timeout) leaves its outcome unknown."""

    def __init__(self, targets, n=4, prefix="w", timeout=8):
        self.targets = targets
        self.prefix = prefix
        self.timeout = timeout
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}  # key -> (value, t_invoke, t_response, server)
        self.unknown = {}  # key -> reason
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(n)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def run(self, tid):
        rng = random.Random(tid)
        seq = 0
        while not self.stop_ev.is_set():
            targets = self.targets()
            if not targets:
                time.sleep(0.01)  # pacing: no server up to write to yet (load generator)
                continue
            a = rng.choice(targets)
            seq += 1
            key = "%s/%d-%d" % (self.prefix, tid, seq)
            value = "v-%d-%d" % (tid, seq)
            t0 = time.monotonic()
            try:
                r = a.put("/v1/kv/" + key, value, timeout=self.timeout)
                ok = r.status == 200 and r.body.strip() == b"true"
                reason = "%s %s" % (r.status, r.text[:80])
            except Exception as e:  # noqa: BLE001 - any failure: outcome unknown
                ok, reason = False, repr(e)[:120]
            t1 = time.monotonic()
            with self.lock:
                if ok:
                    self.acked[key] = (value, t0, t1, a.addr)
                else:
                    self.unknown[key] = reason
            if not ok:
                time.sleep(0.02)  # pacing: a failed write's retry backoff (load generator)

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(self.timeout + 5)
            assert not t.is_alive(), "writer thread stuck"

    def acked_since(self, t, server=None):
        """How many writes invoked at or after t (monotonic) were acknowledged (by server)."""
        with self.lock:
            return sum(1 for (_, t0, _, by) in self.acked.values()
                       if t0 >= t and (server is None or by == server))

    def first_ack_after(self, t):
        """Seconds from t to the first acknowledged write invoked after t (None: none)."""
        with self.lock:
            ends = [t1 for (_, t0, t1, _) in self.acked.values() if t0 >= t]
        return min(ends) - t if ends else None


class DnsProbe:
    """One thread querying name on every server of targets in turn until stopped; counts
    queries and failures (timeout, error rcode, wrong answer)."""

    def __init__(self, targets, name, expect, timeout=2):
        self.targets = targets
        self.name = name
        self.expect = expect
        self.timeout = timeout
        self.ok = 0
        self.failures = []
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def run(self):
        while not self.stop_ev.is_set():
            for a in self.targets:
                try:
                    got = dns_a(a, self.name, timeout=self.timeout)
                except Exception as e:  # noqa: BLE001
                    got = repr(e)
                if got == self.expect:
                    self.ok += 1
                else:
                    self.failures.append((a.addr, got))
            time.sleep(0.002)  # pacing: the probe's query rate

    def queries(self):
        return self.ok + len(self.failures)

    def stop(self):
        self.stop_ev.set()
        self.thread.join(self.timeout * 3 + 5)
        assert not self.thread.is_alive()


def assert_all_present(cluster, acked, prefix, among=None):
    """Every acknowledged write is on every server, with its value."""
    for a in (among or cluster.live()):
        have = kv_keys(a, prefix)
        missing = [k for k in acked if have.get(k) != acked[k][0]]
        assert not missing, "%s lacks %d acknowledged writes, e.g. %s (acked by %s)" % (
            a.addr, len(missing), missing[:5], [acked[k][3] for k in missing[:5]])


# ---- formation ------------------------------------------------------------------------------

@pytest.mark.parametrize("order,delays", [
    ((0, 1, 2), (0, 0, 0)),
    ((2, 0, 1), (0, 0.7, 0.3)),
    ((1, 2, 0), (0, 0.2, 5.0)),
], ids=["together", "reverse-with-delays", "last-one-late"])
def test_three_servers_form_one_cluster_in_any_order(make_cluster, order, delays):
    c = make_cluster(3)
    t0 = time.monotonic()
    c.start(order=order, delays=delays)
    print("formed with a leader %.2f s after the first start" % (time.monotonic() - t0))
    leader = c.wait_leader()
    # One configuration of three voters, the same everywhere.
    expect = sorted(a.server_addr for a in c)
    for a in c:
        assert sorted(a.get("/v1/status/peers").json()) == expect
        assert a.get("/v1/status/leader").json() == leader.server_addr
        conf = a.raft_config()
        assert sorted(s["Address"] for s in conf["Servers"]) == expect
        assert all(s["Voter"] for s in conf["Servers"])
        assert [s["Address"] for s in conf["Servers"] if s["Leader"]] == [leader.server_addr]
    # Every server registered its own node, once, in the one catalog.
    c.wait_converged()
    for a in c:
        nodes = sorted(n["Node"] for n in a.get("/v1/catalog/nodes?stale").json())
        assert nodes == sorted(x.node_name for x in c)


def test_registration_on_a_follower_is_visible_everywhere_within_a_second(make_cluster):
    """Registered on a follower (forwarded) and, for comparison, on the leader: visible over
    DNS and HTTP ?stale on all three servers within a second (the bench measures the
    milliseconds: tests/bench/cluster.sh)."""
    c = make_cluster(3).start()
    leader = c.wait_leader()
    f = c.followers(leader)[0]
    timings = {"follower": [], "leader": []}
    for i in range(8):
        origin, where = (f, "follower") if i % 2 == 0 else (leader, "leader")
        name = "web%d" % i
        ip = "10.9.0.%d" % (i + 1)
        t0 = time.monotonic()
        register(origin, name + "-1", name, ip)
        t_ack = time.monotonic()
        seen = {}
        while len(seen) < 2 * len(c.agents) and time.monotonic() - t0 < 5:
            for a in c:
                if ("dns", a.addr) not in seen and dns_a(a, name + ".service.consul") == [ip]:
                    seen[("dns", a.addr)] = time.monotonic() - t0
                if ("http", a.addr) not in seen:
                    r = a.get("/v1/catalog/service/%s?stale" % name, timeout=2)
                    if r.status == 200 and [s["ServiceAddress"] for s in r.json()] == [ip]:
                        seen[("http", a.addr)] = time.monotonic() - t0
        assert len(seen) == 2 * len(c.agents), "not visible everywhere in 5 s: %s" % seen
        worst = max(seen.values())
        timings[where].append(worst)
        print("registration %d on the %s: acknowledged in %.1f ms, visible on all three "
              "(DNS and HTTP ?stale) after %.1f ms" % (i, where, (t_ack - t0) * 1e3,
                                                        worst * 1e3))
        assert worst < 1.0, seen
    for where, ts in timings.items():
        print("registered on the %s: visible everywhere after median %.1f ms, max %.1f ms" % (
            where, statistics.median(ts) * 1e3, max(ts) * 1e3))


def test_reads_on_followers_in_every_consistency_mode(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    for i, f in enumerate(c.followers(leader)):
        r = f.put("/v1/kv/read/%d" % i, "value-%d" % i)
        assert r.status == 200 and r.body == b"true", r.text
        widx = r.index
        # Read-your-write on the follower that took it, and on every server, in every mode.
        for a in c:
            for mode in ("", "?stale", "?consistent"):
                r = a.get("/v1/kv/read/%d%s" % (i, mode))
                if mode == "?stale" and r.status == 404:  # another follower may lag a beat
                    r = wait_until(lambda: (lambda x: x if x.status == 200 else None)(
                        a.get("/v1/kv/read/%d?stale" % i)), timeout=5)
                assert r.status == 200, (a.addr, mode, r.status, r.text)
                assert r.json()[0]["ModifyIndex"] == widx
                assert r.headers["X-Consul-KnownLeader"] == "true", (a.addr, mode)
                assert int(r.headers["X-Consul-LastContact"]) < 5000
                assert r.index >= widx
    # ?stale&consistent is refused on followers too.
    assert c.followers(leader)[0].get("/v1/kv/read/0?stale&consistent").status == 400
    # A default read on a follower sees a write acknowledged by another server at once.
    f1, f2 = c.followers(leader)
    for n in range(20):
        assert f1.put("/v1/kv/ryw", str(n)).status == 200
        for a in (f2, leader):
            for mode in ("", "?consistent"):
                r = a.get("/v1/kv/ryw?raw" + ("&consistent" if mode else ""))
                assert r.status == 200 and r.body == str(n).encode(), (a.addr, mode, r.body)


# ---- kill -9 of the leader under load --------------------------------------------------------

def test_kill9_leader_under_writes_five_times(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    register(leader, "probe-1", "probe", "10.7.7.7")
    wait_until(lambda: all(dns_a(a, "probe.service.consul") == ["10.7.7.7"] for a in c),
               timeout=5, msg="probe service in DNS everywhere")

    w = Writers(c.live, n=4, prefix="w").start()
    recovery = []
    dns_counts = []
    try:
        for rnd in range(5):
            leader = c.wait_leader(timeout=30)
            survivors = [a for a in c if a is not leader]
            # writes flowing through the old leader: some acknowledged by it in this round
            t_round = time.monotonic()
            wait_until(lambda: w.acked_since(t_round, leader.addr) >= 5, timeout=20,
                       msg="writes acknowledged by the leader %s" % leader.addr)
            probe = DnsProbe(survivors, "probe.service.consul", ["10.7.7.7"]).start()
            acked_before = len(w.acked)
            t_kill = time.monotonic()
            leader.kill9()
            new_leader = c.wait_leader(among=survivors, timeout=20)
            t_elected = time.monotonic() - t_kill
            wait_until(lambda: w.first_ack_after(t_kill) is not None, timeout=20,
                       msg="a write acknowledged after the kill")
            # DNS keeps answering once writes do: a few more rounds of queries on the survivors
            q0 = probe.queries()
            wait_until(lambda: probe.queries() >= q0 + 5 * len(survivors), timeout=20,
                       msg="DNS probe rounds after the first acknowledged write")
            probe.stop()
            first = w.first_ack_after(t_kill)
            recovery.append(first)
            dns_counts.append(probe.ok)
            print("round %d: killed %s (acked so far %d); new leader %s seen after %.0f ms; "
                  "first acknowledged write %.0f ms after the kill; DNS on survivors %d ok, "
                  "%d failed" % (rnd, leader.addr, acked_before, new_leader.addr,
                                 t_elected * 1e3, first * 1e3, probe.ok, len(probe.failures)))
            assert not probe.failures, probe.failures[:10]
            assert probe.ok > 0
            leader.restart()
            c.wait_leader(among=c.agents, timeout=30)  # back in: all three agree
    finally:
        w.stop()
    print("first acknowledged write after the kill: median %.0f ms, max %.0f ms; %d acked, "
          "%d unknown" % (statistics.median(recovery) * 1e3, max(recovery) * 1e3,
                          len(w.acked), len(w.unknown)))
    assert len(w.acked) > 100
    assert statistics.median(recovery) < 5.0  # the target (about 1 s) is measured by bench
    digests = c.wait_converged(timeout=30)
    assert len({d["Digest"] for d in digests.values()}) == 1
    assert_all_present(c, w.acked, "w")
    for a in c:
        a.wait_ready(timeout=10)


# ---- a partition by SIGSTOP ----------------------------------------------------------------

@pytest.mark.parametrize("stop_leader", [True, False], ids=["leader-stopped",
                                                            "leader-is-the-minority"])
def test_sigstop_majority_then_sigcont(make_cluster, stop_leader):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    register(leader, "probe-1", "probe", "10.7.7.8")
    before = {}
    for i in range(20):
        a = c[i % 3]
        assert a.put("/v1/kv/before/%d" % i, "b%d" % i).status == 200
        before["before/%d" % i] = ("b%d" % i, 0, 0, a.addr)
    c.wait_converged()
    followers = c.followers(leader)
    if stop_leader:
        stopped, minority = [leader, followers[0]], followers[1]
    else:
        stopped, minority = followers, leader
    for a in stopped:
        a.sigstop()
    t_stop = time.monotonic()
    try:
        # The minority acknowledges no write (each fails or times out, bounded).
        results = {}
        for i in range(4):
            key = "part/%d" % i
            t0 = time.monotonic()
            try:
                r = minority.put("/v1/kv/" + key, "p%d" % i, timeout=10)
                results[key] = (r.status, r.text[:100])
            except OSError as e:
                results[key] = (None, repr(e)[:100])
            print("write %s on the minority: %s after %.2f s" % (
                key, results[key], time.monotonic() - t0))
        assert all(st != 200 for st, _ in results.values()), results
        # ?stale reads and DNS still answer on the minority, from its replica.
        r = minority.get("/v1/kv/before/?recurse&stale", timeout=5)
        assert r.status == 200 and len(r.json()) == 20
        assert r.headers["X-Consul-KnownLeader"] in ("true", "false")
        assert dns_a(minority, "probe.service.consul") == ["10.7.7.8"]
        # A ?consistent read cannot be served without a quorum.
        try:
            r = minority.get("/v1/kv/before/1?consistent", timeout=10)
            assert r.status != 200, "consistent read served by a minority"
        except OSError:
            pass
        # Once it gave up on the leader, the minority says so.
        wait_until(lambda: minority.get("/v1/kv/before/1?stale").headers[
            "X-Consul-KnownLeader"] == "false", timeout=10, msg="KnownLeader false")
        print("partition held %.1f s" % (time.monotonic() - t_stop))
    finally:
        for a in stopped:
            if a.stopped:
                a.sigcont()
    t_cont = time.monotonic()
    c.wait_leader(timeout=30)
    # Writes work again, on every server.
    def put_ok(a, k):
        try:
            return a.put("/v1/kv/" + k, "after", timeout=5).status == 200
        except OSError:
            return False
    for i, a in enumerate(c):
        wait_until(lambda: put_ok(a, "after/%d" % i), timeout=20, interval=0.2,
                   msg="write on %s after SIGCONT" % a.addr)
    print("writes acknowledged on every server %.2f s after SIGCONT" % (time.monotonic() - t_cont))
    c.wait_converged()
    assert_all_present(c, before, "before")
    for a in c:
        have = kv_keys(a, "after")
        assert sorted(have) == ["after/0", "after/1", "after/2"]
        # Unacknowledged writes of the partition: present or not, but the same everywhere.
        print("%s: unacknowledged partition writes present: %s" % (
            a.addr, sorted(kv_keys(a, "part"))))


# ---- restarts and catch-up -----------------------------------------------------------------

def test_full_cluster_restart_keeps_everything(make_cluster):
    c = make_cluster(3).start()
    keys = {}
    for i in range(60):
        a = c[i % 3]
        assert a.put("/v1/kv/keep/%d" % i, "k%d" % i).status == 200
        keys["keep/%d" % i] = ("k%d" % i, 0, 0, a.addr)
    register(c[1], "svc-1", "svc", "10.8.0.1")
    c.wait_converged()
    # SIGTERM all three at once, then start all three at once.
    for a in c:
        a.proc.send_signal(15)
    for a in c:
        assert a.proc.wait(30) == 0, a.read_log()
        a.log.close()
    for a in c:
        a.restart()
    c.wait_leader(timeout=30)
    for a in c:
        a.wait_ready(timeout=30)
    c.wait_converged()
    assert_all_present(c, keys, "keep")
    for a in c:
        assert dns_a(a, "svc.service.consul") == ["10.8.0.1"]
        assert a.put("/v1/kv/after-restart", "x").status == 200


def test_kill9_of_all_three_under_writes_keeps_every_acknowledged_write(make_cluster):
    """A power cut: all three servers SIGKILLed at once while 4 clients write; after a
    restart every acknowledged write is on every server (fsync before every answer)."""
    c = make_cluster(3).start()
    for rnd in range(2):
        w = Writers(c.live, n=4, prefix="cut%d" % rnd).start()
        # the cut comes while writes flow: enough acknowledged, more in flight
        wait_until(lambda: len(w.acked) >= 60, timeout=30, msg="writes acknowledged")
        for a in c:
            a.proc.send_signal(9)
        for a in c:
            a.proc.wait(10)
            a.log.close()
        w.stop()
        print("round %d: %d acknowledged, %d unknown, then all three killed" % (
            rnd, len(w.acked), len(w.unknown)))
        assert len(w.acked) > 20
        for a in c:
            a.restart()
        c.wait_leader(timeout=30)
        c.wait_converged(timeout=30)
        assert_all_present(c, w.acked, "cut%d" % rnd)


@pytest.mark.parametrize("keep_node_id", [True], ids=["raft-and-catalog-wiped"])
def test_wiped_follower_catches_up_from_a_snapshot(make_cluster, keep_node_id):
    c = make_cluster(3, config=SNAP_CONFIG).start()
    leader = c.wait_leader()
    f = c.followers(leader)[0]
    keys = {}
    for i in range(150):
        a = c[i % 3]
        assert a.put("/v1/kv/snap/%d" % i, "s%d" % i).status == 200
        keys["snap/%d" % i] = ("s%d" % i, 0, 0, a.addr)
    assert f.stop() == 0
    f.log.close()
    f.wipe(keep_node_id=keep_node_id)
    # More writes while it is away: the log it missed was compacted into snapshots.
    for i in range(150, 300):
        a = c.live()[i % 2]
        assert a.put("/v1/kv/snap/%d" % i, "s%d" % i).status == 200
        keys["snap/%d" % i] = ("s%d" % i, 0, 0, a.addr)
    t0 = time.monotonic()
    f.restart()
    c.wait_leader(among=c.agents, timeout=30)
    digests = c.wait_converged(timeout=30)
    print("wiped server caught up in %.2f s: %s" % (time.monotonic() - t0, digests))
    assert_all_present(c, keys, "snap")
    log = f.read_log()
    assert "snapshot restored" in log, log[-3000:]
    conf = leader.raft_config()
    assert sorted(s["Address"] for s in conf["Servers"]) == sorted(a.server_addr for a in c)
    assert f.put("/v1/kv/after-wipe", "x").status == 200


@pytest.mark.parametrize("keep_node_id", [True, False], ids=["node-id-kept", "whole-dir-wiped"])
def test_wiped_server_rejoins_while_the_leader_holds_the_whole_log(make_cluster, keep_node_id):
    """Default snapshot settings: 100 writes stay in the leader's log, so the wiped server is
    caught up by log replication, not a snapshot. With its node-id kept, it comes back under its
    old id with an empty log (libraft alone would never catch it up: the leader keeps its old
    match_index); with its whole dir wiped, under a new id at the old address (a JOIN the
    leader used to refuse as an address conflict, while it went on sending the old id's
    traffic there)."""
    c = make_cluster(3).start()
    leader = c.wait_leader()
    f = c.followers(leader)[0]
    old_id = {s["Address"]: s["ID"] for s in leader.raft_config()["Servers"]}[f.server_addr]
    for i in range(100):
        assert c[i % 3].put("/v1/kv/wl/%d" % i, "w%d" % i).status == 200
    assert f.stop() == 0
    f.log.close()
    f.wipe(keep_node_id=keep_node_id)
    t0 = time.monotonic()
    f.restart()
    c.wait_converged(timeout=30)
    print("wiped server (%s) caught up in %.2f s" % (
        "node-id kept" if keep_node_id else "new node-id", time.monotonic() - t0))
    assert kv_keys(f, "wl") == {"wl/%d" % i: "w%d" % i for i in range(100)}
    wait_until(lambda: voters(leader) == {a.server_addr: True for a in c}, timeout=30,
               interval=0.2, msg="three voters again")
    ids = {s["Address"]: s["ID"] for s in leader.raft_config()["Servers"]}
    assert len(ids) == 3
    assert (ids[f.server_addr] == old_id) == keep_node_id
    log = leader.read_log()
    if keep_node_id:
        assert "its Raft state is gone" in log and "removing it to add it again" in log, log[-3000:]
    else:
        assert "removing the server id=%s that was there" % old_id in log, log[-3000:]
    assert f.put("/v1/kv/wl/after", "x").status == 200
    c.wait_converged()


# ---- membership -----------------------------------------------------------------------------

def voters(agent):
    conf = agent.raft_config()
    return {s["Address"]: s["Voter"] for s in conf["Servers"]}


def test_servers_join_leave_and_are_removed(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    for i in range(10):
        assert c[i % 3].put("/v1/kv/m/%d" % i, "m").status == 200
    # A 4th and a 5th server with -retry-join only: caught up, then voters.
    s4 = c.add_server()
    s5 = c.add_server()
    t0 = time.monotonic()
    wait_until(lambda: voters(leader) == {a.server_addr: True for a in c.agents + [s4, s5]},
               timeout=60, interval=0.2, msg="5 voters")
    print("4th and 5th servers voters after %.2f s" % (time.monotonic() - t0))
    # A 6th: standby (a non-voter), as 5 voters is the most.
    s6 = c.add_server()
    expect6 = {a.server_addr: True for a in c.agents + [s4, s5]}
    expect6[s6.server_addr] = False
    wait_until(lambda: voters(leader) == expect6, timeout=60, interval=0.2, msg="6th standby")
    print("configuration with a 6th server: %s" % voters(leader))
    for a in (s4, s5, s6):
        a.wait_ready(timeout=30)
    c.wait_converged(timeout=30)
    assert kv_keys(s6, "m") == {"m/%d" % i: "m" for i in range(10)}
    for a in c.live():
        assert sorted(a.get("/v1/status/peers").json()) == sorted(
            x.server_addr for x in c.agents + [s4, s5])

    # Every server's node name, on every server (each registers its node with the "consul"
    # service under the node ID its Raft id derives from).
    names = {a.server_addr: a.node_name for a in c.agents + [s4, s5, s6]}
    for a in c.agents + [s4, s5, s6]:
        wait_until(lambda: {x["Address"]: x["Node"] for x in a.raft_config()["Servers"]} == names,
                   timeout=10, interval=0.2, msg="node names in the raft configuration")

    # herald operator raft list-peers
    r = cli(s6, "operator", "raft", "list-peers")
    assert r.returncode == 0, r.stderr
    print(r.stdout)
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 7, r.stdout
    assert sum(" leader " in l for l in lines) == 1
    assert sum(l.rstrip().endswith("false") for l in lines[1:]) == 1  # the standby

    # herald leave on a follower: removed, and its process ends (exit 0).
    f = [a for a in c.followers(leader) if a in (s4, s5)][0]
    r = cli(f, "leave")
    assert r.returncode == 0, r.stderr
    assert f.proc.wait(30) == 0, f.read_log()
    wait_until(lambda: f.server_addr not in voters(leader), timeout=15, msg="follower removed")
    # Four voters left, and the standby is promoted to keep five... or stays standby:
    # consensus.h promotes a standby while fewer than 5 voters remain.
    wait_until(lambda: voters(leader).get(s6.server_addr) is True, timeout=30,
               msg="standby promoted after a voter left")

    # Started again with its data dir and -retry-join, the server that left rejoins (its own
    # last configuration still lists it: a removed server never gets the entry removing it).
    f.log.close()
    f.restart()
    # (a standby: five voters again since the standby was promoted)
    wait_until(lambda: voters(leader).get(f.server_addr) is False, timeout=30, interval=0.2,
               msg="the server that left is a member again")
    f.wait_ready(timeout=30)
    c.wait_converged(timeout=30)
    r = cli(f, "leave")
    assert r.returncode == 0, r.stderr
    assert f.proc.wait(30) == 0, f.read_log()
    wait_until(lambda: f.server_addr not in voters(leader), timeout=15, msg="left again")

    # herald leave on the leader: leadership moves first, then it is removed.
    old = c.wait_leader()
    r = cli(old, "leave")
    assert r.returncode == 0, r.stderr
    assert old.proc.wait(30) == 0, old.read_log()
    new = c.wait_leader(timeout=30)
    assert new is not old
    wait_until(lambda: old.server_addr not in voters(new), timeout=15, msg="old leader removed")
    assert new.put("/v1/kv/m/after-leave", "x").status == 200

    # remove-peer -address for a dead server.
    victim = [a for a in c.followers(new)][0]
    victim.kill9()
    r = cli(new, "operator", "raft", "remove-peer", "-address", victim.server_addr)
    assert r.returncode == 0, r.stderr
    assert victim.server_addr not in voters(new)
    remaining = sorted(a.server_addr for a in c.live())
    wait_until(lambda: all(sorted(voters(a)) == remaining for a in c.live()), timeout=15,
               msg="every server sees the same configuration")
    assert len(remaining) == 3
    for a in c.live():
        assert a.put("/v1/kv/m/final-%s" % a.addr, "x").status == 200
    c.wait_converged()

    # remove-peer -address of the leader itself: leadership moves first, then it goes.
    lead = c.wait_leader()
    other = [a for a in c.live() if a is not lead][0]
    r = cli(other, "operator", "raft", "remove-peer", "-address", lead.server_addr)
    assert r.returncode == 0, r.stderr
    rest = [a for a in c.live() if a is not lead]
    new2 = c.wait_leader(among=rest, timeout=30)
    assert lead.server_addr not in voters(new2)
    assert new2.put("/v1/kv/m/after-removing-the-leader", "x").status == 200
    assert lead.stop() == 0


def test_grow_to_five_remove_one_restart_three_at_once(make_cluster):
    """The issue's walk-through: add a fourth and fifth server, remove one, restart three
    at once: the cluster carries on with all its data."""
    c = make_cluster(3).start()
    keys = {}
    def write(a, k):
        assert a.put("/v1/kv/" + k, k).status == 200
        keys[k] = (k, 0, 0, a.addr)
    for i in range(30):
        write(c[i % 3], "grow/a%d" % i)
    s4, s5 = c.add_server(), c.add_server()
    leader = c.wait_leader()
    wait_until(lambda: sorted(a for a, v in voters(leader).items() if v) == sorted(
        a.server_addr for a in c.agents + [s4, s5]), timeout=60, interval=0.2, msg="5 voters")
    for a in (s4, s5):
        a.wait_ready(timeout=30)
    for i in range(30):
        write([s4, s5][i % 2], "grow/b%d" % i)
    # Remove one founder (not the leader) with remove-peer; stop its process.
    gone = c.followers(leader)[0]
    r = cli(s5, "operator", "raft", "remove-peer", "-address", gone.server_addr)
    assert r.returncode == 0, r.stderr
    assert gone.stop() == 0
    gone.log.close()
    rest = [a for a in c.all if a is not gone]
    wait_until(lambda: all(sorted(voters(a)) == sorted(x.server_addr for x in rest)
                           for a in rest), timeout=15, msg="4 servers everywhere")
    # Restart three of the four at once (including the leader): SIGTERM, then start.
    three = [a for a in rest if a is not s5][:2] + [s5]
    for a in three:
        a.proc.send_signal(15)
    for a in three:
        assert a.proc.wait(30) == 0, a.read_log()
        a.log.close()
    for a in three:
        a.restart()
    c.wait_leader(among=rest, timeout=30)
    for i in range(10):
        write(rest[i % 4], "grow/c%d" % i)
    c.wait_converged(among=rest)
    assert_all_present(c, keys, "grow", among=rest)
    for a in rest:
        assert sorted(voters(a)) == sorted(x.server_addr for x in rest)
