"""The keyring across a pool of our gossip engine and Debian's serf agents, both ways.

Our side runs as tests/tools/gossip_node (the engine in a process: "keyring install|use|remove
KEY", "keyring list" and "keys" on stdin, JSON lines out; the pool fixture and GossipNode are
test_gossip_serf_pool.py's). From our node: install K2 reaches serf (`serf keys -list` shows
both keys on both members), use K2 makes K2 everyone's primary (a serf agent that only knows K2
then joins), remove K1 leaves K2 alone everywhere. From serf: `serf keys -install/-use/-remove/
-list` reach our engine, which answers serf's queries (serf reports no failure) and reports each
change to the keyring hook, and refusals come back with memberlist's texts. Every wait is
bounded; processes are stopped by pid.
"""
import json
import subprocess

from conftest import wait_until
from herald_test.serf import serf_members
from test_gossip_serf_pool import PORT, both_list_each_other, pool  # noqa: F401 (a fixture)

K1 = "AAECAwQFBgcICQoLDA0ODw=="
K2 = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM="


def serf_keys(serf, *args):
    out = subprocess.run(["serf", "keys", "-rpc-addr=%s:7373" % serf.addr] + list(args),
                         capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout + out.stderr


def serf_key_list(serf):
    """{key: "[n/N]"} as `serf keys -list` prints them."""
    rc, text = serf_keys(serf, "-list")
    assert rc == 0, text
    return {parts[0]: parts[1] for parts in (line.split() for line in text.splitlines())
            if len(parts) == 2 and parts[1].startswith("[")}


def keyring(node, line):
    n = len(node.events)
    node.command("keyring " + line)
    return wait_until(lambda: next((e for e in node.events[n:] if e["event"] == "keyring"), None),
                      timeout=15, msg="%s: keyring %s" % (node.name, line))


def local_keys(node):
    n = len(node.events)
    node.command("keys")
    return wait_until(lambda: next((e for e in node.events[n:] if e["event"] == "keys"), None),
                      timeout=10, msg="keys")["keys"]


def no_serf_key_errors(serf):
    """serf decoded every key request and answer of ours, and every packet decrypted."""
    text = serf.log_path.read_text()
    for line in text.splitlines():
        assert not ("[ERR]" in line and ("decode" in line or "decrypt" in line
                                         or "respond" in line)), line


def test_keyring_ops_from_our_node_reach_serf(pool):  # noqa: F811
    serf = pool.serf(key=K1)
    node = pool.node(join="%s:%d" % (serf.addr, PORT), key=K1)
    both_list_each_other(serf, node)

    r = keyring(node, "install " + K2)
    assert r["status"] == 0 and r["error"] is None, r
    assert (r["num_nodes"], r["num_resp"], r["num_err"]) == (2, 2, 0), r
    assert serf_key_list(serf) == {K1: "[2/2]", K2: "[2/2]"}
    assert local_keys(node) == [K1, K2]
    node.wait_event(lambda e: e["event"] == "keyring_changed" and e["keys"] == [K1, K2], 5,
                    "the hook told of the install")

    r = keyring(node, "use " + K2)
    assert r["status"] == 0, r
    r = keyring(node, "list")
    assert r["status"] == 0, r
    assert r["keys"] == {K1: 2, K2: 2} and r["primary_keys"] == {K2: 2}, r
    assert local_keys(node) == [K2, K1]

    # both sides now encrypt with K2: a serf agent that knows only K2 joins through us
    serf2 = pool.serf(join="%s:%d" % (node.addr, PORT), key=K2, name="serf2")
    wait_until(lambda: node.members().get("serf2", {}).get("status") == "alive", timeout=15,
               msg="we list serf2")
    wait_until(lambda: serf_members(serf.addr).get("serf2", {}).get("status") == "alive",
               timeout=15, msg="serf1 lists serf2")

    r = keyring(node, "remove " + K1)
    assert r["status"] == 0 and (r["num_nodes"], r["num_resp"]) == (3, 3), r
    assert serf_key_list(serf) == {K2: "[3/3]"}
    assert local_keys(node) == [K2]
    assert serf_members(serf2.addr)["h1"]["status"] == "alive"
    assert node.members()["serf1"]["status"] == "alive"

    # the primary cannot go: every member refuses, with memberlist's text
    r = keyring(node, "remove " + K2)
    assert r["status"] != 0 and r["error"] == "3/3 nodes reported failure", r
    assert r["messages"] == {n: "Removing the primary key is not allowed"
                             for n in ("h1", "serf1", "serf2")}, r
    assert local_keys(node) == [K2]
    no_serf_key_errors(serf)
    assert node.stats()["udp_bad"] == 0


def test_serf_keys_commands_reach_our_engine(pool):  # noqa: F811
    node = pool.node(key=K1)
    serf = pool.serf(join="%s:%d" % (node.addr, PORT), key=K1)
    both_list_each_other(serf, node)

    rc, text = serf_keys(serf, "-install", K2)
    assert rc == 0 and "Successfully installed key!" in text, text
    node.wait_event(lambda e: e["event"] == "keyring_changed" and e["keys"] == [K1, K2], 5,
                    "our hook told of serf's install")
    assert serf_key_list(serf) == {K1: "[2/2]", K2: "[2/2]"}

    rc, text = serf_keys(serf, "-use", K2)
    assert rc == 0 and "Successfully changed primary key!" in text, text
    assert local_keys(node) == [K2, K1]

    rc, text = serf_keys(serf, "-remove", K1)
    assert rc == 0 and "Successfully removed key!" in text, text
    assert local_keys(node) == [K2]
    assert serf_key_list(serf) == {K2: "[2/2]"}

    # refusals come back to serf with memberlist's texts, ours among them
    rc, text = serf_keys(serf, "-remove", K2)
    assert rc != 0, text
    assert any("h1" in line and "Removing the primary key is not allowed" in line
               for line in text.splitlines()), text
    rc, text = serf_keys(serf, "-use", K1)
    assert rc != 0, text
    assert any("h1" in line and "Requested key is not in the keyring" in line
               for line in text.splitlines()), text
    assert local_keys(node) == [K2]
    # still one pool, under K2
    assert node.members()["serf1"]["status"] == "alive"
    assert serf_members(serf.addr)["h1"]["status"] == "alive"
    assert node.stats()["udp_bad"] == 0


def test_unencrypted_engine_answers_serf_with_serfs_text(pool):  # noqa: F811
    node = pool.node()
    serf = pool.serf(join="%s:%d" % (node.addr, PORT))
    both_list_each_other(serf, node)
    rc, text = serf_keys(serf, "-list")
    assert rc != 0, text
    assert any("h1" in line and "Keyring is empty (encryption not enabled)" in line
               for line in text.splitlines()), text
    rc, text = serf_keys(serf, "-install", K2)
    assert rc != 0, text
    assert any("h1" in line and "No keyring to modify (encryption not enabled)" in line
               for line in text.splitlines()), text
    assert local_keys(node) == []


def test_a_keyring_we_cannot_persist_is_a_failure_serf_sees(pool):  # noqa: F811
    node = pool.node(key=K1, args=["-keyring-fail"])
    serf = pool.serf(join="%s:%d" % (node.addr, PORT), key=K1)
    both_list_each_other(serf, node)
    rc, text = serf_keys(serf, "-install", K2)
    assert rc != 0, text
    assert any("h1" in line and "Failed to write keyring file: test says no" in line
               for line in text.splitlines()), text
    # as serf: the key is in memory all the same
    assert local_keys(node) == [K1, K2]


def test_a_persisted_keyring_starts_the_engine(pool):  # noqa: F811
    # -keyring (the caller's persisted keyring) wins over -encrypt: K2 primary, K1 kept
    node = pool.node(key=K1, args=["-keyring", K2, "-keyring", K1])
    assert local_keys(node) == [K2, K1]
    serf = pool.serf(join="%s:%d" % (node.addr, PORT), key=K2)
    both_list_each_other(serf, node)
    r = keyring(node, "list")
    assert r["status"] == 0 and r["keys"] == {K1: 1, K2: 2}, r
    assert json.dumps(r["primary_keys"]) == json.dumps({K2: 2})
