/* Client replicas (DESIGN.md 2.7): a client agent keeps a read-only copy of the catalog in its
 * own store, fed by one server's stream of committed entries (FOLLOW on the server port).
 *
 * The stream. FOLLOW is a long poll over the ordinary request/response RPC (rpc/call.c), so it
 * rides on the server port's handshake, key, caps and timeouts. The client asks with
 * {u64 applied, u64 snap_index, u64 snap_offset, u64 conf}: its store's applied index, the
 * snapshot it is assembling (0: none) and the fingerprint of the configuration it holds. The
 * server answers with a header (status 0, the leader it knows, its term and applied index,
 * its configuration's fingerprint and, only when that differs from the client's, the
 * configuration) and either
 *   entries: the committed entries after `applied`, in index order, exactly the payloads its
 *     FSM applied (at most REPL_REPLY_BYTES and REPL_ENTRIES_MAX per reply, at least one);
 *   a snapshot piece: when the client is behind what the server retains, the server's catalog
 *     snapshot (zone_store_snapshot's bytes, serialized off the loop by a libuv worker, made
 *     once and shared by every client that needs it while the entries after it are still
 *     retained; clients waiting for it are held and get heartbeats), REPL_REPLY_BYTES at a
 *     time;
 *   nothing (the heartbeat): a client that has everything waits at most REPL_HOLD_MS for the
 *     next entry (the request is held), then gets the header alone.
 * The client applies entries through the same zone apply with the same index (so CreateIndex
 * and ModifyIndex agree with the servers'), restores a complete snapshot with
 * zone_store_restore, and asks again at once. on_applied runs for each, as on a server.
 *
 * Retention (server). Once a first client asked (a server without clients keeps nothing),
 * every entry the FSM applies is copied into a ring bounded by REPL_RETAIN_BYTES and
 * REPL_RETAIN_ENTRIES; `floor` is the index below which entries are gone (every command entry
 * above it is in the ring), so a client whose applied index is below the floor gets a
 * snapshot, never entries with a gap (a held request is checked again when it is answered).
 * A server restoring a snapshot starts its ring again at the snapshot's index.
 *
 * Caps (server). At most REPL_FOLLOW_MAX requests are held at once (more are refused with
 * -EBUSY: the client tries another server); a connection whose unsent replies exceed
 * REPL_BACKLOG_MAX (a client that does not read) is closed at its next FOLLOW, with what it
 * had queued, so a client never grows the server's memory much beyond that bound. Nothing on the
 * loop is proportional to the catalog: a reply holds at most REPL_REPLY_BYTES of entries or
 * snapshot.
 *
 * Failover (client). The client follows one server at a time, picked at random among those
 * cons_server_seen named (so clients spread over the servers), and moves to another when its
 * call fails: the connection is lost, no answer within REPL_HOLD_MS plus the silent-peer bound
 * (cons__silent_ms, failover.c), or the server refuses (not a member any more, still forming,
 * busy). Writes and read indexes go to the leader the stream names (forward.c), so a write
 * whose answer is lost is still BASE_EUNKNOWN, never retried.
 *
 * Every byte of a reply is decoded and bounds-checked before anything is applied. */
#include "internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define REPL_RETAIN_BYTES   (16u << 20) /* entry bytes kept for followers; older: snapshot */
#define REPL_RETAIN_ENTRIES 65536u      /* entries kept for followers */
#define REPL_FOLLOW_MAX     4096u       /* FOLLOW requests held at once (waiting clients) */
#define REPL_REPLY_BYTES    (1u << 20)  /* entry bytes per reply (at least one), a snapshot piece */
#define REPL_ENTRIES_MAX    4096u       /* entries per reply */
#define REPL_HOLD_MS        250u        /* the heartbeat: an up-to-date client hears this often */
#define REPL_BACKLOG_MAX    (4u << 20)  /* unsent reply bytes to one connection */
#define REPL_SNAP_IDLE_MS   30000u      /* an unused snapshot is dropped */
#define REPL_SNAP_MAX       ((uint64_t)1 << 36) /* the largest snapshot a client assembles */
#define REPL_CONF_MAX       256u                /* servers in a configuration report */
#define REPL_RETRY_MS       100u                /* after a failed call, before the next server */
#define REPL_RETRY_MAX_MS   2000u
#define REPL_APPLY_SLICE_MS 10u /* a client applies entries this long per loop iteration */

struct repl_ent {
    uint64_t index;
    uint8_t *data;
    size_t len;
};

struct repl_held {
    struct repl_held *next;
    struct rpc_req *req;
    uint64_t applied, snap_index, off, conf; /* what the client asked */
    uint64_t deadline;
};

struct repl_job;

struct repl_seen {
    uint64_t id;
    char *address;
};

struct repl_conf {
    uint64_t id;
    char *address;
    int role;
};

struct cons_repl {
    /* server: retention */
    struct repl_ent *ring;
    size_t cap, first, n, bytes;
    uint64_t floor, last;
    /* server: held requests and the shared snapshot */
    struct repl_held *held;
    unsigned n_held;
    bool retaining; /* a client asked: entries are kept from then on */
    uint8_t *snap;
    size_t snap_len;
    uint64_t snap_index, snap_used_at;
    struct repl_job *job; /* a snapshot being made off the loop */
    bool job_failed;      /* (while its waiters are answered) */

    /* client */
    struct repl_seen *seen;
    size_t n_seen;
    char *following; /* the server followed (NULL: pick one) */
    char *failed;    /* the last one that failed (avoided when there is another) */
    bool inflight;
    unsigned failures;
    uint64_t retry_at;
    uint64_t leader_id;
    char *leader_address;
    uint64_t term;
    struct repl_conf *conf;
    size_t n_conf;
    uint64_t conf_hash;      /* of the configuration held (0: none yet) */
    struct base_buf asm_buf; /* a snapshot being assembled */
    uint64_t asm_index, asm_total;
    /* entries of a reply not applied yet (a copy), applied a slice per loop iteration */
    struct base_buf pend;
    struct base_rd pend_rd;
    uint32_t pend_left;
    bool told;
    uint64_t told_leader;
    uint64_t warn_at;
    struct base_arena arena;
};

/* ---- shared ---------------------------------------------------------------------------- */

void cons__repl_init(struct cons *c)
{
    struct cons_repl *rs = base_calloc(1, sizeof *rs);
    rs->floor = rs->last = c->applied;
    base_buf_init(&rs->asm_buf);
    base_arena_init(&rs->arena);
    c->repl = rs;
}

static struct repl_ent *ring_at(struct cons_repl *rs, size_t i)
{
    return &rs->ring[(rs->first + i) % rs->cap];
}

static void ring_pop(struct cons_repl *rs)
{
    struct repl_ent *e = ring_at(rs, 0);
    rs->floor = e->index;
    rs->bytes -= e->len;
    base_free(e->data);
    rs->first = (rs->first + 1) % rs->cap;
    rs->n--;
}

static void conf_clear(struct cons_repl *rs)
{
    for (size_t i = 0; i < rs->n_conf; i++)
        base_free(rs->conf[i].address);
    base_free(rs->conf);
    rs->conf = NULL;
    rs->n_conf = 0;
}

void cons__repl_free(struct cons *c)
{
    struct cons_repl *rs = c->repl;
    if (!rs)
        return;
    assert(!rs->held);
    while (rs->n)
        ring_pop(rs);
    base_free(rs->ring);
    base_free(rs->snap);
    for (size_t i = 0; i < rs->n_seen; i++)
        base_free(rs->seen[i].address);
    base_free(rs->seen);
    base_free(rs->following);
    base_free(rs->failed);
    base_free(rs->leader_address);
    conf_clear(rs);
    base_buf_free(&rs->asm_buf);
    base_buf_free(&rs->pend);
    base_arena_close(&rs->arena);
    base_free(rs);
    c->repl = NULL;
}

/* ---- server: retention ----------------------------------------------------------------- */

void cons__repl_retain(struct cons *c, uint64_t index, const void *p, size_t len)
{
    struct cons_repl *rs = c->repl;
    if (!rs || index <= rs->last)
        return; /* replayed: the ring starts above the catalog's index at start */
    if (!rs->retaining) {
        /* no client asked yet: nothing kept (the first one gets a snapshot) */
        rs->floor = rs->last = index;
        return;
    }
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? 2 * rs->cap : 64;
        struct repl_ent *ring = base_malloc(cap * sizeof *ring);
        for (size_t i = 0; i < rs->n; i++)
            ring[i] = *ring_at(rs, i);
        base_free(rs->ring);
        rs->ring = ring;
        rs->cap = cap;
        rs->first = 0;
    }
    struct repl_ent *e = &rs->ring[(rs->first + rs->n) % rs->cap];
    e->index = index;
    e->len = len;
    e->data = base_malloc(len ? len : 1);
    if (len)
        memcpy(e->data, p, len);
    rs->n++;
    rs->bytes += len;
    rs->last = index;
    while (rs->n > 1 && (rs->bytes > REPL_RETAIN_BYTES || rs->n > REPL_RETAIN_ENTRIES))
        ring_pop(rs);
    if (rs->held)
        cons__schedule(c); /* the flush answers the waiting clients */
}

void cons__repl_restored(struct cons *c, uint64_t index)
{
    struct cons_repl *rs = c->repl;
    if (!rs)
        return;
    while (rs->n)
        ring_pop(rs);
    rs->floor = rs->last = index;
}

/* ---- server: serving FOLLOW ------------------------------------------------------------ */

static void reply_status(struct rpc_req *req, int st)
{
    struct base_buf b;
    base_buf_init(&b);
    base_buf_put_u32(&b, rpc_status_enc(st));
    rpc_reply(req, &b);
    base_buf_free(&b);
}

/* The configuration's fingerprint (FNV-1a; never 0): a client names the one it holds, and
 * gets the configuration only when it changed. */
static uint64_t conf_hash(const struct raft_configuration *conf, unsigned n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned i = 0; i < n; i++) {
        uint64_t v[2] = {conf->servers[i].id, (uint64_t)conf->servers[i].role};
        const uint8_t *p = (const uint8_t *)v;
        for (size_t k = 0; k < sizeof v; k++)
            h = (h ^ p[k]) * 0x100000001b3ull;
        for (const char *a = conf->servers[i].address; *a; a++)
            h = (h ^ (uint8_t)*a) * 0x100000001b3ull;
        h = (h ^ 0xff) * 0x100000001b3ull;
    }
    return h ? h : 1;
}

static void put_header(struct cons *c, struct base_buf *b, uint64_t their_conf)
{
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&c->raft, &lid, &laddr);
    base_buf_put_u32(b, 0);
    base_buf_put_u64(b, lid);
    base_buf_put_str(b, lid && laddr ? laddr : "");
    base_buf_put_u64(b, raft_current_term(&c->raft));
    base_buf_put_u64(b, c->applied);
    const struct raft_configuration *conf = &c->raft.configuration;
    unsigned n = conf->n < REPL_CONF_MAX ? conf->n : REPL_CONF_MAX;
    uint64_t hash = conf_hash(conf, n);
    base_buf_put_u64(b, hash);
    base_buf_put_u8(b, hash != their_conf);
    if (hash == their_conf)
        return;
    base_buf_put_u32(b, n);
    for (unsigned i = 0; i < n; i++) {
        base_buf_put_u64(b, conf->servers[i].id);
        base_buf_put_str(b, conf->servers[i].address);
        base_buf_put_u8(b, (uint8_t)conf->servers[i].role);
    }
}

/* The position of the first retained entry above applied (rs->n: none). */
static size_t ring_after(struct cons_repl *rs, uint64_t applied)
{
    size_t lo = 0, hi = rs->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring_at(rs, mid)->index <= applied)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The entries after applied (none: the heartbeat). Only for applied >= floor: below it the
 * ring lacks entries, and sending the rest would leave a gap in the client's replica. */
static void reply_entries(struct cons *c, struct rpc_req *req, uint64_t applied, bool heartbeat,
                          uint64_t their_conf)
{
    struct cons_repl *rs = c->repl;
    struct base_buf b;
    assert(heartbeat || applied >= rs->floor);
    base_buf_init(&b);
    put_header(c, &b, their_conf);
    base_buf_put_u8(&b, CONS_FOLLOW_ENTRIES);
    size_t from = heartbeat ? rs->n : ring_after(rs, applied), n = 0, bytes = 0;
    while (from + n < rs->n && n < REPL_ENTRIES_MAX &&
           (n == 0 || bytes + ring_at(rs, from + n)->len <= REPL_REPLY_BYTES)) {
        bytes += ring_at(rs, from + n)->len;
        n++;
    }
    base_buf_put_u32(&b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        struct repl_ent *e = ring_at(rs, from + i);
        base_buf_put_u64(&b, e->index);
        base_buf_put_bytes(&b, e->data, e->len);
    }
    rpc_reply(req, &b);
    base_buf_free(&b);
}

/* A piece of the shared snapshot at off (0 when off is past its end). */
static void reply_piece(struct cons *c, struct rpc_req *req, uint64_t off, uint64_t their_conf)
{
    struct cons_repl *rs = c->repl;
    if (off > rs->snap_len)
        off = 0;
    rs->snap_used_at = uv_now(c->loop);
    size_t piece = rs->snap_len - (size_t)off;
    if (piece > REPL_REPLY_BYTES)
        piece = REPL_REPLY_BYTES;
    struct base_buf b;
    base_buf_init(&b);
    put_header(c, &b, their_conf);
    base_buf_put_u8(&b, CONS_FOLLOW_SNAPSHOT);
    base_buf_put_u64(&b, rs->snap_index);
    base_buf_put_u64(&b, rs->snap_len);
    base_buf_put_u64(&b, off);
    base_buf_put_bytes(&b, rs->snap + off, piece);
    rpc_reply(req, &b);
    base_buf_free(&b);
}

/* Snapshots for clients are serialized off the loop (zone_store_snapshot and
 * zone_snapshot_check may run on any thread), one at a time; clients waiting for one are held
 * (and get heartbeats meanwhile). */
struct repl_job {
    uv_work_t w;
    struct cons *c;
    struct zone_store *store;
    struct base_buf buf;
    int rv;
    uint64_t applied;
    uint64_t t0;
    char errmsg[BASE_ERRMSG_LEN];
};

static void job_work(uv_work_t *w)
{
    struct repl_job *j = BASE_CONTAINER_OF(w, struct repl_job, w);
    struct zone_snapshot_info info;
    j->rv = zone_store_snapshot(j->store, &j->buf);
    if (j->rv == 0)
        j->rv = zone_snapshot_check(j->buf.data, j->buf.len, &info, j->errmsg);
    if (j->rv == 0)
        j->applied = info.applied;
}

static void held_sweep(struct cons *c, bool expire, int stop_status);

static void job_done(uv_work_t *w, int status)
{
    struct repl_job *j = BASE_CONTAINER_OF(w, struct repl_job, w);
    struct cons *c = j->c;
    struct cons_repl *rs = c->repl;
    rs->job = NULL;
    if (status == 0 && j->rv == 0 && !c->stopping) {
        base_free(rs->snap);
        rs->snap = j->buf.data;
        rs->snap_len = j->buf.len;
        rs->snap_index = j->applied;
        rs->snap_used_at = uv_now(c->loop);
        LOG_INFO("consensus", "snapshot for clients at %" PRIu64 ": %zu bytes in %.1f ms",
                 rs->snap_index, rs->snap_len, (double)(uv_hrtime() - j->t0) / 1e6);
    } else {
        if (!c->stopping)
            LOG_WARN("consensus", "snapshot for clients: %s %s",
                     base_strerror(status ? status : j->rv), j->errmsg);
        base_buf_free(&j->buf);
        rs->job_failed = !c->stopping;
    }
    base_free(j);
    if (!c->stopping && rs->held)
        held_sweep(c, false, 0);
    rs->job_failed = false;
    cons__unpend(c); /* may free c (stopping) */
}

static bool job_start(struct cons *c)
{
    struct cons_repl *rs = c->repl;
    if (rs->job)
        return true;
    struct repl_job *j = base_calloc(1, sizeof *j);
    j->c = c;
    j->store = c->store;
    j->t0 = uv_hrtime();
    base_buf_init(&j->buf);
    if (uv_queue_work(c->loop, &j->w, job_work, job_done) != 0) {
        base_free(j);
        return false;
    }
    rs->job = j;
    c->pending++;
    return true;
}

/* Answers a FOLLOW now when there is something to send (expired: at least the heartbeat);
 * false: nothing yet, hold it. */
static bool answer(struct cons *c, struct rpc_req *req, uint64_t applied, uint64_t snap_index,
                   uint64_t off, uint64_t their_conf, bool expired)
{
    struct cons_repl *rs = c->repl;
    if (snap_index != 0 || applied < rs->floor) {
        bool usable = rs->snap && rs->snap_index >= rs->floor;
        if (usable) {
            reply_piece(c, req, snap_index == rs->snap_index ? off : 0, their_conf);
            return true;
        }
        if (rs->job_failed || !job_start(c)) {
            reply_status(req, BASE_ESTORE);
            return true;
        }
        if (expired)
            reply_entries(c, req, applied, true, their_conf);
        return expired;
    }
    if (ring_after(rs, applied) < rs->n || expired) {
        reply_entries(c, req, applied, false, their_conf);
        return true;
    }
    return false;
}

void cons__follow_serve(struct cons *c, struct rpc_req *req, const uint8_t *body, size_t len)
{
    struct cons_repl *rs = c->repl;
    struct base_rd r;
    base_rd_init(&r, body, len);
    uint64_t applied = base_rd_u64(&r);
    uint64_t snap_index = base_rd_u64(&r);
    uint64_t off = base_rd_u64(&r);
    uint64_t their_conf = base_rd_u64(&r);
    if (r.err || r.left != 0 || applied > CONS_WIRE_INDEX_MAX || snap_index > CONS_WIRE_INDEX_MAX ||
        off > REPL_SNAP_MAX || (!snap_index && off)) {
        rpc_refuse_log(c->rpc, &rpc_req_peer(req)->sa, "malformed FOLLOW request");
        reply_status(req, BASE_EPARSE);
        return;
    }
    if (c->stopping || c->is_client || !rs) {
        reply_status(req, BASE_ESHUTDOWN);
        return;
    }
    if (!c->raft_started || c->raft.configuration.n == 0) {
        reply_status(req, BASE_ENOLEADER); /* still forming or joining */
        return;
    }
    if (cons__role_of(c, c->id) < 0) {
        reply_status(req, BASE_ESHUTDOWN); /* no longer a member: follow another */
        return;
    }
    if (rpc_req_backlog(req) > REPL_BACKLOG_MAX) {
        /* it reconnects and catches up (by snapshot if need be) */
        rpc_req_drop(req, "FOLLOW from a client that does not read: dropped");
        return;
    }
    if (!rs->retaining) {
        LOG_INFO("consensus", "a client follows: keeping committed entries for clients");
        rs->retaining = true;
    }
    if (answer(c, req, applied, snap_index, off, their_conf, false))
        return;
    if (rs->n_held >= REPL_FOLLOW_MAX) {
        rpc_refuse_log(c->rpc, &rpc_req_peer(req)->sa, "too many FOLLOW streams");
        reply_status(req, -EBUSY);
        return;
    }
    struct repl_held *h = base_malloc(sizeof *h);
    h->req = req;
    h->applied = applied;
    h->snap_index = snap_index;
    h->off = off;
    h->conf = their_conf;
    h->deadline = uv_now(c->loop) + REPL_HOLD_MS;
    h->next = rs->held;
    rs->held = h;
    rs->n_held++;
}

/* Answers the held requests that have news, or whose hold ran out (expire), or all of them
 * with status (stop). */
static void held_sweep(struct cons *c, bool expire, int stop_status)
{
    struct cons_repl *rs = c->repl;
    uint64_t now = uv_now(c->loop);
    struct repl_held *list = rs->held, *keep = NULL;
    rs->held = NULL;
    while (list) {
        struct repl_held *h = list;
        list = h->next;
        bool done = true;
        if (stop_status)
            reply_status(h->req, stop_status);
        else
            done = answer(c, h->req, h->applied, h->snap_index, h->off, h->conf,
                          expire && now >= h->deadline);
        if (done) {
            rs->n_held--;
            base_free(h);
        } else {
            h->next = keep;
            keep = h;
        }
    }
    while (keep) {
        struct repl_held *h = keep;
        keep = h->next;
        h->next = rs->held;
        rs->held = h;
    }
}

static void pend_continue(struct cons *c);

void cons__repl_flush(struct cons *c)
{
    if (c->repl && c->repl->held && !c->is_client)
        held_sweep(c, false, 0);
    if (c->repl && c->is_client && c->repl->pend_left && !c->stopping)
        pend_continue(c);
}

void cons__repl_stop(struct cons *c)
{
    if (c->repl && c->repl->held)
        held_sweep(c, false, BASE_ESHUTDOWN);
    if (c->repl && c->repl->job)
        uv_cancel((uv_req_t *)&c->repl->job->w); /* job_done runs either way */
}

/* ---- client: following ----------------------------------------------------------------- */

static void follow_send(struct cons *c);

static void seen_pick(struct cons *c)
{
    struct cons_repl *rs = c->repl;
    size_t cand[REPL_CONF_MAX], n = 0;
    for (size_t i = 0; i < rs->n_seen && n < REPL_CONF_MAX; i++)
        if (!rs->failed || rs->n_seen == 1 || strcmp(rs->seen[i].address, rs->failed) != 0)
            cand[n++] = i;
    if (n == 0)
        return;
    uint64_t x = uv_hrtime() ^ (c->id * 0x9e3779b97f4a7c15ull);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    rs->following = base_strdup(rs->seen[cand[x % n]].address);
    LOG_INFO("consensus", "client: following server %s", rs->following);
}

static void follow_fail(struct cons *c, const char *why, int status)
{
    struct cons_repl *rs = c->repl;
    uint64_t now = uv_now(c->loop);
    if (now >= rs->warn_at || rs->failures == 0) {
        LOG_WARN("consensus", "client: stream from %s: %s (%s): following another server",
                 rs->following ? rs->following : "?", why, base_strerror(status));
        rs->warn_at = now + 10000;
    }
    base_free(rs->failed);
    rs->failed = rs->following;
    rs->following = NULL;
    unsigned delay = REPL_RETRY_MS << (rs->failures < 5 ? rs->failures : 5);
    rs->retry_at = now + (delay < REPL_RETRY_MAX_MS ? delay : REPL_RETRY_MAX_MS);
    rs->failures++;
}

/* Decodes and checks a whole FOLLOW reply (after its status) before any of it is used. */
int cons__follow_reply_check(const uint8_t *body, size_t len, struct cons_follow_reply *out,
                             const char **why)
{
    struct base_rd rd, *r = &rd;
    struct cons_follow_reply *h = out;
    base_rd_init(r, body, len);
    memset(h, 0, sizeof *h);
    h->leader_id = base_rd_u64(r);
    h->leader = base_rd_bytes(r, &h->leader_len);
    h->term = base_rd_u64(r);
    h->applied = base_rd_u64(r);
    h->conf_hash = base_rd_u64(r);
    h->has_conf = base_rd_u8(r);
    if (h->has_conf == 1)
        h->n_conf = base_rd_u32(r);
    if (r->err || h->has_conf > 1 || h->conf_hash == 0)
        return *why = "short header", BASE_EPARSE;
    if (h->leader_len > RPC_ADDRESS_MAX || (h->leader_len && memchr(h->leader, 0, h->leader_len)) ||
        (h->leader_id == 0) != (h->leader_len == 0))
        return *why = "bad leader", BASE_EPARSE;
    if (h->term > CONS_WIRE_TERM_MAX || h->applied > CONS_WIRE_INDEX_MAX)
        return *why = "term or index out of range", BASE_EPARSE;
    if (h->n_conf > REPL_CONF_MAX)
        return *why = "configuration too large", BASE_EPARSE;
    h->conf = *r;
    for (uint32_t i = 0; i < h->n_conf; i++) {
        size_t l;
        uint64_t id = base_rd_u64(r);
        const uint8_t *a = base_rd_bytes(r, &l);
        uint8_t role = base_rd_u8(r);
        if (r->err || id == 0 || l == 0 || l > RPC_ADDRESS_MAX || memchr(a, 0, l) || role > 2)
            return *why = "bad configuration", BASE_EPARSE;
    }
    h->kind = base_rd_u8(r);
    if (r->err || h->kind > CONS_FOLLOW_SNAPSHOT)
        return *why = "bad kind", BASE_EPARSE;
    if (h->kind == CONS_FOLLOW_SNAPSHOT) {
        size_t l;
        h->snap_index = base_rd_u64(r);
        h->snap_total = base_rd_u64(r);
        h->snap_offset = base_rd_u64(r);
        h->piece = base_rd_bytes(r, &l);
        h->piece_len = l;
        if (r->err || r->left != 0 || h->snap_index == 0 || h->snap_index > CONS_WIRE_INDEX_MAX ||
            h->snap_total == 0 || h->snap_total > REPL_SNAP_MAX || h->snap_offset > h->snap_total ||
            l > h->snap_total - h->snap_offset || l > REPL_REPLY_BYTES ||
            (l == 0 && h->snap_offset < h->snap_total))
            return *why = "bad snapshot piece", BASE_EPARSE;
        return 0;
    }
    h->n_entries = base_rd_u32(r);
    if (r->err || h->n_entries > REPL_ENTRIES_MAX)
        return *why = "bad entry count", BASE_EPARSE;
    h->entries = *r;
    uint64_t prev = 0;
    for (uint32_t i = 0; i < h->n_entries; i++) {
        size_t l;
        uint64_t idx = base_rd_u64(r);
        base_rd_bytes(r, &l);
        if (r->err || idx <= prev || idx > CONS_WIRE_INDEX_MAX || l > CONS_WIRE_ENTRY_MAX)
            return *why = "bad entry", BASE_EPARSE;
        prev = idx;
    }
    if (r->left != 0)
        return *why = "trailing bytes", BASE_EPARSE;
    return 0;
}

static char *strndup_b(const uint8_t *p, size_t n)
{
    char *s = base_malloc(n + 1);
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

static void header_use(struct cons *c, struct cons_follow_reply *h)
{
    struct cons_repl *rs = c->repl;
    c->contact_at = uv_now(c->loop);
    rs->term = h->term;
    if (h->has_conf) {
        conf_clear(rs);
        rs->conf_hash = h->conf_hash;
    }
    if (h->has_conf && h->n_conf) {
        rs->conf = base_calloc(h->n_conf, sizeof *rs->conf);
        for (uint32_t i = 0; i < h->n_conf; i++) {
            size_t l;
            rs->conf[i].id = base_rd_u64(&h->conf);
            const uint8_t *a = base_rd_bytes(&h->conf, &l);
            rs->conf[i].address = strndup_b(a, l);
            rs->conf[i].role = base_rd_u8(&h->conf);
        }
        rs->n_conf = h->n_conf;
    }
    bool changed = h->leader_id != rs->leader_id ||
                   (rs->leader_address ? strlen(rs->leader_address) != h->leader_len ||
                                             memcmp(rs->leader_address, h->leader, h->leader_len)
                                       : h->leader_len != 0);
    if (!changed && rs->told)
        return;
    base_free(rs->leader_address);
    rs->leader_address = strndup_b(h->leader, h->leader_len);
    rs->leader_id = h->leader_id;
    if (h->leader_id)
        LOG_INFO("consensus", "client: leader id=%" PRIu64 " address=%s term=%" PRIu64,
                 h->leader_id, rs->leader_address, h->term);
    if (h->leader_id)
        cons__forward_tick(c); /* parked writes and reads go to it now */
    if (c->on_leader && !c->stopping && (!rs->told || rs->told_leader != h->leader_id)) {
        rs->told = true;
        rs->told_leader = h->leader_id;
        c->on_leader(c->data, false, h->leader_id, rs->leader_address);
    }
}

/* Applies one entry as the FSM did on the server (fsm.c). */
static int apply_entry(struct cons *c, uint64_t idx, const uint8_t *p, size_t len)
{
    struct cons_repl *rs = c->repl;
    struct base_slice *cmds;
    size_t n;
    uint32_t touched = 0;
    if (idx <= c->applied)
        return 0;
    base_arena_reset(&rs->arena);
    int rv = cons_entry_decode(p, len, &cmds, &n, &rs->arena);
    if (rv == BASE_EINVAL) {
        LOG_ERR("consensus", "client: entry %" PRIu64 " has a newer format: upgrade this agent",
                idx);
        return rv;
    }
    if (rv != 0) {
        LOG_ERR("consensus", "client: entry %" PRIu64 " is malformed (%zu bytes): applied as empty",
                idx, len);
        n = 0;
        cmds = NULL;
    }
    int *results = n ? base_arena_alloc(&rs->arena, n * sizeof *results) : NULL;
    c->in_apply = true;
    rv = zone_store_apply(c->store, idx, cmds, n, results, &touched);
    if (rv != 0) {
        c->in_apply = false;
        LOG_ERR("consensus", "client: apply entry %" PRIu64 ": %s", idx, base_strerror(rv));
        return rv;
    }
    c->applied = idx;
    if (c->waiters)
        cons__schedule(c);
    if (c->on_applied)
        c->on_applied(c->data, idx, touched);
    c->in_apply = false;
    return 0;
}

/* Applies entries from r (n of them, checked whole by cons__follow_reply_check) for at most
 * REPL_APPLY_SLICE_MS (at least one): each is a store commit, and a reply holds up to
 * REPL_ENTRIES_MAX of them, so a client catching up would otherwise hold its loop (gossip
 * probes, HTTP, checks) for seconds. What is left is copied to rs->pend and applied by the
 * next flushes (cons__repl_flush); the next FOLLOW goes once it is all applied. */
static int entries_apply(struct cons *c, struct base_rd *r, uint32_t *n, const char **why)
{
    uint64_t t0 = uv_hrtime();
    while (*n > 0) {
        size_t l;
        uint64_t idx = base_rd_u64(r);
        const uint8_t *p = base_rd_bytes(r, &l);
        int rv = apply_entry(c, idx, p, l);
        (*n)--;
        if (rv != 0)
            return *why = "cannot apply", rv;
        if (c->stopping)
            return 0;
        if (uv_hrtime() - t0 >= (uint64_t)REPL_APPLY_SLICE_MS * 1000000u)
            break;
    }
    return 0;
}

static int entries_use(struct cons *c, struct cons_follow_reply *h, const char **why)
{
    struct cons_repl *rs = c->repl;
    struct base_rd r = h->entries;
    uint32_t n = h->n_entries;
    int rv = entries_apply(c, &r, &n, why);
    if (rv != 0 || c->stopping || n == 0)
        return rv;
    rs->pend.len = 0;
    base_buf_append(&rs->pend, r.p, r.left);
    base_rd_init(&rs->pend_rd, rs->pend.data, rs->pend.len);
    rs->pend_left = n;
    cons__schedule(c);
    return 0;
}

/* The flush's part on a client: the next slice of a reply's entries, then the next FOLLOW. */
static void pend_continue(struct cons *c)
{
    struct cons_repl *rs = c->repl;
    const char *why = NULL;
    int rv = entries_apply(c, &rs->pend_rd, &rs->pend_left, &why);
    if (c->stopping)
        return;
    if (rv != 0) {
        rs->pend_left = 0;
        follow_fail(c, why, rv);
        return;
    }
    if (rs->pend_left) {
        cons__schedule(c);
        return;
    }
    rs->failures = 0;
    follow_send(c);
}

static int snapshot_use(struct cons *c, struct cons_follow_reply *h, const char **why)
{
    struct cons_repl *rs = c->repl;
    size_t l = h->piece_len;
    uint64_t sidx = h->snap_index, total = h->snap_total, off = h->snap_offset;
    const uint8_t *p = h->piece;
    if (off == 0 || sidx != rs->asm_index || total != rs->asm_total) {
        if (off != 0)
            return *why = "snapshot piece out of order", BASE_EPARSE;
        rs->asm_buf.len = 0;
        rs->asm_index = sidx;
        rs->asm_total = total;
    }
    if (off != rs->asm_buf.len)
        return *why = "snapshot piece out of order", BASE_EPARSE;
    base_buf_append(&rs->asm_buf, p, l);
    if (rs->asm_buf.len < total)
        return 0;
    /* complete */
    bool skipped = false;
    uint64_t t0 = uv_hrtime();
    int rv = zone_store_restore(c->store, rs->asm_buf.data, rs->asm_buf.len, &skipped);
    base_buf_free(&rs->asm_buf);
    base_buf_init(&rs->asm_buf);
    rs->asm_index = rs->asm_total = 0;
    if (rv != 0)
        return *why = "snapshot restore failed", rv;
    struct zone_meta m;
    if (zone_store_meta(c->store, &m) != 0)
        m.applied = c->applied;
    LOG_INFO("consensus", "client: snapshot %s: catalog at index %" PRIu64 " (%.1f ms)",
             skipped ? "skipped" : "restored", m.applied, (double)(uv_hrtime() - t0) / 1e6);
    if (skipped)
        return 0;
    c->applied = m.applied;
    if (c->waiters)
        cons__schedule(c);
    if (c->on_applied) {
        c->in_apply = true;
        c->on_applied(c->data, m.applied, ZONE_TABLE_ALL);
        c->in_apply = false;
    }
    return 0;
}

static void follow_reply(void *data, int status, const uint8_t *body, size_t len)
{
    struct cons *c = data;
    struct cons_repl *rs = c->repl;
    rs->inflight = false;
    if (c->stopping || status == BASE_ESHUTDOWN)
        return;
    if (status != 0) {
        follow_fail(c, "no answer", status);
        return;
    }
    struct base_rd r;
    base_rd_init(&r, body, len);
    int st = rpc_status_dec(base_rd_u32(&r));
    if (r.err) {
        follow_fail(c, "short reply", BASE_EPARSE);
        return;
    }
    if (st != 0) {
        follow_fail(c, "refused", st);
        return;
    }
    struct cons_follow_reply h;
    const char *why = NULL;
    int rv = cons__follow_reply_check(r.p, r.left, &h, &why);
    if (rv != 0) {
        follow_fail(c, why, rv);
        return;
    }
    header_use(c, &h);
    if (c->stopping)
        return;
    rv = h.kind == CONS_FOLLOW_ENTRIES ? entries_use(c, &h, &why) : snapshot_use(c, &h, &why);
    if (c->stopping)
        return;
    if (rv != 0) {
        follow_fail(c, why, rv);
        return;
    }
    if (rs->pend_left)
        return; /* the flushes apply the rest, then ask again */
    rs->failures = 0;
    follow_send(c);
}

static void follow_send(struct cons *c)
{
    struct cons_repl *rs = c->repl;
    if (c->stopping || rs->inflight || rs->pend_left || !c->client ||
        uv_now(c->loop) < rs->retry_at)
        return;
    if (!rs->following)
        seen_pick(c);
    if (!rs->following)
        return;
    struct base_buf b;
    base_buf_init(&b);
    base_buf_put_u64(&b, c->applied);
    base_buf_put_u64(&b, rs->asm_index);
    base_buf_put_u64(&b, rs->asm_index ? rs->asm_buf.len : 0);
    base_buf_put_u64(&b, rs->conf_hash);
    rs->inflight = true;
    rpc_call(c->client, rs->following, CONS_RPC_FOLLOW, &b, REPL_HOLD_MS + cons__silent_ms(c),
             follow_reply, c);
    base_buf_free(&b);
}

void cons__repl_tick(struct cons *c)
{
    struct cons_repl *rs = c->repl;
    if (!rs || c->stopping)
        return;
    if (c->is_client) {
        follow_send(c);
        return;
    }
    if (rs->held)
        held_sweep(c, true, 0);
    if (rs->snap && uv_now(c->loop) - rs->snap_used_at > REPL_SNAP_IDLE_MS) {
        base_free(rs->snap);
        rs->snap = NULL;
        rs->snap_len = 0;
        rs->snap_index = 0;
    }
}

void cons__repl_seen(struct cons *c, uint64_t id, const char *address)
{
    struct cons_repl *rs = c->repl;
    for (size_t i = 0; i < rs->n_seen; i++) {
        if (strcmp(rs->seen[i].address, address) == 0) {
            rs->seen[i].id = id;
            return;
        }
    }
    rs->seen = base_realloc(rs->seen, (rs->n_seen + 1) * sizeof *rs->seen);
    rs->seen[rs->n_seen].id = id;
    rs->seen[rs->n_seen].address = base_strdup(address);
    rs->n_seen++;
    LOG_DEBUG("consensus", "client: server id=%" PRIu64 " seen at %s", id, address);
    /* the tick starts the stream: the servers gossip names together are all candidates */
}

/* ---- client: queries ------------------------------------------------------------------- */

void cons__repl_leader(const struct cons *c, uint64_t *id, const char **address)
{
    const struct cons_repl *rs = c->repl;
    *id = rs->leader_id;
    *address = rs->leader_id && rs->leader_address ? rs->leader_address : "";
}

uint64_t cons__repl_term(const struct cons *c)
{
    return c->repl->term;
}

void cons__repl_servers_each(const struct cons *c,
                             void (*cb)(void *data, const struct cons_server *s), void *data)
{
    const struct cons_repl *rs = c->repl;
    for (size_t i = 0; i < rs->n_conf; i++) {
        struct cons_server s = {
            .id = rs->conf[i].id, .address = rs->conf[i].address, .role = rs->conf[i].role};
        cb(data, &s);
    }
}

/* ---- client: membership requests are for servers --------------------------------------- */

struct repl_refusal {
    struct cons_task t;
    cons_member_cb cb;
    void *data;
    int status;
    const char *msg;
};

static void refusal_run(struct cons_task *t)
{
    struct repl_refusal *f = BASE_CONTAINER_OF(t, struct repl_refusal, t);
    cons_member_cb cb = f->cb;
    void *data = f->data;
    int status = f->status;
    const char *msg = f->msg;
    base_free(f);
    cb(data, status, msg);
}

void cons__repl_member_answer(struct cons *c, int status, const char *msg, cons_member_cb cb,
                              void *data)
{
    struct repl_refusal *f = base_calloc(1, sizeof *f);
    f->cb = cb;
    f->data = data;
    f->status = c->stopping ? BASE_ESHUTDOWN : status;
    f->msg = c->stopping ? "shutting down" : msg;
    f->t.run = refusal_run;
    cons__defer(c, &f->t);
    cons__schedule(c);
}
