"""Failing tests for Herald cluster bugs found while writing tests/integration/test_cluster.py
(outside tests/integration, so make test does not collect them, until they are fixed). Run:
  cd tests/integration && /usr/bin/python3 -m pytest -q -p no:cacheprovider \
      ../repro/cluster_bugs.py -s
"""
import statistics
import sys
import time

sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__file__), "..", "integration"))
from conftest import make_cluster, tmpdir_path, wait_until  # noqa: F401,E402  (fixtures)
from test_cluster import dns_a, kv_keys, register  # noqa: E402


def _write(c, n, prefix):
    for i in range(n):
        assert c.live()[i % len(c.live())].put("/v1/kv/%s/%d" % (prefix, i), "x").status == 200


def test_bug1_wiped_follower_catches_up_by_log_replication(make_cluster):
    """BUG 1: a follower whose Raft state and catalog were removed (node-id kept, so the
    configuration still lists its id) never catches up while the leader still holds the
    log from index 2 (no snapshot needed): libraft keeps the follower's old match_index,
    next_index drops to 2 below it, and sendAppendEntries computes
    currently_inflight = next_index - match_index - 1 (unsigned underflow) >=
    max_inflight_entries -> heartbeats with no entries forever."""
    c = make_cluster(3).start()  # default raft_snapshot_threshold / trailing
    leader = c.wait_leader()
    f = c.followers(leader)[0]
    _write(c, 100, "a")
    assert f.stop() == 0
    f.log.close()
    f.wipe(keep_node_id=True)
    f.restart()
    c.wait_converged(timeout=30)  # fails: f stays at AppliedIndex 0
    assert len(kv_keys(f, "a")) == 100


def test_bug2_fully_wiped_server_rejoins(make_cluster):
    """BUG 2: a server whose whole data dir was removed comes back with a new node-id (new
    Raft id) at the same address; its JOIN is refused forever ("conflict: address ...
    belongs to server id <old>"), where Consul replaces the stale server with the same
    address. Meanwhile the leader keeps sending Raft traffic for the OLD id to that address
    and the new process accepts it (the transport handshake does not say which id it is
    for): it even installs snapshots as if it were the old server."""
    c = make_cluster(3, config={"raft_snapshot_threshold": 64, "raft_trailing_logs": 64}).start()
    leader = c.wait_leader()
    f = c.followers(leader)[0]
    _write(c, 150, "b")
    assert f.stop() == 0
    f.log.close()
    f.wipe(keep_node_id=False)
    f.restart()
    # It should be a member under its new id, with all the data, within a minute.
    wait_until(lambda: "joined the cluster" in f.read_log()
               or "configuration lists us" in f.read_log(), timeout=60, interval=0.5,
               msg="the wiped server joined")
    c.wait_converged(timeout=30)


def test_bug4_server_that_left_rejoins_when_started_again(make_cluster):
    """BUG 4 (Consul compatibility): after `herald leave`, starting the same server again
    with its data dir and -retry-join does not bring it back: its Raft state makes it skip
    formation/join, its last configuration no longer lists it, and it stays a leaderless
    candidate forever (serving its stale replica over DNS). Consul rejoins such a server."""
    from test_cluster import cli, voters
    c = make_cluster(3).start()
    leader = c.wait_leader()
    f = c.followers(leader)[0]
    assert cli(f, "leave").returncode == 0
    assert f.proc.wait(30) == 0
    f.log.close()
    f.restart()
    wait_until(lambda: voters(leader).get(f.server_addr) is True, timeout=30, interval=0.2,
               msg="the server that left is a voter again")
    c.wait_converged(timeout=30)
