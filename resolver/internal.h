/* resolver internals: the answer cache (cache.c), the per-worker query engine (query.c), the
 * workers and their UDP side (worker.c), TCP connections (tcp.c), recursion through libunbound
 * (recurse.c, with the relay of its answers in relay.c and the ACL in acl.c) and the shared
 * start/stop state (resolver.c). Never included from outside resolver/ (the unit tests
 * excepted). */
#ifndef HERALD_RESOLVER_INTERNAL_H
#define HERALD_RESOLVER_INTERNAL_H

#include "resolver/resolver.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

/* ---- rng (xorshift64*; any non-zero seed) ---------------------------------------------- */
uint64_t rsv__rng_next(uint64_t *state);
uint64_t rsv__rng_seed(void);

/* ---- answer cache (cache.c) ------------------------------------------------------------ */
#define RSV__SHAPE_EDNS 1u
#define RSV__SHAPE_DO   2u
#define RSV__WAYS       4

/* What a cached response depends on besides the catalog: the lowercased name, type, class,
 * whether the query had EDNS and DO, and the transport's size limit. */
struct rsv__key {
    uint16_t qtype, qclass;
    uint16_t limit; /* 512..4096 for UDP, 65535 for TCP */
    uint8_t shape;  /* RSV__SHAPE_* */
    uint8_t name_len;
    uint8_t name[ZONE_DNS_MAX_NAME];
};
void rsv__key_make(struct rsv__key *k, const struct zone_dns_query *q, size_t limit);

struct rsv__blob;
struct rsv__slot {
    uint64_t hash;
    uint64_t index; /* catalog index the response was built at */
    uint32_t tick;  /* last use, for LRU within the set */
    struct rsv__blob *blob;
};

struct rsv__cache {
    struct rsv__slot *slots; /* n_sets * RSV__WAYS */
    size_t n_sets;
    uint32_t tick;
    size_t bytes, max_bytes;
    /* counters (tests and stats) */
    uint64_t allocs;    /* allocator calls made by inserts; lookups never allocate */
    uint64_t inserts;   /* responses stored */
    uint64_t evictions; /* live entries pushed out by another key */
    uint64_t skipped;   /* responses not stored (too large, unusable layout) */
};

/* entries is rounded up to a power of two (at least RSV__WAYS); 0 means 131072. max_bytes 0 means
 * 64 MiB. */
void rsv__cache_init(struct rsv__cache *c, size_t entries, size_t max_bytes);
void rsv__cache_close(struct rsv__cache *c);

/* Looks k up. On a hit (same key, built at `index`) writes the cached response into out with
 * the query's ID, RD and CD bits and question bytes (the client's case) patched in and the
 * layout's RRs permuted, and returns its length. 0 on a miss (or cap too small). Never
 * allocates. */
size_t rsv__cache_lookup(struct rsv__cache *c, const struct rsv__key *k, uint64_t index,
                         const struct zone_dns_query *q, uint64_t *rng, uint8_t *out, size_t cap);

/* Stores a response built at `index` for k (replacing the entry of the same key, else an empty
 * or stale way of the set, else the least recently used). Allocates only when the slot's
 * buffer is too small. Returns false when the response was not stored (over the byte budget,
 * malformed layout, no question). */
bool rsv__cache_insert(struct rsv__cache *c, const struct rsv__key *k, uint64_t index,
                       const uint8_t *resp, size_t len, const struct zone_dns_layout *layout);

/* ---- counters ------------------------------------------------------------------------- */
/* One writer (the worker), readers on any thread: relaxed atomics, no locked instruction. */
struct rsv__stats {
    _Atomic uint64_t udp_queries, tcp_queries, cache_hits, cache_misses, dropped, formerr, notimp,
        badvers, refused, servfail, udp_send_queued, udp_send_dropped, tcp_accepted, tcp_rejected,
        tcp_idle_closed, tcp_paused, recursed, recursion_refused, recursion_timeouts,
        recursion_overload, recursion_cache_hits, stale_servfail;
};
#define RSV__COUNT(st, field)                                                                      \
    atomic_store_explicit(&(st)->field,                                                            \
                          atomic_load_explicit(&(st)->field, memory_order_relaxed) + 1,            \
                          memory_order_relaxed)

/* ---- recursion ------------------------------------------------------------------------- */
/* The recursion config as the resolver keeps it (a deep copy of struct rsv_recursion). */
struct rsv__rcfg {
    bool enabled; /* forwarders given, or iterative mode */
    enum rsv_recursion_mode mode;
    char **forwarders; /* "ADDR@PORT" */
    size_t n_forwarders;
    char *root_hints, *trust_anchor;
    bool dnssec;
    uint64_t cache_bytes; /* per worker */
    unsigned timeout_ms, max_queries;
    struct rsv_cidr *allow;
    size_t n_allow;
};

/* Builds the client's response from libunbound's answer packet (relay.c): the client's ID and
 * question, QR RA set, RD and CD copied, AD when ad, the packet's rcode and records (DNSSEC
 * records only for DO clients), our OPT when the query had one, truncated for limit. Returns
 * the length, or 0 when the packet does not answer q (the caller answers SERVFAIL). Pure. */
size_t rsv__relay(const struct zone_dns_query *q, size_t limit, bool ad, const uint8_t *up,
                  size_t len, uint8_t *out, size_t cap);

/* The smallest TTL of a message's RRs (the OPT's field excepted; a TTL with the top bit set
 * counts as 0), UINT32_MAX when it has none, 0 when it does not parse. Pure. */
uint32_t rsv__relay_min_ttl(const uint8_t *p, size_t len);
/* Lowers every TTL of a message (the OPT's excepted) by seconds, down to 0. Pure. */
void rsv__relay_age(uint8_t *p, size_t len, uint32_t seconds);

struct rsv__conn;
struct rsv__worker;
struct rsv__recursor;

/* Creates the worker's libunbound context (options, forwarders or root hints, trust anchor,
 * its background thread started by a first query for "localhost.") and its poll and timer
 * handles on the worker's loop. Main thread, at setup, before the worker runs. */
int rsv__recursor_new(struct rsv__worker *w, const struct rsv__rcfg *cfg,
                      struct rsv__recursor **out, char *errmsg) BASE_MUSTCHECK;
/* Drops every outstanding query (no answer is sent) and closes the handles. Worker thread. */
void rsv__recursor_close(struct rsv__recursor *r);
/* Deletes the libunbound context (joining its thread) and frees r. After the loop closed. */
void rsv__recursor_free(struct rsv__recursor *r);
/* Starts resolving q for a client (conn for TCP, else the UDP peer). Returns 0 when the answer
 * will be sent later (by the worker, from ub_process), or the length of an answer to send
 * now (SERVFAIL: too many queries outstanding, or libunbound refused the query). */
size_t rsv__recurse(struct rsv__recursor *r, const struct zone_dns_query *q, size_t limit,
                    struct rsv__conn *conn, const struct sockaddr *peer, uint8_t *out, size_t cap);
/* A TCP connection is closing: its outstanding queries will not be answered. */
void rsv__recursor_forget_conn(struct rsv__recursor *r, struct rsv__conn *c);

/* ---- query engine (query.c) ------------------------------------------------------------ */
struct rsv__engine {
    struct zone_store *store;
    const struct zone_dns_config *zone;
    const _Atomic uint64_t *catalog_index;
    const _Atomic bool *too_stale; /* rsv_set_stale (NULL: never) */
    struct rsv__cache cache;
    struct base_arena arena;
    struct zone_dns_query q;
    struct zone_dns_layout layout;
    uint64_t rng;
    uint64_t last_warn_ms;
    struct rsv__stats *stats;
    const struct rsv__rcfg *rcfg; /* recursion config (rcfg->enabled false: none) */
    struct rsv__recursor *rec;    /* the worker's recursor, NULL without recursion */
};

void rsv__engine_init(struct rsv__engine *e, struct zone_store *store,
                      const struct zone_dns_config *zone, const _Atomic uint64_t *catalog_index,
                      struct rsv__stats *stats, size_t cache_entries, size_t cache_max_bytes);
void rsv__engine_close(struct rsv__engine *e);
/* The query's (lowercased) name as text ("web.service.consul.", the root as "."), bytes
 * escaped as \DDD: for libunbound (strict) every byte but a letter, digit, '-' or '_'; for a
 * log line every byte that is not printable, '.' or '\'. False when it does not fit in cap
 * (buf then holds the part that did). */
bool rsv__name_text(const struct zone_dns_query *q, bool strict, char *buf, size_t cap);

/* Answers one message. Writes the response into out and returns its length, or 0 when no
 * answer is to be sent now (none at all, or a recursive one later). tcp selects the size limit
 * (65535, else 512 or the EDNS size); conn is the TCP connection (NULL for UDP). peer is the
 * client's address: recursion ACL, where a later UDP answer goes, debug logs (NULL: not
 * allowed to recurse). */
size_t rsv__answer(struct rsv__engine *e, const uint8_t *pkt, size_t len, bool tcp,
                   struct rsv__conn *conn, const struct sockaddr *peer, uint8_t *out, size_t cap);

/* ---- workers (worker.c) and TCP (tcp.c) ------------------------------------------------ */
#define RSV__MSG_MAX   65535
#define RSV__RBUF_MMSG 20 /* datagrams per recvmmsg: libuv reads 64 KiB chunks of our buffer */

struct rsv__conn;

struct rsv__worker {
    struct rsv *rsv;
    unsigned id;
    uv_loop_t loop;
    uv_thread_t thread;
    bool loop_ready, thread_started, udp_ready, tcp_ready, async_ready;
    uv_async_t stop;
    uv_udp_t udp;
    uv_tcp_t listener;
    struct rsv__recursor *rec; /* NULL without recursion */
    uint8_t *rbuf;             /* recvmmsg buffer */
    size_t rbuf_len;
    uint8_t *out; /* 2 + RSV__MSG_MAX: a TCP length then the response */
    struct rsv__engine eng;
    struct rsv__stats stats;
    struct base_list conns; /* open connections (struct rsv__conn.link), newest first */
    unsigned udp_pending;   /* queued uv_udp_send requests */
    bool stopping;
    int loop_close_rc;
};

/* A socket bound to sa: with SO_REUSEPORT (and SO_REUSEADDR) when shared by the workers;
 * without them for the probe that checks that no one else holds the port. The fd or -errno. */
int rsv__socket_bind(const struct sockaddr *sa, int type, bool shared);
/* Prepares w (w->rsv, w->id and w->eng set) on the calling thread: buffers, loop, stop async,
 * the bound UDP and TCP sockets. On failure errmsg names the socket; rsv__worker_free cleans. */
int rsv__worker_setup(struct rsv__worker *w, const struct sockaddr *sa, char *errmsg);
/* Starts the worker's thread, which runs its loop until stopped. */
int rsv__worker_run(struct rsv__worker *w, char *errmsg);
/* Asks a running worker to stop: it closes its handles and its loop. Any thread. */
void rsv__worker_signal(struct rsv__worker *w);
/* Joins the worker (or, when its thread never started, closes its handles and drains its loop
 * on the calling thread) and frees it. Main thread. */
void rsv__worker_free(struct rsv__worker *w);

/* TCP listener callback and the closing of every connection (worker stop). */
void rsv__tcp_on_connection(uv_stream_t *listener, int status);
void rsv__tcp_close_all(struct rsv__worker *w);

/* Sends a response to a UDP client (try_send, else a bounded queue). Worker thread. */
void rsv__udp_reply(struct rsv__worker *w, const struct sockaddr *addr, const uint8_t *p, size_t n);
/* A recursive query of c started / ended: c stays open (even after its client's EOF) until
 * its outstanding queries are answered. rsv__tcp_recursion_done sends the answer (len bytes
 * at w->out + 2, framed in place; len 0: none) and restarts the idle timer. */
void rsv__tcp_recursion_begin(struct rsv__conn *c);
void rsv__tcp_recursion_done(struct rsv__conn *c, size_t len);

/* ---- the shared state (resolver.c) ---------------------------------------------------- */
struct rsv__client; /* per-source-address TCP connection count */

struct rsv {
    uv_loop_t *main;
    uv_timer_t done_timer; /* closed at stop: its close callback runs done on the main loop */
    char host[64];
    int port;
    struct zone_store *store;
    struct zone_dns_config zone; /* deep copy */
    struct rsv__rcfg rcfg;       /* deep copy */
    _Atomic uint64_t catalog_index;
    _Atomic bool too_stale; /* rsv_set_stale */
    unsigned n_workers;
    struct rsv__worker **workers;
    unsigned tcp_idle_ms, tcp_max_conns, tcp_max_per_client, tcp_max_per_network;
    _Atomic unsigned tcp_conns;
    pthread_mutex_t clients_mu;
    struct rsv__client *clients; /* open addressing, clients_cap slots */
    size_t clients_cap;
    void (*done)(void *);
    void *done_data;
};

/* Counts a new connection from addr against the total, per-address and per-network caps.
 * false: over a cap
 * (nothing counted). Any worker thread. */
bool rsv__conn_admit(struct rsv *r, const struct sockaddr_storage *addr);
void rsv__conn_release(struct rsv *r, const struct sockaddr_storage *addr);

#endif
