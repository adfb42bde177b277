/* consensus: libraft (>= 0.17, DESIGN.md 2.6) on the main libuv loop, with the catalog
 * (zone_store) as its state machine.
 *
 * A write is an encoded zone command (zone_cmd_encode). cons_propose queues it; once per loop
 * iteration the queued commands travel in ONE Raft entry (group commit; libraft applies only
 * the first buffer of a batch). The entry is framed and padded to a multiple of 8 bytes with
 * its real length inside. When the entry commits, the FSM applies it to the zone store in one
 * LMDB transaction together with the applied index, and on_applied tells admin which tables
 * changed. Then (later in the same or the next loop iteration, when libraft fires its apply
 * callback) each proposer's callback runs with its own command's result.
 *
 * Threads: everything here runs on the main loop thread (BASE_ASSERT_LOOP).
 * Ownership: commands are copied; the store is borrowed for the life of the cons.
 */
#ifndef HERALD_CONSENSUS_H
#define HERALD_CONSENSUS_H

#include "base/base.h"
#include "zone/zone.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct cons;

/* Called after an entry is applied (also during replay at start-up, inside cons_start), with
 * the tables it changed (ZONE_TABLE_BIT mask; 0 when nothing changed, as for entries replayed
 * but already in the catalog). After a snapshot replaced the catalog: index is the catalog's
 * new applied index and touched is ZONE_TABLE_ALL. Runs inside libraft's apply: it may
 * propose and ask for barriers (both are queued), but must not call cons_stop. */
typedef void (*cons_applied_cb)(void *data, uint64_t index, uint32_t touched);

struct cons_config {
    const char *dir;     /* Raft log and snapshots (created if missing) */
    uint64_t id;         /* this server's Raft id, non-zero */
    const char *address; /* "ip:port" of the server port */
    bool bootstrap;      /* bootstrap a one-voter cluster of ourselves if the log is empty */
    unsigned election_timeout_ms;  /* 0: LAN default (1000) */
    unsigned heartbeat_timeout_ms; /* 0: LAN default (100) */
    unsigned snapshot_threshold;   /* 0: 8192 entries */
    unsigned snapshot_trailing;    /* 0: 10240 entries; raised to threshold if below it */
    struct zone_store *store;
    cons_applied_cb on_applied;
    void *data;
};

/* Starts Raft: loads log and snapshots (replaying into the store, skipping entries already
 * applied), bootstraps if asked, and runs on the loop. Ignores SIGPIPE process-wide.
 * On failure *out is NULL and errmsg says why; a start that failed late may leave handles
 * closing, so run the loop before uv_loop_close. Loop thread. */
int cons_start(uv_loop_t *loop, const struct cons_config *cfg, struct cons **out,
               char *errmsg) BASE_MUSTCHECK;

/* Outcome of a proposal. status 0: committed and applied, result is the command's own result
 * (0, BASE_ECONFLICT, BASE_ENOTFOUND...). status BASE_ENOTLEADER / BASE_ENOLEADER: not
 * accepted, nothing written. BASE_ETOOBIG: the command is over the 4 MiB entry cap, nothing
 * written. BASE_ESHUTDOWN: cons_stop came before the command was appended, nothing written.
 * status BASE_EUNKNOWN: the entry was appended but its fate is not known (leadership lost,
 * shutdown): it may still commit. index is the entry's Raft index when status is 0 (commands
 * proposed in the same loop iteration share it); result and index are 0 otherwise. */
typedef void (*cons_propose_cb)(void *data, int status, int result, uint64_t index);

/* Queues one encoded command (copied). The callback always runs exactly once, later, on the
 * loop (never from inside this call). Loop thread. */
void cons_propose(struct cons *c, const void *cmd, size_t len, cons_propose_cb cb, void *data);

/* Barrier: cb runs with 0 once every entry before it is applied on this leader (barriers asked
 * for during a loop iteration are appended after that iteration's commands). Otherwise
 * BASE_ENOTLEADER / BASE_ENOLEADER (not the leader, or leadership lost before it applied),
 * BASE_ESHUTDOWN, or BASE_EUNKNOWN (libraft refused it for another reason). Like cons_propose,
 * cb always runs exactly once, later, never inside this call. Loop thread. */
typedef void (*cons_barrier_cb)(void *data, int status);
void cons_barrier(struct cons *c, cons_barrier_cb cb, void *data);

bool cons_is_leader(const struct cons *c);
/* The leader's id and address ("" and 0 when none known). */
void cons_leader(const struct cons *c, uint64_t *id, const char **address);
/* Milliseconds since the last contact with a leader (0 on the leader itself; on a follower the
 * time since the current leader's last message; with no leader known, since one was last
 * known, or since cons_start). */
uint64_t cons_last_contact_ms(const struct cons *c);

struct cons_server {
    uint64_t id;
    const char *address;
    int role; /* 0 standby, 1 voter, 2 spare (libraft's RAFT_STANDBY, RAFT_VOTER, RAFT_SPARE) */
};
/* Calls cb for every server of the current configuration. */
void cons_servers_each(const struct cons *c, void (*cb)(void *data, const struct cons_server *s),
                       void *data);
uint64_t cons_term(const struct cons *c);
uint64_t cons_last_index(const struct cons *c);

/* Stops Raft (pending proposals end with BASE_EUNKNOWN or BASE_ESHUTDOWN), closes its handles
 * and frees it, then calls done. The loop can then close cleanly. The callbacks of queued and
 * in-flight proposals and barriers run inside this call; proposals and barriers made after it
 * (from those callbacks, say) end with BASE_ESHUTDOWN before done. c is freed before done
 * runs. Not from on_applied. Loop thread. */
void cons_stop(struct cons *c, void (*done)(void *), void *data);

/* Frame encoding of one entry (exposed for tests): commands -> payload padded to 8. */
void cons_entry_encode(const struct base_slice *cmds, size_t n, struct base_buf *out);
/* Splits a payload back into commands (slices borrow from p, the array is in the arena).
 * BASE_EPARSE when malformed, BASE_EINVAL when written by a newer frame version. */
int cons_entry_decode(const void *p, size_t len, struct base_slice **cmds, size_t *n,
                      struct base_arena *a) BASE_MUSTCHECK;

#endif
