"""The CLI against a real agent, and the config file (Consul keys, flags win, errors exit 1)."""
import json
import os
import re
import subprocess

from conftest import HERALD, ROOT, Agent, wait_until


def cli(agent, *args, env_addr=None, input=None):
    env = dict(os.environ)
    env.pop("CONSUL_HTTP_ADDR", None)
    env.pop("HERALD_HTTP_ADDR", None)
    argv = [HERALD] + list(args)
    if env_addr:
        env[env_addr] = "%s:8500" % agent.addr
    else:
        argv += ["-http-addr", "%s:8500" % agent.addr]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, input=input)


def test_version():
    r = subprocess.run([HERALD, "version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith("Herald v")


def test_services_register_with_flags_and_file(agent, tmpdir_path):
    r = cli(agent, "services", "register", "-name", "web", "-id", "web1", "-port", "8080",
            "-tag", "a", "-tag", "b")
    assert r.returncode == 0, r.stderr
    assert "Registered service: web" in r.stdout
    path = os.path.join(tmpdir_path, "svc.json")
    with open(path, "w") as f:
        json.dump({"service": {"name": "db", "id": "db1", "port": 5432,
                               "check": {"ttl": "30s"}}}, f)
    r = cli(agent, "services", "register", path)
    assert r.returncode == 0, r.stderr
    r = cli(agent, "catalog", "services")
    assert r.returncode == 0
    assert set(r.stdout.split()) >= {"consul", "db", "web"}
    r = cli(agent, "catalog", "service", "web", env_addr="CONSUL_HTTP_ADDR")
    assert r.returncode == 0, r.stderr
    assert "web1" in r.stdout and "8080" in r.stdout and "a,b" in r.stdout
    r = cli(agent, "catalog", "nodes", env_addr="HERALD_HTTP_ADDR")
    assert agent.node_name in r.stdout
    r = cli(agent, "services", "deregister", "web1")
    assert r.returncode == 0 and "Deregistered service: web1" in r.stdout
    r = cli(agent, "services", "deregister", "web1")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "404" in r.stderr


def test_services_register_bad_input_exits_1(agent):
    r = cli(agent, "services", "register", "-port", "80")
    assert r.returncode == 1
    assert "service name" in r.stderr.lower()
    r = cli(agent, "services", "register", "-name", "x", "-port", "99999")
    assert r.returncode == 1 and "port" in r.stderr


def test_kv_cli_roundtrip_export_import(agent, tmpdir_path):
    assert cli(agent, "kv", "put", "app/a", "hello").stdout.strip() == \
        "Success! Data written to: app/a"
    cli(agent, "kv", "put", "app/b", "world")
    r = cli(agent, "kv", "get", "app/a")
    assert r.returncode == 0 and r.stdout == "hello\n"
    r = cli(agent, "kv", "get", "app/none")
    assert r.returncode == 1 and "No key exists" in r.stderr
    r = cli(agent, "kv", "export", "app/")
    exported = json.loads(r.stdout)
    assert [e["key"] for e in exported] == ["app/a", "app/b"]
    r = cli(agent, "kv", "delete", "-recurse", "app/")
    assert r.returncode == 0
    assert cli(agent, "kv", "get", "app/a").returncode == 1
    path = os.path.join(tmpdir_path, "kv.json")
    with open(path, "w") as f:
        json.dump(exported, f)
    r = cli(agent, "kv", "import", path)
    assert r.returncode == 0, r.stderr
    assert cli(agent, "kv", "get", "app/b").stdout == "world\n"
    assert cli(agent, "kv", "delete", "app/b").returncode == 0


def test_members(agent):
    r = cli(agent, "members")
    assert r.returncode == 0
    assert agent.node_name in r.stdout and "alive" in r.stdout and "server" in r.stdout


def test_cli_without_agent_fails_cleanly():
    r = subprocess.run([HERALD, "members", "-http-addr", "127.0.0.1:1"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and r.stderr.count("\n") == 1


def test_config_file_services_and_keys(make_agent, tmpdir_path):
    a = make_agent(config={
        "datacenter": "east",
        "log_level": "info",
        "services": [{"name": "cfgsvc", "port": 9000, "tags": ["t"],
                      "checks": [{"ttl": "60s", "status": "passing"}]}],
    })
    a.start()
    wait_until(lambda: a.get("/v1/catalog/service/cfgsvc").json(), msg="config service")
    assert a.get("/v1/catalog/datacenters").json() == ["east"]
    assert a.get("/v1/agent/checks").json()["service:cfgsvc"]["Status"] == "passing"


def test_config_dir_and_flags_override(make_agent, tmpdir_path):
    d = os.path.join(tmpdir_path, "conf.d")
    os.mkdir(d)
    with open(os.path.join(d, "10-a.json"), "w") as f:
        json.dump({"datacenter": "fromfile"}, f)
    a = make_agent(args=["-config-dir", d, "-datacenter", "fromflag"]).start()
    assert a.get("/v1/catalog/datacenters").json() == ["fromflag"]


def _run_agent_expect_fail(tmpdir_path, config=None, args=()):
    a = Agent(tmpdir_path, args=args, config=config)
    r = subprocess.run(a.argv(), capture_output=True, text=True, timeout=30)
    return r


def test_config_errors_exit_1_naming_the_key(tmpdir_path):
    cases = [
        ({"bogus_key": 1}, "bogus_key"),
        ({"ports": {"http": "x"}}, "ports.http"),
        ({"ports": {"nope": 1}}, "ports.nope"),
        ({"log_level": "loud"}, "log_level"),
        ({"services": [5]}, "services"),
        ({"datacenter": "not a label"}, "datacenter"),
    ]
    for cfg, word in cases:
        r = _run_agent_expect_fail(tmpdir_path, config=cfg)
        assert r.returncode == 1, (cfg, r.stderr)
        assert word in r.stderr, (cfg, r.stderr)
        assert r.stderr.strip().count("\n") == 0, r.stderr


def test_bad_flags_exit_1(tmpdir_path):
    for args, word in ((["-http-port", "0"], "http-port"), (["-nosuchflag"], "nosuchflag"),
                       (["-node"], "node")):
        r = _run_agent_expect_fail(tmpdir_path, args=args)
        assert r.returncode == 1 and word in r.stderr, (args, r.stderr)
    r = subprocess.run([HERALD, "agent", "-server"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "data" in r.stderr.lower()


def test_service_config_errors_are_reported_at_start(tmpdir_path):
    r = _run_agent_expect_fail(tmpdir_path, config={"services": [{"port": 1}]})
    assert r.returncode == 1 and "service" in r.stderr.lower()


def _agent_help():
    r = subprocess.run([HERALD, "agent", "-h"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return r.stdout


def test_agent_help_lists_the_options_and_the_readme_names_every_flag():
    text = _agent_help()
    for name in ("-dev", "-config-file", "-config-dir", "-http-port, ports.http",
                 "-node, node_name", "-recursor, recursors", "-join ", "limits.http_max_conns",
                 "dns_config.recursor_timeout", "performance.raft_multiplier", "services"):
        assert name in text, (name, text)
    flags = re.findall(r"^  -([a-z-]+)", text, re.M)
    assert len(flags) >= 25, text
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("## Configuration"):readme.index("## HTTP API")]
    missing = [f for f in flags if "`-%s`" % f not in section]
    assert not missing, missing


def test_out_of_range_flag_and_key_exit_1_naming_each(tmpdir_path):
    """Every option that -h shows with a flag, a key and an integer range: one past its top is
    refused given as the flag and given as the key, each time in one line naming it."""
    rows = re.findall(r"^  -([a-z-]+), ([a-z_.]+) +(?:a port number )?(\d+)\.\.(\d+)",
                      _agent_help(), re.M)
    assert {r[0] for r in rows} >= {"bootstrap-expect", "http-port", "dns-port", "dns-workers"}
    for flag, key, _, top in rows:
        bad = int(top) + 1
        r = _run_agent_expect_fail(tmpdir_path, args=["-" + flag, str(bad)])
        assert r.returncode == 1 and "-" + flag in r.stderr, (flag, r.stderr)
        assert r.stderr.strip().count("\n") == 0, r.stderr
        cfg = bad
        for part in reversed(key.split(".")):
            cfg = {part: cfg}
        r = _run_agent_expect_fail(tmpdir_path, config=cfg)
        assert r.returncode == 1 and '"%s"' % key in r.stderr, (key, r.stderr)
        assert r.stderr.strip().count("\n") == 0, r.stderr


def test_dev_logs_queries_at_debug_unless_a_level_is_given(make_agent):
    """-dev logs every DNS query (debug); -dev -log-level info (flag or key) does not."""
    from conftest import dig
    quiet = make_agent(args=["-log-level", "info"]).start()
    keyed = make_agent(config={"log_level": "INFO"}).start()
    loud = make_agent().start()
    for a in (quiet, keyed, loud):
        assert "status: NXDOMAIN" in dig(a, "nosuch.node.consul", "A")
    wait_until(lambda: "nosuch.node.consul" in loud.read_log(), timeout=10)
    for a in (quiet, keyed):
        # The loud agent logged its query by now; these answered theirs before it was asked.
        assert "nosuch.node.consul" not in a.read_log(), a.read_log()
