/* Tests zone/dns_name.c: which names are ours (domain, alt domain, reverse), how each name
 * form is classified (services, tags, RFC 2782, datacenters bare and labelled, nodes, addr
 * names, empty non-terminals, reverse addresses), and the service TTL patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "zone/dns.h"
#include "zone/dns_fixture.h"
#include "zone/dns_test.h"

static uint8_t g_buf[1024];

static struct zone_dns_query *q_of(const char *name, struct zone_dns_query *q)
{
    struct dnst_q d;
    dnst_q_init(&d, name, 1);
    size_t n = dnst_build(&d, g_buf, sizeof g_buf);
    assert_true(n > 0);
    assert_int_equal(zone_dns_parse(g_buf, n, q), 0);
    return q;
}

static void classify(const struct zone_dns_config *cfg, const char *name, struct zone__qname *out)
{
    struct zone_dns_query q;
    zone__dns_classify(cfg, q_of(name, &q), out);
}

static void test_in_zone(void **state)
{
    struct zone_dns_config cfg;
    struct zone_dns_query q;
    (void)state;

    dnsfx_config(&cfg);
    static const char *const ours[] = {
        "consul",   "CONSUL",     "svc1.service.consul",   "x.y.z.consul",
        "alt.test", "a.ALT.test", "1.0.0.10.in-addr.arpa", "in-addr.arpa",
        "ip6.arpa", "x.ip6.arpa",
    };
    static const char *const not_ours[] = {
        ".",    "com",          "consul.com",           "xconsul", "test", "lt.test",
        "arpa", "example.arpa", "in-addr.arpa.example",
    };
    for (size_t i = 0; i < BASE_ARRAY_LEN(ours); i++)
        if (!zone_dns_in_zone(&cfg, q_of(ours[i], &q)))
            fail_msg("%s should be ours", ours[i]);
    for (size_t i = 0; i < BASE_ARRAY_LEN(not_ours); i++)
        if (zone_dns_in_zone(&cfg, q_of(not_ours[i], &q)))
            fail_msg("%s should not be ours", not_ours[i]);

    /* domain without its trailing dot, no alt domain, a root domain claims nothing */
    cfg.domain = "Consul";
    cfg.alt_domain = "";
    assert_true(zone_dns_in_zone(&cfg, q_of("a.consul", &q)));
    assert_false(zone_dns_in_zone(&cfg, q_of("a.alt.test", &q)));
    cfg.domain = ".";
    assert_false(zone_dns_in_zone(&cfg, q_of("a.consul", &q)));
    cfg.domain = NULL;
    assert_false(zone_dns_in_zone(&cfg, q_of("a.consul", &q)));
    /* a query that did not parse is never ours */
    memset(&q, 0, sizeof q);
    assert_false(zone_dns_in_zone(&cfg, &q));
}

static void test_classify(void **state)
{
    static const struct {
        const char *name;
        enum zone__kind kind;
        const char *service, *tag, *node;
    } cases[] = {
        {"consul", ZONE__K_APEX, "", "", ""},
        {"alt.test", ZONE__K_APEX, "", "", ""},
        {"svc1.service.consul", ZONE__K_SERVICE, "svc1", "", ""},
        {"SVC1.service.consul", ZONE__K_SERVICE, "svc1", "", ""},
        {"v1.svc1.service.consul", ZONE__K_SERVICE, "svc1", "v1", ""},
        {"_svc1._tcp.service.consul", ZONE__K_SERVICE, "svc1", "", ""},
        {"_svc1._udp.service.consul", ZONE__K_SERVICE, "svc1", "udp", ""},
        {"_svc1._v1.service.dc1.consul", ZONE__K_SERVICE, "svc1", "v1", ""},
        {"_svc1.v1.service.consul", ZONE__K_SERVICE, "v1", "_svc1", ""},
        {"svc1.service.dc1.consul", ZONE__K_SERVICE, "svc1", "", ""},
        {"svc1.service.dc1.dc.consul", ZONE__K_SERVICE, "svc1", "", ""},
        {"svc1.service.DC1.DC.consul", ZONE__K_SERVICE, "svc1", "", ""},
        {"_x.service.consul", ZONE__K_SERVICE, "_x", "", ""},
        {"node1.node.consul", ZONE__K_NODE, "", "", "node1"},
        {"node1.node.dc1.consul", ZONE__K_NODE, "", "", "node1"},
        {"dc.node.consul", ZONE__K_NODE, "", "", "dc"},
        {"0a000001.addr.consul", ZONE__K_ADDR, "", "", ""},
        {"service.consul", ZONE__K_ENT, "", "", ""},
        {"node.consul", ZONE__K_ENT, "", "", ""},
        {"addr.consul", ZONE__K_ENT, "", "", ""},
        {"dc1.consul", ZONE__K_ENT, "", "", ""},
        {"dc.consul", ZONE__K_ENT, "", "", ""},
        {"dc1.dc.consul", ZONE__K_ENT, "", "", ""},
        {"service.dc1.consul", ZONE__K_ENT, "", "", ""},
        {"service.dc1.dc.consul", ZONE__K_ENT, "", "", ""},
        {"_tcp.service.consul", ZONE__K_ENT, "", "", ""},
        {"_tcp.service.dc1.dc.consul", ZONE__K_ENT, "", "", ""},
        {"dc2.consul", ZONE__K_NX, "", "", ""},
        {"dc2.dc.consul", ZONE__K_NX, "", "", ""},
        {"svc1.service.dc2.consul", ZONE__K_NX, "", "", ""},
        {"svc1.service.dc.consul", ZONE__K_NX, "", "", ""},
        {"a.b.c.service.consul", ZONE__K_NX, "", "", ""},
        {"a.node1.node.consul", ZONE__K_NX, "", "", ""},
        {"x.query.consul", ZONE__K_NX, "", "", ""},
        {"www.consul", ZONE__K_NX, "", "", ""},
        {"0a00001.addr.consul", ZONE__K_NX, "", "", ""},
        {"0a00000g.addr.consul", ZONE__K_NX, "", "", ""},
        {"a.0a000001.addr.consul", ZONE__K_NX, "", "", ""},
        {"_._tcp.service.consul", ZONE__K_NX, "", "", ""},
        {"1.0.0.10.in-addr.arpa", ZONE__K_PTR, "", "", ""},
        {"0.0.10.in-addr.arpa", ZONE__K_FOREIGN, "", "", ""},
        {"256.0.0.10.in-addr.arpa", ZONE__K_FOREIGN, "", "", ""},
        {"01.0.0.10.in-addr.arpa", ZONE__K_FOREIGN, "", "", ""},
        {"a.0.0.10.in-addr.arpa", ZONE__K_FOREIGN, "", "", ""},
        {"example.com", ZONE__K_FOREIGN, "", "", ""},
    };
    struct zone_dns_config cfg;
    struct zone__qname qn;
    (void)state;

    dnsfx_config(&cfg);
    for (size_t i = 0; i < BASE_ARRAY_LEN(cases); i++) {
        classify(&cfg, cases[i].name, &qn);
        if (qn.kind != cases[i].kind)
            fail_msg("%s: kind %d, expected %d", cases[i].name, qn.kind, cases[i].kind);
        if (qn.kind == ZONE__K_SERVICE &&
            (strcmp(qn.service, cases[i].service) || strcmp(qn.tag, cases[i].tag)))
            fail_msg("%s: service '%s' tag '%s'", cases[i].name, qn.service, qn.tag);
        if (qn.kind == ZONE__K_NODE && strcmp(qn.node, cases[i].node))
            fail_msg("%s: node '%s'", cases[i].name, qn.node);
    }
    classify(&cfg, "_x.service.consul", &qn);
    assert_true(qn.ent_if_empty);
    classify(&cfg, "x.service.consul", &qn);
    assert_false(qn.ent_if_empty);

    /* a label holding a NUL names nothing */
    static const uint8_t nul[] = {0x12, 0x34, 0,   0,   0,   1,   0,   0,   0,   0, 0,
                                  0,    2,    'a', 0,   4,   'n', 'o', 'd', 'e', 6, 'c',
                                  'o',  'n',  's', 'u', 'l', 0,   0,   1,   0,   1};
    struct zone_dns_query q;
    assert_int_equal(zone_dns_parse(nul, sizeof nul, &q), 0);
    zone__dns_classify(&cfg, &q, &qn);
    assert_int_equal(qn.kind, ZONE__K_NX);

    /* the datacenter from the config, case-insensitively */
    cfg.datacenter = "East-1";
    classify(&cfg, "svc1.service.east-1.consul", &qn);
    assert_int_equal(qn.kind, ZONE__K_SERVICE);
    classify(&cfg, "dc1.consul", &qn);
    assert_int_equal(qn.kind, ZONE__K_NX);
}

static void test_addresses(void **state)
{
    struct zone_dns_config cfg;
    struct zone__qname qn;
    (void)state;

    dnsfx_config(&cfg);
    classify(&cfg, "C0A8010A.addr.consul", &qn);
    assert_int_equal(qn.kind, ZONE__K_ADDR);
    assert_int_equal(qn.family, 4);
    assert_memory_equal(qn.ip, "\300\250\001\012", 4);
    classify(&cfg, "20010db8000000000000000000000020.addr.dc1.consul", &qn);
    assert_int_equal(qn.family, 6);
    assert_memory_equal(qn.ip, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x20", 16);

    classify(&cfg, "4.3.2.1.in-addr.arpa", &qn);
    assert_int_equal(qn.kind, ZONE__K_PTR);
    assert_int_equal(qn.family, 4);
    assert_memory_equal(qn.ip, "\1\2\3\4", 4);
    classify(&cfg, "255.0.0.0.IN-ADDR.ARPA", &qn);
    assert_memory_equal(qn.ip, "\0\0\0\377", 4);
    classify(&cfg, "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6.arpa", &qn);
    assert_int_equal(qn.kind, ZONE__K_PTR);
    assert_int_equal(qn.family, 6);
    assert_memory_equal(qn.ip, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x20", 16);
    classify(&cfg, "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", &qn);
    assert_int_equal(qn.kind, ZONE__K_FOREIGN); /* 31 nibbles */
    classify(&cfg, "00.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
             &qn);
    assert_int_equal(qn.kind, ZONE__K_FOREIGN);
}

static void test_service_ttl(void **state)
{
    struct zone_dns_config cfg;
    (void)state;

    dnsfx_config(&cfg);
    assert_int_equal(zone__dns_service_ttl(&cfg, "svc1"), 30);
    assert_int_equal(zone__dns_service_ttl(&cfg, "SVC1"), 30);
    assert_int_equal(zone__dns_service_ttl(&cfg, "svc10"), 20);
    assert_int_equal(zone__dns_service_ttl(&cfg, "svc1x"), 20);
    assert_int_equal(zone__dns_service_ttl(&cfg, "svc2"), 5);
    assert_int_equal(zone__dns_service_ttl(&cfg, ""), 5);

    static const struct zone_dns_ttl p[] = {
        {"web*", 10}, {"web-api*", 20}, {"web-api-v2", 30}, {"", 99}, {"db", 40}, {"w*", 50},
    };
    cfg.service_ttl = p;
    cfg.n_service_ttl = BASE_ARRAY_LEN(p);
    assert_int_equal(zone__dns_service_ttl(&cfg, "web-api-v2"), 30); /* exact beats prefixes */
    assert_int_equal(zone__dns_service_ttl(&cfg, "web-api-v3"), 20); /* longest prefix */
    assert_int_equal(zone__dns_service_ttl(&cfg, "web-ui"), 10);
    assert_int_equal(zone__dns_service_ttl(&cfg, "wx"), 50);
    assert_int_equal(zone__dns_service_ttl(&cfg, "db"), 40);
    assert_int_equal(zone__dns_service_ttl(&cfg, "dbx"), 0); /* nothing matches, no "*" */
    assert_int_equal(zone__dns_service_ttl(&cfg, "WEB-API-X"), 20);
    cfg.n_service_ttl = 0;
    assert_int_equal(zone__dns_service_ttl(&cfg, "web"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_zone),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_service_ttl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
