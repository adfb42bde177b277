/* gossip/mp.c: the msgpack layer of gossip/'s codec (mp.h). */
#include "gossip/mp.h"

#include <errno.h>
#include <string.h>

/* ---- msgpack scan --------------------------------------------------------------------------- */

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
                uint64_t l = hdr == 1   ? p[off]
                             : hdr == 2 ? gossip__be16(p + off)
                                        : gossip__be32(p + off);
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
int gossip__mp_unpack(const uint8_t *p, size_t n, msgpack_unpacked *u, size_t *used)
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
int gossip__mp_unpack_all(const uint8_t *p, size_t n, msgpack_unpacked *u, size_t *used)
{
    int rv = gossip__mp_unpack(p, n, u, used);
    return rv == -EAGAIN ? BASE_EPARSE : rv;
}

/* ---- field conversion ----------------------------------------------------------------------- */

bool gossip__mp_raw(const msgpack_object *o, const uint8_t **p, size_t *n)
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

int gossip__mp_str(const msgpack_object *o, struct base_arena *a, const char **out)
{
    const uint8_t *p;
    size_t n;
    if (!gossip__mp_raw(o, &p, &n))
        return BASE_EPARSE;
    if (n && memchr(p, 0, n))
        return BASE_EPARSE;
    *out = base_arena_strndup(a, n ? (const char *)p : "", n);
    return 0;
}

int gossip__mp_bytes(const msgpack_object *o, struct base_arena *a, struct gossip_bytes *out)
{
    const uint8_t *p;
    size_t n;
    if (!gossip__mp_raw(o, &p, &n))
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

int gossip__mp_uint(const msgpack_object *o, uint64_t max, uint64_t *out)
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

static int conv_field(const struct gossip_mp_field *f, const msgpack_object *v,
                      struct base_arena *a, void *base)
{
    char *dst = (char *)base + f->off;
    uint64_t u;
    int rv;
    switch (f->kind) {
    case GOSSIP_MP_U8:
        if ((rv = gossip__mp_uint(v, UINT8_MAX, &u)) == 0)
            *(uint8_t *)dst = (uint8_t)u;
        return rv;
    case GOSSIP_MP_U16:
        if ((rv = gossip__mp_uint(v, UINT16_MAX, &u)) == 0)
            *(uint16_t *)dst = (uint16_t)u;
        return rv;
    case GOSSIP_MP_U32:
        if ((rv = gossip__mp_uint(v, UINT32_MAX, &u)) == 0)
            *(uint32_t *)dst = (uint32_t)u;
        return rv;
    case GOSSIP_MP_U64:
        return gossip__mp_uint(v, UINT64_MAX, (uint64_t *)dst);
    case GOSSIP_MP_I64:
        return conv_int(v, (int64_t *)dst);
    case GOSSIP_MP_INT: {
        /* A Go int used as a count or length: non-negative, within int32 here. */
        int64_t i;
        if ((rv = conv_int(v, &i)) != 0)
            return rv;
        if (i < 0 || i > INT32_MAX)
            return BASE_EPARSE;
        *(int64_t *)dst = i;
        return 0;
    }
    case GOSSIP_MP_BOOL:
        return conv_bool(v, (bool *)dst);
    case GOSSIP_MP_STR:
        return gossip__mp_str(v, a, (const char **)dst);
    case GOSSIP_MP_BYTES:
        return gossip__mp_bytes(v, a, (struct gossip_bytes *)dst);
    case GOSSIP_MP_VSN: {
        const uint8_t *p;
        size_t n;
        if (!gossip__mp_raw(v, &p, &n))
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
    if (!gossip__mp_raw(k, &p, &n))
        return false;
    return n == strlen(name) && (n == 0 || memcmp(p, name, n) == 0);
}

/* Sets every field to its zero value ("" for strings), then fills those the map has. */
int gossip__mp_struct(const msgpack_object *o, const struct gossip_mp_field *fields, size_t nf,
                      struct base_arena *a, void *base)
{
    for (size_t i = 0; i < nf; i++) {
        char *dst = (char *)base + fields[i].off;
        switch (fields[i].kind) {
        case GOSSIP_MP_U8:
            *(uint8_t *)dst = 0;
            break;
        case GOSSIP_MP_U16:
            *(uint16_t *)dst = 0;
            break;
        case GOSSIP_MP_U32:
            *(uint32_t *)dst = 0;
            break;
        case GOSSIP_MP_U64:
            *(uint64_t *)dst = 0;
            break;
        case GOSSIP_MP_I64:
        case GOSSIP_MP_INT:
            *(int64_t *)dst = 0;
            break;
        case GOSSIP_MP_BOOL:
            *(bool *)dst = false;
            break;
        case GOSSIP_MP_STR:
            *(const char **)dst = "";
            break;
        case GOSSIP_MP_BYTES:
            *(struct gossip_bytes *)dst = (struct gossip_bytes){NULL, 0};
            break;
        case GOSSIP_MP_VSN:
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
const msgpack_object *gossip__mp_get(const msgpack_object *o, const char *key)
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

void gossip__pk_init(msgpack_packer *pk, struct base_buf *b)
{
    msgpack_packer_init(pk, b, buf_write);
}

/* go-msgpack without WriteExt: raw (fixraw, raw16, raw32) for strings and bytes alike. */
void gossip__pk_raw(msgpack_packer *pk, const void *p, size_t n)
{
    (void)msgpack_pack_v4raw(pk, n);
    if (n)
        (void)msgpack_pack_v4raw_body(pk, p, n);
}

void gossip__pk_str(msgpack_packer *pk, const char *s)
{
    gossip__pk_raw(pk, s ? s : "", s ? strlen(s) : 0);
}

static bool field_empty(const struct gossip_mp_field *f, const void *base)
{
    const char *src = (const char *)base + f->off;
    switch (f->kind) {
    case GOSSIP_MP_U8:
        return *(const uint8_t *)src == 0;
    case GOSSIP_MP_U16:
        return *(const uint16_t *)src == 0;
    case GOSSIP_MP_U32:
        return *(const uint32_t *)src == 0;
    case GOSSIP_MP_U64:
        return *(const uint64_t *)src == 0;
    case GOSSIP_MP_I64:
    case GOSSIP_MP_INT:
        return *(const int64_t *)src == 0;
    case GOSSIP_MP_BOOL:
        return !*(const bool *)src;
    case GOSSIP_MP_STR: {
        const char *s = *(const char *const *)src;
        return !s || !*s;
    }
    case GOSSIP_MP_BYTES:
        return ((const struct gossip_bytes *)src)->n == 0;
    case GOSSIP_MP_VSN:
        return !*(const bool *)((const char *)base + f->flag_off);
    }
    return true;
}

/* The key-value pairs of fields (the caller wrote the map's header). */
void gossip__pk_fields(msgpack_packer *pk, const struct gossip_mp_field *fields, size_t nf,
                       const void *base)
{
    for (size_t i = 0; i < nf; i++) {
        const struct gossip_mp_field *f = &fields[i];
        if (f->omitempty && field_empty(f, base))
            continue;
        gossip__pk_str(pk, f->name);
        const char *src = (const char *)base + f->off;
        switch (f->kind) {
        case GOSSIP_MP_U8:
            (void)msgpack_pack_uint8(pk, *(const uint8_t *)src);
            break;
        case GOSSIP_MP_U16:
            (void)msgpack_pack_uint16(pk, *(const uint16_t *)src);
            break;
        case GOSSIP_MP_U32:
            (void)msgpack_pack_uint32(pk, *(const uint32_t *)src);
            break;
        case GOSSIP_MP_U64:
            (void)msgpack_pack_uint64(pk, *(const uint64_t *)src);
            break;
        case GOSSIP_MP_I64:
        case GOSSIP_MP_INT:
            (void)msgpack_pack_int64(pk, *(const int64_t *)src);
            break;
        case GOSSIP_MP_BOOL:
            if (*(const bool *)src)
                (void)msgpack_pack_true(pk);
            else
                (void)msgpack_pack_false(pk);
            break;
        case GOSSIP_MP_STR:
            gossip__pk_str(pk, *(const char *const *)src);
            break;
        case GOSSIP_MP_BYTES: {
            /* Go: a nil []byte is nil; ours cannot tell nil from empty, and both decode the
             * same, so empty bytes go as nil (what Go sends for fields it never set). */
            const struct gossip_bytes *bs = (const struct gossip_bytes *)src;
            if (bs->n == 0)
                (void)msgpack_pack_nil(pk);
            else
                gossip__pk_raw(pk, bs->p, bs->n);
            break;
        }
        case GOSSIP_MP_VSN:
            if (*(const bool *)((const char *)base + f->flag_off))
                gossip__pk_raw(pk, src, GOSSIP_VSN_LEN);
            else
                (void)msgpack_pack_nil(pk);
            break;
        }
    }
}

void gossip__pk_struct(msgpack_packer *pk, const struct gossip_mp_field *fields, size_t nf,
                       const void *base)
{
    size_t n = 0;
    for (size_t i = 0; i < nf; i++)
        n += !(fields[i].omitempty && field_empty(&fields[i], base));
    (void)msgpack_pack_map(pk, n);
    gossip__pk_fields(pk, fields, nf, base);
}
