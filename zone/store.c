/* The catalog store: the LMDB environment and the write path that applies Raft entries.
 *
 * Why LMDB. One environment holds the eight named databases of zone.h. It gives the design what
 * it needs without locks of ours: one writer and any number of readers that never block each
 * other (MVCC); a read transaction sees one committed version of the whole catalog, so a DNS
 * answer or an HTTP listing never mixes two writes; a commit is atomic across databases. The
 * environment is opened with MDB_NOTLS so that a read transaction belongs to its handle, not
 * to a thread: DNS workers and the snapshot writer can hold one anywhere (DESIGN.md 2.2).
 *
 * Apply. Raft hands us one entry at a time. zone_store_apply runs all of its commands in one
 * write transaction that also stores meta "applied" = the entry's index. Because the rows and
 * the applied index commit together, a crash keeps both or neither, and replaying the log at
 * start-up skips every entry at or below "applied" (DESIGN.md 2.6): apply is idempotent.
 * Each command runs in a nested transaction, so a command that fails (CAS conflict, a check on
 * a missing service, a malformed command) is rolled back alone while the others of the same
 * entry still commit; its result tells its proposer why. A storage error (map full, I/O) is a
 * different thing: it aborts the whole entry and returns BASE_ESTORE, because an entry applied
 * in part on one replica and whole on another would fork the catalog. Command outcomes depend
 * only on the command and the stored data, never on the clock or the host, so every replica
 * computes the same ones.
 *
 * Indexes. Every record carries CreateIndex, kept across updates, and ModifyIndex, the index
 * of the last write that changed it. As in Consul, an upsert that changes nothing keeps the old
 * ModifyIndex and touches no table, so agents re-registering what is already there do not wake
 * blocking queries; a KV set always counts as a change (Consul's kvsSetTxn). The meta database
 * keeps one index per table ("t.nodes", ...) and the catalog index ("index"): both become the
 * entry's index whenever the table changed, deletes included, and *touched names the tables
 * so that only their watchers wake. Since Raft indexes grow, so do these.
 *
 * Durability. MDB_NOMETASYNC: LMDB still syncs the data pages at commit but not the meta page,
 * so a system crash can undo the last committed transaction while keeping the file intact
 * (lmdb.h). That is safe here: the undone transaction takes its applied index with it and Raft
 * replays the entry (or a snapshot newer than the store restores it), for one fsync per entry
 * instead of two. */
#include "zone/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Address space, not disk: the file grows only as pages are used. A restore needs room for
 * the old catalog, the staged backup and the new catalog at once, and running out of map
 * space in an apply stops the server (every server applies the same entry), so the ceiling
 * sits far above any catalog Herald is meant for. */
#define DEFAULT_MAP_SIZE ((size_t)16 << 30)
/* DNS workers, HTTP handlers, snapshots and the pool of reset read transactions. */
#define MAX_READERS 512

static int open_fail(char *errmsg, const char *dir, const char *what, int rc)
{
    if (errmsg)
        snprintf(errmsg, BASE_ERRMSG_LEN, "zone: %s %s: %s", what, dir, mdb_strerror(rc));
    return BASE_ESTORE;
}

int zone_store_open(const char *dir, size_t map_size, struct zone_store **out, char *errmsg)
{
    struct zone_store *s;
    MDB_txn *t;
    int rc;

    BASE_ASSERT_LOOP();
    *out = NULL;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return open_fail(errmsg, dir, "mkdir", errno);
    s = base_calloc(1, sizeof *s);
    rc = mdb_env_create(&s->env);
    if (rc) {
        base_free(s);
        return open_fail(errmsg, dir, "create", rc);
    }
    if ((rc = mdb_env_set_maxdbs(s->env, ZONE__DB_COUNT)) ||
        (rc = mdb_env_set_mapsize(s->env, map_size ? map_size : DEFAULT_MAP_SIZE)) ||
        (rc = mdb_env_set_maxreaders(s->env, MAX_READERS)) ||
        (rc = mdb_env_open(s->env, dir, MDB_NOTLS | MDB_NOMETASYNC, 0600))) {
        mdb_env_close(s->env);
        base_free(s);
        open_fail(errmsg, dir, "open", rc);
        /* a file too short for its header, or a header that is not LMDB's */
        return rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_VERSION_MISMATCH
                   ? BASE_EDAMAGED
                   : BASE_ESTORE;
    }
    /* reader slots left by a process that died holding them would pin old pages forever */
    int dead;
    mdb_reader_check(s->env, &dead);

    /* before anything reads a page: one past the end of a short file is a SIGBUS */
    if ((rc = zone__store_verify_file(s->env, dir, errmsg)) ||
        (rc = zone__store_check_pages(dir, errmsg))) {
        mdb_env_close(s->env);
        base_free(s);
        return rc;
    }

    s->max_key = (size_t)mdb_env_get_maxkeysize(s->env);
    int zrc = 0;
    rc = mdb_txn_begin(s->env, NULL, 0, &t);
    for (int i = 0; i < ZONE__DB_COUNT && !rc; i++)
        rc = mdb_dbi_open(t, zone__db_names[i], MDB_CREATE, &s->dbi[i]);
    /* a catalog written before record checksums gets them now (verify.c) */
    if (!rc && (zrc = zone__store_migrate(s, t, dir, errmsg)))
        rc = MDB_PANIC;
    if (!rc) {
        /* a catalog written before the addrs index existed gets it now */
        MDB_stat na, nn;
        if (!(rc = mdb_stat(t, s->dbi[ZONE__DB_ADDRS], &na)) &&
            !(rc = mdb_stat(t, s->dbi[ZONE__DB_NODES], &nn)) && na.ms_entries == 0 &&
            nn.ms_entries > 0 && zone__addrs_rebuild(s, t))
            rc = MDB_PANIC;
    }
    if (!rc)
        rc = mdb_txn_commit(t);
    else
        mdb_txn_abort(t);
    if (!rc && (zrc = zone__store_check(s, dir, errmsg)))
        rc = MDB_PANIC;
    if (rc) {
        mdb_env_close(s->env);
        base_free(s);
        if (zrc)
            return zrc;
        /* LMDB's own structure checks (a damaged page) */
        int code = rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID
                       ? BASE_EDAMAGED
                       : BASE_ESTORE;
        open_fail(errmsg, dir, "open databases in", rc);
        return code;
    }
    pthread_mutex_init(&s->pool_mu, NULL);
    base_arena_init(&s->arena);
    base_buf_init(&s->rec);
    base_buf_init(&s->renewed);
    *out = s;
    return 0;
}

void zone_store_close(struct zone_store *s)
{
    if (!s)
        return;
    BASE_ASSERT_LOOP();
    while (s->pool) {
        struct zone_read *r = s->pool;
        s->pool = r->next;
        for (int d = 0; d < ZONE__DB_COUNT; d++)
            if (r->cur[d])
                mdb_cursor_close(r->cur[d]);
        mdb_txn_abort(r->txn);
        base_free(r);
    }
    mdb_env_close(s->env);
    pthread_mutex_destroy(&s->pool_mu);
    base_arena_close(&s->arena);
    base_buf_free(&s->rec);
    base_buf_free(&s->renewed);
    for (size_t i = 0; i < s->n_delays; i++)
        base_free(s->delays[i].key);
    base_free(s->delays);
    base_free(s);
}

/* ---- one command ----------------------------------------------------------------------- */
/* Results are 0 or a command's own failure (BASE_EPARSE, BASE_ETOOBIG, BASE_ENOTFOUND,
 * BASE_ECONFLICT), which rolls back that command alone; BASE_ESTORE fails the whole entry. */
struct apply {
    struct zone_store *s;
    MDB_txn *t; /* the command's nested transaction */
    uint64_t idx;
    uint32_t mask; /* ZONE_TABLE_BITs changed by this command */
    struct base_arena *a;
    int result; /* a failure reported although the command's writes commit (restore END) */
    /* lock delays the command starts (session invalidations), set only once it commits: a
     * command rolled back (a failed transaction) leaves none behind */
    struct apply_delay {
        const char *key;
        uint64_t until;
    } * delays;
    size_t n_delays, cap_delays;
};

static bool key_ok(const struct apply *x, const struct zone__key *k)
{
    return zone__key_fits(k, x->s->max_key);
}

/* 0 found, BASE_ENOTFOUND absent (or a key no row can have), BASE_ESTORE. */
static int get(struct apply *x, enum zone__db d, const struct zone__key *k, MDB_val *v)
{
    if (!key_ok(x, k))
        return BASE_ENOTFOUND;
    MDB_val key = zone__key_val(k);
    int rc = mdb_get(x->t, x->s->dbi[d], &key, v);
    return rc == 0 ? 0 : rc == MDB_NOTFOUND ? BASE_ENOTFOUND : BASE_ESTORE;
}

static int put(struct apply *x, enum zone__db d, const struct zone__key *k, const void *p, size_t n)
{
    if (!key_ok(x, k))
        return BASE_ETOOBIG; /* over LMDB's key size: the name is too long to store */
    MDB_val key = zone__key_val(k), val = {.mv_size = n, .mv_data = (void *)p};
    return mdb_put(x->t, x->s->dbi[d], &key, &val, 0) ? BASE_ESTORE : 0;
}

/* Deletes a row if present; sets the table's bit when it was. */
static int del(struct apply *x, enum zone__db d, const struct zone__key *k, enum zone_table tb)
{
    if (!key_ok(x, k))
        return 0;
    MDB_val key = zone__key_val(k);
    int rc = mdb_del(x->t, x->s->dbi[d], &key, NULL);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return BASE_ESTORE;
    x->mask |= ZONE_TABLE_BIT(tb);
    return 0;
}

/* Stores the record encoded in s->rec, which carries the old CreateIndex and ModifyIndex (or
 * idx for both when new), unless it is byte for byte the stored one (old, NULL when absent).
 * Every record ends with ModifyIndex and its checksum, so a changed one gets idx patched into
 * the 8 bytes before the checksum, which is then recomputed.
 * Returns 1 when written, 0 when unchanged, or an error. */
static int store_rec(struct apply *x, enum zone__db d, const struct zone__key *k,
                     const MDB_val *old, enum zone_table tb)
{
    struct base_buf *b = &x->s->rec;

    if (old && old->mv_size == b->len && memcmp(old->mv_data, b->data, b->len) == 0)
        return 0;
    for (int i = 0; i < 8; i++)
        b->data[b->len - ZONE__REC_CRC_LEN - 8 + (size_t)i] = (uint8_t)(x->idx >> (8 * i));
    zone__rec_reseal(b->data, b->len);
    int rc = put(x, d, k, b->data, b->len);
    if (rc)
        return rc;
    x->mask |= ZONE_TABLE_BIT(tb);
    return 1;
}

/* A stored record that fails its checksum (or does not decode) while an entry applies: the
 * entry cannot apply here as it does on the other replicas, so it fails whole (BASE_EDAMAGED,
 * which stops the server: fsm.c); the record is named first. */
static int apply_damaged(struct zone_store *s, enum zone__db d, const MDB_val *k)
{
    char name[ZONE__DAMAGED_NAME];
    zone__rec_name(d, k->mv_data, k->mv_size, name, sizeof name);
    atomic_fetch_add(&s->n_damaged, 1);
    LOG_ERR("zone", "catalog record %s failed its checksum while applying an entry", name);
    return BASE_EDAMAGED;
}

static int apply_damaged_key(struct zone_store *s, enum zone__db d, const struct zone__key *k)
{
    MDB_val key = zone__key_val(k);
    return apply_damaged(s, d, &key);
}

/* Rows of one database under a prefix, copied into the arena so that the caller can write to
 * that database while going through them (a cursor does not survive writes under it). */
struct rows {
    MDB_val *k, *v;
    size_t n, cap;
    struct base_arena *a;
    struct zone_store *s;
    const char *sid; /* checks only: keep those of this service id (NULL: all) */
};

static int rows_add(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct rows *r = ctx;

    if (r->sid) {
        enum zone_health st;
        const char *sid;
        if (zone__check_peek(v->mv_data, v->mv_size, &st, &sid))
            return apply_damaged(r->s, ZONE__DB_CHECKS, k);
        if (strcmp(sid, r->sid) != 0)
            return 0;
    }
    size_t kcap = r->cap; /* the two arrays grow together */
    r->k = base_arena_grow(r->a, r->k, r->n, &kcap, sizeof *r->k, 16);
    r->v = base_arena_grow(r->a, r->v, r->n, &r->cap, sizeof *r->v, 16);
    MDB_val *dk = &r->k[r->n], *dv = &r->v[r->n];
    dk->mv_size = k->mv_size;
    dk->mv_data = base_arena_alloc(r->a, k->mv_size);
    memcpy(dk->mv_data, k->mv_data, k->mv_size);
    dv->mv_size = v->mv_size;
    dv->mv_data = base_arena_alloc(r->a, v->mv_size);
    if (v->mv_size)
        memcpy(dv->mv_data, v->mv_data, v->mv_size);
    r->n++;
    return 0;
}

static int rows_get(struct apply *x, enum zone__db d, const struct zone__key *prefix,
                    const char *sid, struct rows *out)
{
    memset(out, 0, sizeof *out);
    out->a = x->a;
    out->s = x->s;
    out->sid = sid;
    return zone__scan(x->t, x->s->dbi[d], prefix, rows_add, out);
}

static int rows_del(struct apply *x, enum zone__db d, const struct rows *r, enum zone_table tb)
{
    for (size_t i = 0; i < r->n; i++) {
        int rc = mdb_del(x->t, x->s->dbi[d], &r->k[i], NULL);
        if (rc && rc != MDB_NOTFOUND)
            return BASE_ESTORE;
        x->mask |= ZONE_TABLE_BIT(tb);
    }
    return 0;
}

/* The addrs index (addrs.c) follows every address change and delete of a node or service. */
static int addr_put(struct apply *x, const char *addr, const char *node, const char *sid,
                    const char *name)
{
    return zone__addrs_put(x->t, x->s->dbi[ZONE__DB_ADDRS], x->s->max_key, addr, node, sid, name);
}

static int addr_del(struct apply *x, const char *addr, const char *node, const char *sid)
{
    return zone__addrs_del(x->t, x->s->dbi[ZONE__DB_ADDRS], x->s->max_key, addr, node, sid);
}

/* Names and ids become DNS labels and key parts: present and bounded. */
static int check_name(const char *s)
{
    if (!*s)
        return BASE_EPARSE;
    return strlen(s) > ZONE_NAME_MAX ? BASE_ETOOBIG : 0;
}

/* ---- sessions and locks ---------------------------------------------------------------- */
/* Lock delays live in memory, as in Consul (state.Store.lockDelay): they shape what the API
 * answers to an acquire, never what an apply does, so replicas cannot diverge through them. */
static void delay_set(struct zone_store *s, const char *key, uint64_t until)
{
    uint64_t now = base_now_ms();
    size_t j = 0;
    bool found = false;

    for (size_t i = 0; i < s->n_delays; i++) { /* drop the expired ones on the way */
        struct zone__delay *d = &s->delays[i];
        if (strcmp(d->key, key) == 0) {
            d->until_ms = until > d->until_ms ? until : d->until_ms;
            found = true;
        }
        if (d->until_ms <= now) {
            base_free(d->key);
            continue;
        }
        s->delays[j++] = *d;
    }
    s->n_delays = j;
    if (found || until <= now)
        return;
    if (s->n_delays == s->cap_delays) {
        s->cap_delays = s->cap_delays ? 2 * s->cap_delays : 8;
        s->delays = base_realloc(s->delays, s->cap_delays * sizeof *s->delays);
    }
    s->delays[s->n_delays++] = (struct zone__delay){base_strdup(key), until};
}

uint64_t zone_store_lock_delay(struct zone_store *s, const char *key)
{
    uint64_t now = base_now_ms();
    BASE_ASSERT_LOOP();
    for (size_t i = 0; i < s->n_delays; i++)
        if (strcmp(s->delays[i].key, key) == 0)
            return s->delays[i].until_ms > now ? s->delays[i].until_ms - now : 0;
    return 0;
}

void zone_store_renewed_each(struct zone_store *s, void (*cb)(void *data, const char *id),
                             void *data)
{
    BASE_ASSERT_LOOP();
    for (size_t at = 0; at < s->renewed.len;) {
        const char *id = (const char *)s->renewed.data + at;
        at += strlen(id) + 1;
        cb(data, id);
    }
}

/* The keys a session holds: a walk of the whole KV table (sessions are invalidated rarely;
 * an index from session to keys would make this proportional to the keys held). */
struct held {
    struct apply *x;
    const char *id;
    struct rows keys; /* keys only (values empty) */
};

static int held_add(void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct held *h = ctx;
    struct zone_kv kv;
    if (zone__kv_decode(v->mv_data, v->mv_size, false, h->x->a, &kv))
        return apply_damaged(h->x->s, ZONE__DB_KV, k);
    if (strcmp(kv.session, h->id) != 0)
        return 0;
    MDB_val none = {.mv_size = 0, .mv_data = NULL};
    return rows_add(&h->keys, k, &none);
}

/* Deletes the session (its row under skey) and frees its locks, as Consul's deleteSessionTxn. */
static int session_invalidate(struct apply *x, const struct zone__key *skey,
                              const struct zone_session *ss)
{
    struct held h = {.x = x, .id = ss->id};
    int rc;

    h.keys.a = x->a;
    h.keys.s = x->s;
    if ((rc = del(x, ZONE__DB_SESSIONS, skey, ZONE_TABLE_SESSIONS)) ||
        (rc = zone__scan(x->t, x->s->dbi[ZONE__DB_KV], NULL, held_add, &h)))
        return rc;
    uint64_t until = ss->lock_delay_ms ? base_now_ms() + ss->lock_delay_ms : 0;
    for (size_t i = 0; i < h.keys.n; i++) {
        struct zone__key k;
        zone__key_copy(&k, &h.keys.k[i]);
        if (until) {
            char *name = base_arena_strndup(x->a, h.keys.k[i].mv_data, h.keys.k[i].mv_size);
            x->delays =
                base_arena_grow(x->a, x->delays, x->n_delays, &x->cap_delays, sizeof *x->delays, 8);
            x->delays[x->n_delays++] = (struct apply_delay){name, until};
        }
        if (ss->behavior == ZONE_SESSION_DELETE) {
            if ((rc = del(x, ZONE__DB_KV, &k, ZONE_TABLE_KV)))
                return rc;
            continue;
        }
        MDB_val old;
        struct zone_kv kv;
        if ((rc = get(x, ZONE__DB_KV, &k, &old)))
            return rc;
        if (zone__kv_decode(old.mv_data, old.mv_size, true, x->a, &kv))
            return apply_damaged_key(x->s, ZONE__DB_KV, &k);
        kv.session = "";
        kv.modify_index = x->idx;
        x->s->rec.len = 0;
        zone__kv_encode(&kv, &x->s->rec);
        if ((rc = put(x, ZONE__DB_KV, &k, x->s->rec.data, x->s->rec.len)))
            return rc;
        x->mask |= ZONE_TABLE_BIT(ZONE_TABLE_KV);
    }
    return 0;
}

static bool session_ties(const struct zone_session *ss, const char *check_id)
{
    for (size_t i = 0; i < ss->n_node_checks; i++)
        if (strcmp(ss->node_checks[i], check_id) == 0)
            return true;
    for (size_t i = 0; i < ss->n_service_checks; i++)
        if (strcmp(ss->service_checks[i], check_id) == 0)
            return true;
    return false;
}

/* Invalidates the sessions of node tied to check_id (NULL: every session of the node). A walk
 * of the sessions table, which is small next to the catalog. */
static int sessions_invalidate(struct apply *x, const char *node, const char *check_id)
{
    struct rows rows;
    int rc;

    if ((rc = rows_get(x, ZONE__DB_SESSIONS, NULL, NULL, &rows)))
        return rc;
    for (size_t i = 0; i < rows.n; i++) {
        struct zone_session ss;
        struct zone__key k;
        if (zone__session_decode(rows.v[i].mv_data, rows.v[i].mv_size, false, x->a, &ss))
            return apply_damaged(x->s, ZONE__DB_SESSIONS, &rows.k[i]);
        if (base_strcasecmp(ss.node, node) != 0 || (check_id && !session_ties(&ss, check_id)))
            continue;
        zone__key_copy(&k, &rows.k[i]);
        if ((rc = session_invalidate(x, &k, &ss)))
            return rc;
    }
    return 0;
}

/* A check that must exist on the node and not be critical for a session to tie to it. */
static int session_check_ok(struct apply *x, const char *node, const char *check_id)
{
    struct zone__key k;
    MDB_val v;
    enum zone_health st;
    const char *sid;
    int rc;

    zone__key_row(&k, node, check_id);
    if ((rc = get(x, ZONE__DB_CHECKS, &k, &v)))
        return rc;
    if (zone__check_peek(v.mv_data, v.mv_size, &st, &sid))
        return apply_damaged_key(x->s, ZONE__DB_CHECKS, &k);
    return st == ZONE_HEALTH_CRITICAL ? BASE_ECONFLICT : 0;
}

static int apply_session_create(struct apply *x, const struct zone_cmd *c)
{
    struct zone_session ss = c->session;
    struct zone__key k;
    MDB_val v;
    int rc;

    if (!*ss.id || !*ss.node)
        return BASE_EPARSE;
    if (strlen(ss.id) > ZONE_SESSION_ID_MAX)
        return BASE_ETOOBIG;
    zone__key_node(&k, ss.node);
    if ((rc = get(x, ZONE__DB_NODES, &k, &v)))
        return rc; /* BASE_ENOTFOUND: no such node */
    for (size_t i = 0; i < ss.n_node_checks; i++)
        if ((rc = session_check_ok(x, ss.node, ss.node_checks[i])))
            return rc;
    for (size_t i = 0; i < ss.n_service_checks; i++)
        if ((rc = session_check_ok(x, ss.node, ss.service_checks[i])))
            return rc;
    zone__key_session(&k, ss.id);
    rc = get(x, ZONE__DB_SESSIONS, &k, &v);
    if (rc != BASE_ENOTFOUND)
        return rc ? rc : BASE_ECONFLICT;
    ss.create_index = ss.modify_index = x->idx;
    x->s->rec.len = 0;
    zone__session_encode(&ss, &x->s->rec);
    if ((rc = put(x, ZONE__DB_SESSIONS, &k, x->s->rec.data, x->s->rec.len)))
        return rc;
    x->mask |= ZONE_TABLE_BIT(ZONE_TABLE_SESSIONS);
    return 0;
}

/* The stored session id into *ss (decoded into the arena); BASE_ENOTFOUND when absent. */
static int session_get(struct apply *x, const char *id, struct zone__key *k,
                       struct zone_session *ss)
{
    MDB_val v;
    int rc;

    if (!*id)
        return BASE_ENOTFOUND;
    zone__key_session(k, id);
    if ((rc = get(x, ZONE__DB_SESSIONS, k, &v)))
        return rc;
    if (zone__session_decode(v.mv_data, v.mv_size, true, x->a, ss))
        return apply_damaged_key(x->s, ZONE__DB_SESSIONS, k);
    return 0;
}

static int apply_session_destroy(struct apply *x, const struct zone_cmd *c)
{
    struct zone__key k;
    struct zone_session ss;
    int rc = session_get(x, c->session.id, &k, &ss);
    if (rc == BASE_ENOTFOUND)
        return 0; /* Consul: destroying what is not there succeeds */
    return rc ? rc : session_invalidate(x, &k, &ss);
}

static int apply_session_renew(struct apply *x, const struct zone_cmd *c)
{
    struct zone__key k;
    struct zone_session ss;
    int rc = session_get(x, c->session.id, &k, &ss);
    if (!rc)
        base_buf_append(&x->s->renewed, ss.id, strlen(ss.id) + 1);
    return rc;
}

/* ---- register -------------------------------------------------------------------------- */
static int upsert_node(struct apply *x, const struct zone_cmd *c, struct zone_node *stored)
{
    struct zone__key k;
    struct zone_node n = c->node;
    MDB_val old;
    int rc;

    zone__key_node(&k, c->node.name);
    rc = get(x, ZONE__DB_NODES, &k, &old);
    if (rc == BASE_ESTORE)
        return rc;
    bool exists = rc == 0;
    if (exists) {
        if (zone__node_decode(old.mv_data, old.mv_size, true, x->a, stored))
            return apply_damaged_key(x->s, ZONE__DB_NODES, &k);
        /* agent anti-entropy: the node is known, keep what the catalog has */
        if (c->skip_node_update)
            return 0;
    }
    n.create_index = exists ? stored->create_index : x->idx;
    n.modify_index = exists ? stored->modify_index : x->idx;
    x->s->rec.len = 0;
    zone__node_encode(&n, &x->s->rec);
    rc = store_rec(x, ZONE__DB_NODES, &k, exists ? &old : NULL, ZONE_TABLE_NODES);
    if (rc < 0)
        return rc;
    if (rc == 1 && (!exists || strcmp(stored->address, n.address) != 0)) {
        if ((exists && (rc = addr_del(x, stored->address, n.name, ""))) ||
            (rc = addr_put(x, n.address, n.name, "", NULL)))
            return rc;
    }
    *stored = n;
    return 0;
}

static bool same_tags(const struct zone_service *a, const struct zone_service *b)
{
    if (a->n_tags != b->n_tags)
        return false;
    for (size_t i = 0; i < a->n_tags; i++)
        if (strcmp(a->tags[i], b->tags[i]) != 0)
            return false;
    return true;
}

/* Checks keep a copy of their service's name and tags (zone_check.service_name/_tags); when
 * those change, the node's checks of that service are rewritten. */
static int refresh_checks(struct apply *x, const struct zone_service *sv)
{
    struct zone__key k;
    struct rows rows;
    int rc;

    zone__key_row(&k, sv->node, NULL);
    if ((rc = rows_get(x, ZONE__DB_CHECKS, &k, sv->id, &rows)))
        return rc;
    for (size_t i = 0; i < rows.n; i++) {
        struct zone_check ck;
        struct zone__key ck_key;

        if (zone__check_decode(rows.v[i].mv_data, rows.v[i].mv_size, true, x->a, &ck))
            return apply_damaged(x->s, ZONE__DB_CHECKS, &rows.k[i]);
        ck.service_name = sv->name;
        ck.service_tags = sv->tags;
        ck.n_service_tags = sv->n_tags;
        x->s->rec.len = 0;
        zone__check_encode(&ck, &x->s->rec);
        zone__key_copy(&ck_key, &rows.k[i]);
        if ((rc = store_rec(x, ZONE__DB_CHECKS, &ck_key, &rows.v[i], ZONE_TABLE_CHECKS)) < 0)
            return rc;
    }
    return 0;
}

static int upsert_service(struct apply *x, const struct zone_node *node,
                          const struct zone_service *in)
{
    struct zone_service sv = *in, prev;
    struct zone__key k, ik;
    MDB_val old;
    int rc;

    sv.node = node->name;
    if (!*sv.id)
        sv.id = sv.name; /* Consul: the ID defaults to the name */
    if ((rc = check_name(sv.name)) || (rc = check_name(sv.id)))
        return rc;
    /* zone.h: weights default to 1, 1 */
    if (!sv.weight_passing && !sv.weight_warning)
        sv.weight_passing = sv.weight_warning = 1;

    zone__key_row(&k, node->name, sv.id);
    rc = get(x, ZONE__DB_SERVICES, &k, &old);
    if (rc == BASE_ESTORE)
        return rc;
    bool exists = rc == 0;
    if (exists && zone__service_decode(old.mv_data, old.mv_size, true, x->a, &prev))
        return apply_damaged_key(x->s, ZONE__DB_SERVICES, &k);
    sv.create_index = exists ? prev.create_index : x->idx;
    sv.modify_index = exists ? prev.modify_index : x->idx;
    x->s->rec.len = 0;
    zone__service_encode(&sv, &x->s->rec);
    rc = store_rec(x, ZONE__DB_SERVICES, &k, exists ? &old : NULL, ZONE_TABLE_SERVICES);
    if (rc <= 0)
        return rc;

    if (!exists || strcmp(prev.address, sv.address) != 0 || strcmp(prev.name, sv.name) != 0) {
        if ((exists && (rc = addr_del(x, prev.address, node->name, sv.id))) ||
            (rc = addr_put(x, sv.address, node->name, sv.id, sv.name)))
            return rc;
    }
    bool renamed = exists && base_strcasecmp(prev.name, sv.name) != 0;
    if (renamed) {
        zone__key_svcidx(&ik, prev.name, node->name, sv.id);
        if ((rc = del(x, ZONE__DB_SVCIDX, &ik, ZONE_TABLE_SERVICES)))
            return rc;
    }
    if (!exists || renamed) {
        zone__key_svcidx(&ik, sv.name, node->name, sv.id);
        if ((rc = put(x, ZONE__DB_SVCIDX, &ik, "", 0)))
            return rc;
    }
    if (exists && (strcmp(prev.name, sv.name) != 0 || !same_tags(&prev, &sv)))
        return refresh_checks(x, &sv);
    return 0;
}

static int upsert_check(struct apply *x, const struct zone_node *node, const struct zone_check *in)
{
    struct zone_check ck = *in, prev;
    struct zone__key k;
    MDB_val old;
    int rc;

    ck.node = node->name;
    if (!*ck.check_id)
        ck.check_id = ck.name; /* Consul: the check ID defaults to the name */
    if ((rc = check_name(ck.check_id)))
        return rc;
    ck.service_name = "";
    ck.service_tags = NULL;
    ck.n_service_tags = 0;
    if (*ck.service_id) {
        struct zone_service sv;
        MDB_val v;
        zone__key_row(&k, node->name, ck.service_id);
        rc = get(x, ZONE__DB_SERVICES, &k, &v);
        if (rc) /* BASE_ENOTFOUND: a check of a service that is not registered */
            return rc;
        if (zone__service_decode(v.mv_data, v.mv_size, true, x->a, &sv))
            return apply_damaged_key(x->s, ZONE__DB_SERVICES, &k);
        ck.service_name = sv.name;
        ck.service_tags = sv.tags;
        ck.n_service_tags = sv.n_tags;
    }

    zone__key_row(&k, node->name, ck.check_id);
    rc = get(x, ZONE__DB_CHECKS, &k, &old);
    if (rc == BASE_ESTORE)
        return rc;
    bool exists = rc == 0;
    if (exists && zone__check_decode(old.mv_data, old.mv_size, true, x->a, &prev))
        return apply_damaged_key(x->s, ZONE__DB_CHECKS, &k);
    ck.create_index = exists ? prev.create_index : x->idx;
    ck.modify_index = exists ? prev.modify_index : x->idx;
    x->s->rec.len = 0;
    zone__check_encode(&ck, &x->s->rec);
    rc = store_rec(x, ZONE__DB_CHECKS, &k, exists ? &old : NULL, ZONE_TABLE_CHECKS);
    if (rc < 0)
        return rc;
    /* Consul's ensureCheckTxn: a critical check invalidates the sessions tied to it */
    return ck.status == ZONE_HEALTH_CRITICAL ? sessions_invalidate(x, node->name, ck.check_id) : 0;
}

static int apply_register(struct apply *x, const struct zone_cmd *c)
{
    struct zone_node node;
    int rc = check_name(c->node.name);

    if (!rc)
        rc = upsert_node(x, c, &node);
    if (!rc && c->service)
        rc = upsert_service(x, &node, c->service);
    for (size_t i = 0; i < c->n_checks && !rc; i++)
        rc = upsert_check(x, &node, &c->checks[i]);
    return rc;
}

/* ---- deregister ------------------------------------------------------------------------ */
static int drop_service_rows(struct apply *x, const char *node, const struct rows *svcs)
{
    for (size_t i = 0; i < svcs->n; i++) {
        struct zone_service sv;
        struct zone__key ik;
        int rc;
        if (zone__service_decode(svcs->v[i].mv_data, svcs->v[i].mv_size, true, x->a, &sv))
            return apply_damaged(x->s, ZONE__DB_SERVICES, &svcs->k[i]);
        zone__key_svcidx(&ik, sv.name, node, sv.id);
        if ((rc = del(x, ZONE__DB_SVCIDX, &ik, ZONE_TABLE_SERVICES)) ||
            (rc = addr_del(x, sv.address, node, sv.id)))
            return rc;
    }
    return rows_del(x, ZONE__DB_SERVICES, svcs, ZONE_TABLE_SERVICES);
}

static int drop_node(struct apply *x, const char *node)
{
    struct zone__key k;
    struct rows rows;
    int rc;

    if ((rc = sessions_invalidate(x, node, NULL)))
        return rc;
    zone__key_row(&k, node, NULL);
    if ((rc = rows_get(x, ZONE__DB_SERVICES, &k, NULL, &rows)) ||
        (rc = drop_service_rows(x, node, &rows)))
        return rc;
    if ((rc = rows_get(x, ZONE__DB_CHECKS, &k, NULL, &rows)) ||
        (rc = rows_del(x, ZONE__DB_CHECKS, &rows, ZONE_TABLE_CHECKS)))
        return rc;
    zone__key_node(&k, node);
    MDB_val v;
    rc = get(x, ZONE__DB_NODES, &k, &v);
    if (rc == BASE_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    struct zone_node n;
    if (zone__node_decode(v.mv_data, v.mv_size, true, x->a, &n))
        return apply_damaged_key(x->s, ZONE__DB_NODES, &k);
    if ((rc = addr_del(x, n.address, node, "")))
        return rc;
    return del(x, ZONE__DB_NODES, &k, ZONE_TABLE_NODES);
}

static int drop_service(struct apply *x, const char *node, const char *sid)
{
    struct zone__key k;
    struct rows rows;
    MDB_val v;
    int rc;

    zone__key_row(&k, node, sid);
    rc = get(x, ZONE__DB_SERVICES, &k, &v);
    if (rc == BASE_ENOTFOUND)
        return 0; /* Consul: deregistering what is not there succeeds */
    if (rc)
        return rc;
    memset(&rows, 0, sizeof rows);
    MDB_val sk = zone__key_val(&k);
    rows.k = &sk;
    rows.v = &v;
    rows.n = 1;
    if ((rc = drop_service_rows(x, node, &rows)))
        return rc;
    zone__key_row(&k, node, NULL);
    if ((rc = rows_get(x, ZONE__DB_CHECKS, &k, sid, &rows)))
        return rc;
    for (size_t i = 0; i < rows.n; i++) { /* the check id follows lower(node) \0 */
        const char *p = rows.k[i].mv_data, *z = memchr(p, 0, rows.k[i].mv_size);
        if (!z)
            continue;
        size_t off = (size_t)(z - p) + 1;
        char *id = base_arena_strndup(x->a, p + off, rows.k[i].mv_size - off);
        if ((rc = sessions_invalidate(x, node, id)))
            return rc;
    }
    return rows_del(x, ZONE__DB_CHECKS, &rows, ZONE_TABLE_CHECKS);
}

static int apply_deregister(struct apply *x, const struct zone_cmd *c)
{
    int rc;

    if (!*c->node.name)
        return BASE_EPARSE;
    if (!*c->service_id && !*c->check_id)
        return drop_node(x, c->node.name);
    if (*c->service_id && (rc = drop_service(x, c->node.name, c->service_id)))
        return rc;
    if (*c->check_id) {
        struct zone__key k;
        if ((rc = sessions_invalidate(x, c->node.name, c->check_id)))
            return rc;
        zone__key_row(&k, c->node.name, c->check_id);
        return del(x, ZONE__DB_CHECKS, &k, ZONE_TABLE_CHECKS);
    }
    return 0;
}

/* ---- check update ---------------------------------------------------------------------- */
static int apply_check_update(struct apply *x, const struct zone_cmd *c)
{
    struct zone__key k;
    struct zone_check ck;
    MDB_val old;
    int rc;

    if (!*c->node.name || !*c->check_id)
        return BASE_EPARSE;
    zone__key_row(&k, c->node.name, c->check_id);
    if ((rc = get(x, ZONE__DB_CHECKS, &k, &old)))
        return rc;
    if (zone__check_decode(old.mv_data, old.mv_size, true, x->a, &ck))
        return apply_damaged_key(x->s, ZONE__DB_CHECKS, &k);
    ck.status = c->status;
    ck.output = c->output;
    x->s->rec.len = 0;
    zone__check_encode(&ck, &x->s->rec);
    rc = store_rec(x, ZONE__DB_CHECKS, &k, &old, ZONE_TABLE_CHECKS);
    if (rc < 0)
        return rc;
    return ck.status == ZONE_HEALTH_CRITICAL ? sessions_invalidate(x, ck.node, ck.check_id) : 0;
}

/* ---- kv -------------------------------------------------------------------------------- */
static int kv_key(struct zone__key *k, const char *key)
{
    if (!*key)
        return BASE_EPARSE;
    if (strlen(key) > ZONE_KV_MAX_KEY)
        return BASE_ETOOBIG;
    zone__key_kv(k, key);
    return 0;
}

static int apply_kv_set(struct apply *x, const struct zone_cmd *c)
{
    struct zone__key k;
    struct zone_kv kv = c->kv, prev;
    MDB_val old;
    int rc;

    if ((rc = kv_key(&k, c->kv.key)))
        return rc;
    if (kv.value_len > ZONE_KV_MAX_VALUE)
        return BASE_ETOOBIG;
    rc = get(x, ZONE__DB_KV, &k, &old);
    if (rc == BASE_ESTORE)
        return rc;
    bool exists = rc == 0;
    if (exists && zone__kv_decode(old.mv_data, old.mv_size, true, x->a, &prev))
        return apply_damaged_key(x->s, ZONE__DB_KV, &k);
    /* Consul's kvsSetCASTxn: cas 0 creates only; otherwise the ModifyIndex must match */
    if (c->has_cas && (c->cas == 0 ? exists : !exists || prev.modify_index != c->cas))
        return BASE_ECONFLICT;
    /* a plain set keeps the lock: lock index and session change only through acquire and
     * release */
    kv.lock_index = exists ? prev.lock_index : 0;
    kv.session = exists ? prev.session : "";
    kv.create_index = exists ? prev.create_index : x->idx;
    kv.modify_index = x->idx;
    x->s->rec.len = 0;
    zone__kv_encode(&kv, &x->s->rec);
    if ((rc = put(x, ZONE__DB_KV, &k, x->s->rec.data, x->s->rec.len)))
        return rc;
    x->mask |= ZONE_TABLE_BIT(ZONE_TABLE_KV);
    return 0;
}

static int apply_kv_delete(struct apply *x, const struct zone_cmd *c)
{
    struct zone__key k;
    struct zone_kv prev;
    MDB_val old;
    int rc;

    if (c->recurse) {
        struct rows rows;
        zone__key_kv(&k, c->kv.key);
        if ((rc = rows_get(x, ZONE__DB_KV, &k, NULL, &rows)))
            return rc;
        return rows_del(x, ZONE__DB_KV, &rows, ZONE_TABLE_KV);
    }
    if ((rc = kv_key(&k, c->kv.key)))
        return rc;
    rc = get(x, ZONE__DB_KV, &k, &old);
    if (rc == BASE_ENOTFOUND)
        return 0; /* Consul's kvsDeleteCASTxn: a missing key is deleted, whatever the cas */
    if (rc)
        return rc;
    if (c->has_cas) {
        if (zone__kv_decode(old.mv_data, old.mv_size, true, x->a, &prev))
            return apply_damaged_key(x->s, ZONE__DB_KV, &k);
        if (prev.modify_index != c->cas)
            return BASE_ECONFLICT;
    }
    return del(x, ZONE__DB_KV, &k, ZONE_TABLE_KV);
}

/* Consul's kvsLockTxn. */
static int apply_kv_lock(struct apply *x, const struct zone_cmd *c)
{
    struct zone__key k, sk;
    struct zone_kv kv = c->kv, prev;
    struct zone_session ss;
    MDB_val old;
    int rc;

    if ((rc = kv_key(&k, c->kv.key)))
        return rc;
    if (kv.value_len > ZONE_KV_MAX_VALUE)
        return BASE_ETOOBIG;
    rc = session_get(x, c->kv.session, &sk, &ss);
    if (rc)
        return rc == BASE_ENOTFOUND ? BASE_EINVAL : rc; /* invalid session */
    rc = get(x, ZONE__DB_KV, &k, &old);
    if (rc == BASE_ESTORE)
        return rc;
    bool exists = rc == 0;
    if (exists && zone__kv_decode(old.mv_data, old.mv_size, true, x->a, &prev))
        return apply_damaged_key(x->s, ZONE__DB_KV, &k);
    if (c->has_cas && (c->cas == 0 ? exists : !exists || prev.modify_index != c->cas))
        return BASE_ECONFLICT;
    bool holder = exists && strcmp(prev.session, ss.id) == 0;
    if (exists && *prev.session && !holder)
        return BASE_ECONFLICT; /* held by another session */
    kv.session = ss.id;
    kv.lock_index = !exists ? 1 : holder ? prev.lock_index : prev.lock_index + 1;
    kv.create_index = exists ? prev.create_index : x->idx;
    kv.modify_index = x->idx;
    x->s->rec.len = 0;
    zone__kv_encode(&kv, &x->s->rec);
    if ((rc = put(x, ZONE__DB_KV, &k, x->s->rec.data, x->s->rec.len)))
        return rc;
    x->mask |= ZONE_TABLE_BIT(ZONE_TABLE_KV);
    return 0;
}

/* Consul's kvsUnlockTxn. */
static int apply_kv_unlock(struct apply *x, const struct zone_cmd *c)
{
    struct zone__key k;
    struct zone_kv kv = c->kv, prev;
    MDB_val old;
    int rc;

    if ((rc = kv_key(&k, c->kv.key)))
        return rc;
    if (kv.value_len > ZONE_KV_MAX_VALUE)
        return BASE_ETOOBIG;
    rc = get(x, ZONE__DB_KV, &k, &old);
    if (rc)
        return rc == BASE_ENOTFOUND ? BASE_ECONFLICT : rc;
    if (zone__kv_decode(old.mv_data, old.mv_size, true, x->a, &prev))
        return apply_damaged_key(x->s, ZONE__DB_KV, &k);
    if (!*c->kv.session || strcmp(prev.session, c->kv.session) != 0)
        return BASE_ECONFLICT;
    kv.session = "";
    kv.lock_index = prev.lock_index;
    kv.create_index = prev.create_index;
    kv.modify_index = x->idx;
    x->s->rec.len = 0;
    zone__kv_encode(&kv, &x->s->rec);
    if ((rc = put(x, ZONE__DB_KV, &k, x->s->rec.data, x->s->rec.len)))
        return rc;
    x->mask |= ZONE_TABLE_BIT(ZONE_TABLE_KV);
    return 0;
}

/* ---- transactions ---------------------------------------------------------------------- */
/* One op of a TXN (Consul's txnKVS): 0, a positive enum zone_txn_why, or BASE_ESTORE /
 * BASE_EDAMAGED. The writes reuse the single commands' rules; the reads only check. */
static int txn_check(struct apply *x, const struct zone_txn_op *op)
{
    struct zone__key k;
    struct zone_kv kv;
    MDB_val v;
    int rc;

    if (op->verb == ZONE_TXN_KV_GET_TREE)
        return 0;
    if ((rc = kv_key(&k, op->kv.key)))
        return ZONE_TXN_BAD;
    rc = get(x, ZONE__DB_KV, &k, &v);
    if (rc && rc != BASE_ENOTFOUND)
        return rc;
    if (op->verb == ZONE_TXN_KV_CHECK_NOT_EXISTS)
        return rc == 0 ? ZONE_TXN_EXISTS : 0;
    if (rc)
        return ZONE_TXN_MISSING;
    if (zone__kv_decode(v.mv_data, v.mv_size, true, x->a, &kv))
        return apply_damaged_key(x->s, ZONE__DB_KV, &k);
    if (op->verb == ZONE_TXN_KV_CHECK_INDEX && kv.modify_index != op->kv.modify_index)
        return ZONE_TXN_INDEX;
    if (op->verb == ZONE_TXN_KV_CHECK_SESSION && strcmp(kv.session, op->kv.session) != 0)
        return ZONE_TXN_OTHER_SESSION;
    return 0;
}

/* The stored record of a node op (ZONE__DB_NODES), service op (SERVICES) or check op
 * (CHECKS): 0 with its ModifyIndex, ZONE_TXN_MISSING, or BASE_ESTORE / BASE_EDAMAGED. */
static int txn_stored(struct apply *x, const struct zone_txn_op *op, uint64_t *modify_index)
{
    struct zone__key k;
    enum zone__db d;
    MDB_val v;
    int rc;

    switch (zone_txn_verb_kind(op->verb)) {
    case ZONE_TXN_NODE:
        d = ZONE__DB_NODES;
        zone__key_node(&k, op->node.name);
        break;
    case ZONE_TXN_SERVICE:
        d = ZONE__DB_SERVICES;
        zone__key_row(&k, op->node.name, *op->service.id ? op->service.id : op->service.name);
        break;
    default:
        d = ZONE__DB_CHECKS;
        zone__key_row(&k, op->check.node,
                      *op->check.check_id ? op->check.check_id : op->check.name);
        break;
    }
    rc = get(x, d, &k, &v);
    if (rc == BASE_ENOTFOUND)
        return ZONE_TXN_MISSING;
    if (rc)
        return rc;
    bool bad;
    if (d == ZONE__DB_NODES) {
        struct zone_node n;
        bad = zone__node_decode(v.mv_data, v.mv_size, true, x->a, &n) != 0;
        *modify_index = n.modify_index;
    } else if (d == ZONE__DB_SERVICES) {
        struct zone_service sv;
        bad = zone__service_decode(v.mv_data, v.mv_size, true, x->a, &sv) != 0;
        *modify_index = sv.modify_index;
    } else {
        struct zone_check ck;
        bad = zone__check_decode(v.mv_data, v.mv_size, true, x->a, &ck) != 0;
        *modify_index = ck.modify_index;
    }
    return bad ? apply_damaged_key(x->s, d, &k) : 0;
}

/* cas and delete-cas (Consul's ensureNodeCASTxn and deleteNodeCASTxn, the same for services
 * and checks): 0 when the op may go on, ZONE_TXN_STALE, or a storage error. */
static int txn_cas(struct apply *x, const struct zone_txn_op *op, uint64_t index, bool del)
{
    uint64_t cur = 0;
    int rc = txn_stored(x, op, &cur);
    if (rc < 0)
        return rc;
    bool exists = rc == 0;
    if (del)
        return exists && cur == index ? 0 : ZONE_TXN_STALE;
    if (index == 0)
        return exists ? ZONE_TXN_STALE : 0;
    return exists && cur == index ? 0 : ZONE_TXN_STALE;
}

/* Node, service and check ops, with REGISTER's and DEREGISTER's rules. */
static int txn_catalog(struct apply *x, const struct zone_txn_op *op)
{
    enum zone_txn_kind kind = zone_txn_verb_kind(op->verb);
    uint64_t cur;
    int rc = 0;

    if (check_name(op->node.name))
        return ZONE_TXN_BAD;
    switch (op->verb) {
    case ZONE_TXN_NODE_GET:
    case ZONE_TXN_SERVICE_GET:
    case ZONE_TXN_CHECK_GET:
        rc = txn_stored(x, op, &cur);
        return rc;
    case ZONE_TXN_NODE_CAS:
        rc = txn_cas(x, op, op->node.modify_index, false);
        break;
    case ZONE_TXN_SERVICE_CAS:
        rc = txn_cas(x, op, op->service.modify_index, false);
        break;
    case ZONE_TXN_CHECK_CAS:
        rc = txn_cas(x, op, op->check.modify_index, false);
        break;
    case ZONE_TXN_NODE_DELETE_CAS:
        rc = txn_cas(x, op, op->node.modify_index, true);
        break;
    case ZONE_TXN_SERVICE_DELETE_CAS:
        rc = txn_cas(x, op, op->service.modify_index, true);
        break;
    case ZONE_TXN_CHECK_DELETE_CAS:
        rc = txn_cas(x, op, op->check.modify_index, true);
        break;
    default:
        break;
    }
    if (rc)
        return rc;
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.node = op->node;
    c.service_id = c.check_id = "";
    switch (op->verb) {
    case ZONE_TXN_NODE_DELETE:
    case ZONE_TXN_NODE_DELETE_CAS:
        return drop_node(x, op->node.name);
    case ZONE_TXN_SERVICE_DELETE:
    case ZONE_TXN_SERVICE_DELETE_CAS:
        return drop_service(x, op->node.name, *op->service.id ? op->service.id : op->service.name);
    case ZONE_TXN_CHECK_DELETE:
    case ZONE_TXN_CHECK_DELETE_CAS:
        c.type = ZONE_CMD_DEREGISTER;
        c.check_id = *op->check.check_id ? op->check.check_id : op->check.name;
        return apply_deregister(x, &c);
    default:
        break;
    }
    struct zone_node node;
    if (kind == ZONE_TXN_NODE) {
        rc = upsert_node(x, &c, &node);
    } else {
        /* a service or check needs its node registered (Consul's ErrMissingNode) */
        struct zone_txn_op nop;
        memset(&nop, 0, sizeof nop);
        nop.verb = ZONE_TXN_NODE_GET;
        nop.node.name = op->node.name;
        if ((rc = txn_stored(x, &nop, &cur)))
            return rc == ZONE_TXN_MISSING ? ZONE_TXN_NO_NODE : rc;
        c.skip_node_update = true;
        if ((rc = upsert_node(x, &c, &node)))
            return rc;
        if (kind == ZONE_TXN_SERVICE) {
            rc = upsert_service(x, &node, &op->service);
        } else {
            rc = upsert_check(x, &node, &op->check);
            if (rc == BASE_ENOTFOUND)
                return ZONE_TXN_NO_SERVICE;
        }
    }
    if (rc == BASE_ESTORE || rc == BASE_EDAMAGED || rc == 0)
        return rc;
    return ZONE_TXN_BAD;
}

static int txn_op(struct apply *x, const struct zone_txn_op *op)
{
    struct zone_cmd c;
    int rc;

    memset(&c, 0, sizeof c);
    c.kv = op->kv;
    c.kv.lock_index = c.kv.create_index = c.kv.modify_index = 0;
    switch (op->verb) {
    case ZONE_TXN_KV_CAS:
        c.has_cas = true;
        c.cas = op->kv.modify_index;
        /* fall through */
    case ZONE_TXN_KV_SET:
        rc = apply_kv_set(x, &c);
        break;
    case ZONE_TXN_KV_LOCK:
    case ZONE_TXN_KV_UNLOCK:
        if (!*op->kv.session)
            return ZONE_TXN_NO_SESSION;
        rc = op->verb == ZONE_TXN_KV_LOCK ? apply_kv_lock(x, &c) : apply_kv_unlock(x, &c);
        if (rc == BASE_ECONFLICT)
            return op->verb == ZONE_TXN_KV_LOCK ? ZONE_TXN_HELD : ZONE_TXN_NOT_HELD;
        if (rc == BASE_EINVAL)
            return ZONE_TXN_INVALID_SESSION;
        break;
    case ZONE_TXN_KV_DELETE_CAS:
        c.has_cas = true;
        c.cas = op->kv.modify_index;
        /* fall through */
    case ZONE_TXN_KV_DELETE:
    case ZONE_TXN_KV_DELETE_TREE:
        c.recurse = op->verb == ZONE_TXN_KV_DELETE_TREE;
        rc = apply_kv_delete(x, &c);
        break;
    case ZONE_TXN_KV_GET:
    case ZONE_TXN_KV_GET_TREE:
    case ZONE_TXN_KV_CHECK_INDEX:
    case ZONE_TXN_KV_CHECK_SESSION:
    case ZONE_TXN_KV_CHECK_NOT_EXISTS:
        return txn_check(x, op);
    case ZONE_TXN_SESSION_DELETE:
        if (!*op->kv.session)
            return ZONE_TXN_NO_SESSION;
        c.session.id = op->kv.session;
        rc = apply_session_destroy(x, &c);
        return rc == 0 || rc == BASE_ESTORE || rc == BASE_EDAMAGED ? rc : ZONE_TXN_BAD;
    default:
        return zone_txn_verb_kind(op->verb) ? txn_catalog(x, op) : ZONE_TXN_BAD;
    }
    if (rc == BASE_ESTORE || rc == BASE_EDAMAGED || rc == 0)
        return rc;
    return rc == BASE_ECONFLICT ? ZONE_TXN_STALE : ZONE_TXN_BAD;
}

/* All or nothing: the command's nested transaction is aborted by the caller on any failure. */
static int apply_txn(struct apply *x, const struct zone_cmd *c)
{
    if (c->n_txn == 0 || c->n_txn > ZONE_TXN_MAX_OPS)
        return BASE_EPARSE;
    for (size_t i = 0; i < c->n_txn; i++) {
        int rc = txn_op(x, &c->txn[i]);
        if (rc < 0)
            return rc;
        if (rc > 0)
            return ZONE_TXN_FAILURE(i, rc);
    }
    return 0;
}

static int apply_one(struct apply *x, const struct zone_cmd *c)
{
    switch (c->type) {
    case ZONE_CMD_REGISTER:
        return apply_register(x, c);
    case ZONE_CMD_DEREGISTER:
        return apply_deregister(x, c);
    case ZONE_CMD_CHECK_UPDATE:
        return apply_check_update(x, c);
    case ZONE_CMD_KV_SET:
        return apply_kv_set(x, c);
    case ZONE_CMD_KV_DELETE:
        return apply_kv_delete(x, c);
    case ZONE_CMD_RESTORE_BEGIN:
    case ZONE_CMD_RESTORE_CHUNK:
    case ZONE_CMD_RESTORE_END:
        return zone__restore_apply(x->s, x->t, x->idx, c, &x->mask, &x->result);
    case ZONE_CMD_SESSION_CREATE:
        return apply_session_create(x, c);
    case ZONE_CMD_SESSION_DESTROY:
        return apply_session_destroy(x, c);
    case ZONE_CMD_SESSION_RENEW:
        return apply_session_renew(x, c);
    case ZONE_CMD_KV_LOCK:
        return apply_kv_lock(x, c);
    case ZONE_CMD_KV_UNLOCK:
        return apply_kv_unlock(x, c);
    case ZONE_CMD_TXN:
        return apply_txn(x, c);
    }
    return BASE_EPARSE;
}

int zone_store_txn_errors(struct zone_store *s, const struct zone_txn_op *ops, size_t n,
                          void (*cb)(void *data, size_t op, enum zone_txn_why why), void *data)
{
    MDB_txn *t, *child;
    uint64_t applied;
    int err = 0;

    BASE_ASSERT_LOOP();
    if (mdb_txn_begin(s->env, NULL, 0, &t))
        return BASE_ESTORE;
    if (zone__meta_read(t, s->dbi[ZONE__DB_META], ZONE__META_APPLIED, &applied)) {
        mdb_txn_abort(t);
        return BASE_ESTORE;
    }
    base_arena_reset(&s->arena);
    for (size_t i = 0; i < n && !err; i++) {
        if (mdb_txn_begin(s->env, t, 0, &child)) {
            err = BASE_ESTORE;
            break;
        }
        struct apply x = {.s = s, .t = child, .idx = applied + 1, .a = &s->arena};
        int rc = txn_op(&x, &ops[i]);
        if (rc != 0) {
            mdb_txn_abort(child);
            if (rc < 0)
                err = rc;
            else
                cb(data, i, (enum zone_txn_why)rc);
            continue;
        }
        if (mdb_txn_commit(child))
            err = BASE_ESTORE;
    }
    mdb_txn_abort(t); /* a dry run: nothing is kept, lock delays included (x.delays) */
    base_arena_reset(&s->arena);
    return err;
}

/* ---- one entry ------------------------------------------------------------------------- */
static int write_meta(struct zone_store *s, MDB_txn *t, uint64_t idx, uint32_t mask)
{
    MDB_dbi m = s->dbi[ZONE__DB_META];
    int rc = zone__meta_write(t, m, ZONE__META_APPLIED, idx);

    for (int i = 0; i < ZONE_TABLE_COUNT && !rc; i++)
        if (mask & ZONE_TABLE_BIT(i))
            rc = zone__meta_write(t, m, zone__table_keys[i], idx);
    if (!rc && mask)
        rc = zone__meta_write(t, m, ZONE__META_INDEX, idx);
    if (!rc)
        rc = zone__meta_seal(t, m);
    return rc;
}

int zone_store_apply(struct zone_store *s, uint64_t idx, const struct base_slice *cmds, size_t n,
                     int *results, uint32_t *touched)
{
    MDB_txn *t;
    uint64_t applied;
    uint32_t mask = 0;
    int err = BASE_ESTORE;

    BASE_ASSERT_LOOP();
    *touched = 0;
    s->renewed.len = 0;
    for (size_t i = 0; i < n; i++)
        results[i] = 0;
    if (mdb_txn_begin(s->env, NULL, 0, &t))
        return BASE_ESTORE;
    /* the applied index decides what applies: it must be the one written */
    if ((err = zone__meta_verify(t, s->dbi[ZONE__DB_META]))) {
        if (err == BASE_EDAMAGED)
            LOG_ERR("zone", "catalog meta rows (applied and table indexes) failed their checksum");
        goto fail;
    }
    err = BASE_ESTORE;
    if (zone__meta_read(t, s->dbi[ZONE__DB_META], ZONE__META_APPLIED, &applied))
        goto fail;
    if (idx <= applied) { /* replay of an entry this store already holds */
        mdb_txn_abort(t);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        struct zone_cmd c;
        MDB_txn *child;

        base_arena_reset(&s->arena);
        if (zone_cmd_decode(cmds[i].p, cmds[i].n, &s->arena, &c)) {
            results[i] = BASE_EPARSE;
            continue;
        }
        if (mdb_txn_begin(s->env, t, 0, &child))
            goto fail;
        struct apply x = {.s = s, .t = child, .idx = idx, .a = &s->arena};
        int rc = apply_one(&x, &c);
        if (rc) {
            mdb_txn_abort(child);
            if (rc == BASE_ESTORE || rc == BASE_EDAMAGED) {
                err = rc;
                goto fail;
            }
            results[i] = rc;
            continue;
        }
        if (mdb_txn_commit(child))
            goto fail;
        for (size_t d = 0; d < x.n_delays; d++)
            delay_set(s, x.delays[d].key, x.delays[d].until);
        mask |= x.mask;
        results[i] = x.result;
    }
    base_arena_reset(&s->arena);
    if (write_meta(s, t, idx, mask))
        goto fail;
    if (mdb_txn_commit(t)) {
        t = NULL; /* a failed commit frees the transaction */
        goto fail;
    }
    *touched = mask;
    return 0;

fail:
    if (t)
        mdb_txn_abort(t);
    s->renewed.len = 0;
    base_arena_reset(&s->arena);
    for (size_t i = 0; i < n; i++)
        results[i] = 0;
    return err;
}
