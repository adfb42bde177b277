/* The frame of one Raft entry: the commands of one group commit.
 *
 *   u32 magic | u16 version | u16 flags | u32 count | u32 real length
 *   count x (u32 length | bytes)
 *   zeros up to a multiple of 8
 *
 * libraft stores entries in segments as batches whose data it expects to be 8-byte aligned:
 * an entry whose length is not a multiple of 8 is written, but the segment cannot be loaded
 * back (DESIGN.md 2.6). So every payload is padded, and the real length is stored inside so
 * the padding is never mistaken for data. Decoding trusts nothing: lengths are checked against
 * the buffer before use, the padding must be zeros and the commands must fill the real length
 * exactly. */
#include "internal.h"

#include <string.h>

static size_t real_size(size_t n, size_t cmd_bytes)
{
    return CONS_ENTRY_HEADER + 4 * n + cmd_bytes;
}

size_t cons__entry_size(size_t n, size_t cmd_bytes)
{
    return (real_size(n, cmd_bytes) + 7) & ~(size_t)7;
}

void cons__entry_write(void *dst, size_t size, const struct base_slice *cmds, size_t n)
{
    uint8_t *p = dst;
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += cmds[i].n;
    size_t real = real_size(n, bytes);
    assert(size == cons__entry_size(n, bytes));
    assert(real <= UINT32_MAX && n <= UINT32_MAX);

    base_put_le32(p, CONS_ENTRY_MAGIC);
    base_put_le16(p + 4, CONS_ENTRY_VERSION);
    base_put_le16(p + 6, 0);
    base_put_le32(p + 8, (uint32_t)n);
    base_put_le32(p + 12, (uint32_t)real);
    p += CONS_ENTRY_HEADER;
    for (size_t i = 0; i < n; i++) {
        base_put_le32(p, (uint32_t)cmds[i].n);
        if (cmds[i].n)
            memcpy(p + 4, cmds[i].p, cmds[i].n);
        p += 4 + cmds[i].n;
    }
    memset(p, 0, size - real);
}

void cons_entry_encode(const struct base_slice *cmds, size_t n, struct base_buf *out)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += cmds[i].n;
    size_t size = cons__entry_size(n, bytes);
    base_buf_reserve(out, size);
    cons__entry_write(out->data + out->len, size, cmds, n);
    out->len += size;
}

int cons_entry_decode(const void *p, size_t len, struct base_slice **cmds, size_t *n,
                      struct base_arena *a)
{
    const uint8_t *b = p;
    *cmds = NULL;
    *n = 0;
    if (len < CONS_ENTRY_HEADER || len % 8 != 0 || base_le32(b) != CONS_ENTRY_MAGIC)
        return BASE_EPARSE;
    if (base_le16(b + 4) != CONS_ENTRY_VERSION)
        return base_le16(b + 4) > CONS_ENTRY_VERSION ? BASE_EINVAL : BASE_EPARSE;
    uint32_t count = base_le32(b + 8);
    uint32_t real = base_le32(b + 12);
    if (base_le16(b + 6) != 0 || real < CONS_ENTRY_HEADER || real > len || len - real >= 8)
        return BASE_EPARSE;
    /* every command takes at least its 4-byte length: bounds count before allocating */
    if (count > (real - CONS_ENTRY_HEADER) / 4)
        return BASE_EPARSE;
    for (size_t i = real; i < len; i++)
        if (b[i] != 0)
            return BASE_EPARSE;

    struct base_slice *out = count ? base_arena_alloc(a, count * sizeof *out) : NULL;
    size_t off = CONS_ENTRY_HEADER;
    for (uint32_t i = 0; i < count; i++) {
        if (real - off < 4)
            return BASE_EPARSE;
        uint32_t l = base_le32(b + off);
        off += 4;
        if (l > real - off)
            return BASE_EPARSE;
        out[i].p = b + off;
        out[i].n = l;
        off += l;
    }
    if (off != real)
        return BASE_EPARSE;
    *cmds = out;
    *n = count;
    return 0;
}
