"""test_cluster.py's formation, wiped-server and membership scenarios again, every server
with a cluster key (-encrypt): every Raft stream and RPC connection then runs the HMAC
challenge and response (rpc/port.c), the joins of new servers included.

The scenarios are test_cluster.py's own functions, collected here with a make_cluster that
adds the key to every server's flags."""
import pytest

import conftest
from test_cluster import (  # noqa: F401 - collected here, with the keyed make_cluster
    test_servers_join_leave_and_are_removed,
    test_three_servers_form_one_cluster_in_any_order,
    test_wiped_follower_catches_up_from_a_snapshot,
    test_wiped_server_rejoins_while_the_leader_holds_the_whole_log,
)

KEY_ARGS = ["-encrypt", "MDEyMzQ1Njc4OWFiY2RlZg=="]


@pytest.fixture
def make_cluster(tmpdir_path):
    """conftest's make_cluster, with the key on every server."""
    clusters = []

    def factory(n=3, config=None, args=()):
        c = conftest.Cluster(tmpdir_path, n, config=config, args=list(args) + KEY_ARGS)
        clusters.append(c)
        return c

    yield factory
    failures = []
    for c in clusters:
        failures += c.stop_all()
    assert not failures, "\n".join(failures)
