/* resolver: the DNS transport. UDP and TCP listeners on N worker threads, each with its own
 * libuv loop, its own SO_REUSEPORT UDP socket and TCP listening socket (the kernel spreads
 * datagrams and accepts over them), its own answer cache and its own read-only LMDB
 * transactions. Answers for the zone come from zone_dns_answer (zone/); names outside the zone
 * (and reverse names the catalog does not know) are resolved through libunbound when recursion
 * is configured and the client is allowed to recurse, else REFUSED (see recurse.c).
 *
 * Threads: rsv_start, rsv_stop and rsv_port run on the main loop thread. rsv_catalog_changed
 * and rsv_stats_get may run on any thread. The workers never touch main-loop state: they read
 * the catalog through their own zone_read and the published catalog index (an atomic); the
 * only thing that crosses into a worker's loop is uv_async_send (stop).
 *
 * Ownership: the config is copied by rsv_start (the zone_dns_config deeply), except the store,
 * which is borrowed: it must stay open until rsv_stop's done callback has run. The struct rsv
 * is owned by the resolver and freed just before done runs.
 *
 * Caching: each worker caches whole responses keyed by (lowercased name, type, class, EDNS
 * shape, size limit) and stamped with the catalog index they were built at; an entry is used
 * only while that index is still the published one, so a write becomes visible on the next
 * query after rsv_catalog_changed.
 */
#ifndef HERALD_RESOLVER_H
#define HERALD_RESOLVER_H

#include "base/base.h"
#include "zone/zone.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

struct rsv;

/* ---- recursion ------------------------------------------------------------------------ */

/* An IPv4 or IPv6 network. IPv4 addresses are kept as themselves (family AF_INET, 4 bytes);
 * a client's v4-mapped IPv6 address (::ffff:a.b.c.d) matches IPv4 networks. */
struct rsv_cidr {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t prefix; /* 0..32 or 0..128 */
    uint8_t addr[16];
};

/* Parses "10.0.0.0/8", "fd00::/8", or a bare address (a /32 or /128). Host bits must be zero
 * ("10.1.0.0/8" is refused, as it is almost always a typo). 0 or BASE_EINVAL. */
int rsv_cidr_parse(const char *s, struct rsv_cidr *out) BASE_MUSTCHECK;

/* The default -allow-recursion list: loopback (127.0.0.0/8, ::1), RFC 1918, IPv4 link-local
 * (169.254.0.0/16), IPv6 ULA (fc00::/7) and link-local (fe80::/10). *n gets the count; the
 * array is static. */
const struct rsv_cidr *rsv_cidr_defaults(size_t *n);

/* Whether addr (an AF_INET or AF_INET6 sockaddr) is in one of the n networks. */
bool rsv_cidr_match(const struct rsv_cidr *nets, size_t n, const struct sockaddr *addr);

/* Parses a recursor "ADDR", "ADDR:PORT", "[V6]" or "[V6]:PORT" (port default 53; a bare IPv6
 * literal takes no port) into libunbound's "ADDR@PORT" form in out. 0 or BASE_EINVAL. */
int rsv_recursor_parse(const char *s, char *out, size_t cap) BASE_MUSTCHECK;

enum rsv_recursion_mode {
    RSV_RECURSION_FORWARD = 0, /* to the forwarders (Consul's recursors) */
    RSV_RECURSION_ITERATIVE,   /* from the root servers of root_hints (no forwarders) */
};

struct rsv_recursion {
    enum rsv_recursion_mode mode;
    const char *const *forwarders; /* "ADDR[:PORT]" (rsv_recursor_parse), forward mode */
    size_t n_forwarders;
    const char *root_hints;       /* iterative mode: a root hints file; NULL: libunbound's own */
    bool dnssec;                  /* validate: AD on secure answers, SERVFAIL on bogus ones */
    const char *trust_anchor;     /* with dnssec: a file of DS or DNSKEY records (required) */
    uint64_t cache_bytes;         /* libunbound's caches, over all workers; 0: 32 MiB */
    unsigned timeout_ms;          /* upstreams silent this long: SERVFAIL; 0: 2000 */
    unsigned max_queries;         /* outstanding recursive queries per worker; 0: 1000 */
    const struct rsv_cidr *allow; /* who may recurse; NULL: rsv_cidr_defaults */
    size_t n_allow;
};

struct rsv_config {
    const char *host;         /* listen address: an IPv4 or IPv6 literal */
    int port;                 /* 0: a free port, the same for UDP and TCP (see rsv_port) */
    unsigned workers;         /* 0: the number of cores (uv_available_parallelism) */
    struct zone_store *store; /* borrowed, see the opening comment */
    const struct zone_dns_config *zone; /* copied */
    uint64_t catalog_index;             /* the catalog index at start (zone_store_meta) */
    unsigned tcp_idle_timeout_ms;       /* 0: 10 s without a complete query closes a connection */
    unsigned tcp_max_conns;             /* 0: 1024, across all workers */
    unsigned tcp_max_conns_per_client;  /* 0: 32 per source address */
    unsigned tcp_max_conns_per_network; /* 0: 128 per source /24 (IPv4) or /64 (IPv6) */
    unsigned cache_entries;             /* per worker; 0: 131072 (rounded up to a power of two) */
    size_t cache_max_bytes;             /* per worker; 0: 64 MiB of cached responses */
    /* NULL, or forward mode without forwarders: no recursion (other names are REFUSED and RA
     * is never set). Copied. */
    const struct rsv_recursion *recursion;
};

/* Binds the UDP and TCP sockets of every worker and starts the worker threads. On failure
 * nothing is left running, *out is NULL and errmsg names the socket and the reason
 * ("dns 127.0.0.1:8600/udp: address already in use"). Main loop thread. */
int rsv_start(uv_loop_t *main, const struct rsv_config *cfg, struct rsv **out,
              char *errmsg) BASE_MUSTCHECK;

/* The port the listeners are bound to (the configured one, or the one picked for 0). */
int rsv_port(const struct rsv *r);
unsigned rsv_workers(const struct rsv *r);

/* Publishes the catalog index after a write was applied (call it after the LMDB commit, before
 * the writer is answered): cached answers built at another index are not used again. Any
 * thread; a relaxed store and no syscall, so it is cheap to call on every apply. */
void rsv_catalog_changed(struct rsv *r, uint64_t index);

/* Whether the catalog is too stale to answer from (the agent lost contact with its servers
 * for longer than dns_config.max_stale allows): while set, names of the zone answer SERVFAIL
 * (counted in stale_servfail) and names outside it are not affected. Any thread; cheap. */
void rsv_set_stale(struct rsv *r, bool stale);

/* Counters summed over the workers (each read without locks, so only roughly consistent). */
struct rsv_stats {
    uint64_t udp_queries, tcp_queries; /* messages received (including ones dropped) */
    uint64_t cache_hits, cache_misses; /* in-zone answers from the cache / built */
    uint64_t dropped;                  /* no answer: unreadable header, QR=1, empty */
    uint64_t formerr, notimp, badvers, refused, servfail; /* error answers sent */
    uint64_t udp_send_queued, udp_send_dropped;           /* try_send said EAGAIN / send failed */
    uint64_t tcp_accepted, tcp_rejected, tcp_idle_closed;
    uint64_t tcp_paused;           /* times a connection stopped answering until its client read */
    uint64_t recursed;             /* queries handed to libunbound */
    uint64_t recursion_refused;    /* outside names from clients not allowed to recurse */
    uint64_t recursion_timeouts;   /* no answer within the recursor timeout: SERVFAIL */
    uint64_t recursion_overload;   /* over max_queries outstanding: SERVFAIL at once */
    uint64_t recursion_cache_hits; /* answered from the worker's copy of libunbound's answer */
    uint64_t stale_servfail;       /* zone names answered SERVFAIL while rsv_set_stale held */
};
void rsv_stats_get(const struct rsv *r, struct rsv_stats *out);

/* Stops every worker (each closes its sockets, connections and loop), joins the threads,
 * frees the resolver and then calls done (may be NULL) from the main loop, later (never
 * inside this call). Main loop thread. */
void rsv_stop(struct rsv *r, void (*done)(void *), void *data);

#endif
