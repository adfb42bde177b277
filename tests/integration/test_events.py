"""Consul's user events (issue 11, item 3): PUT /v1/event/fire/:name reaches every agent of the
LAN pool by gossip, each keeps the events its filters select, GET /v1/event/list lists them
with Consul's index (uuidToUint64) and blocks with Consul's rule ("changed" means unequal).

- fired on one server, listed on the other two with the same ID and Lamport time;
- ?node=, ?service=, ?tag= reach only the matching agents;
- ?index parks the list until the next event (counted in Stats.http.blocking_queries);
- a serf agent in Herald's pool runs its user-event handler for "consul:event:<name>", and a
  plain `serf event` is not a Consul event to Herald;
- serf's 512-byte limit, and every bad input, with Consul's status and text;
- `herald event`.

Every wait is bounded; every process is stopped by pid.
"""
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import HERALD, next_addr, sanitizer_env, wait_until
from herald_test.cluster import Cluster
from herald_test.serf import serf_members


def uuid_index(event_id):
    """Consul's uuidToUint64."""
    lo = int(event_id[0:8] + event_id[9:13] + event_id[14:18], 16)
    hi = int(event_id[19:23] + event_id[24:36], 16)
    return lo ^ hi


def events(agent, query=""):
    r = agent.get("/v1/event/list" + query, timeout=10)
    assert r.status == 200, r.text
    return r.json(), r.index


def ids(agent, query=""):
    return [e["ID"] for e in events(agent, query)[0]]


def fire(agent, name, query="", body=b""):
    r = agent.put("/v1/event/fire/%s%s" % (name, query), body)
    assert r.status == 200, r.text
    return r.json()


def listed(agent, event_id, timeout=10):
    """Waits (bounded) until agent lists event_id; returns the event."""
    return wait_until(lambda: next((e for e in events(agent)[0] if e["ID"] == event_id), None),
                      timeout=timeout, msg="event %s listed on %s" % (event_id, agent.addr))


def marker(cluster, among):
    """Fires an unfiltered event on cluster[0] and waits until every agent of `among` lists it:
    events fired before it have had their time to spread."""
    ev = fire(cluster[0], "marker")
    for a in among:
        listed(a, ev["ID"])


@pytest.fixture(scope="module")
def cluster():
    """Three servers, shared by the tests of this file that only add events."""
    with tempfile.TemporaryDirectory(prefix="herald-test-") as tmp:
        c = Cluster(tmp, 3)
        try:
            c.start()
            yield c
        finally:
            failures = c.stop_all()
        assert not failures, "\n".join(failures)


def cli(agent, *args):
    return subprocess.run([HERALD, "event"] + list(args) + ["-http-addr", "%s:8500" % agent.addr],
                          capture_output=True, text=True, timeout=30, env=sanitizer_env())


# ---- reach --------------------------------------------------------------------------------

def test_fired_on_one_listed_on_all_with_the_same_id_and_ltime(cluster):
    a, b, c = cluster
    t0 = time.time()
    ev = fire(a, "deploy", body=b"v1.2.3")
    assert ev["Name"] == "deploy" and ev["Payload"] == "djEuMi4z" and ev["Version"] == 1
    assert ev["LTime"] == 0 and ev["NodeFilter"] == ev["ServiceFilter"] == ev["TagFilter"] == ""
    got = [listed(x, ev["ID"]) for x in (a, b, c)]
    assert time.time() - t0 < 5, "gossip took %.1fs" % (time.time() - t0)
    assert len({g["LTime"] for g in got}) == 1 and got[0]["LTime"] > 0
    for g in got:
        assert g == dict(ev, LTime=got[0]["LTime"])
    # the list's index is uuidToUint64 of its last event, oldest first
    for x in (a, b, c):
        evs, index = events(x)
        assert evs[-1]["ID"] == ev["ID"] and index == uuid_index(ev["ID"])


def test_list_by_name_and_its_index(cluster):
    a = cluster[0]
    one = fire(a, "by-name-1")
    two = fire(a, "by-name-2")
    evs, index = events(a, "?name=by-name-1")
    assert [e["ID"] for e in evs] == [one["ID"]] and index == uuid_index(one["ID"])
    evs, index = events(a, "?name=no-such-event")
    assert evs == [] and index == 1  # Consul: 1 when none
    assert ids(a)[-2:] == [one["ID"], two["ID"]]
    # no payload: null, as Consul's nil []byte
    assert events(a, "?name=by-name-2")[0][0]["Payload"] is None


def test_node_filter_reaches_only_the_matching_agent(cluster):
    a, b, c = cluster
    ev = fire(a, "only-b", "?node=^%s$" % b.node_name)
    assert ev["NodeFilter"] == "^%s$" % b.node_name
    listed(b, ev["ID"])
    marker(cluster, [a, b, c])
    assert ev["ID"] not in ids(a) and ev["ID"] not in ids(c)


def test_service_and_tag_filters(cluster):
    a, b, c = cluster
    r = b.put("/v1/agent/service/register", {"Name": "web", "Tags": ["v2", "canary"], "Port": 80})
    assert r.status == 200, r.text
    r = c.put("/v1/agent/service/register", {"Name": "db", "Tags": ["v2"], "Port": 5432})
    assert r.status == 200, r.text
    # the filter is applied on arrival, against the agent's own catalog copy
    wait_until(lambda: "web" in b.get("/v1/agent/services").json(), timeout=10, msg="web on b")
    wait_until(lambda: "db" in c.get("/v1/agent/services").json(), timeout=10, msg="db on c")
    web = fire(a, "svc", "?service=^web$")
    v2 = fire(a, "svc", "?service=.&tag=^v2$")
    canary_db = fire(a, "svc", "?service=db&tag=canary")
    listed(b, web["ID"])
    listed(b, v2["ID"])
    listed(c, v2["ID"])
    marker(cluster, [a, b, c])
    assert ids(a, "?name=svc") == []  # a's one service, consul, has no tag
    # (gossip does not keep the order of events fired together: a list is in arrival order)
    assert sorted(ids(b, "?name=svc")) == sorted([web["ID"], v2["ID"]])
    assert ids(c, "?name=svc") == [v2["ID"]]
    assert canary_db["ID"] not in ids(c)


# ---- blocking -----------------------------------------------------------------------------

def test_a_blocking_list_waits_for_the_next_event(cluster):
    a, b, _ = cluster
    evs, index = events(b)
    # an index that differs is answered at once ("changed" means unequal, not greater)
    t0 = time.time()
    r = b.get("/v1/event/list?index=%d&wait=30s" % (index + 1 if index > 1 else 7))
    assert r.status == 200 and time.time() - t0 < 5
    result = {}

    def block():
        result["r"] = b.get("/v1/event/list?index=%d&wait=60s" % index, timeout=90)

    before = b.parked()
    t = threading.Thread(target=block)
    t.start()
    try:
        b.wait_parked(before + 1)
        ev = fire(a, "wake-up")
    finally:
        t.join(60)
    assert not t.is_alive()
    r = result["r"]
    assert r.status == 200, r.text
    assert r.json()[-1]["ID"] == ev["ID"] and r.index == uuid_index(ev["ID"])
    wait_until(lambda: b.parked() == before, timeout=10, msg="the list unparked")


def test_a_blocking_list_on_another_name_stays_parked_and_its_wait_ends_it(cluster):
    a, b, _ = cluster
    _, index = events(b, "?name=never-fired")
    assert index == 1
    result = {}

    def block():
        t0 = time.time()
        result["r"] = b.get("/v1/event/list?name=never-fired&index=1&wait=3s", timeout=30)
        result["took"] = time.time() - t0

    before = b.parked()
    t = threading.Thread(target=block)
    t.start()
    b.wait_parked(before + 1)
    listed(b, fire(a, "other-name")["ID"])  # wakes the list, which parks again
    t.join(30)
    assert not t.is_alive()
    assert result["r"].status == 200 and result["r"].json() == []
    assert 3 <= result["took"] < 10


# ---- serf -----------------------------------------------------------------------------------

def test_a_serf_agent_runs_its_handler_and_a_plain_serf_event_is_ignored(cluster, tmp_path):
    a, b, _ = cluster
    addr = next_addr()
    out = tmp_path / "deploy.out"
    log = open(tmp_path / "serf.log", "w")
    serf = subprocess.Popen(
        ["serf", "agent", "-node", "serf-events", "-bind", "%s:8301" % addr,
         "-rpc-addr", "%s:7373" % addr, "-join", "%s:8301" % a.addr,
         "-event-handler", "user:consul:event:deploy=cat >> %s" % out],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: a.node_name in serf_members(addr), timeout=20, msg="serf joined")
        ev = fire(b, "deploy", body=b"to-serf")
        # serf's handler gets the serf event's payload: Consul's envelope, which holds the ID
        wait_until(lambda: out.exists() and ev["ID"].encode() in out.read_bytes(), timeout=20,
                   msg="serf's handler ran for consul:event:deploy")
        assert b"to-serf" in out.read_bytes()
        # a serf event that is not Consul's is not listed by Herald
        r = subprocess.run(["serf", "event", "-rpc-addr=%s:7373" % addr, "plain-serf", "x"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        marker(cluster, list(cluster))
        for x in cluster:
            assert all(e["Name"] != "plain-serf" for e in events(x)[0])
    finally:
        if serf.poll() is None:
            serf.terminate()
            try:
                serf.wait(10)
            except subprocess.TimeoutExpired:
                serf.kill()
                serf.wait(10)
        log.close()


def mp_str(s):
    b = s.encode()
    assert len(b) < 256
    return (bytes([0xa0 | len(b)]) if len(b) < 32 else bytes([0xd9, len(b)])) + b


def envelope(fields):
    """Consul's user-event envelope (a msgpack map of strings and a small int), as a serf
    agent's `serf event` can carry it: no NUL byte may appear (it is an argv string)."""
    out = bytes([0x80 | len(fields)])
    for k, v in fields.items():
        out += mp_str(k) + (bytes([v]) if isinstance(v, int) else mp_str(v))
    assert b"\0" not in out
    return out


def serf_event(addr, name, payload):
    r = subprocess.run(["serf", "event", "-coalesce=false", "-rpc-addr=%s:7373" % addr, name,
                        payload], capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr


def test_consul_events_from_a_serf_agent_and_hostile_ones(cluster, tmp_path):
    """A serf agent in the pool sends "consul:event:" events itself: a well-formed envelope is
    listed by every agent; one whose filter is beyond RE2's limits, and a payload that is not
    an envelope, are dropped, and every agent goes on."""
    a, b, c = cluster
    addr = next_addr()
    log = open(tmp_path / "serf.log", "w")
    serf = subprocess.Popen(["serf", "agent", "-node", "serf-sender", "-bind", "%s:8301" % addr,
                             "-rpc-addr", "%s:7373" % addr, "-join", "%s:8301" % b.addr],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: a.node_name in serf_members(addr), timeout=20, msg="serf joined")
        good = "5f0c8e1a-1111-4222-8333-944455556666"
        serf_event(addr, "consul:event:from-serf",
                   envelope({"ID": good, "n": "from-serf", "v": 1}))
        evil = "5f0c8e1a-1111-4222-8333-944455557777"
        serf_event(addr, "consul:event:evil",
                   envelope({"ID": evil, "n": "evil", "nf": "(abcdefghijk){1000}", "v": 1}))
        serf_event(addr, "consul:event:junk", b"not an envelope")
        for x in cluster:
            ev = listed(x, good, timeout=20)
            assert ev["Name"] == "from-serf" and ev["Payload"] is None and ev["LTime"] > 0
        marker(cluster, list(cluster))
        for x in cluster:
            names = {e["Name"] for e in events(x)[0]}
            assert "evil" not in names and "junk" not in names
            assert "Failed to parse node filter" in x.read_log()
    finally:
        if serf.poll() is None:
            serf.terminate()
            try:
                serf.wait(10)
            except subprocess.TimeoutExpired:
                serf.kill()
                serf.wait(10)
        log.close()


# ---- limits and bad input ------------------------------------------------------------------

def test_serfs_512_byte_limit(cluster):
    a = cluster[0]
    r = a.put("/v1/event/fire/big", b"x" * 600)
    assert r.status == 500
    assert r.text.strip() == "user event exceeds configured limit of 512 bytes before encoding"
    assert fire(a, "big", body=b"x" * 400)["Payload"]  # room for name and envelope


@pytest.mark.parametrize("path,status,text", [
    ("/v1/event/fire/", 400, "Missing name"),
    ("/v1/event/fire/x?tag=v1", 500, "Cannot provide tag filter without service filter"),
    ("/v1/event/fire/x?node=(", 500, "Invalid node filter: "),
    ("/v1/event/fire/x?service=web&tag=[", 500, "Invalid tag filter: "),
    ("/v1/event/fire/x?service=(a)%5C1", 500, "Invalid service filter: invalid escape sequence"),
    ("/v1/event/fire/x?node=a%7B1001%7D", 500, "Invalid node filter: invalid repeat count"),
    ("/v1/event/fire/x?dc=dc2", 500, "No path to datacenter"),
])
def test_bad_input(cluster, path, status, text):
    r = cluster[0].put(path, b"")
    assert r.status == status, r.text
    assert r.text.startswith(text), r.text


def test_methods(cluster):
    a = cluster[0]
    assert a.get("/v1/event/fire/x").status == 405
    assert a.put("/v1/event/list").status == 405
    assert a.get("/v1/event/list?index=abc").status == 400


# ---- the CLI ---------------------------------------------------------------------------------

def test_herald_event(cluster):
    a, b, _ = cluster
    r = cli(a, "-name", "from-cli", "-node", "^%s$" % b.node_name, "cli payload")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Event ID: ")
    event_id = r.stdout.strip().split(": ", 1)[1]
    ev = listed(b, event_id)
    assert ev["Name"] == "from-cli" and ev["NodeFilter"] == "^%s$" % b.node_name
    assert ev["Payload"] == "Y2xpIHBheWxvYWQ="
    for args, msg in [((), "Event name must be specified"),
                      (("-name", "x", "-tag", "v1"), "Cannot provide tag filter"),
                      (("-name", "x", "-node", "("), "Invalid node filter"),
                      (("-name", "x", "a", "b"), "Too many command line arguments"),
                      (("-name", "x", "y" * 600), "exceeds configured limit")]:
        r = cli(a, *args)
        assert r.returncode == 1 and r.stdout == "", (args, r.stdout)
        assert len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr, (args, r.stderr)


# ---- shutdown --------------------------------------------------------------------------------

def test_a_parked_list_does_not_hold_up_a_stop(make_agent):
    a = make_agent().start()
    ev = fire(a, "one")
    result = {}

    def block():
        try:
            result["r"] = a.get("/v1/event/list?index=%d&wait=60s" % uuid_index(ev["ID"]),
                                timeout=60)
        except OSError as e:
            result["r"] = e

    t = threading.Thread(target=block)
    t.start()
    a.wait_parked(1)
    t0 = time.time()
    assert a.stop() == 0
    t.join(30)
    assert not t.is_alive() and time.time() - t0 < 20
