"""The DNS vectors of rfc-vectors/dns/ against the real agent, over UDP and TCP.

rfc-vectors/dns/README.md defines the format, the fixture (fixture.json: catalog-register
bodies, PUT here in order) and the standard configuration. Each case becomes one test per
transport; TCP cases marked `tcp-mode pipeline` are sent together on one connection (one test
per file), `split` ones a byte per write. Cases with `config` overrides run on an agent started
with that configuration (one agent per distinct configuration, shared by the module).
Every response also gets the README's general checks: ID, QR and opcode copied, OPT only when
asked and then ours (version 0, size 1232, no Z bits, no options), the question echoed byte for
byte, and the UDP size limit. rfc-vectors/dns/vectors.py parses the files and checks every
response: the C unit runner reads the same cases from it, so the format has one parser."""
import json
import os
import socket
import struct
import sys
import time

import dns.message
import pytest

from conftest import ROOT, Agent, wait_until

VEC_DIR = os.path.join(ROOT, "rfc-vectors", "dns")
sys.path.insert(0, VEC_DIR)
import vectors  # noqa: E402  (the one parser and checker of the .vec format)

STANDARD_DNS_CONFIG = {
    "node_ttl": "10s",
    "service_ttl": {"*": "5s", "svc1*": "20s", "svc1": "30s"},
    "soa": {"min_ttl": 30},
    "enable_truncate": True,
    "only_passing": False,
    "udp_answer_limit": 0,
    "a_record_limit": 0,
}

ALL_CASES = vectors.load(VEC_DIR)


# ---- agents ----------------------------------------------------------------------------------

class VectorAgent(Agent):
    """An agent named server1, as the fixture's only server."""

    @property
    def node_name(self):
        return "server1"

    def argv(self):
        argv = super().argv()
        i = argv.index("-node")
        argv[i + 1] = "server1"
        return argv


def config_key(case):
    return tuple(sorted(case.config.items()))


def agent_for(config_items, tmp):
    dns_config = json.loads(json.dumps(STANDARD_DNS_CONFIG))
    args = ["-datacenter", "dc1", "-domain", "consul."]
    alt = "alt.test."
    for k, v in config_items:
        if k in ("only_passing", "enable_truncate"):
            dns_config[k] = v.lower() in ("true", "yes", "1")
        elif k in ("udp_answer_limit", "a_record_limit"):
            dns_config[k] = int(v)
        elif k == "node_ttl":
            dns_config[k] = v if not v.isdigit() else "%ss" % v
        elif k == "soa_min_ttl":
            dns_config["soa"]["min_ttl"] = int(v.rstrip("s"))
        elif k == "alt_domain":
            alt = None if v == "none" else v
        else:
            raise ValueError("unknown config override %s" % k)
    if alt:
        args += ["-alt-domain", alt]
    a = VectorAgent(tmp, args=args, config={"dns_config": dns_config})
    a.start()
    with open(os.path.join(VEC_DIR, "fixture.json")) as f:
        bodies = json.load(f)
    for body in bodies:
        r = a.put("/v1/catalog/register", body)
        assert r.status == 200, (body, r.status, r.text)
    # the agent's own registration happened before (wait_ready): the fixture's server1 wins
    wait_until(lambda: a.get("/v1/catalog/node/server1").json()["Node"]["Address"]
               == "127.0.0.1", msg="fixture applied")
    return a


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("vectors"))
    started = {}

    def get(case):
        key = config_key(case)
        if key not in started:
            started[key] = agent_for(key, tmp)
        return started[key]

    yield get
    failures = []
    for a in started.values():
        rc = a.stop()
        if rc != 0:
            failures.append("agent %s exited %s:\n%s" % (a.addr, rc, a.read_log()))
    assert not failures, "\n".join(failures)


# ---- transports ------------------------------------------------------------------------------

def send_udp(agent, msg, timeout):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(msg, (agent.addr, agent.dns_port))
        try:
            return s.recv(65535)
        except socket.timeout:
            return None


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            return None
        b += chunk
    return b


def recv_framed(s):
    head = recv_exact(s, 2)
    if head is None:
        return None
    (n,) = struct.unpack("!H", head)
    return recv_exact(s, n)


SENTINEL_ID = 0xBEEF


def sentinel():
    q = dns.message.make_query("consul.", "SOA")
    q.id = SENTINEL_ID
    return q.to_wire()


def framed(msg):
    return struct.pack("!H", len(msg)) + msg


def send_tcp(agent, msg, split=False, expect_drop=False):
    """One message over a new connection; with expect_drop a sentinel query follows, and the
    first response must be the sentinel's (or the connection closes with nothing sent)."""
    s = socket.create_connection((agent.addr, agent.dns_port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        data = framed(msg)
        if split:
            for i in range(len(data)):
                s.sendall(data[i:i + 1])
                time.sleep(0.002)  # pacing: one byte per segment is the split under test
        else:
            s.sendall(data)
        if expect_drop:
            try:
                s.sendall(framed(sentinel()))
            except OSError:
                return None
        try:
            return recv_framed(s)
        except ConnectionResetError:
            return None
    finally:
        s.close()


# ---- checking --------------------------------------------------------------------------------

def check_response(case, query, resp, transport):
    errs = case.check(resp, transport, query)
    assert not errs, "%s over %s: %s" % (case.title, transport, "; ".join(errs))


def run_case(agent, case, transport):
    query = case.wire()
    if transport == "udp":
        resp = send_udp(agent, query, timeout=0.5 if case.drop else 3)
    else:
        resp = send_tcp(agent, query, split=case.tcp_mode == "split", expect_drop=case.drop)
    if case.drop:
        if transport == "udp":
            assert resp is None, "%s over udp: answered, want drop" % case.title
        else:
            assert resp is None or struct.unpack("!H", resp[:2])[0] == SENTINEL_ID, \
                "%s over tcp: answered, want drop" % case.title
        return
    check_response(case, query, resp, transport)


# ---- the tests -------------------------------------------------------------------------------

def single_params():
    out = []
    for c in ALL_CASES:
        for t in c.transports():
            if t == "tcp" and c.tcp_mode == "pipeline":
                continue
            out.append(pytest.param(c, t, id="%s-%s" % (c.title, t)))
    return out


def pipeline_params():
    files = {}
    for c in ALL_CASES:
        if c.tcp_mode == "pipeline" and "tcp" in c.transports():
            files.setdefault((c.file, config_key(c)), []).append(c)
    return [pytest.param(cases, id="%s-pipeline" % os.path.basename(f)[:-4])
            for (f, _), cases in sorted(files.items())]


@pytest.mark.parametrize("case,transport", single_params())
def test_vector(agents, case, transport):
    run_case(agents(case), case, transport)


@pytest.mark.parametrize("cases", pipeline_params())
def test_vector_pipeline(agents, cases):
    """RFC 7766 §6.2.1.1: the file's pipeline cases sent back to back on one connection, all
    answered (matched by ID; each case gets its own ID unless it sets one)."""
    agent = agents(cases[0])
    msgs = []
    for i, c in enumerate(cases):
        query = c.wire()
        if not c.id_set and c.raw is None:  # each case its own ID, unless the case sets one
            query = struct.pack("!H", 0x5000 + i) + query[2:]
        msgs.append((c, query))
    ids = [struct.unpack("!H", q[:2])[0] for _, q in msgs]
    assert len(set(ids)) == len(ids), "pipeline cases share IDs"
    s = socket.create_connection((agent.addr, agent.dns_port), timeout=5)
    try:
        s.sendall(b"".join(framed(q) for _, q in msgs) + framed(sentinel()))
        got = {}
        for _ in range(len(msgs) + 1):  # one answer per message at most
            resp = recv_framed(s)
            assert resp is not None, "connection closed before the sentinel's answer"
            (rid,) = struct.unpack("!H", resp[:2])
            if rid == SENTINEL_ID:
                break
            got[rid] = resp
        else:
            raise AssertionError("more answers than messages, and none for the sentinel")
    finally:
        s.close()
    for c, query in msgs:
        (qid,) = struct.unpack("!H", query[:2])
        if c.drop:
            assert qid not in got, "%s: answered, want drop" % c.title
        else:
            check_response(c, query, got.get(qid), "tcp (pipelined)")


def test_vectors_are_present():
    """Fails, rather than passing silently, when the vector files are missing."""
    assert os.path.exists(os.path.join(VEC_DIR, "fixture.json"))
    assert len(ALL_CASES) > 250, len(ALL_CASES)
    names = [c.title for c in ALL_CASES]
    assert len(names) == len(set(names)), "case names must be unique per file"
