/* Group commit: the commands proposed during one loop iteration travel in one Raft entry.
 *
 * cons_propose copies the command into a queue and starts an idle handle. An active idle
 * handle makes the loop poll without blocking, and its callback runs once at the start of the
 * next iteration: that callback is the flush. Everything queued since the previous flush (I/O
 * callbacks of the poll phase, check-phase callbacks such as libraft firing apply callbacks,
 * timers) goes into one entry. A prepare handle alone would not do: a command queued by a
 * callback running after our prepare callback would wait for the next wake-up, which can be a
 * whole heartbeat away.
 *
 * The flush encodes the queue straight into one raft_malloc'd buffer and calls raft_apply
 * with exactly that one buffer: libraft 0.22 appends only the first buffer of a batch and
 * silently drops the rest (DESIGN.md 2.6). An entry is capped at CONS_ENTRY_MAX (4 MiB, half
 * of libraft's 8 MiB segment); a longer queue is cut into several entries, appended one after
 * the other in the same flush. Barriers queued in the same iteration are appended after the
 * commands, so a barrier covers the writes proposed before it.
 *
 * Barriers queued in one iteration share one Raft barrier entry: each of them only needs
 * "everything before me is applied", which the first one's completion proves for all.
 *
 * Outcomes. Not the leader at flush time: the commands go to forward.c, which forwards them
 * to the leader (or parks them until one is known); commands that came from a forwarded
 * request (cons__propose_local) end with BASE_ENOTLEADER / BASE_ENOLEADER instead, nothing
 * appended, and their follower retries. Appended: the entry's batch waits in
 * c->inflight; the FSM writes the per-command results into it when the entry applies
 * (fsm.c), and libraft's apply callback (fired from its own prepare/check handles, later in
 * the same or the next iteration) hands each proposer status 0, its own result and the
 * entry's index. An apply callback with an error (leadership lost, raft_close) or a
 * raft_apply failure after the submission reached the log means the entry's fate is unknown:
 * BASE_EUNKNOWN. Commands still queued when cons_stop runs end with BASE_ESHUTDOWN.
 *
 * Nudge. Followers learn that an entry committed only from the leader's next append or
 * heartbeat (libraft sends neither when the commit index moves; its heartbeat tick can be two
 * periods away). Every follower serves DNS from its own replica, and one that forwarded a
 * write or asked for a read index waits for its replica to reach an index. So whenever an
 * entry commits (or a read index was answered) and the commit index moved past the one our
 * last append carried, the next flush appends a barrier unless commands or barriers are
 * being appended anyway: the followers apply about one round trip after the leader instead
 * of up to 100 ms later (the registration -> DNS everywhere target is 10 ms). Under load the
 * next batch carries the commit index and no barrier is added; an idle cluster pays one
 * barrier entry per write.
 *
 * The flush also runs what other files deferred to it: finished forwarded proposals
 * (c->props_done), tasks (read indexes, membership requests) and the waiters whose index the
 * local store has reached, so user callbacks run from here, never inside RPC processing. */
#include "internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static void prop_queue_init(struct cons_prop_queue *q)
{
    q->head = NULL;
    q->tail = &q->head;
}

static struct cons_prop *prop_queue_take(struct cons_prop_queue *q)
{
    struct cons_prop *list = q->head;
    prop_queue_init(q);
    return list;
}

/* The barrier stack, oldest first. */
static struct cons_barrier *barriers_take(struct cons *c)
{
    struct cons_barrier *rev = NULL, *b = c->barriers;
    c->barriers = NULL;
    while (b) {
        struct cons_barrier *next = b->next;
        b->next = rev;
        rev = b;
        b = next;
    }
    return rev;
}

static void flush_cb(uv_idle_t *h);

void cons__propose_init(struct cons *c)
{
    int rv = uv_idle_init(c->loop, &c->flush);
    assert(rv == 0);
    BASE_UNUSED(rv);
    c->flush.data = c;
    prop_queue_init(&c->queue);
    prop_queue_init(&c->props_done);
    prop_queue_init(&c->parked);
    c->tasks = NULL;
    c->waiters = NULL;
    c->barriers = NULL;
    base_list_init(&c->inflight);
    /* member.c's and raft_stream.c's lists too: this runs before anything can stop the cons */
    base_list_init(&c->changes);
    base_list_init(&c->ops);
    base_list_init(&c->wire_conns); /* raft_stream.c's */
}

int cons__not_leader_status(struct cons *c)
{
    if (c->is_client)
        return BASE_ENOTLEADER;
    raft_id id = 0;
    const char *address = NULL;
    raft_leader(&c->raft, &id, &address);
    return id != 0 ? BASE_ENOTLEADER : BASE_ENOLEADER;
}

void cons__nudge(struct cons *c)
{
    if (c->stopping || raft_state(&c->raft) != RAFT_LEADER ||
        raft_commit_index(&c->raft) <= c->commit_sent || c->raft.configuration.n < 2)
        return; /* (alone in the configuration: nobody to tell) */
    c->nudge = true;
    cons__schedule(c);
}

void cons__schedule(struct cons *c)
{
    /* While stopping the idle handle is closing: cons__propose_fail_queued ends the queue
     * from the last close callback instead. */
    if (!c->stopping)
        uv_idle_start(&c->flush, flush_cb);
}

static void propose(struct cons *c, const void *cmd, size_t len, cons_propose_cb cb, void *data,
                    bool local_only)
{
    BASE_ASSERT_LOOP();
    struct cons_prop *p;
    if (len > CONS_CMD_MAX) {
        p = base_malloc(sizeof *p);
        p->status = BASE_ETOOBIG;
        p->len = 0;
    } else {
        p = base_malloc(sizeof *p + len);
        p->status = 0;
        p->len = len;
        if (len)
            memcpy(p->cmd, cmd, len);
    }
    p->next = NULL;
    p->cb = cb;
    p->data = data;
    p->result = 0;
    p->index = 0;
    p->deadline = 0;
    p->local_only = local_only;
    *c->queue.tail = p;
    c->queue.tail = &p->next;
    cons__schedule(c);
}

void cons_propose(struct cons *c, const void *cmd, size_t len, cons_propose_cb cb, void *data)
{
    propose(c, cmd, len, cb, data, false);
}

void cons__propose_local(struct cons *c, const void *cmd, size_t len, cons_propose_cb cb,
                         void *data)
{
    propose(c, cmd, len, cb, data, true);
}

void cons_barrier(struct cons *c, cons_barrier_cb cb, void *data)
{
    BASE_ASSERT_LOOP();
    struct cons_barrier *b = base_calloc(1, sizeof *b);
    b->c = c;
    b->cb = cb;
    b->data = data;
    b->req.data = b;
    b->next = c->barriers;
    c->barriers = b;
    cons__schedule(c);
}

static void prop_end(struct cons_prop *p, int status, int result, uint64_t index)
{
    cons_propose_cb cb = p->cb;
    void *data = p->data;
    base_free(p);
    if (cb)
        cb(data, status, result, index);
}

static void props_fail(struct cons_prop *p, int status)
{
    while (p) {
        struct cons_prop *next = p->next;
        prop_end(p, status, 0, 0);
        p = next;
    }
}

void cons__prop_done(struct cons *c, struct cons_prop *p, int status, int result, uint64_t index)
{
    p->status = status;
    p->result = result;
    p->index = index;
    p->next = NULL;
    *c->props_done.tail = p;
    c->props_done.tail = &p->next;
    cons__schedule(c);
}

void cons__props_done(struct cons *c, struct cons_prop *list)
{
    while (list) {
        struct cons_prop *p = list;
        list = p->next;
        cons__prop_done(c, p, p->status, p->result, p->index);
    }
}

void cons__defer(struct cons *c, struct cons_task *t)
{
    t->next = c->tasks;
    c->tasks = t;
    cons__schedule(c);
}

void cons__run_done(struct cons *c)
{
    /* callbacks may add more: until none are left */
    while (c->props_done.head || c->tasks) {
        struct cons_prop *p = prop_queue_take(&c->props_done);
        while (p) {
            struct cons_prop *next = p->next;
            prop_end(p, p->status, p->result, p->index);
            p = next;
        }
        struct cons_task *rev = NULL, *t = c->tasks;
        c->tasks = NULL;
        while (t) { /* oldest first */
            struct cons_task *next = t->next;
            t->next = rev;
            rev = t;
            t = next;
        }
        while (rev) {
            struct cons_task *next = rev->next;
            rev->run(rev);
            rev = next;
        }
    }
}

static void barrier_end(struct cons_barrier *b, int status)
{
    while (b) { /* with the barriers that shared its entry */
        struct cons_barrier *group = b->group;
        cons_barrier_cb cb = b->cb;
        void *data = b->data;
        base_free(b);
        if (cb)
            cb(data, status);
        b = group;
    }
}

void cons__propose_fail_queued(struct cons *c, int status)
{
    /* Callbacks may queue more: go on until both queues stay empty. */
    while (c->queue.head || c->barriers) {
        props_fail(prop_queue_take(&c->queue), status);
        struct cons_barrier *b = barriers_take(c);
        while (b) {
            struct cons_barrier *next = b->next;
            barrier_end(b, status);
            b = next;
        }
    }
}

/* ---- in-flight entries ----------------------------------------------------------------- */

struct cons_batch *cons__batch_find(struct cons *c, uint64_t index)
{
    /* Newest first: should a batch whose failure is not yet reported share its index with a
     * newer one (leadership lost and regained within one iteration), the newer one is the
     * entry being applied. The list is short: one batch per flush still in flight. */
    for (struct base_list *n = c->inflight.prev; n != &c->inflight; n = n->prev) {
        struct cons_batch *b = BASE_CONTAINER_OF(n, struct cons_batch, node);
        if (b->index == index)
            return b;
    }
    return NULL;
}

static void batch_end(struct cons_batch *b, int status)
{
    struct cons_prop *p = b->props;
    size_t i = 0;
    while (p) {
        struct cons_prop *next = p->next;
        if (status == 0)
            prop_end(p, 0, b->results[i], b->index);
        else
            prop_end(p, status, 0, 0);
        p = next;
        i++;
    }
    base_free(b->results);
    base_free(b);
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct cons_batch *b = req->data;
    struct cons *c = b->c;
    if (status == 0)
        cons__nudge(c); /* followers learn of this commit with the next append */

    base_list_remove(&b->node);
    if (status == 0 && !b->applied) {
        /* libraft matched the request by index only; the FSM did not see our entry there */
        LOG_ERR("consensus", "entry %" PRIu64 " applied without our commands", b->index);
        status = RAFT_CANCELED;
    }
    assert(status != 0 || result == b->results);
    BASE_UNUSED(result);
    if (status != 0)
        LOG_DEBUG("consensus", "entry %" PRIu64 " outcome unknown: %s", b->index,
                  raft_strerror(status));
    batch_end(b, status == 0 ? 0 : BASE_EUNKNOWN);
}

/* Appends the n proposals of list (cmd_bytes in all) as one entry. */
static void submit(struct cons *c, struct cons_prop *list, size_t n, size_t cmd_bytes)
{
    struct cons_batch *b = base_calloc(1, sizeof *b);
    struct base_slice *cmds = base_malloc(n * sizeof *cmds);
    size_t i = 0;
    for (struct cons_prop *p = list; p; p = p->next, i++) {
        cmds[i].p = p->cmd;
        cmds[i].n = p->len;
    }
    assert(i == n);

    size_t size = cons__entry_size(n, cmd_bytes);
    struct raft_buffer buf = {.base = raft_malloc(size), .len = size};
    if (!buf.base) {
        LOG_ERR("consensus", "out of memory allocating an entry of %zu bytes", size);
        abort();
    }
    cons__entry_write(buf.base, size, cmds, n);
    base_free(cmds);

    b->c = c;
    b->req.data = b;
    b->n = n;
    b->props = list;
    b->results = base_calloc(n, sizeof *b->results);
    b->index = raft_last_index(&c->raft) + 1;
    base_list_insert_tail(&c->inflight, &b->node);

    c->commit_sent = raft_commit_index(&c->raft); /* the appends for it carry this */
    int rv = raft_apply(&c->raft, &b->req, &buf, 1, apply_cb);
    if (rv != 0) {
        base_list_remove(&b->node);
        if (rv == RAFT_NOTLEADER) {
            /* refused before anything was appended: the buffer is still ours */
            raft_free(buf.base);
            batch_end(b, cons__not_leader_status(c));
            return;
        }
        /* Past the submission libraft may already own (and have freed) the buffer, and the
         * entry may be in the log: leave the buffer, report the outcome as unknown. */
        LOG_WARN("consensus", "append entry: %s (%s)", raft_strerror(rv), raft_errmsg(&c->raft));
        batch_end(b, BASE_EUNKNOWN);
        return;
    }
    if (b->req.index != b->index) {
        LOG_WARN("consensus", "entry appended at %llu, expected %" PRIu64, b->req.index, b->index);
        b->index = b->req.index;
    }
    LOG_DEBUG("consensus", "entry %" PRIu64 ": %zu commands, %zu bytes", b->index, n, size);
}

struct cons_prop *cons__props_cut(struct cons_prop **list, size_t *n_out, size_t *bytes_out)
{
    size_t n = 0, bytes = 0;
    struct cons_prop **end = list;
    while (*end && (*end)->status == 0 &&
           cons__entry_size(n + 1, bytes + (*end)->len) <= CONS_ENTRY_MAX) {
        bytes += (*end)->len;
        n++;
        end = &(*end)->next;
    }
    assert(n > 0);
    struct cons_prop *head = *list;
    *list = *end;
    *end = NULL;
    *n_out = n;
    *bytes_out = bytes;
    return head;
}

static void flush_props(struct cons *c, struct cons_prop *list)
{
    while (list) {
        if (c->stopping) { /* a callback stopped us */
            props_fail(list, BASE_ESHUTDOWN);
            return;
        }
        if (list->status != 0) {
            struct cons_prop *p = list;
            list = p->next;
            prop_end(p, p->status, 0, 0);
            continue;
        }
        if (raft_state(&c->raft) != RAFT_LEADER) {
            /* a follower: to the leader, except what a leader asked us (it retries) */
            struct cons_prop *fwd = NULL, **fwd_tail = &fwd;
            while (list) {
                struct cons_prop *p = list;
                list = p->next;
                p->next = NULL;
                if (p->status != 0) {
                    prop_end(p, p->status, 0, 0);
                } else if (p->local_only || c->stopping) {
                    prop_end(p, c->stopping ? BASE_ESHUTDOWN : cons__not_leader_status(c), 0, 0);
                } else {
                    *fwd_tail = p;
                    fwd_tail = &p->next;
                }
            }
            if (fwd)
                cons__forward(c, fwd);
            return;
        }
        size_t n, bytes;
        struct cons_prop *batch = cons__props_cut(&list, &n, &bytes);
        submit(c, batch, n, bytes);
    }
}

static void barrier_cb(struct raft_barrier *req, int status)
{
    struct cons_barrier *b = req->data;
    struct cons *c = b->c;
    if (status == 0)
        barrier_end(b, 0);
    else if (c->stopping || status == RAFT_SHUTDOWN)
        barrier_end(b, BASE_ESHUTDOWN);
    else
        barrier_end(b, cons__not_leader_status(c));
}

static void flush_barriers(struct cons *c, struct cons_barrier *list)
{
    struct cons_barrier *head = NULL; /* the one appended; the others join its group */
    while (list) {
        struct cons_barrier *b = list;
        list = b->next;
        b->next = NULL;
        b->group = NULL;
        if (c->stopping) {
            barrier_end(b, BASE_ESHUTDOWN);
            continue;
        }
        if (raft_state(&c->raft) != RAFT_LEADER) {
            barrier_end(b, cons__not_leader_status(c));
            continue;
        }
        if (head) {
            b->group = head->group;
            head->group = b;
            continue;
        }
        c->commit_sent = raft_commit_index(&c->raft);
        int rv = raft_barrier(&c->raft, &b->req, barrier_cb);
        if (rv != 0) {
            if (rv != RAFT_NOTLEADER)
                LOG_WARN("consensus", "barrier: %s (%s)", raft_strerror(rv), raft_errmsg(&c->raft));
            barrier_end(b, rv == RAFT_NOTLEADER ? cons__not_leader_status(c) : BASE_EUNKNOWN);
            continue;
        }
        head = b;
    }
}

static void flush_cb(uv_idle_t *h)
{
    struct cons *c = h->data;
    uv_idle_stop(h);
    if (c->stopping)
        return;
    cons__waiters_run(c);
    cons__run_done(c);
    if (c->stopping)
        return;
    cons__repl_flush(c);
    if (c->nudge && !c->queue.head && !c->barriers && raft_state(&c->raft) == RAFT_LEADER &&
        raft_commit_index(&c->raft) > c->commit_sent) {
        /* A follower waits for a commit index it has not been sent yet, and nothing else will
         * be appended now: followers learn the commit index only with the leader's next
         * append (or heartbeat, up to two heartbeat periods later). A barrier entry is that
         * append. Its callback is nobody's. */
        struct cons_barrier *b = base_calloc(1, sizeof *b);
        b->c = c;
        b->req.data = b;
        c->barriers = b;
    }
    c->nudge = false;
    struct cons_prop *props = prop_queue_take(&c->queue);
    struct cons_barrier *barriers = barriers_take(c);
    flush_props(c, props);
    flush_barriers(c, barriers);
}
