/* Tests gossip/query.c: keyring queries across engines on one loop over loopback (127.79.0.x,
 * one port per run), with fast timings (gossip 20 ms, so a query times out after 320 ms at
 * three members). Install, use, remove and list go across the pool and each member's hook is
 * told; a member that stopped answering makes the query end at its timeout with serf's
 * sentence; the callback never runs inside gossip_keyring; a stop finishes running queries
 * with BASE_ESHUTDOWN; bad arguments and too many queries are refused. Every wait is bounded;
 * each test ends with the loop empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gossip/gossip.h"

#define K1 "AAECAwQFBgcICQoLDA0ODw=="
#define K2 "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM="
#define N  3

struct node {
    struct gossip *g;
    char name[16], addr[32];
    int alive_seen;
    int hook_calls;
    char hook_keys[2][64];
    size_t hook_n;
    bool stopped;
};

struct pool {
    uv_loop_t loop;
    struct node n[N];
};

static uint16_t port;

static void on_event(void *ctx, const struct gossip_event *ev)
{
    struct node *n = ctx;
    if (ev->kind == GOSSIP_EVENT_JOIN)
        n->alive_seen++;
}

static int on_keyring(void *ctx, const char *const *keys, size_t nk, char *why, size_t why_len)
{
    BASE_UNUSED(why);
    BASE_UNUSED(why_len);
    struct node *n = ctx;
    n->hook_calls++;
    n->hook_n = nk;
    for (size_t i = 0; i < nk && i < 2; i++)
        snprintf(n->hook_keys[i], sizeof(n->hook_keys[i]), "%s", keys[i]);
    return 0;
}

static void tick(uv_timer_t *t)
{
    BASE_UNUSED(t);
}

typedef bool (*pred_fn)(void *ctx);

static bool run_until(uv_loop_t *loop, pred_fn pred, void *ctx, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, tick, 5, 5);
    uv_update_time(loop);
    uint64_t end = uv_now(loop) + ms;
    bool ok;
    while (!(ok = pred(ctx)) && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static bool converged(void *ctx)
{
    struct pool *p = ctx;
    for (int i = 0; i < N; i++)
        if (gossip_num_alive(p->n[i].g) != N)
            return false;
    return true;
}

static int joined = -1;
static void on_join(void *ctx, size_t n, int status)
{
    BASE_UNUSED(ctx);
    BASE_UNUSED(status);
    joined = (int)n;
}

static bool join_done(void *ctx)
{
    BASE_UNUSED(ctx);
    return joined >= 0;
}

static void pool_up(struct pool *p, const char *key)
{
    memset(p, 0, sizeof(*p));
    assert_int_equal(uv_loop_init(&p->loop), 0);
    for (int i = 0; i < N; i++) {
        struct node *n = &p->n[i];
        snprintf(n->name, sizeof(n->name), "q%d", i);
        snprintf(n->addr, sizeof(n->addr), "127.79.0.%d", i + 1);
        struct gossip_config c;
        gossip_config_defaults(&c);
        c.probe_interval_ms = 100;
        c.probe_timeout_ms = 40;
        c.gossip_interval_ms = 20;
        c.push_pull_interval_ms = 500;
        c.leave_propagate_ms = 100;
        c.node_name = n->name;
        c.bind_addr = n->addr;
        c.bind_port = port;
        c.on_event = on_event;
        c.on_keyring = on_keyring;
        c.ctx = n;
        const char *ring[1] = {key};
        c.keyring = ring;
        c.n_keyring = key ? 1 : 0;
        assert_int_equal(gossip_start(&p->loop, &c, &n->g), 0);
    }
    for (int i = 1; i < N; i++) {
        char addr[64];
        snprintf(addr, sizeof(addr), "%s:%u", p->n[i - 1].addr, port);
        const char *addrs[1] = {addr};
        joined = -1;
        assert_int_equal(gossip_join(p->n[i].g, addrs, 1, on_join, NULL), 0);
        assert_true(run_until(&p->loop, join_done, NULL, 3000));
        assert_int_equal(joined, 1);
    }
    assert_true(run_until(&p->loop, converged, p, 5000));
}

static void pool_down(struct pool *p)
{
    for (int i = 0; i < N; i++)
        if (!p->n[i].stopped)
            gossip_stop(p->n[i].g, NULL, NULL);
    for (int k = 0; k < 10 && uv_run(&p->loop, UV_RUN_NOWAIT); k++)
        ;
    assert_int_equal(uv_loop_close(&p->loop), 0);
}

/* The result of one query, copied out of the callback. */
struct done {
    int calls;
    int status;
    char error[64];
    size_t num_nodes, num_resp, num_err, n_messages;
    char message0[96];
    size_t k1, k2, p1, p2; /* counts of K1 and K2 among keys and primary keys */
};

static size_t count_of(const struct gossip_key_count *v, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].key, key) == 0)
            return v[i].count;
    return 0;
}

static void on_done(void *ctx, const struct gossip_keyring_result *r)
{
    struct done *d = ctx;
    d->calls++;
    d->status = r->status;
    snprintf(d->error, sizeof(d->error), "%s", r->error ? r->error : "");
    d->num_nodes = r->num_nodes;
    d->num_resp = r->num_resp;
    d->num_err = r->num_err;
    d->n_messages = r->n_messages;
    snprintf(d->message0, sizeof(d->message0), "%s", r->n_messages ? r->messages[0].message : "");
    d->k1 = count_of(r->keys, r->n_keys, K1);
    d->k2 = count_of(r->keys, r->n_keys, K2);
    d->p1 = count_of(r->primary_keys, r->n_primary_keys, K1);
    d->p2 = count_of(r->primary_keys, r->n_primary_keys, K2);
}

static bool is_done(void *ctx)
{
    return ((struct done *)ctx)->calls > 0;
}

static void run_op(struct pool *p, int who, enum gossip_keyring_op op, const char *key,
                   struct done *d)
{
    memset(d, 0, sizeof(*d));
    assert_int_equal(gossip_keyring(p->n[who].g, op, key, on_done, d), 0);
    assert_int_equal(d->calls, 0); /* never inside the call */
    assert_true(run_until(&p->loop, is_done, d, 3000));
    assert_int_equal(d->calls, 1);
}

static void assert_keys(struct node *n, const char *primary, const char *other)
{
    struct base_arena a;
    base_arena_init(&a);
    const char **keys;
    size_t k;
    gossip_keyring_keys(n->g, &a, &keys, &k);
    assert_int_equal(k, other ? 2 : 1);
    assert_string_equal(keys[0], primary);
    if (other)
        assert_string_equal(keys[1], other);
    base_arena_close(&a);
}

static void test_install_use_remove_list_across_the_pool(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, K1);
    struct done d;
    run_op(&p, 1, GOSSIP_KEYRING_INSTALL, K2, &d);
    assert_int_equal(d.status, 0);
    assert_int_equal(d.num_nodes, N);
    assert_int_equal(d.num_resp, N);
    for (int i = 0; i < N; i++) {
        assert_keys(&p.n[i], K1, K2);
        assert_int_equal(p.n[i].hook_calls, 1);
        assert_int_equal(p.n[i].hook_n, 2);
        assert_string_equal(p.n[i].hook_keys[1], K2);
    }
    /* installing it again changes nothing: a success, and no hook */
    run_op(&p, 2, GOSSIP_KEYRING_INSTALL, K2, &d);
    assert_int_equal(d.status, 0);
    assert_int_equal(p.n[0].hook_calls, 1);

    run_op(&p, 0, GOSSIP_KEYRING_USE, K2, &d);
    assert_int_equal(d.status, 0);
    run_op(&p, 2, GOSSIP_KEYRING_LIST, NULL, &d);
    assert_int_equal(d.status, 0);
    assert_int_equal(d.k1, N);
    assert_int_equal(d.k2, N);
    assert_int_equal(d.p2, N);
    assert_int_equal(d.p1, 0);

    run_op(&p, 1, GOSSIP_KEYRING_REMOVE, K2, &d);
    assert_int_equal(d.status, BASE_EINVAL);
    assert_string_equal(d.error, "3/3 nodes reported failure");
    assert_int_equal(d.num_err, N);
    assert_int_equal(d.n_messages, N);
    assert_string_equal(d.message0, "Removing the primary key is not allowed");

    run_op(&p, 1, GOSSIP_KEYRING_REMOVE, K1, &d);
    assert_int_equal(d.status, 0);
    for (int i = 0; i < N; i++) {
        assert_keys(&p.n[i], K2, NULL);
        assert_int_equal(p.n[i].hook_calls, 3);
    }
    /* the pool still talks, under K2 alone */
    assert_true(converged(&p));
    pool_down(&p);
}

static void test_unencrypted_pool_refuses(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, NULL);
    struct done d;
    run_op(&p, 0, GOSSIP_KEYRING_LIST, NULL, &d);
    assert_int_equal(d.status, BASE_EINVAL);
    assert_int_equal(d.num_err, N);
    assert_string_equal(d.message0, "Keyring is empty (encryption not enabled)");
    run_op(&p, 0, GOSSIP_KEYRING_INSTALL, K2, &d);
    assert_string_equal(d.message0, "No keyring to modify (encryption not enabled)");
    assert_int_equal(p.n[1].hook_calls, 0);
    pool_down(&p);
}

static void test_silent_member_ends_at_the_timeout(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, K1);
    /* q2 stops answering (no leave): the others still count it alive for a while */
    gossip_stop(p.n[2].g, NULL, NULL);
    p.n[2].stopped = true;
    struct done d;
    memset(&d, 0, sizeof(d));
    uv_update_time(&p.loop);
    uint64_t t0 = uv_now(&p.loop);
    assert_int_equal(gossip_keyring(p.n[0].g, GOSSIP_KEYRING_LIST, NULL, on_done, &d), 0);
    assert_true(run_until(&p.loop, is_done, &d, 3000));
    uint64_t took = uv_now(&p.loop) - t0;
    /* serf's timeout: 20 ms x 16 x ceil(log10(3 + 1)) */
    assert_true(took >= 300 && took < 1500);
    assert_int_equal(d.status, BASE_EUNKNOWN);
    assert_string_equal(d.error, "2/3 nodes reported success");
    assert_int_equal(d.k1, 2);
    pool_down(&p);
}

static void test_stop_finishes_running_queries(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, K1);
    struct done d[2];
    memset(d, 0, sizeof(d));
    assert_int_equal(gossip_keyring(p.n[0].g, GOSSIP_KEYRING_LIST, NULL, on_done, &d[0]), 0);
    assert_int_equal(gossip_keyring(p.n[0].g, GOSSIP_KEYRING_INSTALL, K2, on_done, &d[1]), 0);
    gossip_stop(p.n[0].g, NULL, NULL);
    p.n[0].stopped = true;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(d[i].calls, 1);
        assert_int_equal(d[i].status, BASE_ESHUTDOWN);
    }
    assert_int_equal(gossip_keyring(p.n[1].g, GOSSIP_KEYRING_LIST, NULL, NULL, NULL), 0);
    pool_down(&p); /* q1's query, its callback NULL, ends in the stop */
}

static void test_bad_arguments_refused(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, K1);
    struct done d;
    memset(&d, 0, sizeof(d));
    struct gossip *g = p.n[0].g;
    assert_int_equal(gossip_keyring(g, GOSSIP_KEYRING_INSTALL, NULL, on_done, &d), BASE_EINVAL);
    assert_int_equal(gossip_keyring(g, GOSSIP_KEYRING_USE, "not base64!", on_done, &d),
                     BASE_EINVAL);
    assert_int_equal(gossip_keyring(g, (enum gossip_keyring_op)7, K2, on_done, &d), BASE_EINVAL);
    /* a key of the wrong size travels: every member refuses it */
    run_op(&p, 0, GOSSIP_KEYRING_INSTALL, "AAEC", &d);
    assert_int_equal(d.num_err, N);
    assert_string_equal(d.message0, "key size must be 16, 24 or 32 bytes");
    /* 16 at once at most */
    struct done many[17];
    memset(many, 0, sizeof(many));
    for (int i = 0; i < 16; i++)
        assert_int_equal(gossip_keyring(g, GOSSIP_KEYRING_LIST, NULL, on_done, &many[i]), 0);
    assert_int_equal(gossip_keyring(g, GOSSIP_KEYRING_LIST, NULL, on_done, &many[16]),
                     BASE_ETOOBIG);
    assert_true(run_until(&p.loop, is_done, &many[15], 3000));
    for (int i = 0; i < 16; i++)
        assert_int_equal(many[i].status, 0);
    pool_down(&p);
}

int main(void)
{
    base_loop_thread_set();
    base_log_set_level(BASE_LOG_WARN);
    port = (uint16_t)(20000 + (getpid() % 20000));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install_use_remove_list_across_the_pool),
        cmocka_unit_test(test_unencrypted_pool_refuses),
        cmocka_unit_test(test_silent_member_ends_at_the_timeout),
        cmocka_unit_test(test_stop_finishes_running_queries),
        cmocka_unit_test(test_bad_arguments_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
