/* libFuzzer target over gossip/'s decoders of outside bytes (gossip/wire.c, lzw.c, crypt.c):
 * the input's first byte picks what reads the rest: 0 a UDP packet, 1 a packet with a key, 2 a
 * TCP stream, 3 a stream with a key (the key of tests/unit/gossip/serf_vectors.h), 4 a serf
 * message, 5 a node's tags, 6 a serf query's filter, 7 Consul's user-event envelope, 8 a
 * keyring query's payload answered by a member (gossip/keyring.c: the next byte picks the query
 * and whether the keyring is empty), 9 a member's answer to a keyring query, tallied.
 *
 * Besides the sanitizers' findings (reads past the input, leaks, integer overflows), every
 * decoded message must hold what the protocol will rely on, or the target aborts: counts
 * within the decoder's bounds, strings NUL-terminated, byte fields of their stated size, node
 * states known; and each decoded message must re-encode into bytes that decode to a message
 * encoding to the same bytes (encode . decode is a fixed point after one round).
 *
 * Build and run: make fuzz FUZZ_TARGETS=gossip_wire (FUZZ_SECONDS, default 600), seeded with
 * the serf captures of tests/unit/gossip/test_wire (HERALD_GOSSIP_SEEDS). */
#include "gossip/gossip.h"
#include "gossip/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "gossip_wire: invariant broken: %s\n", what);
        abort();
    }
}

static void check_str(const char *s)
{
    check(s != NULL, "string present");
    (void)strlen(s);
}

static void check_bytes(struct gossip_bytes b)
{
    check(b.n == 0 || b.p != NULL, "bytes present");
    if (b.n) {
        volatile uint8_t x = b.p[0]; /* readable (ASan) */
        x = b.p[b.n - 1];
        (void)x;
    }
}

static void check_serf(const uint8_t *p, size_t n, struct base_arena *a)
{
    struct gossip_serf_msg s;
    if (gossip__serf_decode(p, n, a, &s) != 0)
        return;
    switch (s.type) {
    case GOSSIP_SERF_LEAVE:
    case GOSSIP_SERF_JOIN:
        check_str(s.u.join.node);
        break;
    case GOSSIP_SERF_PUSH_PULL:
        for (size_t i = 0; i < s.u.push_pull.n_status; i++)
            check_str(s.u.push_pull.status[i].node);
        for (size_t i = 0; i < s.u.push_pull.n_left; i++)
            check_str(s.u.push_pull.left[i]);
        for (size_t i = 0; i < s.u.push_pull.n_events; i++)
            for (size_t j = 0; j < s.u.push_pull.events[i].n; j++)
                check_str(s.u.push_pull.events[i].events[j].name);
        break;
    case GOSSIP_SERF_USER_EVENT:
        check_str(s.u.event.name);
        check_bytes(s.u.event.payload);
        break;
    case GOSSIP_SERF_QUERY:
        check_str(s.u.query.name);
        check_str(s.u.query.source_node);
        for (size_t i = 0; i < s.u.query.n_filters; i++)
            check(s.u.query.filters[i].n > 0, "filter has its type");
        break;
    case GOSSIP_SERF_RELAY:
        check(s.u.relay.msg.n > 0, "relay carries a message");
        break;
    default:
        break;
    }
    if (s.type == GOSSIP_SERF_CONFLICT_RESPONSE)
        return;
    /* a fixed point after one round */
    struct base_buf b1, b2;
    base_buf_init(&b1);
    base_buf_init(&b2);
    gossip__serf_encode(&b1, &s);
    struct gossip_serf_msg s2;
    check(gossip__serf_decode(b1.data, b1.len, a, &s2) == 0, "serf re-encoding decodes");
    gossip__serf_encode(&b2, &s2);
    check(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0, "serf fixed point");
    base_buf_free(&b1);
    base_buf_free(&b2);
}

static void check_tags(const uint8_t *p, size_t n, struct base_arena *a)
{
    struct gossip_tag *t;
    size_t k;
    if (gossip__tags_decode(p, n, a, &t, &k) != 0)
        return;
    for (size_t i = 0; i < k; i++) {
        check_str(t[i].key);
        check_str(t[i].value);
    }
}

static void check_msg(const struct gossip_msg *m, struct base_arena *a, bool from_stream)
{
    switch (m->type) {
    case GOSSIP_PING:
        check_str(m->u.ping.node);
        check_str(m->u.ping.source_node);
        break;
    case GOSSIP_INDIRECT_PING:
        check_str(m->u.indirect.node);
        check_bytes(m->u.indirect.target);
        break;
    case GOSSIP_ACK:
        check_bytes(m->u.ack.payload);
        break;
    case GOSSIP_SUSPECT:
    case GOSSIP_DEAD:
        check_str(m->u.suspect.node);
        check_str(m->u.suspect.from);
        break;
    case GOSSIP_ALIVE:
        check_str(m->u.alive.node);
        check_tags(m->u.alive.meta.p, m->u.alive.meta.n, a);
        break;
    case GOSSIP_USER:
        check_bytes(m->u.user);
        check_serf(m->u.user.p, m->u.user.n, a);
        break;
    case GOSSIP_ERR:
        check(from_stream, "err only on streams");
        check_str(m->u.err.error);
        break;
    case GOSSIP_PUSH_PULL:
        check(from_stream, "push-pull only on streams");
        check(m->u.push_pull.n_nodes <= GOSSIP_WIRE_NODES_MAX, "node count");
        for (size_t i = 0; i < m->u.push_pull.n_nodes; i++) {
            check_str(m->u.push_pull.nodes[i].name);
            check(m->u.push_pull.nodes[i].state <= GOSSIP_STATE_LEFT, "node state");
            check_tags(m->u.push_pull.nodes[i].meta.p, m->u.push_pull.nodes[i].meta.n, a);
        }
        check_serf(m->u.push_pull.user_state.p, m->u.push_pull.user_state.n, a);
        break;
    case GOSSIP_NACK:
        break;
    default:
        check(false, "known message type");
    }
    /* a fixed point after one round (streams: push-pull, user, ping, ack, err) */
    struct base_buf b1, b2;
    base_buf_init(&b1);
    base_buf_init(&b2);
    if (from_stream && m->type == GOSSIP_USER)
        gossip__user_stream_encode(&b1, m->u.user.p, m->u.user.n);
    else
        gossip__msg_encode(&b1, m);
    struct gossip_msg m2;
    if (from_stream) {
        bool enc;
        size_t used;
        check(gossip__stream_decode(b1.data, b1.len, GOSSIP_WIRE_STREAM_MAX, NULL, a, &m2, &enc,
                                    &used) == 0,
              "stream re-encoding decodes");
        check(used == b1.len, "stream re-encoding consumed whole");
        if (m2.type == GOSSIP_USER)
            gossip__user_stream_encode(&b2, m2.u.user.p, m2.u.user.n);
        else
            gossip__msg_encode(&b2, &m2);
    } else {
        struct gossip_packet pk;
        check(gossip__packet_decode(b1.data, b1.len, NULL, a, &pk) == 0 && pk.n == 1,
              "packet re-encoding decodes");
        gossip__msg_encode(&b2, &pk.msgs[0]);
    }
    check(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0, "fixed point");
    base_buf_free(&b1);
    base_buf_free(&b2);
}

static void check_consul_event(const uint8_t *p, size_t n, struct base_arena *a)
{
    struct gossip_consul_event ev;
    if (gossip_consul_event_decode(p, n, a, &ev) != 0)
        return;
    check_str(ev.id);
    check_str(ev.name);
    check_str(ev.node_filter);
    check_str(ev.service_filter);
    check_str(ev.tag_filter);
    check_bytes((struct gossip_bytes){ev.payload, ev.payload_len});
    struct base_buf b1, b2;
    base_buf_init(&b1);
    base_buf_init(&b2);
    gossip_consul_event_encode(&ev, &b1);
    struct gossip_consul_event again;
    check(gossip_consul_event_decode(b1.data, b1.len, a, &again) == 0, "envelope re-decodes");
    gossip_consul_event_encode(&again, &b2);
    check(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0, "envelope fixed point");
    base_buf_free(&b1);
    base_buf_free(&b2);
}

/* A member answers a keyring query: its keyring stays well-formed and its answer is a key
 * response that decodes back. */
static void check_keyring_answer(const uint8_t *p, size_t n, const struct gossip_keyring *start,
                                 struct base_arena *a)
{
    if (n < 1)
        return;
    struct gossip_keyring ring = *start;
    if (p[0] & 4)
        ring.n = 0;
    enum gossip_keyring_op op = (enum gossip_keyring_op)(p[0] % 4);
    struct gossip_serf_key_response resp;
    bool changed = gossip__keyring_answer(&ring, op, p + 1, n - 1, a, &resp);
    check(ring.n <= GOSSIP_KEYRING_MAX, "keyring size");
    check(!changed || resp.result, "a change is a success");
    check(!changed || ring.n > 0, "a changed keyring has a primary");
    for (size_t i = 0; i < ring.n; i++)
        check(ring.keys[i].len == 16 || ring.keys[i].len == 24 || ring.keys[i].len == 32,
              "key sizes");
    check_str(resp.message);
    check_str(resp.primary_key);
    check(resp.result || resp.message[0], "a failure says why");
    struct base_buf b;
    base_buf_init(&b);
    struct gossip_serf_msg m = {.type = GOSSIP_SERF_KEY_RESPONSE};
    m.u.key_response = resp;
    gossip__serf_encode(&b, &m);
    struct gossip_key_tally t;
    gossip__key_tally_init(&t);
    check(gossip__key_tally_add(&t, "n", b.data, b.len, 1), "our answer counted");
    check(t.num_err == (resp.result ? 0u : 1u), "our answer tallied as it was");
    gossip__key_tally_close(&t);
    base_buf_free(&b);
}

/* The asker tallies outside answers: counts stay within their bounds. */
static void check_key_tally(const uint8_t *p, size_t n, struct base_arena *a)
{
    struct gossip_key_tally t;
    gossip__key_tally_init(&t);
    check(gossip__key_tally_add(&t, "n1", p, n, 2), "first answer counted");
    check(!gossip__key_tally_add(&t, "n1", p, n, 2), "a duplicate is not");
    check(t.num_resp == 1 && t.num_err <= 1 && t.n_msgs <= 1, "one answer");
    check(t.n_keys <= 64 && t.n_primary <= 1, "key counts");
    struct gossip_keyring_result r;
    gossip__key_tally_result(&t, 1, a, &r);
    check((r.status == 0) == (r.num_err == 0), "status");
    for (size_t i = 0; i < r.n_messages; i++) {
        check_str(r.messages[i].message);
        check(strlen(r.messages[i].message) <= 256, "messages bounded");
    }
    gossip__key_tally_close(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const uint8_t key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    struct gossip_keyring ring;
    memset(&ring, 0, sizeof(ring));
    ring.n = 1;
    ring.keys[0].len = 16;
    memcpy(ring.keys[0].key, key, 16);
    uint8_t mode = data[0] % 10;
    size_t n = size - 1;
    /* the rest in a buffer of its exact size: ASan sees any read past it */
    uint8_t *p = malloc(n ? n : 1);
    if (n)
        memcpy(p, data + 1, n);
    struct base_arena a;
    base_arena_init(&a);
    switch (mode) {
    case 0:
    case 1: {
        struct gossip_packet pk;
        if (gossip__packet_decode(p, n, mode == 1 ? &ring : NULL, &a, &pk) == 0) {
            check(pk.n <= GOSSIP_WIRE_MSGS_MAX, "message count");
            for (size_t i = 0; i < pk.n; i++)
                check_msg(&pk.msgs[i], &a, false);
        }
        break;
    }
    case 2:
    case 3: {
        struct gossip_msg m;
        bool enc;
        size_t used;
        if (gossip__stream_decode(p, n, 1 << 20, mode == 3 ? &ring : NULL, &a, &m, &enc, &used) ==
            0) {
            check(used <= n, "used within the input");
            check_msg(&m, &a, true);
        }
        break;
    }
    case 4:
        check_serf(p, n, &a);
        break;
    case 5:
        check_tags(p, n, &a);
        break;
    case 7:
        check_consul_event(p, n, &a);
        break;
    case 8:
        check_keyring_answer(p, n, &ring, &a);
        break;
    case 9:
        check_key_tally(p, n, &a);
        break;
    default: {
        struct gossip_serf_filter f;
        if (gossip__serf_filter_decode(p, n, &a, &f) == 0) {
            check(f.type <= GOSSIP_SERF_FILTER_TAG, "filter type");
            for (size_t i = 0; i < f.n_nodes; i++)
                check_str(f.nodes[i]);
            if (f.type == GOSSIP_SERF_FILTER_TAG) {
                check_str(f.tag);
                check_str(f.expr);
            }
        }
        break;
    }
    }
    base_arena_close(&a);
    free(p);
    return 0;
}
