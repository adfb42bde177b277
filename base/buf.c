/* Growable buffers and the little-endian binary codec used for catalog records, Raft
 * commands and snapshots. */
#include "base.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void base_buf_init(struct base_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void base_buf_free(struct base_buf *b)
{
    base_free(b->data);
    base_buf_init(b);
}

void base_buf_reserve(struct base_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < extra)
        cap *= 2;
    b->data = base_realloc(b->data, cap);
    b->cap = cap;
}

void base_buf_append(struct base_buf *b, const void *p, size_t n)
{
    if (!n)
        return;
    base_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void base_buf_printf(struct base_buf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        base_buf_reserve(b, (size_t)n + 1);
        vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

void base_buf_put_u8(struct base_buf *b, uint8_t v)
{
    base_buf_append(b, &v, 1);
}

void base_buf_put_u32(struct base_buf *b, uint32_t v)
{
    uint8_t x[4];
    base_put_le32(x, v);
    base_buf_append(b, x, 4);
}

void base_buf_put_u64(struct base_buf *b, uint64_t v)
{
    base_buf_put_u32(b, (uint32_t)v);
    base_buf_put_u32(b, (uint32_t)(v >> 32));
}

void base_buf_put_bytes(struct base_buf *b, const void *p, size_t n)
{
    base_buf_put_u32(b, (uint32_t)n);
    base_buf_append(b, p, n);
}

void base_buf_put_str(struct base_buf *b, const char *s)
{
    base_buf_put_bytes(b, s ? s : "", s ? strlen(s) : 0);
}

void base_rd_init(struct base_rd *r, const void *p, size_t n)
{
    r->p = p;
    r->left = n;
    r->err = false;
}

static const uint8_t *take(struct base_rd *r, size_t n)
{
    if (r->err || r->left < n) {
        r->err = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

uint8_t base_rd_u8(struct base_rd *r)
{
    const uint8_t *p = take(r, 1);
    return p ? p[0] : 0;
}

uint32_t base_rd_u32(struct base_rd *r)
{
    const uint8_t *p = take(r, 4);
    if (!p)
        return 0;
    return base_le32(p);
}

uint64_t base_rd_u64(struct base_rd *r)
{
    uint64_t lo = base_rd_u32(r);
    uint64_t hi = base_rd_u32(r);
    return lo | hi << 32;
}

const uint8_t *base_rd_bytes(struct base_rd *r, size_t *n)
{
    uint32_t len = base_rd_u32(r);
    const uint8_t *p = take(r, len);
    *n = p ? len : 0;
    return p;
}

char *base_rd_str(struct base_rd *r, struct base_arena *a)
{
    size_t n;
    const uint8_t *p = base_rd_bytes(r, &n);
    if (!p)
        return base_arena_strndup(a, "", 0);
    return base_arena_strndup(a, (const char *)p, n);
}
