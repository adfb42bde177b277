/* gossip: membership and failure detection for Herald's agents, SWIM with Lifeguard, in
 * HashiCorp memberlist's and serf's wire format, so Debian's serf agent (0.9.x) is a real
 * peer (DESIGN.md 2.7, issue 11).
 *
 * The module holds the wire codec (gossip/wire.h: every memberlist and serf message, compound,
 * CRC, LZW compression, AES-GCM encryption; mp.h under it), the member table's state
 * transitions (gossip/member.h), the broadcast queue (gossip/queue.h), all pure, and the
 * protocol engine on libuv (gossip/swim.c: UDP and TCP on one address and port, probes,
 * gossip, push-pull, serf's intents, Lamport clocks and user events; gossip/query.c: serf's
 * queries, for the keyring, whose pure half is gossip/keyring.c). admin/serf.c runs one for
 * the agent's LAN pool.
 *
 * Threads: the codec and the member table are pure and run on any thread; an engine runs on
 * the loop thread it was started on, and every gossip_* function taking a struct gossip must
 * be called there. Callbacks run on that thread. Ownership: arguments are borrowed for the
 * call unless a comment says otherwise; what a callback is given is valid during the call.
 */
#ifndef HERALD_GOSSIP_H
#define HERALD_GOSSIP_H

#include "base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Decodes a gossip encryption key as `-encrypt` and serf's -encrypt give it: base64 of 16, 24
 * or 32 bytes (AES-128, -192, -256). 0 and *len; BASE_EINVAL otherwise. */
int gossip_key_decode(const char *b64, uint8_t key[32], size_t *len);

/* A serf tag (a node's Meta holds them). */
struct gossip_tag {
    const char *key;
    const char *value;
};

/* A member's status as serf has it. */
enum gossip_status {
    GOSSIP_MEMBER_ALIVE = 1,
    GOSSIP_MEMBER_LEAVING = 2, /* its leave intent arrived; its dead has not */
    GOSSIP_MEMBER_LEFT = 3,
    GOSSIP_MEMBER_FAILED = 4,
};
const char *gossip_status_name(enum gossip_status s); /* "alive", "leaving", "left", "failed" */

struct gossip_node {
    const char *name;
    char addr[46]; /* text form of its address */
    uint16_t port;
    const struct gossip_tag *tags;
    size_t n_tags;
    enum gossip_status status;
    uint32_t incarnation;
    /* memberlist's protocol versions from its alive (serf.Member's ProtocolMin, ProtocolMax,
     * ProtocolCur, DelegateMin, DelegateMax, DelegateCur), as received */
    uint8_t vsn[6];
};

enum gossip_event_kind {
    GOSSIP_EVENT_JOIN,   /* node became alive (new, or back from failed or left) */
    GOSSIP_EVENT_UPDATE, /* an alive node's tags changed */
    GOSSIP_EVENT_LEAVE,  /* node left gracefully */
    GOSSIP_EVENT_FAIL,   /* node failed (declared dead without leaving) */
    GOSSIP_EVENT_REAP,   /* a failed or left node was forgotten (reconnect/tombstone timeout) */
    GOSSIP_EVENT_USER,   /* a user event (serf's), ours included */
};
const char *gossip_event_name(enum gossip_event_kind k); /* "join", "update", ... "user" */

struct gossip_event {
    enum gossip_event_kind kind;
    const struct gossip_node *node; /* member events */
    /* user events */
    const char *name;
    const uint8_t *payload;
    size_t payload_len;
    uint64_t ltime;
    bool coalesce;
};
typedef void (*gossip_event_cb)(void *ctx, const struct gossip_event *ev);

/* The configuration. gossip_config_defaults fills Herald's LAN timings (names as Consul's
 * gossip_lan; faster than memberlist's, swim.c says why and at what cost) and serf's defaults;
 * the caller sets at least node_name and bind_addr. */
struct gossip_config {
    const char *node_name;
    const char *bind_addr;      /* IPv4 or IPv6 literal */
    uint16_t bind_port;         /* 8301 */
    const char *advertise_addr; /* NULL: bind_addr (which must then not be a wildcard) */
    uint16_t advertise_port;    /* 0: bind_port */
    const struct gossip_tag *tags;
    size_t n_tags;
    const uint8_t *key; /* 16, 24 or 32 bytes, or NULL: no encryption */
    size_t key_len;
    /* A whole keyring instead (a persisted one, see "Keyring" below): n_keyring base64 keys,
     * the first the primary. When n_keyring > 0 key is ignored (Consul: a keyring file wins
     * over -encrypt). A key that does not decode to 16, 24 or 32 bytes fails the start with
     * BASE_EINVAL. At most GOSSIP_KEYRING_MAX. */
    const char *const *keyring;
    size_t n_keyring;

    uint64_t probe_interval_ms;          /* 250 (memberlist's LAN: 1000) */
    uint64_t probe_timeout_ms;           /* 100 (500) */
    uint64_t gossip_interval_ms;         /* 100 (200) */
    uint32_t gossip_nodes;               /* 3 */
    uint32_t suspicion_mult;             /* 4 */
    uint32_t suspicion_max_timeout_mult; /* 6 */
    uint32_t retransmit_mult;            /* 4 */
    uint64_t push_pull_interval_ms;      /* 30000; 0: no periodic push-pull */
    uint32_t indirect_checks;            /* 3 */
    uint32_t awareness_max_multiplier;   /* 8 */
    uint64_t gossip_to_the_dead_ms;      /* 30000 */
    uint64_t tcp_timeout_ms;             /* 10000 */
    uint64_t reconnect_interval_ms;      /* 30000: a failed member is retried so often */
    uint64_t reconnect_timeout_ms;       /* 72 h: a failed member is reaped after it */
    uint64_t tombstone_timeout_ms;       /* 24 h: a left member is reaped after it */
    uint64_t leave_propagate_ms;         /* 1000: a leave's wait between its intent and dead */

    /* caps on what a remote peer can make us hold */
    size_t max_members;            /* 4096 */
    size_t max_queue;              /* 4096 serf broadcasts (serf's MaxQueueDepth) */
    size_t max_stream;             /* 4 MiB: one push-pull or stream message */
    uint32_t max_conns;            /* 64 inbound TCP connections */
    uint32_t max_conns_per_source; /* 4 from one address */

    gossip_event_cb on_event;
    void *ctx;

    /* serf's merge delegate (Consul's merge.go), may be NULL: asked before another node's state
     * is taken in, with ctx, about the n nodes of a push-pull (a join's or a periodic one,
     * either side, ourselves among them as the peer sees us; status: alive for alive and
     * suspect, failed for dead, left)
     * or about the one node of an alive message that would change our table (new, newer
     * incarnation or new address; never ourselves). Returns 0 to accept; nonzero refuses it,
     * with a reason written to why (why_len bytes, NUL-terminated) that is logged at warn: a
     * refused push-pull is not merged at all (serf's part neither) and a join through it
     * fails with BASE_EACL; a refused alive is ignored. Must not call gossip_* functions. */
    int (*on_merge)(void *ctx, const struct gossip_node *nodes, size_t n, char *why,
                    size_t why_len);

    /* Called with ctx after the local keyring changed (a keyring query from any member, ours
     * included, installed, used or removed a key), with the keys in base64, the primary first:
     * the caller persists them (serf's and Consul's DATA/serf/local.keyring is a JSON array of
     * these strings in this order) and loads them into keyring at the next start. Returns 0;
     * nonzero (with a reason in why, why_len bytes, NUL-terminated) makes this member's answer
     * to the query a failure with that message, as serf answers when it cannot write its
     * keyring file; the change stays in memory. May be NULL. Must not call gossip_* functions. */
    int (*on_keyring)(void *ctx, const char *const *keys, size_t n, char *why, size_t why_len);

    /* The datagram path, replaceable (see struct gossip_net); zero: the UDP socket. */
    struct gossip_net {
        /* With send set, the engine opens no UDP socket: every packet it would send goes to
         * send(ctx, to, bytes, len) instead (bytes borrowed for the call; the hook copies what
         * it keeps, returns 0 or a negative code, and must not call gossip_net_deliver from
         * inside), and packets reach it only through gossip_net_deliver. TCP (push-pull,
         * joins, the fallback ping) stays real on bind_addr:bind_port. For a simulated network
         * of many engines in one process (tests/tools/gossip_sim.c). */
        int (*send)(void *ctx, const struct sockaddr *to, const uint8_t *p, size_t len);
        void *ctx;
    } net;
};
void gossip_config_defaults(struct gossip_config *c);

struct gossip;

/* Starts an engine on loop: binds UDP and TCP on bind_addr:bind_port and begins probing and
 * gossiping (alone until a join). *out on 0; a negative code (a bind error, BASE_EINVAL for
 * a bad configuration, logged) otherwise, after which the loop must still run to close what
 * was opened. The configuration is copied (tags, key and strings included). Our own join is
 * the first event. Loop thread. */
int gossip_start(uv_loop_t *loop, const struct gossip_config *cfg,
                 struct gossip **out) BASE_MUSTCHECK;

/* Stops at once, with no leave (to the others it is a failure): closes every socket and
 * timer. The engine frees itself when its handles have closed (the loop runs them); cb (may
 * be NULL) is called then. Joins still pending get their callback (BASE_ESHUTDOWN) during the
 * call; a leave's is dropped; no other callback comes after gossip_stop returns but cb. May be
 * called from an event callback. */
typedef void (*gossip_done_cb)(void *ctx, int status);
void gossip_stop(struct gossip *g, gossip_done_cb cb, void *ctx);

/* Joins the pool through the members at addrs ("ip", "ip:port", "[v6]:port"; a bare ip means
 * our own bind_port, as memberlist's resolveAddr; IP literals only: a host name fails that
 * address with BASE_EINVAL and a warn naming it, so the caller resolves names) by TCP push-pull
 * with each. As Consul's joins, the pool's earlier user events are not replayed to us (serf's
 * ignoreOld). cb(ctx, joined, status) once all have answered or failed: joined how many did, status
 * 0 if any did. Loop thread. */
typedef void (*gossip_join_cb)(void *ctx, size_t joined, int status);
int gossip_join(struct gossip *g, const char *const *addrs, size_t n, gossip_join_cb cb,
                void *ctx) BASE_MUSTCHECK;

/* Graceful leave: serf's leave intent, then two gossip intervals later (at most
 * leave_propagate_ms) memberlist's dead about ourselves, each gossiped and also sent straight
 * to every live member; cb(ctx, 0) leave_propagate_ms after the dead, when both have had time
 * to spread. Then gossip_stop. BASE_EINVAL if a leave was already asked. Loop thread. */
int gossip_leave(struct gossip *g, gossip_done_cb cb, void *ctx) BASE_MUSTCHECK;

/* serf's RemoveFailedNode (Consul's force-leave): a leave intent about another member, so a
 * failed one becomes left everywhere (prune: and is forgotten at once, a reap). Loop thread. */
int gossip_force_leave(struct gossip *g, const char *name, bool prune) BASE_MUSTCHECK;

/* Fires a user event (serf's), delivered to us too. It travels piggybacked in one packet, so
 * its encoding must fit one (name and payload about 1.3 KB, less with a key): BASE_ETOOBIG
 * otherwise. Loop thread. */
int gossip_event_fire(struct gossip *g, const char *name, const uint8_t *payload, size_t len,
                      bool coalesce) BASE_MUSTCHECK;

/* Replaces our tags (broadcast as a new alive). Loop thread. */
int gossip_set_tags(struct gossip *g, const struct gossip_tag *tags, size_t n) BASE_MUSTCHECK;

/* Calls cb for every member serf knows (ourselves included, reaped ones not). Loop thread. */
typedef void (*gossip_member_cb)(void *ctx, const struct gossip_node *node);
void gossip_members(struct gossip *g, gossip_member_cb cb, void *ctx);
/* Members alive (ourselves included). */
size_t gossip_num_alive(const struct gossip *g);

/* ---- Keyring ----
 * memberlist's keyring: up to GOSSIP_KEYRING_MAX keys; the first (the primary) encrypts, every
 * one is tried to decrypt. An engine started without a key has none and refuses to get one, as
 * serf does ("No keyring to modify (encryption not enabled)"). Removing the primary is refused.
 *
 * gossip_keyring runs one of serf's internal keyring queries (_serf_install-key, _serf_use-key,
 * _serf_remove-key, _serf_list-keys) across the pool, as serf's KeyManager and Consul's
 * /v1/operator/keyring do: the query is gossiped to every member (we answer it too), each
 * applies it to its own keyring and answers with serf's nodeKeyResponse, and the answers are
 * collected until every member alive when it started has answered or the query times out
 * (serf's: gossip_interval x 16 x ceil(log10(N + 1)), N those members). Any member, ours or a
 * serf agent, may run such a query; ours answers every one it receives and calls on_keyring
 * after a change. Answers relayed through other members (serf's RelayFactor) are neither asked
 * for nor forwarded. */
#define GOSSIP_KEYRING_MAX 16
enum gossip_keyring_op {
    GOSSIP_KEYRING_INSTALL,
    GOSSIP_KEYRING_USE,
    GOSSIP_KEYRING_REMOVE,
    GOSSIP_KEYRING_LIST,
};
const char *gossip_keyring_op_name(enum gossip_keyring_op op); /* "install", "use", ... */

struct gossip_key_count {
    const char *key; /* base64 */
    size_t count;    /* members that hold it */
};
struct gossip_node_message {
    const char *node;
    const char *message;
};
/* serf's KeyResponse (what Consul's KeyringResponse is made of). */
struct gossip_keyring_result {
    int status;        /* 0: every member answered with success; else BASE_EINVAL (some
                        * refused), BASE_EUNKNOWN (some did not answer in time) or
                        * BASE_ESHUTDOWN (the engine stopped first) */
    const char *error; /* NULL on 0; else serf's sentence, "1/3 nodes reported failure",
                        * "2/3 nodes reported success" or "shutting down" */
    size_t num_nodes;  /* members alive when the query started, ourselves included */
    size_t num_resp;   /* answers */
    size_t num_err;    /* answers that were failures */
    /* by member: the message of each failure (and of a success that carried one) */
    const struct gossip_node_message *messages;
    size_t n_messages;
    /* LIST: each key with the number of members holding it, each primary key likewise */
    const struct gossip_key_count *keys;
    size_t n_keys;
    const struct gossip_key_count *primary_keys;
    size_t n_primary_keys;
};
typedef void (*gossip_keyring_cb)(void *ctx, const struct gossip_keyring_result *r);

/* Runs op across the pool with key (base64; ignored for LIST, may be NULL). cb(ctx, result)
 * once, later, with the result valid during the call; during gossip_stop with BASE_ESHUTDOWN
 * if it is still running then. BASE_EINVAL (no call) when key is not base64 or is missing;
 * its length is checked by each member, which refuses it as memberlist does; BASE_ETOOBIG
 * when 16 queries are running already. Loop thread. */
int gossip_keyring(struct gossip *g, enum gossip_keyring_op op, const char *key,
                   gossip_keyring_cb cb, void *ctx) BASE_MUSTCHECK;

/* The local keyring in base64 (arena), the primary first: *n keys (0: no encryption).
 * Loop thread. */
void gossip_keyring_keys(const struct gossip *g, struct base_arena *a, const char ***keys,
                         size_t *n);

/* A datagram from `from` (p/len borrowed for the call), taken as one read from the UDP socket
 * is: counted in the stats, decoded by the same decoder (outside bytes: bounds-checked, a bad
 * one counted in udp_bad and dropped), then handled. For an engine with cfg.net.send set (the
 * simulated network's delivery). Ignored once gossip_stop was called. Loop thread; never from
 * inside a net.send hook. */
void gossip_net_deliver(struct gossip *g, const struct sockaddr *from, const uint8_t *p,
                        size_t len);

/* Counters for tests and metrics. */
struct gossip_stats {
    uint64_t udp_in, udp_out, udp_bytes_in, udp_bytes_out, udp_bad;
    uint64_t tcp_in, tcp_out, tcp_bad, tcp_refused;
    uint64_t probes, probe_failures, indirect, nacks_in, refutes;
    uint32_t health; /* Lifeguard's awareness score now */
};
void gossip_stats_get(const struct gossip *g, struct gossip_stats *out);

/* Consul's user-event envelope (Consul agent/user_event.go's UserEvent): the payload of a serf
 * user event named "consul:event:<name>", a msgpack map {"ID", "n", "p", "nf", "sf", "tf", "v"}
 * as Consul writes it ("p", "nf", "sf", "tf" omitted when empty; the Lamport time is the serf
 * event's, not encoded). Pure; any thread. */
struct gossip_consul_event {
    const char *id;   /* a UUID */
    const char *name; /* the event's name without "consul:event:" */
    const uint8_t *payload;
    size_t payload_len;
    const char *node_filter, *service_filter, *tag_filter; /* regular expressions or "" */
    int64_t version;                                       /* Consul writes 1 */
};
/* Appends the envelope to out (NULL strings as empty). */
void gossip_consul_event_encode(const struct gossip_consul_event *ev, struct base_buf *out);
/* Decodes p/n (outside bytes, bounds-checked first; trailing bytes ignored, as go-msgpack's
 * decoder does; unknown keys skipped; missing ones "" or 0). Strings and the payload are copied
 * into the arena, the payload NULL when absent. 0; BASE_EPARSE when it is not such a map. The
 * caller checks version (Consul warns about events above 1 and still takes them) and the
 * fields it needs. */
int gossip_consul_event_decode(const uint8_t *p, size_t n, struct base_arena *a,
                               struct gossip_consul_event *out) BASE_MUSTCHECK;

#endif
