/* Tests zone/snapshot.c: a snapshot restored into a fresh store gives the same catalog; an
 * older snapshot is skipped; a damaged one (truncated, flipped, or well-checksummed but
 * malformed) is refused and leaves the store as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zone/fixture.h"
#include "zone/internal.h"

/* ---- fixture: two stores --------------------------------------------------------------- */
struct fx {
    char dir[2][64];
    struct zone_store *s[2];
    struct base_arena a;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    for (int i = 0; i < 2; i++)
        tmp_store_open(f->dir[i], "zone", &f->s[i]);
    base_arena_init(&f->a);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 2; i++)
        tmp_store_close(f->dir[i], f->s[i]);
    base_arena_close(&f->a);
    free(f);
    return 0;
}

/* A catalog with every table, deletes included, ending at index base + 9. */
static void populate(struct zone_store *s, uint64_t base, const char *tag)
{
    const char *tags[] = {"primary", tag};
    struct zone_pair meta[] = {{"rack", tag}};
    struct zone_service svc;
    struct zone_check checks[2];
    struct zone_cmd c;
    const uint8_t bin[] = {0, 0xff, 0, 7};

    for (int i = 0; i < 3; i++) {
        char node[32], id[32];
        snprintf(node, sizeof node, "node-%d", i);
        snprintf(id, sizeof id, "web-%d", i);
        memset(&c, 0, sizeof c);
        memset(&svc, 0, sizeof svc);
        memset(checks, 0, sizeof checks);
        c.type = ZONE_CMD_REGISTER;
        c.node.name = node;
        c.node.address = "10.0.0.1";
        c.node.meta = meta;
        c.node.n_meta = 1;
        svc.id = id;
        svc.name = "web";
        svc.tags = tags;
        svc.n_tags = 2;
        svc.port = 80 + (uint32_t)i;
        c.service = &svc;
        checks[0].check_id = "serf";
        checks[0].status = ZONE_HEALTH_PASSING;
        checks[1].check_id = "http";
        checks[1].service_id = id;
        checks[1].status = ZONE_HEALTH_WARNING;
        checks[1].http = "http://x/health";
        c.checks = checks;
        c.n_checks = 2;
        store_apply(s, base + (uint64_t)i, &c);
    }
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_DEREGISTER;
    c.node.name = "node-1";
    store_apply(s, base + 3, &c);
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_KV_SET;
    c.kv.key = "cfg/bin";
    c.kv.value = bin;
    c.kv.value_len = sizeof bin;
    c.kv.flags = 5;
    store_apply(s, base + 4, &c);
    c.kv.key = tag;
    store_apply(s, base + 5, &c);
    c.kv.key = "cfg/gone";
    store_apply(s, base + 6, &c);
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_KV_DELETE;
    c.kv.key = "cfg/gone";
    store_apply(s, base + 7, &c);
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_CHECK_UPDATE;
    c.node.name = "node-2";
    c.check_id = "serf";
    c.status = ZONE_HEALTH_CRITICAL;
    c.output = "dead";
    store_apply(s, base + 8, &c);
    memset(&c, 0, sizeof c); /* a command that changes nothing: applied moves alone */
    c.type = ZONE_CMD_KV_DELETE;
    c.kv.key = "nothing";
    store_apply(s, base + 9, &c);
}

static void snap(struct zone_store *s, struct base_buf *b)
{
    base_buf_init(b);
    assert_int_equal(zone_store_snapshot(s, b), 0);
}

static void assert_same_snapshot(struct zone_store *s, const struct base_buf *want)
{
    struct base_buf b;
    snap(s, &b);
    assert_int_equal(b.len, want->len);
    assert_memory_equal(b.data, want->data, b.len);
    base_buf_free(&b);
}

/* ---- tests ----------------------------------------------------------------------------- */
static void test_restore_into_fresh_store(void **state)
{
    struct fx *f = *state;
    struct base_buf b;
    struct zone_meta m0, m1;
    struct zone_read *r;
    struct zone_kv kv;
    struct zone_check ck;
    bool skipped = true;

    populate(f->s[0], 10, "a");
    snap(f->s[0], &b);
    assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), 0);
    assert_false(skipped);
    /* every row of every database, and the meta, are the same */
    assert_same_snapshot(f->s[1], &b);
    assert_int_equal(zone_store_meta(f->s[0], &m0), 0);
    assert_int_equal(zone_store_meta(f->s[1], &m1), 0);
    assert_memory_equal(&m0, &m1, sizeof m0);
    assert_true(m1.applied == 19 && m1.index == 18);

    assert_int_equal(zone_read_begin(f->s[1], &r), 0);
    assert_int_equal(zone_kv_get(r, "cfg/bin", &f->a, &kv), 0);
    assert_int_equal(kv.value_len, 4);
    assert_int_equal(kv.value[1], 0xff);
    assert_true(kv.flags == 5 && kv.create_index == 14);
    assert_int_equal(zone_check_get(r, "node-2", "serf", &f->a, &ck), 0);
    assert_int_equal(ck.status, ZONE_HEALTH_CRITICAL);
    assert_string_equal(ck.output, "dead");
    assert_int_equal(zone_kv_get(r, "cfg/gone", &f->a, &kv), BASE_ENOTFOUND);
    zone_read_end(r);
    base_buf_free(&b);

    /* the restored store goes on applying after the snapshot's index only */
    struct zone_cmd c;
    uint32_t touched;
    int res;
    struct base_buf cb;
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_KV_DELETE;
    c.kv.key = "";
    c.recurse = true;
    base_buf_init(&cb);
    zone_cmd_encode(&c, &cb);
    struct base_slice sl = {cb.data, cb.len};
    assert_int_equal(zone_store_apply(f->s[1], 19, &sl, 1, &res, &touched), 0);
    assert_int_equal(touched, 0);
    assert_int_equal(zone_store_apply(f->s[1], 20, &sl, 1, &res, &touched), 0);
    assert_int_equal(touched, ZONE_TABLE_BIT(ZONE_TABLE_KV));
    base_buf_free(&cb);
}

static void test_restore_replaces_everything(void **state)
{
    struct fx *f = *state;
    struct base_buf b;
    bool skipped = true;

    populate(f->s[0], 100, "new");
    populate(f->s[1], 10, "old"); /* rows the snapshot does not have */
    snap(f->s[0], &b);
    assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), 0);
    assert_false(skipped);
    assert_same_snapshot(f->s[1], &b);
    base_buf_free(&b);
}

static void test_older_snapshot_skipped(void **state)
{
    struct fx *f = *state;
    struct base_buf older, mine;
    bool skipped = false;

    populate(f->s[0], 10, "a");
    populate(f->s[1], 10, "b"); /* same applied index */
    snap(f->s[0], &older);
    snap(f->s[1], &mine);
    assert_int_equal(zone_store_restore(f->s[1], older.data, older.len, &skipped), 0);
    assert_true(skipped);
    assert_same_snapshot(f->s[1], &mine);
    base_buf_free(&mine);

    populate(f->s[1], 50, "c");
    snap(f->s[1], &mine);
    skipped = false;
    assert_int_equal(zone_store_restore(f->s[1], older.data, older.len, &skipped), 0);
    assert_true(skipped);
    assert_same_snapshot(f->s[1], &mine);
    base_buf_free(&mine);
    base_buf_free(&older);

    /* an empty store's snapshot (applied 0) into an empty store */
    skipped = false;
    struct base_buf empty;
    char dir[64];
    struct zone_store *e;
    tmp_store_open(dir, "zone", &e);
    snap(e, &empty);
    assert_int_equal(zone_store_restore(e, empty.data, empty.len, &skipped), 0);
    assert_true(skipped);
    tmp_store_close(dir, e);
    base_buf_free(&empty);
}

static void test_damaged_snapshot_refused(void **state)
{
    struct fx *f = *state;
    struct base_buf b, before;
    bool skipped;

    populate(f->s[0], 100, "new");
    populate(f->s[1], 10, "old");
    snap(f->s[0], &b);
    snap(f->s[1], &before);
    /* every truncation, each in its own allocation so ASan sees over-reads */
    for (size_t len = 0; len < b.len; len++) {
        uint8_t *p = malloc(len ? len : 1);
        memcpy(p, b.data, len);
        skipped = true;
        assert_int_equal(zone_store_restore(f->s[1], p, len, &skipped), BASE_EPARSE);
        assert_false(skipped);
        free(p);
    }
    /* a flipped bit anywhere */
    for (size_t i = 0; i < b.len; i++) {
        uint8_t bit = (uint8_t)(1u << (i % 8));
        b.data[i] ^= bit;
        assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), BASE_EPARSE);
        b.data[i] ^= bit;
    }
    /* one byte too many */
    base_buf_put_u8(&b, 0);
    assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), BASE_EPARSE);
    assert_same_snapshot(f->s[1], &before);
    base_buf_free(&b);
    base_buf_free(&before);
}

/* ---- hand-built snapshots with a correct checksum -------------------------------------- */
static const char *const db_names[] = {"nodes", "services", "svcidx", "checks", "kv", "meta"};

struct row {
    const void *k;
    size_t kn;
    const void *v;
    size_t vn;
};

/* Rows for one database (index db) and the meta "applied" row; other databases empty. */
static void build(struct base_buf *b, uint64_t applied, uint64_t meta_applied, int db,
                  const struct row *rows, size_t n)
{
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(meta_applied >> (8 * i));
    base_buf_init(b);
    base_buf_append(b, "HRLDZSNP", 8);
    base_buf_put_u32(b, 1);
    base_buf_put_u64(b, applied);
    base_buf_put_u32(b, 6);
    for (int d = 0; d < 6; d++) {
        base_buf_put_str(b, db_names[d]);
        if (d == db) {
            base_buf_put_u64(b, n);
            for (size_t i = 0; i < n; i++) {
                base_buf_put_bytes(b, rows[i].k, rows[i].kn);
                base_buf_put_bytes(b, rows[i].v, rows[i].vn);
            }
        } else if (d == 5) {
            base_buf_put_u64(b, 1);
            base_buf_put_bytes(b, "applied", 7);
            base_buf_put_bytes(b, le, 8);
        } else {
            base_buf_put_u64(b, 0);
        }
    }
    base_buf_put_u32(b, crc32c(b->data, b->len));
}

static void kv_record(struct base_buf *b, const char *key)
{
    /* version, key with its NUL, value, flags, lock index, session, indexes */
    base_buf_init(b);
    base_buf_put_u8(b, 1);
    base_buf_put_bytes(b, key, strlen(key) + 1);
    base_buf_put_bytes(b, "v", 1);
    base_buf_put_u64(b, 0);
    base_buf_put_u64(b, 0);
    base_buf_put_bytes(b, "", 1);
    base_buf_put_u64(b, 3);
    base_buf_put_u64(b, 3);
}

static void test_malformed_but_checksummed(void **state)
{
    struct fx *f = *state;
    struct base_buf b, before, ra, rb;
    struct zone_read *r;
    struct zone_kv kv;
    bool skipped;
    char long_key[600];

    uint8_t crc_check[] = "123456789";
    assert_true(crc32c(crc_check, 9) == 0xe3069283u); /* the standard check value */

    populate(f->s[1], 10, "old");
    snap(f->s[1], &before);
    kv_record(&ra, "a");
    kv_record(&rb, "b");

    /* the builder makes valid snapshots */
    struct row ok[] = {{"a", 1, ra.data, ra.len}, {"b", 1, rb.data, rb.len}};
    build(&b, 50, 50, 4, ok, 2);
    struct zone_store *s0 = f->s[0];
    assert_int_equal(zone_store_restore(s0, b.data, b.len, &skipped), 0);
    assert_false(skipped);
    /* its records are version 1 (no checksum): the load gave them one, so they read */
    assert_int_equal(zone_read_begin(s0, &r), 0);
    assert_int_equal(zone_kv_get(r, "b", &f->a, &kv), 0);
    assert_memory_equal(kv.value, "v", 1);
    zone_read_end(r);
    base_buf_free(&b);

    /* a version 2 record whose checksum fails is refused like any malformed row */
    struct base_buf r2;
    base_buf_init(&r2);
    assert_int_equal(zone__rec_upgrade(ra.data, ra.len, &r2), 1);
    r2.data[r2.len / 2] ^= 1;
    struct row bad_crc[] = {{"a", 1, r2.data, r2.len}};
    build(&b, 50, 50, 4, bad_crc, 1);
    assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), BASE_EPARSE);
    base_buf_free(&b);
    base_buf_free(&r2);

    struct row unordered[] = {{"b", 1, rb.data, rb.len}, {"a", 1, ra.data, ra.len}};
    build(&b, 50, 50, 4, unordered, 2);
    assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), BASE_EPARSE);
    base_buf_free(&b);

    struct row dup[] = {{"a", 1, ra.data, ra.len}, {"a", 1, ra.data, ra.len}};
    build(&b, 50, 50, 4, dup, 2);
    assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), BASE_EPARSE);
    base_buf_free(&b);

    struct row not_a_record[] = {{"a", 1, "junk", 4}};
    build(&b, 50, 50, 4, not_a_record, 1);
    assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), BASE_EPARSE);
    base_buf_free(&b);
    build(&b, 50, 50, 0, not_a_record, 1); /* as a node */
    assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), BASE_EPARSE);
    base_buf_free(&b);

    struct row empty_key[] = {{"", 0, ra.data, ra.len}};
    build(&b, 50, 50, 4, empty_key, 1);
    assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), BASE_EPARSE);
    base_buf_free(&b);

    memset(long_key, 'k', sizeof long_key);
    struct row too_long[] = {{long_key, sizeof long_key, ra.data, ra.len}};
    build(&b, 50, 50, 4, too_long, 1);
    assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), BASE_EPARSE);
    base_buf_free(&b);

    struct row svcidx_value[] = {{"web\0n\0id", 8, "x", 1}};
    build(&b, 50, 50, 2, svcidx_value, 1);
    assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), BASE_EPARSE);
    base_buf_free(&b);

    /* the header's applied index and the meta row disagree */
    build(&b, 50, 49, 4, ok, 2);
    assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), BASE_EPARSE);
    base_buf_free(&b);

    /* a count larger than the rows that follow */
    build(&b, 50, 50, 4, ok, 2);
    size_t at = 8 + 4 + 8 + 4 + (4 + 5) + 8 + (4 + 8) + 8 + (4 + 6) + 8 + (4 + 6) + 8 + (4 + 2);
    assert_int_equal(b.data[at], 2);
    b.data[at] = 3;
    uint32_t crc = crc32c(b.data, b.len - 4);
    for (int i = 0; i < 4; i++)
        b.data[b.len - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
    assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), BASE_EPARSE);
    base_buf_free(&b);

    assert_same_snapshot(f->s[1], &before);
    base_buf_free(&before);
    base_buf_free(&ra);
    base_buf_free(&rb);
}

/* The check names the problem in one line: what an operator sees for a bad backup file. */
static void test_check_names_the_problem(void **state)
{
    struct fx *f = *state;
    struct base_buf b;
    struct zone_snapshot_info info;
    char err[BASE_ERRMSG_LEN];

    populate(f->s[0], 10, "a");
    snap(f->s[0], &b);
    assert_int_equal(zone_snapshot_check(b.data, b.len, &info, err), 0);
    assert_int_equal(info.version, 4);
    assert_int_equal(info.applied, 19);
    assert_int_equal(info.index, 18);
    assert_int_equal(info.rows[ZONE_TABLE_NODES], 2);
    assert_int_equal(info.rows[ZONE_TABLE_SERVICES], 2);
    assert_int_equal(info.rows[ZONE_TABLE_CHECKS], 4);
    assert_int_equal(info.rows[ZONE_TABLE_KV], 2);

    assert_int_equal(zone_snapshot_check("", 0, &info, err), BASE_EPARSE);
    assert_string_equal(err, "snapshot is empty");
    assert_int_equal(zone_snapshot_check("\x1f\x8b\x08junk", 7, &info, err), BASE_EPARSE);
    assert_string_equal(err, "not a Herald snapshot (bad magic)");
    /* every truncation, in its own allocation so that ASan sees over-reads */
    for (size_t len = 1; len < b.len; len++) {
        uint8_t *p = malloc(len);
        memcpy(p, b.data, len);
        err[0] = '\0';
        assert_int_equal(zone_snapshot_check(p, len, &info, err), BASE_EPARSE);
        assert_non_null(strstr(err, "truncated"));
        free(p);
    }
    /* a value byte changed: the layout is whole, the checksum is not */
    uint8_t *dead = memmem(b.data, b.len, "dead", 4); /* a check's output */
    assert_non_null(dead);
    dead[0] ^= 0x01;
    assert_int_equal(zone_snapshot_check(b.data, b.len, &info, err), BASE_EPARSE);
    assert_string_equal(err, "snapshot is damaged: checksum mismatch");
    dead[0] ^= 0x01;
    /* a version from the future, checksummed */
    b.data[8] = 99;
    uint32_t crc = crc32c(b.data, b.len - 4);
    for (int i = 0; i < 4; i++)
        b.data[b.len - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
    assert_int_equal(zone_snapshot_check(b.data, b.len, &info, err), BASE_EPARSE);
    assert_non_null(strstr(err, "unsupported snapshot version 99"));
    base_buf_free(&b);
}

/* The sliced CRC-32C against the standard check value and a byte-at-a-time reference, at
 * every length and alignment around the 8-byte steps. */
static void test_crc32c(void **state)
{
    (void)state;
    uint8_t b[64];
    assert_int_equal(zone__crc32c((const uint8_t *)"123456789", 9), 0xe3069283u);
    assert_int_equal(zone__crc32c(b, 0), 0);
    for (size_t i = 0; i < sizeof b; i++)
        b[i] = (uint8_t)(i * 151 + 7);
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n + off <= sizeof b; n++)
            assert_int_equal(zone__crc32c(b + off, n), crc32c(b + off, n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test_setup_teardown(test_restore_into_fresh_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_replaces_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_older_snapshot_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_snapshot_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_but_checksummed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_names_the_problem, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
