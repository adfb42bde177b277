"""Network namespaces: a machine of its own, for port 53 and for resolv.conf.

`ip netns add NAME` (root); /etc/netns/NAME/resolv.conf is what `ip netns exec NAME` shows as
/etc/resolv.conf. Removed (namespace, /etc/netns entry) whatever the test's outcome."""
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess

from . import paths
from .agent import sanitizer_env
from .wait import wait_until

_netns_counter = itertools.count()


def netns_argv(netns, argv):
    return (["ip", "netns", "exec", netns] if netns else []) + list(argv)


class NetnsUnavailable(Exception):
    pass


@contextlib.contextmanager
def network_namespace():
    """A fresh namespace with lo up and an eth0 (10.199.0.2/24); yields its name. Raises
    NetnsUnavailable when `ip netns add` fails (not root)."""
    name = "hrld%d-%d" % (os.getpid() % 100000, next(_netns_counter))
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise NetnsUnavailable("ip netns add: %s" % r.stderr.strip())
    etc = os.path.join("/etc/netns", name)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=30)
        # an eth0 with an address, as a container has: a veth pair with both ends inside the
        # namespace, so nothing leaves it; without one, glibc's AI_ADDRCONFIG (getent ahosts*)
        # ignores IPv4 altogether
        subprocess.run(["ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name",
                        "veth1"], check=True, timeout=30)
        subprocess.run(["ip", "-n", name, "addr", "add", "10.199.0.2/24", "dev", "eth0"],
                       check=True, timeout=30)
        for dev in ("eth0", "veth1"):
            subprocess.run(["ip", "-n", name, "link", "set", dev, "up"], check=True, timeout=30)
        os.makedirs(etc, exist_ok=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
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
        self.argv = netns_argv(netns, [paths.HERALD, "agent", "-dev", "-node", "docker-host",
                                       "-bind", "127.0.0.1", "-client", "127.0.0.1",
                                       "-config-file", cfg] + list(args))
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=sanitizer_env())
        return self

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-6000:]

    def wait_for(self, fn, timeout=20, msg="condition"):
        """Waits (bounded) until fn() returns something true; fails with herald's log when
        it exits first or the time runs out."""
        def check():
            if self.proc.poll() is not None:
                raise AssertionError("herald exited %s:\n%s" % (self.proc.returncode,
                                                                self.read_log()))
            return fn()
        try:
            return wait_until(check, timeout=timeout, interval=0.1, msg=msg)
        except AssertionError as e:
            if self.proc.poll() is not None:
                raise
            raise AssertionError("%s\n%s" % (e, self.read_log())) from None

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
