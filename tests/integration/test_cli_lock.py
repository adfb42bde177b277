"""`herald lock` (issue 13, item 4), as `consul lock`: a child runs while its `herald lock`
holds PREFIX/.lock, or one of the N slots of a semaphore (-n N), and is stopped when the lock is
lost. The children record what they do in a log file and hold until the test creates their
release file, so every step is observed, never timed; each child claims a slot directory
(mkdir is atomic) and exits 99 if it cannot, so any overlap beyond the limit shows in an exit
code. Every wait is bounded; every process is stopped by pid."""
import base64
import json
import os
import signal
import subprocess
import time

from conftest import HERALD, sanitizer_env, wait_until

# A child: claims one of `slots` slot directories (fails with 99 when all are taken: the
# lock let too many in), logs "start ID", waits for its release file, logs "end ID".
CHILD = ('i=0; while [ $i -lt {slots} ]; do mkdir {d}/slot$i 2>/dev/null && break; '
         'i=$((i+1)); done; [ $i -lt {slots} ] || exit 99; echo start {id} >> {d}/log; '
         'while [ ! -e {d}/release-{id} ]; do sleep 0.02; done; echo end {id} >> {d}/log; '
         'rmdir {d}/slot$i')


class Lock:
    def __init__(self, agent, args, tmp, name):
        self.out_path = os.path.join(tmp, "lock-%s.out" % name)
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen([HERALD, "lock", "-http-addr", "%s:8500" % agent.addr]
                                     + list(args), stdout=self.out, stderr=subprocess.STDOUT,
                                     env=sanitizer_env())

    def wait(self, timeout=20):
        try:
            rc = self.proc.wait(timeout)
        finally:
            self.out.close()
        return rc

    def output(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.out.close()


def child(d, i, slots=1):
    return CHILD.format(d=d, id=i, slots=slots)


def log(d):
    try:
        with open(os.path.join(d, "log")) as f:
            return f.read().split("\n")[:-1]
    except FileNotFoundError:
        return []


def started(d):
    return [line.split()[1] for line in log(d) if line.startswith("start ")]


def sessions(agent):
    return agent.get("/v1/session/list").json()


def kv_tree(agent, prefix):
    r = agent.get("/v1/kv/%s?recurse" % prefix)
    return [] if r.status == 404 else r.json()


def max_running(d):
    running = peak = 0
    for line in log(d):
        running += 1 if line.startswith("start ") else -1
        peak = max(peak, running)
    return peak


def test_lock_mutual_exclusion(agent, tmpdir_path):
    d = tmpdir_path
    locks = {}
    try:
        for i in ("a", "b"):
            locks[i] = Lock(agent, ["svc/excl", child(d, i)], d, i)
        # both have their session; one runs its child, the other waits on the lock
        wait_until(lambda: len(sessions(agent)) == 2 and len(started(d)) == 1, timeout=20,
                   msg="two sessions, one child started")
        first = started(d)[0]
        other = "b" if first == "a" else "a"
        [key] = kv_tree(agent, "svc/excl")
        assert key["Key"] == "svc/excl/.lock" and key["Flags"] == 0x2ddccbc058a50c18
        holder = key["Session"]
        assert holder in [s["ID"] for s in sessions(agent)]
        assert started(d) == [first]
        open(os.path.join(d, "release-" + first), "w").close()
        assert locks[first].wait() == 0, locks[first].output()
        wait_until(lambda: started(d) == [first, other], timeout=20, msg="second child runs")
        [key] = kv_tree(agent, "svc/excl")
        # a new acquisition (LockIndex 1 or 2: the first one's cleanup may delete the free key
        # before the second takes it, as Consul's Destroy may)
        assert key["Session"] != holder and key["LockIndex"] in (1, 2)
        open(os.path.join(d, "release-" + other), "w").close()
        assert locks[other].wait() == 0, locks[other].output()
        assert log(d) == ["start " + first, "end " + first, "start " + other, "end " + other]
        # released and cleaned up: no key, no session
        assert kv_tree(agent, "svc/excl") == [] and sessions(agent) == []
    finally:
        for lk in locks.values():
            lk.stop()


def test_lock_semaphore_two_of_three(agent, tmpdir_path):
    d = tmpdir_path
    locks = {}
    try:
        for i in ("a", "b", "c"):
            locks[i] = Lock(agent, ["-n", "2", "svc/sem", child(d, i, slots=2)], d, i)
        wait_until(lambda: len(sessions(agent)) == 3 and len(started(d)) == 2, timeout=20,
                   msg="three contenders, two children started")
        tree = {e["Key"]: e for e in kv_tree(agent, "svc/sem")}
        lock = tree.pop("svc/sem/.lock")
        assert lock["Flags"] == 0xe0f69a2baa414de0
        sem = json.loads(base64.b64decode(lock["Value"]))
        assert sem["Limit"] == 2 and len(sem["Holders"]) == 2
        # one contender key per session, each held by its own session
        assert sorted(tree) == sorted("svc/sem/" + s["ID"] for s in sessions(agent))
        assert all(e["Session"] == e["Key"].split("/")[-1] for e in tree.values())
        waiting = [i for i in locks if i not in started(d)]
        assert len(waiting) == 1
        first = started(d)[0]
        open(os.path.join(d, "release-" + first), "w").close()
        assert locks[first].wait() == 0, locks[first].output()
        wait_until(lambda: waiting[0] in started(d), timeout=20, msg="the third child runs")
        for i in locks:
            open(os.path.join(d, "release-" + i), "w").close()
        for i in locks:
            assert locks[i].wait() == 0, locks[i].output()
        assert sorted(started(d)) == ["a", "b", "c"]
        assert max_running(d) == 2
        assert kv_tree(agent, "svc/sem") == [] and sessions(agent) == []
    finally:
        for lk in locks.values():
            lk.stop()


def test_lock_lost_stops_child(agent, tmpdir_path):
    """The session destroyed behind its back: the lock is released, `herald lock` sees it on
    its blocking query, SIGTERMs the child (which logs it) and exits 1."""
    d = tmpdir_path
    script = ("trap 'echo term >> %s/log; exit 0' TERM; echo start x >> %s/log; "
              "while true; do sleep 0.05; done" % (d, d))
    lk = Lock(agent, ["svc/lost", script], d, "x")
    try:
        wait_until(lambda: started(d) == ["x"], timeout=20, msg="child started")
        [key] = kv_tree(agent, "svc/lost")
        r = agent.put("/v1/session/destroy/" + key["Session"])
        assert r.status == 200
        assert lk.wait(timeout=15) == 1
        assert "Lock lost, killing child" in lk.output()
        assert log(d) == ["start x", "term"]
    finally:
        lk.stop()


def test_lock_child_ignoring_sigterm_is_killed(agent, tmpdir_path):
    """A child that ignores SIGTERM gets SIGKILL after the 5 s grace (its whole group)."""
    d = tmpdir_path
    script = ("trap '' TERM; echo start x >> %s/log; echo $$ > %s/pid; "
              "while true; do sleep 0.05; done" % (d, d))
    lk = Lock(agent, ["svc/stubborn", script], d, "x")
    try:
        wait_until(lambda: started(d) == ["x"] and os.path.exists(os.path.join(d, "pid")),
                   timeout=20, msg="child started")
        with open(os.path.join(d, "pid")) as f:
            pid = int(f.read())
        [key] = kv_tree(agent, "svc/stubborn")
        agent.put("/v1/session/destroy/" + key["Session"])
        assert lk.wait(timeout=20) == 1
        assert not os.path.exists("/proc/%d" % pid)
    finally:
        lk.stop()


def test_lock_exit_code_shell_false_and_sigterm(agent, tmpdir_path):
    d = tmpdir_path
    # the child's exit code; cleaned up after
    lk = Lock(agent, ["svc/code", "exit 7"], d, "code")
    assert lk.wait() == 7, lk.output()
    assert kv_tree(agent, "svc/code") == [] and sessions(agent) == []
    # -shell=false: the arguments as they are (no shell to split "a  b" or expand $HOME)
    lk = Lock(agent, ["-shell=false", "svc/noshell", "/bin/echo", "a  b", "$HOME"], d, "ns")
    assert lk.wait() == 0
    assert lk.output() == "a  b $HOME\n"
    # -http-addr after the prefix belongs to the child
    lk = Lock(agent, ["svc/args", "echo", "-http-addr", "x"], d, "args")
    assert lk.wait() == 0
    assert lk.output() == "-http-addr x\n"
    # SIGTERM to herald lock: the child is stopped, the lock released, exit 1
    script = ("trap 'echo term >> %s/log; exit 0' TERM; echo start y >> %s/log; "
              "while true; do sleep 0.05; done" % (d, d))
    lk = Lock(agent, ["svc/term", script], d, "term")
    try:
        wait_until(lambda: started(d) == ["y"], timeout=20, msg="child started")
        lk.proc.send_signal(signal.SIGTERM)
        assert lk.wait() == 1
        assert log(d) == ["start y", "term"]
        assert kv_tree(agent, "svc/term") == [] and sessions(agent) == []
    finally:
        lk.stop()
    # a timeout while another holds it
    holder = Lock(agent, ["svc/busy", child(d, "h")], d, "h")
    try:
        wait_until(lambda: "h" in started(d), timeout=20, msg="holder runs")
        lk = Lock(agent, ["-timeout", "1s", "svc/busy", "echo never"], d, "late")
        assert lk.wait() == 1
        assert "timeout during lock acquisition" in lk.output()
        open(os.path.join(d, "release-h"), "w").close()
        assert holder.wait() == 0
    finally:
        holder.stop()
    # bad usage
    for args in (["svc/only"], ["-n", "0", "p", "true"], ["-bogus", "p", "true"]):
        lk = Lock(agent, args, d, "bad")
        assert lk.wait() == 1, args


def test_lock_survives_a_leader_kill(make_cluster, tmpdir_path):
    """`herald lock` through a follower keeps its lock (and its child) while the leader is
    SIGKILLed and a new one is elected: its failed queries are retried (-monitor-retry), its
    session is renewed through the new leader, which re-arms the TTL timers."""
    d = tmpdir_path
    c = make_cluster(3).start()
    leader = c.wait_leader()
    f = c.followers()[0]
    lk = Lock(f, ["svc/ha", child(d, "x")], d, "x")
    try:
        wait_until(lambda: started(d) == ["x"], timeout=20, msg="child started")
        [key] = kv_tree(f, "svc/ha")
        sid = key["Session"]
        leader.kill9()
        survivors = [a for a in c if a is not leader]
        c.wait_leader(among=survivors, timeout=30)
        # past the session's 2 x 15 s from the kill: still held, renewed by the new leader
        t0 = time.monotonic()
        while time.monotonic() - t0 < 32:
            assert lk.proc.poll() is None, lk.output()
            r = f.get("/v1/kv/svc/ha/.lock?stale")
            assert r.status == 200 and r.json()[0]["Session"] == sid, r.text
            time.sleep(1)  # the pace of this bounded observation
        assert log(d) == ["start x"]
        open(os.path.join(d, "release-x"), "w").close()
        assert lk.wait() == 0, lk.output()
        assert kv_tree(f, "svc/ha") == []
    finally:
        lk.stop()
