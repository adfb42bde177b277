/* Restoring a backup through Raft, in pieces staged in the store.
 *
 * Why through Raft. A restore must replace the catalog on every server alike, so it travels
 * as Raft entries like any write; restoring one server's LMDB alone would fork the replicas.
 *
 * Why in pieces. A Raft entry is capped at 4 MiB (a forwarded RPC frame at 8 MiB) and a
 * catalog of 100k entries is larger. So the proposer (PUT /v1/snapshot) checks the whole
 * backup first, then proposes RESTORE_BEGIN(id, total, crc), RESTORE_CHUNK(id, offset, up to
 * 1 MiB) for every piece, and RESTORE_END(id); each is applied here, inside the transaction of
 * its entry, so it commits together with the applied index like every write.
 *
 * Staging. The pieces wait in the staging database, not in memory: a restart in the middle of
 * a restore replays nothing twice (entries at or below the applied index are skipped) and
 * loses nothing, and a Raft snapshot taken in the middle carries the staging to a follower
 * that catches up from it (snapshot version 3). Rows: "h" -> u64 id, u64 total, u32 crc (the
 * backup's own CRC-32C, its last 4 bytes), little-endian; "c" + offset as u64 big-endian ->
 * the bytes at that offset, so a scan of "c" meets the chunks in offset order. One restore is
 * staged at a time: BEGIN discards whatever was staged (an abandoned restore stays until the
 * next BEGIN), and a CHUNK or END whose id is not the staged one fails without touching it, so
 * of two restores racing the later BEGIN wins and the other one fails.
 *
 * END. The staged chunks must cover [0, total) exactly, carry the CRC that BEGIN announced and
 * pass the same check as a Raft snapshot; then, in the entry's transaction, every database is
 * emptied and loaded from the backup (zone__snapshot_load) and the staging cleared. A failed
 * END clears the staging and changes nothing else (its result says it failed, but that one
 * write commits). Everything here depends only on the entries, never on the host or the clock,
 * so every replica ends with the same catalog. The store's applied index stays the END
 * entry's index (the backup's own applied index is not this cluster's Raft index: the "skip
 * if not newer" rule is for Raft snapshots only), and every table index and the catalog index
 * become that index too (zone_store_apply: all tables changed), so blocking queries and DNS
 * caches see a change even when the backup's indexes are older than the catalog's. The
 * restored records keep their own indexes (they are the backup's data); meta "restored"
 * remembers the END index for reads that report one record's index (zone_meta.restored). */
#include "zone/internal.h"

#include <string.h>

#define HEADER_LEN (8 + 8 + 4) /* the header row's value; the keys are key.c's */

struct staged {
    uint64_t id, total;
    uint32_t crc;
};

bool zone__staging_row_ok(const uint8_t *k, size_t kn, size_t vn)
{
    switch (zone__staging_key(k, kn, NULL)) {
    case ZONE__STAGING_HEADER:
        return vn == HEADER_LEN;
    case ZONE__STAGING_CHUNK:
        return vn >= 1 && vn <= ZONE_RESTORE_CHUNK;
    default:
        return false;
    }
}

static int staging_put(struct zone_store *s, MDB_txn *t, const struct zone__key *k, const void *p,
                       size_t n)
{
    MDB_val key = zone__key_val(k), val = {.mv_size = n, .mv_data = (void *)p};
    return mdb_put(t, s->dbi[ZONE__DB_STAGING], &key, &val, 0) ? BASE_ESTORE : 0;
}

/* 0 with *st, BASE_ENOTFOUND when nothing is staged, BASE_ESTORE. */
static int header_get(struct zone_store *s, MDB_txn *t, struct staged *st)
{
    struct zone__key k;
    zone__key_staging_header(&k);
    MDB_val key = zone__key_val(&k), val;
    int rc = mdb_get(t, s->dbi[ZONE__DB_STAGING], &key, &val);
    if (rc == MDB_NOTFOUND)
        return BASE_ENOTFOUND;
    if (rc || val.mv_size != HEADER_LEN)
        return BASE_ESTORE;
    struct base_rd r;
    base_rd_init(&r, val.mv_data, val.mv_size);
    st->id = base_rd_u64(&r);
    st->total = base_rd_u64(&r);
    st->crc = base_rd_u32(&r);
    return 0;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static int begin(struct zone_store *s, MDB_txn *t, const struct zone_cmd *c)
{
    uint8_t v[HEADER_LEN];

    if (c->restore.id == 0 || c->restore.total == 0)
        return BASE_EPARSE;
    if (c->restore.total > ZONE_BACKUP_MAX)
        return BASE_ETOOBIG;
    if (mdb_drop(t, s->dbi[ZONE__DB_STAGING], 0))
        return BASE_ESTORE;
    put_le(v, c->restore.id, 8);
    put_le(v + 8, c->restore.total, 8);
    put_le(v + 16, c->restore.crc, 4);
    struct zone__key k;
    zone__key_staging_header(&k);
    return staging_put(s, t, &k, v, sizeof v);
}

/* The staged restore, when it is c's: 0, BASE_ENOTFOUND (none, or another one), BASE_ESTORE. */
static int staged_for(struct zone_store *s, MDB_txn *t, const struct zone_cmd *c, struct staged *st)
{
    int rc = header_get(s, t, st);
    if (rc)
        return rc;
    return st->id == c->restore.id && c->restore.id != 0 ? 0 : BASE_ENOTFOUND;
}

static int chunk(struct zone_store *s, MDB_txn *t, const struct zone_cmd *c)
{
    struct staged st;
    struct zone__key k;
    int rc;

    if ((rc = staged_for(s, t, c, &st)))
        return rc;
    if (c->restore.len == 0 || c->restore.len > ZONE_RESTORE_CHUNK ||
        c->restore.offset > st.total || c->restore.len > st.total - c->restore.offset)
        return BASE_EPARSE;
    zone__key_staging_chunk(&k, c->restore.offset);
    return staging_put(s, t, &k, c->restore.data, c->restore.len);
}

/* Reassembly: the chunks, in offset order, must follow each other from 0 with no gap or
 * overlap (a chunk sent twice at the same offset replaced itself). */
struct gather {
    uint8_t *buf;
    uint64_t total, at;
    bool bad;
};

static int gather_row(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct gather *g = ctx;
    uint64_t off = 0;

    if (zone__staging_key(k->mv_data, k->mv_size, &off) != ZONE__STAGING_CHUNK) {
        g->bad = true;
        return 1;
    }
    if (off != g->at || v->mv_size > g->total - g->at) {
        g->bad = true;
        return 1;
    }
    memcpy(g->buf + g->at, v->mv_data, v->mv_size);
    g->at += v->mv_size;
    return 0;
}

static int end(struct zone_store *s, MDB_txn *t, uint64_t idx, const struct zone_cmd *c,
               uint32_t *mask, int *result)
{
    struct staged st;
    struct gather g = {0};
    struct zone__key chunks;
    int rc;

    if ((rc = staged_for(s, t, c, &st)))
        return rc;
    g.total = st.total;
    g.buf = base_malloc(st.total);
    zone__key_staging_chunks(&chunks);
    rc = zone__scan(t, s->dbi[ZONE__DB_STAGING], &chunks, gather_row, &g);
    if (rc == BASE_ESTORE)
        goto out;
    bool valid = !g.bad && g.at == g.total && g.total >= 4;
    if (valid) {
        struct base_rd r;
        base_rd_init(&r, g.buf + g.total - 4, 4);
        valid = base_rd_u32(&r) == st.crc &&
                zone__snapshot_check(g.buf, g.total, s->max_key, NULL, NULL) == 0;
    }
    if (!valid) {
        /* this restore is over: clear it, report the failure, change nothing else */
        rc = mdb_drop(t, s->dbi[ZONE__DB_STAGING], 0) ? BASE_ESTORE : 0;
        *result = BASE_EPARSE;
        goto out;
    }
    /* the load empties every database, the staging included */
    if (!(rc = zone__snapshot_load(s, t, g.buf, g.total, false)) &&
        !(rc = zone__meta_write(t, s->dbi[ZONE__DB_META], ZONE__META_RESTORED, idx)))
        *mask = ZONE_TABLE_ALL;
out:
    base_free(g.buf);
    return rc;
}

int zone__restore_apply(struct zone_store *s, MDB_txn *t, uint64_t idx, const struct zone_cmd *c,
                        uint32_t *mask, int *result)
{
    switch (c->type) {
    case ZONE_CMD_RESTORE_BEGIN:
        return begin(s, t, c);
    case ZONE_CMD_RESTORE_CHUNK:
        return chunk(s, t, c);
    case ZONE_CMD_RESTORE_END:
        return end(s, t, idx, c, mask, result);
    default:
        return BASE_EPARSE;
    }
}
