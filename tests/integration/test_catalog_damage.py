"""A damaged catalog is never served as data (issue 9, item 7).

Bytes of catalog/data.mdb are changed with pwrite, either while the server runs (LMDB maps the
file shared: the server's next read sees the page cache, as it would see a disk that changed
under it) or while it is stopped. Every read of a damaged record answers 500 naming it (a
listing too, never a partial 200), DNS answers SERVFAIL, the damage is logged and counted
(/v1/agent/self Stats.catalog.damaged_reads). At start, a single server with a damaged or
truncated catalog exits 1 naming the file; a server of a cluster sets the catalog aside and
catches up (digests equal). A flipped byte in the last Raft segment is logged naming it.
"""
import os
import subprocess


from conftest import wait_until, dns_query


def data_mdb(agent):
    return os.path.join(agent.data_dir, "catalog", "data.mdb")


def flip_marker(path, marker, offset=3):
    """Flips one bit of every copy of marker in the file (LMDB may hold an older copy in a
    freed page); returns how many copies it changed."""
    with open(path, "rb") as f:
        data = f.read()
    at, n = data.find(marker), 0
    fd = os.open(path, os.O_WRONLY)
    try:
        while at >= 0:
            pos = at + offset
            os.pwrite(fd, bytes([data[pos] ^ 0x20]), pos)
            n += 1
            at = data.find(marker, at + 1)
        os.fsync(fd)
    finally:
        os.close(fd)
    return n


def single(make_agent, tmpdir_path, name="single"):
    d = os.path.join(tmpdir_path, "data-" + name)
    return make_agent(data_dir=d).start()


def wait_exit(agent, timeout=30):
    try:
        rc = agent.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("agent still running:\n" + agent.read_log())
    assert "Sanitizer" not in agent.read_log(), agent.read_log()
    return rc


def damaged_reads(agent):
    r = agent.get("/v1/agent/self")
    assert r.status == 200
    return r.json()["Stats"]["catalog"]["damaged_reads"]


def test_damaged_kv_value_is_never_served(make_agent, tmpdir_path):
    a = single(make_agent, tmpdir_path, "kv")
    marker = b"MARKER-kv-value-0123456789"
    assert a.put("/v1/kv/foo/a", marker).status == 200
    for k in ("b", "c", "d"):
        assert a.put("/v1/kv/foo/" + k, "other-" + k).status == 200
    r = a.get("/v1/kv/foo/a?raw")
    assert r.status == 200 and r.body == marker

    assert flip_marker(data_mdb(a), marker) >= 1
    r = a.get("/v1/kv/foo/a")
    assert r.status == 500, (r.status, r.body)
    assert "catalog record kv/foo/a failed its checksum" in r.text
    r = a.get("/v1/kv/foo/a?raw")
    assert r.status == 500 and marker not in r.body
    r = a.get("/v1/kv/foo?recurse")
    assert r.status == 500, (r.status, r.body[:200])
    assert "kv/foo/a" in r.text
    r = a.get("/v1/kv/foo?keys")
    assert r.status == 500
    # the other records still read
    r = a.get("/v1/kv/foo/b?raw")
    assert r.status == 200 and r.body == b"other-b"
    assert damaged_reads(a) >= 4
    wait_until(lambda: "catalog record kv/foo/a failed its checksum" in a.read_log(),
               timeout=5, msg="the damage logged")

    # a restart walks the catalog: a single server refuses to start, naming the file
    assert a.stop() == 0
    a.expect_fail = True
    a.start(wait=False)
    assert wait_exit(a) == 1
    log = a.read_log()
    assert data_mdb(a) in log and "kv/foo/a" in log, log


def test_damaged_service_answers_servfail_and_500(make_agent, tmpdir_path):
    a = single(make_agent, tmpdir_path, "svc")
    marker = "MARKER-service-meta-0123456789"
    svc = {"Name": "damaged", "ID": "damaged1", "Port": 8080, "Address": "10.9.8.7",
           "Meta": {"m": marker}}
    assert a.put("/v1/agent/service/register", svc).status == 200
    assert a.put("/v1/agent/service/register",
                 {"Name": "fine", "ID": "fine1", "Port": 80, "Address": "10.9.8.6"}).status == 200
    wait_until(lambda: a.get("/v1/catalog/service/damaged").json(), msg="service registered")

    assert flip_marker(data_mdb(a), marker.encode()) >= 1
    # never asked before: not in the answer cache
    m = dns_query(a, "damaged.service.consul", "A")
    import dns.rcode
    assert m.rcode() == dns.rcode.SERVFAIL, m.to_text()
    m = dns_query(a, "damaged.service.consul", "SRV")
    assert m.rcode() == dns.rcode.SERVFAIL, m.to_text()
    m = dns_query(a, "fine.service.consul", "A")
    assert m.rcode() == dns.rcode.NOERROR and "10.9.8.6" in m.to_text()

    r = a.get("/v1/catalog/service/damaged")
    assert r.status == 500 and "services/" in r.text and "damaged1" in r.text, r.text
    r = a.get("/v1/health/service/damaged")
    assert r.status == 500
    r = a.get("/v1/catalog/node/" + a.node_name)
    assert r.status == 500
    assert damaged_reads(a) >= 3
    assert a.stop() == 0


def test_truncated_catalog_single_server_exits_1(make_agent, tmpdir_path):
    a = single(make_agent, tmpdir_path, "trunc")
    big = "x" * 3000
    for i in range(300):
        assert a.put("/v1/kv/fill/%03d" % i, big).status == 200
    assert a.stop() == 0
    path = data_mdb(a)
    size = os.path.getsize(path)
    os.truncate(path, size // 3)
    a.expect_fail = True
    a.start(wait=False)
    rc = wait_exit(a)
    log = a.read_log()
    assert rc == 1, (rc, log)  # not a signal (SIGBUS)
    assert path in log and "truncated" in log, log


def test_truncated_catalog_cluster_member_catches_up(make_cluster):
    c = make_cluster(3)
    c.start()
    leader = c.wait_leader()
    for i in range(200):
        assert leader.put("/v1/kv/fill/%03d" % i, "y" * 2000).status == 200
    c.wait_converged(timeout=30)
    f = c.followers(leader)[0]
    assert f.stop() == 0
    path = os.path.join(f.data_dir, "catalog", "data.mdb")
    os.truncate(path, os.path.getsize(path) // 3)
    assert leader.put("/v1/kv/while-down", "z").status == 200
    f.restart()
    f.wait_ready(timeout=30)
    digests = c.wait_converged(timeout=30)
    assert len({d["Digest"] for d in digests.values()}) == 1
    r = f.get("/v1/kv/while-down?raw&stale")
    assert r.status == 200 and r.body == b"z"
    log = f.read_log()
    assert path in log and "truncated" in log, log
    assert os.path.exists(path + ".damaged")


def test_flipped_byte_in_last_raft_segment_is_logged(make_agent, tmpdir_path):
    """libraft drops the damaged batch (and what follows) with no word. The log line names the
    segment. A single server then stops (exit 1): new entries would take indexes its catalog
    already holds and be skipped, so writes would be answered and never applied. Moving the
    catalog aside (as the message says) rebuilds it from the log as loaded, and writes apply."""
    a = single(make_agent, tmpdir_path, "raft")
    marker = b"MARKER-raft-entry-0123456789"
    for i in range(5):
        assert a.put("/v1/kv/r/%d" % i, "v%d" % i).status == 200
    assert a.put("/v1/kv/r/last", marker).status == 200
    assert a.stop() == 0
    raft = os.path.join(a.data_dir, "raft")
    segs = []
    for name in os.listdir(raft):
        p = os.path.join(raft, name)
        with open(p, "rb") as f:
            if marker in f.read():
                segs.append(name)
    assert segs, os.listdir(raft)
    for name in segs:
        assert flip_marker(os.path.join(raft, name), marker) >= 1
    a.expect_fail = True
    a.start(wait=False)
    assert wait_exit(a) == 1
    log = a.read_log()
    lines = [ln for ln in log.splitlines() if "raft log damaged" in ln]
    print(lines)
    assert lines and any(name in lines[0] for name in segs), log
    assert "cannot go on" in log

    # the way out the message gives: the catalog rebuilt from the log as loaded
    cat = os.path.join(a.data_dir, "catalog")
    os.rename(cat, cat + ".aside")
    a.expect_fail = False
    a.start()
    for i in range(8):
        assert a.put("/v1/kv/after/%d" % i, "a%d" % i).status == 200
        r = a.get("/v1/kv/after/%d?raw" % i)
        assert r.status == 200 and r.body == b"a%d" % i
    assert a.stop() == 0
