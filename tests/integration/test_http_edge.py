"""The HTTP edge through the real binary (issue 9, items 5 and 8): bounded resources per client
and per request, requests HTTP/1.1 itself refuses, and the smaller departures from Consul
(writes naming another datacenter, wait without a unit, duplicate JSON keys)."""
import select
import socket
import time

import pytest

from conftest import next_addr, raw_http, wait_until


def _connect(agent, source, timeout=5):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect((agent.addr, 8500))
    return s


def _read_response(s):
    """Reads one response (head and Content-Length body); b"" when the server closed."""
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _served(s):
    s.sendall(b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\n\r\n")
    return _read_response(s).startswith(b"HTTP/1.1 200 ")


def _closed_at_once(s):
    try:
        s.sendall(b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\n\r\n")
        return s.recv(100) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


# ---- item 5: bounded resources ----------------------------------------------------------

def test_connections_per_client_are_capped(make_agent):
    a = make_agent(config={"limits": {"http_max_conns_per_client": 4}}).start()
    # our own client addresses, so the readiness probes' connections do not count
    me, other = next_addr(), next_addr()
    socks = [_connect(a, me) for _ in range(4)]
    try:
        # a keep-alive request on each proves the agent accepted (and counts) all four
        assert all(_served(s) for s in socks)
        extra = _connect(a, me)
        assert _closed_at_once(extra)
        extra.close()
        # another client is not affected
        o = _connect(a, other)
        assert _served(o)
        o.close()
        # a closed connection frees its slot once the agent has seen the close
        socks.pop().close()

        def one_more():
            s = _connect(a, me)
            try:
                return _served(s)
            except OSError:
                return False
            finally:
                s.close()
        wait_until(one_more, timeout=5, msg="a slot freed")
    finally:
        for s in socks:
            s.close()
    assert a.get("/v1/agent/self").status == 200


def test_default_cap_is_consuls_200_per_client(agent):
    me = next_addr()
    socks = []
    try:
        for _ in range(200):
            socks.append(_connect(agent, me))
            assert _served(socks[-1])
        extra = _connect(agent, me)
        assert _closed_at_once(extra)
        extra.close()
    finally:
        for s in socks:
            s.close()
    assert agent.get("/v1/agent/self").status == 200


def test_connections_per_client_config_is_validated(make_agent):
    for bad in (0, -1, "200", 1000001):
        a = make_agent(config={"limits": {"http_max_conns_per_client": bad}})
        a.expect_fail = True
        a.start(wait=False)
        assert a.proc.wait(20) == 1
        assert "http_max_conns_per_client" in a.read_log()
    for bad in ("soon", "0s", "25h", 30):
        a = make_agent(config={"limits": {"http_body_timeout": bad}})
        a.expect_fail = True
        a.start(wait=False)
        assert a.proc.wait(20) == 1
        assert "http_body_timeout" in a.read_log()


def test_body_trickle_is_cut_off_with_408(make_agent):
    a = make_agent(config={"limits": {"http_body_timeout": "2s"}}).start()
    s = socket.create_connection((a.addr, 8500), timeout=10)
    s.sendall(b"PUT /v1/kv/trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    t0 = time.time()
    out = b""
    sent = 0
    # one byte every 0.5 s (well inside the 60 s idle timeout) until the agent answers
    while time.time() - t0 < 10 and sent < 100:
        r, _, _ = select.select([s], [], [], 0.5)
        if r:
            out = _read_response(s)
            break
        s.sendall(b"x")
        sent += 1
    took = time.time() - t0
    s.close()
    assert out.startswith(b"HTTP/1.1 408 "), (out, took)
    assert out.endswith(b"\r\n\r\nRequest Timeout\n")
    assert 1.5 < took < 5, took
    assert a.get("/v1/kv/trickle").status == 404
    assert a.get("/v1/agent/self").status == 200


@pytest.mark.parametrize("path,size_line", [
    (b"/v1/kv/big", b"100001\r\n"),          # 1 MiB + 1: over the default body limit
    (b"/v1/kv/big", b"ffffffffffffffff\r\n"),
    (b"/v1/snapshot", b"10000001\r\n"),      # 256 MiB + 1: over the snapshot limit
])
def test_oversized_chunk_is_refused_at_its_size_line(agent, path, size_line):
    t0 = time.time()
    out = raw_http(agent.addr, b"PUT " + path + b" HTTP/1.1\r\nHost: x\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" + size_line, timeout=5)
    assert out.startswith(b"HTTP/1.1 413 "), out[:80]
    assert time.time() - t0 < 3  # answered at once, not after a read timeout
    assert agent.get("/v1/kv/big").status == 404


def test_chunks_adding_up_over_the_limit_get_413_before_the_last_data(agent):
    chunk = b"80000\r\n" + b"a" * 0x80000 + b"\r\n"   # 512 KiB
    out = raw_http(agent.addr, b"PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" + chunk + b"80001\r\n", timeout=5)
    assert out.startswith(b"HTTP/1.1 413 "), out[:80]


def test_http11_without_host_is_400(agent):
    out = raw_http(agent.addr, b"GET /v1/agent/self HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:80]
    assert out.endswith(b"\r\n\r\nBad Request: missing required Host header\n")
    out = raw_http(agent.addr, b"GET /v1/agent/self HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:80]
    assert out.endswith(b"\r\n\r\nBad Request: too many Host headers\n")
    # nothing was stored by a refused write
    out = raw_http(agent.addr, b"PUT /v1/kv/nohost HTTP/1.1\r\nContent-Length: 1\r\n\r\nx")
    assert out.startswith(b"HTTP/1.1 400 ")
    assert agent.get("/v1/kv/nohost").status == 404
    # HTTP/1.0 needs none
    out = raw_http(agent.addr, b"GET /v1/agent/self HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 "), out[:80]


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/3.0", b"HTTP/0.9", b"HTTP/1.2"])
def test_other_http_versions_are_505(agent, version):
    out = raw_http(agent.addr, b"GET /v1/agent/self " + version + b"\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 505 "), out[:80]
    assert out.endswith(b"\r\n\r\nHTTP Version Not Supported\n")
    assert agent.get("/v1/agent/self").status == 200


# ---- item 8: writes to another datacenter, wait units, duplicate keys ------------------

def _state(agent):
    return (agent.get("/v1/catalog/services").json(), agent.get("/v1/agent/checks").json(),
            agent.get("/v1/catalog/nodes").json(), agent.get("/v1/kv/?recurse").status)


def test_writes_naming_another_datacenter_store_nothing(agent):
    assert agent.put("/v1/agent/service/register",
                     {"Name": "keep", "Check": {"CheckID": "ttl", "TTL": "60s"}}).status == 200
    assert agent.put("/v1/kv/keep", b"1").status == 200
    backup = agent.get("/v1/snapshot").body
    before = _state(agent)
    writes = [
        ("PUT", "/v1/agent/service/register", {"Name": "web"}),
        ("PUT", "/v1/agent/service/deregister/keep", None),
        ("PUT", "/v1/agent/check/register", {"Name": "c", "TTL": "5s"}),
        ("PUT", "/v1/agent/check/deregister/ttl", None),
        ("PUT", "/v1/agent/check/fail/ttl", None),
        ("GET", "/v1/agent/check/fail/ttl", None),
        ("PUT", "/v1/agent/check/update/ttl", {"Status": "critical"}),
        ("PUT", "/v1/catalog/register", {"Node": "n1", "Address": "1.2.3.4"}),
        ("PUT", "/v1/catalog/deregister", {"Node": agent.node_name, "ServiceID": "keep"}),
        ("PUT", "/v1/kv/new", b"v"),
        ("PUT", "/v1/kv/keep?cas=0", b"v"),
        ("DELETE", "/v1/kv/keep", None),
        ("DELETE", "/v1/kv/?recurse", None),
        ("PUT", "/v1/snapshot", backup),
    ]
    for method, path, body in writes:
        sep = "&" if "?" in path else "?"
        r = agent.request(method, path + sep + "dc=dc2", body if body is not None else b"")
        assert r.status == 500, (method, path, r.status, r.text)
        assert r.text == "No path to datacenter\n", (method, path, r.text)
    assert _state(agent) == before
    assert agent.get("/v1/kv/keep").json()[0]["Value"] == "MQ=="
    assert agent.get("/v1/agent/checks").json()["ttl"]["Status"] == "critical"  # TTL's start
    # the own datacenter, named, still writes
    assert agent.put("/v1/kv/new?dc=dc1", b"v").status == 200
    assert agent.get("/v1/kv/new").status == 200


@pytest.mark.parametrize("wait", ["1", "10", "00"])
def test_wait_without_unit_is_400(agent, wait):
    idx = agent.get("/v1/catalog/services").index
    r = agent.get("/v1/catalog/services?index=%d&wait=%s" % (idx, wait))
    assert r.status == 400, r.status
    assert r.text == "Invalid wait time\n"


def test_wait_with_unit_still_works(agent):
    idx = agent.get("/v1/catalog/services").index
    t0 = time.time()
    r = agent.get("/v1/catalog/services?index=%d&wait=1s" % idx)
    assert r.status == 200 and time.time() - t0 >= 0.9


def _put_raw(agent, path, text):
    return agent.put(path, text.encode())


def test_duplicate_keys_last_one_wins(agent):
    # exact duplicates
    r = _put_raw(agent, "/v1/agent/service/register",
                 '{"Name": "web", "Port": 1, "Name": "web2", "Port": 2, '
                 '"Meta": {"k": "a", "k": "b"}, "Tags": ["x"], "Tags": ["y"]}')
    assert r.status == 200, r.text
    svc = agent.get("/v1/agent/service/web2").json()
    assert (svc["Service"], svc["Port"], svc["Meta"], svc["Tags"]) == ("web2", 2, {"k": "b"}, ["y"])
    assert agent.get("/v1/agent/service/web").status == 404
    # the same field in another case: Go's decoder matches case-insensitively
    r = _put_raw(agent, "/v1/agent/service/register",
                 '{"Name": "one", "name": "two", "ID": "i1", "id": "i2", "port": 7, "Port": 8}')
    assert r.status == 200, r.text
    svc = agent.get("/v1/agent/service/i2").json()
    assert (svc["Service"], svc["ID"], svc["Port"]) == ("two", "i2", 8)
    assert agent.get("/v1/agent/service/i1").status == 404
    # in document order: of "Name", "name", "Name" the last "Name" wins, as in Go
    r = _put_raw(agent, "/v1/agent/service/register",
                 '{"Name": "d1", "name": "d2", "Name": "d3", "ID": "order"}')
    assert r.status == 200, r.text
    assert agent.get("/v1/agent/service/order").json()["Service"] == "d3"
    # nested: a check definition, tagged addresses
    r = _put_raw(agent, "/v1/agent/service/register",
                 '{"Name": "nest", "Check": {"CheckID": "c1", "TTL": "10s", "ttl": "20s", '
                 '"CheckID": "c2"}, "TaggedAddresses": {"lan": {"Address": "10.0.0.1", '
                 '"address": "10.0.0.2", "Port": 1}}}')
    assert r.status == 200, r.text
    checks = agent.get("/v1/agent/checks").json()
    assert "c2" in checks and "c1" not in checks
    assert checks["c2"]["Definition"]["TTL"] == "20s"
    svc = agent.get("/v1/agent/service/nest").json()
    assert svc["TaggedAddresses"]["lan"] == "10.0.0.2"
    # agent check register and update
    r = _put_raw(agent, "/v1/agent/check/register",
                 '{"Name": "a", "CheckID": "ck", "TTL": "30s", "Notes": "n1", "notes": "n2"}')
    assert r.status == 200, r.text
    assert agent.get("/v1/agent/checks").json()["ck"]["Notes"] == "n2"
    r = _put_raw(agent, "/v1/agent/check/update/ck",
                 '{"Status": "warning", "Output": "o1", "status": "passing", "Output": "o2"}')
    assert r.status == 200, r.text
    ck = agent.get("/v1/agent/checks").json()["ck"]
    assert (ck["Status"], ck["Output"]) == ("passing", "o2")
    # catalog register and deregister
    r = _put_raw(agent, "/v1/catalog/register",
                 '{"Node": "n1", "Address": "1.1.1.1", "node": "n2", "Address": "2.2.2.2", '
                 '"NodeMeta": {"m": "1"}, "nodemeta": {"m": "2"}}')
    assert r.status == 200, r.text
    nodes = {n["Node"]: n for n in agent.get("/v1/catalog/nodes").json()}
    assert "n1" not in nodes
    assert nodes["n2"]["Address"] == "2.2.2.2" and nodes["n2"]["Meta"] == {"m": "2"}
    r = _put_raw(agent, "/v1/catalog/deregister", '{"Node": "n1", "Node": "n2"}')
    assert r.status == 200, r.text
    assert "n2" not in {n["Node"] for n in agent.get("/v1/catalog/nodes").json()}


def test_many_duplicate_keys_are_cheap(agent):
    # 60k keys, all duplicates, in nested objects too: answered at once, the last one kept
    inner = ", ".join('"k": "%d"' % i for i in range(30000))
    body = ('{"Name": "x", "Meta": {%s}, "name": "many", "Meta": {%s, "k": "last"}}'
            % (inner, inner))
    t0 = time.time()
    r = _put_raw(agent, "/v1/agent/service/register", body)
    assert r.status == 200, r.text
    assert time.time() - t0 < 5
    svc = agent.get("/v1/agent/service/many").json()
    assert svc["Meta"] == {"k": "last"}
    # deep nesting with a duplicate: refused or accepted, never a crash
    deep = '{"Name": "deep", "Name": "deep", "Meta": ' + "[" * 2000 + "]" * 2000 + "}"
    assert _put_raw(agent, "/v1/agent/service/register", deep).status == 400
    assert agent.get("/v1/agent/self").status == 200
