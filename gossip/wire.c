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
 *                  decryption, sent only to nodes whose PMax >= 5 (serf sends it to us).
 *   user          packets: [8][delegate bytes]; streams: [8]{UserMsgLen int}[bytes].
 * A UDP packet is one message, usually a compound of the probe and piggybacked broadcasts
 * (UDPBufferSize 1400); serf agents compress (-disable-compression turns it off) whenever it
 * makes the packet smaller, before the CRC: [12][crc][9]{Algo, Buf}. Messages of an unknown
 * type are logged and skipped; push-pull and err are stream-only.
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
#include "gossip/wire.h"

#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

/* ---- msgpack scan --------------------------------------------------------------------------- */

static uint32_t be16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int gossip__mp_scan(const uint8_t *p, size_t n, size_t *len)
{
    /* An explicit stack of containers still to read: values left in each. */
    uint64_t left[GOSSIP_WIRE_MP_DEPTH_MAX + 1];
    int depth = 0;
    size_t off = 0, objs = 0;
    left[0] = 1;
    while (depth >= 0) {
        if (left[depth] == 0) {
            depth--;
            continue;
        }
        left[depth]--;
        if (++objs > GOSSIP_WIRE_MP_OBJS_MAX)
            return BASE_ETOOBIG;
        if (off >= n)
            return -EAGAIN;
        uint8_t t = p[off++];
        uint64_t skip = 0, count = 0;
        bool container = false;
        size_t hdr = 0; /* bytes of length after t */
        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
            /* fixint, nil, bool */
        } else if (t >= 0x80 && t <= 0x8f) {
            count = 2u * (t & 0x0f);
            container = true;
        } else if (t >= 0x90 && t <= 0x9f) {
            count = t & 0x0f;
            container = true;
        } else if (t >= 0xa0 && t <= 0xbf) {
            skip = t & 0x1f;
        } else {
            switch (t) {
            case 0xc4: /* bin8 */
            case 0xd9: /* str8 */
                hdr = 1;
                break;
            case 0xc5:
            case 0xda:
                hdr = 2;
                break;
            case 0xc6:
            case 0xdb:
                hdr = 4;
                break;
            case 0xc7: /* ext8: len, type */
                hdr = 1;
                break;
            case 0xc8:
                hdr = 2;
                break;
            case 0xc9:
                hdr = 4;
                break;
            case 0xca:
                skip = 4;
                break;
            case 0xcb:
                skip = 8;
                break;
            case 0xcc:
            case 0xd0:
                skip = 1;
                break;
            case 0xcd:
            case 0xd1:
                skip = 2;
                break;
            case 0xce:
            case 0xd2:
                skip = 4;
                break;
            case 0xcf:
            case 0xd3:
                skip = 8;
                break;
            case 0xd4:
                skip = 2;
                break;
            case 0xd5:
                skip = 3;
                break;
            case 0xd6:
                skip = 5;
                break;
            case 0xd7:
                skip = 9;
                break;
            case 0xd8:
                skip = 17;
                break;
            case 0xdc:
            case 0xde:
                hdr = 2;
                container = true;
                break;
            case 0xdd:
            case 0xdf:
                hdr = 4;
                container = true;
                break;
            default: /* 0xc1, never used */
                return BASE_EPARSE;
            }
            if (hdr) {
                if (n - off < hdr)
                    return -EAGAIN;
                uint64_t l = hdr == 1 ? p[off] : hdr == 2 ? be16(p + off) : be32(p + off);
                off += hdr;
                if (container)
                    count = (t == 0xde || t == 0xdf) ? 2 * l : l;
                else
                    skip = l + (t >= 0xc7 && t <= 0xc9); /* ext: its type byte */
            }
        }
        if (container) {
            /* Every value takes at least a byte: a count beyond the bytes left is a lie (or a
             * prefix, for a stream). */
            if (count > n - off)
                return -EAGAIN;
            if (count > 0) {
                if (depth + 1 > GOSSIP_WIRE_MP_DEPTH_MAX)
                    return BASE_EPARSE;
                left[++depth] = count;
            }
        } else {
            if (skip > n - off)
                return -EAGAIN;
            off += (size_t)skip;
        }
    }
    *len = off;
    return 0;
}

/* Scans and unpacks the value at p/n. On 0 the caller destroys u. */
static int mp_unpack(const uint8_t *p, size_t n, msgpack_unpacked *u, size_t *used)
{
    size_t len, off = 0;
    int rv = gossip__mp_scan(p, n, &len);
    if (rv != 0)
        return rv;
    msgpack_unpacked_init(u);
    if (msgpack_unpack_next(u, (const char *)p, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != len) {
        msgpack_unpacked_destroy(u);
        return BASE_EPARSE;
    }
    *used = len;
    return 0;
}

/* A complete value: a prefix is malformed, not incomplete. */
static int mp_unpack_all(const uint8_t *p, size_t n, msgpack_unpacked *u, size_t *used)
{
    int rv = mp_unpack(p, n, u, used);
    return rv == -EAGAIN ? BASE_EPARSE : rv;
}

/* ---- field conversion ----------------------------------------------------------------------- */

static bool obj_raw(const msgpack_object *o, const uint8_t **p, size_t *n)
{
    if (o->type == MSGPACK_OBJECT_STR) {
        *p = (const uint8_t *)o->via.str.ptr;
        *n = o->via.str.size;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_BIN) {
        *p = (const uint8_t *)o->via.bin.ptr;
        *n = o->via.bin.size;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_NIL) {
        *p = NULL;
        *n = 0;
        return true;
    }
    return false;
}

static int conv_str(const msgpack_object *o, struct base_arena *a, const char **out)
{
    const uint8_t *p;
    size_t n;
    if (!obj_raw(o, &p, &n))
        return BASE_EPARSE;
    if (n && memchr(p, 0, n))
        return BASE_EPARSE;
    *out = base_arena_strndup(a, n ? (const char *)p : "", n);
    return 0;
}

static int conv_bytes(const msgpack_object *o, struct base_arena *a, struct gossip_bytes *out)
{
    const uint8_t *p;
    size_t n;
    if (!obj_raw(o, &p, &n))
        return BASE_EPARSE;
    uint8_t *c = NULL;
    if (n) {
        c = base_arena_alloc(a, n);
        memcpy(c, p, n);
    }
    out->p = c;
    out->n = n;
    return 0;
}

static int conv_uint(const msgpack_object *o, uint64_t max, uint64_t *out)
{
    if (o->type == MSGPACK_OBJECT_NIL) {
        *out = 0;
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max)
        return BASE_EPARSE;
    *out = o->via.u64;
    return 0;
}

static int conv_int(const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_NIL) {
        *out = 0;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > INT64_MAX)
        return BASE_EPARSE;
    *out = (int64_t)o->via.u64;
    return 0;
}

static int conv_bool(const msgpack_object *o, bool *out)
{
    if (o->type == MSGPACK_OBJECT_NIL) {
        *out = false;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_BOOLEAN) {
        *out = o->via.boolean;
        return 0;
    }
    /* go-msgpack reads 0 and 1 as bools too */
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= 1) {
        *out = o->via.u64 == 1;
        return 0;
    }
    return BASE_EPARSE;
}

/* A struct's fields, in Go's encoded (sorted) order. */
enum fkind { F_U8, F_U16, F_U32, F_U64, F_I64, F_INT, F_BOOL, F_STR, F_BYTES, F_VSN };
struct field {
    const char *name;
    uint8_t kind;
    bool omitempty;
    size_t off;
    size_t flag_off; /* F_VSN: the bool saying it is present */
};
#define FIELD(T, name, kind, member)                                                               \
    {                                                                                              \
        name, kind, false, offsetof(T, member), 0                                                  \
    }
#define FIELD_OMIT(T, name, kind, member)                                                          \
    {                                                                                              \
        name, kind, true, offsetof(T, member), 0                                                   \
    }
#define FIELD_VSN(T, name, member, flag)                                                           \
    {                                                                                              \
        name, F_VSN, false, offsetof(T, member), offsetof(T, flag)                                 \
    }

static int conv_field(const struct field *f, const msgpack_object *v, struct base_arena *a,
                      void *base)
{
    char *dst = (char *)base + f->off;
    uint64_t u;
    int rv;
    switch (f->kind) {
    case F_U8:
        if ((rv = conv_uint(v, UINT8_MAX, &u)) == 0)
            *(uint8_t *)dst = (uint8_t)u;
        return rv;
    case F_U16:
        if ((rv = conv_uint(v, UINT16_MAX, &u)) == 0)
            *(uint16_t *)dst = (uint16_t)u;
        return rv;
    case F_U32:
        if ((rv = conv_uint(v, UINT32_MAX, &u)) == 0)
            *(uint32_t *)dst = (uint32_t)u;
        return rv;
    case F_U64:
        return conv_uint(v, UINT64_MAX, (uint64_t *)dst);
    case F_I64:
        return conv_int(v, (int64_t *)dst);
    case F_INT: {
        /* A Go int used as a count or length: non-negative, within int32 here. */
        int64_t i;
        if ((rv = conv_int(v, &i)) != 0)
            return rv;
        if (i < 0 || i > INT32_MAX)
            return BASE_EPARSE;
        *(int64_t *)dst = i;
        return 0;
    }
    case F_BOOL:
        return conv_bool(v, (bool *)dst);
    case F_STR:
        return conv_str(v, a, (const char **)dst);
    case F_BYTES:
        return conv_bytes(v, a, (struct gossip_bytes *)dst);
    case F_VSN: {
        const uint8_t *p;
        size_t n;
        if (!obj_raw(v, &p, &n))
            return BASE_EPARSE;
        bool *has = (bool *)((char *)base + f->flag_off);
        if (n == 0) {
            *has = false;
            return 0;
        }
        if (n < GOSSIP_VSN_LEN)
            return BASE_EPARSE;
        memcpy(dst, p, GOSSIP_VSN_LEN);
        *has = true;
        return 0;
    }
    }
    return BASE_EPARSE;
}

static bool key_is(const msgpack_object *k, const char *name)
{
    const uint8_t *p;
    size_t n;
    if (!obj_raw(k, &p, &n))
        return false;
    return n == strlen(name) && (n == 0 || memcmp(p, name, n) == 0);
}

/* Sets every field to its zero value ("" for strings), then fills those the map has. */
static int conv_struct(const msgpack_object *o, const struct field *fields, size_t nf,
                       struct base_arena *a, void *base)
{
    for (size_t i = 0; i < nf; i++) {
        char *dst = (char *)base + fields[i].off;
        switch (fields[i].kind) {
        case F_U8:
            *(uint8_t *)dst = 0;
            break;
        case F_U16:
            *(uint16_t *)dst = 0;
            break;
        case F_U32:
            *(uint32_t *)dst = 0;
            break;
        case F_U64:
            *(uint64_t *)dst = 0;
            break;
        case F_I64:
        case F_INT:
            *(int64_t *)dst = 0;
            break;
        case F_BOOL:
            *(bool *)dst = false;
            break;
        case F_STR:
            *(const char **)dst = "";
            break;
        case F_BYTES:
            *(struct gossip_bytes *)dst = (struct gossip_bytes){NULL, 0};
            break;
        case F_VSN:
            memset(dst, 0, GOSSIP_VSN_LEN);
            *(bool *)((char *)base + fields[i].flag_off) = false;
            break;
        }
    }
    if (o->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (o->type != MSGPACK_OBJECT_MAP)
        return BASE_EPARSE;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR && kv->key.type != MSGPACK_OBJECT_BIN)
            return BASE_EPARSE;
        for (size_t j = 0; j < nf; j++) {
            if (key_is(&kv->key, fields[j].name)) {
                int rv = conv_field(&fields[j], &kv->val, a, base);
                if (rv != 0)
                    return rv;
                break;
            }
        }
    }
    return 0;
}

/* The value of key in map o, or NULL. */
static const msgpack_object *map_get(const msgpack_object *o, const char *key)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return NULL;
    const msgpack_object *found = NULL;
    for (uint32_t i = 0; i < o->via.map.size; i++)
        if (key_is(&o->via.map.ptr[i].key, key))
            found = &o->via.map.ptr[i].val; /* the last wins, as in Go */
    return found;
}

/* ---- encoding ------------------------------------------------------------------------------- */

static int buf_write(void *data, const char *p, size_t n)
{
    base_buf_append(data, p, n);
    return 0;
}

static void pk_init(msgpack_packer *pk, struct base_buf *b)
{
    msgpack_packer_init(pk, b, buf_write);
}

/* go-msgpack without WriteExt: raw (fixraw, raw16, raw32) for strings and bytes alike. */
static void pk_raw(msgpack_packer *pk, const void *p, size_t n)
{
    (void)msgpack_pack_v4raw(pk, n);
    if (n)
        (void)msgpack_pack_v4raw_body(pk, p, n);
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    pk_raw(pk, s ? s : "", s ? strlen(s) : 0);
}

static bool field_empty(const struct field *f, const void *base)
{
    const char *src = (const char *)base + f->off;
    switch (f->kind) {
    case F_U8:
        return *(const uint8_t *)src == 0;
    case F_U16:
        return *(const uint16_t *)src == 0;
    case F_U32:
        return *(const uint32_t *)src == 0;
    case F_U64:
        return *(const uint64_t *)src == 0;
    case F_I64:
    case F_INT:
        return *(const int64_t *)src == 0;
    case F_BOOL:
        return !*(const bool *)src;
    case F_STR: {
        const char *s = *(const char *const *)src;
        return !s || !*s;
    }
    case F_BYTES:
        return ((const struct gossip_bytes *)src)->n == 0;
    case F_VSN:
        return !*(const bool *)((const char *)base + f->flag_off);
    }
    return true;
}

/* The key-value pairs of fields (the caller wrote the map's header). */
static void pk_fields(msgpack_packer *pk, const struct field *fields, size_t nf, const void *base)
{
    for (size_t i = 0; i < nf; i++) {
        const struct field *f = &fields[i];
        if (f->omitempty && field_empty(f, base))
            continue;
        pk_str(pk, f->name);
        const char *src = (const char *)base + f->off;
        switch (f->kind) {
        case F_U8:
            (void)msgpack_pack_uint8(pk, *(const uint8_t *)src);
            break;
        case F_U16:
            (void)msgpack_pack_uint16(pk, *(const uint16_t *)src);
            break;
        case F_U32:
            (void)msgpack_pack_uint32(pk, *(const uint32_t *)src);
            break;
        case F_U64:
            (void)msgpack_pack_uint64(pk, *(const uint64_t *)src);
            break;
        case F_I64:
        case F_INT:
            (void)msgpack_pack_int64(pk, *(const int64_t *)src);
            break;
        case F_BOOL:
            if (*(const bool *)src)
                (void)msgpack_pack_true(pk);
            else
                (void)msgpack_pack_false(pk);
            break;
        case F_STR:
            pk_str(pk, *(const char *const *)src);
            break;
        case F_BYTES: {
            /* Go: a nil []byte is nil; ours cannot tell nil from empty, and both decode the
             * same, so empty bytes go as nil (what Go sends for fields it never set). */
            const struct gossip_bytes *bs = (const struct gossip_bytes *)src;
            if (bs->n == 0)
                (void)msgpack_pack_nil(pk);
            else
                pk_raw(pk, bs->p, bs->n);
            break;
        }
        case F_VSN:
            if (*(const bool *)((const char *)base + f->flag_off))
                pk_raw(pk, src, GOSSIP_VSN_LEN);
            else
                (void)msgpack_pack_nil(pk);
            break;
        }
    }
}

static void pk_struct(msgpack_packer *pk, const struct field *fields, size_t nf, const void *base)
{
    size_t n = 0;
    for (size_t i = 0; i < nf; i++)
        n += !(fields[i].omitempty && field_empty(&fields[i], base));
    (void)msgpack_pack_map(pk, n);
    pk_fields(pk, fields, nf, base);
}

/* ---- memberlist's messages ------------------------------------------------------------------ */

static const struct field ping_fields[] = {
    FIELD(struct gossip_ping, "Node", F_STR, node),
    FIELD(struct gossip_ping, "SeqNo", F_U32, seq),
    FIELD_OMIT(struct gossip_ping, "SourceAddr", F_BYTES, source_addr),
    FIELD_OMIT(struct gossip_ping, "SourceNode", F_STR, source_node),
    FIELD_OMIT(struct gossip_ping, "SourcePort", F_U16, source_port),
};

static const struct field indirect_fields[] = {
    FIELD(struct gossip_indirect_ping, "Nack", F_BOOL, nack),
    FIELD(struct gossip_indirect_ping, "Node", F_STR, node),
    FIELD(struct gossip_indirect_ping, "Port", F_U16, port),
    FIELD(struct gossip_indirect_ping, "SeqNo", F_U32, seq),
    FIELD_OMIT(struct gossip_indirect_ping, "SourceAddr", F_BYTES, source_addr),
    FIELD_OMIT(struct gossip_indirect_ping, "SourceNode", F_STR, source_node),
    FIELD_OMIT(struct gossip_indirect_ping, "SourcePort", F_U16, source_port),
    FIELD(struct gossip_indirect_ping, "Target", F_BYTES, target),
};

static const struct field ack_fields[] = {
    FIELD(struct gossip_ack, "Payload", F_BYTES, payload),
    FIELD(struct gossip_ack, "SeqNo", F_U32, seq),
};

static const struct field nack_fields[] = {
    FIELD(struct gossip_nack, "SeqNo", F_U32, seq),
};

static const struct field err_fields[] = {
    FIELD(struct gossip_err, "Error", F_STR, error),
};

static const struct field suspect_fields[] = {
    FIELD(struct gossip_suspect, "From", F_STR, from),
    FIELD(struct gossip_suspect, "Incarnation", F_U32, incarnation),
    FIELD(struct gossip_suspect, "Node", F_STR, node),
};

static const struct field alive_fields[] = {
    FIELD(struct gossip_alive, "Addr", F_BYTES, addr),
    FIELD(struct gossip_alive, "Incarnation", F_U32, incarnation),
    FIELD(struct gossip_alive, "Meta", F_BYTES, meta),
    FIELD(struct gossip_alive, "Node", F_STR, node),
    FIELD(struct gossip_alive, "Port", F_U16, port),
    FIELD_VSN(struct gossip_alive, "Vsn", vsn, has_vsn),
};

static const struct field node_fields[] = {
    FIELD(struct gossip_push_node, "Addr", F_BYTES, addr),
    FIELD(struct gossip_push_node, "Incarnation", F_U32, incarnation),
    FIELD(struct gossip_push_node, "Meta", F_BYTES, meta),
    FIELD(struct gossip_push_node, "Name", F_STR, name),
    FIELD(struct gossip_push_node, "Port", F_U16, port),
    FIELD(struct gossip_push_node, "State", F_U8, state),
    FIELD_VSN(struct gossip_push_node, "Vsn", vsn, has_vsn),
};

struct pp_header {
    bool join;
    int64_t nodes;
    int64_t user_state_len;
};
static const struct field pp_header_fields[] = {
    FIELD(struct pp_header, "Join", F_BOOL, join),
    FIELD(struct pp_header, "Nodes", F_INT, nodes),
    FIELD(struct pp_header, "UserStateLen", F_INT, user_state_len),
};

struct user_header {
    int64_t len;
};
static const struct field user_header_fields[] = {
    FIELD(struct user_header, "UserMsgLen", F_INT, len),
};

struct compress_body {
    uint8_t algo;
    struct gossip_bytes buf;
};
static const struct field compress_fields[] = {
    FIELD(struct compress_body, "Algo", F_U8, algo),
    FIELD(struct compress_body, "Buf", F_BYTES, buf),
};

#define DECODE_STRUCT(obj, fields, a, dst) conv_struct(obj, fields, BASE_ARRAY_LEN(fields), a, dst)
#define ENCODE_STRUCT(pk, fields, src)     pk_struct(pk, fields, BASE_ARRAY_LEN(fields), src)

/* The body of a one-value message of type t into m. */
static int body_decode(uint8_t t, const uint8_t *p, size_t n, struct base_arena *a,
                       struct gossip_msg *m, size_t *used)
{
    msgpack_unpacked u;
    size_t len;
    int rv = mp_unpack(p, n, &u, &len);
    if (rv != 0)
        return rv;
    const msgpack_object *o = &u.data;
    memset(m, 0, sizeof(*m));
    m->type = t;
    switch (t) {
    case GOSSIP_PING:
        rv = DECODE_STRUCT(o, ping_fields, a, &m->u.ping);
        break;
    case GOSSIP_INDIRECT_PING:
        rv = DECODE_STRUCT(o, indirect_fields, a, &m->u.indirect);
        break;
    case GOSSIP_ACK:
        rv = DECODE_STRUCT(o, ack_fields, a, &m->u.ack);
        break;
    case GOSSIP_NACK:
        rv = DECODE_STRUCT(o, nack_fields, a, &m->u.nack);
        break;
    case GOSSIP_ERR:
        rv = DECODE_STRUCT(o, err_fields, a, &m->u.err);
        break;
    case GOSSIP_SUSPECT:
    case GOSSIP_DEAD:
        rv = DECODE_STRUCT(o, suspect_fields, a, &m->u.suspect);
        break;
    case GOSSIP_ALIVE:
        rv = DECODE_STRUCT(o, alive_fields, a, &m->u.alive);
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
    int rv = mp_unpack(p, n, &u, &len);
    if (rv != 0)
        return rv;
    struct compress_body c;
    rv = DECODE_STRUCT(&u.data, compress_fields, a, &c);
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
            size_t l = be16(lens + 2 * i);
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
        int rv = compress_decode(p, n, GOSSIP_WIRE_UDP_MAX, c->a, &plain, &used);
        if (rv == -EAGAIN)
            rv = BASE_EPARSE;
        if (rv != 0)
            return rv;
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

static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
    static uint32_t table[256];
    static bool ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = true;
    }
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
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
        if (n < 5 || crc32_ieee(p + 5, n - 5) != be32(p + 1))
            return BASE_EPARSE;
        p += 5;
        n -= 5;
        out->crc = true;
    }
    struct pkt_ctx c = {a, out, 0};
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
        if ((rv = mp_unpack(p + 1, n - 1, &u, &len)) != 0)
            break;
        rv = DECODE_STRUCT(&u.data, user_header_fields, a, &h);
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
        if ((rv = mp_unpack(p + 1, n - 1, &u, &len)) != 0)
            break;
        rv = DECODE_STRUCT(&u.data, pp_header_fields, a, &h);
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
            if ((rv = mp_unpack(p + off, n - off, &u, &len)) != 0)
                break;
            rv = DECODE_STRUCT(&u.data, node_fields, a, &pp->nodes[i]);
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
        uint32_t l = be32(p + 1);
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
    pk_init(&pk, b);
    base_buf_put_u8(b, m->type);
    switch (m->type) {
    case GOSSIP_PING:
        ENCODE_STRUCT(&pk, ping_fields, &m->u.ping);
        break;
    case GOSSIP_INDIRECT_PING:
        ENCODE_STRUCT(&pk, indirect_fields, &m->u.indirect);
        break;
    case GOSSIP_ACK:
        ENCODE_STRUCT(&pk, ack_fields, &m->u.ack);
        break;
    case GOSSIP_NACK:
        ENCODE_STRUCT(&pk, nack_fields, &m->u.nack);
        break;
    case GOSSIP_ERR:
        ENCODE_STRUCT(&pk, err_fields, &m->u.err);
        break;
    case GOSSIP_SUSPECT:
    case GOSSIP_DEAD:
        ENCODE_STRUCT(&pk, suspect_fields, &m->u.suspect);
        break;
    case GOSSIP_ALIVE:
        ENCODE_STRUCT(&pk, alive_fields, &m->u.alive);
        break;
    case GOSSIP_USER:
        base_buf_append(b, m->u.user.p, m->u.user.n);
        break;
    case GOSSIP_PUSH_PULL: {
        const struct gossip_push_pull *pp = &m->u.push_pull;
        struct pp_header h = {pp->join, (int64_t)pp->n_nodes, (int64_t)pp->user_state.n};
        ENCODE_STRUCT(&pk, pp_header_fields, &h);
        for (size_t i = 0; i < pp->n_nodes; i++)
            ENCODE_STRUCT(&pk, node_fields, &pp->nodes[i]);
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
    pk_init(&pk, b);
    base_buf_put_u8(b, GOSSIP_USER);
    struct user_header h = {(int64_t)n};
    ENCODE_STRUCT(&pk, user_header_fields, &h);
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
    pk_init(&pk, b);
    base_buf_put_u8(b, GOSSIP_COMPRESS);
    ENCODE_STRUCT(&pk, compress_fields, &c);
    base_buf_free(&z);
}

/* ---- serf's messages ------------------------------------------------------------------------ */

static const struct field serf_leave_fields[] = {
    FIELD(struct gossip_serf_join, "LTime", F_U64, ltime),
    FIELD(struct gossip_serf_join, "Node", F_STR, node),
    FIELD(struct gossip_serf_join, "Prune", F_BOOL, prune),
};
static const struct field serf_join_fields[] = {
    FIELD(struct gossip_serf_join, "LTime", F_U64, ltime),
    FIELD(struct gossip_serf_join, "Node", F_STR, node),
};
static const struct field serf_event_fields[] = {
    FIELD(struct gossip_serf_user_event, "CC", F_BOOL, cc),
    FIELD(struct gossip_serf_user_event, "LTime", F_U64, ltime),
    FIELD(struct gossip_serf_user_event, "Name", F_STR, name),
    FIELD(struct gossip_serf_user_event, "Payload", F_BYTES, payload),
};
static const struct field serf_one_event_fields[] = {
    FIELD(struct gossip_serf_event, "Name", F_STR, name),
    FIELD(struct gossip_serf_event, "Payload", F_BYTES, payload),
};
/* query's fields: Addr, then Filters (handled apart), then the rest */
static const struct field serf_query_addr_field[] = {
    FIELD(struct gossip_serf_query, "Addr", F_BYTES, addr),
};
static const struct field serf_query_rest_fields[] = {
    FIELD(struct gossip_serf_query, "Flags", F_U32, flags),
    FIELD(struct gossip_serf_query, "ID", F_U32, id),
    FIELD(struct gossip_serf_query, "LTime", F_U64, ltime),
    FIELD(struct gossip_serf_query, "Name", F_STR, name),
    FIELD(struct gossip_serf_query, "Payload", F_BYTES, payload),
    FIELD(struct gossip_serf_query, "Port", F_U16, port),
    FIELD(struct gossip_serf_query, "RelayFactor", F_U8, relay_factor),
    FIELD(struct gossip_serf_query, "SourceNode", F_STR, source_node),
    FIELD(struct gossip_serf_query, "Timeout", F_I64, timeout_ns),
};
static const struct field serf_response_fields[] = {
    FIELD(struct gossip_serf_query_response, "Flags", F_U32, flags),
    FIELD(struct gossip_serf_query_response, "From", F_STR, from),
    FIELD(struct gossip_serf_query_response, "ID", F_U32, id),
    FIELD(struct gossip_serf_query_response, "LTime", F_U64, ltime),
    FIELD(struct gossip_serf_query_response, "Payload", F_BYTES, payload),
};
static const struct field serf_key_request_fields[] = {
    FIELD(struct gossip_serf_key_request, "Key", F_BYTES, key),
};
/* key response's scalar fields; Keys is handled apart (first in order) */
static const struct field serf_key_response_fields[] = {
    FIELD(struct gossip_serf_key_response, "Message", F_STR, message),
    FIELD(struct gossip_serf_key_response, "PrimaryKey", F_STR, primary_key),
    FIELD(struct gossip_serf_key_response, "Result", F_BOOL, result),
};
static const struct field serf_pp_fields[] = {
    FIELD(struct gossip_serf_push_pull, "EventLTime", F_U64, event_ltime),
    FIELD(struct gossip_serf_push_pull, "LTime", F_U64, ltime),
    FIELD(struct gossip_serf_push_pull, "QueryLTime", F_U64, query_ltime),
};
struct relay_addr {
    struct gossip_bytes ip;
    int64_t port;
    const char *zone;
};
static const struct field relay_addr_fields[] = {
    FIELD(struct relay_addr, "IP", F_BYTES, ip),
    FIELD(struct relay_addr, "Port", F_I64, port),
    FIELD(struct relay_addr, "Zone", F_STR, zone),
};
struct relay_header {
    const char *dest_name;
};
static const struct field relay_header_fields[] = {
    FIELD(struct relay_header, "DestName", F_STR, dest_name),
};

/* An array (or nil) of strings. */
static int conv_str_array(const msgpack_object *o, struct base_arena *a, const char ***out,
                          size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!o || o->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return BASE_EPARSE;
    *n = o->via.array.size;
    if (*n == 0)
        return 0;
    *out = base_arena_alloc(a, *n * sizeof(**out));
    for (size_t i = 0; i < *n; i++) {
        int rv = conv_str(&o->via.array.ptr[i], a, &(*out)[i]);
        if (rv != 0)
            return rv;
    }
    return 0;
}

static int serf_push_pull_decode(const msgpack_object *o, struct base_arena *a,
                                 struct gossip_serf_push_pull *pp)
{
    int rv = DECODE_STRUCT(o, serf_pp_fields, a, pp);
    if (rv != 0)
        return rv;
    if (o->type != MSGPACK_OBJECT_MAP)
        return 0; /* nil */
    const msgpack_object *st = map_get(o, "StatusLTimes");
    if (st && st->type != MSGPACK_OBJECT_NIL) {
        if (st->type != MSGPACK_OBJECT_MAP)
            return BASE_EPARSE;
        pp->n_status = st->via.map.size;
        pp->status = pp->n_status ? base_arena_alloc(a, pp->n_status * sizeof(*pp->status)) : NULL;
        for (size_t i = 0; i < pp->n_status; i++) {
            const msgpack_object_kv *kv = &st->via.map.ptr[i];
            if (kv->key.type == MSGPACK_OBJECT_NIL)
                return BASE_EPARSE;
            if ((rv = conv_str(&kv->key, a, &pp->status[i].node)) != 0 ||
                (rv = conv_uint(&kv->val, UINT64_MAX, &pp->status[i].ltime)) != 0)
                return rv;
        }
    }
    if ((rv = conv_str_array(map_get(o, "LeftMembers"), a, &pp->left, &pp->n_left)) != 0)
        return rv;
    const msgpack_object *ev = map_get(o, "Events");
    if (ev && ev->type != MSGPACK_OBJECT_NIL) {
        if (ev->type != MSGPACK_OBJECT_ARRAY)
            return BASE_EPARSE;
        size_t slots = ev->via.array.size, k = 0;
        pp->events = slots ? base_arena_alloc(a, slots * sizeof(*pp->events)) : NULL;
        for (size_t i = 0; i < slots; i++) {
            const msgpack_object *e = &ev->via.array.ptr[i];
            if (e->type == MSGPACK_OBJECT_NIL)
                continue;
            if (e->type != MSGPACK_OBJECT_MAP)
                return BASE_EPARSE;
            struct gossip_serf_events *dst = &pp->events[k++];
            memset(dst, 0, sizeof(*dst));
            const msgpack_object *lt = map_get(e, "LTime");
            if (lt && (rv = conv_uint(lt, UINT64_MAX, &dst->ltime)) != 0)
                return rv;
            const msgpack_object *list = map_get(e, "Events");
            if (!list || list->type == MSGPACK_OBJECT_NIL)
                continue;
            if (list->type != MSGPACK_OBJECT_ARRAY)
                return BASE_EPARSE;
            dst->n = list->via.array.size;
            dst->events = dst->n ? base_arena_alloc(a, dst->n * sizeof(*dst->events)) : NULL;
            for (size_t j = 0; j < dst->n; j++)
                if ((rv = DECODE_STRUCT(&list->via.array.ptr[j], serf_one_event_fields, a,
                                        &dst->events[j])) != 0)
                    return rv;
        }
        pp->n_events = k;
    }
    return 0;
}

static int serf_query_decode(const msgpack_object *o, struct base_arena *a,
                             struct gossip_serf_query *q)
{
    int rv = DECODE_STRUCT(o, serf_query_addr_field, a, q);
    if (rv == 0)
        rv = DECODE_STRUCT(o, serf_query_rest_fields, a, q);
    if (rv != 0)
        return rv;
    const msgpack_object *f = o->type == MSGPACK_OBJECT_MAP ? map_get(o, "Filters") : NULL;
    if (!f || f->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (f->type != MSGPACK_OBJECT_ARRAY)
        return BASE_EPARSE;
    q->n_filters = f->via.array.size;
    q->filters = q->n_filters ? base_arena_alloc(a, q->n_filters * sizeof(*q->filters)) : NULL;
    for (size_t i = 0; i < q->n_filters; i++) {
        if ((rv = conv_bytes(&f->via.array.ptr[i], a, &q->filters[i])) != 0)
            return rv;
        if (q->filters[i].n == 0) /* serf reads the filter's type byte unchecked */
            return BASE_EPARSE;
    }
    return 0;
}

int gossip__serf_decode(const uint8_t *p, size_t n, struct base_arena *a,
                        struct gossip_serf_msg *out)
{
    memset(out, 0, sizeof(*out));
    if (n < 1)
        return BASE_EPARSE;
    out->type = p[0];
    if (out->type == GOSSIP_SERF_CONFLICT_RESPONSE) {
        uint8_t *copy = NULL;
        if (n > 1) {
            copy = base_arena_alloc(a, n - 1);
            memcpy(copy, p + 1, n - 1);
        }
        out->u.conflict = (struct gossip_bytes){copy, n - 1};
        return 0;
    }
    if (out->type > GOSSIP_SERF_RELAY)
        return BASE_EPARSE;
    msgpack_unpacked u;
    size_t len;
    int rv = mp_unpack_all(p + 1, n - 1, &u, &len);
    if (rv != 0)
        return rv;
    const msgpack_object *o = &u.data;
    switch (out->type) {
    case GOSSIP_SERF_LEAVE:
        rv = DECODE_STRUCT(o, serf_leave_fields, a, &out->u.join);
        break;
    case GOSSIP_SERF_JOIN:
        rv = DECODE_STRUCT(o, serf_join_fields, a, &out->u.join);
        break;
    case GOSSIP_SERF_PUSH_PULL:
        rv = serf_push_pull_decode(o, a, &out->u.push_pull);
        break;
    case GOSSIP_SERF_USER_EVENT:
        rv = DECODE_STRUCT(o, serf_event_fields, a, &out->u.event);
        break;
    case GOSSIP_SERF_QUERY:
        rv = serf_query_decode(o, a, &out->u.query);
        break;
    case GOSSIP_SERF_QUERY_RESPONSE:
        rv = DECODE_STRUCT(o, serf_response_fields, a, &out->u.response);
        break;
    case GOSSIP_SERF_KEY_REQUEST:
        rv = DECODE_STRUCT(o, serf_key_request_fields, a, &out->u.key_request);
        break;
    case GOSSIP_SERF_KEY_RESPONSE: {
        struct gossip_serf_key_response *k = &out->u.key_response;
        rv = DECODE_STRUCT(o, serf_key_response_fields, a, k);
        if (rv == 0 && o->type == MSGPACK_OBJECT_MAP)
            rv = conv_str_array(map_get(o, "Keys"), a, &k->keys, &k->n_keys);
        break;
    }
    case GOSSIP_SERF_RELAY: {
        struct gossip_serf_relay *r = &out->u.relay;
        struct relay_header h;
        struct relay_addr ad;
        rv = DECODE_STRUCT(o, relay_header_fields, a, &h);
        const msgpack_object *d = o->type == MSGPACK_OBJECT_MAP ? map_get(o, "DestAddr") : NULL;
        if (rv == 0)
            rv = d ? DECODE_STRUCT(d, relay_addr_fields, a, &ad) : BASE_EPARSE;
        if (rv != 0)
            break;
        r->dest_name = h.dest_name;
        r->dest_ip = ad.ip;
        r->dest_port = ad.port;
        r->dest_zone = ad.zone;
        size_t rest = n - 1 - len;
        if (rest == 0) {
            rv = BASE_EPARSE;
            break;
        }
        uint8_t *copy = base_arena_alloc(a, rest);
        memcpy(copy, p + 1 + len, rest);
        r->msg = (struct gossip_bytes){copy, rest};
        break;
    }
    }
    msgpack_unpacked_destroy(&u);
    return rv;
}

static void pk_str_array(msgpack_packer *pk, const char *const *s, size_t n)
{
    (void)msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        pk_str(pk, s[i]);
}

void gossip__serf_encode(struct base_buf *b, const struct gossip_serf_msg *m)
{
    msgpack_packer pk;
    pk_init(&pk, b);
    base_buf_put_u8(b, m->type);
    switch (m->type) {
    case GOSSIP_SERF_LEAVE:
        ENCODE_STRUCT(&pk, serf_leave_fields, &m->u.join);
        break;
    case GOSSIP_SERF_JOIN:
        ENCODE_STRUCT(&pk, serf_join_fields, &m->u.join);
        break;
    case GOSSIP_SERF_USER_EVENT:
        ENCODE_STRUCT(&pk, serf_event_fields, &m->u.event);
        break;
    case GOSSIP_SERF_QUERY_RESPONSE:
        ENCODE_STRUCT(&pk, serf_response_fields, &m->u.response);
        break;
    case GOSSIP_SERF_KEY_REQUEST:
        ENCODE_STRUCT(&pk, serf_key_request_fields, &m->u.key_request);
        break;
    case GOSSIP_SERF_KEY_RESPONSE: {
        const struct gossip_serf_key_response *k = &m->u.key_response;
        (void)msgpack_pack_map(&pk, 4);
        pk_str(&pk, "Keys");
        pk_str_array(&pk, k->keys, k->n_keys);
        pk_str(&pk, "Message");
        pk_str(&pk, k->message);
        pk_str(&pk, "PrimaryKey");
        pk_str(&pk, k->primary_key);
        pk_str(&pk, "Result");
        if (k->result)
            (void)msgpack_pack_true(&pk);
        else
            (void)msgpack_pack_false(&pk);
        break;
    }
    case GOSSIP_SERF_QUERY: {
        /* Go's order: Addr, Filters, Flags, ID, LTime, Name, Payload, Port, RelayFactor,
         * SourceNode, Timeout. Empty bytes go as nil, as Go sends fields it never set. */
        const struct gossip_serf_query *q = &m->u.query;
        (void)msgpack_pack_map(&pk, 11);
        pk_str(&pk, "Addr");
        if (q->addr.n)
            pk_raw(&pk, q->addr.p, q->addr.n);
        else
            (void)msgpack_pack_nil(&pk);
        pk_str(&pk, "Filters");
        if (q->n_filters) {
            (void)msgpack_pack_array(&pk, q->n_filters);
            for (size_t i = 0; i < q->n_filters; i++)
                pk_raw(&pk, q->filters[i].p, q->filters[i].n);
        } else {
            (void)msgpack_pack_nil(&pk);
        }
        pk_fields(&pk, serf_query_rest_fields, BASE_ARRAY_LEN(serf_query_rest_fields), q);
        break;
    }
    case GOSSIP_SERF_PUSH_PULL: {
        /* Go's order: EventLTime, Events, LTime, LeftMembers, QueryLTime, StatusLTimes */
        const struct gossip_serf_push_pull *pp = &m->u.push_pull;
        (void)msgpack_pack_map(&pk, 6);
        pk_str(&pk, "EventLTime");
        (void)msgpack_pack_uint64(&pk, pp->event_ltime);
        pk_str(&pk, "Events");
        (void)msgpack_pack_array(&pk, pp->n_events);
        for (size_t i = 0; i < pp->n_events; i++) {
            const struct gossip_serf_events *e = &pp->events[i];
            (void)msgpack_pack_map(&pk, 2);
            pk_str(&pk, "Events");
            (void)msgpack_pack_array(&pk, e->n);
            for (size_t j = 0; j < e->n; j++)
                ENCODE_STRUCT(&pk, serf_one_event_fields, &e->events[j]);
            pk_str(&pk, "LTime");
            (void)msgpack_pack_uint64(&pk, e->ltime);
        }
        pk_str(&pk, "LTime");
        (void)msgpack_pack_uint64(&pk, pp->ltime);
        pk_str(&pk, "LeftMembers");
        pk_str_array(&pk, pp->left, pp->n_left);
        pk_str(&pk, "QueryLTime");
        (void)msgpack_pack_uint64(&pk, pp->query_ltime);
        pk_str(&pk, "StatusLTimes");
        (void)msgpack_pack_map(&pk, pp->n_status);
        for (size_t i = 0; i < pp->n_status; i++) {
            pk_str(&pk, pp->status[i].node);
            (void)msgpack_pack_uint64(&pk, pp->status[i].ltime);
        }
        break;
    }
    case GOSSIP_SERF_RELAY: {
        const struct gossip_serf_relay *r = &m->u.relay;
        (void)msgpack_pack_map(&pk, 2);
        pk_str(&pk, "DestAddr");
        struct relay_addr ad = {r->dest_ip, r->dest_port, r->dest_zone};
        ENCODE_STRUCT(&pk, relay_addr_fields, &ad);
        pk_str(&pk, "DestName");
        pk_str(&pk, r->dest_name);
        base_buf_append(b, r->msg.p, r->msg.n);
        break;
    }
    case GOSSIP_SERF_CONFLICT_RESPONSE:
        base_buf_append(b, m->u.conflict.p, m->u.conflict.n);
        break;
    default:
        break;
    }
}

/* ---- tags ----------------------------------------------------------------------------------- */

#define TAG_MAGIC 255

int gossip__tags_decode(const uint8_t *p, size_t n, struct base_arena *a, struct gossip_tag **tags,
                        size_t *n_tags)
{
    *tags = NULL;
    *n_tags = 0;
    if (n == 0 || p[0] != TAG_MAGIC) {
        /* serf protocol < 3: the meta is the role */
        if (n && memchr(p, 0, n))
            return BASE_EPARSE;
        struct gossip_tag *t = base_arena_alloc(a, sizeof(*t));
        t->key = "role";
        t->value = base_arena_strndup(a, n ? (const char *)p : "", n);
        *tags = t;
        *n_tags = 1;
        return 0;
    }
    msgpack_unpacked u;
    size_t len;
    int rv = mp_unpack_all(p + 1, n - 1, &u, &len);
    if (rv != 0)
        return rv;
    const msgpack_object *o = &u.data;
    if (o->type == MSGPACK_OBJECT_MAP) {
        size_t k = o->via.map.size;
        struct gossip_tag *t = k ? base_arena_alloc(a, k * sizeof(*t)) : NULL;
        for (size_t i = 0; rv == 0 && i < k; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type == MSGPACK_OBJECT_NIL)
                rv = BASE_EPARSE;
            else if ((rv = conv_str(&kv->key, a, &t[i].key)) == 0)
                rv = conv_str(&kv->val, a, &t[i].value);
        }
        *tags = t;
        *n_tags = k;
    } else if (o->type != MSGPACK_OBJECT_NIL) {
        rv = BASE_EPARSE;
    }
    msgpack_unpacked_destroy(&u);
    return rv;
}

static int tag_cmp(const void *x, const void *y)
{
    return strcmp(((const struct gossip_tag *)x)->key, ((const struct gossip_tag *)y)->key);
}

void gossip__tags_encode(struct base_buf *b, const struct gossip_tag *tags, size_t n)
{
    struct gossip_tag *sorted = base_malloc((n ? n : 1) * sizeof(*sorted));
    if (n)
        memcpy(sorted, tags, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), tag_cmp);
    msgpack_packer pk;
    pk_init(&pk, b);
    base_buf_put_u8(b, TAG_MAGIC);
    (void)msgpack_pack_map(&pk, n);
    for (size_t i = 0; i < n; i++) {
        pk_str(&pk, sorted[i].key);
        pk_str(&pk, sorted[i].value);
    }
    base_free(sorted);
}
