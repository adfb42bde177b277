"""Writers: threads writing unique KV keys to a cluster under test (failover, partitions).

A write is acknowledged when the server answers 200 "true"; anything else (an error, a
timeout, a refusal) counts as unknown: it may or may not have committed, so the tests check
only that every acknowledged key is present afterwards."""
import threading
import time


class Writers:
    """n threads writing `<prefix><thread>-<seq>` to the servers in turn.

    servers: a list of agents, or a callable returning the agents to use now (say, the live
    ones). acked maps each acknowledged key to (value, t_invoke, t_response), monotonic
    seconds. pause: the think time after an acknowledged write and after a failed one
    (pacing, not synchronisation)."""

    def __init__(self, servers, prefix, n=3, timeout=5, pause=(0.01, 0.05)):
        self.servers = servers if callable(servers) else (lambda: servers)
        self.prefix = prefix
        self.timeout = timeout
        self.pause = pause
        self.acked = {}
        self.unknown = 0
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def run(self, tid):
        seq = 0
        while not self.stop_ev.is_set():
            live = self.servers()
            if not live:
                self.stop_ev.wait(0.01)
                continue
            a = live[(tid + seq) % len(live)]
            seq += 1
            key, value = "%s%d-%d" % (self.prefix, tid, seq), "v%d-%d" % (tid, seq)
            t0 = time.monotonic()
            try:
                r = a.put("/v1/kv/" + key, value, timeout=self.timeout)
                ok = r.status == 200 and r.body.strip() == b"true"
            except OSError:
                ok = False
            t1 = time.monotonic()
            with self.lock:
                if ok:
                    self.acked[key] = (value, t0, t1)
                else:
                    self.unknown += 1
            self.stop_ev.wait(self.pause[0] if ok else self.pause[1])

    def first_ack_after(self, t):
        """Seconds from t to the first acknowledgement of a write sent at t or later."""
        with self.lock:
            ends = [t1 for (_, t0, t1) in self.acked.values() if t0 >= t]
        return min(ends) - t if ends else None

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(self.timeout + 5)
            assert not t.is_alive(), "writer thread stuck"
