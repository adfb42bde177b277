"""The KV store: Consul's GET/PUT/DELETE semantics, CAS, flags, listing, limits."""
import base64


def test_put_get_raw_and_shape(agent):
    r = agent.put("/v1/kv/app/config", b"hello")
    assert r.status == 200 and r.json() is True
    r = agent.get("/v1/kv/app/config")
    assert r.status == 200
    [e] = r.json()
    assert e["Key"] == "app/config"
    assert base64.b64decode(e["Value"]) == b"hello"
    assert e["Flags"] == 0 and e["LockIndex"] == 0
    assert e["CreateIndex"] == e["ModifyIndex"] == r.index
    assert agent.get("/v1/kv/app/config?raw").body == b"hello"
    missing = agent.get("/v1/kv/nope")
    assert missing.status == 404 and missing.index > 0


def test_binary_values_and_empty_value(agent):
    blob = bytes(range(256)) * 4
    assert agent.put("/v1/kv/bin", blob).json() is True
    assert agent.get("/v1/kv/bin?raw").body == blob
    assert agent.put("/v1/kv/empty", b"").json() is True
    assert agent.get("/v1/kv/empty").json()[0]["Value"] is None


def test_flags_and_update_keeps_create_index(agent):
    agent.put("/v1/kv/k?flags=42", b"a")
    first = agent.get("/v1/kv/k").json()[0]
    assert first["Flags"] == 42
    agent.put("/v1/kv/k", b"b")
    second = agent.get("/v1/kv/k").json()[0]
    assert second["CreateIndex"] == first["CreateIndex"]
    assert second["ModifyIndex"] > first["ModifyIndex"]
    assert second["Flags"] == 0


def test_cas(agent):
    assert agent.put("/v1/kv/c?cas=0", b"1").json() is True
    assert agent.put("/v1/kv/c?cas=0", b"2").json() is False  # exists already
    idx = agent.get("/v1/kv/c").json()[0]["ModifyIndex"]
    assert agent.put("/v1/kv/c?cas=%d" % (idx + 1000), b"3").json() is False
    assert agent.get("/v1/kv/c?raw").body == b"1"
    assert agent.put("/v1/kv/c?cas=%d" % idx, b"4").json() is True
    assert agent.get("/v1/kv/c?raw").body == b"4"
    idx = agent.get("/v1/kv/c").json()[0]["ModifyIndex"]
    assert agent.delete("/v1/kv/c?cas=%d" % (idx - 1)).json() is False
    assert agent.delete("/v1/kv/c?cas=%d" % idx).json() is True
    assert agent.get("/v1/kv/c").status == 404


def test_recurse_keys_separator_and_recursive_delete(agent):
    for k in ("a/1", "a/2", "a/b/3", "a/b/4", "b/5"):
        assert agent.put("/v1/kv/" + k, k.encode()).json() is True
    rec = agent.get("/v1/kv/a?recurse").json()
    assert [e["Key"] for e in rec] == ["a/1", "a/2", "a/b/3", "a/b/4"]
    assert agent.get("/v1/kv/a/?keys").json() == ["a/1", "a/2", "a/b/3", "a/b/4"]
    assert agent.get("/v1/kv/a/?keys&separator=/").json() == ["a/1", "a/2", "a/b/"]
    assert agent.get("/v1/kv/?keys&separator=/").json() == ["a/", "b/"]
    assert agent.get("/v1/kv/zzz?recurse").status == 404
    assert agent.delete("/v1/kv/a/b?recurse").json() is True
    assert agent.get("/v1/kv/?keys").json() == ["a/1", "a/2", "b/5"]
    assert agent.delete("/v1/kv/a/1").json() is True
    assert agent.get("/v1/kv/?keys").json() == ["a/2", "b/5"]


def test_escaped_keys(agent):
    assert agent.put("/v1/kv/sp%20ace/x%3Fy", b"v").json() is True
    [e] = agent.get("/v1/kv/sp%20ace/x%3Fy").json()
    assert e["Key"] == "sp ace/x?y"


def test_value_limit_512k(agent):
    ok = b"x" * (512 * 1024)
    assert agent.put("/v1/kv/big", ok).json() is True
    assert len(agent.get("/v1/kv/big?raw").body) == 512 * 1024
    r = agent.put("/v1/kv/big2", ok + b"y")
    assert r.status == 413
    assert "\n" not in r.text.strip()
    assert agent.get("/v1/kv/big2").status == 404


def test_bad_kv_parameters(agent):
    r = agent.put("/v1/kv/x?cas=abc", b"1")
    assert r.status == 400 and "cas" in r.text
    r = agent.put("/v1/kv/x?flags=-1", b"1")
    assert r.status == 400 and "flags" in r.text
    assert agent.get("/v1/kv/x").status == 404
    r = agent.put("/v1/kv/", b"1")
    assert r.status == 400 and "key" in r.text.lower()
    r = agent.get("/v1/kv/x?index=abc")
    assert r.status == 400 and "index" in r.text.lower()
    r = agent.get("/v1/kv/x?index=1&wait=forever")
    assert r.status == 400 and "wait" in r.text.lower()
