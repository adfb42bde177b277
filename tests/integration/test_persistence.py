"""-server -bootstrap-expect 1 -data-dir D keeps registrations, checks and KV across restarts,
graceful or kill -9."""
import os


def _populate(a):
    assert a.put("/v1/agent/service/register",
                 {"Name": "db", "ID": "db1", "Port": 5432, "Tags": ["primary"],
                  "Check": {"TTL": "60s", "Status": "passing"}}).status == 200
    assert a.put("/v1/kv/cfg/x", b"42").json() is True
    assert a.put("/v1/catalog/register",
                 {"Node": "ext", "Address": "10.0.0.9",
                  "Service": {"Service": "cache", "Port": 11211}}).json() is True


def _check(a):
    assert a.get("/v1/kv/cfg/x?raw").body == b"42"
    svc = a.get("/v1/catalog/service/db").json()
    assert [s["ServiceID"] for s in svc] == ["db1"]
    assert svc[0]["ServiceTags"] == ["primary"]
    assert a.get("/v1/agent/checks").json()["service:db1"]["Status"] == "passing"
    assert [s["Node"] for s in a.get("/v1/catalog/service/cache").json()] == ["ext"]


def test_restart_keeps_everything(make_agent, tmpdir_path):
    data = os.path.join(tmpdir_path, "data")
    a = make_agent(data_dir=data).start()
    _populate(a)
    index_before = a.get("/v1/kv/cfg/x").index
    node_id = a.get("/v1/agent/self").json()["Config"]["NodeID"]
    assert a.stop() == 0
    b = make_agent(data_dir=data, addr=a.addr).start()
    _check(b)
    assert b.get("/v1/kv/cfg/x").index == index_before
    assert b.get("/v1/agent/self").json()["Config"]["NodeID"] == node_id
    # writes continue with growing indexes
    assert b.put("/v1/kv/cfg/y", b"1").json() is True
    assert b.get("/v1/kv/cfg/y").index > index_before


def test_kill_9_keeps_every_acknowledged_write(make_agent, tmpdir_path):
    data = os.path.join(tmpdir_path, "data")
    a = make_agent(data_dir=data).start()
    _populate(a)
    for i in range(200):
        assert a.put("/v1/kv/seq/%03d" % i, str(i).encode()).json() is True
    a.kill9()
    b = make_agent(data_dir=data, addr=a.addr).start()
    _check(b)
    keys = b.get("/v1/kv/seq/?keys").json()
    assert len(keys) == 200
    assert b.get("/v1/kv/seq/199?raw").body == b"199"


def test_restart_after_many_writes_with_snapshots(make_agent, tmpdir_path):
    data = os.path.join(tmpdir_path, "data")
    cfg = {"raft_snapshot_threshold": 64, "raft_trailing_logs": 64}
    a = make_agent(data_dir=data, config=cfg).start()
    for i in range(300):
        assert a.put("/v1/kv/s/%d" % i, b"v").json() is True
    assert any(f.startswith("snapshot") for f in os.listdir(os.path.join(data, "raft")))
    a.kill9()
    b = make_agent(data_dir=data, addr=a.addr, config=cfg).start()
    assert len(b.get("/v1/kv/s/?keys").json()) == 300
