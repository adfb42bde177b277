"""Debian's python3-consul, unchanged, against Herald."""
import consul


def client(agent, **kw):
    return consul.Consul(host=agent.addr, port=8500, **kw)


def test_agent_service_register_health_catalog(agent):
    c = client(agent)
    assert c.agent.service.register("web", service_id="web1", address="10.0.0.5", port=80,
                                    tags=["v1"], check=consul.Check.ttl("30s")) is True
    assert c.agent.check.ttl_pass("service:web1", notes="up") is True
    assert "web1" in c.agent.services()
    index, services = c.catalog.services()
    assert int(index) > 0 and services["web"] == ["v1"]
    index, nodes = c.catalog.service("web")
    assert nodes[0]["ServiceAddress"] == "10.0.0.5"
    index, entries = c.health.service("web", passing=True)
    assert len(entries) == 1 and entries[0]["Service"]["Port"] == 80
    assert c.agent.check.ttl_fail("service:web1") is True
    index, entries = c.health.service("web", passing=True)
    assert entries == []
    index, checks = c.health.checks("web")
    assert checks[0]["Status"] == "critical"
    index, state = c.health.state("critical")
    assert any(x["CheckID"] == "service:web1" for x in state)
    index, nodes = c.catalog.nodes()
    assert any(n["Node"] == agent.node_name for n in nodes)
    index, node = c.catalog.node(agent.node_name)
    assert "web1" in node["Services"]
    assert c.agent.check.register("disk", check=consul.Check.ttl("10s")) is True
    assert "disk" in c.agent.checks()
    assert c.agent.check.deregister("disk") is True
    assert "disk" not in c.agent.checks()
    assert c.agent.service.deregister("web1") is True
    assert "web1" not in c.agent.services()


def test_http_and_tcp_checks_register(agent):
    c = client(agent)
    assert c.agent.service.register("h", port=1, check=consul.Check.http(
        "http://%s:1/" % agent.addr, "10s", timeout="1s")) is True
    assert c.agent.service.register("t", port=1, check=consul.Check.tcp(
        agent.addr, 1, "10s")) is True
    checks = c.agent.checks()
    assert checks["service:h"]["Type"] == "http"
    assert checks["service:t"]["Type"] == "tcp"


def test_catalog_register_deregister(agent):
    c = client(agent)
    assert c.catalog.register("ext", "10.9.9.9", service={"service": "pg", "port": 5432},
                              check={"CheckID": "pg", "Name": "pg", "Status": "passing",
                                     "ServiceID": "pg"}) is True
    index, nodes = c.catalog.service("pg")
    assert nodes[0]["Node"] == "ext"
    assert c.catalog.deregister("ext") is True
    index, nodes = c.catalog.service("pg")
    assert nodes == []


def test_kv(agent):
    c = client(agent)
    assert c.kv.put("foo", "bar") is True
    index, data = c.kv.get("foo")
    assert data["Value"] == b"bar"
    assert c.kv.put("foo", "baz", cas=data["ModifyIndex"]) is True
    assert c.kv.put("foo", "qux", cas=data["ModifyIndex"]) is False
    assert c.kv.put("dir/a", "1", flags=7) is True
    index, data = c.kv.get("dir/", recurse=True)
    assert [d["Key"] for d in data] == ["dir/a"] and data[0]["Flags"] == 7
    index, keys = c.kv.get("", keys=True)
    assert keys == ["dir/a", "foo"]
    # blocking get returns at the wait with the same index when nothing changes
    index, data = c.kv.get("foo")
    index2, data = c.kv.get("foo", index=index, wait="1s")
    assert index2 == index and data["Value"] == b"baz"
    assert c.kv.delete("dir", recurse=True) is True
    index, data = c.kv.get("dir/a")
    assert data is None
    index, data = c.kv.get("foo", consistency="consistent")
    assert data["Value"] == b"baz"
    index, data = c.kv.get("foo", consistency="stale")
    assert data["Value"] == b"baz"


def test_status(agent):
    c = client(agent)
    assert c.status.leader() == "%s:8300" % agent.addr
    assert c.status.peers() == ["%s:8300" % agent.addr]
    assert c.agent.self()["Config"]["NodeName"] == agent.node_name
    assert c.agent.members()[0]["Name"] == agent.node_name
