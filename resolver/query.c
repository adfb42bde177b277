/* One query, from the bytes received to the bytes to send, for both transports: parse, pick the
 * size limit, answer from the cache or build the answer from the catalog (and cache it), and
 * hand names that are not ours to recursion (recurse.c) when the client may recurse, else
 * refuse them. RA is set on every answer to a client that may recurse (zone answers and
 * errors included) and on no other: cached answers get it patched in. Runs on a worker thread
 * with that worker's engine; allocates only when a new answer is cached (and, for recursion,
 * per recursive query). */
#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

uint64_t rsv__rng_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&s;
    }
    return s ? s : 1;
}

void rsv__engine_init(struct rsv__engine *e, struct zone_store *store,
                      const struct zone_dns_config *zone, const _Atomic uint64_t *catalog_index,
                      struct rsv__stats *stats, size_t cache_entries, size_t cache_max_bytes)
{
    memset(e, 0, sizeof *e);
    e->store = store;
    e->zone = zone;
    e->catalog_index = catalog_index;
    e->stats = stats;
    e->rng = rsv__rng_seed();
    rsv__cache_init(&e->cache, cache_entries, cache_max_bytes);
    base_arena_init(&e->arena);
}

void rsv__engine_close(struct rsv__engine *e)
{
    rsv__cache_close(&e->cache);
    base_arena_close(&e->arena);
}

/* ---- debug log ------------------------------------------------------------------------- */

static const char *rcode_name(unsigned rc)
{
    static const char *const names[] = {"NOERROR",  "FORMERR", "SERVFAIL",
                                        "NXDOMAIN", "NOTIMP",  "REFUSED"};
    return rc < BASE_ARRAY_LEN(names) ? names[rc] : "RCODE";
}

static bool name_keeps(uint8_t ch, bool strict)
{
    if (strict)
        return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
    return ch > 32 && ch < 127 && ch != '.' && ch != '\\';
}

bool rsv__name_text(const struct zone_dns_query *q, bool strict, char *buf, size_t cap)
{
    size_t at = 0, i = 0;
    while (i < q->qname_len && q->lname[i]) {
        unsigned n = q->lname[i++];
        for (unsigned j = 0; j < n && i < q->qname_len; j++, i++) {
            uint8_t ch = q->lname[i];
            if (at + 5 >= cap) { /* room for one escape, the '.' and the NUL */
                buf[at] = '\0';
                return false;
            }
            if (name_keeps(ch, strict))
                buf[at++] = (char)ch;
            else
                at += (size_t)snprintf(buf + at, cap - at, "\\%03u", ch);
        }
        buf[at++] = '.';
    }
    if (at == 0)
        buf[at++] = '.';
    buf[at] = '\0';
    return true;
}

static void log_query(const struct zone_dns_query *q, bool tcp, const struct sockaddr *peer,
                      const uint8_t *out, size_t len, const char *how)
{
    char name[300], addr[INET6_ADDRSTRLEN + 8] = "?";
    unsigned rc = len >= 4 ? out[3] & 0x0fu : 0;
    unsigned an = len >= 8 ? (unsigned)out[6] << 8 | out[7] : 0;

    if (peer && peer->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)peer)->sin_addr, addr,
                  sizeof addr);
    else if (peer && peer->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)peer)->sin6_addr, addr,
                  sizeof addr);
    (void)rsv__name_text(q, false, name, sizeof name); /* a long name is logged cut */
    LOG_DEBUG("dns", "%s %s %s type=%u -> %s answers=%u (%s)", tcp ? "tcp" : "udp", addr, name,
              q->qtype, rcode_name(rc), an, how);
}

/* ---- answering ------------------------------------------------------------------------- */

static size_t error_answer(struct rsv__engine *e, unsigned rcode, bool ra, uint8_t *out, size_t cap)
{
    switch (rcode) {
    case 1:
        RSV__COUNT(e->stats, formerr);
        break;
    case 2:
        RSV__COUNT(e->stats, servfail);
        break;
    case 4:
        RSV__COUNT(e->stats, notimp);
        break;
    case 5:
        RSV__COUNT(e->stats, refused);
        break;
    default:
        RSV__COUNT(e->stats, badvers);
        break;
    }
    return zone_dns_error(&e->q, rcode, ra, out, cap);
}

/* An outside name (or a reverse name the catalog does not know): recursion for a client that
 * may recurse, else REFUSED without RA (as Consul without recursors). */
static size_t outside(struct rsv__engine *e, bool ra, size_t limit, bool tcp,
                      struct rsv__conn *conn, const struct sockaddr *peer, uint8_t *out, size_t cap)
{
    struct zone_dns_query *q = &e->q;
    size_t n;

    if (!ra || q->qtype == 252 /* AXFR */ || q->qtype == 251 /* IXFR */) {
        if (e->rcfg && e->rcfg->enabled && !ra)
            RSV__COUNT(e->stats, recursion_refused);
        n = error_answer(e, 5, ra, out, cap);
        if (base_log_get_level() >= BASE_LOG_DEBUG)
            log_query(q, tcp, peer, out, n, "refused");
        return n;
    }
    n = rsv__recurse(e->rec, q, limit, conn, peer, out, cap);
    if (base_log_get_level() >= BASE_LOG_DEBUG && n)
        log_query(q, tcp, peer, out, n, "recursion, answered at once");
    return n;
}

size_t rsv__answer(struct rsv__engine *e, const uint8_t *pkt, size_t len, bool tcp,
                   struct rsv__conn *conn, const struct sockaddr *peer, uint8_t *out, size_t cap)
{
    struct zone_dns_query *q = &e->q;
    struct rsv__key key;
    struct zone_read *rd;
    size_t limit, n = 0;
    uint64_t index;
    int rc;
    /* Recursion available to this client: configured, and its address is allowed. */
    bool ra = e->rec && e->rcfg && e->rcfg->enabled &&
              rsv_cidr_match(e->rcfg->allow, e->rcfg->n_allow, peer);

    if (tcp)
        RSV__COUNT(e->stats, tcp_queries);
    else
        RSV__COUNT(e->stats, udp_queries);
    switch (zone_dns_parse(pkt, len, q)) {
    case 0:
        break;
    case ZONE_DNS_FORMERR:
        return error_answer(e, 1, ra, out, cap);
    case ZONE_DNS_NOTIMP:
        return error_answer(e, 4, ra, out, cap);
    case ZONE_DNS_BADVERS:
        return error_answer(e, 16, ra, out, cap);
    default:
        RSV__COUNT(e->stats, dropped);
        return 0;
    }

    /* RFC 1035 §4.2.1 and RFC 6891 §6.2.5: 512 without EDNS, else the requester's size, never
     * below 512 and (our choice) never above 4096. TCP: the whole message. */
    if (tcp)
        limit = RSV__MSG_MAX;
    else if (!q->edns || q->edns_size < 512)
        limit = 512;
    else
        limit = q->edns_size > ZONE_DNS_MAX_UDP ? ZONE_DNS_MAX_UDP : q->edns_size;
    if (limit > cap)
        limit = cap;

    /* Not ours: recursion or REFUSED, never cached here (the answer depends on the client). */
    if (!zone_dns_in_zone(e->zone, q))
        return outside(e, ra, limit, tcp, conn, peer, out, cap);
    /* Zone transfers, which we do not offer. */
    if (q->qtype == 252 /* AXFR */ || q->qtype == 251 /* IXFR */) {
        n = error_answer(e, 5, ra, out, cap);
        if (base_log_get_level() >= BASE_LOG_DEBUG)
            log_query(q, tcp, peer, out, n, "refused");
        return n;
    }

    /* dns_config.max_stale: no contact with the servers for too long (rsv_set_stale) */
    if (e->too_stale && atomic_load_explicit(e->too_stale, memory_order_relaxed)) {
        RSV__COUNT(e->stats, stale_servfail);
        n = error_answer(e, 2, ra, out, cap);
        if (base_log_get_level() >= BASE_LOG_DEBUG)
            log_query(q, tcp, peer, out, n, "stale");
        return n;
    }
    index = atomic_load_explicit(e->catalog_index, memory_order_acquire);
    rsv__key_make(&key, q, limit);
    n = rsv__cache_lookup(&e->cache, &key, index, q, &e->rng, out, cap);
    if (n) {
        /* RA depends on the client, not on the entry (RFC 1035 §4.1.1) */
        out[3] = (uint8_t)((out[3] & 0x7fu) | (ra ? 0x80u : 0u));
        RSV__COUNT(e->stats, cache_hits);
        if (base_log_get_level() >= BASE_LOG_DEBUG)
            log_query(q, tcp, peer, out, n, "cached");
        return n;
    }

    /* A miss: build it in a read transaction that begins after the index was loaded, so the
     * data is at least as new as the stamp (a newer commit only makes the entry stale early). */
    RSV__COUNT(e->stats, cache_misses);
    e->layout.n = 0;
    rc = zone_read_begin(e->store, &rd);
    if (rc == 0) {
        rc = zone_dns_answer(rd, e->zone, q, limit, ra, &e->rng, &e->arena, out, cap, &n,
                             &e->layout);
        zone_read_end(rd);
    }
    base_arena_reset(&e->arena);
    if (rc == BASE_ENOTFOUND) /* a reverse name the catalog does not know: not ours */
        return outside(e, ra, limit, tcp, conn, peer, out, cap);
    if (rc || n < 12 || n > cap) {
        uint64_t now = base_now_ms();
        if (now - e->last_warn_ms >= 10000) { /* rate-limited: one line per 10 s per worker */
            e->last_warn_ms = now;
            LOG_WARN("dns", "answer failed, SERVFAIL: %s", base_strerror(rc ? rc : BASE_EINVAL));
        }
        return error_answer(e, 2, ra, out, cap);
    }
    rsv__cache_insert(&e->cache, &key, index, out, n, &e->layout);
    if (base_log_get_level() >= BASE_LOG_DEBUG)
        log_query(q, tcp, peer, out, n, "built");
    return n;
}
