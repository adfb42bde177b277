/* LMDB keys, prefix scans and the meta database's u64 values.
 *
 * Keys are built in a fixed buffer (no allocation on the DNS path). Names are lowercased
 * (ASCII) where zone.h says a lookup is case-insensitive; components are joined with \0, which
 * no stored name contains (the record codec rejects inner NULs), so "a" \0 ... sorts before
 * "a-b" \0 ... and a prefix ending in \0 selects exactly one node's or one name's rows. */
#include "zone/internal.h"

#include <string.h>

const char *const zone__db_names[ZONE__DB_COUNT] = {
    [ZONE__DB_NODES] = "nodes",   [ZONE__DB_SERVICES] = "services",
    [ZONE__DB_SVCIDX] = "svcidx", [ZONE__DB_CHECKS] = "checks",
    [ZONE__DB_KV] = "kv",         [ZONE__DB_META] = "meta",
    [ZONE__DB_ADDRS] = "addrs",   [ZONE__DB_STAGING] = "staging",
};

const char *const zone__table_keys[ZONE_TABLE_COUNT] = {
    [ZONE_TABLE_NODES] = "t.nodes",
    [ZONE_TABLE_SERVICES] = "t.services",
    [ZONE_TABLE_CHECKS] = "t.checks",
    [ZONE_TABLE_KV] = "t.kv",
};

void zone__key_init(struct zone__key *k)
{
    k->n = 0;
    k->over = false;
}

static void key_put(struct zone__key *k, uint8_t c)
{
    if (k->n == sizeof k->b) {
        k->over = true;
        return;
    }
    k->b[k->n++] = c;
}

void zone__key_lower(struct zone__key *k, const char *s)
{
    for (; *s; s++) {
        uint8_t c = (uint8_t)*s;
        key_put(k, c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c);
    }
}

void zone__key_raw(struct zone__key *k, const char *s)
{
    for (; *s; s++)
        key_put(k, (uint8_t)*s);
}

void zone__key_sep(struct zone__key *k)
{
    key_put(k, 0);
}

MDB_val zone__key_val(const struct zone__key *k)
{
    MDB_val v = {.mv_size = k->n, .mv_data = (void *)k->b};
    return v;
}

int zone__scan(MDB_txn *t, MDB_dbi dbi, const void *prefix, size_t plen, zone__scan_fn fn,
               void *ctx)
{
    MDB_cursor *c;
    MDB_val k = {.mv_size = plen, .mv_data = (void *)prefix}, v;
    int rc;

    /* no key is longer than LMDB's maximum, so neither is a prefix of one */
    if (plen > (size_t)mdb_env_get_maxkeysize(mdb_txn_env(t)))
        return 0;
    if (mdb_cursor_open(t, dbi, &c))
        return BASE_ESTORE;
    rc = plen ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (plen && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
            break;
        rc = fn(ctx, &k, &v);
        if (rc)
            goto out;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    rc = rc == 0 || rc == MDB_NOTFOUND ? 0 : BASE_ESTORE;
out:
    mdb_cursor_close(c);
    return rc;
}

int zone__meta_read(MDB_txn *t, MDB_dbi dbi, const char *key, uint64_t *v)
{
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key}, d;
    int rc = mdb_get(t, dbi, &k, &d);

    *v = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc || d.mv_size != 8)
        return BASE_ESTORE;
    const uint8_t *p = d.mv_data;
    for (int i = 7; i >= 0; i--)
        *v = *v << 8 | p[i];
    return 0;
}

int zone__meta_write(MDB_txn *t, MDB_dbi dbi, const char *key, uint64_t v)
{
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key}, d;
    uint8_t p[8];

    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    d.mv_size = sizeof p;
    d.mv_data = p;
    return mdb_put(t, dbi, &k, &d, 0) ? BASE_ESTORE : 0;
}

/* The checksum of the meta rows but the checksum's own; *stored gets that row (has: present). */
static int meta_crc(MDB_txn *t, MDB_dbi dbi, uint32_t *crc, bool *has, uint64_t *stored)
{
    MDB_cursor *c;
    MDB_val k, v;
    size_t crc_n = strlen(ZONE__META_CRC);

    *crc = 0;
    *has = false;
    *stored = 0;
    if (mdb_cursor_open(t, dbi, &c))
        return BASE_ESTORE;
    int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size == crc_n && memcmp(k.mv_data, ZONE__META_CRC, crc_n) == 0) {
            *has = v.mv_size == 8;
            if (*has)
                *stored = base_le64(v.mv_data);
            continue;
        }
        uint8_t kn = (uint8_t)k.mv_size;
        *crc = zone__crc32c_more(*crc, &kn, 1);
        *crc = zone__crc32c_more(*crc, k.mv_data, k.mv_size);
        *crc = zone__crc32c_more(*crc, v.mv_data, v.mv_size);
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : BASE_ESTORE;
}

int zone__meta_seal(MDB_txn *t, MDB_dbi dbi)
{
    uint32_t crc;
    bool has;
    uint64_t stored;
    int rc = meta_crc(t, dbi, &crc, &has, &stored);
    return rc ? rc : zone__meta_write(t, dbi, ZONE__META_CRC, crc);
}

int zone__meta_verify(MDB_txn *t, MDB_dbi dbi)
{
    uint32_t crc;
    bool has;
    uint64_t stored;
    int rc = meta_crc(t, dbi, &crc, &has, &stored);
    if (rc)
        return rc;
    return has && stored == crc ? 0 : BASE_EDAMAGED;
}

int zone__meta_all(struct zone_store *s, MDB_txn *t, struct zone_meta *m)
{
    MDB_dbi dbi = s->dbi[ZONE__DB_META];
    int rc = zone__meta_verify(t, dbi);

    if (!rc)
        rc = zone__meta_read(t, dbi, ZONE__META_APPLIED, &m->applied);

    if (!rc)
        rc = zone__meta_read(t, dbi, ZONE__META_INDEX, &m->index);
    for (int i = 0; i < ZONE_TABLE_COUNT && !rc; i++)
        rc = zone__meta_read(t, dbi, zone__table_keys[i], &m->table_index[i]);
    if (!rc)
        rc = zone__meta_read(t, dbi, ZONE__META_RESTORED, &m->restored);
    return rc;
}
