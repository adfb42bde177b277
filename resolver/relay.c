/* Relaying a libunbound answer to our client (pure: no sockets, no libunbound).
 *
 * libunbound hands back the whole response it built (ub_result.answer_packet): header, the
 * question as we asked it, the answer, authority and additional sections, names compressed
 * against its own layout, and an OPT record (libunbound always asks with EDNS and DO). The
 * client must get the same data with its own ID, its question bytes (its case), our flags and
 * our OPT, cut to its UDP size.
 *
 * The fast path copies the sections as they are. It can, because the client's question has the
 * same length as libunbound's (the same name, only the case may differ; both questions are
 * uncompressed at offset 12): every compression pointer in the sections then still points at
 * the same name, and since pointers only point backwards, any prefix of the RRs is a valid
 * message. So the response is: our header, the client's question, a prefix of libunbound's RRs
 * that ends at a section boundary, and our OPT. libunbound's own OPT is dropped (it is the
 * last RR it writes). Names compressed against the question read with the client's case
 * (www.EXAMPLE.org in the question makes a CNAME target web.EXAMPLE.org): the same name for
 * DNS (RFC 4343), and what every server that compresses against the question does.
 *
 * The slow path is for answers that must lose RRs in the middle: DNSSEC records (RRSIG, NSEC,
 * NSEC3) for a client that did not set DO (RFC 4035 §3.2.1: only with DO, or when asked for
 * by type), which only a validating configuration brings, or an OPT that is not last. ldns
 * parses the packet (decompressing every name), the kept RRs are written back with ldns'
 * compression, and the result goes through the fast path.
 *
 * Truncation (RFC 1035 §4.2.1, RFC 2181 §9): the whole response if it fits the limit; else
 * without the additional section, no TC (it is optional data); else TC with the question and
 * no records at all, so the client retries over TCP, which takes the whole answer. This is
 * what matters for correctness: a client never caches a partial RRset or a negative answer
 * without its SOA. */
#include "internal.h"

#include <ldns/ldns.h>
#include <string.h>

#define F_QR 0x8000u
#define F_TC 0x0200u
#define F_RD 0x0100u
#define F_RA 0x0080u
#define F_AD 0x0020u
#define F_CD 0x0010u

#define T_OPT   41
#define T_RRSIG 46
#define T_NSEC  47
#define T_NSEC3 50

#define OPT_LEN 11

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void wr16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* Skips a possibly compressed name at *off; false when it runs past len or is malformed. */
static bool skip_name(const uint8_t *p, size_t len, size_t *off)
{
    size_t at = *off;
    for (unsigned labels = 0; labels < 128; labels++) {
        if (at >= len)
            return false;
        uint8_t c = p[at];
        if ((c & 0xc0) == 0xc0) {
            if (at + 2 > len)
                return false;
            *off = at + 2;
            return true;
        }
        if (c & 0xc0)
            return false;
        at += 1u + c;
        if (c == 0) {
            *off = at;
            return true;
        }
    }
    return false;
}

static bool is_dnssec(uint16_t t)
{
    return t == T_RRSIG || t == T_NSEC || t == T_NSEC3;
}

/* What the walk of libunbound's packet found. */
struct layout {
    size_t qend;                   /* offset after the question */
    size_t an_end, ns_end, ar_end; /* offset after each section (ar_end: before the OPT) */
    unsigned an, ns, ar;           /* RRs in each (ar: without the OPT) */
    bool needs_rewrite;            /* strip DNSSEC RRs, or an OPT that is not last */
};

static bool walk(const struct zone_dns_query *q, const uint8_t *up, size_t len, struct layout *l)
{
    size_t off = 12;
    unsigned counts[3];
    bool opt_seen = false;

    memset(l, 0, sizeof *l);
    if (len < 12 || rd16(up + 4) != 1)
        return false;
    /* The question as libunbound wrote it: the same name (any case) and type and class. */
    if (len < 12 + q->qname_len + 4)
        return false;
    for (size_t i = 0; i < q->qname_len; i++) {
        uint8_t c = up[12 + i];
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c | 0x20);
        if (c != q->lname[i])
            return false;
    }
    off = 12 + q->qname_len;
    if (rd16(up + off) != q->qtype || rd16(up + off + 2) != q->qclass)
        return false;
    off += 4;
    l->qend = off;
    counts[0] = rd16(up + 6);
    counts[1] = rd16(up + 8);
    counts[2] = rd16(up + 10);
    for (int sec = 0; sec < 3; sec++) {
        for (unsigned i = 0; i < counts[sec]; i++) {
            if (!skip_name(up, len, &off) || off + 10 > len)
                return false;
            uint16_t type = rd16(up + off);
            size_t rdlen = rd16(up + off + 8);
            off += 10;
            if (off + rdlen > len)
                return false;
            off += rdlen;
            if (sec == 2 && type == T_OPT) {
                if (opt_seen)
                    return false; /* two OPTs: not a message libunbound writes */
                opt_seen = true;
                continue;
            }
            if (opt_seen)
                l->needs_rewrite = true; /* an RR after the OPT */
            if (!q->edns_do && is_dnssec(type) && !(sec == 0 && type == q->qtype))
                l->needs_rewrite = true;
            if (sec == 0)
                l->an++;
            else if (sec == 1)
                l->ns++;
            else
                l->ar++;
        }
        if (sec == 0)
            l->an_end = off;
        else if (sec == 1)
            l->ns_end = off;
    }
    /* ar_end: after the last additional RR that is not the OPT (the OPT is last here). */
    if (!l->needs_rewrite) {
        size_t at = l->ns_end;
        for (unsigned i = 0; i < l->ar; i++) {
            (void)skip_name(up, len, &at);
            at += 10u + rd16(up + at + 8);
        }
        l->ar_end = at;
    }
    return true;
}

static size_t build(const struct zone_dns_query *q, size_t limit, bool ad, const uint8_t *up,
                    const struct layout *l, uint8_t *out, size_t cap)
{
    size_t opt = q->edns ? OPT_LEN : 0, cut;
    unsigned an = l->an, ns = l->ns, ar = l->ar;
    uint16_t flags = F_QR | F_RA | (q->flags & (F_RD | F_CD)) | (rd16(up + 2) & 0x000fu);

    if (limit > cap)
        limit = cap;
    if (l->ar_end + opt <= limit) {
        cut = l->ar_end;
    } else if (l->ns_end + opt <= limit) {
        cut = l->ns_end; /* the additional section is optional: no TC */
        ar = 0;
    } else {
        cut = l->qend;
        an = ns = ar = 0;
        flags |= F_TC;
    }
    if (cut + opt > cap || l->qend > cap)
        return 0;
    if (ad)
        flags |= F_AD;
    wr16(out, q->id);
    wr16(out + 2, flags);
    wr16(out + 4, 1);
    wr16(out + 6, an);
    wr16(out + 8, ns);
    wr16(out + 10, ar + (opt ? 1u : 0u));
    /* RFC 1035 §7.3: the client's question as it sent it (the same length as libunbound's) */
    memcpy(out + 12, q->pkt + 12, q->qname_len + 4);
    memcpy(out + l->qend, up + l->qend, cut - l->qend);
    if (opt) {
        uint8_t *o = out + cut;
        o[0] = 0; /* root */
        wr16(o + 1, T_OPT);
        wr16(o + 3, ZONE_DNS_OUR_UDP_SIZE); /* RFC 6891 §6.1.2: our payload size */
        o[5] = 0;                           /* extended RCODE */
        o[6] = 0;                           /* version 0 */
        o[7] = q->edns_do ? 0x80 : 0;       /* DO copied (RFC 3225 §3), Z zero */
        o[8] = 0;
        wr16(o + 9, 0); /* no options */
    }
    return cut + opt;
}

/* The slow path: keeps the RRs a client without DO may see (and drops the OPT wherever it
 * is), writing them back with fresh compression. The new packet (malloc'ed, *n bytes) is
 * returned, or NULL. */
static uint8_t *rewrite(const struct zone_dns_query *q, const uint8_t *up, size_t len, size_t *n)
{
    ldns_pkt *in = NULL, *o = NULL;
    uint8_t *wire = NULL;
    ldns_rr_list *(*const get[3])(const ldns_pkt *) = {ldns_pkt_answer, ldns_pkt_authority,
                                                       ldns_pkt_additional};
    const ldns_pkt_section secs[3] = {LDNS_SECTION_ANSWER, LDNS_SECTION_AUTHORITY,
                                      LDNS_SECTION_ADDITIONAL};

    if (ldns_wire2pkt(&in, up, len) != LDNS_STATUS_OK)
        return NULL;
    o = ldns_pkt_new();
    if (!o)
        goto done;
    ldns_pkt_set_qr(o, true);
    ldns_pkt_set_rcode(o, ldns_pkt_get_rcode(in));
    if (ldns_pkt_qdcount(in) != 1)
        goto done;
    ldns_pkt_push_rr(o, LDNS_SECTION_QUESTION,
                     ldns_rr_clone(ldns_rr_list_rr(ldns_pkt_question(in), 0)));
    for (int s = 0; s < 3; s++) {
        ldns_rr_list *l = get[s](in);
        for (size_t i = 0; l && i < ldns_rr_list_rr_count(l); i++) {
            ldns_rr *rr = ldns_rr_list_rr(l, i);
            uint16_t t = (uint16_t)ldns_rr_get_type(rr);
            if (t == T_OPT)
                continue;
            if (!q->edns_do && is_dnssec(t) && !(s == 0 && t == q->qtype))
                continue;
            ldns_pkt_push_rr(o, secs[s], ldns_rr_clone(rr));
        }
    }
    if (ldns_pkt2wire(&wire, o, n) != LDNS_STATUS_OK) {
        free(wire);
        wire = NULL;
    }
done:
    ldns_pkt_free(o);
    ldns_pkt_free(in);
    return wire;
}

size_t rsv__relay(const struct zone_dns_query *q, size_t limit, bool ad, const uint8_t *up,
                  size_t len, uint8_t *out, size_t cap)
{
    struct layout l;
    size_t n = 0;

    if (!q->question_end || !walk(q, up, len, &l))
        return 0;
    if (!l.needs_rewrite)
        return build(q, limit, ad, up, &l, out, cap);

    size_t wlen = 0;
    uint8_t *w = rewrite(q, up, len, &wlen);
    if (w && walk(q, w, wlen, &l) && !l.needs_rewrite)
        n = build(q, limit, ad, w, &l, out, cap);
    free(w);
    return n;
}

/* ---- TTLs ------------------------------------------------------------------------------ */

/* Walks the RRs of a well-formed message, calling fn with the offset of each TTL field (the
 * OPT's, which holds flags, excepted). false when the message does not parse. */
static bool each_ttl(const uint8_t *p, size_t len, void (*fn)(size_t at, void *data), void *data)
{
    size_t off = 12;
    unsigned n;

    if (len < 12 || rd16(p + 4) != 1)
        return false;
    if (!skip_name(p, len, &off) || off + 4 > len)
        return false;
    off += 4;
    n = (unsigned)rd16(p + 6) + rd16(p + 8) + rd16(p + 10);
    for (unsigned i = 0; i < n; i++) {
        if (!skip_name(p, len, &off) || off + 10 > len)
            return false;
        uint16_t type = rd16(p + off);
        size_t rdlen = rd16(p + off + 8);
        if (off + 10 + rdlen > len)
            return false;
        if (type != T_OPT)
            fn(off + 4, data);
        off += 10 + rdlen;
    }
    return true;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

struct min_ttl {
    const uint8_t *p;
    uint32_t min;
};

static void take_min(size_t at, void *data)
{
    struct min_ttl *m = data;
    uint32_t ttl = rd32(m->p + at);
    if (ttl & 0x80000000u) /* RFC 2181 §8: read as 0 */
        ttl = 0;
    if (ttl < m->min)
        m->min = ttl;
}

uint32_t rsv__relay_min_ttl(const uint8_t *p, size_t len)
{
    struct min_ttl m = {p, UINT32_MAX};
    if (!each_ttl(p, len, take_min, &m))
        return 0;
    return m.min;
}

struct age {
    uint8_t *p;
    uint32_t by;
};

static void take_age(size_t at, void *data)
{
    struct age *a = data;
    uint32_t ttl = rd32(a->p + at);
    ttl = ttl > a->by ? ttl - a->by : 0;
    a->p[at] = (uint8_t)(ttl >> 24);
    a->p[at + 1] = (uint8_t)(ttl >> 16);
    a->p[at + 2] = (uint8_t)(ttl >> 8);
    a->p[at + 3] = (uint8_t)ttl;
}

void rsv__relay_age(uint8_t *p, size_t len, uint32_t seconds)
{
    struct age a = {p, seconds};
    if (seconds)
        (void)each_ttl(p, len, take_age, &a);
}
