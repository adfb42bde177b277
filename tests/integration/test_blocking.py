"""Blocking queries: parked until a commit moves the index past ?index, or until ?wait."""
import threading
import time


def _bg(fn):
    out = {}

    def run():
        t0 = time.time()
        out["r"] = fn()
        out["t"] = time.time() - t0
    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_kv_blocking_query_wakes_on_write(agent):
    agent.put("/v1/kv/w", b"1")
    idx = agent.get("/v1/kv/w").index
    t, out = _bg(lambda: agent.get("/v1/kv/w?index=%d&wait=20s" % idx, timeout=30))
    agent.wait_parked(1)
    assert t.is_alive(), "query returned before any change"
    t_write = time.time()
    agent.put("/v1/kv/w", b"2")
    t.join(10)
    woke_after = time.time() - t_write
    assert not t.is_alive()
    r = out["r"]
    assert r.status == 200 and r.index > idx
    assert r.json()[0]["ModifyIndex"] > idx
    assert woke_after < 0.5, "woke %.3fs after the write" % woke_after


def test_blocking_query_returns_after_wait_when_nothing_changes(agent):
    agent.put("/v1/kv/q", b"1")
    idx = agent.get("/v1/kv/q").index
    t0 = time.time()
    r = agent.get("/v1/kv/q?index=%d&wait=1s" % idx, timeout=10)
    took = time.time() - t0
    assert r.status == 200 and r.index == idx
    assert 0.9 < took < 2.5


def test_write_to_other_key_does_not_return_single_key_query(agent):
    agent.put("/v1/kv/mine", b"1")
    idx = agent.get("/v1/kv/mine").index
    t, out = _bg(lambda: agent.get("/v1/kv/mine?index=%d&wait=2s" % idx, timeout=10))
    agent.wait_parked(1)
    agent.put("/v1/kv/other", b"x")
    t.join(10)
    # the query only answers when its own answer's index moves (or at the wait)
    assert out["t"] > 1.5 and out["r"].index == idx


def test_health_blocking_wakes_on_check_status_change(agent):
    agent.put("/v1/agent/service/register",
              {"Name": "api", "Port": 1, "Check": {"TTL": "60s", "Status": "passing"}})
    r = agent.get("/v1/health/service/api?passing")
    assert len(r.json()) == 1
    t, out = _bg(lambda: agent.get("/v1/health/service/api?passing&index=%d&wait=20s" % r.index,
                                   timeout=30))
    agent.wait_parked(1)
    agent.put("/v1/agent/check/fail/service:api")
    t.join(10)
    assert out["r"].json() == []
    assert out["t"] < 2


def test_catalog_blocking_wakes_on_registration_and_delete(agent):
    r = agent.get("/v1/catalog/services")
    t, out = _bg(lambda: agent.get("/v1/catalog/services?index=%d&wait=20s" % r.index, timeout=30))
    agent.wait_parked(1)
    agent.put("/v1/agent/service/register", {"Name": "late", "Port": 2})
    t.join(10)
    assert "late" in out["r"].json()
    idx = out["r"].index
    t, out = _bg(lambda: agent.get("/v1/catalog/services?index=%d&wait=20s" % idx, timeout=30))
    agent.wait_parked(1)
    agent.put("/v1/agent/service/deregister/late")
    t.join(10)
    assert "late" not in out["r"].json()


def test_many_parked_queries_all_wake(agent):
    agent.put("/v1/kv/fan", b"0")
    idx = agent.get("/v1/kv/fan").index
    threads = [_bg(lambda: agent.get("/v1/kv/fan?index=%d&wait=20s" % idx, timeout=30))
               for _ in range(50)]
    agent.wait_parked(50)
    agent.put("/v1/kv/fan", b"1")
    for t, out in threads:
        t.join(10)
        assert out["r"].status == 200 and out["r"].index > idx
