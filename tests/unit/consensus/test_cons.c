/* Tests consensus/cons.c, propose.c and fsm.c with one voter on loopback and the real zone
 * store: leadership, group commit (the commands of one loop iteration share one entry),
 * per-command results, idempotent replay after a restart, snapshots, refusals, and the close
 * order (every callback once, then uv_loop_close() == 0). */
#include <dirent.h>
#include <signal.h>

#include "consensus/fixture.h"

/* ---- fixture --------------------------------------------------------------------------- */

struct fx {
    uv_loop_t loop;
    char root[64];
    struct srv s; /* in root */
    struct cons_config cfg;
    /* on_applied */
    unsigned applied_calls;
    unsigned applied_touching; /* calls with touched != 0 */
    uint64_t last_applied_index;
    /* on_leader */
    unsigned leader_calls;
    bool told_leading;
    uint64_t told_id;
    char told_address[48];
};

static void on_leader(void *data, bool is_leader, uint64_t leader_id, const char *leader_address)
{
    struct fx *f = data;
    f->leader_calls++;
    f->told_leading = is_leader;
    f->told_id = leader_id;
    snprintf(f->told_address, sizeof f->told_address, "%s", leader_address);
}

static void on_applied(void *data, uint64_t index, uint32_t touched)
{
    struct fx *f = data;
    f->applied_calls++;
    if (touched)
        f->applied_touching++;
    assert_true(index > f->last_applied_index || touched == ZONE_TABLE_ALL);
    f->last_applied_index = index;
}

static void fx_init(struct fx *f)
{
    memset(f, 0, sizeof *f);
    loop_init(&f->loop, f->root, "cons");
    srv_init(&f->s, f->root, "127.0.0.1");
    srv_store_open(&f->s);
    f->cfg.dir = f->s.raft_dir;
    f->cfg.id = 1;
    f->cfg.address = f->s.address;
    f->cfg.bootstrap = true;
    f->cfg.store = f->s.store;
    f->cfg.on_applied = on_applied;
    f->cfg.on_leader = on_leader;
    f->cfg.data = f;
}

static void fx_close(struct fx *f)
{
    assert_null(f->s.c);
    zone_store_close(f->s.store);
    loop_done(&f->loop, f->root);
}

static void cons_up(struct fx *f)
{
    f->last_applied_index = 0;
    srv_start(&f->loop, &f->s, &f->cfg);
}

static void cons_down(struct fx *f)
{
    srv_stop(&f->loop, &f->s);
    /* nothing of ours is left on the loop */
    assert_int_equal(uv_run(&f->loop, UV_RUN_NOWAIT), 0);
}

/* ---- proposals ------------------------------------------------------------------------- */

struct prop {
    struct fx *f;
    bool done;
    int calls;
    int status, result;
    uint64_t index;
};

static bool in_propose; /* set around cons_propose: callbacks must never run inside it */

static void prop_cb(void *data, int status, int result, uint64_t index)
{
    struct prop *p = data;
    assert_false(in_propose);
    p->calls++;
    p->done = true;
    p->status = status;
    p->result = result;
    p->index = index;
}

static void encode_kv_set(struct base_buf *b, const char *key, const void *value, size_t len,
                          bool has_cas, uint64_t cas)
{
    struct zone_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = ZONE_CMD_KV_SET;
    cmd.kv.key = key;
    cmd.kv.value = value;
    cmd.kv.value_len = len;
    cmd.kv.session = "";
    cmd.has_cas = has_cas;
    cmd.cas = cas;
    base_buf_init(b);
    zone_cmd_encode(&cmd, b);
}

static void propose_kv(struct fx *f, struct prop *p, const char *key, const char *value,
                       bool has_cas, uint64_t cas)
{
    struct base_buf b;
    encode_kv_set(&b, key, value, strlen(value), has_cas, cas);
    memset(p, 0, sizeof *p);
    p->f = f;
    in_propose = true;
    cons_propose(f->s.c, b.data, b.len, prop_cb, p);
    in_propose = false;
    base_buf_free(&b);
}

struct props {
    struct prop *p;
    size_t n;
};

static bool all_done(void *arg)
{
    struct props *w = arg;
    for (size_t i = 0; i < w->n; i++)
        if (!w->p[i].done)
            return false;
    return true;
}

/* Runs the loop until every proposal has its callback. */
static void wait_props(struct fx *f, struct prop *p, size_t n)
{
    struct props w = {p, n};
    assert_true(run_pred(&f->loop, all_done, &w, 5000));
}

static void put_sync(struct fx *f, const char *key, const char *value, uint64_t *index)
{
    struct prop p;
    propose_kv(f, &p, key, value, false, 0);
    wait_props(f, &p, 1);
    assert_int_equal(p.status, 0);
    assert_int_equal(p.result, 0);
    if (index)
        *index = p.index;
}

static void assert_kv(struct fx *f, const char *key, const char *value, uint64_t modify_index)
{
    struct zone_read *r;
    struct zone_kv kv;
    struct base_arena a;
    base_arena_init(&a);
    assert_int_equal(zone_read_begin(f->s.store, &r), 0);
    assert_int_equal(zone_kv_get(r, key, &a, &kv), 0);
    assert_int_equal(kv.value_len, strlen(value));
    assert_memory_equal(kv.value, value, kv.value_len);
    if (modify_index)
        assert_int_equal(kv.modify_index, modify_index);
    zone_read_end(r);
    base_arena_close(&a);
}

static uint64_t store_applied(struct fx *f)
{
    struct zone_meta m;
    assert_int_equal(zone_store_meta(f->s.store, &m), 0);
    return m.applied;
}

struct barrier {
    bool done;
    int status;
};

static void barrier_cb(void *data, int status)
{
    struct barrier *b = data;
    b->done = true;
    b->status = status;
}

static void barrier_sync(struct fx *f)
{
    struct barrier b = {0};
    cons_barrier(f->s.c, barrier_cb, &b);
    assert_true(run_until(&f->loop, &b.done, 5000));
    assert_int_equal(b.status, 0);
}

/* ---- tests ----------------------------------------------------------------------------- */

struct servers {
    int n;
    struct cons_server last;
};

static void count_server(void *data, const struct cons_server *s)
{
    struct servers *out = data;
    out->n++;
    out->last = *s;
}

static void test_single_voter_leads(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    uint64_t t0 = uv_hrtime();
    cons_up(&f);
    /* A lone voter elects itself inside raft_start; allow a bounded wait anyway. */
    bool leader = cons_is_leader(f.s.c);
    printf("# cons_start took %.2f ms, leader on return: %s\n", (double)(uv_hrtime() - t0) / 1e6,
           leader ? "yes" : "no");
    if (!leader) {
        uint64_t deadline = uv_now(&f.loop) + 3000;
        while (!(leader = cons_is_leader(f.s.c)) && uv_now(&f.loop) < deadline)
            uv_run(&f.loop, UV_RUN_ONCE);
    }
    assert_true(leader);
    printf("# leader %.2f ms after cons_start\n", (double)(uv_hrtime() - t0) / 1e6);

    uint64_t id;
    const char *address;
    cons_leader(f.s.c, &id, &address);
    assert_int_equal(id, 1);
    assert_string_equal(address, f.s.address);
    assert_int_equal(cons_last_contact_ms(f.s.c), 0);
    assert_true(cons_term(f.s.c) >= 1);
    /* told once, by the time it leads: no poll needed */
    assert_int_equal(f.leader_calls, 1);
    assert_true(f.told_leading);
    assert_int_equal(f.told_id, 1);
    assert_string_equal(f.told_address, f.s.address);

    /* SIGPIPE is ignored process-wide once a cons started (DESIGN.md 2.6) */
    struct sigaction sa;
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_IGN);
    assert_true(cons_last_index(f.s.c) >= 1);

    struct servers s = {0};
    cons_servers_each(f.s.c, count_server, &s);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.last.id, 1);
    assert_string_equal(s.last.address, f.s.address);
    assert_int_equal(s.last.role, 1); /* voter */

    cons_down(&f);
    fx_close(&f);
}

static void test_group_commit_one_entry(void **state)
{
    (void)state;
    struct fx f;
    struct prop p[4];
    fx_init(&f);
    cons_up(&f);

    /* warm up (the first append also prepares the open segment) */
    put_sync(&f, "warm", "up", NULL);
    unsigned touching = f.applied_touching;
    uint64_t before = cons_last_index(f.s.c);

    /* four commands in one loop iteration: one entry, per-command results */
    uint64_t t0 = uv_hrtime();
    propose_kv(&f, &p[0], "a", "1", false, 0);
    propose_kv(&f, &p[1], "b", "2", false, 0);
    propose_kv(&f, &p[2], "a", "x", true, 0); /* only if absent: a exists -> conflict */
    propose_kv(&f, &p[3], "c", "3", true, 0); /* only if absent: fine */
    for (int i = 0; i < 4; i++)
        assert_false(p[i].done); /* never called back inside cons_propose */
    wait_props(&f, p, 4);
    printf("# 4 commands committed %.2f ms after proposing\n", (double)(uv_hrtime() - t0) / 1e6);

    for (int i = 0; i < 4; i++) {
        assert_int_equal(p[i].calls, 1);
        assert_int_equal(p[i].status, 0);
        assert_int_equal(p[i].index, p[0].index);
    }
    assert_int_equal(p[0].result, 0);
    assert_int_equal(p[1].result, 0);
    assert_int_equal(p[2].result, BASE_ECONFLICT);
    assert_int_equal(p[3].result, 0);
    /* exactly one new entry */
    assert_int_equal(p[0].index, before + 1);
    assert_int_equal(cons_last_index(f.s.c), before + 1);
    assert_int_equal(f.applied_touching, touching + 1);
    assert_int_equal(f.last_applied_index, p[0].index);
    assert_int_equal(store_applied(&f), p[0].index);

    assert_kv(&f, "a", "1", p[0].index);
    assert_kv(&f, "b", "2", p[0].index);
    assert_kv(&f, "c", "3", p[0].index);

    /* a CAS on the index just written succeeds, in a later entry */
    propose_kv(&f, &p[0], "a", "11", true, p[1].index);
    wait_props(&f, p, 1);
    assert_int_equal(p[0].status, 0);
    assert_int_equal(p[0].result, 0);
    assert_true(p[0].index > p[1].index);
    assert_kv(&f, "a", "11", p[0].index);

    barrier_sync(&f);
    cons_down(&f);
    fx_close(&f);
}

/* A command proposed from a proposer's callback goes into the next entry. */
struct chain {
    struct fx *f;
    struct prop first, second;
};

static void chain_cb(void *data, int status, int result, uint64_t index)
{
    struct chain *ch = data;
    prop_cb(&ch->first, status, result, index);
    propose_kv(ch->f, &ch->second, "chained", "yes", false, 0);
}

static void test_propose_from_callback(void **state)
{
    (void)state;
    struct fx f;
    struct chain ch;
    struct base_buf b;
    fx_init(&f);
    cons_up(&f);
    memset(&ch, 0, sizeof ch);
    ch.f = &f;
    encode_kv_set(&b, "first", "1", 1, false, 0);
    cons_propose(f.s.c, b.data, b.len, chain_cb, &ch);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &ch.second.done, 5000));
    assert_int_equal(ch.first.status, 0);
    assert_int_equal(ch.second.status, 0);
    assert_true(ch.second.index > ch.first.index);
    assert_kv(&f, "chained", "yes", ch.second.index);
    cons_down(&f);
    fx_close(&f);
}

static void test_restart_does_not_reapply(void **state)
{
    (void)state;
    struct fx f;
    uint64_t idx[5];
    char key[16];
    fx_init(&f);
    cons_up(&f);
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "k%d", i);
        put_sync(&f, key, key, &idx[i]);
    }
    uint64_t applied = store_applied(&f);
    assert_int_equal(applied, idx[4]);
    uint64_t last = cons_last_index(f.s.c);
    cons_down(&f);

    /* restart on the same directories, with the store reopened too */
    zone_store_close(f.s.store);
    srv_store_open(&f.s);
    f.cfg.store = f.s.store;
    f.applied_calls = f.applied_touching = 0;
    f.last_applied_index = 0;
    cons_up(&f);
    printf("# restart: %u entries replayed inside cons_start\n", f.applied_calls);
    assert_true(cons_last_index(f.s.c) >= last);
    barrier_sync(&f); /* everything before the barrier is applied */
    printf("# restart: %u entries replayed, %u changed something\n", f.applied_calls,
           f.applied_touching);
    assert_int_equal(f.applied_touching, 0); /* replay applied nothing twice */
    assert_int_equal(store_applied(&f), applied);
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_kv(&f, key, key, idx[i]);
    }
    /* new writes go after the old log */
    uint64_t next;
    put_sync(&f, "after", "restart", &next);
    assert_true(next > last);
    assert_int_equal(store_applied(&f), next);

    /* bootstrap on a restart is a no-op */
    cons_down(&f);
    cons_up(&f);
    assert_true(cons_is_leader(f.s.c));
    cons_down(&f);
    fx_close(&f);
}

static int count_snapshots(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "snapshot-", 9) && !strstr(e->d_name, ".meta"))
            n++;
    closedir(d);
    return n;
}

static void test_snapshot_and_restore(void **state)
{
    (void)state;
    struct fx f;
    char key[16], val[16];
    uint64_t last = 0;
    fx_init(&f);
    f.cfg.snapshot_threshold = 4;
    f.cfg.snapshot_trailing = 4;
    cons_up(&f);
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "s%02d", i);
        snprintf(val, sizeof val, "v%d", i);
        put_sync(&f, key, val, &last);
    }
    /* let a snapshot in progress finish writing */
    barrier_sync(&f);
    int snaps = count_snapshots(f.s.raft_dir);
    printf("# %d snapshot files after 50 writes\n", snaps);
    assert_true(snaps >= 1);
    uint64_t applied = store_applied(&f);
    cons_down(&f);

    /* restart with the catalog intact: the snapshot is older than or equal to it, skipped */
    zone_store_close(f.s.store);
    srv_store_open(&f.s);
    f.cfg.store = f.s.store;
    f.applied_touching = 0;
    f.last_applied_index = 0;
    cons_up(&f);
    barrier_sync(&f);
    assert_int_equal(f.applied_touching, 0);
    assert_int_equal(store_applied(&f), applied);
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "s%02d", i);
        snprintf(val, sizeof val, "v%d", i);
        assert_kv(&f, key, val, 0);
    }
    cons_down(&f);

    /* restart with the catalog lost: the snapshot and the trailing entries rebuild it */
    zone_store_close(f.s.store);
    rm_tree(f.s.zone_dir);
    srv_store_open(&f.s);
    f.cfg.store = f.s.store;
    assert_int_equal(store_applied(&f), 0);
    f.applied_touching = 0;
    f.last_applied_index = 0;
    cons_up(&f);
    barrier_sync(&f);
    assert_int_equal(store_applied(&f), applied);
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "s%02d", i);
        snprintf(val, sizeof val, "v%d", i);
        assert_kv(&f, key, val, 0);
    }
    assert_kv(&f, "s49", "v49", last);
    cons_down(&f);
    fx_close(&f);
}

static void test_stop_with_pending(void **state)
{
    (void)state;
    struct fx f;
    struct prop early[3], late[3];
    fx_init(&f);
    cons_up(&f);
    put_sync(&f, "warm", "up", NULL);

    /* early: flushed (appended, maybe not yet committed); late: still queued at stop */
    propose_kv(&f, &early[0], "e0", "1", false, 0);
    propose_kv(&f, &early[1], "e1", "1", false, 0);
    propose_kv(&f, &early[2], "e2", "1", false, 0);
    uv_run(&f.loop, UV_RUN_NOWAIT); /* the flush runs at the start of this iteration */
    propose_kv(&f, &late[0], "l0", "1", false, 0);
    propose_kv(&f, &late[1], "l1", "1", false, 0);
    propose_kv(&f, &late[2], "l2", "1", false, 0);
    struct barrier br = {0};
    cons_barrier(f.s.c, barrier_cb, &br);
    cons_down(&f);

    for (int i = 0; i < 3; i++) {
        assert_int_equal(early[i].calls, 1);
        assert_int_equal(late[i].calls, 1);
        /* appended: committed, or of unknown fate; never "not written" */
        assert_true(early[i].status == 0 || early[i].status == BASE_EUNKNOWN);
        assert_int_equal(early[i].status, early[0].status);
        assert_int_equal(late[i].status, BASE_ESHUTDOWN);
    }
    printf("# in-flight proposals at stop ended with %s\n", base_strerror(early[0].status));
    assert_true(br.done);
    assert_int_equal(br.status, BASE_ESHUTDOWN);
    fx_close(&f);
}

/* Proposals in flight when stop is called right after the flush: unknown outcome. */
static void test_stop_in_flight_is_unknown(void **state)
{
    (void)state;
    struct fx f;
    struct prop p;
    fx_init(&f);
    cons_up(&f);
    put_sync(&f, "warm", "up", NULL);
    propose_kv(&f, &p, "x", "1", false, 0);
    /* run only timers and the idle phase: the flush appends, the disk write cannot have
     * completed before the poll phase */
    uv_update_time(&f.loop);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    if (!p.done) {
        cons_down(&f);
        assert_int_equal(p.calls, 1);
        assert_true(p.status == BASE_EUNKNOWN || p.status == 0);
        printf("# proposal in flight at stop: %s\n", base_strerror(p.status));
    } else {
        cons_down(&f);
    }
    fx_close(&f);
}

static void test_not_leader(void **state)
{
    (void)state;
    struct fx f;
    struct prop p;
    struct barrier br = {0};
    fx_init(&f);
    f.cfg.bootstrap = false; /* empty log, no configuration: follower, no leader */
    cons_up(&f);
    assert_false(cons_is_leader(f.s.c));
    uint64_t id = 7;
    const char *address = NULL;
    cons_leader(f.s.c, &id, &address);
    assert_int_equal(id, 0);
    assert_string_equal(address, "");
    propose_kv(&f, &p, "k", "v", false, 0);
    cons_barrier(f.s.c, barrier_cb, &br);
    assert_false(p.done);
    assert_false(br.done);
    wait_props(&f, &p, 1);
    assert_true(run_until(&f.loop, &br.done, 1000));
    assert_int_equal(p.status, BASE_ENOLEADER);
    assert_int_equal(br.status, BASE_ENOLEADER);
    assert_int_equal(cons_last_index(f.s.c), 0);
    /* no leader ever seen: time since start */
    assert_true(cons_last_contact_ms(f.s.c) < 5000);
    cons_down(&f);
    fx_close(&f);
}

/* cons_stop from a proposer's callback (libraft is firing its completed requests there). */
struct stopper {
    struct fx *f;
    struct prop first, second;
};

static void stopper_cb(void *data, int status, int result, uint64_t index)
{
    struct stopper *st = data;
    prop_cb(&st->first, status, result, index);
    /* queued when the stop comes: ended inside cons_stop */
    propose_kv(st->f, &st->second, "second", "2", false, 0);
    cons_stop(st->f->s.c, set_flag, &st->f->s.stopped);
    st->f->s.c = NULL;
    assert_true(st->second.done);
    assert_int_equal(st->second.status, BASE_ESHUTDOWN);
}

static void test_stop_from_callback(void **state)
{
    (void)state;
    struct fx f;
    struct stopper st;
    struct base_buf b;
    fx_init(&f);
    cons_up(&f);
    memset(&st, 0, sizeof st);
    st.f = &f;
    encode_kv_set(&b, "first", "1", 1, false, 0);
    cons_propose(f.s.c, b.data, b.len, stopper_cb, &st);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &f.s.stopped, 5000));
    srv_port_stop(&f.loop, &f.s);
    assert_int_equal(st.first.calls, 1);
    assert_int_equal(st.first.status, 0);
    assert_int_equal(st.second.calls, 1);
    assert_int_equal(uv_run(&f.loop, UV_RUN_NOWAIT), 0);
    fx_close(&f);
}

static void test_too_big_and_split(void **state)
{
    (void)state;
    struct fx f;
    struct prop big, p[10];
    fx_init(&f);
    cons_up(&f);

    /* one command over the entry cap: refused, nothing appended */
    size_t n = 5u << 20;
    uint8_t *blob = calloc(1, n);
    uint64_t before = cons_last_index(f.s.c);
    memset(&big, 0, sizeof big);
    cons_propose(f.s.c, blob, n, prop_cb, &big);
    wait_props(&f, &big, 1);
    assert_int_equal(big.status, BASE_ETOOBIG);
    free(blob);

    /* ten 500 KiB values in one iteration: more than one 4 MiB entry, all committed */
    size_t vlen = 500u * 1024;
    char *value = malloc(vlen + 1);
    memset(value, 'v', vlen);
    value[vlen] = '\0';
    char key[16];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "big%d", i);
        propose_kv(&f, &p[i], key, value, false, 0);
    }
    wait_props(&f, p, 10);
    int entries = 1;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(p[i].status, 0);
        assert_int_equal(p[i].result, 0);
        if (i > 0 && p[i].index != p[i - 1].index) {
            assert_int_equal(p[i].index, p[i - 1].index + 1);
            entries++;
        }
    }
    printf("# 10 x 500 KiB commands: %d entries\n", entries);
    assert_int_equal(entries, 2);
    assert_int_equal(cons_last_index(f.s.c), before + 2);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "big%d", i);
        assert_kv(&f, key, value, p[i].index);
    }
    free(value);
    cons_down(&f);

    /* and the log with them loads back */
    cons_up(&f);
    barrier_sync(&f);
    cons_down(&f);
    fx_close(&f);
}

static void test_start_fails_cleanly(void **state)
{
    (void)state;
    struct fx f;
    char errmsg[BASE_ERRMSG_LEN] = "";
    fx_init(&f);

    /* the server port is taken: rpc_start fails (consensus never starts) */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s, 1), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &len), 0);
    char taken[48];
    snprintf(taken, sizeof taken, "127.0.0.1:%d", ntohs(sa.sin_port));
    struct rpc *port = (struct rpc *)(uintptr_t)1; /* must be reset to NULL */
    struct rpc_config rc = {.id = 1, .address = taken};
    int rv = rpc_start(&f.loop, &rc, &port, errmsg);
    printf("# start on a taken port: %s (%s)\n", base_strerror(rv), errmsg);
    assert_int_equal(rv, UV_EADDRINUSE);
    assert_null(port);
    assert_true(errmsg[0] != '\0');
    close(s);
    /* whatever is closing drains */
    while (uv_run(&f.loop, UV_RUN_NOWAIT))
        ;

    /* no server port, or one for another server */
    struct cons *c = (struct cons *)(uintptr_t)1; /* must be reset to NULL */
    assert_int_equal(cons_start(&f.loop, &f.cfg, &c, errmsg), BASE_EINVAL);
    assert_null(c);
    srv_port_start(&f.loop, &f.s, 2);
    f.cfg.rpc = f.s.rpc;
    assert_int_equal(cons_start(&f.loop, &f.cfg, &c, errmsg), BASE_EINVAL);
    srv_port_stop(&f.loop, &f.s);
    srv_port_start(&f.loop, &f.s, 1);
    f.cfg.rpc = f.s.rpc;

    /* bad configuration */
    f.cfg.heartbeat_timeout_ms = 2000;
    assert_int_equal(cons_start(&f.loop, &f.cfg, &c, errmsg), BASE_EINVAL);
    f.cfg.heartbeat_timeout_ms = 0;
    f.cfg.id = 0;
    assert_int_equal(cons_start(&f.loop, &f.cfg, &c, errmsg), BASE_EINVAL);
    f.cfg.id = 1;
    f.cfg.dir = "/proc/herald-cannot-create-this";
    assert_int_not_equal(cons_start(&f.loop, &f.cfg, &c, errmsg), 0);
    assert_null(c);
    srv_port_stop(&f.loop, &f.s);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_voter_leads),
        cmocka_unit_test(test_group_commit_one_entry),
        cmocka_unit_test(test_propose_from_callback),
        cmocka_unit_test(test_restart_does_not_reapply),
        cmocka_unit_test(test_snapshot_and_restore),
        cmocka_unit_test(test_stop_with_pending),
        cmocka_unit_test(test_stop_in_flight_is_unknown),
        cmocka_unit_test(test_not_leader),
        cmocka_unit_test(test_stop_from_callback),
        cmocka_unit_test(test_too_big_and_split),
        cmocka_unit_test(test_start_fails_cleanly),
    };
    base_log_set_level(BASE_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
