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
 * Everything else goes to libraft untouched. */
#include "internal.h"

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

static void io_recv(struct raft_io *io, struct raft_message *m)
{
    struct cons *c = cons_of(io);
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

static int io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    struct cons *c = cons_of(io);
    c->raft_recv = recv;
    return c->io_start(io, msecs, tick, io_recv);
}

void cons__io_hook(struct cons *c)
{
    c->io_start = c->io.start;
    c->io.start = io_start;
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
}
