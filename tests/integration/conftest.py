"""Fixtures for integration tests: real herald agents on loopback addresses.

The helpers live in the herald_test package, one module per topic (its __init__ lists them);
this file keeps the fixtures and re-exports every helper name, so `from conftest import X`
keeps working. Every wait is bounded; every process is stopped by pid at the end of its test.
The binary is $HERALD_BIN (herald_test.paths.HERALD), by default the ASan/UBSan build, so the
real flows run under the sanitizers; a graceful stop must exit 0 (LeakSanitizer turns a leak
into a non-zero exit).
"""
import tempfile

import pytest

pytest.register_assert_rewrite("herald_test")

from herald_test.agent import Agent, HTTPResult, next_addr, sanitizer_env  # noqa: E402
from herald_test.cluster import Cluster, ClusterAgent  # noqa: E402
from herald_test.dns_client import dig, dns_ask, dns_query, kdig  # noqa: E402
from herald_test.netns import (NetnsUnavailable, NsHerald, netns_argv,  # noqa: E402
                               network_namespace)
from herald_test.paths import HERALD, ROOT, readme_snippet  # noqa: E402
from herald_test.peers import BlackHole, Peer, Peers  # noqa: E402
from herald_test.rawsock import raw_http, recv_until_close  # noqa: E402
from herald_test.wait import wait_until  # noqa: E402
from herald_test.zones import (BIG_TXT, EXAMPLE_ORG, REVERSE_10, ROOT_ZONE,  # noqa: E402
                               upstream_zones)

# The helper names test files import from here (test_partition_heal and others may too).
__all__ = ["Agent", "HTTPResult", "next_addr", "sanitizer_env", "Cluster", "ClusterAgent", "dig",
           "dns_ask", "dns_query", "kdig", "NetnsUnavailable", "NsHerald", "netns_argv",
           "network_namespace", "HERALD", "ROOT", "readme_snippet", "BlackHole", "Peer", "Peers",
           "raw_http", "recv_until_close", "wait_until", "BIG_TXT", "EXAMPLE_ORG", "REVERSE_10",
           "ROOT_ZONE", "upstream_zones"]


@pytest.fixture
def tmpdir_path():
    with tempfile.TemporaryDirectory(prefix="herald-test-") as d:
        yield d


# ---- single agents --------------------------------------------------------------------------

@pytest.fixture
def make_agent(tmpdir_path):
    """make_agent(args=(), addr=None, data_dir=None, config=None) -> Agent (call .start())."""
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


# ---- DNS peers (NSD, dnsmasq, BIND, unbound, a silent upstream) -----------------------------

@pytest.fixture
def peers(tmpdir_path):
    ps = Peers(tmpdir_path)
    yield ps
    ps.stop_all()


# ---- clusters -------------------------------------------------------------------------------

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


# ---- network namespaces ---------------------------------------------------------------------

@pytest.fixture
def netns(tmpdir_path):
    """A network namespace of its own (herald_test.netns). Creating one needs root, as the
    whole suite does (make test); without it the test fails rather than skipping, so that a
    green run always means the namespace tests ran."""
    try:
        with network_namespace() as name:
            yield name
    except NetnsUnavailable as e:
        pytest.fail("cannot create a network namespace (%s); the integration tests need root"
                    % e)
