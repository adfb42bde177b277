/* gossip/swim.h (internal to gossip/): the engine's state, shared by swim.c (start, stop,
 * UDP, probes, gossip, timers; its note describes the whole engine), stream.c (TCP: push-pull,
 * joins, stream messages) and serf_state.c (serf's member list, intents, Lamport clocks, user
 * events). Loop thread only. */
#ifndef HERALD_GOSSIP_SWIM_H
#define HERALD_GOSSIP_SWIM_H

#include "gossip/gossip.h"
#include "gossip/member.h"
#include "gossip/queue.h"

#include <arpa/inet.h>
#include <string.h>

#define MOD                   "gossip"
#define UDP_BUF               1400 /* memberlist's UDPBufferSize */
#define COMPOUND_MAX          255
#define RING                  512 /* serf's EventBuffer */
#define RING_SLOT_MAX         8
#define RING_BYTES_MAX        (4u << 20)
#define INTENTS_MAX           1024
#define INTENT_TIMEOUT_MS     (5 * 60 * 1000)
#define RELAYS_MAX            128
#define HOUSE_MS              1000
#define ENCRYPT_OVERHEAD      29 /* version, nonce, tag */
#define UNDECRYPTABLE_WARN_MS 10000

struct smember {
    char *name;
    uint8_t addr[16];
    size_t addr_len;
    uint16_t port;
    uint8_t meta[512];
    size_t meta_len;
    uint8_t vsn[GOSSIP_VSN_LEN];
    uint32_t incarnation;
    enum gossip_status status;
    uint64_t status_ltime;
    uint64_t leave_ms;
};

struct intent {
    char *name;
    uint8_t type; /* GOSSIP_SERF_JOIN or _LEAVE */
    uint64_t ltime;
    uint64_t when_ms;
};

struct ring_ev {
    char *name;
    uint8_t *payload;
    size_t len;
};
struct ring_slot {
    uint64_t ltime;
    size_t n;
    struct ring_ev ev[RING_SLOT_MAX];
};

#define QRING     512 /* serf's QueryBuffer */
#define QRING_IDS 8
struct query_slot {
    uint64_t ltime;
    size_t n;
    uint32_t ids[QRING_IDS];
};

struct relay {
    struct base_list link;
    struct gossip *g;
    uv_timer_t timer;
    uint32_t seq, orig_seq;
    struct sockaddr_storage to;
    bool nack, done;
};

enum conn_kind { CONN_ACCEPT, CONN_PUSH_PULL, CONN_PING };
struct join_op {
    gossip_join_cb cb;
    void *ctx;
    size_t pending, joined;
    int err;
};
struct conn {
    struct base_list link;
    struct gossip *g;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    int open; /* handles not yet closed */
    bool done, join, finish_after_write;
    enum conn_kind kind;
    struct join_op *op;
    struct sockaddr_storage peer;
    struct base_buf in;
    int writes;
    size_t tried;      /* bytes in `in` when a decode was last tried */
    uint32_t ping_seq; /* CONN_PING: the probe it stands for */
    char *ping_node;
};

struct write_req {
    uv_write_t req;
    struct conn *c;
    uint8_t *data;
};

enum probe_phase { PROBE_IDLE, PROBE_DIRECT, PROBE_INDIRECT };

struct gossip {
    uv_loop_t *loop;
    struct gossip_config cfg;
    struct sockaddr_storage bind_from; /* bind_addr with port 0: our TCP dials leave from it */
    char *name;
    struct gossip_keyring keys;
    uint8_t addr[16];
    size_t addr_len;
    uint16_t port;
    uint8_t meta[512];
    size_t meta_len;
    uv_udp_t udp;
    uv_tcp_t lst;
    uv_timer_t probe_timer, gossip_timer, pp_timer, susp_timer, house_timer, leave_timer;
    int handles;
    bool stopping;
    gossip_done_cb stop_cb;
    void *stop_ctx;
    struct gossip_members mt;
    struct gossip_queue mq, sq;
    char **probe_list;
    size_t n_probe, probe_idx;
    struct {
        enum probe_phase phase;
        char *node;
        uint32_t seq;
        uint64_t start_ms, interval_ms;
        uint32_t expected_nacks, nacks;
    } probe;
    uint32_t seq;
    struct base_list relays;
    size_t n_relays;
    struct base_list conns;
    size_t n_in_conns;
    uint64_t clock, event_clock, query_clock, event_min_time;
    struct smember **sm;
    size_t n_sm, cap_sm;
    struct intent *intents;
    size_t n_intents;
    struct ring_slot ring[RING];
    struct query_slot qring[QRING];
    size_t ring_bytes;
    int leave_phase;
    gossip_done_cb leave_cb;
    void *leave_ctx;
    uint64_t last_reconnect_ms;
    uint64_t rng;
    bool setting_tags;
    bool slim_probes; /* pings go without their source address: see probe_source */
    struct base_arena arena;
    uint8_t rbuf[GOSSIP_WIRE_UDP_MAX];
    struct gossip_stats st;
    struct base_list queries; /* our keyring queries running (query.c) */
    size_t n_queries;
    bool undecryptable_warned;
    uint64_t undecryptable_last_ms, undecryptable_quiet;
};

static inline uint64_t now_ms(const struct gossip *g)
{
    return uv_now(g->loop);
}

static inline uint64_t rnd(struct gossip *g)
{
    /* xorshift64*: picks members and shuffles, seeded from the system's randomness */
    g->rng ^= g->rng >> 12;
    g->rng ^= g->rng << 25;
    g->rng ^= g->rng >> 27;
    return g->rng * 2685821657736338717ull;
}

static inline size_t rnd_below(struct gossip *g, size_t n)
{
    return n ? (size_t)(rnd(g) % n) : 0;
}

static inline bool to_sockaddr(const uint8_t *addr, size_t addr_len, uint16_t port,
                               struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (addr_len == 4) {
        struct sockaddr_in *s = (struct sockaddr_in *)ss;
        s->sin_family = AF_INET;
        s->sin_port = htons(port);
        memcpy(&s->sin_addr, addr, 4);
        return true;
    }
    if (addr_len == 16) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
        s->sin6_family = AF_INET6;
        s->sin6_port = htons(port);
        memcpy(&s->sin6_addr, addr, 16);
        return true;
    }
    return false;
}

static inline bool same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, 4) == 0;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

static inline void addr_text(const uint8_t *addr, size_t len, char out[46])
{
    out[0] = 0;
    if (len == 4)
        inet_ntop(AF_INET, addr, out, 46);
    else if (len == 16)
        inet_ntop(AF_INET6, addr, out, 46);
}

static inline void witness(uint64_t *clock, uint64_t t)
{
    if (t >= *clock)
        *clock = t + 1;
}

static inline bool is_self(const struct gossip *g, const char *name)
{
    return strcmp(g->name, name) == 0;
}

static inline bool member_sockaddr(const struct gossip_member *m, struct sockaddr_storage *ss)
{
    return to_sockaddr(m->addr, m->addr_len, m->port, ss);
}

static inline bool live(const struct gossip_member *m)
{
    return m->state == GOSSIP_STATE_ALIVE || m->state == GOSSIP_STATE_SUSPECT;
}

static inline void self_addr_fields(struct gossip *g, struct gossip_bytes *addr, uint16_t *port,
                                    const char **node)
{
    *addr = (struct gossip_bytes){g->addr, g->addr_len};
    *port = g->port;
    *node = g->name;
}

/* serf_state.c: serf's member list, intents, Lamport clocks and user events */
void gossip__sm_join(struct gossip *g, const struct gossip_member *m);
void gossip__sm_update(struct gossip *g, const struct gossip_member *m);
void gossip__sm_leave(struct gossip *g, const struct gossip_member *m);
void gossip__sm_remove(struct gossip *g, size_t i); /* reaped: an event, then forgotten */
void gossip__node_fill(const struct smember *s, struct base_arena *a, struct gossip_node *n);
void gossip__intent_drop(struct gossip *g, size_t i);
void gossip__ring_clear(struct gossip *g, struct ring_slot *slot);
/* Queues a serf message for gossip ([8] and its bytes). */
void gossip__serf_queue(struct gossip *g, const struct gossip_serf_msg *m);
void gossip__serf_broadcast_join(struct gossip *g, uint64_t ltime);
/* serf's handlers: true when the message is new (to rebroadcast). */
bool gossip__serf_leave_intent(struct gossip *g, const struct gossip_serf_join *l);
bool gossip__serf_user_event(struct gossip *g, uint64_t ltime, const char *name,
                             const uint8_t *payload, size_t len, bool cc);
/* ignore_old: our own join's answer (the pool's earlier events are not delivered). */
void gossip__serf_merge(struct gossip *g, const struct gossip_serf_push_pull *pp, bool ignore_old);
/* A serf message from a packet or a stream (outside bytes: decoded by gossip__serf_decode). */
void gossip__serf_handle(struct gossip *g, const uint8_t *p, size_t n, bool rebroadcast);

/* Records a query's (ltime, id) in serf's query buffer, witnessing its Lamport time: false when
 * it was seen already or is too old to tell (then it is dropped). */
bool gossip__query_seen(struct gossip *g, uint64_t ltime, uint32_t id);

/* query.c: serf's queries, answered and run */
/* Answers a query that selects us, if it is one we answer (the keyring queries). */
void gossip__query_answer(struct gossip *g, const struct gossip_serf_query *q,
                          struct base_arena *a);
/* A response to one of our queries (outside bytes, decoded). */
void gossip__query_response(struct gossip *g, const struct gossip_serf_query_response *r);
/* gossip_stop: every running query finishes (BASE_ESHUTDOWN). */
void gossip__queries_stop(struct gossip *g);

/* stream.c: TCP */
int gossip__conn_dial(struct gossip *g, const struct sockaddr_storage *to, bool join,
                      struct join_op *op);
void gossip__probe_tcp(struct gossip *g, const struct gossip_member *target, uint64_t ms);
void gossip__on_connection(uv_stream_t *s, int status);
void gossip__conn_finish(struct conn *c, int err);
void gossip__join_op_done(struct join_op *op, bool ok, int err);

/* swim.c */
/* Sends the parts in one packet to `to` (m: the member it goes to, or NULL), with broadcasts
 * piggybacked if piggyback; false when there was nothing to send. */
bool gossip__send_parts(struct gossip *g, const struct sockaddr *to, const struct gossip_member *m,
                        const struct gossip_bytes *parts, size_t n_parts, bool piggyback);
void gossip__on_fx(void *ctx, const struct gossip_fx *fx); /* the member table's effects */
void gossip__rearm_susp(struct gossip *g);
void gossip__probe_ack(struct gossip *g);  /* the running probe was answered */
void gossip__maybe_free(struct gossip *g); /* frees a stopped engine once its handles closed */
/* cfg.on_merge about nodes (0 when accepted or no hook; BASE_EACL when refused, logged with
 * what: "push-pull" or "alive"). */
int gossip__merge_check(struct gossip *g, const struct gossip_push_node *nodes, size_t n,
                        const char *what);
/* The rate-limited warn about a key mismatch (what: the sentence), naming `from`. */
void gossip__warn_key(struct gossip *g, const struct sockaddr *from, const char *what);

#endif
