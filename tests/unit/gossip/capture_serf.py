#!/usr/bin/python3
"""Captures what Debian's `serf agent` (0.9.x, memberlist 0.2.2) sends to a peer, for the byte
vectors of tests/unit/gossip/test_wire.c. Not run by the test suite: a developer runs it by hand
when the vectors need refreshing and copies packets from its output (JSON lines, hex).

Loopback only. The script is a fake member `fake1` on 127.0.0.202:17946 (UDP and TCP); it starts
`serf agent -node serf1` on 127.0.0.201 joining it, answers serf's push-pull with its own state
(uncompressed, as memberlist allows), acks serf's pings, then fires a user event and a query and
makes serf leave through serf's RPC, recording every packet and stream it receives. With
`--encrypt KEY` both sides use that key: the script only records (it cannot answer), so that run
captures serf's encrypted push-pull stream alone. Every wait is bounded; serf is stopped by pid.

Usage: capture_serf.py OUT.jsonl [--encrypt BASE64KEY]
"""
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
import zlib

ME, SERF, PORT, RPC = "127.0.0.202", "127.0.0.201", 17946, 17373


def raw(b):
    """go-msgpack without WriteExt: strings and []byte both as fixraw/raw16/raw32."""
    if isinstance(b, str):
        b = b.encode()
    n = len(b)
    if n < 32:
        return bytes([0xA0 | n]) + b
    if n < 65536:
        return b"\xda" + struct.pack(">H", n) + b
    return b"\xdb" + struct.pack(">I", n) + b


def uint(v):
    if v < 128:
        return bytes([v])
    if v < 256:
        return b"\xcc" + bytes([v])
    if v < 65536:
        return b"\xcd" + struct.pack(">H", v)
    if v < 1 << 32:
        return b"\xce" + struct.pack(">I", v)
    return b"\xcf" + struct.pack(">Q", v)


def enc(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        return uint(v)
    if isinstance(v, (str, bytes)):
        return raw(v)
    if isinstance(v, list):
        assert len(v) < 16
        return bytes([0x90 | len(v)]) + b"".join(enc(x) for x in v)
    if isinstance(v, dict):
        assert len(v) < 16
        return bytes([0x80 | len(v)]) + b"".join(raw(k) + enc(v[k]) for k in sorted(v))
    raise TypeError(v)


class Dec:
    """Just enough msgpack to find a ping's SeqNo."""

    def __init__(self, b):
        self.b, self.i = b, 0

    def byte(self):
        self.i += 1
        return self.b[self.i - 1]

    def take(self, n):
        self.i += n
        return self.b[self.i - n:self.i]

    def obj(self):
        t = self.byte()
        if t < 0x80:
            return t
        if t >= 0xE0:
            return t - 256
        if 0x80 <= t <= 0x8F:
            return {self.key(): self.obj() for _ in range(t & 15)}
        if 0x90 <= t <= 0x9F:
            return [self.obj() for _ in range(t & 15)]
        if 0xA0 <= t <= 0xBF:
            return self.take(t & 31)
        fixed = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h",
                 0xD2: ">i", 0xD3: ">q", 0xCA: ">f", 0xCB: ">d"}
        if t in fixed:
            f = fixed[t]
            return struct.unpack(f, self.take(struct.calcsize(f)))[0]
        if t == 0xC0:
            return None
        if t in (0xC2, 0xC3):
            return t == 0xC3
        lens = {0xD9: ">B", 0xDA: ">H", 0xDB: ">I", 0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}
        if t in lens:
            f = lens[t]
            return self.take(struct.unpack(f, self.take(struct.calcsize(f)))[0])
        if t in (0xDC, 0xDE):
            n = struct.unpack(">H", self.take(2))[0]
        elif t in (0xDD, 0xDF):
            n = struct.unpack(">I", self.take(4))[0]
        else:
            raise ValueError("type %x" % t)
        if t in (0xDC, 0xDD):
            return [self.obj() for _ in range(n)]
        return {self.key(): self.obj() for _ in range(n)}

    def key(self):
        k = self.obj()
        return k.decode() if isinstance(k, bytes) else k


def lzw_decode(data):
    """Go's compress/lzw, LSB order, litWidth 8 (memberlist's compress message)."""
    out, bits, nbits, width = bytearray(), 0, 0, 9
    clear, eof = 256, 257
    hi, overflow, last = eof, 512, None
    prefix, suffix = {}, {}

    def expand(c):
        s = bytearray()
        while c >= clear:
            s.append(suffix[c])
            c = prefix[c]
        s.append(c)
        return bytes(reversed(s))

    it = iter(data)
    while True:
        while nbits < width:
            bits |= next(it) << nbits
            nbits += 8
        code = bits & ((1 << width) - 1)
        bits >>= width
        nbits -= width
        if code == clear:
            width, hi, overflow, last = 9, eof, 512, None
            continue
        if code == eof:
            return bytes(out)
        if code < clear:
            s = bytes([code])
        elif code == hi and last is not None:
            p = expand(last)
            s = p + p[:1]
        else:
            s = expand(code)
        out += s
        if last is not None:
            suffix[hi], prefix[hi] = s[0], last
        last, hi = code, hi + 1
        if hi >= overflow:
            if width == 12:
                last, hi = None, hi - 1
            else:
                width, overflow = width + 1, overflow << 1


def messages(buf):
    """Yields the memberlist messages in a packet: unwraps CRC, compound and compression."""
    if not buf:
        return
    t = buf[0]
    if t == 12:
        yield from messages(buf[5:])
    elif t == 7:
        n = buf[1]
        lens = struct.unpack(">%dH" % n, buf[2:2 + 2 * n])
        off = 2 + 2 * n
        for ln in lens:
            yield from messages(buf[off:off + ln])
            off += ln
    elif t == 9:
        c = Dec(buf[1:]).obj()
        yield from messages(lzw_decode(c["Buf"]))
    else:
        yield buf


def main():
    out = open(sys.argv[1], "w")
    key = sys.argv[sys.argv.index("--encrypt") + 1] if "--encrypt" in sys.argv else None

    def rec(kind, data, note=""):
        out.write(json.dumps({"t": round(time.monotonic() - t0, 3), "kind": kind, "note": note,
                              "hex": data.hex()}) + "\n")
        out.flush()

    t0 = time.monotonic()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((ME, PORT))
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((ME, PORT))
    lst.listen(4)
    log = open(sys.argv[1] + ".serf.log", "w")
    cmd = ["serf", "agent", "-node", "serf1", "-bind", "%s:%d" % (SERF, PORT),
           "-rpc-addr", "%s:%d" % (SERF, RPC), "-tag", "role=web", "-tag", "dc=dc1",
           "-join", "%s:%d" % (ME, PORT), "-log-level", "debug"]
    if key:
        cmd += ["-encrypt", key]
    serf = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    meta = b"\xff" + enc({"role": "db"})
    fired = set()
    try:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            r, _, _ = select.select([udp, lst], [], [], 0.2)
            if lst in r:
                conn, _ = lst.accept()
                conn.settimeout(2)
                data = b""
                while True:
                    # serf waits for our reply: the stream is complete when nothing more comes.
                    rr, _, _ = select.select([conn], [], [], 0.5)
                    if not rr:
                        break
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                rec("tcp", data)
                if not key:
                    us = enc({"LTime": 1, "StatusLTimes": {"fake1": 1}, "LeftMembers": [],
                              "EventLTime": 1, "Events": [], "QueryLTime": 1})
                    us = b"\x02" + us
                    node = {"Name": "fake1", "Addr": socket.inet_aton(ME), "Port": PORT,
                            "Meta": meta, "Incarnation": 1, "State": 0,
                            "Vsn": bytes([1, 5, 2, 2, 5, 4])}
                    reply = b"\x06" + enc({"Join": True, "Nodes": 1, "UserStateLen": len(us)})
                    reply += enc(node) + us
                    rec("tcp-sent", reply)
                    conn.sendall(reply)
                conn.close()
            if udp in r:
                pkt, frm = udp.recvfrom(65536)
                rec("udp", pkt)
                if key:
                    continue
                for m in messages(pkt):
                    if m[0] == 0:
                        p = Dec(m[1:]).obj()
                        ack = b"\x02" + enc({"SeqNo": p["SeqNo"], "Payload": None})
                        crc = struct.pack(">I", zlib.crc32(ack) & 0xFFFFFFFF)
                        udp.sendto(b"\x0c" + crc + ack, frm)
                    rec("msg", m)
            el = time.monotonic() - t0
            for at, what in ((3, "event"), (4, "query"), (6, "leave")):
                if el > at and what not in fired and not key:
                    fired.add(what)
                    rpc = "-rpc-addr=%s:%d" % (SERF, RPC)
                    args = {"event": ["serf", "event", rpc, "deploy", "v1"],
                            "query": ["serf", "query", rpc, "-timeout=1s", "uptime", "x"],
                            "leave": ["serf", "leave", rpc]}[what]
                    subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    rec("phase", what.encode(), what)
    finally:
        serf.terminate()
        try:
            serf.wait(5)
        except subprocess.TimeoutExpired:
            serf.kill()
            serf.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
