/* Tests gossip's datagram seam (gossip.h: cfg.net.send, gossip_net_deliver): an engine with a
 * send hook opens no UDP socket (its address and port stay free for another UDP bind), every
 * packet it sends goes through the hook, and a datagram given to gossip_net_deliver reaches it
 * as one from the socket would: a ping is answered through the hook, and bytes that do not
 * decode (the same decoder as the socket's) are counted bad and dropped. Two engines whose
 * datagrams only a queue in this test carries (TCP stays real, on 127.79.0.x) join, converge,
 * and see one failed once the queue stops carrying its packets. Every wait is bounded; each
 * test ends with the loop empty. */
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
#include "gossip/wire.h"

static uint16_t port_base;

/* The test's network: datagrams queued by the hooks, delivered from a 1 ms timer. */
#define QMAX 4096
struct dgram {
    int to; /* engine index */
    struct sockaddr_storage from;
    uint8_t *p;
    size_t len;
};

struct tnode {
    struct gossip *g;
    char name[16], addr[32];
    int alive_seen, failed_seen;
    uint64_t sent, sent_bytes;
    bool cut; /* the network drops its packets both ways */
    bool stopped;
};

struct tnet {
    uv_loop_t loop;
    uv_timer_t timer;
    struct tnode n[2];
    struct dgram q[QMAX], batch[QMAX];
    size_t nq;
    /* the last packet a hook saw, for the tests that look at one */
    uint8_t last[2048];
    size_t last_len;
    struct sockaddr_storage last_to;
};
static struct tnet net;

static int addr_index(const struct sockaddr *sa)
{
    if (sa->sa_family != AF_INET)
        return -1;
    char host[32];
    uv_ip4_name((const struct sockaddr_in *)sa, host, sizeof(host));
    for (int i = 0; i < 2; i++)
        if (strcmp(host, net.n[i].addr) == 0 &&
            ntohs(((const struct sockaddr_in *)sa)->sin_port) == port_base)
            return i;
    return -1;
}

static int hook_send(void *ctx, const struct sockaddr *to, const uint8_t *p, size_t len)
{
    struct tnode *from = ctx;
    from->sent++;
    from->sent_bytes += len;
    if (len <= sizeof(net.last)) {
        memcpy(net.last, p, len);
        net.last_len = len;
        memcpy(&net.last_to, to, sizeof(struct sockaddr_in));
    }
    int i = addr_index(to);
    if (i < 0 || from->cut || net.n[i].cut || net.n[i].stopped || net.nq >= QMAX)
        return 0; /* lost on the way */
    struct dgram *d = &net.q[net.nq++];
    d->to = i;
    memset(&d->from, 0, sizeof(d->from));
    uv_ip4_addr(from->addr, port_base, (struct sockaddr_in *)&d->from);
    d->p = base_malloc(len);
    memcpy(d->p, p, len);
    d->len = len;
    return 0;
}

static void on_net_timer(uv_timer_t *t)
{
    BASE_UNUSED(t);
    /* what was queued until now; deliveries may queue more for the next tick */
    size_t n = net.nq;
    memcpy(net.batch, net.q, n * sizeof(*net.batch));
    net.nq = 0;
    for (size_t k = 0; k < n; k++) {
        struct dgram *d = &net.batch[k];
        if (!net.n[d->to].stopped && !net.n[d->to].cut)
            gossip_net_deliver(net.n[d->to].g, (const struct sockaddr *)&d->from, d->p, d->len);
        base_free(d->p);
    }
}

static void on_event(void *ctx, const struct gossip_event *ev)
{
    struct tnode *n = ctx;
    if (ev->kind == GOSSIP_EVENT_JOIN)
        n->alive_seen++;
    if (ev->kind == GOSSIP_EVENT_FAIL)
        n->failed_seen++;
}

static void node_start(int i, bool hook)
{
    struct tnode *n = &net.n[i];
    memset(n, 0, sizeof(*n));
    snprintf(n->name, sizeof(n->name), "t%d", i);
    snprintf(n->addr, sizeof(n->addr), "127.79.0.%d", i + 1);
    struct gossip_config c;
    gossip_config_defaults(&c);
    c.probe_interval_ms = 100;
    c.probe_timeout_ms = 40;
    c.gossip_interval_ms = 20;
    c.push_pull_interval_ms = 500;
    c.tcp_timeout_ms = 2000;
    c.node_name = n->name;
    c.bind_addr = n->addr;
    c.bind_port = port_base;
    c.on_event = on_event;
    c.ctx = n;
    if (hook) {
        c.net.send = hook_send;
        c.net.ctx = n;
    }
    assert_int_equal(gossip_start(&net.loop, &c, &n->g), 0);
}

static void net_up(void)
{
    memset(&net, 0, sizeof(net));
    assert_int_equal(uv_loop_init(&net.loop), 0);
    uv_timer_init(&net.loop, &net.timer);
    uv_timer_start(&net.timer, on_net_timer, 1, 1);
}

static void net_down(void)
{
    for (int i = 0; i < 2; i++)
        if (net.n[i].g && !net.n[i].stopped) {
            gossip_stop(net.n[i].g, NULL, NULL);
            net.n[i].stopped = true;
        }
    for (size_t k = 0; k < net.nq; k++)
        base_free(net.q[k].p);
    net.nq = 0;
    uv_close((uv_handle_t *)&net.timer, NULL);
    for (int k = 0; k < 10 && uv_run(&net.loop, UV_RUN_NOWAIT); k++)
        ;
    assert_int_equal(uv_loop_close(&net.loop), 0);
}

typedef bool (*pred_fn)(void *ctx);
static bool run_until(pred_fn pred, void *ctx, uint64_t ms)
{
    uv_update_time(&net.loop);
    uint64_t end = uv_now(&net.loop) + ms;
    bool ok;
    while (!(ok = pred(ctx)) && uv_now(&net.loop) < end)
        uv_run(&net.loop, UV_RUN_ONCE); /* the net timer ticks every ms */
    return ok;
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

static bool both_see_two(void *ctx)
{
    BASE_UNUSED(ctx);
    return gossip_num_alive(net.n[0].g) == 2 && gossip_num_alive(net.n[1].g) == 2;
}

static bool zero_saw_failure(void *ctx)
{
    BASE_UNUSED(ctx);
    return net.n[0].failed_seen > 0;
}

/* No UDP socket with a hook: another UDP bind on the engine's address and port succeeds. */
static void test_hook_engine_holds_no_udp_socket(void **state)
{
    BASE_UNUSED(state);
    net_up();
    node_start(0, true);
    uv_udp_t u;
    uv_udp_init(&net.loop, &u);
    struct sockaddr_in sa;
    uv_ip4_addr(net.n[0].addr, port_base, &sa);
    assert_int_equal(uv_udp_bind(&u, (const struct sockaddr *)&sa, 0), 0);
    uv_close((uv_handle_t *)&u, NULL);
    net_down();
}

/* A ping given to gossip_net_deliver is answered, and the ack goes out through the hook to the
 * ping's source; bad bytes are counted and dropped. */
struct ack_wait {
    uint32_t seq;
    bool got;
};
static bool acked(void *ctx)
{
    struct ack_wait *w = ctx;
    if (!net.last_len)
        return false;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_packet pkt;
    if (gossip__packet_decode(net.last, net.last_len, NULL, &a, &pkt) == 0)
        for (size_t i = 0; i < pkt.n; i++)
            if (pkt.msgs[i].type == GOSSIP_ACK && pkt.msgs[i].u.ack.seq == w->seq)
                w->got = true;
    base_arena_close(&a);
    return w->got;
}

static void test_deliver_reaches_engine_and_answer_uses_hook(void **state)
{
    BASE_UNUSED(state);
    net_up();
    node_start(0, true);
    static const uint8_t src[4] = {127, 79, 0, 9};
    struct gossip_msg m = {.type = GOSSIP_PING};
    m.u.ping.seq = 4242;
    m.u.ping.node = net.n[0].name;
    m.u.ping.source_node = "x";
    m.u.ping.source_addr = (struct gossip_bytes){src, 4};
    m.u.ping.source_port = 5555;
    struct base_buf b;
    base_buf_init(&b);
    gossip__msg_encode(&b, &m);
    struct sockaddr_in from;
    uv_ip4_addr("127.79.0.9", 5555, &from);
    struct gossip_stats st0, st1;
    gossip_stats_get(net.n[0].g, &st0);
    net.last_len = 0;
    gossip_net_deliver(net.n[0].g, (const struct sockaddr *)&from, b.data, b.len);
    gossip_stats_get(net.n[0].g, &st1);
    assert_int_equal(st1.udp_in, st0.udp_in + 1);
    assert_int_equal(st1.udp_bytes_in, st0.udp_bytes_in + b.len);
    assert_int_equal(st1.udp_bad, st0.udp_bad);
    struct ack_wait w = {4242, false};
    assert_true(run_until(acked, &w, 2000));
    const struct sockaddr_in *to = (const struct sockaddr_in *)&net.last_to;
    assert_int_equal(ntohs(to->sin_port), 5555);
    assert_memory_equal(&to->sin_addr, src, 4);
    gossip_stats_get(net.n[0].g, &st1);
    assert_true(st1.udp_out >= 1);
    assert_int_equal(st1.udp_out, net.n[0].sent); /* every packet went through the hook */
    assert_int_equal(st1.udp_bytes_out, net.n[0].sent_bytes);

    /* garbage, a truncated ping, and a datagram larger than a socket's read: bad, dropped */
    static const uint8_t junk[] = {GOSSIP_PING, 0xc1, 0x13, 0x37}; /* 0xc1: never msgpack */
    gossip_stats_get(net.n[0].g, &st0);
    gossip_net_deliver(net.n[0].g, (const struct sockaddr *)&from, junk, sizeof(junk));
    gossip_net_deliver(net.n[0].g, (const struct sockaddr *)&from, b.data, b.len / 2);
    size_t big_len = GOSSIP_WIRE_UDP_MAX + 1;
    uint8_t *big = base_malloc(big_len);
    memset(big, GOSSIP_PING, big_len);
    gossip_net_deliver(net.n[0].g, (const struct sockaddr *)&from, big, big_len);
    base_free(big);
    gossip_stats_get(net.n[0].g, &st1);
    assert_int_equal(st1.udp_in, st0.udp_in + 3);
    assert_int_equal(st1.udp_bad, st0.udp_bad + 3);
    base_buf_free(&b);
    net_down();
}

/* Two engines on the test's network: they join (TCP, real), converge (gossip over the hooks
 * only), and when the network cuts one off, the other marks it failed. */
static void test_two_engines_over_the_hooks(void **state)
{
    BASE_UNUSED(state);
    net_up();
    node_start(0, true);
    node_start(1, true);
    char addr[64];
    snprintf(addr, sizeof(addr), "%s:%u", net.n[0].addr, port_base);
    const char *addrs[1] = {addr};
    join_status = 1;
    assert_int_equal(gossip_join(net.n[1].g, addrs, 1, on_join, NULL), 0);
    assert_true(run_until(join_done, NULL, 3000));
    assert_int_equal(join_status, 0);
    assert_true(run_until(both_see_two, NULL, 3000));
    /* probes went both ways through the hooks and were answered */
    struct gossip_stats st;
    uv_update_time(&net.loop);
    uint64_t until = uv_now(&net.loop) + 300;
    while (uv_now(&net.loop) < until)
        uv_run(&net.loop, UV_RUN_ONCE);
    for (int i = 0; i < 2; i++) {
        gossip_stats_get(net.n[i].g, &st);
        assert_true(st.probes > 0);
        assert_true(st.udp_in > 0);
        assert_int_equal(st.udp_bad, 0);
        assert_int_equal(st.probe_failures, 0);
        assert_int_equal(st.udp_out, net.n[i].sent);
    }
    assert_int_equal(net.n[0].failed_seen, 0);
    /* cut off t1 (and stop it, so its TCP fallback ping cannot answer either) */
    net.n[1].cut = true;
    gossip_stop(net.n[1].g, NULL, NULL);
    net.n[1].stopped = true;
    assert_true(run_until(zero_saw_failure, NULL, 5000));
    net_down();
}

int main(void)
{
    base_loop_thread_set();
    base_log_set_level(BASE_LOG_WARN);
    port_base = (uint16_t)(20000 + (getpid() % 20000));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hook_engine_holds_no_udp_socket),
        cmocka_unit_test(test_deliver_reaches_engine_and_answer_uses_hook),
        cmocka_unit_test(test_two_engines_over_the_hooks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
