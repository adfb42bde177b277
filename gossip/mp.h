/* gossip/mp.h (internal to gossip/): msgpack the way go-msgpack 0.5.5 writes it (wire.c's note),
 * over msgpack-c: the bounded scan that runs before msgpack-c sees outside bytes, conversions of
 * unpacked objects with type and range checks, and a table-driven struct codec (a struct's Go
 * fields in Go's sorted order: the encoder writes them so, the decoder matches keys exactly and
 * skips unknown ones, as go-msgpack does). Pure code. */
#ifndef HERALD_GOSSIP_MP_H
#define HERALD_GOSSIP_MP_H

#include "gossip/wire.h"

#include <msgpack.h>

static inline uint32_t gossip__be16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static inline uint32_t gossip__be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Scans (gossip__mp_scan) and unpacks the value at p/n: *used bytes. On 0 the caller destroys
 * u. -EAGAIN when p/n is a prefix of a value; _all: then BASE_EPARSE (p/n is all there is). */
int gossip__mp_unpack(const uint8_t *p, size_t n, msgpack_unpacked *u, size_t *used) BASE_MUSTCHECK;
int gossip__mp_unpack_all(const uint8_t *p, size_t n, msgpack_unpacked *u,
                          size_t *used) BASE_MUSTCHECK;

/* Conversions: nil is the zero value; anything else of the wrong type or range BASE_EPARSE.
 * Strings and bytes are copied into the arena (strings NUL-terminated, refused if they hold a
 * NUL). */
bool gossip__mp_raw(const msgpack_object *o, const uint8_t **p, size_t *n);
int gossip__mp_str(const msgpack_object *o, struct base_arena *a, const char **out) BASE_MUSTCHECK;
int gossip__mp_bytes(const msgpack_object *o, struct base_arena *a,
                     struct gossip_bytes *out) BASE_MUSTCHECK;
int gossip__mp_uint(const msgpack_object *o, uint64_t max, uint64_t *out) BASE_MUSTCHECK;
/* The value of key in map o (the last if repeated, as Go), or NULL. */
const msgpack_object *gossip__mp_get(const msgpack_object *o, const char *key);

/* A struct's fields, in Go's encoded (sorted) order. */
enum gossip_mp_kind {
    GOSSIP_MP_U8,
    GOSSIP_MP_U16,
    GOSSIP_MP_U32,
    GOSSIP_MP_U64,
    GOSSIP_MP_I64,
    GOSSIP_MP_INT,
    GOSSIP_MP_BOOL,
    GOSSIP_MP_STR,
    GOSSIP_MP_BYTES,
    GOSSIP_MP_VSN
};
struct gossip_mp_field {
    const char *name;
    uint8_t kind;
    bool omitempty;
    size_t off;
    size_t flag_off; /* GOSSIP_MP_VSN: the bool saying it is present */
};
#define GOSSIP_MP_FIELD(T, name, kind, member)                                                     \
    {                                                                                              \
        name, kind, false, offsetof(T, member), 0                                                  \
    }
#define GOSSIP_MP_FIELD_OMIT(T, name, kind, member)                                                \
    {                                                                                              \
        name, kind, true, offsetof(T, member), 0                                                   \
    }
#define GOSSIP_MP_FIELD_VSN(T, name, member, flag)                                                 \
    {                                                                                              \
        name, GOSSIP_MP_VSN, false, offsetof(T, member), offsetof(T, flag)                         \
    }

/* Sets every field to its zero value ("" for strings), then fills those the map o has. */
int gossip__mp_struct(const msgpack_object *o, const struct gossip_mp_field *fields, size_t nf,
                      struct base_arena *a, void *base) BASE_MUSTCHECK;
#define GOSSIP_MP_DECODE(obj, fields, a, dst)                                                      \
    gossip__mp_struct(obj, fields, BASE_ARRAY_LEN(fields), a, dst)
#define GOSSIP_MP_ENCODE(pk, fields, src) gossip__pk_struct(pk, fields, BASE_ARRAY_LEN(fields), src)

/* A packer appending to b. */
void gossip__pk_init(msgpack_packer *pk, struct base_buf *b);
/* go-msgpack without WriteExt: raw (fixraw, raw16, raw32) for strings and bytes alike. */
void gossip__pk_raw(msgpack_packer *pk, const void *p, size_t n);
void gossip__pk_str(msgpack_packer *pk, const char *s); /* NULL as "" */
/* A map of the fields (omitempty ones left out when zero); _fields: only the pairs, for a
 * caller that writes the map's header and some pairs itself. */
void gossip__pk_struct(msgpack_packer *pk, const struct gossip_mp_field *fields, size_t nf,
                       const void *base);
void gossip__pk_fields(msgpack_packer *pk, const struct gossip_mp_field *fields, size_t nf,
                       const void *base);

#endif
