/* The HTTP/1.1 server: listener, connections, parsing, limits and timeouts.
 *
 * Design. Each connection is one small struct (uv_tcp_t, one uv_timer_t, an llhttp parser and
 * a few buffers that are empty while the connection is idle or parked), so thousands of
 * parked long polls cost little. Reads land in one 64 KiB buffer per server (the loop runs one
 * read callback at a time) and go straight to llhttp; only the request's own bytes are copied
 * (URL, headers and body into `acc`, then into the request), and bytes read past a complete
 * request are kept in `pending`.
 *
 * A connection moves HEAD -> BODY -> HANDLER -> WRITING -> HEAD ... and ends in LINGER or
 * CLOSED. on_message_complete pauses llhttp, so one request is in flight at a time: the
 * handler gets it, and the next pipelined request is parsed only once the response has been
 * written (which also applies back-pressure to a client that does not read). While the
 * handler holds the request we keep reading, to see the peer go away: bytes then go to
 * `pending` (reading stops at HTTP__PENDING_CAP), an EOF with nothing pending or any read
 * error aborts the request (its abort callback runs) and closes the connection. An EOF after
 * pipelined bytes is a half-close: the pipelined requests are still answered.
 *
 * Aborts. When a connection dies with a request in flight, the request's abort callback runs
 * and the request is freed; a request without an abort callback is detached instead (its conn
 * becomes NULL) and stays valid until its http_respond, which only frees it. If the handler
 * itself stops the server, its own request is aborted only once the handler has returned.
 *
 * One timer per connection: the header timeout runs from accept, and between requests from the
 * first byte of the next request, until the head is complete (408 when bytes arrived, silent
 * close otherwise); the body timeout runs from the end of the head until the whole body is in
 * (408), however the bytes trickle; the idle timeout runs between requests until their first
 * byte and while a response is being written. No timer runs while the handler holds the
 * request (long polls last up to 10 minutes).
 *
 * Connections are counted per client IP address (a small open-addressing table): one over
 * max_conns_per_client, like one over max_conns, is closed as soon as it is accepted.
 *
 * A response that ends the connection (Connection: close, HTTP/1.0, or the errors we answer
 * ourselves: 400, 408, 413, 431, 505) is followed by a lingering close: shut the write side,
 * drain input for up to HTTP__LINGER_MS, then close, so unread request bytes do not make the
 * kernel reset the connection before the client has read the response.
 *
 * Stop closes the listener and every connection (aborting requests in flight), and calls
 * done from the last close callback. A connection is freed when both its handles are closed;
 * write and shutdown callbacks cancelled by uv_close run before that and only free their
 * request. */
#include "admin/http/internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static void conn_close(struct http__conn *c);
static void conn_linger(struct http__conn *c);
static void conn_fail(struct http__conn *c, int status, const char *msg);
static void conn_dispatch(struct http__conn *c);

/* ---- server bookkeeping ---------------------------------------------------------------- */

static void srv_maybe_finish(struct http_server *s)
{
    if (!s->stopping || s->closing)
        return;
    void (*done)(void *) = s->done;
    void *data = s->done_data;
    base_free(s->ipc);
    base_free(s->rbuf);
    base_free(s);
    if (done)
        done(data);
}

static void srv_on_listener_closed(uv_handle_t *h)
{
    struct http_server *s = h->data;
    s->closing--;
    srv_maybe_finish(s);
}

static void srv_on_reject_closed(uv_handle_t *h)
{
    struct http_server *s = h->data;
    base_free(h);
    s->closing--;
    srv_maybe_finish(s);
}

static void conn_on_handle_closed(uv_handle_t *h)
{
    struct http__conn *c = h->data;
    struct http_server *s = c->srv;
    if (--c->open_handles == 0)
        base_free(c);
    s->closing--;
    srv_maybe_finish(s);
}

/* ---- connections per client IP address ------------------------------------------------- */

static size_t ipc_hash(const uint8_t ip[16])
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ ip[i]) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 32));
}

/* The slot holding ip, or the empty slot where it would go. ipc_cap must be non-zero. */
static struct http__ipcount *ipc_slot(struct http_server *s, const uint8_t ip[16])
{
    size_t mask = s->ipc_cap - 1;
    for (size_t i = ipc_hash(ip) & mask;; i = (i + 1) & mask) {
        struct http__ipcount *e = &s->ipc[i];
        if (!e->count || memcmp(e->ip, ip, 16) == 0)
            return e;
    }
}

static void ipc_grow(struct http_server *s)
{
    struct http__ipcount *old = s->ipc;
    size_t old_cap = s->ipc_cap;
    s->ipc_cap = old_cap ? old_cap * 2 : 64;
    s->ipc = base_calloc(s->ipc_cap, sizeof *s->ipc);
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].count)
            *ipc_slot(s, old[i].ip) = old[i];
    base_free(old);
}

/* Counts a new connection from ip; false (and nothing counted) when ip is at the cap. */
static bool ipc_add(struct http_server *s, const uint8_t ip[16])
{
    if ((s->ipc_used + 1) * 2 > s->ipc_cap)
        ipc_grow(s);
    struct http__ipcount *e = ipc_slot(s, ip);
    if (e->count >= s->max_conns_per_client)
        return false;
    if (!e->count) {
        memcpy(e->ip, ip, 16);
        s->ipc_used++;
    }
    e->count++;
    return true;
}

/* Uncounts a connection; an entry that drops to 0 is removed by shifting later entries of its
 * probe run back (no tombstones). */
static void ipc_remove(struct http_server *s, const uint8_t ip[16])
{
    struct http__ipcount *e = ipc_slot(s, ip);
    if (!e->count || --e->count)
        return;
    s->ipc_used--;
    size_t mask = s->ipc_cap - 1;
    size_t hole = (size_t)(e - s->ipc);
    for (size_t j = (hole + 1) & mask; s->ipc[j].count; j = (j + 1) & mask) {
        size_t home = ipc_hash(s->ipc[j].ip) & mask;
        /* j's entry may move into the hole when its home is not in (hole, j] cyclically. */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            s->ipc[hole] = s->ipc[j];
            s->ipc[j].count = 0;
            hole = j;
        }
    }
}

/* ---- timers and reading ---------------------------------------------------------------- */

static void conn_on_timer(uv_timer_t *t)
{
    struct http__conn *c = t->data;

    switch (c->state) {
    case HTTP__HEAD:
        if (c->got_bytes)
            conn_fail(c, 408, "Request Timeout");
        else
            conn_close(c);
        break;
    case HTTP__BODY:
        conn_fail(c, 408, "Request Timeout");
        break;
    default:
        conn_close(c); /* writing stalled, or lingering over */
        break;
    }
}

static void conn_timer(struct http__conn *c, unsigned ms)
{
    uv_timer_start(&c->timer, conn_on_timer, ms, 0);
}

static void conn_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http__conn *c = h->data;
    BASE_UNUSED(suggested);
    buf->base = c->srv->rbuf;
    buf->len = HTTP__READ_BUF;
}

static void conn_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void conn_read_start(struct http__conn *c)
{
    if (c->reading)
        return;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, conn_on_alloc, conn_on_read);
    if (rc < 0) {
        conn_close(c);
        return;
    }
    c->reading = true;
}

static void conn_read_stop(struct http__conn *c)
{
    if (!c->reading)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

/* ---- closing --------------------------------------------------------------------------- */

static void conn_release_buffers(struct http__conn *c)
{
    base_buf_free(&c->acc);
    base_buf_free(&c->pending);
}

/* Closes at once: aborts the request in flight, closes both handles. */
static void conn_close(struct http__conn *c)
{
    struct http_server *s = c->srv;

    if (c->state == HTTP__CLOSED)
        return;
    c->state = HTTP__CLOSED;
    base_list_remove(&c->link);
    s->nconns--;
    if (c->ip_counted) {
        c->ip_counted = false;
        ipc_remove(s, c->ip);
    }
    conn_release_buffers(c);
    if (c->req) {
        struct http_req *r = c->req;
        c->req = NULL;
        if (r == s->in_handler) {
            r->conn = NULL; /* its handler is running: conn_dispatch aborts it afterwards */
            r->orphan_of = s;
        } else {
            http__req_abort(r);
        }
    }
    s->closing += 2;
    uv_close((uv_handle_t *)&c->tcp, conn_on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_on_handle_closed);
}

static void conn_on_shutdown(uv_shutdown_t *req, int status)
{
    struct http__conn *c = req->data;
    base_free(req);
    if (c->state != HTTP__CLOSED && status < 0)
        conn_close(c);
}

/* Shuts the write side down once queued writes are out, then drains input until the peer
 * closes or the linger timer fires. */
static void conn_linger(struct http__conn *c)
{
    if (c->eof) {
        conn_close(c);
        return;
    }
    c->state = HTTP__LINGER;
    conn_release_buffers(c);
    conn_timer(c, HTTP__LINGER_MS);
    uv_shutdown_t *req = base_malloc(sizeof *req);
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, conn_on_shutdown) < 0) {
        base_free(req);
        conn_close(c);
        return;
    }
    conn_read_start(c);
}

/* ---- writing --------------------------------------------------------------------------- */

static void conn_resume(struct http__conn *c);

static void conn_on_written(uv_write_t *req, int status)
{
    struct http__wreq *w = (struct http__wreq *)req;
    struct http__conn *c = w->conn;

    http__wreq_free(w);
    if (c->state == HTTP__CLOSED)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->close_after) {
        conn_linger(c);
        return;
    }
    conn_resume(c);
}

static void conn_write(struct http__conn *c, struct http__wreq *w, uv_write_cb cb)
{
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    w->conn = c;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, cb) < 0) {
        http__wreq_free(w);
        conn_close(c);
    }
}

void http__conn_write_response(struct http__conn *c, struct http__wreq *w, bool close)
{
    c->state = HTTP__WRITING;
    c->close_after = close;
    conn_timer(c, c->srv->idle_timeout_ms);
    conn_write(c, w, conn_on_written);
}

/* Answers a request we refuse ourselves, then closes. */
static void conn_fail(struct http__conn *c, int status, const char *msg)
{
    char body[128];
    int n = snprintf(body, sizeof body, "%s\n", msg);
    struct http__wreq *w = http__resp_build(status, "text/plain; charset=utf-8", NULL, body,
                                            (size_t)n, true, false, false);
    c->pending.len = 0;
    http__conn_write_response(c, w, true);
}

static void conn_on_continue_written(uv_write_t *req, int status)
{
    struct http__wreq *w = (struct http__wreq *)req;
    struct http__conn *c = w->conn;

    http__wreq_free(w);
    if (c->state != HTTP__CLOSED && status < 0)
        conn_close(c);
}

/* ---- parsing --------------------------------------------------------------------------- */

static struct http__conn *conn_of(llhttp_t *p)
{
    return p->data;
}

/* Counts head bytes against max_header_bytes (each header line's ": " and CRLF as 4). */
static int head_account(struct http__conn *c, size_t n)
{
    c->head_bytes += n;
    if (c->head_bytes > c->srv->max_header_bytes) {
        c->err_status = 431;
        return HPE_USER;
    }
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    struct http__conn *c = conn_of(p);
    c->acc.len = 0;
    c->head_bytes = 0;
    c->nheaders = 0;
    c->body_off = 0;
    c->in_body = false;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct http__conn *c = conn_of(p);
    if (head_account(c, n))
        return HPE_USER;
    base_buf_append(&c->acc, at, n);
    return 0;
}

static int on_url_complete(llhttp_t *p)
{
    struct http__conn *c = conn_of(p);
    base_buf_append(&c->acc, "", 1);
    return 0;
}

static int on_header_data(llhttp_t *p, const char *at, size_t n)
{
    struct http__conn *c = conn_of(p);
    if (head_account(c, n))
        return HPE_USER;
    if (!c->in_body) /* trailers are counted but dropped */
        base_buf_append(&c->acc, at, n);
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct http__conn *c = conn_of(p);
    if (head_account(c, 4))
        return HPE_USER;
    if (!c->in_body)
        base_buf_append(&c->acc, "", 1);
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct http__conn *c = conn_of(p);
    if (!c->in_body) {
        base_buf_append(&c->acc, "", 1);
        c->nheaders++;
    }
    return 0;
}

/* The value of a header in the request being parsed, NULL when absent. */
static const char *acc_header(const struct http__conn *c, const char *name)
{
    const char *h = (const char *)c->acc.data;
    h += strlen(h) + 1;
    for (size_t i = 0; i < c->nheaders; i++) {
        const char *v = h + strlen(h) + 1;
        if (base_strcasecmp(h, name) == 0)
            return v;
        h = v + strlen(v) + 1;
    }
    return NULL;
}

/* The body limit and timeout of the request being parsed: its path's own, else the
 * server's. */
static void body_limits(struct http__conn *c)
{
    const struct http_server *s = c->srv;
    const char *url = (const char *)c->acc.data;
    size_t n = strcspn(url, "?");
    c->body_max = s->max_body;
    c->body_timeout_ms = s->body_timeout_ms;
    for (size_t i = 0; i < s->n_body_limits; i++) {
        const char *path = s->body_limits[i].path;
        if (strlen(path) == n && memcmp(path, url, n) == 0) {
            c->body_max = s->body_limits[i].max_body;
            if (s->body_limits[i].body_timeout_ms)
                c->body_timeout_ms = s->body_limits[i].body_timeout_ms;
            return;
        }
    }
}

/* Refuses the request being parsed from a parser callback: conn_parse answers and closes. */
static int refuse(struct http__conn *c, int status, const char *msg)
{
    c->err_status = status;
    c->err_msg = msg;
    return HPE_USER;
}

static int on_headers_complete(llhttp_t *p)
{
    struct http__conn *c = conn_of(p);

    c->in_body = true;
    c->body_off = c->acc.len;
    /* Only HTTP/1.0 and 1.1 (llhttp also takes 0.9 and 2.0). */
    if (p->http_major != 1 || p->http_minor > 1)
        return refuse(c, 505, "HTTP Version Not Supported");
    /* RFC 9112 §3.2: a 1.1 request without a Host header, or with more than one, is 400. */
    if (p->http_minor == 1) {
        size_t hosts = 0;
        const char *h = (const char *)c->acc.data;
        h += strlen(h) + 1;
        for (size_t i = 0; i < c->nheaders; i++) {
            const char *v = h + strlen(h) + 1;
            hosts += base_strcasecmp(h, "Host") == 0;
            h = v + strlen(v) + 1;
        }
        if (hosts != 1)
            return refuse(c, 400,
                          hosts ? "Bad Request: too many Host headers"
                                : "Bad Request: missing required Host header");
    }
    body_limits(c);
    /* Decided before any body byte is read, so a client waiting on 100-continue gets 413. */
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->body_max)
        return refuse(c, 413, NULL);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0)
        base_buf_reserve(&c->acc, (size_t)p->content_length); /* one allocation, not doublings */
    bool has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
    if (has_body) {
        /* RFC 7231 §5.1.1: answer 100-continue before reading the body. */
        const char *expect = acc_header(c, "Expect");
        if (expect && base_strcasecmp(expect, "100-continue") == 0 && p->http_major == 1 &&
            p->http_minor >= 1) {
            static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
            struct http__wreq *w = http__wreq_new(sizeof msg - 1);
            memcpy(w->data, msg, sizeof msg - 1);
            conn_write(c, w, conn_on_continue_written);
            if (c->state == HTTP__CLOSED)
                return -1;
        }
    }
    /* The whole body must arrive within the body timeout: a trickle does not extend it. */
    c->state = HTTP__BODY;
    conn_timer(c, c->body_timeout_ms);
    return 0;
}

/* A chunk-size line: a chunk that would take the body over its limit is refused before its
 * data is read. */
static int on_chunk_header(llhttp_t *p)
{
    struct http__conn *c = conn_of(p);
    if (p->content_length > c->body_max - (c->acc.len - c->body_off))
        return refuse(c, 413, NULL);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct http__conn *c = conn_of(p);
    if (c->acc.len - c->body_off + n > c->body_max)
        return refuse(c, 413, NULL); /* a chunked body over the limit */
    base_buf_append(&c->acc, at, n);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct http__conn *c = conn_of(p);
    /* Upgrades (and CONNECT) are not supported: the handler answers, then we close. */
    c->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
    c->complete = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_header_field = on_header_data,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_data,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Feeds bytes to the parser (HEAD or BODY state). Returns how many were consumed: all of
 * them, or up to the end of a complete request (c->complete), or all of them after an error
 * was answered (state WRITING or CLOSED). */
static size_t conn_parse(struct http__conn *c, const char *p, size_t n)
{
    if (c->idle) {
        c->idle = false;
        conn_timer(c, c->srv->header_timeout_ms);
    }
    c->got_bytes = true;
    llhttp_errno_t e = llhttp_execute(&c->parser, p, n);
    if (e == HPE_OK)
        return n;
    if (e == HPE_PAUSED && c->complete) {
        size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - p);
        llhttp_resume(&c->parser);
        return used;
    }
    if (c->state == HTTP__CLOSED)
        return n;
    /* llhttp's own check of the version digits ("HTTP/3.0"); malformed ones are 400. */
    if (e == HPE_INVALID_VERSION &&
        strcmp(llhttp_get_error_reason(&c->parser), "Invalid HTTP version") == 0)
        c->err_status = 505;
    switch (c->err_status) {
    case 413:
        conn_fail(c, 413, "Request body too large");
        break;
    case 431:
        conn_fail(c, 431, "Request Header Fields Too Large");
        break;
    case 505:
        conn_fail(c, 505, "HTTP Version Not Supported");
        break;
    default:
        conn_fail(c, 400, c->err_status == 400 && c->err_msg ? c->err_msg : "Bad Request");
        break;
    }
    return n;
}

static void conn_dispatch(struct http__conn *c)
{
    c->complete = false;
    struct http_req *r = http__req_new(c);
    base_buf_free(&c->acc);
    if (!r) {
        conn_fail(c, 400, "Bad Request");
        return;
    }
    struct http_server *s = c->srv;
    c->req = r;
    c->state = HTTP__HANDLER;
    uv_timer_stop(&c->timer);
    s->in_handler = r;
    s->handler(s->data, r);
    /* The server is alive here even if the handler stopped it: it is freed only from close
     * callbacks. */
    if (s->in_handler && r->orphan_of) {
        r->orphan_of = NULL;
        http__req_abort(r);
    }
    s->in_handler = NULL;
}

/* After a response on a kept-alive connection: parse what was pipelined, else read. */
static void conn_resume(struct http__conn *c)
{
    c->state = HTTP__HEAD;
    c->idle = true;
    c->got_bytes = false;
    conn_timer(c, c->srv->idle_timeout_ms);
    if (c->pending.len) {
        size_t used = conn_parse(c, (const char *)c->pending.data, c->pending.len);
        if (c->complete) {
            memmove(c->pending.data, c->pending.data + used, c->pending.len - used);
            c->pending.len -= used;
            /* Keep watching the peer while the handler holds the next request. */
            if (!c->eof && c->pending.len < HTTP__PENDING_CAP)
                conn_read_start(c);
            if (c->state != HTTP__CLOSED)
                conn_dispatch(c);
            return;
        }
        if (c->state != HTTP__HEAD && c->state != HTTP__BODY)
            return;
        base_buf_free(&c->pending);
    }
    if (c->eof) {
        conn_close(c); /* a half-closed peer sent nothing more */
        return;
    }
    conn_read_start(c);
}

static void conn_on_eof(struct http__conn *c, ssize_t err)
{
    switch (c->state) {
    case HTTP__HANDLER:
    case HTTP__WRITING:
        /* A half-close after pipelined requests, or while a response is on its way, still
         * gets answers; a parked request whose client went away is aborted. */
        if (err == UV_EOF && (c->pending.len || c->state == HTTP__WRITING)) {
            c->eof = true;
            conn_read_stop(c);
        } else {
            conn_close(c);
        }
        break;
    default:
        conn_close(c);
        break;
    }
}

static void conn_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct http__conn *c = st->data;

    if (nread == 0)
        return;
    if (nread < 0) {
        conn_on_eof(c, nread);
        return;
    }
    const char *p = buf->base;
    size_t n = (size_t)nread;
    switch (c->state) {
    case HTTP__HEAD:
    case HTTP__BODY: {
        size_t used = conn_parse(c, p, n);
        if (c->complete) {
            base_buf_append(&c->pending, p + used, n - used);
            conn_dispatch(c);
        }
        break;
    }
    case HTTP__HANDLER:
    case HTTP__WRITING:
        base_buf_append(&c->pending, p, n);
        if (c->pending.len >= HTTP__PENDING_CAP)
            conn_read_stop(c);
        break;
    default:
        break; /* lingering: input is drained and dropped */
    }
}

/* ---- listening ------------------------------------------------------------------------- */

/* The peer's address as text ("1.2.3.4:5", "[::1]:5") and as a table key (IPv4 as
 * v4-mapped IPv6, so a dual-stack listener counts one client once). False when unknown. */
static bool peer_addr(uv_tcp_t *t, char *out, size_t len, uint8_t ip[16])
{
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    char name[INET6_ADDRSTRLEN];

    snprintf(out, len, "unknown");
    memset(ip, 0, 16);
    if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &sl) < 0)
        return false;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a, name, sizeof name);
        snprintf(out, len, "%s:%u", name, (unsigned)ntohs(a->sin_port));
        ip[10] = ip[11] = 0xff;
        memcpy(ip + 12, &a->sin_addr, 4);
        return true;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, name, sizeof name);
        snprintf(out, len, "[%s]:%u", name, (unsigned)ntohs(a->sin6_port));
        memcpy(ip, &a->sin6_addr, 16);
        return true;
    }
    return false;
}

static void srv_reject(struct http_server *s)
{
    uv_tcp_t *t = base_malloc(sizeof *t);
    uv_tcp_init(s->loop, t);
    t->data = s;
    (void)uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)t);
    s->closing++;
    uv_close((uv_handle_t *)t, srv_on_reject_closed);
}

static void srv_on_connection(uv_stream_t *l, int status)
{
    struct http_server *s = l->data;

    if (status < 0 || s->stopping)
        return;
    if (s->nconns >= s->max_conns) {
        srv_reject(s);
        return;
    }
    struct http__conn *c = base_calloc(1, sizeof *c);
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    base_list_insert_head(&s->conns, &c->link);
    s->nconns++;
    c->state = HTTP__HEAD;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (peer_addr(&c->tcp, c->peer, sizeof c->peer, c->ip)) {
        /* Over the per-client cap: closed at once, as Consul does. */
        if (!ipc_add(s, c->ip)) {
            conn_close(c);
            return;
        }
        c->ip_counted = true;
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
    conn_timer(c, s->header_timeout_ms);
    conn_read_start(c);
}

int http_server_start(uv_loop_t *loop, const struct http_config *cfg, http_handler_cb handler,
                      void *data, struct http_server **out, char *errmsg)
{
    struct sockaddr_storage ss;
    bool v6 = strchr(cfg->host, ':') != NULL;
    const char *lb = v6 ? "[" : "", *rb = v6 ? "]" : "";
    int rc;

    BASE_ASSERT_LOOP();
    *out = NULL;
    if (cfg->port < 0 || cfg->port > 65535)
        return base_errf(errmsg, BASE_EINVAL, "listen %s%s%s:%d: invalid port", lb, cfg->host, rb,
                         cfg->port);
    if (v6)
        rc = uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&ss);
    else
        rc = uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&ss);
    if (rc < 0)
        return base_errf(errmsg, BASE_EINVAL, "listen %s%s%s:%d: not an IP address", lb, cfg->host,
                         rb, cfg->port);

    struct http_server *s = base_calloc(1, sizeof *s);
    base_list_init(&s->conns);
    s->loop = loop;
    s->max_body = cfg->max_body ? cfg->max_body : 1024 * 1024;
    s->body_limits = cfg->body_limits;
    s->n_body_limits = cfg->n_body_limits;
    s->max_header_bytes = cfg->max_header_bytes ? cfg->max_header_bytes : 64 * 1024;
    s->header_timeout_ms = cfg->header_timeout_ms ? cfg->header_timeout_ms : 10000;
    s->idle_timeout_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : 60000;
    s->body_timeout_ms = cfg->body_timeout_ms ? cfg->body_timeout_ms : 30000;
    s->max_conns = cfg->max_conns ? cfg->max_conns : 4096;
    s->max_conns_per_client = cfg->max_conns_per_client ? cfg->max_conns_per_client : 200;
    s->handler = handler;
    s->data = data;
    s->rbuf = base_malloc(HTTP__READ_BUF);
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, SOMAXCONN, srv_on_connection);
    if (rc == 0) {
        int sl = sizeof ss;
        rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &sl);
    }
    if (rc < 0) {
        base_errf(errmsg, rc, "listen %s%s%s:%d: %s", lb, cfg->host, rb, cfg->port,
                  uv_strerror(rc));
        /* The listener's close callback frees the server when the loop next runs. */
        s->stopping = true;
        s->closing = 1;
        uv_close((uv_handle_t *)&s->listener, srv_on_listener_closed);
        return rc;
    }
    s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    *out = s;
    return 0;
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

unsigned http_server_conns(const struct http_server *s)
{
    return s->nconns;
}

void http_server_stop(struct http_server *s, void (*done)(void *), void *data)
{
    BASE_ASSERT_LOOP();
    if (s->stopping)
        return;
    s->stopping = true;
    s->done = done;
    s->done_data = data;
    s->closing++;
    uv_close((uv_handle_t *)&s->listener, srv_on_listener_closed);
    while (!base_list_empty(&s->conns))
        conn_close(BASE_CONTAINER_OF(base_list_first(&s->conns), struct http__conn, link));
}
