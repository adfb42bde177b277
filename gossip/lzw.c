/* gossip/lzw.c: Go's compress/lzw as memberlist uses it (lzw.LSB, litWidth 8): the only
 * compression a memberlist compress message carries, and what serf agents send by default.
 *
 * The format (GIF's LZW): codes are packed least significant bit first, starting 9 bits wide;
 * 256 is clear (reset the table and the width), 257 end of data; every code after the first
 * since a clear defines the next table entry (hi) as the previous code's expansion followed by
 * the first byte of this one's; when hi reaches 1 << width the width grows, up to 12 bits,
 * where the table stops growing until the next clear. Go's reader requires the end code: a
 * stream without one is an error (io.ErrUnexpectedEOF), and so it is here.
 */
#include "gossip/wire.h"

#include <string.h>

#define LZW_MAX_WIDTH 12
#define LZW_CLEAR     256
#define LZW_EOF       257
#define LZW_INVALID   0xffff

int gossip__lzw_decode(const uint8_t *p, size_t n, size_t max, struct base_arena *a,
                       struct gossip_bytes *out)
{
    /* zeroed, as Go's are: an entry read before it is defined expands to byte 0 (only a full
     * table's last entry can be, and Go's writer never sends that code) */
    uint16_t prefix[1 << LZW_MAX_WIDTH] = {0};
    uint8_t suffix[1 << LZW_MAX_WIDTH] = {0};
    uint8_t stack[1 << LZW_MAX_WIDTH];
    struct base_buf o;
    base_buf_init(&o);
    uint32_t bits = 0;
    unsigned nbits = 0, width = 9;
    uint16_t hi = LZW_EOF, overflow = 1 << 9, last = LZW_INVALID;
    size_t i = 0;
    int rv = BASE_EPARSE;
    for (;;) {
        while (nbits < width) {
            if (i == n)
                goto out; /* no end code */
            bits |= (uint32_t)p[i++] << nbits;
            nbits += 8;
        }
        uint16_t code = (uint16_t)(bits & ((1u << width) - 1));
        bits >>= width;
        nbits -= width;
        if (code == LZW_CLEAR) {
            width = 9;
            hi = LZW_EOF;
            overflow = 1 << 9;
            last = LZW_INVALID;
            continue;
        }
        if (code == LZW_EOF) {
            rv = 0;
            goto out;
        }
        uint8_t first;
        if (code < LZW_CLEAR) {
            if (o.len >= max) {
                rv = BASE_ETOOBIG;
                goto out;
            }
            first = (uint8_t)code;
            base_buf_put_u8(&o, first);
        } else if (code <= hi) {
            /* expand right to left into stack; code == hi is the KwKwK case: last's
             * expansion followed by its own first byte */
            size_t k = sizeof(stack);
            uint16_t c = code;
            if (code == hi && last != LZW_INVALID) {
                c = last;
                while (c >= LZW_CLEAR)
                    c = prefix[c];
                stack[--k] = (uint8_t)c;
                c = last;
            }
            while (c >= LZW_CLEAR) {
                if (k == 0)
                    goto out;
                stack[--k] = suffix[c];
                c = prefix[c];
            }
            if (k == 0)
                goto out;
            stack[--k] = (uint8_t)c;
            first = (uint8_t)c;
            size_t len = sizeof(stack) - k;
            if (len > max || o.len > max - len) {
                rv = BASE_ETOOBIG;
                goto out;
            }
            base_buf_append(&o, stack + k, len);
        } else {
            goto out; /* a code not yet defined */
        }
        if (last != LZW_INVALID) {
            suffix[hi] = first;
            prefix[hi] = last;
        }
        last = code;
        hi++;
        if (hi >= overflow) {
            if (width == LZW_MAX_WIDTH) {
                last = LZW_INVALID;
                hi--;
            } else {
                width++;
                overflow = (uint16_t)(1u << width);
            }
        }
    }
out:
    if (rv == 0) {
        uint8_t *copy = o.len ? base_arena_alloc(a, o.len) : NULL;
        if (o.len)
            memcpy(copy, o.data, o.len);
        *out = (struct gossip_bytes){copy, o.len};
    }
    base_buf_free(&o);
    return rv;
}

struct lzw_writer {
    struct base_buf *b;
    uint32_t bits;
    unsigned nbits, width;
};

static void put_code(struct lzw_writer *w, uint16_t code)
{
    w->bits |= (uint32_t)code << w->nbits;
    w->nbits += w->width;
    while (w->nbits >= 8) {
        base_buf_put_u8(w->b, (uint8_t)w->bits);
        w->bits >>= 8;
        w->nbits -= 8;
    }
}

/* The table is a hash of (prefix code, byte) -> code; 2^13 slots for at most 3838 entries. */
#define LZW_HASH_SIZE (1 << 13)
struct lzw_table {
    uint32_t key[LZW_HASH_SIZE]; /* (prefix << 8 | byte) + 1; 0 = empty */
    uint16_t code[LZW_HASH_SIZE];
};

static uint32_t slot_of(const struct lzw_table *t, uint32_t key)
{
    uint32_t h = (key * 2654435761u) >> 19;
    while (t->key[h] && t->key[h] != key)
        h = (h + 1) & (LZW_HASH_SIZE - 1);
    return h;
}

void gossip__lzw_encode(struct base_buf *b, const uint8_t *p, size_t n)
{
    struct lzw_table *t = base_calloc(1, sizeof(*t));
    struct lzw_writer w = {b, 0, 0, 9};
    uint16_t hi = LZW_EOF, overflow = 1 << 9;
    put_code(&w, LZW_CLEAR);
    if (n > 0) {
        uint16_t cur = p[0];
        for (size_t i = 1; i <= n; i++) {
            if (i < n) {
                uint32_t key = ((uint32_t)cur << 8 | p[i]) + 1;
                uint32_t s = slot_of(t, key);
                if (t->key[s]) {
                    cur = t->code[s];
                    continue;
                }
                put_code(&w, cur);
                /* the reader defines entry hi + 1 on its next code: the same entry */
                hi++;
                if (hi >= overflow) {
                    if (w.width == LZW_MAX_WIDTH) {
                        /* the table is full: start again */
                        put_code(&w, LZW_CLEAR);
                        memset(t, 0, sizeof(*t));
                        w.width = 9;
                        hi = LZW_EOF;
                        overflow = 1 << 9;
                        cur = p[i];
                        continue;
                    }
                    w.width++;
                    overflow = (uint16_t)(1u << w.width);
                }
                t->key[s] = key;
                t->code[s] = hi;
                cur = p[i];
            } else {
                put_code(&w, cur);
                hi++;
                if (hi >= overflow && w.width < LZW_MAX_WIDTH) {
                    w.width++;
                    overflow = (uint16_t)(1u << w.width);
                }
            }
        }
    }
    put_code(&w, LZW_EOF);
    if (w.nbits > 0)
        base_buf_put_u8(b, (uint8_t)w.bits);
    base_free(t);
}
