/* DNS workers: threads, loops and the UDP side (DESIGN.md 2.2).
 *
 * Each worker is a thread running its own libuv loop with its own sockets: a UDP socket and a
 * TCP listening socket, both bound to the same address with SO_REUSEPORT, so the kernel
 * spreads datagrams (by the sender's address and port) and new connections over the workers
 * and no worker ever hands work to another. A worker owns everything it touches on the query
 * path: its answer cache, its arena, its response buffer, its rng and its counters. The only
 * things shared are read-only (the zone config, the store handle, the published catalog index,
 * an atomic) and the TCP connection counts, taken under a mutex only when a connection opens or
 * closes. Workers never touch the main loop; the main loop reaches a worker only through
 * uv_async_send (stop).
 *
 * Everything a worker needs is set up on the main thread by rsv_start before the thread starts
 * (a loop may be prepared on one thread and run on another, never both at once), so a bind or
 * listen error is reported synchronously with the socket's name. The thread then only runs
 * the loop until stop closes its handles, and closes the loop (uv_loop_close() == 0).
 *
 * UDP receive uses recvmmsg (uv_udp_init_ex with UV_UDP_RECVMMSG): the worker's receive buffer
 * holds RSV__RBUF_MMSG datagrams of 64 KiB (libuv's chunk size), is allocated once, and is
 * handed to libuv on every read, so a burst of queries costs one syscall per batch and no
 * allocation. Each query is answered in place into the worker's response buffer and sent with
 * uv_udp_try_send; only when the socket buffer is full (EAGAIN) is the answer copied into a
 * queued uv_udp_send, up to a bound after which it is dropped and counted. A recursive answer
 * goes out the same way, later, from the worker's recursor (recurse.c). */
#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define UDP_PENDING_MAX 4096
#define UDP_CHUNK       (64 * 1024) /* libuv's recvmmsg chunk (UV__UDP_DGRAM_MAXSIZE) */

struct udp_send {
    uv_udp_send_t req;
    struct rsv__worker *w;
    uint8_t data[];
};

static void udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct rsv__worker *w = h->data;
    BASE_UNUSED(suggested);
    buf->base = (char *)w->rbuf;
    buf->len = w->rbuf_len;
}

static void udp_sent(uv_udp_send_t *req, int status)
{
    struct udp_send *s = (struct udp_send *)(void *)req;
    struct rsv__worker *w = s->w;
    w->udp_pending--;
    if (status)
        RSV__COUNT(&w->stats, udp_send_dropped);
    base_free(s);
}

void rsv__udp_reply(struct rsv__worker *w, const struct sockaddr *addr, const uint8_t *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int rc = uv_udp_try_send(&w->udp, &b, 1, addr);

    if (rc >= 0)
        return;
    if (rc == UV_EAGAIN && w->udp_pending < UDP_PENDING_MAX && !w->stopping) {
        struct udp_send *s = base_malloc(sizeof *s + n);
        s->w = w;
        memcpy(s->data, p, n);
        b = uv_buf_init((char *)s->data, (unsigned)n);
        if (uv_udp_send(&s->req, &w->udp, &b, 1, addr, udp_sent) == 0) {
            w->udp_pending++;
            RSV__COUNT(&w->stats, udp_send_queued);
            return;
        }
        base_free(s);
    }
    RSV__COUNT(&w->stats, udp_send_dropped);
}

static void udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                     unsigned flags)
{
    struct rsv__worker *w = h->data;
    size_t n;

    if (flags & UV_UDP_MMSG_FREE)
        return; /* the end of a recvmmsg batch: our buffer is not freed */
    if (nread < 0 || !addr)
        return; /* nothing more to read now, or a socket error (ICMP): nothing to answer */
    if (flags & UV_UDP_PARTIAL) {
        RSV__COUNT(&w->stats, udp_queries);
        RSV__COUNT(&w->stats, dropped);
        return;
    }
    n = rsv__answer(&w->eng, (const uint8_t *)buf->base, (size_t)nread, false, NULL, addr, w->out,
                    RSV__MSG_MAX);
    if (n)
        rsv__udp_reply(w, addr, w->out, n);
}

/* ---- lifecycle ------------------------------------------------------------------------- */

/* Closes every handle of the worker; its loop then runs out of work. Worker thread (from the
 * stop async), or the main thread before the worker's thread started. */
static void worker_close_handles(struct rsv__worker *w)
{
    w->stopping = true;
    if (w->udp_ready)
        uv_close((uv_handle_t *)&w->udp, NULL);
    if (w->tcp_ready)
        uv_close((uv_handle_t *)&w->listener, NULL);
    w->udp_ready = w->tcp_ready = false;
    rsv__tcp_close_all(w);
    if (w->rec)
        rsv__recursor_close(w->rec);
    if (w->async_ready)
        uv_close((uv_handle_t *)&w->stop, NULL);
    w->async_ready = false;
}

static void on_stop(uv_async_t *a)
{
    worker_close_handles(a->data);
}

static void worker_main(void *arg)
{
    struct rsv__worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    w->loop_close_rc = uv_loop_close(&w->loop);
}

int rsv__socket_bind(const struct sockaddr *sa, int type, bool shared)
{
    int one = 1;
    socklen_t len =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(sa->sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    /* TCP: SO_REUSEADDR lets a restart bind over TIME_WAIT (never over a listener). UDP:
     * only when shared, since on UDP it would let another socket bind beside us. */
    if ((shared || type == SOCK_STREAM) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one))
        goto fail;
    if (shared && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one))
        goto fail;
    if (sa->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one))
        goto fail;
    if (bind(fd, sa, len))
        goto fail;
    return fd;
fail:;
    int rc = -errno;
    close(fd);
    return rc;
}

int rsv__worker_setup(struct rsv__worker *w, const struct sockaddr *sa, char *errmsg)
{
    struct rsv *r = w->rsv;
    const char *lb = strchr(r->host, ':') ? "[" : "", *rb = *lb ? "]" : "";
    int fd, rc;

    base_list_init(&w->conns);
    w->rbuf_len = (size_t)RSV__RBUF_MMSG * UDP_CHUNK;
    w->rbuf = base_malloc(w->rbuf_len);
    w->out = base_malloc(2 + RSV__MSG_MAX);

    if ((rc = uv_loop_init(&w->loop)))
        return base_errf(errmsg, rc, "dns worker %u: loop: %s", w->id, uv_strerror(rc));
    w->loop_ready = true;
    if ((rc = uv_async_init(&w->loop, &w->stop, on_stop)))
        return base_errf(errmsg, rc, "dns worker %u: async: %s", w->id, uv_strerror(rc));
    w->stop.data = w;
    w->async_ready = true;
    if (r->rcfg.enabled) {
        rc = rsv__recursor_new(w, &r->rcfg, &w->rec, errmsg);
        w->eng.rec = w->rec;
        if (rc)
            return rc;
    }

    if ((fd = rsv__socket_bind(sa, SOCK_DGRAM, true)) < 0)
        return base_errf(errmsg, fd, "dns %s%s%s:%d/udp: %s", lb, r->host, rb, r->port,
                         uv_strerror(fd));
    if ((rc = uv_udp_init_ex(&w->loop, &w->udp, AF_UNSPEC | UV_UDP_RECVMMSG))) {
        close(fd);
        return base_errf(errmsg, rc, "dns worker %u: udp: %s", w->id, uv_strerror(rc));
    }
    w->udp.data = w;
    w->udp_ready = true;
    if ((rc = uv_udp_open(&w->udp, fd))) {
        close(fd);
        return base_errf(errmsg, rc, "dns %s%s%s:%d/udp: %s", lb, r->host, rb, r->port,
                         uv_strerror(rc));
    }
    if ((rc = uv_udp_recv_start(&w->udp, udp_alloc, udp_recv)))
        return base_errf(errmsg, rc, "dns %s%s%s:%d/udp: %s", lb, r->host, rb, r->port,
                         uv_strerror(rc));

    if ((fd = rsv__socket_bind(sa, SOCK_STREAM, true)) < 0)
        return base_errf(errmsg, fd, "dns %s%s%s:%d/tcp: %s", lb, r->host, rb, r->port,
                         uv_strerror(fd));
    if ((rc = uv_tcp_init(&w->loop, &w->listener))) {
        close(fd);
        return base_errf(errmsg, rc, "dns worker %u: tcp: %s", w->id, uv_strerror(rc));
    }
    w->listener.data = w;
    w->tcp_ready = true;
    if ((rc = uv_tcp_open(&w->listener, fd))) {
        close(fd);
        return base_errf(errmsg, rc, "dns %s%s%s:%d/tcp: %s", lb, r->host, rb, r->port,
                         uv_strerror(rc));
    }
    if ((rc = uv_listen((uv_stream_t *)&w->listener, 511, rsv__tcp_on_connection)))
        return base_errf(errmsg, rc, "dns %s%s%s:%d/tcp: %s", lb, r->host, rb, r->port,
                         uv_strerror(rc));
    return 0;
}

int rsv__worker_run(struct rsv__worker *w, char *errmsg)
{
    int rc = uv_thread_create(&w->thread, worker_main, w);
    if (rc)
        return base_errf(errmsg, rc, "dns worker %u: thread: %s", w->id, uv_strerror(rc));
    w->thread_started = true;
    char name[16];
    snprintf(name, sizeof name, "herald-dns%u", w->id);
    pthread_setname_np(w->thread, name);
    return 0;
}

void rsv__worker_signal(struct rsv__worker *w)
{
    if (w->thread_started)
        uv_async_send(&w->stop);
}

void rsv__worker_free(struct rsv__worker *w)
{
    if (w->thread_started) {
        uv_thread_join(&w->thread);
    } else if (w->loop_ready) {
        worker_close_handles(w);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        w->loop_close_rc = uv_loop_close(&w->loop);
    }
    if (w->loop_close_rc)
        LOG_ERR("dns", "worker %u: loop did not close cleanly: %s", w->id,
                uv_strerror(w->loop_close_rc));
    rsv__recursor_free(w->rec); /* joins libunbound's thread */
    rsv__engine_close(&w->eng);
    base_free(w->rbuf);
    base_free(w->out);
    base_free(w);
}
