/* Tests resolver/worker.c and resolver/tcp.c with resolver.c and query.c: a resolver on
 * 127.0.0.1 (a free port, two workers) over a temporary zone store, queried over real UDP and
 * TCP sockets from the test thread while the workers run on theirs. UDP answers; a committed
 * write is visible on the next query once the index is published (and not before: the cache);
 * TCP with the length split, a message split, pipelined queries, a zero length, the idle
 * timeout, half-open connections and the per-client cap; REFUSED outside the zone, FORMERR and
 * drops for bad input; a bind conflict is reported; stop joins the workers and the main loop
 * closes cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "resolver/internal.h"
#include "resolver/resolver.h"
#include "zone/fixture.h"

/* ---- fixture --------------------------------------------------------------------------- */

struct fx {
    char dir[64];
    struct zone_store *s;
    uint64_t idx;
    uv_loop_t loop;
    struct rsv *rsv;
    int port;
    struct zone_dns_config zc;
    bool stopped;
};

static void reg(struct fx *f, const char *node, const char *addr, const char *sid,
                const char *sname, uint32_t port)
{
    struct zone_service s = {.id = sid, .name = sname, .port = port};
    store_reg(f->s, ++f->idx, node, addr, "dc1", sid ? &s : NULL);
}

static void set_check(struct fx *f, const char *node, const char *cid, const char *sid,
                      enum zone_health st)
{
    store_check(f->s, ++f->idx, node, cid, sid, st);
}

static void start(struct fx *f, unsigned workers, unsigned idle_ms, unsigned per_client)
{
    char err[BASE_ERRMSG_LEN] = "";
    struct rsv_config rc = {
        .host = "127.0.0.1",
        .port = 0,
        .workers = workers,
        .store = f->s,
        .zone = &f->zc,
        .catalog_index = f->idx,
        .tcp_idle_timeout_ms = idle_ms,
        .tcp_max_conns_per_client = per_client,
    };
    int rc_ = rsv_start(&f->loop, &rc, &f->rsv, err);
    if (rc_)
        fail_msg("rsv_start: %s", err);
    f->port = rsv_port(f->rsv);
    assert_true(f->port > 0);
    assert_int_equal(rsv_workers(f->rsv), workers);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    base_loop_thread_set();
    tmp_store_open(f->dir, "rsv", &f->s);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->zc = (struct zone_dns_config){
        .domain = "consul.",
        .datacenter = "dc1",
        .enable_truncate = true,
        .soa_refresh = 3600,
        .soa_retry = 600,
        .soa_expire = 86400,
    };
    reg(f, "n1", "10.0.0.1", "web1", "web", 8080);
    reg(f, "n2", "10.0.0.2", "web2", "web", 8081);
    reg(f, "n3", "10.0.0.3", "redis1", "redis", 6379);
    *state = f;
    return 0;
}

static void on_stopped(void *data)
{
    struct fx *f = data;
    f->stopped = true;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->rsv) {
        rsv_stop(f->rsv, on_stopped, f);
        assert_false(f->stopped); /* never inside the call */
        assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
        assert_true(f->stopped);
    }
    assert_int_equal(uv_loop_close(&f->loop), 0);
    tmp_store_close(f->dir, f->s);
    free(f);
    return 0;
}

/* ---- client side ----------------------------------------------------------------------- */

static size_t make_query(uint8_t *out, size_t cap, const char *name, ldns_rr_type type, uint16_t id,
                         uint16_t edns_size)
{
    ldns_pkt *p = NULL;
    uint8_t *wire = NULL;
    size_t n = 0;

    assert_int_equal(ldns_pkt_query_new_frm_str(&p, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
                     LDNS_STATUS_OK);
    ldns_pkt_set_id(p, id);
    if (edns_size)
        ldns_pkt_set_edns_udp_size(p, edns_size);
    assert_int_equal(ldns_pkt2wire(&wire, p, &n), LDNS_STATUS_OK);
    assert_true(n <= cap);
    memcpy(out, wire, n);
    free(wire);
    ldns_pkt_free(p);
    return n;
}

static struct sockaddr_in server_addr(struct fx *f)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)f->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

static void set_timeout(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/* Sends raw bytes over UDP; returns the answer's length (0 on timeout). */
static size_t udp_raw(struct fx *f, const void *msg, size_t n, uint8_t *ans, size_t cap,
                      int timeout_ms)
{
    struct sockaddr_in sa = server_addr(f);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    ssize_t r;

    assert_true(fd >= 0);
    set_timeout(fd, timeout_ms);
    assert_int_equal(sendto(fd, msg, n, 0, (struct sockaddr *)&sa, sizeof sa), (ssize_t)n);
    r = recv(fd, ans, cap, 0);
    close(fd);
    return r > 0 ? (size_t)r : 0;
}

static ldns_pkt *udp_query(struct fx *f, const char *name, ldns_rr_type type, uint16_t id,
                           uint16_t edns_size)
{
    uint8_t q[512], ans[65536];
    size_t n = make_query(q, sizeof q, name, type, id, edns_size);
    size_t got = udp_raw(f, q, n, ans, sizeof ans, 2000);
    ldns_pkt *p = NULL;

    assert_true(got > 0);
    assert_int_equal(ldns_wire2pkt(&p, ans, got), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_id(p), id);
    assert_true(ldns_pkt_qr(p));
    return p;
}

static int tcp_connect(struct fx *f)
{
    struct sockaddr_in sa = server_addr(f);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    set_timeout(fd, 3000);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

static bool recv_all(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, p + got, n - got, 0);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

/* Reads one length-prefixed response and parses it; NULL when the connection closed. */
static ldns_pkt *tcp_read(int fd)
{
    uint8_t len[2], *buf;
    size_t n;
    ldns_pkt *p = NULL;

    if (!recv_all(fd, len, 2))
        return NULL;
    n = (size_t)len[0] << 8 | len[1];
    buf = malloc(n);
    assert_true(recv_all(fd, buf, n));
    assert_int_equal(ldns_wire2pkt(&p, buf, n), LDNS_STATUS_OK);
    free(buf);
    return p;
}

/* True when the server closes the connection within timeout_ms. */
static bool closed_within(int fd, int timeout_ms)
{
    uint8_t b[512];
    set_timeout(fd, timeout_ms);
    for (;;) {
        ssize_t r = recv(fd, b, sizeof b, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return true;
        if (r < 0)
            return false;
    }
}

/* Waits (at most 5 s, polling every 2 ms) until the resolver's stats say that at least n
 * connections were accepted and rejected in all, and at least paused pauses happened: the
 * workers' own account of what they did, instead of a sleep. */
static void wait_stats(struct fx *f, uint64_t n, uint64_t paused)
{
    struct rsv_stats st;
    for (int i = 0; i < 2500; i++) {
        rsv_stats_get(f->rsv, &st);
        if (st.tcp_accepted + st.tcp_rejected >= n && st.tcp_paused >= paused)
            return;
        usleep(2000);
    }
    fail_msg("stats: %llu accepted, %llu rejected, %llu paused; waited for %llu and %llu paused",
             (unsigned long long)st.tcp_accepted, (unsigned long long)st.tcp_rejected,
             (unsigned long long)st.tcp_paused, (unsigned long long)n, (unsigned long long)paused);
}

static size_t count_type(ldns_rr_list *l, ldns_rr_type t)
{
    size_t n = 0;
    for (size_t i = 0; i < ldns_rr_list_rr_count(l); i++)
        if (ldns_rr_get_type(ldns_rr_list_rr(l, i)) == t)
            n++;
    return n;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_udp_answers(void **state)
{
    struct fx *f = *state;
    start(f, 2, 0, 0);
    for (uint16_t id = 1; id <= 20; id++) {
        ldns_pkt *p = udp_query(f, "web.service.consul.", LDNS_RR_TYPE_A, id, 0);
        assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
        assert_true(ldns_pkt_aa(p));
        assert_int_equal(count_type(ldns_pkt_answer(p), LDNS_RR_TYPE_A), 2);
        ldns_pkt_free(p);
    }
    ldns_pkt *p = udp_query(f, "web.service.consul.", LDNS_RR_TYPE_SRV, 99, 1232);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_int_equal(count_type(ldns_pkt_answer(p), LDNS_RR_TYPE_SRV), 2);
    assert_true(count_type(ldns_pkt_additional(p), LDNS_RR_TYPE_A) >= 2);
    ldns_pkt_free(p);
    p = udp_query(f, "missing.service.consul.", LDNS_RR_TYPE_A, 100, 0);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    assert_int_equal(count_type(ldns_pkt_authority(p), LDNS_RR_TYPE_SOA), 1);
    ldns_pkt_free(p);

    struct rsv_stats st;
    rsv_stats_get(f->rsv, &st);
    assert_true(st.udp_queries >= 22);
    assert_true(st.cache_hits >= 1); /* 20 identical queries over at most 2 workers */
}

static void test_write_visible_after_publish(void **state)
{
    struct fx *f = *state;
    ldns_pkt *p;

    start(f, 2, 0, 0);
    p = udp_query(f, "redis.service.consul.", LDNS_RR_TYPE_A, 1, 0);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);

    /* A new instance, committed but not published: cached answers may still be served... */
    reg(f, "n4", "10.0.0.4", "redis2", "redis", 6379);
    /* ...published: the very next query sees it, on every worker. */
    rsv_catalog_changed(f->rsv, f->idx);
    for (uint16_t id = 2; id < 12; id++) {
        p = udp_query(f, "redis.service.consul.", LDNS_RR_TYPE_A, id, 0);
        assert_int_equal(ldns_pkt_ancount(p), 2);
        ldns_pkt_free(p);
    }
    /* A failing check hides an instance on the next query. */
    set_check(f, "n4", "c1", "redis2", ZONE_HEALTH_CRITICAL);
    rsv_catalog_changed(f->rsv, f->idx);
    for (uint16_t id = 12; id < 22; id++) {
        p = udp_query(f, "redis.service.consul.", LDNS_RR_TYPE_A, id, 0);
        assert_int_equal(ldns_pkt_ancount(p), 1);
        ldns_pkt_free(p);
    }
    set_check(f, "n4", "c1", "redis2", ZONE_HEALTH_PASSING);
    rsv_catalog_changed(f->rsv, f->idx);
    p = udp_query(f, "redis.service.consul.", LDNS_RR_TYPE_A, 30, 0);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    ldns_pkt_free(p);
}

static void test_cache_serves_until_published(void **state)
{
    struct fx *f = *state;
    ldns_pkt *p;

    start(f, 1, 0, 0); /* one worker: one cache */
    p = udp_query(f, "redis.service.consul.", LDNS_RR_TYPE_A, 1, 0);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
    reg(f, "n4", "10.0.0.4", "redis2", "redis", 6379);
    p = udp_query(f, "redis.service.consul.", LDNS_RR_TYPE_A, 2, 0);
    assert_int_equal(ldns_pkt_ancount(p), 1); /* the cached answer */
    ldns_pkt_free(p);
    rsv_catalog_changed(f->rsv, f->idx);
    p = udp_query(f, "redis.service.consul.", LDNS_RR_TYPE_A, 3, 0);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    ldns_pkt_free(p);
    struct rsv_stats st;
    rsv_stats_get(f->rsv, &st);
    assert_int_equal(st.cache_hits, 1);
    assert_int_equal(st.cache_misses, 2);
}

static void test_case_and_id_from_the_query_on_a_hit(void **state)
{
    struct fx *f = *state;
    uint8_t q[512], ans[4096];
    size_t n, got;

    start(f, 1, 0, 0);
    for (int i = 0; i < 3; i++) {
        n = make_query(q, sizeof q, i == 1 ? "WeB.SeRvIcE.CoNsUl." : "web.service.consul.",
                       LDNS_RR_TYPE_A, (uint16_t)(0x4000 + i), 0);
        got = udp_raw(f, q, n, ans, sizeof ans, 2000);
        assert_true(got > n - 0);
        assert_int_equal(ans[0], q[0]);
        assert_int_equal(ans[1], q[1]);
        assert_memory_equal(ans + 12, q + 12, n - 12); /* question as sent */
    }
    struct rsv_stats st;
    rsv_stats_get(f->rsv, &st);
    assert_int_equal(st.cache_hits, 2);
}

static void test_refused_formerr_and_drops(void **state)
{
    struct fx *f = *state;
    uint8_t ans[4096];
    ldns_pkt *p;

    start(f, 2, 0, 0);
    p = udp_query(f, "example.com.", LDNS_RR_TYPE_A, 7, 0);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
    ldns_pkt_free(p);

    /* QDCOUNT 2 with a readable header: FORMERR. */
    uint8_t two[] = {0x12, 0x34, 0x01, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0,
                     0,    0,    0,    1,    0,    1,    0, 0, 1, 0, 1};
    size_t got = udp_raw(f, two, sizeof two, ans, sizeof ans, 2000);
    assert_true(got >= 12);
    assert_int_equal(ans[0], 0x12);
    assert_int_equal(ans[3] & 0x0f, 1);
    /* A truncated header, a response (QR=1), an empty datagram: no answer. */
    uint8_t shorty[] = {0x12, 0x34, 0x01};
    assert_int_equal(udp_raw(f, shorty, sizeof shorty, ans, sizeof ans, 300), 0);
    uint8_t q[512];
    size_t n = make_query(q, sizeof q, "web.service.consul.", LDNS_RR_TYPE_A, 9, 0);
    q[2] |= 0x80;
    assert_int_equal(udp_raw(f, q, n, ans, sizeof ans, 300), 0);
    assert_int_equal(udp_raw(f, q, 0, ans, sizeof ans, 300), 0);
    /* Still answering. */
    p = udp_query(f, "web.service.consul.", LDNS_RR_TYPE_A, 10, 0);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    ldns_pkt_free(p);
}

static void test_udp_size_limits(void **state)
{
    struct fx *f = *state;
    char node[32], id[32], addr[32];
    ldns_pkt *p;

    for (int i = 0; i < 60; i++) {
        snprintf(node, sizeof node, "big%02d", i);
        snprintf(id, sizeof id, "api%02d", i);
        snprintf(addr, sizeof addr, "10.1.0.%d", i + 1);
        reg(f, node, addr, id, "api", 9000);
    }
    start(f, 2, 0, 0);
    /* 512 without EDNS: truncated, TC. */
    p = udp_query(f, "api.service.consul.", LDNS_RR_TYPE_A, 1, 0);
    assert_true(ldns_pkt_tc(p));
    assert_true(ldns_pkt_ancount(p) < 60);
    ldns_pkt_free(p);
    /* EDNS 4096: all 60 A records fit (16 bytes each). */
    p = udp_query(f, "api.service.consul.", LDNS_RR_TYPE_A, 2, 4096);
    assert_false(ldns_pkt_tc(p));
    assert_int_equal(ldns_pkt_ancount(p), 60);
    ldns_pkt_free(p);
    /* TCP: everything, SRV with additional too. */
    int fd = tcp_connect(f);
    uint8_t q[514];
    size_t n = make_query(q + 2, sizeof q - 2, "api.service.consul.", LDNS_RR_TYPE_SRV, 3, 0);
    q[0] = (uint8_t)(n >> 8);
    q[1] = (uint8_t)n;
    send_all(fd, q, n + 2);
    p = tcp_read(fd);
    assert_non_null(p);
    assert_false(ldns_pkt_tc(p));
    assert_int_equal(ldns_pkt_ancount(p), 60);
    ldns_pkt_free(p);
    close(fd);
}

static void test_tcp_split_and_pipelined(void **state)
{
    struct fx *f = *state;
    uint8_t buf[4096];
    size_t at = 0;
    const char *names[] = {"web.service.consul.", "redis.service.consul.", "n1.node.consul.",
                           "missing.service.consul."};

    start(f, 2, 0, 0);
    for (size_t i = 0; i < BASE_ARRAY_LEN(names); i++) {
        size_t n = make_query(buf + at + 2, sizeof buf - at - 2, names[i], LDNS_RR_TYPE_A,
                              (uint16_t)(100 + i), 0);
        buf[at] = (uint8_t)(n >> 8);
        buf[at + 1] = (uint8_t)n;
        at += n + 2;
    }
    int fd = tcp_connect(f);
    /* One byte of the length, then the other with half the message, then the rest of all
     * four queries in one write. */
    send_all(fd, buf, 1);
    usleep(20000);
    send_all(fd, buf + 1, 10);
    usleep(20000);
    send_all(fd, buf + 11, at - 11);
    for (size_t i = 0; i < BASE_ARRAY_LEN(names); i++) {
        ldns_pkt *p = tcp_read(fd);
        assert_non_null(p);
        assert_int_equal(ldns_pkt_id(p), 100 + i); /* in order */
        assert_int_equal(ldns_pkt_get_rcode(p), i == 3 ? LDNS_RCODE_NXDOMAIN : LDNS_RCODE_NOERROR);
        ldns_pkt_free(p);
    }
    /* Half-open: a query then shutdown(SHUT_WR): answered, then closed. */
    send_all(fd, buf, 2 + ((size_t)buf[0] << 8 | buf[1]));
    shutdown(fd, SHUT_WR);
    ldns_pkt *p = tcp_read(fd);
    assert_non_null(p);
    assert_int_equal(ldns_pkt_id(p), 100);
    ldns_pkt_free(p);
    assert_true(closed_within(fd, 2000));
    close(fd);
}

/* Thousands of pipelined queries with large answers from a client that reads late: answering
 * pauses while the queued answers are over the bound, and every query is still answered, in
 * order. */
static void test_tcp_backpressure_answers_everything_in_order(void **state)
{
    struct fx *f = *state;
    char node[32], id[32], addr[32];
    enum { N = 3000 };
    uint8_t one[514];

    for (int i = 0; i < 60; i++) {
        snprintf(node, sizeof node, "big%02d", i);
        snprintf(id, sizeof id, "api%02d", i);
        snprintf(addr, sizeof addr, "10.1.0.%d", i + 1);
        reg(f, node, addr, id, "api", 9000);
    }
    start(f, 1, 0, 0);
    size_t n = make_query(one + 2, sizeof one - 2, "api.service.consul.", LDNS_RR_TYPE_SRV, 0, 0);
    one[0] = (uint8_t)(n >> 8);
    one[1] = (uint8_t)n;
    size_t total = (n + 2) * N, sent = 0;
    uint8_t *out = malloc(total);
    for (int i = 0; i < N; i++) {
        memcpy(out + i * (n + 2), one, n + 2);
        out[i * (n + 2) + 2] = (uint8_t)(i >> 8); /* the ID */
        out[i * (n + 2) + 3] = (uint8_t)i;
    }
    int fd = tcp_connect(f);
    /* Send without reading for a while: the server must stop answering, not buffer 3000
     * answers of ~4 KiB. */
    while (sent < total) {
        ssize_t r = send(fd, out + sent, total - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r <= 0)
            break;
        sent += (size_t)r;
    }
    wait_stats(f, 1, 1); /* the server stopped answering until we read */
    int next = 0;
    size_t have = 0;
    uint8_t *in = malloc(70000);
    while (next < N) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN | (sent < total ? POLLOUT : 0)};
        assert_int_equal(poll(&pfd, 1, 5000), 1);
        if ((pfd.revents & POLLOUT) && sent < total) {
            ssize_t r = send(fd, out + sent, total - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (r > 0)
                sent += (size_t)r;
        }
        if (pfd.revents & POLLIN) {
            ssize_t r = recv(fd, in + have, 70000 - have, 0);
            assert_true(r > 0);
            have += (size_t)r;
            for (;;) {
                if (have < 2)
                    break;
                size_t mlen = (size_t)in[0] << 8 | in[1];
                if (have < 2 + mlen)
                    break;
                assert_true(mlen > 1000);
                assert_int_equal((int)in[2] << 8 | in[3], next);
                next++;
                memmove(in, in + 2 + mlen, have - 2 - mlen);
                have -= 2 + mlen;
            }
        }
    }
    assert_int_equal(next, N);
    close(fd);
    free(in);
    free(out);
    struct rsv_stats st;
    rsv_stats_get(f->rsv, &st);
    assert_true(st.tcp_paused >= 1);
}

static void test_tcp_zero_length_closes(void **state)
{
    struct fx *f = *state;
    start(f, 1, 0, 0);
    int fd = tcp_connect(f);
    uint8_t zero[2] = {0, 0};
    send_all(fd, zero, 2);
    assert_true(closed_within(fd, 2000));
    close(fd);
}

static void test_tcp_idle_timeout_bounds_slow_clients(void **state)
{
    struct fx *f = *state;
    uint8_t q[514];
    start(f, 1, 300, 0);

    /* Silent: closed after the idle timeout. */
    int fd = tcp_connect(f);
    assert_true(closed_within(fd, 2000));
    close(fd);

    /* Dribbling a query one byte per 100 ms over more than the timeout: closed, not waited on
     * forever. */
    size_t n = make_query(q + 2, sizeof q - 2, "web.service.consul.", LDNS_RR_TYPE_A, 5, 0);
    q[0] = (uint8_t)(n >> 8);
    q[1] = (uint8_t)n;
    fd = tcp_connect(f);
    bool closed = false;
    for (size_t i = 0; i < n + 2 && !closed; i++) {
        if (send(fd, q + i, 1, MSG_NOSIGNAL) != 1)
            closed = true;
        usleep(100000);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) == 1)
            closed = true;
    }
    assert_true(closed);
    assert_true(closed_within(fd, 2000));
    close(fd);

    struct rsv_stats st;
    rsv_stats_get(f->rsv, &st);
    assert_int_equal(st.tcp_idle_closed, 2);
}

static void test_tcp_per_client_cap(void **state)
{
    struct fx *f = *state;
    int fds[3], open_fds[2], n_open = 0, n_closed = 0;
    uint8_t q[514];

    start(f, 2, 0, 2);
    for (int i = 0; i < 3; i++)
        fds[i] = tcp_connect(f);
    /* Two workers accept in any order: whichever connection came third is closed. */
    wait_stats(f, 3, 0);
    for (int i = 0; i < 3; i++) {
        if (closed_within(fds[i], 300)) {
            n_closed++;
            close(fds[i]);
        } else {
            assert_true(n_open < 2);
            set_timeout(fds[i], 3000);
            open_fds[n_open++] = fds[i];
        }
    }
    assert_int_equal(n_closed, 1);
    size_t n = make_query(q + 2, sizeof q - 2, "web.service.consul.", LDNS_RR_TYPE_A, 5, 0);
    q[0] = (uint8_t)(n >> 8);
    q[1] = (uint8_t)n;
    for (int i = 0; i < 2; i++) {
        send_all(open_fds[i], q, n + 2);
        ldns_pkt *p = tcp_read(open_fds[i]);
        assert_non_null(p);
        ldns_pkt_free(p);
    }
    close(open_fds[0]);
    /* A slot is free again (the server sees the close asynchronously: retry briefly). */
    bool ok = false;
    for (int tries = 0; tries < 50 && !ok; tries++) {
        int fd = tcp_connect(f);
        send_all(fd, q, n + 2);
        ldns_pkt *p = tcp_read(fd);
        ok = p != NULL;
        ldns_pkt_free(p);
        close(fd);
        if (!ok)
            usleep(20000);
    }
    assert_true(ok);
    close(open_fds[1]);
    struct rsv_stats st;
    rsv_stats_get(f->rsv, &st);
    assert_true(st.tcp_rejected >= 1);
}

static struct sockaddr_storage v4(unsigned a, unsigned b, unsigned c, unsigned d)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(a << 24 | b << 16 | c << 8 | d);
    return ss;
}

static struct sockaddr_storage v6(uint16_t w3, uint16_t w7)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    uint8_t *b = sin6->sin6_addr.s6_addr;
    b[0] = 0x20, b[1] = 0x01, b[2] = 0x0d, b[3] = 0xb8; /* 2001:db8:0:w3::w7 */
    b[6] = (uint8_t)(w3 >> 8), b[7] = (uint8_t)w3;
    b[14] = (uint8_t)(w7 >> 8), b[15] = (uint8_t)w7;
    return ss;
}

/* Admits from each address in turn, n_per times, until one is refused; the number admitted. */
static unsigned admit_all(struct rsv *r, const struct sockaddr_storage *addrs, unsigned n,
                          unsigned n_per)
{
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++)
        for (unsigned k = 0; k < n_per; k++)
            ok += rsv__conn_admit(r, &addrs[i]);
    return ok;
}

/* One host with many addresses in one network cannot take every slot: connections count per
 * address (32) and per /24 or /64 (128). */
static void test_tcp_per_network_cap(void **state)
{
    struct fx *f = *state;
    struct sockaddr_storage a[40], b[40];

    start(f, 1, 0, 0);
    for (unsigned i = 0; i < 40; i++) {
        a[i] = v4(192, 0, 2, 1 + i);
        b[i] = v6(7, (uint16_t)(1 + i));
    }
    /* 40 addresses in 192.0.2.0/24, 8 connections each: 128 get in, then the /24 is full */
    assert_int_equal(admit_all(f->rsv, a, 40, 8), 128);
    /* one address alone still meets its own cap first */
    struct sockaddr_storage lone = v4(198, 51, 100, 1);
    assert_int_equal(admit_all(f->rsv, &lone, 1, 40), 32);
    /* the next /24 is another network */
    struct sockaddr_storage next = v4(192, 0, 3, 1);
    assert_true(rsv__conn_admit(f->rsv, &next));
    /* IPv6: the /64 counts, another /64 is another network */
    assert_int_equal(admit_all(f->rsv, b, 40, 8), 128);
    struct sockaddr_storage other64 = v6(8, 1);
    assert_true(rsv__conn_admit(f->rsv, &other64));

    /* every release frees both counts: the same connections fit again */
    for (unsigned i = 0; i < 40; i++)
        for (unsigned k = 0; k < 8 && i * 8 + k < 128; k++) {
            rsv__conn_release(f->rsv, &a[i]);
            rsv__conn_release(f->rsv, &b[i]);
        }
    assert_int_equal(admit_all(f->rsv, a, 40, 8), 128);
    assert_int_equal(admit_all(f->rsv, b, 40, 8), 128);
    for (unsigned i = 0; i < 40; i++)
        for (unsigned k = 0; k < 8 && i * 8 + k < 128; k++) {
            rsv__conn_release(f->rsv, &a[i]);
            rsv__conn_release(f->rsv, &b[i]);
        }
    for (unsigned k = 0; k < 32; k++)
        rsv__conn_release(f->rsv, &lone);
    rsv__conn_release(f->rsv, &next);
    rsv__conn_release(f->rsv, &other64);
    /* all released: 1024 connections from 1024 networks fill the total cap, and no more */
    unsigned ok = 0;
    for (unsigned i = 0; i < 1100; i++) {
        struct sockaddr_storage n = v4(10, i >> 8, i & 0xff, 1);
        ok += rsv__conn_admit(f->rsv, &n);
    }
    assert_int_equal(ok, 1024);
    for (unsigned i = 0; i < 1024; i++) {
        struct sockaddr_storage n = v4(10, i >> 8, i & 0xff, 1);
        rsv__conn_release(f->rsv, &n);
    }
}

static void test_bind_conflict_is_reported(void **state)
{
    struct fx *f = *state;
    char err[BASE_ERRMSG_LEN] = "";
    struct rsv *other = NULL;

    start(f, 2, 0, 0);
    struct rsv_config rc = {
        .host = "127.0.0.1",
        .port = f->port,
        .workers = 1,
        .store = f->s,
        .zone = &f->zc,
    };
    assert_int_not_equal(rsv_start(&f->loop, &rc, &other, err), 0);
    assert_null(other);
    char want[64];
    snprintf(want, sizeof want, "dns 127.0.0.1:%d/udp: address already in use", f->port);
    assert_string_equal(err, want);
    rc.host = "not-an-ip";
    assert_int_not_equal(rsv_start(&f->loop, &rc, &other, err), 0);
}

static void test_ipv6_listener(void **state)
{
    struct fx *f = *state;
    char err[BASE_ERRMSG_LEN] = "";
    struct rsv_config rc = {
        .host = "::1",
        .port = 0,
        .workers = 1,
        .store = f->s,
        .zone = &f->zc,
        .catalog_index = f->idx,
    };
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 sa;
    memset(&sa, 0, sizeof sa);
    sa.sin6_family = AF_INET6;
    sa.sin6_addr = in6addr_loopback;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        skip(); /* no IPv6 loopback here */
    }
    close(fd);
    if (rsv_start(&f->loop, &rc, &f->rsv, err))
        fail_msg("rsv_start ::1: %s", err);
    sa.sin6_port = htons((uint16_t)rsv_port(f->rsv));
    uint8_t q[512], ans[4096];
    size_t n = make_query(q, sizeof q, "web.service.consul.", LDNS_RR_TYPE_A, 77, 0);
    fd = socket(AF_INET6, SOCK_DGRAM, 0);
    set_timeout(fd, 2000);
    assert_int_equal(sendto(fd, q, n, 0, (struct sockaddr *)&sa, sizeof sa), (ssize_t)n);
    assert_true(recv(fd, ans, sizeof ans, 0) > 12);
    assert_int_equal(ans[1], 77);
    close(fd);
}

static void test_stop_with_open_connections(void **state)
{
    struct fx *f = *state;
    start(f, 2, 0, 0);
    int a = tcp_connect(f), b = tcp_connect(f);
    uint8_t partial[3] = {0, 40, 1};
    send_all(b, partial, sizeof partial);
    wait_stats(f, 2, 0); /* both accepted */
    /* teardown stops with both connections open; the loop must still close cleanly */
    rsv_stop(f->rsv, on_stopped, f);
    f->rsv = NULL;
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(f->stopped);
    assert_true(closed_within(a, 2000));
    assert_true(closed_within(b, 2000));
    close(a);
    close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_udp_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_visible_after_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_serves_until_published, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_and_id_from_the_query_on_a_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_formerr_and_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_udp_size_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_split_and_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_backpressure_answers_everything_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tcp_zero_length_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_idle_timeout_bounds_slow_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_per_client_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_per_network_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_conflict_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_open_connections, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
