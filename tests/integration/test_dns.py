"""DNS through the real binary: services registered over HTTP, answered over UDP and TCP to
dig, kdig and dnspython. Health changes are visible on the very next query (no sleep), TC over
UDP with the full answer over TCP, RFC 7766 pipelining, REFUSED outside the zone, workers,
restarts, the dns_config keys and listener errors."""
import os
import re
import socket
import struct
import subprocess

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from conftest import Agent, dig, dns_query, kdig


def register(agent, sid, name="web", port=80, address=None, check=None, tags=()):
    body = {"Name": name, "ID": sid, "Port": port, "Tags": list(tags)}
    if address:
        body["Address"] = address
    if check:
        body["Check"] = check
    r = agent.put("/v1/agent/service/register", body)
    assert r.status == 200, r.text


def catalog_register(agent, node, address, service=None, sid=None, port=80):
    body = {"Node": node, "Address": address}
    if service:
        body["Service"] = {"Service": service, "ID": sid or service, "Port": port}
    r = agent.put("/v1/catalog/register", body)
    assert r.status == 200, r.text


def answers(msg, rdtype):
    out = []
    for rrset in msg.answer:
        if rrset.rdtype == dns.rdatatype.from_text(rdtype):
            out.extend(rrset)
    return out


def addresses(msg):
    return sorted(r.address for r in answers(msg, "A") + answers(msg, "AAAA"))


def hex_ip(ip):
    return "".join("%02x" % int(p) for p in ip.split("."))


# ---- the user's view ------------------------------------------------------------------------

def test_dig_a_returns_the_addresses_of_the_instances(agent):
    register(agent, "redis1", "redis", 6379, address="10.0.0.1")
    register(agent, "redis2", "redis", 6380, address="10.0.0.2")
    register(agent, "redis3", "redis", 6381)  # the node's address
    out = dig(agent, "redis.service.consul", "+short")
    assert sorted(out.split()) == sorted(["10.0.0.1", "10.0.0.2", agent.addr])
    full = dig(agent, "redis.service.consul")
    assert "status: NOERROR" in full and " aa" in full.split("flags:")[1].split(";")[0]


def test_dig_srv_gives_port_and_target_with_its_address_in_additional(agent):
    register(agent, "web1", port=8080, address="10.0.0.7")
    register(agent, "web2", port=8081)
    out = dig(agent, "web.service.consul", "SRV")
    assert "status: NOERROR" in out, out
    m = dns_query(agent, "web.service.consul", "SRV")
    srv = {r.port: r.target.to_text() for r in answers(m, "SRV")}
    assert srv == {8080: "%s.addr.dc1.consul." % hex_ip("10.0.0.7"),
                   8081: "%s.node.dc1.consul." % agent.node_name}
    glue = {rrset.name.to_text(): [r.address for r in rrset] for rrset in m.additional
            if rrset.rdtype == dns.rdatatype.A}
    for target in srv.values():
        assert target in glue, (target, glue)
    assert glue["%s.node.dc1.consul." % agent.node_name] == [agent.addr]
    assert glue["%s.addr.dc1.consul." % hex_ip("10.0.0.7")] == ["10.0.0.7"]
    # RFC 2782 form, _tcp means no tag filter
    m = dns_query(agent, "_web._tcp.service.consul", "SRV")
    assert sorted(r.port for r in answers(m, "SRV")) == [8080, 8081]


def test_failing_check_hides_the_instance_on_the_very_next_query(agent):
    register(agent, "web1", address="10.0.1.1", check={"TTL": "60s", "Status": "passing"})
    register(agent, "web2", address="10.0.1.2", check={"TTL": "60s", "Status": "passing"})
    both = ["10.0.1.1", "10.0.1.2"]
    for _ in range(3):
        # several queries from fresh sockets: they spread over the workers and their caches
        for _ in range(6):
            assert addresses(dns_query(agent, "web.service.consul")) == both
        assert agent.put("/v1/agent/check/fail/service:web1").status == 200
        for _ in range(6):
            assert addresses(dns_query(agent, "web.service.consul")) == ["10.0.1.2"]
        assert sorted(dig(agent, "web.service.consul", "+short").split()) == ["10.0.1.2"]
        assert agent.put("/v1/agent/check/warn/service:web1").status == 200
        for _ in range(6):  # warning instances are still answered (only_passing is off)
            assert addresses(dns_query(agent, "web.service.consul")) == both
        assert agent.put("/v1/agent/check/fail/service:web2").status == 200
        assert agent.put("/v1/agent/check/fail/service:web1").status == 200
        m = dns_query(agent, "web.service.consul")
        assert m.rcode() == dns.rcode.NXDOMAIN and not m.answer
        assert agent.put("/v1/agent/check/pass/service:web1").status == 200
        assert agent.put("/v1/agent/check/pass/service:web2").status == 200


def test_deregistration_is_visible_on_the_next_query(agent):
    register(agent, "web1", address="10.0.2.1")
    register(agent, "web2", address="10.0.2.2")
    assert addresses(dns_query(agent, "web.service.consul")) == ["10.0.2.1", "10.0.2.2"]
    assert agent.put("/v1/agent/service/deregister/web1").status == 200
    for _ in range(6):
        assert addresses(dns_query(agent, "web.service.consul")) == ["10.0.2.2"]


def test_node_lookups(agent):
    out = dig(agent, "%s.node.consul" % agent.node_name, "+short")
    assert out.split() == [agent.addr]
    m = dns_query(agent, "%s.node.dc1.consul" % agent.node_name)
    assert addresses(m) == [agent.addr]
    assert m.flags & dns.flags.AA
    catalog_register(agent, "ext1", "192.0.2.10")
    assert dig(agent, "ext1.node.consul", "+short").split() == ["192.0.2.10"]
    # the addr form answers for any address
    assert dig(agent, "%s.addr.consul" % hex_ip("192.0.2.10"), "+short").split() == ["192.0.2.10"]


def test_nxdomain_carries_the_soa(agent):
    m = dns_query(agent, "missing.service.consul")
    assert m.rcode() == dns.rcode.NXDOMAIN
    assert m.flags & dns.flags.AA
    assert not m.answer
    soa = [rrset for rrset in m.authority if rrset.rdtype == dns.rdatatype.SOA]
    assert soa and soa[0].name.to_text() == "consul."
    assert soa[0][0].mname.to_text() == "ns.consul."
    out = dig(agent, "nope.node.consul")
    assert "status: NXDOMAIN" in out and "SOA" in out.split("AUTHORITY SECTION")[1]


def test_question_case_is_preserved(agent):
    register(agent, "web1", address="10.0.3.1")
    for name in ("web.service.consul", "WeB.SeRvIcE.CoNsUl", "WEB.SERVICE.CONSUL"):
        for _ in range(3):
            m = dns_query(agent, name)
            assert m.question[0].name.to_text(omit_final_dot=True) == name
            assert addresses(m) == ["10.0.3.1"]


def test_outside_names_are_refused(agent):
    out = dig(agent, "example.com")
    assert "status: REFUSED" in out, out
    m = dns_query(agent, "www.example.org", "AAAA")
    assert m.rcode() == dns.rcode.REFUSED and not m.answer
    m = dns_query(agent, "example.com", tcp=True)
    assert m.rcode() == dns.rcode.REFUSED


# ---- TCP ------------------------------------------------------------------------------------

def test_tcp_with_kdig_keepopen_pipelines_several_names(agent):
    register(agent, "web1", address="10.0.4.1")
    register(agent, "redis1", "redis", 6379, address="10.0.4.2")
    out = kdig(agent, "+tcp", "+keepopen", "web.service.consul", "A",
               "redis.service.consul", "A", "%s.node.consul" % agent.node_name, "A",
               "missing.service.consul", "A", "web.service.consul", "SRV")
    statuses = re.findall(r"status: (\w+)", out)
    assert statuses == ["NOERROR", "NOERROR", "NOERROR", "NXDOMAIN", "NOERROR"], out
    assert "10.0.4.1" in out and "10.0.4.2" in out
    assert out.count("(TCP)") >= 5 or "TCP" in out


def _frame(name, rdtype, qid):
    q = dns.message.make_query(name, rdtype)
    q.id = qid
    w = q.to_wire()
    return struct.pack("!H", len(w)) + w


def _read_framed(s):
    def exact(n):
        b = b""
        while len(b) < n:
            chunk = s.recv(n - len(b))
            if not chunk:
                raise EOFError
            b += chunk
        return b
    (n,) = struct.unpack("!H", exact(2))
    return dns.message.from_wire(exact(n))


def test_tcp_pipelined_queries_in_one_write_are_all_answered(agent):
    register(agent, "web1", address="10.0.5.1")
    names = ["web.service.consul", "consul.service.consul", "missing.service.consul",
             "%s.node.consul" % agent.node_name] * 5
    data = b"".join(_frame(n, "A", 1000 + i) for i, n in enumerate(names))
    with socket.create_connection((agent.addr, agent.dns_port), timeout=5) as s:
        s.sendall(data)
        got = [_read_framed(s) for _ in names]
    assert [m.id for m in got] == [1000 + i for i in range(len(names))]
    assert [dns.rcode.to_text(m.rcode()) for m in got[:4]] == \
        ["NOERROR", "NOERROR", "NXDOMAIN", "NOERROR"]


def test_tc_over_udp_and_the_full_answer_over_tcp(agent):
    for i in range(40):
        catalog_register(agent, "big%02d" % i, "10.9.0.%d" % (i + 1), "api", "api%02d" % i, 9000)
    # dig without EDNS: 512 bytes, TC set (+ignore: do not retry over TCP)
    out = dig(agent, "api.service.consul", "SRV", "+noedns", "+ignore")
    flags = out.split("flags:")[1].split(";")[0]
    assert " tc" in flags, out
    m = dns_query(agent, "api.service.consul", "SRV")
    assert m.flags & dns.flags.TC
    assert 0 < len(answers(m, "SRV")) < 40
    # over TCP: every instance, and the glue of every target
    m = dns_query(agent, "api.service.consul", "SRV", tcp=True)
    assert not m.flags & dns.flags.TC
    assert len(answers(m, "SRV")) == 40
    glue = [rrset for rrset in m.additional if rrset.rdtype == dns.rdatatype.A]
    assert len(glue) == 40
    out = dig(agent, "api.service.consul", "SRV", "+tcp")
    assert out.count("\tSRV\t") == 40, out
    # dig's own fallback: TC over UDP, then the full answer over TCP
    out = dig(agent, "api.service.consul", "A", "+noedns")
    assert "Truncated, retrying in TCP mode" in out
    assert out.count("\tA\t") == 40
    # EDNS 4096 fits all 40 A records over UDP
    m = dns_query(agent, "api.service.consul", "A", use_edns=0, payload=4096)
    assert not m.flags & dns.flags.TC and len(answers(m, "A")) == 40


# ---- workers, restarts, config ---------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_dns_workers(make_agent, workers):
    a = make_agent(args=["-dns-workers", str(workers)]).start()
    assert "workers=%d" % workers in a.read_log()
    register(a, "web1", address="10.0.6.1")
    for _ in range(20):
        assert addresses(dns_query(a, "web.service.consul")) == ["10.0.6.1"]
    assert addresses(dns_query(a, "web.service.consul", tcp=True)) == ["10.0.6.1"]
    assert a.put("/v1/agent/service/deregister/web1").status == 200
    for _ in range(10):
        assert dns_query(a, "web.service.consul").rcode() == dns.rcode.NXDOMAIN


def test_restart_keeps_answering(make_agent, tmpdir_path):
    data = os.path.join(tmpdir_path, "data")
    a = make_agent(data_dir=data).start()
    register(a, "web1", address="10.0.7.1")
    catalog_register(a, "ext1", "192.0.2.77", "db", "db1", 5432)
    assert addresses(dns_query(a, "web.service.consul")) == ["10.0.7.1"]
    assert a.stop() == 0
    b = make_agent(data_dir=data, addr=a.addr).start()
    assert addresses(dns_query(b, "web.service.consul")) == ["10.0.7.1"]
    assert addresses(dns_query(b, "db.service.consul")) == ["192.0.2.77"]
    assert addresses(dns_query(b, "ext1.node.consul", tcp=True)) == ["192.0.2.77"]
    # and writes after the restart are visible at once
    catalog_register(b, "ext2", "192.0.2.78", "db", "db2", 5432)
    assert addresses(dns_query(b, "db.service.consul")) == ["192.0.2.77", "192.0.2.78"]


def test_dns_config_ttls_and_soa(make_agent):
    a = make_agent(config={"dns_config": {
        "node_ttl": "10s",
        "service_ttl": {"*": "5s", "web": "30s", "db*": "7s"},
        "allow_stale": True, "max_stale": "87600h", "only_passing": False,
        "enable_truncate": True, "udp_answer_limit": 0, "a_record_limit": 0,
        "soa": {"refresh": 1800, "retry": 300, "expire": 43200, "min_ttl": 15},
        "recursor_timeout": "2s", "workers": 2}}).start()
    register(a, "web1", address="10.0.8.1")
    register(a, "redis1", "redis", address="10.0.8.2")
    register(a, "db1", "dbmain", address="10.0.8.3")
    assert dns_query(a, "web.service.consul").answer[0].ttl == 30
    assert dns_query(a, "redis.service.consul").answer[0].ttl == 5
    assert dns_query(a, "dbmain.service.consul").answer[0].ttl == 7
    assert dns_query(a, "%s.node.consul" % a.node_name).answer[0].ttl == 10
    m = dns_query(a, "consul", "SOA")
    soa = m.answer[0][0]
    assert (soa.refresh, soa.retry, soa.expire, soa.minimum) == (1800, 300, 43200, 15)
    assert "workers=2" in a.read_log()


def test_only_passing_hides_warning_instances(make_agent):
    a = make_agent(config={"dns_config": {"only_passing": True}}).start()
    register(a, "web1", address="10.0.9.1", check={"TTL": "60s", "Status": "passing"})
    register(a, "web2", address="10.0.9.2", check={"TTL": "60s", "Status": "warning"})
    assert addresses(dns_query(a, "web.service.consul")) == ["10.0.9.1"]


def test_domain_and_alt_domain(make_agent):
    a = make_agent(args=["-domain", "Herald", "-alt-domain", "sd.example."]).start()
    register(a, "web1", address="10.0.10.1")
    assert addresses(dns_query(a, "web.service.herald")) == ["10.0.10.1"]
    assert addresses(dns_query(a, "web.service.sd.example")) == ["10.0.10.1"]
    assert dns_query(a, "web.service.consul").rcode() == dns.rcode.REFUSED


def test_dns_port_flag_and_addresses_dns(make_agent):
    a = make_agent(args=["-dns-port", "8653"])
    a.dns_port = 8653
    a.start()
    assert addresses(dns_query(a, "%s.node.consul" % a.node_name)) == [a.addr]
    # addresses.dns moves the listener off client_addr
    b = make_agent()
    dns_addr = Agent(b.tmp).addr
    b.config = {"addresses": {"dns": dns_addr}}
    b.start()
    assert "listening on %s:8600" % dns_addr in b.read_log()
    q = dns.message.make_query("%s.node.consul" % b.node_name, "A")
    m = dns.query.udp(q, dns_addr, port=8600, timeout=3)
    assert [r.address for r in m.answer[0]] == [b.addr]


def _run_expect_fail(tmpdir_path, config=None, args=(), addr=None):
    a = Agent(tmpdir_path, args=args, config=config, addr=addr)
    return subprocess.run(a.argv(), capture_output=True, text=True, timeout=60)


def test_bad_dns_config_exits_1_naming_the_key(tmpdir_path):
    cases = [
        ({"dns_config": {"bogus": 1}}, "dns_config.bogus"),
        ({"dns_config": {"node_ttl": "soon"}}, "dns_config.node_ttl"),
        ({"dns_config": {"service_ttl": {"web": "x"}}}, "dns_config.service_ttl.web"),
        ({"dns_config": {"soa": {"serial": 1}}}, "dns_config.soa.serial"),
        ({"dns_config": {"workers": 0}}, "dns_config.workers"),
        ({"dns_config": {"only_passing": "yes"}}, "dns_config.only_passing"),
        ({"dns_config": []}, "dns_config"),
        ({"addresses": {"dns": "not-an-ip"}}, "addresses.dns"),
        ({"domain": "bad domain"}, "domain"),
    ]
    for cfg, word in cases:
        r = _run_expect_fail(tmpdir_path, config=cfg)
        assert r.returncode == 1, (cfg, r.stderr)
        assert word in r.stderr, (cfg, r.stderr)
    for args, word in ((["-dns-workers", "0"], "dns-workers"),
                       (["-dns-workers", "x"], "dns-workers")):
        r = _run_expect_fail(tmpdir_path, args=args)
        assert r.returncode == 1 and word in r.stderr, (args, r.stderr)


def test_dns_port_in_use_is_reported(tmpdir_path):
    a = Agent(tmpdir_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((a.addr, 8600))
        r = _run_expect_fail(tmpdir_path, addr=a.addr)
    assert r.returncode == 1, r.stderr
    assert "dns %s:8600/udp: address already in use" % a.addr in r.stderr, r.stderr


def test_sigterm_with_dns_traffic_exits_cleanly(make_agent):
    a = make_agent().start()
    register(a, "web1", address="10.0.11.1")
    socks = [socket.create_connection((a.addr, a.dns_port), timeout=5) for _ in range(5)]
    socks[0].sendall(b"\x00")  # a partial length
    for _ in range(50):
        dns_query(a, "web.service.consul")
    assert a.stop() == 0
    for s in socks:
        s.close()
