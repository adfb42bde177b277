/* Tests resolver/recurse.c with the workers: a resolver on 127.0.0.1 (a free port) whose
 * recursion forwards to a scripted upstream, a UDP socket of this test thread that reads what
 * libunbound asks and answers (or stays silent). A forwarded answer is relayed with RA and the
 * client's ID, and asked again is answered from the worker's copy; a silent upstream gives SERVFAIL
 * after the timeout; over max_queries a query gets SERVFAIL at once; a client outside the allow
 * list gets REFUSED without RA, zone answers carry RA only for allowed clients; TCP queries are
 * answered even after the client half-closes, and dropped when it closes; stopping with queries
 * outstanding frees everything (ASan) and the main loop closes cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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
    int up;      /* the scripted upstream's UDP socket */
    int up_port; /* its port */
    bool stopped;
};

static void reg(struct fx *f, const char *node, const char *addr, const char *sid,
                const char *sname)
{
    struct zone_service s = {.id = sid, .name = sname, .port = 80};
    store_reg(f->s, ++f->idx, node, addr, "dc1", &s);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;

    base_loop_thread_set();
    tmp_store_open(f->dir, "rec", &f->s);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->zc = (struct zone_dns_config){
        .domain = "consul.",
        .datacenter = "dc1",
        .enable_truncate = true,
        .soa_refresh = 3600,
        .soa_retry = 600,
        .soa_expire = 86400,
    };
    reg(f, "n1", "10.0.0.1", "web1", "web");
    f->up = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(f->up >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->up, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(f->up, (struct sockaddr *)&sa, &len), 0);
    f->up_port = ntohs(sa.sin_port);
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
        assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
        assert_true(f->stopped);
    }
    assert_int_equal(uv_loop_close(&f->loop), 0);
    close(f->up);
    tmp_store_close(f->dir, f->s);
    free(f);
    return 0;
}

static void start(struct fx *f, unsigned timeout_ms, unsigned max_queries, const char *allow)
{
    char err[BASE_ERRMSG_LEN] = "", fwd[64];
    struct rsv_cidr cidr;
    snprintf(fwd, sizeof fwd, "127.0.0.1:%d", f->up_port);
    const char *fwds[] = {fwd};
    struct rsv_recursion rec = {
        .mode = RSV_RECURSION_FORWARD,
        .forwarders = fwds,
        .n_forwarders = 1,
        .cache_bytes = 4 << 20,
        .timeout_ms = timeout_ms,
        .max_queries = max_queries,
    };
    if (allow) {
        assert_int_equal(rsv_cidr_parse(allow, &cidr), 0);
        rec.allow = &cidr;
        rec.n_allow = 1;
    }
    struct rsv_config rc = {
        .host = "127.0.0.1",
        .port = 0,
        .workers = 1,
        .store = f->s,
        .zone = &f->zc,
        .catalog_index = f->idx,
        .recursion = &rec,
    };
    if (rsv_start(&f->loop, &rc, &f->rsv, err))
        fail_msg("rsv_start: %s", err);
    f->port = rsv_port(f->rsv);
}

/* ---- wire helpers ---------------------------------------------------------------------- */

static size_t make_query(uint8_t *out, const char *name, ldns_rr_type type, uint16_t id)
{
    ldns_pkt *p = NULL;
    uint8_t *wire = NULL;
    size_t n = 0;
    assert_int_equal(ldns_pkt_query_new_frm_str(&p, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
                     LDNS_STATUS_OK);
    ldns_pkt_set_id(p, id);
    assert_int_equal(ldns_pkt2wire(&wire, p, &n), LDNS_STATUS_OK);
    memcpy(out, wire, n);
    free(wire);
    ldns_pkt_free(p);
    return n;
}

static int client(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    return fd;
}

static struct sockaddr_in addr_of(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

static void send_q(struct fx *f, int fd, const char *name, uint16_t id)
{
    uint8_t q[512];
    size_t n = make_query(q, name, LDNS_RR_TYPE_A, id);
    struct sockaddr_in sa = addr_of(f->port);
    assert_int_equal(sendto(fd, q, n, 0, (struct sockaddr *)&sa, sizeof sa), (ssize_t)n);
}

/* Receives one datagram within ms; NULL on timeout. */
static ldns_pkt *recv_pkt(int fd, int ms, struct sockaddr_in *from)
{
    uint8_t buf[65536];
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    socklen_t len = sizeof *from;
    ldns_pkt *p = NULL;
    if (poll(&pfd, 1, ms) != 1)
        return NULL;
    ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)from, &len);
    assert_true(n > 0);
    assert_int_equal(ldns_wire2pkt(&p, buf, (size_t)n), LDNS_STATUS_OK);
    return p;
}

/* The scripted upstream: reads libunbound's next query and answers it with one A record. */
static void upstream_answer_ttl(struct fx *f, const char *addr, unsigned ttl)
{
    struct sockaddr_in from;
    ldns_pkt *q = recv_pkt(f->up, 3000, &from);
    uint8_t *wire = NULL;
    size_t n;
    char rrs[300];

    assert_non_null(q);
    ldns_rr *qrr = ldns_rr_list_rr(ldns_pkt_question(q), 0);
    char *name = ldns_rdf2str(ldns_rr_owner(qrr));
    ldns_pkt_set_qr(q, true);
    ldns_pkt_set_aa(q, true);
    snprintf(rrs, sizeof rrs, "%s %u IN A %s", name, ttl, addr);
    ldns_rr *rr = NULL;
    assert_int_equal(ldns_rr_new_frm_str(&rr, rrs, 300, NULL, NULL), LDNS_STATUS_OK);
    ldns_pkt_push_rr(q, LDNS_SECTION_ANSWER, rr);
    assert_int_equal(ldns_pkt2wire(&wire, q, &n), LDNS_STATUS_OK);
    assert_int_equal(sendto(f->up, wire, n, 0, (struct sockaddr *)&from, sizeof from), (ssize_t)n);
    free(wire);
    free(name);
    ldns_pkt_free(q);
}

static void upstream_answer(struct fx *f, const char *addr)
{
    upstream_answer_ttl(f, addr, 300);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_forwarded_answer_is_relayed(void **state)
{
    struct fx *f = *state;
    struct sockaddr_in from;
    start(f, 3000, 0, NULL);
    int fd = client();

    send_q(f, fd, "www.example.org.", 4711);
    upstream_answer(f, "192.0.2.1");
    ldns_pkt *p = recv_pkt(fd, 3000, &from);
    assert_non_null(p);
    assert_int_equal(ldns_pkt_id(p), 4711);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_true(ldns_pkt_ra(p));
    assert_false(ldns_pkt_aa(p));
    assert_int_equal(ldns_pkt_ancount(p), 1);
    char *a = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 0), 0));
    assert_string_equal(a, "192.0.2.1");
    free(a);
    ldns_pkt_free(p);

    /* the second time from the worker's copy: neither libunbound nor the upstream is asked,
     * and the TTL has not grown */
    send_q(f, fd, "WWW.example.org.", 4712);
    p = recv_pkt(fd, 3000, &from);
    assert_non_null(p);
    assert_int_equal(ldns_pkt_id(p), 4712);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    assert_true(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(p), 0)) <= 300);
    char *qn = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(p), 0)));
    assert_string_equal(qn, "WWW.example.org."); /* the client's case */
    free(qn);
    ldns_pkt_free(p);
    assert_null(recv_pkt(f->up, 100, &from));

    /* a zone answer to an allowed client says RA */
    send_q(f, fd, "web.service.consul.", 5);
    p = recv_pkt(fd, 3000, &from);
    assert_non_null(p);
    assert_true(ldns_pkt_aa(p) && ldns_pkt_ra(p));
    ldns_pkt_free(p);

    struct rsv_stats st;
    rsv_stats_get(f->rsv, &st);
    assert_int_equal(st.recursed, 1);
    assert_int_equal(st.recursion_cache_hits, 1);
    close(fd);
}

static void test_kept_answers_expire_with_their_ttl(void **state)
{
    struct fx *f = *state;
    struct sockaddr_in from;
    start(f, 3000, 0, NULL);
    int fd = client();

    send_q(f, fd, "short.example.org.", 1);
    upstream_answer_ttl(f, "192.0.2.7", 1);
    ldns_pkt *p = recv_pkt(fd, 3000, &from);
    assert_non_null(p);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
    send_q(f, fd, "short.example.org.", 2); /* kept: the upstream is not asked */
    p = recv_pkt(fd, 3000, &from);
    assert_non_null(p);
    assert_int_equal(ldns_pkt_id(p), 2);
    ldns_pkt_free(p);
    assert_null(recv_pkt(f->up, 50, &from));
    usleep(1300 * 1000); /* the TTL ran out: our copy is not used again */
    send_q(f, fd, "short.example.org.", 3);
    /* libunbound is asked again; it asks the upstream unless its own cache, which counts in
     * whole seconds, still holds the answer for a moment */
    struct pollfd pfd = {.fd = f->up, .events = POLLIN};
    if (poll(&pfd, 1, 300) == 1)
        upstream_answer_ttl(f, "192.0.2.8", 60);
    p = recv_pkt(fd, 3000, &from);
    assert_non_null(p);
    assert_int_equal(ldns_pkt_id(p), 3);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    assert_true(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(p), 0)) <= 60);
    ldns_pkt_free(p);
    struct rsv_stats st;
    rsv_stats_get(f->rsv, &st);
    assert_int_equal(st.recursion_cache_hits, 1);
    assert_true(st.recursed >= 2);
    close(fd);
}

static void test_silent_upstream_gives_servfail_after_the_timeout(void **state)
{
    struct fx *f = *state;
    struct sockaddr_in from;
    start(f, 300, 0, NULL);
    int fd = client();

    uint64_t t0 = now_ms();
    send_q(f, fd, "slow.example.org.", 1);
    ldns_pkt *p = recv_pkt(fd, 3000, &from);
    uint64_t took = now_ms() - t0;
    assert_non_null(p);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
    assert_int_equal(ldns_pkt_id(p), 1);
    assert_true(ldns_pkt_ra(p));
    assert_true(took >= 280 && took < 1500);
    ldns_pkt_free(p);
    struct rsv_stats st;
    rsv_stats_get(f->rsv, &st);
    assert_int_equal(st.recursion_timeouts, 1);
    close(fd);
}

static void test_overload_answers_servfail_at_once(void **state)
{
    struct fx *f = *state;
    struct sockaddr_in from;
    start(f, 2000, 3, NULL);
    int fd = client();
    char name[64];

    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "n%d.example.org.", i);
        send_q(f, fd, name, (uint16_t)(100 + i));
    }
    for (int i = 0; i < 2; i++) {
        ldns_pkt *p = recv_pkt(fd, 500, &from);
        assert_non_null(p);
        assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
        assert_true(ldns_pkt_id(p) >= 103);
        ldns_pkt_free(p);
    }
    assert_null(recv_pkt(fd, 200, &from)); /* the other three wait for the upstream */
    struct rsv_stats st;
    rsv_stats_get(f->rsv, &st);
    assert_int_equal(st.recursion_overload, 2);
    assert_int_equal(st.recursed, 3);
    close(fd);
}

static void test_clients_outside_the_allow_list_are_refused(void **state)
{
    struct fx *f = *state;
    struct sockaddr_in from;
    start(f, 2000, 0, "10.0.0.0/8");
    int fd = client();

    send_q(f, fd, "www.example.org.", 7);
    ldns_pkt *p = recv_pkt(fd, 2000, &from);
    assert_non_null(p);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
    assert_false(ldns_pkt_ra(p));
    ldns_pkt_free(p);
    send_q(f, fd, "web.service.consul.", 8);
    p = recv_pkt(fd, 2000, &from);
    assert_non_null(p);
    assert_true(ldns_pkt_aa(p));
    assert_false(ldns_pkt_ra(p));
    ldns_pkt_free(p);
    assert_null(recv_pkt(f->up, 100, &from)); /* nothing went upstream */
    struct rsv_stats st;
    rsv_stats_get(f->rsv, &st);
    assert_int_equal(st.recursion_refused, 1);
    close(fd);
}

static int tcp_connect(struct fx *f)
{
    struct sockaddr_in sa = addr_of(f->port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void tcp_send_q(int fd, const char *name, uint16_t id)
{
    uint8_t buf[514];
    size_t n = make_query(buf + 2, name, LDNS_RR_TYPE_A, id);
    buf[0] = (uint8_t)(n >> 8);
    buf[1] = (uint8_t)n;
    assert_int_equal(write(fd, buf, n + 2), (ssize_t)(n + 2));
}

static void test_tcp_half_closed_client_gets_its_answer(void **state)
{
    struct fx *f = *state;
    struct sockaddr_in from;
    uint8_t buf[4096];
    start(f, 3000, 0, NULL);

    int fd = tcp_connect(f);
    tcp_send_q(fd, "tcp.example.org.", 99);
    shutdown(fd, SHUT_WR);
    upstream_answer(f, "192.0.2.9");
    size_t got = 0;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, 3000), 1);
        ssize_t n = read(fd, buf + got, sizeof buf - got);
        assert_true(n >= 0);
        if (n == 0)
            break; /* closed once everything was answered */
        got += (size_t)n;
    }
    assert_true(got > 2);
    assert_int_equal((size_t)(buf[0] << 8 | buf[1]), got - 2);
    ldns_pkt *p = NULL;
    assert_int_equal(ldns_wire2pkt(&p, buf + 2, got - 2), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_id(p), 99);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
    close(fd);
    (void)from;
}

static void test_stop_with_queries_outstanding_and_closed_clients(void **state)
{
    struct fx *f = *state;
    struct sockaddr_in from;
    start(f, 5000, 0, NULL);
    int fd = client();
    char name[64];

    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "w%d.example.org.", i);
        send_q(f, fd, name, (uint16_t)i);
    }
    /* a TCP client that leaves before its answer */
    int t = tcp_connect(f);
    tcp_send_q(t, "gone.example.org.", 1);
    for (int i = 0; i < 21; i++) { /* libunbound asked for all of them */
        ldns_pkt *q = recv_pkt(f->up, 3000, &from);
        assert_non_null(q);
        ldns_pkt_free(q);
    }
    close(t);
    usleep(50 * 1000);
    close(fd);
    /* teardown stops the resolver with 20 queries outstanding */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_forwarded_answer_is_relayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kept_answers_expire_with_their_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_upstream_gives_servfail_after_the_timeout,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_overload_answers_servfail_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clients_outside_the_allow_list_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tcp_half_closed_client_gets_its_answer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_queries_outstanding_and_closed_clients,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
