/* Tests zone/dns_answer.c on the standard fixture: shuffling per query (distribution, the RNG
 * state, the layout), truncation arithmetic swept over every size (answers then Additional,
 * TC only for answers), case echo, health changes as checks move, the SOA serial, PTR after
 * deregistration, more answer RRs than the layout holds, small buffers and limits, config
 * variants, no heap allocation per query in the steady state, and the cost of ldns's
 * parse/serialize next to our whole answer (figures printed; HERALD_DNS_BENCH=1 for the long
 * run quoted in dns_answer.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <time.h>

#include "zone/dns_fixture.h"
#include "zone/fixture.h"
#include "zone/dns_test.h"

/* ---- counting allocations (plain builds: the sanitizers own malloc under SAN=1) --------- */
#if !defined(__SANITIZE_ADDRESS__) && defined(__GLIBC__)
#define COUNT_MALLOC 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t c, size_t n);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
static long g_mallocs;
static bool g_counting;

void *malloc(size_t n)
{
    if (g_counting)
        g_mallocs++;
    return __libc_malloc(n);
}

void *calloc(size_t c, size_t n)
{
    if (g_counting)
        g_mallocs++;
    return __libc_calloc(c, n);
}

void *realloc(void *p, size_t n)
{
    if (g_counting)
        g_mallocs++;
    return __libc_realloc(p, n);
}

void free(void *p)
{
    __libc_free(p);
}
#endif

/* ---- fixture --------------------------------------------------------------------------- */
struct fx {
    struct dnsfx d;
    struct zone_dns_config cfg;
    struct base_arena ar;
    uint64_t idx;
    struct dnst_res res;
    uint8_t q[1024];
    size_t qlen;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (dnsfx_open(&f->d, NULL))
        return -1;
    dnsfx_config(&f->cfg);
    base_arena_init(&f->ar);
    f->idx = 1000;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    dnsfx_close(&f->d);
    base_arena_close(&f->ar);
    free(f);
    return 0;
}

/* Runs one query; returns the response parsed by ldns (never NULL). */
static ldns_pkt *ask_full(struct fx *f, const char *name, uint16_t type, bool edns, unsigned size,
                          bool tcp, uint64_t seed)
{
    struct dnst_q d;
    struct zone_read *rd;
    ldns_pkt *p = NULL;
    char why[256];

    dnst_q_init(&d, name, type);
    d.edns = edns;
    d.size = size;
    f->qlen = dnst_build(&d, f->q, sizeof f->q);
    assert_true(f->qlen > 0);
    assert_int_equal(zone_read_begin(f->d.s, &rd), 0);
    dnst_run(rd, &f->cfg, f->q, f->qlen, tcp, seed, &f->ar, &f->res);
    zone_read_end(rd);
    assert_int_equal(f->res.answer_rc == BASE_ENOTFOUND ? 0 : f->res.answer_rc, 0);
    assert_true(f->res.len > 0);
    if (!tcp)
        assert_true(f->res.len <= f->res.limit);
    assert_int_equal(ldns_wire2pkt(&p, f->res.resp, f->res.len), LDNS_STATUS_OK);
    if (!dnst_pointers_ok(f->res.resp, f->res.len, why) ||
        !dnst_layout_ok(f->res.resp, f->res.len, &f->res.layout, why))
        fail_msg("%s %u: %s", name, type, why);
    return p;
}

static ldns_pkt *ask(struct fx *f, const char *name, uint16_t type)
{
    return ask_full(f, name, type, false, 0, false, 1);
}

static void apply(struct fx *f, const struct zone_cmd *c)
{
    store_apply(f->d.s, f->idx++, c);
}

static void set_check(struct fx *f, const char *node, const char *check_id, const char *sid,
                      enum zone_health st)
{
    store_check(f->d.s, f->idx++, node, check_id, sid, st);
}

/* ---- shuffling ------------------------------------------------------------------------- */
static void test_shuffle_distribution(void **state)
{
    struct fx *f = *state;
    unsigned first[256] = {0};

    for (uint64_t seed = 1; seed <= 3000; seed++) {
        ldns_pkt *p = ask_full(f, "svc1.service.consul", 1, false, 0, false, seed);
        assert_int_equal(ldns_pkt_ancount(p), 3);
        const ldns_rdf *a = ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 0), 0);
        first[ldns_rdf_data(a)[3]]++;
        /* the three RRs are listed, contiguous, right after the question */
        assert_int_equal(f->res.layout.n, 3);
        assert_int_equal(f->res.layout.rr_off[0], 12 + 21 + 4);
        assert_int_equal(f->res.layout.rr_len[0], 16);
        ldns_pkt_free(p);
    }
    for (int i = 1; i <= 3; i++) {
        if (first[i] < 850 || first[i] > 1150)
            fail_msg("10.0.0.%d first %u times in 3000", i, first[i]);
    }
}

static void test_rng_state_advances(void **state)
{
    struct fx *f = *state;
    struct zone_dns_query q;
    struct zone_read *rd;
    struct zone_dns_layout l;
    uint8_t out[2][512];
    size_t len[2];
    uint64_t rng = 42;
    int differ = 0;
    struct dnst_q d;

    dnst_q_init(&d, "svc1.service.consul", 1);
    f->qlen = dnst_build(&d, f->q, sizeof f->q);
    assert_int_equal(zone_dns_parse(f->q, f->qlen, &q), 0);
    assert_int_equal(zone_read_begin(f->d.s, &rd), 0);
    for (int i = 0; i < 20; i++) {
        base_arena_reset(&f->ar);
        assert_int_equal(zone_dns_answer(rd, &f->cfg, &q, 512, false, &rng, &f->ar, out[i % 2], 512,
                                         &len[i % 2], &l),
                         0);
        if (i && memcmp(out[0], out[1], len[0]) != 0)
            differ++;
    }
    zone_read_end(rd);
    assert_true(differ > 5);

    /* the same seed gives the same order; a zero seed works too */
    ldns_pkt *a = ask_full(f, "_svc1._tcp.service.consul", 33, false, 0, false, 7);
    uint8_t first[512];
    size_t first_len = f->res.len;
    memcpy(first, f->res.resp, first_len);
    ldns_pkt *b = ask_full(f, "_svc1._tcp.service.consul", 33, false, 0, false, 7);
    assert_int_equal(f->res.len, first_len);
    assert_memory_equal(f->res.resp, first, first_len);
    ldns_pkt *c = ask_full(f, "_svc1._tcp.service.consul", 33, false, 0, false, 0);
    assert_int_equal(ldns_pkt_ancount(c), 3);
    ldns_pkt_free(a);
    ldns_pkt_free(b);
    ldns_pkt_free(c);
}

static void test_layout_over_max(void **state)
{
    struct fx *f = *state;
    struct zone_cmd c;
    struct zone_service s;
    char id[32], addr[32];

    /* 300 instances: the layout lists the first ZONE_DNS_MAX_SHUFFLE of them */
    for (int i = 0; i < 300; i++) {
        memset(&c, 0, sizeof c);
        memset(&s, 0, sizeof s);
        snprintf(id, sizeof id, "huge-%d", i);
        snprintf(addr, sizeof addr, "10.2.%d.%d", i / 256, i % 256);
        c.type = ZONE_CMD_REGISTER;
        c.node.name = "node1";
        c.node.address = "10.0.0.1";
        c.skip_node_update = true;
        s.id = id;
        s.name = "huge";
        s.address = addr;
        s.port = 1;
        c.service = &s;
        apply(f, &c);
    }
    ldns_pkt *p = ask_full(f, "huge.service.consul", 1, false, 0, true, 3);
    assert_int_equal(ldns_pkt_ancount(p), 300);
    assert_int_equal(f->res.layout.n, ZONE_DNS_MAX_SHUFFLE);
    ldns_pkt_free(p);
    p = ask_full(f, "huge.service.consul", 33, false, 0, true, 3);
    assert_int_equal(ldns_pkt_ancount(p), 300);
    assert_int_equal(ldns_pkt_arcount(p), 300);
    ldns_pkt_free(p);
    /* over UDP at most 4096 bytes */
    p = ask_full(f, "huge.service.consul", 1, true, 65535, false, 3);
    assert_true(ldns_pkt_tc(p));
    assert_int_equal(ldns_pkt_ancount(p), (4096 - 37 - 11) / 16);
    ldns_pkt_free(p);
}

/* ---- truncation ------------------------------------------------------------------------ */
static void test_truncation_sweep(void **state)
{
    struct fx *f = *state;

    /* big.service.consul A: header + question 36 bytes, 100 A RRs of 16 bytes */
    for (int edns = 0; edns <= 1; edns++) {
        for (unsigned size = 480; size <= 4200; size += 7) {
            ldns_pkt *p = ask_full(f, "big.service.consul", 1, edns, size, false, size);
            size_t limit = !edns || size < 512 ? 512 : size > 4096 ? 4096 : size;
            size_t want = (limit - 36 - (edns ? 11 : 0)) / 16;
            if (want > 100)
                want = 100;
            assert_int_equal(ldns_pkt_ancount(p), want);
            assert_int_equal(ldns_pkt_tc(p), want < 100);
            assert_int_equal(f->res.len, 36 + 16 * want + (edns ? 11 : 0));
            assert_int_equal(f->res.layout.n, want);
            ldns_pkt_free(p);
        }
    }
    /* truncation off: the same answers, no TC */
    f->cfg.enable_truncate = false;
    ldns_pkt *p = ask(f, "big.service.consul", 1);
    assert_int_equal(ldns_pkt_ancount(p), 29);
    assert_false(ldns_pkt_tc(p));
    ldns_pkt_free(p);
}

static void test_additional_sweep(void **state)
{
    struct fx *f = *state;

    /* _web._tcp SRV: 42 + 8 x 41 = 370 bytes of answers; each glue A is 31 bytes */
    for (int edns = 0; edns <= 1; edns++) {
        for (unsigned size = 512; size <= 1300; size++) {
            ldns_pkt *p = ask_full(f, "_web._tcp.service.consul", 33, edns, size, false, size);
            size_t limit = !edns ? 512 : size;
            size_t ar = (limit - 370 - (edns ? 11 : 0)) / 31;
            if (ar > 8)
                ar = 8;
            assert_int_equal(ldns_pkt_ancount(p), 8);
            assert_int_equal(ldns_pkt_arcount(p), ar);
            assert_false(ldns_pkt_tc(p));
            /* only glue of kept targets, each once */
            ldns_rr_list *add = ldns_pkt_additional(p);
            for (size_t i = 0; i < ar; i++) {
                ldns_rr *g = ldns_rr_list_rr(add, i);
                bool found = false;
                for (size_t j = 0; j < 8 && !found; j++) {
                    ldns_rr *srv = ldns_rr_list_rr(ldns_pkt_answer(p), j);
                    found = ldns_dname_compare(ldns_rr_owner(g), ldns_rr_rdf(srv, 3)) == 0;
                }
                assert_true(found);
            }
            ldns_pkt_free(p);
        }
    }
}

static void test_srv_dropped_answers_take_glue(void **state)
{
    struct fx *f = *state;

    /* when answers are dropped there is no room for glue; the glue present belongs to kept
     * SRVs */
    for (unsigned size = 512; size <= 4096; size += 61) {
        ldns_pkt *p = ask_full(f, "_big._tcp.service.consul", 33, true, size, false, size);
        size_t an = ldns_pkt_ancount(p);
        assert_true(an < 100);
        assert_true(ldns_pkt_tc(p));
        assert_true(ldns_pkt_arcount(p) <= 1);
        ldns_pkt_free(p);
    }
}

/* ---- case, config, limits -------------------------------------------------------------- */
static void test_case_echo(void **state)
{
    struct fx *f = *state;
    ldns_pkt *p = ask(f, "SvC1.SeRvIcE.CoNsUl", 1);

    assert_int_equal(ldns_pkt_ancount(p), 3);
    assert_memory_equal(f->res.resp + 12, f->q + 12, f->qlen - 12);
    /* every answer owner is the pointer to the question */
    for (unsigned i = 0; i < 3; i++)
        assert_memory_equal(f->res.resp + f->res.layout.rr_off[i], "\300\014", 2);
    char *owner = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_answer(p), 0)));
    assert_string_equal(owner, "SvC1.SeRvIcE.CoNsUl.");
    free(owner);
    ldns_pkt_free(p);

    /* the SOA owner of a negative answer points at the question's domain suffix */
    p = ask(f, "Missing.Service.CONSUL", 1);
    owner = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_authority(p), 0)));
    assert_string_equal(owner, "CONSUL.");
    free(owner);
    ldns_pkt_free(p);
}

static void test_config_variants(void **state)
{
    struct fx *f = *state;

    f->cfg.domain = "Consul";
    f->cfg.datacenter = "DC1";
    ldns_pkt *p = ask(f, "_svc1._primary.service.dc1.consul", 33);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    char *t = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 0), 3));
    assert_string_equal(t, "node1.node.dc1.consul.");
    free(t);
    ldns_pkt_free(p);

    /* an alt domain near 255 bytes: SOA names that would be too long fall back to it */
    char longd[256], q[300];
    memset(longd, 'd', sizeof longd);
    for (int i = 60; i < 250; i += 61)
        longd[i] = '.';
    longd[249] = 0;
    f->cfg.alt_domain = longd;
    snprintf(q, sizeof q, "x.%s", longd);
    p = ask(f, q, 1);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    assert_int_equal(ldns_pkt_nscount(p), 1);
    ldns_pkt_free(p);
    p = ask(f, longd, 6);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
    p = ask(f, longd, 2);
    ldns_pkt_free(p);

    /* SOA timers default when the config leaves them 0 */
    f->cfg.soa_refresh = f->cfg.soa_retry = f->cfg.soa_expire = 0;
    p = ask(f, "consul", 6);
    ldns_rr *soa = ldns_rr_list_rr(ldns_pkt_answer(p), 0);
    assert_int_equal(ldns_rdf2native_int32(ldns_rr_rdf(soa, 3)), 3600);
    assert_int_equal(ldns_rdf2native_int32(ldns_rr_rdf(soa, 4)), 600);
    assert_int_equal(ldns_rdf2native_int32(ldns_rr_rdf(soa, 5)), 86400);
    ldns_pkt_free(p);
}

static void test_limits_and_buffers(void **state)
{
    struct fx *f = *state;
    struct zone_dns_query q;
    struct zone_read *rd;
    struct zone_dns_layout l;
    uint8_t out[700];
    size_t len;
    uint64_t rng = 1;
    struct dnst_q d;

    dnst_q_init(&d, "big.service.consul", 1);
    f->qlen = dnst_build(&d, f->q, sizeof f->q);
    assert_int_equal(zone_dns_parse(f->q, f->qlen, &q), 0);
    assert_int_equal(zone_read_begin(f->d.s, &rd), 0);

    /* a limit under 512 counts as 512 */
    assert_int_equal(zone_dns_answer(rd, &f->cfg, &q, 100, false, &rng, &f->ar, out, 512, &len, &l),
                     0);
    assert_int_equal(len, 36 + 29 * 16);

    /* a buffer smaller than the limit: nothing written past it */
    for (size_t cap = 36; cap < 200; cap += 13) {
        memset(out, 0xee, sizeof out);
        base_arena_reset(&f->ar);
        assert_int_equal(
            zone_dns_answer(rd, &f->cfg, &q, 4096, false, &rng, &f->ar, out, cap, &len, &l), 0);
        assert_true(len <= cap);
        assert_int_equal(len, 36 + (cap - 36) / 16 * 16);
        for (size_t i = cap; i < sizeof out; i++)
            assert_int_equal(out[i], 0xee);
    }

    /* a name that is not ours: declined */
    dnst_q_init(&d, "example.com", 1);
    f->qlen = dnst_build(&d, f->q, sizeof f->q);
    assert_int_equal(zone_dns_parse(f->q, f->qlen, &q), 0);
    assert_int_equal(zone_dns_answer(rd, &f->cfg, &q, 512, false, &rng, &f->ar, out, 512, &len, &l),
                     BASE_ENOTFOUND);
    assert_int_equal(len, 0);
    zone_read_end(rd);
}

static void test_ra_flag(void **state)
{
    struct fx *f = *state;
    struct zone_dns_query q;
    struct zone_read *rd;
    struct zone_dns_layout l;
    uint8_t out[512];
    size_t len;
    uint64_t rng = 1;
    struct dnst_q d;

    dnst_q_init(&d, "node1.node.consul", 1);
    d.flags = 0x0100;
    f->qlen = dnst_build(&d, f->q, sizeof f->q);
    assert_int_equal(zone_dns_parse(f->q, f->qlen, &q), 0);
    assert_int_equal(zone_read_begin(f->d.s, &rd), 0);
    assert_int_equal(zone_dns_answer(rd, &f->cfg, &q, 512, true, &rng, &f->ar, out, 512, &len, &l),
                     0);
    zone_read_end(rd);
    assert_int_equal(dnst_get16(out + 2), 0x8000 | 0x0400 | 0x0100 | 0x0080);
}

/* ---- the catalog moving under the answers ---------------------------------------------- */
static void test_health_changes(void **state)
{
    struct fx *f = *state;
    ldns_pkt *p;

    set_check(f, "node1", "svc1-a-check", "svc1-a", ZONE_HEALTH_CRITICAL);
    p = ask(f, "svc1.service.consul", 1);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    ldns_pkt_free(p);
    /* primary only lived on svc1-a */
    p = ask(f, "primary.svc1.service.consul", 1);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    ldns_pkt_free(p);

    set_check(f, "node1", "svc1-a-check", "svc1-a", ZONE_HEALTH_WARNING);
    p = ask(f, "svc1.service.consul", 1);
    assert_int_equal(ldns_pkt_ancount(p), 3);
    ldns_pkt_free(p);
    f->cfg.only_passing = true;
    p = ask(f, "svc1.service.consul", 1);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    ldns_pkt_free(p);
    f->cfg.only_passing = false;

    set_check(f, "node1", "svc1-a-check", "svc1-a", ZONE_HEALTH_MAINT);
    p = ask(f, "svc1.service.consul", 1);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    ldns_pkt_free(p);

    set_check(f, "node1", "svc1-a-check", "svc1-a", ZONE_HEALTH_PASSING);
    p = ask(f, "svc1.service.consul", 1);
    assert_int_equal(ldns_pkt_ancount(p), 3);
    ldns_pkt_free(p);

    /* a node check hides every instance of the node, not the node itself */
    set_check(f, "node2", "serfHealth", "", ZONE_HEALTH_CRITICAL);
    p = ask(f, "svc1.service.consul", 1);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    ldns_pkt_free(p);
    p = ask(f, "svc8.service.consul", 1);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    ldns_pkt_free(p);
    p = ask(f, "node2.node.consul", 1);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);

    /* a warning instance's SRV weight is Weights.Warning, 0 included */
    struct zone_cmd c;
    struct zone_service s;
    memset(&c, 0, sizeof c);
    memset(&s, 0, sizeof s);
    c.type = ZONE_CMD_REGISTER;
    c.node.name = "node3";
    c.node.address = "10.0.0.3";
    c.skip_node_update = true;
    s.id = s.name = "w0";
    s.port = 5;
    s.weight_passing = 7;
    s.weight_warning = 0;
    c.service = &s;
    apply(f, &c);
    p = ask(f, "w0.service.consul", 33);
    assert_int_equal(ldns_rdf2native_int16(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 0), 1)),
                     7);
    ldns_pkt_free(p);
    set_check(f, "node3", "w0-check", "w0", ZONE_HEALTH_WARNING);
    p = ask(f, "w0.service.consul", 33);
    assert_int_equal(ldns_rdf2native_int16(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 0), 1)),
                     0);
    ldns_pkt_free(p);
}

static void test_serial_and_deregister(void **state)
{
    struct fx *f = *state;
    struct zone_cmd c;
    ldns_pkt *p;

    p = ask(f, "consul", 6);
    assert_int_equal(ldns_rdf2native_int32(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 0), 2)),
                     100);
    ldns_pkt_free(p);

    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_DEREGISTER;
    c.node.name = "node13";
    c.service_id = "svc5-a";
    f->idx = 0x100000007ull; /* the serial is the index's low 32 bits */
    apply(f, &c);
    p = ask(f, "consul", 6);
    assert_int_equal(ldns_rdf2native_int32(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 0), 2)),
                     7);
    ldns_pkt_free(p);
    p = ask(f, "svc5.service.consul", 1);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    ldns_pkt_free(p);
    p = ask(f, "13.5.168.192.in-addr.arpa", 12);
    assert_int_equal(f->res.answer_rc, BASE_ENOTFOUND);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
    ldns_pkt_free(p);
}

static void test_unwritable_hostname(void **state)
{
    struct fx *f = *state;
    struct zone_cmd c;
    struct zone_service s;

    /* an address that is neither an IP nor a valid name: no CNAME, no SRV, NODATA */
    memset(&c, 0, sizeof c);
    memset(&s, 0, sizeof s);
    c.type = ZONE_CMD_REGISTER;
    c.node.name = "node4";
    c.node.address = "10.0.0.4";
    c.skip_node_update = true;
    s.id = s.name = "odd";
    s.address = "bad..name";
    s.port = 1;
    c.service = &s;
    apply(f, &c);
    for (int t = 0; t < 2; t++) {
        ldns_pkt *p = ask(f, "odd.service.consul", t ? 33 : 1);
        assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
        assert_int_equal(ldns_pkt_ancount(p), 0);
        assert_int_equal(ldns_pkt_nscount(p), 1);
        ldns_pkt_free(p);
    }
}

/* ---- the steady state allocates nothing ------------------------------------------------ */
static const struct {
    const char *name;
    uint16_t type;
    bool tcp;
} g_mix[] = {
    {"svc1.service.consul", 1, false},
    {"_svc1._tcp.service.consul", 33, false},
    {"node1.node.consul", 16, false},
    {"missing.service.consul", 1, false},
    {"consul", 2, false},
    {"consul", 6, false},
    {"1.0.0.10.in-addr.arpa", 12, false},
    {"big.service.consul", 1, true},
    {"_big._tcp.service.consul", 33, true},
    {"svc4.service.consul", 1, false},
    {"0a000001.addr.consul", 1, false},
    {"service.consul", 1, false},
};

static void run_mix(struct fx *f, struct zone_dns_query *qs, int rounds)
{
    static uint8_t out[65535];
    struct zone_dns_layout l;
    uint64_t rng = 5;
    size_t len;

    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < BASE_ARRAY_LEN(g_mix); i++) {
            struct zone_read *rd;
            assert_int_equal(zone_read_begin(f->d.s, &rd), 0);
            base_arena_reset(&f->ar);
            int rc = zone_dns_answer(rd, &f->cfg, &qs[i], g_mix[i].tcp ? 65535 : 1232, false, &rng,
                                     &f->ar, out, sizeof out, &len, &l);
            assert_int_equal(rc, 0);
            zone_read_end(rd);
        }
    }
}

static void test_no_allocation_steady_state(void **state)
{
    struct fx *f = *state;
    static uint8_t qw[BASE_ARRAY_LEN(g_mix)][512];
    struct zone_dns_query qs[BASE_ARRAY_LEN(g_mix)];

    for (size_t i = 0; i < BASE_ARRAY_LEN(g_mix); i++) {
        struct dnst_q d;
        dnst_q_init(&d, g_mix[i].name, g_mix[i].type);
        d.edns = true;
        size_t n = dnst_build(&d, qw[i], sizeof qw[i]);
        assert_int_equal(zone_dns_parse(qw[i], n, &qs[i]), 0);
    }
    run_mix(f, qs, 20); /* warm: the pooled read, its cursors, the arena's block */
#ifdef COUNT_MALLOC
    g_mallocs = 0;
    g_counting = true;
    run_mix(f, qs, 200);
    g_counting = false;
    if (g_mallocs)
        fail_msg("%ld allocations in %zu queries", g_mallocs, 200 * BASE_ARRAY_LEN(g_mix));
#else
    /* the sanitizers own malloc here: the plain build counts */
    run_mix(f, qs, 20);
#endif
}

/* ---- cost: ldns's parse + serialize against our whole answer --------------------------- */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_cost_vs_ldns(void **state)
{
    struct fx *f = *state;
    const char *env = getenv("HERALD_DNS_BENCH"), *it = getenv("HERALD_DNS_BENCH_ITERS");
    bool bench = env && *env == '1';
    int iters = it ? atoi(it) : bench ? 200000 : 2000, runs = bench && !it ? 5 : 1;
    static uint8_t out[4096];
    struct zone_dns_layout l;
    struct zone_dns_query q;
    uint64_t rng = 9;
    size_t len = 0;
    struct dnst_q d;
    double ours[5], theirs[5];
#ifdef COUNT_MALLOC
    long ldns_allocs = 0;
#endif

    dnst_q_init(&d, "svc1.service.consul", 1);
    d.edns = true;
    d.flags = 0x0100;
    f->qlen = dnst_build(&d, f->q, sizeof f->q);

    /* the response as an ldns packet, for ldns_pkt2wire */
    ldns_pkt *resp = ask_full(f, "svc1.service.consul", 1, true, 1232, false, 1);
    for (int r = 0; r < runs; r++) {
        double t0 = now_ns();
        for (int i = 0; i < iters; i++) {
            struct zone_read *rd;
            if (zone_dns_parse(f->q, f->qlen, &q) || zone_read_begin(f->d.s, &rd))
                fail();
            base_arena_reset(&f->ar);
            if (zone_dns_answer(rd, &f->cfg, &q, 1232, false, &rng, &f->ar, out, sizeof out, &len,
                                &l))
                fail();
            zone_read_end(rd);
        }
        double t1 = now_ns();
#ifdef COUNT_MALLOC
        g_mallocs = 0;
        g_counting = r == 0;
#endif
        for (int i = 0; i < iters; i++) {
            ldns_pkt *qp = NULL;
            uint8_t *w = NULL;
            size_t wl;
            if (ldns_wire2pkt(&qp, f->q, f->qlen) != LDNS_STATUS_OK ||
                ldns_pkt2wire(&w, resp, &wl) != LDNS_STATUS_OK)
                fail();
            ldns_pkt_free(qp);
            free(w);
#ifdef COUNT_MALLOC
            g_counting = false;
#endif
        }
#ifdef COUNT_MALLOC
        if (r == 0)
            ldns_allocs = g_mallocs;
#endif
        double t2 = now_ns();
        ours[r] = (t1 - t0) / iters;
        theirs[r] = (t2 - t1) / iters;
    }
    qsort(ours, (size_t)runs, sizeof ours[0], cmp_double);
    qsort(theirs, (size_t)runs, sizeof theirs[0], cmp_double);
    printf("  cost (svc1.service.consul A, EDNS, %d x %d, median):\n"
           "    zone_dns_parse + read + zone_dns_answer: %.0f ns/query\n"
           "    ldns_wire2pkt(query) + ldns_pkt2wire(response): %.0f ns/query\n",
           runs, iters, ours[runs / 2], theirs[runs / 2]);
#ifdef COUNT_MALLOC
    printf("    allocations per query: ours 0 (test_no_allocation_steady_state), ldns %ld\n",
           ldns_allocs);
#endif
    ldns_pkt_free(resp);
}

int main(void)
{
    /* HERALD_DNS_BENCH=1: only the cost comparison (long runs; HERALD_DNS_BENCH_ITERS=N for
     * one run of N, e.g. under callgrind) */
    const char *bench = getenv("HERALD_DNS_BENCH");
    if (bench && *bench == '1')
        cmocka_set_test_filter("test_cost_vs_ldns");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shuffle_distribution, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rng_state_advances, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout_over_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_additional_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_srv_dropped_answers_take_glue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_variants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_and_buffers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ra_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serial_and_deregister, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_hostname, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_allocation_steady_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cost_vs_ldns, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
