/* Snapshots of the whole catalog, for Raft log compaction and for catching up a follower.
 *
 * Format (integers little-endian, the base codec):
 *   "HRLDZSNP"  magic
 *   u32         version (2)
 *   u64         applied: the last Raft index the catalog holds
 *   u32         number of databases (7), then per database in zone__db_names order:
 *                 name (string), u64 count, count x (key bytes, value bytes) in key order
 *   u32         CRC-32C of everything before it
 * Version 1 had six databases (no addrs, the PTR index): such a snapshot still restores, and
 * the index is rebuilt from its nodes and services in the same transaction.
 * The rows are LMDB's own keys and values, so the snapshot is the store itself, read from one
 * transaction: it is consistent without stopping the writer (DESIGN.md 2.6).
 *
 * Restore reads its input twice. The first pass checks everything (checksum, layout, each
 * key's length and order, each value as a record of its database) and changes nothing; only
 * then does one write transaction empty every database and load the rows, so a bad snapshot
 * leaves the store as it was and a good one replaces it atomically. Because the rows were
 * checked to be in order, they load with MDB_APPEND. */
#include "zone/internal.h"

#include <string.h>

static const char magic[8] = {'H', 'R', 'L', 'D', 'Z', 'S', 'N', 'P'};
#define SNAP_VERSION 2
#define SNAP_V1_DBS  6 /* version 1: every database but addrs */
#define SNAP_CRC_LEN 4

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78). */
static uint32_t crc32c(const uint8_t *p, size_t n)
{
    uint32_t table[256];
    uint32_t crc = 0xffffffffu;

    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        table[i] = c;
    }
    while (n--)
        crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

struct snap_out {
    struct base_buf *b;
    uint64_t count;
};

static int snap_row(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct snap_out *o = ctx;
    base_buf_put_bytes(o->b, k->mv_data, k->mv_size);
    base_buf_put_bytes(o->b, v->mv_data, v->mv_size);
    o->count++;
    return 0;
}

int zone_store_snapshot(struct zone_store *s, struct base_buf *out)
{
    struct zone_read *r;
    uint64_t applied;
    size_t start = out->len;
    int rc;

    if ((rc = zone_read_begin(s, &r)))
        return rc;
    if ((rc = zone__meta_read(r->txn, s->dbi[ZONE__DB_META], ZONE__META_APPLIED, &applied)))
        goto out;
    base_buf_append(out, magic, sizeof magic);
    base_buf_put_u32(out, SNAP_VERSION);
    base_buf_put_u64(out, applied);
    base_buf_put_u32(out, ZONE__DB_COUNT);
    for (int i = 0; i < ZONE__DB_COUNT; i++) {
        struct snap_out o = {out, 0};
        base_buf_put_str(out, zone__db_names[i]);
        size_t at = out->len;
        base_buf_put_u64(out, 0); /* count, patched below */
        if ((rc = zone__scan(r->txn, s->dbi[i], NULL, 0, snap_row, &o)))
            goto out;
        for (int k = 0; k < 8; k++)
            out->data[at + (size_t)k] = (uint8_t)(o.count >> (8 * k));
    }
    base_buf_put_u32(out, crc32c(out->data + start, out->len - start));
out:
    zone_read_end(r);
    if (rc)
        out->len = start;
    return rc;
}

/* LMDB's default order: bytes compared up to the shorter length, then the shorter first. */
static int key_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

static int check_value(enum zone__db d, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn,
                       struct base_arena *a, uint64_t *meta_applied)
{
    union {
        struct zone_node n;
        struct zone_service s;
        struct zone_check c;
        struct zone_kv kv;
    } u;

    base_arena_reset(a);
    switch (d) {
    case ZONE__DB_NODES:
        return zone__node_decode(v, vn, false, a, &u.n);
    case ZONE__DB_SERVICES:
        return zone__service_decode(v, vn, false, a, &u.s);
    case ZONE__DB_CHECKS:
        return zone__check_decode(v, vn, false, a, &u.c);
    case ZONE__DB_KV:
        return zone__kv_decode(v, vn, false, a, &u.kv);
    case ZONE__DB_SVCIDX:
        return vn == 0 ? 0 : BASE_EPARSE;
    case ZONE__DB_ADDRS: {
        /* family, address, node \0 sid; the value is empty or one NUL-terminated name */
        size_t ipn = kn > 0 && k[0] == 4 ? 4 : kn > 0 && k[0] == 6 ? 16 : 0;
        if (!ipn || kn < 1 + ipn + 2 || !memchr(k + 1 + ipn, 0, kn - 1 - ipn))
            return BASE_EPARSE;
        if (vn && (v[vn - 1] != 0 || memchr(v, 0, vn - 1)))
            return BASE_EPARSE;
        return 0;
    }
    case ZONE__DB_META:
        if (vn != 8)
            return BASE_EPARSE;
        if (kn == strlen(ZONE__META_APPLIED) && memcmp(k, ZONE__META_APPLIED, kn) == 0) {
            *meta_applied = 0;
            for (int i = 7; i >= 0; i--)
                *meta_applied = *meta_applied << 8 | v[i];
        }
        return 0;
    case ZONE__DB_COUNT:
        break;
    }
    return BASE_EPARSE;
}

/* Walks the snapshot. With t NULL it only checks; with t it loads every row (the input was
 * checked before, so a failure then is the store's). */
static int walk(struct zone_store *s, const uint8_t *p, size_t n, MDB_txn *t, uint64_t *applied)
{
    struct base_rd r;
    struct base_arena a;
    uint64_t meta_applied = 0;
    int rc = 0;

    if (n < sizeof magic + SNAP_CRC_LEN || memcmp(p, magic, sizeof magic) != 0)
        return BASE_EPARSE;
    base_rd_init(&r, p + sizeof magic, n - sizeof magic - SNAP_CRC_LEN);
    if (!t) {
        struct base_rd cr;
        base_rd_init(&cr, p + n - SNAP_CRC_LEN, SNAP_CRC_LEN);
        if (base_rd_u32(&cr) != crc32c(p, n - SNAP_CRC_LEN))
            return BASE_EPARSE;
    }
    uint32_t version = base_rd_u32(&r);
    int n_dbs = version == SNAP_VERSION ? ZONE__DB_COUNT : version == 1 ? SNAP_V1_DBS : -1;
    if (n_dbs < 0)
        return BASE_EPARSE;
    *applied = base_rd_u64(&r);
    if (base_rd_u32(&r) != (uint32_t)n_dbs || r.err)
        return BASE_EPARSE;

    base_arena_init(&a);
    for (int d = 0; d < n_dbs && !rc; d++) {
        size_t nn;
        const uint8_t *name = base_rd_bytes(&r, &nn);
        uint64_t count = base_rd_u64(&r);
        const uint8_t *prev = NULL;
        size_t prev_n = 0;

        if (r.err || nn != strlen(zone__db_names[d]) || memcmp(name, zone__db_names[d], nn) ||
            count > r.left / 8) {
            rc = BASE_EPARSE;
            break;
        }
        for (uint64_t i = 0; i < count && !rc; i++) {
            size_t kn, vn;
            const uint8_t *k = base_rd_bytes(&r, &kn);
            const uint8_t *v = base_rd_bytes(&r, &vn);
            if (t) {
                MDB_val key = {.mv_size = kn, .mv_data = (void *)k};
                MDB_val val = {.mv_size = vn, .mv_data = (void *)v};
                rc = mdb_put(t, s->dbi[d], &key, &val, MDB_APPEND) ? BASE_ESTORE : 0;
                continue;
            }
            if (r.err || kn == 0 || kn > s->max_key ||
                (prev && key_cmp(prev, prev_n, k, kn) >= 0) ||
                check_value((enum zone__db)d, k, kn, v, vn, &a, &meta_applied))
                rc = BASE_EPARSE;
            prev = k;
            prev_n = kn;
        }
    }
    base_arena_close(&a);
    if (!rc && (r.err || r.left))
        rc = BASE_EPARSE;
    /* the header and the meta row come from the same transaction */
    if (!rc && !t && meta_applied != *applied)
        rc = BASE_EPARSE;
    if (!rc && t && n_dbs < ZONE__DB_COUNT)
        rc = zone__addrs_rebuild(s, t);
    return rc;
}

int zone_store_restore(struct zone_store *s, const void *p, size_t n, bool *skipped)
{
    MDB_txn *t;
    uint64_t applied, stored;
    int rc;

    BASE_ASSERT_LOOP();
    *skipped = false;
    if ((rc = walk(s, p, n, NULL, &applied)))
        return rc;
    if (mdb_txn_begin(s->env, NULL, 0, &t))
        return BASE_ESTORE;
    if ((rc = zone__meta_read(t, s->dbi[ZONE__DB_META], ZONE__META_APPLIED, &stored)))
        goto fail;
    if (applied <= stored) { /* the store is already at or past this snapshot */
        mdb_txn_abort(t);
        *skipped = true;
        return 0;
    }
    for (int d = 0; d < ZONE__DB_COUNT; d++)
        if (mdb_drop(t, s->dbi[d], 0)) {
            rc = BASE_ESTORE;
            goto fail;
        }
    if ((rc = walk(s, p, n, t, &applied)))
        goto fail;
    if (mdb_txn_commit(t))
        return BASE_ESTORE;
    return 0;
fail:
    mdb_txn_abort(t);
    return rc;
}
