"""Linearizability of one KV key (a CAS register) on a 3-server cluster while its leader is
killed (kill -9) and paused (SIGSTOP, then SIGCONT: a deposed leader coming back), checked
with tests/integration/linearizability.py; reads are ?consistent.

The checker is tested first on hand-made histories (linearizable and not) and against a
brute-force search over every order of small random histories, so a broken checker cannot
pass the cluster test silently."""
import base64
import itertools
import random
import threading
import time

import linearizability as lin
from linearizability import ABSENT, Op


# ---- the checker on hand-made histories -----------------------------------------------------

def W(inv, resp, value, index, c=None):
    return Op("write", inv, resp, value=value, index=index, client=c)


def Wq(inv, value, c=None):  # indeterminate write
    return Op("write", inv, None, ok=None, value=value, client=c)


def CAS(inv, resp, expect, value, index=None, c=None):
    """index None: the cas answered false."""
    return Op("cas", inv, resp, ok=index is not None, expect=expect, value=value, index=index,
              client=c)


def CASq(inv, expect, value, c=None):
    return Op("cas", inv, None, ok=None, expect=expect, value=value, client=c)


def R(inv, resp, value=None, index=None, c=None):
    return Op("read", inv, resp, result=ABSENT if value is None else (value, index), client=c)


def test_checker_sequential_history_is_linearizable():
    h = [R(0, 1), W(2, 3, "a", 5), R(4, 5, "a", 5), CAS(6, 7, 5, "b", 8), R(8, 9, "b", 8),
         CAS(10, 11, 5, "c"), R(12, 13, "b", 8), CAS(14, 15, 0, "d"), W(16, 17, "e", 9),
         R(18, 19, "e", 9)]
    assert lin.check(h)


def test_checker_stale_read_after_a_completed_write_is_a_violation():
    assert not lin.check([W(0, 1, "a", 5), R(2, 3)])
    assert not lin.check([W(0, 1, "a", 5), W(2, 3, "b", 6), R(4, 5, "a", 5)])
    # The same read overlapping the second write may see either.
    assert lin.check([W(0, 1, "a", 5), W(2, 5, "b", 6), R(3, 4, "a", 5)])
    assert lin.check([W(0, 1, "a", 5), W(2, 5, "b", 6), R(3, 4, "b", 6)])


def test_checker_reads_going_back_in_time_are_a_violation():
    # a is written, then b (still in progress); once a read saw b, a later read cannot see a.
    h = [W(0, 1, "a", 5, c=1), W(2, 10, "b", 6, c=2), R(3, 4, "b", 6, c=3),
         R(5, 6, "a", 5, c=4)]
    assert not lin.check(h)
    # ... but a, then b is fine; and with both writes concurrent, b then a is fine too.
    assert lin.check([W(0, 1, "a", 5), W(2, 10, "b", 6), R(3, 4, "a", 5), R(5, 6, "b", 6)])
    assert lin.check([W(0, 10, "a", 5), W(0, 10, "b", 6), R(1, 2, "b", 6), R(3, 4, "a", 5)])


def test_checker_lost_update_by_two_successful_cas_is_a_violation():
    h = [W(0, 1, "a", 5), CAS(2, 5, 5, "b", 7, c=1), CAS(2, 5, 5, "c", 8, c=2)]
    assert not lin.check(h)
    # One succeeds, the other fails: fine, whichever order.
    assert lin.check([W(0, 1, "a", 5), CAS(2, 5, 5, "b", 7, c=1), CAS(2, 5, 5, "c", c=2)])
    # A cas that answered false although nothing changed the index is a violation.
    assert not lin.check([W(0, 1, "a", 5), CAS(2, 3, 5, "b")])


def test_checker_wrong_index_is_a_violation():
    assert not lin.check([W(0, 1, "a", 5), R(2, 3, "a", 6)])
    assert not lin.check([R(0, 1, "a", 5)])  # a value never written


def test_checker_cas_zero_means_absent():
    assert lin.check([CAS(0, 1, 0, "a", 4), CAS(2, 3, 0, "b"), R(4, 5, "a", 4)])
    assert not lin.check([CAS(0, 1, 0, "a", 4), CAS(2, 3, 0, "b", 6)])


def test_checker_indeterminate_operations():
    # An indeterminate write may take effect (a later read sees it, index unknown until then)...
    assert lin.check([Wq(0, "a"), R(5, 6, "a", 9), R(7, 8, "a", 9)])
    # ... but not before its invocation,
    assert not lin.check([R(0, 1, "a", 9), Wq(2, "a")])
    # nor with two different indexes, nor come back after being overwritten.
    assert not lin.check([Wq(0, "a"), R(5, 6, "a", 9), R(7, 8, "a", 10)])
    assert not lin.check([Wq(0, "a"), R(1, 2, "a", 9), W(3, 4, "b", 10), R(5, 6, "a", 9)])
    # It may also never happen.
    assert lin.check([W(0, 1, "a", 5), Wq(2, "b"), R(3, 4, "a", 5), R(50, 51, "a", 5)])
    # An unobserved indeterminate write explains a cas that failed...
    assert lin.check([W(0, 1, "a", 5), Wq(2, "x"), CAS(3, 4, 5, "b")])
    # ... which nothing else explains.
    assert not lin.check([W(0, 1, "a", 5), CAS(3, 4, 5, "b")])
    # but then the old value cannot be read again.
    assert not lin.check([W(0, 1, "a", 5), Wq(2, "x"), CAS(3, 4, 5, "b"), R(5, 6, "a", 5)])
    # An indeterminate cas takes effect only if its expectation held.
    assert lin.check([W(0, 1, "a", 5), CASq(2, 5, "b"), R(3, 4, "b", 7)])
    assert not lin.check([W(0, 1, "a", 5), CASq(2, 4, "b"), R(3, 4, "b", 7)])
    # An indeterminate read says nothing.
    assert lin.check([W(0, 1, "a", 5), Op("read", 2, None, ok=None, result=ABSENT)])


def _brute_force(history):
    """Every subset of the indeterminate ops, every order consistent with real time,
    simulated on an independent model: linearizable or not."""
    hist = [o for o in history if not (o.kind == "read" and o.ok is None)]
    det = [o for o in hist if o.ok is not None]
    ind = [o for o in hist if o.ok is None]

    def apply(op, states):
        out = set()
        for st in states:
            cur_v, cur_i = st if st is not None else (None, None)
            if op.kind == "read":
                if op.result is ABSENT:
                    if st is None:
                        out.add(st)
                elif st is not None and cur_v == op.result[0] and cur_i in ("?", op.result[1]):
                    out.add((cur_v, op.result[1]))
                continue
            new = (op.value, op.index if op.ok else "?")
            if op.kind == "write":
                out.add(new)
                continue
            if op.expect == 0:
                can_match, can_miss = st is None, st is not None
            elif st is None:
                can_match, can_miss = False, True
            elif cur_i == "?":
                can_match = can_miss = True
            else:
                can_match, can_miss = cur_i == op.expect, cur_i != op.expect
            if op.ok is None or op.ok:
                if can_match:
                    out.add(new)
            elif can_miss:
                out.add(st)
        return out

    for k in range(len(ind) + 1):
        for sub in itertools.combinations(ind, k):
            ops = det + list(sub)
            for perm in itertools.permutations(ops):
                ok = True
                for x in range(len(perm)):
                    for y in range(x + 1, len(perm)):
                        if perm[y].resp < perm[x].inv:  # y finished before x began
                            ok = False
                            break
                    if not ok:
                        break
                if not ok:
                    continue
                states = {None}
                for op in perm:
                    states = apply(op, states)
                    if not states:
                        break
                if states:
                    return True
    return False


def _random_history(rng, n):
    """A random small history: an actual sequential run with intervals around each op's
    linearization point, then, often, one result corrupted."""
    t = 0.0
    state = None
    index = 3
    ops = []
    written = []
    for k in range(n):
        t += rng.uniform(0.1, 1.0)
        inv = t - rng.uniform(0, 2.5)
        resp = t + rng.uniform(0, 2.5)
        kind = rng.choice(["read", "read", "write", "cas"])
        value = "v%d" % k
        indeterminate = kind != "read" and rng.random() < 0.25
        if kind == "read":
            ops.append(Op("read", inv, resp, result=ABSENT if state is None else state))
            continue
        if kind == "cas":
            expect = rng.choice([0, index, index - 1, state[1] if state else 0])
            matched = (state is None) if expect == 0 else (state is not None and
                                                          state[1] == expect)
        else:
            expect, matched = None, True
        took = matched and (not indeterminate or rng.random() < 0.6)
        if took:
            index += rng.choice([1, 1, 2])
            state = (value, index)
            written.append(state)
        if indeterminate:
            ops.append(Op(kind, inv, None, ok=None, value=value, expect=expect))
        else:
            ops.append(Op(kind, inv, resp, ok=took if kind == "cas" else True, value=value,
                          expect=expect, index=index if took else None))
    if rng.random() < 0.6:
        reads = [o for o in ops if o.kind == "read"]
        if reads:
            o = rng.choice(reads)
            choices = [ABSENT] + written + [("zz", 99)]
            o.result = rng.choice(choices)
    return ops


def test_checker_agrees_with_brute_force_on_random_small_histories():
    rng = random.Random(1234)
    results = {True: 0, False: 0}
    for _ in range(400):
        h = _random_history(rng, rng.randint(2, 7))
        want = _brute_force(h)
        got = bool(lin.check(h))
        assert got == want, "checker %s, brute force %s: %r" % (got, want, h)
        results[want] += 1
    print("random histories: %d linearizable, %d not" % (results[True], results[False]))
    assert results[True] > 50 and results[False] > 50


def test_checker_is_fast_on_a_long_concurrent_history():
    """A 400-op history of 6 concurrent clients with indeterminate ops: seconds at most."""
    rng = random.Random(7)
    t = 0.0
    state, index, ops = None, 10, []
    for k in range(400):
        t += rng.uniform(0.001, 0.004)
        inv, resp = t - rng.uniform(0, 0.01), t + rng.uniform(0, 0.01)
        r = rng.random()
        if r < 0.45:
            ops.append(R(inv, resp, *(state if state else (None, None))))
        elif r < 0.97:
            index += 1
            state = ("v%d" % k, index)
            ops.append(W(inv, resp, state[0], index))
        else:
            ops.append(Wq(inv, "lost%d" % k))
    t0 = time.monotonic()
    res = lin.check(ops)
    print("400 ops: %r in %.2f s" % (res, time.monotonic() - t0))
    assert res
    assert time.monotonic() - t0 < 20


# ---- the cluster ---------------------------------------------------------------------------

KEY = "lin/register"


class Client(threading.Thread):
    """Random ops on KEY against random live servers; every op recorded with its times."""

    def __init__(self, cid, cluster, history, lock, budget, stop_ev, timeout=5):
        super().__init__(daemon=True)
        self.cid = cid
        self.cluster = cluster
        self.history = history
        self.lock = lock
        self.budget = budget
        self.stop_ev = stop_ev
        self.timeout = timeout
        self.rng = random.Random(cid * 7919)
        self.last_index = 0

    def run(self):
        seq = 0
        while not self.stop_ev.is_set():
            with self.lock:
                if len(self.history) >= self.budget:
                    return
            live = self.cluster.live()
            if not live:
                time.sleep(0.01)  # pacing: no server up to ask (load generator)
                continue
            a = self.rng.choice(live)
            seq += 1
            value = "c%d-%d" % (self.cid, seq)
            r = self.rng.random()
            if r < 0.4:
                op = self.read(a)
            elif r < 0.65:
                op = self.write(a, value, None)
            else:
                expect = self.last_index if self.rng.random() < 0.85 else 0
                op = self.write(a, value, expect)
            op.client = self.cid
            op.server = a.addr
            with self.lock:
                self.history.append(op)
            time.sleep(self.rng.uniform(0.005, 0.02))  # pacing: the client's think time

    def read(self, a):
        t0 = time.monotonic()
        try:
            res = a.get("/v1/kv/%s?consistent" % KEY, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 - unknown: dropped by the checker
            return Op("read", t0, None, ok=None, note=repr(e)[:60])
        t1 = time.monotonic()
        if res.status == 404:
            return Op("read", t0, t1, result=ABSENT)
        if res.status != 200:
            return Op("read", t0, None, ok=None, note="%d %s" % (res.status, res.text[:60]))
        e = res.json()[0]
        self.last_index = e["ModifyIndex"]
        return Op("read", t0, t1,
                  result=(base64.b64decode(e["Value"] or "").decode(), e["ModifyIndex"]))

    def write(self, a, value, expect):
        kind = "write" if expect is None else "cas"
        path = "/v1/kv/" + KEY + ("" if expect is None else "?cas=%d" % expect)
        t0 = time.monotonic()
        try:
            res = a.put(path, value, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 - outcome unknown
            return Op(kind, t0, None, ok=None, value=value, expect=expect, note=repr(e)[:60])
        t1 = time.monotonic()
        if res.status != 200:  # 500: no leader, or "may have been applied": unknown
            return Op(kind, t0, None, ok=None, value=value, expect=expect,
                      note="%d %s" % (res.status, res.text[:60]))
        body = res.body.strip()
        assert body in (b"true", b"false"), body
        if body == b"true":
            self.last_index = res.index
            return Op(kind, t0, t1, ok=True, value=value, expect=expect, index=res.index)
        assert kind == "cas", "a plain PUT answered false"
        return Op(kind, t0, t1, ok=False, value=value, expect=expect)


def test_cas_register_is_linearizable_under_leader_kills_and_pauses(make_cluster):
    c = make_cluster(3).start()
    history, lock, stop_ev = [], threading.Lock(), threading.Event()
    budget = 380
    clients = [Client(i, c, history, lock, budget, stop_ev) for i in range(5)]

    def count():
        with lock:
            return len(history)

    def wait_ops(n, timeout=60):
        # Bounded; ends early if the clients spent the budget.
        deadline = time.monotonic() + timeout
        while count() < n and time.monotonic() < deadline and any(
                t.is_alive() for t in clients):
            time.sleep(0.01)  # the poll interval of this bounded wait

    for t in clients:
        t.start()
    disruptions = []
    try:
        for k, how in enumerate(["kill", "pause", "kill"]):
            wait_ops(50 + 100 * k)
            leader = c.wait_leader(timeout=30)
            survivors = [a for a in c if a is not leader]
            if how == "kill":
                leader.kill9()
            else:
                leader.sigstop()
            t0 = time.monotonic()
            new = c.wait_leader(among=survivors, timeout=30)
            disruptions.append("%s %s -> new leader %s after %.2f s (op %d)" % (
                how, leader.addr, new.addr, time.monotonic() - t0, count()))
            wait_ops(count() + 20, timeout=20)
            if how == "kill":
                leader.restart()
            else:
                leader.sigcont()  # a deposed leader comes back, and gets client requests
            c.wait_leader(among=c.agents, timeout=30)
        wait_ops(budget, timeout=60)
    finally:
        stop_ev.set()
        for t in clients:
            t.join(15)
    assert not any(t.is_alive() for t in clients), "client thread stuck"
    for d in disruptions:
        print(d)
    kinds = {}
    for op in history:
        k = (op.kind, "?" if op.ok is None else op.ok)
        kinds[k] = kinds.get(k, 0) + 1
    print("history: %d ops: %s" % (len(history), sorted(kinds.items(), key=str)))
    assert len(history) >= 200
    assert kinds.get(("cas", True), 0) > 10 and kinds.get(("read", True), 0) > 50
    t0 = time.monotonic()
    res = lin.check(history)
    print("checked in %.2f s: %r" % (time.monotonic() - t0, res))
    if not res:
        around = sorted(history, key=lambda o: o.inv)
        first = res.ops[0] if res.ops else None
        lo = max(0, around.index(first) - 15) if first in around else 0
        print("\n".join(repr(o) for o in around[lo:lo + 40]))
    assert res, res.detail
    c.wait_converged(timeout=30)
