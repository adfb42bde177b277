/* gossip/swim.c: the protocol engine on libuv (gossip.h), memberlist 0.2.2's and serf 0.9.x's
 * behaviour over the codec (wire.h), the member table (member.h) and the broadcast queues
 * (queue.h). This file: start, stop and the public calls, UDP, probes, relays, gossip and the
 * timers; stream.c: TCP; serf_state.c: serf's state; query.c: serf's queries (the keyring);
 * swim.h: the engine's struct.
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
 *           and the member is suspected. An answered probe lowers the score by one. The interval
 *           and the timeout are scaled by (score + 1): a node that is slow itself probes less
 *           and waits longer before it accuses anyone.
 *   gossip  every gossip_interval (and at once when a suspicion or a death is news:
 *           gossip_soon), gossip_nodes random members (alive, suspect, or dead for
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
 * Incoming packets (from the socket, or from gossip_net_deliver when cfg.net.send replaces the
 * socket: a simulated network) are decoded whole (gossip__packet_decode, the fuzzed decoder)
 * into the engine's arena, then each message is handled in order. Streams are read into a buffer
 * capped at max_stream and decoded with gossip__stream_decode once whole.
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
 * Ownership: "one owner finishes each asynchronous thing": gossip__conn_finish for a TCP
 * connection, relay_finish for a relayed ping; the engine itself is freed when its last handle
 * closes.
 */
#include "gossip/swim.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

static const uint8_t our_vsn[GOSSIP_VSN_LEN] = {1, 5, 2, 2, 5, 5}; /* as serf 0.9.4 */

static void on_probe_timer(uv_timer_t *t);
static void on_gossip_timer(uv_timer_t *t);

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

/* Herald's LAN timings differ from memberlist's DefaultLANConfig (probe 1 s, timeout 500 ms,
 * gossip 200 ms), with which serf takes 5-6 s to see a death in a pool of 10 and about 10 s in
 * a pool of 100 (tests/bench/RESULTS.md, "Gossip"). A detection is the wait for someone's probe
 * of the dead member to fail (up to a probe interval), then the suspicion timeout, Lifeguard's
 * (member.c): it starts at suspicion_max_timeout_mult x min and drops to min =
 * suspicion_mult x max(1, log10 N) x probe_interval once suspicion_mult - 2 other members'
 * own failed probes confirm it; then the dead spreads by gossip. Each term is proportional to
 * probe_interval, 4 times shorter here: 250 ms, so min is 1 s at N=10 and 2 s at N=100, and the
 * pool sees a death in about 1.5 s and 3 s. The direct probe waits 100 ms before the indirect
 * ones (a LAN's round trip is well under a millisecond; 100 ms leaves room for a busy host, and
 * Lifeguard's health score stretches both on a host that misses acks itself). suspicion_mult 4
 * and suspicion_max_timeout_mult 6 are memberlist's: a member slow to refute (packet loss) has
 * 6 x min (6 s at N=10) when nobody confirms its suspicion, and two independent confirmations
 * are needed before the minimum. Gossip every 100 ms, and news of a suspicion or a death is
 * gossiped at once (gossip_soon), not at the next tick: an idle pool has no news, so this costs
 * nothing idle. What it costs is probes: 4 pings and 4 acks a second per member instead of 1,
 * so pings leave out their optional source address when we are bound where we advertise
 * (probe_source) and push-pull (still every 30 s, scaled past 32 members) is LZW-compressed as
 * memberlist's: idle, a member sends about 1.6x serf's bytes (440 B/s against 270 at N=10 and
 * N=100, headers included). */
void gossip_config_defaults(struct gossip_config *c)
{
    memset(c, 0, sizeof(*c));
    c->bind_port = 8301;
    c->probe_interval_ms = 250;
    c->probe_timeout_ms = 100;
    c->gossip_interval_ms = 100;
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
bool gossip__send_parts(struct gossip *g, const struct sockaddr *to, const struct gossip_member *m,
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
    struct base_buf *wire = &pkt;
    if (m && m->vsn[1] >= 5) {
        gossip__crc_encode(&out, pkt.data, pkt.len);
        wire = &out;
    }
    struct base_buf enc;
    base_buf_init(&enc);
    if (g->keys.n) {
        uint8_t nonce[12];
        if (uv_random(NULL, NULL, nonce, sizeof(nonce), 0, NULL) == 0) {
            gossip__encrypt(&enc, 1, g->keys.keys[0].key, g->keys.keys[0].len, nonce, wire->data,
                            wire->len, NULL, 0);
            wire = &enc;
        } else {
            wire = NULL;
        }
    }
    if (wire) {
        uv_buf_t b = uv_buf_init((char *)wire->data, (unsigned)wire->len);
        int rv = g->cfg.net.send ? g->cfg.net.send(g->cfg.net.ctx, to, wire->data, wire->len)
                                 : uv_udp_try_send(&g->udp, &b, 1, to);
        if (rv >= 0) {
            g->st.udp_out++;
            g->st.udp_bytes_out += wire->len;
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
    gossip__send_parts(g, to, m, &part, 1, piggyback);
    base_buf_free(&b);
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
        gossip__send_parts(g, (const struct sockaddr *)&ss, m, &part, 1, false);
    }
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

/* A member we just heard is suspect is the next we probe (ahead of the round-robin's order,
 * which then goes on): our own probe either confirms the suspicion, which Lifeguard needs
 * suspicion_mult - 2 times before the timeout drops to its minimum, or carries the suspicion
 * to the member itself (the buddy system) so it refutes sooner. No probe is added; the others
 * of the round wait one probe interval more. Not every member hears of it in time to confirm
 * it, but every one might: so that a suspect is not pinged by the whole pool at once, each
 * member does this with probability suspicion_mult / (members - 1), about suspicion_mult
 * extra probers (twice the confirmations needed) in any pool. */
static void probe_next(struct gossip *g, const char *name)
{
    if (g->probe.node && strcmp(g->probe.node, name) == 0)
        return; /* being probed now */
    size_t others = g->mt.n > 1 ? g->mt.n - 1 : 1;
    if (rnd_below(g, others) >= g->cfg.suspicion_mult)
        return;
    size_t j = 0;
    while (j < g->n_probe && strcmp(g->probe_list[j], name) != 0)
        j++;
    if (j == g->n_probe)
        return;
    char *v = g->probe_list[j];
    if (j >= g->probe_idx) {
        memmove(g->probe_list + g->probe_idx + 1, g->probe_list + g->probe_idx,
                (j - g->probe_idx) * sizeof(*g->probe_list));
        g->probe_list[g->probe_idx] = v;
    } else {
        /* probed earlier in this round: again now, and the round's position steps back */
        memmove(g->probe_list + j, g->probe_list + j + 1,
                (g->probe_idx - 1 - j) * sizeof(*g->probe_list));
        g->probe_list[--g->probe_idx] = v;
    }
}

/* News of a suspicion or a death goes to gossip_nodes members at once (the gossip timer fires
 * on the loop's next turn and keeps its period from then): a detection's every hop would
 * otherwise wait half a gossip interval on average. It costs no extra bytes per broadcast, whose
 * transmissions are counted by the queue, only fewer broadcasts per packet. */
static void gossip_soon(struct gossip *g)
{
    if (!g->stopping)
        uv_timer_start(&g->gossip_timer, on_gossip_timer, 0, g->cfg.gossip_interval_ms);
}

void gossip__on_fx(void *ctx, const struct gossip_fx *fx)
{
    struct gossip *g = ctx;
    switch (fx->kind) {
    case GOSSIP_FX_BROADCAST: {
        struct base_buf b;
        base_buf_init(&b);
        gossip__msg_encode(&b, fx->msg);
        gossip__queue_push(&g->mq, fx->member->name, b.data, b.len);
        base_buf_free(&b);
        if (fx->msg->type == GOSSIP_SUSPECT || fx->msg->type == GOSSIP_DEAD)
            gossip_soon(g);
        if (fx->msg->type == GOSSIP_SUSPECT && !is_self(g, fx->member->name))
            probe_next(g, fx->member->name);
        if (fx->msg->type == GOSSIP_ALIVE && is_self(g, fx->member->name) && !g->setting_tags) {
            g->st.refutes++;
            gossip_soon(g); /* a refutation races the suspicion timeouts */
            LOG_DEBUG(MOD, "%s: refuting at incarnation %u", g->name, fx->msg->u.alive.incarnation);
        }
        break;
    }
    case GOSSIP_FX_JOIN:
        if (!is_self(g, fx->member->name))
            probe_list_add(g, fx->member->name);
        gossip__sm_join(g, fx->member);
        break;
    case GOSSIP_FX_UPDATE:
        gossip__sm_update(g, fx->member);
        break;
    case GOSSIP_FX_LEAVE:
        gossip__sm_leave(g, fx->member);
        break;
    }
}

/* ---- probes ------------------------------------------------------------------------------- */

/* The optional source fields of our pings and ping-reqs (about 45 bytes of a 65-byte ping):
 * memberlist answers the packet's sender without them, which is us when we are bound where we
 * advertise (or on a wildcard with the advertised port), so they are left out then. */
static void probe_source(struct gossip *g, struct gossip_bytes *addr, uint16_t *port,
                         const char **node)
{
    if (g->slim_probes) {
        *addr = (struct gossip_bytes){NULL, 0};
        *port = 0;
        *node = NULL;
        return;
    }
    self_addr_fields(g, addr, port, node);
}

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
    probe_source(g, &ping.u.ping.source_addr, &ping.u.ping.source_port, &ping.u.ping.source_node);
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
    gossip__send_parts(g, (const struct sockaddr *)&ss, NULL, parts, n, true);
    base_buf_free(&b1);
    base_buf_free(&b2);
    probe_timer_start(g, gossip__members_scale(&g->mt, g->cfg.probe_timeout_ms));
}

/* Up to k members chosen at random among those keep() accepts (memberlist's kRandomNodes, a
 * partial Fisher-Yates shuffle): their indexes in g->mt.v at (*out)[0..return value), *out
 * base_malloc'd for the caller to free. */
typedef bool (*member_keep_fn)(const struct gossip *g, const struct gossip_member *m,
                               const void *ctx);
static size_t random_members(struct gossip *g, size_t k, member_keep_fn keep, const void *ctx,
                             size_t **out)
{
    size_t *cand = base_malloc((g->mt.n + 1) * sizeof(*cand)), nc = 0;
    for (size_t i = 0; i < g->mt.n; i++)
        if (keep(g, g->mt.v[i], ctx))
            cand[nc++] = i;
    size_t chosen = k < nc ? k : nc;
    for (size_t i = 0; i < chosen; i++) {
        size_t j = i + rnd_below(g, nc - i);
        size_t x = cand[i];
        cand[i] = cand[j];
        cand[j] = x;
    }
    *out = cand;
    return chosen;
}

/* An alive member other than us and than ctx (a member to leave out, or NULL). */
static bool alive_other(const struct gossip *g, const struct gossip_member *m, const void *ctx)
{
    return !is_self(g, m->name) && m != ctx && m->state == GOSSIP_STATE_ALIVE;
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
    size_t *cand, nc = random_members(g, g->cfg.indirect_checks, alive_other, target, &cand);
    for (size_t k = 0; k < nc; k++) {
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
        probe_source(g, &ind.u.indirect.source_addr, &ind.u.indirect.source_port,
                     &ind.u.indirect.source_node);
        if (ind.u.indirect.nack)
            g->probe.expected_nacks++;
        send_msg(g, (const struct sockaddr *)&ss, peer, &ind, true);
    }
    base_free(cand);
    uint64_t now = now_ms(g), end = g->probe.start_ms + g->probe.interval_ms;
    gossip__probe_tcp(g, target, end > now ? end - now : 1);
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
        gossip__members_suspect(&g->mt, &s, now_ms(g), gossip__on_fx, g);
    }
    probe_end(g);
    gossip__rearm_susp(g);
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

void gossip__probe_ack(struct gossip *g)
{
    /* memberlist: any answered probe (direct, relayed or over TCP) improves our health */
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
    gossip__maybe_free(g);
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
    probe_source(g, &ping.u.ping.source_addr, &ping.u.ping.source_port, &ping.u.ping.source_node);
    /* broadcasts ride along only to a member we know at that address: a ping-req naming a
     * stranger (spoofed, say) gets it a bare ping, about the size of the request */
    const struct gossip_member *tm = gossip__members_find(&g->mt, ind->node);
    bool known = tm && tm->addr_len == ind->target.n &&
                 memcmp(tm->addr, ind->target.p, tm->addr_len) == 0 && tm->port == ind->port;
    send_msg(g, (const struct sockaddr *)&target, known ? tm : NULL, &ping, known);
    uv_timer_start(&r->timer, on_relay_timeout, g->cfg.probe_timeout_ms, 0);
}

static void handle_ack(struct gossip *g, uint32_t seq)
{
    if (g->probe.phase != PROBE_IDLE && seq == g->probe.seq) {
        gossip__probe_ack(g);
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

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr *b)
{
    struct sockaddr_storage bs;
    memset(&bs, 0, sizeof(bs));
    memcpy(&bs, b,
           b->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    if (!same_host(a, &bs))
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_port ==
               ((const struct sockaddr_in *)&bs)->sin_port;
    return ((const struct sockaddr_in6 *)a)->sin6_port ==
           ((const struct sockaddr_in6 *)&bs)->sin6_port;
}

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
    /* broadcasts ride on the ack only back to the sender itself: a ping naming another
     * address (spoofed, say) must not turn 60 bytes into a 1400-byte packet to a stranger */
    send_msg(g, (const struct sockaddr *)&back, NULL, &m, same_addr(&back, from));
}

int gossip__merge_check(struct gossip *g, const struct gossip_push_node *nodes, size_t n,
                        const char *what)
{
    if (!g->cfg.on_merge || n == 0)
        return 0;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_node *v = base_arena_alloc(&a, n * sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        const struct gossip_push_node *p = &nodes[i];
        struct gossip_node *o = &v[i];
        memset(o, 0, sizeof(*o));
        o->name = p->name;
        addr_text(p->addr.p, p->addr.n, o->addr);
        o->port = p->port;
        o->status = p->state == GOSSIP_STATE_LEFT   ? GOSSIP_MEMBER_LEFT
                    : p->state == GOSSIP_STATE_DEAD ? GOSSIP_MEMBER_FAILED
                                                    : GOSSIP_MEMBER_ALIVE;
        o->incarnation = p->incarnation;
        if (p->has_vsn)
            memcpy(o->vsn, p->vsn, sizeof(o->vsn));
        struct gossip_tag *tags = NULL;
        size_t nt = 0;
        if (p->meta.n && gossip__tags_decode(p->meta.p, p->meta.n, &a, &tags, &nt) == 0) {
            o->tags = tags;
            o->n_tags = nt;
        }
    }
    char why[256] = "";
    int rv = g->cfg.on_merge(g->cfg.ctx, v, n, why, sizeof(why));
    why[sizeof(why) - 1] = 0;
    if (rv != 0)
        LOG_WARN(MOD, "%s: refused the %s of %s%s: %s", g->name, what, v[0].name,
                 n == 1 ? "" : " and others", why[0] ? why : "refused by the merge hook");
    base_arena_close(&a);
    return rv != 0 ? BASE_EACL : 0;
}

/* memberlist's alive delegate (serf's, with a merge delegate): asked only about an alive that
 * would change our table, so the steady gossip of known alives costs nothing */
static bool alive_allowed(struct gossip *g, const struct gossip_alive *a)
{
    if (!g->cfg.on_merge || is_self(g, a->node))
        return true;
    const struct gossip_member *m = gossip__members_find(&g->mt, a->node);
    if (m && a->incarnation <= m->incarnation && m->addr_len == a->addr.n &&
        (!a->addr.n || memcmp(m->addr, a->addr.p, a->addr.n) == 0) && m->port == a->port)
        return true; /* stale or a repeat: the table ignores it anyway */
    struct gossip_push_node pn = {
        a->node, a->addr, a->port, a->meta, a->incarnation, GOSSIP_STATE_ALIVE, a->has_vsn, {0}};
    memcpy(pn.vsn, a->vsn, GOSSIP_VSN_LEN);
    return gossip__merge_check(g, &pn, 1, "alive") == 0;
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
        gossip__members_suspect(&g->mt, &m->u.suspect, now, gossip__on_fx, g);
        break;
    case GOSSIP_ALIVE:
        if (alive_allowed(g, &m->u.alive))
            gossip__members_alive(&g->mt, &m->u.alive, false, now, gossip__on_fx, g);
        break;
    case GOSSIP_DEAD:
        gossip__members_dead(&g->mt, &m->u.suspect, now, gossip__on_fx, g);
        break;
    case GOSSIP_USER:
        gossip__serf_handle(g, m->u.user.p, m->u.user.n, true);
        break;
    default:
        break;
    }
}

void gossip__warn_key(struct gossip *g, const struct sockaddr *from, const char *what)
{
    /* a wrong or missing key is a configuration error the operator must see (memberlist logs
     * every one at ERR); at most one line per UNDECRYPTABLE_WARN_MS, the rest counted in it */
    uint64_t now = now_ms(g);
    if (g->undecryptable_warned && now - g->undecryptable_last_ms < UNDECRYPTABLE_WARN_MS) {
        g->undecryptable_quiet++;
        return;
    }
    char host[64] = "?";
    int port = 0;
    if (from->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)from;
        uv_ip4_name(s, host, sizeof(host));
        port = ntohs(s->sin_port);
    } else if (from->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)from;
        uv_ip6_name(s, host, sizeof(host));
        port = ntohs(s->sin6_port);
    }
    LOG_WARN(MOD, "%s: %s from %s:%d (%" PRIu64 " more since the last warning)", g->name, what,
             host, port, g->undecryptable_quiet);
    g->undecryptable_warned = true;
    g->undecryptable_last_ms = now;
    g->undecryptable_quiet = 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    BASE_UNUSED(suggested);
    struct gossip *g = h->data;
    *buf = uv_buf_init((char *)g->rbuf, sizeof(g->rbuf));
}

/* One datagram in, from the socket or from gossip_net_deliver: decoded whole by the fuzzed
 * decoder (gossip__packet_decode), then each message handled in order. */
static void packet_in(struct gossip *g, const uint8_t *p, size_t n, const struct sockaddr *from)
{
    base_arena_reset(&g->arena);
    struct gossip_packet pkt;
    int rv = gossip__packet_decode(p, n, &g->keys, &g->arena, &pkt);
    if (rv != 0) {
        g->st.udp_bad++;
        if (rv == BASE_EACL)
            gossip__warn_key(g, from, "no installed key could decrypt a packet");
        else
            LOG_DEBUG(MOD, "%s: packet dropped: %s", g->name, base_strerror(rv));
        return;
    }
    for (size_t i = 0; i < pkt.n && !g->stopping; i++)
        handle_packet_msg(g, &pkt.msgs[i], from);
    gossip__rearm_susp(g);
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
    packet_in(g, (const uint8_t *)buf->base, (size_t)nread, from);
}

void gossip_net_deliver(struct gossip *g, const struct sockaddr *from, const uint8_t *p, size_t len)
{
    BASE_ASSERT_LOOP();
    if (len == 0 || !p || !from || g->stopping)
        return;
    g->st.udp_in++;
    g->st.udp_bytes_in += len;
    if (len > sizeof(g->rbuf)) { /* what the socket's buffer would have truncated */
        g->st.udp_bad++;
        return;
    }
    packet_in(g, p, len, from);
}

/* ---- suspicion, gossip, housekeeping timers ----------------------------------------------- */

static void on_susp_timer(uv_timer_t *t)
{
    struct gossip *g = t->data;
    gossip__members_tick(&g->mt, now_ms(g), gossip__on_fx, g);
    gossip__rearm_susp(g);
}

void gossip__rearm_susp(struct gossip *g)
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
    /* as memberlist: the dead a while longer (so they learn it and refute), never the left */
    return m->state == GOSSIP_STATE_DEAD && now - m->state_change_ms < g->cfg.gossip_to_the_dead_ms;
}

static bool gossip_target_now(const struct gossip *g, const struct gossip_member *m,
                              const void *now)
{
    return gossip_target(g, m, *(const uint64_t *)now);
}

static void on_gossip_timer(uv_timer_t *t)
{
    struct gossip *g = t->data;
    uint64_t now = now_ms(g);
    size_t *cand, nc = random_members(g, g->cfg.gossip_nodes, gossip_target_now, &now, &cand);
    for (size_t k = 0; k < nc; k++) {
        const struct gossip_member *m = g->mt.v[cand[k]];
        struct sockaddr_storage ss;
        if (member_sockaddr(m, &ss))
            gossip__send_parts(g, (const struct sockaddr *)&ss, m, NULL, 0, true);
    }
    base_free(cand);
}

int gossip__conn_dial(struct gossip *g, const struct sockaddr_storage *to, bool join,
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
    size_t *cand;
    if (random_members(g, 1, alive_other, NULL, &cand)) {
        struct sockaddr_storage ss;
        if (member_sockaddr(g->mt.v[cand[0]], &ss))
            (void)gossip__conn_dial(g, &ss, false, NULL);
    }
    base_free(cand);
    if (!g->stopping)
        uv_timer_start(&g->pp_timer, on_pp_timer,
                       push_pull_scale(g->cfg.push_pull_interval_ms, g->mt.n), 0);
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
            gossip__sm_remove(g, i);
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
                    (void)gossip__conn_dial(g, &ss, true, NULL);
                break;
            }
        }
    }
    for (size_t i = g->n_intents; i-- > 0;)
        if (now - g->intents[i].when_ms >= INTENT_TIMEOUT_MS)
            gossip__intent_drop(g, i);
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
        gossip__intent_drop(g, g->n_intents - 1);
    base_free(g->intents);
    for (size_t i = 0; i < RING; i++)
        gossip__ring_clear(g, &g->ring[i]);
    base_arena_close(&g->arena);
    base_free(g->name);
    base_free(g);
}

void gossip__maybe_free(struct gossip *g)
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
    gossip__maybe_free(g);
}

void gossip_stop(struct gossip *g, gossip_done_cb cb, void *ctx)
{
    if (g->stopping)
        return;
    g->stopping = true;
    g->stop_cb = cb;
    g->stop_ctx = ctx;
    while (!base_list_empty(&g->conns))
        gossip__conn_finish(BASE_CONTAINER_OF(base_list_first(&g->conns), struct conn, link),
                            BASE_ESHUTDOWN);
    gossip__queries_stop(g);
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
    static const uint8_t zero[16];
    if ((adv_sa.ss_family == AF_INET &&
         memcmp(&((struct sockaddr_in *)&adv_sa)->sin_addr, zero, 4) == 0) ||
        (adv_sa.ss_family == AF_INET6 &&
         memcmp(&((struct sockaddr_in6 *)&adv_sa)->sin6_addr, zero, 16) == 0)) {
        LOG_ERR(MOD, "a wildcard address cannot be advertised: set advertise_addr");
        return BASE_EINVAL;
    }
    struct gossip_keyring ring;
    if (gossip__keyring_from_config(cfg, &ring) != 0) {
        LOG_ERR(MOD, "bad keyring: keys must be base64 of 16, 24 or 32 bytes, at most %d",
                GOSSIP_KEYRING_MAX);
        return BASE_EINVAL;
    }
    struct gossip *g = base_calloc(1, sizeof(*g));
    g->loop = loop;
    g->cfg = *cfg;
    g->cfg.node_name = g->cfg.bind_addr = g->cfg.advertise_addr = NULL;
    g->bind_from = bind_sa;
    if (bind_sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&g->bind_from)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&g->bind_from)->sin6_port = 0;
    g->cfg.tags = NULL;
    g->cfg.n_tags = 0;
    g->cfg.key = NULL;
    g->cfg.keyring = NULL;
    g->cfg.n_keyring = 0;
    g->name = base_strdup(cfg->node_name);
    g->keys = ring;
    if (adv_sa.ss_family == AF_INET) {
        memcpy(g->addr, &((struct sockaddr_in *)&adv_sa)->sin_addr, 4);
        g->addr_len = 4;
    } else {
        memcpy(g->addr, &((struct sockaddr_in6 *)&adv_sa)->sin6_addr, 16);
        g->addr_len = 16;
    }
    g->port = adv_port;
    /* bound where we advertise, or on a wildcard with the advertised port: peers answer a
     * ping's sender, which is us (probe_source) */
    g->slim_probes = adv_port == cfg->bind_port && bind_sa.ss_family == adv_sa.ss_family &&
                     (same_host(&bind_sa, &adv_sa) ||
                      (bind_sa.ss_family == AF_INET &&
                       memcmp(&((struct sockaddr_in *)&bind_sa)->sin_addr, zero, 4) == 0) ||
                      (bind_sa.ss_family == AF_INET6 &&
                       memcmp(&((struct sockaddr_in6 *)&bind_sa)->sin6_addr, zero, 16) == 0));
    base_list_init(&g->relays);
    base_list_init(&g->conns);
    base_list_init(&g->queries);
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
    /* with a net.send hook the datagrams are the hook's and gossip_net_deliver's: no socket */
    bool udp = !cfg->net.send;
    if (rv == 0 && udp && (rv = uv_udp_bind(&g->udp, (const struct sockaddr *)&bind_sa, 0)) != 0)
        LOG_ERR(MOD, "udp bind %s:%u: %s", cfg->bind_addr, cfg->bind_port, base_strerror(rv));
    if (rv == 0 && (rv = uv_tcp_bind(&g->lst, (const struct sockaddr *)&bind_sa, 0)) != 0)
        LOG_ERR(MOD, "tcp bind %s:%u: %s", cfg->bind_addr, cfg->bind_port, base_strerror(rv));
    if (rv == 0 && (rv = uv_listen((uv_stream_t *)&g->lst, 128, gossip__on_connection)) != 0)
        LOG_ERR(MOD, "listen %s:%u: %s", cfg->bind_addr, cfg->bind_port, base_strerror(rv));
    if (rv == 0 && udp && (rv = uv_udp_recv_start(&g->udp, on_alloc, on_udp_recv)) != 0)
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
    gossip__on_fx(g, &fx);
    g->setting_tags = false;
    fx = (struct gossip_fx){GOSSIP_FX_JOIN, g->mt.v[0], NULL};
    gossip__on_fx(g, &fx);

    uv_timer_start(&g->probe_timer, on_probe_timer, cfg->probe_interval_ms, 0);
    uv_timer_start(&g->gossip_timer, on_gossip_timer, cfg->gossip_interval_ms,
                   cfg->gossip_interval_ms);
    /* memberlist's random stagger: pools started at once do not push-pull in step */
    if (cfg->push_pull_interval_ms)
        uv_timer_start(&g->pp_timer, on_pp_timer, 1 + rnd_below(g, cfg->push_pull_interval_ms), 0);
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
    /* memberlist's resolveAddr: a bare host means our own port */
    int rv = base_hostport_parse(addr, g->cfg.bind_port, host, sizeof(host), &port);
    if (rv == 0 && (port <= 0 || port > 65535))
        rv = BASE_EINVAL;
    if (rv == 0 && parse_ip(host, (uint16_t)port, &ss) != 0) {
        LOG_WARN(MOD, "%s: join %s: \"%s\" is not an IP address (host names are not resolved here)",
                 g->name, addr, host);
        gossip__join_op_done(op, false, BASE_EINVAL);
        return;
    }
    if (rv == 0)
        rv = gossip__conn_dial(g, &ss, true, op);
    if (rv != 0) {
        LOG_WARN(MOD, "%s: join %s: %s", g->name, addr, base_strerror(rv));
        gossip__join_op_done(op, false, rv);
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
        gossip__serf_broadcast_join(g, g->clock);
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
    gossip__join_op_done(op, false, 0);
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
        gossip__members_leave(&g->mt, now_ms(g), gossip__on_fx, g);
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
    gossip__serf_leave_intent(g, &m.u.join);
    gossip__serf_queue(g, &m);
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

int gossip_force_leave(struct gossip *g, const char *name, bool prune)
{
    BASE_ASSERT_LOOP();
    if (g->stopping)
        return BASE_ESHUTDOWN;
    if (is_self(g, name))
        return BASE_EINVAL;
    struct gossip_serf_msg m = {.type = GOSSIP_SERF_LEAVE};
    m.u.join = (struct gossip_serf_join){g->clock, name, prune};
    g->clock++;
    gossip__serf_leave_intent(g, &m.u.join);
    gossip__serf_queue(g, &m);
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
    gossip__serf_user_event(g, m.u.event.ltime, name, payload, len, coalesce);
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
    gossip__members_alive(&g->mt, &a, true, now_ms(g), gossip__on_fx, g);
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
        gossip__node_fill(g->sm[i], &a, &n);
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
