"""Client agents (issue 12, items 1, 2 and 4), through the real binary: three servers and three
clients (`herald agent` without -server, with -retry-join to the servers' gossip port) on
127.0.0.x.

- a client joins the pool as role=node, keeps no Raft state, and its catalog is a replica a
  server streams to it;
- a service registered on a client is in DNS on every agent; its reads, writes and DNS work
  through any server, and keep working when a server dies;
- kill -9 of the client takes its services out of DNS; a failing check on a client hides its
  instance; maintenance mode hides and restores it;
- a client cut off from every server keeps answering DNS and stale reads, and says how stale;
- a client restarted with its data dir owns what it registered (no duplicates), and its
  anti-entropy repairs an entry deregistered behind its back;
- -bootstrap-expect on a client is refused with Consul's text.

Every wait is bounded; every process is stopped by pid."""
import os
import subprocess

import pytest

from conftest import HERALD, dns_query, sanitizer_env, wait_until
from herald_test import paths
from herald_test.agent import Agent, next_addr
from herald_test.cluster import Cluster

AE = {"ae_interval": "1s"}


class ClientAgent(Agent):
    """`herald agent` without -server: -data-dir D -retry-join each server."""

    def __init__(self, tmp, joins, config=None, args=(), addr=None):
        addr = addr or next_addr()
        super().__init__(tmp, args=args, addr=addr, data_dir=os.path.join(tmp, "data-" + addr),
                         config=config)
        self.joins = list(joins)

    def argv(self):
        argv = [paths.HERALD, "agent", "-node", self.node_name, "-bind", self.addr,
                "-client", self.addr, "-data-dir", self.data_dir, "-retry-interval", "1s"]
        for j in self.joins:
            argv += ["-retry-join", j]
        return argv + self.config_argv() + self.extra

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


def a_records(agent, name):
    r = dns_query(agent, name, "A")
    return sorted(rr.address for rrset in r.answer for rr in rrset)


def register(agent, body):
    r = agent.put("/v1/agent/service/register", body)
    assert r.status == 200, r.text


@pytest.fixture
def pool(tmpdir_path):
    c = Cluster(tmpdir_path, 3, config=AE)
    clients = []
    try:
        c.start()
        for _ in range(3):
            clients.append(ClientAgent(tmpdir_path, c.addrs, config=AE))
            clients[-1].start()  # listed first: stopped at the end even if its start fails
        yield c, clients
    finally:
        failures = []
        for cl in clients:
            if cl.alive():
                rc = cl.stop()
                if rc != 0:
                    failures.append("client %s exited %s:\n%s" % (cl.addr, rc, cl.read_log()))
        failures += c.stop_all()
    assert not failures, "\n".join(failures)


def test_a_client_joins_as_a_node_and_keeps_no_raft_state(pool):
    servers, (c1, c2, c3) = pool
    members = {m["Name"]: m for m in servers[0].get("/v1/agent/members").json()}
    assert members[c1.node_name]["Tags"]["role"] == "node"
    assert members[c1.node_name]["Status"] == 1
    assert "port" not in members[c1.node_name]["Tags"]
    assert members[servers[0].node_name]["Tags"]["role"] == "consul"
    assert not os.path.exists(os.path.join(c1.data_dir, "raft"))
    self_ = c1.get("/v1/agent/self").json()
    assert self_["Config"]["Server"] is False
    # the leader's address, as a server says it
    assert c1.get("/v1/status/leader").json() == servers[0].get("/v1/status/leader").json()
    assert sorted(c1.get("/v1/status/peers").json()) == sorted(s.server_addr for s in servers)
    # herald members through the client
    r = subprocess.run([HERALD, "members", "-http-addr", "%s:8500" % c1.addr],
                       capture_output=True, text=True, timeout=30, env=sanitizer_env())
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith(c1.node_name))
    assert " client " in line and "alive" in line


def test_a_service_on_a_client_is_in_dns_everywhere(pool):
    servers, (c1, c2, c3) = pool
    register(c1, {"Name": "redis", "ID": "redis1", "Port": 6379,
                  "Check": {"CheckID": "redis-ttl", "TTL": "60s", "Status": "passing"}})
    # the client reads its own write at once
    assert [s["Node"] for s in c1.get("/v1/catalog/service/redis").json()] == [c1.node_name]
    for agent in list(servers) + [c1, c2, c3]:
        wait_until(lambda: a_records(agent, "redis.service.consul") == [c1.addr], timeout=10,
                   msg="redis in DNS on %s" % agent.addr)
    # Consul's consistency modes on a client
    for q in ("", "?stale", "?consistent"):
        r = c2.get("/v1/health/service/redis" + q)
        assert r.status == 200 and [e["Node"]["Node"] for e in r.json()] == [c1.node_name], q
        assert r.headers.get("X-Consul-LastContact") is not None
    # a KV write through a client, read on a server and on the other client
    assert c2.put("/v1/kv/from/client", b"v").json() is True
    assert servers[1].get("/v1/kv/from/client?raw").body == b"v"
    assert c1.get("/v1/kv/from/client?raw").body == b"v"


def test_kill_of_a_client_takes_its_services_out(pool):
    servers, (c1, c2, c3) = pool
    register(c1, {"Name": "web", "ID": "web1", "Port": 80})
    register(c2, {"Name": "web", "ID": "web2", "Port": 80})
    for agent in servers:
        wait_until(lambda: a_records(agent, "web.service.consul") == sorted([c1.addr, c2.addr]),
                   timeout=10, msg="both web instances on %s" % agent.addr)
    c1.kill9()
    for agent in list(servers) + [c2, c3]:
        wait_until(lambda: a_records(agent, "web.service.consul") == [c2.addr], timeout=20,
                   msg="the dead client's web out of DNS on %s" % agent.addr)


def test_a_failing_check_on_a_client_hides_the_instance_and_maintenance_too(pool):
    servers, (c1, c2, c3) = pool
    register(c1, {"Name": "api", "ID": "api1", "Port": 80,
                  "Check": {"CheckID": "api-ttl", "TTL": "60s", "Status": "passing"}})
    wait_until(lambda: a_records(servers[0], "api.service.consul") == [c1.addr], timeout=10,
               msg="api in DNS")
    assert c1.put("/v1/agent/check/fail/api-ttl").status == 200
    wait_until(lambda: a_records(servers[0], "api.service.consul") == [], timeout=10,
               msg="api hidden by its failing check")
    assert c1.put("/v1/agent/check/pass/api-ttl").status == 200
    wait_until(lambda: a_records(c2, "api.service.consul") == [c1.addr], timeout=10,
               msg="api back")
    assert c1.put("/v1/agent/service/maintenance/api1?enable=true").status == 200
    wait_until(lambda: a_records(c2, "api.service.consul") == [], timeout=10,
               msg="api hidden by maintenance")
    assert c1.put("/v1/agent/service/maintenance/api1?enable=false").status == 200
    wait_until(lambda: a_records(c2, "api.service.consul") == [c1.addr], timeout=10,
               msg="api restored")


def followed(client):
    """The server port address the client follows now (its log's last "following" line)."""
    with open(client.log_path, "rb") as f:
        lines = [ln for ln in f.read().decode("utf-8", "replace").splitlines()
                 if "client: following server " in ln]
    return lines[-1].rsplit(" ", 1)[1] if lines else None


def test_a_client_keeps_working_when_its_server_dies(pool):
    servers, (c1, c2, c3) = pool
    register(c1, {"Name": "db", "ID": "db1"})
    victim = servers.by_server_addr(wait_until(lambda: followed(c1), timeout=10,
                                               msg="the server c1 follows"))
    victim.kill9()
    servers.wait_leader(among=[s for s in servers if s is not victim])
    register(c1, {"Name": "db", "ID": "db2"})
    ids = sorted(s["ServiceID"] for s in c1.get("/v1/catalog/service/db").json())
    assert ids == ["db1", "db2"]
    wait_until(lambda: sorted(s["ServiceID"] for s in
                              c2.get("/v1/catalog/service/db?stale").json()) == ["db1", "db2"],
               timeout=10, msg="db2 on the other client")
    assert a_records(c1, "db.service.consul") == [c1.addr]
    wait_until(lambda: followed(c1) not in (None, victim.server_addr), timeout=10,
               msg="c1 follows another server")


def test_a_failing_script_check_on_a_client_hides_the_instance(pool, tmpdir_path):
    servers, _ = pool
    flag = os.path.join(tmpdir_path, "healthy")
    open(flag, "w").close()
    c = ClientAgent(tmpdir_path, servers.addrs, config=dict(AE, enable_script_checks=True))
    pool[1].append(c)
    c.start()
    register(c, {"Name": "batch", "ID": "batch1",
                 "Check": {"Args": ["/bin/test", "-e", flag], "Interval": "1s"}})
    wait_until(lambda: a_records(servers[0], "batch.service.consul") == [c.addr], timeout=15,
               msg="batch passing")
    os.unlink(flag)  # the script exits 1: warning, still answered (not only_passing)
    wait_until(lambda: c.get("/v1/agent/checks").json()["service:batch1"]["Status"] ==
               "warning", timeout=15, msg="batch warning")
    register(c, {"Name": "batch", "ID": "batch1",
                 "Check": {"Args": ["/bin/sh", "-c", "exit 2"], "Interval": "1s"}})
    wait_until(lambda: a_records(servers[0], "batch.service.consul") == [], timeout=15,
               msg="batch hidden by its critical script check")


def test_max_stale_bounds_what_dns_answers_without_servers(pool, tmpdir_path):
    servers, (c1, c2, c3) = pool
    strict = ClientAgent(tmpdir_path, servers.addrs,
                         config=dict(AE, dns_config={"max_stale": "2s"}))
    pool[1].append(strict)
    strict.start()
    register(c1, {"Name": "kv", "ID": "kv1"})
    wait_until(lambda: a_records(strict, "kv.service.consul") == [c1.addr], timeout=10,
               msg="kv on the strict client")
    for s in servers:
        s.kill9()

    def rcode(agent):
        return dns_query(agent, "kv.service.consul", "A").rcode()

    wait_until(lambda: rcode(strict) == 2, timeout=20, msg="SERVFAIL past max_stale")
    assert a_records(c2, "kv.service.consul") == [c1.addr]  # the default: 10 years
    with open(strict.log_path, "rb") as f:
        assert b"DNS answers SERVFAIL: no contact with the servers" in f.read()
    for s in servers:
        s.restart()
    servers.wait_leader()
    wait_until(lambda: rcode(strict) == 0 and a_records(strict, "kv.service.consul") ==
               [c1.addr], timeout=30, msg="the strict client answers again")


def test_a_client_cut_off_from_every_server_keeps_answering(pool):
    servers, (c1, c2, c3) = pool
    register(c1, {"Name": "cache", "ID": "cache1"})
    wait_until(lambda: a_records(c2, "cache.service.consul") == [c1.addr], timeout=10,
               msg="cache on c2")
    for s in servers:
        s.kill9()
    wait_until(lambda: int(c2.get("/v1/catalog/service/cache?stale").headers.get(
        "X-Consul-LastContact", "0")) > 1000, timeout=20, msg="c2 says it is stale")
    assert a_records(c2, "cache.service.consul") == [c1.addr]
    r = c2.get("/v1/catalog/service/cache?stale")
    assert r.status == 200 and [s["ServiceID"] for s in r.json()] == ["cache1"]
    # a default-consistency read needs the leader: it fails, it does not hang
    r = c2.get("/v1/catalog/service/cache", timeout=30)
    assert r.status == 500 and "No cluster leader" in r.text


def test_a_restarted_client_owns_what_it_registered(pool):
    servers, (c1, c2, c3) = pool
    register(c1, {"Name": "queue", "ID": "queue1"})
    assert c1.stop() == 0  # a client leaves on SIGTERM: the leader deregisters its node
    wait_until(lambda: servers[0].get("/v1/catalog/service/queue").json() == [], timeout=20,
               msg="queue gone with its node")
    c1b = ClientAgent(c1.tmp, c1.joins, config=AE, addr=c1.addr)
    pool[1][0] = c1b
    c1b.start()
    wait_until(lambda: [s["ServiceID"] for s in
                        servers[0].get("/v1/catalog/service/queue").json()] == ["queue1"],
               timeout=20, msg="queue1 registered again by the restarted client, once")
    # its anti-entropy repairs what is removed behind its back
    assert servers[2].put("/v1/catalog/deregister",
                          {"Node": c1b.node_name, "ServiceID": "queue1"}).json() is True
    wait_until(lambda: [s["ServiceID"] for s in
                        servers[0].get("/v1/catalog/service/queue").json()] == ["queue1"],
               timeout=20, msg="queue1 repaired")


def test_bootstrap_expect_on_a_client_is_refused(tmpdir_path):
    addr = next_addr()
    r = subprocess.run([HERALD, "agent", "-bind", addr, "-client", addr, "-data-dir",
                        os.path.join(tmpdir_path, "d"), "-bootstrap-expect", "3"],
                       capture_output=True, text=True, timeout=30, env=sanitizer_env())
    assert r.returncode == 1
    assert r.stderr.strip() == "herald agent: 'bootstrap_expect > 0' requires 'server = true'"
