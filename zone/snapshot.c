/* Snapshots of the whole store: Raft's (log compaction, catching up a follower) and backups.
 *
 * Format (integers little-endian, the base codec):
 *   "HRLDZSNP"  magic
 *   u32         version (4)
 *   u64         applied: the last Raft index the catalog holds
 *   u32         number of databases (9), then per database in zone__db_names order:
 *                 name (string), u64 count, count x (key bytes, value bytes) in key order
 *   u32         CRC-32C of everything before it
 * Version 1 had six databases (no addrs, the PTR index): such a snapshot still restores, and
 * the index is rebuilt from its nodes and services in the same transaction. Version 2 had
 * seven (no staging): it restores with the staging empty. Version 3 had eight (no sessions):
 * it restores with no sessions.
 * The rows are LMDB's own keys and values, so the snapshot is the store itself, read from one
 * transaction: it is consistent without stopping the writer (DESIGN.md 2.6). The records carry
 * their own checksum (record.c, version 2); a snapshot written before that carries version 1
 * records, which the check accepts and the load rewrites as version 2 (zone__rec_upgrade), so
 * every record loaded into the store has a checksum that was verified or computed on the way
 * in. A snapshot holding version 2 records is refused by a Herald that predates them.
 *
 * A backup (GET /v1/snapshot, `herald snapshot save`) is exactly this format, taken from the
 * caller's read transaction, with the staging database written empty: the bytes of a restore
 * in progress are not part of the catalog. Restoring a backup goes through Raft in pieces
 * (restore.c), and ends in zone__snapshot_load like a Raft snapshot does.
 *
 * Checking. A restore reads its input twice: the first pass checks everything (checksum,
 * layout, each key's length and order, each value as a record of its database) and changes
 * nothing; only then does one write transaction empty every database and load the rows, so a
 * bad snapshot leaves the store as it was and a good one replaces it atomically. Because the
 * rows were checked to be in order, they load with MDB_APPEND. The check says what is wrong
 * in one line, since an operator reads it (a 400 to `PUT /v1/snapshot`, `snapshot inspect`):
 * when the checksum does not match, a walk of the layout alone tells a file cut short
 * ("truncated") from one whose bytes changed ("damaged"). */
#include "zone/internal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static const char magic[8] = {'H', 'R', 'L', 'D', 'Z', 'S', 'N', 'P'};
#define SNAP_VERSION    4
#define SNAP_V1_DBS     6 /* version 1: no addrs, no staging */
#define SNAP_V2_DBS     7 /* version 2: no staging */
#define SNAP_V3_DBS     8 /* version 3: no sessions */
#define SNAP_CRC_LEN    4
#define SNAP_HEADER_LEN (sizeof magic + 4 + 8 + 4)

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), a table built once per call. */
/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), slicing by 8: eight tables let one
 * step take 8 bytes (about 6x the byte-at-a-time loop; a server restarting or catching up
 * checks every byte of a snapshot of tens of MB). The tables are built once, from any thread. */
static uint32_t crc_tables[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_tables[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_tables[t][i] =
                crc_tables[0][crc_tables[t - 1][i] & 0xff] ^ (crc_tables[t - 1][i] >> 8);
}

uint32_t zone__crc32c(const uint8_t *p, size_t n)
{
    return zone__crc32c_more(0, p, n);
}

uint32_t zone__crc32c_more(uint32_t prev, const uint8_t *p, size_t n)
{
    const uint32_t(*t)[256] = crc_tables;
    uint32_t crc = ~prev;

    pthread_once(&crc_once, crc_init);
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
              t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
    }
    while (n--)
        crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- writing --------------------------------------------------------------------------- */

struct snap_out {
    struct zone_read *r;
    enum zone__db d;
    struct base_buf *b;
    uint64_t count;
};

static int snap_row(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct snap_out *o = ctx;
    /* a damaged record does not travel: the snapshot fails naming it */
    if (zone__is_record_db(o->d) && !zone__rec_ok(v->mv_data, v->mv_size))
        return zone__damaged(o->r, o->d, k);
    base_buf_put_bytes(o->b, k->mv_data, k->mv_size);
    base_buf_put_bytes(o->b, v->mv_data, v->mv_size);
    o->count++;
    return 0;
}

static int serialize(struct zone_read *r, struct base_buf *out, bool with_staging)
{
    struct zone_store *s = r->s;
    uint64_t applied;
    size_t start = out->len;
    int rc;

    if ((rc = zone__meta_read(r->txn, s->dbi[ZONE__DB_META], ZONE__META_APPLIED, &applied)))
        return rc;
    base_buf_append(out, magic, sizeof magic);
    base_buf_put_u32(out, SNAP_VERSION);
    base_buf_put_u64(out, applied);
    base_buf_put_u32(out, ZONE__DB_COUNT);
    for (int i = 0; i < ZONE__DB_COUNT; i++) {
        struct snap_out o = {r, (enum zone__db)i, out, 0};
        base_buf_put_str(out, zone__db_names[i]);
        size_t at = out->len;
        base_buf_put_u64(out, 0); /* count, patched below */
        if (i == ZONE__DB_STAGING && !with_staging)
            continue;
        if ((rc = zone__scan(r->txn, s->dbi[i], NULL, snap_row, &o))) {
            out->len = start;
            return rc;
        }
        for (int k = 0; k < 8; k++)
            out->data[at + (size_t)k] = (uint8_t)(o.count >> (8 * k));
    }
    base_buf_put_u32(out, zone__crc32c(out->data + start, out->len - start));
    return 0;
}

int zone_store_snapshot(struct zone_store *s, struct base_buf *out)
{
    struct zone_read *r;
    int rc;

    if ((rc = zone_read_begin(s, &r)))
        return rc;
    rc = serialize(r, out, true);
    zone_read_end(r);
    return rc;
}

int zone_read_backup(struct zone_read *r, struct base_buf *out)
{
    return serialize(r, out, false);
}

/* ---- checking and loading -------------------------------------------------------------- */

/* LMDB's default order: bytes compared up to the shorter length, then the shorter first. */
static int key_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

static bool meta_key_is(const uint8_t *k, size_t kn, const char *name)
{
    struct zone__key mk;
    zone__key_meta(&mk, name);
    return zone__key_eq(&mk, k, kn);
}

static int check_value(enum zone__db d, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn,
                       struct base_arena *a, struct base_buf *tmp)
{
    union zone__rec u;

    base_arena_reset(a);
    if (zone__is_record_db(d)) { /* a version 1 record (an older snapshot) is checked upgraded */
        if (zone__rec_upgrade(v, vn, tmp) < 0)
            return BASE_EPARSE;
        return zone__rec_decode(d, tmp->data, tmp->len, false, a, &u);
    }
    switch (d) {
    case ZONE__DB_NODES:
    case ZONE__DB_SERVICES:
    case ZONE__DB_CHECKS:
    case ZONE__DB_KV:
    case ZONE__DB_SESSIONS:
        break; /* above */
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
        return vn == 8 ? 0 : BASE_EPARSE;
    case ZONE__DB_STAGING:
        return zone__staging_row_ok(k, kn, vn) ? 0 : BASE_EPARSE;
    case ZONE__DB_COUNT:
        break;
    }
    return BASE_EPARSE;
}

enum walk_mode {
    WALK_LAYOUT, /* lengths and counts only: does the input hold what it announces? */
    WALK_CHECK,  /* everything, into info; errmsg names the first problem */
    WALK_LOAD,   /* rows into t (the input passed WALK_CHECK) */
};

struct walk {
    enum walk_mode mode;
    size_t max_key;                  /* CHECK */
    struct zone_snapshot_info *info; /* CHECK */
    char *errmsg;                    /* CHECK, LAYOUT */
    struct zone_store *s;            /* LOAD */
    MDB_txn *t;                      /* LOAD */
    bool with_staging;               /* LOAD */
    int n_dbs;                       /* out: how many databases the version has */
};

static int dbs_of(uint32_t version)
{
    return version == SNAP_VERSION ? ZONE__DB_COUNT
           : version == 3          ? SNAP_V3_DBS
           : version == 2          ? SNAP_V2_DBS
           : version == 1          ? SNAP_V1_DBS
                                   : -1;
}

/* The rows run past the end. With a matching checksum the file is whole but malformed. */
static int truncated(struct walk *w, size_t n)
{
    if (w->mode != WALK_LAYOUT)
        return base_errf(w->errmsg, BASE_EPARSE,
                         "snapshot is damaged: its layout runs past its %zu bytes", n);
    return base_errf(w->errmsg, BASE_EPARSE,
                     "snapshot is truncated: its %zu bytes end before the content it announces", n);
}

/* Walks the snapshot (whose magic, size and version the caller checked). */
static int walk(const uint8_t *p, size_t n, struct walk *w)
{
    struct base_rd r;
    struct base_arena a;
    struct base_buf tmp;
    uint64_t applied, meta_applied = 0;
    bool has_meta_applied = false;
    int rc = 0;

    base_rd_init(&r, p + sizeof magic, n - sizeof magic - SNAP_CRC_LEN);
    uint32_t version = base_rd_u32(&r);
    w->n_dbs = dbs_of(version);
    applied = base_rd_u64(&r);
    if (base_rd_u32(&r) != (uint32_t)w->n_dbs || r.err)
        return base_errf(w->errmsg, BASE_EPARSE, "snapshot header is damaged");
    if (w->info) {
        memset(w->info, 0, sizeof *w->info);
        w->info->version = version;
        w->info->applied = applied;
    }

    base_arena_init(&a);
    base_buf_init(&tmp);
    for (int d = 0; d < w->n_dbs && !rc; d++) {
        const char *dname = zone__db_names[d];
        size_t nn;
        const uint8_t *name = base_rd_bytes(&r, &nn);
        uint64_t count = base_rd_u64(&r);
        const uint8_t *prev = NULL;
        size_t prev_n = 0;

        if (r.err || count > r.left / 8) {
            rc = truncated(w, n);
            break;
        }
        if (nn != strlen(dname) || memcmp(name, dname, nn) != 0) {
            rc = base_errf(w->errmsg, BASE_EPARSE, "snapshot is damaged: database %d is not \"%s\"",
                           d, dname);
            break;
        }
        for (uint64_t i = 0; i < count && !rc; i++) {
            size_t kn, vn;
            const uint8_t *k = base_rd_bytes(&r, &kn);
            const uint8_t *v = base_rd_bytes(&r, &vn);
            if (r.err) {
                rc = truncated(w, n);
                break;
            }
            if (w->mode == WALK_LAYOUT)
                continue;
            if (w->mode == WALK_LOAD) {
                if (d == ZONE__DB_STAGING && !w->with_staging)
                    continue;
                MDB_val key = {.mv_size = kn, .mv_data = (void *)k};
                MDB_val val = {.mv_size = vn, .mv_data = (void *)v};
                if (zone__is_record_db(d)) { /* checked: every record upgrades */
                    if (zone__rec_upgrade(v, vn, &tmp) < 0) {
                        rc = BASE_ESTORE;
                        break;
                    }
                    val.mv_size = tmp.len;
                    val.mv_data = tmp.data;
                }
                rc = mdb_put(w->t, w->s->dbi[d], &key, &val, MDB_APPEND) ? BASE_ESTORE : 0;
                continue;
            }
            const char *bad = NULL;
            if (kn == 0 || kn > w->max_key)
                bad = kn ? "key too long" : "empty key";
            else if (prev && key_cmp(prev, prev_n, k, kn) >= 0)
                bad = "key out of order";
            else if (check_value((enum zone__db)d, k, kn, v, vn, &a, &tmp))
                bad = "malformed value";
            if (bad) {
                rc = base_errf(w->errmsg, BASE_EPARSE,
                               "snapshot is damaged: database \"%s\" row %" PRIu64 ": %s", dname,
                               i + 1, bad);
                break;
            }
            prev = k;
            prev_n = kn;
            if (d == ZONE__DB_META && meta_key_is(k, kn, ZONE__META_APPLIED)) {
                meta_applied = base_le64(v);
                has_meta_applied = true;
            } else if (d == ZONE__DB_META && meta_key_is(k, kn, ZONE__META_INDEX)) {
                w->info->index = base_le64(v);
            }
        }
        if (!rc && w->info) {
            int t = d == ZONE__DB_NODES      ? ZONE_TABLE_NODES
                    : d == ZONE__DB_SERVICES ? ZONE_TABLE_SERVICES
                    : d == ZONE__DB_CHECKS   ? ZONE_TABLE_CHECKS
                    : d == ZONE__DB_KV       ? ZONE_TABLE_KV
                    : d == ZONE__DB_SESSIONS ? ZONE_TABLE_SESSIONS
                                             : -1;
            if (t >= 0)
                w->info->rows[t] = count;
        }
    }
    base_arena_close(&a);
    base_buf_free(&tmp);
    if (!rc && r.left)
        rc = base_errf(w->errmsg, BASE_EPARSE, "snapshot is damaged: %zu bytes past its content",
                       r.left);
    /* the header and the meta row come from the same transaction */
    if (!rc && w->mode == WALK_CHECK && (has_meta_applied ? meta_applied : 0) != applied)
        rc = base_errf(w->errmsg, BASE_EPARSE,
                       "snapshot is damaged: its header and its meta disagree on the index");
    return rc;
}

int zone__snapshot_check(const uint8_t *p, size_t n, size_t max_key,
                         struct zone_snapshot_info *info, char *errmsg)
{
    struct zone_snapshot_info scratch;
    struct walk w = {.mode = WALK_CHECK, .max_key = max_key, .errmsg = errmsg};

    w.info = info ? info : &scratch;
    if (n == 0)
        return base_errf(errmsg, BASE_EPARSE, "snapshot is empty");
    if (memcmp(p, magic, n < sizeof magic ? n : sizeof magic) != 0)
        return base_errf(errmsg, BASE_EPARSE, "not a Herald snapshot (bad magic)");
    if (n < SNAP_HEADER_LEN + SNAP_CRC_LEN)
        return base_errf(errmsg, BASE_EPARSE, "snapshot is truncated: %zu bytes, not even a header",
                         n);

    struct base_rd cr, vr;
    base_rd_init(&cr, p + n - SNAP_CRC_LEN, SNAP_CRC_LEN);
    base_rd_init(&vr, p + sizeof magic, 4);
    uint32_t crc = base_rd_u32(&cr), version = base_rd_u32(&vr);
    bool known = dbs_of(version) > 0;
    if (crc != zone__crc32c(p, n - SNAP_CRC_LEN)) {
        /* cut short, or changed? the layout tells (when the version is one we can read) */
        struct walk lw = {.mode = WALK_LAYOUT, .errmsg = errmsg};
        if (known && walk(p, n, &lw))
            return BASE_EPARSE;
        return base_errf(errmsg, BASE_EPARSE, "snapshot is damaged: checksum mismatch");
    }
    if (!known)
        return base_errf(errmsg, BASE_EPARSE,
                         "unsupported snapshot version %" PRIu32 " (this Herald reads 1 to %d)",
                         version, SNAP_VERSION);
    int rc = walk(p, n, &w);
    if (!rc)
        w.info->crc = crc;
    return rc;
}

int zone_snapshot_check(const void *p, size_t n, struct zone_snapshot_info *info, char *errmsg)
{
    /* LMDB's compile-time key limit, which the store reports (mdb_env_get_maxkeysize) */
    return zone__snapshot_check(p, n, ZONE_KV_MAX_KEY, info, errmsg);
}

int zone__snapshot_load(struct zone_store *s, MDB_txn *t, const uint8_t *p, size_t n,
                        bool with_staging)
{
    struct walk w = {.mode = WALK_LOAD, .s = s, .t = t, .with_staging = with_staging};
    int rc;

    for (int d = 0; d < ZONE__DB_COUNT; d++)
        if (mdb_drop(t, s->dbi[d], 0))
            return BASE_ESTORE;
    if ((rc = walk(p, n, &w)))
        return rc == BASE_EPARSE ? BASE_ESTORE : rc; /* it was checked: the store failed */
    if (w.n_dbs < SNAP_V2_DBS)
        rc = zone__addrs_rebuild(s, t);
    if (!rc) /* every record was written with its checksum */
        rc = zone__meta_write(t, s->dbi[ZONE__DB_META], ZONE__META_FORMAT, ZONE__FORMAT);
    if (!rc)
        rc = zone__meta_seal(t, s->dbi[ZONE__DB_META]);
    return rc;
}

int zone_store_restore(struct zone_store *s, const void *p, size_t n, bool *skipped)
{
    struct zone_snapshot_info info;
    MDB_txn *t;
    uint64_t stored;
    int rc;

    BASE_ASSERT_LOOP();
    *skipped = false;
    if (mdb_txn_begin(s->env, NULL, 0, &t))
        return BASE_ESTORE;
    if ((rc = zone__meta_read(t, s->dbi[ZONE__DB_META], ZONE__META_APPLIED, &stored)))
        goto fail;
    /* A restarting server's catalog is usually at or past its latest snapshot: say so from
     * the header's applied index before checking every byte of a snapshot that will not be
     * used (the check was half of the time to serve after a restart with 100k entries). */
    if (n >= SNAP_HEADER_LEN && memcmp(p, magic, sizeof magic) == 0 &&
        dbs_of(base_le32(p + sizeof magic)) > 0 && base_le64(p + sizeof magic + 4) <= stored) {
        mdb_txn_abort(t);
        *skipped = true;
        return 0;
    }
    if ((rc = zone__snapshot_check(p, n, s->max_key, &info, NULL)))
        goto fail;
    if (info.applied <= stored) { /* the store is already at or past this snapshot */
        mdb_txn_abort(t);
        *skipped = true;
        return 0;
    }
    if ((rc = zone__snapshot_load(s, t, p, n, true)))
        goto fail;
    if (mdb_txn_commit(t))
        return BASE_ESTORE;
    return 0;
fail:
    mdb_txn_abort(t);
    return rc;
}
