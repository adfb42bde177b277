"""Sessions and locks (issue 13, items 1 and 2) against real agents.

Consul's /v1/session API and /v1/kv ?acquire / ?release: the shapes of create, info, list,
node, renew and destroy; the leader's TTL timers at twice the TTL (measured and printed, with
bounds no tighter than needed); invalidation by a failing or deleted check and by a node whose
agent is killed (serfHealth critical through gossip); behavior "delete"; the lock delay; the
LockIndex sequence; the exact `invalid session "<id>"` text; a leader killed while a renewed
session holds a lock; Debian's python3-consul session and lock calls. Every wait is bounded."""
import threading
import time

import consul
import pytest

from conftest import wait_until


def create(agent, body=None, status=200):
    r = agent.put("/v1/session/create", body if body is not None else b"")
    assert r.status == status, r.text
    return r.json()["ID"] if status == 200 else r


def info(agent, sid, stale=False):
    r = agent.get("/v1/session/info/%s%s" % (sid, "?stale" if stale else ""))
    assert r.status == 200, r.text
    return r.json()


def exists(agent, sid):
    return len(info(agent, sid, stale=True)) == 1


def acquire(agent, key, sid, value="v"):
    return agent.put("/v1/kv/%s?acquire=%s" % (key, sid), value)


def release(agent, key, sid, value="v"):
    return agent.put("/v1/kv/%s?release=%s" % (key, sid), value)


def kv(agent, key, stale=False):
    r = agent.get("/v1/kv/%s%s" % (key, "?stale" if stale else ""))
    if r.status == 404:
        return None
    assert r.status == 200, r.text
    return r.json()[0]


# ---- shapes -------------------------------------------------------------------------------------

def test_create_info_list_node_destroy_shapes(agent):
    sid = create(agent, {"Name": "web-lock"})
    assert len(sid) == 36 and sid.count("-") == 4
    [s] = info(agent, sid)
    assert s["ID"] == sid and s["Name"] == "web-lock"
    assert s["Node"] == agent.node_name
    assert s["NodeChecks"] == ["serfHealth"] and s["Checks"] == ["serfHealth"]
    assert s["ServiceChecks"] is None
    assert s["Behavior"] == "release" and s["TTL"] == ""
    assert s["LockDelay"] == 15 * 10**9
    assert s["CreateIndex"] == s["ModifyIndex"] > 0
    # no body at all: the defaults
    sid2 = create(agent)
    r = agent.get("/v1/session/list")
    assert r.status == 200 and r.index >= s["CreateIndex"]
    assert sorted(x["ID"] for x in r.json()) == sorted([sid, sid2])
    r = agent.get("/v1/session/node/" + agent.node_name.upper())
    assert sorted(x["ID"] for x in r.json()) == sorted([sid, sid2])
    assert agent.get("/v1/session/node/nobody").json() == []
    assert info(agent, "00000000-0000-0000-0000-000000000000") == []
    # destroy answers true, also for one that is gone
    for _ in range(2):
        r = agent.put("/v1/session/destroy/" + sid)
        assert r.status == 200 and r.json() is True, r.text
    assert info(agent, sid) == []
    assert [x["ID"] for x in agent.get("/v1/session/list").json()] == [sid2]
    # methods and missing ids
    assert agent.get("/v1/session/create").status == 405
    assert agent.put("/v1/session/info/" + sid2).status == 405
    assert agent.put("/v1/session/destroy/").status == 400
    assert agent.get("/v1/session/nothing").status == 404


def test_lowercase_keys_and_options(agent):
    """Patroni's body: lowercase keys, a fractional lock delay, no checks."""
    sid = create(agent, {"name": "patroni", "ttl": "15s", "behavior": "delete",
                         "lockdelay": "0.001s", "checks": []})
    [s] = info(agent, sid)
    assert s["Name"] == "patroni" and s["TTL"] == "15s" and s["Behavior"] == "delete"
    assert s["LockDelay"] == 1000000 and s["NodeChecks"] == [] and s["Checks"] == []
    # a bare number below 1000 is seconds, above it nanoseconds
    sid = create(agent, {"LockDelay": 5, "TTL": "90s", "Checks": None})
    [s] = info(agent, sid)
    assert s["LockDelay"] == 5 * 10**9 and s["TTL"] == "1m30s"
    assert s["NodeChecks"] == ["serfHealth"]
    sid = create(agent, {"LockDelay": 2000000000, "NodeChecks": ["serfHealth"]})
    assert info(agent, sid)[0]["LockDelay"] == 2 * 10**9


def test_bad_inputs_answer_400_naming_the_field(agent):
    for body, field in [({"TTL": "5s"}, "TTL"), ({"TTL": "25h"}, "TTL"), ({"TTL": "abc"}, "TTL"),
                        ({"TTL": 12}, "TTL"), ({"Behavior": "keep"}, "Behavior"),
                        ({"Node": "nope"}, "Node"), ({"Name": 5}, "Name"),
                        ({"Checks": "serfHealth"}, "Checks"), ({"LockDelay": "2m"}, "LockDelay"),
                        ({"ServiceChecks": [{"Namespace": ""}]}, "ServiceChecks")]:
        r = create(agent, body, status=400)
        assert field in r.text, (body, r.text)
    r = create(agent, b"{not json", status=400)
    assert "decode" in r.text
    # checks: not registered, critical (Consul answers 500 with these texts)
    r = create(agent, {"Checks": ["nope"]}, status=500)
    assert r.text.strip() == "Missing check 'nope' registration"
    assert agent.put("/v1/agent/check/register", {"Name": "down", "TTL": "30s"}).status == 200
    r = create(agent, {"Checks": ["down"]}, status=500)
    assert r.text.strip() == "Check 'down' is in critical state"
    assert agent.get("/v1/session/list").json() == []


def test_renew_shapes(agent):
    sid = create(agent, {"TTL": "20s"})
    r = agent.put("/v1/session/renew/" + sid)
    assert r.status == 200, r.text
    [s] = r.json()
    assert s["ID"] == sid and s["TTL"] == "20s"
    gone = "11111111-2222-3333-4444-555555555555"
    r = agent.put("/v1/session/renew/" + gone)
    assert r.status == 404 and r.text.strip() == "Session id '%s' not found" % gone
    assert agent.get("/v1/session/renew/" + sid).status == 405


def test_blocking_info_wakes_on_destroy(agent):
    sid = create(agent)
    r = agent.get("/v1/session/info/" + sid)
    index = r.index
    out = {}

    def block():
        out["r"] = agent.get("/v1/session/info/%s?index=%d&wait=30s" % (sid, index), timeout=40)

    t = threading.Thread(target=block)
    t.start()
    agent.wait_parked(1)
    assert agent.put("/v1/session/destroy/" + sid).status == 200
    t.join(40)
    assert out["r"].status == 200 and out["r"].json() == [] and out["r"].index > index


# ---- locks --------------------------------------------------------------------------------------

def test_lock_index_sequence_and_release(agent):
    s1 = create(agent, {"Checks": []})
    s2 = create(agent, {"Checks": []})
    r = acquire(agent, "svc/leader", s1, "one")
    assert r.status == 200 and r.json() is True
    e = kv(agent, "svc/leader")
    assert e["LockIndex"] == 1 and e["Session"] == s1 and e["CreateIndex"] == e["ModifyIndex"]
    # the holder re-acquires: value updated, LockIndex kept
    assert acquire(agent, "svc/leader", s1, "two").json() is True
    e2 = kv(agent, "svc/leader")
    assert e2["LockIndex"] == 1 and e2["Value"] == "dHdv" and e2["ModifyIndex"] > e["ModifyIndex"]
    # another session cannot take it nor release it
    assert acquire(agent, "svc/leader", s2).json() is False
    assert release(agent, "svc/leader", s2).json() is False
    # release: Session cleared, ModifyIndex bumped, LockIndex kept
    assert release(agent, "svc/leader", s1, "three").json() is True
    e3 = kv(agent, "svc/leader")
    assert "Session" not in e3 and e3["LockIndex"] == 1 and e3["ModifyIndex"] > e2["ModifyIndex"]
    # free again: the next acquire raises LockIndex
    assert acquire(agent, "svc/leader", s2).json() is True
    e4 = kv(agent, "svc/leader")
    assert e4["LockIndex"] == 2 and e4["Session"] == s2
    # a plain write keeps the lock
    assert agent.put("/v1/kv/svc/leader", "plain").json() is True
    assert kv(agent, "svc/leader")["Session"] == s2
    # release of a key that does not exist
    assert release(agent, "svc/none", s2).json() is False
    # an unknown session: 500 with exactly Consul's text
    bogus = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    r = acquire(agent, "svc/other", bogus)
    assert r.status == 500 and r.text == 'invalid session "%s"' % bogus, r.text
    assert kv(agent, "svc/other") is None
    assert agent.put("/v1/kv/k?acquire=%s&release=%s" % (s1, s1)).status == 400


def test_kv_flags_are_unsigned_64_bit(agent):
    big = 2**64 - 1
    assert agent.put("/v1/kv/flags?flags=%d" % big, "x").json() is True
    assert kv(agent, "flags")["Flags"] == big
    assert agent.put("/v1/kv/flags2?flags=7", "y").json() is True
    for q in ("?recurse", "?recurse&pretty"):
        r = agent.get("/v1/kv/flags" + q)
        assert r.status == 200, r.text
        assert [(e["Key"], e["Flags"]) for e in r.json()] == [("flags", big), ("flags2", 7)]
    assert agent.put("/v1/kv/flags?flags=%d" % (big + 1), "x").status == 400


def test_behavior_delete_and_lock_delay(agent):
    sd = create(agent, {"Behavior": "delete", "LockDelay": "3s", "Checks": []})
    assert acquire(agent, "eph/a", sd).json() is True
    assert agent.put("/v1/session/destroy/" + sd).json() is True
    t0 = time.monotonic()
    assert kv(agent, "eph/a") is None  # deleted with its session
    s2 = create(agent, {"Checks": []})
    r = acquire(agent, "eph/a", s2)
    assert r.status == 200 and r.json() is False  # within the lock delay
    wait_until(lambda: acquire(agent, "eph/a", s2).json() is True, timeout=10,
               msg="the lock free after its 3 s delay")
    took = time.monotonic() - t0
    print("lock delay 3 s: re-acquired after %.2f s" % took)
    assert took >= 2.5
    # release behaviour without a delay: free at once, its value kept
    sr = create(agent, {"LockDelay": "0s", "Checks": []})
    assert acquire(agent, "rel/a", sr, "kept").json() is True
    assert agent.put("/v1/session/destroy/" + sr).json() is True
    e = kv(agent, "rel/a")
    assert e["Value"] == "a2VwdA==" and "Session" not in e and e["LockIndex"] == 1
    assert acquire(agent, "rel/a", s2).json() is True
    assert kv(agent, "rel/a")["LockIndex"] == 2


def test_invalidation_by_failing_and_deleted_checks(agent):
    for name in ("c1", "c2"):
        assert agent.put("/v1/agent/check/register", {"Name": name, "TTL": "60s"}).status == 200
        assert agent.put("/v1/agent/check/pass/" + name).status == 200
    s1 = create(agent, {"Checks": ["serfHealth", "c1"]})
    s2 = create(agent, {"NodeChecks": ["c2"]})
    s3 = create(agent, {"Checks": []})  # tied to nothing
    assert acquire(agent, "inv/1", s1).json() is True
    assert acquire(agent, "inv/2", s2).json() is True
    # c1 fails: s1 is invalidated and its key released
    assert agent.put("/v1/agent/check/fail/c1").status == 200
    wait_until(lambda: not exists(agent, s1), timeout=10, msg="s1 invalidated by c1 failing")
    assert "Session" not in kv(agent, "inv/1")
    assert exists(agent, s2) and exists(agent, s3)
    # c2 is deleted: s2 goes
    assert agent.put("/v1/agent/check/deregister/c2").status == 200
    wait_until(lambda: not exists(agent, s2), timeout=10, msg="s2 invalidated by c2 deleted")
    assert "Session" not in kv(agent, "inv/2")
    assert exists(agent, s3)


def test_ttl_expiry_at_twice_the_ttl_and_renew_keeps_it(agent):
    t0 = time.monotonic()
    s1 = create(agent, {"TTL": "10s", "LockDelay": "0s", "Checks": []})
    s2 = create(agent, {"TTL": "10s", "Checks": []})
    assert acquire(agent, "ttl/lock", s1).json() is True
    last_renew = time.monotonic()
    while exists(agent, s1):
        assert time.monotonic() - t0 < 40, "s1 not expired within 40 s"
        if time.monotonic() - last_renew > 4:
            assert agent.put("/v1/session/renew/" + s2).status == 200
            last_renew = time.monotonic()
        time.sleep(0.1)  # the poll interval of this bounded wait
    took = time.monotonic() - t0
    print("TTL 10 s: expired after %.2f s (Consul's grace: 2 x TTL = 20 s)" % took)
    assert 20 <= took < 40
    assert exists(agent, s2)  # renewed every 4 s: alive past 20 s
    assert "Session" not in kv(agent, "ttl/lock")
    assert acquire(agent, "ttl/lock", s2).json() is True


# ---- clusters -----------------------------------------------------------------------------------

def test_kill9_of_the_session_node_invalidates_it(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    victim = c.followers()[0]
    sid = create(victim, {"Name": "on-victim"})  # tied to the victim's serfHealth
    assert info(leader, sid)[0]["Node"] == victim.node_name
    assert acquire(victim, "cluster/lock", sid).json() is True
    victim.kill9()
    t0 = time.monotonic()
    wait_until(lambda: not exists(leader, sid), timeout=40,
               msg="the session of the killed node invalidated")
    print("kill -9 of the session's node -> session invalidated: %.2f s" %
          (time.monotonic() - t0))
    assert "Session" not in kv(leader, "cluster/lock")
    for a in c:
        if a is not victim:
            wait_until(lambda: not exists(a, sid), timeout=10, msg="gone on %s" % a.addr)


def test_leader_kill_keeps_a_renewed_session_and_its_lock(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    f = c.followers()[0]
    sid = create(f, {"TTL": "10s", "Checks": []})
    assert acquire(f, "patroni/leader", sid, "me").json() is True
    leader.kill9()
    t0 = time.monotonic()
    survivors = [a for a in c if a is not leader]
    c.wait_leader(among=survivors, timeout=30)
    # renewed every 3 s through the follower, the session outlives 2 x TTL after the kill
    last_ok = None
    while time.monotonic() - t0 < 25:
        r = f.put("/v1/session/renew/" + sid)
        if r.status == 500:  # no leader for a moment
            time.sleep(0.2)  # the retry interval of this bounded loop
            continue
        assert r.status == 200, r.text
        last_ok = time.monotonic()
        e = kv(f, "patroni/leader", stale=True)
        assert e["Session"] == sid, "lock lost at %.1f s" % (time.monotonic() - t0)
        time.sleep(3)  # the renew interval (Patroni renews every loop_wait)
    assert last_ok is not None and exists(f, sid)
    # unrenewed, the new leader's timer expires it 2 x TTL after the last renew applied
    wait_until(lambda: not exists(f, sid), timeout=40, msg="expiry by the new leader")
    took = time.monotonic() - last_ok
    print("the new leader expired the session %.2f s after its last renew" % took)
    assert 18 <= took < 40
    assert "Session" not in kv(f, "patroni/leader")


# ---- python-consul ------------------------------------------------------------------------------

def test_python_consul_session_and_lock_calls(agent):
    c = consul.Consul(host=agent.addr, port=8500)
    sid = c.session.create(name="py", behavior="delete", ttl=10, lock_delay=0)
    index, s = c.session.info(sid)
    assert s["ID"] == sid and s["Behavior"] == "delete" and int(index) > 0
    index, sessions = c.session.list()
    assert [x["ID"] for x in sessions] == [sid]
    index, sessions = c.session.node(agent.node_name)
    assert [x["ID"] for x in sessions] == [sid]
    assert c.session.renew(sid)["ID"] == sid
    assert c.kv.put("py/lock", "v1", acquire=sid) is True
    index, e = c.kv.get("py/lock")
    assert e["Session"] == sid and e["LockIndex"] == 1
    assert c.kv.put("py/lock", "v2", release=sid) is True
    index, e = c.kv.get("py/lock")
    assert "Session" not in e and e["Value"] == b"v2"
    assert c.kv.put("py/lock", "v3", acquire=sid) is True
    with pytest.raises(consul.ConsulException) as exc:
        c.kv.put("py/other", "x", acquire="no-such-session")
    assert 'invalid session "no-such-session"' in str(exc.value)
    assert c.session.destroy(sid) is True
    index, e = c.kv.get("py/lock")
    assert e is None  # behavior delete
    with pytest.raises(consul.NotFound):
        c.session.renew(sid)
    index, s = c.session.info(sid)
    assert s is None


# ---- backups ------------------------------------------------------------------------------------

def test_backup_carries_sessions_and_locks(agent):
    sid = create(agent, {"Name": "kept", "Checks": []})
    assert acquire(agent, "backup/lock", sid).json() is True
    r = agent.get("/v1/snapshot")
    assert r.status == 200
    backup = r.body
    assert agent.put("/v1/session/destroy/" + sid).json() is True
    assert info(agent, sid) == []
    r = agent.put("/v1/snapshot", backup, timeout=60)
    assert r.status == 200, r.text
    [s] = info(agent, sid)
    assert s["Name"] == "kept"
    assert kv(agent, "backup/lock")["Session"] == sid
