"""Clusters: several servers forming one Raft cluster (test_cluster, test_linearizability and
others). Every wait is bounded; every process is stopped by pid at teardown."""
import os
import shutil
import signal
import time

from . import paths
from .agent import Agent, next_addr
from .wait import wait_until


class ClusterAgent(Agent):
    """A server of a multi-server cluster: -server -data-dir D -bootstrap-expect N (0: none)
    -retry-join each of `joins`. The data dir lives as long as the test, so the agent can be
    killed and started again from it (restart), or have it wiped."""

    def __init__(self, tmp, addr, joins, expect, config=None, args=()):
        super().__init__(tmp, args=args, addr=addr,
                         data_dir=os.path.join(tmp, "data-" + addr), config=config)
        self.joins = list(joins)
        self.expect = expect
        self.stopped = False  # SIGSTOPped

    def argv(self):
        argv = [paths.HERALD, "agent", "-node", self.node_name, "-bind", self.addr,
                "-client", self.addr, "-server", "-data-dir", self.data_dir]
        if self.expect:
            argv += ["-bootstrap-expect", str(self.expect)]
        for j in self.joins:
            argv += ["-retry-join", j]
        if self.joins:  # a staggered start must not wait Consul's 30 s for the next try
            argv += ["-retry-interval", "1s"]
        return argv + self.config_argv() + self.extra

    @property
    def server_addr(self):
        return "%s:8300" % self.addr

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def sigstop(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def sigcont(self):
        self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def restart(self):
        """Starts the agent again from its data dir (after kill9 or stop); does not wait."""
        assert not self.alive()
        return self.start(wait=False)

    def wipe(self, keep_node_id=False):
        """Removes the data dir (the agent must not run); keep_node_id keeps the node-id file
        (and so the Raft id), removing the catalog and the Raft state."""
        assert not self.alive()
        if keep_node_id:
            for name in os.listdir(self.data_dir):
                if name != "node-id":
                    p = os.path.join(self.data_dir, name)
                    shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def json_or_none(self, path, timeout=2):
        try:
            r = self.get(path, timeout=timeout)
        except (OSError, ValueError):
            return None
        if r.status != 200:
            return None
        try:
            return r.json()
        except ValueError:
            return None

    def leader_addr(self, timeout=2):
        """This server's view of the leader's server address ("" when none, None when it
        does not answer)."""
        return self.json_or_none("/v1/status/leader", timeout=timeout)

    def digest(self, timeout=5):
        return self.json_or_none("/v1/operator/catalog/digest", timeout=timeout)

    def raft_config(self, timeout=5):
        return self.json_or_none("/v1/operator/raft/configuration?stale", timeout=timeout)


class Cluster:
    """Servers on their own loopback addresses, all with -retry-join to the first `n` (the
    founders). Every wait is bounded; every process is stopped by pid at teardown."""

    def __init__(self, tmp, n, config=None, args=()):
        self.tmp = tmp
        self.config = config
        self.args = list(args)
        self.addrs = [next_addr() for _ in range(n)]
        self.agents = [ClusterAgent(tmp, a, self.addrs, n, config=config, args=args)
                       for a in self.addrs]
        self.all = list(self.agents)  # including servers added later

    def __iter__(self):
        return iter(self.agents)

    def __getitem__(self, i):
        return self.agents[i]

    def start(self, order=None, delays=None):
        """Starts the founders in `order` (indexes), sleeping delays[i] before the i-th, then
        waits for one leader that all of them agree on and their own node registered."""
        order = list(range(len(self.agents))) if order is None else order
        for i, idx in enumerate(order):
            if delays:
                time.sleep(delays[i])  # pacing: a staggered start is what the caller tests
            self.agents[idx].start(wait=False)
        self.wait_leader()
        for a in self.agents:
            a.wait_ready(timeout=30)
        return self

    def add_server(self, expect=0, joins=None, config=None):
        """A new server with -retry-join to the founders (no -bootstrap-expect by default);
        started, not waited for."""
        a = ClusterAgent(self.tmp, next_addr(), self.addrs if joins is None else joins, expect,
                         config=self.config if config is None else config, args=self.args)
        self.all.append(a)
        return a.start(wait=False)

    def live(self):
        return [a for a in self.all if a.alive() and not a.stopped]

    def by_server_addr(self, saddr):
        for a in self.all:
            if a.server_addr == saddr:
                return a
        return None

    def wait_leader(self, among=None, timeout=30, exclude=()):
        """Waits until every live server in `among` (default: the live ones) names the same
        leader, itself live and in `among`; returns that agent."""
        def check():
            agents = [a for a in (among or self.live()) if a.alive() and not a.stopped]
            views = set()
            for a in agents:
                v = a.leader_addr(timeout=1)
                if not v:
                    return None
                views.add(v)
            if len(views) != 1:
                return None
            leader = self.by_server_addr(views.pop())
            if leader is None or leader not in agents or leader in exclude:
                return None
            return leader
        return wait_until(check, timeout=timeout, interval=0.05, msg="one agreed leader")

    def followers(self, leader=None):
        leader = leader or self.wait_leader()
        return [a for a in self.live() if a is not leader]

    def wait_converged(self, among=None, timeout=30):
        """Waits until the servers in `among` (default: live) have the same AppliedIndex, then
        returns their digests (a dict addr -> digest json). Retries while they differ."""
        def check():
            ds = {}
            for a in (among or self.live()):
                d = a.digest()
                if d is None:
                    return None
                ds[a.addr] = d
            if len({d["AppliedIndex"] for d in ds.values()}) != 1:
                return None
            if len({d["Digest"] for d in ds.values()}) != 1:
                return None
            return ds
        return wait_until(check, timeout=timeout, interval=0.1, msg="replicas converged")

    def stop_all(self):
        """Graceful stop of every server; returns the failures (non-zero exits)."""
        failures = []
        for a in self.all:
            if a.proc is None:
                continue
            if a.alive():
                if a.stopped:
                    a.sigcont()
                rc = a.stop(timeout=30)
                if rc != 0:
                    failures.append("server %s exited %s:\n%s" % (a.addr, rc, a.read_log()))
            elif a.proc.returncode not in (0, -9) and not getattr(a, "expect_fail", False):
                failures.append("server %s had exited %s:\n%s" % (a.addr, a.proc.returncode,
                                                                 a.read_log()))
        return failures
