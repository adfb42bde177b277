/* Tests gossip/swim.c: several engines on one loop over loopback (127.77.0.x, one port per
 * test binary run), with fast timings (probe 100 ms, gossip 20 ms). Three nodes converge with
 * their tags; one that stops answering (its sockets closed, no leave) is marked failed by the
 * others within the suspicion time; a graceful leave is seen as left, never failed; a suspect
 * that is alive refutes with a higher incarnation; a user event reaches every node once; an
 * inbound TCP flood from one source is capped. Every wait is bounded; each test ends with the
 * loop empty (uv_loop_close == 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "gossip/gossip.h"
#include "gossip/swim.h" /* the engine's state: its probe order */
#include "gossip/wire.h"

#define MAXN 5
#define MAXM 8

struct seen {
    char name[32];
    enum gossip_status status;
    int joins, fails, leaves, reaps;
    char role[32];
    uint8_t vsn[6];
};

struct node {
    struct gossip *g;
    char name[32], addr[32];
    uint16_t port;
    struct seen m[MAXM];
    int user_events;
    char last_event[64];
    bool stopped;
};

static uint16_t port_base;

static struct seen *seen_of(struct node *n, const char *name)
{
    for (int i = 0; i < MAXM; i++)
        if (strcmp(n->m[i].name, name) == 0)
            return &n->m[i];
    for (int i = 0; i < MAXM; i++)
        if (!n->m[i].name[0]) {
            snprintf(n->m[i].name, sizeof(n->m[i].name), "%s", name);
            return &n->m[i];
        }
    static struct seen overflow; /* members past MAXM are not followed */
    memset(&overflow, 0, sizeof(overflow));
    return &overflow;
}

static void on_event(void *ctx, const struct gossip_event *ev)
{
    struct node *n = ctx;
    if (ev->kind == GOSSIP_EVENT_USER) {
        n->user_events++;
        snprintf(n->last_event, sizeof(n->last_event), "%s:%.*s", ev->name, (int)ev->payload_len,
                 (const char *)ev->payload);
        return;
    }
    struct seen *s = seen_of(n, ev->node->name);
    s->status = ev->node->status;
    s->joins += ev->kind == GOSSIP_EVENT_JOIN;
    s->fails += ev->kind == GOSSIP_EVENT_FAIL;
    s->leaves += ev->kind == GOSSIP_EVENT_LEAVE;
    s->reaps += ev->kind == GOSSIP_EVENT_REAP;
    memcpy(s->vsn, ev->node->vsn, sizeof(s->vsn));
    for (size_t i = 0; i < ev->node->n_tags; i++)
        if (strcmp(ev->node->tags[i].key, "role") == 0)
            snprintf(s->role, sizeof(s->role), "%s", ev->node->tags[i].value);
}

static void fast_config(struct gossip_config *c)
{
    gossip_config_defaults(c);
    c->probe_interval_ms = 100;
    c->probe_timeout_ms = 40;
    c->gossip_interval_ms = 20;
    c->push_pull_interval_ms = 500;
    c->leave_propagate_ms = 100;
    c->tcp_timeout_ms = 2000;
    c->reconnect_interval_ms = 1000;
}

static void (*tweak)(struct gossip_config *c);
static const uint8_t *pool_key;
static size_t pool_key_len;

static void node_start_at(uv_loop_t *loop, struct node *n, int i, const char *role,
                          const char *addr, uint16_t port)
{
    memset(n, 0, sizeof(*n));
    snprintf(n->name, sizeof(n->name), "n%d", i);
    snprintf(n->addr, sizeof(n->addr), "%s", addr);
    n->port = port;
    struct gossip_tag tags[2] = {{"role", role}, {"dc", "dc1"}};
    struct gossip_config c;
    fast_config(&c);
    c.node_name = n->name;
    c.bind_addr = n->addr;
    c.bind_port = n->port;
    c.tags = tags;
    c.n_tags = 2;
    c.on_event = on_event;
    c.ctx = n;
    c.key = pool_key;
    c.key_len = pool_key_len;
    if (tweak)
        tweak(&c);
    assert_int_equal(gossip_start(loop, &c, &n->g), 0);
}

static void tick(uv_timer_t *t)
{
    BASE_UNUSED(t);
}

static void node_start(uv_loop_t *loop, struct node *n, int i, const char *role)
{
    char addr[32];
    snprintf(addr, sizeof(addr), "127.77.0.%d", i + 1);
    node_start_at(loop, n, i, role, addr, port_base);
}

typedef bool (*pred_fn)(void *ctx);

/* Runs the loop until pred holds or ms have passed. */
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

struct pool {
    uv_loop_t loop;
    struct node n[MAXN];
    int count;
};

static bool all_see(struct pool *p, const char *name, enum gossip_status st)
{
    for (int i = 0; i < p->count; i++) {
        if (p->n[i].stopped || strcmp(p->n[i].name, name) == 0)
            continue;
        struct seen *s = seen_of(&p->n[i], name);
        if (s->status != st)
            return false;
    }
    return true;
}

static bool converged(void *ctx)
{
    struct pool *p = ctx;
    for (int i = 0; i < p->count; i++)
        if (!all_see(p, p->n[i].name, GOSSIP_MEMBER_ALIVE))
            return false;
    return true;
}

static int join_status = 1;
static void on_join(void *ctx, size_t joined, int status)
{
    BASE_UNUSED(ctx);
    join_status = joined ? status : -1;
}

static bool join_done(void *ctx)
{
    BASE_UNUSED(ctx);
    return join_status != 1;
}

static void do_join(struct pool *p, int who, int to)
{
    char addr[64];
    snprintf(addr, sizeof(addr), strchr(p->n[to].addr, ':') ? "[%s]:%u" : "%s:%u", p->n[to].addr,
             p->n[to].port);
    const char *addrs[1] = {addr};
    join_status = 1;
    assert_int_equal(gossip_join(p->n[who].g, addrs, 1, on_join, NULL), 0);
    assert_true(run_until(&p->loop, join_done, NULL, 3000));
    assert_int_equal(join_status, 0);
}

static void pool_up(struct pool *p, int count)
{
    memset(p, 0, sizeof(*p));
    assert_int_equal(uv_loop_init(&p->loop), 0);
    p->count = count;
    for (int i = 0; i < count; i++)
        node_start(&p->loop, &p->n[i], i, i == 0 ? "server" : "client");
    for (int i = 1; i < count; i++)
        do_join(p, i, i - 1);
    assert_true(run_until(&p->loop, converged, p, 5000));
}

static void node_stop(struct pool *p, int i)
{
    gossip_stop(p->n[i].g, NULL, NULL);
    p->n[i].stopped = true;
}

static void pool_down(struct pool *p)
{
    for (int i = 0; i < p->count; i++)
        if (!p->n[i].stopped)
            node_stop(p, i);
    for (int k = 0; k < 10 && uv_run(&p->loop, UV_RUN_NOWAIT); k++)
        ;
    assert_int_equal(uv_loop_close(&p->loop), 0);
}

static void test_three_converge(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 3);
    /* each lists every other alive, with its tags, and itself */
    for (int i = 0; i < 3; i++) {
        assert_string_equal(seen_of(&p.n[i], "n0")->role, "server");
        assert_string_equal(seen_of(&p.n[i], "n2")->role, "client");
        assert_int_equal(seen_of(&p.n[i], p.n[i].name)->status, GOSSIP_MEMBER_ALIVE);
    }
    assert_int_equal(gossip_num_alive(p.n[2].g), 3);
    pool_down(&p);
}

struct fail_wait {
    struct pool *p;
    const char *name;
    enum gossip_status st;
};

static bool others_see(void *ctx)
{
    struct fail_wait *w = ctx;
    return all_see(w->p, w->name, w->st);
}

static void test_stopped_node_marked_failed(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 3);
    uv_update_time(&p.loop);
    uint64_t t0 = uv_now(&p.loop);
    node_stop(&p, 2); /* sockets closed, no leave: to the others it stops answering */
    struct fail_wait w = {&p, "n2", GOSSIP_MEMBER_FAILED};
    /* a probe round (<= 2 intervals here), the probe itself, then the suspicion timeout:
     * SuspicionMult 4 x max(1, log10 3) x 100 ms = 400 ms (no confirmations expected at 3) */
    assert_true(run_until(&p.loop, others_see, &w, 3000));
    uv_update_time(&p.loop);
    uint64_t took = uv_now(&p.loop) - t0;
    print_message("failure detected by both in %llu ms\n", (unsigned long long)took);
    /* at worst: a probe round of two members, the failed probe, the suspicion (700 ms) */
    assert_true(took < 1500);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(seen_of(&p.n[i], "n2")->fails, 1);
        assert_int_equal(seen_of(&p.n[i], "n2")->leaves, 0);
        /* nobody healthy was accused */
        assert_int_equal(seen_of(&p.n[i], p.n[1 - i].name)->fails, 0);
    }
    pool_down(&p);
}

static bool left_done;
static void on_left(void *ctx, int status)
{
    BASE_UNUSED(ctx);
    assert_int_equal(status, 0);
    left_done = true;
}

static bool leave_seen(void *ctx)
{
    struct fail_wait *w = ctx;
    return left_done && all_see(w->p, w->name, w->st);
}

static void test_graceful_leave_is_left(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 3);
    left_done = false;
    assert_int_equal(gossip_leave(p.n[2].g, on_left, NULL), 0);
    struct fail_wait w = {&p, "n2", GOSSIP_MEMBER_LEFT};
    assert_true(run_until(&p.loop, leave_seen, &w, 3000));
    node_stop(&p, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(seen_of(&p.n[i], "n2")->leaves, 1);
        assert_int_equal(seen_of(&p.n[i], "n2")->fails, 0);
    }
    assert_int_equal(seen_of(&p.n[2], "n2")->status, GOSSIP_MEMBER_LEFT);
    pool_down(&p);
}

struct inc_ctx {
    uint32_t inc;
    const char *name;
};
static void member_inc(void *ctx, const struct gossip_node *n)
{
    struct inc_ctx *c = ctx;
    if (strcmp(n->name, c->name) == 0)
        c->inc = n->incarnation;
}

static uint32_t incarnation_at(struct gossip *g, const char *name)
{
    struct inc_ctx c = {0, name};
    gossip_members(g, member_inc, &c);
    return c.inc;
}

struct refute_wait {
    struct pool *p;
    uint32_t above;
};
static bool refuted(void *ctx)
{
    struct refute_wait *w = ctx;
    for (int i = 0; i < 3; i++)
        if (incarnation_at(w->p->n[i].g, "n2") <= w->above)
            return false;
    return true;
}

static void test_alive_suspect_refutes(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 3);
    uint32_t inc = incarnation_at(p.n[0].g, "n2");
    assert_true(inc >= 1);
    /* a stranger accuses n2 to n0 at its current incarnation */
    struct gossip_msg m = {.type = GOSSIP_SUSPECT};
    m.u.suspect = (struct gossip_suspect){inc, "n2", "stranger"};
    struct base_buf b;
    base_buf_init(&b);
    gossip__msg_encode(&b, &m);
    uv_udp_t u;
    uv_udp_init(&p.loop, &u);
    struct sockaddr_in to;
    uv_ip4_addr(p.n[0].addr, p.n[0].port, &to);
    uv_buf_t ub = uv_buf_init((char *)b.data, (unsigned)b.len);
    assert_true(uv_udp_try_send(&u, &ub, 1, (const struct sockaddr *)&to) > 0);
    base_buf_free(&b);
    /* n2 hears it (gossip, or n0's probe carrying it: the buddy system) and refutes */
    struct refute_wait w = {&p, inc};
    assert_true(run_until(&p.loop, refuted, &w, 3000));
    struct gossip_stats st;
    gossip_stats_get(p.n[2].g, &st);
    assert_true(st.refutes >= 1);
    assert_true(st.health >= 1); /* Lifeguard: a refute counts against our own health */
    for (int i = 0; i < 2; i++)
        assert_int_equal(seen_of(&p.n[i], "n2")->fails, 0);
    uv_close((uv_handle_t *)&u, NULL);
    pool_down(&p);
}

static bool events_in(void *ctx)
{
    struct pool *p = ctx;
    for (int i = 0; i < p->count; i++)
        if (p->n[i].user_events < 1)
            return false;
    return true;
}

static void test_user_event_reaches_all_once(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 3);
    assert_int_equal(gossip_event_fire(p.n[1].g, "deploy", (const uint8_t *)"v2", 2, false), 0);
    assert_true(run_until(&p.loop, events_in, &p, 3000));
    /* keep gossiping a while: the retransmits must not deliver it twice */
    struct fail_wait never = {&p, "nobody", GOSSIP_MEMBER_LEFT};
    run_until(&p.loop, others_see, &never, 500);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(p.n[i].user_events, 1);
        assert_string_equal(p.n[i].last_event, "deploy:v2");
    }
    uint8_t big[GOSSIP_SERF_EVENT_SIZE_MAX];
    memset(big, 'x', sizeof(big));
    assert_int_equal(gossip_event_fire(p.n[1].g, "big", big, sizeof(big), false), BASE_ETOOBIG);
    pool_down(&p);
}

struct flood {
    uv_tcp_t c[8];
    uv_connect_t req[8];
    int connected, closed;
};

static void flood_closed(uv_handle_t *h)
{
    struct flood *f = h->data;
    f->closed++;
}

static void flood_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    BASE_UNUSED(h);
    BASE_UNUSED(s);
    static char buf[256];
    *b = uv_buf_init(buf, sizeof(buf));
}

static void flood_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    BASE_UNUSED(b);
    if (n < 0)
        uv_close((uv_handle_t *)s, flood_closed);
}

static void flood_connect(uv_connect_t *req, int status)
{
    struct flood *f = req->handle->data;
    if (status == 0) {
        f->connected++;
        uv_read_start(req->handle, flood_alloc, flood_read);
    }
}

static bool flood_pred(void *ctx)
{
    struct flood *f = ctx;
    return f->connected == 6 && f->closed >= 2;
}

static void test_tcp_connections_capped_per_source(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(uv_loop_init(&p.loop), 0);
    p.count = 1;
    node_start(&p.loop, &p.n[0], 0, "server");
    struct flood f;
    memset(&f, 0, sizeof(f));
    struct sockaddr_in to;
    uv_ip4_addr(p.n[0].addr, p.n[0].port, &to);
    for (int i = 0; i < 6; i++) {
        uv_tcp_init(&p.loop, &f.c[i]);
        f.c[i].data = &f;
        assert_int_equal(
            uv_tcp_connect(&f.req[i], &f.c[i], (const struct sockaddr *)&to, flood_connect), 0);
    }
    /* 4 per source are kept (waiting for a message until tcp_timeout); the others closed */
    assert_true(run_until(&p.loop, flood_pred, &f, 1500));
    struct gossip_stats st;
    gossip_stats_get(p.n[0].g, &st);
    assert_int_equal(st.tcp_refused, 2);
    assert_int_equal(f.closed, 2);
    for (int i = 0; i < 6; i++)
        if (!uv_is_closing((uv_handle_t *)&f.c[i]))
            uv_close((uv_handle_t *)&f.c[i], NULL);
    pool_down(&p);
}

/* Five members: the suspicion of a stopped one starts at its maximum (6 x 4 x log10(5) x
 * 100 ms) and shrinks as the other members' independent suspicions confirm it (Lifeguard's
 * k = SuspicionMult - 2 = 2 confirmations bring it to 4 x 0.699 x 100 ms = 279 ms). */
static void test_five_confirmations_shorten_suspicion(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 5);
    uv_update_time(&p.loop);
    uint64_t t0 = uv_now(&p.loop);
    node_stop(&p, 4);
    struct fail_wait w = {&p, "n4", GOSSIP_MEMBER_FAILED};
    assert_true(run_until(&p.loop, others_see, &w, 3000));
    uv_update_time(&p.loop);
    uint64_t took = uv_now(&p.loop) - t0;
    print_message("failure detected by all four in %llu ms (max suspicion alone: 1677 ms)\n",
                  (unsigned long long)took);
    assert_true(took < 1677); /* without confirmations the suspicion alone takes longer */
    /* the relays' nacks came back: the probers do not blame themselves (Lifeguard) */
    uint64_t nacks = 0;
    for (int i = 0; i < 4; i++) {
        struct gossip_stats st;
        gossip_stats_get(p.n[i].g, &st);
        nacks += st.nacks_in;
        print_message("n%d: probes %llu failed %llu nacks %llu health %u\n", i,
                      (unsigned long long)st.probes, (unsigned long long)st.probe_failures,
                      (unsigned long long)st.nacks_in, st.health);
    }
    assert_true(nacks >= 1);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 4; k++)
            assert_int_equal(seen_of(&p.n[i], p.n[k].name)->fails, 0);
    pool_down(&p);
}

/* A member stopped and started again (same name and address, a new process's incarnation 1)
 * comes back alive: the pool's state says it is dead at a higher incarnation, which the
 * newcomer refutes. */
static void test_failed_member_comes_back(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 3);
    node_stop(&p, 2);
    struct fail_wait w = {&p, "n2", GOSSIP_MEMBER_FAILED};
    assert_true(run_until(&p.loop, others_see, &w, 3000));
    node_start(&p.loop, &p.n[2], 2, "client");
    do_join(&p, 2, 0);
    w.st = GOSSIP_MEMBER_ALIVE;
    assert_true(run_until(&p.loop, others_see, &w, 3000));
    for (int i = 0; i < 2; i++)
        assert_int_equal(seen_of(&p.n[i], "n2")->joins, 2);
    pool_down(&p);
}

/* Lifeguard's local health: probes nobody answers (no nack to excuse them) raise our own
 * score, which stretches the probe interval; answered probes bring it back down. */
static bool health_raised(void *ctx)
{
    struct gossip_stats st;
    gossip_stats_get(ctx, &st);
    return st.health >= 1;
}

static void test_unanswered_probes_raise_health(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 2);
    node_stop(&p, 1);
    assert_true(run_until(&p.loop, health_raised, p.n[0].g, 3000));
    struct gossip_stats st;
    gossip_stats_get(p.n[0].g, &st);
    assert_true(st.probe_failures >= 1);
    pool_down(&p);
}

static void test_encrypted_pool_refuses_another_key(void **state)
{
    BASE_UNUSED(state);
    static const uint8_t k1[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    static const uint8_t k2[32] = {9};
    struct pool p;
    pool_key = k1;
    pool_key_len = sizeof(k1);
    pool_up(&p, 3);
    /* a fourth node under another key: its join is refused, and nobody lists it */
    pool_key = k2;
    pool_key_len = sizeof(k2);
    node_start(&p.loop, &p.n[3], 3, "client");
    p.count = 4;
    char addr[64];
    snprintf(addr, sizeof(addr), "%s:%u", p.n[0].addr, p.n[0].port);
    const char *addrs[1] = {addr};
    join_status = 1;
    assert_int_equal(gossip_join(p.n[3].g, addrs, 1, on_join, NULL), 0);
    assert_true(run_until(&p.loop, join_done, NULL, 3000));
    assert_int_equal(join_status, -1);
    pool_key = NULL;
    pool_key_len = 0;
    struct gossip_stats st;
    gossip_stats_get(p.n[0].g, &st);
    assert_true(st.tcp_bad >= 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(seen_of(&p.n[i], "n3")->joins, 0);
    pool_down(&p);
}

/* Streams that are not what they claim: a push-pull announcing more user state than
 * max_stream, and bytes that are no message at all. Each is refused and closed. */
struct bad_client {
    uv_tcp_t c;
    uv_connect_t req;
    uv_write_t w;
    uv_buf_t buf;
    bool closed;
};

static void bad_closed(uv_handle_t *h)
{
    ((struct bad_client *)h->data)->closed = true;
}

static void bad_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    BASE_UNUSED(b);
    if (n < 0)
        uv_close((uv_handle_t *)s, bad_closed);
}

static void bad_connect(uv_connect_t *req, int status)
{
    struct bad_client *b = req->handle->data;
    assert_int_equal(status, 0);
    assert_int_equal(uv_write(&b->w, req->handle, &b->buf, 1, NULL), 0);
    uv_read_start(req->handle, flood_alloc, bad_read);
}

static bool both_closed(void *ctx)
{
    struct bad_client *b = ctx;
    return b[0].closed && b[1].closed;
}

static void test_bad_streams_refused(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(uv_loop_init(&p.loop), 0);
    p.count = 1;
    node_start(&p.loop, &p.n[0], 0, "server");
    /* [6]{Join: false, Nodes: 0, UserStateLen: 64 MiB} */
    static const uint8_t big[] = {6,   0x83, 0xa4, 'J',  'o',  'i', 'n',  0xc2, 0xa5, 'N', 'o',
                                  'd', 'e',  's',  0x00, 0xac, 'U', 's',  'e',  'r',  'S', 't',
                                  'a', 't',  'e',  'L',  'e',  'n', 0xce, 0x04, 0,    0,   0};
    static const uint8_t junk[] = {0xff, 0xfe, 0xfd, 0xfc};
    struct bad_client b[2];
    memset(b, 0, sizeof(b));
    b[0].buf = uv_buf_init((char *)big, sizeof(big));
    b[1].buf = uv_buf_init((char *)junk, sizeof(junk));
    struct sockaddr_in to;
    uv_ip4_addr(p.n[0].addr, p.n[0].port, &to);
    for (int i = 0; i < 2; i++) {
        uv_tcp_init(&p.loop, &b[i].c);
        b[i].c.data = &b[i];
        assert_int_equal(
            uv_tcp_connect(&b[i].req, &b[i].c, (const struct sockaddr *)&to, bad_connect), 0);
    }
    assert_true(run_until(&p.loop, both_closed, b, 1500));
    struct gossip_stats st;
    gossip_stats_get(p.n[0].g, &st);
    assert_int_equal(st.tcp_bad, 2);
    pool_down(&p);
}

static bool role_is_db(void *ctx)
{
    struct pool *p = ctx;
    for (int i = 0; i < p->count; i++)
        if (strcmp(seen_of(&p->n[i], "n1")->role, "db") != 0)
            return false;
    return true;
}

/* New tags travel as a new alive of ours: every member (us too) gets an update. */
static void test_set_tags_updates_everyone(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 3);
    uint32_t inc = incarnation_at(p.n[1].g, "n1");
    struct gossip_tag tags[1] = {{"role", "db"}};
    assert_int_equal(gossip_set_tags(p.n[1].g, tags, 1), 0);
    assert_true(run_until(&p.loop, role_is_db, &p, 3000));
    assert_true(incarnation_at(p.n[0].g, "n1") > inc);
    struct gossip_stats st;
    gossip_stats_get(p.n[1].g, &st);
    assert_int_equal(st.refutes, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(seen_of(&p.n[i], "n1")->status, GOSSIP_MEMBER_ALIVE);
    pool_down(&p);
}

/* memberlist's TCP fallback probe: a member whose UDP is lost but whose TCP answers (here a
 * fake one at 127.77.0.9 with no UDP socket, acking pings over streams) is never suspected. */
struct deaf {
    uv_tcp_t lst;
    uv_tcp_t conn[16];
    uv_write_t w[16];
    struct base_buf in[16], out[16];
    int n, pings;
};

static void deaf_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    BASE_UNUSED(s);
    struct deaf *d = h->data;
    int i = (int)((uv_tcp_t *)h - d->conn);
    base_buf_reserve(&d->in[i], 4096);
    *b = uv_buf_init((char *)d->in[i].data + d->in[i].len, 4096);
}

static void deaf_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    BASE_UNUSED(b);
    struct deaf *d = s->data;
    int i = (int)((uv_tcp_t *)s - d->conn);
    if (n < 0) {
        uv_read_stop(s);
        return;
    }
    d->in[i].len += (size_t)n;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_msg m;
    bool enc;
    size_t used;
    if (gossip__stream_decode(d->in[i].data, d->in[i].len, 1 << 20, NULL, &a, &m, &enc, &used) ==
            0 &&
        m.type == GOSSIP_PING) {
        d->pings++;
        struct gossip_msg ack = {.type = GOSSIP_ACK};
        ack.u.ack.seq = m.u.ping.seq;
        gossip__msg_encode(&d->out[i], &ack);
        uv_buf_t ub = uv_buf_init((char *)d->out[i].data, (unsigned)d->out[i].len);
        uv_write(&d->w[i], s, &ub, 1, NULL);
        uv_read_stop(s);
    }
    base_arena_close(&a);
}

static void deaf_accept(uv_stream_t *s, int status)
{
    struct deaf *d = s->data;
    if (status < 0 || d->n >= 16)
        return;
    int i = d->n++;
    uv_tcp_init(s->loop, &d->conn[i]);
    d->conn[i].data = d;
    base_buf_init(&d->in[i]);
    base_buf_init(&d->out[i]);
    assert_int_equal(uv_accept(s, (uv_stream_t *)&d->conn[i]), 0);
    uv_read_start((uv_stream_t *)&d->conn[i], deaf_alloc, deaf_read);
}

static bool deaf_pinged(void *ctx)
{
    return ((struct deaf *)ctx)->pings >= 3;
}

static void test_tcp_fallback_probe_keeps_udp_deaf_member_alive(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(uv_loop_init(&p.loop), 0);
    p.count = 1;
    node_start(&p.loop, &p.n[0], 0, "server");
    struct deaf d;
    memset(&d, 0, sizeof(d));
    uv_tcp_init(&p.loop, &d.lst);
    d.lst.data = &d;
    struct sockaddr_in at;
    uv_ip4_addr("127.77.0.9", port_base, &at);
    assert_int_equal(uv_tcp_bind(&d.lst, (const struct sockaddr *)&at, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&d.lst, 16, deaf_accept), 0);
    /* its alive, as if gossiped */
    static const uint8_t ip[4] = {127, 77, 0, 9};
    struct gossip_msg m = {.type = GOSSIP_ALIVE};
    m.u.alive =
        (struct gossip_alive){1, "deaf", {ip, 4}, port_base, {NULL, 0}, true, {1, 5, 2, 2, 5, 5}};
    struct base_buf b;
    base_buf_init(&b);
    gossip__msg_encode(&b, &m);
    uv_udp_t u;
    uv_udp_init(&p.loop, &u);
    struct sockaddr_in to;
    uv_ip4_addr(p.n[0].addr, p.n[0].port, &to);
    uv_buf_t ub = uv_buf_init((char *)b.data, (unsigned)b.len);
    assert_true(uv_udp_try_send(&u, &ub, 1, (const struct sockaddr *)&to) > 0);
    base_buf_free(&b);
    /* three probes answered over TCP only: well past a suspicion (400 ms) had any failed */
    assert_true(run_until(&p.loop, deaf_pinged, &d, 3000));
    struct fail_wait never = {&p, "nobody", GOSSIP_MEMBER_LEFT};
    run_until(&p.loop, others_see, &never, 600);
    struct seen *s = seen_of(&p.n[0], "deaf");
    assert_int_equal(s->joins, 1);
    assert_int_equal(s->fails, 0);
    assert_int_equal(s->status, GOSSIP_MEMBER_ALIVE);
    for (int i = 0; i < d.n; i++) {
        uv_close((uv_handle_t *)&d.conn[i], NULL);
        base_buf_free(&d.in[i]);
    }
    uv_close((uv_handle_t *)&d.lst, NULL);
    uv_close((uv_handle_t *)&u, NULL);
    pool_down(&p);
    for (int i = 0; i < d.n; i++)
        base_buf_free(&d.out[i]);
}

/* Caps: a member table of 3 (us included). Newcomers past it are ignored; once memberlist
 * has forgotten a dead member (gossip_to_the_dead), serf's list, full too, reaps the member
 * failed longest to list the newcomer. */
static void cap3(struct gossip_config *c)
{
    c->max_members = 3;
    c->gossip_to_the_dead_ms = 100;
}

static void free_handle(uv_handle_t *h)
{
    base_free(h);
}

static void fake_msg(uv_loop_t *loop, struct node *to, const struct gossip_msg *m)
{
    struct base_buf b;
    base_buf_init(&b);
    gossip__msg_encode(&b, m);
    uv_udp_t *u = base_malloc(sizeof(*u));
    uv_udp_init(loop, u);
    struct sockaddr_in sa;
    uv_ip4_addr(to->addr, to->port, &sa);
    uv_buf_t ub = uv_buf_init((char *)b.data, (unsigned)b.len);
    assert_true(uv_udp_try_send(u, &ub, 1, (const struct sockaddr *)&sa) > 0);
    uv_close((uv_handle_t *)u, free_handle);
    base_buf_free(&b);
}

static void fake_alive(uv_loop_t *loop, struct node *to, const char *name, uint8_t last)
{
    const uint8_t ip[4] = {127, 77, 1, last};
    struct gossip_msg m = {.type = GOSSIP_ALIVE};
    m.u.alive = (struct gossip_alive){1, name, {ip, 4}, 9, {NULL, 0}, true, {1, 5, 2, 2, 5, 5}};
    fake_msg(loop, to, &m);
}

struct seen_wait {
    struct node *n;
    const char *name;
    int joins, reaps;
    enum gossip_status st;
};
static bool seen_state(void *ctx)
{
    struct seen_wait *w = ctx;
    struct seen *s = seen_of(w->n, w->name);
    return s->joins >= w->joins && s->reaps >= w->reaps && s->status == w->st;
}

static void count_member(void *ctx, const struct gossip_node *n)
{
    BASE_UNUSED(n);
    ++*(size_t *)ctx;
}

static void test_member_caps_reap_the_longest_gone(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(uv_loop_init(&p.loop), 0);
    p.count = 1;
    tweak = cap3;
    node_start(&p.loop, &p.n[0], 0, "server");
    tweak = NULL;
    struct node *n = &p.n[0];
    fake_alive(&p.loop, n, "a", 1);
    fake_alive(&p.loop, n, "b", 2);
    struct seen_wait w = {n, "b", 1, 0, GOSSIP_MEMBER_ALIVE};
    assert_true(run_until(&p.loop, seen_state, &w, 2000));
    fake_alive(&p.loop, n, "c", 3); /* the table is full */
    struct gossip_msg d = {.type = GOSSIP_DEAD};
    d.u.suspect = (struct gossip_suspect){1, "a", "b"};
    fake_msg(&p.loop, n, &d);
    w = (struct seen_wait){n, "a", 1, 0, GOSSIP_MEMBER_FAILED};
    assert_true(run_until(&p.loop, seen_state, &w, 2000));
    assert_int_equal(seen_of(n, "c")->joins, 0);
    /* a is forgotten by memberlist after 100 ms (housekeeping runs each second): c gets in,
     * and serf's full list reaps a for it */
    struct fail_wait never = {&p, "nobody", GOSSIP_MEMBER_LEFT};
    run_until(&p.loop, others_see, &never, 1200);
    fake_alive(&p.loop, n, "c", 3);
    w = (struct seen_wait){n, "c", 1, 0, GOSSIP_MEMBER_ALIVE};
    assert_true(run_until(&p.loop, seen_state, &w, 2000));
    assert_int_equal(seen_of(n, "a")->reaps, 1);
    size_t listed = 0;
    gossip_members(n->g, count_member, &listed);
    assert_int_equal(listed, 3);
    pool_down(&p);
}

/* IPv6: two members on ::1 (distinct ports) join, see each other's address, and one's
 * failure is detected. */
static void test_ipv6_pair(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(uv_loop_init(&p.loop), 0);
    p.count = 2;
    for (int i = 0; i < 2; i++) {
        node_start_at(&p.loop, &p.n[i], i, "client", "::1", (uint16_t)(port_base + i));
    }
    do_join(&p, 1, 0);
    assert_true(run_until(&p.loop, converged, &p, 3000));
    node_stop(&p, 1);
    struct fail_wait w = {&p, "n1", GOSSIP_MEMBER_FAILED};
    assert_true(run_until(&p.loop, others_see, &w, 3000));
    pool_down(&p);
}

/* Consul's force-leave: a failed member made left everywhere; with prune, forgotten. */
static void test_force_leave_makes_failed_left(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 3);
    node_stop(&p, 2);
    struct fail_wait w = {&p, "n2", GOSSIP_MEMBER_FAILED};
    assert_true(run_until(&p.loop, others_see, &w, 3000));
    assert_int_equal(gossip_force_leave(p.n[0].g, "n0", false), BASE_EINVAL);
    assert_int_equal(gossip_force_leave(p.n[0].g, "n2", false), 0);
    w.st = GOSSIP_MEMBER_LEFT;
    assert_true(run_until(&p.loop, others_see, &w, 3000));
    for (int i = 0; i < 2; i++) {
        assert_int_equal(seen_of(&p.n[i], "n2")->leaves, 1);
        assert_int_equal(seen_of(&p.n[i], "n2")->reaps, 0);
    }
    assert_int_equal(gossip_force_leave(p.n[1].g, "n2", true), 0);
    struct seen_wait sw = {&p.n[0], "n2", 1, 1, GOSSIP_MEMBER_LEFT};
    assert_true(run_until(&p.loop, seen_state, &sw, 3000));
    size_t listed = 0;
    gossip_members(p.n[0].g, count_member, &listed);
    assert_int_equal(listed, 2);
    pool_down(&p);
}

/* Joining does not replay the pool's earlier events (serf's ignoreOld, as Consul joins);
 * events after the join arrive. */
static bool n1_got_new(void *ctx)
{
    struct pool *p = ctx;
    return p->n[1].user_events >= 1;
}

static void test_join_does_not_replay_old_events(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 1);
    assert_int_equal(gossip_event_fire(p.n[0].g, "old", (const uint8_t *)"1", 1, false), 0);
    node_start(&p.loop, &p.n[1], 1, "client");
    p.count = 2;
    do_join(&p, 1, 0);
    assert_true(run_until(&p.loop, converged, &p, 3000));
    assert_int_equal(gossip_event_fire(p.n[0].g, "new", (const uint8_t *)"2", 1, false), 0);
    assert_true(run_until(&p.loop, n1_got_new, &p, 3000));
    struct fail_wait never = {&p, "nobody", GOSSIP_MEMBER_LEFT};
    run_until(&p.loop, others_see, &never, 300);
    assert_int_equal(p.n[1].user_events, 1);
    assert_string_equal(p.n[1].last_event, "new:2");
    pool_down(&p);
}

/* Acks carry broadcasts back to the pinger only: a ping whose SourceAddr names another
 * address gets its ack there bare, and a ping-req naming a stranger makes a bare ping (no
 * reflection amplified by our queue); the ping-req's nack comes back. */
struct probe_sock {
    uv_udp_t u;
    uint8_t first;
    size_t len;
    int got;
    uint8_t data[1500]; /* the last packet's first bytes */
};

static void ps_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    BASE_UNUSED(h);
    BASE_UNUSED(s);
    static char buf[65536];
    *b = uv_buf_init(buf, sizeof(buf));
}

static void ps_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *b, const struct sockaddr *from,
                    unsigned flags)
{
    BASE_UNUSED(flags);
    struct probe_sock *ps = h->data;
    if (n <= 0 || !from)
        return;
    ps->first = (uint8_t)b->base[0];
    ps->len = (size_t)n;
    memcpy(ps->data, b->base, ps->len < sizeof(ps->data) ? ps->len : sizeof(ps->data));
    ps->got++;
}

static bool ps_got(void *ctx)
{
    return ((struct probe_sock *)ctx)->got > 0;
}

static void ping_from(struct probe_sock *from, struct node *to, const uint8_t *src_ip,
                      uint16_t src_port)
{
    struct gossip_msg m = {.type = GOSSIP_PING};
    m.u.ping.seq = 7;
    m.u.ping.node = to->name;
    m.u.ping.source_node = "";
    if (src_ip) {
        m.u.ping.source_addr = (struct gossip_bytes){src_ip, 4};
        m.u.ping.source_port = src_port;
    }
    struct base_buf b;
    base_buf_init(&b);
    gossip__msg_encode(&b, &m);
    struct sockaddr_in sa;
    uv_ip4_addr(to->addr, to->port, &sa);
    uv_buf_t ub = uv_buf_init((char *)b.data, (unsigned)b.len);
    assert_true(uv_udp_try_send(&from->u, &ub, 1, (const struct sockaddr *)&sa) > 0);
    base_buf_free(&b);
}

static void test_ack_piggybacks_only_to_the_pinger(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 1);
    uint8_t big[900];
    memset(big, 'x', sizeof(big));
    assert_int_equal(gossip_event_fire(p.n[0].g, "big", big, sizeof(big), false), 0);
    struct probe_sock a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    struct probe_sock *ps[2] = {&a, &b};
    for (int i = 0; i < 2; i++) {
        uv_udp_init(&p.loop, &ps[i]->u);
        ps[i]->u.data = ps[i];
        struct sockaddr_in sa;
        uv_ip4_addr("127.77.0.9", (uint16_t)(port_base + 1 + i), &sa);
        assert_int_equal(uv_udp_bind(&ps[i]->u, (const struct sockaddr *)&sa, 0), 0);
        assert_int_equal(uv_udp_recv_start(&ps[i]->u, ps_alloc, ps_recv), 0);
    }
    static const uint8_t ip9[4] = {127, 77, 0, 9};
    ping_from(&a, &p.n[0], ip9, (uint16_t)(port_base + 2)); /* names b */
    assert_true(run_until(&p.loop, ps_got, &b, 2000));
    assert_int_equal(b.first, GOSSIP_ACK);
    assert_true(b.len < 32);
    ping_from(&a, &p.n[0], NULL, 0); /* answers a itself: the event rides along */
    assert_true(run_until(&p.loop, ps_got, &a, 2000));
    assert_int_equal(a.first, GOSSIP_COMPOUND);
    assert_true(a.len > sizeof(big));
    /* a ping-req naming a stranger (b): b gets a bare ping; the requester (a) a nack */
    a.got = b.got = 0;
    struct gossip_msg ind = {.type = GOSSIP_INDIRECT_PING};
    ind.u.indirect = (struct gossip_indirect_ping){
        9, {ip9, 4}, (uint16_t)(port_base + 2), "stranger", true, {NULL, 0}, 0, ""};
    struct base_buf ib;
    base_buf_init(&ib);
    gossip__msg_encode(&ib, &ind);
    struct sockaddr_in sa;
    uv_ip4_addr(p.n[0].addr, p.n[0].port, &sa);
    uv_buf_t ub = uv_buf_init((char *)ib.data, (unsigned)ib.len);
    assert_true(uv_udp_try_send(&a.u, &ub, 1, (const struct sockaddr *)&sa) > 0);
    assert_true(run_until(&p.loop, ps_got, &b, 2000));
    assert_int_equal(b.first, GOSSIP_PING);
    assert_true(b.len < 128); /* the queued 900-byte event stayed home */
    assert_true(run_until(&p.loop, ps_got, &a, 2000));
    assert_int_equal(a.first, GOSSIP_NACK);
    base_buf_free(&ib);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&ps[i]->u, NULL);
    pool_down(&p);
}

/* Sends n a ping-req from a naming b (a stranger), so n pings b. */
static void relayed_ping(struct node *n, struct probe_sock *a, struct probe_sock *b)
{
    static const uint8_t ip9[4] = {127, 77, 0, 9};
    b->got = 0;
    struct gossip_msg ind = {.type = GOSSIP_INDIRECT_PING};
    ind.u.indirect = (struct gossip_indirect_ping){
        9, {ip9, 4}, (uint16_t)(port_base + 2), "stranger", false, {NULL, 0}, 0, ""};
    struct base_buf ib;
    base_buf_init(&ib);
    gossip__msg_encode(&ib, &ind);
    struct sockaddr_in sa;
    uv_ip4_addr(n->addr, n->port, &sa);
    uv_buf_t ub = uv_buf_init((char *)ib.data, (unsigned)ib.len);
    assert_true(uv_udp_try_send(&a->u, &ub, 1, (const struct sockaddr *)&sa) > 0);
    base_buf_free(&ib);
}

static struct gossip_ping decode_ping(struct probe_sock *b, struct base_arena *ar)
{
    struct gossip_keyring none = {0};
    struct gossip_packet pkt;
    assert_int_equal(gossip__packet_decode(b->data, b->len, &none, ar, &pkt), 0);
    assert_int_equal(pkt.n, 1);
    assert_int_equal(pkt.msgs[0].type, GOSSIP_PING);
    return pkt.msgs[0].u.ping;
}

static void advertise_elsewhere(struct gossip_config *c)
{
    c->advertise_addr = "127.77.0.8";
}

/* Pings leave out their optional source address (about 45 of a ping's 65 bytes, a quarter of
 * the LAN defaults' idle bandwidth) when the engine is bound where it advertises: memberlist
 * answers the packet's sender then. An engine advertising another address keeps them. */
static void test_pings_carry_their_source_only_when_needed(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 1);
    struct probe_sock a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    struct probe_sock *ps[2] = {&a, &b};
    for (int i = 0; i < 2; i++) {
        uv_udp_init(&p.loop, &ps[i]->u);
        ps[i]->u.data = ps[i];
        struct sockaddr_in sa;
        uv_ip4_addr("127.77.0.9", (uint16_t)(port_base + 1 + i), &sa);
        assert_int_equal(uv_udp_bind(&ps[i]->u, (const struct sockaddr *)&sa, 0), 0);
        assert_int_equal(uv_udp_recv_start(&ps[i]->u, ps_alloc, ps_recv), 0);
    }
    struct base_arena ar;
    base_arena_init(&ar);
    struct gossip_ping ping;
    relayed_ping(&p.n[0], &a, &b);
    assert_true(run_until(&p.loop, ps_got, &b, 2000));
    ping = decode_ping(&b, &ar);
    assert_string_equal(ping.node, "stranger");
    assert_int_equal(ping.source_addr.n, 0);
    assert_int_equal(ping.source_port, 0);
    assert_string_equal(ping.source_node, "");
    assert_true(b.len < 32);

    /* n1 advertises 127.77.0.8 while bound to 127.77.0.2: its pings say where to answer */
    tweak = advertise_elsewhere;
    node_start(&p.loop, &p.n[1], 1, "client");
    tweak = NULL;
    p.count = 2;
    relayed_ping(&p.n[1], &a, &b);
    assert_true(run_until(&p.loop, ps_got, &b, 2000));
    ping = decode_ping(&b, &ar);
    static const uint8_t ip8[4] = {127, 77, 0, 8};
    assert_int_equal(ping.source_addr.n, 4);
    assert_memory_equal(ping.source_addr.p, ip8, 4);
    assert_int_equal(ping.source_port, port_base);
    assert_string_equal(ping.source_node, "n1");
    base_arena_close(&ar);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&ps[i]->u, NULL);
    pool_down(&p);
}

/* News of a suspicion is gossiped at once, not at the next gossip tick: with gossip and
 * probes 10 s apart, an accused member still hears of it (and refutes) within a second. */
static void slow_gossip(struct gossip_config *c)
{
    c->gossip_interval_ms = 10000;
    c->probe_interval_ms = 10000;
    c->push_pull_interval_ms = 0;
}

static bool n1_refuted(void *ctx)
{
    struct gossip_stats st;
    gossip_stats_get(ctx, &st);
    return st.refutes >= 1;
}

static void test_suspicion_gossiped_at_once(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    tweak = slow_gossip;
    pool_up(&p, 2);
    tweak = NULL;
    uint32_t inc = incarnation_at(p.n[0].g, "n1");
    struct gossip_msg m = {.type = GOSSIP_SUSPECT};
    m.u.suspect = (struct gossip_suspect){inc, "n1", "stranger"};
    struct base_buf b;
    base_buf_init(&b);
    gossip__msg_encode(&b, &m);
    uv_udp_t u;
    uv_udp_init(&p.loop, &u);
    struct sockaddr_in to;
    uv_ip4_addr(p.n[0].addr, p.n[0].port, &to);
    uv_buf_t ub = uv_buf_init((char *)b.data, (unsigned)b.len);
    assert_true(uv_udp_try_send(&u, &ub, 1, (const struct sockaddr *)&to) > 0);
    base_buf_free(&b);
    assert_true(run_until(&p.loop, n1_refuted, p.n[1].g, 1000));
    assert_int_equal(seen_of(&p.n[0], "n1")->fails, 0);
    uv_close((uv_handle_t *)&u, NULL);
    pool_down(&p);
}

/* A member we hear is suspect is the next one we probe (to confirm the suspicion, or to carry
 * it to the member so it refutes: Lifeguard needs suspicion_mult - 2 confirmations before the
 * minimum timeout), whatever its place in the round-robin: checked for three members in turn
 * (by chance, one of four would be next a quarter of the time), right after the suspect is
 * taken in and before the next probe starts. */
struct suspected_wait {
    struct gossip *g;
    const char *name;
};

static bool suspected(void *ctx)
{
    struct suspected_wait *w = ctx;
    const struct gossip_member *m = gossip__members_find(&w->g->mt, w->name);
    return m && m->state == GOSSIP_STATE_SUSPECT;
}

static bool alive_again(void *ctx)
{
    struct suspected_wait *w = ctx;
    const struct gossip_member *m = gossip__members_find(&w->g->mt, w->name);
    return m && m->state == GOSSIP_STATE_ALIVE;
}

struct self_refuted_wait {
    struct gossip *self;
    const char *name;
    uint32_t suspected_at;
};

static bool self_refuted(void *ctx)
{
    struct self_refuted_wait *r = ctx;
    return incarnation_at(r->self, r->name) > r->suspected_at;
}

static void slow_probes(struct gossip_config *c)
{
    c->probe_interval_ms = 300;
    c->gossip_interval_ms = 10000;
    c->push_pull_interval_ms = 0;
}

static void test_suspect_is_probed_next(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    tweak = slow_probes;
    pool_up(&p, 5);
    tweak = NULL;
    struct gossip *g = p.n[0].g;
    uv_udp_t u;
    uv_udp_init(&p.loop, &u);
    struct sockaddr_in to;
    uv_ip4_addr(p.n[0].addr, p.n[0].port, &to);
    const char *names[3] = {"n2", "n3", "n4"};
    for (int k = 0; k < 3; k++) {
        struct suspected_wait w = {g, names[k]};
        struct gossip_msg m = {.type = GOSSIP_SUSPECT};
        m.u.suspect = (struct gossip_suspect){incarnation_at(g, names[k]), names[k], "stranger"};
        struct base_buf b;
        base_buf_init(&b);
        gossip__msg_encode(&b, &m);
        uv_buf_t ub = uv_buf_init((char *)b.data, (unsigned)b.len);
        assert_true(uv_udp_try_send(&u, &ub, 1, (const struct sockaddr *)&to) > 0);
        base_buf_free(&b);
        assert_true(run_until(&p.loop, suspected, &w, 2000));
        bool probing = g->probe.node && strcmp(g->probe.node, names[k]) == 0;
        bool next = g->probe_idx < g->n_probe && strcmp(g->probe_list[g->probe_idx], names[k]) == 0;
        assert_true(probing || next);
        /* our probe carries the suspicion to the suspect (the buddy system), which refutes;
         * how soon n0 hears the refutation is up to gossip, so that wait is looser */
        struct self_refuted_wait r = {p.n[k + 2].g, names[k], m.u.suspect.incarnation};
        assert_true(run_until(&p.loop, self_refuted, &r, 3000));
        assert_true(run_until(&p.loop, alive_again, &w, 15000));
    }
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < 5; k++)
            assert_int_equal(seen_of(&p.n[i], p.n[k].name)->fails, 0);
    uv_close((uv_handle_t *)&u, NULL);
    pool_down(&p);
}

/* A push-pull of 2,000 members (over 128 KiB, many reads) is taken whole. */
static bool big_merged(void *ctx)
{
    struct pool *p = ctx;
    return gossip_num_alive(p->n[0].g) == 2001;
}

static void test_large_push_pull_over_many_reads(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 1);
    static struct gossip_push_node nodes[2000];
    static char names[2000][16];
    static const uint8_t ip[4] = {127, 77, 2, 1};
    for (int i = 0; i < 2000; i++) {
        snprintf(names[i], sizeof(names[i]), "m%04d", i);
        nodes[i] = (struct gossip_push_node){.name = names[i],
                                             .addr = {ip, 4},
                                             .port = (uint16_t)(1000 + i),
                                             .incarnation = 1,
                                             .state = GOSSIP_STATE_ALIVE,
                                             .has_vsn = true,
                                             .vsn = {1, 5, 2, 2, 5, 5}};
    }
    struct gossip_msg m = {.type = GOSSIP_PUSH_PULL};
    m.u.push_pull = (struct gossip_push_pull){false, 2000, nodes, {NULL, 0}};
    struct base_buf b;
    base_buf_init(&b);
    gossip__msg_encode(&b, &m);
    assert_true(b.len > 2 * 65536);
    struct bad_client c;
    memset(&c, 0, sizeof(c));
    c.buf = uv_buf_init((char *)b.data, (unsigned)b.len);
    uv_tcp_init(&p.loop, &c.c);
    c.c.data = &c;
    struct sockaddr_in to;
    uv_ip4_addr(p.n[0].addr, p.n[0].port, &to);
    assert_int_equal(uv_tcp_connect(&c.req, &c.c, (const struct sockaddr *)&to, bad_connect), 0);
    assert_true(run_until(&p.loop, big_merged, &p, 5000));
    struct gossip_stats st;
    gossip_stats_get(p.n[0].g, &st);
    assert_int_equal(st.tcp_bad, 0);
    if (!uv_is_closing((uv_handle_t *)&c.c))
        uv_close((uv_handle_t *)&c.c, NULL);
    pool_down(&p);
    base_buf_free(&b);
}

static void cap2(struct gossip_config *c)
{
    c->max_members = 2;
}

/* A pool's state larger than our member cap is refused whole: the join fails. */
static void test_join_refuses_state_over_cap(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    pool_up(&p, 3);
    tweak = cap2;
    node_start(&p.loop, &p.n[3], 3, "client");
    tweak = NULL;
    p.count = 4;
    char addr[64];
    snprintf(addr, sizeof(addr), "%s:%u", p.n[0].addr, p.n[0].port);
    const char *addrs[1] = {addr};
    join_status = 1;
    assert_int_equal(gossip_join(p.n[3].g, addrs, 1, on_join, NULL), 0);
    assert_true(run_until(&p.loop, join_done, NULL, 3000));
    assert_int_equal(join_status, -1);
    struct gossip_stats st;
    gossip_stats_get(p.n[3].g, &st);
    assert_int_equal(st.tcp_bad, 1);
    pool_down(&p);
}

static void test_bad_configs_refused(void **state)
{
    BASE_UNUSED(state);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct gossip_config c;
    struct gossip *g = NULL;
    fast_config(&c);
    c.node_name = "x";
    c.bind_addr = "0.0.0.0"; /* nothing to advertise */
    c.bind_port = port_base;
    assert_int_equal(gossip_start(&loop, &c, &g), BASE_EINVAL);
    c.advertise_addr = "not an address";
    assert_int_equal(gossip_start(&loop, &c, &g), BASE_EINVAL);
    c.advertise_addr = "127.77.0.1";
    static const uint8_t k[7];
    c.key = k;
    c.key_len = sizeof(k);
    assert_int_equal(gossip_start(&loop, &c, &g), BASE_EINVAL);
    c.key = NULL;
    c.key_len = 0;
    c.node_name = "";
    assert_int_equal(gossip_start(&loop, &c, &g), BASE_EINVAL);
    /* a port in use: the error, and the loop still closes */
    c.node_name = "x";
    c.bind_addr = "127.77.0.1";
    uv_udp_t u;
    uv_udp_init(&loop, &u);
    struct sockaddr_in sa;
    uv_ip4_addr("127.77.0.1", port_base, &sa);
    assert_int_equal(uv_udp_bind(&u, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(gossip_start(&loop, &c, &g), UV_EADDRINUSE);
    assert_null(g);
    uv_close((uv_handle_t *)&u, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- step 1 of the agent wiring: vsn, bare join hosts, the merge hook, the key warn ------- */

struct vsn_find {
    const char *name;
    uint8_t vsn[6];
    bool found;
};
static void vsn_of(void *ctx, const struct gossip_node *n)
{
    struct vsn_find *f = ctx;
    if (strcmp(n->name, f->name) == 0) {
        memcpy(f->vsn, n->vsn, 6);
        f->found = true;
    }
}

static void fake_alive_full(uv_loop_t *loop, struct node *to, const char *name, uint8_t last,
                            const struct gossip_tag *tags, size_t n_tags, const uint8_t vsn[6])
{
    const uint8_t ip[4] = {127, 77, 1, last};
    struct base_buf meta;
    base_buf_init(&meta);
    if (n_tags)
        gossip__tags_encode(&meta, tags, n_tags);
    struct gossip_msg m = {.type = GOSSIP_ALIVE};
    m.u.alive = (struct gossip_alive){1, name, {ip, 4}, 9, {meta.data, meta.len}, true, {0}};
    memcpy(m.u.alive.vsn, vsn, 6);
    fake_msg(loop, to, &m);
    base_buf_free(&meta);
}

/* Members carry memberlist's six protocol numbers as their alive gave them (what
 * /v1/agent/members reports as ProtocolMin..DelegateCur), in events and in gossip_members. */
static void test_members_carry_protocol_versions(void **state)
{
    BASE_UNUSED(state);
    static const uint8_t ours[6] = {1, 5, 2, 2, 5, 5}, theirs[6] = {1, 5, 3, 2, 5, 4};
    struct pool p;
    pool_up(&p, 2);
    struct vsn_find f = {"n0", {0}, false};
    gossip_members(p.n[1].g, vsn_of, &f);
    assert_true(f.found);
    assert_memory_equal(f.vsn, ours, 6);
    assert_memory_equal(seen_of(&p.n[1], "n0")->vsn, ours, 6);
    assert_memory_equal(seen_of(&p.n[0], "n0")->vsn, ours, 6); /* ourselves too */
    fake_alive_full(&p.loop, &p.n[0], "old", 7, NULL, 0, theirs);
    struct seen_wait w = {&p.n[0], "old", 1, 0, GOSSIP_MEMBER_ALIVE};
    assert_true(run_until(&p.loop, seen_state, &w, 2000));
    assert_memory_equal(seen_of(&p.n[0], "old")->vsn, theirs, 6);
    f = (struct vsn_find){"old", {0}, false};
    gossip_members(p.n[0].g, vsn_of, &f);
    assert_true(f.found);
    assert_memory_equal(f.vsn, theirs, 6);
    pool_down(&p);
}

static size_t join_joined;
static void on_join_n(void *ctx, size_t joined, int status)
{
    BASE_UNUSED(ctx);
    join_joined = joined;
    join_status = status;
}

static void join_list(struct pool *p, int who, const char *const *addrs, size_t n)
{
    join_status = 1;
    join_joined = 99;
    assert_int_equal(gossip_join(p->n[who].g, addrs, n, on_join_n, NULL), 0);
    assert_true(run_until(&p->loop, join_done, NULL, 3000));
}

/* A bare host joins at our own bind port (memberlist's resolveAddr; the old default was 8301,
 * where nothing listens here); a host name is refused as not an IP address without failing
 * the other addresses; our own address "joins" ourselves (counted, changes nothing). */
static void test_join_bare_host_uses_our_port(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(uv_loop_init(&p.loop), 0);
    p.count = 2;
    node_start(&p.loop, &p.n[0], 0, "server");
    node_start(&p.loop, &p.n[1], 1, "client");
    const char *bare[1] = {"127.77.0.1"};
    join_list(&p, 1, bare, 1);
    assert_int_equal(join_status, 0);
    assert_int_equal(join_joined, 1);
    assert_true(run_until(&p.loop, converged, &p, 3000));

    const char *named[2] = {"localhost", "no-such-host.invalid:8301"};
    join_list(&p, 1, named, 2);
    assert_int_equal(join_joined, 0);
    assert_int_equal(join_status, BASE_EINVAL);
    const char *mixed[2] = {"localhost", "127.77.0.1"};
    join_list(&p, 1, mixed, 2);
    assert_int_equal(join_joined, 1);
    assert_int_equal(join_status, 0);

    /* a join list naming ourselves (an agent's -retry-join often does) */
    const char *self[1] = {"127.77.0.2"};
    join_list(&p, 1, self, 1);
    assert_int_equal(join_status, 0);
    assert_int_equal(join_joined, 1);
    size_t listed = 0;
    gossip_members(p.n[1].g, count_member, &listed);
    assert_int_equal(listed, 2);
    assert_int_equal(gossip_num_alive(p.n[1].g), 2);
    assert_int_equal(seen_of(&p.n[1], "n1")->joins, 1);
    pool_down(&p);
}

/* The merge hook: each node refuses a node of another dc than its own (Consul's merge.go);
 * ctx is the node, n2 is the one in dc2. */
static int merge_calls;
static struct pool *dc_pool;
static int refuse_other_dc(void *ctx, const struct gossip_node *nodes, size_t n, char *why,
                           size_t why_len)
{
    const char *our_dc = ctx == &dc_pool->n[2] ? "dc2" : "dc1";
    merge_calls++;
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < nodes[i].n_tags; t++)
            if (strcmp(nodes[i].tags[t].key, "dc") == 0 &&
                strcmp(nodes[i].tags[t].value, our_dc) != 0) {
                snprintf(why, why_len, "member '%s' part of wrong datacenter '%s'", nodes[i].name,
                         nodes[i].tags[t].value);
                return 1;
            }
    return 0;
}

static void node_start_dc(uv_loop_t *loop, struct node *n, int i, const char *dc)
{
    memset(n, 0, sizeof(*n));
    snprintf(n->name, sizeof(n->name), "n%d", i);
    snprintf(n->addr, sizeof(n->addr), "127.77.0.%d", i + 1);
    n->port = port_base;
    struct gossip_tag tags[2] = {{"role", "server"}, {"dc", dc}};
    struct gossip_config c;
    fast_config(&c);
    c.node_name = n->name;
    c.bind_addr = n->addr;
    c.bind_port = n->port;
    c.tags = tags;
    c.n_tags = 2;
    c.on_event = on_event;
    c.ctx = n;
    c.on_merge = refuse_other_dc;
    assert_int_equal(gossip_start(loop, &c, &n->g), 0);
}

static void test_merge_hook_refuses_another_dc(void **state)
{
    BASE_UNUSED(state);
    struct pool p;
    memset(&p, 0, sizeof(p));
    dc_pool = &p;
    assert_int_equal(uv_loop_init(&p.loop), 0);
    p.count = 3;
    for (int i = 0; i < 3; i++)
        node_start_dc(&p.loop, &p.n[i], i, i == 2 ? "dc2" : "dc1");
    do_join(&p, 1, 0);
    p.count = 2;
    assert_true(run_until(&p.loop, converged, &p, 3000));
    p.count = 3;
    int calls = merge_calls;
    /* n2 (dc2) joins n0 (dc1): n0 refuses n2's state, n2 refuses n0's: the join fails */
    char addr[64];
    snprintf(addr, sizeof(addr), "%s:%u", p.n[0].addr, p.n[0].port);
    const char *addrs[1] = {addr};
    join_list(&p, 2, addrs, 1);
    assert_int_equal(join_joined, 0);
    assert_int_equal(join_status, BASE_EACL);
    assert_true(merge_calls >= calls + 2);
    /* an alive of a dc2 node straight to n0 is refused; a dc1 one after it gets in */
    static const uint8_t v[6] = {1, 5, 2, 2, 5, 5};
    const struct gossip_tag t2[1] = {{"dc", "dc2"}}, t1[1] = {{"dc", "dc1"}};
    fake_alive_full(&p.loop, &p.n[0], "stranger", 8, t2, 1, v);
    fake_alive_full(&p.loop, &p.n[0], "friend", 9, t1, 1, v);
    struct seen_wait w = {&p.n[0], "friend", 1, 0, GOSSIP_MEMBER_ALIVE};
    assert_true(run_until(&p.loop, seen_state, &w, 2000));
    /* a few push-pulls later, nobody in dc1 lists n2 or the stranger; n2 lists itself only */
    struct fail_wait never = {&p, "nobody", GOSSIP_MEMBER_LEFT};
    run_until(&p.loop, others_see, &never, 1200);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(seen_of(&p.n[i], "n2")->joins, 0);
        assert_int_equal(seen_of(&p.n[i], "stranger")->joins, 0);
    }
    size_t listed = 0;
    gossip_members(p.n[2].g, count_member, &listed);
    assert_int_equal(listed, 1);
    listed = 0;
    gossip_members(p.n[0].g, count_member, &listed);
    assert_int_equal(listed, 3); /* n0, n1, friend */
    pool_down(&p);
}

/* stderr (where base_log writes) into a temporary file for a while */
static int cap_fd = -1, cap_saved = -1;
static char cap_path[64];
static void capture_start(void)
{
    snprintf(cap_path, sizeof(cap_path), "/tmp/test_swim_logXXXXXX");
    cap_fd = mkstemp(cap_path);
    assert_true(cap_fd >= 0);
    fflush(stderr);
    cap_saved = dup(2);
    assert_true(cap_saved >= 0);
    assert_true(dup2(cap_fd, 2) == 2);
}
static void capture_end(char *buf, size_t n)
{
    fflush(stderr);
    assert_true(dup2(cap_saved, 2) == 2);
    close(cap_saved);
    ssize_t got = pread(cap_fd, buf, n - 1, 0);
    close(cap_fd);
    unlink(cap_path);
    buf[got > 0 ? got : 0] = 0;
}

/* A packet that no installed key opens is logged at warn, naming its source, at most once per
 * 10 s however many arrive (the rest are counted in the next line). */
static void test_undecryptable_packet_warns_once(void **state)
{
    BASE_UNUSED(state);
    static const uint8_t k1[16] = {1}, k2[16] = {2};
    struct pool p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(uv_loop_init(&p.loop), 0);
    p.count = 1;
    pool_key = k1;
    pool_key_len = sizeof(k1);
    node_start(&p.loop, &p.n[0], 0, "server");
    pool_key = NULL;
    pool_key_len = 0;

    capture_start();

    struct base_buf plain, enc;
    base_buf_init(&plain);
    struct gossip_msg m = {.type = GOSSIP_PING};
    m.u.ping.seq = 1;
    m.u.ping.node = "n0";
    gossip__msg_encode(&plain, &m);
    static const uint8_t nonce[12] = {7};
    for (int i = 0; i < 5; i++) {
        base_buf_init(&enc);
        gossip__encrypt(&enc, 1, k2, sizeof(k2), nonce, plain.data, plain.len, NULL, 0);
        uv_udp_t *u = base_malloc(sizeof(*u));
        uv_udp_init(&p.loop, u);
        struct sockaddr_in sa;
        uv_ip4_addr(p.n[0].addr, p.n[0].port, &sa);
        uv_buf_t ub = uv_buf_init((char *)enc.data, (unsigned)enc.len);
        assert_true(uv_udp_try_send(u, &ub, 1, (const struct sockaddr *)&sa) > 0);
        uv_close((uv_handle_t *)u, free_handle);
        base_buf_free(&enc);
    }
    base_buf_free(&plain);
    struct gossip_stats st = {0};
    for (int k = 0; k < 200 && st.udp_bad < 5; k++) {
        struct fail_wait never = {&p, "nobody", GOSSIP_MEMBER_LEFT};
        run_until(&p.loop, others_see, &never, 10);
        gossip_stats_get(p.n[0].g, &st);
    }
    char buf[4096];
    capture_end(buf, sizeof(buf));
    assert_int_equal(st.udp_bad, 5);
    int lines = 0;
    for (const char *q = buf; (q = strstr(q, "no installed key could decrypt a packet from 127."));
         q++)
        lines++;
    assert_int_equal(lines, 1);
    assert_non_null(strstr(buf, " warn gossip: "));
    pool_down(&p);
}

/* A node without a key joining a keyed pool: its plain push-pull is refused, with a warn on the
 * keyed side naming where it came from. */
static void test_keyless_join_of_keyed_pool_warns(void **state)
{
    BASE_UNUSED(state);
    static const uint8_t k1[16] = {3};
    struct pool p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(uv_loop_init(&p.loop), 0);
    p.count = 2;
    pool_key = k1;
    pool_key_len = sizeof(k1);
    node_start(&p.loop, &p.n[0], 0, "server");
    pool_key = NULL;
    pool_key_len = 0;
    node_start(&p.loop, &p.n[1], 1, "client");
    capture_start();
    const char *addrs[1] = {"127.77.0.1"};
    join_list(&p, 1, addrs, 1);
    struct gossip_stats st = {0};
    for (int k = 0; k < 200 && st.tcp_bad < 1; k++) {
        struct fail_wait never = {&p, "nobody", GOSSIP_MEMBER_LEFT};
        run_until(&p.loop, others_see, &never, 10);
        gossip_stats_get(p.n[0].g, &st);
    }
    char buf[4096];
    capture_end(buf, sizeof(buf));
    assert_int_equal(join_joined, 0);
    assert_true(st.tcp_bad >= 1);
    assert_non_null(strstr(buf, "n0: an unencrypted stream was refused (a key is installed) from "
                                "127.77.0.2:")); /* dials leave from the dialer's bind address */
    pool_down(&p);
}

int main(void)
{
    base_loop_thread_set();
    base_log_set_level(BASE_LOG_WARN);
    port_base = (uint16_t)(20000 + (getpid() % 20000));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_converge),
        cmocka_unit_test(test_stopped_node_marked_failed),
        cmocka_unit_test(test_graceful_leave_is_left),
        cmocka_unit_test(test_alive_suspect_refutes),
        cmocka_unit_test(test_user_event_reaches_all_once),
        cmocka_unit_test(test_tcp_connections_capped_per_source),
        cmocka_unit_test(test_five_confirmations_shorten_suspicion),
        cmocka_unit_test(test_failed_member_comes_back),
        cmocka_unit_test(test_unanswered_probes_raise_health),
        cmocka_unit_test(test_encrypted_pool_refuses_another_key),
        cmocka_unit_test(test_bad_streams_refused),
        cmocka_unit_test(test_set_tags_updates_everyone),
        cmocka_unit_test(test_tcp_fallback_probe_keeps_udp_deaf_member_alive),
        cmocka_unit_test(test_member_caps_reap_the_longest_gone),
        cmocka_unit_test(test_bad_configs_refused),
        cmocka_unit_test(test_join_refuses_state_over_cap),
        cmocka_unit_test(test_ipv6_pair),
        cmocka_unit_test(test_force_leave_makes_failed_left),
        cmocka_unit_test(test_join_does_not_replay_old_events),
        cmocka_unit_test(test_ack_piggybacks_only_to_the_pinger),
        cmocka_unit_test(test_large_push_pull_over_many_reads),
        cmocka_unit_test(test_members_carry_protocol_versions),
        cmocka_unit_test(test_join_bare_host_uses_our_port),
        cmocka_unit_test(test_merge_hook_refuses_another_dc),
        cmocka_unit_test(test_undecryptable_packet_warns_once),
        cmocka_unit_test(test_keyless_join_of_keyed_pool_warns),
        cmocka_unit_test(test_pings_carry_their_source_only_when_needed),
        cmocka_unit_test(test_suspicion_gossiped_at_once),
        cmocka_unit_test(test_suspect_is_probed_next),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
