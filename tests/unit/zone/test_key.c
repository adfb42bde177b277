/* Tests the LMDB key layout (zone/key.c): the exact bytes of every key builder (stores on disk
 * depend on them), that a registration's rows are where the builders say, and the prefix scans
 * (zone__scan, zone__cursor_first/_next) including an empty and an over-long prefix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "fixture.h"
#include "zone/internal.h"

static void assert_key(const struct zone__key *k, const void *want, size_t n)
{
    assert_false(k->over);
    assert_int_equal(k->n, n);
    assert_memory_equal(k->b, want, n);
    assert_true(zone__key_eq(k, want, n));
}

static void test_layout_bytes(void **state)
{
    (void)state;
    struct zone__key k;

    zone__key_node(&k, "Node-A");
    assert_key(&k, "node-a", 6);
    zone__key_row(&k, "Node-A", "Web-1");
    assert_key(&k, "node-a\0Web-1", 12); /* ids keep their case */
    zone__key_row(&k, "Node-A", NULL);
    assert_key(&k, "node-a\0", 7);
    zone__key_svcidx(&k, "WEB", "Node-A", "Web-1");
    assert_key(&k, "web\0node-a\0Web-1", 16);
    MDB_val ix = zone__key_val(&k);
    zone__key_svcidx(&k, "WEB", NULL, NULL);
    assert_key(&k, "web\0", 4);
    MDB_val row = zone__svcidx_row(&k, &ix);
    assert_int_equal(row.mv_size, 12);
    assert_memory_equal(row.mv_data, "node-a\0Web-1", 12);
    zone__key_kv(&k, "Dir/Key");
    assert_key(&k, "Dir/Key", 7);
    zone__key_meta(&k, ZONE__META_APPLIED);
    assert_key(&k, "applied", 7);

    uint8_t ip[16] = {10, 0, 0, 1};
    zone__key_addr(&k, 4, ip, "N", NULL);
    assert_key(&k, "\x04\x0a\x00\x00\x01n\0", 7);
    zone__key_addr(&k, 4, ip, "N", "s1");
    assert_key(&k, "\x04\x0a\x00\x00\x01n\0s1", 9);
    zone__key_addr(&k, 4, ip, NULL, NULL);
    assert_key(&k, "\x04\x0a\x00\x00\x01", 5);
    uint8_t ip6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
    zone__key_addr(&k, 6, ip6, NULL, NULL);
    assert_int_equal(k.n, 17);

    uint64_t off = 0;
    zone__key_staging_header(&k);
    assert_key(&k, "h", 1);
    assert_int_equal(zone__staging_key(k.b, k.n, &off), ZONE__STAGING_HEADER);
    zone__key_staging_chunk(&k, 0x0102);
    assert_key(&k, "c\0\0\0\0\0\0\x01\x02", 9); /* big-endian: chunks sort by offset */
    assert_int_equal(zone__staging_key(k.b, k.n, &off), ZONE__STAGING_CHUNK);
    assert_int_equal(off, 0x0102);
    zone__key_staging_chunks(&k);
    assert_key(&k, "c", 1);
    assert_int_equal(zone__staging_key(k.b, k.n, NULL), 0);
    assert_int_equal(zone__staging_key((const uint8_t *)"x", 1, NULL), 0);
}

static void test_fits_and_over(void **state)
{
    (void)state;
    struct zone__key k;
    char big[ZONE__KEY_CAP + 10];

    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    zone__key_kv(&k, big);
    assert_true(k.over);
    assert_false(zone__key_fits(&k, 511));
    assert_false(zone__key_eq(&k, k.b, k.n));
    zone__key_kv(&k, "");
    assert_false(zone__key_fits(&k, 511)); /* no row has an empty key */
    zone__key_kv(&k, "x");
    assert_true(zone__key_fits(&k, 511));
    assert_false(zone__key_fits(&k, 0));

    MDB_val v = {.mv_size = 3, .mv_data = "a\0b"};
    zone__key_copy(&k, &v);
    assert_key(&k, "a\0b", 3);
}

static int count_row(void *ctx, const MDB_val *k, const MDB_val *v)
{
    (void)k;
    (void)v;
    (*(int *)ctx)++;
    return 0;
}

static int scan_count(struct zone_store *s, MDB_txn *t, enum zone__db d,
                      const struct zone__key *prefix)
{
    int n = 0;
    assert_int_equal(zone__scan(t, s->dbi[d], prefix, count_row, &n), 0);
    return n;
}

static void assert_row(struct zone_store *s, MDB_txn *t, enum zone__db d, const struct zone__key *k)
{
    MDB_val key = zone__key_val(k), v;
    assert_int_equal(mdb_get(t, s->dbi[d], &key, &v), 0);
}

/* The rows a registration writes are where the builders say, and the prefixes select them. */
static void test_rows_and_scans(void **state)
{
    (void)state;
    char dir[64];
    struct zone_store *s;
    struct zone_service web = {.id = "Web-1", .name = "Web", .port = 80};
    struct zone_service db = {.id = "db1", .name = "db", .port = 5432, .address = "10.0.0.9"};
    struct zone__key k;
    MDB_txn *t;

    tmp_store_open(dir, "key", &s);
    store_reg(s, 1, "Node-A", "10.0.0.1", NULL, &web);
    store_reg(s, 2, "Node-A", "10.0.0.1", NULL, &db);
    store_reg(s, 3, "node-ab", "10.0.0.2", NULL, &web);
    store_check(s, 4, "Node-A", "chk", "Web-1", ZONE_HEALTH_PASSING);
    store_kv_set(s, 5, "k/1", "a", 1);
    store_kv_set(s, 6, "k/2", "b", 1);
    store_kv_set(s, 7, "kz", "c", 1);

    assert_int_equal(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t), 0);
    zone__key_node(&k, "node-a");
    assert_row(s, t, ZONE__DB_NODES, &k);
    zone__key_row(&k, "NODE-A", "Web-1");
    assert_row(s, t, ZONE__DB_SERVICES, &k);
    zone__key_row(&k, "node-a", "chk");
    assert_row(s, t, ZONE__DB_CHECKS, &k);
    zone__key_svcidx(&k, "web", "node-a", "Web-1");
    assert_row(s, t, ZONE__DB_SVCIDX, &k);
    zone__key_kv(&k, "k/2");
    assert_row(s, t, ZONE__DB_KV, &k);
    uint8_t ip[16];
    assert_int_equal(zone__addr_parse("10.0.0.9", ip), 4);
    zone__key_addr(&k, 4, ip, "node-a", "db1");
    assert_row(s, t, ZONE__DB_ADDRS, &k);
    zone__key_meta(&k, ZONE__META_INDEX);
    assert_row(s, t, ZONE__DB_META, &k);

    /* one node's rows, not those of a node whose name it begins */
    zone__key_row(&k, "node-a", NULL);
    assert_int_equal(scan_count(s, t, ZONE__DB_SERVICES, &k), 2);
    zone__key_row(&k, "node-ab", NULL);
    assert_int_equal(scan_count(s, t, ZONE__DB_SERVICES, &k), 1);
    assert_int_equal(scan_count(s, t, ZONE__DB_SERVICES, NULL), 3);
    zone__key_svcidx(&k, "web", NULL, NULL);
    assert_int_equal(scan_count(s, t, ZONE__DB_SVCIDX, &k), 2);
    zone__key_kv(&k, "k/");
    assert_int_equal(scan_count(s, t, ZONE__DB_KV, &k), 2);
    zone__key_kv(&k, "");
    assert_int_equal(scan_count(s, t, ZONE__DB_KV, &k), 3); /* empty prefix: every row */
    char big[600];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = 0;
    zone__key_kv(&k, big); /* longer than any key: selects nothing */
    assert_int_equal(scan_count(s, t, ZONE__DB_KV, &k), 0);

    /* the same scan on a cursor: the svcidx rows lead to the services rows */
    MDB_cursor *c;
    MDB_val key, val, sv;
    int n = 0, rc;
    assert_int_equal(mdb_cursor_open(t, s->dbi[ZONE__DB_SVCIDX], &c), 0);
    zone__key_svcidx(&k, "WEB", NULL, NULL);
    for (rc = zone__cursor_first(c, &k, &key, &val); rc == 0;
         rc = zone__cursor_next(c, &k, &key, &val)) {
        MDB_val row = zone__svcidx_row(&k, &key);
        assert_int_equal(mdb_get(t, s->dbi[ZONE__DB_SERVICES], &row, &sv), 0);
        n++;
    }
    assert_int_equal(rc, MDB_NOTFOUND);
    assert_int_equal(n, 2);
    zone__key_svcidx(&k, "nope", NULL, NULL);
    assert_int_equal(zone__cursor_first(c, &k, &key, &val), MDB_NOTFOUND);
    mdb_cursor_close(c);
    mdb_txn_abort(t);
    tmp_store_close(dir, s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_bytes),
        cmocka_unit_test(test_fits_and_over),
        cmocka_unit_test(test_rows_and_scans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
