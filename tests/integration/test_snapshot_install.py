"""A follower caught up by a large snapshot is not taken for a wiped server (consensus/io.c).

libraft 0.22 answers AppendEntries with last index 0 while it installs a snapshot; the leader
must not read that as "its Raft state is gone" and replace the server (remove and re-add while
the install is in flight: a use-after-free inside libraft). The follower is stopped (its state
kept), the catalog grows to tens of MiB and the log is compacted past it, then it is started:
the leader sends it the snapshot and heartbeats cross the install. Every wait is bounded;
every process is stopped by pid (make_cluster's teardown checks each graceful stop exits 0
under ASan)."""
import threading
import time

SNAP_CONFIG = {"raft_snapshot_threshold": 64, "raft_trailing_logs": 64}
VALUE = "v" * (48 * 1024)


def put_many(agent, prefix, n, threads=4):
    errors = []

    def run(tid):
        for i in range(tid, n, threads):
            r = agent.put("/v1/kv/%s/%d" % (prefix, i), VALUE, timeout=30)
            if r.status != 200:
                errors.append((i, r.status, r.text[:100]))

    ts = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
        assert not t.is_alive(), "writer stuck"
    assert not errors, errors[:5]


def test_follower_installing_a_large_snapshot_is_not_replaced(make_cluster):
    c = make_cluster(3, config=SNAP_CONFIG).start()
    leader = c.wait_leader()
    f = c.followers(leader)[0]
    put_many(leader, "before", 20)
    c.wait_converged(timeout=30)
    assert f.stop() == 0
    f.log.close()
    t0 = time.monotonic()
    put_many(leader, "big", 600)
    print("wrote 600 x 48 KiB in %.1f s" % (time.monotonic() - t0))
    t0 = time.monotonic()
    f.restart()
    digests = c.wait_converged(among=c.agents, timeout=120)
    print("follower caught up in %.2f s: %s" % (time.monotonic() - t0, digests))
    assert c.wait_leader(among=c.agents, timeout=30) is leader
    assert "snapshot restored" in f.read_log(), f.read_log()[-3000:]
    log = leader.read_log()
    assert "its Raft state is gone" not in log, log[-5000:]
    assert "removing it to add it again" not in log, log[-5000:]
    assert all(a.alive() for a in c), [a.addr for a in c if not a.alive()]
    assert f.put("/v1/kv/after", "x").status == 200
    c.wait_converged(timeout=30)
