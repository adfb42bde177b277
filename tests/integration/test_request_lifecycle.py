"""One owner finishes each request (STYLE.md): a blocking read's wait timer, its Raft read
index and the client's disconnect may come in any order, and the request is answered (or
dropped) exactly once. ?index=1&wait=0s|1ms|1ns makes the timer fire while the read index is
still pending, on a dev agent (leader) and on a follower of a 3-server cluster; a client that
sends a read and goes away at once leaves while the read index is pending.

Every agent runs under ASan: a use after free kills it, and the fixtures' graceful stop must
exit 0 (no leaks)."""
import socket

import pytest

from conftest import wait_until

BLOCKING = [
    "/v1/kv/a",
    "/v1/kv/?recurse",
    "/v1/catalog/services",
    "/v1/catalog/nodes",
    "/v1/catalog/service/web",
    "/v1/health/state/any",
    "/v1/health/service/web",
    "/v1/snapshot",
]
WAITS = ["0s", "1ms", "1ns", "1us", "0"]
MODES = ["", "&consistent", "&stale"]


def _alive(agent):
    assert agent.proc.poll() is None, "agent died:\n" + agent.read_log()
    r = agent.get("/v1/status/leader", timeout=5)
    assert r.status == 200


def _short_waits(agent, paths=BLOCKING, modes=MODES):
    for path in paths:
        sep = "&" if "?" in path else "?"
        for wait in WAITS:
            for mode in modes:
                url = "%s%sindex=1&wait=%s%s" % (path, sep, wait, mode)
                r = agent.get(url, timeout=10)
                assert agent.proc.poll() is None, "agent died on %s:\n%s" % (url,
                                                                             agent.read_log())
                assert r.status in (200, 404), (url, r.status, r.text)
                assert r.index >= 1, url
    _alive(agent)


def _send_and_close(agent, target, linger_reads=0):
    """Sends one GET and closes the connection without reading the answer (or after
    linger_reads recv calls)."""
    s = socket.create_connection((agent.addr, 8500), timeout=5)
    try:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode())
        for _ in range(linger_reads):
            try:
                if not s.recv(65536):
                    break
            except socket.timeout:
                break
    finally:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST: the server sees the disconnect on its next read


def _disconnects(agent):
    for path in BLOCKING:
        sep = "&" if "?" in path else "?"
        for q in ("", "index=1&wait=1ms", "index=1&wait=0s", "index=999999&wait=1m",
                  "index=999999&wait=1m&consistent", "consistent", "stale&index=999999"):
            _send_and_close(agent, path + (sep + q if q else ""))
    _alive(agent)


@pytest.fixture
def seeded_agent(agent):
    agent.put("/v1/kv/a", b"1")
    agent.put("/v1/agent/service/register", {"Name": "web", "Port": 80})
    return agent


def test_short_wait_blocking_reads_answer_once_on_dev_agent(seeded_agent):
    _short_waits(seeded_agent)


def test_client_leaving_pending_reads_does_not_crash_dev_agent(seeded_agent):
    _disconnects(seeded_agent)
    # a parked query whose client left is dropped; a write afterwards wakes nothing that is
    # gone
    seeded_agent.put("/v1/kv/a", b"2")
    _alive(seeded_agent)


def test_short_wait_and_disconnects_on_cluster_follower(make_cluster):
    c = make_cluster(3).start()
    leader = c.wait_leader()
    leader.put("/v1/kv/a", b"1")
    leader.put("/v1/agent/service/register", {"Name": "web", "Port": 80})
    for f in c.followers(leader):
        wait_until(lambda: f.get("/v1/kv/a?stale").status == 200, timeout=10,
                   msg="follower caught up")
        _short_waits(f, modes=["", "&consistent"])
        _disconnects(f)
    _short_waits(leader, paths=["/v1/kv/a", "/v1/health/state/any"], modes=["", "&consistent"])
    for a in c:
        _alive(a)


def test_clients_leaving_queued_and_running_list_reads(agent):
    """List reads run on reader threads, two at once, the rest queued: clients that leave
    while theirs is queued or running are released, the others still get whole answers."""
    body = {"Node": "", "Address": "10.0.0.1", "NodeMeta": {"m": "x" * 400},
            "Service": {"Service": "web", "Port": 80}}
    for i in range(300):
        body["Node"] = "n%03d" % i
        body["Service"]["ID"] = "web-%d" % i
        assert agent.put("/v1/catalog/register", body).status == 200
    full = agent.get("/v1/catalog/nodes").body
    assert len(full) > 100_000
    for _ in range(3):
        for path in ("/v1/catalog/nodes", "/v1/health/service/web", "/v1/kv/?recurse",
                     "/v1/snapshot", "/v1/catalog/service/web?index=1&wait=1ms"):
            _send_and_close(agent, path)
            _send_and_close(agent, path, linger_reads=1)
        # and whole answers still come, also when asked for in parallel with leavers
        assert agent.get("/v1/catalog/nodes").body == full
    _alive(agent)
