"""The gossip simulator (tests/tools/gossip_sim, ASan build) on a small pool: 50 engines in one
process on a simulated network (datagrams through gossip's net seam, TCP real on loopback),
the engine's default timings but a push-pull every 5 s (so a member that a join's broadcasts missed
does not wait 30 s for the first one).

Correctness only, no speed: every member comes to list all 50 alive; a member that joins later
is listed alive by all; a killed member is listed failed by every survivor; at 0% loss no healthy
member is ever listed failed; with 5% loss the pool still converges and detects the failure.
The simulator exits 0 only when every phase completed and its loop closed empty (ASan's leak
check runs at its exit too). Each run is bounded by the simulator's own phase timeout and by the
subprocess timeout here."""
import json
import os
import subprocess

from herald_test.paths import ROOT

SIM = os.environ.get("HERALD_GOSSIP_SIM",
                     os.path.join(ROOT, "build", "asan", "tests", "tools", "gossip_sim"))
# a loopback /16 of its own (127.121.x.y) and a port from the run's address offset, so parallel
# runs on one machine do not collide
OFFSET = int(os.environ.get("HERALD_TEST_ADDR_OFFSET", (os.getpid() % 20) * 10))
PORT = 30000 + OFFSET % 20000


def run_sim(*args, timeout=240):
    assert os.path.exists(SIM), "build/asan/tests/tools/gossip_sim is not built (make integration)"
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    p = subprocess.run([SIM, "-net", "121", "-port", str(PORT), "-json", "-timeout", "90",
                        "-push-pull", "5000"]
                       + list(args), capture_output=True, text=True, timeout=timeout, env=env)
    lines = p.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), (p.stdout, p.stderr[-3000:])
    res = json.loads(lines[-1])
    return p.returncode, res, p.stdout + p.stderr[-3000:]


def check_complete(rc, res, out, n):
    assert rc == 0, out
    assert res["failed_phase"] is None, out
    assert res["loop_closed"], out
    assert res["n"] == n
    # every phase reached its end: all listed all, the newcomer, and the failure
    for k in ("converge_s", "join_all_s", "fail_all_s"):
        assert res[k] is not None and res[k] >= 0, (k, out)
    assert res["delivered"] > 0 and res["udp_bad"] == 0, out


def test_sim_50_no_loss_converges_detects_failure_no_false_positive():
    rc, res, out = run_sim("-n", "50", "-settle", "2", "-idle", "2", "-tail", "3")
    check_complete(rc, res, out, 50)
    assert res["lost"] == 0
    assert res["false_positives"] == 0, out
    assert res["bw_bytes_s"] > 0


def test_sim_50_with_loss_converges_and_detects_failure():
    rc, res, out = run_sim("-n", "50", "-loss", "5", "-settle", "2", "-idle", "2", "-tail", "1")
    check_complete(rc, res, out, 50)
    assert res["lost"] > 0, out
