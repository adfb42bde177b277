/* gossip/wire.c: memberlist's and serf's wire format, encoded and decoded.
 *
 * ==== The wire format (read from hashicorp/memberlist v0.2.2, serf v0.9.4 and go-msgpack
 * v0.5.5, the versions Debian's serf 0.9.4~ds1 is built with, and checked against the bytes a
 * running `serf agent` sends: tests/unit/gossip/capture_serf.py, test_wire.c) ====
 *
 * msgpack. Every struct is encoded by go-msgpack's default MsgpackHandle{}: a map from the Go
 * field name to its value, keys in byte-sorted field-name order (the encoder walks the sorted
 * field list), `codec:",omitempty"` fields left out when zero. WriteExt is false, so a string
 * and a []byte are both the old-spec "raw": fixraw a0+len (len < 32), raw16 da, raw32 db;
 * never str8 (d9) nor bin (c4-c6). The decoder accepts str8 and bin too, and nil for any field
 * (zero value); it matches keys exactly, skips unknown keys and leaves missing fields zero.
 * Unsigned and non-negative signed integers take the smallest of fixint, cc, cd, ce, cf;
 * negatives fixneg, d0-d3. A nil slice is nil (c0), an empty one an empty array/raw. A Go
 * []uint8 (Vsn) is raw bytes, not an array. time.Duration is an int64 of nanoseconds. Go map
 * order is random. A message is its type byte followed by one msgpack value; the decoder
 * ignores bytes after the value.
 *
 * memberlist message types (net.go, uint8): 0 ping, 1 indirectPing, 2 ackResp, 3 suspect,
 * 4 alive, 5 dead, 6 pushPull, 7 compound, 8 user, 9 compress, 10 encrypt, 11 nackResp,
 * 12 hasCrc, 13 err. Bodies (Go types; map keys in encoded order):
 *   ping          {Node string, SeqNo uint32, SourceAddr []byte*, SourceNode string*,
 *                  SourcePort uint16*}                                    (* omitempty)
 *   indirectPing  {Nack bool, Node string, Port uint16, SeqNo uint32, SourceAddr*,
 *                  SourceNode*, SourcePort*, Target []byte}
 *   ackResp       {Payload []byte, SeqNo uint32}   serf's payload: byte 1 (PingVersion) then
 *                  a msgpack coordinate {Adjustment, Error, Height float64, Vec []float64};
 *                  an empty payload is ignored by serf
 *   nackResp      {SeqNo uint32}
 *   suspect, dead {From string, Incarnation uint32, Node string}; a dead with From == Node is
 *                  a graceful leave (memberlist marks it left, serf "leave")
 *   alive         {Addr []byte, Incarnation uint32, Meta []byte, Node string, Port uint16,
 *                  Vsn []uint8}; Vsn = pmin pmax pcur dmin dmax dcur. memberlist ignores an
 *                  alive of a new node without 6 Vsn bytes and indexes Vsn[0..5] whenever it is
 *                  not empty, so 1..5 bytes are refused here. serf 0.9.4 sends 1 5 2 2 5 5
 *                  (memberlist protocol 2 of 1..5, serf protocol 5 of 2..5).
 *   err           {Error string}, streams only
 *   compound      [7][n uint8][n × uint16 BE length][messages]; a part that runs past the
 *                  packet is dropped with the rest ("truncated"), earlier parts are kept.
 *   compress      [9]{Algo uint8 (0 = LZW), Buf []byte}: Go compress/lzw, LSB, 8-bit
 *                  literals (lzw.c); the payload is a whole message (type byte first).
 *   hasCrc        [12][CRC-32 IEEE BE of the rest][message]: packets only, outermost after
 *                  decryption, added only when the sender knows the node's PMax >= 5: its
 *                  gossip has it, but probes and acks (sent by address; memberlist's lookup
 *                  by address misses since members are keyed by name) come without. A
 *                  receiver checks a CRC on any packet that starts with 12.
 *   user          packets: [8][delegate bytes]; streams: [8]{UserMsgLen int}[bytes].
 * A UDP packet is one message, usually a compound of the probe and piggybacked broadcasts
 * (UDPBufferSize 1400); serf agents compress (-disable-compression turns it off) whenever it
 * makes the packet smaller, before the CRC: [12][crc][9]{Algo, Buf}. Messages of an unknown
 * type are logged and skipped; push-pull and err are stream-only. memberlist queues a
 * packet's alive messages ahead of the rest and handles each queue newest first, so the parts
 * of one compound are not processed in order: a serf leave intent and the dead that follows it
 * (a graceful leave: serf marks a member left only if its intent came first, else failed) go
 * in separate packets.
 *
 * TCP streams (push-pull, reliable user messages, the TCP fallback ping): one message per
 * connection direction, no length prefix except when encrypted:
 *   [6]{Join bool, Nodes int, UserStateLen int} then Nodes × pushNodeState {Addr []byte,
 *   Incarnation uint32, Meta []byte, Name string, Port uint16, State int (0 alive, 1 suspect,
 *   2 dead, 3 left), Vsn []uint8}, then UserStateLen raw bytes (serf's push-pull). The
 *   answerer sends its own push-pull with the same Join flag. A stream is compressed whenever
 *   compression is on: [9]{Algo, Buf} whose payload is [6]... The limit is 20 MiB
 *   (maxPushStateBytes). memberlist 0.2.2 has no label header (added in 0.3/0.4).
 *
 * Encryption (security.go, AES-GCM, 16/24/32-byte keys = AES-128/192/256, 12-byte random
 * nonce, 16-byte tag): [vsn][nonce][ciphertext+tag]; vsn 1 (protocol >= 2, what serf sends)
 * has no padding, vsn 0 pads with PKCS#7 to 16 bytes. A packet is encrypted whole (after the
 * CRC wrapper) with no additional data, and carries no type byte (so the receiver's keyring
 * decides). A stream is [10][u32 BE length of what follows][vsn][nonce][ct+tag] with the 5
 * header bytes as additional data, around the (compressed) message. Decryption tries every key.
 *
 * serf (serf/messages.go) rides in memberlist user messages, first byte its own type: 0 leave
 * {LTime uint64, Node string, Prune bool}, 1 join {LTime, Node}, 2 pushPull {EventLTime,
 * Events []*userEvents (the whole ring, 512 slots, nil where empty), LTime, LeftMembers
 * []string, QueryLTime, StatusLTimes map[string]uint64}, where userEvents is {Events
 * [{Name string, Payload []byte}], LTime}; 3 userEvent {CC bool, LTime, Name, Payload}; 4 query
 * {Addr []byte, Filters [][]byte, Flags uint32 (1 ack, 2 no-broadcast), ID uint32, LTime,
 * Name, Payload, Port uint16, RelayFactor uint8, SourceNode string, Timeout int64 ns}; each
 * filter is [0 node]{[]string} or [1 tag]{Expr, Tag}; 5 queryResponse {Flags, From string, ID,
 * LTime, Payload}; 6 conflictResponse (a serf Member, as a query response payload); 7
 * keyRequest {Key []byte}; 8 keyResponse {Keys []string, Message, PrimaryKey string, Result
 * bool}; 9 relay [9]{DestAddr {IP []byte, Port int, Zone string}, DestName string}[message].
 * Broadcasts (join, leave, events, queries) are piggybacked as [8][serf message] parts of
 * compounds; query responses go straight to the querier as [8][5 ...] packets. The memberlist
 * push-pull's user state is [2]{serf pushPull}. Lamport times (LTime) are uint64; serf keeps
 * three clocks (members, events, queries). Internal queries are named "_serf_" + ping,
 * conflict, install-key, use-key, remove-key, list-keys; their key payloads are [7]{Key} and
 * the answers [8]{...}.
 *
 * Tags: a node's Meta is [255] then a msgpack map[string]string (serf protocol >= 3); other
 * Meta is the old role-only form. Meta is at most 512 bytes (memberlist's MetaMaxSize).
 *
 * ==== Decoding ====
 * Bytes from outside are scanned (gossip__mp_scan: every length against the bytes left, depth
 * and object count bounded) before msgpack-c unpacks exactly the scanned span, so msgpack-c
 * never sees a count it would allocate for beyond the input. Then each field is converted with
 * its type and range checked (Go's decoder refuses an integer that overflows its field, a
 * negative into an unsigned, a string where a number goes).
 */
#include "gossip/mp.h"

#include <errno.h>
#include <string.h>

/* ---- memberlist's messages ------------------------------------------------------------------ */

static const struct gossip_mp_field ping_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_ping, "Node", GOSSIP_MP_STR, node),
    GOSSIP_MP_FIELD(struct gossip_ping, "SeqNo", GOSSIP_MP_U32, seq),
    GOSSIP_MP_FIELD_OMIT(struct gossip_ping, "SourceAddr", GOSSIP_MP_BYTES, source_addr),
    GOSSIP_MP_FIELD_OMIT(struct gossip_ping, "SourceNode", GOSSIP_MP_STR, source_node),
    GOSSIP_MP_FIELD_OMIT(struct gossip_ping, "SourcePort", GOSSIP_MP_U16, source_port),
};

static const struct gossip_mp_field indirect_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_indirect_ping, "Nack", GOSSIP_MP_BOOL, nack),
    GOSSIP_MP_FIELD(struct gossip_indirect_ping, "Node", GOSSIP_MP_STR, node),
    GOSSIP_MP_FIELD(struct gossip_indirect_ping, "Port", GOSSIP_MP_U16, port),
    GOSSIP_MP_FIELD(struct gossip_indirect_ping, "SeqNo", GOSSIP_MP_U32, seq),
    GOSSIP_MP_FIELD_OMIT(struct gossip_indirect_ping, "SourceAddr", GOSSIP_MP_BYTES, source_addr),
    GOSSIP_MP_FIELD_OMIT(struct gossip_indirect_ping, "SourceNode", GOSSIP_MP_STR, source_node),
    GOSSIP_MP_FIELD_OMIT(struct gossip_indirect_ping, "SourcePort", GOSSIP_MP_U16, source_port),
    GOSSIP_MP_FIELD(struct gossip_indirect_ping, "Target", GOSSIP_MP_BYTES, target),
};

static const struct gossip_mp_field ack_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_ack, "Payload", GOSSIP_MP_BYTES, payload),
    GOSSIP_MP_FIELD(struct gossip_ack, "SeqNo", GOSSIP_MP_U32, seq),
};

static const struct gossip_mp_field nack_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_nack, "SeqNo", GOSSIP_MP_U32, seq),
};

static const struct gossip_mp_field err_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_err, "Error", GOSSIP_MP_STR, error),
};

static const struct gossip_mp_field suspect_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_suspect, "From", GOSSIP_MP_STR, from),
    GOSSIP_MP_FIELD(struct gossip_suspect, "Incarnation", GOSSIP_MP_U32, incarnation),
    GOSSIP_MP_FIELD(struct gossip_suspect, "Node", GOSSIP_MP_STR, node),
};

static const struct gossip_mp_field alive_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_alive, "Addr", GOSSIP_MP_BYTES, addr),
    GOSSIP_MP_FIELD(struct gossip_alive, "Incarnation", GOSSIP_MP_U32, incarnation),
    GOSSIP_MP_FIELD(struct gossip_alive, "Meta", GOSSIP_MP_BYTES, meta),
    GOSSIP_MP_FIELD(struct gossip_alive, "Node", GOSSIP_MP_STR, node),
    GOSSIP_MP_FIELD(struct gossip_alive, "Port", GOSSIP_MP_U16, port),
    GOSSIP_MP_FIELD_VSN(struct gossip_alive, "Vsn", vsn, has_vsn),
};

static const struct gossip_mp_field node_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_push_node, "Addr", GOSSIP_MP_BYTES, addr),
    GOSSIP_MP_FIELD(struct gossip_push_node, "Incarnation", GOSSIP_MP_U32, incarnation),
    GOSSIP_MP_FIELD(struct gossip_push_node, "Meta", GOSSIP_MP_BYTES, meta),
    GOSSIP_MP_FIELD(struct gossip_push_node, "Name", GOSSIP_MP_STR, name),
    GOSSIP_MP_FIELD(struct gossip_push_node, "Port", GOSSIP_MP_U16, port),
    GOSSIP_MP_FIELD(struct gossip_push_node, "State", GOSSIP_MP_U8, state),
    GOSSIP_MP_FIELD_VSN(struct gossip_push_node, "Vsn", vsn, has_vsn),
};

struct pp_header {
    bool join;
    int64_t nodes;
    int64_t user_state_len;
};
static const struct gossip_mp_field pp_header_fields[] = {
    GOSSIP_MP_FIELD(struct pp_header, "Join", GOSSIP_MP_BOOL, join),
    GOSSIP_MP_FIELD(struct pp_header, "Nodes", GOSSIP_MP_INT, nodes),
    GOSSIP_MP_FIELD(struct pp_header, "UserStateLen", GOSSIP_MP_INT, user_state_len),
};

struct user_header {
    int64_t len;
};
static const struct gossip_mp_field user_header_fields[] = {
    GOSSIP_MP_FIELD(struct user_header, "UserMsgLen", GOSSIP_MP_INT, len),
};

struct compress_body {
    uint8_t algo;
    struct gossip_bytes buf;
};
static const struct gossip_mp_field compress_fields[] = {
    GOSSIP_MP_FIELD(struct compress_body, "Algo", GOSSIP_MP_U8, algo),
    GOSSIP_MP_FIELD(struct compress_body, "Buf", GOSSIP_MP_BYTES, buf),
};

/* The body of a one-value message of type t into m. */
static int body_decode(uint8_t t, const uint8_t *p, size_t n, struct base_arena *a,
                       struct gossip_msg *m, size_t *used)
{
    msgpack_unpacked u;
    size_t len;
    int rv = gossip__mp_unpack(p, n, &u, &len);
    if (rv != 0)
        return rv;
    const msgpack_object *o = &u.data;
    memset(m, 0, sizeof(*m));
    m->type = t;
    switch (t) {
    case GOSSIP_PING:
        rv = GOSSIP_MP_DECODE(o, ping_fields, a, &m->u.ping);
        break;
    case GOSSIP_INDIRECT_PING:
        rv = GOSSIP_MP_DECODE(o, indirect_fields, a, &m->u.indirect);
        break;
    case GOSSIP_ACK:
        rv = GOSSIP_MP_DECODE(o, ack_fields, a, &m->u.ack);
        break;
    case GOSSIP_NACK:
        rv = GOSSIP_MP_DECODE(o, nack_fields, a, &m->u.nack);
        break;
    case GOSSIP_ERR:
        rv = GOSSIP_MP_DECODE(o, err_fields, a, &m->u.err);
        break;
    case GOSSIP_SUSPECT:
    case GOSSIP_DEAD:
        rv = GOSSIP_MP_DECODE(o, suspect_fields, a, &m->u.suspect);
        break;
    case GOSSIP_ALIVE:
        rv = GOSSIP_MP_DECODE(o, alive_fields, a, &m->u.alive);
        break;
    default:
        rv = BASE_EPARSE;
        break;
    }
    msgpack_unpacked_destroy(&u);
    if (rv == 0)
        *used = len;
    return rv;
}

/* Decodes a compress body at p/n (after the type byte) and decompresses it. */
static int compress_decode(const uint8_t *p, size_t n, size_t max, struct base_arena *a,
                           struct gossip_bytes *out, size_t *used)
{
    msgpack_unpacked u;
    size_t len;
    int rv = gossip__mp_unpack(p, n, &u, &len);
    if (rv != 0)
        return rv;
    struct compress_body c;
    rv = GOSSIP_MP_DECODE(&u.data, compress_fields, a, &c);
    msgpack_unpacked_destroy(&u);
    if (rv != 0)
        return rv;
    if (c.algo != 0) /* lzwAlgo is the only one */
        return BASE_EPARSE;
    rv = gossip__lzw_decode(c.buf.p, c.buf.n, max, a, out);
    if (rv != 0)
        return rv;
    if (out->n == 0) /* a message has at least its type byte */
        return BASE_EPARSE;
    *used = len;
    return 0;
}

struct pkt_ctx {
    struct base_arena *a;
    struct gossip_packet *out;
    size_t cap;
    size_t inflate_left; /* decompressed bytes the packet may still make, all levels together */
};

static struct gossip_msg *pkt_push(struct pkt_ctx *c)
{
    struct gossip_packet *o = c->out;
    if (o->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 8;
        struct gossip_msg *m = base_arena_alloc(c->a, cap * sizeof(*m));
        if (o->n)
            memcpy(m, o->msgs, o->n * sizeof(*m));
        o->msgs = m;
        c->cap = cap;
    }
    return &o->msgs[o->n++];
}

static int pkt_command(struct pkt_ctx *c, const uint8_t *p, size_t n, int depth)
{
    if (n == 0 || depth > GOSSIP_WIRE_DEPTH_MAX)
        return BASE_EPARSE;
    uint8_t t = p[0];
    p++;
    n--;
    switch (t) {
    case GOSSIP_COMPOUND: {
        if (n < 1)
            return BASE_EPARSE;
        size_t parts = p[0];
        p++;
        n--;
        if (n < 2 * parts)
            return BASE_EPARSE;
        const uint8_t *lens = p;
        p += 2 * parts;
        n -= 2 * parts;
        for (size_t i = 0; i < parts; i++) {
            size_t l = gossip__be16(lens + 2 * i);
            if (l > n) {
                c->out->truncated += (unsigned)(parts - i);
                break;
            }
            int rv = pkt_command(c, p, l, depth + 1);
            if (rv != 0)
                return rv;
            p += l;
            n -= l;
        }
        return 0;
    }
    case GOSSIP_COMPRESS: {
        struct gossip_bytes plain;
        size_t used;
        /* one budget for the whole packet: compressed parts of a compound, each inflating to
         * its bound, nested, would otherwise multiply it */
        int rv = compress_decode(p, n, c->inflate_left, c->a, &plain, &used);
        if (rv == -EAGAIN)
            rv = BASE_EPARSE;
        if (rv != 0)
            return rv;
        c->inflate_left -= plain.n;
        c->out->compressed = true;
        return pkt_command(c, plain.p, plain.n, depth + 1);
    }
    case GOSSIP_PING:
    case GOSSIP_INDIRECT_PING:
    case GOSSIP_ACK:
    case GOSSIP_NACK:
    case GOSSIP_SUSPECT:
    case GOSSIP_ALIVE:
    case GOSSIP_DEAD: {
        if (c->out->n >= GOSSIP_WIRE_MSGS_MAX)
            return BASE_ETOOBIG;
        struct gossip_msg m;
        size_t used;
        int rv = body_decode(t, p, n, c->a, &m, &used);
        if (rv == -EAGAIN)
            rv = BASE_EPARSE;
        if (rv != 0)
            return rv;
        *pkt_push(c) = m;
        return 0;
    }
    case GOSSIP_USER: {
        if (c->out->n >= GOSSIP_WIRE_MSGS_MAX)
            return BASE_ETOOBIG;
        struct gossip_msg *m = pkt_push(c);
        memset(m, 0, sizeof(*m));
        m->type = GOSSIP_USER;
        uint8_t *copy = NULL;
        if (n) {
            copy = base_arena_alloc(c->a, n);
            memcpy(copy, p, n);
        }
        m->u.user = (struct gossip_bytes){copy, n};
        return 0;
    }
    default:
        /* push-pull and err are stream-only; a nested CRC or encryption is not handled by
         * memberlist either: skipped, like an unknown type */
        c->out->unknown++;
        return 0;
    }
}

/* CRC-32/IEEE (Go's crc32.ChecksumIEEE), bit by bit: packets are small, and no table means
 * nothing to initialise across threads. */
static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

int gossip__packet_decode(const uint8_t *p, size_t n, const struct gossip_keyring *keys,
                          struct base_arena *a, struct gossip_packet *out)
{
    memset(out, 0, sizeof(*out));
    if (n > GOSSIP_WIRE_UDP_MAX)
        return BASE_ETOOBIG;
    if (keys && keys->n) {
        struct gossip_bytes plain;
        int rv = gossip__decrypt(keys, p, n, NULL, 0, a, &plain);
        if (rv != 0)
            return rv;
        p = plain.p;
        n = plain.n;
        out->encrypted = true;
    }
    if (n >= 1 && p[0] == GOSSIP_HAS_CRC) {
        if (n < 5 || crc32_ieee(p + 5, n - 5) != gossip__be32(p + 1))
            return BASE_EPARSE;
        p += 5;
        n -= 5;
        out->crc = true;
    }
    struct pkt_ctx c = {a, out, 0, GOSSIP_WIRE_UDP_MAX};
    return pkt_command(&c, p, n, 0);
}

/* A stream message at p/n. complete: p/n is all there is (decrypted or decompressed), so a
 * prefix is malformed. */
static int stream_inner(const uint8_t *p, size_t n, size_t max, bool complete, int depth,
                        struct base_arena *a, struct gossip_msg *out, size_t *used)
{
    int rv;
    size_t off = 1, len;
    if (n < 1)
        return complete ? BASE_EPARSE : -EAGAIN;
    uint8_t t = p[0];
    memset(out, 0, sizeof(*out));
    out->type = t;
    switch (t) {
    case GOSSIP_COMPRESS: {
        struct gossip_bytes plain;
        if (depth > 0) /* memberlist decompresses once */
            return BASE_EPARSE;
        rv = compress_decode(p + 1, n - 1, max, a, &plain, &len);
        if (rv == 0) {
            size_t inner;
            rv = stream_inner(plain.p, plain.n, max, true, depth + 1, a, out, &inner);
            off += len;
        }
        break;
    }
    case GOSSIP_PING:
    case GOSSIP_ACK:
    case GOSSIP_ERR:
        rv = body_decode(t, p + 1, n - 1, a, out, &len);
        off += len;
        break;
    case GOSSIP_USER: {
        msgpack_unpacked u;
        struct user_header h;
        if ((rv = gossip__mp_unpack(p + 1, n - 1, &u, &len)) != 0)
            break;
        rv = GOSSIP_MP_DECODE(&u.data, user_header_fields, a, &h);
        msgpack_unpacked_destroy(&u);
        if (rv != 0)
            break;
        off += len;
        if ((uint64_t)h.len > max) {
            rv = BASE_ETOOBIG;
            break;
        }
        if (n - off < (size_t)h.len) {
            rv = -EAGAIN;
            break;
        }
        uint8_t *copy = NULL;
        if (h.len) {
            copy = base_arena_alloc(a, (size_t)h.len);
            memcpy(copy, p + off, (size_t)h.len);
        }
        out->u.user = (struct gossip_bytes){copy, (size_t)h.len};
        off += (size_t)h.len;
        break;
    }
    case GOSSIP_PUSH_PULL: {
        msgpack_unpacked u;
        struct pp_header h;
        if ((rv = gossip__mp_unpack(p + 1, n - 1, &u, &len)) != 0)
            break;
        rv = GOSSIP_MP_DECODE(&u.data, pp_header_fields, a, &h);
        msgpack_unpacked_destroy(&u);
        if (rv != 0)
            break;
        off += len;
        if (h.nodes > GOSSIP_WIRE_NODES_MAX || (uint64_t)h.user_state_len > max) {
            rv = BASE_ETOOBIG;
            break;
        }
        struct gossip_push_pull *pp = &out->u.push_pull;
        pp->join = h.join;
        pp->n_nodes = (size_t)h.nodes;
        /* each node takes at least a byte: no allocation beyond what has arrived */
        if ((size_t)h.nodes > n - off) {
            rv = -EAGAIN;
            break;
        }
        pp->nodes = h.nodes ? base_arena_alloc(a, (size_t)h.nodes * sizeof(*pp->nodes)) : NULL;
        for (size_t i = 0; rv == 0 && i < (size_t)h.nodes; i++) {
            if ((rv = gossip__mp_unpack(p + off, n - off, &u, &len)) != 0)
                break;
            rv = GOSSIP_MP_DECODE(&u.data, node_fields, a, &pp->nodes[i]);
            msgpack_unpacked_destroy(&u);
            if (rv == 0 && pp->nodes[i].state > GOSSIP_STATE_LEFT)
                rv = BASE_EPARSE;
            off += len;
        }
        if (rv != 0)
            break;
        if (n - off < (size_t)h.user_state_len) {
            rv = -EAGAIN;
            break;
        }
        uint8_t *copy = NULL;
        if (h.user_state_len) {
            copy = base_arena_alloc(a, (size_t)h.user_state_len);
            memcpy(copy, p + off, (size_t)h.user_state_len);
        }
        pp->user_state = (struct gossip_bytes){copy, (size_t)h.user_state_len};
        off += (size_t)h.user_state_len;
        break;
    }
    default:
        rv = BASE_EPARSE;
        break;
    }
    if (rv == -EAGAIN && complete)
        rv = BASE_EPARSE;
    if (rv == 0)
        *used = off;
    return rv;
}

int gossip__stream_decode(const uint8_t *p, size_t n, size_t max, const struct gossip_keyring *keys,
                          struct base_arena *a, struct gossip_msg *out, bool *encrypted,
                          size_t *used)
{
    *encrypted = false;
    if (max > GOSSIP_WIRE_STREAM_MAX)
        max = GOSSIP_WIRE_STREAM_MAX;
    if (n >= 1 && p[0] == GOSSIP_ENCRYPT) {
        if (n < 5)
            return -EAGAIN;
        uint32_t l = gossip__be32(p + 1);
        if (l > max)
            return BASE_ETOOBIG;
        if (n - 5 < l)
            return -EAGAIN;
        if (!keys || keys->n == 0)
            return BASE_EACL;
        struct gossip_bytes plain;
        int rv = gossip__decrypt(keys, p + 5, l, p, 5, a, &plain);
        if (rv != 0)
            return rv;
        size_t inner;
        rv = stream_inner(plain.p, plain.n, max, true, 0, a, out, &inner);
        if (rv != 0)
            return rv;
        *encrypted = true;
        *used = 5 + (size_t)l;
        return 0;
    }
    int rv = stream_inner(p, n, max, false, 0, a, out, used);
    if (rv == -EAGAIN && n >= max)
        return BASE_ETOOBIG;
    return rv;
}

void gossip__msg_encode(struct base_buf *b, const struct gossip_msg *m)
{
    msgpack_packer pk;
    gossip__pk_init(&pk, b);
    base_buf_put_u8(b, m->type);
    switch (m->type) {
    case GOSSIP_PING:
        GOSSIP_MP_ENCODE(&pk, ping_fields, &m->u.ping);
        break;
    case GOSSIP_INDIRECT_PING:
        GOSSIP_MP_ENCODE(&pk, indirect_fields, &m->u.indirect);
        break;
    case GOSSIP_ACK:
        GOSSIP_MP_ENCODE(&pk, ack_fields, &m->u.ack);
        break;
    case GOSSIP_NACK:
        GOSSIP_MP_ENCODE(&pk, nack_fields, &m->u.nack);
        break;
    case GOSSIP_ERR:
        GOSSIP_MP_ENCODE(&pk, err_fields, &m->u.err);
        break;
    case GOSSIP_SUSPECT:
    case GOSSIP_DEAD:
        GOSSIP_MP_ENCODE(&pk, suspect_fields, &m->u.suspect);
        break;
    case GOSSIP_ALIVE:
        GOSSIP_MP_ENCODE(&pk, alive_fields, &m->u.alive);
        break;
    case GOSSIP_USER:
        base_buf_append(b, m->u.user.p, m->u.user.n);
        break;
    case GOSSIP_PUSH_PULL: {
        const struct gossip_push_pull *pp = &m->u.push_pull;
        struct pp_header h = {pp->join, (int64_t)pp->n_nodes, (int64_t)pp->user_state.n};
        GOSSIP_MP_ENCODE(&pk, pp_header_fields, &h);
        for (size_t i = 0; i < pp->n_nodes; i++)
            GOSSIP_MP_ENCODE(&pk, node_fields, &pp->nodes[i]);
        base_buf_append(b, pp->user_state.p, pp->user_state.n);
        break;
    }
    default:
        break;
    }
}

void gossip__user_stream_encode(struct base_buf *b, const uint8_t *msg, size_t n)
{
    msgpack_packer pk;
    gossip__pk_init(&pk, b);
    base_buf_put_u8(b, GOSSIP_USER);
    struct user_header h = {(int64_t)n};
    GOSSIP_MP_ENCODE(&pk, user_header_fields, &h);
    base_buf_append(b, msg, n);
}

void gossip__compound_encode(struct base_buf *b, const struct gossip_bytes *msgs, size_t n)
{
    base_buf_put_u8(b, GOSSIP_COMPOUND);
    base_buf_put_u8(b, (uint8_t)n);
    for (size_t i = 0; i < n; i++) {
        uint8_t l[2] = {(uint8_t)(msgs[i].n >> 8), (uint8_t)msgs[i].n};
        base_buf_append(b, l, 2);
    }
    for (size_t i = 0; i < n; i++)
        base_buf_append(b, msgs[i].p, msgs[i].n);
}

void gossip__crc_encode(struct base_buf *b, const uint8_t *msg, size_t n)
{
    uint32_t c = crc32_ieee(msg, n);
    uint8_t h[5] = {GOSSIP_HAS_CRC, (uint8_t)(c >> 24), (uint8_t)(c >> 16), (uint8_t)(c >> 8),
                    (uint8_t)c};
    base_buf_append(b, h, 5);
    base_buf_append(b, msg, n);
}

void gossip__compress_encode(struct base_buf *b, const uint8_t *msg, size_t n)
{
    struct base_buf z;
    base_buf_init(&z);
    gossip__lzw_encode(&z, msg, n);
    struct compress_body c = {0, {z.data, z.len}};
    msgpack_packer pk;
    gossip__pk_init(&pk, b);
    base_buf_put_u8(b, GOSSIP_COMPRESS);
    GOSSIP_MP_ENCODE(&pk, compress_fields, &c);
    base_buf_free(&z);
}
