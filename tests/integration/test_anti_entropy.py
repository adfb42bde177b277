"""The agent's local state and anti-entropy (issue 12, item 2), through the real binary:

- services and checks registered through /v1/agent/ or a config file belong to the agent; a
  catalog entry of them removed behind its back comes back, and an entry of this node that the
  agent does not own is removed (serfHealth and a server's "consul" service stay);
- a node deregistered behind its back comes back with its services;
- a restarted agent owns what its config and DATA/local/state say (no duplicates), and a
  service deregistered through the agent is not brought back;
- a check's output alone is not written more often than check_update_interval;
- /v1/agent/self's Stats.agent and the log tell when a sync fails and why.

ae_interval is set short ("1s") so that full passes happen within the tests; every wait is
bounded."""
import json
import os

from conftest import wait_until
from herald_test.cluster import Cluster

AE = {"ae_interval": "1s"}


def services(agent):
    r = agent.get("/v1/catalog/node/%s" % agent.node_name)
    if r.status == 404:
        return set()
    assert r.status == 200, r.text
    return set((r.json() or {}).get("Services", {}))


def checks(agent):
    r = agent.get("/v1/health/node/%s" % agent.node_name)
    assert r.status == 200, r.text
    return {c["CheckID"]: c for c in r.json()}


def stats(agent):
    return agent.get("/v1/agent/self").json()["Stats"]["agent"]


def log_of(agent):
    with open(agent.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def passes_after(agent, n):
    """Waits (bounded) until a full pass that started after now has ended."""
    start = stats(agent)["sync_passes"]
    wait_until(lambda: stats(agent)["sync_passes"] >= start + n, timeout=15,
               msg="%d anti-entropy passes" % n)


def test_entries_removed_behind_its_back_come_back(make_agent):
    a = make_agent(config=AE).start()
    assert a.put("/v1/agent/service/register",
                 {"Name": "web", "ID": "web1", "Port": 80, "Tags": ["v1"],
                  "Check": {"CheckID": "web1-ttl", "TTL": "60s"}}).status == 200
    assert a.put("/v1/agent/check/register", {"Name": "disk", "TTL": "60s"}).status == 200
    assert a.put("/v1/agent/check/pass/disk?note=fine").status == 200
    repairs = stats(a)["sync_repairs"]
    # behind its back: the catalog endpoints
    assert a.put("/v1/catalog/deregister",
                 {"Node": a.node_name, "ServiceID": "web1"}).json() is True
    assert a.put("/v1/catalog/deregister", {"Node": a.node_name, "CheckID": "disk"}).json()
    assert "web1" not in services(a) and "disk" not in checks(a)
    wait_until(lambda: "web1" in services(a) and {"web1-ttl", "disk"} <= set(checks(a)),
               timeout=15, msg="web1 and its check, and disk, registered again")
    svc = a.get("/v1/catalog/service/web").json()
    assert [(s["ServiceID"], s["ServicePort"], s["ServiceTags"]) for s in svc] == \
        [("web1", 80, ["v1"])]
    # the TTL check comes back with the status and output it last had
    disk = checks(a)["disk"]
    assert (disk["Status"], disk["Output"]) == ("passing", "fine")
    assert stats(a)["sync_repairs"] >= repairs + 2
    assert "anti-entropy: registering missing service web1" in log_of(a)


def test_a_changed_service_is_registered_again(make_agent):
    a = make_agent(config=AE).start()
    assert a.put("/v1/agent/service/register", {"Name": "web", "ID": "web1", "Port": 80}).status \
        == 200
    assert a.put("/v1/catalog/register",
                 {"Node": a.node_name, "Address": a.addr,
                  "Service": {"Service": "web", "ID": "web1", "Port": 9999}}).json() is True
    wait_until(lambda: a.get("/v1/catalog/service/web").json()[0]["ServicePort"] == 80,
               timeout=15, msg="web1's port back to 80")


def test_entries_it_does_not_own_are_removed(make_agent):
    a = make_agent(config=AE).start()
    assert a.put("/v1/catalog/register",
                 {"Node": a.node_name, "Address": a.addr,
                  "Service": {"Service": "stray", "ID": "stray1", "Port": 1},
                  "Check": {"CheckID": "stray-check", "Name": "stray", "Status": "passing"}}
                 ).json() is True
    # another node's entries are not this agent's business
    assert a.put("/v1/catalog/register",
                 {"Node": "elsewhere", "Address": "10.0.0.2",
                  "Service": {"Service": "other", "Port": 2}}).json() is True
    wait_until(lambda: "stray1" not in services(a) and "stray-check" not in checks(a),
               timeout=15, msg="stray service and check removed")
    passes_after(a, 2)
    assert services(a) == {"consul"}
    assert set(checks(a)) == {"serfHealth"}
    assert [s["Node"] for s in a.get("/v1/catalog/service/other").json()] == ["elsewhere"]
    assert "deregistering service stray1, not this agent's" in log_of(a)


def test_a_node_deregistered_behind_its_back_comes_back(make_agent):
    a = make_agent(config=AE).start()
    assert a.put("/v1/agent/service/register", {"Name": "web", "ID": "web1"}).status == 200
    assert a.put("/v1/catalog/deregister", {"Node": a.node_name}).json() is True
    wait_until(lambda: a.get("/v1/catalog/node/%s" % a.node_name).status == 200 and
               {"web1", "consul"} <= services(a), timeout=15,
               msg="node, its consul service and web1 back")
    node = a.get("/v1/catalog/node/%s" % a.node_name).json()["Node"]
    assert node["Address"] == a.addr


def test_config_file_services_are_owned(make_agent):
    a = make_agent(config=dict(AE, services=[{"name": "redis", "id": "redis1", "port": 6379}])
                   ).start()
    wait_until(lambda: "redis1" in services(a), timeout=10, msg="redis1 registered")
    assert a.put("/v1/catalog/deregister",
                 {"Node": a.node_name, "ServiceID": "redis1"}).json() is True
    wait_until(lambda: "redis1" in services(a), timeout=15, msg="redis1 registered again")


def test_a_restarted_agent_owns_what_its_state_says(make_agent, tmpdir_path):
    data = os.path.join(tmpdir_path, "data")
    a = make_agent(data_dir=data, config=AE).start()
    assert a.put("/v1/agent/service/register", {"Name": "web", "ID": "web1"}).status == 200
    assert a.put("/v1/agent/service/register", {"Name": "api", "ID": "api1"}).status == 200
    assert a.put("/v1/agent/service/deregister/api1").status == 200
    assert os.path.exists(os.path.join(data, "local", "state"))
    assert a.stop() == 0
    b = make_agent(data_dir=data, addr=a.addr, config=AE).start()
    # web1 is still this agent's: removed behind its back, it comes back
    assert b.put("/v1/catalog/deregister",
                 {"Node": b.node_name, "ServiceID": "web1"}).json() is True
    wait_until(lambda: "web1" in services(b), timeout=15, msg="web1 registered again")
    passes_after(b, 2)
    assert services(b) == {"consul", "web1"}  # api1 stays gone, nothing twice
    assert [s["ServiceID"] for s in b.get("/v1/catalog/service/web").json()] == ["web1"]


def test_a_damaged_state_file_is_skipped(make_agent, tmpdir_path):
    data = os.path.join(tmpdir_path, "data")
    a = make_agent(data_dir=data, config=AE).start()
    assert a.put("/v1/agent/service/register", {"Name": "web", "ID": "web1"}).status == 200
    assert a.stop() == 0
    path = os.path.join(data, "local", "state")
    with open(path, "rb") as f:
        good = f.read()
    with open(path, "wb") as f:
        f.write(good + b"c\x7f\xff\xff\xffjunk")  # an entry longer than the file
    b = make_agent(data_dir=data, addr=a.addr, config=AE).start()
    assert "damaged entries skipped" in log_of(b)
    assert b.put("/v1/catalog/deregister",
                 {"Node": b.node_name, "ServiceID": "web1"}).json() is True
    wait_until(lambda: "web1" in services(b), timeout=15, msg="web1 (a good entry) back")
    assert b.stop() == 0
    with open(path, "wb") as f:
        f.write(b"not a state file at all")
    c = make_agent(data_dir=data, addr=a.addr, config=AE).start()
    assert "not a local state file" in log_of(c)


def test_output_alone_is_written_once_per_check_update_interval(make_agent):
    a = make_agent(config=dict(AE, check_update_interval="3s")).start()
    assert a.put("/v1/agent/check/register", {"Name": "ttl", "TTL": "60s"}).status == 200
    assert a.put("/v1/agent/check/pass/ttl?note=one").status == 200  # a status change: now
    assert checks(a)["ttl"]["Output"] == "one"
    index = a.get("/v1/agent/self").json()["Stats"]["raft"]["last_log_index"]
    assert a.put("/v1/agent/check/pass/ttl?note=two").status == 200
    assert a.put("/v1/agent/check/pass/ttl?note=three").status == 200
    # within the interval: no write, the catalog still says "one"
    assert checks(a)["ttl"]["Output"] == "one"
    assert a.get("/v1/agent/self").json()["Stats"]["raft"]["last_log_index"] == index
    # the latest output is written once the interval has passed
    wait_until(lambda: checks(a)["ttl"]["Output"] == "three", timeout=15,
               msg="deferred output written")
    # a status change is never deferred
    assert a.put("/v1/agent/check/warn/ttl?note=four").status == 200
    c = checks(a)["ttl"]
    assert (c["Status"], c["Output"]) == ("warning", "four")


def test_a_failed_sync_is_told_in_self_and_the_log(tmpdir_path):
    c = Cluster(tmpdir_path, 3, config=AE)
    try:
        c.start()
        a = c[0]
        wait_until(lambda: stats(a)["sync_passes"] >= 1, timeout=15, msg="a first pass")
        assert stats(a)["last_sync_error"] == ""
        for other in c[1:]:
            other.kill9()
        wait_until(lambda: stats(a)["sync_failures"] >= 1, timeout=30,
                   msg="a failed pass with no leader")
        st = stats(a)
        assert st["last_sync_error"].startswith("reading the catalog at the leader's index:"), st
        assert "anti-entropy: syncing node %s failed" % a.node_name in log_of(a)
    finally:
        failures = c.stop_all()
    assert not failures, failures
