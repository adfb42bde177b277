"""PUT /v1/txn (issue 13, items 3 and 5): Consul's KV transactions against real agents.

Consul's shapes ({"Results": [...], "Errors": null} and 409 {"Results": null, "Errors":
[{"OpIndex", "What"}]}), all or nothing with a failing op in the middle (nothing stored, the KV
index unchanged), a read-only transaction answered without Raft (every failing op listed,
?stale and ?consistent), locks in a transaction, Consul's limits (128 ops, 512 KiB body) and
every kind of bad input answered 400/413 with nothing stored, node, service, check and session
ops, a 3-server cluster where a transaction sent to a follower commits once for all, and a
client agent (no Raft) that forwards one. Debian's python3-consul (0.7.1) has no
Txn class: the same calls go over HTTP. Every wait is bounded."""
import base64
import json

import pytest


def b64(s):
    return base64.b64encode(s.encode()).decode()


def kv_op(verb, key, value=None, **kw):
    o = {"Verb": verb, "Key": key}
    if value is not None:
        o["Value"] = b64(value)
    o.update(kw)
    return {"KV": o}


def txn(agent, ops, query=""):
    body = ops if isinstance(ops, (bytes, str)) else json.dumps(ops)
    return agent.put("/v1/txn" + query, body)


def kv(agent, key):
    r = agent.get("/v1/kv/%s" % key)
    if r.status == 404:
        return None
    assert r.status == 200, r.text
    return r.json()[0]


def kv_index(agent):
    return agent.get("/v1/kv/?recurse").index


def test_write_txn_results_and_shapes(agent):
    assert agent.put("/v1/kv/tree/x", "old").status == 200
    r = txn(agent, [
        kv_op("set", "tree/a", "alpha", Flags=7),
        kv_op("cas", "tree/b", "beta", Index=0),
        kv_op("get", "tree/a"),
        kv_op("get-tree", "tree/"),
        kv_op("check-not-exists", "tree/zzz"),
        kv_op("delete", "tree/x"),
    ])
    assert r.status == 200, r.text
    body = r.json()
    assert body["Errors"] is None
    res = body["Results"]
    idx = r.index
    assert idx > 0
    # set, cas, get, get-tree (a, b: x is deleted after it in the same txn? no: the tree is
    # read in order, before the delete), nothing for check-not-exists and delete
    assert res[0] == {"KV": {"LockIndex": 0, "Key": "tree/a", "Flags": 7, "Value": None,
                             "CreateIndex": idx, "ModifyIndex": idx}}
    assert res[1]["KV"]["Key"] == "tree/b" and res[1]["KV"]["Value"] is None
    assert res[2]["KV"]["Key"] == "tree/a" and res[2]["KV"]["Value"] == b64("alpha")
    assert all("KV" in x for x in res)
    assert kv(agent, "tree/a")["Value"] == b64("alpha")
    assert kv(agent, "tree/a")["Flags"] == 7
    assert kv(agent, "tree/b")["ModifyIndex"] == idx
    assert kv(agent, "tree/x") is None


def test_all_or_nothing_with_a_failing_op_in_the_middle(agent):
    assert agent.put("/v1/kv/acct/a", "100").status == 200
    assert agent.put("/v1/kv/acct/b", "0").status == 200
    a = kv(agent, "acct/a")
    before = kv_index(agent)
    r = txn(agent, [
        kv_op("set", "acct/a", "50"),
        kv_op("set", "acct/new", "x"),
        kv_op("check-index", "acct/b", Index=1),  # fails: b's ModifyIndex is not 1
        kv_op("set", "acct/b", "50"),
        kv_op("delete", "acct/a"),
    ])
    assert r.status == 409, r.text
    b = kv(agent, "acct/b")
    assert r.json() == {"Results": None, "Errors": [{
        "OpIndex": 2,
        "What": 'failed index check for key "acct/b", current modify index %d != 1'
                % b["ModifyIndex"]}]}
    assert kv(agent, "acct/a") == a
    assert kv(agent, "acct/new") is None
    assert base64.b64decode(b["Value"]) == b"0"
    assert kv_index(agent) == before
    # several failing ops: all listed, as Consul's txnDispatch does (each op sees the ones
    # before it; a failed one is skipped)
    r = txn(agent, [kv_op("cas", "acct/b", "1", Index=1),
                    kv_op("set", "acct/x", "1"),
                    kv_op("check-not-exists", "acct/x"),
                    kv_op("get", "acct/missing"),
                    kv_op("check-index", "acct/b", Index=b["ModifyIndex"])])
    assert r.status == 409, r.text
    assert r.json() == {"Results": None, "Errors": [
        {"OpIndex": 0, "What": 'failed to set key "acct/b", index is stale'},
        {"OpIndex": 2, "What": 'key "acct/x" exists'},
        {"OpIndex": 3, "What": 'key "acct/missing" doesn\'t exist'}]}
    assert kv(agent, "acct/x") is None
    assert kv_index(agent) == before
    # cas that fails in the middle, Consul's text
    r = txn(agent, [kv_op("set", "acct/a", "1"), kv_op("cas", "acct/b", "2", Index=1)])
    assert r.status == 409
    assert r.json()["Errors"] == [{"OpIndex": 1,
                                   "What": 'failed to set key "acct/b", index is stale'}]
    assert kv(agent, "acct/a") == a
    # delete-cas stale
    r = txn(agent, [kv_op("delete-cas", "acct/a", Index=a["ModifyIndex"] + 1000)])
    assert r.status == 409
    assert r.json()["Errors"][0]["What"] == 'failed to delete key "acct/a", index is stale'


def test_read_only_txn_without_raft(agent):
    assert agent.put("/v1/kv/ro/a", "1").status == 200
    applied = kv_index(agent)
    for q in ("", "?stale", "?consistent"):
        r = txn(agent, [kv_op("get", "ro/a"), kv_op("check-index", "ro/a", Index=applied),
                        kv_op("check-session", "ro/a")], q)
        assert r.status == 200, r.text
        res = r.json()["Results"]
        assert res[0]["KV"]["Value"] == b64("1")
        assert res[1]["KV"]["Value"] is None and res[1]["KV"]["ModifyIndex"] == applied
        assert len(res) == 3
    # a read-only transaction reports every failing op
    r = txn(agent, [kv_op("get", "ro/missing"), kv_op("get", "ro/a"),
                    kv_op("check-not-exists", "ro/a"),
                    kv_op("check-session", "ro/a", Session="abc")])
    assert r.status == 409
    assert r.json() == {"Results": None, "Errors": [
        {"OpIndex": 0, "What": 'key "ro/missing" doesn\'t exist'},
        {"OpIndex": 2, "What": 'key "ro/a" exists'},
        {"OpIndex": 3, "What": 'failed session check for key "ro/a", current session "" != "abc"'},
    ]}
    assert kv_index(agent) == applied


def test_lock_and_unlock_in_a_txn(agent):
    s1 = agent.put("/v1/session/create", {"Name": "a"}).json()["ID"]
    s2 = agent.put("/v1/session/create", {"Name": "b"}).json()["ID"]
    r = txn(agent, [kv_op("lock", "svc/leader", "me", Session=s1),
                    kv_op("check-session", "svc/leader", Session=s1)])
    assert r.status == 200, r.text
    res = r.json()["Results"]
    assert res[0]["KV"]["Session"] == s1 and res[0]["KV"]["LockIndex"] == 1
    r = txn(agent, [kv_op("lock", "svc/leader", "you", Session=s2)])
    assert r.status == 409
    assert r.json()["Errors"] == [{"OpIndex": 0, "What":
                                   'failed to lock key "svc/leader", lock is already held'}]
    r = txn(agent, [kv_op("unlock", "svc/leader", Session=s2)])
    assert r.status == 409
    assert "lock isn't held, or is held by another session" in r.json()["Errors"][0]["What"]
    r = txn(agent, [kv_op("lock", "other", "x", Session="00000000-0000-0000-0000-000000000000")])
    assert r.status == 409
    assert r.json()["Errors"][0]["What"] == \
        'invalid session "00000000-0000-0000-0000-000000000000"'
    r = txn(agent, [kv_op("unlock", "svc/leader", "bye", Session=s1)])
    assert r.status == 200, r.text
    e = kv(agent, "svc/leader")
    assert "Session" not in e and e["LockIndex"] == 1
    # a Session delete (Consul's only Session verb): all or nothing with the rest
    assert txn(agent, [kv_op("lock", "svc/leader", "again", Session=s2)]).status == 200
    r = txn(agent, [{"Session": {"Verb": "delete", "Session": {"ID": s2}}},
                    kv_op("check-not-exists", "svc/leader")])
    assert r.status == 409
    assert kv(agent, "svc/leader")["Session"] == s2
    assert len(agent.get("/v1/session/info/" + s2).json()) == 1
    r = txn(agent, [{"Session": {"Verb": "delete", "Session": {"ID": s2}}},
                    kv_op("set", "after", "x")])
    assert r.status == 200, r.text
    assert r.json()["Results"] == [{"KV": {"LockIndex": 0, "Key": "after", "Flags": 0,
                                           "Value": None, "CreateIndex": r.index,
                                           "ModifyIndex": r.index}}]
    assert agent.get("/v1/session/info/" + s2).json() == []
    assert "Session" not in kv(agent, "svc/leader")


BAD = [
    ("not json", b"{{{", 400, "Failed to parse body"),
    ("object", b'{"KV": {}}', 400, "expected a JSON array"),
    ("empty", b"[]", 400, "no operations"),
    ("empty body", b"", 400, "Failed to parse body"),
    ("unknown verb", [kv_op("frob", "k")], 400, 'unknown KV verb "frob"'),
    ("no verb", [{"KV": {"Key": "k"}}], 400, '"KV.Verb"'),
    ("two kinds", [{"KV": {"Verb": "set", "Key": "k"}, "Node": {"Verb": "get"}}], 400, "Node"),
    ("no kind", [{}], 400, "no operation specified"),
    ("unknown kind", [{"Frob": {}}], 400, '"Frob"'),
    ("session verb", [{"Session": {"Verb": "create", "Session": {"ID": "x"}}}], 400,
     'unknown Session verb "create"'),
    ("session no id", [{"Session": {"Verb": "delete", "Session": {}}}], 400,
     '"Session.Session.ID"'),
    ("intention op", [{"Intention": {"Op": "create"}}], 400, "not supported"),
    ("node verb", [{"Node": {"Verb": "lock", "Node": {"Node": "n"}}}], 400,
     'unknown Node verb "lock"'),
    ("node no name", [{"Node": {"Verb": "set", "Node": {"Address": "10.0.0.1"}}}], 400,
     '"Node.Node.Node"'),
    ("node bad meta", [{"Node": {"Verb": "set", "Node": {"Node": "n", "Meta": [1]}}}], 400,
     "Meta"),
    ("node other dc", [{"Node": {"Verb": "set", "Node": {"Node": "n", "Datacenter": "dc9"}}}],
     400, "Datacenter"),
    ("service no node", [{"Service": {"Verb": "set", "Service": {"Service": "web"}}}], 400,
     '"Service.Node"'),
    ("service bad port", [{"Service": {"Verb": "set", "Node": "n",
                                       "Service": {"Service": "web", "Port": "x"}}}], 400,
     "Port"),
    ("check no node", [{"Check": {"Verb": "set", "Check": {"CheckID": "c"}}}], 400,
     '"Check.Check.Node"'),
    ("check bad status", [{"Check": {"Verb": "set", "Check": {"Node": "n", "CheckID": "c",
                                                              "Status": "purple"}}}], 400,
     'Check.Check: Invalid check status: "purple"'),
    ("bad base64", [{"KV": {"Verb": "set", "Key": "k", "Value": "!!!"}}], 400, '"KV.Value"'),
    ("key too long", [kv_op("set", "k" * 600, "v")], 400, "Key is too long"),
    ("missing key", [kv_op("set", "", "v")], 400, "Must provide key"),
    ("negative index", [kv_op("cas", "k", "v", Index=-1)], 400, '"KV.Index"'),
    ("string flags", [kv_op("set", "k", "v", Flags="7")], 400, '"KV.Flags"'),
    ("unknown field", [kv_op("set", "k", "v", Frob=1)], 400, '"KV.Frob"'),
    ("kv not object", [{"KV": "set"}], 400, '"KV"'),
    ("op not object", [1], 400, "op 0"),
    ("too many ops", [kv_op("set", "k%d" % i, "v") for i in range(129)], 413,
     "Transaction contains too many operations (129 > 128)"),
    ("body too large", [kv_op("set", "k", "v" * (400 * 1024))], 413,
     "Request body too large, max size: 524288 bytes"),
]


@pytest.mark.parametrize("name,body,status,text", BAD, ids=[b[0] for b in BAD])
def test_bad_input(agent, name, body, status, text):
    assert agent.put("/v1/kv/k", "keep").status == 200
    before = kv_index(agent)
    # a good op before the bad one: nothing of it may be stored
    if isinstance(body, list) and name not in ("too many ops", "body too large"):
        body = [kv_op("set", "k", "changed")] + body
        text = text.replace("op 0", "op 1")
    r = txn(agent, body)
    assert r.status == status, (r.status, r.text)
    assert text in r.text, r.text
    assert "\n" not in r.text.rstrip("\n")
    assert base64.b64decode(kv(agent, "k")["Value"]) == b"keep"
    assert kv_index(agent) == before


def test_node_service_check_ops(agent):
    node = {"Node": "txn-node", "Address": "10.1.2.3", "Meta": {"rack": "r1"}}
    svc = {"ID": "web1", "Service": "web", "Port": 8080, "Tags": ["v1"]}
    chk = {"Node": "txn-node", "CheckID": "web1-alive", "Name": "alive", "Status": "passing",
           "ServiceID": "web1"}
    # a service on a node not registered yet fails the whole txn
    r = txn(agent, [kv_op("set", "cat/k", "v"),
                    {"Service": {"Verb": "set", "Node": "txn-node", "Service": svc}}])
    assert r.status == 409, r.text
    assert r.json()["Errors"] == [{"OpIndex": 1, "What": "Missing node registration"}]
    assert kv(agent, "cat/k") is None
    r = txn(agent, [{"Node": {"Verb": "set", "Node": node}},
                    {"Service": {"Verb": "set", "Node": "txn-node", "Service": svc}},
                    {"Check": {"Verb": "set", "Check": chk}},
                    {"Node": {"Verb": "get", "Node": {"Node": "txn-node"}}}])
    assert r.status == 200, r.text
    idx = r.index
    res = r.json()["Results"]
    assert res[0]["Node"]["Node"] == "txn-node" and res[0]["Node"]["Address"] == "10.1.2.3"
    assert res[0]["Node"]["ModifyIndex"] == idx
    assert res[1]["Service"]["ID"] == "web1" and res[1]["Service"]["Port"] == 8080
    assert res[2]["Check"]["CheckID"] == "web1-alive" and res[2]["Check"]["Status"] == "passing"
    assert res[2]["Check"]["ServiceName"] == "web"
    assert res[3]["Node"]["Meta"] == {"rack": "r1"}
    # visible through the catalog, health and DNS paths like any registration
    r = agent.get("/v1/catalog/service/web")
    assert [e["ServiceID"] for e in r.json()] == ["web1"]
    r = agent.get("/v1/health/service/web?passing")
    assert len(r.json()) == 1
    # read-only: gets of all three kinds, one missing
    r = txn(agent, [{"Service": {"Verb": "get", "Node": "txn-node", "Service": {"ID": "web1"}}},
                    {"Check": {"Verb": "get", "Check": {"Node": "txn-node", "CheckID": "nope"}}},
                    {"Node": {"Verb": "get", "Node": {"Node": "ghost"}}}])
    assert r.status == 409, r.text
    assert r.json()["Errors"] == [
        {"OpIndex": 1, "What": 'check "nope" on node "txn-node" doesn\'t exist'},
        {"OpIndex": 2, "What": 'node "ghost" doesn\'t exist'}]
    # cas: stale, then right
    r = txn(agent, [{"Service": {"Verb": "cas", "Node": "txn-node",
                                 "Service": dict(svc, Port=9090, ModifyIndex=1)}}])
    assert r.status == 409
    assert r.json()["Errors"][0]["What"] == \
        'failed to set service "web1" on node "txn-node", index is stale'
    r = txn(agent, [{"Service": {"Verb": "cas", "Node": "txn-node",
                                 "Service": dict(svc, Port=9090, ModifyIndex=idx)}}])
    assert r.status == 200, r.text
    assert r.json()["Results"][0]["Service"]["Port"] == 9090
    # delete-cas of the node with a stale index, then delete: services and checks go too
    r = txn(agent, [{"Node": {"Verb": "delete-cas", "Node": {"Node": "txn-node",
                                                             "ModifyIndex": 1}}}])
    assert r.status == 409
    assert r.json()["Errors"][0]["What"] == 'failed to delete node "txn-node", index is stale'
    r = txn(agent, [{"Check": {"Verb": "delete", "Check": {"Node": "txn-node",
                                                           "CheckID": "web1-alive"}}},
                    {"Node": {"Verb": "delete", "Node": {"Node": "txn-node"}}}])
    assert r.status == 200, r.text
    assert r.json()["Results"] == []
    assert agent.get("/v1/catalog/node/txn-node").json() is None
    assert agent.get("/v1/catalog/service/web").json() == []


def test_method_and_128_ops(agent):
    r = agent.get("/v1/txn")
    assert r.status == 405
    r = txn(agent, [kv_op("set", "many/%03d" % i, "v") for i in range(128)])
    assert r.status == 200, r.text
    assert len(r.json()["Results"]) == 128
    assert {x["KV"]["ModifyIndex"] for x in r.json()["Results"]} == {r.index}


def test_txn_to_a_follower_in_a_cluster(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    follower = c.followers(leader)[0]
    r = txn(follower, [kv_op("set", "c/%d" % i, "v%d" % i) for i in range(10)])
    assert r.status == 200, r.text
    idx = r.index
    # the follower reads its own write; so does the leader, all at the one index
    for a in (follower, leader):
        for i in range(10):
            e = kv(a, "c/%d" % i)
            assert e["ModifyIndex"] == idx and e["Value"] == b64("v%d" % i)
    # a failing one through the follower: 409, nothing on any server
    r = txn(follower, [kv_op("set", "c/0", "changed"), kv_op("check-not-exists", "c/5")])
    assert r.status == 409, r.text
    assert r.json()["Errors"] == [{"OpIndex": 1, "What": 'key "c/5" exists'}]
    c.wait_converged()
    for a in c.live():
        e = a.get("/v1/kv/c/0?stale").json()[0]
        assert e["Value"] == b64("v0") and e["ModifyIndex"] == idx
    # a read-only transaction on the follower, default and ?consistent
    for q in ("", "?consistent", "?stale"):
        r = txn(follower, [kv_op("get-tree", "c/")], q)
        assert r.status == 200, r.text
        assert len(r.json()["Results"]) == 10


def test_txn_through_a_client_agent(tmpdir_path):
    from herald_test.cluster import Cluster
    from test_client_agent import ClientAgent
    c = Cluster(tmpdir_path, 3)
    client = None
    try:
        c.start()
        client = ClientAgent(tmpdir_path, c.addrs)
        client.start()
        r = txn(client, [kv_op("set", "cl/a", "1"), kv_op("cas", "cl/b", "2", Index=0)])
        assert r.status == 200, r.text
        idx = r.index
        assert [x["KV"]["ModifyIndex"] for x in r.json()["Results"]] == [idx, idx]
        leader = c.wait_leader()
        assert kv(leader, "cl/b")["Value"] == b64("2")
        r = txn(client, [kv_op("set", "cl/a", "changed"), kv_op("cas", "cl/b", "3", Index=0)])
        assert r.status == 409, r.text
        assert r.json()["Errors"] == [{"OpIndex": 1,
                                       "What": 'failed to set key "cl/b", index is stale'}]
        assert kv(leader, "cl/a")["Value"] == b64("1")
        r = txn(client, [kv_op("get", "cl/a")], "?consistent")
        assert r.status == 200, r.text
        assert r.json()["Results"][0]["KV"]["Value"] == b64("1")
    finally:
        failures = []
        if client is not None and client.alive():
            rc = client.stop()
            if rc != 0:
                failures.append("client exited %s:\n%s" % (rc, client.read_log()))
        failures += c.stop_all()
    assert not failures, "\n".join(failures)
