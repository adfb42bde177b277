/* rpc internals: the rpc object and the seams between its files.
 *
 *   port.c  the listener, handshakes and their key proof, per-IP caps, the dialer and its
 *           backoff, streams, the tick, start and stop
 *   call.c  framed request/response: incoming connections and the methods that serve them,
 *           clients with their outgoing connections and calls
 *
 * Everything runs on the loop thread. Never included from outside rpc/.
 */
#ifndef HERALD_RPC_INTERNAL_H
#define HERALD_RPC_INTERNAL_H

#include "rpc/rpc.h"

#include <assert.h>

#define RPC__DEFAULT_PORT 8300

struct rpc__incoming; /* an accepted connection in its handshake (port.c) */
struct rpc__conn;     /* an RPC connection, incoming or a client's (call.c) */
struct rpc__ipcount;  /* incoming connections of one source IP (port.c) */
struct rpc__backoff;  /* failed stream dials to one server id (port.c) */

struct rpc__method {
    struct rpc_method m; /* m.refusal is our copy */
    bool set;
    bool gone; /* removed (rpc_unhandle): its requests close their connection */
};

struct rpc {
    uv_loop_t *loop;
    uint64_t id;
    char *address;
    uint8_t key[32]; /* the cluster key (key_len 0: none) */
    size_t key_len;
    unsigned max_per_client;
    unsigned idle_ms;
    struct sockaddr_storage src; /* outgoing connections bind to it (family 0: not) */

    /* port.c */
    uv_tcp_t *listener;        /* NULL once closed */
    struct base_list incoming; /* handshakes (struct rpc__incoming.node), newest first */
    unsigned n_incoming;
    struct base_list dials; /* of struct rpc_dial.node, newest first */
    struct rpc__backoff *backoff;
    size_t n_backoff;
    struct rpc__ipcount *ipcounts;
    size_t n_ipcounts;
    uv_timer_t tick;
    uint64_t accept_warn_at;
    uint64_t refuse_warn_at; /* rate limit for failed outgoing key handshakes */
    struct {
        const char *why; /* a string literal */
        uint64_t at;     /* logged again at warn from then on */
    } refuse_log[8];     /* rate limits for refusals, per reason */
    rpc_peer_cb is_member;
    void *is_member_data;
    rpc_stream_cb on_stream;
    void *stream_data;

    /* call.c */
    struct rpc__method methods[RPC_TYPE_MAX + 1];
    struct base_list conns;   /* incoming (struct rpc__conn.node), newest first */
    unsigned n_in;            /* incoming RPC connections */
    unsigned n_strangers;     /* of which not tied to a member when accepted */
    struct base_list clients; /* open (struct rpc_client.node), newest first */
    uint64_t next_id;

    /* lifecycle: handles, handshakes, dials, connections and clients not yet freed */
    int pending;
    bool stopping;
    void (*done)(void *);
    void *done_data;
};

/* port.c */
/* One fewer thing to wait for before a stopping rpc is freed. */
void rpc__unpend(struct rpc *r);
/* Whether p is tied to a member: it proved the key, or rpc_set_members says so. */
bool rpc__is_member(struct rpc *r, const struct rpc_peer *p);
/* Counts an incoming connection against its source IP; false (nothing counted) when the
 * per-client cap is reached. rpc__ip_release undoes one count. */
bool rpc__ip_count(struct rpc *r, const struct sockaddr_storage *sa);
void rpc__ip_release(struct rpc *r, const struct sockaddr_storage *sa);
/* An outgoing RPC connection: the "HRLDRPC2" handshake, then the stream is cb's (allocated
 * with base_malloc). Like rpc_dial_stream otherwise (no backoff here: clients keep their own). */
struct rpc_dial *rpc__dial_rpc(struct rpc *r, const char *address, const struct rpc_link *link,
                               rpc_dial_cb cb, void *data);
/* The link's values with the defaults filled in (backoff_max: def_backoff_max when 0). */
struct rpc_link rpc__link(const struct rpc_link *l, unsigned def_backoff_max);
/* backoff_min doubling per failure after the first, at most backoff_max (0 failures: 0). */
unsigned rpc__backoff_ms(const struct rpc_link *l, unsigned failures);

/* call.c */
/* An incoming connection that passed the RPC handshake (it counts against the peer's source
 * IP, released when the connection is freed). */
void rpc__accept(struct rpc *r, uv_tcp_t *tcp, const struct rpc_peer *peer);
/* Expires calls, retries connections, closes idle ones (the tick). */
void rpc__call_tick(struct rpc *r);
/* Closes every incoming connection (rpc_stop). */
void rpc__call_stop(struct rpc *r);
void rpc__methods_free(struct rpc *r);

#endif
