/* Tests client replicas (consensus/replica.c): three servers and client agents in one process
 * on one loop, each with its own store and loopback address, over real TCP. A client keeps a
 * read-only replica fed by one server's FOLLOW stream: entries with the servers' indexes, a
 * snapshot when it was away longer than the servers retain, writes and read indexes forwarded
 * to the leader the stream names, failover to another server when the followed one stops,
 * refusal of clients from addresses client_allowed rejects, and garbage FOLLOW requests
 * refused while the server goes on. Every wait is bounded; every test ends with all cons
 * stopped and uv_loop_close() == 0. */
#include "consensus/cluster.h"

#include <errno.h>
#include <fcntl.h>

#define CLIENT 3 /* node 3 is a client agent */

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

/* ---- clients --------------------------------------------------------------------------- */

/* Node i becomes a client agent (before its start). */
static void make_client(struct cl *cl, int i)
{
    struct node *nd = &cl->node[i];
    nd->cfg.client = true;
    nd->cfg.bootstrap_expect = 0;
    nd->cfg.n_join = 0;
    nd->cfg.id = (uint64_t)(200 + i);
}

static void see_servers(struct cl *cl, int client)
{
    for (int i = 0; i < cl->n; i++)
        cons_server_seen(cl->node[client].s.c, cl->node[i].cfg.id, cl->node[i].s.address);
}

/* The value of key in nd's store with its indexes (false when absent). */
static bool kv_get(struct node *nd, const char *key, uint64_t *create, uint64_t *modify)
{
    struct zone_read *r;
    struct zone_kv kv;
    struct base_arena a;
    bool ok = false;
    base_arena_init(&a);
    assert_int_equal(zone_read_begin(nd->s.store, &r), 0);
    if (zone_kv_get(r, key, &a, &kv) == 0) {
        ok = true;
        *create = kv.create_index;
        *modify = kv.modify_index;
    }
    zone_read_end(r);
    base_arena_close(&a);
    return ok;
}

struct status_wait {
    bool done;
    int status;
    char msg[128];
};

static void status_cb(void *data, int status)
{
    struct status_wait *w = data;
    assert_false(w->done);
    w->done = true;
    w->status = status;
}

static void member_status_cb(void *data, int status, const char *msg)
{
    struct status_wait *w = data;
    assert_false(w->done);
    w->done = true;
    w->status = status;
    snprintf(w->msg, sizeof w->msg, "%s", msg);
}

static bool client_current(struct cl *cl, void *arg)
{
    int li = *(int *)arg;
    return cons_applied_index(cl->node[CLIENT].s.c) >= cons_applied_index(cl->node[li].s.c) &&
           cons_applied_index(cl->node[li].s.c) > 0;
}

static bool client_knows_leader(struct cl *cl, void *arg)
{
    int li = *(int *)arg;
    uint64_t id;
    const char *addr;
    cons_leader(cl->node[CLIENT].s.c, &id, &addr);
    return id == cl->node[li].cfg.id && conf_of(&cl->node[CLIENT]).voters == 3;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_client_replica(void **state)
{
    (void)state;
    struct cl cl;
    cl_init(&cl, 3, 3);
    make_client(&cl, CLIENT);
    int li = form3(&cl);
    uint64_t idx;
    put_ok(&cl.node[li], "before/client", "v0", &idx);

    /* the client starts with an empty store and finds the servers */
    start(&cl.node[CLIENT]);
    struct node *cn = &cl.node[CLIENT];
    assert_false(cons_is_leader(cn->s.c));
    see_servers(&cl, CLIENT);
    assert_true(cl_until(&cl, client_knows_leader, &li, 5000));
    assert_true(cl_until(&cl, client_current, &li, 5000));
    assert_true(kv_is(cn, "before/client", "v0"));
    assert_true(cl_until(&cl, told_right, NULL, 1000)); /* on_leader as on a follower */
    assert_false(cn->told_leading);
    assert_true(cons_last_contact_ms(cn->s.c) < 1000);
    assert_true(cons_term(cn->s.c) == cons_term(cl.node[li].s.c));

    /* writes on servers appear on the client with the same indexes */
    uint64_t t0 = uv_hrtime();
    for (int k = 0; k < 20; k++) {
        char key[32];
        snprintf(key, sizeof key, "srv/%02d", k);
        put_ok(&cl.node[k % 3], key, key, NULL);
    }
    wait_all_have(&cl, "srv/19", "srv/19");
    print_message("# 20 writes on servers on the client after %.1f ms\n", ms_since(t0));
    for (int k = 0; k < 20; k++) {
        char key[32];
        uint64_t c0, m0, c1, m1;
        snprintf(key, sizeof key, "srv/%02d", k);
        assert_true(kv_get(&cl.node[li], key, &c0, &m0));
        assert_true(kv_get(cn, key, &c1, &m1));
        assert_int_equal(c0, c1);
        assert_int_equal(m0, m1);
    }
    assert_true(cl_until(&cl, client_current, &li, 5000));
    struct zone_meta ml = meta_of(&cl.node[li]), mc = meta_of(cn);
    assert_int_equal(ml.applied, mc.applied);
    assert_int_equal(ml.index, mc.index);
    assert_int_equal(cn->last_index, mc.applied);
    /* the first client of a server starts from a snapshot (nothing was kept before anyone
     * followed); then entries only */
    assert_int_equal(cn->restores, 1);

    /* a write proposed on the client: forwarded, readable on the client when it is answered */
    t0 = uv_hrtime();
    struct prop p = put(cn, "from/client", "yes");
    print_message("# write on a client answered in %.2f ms\n", ms_since(t0));
    assert_int_equal(p.status, 0);
    assert_int_equal(p.result, 0);
    assert_true(p.index > 0);
    assert_true(kv_is(cn, "from/client", "yes"));
    assert_true(cons_applied_index(cn->s.c) >= p.index);
    wait_all_have(&cl, "from/client", "yes");

    /* read indexes on the client, both modes, cover a write just committed on the leader */
    put_ok(&cl.node[li], "ri/1", "a", &idx);
    struct read r = read_index(cn, true);
    assert_int_equal(r.status, 0);
    assert_true(r.index >= idx);
    assert_true(kv_is(cn, "ri/1", "a"));
    put_ok(&cl.node[li], "ri/2", "b", &idx);
    r = read_index(cn, false);
    assert_int_equal(r.status, 0);
    assert_true(r.index >= idx);
    assert_true(kv_is(cn, "ri/2", "b"));

    /* what a client is not */
    struct status_wait w = {0};
    cons_barrier(cn->s.c, status_cb, &w);
    assert_false(w.done);
    assert_true(run_until(&cl.loop, &w.done, 5000));
    assert_int_equal(w.status, BASE_ENOTLEADER);
    memset(&w, 0, sizeof w);
    cons_join(cn->s.c, cl.node[li].s.address, member_status_cb, &w);
    assert_false(w.done);
    assert_true(run_until(&cl.loop, &w.done, 5000));
    assert_int_equal(w.status, BASE_EINVAL);
    assert_string_equal(w.msg, "not a server");
    memset(&w, 0, sizeof w);
    cons_remove_peer(cn->s.c, 100, NULL, member_status_cb, &w);
    assert_true(run_until(&cl.loop, &w.done, 5000));
    assert_int_equal(w.status, BASE_EINVAL);
    memset(&w, 0, sizeof w);
    cons_leave(cn->s.c, member_status_cb, &w);
    assert_true(run_until(&cl.loop, &w.done, 5000));
    assert_int_equal(w.status, 0);
    assert_int_equal(conf_of(&cl.node[li]).n, 3); /* the client is in no configuration */
    cl_close(&cl);
}

static void test_client_start_checks(void **state)
{
    (void)state;
    struct cl cl;
    char errmsg[BASE_ERRMSG_LEN] = "";
    cl_init(&cl, 3, 3);
    make_client(&cl, CLIENT);
    struct node *cn = &cl.node[CLIENT];
    srv_store_open(&cn->s);
    srv_port_start(&cl.loop, &cn->s, cn->cfg.id);
    struct cons_config cfg = cn->cfg;
    cfg.dir = NULL; /* a client needs none, and makes none */
    cfg.address = cn->s.address;
    cfg.store = cn->s.store;
    cfg.rpc = cn->s.rpc;
    cfg.bootstrap_expect = 3;
    struct cons *c = NULL;
    assert_int_equal(cons_start(&cl.loop, &cfg, &c, errmsg), BASE_EINVAL);
    assert_null(c);
    assert_non_null(strstr(errmsg, "client"));
    cfg.bootstrap_expect = 0;
    assert_int_equal(cons_start(&cl.loop, &cfg, &cn->s.c, errmsg), 0);
    struct stat st;
    assert_int_not_equal(stat(cn->s.raft_dir, &st), 0);
    /* nothing seen: no leader, contact counted from the start */
    uint64_t id;
    const char *addr;
    cons_leader(cn->s.c, &id, &addr);
    assert_int_equal(id, 0);
    assert_string_equal(addr, "");
    assert_int_equal(conf_of(cn).n, 0);
    /* a write waits for a leader, boundedly */
    struct prop p = put(cn, "k", "v");
    assert_int_equal(p.status, BASE_ENOLEADER);
    cl_close(&cl);
}

/* A value of 512 KiB: 40 of them are more than a server retains (16 MiB). */
static char big[512 * 1024 + 1];

static void test_client_snapshot_catch_up(void **state)
{
    (void)state;
    struct cl cl;
    char key[32];
    cl_init(&cl, 3, 3);
    make_client(&cl, CLIENT);
    int li = form3(&cl);
    struct node *cn = &cl.node[CLIENT];
    start(cn);
    see_servers(&cl, CLIENT);
    put_ok(&cl.node[li], "first", "1", NULL);
    assert_true(cl_until(&cl, client_current, &li, 5000));

    /* the client goes away (its store kept) for more than the servers retain */
    unsigned first = cn->restores;
    stop(cn);
    memset(big, 'x', sizeof big - 1);
    for (int k = 0; k < 40; k++) {
        big[0] = (char)('a' + k % 26);
        put_ok(&cl.node[li], "big", big, NULL); /* one key: the stores stay small */
    }
    for (int k = 0; k < 50; k++) {
        snprintf(key, sizeof key, "away/%02d", k);
        put_ok(&cl.node[k % 3], key, key, NULL);
    }
    uint64_t last = meta_of(&cl.node[li]).applied;

    /* back: a snapshot, then the tail */
    uint64_t t0 = uv_hrtime();
    start(cn);
    see_servers(&cl, CLIENT);
    assert_true(cl_until(&cl, client_current, &li, 15000));
    print_message("# client away for %llu entries caught up in %.0f ms (%u snapshot restores)\n",
                  (unsigned long long)last, ms_since(t0), cn->restores);
    assert_true(cn->restores > first); /* a snapshot again */
    assert_true(meta_of(cn).applied >= last);
    assert_true(kv_is(cn, "away/49", "away/49"));
    assert_true(kv_is(cn, "first", "1"));
    assert_true(kv_is(cn, "big", big));
    unsigned restores = cn->restores;
    put_ok(&cl.node[li], "tail", "t", NULL);
    wait_all_have(&cl, "tail", "t");
    assert_int_equal(cn->restores, restores); /* the tail comes as entries */
    cl_close(&cl);
}

static void test_client_failover(void **state)
{
    (void)state;
    struct cl cl;
    cl_init(&cl, 3, 3);
    make_client(&cl, CLIENT);
    int li = form3(&cl);
    struct node *cn = &cl.node[CLIENT];
    start(cn);
    /* it follows the leader first (the only server it knows), then learns the others */
    cons_server_seen(cn->s.c, cl.node[li].cfg.id, cl.node[li].s.address);
    put_ok(&cl.node[li], "a", "1", NULL);
    assert_true(cl_until(&cl, client_current, &li, 5000));
    see_servers(&cl, CLIENT);

    /* a write from the client in flight while the followed server (the leader) stops */
    struct prop p;
    propose_kv(cn, &p, "inflight", "x");
    stop(&cl.node[li]);
    assert_true(run_until(&cl.loop, &p.done, 15000));
    print_message("# write in flight when the leader stopped: %s\n", base_strerror(p.status));
    assert_true(p.status == 0 || p.status == BASE_EUNKNOWN || p.status == BASE_ENOLEADER);
    int nl = wait_settled(&cl, 3, 10000);

    /* the client follows another server and keeps applying, and writing */
    uint64_t t0 = uv_hrtime();
    put_ok(&cl.node[nl], "after", "2", NULL);
    wait_all_have(&cl, "after", "2");
    print_message("# client applies again %.0f ms after the write on the new leader\n",
                  ms_since(t0));
    struct prop q = put(cn, "client/after", "3");
    assert_int_equal(q.status, 0);
    assert_true(kv_is(cn, "client/after", "3"));
    assert_true(cl_until(&cl, client_knows_leader, &nl, 5000));
    /* no write twice: the store agrees with the new leader's */
    assert_true(cl_until(&cl, client_current, &nl, 5000));
    struct zone_meta ml = meta_of(&cl.node[nl]), mc = meta_of(cn);
    assert_int_equal(ml.applied, mc.applied);
    assert_int_equal(ml.table_index[ZONE_TABLE_KV], mc.table_index[ZONE_TABLE_KV]);
    cl_close(&cl);
}

static void test_client_refused(void **state)
{
    (void)state;
    struct cl cl;
    cl_init(&cl, 3, 3);
    make_client(&cl, CLIENT);
    for (int i = 0; i < 3; i++)
        cl.node[i].refuse = true;
    int li = form3(&cl);
    put_ok(&cl.node[li], "k", "v", NULL);
    struct node *cn = &cl.node[CLIENT];
    start(cn);
    see_servers(&cl, CLIENT);
    run_for(&cl, 600);
    assert_int_equal(cons_applied_index(cn->s.c), 0);
    assert_false(kv_is(cn, "k", "v"));
    uint64_t id;
    const char *addr;
    cons_leader(cn->s.c, &id, &addr);
    assert_int_equal(id, 0);
    assert_true(cons_last_contact_ms(cn->s.c) >= 500);
    /* allowed now: it catches up */
    for (int i = 0; i < 3; i++)
        cl.node[i].refuse = false;
    assert_true(cl_until(&cl, client_current, &li, 10000));
    assert_true(kv_is(cn, "k", "v"));
    cl_close(&cl);
}

/* Three clients: each follows some server, all stay current, each one's writes reach all. */
static bool clients_current(struct cl *cl, void *arg)
{
    int li = *(int *)arg;
    for (int i = CLIENT; i < NODES_MAX; i++)
        if (cons_applied_index(cl->node[i].s.c) < cons_applied_index(cl->node[li].s.c))
            return false;
    return true;
}

static void test_three_clients(void **state)
{
    (void)state;
    struct cl cl;
    char key[32];
    cl_init(&cl, 3, 3);
    int li = form3(&cl);
    for (int i = CLIENT; i < NODES_MAX; i++) {
        make_client(&cl, i);
        start(&cl.node[i]);
        see_servers(&cl, i);
    }
    for (int k = 0; k < 30; k++) {
        snprintf(key, sizeof key, "many/%02d", k);
        put_ok(&cl.node[CLIENT + k % 3], key, key, NULL); /* from each client in turn */
    }
    wait_all_have(&cl, "many/29", "many/29");
    assert_true(cl_until(&cl, clients_current, &li, 5000));
    struct zone_meta ml = meta_of(&cl.node[li]);
    for (int i = CLIENT; i < NODES_MAX; i++) {
        struct zone_meta m = meta_of(&cl.node[i]);
        assert_int_equal(m.applied, ml.applied);
        assert_int_equal(m.table_index[ZONE_TABLE_KV], ml.table_index[ZONE_TABLE_KV]);
    }
    cl_close(&cl);
}

/* ---- bad input ------------------------------------------------------------------------- */

struct raw {
    bool done;
    int status, reply_status;
    size_t len;
};

static void raw_cb(void *data, int status, const uint8_t *body, size_t len)
{
    struct raw *w = data;
    w->done = true;
    w->status = status;
    w->len = len;
    w->reply_status = 0;
    if (status == 0 && len >= 4)
        w->reply_status = rpc_status_dec(base_le32(body));
}

static struct raw raw_call(struct cl *cl, struct rpc_client *rc, const char *address, const void *p,
                           size_t n)
{
    struct raw w = {0};
    struct base_buf b;
    base_buf_init(&b);
    base_buf_append(&b, p, n);
    rpc_call(rc, address, 6 /* FOLLOW */, &b, 5000, raw_cb, &w);
    base_buf_free(&b);
    assert_true(run_until(&cl->loop, &w.done, 10000));
    return w;
}

static void test_follow_garbage(void **state)
{
    (void)state;
    struct cl cl;
    cl_init(&cl, 3, 3);
    int li = form3(&cl);
    put_ok(&cl.node[li], "k", "v", NULL);
    struct node *tn = &cl.node[4];
    srv_port_start(&cl.loop, &tn->s, 999);
    struct rpc_client_config cc = {0};
    struct rpc_client *rc = rpc_client_new(tn->s.rpc, &cc);
    const char *to = cl.node[li].s.address;

    static const uint8_t short_req[] = {1, 2, 3};
    struct raw w = raw_call(&cl, rc, to, short_req, sizeof short_req);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.reply_status, BASE_EPARSE);
    uint8_t req[40];
    memset(req, 0xff, sizeof req); /* indexes out of range */
    w = raw_call(&cl, rc, to, req, 32);
    assert_int_equal(w.reply_status, BASE_EPARSE);
    w = raw_call(&cl, rc, to, req, 24); /* short */
    assert_int_equal(w.reply_status, BASE_EPARSE);
    memset(req, 0, sizeof req);
    w = raw_call(&cl, rc, to, req, 33); /* trailing bytes */
    assert_int_equal(w.reply_status, BASE_EPARSE);
    memset(req, 0, sizeof req);
    req[16] = 5; /* an offset without a snapshot */
    w = raw_call(&cl, rc, to, req, 32);
    assert_int_equal(w.reply_status, BASE_EPARSE);
    for (int k = 0; k < 200; k++) { /* random bytes */
        uint8_t junk[40];
        size_t n = (size_t)(rand() % 40);
        for (size_t i = 0; i < n; i++)
            junk[i] = (uint8_t)rand();
        w = raw_call(&cl, rc, to, junk, n);
        assert_int_equal(w.status, 0);
    }
    /* a well-formed request from the start: the entries (the server went on) */
    memset(req, 0, sizeof req);
    w = raw_call(&cl, rc, to, req, 32);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.reply_status, 0);
    assert_true(w.len > 40);
    rpc_client_close(rc);
    put_ok(&cl.node[li], "k2", "v2", NULL);
    wait_all_have(&cl, "k2", "v2");
    srv_port_stop(&cl.loop, &tn->s);
    cl_close(&cl);
}

/* Without a key and without client_allowed, a non-member is no client: refused. */
static void test_follow_refused_by_default(void **state)
{
    (void)state;
    struct cl cl;
    cl_init(&cl, 3, 3);
    for (int i = 0; i < 3; i++)
        cl.node[i].cfg.client_allowed = NULL;
    int li = form3(&cl);
    put_ok(&cl.node[li], "k", "v", NULL);
    struct node *tn = &cl.node[4];
    srv_port_start(&cl.loop, &tn->s, 999);
    struct rpc_client_config cc = {0};
    struct rpc_client *rc = rpc_client_new(tn->s.rpc, &cc);
    uint8_t req[32] = {0};
    struct raw w = raw_call(&cl, rc, cl.node[li].s.address, req, sizeof req);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.reply_status, BASE_EACL);
    rpc_client_close(rc);
    srv_port_stop(&cl.loop, &tn->s);
    cl_close(&cl);
}

/* A client that sends FOLLOWs and does not read is dropped once its unsent replies pass the
 * bound: the server's memory does not grow with what it will not take. */
static size_t le_put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return (size_t)n;
}

static void test_slow_reader_dropped(void **state)
{
    (void)state;
    struct cl cl;
    cl_init(&cl, 3, 3);
    int li = form3(&cl);
    struct node *ld = &cl.node[li];

    /* a raw connection from 127.0.0.15 with a small receive buffer, never read */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.15", &src.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
    char ip[32];
    snprintf(ip, sizeof ip, "%.*s", (int)(strchr(ld->s.address, ':') - ld->s.address),
             ld->s.address);
    inet_pton(AF_INET, ip, &dst.sin_addr);
    dst.sin_port = htons((uint16_t)ld->s.port);
    assert_int_equal(connect(fd, (struct sockaddr *)&dst, sizeof dst), 0);
    static const char me[] = "127.0.0.15:9";
    uint8_t out[256];
    size_t n = 0;
    memcpy(out, "HRLDRPC2", 8);
    n = 8;
    n += le_put(out + n, 999, 8);
    n += le_put(out + n, 0, 8);
    n += le_put(out + n, sizeof me - 1, 4);
    n += le_put(out + n, 0, 4);
    memcpy(out + n, me, sizeof me - 1);
    n += sizeof me - 1;
    /* the first FOLLOW starts the server's retention (its reply: a small snapshot piece) */
    n += le_put(out + n, 12 + 32, 4);
    n += le_put(out + n, 6, 4);
    n += le_put(out + n, 1, 8);
    memset(out + n, 0, 32);
    n += 32;
    assert_int_equal(send(fd, out, n, 0), (ssize_t)n);
    run_for(&cl, 300);
    uint64_t floor = meta_of(ld).applied;

    /* 24 entries of 512 KiB, retained (12 MiB) */
    memset(big, 'y', sizeof big - 1);
    for (int k = 0; k < 24; k++) {
        big[0] = (char)('a' + k);
        put_ok(ld, "big", big, NULL);
    }
    /* 64 FOLLOWs from the floor: each answer is about 512 KiB, 32 MiB in all if not bounded */
    for (int k = 0; k < 64; k++) {
        n = 0;
        n += le_put(out + n, 12 + 32, 4);
        n += le_put(out + n, 6, 4);
        n += le_put(out + n, 2 + (uint64_t)k, 8);
        n += le_put(out + n, floor, 8);
        memset(out + n, 0, 24);
        n += 24;
        assert_int_equal(send(fd, out, n, 0), (ssize_t)n);
    }
    run_for(&cl, 1000);

    /* drain: the server closed the connection (EOF or reset) well before 32 MiB */
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    static uint8_t in[1 << 16];
    size_t got = 0;
    bool closed = false;
    uint64_t deadline = uv_now(&cl.loop) + 10000;
    while (!closed && uv_now(&cl.loop) < deadline && got < (32u << 20)) {
        ssize_t r = recv(fd, in, sizeof in, 0);
        if (r > 0)
            got += (size_t)r;
        else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            closed = true;
        else
            run_for(&cl, 10);
    }
    close(fd);
    print_message("# a client that did not read: dropped after %zu bytes it had not taken\n", got);
    assert_true(closed);
    assert_true(got < (16u << 20));
    /* the server goes on */
    put_ok(ld, "after", "reader", NULL);
    wait_all_have(&cl, "after", "reader");
    cl_close(&cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_replica),
        cmocka_unit_test(test_client_start_checks),
        cmocka_unit_test(test_client_snapshot_catch_up),
        cmocka_unit_test(test_client_failover),
        cmocka_unit_test(test_client_refused),
        cmocka_unit_test(test_follow_garbage),
        cmocka_unit_test(test_follow_refused_by_default),
        cmocka_unit_test(test_three_clients),
        cmocka_unit_test(test_slow_reader_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
