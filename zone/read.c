/* Reads: read-only transactions and the getters and iterators of zone.h.
 *
 * A zone_read is an LMDB read-only transaction (MDB_NOTLS, so it may be used on any thread,
 * one thread at a time). Ended ones are reset and kept in a small pool: mdb_txn_renew reuses
 * the reader slot and the handle, which makes a DNS query's transaction cost a lock and two
 * stores instead of an allocation and a slot search. The DNS path's cursors live in the
 * zone_read too (zone__read_cursor) and are renewed rather than reopened, so a query in the
 * steady state allocates nothing.
 *
 * Records are decoded without copying strings: they point into the LMDB pages (the record
 * codec stores strings with their NUL), and only the arrays of tags and pairs are built in the
 * caller's arena. Both stay valid until the read ends or the arena is reset. */
#include "zone/internal.h"

#include <string.h>

#define POOL_MAX 32

/* A read-only transaction's cursors outlive it and are closed on their own (lmdb.h). */
static void read_free(struct zone_read *r)
{
    for (int d = 0; d < ZONE__DB_COUNT; d++)
        if (r->cur[d])
            mdb_cursor_close(r->cur[d]);
    mdb_txn_abort(r->txn);
    base_free(r);
}

int zone_read_begin(struct zone_store *s, struct zone_read **out)
{
    struct zone_read *r;

    pthread_mutex_lock(&s->pool_mu);
    r = s->pool;
    if (r) {
        s->pool = r->next;
        s->n_pool--;
    }
    pthread_mutex_unlock(&s->pool_mu);
    if (r) {
        if (mdb_txn_renew(r->txn) == 0) {
            r->gen++; /* its cursors are renewed when next used */
            r->damaged[0] = 0;
            *out = r;
            return 0;
        }
        read_free(r);
    }
    r = base_calloc(1, sizeof *r);
    r->s = s;
    r->gen = 1;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn)) {
        base_free(r);
        *out = NULL;
        return BASE_ESTORE;
    }
    *out = r;
    return 0;
}

MDB_cursor *zone__read_cursor(struct zone_read *r, enum zone__db d)
{
    if (r->cur[d] && r->cur_gen[d] == r->gen)
        return r->cur[d];
    if (r->cur[d]) {
        if (mdb_cursor_renew(r->txn, r->cur[d]) == 0) {
            r->cur_gen[d] = r->gen;
            return r->cur[d];
        }
        mdb_cursor_close(r->cur[d]);
        r->cur[d] = NULL;
    }
    if (mdb_cursor_open(r->txn, r->s->dbi[d], &r->cur[d])) {
        r->cur[d] = NULL;
        return NULL;
    }
    r->cur_gen[d] = r->gen;
    return r->cur[d];
}

void zone_read_end(struct zone_read *r)
{
    struct zone_store *s;

    if (!r)
        return;
    s = r->s;
    mdb_txn_reset(r->txn);
    pthread_mutex_lock(&s->pool_mu);
    if (s->n_pool < POOL_MAX) {
        r->next = s->pool;
        s->pool = r;
        s->n_pool++;
        r = NULL;
    }
    pthread_mutex_unlock(&s->pool_mu);
    if (r)
        read_free(r);
}

int zone_meta_get(struct zone_read *r, struct zone_meta *m)
{
    memset(m, 0, sizeof *m);
    int rc = zone__meta_all(r->s, r->txn, m);
    if (rc == BASE_EDAMAGED) {
        struct zone__key k;
        zone__key_meta(&k, ZONE__META_CRC);
        MDB_val key = zone__key_val(&k);
        memset(m, 0, sizeof *m);
        return zone__damaged(r, ZONE__DB_META, &key);
    }
    return rc;
}

int zone_store_meta(struct zone_store *s, struct zone_meta *m)
{
    struct zone_read *r;
    int rc = zone_read_begin(s, &r);

    if (rc) {
        memset(m, 0, sizeof *m);
        return rc;
    }
    rc = zone_meta_get(r, m);
    zone_read_end(r);
    return rc;
}

/* ---- helpers --------------------------------------------------------------------------- */
/* 0 found, BASE_ENOTFOUND, BASE_ESTORE. */
static int rget(struct zone_read *r, enum zone__db d, const struct zone__key *k, MDB_val *v)
{
    if (!zone__key_fits(k, r->s->max_key))
        return BASE_ENOTFOUND; /* no row has such a key */
    MDB_val key = zone__key_val(k);
    int rc = mdb_get(r->txn, r->s->dbi[d], &key, v);
    return rc == 0 ? 0 : rc == MDB_NOTFOUND ? BASE_ENOTFOUND : BASE_ESTORE;
}

/* Rows of d under prefix (NULL: all of them). */
static int scan(struct zone_read *r, enum zone__db d, const struct zone__key *prefix,
                zone__scan_fn fn, void *ctx)
{
    return zone__scan(r->txn, r->s->dbi[d], prefix, fn, ctx);
}

/* One iteration's state: the read, the arena, the user's callback (typed: STYLE.md, no
 * function pointer casts). */
struct each {
    struct zone_read *r;
    struct base_arena *a;
    union {
        zone_node_cb node;
        zone_service_cb service;
        zone_check_cb check;
        zone_kv_cb kv;
        zone_session_cb session;
    } cb;
    void *data;
};

/* ---- nodes ----------------------------------------------------------------------------- */
int zone_node_get(struct zone_read *r, const char *name, struct base_arena *a,
                  struct zone_node *out)
{
    struct zone__key k;
    MDB_val v;
    int rc;

    zone__key_node(&k, name);
    if ((rc = rget(r, ZONE__DB_NODES, &k, &v)))
        return rc;
    if (zone__node_decode(v.mv_data, v.mv_size, false, a, out)) {
        MDB_val key = zone__key_val(&k);
        return zone__damaged(r, ZONE__DB_NODES, &key);
    }
    return 0;
}

static int node_each(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct each *e = ctx;
    struct zone_node n;

    if (zone__node_decode(v->mv_data, v->mv_size, false, e->a, &n))
        return zone__damaged(e->r, ZONE__DB_NODES, k);
    return e->cb.node(e->data, &n);
}

int zone_nodes_each(struct zone_read *r, struct base_arena *a, zone_node_cb cb, void *data)
{
    struct each e = {.r = r, .a = a, .cb.node = cb, .data = data};
    return scan(r, ZONE__DB_NODES, NULL, node_each, &e);
}

/* ---- services -------------------------------------------------------------------------- */
int zone_service_get(struct zone_read *r, const char *node, const char *id, struct base_arena *a,
                     struct zone_service *out)
{
    struct zone__key k;
    MDB_val v;
    int rc;

    zone__key_row(&k, node, id);
    if ((rc = rget(r, ZONE__DB_SERVICES, &k, &v)))
        return rc;
    if (zone__service_decode(v.mv_data, v.mv_size, false, a, out)) {
        MDB_val key = zone__key_val(&k);
        return zone__damaged(r, ZONE__DB_SERVICES, &key);
    }
    return 0;
}

static int service_each(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct each *e = ctx;
    struct zone_service s;

    if (zone__service_decode(v->mv_data, v->mv_size, false, e->a, &s))
        return zone__damaged(e->r, ZONE__DB_SERVICES, k);
    return e->cb.service(e->data, &s);
}

int zone_node_services_each(struct zone_read *r, const char *node, struct base_arena *a,
                            zone_service_cb cb, void *data)
{
    struct each e = {.r = r, .a = a, .cb.service = cb, .data = data};
    struct zone__key k;

    zone__key_row(&k, node, NULL);
    return scan(r, ZONE__DB_SERVICES, &k, service_each, &e);
}

int zone_services_each(struct zone_read *r, struct base_arena *a, zone_service_cb cb, void *data)
{
    struct each e = {.r = r, .a = a, .cb.service = cb, .data = data};
    return scan(r, ZONE__DB_SERVICES, NULL, service_each, &e);
}

struct instances {
    struct each e;
    struct zone__key prefix; /* the name's svcidx rows */
};

static int instance_each(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct instances *in = ctx;
    MDB_val sk = zone__svcidx_row(&in->prefix, k);
    MDB_val sv;

    (void)v;
    if (mdb_get(in->e.r->txn, in->e.r->s->dbi[ZONE__DB_SERVICES], &sk, &sv))
        return BASE_ESTORE; /* the index names a service that is not there */
    return service_each(&in->e, &sk, &sv);
}

int zone_service_instances_each(struct zone_read *r, const char *name, struct base_arena *a,
                                zone_service_cb cb, void *data)
{
    struct instances in = {.e = {.r = r, .a = a, .cb.service = cb, .data = data}};

    zone__key_svcidx(&in.prefix, name, NULL, NULL);
    return scan(r, ZONE__DB_SVCIDX, &in.prefix, instance_each, &in);
}

struct names {
    struct base_arena *a;
    zone_name_cb cb;
    void *data;
};

static int name_each(void *ctx, const char *name, size_t len)
{
    struct names *nm = ctx;
    return nm->cb(nm->data, base_arena_strndup(nm->a, name, len));
}

int zone_service_names_each(struct zone_read *r, struct base_arena *a, zone_name_cb cb, void *data)
{
    struct names nm = {.a = a, .cb = cb, .data = data};
    return zone__svcidx_names(r->txn, r->s->dbi[ZONE__DB_SVCIDX], name_each, &nm);
}

/* ---- checks ---------------------------------------------------------------------------- */
int zone_check_get(struct zone_read *r, const char *node, const char *check_id,
                   struct base_arena *a, struct zone_check *out)
{
    struct zone__key k;
    MDB_val v;
    int rc;

    zone__key_row(&k, node, check_id);
    if ((rc = rget(r, ZONE__DB_CHECKS, &k, &v)))
        return rc;
    if (zone__check_decode(v.mv_data, v.mv_size, false, a, out)) {
        MDB_val key = zone__key_val(&k);
        return zone__damaged(r, ZONE__DB_CHECKS, &key);
    }
    return 0;
}

static int check_each(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct each *e = ctx;
    struct zone_check c;

    if (zone__check_decode(v->mv_data, v->mv_size, false, e->a, &c))
        return zone__damaged(e->r, ZONE__DB_CHECKS, k);
    return e->cb.check(e->data, &c);
}

int zone_node_checks_each(struct zone_read *r, const char *node, struct base_arena *a,
                          zone_check_cb cb, void *data)
{
    struct each e = {.r = r, .a = a, .cb.check = cb, .data = data};
    struct zone__key k;

    zone__key_row(&k, node, NULL);
    return scan(r, ZONE__DB_CHECKS, &k, check_each, &e);
}

int zone_checks_each(struct zone_read *r, struct base_arena *a, zone_check_cb cb, void *data)
{
    struct each e = {.r = r, .a = a, .cb.check = cb, .data = data};
    return scan(r, ZONE__DB_CHECKS, NULL, check_each, &e);
}

/* The one rule for an instance's health (DNS and HTTP alike): the worst status among its
 * node's checks (no service id) and its own, in one pass over the node's rows with the read's
 * cached cursor (the DNS path calls this for every instance it answers). */
int zone_instance_health(struct zone_read *r, const char *node, const char *service_id,
                         enum zone_health *out)
{
    MDB_cursor *c = zone__read_cursor(r, ZONE__DB_CHECKS);
    const char *sid = service_id ? service_id : "";
    struct zone__key k;
    MDB_val key, val;
    int rc;

    *out = ZONE_HEALTH_PASSING;
    if (!c)
        return BASE_ESTORE;
    zone__key_row(&k, node, NULL);
    for (rc = zone__cursor_first(c, &k, &key, &val); rc == 0;
         rc = zone__cursor_next(c, &k, &key, &val)) {
        enum zone_health st;
        const char *csid;
        if (zone__check_peek(val.mv_data, val.mv_size, &st, &csid))
            return zone__damaged(r, ZONE__DB_CHECKS, &key);
        if ((!*csid || strcmp(csid, sid) == 0) && st > *out)
            *out = st;
    }
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : BASE_ESTORE;
}

/* ---- kv -------------------------------------------------------------------------------- */
int zone_kv_get(struct zone_read *r, const char *key, struct base_arena *a, struct zone_kv *out)
{
    struct zone__key k;
    MDB_val v;
    int rc;

    zone__key_kv(&k, key);
    if ((rc = rget(r, ZONE__DB_KV, &k, &v)))
        return rc;
    if (zone__kv_decode(v.mv_data, v.mv_size, false, a, out)) {
        MDB_val kk = zone__key_val(&k);
        return zone__damaged(r, ZONE__DB_KV, &kk);
    }
    return 0;
}

static int kv_each(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct each *e = ctx;
    struct zone_kv kv;

    if (zone__kv_decode(v->mv_data, v->mv_size, false, e->a, &kv))
        return zone__damaged(e->r, ZONE__DB_KV, k);
    return e->cb.kv(e->data, &kv);
}

int zone_kv_each(struct zone_read *r, const char *prefix, struct base_arena *a, zone_kv_cb cb,
                 void *data)
{
    struct each e = {.r = r, .a = a, .cb.kv = cb, .data = data};
    struct zone__key k;

    zone__key_kv(&k, prefix ? prefix : "");
    return scan(r, ZONE__DB_KV, &k, kv_each, &e);
}

/* ---- sessions -------------------------------------------------------------------------- */
int zone_session_get(struct zone_read *r, const char *id, struct base_arena *a,
                     struct zone_session *out)
{
    struct zone__key k;
    MDB_val v;
    int rc;

    zone__key_session(&k, id);
    if ((rc = rget(r, ZONE__DB_SESSIONS, &k, &v)))
        return rc;
    if (zone__session_decode(v.mv_data, v.mv_size, false, a, out)) {
        MDB_val kk = zone__key_val(&k);
        return zone__damaged(r, ZONE__DB_SESSIONS, &kk);
    }
    return 0;
}

static int session_each(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct each *e = ctx;
    struct zone_session ss;

    if (zone__session_decode(v->mv_data, v->mv_size, false, e->a, &ss))
        return zone__damaged(e->r, ZONE__DB_SESSIONS, k);
    return e->cb.session(e->data, &ss);
}

int zone_sessions_each(struct zone_read *r, struct base_arena *a, zone_session_cb cb, void *data)
{
    struct each e = {.r = r, .a = a, .cb.session = cb, .data = data};
    return scan(r, ZONE__DB_SESSIONS, NULL, session_each, &e);
}
