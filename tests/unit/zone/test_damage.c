/* Tests record checksums (zone/record.c, verify.c): every flipped bit of a record is refused by
 * its decoder; a version 1 record upgrades; a store written with version 1 records (format 1)
 * is migrated at open; a record damaged under a running store is refused on every read path,
 * named, counted; a store with a damaged record, or a data file cut short, does not open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "zone/internal.h"

static int decode_any(int i, const uint8_t *p, size_t n, struct base_arena *a)
{
    union {
        struct zone_node n;
        struct zone_service s;
        struct zone_check c;
        struct zone_kv kv;
    } u;
    switch (i) {
    case 0:
        return zone__node_decode(p, n, false, a, &u.n);
    case 1:
        return zone__service_decode(p, n, false, a, &u.s);
    case 2:
        return zone__check_decode(p, n, false, a, &u.c);
    default:
        return zone__kv_decode(p, n, false, a, &u.kv);
    }
}

static void encode_all(struct base_buf b[4])
{
    static const char *tags[] = {"t"};
    struct zone_node n = {.name = "n", .address = "10.0.0.1", .modify_index = 3};
    struct zone_service s = {.node = "n", .id = "i", .name = "s", .tags = tags, .n_tags = 1};
    struct zone_check c = {.node = "n", .check_id = "c", .service_id = "i"};
    struct zone_kv kv = {.key = "k", .value = (const uint8_t *)"value", .value_len = 5};

    for (int i = 0; i < 4; i++)
        base_buf_init(&b[i]);
    zone__node_encode(&n, &b[0]);
    zone__service_encode(&s, &b[1]);
    zone__check_encode(&c, &b[2]);
    zone__kv_encode(&kv, &b[3]);
}

/* Any single flipped bit, anywhere in any record, is refused (decoders and peeks). */
static void test_every_bit_flip_refused(void **state)
{
    (void)state;
    struct base_buf b[4];
    struct base_arena a;

    base_arena_init(&a);
    encode_all(b);
    for (int i = 0; i < 4; i++) {
        assert_true(zone__rec_ok(b[i].data, b[i].len));
        assert_int_equal(decode_any(i, b[i].data, b[i].len, &a), 0);
        for (size_t at = 0; at < b[i].len; at++)
            for (int bit = 0; bit < 8; bit++) {
                b[i].data[at] ^= (uint8_t)(1u << bit);
                assert_false(zone__rec_ok(b[i].data, b[i].len));
                assert_int_equal(decode_any(i, b[i].data, b[i].len, &a), BASE_EPARSE);
                if (i == 0) {
                    const char *addr;
                    assert_int_equal(zone__node_peek_address(b[i].data, b[i].len, &addr),
                                     BASE_EPARSE);
                }
                if (i == 2) {
                    enum zone_health st;
                    const char *sid;
                    assert_int_equal(zone__check_peek(b[i].data, b[i].len, &st, &sid), BASE_EPARSE);
                }
                b[i].data[at] ^= (uint8_t)(1u << bit);
                base_arena_reset(&a);
            }
        /* the trailer is the CRC-32C of the bytes before it, little-endian */
        assert_int_equal(crc32c(b[i].data, b[i].len - 4), base_le32(b[i].data + b[i].len - 4));
        base_buf_free(&b[i]);
    }
    base_arena_close(&a);
}

/* A version 1 record (no trailer) upgrades to the same bytes with version 2 and a checksum; a
 * version 2 one is copied when it checks out; anything else is refused. */
static void test_upgrade(void **state)
{
    (void)state;
    struct base_buf b[4], out;
    struct base_arena a;

    base_arena_init(&a);
    base_buf_init(&out);
    encode_all(b);
    for (int i = 0; i < 4; i++) {
        size_t v1n = b[i].len - 4;
        uint8_t *v1 = malloc(v1n);
        memcpy(v1, b[i].data, v1n);
        v1[0] = ZONE__RECORD_V1;
        assert_int_equal(decode_any(i, v1, v1n, &a), BASE_EPARSE); /* not served as is */
        assert_int_equal(zone__rec_upgrade(v1, v1n, &out), 1);
        assert_int_equal(out.len, b[i].len);
        assert_memory_equal(out.data, b[i].data, b[i].len);
        assert_int_equal(zone__rec_upgrade(b[i].data, b[i].len, &out), 0);
        assert_memory_equal(out.data, b[i].data, b[i].len);
        b[i].data[1] ^= 1;
        assert_int_equal(zone__rec_upgrade(b[i].data, b[i].len, &out), BASE_EPARSE);
        v1[0] = 7;
        assert_int_equal(zone__rec_upgrade(v1, v1n, &out), BASE_EPARSE);
        free(v1);
        base_buf_free(&b[i]);
    }
    base_buf_free(&out);
    base_arena_close(&a);
}

/* Rewrites the value of key in database d through LMDB, under the store's back. */
static void poke(struct zone_store *s, enum zone__db d, const void *key, size_t kn,
                 void (*change)(struct base_buf *v))
{
    MDB_txn *t;
    MDB_val k = {.mv_size = kn, .mv_data = (void *)key}, v;
    struct base_buf b;

    base_buf_init(&b);
    assert_int_equal(mdb_txn_begin(s->env, NULL, 0, &t), 0);
    assert_int_equal(mdb_get(t, s->dbi[d], &k, &v), 0);
    base_buf_append(&b, v.mv_data, v.mv_size);
    change(&b);
    v.mv_data = b.data;
    v.mv_size = b.len;
    assert_int_equal(mdb_put(t, s->dbi[d], &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(t), 0);
    base_buf_free(&b);
}

static void flip_last_value_byte(struct base_buf *v)
{
    v->data[v->len / 2] ^= 0x20;
}

static void drop_format(struct zone_store *s)
{
    MDB_txn *t;
    MDB_val k = {.mv_size = strlen(ZONE__META_FORMAT), .mv_data = ZONE__META_FORMAT};
    assert_int_equal(mdb_txn_begin(s->env, NULL, 0, &t), 0);
    assert_int_equal(mdb_del(t, s->dbi[ZONE__DB_META], &k, NULL), 0);
    assert_int_equal(mdb_txn_commit(t), 0);
}

static const struct zone_service web = {.id = "web1", .name = "web", .port = 80};

/* Every record of the store back to version 1, as the previous format wrote them. */
static void all_to_v1(struct zone_store *s)
{
    static const enum zone__db dbs[] = {ZONE__DB_NODES, ZONE__DB_SERVICES, ZONE__DB_CHECKS,
                                        ZONE__DB_KV};
    MDB_txn *t;

    assert_int_equal(mdb_txn_begin(s->env, NULL, 0, &t), 0);
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        MDB_cursor *c;
        MDB_val k, v;
        struct base_buf keys, vals;
        size_t n = 0;
        base_buf_init(&keys);
        base_buf_init(&vals);
        assert_int_equal(mdb_cursor_open(t, s->dbi[dbs[i]], &c), 0);
        for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), n++) {
            base_buf_put_bytes(&keys, k.mv_data, k.mv_size);
            base_buf_put_bytes(&vals, v.mv_data, v.mv_size - 4);
        }
        mdb_cursor_close(c);
        struct base_rd kr, vr;
        base_rd_init(&kr, keys.data, keys.len);
        base_rd_init(&vr, vals.data, vals.len);
        for (size_t j = 0; j < n; j++) {
            MDB_val nk, nv;
            nk.mv_data = (void *)base_rd_bytes(&kr, &nk.mv_size);
            nv.mv_data = (void *)base_rd_bytes(&vr, &nv.mv_size);
            ((uint8_t *)nv.mv_data)[0] = ZONE__RECORD_V1;
            assert_int_equal(mdb_put(t, s->dbi[dbs[i]], &nk, &nv, 0), 0);
        }
        base_buf_free(&keys);
        base_buf_free(&vals);
    }
    assert_int_equal(mdb_txn_commit(t), 0);
}

/* A store as the previous format wrote it (version 1 records, no meta "format") opens, its
 * records upgraded once; the data reads back the same. */
static void test_migration(void **state)
{
    (void)state;
    char dir[64];
    struct zone_store *s;
    struct zone_read *r;
    struct base_arena a;
    struct zone_kv kv;
    struct zone_service sv;
    uint64_t format;
    MDB_txn *t;

    tmp_store_open(dir, "damage", &s);
    store_reg(s, 1, "n1", "10.0.0.1", "dc1", &web);
    store_kv_set(s, 2, "foo", "bar", 3);
    /* more rows, so that pages hold several records whose keys move when one grows */
    for (int i = 0; i < 60; i++) {
        char node[16], key[16];
        struct zone_service more = {.id = "s", .name = "svc", .address = "10.0.1.1", .port = 1};
        snprintf(node, sizeof node, "node%02d", i);
        snprintf(key, sizeof key, "key%02d", i);
        store_reg(s, 3 + 2 * (uint64_t)i, node, "10.0.0.2", "dc1", &more);
        store_kv_set(s, 4 + 2 * (uint64_t)i, key, "value", 5);
    }
    all_to_v1(s);
    drop_format(s);
    zone_store_close(s);

    store_open_at(dir, &s);
    base_arena_init(&a);
    assert_int_equal(zone_read_begin(s, &r), 0);
    assert_int_equal(zone_kv_get(r, "foo", &a, &kv), 0);
    assert_int_equal(kv.value_len, 3);
    assert_memory_equal(kv.value, "bar", 3);
    assert_int_equal(zone_service_get(r, "n1", "web1", &a, &sv), 0);
    assert_int_equal(sv.port, 80);
    assert_null(zone_read_damaged(r));
    zone_read_end(r);
    assert_int_equal(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t), 0);
    assert_int_equal(zone__meta_read(t, s->dbi[ZONE__DB_META], ZONE__META_FORMAT, &format), 0);
    mdb_txn_abort(t);
    assert_int_equal(format, ZONE__FORMAT);
    assert_int_equal(zone_store_damaged_count(s), 0);
    base_arena_close(&a);
    tmp_store_close(dir, s);
}

static int count_kv(void *data, const struct zone_kv *kv)
{
    (void)kv;
    (*(int *)data)++;
    return 0;
}

static int count_svc(void *data, const struct zone_service *sv)
{
    (void)sv;
    (*(int *)data)++;
    return 0;
}

/* A record damaged under an open store: every read of it fails naming it, is counted; other
 * records still read; a reopen refuses the store naming the file and the record. */
static void test_damaged_reads_and_reopen(void **state)
{
    (void)state;
    char dir[64], errmsg[BASE_ERRMSG_LEN];
    struct zone_store *s;
    struct zone_read *r;
    struct base_arena a;
    struct zone_kv kv;
    struct zone_service sv;
    int n = 0;

    tmp_store_open(dir, "damage", &s);
    store_reg(s, 1, "n1", "10.0.0.1", "dc1", &web);
    store_kv_set(s, 2, "foo", "bar", 3);
    store_kv_set(s, 3, "fop", "baz", 3);
    poke(s, ZONE__DB_KV, "foo", 3, flip_last_value_byte);
    poke(s, ZONE__DB_SERVICES, "n1\0web1", 7, flip_last_value_byte);

    base_arena_init(&a);
    assert_int_equal(zone_read_begin(s, &r), 0);
    assert_int_equal(zone_kv_get(r, "fop", &a, &kv), 0);
    assert_null(zone_read_damaged(r));
    assert_int_equal(zone_kv_get(r, "foo", &a, &kv), BASE_EDAMAGED);
    assert_string_equal(zone_read_damaged(r), "kv/foo");
    zone_read_end(r);

    assert_int_equal(zone_read_begin(s, &r), 0); /* a pooled read starts clean */
    assert_null(zone_read_damaged(r));
    assert_int_equal(zone_kv_each(r, "f", &a, count_kv, &n), BASE_EDAMAGED);
    assert_string_equal(zone_read_damaged(r), "kv/foo");
    zone_read_end(r);

    assert_int_equal(zone_read_begin(s, &r), 0);
    assert_int_equal(zone_service_get(r, "n1", "web1", &a, &sv), BASE_EDAMAGED);
    assert_string_equal(zone_read_damaged(r), "services/n1/web1");
    zone_read_end(r);
    assert_int_equal(zone_read_begin(s, &r), 0);
    assert_int_equal(zone_service_instances_each(r, "web", &a, count_svc, &n), BASE_EDAMAGED);
    assert_string_equal(zone_read_damaged(r), "services/n1/web1");
    zone_read_end(r);
    assert_int_equal(zone_store_damaged_count(s), 4);

    /* an entry that would read it fails whole, as damage (the server stops: fsm.c) */
    {
        struct zone_cmd c;
        struct base_buf cb;
        struct base_slice sl;
        int res;
        uint32_t touched;
        memset(&c, 0, sizeof c);
        c.type = ZONE_CMD_KV_SET;
        c.kv.key = "foo";
        c.kv.value = (const uint8_t *)"new";
        c.kv.value_len = 3;
        base_buf_init(&cb);
        zone_cmd_encode(&c, &cb);
        sl.p = cb.data;
        sl.n = cb.len;
        assert_int_equal(zone_store_apply(s, 4, &sl, 1, &res, &touched), BASE_EDAMAGED);
        base_buf_free(&cb);
    }
    assert_int_equal(zone_store_damaged_count(s), 5);

    /* a snapshot (Raft's, a backup) does not carry it */
    struct base_buf snap;
    base_buf_init(&snap);
    assert_int_equal(zone_store_snapshot(s, &snap), BASE_EDAMAGED);
    base_buf_free(&snap);
    base_arena_close(&a);
    zone_store_close(s);

    errmsg[0] = 0;
    assert_int_equal(zone_store_open(dir, 0, &s, errmsg), BASE_EDAMAGED);
    assert_non_null(strstr(errmsg, "data.mdb"));
    assert_non_null(strstr(errmsg, dir));
    assert_non_null(strstr(errmsg, "failed its checksum"));
    assert_int_equal(rm_tree(dir), 0);
}

static void del_row(struct zone_store *s, enum zone__db d, const void *key, size_t kn)
{
    MDB_txn *t;
    MDB_val k = {.mv_size = kn, .mv_data = (void *)key};
    assert_int_equal(mdb_txn_begin(s->env, NULL, 0, &t), 0);
    assert_int_equal(mdb_del(t, s->dbi[d], &k, NULL), 0);
    assert_int_equal(mdb_txn_commit(t), 0);
}

static void put_row(struct zone_store *s, enum zone__db d, const void *key, size_t kn,
                    const void *val, size_t vn)
{
    MDB_txn *t;
    MDB_val k = {.mv_size = kn, .mv_data = (void *)key},
            v = {.mv_size = vn, .mv_data = (void *)val};
    assert_int_equal(mdb_txn_begin(s->env, NULL, 0, &t), 0);
    assert_int_equal(mdb_put(t, s->dbi[d], &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(t), 0);
}

/* The indexes are checked against the records at open: a missing service index row, an
 * address index row changed, or one too many, each refuse the store naming what is wrong. */
static void test_index_damage(void **state)
{
    (void)state;
    static const struct zone_service websvc = {
        .id = "web1", .name = "web", .address = "10.0.0.9", .port = 80};
    static const uint8_t addr_svc[] = {4, 10, 0, 0, 9, 'n', '1', 0, 'w', 'e', 'b', '1'};
    static const uint8_t addr_bogus[] = {4, 10, 0, 0, 7, 'n', '1', 0};
    char dir[64], errmsg[BASE_ERRMSG_LEN];
    struct zone_store *s;

    for (int variant = 0; variant < 3; variant++) {
        tmp_store_open(dir, "damage", &s);
        store_reg(s, 1, "n1", "10.0.0.1", "dc1", &websvc);
        zone_store_close(s);
        store_open_at(dir, &s); /* consistent: opens */
        if (variant == 0)
            del_row(s, ZONE__DB_SVCIDX, "web\0n1\0web1", 11);
        else if (variant == 1)
            put_row(s, ZONE__DB_ADDRS, addr_svc, sizeof addr_svc, "wex", 4);
        else
            put_row(s, ZONE__DB_ADDRS, addr_bogus, sizeof addr_bogus, "", 0);
        zone_store_close(s);
        assert_int_equal(zone_store_open(dir, 0, &s, errmsg), BASE_EDAMAGED);
        assert_non_null(strstr(errmsg, variant == 0 ? "service index" : "address index"));
        assert_int_equal(rm_tree(dir), 0);
    }
}

static void bump_applied(struct base_buf *v)
{
    v->data[7] ^= 0x40; /* the high byte of a little-endian u64 */
}

/* The meta rows (applied and table indexes) carry a checksum: a changed applied index is never
 * used, by a read (named), by apply (which would skip entries as replays) or at open. */
static void test_meta_damage(void **state)
{
    (void)state;
    char dir[64], errmsg[BASE_ERRMSG_LEN];
    struct zone_store *s;
    struct zone_read *r;
    struct zone_meta m;

    tmp_store_open(dir, "damage", &s);
    store_kv_set(s, 1, "foo", "bar", 3);
    assert_int_equal(zone_store_meta(s, &m), 0);
    assert_int_equal(m.applied, 1);
    poke(s, ZONE__DB_META, ZONE__META_APPLIED, strlen(ZONE__META_APPLIED), bump_applied);
    assert_int_equal(zone_read_begin(s, &r), 0);
    assert_int_equal(zone_meta_get(r, &m), BASE_EDAMAGED);
    assert_string_equal(zone_read_damaged(r), "meta/crc");
    zone_read_end(r);
    {
        struct zone_cmd c;
        struct base_buf cb;
        struct base_slice sl;
        int res;
        uint32_t touched;
        memset(&c, 0, sizeof c);
        c.type = ZONE_CMD_KV_SET;
        c.kv.key = "k2";
        c.kv.value = (const uint8_t *)"v";
        c.kv.value_len = 1;
        base_buf_init(&cb);
        zone_cmd_encode(&c, &cb);
        sl.p = cb.data;
        sl.n = cb.len;
        assert_int_equal(zone_store_apply(s, 2, &sl, 1, &res, &touched), BASE_EDAMAGED);
        base_buf_free(&cb);
    }
    zone_store_close(s);
    assert_int_equal(zone_store_open(dir, 0, &s, errmsg), BASE_EDAMAGED);
    assert_non_null(strstr(errmsg, "meta"));
    assert_int_equal(rm_tree(dir), 0);
}

/* A data file cut short does not open (and does not crash); discard sets it aside. */
static void test_truncated_file(void **state)
{
    (void)state;
    char dir[64], path[128], errmsg[BASE_ERRMSG_LEN];
    struct zone_store *s;
    struct stat st;

    tmp_store_open(dir, "damage", &s);
    for (int i = 0; i < 200; i++) {
        char key[32], val[600];
        snprintf(key, sizeof key, "k%03d", i);
        memset(val, 'a' + i % 26, sizeof val);
        store_kv_set(s, (uint64_t)i + 1, key, val, sizeof val);
    }
    zone_store_close(s);
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    assert_int_equal(zone_store_open(dir, 0, &s, errmsg), BASE_EDAMAGED);
    assert_non_null(strstr(errmsg, "truncated"));
    assert_non_null(strstr(errmsg, path));

    assert_int_equal(zone_store_discard(dir, errmsg), 0);
    store_open_at(dir, &s); /* empty */
    snprintf(path, sizeof path, "%s/data.mdb.damaged", dir);
    assert_int_equal(stat(path, &st), 0);
    tmp_store_close(dir, s);
}

/* LMDB's page structure is checked before LMDB reads it: a changed byte in any page header or
 * node header of the file never crashes the open (nor a scan after it): the store is refused
 * as damaged, or opens and reads whole. */
static int count_all(void *data, const struct zone_kv *kv)
{
    (void)kv;
    (*(int *)data)++;
    return 0;
}

static void test_page_structure_damage(void **state)
{
    (void)state;
    static const unsigned offs[] = {0, 8, 10, 11, 12, 13, 14, 15, 16, 17, 3, 4094, 4090, 4088};
    char dir[64], path[128], errmsg[BASE_ERRMSG_LEN];
    struct zone_store *s;
    struct stat st;
    int refused = 0, opened = 0;

    tmp_store_open(dir, "damage", &s);
    for (int i = 0; i < 150; i++) {
        char key[32], val[3000];
        size_t vn = i % 3 == 0 ? sizeof val : 40; /* some values on overflow pages */
        snprintf(key, sizeof key, "k%03d", i);
        memset(val, 'a' + i % 26, vn);
        store_kv_set(s, (uint64_t)i + 1, key, val, vn);
    }
    zone_store_close(s);
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    assert_int_equal(stat(path, &st), 0);
    FILE *f = fopen(path, "rb");
    uint8_t *orig = malloc((size_t)st.st_size);
    assert_int_equal(fread(orig, 1, (size_t)st.st_size, f), (size_t)st.st_size);
    fclose(f);
    for (long pg = 2; pg < st.st_size / 4096; pg++)
        for (size_t o = 0; o < sizeof offs / sizeof offs[0]; o++) {
            for (uint8_t bit = 1; bit; bit = (uint8_t)(bit << 3)) {
                long at = pg * 4096 + offs[o];
                f = fopen(path, "r+b");
                fseek(f, at, SEEK_SET);
                fputc(orig[at] ^ bit, f);
                fclose(f);
                int rc = zone_store_open(dir, 0, &s, errmsg);
                if (rc == 0) {
                    struct zone_read *r;
                    struct base_arena a;
                    int n = 0;
                    base_arena_init(&a);
                    assert_int_equal(zone_read_begin(s, &r), 0);
                    rc = zone_kv_each(r, "", &a, count_all, &n);
                    assert_true(rc == 0 || rc == BASE_EDAMAGED);
                    zone_read_end(r);
                    base_arena_close(&a);
                    zone_store_close(s);
                    opened++;
                } else {
                    assert_int_equal(rc, BASE_EDAMAGED);
                    refused++;
                }
                f = fopen(path, "r+b");
                fseek(f, at, SEEK_SET);
                fputc(orig[at], f);
                fclose(f);
            }
        }
    free(orig);
    assert_true(refused > 0 && opened > 0);
    assert_int_equal(rm_tree(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_bit_flip_refused),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_migration),
        cmocka_unit_test(test_damaged_reads_and_reopen),
        cmocka_unit_test(test_index_damage),
        cmocka_unit_test(test_meta_damage),
        cmocka_unit_test(test_truncated_file),
        cmocka_unit_test(test_page_structure_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
