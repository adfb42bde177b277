"""The registration flow through the real binary: agent and catalog endpoints, health
filtering, TTL checks, Consul's response shapes and headers."""
import time

from conftest import wait_until


def register_web(agent, sid="web1", port=80, tags=("v1",), check=None, address=None):
    body = {"Name": "web", "ID": sid, "Port": port, "Tags": list(tags)}
    if address:
        body["Address"] = address
    if check:
        body["Check"] = check
    r = agent.put("/v1/agent/service/register", body)
    assert r.status == 200, r.text
    return r


def test_agent_registers_its_own_node_with_serf_health_and_consul_service(agent):
    r = agent.get("/v1/catalog/node/" + agent.node_name)
    assert r.status == 200
    node = r.json()
    assert node["Node"]["Address"] == agent.addr
    assert node["Node"]["Datacenter"] == "dc1"
    assert "consul" in node["Services"]
    assert node["Services"]["consul"]["Port"] == 8300
    checks = agent.get("/v1/health/node/" + agent.node_name).json()
    assert [c["CheckID"] for c in checks] == ["serfHealth"]
    assert checks[0]["Status"] == "passing"


def test_register_service_and_read_it_back_everywhere(agent):
    register_web(agent, tags=("v1", "primary"))
    services = agent.get("/v1/agent/services").json()
    assert services["web1"]["Service"] == "web"
    assert services["web1"]["Port"] == 80
    assert services["web1"]["Tags"] == ["v1", "primary"]
    assert services["web1"]["Weights"] == {"Passing": 1, "Warning": 1}

    cat = agent.get("/v1/catalog/services")
    assert cat.status == 200
    assert cat.headers["Content-Type"] == "application/json"
    assert cat.index > 0
    assert cat.headers["X-Consul-KnownLeader"] == "true"
    assert "X-Consul-LastContact" in cat.headers
    assert cat.json()["web"] == ["v1", "primary"]

    inst = agent.get("/v1/catalog/service/web").json()
    assert len(inst) == 1
    assert inst[0]["ServiceID"] == "web1"
    assert inst[0]["Node"] == agent.node_name
    assert inst[0]["Address"] == agent.addr
    assert inst[0]["ServicePort"] == 80
    assert inst[0]["CreateIndex"] > 0 and inst[0]["ModifyIndex"] >= inst[0]["CreateIndex"]

    assert agent.get("/v1/catalog/service/web?tag=primary").json()[0]["ServiceID"] == "web1"
    assert agent.get("/v1/catalog/service/web?tag=nope").json() == []
    # service names match case-insensitively, as in Consul
    assert len(agent.get("/v1/catalog/service/WEB").json()) == 1

    health = agent.get("/v1/health/service/web").json()
    assert len(health) == 1
    assert health[0]["Service"]["ID"] == "web1"
    assert health[0]["Node"]["Node"] == agent.node_name
    assert [c["CheckID"] for c in health[0]["Checks"]] == ["serfHealth"]


def test_deregister_removes_service_and_its_checks(agent):
    register_web(agent, check={"TTL": "30s"})
    assert "service:web1" in agent.get("/v1/agent/checks").json()
    r = agent.put("/v1/agent/service/deregister/web1")
    assert r.status == 200
    assert agent.get("/v1/catalog/service/web").json() == []
    assert "service:web1" not in agent.get("/v1/agent/checks").json()
    assert "web" not in agent.get("/v1/catalog/services").json()
    r = agent.put("/v1/agent/service/deregister/web1")
    assert r.status == 404
    assert "web1" in r.text


def test_first_status_is_critical_unless_given_and_passing_filter_hides_it(agent):
    register_web(agent, "web1", check={"TTL": "30s"})
    register_web(agent, "web2", port=81, check={"TTL": "30s", "Status": "passing"})
    checks = agent.get("/v1/agent/checks").json()
    assert checks["service:web1"]["Status"] == "critical"
    assert checks["service:web2"]["Status"] == "passing"
    assert checks["service:web1"]["Name"] == "Service 'web' check"
    assert checks["service:web1"]["Type"] == "ttl"
    everyone = agent.get("/v1/health/service/web").json()
    assert sorted(e["Service"]["ID"] for e in everyone) == ["web1", "web2"]
    passing = agent.get("/v1/health/service/web?passing").json()
    assert [e["Service"]["ID"] for e in passing] == ["web2"]
    assert len(agent.get("/v1/health/service/web?passing=false").json()) == 2


def test_ttl_pass_warn_fail_update(agent):
    register_web(agent, check={"TTL": "30s"})
    for verb, status in (("pass", "passing"), ("warn", "warning"), ("fail", "critical")):
        r = agent.put("/v1/agent/check/%s/service:web1?note=hello-%s" % (verb, verb))
        assert r.status == 200, r.text
        c = agent.get("/v1/agent/checks").json()["service:web1"]
        assert c["Status"] == status
        assert c["Output"] == "hello-" + verb
    r = agent.put("/v1/agent/check/update/service:web1", {"Status": "passing", "Output": "ok"})
    assert r.status == 200
    c = agent.get("/v1/health/checks/web").json()
    assert [(x["CheckID"], x["Status"], x["Output"]) for x in c] == [("service:web1", "passing", "ok")]
    assert agent.get("/v1/health/state/passing").json()
    assert agent.get("/v1/health/state/critical").json() == []
    assert agent.get("/v1/health/state/bogus").status == 400
    assert agent.put("/v1/agent/check/pass/nope").status == 404


def test_ttl_check_expires_to_critical_when_not_refreshed(agent):
    register_web(agent, check={"TTL": "1s", "Status": "passing"})
    # refreshed in time: stays passing
    for _ in range(3):
        time.sleep(0.4)  # pacing: refreshes 0.4 s apart, 1.2 s in all, outlive the 1 s TTL
        assert agent.put("/v1/agent/check/pass/service:web1").status == 200
    assert agent.get("/v1/agent/checks").json()["service:web1"]["Status"] == "passing"
    t0 = time.time()
    c = wait_until(lambda: (lambda c: c if c["Status"] == "critical" else None)(
        agent.get("/v1/agent/checks").json()["service:web1"]), timeout=5, msg="TTL expiry")
    assert c["Output"] == "TTL expired"
    assert 0.5 < time.time() - t0 < 3
    assert agent.get("/v1/health/service/web?passing").json() == []


def test_check_register_and_deregister_node_level(agent):
    r = agent.put("/v1/agent/check/register", {"Name": "disk", "TTL": "60s", "Notes": "n"})
    assert r.status == 200, r.text
    c = agent.get("/v1/agent/checks").json()["disk"]
    assert c["ServiceID"] == "" and c["Status"] == "critical" and c["Notes"] == "n"
    # a critical node check hides every service of the node
    register_web(agent, check={"TTL": "30s", "Status": "passing"})
    assert agent.get("/v1/health/service/web?passing").json() == []
    assert agent.put("/v1/agent/check/deregister/disk").status == 200
    assert len(agent.get("/v1/health/service/web?passing").json()) == 1
    assert agent.put("/v1/agent/check/deregister/disk").status == 404


def test_tcp_check_runs_and_reports(agent, tmpdir_path):
    import socket
    srv = socket.socket()
    srv.bind((agent.addr, 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    try:
        register_web(agent, check={"TCP": "%s:%d" % (agent.addr, port), "Interval": "1s"})
        wait_until(lambda: agent.get("/v1/agent/checks").json()["service:web1"]["Status"]
                   == "passing", timeout=5, msg="tcp check passing")
    finally:
        srv.close()
    wait_until(lambda: agent.get("/v1/agent/checks").json()["service:web1"]["Status"]
               == "critical", timeout=5, msg="tcp check critical after close")


def test_http_check_runs_and_reports(agent):
    import http.server
    import threading
    code = {"v": 200}

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(code["v"])
            self.end_headers()
            self.wfile.write(b"fine")

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer((agent.addr, 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = "http://%s:%d/health" % (agent.addr, srv.server_port)
        register_web(agent, check={"HTTP": url, "Interval": "1s", "Timeout": "1s"})
        c = wait_until(lambda: (lambda c: c if c["Status"] == "passing" else None)(
            agent.get("/v1/agent/checks").json()["service:web1"]), timeout=5, msg="http passing")
        assert "200" in c["Output"]
        code["v"] = 429
        wait_until(lambda: agent.get("/v1/agent/checks").json()["service:web1"]["Status"]
                   == "warning", timeout=5, msg="http 429 warning")
        code["v"] = 503
        wait_until(lambda: agent.get("/v1/agent/checks").json()["service:web1"]["Status"]
                   == "critical", timeout=5, msg="http 503 critical")
    finally:
        srv.shutdown()
        srv.server_close()


def test_catalog_register_and_deregister_external_node(agent):
    body = {
        "Node": "ext1", "Address": "10.1.2.3", "NodeMeta": {"rack": "r1"},
        "Service": {"Service": "redis", "ID": "redis1", "Port": 6379, "Tags": ["primary"]},
        "Check": {"CheckID": "redis-alive", "Name": "Redis alive", "Status": "passing",
                  "ServiceID": "redis1"},
    }
    r = agent.put("/v1/catalog/register", body)
    assert r.status == 200 and r.json() is True, r.text
    nodes = {n["Node"]: n for n in agent.get("/v1/catalog/nodes").json()}
    assert nodes["ext1"]["Address"] == "10.1.2.3"
    assert nodes["ext1"]["Meta"] == {"rack": "r1"}
    h = agent.get("/v1/health/service/redis?passing").json()
    assert len(h) == 1 and h[0]["Checks"][0]["ServiceName"] == "redis"
    assert agent.get("/v1/catalog/datacenters").json() == ["dc1"]
    r = agent.put("/v1/catalog/deregister", {"Node": "ext1", "ServiceID": "redis1"})
    assert r.status == 200 and r.json() is True
    assert agent.get("/v1/catalog/service/redis").json() == []
    assert agent.get("/v1/health/node/ext1").json() == []
    r = agent.put("/v1/catalog/deregister", {"Node": "ext1"})
    assert "ext1" not in {n["Node"] for n in agent.get("/v1/catalog/nodes").json()}
    assert agent.get("/v1/catalog/node/ext1").json() is None


def test_self_members_status(agent):
    me = agent.get("/v1/agent/self").json()
    assert me["Config"]["NodeName"] == agent.node_name
    assert me["Config"]["Datacenter"] == "dc1"
    assert me["Config"]["Server"] is True
    members = agent.get("/v1/agent/members").json()
    assert len(members) == 1 and members[0]["Name"] == agent.node_name
    assert members[0]["Status"] == 1
    assert agent.get("/v1/status/leader").json() == "%s:8300" % agent.addr
    assert agent.get("/v1/status/peers").json() == ["%s:8300" % agent.addr]
    cfg = agent.get("/v1/operator/raft/configuration").json()
    assert len(cfg["Servers"]) == 1 and cfg["Servers"][0]["Leader"] is True


def test_stale_and_consistent_reads(agent):
    register_web(agent)
    assert agent.get("/v1/catalog/services?stale").status == 200
    assert agent.get("/v1/catalog/services?consistent").json()["web"] == ["v1"]
    r = agent.get("/v1/catalog/services?stale&consistent")
    assert r.status == 400
    assert agent.get("/v1/catalog/services?dc=other").status == 500
