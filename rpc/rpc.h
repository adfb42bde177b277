/* rpc: the server port (DESIGN.md 2.1): one TCP listener that servers (and, later, client
 * agents and other datacenters) reach each other on, below consensus and above base.
 *
 * What it does. It listens, runs the authenticated handshake on every connection (port.c's
 * design paragraph: preambles, the cluster key's HMAC proof both ways, what a peer without
 * the key can still do), caps connections per source IP and handshakes at once, closes idle
 * ones, dials with a per-peer exponential backoff, and carries framed request/response RPC
 * (call.c's design paragraph: frames, outcomes, bounds). It knows nothing of Raft or of the
 * catalog: consensus registers its methods (HELLO, FORWARD, ...) with rpc_handle, takes the
 * streams of the stream protocol (Raft) with rpc_set_streams, says which peers are members
 * with rpc_set_members, and makes its calls through an rpc_client.
 *
 * Adding a service. A new request type is one rpc_method: a type byte unused on this port,
 * who may ask (anyone, or members and key holders, plus an optional allow hook), the reply
 * a refusal carries, and a serve callback that answers with rpc_reply, once, now or later.
 * Its caller uses rpc_call through its own rpc_client. Nothing else changes (the wire format
 * is the same for every type).
 *
 * Two protocols on one port, picked by the 8-byte preamble of a connection: "HRLDRPC2"
 * (framed RPC, served here) and "HRLDRAF3" (a stream to the server id named in its handshake,
 * handed over raw to the stream owner after the handshake, not one byte of it read here).
 *
 * Authentication and authorization. With a cluster key (rpc_config.key) every connection
 * proves it both ways in the handshake (HMAC-SHA256 over both sides' nonces) and only key
 * holders get past it; without one, the owner's members hook ties peers to members by their
 * source address, each method says who may call it, and the stream owner takes or refuses
 * each stream. The key authenticates the handshake only: no encryption, no per-message
 * integrity (TLS, later). Refusals are logged, rate-limited per reason.
 *
 * Silent peers. Each outgoing connection carries its link's bounds (rpc_link): a dial
 * timeout, TCP_USER_TIMEOUT (data the peer's TCP does not acknowledge within it resets the
 * connection, so a peer behind a partition is noticed in bounded time) and a capped redial
 * backoff. Consensus sets them from its heartbeat (consensus/transport.c).
 *
 * Threads: everything runs on the loop thread of rpc_start's loop (BASE_ASSERT_LOOP).
 * Ownership: the rpc copies every string and key of its config, and every method it is
 * given; callbacks run later, from the loop, never inside the call that asked for them
 * (except where said). The owner (admin) stops the rpc after everything that uses it
 * (consensus) has stopped: rpc_stop asserts that no client is open. */
#ifndef HERALD_RPC_H
#define HERALD_RPC_H

#include "base/base.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#define RPC_ADDRESS_MAX 255u        /* an address in a handshake */
#define RPC_HEADER      16u         /* frame header: u32 length, u8 type, 3 zeros, u64 id */
#define RPC_FRAME_MAX   (8u << 20)  /* largest frame body */
#define RPC_REPLY       0x80u       /* a response's type: its request's | RPC_REPLY */
#define RPC_TYPE_MAX    0x7fu       /* request types are 1..RPC_TYPE_MAX */
#define RPC_SMALL_FRAME (64u << 10) /* largest frame from a peer that is not a member */

/* Call outcomes besides 0 (a reply; its body is valid during the callback): */
#define RPC_UNSENT (-ENOTCONN)   /* never written: nothing reached the peer, retry is safe */
#define RPC_LOST   (-ECONNRESET) /* written, connection lost before the reply: unknown */
/* -ETIMEDOUT: written, no reply within the call's timeout (unknown); BASE_ESHUTDOWN: the
 * client closed before the request was written. */

struct rpc;
struct rpc_client;
struct rpc_req;  /* an incoming request, answered with rpc_reply */
struct rpc_dial; /* an outgoing stream being connected */

/* Who is at the other end of an incoming connection, as far as the handshake could tell: the
 * id and address it claims, its source address, and whether it proved the cluster key. */
struct rpc_peer {
    uint64_t id;
    char address[RPC_ADDRESS_MAX + 1];
    struct sockaddr_storage sa;
    bool keyed;
};

typedef bool (*rpc_peer_cb)(void *data, const struct rpc_peer *p);

/* How an outgoing connection is made and watched. Zero fields take the defaults. */
struct rpc_link {
    /* TCP connect plus the handshake (with a key: the server's proof and ours); a dial that
     * takes longer fails with UV_ETIMEDOUT. 0: 2000 ms. */
    unsigned dial_timeout_ms;
    /* Silent peer: data written on the connection and not acknowledged by the peer's TCP
     * for this long resets it (TCP_USER_TIMEOUT on Linux), so a connection into a partition
     * or to a frozen host fails in bounded time instead of sitting in retransmission backoff
     * for minutes. Linux counts a zero window too: a peer whose receive buffer stays full
     * that long (its process stopped while we stream to it) is cut as well, and redialed.
     * 0: the kernel's default (no bound of ours). */
    unsigned user_timeout_ms;
    /* Redial after failures to the same peer: backoff_min_ms doubling up to backoff_max_ms
     * (a success resets it). 0: 50 ms and, for streams 250 ms, for clients 2000 ms. */
    unsigned backoff_min_ms;
    unsigned backoff_max_ms;
};

struct rpc_config {
    uint64_t id;              /* this server's id, named in every handshake; non-zero */
    const char *address;      /* advertised "ip:port" (or "[v6]:port"); at most 255 bytes */
    const char *bind_address; /* "ip:port" to listen on (and dial from); NULL or "": address */
    /* The cluster key (the raw bytes of -encrypt: 16, 24 or 32; copied; NULL: none). With a
     * key every connection proves it both ways and only key holders get past the handshake;
     * without one, peers are tied to members by their source address (rpc_set_members). */
    const uint8_t *key;
    size_t key_len;
    unsigned max_conns_per_client; /* incoming connections per source IP; 0: 100 */
    unsigned idle_timeout_ms;      /* an incoming RPC connection without a frame; 0: 60 s */
};

/* Binds and listens on the server port at once (a taken port fails here, with the libuv
 * code, e.g. UV_EADDRINUSE). On failure *out is NULL and errmsg says why. Loop thread. */
int rpc_start(uv_loop_t *loop, const struct rpc_config *cfg, struct rpc **out,
              char *errmsg) BASE_MUSTCHECK;

/* Closes the listener, handshakes, dials and connections; frees the rpc, then calls done
 * (later, from the loop, once every request being served was answered: a connection stays
 * until then). Every client must be closed first (its owner stopped). */
void rpc_stop(struct rpc *r, void (*done)(void *), void *data);

/* This server's id and advertised address (as configured). */
uint64_t rpc_id(const struct rpc *r);
const char *rpc_address(const struct rpc *r);
bool rpc_keyed(const struct rpc *r);

/* ---- serving ----------------------------------------------------------------------------- */

/* Who may make a request, besides key holders (with a key, every peer past the handshake is
 * one and may ask anything). */
enum rpc_access {
    RPC_MEMBERS = 0, /* peers tied to a member (rpc_set_members), or allow says so */
    RPC_ANYONE,      /* anyone who passed the handshake */
};

typedef void (*rpc_serve_cb)(void *data, struct rpc_req *req, const uint8_t *body, size_t len);

struct rpc_method {
    uint8_t type;     /* 1..RPC_TYPE_MAX, unique on the port */
    const char *name; /* for logs */
    enum rpc_access access;
    rpc_peer_cb allow; /* RPC_MEMBERS: also these peers without the key (NULL: none) */
    /* A refused request is logged (rate-limited per reason) as "refused IP: <refused>"
     * (a string literal; NULL: "request from a non-member address") and answered with the
     * status BASE_EACL followed by the refusal bytes (copied): the shape its caller reads. */
    const char *refused;
    const void *refusal;
    size_t refusal_len;
    rpc_serve_cb serve; /* gets every accepted request; answers each with rpc_reply */
    void *data;         /* for serve and allow */
};

/* Registers a method (copied). Requests of a type never registered are answered with status
 * BASE_EINVAL; those of a type removed (rpc_unhandle) close their connection, as a stopped
 * server's would (the caller learns RPC_LOST: the request's fate is unknown to it). */
void rpc_handle(struct rpc *r, const struct rpc_method *m);
void rpc_unhandle(struct rpc *r, uint8_t type);

/* Answers a request (body: what the caller gets; by convention an i32 status first). Exactly
 * once per request; after the peer left it is dropped. req is freed. */
void rpc_reply(struct rpc_req *req, const struct base_buf *body);
/* Who sent a request (valid until it is answered). */
const struct rpc_peer *rpc_req_peer(const struct rpc_req *req);
/* Bytes written to the request's connection and not yet taken by its peer's TCP (a peer that
 * does not read makes it grow): the caller bounds what it queues for one peer with it. */
size_t rpc_req_backlog(const struct rpc_req *req);
/* Answers nothing and closes the request's connection (the peer learns RPC_LOST), with what
 * it had queued: for a peer that does not read (why: a literal, logged as a refusal). req is
 * freed; the connection's other requests are answered into nothing. */
void rpc_req_drop(struct rpc_req *req, const char *why);

/* Whether a peer without the key is tied to a member of the cluster (by its source address;
 * NULL: nobody, only key holders). Members may make RPC_MEMBERS requests, send frames over
 * RPC_SMALL_FRAME and have their own share of the incoming connections. A peer that a
 * method's allow hook accepts may also send that method's frames over RPC_SMALL_FRAME. */
void rpc_set_members(struct rpc *r, rpc_peer_cb is_member, void *data);

/* Streams ("HRLDRAF3" connections naming this server's id). on_stream gets each one whose
 * handshake completed: return true to take tcp (its reads stopped, nothing of the stream
 * read; tcp->data is NULL; allocated with base_malloc: the new owner closes it and frees it
 * with base_free), or false to refuse it (*why set: logged as a refusal, NULL: closed
 * quietly). With no on_stream (NULL), streams are closed quietly. Ends of taken streams are
 * the owner's to see (it reads them). */
typedef bool (*rpc_stream_cb)(void *data, uv_tcp_t *tcp, const struct rpc_peer *p,
                              const char **why);
void rpc_set_streams(struct rpc *r, rpc_stream_cb on_stream, void *data);

/* ---- dialing streams ----------------------------------------------------------------------- */

/* cb runs exactly once, later: status 0 and a connected handle that passed the handshake
 * (TCP_NODELAY, keepalive, the link's user timeout; the caller owns it and frees it with
 * the dial's free), or an error (UV_ECANCELED after rpc_dial_cancel) and NULL. */
typedef void (*rpc_dial_cb)(void *data, uv_tcp_t *tcp, int status);

struct rpc_stream_dial {
    uint64_t to;         /* the server id the stream is for (non-zero) */
    const char *address; /* its server port, "host:port" (names are resolved) */
    const struct rpc_link *link;
    /* the handle's allocator (NULL: base_malloc, base_free): the stream's new owner frees
     * it with the matching free (consensus hands dialed streams to libraft) */
    void *(*alloc)(size_t);
    void (*free)(void *);
    rpc_dial_cb cb;
    void *data;
};

/* Dials a stream to sd->to. A dial to a peer whose last dials failed first waits out its
 * backoff (the link's), which a stream from that peer (it is up again) or a success ends. */
struct rpc_dial *rpc_dial_stream(struct rpc *r, const struct rpc_stream_dial *sd);
/* cb then runs with UV_ECANCELED (unless it already ran or is running). */
void rpc_dial_cancel(struct rpc_dial *d);

/* ---- calling ----------------------------------------------------------------------------- */

/* A caller's set of outgoing connections (one per address, made on demand, kept while used)
 * and calls. on_closed, when set, hears of every connection of this client that closes
 * (address, and why: UV_EOF, UV_ECONNRESET, UV_ETIMEDOUT for a silent peer, 0 when we
 * closed it ourselves), after its calls were ended. */
struct rpc_client_config {
    struct rpc_link link;
    void (*on_closed)(void *data, const char *address, int status);
    void *data;
};
struct rpc_client *rpc_client_new(struct rpc *r, const struct rpc_client_config *cfg);

/* cb runs exactly once, later: status 0 with the reply body, or RPC_UNSENT (never written:
 * connect failed, or the peer is backing off), RPC_LOST, -ETIMEDOUT (timeout_ms after the
 * call), BASE_ESHUTDOWN (the client closed first). */
typedef void (*rpc_call_cb)(void *data, int status, const uint8_t *body, size_t len);
void rpc_call(struct rpc_client *cl, const char *address, uint8_t type, const struct base_buf *body,
              unsigned timeout_ms, rpc_call_cb cb, void *data);

/* Ends every call of the client inside this call (written: RPC_LOST, not yet: BASE_ESHUTDOWN),
 * closes its connections and frees it once they are closed. No calls after it. */
void rpc_client_close(struct rpc_client *cl);

/* ---- helpers ----------------------------------------------------------------------------- */

/* The peer's source IP is the IP of address ("ip:port"; a name never matches). */
bool rpc_peer_at(const struct rpc_peer *p, const char *address);
bool rpc_is_loopback(const struct sockaddr_storage *sa);
/* Logs a refusal of a peer at warn, at most once per 10 s per reason (why: a literal). */
void rpc_refuse_log(struct rpc *r, const struct sockaddr_storage *sa, const char *why);

/* Status codes travel as u32 two's complement. */
static inline uint32_t rpc_status_enc(int st)
{
    return (uint32_t)st;
}
static inline int rpc_status_dec(uint32_t v)
{
    return (int)(int32_t)v;
}

#endif
