/* A small encoder of libraft 0.22.1's uv wire format (src/uv_encoding.c), for the decoder's unit
 * test and its fuzz seeds. Header-only (static inline). */
#ifndef HERALD_TEST_CONSENSUS_WIRE_ENC_H
#define HERALD_TEST_CONSENSUS_WIRE_ENC_H

#include <stdint.h>
#include <string.h>

#define WENC_CAP 16384

struct wenc {
    uint8_t b[WENC_CAP];
    size_t n;
};

static inline void wenc_u8(struct wenc *e, uint8_t v)
{
    e->b[e->n++] = v;
}

static inline void wenc_u16(struct wenc *e, uint16_t v)
{
    wenc_u8(e, (uint8_t)v);
    wenc_u8(e, (uint8_t)(v >> 8));
}

static inline void wenc_u32(struct wenc *e, uint32_t v)
{
    wenc_u16(e, (uint16_t)v);
    wenc_u16(e, (uint16_t)(v >> 16));
}

static inline void wenc_u64(struct wenc *e, uint64_t v)
{
    wenc_u32(e, (uint32_t)v);
    wenc_u32(e, (uint32_t)(v >> 32));
}

static inline void wenc_bytes(struct wenc *e, const void *p, size_t n)
{
    memcpy(e->b + e->n, p, n);
    e->n += n;
}

/* Starts a message: the preamble with a header length patched by wenc_end_header. */
static inline size_t wenc_begin(struct wenc *e, uint8_t type, uint8_t version)
{
    wenc_u8(e, type);
    wenc_u8(e, 0);
    wenc_u8(e, version);
    wenc_u8(e, 0);
    wenc_u32(e, 0);
    size_t at = e->n;
    wenc_u64(e, 0);
    return at;
}

static inline void wenc_end_header(struct wenc *e, size_t at)
{
    uint64_t len = e->n - at - 8;
    for (int i = 0; i < 8; i++)
        e->b[at + (size_t)i] = (uint8_t)(len >> (8 * i));
}

struct wenc_entry {
    uint64_t term;
    uint8_t type;
    uint32_t len;
    uint8_t fill;
};

static inline void wenc_append(struct wenc *e, uint64_t term, uint64_t prev, uint64_t prev_term,
                               uint64_t commit, const struct wenc_entry *ents, unsigned n)
{
    size_t at = wenc_begin(e, 1, 1);
    wenc_u64(e, term);
    wenc_u64(e, prev);
    wenc_u64(e, prev_term);
    wenc_u64(e, commit);
    wenc_u64(e, n);
    for (unsigned i = 0; i < n; i++) {
        wenc_u64(e, ents[i].term);
        wenc_u8(e, ents[i].type);
        wenc_u8(e, 0);
        wenc_u8(e, 0);
        wenc_u8(e, 0);
        wenc_u32(e, ents[i].len);
    }
    wenc_u64(e, 0);
    wenc_end_header(e, at);
    for (unsigned i = 0; i < n; i++) {
        memset(e->b + e->n, ents[i].fill, ents[i].len);
        e->n += ents[i].len;
    }
}

static inline void wenc_append_result(struct wenc *e, uint64_t term, uint64_t rejected,
                                      uint64_t last)
{
    size_t at = wenc_begin(e, 2, 2);
    wenc_u64(e, term);
    wenc_u64(e, rejected);
    wenc_u64(e, last);
    wenc_u16(e, 1);
    wenc_u16(e, 7);
    wenc_u32(e, 0);
    wenc_end_header(e, at);
}

static inline void wenc_vote(struct wenc *e, uint64_t term, uint64_t candidate, uint64_t last,
                             uint64_t last_term, uint64_t flags)
{
    size_t at = wenc_begin(e, 3, 2);
    wenc_u64(e, term);
    wenc_u64(e, candidate);
    wenc_u64(e, last);
    wenc_u64(e, last_term);
    wenc_u64(e, flags);
    wenc_end_header(e, at);
}

static inline void wenc_vote_result(struct wenc *e, uint64_t term, uint64_t granted, uint8_t flags)
{
    size_t at = wenc_begin(e, 4, 2);
    wenc_u64(e, term);
    wenc_u64(e, granted);
    wenc_u8(e, flags);
    wenc_u8(e, 0);
    wenc_u16(e, 1);
    wenc_u16(e, 3);
    wenc_u16(e, 0);
    wenc_end_header(e, at);
}

struct wenc_server {
    uint64_t id;
    const char *address;
    uint8_t role;
};

/* libraft's configuration encoding, padded to 8. */
static inline void wenc_conf(struct wenc *e, const struct wenc_server *s, unsigned n)
{
    size_t start = e->n;
    wenc_u8(e, 1);
    wenc_u64(e, n);
    for (unsigned i = 0; i < n; i++) {
        wenc_u64(e, s[i].id);
        wenc_bytes(e, s[i].address, strlen(s[i].address) + 1);
        wenc_u8(e, s[i].role);
    }
    while ((e->n - start) % 8)
        wenc_u8(e, 0);
}

static inline void wenc_snapshot(struct wenc *e, uint64_t term, uint64_t last, uint64_t last_term,
                                 uint64_t conf_index, const struct wenc_server *s, unsigned n,
                                 uint32_t data_len)
{
    size_t at = wenc_begin(e, 5, 0);
    wenc_u64(e, term);
    wenc_u64(e, last);
    wenc_u64(e, last_term);
    wenc_u64(e, conf_index);
    size_t len_at = e->n;
    wenc_u64(e, 0);
    size_t conf_start = e->n;
    wenc_conf(e, s, n);
    uint64_t conf_len = e->n - conf_start;
    for (int i = 0; i < 8; i++)
        e->b[len_at + (size_t)i] = (uint8_t)(conf_len >> (8 * i));
    wenc_u64(e, data_len);
    wenc_u64(e, 0);
    wenc_end_header(e, at);
    for (uint32_t i = 0; i < data_len; i++)
        wenc_u8(e, (uint8_t)i);
}

static inline void wenc_timeout_now(struct wenc *e, uint64_t term, uint64_t last,
                                    uint64_t last_term)
{
    size_t at = wenc_begin(e, 6, 0);
    wenc_u64(e, term);
    wenc_u64(e, last);
    wenc_u64(e, last_term);
    wenc_end_header(e, at);
}

#endif
