/* A hook between libraft's uv io and libraft: what arrives for it, before it sees it.
 *
 * libraft 0.22.1 mishandles an InstallSnapshot message in two states of a follower, both
 * reached by a lagging or restarted follower whose leader compacted its log:
 *  - while a snapshot is being installed (r->snapshot.installing), a second one (the leader
 *    sends it again when a probe's reply crosses the first) is ignored without freeing its
 *    configuration and data: a leak of a whole snapshot each time;
 *  - while the follower takes its own snapshot (r->legacy.snapshot_taking), the install is
 *    parked, and the code that resumes it clears the parked pointer before reading it: a
 *    NULL dereference, the follower crashes.
 * So io->start is wrapped (the receive callback libraft registers becomes ours, a typed
 * function of the same type, no cast) and an InstallSnapshot is dropped, freed, while one is
 * being installed (what libraft meant to do), and held while a snapshot is being taken, then
 * delivered from the tick once it is done (at most one is held: a newer one replaces it).
 *
 * It also watches, on the leader, the AppendEntries results: a server that acknowledged
 * index N in this term and later reports a last index below N lost its Raft state (its dir
 * was wiped, its node-id kept). libraft's progress for it keeps the old match_index, and its
 * sendAppendEntries then computes next_index - match_index - 1 below zero (unsigned) as the
 * in-flight count and sends only empty heartbeats, forever: the server never catches up. So
 * the tick asks member.c to replace it (remove it and add it again, which starts its progress
 * afresh). A follower never truncates entries it acknowledged to the current leader (Log
 * Matching: a rejection names an index past them, and libraft reports at least the index
 * before it), so this cannot fire for a server that kept its state, with three exceptions,
 * all about snapshots the leader sent it, so io->send is wrapped too (the same way, a typed
 * function) to note each InstallSnapshot sent to a server in this term:
 *  - while a follower installs a snapshot, libraft 0.22 reports last index 0 (its
 *    last_stored is reset until the install completes), and a replace then (raft_remove with
 *    the install in flight) is a use-after-free inside libraft. So lower last indexes from a
 *    server are ignored after a snapshot is sent to it, until a result reaches the snapshot's
 *    last index or raft's install_snapshot_timeout passes after the last one sent (the
 *    leader sends it again while the follower still needs it, so a real loss is still found);
 *  - a follower answers an InstallSnapshot it does not need (a duplicate, delivered late, or
 *    older than its own snapshot) by accepting it with last index = the snapshot's, not its
 *    own. So an accepting result whose last index is that of a snapshot sent to the server in
 *    this term is not taken as a loss; if the server did lose entries, the next AppendEntries
 *    is rejected, and that rejection tells;
 *  - an AppendEntries sent before the snapshot and answered after it is installed is rejected
 *    (the entry before it was compacted into the snapshot). A rejection names the index
 *    before the request's entries: one below what the server acknowledged answers a request
 *    sent before that acknowledgement (libraft ignores it as stale too), so only a rejection
 *    at or past it tells (a wiped server rejects the next heartbeat, which names that index).
 *
 * Everything else goes to libraft untouched. Messages come from raft_stream.c (cons__io_recv),
 * decoded and checked; libraft's own reader never runs (see raft_stream.c). */
#include "internal.h"

#include <inttypes.h>
#include <stddef.h>
#include <string.h>

static struct cons *cons_of(struct raft_io *io)
{
    struct raft *r = io->data; /* raft_init points the io at its raft, whose data is ours */
    return r->data;
}

static void snapshot_msg_free(struct raft_message *m)
{
    raft_configuration_close(&m->install_snapshot.conf);
    raft_free(m->install_snapshot.data.base);
    m->install_snapshot.data.base = NULL;
}

static void held_free(struct cons *c)
{
    if (!c->held)
        return;
    snapshot_msg_free(&c->held->msg);
    base_free(c->held->address);
    base_free(c->held);
    c->held = NULL;
}

/* The entry for server id in this leadership (a new term forgets the old one's). */
static struct cons_acked *acked_of(struct cons *c, uint64_t id)
{
    if (c->acked_term != c->raft.current_term) {
        c->n_acked = 0;
        c->acked_term = c->raft.current_term;
    }
    for (size_t i = 0; i < c->n_acked; i++)
        if (c->acked[i].id == id)
            return &c->acked[i];
    c->acked = base_realloc(c->acked, (c->n_acked + 1) * sizeof *c->acked);
    c->acked[c->n_acked] = (struct cons_acked){.id = id};
    return &c->acked[c->n_acked++];
}

/* Whether a snapshot sent to a may still be being installed, as far as the leader can tell. */
static bool snapshot_in_flight(struct cons *c, struct cons_acked *a, uint64_t last_index)
{
    if (!a->snap_pending)
        return false;
    if (last_index >= a->snap_index ||
        c->io.time(&c->io) - a->snap_at > c->raft.install_snapshot_timeout)
        a->snap_pending = false;
    return a->snap_pending;
}

/* Whether res accepts a snapshot sent to a in this term (libraft echoes its index). */
static bool snapshot_echo(const struct cons_acked *a, const struct raft_append_entries_result *res)
{
    if (res->rejected != 0)
        return false;
    for (size_t i = 0; i < a->n_sent && i < CONS_SNAP_SENT; i++)
        if (a->sent[i] == res->last_log_index)
            return true;
    return false;
}

static void watch_result(struct cons *c, const struct raft_message *m)
{
    const struct raft_append_entries_result *res = &m->append_entries_result;
    if (raft_state(&c->raft) != RAFT_LEADER || res->term != c->raft.current_term)
        return;
    struct cons_acked *a = acked_of(c, m->server_id);
    bool installing = snapshot_in_flight(c, a, res->last_log_index);
    if (res->last_log_index >= a->index) {
        if (res->rejected == 0)
            a->index = res->last_log_index;
    } else if (installing || snapshot_echo(a, res) || (res->rejected && res->rejected < a->index)) {
        LOG_DEBUG("consensus",
                  "server id=%llu reports last index %llu after acknowledging %" PRIu64
                  ": not a loss (snapshot %" PRIu64 " in flight or echoed, or a stale rejection)",
                  m->server_id, res->last_log_index, a->index, a->snap_index);
    } else {
        LOG_WARN("consensus",
                 "server id=%llu reports last index %llu (rejected %llu, last snapshot sent to "
                 "it %" PRIu64 ") after acknowledging %" PRIu64 ": its Raft state is gone",
                 m->server_id, res->last_log_index, res->rejected, a->snap_index, a->index);
        a->index = 0;
        c->replace_id = m->server_id;
    }
}

static void io_recv(struct raft_io *io, struct raft_message *m)
{
    struct cons *c = cons_of(io);
    if (m->type == RAFT_APPEND_ENTRIES || m->type == RAFT_INSTALL_SNAPSHOT ||
        m->type == RAFT_TIMEOUT_NOW)
        c->leader_msgs++; /* failover.c: the leader (or a new one) spoke */
    if (m->type == RAFT_APPEND_ENTRIES_RESULT && !c->stopping)
        watch_result(c, m);
    if (m->type == RAFT_INSTALL_SNAPSHOT && !c->stopping) {
        if (c->raft.snapshot.installing) {
            LOG_DEBUG("consensus", "snapshot from %llu ignored: installing one already",
                      m->server_id);
            snapshot_msg_free(m);
            return;
        }
        if (c->raft.legacy.snapshot_taking) {
            LOG_DEBUG("consensus", "snapshot from %llu held until ours is written", m->server_id);
            held_free(c);
            c->held = base_calloc(1, sizeof *c->held);
            c->held->msg = *m;
            c->held->address = base_strdup(m->server_address);
            c->held->msg.server_address = c->held->address;
            return;
        }
    }
    c->raft_recv(io, m);
}

void cons__io_recv(struct cons *c, struct raft_message *m)
{
    assert(c->raft_recv);
    io_recv(&c->io, m);
}

static int io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    struct cons *c = cons_of(io);
    c->raft_recv = recv;
    c->raft_tick = tick;
    return c->io_start(io, msecs, tick, io_recv);
}

/* libraft's clock, ahead of the io's by clock_skew (failover.c moves it forward). */
static raft_time io_time(struct raft_io *io)
{
    /* called inside raft_init too, before the raft points at us: the io is c->io */
    struct cons *c = (struct cons *)(void *)((char *)io - offsetof(struct cons, io));
    return c->io_time(io) + c->clock_skew;
}

static int io_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
                   raft_io_send_cb cb)
{
    struct cons *c = cons_of(io);
    cons__vote_sent(c, m);
    if (m->type == RAFT_INSTALL_SNAPSHOT && raft_state(&c->raft) == RAFT_LEADER &&
        m->install_snapshot.term == c->raft.current_term) {
        struct cons_acked *a = acked_of(c, m->server_id);
        a->snap_index = m->install_snapshot.last_index;
        a->snap_at = io->time(io);
        a->snap_pending = true;
        a->sent[a->n_sent++ % CONS_SNAP_SENT] = a->snap_index;
    }
    return c->io_send(io, req, m, cb);
}

void cons__io_hook(struct cons *c)
{
    c->io_start = c->io.start;
    c->io.start = io_start;
    c->io_send = c->io.send;
    c->io.send = io_send;
    c->io_time = c->io.time;
    c->io.time = io_time;
}

void cons__io_tick(struct cons *c)
{
    if (!c->held || c->stopping || c->raft.legacy.snapshot_taking)
        return;
    struct cons_held *h = c->held;
    c->held = NULL;
    if (c->raft.snapshot.installing) {
        snapshot_msg_free(&h->msg);
    } else {
        LOG_DEBUG("consensus", "delivering the held snapshot from %llu", h->msg.server_id);
        c->raft_recv(&c->io, &h->msg); /* libraft owns its buffers now */
    }
    base_free(h->address);
    base_free(h);
}

void cons__io_stop(struct cons *c)
{
    held_free(c);
    base_free(c->acked);
    c->acked = NULL;
    c->n_acked = 0;
}
