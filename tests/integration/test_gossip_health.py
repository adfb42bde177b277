"""Dead hosts leave DNS (issue 11): the leader turns gossip membership into the catalog.

Three real servers on their own loopback addresses (and a Debian serf agent posing as a Consul
client): a member that fails (kill -9, SIGSTOP past the suspicion timeout) gets its serfHealth
check critical, so its services leave `dig`, `?passing` and SRV answers on every server; one
that comes back is passing again; one that leaves gracefully is deregistered. Killing the
leader itself is covered by the new leader's full pass after its barrier. Detection times are
printed (for the record, not asserted: speed is measured in tests/bench). Every wait is bounded.
"""
import subprocess
import time
import uuid

from conftest import dig, next_addr, wait_until


def register_web(agent, port=80):
    r = agent.put("/v1/agent/service/register", {"Name": "web", "Port": port})
    assert r.status == 200, r.text


def web_addrs(server):
    return sorted(dig(server, "+short", "web.service.consul").split())


def serf_health(server, node):
    r = server.get("/v1/health/node/%s?stale" % node)
    if r.status != 200:
        return None
    for c in r.json():
        if c["CheckID"] == "serfHealth":
            return c["Status"]
    return None


def passing_nodes(server):
    r = server.get("/v1/health/service/web?passing&stale")
    return sorted(e["Node"]["Node"] for e in r.json())


def test_a_killed_server_leaves_dns_on_every_server_and_comes_back(make_cluster):
    c = make_cluster(3).start()
    victim = c.followers()[0]
    others = [a for a in c if a is not victim]
    for a in c:
        register_web(a)
    everyone = sorted(a.addr for a in c)
    for a in c:
        wait_until(lambda: web_addrs(a) == everyone, timeout=20, msg="web on %s" % a.addr)

    victim.kill9()
    t0 = time.monotonic()
    rest = sorted(a.addr for a in others)
    for a in others:
        wait_until(lambda: web_addrs(a) == rest, timeout=30,
                   msg="the dead host out of DNS on %s" % a.addr)
    print("kill -9 -> out of DNS on both survivors: %.2f s" % (time.monotonic() - t0))
    for a in others:
        assert serf_health(a, victim.node_name) == "critical"
        assert passing_nodes(a) == sorted(x.node_name for x in others)
        srv = dig(a, "+short", "SRV", "web.service.consul")
        assert victim.node_name not in srv and srv.count("\n") == 2, srv
    # the node and its service stay in the catalog (only its health changed)
    r = others[0].get("/v1/catalog/service/web")
    assert sorted(e["Node"] for e in r.json()) == sorted(a.node_name for a in c)

    victim.restart()
    for a in others:
        wait_until(lambda: web_addrs(a) == everyone, timeout=30,
                   msg="the host back in DNS on %s" % a.addr)
        assert serf_health(a, victim.node_name) == "passing"
    victim.wait_ready(timeout=30)


def test_a_killed_leader_is_marked_by_the_new_leader(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    for a in c:
        register_web(a)
    everyone = sorted(a.addr for a in c)
    for a in c:
        wait_until(lambda: web_addrs(a) == everyone, timeout=20, msg="web on %s" % a.addr)
    leader.kill9()
    t0 = time.monotonic()
    others = [a for a in c if a is not leader]
    new = c.wait_leader(among=others, timeout=30)
    assert new is not leader
    rest = sorted(a.addr for a in others)
    for a in others:
        wait_until(lambda: web_addrs(a) == rest, timeout=30,
                   msg="the dead leader out of DNS on %s" % a.addr)
    print("kill -9 of the leader -> out of DNS: %.2f s" % (time.monotonic() - t0))
    assert serf_health(new, leader.node_name) == "critical"


def test_a_stalled_server_is_failed_then_back(make_cluster):
    c = make_cluster(3).start()
    victim = c.followers()[0]
    others = [a for a in c if a is not victim]
    register_web(victim)
    wait_until(lambda: web_addrs(others[0]) == [victim.addr], timeout=20, msg="web registered")
    victim.sigstop()
    try:
        for a in others:
            wait_until(lambda: serf_health(a, victim.node_name) == "critical", timeout=30,
                       msg="the stalled member critical on %s" % a.addr)
            assert web_addrs(a) == []
    finally:
        victim.sigcont()
    for a in others:
        wait_until(lambda: serf_health(a, victim.node_name) == "passing", timeout=30,
                   msg="the member passing again on %s" % a.addr)
        wait_until(lambda: web_addrs(a) == [victim.addr], timeout=10,
                   msg="web back on %s" % a.addr)


def test_a_graceful_leave_deregisters_the_node(make_cluster):
    c = make_cluster(3).start()
    leaver = c.followers()[0]
    others = [a for a in c if a is not leaver]
    register_web(leaver)
    wait_until(lambda: web_addrs(others[0]) == [leaver.addr], timeout=20, msg="web registered")
    r = leaver.put("/v1/agent/leave", timeout=30)
    assert r.status == 200, r.text
    assert leaver.proc.wait(30) == 0
    for a in others:
        wait_until(lambda: leaver.node_name not in [
            n["Node"] for n in a.get("/v1/catalog/nodes?stale").json()], timeout=30,
            msg="node deregistered on %s" % a.addr)
        assert web_addrs(a) == []
        ms = {m["Name"]: m["Status"] for m in a.get("/v1/agent/members").json()}
        assert ms[leaver.node_name] == 3  # left
        cfg = a.raft_config()
        assert sorted(s["Address"] for s in cfg["Servers"]) == sorted(
            x.server_addr for x in others)


def test_a_serf_agent_tagged_as_a_consul_client_is_registered_and_failed(make_cluster, tmp_path):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    node_id = str(uuid.uuid4())
    addr = next_addr()
    log = open(tmp_path / "serf.log", "w")
    tags = ["-tag", "role=node", "-tag", "dc=dc1", "-tag", "id=" + node_id, "-tag",
            "build=1.0.0:abc", "-tag", "vsn=2"]
    serf = subprocess.Popen(["serf", "agent", "-node", "client1", "-bind", "%s:8301" % addr,
                             "-rpc-addr", "%s:7373" % addr, "-join", "%s:8301" % c[0].addr]
                            + tags, stdout=log, stderr=subprocess.STDOUT)
    plain = subprocess.Popen(["serf", "agent", "-node", "plain1", "-bind", "%s:8301" % next_addr(),
                              "-rpc-addr", "%s:7373" % next_addr(), "-join", "%s:8301" % c[1].addr,
                              "-tag", "role=web"], stdout=log, stderr=subprocess.STDOUT)
    try:
        for a in c:
            wait_until(lambda: serf_health(a, "client1") == "passing", timeout=30,
                       msg="client1 registered on %s" % a.addr)
        node = leader.get("/v1/catalog/node/client1").json()["Node"]
        assert node["Address"] == addr and node["ID"] == node_id
        r = leader.put("/v1/catalog/register", {"Node": "client1", "Address": addr,
                                               "Service": {"Service": "web", "Port": 81}})
        assert r.status == 200, r.text
        for a in c:
            wait_until(lambda: web_addrs(a) == [addr], timeout=20, msg="web on client1")
        # a serf agent that is not a Consul agent is a member, never a catalog node
        wait_until(lambda: "plain1" in {m["Name"] for m in leader.get("/v1/agent/members").json()},
                   timeout=20, msg="plain1 in the pool")
        serf.kill()
        serf.wait(10)
        for a in c:
            wait_until(lambda: web_addrs(a) == [], timeout=30, msg="client1 out of DNS")
        r = leader.get("/v1/catalog/node/plain1")
        assert r.status == 200 and r.json() is None  # as Consul: no such node
    finally:
        for p in (serf, plain):
            if p.poll() is None:
                p.kill()
                p.wait(10)
        log.close()


def test_the_periodic_pass_marks_nodes_the_pool_does_not_know(make_cluster):
    """A catalog node whose serfHealth says passing but that no member of the pool is (its agent
    died while every server was down, so nobody remembers it) is set critical by the leader's
    full pass once two passes in a row missed it; a pool member's own node is left alone."""
    c = make_cluster(3, config={"reconcile_interval": "1s"}).start()
    leader = c.wait_leader()
    r = leader.put("/v1/catalog/register", {
        "Node": "ghost", "Address": "192.0.2.77",
        "Service": {"Service": "web", "Port": 80},
        "Check": {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing"}})
    assert r.status == 200, r.text
    assert serf_health(leader, "ghost") == "passing"
    for a in c:
        wait_until(lambda: serf_health(a, "ghost") == "critical", timeout=20,
                   msg="ghost critical on %s" % a.addr)
        assert web_addrs(a) == []
        for m in c:
            assert serf_health(a, m.node_name) == "passing"


def test_force_leave_of_a_dead_server_removes_it_from_raft_and_the_catalog(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    victim = c.followers(leader)[0]
    others = [a for a in c if a is not victim]
    victim.kill9()
    wait_until(lambda: serf_health(leader, victim.node_name) == "critical", timeout=30,
               msg="the dead server critical")
    r = leader.put("/v1/agent/force-leave/" + victim.node_name)
    assert r.status == 200, r.text
    for a in others:
        wait_until(lambda: {m["Name"]: m["Status"] for m in a.get(
            "/v1/agent/members").json()}[victim.node_name] == 3, timeout=20,
            msg="left on %s" % a.addr)
        wait_until(lambda: sorted(s["Address"] for s in (a.raft_config() or {}).get(
            "Servers", [])) == sorted(x.server_addr for x in others), timeout=20,
            msg="removed from Raft on %s" % a.addr)
        wait_until(lambda: victim.node_name not in [
            n["Node"] for n in a.get("/v1/catalog/nodes?stale").json()], timeout=20,
            msg="node deregistered on %s" % a.addr)
    # a write still commits with two voters
    assert leader.put("/v1/kv/after-force-leave", "x").status == 200
