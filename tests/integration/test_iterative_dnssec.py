"""Iterative recursion from root hints, and DNSSEC validation of recursive answers, offline.

Iterative: inside a network namespace, NSD on port 53 of 127.53.0.1 serves a fake root zone "."
that delegates the TLD "example." to a second NSD on 127.53.0.2:53; Herald (in the namespace)
runs with dns_config.recursion "iterative" and a root hints file naming the fake root, and no
recursors. DNSSEC: good.example. and bad.example. are signed with ldns-keygen/ldns-signzone and
served by NSD, their DS records are Herald's trust anchor, and bad.example. is tampered with
after signing (an A record changed): validated answers carry AD (for clients that set DO or
AD), the tampered one is SERVFAIL, unsigned names are answered without AD. The same validation
is checked in forward mode on loopback."""
import os
import subprocess
import time

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from conftest import NsHerald, dns_query, netns_argv, next_addr

ROOT_ADDR, TLD_ADDR = "127.53.0.1", "127.53.0.2"

ROOT_ZONE = """$TTL 3600
.                   IN SOA a.root-servers.net. hostmaster.root. 1 3600 600 86400 60
.                   IN NS  a.root-servers.net.
a.root-servers.net. IN A   %s
example.            IN NS  ns.example.
ns.example.         IN A   %s
""" % (ROOT_ADDR, TLD_ADDR)

ROOT_HINTS = """.                        3600000      NS    A.ROOT-SERVERS.NET.
A.ROOT-SERVERS.NET.      3600000      A     %s
""" % ROOT_ADDR

TLD_ZONE = """$ORIGIN example.
$TTL 300
@          IN SOA ns hostmaster 1 3600 600 86400 60
@          IN NS  ns
ns         IN A   %s
www        IN A   192.0.2.10
alias      IN CNAME www
good       IN NS  ns
bad        IN NS  ns
""" % TLD_ADDR


def signed_zone_text(origin, www):
    return """$ORIGIN %s.
$TTL 300
@     IN SOA ns.example. hostmaster.example. 1 3600 600 86400 60
@     IN NS  ns.example.
www   IN A   %s
ok    IN A   192.0.2.30
txt   IN TXT "signed"
""" % (origin, www)


def sign(d, origin, www):
    """Writes, keys and signs a zone; returns (signed zone file name, DS record text)."""
    zf = os.path.join(d, origin + ".zone")
    with open(zf, "w") as f:
        f.write(signed_zone_text(origin, www))
    key = subprocess.run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", origin], cwd=d,
                         capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    inception = time.strftime("%Y%m%d", time.gmtime(time.time() - 86400))
    subprocess.run(["ldns-signzone", "-i", inception, "-o", origin + ".", zf, key], cwd=d,
                   check=True, capture_output=True, timeout=60)
    with open(os.path.join(d, key + ".ds")) as f:
        ds = f.read()
    return origin + ".zone.signed", ds


def tamper(path, old, new):
    with open(path) as f:
        text = f.read()
    assert old in text
    with open(path, "w") as f:
        f.write(text.replace(old, new))


@pytest.fixture
def signed(tmpdir_path):
    """good.example. and bad.example. (tampered after signing), and the trust anchor file."""
    d = os.path.join(tmpdir_path, "signed")
    os.makedirs(d)
    good, ds_good = sign(d, "good.example", "192.0.2.20")
    bad, ds_bad = sign(d, "bad.example", "192.0.2.40")
    tamper(os.path.join(d, bad), "192.0.2.40", "192.0.2.41")
    ta = os.path.join(tmpdir_path, "trust-anchor.ds")
    with open(ta, "w") as f:
        f.write(ds_good + ds_bad)
    zones = {}
    for name, fn in (("good.example", good), ("bad.example", bad)):
        with open(os.path.join(d, fn)) as f:
            zones[name] = f.read()
    return zones, ta


def check_validation(ask):
    """ask(name, rdtype, **make_kw) -> dns.message.Message, through Herald."""
    # validated: AD for a client that set DO (with the RRSIGs) or AD (without them)
    m = ask("www.good.example", "A", use_edns=0, want_dnssec=True)
    assert m.rcode() == dns.rcode.NOERROR, m
    assert m.flags & dns.flags.AD, m
    assert any(rrset.rdtype == dns.rdatatype.RRSIG for rrset in m.answer), m
    assert [r.address for rrset in m.answer if rrset.rdtype == dns.rdatatype.A
            for r in rrset] == ["192.0.2.20"]
    m = ask("www.good.example", "A", flags=dns.flags.RD | dns.flags.AD)
    assert m.flags & dns.flags.AD
    assert all(rrset.rdtype != dns.rdatatype.RRSIG for rrset in m.answer), m
    m = ask("www.good.example", "A")  # neither DO nor AD: no AD (RFC 6840 §5.7)
    assert not m.flags & dns.flags.AD
    assert all(rrset.rdtype != dns.rdatatype.RRSIG for rrset in m.answer), m
    m = ask("missing.good.example", "A", use_edns=0, want_dnssec=True)
    assert m.rcode() == dns.rcode.NXDOMAIN and m.flags & dns.flags.AD, m
    # tampered after signing: bogus, SERVFAIL; its untouched records still validate
    m = ask("www.bad.example", "A", use_edns=0, want_dnssec=True)
    assert m.rcode() == dns.rcode.SERVFAIL, m
    m = ask("www.bad.example", "A")
    assert m.rcode() == dns.rcode.SERVFAIL, m
    m = ask("ok.bad.example", "A", use_edns=0, want_dnssec=True)
    assert m.rcode() == dns.rcode.NOERROR and m.flags & dns.flags.AD, m


def test_forward_mode_validates_with_the_trust_anchor(make_agent, peers, signed):
    zones, ta = signed
    up = next_addr()
    peers.nsd(up, 5300, zones)
    a = make_agent(args=["-recursor", "%s:5300" % up],
                   config={"dns_config": {"dnssec_validation": True, "trust_anchor": ta}}).start()
    check_validation(lambda name, rdtype, **kw: dns_query(a, name, rdtype, timeout=5, **kw))
    assert "dnssec=validate" in a.read_log()


def ns_dig(netns, *args):
    r = subprocess.run(netns_argv(netns, ["dig", "@127.0.0.1", "-p", "8600", "+time=3",
                                          "+tries=1"] + list(args)),
                       capture_output=True, text=True, timeout=20)
    return r.stdout


def ns_query(netns, tmpdir_path):
    """Queries Herald inside the namespace with dnspython run there, returning messages."""
    import dns.message

    def ask(name, rdtype, **kw):
        q = dns.message.make_query(name, rdtype, **kw)
        qf = os.path.join(tmpdir_path, "q.bin")
        with open(qf, "wb") as f:
            f.write(q.to_wire())
        code = ("import socket,sys\n"
                "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(5)\n"
                "s.sendto(open(sys.argv[1],'rb').read(),('127.0.0.1',8600))\n"
                "sys.stdout.buffer.write(s.recv(65535))\n")
        r = subprocess.run(netns_argv(netns, ["/usr/bin/python3", "-c", code, qf]),
                           capture_output=True, timeout=20)
        assert r.returncode == 0, r.stderr
        return dns.message.from_wire(r.stdout)
    return ask


def test_iterative_mode_resolves_from_root_hints_and_validates(netns, peers, signed,
                                                               tmpdir_path):
    zones, ta = signed
    peers.nsd(ROOT_ADDR, 53, {".": ROOT_ZONE}, netns=netns, name="nsd-root")
    tld = {"example": TLD_ZONE}
    tld.update(zones)
    peers.nsd(TLD_ADDR, 53, tld, netns=netns, name="nsd-tld")
    hints = os.path.join(tmpdir_path, "root.hints")
    with open(hints, "w") as f:
        f.write(ROOT_HINTS)
    h = NsHerald(netns, tmpdir_path, [],
                 {"dns_config": {"recursion": "iterative", "root_hints": hints,
                                 "dnssec_validation": True, "trust_anchor": ta}}).start()
    try:
        h.wait_for(lambda: "NOERROR" in ns_dig(netns, "consul", "SOA"), timeout=20,
                   msg="herald answering in the namespace")
        out = ns_dig(netns, "www.example")
        assert "status: NOERROR" in out and "192.0.2.10" in out, out
        fl = out.split("flags:")[1].split(";")[0].split()
        assert "ra" in fl and "aa" not in fl and "ad" not in fl, out  # unsigned: insecure
        out = ns_dig(netns, "alias.example", "+short")
        assert out.split() == ["www.example.", "192.0.2.10"], out
        out = ns_dig(netns, "nothing.example")
        assert "status: NXDOMAIN" in out, out
        out = ns_dig(netns, "nothing-tld")
        assert "status: NXDOMAIN" in out, out  # from the fake root
        check_validation(ns_query(netns, tmpdir_path))
        assert "recursion iterative" in h.read_log()
    finally:
        rc = h.stop()
        assert rc == 0, "herald exited %s:\n%s" % (rc, h.read_log())
