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
 * Clusters (DESIGN.md 2.5). Servers talk over one TCP port, the server port: the rpc module
 * (rpc/rpc.h), which the caller starts and hands over in cons_config.rpc. Consensus rides on
 * it: Raft streams through our own raft_uv_transport (transport.c), and server RPC methods
 * (transport.c's table) for formation, write forwarding, read indexes and membership. A write
 * proposed on a follower is forwarded to the leader, proposed there through the same group
 * commit, and answered after commit once the local replica has applied it (bounded wait), so
 * the proposer reads its own write locally. With bootstrap_expect N the servers exchange ids
 * and addresses (HELLO) and all bootstrap the same sorted configuration; a later server joins
 * through the leader (spare, caught up, then voter while fewer than 5 voters, standby
 * beyond); a restarted server needs only its dir.
 *
 * Inputs and outputs besides writes and reads. Server discovery is an input: cons_server_seen
 * ("server id seen at address"), fed today by the HELLO exchange of formation and next by
 * gossip. Leadership is an output: cons_config.on_leader is called whenever this server
 * becomes or stops being the leader or the leader it follows changes, so that nothing needs
 * to poll cons_leader on a timer (cons_leader and cons_is_leader remain for answering
 * requests).
 *
 * Client agents (cons_config.client; replica.c). A client runs no Raft: its store is a
 * read-only replica fed by one server's FOLLOW stream of committed entries (a snapshot when it
 * is behind what that server retains, then the entries one by one with their Raft indexes),
 * its writes and read indexes go to the leader that stream names, as a follower's do, and
 * every server keeps the recent entries for its clients and serves them FOLLOW.
 *
 * Threads: everything here runs on the main loop thread (BASE_ASSERT_LOOP).
 * Ownership: commands are copied; the store and the server port are borrowed for the life of
 * the cons (stop the cons before the rpc); every string of the config is copied by
 * cons_start.
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

/* Whether a peer's source address is allowed something (it runs on the loop thread). */
typedef bool (*cons_addr_allow_cb)(void *data, const struct sockaddr *sa);

/* Leadership changed: this server leads now (is_leader; leader_id is then its own id) or not,
 * and the leader it knows (leader_id 0 and address "" when none is known). Called on the loop
 * when the pair (is_leader, leader_id) differs from the last call (the first call reports the
 * first leader known, or our own election), after the message or tick that changed it, never
 * inside libraft's processing; address is valid during the call. It may propose and read; not
 * cons_stop. Not called once cons_stop ran. */
typedef void (*cons_leader_cb)(void *data, bool is_leader, uint64_t leader_id,
                               const char *leader_address);

struct rpc;

struct cons_config {
    const char *dir;     /* Raft log and snapshots (created if missing) */
    uint64_t id;         /* this server's Raft id, non-zero, unique in the cluster */
    const char *address; /* advertised "ip:port" (or "[v6]:port") of the server port */
    /* The server port, started by the caller with the same id and address (rpc_start); it
     * holds the listener, the cluster key and the connection caps. Consensus registers its
     * methods and streams on it and removes them at cons_stop; stop the rpc after that. */
    struct rpc *rpc;
    /* Formation (only for an empty Raft dir; a dir with Raft state just starts):
     *  bootstrap, or bootstrap_expect 1: bootstrap a one-voter cluster of ourselves;
     *  bootstrap_expect N >= 2: exchange HELLOs with the join addresses (and the servers they
     *    know) until N servers agree on the same set, then all bootstrap it (sorted by id);
     *    a server that finds a running cluster instead joins it;
     *  bootstrap_expect 0 with join addresses: join a running cluster through them;
     *  neither: wait (cons_join). */
    bool bootstrap;
    unsigned bootstrap_expect;
    const char *const *join; /* n_join server-port addresses "host:port" of other servers */
    size_t n_join;
    /* Other servers are also found by cons_server_seen (the agent's gossip pool): with it, an
     * empty dir with bootstrap_expect 0 joins through the first server seen (not waiting for
     * cons_join), and a dir with Raft state confirms its membership through the servers seen,
     * as it does through join addresses. */
    bool discover;
    /* Timing. LAN base: election 500 ms, heartbeat 50 ms, with pre-vote; both scaled by
     * raft_multiplier (0: 1; at most 10), as Consul's performance.raft_multiplier scales
     * Consul's own base. A leader whose connections close (killed, crashed) is replaced
     * without waiting for the election timeout, a silent one after it; the server port's
     * silent-peer bounds derive from the heartbeat (failover.c; cons.c's opening comment,
     * and tests/bench/RESULTS.md for the measured figures). Non-zero explicit timeouts win
     * over the scaled base. */
    unsigned raft_multiplier;
    unsigned election_timeout_ms;  /* 0: 500 x raft_multiplier */
    unsigned heartbeat_timeout_ms; /* 0: 50 x raft_multiplier */
    unsigned snapshot_threshold;   /* 0: 1024 entries */
    unsigned snapshot_trailing;    /* 0: 1024 entries; raised to threshold if below it */
    struct zone_store *store;
    cons_applied_cb on_applied;
    cons_leader_cb on_leader; /* NULL: not told */
    void *data;               /* for on_applied and on_leader */
    /* Without a cluster key (rpc_config.key), peers are tied to members by their source
     * address (transport.c's design paragraph), and join_allowed says from which other
     * addresses a server may ask to join (NULL: loopback only). */
    cons_addr_allow_cb join_allowed;
    void *join_allowed_data;
    /* On a server without a cluster key: from which source addresses other than members a
     * client agent may FOLLOW, FORWARD and READ_INDEX (NULL: none; not loopback as for
     * join_allowed, since every 127/8 address is loopback and an outsider there must not
     * forward writes). With a key every peer that proved it may. */
    cons_addr_allow_cb client_allowed;
    void *client_allowed_data;
    /* A client agent (issue 12): no Raft at all (dir may be NULL and is not created;
     * bootstrap, bootstrap_expect and join must be unset, else cons_start fails with
     * BASE_EINVAL). The store is a read-only replica written only by the stream of committed
     * entries (FOLLOW, consensus/replica.c) from one server among those cons_server_seen
     * named, picked at random and replaced when its stream fails. cons_propose forwards to the
     * leader the stream names and calls back once the replica applied the write;
     * cons_read_index asks the leader and waits for the replica; cons_barrier ends with
     * BASE_ENOTLEADER; cons_is_leader is false; cons_leader, cons_term and cons_servers_each
     * report what the followed server last said; cons_last_contact_ms is the time since the
     * stream's last message (since start when none); cons_join and cons_remove_peer end with
     * BASE_EINVAL "not a server", cons_leave with 0. on_applied and on_leader are called as
     * on a follower. The rpc (cfg.rpc, id and address) is still needed for the calls. */
    bool client;
};

/* Starts Raft (a client: only its replica stream, see cons_config.client): loads log and
 * snapshots (replaying into the store, skipping entries already applied), bootstraps if
 * asked, and runs on the loop. Ignores SIGPIPE process-wide.
 * On failure *out is NULL and errmsg says why; a start that failed late may leave handles
 * closing, so run the loop before uv_loop_close. Loop thread. */
int cons_start(uv_loop_t *loop, const struct cons_config *cfg, struct cons **out,
               char *errmsg) BASE_MUSTCHECK;

/* Outcome of a proposal. status 0: committed and applied, result is the command's own result
 * (0, BASE_ECONFLICT, BASE_ENOTFOUND...). status BASE_ENOLEADER: no leader appeared within the
 * bounded wait (3 election timeouts), nothing written. BASE_ENOTLEADER: only for commands that
 * reached a server that lost leadership in between, nothing written. BASE_ETOOBIG: the
 * command is over the 4 MiB entry cap, nothing written. BASE_ESHUTDOWN: cons_stop came before
 * the command was appended, nothing written. status BASE_EUNKNOWN: the entry was appended (or
 * the forwarded command sent) but its fate is not known (leadership lost, shutdown, the
 * connection to the leader lost or timed out): it may still commit. index is the entry's Raft
 * index when status is 0 (commands proposed in the same loop iteration share it); result and
 * index are 0 otherwise.
 * On a follower the commands are forwarded to the leader (all the commands of one loop
 * iteration in one message, proposed there as one entry) and the callback runs after the
 * commit once the local store has applied the entry too (waiting at most 3 election
 * timeouts for that; the status is 0 either way), so a local read right after sees it. */
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

/* Read index: the Raft index a read must see, for reads that need the leader's view without
 * sending them to the leader. cb gets status 0 and index once the LOCAL store has applied
 * everything up to index, so the caller then reads its local replica:
 *   consistent false (Consul's default mode): index is the leader's applied index; on the
 *     leader itself, its own at once (leader reads are local);
 *   consistent true (?consistent): the leader first appends a barrier and waits for it to
 *     apply (a quorum confirmed its leadership; DESIGN.md 1.3: never a lease alone).
 * A follower asks the leader (READ_INDEX over the server port) and then waits for its own
 * replica to catch up. Errors: BASE_ENOLEADER (no leader within the bounded wait of 3
 * election timeouts, retrying as leadership appears), -ETIMEDOUT (the local replica did not
 * reach the index within that wait), BASE_ESHUTDOWN. cb runs exactly once, later, never
 * inside this call. Loop thread. */
typedef void (*cons_read_cb)(void *data, int status, uint64_t index);
void cons_read_index(struct cons *c, bool consistent, cons_read_cb cb, void *data);

/* Index of the last command applied to the local store (the catalog's "applied" meta; Raft
 * barriers and configuration entries are not counted). */
uint64_t cons_applied_index(const struct cons *c);

/* Membership. cb gets 0 on success, else a code with a one-line message in msg (never NULL;
 * valid during the call). All run exactly once, later, never inside the call; they retry
 * what is worth retrying (no leader, leadership moving, a change already in progress, a
 * connection refused) up to a bound: 60 s for a join (it includes catching the new server
 * up), 15 s otherwise. Loop thread. */
typedef void (*cons_member_cb)(void *data, int status, const char *msg);

/* Asks the server at address ("host:port" of its server port) to add this server to its
 * cluster: the leader adds it as spare, catches it up, then makes it a voter while the
 * cluster has fewer than 5 voters, a standby beyond. Any member relays to its leader. A server
 * still forming (bootstrap_expect) gives up forming and joins. Status 0 also when already a
 * member at this address; BASE_ECONFLICT when the id or the address is taken by another. */
void cons_join(struct cons *c, const char *address, cons_member_cb cb, void *data);

/* Leaves the cluster gracefully: a leader first transfers leadership to another voter, then
 * this server asks the leader to remove it. 0 once the removal committed (or when this server
 * is not in the configuration; a one-server cluster has nothing to leave). The caller then
 * stops the cons. */
void cons_leave(struct cons *c, cons_member_cb cb, void *data);

/* Removes a server by id, or by address when id is 0 (operator raft remove-peer). 0 when it
 * is gone (also when it was not there). Removing the leader transfers leadership first. */
void cons_remove_peer(struct cons *c, uint64_t id, const char *address, cons_member_cb cb,
                      void *data);

/* Server discovery: a server with this id was seen at address (its server port, "host:port";
 * copied). The HELLO exchange of formation feeds it today, gossip next. While forming
 * (bootstrap_expect) the address joins those this server exchanges HELLOs with, so a
 * formation finds servers no join address named; while waiting to join (Raft started empty)
 * it becomes one more server to ask; a running member has no use for it yet (the leader's
 * reconciliation of gossip members comes with gossip). On a client it is a server the replica
 * may follow (one is picked at random at the next tick, another when its stream fails). The caller
 * vouches for the sighting (a HELLO from an address form.c trusts; gossip's key). Loop thread. */
void cons_server_seen(struct cons *c, uint64_t id, const char *address);

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
/* Calls cb for every server of the current configuration (empty while still forming). */
void cons_servers_each(const struct cons *c, void (*cb)(void *data, const struct cons_server *s),
                       void *data);
uint64_t cons_term(const struct cons *c);
/* A server's Raft id from its node ID (a UUID): the first 16 hex digits, never 0. The agent
 * derives its own id this way, so the id of any server names its node in the catalog. */
uint64_t cons_id_from_node_id(const char *node_id);
uint64_t cons_last_index(const struct cons *c);

/* Stops Raft (pending proposals end with BASE_EUNKNOWN or BASE_ESHUTDOWN), closes its handles
 * and connections and frees it, then calls done. The loop can then close cleanly. The
 * callbacks of queued and in-flight proposals, barriers, read indexes and membership requests
 * run inside this call (a forwarded write already committed but not yet applied locally ends
 * with status 0; one sent and unanswered with BASE_EUNKNOWN); those made after it (from those
 * callbacks, say) end with BASE_ESHUTDOWN before done. c is freed before done runs. Not from
 * on_applied. Loop thread. */
void cons_stop(struct cons *c, void (*done)(void *), void *data);

/* Frame encoding of one entry (exposed for tests): commands -> payload padded to 8. */
void cons_entry_encode(const struct base_slice *cmds, size_t n, struct base_buf *out);
/* Splits a payload back into commands (slices borrow from p, the array is in the arena).
 * BASE_EPARSE when malformed, BASE_EINVAL when written by a newer frame version. */
int cons_entry_decode(const void *p, size_t len, struct base_slice **cmds, size_t *n,
                      struct base_arena *a) BASE_MUSTCHECK;

#endif
