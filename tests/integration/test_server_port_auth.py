"""The server port takes orders only from the cluster (rpc/port.c, consensus/transport.c,
README "Security of the server port").

From raw sockets on other loopback addresses, as an outsider would: without a key, an outsider
connecting from a non-member address cannot forward a KV delete, remove a voter or join itself
(the old unauthenticated protocol is refused outright, and the current one refuses the request);
a forged Raft handshake is refused; the startup warning names the open port. With a cluster key
(-encrypt) three servers form and work (writes through a follower, DNS), and a peer without the
key, with a wrong key, or forging a member's Raft handshake is refused at the handshake.
Resources: connections per source IP are capped, idle RPC connections are closed, and a large
declared frame costs memory only as its bytes arrive.

Every wait is bounded; processes are stopped by pid (make_cluster / make_agent teardown)."""
import base64
import hashlib
import hmac
import os
import socket
import struct
import subprocess
import threading
import time

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from conftest import HERALD, ClusterAgent, next_addr, wait_until

PRE_RAFT_OLD, PRE_RPC_OLD = b"HRLDRAF2", b"HRLDRPC1"  # before the handshake was authenticated
PRE_RAFT, PRE_RPC = b"HRLDRAF3", b"HRLDRPC2"
HELLO, FORWARD, READ_INDEX, JOIN, REMOVE = 1, 2, 3, 4, 5
BASE_EACL = -1006
KEY = base64.b64encode(b"k" * 32).decode()
WRONG_KEY = base64.b64encode(b"w" * 32).decode()


# ---- a raw server-port client -------------------------------------------------------------

def recv_exact(s, n):
    out = b""
    while len(out) < n:
        try:
            chunk = s.recv(n - len(out))
        except (ConnectionResetError, socket.timeout):
            return out
        if not chunk:
            return out
        out += chunk
    return out


def connect_from(src, dst, port=8300, timeout=3):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect((dst, port))
    return s


def handshake(s, preamble, sender, to, address, key=None):
    """Writes our half of the handshake; with a key, runs the challenge and response.
    Returns False when the server closed, or (keyed) did not prove the key we used."""
    hdr = preamble + struct.pack("<QQIB3x", sender, to, len(address), 1 if key else 0)
    hdr += address.encode()
    if key is None:
        s.sendall(hdr)
        return True
    t = hdr + os.urandom(32)
    s.sendall(t)
    reply = recv_exact(s, 64)
    if len(reply) < 64:
        return False
    t += reply[:32]
    raw = base64.b64decode(key)
    mac_s = hmac.new(raw, b"herald server-port v1 server\0" + t, hashlib.sha256).digest()
    mac_c = hmac.new(raw, b"herald server-port v1 client\0" + t, hashlib.sha256).digest()
    s.sendall(mac_c)
    return hmac.compare_digest(mac_s, reply[32:])


def frame(rtype, rid, body):
    return struct.pack("<IB3xQ", 12 + len(body), rtype, rid) + body


def bstr(b):
    return struct.pack("<I", len(b)) + b


def call(s, rtype, body, rid=7):
    """Sends one request; returns the reply's status (None: the connection was closed)."""
    try:
        s.sendall(frame(rtype, rid, body))
    except OSError:
        return None
    hdr = recv_exact(s, 16)
    if len(hdr) < 16:
        return None
    length = struct.unpack("<I", hdr[:4])[0]
    body = recv_exact(s, length - 12)
    return struct.unpack("<i", body[:4])[0]


def closed_soon(s, timeout=3):
    """True when the server closes the connection within timeout (nothing else is sent)."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def _tcp4_addr(field):
    ip, port = field.split(":")
    return socket.inet_ntoa(struct.pack("<I", int(ip, 16))), int(port, 16)


def unread_bytes(addr, port, peer):
    """The receive queues (bytes the process has not read yet) of the established TCP sockets
    on addr:port whose remote end is on peer, from /proc/net/tcp (the kernel's view)."""
    out = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] != "01":  # ESTABLISHED
                continue
            if _tcp4_addr(fields[1]) != (addr, port) or _tcp4_addr(fields[2])[0] != peer:
                continue
            out.append(int(fields[4].split(":")[1], 16))
    return out


def attack(src, dst, rtype, body):
    """The request from src, over the old protocol and over the current one without a key.
    Returns the statuses (None: refused, connection closed)."""
    out = []
    for pre in (PRE_RPC_OLD, PRE_RPC):
        s = connect_from(src, dst, timeout=5)
        try:
            if pre == PRE_RPC:
                handshake(s, pre, 0x0badc0de, 0, "%s:8300" % src)
            else:
                s.sendall(pre)
            out.append(call(s, rtype, body))
        finally:
            s.close()
    return out


def kv_delete_all():
    # zone/cmd.c: version 1, ZONE_CMD_KV_DELETE, key "" (NUL included), no cas, recurse
    return bytes([1, 5]) + bstr(b"\0") + b"\0" + struct.pack("<Q", 0) + b"\1"


def forward_body(cmds):
    return struct.pack("<I", len(cmds)) + b"".join(bstr(c) for c in cmds)


def member_body(rid, address):
    return struct.pack("<Q", rid) + bstr(address.encode()) + b"\0"


def raft_ids(agent):
    return {s["Address"]: int(s["ID"]) for s in agent.raft_config()["Servers"]}


def voters(agent):
    return {s["Address"]: s["Voter"] for s in agent.raft_config()["Servers"]}


def dns_a(agent, name):
    q = dns.message.make_query(name, "A")
    m = dns.query.udp(q, agent.addr, port=agent.dns_port, timeout=2)
    if m.rcode() != dns.rcode.NOERROR:
        return None
    return sorted(r.address for rr in m.answer if rr.rdtype == dns.rdatatype.A for r in rr)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ---- without a key --------------------------------------------------------------------------

def test_outsider_cannot_forward_a_kv_delete(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    for i in range(5):
        assert leader.put("/v1/kv/keep/%d" % i, "v").status == 200
    outsider = next_addr()
    for target in (leader, c.followers(leader)[0]):
        statuses = attack(outsider, target.addr, FORWARD, forward_body([kv_delete_all()]))
        assert 0 not in statuses, statuses
    r = leader.get("/v1/kv/keep/?recurse&consistent")
    assert r.status == 200 and len(r.json()) == 5, (r.status, r.text)
    assert "refused %s: forwarded write from a non-member address" % outsider in leader.read_log()


def test_outsider_cannot_remove_a_voter(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    victim = c.followers(leader)[0]
    outsider = next_addr()
    for target in (leader, victim):
        statuses = attack(outsider, target.addr, REMOVE, member_body(0, victim.server_addr))
        assert 0 not in statuses, statuses
    assert voters(leader) == {a.server_addr: True for a in c}
    assert "refused %s: REMOVE from a non-member address" % outsider in leader.read_log()
    # a member may still: its remove-peer goes over the same RPC, from a member's address
    f = [a for a in c.followers(leader) if a is not victim][0]
    r = f.delete("/v1/operator/raft/peer?address=" + victim.server_addr, timeout=20)
    assert r.status == 200, (r.status, r.text)
    wait_until(lambda: victim.server_addr not in voters(leader), timeout=15, msg="removed")


def test_outsider_cannot_join_itself_as_voter(make_cluster):
    # -join-allow: the founders' network only; the outsider's address is not in it
    c = make_cluster(3, args=["-join-allow", "127.0.0.1/32"]).start()
    leader = c.wait_leader()
    outsider = next_addr()
    for target in (leader, c.followers(leader)[0]):
        statuses = attack(outsider, target.addr, JOIN,
                          member_body(0x1234567890, "%s:8300" % outsider))
        assert 0 not in statuses, statuses
    # Both were answered (refused). A join the leader had taken would have been appended to
    # its log before that answer, so it is in the configuration once a later write commits.
    assert leader.put("/v1/kv/after-the-join-attempts", "x").status == 200
    assert sorted(voters(leader)) == sorted(a.server_addr for a in c)
    assert "refused %s: JOIN from an address not in join_allow" % outsider in leader.read_log()


def hello_body(rid, address, expect, known):
    # form.c: id, address, expect, state (0: forming), leader id and address, the servers it
    # knows (id, address, role), its bootstrap set
    b = struct.pack("<Q", rid) + bstr(address.encode()) + struct.pack("<IBQ", expect, 0, 0)
    b += bstr(b"") + struct.pack("<I", len(known))
    for kid, kaddr in known:
        b += struct.pack("<Q", kid) + bstr(kaddr.encode()) + b"\1"
    return b + struct.pack("<I", 0)


def test_outsider_cannot_take_part_in_a_formation(make_cluster):
    c = make_cluster(3, args=["-join-allow", "127.0.0.1/32"])
    c[0].start(wait=False)
    c[1].start(wait=False)
    outsider = next_addr()
    me = (0x0badc0de, "%s:8300" % outsider)
    known = [me] + [(1000 + i, a.server_addr) for i, a in enumerate(c.agents)]
    for a in c.agents[:2]:
        wait_until(lambda: "server port listening" in a.read_log(), timeout=10)
        s = connect_from(outsider, a.addr)
        handshake(s, PRE_RPC, me[0], 0, me[1])
        assert call(s, HELLO, hello_body(me[0], me[1], 3, known)) == 0  # answered, not merged
        s.close()
        wait_until(lambda: "HELLO from an address neither known nor in join_allow" in a.read_log(),
                   timeout=5, msg="the refusal")
    c[2].start(wait=False)
    leader = c.wait_leader(timeout=30)
    assert voters(leader) == {a.server_addr: True for a in c}


def test_forged_raft_handshake_is_refused_without_a_key(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    f = c.followers(leader)[0]
    ids = raft_ids(leader)
    outsider = next_addr()
    # a follower's id, from another address: refused
    s = connect_from(outsider, leader.addr)
    handshake(s, PRE_RAFT, ids[f.server_addr], ids[leader.server_addr], f.server_addr)
    assert closed_soon(s), "a forged raft handshake was accepted"
    s.close()
    # an id outside the configuration, from anywhere: refused
    s = connect_from(outsider, leader.addr)
    handshake(s, PRE_RAFT, 0xfeed, ids[leader.server_addr], "%s:8300" % outsider)
    assert closed_soon(s), "a raft stream from a non-member was accepted"
    s.close()
    # the old, unchecked handshake: refused
    s = connect_from(outsider, leader.addr)
    s.sendall(PRE_RAFT_OLD + struct.pack("<QQI", ids[f.server_addr], ids[leader.server_addr],
                                         len(f.server_addr)) + f.server_addr.encode())
    assert closed_soon(s), "the old raft handshake was accepted"
    s.close()
    log = leader.read_log()
    assert "raft stream for a member from another address" in log
    assert "raft stream from an id not in the configuration" in log
    # What an unauthenticated peer can still do (README): speak from a member's own address.
    s = connect_from(f.addr, leader.addr)
    handshake(s, PRE_RAFT, ids[f.server_addr], ids[leader.server_addr], f.server_addr)
    assert not closed_soon(s, timeout=1)
    s.close()


def test_startup_warning_names_the_open_port_without_a_key(make_agent):
    a = make_agent().start()
    wait_until(lambda: "is open to anyone who can reach it: set encrypt" in a.read_log(),
               timeout=5, msg="the warning")
    assert "server port %s:8300 is open to anyone" % a.addr in a.read_log()
    key = subprocess.run([HERALD, "keygen"], capture_output=True, text=True, timeout=10)
    assert key.returncode == 0 and len(base64.b64decode(key.stdout.strip())) == 32, key
    b = make_agent(args=["-encrypt", key.stdout.strip()]).start()
    assert "cluster key required" in b.read_log()
    assert "open to anyone" not in b.read_log()


# ---- with a key -----------------------------------------------------------------------------

def test_keyed_cluster_forms_works_and_refuses_peers_without_the_key(make_cluster):
    c = make_cluster(3, args=["-encrypt", KEY]).start()
    leader = c.wait_leader()
    f = c.followers(leader)[0]
    # writes through a follower (forwarded over the authenticated RPC), DNS everywhere
    r = f.put("/v1/agent/service/register",
              {"Name": "web", "ID": "web1", "Port": 80, "Address": "10.1.2.3"})
    assert r.status == 200, r.text
    assert f.put("/v1/kv/k", "v").status == 200
    for a in c:
        wait_until(lambda: dns_a(a, "web.service.consul") == ["10.1.2.3"], timeout=5,
                   msg="DNS on %s" % a.addr)
    assert leader.get("/v1/kv/k?raw").body == b"v"
    ids = raft_ids(leader)
    outsider = next_addr()

    # no key: refused at the handshake
    s = connect_from(outsider, leader.addr)
    handshake(s, PRE_RPC, 0x0badc0de, 0, "%s:8300" % outsider)
    assert closed_soon(s)
    s.close()
    assert "the peer does not prove the cluster key" in leader.read_log()
    # a wrong key: the server's proof does not check out, and ours is refused
    s = connect_from(outsider, leader.addr)
    assert handshake(s, PRE_RPC, 0x0badc0de, 0, "%s:8300" % outsider, key=WRONG_KEY) is False
    assert call(s, REMOVE, member_body(0, f.server_addr)) is None
    s.close()
    assert "wrong cluster key" in leader.read_log()
    # a forged Raft handshake from a member's own address, without the key: refused
    s = connect_from(f.addr, leader.addr)
    handshake(s, PRE_RAFT, ids[f.server_addr], ids[leader.server_addr], f.server_addr)
    assert closed_soon(s)
    s.close()
    # the right key: accepted, served (a HELLO answers 0)
    s = connect_from(outsider, leader.addr)
    assert handshake(s, PRE_RPC, 0x0badc0de, 0, "%s:8300" % outsider, key=KEY) is True
    assert call(s, READ_INDEX, b"\0") == 0
    s.close()
    assert voters(leader) == {a.server_addr: True for a in c}

    # a server with another key cannot join; one with the key can
    bad = ClusterAgent(c.tmp, next_addr(), c.addrs, 0, args=["-encrypt", WRONG_KEY])
    c.all.append(bad)
    bad.start(wait=False)
    good = c.add_server()
    wait_until(lambda: voters(leader).get(good.server_addr) is True, timeout=60, interval=0.2,
               msg="the keyed server joined")
    assert bad.server_addr not in voters(leader)
    # -encrypt keys the gossip pool too: the wrong key cannot even join it (its push-pull does
    # not decrypt), so it never learns a server port to try
    wait_until(lambda: any("no installed key could decrypt a stream from %s" % bad.addr
                           in a.read_log() for a in c), timeout=10,
               msg="the pool's warning about the wrong-key server")
    wait_until(lambda: "Join cluster failed, will retry" in bad.read_log(), timeout=10,
               msg="the wrong-key server's failed join")
    assert bad.node_name not in {m["Name"] for m in leader.get("/v1/agent/members").json()}


# ---- resources ------------------------------------------------------------------------------

def test_idle_connections_are_capped_and_closed_and_cost_little(make_agent):
    a = make_agent(args=["-encrypt", KEY], config={
        "limits": {"rpc_max_conns_per_client": 50, "rpc_idle_timeout": "2s"}}).start()
    outsider = next_addr()
    before = rss_kb(a.proc.pid)
    socks, refused = [], 0
    for i in range(200):
        s = connect_from(outsider, a.addr, timeout=3)
        if not handshake(s, PRE_RPC, 0x0badc0de, 0, "%s:8300" % outsider, key=KEY):
            refused += 1
            s.close()
            continue
        # a frame that declares 8 MiB, then 4 KiB of it, then silence
        try:
            s.sendall(struct.pack("<IB3xQ", 12 + (8 << 20), HELLO, i) + b"x" * 4096)
        except OSError:
            refused += 1
            s.close()
            continue
        socks.append(s)
    # the agent has read every byte sent on the connections it kept open (their receive
    # queues are empty): whatever they cost it is in its RSS now
    wait_until(lambda: not any(unread_bytes(a.addr, 8300, outsider)), timeout=10,
               msg="the frames read by the agent")
    grown = rss_kb(a.proc.pid) - before
    print("accepted %d, refused %d at the handshake; RSS grew %d KiB" % (
        len(socks), refused, grown))
    assert refused >= 150, refused
    assert len(socks) <= 50
    assert grown < 8 * 1024, grown
    # the idle timeout (2 s: no whole frame) closes every one of them
    t0 = time.monotonic()
    for s in socks:
        assert closed_soon(s, timeout=max(0.1, 10 - (time.monotonic() - t0))), \
            "an idle connection stayed open"
        s.close()
    # and the server still serves
    s = connect_from(outsider, a.addr)
    assert handshake(s, PRE_RPC, 0x0badc0de, 0, "%s:8300" % outsider, key=KEY) is True
    assert call(s, READ_INDEX, b"\0") == 0
    s.close()


def test_idle_timeout_never_loses_a_forwarded_write(make_cluster):
    """A follower's connection to the leader goes idle between writes (closed by the follower
    after half the idle timeout, by the leader after all of it): every write still succeeds.
    (The race this guards against, a write sent just as the leader closes, is too narrow to
    provoke here; rpc/call.c's idle rule is what excludes it.)"""
    c = make_cluster(3, config={"limits": {"rpc_idle_timeout": "1s"}}).start()
    leader = c.wait_leader()
    f = c.followers(leader)[0]
    for i in range(8):
        r = f.put("/v1/kv/idle/%d" % i, "v", timeout=10)
        assert r.status == 200 and r.body.strip() == b"true", (i, r.status, r.text)
        time.sleep(0.3 + 0.15 * i)  # pacing: gaps around half and whole idle timeouts
    assert len(leader.get("/v1/kv/idle/?recurse").json()) == 8


class SilentFlood:
    """Keeps opening connections to addr:8300 that never say a word, from several source
    addresses, and holds up to `hold` of them: the handshake table (128) stays full."""

    def __init__(self, addr, sources, hold=3000, rate=300):
        self.addr, self.sources, self.hold, self.rate = addr, sources, hold, rate
        self.socks = []
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        i = 0
        while not self.stop_ev.is_set():
            try:
                self.socks.append(connect_from(self.sources[i % len(self.sources)], self.addr,
                                               timeout=1))
            except OSError:
                pass
            i += 1
            while len(self.socks) > self.hold:
                self.socks.pop(0).close()
            time.sleep(1.0 / self.rate)  # pacing: the flood's connection rate

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        for s in self.socks:
            s.close()


def test_silent_connections_cannot_lock_members_out(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    f = c.followers(leader)[0]
    with SilentFlood(leader.addr, [next_addr() for _ in range(4)]):
        wait_until(lambda: "too many handshakes at once: the oldest dropped" in leader.read_log(),
                   timeout=10, msg="a full handshake table")
        # a restarted follower needs new Raft streams and a new RPC connection to the leader
        assert f.stop() == 0
        f.log.close()
        f.restart()
        f.wait_ready(timeout=20)
        t0 = time.monotonic()
        r = f.put("/v1/kv/through-the-flood", "v", timeout=15)
        assert r.status == 200 and r.body.strip() == b"true", (r.status, r.text)
        print("a write through the restarted follower took %.2f s" % (time.monotonic() - t0))
    assert leader.get("/v1/kv/through-the-flood?raw").body == b"v"
