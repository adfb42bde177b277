/* DNS over TCP (RFC 7766), on a worker's loop.
 *
 * A connection reads into its own buffer (1 KiB at first, grown only for a larger message, up
 * to 2 + 65535 bytes), so the 2-byte length and the message may arrive split in any way
 * (§8). After each read every complete message in the buffer is answered, in order, and the
 * rest moved to the front: pipelined queries are all answered (§6.2.1.1), in the order they
 * came, which §7 allows. Each response goes out as length and message in one write (§8),
 * first with uv_try_write from the worker's response buffer (no allocation when the socket
 * takes it all, the usual case), else copied into a queued write; libuv keeps queued writes in
 * order, and uv_try_write refuses to jump the queue. When a client stops reading its answers
 * and the queue passes 256 KiB, answering stops (the queries wait in the buffer) and reading
 * pauses until the queue drains to half, so a client cannot make the server hold more than
 * about one large answer beyond that, however many queries it pipelines.
 *
 * Bounds (§6.2.3): the idle timer restarts only when a whole message has been answered, so a
 * client that sends nothing, or dribbles a query byte by byte for longer than the idle timeout,
 * or never reads its answers, is closed after it. A zero length closes the connection (there is
 * no such message). Connections count against a total, a per-source-address and a
 * per-source-network (/24, /64) cap shared by all workers; over any, a new connection is
 * closed at once. At EOF (a half-open
 * connection), the answers already queued are written, then the connection closes.
 *
 * Recursive queries (recurse.c) are answered later, when libunbound has the answer, so their
 * answers may pass answers to later queries (§7 allows it: the client matches them by ID). A
 * connection with recursive queries outstanding is not closed as idle or at EOF until they
 * are answered; when it closes for another reason, they are detached and their answers
 * dropped. */
#include "internal.h"

#include <string.h>

#define CONN_BUF_INIT   1024
#define CONN_BUF_MAX    (2 + RSV__MSG_MAX)
#define CONN_WRITE_HIGH (256 * 1024)

struct rsv__conn {
    uv_tcp_t tcp;
    uv_timer_t idle;
    struct rsv__worker *w;
    struct base_list link; /* on w->conns */
    struct sockaddr_storage peer;
    uint8_t *buf;
    size_t len, cap;
    size_t pending; /* bytes in queued writes */
    unsigned n_pending;
    unsigned n_recursing; /* recursive queries outstanding */
    int closed;           /* handles whose close callback ran */
    bool admitted, reading, eof, closing;
};

struct tcp_write {
    uv_write_t req;
    struct rsv__conn *c;
    size_t n;
    uint8_t data[];
};

static void conn_closed(uv_handle_t *h)
{
    struct rsv__conn *c = h->data;
    if (++c->closed < 2)
        return;
    base_free(c->buf);
    base_free(c);
}

static void conn_close(struct rsv__conn *c)
{
    struct rsv__worker *w = c->w;

    if (c->closing)
        return;
    c->closing = true;
    if (c->n_recursing && w->rec)
        rsv__recursor_forget_conn(w->rec, c);
    c->n_recursing = 0;
    if (c->admitted)
        rsv__conn_release(w->rsv, &c->peer);
    c->admitted = false;
    base_list_remove(&c->link);
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
    uv_close((uv_handle_t *)&c->idle, conn_closed);
}

void rsv__tcp_close_all(struct rsv__worker *w)
{
    while (!base_list_empty(&w->conns))
        conn_close(BASE_CONTAINER_OF(base_list_first(&w->conns), struct rsv__conn, link));
}

static void on_idle(uv_timer_t *t)
{
    struct rsv__conn *c = t->data;
    if (c->n_recursing) { /* waiting for us, not idle: the recursor's timeout bounds it */
        uv_timer_start(&c->idle, on_idle, c->w->rsv->tcp_idle_ms, 0);
        return;
    }
    RSV__COUNT(&c->w->stats, tcp_idle_closed);
    conn_close(c);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_process(struct rsv__conn *c);

static void on_written(uv_write_t *req, int status)
{
    struct tcp_write *wr = (struct tcp_write *)(void *)req;
    struct rsv__conn *c = wr->c;

    c->pending -= wr->n;
    c->n_pending--;
    base_free(wr);
    if (c->closing)
        return;
    if (status) {
        conn_close(c);
        return;
    }
    if (c->eof && !c->n_pending && !c->n_recursing) {
        conn_close(c); /* half-open: everything asked for is answered */
        return;
    }
    if (!c->reading && !c->eof && c->pending <= CONN_WRITE_HIGH / 2) {
        conn_process(c); /* queries that waited in the buffer while the client did not read */
        if (c->closing || c->reading || c->pending > CONN_WRITE_HIGH)
            return;
        if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read) == 0)
            c->reading = true;
        else
            conn_close(c);
    }
}

static void conn_write(struct rsv__conn *c, const uint8_t *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int rc = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    size_t done;
    struct tcp_write *wr;

    if (rc >= 0 && (size_t)rc == n)
        return;
    if (rc < 0 && rc != UV_EAGAIN) {
        conn_close(c);
        return;
    }
    done = rc > 0 ? (size_t)rc : 0;
    wr = base_malloc(sizeof *wr + (n - done));
    wr->c = c;
    wr->n = n - done;
    memcpy(wr->data, p + done, wr->n);
    b = uv_buf_init((char *)wr->data, (unsigned)wr->n);
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_written)) {
        base_free(wr);
        conn_close(c);
        return;
    }
    c->pending += wr->n;
    c->n_pending++;
}

static void conn_answer(struct rsv__conn *c, const uint8_t *msg, size_t n)
{
    struct rsv__worker *w = c->w;
    size_t len = rsv__answer(&w->eng, msg, n, true, c, (const struct sockaddr *)&c->peer,
                             w->out + 2, RSV__MSG_MAX);
    if (!len)
        return;
    w->out[0] = (uint8_t)(len >> 8);
    w->out[1] = (uint8_t)len;
    conn_write(c, w->out, len + 2);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct rsv__conn *c = h->data;
    size_t need = c->len + 64;

    BASE_UNUSED(suggested);
    /* The buffer holds at most one partial message: make room for all of it once its length
     * is known. */
    if (c->len >= 2) {
        size_t msg = 2 + ((size_t)c->buf[0] << 8 | c->buf[1]);
        if (msg > need)
            need = msg;
    }
    if (need > CONN_BUF_MAX)
        need = CONN_BUF_MAX;
    if (need > c->cap) {
        size_t cap = c->cap * 2 > need ? c->cap * 2 : need;
        if (cap > CONN_BUF_MAX)
            cap = CONN_BUF_MAX;
        c->buf = base_realloc(c->buf, cap);
        c->cap = cap;
    }
    buf->base = (char *)c->buf + c->len;
    buf->len = c->cap - c->len;
}

/* Answers the complete messages in the buffer, in order, while the queued answers stay under
 * CONN_WRITE_HIGH (the rest waits in the buffer, and reading pauses, until the client reads). */
static void conn_process(struct rsv__conn *c)
{
    size_t off = 0;
    bool answered = false;

    while (c->len - off >= 2 && !c->closing && c->pending <= CONN_WRITE_HIGH) {
        size_t mlen = (size_t)c->buf[off] << 8 | c->buf[off + 1];
        if (mlen == 0) {
            conn_close(c); /* no message has length 0 */
            return;
        }
        if (c->len - off < 2 + mlen)
            break;
        conn_answer(c, c->buf + off + 2, mlen);
        off += 2 + mlen;
        answered = true;
    }
    if (c->closing)
        return;
    if (off) {
        memmove(c->buf, c->buf + off, c->len - off);
        c->len -= off;
    }
    if (answered)
        uv_timer_start(&c->idle, on_idle, c->w->rsv->tcp_idle_ms, 0);
    if (c->reading && c->pending > CONN_WRITE_HIGH) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
        RSV__COUNT(&c->w->stats, tcp_paused);
    }
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct rsv__conn *c = s->data;

    BASE_UNUSED(buf);
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread == UV_EOF) {
            /* Half-open: a partial message is dropped; queued answers go out first. */
            c->eof = true;
            uv_read_stop(s);
            c->reading = false;
            if (!c->n_pending && !c->n_recursing)
                conn_close(c);
        } else {
            conn_close(c);
        }
        return;
    }
    c->len += (size_t)nread;
    conn_process(c);
}

void rsv__tcp_on_connection(uv_stream_t *listener, int status)
{
    struct rsv__worker *w = listener->data;
    struct rsv__conn *c;
    int len = sizeof c->peer;

    if (status < 0 || w->stopping)
        return;
    c = base_calloc(1, sizeof *c);
    c->w = w;
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->idle);
    c->tcp.data = c->idle.data = c;
    base_list_insert_head(&w->conns, &c->link);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) ||
        uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len)) {
        conn_close(c);
        return;
    }
    if (!rsv__conn_admit(w->rsv, &c->peer)) {
        RSV__COUNT(&w->stats, tcp_rejected);
        conn_close(c);
        return;
    }
    c->admitted = true;
    RSV__COUNT(&w->stats, tcp_accepted);
    uv_tcp_nodelay(&c->tcp, 1);
    c->buf = base_malloc(CONN_BUF_INIT);
    c->cap = CONN_BUF_INIT;
    uv_timer_start(&c->idle, on_idle, w->rsv->tcp_idle_ms, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read)) {
        conn_close(c);
        return;
    }
    c->reading = true;
}

void rsv__tcp_recursion_begin(struct rsv__conn *c)
{
    c->n_recursing++;
}

void rsv__tcp_recursion_done(struct rsv__conn *c, size_t len)
{
    struct rsv__worker *w = c->w;

    if (c->n_recursing)
        c->n_recursing--;
    if (c->closing)
        return;
    if (len) {
        w->out[0] = (uint8_t)(len >> 8);
        w->out[1] = (uint8_t)len;
        conn_write(c, w->out, len + 2);
        if (c->closing)
            return;
        uv_timer_start(&c->idle, on_idle, w->rsv->tcp_idle_ms, 0);
    }
    if (c->eof && !c->n_pending && !c->n_recursing)
        conn_close(c); /* half-open: everything asked for is answered */
}
