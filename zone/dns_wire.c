/* The DNS wire writer: a response built in the caller's buffer, RR by RR, with no allocation.
 *
 * Compression: every pointer points into the question. RFC 1035 §4.1.4 lets a name end with a
 * pointer to any earlier occurrence of its suffix; we only ever point at suffixes of the
 * question name (offset 12 for the whole of it, 12 + i for the suffix starting at its label i).
 * That costs a few bytes against full compression (an SRV's Additional owner cannot point into
 * the SRV target, for instance) and buys two things the transport needs:
 *   - the answer RRs can be permuted in place in a cached response (zone_dns_layout): nothing
 *     points into them, so moving them breaks no pointer;
 *   - a cached response can take a new query's ID and question bytes (same name, other case)
 *     without any rewriting: owners equal to the question name are the pointer C0 0C, so they
 *     echo the new query's case too (RFC 4343 §4.1, RFC 1035 §7.3).
 * SRV targets are written whole (RFC 2782: "name compression is not to be used for this
 * field"); SOA, NS, CNAME and PTR rdata names may be compressed (RFC 1035 §3.3; RFC 3597 §4
 * keeps that to the well-known types).
 *
 * Truncation: an RR is written speculatively and kept only when the message still ends within
 * the size limit less what the caller reserves for what must follow (the OPT RR, a negative
 * answer's SOA); otherwise the writer rolls back to where the RR began. The writer never
 * writes past the buffer's capacity, whatever the limit: a write that would is dropped and
 * marks the RR for rollback. The policy (what to drop, when to set TC) is in dns_answer.c. */
#include "zone/dns.h"

#include <string.h>

/* ---- names ----------------------------------------------------------------------------- */
void zone__name_init(struct zone__name *nm)
{
    nm->n = 0;
    nm->bad = false;
}

void zone__name_label(struct zone__name *nm, const void *p, size_t len)
{
    /* the name must keep room for the root label: at most 255 bytes in all (RFC 1035 §2.3.4) */
    if (nm->bad || len == 0 || len > ZONE__MAX_LABEL || nm->n + 1 + len + 1 > ZONE_DNS_MAX_NAME) {
        nm->bad = true;
        return;
    }
    nm->b[nm->n++] = (uint8_t)len;
    memcpy(nm->b + nm->n, p, len);
    nm->n += len;
}

void zone__name_wire(struct zone__name *nm, const uint8_t *p, size_t len)
{
    if (nm->bad || len == 0 || nm->n + len > ZONE_DNS_MAX_NAME) {
        nm->bad = true;
        return;
    }
    memcpy(nm->b + nm->n, p, len);
    nm->n += len;
}

void zone__name_text(struct zone__name *nm, const char *s)
{
    if (strcmp(s, ".") == 0)
        s++; /* the root alone */
    while (*s && !nm->bad) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        zone__name_label(nm, s, l);
        s += l;
        if (*s == '.')
            s++;
    }
    if (nm->bad || nm->n + 1 > ZONE_DNS_MAX_NAME) {
        nm->bad = true;
        return;
    }
    nm->b[nm->n++] = 0;
}

/* ---- writer ---------------------------------------------------------------------------- */
static void put(struct zone__wire *w, const void *p, size_t n)
{
    if (w->over || n > w->cap - w->len) {
        w->over = true;
        return;
    }
    memcpy(w->p + w->len, p, n);
    w->len += n;
}

void zone__wire_u16(struct zone__wire *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 2);
}

void zone__wire_u32(struct zone__wire *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 4);
}

void zone__wire_bytes(struct zone__wire *w, const void *p, size_t n)
{
    put(w, p, n);
}

static void patch16(struct zone__wire *w, size_t at, uint16_t v)
{
    if (at + 2 <= w->len) {
        w->p[at] = (uint8_t)(v >> 8);
        w->p[at + 1] = (uint8_t)v;
    }
}

void zone__wire_start(struct zone__wire *w, const struct zone_dns_query *q, uint8_t *out,
                      size_t cap, size_t limit, uint16_t flags)
{
    memset(w->count, 0, sizeof w->count);
    w->p = out;
    w->cap = cap;
    w->limit = limit < cap ? limit : cap;
    w->len = 0;
    w->over = false;
    w->rd_at = 0;
    w->qname = q->lname;
    w->qname_len = 0;
    memset(w->is_label, 0, sizeof w->is_label);
    if (q->question_end && q->qname_len > 0 && q->qname_len <= ZONE_DNS_MAX_NAME + 1) {
        w->qname_len = q->qname_len;
        for (size_t i = 0; i < q->qname_len && q->lname[i]; i += (size_t)q->lname[i] + 1)
            w->is_label[i] = true;
    }

    zone__wire_u16(w, q->id);
    zone__wire_u16(w, flags);
    for (int i = 0; i < 4; i++)
        zone__wire_u16(w, 0);
    if (q->question_end > ZONE__HDR_LEN && q->question_end <= q->len) {
        put(w, q->pkt + ZONE__HDR_LEN, q->question_end - ZONE__HDR_LEN);
        w->count[ZONE__SEC_QD] = 1;
    }
}

static bool eq_nocase(const uint8_t *a, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = (uint8_t)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (uint8_t)(y + 32);
        if (x != y)
            return false;
    }
    return true;
}

void zone__wire_name(struct zone__wire *w, const uint8_t *name, size_t len, bool compress)
{
    /* Length bytes (0..63) are never ASCII letters, so comparing the wire forms whole, case
     * folded, compares label by label. The root alone is not worth a pointer. */
    if (compress && w->qname_len) {
        for (size_t i = 0; i + 1 < len; i += (size_t)name[i] + 1) {
            size_t s = len - i;
            if (s > w->qname_len || !w->is_label[w->qname_len - s])
                continue;
            if (!eq_nocase(name + i, w->qname + w->qname_len - s, s))
                continue;
            put(w, name, i);
            zone__wire_u16(w, (uint16_t)(0xc000u | (ZONE__HDR_LEN + w->qname_len - s)));
            return;
        }
    }
    put(w, name, len);
}

size_t zone__wire_rr_begin(struct zone__wire *w, const uint8_t *owner, size_t owner_len,
                           uint16_t type, uint32_t ttl)
{
    size_t start = w->len;

    w->over = false;
    if (owner == w->qname && owner_len == w->qname_len && owner_len > 1)
        zone__wire_u16(w, 0xc000 | ZONE__HDR_LEN); /* the question name itself */
    else
        zone__wire_name(w, owner, owner_len, true);
    zone__wire_u16(w, type);
    zone__wire_u16(w, ZONE__CLASS_IN);
    zone__wire_u32(w, ttl);
    w->rd_at = w->len;
    zone__wire_u16(w, 0);
    return start;
}

bool zone__wire_rr_end(struct zone__wire *w, size_t start, size_t reserve, int sec)
{
    if (w->over || w->len > w->limit || reserve > w->limit - w->len ||
        w->len - w->rd_at - 2 > 0xffff) {
        w->len = start;
        w->over = false;
        return false;
    }
    patch16(w, w->rd_at, (uint16_t)(w->len - w->rd_at - 2));
    w->count[sec]++;
    return true;
}

void zone__wire_opt(struct zone__wire *w, unsigned rcode, bool do_bit)
{
    size_t start = w->len;
    uint8_t root = 0;

    w->over = false;
    put(w, &root, 1);
    zone__wire_u16(w, ZONE__RR_OPT);
    zone__wire_u16(w, ZONE_DNS_OUR_UDP_SIZE); /* RFC 6891 §6.1.2: our payload size */
    /* extended RCODE (upper 8 bits of 12), VERSION 0, DO copied (RFC 3225 §3), Z zero (§6.1.4) */
    zone__wire_u32(w, (uint32_t)((rcode >> 4) & 0xff) << 24 | (do_bit ? ZONE__EDNS_DO : 0));
    zone__wire_u16(w, 0);
    if (w->over) {
        w->len = start;
        w->over = false;
        return;
    }
    w->count[ZONE__SEC_AR]++;
}

void zone__wire_flags(struct zone__wire *w, uint16_t set, uint16_t clear)
{
    if (w->len < 4)
        return;
    uint16_t f = (uint16_t)(w->p[2] << 8 | w->p[3]);
    f = (uint16_t)((f & ~clear) | set);
    patch16(w, 2, f);
}

size_t zone__wire_finish(struct zone__wire *w)
{
    if (w->len < ZONE__HDR_LEN)
        return 0;
    for (int i = 0; i < 4; i++)
        patch16(w, 4 + 2 * (size_t)i, w->count[i]);
    return w->len;
}
