"""Lifeguard's promise with gossip/'s default (LAN) timings: no healthy member is marked failed
while another one loses packets or is stalled (issue 11, items 1 and 6).

Real gossip_node processes (ASan build, made by `make integration`), each pool in network
namespaces of the test's own: a hub namespace with a bridge (br0) carrying the healthy members'
addresses, and, for the lossy member, a namespace of its own whose eth0 is a veth on that
bridge, with an nftables table there dropping 30% of what it sends and of what it receives
(`numgen random mod 100 < 30 drop`; this kernel has no netem). Processes are started with
`ip netns exec` (which execs: the pid is the member's) and stopped by pid; the namespaces are
removed by name whatever the outcome. Every wait is bounded; nothing is asserted about speed.

  - a member losing 30% of its packets is never marked failed by anyone during LOSS_S seconds
    (it is suspected and refutes: Lifeguard's dynamic suspicion timeout and the buddy system),
    and neither is anyone else; afterwards every member lists every other one alive;
  - a SIGSTOPped member is marked failed by all the others once its suspicion runs out; after
    SIGCONT it refutes and is alive again everywhere; no other member is ever marked failed,
    by the others or by the stalled one when it wakes.
"""
import itertools
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import ROOT, sanitizer_env, wait_until

NODE = os.path.join(ROOT, "build", "asan", "tests", "tools", "gossip_node")
PORT = 7946
SUBNET = "10.213.0"
LOSS_S = 20
_counter = itertools.count()


def run(*argv, check=True, input=None):
    r = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=20)
    if check and r.returncode != 0:
        raise AssertionError("%s: %s" % (" ".join(argv), r.stderr.strip()))
    return r


class Lab:
    """The hub namespace (bridge br0, SUBNET.254/24) and members' own namespaces."""

    def __init__(self):
        self.tag = "hgl%d-%d" % (os.getpid() % 100000, next(_counter))
        self.hub = self.tag + "-hub"
        self.ns = []

    def create(self):
        run("ip", "netns", "add", self.hub)
        self.ns.append(self.hub)
        run("ip", "-n", self.hub, "link", "set", "lo", "up")
        run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.hub, "addr", "add", SUBNET + ".254/24", "dev", "br0")
        run("ip", "-n", self.hub, "link", "set", "br0", "up")

    def hub_addr(self, ip):
        run("ip", "-n", self.hub, "addr", "add", ip + "/32", "dev", "br0")

    def own_ns(self, ip):
        """A namespace whose eth0 (ip) is a veth on the hub's bridge; returns its name."""
        k = len(self.ns)
        ns = "%s-m%d" % (self.tag, k)
        run("ip", "netns", "add", ns)
        self.ns.append(ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", self.hub, "link", "add", "v%d" % k, "type", "veth", "peer", "name",
            "eth0", "netns", ns)
        run("ip", "-n", self.hub, "link", "set", "v%d" % k, "master", "br0")
        run("ip", "-n", self.hub, "link", "set", "v%d" % k, "up")
        run("ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        return ns

    def lose(self, ns, pct):
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

    def heal(self, ns):
        run("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "loss")

    def destroy(self):
        for ns in reversed(self.ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


class Member:
    """A gossip_node in a namespace; its JSON lines are collected by a reader thread."""

    def __init__(self, tmp_path, netns, name, addr, join=None):
        self.name, self.addr = name, addr
        argv = ["ip", "netns", "exec", netns, NODE, "-node", name, "-bind",
                "%s:%d" % (addr, PORT)]
        if join:
            argv += ["-join", "%s:%d" % (join, PORT)]
        self.err_path = tmp_path / ("%s.err" % name)
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, env=sanitizer_env(), text=True)
        self.events = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        wait_until(lambda: any(e["event"] == "started" for e in list(self.events)), timeout=10,
                   msg="%s started" % name)

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue

    def status(self):
        """name -> the last member event about it ("join", "fail", "leave")."""
        st = {}
        for e in list(self.events):
            if e["event"] in ("join", "fail", "leave"):
                st[e["name"]] = e["event"]
        return st

    def fails(self):
        return [e["name"] for e in list(self.events) if e["event"] == "fail"]

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stats(self):
        n = len(self.events)
        self.command("stats")
        return wait_until(lambda: next((e for e in self.events[n:] if e["event"] == "stats"),
                                       None), timeout=10, msg="%s stats" % self.name)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
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
def lab(tmp_path):
    assert os.path.exists(NODE), "build/asan/tests/tools/gossip_node is not built (make integration)"
    for tool in ("ip", "nft"):
        assert run("sh", "-c", "command -v " + tool, check=False).returncode == 0, \
            "%s missing: scripts/deps.sh installs it" % tool
    assert os.geteuid() == 0, "network namespaces need root (as test_partition_heal.py)"
    lab = Lab()
    members = []
    try:
        lab.create()

        def member(name, own_ns=False):
            i = len(members)
            ip = "%s.%d" % (SUBNET, 10 + i)
            if own_ns:
                ns = lab.own_ns(ip)
            else:
                ns = lab.hub
                lab.hub_addr(ip)
            m = Member(tmp_path, ns, name, ip, join=members[0].addr if members else None)
            m.netns = ns
            members.append(m)
            return m

        lab.member = member
        lab.members = members
        yield lab
    finally:
        failures = []
        for m in members:
            rc = m.stop()
            if rc != 0:
                failures.append("%s exited %s: %s" % (m.name, rc, m.err_path.read_text()[-3000:]))
        lab.destroy()
    assert not failures, "\n".join(failures)


def wait_converged(members, timeout=20):
    names = [m.name for m in members]
    wait_until(lambda: all(all(m.status().get(x) == "join" for x in names) for m in members),
               timeout=timeout, msg="every member lists every other alive")


def test_member_losing_30_percent_is_never_marked_failed(lab):
    healthy = [lab.member("h%d" % i) for i in range(4)]
    lossy = lab.member("lossy", own_ns=True)
    everyone = healthy + [lossy]
    wait_converged(everyone)
    lab.lose(lossy.netns, 30)
    # LOSS_S seconds of loss, watched all along: any member marked failed by anyone fails the
    # test at once (the wait succeeds only when the window is over with no failure)
    end = time.monotonic() + LOSS_S

    def window_over_without_failure():
        bad = {m.name: m.fails() for m in everyone if m.fails()}
        assert not bad, "marked failed during the loss: %s" % bad
        return time.monotonic() >= end

    wait_until(window_over_without_failure, timeout=LOSS_S + 10, interval=0.1,
               msg="%d s of 30%% loss" % LOSS_S)
    refutes = lossy.stats()["refutes"]
    print("the lossy member refuted %d suspicions in %d s" % (refutes, LOSS_S))
    lab.heal(lossy.netns)
    # the pool stayed whole: every member lists every other alive, and still nobody failed
    for m in everyone:
        assert all(m.status().get(x.name) == "join" for x in everyone), (m.name, m.status())
    assert not [m.fails() for m in everyone if m.fails()]


def test_stopped_member_fails_then_refutes_and_nobody_else_fails(lab):
    members = [lab.member("h%d" % i) for i in range(5)]
    wait_converged(members)
    stalled, others = members[-1], members[:-1]
    os.kill(stalled.proc.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: all(m.status().get(stalled.name) == "fail" for m in others),
                   timeout=30, msg="the stopped member marked failed by every other")
    finally:
        os.kill(stalled.proc.pid, signal.SIGCONT)
    wait_until(lambda: all(m.status().get(stalled.name) == "join" for m in others),
               timeout=30, msg="the woken member alive again everywhere")
    assert stalled.stats()["refutes"] >= 1
    wait_until(lambda: all(stalled.status().get(m.name) == "join" for m in others),
               timeout=10, msg="the woken member lists the others alive")
    # nobody but the stalled member was ever marked failed, by anyone (the stalled one too)
    wrong = {m.name: [x for x in m.fails() if x != stalled.name] for m in members}
    assert not any(wrong.values()), wrong
