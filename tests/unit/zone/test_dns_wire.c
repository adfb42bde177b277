/* Tests zone/dns_wire.c: name building limits, compression only into the question (whole
 * name, suffixes, case, never the root alone, never when not asked), RR rollback at the limit
 * with the reserve (the truncation arithmetic, byte exact), never writing past the buffer,
 * the OPT RR's fields, and zone_dns_error's responses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "zone/dns.h"
#include "zone/dns_test.h"

/* A parsed query for name/type, with or without EDNS. */
static void query(uint8_t *buf, size_t cap, const char *name, uint16_t type, bool edns,
                  struct zone_dns_query *q)
{
    struct dnst_q d;
    dnst_q_init(&d, name, type);
    d.edns = edns;
    d.do_bit = edns;
    d.flags = 0x0110; /* RD, CD */
    size_t n = dnst_build(&d, buf, cap);
    assert_true(n > 0);
    assert_int_equal(zone_dns_parse(buf, n, q), 0);
}

static void wire_name(struct zone__name *nm, const char *s)
{
    zone__name_init(nm);
    zone__name_text(nm, s);
    assert_false(nm->bad);
}

/* ---- names ----------------------------------------------------------------------------- */
static void test_name_limits(void **state)
{
    struct zone__name nm;
    char lab[80];
    (void)state;

    memset(lab, 'a', sizeof lab);
    zone__name_init(&nm);
    zone__name_label(&nm, lab, 63);
    assert_false(nm.bad);
    zone__name_label(&nm, lab, 64);
    assert_true(nm.bad);
    zone__name_init(&nm);
    zone__name_label(&nm, lab, 0);
    assert_true(nm.bad);

    /* 3 x 63 + 61 + root = 255 */
    zone__name_init(&nm);
    for (int i = 0; i < 3; i++)
        zone__name_label(&nm, lab, 63);
    zone__name_label(&nm, lab, 61);
    zone__name_text(&nm, ".");
    assert_false(nm.bad);
    assert_int_equal(nm.n, 255);
    zone__name_init(&nm);
    for (int i = 0; i < 3; i++)
        zone__name_label(&nm, lab, 63);
    zone__name_label(&nm, lab, 62);
    assert_true(nm.bad);

    /* text: trailing dot optional, empty labels refused */
    wire_name(&nm, "node1.node.dc1.consul.");
    assert_int_equal(nm.n, 23);
    assert_memory_equal(nm.b, "\5node1\4node\3dc1\6consul", 23);
    wire_name(&nm, "node1.node.dc1.consul");
    assert_int_equal(nm.n, 23);
    zone__name_init(&nm);
    zone__name_text(&nm, "a..b");
    assert_true(nm.bad);

    struct zone__name w;
    assert_true(zone__dns_text2wire("CoNsUl.", &w));
    assert_memory_equal(w.b, "\6consul", 8);
    assert_true(zone__dns_text2wire(".", &w));
    assert_int_equal(w.n, 1);
    assert_false(zone__dns_text2wire("", &w));
    assert_false(zone__dns_text2wire(NULL, &w));
}

/* ---- compression ----------------------------------------------------------------------- */
static void test_compression_into_question(void **state)
{
    uint8_t qb[512], out[512];
    struct zone_dns_query q;
    struct zone__wire w;
    struct zone__name nm;
    (void)state;

    query(qb, sizeof qb, "SvC1.Service.CONSUL", 1, false, &q);
    zone__wire_start(&w, &q, out, sizeof out, 512, 0x8400);
    size_t at = w.len;
    assert_int_equal(at, 12 + 21 + 4);

    /* the question name itself: C0 0C, whatever its case */
    wire_name(&nm, "svc1.service.consul");
    zone__wire_name(&w, nm.b, nm.n, true);
    assert_int_equal(w.len - at, 2);
    assert_memory_equal(out + at, "\300\014", 2);

    /* a suffix: consul. starts at 12 + 13 = 25 */
    at = w.len;
    wire_name(&nm, "ns.consul");
    zone__wire_name(&w, nm.b, nm.n, true);
    assert_int_equal(w.len - at, 5);
    assert_memory_equal(out + at, "\2ns\300\031", 5);

    /* service.consul. at 12 + 5 = 17, matched case-insensitively */
    at = w.len;
    wire_name(&nm, "x.SERVICE.consul");
    zone__wire_name(&w, nm.b, nm.n, true);
    assert_memory_equal(out + at, "\1x\300\021", 4);

    /* no common suffix but the root: written whole */
    at = w.len;
    wire_name(&nm, "example.com");
    zone__wire_name(&w, nm.b, nm.n, true);
    assert_int_equal(w.len - at, nm.n);
    assert_memory_equal(out + at, nm.b, nm.n);

    /* a suffix that is not at a label boundary of the question: "ice.consul" */
    at = w.len;
    wire_name(&nm, "ice.consul");
    zone__wire_name(&w, nm.b, nm.n, true);
    assert_memory_equal(out + at, "\3ice\300\031", 6);

    /* compress = false: whole */
    at = w.len;
    wire_name(&nm, "node1.node.dc1.consul");
    zone__wire_name(&w, nm.b, nm.n, false);
    assert_int_equal(w.len - at, nm.n);

    /* the root alone */
    at = w.len;
    zone__wire_name(&w, (const uint8_t *)"", 1, true);
    assert_int_equal(w.len - at, 1);
    assert_false(w.over);
}

static void test_no_question_no_compression(void **state)
{
    uint8_t out[512];
    struct zone_dns_query q;
    struct zone__wire w;
    struct zone__name nm;
    (void)state;

    /* QDCOUNT 0: nothing to point at */
    static const uint8_t hdr[12] = {0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(zone_dns_parse(hdr, sizeof hdr, &q), ZONE_DNS_FORMERR);
    zone__wire_start(&w, &q, out, sizeof out, 512, 0x8000);
    assert_int_equal(w.len, 12);
    assert_int_equal(w.count[ZONE__SEC_QD], 0);
    wire_name(&nm, "consul");
    zone__wire_name(&w, nm.b, nm.n, true);
    assert_int_equal(w.len, 12 + nm.n);
}

/* ---- RRs at the limit ------------------------------------------------------------------ */
static void test_rr_fits_exactly(void **state)
{
    uint8_t qb[512], out[600];
    struct zone_dns_query q;
    struct zone__wire w;
    (void)state;

    query(qb, sizeof qb, "a.consul", 1, true, &q); /* question 10 + 4 bytes */
    static const uint8_t ip[4] = {10, 0, 0, 1};
    for (size_t reserve = 0; reserve <= 11; reserve += 11) {
        /* header 12 + question 14 = 26; each A RR is 16 bytes: with limit L and reserve R,
         * floor((L - 26 - R) / 16) RRs fit, for every L */
        for (size_t limit = 26; limit <= 512; limit++) {
            zone__wire_start(&w, &q, out, sizeof out, limit, 0x8400);
            size_t kept = 0;
            for (int i = 0; i < 40; i++) {
                size_t s = zone__wire_rr_begin(&w, q.lname, q.qname_len, ZONE__RR_A, 60);
                zone__wire_bytes(&w, ip, 4);
                size_t before = s;
                if (zone__wire_rr_end(&w, s, reserve, ZONE__SEC_AN))
                    kept++;
                else
                    assert_int_equal(w.len, before); /* rolled back */
            }
            size_t want = limit < 26 + reserve ? 0 : (limit - 26 - reserve) / 16;
            if (want > 40)
                want = 40;
            assert_int_equal(kept, want);
            assert_int_equal(w.count[ZONE__SEC_AN], kept);
            assert_true(w.len + reserve <= limit || kept == 0);
            if (reserve)
                zone__wire_opt(&w, 0, true);
            size_t len = zone__wire_finish(&w);
            assert_true(len <= limit || limit < 26 + reserve);
            ldns_pkt *p;
            assert_int_equal(ldns_wire2pkt(&p, out, len), LDNS_STATUS_OK);
            assert_int_equal(ldns_pkt_ancount(p), kept);
            ldns_pkt_free(p);
        }
    }
}

static void test_never_past_buffer(void **state)
{
    uint8_t qb[512], out[100];
    struct zone_dns_query q;
    struct zone__wire w;
    struct zone__name nm;
    (void)state;

    query(qb, sizeof qb, "svc1.service.consul", 33, false, &q);
    /* a 64-byte buffer inside a guarded one; the limit says 512 */
    memset(out, 0xee, sizeof out);
    zone__wire_start(&w, &q, out, 64, 512, 0x8400);
    wire_name(&nm, "node1.node.dc1.consul");
    int kept = 0;
    for (int i = 0; i < 5; i++) {
        size_t s = zone__wire_rr_begin(&w, q.lname, q.qname_len, ZONE__RR_SRV, 5);
        zone__wire_u16(&w, 1);
        zone__wire_u16(&w, 1);
        zone__wire_u16(&w, 80);
        zone__wire_name(&w, nm.b, nm.n, false);
        kept += zone__wire_rr_end(&w, s, 0, ZONE__SEC_AN);
    }
    assert_int_equal(kept, 0); /* 37 + 41 > 64 */
    for (size_t i = 64; i < sizeof out; i++)
        assert_int_equal(out[i], 0xee);
    /* a header that does not fit at all */
    zone__wire_start(&w, &q, out, 10, 512, 0x8400);
    assert_true(w.over);
    assert_int_equal(zone__wire_finish(&w), 0);
}

static void test_opt_and_flags(void **state)
{
    uint8_t qb[512], out[512];
    struct zone_dns_query q;
    struct zone__wire w;
    (void)state;

    query(qb, sizeof qb, "consul", 6, true, &q);
    zone__wire_start(&w, &q, out, sizeof out, 512, 0x8400);
    zone__wire_flags(&w, 0x0200 | 3, 0x000f);
    zone__wire_opt(&w, 16, true);
    size_t len = zone__wire_finish(&w);
    assert_int_equal(len, 12 + 12 + 11);
    const uint8_t *o = out + len - 11;
    assert_int_equal(o[0], 0);
    assert_int_equal(dnst_get16(o + 1), 41);
    assert_int_equal(dnst_get16(o + 3), 1232);
    assert_int_equal(o[5], 1); /* 16 >> 4 */
    assert_int_equal(o[6], 0); /* version */
    assert_int_equal(dnst_get16(o + 7), 0x8000);
    assert_int_equal(dnst_get16(o + 9), 0);
    assert_int_equal(dnst_get16(out + 2), 0x8603);
    assert_int_equal(dnst_get16(out + 10), 1);
}

/* ---- zone_dns_error -------------------------------------------------------------------- */
static void test_error_responses(void **state)
{
    uint8_t qb[512], out[512];
    struct zone_dns_query q;
    (void)state;

    query(qb, sizeof qb, "Consul", 6, true, &q);
    size_t len = zone_dns_error(&q, 5, true, out, sizeof out);
    assert_int_equal(len, 12 + 12 + 11);
    assert_int_equal(dnst_get16(out), 0x1234);
    /* QR, RD and CD copied, RA as asked, no AA, rcode 5 */
    assert_int_equal(dnst_get16(out + 2), 0x8000 | 0x0100 | 0x0010 | 0x0080 | 5);
    assert_memory_equal(out + 12, qb + 12, 12); /* the question as sent */

    /* BADVERS: header rcode 0, extended 1 */
    len = zone_dns_error(&q, 16, false, out, sizeof out);
    assert_int_equal(dnst_get16(out + 2) & 15, 0);
    assert_int_equal(out[len - 11 + 5], 1);

    /* an extended rcode without an OPT to carry it: SERVFAIL */
    query(qb, sizeof qb, "consul", 6, false, &q);
    len = zone_dns_error(&q, 16, false, out, sizeof out);
    assert_int_equal(dnst_get16(out + 2) & 15, 2);
    assert_int_equal(dnst_get16(out + 10), 0);

    /* too small a buffer: nothing */
    assert_int_equal(zone_dns_error(&q, 1, false, out, 11), 0);
    assert_int_equal(zone_dns_error(&q, 1, false, out, 23), 0);
    assert_int_equal(zone_dns_error(&q, 1, false, out, 24), 24);

    /* opcode copied */
    static const uint8_t notify[] = {0, 1, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(zone_dns_parse(notify, sizeof notify, &q), ZONE_DNS_NOTIMP);
    len = zone_dns_error(&q, 4, false, out, sizeof out);
    assert_int_equal(len, 12);
    assert_int_equal(dnst_get16(out + 2), 0x8000 | 0x2000 | 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_limits),
        cmocka_unit_test(test_compression_into_question),
        cmocka_unit_test(test_no_question_no_compression),
        cmocka_unit_test(test_rr_fits_exactly),
        cmocka_unit_test(test_never_past_buffer),
        cmocka_unit_test(test_opt_and_flags),
        cmocka_unit_test(test_error_responses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
