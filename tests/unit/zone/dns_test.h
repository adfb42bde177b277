/* Helpers for the zone DNS unit tests: build a query, run it through the engine the way the
 * transport does (parse, in-zone check, answer or error), and check a response's wire form
 * with ldns and with the rules the answer cache relies on. Header-only; cmocka not needed. */
#ifndef HERALD_TEST_DNS_TEST_H
#define HERALD_TEST_DNS_TEST_H

#include "zone/zone.h"

#include <ldns/ldns.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- building queries ------------------------------------------------------------------ */
#define DNST_MAX_OPTS 8
struct dnst_opt {
    uint16_t code;
    uint8_t data[256];
    size_t len;
};

struct dnst_q {
    const char *name; /* dotted, "." for the root; no escapes */
    uint16_t type, cls;
    uint16_t flags; /* header bits to set besides the opcode (0x0100 RD, ...) */
    unsigned opcode;
    uint16_t id;
    int qdcount; /* -1: 1; else that many copies of the question (0: none) */
    bool edns;
    unsigned version;
    unsigned size;
    bool do_bit;
    int eflags; /* -1: from do_bit; else the whole 16-bit flags field of the OPT TTL */
    struct dnst_opt opts[DNST_MAX_OPTS];
    size_t n_opts;
};

static inline void dnst_q_init(struct dnst_q *q, const char *name, uint16_t type)
{
    memset(q, 0, sizeof *q);
    q->name = name;
    q->type = type;
    q->cls = 1;
    q->id = 0x1234;
    q->qdcount = -1;
    q->size = 1232;
    q->eflags = -1;
}

static inline size_t dnst_put16(uint8_t *p, size_t at, uint16_t v)
{
    p[at] = (uint8_t)(v >> 8);
    p[at + 1] = (uint8_t)v;
    return at + 2;
}

/* Text name to wire (labels longer than 63 or names over 255 are written as asked, so
 * malformed names can be built too). Returns the length, 0 when it does not fit. */
static inline size_t dnst_name(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    if (strcmp(s, ".") != 0) {
        while (*s) {
            const char *dot = strchr(s, '.');
            size_t l = dot ? (size_t)(dot - s) : strlen(s);
            if (l > 255 || n + 1 + l + 1 > cap)
                return 0;
            out[n++] = (uint8_t)l;
            memcpy(out + n, s, l);
            n += l;
            s += l;
            if (*s == '.')
                s++;
        }
    }
    if (n + 1 > cap)
        return 0;
    out[n++] = 0;
    return n;
}

static inline size_t dnst_build(const struct dnst_q *q, uint8_t *out, size_t cap)
{
    size_t at = 0;
    int qd = q->qdcount < 0 ? 1 : q->qdcount;
    uint8_t name[1024];
    size_t nl = dnst_name(q->name ? q->name : ".", name, sizeof name);

    size_t need = 12 + (size_t)qd * (nl + 4);
    if (q->edns) {
        need += 11;
        for (size_t i = 0; i < q->n_opts; i++)
            need += 4 + q->opts[i].len;
    }
    if (nl == 0 || cap < need)
        return 0;
    at = dnst_put16(out, at, q->id);
    at = dnst_put16(out, at, (uint16_t)(q->flags | (q->opcode & 15) << 11));
    at = dnst_put16(out, at, (uint16_t)qd);
    at = dnst_put16(out, at, 0);
    at = dnst_put16(out, at, 0);
    at = dnst_put16(out, at, q->edns ? 1 : 0);
    for (int i = 0; i < qd; i++) {
        memcpy(out + at, name, nl);
        at += nl;
        at = dnst_put16(out, at, q->type);
        at = dnst_put16(out, at, q->cls);
    }
    if (q->edns) {
        uint16_t ef = q->eflags >= 0 ? (uint16_t)q->eflags : (q->do_bit ? 0x8000 : 0);
        size_t rdlen = 0;
        for (size_t i = 0; i < q->n_opts; i++)
            rdlen += 4 + q->opts[i].len;
        out[at++] = 0;
        at = dnst_put16(out, at, 41);
        at = dnst_put16(out, at, (uint16_t)q->size);
        out[at++] = 0; /* extended rcode */
        out[at++] = (uint8_t)q->version;
        at = dnst_put16(out, at, ef);
        at = dnst_put16(out, at, (uint16_t)rdlen);
        for (size_t i = 0; i < q->n_opts; i++) {
            at = dnst_put16(out, at, q->opts[i].code);
            at = dnst_put16(out, at, (uint16_t)q->opts[i].len);
            memcpy(out + at, q->opts[i].data, q->opts[i].len);
            at += q->opts[i].len;
        }
    }
    return at;
}

/* ---- running a query as the transport does --------------------------------------------- */
struct dnst_res {
    int parse_rc;
    int answer_rc; /* zone_dns_answer's return, when it ran */
    bool in_zone;
    bool dropped;
    size_t limit;
    uint8_t resp[65535];
    size_t len;
    struct zone_dns_layout layout;
};

/* The UDP limit for a query: 512, or its EDNS size within 512..4096 (RFC 6891 §6.2.5). */
static inline size_t dnst_udp_limit(const struct zone_dns_query *q)
{
    if (!q->edns || q->edns_size < 512)
        return 512;
    return q->edns_size > ZONE_DNS_MAX_UDP ? ZONE_DNS_MAX_UDP : q->edns_size;
}

/* Parse, then error / REFUSED (not in zone, or a reverse name the catalog does not have) /
 * the answer. BASE_ESTORE from the answer is left in answer_rc with no response. */
static inline void dnst_run(struct zone_read *rd, const struct zone_dns_config *cfg,
                            const uint8_t *pkt, size_t len, bool tcp, uint64_t seed,
                            struct base_arena *ar, struct dnst_res *r)
{
    struct zone_dns_query q;
    uint64_t rng = seed;

    r->answer_rc = 0;
    r->in_zone = false;
    r->dropped = false;
    r->len = 0;
    r->layout.n = 0;
    r->parse_rc = zone_dns_parse(pkt, len, &q);
    r->limit = tcp ? 65535 : dnst_udp_limit(&q);
    switch (r->parse_rc) {
    case ZONE_DNS_DROP:
        r->dropped = true;
        return;
    case ZONE_DNS_FORMERR:
        r->len = zone_dns_error(&q, 1, false, r->resp, r->limit);
        return;
    case ZONE_DNS_NOTIMP:
        r->len = zone_dns_error(&q, 4, false, r->resp, r->limit);
        return;
    case ZONE_DNS_BADVERS:
        r->len = zone_dns_error(&q, 16, false, r->resp, r->limit);
        return;
    default:
        break;
    }
    r->in_zone = zone_dns_in_zone(cfg, &q);
    if (!r->in_zone) {
        r->len = zone_dns_error(&q, 5, false, r->resp, r->limit);
        return;
    }
    base_arena_reset(ar);
    r->answer_rc = zone_dns_answer(rd, cfg, &q, r->limit, false, &rng, ar, r->resp, sizeof r->resp,
                                   &r->len, &r->layout);
    if (r->answer_rc == BASE_ENOTFOUND)
        r->len = zone_dns_error(&q, 5, false, r->resp, r->limit);
}

/* ---- wire checks ----------------------------------------------------------------------- */
static inline uint16_t dnst_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Walks a name of a response; every pointer must point into the question name (12 ..
 * qend - 4), which is what lets the cache permute answers and patch questions. */
static inline bool dnst_walk_name(const uint8_t *p, size_t len, size_t *at, size_t qend,
                                  bool allow_ptr, char *why)
{
    size_t i = *at;
    while (i < len) {
        uint8_t c = p[i];
        if (c == 0) {
            *at = i + 1;
            return true;
        }
        if ((c & 0xc0) == 0xc0) {
            if (i + 1 >= len) {
                sprintf(why, "pointer cut at the end");
                return false;
            }
            size_t t = (size_t)(c & 0x3f) << 8 | p[i + 1];
            if (!allow_ptr) {
                sprintf(why, "compressed name at %zu where compression is not allowed", i);
                return false;
            }
            if (t < 12 || t + 4 >= qend) {
                sprintf(why, "pointer at %zu to %zu, outside the question name", i, t);
                return false;
            }
            *at = i + 2;
            return true;
        }
        if (c & 0xc0) {
            sprintf(why, "bad label type at %zu", i);
            return false;
        }
        i += 1 + (size_t)c;
    }
    sprintf(why, "name runs past the end");
    return false;
}

/* Every RR of the response: the pointer rule above, SRV targets uncompressed (RFC 2782). */
static inline bool dnst_pointers_ok(const uint8_t *p, size_t len, char *why)
{
    size_t at = 12, qend = 12;
    unsigned qd = dnst_get16(p + 4);
    unsigned n = dnst_get16(p + 6) + dnst_get16(p + 8) + dnst_get16(p + 10);

    if (qd == 1) {
        while (at < len && p[at])
            at += 1 + (size_t)p[at];
        at += 1 + 4;
        qend = at;
    }
    for (unsigned i = 0; i < n; i++) {
        if (!dnst_walk_name(p, len, &at, qend, true, why))
            return false;
        if (at + 10 > len) {
            sprintf(why, "RR header past the end");
            return false;
        }
        uint16_t type = dnst_get16(p + at);
        size_t rdlen = dnst_get16(p + at + 8);
        size_t rd = at + 10, end = rd + rdlen;
        if (end > len) {
            sprintf(why, "rdata past the end");
            return false;
        }
        size_t x = rd;
        switch (type) {
        case 2:  /* NS */
        case 5:  /* CNAME */
        case 12: /* PTR */
            if (!dnst_walk_name(p, len, &x, qend, true, why))
                return false;
            break;
        case 6: /* SOA */
            if (!dnst_walk_name(p, len, &x, qend, true, why) ||
                !dnst_walk_name(p, len, &x, qend, true, why))
                return false;
            x += 20;
            break;
        case 33: /* SRV */
            x += 6;
            if (!dnst_walk_name(p, len, &x, qend, false, why))
                return false;
            break;
        default:
            x = end;
        }
        if (x != end) {
            sprintf(why, "rdata of type %u has %zu bytes, its fields %zu", type, rdlen, x - rd);
            return false;
        }
        at = end;
    }
    if (at != len) {
        sprintf(why, "%zu bytes after the last RR", len - at);
        return false;
    }
    return true;
}

/* The RRs of a section as sorted "owner ttl type rdata" strings, for set comparisons. */
static inline int dnst_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static inline char **dnst_rr_strings(const ldns_rr_list *l, size_t *n)
{
    *n = l ? ldns_rr_list_rr_count(l) : 0;
    char **v = calloc(*n + 1, sizeof *v);
    for (size_t i = 0; i < *n; i++)
        v[i] = ldns_rr2str(ldns_rr_list_rr(l, i));
    qsort(v, *n, sizeof *v, dnst_cmp_str);
    return v;
}

static inline void dnst_free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static inline bool dnst_same_section(const ldns_rr_list *a, const ldns_rr_list *b)
{
    size_t na, nb;
    char **x = dnst_rr_strings(a, &na), **y = dnst_rr_strings(b, &nb);
    bool same = na == nb;
    for (size_t i = 0; same && i < na; i++)
        same = strcmp(x[i], y[i]) == 0;
    dnst_free_strings(x, na);
    dnst_free_strings(y, nb);
    return same;
}

/* Permutes the layout's RRs (reversed, then rotated by one) as the cache would, and checks
 * that the result parses with ldns and holds the same RRs in every section. */
static inline bool dnst_layout_ok(const uint8_t *p, size_t len, const struct zone_dns_layout *l,
                                  char *why)
{
    if (l->n == 0)
        return true;
    uint8_t *c = malloc(len);
    size_t lo = l->rr_off[0], hi = lo;
    memcpy(c, p, len);
    for (unsigned i = 0; i < l->n; i++) {
        if (l->rr_off[i] != hi) {
            sprintf(why, "layout RR %u at %u, expected contiguous at %zu", i, l->rr_off[i], hi);
            free(c);
            return false;
        }
        hi += l->rr_len[i];
    }
    if (hi > len) {
        sprintf(why, "layout past the end");
        free(c);
        return false;
    }
    for (int pass = 0; pass < 2; pass++) {
        size_t at = lo;
        for (unsigned k = 0; k < l->n; k++) {
            unsigned i = pass == 0 ? l->n - 1 - k : (k + 1) % l->n;
            memcpy(c + at, p + l->rr_off[i], l->rr_len[i]);
            at += l->rr_len[i];
        }
        ldns_pkt *a = NULL, *b = NULL;
        bool ok = ldns_wire2pkt(&a, p, len) == LDNS_STATUS_OK &&
                  ldns_wire2pkt(&b, c, len) == LDNS_STATUS_OK &&
                  dnst_same_section(ldns_pkt_answer(a), ldns_pkt_answer(b)) &&
                  dnst_same_section(ldns_pkt_authority(a), ldns_pkt_authority(b)) &&
                  dnst_same_section(ldns_pkt_additional(a), ldns_pkt_additional(b));
        ldns_pkt_free(a);
        ldns_pkt_free(b);
        if (!ok) {
            sprintf(why, "the permuted response differs or does not parse");
            free(c);
            return false;
        }
    }
    free(c);
    return true;
}

#endif
