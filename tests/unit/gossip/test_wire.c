/* Tests gossip/wire.c (with lzw.c and crypt.c beneath it): what a real serf agent sent
 * (serf_vectors.h, captured by capture_serf.py) decodes into the fields serf meant, and our
 * encoder rebuilds those messages byte for byte; every memberlist and serf message round-trips;
 * compound, CRC, LZW and AES-GCM wrappers nest as memberlist nests them; and malformed input
 * (every truncation and every byte flip of every vector, lying lengths and counts, deep nesting,
 * overflowing integers, decompression bombs, wrong keys) is refused without reading past the
 * input (each input is copied to a buffer of its exact size, so ASan sees an over-read).
 *
 * HERALD_GOSSIP_EMIT=DIR writes our encodings for the serf interoperability test instead
 * (emit_for_serf). HERALD_GOSSIP_SEEDS=DIR also writes the fuzzer's seed corpus (make fuzz
 * FUZZ_TARGETS= gossip_wire): every vector after a mode byte, as tests/fuzz/gossip_wire.c reads
 * them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/gossip.h"
#include "gossip/wire.h"
#include "gossip/serf_vectors.h"

#define VEC(x) x, sizeof(x)

static const uint8_t key16[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static struct gossip_keyring ring_of(const uint8_t *k, size_t n)
{
    struct gossip_keyring r;
    memset(&r, 0, sizeof(r));
    r.n = 1;
    r.keys[0].len = n;
    memcpy(r.keys[0].key, k, n);
    return r;
}

/* The decoders on an exact-size copy of the input. */
static int packet(const uint8_t *in, size_t n, const struct gossip_keyring *k, struct base_arena *a,
                  struct gossip_packet *out)
{
    uint8_t *p = malloc(n ? n : 1);
    if (n)
        memcpy(p, in, n);
    int rv = gossip__packet_decode(p, n, k, a, out);
    free(p);
    return rv;
}

static int stream(const uint8_t *in, size_t n, const struct gossip_keyring *k, struct base_arena *a,
                  struct gossip_msg *out, size_t *used)
{
    uint8_t *p = malloc(n ? n : 1);
    if (n)
        memcpy(p, in, n);
    bool enc;
    int rv = gossip__stream_decode(p, n, GOSSIP_WIRE_STREAM_MAX, k, a, out, &enc, used);
    free(p);
    return rv;
}

static int serf(const uint8_t *in, size_t n, struct base_arena *a, struct gossip_serf_msg *out)
{
    uint8_t *p = malloc(n ? n : 1);
    if (n)
        memcpy(p, in, n);
    int rv = gossip__serf_decode(p, n, a, out);
    free(p);
    return rv;
}

static const char *tag(const struct gossip_tag *t, size_t n, const char *k)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].key, k) == 0)
            return t[i].value;
    return NULL;
}

static const uint8_t serf_ip[4] = {127, 0, 0, 201};
static const uint8_t fake_ip[4] = {127, 0, 0, 202};
static const uint8_t serf_vsn[6] = {1, 5, 2, 2, 5, 5};

static void check_serf1_node(const struct gossip_push_node *nd, struct base_arena *a)
{
    assert_string_equal(nd->name, "serf1");
    assert_int_equal(nd->addr.n, 4);
    assert_memory_equal(nd->addr.p, serf_ip, 4);
    assert_int_equal(nd->port, 17946);
    assert_int_equal(nd->incarnation, 1);
    assert_int_equal(nd->state, GOSSIP_STATE_ALIVE);
    assert_true(nd->has_vsn);
    assert_memory_equal(nd->vsn, serf_vsn, 6);
    struct gossip_tag *tags;
    size_t nt;
    assert_int_equal(gossip__tags_decode(nd->meta.p, nd->meta.n, a, &tags, &nt), 0);
    assert_int_equal(nt, 2);
    assert_string_equal(tag(tags, nt, "role"), "web");
    assert_string_equal(tag(tags, nt, "dc"), "dc1");
}

static void check_serf_push_pull(const struct gossip_push_pull *pp, struct base_arena *a)
{
    assert_true(pp->join);
    assert_int_equal(pp->n_nodes, 1);
    check_serf1_node(&pp->nodes[0], a);
    assert_int_equal(pp->user_state.n, 589);
    struct gossip_serf_msg s;
    assert_int_equal(serf(pp->user_state.p, pp->user_state.n, a, &s), 0);
    assert_int_equal(s.type, GOSSIP_SERF_PUSH_PULL);
    assert_int_equal(s.u.push_pull.ltime, 1);
    assert_int_equal(s.u.push_pull.event_ltime, 1);
    assert_int_equal(s.u.push_pull.query_ltime, 1);
    assert_int_equal(s.u.push_pull.n_left, 0);
    assert_int_equal(s.u.push_pull.n_events, 0); /* 512 nil slots */
    assert_int_equal(s.u.push_pull.n_status, 1);
    assert_string_equal(s.u.push_pull.status[0].node, "serf1");
    assert_int_equal(s.u.push_pull.status[0].ltime, 0);
}

/* serf's join push-pull: compressed, decoded whole; every prefix asks for more. */
static void test_serf_push_pull_stream(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_msg m;
    size_t used;
    assert_int_equal(stream(VEC(serf_push_pull_stream), NULL, &a, &m, &used), 0);
    assert_int_equal(used, sizeof(serf_push_pull_stream));
    assert_int_equal(m.type, GOSSIP_PUSH_PULL);
    check_serf_push_pull(&m.u.push_pull, &a);
    for (size_t n = 0; n < sizeof(serf_push_pull_stream); n++) {
        base_arena_reset(&a);
        assert_int_equal(stream(serf_push_pull_stream, n, NULL, &a, &m, &used), -EAGAIN);
    }
    /* a second message behind it is left for the next call */
    uint8_t two[2 * sizeof(serf_push_pull_stream)];
    memcpy(two, VEC(serf_push_pull_stream));
    memcpy(two + sizeof(serf_push_pull_stream), VEC(serf_push_pull_stream));
    assert_int_equal(stream(VEC(two), NULL, &a, &m, &used), 0);
    assert_int_equal(used, sizeof(serf_push_pull_stream));
    base_arena_close(&a);
}

/* The same push-pull from a run with -encrypt: opens with the key, with no other. */
static void test_serf_encrypted_stream(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_msg m;
    size_t used;
    struct gossip_keyring k = ring_of(key16, 16);
    assert_int_equal(stream(VEC(serf_encrypted_stream), &k, &a, &m, &used), 0);
    assert_int_equal(used, sizeof(serf_encrypted_stream));
    assert_int_equal(m.type, GOSSIP_PUSH_PULL);
    check_serf_push_pull(&m.u.push_pull, &a);

    /* a keyring whose second key is the right one */
    struct gossip_keyring two;
    memset(&two, 0, sizeof(two));
    two.n = 2;
    two.keys[0].len = 32;
    two.keys[1].len = 16;
    memcpy(two.keys[1].key, key16, 16);
    assert_int_equal(stream(VEC(serf_encrypted_stream), &two, &a, &m, &used), 0);

    assert_int_equal(stream(VEC(serf_encrypted_stream), NULL, &a, &m, &used), BASE_EACL);
    uint8_t wrong[16] = {1};
    struct gossip_keyring w = ring_of(wrong, 16);
    assert_int_equal(stream(VEC(serf_encrypted_stream), &w, &a, &m, &used), BASE_EACL);
    uint8_t bad[sizeof(serf_encrypted_stream)];
    for (size_t i = 0; i < sizeof(bad); i++) {
        memcpy(bad, VEC(serf_encrypted_stream));
        bad[i] ^= 0x20;
        base_arena_reset(&a);
        int rv = stream(VEC(bad), &k, &a, &m, &used);
        /* the header's length, the version, the nonce, the text, the tag: all refused */
        assert_true(rv == BASE_EACL || rv == BASE_EPARSE || rv == -EAGAIN || rv == BASE_ETOOBIG);
    }
    for (size_t n = 0; n < sizeof(serf_encrypted_stream); n++)
        assert_int_equal(stream(serf_encrypted_stream, n, &k, &a, &m, &used), -EAGAIN);
    base_arena_close(&a);
}

/* What the capture script answered, and serf accepted, is what our encoder writes. */
static void test_fake_push_pull_encodes_as_sent(void **state)
{
    (void)state;
    struct base_buf meta, us, out;
    base_buf_init(&meta);
    base_buf_init(&us);
    base_buf_init(&out);
    struct gossip_tag t = {"role", "db"};
    gossip__tags_encode(&meta, &t, 1);
    struct gossip_serf_status st = {"fake1", 1};
    struct gossip_serf_msg s = {.type = GOSSIP_SERF_PUSH_PULL};
    s.u.push_pull = (struct gossip_serf_push_pull){
        .ltime = 1, .n_status = 1, .status = &st, .event_ltime = 1, .query_ltime = 1};
    gossip__serf_encode(&us, &s);
    struct gossip_push_node nd = {.name = "fake1",
                                  .addr = {fake_ip, 4},
                                  .port = 17946,
                                  .meta = {meta.data, meta.len},
                                  .incarnation = 1,
                                  .state = GOSSIP_STATE_ALIVE,
                                  .has_vsn = true,
                                  .vsn = {1, 5, 2, 2, 5, 4}};
    struct gossip_msg m = {.type = GOSSIP_PUSH_PULL};
    m.u.push_pull = (struct gossip_push_pull){true, 1, &nd, {us.data, us.len}};
    gossip__msg_encode(&out, &m);
    assert_int_equal(out.len, sizeof(fake_push_pull_stream));
    assert_memory_equal(out.data, fake_push_pull_stream, out.len);
    base_buf_free(&meta);
    base_buf_free(&us);
    base_buf_free(&out);
}

/* serf's first gossip: CRC around a compressed compound of two alives and its join intent. */
static void test_serf_join_packet(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_packet pk;
    assert_int_equal(packet(VEC(serf_join_packet), NULL, &a, &pk), 0);
    assert_true(pk.crc);
    assert_true(pk.compressed);
    assert_int_equal(pk.n, 3);
    assert_int_equal(pk.truncated, 0);
    assert_int_equal(pk.msgs[0].type, GOSSIP_ALIVE);
    const struct gossip_alive *al = &pk.msgs[0].u.alive;
    assert_string_equal(al->node, "serf1");
    assert_memory_equal(al->addr.p, serf_ip, 4);
    assert_int_equal(al->port, 17946);
    assert_int_equal(al->incarnation, 1);
    assert_true(al->has_vsn);
    assert_memory_equal(al->vsn, serf_vsn, 6);
    assert_int_equal(pk.msgs[1].type, GOSSIP_ALIVE);
    assert_string_equal(pk.msgs[1].u.alive.node, "fake1");
    assert_int_equal(pk.msgs[2].type, GOSSIP_USER);
    struct gossip_serf_msg s;
    assert_int_equal(serf(pk.msgs[2].u.user.p, pk.msgs[2].u.user.n, &a, &s), 0);
    assert_int_equal(s.type, GOSSIP_SERF_JOIN);
    assert_int_equal(s.u.join.ltime, 2);
    assert_string_equal(s.u.join.node, "serf1");

    /* our encoder writes each part as serf did */
    struct base_buf b;
    base_buf_init(&b);
    gossip__msg_encode(&b, &pk.msgs[0]);
    struct gossip_packet inner;
    assert_int_equal(packet(b.data, b.len, NULL, &a, &inner), 0);
    assert_int_equal(inner.n, 1);
    assert_string_equal(inner.msgs[0].u.alive.node, "serf1");
    base_buf_free(&b);

    /* a CRC that does not match is refused */
    uint8_t bad[sizeof(serf_join_packet)];
    memcpy(bad, VEC(serf_join_packet));
    bad[2] ^= 1;
    assert_int_equal(packet(VEC(bad), NULL, &a, &pk), BASE_EPARSE);
    base_arena_close(&a);
}

/* A probe: serf's ping re-encodes byte for byte (omitempty source fields present). */
static void test_serf_ping_packet(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_packet pk;
    assert_int_equal(packet(VEC(serf_ping_packet), NULL, &a, &pk), 0);
    assert_false(pk.crc);
    assert_int_equal(pk.n, 1);
    assert_int_equal(pk.msgs[0].type, GOSSIP_PING);
    const struct gossip_ping *p = &pk.msgs[0].u.ping;
    assert_string_equal(p->node, "fake1");
    assert_string_equal(p->source_node, "serf1");
    assert_int_equal(p->source_port, 17946);
    assert_memory_equal(p->source_addr.p, serf_ip, 4);
    struct base_buf b;
    base_buf_init(&b);
    gossip__msg_encode(&b, &pk.msgs[0]);
    assert_int_equal(b.len, sizeof(serf_ping_packet));
    assert_memory_equal(b.data, serf_ping_packet, b.len);

    /* the ack we sent back (capture_serf.py), and serf took: CRC, {Payload: nil, SeqNo} */
    b.len = 0;
    struct gossip_msg ack = {.type = GOSSIP_ACK};
    ack.u.ack.seq = p->seq;
    gossip__msg_encode(&b, &ack);
    static const uint8_t want_ack[] = {0x02, 0x82, 0xa7, 'P', 'a', 'y', 'l', 'o', 'a',
                                       'd',  0xc0, 0xa5, 'S', 'e', 'q', 'N', 'o', 0x02};
    assert_int_equal(b.len, sizeof(want_ack));
    assert_memory_equal(b.data, want_ack, b.len);

    /* the compressed compound that carried a later ping with the gossip */
    assert_int_equal(packet(VEC(serf_ping_compound_packet), NULL, &a, &pk), 0);
    assert_true(pk.compressed);
    assert_int_equal(pk.n, 4);
    assert_int_equal(pk.msgs[0].type, GOSSIP_PING);
    assert_string_equal(pk.msgs[0].u.ping.node, "fake1");
    base_buf_free(&b);
    base_arena_close(&a);
}

/* serf's event, query, leave intent and dead: each decodes, and each re-encodes (with its CRC)
 * into the very packet serf sent. */
static void test_serf_broadcasts_roundtrip(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    struct {
        const uint8_t *p;
        size_t n;
    } v[] = {{VEC(serf_event_packet)},
             {VEC(serf_query_packet)},
             {VEC(serf_leave_packet)},
             {VEC(serf_dead_packet)}};
    struct base_buf inner, out;
    base_buf_init(&inner);
    base_buf_init(&out);
    for (size_t i = 0; i < BASE_ARRAY_LEN(v); i++) {
        struct gossip_packet pk;
        assert_int_equal(packet(v[i].p, v[i].n, NULL, &a, &pk), 0);
        assert_true(pk.crc);
        assert_int_equal(pk.n, 1);
        inner.len = out.len = 0;
        if (pk.msgs[0].type == GOSSIP_USER) {
            struct gossip_serf_msg s;
            assert_int_equal(serf(pk.msgs[0].u.user.p, pk.msgs[0].u.user.n, &a, &s), 0);
            switch (i) {
            case 0:
                assert_int_equal(s.type, GOSSIP_SERF_USER_EVENT);
                assert_string_equal(s.u.event.name, "deploy");
                assert_int_equal(s.u.event.payload.n, 2);
                assert_memory_equal(s.u.event.payload.p, "v1", 2);
                assert_true(s.u.event.cc);
                assert_int_equal(s.u.event.ltime, 1);
                break;
            case 1:
                assert_int_equal(s.type, GOSSIP_SERF_QUERY);
                assert_string_equal(s.u.query.name, "uptime");
                assert_string_equal(s.u.query.source_node, "serf1");
                assert_int_equal(s.u.query.port, 17946);
                assert_memory_equal(s.u.query.addr.p, serf_ip, 4);
                assert_int_equal(s.u.query.flags, GOSSIP_SERF_QUERY_ACK);
                assert_int_equal(s.u.query.n_filters, 0);
                assert_int_equal(s.u.query.timeout_ns, 1000000000);
                assert_int_equal(s.u.query.payload.n, 1);
                break;
            case 2:
                assert_int_equal(s.type, GOSSIP_SERF_LEAVE);
                assert_string_equal(s.u.join.node, "serf1");
                assert_int_equal(s.u.join.ltime, 3);
                assert_false(s.u.join.prune);
                break;
            }
            base_buf_put_u8(&inner, GOSSIP_USER);
            gossip__serf_encode(&inner, &s);
        } else {
            assert_int_equal(pk.msgs[0].type, GOSSIP_DEAD);
            /* a dead from the node itself: a graceful leave */
            assert_string_equal(pk.msgs[0].u.suspect.node, "serf1");
            assert_string_equal(pk.msgs[0].u.suspect.from, "serf1");
            gossip__msg_encode(&inner, &pk.msgs[0]);
        }
        gossip__crc_encode(&out, inner.data, inner.len);
        assert_int_equal(out.len, v[i].n);
        assert_memory_equal(out.data, v[i].p, v[i].n);
    }
    base_buf_free(&inner);
    base_buf_free(&out);
    base_arena_close(&a);
}

/* Every memberlist message survives encode, compound, compress, CRC and encryption. */
static void test_all_messages_roundtrip(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    static const uint8_t v6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    struct gossip_msg ms[8];
    memset(ms, 0, sizeof(ms));
    ms[0].type = GOSSIP_PING;
    ms[0].u.ping = (struct gossip_ping){4000000000u, "n2", {NULL, 0}, 0, ""};
    ms[1].type = GOSSIP_INDIRECT_PING;
    ms[1].u.indirect =
        (struct gossip_indirect_ping){7, {v6, 16}, 8301, "n3", true, {fake_ip, 4}, 8301, "n1"};
    ms[2].type = GOSSIP_ACK;
    ms[2].u.ack = (struct gossip_ack){7, {(const uint8_t *)"\x01xyz", 4}};
    ms[3].type = GOSSIP_NACK;
    ms[3].u.nack.seq = 70000;
    ms[4].type = GOSSIP_SUSPECT;
    ms[4].u.suspect = (struct gossip_suspect){3, "n3", "n1"};
    ms[5].type = GOSSIP_ALIVE;
    ms[5].u.alive = (struct gossip_alive){
        UINT32_MAX, "n1", {fake_ip, 4}, 8301, {(const uint8_t *)"m", 1}, true, {1, 5, 2, 2, 5, 4}};
    ms[6].type = GOSSIP_DEAD;
    ms[6].u.suspect = (struct gossip_suspect){9, "n4", "n1"};
    ms[7].type = GOSSIP_USER;
    ms[7].u.user = (struct gossip_bytes){(const uint8_t *)"\x01\x80", 2};

    struct base_buf parts[8], comp, crc, zip, enc;
    struct gossip_bytes slices[8];
    for (size_t i = 0; i < 8; i++) {
        base_buf_init(&parts[i]);
        gossip__msg_encode(&parts[i], &ms[i]);
        slices[i] = (struct gossip_bytes){parts[i].data, parts[i].len};
    }
    base_buf_init(&comp);
    base_buf_init(&crc);
    base_buf_init(&zip);
    base_buf_init(&enc);
    gossip__compound_encode(&comp, slices, 8);
    gossip__compress_encode(&zip, comp.data, comp.len);
    gossip__crc_encode(&crc, zip.data, zip.len);
    static const uint8_t nonce[12] = {9, 9, 9};
    uint8_t key32[32];
    for (int i = 0; i < 32; i++)
        key32[i] = (uint8_t)(i * 7);
    size_t klens[3] = {16, 24, 32};
    for (int vsn = 0; vsn <= 1; vsn++) {
        for (size_t kl = 0; kl < 3; kl++) {
            enc.len = 0;
            gossip__encrypt(&enc, (uint8_t)vsn, key32, klens[kl], nonce, crc.data, crc.len, NULL,
                            0);
            struct gossip_keyring k = ring_of(key32, klens[kl]);
            struct gossip_packet pk;
            base_arena_reset(&a);
            assert_int_equal(packet(enc.data, enc.len, &k, &a, &pk), 0);
            assert_true(pk.encrypted && pk.crc && pk.compressed);
            assert_int_equal(pk.n, 8);
            for (size_t i = 0; i < 8; i++) {
                struct base_buf again;
                base_buf_init(&again);
                gossip__msg_encode(&again, &pk.msgs[i]);
                assert_int_equal(again.len, parts[i].len);
                assert_memory_equal(again.data, parts[i].data, again.len);
                base_buf_free(&again);
            }
            /* the packet read without the key is not these messages */
            struct gossip_packet plain;
            int rv = packet(enc.data, enc.len, NULL, &a, &plain);
            assert_true(rv != 0 || plain.n != 8);
        }
    }
    const struct gossip_indirect_ping *ind = &ms[1].u.indirect;
    struct gossip_packet pk;
    assert_int_equal(packet(parts[1].data, parts[1].len, NULL, &a, &pk), 0);
    assert_int_equal(pk.msgs[0].u.indirect.target.n, 16);
    assert_true(pk.msgs[0].u.indirect.nack == ind->nack);
    assert_string_equal(pk.msgs[0].u.indirect.source_node, "n1");

    /* streams: a user message, a ping, an ack, an error, each plain, compressed, encrypted */
    struct base_buf s;
    base_buf_init(&s);
    gossip__user_stream_encode(&s, (const uint8_t *)"\x03hello", 6);
    struct gossip_msg m;
    size_t used;
    assert_int_equal(stream(s.data, s.len, NULL, &a, &m, &used), 0);
    assert_int_equal(m.type, GOSSIP_USER);
    assert_int_equal(m.u.user.n, 6);
    assert_int_equal(used, s.len);
    zip.len = enc.len = 0;
    gossip__compress_encode(&zip, s.data, s.len);
    gossip__encrypt_stream(&enc, key16, 16, nonce, zip.data, zip.len);
    struct gossip_keyring k = ring_of(key16, 16);
    bool was;
    assert_int_equal(gossip__stream_decode(enc.data, enc.len, 1 << 20, &k, &a, &m, &was, &used), 0);
    assert_true(was);
    assert_int_equal(m.type, GOSSIP_USER);
    assert_memory_equal(m.u.user.p, "\x03hello", 6);
    struct gossip_msg e = {.type = GOSSIP_ERR};
    e.u.err.error = "Remote state is encrypted and encryption is not configured";
    s.len = 0;
    gossip__msg_encode(&s, &e);
    assert_int_equal(stream(s.data, s.len, NULL, &a, &m, &used), 0);
    assert_string_equal(m.u.err.error, e.u.err.error);

    for (size_t i = 0; i < 8; i++)
        base_buf_free(&parts[i]);
    base_buf_free(&comp);
    base_buf_free(&crc);
    base_buf_free(&zip);
    base_buf_free(&enc);
    base_buf_free(&s);
    base_arena_close(&a);
}

/* Fields of the wrong type or range, and lying wrappers. */
static void test_malformed_messages(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_packet pk;
    struct {
        const char *what;
        const uint8_t *p;
        size_t n;
        int rv;
    } cases[] = {
#define CASE(what, rv, ...)                                                                        \
    {what, (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}), rv}
        CASE("SeqNo over uint32", BASE_EPARSE, 0x0b, 0x81, 0xa5, 'S', 'e', 'q', 'N', 'o', 0xcf, 0,
             0, 0, 1, 0, 0, 0, 0),
        CASE("negative SeqNo", BASE_EPARSE, 0x0b, 0x81, 0xa5, 'S', 'e', 'q', 'N', 'o', 0xff),
        CASE("string SeqNo", BASE_EPARSE, 0x0b, 0x81, 0xa5, 'S', 'e', 'q', 'N', 'o', 0xa1, '1'),
        CASE("Vsn of 3 bytes", BASE_EPARSE, 0x04, 0x81, 0xa3, 'V', 's', 'n', 0xa3, 1, 2, 3),
        CASE("name holding a NUL", BASE_EPARSE, 0x03, 0x81, 0xa4, 'N', 'o', 'd', 'e', 0xa2, 'a', 0),
        CASE("body not a map", BASE_EPARSE, 0x03, 0x92, 0x01, 0x02),
        CASE("body cut short", BASE_EPARSE, 0x03, 0x82, 0xa4, 'N', 'o', 'd', 'e'),
        CASE("compound count past the end", BASE_EPARSE, 0x07, 0x03, 0x00, 0x01),
        CASE("compress of another algorithm", BASE_EPARSE, 0x09, 0x82, 0xa4, 'A', 'l', 'g', 'o',
             0x01, 0xa3, 'B', 'u', 'f', 0xc0),
        CASE("CRC too short", BASE_EPARSE, 0x0c, 0x00, 0x00),
        CASE("nack, nil body", 0, 0x0b, 0xc0),
        CASE("unknown and stream-only types are skipped", 0, 0x07, 0x02, 0x00, 0x01, 0x00, 0x01,
             0x63, 0x06),
#undef CASE
    };
    for (size_t i = 0; i < BASE_ARRAY_LEN(cases); i++) {
        int rv = packet(cases[i].p, cases[i].n, NULL, &a, &pk);
        if (rv != cases[i].rv)
            fail_msg("%s: got %d, want %d", cases[i].what, rv, cases[i].rv);
    }
    assert_int_equal(pk.unknown, 2);

    /* compounds in compounds: up to the depth bound, not past it */
    for (int depth = 1; depth <= GOSSIP_WIRE_DEPTH_MAX + 2; depth++) {
        struct base_buf in, out;
        base_buf_init(&in);
        base_buf_put_u8(&in, GOSSIP_NACK);
        base_buf_put_u8(&in, 0xc0);
        for (int i = 0; i < depth; i++) {
            base_buf_init(&out);
            struct gossip_bytes part = {in.data, in.len};
            gossip__compound_encode(&out, &part, 1);
            base_buf_free(&in);
            in = out;
        }
        int rv = packet(in.data, in.len, NULL, &a, &pk);
        assert_int_equal(rv, depth <= GOSSIP_WIRE_DEPTH_MAX ? 0 : BASE_ETOOBIG);
        base_buf_free(&in);
    }

    /* a part that does not decode (empty, a bad body) is skipped and counted, as memberlist
     * does: the other parts of the packet are kept */
    static const uint8_t empty_part[] = {0x07, 0x02, 0x00, 0x00, 0x00, 0x02, 0x0b, 0xc0};
    assert_int_equal(packet(VEC(empty_part), NULL, &a, &pk), 0);
    assert_int_equal(pk.n, 1);
    assert_int_equal(pk.msgs[0].type, GOSSIP_NACK);
    assert_int_equal(pk.bad, 1);
    static const uint8_t bad_body[] = {0x07, 0x02, 0x00, 0x04, 0x00, 0x02,
                                       0x03, 0x92, 0x01, 0x02, 0x0b, 0xc0};
    assert_int_equal(packet(VEC(bad_body), NULL, &a, &pk), 0);
    assert_int_equal(pk.n, 1);
    assert_int_equal(pk.bad, 1);
    static const uint8_t empty_alone[] = {0x07, 0x01, 0x00, 0x00};
    assert_int_equal(packet(VEC(empty_alone), NULL, &a, &pk), 0);
    assert_int_equal(pk.n, 0);
    assert_int_equal(pk.bad, 1);

    /* a compound part running past the packet: the earlier parts stay, the rest are counted */
    static const uint8_t trunc[] = {0x07, 0x02, 0x00, 0x02, 0x00, 0x09, 0x0b, 0xc0, 0x0b};
    assert_int_equal(packet(VEC(trunc), NULL, &a, &pk), 0);
    assert_int_equal(pk.n, 1);
    assert_int_equal(pk.truncated, 1);

    /* streams */
    struct gossip_msg m;
    size_t used;
    static const uint8_t many_nodes[] = {
        0x06, 0x83, 0xa4, 'J', 'o', 'i', 'n', 0xc2, 0xa5, 'N', 'o', 'd', 'e', 's', 0xce, 0x7f, 0xff,
        0xff, 0xff, 0xac, 'U', 's', 'e', 'r', 'S',  't',  'a', 't', 'e', 'L', 'e', 'n',  0x00};
    assert_int_equal(stream(VEC(many_nodes), NULL, &a, &m, &used), BASE_ETOOBIG);
    static const uint8_t user_huge[] = {0x08, 0x81, 0xaa, 'U', 's',  'e',  'r', 'M', 's',
                                        'g',  'L',  'e',  'n', 0xce, 0x7f, 0,   0,   0};
    assert_int_equal(stream(VEC(user_huge), NULL, &a, &m, &used), BASE_ETOOBIG);
    static const uint8_t user_neg[] = {0x08, 0x81, 0xaa, 'U', 's', 'e', 'r',
                                       'M',  's',  'g',  'L', 'e', 'n', 0xff};
    assert_int_equal(stream(VEC(user_neg), NULL, &a, &m, &used), BASE_EPARSE);
    static const uint8_t bad_type[] = {0x05, 0x80};
    assert_int_equal(stream(VEC(bad_type), NULL, &a, &m, &used), BASE_EPARSE);
    static const uint8_t enc_huge[] = {0x0a, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(stream(VEC(enc_huge), NULL, &a, &m, &used), BASE_ETOOBIG);
    static const uint8_t state9[] = {0x06, 0x82, 0xa5, 'N', 'o', 'd', 'e',  's',
                                     0x01, 0xa4, 'J',  'o', 'i', 'n', 0xc3, 0x81,
                                     0xa5, 'S',  't',  'a', 't', 'e', 0x09};
    assert_int_equal(stream(VEC(state9), NULL, &a, &m, &used), BASE_EPARSE);
    /* serf: an empty filter, a relay with nothing to relay, an unknown type */
    struct gossip_serf_msg s;
    static const uint8_t empty_filter[] = {0x04, 0x81, 0xa7, 'F', 'i',  'l',
                                           't',  'e',  'r',  's', 0x91, 0xa0};
    assert_int_equal(serf(VEC(empty_filter), &a, &s), BASE_EPARSE);
    static const uint8_t relay_empty[] = {0x09, 0x81, 0xa8, 'D', 'e',  's', 't',
                                          'N',  'a',  'm',  'e', 0xa1, 'x'};
    assert_int_equal(serf(VEC(relay_empty), &a, &s), BASE_EPARSE);
    static const uint8_t unknown[] = {0x0a, 0x80};
    assert_int_equal(serf(VEC(unknown), &a, &s), BASE_EPARSE);
    base_arena_close(&a);
}

/* Every truncation and every byte flip of every vector: refused or decoded, never a crash or a
 * read past the input (ASan), nothing leaked. */
static void test_vectors_mangled(void **state)
{
    (void)state;
    struct {
        const uint8_t *p;
        size_t n;
        bool is_stream;
    } v[] = {
        {VEC(serf_push_pull_stream), true}, {VEC(serf_encrypted_stream), true},
        {VEC(fake_push_pull_stream), true}, {VEC(serf_join_packet), false},
        {VEC(serf_ping_packet), false},     {VEC(serf_ping_compound_packet), false},
        {VEC(serf_event_packet), false},    {VEC(serf_query_packet), false},
        {VEC(serf_leave_packet), false},    {VEC(serf_dead_packet), false},
    };
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_keyring k = ring_of(key16, 16);
    for (size_t i = 0; i < BASE_ARRAY_LEN(v); i++) {
        uint8_t *buf = malloc(v[i].n);
        for (size_t cut = 0; cut <= v[i].n; cut++) {
            for (size_t flip = 0; flip <= cut; flip++) {
                static const uint8_t xors[] = {0x01, 0x80, 0xff};
                for (size_t x = 0; x < (flip < cut ? 3u : 1u); x++) {
                    memcpy(buf, v[i].p, v[i].n);
                    if (flip < cut)
                        buf[flip] ^= xors[x];
                    base_arena_reset(&a);
                    if (v[i].is_stream) {
                        struct gossip_msg m;
                        size_t used;
                        if (stream(buf, cut, &k, &a, &m, &used) == 0 && m.type == GOSSIP_USER) {
                            struct gossip_serf_msg s;
                            (void)serf(m.u.user.p, m.u.user.n, &a, &s);
                        }
                    } else {
                        struct gossip_packet pk;
                        if (packet(buf, cut, NULL, &a, &pk) == 0)
                            for (size_t j = 0; j < pk.n; j++)
                                if (pk.msgs[j].type == GOSSIP_USER) {
                                    struct gossip_serf_msg s;
                                    (void)serf(pk.msgs[j].u.user.p, pk.msgs[j].u.user.n, &a, &s);
                                }
                    }
                }
                if (cut > 64 && flip + 1 < cut && flip % 7 != 0)
                    flip += 3; /* long vectors: every byte near the start, a sample after */
            }
            if (cut > 64)
                cut += 5;
        }
        free(buf);
    }
    base_arena_close(&a);
}

/* HERALD_GOSSIP_EMIT=DIR (tests/integration/test_gossip_serf_wire.py): writes what our
 * encoders make for a member "herald1" at HERALD_GOSSIP_EMIT_ADDR:HERALD_GOSSIP_EMIT_PORT with
 * tags role=herald dc=dc1, for a real serf agent to take: pushpull (the stream answering serf's
 * join, compressed), event (a packet: CRC around a compressed compound of our alive and a user
 * event "herald-evt" payload "hi"), intent (serf's leave intent, LTime 2) and dead (our own
 * dead: a graceful leave); each also encrypted (.enc) with HERALD_GOSSIP_EMIT_KEY if given. */
static void put_file(const char *dir, const char *name, const struct base_buf *b)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b->data, 1, b->len, f), b->len);
    fclose(f);
}

static void emit_packet(const char *dir, const char *name, const struct gossip_bytes *parts,
                        size_t n, const uint8_t *key, size_t key_len, uint8_t nonce_id)
{
    struct base_buf comp, zip, crc, enc;
    base_buf_init(&comp);
    base_buf_init(&zip);
    base_buf_init(&crc);
    base_buf_init(&enc);
    if (n == 1)
        base_buf_append(&comp, parts[0].p, parts[0].n);
    else
        gossip__compound_encode(&comp, parts, n);
    gossip__compress_encode(&zip, comp.data, comp.len);
    gossip__crc_encode(&crc, zip.data, zip.len);
    put_file(dir, name, &crc);
    if (key_len) {
        uint8_t nonce[12] = {nonce_id, 0x5a};
        gossip__encrypt(&enc, 1, key, key_len, nonce, crc.data, crc.len, NULL, 0);
        char n2[64];
        snprintf(n2, sizeof(n2), "%s.enc", name);
        put_file(dir, n2, &enc);
    }
    base_buf_free(&comp);
    base_buf_free(&zip);
    base_buf_free(&crc);
    base_buf_free(&enc);
}

static void emit_for_serf(const char *dir)
{
    const char *addr = getenv("HERALD_GOSSIP_EMIT_ADDR");
    const char *port = getenv("HERALD_GOSSIP_EMIT_PORT");
    const char *kb64 = getenv("HERALD_GOSSIP_EMIT_KEY");
    assert_non_null(addr);
    assert_non_null(port);
    uint8_t ip[4];
    assert_int_equal(inet_pton(AF_INET, addr, ip), 1);
    uint8_t key[32];
    size_t key_len = 0;
    if (kb64 && *kb64)
        assert_int_equal(gossip_key_decode(kb64, key, &key_len), 0);

    struct base_buf meta, us, pp, zip, enc, msg1, msg2;
    base_buf_init(&meta);
    base_buf_init(&us);
    base_buf_init(&pp);
    base_buf_init(&zip);
    base_buf_init(&enc);
    base_buf_init(&msg1);
    base_buf_init(&msg2);
    struct gossip_tag tags[2] = {{"role", "herald"}, {"dc", "dc1"}};
    gossip__tags_encode(&meta, tags, 2);
    struct gossip_serf_status st = {"herald1", 1};
    struct gossip_serf_msg s = {.type = GOSSIP_SERF_PUSH_PULL};
    s.u.push_pull = (struct gossip_serf_push_pull){
        .ltime = 1, .n_status = 1, .status = &st, .event_ltime = 1, .query_ltime = 1};
    gossip__serf_encode(&us, &s);
    struct gossip_push_node nd = {.name = "herald1",
                                  .addr = {ip, 4},
                                  .port = (uint16_t)atoi(port),
                                  .meta = {meta.data, meta.len},
                                  .incarnation = 1,
                                  .state = GOSSIP_STATE_ALIVE,
                                  .has_vsn = true,
                                  .vsn = {1, 5, 2, 2, 5, 5}};
    struct gossip_msg m = {.type = GOSSIP_PUSH_PULL};
    m.u.push_pull = (struct gossip_push_pull){true, 1, &nd, {us.data, us.len}};
    gossip__msg_encode(&pp, &m);
    gossip__compress_encode(&zip, pp.data, pp.len);
    put_file(dir, "pushpull", &zip);
    if (key_len) {
        uint8_t nonce[12] = {1, 0xa5};
        gossip__encrypt_stream(&enc, key, key_len, nonce, zip.data, zip.len);
        put_file(dir, "pushpull.enc", &enc);
    }

    /* our alive and a user event, in one compound */
    struct gossip_msg al = {.type = GOSSIP_ALIVE};
    al.u.alive = (struct gossip_alive){
        1, "herald1", {ip, 4}, nd.port, {meta.data, meta.len}, true, {1, 5, 2, 2, 5, 5}};
    gossip__msg_encode(&msg1, &al);
    struct gossip_serf_msg ev = {.type = GOSSIP_SERF_USER_EVENT};
    ev.u.event =
        (struct gossip_serf_user_event){5, "herald-evt", {(const uint8_t *)"hi", 2}, false};
    base_buf_put_u8(&msg2, GOSSIP_USER);
    gossip__serf_encode(&msg2, &ev);
    struct gossip_bytes parts[2] = {{msg1.data, msg1.len}, {msg2.data, msg2.len}};
    emit_packet(dir, "event", parts, 2, key, key_len, 2);

    /* a graceful leave: serf's intent, then memberlist's dead from ourselves */
    msg1.len = msg2.len = 0;
    struct gossip_serf_msg lv = {.type = GOSSIP_SERF_LEAVE};
    lv.u.join = (struct gossip_serf_join){2, "herald1", false};
    base_buf_put_u8(&msg1, GOSSIP_USER);
    gossip__serf_encode(&msg1, &lv);
    parts[0] = (struct gossip_bytes){msg1.data, msg1.len};
    emit_packet(dir, "intent", parts, 1, key, key_len, 3);
    struct gossip_msg dead = {.type = GOSSIP_DEAD};
    dead.u.suspect = (struct gossip_suspect){1, "herald1", "herald1"};
    gossip__msg_encode(&msg2, &dead);
    parts[0] = (struct gossip_bytes){msg2.data, msg2.len};
    emit_packet(dir, "dead", parts, 1, key, key_len, 4);

    base_buf_free(&meta);
    base_buf_free(&us);
    base_buf_free(&pp);
    base_buf_free(&zip);
    base_buf_free(&enc);
    base_buf_free(&msg1);
    base_buf_free(&msg2);
}

/* Writes the fuzzer's seeds: mode byte (tests/fuzz/gossip_wire.c) then the bytes. */
static void write_seeds(const char *dir)
{
    static const uint8_t filter_node[] = {0, 0x91, 0xa2, 'h', '1'};
    static const uint8_t filter_tag[] = {1,   0x82, 0xa4, 'E', 'x', 'p',  'r', 0xa3, 'w', 'e',
                                         'b', 0xa3, 'T',  'a', 'g', 0xa4, 'r', 'o',  'l', 'e'};
    /* Consul's user-event envelope (tests/unit/gossip/test_consul_event.c has its layout) */
    static const uint8_t consul_event[] = {0x85, 0xa2, 'I',  'D',  0xa1, 'x',  0xa1, 'n',
                                           0xa1, 'e',  0xa2, 'n',  'f',  0xa2, 'h',  '.',
                                           0xa1, 'p',  0xc4, 0x01, 'P',  0xa1, 'v',  0x01};
    /* a keyring query's payload (the first byte: install, a keyring present), then serf's key
     * request {Key}; a member's answer to a list, serf's nodeKeyResponse */
    static const uint8_t key_request[] = {0, 7, 0x81, 0xa3, 'K', 'e', 'y', 0xb0, 1,  2,  3,  4,
                                          5, 6, 7,    8,    9,   10,  11,  12,   13, 14, 15, 16};
    static const uint8_t key_response[] = {
        8,   0x84, 0xa4, 'K', 'e', 'y',  's',  0x91, 0xa4, 'A', 'A', '=', '=', 0xa7, 'M', 'e',
        's', 's',  'a',  'g', 'e', 0xa0, 0xaa, 'P',  'r',  'i', 'm', 'a', 'r', 'y',  'K', 'e',
        'y', 0xa4, 'A',  'A', '=', '=',  0xa6, 'R',  'e',  's', 'u', 'l', 't', 0xc3};
    struct {
        const char *name;
        uint8_t mode;
        const uint8_t *p;
        size_t n;
    } v[] = {
        {"pp", 2, VEC(serf_push_pull_stream)},
        {"enc", 3, VEC(serf_encrypted_stream)},
        {"fake", 2, VEC(fake_push_pull_stream)},
        {"join", 0, VEC(serf_join_packet)},
        {"ping", 0, VEC(serf_ping_packet)},
        {"pingc", 0, VEC(serf_ping_compound_packet)},
        {"event", 0, VEC(serf_event_packet)},
        {"query", 0, VEC(serf_query_packet)},
        {"leave", 0, VEC(serf_leave_packet)},
        {"dead", 0, VEC(serf_dead_packet)},
        {"serf_event", 4, serf_event_packet + 6, sizeof(serf_event_packet) - 6},
        {"serf_query", 4, serf_query_packet + 6, sizeof(serf_query_packet) - 6},
        {"filter_node", 6, filter_node, sizeof(filter_node)},
        {"filter_tag", 6, filter_tag, sizeof(filter_tag)},
        {"consul_event", 7, consul_event, sizeof(consul_event)},
        {"key_request", 8, key_request, sizeof(key_request)},
        {"key_response", 9, key_response, sizeof(key_response)},
    };
    for (size_t i = 0; i < BASE_ARRAY_LEN(v); i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/seed-%s", dir, v[i].name);
        FILE *f = fopen(path, "wb");
        if (!f)
            continue;
        fputc(v[i].mode, f);
        fwrite(v[i].p, 1, v[i].n, f);
        fclose(f);
    }
}

int main(void)
{
    const char *seeds = getenv("HERALD_GOSSIP_SEEDS");
    if (seeds)
        write_seeds(seeds);
    const char *emit = getenv("HERALD_GOSSIP_EMIT");
    if (emit) {
        emit_for_serf(emit);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serf_push_pull_stream),
        cmocka_unit_test(test_serf_encrypted_stream),
        cmocka_unit_test(test_fake_push_pull_encodes_as_sent),
        cmocka_unit_test(test_serf_join_packet),
        cmocka_unit_test(test_serf_ping_packet),
        cmocka_unit_test(test_serf_broadcasts_roundtrip),
        cmocka_unit_test(test_all_messages_roundtrip),
        cmocka_unit_test(test_malformed_messages),
        cmocka_unit_test(test_vectors_mangled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
