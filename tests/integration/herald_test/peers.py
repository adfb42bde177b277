"""DNS peers: NSD, dnsmasq, BIND (named) and unbound, in the foreground, stopped by pid, and a
silent upstream (BlackHole).

Each peer gets its config, pid file and log in the test's temp dir and listens only on the
loopback address (and port) it is given, inside a network namespace when netns is set."""
import os
import signal
import socket
import subprocess
import time

from .dns_client import dns_ask
from .netns import netns_argv


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
            time.sleep(0.05)  # the poll interval of this bounded wait
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
