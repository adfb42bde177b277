"""Fixtures for integration tests: real herald agents on loopback addresses.

Each agent gets its own 127.0.0.x address with Consul's default ports, its own data dir and
log file. Every wait is bounded; every process is stopped by pid at the end of its test.
The binary is $HERALD_BIN, by default the ASan/UBSan build, so the real flows run under the
sanitizers; a graceful stop must exit 0 (LeakSanitizer turns a leak into a non-zero exit).
"""
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERALD = os.environ.get("HERALD_BIN", os.path.join(ROOT, "build", "asan", "herald"))

# 127.0.0.x is left to `make run` and the benchmarks; tests take 127.0.1.2 upwards.
# HERALD_TEST_ADDR_OFFSET moves a run's addresses (250 per /24) so that two runs at once on
# one machine do not collide.
_addr_counter = itertools.count(int(os.environ.get("HERALD_TEST_ADDR_OFFSET",
                                                   (os.getpid() % 20) * 10)))


def next_addr():
    n = next(_addr_counter)
    return "127.0.%d.%d" % (1 + n // 250, 2 + n % 250)


class HTTPResult:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    @property
    def index(self):
        return int(self.headers.get("X-Consul-Index", "0"))


class Agent:
    def __init__(self, tmp, args=(), addr=None, data_dir=None, config=None):
        self.addr = addr or next_addr()
        self.tmp = tmp
        self.data_dir = data_dir
        self.extra = list(args)
        self.config = config
        self.proc = None
        self.log_path = os.path.join(tmp, "agent-%s.log" % self.addr)
        self.http = "http://%s:8500" % self.addr
        self.dns_port = 8600  # DNS (UDP and TCP) on the same address

    def argv(self):
        argv = [HERALD, "agent", "-node", "node-" + self.addr.replace(".", "-"),
                "-bind", self.addr, "-client", self.addr]
        if self.data_dir:
            argv += ["-server", "-bootstrap-expect", "1", "-data-dir", self.data_dir]
        else:
            argv += ["-dev"]
        if self.config is not None:
            path = os.path.join(self.tmp, "config-%s.json" % self.addr)
            with open(path, "w") as f:
                json.dump(self.config, f)
            argv += ["-config-file", path]
        return argv + self.extra

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.proc = subprocess.Popen(self.argv(), stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("agent exited with %s:\n%s" % (self.proc.returncode,
                                                                   self.read_log()))
            try:
                r = self.get("/v1/catalog/node/" + self.node_name, timeout=1)
                if r.status == 200 and r.body not in (b"null", b""):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("agent not ready in %ss:\n%s" % (timeout, self.read_log()))

    @property
    def node_name(self):
        return "node-" + self.addr.replace(".", "-")

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-6000:]
        except OSError:
            return ""

    def stop(self, timeout=20):
        """Graceful stop: SIGTERM, must exit 0 (no leaks, clean loop close)."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("agent did not stop in %ss:\n%s" % (timeout, self.read_log()))
        self.log.close()
        return rc

    def parked(self):
        """Blocking queries parked on this agent now (its /v1/agent/self Stats)."""
        return self.get("/v1/agent/self").json()["Stats"]["http"]["blocking_queries"]

    def wait_parked(self, n, timeout=10):
        """Waits (bounded) until at least n blocking queries are parked."""
        wait_until(lambda: self.parked() >= n, timeout=timeout,
                   msg="%d blocking queries parked on %s" % (n, self.addr))

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def request(self, method, path, body=None, headers=None, timeout=10):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        req = urllib.request.Request(self.http + path, data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return HTTPResult(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            return HTTPResult(e.code, e.headers, e.read())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body if body is not None else b"", **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


@pytest.fixture
def tmpdir_path():
    with tempfile.TemporaryDirectory(prefix="herald-test-") as d:
        yield d


@pytest.fixture
def make_agent(tmpdir_path):
    agents = []

    def factory(*args, **kw):
        a = Agent(tmpdir_path, *args, **kw)
        agents.append(a)
        return a

    yield factory
    failures = []
    for a in agents:
        if a.proc and a.proc.poll() is None:
            rc = a.stop()
            if rc != 0:
                failures.append("agent %s exited %s:\n%s" % (a.addr, rc, a.read_log()))
        elif a.proc and a.proc.returncode not in (0, -9) and not getattr(a, "expect_fail", False):
            failures.append("agent %s had exited %s:\n%s" % (a.addr, a.proc.returncode,
                                                            a.read_log()))
    assert not failures, "\n".join(failures)


@pytest.fixture
def agent(make_agent):
    return make_agent().start()


def wait_until(fn, timeout=10, interval=0.02, msg="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (msg, last))


def raw_http(addr, data, timeout=5, port=8500):
    """Sends raw bytes and returns everything the server answers until it closes."""
    s = socket.create_connection((addr, port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


# ---- DNS helpers (dig, kdig and dnspython against an agent's DNS listener) ----------------

def dig(agent, *args, timeout=20):
    """Runs dig against the agent's DNS port and returns its stdout (one try, 2 s)."""
    argv = ["dig", "@" + agent.addr, "-p", str(agent.dns_port), "+time=2", "+tries=1"]
    r = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=timeout)
    return r.stdout


def kdig(agent, *args, timeout=20):
    """Runs kdig against the agent's DNS port and returns its stdout."""
    argv = ["kdig", "@" + agent.addr, "-p", str(agent.dns_port), "+time=2", "+retry=0"]
    r = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=timeout)
    return r.stdout


def dns_query(agent, name, rdtype="A", tcp=False, timeout=3, **make_kw):
    """One query with dnspython (UDP unless tcp); returns the dns.message.Message."""
    import dns.message
    import dns.query

    q = dns.message.make_query(name, rdtype, **make_kw)
    if tcp:
        return dns.query.tcp(q, agent.addr, port=agent.dns_port, timeout=timeout)
    return dns.query.udp(q, agent.addr, port=agent.dns_port, timeout=timeout,
                         ignore_trailing=False)


# ---- DNS peers: NSD, dnsmasq, BIND (named) and unbound, in the foreground, stopped by pid ----
# Each peer gets its config, pid file and log in the test's temp dir and listens only on the
# loopback address (and port) it is given, inside a network namespace when netns is set.

def netns_argv(netns, argv):
    return (["ip", "netns", "exec", netns] if netns else []) + list(argv)


def dns_ask(addr, port, name, rdtype="A", tcp=False, timeout=2, source=None, **make_kw):
    """One dnspython query to addr:port (optionally from a given source address)."""
    import dns.message
    import dns.query

    q = dns.message.make_query(name, rdtype, **make_kw)
    if tcp:
        return dns.query.tcp(q, addr, port=port, timeout=timeout, source=source)
    return dns.query.udp(q, addr, port=port, timeout=timeout, source=source)


class Peer:
    """A DNS server process of another project (a real peer), stopped by its pid."""

    def __init__(self, name, argv, tmp, netns=None):
        self.name = name
        self.argv = netns_argv(netns, argv)
        self.log_path = os.path.join(tmp, "%s.log" % name)
        self.proc = None

    def start(self, probe, timeout=20):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with %s:\n%s" % (self.name, self.proc.returncode,
                                                                 self.read_log()))
            try:
                if probe():
                    return self
            except Exception:  # not answering yet
                pass
            time.sleep(0.05)
        raise AssertionError("%s not ready in %ss:\n%s" % (self.name, timeout, self.read_log()))

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


class BlackHole:
    """A UDP socket that reads queries and never answers: a silent upstream."""

    def __init__(self, addr, port):
        import threading

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, port))
        self.sock.settimeout(0.2)
        self.received = 0
        self.names = set()  # the question names seen, lowercased, fully qualified
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                data, _ = self.sock.recvfrom(4096)
            except OSError:
                continue
            try:
                import dns.message
                self.names.add(dns.message.from_wire(data).question[0].name.to_text().lower())
            except Exception:  # not a query we can read: still counted
                pass
            self.received += 1

    def stop(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


class Peers:
    """Starts peers for one test; everything is stopped (by pid) when the test ends."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.started = []

    def _dir(self, name):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        return d

    def _probe(self, addr, port, name, netns):
        if not netns:
            return lambda: dns_ask(addr, port, name, "SOA", timeout=0.5) is not None
        argv = netns_argv(netns, ["dig", "@" + addr, "-p", str(port), "+time=1", "+tries=1",
                                  name, "SOA"])
        return lambda: "status:" in subprocess.run(argv, capture_output=True, text=True,
                                                    timeout=5).stdout

    def nsd(self, addr, port, zones, netns=None, name=None):
        """NSD serving zones ({origin: zone file text}) on addr@port."""
        name = name or "nsd-%s-%d" % (addr, port)
        d = self._dir(name)
        conf = ["server:",
                "  ip-address: %s@%d" % (addr, port),
                "  pidfile: %s/nsd.pid" % d,
                "  zonesdir: %s" % d,
                '  database: ""',
                '  username: ""',
                '  chroot: ""',
                "  xfrdfile: %s/xfrd.state" % d,
                "  zonelistfile: %s/zone.list" % d,
                "  verbosity: 1",
                "  server-count: 1",
                "  rrl-ratelimit: 0",
                "  hide-version: yes",
                "remote-control:",
                "  control-enable: no"]
        for origin, text in zones.items():
            fname = (origin.strip(".") or "root") + ".zone"
            with open(os.path.join(d, fname), "w") as f:
                f.write(text)
            conf += ["zone:", "  name: \"%s\"" % (origin or "."), "  zonefile: %s" % fname]
        path = os.path.join(d, "nsd.conf")
        with open(path, "w") as f:
            f.write("\n".join(conf) + "\n")
        p = Peer(name, ["nsd", "-d", "-c", path], self.tmp, netns)
        self.started.append(p)
        return p.start(self._probe(addr, port, next(iter(zones)) or ".", netns))

    def dnsmasq(self, addr, port, lines, probe_name):
        """dnsmasq on addr#port with the given config lines (a README snippet among them)."""
        d = self._dir("dnsmasq-%s-%d" % (addr, port))
        path = os.path.join(d, "dnsmasq.conf")
        with open(path, "w") as f:
            f.write("\n".join(["port=%d" % port, "listen-address=%s" % addr, "bind-interfaces",
                               "no-resolv", "no-hosts", "user=root", "group=root",
                               "pid-file=%s/dnsmasq.pid" % d, "log-facility=-"] + list(lines))
                    + "\n")
        p = Peer("dnsmasq-%s" % addr, ["dnsmasq", "-k", "--conf-file=" + path], self.tmp)
        self.started.append(p)
        return p.start(lambda: dns_ask(addr, port, probe_name, timeout=0.5) is not None)

    def named(self, addr, port, options, zones_text, probe_name):
        """BIND's named in the foreground with the given options lines and zone statements."""
        d = self._dir("named-%s-%d" % (addr, port))
        path = os.path.join(d, "named.conf")
        with open(path, "w") as f:
            f.write('options {\n  directory "%s";\n  pid-file "%s/named.pid";\n'
                    '  listen-on port %d { %s; };\n  listen-on-v6 { none; };\n'
                    '  recursion yes;\n  allow-query { any; };\n  allow-recursion { any; };\n'
                    "%s\n};\ncontrols { };\n%s\n" % (d, d, port, addr, options, zones_text))
        p = Peer("named-%s" % addr, ["named", "-g", "-n", "1", "-c", path], self.tmp)
        self.started.append(p)
        return p.start(lambda: dns_ask(addr, port, probe_name, timeout=0.5) is not None)

    def unbound(self, addr, port, text, probe_name):
        """unbound in the foreground; text holds the README's server: and zone clauses."""
        d = self._dir("unbound-%s-%d" % (addr, port))
        path = os.path.join(d, "unbound.conf")
        with open(path, "w") as f:
            f.write("server:\n  interface: %s@%d\n  port: %d\n  num-threads: 1\n"
                    '  username: ""\n  chroot: ""\n  directory: "%s"\n  pidfile: "%s/unbound.pid"\n'
                    '  use-syslog: no\n  logfile: ""\n  verbosity: 1\n  so-reuseport: no\n'
                    "  access-control: 127.0.0.0/8 allow\n"
                    "remote-control:\n  control-enable: no\n%s\n" % (addr, port, port, d, d, text))
        p = Peer("unbound-%s" % addr, ["unbound", "-d", "-c", path], self.tmp)
        self.started.append(p)
        return p.start(lambda: dns_ask(addr, port, probe_name, timeout=0.5) is not None)

    def blackhole(self, addr, port):
        b = BlackHole(addr, port)
        self.started.append(b)
        return b

    def stop_all(self):
        for p in reversed(self.started):
            p.stop()
        self.started = []


@pytest.fixture
def peers(tmpdir_path):
    ps = Peers(tmpdir_path)
    yield ps
    ps.stop_all()


def readme_snippet(name):
    """The fenced code block that follows `<!-- snippet: NAME -->` in the README."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    marker = "<!-- snippet: %s -->" % name
    at = text.index(marker) + len(marker)
    start = text.index("```", at)
    start = text.index("\n", start) + 1
    end = text.index("```", start)
    return text[start:end]


# The upstream zone of the recursion tests: every kind of answer a relay must keep intact.
BIG_TXT = ['"%s"' % ("%02d" % i * 100) for i in range(12)]  # 12 x 200 bytes: > 1232 in all
EXAMPLE_ORG = """$ORIGIN example.org.
$TTL 300
@        IN SOA ns1 hostmaster 1 3600 600 86400 60
@        IN NS  ns1
ns1      IN A   192.0.2.53
www      IN A   192.0.2.1
www      IN AAAA 2001:db8::1
txt      IN TXT "hello" "world"
alias    IN CNAME alias2
alias2   IN CNAME www
_http._tcp IN SRV 0 5 8080 www
""" + "".join("big IN TXT %s\n" % t for t in BIG_TXT)

# A root zone on the same upstream, so that unknown TLDs get NXDOMAIN (as from the Internet).
ROOT_ZONE = """$TTL 300
.        IN SOA a.root-servers.net. hostmaster.root. 1 3600 600 86400 60
.        IN NS  a.root-servers.net.
a.root-servers.net. IN A 192.0.2.53
"""

REVERSE_10 = """$ORIGIN 10.in-addr.arpa.
$TTL 300
@        IN SOA ns1.example.org. hostmaster.example.org. 1 3600 600 86400 60
@        IN NS  ns1.example.org.
5.0.0    IN PTR host5.example.org.
"""


def upstream_zones():
    return {"example.org": EXAMPLE_ORG, ".": ROOT_ZONE, "10.in-addr.arpa": REVERSE_10}


# ---- clusters: several servers forming one Raft cluster (test_cluster, test_linearizability) --

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
        argv = [HERALD, "agent", "-node", self.node_name, "-bind", self.addr,
                "-client", self.addr, "-server", "-data-dir", self.data_dir]
        if self.expect:
            argv += ["-bootstrap-expect", str(self.expect)]
        for j in self.joins:
            argv += ["-retry-join", j]
        if self.config is not None:
            path = os.path.join(self.tmp, "config-%s.json" % self.addr)
            with open(path, "w") as f:
                json.dump(self.config, f)
            argv += ["-config-file", path]
        return argv + self.extra

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
        import shutil
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
                time.sleep(delays[i])
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


@pytest.fixture
def make_cluster(tmpdir_path):
    """make_cluster(n, config=None, args=()) -> Cluster (not started: call .start())."""
    clusters = []

    def factory(n=3, config=None, args=()):
        c = Cluster(tmpdir_path, n, config=config, args=args)
        clusters.append(c)
        return c

    yield factory
    failures = []
    for c in clusters:
        # Resume SIGSTOPped servers first: a stopped process cannot handle SIGTERM.
        for a in c.all:
            if a.alive() and a.stopped:
                a.sigcont()
        failures += c.stop_all()
    assert not failures, "\n".join(failures)


# ---- network namespaces: a machine of its own, for port 53 and for resolv.conf -------------
# ip netns add NAME (root); /etc/netns/NAME/resolv.conf is what `ip netns exec NAME` shows as
# /etc/resolv.conf. Removed (namespace, /etc/netns entry) whatever the test's outcome.

_netns_counter = itertools.count()


@pytest.fixture
def netns(tmpdir_path):
    name = "hrld%d-%d" % (os.getpid() % 100000, next(_netns_counter))
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot create a network namespace (ip netns add: %s); needs root" %
                    r.stderr.strip())
    etc = os.path.join("/etc/netns", name)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        # an eth0 with an address, as a container has: a veth pair with both ends inside the
        # namespace, so nothing leaves it; without one, glibc's AI_ADDRCONFIG (getent ahosts*)
        # ignores IPv4 altogether
        subprocess.run(["ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name",
                        "veth1"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", "10.199.0.2/24", "dev", "eth0"],
                       check=True)
        for dev in ("eth0", "veth1"):
            subprocess.run(["ip", "-n", name, "link", "set", dev, "up"], check=True)
        os.makedirs(etc, exist_ok=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(etc, ignore_errors=True)
        try:
            os.rmdir("/etc/netns")  # only when no other namespace uses it
        except OSError:
            pass


class NsHerald:
    """herald agent inside a namespace, stopped by its pid (ip netns exec execs it)."""

    def __init__(self, netns, tmp, args, config):
        self.netns = netns
        self.log_path = os.path.join(tmp, "herald-%s.log" % netns)
        cfg = os.path.join(tmp, "herald-%s.json" % netns)
        with open(cfg, "w") as f:
            json.dump(config, f)
        self.argv = netns_argv(netns, [HERALD, "agent", "-dev", "-node", "docker-host",
                                       "-bind", "127.0.0.1", "-client", "127.0.0.1",
                                       "-config-file", cfg] + list(args))
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env)
        return self

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-6000:]

    def stop(self):
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        self.log.close()
        return rc
