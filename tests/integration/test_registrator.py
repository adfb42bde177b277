"""Registrator's usage (issue 12 item 5): the agent API exactly as gliderlabs/registrator's consul
backend (consul/consul.go, through hashicorp/consul's Go client, api/agent.go) calls it.

Registrator names a service instance `<host>:<container>:<port>[:udp]`, so IDs hold `:` (and
`/` when a container name has one). It sends the Go client's AgentServiceRegistration: empty
fields left out, but `"Check": null` and `"Checks": null` always there; the check it builds
from the container's SERVICE_CHECK_* labels is TTL, HTTP (`http://ip:port/path`, with interval
and timeout), TCP (`ip:port`) or a script (`ScriptArgs`, Consul's only script form since 1.1).
It deregisters with `PUT /v1/agent/service/deregister/<ID>` (the Go client puts the ID in the
URL path as it is; url.PathEscape'd by newer clients and other registrars) and lists
`GET /v1/agent/services` to find what it registered earlier (-resync, -cleanup). The answers
asserted are Consul's."""
import json
import urllib.parse

from conftest import wait_until

REMOTE_REFUSED = ("Scripts are disabled on this agent from remote calls; to enable, configure "
                  "'enable_script_checks' to true")


def go_body(reg):
    """The Go client's JSON for an AgentServiceRegistration: json.Encoder output (a newline at
    the end), Check and Checks present even when nil."""
    body = {k: v for k, v in reg.items() if v not in (None, "", 0, [], {})}
    body["Check"] = reg.get("Check")
    body["Checks"] = reg.get("Checks")
    return (json.dumps(body, separators=(",", ":")) + "\n").encode()


def register(agent, reg):
    return agent.put("/v1/agent/service/register", go_body(reg))


def registration(sid, name, port, ip="10.1.0.5", tags=None, check=None):
    return {"ID": sid, "Name": name, "Tags": tags or [], "Port": port, "Address": ip,
            "Check": check}


def deregister(agent, path_id):
    return agent.put("/v1/agent/service/deregister/" + path_id)


def test_ids_with_colon_and_slash_register_list_and_deregister(agent):
    regs = [registration("host1:redis:6379", "redis", 6379, tags=["master"]),
            registration("host1:web/1:80", "web", 80, ip="10.1.0.6"),
            registration("host1:dns:53:udp", "dns", 53, ip="10.1.0.7"),
            registration("host1:web/2:80", "web", 80, ip="10.1.0.8"),
            registration("host1:api:8080", "api", 8080, ip="10.1.0.9")]
    for reg in regs:
        r = register(agent, reg)
        assert (r.status, r.body) == (200, b""), r.text
    # registrator -resync registers again: same answer, no duplicate
    r = register(agent, regs[0])
    assert (r.status, r.body) == (200, b""), r.text

    services = agent.get("/v1/agent/services").json()
    assert sorted(services) == sorted(reg["ID"] for reg in regs)
    s = services["host1:redis:6379"]
    # what registrator's Services() reads, and Consul's other fields of the entry
    assert (s["ID"], s["Service"], s["Tags"], s["Port"], s["Address"]) == (
        "host1:redis:6379", "redis", ["master"], 6379, "10.1.0.5")
    assert s["Meta"] == {} and s["EnableTagOverride"] is False
    assert s["Weights"] == {"Passing": 1, "Warning": 1}
    assert services["host1:web/1:80"]["Tags"] == []
    # no Check: no health check of the service, and it is healthy
    assert not [c for c in agent.get("/v1/agent/checks").json().values()
                if c["ServiceID"] == "host1:redis:6379"]
    health = agent.get("/v1/health/service/redis?passing").json()
    assert [e["Service"]["ID"] for e in health] == ["host1:redis:6379"]
    one = agent.get("/v1/agent/service/" + urllib.parse.quote("host1:redis:6379", safe=""))
    assert one.status == 200 and one.json()["ID"] == "host1:redis:6379", one.text
    cat = agent.get("/v1/catalog/service/web").json()
    assert sorted(e["ServiceID"] for e in cat) == ["host1:web/1:80", "host1:web/2:80"]

    # deregister: raw as the Go client sends it, then escaped (url.PathEscape: %2F; Python's
    # quote(safe=""): %3A too); Consul answers 200 with an empty body for each
    for path_id in ("host1:redis:6379",                                   # raw
                    "host1:web/1:80",                                     # raw, with '/'
                    "host1:dns:53:udp",
                    "host1:web%2F2:80",                                   # url.PathEscape
                    urllib.parse.quote("host1:api:8080", safe="")):       # %3A
        r = deregister(agent, path_id)
        assert (r.status, r.body) == (200, b""), (path_id, r.status, r.text)
    assert agent.get("/v1/agent/services").json() == {}
    assert agent.get("/v1/catalog/service/web").json() == []
    # again: Consul's 404 naming the ID
    r = deregister(agent, "host1:web/1:80")
    assert r.status == 404, r.text
    assert r.text.startswith('Unknown service ID "host1:web/1:80"'), r.text
    r = deregister(agent, "host1:web%2F1:80")
    assert r.status == 404 and 'ID "host1:web/1:80"' in r.text, r.text


def test_ttl_http_tcp_checks_as_registrator_builds_them(agent):
    sid = "host1:redis:6379"
    # SERVICE_CHECK_TTL=30s, SERVICE_CHECK_INITIAL_STATUS=passing,
    # SERVICE_CHECK_DEREGISTER_AFTER=10m
    r = register(agent, registration(sid, "redis", 6379, check={
        "TTL": "30s", "Status": "passing", "DeregisterCriticalServiceAfter": "10m"}))
    assert (r.status, r.body) == (200, b""), r.text
    # SERVICE_CHECK_HTTP=/health with SERVICE_CHECK_TIMEOUT=1s: interval 10s by default
    r = register(agent, registration("host1:web/1:80", "web", 80, ip="127.0.0.1", check={
        "Interval": "10s", "Timeout": "1s", "HTTP": "http://127.0.0.1:80/health"}))
    assert (r.status, r.body) == (200, b""), r.text
    # SERVICE_CHECK_TCP=true
    r = register(agent, registration("host1:db:5432", "db", 5432, ip="127.0.0.1", check={
        "Interval": "10s", "TCP": "127.0.0.1:5432"}))
    assert (r.status, r.body) == (200, b""), r.text

    checks = agent.get("/v1/agent/checks").json()
    c = checks["service:" + sid]
    assert (c["CheckID"], c["ServiceID"], c["ServiceName"], c["Type"], c["Status"]) == (
        "service:" + sid, sid, "redis", "ttl", "passing")
    assert c["Name"] == "Service 'redis' check"
    h = checks["service:host1:web/1:80"]
    assert (h["ServiceID"], h["Type"]) == ("host1:web/1:80", "http")
    t = checks["service:host1:db:5432"]
    assert (t["ServiceID"], t["Type"]) == ("host1:db:5432", "tcp")

    # the TTL check by its ID (colons in it), as the Go client's UpdateTTL/FailTTL send it
    r = agent.put("/v1/agent/check/fail/service:" + sid)
    assert r.status == 200, r.text
    wait_until(lambda: agent.get("/v1/health/service/redis?passing").json() == [], timeout=10,
               msg="redis hidden once its TTL check failed")
    r = agent.put("/v1/agent/check/pass/" + urllib.parse.quote("service:" + sid, safe=""))
    assert r.status == 200, r.text
    health = agent.get("/v1/health/service/redis?passing").json()
    assert [e["Service"]["ID"] for e in health] == [sid]

    for path_id in (sid, "host1:web/1:80", "host1:db%3A5432"):
        r = deregister(agent, path_id)
        assert (r.status, r.body) == (200, b""), (path_id, r.text)
    assert agent.get("/v1/agent/services").json() == {}
    left = [c for c in agent.get("/v1/agent/checks").json().values() if c["ServiceID"]]
    assert left == [], left


def test_script_checks_refused_unless_enabled(agent):
    # registrator's SERVICE_CHECK_CMD / SERVICE_CHECK_SCRIPT as ScriptArgs: Consul refuses a
    # script over HTTP unless enable_script_checks, with a 500 and these words
    reg = registration("host1:redis:6379", "redis", 6379, check={
        "ScriptArgs": ["/bin/sh", "-c", "exit 0"], "Interval": "10s"})
    r = register(agent, reg)
    assert r.status == 500 and REMOTE_REFUSED in r.text, (r.status, r.text)
    assert agent.get("/v1/agent/services").json() == {}
    assert not [c for c in agent.get("/v1/agent/checks").json().values() if c["ServiceID"]]


def test_script_checks_run_when_enabled(make_agent):
    agent = make_agent(["-enable-script-checks"]).start()
    for sid, code, status in (("host1:ok:1", 0, "passing"), ("host1:warn/1:2", 1, "warning"),
                              ("host1:bad:3", 2, "critical")):
        r = register(agent, registration(sid, "redis", 6379, check={
            "ScriptArgs": ["/bin/sh", "-c", "echo out-%d; exit %d" % (code, code)],
            "Interval": "1s"}))
        assert (r.status, r.body) == (200, b""), r.text

        def status_is(sid=sid, code=code, status=status):
            c = agent.get("/v1/agent/checks").json().get("service:" + sid) or {}
            return c.get("Status") == status and "out-%d" % code in c.get("Output", "") and c

        c = wait_until(status_is, timeout=15, msg="%s %s" % (sid, status))
        assert c["Type"] == "script" and c["ServiceID"] == sid
    health = agent.get("/v1/health/service/redis?passing").json()
    assert [e["Service"]["ID"] for e in health] == ["host1:ok:1"]
    for path_id in ("host1:ok:1", "host1:warn%2F1:2", "host1:bad:3"):
        r = deregister(agent, path_id)
        assert (r.status, r.body) == (200, b""), (path_id, r.text)
    assert agent.get("/v1/agent/services").json() == {}


def test_legacy_script_field_is_refused(agent):
    # registrator's releases up to v7 send check_cmd / check_script as "Script" (a shell line),
    # which Consul dropped in 1.1: refused with a 400, nothing registered
    r = register(agent, registration("host1:redis:6379", "redis", 6379, check={
        "Script": "check-cmd 0123456789ab 6379 redis-cli ping", "Interval": "10s"}))
    assert r.status == 400, (r.status, r.text)
    assert agent.get("/v1/agent/services").json() == {}


def test_a_servers_catalog_entries_are_not_the_agents(agent):
    # registrator -cleanup lists /v1/agent/services and deregisters what it does not know. A
    # server's node carries the "consul" service and the serfHealth check in the catalog, but
    # they are the leader's, not in the agent's local state: Consul's agent endpoints do not
    # list them and answer 404 for their IDs.
    node = agent.get("/v1/catalog/node/" + agent.node_name).json()
    assert "consul" in node["Services"]
    assert agent.get("/v1/agent/services").json() == {}
    assert agent.get("/v1/agent/checks").json() == {}
    r = agent.get("/v1/agent/service/consul")
    assert r.status == 404, r.text
    r = deregister(agent, "consul")
    assert r.status == 404 and r.text.startswith('Unknown service ID "consul"'), r.text
    r = agent.put("/v1/agent/check/deregister/serfHealth")
    assert r.status == 404 and r.text.startswith('Unknown check ID "serfHealth"'), r.text
    r = agent.put("/v1/agent/check/fail/serfHealth")
    assert r.status == 404, r.text
    r = agent.get("/v1/agent/health/service/name/consul")
    assert r.status == 404, r.text
    # still there, passing, in the catalog
    checks = agent.get("/v1/health/node/" + agent.node_name).json()
    assert [(c["CheckID"], c["Status"]) for c in checks] == [("serfHealth", "passing")]
    assert "consul" in agent.get("/v1/catalog/services").json()


def test_ping_and_service_attributes_in_kv(agent):
    # Ping(): the current leader, a JSON string
    r = agent.get("/v1/status/leader")
    assert r.status == 200 and r.json() == "%s:8300" % agent.addr, r.text
    # consul://host?prefix=P: each SERVICE_<k> attribute at P/<ID>/<k> (the ID's ':' and '/'
    # as they are in the key), then Deregister deletes the tree service_attribute/attributes/ID
    sid = "host1:web/1:80"
    for k, v in (("check_http", "/health"), ("owner", "ops")):
        r = agent.put("/v1/kv/services/%s/%s" % (sid, k), v)
        assert (r.status, r.json()) == (200, True), r.text
    keys = agent.get("/v1/kv/services/?keys").json()
    assert keys == ["services/host1:web/1:80/check_http", "services/host1:web/1:80/owner"]
    r = agent.get("/v1/kv/services/%s/owner?raw" % sid)
    assert (r.status, r.body) == (200, b"ops"), r.text
    for k in ("a", "b"):
        assert agent.put("/v1/kv/service_attribute/attributes/%s/%s" % (sid, k), "x").json()
    r = agent.delete("/v1/kv/service_attribute/attributes/%s?recurse=" % sid)
    assert (r.status, r.json()) == (200, True), r.text
    assert agent.get("/v1/kv/service_attribute/?keys").status == 404
