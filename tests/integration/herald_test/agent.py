"""One herald agent on its own loopback address, started and stopped by pid.

Each agent gets its own 127.0.x.y address with Consul's default ports, its own data dir and
log file. A graceful stop must exit 0 (LeakSanitizer turns a leak into a non-zero exit)."""
import itertools
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

from . import paths
from .wait import wait_until

# 127.0.0.x is left to `make run` and the benchmarks; tests take 127.0.1.2 upwards.
# HERALD_TEST_ADDR_OFFSET moves a run's addresses (250 per /24) so that two runs at once on
# one machine do not collide.
_addr_counter = itertools.count(int(os.environ.get("HERALD_TEST_ADDR_OFFSET",
                                                   (os.getpid() % 20) * 10)))


def next_addr():
    n = next(_addr_counter)
    return "127.0.%d.%d" % (1 + n // 250, 2 + n % 250)


def sanitizer_env():
    """The environment of a herald under test: leaks detected, UBSan halts on error."""
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


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

    def config_argv(self):
        """-config-file with self.config written to the test's temp dir (none without one)."""
        if self.config is None:
            return []
        path = os.path.join(self.tmp, "config-%s.json" % self.addr)
        with open(path, "w") as f:
            json.dump(self.config, f)
        return ["-config-file", path]

    def argv(self):
        argv = [paths.HERALD, "agent", "-node", self.node_name,
                "-bind", self.addr, "-client", self.addr]
        if self.data_dir:
            argv += ["-server", "-bootstrap-expect", "1", "-data-dir", self.data_dir]
        else:
            argv += ["-dev"]
        return argv + self.config_argv() + self.extra

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self.log, stderr=subprocess.STDOUT,
                                     env=sanitizer_env())
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
                # registered by itself, and its serfHealth set by the leader (gossip)
                r = self.get("/v1/health/node/" + self.node_name, timeout=1)
                if r.status == 200 and any(c["CheckID"] == "serfHealth" for c in r.json()):
                    return
            except OSError:
                pass
            time.sleep(0.05)  # the poll interval of this bounded wait
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

    def stats(self):
        """This agent's /v1/agent/self Stats."""
        return self.get("/v1/agent/self").json()["Stats"]

    def parked(self):
        """Blocking queries parked on this agent now (its /v1/agent/self Stats)."""
        return self.stats()["http"]["blocking_queries"]

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
