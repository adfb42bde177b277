"""`herald watch` (issue 13, item 4), as `consul watch`: blocking queries on one view; the first
answer and every change go to stdout as JSON (indented as Consul's), or to a handler's stdin
(through sh -c, with CONSUL_INDEX set). Each view is checked against the HTTP API's own answer.
Every wait is bounded; every watch is stopped by pid."""
import base64
import glob
import json
import os
import subprocess

from conftest import HERALD, sanitizer_env, wait_until


class Watch:
    def __init__(self, agent, args, tmp, name):
        self.out_path = os.path.join(tmp, "watch-%s.out" % name)
        self.err_path = os.path.join(tmp, "watch-%s.err" % name)
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([HERALD, "watch", "-http-addr", "%s:8500" % agent.addr]
                                     + list(args), stdout=self.out, stderr=self.err,
                                     env=sanitizer_env())

    def docs(self):
        """The JSON documents printed so far (one per change)."""
        with open(self.out_path) as f:
            text = f.read()
        dec, at, out = json.JSONDecoder(), 0, []
        while True:
            while at < len(text) and text[at].isspace():
                at += 1
            if at >= len(text):
                return out
            try:
                v, at = dec.raw_decode(text, at)
            except ValueError:
                return out  # a document still being written
            out.append(v)

    def wait_docs(self, n, timeout=15):
        return wait_until(lambda: len(self.docs()) >= n and self.docs(), timeout=timeout,
                          msg="%d watch outputs" % n)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.out.close()
        self.err.close()
        with open(self.err_path) as f:
            return f.read()


def test_watch_key_prints_first_result_and_each_change(agent, tmpdir_path):
    w = Watch(agent, ["-type", "key", "-key", "app/cfg"], tmpdir_path, "key")
    try:
        # the first result too: the key does not exist yet
        assert w.wait_docs(1) == [None]
        assert agent.put("/v1/kv/app/cfg?flags=18446744073709551615", "one").json() is True
        docs = w.wait_docs(2)
        assert docs[1] == agent.get("/v1/kv/app/cfg").json()[0]
        assert docs[1]["Flags"] == 2**64 - 1 and base64.b64decode(docs[1]["Value"]) == b"one"
        # a write elsewhere (another key) is no change of this view
        agent.put("/v1/kv/app/other", "x")
        agent.put("/v1/kv/app/cfg", "two")
        docs = w.wait_docs(3)
        assert base64.b64decode(docs[2]["Value"]) == b"two"
        assert len(docs) == 3
        agent.delete("/v1/kv/app/cfg")
        assert w.wait_docs(4)[3] is None
        assert len(w.docs()) == 4
    finally:
        assert "Error" not in w.stop()
    # -once: the first result, then exit 0
    r = subprocess.run([HERALD, "watch", "-http-addr", "%s:8500" % agent.addr, "-once",
                        "-type", "key", "-key", "app/other"], capture_output=True, timeout=20,
                       env=sanitizer_env())
    assert r.returncode == 0, r.stderr
    assert base64.b64decode(json.loads(r.stdout)["Value"]) == b"x"


def test_watch_keyprefix_runs_handler_with_json_on_stdin(agent, tmpdir_path):
    d = tmpdir_path
    handler = ('cat > %s/tmp.$$ && mv %s/tmp.$$ %s/call-$(printf %%020d $CONSUL_INDEX).json'
               % (d, d, d))
    w = Watch(agent, ["-type", "keyprefix", "-prefix", "cfg/", handler], d, "kp")

    def calls():
        out = []
        for p in sorted(glob.glob(os.path.join(d, "call-*.json"))):
            with open(p) as f:
                out.append((int(os.path.basename(p)[5:-5]), json.load(f)))
        return out
    try:
        wait_until(lambda: len(calls()) == 1, timeout=15, msg="first handler call")
        assert calls()[0][1] is None  # nothing under the prefix yet
        agent.put("/v1/kv/cfg/a", "1")
        wait_until(lambda: len(calls()) == 2, timeout=15, msg="second handler call")
        agent.put("/v1/kv/cfg/b", "2")
        wait_until(lambda: len(calls()) == 3, timeout=15, msg="third handler call")
        r = agent.get("/v1/kv/cfg/?recurse")
        idx, last = calls()[2]
        assert last == r.json() and idx == r.index
        assert [e["Key"] for e in calls()[1][1]] == ["cfg/a"]
    finally:
        assert "Error" not in w.stop()


def test_watch_services_nodes_service_checks(agent, tmpdir_path):
    d = tmpdir_path
    ws = {name: Watch(agent, args, d, name) for name, args in (
        ("services", ["-type", "services"]),
        ("nodes", ["-type", "nodes"]),
        ("service", ["-type", "service", "-service", "web", "-passingonly"]),
        ("checks", ["-type", "checks", "-service", "web"]),
    )}
    try:
        assert ws["services"].wait_docs(1)[0] == {"consul": []}
        assert [n["Node"] for n in ws["nodes"].wait_docs(1)[0]] == [agent.node_name]
        assert ws["service"].wait_docs(1) == [[]]
        assert ws["checks"].wait_docs(1) == [[]]
        r = agent.put("/v1/agent/service/register", {
            "Name": "web", "Tags": ["v1"], "Port": 80,
            "Check": {"CheckID": "web-ttl", "TTL": "30s", "Status": "passing"}})
        assert r.status == 200, r.text
        docs = ws["services"].wait_docs(2)
        assert docs[1] == agent.get("/v1/catalog/services").json() and docs[1]["web"] == ["v1"]
        svc = ws["service"].wait_docs(2)[1]
        assert [e["Service"]["ID"] for e in svc] == ["web"]
        chk = ws["checks"].wait_docs(2)[-1]
        assert [c["CheckID"] for c in chk] == ["web-ttl"]
        # the check fails: -passingonly drops the instance, the checks view shows it critical
        assert agent.put("/v1/agent/check/fail/web-ttl").status == 200
        wait_until(lambda: ws["service"].docs()[-1] == [], timeout=15,
                   msg="critical instance gone from -passingonly")
        wait_until(lambda: ws["checks"].docs()[-1][0]["Status"] == "critical", timeout=15,
                   msg="critical check")
    finally:
        for w in ws.values():
            assert "Error" not in w.stop()


def test_watch_event_passes_only_new_events(agent, tmpdir_path):
    d = tmpdir_path
    agent.put("/v1/event/fire/deploy", b"old")
    w = Watch(agent, ["-type", "event", "-name", "deploy"], d, "ev")
    try:
        first = w.wait_docs(1)[0]
        assert [base64.b64decode(e["Payload"]) for e in first] == [b"old"]
        ev = agent.put("/v1/event/fire/deploy", b"new").json()
        agent.put("/v1/event/fire/other", b"no")
        docs = w.wait_docs(2)
        assert [e["ID"] for e in docs[1]] == [ev["ID"]]
        assert base64.b64decode(docs[1][0]["Payload"]) == b"new"
    finally:
        assert "Error" not in w.stop()


def test_watch_bad_usage(agent):
    for args in (["-type", "bogus"], ["-type", "key"], ["-type", "service"],
                 ["-nope"], ["-type", "checks", "-service", "a", "-state", "critical"]):
        r = subprocess.run([HERALD, "watch", "-http-addr", "%s:8500" % agent.addr] + args,
                           capture_output=True, timeout=20, env=sanitizer_env())
        assert r.returncode == 1 and r.stderr.startswith(b"Error: "), (args, r.stderr)
