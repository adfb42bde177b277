/* Tests resolver/relay.c: a libunbound answer packet (built here with ldns, compressed, with
 * the OPT libunbound adds) relayed to a client: the client's ID, question bytes and RD/CD,
 * QR and RA set, AA clear, AD only when asked, the rcode and every section intact (names
 * still valid after the question's case changed), our OPT only for EDNS clients (DO copied),
 * truncation (additional dropped first without TC, then TC with no records), DNSSEC records
 * only for DO clients, refusal of a packet that does not answer the question, and the TTL
 * helpers of the worker's answer copies (smallest TTL, aging). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ldns/ldns.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "resolver/internal.h"

/* ---- helpers --------------------------------------------------------------------------- */

struct query {
    uint8_t wire[512];
    size_t len;
    struct zone_dns_query q;
};

static void make_query(struct query *qq, const char *name, ldns_rr_type type, uint16_t id,
                       uint16_t edns_size, bool do_bit, bool cd)
{
    ldns_pkt *p = NULL;
    uint8_t *wire = NULL;

    assert_int_equal(ldns_pkt_query_new_frm_str(&p, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
                     LDNS_STATUS_OK);
    ldns_pkt_set_id(p, id);
    ldns_pkt_set_cd(p, cd);
    if (edns_size) {
        ldns_pkt_set_edns_udp_size(p, edns_size);
        ldns_pkt_set_edns_do(p, do_bit);
    }
    assert_int_equal(ldns_pkt2wire(&wire, p, &qq->len), LDNS_STATUS_OK);
    assert_true(qq->len <= sizeof qq->wire);
    memcpy(qq->wire, wire, qq->len);
    free(wire);
    ldns_pkt_free(p);
    assert_int_equal(zone_dns_parse(qq->wire, qq->len, &qq->q), 0);
}

static void push(ldns_pkt *p, ldns_pkt_section sec, const char *const *rrs)
{
    for (; rrs && *rrs; rrs++) {
        ldns_rr *rr = NULL;
        assert_int_equal(ldns_rr_new_frm_str(&rr, *rrs, 300, NULL, NULL), LDNS_STATUS_OK);
        assert_true(ldns_pkt_push_rr(p, sec, rr));
    }
}

/* An answer as libunbound hands it back: ID 0, QR RD RA, its own OPT with DO. */
static uint8_t *upstream(const char *qname, ldns_rr_type type, ldns_pkt_rcode rcode,
                         const char *const *an, const char *const *ns, const char *const *ar,
                         size_t *len)
{
    ldns_pkt *p = NULL;
    uint8_t *wire = NULL;

    assert_int_equal(ldns_pkt_query_new_frm_str(&p, qname, type, LDNS_RR_CLASS_IN, LDNS_RD),
                     LDNS_STATUS_OK);
    ldns_pkt_set_id(p, 0);
    ldns_pkt_set_qr(p, true);
    ldns_pkt_set_ra(p, true);
    ldns_pkt_set_rcode(p, (uint8_t)rcode);
    push(p, LDNS_SECTION_ANSWER, an);
    push(p, LDNS_SECTION_AUTHORITY, ns);
    push(p, LDNS_SECTION_ADDITIONAL, ar);
    ldns_pkt_set_edns_udp_size(p, 1232);
    ldns_pkt_set_edns_do(p, true);
    assert_int_equal(ldns_pkt2wire(&wire, p, len), LDNS_STATUS_OK);
    ldns_pkt_free(p);
    return wire;
}

static ldns_pkt *relay(const struct query *qq, size_t limit, bool ad, const uint8_t *up,
                       size_t uplen, uint8_t *out, size_t *n)
{
    ldns_pkt *p = NULL;
    *n = rsv__relay(&qq->q, limit, ad, up, uplen, out, 65535);
    assert_true(*n >= 12);
    assert_int_equal(ldns_wire2pkt(&p, out, *n), LDNS_STATUS_OK);
    return p;
}

static size_t count_type(const ldns_rr_list *l, ldns_rr_type t)
{
    size_t n = 0;
    for (size_t i = 0; i < ldns_rr_list_rr_count(l); i++)
        n += ldns_rr_get_type(ldns_rr_list_rr(l, i)) == t;
    return n;
}

static const char *const AN[] = {
    "www.example.org. 300 IN CNAME web.example.org.",
    "web.example.org. 300 IN A 192.0.2.1",
    "web.example.org. 300 IN A 192.0.2.2",
    NULL,
};
static const char *const NS[] = {"example.org. 300 IN NS ns1.example.org.", NULL};
static const char *const AR[] = {"ns1.example.org. 300 IN A 192.0.2.53", NULL};

/* ---- tests ----------------------------------------------------------------------------- */

static void test_answer_keeps_the_clients_id_question_and_flags(void **state)
{
    struct query qq;
    uint8_t out[65535];
    size_t uplen, n;
    (void)state;

    make_query(&qq, "WwW.ExAmple.ORG.", LDNS_RR_TYPE_A, 777, 0, false, true);
    uint8_t *up =
        upstream("www.example.org.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, AN, NS, AR, &uplen);
    ldns_pkt *p = relay(&qq, 512, false, up, uplen, out, &n);

    assert_int_equal(ldns_pkt_id(p), 777);
    assert_true(ldns_pkt_qr(p));
    assert_true(ldns_pkt_rd(p));
    assert_true(ldns_pkt_ra(p));
    assert_true(ldns_pkt_cd(p));
    assert_false(ldns_pkt_aa(p));
    assert_false(ldns_pkt_tc(p));
    assert_false(ldns_pkt_ad(p));
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    /* RFC 1035 §7.3: the question as the client sent it, byte for byte */
    assert_memory_equal(out + 12, qq.wire + 12, qq.q.qname_len + 4);
    /* every section, with names that still resolve through the compression pointers */
    assert_int_equal(ldns_pkt_ancount(p), 3);
    assert_int_equal(ldns_pkt_nscount(p), 1);
    assert_int_equal(ldns_pkt_arcount(p), 1);
    assert_false(ldns_pkt_edns(p)); /* no OPT: the client sent none */
    ldns_rr *cname = ldns_rr_list_rr(ldns_pkt_answer(p), 0);
    char *owner = ldns_rdf2str(ldns_rr_owner(cname));
    char *target = ldns_rdf2str(ldns_rr_rdf(cname, 0));
    assert_string_equal(owner, "WwW.ExAmple.ORG."); /* compressed against the client's case */
    /* names that share a suffix with the question take its case there, as with any server
     * that compresses against the question: equal for DNS (RFC 4343) */
    assert_int_equal(strcasecmp(target, "web.example.org."), 0);
    free(owner);
    free(target);
    char *glue = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_additional(p), 0)));
    assert_int_equal(strcasecmp(glue, "ns1.example.org."), 0);
    free(glue);
    ldns_pkt_free(p);

    /* without RD and CD in the query, none in the answer */
    make_query(&qq, "www.example.org.", LDNS_RR_TYPE_A, 9, 0, false, false);
    qq.wire[2] &= (uint8_t)~0x01; /* RD off */
    assert_int_equal(zone_dns_parse(qq.wire, qq.len, &qq.q), 0);
    p = relay(&qq, 512, false, up, uplen, out, &n);
    assert_false(ldns_pkt_rd(p));
    assert_false(ldns_pkt_cd(p));
    assert_true(ldns_pkt_ra(p));
    ldns_pkt_free(p);
    free(up);
}

static void test_edns_clients_get_our_opt_and_ad_when_validated(void **state)
{
    struct query qq;
    uint8_t out[65535];
    size_t uplen, n;
    (void)state;

    uint8_t *up =
        upstream("www.example.org.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, AN, NULL, NULL, &uplen);
    make_query(&qq, "www.example.org.", LDNS_RR_TYPE_A, 1, 4096, true, false);
    ldns_pkt *p = relay(&qq, 4096, true, up, uplen, out, &n);
    assert_true(ldns_pkt_edns(p));
    assert_int_equal(ldns_pkt_edns_udp_size(p), ZONE_DNS_OUR_UDP_SIZE);
    assert_true(ldns_pkt_edns_do(p));
    assert_int_equal(ldns_pkt_edns_version(p), 0);
    assert_true(ldns_pkt_ad(p));
    assert_int_equal(ldns_pkt_arcount(p), 0);    /* the OPT is not counted by ldns */
    assert_int_equal(out[10] << 8 | out[11], 1); /* on the wire: the OPT alone */
    ldns_pkt_free(p);

    make_query(&qq, "www.example.org.", LDNS_RR_TYPE_A, 2, 1232, false, false);
    p = relay(&qq, 1232, false, up, uplen, out, &n);
    assert_true(ldns_pkt_edns(p));
    assert_false(ldns_pkt_edns_do(p));
    assert_false(ldns_pkt_ad(p));
    ldns_pkt_free(p);
    free(up);
}

static void test_negative_answers_keep_rcode_and_soa(void **state)
{
    static const char *const soa[] = {
        "example.org. 60 IN SOA ns1.example.org. hostmaster.example.org. 1 3600 600 86400 60",
        NULL};
    struct query qq;
    uint8_t out[65535];
    size_t uplen, n;
    (void)state;

    make_query(&qq, "missing.example.org.", LDNS_RR_TYPE_A, 5, 0, false, false);
    uint8_t *up = upstream("missing.example.org.", LDNS_RR_TYPE_A, LDNS_RCODE_NXDOMAIN, NULL, soa,
                           NULL, &uplen);
    ldns_pkt *p = relay(&qq, 512, false, up, uplen, out, &n);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    assert_int_equal(ldns_pkt_ancount(p), 0);
    assert_int_equal(count_type(ldns_pkt_authority(p), LDNS_RR_TYPE_SOA), 1);
    ldns_pkt_free(p);
    free(up);
}

static void test_truncation_drops_additional_first_then_sets_tc(void **state)
{
    const char *an[21];
    char bufs[20][200];
    struct query qq;
    uint8_t out[65535];
    size_t uplen, n;
    (void)state;

    for (int i = 0; i < 20; i++) {
        snprintf(bufs[i], sizeof bufs[i], "big.example.org. 300 IN TXT \"%080d\"", i);
        an[i] = bufs[i];
    }
    an[20] = NULL;
    uint8_t *up =
        upstream("big.example.org.", LDNS_RR_TYPE_TXT, LDNS_RCODE_NOERROR, an, NS, AR, &uplen);
    assert_true(uplen > 1232 && uplen < 4096);

    /* 512: the answer does not fit: TC, the question and no records */
    make_query(&qq, "big.example.org.", LDNS_RR_TYPE_TXT, 3, 0, false, false);
    ldns_pkt *p = relay(&qq, 512, false, up, uplen, out, &n);
    assert_true(ldns_pkt_tc(p));
    assert_int_equal(ldns_pkt_ancount(p) + ldns_pkt_nscount(p) + ldns_pkt_arcount(p), 0);
    assert_int_equal(ldns_pkt_qdcount(p), 1);
    assert_true(n <= 512);
    ldns_pkt_free(p);

    /* EDNS 4096: everything, with our OPT */
    make_query(&qq, "big.example.org.", LDNS_RR_TYPE_TXT, 3, 4096, false, false);
    p = relay(&qq, 4096, false, up, uplen, out, &n);
    assert_false(ldns_pkt_tc(p));
    assert_int_equal(ldns_pkt_ancount(p), 20);
    assert_int_equal(ldns_pkt_arcount(p), 1);
    assert_true(ldns_pkt_edns(p));
    size_t full = n;
    ldns_pkt_free(p);

    /* a limit the answer and authority fit but not the glue: additional dropped, no TC */
    p = relay(&qq, full - 5, false, up, uplen, out, &n);
    assert_false(ldns_pkt_tc(p));
    assert_int_equal(ldns_pkt_ancount(p), 20);
    assert_int_equal(ldns_pkt_nscount(p), 1);
    assert_int_equal(ldns_pkt_arcount(p), 0);
    assert_true(ldns_pkt_edns(p)); /* the OPT stays */
    assert_true(n <= full - 5);
    ldns_pkt_free(p);

    /* TCP: the whole answer */
    p = relay(&qq, 65535, false, up, uplen, out, &n);
    assert_int_equal(n, full);
    ldns_pkt_free(p);
    free(up);
}

static void test_dnssec_records_only_for_do_clients(void **state)
{
    static const char *const an[] = {
        "www.example.org. 300 IN A 192.0.2.1",
        "www.example.org. 300 IN RRSIG A 13 3 300 20300101000000 20200101000000 12345 "
        "example.org. AAAA",
        NULL};
    static const char *const ns[] = {
        "example.org. 300 IN NS ns1.example.org.",
        "example.org. 300 IN RRSIG NS 13 2 300 20300101000000 20200101000000 12345 "
        "example.org. AAAA",
        "www.example.org. 300 IN NSEC zzz.example.org. A RRSIG NSEC", NULL};
    struct query qq;
    uint8_t out[65535];
    size_t uplen, n;
    (void)state;

    uint8_t *up =
        upstream("www.example.org.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, an, ns, AR, &uplen);
    /* no DO: RRSIG and NSEC are left out (RFC 4035 §3.2.1), the rest intact */
    make_query(&qq, "WWW.example.org.", LDNS_RR_TYPE_A, 11, 1232, false, false);
    ldns_pkt *p = relay(&qq, 1232, false, up, uplen, out, &n);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    assert_int_equal(count_type(ldns_pkt_answer(p), LDNS_RR_TYPE_A), 1);
    assert_int_equal(ldns_pkt_nscount(p), 1);
    assert_int_equal(count_type(ldns_pkt_authority(p), LDNS_RR_TYPE_NS), 1);
    assert_int_equal(ldns_pkt_arcount(p), 1);
    assert_int_equal(ldns_pkt_id(p), 11);
    assert_memory_equal(out + 12, qq.wire + 12, qq.q.qname_len + 4);
    ldns_pkt_free(p);
    /* without EDNS at all: the same */
    make_query(&qq, "www.example.org.", LDNS_RR_TYPE_A, 12, 0, false, false);
    p = relay(&qq, 512, false, up, uplen, out, &n);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    assert_int_equal(ldns_pkt_nscount(p), 1);
    ldns_pkt_free(p);
    /* DO: everything */
    make_query(&qq, "www.example.org.", LDNS_RR_TYPE_A, 13, 1232, true, false);
    p = relay(&qq, 1232, true, up, uplen, out, &n);
    assert_int_equal(ldns_pkt_ancount(p), 2);
    assert_int_equal(ldns_pkt_nscount(p), 3);
    assert_true(ldns_pkt_ad(p));
    ldns_pkt_free(p);
    free(up);

    /* asked for by type: kept without DO */
    static const char *const sigs[] = {
        "www.example.org. 300 IN RRSIG A 13 3 300 20300101000000 20200101000000 12345 "
        "example.org. AAAA",
        NULL};
    up = upstream("www.example.org.", LDNS_RR_TYPE_RRSIG, LDNS_RCODE_NOERROR, sigs, NULL, NULL,
                  &uplen);
    make_query(&qq, "www.example.org.", LDNS_RR_TYPE_RRSIG, 14, 0, false, false);
    p = relay(&qq, 512, false, up, uplen, out, &n);
    assert_int_equal(count_type(ldns_pkt_answer(p), LDNS_RR_TYPE_RRSIG), 1);
    ldns_pkt_free(p);
    free(up);
}

static void test_packets_that_do_not_answer_the_question(void **state)
{
    struct query qq;
    uint8_t out[65535];
    size_t uplen;
    (void)state;

    make_query(&qq, "www.example.org.", LDNS_RR_TYPE_A, 1, 0, false, false);
    uint8_t *up =
        upstream("www.example.net.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, AN, NULL, NULL, &uplen);
    assert_int_equal(rsv__relay(&qq.q, 512, false, up, uplen, out, sizeof out), 0);
    free(up);
    up = upstream("www.example.org.", LDNS_RR_TYPE_AAAA, LDNS_RCODE_NOERROR, NULL, NULL, NULL,
                  &uplen);
    assert_int_equal(rsv__relay(&qq.q, 512, false, up, uplen, out, sizeof out), 0);
    free(up);
    up = upstream("www.example.org.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, AN, NS, AR, &uplen);
    for (size_t cut = 0; cut < uplen - 11; cut++) /* the OPT alone may go: 11 bytes */
        assert_int_equal(rsv__relay(&qq.q, 512, false, up, cut, out, sizeof out), 0);
    /* an output buffer too small for anything */
    assert_int_equal(rsv__relay(&qq.q, 512, false, up, uplen, out, 20), 0);
    memset(up + 12 + qq.q.qname_len + 4, 0xff, uplen - (12 + qq.q.qname_len + 4));
    assert_int_equal(rsv__relay(&qq.q, 512, false, up, uplen, out, sizeof out), 0);
    free(up);
}

static uint32_t ttl_at(const uint8_t *msg, size_t len, int i)
{
    ldns_pkt *p = NULL;
    assert_int_equal(ldns_wire2pkt(&p, msg, len), LDNS_STATUS_OK);
    ldns_rr_list *all = ldns_pkt_all_noquestion(p);
    uint32_t ttl = ldns_rr_ttl(ldns_rr_list_rr(all, (size_t)i));
    ldns_rr_list_deep_free(all);
    ldns_pkt_free(p);
    return ttl;
}

static void test_min_ttl_and_aging(void **state)
{
    static const char *const an[] = {"www.example.org. 300 IN A 192.0.2.1",
                                     "www.example.org. 120 IN A 192.0.2.2", NULL};
    static const char *const ns[] = {"example.org. 86400 IN NS ns1.example.org.", NULL};
    struct query qq;
    uint8_t out[65535];
    size_t uplen, n;
    (void)state;

    uint8_t *up =
        upstream("www.example.org.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, an, ns, NULL, &uplen);
    /* the OPT's TTL field holds flags (DO: 0x8000), not a TTL */
    assert_int_equal(rsv__relay_min_ttl(up, uplen), 120);
    assert_int_equal(rsv__relay_min_ttl(up, 11), 0); /* unparsable */
    make_query(&qq, "www.example.org.", LDNS_RR_TYPE_A, 1, 1232, true, false);
    n = rsv__relay(&qq.q, 1232, false, up, uplen, out, sizeof out);
    rsv__relay_age(out, n, 100);
    assert_int_equal(ttl_at(out, n, 0), 200);
    assert_int_equal(ttl_at(out, n, 1), 20);
    assert_int_equal(ttl_at(out, n, 2), 86300);
    rsv__relay_age(out, n, 50);
    assert_int_equal(ttl_at(out, n, 1), 0); /* never below 0 */
    ldns_pkt *p = NULL;
    assert_int_equal(ldns_wire2pkt(&p, out, n), LDNS_STATUS_OK);
    assert_true(ldns_pkt_edns_do(p)); /* the OPT untouched */
    ldns_pkt_free(p);
    free(up);

    up = upstream("www.example.org.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, NULL, NULL, NULL, &uplen);
    assert_int_equal(rsv__relay_min_ttl(up, uplen), UINT32_MAX); /* no RR but the OPT */
    free(up);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_keeps_the_clients_id_question_and_flags),
        cmocka_unit_test(test_edns_clients_get_our_opt_and_ad_when_validated),
        cmocka_unit_test(test_negative_answers_keep_rcode_and_soa),
        cmocka_unit_test(test_truncation_drops_additional_first_then_sets_tc),
        cmocka_unit_test(test_dnssec_records_only_for_do_clients),
        cmocka_unit_test(test_packets_that_do_not_answer_the_question),
        cmocka_unit_test(test_min_ttl_and_aging),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
