"""The agent's LAN gossip pool (issue 11): real herald servers on their own loopback addresses,
and Debian's serf agent as a foreign member.

- servers find each other through the pool: -retry-join names one member's gossip address,
  -bootstrap-expect counts the servers the pool's tags announce, and a server with no join
  address of its own joins Raft after `herald join`;
- /v1/agent/members and `herald members` list every member with Consul's tags and status;
- a serf agent joins Herald's pool and each lists the other;
- -retry-max gives up with Consul's message; a bad join address is refused.

Every wait is bounded; every process is stopped by pid.
"""
import json
import os
import signal
import subprocess
import uuid

import pytest

from conftest import HERALD, ROOT, next_addr, sanitizer_env, wait_until
from herald_test.cluster import ClusterAgent
from herald_test.serf import serf_members


GOSSIP_NODE = os.path.join(ROOT, "build", "asan", "tests", "tools", "gossip_node")


def members(agent):
    r = agent.get("/v1/agent/members", timeout=5)
    assert r.status == 200, r.text
    return {m["Name"]: m for m in r.json()}


def cli(agent, *args):
    return subprocess.run([HERALD] + list(args) + ["-http-addr", "%s:8500" % agent.addr],
                          capture_output=True, text=True, timeout=30, env=sanitizer_env())


def voters(agent):
    cfg = agent.raft_config()
    return sorted(s["Address"] for s in cfg["Servers"]) if cfg else None


@pytest.fixture
def servers(tmpdir_path):
    """servers(joins_of_each, expect) -> started ClusterAgents (not waited for)."""
    started = []

    def factory(addrs, joins, expect):
        for addr in addrs:
            a = ClusterAgent(tmpdir_path, addr, joins(addr), expect)
            started.append(a)
            a.start(wait=False)
        return started[-len(addrs):]

    yield factory
    failures = []
    for a in started:
        if a.alive():
            rc = a.stop(timeout=30)
            if rc != 0:
                failures.append("%s exited %s:\n%s" % (a.addr, rc, a.read_log()))
    assert not failures, "\n".join(failures)


def test_servers_form_one_cluster_from_one_gossip_address(servers):
    addrs = [next_addr() for _ in range(3)]
    # Each server names only the first one's gossip address (the first names itself): the
    # others' server ports come from the pool's tags.
    agents = servers(addrs, lambda a: [addrs[0]], 3)
    want = sorted("%s:8300" % a for a in addrs)
    for a in agents:
        wait_until(lambda: voters(a) == want, timeout=30, msg="3 voters on %s" % a.addr)
        a.wait_ready(timeout=30)
    for a in agents:
        ms = wait_until(lambda: (lambda m: m if len(m) == 3 and all(
            x["Status"] == 1 for x in m.values()) else None)(members(a)), timeout=20,
            msg="3 alive members on %s" % a.addr)
        me = ms[a.node_name]
        assert me["Addr"] == a.addr and me["Port"] == 8301
        tags = me["Tags"]
        assert tags["role"] == "consul" and tags["dc"] == "dc1" and tags["port"] == "8300"
        assert tags["expect"] == "3" and tags["vsn"] == "2" and tags["segment"] == ""
        assert len(tags["id"]) == 36 and tags["build"].startswith("0.")
        assert me["ProtocolCur"] == 2 and me["DelegateCur"] >= 4
    # /v1/agent/self's Member is this agent's own entry of the pool
    self_member = agents[1].get("/v1/agent/self").json()["Member"]
    assert self_member["Name"] == agents[1].node_name and self_member["Status"] == 1

    # A fourth server with no join address waits; `herald join` puts it in the pool, and the
    # pool gives it a server to join Raft through.
    fourth = servers([next_addr()], lambda a: [], 0)[0]
    wait_until(lambda: cli(fourth, "members").returncode == 0, timeout=20,
               msg="the fourth server's HTTP API")
    assert len(members(fourth)) == 1
    r = cli(fourth, "join", addrs[1])
    assert r.returncode == 0, r.stderr
    assert "Successfully joined cluster by contacting 1 nodes." in r.stdout
    want4 = sorted(want + ["%s:8300" % fourth.addr])
    wait_until(lambda: voters(agents[0]) == want4, timeout=30, msg="the fourth server a voter")
    fourth.wait_ready(timeout=30)

    wait_until(lambda: len(members(agents[0])) == 4, timeout=20, msg="4 members on the first")
    # herald members: Consul's columns, servers first, then by name
    r = cli(agents[0], "members")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC",
                                "Partition", "Segment"]
    rows = [l.split() for l in lines[1:]]
    assert [row[0] for row in rows] == sorted(a.node_name for a in agents + [fourth])
    for row in rows:
        assert row[2:] == ["alive", "server", row[4], "2", "dc1", "default", "<all>"], row
        assert ":" not in row[4]  # the build tag cut at ':'
    r = cli(agents[0], "members", "-detailed")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split() == ["Node", "Address",
                                                                      "Status", "Tags"]
    assert "role=consul" in r.stdout and "port=8300" in r.stdout
    assert cli(agents[0], "members", "-status", "failed").returncode == 2
    assert cli(agents[0], "members", "-status", "al.ve").returncode == 0


def test_members_query_rules(agent):
    r = agent.get("/v1/agent/members?wan=1&segment=x")
    assert r.status == 400 and r.text.strip() == "Cannot provide a segment with wan=true"
    assert agent.get("/v1/agent/members?wan=1").json() == []  # no WAN pool yet
    assert agent.get("/v1/agent/members?segment=other").json() == []
    ms = agent.get("/v1/agent/members?segment=_all").json()
    assert [m["Name"] for m in ms] == [agent.node_name]


def test_join_refuses_bad_addresses_and_reports_failure(agent):
    r = agent.put("/v1/agent/join/host:notaport")
    assert r.status == 400 and "host:notaport" in r.text
    # nobody listens there: the join fails with 500, the agent lives on
    r = agent.put("/v1/agent/join/%s:1" % next_addr(), timeout=30)
    assert r.status == 500 and r.text.startswith("Error joining the cluster"), r.text
    r = agent.put("/v1/agent/join/%s?wan=1" % next_addr())
    assert r.status == 500
    assert agent.get("/v1/agent/members").status == 200


def test_retry_max_gives_up(tmpdir_path):
    a = ClusterAgent(tmpdir_path, next_addr(), [next_addr()], 0,
                     args=["-retry-max", "2", "-retry-interval", "100ms"])
    a.start(wait=False)
    rc = a.proc.wait(60)
    assert rc == 1
    assert "agent: max join LAN retry exhausted, exiting" in a.read_log()


def test_serf_agent_joins_the_pool_and_each_lists_the_other(agent, tmp_path):
    serf_addr = next_addr()
    log = open(tmp_path / "serf.log", "w")
    serf = subprocess.Popen(["serf", "agent", "-node", "serf1", "-bind", "%s:8301" % serf_addr,
                             "-rpc-addr", "%s:7373" % serf_addr, "-join", "%s:8301" % agent.addr,
                             "-tag", "role=web"], stdout=log, stderr=subprocess.STDOUT)
    try:
        ms = wait_until(lambda: (lambda m: m if "serf1" in m else None)(members(agent)),
                        timeout=20, msg="serf1 among the agent's members")
        assert ms["serf1"]["Tags"] == {"role": "web"} and ms["serf1"]["Status"] == 1
        theirs = wait_until(lambda: (lambda m: m if agent.node_name in m else None)(
            serf_members(serf_addr)), timeout=20, msg="the agent among serf's members")
        assert theirs[agent.node_name]["status"] == "alive"
        assert theirs[agent.node_name]["tags"]["role"] == "consul"
        r = cli(agent, "members")
        row = next(l.split() for l in r.stdout.splitlines() if l.startswith("serf1"))
        assert row[2:] == ["alive", "unknown"]  # not a Consul agent: no build, dc, ...
        # a graceful leave of serf (its SIGINT) is seen as left
        serf.send_signal(signal.SIGINT)
        serf.wait(20)
        wait_until(lambda: members(agent)["serf1"]["Status"] == 3, timeout=20,
                   msg="serf1 left")
    finally:
        if serf.poll() is None:
            serf.kill()
            serf.wait(10)
        log.close()


def test_force_leave_turns_a_failed_member_left(agent, tmp_path):
    serf_addr = next_addr()
    log = open(tmp_path / "serf.log", "w")
    serf = subprocess.Popen(["serf", "agent", "-node", "serf2", "-bind", "%s:8301" % serf_addr,
                             "-rpc-addr", "%s:7373" % serf_addr, "-join", "%s:8301" % agent.addr],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "serf2" in members(agent), timeout=20, msg="serf2 joined")
        serf.kill()
        serf.wait(10)
        wait_until(lambda: members(agent)["serf2"]["Status"] == 4, timeout=30,
                   msg="serf2 failed")
        r = cli(agent, "force-leave", "serf2")
        assert r.returncode == 0, r.stderr
        wait_until(lambda: members(agent)["serf2"]["Status"] == 3, timeout=10, msg="serf2 left")
        r = cli(agent, "force-leave", "-prune", "serf2")
        assert r.returncode == 0, r.stderr
        wait_until(lambda: "serf2" not in members(agent), timeout=10, msg="serf2 pruned")
    finally:
        if serf.poll() is None:
            serf.kill()
            serf.wait(10)
        log.close()


def test_an_outsider_announcing_itself_a_server_is_not_counted(make_cluster, tmp_path):
    """Without a key the pool is open: a member claiming role=consul from an address nobody
    joined through and outside -join-allow takes no part in formation (README: the gossip
    pool)."""
    c = make_cluster(3, args=["-join-allow", "127.0.0.1/32"])
    c[0].start(wait=False)
    c[1].start(wait=False)
    wait_until(lambda: len(c[0].json_or_none("/v1/agent/members") or []) == 2, timeout=20,
               msg="two founders in the pool")
    outsider = next_addr()
    err = open(tmp_path / "outsider.err", "w")
    tags = {"role": "consul", "dc": "dc1", "id": str(uuid.uuid4()), "port": "8300", "vsn": "2",
            "build": "1.0.0:x", "expect": "3"}
    argv = [GOSSIP_NODE, "-node", "intruder", "-bind", "%s:8301" % outsider, "-join",
            "%s:8301" % c[0].addr]
    for k, v in tags.items():
        argv += ["-tag", "%s=%s" % (k, v)]
    node = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                            env=sanitizer_env())
    try:
        for a in c.agents[:2]:
            wait_until(lambda: "server intruder at %s is not counted" % outsider in a.read_log(),
                       timeout=20, msg="the refusal on %s" % a.addr)
        c[2].start(wait=False)
        leader = c.wait_leader(timeout=30)
        assert voters(leader) == sorted(a.server_addr for a in c)
    finally:
        node.kill()
        node.wait(10)
        err.close()


def test_a_restarted_agent_rejoins_its_pool_from_its_snapshot(servers):
    """DATA/serf/local.snapshot (Consul's -rejoin): a server that joined by `herald join` and
    was restarted with no join address rejoins the pool by itself; one that left does not,
    unless -rejoin."""
    a, = servers([next_addr()], lambda _: [], 1)
    a.wait_ready(timeout=30)
    b, = servers([next_addr()], lambda _: [], 0)
    wait_until(lambda: b.json_or_none("/v1/agent/members") is not None, timeout=20,
               msg="b's HTTP API")
    assert cli(b, "join", a.addr).returncode == 0
    wait_until(lambda: voters(a) == sorted([a.server_addr, b.server_addr]), timeout=30,
               msg="b a voter")
    snap = os.path.join(b.data_dir, "serf", "local.snapshot")
    wait_until(lambda: os.path.exists(snap) and ("alive: %s %s:8301" % (a.node_name, a.addr))
               in open(snap).read(), timeout=10, msg="a in b's snapshot")
    assert b.stop(timeout=30) == 0
    b.restart()
    wait_until(lambda: (b.json_or_none("/v1/agent/members") or []) and len(members(b)) == 2,
               timeout=20, msg="b back in the pool")
    assert "Attempting re-join to 1 previously known node(s)" in b.read_log()
    wait_until(lambda: members(a)[b.node_name]["Status"] == 1, timeout=20, msg="b alive on a")
    # after a graceful leave, a restart does not rejoin by itself
    assert cli(b, "leave").returncode == 0
    assert b.proc.wait(30) == 0
    wait_until(lambda: "leave" in open(snap).read().split("\n"), timeout=10, msg="leave marker")
    b.restart()
    wait_until(lambda: "Ignoring previous join state" in b.read_log(), timeout=20,
               msg="b does not rejoin")
    assert len(wait_until(lambda: b.json_or_none("/v1/agent/members"), timeout=20,
                          msg="b's HTTP API")) == 1


def test_encrypted_pool_takes_a_serf_agent_with_the_key_and_refuses_one_without(make_agent,
                                                                               tmp_path):
    key = "AAECAwQFBgcICQoLDA0ODw=="
    a = make_agent(args=["-encrypt", key]).start()
    procs = []
    log = open(tmp_path / "serf.log", "w")
    try:
        good, bad = next_addr(), next_addr()
        for name, addr, extra in (("keyed", good, ["-encrypt", key]), ("plain", bad, [])):
            procs.append(subprocess.Popen(
                ["serf", "agent", "-node", name, "-bind", "%s:8301" % addr, "-rpc-addr",
                 "%s:7373" % addr, "-join", "%s:8301" % a.addr] + extra,
                stdout=log, stderr=subprocess.STDOUT))
        wait_until(lambda: "keyed" in members(a), timeout=20, msg="the keyed serf agent joined")
        theirs = wait_until(lambda: (lambda m: m if a.node_name in m else None)(
            serf_members(good)), timeout=20, msg="the agent among the keyed serf's members")
        assert theirs[a.node_name]["status"] == "alive"
        wait_until(lambda: "no installed key could decrypt" in a.read_log() or
                   "unencrypted" in a.read_log(), timeout=20, msg="the keyless one refused")
        assert "plain" not in members(a)
        assert a.node_name not in serf_members(bad)
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
        log.close()
