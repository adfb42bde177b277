"""gossip/'s encoders against a real peer: Debian's serf agent takes what we write.

Nothing of gossip/ is wired into the agent yet, so the bytes come from the unit test binary
build/tests/unit/gossip/test_wire in its emit mode (HERALD_GOSSIP_EMIT, see emit_for_serf there):
our push-pull answering serf's join (LZW-compressed), a packet with our alive and a user event
(CRC around a compressed compound), serf's leave intent and our own dead (a graceful leave), each
plain and AES-GCM encrypted. This test plays them to `serf agent` on loopback as a fake member
"herald1" and checks what serf makes of them: herald1 a member with its tags, the event received,
herald1 left. Every wait is bounded; serf is stopped by pid.
"""
import os
import socket
import subprocess

import pytest

from conftest import ROOT, next_addr, wait_until
from herald_test.serf import serf_members

EMITTER = os.path.join(ROOT, "build", "tests", "unit", "gossip", "test_wire")
KEY = "AAECAwQFBgcICQoLDA0ODw=="
PORT = 7946


@pytest.fixture
def serf_peer(tmp_path):
    # make integration builds it; a missing emitter is a failure, never a skip
    assert os.path.exists(EMITTER), "build/tests/unit/gossip/test_wire is not built (make unit)"
    procs = []
    socks = []

    def start(key, serf_key=None):
        serf_key = serf_key or key
        me, serf = next_addr(), next_addr()
        env = dict(os.environ, HERALD_GOSSIP_EMIT=str(tmp_path), HERALD_GOSSIP_EMIT_ADDR=me,
                   HERALD_GOSSIP_EMIT_PORT=str(PORT), HERALD_GOSSIP_EMIT_KEY=key or "")
        subprocess.run([EMITTER], env=env, check=True, timeout=30, capture_output=True)
        lst = socket.socket()
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((me, PORT))
        lst.listen(4)
        lst.settimeout(15)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((me, PORT))
        socks.extend([lst, udp])
        log = open(tmp_path / "serf.log", "w")
        argv = ["serf", "agent", "-node", "serf1", "-bind", "%s:%d" % (serf, PORT),
                "-rpc-addr", "%s:7373" % serf, "-join", "%s:%d" % (me, PORT),
                "-log-level", "debug", "-tag", "role=web"]
        if serf_key:
            argv += ["-encrypt", serf_key]
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        return me, serf, lst, udp, procs[-1]

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
    for s in socks:
        s.close()


def read_file(tmp_path, name, key):
    return (tmp_path / (name + (".enc" if key else ""))).read_bytes()


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_serf_takes_our_push_pull_event_and_leave(serf_peer, tmp_path, key):
    me, serf, lst, udp, _ = serf_peer(key)
    # serf joins us: it sends its push-pull and waits for ours
    conn, _ = lst.accept()
    conn.settimeout(10)
    conn.sendall(read_file(tmp_path, "pushpull", key))
    got = b""
    try:
        while True:  # serf closes once it has read our state
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    conn.close()
    assert got[:1] == (b"\x0a" if key else b"\x09"), got[:16]  # encrypted / compressed

    members = wait_until(lambda: (lambda m: m if "herald1" in m else None)(serf_members(serf)),
                         timeout=10, msg="herald1 among serf's members")
    h = members["herald1"]
    assert h["status"] == "alive"
    assert h["addr"] == "%s:%d" % (me, PORT)
    assert h["tags"] == {"role": "herald", "dc": "dc1"}

    udp.sendto(read_file(tmp_path, "event", key), (serf, PORT))
    log = tmp_path / "serf.log"
    wait_until(lambda: "user-event: herald-evt" in log.read_text(), timeout=10,
               msg="serf received our user event")

    udp.sendto(read_file(tmp_path, "intent", key), (serf, PORT))
    wait_until(lambda: serf_members(serf).get("herald1", {}).get("status") == "leaving",
               timeout=10, msg="herald1 leaving")
    udp.sendto(read_file(tmp_path, "dead", key), (serf, PORT))
    wait_until(lambda: serf_members(serf).get("herald1", {}).get("status") == "left",
               timeout=10, msg="herald1 left")
    text = log.read_text()
    assert "EventMemberLeave: herald1" in text
    assert "Failed to" not in text and "[ERR]" not in text, text


def test_serf_refuses_our_state_under_another_key(serf_peer, tmp_path):
    other = "AQEBAQEBAQEBAQEBAQEBAQ=="
    me, serf, lst, udp, proc = serf_peer(other, serf_key=KEY)
    conn, _ = lst.accept()
    conn.settimeout(10)
    conn.sendall(read_file(tmp_path, "pushpull", other))
    try:
        while conn.recv(65536):
            pass
    except (socket.timeout, ConnectionResetError):
        pass
    conn.close()
    # -join failed: the agent gives up and exits, having never listed herald1
    assert proc.wait(20) != 0
    text = (tmp_path / "serf.log").read_text()
    assert "No installed keys could decrypt the message" in text, text
    assert "EventMemberJoin: herald1" not in text
