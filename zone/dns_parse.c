/* Parsing a DNS query: the header, the question, and the OPT RR, with every read bounds-checked
 * (the input comes from the network, at most 65535 bytes).
 *
 * What we accept. A query (QR=0) with exactly one question (RFC 9619 makes QDCOUNT=1 the rule
 * for QUERY; RFC 1035 §4.1.2 never defined more). The question name is read as plain labels:
 * a compression pointer there could only point back into the 12-byte header, so it is a format
 * error, as are the reserved label types 01 and 10 (RFC 6891 §5 retired extended labels) and a
 * name over 255 bytes (RFC 1035 §2.3.4). The other sections are walked only to find the OPT
 * RR in Additional (RFC 6891 §6.1.1); their owner names may be compressed, so pointers are
 * followed with two bounds: each must point before the start of the name segment it ends
 * (which makes chasing strictly move backwards, so no loop and no forward pointer can make us
 * spin), and the expanded name must stay within 255 bytes. An OPT whose owner is not the root,
 * whose options overrun its RDATA, or a second OPT is a format error (RFC 6891 §6.1.1-6.1.2);
 * so is a COOKIE option of an impossible length (RFC 7873 §5.2.2), answered with our OPT.
 * Answer and Authority records in a query are tolerated and ignored; so are bytes after the
 * last record.
 *
 * Precedence of the outcomes. Unreadable header or QR=1: drop (answering a response invites
 * loops). Then an opcode other than QUERY gives NOTIMP whatever else is wrong (RFC 8906 §3.1.4:
 * we do not implement it, so its format is not ours to judge). Then format errors, then EDNS
 * version > 0 (BADVERS, RFC 6891 §6.1.3, only for an otherwise sound query). The struct keeps
 * what was parsed so that the error response can echo the question and carry an OPT
 * (RFC 6891 §7) where those were sound. */
#include "zone/dns.h"

#include <string.h>

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* The question name, plain labels only, into q->lname lowercased. */
static bool read_qname(const uint8_t *p, size_t len, size_t *off, struct zone_dns_query *q)
{
    size_t at = *off, n = 0;

    for (;;) {
        if (at >= len)
            return false;
        uint8_t c = p[at];
        if (c == 0)
            break;
        if (c & 0xc0) /* a pointer (11) or a reserved label type (01, 10) */
            return false;
        if (c > len - at - 1 || n + 1 + c + 1 > ZONE_DNS_MAX_NAME)
            return false;
        q->lname[n++] = c;
        for (size_t i = 0; i < c; i++) {
            uint8_t ch = p[at + 1 + i];
            q->lname[n++] = ch >= 'A' && ch <= 'Z' ? (uint8_t)(ch + 32) : ch;
        }
        at += 1 + (size_t)c;
    }
    q->lname[n++] = 0;
    q->qname_len = n;
    *off = at + 1;
    return true;
}

/* Skips a name that may be compressed; *root tells whether it was the root name. */
static bool skip_name(const uint8_t *p, size_t len, size_t *off, bool *root)
{
    size_t at = *off, lowest = *off, total = 0;
    bool jumped = false;

    for (;;) {
        if (at >= len)
            return false;
        uint8_t c = p[at];
        if (c == 0) {
            if (!jumped)
                *off = at + 1;
            *root = total == 0;
            return true;
        }
        if ((c & 0xc0) == 0xc0) {
            if (at + 1 >= len)
                return false;
            size_t target = (size_t)(c & 0x3f) << 8 | p[at + 1];
            /* strictly before where this segment began: no loops, no forward pointers */
            if (target >= lowest || target < ZONE__HDR_LEN)
                return false;
            if (!jumped)
                *off = at + 2;
            jumped = true;
            lowest = target;
            at = target;
            continue;
        }
        if (c & 0xc0)
            return false;
        total += 1 + (size_t)c;
        if (total + 1 > ZONE_DNS_MAX_NAME || c > len - at - 1)
            return false;
        at += 1 + (size_t)c;
    }
}

/* WALK_BAD_COOKIE: a sound OPT whose COOKIE option has an impossible length; the query is a
 * format error, but its OPT is echoed (it was read whole). */
enum walk { WALK_OK, WALK_BAD, WALK_BAD_OPT, WALK_BAD_COOKIE };

#define OPT_COOKIE 10

/* The OPT RR's fields (after the owner). */
static enum walk read_opt(const uint8_t *p, size_t rdlen, uint16_t cls, uint32_t ttl,
                          struct zone_dns_query *q)
{
    enum walk w = WALK_OK;

    /* RFC 6891 §6.1.2: options are {code, length, data}; unknown ones are ignored, but they
     * must tile the RDATA exactly */
    for (size_t at = 0; at < rdlen;) {
        if (rdlen - at < 4)
            return WALK_BAD_OPT;
        size_t olen = rd16(p + at + 2);
        if (olen > rdlen - at - 4)
            return WALK_BAD_OPT;
        /* RFC 7873 §5.2.2: a COOKIE is a client cookie of 8 bytes, alone or followed by a
         * server cookie of 8 to 32: any other length is FORMERR. Sound cookies are ignored
         * (§5.2.1 allows a server without cookie support to). */
        if (rd16(p + at) == OPT_COOKIE && olen != 8 && (olen < 16 || olen > 40))
            w = WALK_BAD_COOKIE;
        at += 4 + olen;
    }
    q->edns = true;
    q->edns_size = cls;
    q->edns_version = (uint8_t)(ttl >> 16);
    q->edns_do = (ttl & ZONE__EDNS_DO) != 0;
    return w;
}

static enum walk walk_rrs(const uint8_t *p, size_t len, size_t off, unsigned n_skip, unsigned n_ar,
                          struct zone_dns_query *q)
{
    bool seen_opt = false, bad_cookie = false;

    for (unsigned i = 0; i < n_skip + n_ar; i++) {
        bool root;
        if (!skip_name(p, len, &off, &root) || len - off < 10)
            return WALK_BAD;
        uint16_t type = rd16(p + off), cls = rd16(p + off + 2);
        uint32_t ttl = (uint32_t)rd16(p + off + 4) << 16 | rd16(p + off + 6);
        size_t rdlen = rd16(p + off + 8);
        off += 10;
        if (rdlen > len - off)
            return WALK_BAD;
        if (i >= n_skip && type == ZONE__RR_OPT) {
            /* RFC 6891 §6.1.1: one OPT at most, owned by the root */
            if (seen_opt || !root)
                return WALK_BAD_OPT;
            seen_opt = true;
            enum walk w = read_opt(p + off, rdlen, cls, ttl, q);
            if (w == WALK_BAD_OPT)
                return w;
            if (w == WALK_BAD_COOKIE)
                bad_cookie = true;
        }
        off += rdlen;
    }
    return bad_cookie ? WALK_BAD_COOKIE : WALK_OK;
}

int zone_dns_parse(const uint8_t *pkt, size_t len, struct zone_dns_query *q)
{
    memset(q, 0, sizeof *q);
    q->pkt = pkt;
    q->len = len;
    if (!pkt || len < ZONE__HDR_LEN)
        return ZONE_DNS_DROP;
    q->id = rd16(pkt);
    q->flags = rd16(pkt + 2);
    q->opcode = (uint8_t)((q->flags >> 11) & 0xf);
    if (q->flags & ZONE__F_QR)
        return ZONE_DNS_DROP;

    unsigned qd = rd16(pkt + 4), an = rd16(pkt + 6), ns = rd16(pkt + 8), ar = rd16(pkt + 10);
    size_t off = ZONE__HDR_LEN;
    bool bad = false;
    enum walk w = WALK_OK;

    if (qd == 1) {
        if (read_qname(pkt, len, &off, q) && len - off >= 4) {
            q->qtype = rd16(pkt + off);
            q->qclass = rd16(pkt + off + 2);
            off += 4;
            q->question_end = off;
        } else {
            q->qname_len = 0;
            bad = true;
        }
    } else {
        /* not answerable, but walked to find the OPT for the error response */
        for (unsigned i = 0; i < qd && !bad; i++) {
            bool root;
            if (!skip_name(pkt, len, &off, &root) || len - off < 4)
                bad = true;
            else
                off += 4;
        }
    }
    if (!bad)
        w = walk_rrs(pkt, len, off, an + ns, ar, q);
    if (w == WALK_BAD_COOKIE) {
        bad = true; /* a format error whose OPT was sound: the response carries ours */
    } else if (bad || w != WALK_OK) {
        /* an OPT after the damage was never reached, and a damaged one is not echoed */
        q->edns = false;
        q->edns_version = 0;
        q->edns_do = false;
        q->edns_size = 0;
        bad = true;
    }

    if (q->opcode != 0)
        return ZONE_DNS_NOTIMP;
    if (bad || qd != 1)
        return ZONE_DNS_FORMERR;
    if (q->edns && q->edns_version > 0)
        return ZONE_DNS_BADVERS;
    return 0;
}
