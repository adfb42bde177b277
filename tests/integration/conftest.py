"""Fixtures for integration tests: real herald agents on loopback addresses.

Each agent gets its own 127.0.0.x address with Consul's default ports, its own data dir and
log file. Every wait is bounded; every process is stopped by pid at the end of its test.
The binary is $HERALD_BIN, by default the ASan/UBSan build, so the real flows run under the
sanitizers; a graceful stop must exit 0 (LeakSanitizer turns a leak into a non-zero exit).
"""
import itertools
import json
import os
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
_addr_counter = itertools.count((os.getpid() % 20) * 10)


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
