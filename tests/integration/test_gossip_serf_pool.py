"""gossip/'s engine in one pool with Debian's serf agent, both ways.

The engine is not wired into the agent yet, so it runs as tests/tools/gossip_node (ASan build,
made by `make integration`): one engine per process with gossip's LAN defaults, its member
events as JSON lines on stdout, commands on stdin. Each test starts a real `serf agent` on its
own loopback address and checks what each side makes of the other: members with their tags,
a kill -9 seen as failed, a graceful leave seen as left, user events, encryption. Every wait
is bounded; processes are stopped by pid.
"""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import ROOT, next_addr, sanitizer_env, wait_until
from herald_test.serf import serf_members

NODE = os.path.join(ROOT, "build", "asan", "tests", "tools", "gossip_node")
KEY = "AAECAwQFBgcICQoLDA0ODw=="
PORT = 7946


class GossipNode:
    """A gossip_node process; its JSON lines are collected by a reader thread."""

    def __init__(self, tmp_path, name, addr, join=None, key=None, tags=None, args=()):
        self.name, self.addr = name, addr
        argv = [NODE, "-node", name, "-bind", "%s:%d" % (addr, PORT)] + list(args)
        for k, v in (tags or {"role": "herald", "dc": "dc1"}).items():
            argv += ["-tag", "%s=%s" % (k, v)]
        if join:
            argv += ["-join", join]
        if key:
            argv += ["-encrypt", key]
        self.err = open(tmp_path / ("%s.err" % name), "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, env=sanitizer_env(), text=True)
        self.events = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait_event(lambda e: e["event"] == "started", 10, "started")

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            self.events.append(ev)

    def wait_event(self, pred, timeout, msg):
        return wait_until(lambda: next((e for e in list(self.events) if pred(e)), None),
                          timeout=timeout, msg="%s: %s" % (self.name, msg))

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def members(self):
        n = len(self.events)
        self.command("members")
        ev = wait_until(lambda: next((e for e in self.events[n:] if e["event"] == "members"),
                                     None), timeout=10, msg="members")
        return {m["name"]: m for m in ev["members"]}

    def stats(self):
        n = len(self.events)
        self.command("stats")
        return wait_until(lambda: next((e for e in self.events[n:] if e["event"] == "stats"),
                                       None), timeout=10, msg="stats")

    def member_event(self, kind, name):
        return [e for e in self.events if e["event"] == kind and e.get("name") == name]

    def stop(self):
        if self.proc.poll() is None:
            self.command("quit")
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.join(5)
        self.err.close()
        return self.proc.returncode


@pytest.fixture
def pool(tmp_path):
    assert os.path.exists(NODE), "build/asan/tests/tools/gossip_node is not built (make integration)"
    serfs, nodes = [], []

    class Pool:
        def serf(self, join=None, key=None, name="serf1", tags=None):
            addr = next_addr()
            log = open(tmp_path / ("%s.log" % name), "w")
            argv = ["serf", "agent", "-node", name, "-bind", "%s:%d" % (addr, PORT),
                    "-rpc-addr", "%s:7373" % addr, "-log-level", "debug", "-tag", "role=web"]
            for k, v in (tags or {}).items():
                argv += ["-tag", "%s=%s" % (k, v)]
            if join:
                argv += ["-join", join]
            if key:
                argv += ["-encrypt", key]
            p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            serfs.append((p, log))
            wait_until(lambda: name in serf_members(addr), timeout=10, msg="serf agent up")
            p.addr, p.log_path = addr, tmp_path / ("%s.log" % name)
            return p

        def node(self, name="h1", **kw):
            n = GossipNode(tmp_path, name, next_addr(), **kw)
            nodes.append(n)
            return n

    yield Pool()
    failures = []
    for n in nodes:
        rc = n.stop()
        if rc not in (0, -9):
            failures.append("%s exited %s: %s" % (n.name, rc,
                                                   (tmp_path / ("%s.err" % n.name)).read_text()))
    for p, log in serfs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        log.close()
    assert not failures, "\n".join(failures)


def both_list_each_other(serf, node):
    m = wait_until(lambda: (lambda ms: ms if ms.get(node.name, {}).get("status") == "alive"
                            else None)(serf_members(serf.addr)),
                   timeout=15, msg="serf lists %s alive" % node.name)
    assert m[node.name]["addr"] == "%s:%d" % (node.addr, PORT)
    assert m[node.name]["tags"] == {"role": "herald", "dc": "dc1"}
    ours = wait_until(lambda: (lambda ms: ms if ms.get("serf1", {}).get("status") == "alive"
                               else None)(node.members()),
                      timeout=15, msg="we list serf1 alive")
    assert ours["serf1"]["addr"] == serf.addr and ours["serf1"]["port"] == PORT
    assert ours["serf1"]["tags"] == {"role": "web"}
    assert ours[node.name]["status"] == "alive"
    # memberlist's six protocol numbers as Debian's serf sends them (ProtocolMin..DelegateCur:
    # memberlist 1..5, current 2; serf's delegate 2..5, current 5); ours are the same
    assert ours["serf1"]["vsn"] == [1, 5, 2, 2, 5, 5], ours["serf1"]
    assert ours[node.name]["vsn"] == [1, 5, 2, 2, 5, 5]


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_serf_joins_us_and_each_lists_the_other_with_tags(pool, key):
    node = pool.node(key=key)
    serf = pool.serf(join="%s:%d" % (node.addr, PORT), key=key)
    both_list_each_other(serf, node)
    text = serf.log_path.read_text()
    assert "[ERR]" not in text, text


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_we_join_serf_and_events_go_both_ways(pool, key):
    serf = pool.serf(key=key)
    node = pool.node(join="%s:%d" % (serf.addr, PORT), key=key)
    node.wait_event(lambda e: e["event"] == "joined" and e["n"] == 1, 10, "joined")
    both_list_each_other(serf, node)
    subprocess.run(["serf", "event", "-rpc-addr=%s:7373" % serf.addr, "from-serf", "p1"],
                   check=True, timeout=10, capture_output=True)
    ev = node.wait_event(lambda e: e["event"] == "user" and e["name"] == "from-serf", 10,
                         "serf's user event")
    assert ev["payload"] == "p1"
    node.command("event from-herald p2")
    wait_until(lambda: "user-event: from-herald" in serf.log_path.read_text(), timeout=10,
               msg="serf received our user event")


def test_we_detect_serf_kill9_as_failed(pool):
    serf = pool.serf()
    node = pool.node(join="%s:%d" % (serf.addr, PORT))
    both_list_each_other(serf, node)
    t0 = time.monotonic()
    serf.send_signal(signal.SIGKILL)
    serf.wait(10)
    # our LAN timings at two members: a probe (250 ms) then suspicion 4 x 250 ms; serf ~5-6 s
    node.wait_event(lambda e: e["event"] == "fail" and e["name"] == "serf1", 20,
                    "serf1 failed")
    print("herald detected serf's kill -9 in %.2f s" % (time.monotonic() - t0))
    assert node.members()["serf1"]["status"] == "failed"
    assert not node.member_event("leave", "serf1")


def test_we_see_serf_graceful_leave_as_left(pool):
    serf = pool.serf()
    node = pool.node(join="%s:%d" % (serf.addr, PORT))
    both_list_each_other(serf, node)
    subprocess.run(["serf", "leave", "-rpc-addr=%s:7373" % serf.addr], timeout=20,
                   capture_output=True)
    node.wait_event(lambda e: e["event"] == "leave" and e["name"] == "serf1", 20, "serf1 left")
    assert node.members()["serf1"]["status"] == "left"
    assert not node.member_event("fail", "serf1")
    serf.wait(20)


def test_serf_detects_our_kill9_as_failed(pool):
    serf = pool.serf()
    node = pool.node(join="%s:%d" % (serf.addr, PORT))
    both_list_each_other(serf, node)
    t0 = time.monotonic()
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(10)
    wait_until(lambda: serf_members(serf.addr).get("h1", {}).get("status") == "failed",
               timeout=20, msg="serf sees h1 failed")
    print("serf detected our kill -9 in %.2f s" % (time.monotonic() - t0))
    assert "EventMemberFailed: h1" in serf.log_path.read_text()


def test_serf_sees_our_graceful_leave_as_left(pool):
    serf = pool.serf()
    node = pool.node(join="%s:%d" % (serf.addr, PORT))
    both_list_each_other(serf, node)
    node.command("leave")
    node.wait_event(lambda e: e["event"] == "left", 10, "our leave done")
    wait_until(lambda: serf_members(serf.addr).get("h1", {}).get("status") == "left",
               timeout=10, msg="serf sees h1 left")
    text = serf.log_path.read_text()
    assert "EventMemberLeave: h1" in text
    assert "EventMemberFailed: h1" not in text
    assert node.proc.wait(15) == 0  # a clean exit under ASan/LSan


def test_serf_with_another_key_refuses_our_join(pool):
    serf = pool.serf(key=KEY)
    node = pool.node(join="%s:%d" % (serf.addr, PORT), key="AQEBAQEBAQEBAQEBAQEBAQ==")
    ev = node.wait_event(lambda e: e["event"] == "joined", 15, "join answered")
    assert ev["n"] == 0 and ev["status"] != 0
    assert "h1" not in serf_members(serf.addr)
    assert "serf1" not in node.members()


def test_serf_with_another_key_is_a_warning_naming_it(pool):
    # a wrong key is an operator's mistake: the engine says so at warn, naming the source
    node = pool.node(key="AQEBAQEBAQEBAQEBAQEBAQ==")
    serf = pool.serf(key=KEY)
    out = subprocess.run(["serf", "join", "-rpc-addr=%s:7373" % serf.addr,
                          "%s:%d" % (node.addr, PORT)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0, out.stdout
    err = node.err.name
    # serf dials from an unbound socket: its stream comes from 127.0.0.1, not its bind address
    wait_until(lambda: "no installed key could decrypt a stream from 127.0.0.1:"
               in open(err).read(), timeout=10, msg="the warn about serf's stream")
    assert " warn gossip: " in open(err).read()
    assert "serf1" not in node.members()


def test_we_join_serf_by_bare_address_at_our_own_port(pool):
    # memberlist's resolveAddr: no port means our own bind port (serf's is the same here)
    serf = pool.serf()
    node = pool.node(join=serf.addr)
    node.wait_event(lambda e: e["event"] == "joined" and e["n"] == 1, 10, "joined")
    both_list_each_other(serf, node)


def test_merge_hook_refuses_a_serf_of_another_dc(pool):
    # the merge hook (Consul's merge.go refusing a wrong datacenter): our join through a serf
    # tagged dc=dc2 is refused whole (BASE_EACL, -1006) and serf1 is never listed
    serf = pool.serf(tags={"dc": "dc2"})
    node = pool.node(join=serf.addr, args=["-merge-dc", "dc1"])
    ev = node.wait_event(lambda e: e["event"] == "joined", 15, "join answered")
    assert ev["n"] == 0 and ev["status"] == -1006, ev
    text = open(node.err.name).read()
    assert "refused the push-pull of serf1: member 'serf1' part of wrong datacenter 'dc2'" in text
    assert "serf1" not in node.members()


def test_merge_hook_accepts_a_serf_of_our_dc(pool):
    serf = pool.serf(tags={"dc": "dc1"})
    node = pool.node(join=serf.addr, args=["-merge-dc", "dc1"])
    node.wait_event(lambda e: e["event"] == "joined" and e["n"] == 1, 15, "joined")
    wait_until(lambda: node.members().get("serf1", {}).get("status") == "alive", timeout=15,
               msg="we list serf1 alive")


def test_serf_stalled_then_resumed_is_failed_then_alive(pool):
    serf = pool.serf()
    node = pool.node(join="%s:%d" % (serf.addr, PORT))
    both_list_each_other(serf, node)
    serf.send_signal(signal.SIGSTOP)
    try:
        node.wait_event(lambda e: e["event"] == "fail" and e["name"] == "serf1", 20,
                        "stalled serf1 failed")
    finally:
        serf.send_signal(signal.SIGCONT)
    # serf learns it was declared dead (our reconnect push-pull, or its own, every 30 s at
    # most) and refutes with a higher incarnation
    node.wait_event(lambda e: e["event"] == "join" and e["name"] == "serf1"
                    and e["incarnation"] > 1, 45, "serf1 back alive")
    assert node.members()["serf1"]["status"] == "alive"
    assert serf_members(serf.addr)["h1"]["status"] == "alive"


def test_idle_bandwidth_per_member(pool):
    """Idle UDP bytes we send per second in a pool with one serf agent (issue 11's goal: at
    most twice serf's ~280 B/s per member)."""
    serf = pool.serf()
    node = pool.node(join="%s:%d" % (serf.addr, PORT))
    both_list_each_other(serf, node)
    s0, t0 = node.stats(), time.monotonic()
    wait_until(lambda: time.monotonic() - t0 >= 8, timeout=10, msg="8 s idle")
    s1, t1 = node.stats(), time.monotonic()
    rate = (s1["udp_bytes_out"] - s0["udp_bytes_out"]) / (t1 - t0)
    serf_rate = (s1["udp_bytes_in"] - s0["udp_bytes_in"]) / (t1 - t0)
    print("idle: we send %.0f B/s over UDP to one serf peer (%d packets); it sends us %.0f B/s"
          % (rate, s1["udp_out"] - s0["udp_out"], serf_rate))
    assert rate < 560, rate
    assert s1["udp_bad"] == 0 and s1["tcp_bad"] == 0


def test_two_serfs_and_us_detect_a_kill9_together(pool):
    """A pool of three: serf1, serf2 and our node. serf2 is killed: serf1 and we both mark it
    failed (the probes go through ping-req relays, ours answering serf's with nacks), and
    nobody healthy is ever accused. Then we force it to leave: left at serf1 too."""
    serf1 = pool.serf()
    node = pool.node(join="%s:%d" % (serf1.addr, PORT))
    both_list_each_other(serf1, node)
    serf2 = pool.serf(join="%s:%d" % (node.addr, PORT), name="serf2")
    wait_until(lambda: node.members().get("serf2", {}).get("status") == "alive", timeout=15,
               msg="we list serf2")
    wait_until(lambda: serf_members(serf1.addr).get("serf2", {}).get("status") == "alive",
               timeout=15, msg="serf1 lists serf2")
    t0 = time.monotonic()
    serf2.send_signal(signal.SIGKILL)
    serf2.wait(10)
    node.wait_event(lambda e: e["event"] == "fail" and e["name"] == "serf2", 25, "serf2 failed")
    ours = time.monotonic() - t0
    wait_until(lambda: serf_members(serf1.addr).get("serf2", {}).get("status") == "failed",
               timeout=25, msg="serf1 sees serf2 failed")
    print("kill -9 of serf2 detected by us in %.2f s, by serf1 within %.2f s"
          % (ours, time.monotonic() - t0))
    assert not node.member_event("fail", "serf1")
    assert serf_members(serf1.addr)["h1"]["status"] == "alive"
    text = serf1.log_path.read_text()
    assert "EventMemberFailed: h1" not in text and "[ERR]" not in text, text
    # Consul's force-leave from our side: serf2 becomes left at serf1 too
    node.command("force-leave serf2")
    node.wait_event(lambda e: e["event"] == "leave" and e.get("name") == "serf2", 10,
                    "serf2 left here")
    wait_until(lambda: serf_members(serf1.addr).get("serf2", {}).get("status") == "left",
               timeout=10, msg="serf1 sees serf2 left")


def serf_query(serf, *args):
    out = subprocess.run(["serf", "query", "-rpc-addr=%s:7373" % serf.addr, "-timeout=2s",
                          "-format=json"] + list(args), capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_serf_query_is_acked_by_us_when_it_names_us(pool):
    serf = pool.serf()
    node = pool.node(join="%s:%d" % (serf.addr, PORT))
    both_list_each_other(serf, node)
    assert "h1" in serf_query(serf, "q-all", "x")["Acks"]
    assert "h1" in serf_query(serf, "-node", "h1", "q-us", "x")["Acks"]
    assert "h1" not in serf_query(serf, "-node", "serf1", "q-not-us", "x")["Acks"]
    assert node.stats()["udp_bad"] == 0


def test_our_node_stalled_then_resumed_is_failed_then_alive(pool):
    """SIGSTOP of our node past serf's suspicion timeout: serf marks it failed; after SIGCONT
    it learns it was declared dead, refutes, and serf lists it alive again, while the
    stalled node itself never marks the healthy serf agent failed (Lifeguard's promise)."""
    serf = pool.serf()
    node = pool.node(join="%s:%d" % (serf.addr, PORT))
    both_list_each_other(serf, node)
    node.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: serf_members(serf.addr).get("h1", {}).get("status") == "failed",
                   timeout=20, msg="serf sees the stalled h1 failed")
    finally:
        node.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: serf_members(serf.addr).get("h1", {}).get("status") == "alive",
               timeout=45, msg="serf sees h1 alive again")
    assert node.stats()["refutes"] >= 1
    assert not node.member_event("fail", "serf1")
    assert node.members()["serf1"]["status"] == "alive"
