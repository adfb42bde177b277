"""Checks, complete (issue 12, item 3), through the real binary and real processes: script
checks (Nagios exit codes, output, the timeout that kills the whole process group, Consul's
enable_script_checks / enable_local_script_checks rules), UDP checks, HTTP checks with method,
headers and body, Consul's success/failure counters, maintenance mode and the agent's
health-by-service endpoints. Every wait is bounded; helper servers run in threads of the test
and stop at its end."""
import http.server
import os
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import HERALD, dns_query, wait_until

SH = "/bin/sh"
REMOTE_REFUSED = ("Scripts are disabled on this agent from remote calls; to enable, configure "
                  "'enable_script_checks' to true")


def check_of(agent, check_id):
    checks = agent.get("/v1/agent/checks").json()
    return checks.get(check_id)


def wait_status(agent, check_id, status, output="", timeout=15):
    """Waits for the check's status (and for `output` in its output: a new check is critical
    with no output until its first run)."""
    def ok():
        c = check_of(agent, check_id) or {}
        return c.get("Status") == status and output in c.get("Output", "") and c

    return wait_until(ok, timeout=timeout, msg="check %s %s %r" % (check_id, status, output))


def register_check(agent, body, status=200):
    r = agent.put("/v1/agent/check/register", body)
    assert r.status == status, r.text
    return r


def pgrp_alive(pgid):
    """Processes whose process group is pgid (from /proc)."""
    alive = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            alive.append(int(pid))
    return alive


# ---- script checks ---------------------------------------------------------------------------

def test_script_check_status_follows_nagios_exit_codes_with_its_output(make_agent, tmpdir_path):
    agent = make_agent(args=["-enable-script-checks"]).start()
    code = os.path.join(tmpdir_path, "code")
    with open(code, "w") as f:
        f.write("0")
    # argv run directly: $0 and $1 are the words after the script, no shell of ours in between
    args = [SH, "-c", 'echo "out of $0"; echo "err" >&2; exit "$(cat "$1")"', "probe", code]
    register_check(agent, {"Name": "script", "Args": args, "Interval": "1s"})
    c = wait_status(agent, "script", "passing")
    assert c["Output"] == "out of probe\nerr\n"
    assert c["Type"] == "script" and c["Definition"]["ScriptArgs"] == args
    health = agent.get("/v1/health/node/" + agent.node_name).json()
    assert [h["Output"] for h in health if h["CheckID"] == "script"] == ["out of probe\nerr\n"]

    for value, status in (("1", "warning"), ("2", "critical"), ("0", "passing"),
                          ("77", "critical")):
        with open(code, "w") as f:
            f.write(value)
        wait_status(agent, "script", status)


def test_script_output_keeps_its_last_4k(make_agent):
    agent = make_agent(args=["-enable-script-checks"]).start()
    # 10000 bytes of "a" then a marker: the marker must survive, the start is cut
    args = [SH, "-c", "head -c 10000 /dev/zero | tr '\\0' a; echo END"]
    register_check(agent, {"Name": "big", "ScriptArgs": args, "Interval": "1s"})
    c = wait_status(agent, "big", "passing")
    assert c["Output"].startswith("Captured 4096 of 10004 bytes\n...\n")
    assert c["Output"].endswith("aaaaEND\n")
    assert len(c["Output"]) == len("Captured 4096 of 10004 bytes\n...\n") + 4096


def test_script_past_its_timeout_is_killed_with_its_children(make_agent, tmpdir_path):
    agent = make_agent(args=["-enable-script-checks"]).start()
    pids = os.path.join(tmpdir_path, "pids")
    args = [SH, "-c", 'echo $$ >> "$0"; echo started; sleep 100 & sleep 100', pids]
    register_check(agent, {"Name": "slow", "Args": args, "Interval": "1s", "Timeout": "1s"})
    c = wait_status(agent, "slow", "critical", "Timed out")
    assert c["Output"] == "Timed out (1s) running check\n\nstarted\n"
    with open(pids) as f:
        first = int(f.readline())
    # the script led its own group: the timeout killed the shell and both sleeps
    wait_until(lambda: not pgrp_alive(first), timeout=5, msg="group %d gone" % first)
    assert agent.stop() == 0  # a script running at the stop is killed and reaped too
    with open(pids) as f:
        groups = [int(x) for x in f.read().split()]
    wait_until(lambda: not any(pgrp_alive(g) for g in groups), timeout=5,
               msg="no script group left")


def test_no_more_scripts_run_at_once_than_max_running_scripts(make_agent, tmpdir_path):
    agent = make_agent(args=["-enable-script-checks"], config={"max_running_scripts": 1}).start()
    pids = os.path.join(tmpdir_path, "pids")
    for name in ("a", "b"):
        args = [SH, "-c", 'echo $$ >> "$0"; sleep 1', pids]
        register_check(agent, {"Name": name, "Args": args, "Interval": "1s", "Timeout": "10s"})
    most = 0
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with open(pids) as f:
                groups = {int(x) for x in f.read().split()}
        except OSError:
            groups = set()
        most = max(most, sum(1 for g in groups if pgrp_alive(g)))
        a, b = check_of(agent, "a"), check_of(agent, "b")
        if a["Status"] == "passing" and b["Status"] == "passing" and len(groups) >= 4:
            break
        time.sleep(0.05)  # the sampling interval of this bounded watch
    assert check_of(agent, "a")["Status"] == "passing"
    assert check_of(agent, "b")["Status"] == "passing"
    assert most == 1


def test_script_checks_over_http_are_refused_unless_enable_script_checks(make_agent):
    for args in ([], ["-enable-local-script-checks"]):
        agent = make_agent(args=args).start()
        r = register_check(agent, {"Name": "x", "Args": ["/bin/true"], "Interval": "1s"},
                           status=500)  # Consul's AddCheck error: a plain error, so 500
        assert REMOTE_REFUSED in r.text
        r = agent.put("/v1/agent/service/register",
                      {"Name": "web", "Check": {"Args": ["/bin/true"], "Interval": "1s"}})
        assert r.status == 500 and REMOTE_REFUSED in r.text
        assert "web" not in agent.get("/v1/agent/services").json()
        assert check_of(agent, "x") is None
        assert agent.stop() == 0


def test_script_check_from_a_config_file_runs_with_enable_local_script_checks(make_agent):
    svc = {"name": "cfgweb", "port": 80,
           "check": {"args": [SH, "-c", "echo local; exit 1"], "interval": "1s"}}
    agent = make_agent(config={"enable_local_script_checks": True, "services": [svc]}).start()
    c = wait_status(agent, "service:cfgweb", "warning")
    assert c["Output"] == "local\n"
    # the same agent still refuses one over HTTP
    r = register_check(agent, {"Name": "x", "Args": ["/bin/true"], "Interval": "1s"}, 500)
    assert REMOTE_REFUSED in r.text


def test_node_script_check_from_a_config_files_check_key(make_agent):
    # Consul's documented form: a top-level "check" (and "checks") of the node itself
    config = {"enable_local_script_checks": True,
              "check": {"id": "mem-util", "name": "Memory utilization",
                        "args": [SH, "-c", "echo mem ok"], "interval": "1s", "timeout": "2s"},
              "checks": [{"name": "disk", "args": [SH, "-c", "echo full; exit 2"],
                          "interval": "1s"}]}
    agent = make_agent(config=config).start()
    c = wait_status(agent, "mem-util", "passing", "mem ok")
    assert c["Name"] == "Memory utilization" and c["ServiceID"] == ""
    wait_status(agent, "disk", "critical", "full")
    # node checks: they count for every instance of the node
    h = agent.get("/v1/health/node/" + agent.node_name).json()
    assert {x["CheckID"] for x in h} >= {"serfHealth", "mem-util", "disk"}


def test_script_check_in_a_config_file_without_the_option_stops_the_start(make_agent):
    svc = {"name": "cfgweb", "check": {"args": ["/bin/true"], "interval": "1s"}}
    for config in ({"services": [svc]}, {"check": {"name": "c", "args": ["/bin/true"],
                                                    "interval": "1s"}}):
        agent = make_agent(config=config)
        agent.expect_fail = True
        agent.start(wait=False)
        assert agent.proc.wait(20) != 0
        assert ("Scripts are disabled on this agent; to enable, configure "
                "'enable_script_checks' or 'enable_local_script_checks' to true") in \
            agent.read_log()


def test_stored_script_check_does_not_run_once_scripts_are_disabled(make_agent, tmpdir_path):
    data = os.path.join(tmpdir_path, "data")
    ran = os.path.join(tmpdir_path, "ran")
    agent = make_agent(args=["-enable-script-checks"], data_dir=data).start()
    args = [SH, "-c", 'echo x >> "$0"', ran]
    register_check(agent, {"Name": "s", "Args": args, "Interval": "1s"})
    wait_status(agent, "s", "passing")
    assert agent.stop() == 0
    # the catalog keeps the definition; an agent without the option must not run it
    again = make_agent(data_dir=data, addr=agent.addr).start()
    c = wait_status(again, "s", "critical", "Scripts are disabled on this agent")
    with open(ran) as f:
        runs = len(f.read().split())
    assert c["Definition"]["ScriptArgs"] == args
    deadline = time.time() + 2.5  # watch a few intervals: the script never runs again
    while time.time() < deadline:
        with open(ran) as f:
            assert len(f.read().split()) == runs
        time.sleep(0.1)  # the sampling interval of this bounded watch


def test_script_that_cannot_start_is_critical(make_agent, tmpdir_path):
    agent = make_agent(args=["-enable-script-checks"]).start()
    missing = os.path.join(tmpdir_path, "no-such-plugin")
    register_check(agent, {"Name": "gone", "Args": [missing], "Interval": "1s"})
    c = wait_status(agent, "gone", "critical", missing)
    assert missing in c["Output"]


# ---- UDP -------------------------------------------------------------------------------------

@pytest.fixture
def udp_responder():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    seen = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, peer = s.recvfrom(2048)
            except socket.timeout:
                continue
            seen.append(data)
            s.sendto(b"pong", peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield s.getsockname()[1], seen
    stop.set()
    t.join(5)
    s.close()


def closed_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_udp_check_passes_against_a_responder_and_fails_on_a_closed_port(agent, udp_responder):
    port, seen = udp_responder
    register_check(agent, {"Name": "udp-up", "UDP": "127.0.0.1:%d" % port, "Interval": "1s",
                           "Timeout": "1s"})
    c = wait_status(agent, "udp-up", "passing")
    assert c["Output"] == "UDP connect 127.0.0.1:%d: Success" % port
    assert c["Type"] == "udp" and c["Definition"]["UDP"] == "127.0.0.1:%d" % port
    assert seen, "the responder got the check's datagram"

    closed = closed_udp_port()
    register_check(agent, {"Name": "udp-down", "UDP": "127.0.0.1:%d" % closed,
                           "Interval": "1s", "Timeout": "3s"})
    c = wait_status(agent, "udp-down", "critical", "UDP")
    assert "connection refused" in c["Output"]


# ---- HTTP extras and counters ----------------------------------------------------------------

class Recorder:
    """A Python HTTP server answering with .code and recording every request."""

    def __init__(self):
        self.code = 200
        self.requests = []
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def handle_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec.requests.append((self.command, self.path, dict(self.headers), body,
                                     rec.code))
                self.send_response(rec.code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = do_PUT = handle_any

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def served(self, code):
        return sum(1 for r in self.requests if r[4] == code)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def recorder():
    r = Recorder()
    yield r
    r.close()


def test_http_check_sends_method_headers_and_body(agent, recorder):
    url = "http://127.0.0.1:%d/health?x=1" % recorder.port
    register_check(agent, {"Name": "web", "HTTP": url, "Method": "POST", "Interval": "1s",
                           "Header": {"X-Token": ["abc", "def"], "Host": ["svc.example"]},
                           "Body": '{"ping": true}', "TLSSkipVerify": True})
    wait_status(agent, "web", "passing")
    method, path, headers, body, _ = recorder.requests[0]
    assert method == "POST" and path == "/health?x=1"
    assert body == b'{"ping": true}'
    assert headers["Host"] == "svc.example"
    assert headers["User-Agent"] == "Consul Health Check"
    raw = [v for k, v in headers.items() if k.lower() == "x-token"]
    assert raw  # http.server folds repeated headers into the dict's last value
    d = agent.get("/v1/agent/checks").json()["web"]["Definition"]
    assert d["HTTP"] == url and d["Method"] == "POST" and d["Body"] == '{"ping": true}'
    assert d["Header"] == {"X-Token": ["abc", "def"], "Host": ["svc.example"]}
    assert d["TLSSkipVerify"] is True


def test_success_before_passing_and_failures_before_critical_count(agent, recorder):
    recorder.code = 500
    url = "http://127.0.0.1:%d/" % recorder.port
    register_check(agent, {"Name": "counted", "HTTP": url, "Interval": "1s",
                           "SuccessBeforePassing": 3, "FailuresBeforeWarning": 1,
                           "FailuresBeforeCritical": 2})
    # the first result counts at once (Consul's counters start at their thresholds)
    wait_status(agent, "counted", "critical", "500")
    recorder.code = 200
    wait_until(lambda: recorder.served(200) >= 2, timeout=10, msg="two successes")
    assert check_of(agent, "counted")["Status"] == "critical"
    wait_status(agent, "counted", "passing")
    assert recorder.served(200) >= 3

    recorder.code = 500
    before = recorder.served(500)
    wait_status(agent, "counted", "warning")  # one failure: warning
    wait_status(agent, "counted", "critical")  # two in a row: critical
    assert recorder.served(500) - before >= 2


# ---- bad input -------------------------------------------------------------------------------

BAD_DEFINITIONS = [
    ({"Args": "/bin/true"}, "Args"),
    ({"Args": ["/bin/true", 3]}, "Args"),
    ({"Args": [""]}, "Args"),
    ({"ScriptArgs": {"a": 1}}, "ScriptArgs"),
    ({"HTTP": "http://127.0.0.1:1/", "SuccessBeforePassing": -1}, "SuccessBeforePassing"),
    ({"HTTP": "http://127.0.0.1:1/", "FailuresBeforeCritical": "2"}, "FailuresBeforeCritical"),
    ({"HTTP": "http://127.0.0.1:1/", "FailuresBeforeWarning": 3, "FailuresBeforeCritical": 2},
     "FailuresBeforeWarning"),
    ({"HTTP": "http://127.0.0.1:1/", "Header": ["a"]}, "Header"),
    ({"HTTP": "http://127.0.0.1:1/", "Header": {"X": "v"}}, "Header"),
    ({"HTTP": "http://127.0.0.1:1/", "Header": {"X": ["a\r\nInjected: 1"]}}, "X"),
    ({"HTTP": "http://127.0.0.1:1/", "TLSSkipVerify": "yes"}, "TLSSkipVerify"),
    ({"UDP": 53}, "UDP"),
    ({"UDP": "127.0.0.1:53", "TCP": "127.0.0.1:53"}, "UDP"),
]


def test_bad_check_definitions_answer_400_naming_the_field(make_agent):
    agent = make_agent(args=["-enable-script-checks"]).start()
    for extra, field in BAD_DEFINITIONS:
        body = {"Name": "bad", "Interval": "1s"}
        body.update(extra)
        r = agent.put("/v1/agent/check/register", body)
        assert r.status == 400, (extra, r.text)
        assert field in r.text, (extra, r.text)
        svc = {"Name": "web", "Check": body}
        r = agent.put("/v1/agent/service/register", svc)
        assert r.status == 400 and field in r.text, (extra, r.text)
    assert check_of(agent, "bad") is None
    assert "web" not in agent.get("/v1/agent/services").json()


# ---- maintenance mode ------------------------------------------------------------------------

def web_addresses(agent):
    r = dns_query(agent, "web.service.consul", "A")
    return sorted(rd.address for rrset in r.answer for rd in rrset)


def herald_cli(agent, *args):
    return subprocess.run([HERALD, *args, "-http-addr", "%s:8500" % agent.addr],
                          capture_output=True, text=True, timeout=20)


def test_maintenance_hides_an_instance_or_the_node_from_dns_and_restores(agent):
    r = agent.put("/v1/agent/service/register", {"Name": "web", "ID": "web1", "Port": 80})
    assert r.status == 200
    wait_until(lambda: web_addresses(agent) == [agent.addr], msg="web in DNS")

    r = agent.put("/v1/agent/service/maintenance/web1?enable=true&reason=" +
                  urllib.parse.quote("deploy 42"))
    assert r.status == 200, r.text
    c = check_of(agent, "_service_maintenance:web1")
    assert c["Status"] == "critical" and c["Notes"] == "deploy 42"
    assert c["Name"] == "Service Maintenance Mode" and c["ServiceID"] == "web1"
    wait_until(lambda: web_addresses(agent) == [], msg="web hidden")
    h = agent.get("/v1/agent/health/service/id/web1")
    assert h.status == 503 and h.json()["AggregatedStatus"] == "maintenance"
    # enabling again changes nothing
    assert agent.put("/v1/agent/service/maintenance/web1?enable=1").status == 200
    assert check_of(agent, "_service_maintenance:web1")["Notes"] == "deploy 42"
    assert agent.put("/v1/agent/service/maintenance/web1?enable=false").status == 200
    assert check_of(agent, "_service_maintenance:web1") is None
    wait_until(lambda: web_addresses(agent) == [agent.addr], msg="web back")

    # the node, through the CLI
    r = herald_cli(agent, "maint", "-enable")
    assert r.returncode == 0, r.stderr
    c = check_of(agent, "_node_maintenance")
    assert c["Name"] == "Node Maintenance Mode" and c["Status"] == "critical"
    assert c["Notes"] == ("Maintenance mode is enabled for this node, but no reason was "
                          "provided. This is a default message.")
    wait_until(lambda: web_addresses(agent) == [], msg="node hidden")
    r = herald_cli(agent, "maint", "-disable")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: web_addresses(agent) == [agent.addr], msg="node back")
    r = herald_cli(agent, "maint", "-enable", "-service", "web1", "-reason", "a&b=c")
    assert r.returncode == 0, r.stderr
    assert check_of(agent, "_service_maintenance:web1")["Notes"] == "a&b=c"
    assert herald_cli(agent, "maint", "-disable", "-service", "web1").returncode == 0
    assert check_of(agent, "_service_maintenance:web1") is None


def test_maintenance_bad_requests(agent):
    r = agent.put("/v1/agent/maintenance")
    assert r.status == 400 and "Missing value for enable" in r.text
    r = agent.put("/v1/agent/maintenance?enable=maybe")
    assert r.status == 400 and 'Invalid value for enable: "maybe"' in r.text
    r = agent.put("/v1/agent/service/maintenance/nope?enable=true")
    assert r.status == 404 and 'No service registered with ID "nope"' in r.text
    r = agent.put("/v1/agent/service/maintenance/?enable=true")
    assert r.status == 400 and "Missing service ID" in r.text
    assert agent.get("/v1/agent/maintenance?enable=true").status == 405
    r = herald_cli(agent, "maint")
    assert r.returncode != 0 and "usage" in r.stderr
    assert check_of(agent, "_node_maintenance") is None


# ---- /v1/agent/health/service ---------------------------------------------------------------

def test_agent_health_service_answers_load_balancer_status_codes(agent):
    for sid in ("web1", "web2"):
        r = agent.put("/v1/agent/service/register",
                      {"Name": "web", "ID": sid, "Port": 80, "Check": {"TTL": "60s"}})
        assert r.status == 200
        assert agent.put("/v1/agent/check/pass/service:" + sid).status == 200

    r = agent.get("/v1/agent/health/service/id/web1")
    assert r.status == 200
    info = r.json()
    assert info["AggregatedStatus"] == "passing"
    assert info["Service"]["ID"] == "web1" and info["Service"]["Service"] == "web"
    # the agent's own checks of the service and of the node, as Consul's local state: not the
    # leader's serfHealth (catalog only)
    assert [c["CheckID"] for c in info["Checks"]] == ["service:web1"]
    r = agent.get("/v1/agent/health/service/id/web1?format=text")
    assert r.status == 200 and r.text == "passing"
    assert r.headers["Content-Type"].startswith("text/plain")
    r = agent.get("/v1/agent/health/service/name/web")
    assert r.status == 200 and [i["Service"]["ID"] for i in r.json()] == ["web1", "web2"]

    assert agent.put("/v1/agent/check/warn/service:web1").status == 200
    assert agent.get("/v1/agent/health/service/id/web1").status == 429
    assert agent.get("/v1/agent/health/service/id/web2").status == 200
    r = agent.get("/v1/agent/health/service/name/web?format=text")
    assert r.status == 429 and r.text == "warning"
    assert agent.put("/v1/agent/check/fail/service:web2").status == 200
    r = agent.get("/v1/agent/health/service/name/web", headers={"Accept": "text/plain"})
    assert r.status == 503 and r.text == "critical"
    assert agent.get("/v1/agent/health/service/id/web2").json()["AggregatedStatus"] == "critical"

    r = agent.get("/v1/agent/health/service/id/nope")
    assert r.status == 404
    assert r.json() == {"AggregatedStatus": "critical", "Checks": None, "Service": None}
    r = agent.get("/v1/agent/health/service/id/nope?format=text")
    assert r.status == 404 and r.text == "ServiceId nope not found"
    r = agent.get("/v1/agent/health/service/name/nope")
    assert r.status == 404 and r.json() == []
    r = agent.get("/v1/agent/health/service/name/nope?format=text")
    assert r.status == 404 and r.text == "ServiceName nope Not Found"
