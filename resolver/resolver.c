/* The resolver's shared state: start and stop of the workers, the published catalog index,
 * counters, and the TCP connection caps shared by the workers. */
#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DEF_IDLE_MS        10000
#define DEF_REC_CACHE      (32ull << 20)
#define DEF_MAX_CONNS      1024
#define DEF_MAX_PER_CLIENT 32
#define DEF_MAX_PER_NET    128
#define MAX_WORKERS        256

/* ---- per-client connection counts ----------------------------------------------------- */
/* Each connection counts twice: against its source address (tcp_max_per_client) and against
 * its source network, the /24 of an IPv4 address or the /64 of an IPv6 one
 * (tcp_max_per_network), so that one host with many addresses (an IPv6 host has 2^64) cannot
 * take every slot. Both kinds of key live in one table: open addressing with linear probing
 * and backward-shift deletion; at most 2 * tcp_max_conns keys are live, in a table of twice
 * that, so probes stay short. */
#define KEY_LEN 17 /* IPv6 address (IPv4 as v4-mapped), then the prefix length (128: address) */

struct rsv__client {
    uint8_t key[KEY_LEN];
    uint32_t count; /* 0: free slot */
};

static void client_key(const struct sockaddr_storage *ss, uint8_t key[KEY_LEN])
{
    memset(key, 0, KEY_LEN);
    if (ss->ss_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)(const void *)ss)->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, 16);
    }
    key[16] = 128;
}

/* The key of the address's network: its /24 (v4-mapped: /120) or its /64. */
static void net_key(const uint8_t addr[KEY_LEN], uint8_t key[KEY_LEN])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    bool v4 = memcmp(addr, mapped, sizeof mapped) == 0;
    memcpy(key, addr, KEY_LEN);
    size_t keep = v4 ? 15 : 8;
    memset(key + keep, 0, 16 - keep);
    key[16] = v4 ? 120 : 64;
}

static size_t client_hash(const uint8_t key[KEY_LEN], size_t mask)
{
    uint64_t a, b;
    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 8);
    uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ull) ^ key[16]) * 0xff51afd7ed558ccdull;
    return (size_t)(h ^ h >> 29) & mask;
}

/* The slot holding key, or the free slot where it would go. Under clients_mu. */
static size_t client_find(struct rsv *r, const uint8_t key[KEY_LEN])
{
    size_t mask = r->clients_cap - 1, i = client_hash(key, mask);
    while (r->clients[i].count && memcmp(r->clients[i].key, key, KEY_LEN) != 0)
        i = (i + 1) & mask;
    return i;
}

/* Takes one count of key's slot. Under clients_mu. */
static void client_put(struct rsv *r, size_t i, const uint8_t key[KEY_LEN])
{
    memcpy(r->clients[i].key, key, KEY_LEN);
    r->clients[i].count++;
}

/* Drops one count of key. Under clients_mu. */
static void client_drop(struct rsv *r, const uint8_t key[KEY_LEN])
{
    size_t mask = r->clients_cap - 1;
    size_t i = client_find(r, key);
    if (!r->clients[i].count || --r->clients[i].count)
        return;
    /* Backward-shift deletion: pull later entries of the probe run into the hole. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!r->clients[j].count)
            break;
        size_t k = client_hash(r->clients[j].key, mask);
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays)
            continue;
        r->clients[i] = r->clients[j];
        i = j;
    }
    r->clients[i].count = 0;
}

bool rsv__conn_admit(struct rsv *r, const struct sockaddr_storage *addr)
{
    uint8_t key[KEY_LEN], net[KEY_LEN];
    bool ok = false;

    if (atomic_fetch_add(&r->tcp_conns, 1) >= r->tcp_max_conns) {
        atomic_fetch_sub(&r->tcp_conns, 1);
        return false;
    }
    client_key(addr, key);
    net_key(key, net);
    pthread_mutex_lock(&r->clients_mu);
    size_t i = client_find(r, key);
    if (r->clients[i].count < r->tcp_max_per_client) {
        size_t n = client_find(r, net);
        if (r->clients[n].count < r->tcp_max_per_network) {
            client_put(r, n, net);
            /* the network's key may have taken the free slot found for the address */
            client_put(r, client_find(r, key), key);
            ok = true;
        }
    }
    pthread_mutex_unlock(&r->clients_mu);
    if (!ok)
        atomic_fetch_sub(&r->tcp_conns, 1);
    return ok;
}

void rsv__conn_release(struct rsv *r, const struct sockaddr_storage *addr)
{
    uint8_t key[KEY_LEN], net[KEY_LEN];

    client_key(addr, key);
    net_key(key, net);
    pthread_mutex_lock(&r->clients_mu);
    client_drop(r, key);
    client_drop(r, net);
    pthread_mutex_unlock(&r->clients_mu);
    atomic_fetch_sub(&r->tcp_conns, 1);
}

/* ---- the zone config copy ------------------------------------------------------------- */

static void zone_copy(struct zone_dns_config *dst, const struct zone_dns_config *src)
{
    *dst = *src;
    dst->domain = base_strdup(src->domain ? src->domain : "consul.");
    dst->alt_domain = src->alt_domain && *src->alt_domain ? base_strdup(src->alt_domain) : NULL;
    dst->datacenter = base_strdup(src->datacenter ? src->datacenter : "dc1");
    dst->service_ttl = NULL;
    dst->n_service_ttl = 0;
    if (src->n_service_ttl) {
        struct zone_dns_ttl *t = base_calloc(src->n_service_ttl, sizeof *t);
        for (size_t i = 0; i < src->n_service_ttl; i++) {
            t[i].pattern = base_strdup(src->service_ttl[i].pattern);
            t[i].ttl = src->service_ttl[i].ttl;
        }
        dst->service_ttl = t;
        dst->n_service_ttl = src->n_service_ttl;
    }
}

static void zone_free(struct zone_dns_config *z)
{
    base_free((void *)z->domain);
    base_free((void *)z->alt_domain);
    base_free((void *)z->datacenter);
    for (size_t i = 0; i < z->n_service_ttl; i++)
        base_free((void *)z->service_ttl[i].pattern);
    base_free((void *)z->service_ttl);
    memset(z, 0, sizeof *z);
}

/* ---- the recursion config copy -------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s && *s ? base_strdup(s) : NULL;
}

static int rcfg_copy(struct rsv__rcfg *dst, const struct rsv_recursion *src, unsigned workers,
                     char *errmsg)
{
    const struct rsv_cidr *allow;
    size_t n_allow;

    memset(dst, 0, sizeof *dst);
    if (!src)
        return 0;
    dst->mode = src->mode;
    dst->enabled = src->mode == RSV_RECURSION_ITERATIVE || src->n_forwarders > 0;
    if (src->mode == RSV_RECURSION_FORWARD && src->n_forwarders) {
        dst->forwarders = base_calloc(src->n_forwarders, sizeof *dst->forwarders);
        for (size_t i = 0; i < src->n_forwarders; i++) {
            char buf[80];
            if (rsv_recursor_parse(src->forwarders[i], buf, sizeof buf))
                return base_errf(errmsg, BASE_EINVAL,
                                 "dns recursion: recursor \"%s\" is not "
                                 "ADDR[:PORT]",
                                 src->forwarders[i]);
            dst->forwarders[i] = base_strdup(buf);
            dst->n_forwarders++;
        }
    }
    dst->root_hints = dup_or_null(src->root_hints);
    dst->trust_anchor = dup_or_null(src->trust_anchor);
    dst->dnssec = src->dnssec;
    dst->cache_bytes = (src->cache_bytes ? src->cache_bytes : DEF_REC_CACHE) / workers;
    dst->timeout_ms = src->timeout_ms;
    dst->max_queries = src->max_queries;
    allow = src->allow;
    n_allow = src->n_allow;
    if (!allow)
        allow = rsv_cidr_defaults(&n_allow);
    if (n_allow) {
        dst->allow = base_calloc(n_allow, sizeof *dst->allow);
        memcpy(dst->allow, allow, n_allow * sizeof *allow);
        dst->n_allow = n_allow;
    }
    return 0;
}

static void rcfg_free(struct rsv__rcfg *c)
{
    for (size_t i = 0; i < c->n_forwarders; i++)
        base_free(c->forwarders[i]);
    base_free(c->forwarders);
    base_free(c->root_hints);
    base_free(c->trust_anchor);
    base_free(c->allow);
    memset(c, 0, sizeof *c);
}

/* ---- start and stop ------------------------------------------------------------------- */

static void rsv_free(struct rsv *r)
{
    for (unsigned i = 0; i < r->n_workers; i++)
        if (r->workers[i])
            rsv__worker_signal(r->workers[i]);
    for (unsigned i = 0; i < r->n_workers; i++)
        if (r->workers[i])
            rsv__worker_free(r->workers[i]);
    base_free(r->workers);
    base_free(r->clients);
    pthread_mutex_destroy(&r->clients_mu);
    zone_free(&r->zone);
    rcfg_free(&r->rcfg);
    base_free(r);
}

/* Checks that no one else (another process, even one using SO_REUSEPORT too) holds the port,
 * and picks one for port 0: plain sockets without SO_REUSEPORT, closed again at once. */
static int probe(struct rsv *r, struct sockaddr_storage *ss, char *errmsg)
{
    const char *lb = strchr(r->host, ':') ? "[" : "", *rb = *lb ? "]" : "";
    struct sockaddr *sa = (struct sockaddr *)ss;
    in_port_t *port = ss->ss_family == AF_INET6 ? &((struct sockaddr_in6 *)(void *)ss)->sin6_port
                                                : &((struct sockaddr_in *)(void *)ss)->sin_port;

    for (int attempt = 0;; attempt++) {
        int u = rsv__socket_bind(sa, SOCK_DGRAM, false);
        if (u < 0)
            return base_errf(errmsg, u, "dns %s%s%s:%d/udp: %s", lb, r->host, rb, r->port,
                             uv_strerror(u));
        if (r->port == 0) {
            struct sockaddr_storage got;
            socklen_t len = sizeof got;
            getsockname(u, (struct sockaddr *)&got, &len);
            *port = got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)(void *)&got)->sin6_port
                                              : ((struct sockaddr_in *)(void *)&got)->sin_port;
        }
        int t = rsv__socket_bind(sa, SOCK_STREAM, false);
        close(u);
        if (t >= 0) {
            close(t);
            break;
        }
        if (r->port == 0 && t == UV_EADDRINUSE && attempt < 32) {
            *port = 0;
            continue;
        }
        return base_errf(errmsg, t, "dns %s%s%s:%d/tcp: %s", lb, r->host, rb, r->port,
                         uv_strerror(t));
    }
    r->port = ntohs(*port);
    return 0;
}

int rsv_start(uv_loop_t *main, const struct rsv_config *cfg, struct rsv **out, char *errmsg)
{
    struct sockaddr_storage ss;
    struct rsv *r;
    unsigned n;
    int rc;

    BASE_ASSERT_LOOP();
    *out = NULL;
    memset(&ss, 0, sizeof ss);
    if (!cfg->host || strlen(cfg->host) >= sizeof r->host || cfg->port < 0 || cfg->port > 65535)
        return base_errf(errmsg, BASE_EINVAL, "dns: invalid listen address");
    if (uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&ss) &&
        uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&ss))
        return base_errf(errmsg, BASE_EINVAL, "dns %s:%d: not an IP address", cfg->host, cfg->port);
    n = cfg->workers ? cfg->workers : uv_available_parallelism();
    if (n < 1)
        n = 1;
    if (n > MAX_WORKERS)
        n = MAX_WORKERS;

    r = base_calloc(1, sizeof *r);
    r->main = main;
    snprintf(r->host, sizeof r->host, "%s", cfg->host);
    r->port = cfg->port;
    r->store = cfg->store;
    zone_copy(&r->zone, cfg->zone);
    atomic_init(&r->catalog_index, cfg->catalog_index);
    atomic_init(&r->too_stale, false);
    atomic_init(&r->tcp_conns, 0);
    r->tcp_idle_ms = cfg->tcp_idle_timeout_ms ? cfg->tcp_idle_timeout_ms : DEF_IDLE_MS;
    r->tcp_max_conns = cfg->tcp_max_conns ? cfg->tcp_max_conns : DEF_MAX_CONNS;
    r->tcp_max_per_client =
        cfg->tcp_max_conns_per_client ? cfg->tcp_max_conns_per_client : DEF_MAX_PER_CLIENT;
    r->tcp_max_per_network =
        cfg->tcp_max_conns_per_network ? cfg->tcp_max_conns_per_network : DEF_MAX_PER_NET;
    r->clients_cap = 16;
    while (r->clients_cap < 4 * (size_t)r->tcp_max_conns)
        r->clients_cap <<= 1;
    r->clients = base_calloc(r->clients_cap, sizeof *r->clients);
    pthread_mutex_init(&r->clients_mu, NULL);
    r->n_workers = n;
    r->workers = base_calloc(n, sizeof *r->workers);

    if ((rc = rcfg_copy(&r->rcfg, cfg->recursion, n, errmsg)))
        goto fail;
    if ((rc = probe(r, &ss, errmsg)))
        goto fail;
    for (unsigned i = 0; i < n; i++) {
        struct rsv__worker *w = base_calloc(1, sizeof *w);
        w->rsv = r;
        w->id = i;
        r->workers[i] = w;
        rsv__engine_init(&w->eng, r->store, &r->zone, &r->catalog_index, &w->stats,
                         cfg->cache_entries, cfg->cache_max_bytes);
        w->eng.rcfg = &r->rcfg;
        w->eng.too_stale = &r->too_stale;
        if ((rc = rsv__worker_setup(w, (struct sockaddr *)&ss, errmsg)))
            goto fail;
    }
    for (unsigned i = 0; i < n; i++)
        if ((rc = rsv__worker_run(r->workers[i], errmsg)))
            goto fail;
    uv_timer_init(main, &r->done_timer);
    r->done_timer.data = r;
    LOG_INFO("dns", "listening on %s%s%s:%d (udp, tcp) workers=%u", strchr(r->host, ':') ? "[" : "",
             r->host, strchr(r->host, ':') ? "]" : "", r->port, n);
    if (r->rcfg.enabled) {
        char fw[512] = "";
        size_t at = 0;
        for (size_t i = 0; i < r->rcfg.n_forwarders && at + 2 < sizeof fw; i++)
            at += (size_t)snprintf(fw + at, sizeof fw - at, "%s%s", i ? "," : "",
                                   r->rcfg.forwarders[i]);
        LOG_INFO("dns", "recursion %s%s%s dnssec=%s allow=%zu networks timeout=%ums",
                 r->rcfg.mode == RSV_RECURSION_ITERATIVE ? "iterative" : "forward to ", fw,
                 r->rcfg.mode == RSV_RECURSION_ITERATIVE && r->rcfg.root_hints ? r->rcfg.root_hints
                                                                               : "",
                 r->rcfg.dnssec ? "validate" : "off", r->rcfg.n_allow,
                 r->rcfg.timeout_ms ? r->rcfg.timeout_ms : 2000);
    }
    *out = r;
    return 0;
fail:
    rsv_free(r);
    return rc;
}

int rsv_port(const struct rsv *r)
{
    return r->port;
}

unsigned rsv_workers(const struct rsv *r)
{
    return r->n_workers;
}

void rsv_catalog_changed(struct rsv *r, uint64_t index)
{
    atomic_store_explicit(&r->catalog_index, index, memory_order_release);
}

void rsv_set_stale(struct rsv *r, bool stale)
{
    atomic_store_explicit(&r->too_stale, stale, memory_order_relaxed);
}

void rsv_stats_get(const struct rsv *r, struct rsv_stats *o)
{
    memset(o, 0, sizeof *o);
    for (unsigned i = 0; i < r->n_workers; i++) {
        if (!r->workers[i])
            continue;
        struct rsv__stats *s = &r->workers[i]->stats;
#define ADD(f) o->f += atomic_load_explicit(&s->f, memory_order_relaxed)
        ADD(udp_queries);
        ADD(tcp_queries);
        ADD(cache_hits);
        ADD(cache_misses);
        ADD(dropped);
        ADD(formerr);
        ADD(notimp);
        ADD(badvers);
        ADD(refused);
        ADD(servfail);
        ADD(udp_send_queued);
        ADD(udp_send_dropped);
        ADD(tcp_accepted);
        ADD(tcp_rejected);
        ADD(tcp_idle_closed);
        ADD(tcp_paused);
        ADD(recursed);
        ADD(recursion_refused);
        ADD(recursion_timeouts);
        ADD(recursion_overload);
        ADD(recursion_cache_hits);
        ADD(stale_servfail);
#undef ADD
    }
}

static void on_done_closed(uv_handle_t *h)
{
    struct rsv *r = h->data;
    void (*done)(void *) = r->done;
    void *data = r->done_data;
    rsv_free(r);
    if (done)
        done(data);
}

void rsv_stop(struct rsv *r, void (*done)(void *), void *data)
{
    BASE_ASSERT_LOOP();
    struct rsv_stats st;
    rsv_stats_get(r, &st);
    LOG_INFO("dns", "stopping: queries udp=%llu tcp=%llu cache hits=%llu misses=%llu",
             (unsigned long long)st.udp_queries, (unsigned long long)st.tcp_queries,
             (unsigned long long)st.cache_hits, (unsigned long long)st.cache_misses);
    /* Workers exit quickly once signalled (they only close handles), so joining them here
     * holds the main loop for a moment only; the rest of the stop runs from the close
     * callback, so done never runs inside this call. */
    for (unsigned i = 0; i < r->n_workers; i++)
        rsv__worker_signal(r->workers[i]);
    for (unsigned i = 0; i < r->n_workers; i++) {
        rsv__worker_free(r->workers[i]);
        r->workers[i] = NULL;
    }
    r->done = done;
    r->done_data = data;
    uv_close((uv_handle_t *)&r->done_timer, on_done_closed);
}
