/* gossip/swim.c: the protocol engine on libuv (gossip.h), memberlist 0.2.2's and serf 0.9.x's
 * behaviour over the codec (wire.h), the member table (member.h) and the broadcast queues
 * (queue.h).
 *
 * ==== How it runs ====
 * One UDP socket and one TCP listener on the same address and port. Timers on the loop:
 *   probe   SWIM's failure detector, one probe at a time: the next member of a shuffled
 *           round-robin list (rebuilt and reshuffled at each wrap, newcomers inserted at a
 *           random place ahead) gets a ping, with a suspect message about itself piggybacked
 *           when it is suspect (Lifeguard's buddy system, so it learns it and refutes). No
 *           ack within probe_timeout: ping-req through indirect_checks random alive members,
 *           asking for a nack when their protocol has it (PMax >= 4). No ack by the end of the
 *           probe interval: Lifeguard's local health score grows by the nacks missing (or 1),
 *           and the member is suspected. A direct ack lowers the score by one. The interval
 *           and the timeout are scaled by (score + 1): a node that is slow itself probes less
 *           and waits longer before it accuses anyone.
 *   gossip  every gossip_interval, gossip_nodes random members (alive, suspect, or dead for
 *           less than gossip_to_the_dead) get a compound of queued broadcasts filling a
 *           1400-byte packet: memberlist's (alive, suspect, dead; named by node, so only the
 *           latest news about a node travels) first, then serf's (intents, user events). Every
 *           packet we send (pings, acks) piggybacks broadcasts the same way.
 *   suspicion  armed at the member table's earliest suspicion deadline; the dynamic timeout
 *           and its confirmations are member.c's.
 *   push-pull  every push_pull_interval (scaled up past 32 members as memberlist does), a
 *           TCP exchange of the whole state with a random alive member; joins are the same
 *           exchange with the join flag, and serf's reconnect retries a failed member so.
 *   house   once a second: dead members leave memberlist's table after gossip_to_the_dead,
 *           serf reaps failed members after reconnect_timeout and left ones after
 *           tombstone_timeout, old intents expire, a failed member is retried.
 * Incoming packets are decoded whole (gossip__packet_decode, the fuzzed decoder) into the
 * engine's arena, then each message is handled in order. Streams are read into a buffer capped
 * at max_stream and decoded with gossip__stream_decode once whole.
 *
 * ==== serf on top ====
 * serf's member list is kept apart from memberlist's table, as serf does: a member is alive,
 * leaving (its leave intent came), left (its dead came after its intent) or failed (dead
 * without intent), with the Lamport time of its last intent. Intents about unknown members
 * wait in a small buffer (5 minutes) for the member's alive. User events are deduplicated in
 * serf's 512-slot ring keyed by event Lamport time; the local node's own events are delivered
 * to it too. A graceful leave is serf's: the leave intent, then, in a later packet, the dead
 * about ourselves (wire.c's note says why they must not share a packet), each queued for
 * gossip and also sent straight to every live member.
 *
 * ==== Caps (what a remote peer can make us hold) ====
 * members (memberlist's table and serf's list): max_members; serf broadcasts: max_queue;
 * memberlist broadcasts: one per member; intents: INTENTS_MAX; user events: RING_SLOT_MAX per
 * Lamport time and RING_BYTES_MAX in all; relayed pings in flight: RELAYS_MAX; inbound TCP:
 * max_conns, max_conns_per_source each, every stream max_stream bytes and tcp_timeout long.
 *
 * Ownership: "one owner finishes each asynchronous thing": conn_finish for a TCP connection,
 * relay_finish for a relayed ping; the engine itself is freed when its last handle closes.
 */
#include "gossip/gossip.h"
#include "gossip/member.h"
#include "gossip/queue.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#define MOD               "gossip"
#define UDP_BUF           1400 /* memberlist's UDPBufferSize */
#define COMPOUND_MAX      255
#define RING              512 /* serf's EventBuffer */
#define RING_SLOT_MAX     8
#define RING_BYTES_MAX    (4u << 20)
#define INTENTS_MAX       1024
#define INTENT_TIMEOUT_MS (5 * 60 * 1000)
#define RELAYS_MAX        128
#define HOUSE_MS          1000
#define ENCRYPT_OVERHEAD  29 /* version, nonce, tag */

static const uint8_t our_vsn[GOSSIP_VSN_LEN] = {1, 5, 2, 2, 5, 5}; /* as serf 0.9.4 */

struct smember {
    char *name;
    uint8_t addr[16];
    size_t addr_len;
    uint16_t port;
    uint8_t meta[512];
    size_t meta_len;
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
    size_t ring_bytes;
    int leave_phase;
    gossip_done_cb leave_cb;
    void *leave_ctx;
    uint64_t last_reconnect_ms;
    uint64_t rng;
    bool setting_tags;
    struct base_arena arena;
    uint8_t rbuf[GOSSIP_WIRE_UDP_MAX];
    struct gossip_stats st;
};

static void on_fx(void *ctx, const struct gossip_fx *fx);
static void handle_serf(struct gossip *g, const uint8_t *p, size_t n, bool rebroadcast);
static void rearm_susp(struct gossip *g);
static void on_probe_timer(uv_timer_t *t);
static void maybe_free(struct gossip *g);
static void probe_tcp(struct gossip *g, const struct gossip_member *target, uint64_t ms);

/* ---- small things ------------------------------------------------------------------------- */

const char *gossip_status_name(enum gossip_status s)
{
    switch (s) {
    case GOSSIP_MEMBER_ALIVE:
        return "alive";
    case GOSSIP_MEMBER_LEAVING:
        return "leaving";
    case GOSSIP_MEMBER_LEFT:
        return "left";
    case GOSSIP_MEMBER_FAILED:
        return "failed";
    }
    return "none";
}

const char *gossip_event_name(enum gossip_event_kind k)
{
    static const char *const names[] = {"join", "update", "leave", "fail", "reap", "user"};
    return (size_t)k < BASE_ARRAY_LEN(names) ? names[k] : "unknown";
}

void gossip_config_defaults(struct gossip_config *c)
{
    memset(c, 0, sizeof(*c));
    c->bind_port = 8301;
    c->probe_interval_ms = 1000;
    c->probe_timeout_ms = 500;
    c->gossip_interval_ms = 200;
    c->gossip_nodes = 3;
    c->suspicion_mult = 4;
    c->suspicion_max_timeout_mult = 6;
    c->retransmit_mult = 4;
    c->push_pull_interval_ms = 30000;
    c->indirect_checks = 3;
    c->awareness_max_multiplier = 8;
    c->gossip_to_the_dead_ms = 30000;
    c->tcp_timeout_ms = 10000;
    c->reconnect_interval_ms = 30000;
    c->reconnect_timeout_ms = 72ull * 3600 * 1000;
    c->tombstone_timeout_ms = 24ull * 3600 * 1000;
    c->leave_propagate_ms = 1000;
    c->max_members = 4096;
    c->max_queue = 4096;
    c->max_stream = 4u << 20;
    c->max_conns = 64;
    c->max_conns_per_source = 4;
}

static uint64_t now_ms(const struct gossip *g)
{
    return uv_now(g->loop);
}

static uint64_t rnd(struct gossip *g)
{
    /* xorshift64*: picks members and shuffles, seeded from the system's randomness */
    g->rng ^= g->rng >> 12;
    g->rng ^= g->rng << 25;
    g->rng ^= g->rng >> 27;
    return g->rng * 2685821657736338717ull;
}

static size_t rnd_below(struct gossip *g, size_t n)
{
    return n ? (size_t)(rnd(g) % n) : 0;
}

static bool to_sockaddr(const uint8_t *addr, size_t addr_len, uint16_t port,
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

static bool same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, 4) == 0;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

static void addr_text(const uint8_t *addr, size_t len, char out[46])
{
    out[0] = 0;
    if (len == 4)
        inet_ntop(AF_INET, addr, out, 46);
    else if (len == 16)
        inet_ntop(AF_INET6, addr, out, 46);
}

static void witness(uint64_t *clock, uint64_t t)
{
    if (t >= *clock)
        *clock = t + 1;
}

static bool is_self(const struct gossip *g, const char *name)
{
    return strcmp(g->name, name) == 0;
}

/* ---- sending packets ---------------------------------------------------------------------- */

struct take_ctx {
    struct base_buf *buf;
    size_t *lens;
    size_t *n;
};

static void take_cb(void *ctx, const uint8_t *msg, size_t len)
{
    struct take_ctx *t = ctx;
    if (*t->n >= COMPOUND_MAX)
        return;
    base_buf_append(t->buf, msg, len);
    t->lens[(*t->n)++] = len;
}

/* Sends the parts (each one message) to `to` in one packet, with broadcasts piggybacked when
 * room is left (always, with piggyback; returns false without sending when there is nothing
 * at all). m: the member it goes to, if known (a CRC when its protocol has it). */
static bool send_parts(struct gossip *g, const struct sockaddr *to, const struct gossip_member *m,
                       const struct gossip_bytes *parts, size_t n_parts, bool piggyback)
{
    if (g->stopping)
        return false;
    struct base_buf all, pkt, out;
    base_buf_init(&all);
    base_buf_init(&pkt);
    base_buf_init(&out);
    size_t lens[COMPOUND_MAX], n = 0, used = 0;
    for (size_t i = 0; i < n_parts && n < COMPOUND_MAX; i++) {
        base_buf_append(&all, parts[i].p, parts[i].n);
        lens[n++] = parts[i].n;
        used += parts[i].n + 2;
    }
    if (piggyback) {
        size_t room = UDP_BUF - 2 - (g->keys.n ? ENCRYPT_OVERHEAD : 0);
        room = room > used ? room - used : 0;
        struct take_ctx t = {&all, lens, &n};
        size_t before = all.len;
        gossip__queue_take(&g->mq, 2, room, g->mt.n, take_cb, &t);
        size_t took = all.len - before;
        if (room > took + 2)
            gossip__queue_take(&g->sq, 2, room - took, g->mt.n, take_cb, &t);
    }
    if (n == 0) {
        base_buf_free(&all);
        return false;
    }
    if (n == 1) {
        base_buf_append(&pkt, all.data, all.len);
    } else {
        struct gossip_bytes v[COMPOUND_MAX];
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            v[i] = (struct gossip_bytes){all.data + off, lens[i]};
            off += lens[i];
        }
        gossip__compound_encode(&pkt, v, n);
    }
    struct base_buf *final = &pkt;
    if (m && m->vsn[1] >= 5) {
        gossip__crc_encode(&out, pkt.data, pkt.len);
        final = &out;
    }
    struct base_buf enc;
    base_buf_init(&enc);
    if (g->keys.n) {
        uint8_t nonce[12];
        if (uv_random(NULL, NULL, nonce, sizeof(nonce), 0, NULL) == 0) {
            gossip__encrypt(&enc, 1, g->keys.keys[0].key, g->keys.keys[0].len, nonce, final->data,
                            final->len, NULL, 0);
            final = &enc;
        } else {
            final = NULL;
        }
    }
    if (final) {
        uv_buf_t b = uv_buf_init((char *) final->data, (unsigned) final->len);
        int rv = uv_udp_try_send(&g->udp, &b, 1, to);
        if (rv >= 0) {
            g->st.udp_out++;
            g->st.udp_bytes_out += final->len;
        } else {
            LOG_DEBUG(MOD, "send: %s", base_strerror(rv));
        }
    }
    base_buf_free(&all);
    base_buf_free(&pkt);
    base_buf_free(&out);
    base_buf_free(&enc);
    return true;
}

static void send_msg(struct gossip *g, const struct sockaddr *to, const struct gossip_member *m,
                     const struct gossip_msg *msg, bool piggyback)
{
    struct base_buf b;
    base_buf_init(&b);
    gossip__msg_encode(&b, msg);
    struct gossip_bytes part = {b.data, b.len};
    send_parts(g, to, m, &part, 1, piggyback);
    base_buf_free(&b);
}

static bool member_sockaddr(const struct gossip_member *m, struct sockaddr_storage *ss)
{
    return to_sockaddr(m->addr, m->addr_len, m->port, ss);
}

static bool live(const struct gossip_member *m)
{
    return m->state == GOSSIP_STATE_ALIVE || m->state == GOSSIP_STATE_SUSPECT;
}

/* Sends bytes (one message) straight to every live member but us, alone in its packet. */
static void send_to_all(struct gossip *g, const uint8_t *msg, size_t len)
{
    struct gossip_bytes part = {msg, len};
    for (size_t i = 0; i < g->mt.n; i++) {
        const struct gossip_member *m = g->mt.v[i];
        struct sockaddr_storage ss;
        if (is_self(g, m->name) || !live(m) || !member_sockaddr(m, &ss))
            continue;
        send_parts(g, (const struct sockaddr *)&ss, m, &part, 1, false);
    }
}

/* ---- serf's member list ------------------------------------------------------------------- */

static struct smember *sm_find(const struct gossip *g, const char *name, size_t *idx)
{
    for (size_t i = 0; i < g->n_sm; i++)
        if (strcmp(g->sm[i]->name, name) == 0) {
            if (idx)
                *idx = i;
            return g->sm[i];
        }
    return NULL;
}

static void sm_copy(struct smember *s, const struct gossip_member *m)
{
    memcpy(s->addr, m->addr, sizeof(s->addr));
    s->addr_len = m->addr_len;
    s->port = m->port;
    memcpy(s->meta, m->meta, m->meta_len);
    s->meta_len = m->meta_len;
    s->incarnation = m->incarnation;
}

static void node_fill(const struct smember *s, struct base_arena *a, struct gossip_node *n)
{
    memset(n, 0, sizeof(*n));
    n->name = s->name;
    addr_text(s->addr, s->addr_len, n->addr);
    n->port = s->port;
    n->status = s->status;
    n->incarnation = s->incarnation;
    struct gossip_tag *tags = NULL;
    size_t nt = 0;
    if (s->meta_len && gossip__tags_decode(s->meta, s->meta_len, a, &tags, &nt) == 0) {
        n->tags = tags;
        n->n_tags = nt;
    }
}

static void emit_member(struct gossip *g, enum gossip_event_kind kind, const struct smember *s)
{
    if (kind != GOSSIP_EVENT_UPDATE)
        LOG_INFO(MOD, "%s: member %s %s", g->name, s->name, gossip_event_name(kind));
    if (!g->cfg.on_event || g->stopping)
        return;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_node n;
    node_fill(s, &a, &n);
    struct gossip_event ev = {.kind = kind, .node = &n};
    g->cfg.on_event(g->cfg.ctx, &ev);
    base_arena_close(&a);
}

static struct intent *intent_find(struct gossip *g, const char *name)
{
    for (size_t i = 0; i < g->n_intents; i++)
        if (strcmp(g->intents[i].name, name) == 0)
            return &g->intents[i];
    return NULL;
}

static void intent_drop(struct gossip *g, size_t i)
{
    base_free(g->intents[i].name);
    g->intents[i] = g->intents[--g->n_intents];
}

/* serf's upsertIntent: keeps the newest intent about a member not known yet. */
static bool intent_upsert(struct gossip *g, const char *name, uint8_t type, uint64_t ltime)
{
    struct intent *it = intent_find(g, name);
    if (it) {
        if (ltime <= it->ltime)
            return false;
    } else {
        if (g->n_intents >= INTENTS_MAX)
            return false;
        if (!g->intents)
            g->intents = base_calloc(INTENTS_MAX, sizeof(*g->intents));
        it = &g->intents[g->n_intents++];
        it->name = base_strdup(name);
    }
    it->type = type;
    it->ltime = ltime;
    it->when_ms = now_ms(g);
    return true;
}

static void serf_node_join(struct gossip *g, const struct gossip_member *m)
{
    struct smember *s = sm_find(g, m->name, NULL);
    if (!s) {
        if (g->n_sm == g->cap_sm) {
            g->cap_sm = g->cap_sm ? 2 * g->cap_sm : 16;
            g->sm = base_realloc(g->sm, g->cap_sm * sizeof(*g->sm));
        }
        s = base_calloc(1, sizeof(*s));
        s->name = base_strdup(m->name);
        g->sm[g->n_sm++] = s;
        s->status = GOSSIP_MEMBER_ALIVE;
        for (size_t i = 0; i < g->n_intents; i++) {
            struct intent *it = &g->intents[i];
            if (strcmp(it->name, m->name) != 0)
                continue;
            s->status_ltime = it->ltime;
            if (it->type == GOSSIP_SERF_LEAVE)
                s->status = GOSSIP_MEMBER_LEAVING;
            intent_drop(g, i);
            break;
        }
    } else {
        s->status = GOSSIP_MEMBER_ALIVE;
        s->leave_ms = 0;
    }
    sm_copy(s, m);
    emit_member(g, GOSSIP_EVENT_JOIN, s);
}

static void serf_node_update(struct gossip *g, const struct gossip_member *m)
{
    struct smember *s = sm_find(g, m->name, NULL);
    if (!s)
        return;
    sm_copy(s, m);
    emit_member(g, GOSSIP_EVENT_UPDATE, s);
}

static void serf_node_leave(struct gossip *g, const struct gossip_member *m)
{
    struct smember *s = sm_find(g, m->name, NULL);
    if (!s)
        return;
    s->incarnation = m->incarnation;
    switch (s->status) {
    case GOSSIP_MEMBER_LEAVING:
        s->status = GOSSIP_MEMBER_LEFT;
        break;
    case GOSSIP_MEMBER_ALIVE:
        s->status = GOSSIP_MEMBER_FAILED;
        break;
    default:
        return;
    }
    s->leave_ms = now_ms(g);
    emit_member(g, s->status == GOSSIP_MEMBER_LEFT ? GOSSIP_EVENT_LEAVE : GOSSIP_EVENT_FAIL, s);
}

static void queue_serf(struct gossip *g, const struct gossip_serf_msg *m)
{
    struct base_buf b;
    base_buf_init(&b);
    base_buf_put_u8(&b, GOSSIP_USER);
    gossip__serf_encode(&b, m);
    gossip__queue_push(&g->sq, NULL, b.data, b.len);
    gossip__queue_prune(&g->sq, g->cfg.max_queue);
    base_buf_free(&b);
}

static bool handle_join_intent(struct gossip *g, const struct gossip_serf_join *j);

/* serf's broadcastJoin: our join intent at ltime, applied here and gossiped. */
static void broadcast_join(struct gossip *g, uint64_t ltime)
{
    struct gossip_serf_msg m = {.type = GOSSIP_SERF_JOIN};
    m.u.join = (struct gossip_serf_join){ltime, g->name, false};
    witness(&g->clock, ltime);
    handle_join_intent(g, &m.u.join);
    queue_serf(g, &m);
}

static bool handle_join_intent(struct gossip *g, const struct gossip_serf_join *j)
{
    witness(&g->clock, j->ltime);
    struct smember *s = sm_find(g, j->node, NULL);
    if (!s)
        return intent_upsert(g, j->node, GOSSIP_SERF_JOIN, j->ltime);
    if (j->ltime <= s->status_ltime)
        return false;
    s->status_ltime = j->ltime;
    if (s->status == GOSSIP_MEMBER_LEAVING)
        s->status = GOSSIP_MEMBER_ALIVE;
    return true;
}

static bool handle_leave_intent(struct gossip *g, const struct gossip_serf_join *l)
{
    witness(&g->clock, l->ltime);
    struct smember *s = sm_find(g, l->node, NULL);
    if (!s)
        return intent_upsert(g, l->node, GOSSIP_SERF_LEAVE, l->ltime);
    if (l->ltime <= s->status_ltime)
        return false;
    if (is_self(g, l->node) && g->leave_phase == 0) {
        /* an older leave intent about us: refuted by a newer join intent */
        broadcast_join(g, g->clock);
        return false;
    }
    switch (s->status) {
    case GOSSIP_MEMBER_ALIVE:
        s->status = GOSSIP_MEMBER_LEAVING;
        s->status_ltime = l->ltime;
        return true;
    case GOSSIP_MEMBER_FAILED:
        s->status = GOSSIP_MEMBER_LEFT;
        s->status_ltime = l->ltime;
        emit_member(g, GOSSIP_EVENT_LEAVE, s);
        return true;
    default:
        return false;
    }
}

static void ring_clear(struct gossip *g, struct ring_slot *slot)
{
    for (size_t i = 0; i < slot->n; i++) {
        g->ring_bytes -= slot->ev[i].len + strlen(slot->ev[i].name);
        base_free(slot->ev[i].name);
        base_free(slot->ev[i].payload);
    }
    slot->n = 0;
}

/* serf's handleUserEvent: true when the event is new (delivered, and to be rebroadcast). */
static bool handle_user_event(struct gossip *g, uint64_t ltime, const char *name,
                              const uint8_t *payload, size_t len, bool cc)
{
    witness(&g->event_clock, ltime);
    if (ltime < g->event_min_time)
        return false;
    uint64_t cur = g->event_clock;
    if (cur > RING && ltime < cur - RING)
        return false; /* too old for the ring: it may have been seen and forgotten */
    struct ring_slot *slot = &g->ring[ltime % RING];
    size_t nl = strlen(name);
    if (slot->n && slot->ltime == ltime) {
        for (size_t i = 0; i < slot->n; i++)
            if (strcmp(slot->ev[i].name, name) == 0 && slot->ev[i].len == len &&
                (len == 0 || memcmp(slot->ev[i].payload, payload, len) == 0))
                return false;
        if (slot->n >= RING_SLOT_MAX)
            return false;
    } else {
        ring_clear(g, slot);
        slot->ltime = ltime;
    }
    if (g->ring_bytes + len + nl > RING_BYTES_MAX)
        return false;
    struct ring_ev *e = &slot->ev[slot->n++];
    e->name = base_strdup(name);
    e->payload = base_malloc(len ? len : 1);
    if (len)
        memcpy(e->payload, payload, len);
    e->len = len;
    g->ring_bytes += len + nl;
    LOG_DEBUG(MOD, "%s: user event %s ltime=%llu", g->name, name, (unsigned long long)ltime);
    if (g->cfg.on_event && !g->stopping) {
        struct gossip_event ev = {.kind = GOSSIP_EVENT_USER,
                                  .name = name,
                                  .payload = payload,
                                  .payload_len = len,
                                  .ltime = ltime,
                                  .coalesce = cc};
        g->cfg.on_event(g->cfg.ctx, &ev);
    }
    return true;
}

static void serf_merge(struct gossip *g, const struct gossip_serf_push_pull *pp)
{
    if (pp->ltime > 0)
        witness(&g->clock, pp->ltime - 1);
    if (pp->event_ltime > 0)
        witness(&g->event_clock, pp->event_ltime - 1);
    if (pp->query_ltime > 0)
        witness(&g->query_clock, pp->query_ltime - 1);
    for (size_t i = 0; i < pp->n_left; i++) {
        struct gossip_serf_join l = {0, pp->left[i], false};
        for (size_t k = 0; k < pp->n_status; k++)
            if (strcmp(pp->status[k].node, pp->left[i]) == 0)
                l.ltime = pp->status[k].ltime;
        handle_leave_intent(g, &l);
    }
    for (size_t k = 0; k < pp->n_status; k++) {
        bool left = false;
        for (size_t i = 0; i < pp->n_left && !left; i++)
            left = strcmp(pp->status[k].node, pp->left[i]) == 0;
        if (left)
            continue;
        struct gossip_serf_join j = {pp->status[k].ltime, pp->status[k].node, false};
        handle_join_intent(g, &j);
    }
    for (size_t i = 0; i < pp->n_events; i++)
        for (size_t k = 0; k < pp->events[i].n; k++) {
            const struct gossip_serf_event *e = &pp->events[i].events[k];
            handle_user_event(g, pp->events[i].ltime, e->name, e->payload.p, e->payload.n, false);
        }
}

/* A serf message from a packet or a stream. */
static void handle_serf(struct gossip *g, const uint8_t *p, size_t n, bool rebroadcast)
{
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_serf_msg m;
    if (gossip__serf_decode(p, n, &a, &m) != 0) {
        g->st.udp_bad++;
        base_arena_close(&a);
        return;
    }
    bool again = false;
    switch (m.type) {
    case GOSSIP_SERF_JOIN:
        again = handle_join_intent(g, &m.u.join);
        break;
    case GOSSIP_SERF_LEAVE:
        again = handle_leave_intent(g, &m.u.join);
        break;
    case GOSSIP_SERF_USER_EVENT:
        again = handle_user_event(g, m.u.event.ltime, m.u.event.name, m.u.event.payload.p,
                                  m.u.event.payload.n, m.u.event.cc);
        break;
    case GOSSIP_SERF_QUERY:
        witness(&g->query_clock, m.u.query.ltime);
        break;
    default:
        break;
    }
    if (again && rebroadcast) {
        struct base_buf b;
        base_buf_init(&b);
        base_buf_put_u8(&b, GOSSIP_USER);
        base_buf_append(&b, p, n);
        gossip__queue_push(&g->sq, NULL, b.data, b.len);
        gossip__queue_prune(&g->sq, g->cfg.max_queue);
        base_buf_free(&b);
    }
    base_arena_close(&a);
}

/* ---- the member table's effects ----------------------------------------------------------- */

static void probe_list_add(struct gossip *g, const char *name)
{
    for (size_t i = 0; i < g->n_probe; i++)
        if (strcmp(g->probe_list[i], name) == 0)
            return;
    g->probe_list = base_realloc(g->probe_list, (g->n_probe + 1) * sizeof(*g->probe_list));
    /* memberlist puts a newcomer at a random place: here ahead of the round's position */
    size_t at = g->probe_idx + rnd_below(g, g->n_probe - g->probe_idx + 1);
    memmove(g->probe_list + at + 1, g->probe_list + at, (g->n_probe - at) * sizeof(*g->probe_list));
    g->probe_list[at] = base_strdup(name);
    g->n_probe++;
}

static void on_fx(void *ctx, const struct gossip_fx *fx)
{
    struct gossip *g = ctx;
    switch (fx->kind) {
    case GOSSIP_FX_BROADCAST: {
        struct base_buf b;
        base_buf_init(&b);
        gossip__msg_encode(&b, fx->msg);
        gossip__queue_push(&g->mq, fx->member->name, b.data, b.len);
        base_buf_free(&b);
        if (fx->msg->type == GOSSIP_ALIVE && is_self(g, fx->member->name) && !g->setting_tags) {
            g->st.refutes++;
            LOG_DEBUG(MOD, "%s: refuting at incarnation %u", g->name, fx->msg->u.alive.incarnation);
        }
        break;
    }
    case GOSSIP_FX_JOIN:
        if (!is_self(g, fx->member->name))
            probe_list_add(g, fx->member->name);
        serf_node_join(g, fx->member);
        break;
    case GOSSIP_FX_UPDATE:
        serf_node_update(g, fx->member);
        break;
    case GOSSIP_FX_LEAVE:
        serf_node_leave(g, fx->member);
        break;
    }
}

/* ---- probes ------------------------------------------------------------------------------- */

static void probe_timer_start(struct gossip *g, uint64_t ms)
{
    if (!g->stopping)
        uv_timer_start(&g->probe_timer, on_probe_timer, ms, 0);
}

static void probe_end(struct gossip *g)
{
    base_free(g->probe.node);
    g->probe.node = NULL;
    g->probe.phase = PROBE_IDLE;
    uint64_t now = now_ms(g), next = g->probe.start_ms + g->probe.interval_ms;
    probe_timer_start(g, next > now ? next - now : 1);
}

static void probe_reset_list(struct gossip *g)
{
    for (size_t i = 0; i < g->n_probe; i++)
        base_free(g->probe_list[i]);
    g->n_probe = 0;
    g->probe_idx = 0;
    g->probe_list = base_realloc(g->probe_list, (g->mt.n + 1) * sizeof(*g->probe_list));
    for (size_t i = 0; i < g->mt.n; i++)
        if (!is_self(g, g->mt.v[i]->name))
            g->probe_list[g->n_probe++] = base_strdup(g->mt.v[i]->name);
    for (size_t i = g->n_probe; i > 1; i--) {
        size_t j = rnd_below(g, i);
        char *t = g->probe_list[i - 1];
        g->probe_list[i - 1] = g->probe_list[j];
        g->probe_list[j] = t;
    }
}

static void self_addr_fields(struct gossip *g, struct gossip_bytes *addr, uint16_t *port,
                             const char **node)
{
    *addr = (struct gossip_bytes){g->addr, g->addr_len};
    *port = g->port;
    *node = g->name;
}

static void probe_start(struct gossip *g)
{
    struct gossip_member *m = NULL;
    for (size_t tries = 0; tries <= g->n_probe + 1 && !m; tries++) {
        if (g->probe_idx >= g->n_probe) {
            probe_reset_list(g);
            if (g->n_probe == 0)
                break;
        }
        struct gossip_member *c = gossip__members_find(&g->mt, g->probe_list[g->probe_idx++]);
        if (c && !is_self(g, c->name) && live(c))
            m = c;
    }
    g->probe.start_ms = now_ms(g);
    g->probe.interval_ms = gossip__members_scale(&g->mt, g->cfg.probe_interval_ms);
    struct sockaddr_storage ss;
    if (!m || !member_sockaddr(m, &ss)) {
        probe_end(g);
        return;
    }
    g->st.probes++;
    g->probe.node = base_strdup(m->name);
    g->probe.seq = ++g->seq;
    g->probe.expected_nacks = g->probe.nacks = 0;
    g->probe.phase = PROBE_DIRECT;
    struct gossip_msg ping = {.type = GOSSIP_PING};
    ping.u.ping.seq = g->probe.seq;
    ping.u.ping.node = m->name;
    self_addr_fields(g, &ping.u.ping.source_addr, &ping.u.ping.source_port,
                     &ping.u.ping.source_node);
    struct base_buf b1, b2;
    base_buf_init(&b1);
    base_buf_init(&b2);
    gossip__msg_encode(&b1, &ping);
    struct gossip_bytes parts[2] = {{b1.data, b1.len}, {NULL, 0}};
    size_t n = 1;
    if (m->state == GOSSIP_STATE_SUSPECT) {
        /* Lifeguard's buddy system: tell the suspect itself, so it can refute at once */
        struct gossip_msg s = {.type = GOSSIP_SUSPECT};
        s.u.suspect = (struct gossip_suspect){m->incarnation, m->name, g->name};
        gossip__msg_encode(&b2, &s);
        parts[1] = (struct gossip_bytes){b2.data, b2.len};
        n = 2;
    }
    send_parts(g, (const struct sockaddr *)&ss, NULL, parts, n, true);
    base_buf_free(&b1);
    base_buf_free(&b2);
    probe_timer_start(g, gossip__members_scale(&g->mt, g->cfg.probe_timeout_ms));
}

static void probe_indirect(struct gossip *g)
{
    struct gossip_member *target = gossip__members_find(&g->mt, g->probe.node);
    if (!target) {
        probe_end(g);
        return;
    }
    g->st.indirect++;
    g->probe.phase = PROBE_INDIRECT;
    /* k random alive members other than us and the target */
    size_t *cand = base_malloc((g->mt.n + 1) * sizeof(*cand)), nc = 0;
    for (size_t i = 0; i < g->mt.n; i++) {
        const struct gossip_member *m = g->mt.v[i];
        if (!is_self(g, m->name) && m != target && m->state == GOSSIP_STATE_ALIVE)
            cand[nc++] = i;
    }
    for (size_t k = 0; k < g->cfg.indirect_checks && k < nc; k++) {
        size_t j = k + rnd_below(g, nc - k);
        size_t t = cand[k];
        cand[k] = cand[j];
        cand[j] = t;
        const struct gossip_member *peer = g->mt.v[cand[k]];
        struct sockaddr_storage ss;
        if (!member_sockaddr(peer, &ss))
            continue;
        struct gossip_msg ind = {.type = GOSSIP_INDIRECT_PING};
        ind.u.indirect.seq = g->probe.seq;
        ind.u.indirect.target = (struct gossip_bytes){target->addr, target->addr_len};
        ind.u.indirect.port = target->port;
        ind.u.indirect.node = target->name;
        ind.u.indirect.nack = peer->vsn[1] >= 4;
        self_addr_fields(g, &ind.u.indirect.source_addr, &ind.u.indirect.source_port,
                         &ind.u.indirect.source_node);
        if (ind.u.indirect.nack)
            g->probe.expected_nacks++;
        send_msg(g, (const struct sockaddr *)&ss, peer, &ind, true);
    }
    base_free(cand);
    uint64_t now = now_ms(g), end = g->probe.start_ms + g->probe.interval_ms;
    probe_tcp(g, target, end > now ? end - now : 1);
    probe_timer_start(g, end > now ? end - now : 1);
}

static void probe_fail(struct gossip *g)
{
    g->st.probe_failures++;
    uint32_t e = g->probe.expected_nacks, got = g->probe.nacks;
    /* Lifeguard: missing nacks say the fault may be ours */
    gossip__members_health(&g->mt, e > 0 ? (int)(e - (got < e ? got : e)) : 1);
    struct gossip_member *m = gossip__members_find(&g->mt, g->probe.node);
    if (m && live(m)) {
        LOG_DEBUG(MOD, "%s: probe of %s failed, suspecting it", g->name, m->name);
        struct gossip_suspect s = {m->incarnation, m->name, g->name};
        gossip__members_suspect(&g->mt, &s, now_ms(g), on_fx, g);
    }
    probe_end(g);
    rearm_susp(g);
}

static void on_probe_timer(uv_timer_t *t)
{
    struct gossip *g = t->data;
    switch (g->probe.phase) {
    case PROBE_IDLE:
        probe_start(g);
        break;
    case PROBE_DIRECT:
        probe_indirect(g);
        break;
    case PROBE_INDIRECT:
        probe_fail(g);
        break;
    }
}

static void on_probe_ack(struct gossip *g)
{
    if (g->probe.phase == PROBE_DIRECT)
        gossip__members_health(&g->mt, -1);
    probe_end(g);
}

/* ---- relayed pings (ping-req) ------------------------------------------------------------- */

static void relay_closed(uv_handle_t *h)
{
    struct relay *r = h->data;
    struct gossip *g = r->g;
    base_free(r);
    g->handles--;
    maybe_free(g);
}

static void relay_finish(struct relay *r)
{
    if (r->done)
        return;
    r->done = true;
    base_list_remove(&r->link);
    r->g->n_relays--;
    uv_close((uv_handle_t *)&r->timer, relay_closed);
}

static void on_relay_timeout(uv_timer_t *t)
{
    struct relay *r = t->data;
    if (r->nack) {
        struct gossip_msg m = {.type = GOSSIP_NACK};
        m.u.nack.seq = r->orig_seq;
        send_msg(r->g, (const struct sockaddr *)&r->to, NULL, &m, false);
    }
    relay_finish(r);
}

static void handle_indirect(struct gossip *g, const struct gossip_indirect_ping *ind,
                            const struct sockaddr *from)
{
    struct sockaddr_storage target, back;
    if (g->n_relays >= RELAYS_MAX || !to_sockaddr(ind->target.p, ind->target.n, ind->port, &target))
        return;
    if (!to_sockaddr(ind->source_addr.p, ind->source_addr.n, ind->source_port, &back)) {
        memset(&back, 0, sizeof(back));
        memcpy(&back, from,
               from->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in));
    }
    struct relay *r = base_calloc(1, sizeof(*r));
    r->g = g;
    r->seq = ++g->seq;
    r->orig_seq = ind->seq;
    r->to = back;
    r->nack = ind->nack;
    uv_timer_init(g->loop, &r->timer);
    r->timer.data = r;
    g->handles++;
    base_list_insert_tail(&g->relays, &r->link);
    g->n_relays++;
    struct gossip_msg ping = {.type = GOSSIP_PING};
    ping.u.ping.seq = r->seq;
    ping.u.ping.node = ind->node;
    self_addr_fields(g, &ping.u.ping.source_addr, &ping.u.ping.source_port,
                     &ping.u.ping.source_node);
    send_msg(g, (const struct sockaddr *)&target, gossip__members_find(&g->mt, ind->node), &ping,
             true);
    uv_timer_start(&r->timer, on_relay_timeout, g->cfg.probe_timeout_ms, 0);
}

static void handle_ack(struct gossip *g, uint32_t seq)
{
    if (g->probe.phase != PROBE_IDLE && seq == g->probe.seq) {
        on_probe_ack(g);
        return;
    }
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &g->relays)
    {
        struct relay *r = BASE_CONTAINER_OF(pos, struct relay, link);
        if (r->seq != seq)
            continue;
        struct gossip_msg m = {.type = GOSSIP_ACK};
        m.u.ack.seq = r->orig_seq;
        send_msg(g, (const struct sockaddr *)&r->to, NULL, &m, false);
        relay_finish(r);
        return;
    }
}

/* ---- incoming packets --------------------------------------------------------------------- */

static void handle_ping(struct gossip *g, const struct gossip_ping *p, const struct sockaddr *from)
{
    if (p->node[0] && !is_self(g, p->node))
        return; /* meant for a node that had our address before */
    struct sockaddr_storage back;
    if (!to_sockaddr(p->source_addr.p, p->source_addr.n, p->source_port, &back)) {
        memset(&back, 0, sizeof(back));
        memcpy(&back, from,
               from->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in));
    }
    struct gossip_msg m = {.type = GOSSIP_ACK};
    m.u.ack.seq = p->seq;
    send_msg(g, (const struct sockaddr *)&back, NULL, &m, true);
}

static void handle_packet_msg(struct gossip *g, const struct gossip_msg *m,
                              const struct sockaddr *from)
{
    uint64_t now = now_ms(g);
    switch (m->type) {
    case GOSSIP_PING:
        handle_ping(g, &m->u.ping, from);
        break;
    case GOSSIP_INDIRECT_PING:
        handle_indirect(g, &m->u.indirect, from);
        break;
    case GOSSIP_ACK:
        handle_ack(g, m->u.ack.seq);
        break;
    case GOSSIP_NACK:
        g->st.nacks_in++;
        if (g->probe.phase == PROBE_INDIRECT && m->u.nack.seq == g->probe.seq)
            g->probe.nacks++;
        break;
    case GOSSIP_SUSPECT:
        gossip__members_suspect(&g->mt, &m->u.suspect, now, on_fx, g);
        break;
    case GOSSIP_ALIVE:
        gossip__members_alive(&g->mt, &m->u.alive, false, now, on_fx, g);
        break;
    case GOSSIP_DEAD:
        gossip__members_dead(&g->mt, &m->u.suspect, now, on_fx, g);
        break;
    case GOSSIP_USER:
        handle_serf(g, m->u.user.p, m->u.user.n, true);
        break;
    default:
        break;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    BASE_UNUSED(suggested);
    struct gossip *g = h->data;
    *buf = uv_buf_init((char *)g->rbuf, sizeof(g->rbuf));
}

static void on_udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *from, unsigned flags)
{
    struct gossip *g = h->data;
    if (nread <= 0 || !from || g->stopping)
        return;
    g->st.udp_in++;
    g->st.udp_bytes_in += (uint64_t)nread;
    if (flags & UV_UDP_PARTIAL) {
        g->st.udp_bad++;
        return;
    }
    base_arena_reset(&g->arena);
    struct gossip_packet pkt;
    int rv =
        gossip__packet_decode((const uint8_t *)buf->base, (size_t)nread, &g->keys, &g->arena, &pkt);
    if (rv != 0) {
        g->st.udp_bad++;
        LOG_DEBUG(MOD, "%s: packet dropped: %s", g->name, base_strerror(rv));
        return;
    }
    for (size_t i = 0; i < pkt.n && !g->stopping; i++)
        handle_packet_msg(g, &pkt.msgs[i], from);
    rearm_susp(g);
}

/* ---- suspicion, gossip, housekeeping timers ----------------------------------------------- */

static void on_susp_timer(uv_timer_t *t)
{
    struct gossip *g = t->data;
    gossip__members_tick(&g->mt, now_ms(g), on_fx, g);
    rearm_susp(g);
}

static void rearm_susp(struct gossip *g)
{
    if (g->stopping)
        return;
    uint64_t next = gossip__members_next_deadline(&g->mt), now = now_ms(g);
    if (next == UINT64_MAX) {
        uv_timer_stop(&g->susp_timer);
        return;
    }
    uv_timer_start(&g->susp_timer, on_susp_timer, next > now ? next - now : 0, 0);
}

static bool gossip_target(const struct gossip *g, const struct gossip_member *m, uint64_t now)
{
    if (is_self(g, m->name))
        return false;
    if (live(m))
        return true;
    return now - m->state_change_ms < g->cfg.gossip_to_the_dead_ms;
}

static void on_gossip_timer(uv_timer_t *t)
{
    struct gossip *g = t->data;
    uint64_t now = now_ms(g);
    size_t *cand = base_malloc((g->mt.n + 1) * sizeof(*cand)), nc = 0;
    for (size_t i = 0; i < g->mt.n; i++)
        if (gossip_target(g, g->mt.v[i], now))
            cand[nc++] = i;
    for (size_t k = 0; k < g->cfg.gossip_nodes && k < nc; k++) {
        size_t j = k + rnd_below(g, nc - k);
        size_t x = cand[k];
        cand[k] = cand[j];
        cand[j] = x;
        const struct gossip_member *m = g->mt.v[cand[k]];
        struct sockaddr_storage ss;
        if (member_sockaddr(m, &ss))
            send_parts(g, (const struct sockaddr *)&ss, m, NULL, 0, true);
    }
    base_free(cand);
}

static int conn_dial(struct gossip *g, const struct sockaddr_storage *to, bool join,
                     struct join_op *op);

static uint64_t push_pull_scale(uint64_t interval, size_t n)
{
    /* memberlist's pushPullScale: slower past 32 members */
    if (n <= 32)
        return interval;
    double mult = ceil(log2((double)n) - log2(32.0)) + 1.0;
    return (uint64_t)(mult * (double)interval);
}

static void on_pp_timer(uv_timer_t *t)
{
    struct gossip *g = t->data;
    size_t *cand = base_malloc((g->mt.n + 1) * sizeof(*cand)), nc = 0;
    for (size_t i = 0; i < g->mt.n; i++)
        if (!is_self(g, g->mt.v[i]->name) && g->mt.v[i]->state == GOSSIP_STATE_ALIVE)
            cand[nc++] = i;
    if (nc) {
        struct sockaddr_storage ss;
        if (member_sockaddr(g->mt.v[cand[rnd_below(g, nc)]], &ss))
            (void)conn_dial(g, &ss, false, NULL);
    }
    base_free(cand);
    if (!g->stopping)
        uv_timer_start(&g->pp_timer, on_pp_timer,
                       push_pull_scale(g->cfg.push_pull_interval_ms, g->mt.n), 0);
}

static void sm_remove(struct gossip *g, size_t i)
{
    struct smember *s = g->sm[i];
    emit_member(g, GOSSIP_EVENT_REAP, s);
    base_free(s->name);
    base_free(s);
    g->sm[i] = g->sm[--g->n_sm];
}

static void on_house_timer(uv_timer_t *t)
{
    struct gossip *g = t->data;
    uint64_t now = now_ms(g);
    /* memberlist forgets the dead after gossiping to them for a while */
    for (size_t i = g->mt.n; i-- > 0;) {
        const struct gossip_member *m = g->mt.v[i];
        if (!live(m) && !is_self(g, m->name) &&
            now - m->state_change_ms >= g->cfg.gossip_to_the_dead_ms)
            gossip__members_remove(&g->mt, i);
    }
    /* serf reaps the failed and the left, and retries one failed member */
    size_t failed = 0;
    for (size_t i = g->n_sm; i-- > 0;) {
        struct smember *s = g->sm[i];
        if (is_self(g, s->name))
            continue;
        if ((s->status == GOSSIP_MEMBER_FAILED &&
             now - s->leave_ms >= g->cfg.reconnect_timeout_ms) ||
            (s->status == GOSSIP_MEMBER_LEFT && now - s->leave_ms >= g->cfg.tombstone_timeout_ms))
            sm_remove(g, i);
        else if (s->status == GOSSIP_MEMBER_FAILED)
            failed++;
    }
    if (failed && now - g->last_reconnect_ms >= g->cfg.reconnect_interval_ms) {
        g->last_reconnect_ms = now;
        size_t pick = rnd_below(g, failed);
        for (size_t i = 0; i < g->n_sm; i++) {
            struct smember *s = g->sm[i];
            if (s->status != GOSSIP_MEMBER_FAILED || is_self(g, s->name))
                continue;
            if (pick-- == 0) {
                struct sockaddr_storage ss;
                if (to_sockaddr(s->addr, s->addr_len, s->port, &ss))
                    (void)conn_dial(g, &ss, true, NULL);
                break;
            }
        }
    }
    for (size_t i = g->n_intents; i-- > 0;)
        if (now - g->intents[i].when_ms >= INTENT_TIMEOUT_MS)
            intent_drop(g, i);
}

/* ---- TCP: push-pull, joins, stream messages ------------------------------------------------ */

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct gossip *g = c->g;
    g->handles--;
    if (--c->open == 0) {
        base_buf_free(&c->in);
        base_free(c->ping_node);
        base_free(c);
    }
    maybe_free(g);
}

static void join_op_done(struct join_op *op, bool ok, int err)
{
    if (ok)
        op->joined++;
    else if (err)
        op->err = err;
    if (--op->pending == 0) {
        if (op->cb)
            op->cb(op->ctx, op->joined, op->joined ? 0 : (op->err ? op->err : BASE_EINVAL));
        base_free(op);
    }
}

/* The one place a connection ends. */
static void conn_finish(struct conn *c, int err)
{
    if (c->done)
        return;
    c->done = true;
    struct gossip *g = c->g;
    base_list_remove(&c->link);
    if (c->kind == CONN_ACCEPT)
        g->n_in_conns--;
    if (err && err != UV_EOF)
        LOG_DEBUG(MOD, "%s: stream ended: %s", g->name, base_strerror(err));
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
    if (c->op) {
        struct join_op *op = c->op;
        c->op = NULL;
        join_op_done(op, err == 0, err);
    }
}

static void on_conn_timeout(uv_timer_t *t)
{
    conn_finish(t->data, UV_ETIMEDOUT);
}

static struct conn *conn_new(struct gossip *g, enum conn_kind kind)
{
    struct conn *c = base_calloc(1, sizeof(*c));
    c->g = g;
    c->kind = kind;
    base_buf_init(&c->in);
    uv_tcp_init(g->loop, &c->tcp);
    uv_timer_init(g->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open = 2;
    g->handles += 2;
    base_list_insert_tail(&g->conns, &c->link);
    uv_timer_start(&c->timer, on_conn_timeout, g->cfg.tcp_timeout_ms, 0);
    return c;
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = req->data;
    struct conn *c = w->c;
    base_free(w->data);
    base_free(w);
    if (c->done)
        return;
    c->writes--;
    if (status < 0)
        conn_finish(c, status);
    else if (c->finish_after_write && c->writes == 0)
        conn_finish(c, 0);
}

/* Writes one stream message (encrypted when we have a key). */
static void conn_write(struct conn *c, const struct base_buf *msg)
{
    struct gossip *g = c->g;
    struct base_buf b;
    base_buf_init(&b);
    if (g->keys.n) {
        uint8_t nonce[12];
        if (uv_random(NULL, NULL, nonce, sizeof(nonce), 0, NULL) != 0) {
            base_buf_free(&b);
            conn_finish(c, UV_EIO);
            return;
        }
        gossip__encrypt_stream(&b, g->keys.keys[0].key, g->keys.keys[0].len, nonce, msg->data,
                               msg->len);
    } else {
        base_buf_append(&b, msg->data, msg->len);
    }
    struct write_req *w = base_calloc(1, sizeof(*w));
    w->c = c;
    w->data = b.data;
    w->req.data = w;
    uv_buf_t ub = uv_buf_init((char *)b.data, (unsigned)b.len);
    c->writes++;
    int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, on_write);
    if (rv < 0) {
        c->writes--;
        base_free(w->data);
        base_free(w);
        conn_finish(c, rv);
    }
}

/* Our push-pull: memberlist's nodes and serf's state. */
static void local_state(struct gossip *g, bool join, struct base_buf *out)
{
    struct base_buf us;
    base_buf_init(&us);
    struct gossip_serf_push_pull spp = {
        .ltime = g->clock, .event_ltime = g->event_clock, .query_ltime = g->query_clock};
    spp.status = base_calloc(g->n_sm + 1, sizeof(*spp.status));
    spp.left = base_calloc(g->n_sm + 1, sizeof(*spp.left));
    for (size_t i = 0; i < g->n_sm; i++) {
        spp.status[spp.n_status++] =
            (struct gossip_serf_status){g->sm[i]->name, g->sm[i]->status_ltime};
        if (g->sm[i]->status == GOSSIP_MEMBER_LEFT)
            spp.left[spp.n_left++] = g->sm[i]->name;
    }
    size_t slots = 0;
    for (size_t i = 0; i < RING; i++)
        slots += g->ring[i].n > 0;
    spp.events = base_calloc(slots + 1, sizeof(*spp.events));
    struct gossip_serf_event *evs = base_calloc(slots * RING_SLOT_MAX + 1, sizeof(*evs));
    size_t ne = 0;
    for (size_t i = 0; i < RING; i++) {
        const struct ring_slot *s = &g->ring[i];
        if (!s->n)
            continue;
        struct gossip_serf_events *e = &spp.events[spp.n_events++];
        e->ltime = s->ltime;
        e->events = evs + ne;
        for (size_t k = 0; k < s->n; k++)
            evs[ne++] = (struct gossip_serf_event){s->ev[k].name, {s->ev[k].payload, s->ev[k].len}};
        e->n = s->n;
    }
    struct gossip_serf_msg sm = {.type = GOSSIP_SERF_PUSH_PULL};
    sm.u.push_pull = spp;
    gossip__serf_encode(&us, &sm);

    struct gossip_push_node *nodes = base_calloc(g->mt.n + 1, sizeof(*nodes));
    for (size_t i = 0; i < g->mt.n; i++) {
        const struct gossip_member *m = g->mt.v[i];
        nodes[i] = (struct gossip_push_node){.name = m->name,
                                             .addr = {m->addr, m->addr_len},
                                             .port = m->port,
                                             .meta = {m->meta, m->meta_len},
                                             .incarnation = m->incarnation,
                                             .state = m->state,
                                             .has_vsn = true};
        memcpy(nodes[i].vsn, m->vsn, GOSSIP_VSN_LEN);
    }
    struct gossip_msg msg = {.type = GOSSIP_PUSH_PULL};
    msg.u.push_pull = (struct gossip_push_pull){join, g->mt.n, nodes, {us.data, us.len}};
    gossip__msg_encode(out, &msg);
    base_free(nodes);
    base_free(evs);
    base_free(spp.events);
    base_free(spp.status);
    base_free(spp.left);
    base_buf_free(&us);
}

static void merge_remote(struct gossip *g, const struct gossip_push_pull *pp)
{
    /* a state larger than our member cap is not a pool we can hold: refused whole, which also
     * bounds the work of the merges below (each is linear in the table) */
    if (pp->n_nodes > g->cfg.max_members) {
        g->st.tcp_bad++;
        LOG_DEBUG(MOD, "%s: push-pull of %zu nodes refused", g->name, pp->n_nodes);
        return;
    }
    gossip__members_merge(&g->mt, pp->nodes, pp->n_nodes, now_ms(g), on_fx, g);
    if (pp->user_state.n) {
        struct base_arena a;
        base_arena_init(&a);
        struct gossip_serf_msg m;
        if (gossip__serf_decode(pp->user_state.p, pp->user_state.n, &a, &m) == 0 &&
            m.type == GOSSIP_SERF_PUSH_PULL && m.u.push_pull.n_status <= g->cfg.max_members &&
            m.u.push_pull.n_left <= g->cfg.max_members)
            serf_merge(g, &m.u.push_pull);
        else
            g->st.tcp_bad++;
        base_arena_close(&a);
    }
    rearm_susp(g);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    BASE_UNUSED(suggested);
    struct conn *c = h->data;
    size_t room = c->g->cfg.max_stream + 1 - c->in.len;
    if (room > 65536)
        room = 65536;
    base_buf_reserve(&c->in, room);
    *buf = uv_buf_init((char *)c->in.data + c->in.len, (unsigned)room);
}

static void conn_message(struct conn *c, const struct gossip_msg *m)
{
    struct gossip *g = c->g;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (c->kind == CONN_PING) {
        /* memberlist's TCP fallback probe: an ack over the stream is as good as over UDP */
        if (m->type == GOSSIP_ACK && m->u.ack.seq == c->ping_seq && g->probe.phase != PROBE_IDLE &&
            g->probe.seq == c->ping_seq) {
            LOG_DEBUG(MOD, "%s: %s answered over TCP only", g->name, c->ping_node);
            on_probe_ack(g);
        }
        conn_finish(c, 0);
        return;
    }
    if (c->kind == CONN_PUSH_PULL) {
        if (m->type != GOSSIP_PUSH_PULL) {
            g->st.tcp_bad++;
            conn_finish(c, BASE_EPARSE);
            return;
        }
        merge_remote(g, &m->u.push_pull);
        conn_finish(c, 0);
        return;
    }
    struct base_buf out;
    base_buf_init(&out);
    switch (m->type) {
    case GOSSIP_PUSH_PULL:
        local_state(g, m->u.push_pull.join, &out);
        c->finish_after_write = true;
        conn_write(c, &out);
        merge_remote(g, &m->u.push_pull);
        break;
    case GOSSIP_PING: {
        if (m->u.ping.node[0] && !is_self(g, m->u.ping.node)) {
            conn_finish(c, 0);
            break;
        }
        struct gossip_msg ack = {.type = GOSSIP_ACK};
        ack.u.ack.seq = m->u.ping.seq;
        gossip__msg_encode(&out, &ack);
        c->finish_after_write = true;
        conn_write(c, &out);
        break;
    }
    case GOSSIP_USER:
        handle_serf(g, m->u.user.p, m->u.user.n, true);
        conn_finish(c, 0);
        break;
    default:
        g->st.tcp_bad++;
        conn_finish(c, BASE_EPARSE);
        break;
    }
    base_buf_free(&out);
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    BASE_UNUSED(buf);
    struct conn *c = s->data;
    if (c->done)
        return;
    if (nread < 0) {
        conn_finish(c, (int)nread);
        return;
    }
    if (nread == 0)
        return;
    c->in.len += (size_t)nread;
    struct gossip *g = c->g;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_msg m;
    bool enc = false;
    size_t used = 0;
    int rv = gossip__stream_decode(c->in.data, c->in.len, g->cfg.max_stream, &g->keys, &a, &m, &enc,
                                   &used);
    if (rv == -EAGAIN) {
        if (c->in.len > g->cfg.max_stream) {
            g->st.tcp_bad++;
            conn_finish(c, BASE_ETOOBIG);
        }
    } else if (rv != 0) {
        g->st.tcp_bad++;
        LOG_DEBUG(MOD, "%s: stream refused: %s", g->name, base_strerror(rv));
        conn_finish(c, rv);
    } else if (g->keys.n && !enc) {
        g->st.tcp_bad++; /* memberlist refuses plain state when it has a key */
        conn_finish(c, BASE_EACL);
    } else {
        conn_message(c, &m);
    }
    base_arena_close(&a);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->done)
        return;
    if (status < 0) {
        conn_finish(c, status);
        return;
    }
    struct base_buf b;
    base_buf_init(&b);
    if (c->kind == CONN_PING) {
        struct gossip_msg ping = {.type = GOSSIP_PING};
        ping.u.ping.seq = c->ping_seq;
        ping.u.ping.node = c->ping_node;
        self_addr_fields(c->g, &ping.u.ping.source_addr, &ping.u.ping.source_port,
                         &ping.u.ping.source_node);
        gossip__msg_encode(&b, &ping);
    } else {
        local_state(c->g, c->join, &b);
    }
    conn_write(c, &b);
    base_buf_free(&b);
    if (!c->done)
        uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
}

static int conn_dial_kind(struct gossip *g, const struct sockaddr_storage *to, bool join,
                          struct join_op *op, enum conn_kind kind, struct conn **out)
{
    if (g->stopping)
        return BASE_ESHUTDOWN;
    struct conn *c = conn_new(g, kind);
    if (out)
        *out = c;
    c->join = join;
    c->peer = *to;
    c->connect.data = c;
    g->st.tcp_out++;
    int rv = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)to, on_connect);
    if (rv < 0) {
        conn_finish(c, rv);
        return rv;
    }
    c->op = op;
    return 0;
}

static int conn_dial(struct gossip *g, const struct sockaddr_storage *to, bool join,
                     struct join_op *op)
{
    return conn_dial_kind(g, to, join, op, CONN_PUSH_PULL, NULL);
}

/* memberlist's TCP fallback ping, sent with the indirect probes to a member whose protocol
 * has it (PMax >= 3): it tells a UDP-only fault from a dead member. Ends by the probe's end. */
static void probe_tcp(struct gossip *g, const struct gossip_member *target, uint64_t ms)
{
    struct sockaddr_storage ss;
    struct conn *c = NULL;
    if (target->vsn[1] < 3 || !member_sockaddr(target, &ss))
        return;
    if (conn_dial_kind(g, &ss, false, NULL, CONN_PING, &c) != 0 || c->done)
        return;
    c->ping_seq = g->probe.seq;
    c->ping_node = base_strdup(target->name);
    uv_timer_start(&c->timer, on_conn_timeout, ms ? ms : 1, 0);
}

static void on_connection(uv_stream_t *s, int status)
{
    struct gossip *g = s->data;
    if (status < 0 || g->stopping)
        return;
    struct conn *c = conn_new(g, CONN_ACCEPT);
    g->n_in_conns++;
    g->st.tcp_in++;
    if (uv_accept(s, (uv_stream_t *)&c->tcp) != 0) {
        conn_finish(c, UV_EIO);
        return;
    }
    int len = sizeof(c->peer);
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len);
    size_t same = 0;
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &g->conns)
    {
        const struct conn *o = BASE_CONTAINER_OF(pos, struct conn, link);
        if (o != c && o->kind == CONN_ACCEPT && same_host(&o->peer, &c->peer))
            same++;
    }
    if (g->n_in_conns > g->cfg.max_conns || same >= g->cfg.max_conns_per_source) {
        g->st.tcp_refused++;
        conn_finish(c, BASE_ETOOBIG);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
}

/* ---- start, stop, the public calls -------------------------------------------------------- */

static void gossip_free(struct gossip *g)
{
    gossip__members_close(&g->mt);
    gossip__queue_close(&g->mq);
    gossip__queue_close(&g->sq);
    for (size_t i = 0; i < g->n_probe; i++)
        base_free(g->probe_list[i]);
    base_free(g->probe_list);
    base_free(g->probe.node);
    for (size_t i = 0; i < g->n_sm; i++) {
        base_free(g->sm[i]->name);
        base_free(g->sm[i]);
    }
    base_free(g->sm);
    while (g->n_intents)
        intent_drop(g, g->n_intents - 1);
    base_free(g->intents);
    for (size_t i = 0; i < RING; i++)
        ring_clear(g, &g->ring[i]);
    base_arena_close(&g->arena);
    base_free(g->name);
    base_free(g);
}

static void maybe_free(struct gossip *g)
{
    if (!g->stopping || g->handles > 0)
        return;
    gossip_done_cb cb = g->stop_cb;
    void *ctx = g->stop_ctx;
    gossip_free(g);
    if (cb)
        cb(ctx, 0);
}

static void engine_closed(uv_handle_t *h)
{
    struct gossip *g = h->data;
    g->handles--;
    maybe_free(g);
}

void gossip_stop(struct gossip *g, gossip_done_cb cb, void *ctx)
{
    if (g->stopping)
        return;
    g->stopping = true;
    g->stop_cb = cb;
    g->stop_ctx = ctx;
    while (!base_list_empty(&g->conns))
        conn_finish(BASE_CONTAINER_OF(base_list_first(&g->conns), struct conn, link),
                    BASE_ESHUTDOWN);
    while (!base_list_empty(&g->relays)) {
        struct relay *r = BASE_CONTAINER_OF(base_list_first(&g->relays), struct relay, link);
        r->done = true;
        base_list_remove(&r->link);
        g->n_relays--;
        uv_close((uv_handle_t *)&r->timer, relay_closed);
    }
    uv_handle_t *hs[] = {(uv_handle_t *)&g->udp,         (uv_handle_t *)&g->lst,
                         (uv_handle_t *)&g->probe_timer, (uv_handle_t *)&g->gossip_timer,
                         (uv_handle_t *)&g->pp_timer,    (uv_handle_t *)&g->susp_timer,
                         (uv_handle_t *)&g->house_timer, (uv_handle_t *)&g->leave_timer};
    for (size_t i = 0; i < BASE_ARRAY_LEN(hs); i++)
        if (!uv_is_closing(hs[i]))
            uv_close(hs[i], engine_closed);
}

static int meta_encode(const struct gossip_tag *tags, size_t n, uint8_t *meta, size_t *len)
{
    struct base_buf b;
    base_buf_init(&b);
    gossip__tags_encode(&b, tags, n);
    int rv = 0;
    if (b.len > 512)
        rv = BASE_ETOOBIG;
    else {
        memcpy(meta, b.data, b.len);
        *len = b.len;
    }
    base_buf_free(&b);
    return rv;
}

static int parse_ip(const char *s, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(s, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(s, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return BASE_EINVAL;
}

static void our_alive(struct gossip *g, uint32_t incarnation, struct gossip_alive *a)
{
    *a = (struct gossip_alive){
        incarnation, g->name, {g->addr, g->addr_len}, g->port, {g->meta, g->meta_len}, true, {0}};
    memcpy(a->vsn, our_vsn, GOSSIP_VSN_LEN);
}

int gossip_start(uv_loop_t *loop, const struct gossip_config *cfg, struct gossip **out)
{
    if (!cfg->node_name || !cfg->node_name[0] || !cfg->bind_addr || cfg->probe_interval_ms == 0 ||
        cfg->gossip_interval_ms == 0 || cfg->probe_timeout_ms == 0 ||
        (cfg->key && cfg->key_len != 16 && cfg->key_len != 24 && cfg->key_len != 32)) {
        LOG_ERR(MOD, "bad configuration");
        return BASE_EINVAL;
    }
    struct sockaddr_storage bind_sa, adv_sa;
    uint16_t adv_port = cfg->advertise_port ? cfg->advertise_port : cfg->bind_port;
    if (parse_ip(cfg->bind_addr, cfg->bind_port, &bind_sa) != 0 ||
        parse_ip(cfg->advertise_addr ? cfg->advertise_addr : cfg->bind_addr, adv_port, &adv_sa) !=
            0) {
        LOG_ERR(MOD, "bad bind or advertise address");
        return BASE_EINVAL;
    }
    struct gossip *g = base_calloc(1, sizeof(*g));
    g->loop = loop;
    g->cfg = *cfg;
    g->cfg.node_name = g->cfg.bind_addr = g->cfg.advertise_addr = NULL;
    g->cfg.tags = NULL;
    g->cfg.n_tags = 0;
    g->cfg.key = NULL;
    g->name = base_strdup(cfg->node_name);
    if (cfg->key) {
        g->keys.n = 1;
        g->keys.keys[0].len = cfg->key_len;
        memcpy(g->keys.keys[0].key, cfg->key, cfg->key_len);
    }
    if (adv_sa.ss_family == AF_INET) {
        memcpy(g->addr, &((struct sockaddr_in *)&adv_sa)->sin_addr, 4);
        g->addr_len = 4;
    } else {
        memcpy(g->addr, &((struct sockaddr_in6 *)&adv_sa)->sin6_addr, 16);
        g->addr_len = 16;
    }
    g->port = adv_port;
    base_list_init(&g->relays);
    base_list_init(&g->conns);
    base_arena_init(&g->arena);
    if (uv_random(NULL, NULL, &g->rng, sizeof(g->rng), 0, NULL) != 0 || g->rng == 0)
        g->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)g;
    gossip__queue_init(&g->mq, cfg->retransmit_mult);
    gossip__queue_init(&g->sq, cfg->retransmit_mult);
    g->clock = g->event_clock = g->query_clock = 1; /* serf starts its clocks at 1 */

    int rv = meta_encode(cfg->tags, cfg->n_tags, g->meta, &g->meta_len);
    struct gossip_member_config mc = {cfg->probe_interval_ms, cfg->suspicion_mult,
                                      cfg->suspicion_max_timeout_mult,
                                      cfg->awareness_max_multiplier, cfg->max_members};
    gossip__members_init(&g->mt, &mc, g->name, g->addr, g->addr_len, g->port, g->meta, g->meta_len,
                         our_vsn, uv_now(loop));

    uv_udp_init(loop, &g->udp);
    uv_tcp_init(loop, &g->lst);
    uv_timer_init(loop, &g->probe_timer);
    uv_timer_init(loop, &g->gossip_timer);
    uv_timer_init(loop, &g->pp_timer);
    uv_timer_init(loop, &g->susp_timer);
    uv_timer_init(loop, &g->house_timer);
    uv_timer_init(loop, &g->leave_timer);
    g->handles = 8;
    g->udp.data = g->lst.data = g->probe_timer.data = g->gossip_timer.data = g->pp_timer.data =
        g->susp_timer.data = g->house_timer.data = g->leave_timer.data = g;
    if (rv == 0 && (rv = uv_udp_bind(&g->udp, (const struct sockaddr *)&bind_sa, 0)) != 0)
        LOG_ERR(MOD, "udp bind %s:%u: %s", cfg->bind_addr, cfg->bind_port, base_strerror(rv));
    if (rv == 0 && (rv = uv_tcp_bind(&g->lst, (const struct sockaddr *)&bind_sa, 0)) != 0)
        LOG_ERR(MOD, "tcp bind %s:%u: %s", cfg->bind_addr, cfg->bind_port, base_strerror(rv));
    if (rv == 0 && (rv = uv_listen((uv_stream_t *)&g->lst, 128, on_connection)) != 0)
        LOG_ERR(MOD, "listen %s:%u: %s", cfg->bind_addr, cfg->bind_port, base_strerror(rv));
    if (rv == 0 && (rv = uv_udp_recv_start(&g->udp, on_alloc, on_udp_recv)) != 0)
        LOG_ERR(MOD, "udp recv: %s", base_strerror(rv));
    if (rv != 0) {
        gossip_stop(g, NULL, NULL);
        return rv;
    }
    /* our alive (memberlist's setAlive) and serf's member for us */
    struct gossip_alive a;
    our_alive(g, g->mt.v[0]->incarnation, &a);
    struct gossip_msg msg = {.type = GOSSIP_ALIVE};
    msg.u.alive = a;
    struct gossip_fx fx = {GOSSIP_FX_BROADCAST, g->mt.v[0], &msg};
    g->setting_tags = true;
    on_fx(g, &fx);
    g->setting_tags = false;
    fx = (struct gossip_fx){GOSSIP_FX_JOIN, g->mt.v[0], NULL};
    on_fx(g, &fx);

    uv_timer_start(&g->probe_timer, on_probe_timer, cfg->probe_interval_ms, 0);
    uv_timer_start(&g->gossip_timer, on_gossip_timer, cfg->gossip_interval_ms,
                   cfg->gossip_interval_ms);
    if (cfg->push_pull_interval_ms)
        uv_timer_start(&g->pp_timer, on_pp_timer, cfg->push_pull_interval_ms, 0);
    uv_timer_start(&g->house_timer, on_house_timer, HOUSE_MS, HOUSE_MS);
    g->last_reconnect_ms = uv_now(loop);
    LOG_INFO(MOD, "%s: gossip on %s:%u", g->name, cfg->bind_addr, cfg->bind_port);
    *out = g;
    return 0;
}

static void join_with(struct gossip *g, struct join_op *op, const char *addr)
{
    char host[256];
    int port;
    struct sockaddr_storage ss;
    int rv = base_hostport_parse(addr, 8301, host, sizeof(host), &port);
    if (rv == 0 && (port <= 0 || port > 65535))
        rv = BASE_EINVAL;
    if (rv == 0)
        rv = parse_ip(host, (uint16_t)port, &ss);
    if (rv == 0)
        rv = conn_dial(g, &ss, true, op);
    if (rv != 0) {
        LOG_WARN(MOD, "%s: join %s: %s", g->name, addr, base_strerror(rv));
        join_op_done(op, false, rv);
    }
}

struct join_wrap {
    struct gossip *g;
    gossip_join_cb cb;
    void *ctx;
};

static void on_joined(void *ctx, size_t joined, int status)
{
    struct join_wrap *w = ctx;
    struct gossip *g = w->g;
    gossip_join_cb cb = w->cb;
    void *uctx = w->ctx;
    base_free(w);
    /* serf broadcasts its join intent once memberlist has joined someone */
    if (joined && !g->stopping)
        broadcast_join(g, g->clock);
    if (cb)
        cb(uctx, joined, status);
}

int gossip_join(struct gossip *g, const char *const *addrs, size_t n, gossip_join_cb cb, void *ctx)
{
    BASE_ASSERT_LOOP();
    if (g->stopping)
        return BASE_ESHUTDOWN;
    if (n == 0)
        return BASE_EINVAL;
    struct join_wrap *w = base_calloc(1, sizeof(*w));
    *w = (struct join_wrap){g, cb, ctx};
    struct join_op *op = base_calloc(1, sizeof(*op));
    op->cb = on_joined;
    op->ctx = w;
    op->pending = n + 1; /* one held until every dial is started */
    for (size_t i = 0; i < n; i++)
        join_with(g, op, addrs[i]);
    join_op_done(op, false, 0);
    return 0;
}

static void on_leave_timer(uv_timer_t *t)
{
    struct gossip *g = t->data;
    if (g->leave_phase == 1) {
        /* memberlist's Leave: our own dead, after the intent has gone out */
        g->leave_phase = 2;
        struct gossip_member *me = gossip__members_find(&g->mt, g->name);
        struct gossip_msg d = {.type = GOSSIP_DEAD};
        d.u.suspect = (struct gossip_suspect){me->incarnation, g->name, g->name};
        struct base_buf b;
        base_buf_init(&b);
        gossip__msg_encode(&b, &d);
        send_to_all(g, b.data, b.len);
        base_buf_free(&b);
        gossip__members_leave(&g->mt, now_ms(g), on_fx, g);
        uv_timer_start(&g->leave_timer, on_leave_timer, g->cfg.leave_propagate_ms, 0);
        return;
    }
    g->leave_phase = 3;
    if (g->leave_cb)
        g->leave_cb(g->leave_ctx, 0);
}

int gossip_leave(struct gossip *g, gossip_done_cb cb, void *ctx)
{
    BASE_ASSERT_LOOP();
    if (g->stopping)
        return BASE_ESHUTDOWN;
    if (g->leave_phase)
        return BASE_EINVAL;
    g->leave_phase = 1;
    g->leave_cb = cb;
    g->leave_ctx = ctx;
    struct gossip_serf_msg m = {.type = GOSSIP_SERF_LEAVE};
    m.u.join = (struct gossip_serf_join){g->clock, g->name, false};
    g->clock++;
    handle_leave_intent(g, &m.u.join);
    queue_serf(g, &m);
    struct base_buf b;
    base_buf_init(&b);
    base_buf_put_u8(&b, GOSSIP_USER);
    gossip__serf_encode(&b, &m);
    send_to_all(g, b.data, b.len);
    base_buf_free(&b);
    /* the dead goes in a later packet: a receiver must see the intent first */
    uint64_t gap = 2 * g->cfg.gossip_interval_ms;
    if (gap > g->cfg.leave_propagate_ms)
        gap = g->cfg.leave_propagate_ms;
    uv_timer_start(&g->leave_timer, on_leave_timer, gap ? gap : 1, 0);
    return 0;
}

int gossip_event_fire(struct gossip *g, const char *name, const uint8_t *payload, size_t len,
                      bool coalesce)
{
    BASE_ASSERT_LOOP();
    if (g->stopping)
        return BASE_ESHUTDOWN;
    if (!name || !name[0] || strlen(name) + len > GOSSIP_SERF_EVENT_SIZE_MAX)
        return BASE_ETOOBIG;
    struct gossip_serf_msg m = {.type = GOSSIP_SERF_USER_EVENT};
    m.u.event = (struct gossip_serf_user_event){g->event_clock, name, {payload, len}, coalesce};
    struct base_buf b;
    base_buf_init(&b);
    base_buf_put_u8(&b, GOSSIP_USER);
    gossip__serf_encode(&b, &m);
    /* a broadcast travels in one packet with the compound's and the wrappers' overhead */
    size_t room = UDP_BUF - 2 - 2 - 5 - (g->keys.n ? ENCRYPT_OVERHEAD : 0);
    if (b.len > room) {
        base_buf_free(&b);
        return BASE_ETOOBIG;
    }
    g->event_clock++;
    handle_user_event(g, m.u.event.ltime, name, payload, len, coalesce);
    gossip__queue_push(&g->sq, NULL, b.data, b.len);
    gossip__queue_prune(&g->sq, g->cfg.max_queue);
    base_buf_free(&b);
    return 0;
}

int gossip_set_tags(struct gossip *g, const struct gossip_tag *tags, size_t n)
{
    BASE_ASSERT_LOOP();
    if (g->stopping)
        return BASE_ESHUTDOWN;
    uint8_t meta[512];
    size_t len = 0;
    int rv = meta_encode(tags, n, meta, &len);
    if (rv != 0)
        return rv;
    memcpy(g->meta, meta, len);
    g->meta_len = len;
    struct gossip_alive a;
    our_alive(g, ++g->mt.incarnation_seq, &a);
    g->setting_tags = true;
    gossip__members_alive(&g->mt, &a, true, now_ms(g), on_fx, g);
    g->setting_tags = false;
    return 0;
}

void gossip_members(struct gossip *g, gossip_member_cb cb, void *ctx)
{
    BASE_ASSERT_LOOP();
    for (size_t i = 0; i < g->n_sm; i++) {
        struct base_arena a;
        base_arena_init(&a);
        struct gossip_node n;
        node_fill(g->sm[i], &a, &n);
        const struct gossip_member *m = gossip__members_find(&g->mt, n.name);
        if (m)
            n.incarnation = m->incarnation; /* alives carry it without a serf event */
        cb(ctx, &n);
        base_arena_close(&a);
    }
}

size_t gossip_num_alive(const struct gossip *g)
{
    size_t n = 0;
    for (size_t i = 0; i < g->n_sm; i++)
        n += g->sm[i]->status == GOSSIP_MEMBER_ALIVE;
    return n;
}

void gossip_stats_get(const struct gossip *g, struct gossip_stats *out)
{
    *out = g->st;
    out->health = g->mt.health;
}
