/* The LMDB key layout: every key of every database is built here, and every prefix scan starts
 * here (zone__scan, or zone__cursor_first/_next on a cursor the caller keeps).
 *
 *   database  key                                                  value
 *   nodes     lower(node)                                          node record
 *   services  lower(node) \0 service id                            service record
 *   checks    lower(node) \0 check id                              check record
 *   svcidx    lower(service name) \0 lower(node) \0 service id     empty
 *   kv        the key as given (case-sensitive)                    kv record
 *   addrs     family (4 or 6), the address's 4 or 16 bytes,        the service name and its
 *             lower(node) \0 service id ("" for the node's own)    NUL, empty for a node
 *   meta      a row name: "applied", "index", "restored",          u64, little-endian
 *             "format", "crc", "t.<table>" (zone__table_keys)
 *   staging   "h" (the staged restore's header), or 'c' and the    restore.c's header, or the
 *             chunk's offset as u64 big-endian (so in order)       chunk's bytes
 *   sessions  the session's id as given                            session record
 *
 * Prefixes: lower(node) \0 selects one node's services or checks; lower(name) \0 one
 * service's instances in svcidx, and past that prefix an svcidx key is the services key of
 * the instance; the family and address bytes select the owners of one address; a kv key
 * selects itself and the keys below it; 'c' selects the staged chunks.
 *
 * Keys are built in a fixed buffer (no allocation on the DNS path). Names are lowercased
 * (ASCII) where zone.h says a lookup is case-insensitive; components are joined with \0, which
 * no stored name contains (the record codec rejects inner NULs), so "a" \0 ... sorts before
 * "a-b" \0 ... and a prefix ending in \0 selects exactly one node's or one name's rows. An
 * addrs key begins with the family byte so that an IPv4 prefix (4 bytes) never selects an IPv6
 * address that starts with the same bytes. A key that outgrows the buffer is flagged (`over`)
 * and matches no row. */
#include "zone/internal.h"

#include <string.h>

const char *const zone__db_names[ZONE__DB_COUNT] = {
    [ZONE__DB_NODES] = "nodes",
    [ZONE__DB_SERVICES] = "services",
    [ZONE__DB_SVCIDX] = "svcidx",
    [ZONE__DB_CHECKS] = "checks",
    [ZONE__DB_KV] = "kv",
    [ZONE__DB_META] = "meta",
    [ZONE__DB_ADDRS] = "addrs",
    [ZONE__DB_STAGING] = "staging",
    [ZONE__DB_SESSIONS] = "sessions",
};

const char *const zone__table_keys[ZONE_TABLE_COUNT] = {
    [ZONE_TABLE_NODES] = "t.nodes",       [ZONE_TABLE_SERVICES] = "t.services",
    [ZONE_TABLE_CHECKS] = "t.checks",     [ZONE_TABLE_KV] = "t.kv",
    [ZONE_TABLE_SESSIONS] = "t.sessions",
};

#define STAGING_HEADER 'h'
#define STAGING_CHUNK  'c'

/* ---- the pieces ------------------------------------------------------------------------ */

static void key_init(struct zone__key *k)
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

static void key_bytes(struct zone__key *k, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        key_put(k, ((const uint8_t *)p)[i]);
}

/* s lowercased (ASCII) */
static void key_lower(struct zone__key *k, const char *s)
{
    for (; *s; s++) {
        uint8_t c = (uint8_t)*s;
        key_put(k, c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c);
    }
}

static void key_raw(struct zone__key *k, const char *s)
{
    key_bytes(k, s, strlen(s));
}

static void key_sep(struct zone__key *k)
{
    key_put(k, 0);
}

/* ---- the layout ------------------------------------------------------------------------ */

void zone__key_node(struct zone__key *k, const char *node)
{
    key_init(k);
    key_lower(k, node);
}

void zone__key_row(struct zone__key *k, const char *node, const char *id)
{
    zone__key_node(k, node);
    key_sep(k);
    if (id)
        key_raw(k, id);
}

void zone__key_svcidx(struct zone__key *k, const char *name, const char *node, const char *id)
{
    key_init(k);
    key_lower(k, name);
    key_sep(k);
    if (!node)
        return;
    key_lower(k, node);
    key_sep(k);
    key_raw(k, id);
}

MDB_val zone__svcidx_row(const struct zone__key *prefix, const MDB_val *ix)
{
    MDB_val v = {.mv_size = ix->mv_size - prefix->n, .mv_data = (uint8_t *)ix->mv_data + prefix->n};
    return v;
}

void zone__key_session(struct zone__key *k, const char *id)
{
    key_init(k);
    key_raw(k, id);
}

void zone__key_kv(struct zone__key *k, const char *key)
{
    key_init(k);
    key_raw(k, key);
}

void zone__key_addr(struct zone__key *k, int family, const uint8_t ip[16], const char *node,
                    const char *sid)
{
    key_init(k);
    key_put(k, (uint8_t)family);
    key_bytes(k, ip, family == 4 ? 4 : 16);
    if (!node)
        return;
    key_lower(k, node);
    key_sep(k);
    key_raw(k, sid ? sid : "");
}

void zone__key_meta(struct zone__key *k, const char *name)
{
    key_init(k);
    key_raw(k, name);
}

void zone__key_staging_header(struct zone__key *k)
{
    key_init(k);
    key_put(k, STAGING_HEADER);
}

void zone__key_staging_chunks(struct zone__key *k)
{
    key_init(k);
    key_put(k, STAGING_CHUNK);
}

void zone__key_staging_chunk(struct zone__key *k, uint64_t offset)
{
    zone__key_staging_chunks(k);
    for (int i = 0; i < 8; i++)
        key_put(k, (uint8_t)(offset >> (8 * (7 - i))));
}

void zone__key_of_rec(struct zone__key *k, enum zone__db d, const union zone__rec *u)
{
    switch (d) {
    case ZONE__DB_NODES:
        zone__key_node(k, u->n.name);
        return;
    case ZONE__DB_SERVICES:
        zone__key_row(k, u->s.node, u->s.id);
        return;
    case ZONE__DB_CHECKS:
        zone__key_row(k, u->c.node, u->c.check_id);
        return;
    case ZONE__DB_KV:
        zone__key_kv(k, u->kv.key);
        return;
    case ZONE__DB_SESSIONS:
        zone__key_session(k, u->ss.id);
        return;
    default:
        key_init(k); /* no record lives there */
        return;
    }
}

int zone__staging_key(const uint8_t *k, size_t kn, uint64_t *offset)
{
    if (kn == 1 && k[0] == STAGING_HEADER)
        return ZONE__STAGING_HEADER;
    if (kn != 1 + 8 || k[0] != STAGING_CHUNK)
        return 0;
    if (offset) {
        *offset = 0;
        for (int i = 0; i < 8; i++)
            *offset = *offset << 8 | k[1 + i];
    }
    return ZONE__STAGING_CHUNK;
}

void zone__key_copy(struct zone__key *k, const MDB_val *v)
{
    key_init(k);
    key_bytes(k, v->mv_data, v->mv_size);
}

bool zone__key_fits(const struct zone__key *k, size_t max_key)
{
    return !k->over && k->n > 0 && k->n <= max_key;
}

bool zone__key_eq(const struct zone__key *k, const void *p, size_t n)
{
    return !k->over && k->n == n && memcmp(k->b, p, n) == 0;
}

MDB_val zone__key_val(const struct zone__key *k)
{
    MDB_val v = {.mv_size = k->n, .mv_data = (void *)k->b};
    return v;
}

/* ---- prefix scans ---------------------------------------------------------------------- */

static bool under(const MDB_val *k, const struct zone__key *prefix)
{
    return !prefix || (k->mv_size >= prefix->n && memcmp(k->mv_data, prefix->b, prefix->n) == 0);
}

int zone__cursor_first(MDB_cursor *c, const struct zone__key *prefix, MDB_val *k, MDB_val *v)
{
    if (prefix && !prefix->n)
        prefix = NULL;
    if (!prefix)
        return mdb_cursor_get(c, k, v, MDB_FIRST);
    /* no key is longer than LMDB's maximum, so neither is a prefix of one */
    if (prefix->over || prefix->n > (size_t)mdb_env_get_maxkeysize(mdb_txn_env(mdb_cursor_txn(c))))
        return MDB_NOTFOUND;
    *k = zone__key_val(prefix);
    int rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
    return rc == 0 && !under(k, prefix) ? MDB_NOTFOUND : rc;
}

int zone__cursor_next(MDB_cursor *c, const struct zone__key *prefix, MDB_val *k, MDB_val *v)
{
    if (prefix && !prefix->n)
        prefix = NULL;
    int rc = mdb_cursor_get(c, k, v, MDB_NEXT);
    return rc == 0 && !under(k, prefix) ? MDB_NOTFOUND : rc;
}

int zone__scan(MDB_txn *t, MDB_dbi dbi, const struct zone__key *prefix, zone__scan_fn fn, void *ctx)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc;

    if (mdb_cursor_open(t, dbi, &c))
        return BASE_ESTORE;
    for (rc = zone__cursor_first(c, prefix, &k, &v); rc == 0;
         rc = zone__cursor_next(c, prefix, &k, &v)) {
        if ((rc = fn(ctx, &k, &v)))
            goto out;
    }
    rc = rc == MDB_NOTFOUND ? 0 : BASE_ESTORE;
out:
    mdb_cursor_close(c);
    return rc;
}

int zone__svcidx_names(MDB_txn *t, MDB_dbi dbi, zone__name_fn fn, void *ctx)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc, ret = 0;

    if (mdb_cursor_open(t, dbi, &c))
        return BASE_ESTORE;
    rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == 0) {
        const uint8_t *p = k.mv_data;
        const uint8_t *end = memchr(p, 0, k.mv_size);
        if (!end) {
            ret = BASE_ESTORE;
            break;
        }
        size_t len = (size_t)(end - p);
        if ((ret = fn(ctx, (const char *)p, len)))
            break;
        /* skip the name's other instances: its keys all sort below name \1 */
        uint8_t next[ZONE__KEY_CAP];
        memcpy(next, p, len);
        next[len] = 1;
        k.mv_data = next;
        k.mv_size = len + 1;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    }
    mdb_cursor_close(c);
    if (ret)
        return ret;
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : BASE_ESTORE;
}

/* ---- the meta database's u64 values ---------------------------------------------------- */

int zone__meta_read(MDB_txn *t, MDB_dbi dbi, const char *key, uint64_t *v)
{
    struct zone__key mk;
    zone__key_meta(&mk, key);
    MDB_val k = zone__key_val(&mk), d;
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
    struct zone__key mk;
    zone__key_meta(&mk, key);
    MDB_val k = zone__key_val(&mk), d;
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
    struct zone__key crc_key;

    zone__key_meta(&crc_key, ZONE__META_CRC);
    *crc = 0;
    *has = false;
    *stored = 0;
    if (mdb_cursor_open(t, dbi, &c))
        return BASE_ESTORE;
    int rc = zone__cursor_first(c, NULL, &k, &v);
    for (; rc == 0; rc = zone__cursor_next(c, NULL, &k, &v)) {
        if (zone__key_eq(&crc_key, k.mv_data, k.mv_size)) {
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
