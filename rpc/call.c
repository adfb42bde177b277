/* Server RPC: requests and responses on the server port, beside the streams.
 *
 * Connections. A client (rpc_client: consensus has one) keeps one outgoing connection per
 * peer address (a "peer"), made on demand by the dialer (port.c runs the handshake) and kept
 * open while used; it carries this client's requests and their responses. Requests from
 * others arrive on their own connections (accepted by port.c after their preamble), so each
 * direction is a plain client/server exchange. A failed connect backs the peer off
 * exponentially (the client's link: by default 50 ms doubling to 2 s, reset by a successful
 * connect); requests made meanwhile fail at the next tick as unsent, so that callers can
 * retry elsewhere (a new leader) rather than wait for a dead one.
 *
 * Framing. Every message is u32 length | u8 type | 3 zero bytes | u64 request id | body, the
 * length counting what follows it. A response carries its request's id and type with the
 * high bit set; a response's body starts with an i32 status. Frames over 8 MiB (a forwarded
 * group is at most one 4 MiB entry's worth), over 64 KiB from a peer not tied to a member
 * (HELLO and JOIN are small), or with a bad header close the connection. Reads ask for
 * exactly the bytes of the current header or body, and a body's buffer grows as its bytes
 * arrive (64 KiB, doubling) and is freed after its frame: a declared size costs nothing until
 * it is sent, and an idle connection holds no buffer.
 *
 * Methods and who may ask what. Each request type is an rpc_method registered by its owner
 * (rpc_handle). The handshake authenticated the connection (the cluster key) or at least
 * knows its source address (port.c); serve() checks the method's access before its handler
 * sees a request, and answers a refusal with BASE_EACL and the method's refusal bytes, the
 * shape its caller reads.
 *
 * Bounds. Incoming connections count against their source IP with the handshakes
 * (max_conns_per_client, default 100) and at most 1024 at once, of which 256 from peers not
 * tied to a member (so those never take a member's place); one with no whole frame for
 * idle_timeout (default 60 s) while nothing is being served on it is closed. Our own
 * outgoing connections close themselves after half that idle time, so that a request is never
 * written into a connection the peer is closing as idle (its outcome would be unknown).
 *
 * Outcomes. A call's callback runs exactly once, later: 0 with the response body; unsent
 * (RPC_UNSENT: never written, so retrying is safe even for a write); lost (RPC_LOST: written,
 * connection gone) or -ETIMEDOUT (written, no response within the call's own timeout): the
 * request may have been executed; BASE_ESHUTDOWN when the client closed before it was
 * written. Responses that come after a timeout are dropped by id.
 *
 * Serving. A request is handed to its handler with an rpc_req that the handler answers once,
 * later if it must (a forwarded write answers after its commit). The connection stays
 * allocated while requests on it are being served (reference count), so an answer after the
 * peer left is simply dropped. Every connection, peer and closing client counts in
 * r->pending until freed. */
#include "internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define CALL_BACKOFF_MAX_MS 2000
#define RPC_IN_MAX          1024        /* incoming RPC connections at once */
#define STRANGERS_MAX       256         /* of which from peers not tied to a member */
#define BODY_STEP           (64u << 10) /* a body's first buffer; it doubles as bytes arrive */

struct rpc__call {
    struct base_list node; /* on its peer's queued or sent list, oldest first */
    uint64_t id;
    uint64_t deadline;
    uint8_t *frame; /* until written */
    size_t frame_len;
    rpc_call_cb cb;
    void *data;
};

struct rpc__peer {
    struct base_list node; /* on cl->peers, newest first */
    struct rpc_client *cl;
    char *address;
    struct rpc__conn *conn; /* connected */
    struct rpc_dial *dial;  /* connecting */
    unsigned failures;
    uint64_t retry_at;
    struct base_list queued; /* not yet written (struct rpc__call.node) */
    struct base_list sent;   /* written, waiting for the response */
};

struct rpc_client {
    struct base_list node; /* on r->clients, while open */
    struct rpc *r;
    struct rpc_link link;
    void (*on_closed)(void *data, const char *address, int status);
    void *data;
    struct base_list peers; /* by address (struct rpc__peer.node) */
    bool closing;
    int held; /* a walk of its peers, or callbacks that may close it: nothing of it is freed */
};

struct rpc__conn {
    struct base_list node; /* on r->conns (incoming only) */
    struct rpc *r;
    uv_tcp_t *tcp;          /* base_malloc'd, freed once closed */
    struct rpc__peer *peer; /* outgoing: its peer (NULL once closing) */
    uint8_t hdr[RPC_HEADER];
    size_t got;
    uint8_t *body;
    size_t body_len; /* declared */
    size_t body_cap; /* allocated so far: grows as the bytes arrive */
    bool in_body;
    struct rpc_peer from; /* incoming: who connected */
    uint64_t active_at;   /* last frame read or written (idle timeout) */
    bool incoming;        /* in r->conns */
    bool stranger;        /* incoming, not tied to a member when accepted */
    bool closing;
    bool broken; /* a write failed synchronously: closed at the next tick */
    int refs;    /* 1 while open, +1 per request being served or dispatched */
};

struct rpc_req {
    struct rpc__conn *conn;
    uint64_t id;
    uint8_t type;
};

struct wreq {
    uv_write_t w;
    struct rpc__conn *conn;
    uint8_t *buf;
};

/* ---- lists and frames ------------------------------------------------------------------ */

static struct rpc__call *call_of(struct base_list *n)
{
    return BASE_CONTAINER_OF(n, struct rpc__call, node);
}

static struct rpc__peer *peer_of(struct base_list *n)
{
    return BASE_CONTAINER_OF(n, struct rpc__peer, node);
}

static struct rpc__conn *conn_of(struct base_list *n)
{
    return BASE_CONTAINER_OF(n, struct rpc__conn, node);
}

/* Moves a call to the end of another list (its order there: oldest first). */
static void call_move(struct base_list *to, struct rpc__call *call)
{
    base_list_remove(&call->node);
    base_list_insert_tail(to, &call->node);
}

static uint8_t *frame_new(uint8_t type, uint64_t id, const void *body, size_t len, size_t *out)
{
    assert(len <= RPC_FRAME_MAX - (RPC_HEADER - 4));
    uint8_t *f = base_malloc(RPC_HEADER + len);
    base_put_le32(f, (uint32_t)(RPC_HEADER - 4 + len));
    f[4] = type;
    f[5] = f[6] = f[7] = 0;
    base_put_le64(f + 8, id);
    if (len)
        memcpy(f + RPC_HEADER, body, len);
    *out = RPC_HEADER + len;
    return f;
}

/* ---- calls ----------------------------------------------------------------------------- */

static void call_end(struct rpc__call *call, int status, const uint8_t *body, size_t len)
{
    rpc_call_cb cb = call->cb;
    void *data = call->data;
    base_free(call->frame);
    base_free(call);
    cb(data, status, body, len);
}

static void calls_fail(struct base_list *l, int status)
{
    /* detached first: callbacks may make new calls, to this peer too */
    struct base_list all, *n;
    base_list_init(&all);
    base_list_splice_tail(&all, l);
    while ((n = base_list_first(&all))) {
        base_list_remove(n);
        call_end(call_of(n), status, NULL, 0);
    }
}

/* ---- connections ----------------------------------------------------------------------- */

static void conn_unref(struct rpc__conn *conn)
{
    assert(conn->refs > 0);
    if (--conn->refs > 0)
        return;
    struct rpc *r = conn->r;
    if (conn->incoming) {
        base_list_remove(&conn->node);
        rpc__ip_release(r, &conn->from.sa);
        r->n_in--;
        if (conn->stranger)
            r->n_strangers--;
    }
    base_free(conn->body);
    base_free(conn);
    rpc__unpend(r);
}

static void conn_closed(uv_handle_t *h)
{
    struct rpc__conn *conn = h->data;
    base_free(h);
    conn_unref(conn);
}

static void peer_maybe_free(struct rpc__peer *p);
static void client_release(struct rpc_client *cl);

/* Closes a connection (once). status: why, for the client's on_closed (0: our own doing). */
static void conn_close(struct rpc__conn *conn, int status, const char *why)
{
    if (conn->closing)
        return;
    conn->closing = true;
    LOG_DEBUG("rpc", "closing a connection%s%s: %s", conn->peer ? " to " : "",
              conn->peer ? conn->peer->address : "", why);
    uv_close((uv_handle_t *)conn->tcp, conn_closed);
    struct rpc__peer *p = conn->peer;
    if (p) {
        /* an outgoing connection: its calls in flight may have been executed */
        struct rpc_client *cl = p->cl;
        cl->held++; /* a call's callback may close the client: it is freed after, not during */
        struct base_list sent, queued;
        base_list_init(&sent);
        base_list_init(&queued);
        base_list_splice_tail(&sent, &p->sent);
        base_list_splice_tail(&queued, &p->queued);
        conn->peer = NULL;
        p->conn = NULL;
        calls_fail(&sent, RPC_LOST);
        calls_fail(&queued, cl->closing ? BASE_ESHUTDOWN : RPC_UNSENT);
        if (!cl->closing && cl->on_closed)
            cl->on_closed(cl->data, p->address, status);
        client_release(cl); /* frees p (and cl) if cl closed and nothing else holds it */
    }
}

static void write_cb(uv_write_t *w, int status)
{
    struct wreq *wr = w->data;
    struct rpc__conn *conn = wr->conn;
    base_free(wr->buf);
    base_free(wr);
    conn->active_at = uv_now(conn->r->loop);
    if (status != 0)
        conn_close(conn, status, uv_strerror(status));
    conn_unref(conn);
}

/* Takes frame. Returns non-zero when it could not even be queued (nothing was written). */
static int conn_write(struct rpc__conn *conn, uint8_t *frame, size_t len)
{
    struct wreq *wr = base_malloc(sizeof *wr);
    wr->conn = conn;
    wr->buf = frame;
    wr->w.data = wr;
    uv_buf_t b = uv_buf_init((char *)frame, (unsigned)len);
    int rv = uv_write(&wr->w, (uv_stream_t *)conn->tcp, &b, 1, write_cb);
    if (rv != 0) {
        base_free(frame);
        base_free(wr);
        conn->broken = true;
        return rv;
    }
    conn->refs++;
    return 0;
}

static void reply_status(struct rpc_req *req, int st, const void *tail, size_t tail_len)
{
    struct base_buf b;
    base_buf_init(&b);
    base_buf_put_u32(&b, rpc_status_enc(st));
    if (tail_len)
        base_buf_append(&b, tail, tail_len);
    rpc_reply(req, &b);
    base_buf_free(&b);
}

/* Whether the peer may make this request: 0, else BASE_EACL (logged, rate-limited). */
static int may(struct rpc *r, const struct rpc_method *m, const struct rpc_peer *p)
{
    if (m->access == RPC_ANYONE || rpc__is_member(r, p) || (m->allow && m->allow(m->data, p)))
        return 0;
    rpc_refuse_log(r, &p->sa, m->refused ? m->refused : "request from a non-member address");
    return BASE_EACL;
}

/* A peer that is no member but whom the frame's method allows (its allow hook: client agents
 * forwarding writes) may send frames up to RPC_FRAME_MAX of that method. */
static bool allowed_large(struct rpc *r, const struct rpc__conn *conn)
{
    uint8_t type = conn->hdr[4];
    if (type & RPC_REPLY)
        return false;
    const struct rpc__method *rm = &r->methods[type];
    return rm->set && rm->m.allow && rm->m.allow(rm->m.data, &conn->from);
}

static void serve(struct rpc__conn *conn, uint8_t type, uint64_t id, const uint8_t *body,
                  size_t len)
{
    struct rpc *r = conn->r;
    struct rpc__method *rm = &r->methods[type];
    if (rm->gone && !rm->set) {
        /* its service stopped: the caller learns what a stopped server would tell it */
        conn_close(conn, 0, "request for a stopped service");
        return;
    }
    struct rpc_req *req = base_malloc(sizeof *req);
    req->conn = conn;
    req->id = id;
    req->type = type;
    conn->refs++;
    if (!rm->set) {
        reply_status(req, BASE_EINVAL, NULL, 0);
        return;
    }
    int st = may(r, &rm->m, &conn->from);
    if (st != 0) {
        reply_status(req, st, rm->m.refusal, rm->m.refusal_len);
        return;
    }
    rm->m.serve(rm->m.data, req, body, len);
}

static void dispatch(struct rpc__conn *conn, const uint8_t *body, size_t len)
{
    uint8_t type = conn->hdr[4];
    uint64_t id = base_le64(conn->hdr + 8);
    if (!conn->peer) {
        if (type & RPC_REPLY) {
            conn_close(conn, 0, "response on a request connection");
            return;
        }
        serve(conn, type, id, body, len);
        return;
    }
    if (!(type & RPC_REPLY)) {
        conn_close(conn, 0, "request on a response connection");
        return;
    }
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &conn->peer->sent)
    {
        struct rpc__call *call = call_of(pos);
        if (call->id == id) {
            base_list_remove(&call->node);
            call_end(call, 0, body, len);
            return;
        }
    }
    /* timed out already */
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct rpc__conn *conn = h->data;
    BASE_UNUSED(suggested);
    if (conn->in_body) {
        /* the body grows as its bytes arrive: a declared size costs nothing until sent */
        if (conn->got == conn->body_cap) {
            size_t cap = conn->body_cap * 2;
            if (cap > conn->body_len)
                cap = conn->body_len;
            conn->body = base_realloc(conn->body, cap);
            conn->body_cap = cap;
        }
        buf->base = (char *)conn->body + conn->got;
        buf->len = conn->body_cap - conn->got;
    } else {
        buf->base = (char *)conn->hdr + conn->got;
        buf->len = RPC_HEADER - conn->got;
    }
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct rpc__conn *conn = s->data;
    BASE_UNUSED(buf);
    if (nread == 0 || conn->closing)
        return;
    if (nread < 0) {
        conn_close(conn, (int)nread, nread == UV_EOF ? "closed by peer" : uv_strerror((int)nread));
        return;
    }
    conn->got += (size_t)nread;
    if (!conn->in_body) {
        if (conn->got < RPC_HEADER)
            return;
        uint32_t len = base_le32(conn->hdr);
        if (len < RPC_HEADER - 4 || len - (RPC_HEADER - 4) > RPC_FRAME_MAX || conn->hdr[5] ||
            conn->hdr[6] || conn->hdr[7]) {
            conn_close(conn, UV_EPROTO, "bad frame header");
            return;
        }
        conn->got = 0;
        conn->body_len = len - (RPC_HEADER - 4);
        if (conn->incoming && conn->body_len > RPC_SMALL_FRAME &&
            !rpc__is_member(conn->r, &conn->from) && !allowed_large(conn->r, conn)) {
            rpc_refuse_log(conn->r, &conn->from.sa, "large frame from a non-member address");
            conn_close(conn, UV_EPROTO, "large frame from a non-member");
            return;
        }
        if (conn->body_len > 0) {
            conn->body_cap = conn->body_len < BODY_STEP ? conn->body_len : BODY_STEP;
            conn->body = base_malloc(conn->body_cap);
            conn->in_body = true;
            return;
        }
    } else if (conn->got < conn->body_len) {
        return;
    }
    /* a whole frame */
    uint8_t *body = conn->body;
    size_t body_len = conn->body_len;
    conn->body = NULL;
    conn->body_len = conn->body_cap = 0;
    conn->in_body = false;
    conn->got = 0;
    conn->active_at = uv_now(conn->r->loop);
    conn->refs++; /* a handler may close it */
    dispatch(conn, body, body_len);
    base_free(body);
    conn_unref(conn);
}

static struct rpc__conn *conn_new(struct rpc *r, uv_tcp_t *tcp)
{
    struct rpc__conn *conn = base_calloc(1, sizeof *conn);
    conn->r = r;
    conn->tcp = tcp;
    conn->refs = 1;
    conn->active_at = uv_now(r->loop);
    base_list_init(&conn->node);
    tcp->data = conn;
    r->pending++;
    return conn;
}

const struct rpc_peer *rpc_req_peer(const struct rpc_req *req)
{
    return &req->conn->from;
}

size_t rpc_req_backlog(const struct rpc_req *req)
{
    const struct rpc__conn *conn = req->conn;
    return conn->closing || !conn->tcp ? 0 : conn->tcp->write_queue_size;
}

void rpc_req_drop(struct rpc_req *req, const char *why)
{
    struct rpc__conn *conn = req->conn;
    rpc_refuse_log(conn->r, &conn->from.sa, why);
    conn_close(conn, 0, why); /* its unsent replies go with it; later ones are dropped */
    base_free(req);
    conn_unref(conn);
}

void rpc__accept(struct rpc *r, uv_tcp_t *tcp, const struct rpc_peer *peer)
{
    struct rpc__conn *conn = conn_new(r, tcp);
    conn->from = *peer;
    r->n_in++;
    conn->stranger = !rpc__is_member(r, peer);
    r->n_strangers += conn->stranger;
    conn->incoming = true;
    base_list_insert_head(&r->conns, &conn->node);
    if (r->stopping) {
        conn_close(conn, 0, "stopping");
        return;
    }
    if (r->n_in > RPC_IN_MAX || r->n_strangers > STRANGERS_MAX) {
        /* strangers have their own share, so they can never take a member's place */
        rpc_refuse_log(r, &peer->sa,
                       conn->stranger ? "too many RPC connections from non-members"
                                      : "too many RPC connections");
        conn_close(conn, 0, "too many connections");
        return;
    }
    int rv = uv_read_start((uv_stream_t *)tcp, conn_alloc, conn_read);
    if (rv != 0)
        conn_close(conn, rv, uv_strerror(rv));
}

void rpc_reply(struct rpc_req *req, const struct base_buf *body)
{
    struct rpc__conn *conn = req->conn;
    if (!conn->closing) {
        size_t len;
        uint8_t *f = frame_new((uint8_t)(req->type | RPC_REPLY), req->id, body ? body->data : NULL,
                               body ? body->len : 0, &len);
        conn_write(conn, f, len);
    }
    base_free(req);
    conn_unref(conn);
}

/* ---- methods --------------------------------------------------------------------------- */

void rpc_handle(struct rpc *r, const struct rpc_method *m)
{
    BASE_ASSERT_LOOP();
    assert(m->type >= 1 && m->type <= RPC_TYPE_MAX && m->serve);
    struct rpc__method *rm = &r->methods[m->type];
    assert(!rm->set); /* one owner per type */
    rm->m = *m;
    rm->m.refusal = NULL;
    if (m->refusal_len) {
        void *copy = base_malloc(m->refusal_len);
        memcpy(copy, m->refusal, m->refusal_len);
        rm->m.refusal = copy;
    }
    rm->set = true;
    rm->gone = false;
}

void rpc_unhandle(struct rpc *r, uint8_t type)
{
    assert(type >= 1 && type <= RPC_TYPE_MAX);
    struct rpc__method *rm = &r->methods[type];
    if (!rm->set)
        return;
    base_free((void *)rm->m.refusal);
    memset(&rm->m, 0, sizeof rm->m);
    rm->set = false;
    rm->gone = true;
}

void rpc__methods_free(struct rpc *r)
{
    for (unsigned t = 1; t <= RPC_TYPE_MAX; t++)
        rpc_unhandle(r, (uint8_t)t);
}

/* ---- clients and their peers ----------------------------------------------------------- */

static void client_maybe_free(struct rpc_client *cl);

static void peer_drop(struct rpc__peer *p);

/* Ends a hold (cl->held++: a walk of its peers, or callbacks that may close it): frees what a
 * close meanwhile left to free. */
static void client_release(struct rpc_client *cl)
{
    assert(cl->held > 0);
    if (--cl->held > 0 || !cl->closing)
        return;
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &cl->peers)
    {
        peer_drop(peer_of(pos));
    }
    client_maybe_free(cl);
}

static void client_maybe_free(struct rpc_client *cl)
{
    if (!cl->closing || cl->held || !base_list_empty(&cl->peers))
        return;
    struct rpc *r = cl->r;
    base_free(cl);
    rpc__unpend(r);
}

/* Frees p once its client is closing and nothing of p is left (never frees the client). */
static void peer_drop(struct rpc__peer *p)
{
    struct rpc_client *cl = p->cl;
    if (!cl->closing || cl->held || p->conn || p->dial)
        return;
    assert(base_list_empty(&p->queued) && base_list_empty(&p->sent));
    base_list_remove(&p->node);
    struct rpc *r = cl->r;
    base_free(p->address);
    base_free(p);
    rpc__unpend(r);
}

static void peer_maybe_free(struct rpc__peer *p)
{
    struct rpc_client *cl = p->cl;
    peer_drop(p);
    client_maybe_free(cl); /* after its last peer */
}

/* Writes what is queued (connected), or dials (not in backoff). Never calls back. */
static void peer_kick(struct rpc__peer *p);

static void stray_closed(uv_handle_t *h)
{
    struct rpc *r = h->data;
    base_free(h);
    rpc__unpend(r);
}

static void dial_cb(void *data, uv_tcp_t *tcp, int status)
{
    struct rpc__peer *p = data;
    struct rpc_client *cl = p->cl;
    struct rpc *r = cl->r;
    p->dial = NULL;
    if (cl->closing) {
        if (tcp) {
            tcp->data = r;
            r->pending++;
            uv_close((uv_handle_t *)tcp, stray_closed);
        }
        peer_maybe_free(p);
        return;
    }
    if (status != 0) {
        p->failures++;
        unsigned delay = rpc__backoff_ms(&cl->link, p->failures);
        p->retry_at = uv_now(r->loop) + delay;
        LOG_DEBUG("rpc", "connect to %s: %s (retry in %u ms)", p->address, uv_strerror(status),
                  delay);
        calls_fail(&p->queued, RPC_UNSENT);
        return;
    }
    p->failures = 0;
    struct rpc__conn *conn = conn_new(r, tcp);
    conn->peer = p;
    p->conn = conn;
    int rv = uv_read_start((uv_stream_t *)tcp, conn_alloc, conn_read);
    if (rv != 0) {
        conn_close(conn, rv, uv_strerror(rv));
        return;
    }
    peer_kick(p);
}

static void peer_kick(struct rpc__peer *p)
{
    struct rpc_client *cl = p->cl;
    if (p->conn) {
        if (p->conn->broken)
            return;
        struct base_list *n;
        while ((n = base_list_first(&p->queued))) {
            struct rpc__call *call = call_of(n);
            if (conn_write(p->conn, call->frame, call->frame_len) != 0) {
                call->frame = NULL; /* conn_write freed it; the call stays unsent */
                return;
            }
            call->frame = NULL;
            call_move(&p->sent, call);
        }
        return;
    }
    if (!p->dial && !base_list_empty(&p->queued) && uv_now(cl->r->loop) >= p->retry_at)
        p->dial = rpc__dial_rpc(cl->r, p->address, &cl->link, dial_cb, p);
}

static struct rpc__peer *peer_get(struct rpc_client *cl, const char *address)
{
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &cl->peers)
    {
        if (strcmp(peer_of(pos)->address, address) == 0)
            return peer_of(pos);
    }
    struct rpc__peer *p = base_calloc(1, sizeof *p);
    p->cl = cl;
    p->address = base_strdup(address);
    base_list_init(&p->queued);
    base_list_init(&p->sent);
    base_list_insert_head(&cl->peers, &p->node);
    cl->r->pending++;
    return p;
}

struct rpc_client *rpc_client_new(struct rpc *r, const struct rpc_client_config *cfg)
{
    BASE_ASSERT_LOOP();
    assert(!r->stopping);
    struct rpc_client *cl = base_calloc(1, sizeof *cl);
    cl->r = r;
    cl->link = rpc__link(cfg ? &cfg->link : NULL, CALL_BACKOFF_MAX_MS);
    if (cfg) {
        cl->on_closed = cfg->on_closed;
        cl->data = cfg->data;
    }
    base_list_init(&cl->peers);
    base_list_insert_head(&r->clients, &cl->node);
    r->pending++; /* until freed */
    return cl;
}

void rpc_call(struct rpc_client *cl, const char *address, uint8_t type, const struct base_buf *body,
              unsigned timeout_ms, rpc_call_cb cb, void *data)
{
    BASE_ASSERT_LOOP();
    assert(!cl->closing);
    struct rpc *r = cl->r;
    struct rpc__peer *p = peer_get(cl, address);
    struct rpc__call *call = base_calloc(1, sizeof *call);
    call->id = ++r->next_id;
    uv_update_time(r->loop); /* the cached loop time may be a whole callback chain old */
    call->deadline = uv_now(r->loop) + timeout_ms;
    call->cb = cb;
    call->data = data;
    call->frame =
        frame_new(type, call->id, body ? body->data : NULL, body ? body->len : 0, &call->frame_len);
    base_list_insert_tail(&p->queued, &call->node);
    peer_kick(p);
}

void rpc_client_close(struct rpc_client *cl)
{
    BASE_ASSERT_LOOP();
    assert(!cl->closing);
    struct rpc *r = cl->r;
    cl->closing = true;
    base_list_remove(&cl->node);
    /* the client's memory stays (closing) until its last peer is freed */
    cl->held++;
    r->pending++;
    /* held: no peer is freed meanwhile, and none is added (the client is closing) */
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &cl->peers)
    {
        struct rpc__peer *p = peer_of(pos);
        calls_fail(&p->sent, RPC_LOST);
        calls_fail(&p->queued, BASE_ESHUTDOWN);
        if (p->dial)
            rpc_dial_cancel(p->dial);
        if (p->conn)
            conn_close(p->conn, 0, "client closed");
        else
            peer_maybe_free(p);
    }
    client_release(cl);
    rpc__unpend(r);
}

/* ---- the tick -------------------------------------------------------------------------- */

static void client_tick(struct rpc_client *cl, uint64_t now)
{
    struct rpc *r = cl->r;
    struct base_list expired, unsent, *pos, *tmp;
    base_list_init(&expired);
    base_list_init(&unsent);
    cl->held++; /* a call's callback may close the client: no peer is freed meanwhile */
    BASE_LIST_FOREACH_SAFE(pos, tmp, &cl->peers)
    {
        struct rpc__peer *p = peer_of(pos);
        if (p->conn && p->conn->broken)
            conn_close(p->conn, UV_EPIPE, "write failed");
        /* close our idle connections well before the peer's idle timeout would: a request
         * written as the peer closes would be lost (its outcome unknown) */
        if (p->conn && !p->conn->closing && base_list_empty(&p->sent) &&
            base_list_empty(&p->queued) && p->conn->refs == 1 &&
            now - p->conn->active_at >= r->idle_ms / 2)
            conn_close(p->conn, 0, "idle");
        struct base_list *c, *ctmp;
        BASE_LIST_FOREACH_SAFE(c, ctmp, &p->sent)
        {
            if (now >= call_of(c)->deadline)
                call_move(&expired, call_of(c));
        }
        BASE_LIST_FOREACH_SAFE(c, ctmp, &p->queued)
        {
            if (now >= call_of(c)->deadline || (!p->conn && !p->dial && now < p->retry_at))
                call_move(&unsent, call_of(c)); /* too late, or the peer is backing off */
        }
        if (!p->conn && !p->dial && !base_list_empty(&p->queued))
            peer_kick(p);
    }
    calls_fail(&expired, -ETIMEDOUT);
    calls_fail(&unsent, RPC_UNSENT);
    client_release(cl);
}

void rpc__call_tick(struct rpc *r)
{
    if (r->stopping)
        return;
    uint64_t now = uv_now(r->loop);
    /* a callback may close any client (and so unlink and free it) or open one: the clients
     * are moved aside and each is put back before its tick; one opened meanwhile goes to the
     * front as always and is not ticked. The rpc is not stopping: nothing frees it under us. */
    struct base_list todo, *n;
    base_list_init(&todo);
    base_list_splice_tail(&todo, &r->clients);
    while ((n = base_list_first(&todo))) {
        base_list_remove(n);
        base_list_insert_tail(&r->clients, n);
        client_tick(BASE_CONTAINER_OF(n, struct rpc_client, node), now);
    }
    /* closing an incoming connection calls nothing back: it leaves the list once closed */
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &r->conns)
    {
        struct rpc__conn *conn = conn_of(pos);
        if (conn->broken)
            conn_close(conn, UV_EPIPE, "write failed");
        else if (!conn->closing && conn->refs == 1 && now - conn->active_at >= r->idle_ms)
            conn_close(conn, 0, "idle"); /* no frame for idle_timeout, nothing being served */
    }
}

void rpc__call_stop(struct rpc *r)
{
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &r->conns)
    {
        if (!conn_of(pos)->closing)
            conn_close(conn_of(pos), 0, "stopping");
    }
}
