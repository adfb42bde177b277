/* Damage: a catalog whose bytes changed on disk is never served as data.
 *
 * Every record carries a CRC-32C (record.c, version 2), checked by every decoder; a reader that
 * meets a record that fails it (or does not decode) reports it here: the record is named
 * ("kv/foo", "services/node1/web"), counted in the store (zone_store_damaged_count) and logged
 * at most once a second, and the read returns BASE_EDAMAGED; zone_read_damaged names the first
 * such record of the read, so that the HTTP layer answers 500 naming it rather than a partial
 * listing, and the DNS answer is SERVFAIL.
 *
 * At open (zone__store_verify_file before any database is opened, zone__store_check after):
 *   - the data file must hold LMDB's last used page: a file cut short would be mapped past its
 *     end and the first read of a missing page would kill the process (SIGBUS);
 *   - a store written before record checksums (no meta "format") is migrated once: its records
 *     are version 1 and get their checksum (zone__rec_upgrade) in one write transaction;
 *   - every record is walked: its checksum and decoding, its key against its content, and the
 *     indexes against the records (each service has its svcidx row, each IP address of a node
 *     or service its addrs row with the right value, and neither index has rows beyond those);
 *     the meta rows (applied index, table indexes) against their own checksum row; every row
 *     must lie inside the file and be found again by a lookup of its key (a damaged branch
 *     page routes lookups astray while a scan still sees every row). 100k KV records take
 *     about 30 ms, 100k nodes each with a service and a check about 200 ms.
 * What remains unchecked is LMDB's own page structure (page headers, node offsets): a damaged
 * one can still crash LMDB inside mdb_cursor_get (2 in 3000 random bit flips of a small
 * catalog in a test harness; none of the others were served).
 * A failure returns BASE_EDAMAGED with a message naming the file and the record; the caller
 * (admin/agent.c) decides what a damaged catalog means for this server. */
#include "zone/internal.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define LOG_EVERY_MS 1000

/* "db/part/part": the key's \0 separators as '/', bytes outside printable ASCII as '?'. */
void zone__rec_name(enum zone__db d, const void *key, size_t kn, char *out, size_t cap)
{
    const uint8_t *k = key;
    size_t n = (size_t)snprintf(out, cap, "%s/", zone__db_names[d]);

    for (size_t i = 0; i < kn && n + 4 < cap; i++) {
        uint8_t c = k[i];
        out[n++] = c == 0 ? '/' : (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (n + 4 >= cap && n < cap) {
        n = cap - 4;
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n < cap ? n : cap - 1] = 0;
}

int zone__damaged(struct zone_read *r, enum zone__db d, const MDB_val *k)
{
    struct zone_store *s = r->s;
    char name[ZONE__DAMAGED_NAME];

    zone__rec_name(d, k->mv_data, k->mv_size, name, sizeof name);
    if (!r->damaged[0])
        memcpy(r->damaged, name, sizeof name);
    atomic_fetch_add(&s->n_damaged, 1);
    uint64_t now = base_now_ms(), last = atomic_load(&s->damaged_log_ms);
    if ((last == 0 || now - last >= LOG_EVERY_MS) &&
        atomic_compare_exchange_strong(&s->damaged_log_ms, &last, now ? now : 1))
        LOG_ERR("zone", "catalog record %s failed its checksum (%" PRIu64 " damaged reads so far)",
                name, atomic_load(&s->n_damaged));
    return BASE_EDAMAGED;
}

const char *zone_read_damaged(const struct zone_read *r)
{
    return r && r->damaged[0] ? r->damaged : NULL;
}

uint64_t zone_store_damaged_count(struct zone_store *s)
{
    return atomic_load(&s->n_damaged);
}

/* ---- at open --------------------------------------------------------------------------- */
int zone__store_verify_file(MDB_env *env, const char *dir, char *errmsg)
{
    MDB_envinfo info;
    MDB_stat st;
    struct stat fst;
    char path[4096];

    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (mdb_env_info(env, &info) || mdb_env_stat(env, &st))
        return base_errf(errmsg, BASE_EDAMAGED, "catalog %s: cannot read its header", path);
    if (stat(path, &fst) != 0)
        return base_errf(errmsg, BASE_ESTORE, "catalog %s: stat failed", path);
    uint64_t need = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    if ((uint64_t)fst.st_size < need)
        return base_errf(errmsg, BASE_EDAMAGED,
                         "catalog %s is truncated: %" PRIu64
                         " bytes, its last page ends at %" PRIu64,
                         path, (uint64_t)fst.st_size, need);
    return 0;
}

static int damaged_at(char *errmsg, const char *dir, enum zone__db d, const MDB_val *k,
                      const char *what)
{
    char name[ZONE__DAMAGED_NAME];
    zone__rec_name(d, k->mv_data, k->mv_size, name, sizeof name);
    return base_errf(errmsg, BASE_EDAMAGED, "catalog %s/data.mdb: record %s %s", dir, name, what);
}

static int lmdb_damaged(char *errmsg, const char *dir, enum zone__db d, int rc)
{
    return base_errf(errmsg, BASE_EDAMAGED, "catalog %s/data.mdb: database %s: %s", dir,
                     zone__db_names[d], mdb_strerror(rc));
}

int zone__store_migrate(struct zone_store *s, MDB_txn *t, const char *dir, char *errmsg)
{
    uint64_t format;
    struct base_buf b;
    size_t n = 0;
    int rc = 0;

    if (zone__meta_read(t, s->dbi[ZONE__DB_META], ZONE__META_FORMAT, &format))
        return base_errf(errmsg, BASE_EDAMAGED, "catalog %s/data.mdb: meta \"format\" damaged",
                         dir);
    if (format >= ZONE__FORMAT)
        return 0;
    base_buf_init(&b);
    for (int d = 0; d < ZONE__DB_COUNT && !rc; d++) {
        MDB_cursor *c;
        MDB_val k, v;
        if (!zone__is_record_db(d))
            continue;
        if ((rc = mdb_cursor_open(t, s->dbi[d], &c))) {
            rc = lmdb_damaged(errmsg, dir, (enum zone__db)d, rc);
            break;
        }
        int mrc = zone__cursor_first(c, NULL, &k, &v);
        for (; mrc == 0; mrc = zone__cursor_next(c, NULL, &k, &v)) {
            int up = zone__rec_upgrade(v.mv_data, v.mv_size, &b);
            if (up < 0) {
                rc = damaged_at(errmsg, dir, (enum zone__db)d, &k, "is not a record");
                break;
            }
            if (up == 0)
                continue;
            /* k points into the page the put rewrites: a value that grows is deleted and
             * inserted again, from a copy of its key */
            struct zone__key kb;
            zone__key_copy(&kb, &k);
            if (kb.over) {
                rc = damaged_at(errmsg, dir, (enum zone__db)d, &k, "has a key over the limit");
                break;
            }
            MDB_val kc = zone__key_val(&kb);
            MDB_val nv = {.mv_size = b.len, .mv_data = b.data};
            if ((mrc = mdb_cursor_put(c, &kc, &nv, MDB_CURRENT)))
                break;
            n++;
        }
        if (!rc && mrc && mrc != MDB_NOTFOUND)
            rc = lmdb_damaged(errmsg, dir, (enum zone__db)d, mrc);
        mdb_cursor_close(c);
    }
    base_buf_free(&b);
    if (!rc && (zone__meta_write(t, s->dbi[ZONE__DB_META], ZONE__META_FORMAT, ZONE__FORMAT) ||
                zone__meta_seal(t, s->dbi[ZONE__DB_META])))
        rc = base_errf(errmsg, BASE_ESTORE, "catalog %s: cannot write its format", dir);
    if (!rc && n)
        LOG_INFO("zone", "catalog %s: %zu records upgraded to checksummed records (format %d)", dir,
                 n, ZONE__FORMAT);
    return rc;
}

/* What is wrong with the record (k, v) of database d, or NULL: its checksum, its decoding,
 * its key against its content, and the index rows it implies (svcidx for a service, addrs for
 * a node's or service's IP address; *n_addrs counts the addrs rows found). */
static const char *record_problem(struct zone_store *s, MDB_txn *t, enum zone__db d,
                                  const MDB_val *k, const MDB_val *v, struct base_arena *a,
                                  size_t *n_addrs)
{
    struct zone__key want, ix;
    union zone__rec u;
    MDB_dbi addrs = s->dbi[ZONE__DB_ADDRS];
    int rc = 0;

    if (!zone__is_record_db(d))
        return NULL;
    if (!zone__rec_ok(v->mv_data, v->mv_size))
        return "failed its checksum";
    if (zone__rec_decode(d, v->mv_data, v->mv_size, false, a, &u))
        return "does not decode";
    zone__key_of_rec(&want, d, &u);
    if (d == ZONE__DB_NODES) {
        rc = zone__addrs_has(t, addrs, s->max_key, u.n.address, u.n.name, "", NULL);
    } else if (d == ZONE__DB_SERVICES) {
        zone__key_svcidx(&ix, u.s.name, u.s.node, u.s.id);
        MDB_val ik = zone__key_val(&ix), iv;
        if (!zone__key_fits(&ix, s->max_key) ||
            mdb_get(t, s->dbi[ZONE__DB_SVCIDX], &ik, &iv) != 0 || iv.mv_size != 0)
            return "has no row in the service index";
        rc = zone__addrs_has(t, addrs, s->max_key, u.s.address, u.s.node, u.s.id, u.s.name);
    }
    if (!zone__key_eq(&want, k->mv_data, k->mv_size))
        return "does not match its key";
    if (rc < 0)
        return "has no matching row in the address index";
    *n_addrs += (size_t)rc;
    return NULL;
}

/* Where LMDB mapped the data file (dev, ino): LMDB does not say (mdb_env_info's me_mapaddr is
 * the address asked for with MDB_FIXEDMAP), the kernel does. NULL when not found. */
static const uint8_t *map_base(dev_t dev, ino_t ino)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    const uint8_t *base = NULL;

    if (!f)
        return NULL;
    while (!base && fgets(line, sizeof line, f)) {
        unsigned long long start, end, off, inode;
        unsigned maj, mnr;
        char perms[8];
        if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &start, &end, perms, &off, &maj, &mnr,
                   &inode) == 7 &&
            inode == (unsigned long long)ino && off == 0 && makedev(maj, mnr) == dev)
            base = (const uint8_t *)(uintptr_t)start;
    }
    fclose(f);
    return base;
}

/* Whether the bytes of x lie inside the file's mapping [lo, hi): a damaged size in a page
 * could make a row reach past the end of the file, where a read is a SIGBUS. */
static bool in_file(const MDB_val *x, const uint8_t *lo, const uint8_t *hi)
{
    const uint8_t *p = x->mv_data;
    if (!x->mv_size || !lo)
        return true;
    return p >= lo && p < hi && x->mv_size <= (size_t)(hi - p);
}

int zone__store_check(struct zone_store *s, const char *dir, char *errmsg)
{
    MDB_txn *t;
    struct base_arena a;
    MDB_stat st_sv, st_ix, st_ad;
    struct stat fst;
    char path[4096];
    size_t n_addrs = 0;
    int rc = 0;

    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (stat(path, &fst) != 0)
        return base_errf(errmsg, BASE_ESTORE, "catalog %s: cannot stat it", path);
    /* without /proc (pages.c has bounded every node by its page already) the rows go
     * unbounded here */
    const uint8_t *lo = map_base(fst.st_dev, fst.st_ino);
    const uint8_t *hi = lo ? lo + fst.st_size : (const uint8_t *)UINTPTR_MAX;
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t)))
        return base_errf(errmsg, BASE_ESTORE, "catalog %s: %s", dir, mdb_strerror(rc));
    base_arena_init(&a);
    for (int d = 0; d < ZONE__DB_COUNT && !rc; d++) {
        MDB_cursor *c;
        MDB_val k, v;
        if ((rc = mdb_cursor_open(t, s->dbi[d], &c))) {
            rc = lmdb_damaged(errmsg, dir, (enum zone__db)d, rc);
            break;
        }
        int mrc = zone__cursor_first(c, NULL, &k, &v);
        for (; mrc == 0 && !rc; mrc = zone__cursor_next(c, NULL, &k, &v)) {
            const char *bad = NULL;
            base_arena_reset(&a);
            if (!in_file(&k, lo, hi) || !in_file(&v, lo, hi)) {
                rc = base_errf(errmsg, BASE_EDAMAGED,
                               "catalog %s: database %s has a row that reaches past the end "
                               "of the file",
                               path, zone__db_names[d]);
                break;
            }
            /* a lookup by key must land on the row the scan found: a damaged separator key
             * in a branch page routes lookups elsewhere while scans still see every row */
            MDB_val found;
            if (mdb_get(t, s->dbi[d], &k, &found) != 0 || found.mv_data != v.mv_data)
                bad = "cannot be found by its key (a damaged index page)";
            else if (zone__is_record_db(d))
                bad = record_problem(s, t, (enum zone__db)d, &k, &v, &a, &n_addrs);
            else if (d == ZONE__DB_META && v.mv_size != 8)
                bad = "is not 8 bytes";
            if (bad)
                rc = damaged_at(errmsg, dir, (enum zone__db)d, &k, bad);
        }
        if (!rc && mrc && mrc != MDB_NOTFOUND)
            rc = lmdb_damaged(errmsg, dir, (enum zone__db)d, mrc);
        mdb_cursor_close(c);
    }
    if (!rc && zone__meta_verify(t, s->dbi[ZONE__DB_META]))
        rc = base_errf(errmsg, BASE_EDAMAGED,
                       "catalog %s/data.mdb: the meta rows (applied and table indexes) failed "
                       "their checksum",
                       dir);
    /* every index row was found from a record above: as many rows as found means no other */
    if (!rc && (mdb_stat(t, s->dbi[ZONE__DB_SERVICES], &st_sv) ||
                mdb_stat(t, s->dbi[ZONE__DB_SVCIDX], &st_ix) ||
                mdb_stat(t, s->dbi[ZONE__DB_ADDRS], &st_ad)))
        rc = base_errf(errmsg, BASE_EDAMAGED, "catalog %s/data.mdb: cannot count its rows", dir);
    if (!rc && st_sv.ms_entries != st_ix.ms_entries)
        rc = base_errf(errmsg, BASE_EDAMAGED,
                       "catalog %s/data.mdb: the service index has %zu rows for %zu services", dir,
                       st_ix.ms_entries, st_sv.ms_entries);
    if (!rc && st_ad.ms_entries != n_addrs)
        rc = base_errf(errmsg, BASE_EDAMAGED,
                       "catalog %s/data.mdb: the address index has %zu rows for %zu addresses", dir,
                       st_ad.ms_entries, n_addrs);
    base_arena_close(&a);
    mdb_txn_abort(t);
    return rc;
}

int zone_store_discard(const char *dir, char *errmsg)
{
    char from[4096], to[4096];

    snprintf(from, sizeof from, "%s/data.mdb", dir);
    snprintf(to, sizeof to, "%s/data.mdb.damaged", dir);
    if (rename(from, to) != 0)
        return base_errf(errmsg, -errno, "catalog %s: rename to %s: %s", from, to, strerror(errno));
    snprintf(from, sizeof from, "%s/lock.mdb", dir);
    if (unlink(from) != 0 && errno != ENOENT)
        return base_errf(errmsg, -errno, "catalog %s: %s", from, strerror(errno));
    LOG_WARN("zone", "catalog %s/data.mdb set aside as %s", dir, to);
    return 0;
}
