"""Backups: GET/PUT /v1/snapshot and `herald snapshot save|restore|inspect` (admin/api/snapshot.c,
zone/restore.c).

A backup saved from a follower and restored through another follower replaces the catalog on
every server (identical digests, the saved rows and indexes over HTTP, DNS answers from the
restored catalog on all three); a backup of several 1 MiB pieces (over the 4 MiB entry cap)
round-trips; an empty, truncated or damaged file is refused with a 400 naming the problem and
nothing is proposed (the digest, applied index included, does not move); a body over the
snapshot limit gets 413; a dev agent saves and restores with the CLI; a blocking query parked
before a restore wakes after it; bad CLI input exits 1 with one line.

Every wait is bounded; every process is stopped by pid (fixtures)."""
import base64
import hashlib
import os
import subprocess
import threading
import time

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from conftest import HERALD, raw_http, wait_until


# ---- helpers --------------------------------------------------------------------------------

def cli(agent, *args, timeout=120):
    return subprocess.run([HERALD] + list(args) + ["-http-addr", "%s:8500" % agent.addr],
                          capture_output=True, text=True, timeout=timeout)


def dns_a(agent, name, timeout=2):
    """Sorted A addresses for name from agent's DNS, or the rcode's name when not NOERROR."""
    m = dns.query.udp(dns.message.make_query(name, "A"), agent.addr, port=agent.dns_port,
                      timeout=timeout)
    if m.rcode() != dns.rcode.NOERROR:
        return dns.rcode.to_text(m.rcode())
    return sorted(r.address for rr in m.answer if rr.rdtype == dns.rdatatype.A for r in rr)


def catalog_register(agent, node, address, service=None, svc_address=""):
    body = {"Node": node, "Address": address}
    if service:
        body["Service"] = {"Service": service, "ID": service + "-" + node, "Port": 80,
                           "Address": svc_address}
    r = agent.put("/v1/catalog/register", body)
    assert r.status == 200, (r.status, r.text)


def kv_put(agent, key, value):
    r = agent.put("/v1/kv/" + key, value)
    assert r.status == 200 and r.body.strip() == b"true", (r.status, r.text)


STATE_PATHS = ["/v1/kv/?recurse", "/v1/catalog/nodes", "/v1/catalog/services",
               "/v1/catalog/service/web", "/v1/health/service/web", "/v1/catalog/service/api"]


def state(agent):
    """What the agent's own replica holds (?stale), rows with their indexes, as raw bodies."""
    out = {}
    for p in STATE_PATHS:
        r = agent.get(p + ("&" if "?" in p else "?") + "stale")
        assert r.status in (200, 404), (p, r.status, r.text)
        out[p] = (r.status, r.body)
    return out


def digest(agent):
    r = agent.get("/v1/operator/catalog/digest")
    assert r.status == 200, r.text
    return r.json()


def one_line(text):
    return text.strip() != "" and "\n" not in text.strip()


# ---- a cluster ------------------------------------------------------------------------------

def test_backup_from_a_follower_restored_through_a_follower_replaces_every_replica(
        make_cluster, tmpdir_path):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    f1, f2 = c.followers(leader)
    catalog_register(leader, "ext-1", "10.0.0.1", "web")
    catalog_register(f1, "ext-2", "10.0.0.2", "web")
    kv_put(f2, "app/a", "1")
    kv_put(leader, "app/b", "2")
    # saved from a follower right after the writes: the default mode reads the leader's view
    path = os.path.join(tmpdir_path, "backup.snap")
    r = cli(f1, "snapshot", "save", path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Saved and verified snapshot to index "), r.stdout
    saved_index = int(r.stdout.split()[-1])
    assert not os.path.exists(path + ".tmp")
    r = cli(f1, "snapshot", "inspect", path)
    assert r.returncode == 0, r.stderr
    info = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert info["KV"] == "2" and info["Index"] == str(saved_index)
    assert int(info["Nodes"]) == 5 and int(info["Size"]) == os.path.getsize(path)
    c.wait_converged()
    saved = state(leader)

    # the catalog moves on: a key deleted, one added, a node gone, a service added
    assert f2.delete("/v1/kv/app/a").status == 200
    kv_put(f1, "app/c", "3")
    assert leader.put("/v1/catalog/deregister", {"Node": "ext-1"}).status == 200
    catalog_register(f2, "ext-3", "10.0.0.9", "api")
    c.wait_converged()
    for a in c:
        assert wait_until(lambda: dns_a(a, "api.service.consul") == ["10.0.0.9"], timeout=5)
        assert dns_a(a, "web.service.consul") == ["10.0.0.2"]
    before = digest(leader)

    t0 = time.monotonic()
    r = cli(f2, "snapshot", "restore", path)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Restored snapshot"
    print("restore of %d bytes through a follower: %.2f s" % (os.path.getsize(path), took))

    ds = c.wait_converged()
    after = ds[leader.addr]
    assert after["Digest"] != before["Digest"]
    # the applied index is this cluster's Raft index, past the restore's own start
    assert after["AppliedIndex"] > before["AppliedIndex"]
    assert after["CatalogIndex"] == after["AppliedIndex"]
    for a in c:
        assert state(a) == saved, a.addr
        # DNS caches built before the restore are not used again
        assert dns_a(a, "web.service.consul") == ["10.0.0.1", "10.0.0.2"]
        assert dns_a(a, "api.service.consul") == "NXDOMAIN"
        assert dns_a(a, "ext-1.node.consul") == ["10.0.0.1"]
    # writes go on from there
    kv_put(f1, "app/d", "4")
    c.wait_converged()
    r = leader.get("/v1/kv/app/?keys")
    assert r.json() == ["app/a", "app/b", "app/d"]


def test_backup_larger_than_an_entry_round_trips_in_pieces(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    f1, f2 = c.followers(leader)
    rng = os.urandom
    values = {"big/%02d" % i: rng(500 * 1024) for i in range(12)}  # ~5.9 MiB: 6 pieces
    for k, v in values.items():
        r = leader.put("/v1/kv/" + k, v)
        assert r.status == 200, r.text
    t0 = time.monotonic()
    r = f1.get("/v1/snapshot", timeout=60)
    t_save = time.monotonic() - t0
    assert r.status == 200, r.text
    assert r.headers["Content-Type"] == "application/octet-stream"
    backup = r.body
    assert len(backup) > 5 * 1024 * 1024
    assert r.index == digest(leader)["CatalogIndex"]
    r = leader.delete("/v1/kv/big/?recurse")
    assert r.status == 200

    t0 = time.monotonic()
    r = f2.put("/v1/snapshot", backup, timeout=120)
    t_restore = time.monotonic() - t0
    assert r.status == 200, r.text
    assert r.index > 0
    print("%d bytes: save %.2f s, restore %.2f s" % (len(backup), t_save, t_restore))
    c.wait_converged()
    want = {k: hashlib.sha256(v).hexdigest() for k, v in values.items()}
    for a in c:
        got = {k: hashlib.sha256(a.get("/v1/kv/%s?raw&stale" % k).body).hexdigest()
               for k in values}
        assert got == want, a.addr
    # the staging is cleared everywhere: a backup taken now is the catalog alone again
    assert abs(len(f1.get("/v1/snapshot?stale", timeout=60).body) - len(backup)) < 4096


# ---- a dev agent ----------------------------------------------------------------------------

def test_dev_agent_saves_and_restores_with_the_cli(agent, tmpdir_path):
    kv_put(agent, "cfg/x", "one")
    catalog_register(agent, "db-1", "10.1.0.1", "web")
    path = os.path.join(tmpdir_path, "dev.snap")
    r = cli(agent, "snapshot", "save", path)
    assert r.returncode == 0, r.stderr
    saved = state(agent)
    kv_put(agent, "cfg/x", "two")
    kv_put(agent, "cfg/y", "new")
    assert agent.put("/v1/catalog/deregister", {"Node": "db-1"}).status == 200
    assert dns_a(agent, "web.service.consul") == "NXDOMAIN"
    # overwriting an existing file goes through FILE.tmp and a rename
    r = cli(agent, "snapshot", "save", path + ".2")
    assert r.returncode == 0, r.stderr
    r = cli(agent, "snapshot", "restore", path)
    assert r.returncode == 0, r.stderr
    assert state(agent) == saved
    assert agent.get("/v1/kv/cfg/x?raw").body == b"one"
    assert agent.get("/v1/kv/cfg/y").status == 404
    assert dns_a(agent, "web.service.consul") == ["10.1.0.1"]
    # and back to the later one
    r = cli(agent, "snapshot", "restore", path + ".2")
    assert r.returncode == 0, r.stderr
    assert agent.get("/v1/kv/cfg/x?raw").body == b"two"
    assert dns_a(agent, "web.service.consul") == "NXDOMAIN"


def test_damaged_truncated_or_empty_backup_is_refused_and_nothing_changes(agent, tmpdir_path):
    kv_put(agent, "k", "v")
    good = agent.get("/v1/snapshot").body
    kv_put(agent, "k", "later")
    before = digest(agent)
    mid = len(good) // 2
    # A byte changed inside a string (the node's name), not in a length field: the layout
    # still holds, only the checksum tells (a flipped length would read as truncated).
    at = good.index(agent.node_name.encode()) + 1
    damaged = good[:at] + bytes([good[at] ^ 0x20]) + good[at + 1:]
    cases = [(b"", "snapshot is empty"),
             (good[:mid], "snapshot is truncated"),
             (good[:-1], "snapshot is truncated"),
             (damaged, "snapshot is damaged: checksum mismatch"),
             (b"\x1f\x8b\x08\x00 a Consul snapshot", "not a Herald snapshot"),
             (good + b"\0", "snapshot is damaged")]
    for body, msg in cases:
        r = agent.put("/v1/snapshot", body)
        assert r.status == 400, (msg, r.status, r.text)
        assert r.text.startswith(msg) and one_line(r.text), (msg, r.text)
    # over the snapshot limit: 413 from the Content-Length alone
    out = raw_http(agent.addr, b"PUT /v1/snapshot HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: 268435457\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 "), out[:80]
    # the larger limit is this path's only
    r = agent.put("/v1/kv/big", b"x" * (2 * 1024 * 1024))
    assert r.status == 413
    # nothing was proposed: not even the applied index moved
    assert digest(agent) == before
    assert agent.get("/v1/kv/k?raw").body == b"later"

    # the CLI checks the file before sending it, and says why in one line
    for body, msg in cases[:4]:
        path = os.path.join(tmpdir_path, "bad.snap")
        with open(path, "wb") as f:
            f.write(body)
        for args in (("snapshot", "restore", path), ("snapshot", "inspect", path)):
            r = cli(agent, *args)
            assert r.returncode == 1, (args, r.stdout, r.stderr)
            assert one_line(r.stderr) and msg in r.stderr, (args, r.stderr)
    assert digest(agent) == before


def test_cli_bad_input_exits_1_with_one_line(agent, tmpdir_path):
    missing = os.path.join(tmpdir_path, "nope.snap")
    cases = [(("snapshot", "restore", missing), "No such file or directory"),
             (("snapshot", "inspect", missing), "No such file or directory"),
             (("snapshot", "inspect", tmpdir_path), "Is a directory"),
             (("snapshot", "restore", tmpdir_path), "Is a directory"),
             (("snapshot", "save", os.path.join(missing, "x.snap")), "No such file or directory"),
             (("snapshot", "save"), "usage"),
             (("snapshot", "frobnicate", missing), "usage"),
             (("snapshot",), "usage")]
    for args, msg in cases:
        r = cli(agent, *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert one_line(r.stderr) and msg in r.stderr, (args, r.stderr)
        assert r.stdout == "", (args, r.stdout)
    # an agent that does not answer
    r = subprocess.run([HERALD, "snapshot", "save", missing, "-http-addr", "127.0.0.1:1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and one_line(r.stderr), r.stderr
    assert not os.path.exists(missing)


def test_blocking_query_parked_before_a_restore_wakes_after_it(agent):
    kv_put(agent, "watched", "saved")
    backup = agent.get("/v1/snapshot").body
    kv_put(agent, "watched", "changed")
    r = agent.get("/v1/kv/watched")
    idx = r.index  # the key's ModifyIndex: past the one it gets back from the backup
    catalog_idx = agent.get("/v1/catalog/services").index
    results = {}

    def park(name, path):
        t0 = time.monotonic()
        results[name] = (agent.get(path, timeout=60), time.monotonic() - t0)

    threads = [threading.Thread(target=park, args=("kv", "/v1/kv/watched?index=%d&wait=30s"
                                                   % idx)),
               threading.Thread(target=park, args=("catalog", "/v1/catalog/services?index=%d"
                                                   "&wait=30s" % catalog_idx))]
    for t in threads:
        t.start()
    agent.wait_parked(2)
    assert not results
    r = agent.put("/v1/snapshot", backup)
    assert r.status == 200, r.text
    for t in threads:
        t.join(40)
    for name in ("kv", "catalog"):
        resp, took = results[name]
        assert resp.status == 200, (name, resp.status)
        assert took < 10, (name, took)  # woken by the restore, not by the 30 s wait
        assert resp.index >= r.index, (name, resp.index, r.index)
    kv = results["kv"][0].json()[0]
    assert base64.b64decode(kv["Value"]) == b"saved" and kv["ModifyIndex"] < idx
    # the next blocking call from the index it got parks until a later change
    t0 = time.monotonic()
    r2 = agent.get("/v1/kv/watched?index=%d&wait=1s" % results["kv"][0].index, timeout=10)
    assert time.monotonic() - t0 >= 0.9 and r2.index == results["kv"][0].index
