#!/usr/bin/env python3
"""Reader for the DNS vectors (README.md in this folder): parses the .vec files, builds each
case's query in wire form, and checks a response against the case. It is the one parser of the
format: the unit runner in C (tests/unit/zone/test_dns_vectors.c) reads the cases from
`--json`, and the integration runner imports this module.

    import vectors
    for case in vectors.load():             # every case of every .vec file, in file order
        q = case.wire()                      # the query's bytes (no TCP length prefix)
        errors = case.check(resp, "udp")     # [] when resp (bytes, or None: no response) is right

Checking a response needs dnspython (/usr/bin/python3 has it on Debian). As a script:
    python3 vectors.py --list                       the cases, one per line
    python3 vectors.py --json                       every case as JSON (the query in hex)
    python3 vectors.py --server 127.0.0.1:8600      run them against a server (UDP and TCP)
The server must hold fixture.json and run the standard configuration; cases with `config`
lines are skipped (they need another configuration).
"""
import os
import re
import socket
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

FLAGS = {"qr": 0x8000, "aa": 0x0400, "tc": 0x0200, "rd": 0x0100,
         "ra": 0x0080, "z": 0x0040, "ad": 0x0020, "cd": 0x0010}
RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4,
          "REFUSED": 5, "BADVERS": 16}
CLASSES = {"IN": 1, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}
TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[^\s"]+')


def _type(s):
    s = s.upper()
    if s.startswith("TYPE") and s[4:].isdigit():
        return int(s[4:])
    import dns.rdatatype
    return int(dns.rdatatype.from_text(s))


def _class(s):
    s = s.upper()
    if s.startswith("CLASS") and s[5:].isdigit():
        return int(s[5:])
    return CLASSES[s]


def _count(s):
    for op in (">=", "<=", "="):
        if s.startswith(op):
            return op, int(s[len(op):])
    raise ValueError(s)


class Case:
    def __init__(self, file, name, line):
        self.file, self.name, self.line = file, name, line
        self.qname, self.qtype, self.qclass = ".", 1, 1
        self.flags, self.opcode, self.id, self.qdcount = 0, 0, 0x1234, None
        self.id_set = False  # an `id` line: the ID is part of the case
        self.edns = None  # dict(version, size, do, flags, opts)
        self.raw = None
        self.transport = "both"
        self.tcp_mode = "whole"
        self.config = {}
        self.drop = False
        self.has_expect = False
        self.expect = {}
        self.rrs = {"answer": None, "authority": None, "additional": None}

    @property
    def title(self):
        return "%s:%s" % (self.file, self.name)

    def transports(self):
        return ["udp", "tcp"] if self.transport == "both" else [self.transport]

    # ---- the query ----------------------------------------------------------------------
    def wire(self):
        if self.raw is not None:
            return bytes(self.raw)
        name = b""
        if self.qname != ".":
            for label in self.qname.rstrip(".").split("."):
                name += bytes([len(label)]) + label.encode()
        name += b"\0"
        qd = 1 if self.qdcount is None else self.qdcount
        out = struct.pack(">HHHHHH", self.id, self.flags | (self.opcode & 15) << 11, qd, 0, 0,
                          1 if self.edns is not None else 0)
        out += (name + struct.pack(">HH", self.qtype, self.qclass)) * qd
        if self.edns is not None:
            e = self.edns
            rdata = b"".join(struct.pack(">HH", c, len(d)) + d for c, d in e["opts"])
            flags = e["flags"] if e["flags"] is not None else (0x8000 if e["do"] else 0)
            out += b"\0" + struct.pack(">HHBBHH", 41, e["size"], 0, e["version"], flags,
                                       len(rdata)) + rdata
        return out

    # ---- checking a response -------------------------------------------------------------
    def check(self, resp, transport, query=None):
        """Errors (strings) of resp against the case; [] when it is right. query: the bytes
        sent, when not wire() (a runner that gave the query another ID)."""
        if self.drop:
            return [] if not resp else ["expected no response, got %d bytes" % len(resp)]
        if not resp:
            return ["no response"]
        import dns.message
        import dns.flags
        errs = []
        q = self.wire() if query is None else query
        try:
            m = dns.message.from_wire(resp)
        except Exception as e:  # noqa: BLE001 - any parse failure is the finding
            if (resp[2] >> 3) & 15 in (0, 1, 2, 4, 5):
                return ["response does not parse: %s" % e]
            m = _RawMessage(resp)  # dnspython knows no opcode 15: header-level checks only
        if len(q) >= 2 and resp[:2] != q[:2]:
            errs.append("ID %s, query had %s" % (resp[:2].hex(), q[:2].hex()))
        hflags = struct.unpack(">H", resp[2:4])[0]
        if not hflags & 0x8000:
            errs.append("QR clear")
        if len(q) >= 4 and (hflags >> 11) & 15 != (q[2] >> 3) & 15:
            errs.append("opcode not copied")
        has_opt = m.opt is not None
        qopt = self._query_has_opt(q)
        if transport == "udp":
            limit = 512
            if qopt is not None:
                limit = min(max(qopt, 512), 4096)
            if len(resp) > limit:
                errs.append("%d bytes over the UDP limit %d" % (len(resp), limit))
        e = self.expect
        if "rcode" in e and m.rcode() != e["rcode"]:
            errs.append("rcode %d, expected %d" % (m.rcode(), e["rcode"]))
        if "flags" in e and hflags & 0x87f0 != e["flags"]:
            errs.append("flags %04x, expected %04x" % (hflags & 0x87f0, e["flags"]))
        counts = {"an": len(m.answer), "ns": len(m.authority), "ar": len(m.additional)}
        counts_rr = {k: sum(len(rrset) for rrset in sec)
                     for k, sec in (("an", m.answer), ("ns", m.authority), ("ar", m.additional))}
        for k in ("an", "ns", "ar"):
            if k in e:
                op, n = e[k]
                v = counts_rr[k]
                if not ((op == "=" and v == n) or (op == ">=" and v >= n) or
                        (op == "<=" and v <= n)):
                    errs.append("%s count %d, expected %s%d" % (k, v, op, n))
        del counts
        if "len" in e:
            op, n = e["len"]
            v = len(resp)
            if not ((op == "=" and v == n) or (op == ">=" and v >= n) or (op == "<=" and v <= n)):
                errs.append("length %d, expected %s%d" % (v, op, n))
        want_opt = e.get("opt", None if qopt is not None else False)
        if want_opt is not None and has_opt != want_opt:
            errs.append("OPT %s" % ("present" if has_opt else "absent"))
        if has_opt:
            if m.edns != 0 or m.payload != 1232 or (m.ednsflags & 0x7fff) or m.options:
                errs.append("our OPT is not {1232, version 0, Z 0, no options}")
            if "do" in e and bool(m.ednsflags & dns.flags.DO) != e["do"]:
                errs.append("DO %d" % bool(m.ednsflags & dns.flags.DO))
            if "version" in e and m.edns != e["version"]:
                errs.append("EDNS version %d" % m.edns)
        qd = struct.unpack(">H", resp[4:6])[0]
        if qd == 1:
            qend = self._question_end(q)
            if qend is None or resp[12:qend] != q[12:qend]:
                errs.append("question not echoed byte for byte")
        for sec, rrsets in (("answer", m.answer), ("authority", m.authority),
                            ("additional", m.additional)):
            want = self.rrs[sec]
            if want is None:
                continue
            if isinstance(m, _RawMessage):
                errs.append("%s section: RRs not checkable in this response" % sec)
                continue
            got = []
            for rrset in rrsets:
                for rd in rrset:
                    got.append([rrset.name.to_text(), str(rrset.ttl),
                                dns.rdatatype.to_text(rrset.rdtype)] +
                               TOKEN.findall(rd.to_text()))
            if not _multiset_match(want, got):
                errs.append("%s section differs: expected %s, got %s" % (
                    sec, [" ".join(w) for w in want], [" ".join(g) for g in got]))
        return errs

    @staticmethod
    def _question_end(q):
        at = 12
        while at < len(q) and q[at] and q[at] < 64:
            at += 1 + q[at]
        if at >= len(q) or q[at] != 0:
            return None
        return at + 5 if at + 5 <= len(q) else None

    def _query_has_opt(self, q):
        """The EDNS size of the query's OPT, or None (only built queries; raw ones: None)."""
        if self.raw is not None or self.edns is None:
            return None
        return self.edns["size"]


class _RawMessage:
    """The header facts of a response dnspython will not parse (an unknown opcode): counts,
    rcode and the OPT, read from the bytes; no RRs."""

    def __init__(self, b):
        qd, an, ns, ar = struct.unpack(">HHHH", b[4:12])
        at = 12
        for _ in range(qd):
            at = _skip_name(b, at) + 4
        opt = None
        for i in range(an + ns + ar):
            start = at
            at = _skip_name(b, at)
            rtype, cls, ttl, rdlen = struct.unpack(">HHIH", b[at:at + 10])
            if rtype == 41 and i >= an + ns:
                opt = (cls, ttl, rdlen, start)
            at += 10 + rdlen
        self._rcode = struct.unpack(">H", b[2:4])[0] & 15
        self.opt = opt
        self.answer = [[None]] * an
        self.authority = [[None]] * ns
        self.additional = [[None]] * (ar - (1 if opt else 0))
        self.options = []
        if opt:
            self.payload, ttl = opt[0], opt[1]
            self._rcode |= (ttl >> 24) << 4
            self.edns = (ttl >> 16) & 255
            self.ednsflags = ttl & 0xffff
            self.options = [None] if opt[2] else []

    def rcode(self):
        return self._rcode


def _skip_name(b, at):
    while b[at]:
        if b[at] & 0xc0 == 0xc0:
            return at + 2
        at += 1 + b[at]
    return at + 1


def _tok_eq(w, g):
    return w == "*" or w.lower() == g.lower()


def _multiset_match(want, got):
    if len(want) != len(got):
        return False
    used = [False] * len(got)
    for w in want:
        for i, g in enumerate(got):
            if not used[i] and len(w) == len(g) and all(_tok_eq(a, b) for a, b in zip(w, g)):
                used[i] = True
                break
        else:
            return False
    return True


def _parse_line(c, toks):
    k = toks[0]
    if k == "query":
        c.qname = toks[1]
        c.qtype = _type(toks[2]) if len(toks) > 2 else 1
        c.qclass = _class(toks[3]) if len(toks) > 3 else 1
    elif k == "flags":
        for f in toks[1:]:
            c.flags |= FLAGS[f]
    elif k == "opcode":
        c.opcode = int(toks[1], 0)
    elif k == "id":
        c.id = int(toks[1], 0)
        c.id_set = True
    elif k == "qdcount":
        c.qdcount = int(toks[1], 0)
    elif k == "edns":
        e = {"version": 0, "size": 1232, "do": False, "flags": None, "opts": []}
        for t in toks[1:]:
            if t == "do":
                e["do"] = True
            elif t.startswith("version="):
                e["version"] = int(t[8:], 0)
            elif t.startswith("size="):
                e["size"] = int(t[5:], 0)
            elif t.startswith("flags="):
                e["flags"] = int(t[6:], 0)
            elif t.startswith("opt="):
                code, _, data = t[4:].partition(":")
                e["opts"].append((int(code, 0), bytes.fromhex(data)))
            else:
                raise ValueError(t)
        c.edns = e
    elif k == "raw":
        c.raw = (c.raw or bytearray()) + bytes.fromhex("".join(toks[1:]))
    elif k == "transport":
        c.transport = toks[1]
    elif k == "tcp-mode":
        c.tcp_mode = toks[1]
    elif k == "config":
        for t in toks[1:]:
            key, _, val = t.partition("=")
            c.config[key] = val
    elif k == "expect":
        c.has_expect = True
        for t in toks[1:]:
            if t == "drop":
                c.drop = True
                continue
            m = re.match(r"([a-z-]+)(>=|<=|=)(.*)$", t)
            key, op, val = m.group(1), m.group(2), m.group(3)
            if key == "rcode":
                c.expect["rcode"] = RCODES[val]
            elif key == "flags":
                c.expect["flags"] = sum(FLAGS[f] for f in val.split(","))
            elif key in ("an", "ns", "ar", "len"):
                c.expect[key] = _count(op + val)
            elif key in ("opt", "do"):
                c.expect[key] = val in ("yes", "1", "true")
            elif key == "version":
                c.expect["version"] = int(val)
            else:
                raise ValueError(t)
    elif k in ("answer", "authority", "additional"):
        if c.rrs[k] is None:
            c.rrs[k] = []
        c.rrs[k].append(toks[1:])
    else:
        raise ValueError(k)


def load(folder=HERE):
    """Every case of every .vec file of folder, files in name order."""
    cases = []
    for fn in sorted(f for f in os.listdir(folder) if f.endswith(".vec")):
        cur = None
        with open(os.path.join(folder, fn)) as f:
            for n, line in enumerate(f, 1):
                body = line.split("#", 1)[0] if not line.lstrip().startswith(
                    ("answer", "authority", "additional")) else line
                toks = TOKEN.findall(body)
                if toks and toks[0].startswith("#"):
                    continue
                if not toks:
                    continue
                if toks[0] == "case":
                    cur = Case(fn, toks[1], n)
                    cases.append(cur)
                    continue
                if cur is None:
                    raise ValueError("%s:%d: outside a case" % (fn, n))
                try:
                    _parse_line(cur, toks)
                except (ValueError, KeyError, IndexError, AttributeError) as e:
                    raise ValueError("%s:%d: %s" % (fn, n, e)) from e
    if not cases:  # a runner with nothing to run must fail, not pass
        raise ValueError("no case in any .vec file of %s" % folder)
    if len({c.title for c in cases}) != len(cases):
        raise ValueError("duplicate case names")
    for c in cases:
        if not c.has_expect:
            raise ValueError("%s:%d: case %s has no expect line" % (c.file, c.line, c.name))
    return cases


def to_json(c):
    """A case as the C runner reads it: the query in hex, the expectations as parsed."""
    return {"file": c.file, "name": c.name, "line": c.line, "wire": c.wire().hex(),
            "transport": c.transport, "tcp_mode": c.tcp_mode, "config": c.config,
            "drop": c.drop, "expect": c.expect, "rrs": c.rrs}


def _ask(addr, q, transport, timeout=2.0):
    host, port = addr
    if transport == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        try:
            s.sendto(q, (host, port))
            return s.recv(65535)
        except socket.timeout:
            return None
        finally:
            s.close()
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(struct.pack(">H", len(q)) + q)
        hdr = b""
        while len(hdr) < 2:
            chunk = s.recv(2 - len(hdr))
            if not chunk:
                return None
            hdr += chunk
        n = struct.unpack(">H", hdr)[0]
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data
    except socket.timeout:
        return None
    finally:
        s.close()


def main(argv):
    if "--list" in argv:
        for c in load():
            print(c.title)
        return 0
    if "--json" in argv:
        import json
        json.dump([to_json(c) for c in load()], sys.stdout)
        return 0
    if "--server" in argv:
        host, _, port = argv[argv.index("--server") + 1].rpartition(":")
        failed = run = 0
        for c in load():
            if c.config:
                continue
            for tr in c.transports():
                run += 1
                errs = c.check(_ask((host, int(port)), c.wire(), tr,
                                    timeout=0.5 if c.drop else 2.0), tr)
                if errs:
                    failed += 1
                    print("FAIL %s (%s): %s" % (c.title, tr, "; ".join(errs)))
        print("%d run, %d failed" % (run, failed))
        return 1 if failed else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
