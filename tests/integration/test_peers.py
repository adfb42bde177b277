"""Herald behind and in front of real resolvers, with the README's own snippets: dnsmasq
(server=/consul/...), BIND (a type forward zone) and unbound (stub-zone and forward-zone) each
forward the consul zone to Herald and answer service names from the catalog; Herald forwards
outside names to dnsmasq and to unbound (which resolves them from an NSD)."""
import socket

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from conftest import dns_ask, dns_query, next_addr, readme_snippet, upstream_zones

PEER_PORT = 5300


def rrs(msg, rdtype, section="answer"):
    out = []
    for rrset in getattr(msg, section):
        if rrset.rdtype == dns.rdatatype.from_text(rdtype):
            out.extend(rrset)
    return out


def register(agent, sid, name, port, address):
    r = agent.put("/v1/agent/service/register",
                  {"Name": name, "ID": sid, "Port": port, "Address": address})
    assert r.status == 200, r.text


def for_agent(snippet, agent):
    """A README snippet pointed at this test's agent (the README says 127.0.0.1)."""
    assert "127.0.0.1" in snippet
    return snippet.replace("127.0.0.1", agent.addr)


@pytest.fixture
def catalog(agent):
    register(agent, "redis1", "redis", 6379, "10.0.60.1")
    register(agent, "redis2", "redis", 6380, "10.0.60.2")
    register(agent, "web1", "web", 8080, "10.0.60.3")
    return agent


def check_resolver_in_front(addr, port):
    """What a client of dnsmasq / BIND / unbound sees for the consul zone."""
    m = dns_ask(addr, port, "redis.service.consul", timeout=3)
    assert m.rcode() == dns.rcode.NOERROR, m
    assert sorted(r.address for r in rrs(m, "A")) == ["10.0.60.1", "10.0.60.2"]
    m = dns_ask(addr, port, "web.service.consul", "SRV", timeout=3)
    assert [r.port for r in rrs(m, "SRV")] == [8080]
    m = dns_ask(addr, port, "missing.service.consul", timeout=3)
    assert m.rcode() == dns.rcode.NXDOMAIN
    m = dns_ask(addr, port, "redis.service.consul", tcp=True, timeout=3)
    assert len(rrs(m, "A")) == 2


def test_dnsmasq_forwards_the_consul_zone_to_herald(catalog, peers):
    addr = next_addr()
    snippet = for_agent(readme_snippet("dnsmasq"), catalog)
    lines = [l for l in snippet.splitlines() if l.strip() and not l.startswith("#")]
    peers.dnsmasq(addr, PEER_PORT, lines, "consul")
    check_resolver_in_front(addr, PEER_PORT)


def free_port(addr):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind((addr, 0))
        port = u.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
        t.bind((addr, port))  # free for TCP too
    return port


def test_bind_forward_zone_sends_the_consul_zone_to_herald(catalog, peers):
    # named listens only on addresses an interface has: 127.0.0.1, on a free port
    addr, port = "127.0.0.1", free_port("127.0.0.1")
    options = readme_snippet("bind-options")
    zone = for_agent(readme_snippet("bind-zone"), catalog)
    peers.named(addr, port, options, zone, "consul")
    check_resolver_in_front(addr, port)


@pytest.mark.parametrize("kind", ["unbound-stub", "unbound-forward"])
def test_unbound_stub_or_forward_zone_sends_the_consul_zone_to_herald(catalog, peers, kind):
    addr = next_addr()
    peers.unbound(addr, PEER_PORT, for_agent(readme_snippet(kind), catalog), "consul")
    check_resolver_in_front(addr, PEER_PORT)


def test_herald_forwards_outside_names_to_dnsmasq(make_agent, peers):
    up = next_addr()
    peers.dnsmasq(up, PEER_PORT, ["host-record=app.example.net,192.0.2.33",
                                  'txt-record=app.example.net,"from dnsmasq"',
                                  "srv-host=_app._tcp.example.net,app.example.net,9000"],
                  "app.example.net")
    a = make_agent(args=["-recursor", "%s:%d" % (up, PEER_PORT)]).start()
    m = dns_query(a, "app.example.net")
    assert [r.address for r in rrs(m, "A")] == ["192.0.2.33"]
    assert m.flags & dns.flags.RA and not m.flags & dns.flags.AA
    m = dns_query(a, "app.example.net", "TXT")
    assert [r.strings for r in rrs(m, "TXT")] == [(b"from dnsmasq",)]
    m = dns_query(a, "_app._tcp.example.net", "SRV")
    assert [r.port for r in rrs(m, "SRV")] == [9000]


def test_herald_forwards_outside_names_to_unbound(make_agent, peers):
    nsd = next_addr()
    peers.nsd(nsd, PEER_PORT, upstream_zones())
    ub = next_addr()
    peers.unbound(ub, PEER_PORT,
                  "server:\n  do-not-query-localhost: no\n"
                  'stub-zone:\n  name: "example.org"\n  stub-addr: %s@%d\n' % (nsd, PEER_PORT),
                  "example.org")
    a = make_agent(args=["-recursor", "%s:%d" % (ub, PEER_PORT)]).start()
    m = dns_query(a, "www.example.org")
    assert [r.address for r in rrs(m, "A")] == ["192.0.2.1"]
    assert m.flags & dns.flags.RA
    m = dns_query(a, "alias.example.org")
    assert [r.address for r in rrs(m, "A")] == ["192.0.2.1"]
    assert len(m.answer) == 3
    m = dns_query(a, "big.example.org", "TXT", tcp=True)
    assert len(rrs(m, "TXT")) == 12
    m = dns_query(a, "missing.example.org")
    assert m.rcode() == dns.rcode.NXDOMAIN
