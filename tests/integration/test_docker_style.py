"""Docker-style resolution: Herald as a machine's only resolver, the way a container sees it.
A network namespace (ip netns) with loopback and an eth0 (a veth pair inside it) holds Herald on 127.0.0.1:53 (forwarding to
an NSD upstream on 127.0.0.2:5300, inside the namespace too) and /etc/netns/NAME/resolv.conf
says `nameserver 127.0.0.1` and `search service.consul`, exactly what `dockerd --dns ...
--dns-search service.consul` writes into a container. Inside it, glibc's getent, Python's
getaddrinfo and dig +search resolve service short names, and outside names still resolve.
The namespace, its /etc/netns entry and every process are removed at the end."""
import os
import subprocess

import pytest

from conftest import NsHerald, netns_argv, upstream_zones

def run_in(netns, *argv, timeout=20):
    return subprocess.run(netns_argv(netns, argv), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def docker_host(netns, peers, tmpdir_path):
    """The namespace as a container sees it: Herald on port 53 in resolv.conf, with search."""
    peers.nsd("127.0.0.2", 5300, upstream_zones(), netns=netns)
    with open(os.path.join("/etc/netns", netns, "resolv.conf"), "w") as f:
        f.write("nameserver 127.0.0.1\nsearch service.consul\n")
    h = NsHerald(netns, tmpdir_path, ["-dns-port", "53", "-recursor", "127.0.0.2:5300"],
                 {"services": [{"name": "redis", "port": 6379, "address": "10.1.0.5"},
                               {"name": "web", "port": 8080, "address": "10.1.0.6"}]}).start()
    try:
        def both_answered():  # both services are registered
            out = run_in(netns, "dig", "@127.0.0.1", "+short", "+time=1", "+tries=1",
                         "redis.service.consul", "web.service.consul").stdout
            return "10.1.0.5" in out and "10.1.0.6" in out
        h.wait_for(both_answered, timeout=30, msg="both services answered")
        yield netns
    finally:
        rc = h.stop()
        assert rc == 0, "herald exited %s:\n%s" % (rc, h.read_log())


def test_getent_resolves_service_short_names_and_outside_names(docker_host):
    r = run_in(docker_host, "getent", "hosts", "redis")
    assert r.returncode == 0, r
    assert r.stdout.split()[:2] == ["10.1.0.5", "redis.service.consul"], r.stdout
    r = run_in(docker_host, "getent", "ahostsv4", "web")
    assert "10.1.0.6" in r.stdout, r
    r = run_in(docker_host, "getent", "ahostsv4", "www.example.org")
    assert r.returncode == 0 and "192.0.2.1" in r.stdout, r
    r = run_in(docker_host, "getent", "hosts", "www.example.org")
    assert r.returncode == 0 and r.stdout.split()[0] in ("2001:db8::1", "192.0.2.1"), r
    r = run_in(docker_host, "getent", "hosts", "no-such-service")
    assert r.returncode == 2, r  # not found


def test_python_getaddrinfo_resolves_short_and_outside_names(docker_host):
    code = ("import socket\n"
            "for name in ('redis', 'web', 'www.example.org'):\n"
            "    print(name, sorted({a[4][0] for a in socket.getaddrinfo(name, 80)}))\n"
            "try:\n"
            "    socket.getaddrinfo('no-such-service', 80)\n"
            "except socket.gaierror as e:\n"
            "    print('gaierror', e.errno)\n")
    r = run_in(docker_host, "/usr/bin/python3", "-c", code)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0] == "redis ['10.1.0.5']", r.stdout
    assert lines[1] == "web ['10.1.0.6']", r.stdout
    assert lines[2] == "www.example.org ['192.0.2.1', '2001:db8::1']", r.stdout
    assert lines[3].startswith("gaierror"), r.stdout


def test_dig_search_resolves_short_names(docker_host):
    r = run_in(docker_host, "dig", "+search", "redis")
    assert "status: NOERROR" in r.stdout, r.stdout
    assert "redis.service.consul." in r.stdout and "10.1.0.5" in r.stdout
    flags = r.stdout.split("flags:")[1].split(";")[0].split()
    assert "aa" in flags and "ra" in flags, r.stdout
    r = run_in(docker_host, "dig", "+search", "+short", "www.example.org")
    assert r.stdout.split() == ["192.0.2.1"], r.stdout
    r = run_in(docker_host, "dig", "+short", "_web._tcp.service.consul", "SRV")
    assert r.stdout.split()[:3] == ["1", "1", "8080"], r.stdout
