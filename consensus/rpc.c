/* Server RPC: requests and responses between servers, on the server port beside Raft.
 *
 * Connections. A server keeps one outgoing connection per peer address (a "peer"), made on
 * demand by the dialer (transport.c runs the handshake) and kept open while used; it carries
 * this server's requests and their responses. Requests from others arrive on their own
 * connections (accepted by the transport after their preamble), so each direction is a plain
 * client/server exchange. A failed connect backs the peer off exponentially (50 ms doubling
 * to 2 s, reset by a successful connect); requests made meanwhile fail at the next tick as
 * unsent, so that callers can retry elsewhere (a new leader) rather than wait for a dead one.
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
 * Who may ask what. The transport authenticated the connection (the cluster key) or at least
 * knows its source address (transport.c); serve() asks cons__peer_may before any handler sees
 * a request, and answers a refusal with BASE_EACL in the shape the caller reads.
 *
 * Bounds. Incoming connections count against their source IP with the handshakes
 * (limits.rpc_max_conns_per_client, default 100) and at most 1024 at once, of which 256 from
 * peers not tied to a member (so those never take a member's place); one with no whole
 * frame for limits.rpc_idle_timeout (default 60 s) while nothing is being served on it is
 * closed. Our own outgoing connections close themselves after half that idle time, so that
 * a request is never written into a connection the peer is closing as idle (its outcome
 * would be unknown).
 *
 * Outcomes. A call's callback runs exactly once, later: 0 with the response body; unsent
 * (CONS_RPC_UNSENT: never written, so retrying is safe even for a write); lost
 * (CONS_RPC_LOST: written, connection gone) or -ETIMEDOUT (written, no response within the
 * call's own timeout): the request may have been executed; BASE_ESHUTDOWN when stopping
 * before it was written. Responses that come after a timeout are dropped by id.
 *
 * Serving. A request is handed to its handler with a cons_rpc_req that the handler answers
 * once, later if it must (a forwarded write answers after its commit). The connection stays
 * allocated while requests on it are being served (reference count), so an answer after the
 * peer left is simply dropped. Everything is freed before cons_stop's done: each peer and
 * each connection counts in c->pending until freed. */
#include "internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define RPC_IN_MAX     1024        /* incoming RPC connections at once */
#define STRANGERS_MAX  256         /* of which from peers not tied to a member */
#define STRANGER_FRAME (64u << 10) /* frames from peers not tied to a member (HELLO, JOIN) */
#define BODY_STEP      (64u << 10) /* a body's first buffer; it doubles as the bytes arrive */

struct cons_rpc_call {
    struct cons_rpc_call *prev, *next;
    struct cons_rpc_peer *peer;
    uint64_t id;
    uint64_t deadline;
    bool sent;
    uint8_t *frame; /* until written */
    size_t frame_len;
    cons_rpc_cb cb;
    void *data;
};

struct call_list {
    struct cons_rpc_call *head, *tail;
};

struct cons_rpc_peer {
    struct cons_rpc_peer *next;
    struct cons *c;
    char *address;
    struct cons_rpc_conn *conn; /* connected */
    struct cons_dial *dial;     /* connecting */
    unsigned failures;
    uint64_t retry_at;
    struct call_list queued; /* not yet written */
    struct call_list sent;   /* written, waiting for the response */
};

struct cons_rpc_conn {
    struct cons_rpc_conn *prev, *next; /* c->rpc.conns (incoming only) */
    struct cons *c;
    uv_tcp_t *tcp;              /* raft_malloc'd, raft_free'd once closed */
    struct cons_rpc_peer *peer; /* outgoing: its peer (NULL once closing) */
    uint8_t hdr[CONS_RPC_HEADER];
    size_t got;
    uint8_t *body;
    size_t body_len; /* declared */
    size_t body_cap; /* allocated so far: grows as the bytes arrive */
    bool in_body;
    struct cons_peer from; /* incoming: who connected */
    uint64_t active_at;    /* last frame read or written (idle timeout) */
    bool incoming;         /* in c->rpc.conns */
    bool stranger;         /* incoming, not tied to a member when accepted */
    bool closing;
    bool broken; /* a write failed synchronously: closed at the next tick */
    int refs;    /* 1 while open, +1 per request being served or dispatched */
};

struct cons_rpc_req {
    struct cons_rpc_conn *conn;
    uint64_t id;
    uint8_t type;
};

struct wreq {
    uv_write_t w;
    struct cons_rpc_conn *conn;
    uint8_t *buf;
};

/* ---- lists and frames ------------------------------------------------------------------ */

static void list_push(struct call_list *l, struct cons_rpc_call *call)
{
    call->next = NULL;
    call->prev = l->tail;
    if (l->tail)
        l->tail->next = call;
    else
        l->head = call;
    l->tail = call;
}

static void list_remove(struct call_list *l, struct cons_rpc_call *call)
{
    if (call->prev)
        call->prev->next = call->next;
    else
        l->head = call->next;
    if (call->next)
        call->next->prev = call->prev;
    else
        l->tail = call->prev;
    call->prev = call->next = NULL;
}

static uint8_t *frame_new(uint8_t type, uint64_t id, const void *body, size_t len, size_t *out)
{
    assert(len <= CONS_RPC_FRAME_MAX - (CONS_RPC_HEADER - 4));
    uint8_t *f = base_malloc(CONS_RPC_HEADER + len);
    base_put_le32(f, (uint32_t)(CONS_RPC_HEADER - 4 + len));
    f[4] = type;
    f[5] = f[6] = f[7] = 0;
    base_put_le64(f + 8, id);
    if (len)
        memcpy(f + CONS_RPC_HEADER, body, len);
    *out = CONS_RPC_HEADER + len;
    return f;
}

static unsigned backoff_ms(unsigned failures)
{
    unsigned d = BACKOFF_MIN_MS;
    for (unsigned i = 1; i < failures && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    return d < BACKOFF_MAX_MS ? d : BACKOFF_MAX_MS;
}

/* ---- calls ----------------------------------------------------------------------------- */

static void call_end(struct cons_rpc_call *call, int status, const uint8_t *body, size_t len)
{
    cons_rpc_cb cb = call->cb;
    void *data = call->data;
    base_free(call->frame);
    base_free(call);
    cb(data, status, body, len);
}

static void calls_fail(struct call_list *l, int status)
{
    /* detached first: callbacks may make new calls, to this peer too */
    struct call_list all = *l;
    l->head = l->tail = NULL;
    while (all.head) {
        struct cons_rpc_call *call = all.head;
        list_remove(&all, call);
        call_end(call, status, NULL, 0);
    }
}

/* ---- connections ----------------------------------------------------------------------- */

static void conn_unref(struct cons_rpc_conn *conn)
{
    assert(conn->refs > 0);
    if (--conn->refs > 0)
        return;
    struct cons *c = conn->c;
    if (conn->incoming) {
        if (conn->prev)
            conn->prev->next = conn->next;
        else
            c->rpc.conns = conn->next;
        if (conn->next)
            conn->next->prev = conn->prev;
        cons__peer_release(c, &conn->from.sa);
        c->n_rpc_in--;
        if (conn->stranger)
            c->rpc.n_strangers--;
    }
    base_free(conn->body);
    base_free(conn);
    cons__unpend(c);
}

static void conn_closed(uv_handle_t *h)
{
    struct cons_rpc_conn *conn = h->data;
    raft_free(h);
    conn_unref(conn);
}

static void peer_maybe_free(struct cons_rpc_peer *p);

static void conn_close(struct cons_rpc_conn *conn, const char *why)
{
    if (conn->closing)
        return;
    conn->closing = true;
    LOG_DEBUG("consensus", "rpc: closing a connection%s%s: %s", conn->peer ? " to " : "",
              conn->peer ? conn->peer->address : "", why);
    uv_close((uv_handle_t *)conn->tcp, conn_closed);
    struct cons_rpc_peer *p = conn->peer;
    if (p) {
        /* an outgoing connection: its calls in flight may have been executed */
        struct call_list sent = p->sent, queued = p->queued;
        conn->peer = NULL;
        p->conn = NULL;
        p->sent.head = p->sent.tail = p->queued.head = p->queued.tail = NULL;
        calls_fail(&sent, CONS_RPC_LOST);
        calls_fail(&queued, p->c->rpc.stopping ? BASE_ESHUTDOWN : CONS_RPC_UNSENT);
        peer_maybe_free(p);
    }
}

static void write_cb(uv_write_t *w, int status)
{
    struct wreq *wr = w->data;
    struct cons_rpc_conn *conn = wr->conn;
    base_free(wr->buf);
    base_free(wr);
    conn->active_at = uv_now(conn->c->loop);
    if (status != 0)
        conn_close(conn, uv_strerror(status));
    conn_unref(conn);
}

/* Takes frame. Returns non-zero when it could not even be queued (nothing was written). */
static int conn_write(struct cons_rpc_conn *conn, uint8_t *frame, size_t len)
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

static void serve(struct cons_rpc_conn *conn, uint8_t type, uint64_t id, const uint8_t *body,
                  size_t len)
{
    struct cons *c = conn->c;
    struct cons_rpc_req *req = base_malloc(sizeof *req);
    req->conn = conn;
    req->id = id;
    req->type = type;
    conn->refs++;
    int st = type >= CONS_RPC_HELLO && type <= CONS_RPC_REMOVE
                 ? cons__peer_may(c, &conn->from, type)
                 : 0;
    if (st != 0) {
        /* the shape every caller reads: status, then an empty message / count / index */
        struct base_buf b;
        base_buf_init(&b);
        base_buf_put_u32(&b, cons__status_enc(st));
        if (type == CONS_RPC_JOIN || type == CONS_RPC_REMOVE)
            base_buf_put_str(&b, "refused: not authorized on the server port");
        else if (type == CONS_RPC_FORWARD)
            base_buf_put_u32(&b, 0);
        else if (type == CONS_RPC_READ_INDEX)
            base_buf_put_u64(&b, 0);
        cons__rpc_reply(req, &b);
        base_buf_free(&b);
        return;
    }
    switch (type) {
    case CONS_RPC_HELLO:
        cons__hello_serve(c, req, body, len);
        break;
    case CONS_RPC_FORWARD:
        cons__forward_serve(c, req, body, len);
        break;
    case CONS_RPC_READ_INDEX:
        cons__read_serve(c, req, body, len);
        break;
    case CONS_RPC_JOIN:
        cons__join_serve(c, req, body, len);
        break;
    case CONS_RPC_REMOVE:
        cons__remove_serve(c, req, body, len);
        break;
    default: {
        struct base_buf b;
        base_buf_init(&b);
        base_buf_put_u32(&b, cons__status_enc(BASE_EINVAL));
        cons__rpc_reply(req, &b);
        base_buf_free(&b);
        break;
    }
    }
}

static void dispatch(struct cons_rpc_conn *conn, const uint8_t *body, size_t len)
{
    uint8_t type = conn->hdr[4];
    uint64_t id = base_le64(conn->hdr + 8);
    if (!conn->peer) {
        if (type & CONS_RPC_REPLY) {
            conn_close(conn, "response on a request connection");
            return;
        }
        serve(conn, type, id, body, len);
        return;
    }
    if (!(type & CONS_RPC_REPLY)) {
        conn_close(conn, "request on a response connection");
        return;
    }
    struct cons_rpc_peer *p = conn->peer;
    for (struct cons_rpc_call *call = p->sent.head; call; call = call->next) {
        if (call->id == id) {
            list_remove(&p->sent, call);
            call_end(call, 0, body, len);
            return;
        }
    }
    /* timed out already */
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct cons_rpc_conn *conn = h->data;
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
        buf->len = CONS_RPC_HEADER - conn->got;
    }
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct cons_rpc_conn *conn = s->data;
    BASE_UNUSED(buf);
    if (nread == 0 || conn->closing)
        return;
    if (nread < 0) {
        conn_close(conn, nread == UV_EOF ? "closed by peer" : uv_strerror((int)nread));
        return;
    }
    conn->got += (size_t)nread;
    if (!conn->in_body) {
        if (conn->got < CONS_RPC_HEADER)
            return;
        uint32_t len = base_le32(conn->hdr);
        if (len < CONS_RPC_HEADER - 4 || len - (CONS_RPC_HEADER - 4) > CONS_RPC_FRAME_MAX ||
            conn->hdr[5] || conn->hdr[6] || conn->hdr[7]) {
            conn_close(conn, "bad frame header");
            return;
        }
        conn->got = 0;
        conn->body_len = len - (CONS_RPC_HEADER - 4);
        if (conn->incoming && conn->body_len > STRANGER_FRAME &&
            !cons__peer_is_member(conn->c, &conn->from)) {
            cons__refuse_log(conn->c, &conn->from.sa, "large frame from a non-member address");
            conn_close(conn, "large frame from a non-member");
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
    conn->active_at = uv_now(conn->c->loop);
    conn->refs++; /* a handler may close it */
    dispatch(conn, body, body_len);
    base_free(body);
    conn_unref(conn);
}

static struct cons_rpc_conn *conn_new(struct cons *c, uv_tcp_t *tcp)
{
    struct cons_rpc_conn *conn = base_calloc(1, sizeof *conn);
    conn->c = c;
    conn->tcp = tcp;
    conn->refs = 1;
    conn->active_at = uv_now(c->loop);
    tcp->data = conn;
    c->pending++;
    return conn;
}

const struct cons_peer *cons__rpc_req_peer(const struct cons_rpc_req *req)
{
    return &req->conn->from;
}

void cons__rpc_accept(struct cons *c, uv_tcp_t *tcp, const struct cons_peer *peer)
{
    struct cons_rpc_conn *conn = conn_new(c, tcp);
    conn->from = *peer;
    c->n_rpc_in++;
    conn->stranger = !cons__peer_is_member(c, peer);
    c->rpc.n_strangers += conn->stranger;
    conn->incoming = true;
    conn->next = c->rpc.conns;
    if (c->rpc.conns)
        c->rpc.conns->prev = conn;
    c->rpc.conns = conn;
    if (c->rpc.stopping) {
        conn_close(conn, "stopping");
        return;
    }
    if (c->n_rpc_in > RPC_IN_MAX || c->rpc.n_strangers > STRANGERS_MAX) {
        /* strangers have their own share, so they can never take a member's place */
        cons__refuse_log(c, &peer->sa,
                         conn->stranger ? "too many RPC connections from non-members"
                                        : "too many RPC connections");
        conn_close(conn, "too many connections");
        return;
    }
    int rv = uv_read_start((uv_stream_t *)tcp, conn_alloc, conn_read);
    if (rv != 0)
        conn_close(conn, uv_strerror(rv));
}

void cons__rpc_reply(struct cons_rpc_req *req, const struct base_buf *body)
{
    struct cons_rpc_conn *conn = req->conn;
    if (!conn->closing) {
        size_t len;
        uint8_t *f =
            frame_new((uint8_t)(req->type | CONS_RPC_REPLY), req->id, body->data, body->len, &len);
        conn_write(conn, f, len);
    }
    base_free(req);
    conn_unref(conn);
}

/* ---- peers ----------------------------------------------------------------------------- */

static void peer_maybe_free(struct cons_rpc_peer *p)
{
    struct cons *c = p->c;
    if (!c->rpc.stopping || p->conn || p->dial)
        return;
    assert(!p->queued.head && !p->sent.head);
    struct cons_rpc_peer **pp = &c->rpc.peers;
    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
    base_free(p->address);
    base_free(p);
    cons__unpend(c);
}

/* Writes what is queued (connected), or dials (not in backoff). Never calls back. */
static void peer_kick(struct cons_rpc_peer *p);

static void stray_closed(uv_handle_t *h)
{
    struct cons *c = h->data;
    raft_free(h);
    cons__unpend(c);
}

static void dial_cb(void *data, uv_tcp_t *tcp, int status)
{
    struct cons_rpc_peer *p = data;
    struct cons *c = p->c;
    p->dial = NULL;
    if (c->rpc.stopping) {
        if (tcp) {
            tcp->data = c;
            c->pending++;
            uv_close((uv_handle_t *)tcp, stray_closed);
        }
        peer_maybe_free(p);
        return;
    }
    if (status != 0) {
        p->failures++;
        p->retry_at = uv_now(c->loop) + backoff_ms(p->failures);
        LOG_DEBUG("consensus", "rpc: connect to %s: %s (retry in %u ms)", p->address,
                  uv_strerror(status), backoff_ms(p->failures));
        calls_fail(&p->queued, CONS_RPC_UNSENT);
        return;
    }
    p->failures = 0;
    struct cons_rpc_conn *conn = conn_new(c, tcp);
    conn->peer = p;
    p->conn = conn;
    int rv = uv_read_start((uv_stream_t *)tcp, conn_alloc, conn_read);
    if (rv != 0) {
        conn_close(conn, uv_strerror(rv));
        return;
    }
    peer_kick(p);
}

static void peer_kick(struct cons_rpc_peer *p)
{
    struct cons *c = p->c;
    if (p->conn) {
        if (p->conn->broken)
            return;
        while (p->queued.head) {
            struct cons_rpc_call *call = p->queued.head;
            if (conn_write(p->conn, call->frame, call->frame_len) != 0) {
                call->frame = NULL; /* conn_write freed it; the call stays unsent */
                return;
            }
            call->frame = NULL;
            call->sent = true;
            list_remove(&p->queued, call);
            list_push(&p->sent, call);
        }
        return;
    }
    if (!p->dial && p->queued.head && uv_now(c->loop) >= p->retry_at)
        p->dial = cons__dial_rpc(c, p->address, dial_cb, p);
}

static struct cons_rpc_peer *peer_get(struct cons *c, const char *address)
{
    for (struct cons_rpc_peer *p = c->rpc.peers; p; p = p->next)
        if (strcmp(p->address, address) == 0)
            return p;
    struct cons_rpc_peer *p = base_calloc(1, sizeof *p);
    p->c = c;
    p->address = base_strdup(address);
    p->next = c->rpc.peers;
    c->rpc.peers = p;
    c->pending++;
    return p;
}

void cons__rpc_call(struct cons *c, const char *address, uint8_t type, const struct base_buf *body,
                    unsigned timeout_ms, cons_rpc_cb cb, void *data)
{
    BASE_ASSERT_LOOP();
    assert(!c->rpc.stopping);
    struct cons_rpc_peer *p = peer_get(c, address);
    struct cons_rpc_call *call = base_calloc(1, sizeof *call);
    call->peer = p;
    call->id = ++c->rpc.next_id;
    uv_update_time(c->loop); /* the cached loop time may be a whole callback chain old */
    call->deadline = uv_now(c->loop) + timeout_ms;
    call->cb = cb;
    call->data = data;
    call->frame =
        frame_new(type, call->id, body ? body->data : NULL, body ? body->len : 0, &call->frame_len);
    list_push(&p->queued, call);
    peer_kick(p);
}

void cons__rpc_tick(struct cons *c)
{
    if (c->rpc.stopping)
        return;
    uint64_t now = uv_now(c->loop);
    struct call_list expired = {NULL, NULL}, unsent = {NULL, NULL};
    for (struct cons_rpc_peer *p = c->rpc.peers; p; p = p->next) {
        if (p->conn && p->conn->broken)
            conn_close(p->conn, "write failed");
        /* close our idle connections well before the peer's idle timeout would: a request
         * written as the peer closes would be lost (its outcome unknown) */
        if (p->conn && !p->conn->closing && !p->sent.head && !p->queued.head &&
            p->conn->refs == 1 && now - p->conn->active_at >= c->rpc_idle_ms / 2)
            conn_close(p->conn, "idle");
        struct cons_rpc_call *call, *next;
        for (call = p->sent.head; call; call = next) {
            next = call->next;
            if (now >= call->deadline) {
                list_remove(&p->sent, call);
                list_push(&expired, call);
            }
        }
        for (call = p->queued.head; call; call = next) {
            next = call->next;
            if (now >= call->deadline || (!p->conn && !p->dial && now < p->retry_at)) {
                /* too late, or the peer is backing off: let the caller go elsewhere */
                list_remove(&p->queued, call);
                list_push(&unsent, call);
            }
        }
        if (!p->conn && !p->dial && p->queued.head)
            peer_kick(p);
    }
    for (struct cons_rpc_conn *conn = c->rpc.conns, *next; conn; conn = next) {
        next = conn->next;
        if (conn->broken)
            conn_close(conn, "write failed");
        else if (!conn->closing && conn->refs == 1 && now - conn->active_at >= c->rpc_idle_ms)
            conn_close(conn, "idle"); /* no frame for rpc_idle_timeout, nothing being served */
    }
    calls_fail(&expired, -ETIMEDOUT);
    calls_fail(&unsent, CONS_RPC_UNSENT);
}

void cons__rpc_init(struct cons *c)
{
    memset(&c->rpc, 0, sizeof c->rpc);
}

void cons__rpc_stop(struct cons *c)
{
    c->rpc.stopping = true;
    for (struct cons_rpc_peer *p = c->rpc.peers, *next; p; p = next) {
        next = p->next;
        calls_fail(&p->sent, CONS_RPC_LOST);
        calls_fail(&p->queued, BASE_ESHUTDOWN);
        if (p->dial)
            cons__dial_cancel(p->dial);
        if (p->conn)
            conn_close(p->conn, "stopping"); /* may free p */
        else
            peer_maybe_free(p);
    }
    for (struct cons_rpc_conn *conn = c->rpc.conns; conn; conn = conn->next)
        if (!conn->closing)
            conn_close(conn, "stopping");
}
