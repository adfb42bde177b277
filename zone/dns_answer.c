/* The authoritative answers for the zone (DESIGN.md 1.4): from a parsed, in-zone query to the
 * response bytes, with the catalog read through the caller's zone_read and scratch in the
 * caller's arena; nothing else is allocated.
 *
 * Shape of a response. QR=1, the opcode, RD and CD copied; AA on every answer from our data;
 * RA as the caller says; Z and AD clear (RFC 1035 §4.1.1, RFC 8906 §3.1.3). The question is
 * copied from the packet, byte for byte (RFC 4343 §4.1). Owner names equal to the question
 * name are the pointer C0 0C; every other pointer also points into the question (dns_wire.c).
 * With an OPT in the query, the response carries ours: size 1232, version 0, DO copied, no
 * options (RFC 6891 §6.1, §7; RFC 3225 §3); without one, none.
 *
 * Negative answers (RFC 2308 §2): NXDOMAIN when nothing exists at or below the name, NOERROR
 * with an empty Answer (NODATA) when the name exists without the type, both authoritative with
 * the zone's SOA in Authority, whose TTL is min(SOA TTL, MINIMUM) (§3, §5) - here both are
 * soa_min_ttl. Unknown types are NODATA like any other absent type (RFC 8906 §3.1.2).
 *
 * Truncation. The size limit is the transport's: 512 for UDP without EDNS, the client's size
 * (512..4096) with it, 65535 for TCP. Answer RRs are written first, one at a time, each kept
 * only when the message still fits with the OPT (11 bytes) reserved behind it; the first that
 * does not fit ends the Answer section, and every answer RR dropped so (or cut by
 * udp_answer_limit) sets TC when enable_truncate is on (off: dropped silently, Consul's way).
 * Additional data comes after, in what room is left, and never sets TC (RFC 2181 §9: TC only
 * when required data did not fit); only the glue of SRV targets that were kept goes there. So
 * Additional is what gives way first. a_record_limit caps A/AAAA answers on every transport
 * and is a policy, not truncation: no TC. A negative answer's SOA always fits (the question is
 * at most 259 bytes, the SOA about 50, the OPT 11: far under 512).
 *
 * Order and shuffling. A service's instances are shuffled per query with the caller's RNG
 * before anything is written (so a truncated answer keeps a random subset), then A/AAAA are
 * deduplicated by address and SRV by (target, port, weight). The permutable answer RRs (a
 * service's A/AAAA/SRV) are listed in the layout, so a cached response can be re-shuffled in
 * place; more than ZONE_DNS_MAX_SHUFFLE of them (TCP only) leaves the rest in place.
 *
 * Cost of ldns on this path, measured with tests/unit/zone/test_dns_answer.c (test_cost_vs_ldns;
 * HERALD_DNS_BENCH=1) on the build machine (2-core Xeon VM, gcc -O2): svc1.service.consul A
 * with EDNS, three instances, LMDB pages warm.
 *   wall time, median of 5 runs of 200000 queries:
 *     zone_dns_parse + zone_read_begin/end + zone_dns_answer, lookups included   1.10 us
 *     ldns_wire2pkt(query) + ldns_pkt2wire(response) + frees, nothing else       2.02 us
 *   instructions (callgrind, 20000 queries, HERALD_DNS_BENCH_ITERS=20000):
 *     ours: 18.8k per query = 0.5k parse + 2.7k classification and wire writing
 *           + 15.2k catalog reads (LMDB gets and cursor scans, record decoding) + 0.4k read txn
 *     ldns: 22.1k per query = 2.9k ldns_wire2pkt + 19.2k ldns_pkt2wire and ldns_pkt_free
 *   allocations: ours 0 in the steady state (test_no_allocation_steady_state), ldns 40.
 * So parsing and writing through ldns would cost more than our whole answer, catalog reads
 * included, and allocate 40 times a query; our own parse and writer cost about a seventh of
 * ldns's. ldns stays in the tests, which parse every response we write with ldns_wire2pkt. */
#include "zone/dns.h"

#include <string.h>

/* The SOA timers of DESIGN.md 1.4, used when the config leaves them 0. */
#define DEFAULT_REFRESH 3600
#define DEFAULT_RETRY   600
#define DEFAULT_EXPIRE  86400

struct ans {
    const struct zone_dns_config *cfg;
    const struct zone_dns_query *q;
    struct zone_read *rd;
    struct base_arena *ar;
    struct zone_dns_layout *layout;
    uint64_t *rng;
    struct zone__wire w;
    struct zone__qname qn;
    struct zone__name domain;    /* the zone as asked: the question's suffix, lowercased */
    struct zone__name dc_domain; /* <dc>.<domain> */
    bool tcp;
    size_t reserve;   /* bytes kept for the OPT */
    unsigned dropped; /* answer RRs that did not fit or were cut by udp_answer_limit */
    unsigned n_addr;  /* A/AAAA answer RRs, for a_record_limit */
    bool stop;        /* an answer RR did not fit: the section is closed */
};

static uint16_t resp_flags(const struct zone_dns_query *q, bool ra)
{
    /* RFC 1035 §4.1.1: opcode and RD copied; RFC 4035 §3.2.2: CD copied; Z, AD, TC clear */
    return (uint16_t)(ZONE__F_QR | (q->flags & (ZONE__F_OPCODE_MASK | ZONE__F_RD | ZONE__F_CD)) |
                      (ra ? ZONE__F_RA : 0));
}

size_t zone_dns_error(const struct zone_dns_query *q, unsigned rcode, bool ra, uint8_t *out,
                      size_t cap)
{
    struct zone__wire w;

    if (rcode > 15 && !q->edns)
        rcode = ZONE__RCODE_SERVFAIL; /* an extended rcode needs an OPT to carry it */
    zone__wire_start(&w, q, out, cap, cap, (uint16_t)(resp_flags(q, ra) | (rcode & 0xf)));
    if (w.over)
        return 0;
    if (q->edns) {
        zone__wire_opt(&w, rcode, q->edns_do);
        if (w.count[ZONE__SEC_AR] == 0)
            return 0;
    }
    return zone__wire_finish(&w);
}

/* ---- the RNG and the shuffle ----------------------------------------------------------- */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull; /* xorshift64*: any non-zero state */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static void shuffle(struct zone__inst *v, size_t n, uint64_t *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(rng) % i);
        struct zone__inst t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* ---- RR emission ----------------------------------------------------------------------- */
/* Whether one more answer RR may be tried (addr: an A/AAAA, for a_record_limit). */
static bool answer_ok(struct ans *a, bool addr)
{
    if (addr && a->cfg->a_record_limit && a->n_addr >= a->cfg->a_record_limit)
        return false; /* a policy limit, silent */
    if (a->stop || (!a->tcp && a->cfg->udp_answer_limit &&
                    a->w.count[ZONE__SEC_AN] >= a->cfg->udp_answer_limit)) {
        a->dropped++;
        return false;
    }
    return true;
}

/* Ends an RR begun at start in section sec; an answer RR that does not fit closes the Answer
 * section and counts as dropped. permutable: list it in the layout. */
static bool emit(struct ans *a, size_t start, int sec, bool permutable, bool addr)
{
    if (!zone__wire_rr_end(&a->w, start, a->reserve, sec)) {
        if (sec == ZONE__SEC_AN) {
            a->dropped++;
            a->stop = true;
        }
        return false;
    }
    if (sec == ZONE__SEC_AN) {
        if (addr)
            a->n_addr++;
        struct zone_dns_layout *l = a->layout;
        if (permutable && l->n < ZONE_DNS_MAX_SHUFFLE) {
            l->rr_off[l->n] = (uint16_t)start;
            l->rr_len[l->n] = (uint16_t)(a->w.len - start);
            l->n++;
        }
    }
    return true;
}

static bool put_addr(struct ans *a, const uint8_t *owner, size_t olen, int family,
                     const uint8_t *ip, uint32_t ttl, int sec, bool permutable)
{
    size_t s =
        zone__wire_rr_begin(&a->w, owner, olen, family == 4 ? ZONE__RR_A : ZONE__RR_AAAA, ttl);
    zone__wire_bytes(&a->w, ip, family == 4 ? 4 : 16);
    return emit(a, s, sec, permutable, true);
}

static bool put_name_rr(struct ans *a, uint16_t type, const struct zone__name *target, uint32_t ttl,
                        int sec)
{
    size_t s = zone__wire_rr_begin(&a->w, a->q->lname, a->q->qname_len, type, ttl);
    zone__wire_name(&a->w, target->b, target->n, true); /* CNAME, NS, PTR: RFC 1035 §4.1.4 */
    return emit(a, s, sec, false, false);
}

static int put_soa(struct ans *a, int sec)
{
    const struct zone_dns_config *c = a->cfg;
    struct zone__name mname, rname;
    uint32_t serial;
    int rc = zone__dns_serial(a->rd, &serial);

    if (rc)
        return rc;
    zone__name_init(&mname);
    zone__name_label(&mname, "ns", 2);
    zone__name_wire(&mname, a->domain.b, a->domain.n);
    zone__name_init(&rname);
    zone__name_label(&rname, "hostmaster", 10);
    zone__name_wire(&rname, a->domain.b, a->domain.n);
    /* a domain near 255 bytes leaves no room for the labels: name the domain itself */
    if (mname.bad)
        mname = a->domain;
    if (rname.bad)
        rname = a->domain;
    /* RFC 2308 §3, §5: a negative answer's SOA TTL is min(SOA TTL, MINIMUM): both min_ttl */
    size_t s = zone__wire_rr_begin(&a->w, a->domain.b, a->domain.n, ZONE__RR_SOA, c->soa_min_ttl);
    zone__wire_name(&a->w, mname.b, mname.n, true);
    zone__wire_name(&a->w, rname.b, rname.n, true);
    zone__wire_u32(&a->w, serial);
    zone__wire_u32(&a->w, c->soa_refresh ? c->soa_refresh : DEFAULT_REFRESH);
    zone__wire_u32(&a->w, c->soa_retry ? c->soa_retry : DEFAULT_RETRY);
    zone__wire_u32(&a->w, c->soa_expire ? c->soa_expire : DEFAULT_EXPIRE);
    zone__wire_u32(&a->w, c->soa_min_ttl);
    emit(a, s, sec, false, false);
    return 0;
}

/* NODATA (rcode 0) or NXDOMAIN: no answers, the SOA in Authority (RFC 2308 §2.1, §2.2). */
static int negative(struct ans *a, unsigned rcode)
{
    zone__wire_flags(&a->w, (uint16_t)rcode, 0xf);
    return put_soa(a, ZONE__SEC_NS);
}

/* The zone's name for SOA, NS and targets, and <dc>.<domain> (the datacenter lowercased). */
static void set_domain(struct ans *a, const uint8_t *domain, size_t len)
{
    struct zone__name dc;

    zone__name_init(&a->domain);
    zone__name_wire(&a->domain, domain, len);
    zone__name_init(&a->dc_domain);
    if (a->cfg->datacenter && zone__dns_text2wire(a->cfg->datacenter, &dc) && dc.n > 1)
        zone__name_wire(&a->dc_domain, dc.b, dc.n - 1); /* without its root label */
    zone__name_wire(&a->dc_domain, a->domain.b, a->domain.n);
}

/* <label>.<kind>.<dc>.<domain> */
static void target_name(struct ans *a, struct zone__name *out, const char *label, size_t len,
                        const char *kind)
{
    zone__name_init(out);
    zone__name_label(out, label, len);
    zone__name_label(out, kind, strlen(kind));
    zone__name_wire(out, a->dc_domain.b, a->dc_domain.n);
}

static void hex_label(char *out, const uint8_t *ip, int family)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = family == 4 ? 4 : 16;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[ip[i] >> 4];
        out[2 * i + 1] = hex[ip[i] & 15];
    }
}

/* ---- services -------------------------------------------------------------------------- */
/* A set of byte strings (plus a 32-bit tag) for deduplication: open addressing in the arena,
 * sized for at most max insertions, so that a service with thousands of instances over TCP
 * costs a hash per RR rather than a comparison with every kept one. The keys are borrowed. */
struct dedup {
    struct dedup_entry {
        const uint8_t *k;
        uint32_t n, tag;
    } * e;
    size_t mask;
};

static void dedup_init(struct dedup *d, struct base_arena *ar, size_t max)
{
    size_t cap = 16;
    while (cap < 2 * max)
        cap <<= 1;
    d->e = base_arena_alloc(ar, cap * sizeof *d->e);
    memset(d->e, 0, cap * sizeof *d->e);
    d->mask = cap - 1;
}

/* Adds the key; false when it was there already. */
static bool dedup_add(struct dedup *d, const uint8_t *k, size_t n, uint32_t tag)
{
    uint32_t h = 2166136261u ^ tag; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ k[i]) * 16777619u;
    for (size_t i = h & d->mask;; i = (i + 1) & d->mask) {
        struct dedup_entry *e = &d->e[i];
        if (!e->k) {
            e->k = k;
            e->n = (uint32_t)n;
            e->tag = tag;
            return true;
        }
        if (e->n == n && e->tag == tag && memcmp(e->k, k, n) == 0)
            return false;
    }
}

/* A or AAAA answers for the instances of one family, deduplicated by address. */
static void service_addrs(struct ans *a, struct zone__inst *v, size_t n, int family, uint32_t ttl)
{
    struct dedup seen;

    dedup_init(&seen, a->ar, n);
    for (size_t i = 0; i < n; i++) {
        if (v[i].family != family || !dedup_add(&seen, v[i].ip, family == 4 ? 4 : 16, 0))
            continue;
        /* once one did not fit or a limit was hit, the rest cannot go in */
        if (!answer_ok(a, true) ||
            !put_addr(a, a->q->lname, a->q->qname_len, family, v[i].ip, ttl, ZONE__SEC_AN, true))
            return;
    }
}

/* The SRV target of an instance (RFC 2782): its hostname, its own IP's .addr. name, or its
 * node's .node. name. False when no valid name can be made. */
static bool srv_target(struct ans *a, const struct zone__inst *in, struct zone__name *t)
{
    if (in->family == 0) {
        zone__name_init(t);
        zone__name_text(t, in->host);
    } else if (in->own) {
        char hex[32];
        hex_label(hex, in->ip, in->family);
        target_name(a, t, hex, in->family == 4 ? 8 : 32, "addr");
    } else {
        target_name(a, t, in->node, strlen(in->node), "node");
    }
    return !t->bad;
}

static void service_srv(struct ans *a, struct zone__inst *v, size_t n, uint32_t ttl)
{
    /* An SRV RR takes at least 19 bytes, which bounds how many can be kept. */
    size_t max = a->w.limit / 19 + 1, k = 0;
    if (max > n)
        max = n;
    struct zone__name *tg = base_arena_alloc(a->ar, (max ? max : 1) * sizeof *tg);
    const struct zone__inst **in = base_arena_alloc(a->ar, (max ? max : 1) * sizeof *in);
    struct dedup seen;

    dedup_init(&seen, a->ar, n);
    for (size_t i = 0; i < n && k < max; i++) {
        /* tg[k] is the candidate; it stays only when its SRV is kept */
        if (!srv_target(a, &v[i], &tg[k]) ||
            !dedup_add(&seen, tg[k].b, tg[k].n, (uint32_t)v[i].port << 16 | v[i].weight))
            continue;
        if (!answer_ok(a, false))
            break;
        size_t s = zone__wire_rr_begin(&a->w, a->q->lname, a->q->qname_len, ZONE__RR_SRV, ttl);
        zone__wire_u16(&a->w, 1); /* priority */
        zone__wire_u16(&a->w, v[i].weight);
        zone__wire_u16(&a->w, v[i].port);
        zone__wire_name(&a->w, tg[k].b, tg[k].n, false); /* RFC 2782: not compressed */
        if (!emit(a, s, ZONE__SEC_AN, true, false))
            break;
        in[k++] = &v[i];
    }
    /* Additional: A/AAAA of the kept targets that have one (RFC 2782), once per target, in
     * the room the answers left (RFC 2181 §9: never TC for these) */
    struct dedup glue;
    dedup_init(&glue, a->ar, k);
    for (size_t i = 0; i < k; i++)
        if (in[i]->family && dedup_add(&glue, tg[i].b, tg[i].n, 0))
            put_addr(a, tg[i].b, tg[i].n, in[i]->family, in[i]->ip, ttl, ZONE__SEC_AR, false);
}

/* The CNAME of a service whose instances all have hostname addresses: one, the first after
 * the shuffle (an alias cannot have siblings, RFC 2181 §10.1). */
static void service_cname(struct ans *a, struct zone__inst *v, size_t n, uint32_t ttl)
{
    for (size_t i = 0; i < n; i++) {
        struct zone__name t;
        zone__name_init(&t);
        zone__name_text(&t, v[i].host);
        if (t.bad)
            continue;
        if (answer_ok(a, false))
            put_name_rr(a, ZONE__RR_CNAME, &t, ttl, ZONE__SEC_AN);
        return;
    }
}

static int answer_service(struct ans *a)
{
    struct zone__inst *v;
    size_t n, n4 = 0, n6 = 0;
    uint16_t t = a->q->qtype;
    int rc = zone__dns_instances(a->rd, a->cfg, a->qn.service, a->qn.tag, false, a->ar, &v, &n);

    if (rc)
        return rc;
    if (n == 0)
        return negative(a, a->qn.ent_if_empty ? ZONE__RCODE_NOERROR : ZONE__RCODE_NXDOMAIN);
    shuffle(v, n, a->rng);
    for (size_t i = 0; i < n; i++) {
        n4 += v[i].family == 4;
        n6 += v[i].family == 6;
    }
    uint32_t ttl = zone__dns_service_ttl(a->cfg, a->qn.service);
    bool hosts_only = n4 + n6 == 0;

    if (t == ZONE__RR_SRV) {
        service_srv(a, v, n, ttl);
    } else if (hosts_only && (t == ZONE__RR_A || t == ZONE__RR_AAAA || t == ZONE__RR_CNAME ||
                              t == ZONE__RR_ANY)) {
        service_cname(a, v, n, ttl);
    } else if (t == ZONE__RR_A && n4) {
        service_addrs(a, v, n, 4, ttl);
    } else if (t == ZONE__RR_AAAA && n6) {
        service_addrs(a, v, n, 6, ttl);
    } else if (t == ZONE__RR_ANY) {
        /* RFC 8482 §4.1: one RRset over UDP (A, else AAAA); over TCP §4.3 allows more */
        if (n4)
            service_addrs(a, v, n, 4, ttl);
        if (n6 && (!n4 || a->tcp))
            service_addrs(a, v, n, 6, ttl);
    } else {
        return negative(a, ZONE__RCODE_NOERROR);
    }
    return 0;
}

/* ---- nodes, addr names, the apex, PTR -------------------------------------------------- */
static void put_txt(struct ans *a, const struct zone_pair *m, uint32_t ttl)
{
    /* Consul: "key=value", or the value alone for keys "rfc1035-..." */
    const char *k = m->key, *val = m->value;
    bool bare = strncmp(k, "rfc1035-", 8) == 0;
    size_t kl = bare ? 0 : strlen(k), vl = strlen(val), total = bare ? vl : kl + 1 + vl;

    if (!answer_ok(a, false))
        return;
    size_t s = zone__wire_rr_begin(&a->w, a->q->lname, a->q->qname_len, ZONE__RR_TXT, ttl);
    /* character-strings of at most 255 bytes each (RFC 1035 §3.3.14) */
    size_t done = 0;
    do {
        size_t chunk = total - done > 255 ? 255 : total - done;
        uint8_t l = (uint8_t)chunk;
        zone__wire_bytes(&a->w, &l, 1);
        for (size_t i = 0; i < chunk; i++, done++) {
            char c = bare ? val[done] : done < kl ? k[done] : done == kl ? '=' : val[done - kl - 1];
            zone__wire_bytes(&a->w, &c, 1);
        }
    } while (done < total);
    emit(a, s, ZONE__SEC_AN, false, false);
}

static void put_hinfo(struct ans *a, uint32_t ttl)
{
    /* RFC 8482 §4.2: a synthesized HINFO "RFC8482" "" when there is nothing to give */
    static const uint8_t rdata[] = "\7RFC8482\0";
    if (!answer_ok(a, false))
        return;
    size_t s = zone__wire_rr_begin(&a->w, a->q->lname, a->q->qname_len, ZONE__RR_HINFO, ttl);
    zone__wire_bytes(&a->w, rdata, sizeof rdata - 1);
    emit(a, s, ZONE__SEC_AN, false, false);
}

static int answer_node(struct ans *a)
{
    struct zone_node nd;
    uint8_t ip[16];
    uint16_t t = a->q->qtype;
    uint32_t ttl = a->cfg->node_ttl;
    int rc = zone_node_get(a->rd, a->qn.node, a->ar, &nd);

    if (rc == BASE_ENOTFOUND)
        return negative(a, ZONE__RCODE_NXDOMAIN);
    if (rc)
        return rc;
    int family = zone__addr_parse(nd.address, ip);
    struct zone__name host;
    zone__name_init(&host);
    if (!family && *nd.address)
        zone__name_text(&host, nd.address);
    bool has_host = !family && *nd.address && !host.bad;
    bool want_addr = t == ZONE__RR_ANY || (family == 4 && t == ZONE__RR_A) ||
                     (family == 6 && t == ZONE__RR_AAAA);
    bool want_host = has_host && (t == ZONE__RR_A || t == ZONE__RR_AAAA || t == ZONE__RR_CNAME ||
                                  t == ZONE__RR_ANY);
    bool want_txt = nd.n_meta && (t == ZONE__RR_TXT || (t == ZONE__RR_ANY && a->tcp) ||
                                  (t == ZONE__RR_ANY && !family && !has_host));

    if (!want_host && !(want_addr && family) && !want_txt) {
        if (t == ZONE__RR_ANY) {
            if (answer_ok(a, false))
                put_hinfo(a, ttl);
            return 0;
        }
        return negative(a, ZONE__RCODE_NOERROR);
    }
    if (want_host) {
        if (answer_ok(a, false))
            put_name_rr(a, ZONE__RR_CNAME, &host, ttl, ZONE__SEC_AN);
    } else if (want_addr && family && answer_ok(a, true)) {
        put_addr(a, a->q->lname, a->q->qname_len, family, ip, ttl, ZONE__SEC_AN, false);
    }
    if (want_txt)
        for (size_t i = 0; i < nd.n_meta; i++)
            put_txt(a, &nd.meta[i], ttl);
    return 0;
}

static int answer_addr(struct ans *a)
{
    uint16_t t = a->q->qtype;
    int family = a->qn.family;

    if (t == ZONE__RR_ANY || (family == 4 && t == ZONE__RR_A) ||
        (family == 6 && t == ZONE__RR_AAAA)) {
        if (answer_ok(a, true))
            put_addr(a, a->q->lname, a->q->qname_len, family, a->qn.ip, a->cfg->node_ttl,
                     ZONE__SEC_AN, false);
        return 0;
    }
    return negative(a, ZONE__RCODE_NOERROR);
}

/* NS: one per server (a node running the "consul" service), with A/AAAA glue. */
static int put_ns(struct ans *a)
{
    struct zone__inst *v;
    struct dedup seen;
    size_t n, k = 0;
    uint32_t ttl = a->cfg->node_ttl;
    int rc = zone__dns_instances(a->rd, a->cfg, "consul", "", true, a->ar, &v, &n);

    if (rc)
        return rc;
    struct zone__name *tg = base_arena_alloc(a->ar, (n ? n : 1) * sizeof *tg);
    const struct zone__inst **in = base_arena_alloc(a->ar, (n ? n : 1) * sizeof *in);
    dedup_init(&seen, a->ar, n);
    for (size_t i = 0; i < n; i++) {
        target_name(a, &tg[k], v[i].node, strlen(v[i].node), "node");
        if (tg[k].bad || !dedup_add(&seen, tg[k].b, tg[k].n, 0))
            continue;
        if (!answer_ok(a, false))
            break;
        size_t s = zone__wire_rr_begin(&a->w, a->domain.b, a->domain.n, ZONE__RR_NS, ttl);
        zone__wire_name(&a->w, tg[k].b, tg[k].n, true);
        if (!emit(a, s, ZONE__SEC_AN, false, false))
            break;
        in[k++] = &v[i];
    }
    for (size_t i = 0; i < k; i++)
        if (in[i]->node_family)
            put_addr(a, tg[i].b, tg[i].n, in[i]->node_family, in[i]->node_ip, ttl, ZONE__SEC_AR,
                     false);
    if (a->w.count[ZONE__SEC_AN] == 0 && !a->dropped)
        return negative(a, ZONE__RCODE_NOERROR); /* no server in the catalog */
    return 0;
}

static int answer_apex(struct ans *a)
{
    uint16_t t = a->q->qtype;
    int rc;

    if (t == ZONE__RR_SOA || t == ZONE__RR_ANY) {
        if (answer_ok(a, false) && (rc = put_soa(a, ZONE__SEC_AN)))
            return rc;
        if (t == ZONE__RR_ANY && a->tcp)
            return put_ns(a);
        return 0;
    }
    if (t == ZONE__RR_NS)
        return put_ns(a);
    return negative(a, ZONE__RCODE_NOERROR);
}

/* PTR for an address the catalog has: <node>.node.<dc>.<domain> for a node's address,
 * <service>.service.<dc>.<domain> for a service's own (as Consul). BASE_ENOTFOUND when the
 * catalog does not have it or the type is not PTR/ANY: the caller refuses or recurses. */
static int answer_ptr(struct ans *a)
{
    struct zone__ptr *v;
    struct zone__name d, *tg;
    size_t n;
    uint16_t t = a->q->qtype;
    int rc;

    if (t != ZONE__RR_PTR && t != ZONE__RR_ANY)
        return BASE_ENOTFOUND;
    if ((rc = zone__dns_ptrs(a->rd, a->qn.family, a->qn.ip, a->ar, &v, &n)))
        return rc;
    if (n == 0 || !zone__dns_text2wire(a->cfg->domain, &d) || d.n <= 1)
        return BASE_ENOTFOUND;
    set_domain(a, d.b, d.n); /* targets are in the primary domain */
    tg = base_arena_alloc(a->ar, n * sizeof *tg);
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        if (v[i].service)
            target_name(a, &tg[i], v[i].service, strlen(v[i].service), "service");
        else
            target_name(a, &tg[i], v[i].node, v[i].node_len, "node");
        for (size_t j = 0; j < i && !dup; j++)
            dup = !tg[j].bad && tg[j].n == tg[i].n && memcmp(tg[j].b, tg[i].b, tg[i].n) == 0;
        if (tg[i].bad || dup) {
            tg[i].bad = true;
            continue;
        }
        if (answer_ok(a, false))
            put_name_rr(a, ZONE__RR_PTR, &tg[i], a->cfg->node_ttl, ZONE__SEC_AN);
    }
    return 0;
}

/* ---- the entry point ------------------------------------------------------------------- */
int zone_dns_answer(struct zone_read *rd, const struct zone_dns_config *cfg,
                    const struct zone_dns_query *q, size_t limit, bool ra, uint64_t *rng,
                    struct base_arena *ar, uint8_t *out, size_t cap, size_t *len,
                    struct zone_dns_layout *layout)
{
    struct ans a;
    int rc = 0;

    layout->n = 0;
    *len = 0;
    if (!q->question_end) {
        *len = zone_dns_error(q, ZONE__RCODE_FORMERR, ra, out, cap);
        return 0;
    }
    /* other classes are not ours; no zone transfer yet (REFUSED, RFC 5936 §2.2.1 allows it) */
    if ((q->qclass != ZONE__CLASS_IN && q->qclass != ZONE__CLASS_ANY) ||
        q->qtype == ZONE__RR_AXFR || q->qtype == ZONE__RR_IXFR) {
        *len = zone_dns_error(q, ZONE__RCODE_REFUSED, ra, out, cap);
        return 0;
    }

    a.cfg = cfg;
    a.q = q;
    a.rd = rd;
    a.ar = ar;
    a.layout = layout;
    a.rng = rng;
    a.dropped = 0;
    a.n_addr = 0;
    a.stop = false;
    zone__dns_classify(cfg, q, &a.qn);
    if (a.qn.kind == ZONE__K_FOREIGN)
        return BASE_ENOTFOUND;

    if (limit < ZONE__MIN_UDP)
        limit = ZONE__MIN_UDP; /* RFC 6891 §6.2.5 */
    a.tcp = limit > ZONE_DNS_MAX_UDP;
    a.reserve = q->edns ? ZONE__OPT_LEN : 0;
    zone__wire_start(&a.w, q, out, cap, limit, (uint16_t)(resp_flags(q, ra) | ZONE__F_AA));

    /* the zone's name as asked: answers under the alt domain stay under it */
    set_domain(&a, q->lname + a.qn.domain_off, q->qname_len - a.qn.domain_off);

    switch (a.qn.kind) {
    case ZONE__K_APEX:
        rc = answer_apex(&a);
        break;
    case ZONE__K_ENT:
        rc = negative(&a, ZONE__RCODE_NOERROR);
        break;
    case ZONE__K_NX:
        rc = negative(&a, ZONE__RCODE_NXDOMAIN);
        break;
    case ZONE__K_SERVICE:
        rc = answer_service(&a);
        break;
    case ZONE__K_NODE:
        rc = answer_node(&a);
        break;
    case ZONE__K_ADDR:
        rc = answer_addr(&a);
        break;
    case ZONE__K_PTR:
        rc = answer_ptr(&a);
        break;
    case ZONE__K_FOREIGN:
        rc = BASE_ENOTFOUND;
        break;
    }
    if (rc) {
        layout->n = 0;
        return rc == BASE_ENOTFOUND ? rc : BASE_ESTORE;
    }
    /* data that could not be written (a hostname that is no valid name): NODATA, not an empty
     * NOERROR without the SOA */
    if (a.w.count[ZONE__SEC_AN] == 0 && a.w.count[ZONE__SEC_NS] == 0 && !a.dropped &&
        a.qn.kind != ZONE__K_PTR && (rc = negative(&a, ZONE__RCODE_NOERROR)))
        return BASE_ESTORE;
    /* RFC 2181 §9: TC only when answer data was dropped */
    if (a.dropped && cfg->enable_truncate)
        zone__wire_flags(&a.w, ZONE__F_TC, 0);
    if (q->edns)
        zone__wire_opt(&a.w, 0, q->edns_do);
    *len = zone__wire_finish(&a.w);
    if (layout->n < 2)
        layout->n = 0;
    return 0;
}
