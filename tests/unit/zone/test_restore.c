/* Tests zone/restore.c: a backup restored through RESTORE_BEGIN / CHUNK / END entries replaces
 * the catalog exactly; an incomplete or damaged staging fails END, clears the staging and
 * changes nothing else; a new BEGIN discards an older restore; the staging survives a reopen
 * and travels in Raft snapshots (version 3, older versions still restore); replayed entries
 * change nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zone/fixture.h"
#include "zone/zone.h"

/* ---- fixture: three stores ------------------------------------------------------------- */
#define N_STORES 3
struct fx {
    char dir[N_STORES][64];
    struct zone_store *s[N_STORES];
    struct base_arena a;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    for (int i = 0; i < N_STORES; i++)
        tmp_store_open(f->dir[i], "zone", &f->s[i]);
    base_arena_init(&f->a);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < N_STORES; i++)
        tmp_store_close(f->dir[i], f->s[i]);
    base_arena_close(&f->a);
    free(f);
    return 0;
}

static void kv_set(struct zone_store *s, uint64_t idx, const char *key, const char *value)
{
    store_kv_set(s, idx, key, value, strlen(value));
}

/* A small catalog: n nodes with a service and a check each, and KV keys, from index base. */
static uint64_t populate(struct zone_store *s, uint64_t base, const char *tag, int n)
{
    uint64_t idx = base;
    for (int i = 0; i < n; i++) {
        char node[32], id[32], addr[32];
        struct zone_service svc = {0};
        struct zone_check ck = {0};
        struct zone_cmd c = {.type = ZONE_CMD_REGISTER};
        snprintf(node, sizeof node, "%s-node-%d", tag, i);
        snprintf(id, sizeof id, "web-%d", i);
        snprintf(addr, sizeof addr, "10.1.%d.%d", i / 250, i % 250 + 1);
        c.node.name = node;
        c.node.address = addr;
        svc.id = id;
        svc.name = tag;
        svc.port = 80;
        ck.check_id = "alive";
        ck.service_id = id;
        ck.status = ZONE_HEALTH_PASSING;
        c.service = &svc;
        c.checks = &ck;
        c.n_checks = 1;
        assert_int_equal(store_apply1(s, idx++, &c, NULL), 0);
        char key[64];
        snprintf(key, sizeof key, "%s/key-%d", tag, i);
        kv_set(s, idx++, key, tag);
    }
    return idx;
}

/* Every row the public reads give, as text: equal texts, equal catalogs. */
static int text_node(void *d, const struct zone_node *n)
{
    base_buf_printf(d, "N %s %s %llu %llu\n", n->name, n->address,
                    (unsigned long long)n->create_index, (unsigned long long)n->modify_index);
    return 0;
}
static int text_service(void *d, const struct zone_service *s)
{
    base_buf_printf(d, "S %s %s %s %u %llu\n", s->node, s->id, s->name, s->port,
                    (unsigned long long)s->modify_index);
    return 0;
}
static int text_check(void *d, const struct zone_check *c)
{
    base_buf_printf(d, "C %s %s %d %s %llu\n", c->node, c->check_id, (int)c->status,
                    c->service_name, (unsigned long long)c->modify_index);
    return 0;
}
static int text_kv(void *d, const struct zone_kv *kv)
{
    base_buf_printf(d, "K %s %.*s %llu\n", kv->key, (int)kv->value_len, (const char *)kv->value,
                    (unsigned long long)kv->modify_index);
    return 0;
}

static char *catalog_text(struct fx *f, struct zone_store *s)
{
    struct zone_read *r;
    struct base_buf b;
    base_buf_init(&b);
    assert_int_equal(zone_read_begin(s, &r), 0);
    assert_int_equal(zone_nodes_each(r, &f->a, text_node, &b), 0);
    assert_int_equal(zone_services_each(r, &f->a, text_service, &b), 0);
    assert_int_equal(zone_checks_each(r, &f->a, text_check, &b), 0);
    assert_int_equal(zone_kv_each(r, "", &f->a, text_kv, &b), 0);
    zone_read_end(r);
    base_arena_reset(&f->a);
    base_buf_append(&b, "", 1);
    return (char *)b.data;
}

static void backup(struct zone_store *s, struct base_buf *b)
{
    struct zone_read *r;
    base_buf_init(b);
    assert_int_equal(zone_read_begin(s, &r), 0);
    assert_int_equal(zone_read_backup(r, b), 0);
    zone_read_end(r);
}

static size_t snapshot_len(struct zone_store *s)
{
    struct base_buf b;
    base_buf_init(&b);
    assert_int_equal(zone_store_snapshot(s, &b), 0);
    size_t n = b.len;
    base_buf_free(&b);
    return n;
}

static uint32_t trailer_crc(const struct base_buf *b)
{
    const uint8_t *p = b->data + b->len - 4;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static struct zone_cmd begin_cmd(uint64_t id, uint64_t total, uint32_t crc)
{
    struct zone_cmd c = {.type = ZONE_CMD_RESTORE_BEGIN};
    c.restore.id = id;
    c.restore.total = total;
    c.restore.crc = crc;
    return c;
}

static struct zone_cmd chunk_cmd(uint64_t id, const struct base_buf *b, size_t off, size_t len)
{
    struct zone_cmd c = {.type = ZONE_CMD_RESTORE_CHUNK};
    c.restore.id = id;
    c.restore.offset = off;
    c.restore.data = b->data + off;
    c.restore.len = len;
    return c;
}

static struct zone_cmd end_cmd(uint64_t id)
{
    struct zone_cmd c = {.type = ZONE_CMD_RESTORE_END};
    c.restore.id = id;
    return c;
}

/* BEGIN at idx, then one entry per chunk of `piece` bytes (skipping chunk number `skip`, -1
 * for none). Returns the next index. */
static uint64_t stage(struct zone_store *s, uint64_t idx, uint64_t id, const struct base_buf *b,
                      size_t piece, int skip)
{
    struct zone_cmd c = begin_cmd(id, b->len, trailer_crc(b));
    uint32_t touched = 1;
    assert_int_equal(store_apply1(s, idx++, &c, &touched), 0);
    assert_int_equal(touched, 0);
    int k = 0;
    for (size_t off = 0; off < b->len; off += piece, k++) {
        if (k == skip)
            continue;
        size_t len = b->len - off < piece ? b->len - off : piece;
        c = chunk_cmd(id, b, off, len);
        assert_int_equal(store_apply1(s, idx++, &c, &touched), 0);
        assert_int_equal(touched, 0);
    }
    return idx;
}

static void assert_indexes_at(struct zone_store *s, uint64_t idx)
{
    struct zone_meta m;
    assert_int_equal(zone_store_meta(s, &m), 0);
    assert_int_equal(m.applied, idx);
    assert_int_equal(m.index, idx);
    for (int t = 0; t < ZONE_TABLE_COUNT; t++)
        assert_int_equal(m.table_index[t], idx);
    assert_int_equal(m.restored, idx); /* reads of one record report at least this */
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_complete_restore_replaces_catalog(void **state)
{
    struct fx *f = *state;
    struct base_buf b;
    uint32_t touched = 0;

    populate(f->s[0], 10, "saved", 5);
    char *want = catalog_text(f, f->s[0]);
    backup(f->s[0], &b);

    /* s[1] has other rows (the restore removes them), at indexes past the backup's */
    uint64_t idx = populate(f->s[1], 100, "other", 7);
    idx = stage(f->s[1], idx, 42, &b, 97, -1);
    struct zone_cmd c = end_cmd(42);
    assert_int_equal(store_apply1(f->s[1], idx, &c, &touched), 0);
    assert_int_equal(touched, ZONE_TABLE_ALL);
    char *got = catalog_text(f, f->s[1]);
    assert_string_equal(got, want);
    /* applied stays the END entry's index; every table index moves to it */
    assert_indexes_at(f->s[1], idx);
    /* the staging is gone: the same again fails as unknown */
    assert_int_equal(store_apply1(f->s[1], idx + 1, &c, &touched), BASE_ENOTFOUND);
    assert_int_equal(touched, 0);

    /* a fresh store given the same entries ends byte for byte the same (determinism) */
    uint64_t j = populate(f->s[2], 100, "other", 7);
    j = stage(f->s[2], j, 42, &b, 97, -1);
    assert_int_equal(j, idx);
    assert_int_equal(store_apply1(f->s[2], j, &c, &touched), 0);
    assert_int_equal(store_apply1(f->s[2], j + 1, &c, &touched), BASE_ENOTFOUND);
    struct base_buf s1, s2;
    base_buf_init(&s1);
    base_buf_init(&s2);
    assert_int_equal(zone_store_snapshot(f->s[1], &s1), 0);
    assert_int_equal(zone_store_snapshot(f->s[2], &s2), 0);
    assert_int_equal(s1.len, s2.len);
    assert_memory_equal(s1.data, s2.data, s1.len);
    base_buf_free(&s1);
    base_buf_free(&s2);

    /* writes go on after it */
    kv_set(f->s[1], idx + 2, "after", "x");
    free(want);
    free(got);
    base_buf_free(&b);
}

static void test_restore_into_older_catalog_moves_indexes_forward(void **state)
{
    struct fx *f = *state;
    struct base_buf b;
    uint32_t touched;

    /* the backup's indexes (around 500) are past the target's: applied still follows Raft */
    populate(f->s[0], 500, "saved", 2);
    backup(f->s[0], &b);
    uint64_t idx = stage(f->s[1], 3, 7, &b, 4096, -1);
    struct zone_cmd c = end_cmd(7);
    assert_int_equal(store_apply1(f->s[1], idx, &c, &touched), 0);
    assert_indexes_at(f->s[1], idx);
    base_buf_free(&b);
}

static void test_commands_around_end_in_one_entry(void **state)
{
    struct fx *f = *state;
    struct base_buf b;
    int res[3];
    uint32_t touched;

    populate(f->s[0], 10, "saved", 2);
    backup(f->s[0], &b);
    uint64_t idx = stage(f->s[1], 5, 9, &b, 1000, -1);
    struct zone_cmd cmds[3] = {{.type = ZONE_CMD_KV_SET}, end_cmd(9), {.type = ZONE_CMD_KV_SET}};
    cmds[0].kv.key = "before";
    cmds[0].kv.value = (const uint8_t *)"1";
    cmds[0].kv.value_len = 1;
    cmds[2].kv.key = "after";
    cmds[2].kv.value = (const uint8_t *)"2";
    cmds[2].kv.value_len = 1;
    store_apply_n(f->s[1], idx, cmds, 3, res, &touched);
    assert_int_equal(res[0], 0);
    assert_int_equal(res[1], 0);
    assert_int_equal(res[2], 0);
    assert_int_equal(touched, ZONE_TABLE_ALL);
    /* in command order: the restore replaced "before"; "after" came on top */
    struct zone_read *r;
    struct zone_kv kv;
    assert_int_equal(zone_read_begin(f->s[1], &r), 0);
    assert_int_equal(zone_kv_get(r, "before", &f->a, &kv), BASE_ENOTFOUND);
    assert_int_equal(zone_kv_get(r, "after", &f->a, &kv), 0);
    assert_int_equal(kv.modify_index, idx);
    assert_int_equal(zone_kv_get(r, "saved/key-1", &f->a, &kv), 0);
    zone_read_end(r);
    base_buf_free(&b);
}

/* END fails with BASE_EPARSE, clears the staging, and the catalog is as before BEGIN. */
static void assert_failed_end(struct fx *f, struct zone_store *s, uint64_t idx, uint64_t id,
                              const char *before, size_t snap_before)
{
    uint32_t touched = 1;
    struct zone_meta m0, m1;
    assert_int_equal(zone_store_meta(s, &m0), 0);
    struct zone_cmd c = end_cmd(id);
    assert_int_equal(store_apply1(s, idx, &c, &touched), BASE_EPARSE);
    assert_int_equal(touched, 0);
    char *after = catalog_text(f, s);
    assert_string_equal(after, before);
    free(after);
    assert_int_equal(zone_store_meta(s, &m1), 0);
    assert_int_equal(m1.applied, idx);
    assert_int_equal(m1.index, m0.index);
    assert_memory_equal(m1.table_index, m0.table_index, sizeof m0.table_index);
    assert_int_equal(m1.restored, m0.restored);
    /* the staging is empty again: same rows, same meta keys, same size as before BEGIN */
    assert_int_equal(snapshot_len(s), snap_before);
    c = chunk_cmd(id, &(struct base_buf){.data = (uint8_t *)"x", .len = 1}, 0, 1);
    assert_int_equal(store_apply1(s, idx + 1, &c, NULL), BASE_ENOTFOUND);
}

static void test_missing_chunk_fails_end(void **state)
{
    struct fx *f = *state;
    struct base_buf b;

    populate(f->s[0], 10, "saved", 4);
    backup(f->s[0], &b);
    uint64_t idx = populate(f->s[1], 100, "other", 3);
    char *before = catalog_text(f, f->s[1]);
    size_t snap_before = snapshot_len(f->s[1]);
    idx = stage(f->s[1], idx, 5, &b, 100, 3); /* the 4th chunk never came */
    assert_failed_end(f, f->s[1], idx, 5, before, snap_before);

    /* the last chunk missing: the staged bytes stop short of the total */
    idx = stage(f->s[1], idx + 2, 6, &b, 100, (int)((b.len - 1) / 100));
    assert_failed_end(f, f->s[1], idx, 6, before, snap_before);
    free(before);
    base_buf_free(&b);
}

static void test_bad_crc_or_bytes_fail_end(void **state)
{
    struct fx *f = *state;
    struct base_buf b;
    uint32_t touched;

    populate(f->s[0], 10, "saved", 4);
    backup(f->s[0], &b);
    uint64_t idx = populate(f->s[1], 100, "other", 3);
    char *before = catalog_text(f, f->s[1]);
    size_t snap_before = snapshot_len(f->s[1]);

    /* BEGIN announced another CRC */
    struct zone_cmd c = begin_cmd(11, b.len, trailer_crc(&b) ^ 1);
    assert_int_equal(store_apply1(f->s[1], idx++, &c, NULL), 0);
    for (size_t off = 0; off < b.len; off += 512) {
        c = chunk_cmd(11, &b, off, b.len - off < 512 ? b.len - off : 512);
        assert_int_equal(store_apply1(f->s[1], idx++, &c, NULL), 0);
    }
    assert_failed_end(f, f->s[1], idx, 11, before, snap_before);
    idx += 2;

    /* the right CRC, a byte changed on the way */
    b.data[b.len / 2] ^= 0x20;
    idx = stage(f->s[1], idx, 12, &b, 512, -1);
    assert_failed_end(f, f->s[1], idx, 12, before, snap_before);
    b.data[b.len / 2] ^= 0x20;
    idx += 2;

    /* overlapping chunks (a chunk at an offset inside another one) */
    c = begin_cmd(13, b.len, trailer_crc(&b));
    assert_int_equal(store_apply1(f->s[1], idx++, &c, NULL), 0);
    c = chunk_cmd(13, &b, 0, b.len);
    assert_int_equal(store_apply1(f->s[1], idx++, &c, NULL), 0);
    c = chunk_cmd(13, &b, 10, 10);
    assert_int_equal(store_apply1(f->s[1], idx++, &c, NULL), 0);
    assert_failed_end(f, f->s[1], idx, 13, before, snap_before);
    idx += 2;

    /* chunks that do not fit the announced total, and bad BEGINs, are refused at once */
    c = begin_cmd(14, 10, 0);
    assert_int_equal(store_apply1(f->s[1], idx++, &c, &touched), 0);
    c = chunk_cmd(14, &b, 5, 6);
    assert_int_equal(store_apply1(f->s[1], idx++, &c, &touched), BASE_EPARSE);
    c = chunk_cmd(14, &b, 11, 1);
    assert_int_equal(store_apply1(f->s[1], idx++, &c, &touched), BASE_EPARSE);
    c = begin_cmd(0, 10, 0);
    assert_int_equal(store_apply1(f->s[1], idx++, &c, &touched), BASE_EPARSE);
    c = begin_cmd(15, 0, 0);
    assert_int_equal(store_apply1(f->s[1], idx++, &c, &touched), BASE_EPARSE);
    c = begin_cmd(15, ZONE_BACKUP_MAX + 1, 0);
    assert_int_equal(store_apply1(f->s[1], idx++, &c, &touched), BASE_ETOOBIG);
    /* a failed BEGIN discarded nothing: restore 14 is still staged */
    c = chunk_cmd(14, &b, 0, 5);
    assert_int_equal(store_apply1(f->s[1], idx++, &c, &touched), 0);

    char *after = catalog_text(f, f->s[1]);
    assert_string_equal(after, before);
    free(after);
    free(before);
    base_buf_free(&b);
}

static void test_new_begin_discards_older_restore(void **state)
{
    struct fx *f = *state;
    struct base_buf b1, b2;
    uint32_t touched;

    populate(f->s[0], 10, "first", 3);
    backup(f->s[0], &b1);
    populate(f->s[2], 10, "second", 2);
    char *want = catalog_text(f, f->s[2]);
    backup(f->s[2], &b2);

    uint64_t idx = stage(f->s[1], 1, 100, &b1, 300, -1); /* complete, but no END yet */
    idx = stage(f->s[1], idx, 200, &b2, 300, -1);
    /* the older restore's pieces and END now fail without touching the newer staging */
    struct zone_cmd c = chunk_cmd(100, &b1, 0, 10);
    assert_int_equal(store_apply1(f->s[1], idx++, &c, &touched), BASE_ENOTFOUND);
    c = end_cmd(100);
    assert_int_equal(store_apply1(f->s[1], idx++, &c, &touched), BASE_ENOTFOUND);
    assert_int_equal(touched, 0);
    c = end_cmd(200);
    assert_int_equal(store_apply1(f->s[1], idx, &c, &touched), 0);
    assert_int_equal(touched, ZONE_TABLE_ALL);
    char *got = catalog_text(f, f->s[1]);
    assert_string_equal(got, want);
    free(want);
    free(got);
    base_buf_free(&b1);
    base_buf_free(&b2);
}

static void test_staging_survives_reopen_and_replay(void **state)
{
    struct fx *f = *state;
    struct base_buf b;
    uint32_t touched;
    int res;

    populate(f->s[0], 10, "saved", 4);
    char *want = catalog_text(f, f->s[0]);
    backup(f->s[0], &b);

    /* the entries, as a Raft log would hold them */
    size_t piece = 200, n_chunks = (b.len + piece - 1) / piece;
    struct zone_cmd *log = calloc(n_chunks + 2, sizeof *log);
    log[0] = begin_cmd(77, b.len, trailer_crc(&b));
    for (size_t k = 0; k < n_chunks; k++)
        log[1 + k] =
            chunk_cmd(77, &b, k * piece, b.len - k * piece < piece ? b.len - k * piece : piece);
    log[n_chunks + 1] = end_cmd(77);
    uint64_t base = 1000;

    /* half of them, a restart, then everything again from the start (libraft replays the
     * entries after its last snapshot): the applied ones are skipped */
    size_t half = n_chunks / 2;
    for (size_t k = 0; k <= half; k++)
        assert_int_equal(store_apply1(f->s[1], base + k, &log[k], NULL), 0);
    zone_store_close(f->s[1]);
    store_open_at(f->dir[1], &f->s[1]);
    for (size_t k = 0; k < n_chunks + 2; k++) {
        store_apply_n(f->s[1], base + k, &log[k], 1, &res, &touched);
        assert_int_equal(res, 0);
        assert_int_equal(touched, k == n_chunks + 1 ? ZONE_TABLE_ALL : 0);
    }
    char *got = catalog_text(f, f->s[1]);
    assert_string_equal(got, want);
    free(got);
    assert_indexes_at(f->s[1], base + n_chunks + 1);

    /* replaying all of it once more changes nothing */
    size_t snap = snapshot_len(f->s[1]);
    for (size_t k = 0; k < n_chunks + 2; k++) {
        store_apply_n(f->s[1], base + k, &log[k], 1, &res, &touched);
        assert_int_equal(res, 0);
        assert_int_equal(touched, 0);
    }
    got = catalog_text(f, f->s[1]);
    assert_string_equal(got, want);
    assert_int_equal(snapshot_len(f->s[1]), snap);
    assert_indexes_at(f->s[1], base + n_chunks + 1);
    free(got);
    free(want);
    free(log);
    base_buf_free(&b);
}

/* The trailer of a snapshot rewritten by hand: CRC-32C from its definition (zone/fixture.h). */
static void put_crc(struct base_buf *b)
{
    uint32_t crc = crc32c(b->data, b->len - 4);
    for (int i = 0; i < 4; i++)
        b->data[b->len - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
}

static void test_raft_snapshot_carries_staging(void **state)
{
    struct fx *f = *state;
    struct base_buf b, snap;
    bool skipped = true;
    uint32_t touched;

    populate(f->s[0], 10, "saved", 4);
    char *want = catalog_text(f, f->s[0]);
    backup(f->s[0], &b);

    /* s[1] stages half a restore; its Raft snapshot (version 4) goes to a fresh s[2] */
    uint64_t idx = populate(f->s[1], 100, "other", 2);
    struct zone_cmd c = begin_cmd(3, b.len, trailer_crc(&b));
    assert_int_equal(store_apply1(f->s[1], idx++, &c, NULL), 0);
    size_t half = b.len / 2;
    c = chunk_cmd(3, &b, 0, half);
    assert_int_equal(store_apply1(f->s[1], idx++, &c, NULL), 0);
    base_buf_init(&snap);
    assert_int_equal(zone_store_snapshot(f->s[1], &snap), 0);
    struct zone_snapshot_info info;
    char err[BASE_ERRMSG_LEN];
    assert_int_equal(zone_snapshot_check(snap.data, snap.len, &info, err), 0);
    assert_int_equal(info.version, 4);
    assert_int_equal(zone_store_restore(f->s[2], snap.data, snap.len, &skipped), 0);
    assert_false(skipped);
    base_buf_free(&snap);

    /* the follower goes on with the rest of the log and ends where s[1] does */
    c = chunk_cmd(3, &b, half, b.len - half);
    assert_int_equal(store_apply1(f->s[2], idx, &c, NULL), 0);
    assert_int_equal(store_apply1(f->s[1], idx++, &c, NULL), 0);
    c = end_cmd(3);
    assert_int_equal(store_apply1(f->s[2], idx, &c, &touched), 0);
    assert_int_equal(touched, ZONE_TABLE_ALL);
    assert_int_equal(store_apply1(f->s[1], idx, &c, &touched), 0);
    char *got1 = catalog_text(f, f->s[1]), *got2 = catalog_text(f, f->s[2]);
    assert_string_equal(got1, want);
    assert_string_equal(got2, want);
    free(got1);
    free(got2);
    free(want);
    base_buf_free(&b);
}

static void test_version_2_snapshot_restores_without_staging(void **state)
{
    struct fx *f = *state;
    struct base_buf b;
    bool skipped = true;

    /* s[1] has a staged restore; a version 2 snapshot (no staging database) replaces it */
    populate(f->s[0], 10, "saved", 3);
    char *want = catalog_text(f, f->s[0]);
    backup(f->s[0], &b);
    struct zone_cmd c = begin_cmd(8, 100, 0);
    assert_int_equal(store_apply1(f->s[1], 2, &c, NULL), 0);

    /* version 4 -> 2: the staging and sessions sections (their names and zero counts) go */
    static const uint8_t staging_section[] = {
        7, 0, 0, 0,   's', 't', 'a', 'g', 'i', 'n', 'g', 0, 0, 0, 0, 0, 0, 0, 0, 8,
        0, 0, 0, 's', 'e', 's', 's', 'i', 'o', 'n', 's', 0, 0, 0, 0, 0, 0, 0, 0};
    size_t sec = sizeof staging_section;
    assert_memory_equal(b.data + b.len - 4 - sec, staging_section, sec);
    memmove(b.data + b.len - 4 - sec, b.data + b.len - 4, 4);
    b.len -= sec;
    b.data[8] = 2;  /* version */
    b.data[20] = 7; /* databases */
    put_crc(&b);
    struct zone_snapshot_info info;
    char err[BASE_ERRMSG_LEN];
    assert_int_equal(zone_snapshot_check(b.data, b.len, &info, err), 0);
    assert_int_equal(info.version, 2);
    assert_int_equal(zone_store_restore(f->s[1], b.data, b.len, &skipped), 0);
    assert_false(skipped);
    char *got = catalog_text(f, f->s[1]);
    assert_string_equal(got, want);
    free(got);
    /* the staging went with the rest */
    c = chunk_cmd(8, &b, 0, 1);
    assert_int_equal(store_apply1(f->s[1], 100, &c, NULL), BASE_ENOTFOUND);

    /* and a version 2 file restores as a backup too */
    uint64_t idx = stage(f->s[2], 200, 9, &b, 300, -1);
    c = end_cmd(9);
    assert_int_equal(store_apply1(f->s[2], idx, &c, NULL), 0);
    got = catalog_text(f, f->s[2]);
    assert_string_equal(got, want);
    free(got);
    free(want);
    base_buf_free(&b);
}

static void test_backup_leaves_staging_out(void **state)
{
    struct fx *f = *state;
    struct base_buf b, b2;
    struct zone_snapshot_info info;
    char err[BASE_ERRMSG_LEN];

    uint64_t idx = populate(f->s[0], 10, "saved", 3);
    backup(f->s[0], &b);
    assert_int_equal(zone_snapshot_check(b.data, b.len, &info, err), 0);
    assert_int_equal(info.applied, idx - 1);
    assert_int_equal(info.index, idx - 1);
    assert_int_equal(info.rows[ZONE_TABLE_NODES], 3);
    assert_int_equal(info.rows[ZONE_TABLE_SERVICES], 3);
    assert_int_equal(info.rows[ZONE_TABLE_CHECKS], 3);
    assert_int_equal(info.rows[ZONE_TABLE_KV], 3);

    /* a restore staged on it: the Raft snapshot grows, the backup does not */
    size_t snap_before = snapshot_len(f->s[0]);
    idx = stage(f->s[0], idx, 1, &b, 500, -1);
    assert_true(snapshot_len(f->s[0]) > snap_before + b.len);
    backup(f->s[0], &b2);
    assert_int_equal(b2.len, b.len);
    base_buf_free(&b);
    base_buf_free(&b2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_complete_restore_replaces_catalog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_into_older_catalog_moves_indexes_forward,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_commands_around_end_in_one_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_chunk_fails_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_crc_or_bytes_fail_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_begin_discards_older_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_staging_survives_reopen_and_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raft_snapshot_carries_staging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_2_snapshot_restores_without_staging, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_backup_leaves_staging_out, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
