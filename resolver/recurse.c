/* Recursion: names outside the zone, resolved through libunbound without ever delaying the
 * zone's answers.
 *
 * Each DNS worker owns one libunbound context (contexts are not shared across our threads),
 * created on the main thread at setup with the recursion options: the forwarders
 * (ub_ctx_set_fwd, "ADDR@PORT") or, in iterative mode, the root hints; "do-not-query-localhost:
 * no" so that loopback upstreams work; the cache sizes (the configured total split over the
 * workers, a third for messages and two thirds for RRsets, as unbound advises); a bounded
 * outgoing range; the validator with the trust anchor file when DNSSEC validation is on, else
 * "module-config: iterator". LAN reverse zones are unblocked (unbound answers them locally by
 * default), so PTR misses for private addresses reach the upstreams, as Consul sends them.
 *
 * Where libunbound's work runs: libunbound's asynchronous mode runs resolution in a background
 * worker and hands results back through a pipe, ub_fd(). With ub_ctx_async(ctx, 0) that
 * worker is a forked process (a fork of our multi-threaded, socket-holding process: not an
 * option); with ub_ctx_async(ctx, 1) it is a thread, which is what we use: one libunbound
 * thread per DNS worker, running libunbound's own event loop, sharing nothing of ours. The
 * Debian build is not the pluggable-event one, so libunbound cannot run on our libuv loop
 * itself. Our worker only ever does three cheap, non-blocking-in-practice things: it writes a
 * query into libunbound's pipe (ub_resolve_async: a few dozen bytes, drained continuously by
 * the libunbound thread), it reads results when uv_poll says ub_fd() is readable
 * (ub_process: non-blocking reads, then our callbacks), and it cancels (ub_cancel: a flag in
 * thread mode). A dead upstream stalls the libunbound thread's queries, never our loop, so
 * zone queries keep their latency however many recursive queries wait.
 *
 * Bounds: each worker has at most max_queries outstanding recursive queries; beyond that a
 * query is answered SERVFAIL at once rather than queued. Each query has a deadline
 * (recursor_timeout): all queries share the one timeout, so arrival order is deadline order and
 * one timer per worker, armed for the oldest query, expires them; an expired query is answered
 * SERVFAIL and cancelled in libunbound (whose result, if it ever comes, is then freed by
 * libunbound without calling us).
 *
 * Caching: libunbound caches (msg and RRset caches of the configured size). Asking it for a
 * cached name still costs a round trip through its thread (two pipe messages, two thread
 * wake-ups), which measured as most of the cost of a cached outside name. So each worker also
 * keeps the last answer packet libunbound gave for a (name, type, class), in a 4-way set
 * associative table bounded in entries and bytes (a new answer takes the way of the same key,
 * else an empty or expired one, else the one that expires first), until its smallest TTL runs out;
 * a hit is relayed at once with every TTL lowered by the time it was kept (as libunbound itself
 * would count them down), so the client sees the same answer either way. Only NOERROR and NXDOMAIN
 * answers that are not bogus and have a TTL are kept. Zone answers never come here: the zone's own
 * answer cache (cache.c) is separate and keyed by the catalog index.
 *
 * Answers are relayed faithfully (relay.c): libunbound's response with the client's ID,
 * question and flags, RA set, AA clear, AD only for validated ("secure") data and only when
 * the client set DO or AD (RFC 6840 §5.7), SERVFAIL for bogus data, re-truncated for the
 * client's UDP size. A TCP client may close before its answer comes: its queries are then
 * detached and their answers dropped; a client that half-closes gets its answers first. */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <unbound.h>

#define DEF_TIMEOUT_MS  2000
#define DEF_MAX_QUERIES 1000
#define MIN_CACHE_BYTES (512 * 1024)

#define HOT_SETS      2048 /* per worker, of HOT_WAYS entries */
#define HOT_WAYS      4
#define HOT_MAX_PKT   4096       /* larger answers are asked from libunbound each time */
#define HOT_MAX_BYTES (8u << 20) /* per worker, at most (and a quarter of cache_bytes) */
#define HOT_MAX_TTL   3600       /* seconds an answer may be kept */

#define F_AD 0x0020u

struct rq {
    struct base_list link; /* on the recursor's list, oldest first (= earliest deadline) */
    struct rsv__recursor *r;
    int async_id;
    uint64_t deadline;      /* loop time, ms */
    struct rsv__conn *conn; /* TCP: the connection, NULL once it closed */
    bool tcp;
    struct sockaddr_storage peer; /* UDP: where the answer goes */
    size_t limit;
    size_t len;
    uint8_t pkt[]; /* the client's query, re-parsed to answer it */
};

/* A copy of one answer packet of libunbound (see "Caching" above). */
struct hot {
    uint64_t hash;
    uint64_t stored_ms, expires_ms; /* loop time */
    uint16_t qtype, qclass;
    uint16_t len, cap;
    bool secure;
    uint8_t *pkt; /* NULL: empty slot */
};

struct rsv__recursor {
    struct rsv__worker *w;
    struct hot *hot; /* HOT_SETS * HOT_WAYS */
    size_t hot_bytes, hot_max_bytes;
    const struct rsv__rcfg *cfg;
    struct ub_ctx *ctx;
    uv_poll_t poll;
    uv_timer_t timer;
    bool poll_ready, timer_ready;
    struct base_list rqs; /* of struct rq.link */
    unsigned n, max;
    uint64_t timeout_ms;
    uint64_t last_warn_ms;
};

static void warn_limited(struct rsv__recursor *r, const char *what, const char *why)
{
    uint64_t now = base_now_ms();
    if (now - r->last_warn_ms < 10000) /* one line per 10 s per worker */
        return;
    r->last_warn_ms = now;
    LOG_WARN("dns", "recursion: %s: %s", what, why);
}

/* ---- the query list and its timer ------------------------------------------------------ */

static void rq_link(struct rsv__recursor *r, struct rq *rq)
{
    base_list_insert_tail(&r->rqs, &rq->link);
    r->n++;
}

static void rq_unlink(struct rsv__recursor *r, struct rq *rq)
{
    base_list_remove(&rq->link);
    r->n--;
}

/* The oldest query (the earliest deadline), NULL if none. */
static struct rq *rq_first(struct rsv__recursor *r)
{
    struct base_list *l = base_list_first(&r->rqs);
    return l ? BASE_CONTAINER_OF(l, struct rq, link) : NULL;
}

/* Sends the response at w->out + 2 (len bytes; 0: none) to the query's client. */
static void deliver(struct rsv__recursor *r, struct rq *rq, size_t len)
{
    struct rsv__worker *w = r->w;
    if (rq->tcp) {
        if (rq->conn)
            rsv__tcp_recursion_done(rq->conn, len);
    } else if (len) {
        rsv__udp_reply(w, (const struct sockaddr *)&rq->peer, w->out + 2, len);
    }
}

static size_t servfail(struct rsv__recursor *r, const struct zone_dns_query *q, uint8_t *out,
                       size_t cap)
{
    RSV__COUNT(&r->w->stats, servfail);
    return zone_dns_error(q, 2, true, out, cap);
}

static void on_timer(uv_timer_t *t)
{
    struct rsv__recursor *r = t->data;
    uint64_t now = uv_now(&r->w->loop);

    struct rq *rq;
    while ((rq = rq_first(r)) && rq->deadline <= now) {
        struct zone_dns_query q;
        size_t n = 0;

        rq_unlink(r, rq);
        (void)ub_cancel(r->ctx, rq->async_id);
        RSV__COUNT(&r->w->stats, recursion_timeouts);
        if (zone_dns_parse(rq->pkt, rq->len, &q) == 0)
            n = servfail(r, &q, r->w->out + 2, RSV__MSG_MAX);
        deliver(r, rq, n);
        base_free(rq);
    }
    if ((rq = rq_first(r)))
        uv_timer_start(&r->timer, on_timer, rq->deadline - now, 0);
}

/* ---- the worker's copies of libunbound's answers --------------------------------------- */

static uint64_t hot_hash(const struct zone_dns_query *q)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < q->qname_len; i++)
        h = (h ^ q->lname[i]) * 0x100000001b3ull;
    h = (h ^ q->qtype) * 0x100000001b3ull;
    return (h ^ q->qclass) * 0x100000001b3ull;
}

static void hot_drop(struct rsv__recursor *r, struct hot *e)
{
    r->hot_bytes -= e->cap;
    base_free(e->pkt);
    memset(e, 0, sizeof *e);
}

/* The cached answer for q relayed into out (0 on a miss). */
static size_t hot_answer(struct rsv__recursor *r, const struct zone_dns_query *q, size_t limit,
                         uint8_t *out, size_t cap)
{
    uint64_t h = hot_hash(q), now = uv_now(&r->w->loop);
    struct hot *set = &r->hot[(h & (HOT_SETS - 1)) * HOT_WAYS], *e = NULL;
    size_t n;

    for (int i = 0; i < HOT_WAYS && !e; i++)
        if (set[i].pkt && set[i].hash == h && set[i].qtype == q->qtype &&
            set[i].qclass == q->qclass)
            e = &set[i];
    if (!e)
        return 0;
    if (now >= e->expires_ms) {
        hot_drop(r, e);
        return 0;
    }
    /* the same name: libunbound's question is the lowercased name we asked for */
    if (e->len < 12 + q->qname_len || memcmp(e->pkt + 12, q->lname, q->qname_len) != 0)
        return 0;
    bool ad = r->cfg->dnssec && e->secure && (q->edns_do || (q->flags & F_AD));
    n = rsv__relay(q, limit, ad, e->pkt, e->len, out, cap);
    if (n)
        rsv__relay_age(out, n, (uint32_t)((now - e->stored_ms) / 1000));
    return n;
}

static void hot_store(struct rsv__recursor *r, const struct zone_dns_query *q,
                      const struct ub_result *res)
{
    size_t len = (size_t)res->answer_len;
    const uint8_t *pkt = res->answer_packet;
    uint32_t ttl;
    unsigned rcode = pkt[3] & 0x0fu;

    if (len > HOT_MAX_PKT || (rcode != 0 && rcode != 3) || res->bogus)
        return;
    ttl = rsv__relay_min_ttl(pkt, len);
    if (ttl == 0 || ttl == UINT32_MAX)
        return; /* nothing to keep, or nothing that says for how long */
    if (ttl > HOT_MAX_TTL)
        ttl = HOT_MAX_TTL;
    uint64_t h = hot_hash(q), now = uv_now(&r->w->loop);
    struct hot *set = &r->hot[(h & (HOT_SETS - 1)) * HOT_WAYS], *e = NULL;
    /* the way of the same key, else an empty or expired one, else the one expiring first */
    for (int i = 0; i < HOT_WAYS && !e; i++)
        if (set[i].pkt && set[i].hash == h && set[i].qtype == q->qtype &&
            set[i].qclass == q->qclass)
            e = &set[i];
    for (int i = 0; i < HOT_WAYS && !e; i++)
        if (!set[i].pkt || set[i].expires_ms <= now)
            e = &set[i];
    if (!e) {
        e = &set[0];
        for (int i = 1; i < HOT_WAYS; i++)
            if (set[i].expires_ms < e->expires_ms)
                e = &set[i];
    }
    if (e->pkt)
        hot_drop(r, e);
    if (r->hot_bytes + len > r->hot_max_bytes)
        return;
    e->pkt = base_malloc(len);
    memcpy(e->pkt, pkt, len);
    e->len = e->cap = (uint16_t)len;
    r->hot_bytes += len;
    e->hash = h;
    e->qtype = q->qtype;
    e->qclass = q->qclass;
    e->secure = res->secure;
    e->stored_ms = now;
    e->expires_ms = now + (uint64_t)ttl * 1000;
}

/* ---- results --------------------------------------------------------------------------- */

static void on_result(void *data, int err, struct ub_result *res)
{
    struct rq *rq = data;
    struct rsv__recursor *r;
    struct zone_dns_query q;
    uint8_t *out;
    size_t n = 0;

    if (!rq) { /* the warm-up query of rsv__recursor_new */
        if (res)
            ub_resolve_free(res);
        return;
    }
    r = rq->r;
    out = r->w->out + 2;
    rq_unlink(r, rq);
    if (zone_dns_parse(rq->pkt, rq->len, &q) != 0) {
        /* cannot happen: it parsed when it came in */
    } else if (err || !res || !res->answer_packet || res->answer_len < 12) {
        warn_limited(r, "no answer", err ? ub_strerror(err) : "empty result");
        n = servfail(r, &q, out, RSV__MSG_MAX);
    } else if (r->cfg->dnssec && res->bogus) {
        /* RFC 4035 §5.5: bogus data is not given out */
        n = servfail(r, &q, out, RSV__MSG_MAX);
    } else {
        bool ad = r->cfg->dnssec && res->secure && (q.edns_do || (q.flags & F_AD));
        n = rsv__relay(&q, rq->limit, ad, res->answer_packet, (size_t)res->answer_len, out,
                       RSV__MSG_MAX);
        if (!n) {
            warn_limited(r, "unusable answer from libunbound", "SERVFAIL");
            n = servfail(r, &q, out, RSV__MSG_MAX);
        } else {
            hot_store(r, &q, res);
        }
    }
    deliver(r, rq, n);
    if (res)
        ub_resolve_free(res);
    base_free(rq);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    struct rsv__recursor *r = h->data;
    BASE_UNUSED(events);
    if (status < 0) {
        warn_limited(r, "poll", uv_strerror(status));
        return;
    }
    int rc = ub_process(r->ctx);
    if (rc)
        warn_limited(r, "ub_process", ub_strerror(rc));
}

/* ---- queries --------------------------------------------------------------------------- */

size_t rsv__recurse(struct rsv__recursor *r, const struct zone_dns_query *q, size_t limit,
                    struct rsv__conn *conn, const struct sockaddr *peer, uint8_t *out, size_t cap)
{
    char name[4 * ZONE_DNS_MAX_NAME + 8];
    struct rq *rq;
    size_t n;
    int rc;

    if ((n = hot_answer(r, q, limit, out, cap))) {
        RSV__COUNT(&r->w->stats, recursion_cache_hits);
        return n;
    }
    if (r->n >= r->max) {
        RSV__COUNT(&r->w->stats, recursion_overload);
        warn_limited(r, "too many outstanding queries", "SERVFAIL");
        return servfail(r, q, out, cap);
    }
    /* libunbound's presentation form: strict escapes, so any label survives the round trip */
    if (!rsv__name_text(q, true, name, sizeof name))
        return servfail(r, q, out, cap);
    rq = base_malloc(sizeof *rq + q->len);
    memset(rq, 0, sizeof *rq);
    rq->r = r;
    rq->conn = conn;
    rq->tcp = conn != NULL;
    if (!conn && peer)
        memcpy(&rq->peer, peer,
               peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in));
    rq->limit = limit;
    rq->len = q->len;
    memcpy(rq->pkt, q->pkt, q->len);
    rq->deadline = uv_now(&r->w->loop) + r->timeout_ms;
    rc = ub_resolve_async(r->ctx, name, q->qtype, q->qclass, rq, on_result, &rq->async_id);
    if (rc) {
        base_free(rq);
        warn_limited(r, "ub_resolve_async", ub_strerror(rc));
        return servfail(r, q, out, cap);
    }
    if (base_list_empty(&r->rqs))
        uv_timer_start(&r->timer, on_timer, r->timeout_ms, 0);
    rq_link(r, rq);
    RSV__COUNT(&r->w->stats, recursed);
    if (conn)
        rsv__tcp_recursion_begin(conn);
    return 0;
}

void rsv__recursor_forget_conn(struct rsv__recursor *r, struct rsv__conn *c)
{
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &r->rqs)
    {
        struct rq *rq = BASE_CONTAINER_OF(pos, struct rq, link);
        if (rq->conn == c)
            rq->conn = NULL;
    }
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static int set_opt(struct ub_ctx *ctx, const char *opt, const char *val, char *errmsg)
{
    int rc = ub_ctx_set_option(ctx, opt, val);
    if (rc)
        return base_errf(errmsg, BASE_EINVAL, "dns recursion: libunbound option %s %s: %s", opt,
                         val, ub_strerror(rc));
    return 0;
}

static int configure(struct ub_ctx *ctx, const struct rsv__rcfg *cfg, unsigned max, char *errmsg)
{
    char num[32];
    uint64_t bytes = cfg->cache_bytes;
    uint64_t msg = bytes / 3 > MIN_CACHE_BYTES ? bytes / 3 : MIN_CACHE_BYTES;
    uint64_t rrset = bytes - bytes / 3 > MIN_CACHE_BYTES ? bytes - bytes / 3 : MIN_CACHE_BYTES;
    int rc;

    if ((rc = set_opt(ctx, "do-not-query-localhost:", "no", errmsg)) ||
        (rc = set_opt(ctx, "so-reuseport:", "no", errmsg)) ||
        (rc = set_opt(ctx, "outgoing-range:", "256", errmsg)) ||
        (rc = set_opt(ctx, "unblock-lan-zones:", "yes", errmsg)) ||
        (rc = set_opt(ctx, "insecure-lan-zones:", "yes", errmsg)))
        return rc;
    snprintf(num, sizeof num, "%u", 2 * max);
    if ((rc = set_opt(ctx, "num-queries-per-thread:", num, errmsg)))
        return rc;
    snprintf(num, sizeof num, "%llu", (unsigned long long)msg);
    if ((rc = set_opt(ctx, "msg-cache-size:", num, errmsg)))
        return rc;
    snprintf(num, sizeof num, "%llu", (unsigned long long)rrset);
    if ((rc = set_opt(ctx, "rrset-cache-size:", num, errmsg)))
        return rc;
    if (cfg->dnssec) {
        if (!cfg->trust_anchor)
            return base_errf(errmsg, BASE_EINVAL, "dns recursion: validation needs a trust anchor");
        if ((rc = ub_ctx_add_ta_file(ctx, cfg->trust_anchor)))
            return base_errf(errmsg, BASE_EINVAL, "dns recursion: trust anchor %s: %s",
                             cfg->trust_anchor, ub_strerror(rc));
    } else if ((rc = set_opt(ctx, "module-config:", "iterator", errmsg))) {
        return rc;
    }
    if (cfg->mode == RSV_RECURSION_ITERATIVE) {
        if (cfg->root_hints && (rc = set_opt(ctx, "root-hints:", cfg->root_hints, errmsg)))
            return rc;
    } else {
        for (size_t i = 0; i < cfg->n_forwarders; i++)
            if ((rc = ub_ctx_set_fwd(ctx, cfg->forwarders[i])))
                return base_errf(errmsg, BASE_EINVAL, "dns recursion: forwarder %s: %s",
                                 cfg->forwarders[i], ub_strerror(rc));
    }
    if ((rc = ub_ctx_async(ctx, 1)))
        return base_errf(errmsg, BASE_EINVAL, "dns recursion: libunbound async: %s",
                         ub_strerror(rc));
    return 0;
}

int rsv__recursor_new(struct rsv__worker *w, const struct rsv__rcfg *cfg,
                      struct rsv__recursor **out, char *errmsg)
{
    struct rsv__recursor *r = base_calloc(1, sizeof *r);
    int rc, id;

    *out = r;
    base_list_init(&r->rqs);
    r->w = w;
    r->cfg = cfg;
    r->max = cfg->max_queries ? cfg->max_queries : DEF_MAX_QUERIES;
    r->hot = base_calloc((size_t)HOT_SETS * HOT_WAYS, sizeof *r->hot);
    r->hot_max_bytes = cfg->cache_bytes / 4 < HOT_MAX_BYTES ? cfg->cache_bytes / 4 : HOT_MAX_BYTES;
    r->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DEF_TIMEOUT_MS;
    r->ctx = ub_ctx_create();
    if (!r->ctx)
        return base_errf(errmsg, BASE_EINVAL, "dns recursion: cannot create a libunbound context");
    if ((rc = configure(r->ctx, cfg, r->max, errmsg)))
        return rc;
    /* A first query applies the configuration (reads root hints and trust anchors, builds the
     * caches) and starts libunbound's thread, here at start rather than on a worker's first
     * recursive query; a bad file is reported now. "localhost." is answered by libunbound's
     * own local zone, without any network. */
    if ((rc = ub_resolve_async(r->ctx, "localhost.", 1, 1, NULL, on_result, &id)))
        return base_errf(errmsg, BASE_EINVAL,
                         "dns recursion: libunbound could not apply the configuration (%s; "
                         "its own error is logged above): check dns_config.root_hints and "
                         "dns_config.trust_anchor",
                         ub_strerror(rc));
    if ((rc = uv_timer_init(&w->loop, &r->timer)))
        return base_errf(errmsg, rc, "dns recursion: timer: %s", uv_strerror(rc));
    r->timer.data = r;
    r->timer_ready = true;
    if ((rc = uv_poll_init(&w->loop, &r->poll, ub_fd(r->ctx))))
        return base_errf(errmsg, rc, "dns recursion: poll: %s", uv_strerror(rc));
    r->poll.data = r;
    r->poll_ready = true;
    if ((rc = uv_poll_start(&r->poll, UV_READABLE, on_readable)))
        return base_errf(errmsg, rc, "dns recursion: poll: %s", uv_strerror(rc));
    return 0;
}

void rsv__recursor_close(struct rsv__recursor *r)
{
    struct rq *rq;
    while ((rq = rq_first(r))) {
        rq_unlink(r, rq);
        base_free(rq); /* libunbound's side goes with ub_ctx_delete */
    }
    if (r->poll_ready)
        uv_close((uv_handle_t *)&r->poll, NULL);
    if (r->timer_ready)
        uv_close((uv_handle_t *)&r->timer, NULL);
    r->poll_ready = r->timer_ready = false;
}

void rsv__recursor_free(struct rsv__recursor *r)
{
    if (!r)
        return;
    if (r->ctx)
        ub_ctx_delete(r->ctx);
    for (size_t i = 0; r->hot && i < (size_t)HOT_SETS * HOT_WAYS; i++)
        if (r->hot[i].pkt)
            hot_drop(r, &r->hot[i]);
    base_free(r->hot);
    base_free(r);
}
