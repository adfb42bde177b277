/* The Raft state machine: committed entries go into the zone store.
 *
 * Apply. libraft hands the FSM a committed entry's payload but not its index; the index is
 * raft_last_applied() + 1, since libraft applies in order and bumps last_applied after each
 * entry (commands, barriers and configuration changes alike). zone_store_apply writes the
 * commands, their indexes and the applied index in one LMDB transaction, and skips entries at
 * or below the stored applied index: replay after a restart (libraft replays every entry after
 * its last snapshot) changes nothing. When the entry is one this server proposed and is still
 * waiting for, the per-command results go into its batch and the batch's result array is the
 * apply `result` libraft passes to the apply callback; other entries (followers, replay) need
 * no allocation, so nothing leaks when libraft drops the result of an entry nobody waits for.
 *
 * Failure. A store that cannot commit would make this replica diverge from the others: the
 * process aborts. An entry of a newer frame version cannot be applied by this binary either:
 * abort and ask for an upgrade rather than skip it. A malformed entry is applied as an empty
 * one (with an error line): every replica holds the same bytes, so all of them skip it alike.
 *
 * Snapshots. zone_store_snapshot serializes the whole catalog from one pinned read
 * transaction into a buffer we own (fsm version 2: snapshot_finalize frees it once libraft has
 * written it). Restore hands the bytes to zone_store_restore, which skips a snapshot not newer
 * than the catalog (the catalog already holds everything in it). A restore also happens
 * while running, when a lagging or wiped follower is sent the leader's snapshot
 * (InstallSnapshot, once the leader's log no longer holds the entries it needs).
 *
 * c->applied follows the catalog's applied index (commands only: libraft's own applied index
 * also counts barriers and configuration entries, which never reach the FSM). Read indexes
 * and forwarded writes wait on it, so every advance wakes the flush when something waits. */
#include "internal.h"

#include <inttypes.h>
#include <stdlib.h>

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct cons *c = fsm->data;
    uint64_t idx = raft_last_applied(&c->raft) + 1;
    struct base_slice *cmds;
    size_t n;
    uint32_t touched = 0;

    *result = NULL;
    base_arena_reset(&c->arena);
    int rv = cons_entry_decode(buf->base, buf->len, &cmds, &n, &c->arena);
    if (rv == BASE_EINVAL) {
        LOG_ERR("consensus", "entry %" PRIu64 " has a newer format: upgrade this server", idx);
        abort();
    }
    if (rv != 0) {
        LOG_ERR("consensus", "entry %" PRIu64 " is malformed (%zu bytes): applied as empty", idx,
                buf->len);
        n = 0;
        cmds = NULL;
    }

    struct cons_batch *b = cons__batch_find(c, idx);
    if (b && b->n != n) {
        LOG_ERR("consensus", "entry %" PRIu64 " holds %zu commands, %zu were proposed", idx, n,
                b->n);
        b = NULL;
    }
    int *results = b ? b->results : (n ? base_arena_alloc(&c->arena, n * sizeof *results) : NULL);

    c->in_apply = true;
    rv = zone_store_apply(c->store, idx, cmds, n, results, &touched);
    if (rv != 0) {
        LOG_ERR("consensus", "apply entry %" PRIu64 ": %s: cannot go on without diverging", idx,
                base_strerror(rv));
        abort();
    }
    if (b) {
        b->applied = true;
        *result = b->results;
    }
    if (idx > c->applied) {
        c->applied = idx;
        if (c->waiters) /* forwarded writes and read indexes waiting for this replica */
            cons__schedule(c);
    }
    cons__repl_retain(c, idx, buf->base, buf->len); /* for client replicas (replica.c) */
    if (c->on_applied)
        c->on_applied(c->data, idx, touched);
    c->in_apply = false;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct cons *c = fsm->data;
    struct base_buf b;

    base_buf_init(&b);
    int rv = zone_store_snapshot(c->store, &b);
    if (rv != 0) {
        LOG_WARN("consensus", "snapshot: %s", base_strerror(rv));
        base_buf_free(&b);
        return RAFT_IOERR;
    }
    *bufs = base_malloc(sizeof **bufs);
    (*bufs)[0].base = b.data;
    (*bufs)[0].len = b.len;
    *n_bufs = 1;
    LOG_DEBUG("consensus", "snapshot at %" PRIu64 ": %zu bytes",
              (uint64_t)raft_last_applied(&c->raft), b.len);
    return 0;
}

/* Runs once libraft is done with the buffers of fsm_snapshot, written or not. */
static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    BASE_UNUSED(fsm);
    for (unsigned i = 0; i < *n_bufs; i++)
        base_free((*bufs)[i].base);
    base_free(*bufs);
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

/* On success the FSM owns buf->base (libraft frees only the array around it). */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct cons *c = fsm->data;
    struct zone_meta m;
    bool skipped = false;

    int rv = zone_store_restore(c->store, buf->base, buf->len, &skipped);
    if (rv != 0) {
        LOG_ERR("consensus", "restore snapshot (%zu bytes): %s", buf->len, base_strerror(rv));
        return RAFT_CORRUPT;
    }
    raft_free(buf->base);
    if (zone_store_meta(c->store, &m) != 0)
        m.applied = 0;
    if (skipped) {
        LOG_INFO("consensus", "snapshot skipped: catalog already at index %" PRIu64, m.applied);
        return 0;
    }
    LOG_INFO("consensus", "snapshot restored: catalog at index %" PRIu64, m.applied);
    cons__repl_restored(c, m.applied);
    if (m.applied > c->applied) {
        c->applied = m.applied;
        if (c->waiters)
            cons__schedule(c);
    }
    if (c->on_applied)
        c->on_applied(c->data, m.applied, ZONE_TABLE_ALL);
    return 0;
}

void cons__fsm_init(struct cons *c)
{
    c->fsm.version = 2;
    c->fsm.data = c;
    c->fsm.apply = fsm_apply;
    c->fsm.snapshot = fsm_snapshot;
    c->fsm.restore = fsm_restore;
    c->fsm.snapshot_finalize = fsm_snapshot_finalize;
    c->fsm.snapshot_async = NULL;
}
