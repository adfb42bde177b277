/* Membership: adding, promoting and removing servers.
 *
 * The leader runs configuration changes one at a time from a queue (c->changes): libraft
 * allows one change in flight and asserts, rather than refuses, on some overlaps, so nothing
 * here calls raft_add/assign/remove/transfer while another of ours is pending. A JOIN adds
 * the server as a spare, then assigns it the voter role (libraft first catches it up, in
 * rounds, and only then appends the new configuration) while the cluster has fewer than 5
 * voters, the standby role beyond (a standby replicates but does not vote). A REMOVE of the
 * leader itself transfers leadership first and answers "not leader": the asker retries with
 * the new leader, which removes the old one like any follower.
 *
 * Requests come from anywhere: a non-leader relays JOIN and REMOVE once to the leader it knows
 * (a relayed request is not relayed again, so two servers with stale views cannot bounce it).
 * The asking side (cons_join, cons_leave, cons_remove_peer) retries what is worth retrying
 * (no leader, leadership moving, a change in progress, no connection, no answer: joins and
 * removals are idempotent) until its bound, then reports the last error.
 *
 * Replacing. A server whose log went backwards (its Raft dir was wiped, its node-id kept: io.c
 * notices it on the leader) is removed and added again: libraft keeps the leader's progress
 * for a server that stays in the configuration, and with its old match_index above the now
 * shorter log the leader computes a huge in-flight count and sends it heartbeats without
 * entries forever (libraft 0.22 sendAppendEntries). Re-adding starts its progress from
 * nothing: it is caught up as a spare (from the log or a snapshot), then promoted. A JOIN
 * from a new id at the address of a listed server (its whole data dir was wiped, so it came
 * back with a new node-id) replaces that server the same way, as Consul does: two processes
 * cannot listen on one address, so the old one is gone. Meanwhile the server port keeps the
 * old id's messages away from the new process (a stream names its receiver: rpc/port.c).
 *
 * Reconciling. On the leader, the tick promotes a spare left behind by an interrupted join and
 * a standby while fewer than 5 voters remain (after a voter left), one change at a time, with
 * a pause after a failure so a dead spare does not monopolise the queue. */
#include "internal.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define MAX_VOTERS       5
#define JOIN_TIMEOUT_MS  60000
#define OTHER_TIMEOUT_MS 15000
#define RETRY_MIN_MS     100
#define RETRY_MAX_MS     1000
#define RECONCILE_PAUSE  5000

enum { CH_JOIN, CH_PROMOTE, CH_REMOVE, CH_REPLACE };
enum { STEP_IDLE, STEP_ADD, STEP_ASSIGN, STEP_REMOVE, STEP_TRANSFER, STEP_REPLACE };

/* What a membership request asks and whom it answers: a change queued on the leader and a
 * caller's join, leave or remove each carry one. */
struct member_ask {
    struct cons *c;
    int kind; /* CH_* or OP_* */
    uint64_t id;
    char *address;
    cons_member_cb cb;
    void *data;
};

struct cons_change {
    struct raft_change req;    /* req.data == this */
    struct raft_transfer xfer; /* xfer.data == this */
    struct member_ask ask;
    struct base_list node; /* on c->changes */
    int step;
};

enum { OP_JOIN, OP_LEAVE, OP_REMOVE };

struct cons_member_op {
    struct cons_task t;
    struct member_ask ask;
    struct base_list node; /* on c->ops until done */
    uint64_t deadline, next_at;
    unsigned tries;
    bool inflight;
    int status;
    char msg[BASE_ERRMSG_LEN];
};

static struct cons_change *change_of(struct base_list *n)
{
    return BASE_CONTAINER_OF(n, struct cons_change, node);
}

static struct cons_member_op *op_of(struct base_list *n)
{
    return BASE_CONTAINER_OF(n, struct cons_member_op, node);
}

static void ask_init(struct member_ask *a, struct cons *c, int kind, uint64_t id,
                     const char *address, cons_member_cb cb, void *data)
{
    a->c = c;
    a->kind = kind;
    a->id = id;
    a->address = base_strdup(address ? address : "");
    a->cb = cb;
    a->data = data;
}

/* Frees owner (the change or op that holds a), then answers: the callback runs last, when
 * nothing of it is left to use. msg must not point into owner. */
static void ask_end(struct member_ask *a, void *owner, int status, const char *msg)
{
    cons_member_cb cb = a->cb;
    void *data = a->data;
    base_free(a->address);
    base_free(owner);
    cb(data, status, msg);
}

/* ---- the configuration ----------------------------------------------------------------- */

static unsigned voters(struct cons *c)
{
    unsigned n = 0;
    const struct raft_configuration *conf = &c->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].role == RAFT_VOTER)
            n++;
    return n;
}

static const struct raft_server *server_by_id(struct cons *c, uint64_t id)
{
    const struct raft_configuration *conf = &c->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id == id)
            return &conf->servers[i];
    return NULL;
}

static const struct raft_server *server_by_address(struct cons *c, const char *address)
{
    const struct raft_configuration *conf = &c->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++)
        if (strcmp(conf->servers[i].address, address) == 0)
            return &conf->servers[i];
    return NULL;
}

static int map_raft(int rv)
{
    switch (rv) {
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
        return BASE_ENOTLEADER;
    case RAFT_CANTCHANGE:
    case RAFT_BUSY:
        return -EBUSY;
    case RAFT_NOCONNECTION:
        return -ETIMEDOUT;
    case RAFT_SHUTDOWN:
    case RAFT_CANCELED:
        return BASE_ESHUTDOWN;
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS:
        return BASE_ECONFLICT;
    default:
        return BASE_EINVAL;
    }
}

/* ---- changes on the leader ------------------------------------------------------------- */

static void change_next(struct cons *c);

static void change_finish(struct cons_change *ch, int status, const char *msg)
{
    struct cons *c = ch->ask.c;
    assert(base_list_first(&c->changes) == &ch->node && c->change_active);
    base_list_remove(&ch->node);
    c->change_active = false;
    if (status == 0)
        LOG_INFO("consensus", "membership: %s", msg);
    else
        LOG_INFO("consensus", "membership change for id=%" PRIu64 " failed: %s (%s)", ch->ask.id,
                 base_strerror(status), msg);
    ask_end(&ch->ask, ch, status, msg);
    change_next(c);
}

static void change_step(struct cons_change *ch);

static void change_cb(struct raft_change *req, int status)
{
    struct cons_change *ch = req->data;
    char msg[BASE_ERRMSG_LEN];
    if (status != 0) {
        snprintf(msg, sizeof msg, "%s", raft_strerror(status));
        change_finish(ch, ch->ask.c->stopping ? BASE_ESHUTDOWN : map_raft(status), msg);
        return;
    }
    switch (ch->step) {
    case STEP_ADD:
        change_step(ch); /* now present as spare: assign its role */
        return;
    case STEP_REPLACE:
        ch->ask.kind = CH_JOIN; /* the stale entry is gone: add the server (again) */
        change_step(ch);
        return;
    case STEP_ASSIGN: {
        const struct raft_server *s = server_by_id(ch->ask.c, ch->ask.id);
        snprintf(msg, sizeof msg, "server id=%" PRIu64 " address=%s is a %s", ch->ask.id,
                 s ? s->address : "?", s ? raft_role_name(s->role) : "member");
        change_finish(ch, 0, msg);
        return;
    }
    default:
        snprintf(msg, sizeof msg, "server id=%" PRIu64 " removed", ch->ask.id);
        change_finish(ch, 0, msg);
        return;
    }
}

static void transfer_cb(struct raft_transfer *req)
{
    struct cons_change *ch = req->data;
    struct cons *c = ch->ask.c;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&c->raft, &lid, &laddr);
    if (c->stopping)
        change_finish(ch, BASE_ESHUTDOWN, "stopping");
    else if (lid != c->id)
        change_finish(ch, BASE_ENOTLEADER, "leadership transferred: ask the new leader");
    else
        change_finish(ch, -EAGAIN, "leadership transfer did not complete");
}

/* Assigns the role a member should have: voter while fewer than MAX_VOTERS, else standby. */
static void change_assign(struct cons_change *ch, const struct raft_server *s)
{
    struct cons *c = ch->ask.c;
    char msg[BASE_ERRMSG_LEN];
    int role = s->role == RAFT_VOTER || voters(c) < MAX_VOTERS ? RAFT_VOTER : RAFT_STANDBY;
    if (s->role == role) {
        snprintf(msg, sizeof msg, "server id=%" PRIu64 " address=%s is a %s", (uint64_t)s->id,
                 s->address, raft_role_name(role));
        change_finish(ch, 0, msg);
        return;
    }
    ch->step = STEP_ASSIGN;
    ch->req.data = ch;
    LOG_INFO("consensus", "membership: making id=%" PRIu64 " a %s%s", (uint64_t)s->id,
             raft_role_name(role), role == RAFT_VOTER ? " (after catching it up)" : "");
    int rv = raft_assign(&c->raft, &ch->req, ch->ask.id, role, change_cb);
    if (rv != 0) {
        snprintf(msg, sizeof msg, "assign: %s", raft_strerror(rv));
        change_finish(ch, map_raft(rv), msg);
    }
}

/* libraft 0.22 can leave configuration_uncommitted_index set on a leader after that entry was
 * committed and applied (seen on a leader elected by a leadership transfer right after a few
 * membership changes: uncommitted=57, configuration_committed_index=55, commit=applied=62),
 * and then refuses every change as RAFT_CANTCHANGE ("a configuration change is already in
 * progress") for good, leaking the configuration copy of each refused call. An entry at or
 * below last_applied is committed, so the configuration it holds (libraft's current one) is
 * the committed one: record it as such, which is what libraft does when it applies the entry
 * itself. Only that case is touched; a change really in flight is above last_applied. */
static void config_unstick(struct cons *c)
{
    raft_index u = c->raft.configuration_uncommitted_index;
    if (u == 0 || u > c->raft.last_applied || c->raft.state != RAFT_LEADER)
        return;
    LOG_WARN("consensus",
             "membership: libraft still counted the configuration at index %llu as uncommitted "
             "though it is applied (up to %llu): taking it as committed",
             (unsigned long long)u, (unsigned long long)c->raft.last_applied);
    c->raft.configuration_committed_index = u;
    c->raft.configuration_uncommitted_index = 0;
}

/* Removes the configuration's entry for id before a JOIN adds the server (see Replacing). */
static void change_replace(struct cons_change *ch, uint64_t id)
{
    struct cons *c = ch->ask.c;
    char msg[BASE_ERRMSG_LEN];
    ch->step = STEP_REPLACE;
    ch->req.data = ch;
    config_unstick(c);
    int rv = raft_remove(&c->raft, &ch->req, id, change_cb);
    if (rv != 0) {
        snprintf(msg, sizeof msg, "remove the stale server: %s", raft_strerror(rv));
        change_finish(ch, map_raft(rv), msg);
    }
}

static void change_step(struct cons_change *ch)
{
    struct cons *c = ch->ask.c;
    char msg[BASE_ERRMSG_LEN];
    int rv;

    config_unstick(c);

    if (c->stopping) {
        change_finish(ch, BASE_ESHUTDOWN, "stopping");
        return;
    }
    if (!cons_is_leader(c) || raft_transferee(&c->raft) != 0) {
        change_finish(ch, cons__not_leader_status(c), "not the leader");
        return;
    }
    const struct raft_server *s = ch->ask.id ? server_by_id(c, ch->ask.id) : NULL;
    switch (ch->ask.kind) {
    case CH_JOIN: {
        if (s && strcmp(s->address, ch->ask.address) != 0) {
            snprintf(msg, sizeof msg, "id %" PRIu64 " belongs to the server at %s", ch->ask.id,
                     s->address);
            change_finish(ch, BASE_ECONFLICT, msg);
            return;
        }
        if (s) {
            change_assign(ch, s);
            return;
        }
        const struct raft_server *other = server_by_address(c, ch->ask.address);
        if (other && other->id != c->id) {
            LOG_INFO("consensus",
                     "membership: %s now belongs to id=%" PRIu64 ": removing the server "
                     "id=%" PRIu64 " that was there",
                     ch->ask.address, ch->ask.id, (uint64_t)other->id);
            change_replace(ch, other->id);
            return;
        }
        if (other) {
            snprintf(msg, sizeof msg, "address %s belongs to server id %" PRIu64, ch->ask.address,
                     (uint64_t)other->id);
            change_finish(ch, BASE_ECONFLICT, msg);
            return;
        }
        ch->step = STEP_ADD;
        ch->req.data = ch;
        LOG_INFO("consensus", "membership: adding id=%" PRIu64 " address=%s as spare", ch->ask.id,
                 ch->ask.address);
        rv = raft_add(&c->raft, &ch->req, ch->ask.id, ch->ask.address, change_cb);
        if (rv != 0) {
            snprintf(msg, sizeof msg, "add: %s", raft_strerror(rv));
            change_finish(ch, map_raft(rv), msg);
        }
        return;
    }
    case CH_REPLACE:
        if (!s || s->id == c->id) {
            change_finish(ch, 0, "nothing to replace");
            return;
        }
        base_free(ch->ask.address);
        ch->ask.address = base_strdup(s->address);
        LOG_INFO("consensus",
                 "membership: id=%" PRIu64 " at %s lost log entries it had acknowledged "
                 "(its Raft state was wiped): removing it to add it again",
                 ch->ask.id, ch->ask.address);
        change_replace(ch, s->id);
        return;
    case CH_PROMOTE:
        if (!s) {
            change_finish(ch, 0, "nothing to promote");
            return;
        }
        change_assign(ch, s);
        return;
    default: /* CH_REMOVE */
        if (!s && ch->ask.address && *ch->ask.address)
            s = server_by_address(c, ch->ask.address);
        if (!s) {
            change_finish(ch, 0, "not a member (already removed)");
            return;
        }
        ch->ask.id = s->id;
        if (s->id == c->id) {
            ch->step = STEP_TRANSFER;
            ch->xfer.data = ch;
            LOG_INFO("consensus", "membership: transferring leadership before removing "
                                  "ourselves");
            rv = raft_transfer(&c->raft, &ch->xfer, 0, transfer_cb);
            if (rv != 0) {
                snprintf(msg, sizeof msg, "transfer leadership: %s", raft_strerror(rv));
                change_finish(ch, rv == RAFT_NOTFOUND ? BASE_EINVAL : map_raft(rv),
                              rv == RAFT_NOTFOUND ? "no other voter to hand leadership to" : msg);
            }
            return;
        }
        ch->step = STEP_REMOVE;
        ch->req.data = ch;
        LOG_INFO("consensus", "membership: removing id=%" PRIu64 " address=%s", (uint64_t)s->id,
                 s->address);
        rv = raft_remove(&c->raft, &ch->req, s->id, change_cb);
        if (rv != 0) {
            snprintf(msg, sizeof msg, "remove: %s", raft_strerror(rv));
            change_finish(ch, map_raft(rv), msg);
        }
        return;
    }
}

static void change_next(struct cons *c)
{
    if (c->change_active || base_list_empty(&c->changes))
        return;
    c->change_active = true;
    change_step(change_of(base_list_first(&c->changes)));
}

static void change_submit(struct cons *c, int kind, uint64_t id, const char *address,
                          cons_member_cb cb, void *data)
{
    struct cons_change *ch = base_calloc(1, sizeof *ch);
    ask_init(&ch->ask, c, kind, id, address, cb, data);
    base_list_insert_tail(&c->changes, &ch->node);
    change_next(c);
}

/* ---- serving JOIN and REMOVE ----------------------------------------------------------- */

static void reply_msg(struct rpc_req *req, int st, const char *msg)
{
    struct base_buf b;
    base_buf_init(&b);
    base_buf_put_u32(&b, rpc_status_enc(st));
    base_buf_put_str(&b, msg);
    rpc_reply(req, &b);
    base_buf_free(&b);
}

static void serve_done(void *data, int status, const char *msg)
{
    reply_msg(data, status, msg);
}

/* A relayed request's answer goes back as it came; a relay that failed is worth retrying. */
static void relay_reply(void *data, int status, const uint8_t *body, size_t len)
{
    struct rpc_req *req = data;
    if (status != 0) {
        reply_msg(req,
                  status == RPC_UNSENT || status == BASE_ESHUTDOWN ? BASE_ENOLEADER : -ETIMEDOUT,
                  "relay to the leader failed");
        return;
    }
    struct base_buf b;
    base_buf_init(&b);
    base_buf_append(&b, body, len);
    rpc_reply(req, &b);
    base_buf_free(&b);
}

static void serve_change(struct cons *c, struct rpc_req *req, uint8_t type, const uint8_t *body,
                         size_t len)
{
    struct base_arena a;
    struct base_rd r;
    base_arena_init(&a);
    base_rd_init(&r, body, len);
    uint64_t id = base_rd_u64(&r);
    char *address = base_rd_str(&r, &a);
    uint8_t relayed = base_rd_u8(&r);
    if (r.err || (type == CONS_RPC_JOIN && (id == 0 || !*address)) ||
        (type == CONS_RPC_REMOVE && id == 0 && !*address)) {
        reply_msg(req, BASE_EPARSE, "malformed request");
    } else if (c->stopping) {
        reply_msg(req, BASE_ESHUTDOWN, "stopping");
    } else if (cons_is_leader(c)) {
        change_submit(c, type == CONS_RPC_JOIN ? CH_JOIN : CH_REMOVE, id, address, serve_done, req);
    } else if (!relayed && cons__leader_address(c)) {
        struct base_buf b;
        base_buf_init(&b);
        base_buf_put_u64(&b, id);
        base_buf_put_str(&b, address);
        base_buf_put_u8(&b, 1);
        rpc_call(c->client, cons__leader_address(c), type, &b,
                 type == CONS_RPC_JOIN ? JOIN_TIMEOUT_MS : OTHER_TIMEOUT_MS, relay_reply, req);
        base_buf_free(&b);
    } else {
        reply_msg(req, cons__not_leader_status(c), "no leader known here");
    }
    base_arena_close(&a);
}

void cons__join_serve(struct cons *c, struct rpc_req *req, const uint8_t *body, size_t len)
{
    serve_change(c, req, CONS_RPC_JOIN, body, len);
}

void cons__remove_serve(struct cons *c, struct rpc_req *req, const uint8_t *body, size_t len)
{
    serve_change(c, req, CONS_RPC_REMOVE, body, len);
}

/* ---- asking (JOIN / REMOVE requests) --------------------------------------------------- */

struct ask {
    cons_member_cb cb;
    void *data;
};

static void ask_reply(void *data, int status, const uint8_t *body, size_t len)
{
    struct ask *a = data;
    cons_member_cb cb = a->cb;
    void *cb_data = a->data;
    base_free(a);
    if (status != 0) {
        cb(cb_data, status, base_strerror(status));
        return;
    }
    struct base_arena ar;
    struct base_rd r;
    base_arena_init(&ar);
    base_rd_init(&r, body, len);
    int st = rpc_status_dec(base_rd_u32(&r));
    const char *msg = base_rd_str(&r, &ar);
    if (r.err)
        cb(cb_data, BASE_EPARSE, "malformed reply");
    else
        cb(cb_data, st, msg);
    base_arena_close(&ar);
}

static void ask(struct cons *c, const char *address, uint8_t type, uint64_t id, const char *target,
                unsigned timeout_ms, cons_member_cb cb, void *data)
{
    struct ask *a = base_malloc(sizeof *a);
    struct base_buf b;
    a->cb = cb;
    a->data = data;
    base_buf_init(&b);
    base_buf_put_u64(&b, id);
    base_buf_put_str(&b, target);
    base_buf_put_u8(&b, 0);
    rpc_call(c->client, address, type, &b, timeout_ms, ask_reply, a);
    base_buf_free(&b);
}

void cons__join_send(struct cons *c, const char *address, unsigned timeout_ms, cons_member_cb cb,
                     void *data)
{
    ask(c, address, CONS_RPC_JOIN, c->id, c->address, timeout_ms, cb, data);
}

/* ---- cons_join, cons_leave, cons_remove_peer ------------------------------------------- */

static void op_run(struct cons_task *t)
{
    struct cons_member_op *op = BASE_CONTAINER_OF(t, struct cons_member_op, t);
    char msg[BASE_ERRMSG_LEN];
    snprintf(msg, sizeof msg, "%s", op->msg);
    ask_end(&op->ask, op, op->status, msg);
}

static void op_done(struct cons_member_op *op, int status, const char *msg)
{
    struct cons *c = op->ask.c;
    base_list_remove(&op->node);
    op->status = status;
    snprintf(op->msg, sizeof op->msg, "%s", msg ? msg : base_strerror(status));
    op->t.run = op_run;
    cons__defer(c, &op->t);
}

static bool op_retryable(int st)
{
    return st == BASE_ENOLEADER || st == BASE_ENOTLEADER || st == -EBUSY || st == -EAGAIN ||
           st == RPC_UNSENT || st == RPC_LOST || st == -ETIMEDOUT || st == BASE_ESHUTDOWN;
}

static void op_result(void *data, int status, const char *msg)
{
    struct cons_member_op *op = data;
    struct cons *c = op->ask.c;
    uint64_t now = uv_now(c->loop);
    op->inflight = false;
    if (status == 0 || c->stopping || !op_retryable(status) || now >= op->deadline) {
        op_done(op, c->stopping && status != 0 ? BASE_ESHUTDOWN : status, msg);
        return;
    }
    op->status = status;
    snprintf(op->msg, sizeof op->msg, "%s", msg);
    unsigned d = RETRY_MIN_MS << (op->tries < 4 ? op->tries : 4);
    op->next_at = now + (d < RETRY_MAX_MS ? d : RETRY_MAX_MS);
}

static void op_try(struct cons_member_op *op)
{
    struct cons *c = op->ask.c;
    op->tries++;
    if (op->ask.kind == OP_JOIN) {
        op->inflight = true;
        cons__join_send(c, op->ask.address, JOIN_TIMEOUT_MS, op_result, op);
        return;
    }
    uint64_t id = op->ask.kind == OP_LEAVE ? c->id : op->ask.id;
    const char *target = op->ask.kind == OP_LEAVE ? "" : op->ask.address;
    if (op->ask.kind == OP_LEAVE) {
        const struct raft_server *me = server_by_id(c, c->id);
        if (!me) {
            op_done(op, 0, "not a member of a cluster");
            return;
        }
        if (me->role == RAFT_VOTER && voters(c) == 1) {
            op_done(op, 0, "the only voter: nothing to leave");
            return;
        }
    }
    if (cons_is_leader(c)) {
        op->inflight = true;
        change_submit(c, CH_REMOVE, id, target, op_result, op);
        return;
    }
    const char *leader = cons__leader_address(c);
    if (!leader) {
        op_result(op, BASE_ENOLEADER, "no cluster leader");
        return;
    }
    op->inflight = true;
    ask(c, leader, CONS_RPC_REMOVE, id, target, OTHER_TIMEOUT_MS, op_result, op);
}

static void op_start(struct cons *c, int kind, uint64_t id, const char *address, cons_member_cb cb,
                     void *data)
{
    BASE_ASSERT_LOOP();
    struct cons_member_op *op = base_calloc(1, sizeof *op);
    ask_init(&op->ask, c, kind, id, address, cb, data);
    op->deadline = uv_now(c->loop) + (kind == OP_JOIN ? JOIN_TIMEOUT_MS : OTHER_TIMEOUT_MS);
    op->next_at = 0; /* first try at the next tick: never inside the call */
    base_list_insert_head(&c->ops, &op->node);
    if (c->stopping)
        op_done(op, BASE_ESHUTDOWN, "stopping");
}

void cons_join(struct cons *c, const char *address, cons_member_cb cb, void *data)
{
    if (c->is_client) {
        cons__repl_member_answer(c, BASE_EINVAL, "not a server", cb, data);
        return;
    }
    if (!c->raft_started || c->form.phase != CONS_FORM_OFF)
        cons__form_abandon(c);
    op_start(c, OP_JOIN, 0, address, cb, data);
}

void cons_leave(struct cons *c, cons_member_cb cb, void *data)
{
    if (c->is_client) { /* nothing to leave: a client is in no configuration */
        cons__repl_member_answer(c, 0, "", cb, data);
        return;
    }
    op_start(c, OP_LEAVE, 0, NULL, cb, data);
}

void cons_remove_peer(struct cons *c, uint64_t id, const char *address, cons_member_cb cb,
                      void *data)
{
    if (c->is_client) {
        cons__repl_member_answer(c, BASE_EINVAL, "not a server", cb, data);
        return;
    }
    op_start(c, OP_REMOVE, id, address, cb, data);
}

/* ---- tick and stop --------------------------------------------------------------------- */

static void replace_done(void *data, int status, const char *msg)
{
    BASE_UNUSED(data);
    BASE_UNUSED(status);
    BASE_UNUSED(msg); /* change_finish logged it */
}

static void reconcile_done(void *data, int status, const char *msg)
{
    struct cons *c = data;
    BASE_UNUSED(msg);
    c->reconcile_at = uv_now(c->loop) + (status == 0 ? 0 : RECONCILE_PAUSE);
}

static void reconcile(struct cons *c)
{
    if (!cons_is_leader(c) || c->change_active || !base_list_empty(&c->changes) ||
        uv_now(c->loop) < c->reconcile_at || raft_transferee(&c->raft) != 0)
        return;
    const struct raft_configuration *conf = &c->raft.configuration;
    unsigned n_voters = voters(c);
    for (unsigned i = 0; i < conf->n; i++) {
        const struct raft_server *s = &conf->servers[i];
        if (s->id == c->id)
            continue;
        if (s->role == RAFT_SPARE || (s->role == RAFT_STANDBY && n_voters < MAX_VOTERS)) {
            change_submit(c, CH_PROMOTE, s->id, s->address, reconcile_done, c);
            return;
        }
    }
}

void cons__member_tick(struct cons *c)
{
    if (c->stopping)
        return;
    uint64_t now = uv_now(c->loop);
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &c->ops)
    {
        /* op_try may end op (op_done takes it off the list), never another */
        struct cons_member_op *op = op_of(pos);
        if (op->inflight || now < op->next_at)
            continue;
        if (op->next_at != 0 && now >= op->deadline) {
            op_done(op, op->status ? op->status : BASE_ENOLEADER, op->msg[0] ? op->msg : NULL);
            continue;
        }
        op_try(op);
    }
    if (c->replace_id) {
        uint64_t id = c->replace_id;
        c->replace_id = 0;
        bool queued = false;
        BASE_LIST_FOREACH_SAFE(pos, tmp, &c->changes)
        {
            const struct cons_change *ch = change_of(pos);
            queued = queued || (ch->ask.kind == CH_REPLACE && ch->ask.id == id);
        }
        if (!queued && cons_is_leader(c))
            change_submit(c, CH_REPLACE, id, NULL, replace_done, NULL);
    }
    reconcile(c);
}

void cons__member_stop(struct cons *c, bool final)
{
    /* queued changes never started; the running one ends from libraft's callback */
    struct base_list rest, *n, *tmp;
    base_list_init(&rest);
    base_list_splice_tail(&rest, &c->changes);
    if (c->change_active) {
        n = base_list_first(&rest);
        base_list_remove(n);
        base_list_insert_tail(&c->changes, n);
    }
    while ((n = base_list_first(&rest))) {
        base_list_remove(n);
        struct cons_change *ch = change_of(n);
        ask_end(&ch->ask, ch, BASE_ESHUTDOWN, "stopping");
    }
    /* in flight: ended by their RPC or change callback, both of which end while stopping;
     * once Raft and RPC are closed (final) nothing can still be in flight */
    BASE_LIST_FOREACH_SAFE(n, tmp, &c->ops)
    {
        if (!op_of(n)->inflight || final)
            op_done(op_of(n), BASE_ESHUTDOWN, "stopping");
    }
}
