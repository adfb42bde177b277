/* Followers: writes forwarded to the leader, read indexes, and waiting for the local apply.
 *
 * Forwarding. The flush (propose.c) hands the commands of one loop iteration that found this
 * server a follower to cons__forward: they travel to the leader in one FORWARD message (cut
 * like entries, at 4 MiB), where the handler proposes them all from one read callback, so they
 * go through the leader's own group commit as one entry. The reply carries each command's
 * status, result and index. Outcomes map as for a local proposal: a command the leader did
 * not append (it is no leader, or no longer) or a message that was never written (no
 * connection) is retried, parked until a leader is known; a message written but not answered
 * (connection lost, timed out) may have been executed: BASE_EUNKNOWN, never "not written".
 *
 * Waiting for a leader. Parked proposals and reads carry a deadline (3 election timeouts from
 * when they first had to wait: an election takes up to two randomized timeouts plus the vote
 * round). The tick requeues them as soon as a leader is known and ends them with
 * BASE_ENOLEADER when the deadline passes.
 *
 * Read-your-writes. A forwarded write is answered only once the local store has applied its
 * index (bounded by the same wait; the write committed either way, so the status is 0 even if
 * the wait runs out). Followers learn the commit index with the leader's next append or
 * heartbeat, so this costs at most a heartbeat. Read indexes wait the same way: the leader
 * answers READ_INDEX with its applied index (after a barrier for a consistent read), and the
 * follower calls back once its own store reached that index. Reads are idempotent, so every
 * failure before the answer is retried until the deadline.
 *
 * User callbacks never run inside RPC processing: completions go through c->props_done and
 * c->tasks, run by the next flush. */
#include "internal.h"

#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#define FWD_MAX_COMMANDS (1u << 20)

/* ---- waiters --------------------------------------------------------------------------- */

void cons__wait_add(struct cons *c, struct cons_waiter *w)
{
    w->next = c->waiters;
    c->waiters = w;
    if (w->index <= c->applied)
        cons__schedule(c);
}

/* Fires the waiters whose index the store reached (status 0), and with expire those past
 * their deadline (-ETIMEDOUT), or with all every other one (BASE_ESHUTDOWN). */
static void waiters_sweep(struct cons *c, bool expire, bool all)
{
    uint64_t now = uv_now(c->loop);
    struct cons_waiter *list = c->waiters, *keep = NULL;
    c->waiters = NULL;
    while (list) {
        struct cons_waiter *w = list;
        list = w->next;
        if (w->index <= c->applied || all || (expire && now >= w->deadline)) {
            w->fire(w, w->index <= c->applied ? 0 : all ? BASE_ESHUTDOWN : -ETIMEDOUT);
        } else {
            w->next = keep;
            keep = w;
        }
    }
    /* fired callbacks may have added waiters meanwhile */
    while (keep) {
        struct cons_waiter *w = keep;
        keep = w->next;
        w->next = c->waiters;
        c->waiters = w;
    }
}

void cons__waiters_run(struct cons *c)
{
    waiters_sweep(c, false, false);
}

/* ---- forwarded proposals (client side) ------------------------------------------------- */

struct cons_fwd {
    struct cons_waiter w; /* waiting for the local apply of the committed ones */
    struct cons *c;
    struct cons_prop *props; /* sent, in command order */
    size_t n;
    struct cons_prop *ok; /* committed, waiting for the local apply */
};

static bool retryable(int st)
{
    return st == BASE_ENOTLEADER || st == BASE_ENOLEADER || st == BASE_ESHUTDOWN;
}

/* Back to waiting for a leader (or done, when waiting is over). */
static void park(struct cons *c, struct cons_prop *list)
{
    uint64_t now = uv_now(c->loop);
    while (list) {
        struct cons_prop *p = list;
        list = p->next;
        p->next = NULL;
        if (p->deadline == 0)
            p->deadline = now + c->wait_ms;
        if (c->stopping) {
            cons__prop_done(c, p, BASE_ESHUTDOWN, 0, 0);
        } else if (now >= p->deadline) {
            cons__prop_done(c, p, BASE_ENOLEADER, 0, 0);
        } else {
            *c->parked.tail = p;
            c->parked.tail = &p->next;
        }
    }
}

/* Ends a list with one status, from the next flush. */
static void props_end_later(struct cons *c, struct cons_prop *list, int status)
{
    while (list) {
        struct cons_prop *p = list;
        list = p->next;
        cons__prop_done(c, p, status, 0, 0);
    }
}

static void fwd_fire(struct cons_waiter *w, int status)
{
    struct cons_fwd *f = BASE_CONTAINER_OF(w, struct cons_fwd, w);
    BASE_UNUSED(status); /* committed: success whether or not the local store caught up */
    cons__props_done(f->c, f->ok);
    base_free(f);
}

static void fwd_reply(void *data, int status, const uint8_t *body, size_t len)
{
    struct cons_fwd *f = data;
    struct cons *c = f->c;
    struct cons_prop *list = f->props;
    f->props = NULL;

    if (status == RPC_UNSENT || status == BASE_ESHUTDOWN) {
        /* never written: nothing can have happened */
        park(c, list);
        base_free(f);
        return;
    }
    if (status != 0) {
        LOG_DEBUG("consensus", "forwarded write: %s: outcome unknown", base_strerror(status));
        props_end_later(c, list, BASE_EUNKNOWN);
        base_free(f);
        return;
    }
    struct base_rd r;
    base_rd_init(&r, body, len);
    int st = rpc_status_dec(base_rd_u32(&r));
    uint32_t n = base_rd_u32(&r);
    if (!r.err && st != 0) {
        if (retryable(st)) {
            park(c, list);
        } else {
            props_end_later(c, list, st);
        }
        base_free(f);
        return;
    }
    if (r.err || n != f->n || r.left != (size_t)n * 16) {
        LOG_WARN("consensus", "forwarded write: malformed reply: outcome unknown");
        props_end_later(c, list, BASE_EUNKNOWN);
        base_free(f);
        return;
    }
    struct cons_prop **ok_tail = &f->ok, *retry = NULL, **retry_tail = &retry;
    uint64_t max_index = 0;
    while (list) {
        struct cons_prop *p = list;
        list = p->next;
        p->next = NULL;
        int ps = rpc_status_dec(base_rd_u32(&r));
        int pr = rpc_status_dec(base_rd_u32(&r));
        uint64_t idx = base_rd_u64(&r);
        if (ps == 0) {
            p->status = 0;
            p->result = pr;
            p->index = idx;
            *ok_tail = p;
            ok_tail = &p->next;
            if (idx > max_index)
                max_index = idx;
        } else if (retryable(ps)) {
            *retry_tail = p;
            retry_tail = &p->next;
        } else {
            cons__prop_done(c, p, ps, 0, 0);
        }
    }
    park(c, retry);
    if (!f->ok) {
        base_free(f);
        return;
    }
    f->w.index = max_index;
    f->w.deadline = uv_now(c->loop) + c->wait_ms;
    f->w.fire = fwd_fire;
    cons__wait_add(c, &f->w);
}

static void fwd_send(struct cons *c, const char *leader, struct cons_prop *list, size_t n)
{
    struct cons_fwd *f = base_calloc(1, sizeof *f);
    struct base_buf b;
    f->c = c;
    f->props = list;
    f->n = n;
    base_buf_init(&b);
    base_buf_put_u32(&b, (uint32_t)n);
    for (struct cons_prop *p = list; p; p = p->next)
        base_buf_put_bytes(&b, p->cmd, p->len);
    LOG_DEBUG("consensus", "forwarding %zu commands (%zu bytes) to %s", n, b.len, leader);
    rpc_call(c->client, leader, CONS_RPC_FORWARD, &b, c->rpc_timeout_ms, fwd_reply, f);
    base_buf_free(&b);
}

void cons__forward(struct cons *c, struct cons_prop *list)
{
    const char *leader = cons__leader_address(c);
    if (!leader || c->stopping) {
        park(c, list);
        return;
    }
    while (list) {
        /* one message per entry's worth: the leader packs them into one entry */
        size_t n, bytes;
        struct cons_prop *chunk = cons__props_cut(&list, &n, &bytes);
        fwd_send(c, leader, chunk, n);
    }
}

/* ---- forwarded proposals (leader side) ------------------------------------------------- */

struct fwd_srv;
struct fwd_ent {
    struct fwd_srv *s;
    int status, result;
    uint64_t index;
};
struct fwd_srv {
    struct rpc_req *req;
    size_t n, pending;
    struct fwd_ent ent[];
};

static void fwd_srv_reply(struct fwd_srv *s)
{
    struct base_buf b;
    base_buf_init(&b);
    base_buf_put_u32(&b, 0);
    base_buf_put_u32(&b, (uint32_t)s->n);
    for (size_t i = 0; i < s->n; i++) {
        base_buf_put_u32(&b, rpc_status_enc(s->ent[i].status));
        base_buf_put_u32(&b, rpc_status_enc(s->ent[i].result));
        base_buf_put_u64(&b, s->ent[i].index);
    }
    rpc_reply(s->req, &b);
    base_buf_free(&b);
    base_free(s);
}

static void fwd_srv_cb(void *data, int status, int result, uint64_t index)
{
    struct fwd_ent *e = data;
    struct fwd_srv *s = e->s;
    e->status = status;
    e->result = result;
    e->index = index;
    if (--s->pending == 0)
        fwd_srv_reply(s);
}

static void reply_status(struct rpc_req *req, int st)
{
    struct base_buf b;
    base_buf_init(&b);
    base_buf_put_u32(&b, rpc_status_enc(st));
    base_buf_put_u32(&b, 0);
    rpc_reply(req, &b);
    base_buf_free(&b);
}

void cons__forward_serve(struct cons *c, struct rpc_req *req, const uint8_t *body, size_t len)
{
    struct base_rd r;
    base_rd_init(&r, body, len);
    uint32_t n = base_rd_u32(&r);
    if (r.err || n > FWD_MAX_COMMANDS || n > r.left / 4) {
        reply_status(req, BASE_EPARSE);
        return;
    }
    if (!cons_is_leader(c)) {
        /* not appended anywhere: the follower retries with the leader it knows next */
        reply_status(req, cons__not_leader_status(c));
        return;
    }
    /* check the whole message before proposing any of it */
    struct base_rd chk = r;
    for (uint32_t i = 0; i < n; i++) {
        size_t l;
        base_rd_bytes(&chk, &l);
    }
    if (chk.err || chk.left != 0) {
        reply_status(req, BASE_EPARSE);
        return;
    }
    struct fwd_srv *s = base_calloc(1, sizeof *s + n * sizeof s->ent[0]);
    s->req = req;
    s->n = s->pending = n;
    if (n == 0) {
        fwd_srv_reply(s);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        size_t l;
        const uint8_t *cmd = base_rd_bytes(&r, &l);
        s->ent[i].s = s;
        cons__propose_local(c, cmd, l, fwd_srv_cb, &s->ent[i]);
    }
}

/* ---- read indexes (client side) -------------------------------------------------------- */

struct cons_read {
    struct cons_waiter w; /* waiting for the local apply */
    struct cons_task t;   /* the deferred callback */
    struct cons *c;
    struct cons_read *next; /* c->reads while parked */
    cons_read_cb cb;
    void *data;
    bool consistent;
    uint64_t deadline; /* for waiting for a leader */
    int status;
    uint64_t index;
};

static void read_run(struct cons_task *t)
{
    struct cons_read *r = BASE_CONTAINER_OF(t, struct cons_read, t);
    cons_read_cb cb = r->cb;
    void *data = r->data;
    int status = r->status;
    uint64_t index = r->index;
    base_free(r);
    cb(data, status, index);
}

static void read_done(struct cons_read *r, int status, uint64_t index)
{
    r->status = status;
    r->index = status == 0 ? index : 0;
    r->t.run = read_run;
    cons__defer(r->c, &r->t);
}

static void read_fire(struct cons_waiter *w, int status)
{
    struct cons_read *r = BASE_CONTAINER_OF(w, struct cons_read, w);
    if (status != 0 && status != BASE_ESHUTDOWN)
        LOG_DEBUG("consensus", "read index %" PRIu64 ": local store still at %" PRIu64, w->index,
                  r->c->applied);
    read_done(r, status, w->index);
}

static void read_wait(struct cons_read *r, uint64_t index)
{
    struct cons *c = r->c;
    r->w.index = index;
    r->w.deadline = uv_now(c->loop) + c->wait_ms;
    r->w.fire = read_fire;
    cons__wait_add(c, &r->w);
}

static void read_park(struct cons_read *r)
{
    struct cons *c = r->c;
    if (c->stopping) {
        read_done(r, BASE_ESHUTDOWN, 0);
    } else if (uv_now(c->loop) >= r->deadline) {
        read_done(r, BASE_ENOLEADER, 0);
    } else {
        r->next = c->reads;
        c->reads = r;
    }
}

static void read_barrier_cb(void *data, int status)
{
    struct cons_read *r = data;
    if (status == 0)
        read_wait(r, r->c->applied);
    else if (status == BASE_ESHUTDOWN)
        read_done(r, status, 0);
    else
        read_park(r); /* leadership moved: ask the next leader */
}

static void read_reply(void *data, int status, const uint8_t *body, size_t len)
{
    struct cons_read *r = data;
    if (status != 0) {
        read_park(r); /* idempotent: retried until the deadline */
        return;
    }
    struct base_rd rd;
    base_rd_init(&rd, body, len);
    int st = rpc_status_dec(base_rd_u32(&rd));
    uint64_t index = base_rd_u64(&rd);
    if (rd.err)
        read_park(r);
    else if (st == 0)
        read_wait(r, index);
    else if (retryable(st))
        read_park(r);
    else
        read_done(r, st, 0);
}

static void read_try(struct cons_read *r)
{
    struct cons *c = r->c;
    if (cons_is_leader(c)) {
        if (r->consistent)
            cons_barrier(c, read_barrier_cb, r);
        else
            read_wait(r, c->applied); /* fires from the next flush */
        return;
    }
    const char *leader = cons__leader_address(c);
    if (!leader || c->stopping) {
        read_park(r);
        return;
    }
    struct base_buf b;
    base_buf_init(&b);
    base_buf_put_u8(&b, r->consistent);
    rpc_call(c->client, leader, CONS_RPC_READ_INDEX, &b, c->rpc_timeout_ms, read_reply, r);
    base_buf_free(&b);
}

void cons_read_index(struct cons *c, bool consistent, cons_read_cb cb, void *data)
{
    BASE_ASSERT_LOOP();
    struct cons_read *r = base_calloc(1, sizeof *r);
    r->c = c;
    r->cb = cb;
    r->data = data;
    r->consistent = consistent;
    r->deadline = uv_now(c->loop) + c->wait_ms;
    if (c->stopping)
        read_done(r, BASE_ESHUTDOWN, 0);
    else
        read_try(r);
}

/* ---- read indexes (leader side) -------------------------------------------------------- */

struct read_srv {
    struct cons *c;
    struct rpc_req *req;
};

static void read_srv_reply(struct rpc_req *req, int st, uint64_t index)
{
    struct base_buf b;
    base_buf_init(&b);
    base_buf_put_u32(&b, rpc_status_enc(st));
    base_buf_put_u64(&b, index);
    rpc_reply(req, &b);
    base_buf_free(&b);
}

static void read_srv_barrier(void *data, int status)
{
    struct read_srv *s = data;
    read_srv_reply(s->req, status, status == 0 ? s->c->applied : 0);
    base_free(s);
}

void cons__read_serve(struct cons *c, struct rpc_req *req, const uint8_t *body, size_t len)
{
    struct base_rd r;
    base_rd_init(&r, body, len);
    uint8_t consistent = base_rd_u8(&r);
    if (r.err) {
        read_srv_reply(req, BASE_EPARSE, 0);
    } else if (!cons_is_leader(c)) {
        read_srv_reply(req, cons__not_leader_status(c), 0);
    } else if (!consistent) {
        read_srv_reply(req, 0, c->applied);
        cons__nudge(c); /* the follower now waits to reach our applied index */
    } else {
        struct read_srv *s = base_malloc(sizeof *s);
        s->c = c;
        s->req = req;
        cons_barrier(c, read_srv_barrier, s);
    }
}

/* ---- tick and stop --------------------------------------------------------------------- */

void cons__forward_tick(struct cons *c)
{
    if (c->stopping)
        return;
    uint64_t now = uv_now(c->loop);
    bool leader = cons_is_leader(c) || cons__leader_address(c) != NULL;

    /* parked proposals: expired ones end, the rest go back to the flush once a leader is
     * known (before what was queued since: they are older) */
    struct cons_prop *list = c->parked.head, *keep = NULL, **keep_tail = &keep;
    c->parked.head = NULL;
    c->parked.tail = &c->parked.head;
    while (list) {
        struct cons_prop *p = list;
        list = p->next;
        p->next = NULL;
        if (now >= p->deadline) {
            cons__prop_done(c, p, BASE_ENOLEADER, 0, 0);
        } else {
            *keep_tail = p;
            keep_tail = &p->next;
        }
    }
    if (keep && leader) {
        *keep_tail = c->queue.head;
        if (!c->queue.head)
            c->queue.tail = keep_tail;
        c->queue.head = keep;
        cons__schedule(c);
    } else if (keep) {
        c->parked.head = keep;
        c->parked.tail = keep_tail;
    }

    struct cons_read *reads = c->reads;
    c->reads = NULL;
    while (reads) {
        struct cons_read *r = reads;
        reads = r->next;
        r->next = NULL;
        if (now >= r->deadline)
            read_done(r, BASE_ENOLEADER, 0);
        else if (leader)
            read_try(r);
        else
            read_park(r);
    }

    waiters_sweep(c, true, false);
}

void cons__forward_stop(struct cons *c)
{
    struct cons_prop *list = c->parked.head;
    c->parked.head = NULL;
    c->parked.tail = &c->parked.head;
    while (list) {
        struct cons_prop *p = list;
        list = p->next;
        cons__prop_done(c, p, BASE_ESHUTDOWN, 0, 0);
    }
    while (c->reads) {
        struct cons_read *r = c->reads;
        c->reads = r->next;
        read_done(r, BASE_ESHUTDOWN, 0);
    }
    waiters_sweep(c, true, true);
}
