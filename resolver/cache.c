/* The answer cache: one per worker thread, so it takes no lock.
 *
 * A DNS answer for the zone depends on the catalog and on a few things of the query: the name
 * (case-insensitively), the type and class, whether the query had EDNS (the OPT record and the
 * size we may use) and the DO bit, and the transport's size limit (what was truncated). Those
 * make the key. Everything else the response takes from the query is patched in on a hit: the
 * ID, the RD and CD bits, and the question bytes themselves (which restores the client's
 * letter case; every owner name in a response is a compression pointer into the question, so
 * the rest of the message reads the client's case too). The value is the response as
 * zone_dns_answer wrote it, stamped with the catalog index it was built at, and the layout of
 * its permutable answer RRs: a hit copies the response and writes those RRs back in a fresh
 * Fisher-Yates order, so a cached service answer is shuffled per query like a built one.
 *
 * Invalidation costs nothing: the main loop publishes the catalog index after every applied
 * write, and an entry is used only while its stamp equals the published index. A stale entry
 * is simply a miss; the rebuilt answer goes back into the same slot, reusing its buffer.
 *
 * The table is a fixed array of sets of RSV__WAYS slots (set-associative, the set chosen by
 * the key's hash). An insert takes the slot of the same key, else an empty one, else a stale
 * one, else the least recently used of the set. Buffers are kept and reused, so once the cache
 * is warm neither hits nor re-inserts allocate; a byte budget bounds the memory when large
 * TCP answers are cached. */
#include "internal.h"

#include <string.h>

struct rsv__blob {
    struct rsv__key key;
    uint32_t cap; /* bytes of data[] */
    uint32_t len; /* response length */
    uint16_t n_rr;
    uint8_t mode;      /* BLOB_SHUF_* */
    uint16_t shuf_off; /* BLOB_SHUF_TILE: the region the RRs tile */
    uint16_t *rr;      /* into data: n_rr offsets then n_rr lengths */
    uint8_t *resp;     /* into data, after the RR table */
    uint8_t data[];
};

enum {
    BLOB_SHUF_NONE = 0,
    BLOB_SHUF_TILE = 1, /* the RRs are contiguous: write the slices back in a new order */
    BLOB_SHUF_SLOT = 2, /* not contiguous but of equal length: swap them slot by slot */
};

/* ---- rng ------------------------------------------------------------------------------- */

uint64_t rsv__rng_next(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* ---- keys ------------------------------------------------------------------------------ */

void rsv__key_make(struct rsv__key *k, const struct zone_dns_query *q, size_t limit)
{
    size_t n = q->qname_len <= ZONE_DNS_MAX_NAME ? q->qname_len : ZONE_DNS_MAX_NAME;
    k->qtype = q->qtype;
    k->qclass = q->qclass;
    k->limit = (uint16_t)(limit > 65535 ? 65535 : limit);
    k->shape = (uint8_t)((q->edns ? RSV__SHAPE_EDNS : 0) | (q->edns_do ? RSV__SHAPE_DO : 0));
    k->name_len = (uint8_t)n;
    memcpy(k->name, q->lname, n);
}

static uint64_t key_hash(const struct rsv__key *k)
{
    /* FNV-1a over the name, then the fixed fields mixed in. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < k->name_len; i++) {
        h ^= k->name[i];
        h *= 0x100000001b3ull;
    }
    h ^= (uint64_t)k->qtype << 32 | (uint64_t)k->qclass << 16 | k->limit;
    h ^= (uint64_t)k->shape << 56;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static bool key_eq(const struct rsv__key *a, const struct rsv__key *b)
{
    return a->qtype == b->qtype && a->qclass == b->qclass && a->limit == b->limit &&
           a->shape == b->shape && a->name_len == b->name_len &&
           memcmp(a->name, b->name, a->name_len) == 0;
}

/* ---- table ----------------------------------------------------------------------------- */

void rsv__cache_init(struct rsv__cache *c, size_t entries, size_t max_bytes)
{
    size_t n = RSV__WAYS;
    if (!entries)
        entries = 131072; /* holds the working set of ~100k instances (tests/bench/RESULTS.md) */
    while (n < entries && n < ((size_t)1 << 24))
        n <<= 1;
    memset(c, 0, sizeof *c);
    c->n_sets = n / RSV__WAYS;
    c->slots = base_calloc(n, sizeof *c->slots);
    c->max_bytes = max_bytes ? max_bytes : 64u * 1024 * 1024;
}

void rsv__cache_close(struct rsv__cache *c)
{
    if (!c->slots)
        return;
    for (size_t i = 0; i < c->n_sets * RSV__WAYS; i++)
        base_free(c->slots[i].blob);
    base_free(c->slots);
    memset(c, 0, sizeof *c);
}

static struct rsv__slot *find(struct rsv__cache *c, const struct rsv__key *k, uint64_t h)
{
    struct rsv__slot *set = &c->slots[(h & (c->n_sets - 1)) * RSV__WAYS];
    for (int i = 0; i < RSV__WAYS; i++)
        if (set[i].blob && set[i].hash == h && key_eq(&set[i].blob->key, k))
            return &set[i];
    return NULL;
}

/* Writes the permutable RRs of b into out (which holds a copy of b's response) in a new
 * random order. */
static void permute(const struct rsv__blob *b, uint64_t *rng, uint8_t *out)
{
    uint16_t perm[ZONE_DNS_MAX_SHUFFLE];
    const uint16_t *off = b->rr, *len = b->rr + b->n_rr;
    unsigned n = b->n_rr;

    for (unsigned i = 0; i < n; i++)
        perm[i] = (uint16_t)i;
    for (unsigned i = n - 1; i > 0; i--) { /* Fisher-Yates */
        unsigned j = (unsigned)(rsv__rng_next(rng) % (i + 1));
        uint16_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    if (b->mode == BLOB_SHUF_TILE) {
        size_t at = b->shuf_off;
        for (unsigned i = 0; i < n; i++) {
            memcpy(out + at, b->resp + off[perm[i]], len[perm[i]]);
            at += len[perm[i]];
        }
    } else {
        for (unsigned i = 0; i < n; i++)
            memcpy(out + off[i], b->resp + off[perm[i]], len[i]);
    }
}

size_t rsv__cache_lookup(struct rsv__cache *c, const struct rsv__key *k, uint64_t index,
                         const struct zone_dns_query *q, uint64_t *rng, uint8_t *out, size_t cap)
{
    uint64_t h = key_hash(k);
    struct rsv__slot *s = find(c, k, h);
    const struct rsv__blob *b;

    if (!s || s->index != index)
        return 0;
    b = s->blob;
    if (b->len > cap || q->question_end > b->len || q->question_end > q->len)
        return 0;
    s->tick = ++c->tick;
    memcpy(out, b->resp, b->len);
    /* RFC 1035 §4.1.1: the ID and RD come from the query; RFC 4035 §3.1.6: CD is copied. */
    out[0] = q->pkt[0];
    out[1] = q->pkt[1];
    out[2] = (uint8_t)((out[2] & ~0x01u) | (q->pkt[2] & 0x01u));
    out[3] = (uint8_t)((out[3] & ~0x10u) | (q->pkt[3] & 0x10u));
    /* RFC 1035 §7.3, RFC 4343 §4.1: the question goes back as sent, case included. */
    memcpy(out + 12, q->pkt + 12, q->question_end - 12);
    if (b->n_rr > 1)
        permute(b, rng, out);
    return b->len;
}

/* Sorts the layout's RRs by offset into off/len, checks them against the response and picks
 * how a hit permutes them: -1 when the layout does not fit the response. */
static int layout_mode(const struct zone_dns_layout *l, size_t len, size_t question_end,
                       uint16_t *off, uint16_t *rlen)
{
    bool tile = true, same = true;

    if (!l || l->n < 2)
        return BLOB_SHUF_NONE;
    if (l->n > ZONE_DNS_MAX_SHUFFLE)
        return -1;
    for (unsigned i = 0; i < l->n; i++) { /* insertion sort: n is small and this is a miss */
        unsigned j = i;
        for (; j > 0 && off[j - 1] > l->rr_off[i]; j--) {
            off[j] = off[j - 1];
            rlen[j] = rlen[j - 1];
        }
        off[j] = l->rr_off[i];
        rlen[j] = l->rr_len[i];
    }
    for (unsigned i = 0; i < l->n; i++) {
        if (off[i] < question_end || rlen[i] == 0 || (size_t)off[i] + rlen[i] > len)
            return -1;
        if (i && off[i] < (size_t)off[i - 1] + rlen[i - 1])
            return -1; /* overlapping */
        if (i && off[i] != off[i - 1] + rlen[i - 1])
            tile = false;
        if (rlen[i] != rlen[0])
            same = false;
    }
    return tile ? BLOB_SHUF_TILE : same ? BLOB_SHUF_SLOT : BLOB_SHUF_NONE;
}

bool rsv__cache_insert(struct rsv__cache *c, const struct rsv__key *k, uint64_t index,
                       const uint8_t *resp, size_t len, const struct zone_dns_layout *layout)
{
    uint64_t h = key_hash(k);
    struct rsv__slot *set = &c->slots[(h & (c->n_sets - 1)) * RSV__WAYS];
    struct rsv__slot *s = find(c, k, h);
    size_t question_end = 12 + (size_t)k->name_len + 4;
    uint16_t off[ZONE_DNS_MAX_SHUFFLE], rlen[ZONE_DNS_MAX_SHUFFLE];
    int mode = layout_mode(layout, len, question_end, off, rlen);
    unsigned n_rr = mode > 0 ? layout->n : 0;
    size_t need = (size_t)n_rr * 2 * sizeof(uint16_t) + len;

    /* Only responses that echo one question of the key's length can be patched. */
    if (mode < 0 || len < question_end || len > RSV__MSG_MAX || resp[4] != 0 || resp[5] != 1) {
        c->skipped++;
        return false;
    }
    if (!s) {
        for (int i = 0; i < RSV__WAYS && !s; i++)
            if (!set[i].blob)
                s = &set[i];
        for (int i = 0; i < RSV__WAYS && !s; i++)
            if (set[i].index != index)
                s = &set[i];
        if (!s) {
            s = &set[0];
            for (int i = 1; i < RSV__WAYS; i++)
                if ((int32_t)(set[i].tick - s->tick) < 0)
                    s = &set[i];
            c->evictions++;
        }
    }
    if (!s->blob || s->blob->cap < need) {
        size_t old = s->blob ? s->blob->cap : 0;
        size_t cap = (need + 63) & ~(size_t)63;
        if (c->bytes - old + cap > c->max_bytes) {
            /* Over budget: drop this slot's entry rather than grow. */
            if (s->blob) {
                c->bytes -= old;
                base_free(s->blob);
                s->blob = NULL;
            }
            c->skipped++;
            return false;
        }
        s->blob = base_realloc(s->blob, sizeof *s->blob + cap);
        s->blob->cap = (uint32_t)cap;
        c->bytes = c->bytes - old + cap;
        c->allocs++;
    }
    struct rsv__blob *b = s->blob;
    b->key = *k;
    b->len = (uint32_t)len;
    b->n_rr = (uint16_t)n_rr;
    b->mode = (uint8_t)(mode > 0 ? mode : BLOB_SHUF_NONE);
    b->rr = (uint16_t *)(void *)b->data;
    b->resp = b->data + (size_t)n_rr * 2 * sizeof(uint16_t);
    b->shuf_off = n_rr ? off[0] : 0;
    for (unsigned i = 0; i < n_rr; i++) {
        b->rr[i] = off[i];
        b->rr[n_rr + i] = rlen[i];
    }
    memcpy(b->resp, resp, len);
    s->hash = h;
    s->index = index;
    s->tick = ++c->tick;
    c->inserts++;
    return true;
}
