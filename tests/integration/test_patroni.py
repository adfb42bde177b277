"""Patroni on Herald (issue 13, item 5): Debian's `patroni` elects the primary of a three-member
PostgreSQL cluster with a three-server Herald cluster as its DCS (`consul: host:`).

Each Patroni member has its own loopback address (REST API on :8008, PostgreSQL on :5433, the
unix socket in the member's own directory), so nothing here touches a PostgreSQL the machine
already runs (Debian's cluster `main` on 5432 is left alone). PostgreSQL refuses to run as root:
Patroni and its postgres run as the `postgres` user in a directory of their own.

Asserted: one primary is elected (`patronictl list` shows the three members, only one answers
200 on /primary); the primary's Patroni and postgres SIGKILLed, a replica is promoted within
Patroni's TTL plus bounded slack (its session's TTL is ttl/2 and Herald, as Consul, expires it
at twice that: ttl seconds after the last renewal); `patronictl switchover` moves the primary to
the named candidate; a SIGTERM of the primary's Patroni hands the leader key over at once. With
register_service, the service Patroni registers on Herald (role tags, HTTP checks) and
primary.<scope>.service.consul follow each change, and a clean stop deregisters its instance.

The packages missing is a failure, not a skip; so is not being root (the suite runs as root:
the members' directories are handed to the postgres user). Set HERALD_TEST_KEEP_PATRONI=<dir>
to keep the members' logs. Every wait is bounded.
"""
import base64
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from conftest import dns_query, next_addr, wait_until

PATRONI = "/usr/bin/patroni"
PATRONICTL = "/usr/bin/patronictl"
PG_BIN = "/usr/lib/postgresql/15/bin"
TTL = 20  # Patroni's ttl: its Consul session has TTL ttl/2 = 10 s, Herald's minimum
LOOP_WAIT = 1
RETRY_TIMEOUT = 5
SCOPE = "herald-pg"
PG_PORT = 5433
REST_PORT = 8008


def _require_packages():
    missing = [p for p in (PATRONI, PATRONICTL, os.path.join(PG_BIN, "postgres"),
                           os.path.join(PG_BIN, "initdb")) if not os.path.exists(p)]
    if missing:
        pytest.fail("Debian's patroni and postgresql packages are needed (scripts/deps.sh): "
                    "missing %s" % ", ".join(missing))
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("no postgres user (Debian's postgresql package makes it)")


def _config(name, addr, member_dir, herald):
    return {
        "scope": SCOPE,
        "name": name,
        "log": {"dir": member_dir, "level": "INFO"},
        "restapi": {"listen": "%s:%d" % (addr, REST_PORT),
                    "connect_address": "%s:%d" % (addr, REST_PORT)},
        # register_service: each member registers service SCOPE on its Herald agent, ID
        # "SCOPE/NAME", tagged with its role, with an HTTP check on its REST API's /<role>
        "consul": {"host": "%s:8500" % herald.addr, "register_service": True,
                   "service_check_interval": "1s"},
        "watchdog": {"mode": "off"},
        "bootstrap": {
            "dcs": {"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT,
                    "maximum_lag_on_failover": 1048576,
                    "postgresql": {"use_pg_rewind": False, "parameters": {
                        "wal_level": "replica", "hot_standby": "on",
                        "max_wal_senders": 10, "max_replication_slots": 10}}},
            "initdb": [{"encoding": "UTF8"}, "data-checksums"],
            "pg_hba": ["local all all trust",
                       "host replication replicator 127.0.0.0/8 trust",
                       "host all all 127.0.0.0/8 trust"],
        },
        "postgresql": {
            "listen": "%s:%d" % (addr, PG_PORT),
            "connect_address": "%s:%d" % (addr, PG_PORT),
            "data_dir": os.path.join(member_dir, "data"),
            "bin_dir": PG_BIN,
            "pgpass": os.path.join(member_dir, "pgpass"),
            "authentication": {
                "replication": {"username": "replicator", "password": "rep-pass"},
                "superuser": {"username": "postgres", "password": "super-pass"},
            },
            "parameters": {"unix_socket_directories": member_dir,
                           "shared_buffers": "16MB", "max_connections": 20},
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False,
                 "nosync": False},
    }


class Member:
    """One Patroni member: its process (as the postgres user), its REST API, its postmaster."""

    def __init__(self, root, name, herald, pw):
        self.name = name
        self.addr = next_addr()
        self.dir = os.path.join(root, name)
        self.pw = pw
        self.herald = herald
        os.mkdir(self.dir, 0o700)
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.config_path = os.path.join(self.dir, "patroni.yml")
        with open(self.config_path, "w") as f:
            # JSON is YAML: Patroni reads it as its configuration file.
            json.dump(_config(name, self.addr, self.dir, herald), f, indent=1)
        os.chown(self.config_path, pw.pw_uid, pw.pw_gid)
        self.out_path = os.path.join(self.dir, "patroni.out")
        self.proc = None

    def env(self):
        env = {"PATH": "/usr/bin:/bin", "HOME": self.dir, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        return env

    def start(self):
        self.out = open(self.out_path, "ab")
        self.proc = subprocess.Popen([PATRONI, self.config_path], stdout=self.out,
                                     stderr=subprocess.STDOUT, cwd=self.dir, env=self.env(),
                                     user=self.pw.pw_uid, group=self.pw.pw_gid, extra_groups=[],
                                     start_new_session=True)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rest(self, path, timeout=2):
        """(status, json or None) of Patroni's REST API; (None, None) when it does not answer."""
        try:
            with urllib.request.urlopen("http://%s:%d%s" % (self.addr, REST_PORT, path),
                                        timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"null")
            except ValueError:
                return e.code, None
        except (OSError, ValueError):
            return None, None

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def log(self):
        text = ""
        for p in (self.out_path, os.path.join(self.dir, "patroni.log")):
            try:
                with open(p, "rb") as f:
                    text += "---- %s\n%s\n" % (p, f.read().decode("utf-8", "replace")[-5000:])
            except OSError:
                pass
        return text

    def kill9(self):
        """SIGKILL of Patroni and then of its postmaster (and so of the whole postgres)."""
        pm = self.postmaster_pid()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        if pm:
            try:
                os.kill(pm, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_until(lambda: not os.path.exists("/proc/%d" % pm) or _zombie(pm), timeout=10,
                       msg="postmaster %d gone" % pm)

    def stop(self, timeout=60):
        """SIGTERM: Patroni stops its postgres and, when primary, deletes its leader key."""
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    def cleanup(self):
        if self.alive():
            self.stop(timeout=30)
        pm = self.postmaster_pid()
        if pm and os.path.exists("/proc/%d" % pm) and not _zombie(pm):
            # Left by a killed Patroni: stop it by its pid (a postmaster of this test only).
            try:
                os.kill(pm, signal.SIGQUIT)
            except ProcessLookupError:
                pass
            try:
                wait_until(lambda: not os.path.exists("/proc/%d" % pm) or _zombie(pm),
                           timeout=10, msg="postmaster %d gone" % pm)
            except AssertionError:
                os.kill(pm, signal.SIGKILL)
        if getattr(self, "out", None):
            self.out.close()


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def pg_root():
    """A directory the postgres user can reach (the test's own temp dir is root's, 0700)."""
    pw = _require_packages()
    d = tempfile.mkdtemp(prefix="herald-patroni-")
    os.chmod(d, 0o755)
    try:
        yield d, pw
    finally:
        keep = os.environ.get("HERALD_TEST_KEEP_PATRONI")  # a directory to copy the logs to
        try:
            if keep:
                shutil.copytree(d, keep, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("data", ".s.PGSQL*"))
        finally:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def patroni(make_cluster, pg_root):
    root, pw = pg_root
    cluster = make_cluster(3).start()
    members = [Member(root, "pg%d" % i, cluster[i], pw) for i in range(3)]
    yield cluster, members
    for m in members:
        m.cleanup()


def primaries(members):
    return [m for m in members if m.alive() and m.rest("/primary")[0] == 200]


def wait_primary(members, timeout, exclude=()):
    def check():
        p = primaries(members)
        if len(p) == 1 and p[0] not in exclude:
            return p[0]
        return None
    try:
        return wait_until(check, timeout=timeout, interval=0.2, msg="one Patroni primary")
    except AssertionError:
        raise AssertionError("no single primary in %ss:\n%s" % (
            timeout, "\n".join(m.log() for m in members)))


def wait_streaming(members, n, timeout):
    """Waits until n members are running replicas (Patroni's /replica answers 200)."""
    def check():
        return len([m for m in members if m.alive() and m.rest("/replica")[0] == 200]) >= n
    try:
        wait_until(check, timeout=timeout, interval=0.2, msg="%d replicas running" % n)
    except AssertionError:
        raise AssertionError("not %d replicas in %ss:\n%s" % (
            n, timeout, "\n".join(m.log() for m in members)))


def leader_key(agent):
    r = agent.get("/v1/kv/service/%s/leader" % SCOPE)
    if r.status == 404:
        return None
    assert r.status == 200, r.text
    return r.json()[0]


def service_view(agent):
    """{member address: tags} of the passing instances of service SCOPE."""
    r = agent.get("/v1/health/service/%s?passing" % SCOPE)
    assert r.status == 200, r.text
    return {e["Service"]["Address"]: sorted(e["Service"]["Tags"]) for e in r.json()}


def dns_primary(agent):
    """The addresses primary.SCOPE.service.consul answers (A)."""
    ans = dns_query(agent, "primary.%s.service.consul" % SCOPE).answer
    return sorted(rr.address for rrset in ans for rr in rrset)


def wait_service(cluster, primary, replicas, timeout=30):
    """Every server shows primary tagged primary and the replicas tagged replica, passing,
    and answers primary.SCOPE.service.consul with the primary's address."""
    want = {primary.addr: ["master", "primary"]}
    want.update({m.addr: ["replica"] for m in replicas})

    def check():
        return all(service_view(a) == want and dns_primary(a) == [primary.addr]
                   for a in cluster)
    try:
        wait_until(check, timeout=timeout, interval=0.2, msg="service %s" % SCOPE)
    except AssertionError:
        raise AssertionError("service view %s, want %s" % (service_view(cluster[0]), want))


def patronictl(m, *args):
    """patronictl with member m's configuration (its Herald as DCS); returns its stdout."""
    out = subprocess.run([PATRONICTL, "-c", m.config_path] + list(args),
                         capture_output=True, timeout=60, env=m.env(),
                         user=m.pw.pw_uid, group=m.pw.pw_gid, extra_groups=[])
    assert out.returncode == 0, (out.stdout + out.stderr).decode()
    return out.stdout


def patronictl_list(members):
    return json.loads(patronictl(members[0], "list", "-f", "json"))


def test_patroni_elects_fails_over_and_hands_over(patroni):
    cluster, members = patroni
    # The first member bootstraps the cluster (initdb) and takes the leader key; the others
    # start after it so they clone from it (pg_basebackup) rather than race for initdb.
    members[0].start()
    first = wait_primary(members, timeout=90)
    assert first is members[0]
    for m in members[1:]:
        m.start()
    wait_streaming(members, 2, timeout=120)
    assert primaries(members) == [first]
    key = leader_key(cluster[1])
    assert key is not None and key["Session"] and key["Value"]
    assert base64.b64decode(key["Value"]).decode() == first.name
    [sess] = cluster[2].get("/v1/session/info/" + key["Session"]).json()
    assert sess["TTL"] in ("10s", "10.0s") and sess["Behavior"] == "delete", sess

    # patronictl list shows the cluster: one Leader, two replicas, all running/streaming.
    rows = patronictl_list(members)
    assert sorted(r["Member"] for r in rows) == ["pg0", "pg1", "pg2"], rows
    assert [r["Member"] for r in rows if r["Role"] == "Leader"] == [first.name], rows
    assert all(r["State"] in ("running", "streaming") for r in rows), rows
    # the service Patroni registers: one primary, two replicas; DNS finds the primary
    wait_service(cluster, first, members[1:])

    # The primary's Patroni and postgres SIGKILLed: its session is no longer renewed; Herald
    # invalidates it at twice its TTL (= Patroni's ttl) after the last renewal, the leader key
    # goes (behavior delete), lock-delay is 1 ms, and a replica takes the key and promotes.
    t0 = time.monotonic()
    first.kill9()
    second = wait_primary(members, timeout=TTL + 25, exclude=(first,))
    took = time.monotonic() - t0
    print("failover after SIGKILL of the primary: %.1f s (Patroni ttl %d s, loop_wait %d s)"
          % (took, TTL, LOOP_WAIT))
    assert took < TTL + 2 * LOOP_WAIT + RETRY_TIMEOUT + 10
    key = leader_key(cluster[0])
    assert key is not None and base64.b64decode(key["Value"]).decode() == second.name
    # the dead member's check goes critical: the service and DNS follow the new primary
    wait_service(cluster, second, [m for m in members if m not in (first, second)])

    # patronictl switchover (the failover key written with CAS, the leader key handed over):
    # the last replica becomes the primary.
    wait_streaming(members, 1, timeout=60)
    third = [m for m in members if m is not first and m is not second][0]
    t0 = time.monotonic()
    patronictl(second, "switchover", "--leader", second.name, "--candidate", third.name,
               "--force")
    got = wait_primary(members, timeout=TTL + 10, exclude=(first, second))
    print("patronictl switchover: %.1f s" % (time.monotonic() - t0))
    assert got is third
    key = leader_key(cluster[2])
    assert key is not None and base64.b64decode(key["Value"]).decode() == third.name

    # A clean stop (SIGTERM) of the primary: Patroni stops postgres and deletes its leader
    # key, so the replica takes over well within the TTL.
    wait_streaming(members, 1, timeout=60)
    t0 = time.monotonic()
    third.stop()
    got = wait_primary(members, timeout=TTL, exclude=(first, third))
    took = time.monotonic() - t0
    print("hand-over after SIGTERM of the primary: %.1f s" % took)
    assert got is second
    assert took < TTL
    # a member stopped cleanly deregisters its instance (PUT /v1/agent/service/deregister/
    # SCOPE/NAME: a service ID with a slash)
    wait_until(lambda: third.addr not in service_view(cluster[2]) and
               all(e["ServiceID"] != "%s/%s" % (SCOPE, third.name) for e in
                   cluster[2].get("/v1/catalog/service/" + SCOPE).json()),
               timeout=30, msg="the stopped member's instance deregistered")
