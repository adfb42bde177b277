"""Recursion through libunbound: names outside the zone are forwarded to -recursor upstreams (a
real NSD on loopback serving example.org, a root zone and 10.in-addr.arpa) and relayed
faithfully with RA; dead upstreams give SERVFAIL within recursor_timeout; the zone keeps its
latency while hundreds of recursive queries wait on a silent upstream; overload answers
SERVFAIL at once; -allow-recursion decides who may recurse; no recursor means REFUSED without
RA; bad recursion settings stop the agent naming the key."""
import os
import socket
import struct
import subprocess
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from conftest import (BIG_TXT, Agent, dig, dns_ask, dns_query, next_addr, recv_until_close,
                      upstream_zones, wait_until)

UPSTREAM_PORT = 5300


def rrs(msg, rdtype, section="answer"):
    out = []
    for rrset in getattr(msg, section):
        if rrset.rdtype == dns.rdatatype.from_text(rdtype):
            out.extend(rrset)
    return out


def flags_of(msg):
    return dns.flags.to_text(msg.flags).split()


@pytest.fixture
def upstream(peers):
    """NSD on its own loopback address: the upstream every forwarded name goes to."""
    addr = next_addr()
    peers.nsd(addr, UPSTREAM_PORT, upstream_zones())
    return "%s:%d" % (addr, UPSTREAM_PORT)


@pytest.fixture
def rec_agent(make_agent, upstream):
    return make_agent(args=["-recursor", upstream]).start()


def register(agent, sid, name, port, address):
    r = agent.put("/v1/agent/service/register",
                  {"Name": name, "ID": sid, "Port": port, "Address": address})
    assert r.status == 200, r.text


# ---- relayed faithfully ------------------------------------------------------------------

def test_dig_outside_name_answers_through_the_upstream_with_ra(rec_agent):
    out = dig(rec_agent, "www.example.org")
    assert "status: NOERROR" in out, out
    flags = out.split("flags:")[1].split(";")[0].split()
    assert "ra" in flags and "aa" not in flags and "rd" in flags, out
    assert "192.0.2.1" in out
    m = dns_query(rec_agent, "www.example.org", "AAAA")
    assert [r.address for r in rrs(m, "AAAA")] == ["2001:db8::1"]
    assert m.flags & dns.flags.RA and not m.flags & dns.flags.AA


def test_txt_srv_and_cname_chains_are_relayed(rec_agent):
    m = dns_query(rec_agent, "txt.example.org", "TXT")
    assert [r.strings for r in rrs(m, "TXT")] == [(b"hello", b"world")]
    m = dns_query(rec_agent, "_http._tcp.example.org", "SRV")
    srv = rrs(m, "SRV")
    assert [(r.priority, r.weight, r.port, r.target.to_text()) for r in srv] == \
        [(0, 5, 8080, "www.example.org.")]
    m = dns_query(rec_agent, "alias.example.org", "A")
    chain = [(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rrset[0].to_text())
             for rrset in m.answer]
    assert chain == [("alias.example.org.", "CNAME", "alias2.example.org."),
                     ("alias2.example.org.", "CNAME", "www.example.org."),
                     ("www.example.org.", "A", "192.0.2.1")], chain


def test_nxdomain_and_nodata_are_relayed_with_the_soa(rec_agent):
    m = dns_query(rec_agent, "missing.example.org")
    assert m.rcode() == dns.rcode.NXDOMAIN and not m.answer
    soa = rrs(m, "SOA", "authority")
    assert soa and soa[0].mname.to_text() == "ns1.example.org."
    m = dns_query(rec_agent, "www.example.org", "MX")
    assert m.rcode() == dns.rcode.NOERROR and not m.answer
    assert rrs(m, "SOA", "authority")
    # an unknown TLD: the upstream's root zone says NXDOMAIN
    m = dns_query(rec_agent, "nothing-here")
    assert m.rcode() == dns.rcode.NXDOMAIN
    assert m.flags & dns.flags.RA


def test_question_case_id_and_edns_follow_the_client(rec_agent):
    for name in ("WwW.ExAmPlE.oRg", "www.example.org"):
        q = dns.message.make_query(name, "A", use_edns=0, payload=4096, want_dnssec=True)
        q.id = 4242
        m = dns.query.udp(q, rec_agent.addr, port=rec_agent.dns_port, timeout=3)
        assert m.id == 4242
        assert m.question[0].name.to_text(omit_final_dot=True) == name
        assert m.edns == 0 and m.payload == 1232  # our size, not the client's
        assert m.ednsflags & dns.flags.DO  # DO copied (RFC 3225)
        assert not m.flags & dns.flags.AD  # not validated: no AD
    m = dns_query(rec_agent, "www.example.org", use_edns=False)
    assert m.edns == -1  # no OPT without one in the query
    # RD copied: a +norec query still gets an answer (RA says recursion is available)
    m = dns_query(rec_agent, "www.example.org", flags=0)
    assert not m.flags & dns.flags.RD and m.flags & dns.flags.RA


def test_large_answer_truncated_over_udp_and_whole_over_tcp(rec_agent):
    m = dns_query(rec_agent, "big.example.org", "TXT", use_edns=0, payload=1232)
    assert m.flags & dns.flags.TC and not m.answer
    m = dns_query(rec_agent, "big.example.org", "TXT", use_edns=False)
    assert m.flags & dns.flags.TC
    m = dns_query(rec_agent, "big.example.org", "TXT", tcp=True)
    assert not m.flags & dns.flags.TC
    assert sorted(b"".join(r.strings).decode() for r in rrs(m, "TXT")) == \
        sorted(t.strip('"') for t in BIG_TXT)
    # 4096 bytes of EDNS fit it over UDP
    m = dns_query(rec_agent, "big.example.org", "TXT", use_edns=0, payload=4096)
    assert not m.flags & dns.flags.TC and len(rrs(m, "TXT")) == len(BIG_TXT)
    out = dig(rec_agent, "big.example.org", "TXT", "+bufsize=1232")
    assert "Truncated, retrying in TCP mode" in out
    assert out.count("\tTXT\t") == len(BIG_TXT), out


def test_zone_answers_carry_ra_when_recursion_is_available(rec_agent):
    register(rec_agent, "redis1", "redis", 6379, "10.0.40.1")
    for _ in range(3):  # built, then from the answer cache
        m = dns_query(rec_agent, "redis.service.consul")
        assert [r.address for r in rrs(m, "A")] == ["10.0.40.1"]
        assert m.flags & dns.flags.AA and m.flags & dns.flags.RA


def test_ptr_for_addresses_not_in_the_catalog_goes_to_the_recursors(rec_agent):
    r = rec_agent.put("/v1/catalog/register", {"Node": "db7", "Address": "10.0.0.7"})
    assert r.status == 200
    m = dns_query(rec_agent, "7.0.0.10.in-addr.arpa", "PTR")
    assert [r.target.to_text() for r in rrs(m, "PTR")] == ["db7.node.dc1.consul."]
    assert m.flags & dns.flags.AA
    m = dns_query(rec_agent, "5.0.0.10.in-addr.arpa", "PTR")
    assert [r.target.to_text() for r in rrs(m, "PTR")] == ["host5.example.org."]
    assert not m.flags & dns.flags.AA and m.flags & dns.flags.RA
    assert dig(rec_agent, "-x", "10.0.0.5", "+short").split() == ["host5.example.org."]


def test_recursion_over_tcp_pipelined_with_zone_queries(rec_agent):
    register(rec_agent, "web1", "web", 80, "10.0.41.1")
    names = [("www.example.org", 1), ("web.service.consul", 2), ("missing.example.org", 3),
             ("txt.example.org", 4), ("web.service.consul", 5)]
    data = b""
    for name, qid in names:
        q = dns.message.make_query(name, "TXT" if name.startswith("txt") else "A")
        q.id = qid
        w = q.to_wire()
        data += struct.pack("!H", len(w)) + w
    got = {}
    with socket.create_connection((rec_agent.addr, rec_agent.dns_port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)  # half-closed: every answer must still come
        buf = recv_until_close(s)
    while buf:
        (n,) = struct.unpack("!H", buf[:2])
        m = dns.message.from_wire(buf[2:2 + n])
        got[m.id] = m
        buf = buf[2 + n:]
    assert sorted(got) == [1, 2, 3, 4, 5]
    assert [r.address for r in rrs(got[1], "A")] == ["192.0.2.1"]
    assert got[3].rcode() == dns.rcode.NXDOMAIN
    assert [r.address for r in rrs(got[2], "A")] == ["10.0.41.1"]


def test_recursors_from_the_config_file_and_a_dead_one_beside_a_live_one(make_agent, upstream,
                                                                          peers):
    dead = next_addr()
    peers.blackhole(dead, 53)
    a = make_agent(config={"recursors": [dead, upstream],
                           "dns_config": {"recursor_timeout": "3s"}}).start()
    for i in range(6):
        m = dns_query(a, "www.example.org", timeout=4)
        assert m.rcode() == dns.rcode.NOERROR, m
        assert [r.address for r in rrs(m, "A")] == ["192.0.2.1"]


def test_libunbound_cache_answers_after_the_upstream_goes_away(make_agent, peers):
    addr = next_addr()
    nsd = peers.nsd(addr, UPSTREAM_PORT, upstream_zones())
    a = make_agent(args=["-recursor", "%s:%d" % (addr, UPSTREAM_PORT), "-dns-workers", "1"],
                   config={"dns_config": {"cache_size": "8MB"}}).start()
    assert [r.address for r in rrs(dns_query(a, "www.example.org"), "A")] == ["192.0.2.1"]
    nsd.stop()
    for _ in range(3):
        m = dns_query(a, "www.example.org")
        assert [r.address for r in rrs(m, "A")] == ["192.0.2.1"]
        assert 0 < m.answer[0].ttl <= 300


# ---- failing upstreams, stalls and overload ----------------------------------------------

def timed_query(agent, name, tcp=False, timeout=10):
    t0 = time.monotonic()
    m = dns_query(agent, name, tcp=tcp, timeout=timeout)
    return m, time.monotonic() - t0


def test_silent_or_closed_upstreams_give_servfail_within_recursor_timeout(make_agent, peers):
    silent = next_addr()
    peers.blackhole(silent, 53)
    closed = next_addr()  # nothing listens there
    a = make_agent(args=["-recursor", silent, "-recursor", closed + ":5399"],
                   config={"dns_config": {"recursor_timeout": "1s"}}).start()
    for name, tcp in (("www.example.org", False), ("other.example.org", True),
                      ("third.example.net", False)):
        m, took = timed_query(a, name, tcp=tcp)
        assert m.rcode() == dns.rcode.SERVFAIL, m
        assert m.flags & dns.flags.RA
        assert took < 1.5, took
    # the zone still answers
    assert dns_query(a, "consul.service.consul").rcode() == dns.rcode.NOERROR


def test_zone_latency_stays_low_while_hundreds_of_recursive_queries_stall(make_agent, peers,
                                                                          record_property):
    silent = next_addr()
    hole = peers.blackhole(silent, 53)
    a = make_agent(args=["-recursor", silent],
                   config={"dns_config": {"recursor_timeout": "10s"}}).start()
    register(a, "web1", "web", 80, "10.0.42.1")
    # 400 recursive queries from 8 sockets (spread over the workers), all left waiting
    socks = []
    for s_i in range(8):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        for i in range(50):
            q = dns.message.make_query("stall-%d-%d.example.net" % (s_i, i), "A")
            s.sendto(q.to_wire(), (a.addr, a.dns_port))
        socks.append(s)
    # every one of them is waiting on the upstream (libunbound asked it for each name), so the
    # workers are done dispatching them before the zone queries are timed
    wait_until(lambda: len([n for n in list(hole.names) if n.startswith("stall-")]) >= 400,
               timeout=10, msg="libunbound asking the silent upstream for all 400 names")
    # 100 zone queries, one at a time, each on a raw socket, timed
    lat = []
    zone_q = dns.message.make_query("web.service.consul", "A").to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for i in range(100):
            t0 = time.perf_counter()
            s.sendto(zone_q, (a.addr, a.dns_port))
            data = s.recv(4096)
            lat.append(time.perf_counter() - t0)
            m = dns.message.from_wire(data)
            assert [r.address for r in rrs(m, "A")] == ["10.0.42.1"]
    worst = max(lat) * 1000
    record_property("max_zone_latency_ms", "%.3f" % worst)
    print("zone latency during the stall: max %.3f ms, median %.3f ms over %d queries" %
          (worst, sorted(lat)[50] * 1000, len(lat)))
    assert worst < 10, "zone latency during the stall: max %.3f ms" % worst
    # the stalled queries are still outstanding (none answered yet)
    for s in socks:
        s.setblocking(False)
        with pytest.raises(BlockingIOError):
            s.recv(4096)
        s.close()


def test_overload_answers_servfail_at_once(make_agent, peers):
    silent = next_addr()
    peers.blackhole(silent, 53)
    a = make_agent(args=["-recursor", silent, "-dns-workers", "1"],
                   config={"dns_config": {"recursor_timeout": "5s",
                                          "recursor_max_queries": 20}}).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.5)
        t0 = time.monotonic()
        for i in range(60):
            q = dns.message.make_query("over-%d.example.net" % i, "A")
            q.id = i
            s.sendto(q.to_wire(), (a.addr, a.dns_port))
        fast = []
        try:
            for _ in range(60):  # one answer per query at most
                fast.append(dns.message.from_wire(s.recv(4096)))
        except socket.timeout:
            pass
        took = time.monotonic() - t0
    assert took < 4
    # 20 wait for the upstream; the other 40 got SERVFAIL without waiting
    assert len(fast) == 40, len(fast)
    assert all(m.rcode() == dns.rcode.SERVFAIL for m in fast)
    assert sorted(m.id for m in fast) == list(range(20, 60))


def test_sigterm_with_recursive_queries_in_flight_exits_cleanly(make_agent, peers):
    silent = next_addr()
    hole = peers.blackhole(silent, 53)
    a = make_agent(args=["-recursor", silent]).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(50):
            s.sendto(dns.message.make_query("x%d.example.net" % i, "A").to_wire(),
                     (a.addr, a.dns_port))
    tcp = socket.create_connection((a.addr, a.dns_port), timeout=5)
    w = dns.message.make_query("tcp.example.net", "A").to_wire()
    tcp.sendall(struct.pack("!H", len(w)) + w)
    # the TCP query is in flight once libunbound asks the upstream for it
    wait_until(lambda: "tcp.example.net." in hole.names, timeout=5, msg="the TCP query upstream")
    assert a.stop() == 0, a.read_log()
    tcp.close()


# ---- who may recurse ---------------------------------------------------------------------

def test_clients_outside_allow_recursion_are_refused_but_get_the_zone(make_agent, upstream):
    a = make_agent(args=["-recursor", upstream, "-allow-recursion", "127.0.0.99/32"]).start()
    register(a, "web1", "web", 80, "10.0.43.1")
    m = dns_query(a, "www.example.org")  # from 127.0.0.1: not allowed
    assert m.rcode() == dns.rcode.REFUSED and not m.flags & dns.flags.RA
    m = dns_query(a, "www.example.org", tcp=True)
    assert m.rcode() == dns.rcode.REFUSED and not m.flags & dns.flags.RA
    m = dns_query(a, "web.service.consul")
    assert [r.address for r in rrs(m, "A")] == ["10.0.43.1"]
    assert m.flags & dns.flags.AA and not m.flags & dns.flags.RA
    # from 127.0.0.99: allowed, over UDP and TCP, and its zone answers say RA
    for tcp in (False, True):
        m = dns_ask(a.addr, a.dns_port, "www.example.org", tcp=tcp, source="127.0.0.99")
        assert [r.address for r in rrs(m, "A")] == ["192.0.2.1"]
        assert m.flags & dns.flags.RA
        m = dns_ask(a.addr, a.dns_port, "web.service.consul", tcp=tcp, source="127.0.0.99")
        assert m.flags & dns.flags.AA and m.flags & dns.flags.RA
    # the cached zone answer still says no RA to the other client
    m = dns_query(a, "web.service.consul")
    assert not m.flags & dns.flags.RA


def test_allow_recursion_in_the_config_file_and_the_flag_overriding_it(make_agent, upstream):
    a = make_agent(args=["-recursor", upstream],
                   config={"dns_config": {"allow_recursion": ["192.0.2.0/24", "::1/128"]}}).start()
    assert dns_query(a, "www.example.org").rcode() == dns.rcode.REFUSED
    b = make_agent(args=["-recursor", upstream, "-allow-recursion", "127.0.0.0/8"],
                   config={"dns_config": {"allow_recursion": ["192.0.2.0/24"]}}).start()
    assert dns_query(b, "www.example.org").rcode() == dns.rcode.NOERROR


def test_without_recursors_outside_names_are_refused_without_ra(agent):
    for tcp in (False, True):
        m = dns_query(agent, "www.example.org", tcp=tcp)
        assert m.rcode() == dns.rcode.REFUSED and not m.flags & dns.flags.RA
    m = dns_query(agent, "consul.service.consul")
    assert m.flags & dns.flags.AA and not m.flags & dns.flags.RA
    m = dns_query(agent, "9.9.9.10.in-addr.arpa", "PTR")
    assert m.rcode() == dns.rcode.REFUSED and not m.flags & dns.flags.RA


# ---- configuration -----------------------------------------------------------------------

def _run_expect_fail(tmpdir_path, config=None, args=()):
    a = Agent(tmpdir_path, args=args, config=config)
    return subprocess.run(a.argv(), capture_output=True, text=True, timeout=60)


def test_bad_recursion_settings_exit_1_naming_them(tmpdir_path):
    missing = os.path.join(tmpdir_path, "no-such-file")
    cases = [
        (["-recursor", "not-an-ip"], None, "recursor"),
        (["-recursor", "10.0.0.1:99999"], None, "recursor"),
        ([], {"recursors": ["10.0.0.1:x"]}, "recursor"),
        ([], {"recursors": "10.0.0.1"}, "recursors"),
        (["-allow-recursion", "10.0.0.0/33"], None, "-allow-recursion"),
        (["-allow-recursion", "10.1.0.0/8"], None, "-allow-recursion"),
        ([], {"dns_config": {"allow_recursion": ["nope"]}}, "dns_config.allow_recursion"),
        ([], {"dns_config": {"allow_recursion": "10.0.0.0/8"}}, "dns_config.allow_recursion"),
        ([], {"dns_config": {"recursion": "recursive"}}, "dns_config.recursion"),
        (["-recursor", "10.0.0.1"], {"dns_config": {"recursion": "iterative"}},
         "dns_config.recursion"),
        ([], {"dns_config": {"root_hints": missing}}, "dns_config.root_hints"),
        ([], {"dns_config": {"recursion": "iterative", "root_hints": missing}},
         "dns_config.root_hints"),
        ([], {"dns_config": {"dnssec_validation": "yes"}}, "dns_config.dnssec_validation"),
        ([], {"dns_config": {"dnssec_validation": True, "trust_anchor": missing}},
         "dns_config.trust_anchor"),
        ([], {"dns_config": {"trust_anchor": "/etc/hostname"}}, "dns_config.trust_anchor"),
        ([], {"dns_config": {"cache_size": "lots"}}, "dns_config.cache_size"),
        ([], {"dns_config": {"cache_size": "10KB"}}, "dns_config.cache_size"),
        ([], {"dns_config": {"recursor_timeout": "0s"}}, "dns_config.recursor_timeout"),
        ([], {"dns_config": {"recursor_max_queries": 0}}, "dns_config.recursor_max_queries"),
    ]
    for args, cfg, word in cases:
        r = _run_expect_fail(tmpdir_path, config=cfg, args=args)
        assert r.returncode == 1, (args, cfg, r.stderr)
        assert word in r.stderr, (args, cfg, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_malformed_root_hints_or_trust_anchor_stop_the_agent(tmpdir_path):
    bad = os.path.join(tmpdir_path, "bad.txt")
    with open(bad, "w") as f:
        f.write("this is not a zone file\n")
    for cfg in ({"dns_config": {"recursion": "iterative", "root_hints": bad}},
                {"dns_config": {"dnssec_validation": True, "trust_anchor": bad}}):
        r = _run_expect_fail(tmpdir_path, config=cfg,
                             args=[] if "root_hints" in cfg["dns_config"] else
                             ["-recursor", "127.0.0.1"])
        assert r.returncode == 1, (cfg, r.stderr)
        assert "dns recursion: libunbound could not apply the configuration" in r.stderr, r.stderr
        assert "Sanitizer" not in r.stderr, r.stderr
