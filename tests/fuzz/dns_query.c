/* libFuzzer target over the DNS query path of zone/: zone_dns_parse, then zone_dns_error or
 * zone_dns_in_zone + zone_dns_answer, against a store holding the standard fixture
 * (rfc-vectors/dns/fixture.json, loaded once). The first two bytes of the input (the query
 * ID) also pick the transport and a configuration variant, so TCP and UDP limits, only_passing,
 * enable_truncate, the answer limits and the alt domain are all exercised.
 *
 * Besides the sanitizers' findings, every response must hold the invariants the transport and
 * the cache rely on, or the target aborts: it parses with ldns, it carries the query's ID and
 * QR, it fits the UDP limit, every compression pointer points into the question, and the
 * layout's RRs permute into an equivalent response. zone_dns_answer never fails with anything
 * but BASE_ENOTFOUND (a reverse name that is not ours) on a healthy store.
 *
 * Build and run: make fuzz (FUZZ_SECONDS, default 600). Run from the repository root, or set
 * HERALD_FIXTURE to the fixture's path. */
#include "zone/dns_fixture.h"
#include "zone/dns_test.h"

#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct dnsfx g_fx;
static struct base_arena g_ar;
static uint8_t g_out[65535];

static void close_store(void)
{
    dnsfx_close(&g_fx);
    base_arena_close(&g_ar);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *path = getenv("HERALD_FIXTURE");
    (void)argc;
    (void)argv;
    base_log_set_level(BASE_LOG_ERR);
    if (dnsfx_open(&g_fx, path ? path : DNSFX_PATH)) {
        fprintf(stderr, "dns_query: cannot load the fixture (run from the repository root)\n");
        exit(1);
    }
    base_arena_init(&g_ar);
    atexit(close_store);
    return 0;
}

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "dns_query: invariant broken: %s\n", what);
        abort();
    }
}

static void check_response(const uint8_t *q, size_t qlen, const uint8_t *p, size_t len,
                           size_t limit, const struct zone_dns_layout *layout)
{
    char why[256];
    ldns_pkt *pkt = NULL;

    check(len >= 12 && len <= limit, "response within the limit");
    check(qlen >= 2 && p[0] == q[0] && p[1] == q[1], "ID copied");
    check(p[2] & 0x80, "QR set");
    check((p[3] & 0x40) == 0, "Z clear");
    check(ldns_wire2pkt(&pkt, p, len) == LDNS_STATUS_OK, "ldns parses the response");
    ldns_pkt_free(pkt);
    if (!dnst_pointers_ok(p, len, why)) {
        fprintf(stderr, "dns_query: %s\n", why);
        check(false, "compression pointers into the question");
    }
    if (!dnst_layout_ok(p, len, layout, why)) {
        fprintf(stderr, "dns_query: %s\n", why);
        check(false, "layout permutes");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zone_dns_config cfg;
    struct zone_dns_query q;
    struct zone_dns_layout layout = {.n = 0};
    unsigned v = size >= 2 ? (unsigned)(data[0] << 8 | data[1]) : 0;
    uint64_t rng = v + 1;
    size_t len = 0;

    dnsfx_config(&cfg);
    cfg.only_passing = v & 2;
    cfg.enable_truncate = !(v & 4);
    cfg.udp_answer_limit = v & 8 ? 3 : 0;
    cfg.a_record_limit = v & 16 ? 2 : 0;
    if (v & 32)
        cfg.alt_domain = NULL;

    int rc = zone_dns_parse(data, size, &q);
    size_t limit = (v & 1) ? 65535 : dnst_udp_limit(&q);
    switch (rc) {
    case ZONE_DNS_DROP:
        check(size < 12 || (data[2] & 0x80), "drop only short queries and responses");
        return 0;
    case ZONE_DNS_FORMERR:
    case ZONE_DNS_NOTIMP:
    case ZONE_DNS_BADVERS:
        len = zone_dns_error(&q,
                             rc == ZONE_DNS_FORMERR  ? 1
                             : rc == ZONE_DNS_NOTIMP ? 4
                                                     : 16,
                             v & 64, g_out, limit);
        check(len > 0, "an error response always fits");
        check_response(data, size, g_out, len, limit, &layout);
        return 0;
    default:
        break;
    }
    check(rc == 0 && q.question_end > 12 && q.question_end <= size, "a parsed question");
    if (!zone_dns_in_zone(&cfg, &q)) {
        len = zone_dns_error(&q, 5, false, g_out, limit);
        check_response(data, size, g_out, len, limit, &layout);
        return 0;
    }
    struct zone_read *rd;
    check(zone_read_begin(g_fx.s, &rd) == 0, "read begins");
    base_arena_reset(&g_ar);
    rc = zone_dns_answer(rd, &cfg, &q, limit, v & 64, &rng, &g_ar, g_out, sizeof g_out, &len,
                         &layout);
    zone_read_end(rd);
    check(rc == 0 || rc == BASE_ENOTFOUND, "answer succeeds or declines");
    if (rc == 0)
        check_response(data, size, g_out, len, limit, &layout);
    return 0;
}
