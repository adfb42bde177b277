"""/v1/operator/keyring and `herald keyring` (issue 11, 4): the gossip keyring across the pool.

A Herald server with -encrypt K1 and Debian's serf agent with the same key form one pool.
`herald keyring -install K2` reaches serf; GET /v1/operator/keyring has Consul's shape; PUT
makes K2 everyone's primary; DELETE of the primary is a 500 with Consul's text, naming each
member that refused; DELETE K1 leaves K2 alone. The agent keeps the keyring in
DATA/serf/local.keyring (a JSON array, the primary first, as serf writes it) and, restarted with
the old -encrypt, uses the file (with Consul's warning) and is still in the pool. Every wait is
bounded; every process is stopped by pid.
"""
import json
import os
import signal
import subprocess
import threading

import pytest

from conftest import HERALD, next_addr, sanitizer_env, wait_until
from herald_test.serf import serf_members

K1 = "AAECAwQFBgcICQoLDA0ODw=="
K2 = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM="


def cli(agent, *args):
    return subprocess.run([HERALD] + list(args) + ["-http-addr", "%s:8500" % agent.addr],
                          capture_output=True, text=True, timeout=30, env=sanitizer_env())


def members(agent):
    r = agent.get("/v1/agent/members", timeout=5)
    assert r.status == 200, r.text
    return {m["Name"]: m for m in r.json()}


def keyring_file(agent):
    with open(os.path.join(agent.data_dir, "serf", "local.keyring")) as f:
        return json.load(f)


@pytest.fixture
def serf_agent(tmp_path):
    procs = []

    def start(join, key):
        addr = next_addr()
        log = open(tmp_path / ("serf-%s.log" % addr), "w")
        p = subprocess.Popen(["serf", "agent", "-node", "serf1", "-bind", "%s:8301" % addr,
                              "-rpc-addr", "%s:7373" % addr, "-join", join, "-encrypt", key],
                             stdout=log, stderr=subprocess.STDOUT)
        procs.append((p, log))
        p.addr = addr
        return p

    yield start
    for p, log in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        log.close()


def serf_keys(serf):
    out = subprocess.run(["serf", "keys", "-list", "-rpc-addr=%s:7373" % serf.addr],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return {p[0]: p[1] for p in (line.split() for line in out.stdout.splitlines())
            if len(p) == 2 and p[1].startswith("[")}


def test_keyring_rotation_across_herald_and_serf(make_agent, serf_agent, tmp_path):
    a = make_agent(args=["-encrypt", K1], data_dir=str(tmp_path / "a")).start()
    assert keyring_file(a) == [K1]  # -encrypt starts the file
    serf = serf_agent("%s:8301" % a.addr, K1)
    wait_until(lambda: members(a).get("serf1", {}).get("Status") == 1, timeout=20,
               msg="serf1 in the agent's pool")

    out = cli(a, "keyring", "-install", K2)
    assert out.returncode == 0, out.stderr
    assert "==> Installing new gossip encryption key..." in out.stdout
    assert serf_keys(serf) == {K1: "[2/2]", K2: "[2/2]"}
    assert keyring_file(a) == [K1, K2]

    r = a.get("/v1/operator/keyring")
    assert r.status == 200, r.text
    assert r.json() == [{"WAN": False, "Datacenter": "dc1", "Segment": "",
                         "Keys": {K1: 2, K2: 2}, "PrimaryKeys": {K1: 2}, "NumNodes": 2}]

    r = a.put("/v1/operator/keyring", {"Key": K2})
    assert r.status == 200, r.text
    assert keyring_file(a) == [K2, K1]
    out = cli(a, "keyring", "-list")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["==> Gathering installed encryption keys...", "",
                                       "dc1 (LAN):", "  %s [2/2]" % K1, "  %s [2/2]" % K2]
    assert a.get("/v1/operator/keyring").json()[0]["PrimaryKeys"] == {K2: 2}
    out = cli(a, "keyring", "-list-primary")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[2:] == ["dc1 (LAN):", "  %s [2/2]" % K2]

    # the primary cannot go: Consul's 500, naming every member that refused
    r = a.request("DELETE", "/v1/operator/keyring", {"Key": K2})
    assert r.status == 500
    assert r.text == ("3 errors occurred:\n"
                      "\t* dc1 (LAN) error: 2/2 nodes reported failure\n"
                      "\t* %s: Removing the primary key is not allowed\n"
                      "\t* serf1: Removing the primary key is not allowed\n\n" % a.node_name), r.text
    out = cli(a, "keyring", "-remove", K2)
    assert out.returncode == 1 and "error: Unexpected response code: 500" in out.stderr

    out = cli(a, "keyring", "-remove", K1)
    assert out.returncode == 0, out.stderr
    assert serf_keys(serf) == {K2: "[2/2]"}
    assert keyring_file(a) == [K2]

    # restarted with the old -encrypt: the file wins, and the agent is back in the pool
    assert a.stop() == 0
    a.start()
    assert "LAN keyring exists but -encrypt given, using keyring" in a.read_log()
    wait_until(lambda: members(a).get("serf1", {}).get("Status") == 1, timeout=30,
               msg="the restarted agent back in the pool under K2")
    wait_until(lambda: serf_members(serf.addr).get(a.node_name, {}).get("status") == "alive",
               timeout=30, msg="serf lists the restarted agent alive")
    assert a.get("/v1/operator/keyring").json()[0]["Keys"] == {K2: 2}


def test_keyring_errors(make_agent, tmp_path):
    plain = make_agent().start()
    r = plain.get("/v1/operator/keyring")
    assert r.status == 500
    assert r.text.startswith("2 errors occurred:\n\t* dc1 (LAN) error: 1/1 nodes reported "
                             "failure\n\t* %s: Keyring is empty (encryption not enabled)"
                             % plain.node_name), r.text
    r = plain.request("POST", "/v1/operator/keyring", {"Key": K2})
    assert r.status == 500 and "No keyring to modify (encryption not enabled)" in r.text

    a = make_agent(args=["-encrypt", K1]).start()
    r = a.request("POST", "/v1/operator/keyring", b"{not json")
    assert r.status == 400
    r = a.request("POST", "/v1/operator/keyring", {"Key": "not base64!"})
    assert r.status == 500 and "(LAN) error: illegal base64 data" in r.text, r.text
    r = a.request("POST", "/v1/operator/keyring", {})  # as Consul: an empty key, refused
    assert r.status == 500 and "key size must be 16, 24 or 32 bytes" in r.text, r.text
    r = a.request("POST", "/v1/operator/keyring", {"Key": "AAEC"})
    assert r.status == 500 and "key size must be 16, 24 or 32 bytes" in r.text, r.text
    r = a.request("PUT", "/v1/operator/keyring", {"Key": K2})
    assert r.status == 500 and "Requested key is not in the keyring" in r.text, r.text
    r = a.request("PATCH", "/v1/operator/keyring", {"Key": K2})
    assert r.status == 405
    out = cli(a, "keyring")
    assert out.returncode == 1 and "usage: herald keyring" in out.stderr
    out = cli(a, "keyring", "-list", "-use", K1)
    assert out.returncode == 1


def test_a_damaged_keyring_file_stops_the_start(make_agent, tmp_path):
    d = tmp_path / "d"
    (d / "serf").mkdir(parents=True)
    (d / "serf" / "local.keyring").write_text('["AAEC"]')
    a = make_agent(args=["-encrypt", K1], data_dir=str(d))
    a.expect_fail = True
    a.start(wait=False)
    assert a.proc.wait(20) != 0
    assert "local.keyring: key 0 is not base64 of 16, 24 or 32 bytes" in a.read_log()


def test_keygen_makes_a_key_the_keyring_takes(make_agent):
    out = subprocess.run([HERALD, "keygen"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    key = out.stdout.strip()
    a = make_agent(args=["-encrypt", key]).start()
    assert a.get("/v1/operator/keyring").json()[0]["Keys"] == {key: 1}


def test_agent_stops_cleanly_while_a_keyring_operation_waits(make_agent, serf_agent, tmp_path):
    """A member that stalls keeps the query open until its timeout; a SIGTERM meanwhile ends
    it (the request gets no answer or a 500) and the agent exits 0 under ASan."""
    a = make_agent(args=["-encrypt", K1], data_dir=str(tmp_path / "a")).start()
    serf = serf_agent("%s:8301" % a.addr, K1)
    wait_until(lambda: members(a).get("serf1", {}).get("Status") == 1, timeout=20,
               msg="serf1 in the agent's pool")
    serf.send_signal(signal.SIGSTOP)
    got = {}

    def install():
        try:
            got["r"] = a.request("POST", "/v1/operator/keyring", {"Key": K2}, timeout=20)
        except OSError as e:
            got["r"] = e
    t = threading.Thread(target=install)
    try:
        t.start()
        wait_until(lambda: "keyring install across 2 members" in a.read_log(), timeout=10,
                   msg="the query running")
        assert a.stop() == 0
    finally:
        serf.send_signal(signal.SIGCONT)
        t.join(20)
    r = got["r"]
    print("the waiting request got", r if isinstance(r, OSError) else (r.status, r.text))
    assert isinstance(r, OSError) or r.status == 500, r
