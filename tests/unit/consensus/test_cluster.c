/* Tests consensus clusters: three to five cons instances in one process on one loop, each with
 * its own directories, zone store and loopback address (127.0.0.11...), talking over real TCP.
 * Formation in any start order (exactly one cluster), writes on followers (forwarded, visible
 * everywhere), failover after the leader stops (measured), catch-up of a restarted server,
 * snapshot install on a wiped one, joins (explicit and by retry-join), leave and remove-peer,
 * read indexes, and the bounded wait without a leader; formation from server discovery alone
 * (cons_server_seen), and on_leader telling every server who leads. Every wait is bounded;
 * every test ends with all cons stopped and uv_loop_close() == 0. */
#include "consensus/cluster.h"

static int follower_of(struct cl *cl, int leader)
{
    for (int i = 0; i < NODES_MAX; i++)
        if (i != leader && cl->node[i].s.c)
            return i;
    fail_msg("no follower");
    return -1;
}

/* ---- writes and reads ------------------------------------------------------------------ */

struct prop {
    bool done;
    int status, result;
    uint64_t index;
};

static void prop_cb(void *data, int status, int result, uint64_t index)
{
    struct prop *p = data;
    assert_false(p->done);
    p->done = true;
    p->status = status;
    p->result = result;
    p->index = index;
}

static void propose_kv(struct node *nd, struct prop *p, const char *key, const char *value)
{
    struct zone_cmd cmd;
    struct base_buf b;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = ZONE_CMD_KV_SET;
    cmd.kv.key = key;
    cmd.kv.value = (const uint8_t *)value;
    cmd.kv.value_len = strlen(value);
    cmd.kv.session = "";
    base_buf_init(&b);
    zone_cmd_encode(&cmd, &b);
    memset(p, 0, sizeof *p);
    cons_propose(nd->s.c, b.data, b.len, prop_cb, p);
    base_buf_free(&b);
}

static struct prop put(struct node *nd, const char *key, const char *value)
{
    struct prop p;
    propose_kv(nd, &p, key, value);
    assert_true(run_until(&nd->cl->loop, &p.done, 15000));
    return p;
}

static void put_ok(struct node *nd, const char *key, const char *value, uint64_t *index)
{
    struct prop p = put(nd, key, value);
    if (p.status != 0)
        fail_msg("put %s on node %d: %s", key, nd->i, base_strerror(p.status));
    assert_int_equal(p.result, 0);
    if (index)
        *index = p.index;
}

/* The value of key in nd's store ("" when absent). */
static bool kv_is(struct node *nd, const char *key, const char *value)
{
    struct zone_read *r;
    struct zone_kv kv;
    struct base_arena a;
    bool ok = false;
    base_arena_init(&a);
    assert_int_equal(zone_read_begin(nd->s.store, &r), 0);
    if (zone_kv_get(r, key, &a, &kv) == 0)
        ok = kv.value_len == strlen(value) && memcmp(kv.value, value, kv.value_len) == 0;
    zone_read_end(r);
    base_arena_close(&a);
    return ok;
}

static struct zone_meta meta_of(struct node *nd)
{
    struct zone_meta m;
    assert_int_equal(zone_store_meta(nd->s.store, &m), 0);
    return m;
}

struct kv_want {
    const char *key, *value;
};

static bool all_have(struct cl *cl, void *arg)
{
    struct kv_want *w = arg;
    for (int i = 0; i < NODES_MAX; i++)
        if (cl->node[i].s.c && !kv_is(&cl->node[i], w->key, w->value))
            return false;
    return true;
}

static void wait_all_have(struct cl *cl, const char *key, const char *value)
{
    struct kv_want w = {key, value};
    assert_true(cl_until(cl, all_have, &w, 10000));
}

struct node_kv {
    struct node *nd;
    const char *key, *value;
};

static bool node_has(struct cl *cl, void *arg)
{
    BASE_UNUSED(cl);
    struct node_kv *w = arg;
    return kv_is(w->nd, w->key, w->value);
}

struct read {
    bool done;
    int status;
    uint64_t index;
};

static void read_cb(void *data, int status, uint64_t index)
{
    struct read *r = data;
    assert_false(r->done);
    r->done = true;
    r->status = status;
    r->index = index;
}

static struct read read_index(struct node *nd, bool consistent)
{
    struct read r = {0};
    cons_read_index(nd->s.c, consistent, read_cb, &r);
    assert_false(r.done); /* never inside the call */
    assert_true(run_until(&nd->cl->loop, &r.done, 15000));
    return r;
}

struct member {
    bool done;
    int status;
    char msg[256];
};

static void member_cb(void *data, int status, const char *msg)
{
    struct member *m = data;
    assert_false(m->done);
    m->done = true;
    m->status = status;
    snprintf(m->msg, sizeof m->msg, "%s", msg);
}

static void wait_member(struct cl *cl, struct member *m, const char *what)
{
    assert_true(run_until(&cl->loop, &m->done, 70000));
    if (m->status != 0)
        fail_msg("%s: %s (%s)", what, base_strerror(m->status), m->msg);
}

static double ms_since(uint64_t t0)
{
    return (double)(uv_hrtime() - t0) / 1e6;
}

/* Starts 3 nodes in a scrambled order with delays and waits for one settled cluster. */
static int form3(struct cl *cl)
{
    uint64_t t0 = uv_hrtime();
    start(&cl->node[2]);
    run_for(cl, 300);
    start(&cl->node[0]);
    run_for(cl, 500);
    start(&cl->node[1]);
    int li = wait_settled(cl, 3, 15000);
    print_message("# formation (start order 2, 0 +300 ms, 1 +800 ms): leader node %d, %.0f ms "
                  "after the first start\n",
                  li, ms_since(t0));
    return li;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_formation_and_forwarding(void **state)
{
    (void)state;
    struct cl cl;
    cl_init(&cl, 3, 3);
    int li = form3(&cl);
    assert_int_equal(leaders(&cl, NULL), 1);

    /* the same configuration everywhere: ids 100..102, all voters, sorted */
    for (int i = 0; i < 3; i++) {
        struct conf cf = conf_of(&cl.node[i]);
        assert_int_equal(cf.n, 3);
        for (int k = 0; k < 3; k++) {
            assert_int_equal(cf.ids[k], 100 + k);
            assert_int_equal(cf.roles[k], 1);
        }
    }

    /* a write on a follower: forwarded, committed, readable locally at once */
    int fi = follower_of(&cl, li);
    uint64_t t0 = uv_hrtime();
    struct prop p = put(&cl.node[fi], "fwd/key", "from-follower");
    print_message("# write on a follower answered in %.2f ms\n", ms_since(t0));
    assert_int_equal(p.status, 0);
    assert_int_equal(p.result, 0);
    assert_true(p.index > 0);
    assert_true(kv_is(&cl.node[fi], "fwd/key", "from-follower")); /* read-your-writes */
    assert_true(meta_of(&cl.node[fi]).applied >= p.index);
    wait_all_have(&cl, "fwd/key", "from-follower");

    /* latency of sequential writes, on the leader and on a follower */
    for (int side = 0; side < 2; side++) {
        char k[32];
        t0 = uv_hrtime();
        for (int n = 0; n < 20; n++) {
            snprintf(k, sizeof k, "lat/%d/%d", side, n);
            put_ok(&cl.node[side ? fi : li], k, "v", NULL);
        }
        print_message("# sequential writes on the %s: %.2f ms each\n", side ? "follower" : "leader",
                      ms_since(t0) / 20);
    }

    /* the commands of one loop iteration on a follower share one entry */
    struct prop q[3];
    propose_kv(&cl.node[fi], &q[0], "g/a", "1");
    propose_kv(&cl.node[fi], &q[1], "g/b", "2");
    propose_kv(&cl.node[fi], &q[2], "g/c", "3");
    for (int k = 0; k < 3; k++)
        assert_true(run_until(&cl.loop, &q[k].done, 15000));
    for (int k = 0; k < 3; k++) {
        assert_int_equal(q[k].status, 0);
        assert_int_equal(q[k].index, q[0].index);
    }

    /* every store ends at the same catalog */
    wait_all_have(&cl, "g/c", "3");
    struct zone_meta m0 = meta_of(&cl.node[0]);
    for (int i = 1; i < 3; i++) {
        struct zone_meta m = meta_of(&cl.node[i]);
        assert_int_equal(m.applied, m0.applied);
        assert_int_equal(m.index, m0.index);
        assert_int_equal(m.table_index[ZONE_TABLE_KV], m0.table_index[ZONE_TABLE_KV]);
    }

    /* read index on a follower covers a write just committed on the leader */
    uint64_t widx;
    put_ok(&cl.node[li], "ri/key", "v", &widx);
    t0 = uv_hrtime();
    struct read r = read_index(&cl.node[fi], true);
    print_message("# consistent read index on a follower: %.2f ms\n", ms_since(t0));
    assert_int_equal(r.status, 0);
    assert_true(r.index >= widx);
    assert_true(kv_is(&cl.node[fi], "ri/key", "v"));
    assert_true(cons_applied_index(cl.node[fi].s.c) >= widx);
    put_ok(&cl.node[li], "ri/key2", "v2", &widx);
    r = read_index(&cl.node[fi], false);
    assert_int_equal(r.status, 0);
    assert_true(r.index >= widx);
    assert_true(kv_is(&cl.node[fi], "ri/key2", "v2"));
    /* and on the leader */
    r = read_index(&cl.node[li], true);
    assert_int_equal(r.status, 0);
    assert_true(r.index >= widx);
    r = read_index(&cl.node[li], false);
    assert_int_equal(r.status, 0);
    assert_true(r.index >= widx);

    /* the leader's view as seen from a follower */
    uint64_t lid;
    const char *laddr;
    cons_leader(cl.node[fi].s.c, &lid, &laddr);
    assert_int_equal(lid, 100 + li);
    assert_string_equal(laddr, cl.node[li].s.address);
    assert_true(cons_last_contact_ms(cl.node[fi].s.c) < 1000);
    cl_close(&cl);
}

static void test_failover_and_catch_up(void **state)
{
    (void)state;
    struct cl cl;
    char key[32];
    cl_init(&cl, 3, 3);
    int li = form3(&cl);
    uint64_t idx;
    put_ok(&cl.node[li], "before", "failover", &idx);
    wait_all_have(&cl, "before", "failover");

    /* stop the leader: a new one within ~2 s */
    int old = li;
    uint64_t t0 = uv_hrtime();
    stop(&cl.node[old]);
    li = wait_settled(&cl, 3, 10000);
    double failover = ms_since(t0);
    print_message("# FAILOVER: new leader (node %d) %.0f ms after the leader stopped\n", li,
                  failover);
    assert_true(li != old);
    assert_true(failover < 3000);
    /* told at once, not at a poll: by the time a leader is settled, or within a tick */
    assert_true(cl_until(&cl, told_right, NULL, 100));
    assert_true(cl.node[li].told_leading);

    /* writes continue, on the new leader and its follower */
    int fi = follower_of(&cl, li);
    put_ok(&cl.node[li], "after", "on-leader", NULL);
    put_ok(&cl.node[fi], "after2", "on-follower", NULL);
    for (int k = 0; k < 100; k++) {
        struct prop p;
        snprintf(key, sizeof key, "bulk/%03d", k);
        propose_kv(&cl.node[k % 2 ? fi : li], &p, key, key);
        assert_true(run_until(&cl.loop, &p.done, 15000));
        assert_int_equal(p.status, 0);
    }

    /* the old leader restarts from its dirs alone and catches up */
    uint64_t last = meta_of(&cl.node[li]).applied;
    t0 = uv_hrtime();
    cl.node[old].cfg.n_join = 0; /* only its data dir */
    start(&cl.node[old]);
    struct node_kv w = {&cl.node[old], "bulk/099", "bulk/099"};
    assert_true(cl_until(&cl, node_has, &w, 10000));
    print_message("# CATCH-UP: restarted server has index %llu %.0f ms after its start\n",
                  (unsigned long long)last, ms_since(t0));
    assert_true(meta_of(&cl.node[old]).applied >= last);
    assert_true(kv_is(&cl.node[old], "after2", "on-follower"));
    wait_settled(&cl, 3, 10000);
    cl_close(&cl);
}

static void test_wiped_server_gets_snapshot(void **state)
{
    (void)state;
    struct cl cl;
    char key[32];
    cl_init(&cl, 3, 3);
    int li = form3(&cl);
    int wi = follower_of(&cl, li);

    /* the follower goes away and loses everything */
    stop(&cl.node[wi]);
    zone_store_close(cl.node[wi].s.store);
    cl.node[wi].s.store = NULL;
    rm_tree(cl.node[wi].s.dir);

    /* far more entries than the 64-entry threshold and trailing: the log is compacted */
    for (int k = 0; k < 300; k++) { /* one entry each */
        snprintf(key, sizeof key, "snap/%03d", k);
        put_ok(&cl.node[li], key, key, NULL);
    }
    struct read r = read_index(&cl.node[li], true);
    assert_int_equal(r.status, 0);
    uint64_t last = meta_of(&cl.node[li]).applied;

    /* back with empty dirs: the leader no longer has the entries, so it sends a snapshot */
    uint64_t t0 = uv_hrtime();
    start(&cl.node[wi]);
    struct node_kv w = {&cl.node[wi], "snap/299", "snap/299"};
    assert_true(cl_until(&cl, node_has, &w, 15000));
    print_message("# SNAPSHOT CATCH-UP: wiped server at index %llu %.0f ms after its start "
                  "(%u snapshot restores)\n",
                  (unsigned long long)last, ms_since(t0), cl.node[wi].restores);
    assert_true(cl.node[wi].restores >= 1);
    assert_true(meta_of(&cl.node[wi]).applied >= last);
    for (int k = 0; k < 300; k += 37) {
        snprintf(key, sizeof key, "snap/%03d", k);
        assert_true(kv_is(&cl.node[wi], key, key));
    }
    /* and it takes part again: a write on it */
    wait_settled(&cl, 3, 10000);
    put_ok(&cl.node[wi], "wiped/back", "yes", NULL);
    wait_all_have(&cl, "wiped/back", "yes");
    cl_close(&cl);
}

static void test_join_leave_remove(void **state)
{
    (void)state;
    struct cl cl;
    struct member m;
    cl_init(&cl, 3, 3);
    int li = form3(&cl);
    put_ok(&cl.node[li], "join/before", "x", NULL);

    /* a 4th server, no formation: joins through a follower (relayed to the leader) */
    int fi = follower_of(&cl, li);
    start(&cl.node[3]);
    memset(&m, 0, sizeof m);
    uint64_t t0 = uv_hrtime();
    cons_join(cl.node[3].s.c, cl.node[fi].s.address, member_cb, &m);
    assert_false(m.done);
    wait_member(&cl, &m, "join");
    print_message("# join of a 4th server: %.0f ms (%s)\n", ms_since(t0), m.msg);
    li = wait_settled(&cl, 4, 10000);
    struct node_kv w = {&cl.node[3], "join/before", "x"};
    assert_true(cl_until(&cl, node_has, &w, 10000));
    put_ok(&cl.node[3], "join/after", "y", NULL);
    wait_all_have(&cl, "join/after", "y");

    /* joining again is a no-op */
    memset(&m, 0, sizeof m);
    cons_join(cl.node[3].s.c, cl.node[li].s.address, member_cb, &m);
    wait_member(&cl, &m, "join again");

    /* a follower leaves */
    fi = follower_of(&cl, li);
    memset(&m, 0, sizeof m);
    cons_leave(cl.node[fi].s.c, member_cb, &m);
    wait_member(&cl, &m, "leave");
    stop(&cl.node[fi]);
    li = wait_settled(&cl, 3, 10000);
    assert_int_equal(conf_of(&cl.node[li]).n, 3);

    /* the leader leaves: it hands leadership over first */
    int old = li;
    memset(&m, 0, sizeof m);
    t0 = uv_hrtime();
    cons_leave(cl.node[old].s.c, member_cb, &m);
    wait_member(&cl, &m, "leader leave");
    print_message("# leave of the leader (transfer, then removal): %.0f ms\n", ms_since(t0));
    stop(&cl.node[old]);
    li = wait_settled(&cl, 2, 10000);
    assert_true(li != old);

    /* operator remove-peer by address of a server that is down */
    fi = follower_of(&cl, li);
    char gone[48];
    snprintf(gone, sizeof gone, "%s", cl.node[fi].s.address);
    stop(&cl.node[fi]);
    memset(&m, 0, sizeof m);
    cons_remove_peer(cl.node[li].s.c, 0, gone, member_cb, &m);
    wait_member(&cl, &m, "remove-peer");
    assert_int_equal(conf_of(&cl.node[li]).n, 1);
    put_ok(&cl.node[li], "alone", "still-writes", NULL);
    /* removing what is not there succeeds */
    memset(&m, 0, sizeof m);
    cons_remove_peer(cl.node[li].s.c, 4242, NULL, member_cb, &m);
    wait_member(&cl, &m, "remove-peer absent");
    cl_close(&cl);
}

static void test_retry_join_later(void **state)
{
    (void)state;
    struct cl cl;
    cl_init(&cl, 3, 3);
    int li = form3(&cl);
    /* a server started later with bootstrap_expect 3 and a join list: finds a running
     * cluster that does not list it, and joins it */
    struct node *late = &cl.node[3];
    late->cfg.bootstrap_expect = 3;
    late->join[0] = cl.node[(li + 1) % 3].s.address;
    late->cfg.n_join = 1;
    uint64_t t0 = uv_hrtime();
    start(late);
    wait_settled(&cl, 4, 20000);
    print_message("# retry-join of a late server: voter %.0f ms after its start\n", ms_since(t0));
    put_ok(late, "late/key", "joined", NULL);
    wait_all_have(&cl, "late/key", "joined");
    cl_close(&cl);
}

static void test_voters_capped_at_five(void **state)
{
    (void)state;
    struct cl cl;
    struct member m;
    cl_init(&cl, 3, 3);
    int li = form3(&cl);
    for (int i = 3; i < 6; i++) {
        start(&cl.node[i]);
        memset(&m, 0, sizeof m);
        cons_join(cl.node[i].s.c, cl.node[li].s.address, member_cb, &m);
        wait_member(&cl, &m, "join");
        print_message("# server %d joined: %s\n", i, m.msg);
    }
    li = wait_settled(&cl, 5, 10000);
    struct conf cf = conf_of(&cl.node[li]);
    assert_int_equal(cf.n, 6);
    assert_int_equal(cf.voters, 5);
    assert_int_equal(cf.roles[5], 0); /* the sixth is a standby */
    /* a standby replicates */
    put_ok(&cl.node[li], "six", "standby-too", NULL);
    wait_all_have(&cl, "six", "standby-too");
    /* a voter leaves: the reconciler promotes the standby */
    int v = follower_of(&cl, li);
    if (v == 5)
        v = 4;
    memset(&m, 0, sizeof m);
    cons_leave(cl.node[v].s.c, member_cb, &m);
    wait_member(&cl, &m, "leave");
    stop(&cl.node[v]);
    li = wait_settled(&cl, 5, 15000);
    cf = conf_of(&cl.node[li]);
    assert_int_equal(cf.n, 5);
    assert_int_equal(cf.voters, 5);
    cl_close(&cl);
}

static void test_no_leader_is_bounded(void **state)
{
    (void)state;
    struct cl cl;
    cl_init(&cl, 3, 3);
    int li = form3(&cl);
    int a = follower_of(&cl, li);
    int b = 3 - li - a;
    put_ok(&cl.node[li], "q", "1", NULL);
    wait_all_have(&cl, "q", "1");
    /* two of three gone: no quorum, no leader */
    stop(&cl.node[li]);
    stop(&cl.node[b]);
    struct node *lone = &cl.node[a];
    uint64_t t0 = uv_hrtime();
    struct prop p = put(lone, "q", "2");
    double waited = ms_since(t0);
    print_message("# write without a leader ended with \"%s\" after %.0f ms\n",
                  base_strerror(p.status), waited);
    /* never acknowledged, never "not written" when it may have been sent */
    assert_true(p.status == BASE_ENOLEADER || p.status == BASE_EUNKNOWN);
    assert_true(waited < 8000);
    struct read r = read_index(lone, true);
    assert_int_equal(r.status, BASE_ENOLEADER);
    /* DNS-style local reads still work */
    assert_true(kv_is(lone, "q", "1"));
    cl_close(&cl);
}

static void test_formation_waits_for_expect(void **state)
{
    (void)state;
    struct cl cl;
    cl_init(&cl, 3, 3);
    /* two of three: no bootstrap, no leader, nothing written */
    start(&cl.node[0]);
    start(&cl.node[1]);
    run_for(&cl, 2500);
    assert_int_equal(leaders(&cl, NULL), 0);
    assert_int_equal(conf_of(&cl.node[0]).n, 0);
    /* the third arrives: one cluster */
    start(&cl.node[2]);
    wait_settled(&cl, 3, 15000);
    cl_close(&cl);
}

/* No join addresses: nobody knows anyone until discovery tells one server of the two others
 * (as gossip will); the HELLOs it then sends introduce them to it and to each other. */
static void test_formation_by_discovery(void **state)
{
    (void)state;
    struct cl cl;
    cl_init(&cl, 3, 3);
    for (int i = 0; i < 3; i++) {
        cl.node[i].cfg.n_join = 0;
        start(&cl.node[i]);
    }
    run_for(&cl, 1000);
    assert_int_equal(leaders(&cl, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cl.node[i].told, 0); /* no leader yet: nothing said */
    cons_server_seen(cl.node[0].s.c, cl.node[1].cfg.id, cl.node[1].s.address);
    cons_server_seen(cl.node[0].s.c, cl.node[2].cfg.id, cl.node[2].s.address);
    int li = wait_settled(&cl, 3, 15000);
    assert_true(cl_until(&cl, told_right, NULL, 1000));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cl.node[i].told_id, cl.node[li].cfg.id);
        assert_string_equal(cl.node[i].told_address, cl.node[li].s.address);
        assert_int_equal(cl.node[i].told_leading, i == li);
    }
    cl_close(&cl);
}

static void test_stop_while_forming(void **state)
{
    (void)state;
    struct cl cl;
    struct prop p;
    struct read r = {0};
    cl_init(&cl, 3, 3);
    start(&cl.node[0]);
    run_for(&cl, 200);
    propose_kv(&cl.node[0], &p, "k", "v");
    cons_read_index(cl.node[0].s.c, false, read_cb, &r);
    run_for(&cl, 100);
    stop(&cl.node[0]);
    assert_true(p.done);
    assert_int_equal(p.status, BASE_ESHUTDOWN);
    assert_true(r.done);
    assert_int_equal(r.status, BASE_ESHUTDOWN);
    cl_close(&cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formation_and_forwarding),
        cmocka_unit_test(test_failover_and_catch_up),
        cmocka_unit_test(test_wiped_server_gets_snapshot),
        cmocka_unit_test(test_join_leave_remove),
        cmocka_unit_test(test_retry_join_later),
        cmocka_unit_test(test_voters_capped_at_five),
        cmocka_unit_test(test_no_leader_is_bounded),
        cmocka_unit_test(test_formation_waits_for_expect),
        cmocka_unit_test(test_formation_by_discovery),
        cmocka_unit_test(test_stop_while_forming),
    };
    const char *lvl = getenv("HERALD_TEST_LOG");
    enum base_log_level l = BASE_LOG_WARN;
    if (lvl && base_log_level_parse(lvl, &l) != 0)
        l = BASE_LOG_WARN;
    base_log_set_level(l);
    if (getenv("HERALD_TEST_FILTER")) /* e.g. HERALD_TEST_FILTER='*failover*' */
        cmocka_set_test_filter(getenv("HERALD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
