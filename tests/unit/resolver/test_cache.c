/* Tests resolver/cache.c: insert, lookup and replace; invalidation by the catalog index; the
 * key's parts (type, class, EDNS shape, size limit); a hit patches the ID, RD/CD and the
 * question's case and permutes the layout's RRs (contiguous of any length, or equal-length
 * slots) without allocating; set replacement (same key, empty, stale, least recently used);
 * the byte budget; layouts that do not fit the response are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/internal.h"

/* ---- building messages ----------------------------------------------------------------- */

struct msg {
    uint8_t b[4096];
    size_t n;
};

static void put8(struct msg *m, unsigned v)
{
    m->b[m->n++] = (uint8_t)v;
}

static void put16(struct msg *m, unsigned v)
{
    put8(m, v >> 8);
    put8(m, v & 0xff);
}

static void put32(struct msg *m, uint32_t v)
{
    put16(m, v >> 16);
    put16(m, v & 0xffff);
}

/* "web.service.consul" -> wire form */
static void put_name(struct msg *m, const char *name)
{
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t n = dot ? (size_t)(dot - name) : strlen(name);
        put8(m, (unsigned)n);
        memcpy(m->b + m->n, name, n);
        m->n += n;
        name += n + (dot ? 1 : 0);
    }
    put8(m, 0);
}

static void header(struct msg *m, unsigned id, unsigned flags, unsigned an, unsigned ar)
{
    m->n = 0;
    put16(m, id);
    put16(m, flags);
    put16(m, 1);
    put16(m, an);
    put16(m, 0);
    put16(m, ar);
}

/* A query, and the zone_dns_query a parser would make of it. */
static void query(struct msg *m, struct zone_dns_query *q, const char *name, unsigned id,
                  unsigned flags, uint16_t qtype, bool edns, bool dnssec_ok)
{
    header(m, id, flags, 0, edns ? 1 : 0);
    put_name(m, name);
    put16(m, qtype);
    put16(m, 1);
    memset(q, 0, sizeof *q);
    q->question_end = m->n;
    q->qname_len = m->n - 12 - 4;
    for (size_t i = 0; i < q->qname_len; i++) {
        uint8_t ch = m->b[12 + i];
        q->lname[i] = (uint8_t)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    if (edns) {
        put8(m, 0);
        put16(m, 41);
        put16(m, 1232);
        put32(m, dnssec_ok ? 0x8000 : 0);
        put16(m, 0);
    }
    q->pkt = m->b;
    q->len = m->n;
    q->id = (uint16_t)id;
    q->flags = (uint16_t)flags;
    q->qtype = qtype;
    q->qclass = 1;
    q->edns = edns;
    q->edns_do = dnssec_ok;
    q->edns_size = edns ? 1232 : 0;
}

/* A response to "name" with n A records (16 bytes each, owner a pointer to the question),
 * flags QR|AA plus extra; layout filled. */
static void response_a(struct msg *m, struct zone_dns_layout *l, const char *name, unsigned id,
                       unsigned extra_flags, unsigned n)
{
    header(m, id, 0x8400 | extra_flags, n, 0);
    put_name(m, name);
    put16(m, 1);
    put16(m, 1);
    l->n = n;
    for (unsigned i = 0; i < n; i++) {
        l->rr_off[i] = (uint16_t)m->n;
        put16(m, 0xc00c);
        put16(m, 1);
        put16(m, 1);
        put32(m, 30);
        put16(m, 4);
        put32(m, 0x0a000001 + i);
        l->rr_len[i] = (uint16_t)(m->n - l->rr_off[i]);
    }
}

/* A response with n SRV records whose targets differ in length (variable-length RRs). */
static void response_srv(struct msg *m, struct zone_dns_layout *l, const char *name, unsigned n)
{
    header(m, 1, 0x8400, n, 0);
    put_name(m, name);
    put16(m, 33);
    put16(m, 1);
    l->n = n;
    for (unsigned i = 0; i < n; i++) {
        char target[64];
        size_t at;
        l->rr_off[i] = (uint16_t)m->n;
        put16(m, 0xc00c);
        put16(m, 33);
        put16(m, 1);
        put32(m, 30);
        at = m->n;
        put16(m, 0);
        put16(m, 1);
        put16(m, 1);
        put16(m, 8000 + i);
        snprintf(target, sizeof target, "n%0*u.node.consul", (int)i + 1, i);
        put_name(m, target);
        m->b[at] = (uint8_t)((m->n - at - 2) >> 8);
        m->b[at + 1] = (uint8_t)(m->n - at - 2);
        l->rr_len[i] = (uint16_t)(m->n - l->rr_off[i]);
    }
}

static const uint8_t *find_rr(const uint8_t *p, size_t n, const uint8_t *rr, size_t len)
{
    for (size_t i = 0; i + len <= n; i++)
        if (memcmp(p + i, rr, len) == 0)
            return p + i;
    return NULL;
}

/* ---- one cache, with the query and the response at hand -------------------------------- */

struct cx {
    struct rsv__cache c;
    struct msg qm, rm; /* the query, the response */
    struct zone_dns_query q;
    struct zone_dns_layout l; /* the response's */
    struct rsv__key k;        /* the query's */
    uint8_t out[4096];
    uint64_t rng;
};

static void cx_init(struct cx *x, size_t entries, size_t max_bytes)
{
    rsv__cache_init(&x->c, entries, max_bytes);
    x->rng = 1;
}

/* A query for name and qtype without EDNS, with id and flags; its key for 512 bytes. */
static void cx_ask(struct cx *x, const char *name, unsigned id, unsigned flags, uint16_t qtype)
{
    query(&x->qm, &x->q, name, id, flags, qtype, false, false);
    rsv__key_make(&x->k, &x->q, 512);
}

/* Caches the response at hand under the key at hand at index, with layout l. */
static bool cx_insert_as(struct cx *x, uint64_t index, const struct zone_dns_layout *l)
{
    return rsv__cache_insert(&x->c, &x->k, index, x->rm.b, x->rm.n, l);
}

static bool cx_insert(struct cx *x, uint64_t index)
{
    return cx_insert_as(x, index, &x->l);
}

/* Looks up the key and the query at hand at index, into out. */
static size_t cx_lookup(struct cx *x, uint64_t index)
{
    return rsv__cache_lookup(&x->c, &x->k, index, &x->q, &x->rng, x->out, sizeof x->out);
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_insert_lookup_hit_and_miss(void **state)
{
    struct cx x;

    (void)state;
    cx_init(&x, 64, 0);
    cx_ask(&x, "web.service.consul", 0x1234, 0x0100, 1);
    assert_int_equal(cx_lookup(&x, 7), 0);

    response_a(&x.rm, &x.l, "web.service.consul", 0x1234, 0x0100, 1);
    assert_true(cx_insert(&x, 7));
    assert_int_equal(cx_lookup(&x, 7), x.rm.n);
    assert_memory_equal(x.out, x.rm.b, x.rm.n);
    /* Another index: stale, a miss. */
    assert_int_equal(cx_lookup(&x, 8), 0);
    /* Too small an output buffer: a miss, not a partial copy. */
    assert_int_equal(rsv__cache_lookup(&x.c, &x.k, 7, &x.q, &x.rng, x.out, x.rm.n - 1), 0);
    rsv__cache_close(&x.c);
}

/* Queries next to the cached one (EDNS, no DO, type A, 1232 bytes), one part changed. */
static const struct {
    const char *name;
    uint16_t qtype;
    bool edns, dnssec_ok;
    size_t limit;
    bool hit;
} key_cases[] = {
    /* Different size limit, EDNS, DO, type, name: misses. */
    {"web.service.consul", 1, true, false, 4096, false},
    {"web.service.consul", 1, false, false, 1232, false},
    {"web.service.consul", 1, true, true, 1232, false},
    {"web.service.consul", 28, true, false, 1232, false},
    {"wef.service.consul", 1, true, false, 1232, false},
    /* Same name in another case: the same key (the parser lowercases lname). */
    {"WEB.Service.CONSUL", 1, true, false, 1232, true},
};

static void test_key_parts(void **state)
{
    struct cx x;

    (void)state;
    cx_init(&x, 64, 0);
    query(&x.qm, &x.q, "web.service.consul", 1, 0, 1, true, false);
    rsv__key_make(&x.k, &x.q, 1232);
    response_a(&x.rm, &x.l, "web.service.consul", 1, 0, 2);
    assert_true(cx_insert(&x, 3));
    assert_true(cx_lookup(&x, 3) > 0);

    for (size_t i = 0; i < sizeof key_cases / sizeof key_cases[0]; i++) {
        query(&x.qm, &x.q, key_cases[i].name, 1, 0, key_cases[i].qtype, key_cases[i].edns,
              key_cases[i].dnssec_ok);
        rsv__key_make(&x.k, &x.q, key_cases[i].limit);
        if (key_cases[i].hit)
            assert_true(cx_lookup(&x, 3) > 0);
        else
            assert_int_equal(cx_lookup(&x, 3), 0);
    }
    rsv__cache_close(&x.c);
}

static void test_hit_patches_id_flags_and_case(void **state)
{
    struct cx x;
    size_t n;

    (void)state;
    cx_init(&x, 64, 0);
    /* Built for a query with RD and CD set, NXDOMAIN-like rcode 3 and TC to check they stay. */
    cx_ask(&x, "web.service.consul", 0x1111, 0x0100, 1);
    response_a(&x.rm, &x.l, "web.service.consul", 0x1111, 0x0100 | 0x0200 | 0x0010 | 3, 1);
    assert_true(cx_insert(&x, 1));

    /* A client with another ID, no RD, no CD, mixed case. */
    cx_ask(&x, "WeB.SeRvIcE.CoNsUl", 0xbeef, 0x0000, 1);
    n = cx_lookup(&x, 1);
    assert_int_equal(n, x.rm.n);
    assert_int_equal(x.out[0], 0xbe);
    assert_int_equal(x.out[1], 0xef);
    assert_int_equal(x.out[2] & 0x01, 0);                                /* RD from the query */
    assert_int_equal(x.out[3] & 0x10, 0);                                /* CD from the query */
    assert_int_equal(x.out[2] & 0x02, 0x02);                             /* TC kept */
    assert_int_equal(x.out[2] & 0x84, 0x84);                             /* QR, AA kept */
    assert_int_equal(x.out[3] & 0x0f, 3);                                /* rcode kept */
    assert_memory_equal(x.out + 12, x.qm.b + 12, x.q.question_end - 12); /* the client's case */
    assert_memory_equal(x.out + x.q.question_end, x.rm.b + x.q.question_end,
                        x.rm.n - x.q.question_end);

    /* RD and CD set by the next client. */
    cx_ask(&x, "web.service.consul", 7, 0x0110, 1);
    n = cx_lookup(&x, 1);
    assert_int_equal(n, x.rm.n);
    assert_int_equal(x.out[2] & 0x01, 0x01);
    assert_int_equal(x.out[3] & 0x10, 0x10);
    rsv__cache_close(&x.c);
}

/* Runs lookups of the key at hand and checks that every RR of l is present once in the answer
 * region, the rest of the message unchanged, that orders vary, and that nothing was
 * allocated. */
static void check_permutations(struct cx *x, const struct zone_dns_layout *l)
{
    const struct msg *rm = &x->rm;
    uint8_t out[4096];
    uint64_t rng = 42;
    uint64_t allocs = x->c.allocs;
    unsigned first_at_0[ZONE_DNS_MAX_SHUFFLE] = {0};
    size_t start = l->rr_off[0], end = l->rr_off[l->n - 1] + l->rr_len[l->n - 1];

    for (int round = 0; round < 200; round++) {
        size_t n = rsv__cache_lookup(&x->c, &x->k, 1, &x->q, &rng, out, sizeof out);
        assert_int_equal(n, rm->n);
        assert_memory_equal(out + 2, rm->b + 2, start - 2 < 10 ? start - 2 : 10);
        assert_memory_equal(out + end, rm->b + end, rm->n - end);
        for (unsigned i = 0; i < l->n; i++) {
            const uint8_t *p =
                find_rr(out + start, end - start, rm->b + l->rr_off[i], l->rr_len[i]);
            assert_non_null(p);
            if (p == out + start)
                first_at_0[i]++;
        }
    }
    /* Every RR came first at least once in 200 shuffles. */
    for (unsigned i = 0; i < l->n; i++)
        assert_true(first_at_0[i] > 0);
    assert_int_equal(x->c.allocs, allocs);
}

static void test_hit_permutes_contiguous_rrs_without_allocating(void **state)
{
    struct cx x;

    (void)state;
    cx_init(&x, 64, 0);
    cx_ask(&x, "redis.service.consul", 5, 0, 1);
    response_a(&x.rm, &x.l, "redis.service.consul", 5, 0, 6);
    assert_true(cx_insert(&x, 1));
    check_permutations(&x, &x.l);

    /* SRV answers: RRs of different lengths still tile the answer section. */
    cx_ask(&x, "web.service.consul", 5, 0, 33);
    response_srv(&x.rm, &x.l, "web.service.consul", 5);
    assert_true(cx_insert(&x, 1));
    check_permutations(&x, &x.l);
    rsv__cache_close(&x.c);
}

static void test_hit_permutes_equal_slots(void **state)
{
    struct cx x;
    struct zone_dns_layout sparse;
    const struct zone_dns_layout *l = &x.l;

    (void)state;
    cx_init(&x, 64, 0);
    cx_ask(&x, "web.service.consul", 5, 0, 1);
    response_a(&x.rm, &x.l, "web.service.consul", 5, 0, 6);
    /* Only every other RR is permutable: equal lengths, not contiguous. */
    memset(&sparse, 0, sizeof sparse);
    for (unsigned i = 0; i < 3; i++) {
        sparse.rr_off[i] = l->rr_off[2 * i];
        sparse.rr_len[i] = l->rr_len[2 * i];
    }
    sparse.n = 3;
    assert_true(cx_insert_as(&x, 1, &sparse));

    unsigned moved = 0;
    x.rng = 9;
    for (int round = 0; round < 100; round++) {
        assert_int_equal(cx_lookup(&x, 1), x.rm.n);
        /* The odd RRs never move. */
        for (unsigned i = 1; i < 6; i += 2)
            assert_memory_equal(x.out + l->rr_off[i], x.rm.b + l->rr_off[i], l->rr_len[i]);
        if (memcmp(x.out + l->rr_off[0], x.rm.b + l->rr_off[0], l->rr_len[0]) != 0)
            moved++;
    }
    assert_true(moved > 0);
    rsv__cache_close(&x.c);
}

static void test_layout_in_any_order_is_sorted(void **state)
{
    struct cx x;
    struct zone_dns_layout rev;

    (void)state;
    cx_init(&x, 64, 0);
    cx_ask(&x, "web.service.consul", 5, 0, 1);
    response_a(&x.rm, &x.l, "web.service.consul", 5, 0, 4);
    rev = x.l;
    for (unsigned i = 0; i < 4; i++) {
        rev.rr_off[i] = x.l.rr_off[3 - i];
        rev.rr_len[i] = x.l.rr_len[3 - i];
    }
    assert_true(cx_insert_as(&x, 1, &rev));
    check_permutations(&x, &x.l);
    rsv__cache_close(&x.c);
}

static void test_bad_layouts_are_not_cached(void **state)
{
    struct cx x;
    struct zone_dns_layout bad;
    const struct zone_dns_layout *l = &x.l;

    (void)state;
    cx_init(&x, 64, 0);
    cx_ask(&x, "web.service.consul", 5, 0, 1);
    response_a(&x.rm, &x.l, "web.service.consul", 5, 0, 3);

    bad = *l; /* past the end */
    bad.rr_len[2] = 200;
    assert_false(cx_insert_as(&x, 1, &bad));
    bad = *l; /* overlapping */
    bad.rr_off[1] = (uint16_t)(l->rr_off[1] - 4);
    assert_false(cx_insert_as(&x, 1, &bad));
    bad = *l; /* inside the question */
    bad.rr_off[0] = 14;
    assert_false(cx_insert_as(&x, 1, &bad));
    /* A response without the question (QDCOUNT 0) cannot be patched. */
    x.rm.b[5] = 0;
    assert_false(cx_insert(&x, 1));
    x.rm.b[5] = 1;
    /* Variable lengths that do not tile: cached, just not shuffled. */
    bad = *l;
    bad.n = 2;
    bad.rr_off[1] = l->rr_off[2];
    bad.rr_len[1] = (uint16_t)(l->rr_len[2] - 1);
    assert_true(cx_insert_as(&x, 1, &bad));
    x.rng = 3;
    assert_int_equal(cx_lookup(&x, 1), x.rm.n);
    assert_memory_equal(x.out, x.rm.b, x.rm.n);
    assert_int_equal(x.c.skipped, 4);
    rsv__cache_close(&x.c);
}

static void test_reinsert_after_invalidation_reuses_the_buffer(void **state)
{
    struct cx x;

    (void)state;
    cx_init(&x, 64, 0);
    cx_ask(&x, "web.service.consul", 5, 0, 1);
    response_a(&x.rm, &x.l, "web.service.consul", 5, 0, 3);
    assert_true(cx_insert(&x, 1));
    uint64_t allocs = x.c.allocs;
    for (uint64_t idx = 2; idx < 50; idx++) {
        assert_int_equal(cx_lookup(&x, idx), 0);
        /* The write hid an instance: the rebuilt answer is smaller and fits the old buffer. */
        response_a(&x.rm, &x.l, "web.service.consul", 5, 0, 3 - (unsigned)(idx % 2));
        assert_true(cx_insert(&x, idx));
        assert_int_equal(cx_lookup(&x, idx), x.rm.n);
        assert_int_equal((unsigned)x.out[7], 3 - (unsigned)(idx % 2));
    }
    assert_int_equal(x.c.allocs, allocs);
    assert_int_equal(x.c.evictions, 0);
    rsv__cache_close(&x.c);
}

static void test_set_replacement(void **state)
{
    struct rsv__cache c;
    struct msg qm[6], rm;
    struct zone_dns_query q[6];
    struct zone_dns_layout l;
    struct rsv__key k[6];
    uint8_t out[4096];
    uint64_t rng = 1;
    char name[32];

    (void)state;
    rsv__cache_init(&c, RSV__WAYS, 0); /* one set: every key competes */
    assert_int_equal(c.n_sets, 1);
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "s%d.service.consul", i);
        query(&qm[i], &q[i], name, 1, 0, 1, false, false);
        rsv__key_make(&k[i], &q[i], 512);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "s%d.service.consul", i);
        response_a(&rm, &l, name, 1, 0, 1);
        assert_true(rsv__cache_insert(&c, &k[i], 1, rm.b, rm.n, &l));
    }
    /* Use s0: s1 is now the least recently used and goes first. */
    assert_true(rsv__cache_lookup(&c, &k[0], 1, &q[0], &rng, out, sizeof out) > 0);
    response_a(&rm, &l, "s4.service.consul", 1, 0, 1);
    assert_true(rsv__cache_insert(&c, &k[4], 1, rm.b, rm.n, &l));
    assert_int_equal(c.evictions, 1);
    assert_int_equal(rsv__cache_lookup(&c, &k[1], 1, &q[1], &rng, out, sizeof out), 0);
    assert_true(rsv__cache_lookup(&c, &k[0], 1, &q[0], &rng, out, sizeof out) > 0);
    assert_true(rsv__cache_lookup(&c, &k[4], 1, &q[4], &rng, out, sizeof out) > 0);

    /* At a new index every entry is stale: a new key takes a stale way, no eviction counted. */
    response_a(&rm, &l, "s5.service.consul", 1, 0, 1);
    assert_true(rsv__cache_insert(&c, &k[5], 2, rm.b, rm.n, &l));
    assert_int_equal(c.evictions, 1);
    assert_true(rsv__cache_lookup(&c, &k[5], 2, &q[5], &rng, out, sizeof out) > 0);
    rsv__cache_close(&c);
}

static void test_byte_budget(void **state)
{
    struct cx x;

    (void)state;
    cx_init(&x, 64, 256);
    cx_ask(&x, "big.service.consul", 1, 0, 1);
    response_a(&x.rm, &x.l, "big.service.consul", 1, 0, 20); /* ~360 bytes: over the budget */
    assert_false(cx_insert(&x, 1));
    assert_int_equal(cx_lookup(&x, 1), 0);
    response_a(&x.rm, &x.l, "big.service.consul", 1, 0, 2);
    assert_true(cx_insert(&x, 1));
    assert_true(x.c.bytes <= 256);
    /* Growing past the budget drops the entry instead. */
    response_a(&x.rm, &x.l, "big.service.consul", 1, 0, 20);
    assert_false(cx_insert(&x, 2));
    assert_int_equal(x.c.bytes, 0);
    assert_int_equal(cx_lookup(&x, 1), 0);
    rsv__cache_close(&x.c);
}

static void test_rng_is_not_stuck(void **state)
{
    uint64_t s = 0, a, b;
    (void)state;
    a = rsv__rng_next(&s);
    b = rsv__rng_next(&s);
    assert_true(a != b);
    assert_true(s != 0);
    assert_true(rsv__rng_seed() != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_lookup_hit_and_miss),
        cmocka_unit_test(test_key_parts),
        cmocka_unit_test(test_hit_patches_id_flags_and_case),
        cmocka_unit_test(test_hit_permutes_contiguous_rrs_without_allocating),
        cmocka_unit_test(test_hit_permutes_equal_slots),
        cmocka_unit_test(test_layout_in_any_order_is_sorted),
        cmocka_unit_test(test_bad_layouts_are_not_cached),
        cmocka_unit_test(test_reinsert_after_invalidation_reuses_the_buffer),
        cmocka_unit_test(test_set_replacement),
        cmocka_unit_test(test_byte_budget),
        cmocka_unit_test(test_rng_is_not_stuck),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
