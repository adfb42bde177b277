/* Name classification: what a query name means in the zone (DESIGN.md 1.4).
 *
 * The name is read from the right, label by label, case-insensitively (RFC 4343; the question
 * was lowercased by the parser). Past the domain (or the alt domain, whichever matched) come:
 *   [<dc> | <dc>.dc]     an optional datacenter, bare or in the labelled form; a datacenter
 *                        that is not ours is NXDOMAIN (we hold no other datacenter's data);
 *   service | node | addr   the kind of lookup;
 *   the lookup's labels: <svc>, <tag>.<svc>, _<svc>._<tag> (RFC 2782; the tag "tcp" means no
 *                        tag, as in Consul; "udp" is a tag like any other), <node>, <hex>.
 * Every name that has a name with data below it exists even when nothing is at it: the domain's
 * "service", "node", "addr", "dc" labels, our datacenter label, "<dc>.dc", and the same under
 * the datacenter. Those empty non-terminals answer NOERROR with no data (RFC 8020: NXDOMAIN
 * would tell a resolver that nothing below exists and cut off every service).
 * _tcp.service is one too (the parent of every _svc._tcp.service name). Any other single
 * "_x.service" label is the parent of the _svc._x.service names when some service carries the
 * tag x; rather than scan every service to know, such a name answers NODATA when no service
 * is named "_x" (ent_if_empty): claiming a name exists is harmless, denying one that does
 * is not. Everything else under the domain that is not one of these forms is NXDOMAIN.
 *
 * Reverse names (in-addr.arpa, ip6.arpa) are claimed too, for PTR of catalog addresses; only
 * a complete address (4 decimal or 32 nibble labels) is looked up, and the zone answers only
 * when the catalog has it (dns_answer.c); the rest belongs to the caller (refuse or recurse). */
#include "zone/dns.h"

#include <string.h>

bool zone__dns_text2wire(const char *s, struct zone__name *out)
{
    zone__name_init(out);
    if (!s || !*s)
        return false;
    if (strcmp(s, ".") == 0) {
        out->b[0] = 0;
        out->n = 1;
        return true;
    }
    zone__name_text(out, s);
    for (size_t i = 0; i < out->n; i++)
        if (out->b[i] >= 'A' && out->b[i] <= 'Z')
            out->b[i] = (uint8_t)(out->b[i] + 32);
    return !out->bad;
}

/* Offset in name where suffix starts at a label boundary, or -1. */
static long suffix_at(const uint8_t *name, size_t len, const uint8_t *suffix, size_t slen)
{
    if (slen > len)
        return -1;
    for (size_t i = 0; i < len; i += (size_t)name[i] + 1) {
        if (len - i == slen)
            return memcmp(name + i, suffix, slen) == 0 ? (long)i : -1;
        if (name[i] == 0)
            break;
    }
    return -1;
}

/* The domain (or alt domain) the query name is at or under: its offset, or -1. A root domain
 * would claim every name, so it never matches. */
static long zone_match(const struct zone_dns_config *cfg, const struct zone_dns_query *q)
{
    struct zone__name d;
    long at;

    if (cfg->domain && zone__dns_text2wire(cfg->domain, &d) && d.n > 1 &&
        (at = suffix_at(q->lname, q->qname_len, d.b, d.n)) >= 0)
        return at;
    if (cfg->alt_domain && *cfg->alt_domain && zone__dns_text2wire(cfg->alt_domain, &d) &&
        d.n > 1 && (at = suffix_at(q->lname, q->qname_len, d.b, d.n)) >= 0)
        return at;
    return -1;
}

static const uint8_t in_addr_arpa[] = "\7in-addr\4arpa";
static const uint8_t ip6_arpa[] = "\3ip6\4arpa";

static long reverse_match(const struct zone_dns_query *q, int *family)
{
    long at = suffix_at(q->lname, q->qname_len, in_addr_arpa, sizeof in_addr_arpa);
    if (at >= 0) {
        *family = 4;
        return at;
    }
    at = suffix_at(q->lname, q->qname_len, ip6_arpa, sizeof ip6_arpa);
    if (at >= 0)
        *family = 6;
    return at;
}

bool zone_dns_in_zone(const struct zone_dns_config *cfg, const struct zone_dns_query *q)
{
    int family;

    if (!q->question_end || q->qname_len == 0)
        return false;
    return zone_match(cfg, q) >= 0 || reverse_match(q, &family) >= 0;
}

/* ---- labels ---------------------------------------------------------------------------- */
struct labels {
    const uint8_t *name;
    size_t off[ZONE_DNS_MAX_NAME / 2 + 1];
    size_t n;
};

static void labels_of(struct labels *l, const uint8_t *name, size_t end)
{
    l->name = name;
    l->n = 0;
    for (size_t i = 0; i < end && name[i]; i += (size_t)name[i] + 1)
        l->off[l->n++] = i;
}

static bool label_is(const struct labels *l, size_t j, const char *s)
{
    const uint8_t *p = l->name + l->off[j];
    size_t n = strlen(s);
    return p[0] == n && memcmp(p + 1, s, n) == 0;
}

/* Copies label j NUL-terminated; false when it holds a NUL (no catalog name does). */
static bool label_copy(const struct labels *l, size_t j, char out[ZONE__MAX_LABEL + 1])
{
    const uint8_t *p = l->name + l->off[j];
    if (memchr(p + 1, 0, p[0]))
        return false;
    memcpy(out, p + 1, p[0]);
    out[p[0]] = 0;
    return true;
}

static bool label_is_dc(const struct labels *l, size_t j, const char *dc)
{
    const uint8_t *p = l->name + l->off[j];
    size_t n = dc ? strlen(dc) : 0;
    if (n == 0 || p[0] != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)dc[i];
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c + 32);
        if (p[1 + i] != c)
            return false;
    }
    return true;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* <hex>.addr: 8 hex digits for IPv4, 32 for IPv6. */
static int parse_hex_addr(const uint8_t *label, uint8_t ip[16])
{
    size_t n = label[0];
    if (n != 8 && n != 32)
        return 0;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval(label[1 + i]), lo = hexval(label[2 + i]);
        if (hi < 0 || lo < 0)
            return 0;
        ip[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return n == 8 ? 4 : 6;
}

/* The labels before the reverse suffix, least significant first. */
static bool parse_reverse(const struct labels *l, size_t n, int family, uint8_t ip[16])
{
    if (family == 4) {
        if (n != 4)
            return false;
        for (size_t j = 0; j < 4; j++) {
            const uint8_t *p = l->name + l->off[j];
            unsigned v = 0;
            if (p[0] < 1 || p[0] > 3 || (p[0] > 1 && p[1] == '0'))
                return false;
            for (size_t i = 0; i < p[0]; i++) {
                if (p[1 + i] < '0' || p[1 + i] > '9')
                    return false;
                v = v * 10 + (unsigned)(p[1 + i] - '0');
            }
            if (v > 255)
                return false;
            ip[3 - j] = (uint8_t)v;
        }
        return true;
    }
    if (n != 32)
        return false;
    memset(ip, 0, 16);
    for (size_t j = 0; j < 32; j++) {
        const uint8_t *p = l->name + l->off[j];
        int v = p[0] == 1 ? hexval(p[1]) : -1;
        if (v < 0)
            return false;
        ip[15 - j / 2] |= (uint8_t)(j % 2 ? v << 4 : v);
    }
    return true;
}

void zone__dns_classify(const struct zone_dns_config *cfg, const struct zone_dns_query *q,
                        struct zone__qname *out)
{
    struct labels l;
    long at;
    int family = 0;

    out->kind = ZONE__K_NX;
    out->domain_off = 0;
    out->ent_if_empty = false;
    out->service[0] = out->tag[0] = out->node[0] = 0;
    out->family = 0;

    at = zone_match(cfg, q);
    if (at < 0) {
        out->kind = ZONE__K_FOREIGN;
        at = reverse_match(q, &family);
        if (at < 0)
            return;
        labels_of(&l, q->lname, (size_t)at);
        if (parse_reverse(&l, l.n, family, out->ip)) {
            out->kind = ZONE__K_PTR;
            out->family = family;
        }
        out->domain_off = (size_t)at;
        return;
    }
    out->domain_off = (size_t)at;
    labels_of(&l, q->lname, (size_t)at);
    size_t end = l.n;
    if (end == 0) {
        out->kind = ZONE__K_APEX;
        return;
    }

    /* the datacenter: <dc>.dc or a bare <dc> */
    if (label_is(&l, end - 1, "dc")) {
        if (end == 1) {
            out->kind = ZONE__K_ENT;
            return;
        }
        if (!label_is_dc(&l, end - 2, cfg->datacenter))
            return; /* NX: not our datacenter */
        if (end == 2) {
            out->kind = ZONE__K_ENT;
            return;
        }
        end -= 2;
    } else if (!label_is(&l, end - 1, "service") && !label_is(&l, end - 1, "node") &&
               !label_is(&l, end - 1, "addr")) {
        if (!label_is_dc(&l, end - 1, cfg->datacenter))
            return;
        if (end == 1) {
            out->kind = ZONE__K_ENT;
            return;
        }
        end -= 1;
    }

    size_t n = end - 1; /* labels before the kind label */
    if (label_is(&l, end - 1, "service")) {
        if (n == 0) {
            out->kind = ZONE__K_ENT;
        } else if (n == 1) {
            if (label_is(&l, 0, "_tcp")) {
                out->kind = ZONE__K_ENT; /* parent of every _svc._tcp.service name */
            } else if (label_copy(&l, 0, out->service)) {
                out->kind = ZONE__K_SERVICE;
                out->ent_if_empty = out->service[0] == '_';
            }
        } else if (n == 2) {
            const uint8_t *a = l.name + l.off[0], *b = l.name + l.off[1];
            char t0[ZONE__MAX_LABEL + 1], t1[ZONE__MAX_LABEL + 1];
            if (!label_copy(&l, 0, t0) || !label_copy(&l, 1, t1))
                return;
            if (a[1] == '_' && b[1] == '_') {
                /* RFC 2782 _Service._Proto: the proto is a tag, "tcp" means any (Consul) */
                if (a[0] < 2 || b[0] < 2)
                    return;
                memcpy(out->service, t0 + 1, strlen(t0));
                if (strcmp(t1 + 1, "tcp") != 0)
                    memcpy(out->tag, t1 + 1, strlen(t1));
            } else {
                memcpy(out->tag, t0, strlen(t0) + 1);
                memcpy(out->service, t1, strlen(t1) + 1);
            }
            out->kind = ZONE__K_SERVICE;
        }
    } else if (label_is(&l, end - 1, "node")) {
        if (n == 0)
            out->kind = ZONE__K_ENT;
        else if (n == 1 && label_copy(&l, 0, out->node))
            out->kind = ZONE__K_NODE;
    } else if (label_is(&l, end - 1, "addr")) {
        if (n == 0)
            out->kind = ZONE__K_ENT;
        else if (n == 1 && (family = parse_hex_addr(l.name + l.off[0], out->ip))) {
            out->kind = ZONE__K_ADDR;
            out->family = family;
        }
    }
}

/* ---- TTLs ------------------------------------------------------------------------------ */
static bool prefix_nocase(const char *s, const char *prefix, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)s[i], b = (unsigned char)prefix[i];
        if (!a)
            return false;
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a + 32);
        if (b >= 'A' && b <= 'Z')
            b = (unsigned char)(b + 32);
        if (a != b)
            return false;
    }
    return true;
}

uint32_t zone__dns_service_ttl(const struct zone_dns_config *cfg, const char *service)
{
    size_t best_len = 0;
    uint32_t ttl = 0;
    bool found = false;

    for (size_t i = 0; i < cfg->n_service_ttl; i++) {
        const char *p = cfg->service_ttl[i].pattern;
        size_t n = p ? strlen(p) : 0;
        if (n == 0)
            continue;
        if (p[n - 1] != '*') {
            if (base_strcasecmp(p, service) == 0)
                return cfg->service_ttl[i].ttl; /* an exact name wins */
            continue;
        }
        /* "prefix*": the longest matching prefix; "*" is the empty prefix */
        if (prefix_nocase(service, p, n - 1) && (!found || n - 1 > best_len)) {
            best_len = n - 1;
            ttl = cfg->service_ttl[i].ttl;
            found = true;
        }
    }
    return ttl;
}
