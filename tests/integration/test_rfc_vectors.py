"""The DNS vectors of rfc-vectors/dns/ against the real agent, over UDP and TCP.

rfc-vectors/dns/README.md defines the format, the fixture (fixture.json: catalog-register
bodies, PUT here in order) and the standard configuration. Each case becomes one test per
transport; TCP cases marked `tcp-mode pipeline` are sent together on one connection (one test
per file), `split` ones a byte per write. Cases with `config` overrides run on an agent started
with that configuration (one agent per distinct configuration, shared by the module).
Every response also gets the README's general checks: ID, QR and opcode copied, OPT only when
asked and then ours (version 0, size 1232, no Z bits, no options), the question echoed byte for
byte, and the UDP size limit."""
import glob
import json
import os
import socket
import struct
import time

import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import pytest

from conftest import ROOT, Agent, wait_until

VEC_DIR = os.path.join(ROOT, "rfc-vectors", "dns")
HAVE_VECTORS = (os.path.exists(os.path.join(VEC_DIR, "README.md"))
                and os.path.exists(os.path.join(VEC_DIR, "fixture.json"))
                and bool(glob.glob(os.path.join(VEC_DIR, "*.vec"))))

STANDARD_DNS_CONFIG = {
    "node_ttl": "10s",
    "service_ttl": {"*": "5s", "svc1*": "20s", "svc1": "30s"},
    "soa": {"min_ttl": 30},
    "enable_truncate": True,
    "only_passing": False,
    "udp_answer_limit": 0,
    "a_record_limit": 0,
}

FLAG_BITS = {"qr": 0x8000, "aa": 0x0400, "tc": 0x0200, "rd": 0x0100, "ra": 0x0080,
             "z": 0x0040, "ad": 0x0020, "cd": 0x0010}
RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5,
          "BADVERS": 16}
SECTIONS = ("answer", "authority", "additional")


# ---- parsing the .vec files -----------------------------------------------------------------

class Case:
    def __init__(self, file, name):
        self.file = file
        self.name = name
        self.qname = None
        self.qtype = "A"
        self.qclass = "IN"
        self.flags = []
        self.opcode = 0
        self.id = 4660
        self.id_set = False
        self.qdcount = 1
        self.edns = None  # dict
        self.raw = None   # bytes
        self.transport = "both"
        self.tcp_mode = "whole"
        self.config = {}
        self.drop = False
        self.expect = {}
        self.sections = {s: None for s in SECTIONS}

    @property
    def label(self):
        return "%s:%s" % (os.path.basename(self.file)[:-4], self.name)

    def transports(self):
        return ["udp", "tcp"] if self.transport == "both" else [self.transport]

    def wire(self, qid=None):
        """The query message and the bytes of its question (None when raw)."""
        if self.raw is not None:
            return self.raw, None
        qid = self.id if qid is None else qid
        flags = (self.opcode & 0xF) << 11
        for f in self.flags:
            flags |= FLAG_BITS[f]
        question = b""
        if self.qname is not None:
            question = dns.name.from_text(self.qname).to_wire()
            question += struct.pack("!HH", dns.rdatatype.from_text(self.qtype),
                                    dns.rdataclass.from_text(self.qclass))
        arcount = 1 if self.edns is not None else 0
        msg = struct.pack("!HHHHHH", qid, flags, self.qdcount, 0, 0, arcount)
        msg += question * self.qdcount
        if self.edns is not None:
            e = self.edns
            eflags = e.get("flags", 0x8000 if e.get("do") else 0)
            if e.get("do"):
                eflags |= 0x8000
            opts = b""
            for code, data in e.get("opts", []):
                opts += struct.pack("!HH", code, len(data)) + data
            ttl = (e.get("version", 0) << 16) | eflags
            msg += b"\x00" + struct.pack("!HHIH", 41, e.get("size", 1232), ttl, len(opts)) + opts
        return msg, (question if self.qdcount == 1 else None)


def parse_vec(path):
    cases = []
    cur = None
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip() if not line.lstrip().startswith(
                ("answer", "authority", "additional")) else line.strip()
            if not line:
                continue
            word, _, rest = line.partition(" ")
            rest = rest.strip()
            if word == "case":
                cur = Case(path, rest)
                cases.append(cur)
                continue
            if cur is None:
                raise ValueError("%s:%d: %s before any case" % (path, lineno, word))
            args = rest.split()
            if word == "query":
                cur.qname = args[0]
                if len(args) > 1:
                    cur.qtype = args[1]
                if len(args) > 2:
                    cur.qclass = args[2]
            elif word == "flags":
                cur.flags += args
            elif word == "opcode":
                cur.opcode = int(args[0])
            elif word == "id":
                cur.id = int(args[0], 0)
                cur.id_set = True
            elif word == "qdcount":
                cur.qdcount = int(args[0])
            elif word == "edns":
                e = {"opts": []}
                for a in args:
                    k, _, v = a.partition("=")
                    if k == "version":
                        e["version"] = int(v)
                    elif k == "size":
                        e["size"] = int(v)
                    elif k == "do":
                        e["do"] = True
                    elif k == "flags":
                        e["flags"] = int(v, 16) if v.lower().startswith("0x") else int(v)
                    elif k == "opt":
                        code, _, hexdata = v.partition(":")
                        e["opts"].append((int(code), bytes.fromhex(hexdata)))
                    else:
                        raise ValueError("%s:%d: edns %s" % (path, lineno, a))
                cur.edns = e
            elif word == "raw":
                cur.raw = (cur.raw or b"") + bytes.fromhex("".join(args))
            elif word == "transport":
                cur.transport = args[0]
            elif word == "tcp-mode":
                cur.tcp_mode = args[0]
            elif word == "config":
                for a in args:
                    k, _, v = a.partition("=")
                    cur.config[k] = v
            elif word == "expect":
                if args == ["drop"]:
                    cur.drop = True
                else:
                    for a in args:
                        if a.startswith("len<="):
                            cur.expect["len<="] = int(a[5:])
                            continue
                        k, _, v = a.partition("=")
                        cur.expect[k] = v
            elif word in SECTIONS:
                if cur.sections[word] is None:
                    cur.sections[word] = []
                cur.sections[word].append(args)
            else:
                raise ValueError("%s:%d: unknown line %r" % (path, lineno, word))
    return cases


ALL_CASES = []
if HAVE_VECTORS:
    for _path in sorted(glob.glob(os.path.join(VEC_DIR, "*.vec"))):
        ALL_CASES += parse_vec(_path)


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
                time.sleep(0.002)
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

def udp_limit(case):
    if case.edns is None or case.raw is not None:
        return 512
    return min(max(case.edns.get("size", 1232), 512), 4096)


def rr_fields(rrset, rr):
    return [rrset.name.to_text(), str(rrset.ttl), dns.rdatatype.to_text(rrset.rdtype)] + \
        rr.to_text().split()


def fields_match(want, got):
    if len(want) != len(got):
        return False
    for i, (w, g) in enumerate(zip(want, got)):
        if w == "*":
            continue
        if i == 0 or (w.endswith(".") and g.endswith(".")):
            if w.lower() != g.lower():
                return False
        elif w != g:
            return False
    return True


def multiset_equal(want, got):
    got = list(got)
    for w in want:
        for i, g in enumerate(got):
            if fields_match(w, g):
                del got[i]
                break
        else:
            return False
    return not got


def count_ok(spec, n):
    if spec.startswith(">="):
        return n >= int(spec[2:])
    if spec.startswith("<="):
        return n <= int(spec[2:])
    return n == int(spec)


def check_response(case, query, question, resp, transport):
    where = "%s over %s" % (case.label, transport)
    assert resp is not None, "%s: no response" % where
    assert len(resp) >= 12, "%s: short response" % where
    rid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", resp[:12])
    qid, qflags = struct.unpack("!HH", query[:4]) if len(query) >= 4 else (None, 0)
    assert rid == qid, "%s: ID %d, want %d" % (where, rid, qid)
    assert flags & 0x8000, "%s: QR not set" % where
    assert (flags >> 11) & 0xF == (qflags >> 11) & 0xF, "%s: opcode not copied" % where
    if transport == "udp":
        assert len(resp) <= udp_limit(case), "%s: %d bytes over UDP" % (where, len(resp))
    if question is not None and qd == 1:
        assert resp[12:12 + len(question)] == question, "%s: question not echoed" % where

    # dnspython knows only the assigned opcodes: parse the rest with the opcode cleared (it was
    # checked above).
    m = dns.message.from_wire(resp[:2] + bytes([resp[2] & 0x87]) + resp[3:], ignore_trailing=False)
    has_opt = m.opt is not None
    if case.edns is None and case.raw is None:
        assert not has_opt, "%s: OPT without one in the query" % where
    if has_opt:
        assert m.opt.name == dns.name.root
        assert m.payload == 1232, "%s: our OPT size %d" % (where, m.payload)
        assert m.edns == 0, "%s: our EDNS version %d" % (where, m.edns)
        assert m.ednsflags & 0x7FFF == 0, "%s: Z bits in our OPT" % where
        assert not m.options, "%s: options echoed" % where
    rcode = (flags & 0xF) | (((m.ednsflags >> 24) & 0xFF) << 4 if has_opt else 0)

    exp = case.expect
    if "rcode" in exp:
        assert rcode == RCODES[exp["rcode"]], "%s: rcode %d, want %s" % (where, rcode,
                                                                         exp["rcode"])
    if "flags" in exp:
        want = {f for f in exp["flags"].split(",") if f}
        got = {f for f, bit in FLAG_BITS.items() if flags & bit}
        assert got == want, "%s: flags %s, want %s" % (where, sorted(got), sorted(want))
    for key, n in (("an", an), ("ns", ns), ("ar", ar - (1 if has_opt else 0))):
        if key in exp:
            assert count_ok(exp[key], n), "%s: %s=%d, want %s" % (where, key, n, exp[key])
    if "opt" in exp:
        assert has_opt == (exp["opt"] == "yes"), "%s: opt=%s" % (where, has_opt)
    if "do" in exp:
        assert has_opt and bool(m.ednsflags & 0x8000) == (exp["do"] == "yes"), \
            "%s: DO bit" % where
    if "version" in exp:
        assert has_opt and m.edns == int(exp["version"]), "%s: version" % where
    if "len<=" in exp:
        assert len(resp) <= exp["len<="], "%s: %d bytes" % (where, len(resp))
    for sec in SECTIONS:
        want = case.sections[sec]
        if want is None:
            continue
        got = [rr_fields(rrset, rr) for rrset in getattr(m, sec) for rr in rrset]
        assert multiset_equal(want, got), "%s: %s section\n got: %s\nwant: %s" % (
            where, sec, got, want)


def run_case(agent, case, transport):
    query, question = case.wire()
    if transport == "udp":
        resp = send_udp(agent, query, timeout=0.5 if case.drop else 3)
    else:
        resp = send_tcp(agent, query, split=case.tcp_mode == "split", expect_drop=case.drop)
    if case.drop:
        if transport == "udp":
            assert resp is None, "%s over udp: answered, want drop" % case.label
        else:
            assert resp is None or struct.unpack("!H", resp[:2])[0] == SENTINEL_ID, \
                "%s over tcp: answered, want drop" % case.label
        return
    check_response(case, query, question, resp, transport)


# ---- the tests -------------------------------------------------------------------------------

def single_params():
    out = []
    for c in ALL_CASES:
        for t in c.transports():
            if t == "tcp" and c.tcp_mode == "pipeline":
                continue
            out.append(pytest.param(c, t, id="%s-%s" % (c.label, t)))
    return out


def pipeline_params():
    files = {}
    for c in ALL_CASES:
        if c.tcp_mode == "pipeline" and "tcp" in c.transports():
            files.setdefault((c.file, config_key(c)), []).append(c)
    return [pytest.param(cases, id="%s-pipeline" % os.path.basename(f)[:-4])
            for (f, _), cases in sorted(files.items())]


@pytest.mark.skipif(not HAVE_VECTORS, reason="rfc-vectors/dns/ not there yet")
@pytest.mark.parametrize("case,transport", single_params() if HAVE_VECTORS else [])
def test_vector(agents, case, transport):
    run_case(agents(case), case, transport)


@pytest.mark.skipif(not HAVE_VECTORS, reason="rfc-vectors/dns/ not there yet")
@pytest.mark.parametrize("cases", pipeline_params() if HAVE_VECTORS else [])
def test_vector_pipeline(agents, cases):
    """RFC 7766 §6.2.1.1: the file's pipeline cases sent back to back on one connection, all
    answered (matched by ID; each case gets its own ID unless it sets one)."""
    agent = agents(cases[0])
    msgs = []
    for i, c in enumerate(cases):
        qid = c.id if c.id_set else 0x5000 + i
        query, question = c.wire(qid)
        msgs.append((c, query, question))
    ids = [struct.unpack("!H", q[:2])[0] for _, q, _ in msgs]
    assert len(set(ids)) == len(ids), "pipeline cases share IDs"
    s = socket.create_connection((agent.addr, agent.dns_port), timeout=5)
    try:
        s.sendall(b"".join(framed(q) for _, q, _ in msgs) + framed(sentinel()))
        got = {}
        while True:
            resp = recv_framed(s)
            assert resp is not None, "connection closed before the sentinel's answer"
            (rid,) = struct.unpack("!H", resp[:2])
            if rid == SENTINEL_ID:
                break
            got[rid] = resp
    finally:
        s.close()
    for c, query, question in msgs:
        (qid,) = struct.unpack("!H", query[:2])
        if c.drop:
            assert qid not in got, "%s: answered, want drop" % c.label
        else:
            check_response(c, query, question, got.get(qid), "tcp (pipelined)")


def test_vectors_are_present():
    """Reports (as a skip) when the vector files are missing rather than passing silently."""
    if not HAVE_VECTORS:
        pytest.skip("rfc-vectors/dns/ (README.md, fixture.json, *.vec) not there yet")
    assert ALL_CASES
    names = [c.label for c in ALL_CASES]
    assert len(names) == len(set(names)), "case names must be unique per file"
