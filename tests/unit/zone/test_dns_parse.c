/* Tests zone/dns_parse.c: the fields of a good query, and every way a query can be malformed:
 * short headers, QR=1, empty input, labels past the end, names over 255 bytes, reserved label
 * types, compression in the question, pointer loops, forward pointers and pointer chains that
 * expand past 255 bytes in other sections, OPT rules (two OPTs, owner, options, version),
 * outcome precedence, a 64 KiB query, every truncation of a good query, and random
 * corruption (no crash, sane results). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "zone/dns_test.h"

/* ---- building blocks ------------------------------------------------------------------- */
struct msg {
    uint8_t b[70000];
    size_t n;
};

static void put(struct msg *m, const void *p, size_t n)
{
    assert_true(m->n + n <= sizeof m->b);
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void put16(struct msg *m, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(m, b, 2);
}

static void hdr(struct msg *m, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar)
{
    m->n = 0;
    put16(m, 0xbeef);
    put16(m, flags);
    put16(m, qd);
    put16(m, an);
    put16(m, ns);
    put16(m, ar);
}

static void name(struct msg *m, const char *s)
{
    uint8_t w[512];
    size_t n = dnst_name(s, w, sizeof w);
    assert_true(n > 0);
    put(m, w, n);
}

static void question(struct msg *m, const char *qname, uint16_t type)
{
    name(m, qname);
    put16(m, type);
    put16(m, 1);
}

/* OPT: owner root, size, version, flags, rdata */
static void opt(struct msg *m, uint16_t size, uint8_t version, uint16_t flags, const void *rd,
                uint16_t rdlen)
{
    uint8_t root = 0;
    put(m, &root, 1);
    put16(m, 41);
    put16(m, size);
    uint8_t ttl[4] = {0, version, (uint8_t)(flags >> 8), (uint8_t)flags};
    put(m, ttl, 4);
    put16(m, rdlen);
    if (rdlen)
        put(m, rd, rdlen);
}

/* An RR with the given raw owner bytes, type A, 4 bytes of rdata. */
static void rr_owner(struct msg *m, const void *owner, size_t n)
{
    put(m, owner, n);
    put16(m, 1);
    put16(m, 1);
    put16(m, 0);
    put16(m, 60);
    put16(m, 4);
    uint8_t ip[4] = {10, 0, 0, 1};
    put(m, ip, 4);
}

static int parse(const struct msg *m, struct zone_dns_query *q)
{
    return zone_dns_parse(m->b, m->n, q);
}

/* ---- good queries ---------------------------------------------------------------------- */
static void test_fields(void **state)
{
    struct msg m;
    struct zone_dns_query q;
    (void)state;

    hdr(&m, 0x0110 | 0x0040, 1, 0, 0, 1); /* RD, CD, Z */
    question(&m, "SvC1.Service.CONSUL", 33);
    opt(&m, 4096, 0, 0x8000, NULL, 0);
    assert_int_equal(parse(&m, &q), 0);
    assert_int_equal(q.id, 0xbeef);
    assert_int_equal(q.flags, 0x0150);
    assert_int_equal(q.opcode, 0);
    assert_int_equal(q.qtype, 33);
    assert_int_equal(q.qclass, 1);
    assert_int_equal(q.qname_len, 21);
    assert_memory_equal(q.lname, "\4svc1\7service\6consul", 21);
    assert_int_equal(q.question_end, 12 + 21 + 4);
    assert_true(q.edns);
    assert_int_equal(q.edns_size, 4096);
    assert_int_equal(q.edns_version, 0);
    assert_true(q.edns_do);
    assert_ptr_equal(q.pkt, m.b);
    assert_int_equal(q.len, m.n);
}

static void test_no_edns(void **state)
{
    struct msg m;
    struct zone_dns_query q;
    (void)state;

    hdr(&m, 0, 1, 0, 0, 0);
    question(&m, "consul", 6);
    assert_int_equal(parse(&m, &q), 0);
    assert_false(q.edns);
    assert_int_equal(q.edns_size, 0);
    assert_false(q.edns_do);
}

static void test_root_question(void **state)
{
    struct msg m;
    struct zone_dns_query q;
    (void)state;

    hdr(&m, 0, 1, 0, 0, 0);
    question(&m, ".", 2);
    assert_int_equal(parse(&m, &q), 0);
    assert_int_equal(q.qname_len, 1);
    assert_int_equal(q.lname[0], 0);
}

static void test_longest_name(void **state)
{
    struct msg m;
    struct zone_dns_query q;
    char s[300];
    (void)state;

    /* 3 x 63 + 61: 255 bytes with the root */
    memset(s, 'a', sizeof s);
    s[63] = s[127] = s[191] = '.';
    s[253] = 0;
    hdr(&m, 0, 1, 0, 0, 0);
    question(&m, s, 1);
    assert_int_equal(parse(&m, &q), 0);
    assert_int_equal(q.qname_len, 255);
    /* one more byte is over */
    s[253] = 'a';
    s[254] = 0;
    hdr(&m, 0, 1, 0, 0, 0);
    question(&m, s, 1);
    assert_int_equal(parse(&m, &q), ZONE_DNS_FORMERR);
    assert_int_equal(q.question_end, 0);
}

/* ---- drop ------------------------------------------------------------------------------ */
static void test_drop(void **state)
{
    struct msg m;
    struct zone_dns_query q;
    (void)state;

    assert_int_equal(zone_dns_parse(NULL, 0, &q), ZONE_DNS_DROP);
    assert_int_equal(zone_dns_parse(m.b, 0, &q), ZONE_DNS_DROP);
    hdr(&m, 0, 1, 0, 0, 0);
    for (size_t n = 0; n < 12; n++)
        assert_int_equal(zone_dns_parse(m.b, n, &q), ZONE_DNS_DROP);
    /* QR=1, whatever follows */
    hdr(&m, 0x8000, 1, 0, 0, 0);
    question(&m, "svc1.service.consul", 1);
    assert_int_equal(parse(&m, &q), ZONE_DNS_DROP);
    hdr(&m, 0x8000 | 0x7800, 0, 0, 0, 0);
    assert_int_equal(parse(&m, &q), ZONE_DNS_DROP);
}

/* ---- question -------------------------------------------------------------------------- */
static void test_qdcount(void **state)
{
    struct msg m;
    struct zone_dns_query q;
    (void)state;

    hdr(&m, 0, 0, 0, 0, 0);
    assert_int_equal(parse(&m, &q), ZONE_DNS_FORMERR);
    assert_int_equal(q.question_end, 0);
    hdr(&m, 0, 2, 0, 0, 1);
    question(&m, "a.consul", 1);
    question(&m, "b.consul", 1);
    opt(&m, 1232, 0, 0x8000, NULL, 0);
    assert_int_equal(parse(&m, &q), ZONE_DNS_FORMERR);
    assert_int_equal(q.question_end, 0);
    assert_true(q.edns); /* the OPT was sound: the FORMERR carries one */
    assert_true(q.edns_do);
    /* a huge QDCOUNT with nothing behind it */
    hdr(&m, 0, 0xffff, 0, 0, 0);
    question(&m, "a.consul", 1);
    assert_int_equal(parse(&m, &q), ZONE_DNS_FORMERR);
    assert_false(q.edns);
}

static void test_bad_question_names(void **state)
{
    static const struct {
        const char *what;
        const char *bytes;
        size_t n;
    } cases[] = {
        {"label past end", "\5abc", 4},
        {"no root", "\3abc", 4},
        {"pointer", "\300\014\0\1\0\1", 6},
        {"pointer after a label", "\1a\300\014\0\1\0\1", 8},
        {"label type 01", "\101a\0\0\1\0\1", 7},
        {"label type 10", "\201a\0\0\1\0\1", 7},
        {"type cut", "\1a\0\0", 4},
        {"class cut", "\1a\0\0\1\0", 6},
        {"nothing", "", 0},
    };
    struct msg m;
    struct zone_dns_query q;
    (void)state;

    for (size_t i = 0; i < BASE_ARRAY_LEN(cases); i++) {
        hdr(&m, 0, 1, 0, 0, 0);
        put(&m, cases[i].bytes, cases[i].n);
        int rc = parse(&m, &q);
        if (rc != ZONE_DNS_FORMERR)
            fail_msg("%s: %d", cases[i].what, rc);
        assert_int_equal(q.question_end, 0);
    }
}

static void test_name_over_255(void **state)
{
    struct msg m;
    struct zone_dns_query q;
    uint8_t lab[64];
    (void)state;

    /* five 63-byte labels */
    lab[0] = 63;
    memset(lab + 1, 'x', 63);
    hdr(&m, 0, 1, 0, 0, 0);
    for (int i = 0; i < 5; i++)
        put(&m, lab, 64);
    put(&m, "\0\0\1\0\1", 5);
    assert_int_equal(parse(&m, &q), ZONE_DNS_FORMERR);
    /* 128 one-byte labels: 257 bytes */
    hdr(&m, 0, 1, 0, 0, 0);
    for (int i = 0; i < 128; i++)
        put(&m, "\1a", 2);
    put(&m, "\0\0\1\0\1", 5);
    assert_int_equal(parse(&m, &q), ZONE_DNS_FORMERR);
    /* 127 one-byte labels: 255 bytes, fine */
    hdr(&m, 0, 1, 0, 0, 0);
    for (int i = 0; i < 127; i++)
        put(&m, "\1a", 2);
    put(&m, "\0\0\1\0\1", 5);
    assert_int_equal(parse(&m, &q), 0);
    assert_int_equal(q.qname_len, 255);
}

/* ---- other sections: compression ------------------------------------------------------- */
static void test_pointers_in_other_sections(void **state)
{
    struct msg m;
    struct zone_dns_query q;
    (void)state;

    /* the question ends at 12 + 21 + 4 = 37 */
    static const struct {
        const char *what;
        const char *owner;
        size_t n;
        int rc;
    } cases[] = {
        {"pointer to the question", "\300\014", 2, 0},
        {"label then pointer to the question", "\1a\300\014", 4, 0},
        {"pointer to a suffix of the question", "\300\021", 2, 0},
        {"pointer to itself", "\300\045", 2, ZONE_DNS_FORMERR},
        {"loop through a label", "\1a\300\045", 4, ZONE_DNS_FORMERR},
        {"forward pointer", "\300\100", 2, ZONE_DNS_FORMERR},
        {"pointer into the header", "\300\004", 2, ZONE_DNS_FORMERR},
        {"pointer cut", "\300", 1, ZONE_DNS_FORMERR},
        {"reserved label type", "\101a\0", 3, ZONE_DNS_FORMERR},
    };
    for (size_t i = 0; i < BASE_ARRAY_LEN(cases); i++) {
        for (int sec = 0; sec < 3; sec++) {
            hdr(&m, 0, 1, sec == 0, sec == 1, sec == 2);
            question(&m, "svc1.service.consul", 1);
            if (cases[i].n == 1) {
                put(&m, cases[i].owner, 1);
            } else {
                rr_owner(&m, cases[i].owner, cases[i].n);
                put(&m, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16); /* room for forward targets */
            }
            int rc = parse(&m, &q);
            if (rc != cases[i].rc)
                fail_msg("%s in section %d: %d", cases[i].what, sec, rc);
        }
    }
}

static void test_pointer_chain(void **state)
{
    struct msg m;
    struct zone_dns_query q;
    (void)state;

    /* each Additional owner is one 20-byte label and a pointer to the previous owner: valid
     * while the expansion stays within 255 bytes, FORMERR past it */
    for (int depth = 1; depth <= 14; depth++) {
        size_t prev = 12;
        hdr(&m, 0, 1, 0, 0, (uint16_t)depth);
        question(&m, "svc1.service.consul", 1);
        for (int i = 0; i < depth; i++) {
            uint8_t owner[24];
            owner[0] = 20;
            memset(owner + 1, 'p', 20);
            owner[21] = (uint8_t)(0xc0 | prev >> 8);
            owner[22] = (uint8_t)prev;
            size_t at = m.n;
            rr_owner(&m, owner, 23);
            prev = at;
        }
        size_t expanded = (size_t)depth * 21 + 21;
        int rc = parse(&m, &q);
        if (expanded <= 255)
            assert_int_equal(rc, 0);
        else
            assert_int_equal(rc, ZONE_DNS_FORMERR);
    }
    /* a chain of 200 pointers, each to the one before: long but strictly backwards */
    hdr(&m, 0, 1, 0, 0, 200);
    question(&m, "a", 1);
    size_t prev = 12;
    for (int i = 0; i < 200; i++) {
        uint8_t owner[2] = {(uint8_t)(0xc0 | prev >> 8), (uint8_t)prev};
        size_t at = m.n;
        rr_owner(&m, owner, 2);
        prev = at;
    }
    assert_int_equal(parse(&m, &q), 0);
}

static void test_counts_past_end(void **state)
{
    struct msg m;
    struct zone_dns_query q;
    (void)state;

    for (int sec = 0; sec < 3; sec++) {
        hdr(&m, 0, 1, sec == 0 ? 0xffff : 0, sec == 1 ? 0xffff : 0, sec == 2 ? 0xffff : 0);
        question(&m, "svc1.service.consul", 1);
        rr_owner(&m, "\0", 1);
        assert_int_equal(parse(&m, &q), ZONE_DNS_FORMERR);
        assert_int_not_equal(q.question_end, 0); /* the question was sound: echoed */
    }
    /* rdata past the end */
    hdr(&m, 0, 1, 0, 0, 1);
    question(&m, "svc1.service.consul", 1);
    rr_owner(&m, "\0", 1);
    m.n -= 2;
    assert_int_equal(parse(&m, &q), ZONE_DNS_FORMERR);
}

/* ---- OPT ------------------------------------------------------------------------------- */
static void test_opt_rules(void **state)
{
    struct msg m;
    struct zone_dns_query q;
    (void)state;

    /* two OPTs */
    hdr(&m, 0, 1, 0, 0, 2);
    question(&m, "consul", 6);
    opt(&m, 1232, 0, 0, NULL, 0);
    opt(&m, 1232, 0, 0, NULL, 0);
    assert_int_equal(parse(&m, &q), ZONE_DNS_FORMERR);
    assert_false(q.edns);
    assert_int_not_equal(q.question_end, 0);

    /* owner not the root */
    hdr(&m, 0, 1, 0, 0, 1);
    question(&m, "consul", 6);
    put(&m, "\1a", 2);
    opt(&m, 1232, 0, 0, NULL, 0);
    assert_int_equal(parse(&m, &q), ZONE_DNS_FORMERR);
    assert_false(q.edns);

    /* options that tile the rdata, unknown ones included */
    static const uint8_t good[] = {0, 100, 0, 2, 0xab, 0xcd, 0, 12, 0, 0, 0xff, 0xff, 0, 1, 7};
    hdr(&m, 0, 1, 0, 0, 1);
    question(&m, "consul", 6);
    opt(&m, 512, 0, 0, good, sizeof good);
    assert_int_equal(parse(&m, &q), 0);
    assert_true(q.edns);
    assert_int_equal(q.edns_size, 512);

    /* RFC 7873 §5.2.2: a COOKIE of 8 or 16..40 bytes is sound, any other length FORMERR with
     * the OPT kept for the response */
    for (uint8_t len = 0; len <= 44; len++) {
        uint8_t ck[4 + 44] = {0, 10, 0, len};
        hdr(&m, 0, 1, 0, 0, 1);
        question(&m, "consul", 6);
        opt(&m, 1232, 0, 0, ck, 4u + len);
        bool sound = len == 8 || (len >= 16 && len <= 40);
        assert_int_equal(parse(&m, &q), sound ? 0 : ZONE_DNS_FORMERR);
        assert_true(q.edns);
    }

    /* an option header cut, an option overrunning */
    static const uint8_t cut[] = {0, 100, 0};
    static const uint8_t over[] = {0, 100, 0, 5, 1, 2};
    const uint8_t *bad[] = {cut, over};
    size_t bad_n[] = {sizeof cut, sizeof over};
    for (int i = 0; i < 2; i++) {
        hdr(&m, 0, 1, 0, 0, 1);
        question(&m, "consul", 6);
        opt(&m, 1232, 0, 0, bad[i], (uint16_t)bad_n[i]);
        assert_int_equal(parse(&m, &q), ZONE_DNS_FORMERR);
        assert_false(q.edns);
    }

    /* an OPT outside Additional is not the query's */
    hdr(&m, 0, 1, 1, 0, 0);
    question(&m, "consul", 6);
    opt(&m, 1232, 1, 0, NULL, 0);
    assert_int_equal(parse(&m, &q), 0);
    assert_false(q.edns);

    /* Z flags are read but mean nothing; the size is recorded as sent */
    hdr(&m, 0, 1, 0, 0, 1);
    question(&m, "consul", 6);
    opt(&m, 100, 0, 0x7fff, NULL, 0);
    assert_int_equal(parse(&m, &q), 0);
    assert_false(q.edns_do);
    assert_int_equal(q.edns_size, 100);
}

static void test_precedence(void **state)
{
    struct msg m;
    struct zone_dns_query q;
    (void)state;

    /* BADVERS for a sound query */
    hdr(&m, 0, 1, 0, 0, 1);
    question(&m, "consul", 6);
    opt(&m, 1232, 1, 0x8000, NULL, 0);
    assert_int_equal(parse(&m, &q), ZONE_DNS_BADVERS);
    assert_true(q.edns);
    assert_int_equal(q.edns_version, 1);
    assert_true(q.edns_do);
    assert_int_not_equal(q.question_end, 0);

    /* FORMERR beats BADVERS */
    hdr(&m, 0, 2, 0, 0, 1);
    question(&m, "a", 1);
    question(&m, "b", 1);
    opt(&m, 1232, 1, 0, NULL, 0);
    assert_int_equal(parse(&m, &q), ZONE_DNS_FORMERR);

    /* NOTIMP beats both; the question and OPT are kept for the response */
    hdr(&m, 15 << 11, 1, 0, 0, 1);
    question(&m, "consul", 6);
    opt(&m, 1232, 1, 0, NULL, 0);
    assert_int_equal(parse(&m, &q), ZONE_DNS_NOTIMP);
    assert_int_equal(q.opcode, 15);
    assert_true(q.edns);
    assert_int_not_equal(q.question_end, 0);
    hdr(&m, 5 << 11, 0, 0, 0, 0);
    assert_int_equal(parse(&m, &q), ZONE_DNS_NOTIMP);
    hdr(&m, 1 << 11, 1, 0, 0, 0);
    put(&m, "\300\014", 2);
    assert_int_equal(parse(&m, &q), ZONE_DNS_NOTIMP);
    assert_int_equal(q.question_end, 0);
}

/* ---- size ------------------------------------------------------------------------------ */
static void test_64k_query(void **state)
{
    struct msg *m = malloc(sizeof *m);
    struct zone_dns_query q;
    (void)state;

    /* a question, one Additional TXT record filling the message to 65535 bytes, an OPT */
    hdr(m, 0, 1, 0, 0, 2);
    question(m, "svc1.service.consul", 16);
    size_t rest = 65535 - m->n - 11 - 11;
    put(m, "\0\0\20\0\1\0\0\0\0", 9);
    put16(m, (uint16_t)rest);
    memset(m->b + m->n, 'x', rest);
    m->n += rest;
    opt(m, 65535, 0, 0x8000, NULL, 0);
    assert_int_equal(m->n, 65535);
    assert_int_equal(parse(m, &q), 0);
    assert_true(q.edns);
    assert_int_equal(q.edns_size, 65535);
    assert_int_equal(q.qtype, 16);
    free(m);
}

/* Every prefix of a good query: drop under 12 bytes, FORMERR after, 0 only when whole (or
 * when only trailing bytes of nothing are missing). */
static void test_every_truncation(void **state)
{
    struct msg m;
    struct zone_dns_query q;
    (void)state;

    hdr(&m, 0x0100, 1, 0, 0, 1);
    question(&m, "svc1.service.consul", 33);
    static const uint8_t o[] = {0, 100, 0, 2, 1, 2};
    opt(&m, 1232, 0, 0x8000, o, sizeof o);
    for (size_t n = 0; n < m.n; n++) {
        int rc = zone_dns_parse(m.b, n, &q);
        if (n < 12)
            assert_int_equal(rc, ZONE_DNS_DROP);
        else
            assert_int_equal(rc, ZONE_DNS_FORMERR);
    }
    assert_int_equal(zone_dns_parse(m.b, m.n, &q), 0);
}

/* Random corruption of good queries: never a crash, results within the contract. */
static void test_random_corruption(void **state)
{
    struct msg base, m;
    struct zone_dns_query q;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    (void)state;

    hdr(&base, 0x0100, 1, 0, 0, 2);
    question(&base, "_svc1._tcp.service.dc1.consul", 33);
    rr_owner(&base, "\1a\300\014", 4);
    opt(&base, 1232, 0, 0x8000, "\0\12\0\0", 4);
    for (int i = 0; i < 200000; i++) {
        m = base;
        int flips = 1 + i % 4;
        for (int k = 0; k < flips; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m.b[x % m.n] = (uint8_t)(x >> 24);
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t n = i % 3 == 0 ? x % (m.n + 1) : m.n;
        int rc = zone_dns_parse(m.b, n, &q);
        assert_true(rc >= 0 && rc <= ZONE_DNS_BADVERS);
        if (rc == 0) {
            assert_true(q.question_end > 12 && q.question_end <= n);
            assert_true(q.qname_len >= 1 && q.qname_len <= 255);
            assert_int_equal(q.lname[q.qname_len - 1], 0);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_no_edns),
        cmocka_unit_test(test_root_question),
        cmocka_unit_test(test_longest_name),
        cmocka_unit_test(test_drop),
        cmocka_unit_test(test_qdcount),
        cmocka_unit_test(test_bad_question_names),
        cmocka_unit_test(test_name_over_255),
        cmocka_unit_test(test_pointers_in_other_sections),
        cmocka_unit_test(test_pointer_chain),
        cmocka_unit_test(test_counts_past_end),
        cmocka_unit_test(test_opt_rules),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_64k_query),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_random_corruption),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
