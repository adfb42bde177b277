"""A small Wing-Gong / Knossos-style linearizability checker for one KV key.

The model is one register holding either nothing (the key is absent) or (value, ModifyIndex),
with Consul's operations on it:
  write(v)        PUT /v1/kv/K          -> true, and X-Consul-Index k: state := (v, k)
  cas(E, v)       PUT /v1/kv/K?cas=E    -> true (index k): the state's index was E (E = 0:
                                           the key was absent); state := (v, k)
                                        -> false: the state's index was not E; unchanged
  read            GET /v1/kv/K?consistent -> 404 (absent) or (v, ModifyIndex)
Every value written is unique in a history (so a read names the write it saw).

An operation has an invocation and a response time (time.monotonic() of the client). One
whose outcome is unknown (a client timeout, a connection error, a 500 that says the write may
have been applied, any other error) is *indeterminate*: it may or may not have taken effect,
at any point after its invocation (its response time is infinite). An indeterminate read says
nothing and is dropped; an indeterminate write or cas may be linearized anywhere after its
invocation, or never. Its new ModifyIndex is unknown: the model keeps a wildcard index that a
later read pins down.

Search (Wing & Gong, with Lowe's memoization as in Knossos' "linear" and Porcupine): a
configuration is (the set of operations linearized so far, the register's state); from it, any
not-yet-linearized operation invoked before the earliest response among the pending
determinate operations may be linearized next, if the model allows its result. The history is
linearizable iff some path linearizes every determinate operation. Configurations already seen
are not explored again, so the cost is bounded by their number (with a few concurrent clients:
roughly operations x states x the few pending at a time).

Indeterminate writes and cas whose value no read ever returned cannot be told apart by any
later observation (their value is never seen again, only their effect on the index), so they
are folded into one "unobserved" state and may fire any number of times: this keeps the search
from doubling with every such operation. It can only make the checker more permissive (never
report a violation that is not one); every other operation is linearized exactly once.
"""
import math

ABSENT = None
WILD = -1  # a ModifyIndex not known yet (an indeterminate write that took effect)
UNOBSERVED = ("<unobserved>",)  # the value of an indeterminate write no read returned


class Op:
    """kind: "write", "cas" or "read".
    write: value; ok True with index, or ok None (indeterminate).
    cas: expect (the index), value; ok True with index, ok False, or ok None (indeterminate).
    read: result ABSENT or (value, index); ok None drops it (indeterminate)."""

    __slots__ = ("kind", "value", "expect", "ok", "index", "result", "inv", "resp", "client",
                 "server", "note")

    def __init__(self, kind, inv, resp, ok=True, value=None, expect=None, index=None,
                 result=ABSENT, client=None, server=None, note=""):
        self.kind = kind
        self.inv = inv
        self.resp = resp if ok is not None else math.inf
        self.ok = ok
        self.value = value
        self.expect = expect
        self.index = index
        self.result = result
        self.client = client
        self.server = server
        self.note = note

    def __repr__(self):
        end = "inf" if self.resp == math.inf else "%.4f" % self.resp
        if self.kind == "read":
            what = "read -> %s" % ("absent" if self.result is ABSENT else "%r@%d" % self.result)
        elif self.kind == "write":
            what = "write(%r) -> %s" % (self.value, "?" if self.ok is None else
                                        "ok@%d" % self.index)
        else:
            what = "cas(%d, %r) -> %s" % (self.expect, self.value,
                                          "?" if self.ok is None else
                                          ("ok@%d" % self.index if self.ok else "false"))
        return "<c%s %s [%.4f, %s] %s%s>" % (self.client, what, self.inv, end, self.server or "",
                                             " " + self.note if self.note else "")


def _step(op, state, value):
    """The states the register can be in after op from state (empty: op cannot happen
    here). value is op.value, or UNOBSERVED for a folded operation."""
    if op.kind == "read":
        if op.result is ABSENT:
            return [state] if state is ABSENT else []
        if state is ABSENT:
            return []
        v, i = state
        rv, ri = op.result
        if v != rv:
            return []
        if i == WILD:
            return [(v, ri)]  # the read pins the index down
        return [state] if i == ri else []
    new = (value, op.index if op.ok else WILD)
    if op.kind == "write":
        return [new]
    # cas
    if op.expect == 0:
        match = [True] if state is ABSENT else [False]
    elif state is ABSENT:
        match = [False]
    elif state[1] == WILD:
        match = [True, False]  # the unknown index may or may not be the expected one
    else:
        match = [state[1] == op.expect]
    out = []
    if op.ok is None:  # indeterminate: only its effect matters (not taking effect = skip it)
        if True in match:
            out.append(new)
        return out
    if op.ok:
        if True in match:
            out.append(new)
    elif False in match:
        out.append(state)
    return out


class Result:
    def __init__(self, ok, explored, detail="", ops=None):
        self.ok = ok
        self.explored = explored
        self.detail = detail
        self.ops = ops or []

    def __bool__(self):
        return self.ok

    def __repr__(self):
        return "<linearizable=%s explored=%d %s>" % (self.ok, self.explored, self.detail)


def check(history, max_configs=2_000_000):
    """history: a list of Op. Returns a Result (truthy when linearizable). Raises
    RuntimeError when the search passes max_configs (keep histories to a few hundred ops)."""
    read_values = {op.result[0] for op in history
                   if op.kind == "read" and op.ok is not None and op.result is not ABSENT}
    tracked = []  # linearized exactly once: determinate ops and observed indeterminate ones
    folded = []   # unobserved indeterminate writes and cas: may fire any number of times
    for op in history:
        if op.kind == "read" and op.ok is None:
            continue
        if op.ok is None and op.value not in read_values:
            folded.append(op)
        else:
            tracked.append(op)
    tracked.sort(key=lambda o: o.inv)
    folded.sort(key=lambda o: o.inv)
    n = len(tracked)
    determinate = 0
    for i, op in enumerate(tracked):
        if op.ok is not None:
            determinate |= 1 << i
    resp = [op.resp for op in tracked]
    invs = [op.inv for op in tracked]

    indet = [i for i in range(n) if not determinate >> i & 1]  # observed indeterminate

    seen = set()
    stack = [(0, ABSENT)]
    explored = 0
    best = (-1, None, None)  # most determinate ops linearized: (count, mask, state)
    while stack:
        mask, state = stack.pop()
        key = (mask, state)
        if key in seen:
            continue
        seen.add(key)
        explored += 1
        if explored > max_configs:
            raise RuntimeError("linearizability search passed %d configurations" % max_configs)
        pending = determinate & ~mask
        if not pending:
            return Result(True, explored)
        done = bin(mask & determinate).count("1")
        if done > best[0]:
            best = (done, mask, state)
        # Scan the determinate ops from the first pending one, in invocation order: the
        # earliest response among the pending ones (the horizon) bounds what may go next, and
        # no op invoked after the horizon can respond before it.
        lo = (pending & -pending).bit_length() - 1
        horizon = math.inf
        cands = []
        for i in range(lo, n):
            if invs[i] > horizon:
                break
            if pending >> i & 1:
                cands.append(i)
                if resp[i] < horizon:
                    horizon = resp[i]
        for i in indet:
            if invs[i] <= horizon and not mask >> i & 1:
                cands.append(i)
        for i in cands:
            if invs[i] > horizon:
                continue
            op = tracked[i]
            for s in _step(op, state, op.value):
                stack.append((mask | 1 << i, s))
        for op in folded:
            if op.inv > horizon:
                break
            for s in _step(op, state, UNOBSERVED):
                if s != state:
                    stack.append((mask, s))
    done, mask, state = best
    stuck = [tracked[i] for i in range(n) if determinate >> i & 1 and not mask >> i & 1]
    stuck.sort(key=lambda o: o.resp)
    detail = ("not linearizable: at best %d of %d determinate ops linearized, register then "
              "%r; the earliest op left: %r" % (done, bin(determinate).count("1"), state,
                                               stuck[0] if stuck else None))
    return Result(False, explored, detail, stuck[:10])
