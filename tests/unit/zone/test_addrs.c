/* Tests zone/addrs.c through PTR answers: the index follows node and service addresses as they
 * are registered, changed, renamed and deregistered; hostnames have no rows; two owners of one
 * address both answer; snapshots carry it, a version 1 snapshot (no addrs) gets it rebuilt,
 * and so does a store whose catalog predates it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <lmdb.h>

#include "zone/dns_fixture.h"
#include "zone/fixture.h"
#include "zone/dns_test.h"

struct fx {
    struct dnsfx d; /* an empty store, same temp-dir handling */
    struct zone_dns_config cfg;
    struct base_arena ar;
    uint64_t idx;
    char got[1024];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    tmp_store_open(f->d.dir, "addrs", &f->d.s);
    dnsfx_config(&f->cfg);
    base_arena_init(&f->ar);
    f->idx = 1;
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

static void apply(struct fx *f, const struct zone_cmd *c)
{
    store_apply(f->d.s, f->idx++, c);
}

static void node(struct fx *f, const char *name, const char *addr)
{
    store_reg(f->d.s, f->idx++, name, addr, NULL, NULL);
}

static void service(struct fx *f, const char *nd, const char *id, const char *name,
                    const char *addr)
{
    struct zone_cmd c;
    struct zone_service s;
    memset(&c, 0, sizeof c);
    memset(&s, 0, sizeof s);
    c.type = ZONE_CMD_REGISTER;
    c.node.name = nd;
    c.node.address = "";
    c.skip_node_update = true;
    s.id = id;
    s.name = name;
    s.address = addr;
    s.port = 80;
    c.service = &s;
    apply(f, &c);
}

static void dereg(struct fx *f, const char *nd, const char *sid)
{
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_DEREGISTER;
    c.node.name = nd;
    c.service_id = sid ? sid : "";
    c.check_id = "";
    apply(f, &c);
}

/* The PTR targets for a reverse name, sorted and joined with spaces; "-" when the zone
 * declines the name. */
static const char *ptr(struct fx *f, struct zone_store *s, const char *rev)
{
    uint8_t q[512];
    struct dnst_q d;
    struct dnst_res *r = malloc(sizeof *r);
    struct zone_read *rd;
    ldns_pkt *p;

    dnst_q_init(&d, rev, 12);
    size_t n = dnst_build(&d, q, sizeof q);
    assert_int_equal(zone_read_begin(s, &rd), 0);
    dnst_run(rd, &f->cfg, q, n, false, 1, &f->ar, r);
    zone_read_end(rd);
    if (r->answer_rc == BASE_ENOTFOUND) {
        free(r);
        return "-";
    }
    assert_int_equal(r->answer_rc, 0);
    assert_int_equal(ldns_wire2pkt(&p, r->resp, r->len), LDNS_STATUS_OK);
    size_t cnt = ldns_pkt_ancount(p);
    char *v[16];
    assert_true(cnt > 0 && cnt <= 16);
    for (size_t i = 0; i < cnt; i++)
        v[i] = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), i), 0));
    qsort(v, cnt, sizeof v[0], dnst_cmp_str);
    f->got[0] = 0;
    for (size_t i = 0; i < cnt; i++) {
        if (i)
            strcat(f->got, " ");
        strcat(f->got, v[i]);
        free(v[i]);
    }
    ldns_pkt_free(p);
    free(r);
    return f->got;
}

#define PTR(f, rev) ptr(f, (f)->d.s, rev)

static void test_node_addresses(void **state)
{
    struct fx *f = *state;

    node(f, "Web1", "10.0.0.1");
    assert_string_equal(PTR(f, "1.0.0.10.in-addr.arpa"), "web1.node.dc1.consul.");
    node(f, "web1", "10.0.0.2"); /* moved (case of the name does not matter) */
    assert_string_equal(PTR(f, "1.0.0.10.in-addr.arpa"), "-");
    assert_string_equal(PTR(f, "2.0.0.10.in-addr.arpa"), "web1.node.dc1.consul.");
    node(f, "web1", "web1.example.com"); /* a hostname: no row */
    assert_string_equal(PTR(f, "2.0.0.10.in-addr.arpa"), "-");
    node(f, "web1", "2001:db8::1");
    assert_string_equal(
        PTR(f, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"),
        "web1.node.dc1.consul.");
    /* an IPv4 address whose bytes start an IPv6 one does not match it */
    node(f, "v4", "32.1.13.184");
    assert_string_equal(PTR(f, "184.13.1.32.in-addr.arpa"), "v4.node.dc1.consul.");
    dereg(f, "web1", NULL);
    assert_string_equal(
        PTR(f, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"), "-");
    assert_string_equal(PTR(f, "184.13.1.32.in-addr.arpa"), "v4.node.dc1.consul.");
}

static void test_service_addresses(void **state)
{
    struct fx *f = *state;

    node(f, "n1", "10.0.0.1");
    node(f, "n2", "10.0.0.2");
    service(f, "n1", "api-1", "api", ""); /* the node's address: no service row */
    service(f, "n1", "db-1", "db", "192.168.0.5");
    service(f, "n2", "db-2", "db", "192.168.0.5");  /* a second owner of the address */
    service(f, "n2", "cache", "cache", "10.0.0.1"); /* a service at another node's address */
    assert_string_equal(PTR(f, "1.0.0.10.in-addr.arpa"),
                        "cache.service.dc1.consul. n1.node.dc1.consul.");
    assert_string_equal(PTR(f, "5.0.168.192.in-addr.arpa"), "db.service.dc1.consul.");

    /* moved, renamed, removed */
    service(f, "n1", "db-1", "db", "192.168.0.6");
    assert_string_equal(PTR(f, "6.0.168.192.in-addr.arpa"), "db.service.dc1.consul.");
    assert_string_equal(PTR(f, "5.0.168.192.in-addr.arpa"), "db.service.dc1.consul.");
    service(f, "n2", "db-2", "database", "192.168.0.5");
    assert_string_equal(PTR(f, "5.0.168.192.in-addr.arpa"), "database.service.dc1.consul.");
    dereg(f, "n2", "db-2");
    assert_string_equal(PTR(f, "5.0.168.192.in-addr.arpa"), "-");
    service(f, "n1", "db-1", "db", "db.example.com");
    assert_string_equal(PTR(f, "6.0.168.192.in-addr.arpa"), "-");

    /* a node's deregistration takes its services' rows */
    dereg(f, "n2", NULL);
    assert_string_equal(PTR(f, "1.0.0.10.in-addr.arpa"), "n1.node.dc1.consul.");
    assert_string_equal(PTR(f, "2.0.0.10.in-addr.arpa"), "-");
}

static void test_long_names_skip_the_index(void **state)
{
    struct fx *f = *state;
    char nd[251], id[251];

    memset(nd, 'n', 250);
    nd[250] = 0;
    memset(id, 'i', 250);
    id[250] = 0;
    /* an IPv6 key would be 17 + 250 + 1 + 250 bytes, over LMDB's 511: the registration still
     * succeeds, without a PTR */
    node(f, nd, "10.9.9.9");
    service(f, nd, id, "s", "2001:db8::9");
    assert_string_equal(
        PTR(f, "9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"), "-");
    dereg(f, nd, id);
}

/* ---- snapshots and upgrades ------------------------------------------------------------ */
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* A version 4 snapshot made into version 1: the addrs, staging and sessions databases (the
 * last three) cut off. */
static void to_v1(struct base_buf *b)
{
    size_t at = 8 + 4 + 8 + 4;
    assert_int_equal(le32(b->data + 8), 4);
    assert_int_equal(le32(b->data + 20), 9);
    for (int d = 0; d < 6; d++) {
        at += 4 + le32(b->data + at); /* name */
        uint64_t count = le64(b->data + at);
        at += 8;
        for (uint64_t i = 0; i < 2 * count; i++)
            at += 4 + le32(b->data + at);
    }
    assert_int_equal(le32(b->data + at), 5); /* "addrs" */
    b->len = at;
    b->data[8] = 1;
    b->data[20] = 6;
    uint32_t crc = crc32c(b->data, b->len);
    base_buf_put_u32(b, crc);
}

static void test_snapshots(void **state)
{
    struct fx *f = *state;
    struct dnsfx other;
    struct base_buf b;
    bool skipped;

    node(f, "n1", "10.0.0.1");
    service(f, "n1", "db-1", "db", "192.168.0.5");
    base_buf_init(&b);
    assert_int_equal(zone_store_snapshot(f->d.s, &b), 0);

    for (int v = 2; v >= 1; v--) {
        tmp_store_open(other.dir, "addrs", &other.s);
        if (v == 1)
            to_v1(&b);
        assert_int_equal(zone_store_restore(other.s, b.data, b.len, &skipped), 0);
        assert_false(skipped);
        assert_string_equal(ptr(f, other.s, "1.0.0.10.in-addr.arpa"), "n1.node.dc1.consul.");
        assert_string_equal(ptr(f, other.s, "5.0.168.192.in-addr.arpa"), "db.service.dc1.consul.");
        dnsfx_close(&other);
    }
    base_buf_free(&b);
}

static void test_rebuilt_at_open(void **state)
{
    struct fx *f = *state;
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;

    node(f, "n1", "10.0.0.1");
    service(f, "n1", "db-1", "db", "192.168.0.5");
    zone_store_close(f->d.s);

    /* a catalog written before the index existed: its addrs database is empty */
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, f->d.dir, MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &t), 0);
    assert_int_equal(mdb_dbi_open(t, "addrs", 0, &dbi), 0);
    assert_int_equal(mdb_drop(t, dbi, 0), 0);
    assert_int_equal(mdb_txn_commit(t), 0);
    mdb_env_close(env);

    store_open_at(f->d.dir, &f->d.s);
    assert_string_equal(PTR(f, "1.0.0.10.in-addr.arpa"), "n1.node.dc1.consul.");
    assert_string_equal(PTR(f, "5.0.168.192.in-addr.arpa"), "db.service.dc1.consul.");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_node_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_names_skip_the_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuilt_at_open, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
