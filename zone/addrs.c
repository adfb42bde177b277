/* The addrs database: IP address -> the nodes and services that have it, so that a PTR query
 * is one prefix lookup instead of a scan of the catalog (DESIGN.md 2.3).
 *
 * It is an index derived from nodes and services, written in the same transaction as the rows
 * it mirrors (store.c calls put/del where a node's or service's address changes, and on every
 * delete), so it never disagrees with them in any committed state. Keys begin with the family
 * byte so that an IPv4 prefix (4 bytes) never selects an IPv6 address that starts with the
 * same bytes; the node and service id that follow make one row per owner of the address.
 * Hostname addresses have no row: a PTR names what owns an IP, nothing else. Nor does an owner
 * whose node name and service id are too long together for an LMDB key (near 255 bytes each):
 * the index skips it rather than refuse a registration the catalog itself accepts. The key
 * layout is key.c's. */
#include "zone/internal.h"

#include <arpa/inet.h>
#include <string.h>

int zone__addr_parse(const char *s, uint8_t ip[16])
{
    if (!s || !*s)
        return 0;
    if (inet_pton(AF_INET, s, ip) == 1)
        return 4;
    if (inet_pton(AF_INET6, s, ip) == 1)
        return 6;
    return 0;
}

/* 0 when addr is not an IP (no row), 1 with the key built, BASE_ETOOBIG when over the limit. */
static int addr_key(struct zone__key *k, size_t max_key, const char *addr, const char *node,
                    const char *sid)
{
    uint8_t ip[16];
    int fam = zone__addr_parse(addr, ip);

    if (!fam)
        return 0;
    zone__key_addr(k, fam, ip, node, sid);
    if (!zone__key_fits(k, max_key))
        return BASE_ETOOBIG;
    return 1;
}

int zone__addrs_put(MDB_txn *t, MDB_dbi dbi, size_t max_key, const char *addr, const char *node,
                    const char *sid, const char *name)
{
    struct zone__key k;
    int rc = addr_key(&k, max_key, addr, node, sid);

    if (rc <= 0)
        return 0; /* not an IP, or a key over LMDB's limit: no row, so no PTR for it */
    MDB_val key = zone__key_val(&k);
    if (!name)
        name = "";
    MDB_val val = {.mv_size = *name ? strlen(name) + 1 : 0, .mv_data = (void *)name};
    return mdb_put(t, dbi, &key, &val, 0) ? BASE_ESTORE : 0;
}

int zone__addrs_del(MDB_txn *t, MDB_dbi dbi, size_t max_key, const char *addr, const char *node,
                    const char *sid)
{
    struct zone__key k;
    int rc = addr_key(&k, max_key, addr, node, sid);

    if (rc <= 0)
        return 0; /* a key too long to exist has no row */
    MDB_val key = zone__key_val(&k);
    rc = mdb_del(t, dbi, &key, NULL);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : BASE_ESTORE;
}

int zone__addrs_has(MDB_txn *t, MDB_dbi dbi, size_t max_key, const char *addr, const char *node,
                    const char *sid, const char *name)
{
    struct zone__key k;
    MDB_val v;
    int rc = addr_key(&k, max_key, addr, node, sid);

    if (rc <= 0)
        return 0; /* no row expected */
    MDB_val key = zone__key_val(&k);
    if (!name)
        name = "";
    size_t want = *name ? strlen(name) + 1 : 0;
    if (mdb_get(t, dbi, &key, &v) != 0 || v.mv_size != want || memcmp(v.mv_data, name, want) != 0)
        return BASE_ENOTFOUND;
    return 1;
}

struct rebuild {
    struct zone_store *s;
    MDB_txn *t;
    struct base_arena a;
};

static int rebuild_node(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct rebuild *b = ctx;
    struct zone_node n;

    (void)k;
    base_arena_reset(&b->a);
    if (zone__node_decode(v->mv_data, v->mv_size, false, &b->a, &n))
        return BASE_ESTORE;
    return zone__addrs_put(b->t, b->s->dbi[ZONE__DB_ADDRS], b->s->max_key, n.address, n.name, "",
                           NULL);
}

static int rebuild_service(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct rebuild *b = ctx;
    struct zone_service sv;

    (void)k;
    base_arena_reset(&b->a);
    if (zone__service_decode(v->mv_data, v->mv_size, false, &b->a, &sv))
        return BASE_ESTORE;
    return zone__addrs_put(b->t, b->s->dbi[ZONE__DB_ADDRS], b->s->max_key, sv.address, sv.node,
                           sv.id, sv.name);
}

int zone__addrs_rebuild(struct zone_store *s, MDB_txn *t)
{
    struct rebuild b = {.s = s, .t = t};
    int rc;

    if (mdb_drop(t, s->dbi[ZONE__DB_ADDRS], 0))
        return BASE_ESTORE;
    base_arena_init(&b.a);
    rc = zone__scan(t, s->dbi[ZONE__DB_NODES], NULL, rebuild_node, &b);
    if (!rc)
        rc = zone__scan(t, s->dbi[ZONE__DB_SERVICES], NULL, rebuild_service, &b);
    base_arena_close(&b.a);
    return rc;
}
