/* consensus internals: the cons object and the seams between its files.
 *
 *   cons.c       lifecycle (start, stop, close order), queries, leadership tracking, the tick
 *   propose.c    group commit: the proposal queue, the flush, apply and barrier callbacks
 *   fsm.c        the raft_fsm: apply into the zone store, snapshot, restore
 *   entry.c      the entry frame (commands -> payload padded to 8 bytes)
 *   transport.c  our raft_uv_transport over rpc streams; the server RPC methods we serve
 *   form.c       cluster formation (HELLO, bootstrap_expect) and the join loop
 *   forward.c    followers: forwarded proposals, read indexes, waiting for local apply
 *   member.c     membership: join, leave, remove, promotion of spares and standbys
 *   io.c         a hook on what libraft's io delivers (works around two libraft bugs)
 *   raft_wire.c  the Raft wire decoder: libraft's message format, bounds-checked
 *   raft_stream.c accepted Raft streams, read and decoded here (libraft never reads them)
 *   failover.c   an election at once when the leader's stream ends; silent-peer timing
 *
 * Everything runs on the main loop thread. Never included from outside consensus/.
 */
#ifndef HERALD_CONSENSUS_INTERNAL_H
#define HERALD_CONSENSUS_INTERNAL_H

#include "consensus/consensus.h"
#include "rpc/rpc.h"

#include <assert.h>
#include <errno.h>
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
    int status; /* non-zero: refused at cons_propose (too big), reported by the flush; once
                 * done (c->props_done): the outcome */
    int result;
    uint64_t index;
    uint64_t deadline; /* uv_now bound for waiting for a leader (0: not waiting yet) */
    bool local_only;   /* proposed for a forwarded request: never forwarded again */
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
    struct base_list node; /* on c->inflight, in index order */
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
    struct cons_barrier *group; /* barriers of the same flush that share this one's entry */
    cons_barrier_cb cb;
    void *data;
};

/* Something to run later on the loop, outside the callback that decided it (user callbacks
 * never run inside RPC or libraft processing except libraft's own apply callbacks). */
struct cons_task {
    struct cons_task *next;
    void (*run)(struct cons_task *t);
};

/* Waits until the local store has applied index (or deadline passes: status -ETIMEDOUT). */
struct cons_waiter {
    struct cons_waiter *next;
    uint64_t index;
    uint64_t deadline;
    void (*fire)(struct cons_waiter *w, int status);
};

/* ---- server RPC (rpc/, methods in transport.c) ----------------------------------------- */

/* consensus's request types on the server port (transport.c's `methods` serves them). */
enum {
    CONS_RPC_HELLO = 1,      /* formation: who we are, what we know */
    CONS_RPC_FORWARD = 2,    /* a follower's commands, proposed by the leader */
    CONS_RPC_READ_INDEX = 3, /* the leader's applied index, after a barrier if consistent */
    CONS_RPC_JOIN = 4,       /* add this server (relayed to the leader) */
    CONS_RPC_REMOVE = 5,     /* remove a server (relayed to the leader) */
    CONS_RPC_FOLLOW = 6,     /* a client's replica stream: committed entries (replica.c) */
};

/* ---- formation (form.c) ---------------------------------------------------------------- */

struct cons_form_srv { /* a server known while forming, with its latest report */
    uint64_t id;
    char *address;
    bool reported; /* a HELLO from it (request or reply) while it was forming */
    uint32_t expect;
    uint64_t *set; /* the ids it knew, sorted */
    size_t n_set;
};

struct cons_form_addr { /* an address we say HELLO to */
    struct cons_form_addr *next;
    char *address;
    bool self; /* answered with our own id */
    bool inflight;
    unsigned failures;
    uint64_t next_at;
};

enum cons_form_phase {
    CONS_FORM_OFF = 0, /* Raft started: nothing to do */
    CONS_FORM_HELLO,   /* collecting servers for bootstrap_expect */
    CONS_FORM_JOIN,    /* Raft started empty: asking a cluster to add us */
};

struct cons_form {
    enum cons_form_phase phase;
    unsigned expect;
    struct cons_form_srv *known; /* sorted by id, ourselves included */
    size_t n_known;
    struct cons_form_addr *addrs;
    /* the configuration we bootstrapped in this process (reported in HELLO so that servers
     * of the same formation still forming bootstrap exactly the same one) */
    struct cons_form_srv *boot;
    size_t n_boot;
    /* the newest HELLO from a member of a running cluster, decided on in the tick */
    bool rep_valid, rep_boot_has_us, rep_config_has_us;
    char *rep_address;
    struct cons_form_srv *rep_boot;
    size_t n_rep_boot;
    /* join loop */
    char **join_via; /* candidate addresses */
    size_t n_join_via, join_next;
    bool join_inflight;
    unsigned join_failures;
    bool join_confirm; /* until a JOIN succeeds, even if our configuration lists us */
    uint64_t join_at;
    uint64_t warn_at; /* rate limit for repeated warnings */
};

/* ---- membership (member.c) ------------------------------------------------------------- */

/* An InstallSnapshot held back from libraft (io.c). */
struct cons_held {
    struct raft_message msg;
    char *address;
};

#define CONS_SNAP_SENT 4

struct cons_acked {
    uint64_t id;
    uint64_t index;                /* the highest last index it acknowledged */
    uint64_t snap_index;           /* the last index of the last InstallSnapshot sent to it */
    raft_time snap_at;             /* when that was sent (io->time) */
    bool snap_pending;             /* no result has reached snap_index yet */
    uint64_t sent[CONS_SNAP_SENT]; /* the last indexes of the snapshots sent to it (a ring) */
    size_t n_sent;
};

struct cons_change;    /* a configuration change run by the leader, one at a time */
struct cons_member_op; /* a join/leave/remove asked by this server, retried until a bound */

struct cons {
    uv_loop_t *loop;
    struct raft raft;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft_uv_transport transport;
    /* io.c: libraft's io->start, receive callback and io->send, wrapped */
    int (*io_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv);
    int (*io_send)(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
                   raft_io_send_cb cb);
    raft_io_recv_cb raft_recv;
    raft_io_tick_cb raft_tick;                /* libraft's tick, called by failover.c too */
    raft_time (*io_time)(struct raft_io *io); /* libraft's io->time, wrapped: + clock_skew */
    uint64_t clock_skew;                      /* ms the clock libraft sees runs ahead */
    uint64_t leader_msgs;                     /* messages from the current leader, counted */
    struct cons_held *held;
    /* io.c, on the leader: the highest last index each server acknowledged in this term */
    struct cons_acked *acked;
    size_t n_acked;
    uint64_t acked_term;
    uint64_t replace_id; /* a server whose log went backwards, for member.c's tick */
    /* raft_stream.c: accepted Raft streams (each counts in pending until freed) */
    struct base_list wire_conns; /* struct cons_wire_conn (raft_stream.c), newest first */
    uint64_t wire_warn_at;

    struct zone_store *store;
    cons_applied_cb on_applied;
    cons_leader_cb on_leader;
    void *data;
    uint64_t id;
    char *address;
    char *dir;

    /* group commit (propose.c) */
    uv_idle_t flush;               /* active while something is queued */
    struct cons_prop_queue queue;  /* proposals waiting for the flush */
    struct cons_barrier *barriers; /* barriers waiting for the flush, newest first */
    /* entries appended, not yet called back (struct cons_batch.node) */
    struct base_list inflight;
    bool nudge;           /* a follower waits for the commit index: append something */
    uint64_t commit_sent; /* the commit index our last append carried */

    /* deferred completions, run by the flush (propose.c) */
    struct cons_prop_queue props_done; /* proposals with their outcome in status/result/index */
    struct cons_task *tasks;           /* newest first */
    struct cons_waiter *waiters;       /* waiting for the local store to apply an index */

    /* followers (forward.c) */
    struct cons_prop_queue parked; /* proposals waiting for a leader */
    struct cons_read *reads;       /* read indexes waiting for a leader */
    unsigned wait_ms;              /* bound for waiting for a leader or the local apply */
    unsigned rpc_timeout_ms;       /* forwarded writes and read indexes */

    /* FSM (fsm.c) */
    struct base_arena arena; /* reset per applied entry */
    bool in_apply;
    uint64_t applied; /* last command index applied to the store */

    /* timing */
    unsigned election_ms, heartbeat_ms;

    /* server port (rpc/; transport.c) */
    struct rpc *rpc;             /* borrowed (cons_config.rpc) */
    struct rpc_client *client;   /* our calls (NULL once closed) */
    struct rpc_link stream_link; /* how our Raft streams are dialed and watched */
    cons_addr_allow_cb join_allowed;
    void *join_allowed_data;
    cons_addr_allow_cb client_allowed;
    void *client_allowed_data;

    /* client replicas (replica.c): a client's stream, or a server's retention for clients */
    bool is_client; /* no Raft: a read-only replica fed by a server's FOLLOW stream */
    struct cons_repl *repl;

    /* formation (form.c) and membership (member.c) */
    struct cons_form form;
    bool raft_started;
    struct base_list changes; /* queued on the leader; the first is running when active */
    bool change_active;
    uint64_t reconcile_at;
    struct base_list ops; /* joins, leaves and removes (member.c), newest first */

    /* leadership tracking (cons.c) */
    uv_timer_t tick;
    unsigned short last_state;
    raft_id last_leader;
    bool told_leading; /* what on_leader was last told */
    uint64_t told_leader;
    uint64_t contact_at; /* uv_now when a leader was last known */

    /* failover.c: the leader's Raft stream ended; our turn to start an election */
    uv_timer_t lost_timer;
    uint64_t lost_id;    /* that leader */
    uint64_t lost_msgs;  /* leader_msgs then: a message since cancels the turn */
    bool lost_rerun;     /* the timer runs our pre-vote again (we refused one) */
    unsigned reruns;     /* such reruns in this episode */
    unsigned lost_tries; /* turns tried (libraft stays follower while it writes entries) */

    /* lifecycle */
    bool stopping;  /* cons_stop (or a failed start) called raft_close */
    bool raft_done; /* raft_close's callback ran */
    int pending;    /* handles closing and connections not yet freed */
    void (*done)(void *);
    void *done_data;
};

/* cons.c */
/* One fewer thing to wait for before the cons can be freed (after cons_stop). */
void cons__unpend(struct cons *c);
/* Starts Raft (after formation decided, or at once). Logs and returns non-zero on failure. */
int cons__raft_start(struct cons *c);
/* Whether this server's id is in the current configuration, and its role there (-1: not). */
int cons__role_of(struct cons *c, uint64_t id);
/* The known leader other than us (NULL when none). */
const char *cons__leader_address(struct cons *c);
/* Samples state and leader: logs changes, tells on_leader. After every message libraft got
 * (raft_stream.c) and every tick. */
void cons__observe(struct cons *c);

/* propose.c */
void cons__propose_init(struct cons *c);
/* Ends every queued (not appended) proposal and barrier with status. */
void cons__propose_fail_queued(struct cons *c, int status);
/* The status a refused request gets when this server is not the leader. */
int cons__not_leader_status(struct cons *c);
/* Finds the in-flight batch whose entry is at index (NULL when none: follower, replay). */
struct cons_batch *cons__batch_find(struct cons *c, uint64_t index);
/* Starts the flush idle handle (the flush also runs deferred completions and waiters). */
void cons__schedule(struct cons *c);
/* On the leader: a follower waits to learn the current commit index; make the next flush
 * append something if the last append did not carry it (see the nudge in propose.c). */
void cons__nudge(struct cons *c);
/* Queues a proposal for a forwarded request: on a non-leader it ends with a not-leader
 * status instead of being forwarded again. */
void cons__propose_local(struct cons *c, const void *cmd, size_t len, cons_propose_cb cb,
                         void *data);
/* Hands finished proposals (outcome in status/result/index) to the flush to call back. */
void cons__props_done(struct cons *c, struct cons_prop *list);
void cons__prop_done(struct cons *c, struct cons_prop *p, int status, int result, uint64_t index);
/* Cuts off what one entry carries: the longest prefix of *list of unrefused proposals (status
 * 0) that fits CONS_ENTRY_MAX, at least one (a command of CONS_CMD_MAX bytes fits alone).
 * Returns it NULL-terminated, with its count and command bytes; *list keeps the rest. */
struct cons_prop *cons__props_cut(struct cons_prop **list, size_t *n, size_t *bytes);
/* Runs t->run from the next flush. */
void cons__defer(struct cons *c, struct cons_task *t);
/* Runs deferred completions now, until none are left (the flush, cons_stop). */
void cons__run_done(struct cons *c);

/* forward.c */
/* Proposals the flush found on a follower: forwarded to the leader, or parked for one. */
void cons__forward(struct cons *c, struct cons_prop *list);
void cons__wait_add(struct cons *c, struct cons_waiter *w);
/* Fires the waiters the store's applied index has reached (from the flush). */
void cons__waiters_run(struct cons *c);
/* Retries parked work when a leader is known, expires what waited too long (tick). */
void cons__forward_tick(struct cons *c);
/* Ends parked and pending work (cons_stop): never sent -> BASE_ESHUTDOWN. */
void cons__forward_stop(struct cons *c);
/* Server side of FORWARD and READ_INDEX. */
void cons__forward_serve(struct cons *c, struct rpc_req *req, const uint8_t *body, size_t len);
void cons__read_serve(struct cons *c, struct rpc_req *req, const uint8_t *body, size_t len);

/* fsm.c */
void cons__fsm_init(struct cons *c);

/* transport.c */
int cons__transport_init(struct cons *c, char *errmsg);
/* Frees the transport; call only once libraft's io is closed (it closes the transport). */
void cons__transport_close(struct cons *c);
/* Registers consensus on the server port (its methods, streams, members) and opens its
 * client; cons__port_close undoes it and ends every call (cons_stop). */
void cons__port_open(struct cons *c);
void cons__port_close(struct cons *c);
/* The peer is tied to a member of the current configuration: it proved the key, or its
 * source IP is a member's. */
bool cons__peer_is_member(struct cons *c, const struct rpc_peer *p);
/* Whether a server outside the configuration may join (or take part in a formation) from
 * sa without a key: cons_config.join_allowed, by default loopback only. */
bool cons__join_allowed(struct cons *c, const struct sockaddr_storage *sa);

/* Whether a client agent may FOLLOW, FORWARD and READ_INDEX from sa without a key:
 * cons_config.client_allowed (NULL: nobody). */
bool cons__client_allowed(struct cons *c, const struct sockaddr_storage *sa);

/* replica.c */
void cons__repl_init(struct cons *c);
void cons__repl_free(struct cons *c);
/* Server: the FSM applied the entry p (len bytes) at index: kept for followers. */
void cons__repl_retain(struct cons *c, uint64_t index, const void *p, size_t len);
/* Server: a snapshot replaced the catalog at index: the retained entries start again there. */
void cons__repl_restored(struct cons *c, uint64_t index);
void cons__follow_serve(struct cons *c, struct rpc_req *req, const uint8_t *body, size_t len);
/* A FOLLOW reply after its status, decoded and checked whole (pure: the fuzz target calls it).
 * Pointers and readers borrow from the body. BASE_EPARSE with *why when malformed. */
enum { CONS_FOLLOW_ENTRIES = 0, CONS_FOLLOW_SNAPSHOT = 1 };
struct cons_follow_reply {
    uint64_t leader_id, term, applied;
    const uint8_t *leader;
    size_t leader_len;
    uint64_t conf_hash;
    uint8_t has_conf; /* the configuration follows (it differs from the client's) */
    uint32_t n_conf;
    struct base_rd conf; /* n_conf of {u64 id, bytes address, u8 role} */
    uint8_t kind;
    uint32_t n_entries;
    struct base_rd entries; /* n_entries of {u64 index, bytes payload}, indexes increasing */
    uint64_t snap_index, snap_total, snap_offset;
    const uint8_t *piece;
    size_t piece_len;
};
int cons__follow_reply_check(const uint8_t *body, size_t len, struct cons_follow_reply *out,
                             const char **why) BASE_MUSTCHECK;
/* Server: answers the held FOLLOW requests that have news (from the flush). */
void cons__repl_flush(struct cons *c);
/* Server: answers every held FOLLOW request (cons_stop, before the port closes). */
void cons__repl_stop(struct cons *c);
/* Both: the tick (a client's next call after a failure; a server's heartbeats). */
void cons__repl_tick(struct cons *c);
/* Client: a server to follow. */
void cons__repl_seen(struct cons *c, uint64_t id, const char *address);
void cons__repl_leader(const struct cons *c, uint64_t *id, const char **address);
uint64_t cons__repl_term(const struct cons *c);
void cons__repl_servers_each(const struct cons *c,
                             void (*cb)(void *data, const struct cons_server *s), void *data);
/* Client: answers a membership request (later, from the flush). */
void cons__repl_member_answer(struct cons *c, int status, const char *msg, cons_member_cb cb,
                              void *data);

/* form.c */
/* Decides how Raft starts (cons_start): at once, or after formation. */
int cons__form_start(struct cons *c, const struct cons_config *cfg, char *errmsg);
void cons__form_tick(struct cons *c);
void cons__form_stop(struct cons *c);
void cons__form_free(struct cons *c);
void cons__hello_serve(struct cons *c, struct rpc_req *req, const uint8_t *body, size_t len);
/* Gives up forming (cons_join asked to join instead): starts Raft empty. */
void cons__form_abandon(struct cons *c);

/* io.c */
/* Wraps c->io.start (after raft_uv_init, before raft_start). */
void cons__io_hook(struct cons *c);
/* Hands a received message to libraft through the hook, as libraft's io would (after its io
 * started). Ownership of what m points to (entries, payload, configuration, snapshot data)
 * passes to libraft; server_address must live until the call returns. */
void cons__io_recv(struct cons *c, struct raft_message *m);
/* Delivers a held InstallSnapshot once our own snapshot is written (tick). */
void cons__io_tick(struct cons *c);
void cons__io_stop(struct cons *c);

/* member.c */
void cons__member_tick(struct cons *c);
/* Ends queued changes and idle requests (final: all requests, once Raft and RPC are closed). */
void cons__member_stop(struct cons *c, bool final);
void cons__join_serve(struct cons *c, struct rpc_req *req, const uint8_t *body, size_t len);
void cons__remove_serve(struct cons *c, struct rpc_req *req, const uint8_t *body, size_t len);
/* The join loop's request (form.c): JOIN {id, address} to address, cb with the reply status. */
void cons__join_send(struct cons *c, const char *address, unsigned timeout_ms, cons_member_cb cb,
                     void *data);

/* raft_wire.c: the Raft wire decoder (pure; see the file's comment for the format and
 * bounds). Errors are BASE_EPARSE with *why naming the reason (a static string). */
#define CONS_WIRE_PREAMBLE     16u
#define CONS_WIRE_ENTRIES_MAX  1024u
#define CONS_WIRE_ENTRY_MAX    (CONS_ENTRY_MAX + (64u << 10)) /* a multiple of 8 */
#define CONS_WIRE_CONF_MAX     (1u << 20)
#define CONS_WIRE_SNAPSHOT_MAX ((uint64_t)1 << 40)
#define CONS_WIRE_INDEX_MAX    ((uint64_t)1 << 62)
#define CONS_WIRE_TERM_MAX     ((uint64_t)1 << 62)
#define CONS_WIRE_TERM_FLOOR   ((uint64_t)1 << 32)
#define CONS_WIRE_TERM_JUMP    ((uint64_t)1 << 20)
struct cons_wire_pre {
    uint8_t type, version;
    size_t header_len;
};
/* The 16-byte preamble at p: a known type and a header length plausible for it. */
int cons__wire_preamble(const uint8_t *p, struct cons_wire_pre *pre,
                        const char **why) BASE_MUSTCHECK;
/* Decodes the header h (pre->header_len bytes) of a message from sender into m; *payload: the
 * payload bytes that follow (0: none, m is complete). On success m owns raft_malloc'd entries
 * or a configuration (cons__wire_free releases them); on failure it owns nothing. */
int cons__wire_header(const struct cons_wire_pre *pre, const uint8_t *h, uint64_t sender,
                      struct raft_message *m, size_t *payload, const char **why) BASE_MUSTCHECK;
/* Attaches the complete payload (raft_malloc'd, *payload bytes; m takes it over). */
void cons__wire_payload(struct raft_message *m, uint8_t *payload);
/* Releases what a decoded, undelivered m owns. */
void cons__wire_free(struct raft_message *m);
/* The message's term, and whether a server at term ours accepts it (see the bound's comment). */
uint64_t cons__wire_term(const struct raft_message *m);
bool cons__wire_term_ok(uint64_t ours, uint64_t theirs);
/* What m may not be for a server at term ours (leading or not): NULL when acceptable, else the
 * reason it is refused (the term bound, messages libraft assumes never come). */
const char *cons__wire_check(const struct raft_message *m, uint64_t ours, bool leader);

/* failover.c */
void cons__failover_init(struct cons *c);
/* The last Raft stream from server id ended (EOF or reset, not closed by us): if id is our
 * leader, a voting follower starts a pre-vote in its turn. */
void cons__peer_lost(struct cons *c, uint64_t id);
/* TCP_USER_TIMEOUT of outgoing server connections, and the bound of a dial's TCP connect. */
unsigned cons__silent_ms(const struct cons *c);
/* io.c's send hook: a pre-vote we refused while a candidate of an early election. */
void cons__vote_sent(struct cons *c, const struct raft_message *m);
unsigned cons__connect_ms(const struct cons *c);

/* raft_stream.c */
/* A Raft stream whose handshake named us (transport.c): read, decoded and delivered to libraft
 * from here. tcp (base_malloc'd by the rpc) is ours now; address is copied. */
void cons__wire_accept(struct cons *c, uint64_t id, const char *address, uv_tcp_t *tcp);
/* Closes every Raft stream (close_raft, before raft_close): nothing more is delivered. */
void cons__wire_stop(struct cons *c);

#endif
