"""Failover (issue 10 item 6; consensus/failover.c, DESIGN.md 2.6).

A leader killed with kill -9 has its connections closed by the kernel at once; the followers
see its Raft streams end and start an election at once, in turns by id, instead of waiting out
the randomized election timeout (500-1000 ms, for the slower of the two followers with
pre-vote). Five kills under writes: each time the survivors say that the stream from the
leader ended and that they started the pre-vote then, one election is enough (the term rises
by exactly one: no split vote), a write sent after the kill is acknowledged, and none is lost.
How fast that is (about 0.14 s against 0.9 s before) is measured by tests/bench/cluster.sh,
not asserted here: the times are printed. And the other side of it: a follower stopped
(SIGSTOP) for 300 ms at a time under writes causes no election (the Raft term stays), and no
acknowledged write is lost.

Every wait is bounded; servers are stopped by pid (make_cluster's teardown)."""
import statistics
import time

from conftest import wait_until
from herald_test.writers import Writers


def term(a):
    v = a.json_or_none("/v1/agent/self", timeout=5)
    return v["Stats"]["raft"]["term"] if v else None


def assert_all_present(cluster, acked):
    cluster.wait_converged(timeout=30)
    for a in cluster:
        r = a.get("/v1/kv/fo/?keys&stale", timeout=10)
        have = set(r.json()) if r.status == 200 else set()
        missing = [k for k in acked if k not in have]
        assert not missing, "%s lacks %d acknowledged writes, e.g. %s" % (
            a.addr, len(missing), missing[:5])


def log_size(a):
    with open(a.log_path, "rb") as f:
        return len(f.read())


def log_since(a, offset):
    with open(a.log_path, "rb") as f:
        return f.read()[offset:].decode("utf-8", "replace")


def test_kill9_leader_is_replaced_by_an_election_started_at_once(make_cluster):
    c = make_cluster(3).start()
    w = Writers(c.live, "fo/", n=4, pause=(0.002, 0.01))
    firsts, elected = [], []
    try:
        for rnd in range(5):
            leader = c.wait_leader(among=c.agents, timeout=30)
            survivors = [a for a in c if a is not leader]
            wait_until(lambda: w.first_ack_after(time.monotonic() - 0.2) is not None,
                       timeout=10, msg="writes flowing")
            t_before = max(term(a) for a in survivors)
            marks = {a.addr: log_size(a) for a in survivors}
            t_kill = time.monotonic()
            leader.kill9()
            new = c.wait_leader(among=survivors, timeout=20)
            elected.append(time.monotonic() - t_kill)
            wait_until(lambda: w.first_ack_after(t_kill) is not None, timeout=20,
                       interval=0.005, msg="a write acknowledged after the kill")
            firsts.append(w.first_ack_after(t_kill))
            print("round %d: killed %s, new leader %s agreed after %.0f ms, first acknowledged "
                  "write after %.0f ms" % (rnd + 1, leader.addr, new.addr, elected[-1] * 1e3,
                                           firsts[-1] * 1e3))
            for a in survivors:
                text = log_since(a, marks[a.addr])
                assert "ended: election in" in text, "%s did not see the stream end:\n%s" % (
                    a.addr, text[-3000:])
            assert "starting a pre-vote now" in log_since(new, marks[new.addr]), \
                "the new leader %s did not start its pre-vote at the stream's end" % new.addr
            t_after = term(new)
            assert t_after == t_before + 1, "term %d -> %d: more than one election" % (
                t_before, t_after)
            leader.restart()
            c.wait_leader(among=c.agents, timeout=30)  # all three agree again
    finally:
        w.stop()
    print("first acknowledged write after the kill: median %.0f ms, max %.0f ms (%s)" % (
        statistics.median(firsts) * 1e3, max(firsts) * 1e3,
        " ".join("%.0f" % (x * 1e3) for x in firsts)))
    assert_all_present(c, w.acked)


def test_follower_stopped_300ms_at_a_time_causes_no_election(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    starved = c.followers(leader)[0]
    t0 = max(term(a) for a in c)
    w = Writers(c.live, "fo/", n=4, pause=(0.002, 0.01))
    stops = 0
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            starved.sigstop()
            time.sleep(0.3)  # the stop's length is the test's input, not a wait
            starved.sigcont()
            stops += 1
            time.sleep(0.1 + 0.1 * (stops % 5))
    finally:
        if starved.stopped:
            starved.sigcont()
        w.stop()
    t1 = max(term(a) for a in c)
    print("%d stops; term %d -> %d; %d acknowledged, %d unknown" % (
        stops, t0, t1, len(w.acked), w.unknown))
    assert t1 == t0, "an election while a follower was starved: term %d -> %d" % (t0, t1)
    assert c.wait_leader() is leader
    assert len(w.acked) > 100
    assert_all_present(c, w.acked)
