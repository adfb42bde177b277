/* consensus internals: the cons object and the seams between its files.
 *
 *   cons.c       lifecycle (start, stop, close order), queries, leadership tracking
 *   propose.c    group commit: the proposal queue, the flush, apply and barrier callbacks
 *   fsm.c        the raft_fsm: apply into the zone store, snapshot, restore
 *   entry.c      the entry frame (commands -> payload padded to 8 bytes)
 *   transport.c  the raft_uv_transport (libraft's TCP one for now; ours later)
 *
 * Everything runs on the main loop thread. Never included from outside consensus/.
 */
#ifndef HERALD_CONSENSUS_INTERNAL_H
#define HERALD_CONSENSUS_INTERNAL_H

#include "consensus/consensus.h"

#include <assert.h>
#include <raft.h>
#include <raft/uv.h>

/* Largest entry one flush appends (header and padding included). A queue longer than this is
 * split into several entries in the same flush; a single command over CONS_CMD_MAX is refused
 * with BASE_ETOOBIG. */
#define CONS_ENTRY_MAX (4u * 1024 * 1024)

/* Entry frame: u32 magic, u16 version, u16 flags (0), u32 count, u32 real length (header and
 * commands, padding excluded); then per command u32 length + bytes; then zeros up to a
 * multiple of 8. Little-endian like the rest of base's codec. */
#define CONS_ENTRY_MAGIC   0x444c5248u /* "HRLD" on the wire */
#define CONS_ENTRY_VERSION 1u
#define CONS_ENTRY_HEADER  16u
#define CONS_CMD_MAX       (CONS_ENTRY_MAX - CONS_ENTRY_HEADER - 4u - 8u)

/* Size of the padded frame for n commands whose lengths add up to cmd_bytes. */
size_t cons__entry_size(size_t n, size_t cmd_bytes);
/* Writes the frame of cmds into dst, which holds exactly cons__entry_size() bytes. This lets
 * the flush encode straight into the raft_malloc'd buffer libraft takes over. */
void cons__entry_write(void *dst, size_t size, const struct base_slice *cmds, size_t n);

/* One queued proposal: its command is copied into cmd[]. */
struct cons_prop {
    struct cons_prop *next;
    cons_propose_cb cb;
    void *data;
    int status; /* non-zero: refused at cons_propose (too big), reported by the flush */
    size_t len;
    uint8_t cmd[];
};

struct cons_prop_queue {
    struct cons_prop *head;
    struct cons_prop **tail;
};

/* One Raft entry in flight: the proposals it carries and, once applied, their results. */
struct cons_batch {
    struct raft_apply req; /* req.data == this */
    struct cons *c;
    struct cons_batch *prev, *next; /* c->inflight, in index order */
    uint64_t index;
    size_t n;
    struct cons_prop *props; /* n proposals, in command order */
    int *results;            /* n results, written by the FSM */
    bool applied;
};

/* One barrier, queued until the flush, then in flight. */
struct cons_barrier {
    struct raft_barrier req; /* req.data == this */
    struct cons *c;
    struct cons_barrier *next;
    cons_barrier_cb cb;
    void *data;
};

struct cons {
    uv_loop_t *loop;
    struct raft raft;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft_uv_transport transport;

    struct zone_store *store;
    cons_applied_cb on_applied;
    void *data;
    uint64_t id;
    char *address;
    char *dir;

    /* group commit (propose.c) */
    uv_idle_t flush;               /* active while something is queued */
    struct cons_prop_queue queue;  /* proposals waiting for the flush */
    struct cons_barrier *barriers; /* barriers waiting for the flush, newest first */
    struct cons_batch *inflight;   /* entries appended, not yet called back */
    struct cons_batch *inflight_tail;

    /* FSM (fsm.c) */
    struct base_arena arena; /* reset per applied entry */
    bool in_apply;

    /* leadership tracking (cons.c) */
    uv_timer_t tick;
    unsigned short last_state;
    raft_id last_leader;
    uint64_t contact_at; /* uv_now when a leader was last known */

    /* lifecycle */
    bool stopping; /* cons_stop (or a failed start) called raft_close */
    int open_handles;
    void (*done)(void *);
    void *done_data;
};

/* propose.c */
void cons__propose_init(struct cons *c);
/* Ends every queued (not appended) proposal and barrier with status. */
void cons__propose_fail_queued(struct cons *c, int status);
/* The status a refused request gets when this server is not the leader. */
int cons__not_leader_status(struct cons *c);
/* Finds the in-flight batch whose entry is at index (NULL when none: follower, replay). */
struct cons_batch *cons__batch_find(struct cons *c, uint64_t index);

/* fsm.c */
void cons__fsm_init(struct cons *c);

/* transport.c */
int cons__transport_init(struct cons *c, char *errmsg);
/* Frees the transport; call only once libraft's io is closed (it closes the transport). */
void cons__transport_close(struct cons *c);

#endif
