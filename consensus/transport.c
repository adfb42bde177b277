/* The server port: our raft_uv_transport over libuv TCP, and the RPC connections beside it.
 *
 * One listener on the server port carries two protocols (DESIGN.md 2.6). Every connection
 * opens with an 8-byte preamble: "HRLDRAF2" for Raft, "HRLDRPC1" for server RPC (rpc.c). The
 * preamble and the Raft handshake after it (u64 sender id, u64 receiver id, u32 address
 * length, the sender's address) are read with an alloc callback that offers exactly the bytes still
 * missing, so not one byte of what follows is consumed here: libraft's reader (or rpc.c's) then
 * starts on the stream at its first own byte. A handshake is bounded in time (5 s), size (addresses
 * up to 255 bytes, no NUL) and number (128 at once); anything else closes the connection. Raft
 * streams go to the accept callback libraft gave to listen(); until it did (the server is still
 * forming, Raft not started) they are closed and the peer's raft_uv retries later.
 *
 * The receiver id. A Raft stream is meant for one server, not for whoever listens at the
 * address now: a server whose data dir was wiped comes back at the same address with a new
 * id, and must not take the messages (votes, appends, snapshots) meant for its former self,
 * which the leader still addresses there until it replaces that server (member.c). So the
 * dialer names the id it wants and the listener closes a stream for any other id.
 *
 * Ownership follows libraft's own TCP transport: a stream handed to libraft (accepted or
 * connected) is a uv_tcp_t allocated with raft_malloc, alone in its allocation, because
 * libraft closes it and frees it with raft_free. RPC streams are allocated the same way (the
 * preamble decides the kind only after the accept), and rpc.c frees them alike.
 *
 * Dialing. connect() and cons__dial_rpc() share one dialer: resolve (numeric addresses
 * directly, names through uv_getaddrinfo), TCP connect with TCP_NODELAY (without it small
 * appends wait ~40 ms for delayed ACKs) and keepalive, bounded by a 2 s connect timeout, then
 * write the preamble (and for Raft our id and address) before handing the stream over.
 * libraft retries a failed connect after its retry delay (set to 50 ms in cons.c); the dialer
 * adds an exponential backoff per Raft peer on top (50 ms doubling to 250 ms, reset by a
 * Raft connection from that peer, which also starts a dial still waiting out its delay: a
 * restarted server is reached as soon as it reaches us; or reset by a
 * successful connect), so a dead peer costs little and a restarted one is found again fast.
 * RPC connections keep their own backoff in rpc.c.
 *
 * Closing. libraft's io closes the transport inside raft_close: the listener closes, stalled
 * handshakes are aborted, pending dials are cancelled (libraft's connect callbacks get
 * RAFT_CANCELED, RPC dials UV_ECANCELED) and the close callback runs once the last of those
 * handles is closed; only then does cons.c free the transport (cons__transport_close). */
#include "internal.h"

#include <inttypes.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#define PREAMBLE_LEN         8
#define HANDSHAKE_TIMEOUT_MS 5000
#define HANDSHAKES_MAX       128
#define CONNECT_TIMEOUT_MS   2000
#define ADDRESS_MAX          255
#define RAFT_HEADER_LEN      20 /* sender id, receiver id, address length */
#define BACKOFF_MIN_MS       50
#define BACKOFF_MAX_MS       250
#define DEFAULT_SERVER_PORT  8300
#define LISTEN_BACKLOG       128
#define KEEPALIVE_S          30

static const uint8_t preamble_raft[PREAMBLE_LEN] = {'H', 'R', 'L', 'D', 'R', 'A', 'F', '2'};
static const uint8_t preamble_rpc[PREAMBLE_LEN] = {'H', 'R', 'L', 'D', 'R', 'P', 'C', '1'};

struct tp;

enum { IN_PREAMBLE, IN_RAFT_HEADER, IN_RAFT_ADDRESS };

/* An accepted connection whose handshake is being read. */
struct incoming {
    struct incoming *prev, *next;
    struct tp *tp;
    uv_tcp_t *tcp; /* raft_malloc'd */
    uint64_t started;
    int phase;
    size_t need, got;
    uint64_t id;
    uint8_t buf[ADDRESS_MAX + 1];
};

struct cons_dial {
    struct cons_dial *prev, *next;
    struct tp *tp;
    bool raft;
    struct raft_uv_connect *req; /* Raft: libraft's request */
    raft_id peer;                /* Raft: the peer's id (backoff) */
    cons_dial_cb cb;             /* RPC */
    void *data;
    char host[ADDRESS_MAX + 1];
    int port;
    struct sockaddr_storage sa;
    uv_tcp_t *tcp; /* raft_malloc'd; NULL before the connect and once handed over */
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    uv_getaddrinfo_t gai;
    uint8_t *hs;
    size_t hs_len;
    int status;   /* failure to report, set before the timer fires when known early */
    int pending;  /* close callbacks (and a running getaddrinfo) still to come */
    bool started; /* resolving or connecting: the timer now bounds the connect */
    bool resolving;
    bool finishing; /* failed, cancelled or handed over: callbacks only count down */
    bool delivered; /* the user's callback ran */
};

struct backoff {
    raft_id id;
    unsigned failures;
};

struct tp {
    struct cons *c;
    uv_loop_t *loop;
    raft_id id;
    char *address;
    uv_tcp_t *listener; /* NULL once closed */
    raft_uv_accept_cb accept_cb;
    struct incoming *incoming;
    unsigned n_incoming;
    struct cons_dial *dials;
    struct backoff *backoff;
    size_t n_backoff;
    unsigned closing_handles; /* listener and aborted handshakes being closed */
    bool closing;
    raft_uv_transport_close_cb close_cb;
    uint64_t warn_at;
    int listen_error; /* why tp_init failed (a libuv code), for cons_start */
};

/* ---- helpers --------------------------------------------------------------------------- */

/* A numeric "ip:port" / "[v6]:port" into sa. BASE_EPARSE when not numeric. */
static int numeric_addr(const char *host, int port, struct sockaddr_storage *sa)
{
    memset(sa, 0, sizeof *sa);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)sa) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa) == 0)
        return 0;
    return BASE_EPARSE;
}

static void free_raft_tcp(uv_handle_t *h)
{
    raft_free(h);
}

static void tp_maybe_closed(struct tp *tp)
{
    if (!tp->closing || !tp->close_cb || tp->listener || tp->incoming || tp->dials ||
        tp->closing_handles)
        return;
    raft_uv_transport_close_cb cb = tp->close_cb;
    tp->close_cb = NULL;
    cb(&tp->c->transport);
}

/* ---- incoming connections -------------------------------------------------------------- */

static void in_unlink(struct incoming *in)
{
    struct tp *tp = in->tp;
    if (in->prev)
        in->prev->next = in->next;
    else
        tp->incoming = in->next;
    if (in->next)
        in->next->prev = in->prev;
    tp->n_incoming--;
}

static void in_closed(uv_handle_t *h)
{
    struct incoming *in = h->data;
    struct tp *tp = in->tp;
    raft_free(in->tcp);
    base_free(in);
    tp->closing_handles--;
    tp_maybe_closed(tp);
}

static void in_abort(struct incoming *in, const char *why)
{
    LOG_DEBUG("consensus", "server port: closing a connection: %s", why);
    in_unlink(in);
    in->tp->closing_handles++;
    uv_close((uv_handle_t *)in->tcp, in_closed);
}

static void in_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct incoming *in = h->data;
    BASE_UNUSED(suggested);
    /* exactly the bytes of the current part: nothing of the next protocol is read here */
    buf->base = (char *)in->buf + in->got;
    buf->len = in->need - in->got;
}

static void dial_timer_cb(uv_timer_t *t);
static struct backoff *backoff_of(struct tp *tp, raft_id id);

/* A Raft connection from id: it is up, so our dials to it need not wait. */
static void peer_is_back(struct tp *tp, raft_id id)
{
    backoff_of(tp, id)->failures = 0;
    for (struct cons_dial *d = tp->dials; d; d = d->next)
        if (d->raft && d->peer == id && !d->started && !d->finishing && d->status == 0)
            uv_timer_start(&d->timer, dial_timer_cb, 0, 0);
}

/* The handshake is complete: the stream changes hands (its reads stopped, nothing buffered). */
static void in_hand_over(struct incoming *in, bool raft)
{
    struct tp *tp = in->tp;
    uv_tcp_t *tcp = in->tcp;
    uv_read_stop((uv_stream_t *)tcp);
    in_unlink(in);
    tcp->data = NULL;
    if (tp->closing || (raft && !tp->accept_cb)) {
        /* Raft not started yet (still forming): the peer's raft_uv connects again later */
        uv_close((uv_handle_t *)tcp, free_raft_tcp);
    } else if (raft) {
        peer_is_back(tp, in->id);
        in->buf[in->need] = '\0';
        LOG_DEBUG("consensus", "raft connection from id=%" PRIu64 " address=%s", in->id,
                  (char *)in->buf);
        /* not to libraft's reader (tp->accept_cb), which trusts the bytes: raft_stream.c
         * decodes and checks every message before libraft sees it */
        cons__wire_accept(tp->c, in->id, (char *)in->buf, tcp);
    } else {
        cons__rpc_accept(tp->c, tcp);
    }
    base_free(in);
}

static void in_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct incoming *in = s->data;
    BASE_UNUSED(buf);
    if (nread == 0)
        return;
    if (nread < 0) {
        in_abort(in, uv_strerror((int)nread));
        return;
    }
    in->got += (size_t)nread;
    assert(in->got <= in->need);
    if (in->got < in->need)
        return;
    switch (in->phase) {
    case IN_PREAMBLE:
        if (memcmp(in->buf, preamble_rpc, PREAMBLE_LEN) == 0) {
            in_hand_over(in, false);
        } else if (memcmp(in->buf, preamble_raft, PREAMBLE_LEN) == 0) {
            in->phase = IN_RAFT_HEADER;
            in->need = RAFT_HEADER_LEN;
            in->got = 0;
        } else {
            in_abort(in, "unknown preamble");
        }
        return;
    case IN_RAFT_HEADER: {
        uint32_t len = base_le32(in->buf + 16);
        uint64_t to = base_le64(in->buf + 8);
        in->id = base_le64(in->buf);
        if (in->id == 0 || len == 0 || len > ADDRESS_MAX) {
            in_abort(in, "bad raft handshake");
            return;
        }
        if (to != in->tp->id) {
            char why[96];
            snprintf(why, sizeof why, "raft connection meant for id %" PRIu64 ", not us", to);
            in_abort(in, why);
            return;
        }
        in->phase = IN_RAFT_ADDRESS;
        in->need = len;
        in->got = 0;
        return;
    }
    default:
        if (memchr(in->buf, '\0', in->need)) {
            in_abort(in, "bad raft handshake address");
            return;
        }
        in_hand_over(in, true);
        return;
    }
}

static void listen_cb(uv_stream_t *server, int status)
{
    struct tp *tp = server->data;
    if (status < 0) {
        uint64_t now = uv_now(tp->loop);
        if (now >= tp->warn_at) {
            tp->warn_at = now + 10000;
            LOG_WARN("consensus", "server port: accept: %s", uv_strerror(status));
        }
        return;
    }
    uv_tcp_t *tcp = raft_malloc(sizeof *tcp);
    if (!tcp) {
        LOG_ERR("consensus", "out of memory accepting a connection");
        abort();
    }
    uv_tcp_init(tp->loop, tcp);
    if (uv_accept(server, (uv_stream_t *)tcp) != 0 || tp->closing ||
        tp->n_incoming >= HANDSHAKES_MAX) {
        uv_close((uv_handle_t *)tcp, free_raft_tcp);
        return;
    }
    uv_tcp_nodelay(tcp, 1);
    uv_tcp_keepalive(tcp, 1, KEEPALIVE_S);
    struct incoming *in = base_calloc(1, sizeof *in);
    in->tp = tp;
    in->tcp = tcp;
    in->started = uv_now(tp->loop);
    in->phase = IN_PREAMBLE;
    in->need = PREAMBLE_LEN;
    tcp->data = in;
    in->next = tp->incoming;
    if (tp->incoming)
        tp->incoming->prev = in;
    tp->incoming = in;
    tp->n_incoming++;
    if (uv_read_start((uv_stream_t *)tcp, in_alloc, in_read) != 0)
        in_abort(in, "read start");
}

void cons__transport_sweep(struct cons *c)
{
    struct tp *tp = c->transport.impl;
    if (!tp || tp->closing)
        return;
    uint64_t now = uv_now(tp->loop);
    struct incoming *in = tp->incoming, *next;
    for (; in; in = next) {
        next = in->next;
        if (now - in->started >= HANDSHAKE_TIMEOUT_MS)
            in_abort(in, "handshake timed out");
    }
}

/* ---- dialing --------------------------------------------------------------------------- */

static struct backoff *backoff_of(struct tp *tp, raft_id id)
{
    for (size_t i = 0; i < tp->n_backoff; i++)
        if (tp->backoff[i].id == id)
            return &tp->backoff[i];
    tp->backoff = base_realloc(tp->backoff, (tp->n_backoff + 1) * sizeof *tp->backoff);
    tp->backoff[tp->n_backoff] = (struct backoff){.id = id, .failures = 0};
    return &tp->backoff[tp->n_backoff++];
}

static unsigned backoff_delay(unsigned failures)
{
    if (failures == 0)
        return 0;
    unsigned d = BACKOFF_MIN_MS;
    for (unsigned i = 1; i < failures && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    return d < BACKOFF_MAX_MS ? d : BACKOFF_MAX_MS;
}

static void dial_unlink(struct cons_dial *d)
{
    struct tp *tp = d->tp;
    if (d->prev)
        d->prev->next = d->next;
    else
        tp->dials = d->next;
    if (d->next)
        d->next->prev = d->prev;
}

/* Runs the user's callback once (failure or cancel: no stream). */
static void dial_deliver(struct cons_dial *d, uv_tcp_t *tcp)
{
    if (d->delivered)
        return;
    d->delivered = true;
    if (d->raft) {
        int st = tcp ? 0 : d->status == UV_ECANCELED ? RAFT_CANCELED : RAFT_NOCONNECTION;
        d->req->cb(d->req, (uv_stream_t *)tcp, st);
    } else {
        d->cb(d->data, tcp, tcp ? 0 : d->status);
    }
}

static void dial_unpend(struct cons_dial *d)
{
    assert(d->pending > 0);
    if (--d->pending > 0)
        return;
    struct tp *tp = d->tp;
    dial_unlink(d);
    dial_deliver(d, NULL);
    base_free(d->hs);
    base_free(d);
    tp_maybe_closed(tp);
}

static void dial_timer_closed(uv_handle_t *h)
{
    dial_unpend(h->data);
}

static void dial_tcp_closed(uv_handle_t *h)
{
    struct cons_dial *d = h->data;
    raft_free(h);
    dial_unpend(d);
}

/* Failure, cancel or success: close what is ours; the last close frees the dial. */
static void dial_finish(struct cons_dial *d, int status)
{
    if (d->finishing)
        return;
    d->finishing = true;
    if (d->status == 0)
        d->status = status;
    d->pending++; /* the timer */
    uv_close((uv_handle_t *)&d->timer, dial_timer_closed);
    if (d->tcp) {
        d->pending++;
        uv_close((uv_handle_t *)d->tcp, dial_tcp_closed);
        d->tcp = NULL;
    }
    if (d->resolving) {
        d->pending++; /* its callback still comes, cancelled or not */
        uv_cancel((uv_req_t *)&d->gai);
    }
    if (status != 0 && status != UV_ECANCELED && d->raft)
        backoff_of(d->tp, d->peer)->failures++;
}

static void dial_write_cb(uv_write_t *w, int status)
{
    struct cons_dial *d = w->data;
    if (d->finishing)
        return;
    if (status != 0) {
        LOG_DEBUG("consensus", "dial %s:%d: handshake: %s", d->host, d->port, uv_strerror(status));
        dial_finish(d, status);
        return;
    }
    /* connected and introduced: the stream is the caller's now */
    uv_tcp_t *tcp = d->tcp;
    d->tcp = NULL;
    tcp->data = NULL;
    if (d->raft)
        backoff_of(d->tp, d->peer)->failures = 0;
    uv_timer_stop(&d->timer);
    dial_deliver(d, tcp);
    dial_finish(d, 0);
}

static void dial_connect_cb(uv_connect_t *req, int status)
{
    struct cons_dial *d = req->data;
    if (d->finishing)
        return;
    if (status != 0) {
        LOG_DEBUG("consensus", "dial %s:%d: %s", d->host, d->port, uv_strerror(status));
        dial_finish(d, status);
        return;
    }
    uv_tcp_nodelay(d->tcp, 1);
    uv_tcp_keepalive(d->tcp, 1, KEEPALIVE_S);
    uv_buf_t b = uv_buf_init((char *)d->hs, (unsigned)d->hs_len);
    d->write.data = d;
    int rv = uv_write(&d->write, (uv_stream_t *)d->tcp, &b, 1, dial_write_cb);
    if (rv != 0)
        dial_finish(d, rv);
}

static void dial_connect(struct cons_dial *d)
{
    d->tcp = raft_malloc(sizeof *d->tcp);
    if (!d->tcp) {
        LOG_ERR("consensus", "out of memory dialing %s", d->host);
        abort();
    }
    uv_tcp_init(d->tp->loop, d->tcp);
    d->tcp->data = d;
    uv_tcp_nodelay(d->tcp, 1); /* applied when libuv creates the socket */
    d->connect.data = d;
    int rv = uv_tcp_connect(&d->connect, d->tcp, (const struct sockaddr *)&d->sa, dial_connect_cb);
    if (rv != 0)
        dial_finish(d, rv);
}

static void dial_gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct cons_dial *d = req->data;
    d->resolving = false;
    if (d->finishing) {
        uv_freeaddrinfo(res);
        dial_unpend(d);
        return;
    }
    struct addrinfo *ai = res;
    while (ai && ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
        ai = ai->ai_next;
    if (status != 0 || !ai) {
        LOG_DEBUG("consensus", "resolve %s: %s", d->host,
                  status ? uv_strerror(status) : "no address");
        uv_freeaddrinfo(res);
        dial_finish(d, status ? status : UV_EAI_NONAME);
        return;
    }
    memset(&d->sa, 0, sizeof d->sa);
    memcpy(&d->sa, ai->ai_addr, ai->ai_addrlen);
    uv_freeaddrinfo(res);
    if (d->sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&d->sa)->sin_port = htons((uint16_t)d->port);
    else
        ((struct sockaddr_in6 *)&d->sa)->sin6_port = htons((uint16_t)d->port);
    dial_connect(d);
}

/* The timer: first the start (after the backoff delay, or at once), then the connect bound. */
static void dial_timer_cb(uv_timer_t *t)
{
    struct cons_dial *d = t->data;
    if (d->finishing)
        return;
    if (d->started) {
        dial_finish(d, UV_ETIMEDOUT);
        return;
    }
    if (d->status != 0) { /* refused early (bad address) */
        dial_finish(d, d->status);
        return;
    }
    d->started = true;
    uv_timer_start(&d->timer, dial_timer_cb, CONNECT_TIMEOUT_MS, 0);
    if (d->sa.ss_family != 0) {
        dial_connect(d);
        return;
    }
    struct addrinfo hints;
    char service[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(service, sizeof service, "%d", d->port);
    d->gai.data = d;
    d->resolving = true;
    int rv = uv_getaddrinfo(d->tp->loop, &d->gai, dial_gai_cb, d->host, service, &hints);
    if (rv != 0) {
        d->resolving = false;
        dial_finish(d, rv);
    }
}

/* A dial that starts after delay_ms; the preamble (and handshake) is hs. Callbacks always
 * come later, from the loop. */
static struct cons_dial *dial_new(struct tp *tp, const char *address, const uint8_t *hs,
                                  size_t hs_len, unsigned delay_ms)
{
    struct cons_dial *d = base_calloc(1, sizeof *d);
    d->tp = tp;
    d->hs = base_malloc(hs_len);
    memcpy(d->hs, hs, hs_len);
    d->hs_len = hs_len;
    uv_timer_init(tp->loop, &d->timer);
    d->timer.data = d;
    if (base_hostport_parse(address, DEFAULT_SERVER_PORT, d->host, sizeof d->host, &d->port) != 0) {
        LOG_WARN("consensus", "bad server address \"%s\"", address);
        d->status = UV_EINVAL;
        delay_ms = 0;
    } else if (numeric_addr(d->host, d->port, &d->sa) != 0) {
        d->sa.ss_family = 0; /* a name: resolved when the dial starts */
    }
    d->next = tp->dials;
    if (tp->dials)
        tp->dials->prev = d;
    tp->dials = d;
    uv_timer_start(&d->timer, dial_timer_cb, delay_ms, 0);
    return d;
}

struct cons_dial *cons__dial_rpc(struct cons *c, const char *address, cons_dial_cb cb, void *data)
{
    struct tp *tp = c->transport.impl;
    assert(tp && !tp->closing);
    struct cons_dial *d = dial_new(tp, address, preamble_rpc, PREAMBLE_LEN, 0);
    d->cb = cb;
    d->data = data;
    return d;
}

void cons__dial_cancel(struct cons_dial *d)
{
    dial_finish(d, UV_ECANCELED);
}

/* ---- the raft_uv_transport ------------------------------------------------------------- */

static void listener_free(uv_handle_t *h)
{
    base_free(h);
}

static void listener_closed(uv_handle_t *h)
{
    struct tp *tp = h->data;
    base_free(h);
    tp->listener = NULL;
    tp_maybe_closed(tp);
}

/* Binds and listens at once, so that a taken port fails cons_start, and so that RPC (HELLO)
 * works before Raft starts. */
static int tp_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct tp *tp = t->impl;
    struct cons *c = tp->c;
    const char *bind = c->bind_address ? c->bind_address : address;
    char host[ADDRESS_MAX + 1];
    int port;
    struct sockaddr_storage sa;
    int rv;

    if (base_hostport_parse(bind, DEFAULT_SERVER_PORT, host, sizeof host, &port) != 0 ||
        numeric_addr(host, port, &sa) != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "bad bind address \"%s\" (ip:port)", bind);
        return RAFT_INVALID;
    }
    if (strlen(address) > ADDRESS_MAX) {
        snprintf(t->errmsg, sizeof t->errmsg, "address too long");
        return RAFT_INVALID;
    }
    tp->id = id;
    tp->address = base_strdup(address);
    uv_tcp_t *l = base_malloc(sizeof *l);
    uv_tcp_init(tp->loop, l);
    l->data = tp;
    rv = uv_tcp_bind(l, (const struct sockaddr *)&sa, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)l, LISTEN_BACKLOG, listen_cb);
    if (rv != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "listen on %s: %s", bind, uv_strerror(rv));
        tp->listen_error = rv;
        uv_close((uv_handle_t *)l, listener_free);
        base_free(tp->address);
        tp->address = NULL;
        return RAFT_IOERR;
    }
    tp->listener = l;
    LOG_INFO("consensus", "server port listening on %s", bind);
    return 0;
}

static int tp_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct tp *tp = t->impl;
    tp->accept_cb = cb;
    return 0;
}

static int tp_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                      const char *address, raft_uv_connect_cb cb)
{
    struct tp *tp = t->impl;
    size_t alen = strlen(tp->address);
    size_t n = PREAMBLE_LEN + RAFT_HEADER_LEN + alen;
    uint8_t hs[PREAMBLE_LEN + RAFT_HEADER_LEN + ADDRESS_MAX];

    assert(!tp->closing);
    memcpy(hs, preamble_raft, PREAMBLE_LEN);
    base_put_le64(hs + PREAMBLE_LEN, tp->id);
    base_put_le64(hs + PREAMBLE_LEN + 8, id);
    base_put_le32(hs + PREAMBLE_LEN + 16, (uint32_t)alen);
    memcpy(hs + PREAMBLE_LEN + RAFT_HEADER_LEN, tp->address, alen);
    req->cb = cb;
    struct cons_dial *d = dial_new(tp, address, hs, n, backoff_delay(backoff_of(tp, id)->failures));
    d->raft = true;
    d->req = req;
    d->peer = id;
    return 0;
}

static void tp_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct tp *tp = t->impl;
    assert(!tp->closing);
    tp->closing = true;
    tp->close_cb = cb;
    if (tp->listener)
        uv_close((uv_handle_t *)tp->listener, listener_closed);
    while (tp->incoming)
        in_abort(tp->incoming, "closing");
    for (struct cons_dial *d = tp->dials; d; d = d->next)
        dial_finish(d, UV_ECANCELED);
    tp_maybe_closed(tp);
}

int cons__transport_init(struct cons *c, char *errmsg)
{
    BASE_UNUSED(errmsg);
    struct tp *tp = base_calloc(1, sizeof *tp);
    tp->c = c;
    tp->loop = c->loop;
    memset(&c->transport, 0, sizeof c->transport);
    c->transport.version = 1;
    c->transport.impl = tp;
    c->transport.init = tp_init;
    c->transport.listen = tp_listen;
    c->transport.connect = tp_connect;
    c->transport.close = tp_close;
    return 0;
}

int cons__transport_error(struct cons *c)
{
    struct tp *tp = c->transport.impl;
    return tp ? tp->listen_error : 0;
}

void cons__transport_close(struct cons *c)
{
    struct tp *tp = c->transport.impl;
    if (!tp)
        return;
    assert(!tp->listener && !tp->incoming && !tp->dials && !tp->closing_handles);
    base_free(tp->address);
    base_free(tp->backoff);
    base_free(tp);
    c->transport.impl = NULL;
}
