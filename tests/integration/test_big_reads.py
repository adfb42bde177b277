"""Big reads never stall the loop thread (admin/api/api.c, reader jobs): on a loaded 3-server
cluster, eight parallel full-catalog reads on the leader cost it neither its leadership (the
Raft term stays the same on every server) nor its HTTP responsiveness (a small read answers
within 200 ms while they run), and the leader's memory goes back down afterwards.

The fill: nodes with node meta, a service and a check with some output each, registered in
parallel through /v1/catalog/register (group commit packs them), so /v1/catalog/nodes and
/v1/health/state/any are several MB each. RSS figures are printed (pytest -s shows them)."""
import http.client
import json
import os
import threading
import time

from conftest import ROOT, wait_until
from herald_test import paths as herald_paths

RELEASE = os.environ.get("HERALD_RELEASE_BIN", os.path.join(ROOT, "build", "herald"))
RSS_SLACK_KB = 64 * 1024

NODES = 3000
META = {"k%02d" % i: "v" * 100 for i in range(24)}
OUTPUT = "o" * 1500


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _term(agent):
    r = agent.get("/v1/agent/self", timeout=10)
    assert r.status == 200, r.text
    return r.json()["Stats"]["raft"]["term"]


def _fill(leader, n, workers=16):
    todo = list(range(n))
    lock = threading.Lock()
    errors = []

    def run():
        conn = http.client.HTTPConnection(leader.addr, 8500, timeout=30)
        while True:
            with lock:
                if not todo:
                    break
                i = todo.pop()
            body = json.dumps({
                "Node": "bulk-%05d" % i, "Address": "10.%d.%d.%d" % (i >> 16, (i >> 8) & 255,
                                                                     i & 255),
                "NodeMeta": META,
                "Service": {"Service": "svc%d" % (i % 50), "ID": "svc-%d" % i, "Port": 80,
                            "Tags": ["a", "b"]},
                "Check": {"CheckID": "chk-%d" % i, "Name": "c", "Status": "passing",
                          "ServiceID": "svc-%d" % i, "Output": OUTPUT},
            })
            conn.request("PUT", "/v1/catalog/register", body)
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                errors.append(r.status)
        conn.close()

    ts = [threading.Thread(target=run) for _ in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors[:5]


def _scenario(make_cluster):
    """Fills a 3-server cluster, runs 8 parallel big reads on the leader while timing small
    reads, and returns the figures."""
    c = make_cluster(3).start()
    leader = c.wait_leader()
    t0 = time.time()
    _fill(leader, NODES)
    fill_s = time.time() - t0
    c.wait_converged(timeout=60)
    terms = {a.addr: _term(a) for a in c}
    sizes = {p: len(leader.get(p, timeout=60).body)
             for p in ("/v1/catalog/nodes", "/v1/health/state/any")}
    assert min(sizes.values()) > 2_000_000, sizes
    rss_before = _rss_kb(leader.proc.pid)

    paths = ["/v1/catalog/nodes", "/v1/health/state/any"] * 4
    done = []
    peak = rss_before

    def big(path):
        conn = http.client.HTTPConnection(leader.addr, 8500, timeout=120)
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        done.append((r.status, len(body)))
        conn.close()

    ts = [threading.Thread(target=big, args=(p,)) for p in paths]
    t_big = time.time()
    for t in ts:
        t.start()
    small = []
    while any(t.is_alive() for t in ts) and time.time() - t_big < 120:
        t1 = time.time()
        r = leader.get("/v1/kv/nothing", timeout=10)
        small.append(time.time() - t1)
        assert r.status == 404
        peak = max(peak, _rss_kb(leader.proc.pid))
        time.sleep(0.02)  # pacing: the rate of the small reads and RSS samples
    for t in ts:
        t.join(120)
    big_s = time.time() - t_big
    assert len(done) == 8 and all(s == 200 and n > 2_000_000 for s, n in done), done

    # memory goes back: wait (bounded) for the leader's RSS to settle near where it started
    try:
        wait_until(lambda: _rss_kb(leader.proc.pid) < rss_before + RSS_SLACK_KB, timeout=5,
                   interval=0.2, msg="RSS settling")
    except AssertionError:
        pass
    rss_after = _rss_kb(leader.proc.pid)
    print("\n%s: fill %d nodes %.1fs; bodies %s; 8 reads %.2fs; small reads n=%d max %.0f ms; "
          "leader RSS before %d MB, peak %d MB, after %d MB"
          % (herald_paths.HERALD, NODES, fill_s, sizes, big_s, len(small),
             1000 * max(small or [0]), rss_before // 1024, peak // 1024, rss_after // 1024))
    terms_after = {a.addr: _term(a) for a in c}
    return dict(cluster=c, leader=leader, terms=terms, terms_after=terms_after, small=small,
                rss_before=rss_before, rss_after=rss_after)


def _check_leadership_and_latency(f):
    assert f["terms_after"] == f["terms"], "a term changed: leadership was lost"
    assert f["cluster"].wait_leader() is f["leader"]
    assert f["small"] and max(f["small"]) < 0.2, \
        "small read took %.0f ms" % (1000 * max(f["small"]))


def test_parallel_full_catalog_reads_keep_leadership_and_http_responsive(make_cluster):
    _check_leadership_and_latency(_scenario(make_cluster))


def test_parallel_full_catalog_reads_give_memory_back(make_cluster, monkeypatch):
    """RSS only means something with glibc's allocator: ASan keeps freed memory in its
    quarantine. So this one runs the release build (HERALD_RELEASE_BIN, default
    build/herald)."""
    assert os.path.exists(RELEASE), "no release build at %s (make all; make test does)" % RELEASE
    monkeypatch.setattr(herald_paths, "HERALD", RELEASE)
    f = _scenario(make_cluster)
    _check_leadership_and_latency(f)
    assert f["rss_after"] < f["rss_before"] + RSS_SLACK_KB, (f["rss_before"], f["rss_after"])
