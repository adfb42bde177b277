/* consensus: libraft (>= 0.17, DESIGN.md 2.6) on the main libuv loop, with the catalog
 * (zone_store) as its state machine.
 *
 * A write is an encoded zone command (zone_cmd_encode). cons_propose queues it; once per loop
 * iteration the queued commands travel in ONE Raft entry (group commit; libraft applies only
 * the first buffer of a batch). The entry is framed and padded to a multiple of 8 bytes with
 * its real length inside. When the entry commits, the FSM applies it to the zone store in one
 * LMDB transaction together with the applied index, then each proposer's callback runs with
 * its own command's result. Then on_applied tells admin which tables changed.
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

/* Called after an entry is applied (also during replay at start-up), with the tables it
 * changed (ZONE_TABLE_BIT mask; 0 when nothing changed). */
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
 * applied), bootstraps if asked, and runs on the loop. Loop thread. */
int cons_start(uv_loop_t *loop, const struct cons_config *cfg, struct cons **out,
               char *errmsg) BASE_MUSTCHECK;

/* Outcome of a proposal. status 0: committed and applied, result is the command's own result
 * (0, BASE_ECONFLICT, BASE_ENOTFOUND...). status BASE_ENOTLEADER / BASE_ENOLEADER: not
 * accepted, nothing written. status BASE_EUNKNOWN: the entry was appended but its fate is not
 * known (leadership lost, shutdown): it may still commit. index is the entry's Raft index when
 * status is 0. */
typedef void (*cons_propose_cb)(void *data, int status, int result, uint64_t index);

/* Queues one encoded command (copied). The callback always runs exactly once, later, on the
 * loop (never from inside this call). Loop thread. */
void cons_propose(struct cons *c, const void *cmd, size_t len, cons_propose_cb cb, void *data);

/* Barrier: cb runs with 0 once every entry before it is applied on this leader. */
typedef void (*cons_barrier_cb)(void *data, int status);
void cons_barrier(struct cons *c, cons_barrier_cb cb, void *data);

bool cons_is_leader(const struct cons *c);
/* The leader's id and address ("" and 0 when none known). */
void cons_leader(const struct cons *c, uint64_t *id, const char **address);
/* Milliseconds since the last contact with a leader (0 on the leader itself). */
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
 * and frees it, then calls done. The loop can then close cleanly. Loop thread. */
void cons_stop(struct cons *c, void (*done)(void *), void *data);

/* Frame encoding of one entry (exposed for tests): commands -> payload padded to 8. */
void cons_entry_encode(const struct base_slice *cmds, size_t n, struct base_buf *out);
/* Splits a payload back into commands (slices borrow from p). BASE_EPARSE when malformed. */
int cons_entry_decode(const void *p, size_t len, struct base_slice **cmds, size_t *n,
                      struct base_arena *a) BASE_MUSTCHECK;

#endif
