/* Tests admin/http/server.c and request.c: each test runs a server on its own loop at
 * 127.0.0.1 port 0, drives it from a client thread with blocking sockets, and ends by stopping
 * the server and proving the loop closes empty. The client thread only records what it read;
 * assertions run on the main thread after it is joined. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "admin/http/http.h"

#define OUT_CAP 65536

struct fx;
typedef void (*client_fn)(struct fx *f);

struct fx {
    uv_loop_t loop;
    uv_async_t client_done;
    uv_timer_t timer;      /* deferred responses and checks on the loop */
    uv_timer_t stop_timer; /* stops the server from outside a callback chain */
    struct http_config cfg;
    struct http_server *srv;
    int port;
    client_fn client;
    bool stopped;
    bool stop_done;
    /* loop side */
    int nreq;
    int inflight, max_inflight;
    struct http_req *parked;
    char seen[8][256]; /* per request: what the handler saw */
    int detached_responded;
    /* shared with the client thread */
    atomic_int parked_count;
    atomic_int aborts;
    atomic_int aborts_before_stop;
    atomic_int measured;
    /* client side */
    char out[4][OUT_CAP];
    size_t outlen[4];
    bool eof[4];
    long elapsed_ms;
    size_t heap_per_conn;
    size_t heap0;
};

static size_t heap_used(void);

/* ---- blocking client helpers (client thread) ------------------------------------------ */

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int cl_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 5};
    struct sockaddr_in a;

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A connection from a chosen source address ("127.0.0.2", "::1") to the server's host. */
static int cl_connect_from(struct fx *f, const char *src)
{
    bool v6 = strchr(f->cfg.host, ':') != NULL;
    struct sockaddr_storage from, to;
    socklen_t len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    struct timeval tv = {.tv_sec = 5};
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    memset(&from, 0, sizeof from);
    memset(&to, 0, sizeof to);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&from, *b = (struct sockaddr_in6 *)&to;
        a->sin6_family = b->sin6_family = AF_INET6;
        inet_pton(AF_INET6, src, &a->sin6_addr);
        inet_pton(AF_INET6, f->cfg.host, &b->sin6_addr);
        b->sin6_port = htons((uint16_t)f->port);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&from, *b = (struct sockaddr_in *)&to;
        a->sin_family = b->sin_family = AF_INET;
        inet_pton(AF_INET, src, &a->sin_addr);
        inet_pton(AF_INET, f->cfg.host, &b->sin_addr);
        b->sin_port = htons((uint16_t)f->port);
    }
    if (bind(fd, (struct sockaddr *)&from, len) < 0 ||
        connect(fd, (struct sockaddr *)&to, len) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void cl_send_n(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void cl_send(int fd, const char *s)
{
    cl_send_n(fd, s, strlen(s));
}

/* Reads until EOF, error or the 5 s timeout. */
static size_t cl_read_all(int fd, char *buf, size_t cap, bool *eof)
{
    size_t n = 0;
    *eof = false;
    while (n + 1 < cap) {
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r == 0)
            *eof = true;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

/* Reads one response: the head, then Content-Length bytes of body. */
static size_t cl_read_one(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    while (n + 1 < cap) {
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            const char *cl = strstr(buf, "Content-Length: ");
            size_t want =
                (size_t)(end + 4 - buf) + (cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0);
            if (n >= want)
                break;
        }
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
        buf[n] = '\0';
    }
    return n;
}

static void wait_for(atomic_int *v, int want)
{
    for (int i = 0; i < 500 && atomic_load(v) < want; i++)
        usleep(10000);
}

/* ---- fixture (loop thread) ------------------------------------------------------------- */

static void *client_main(void *arg)
{
    struct fx *f = arg;
    f->client(f);
    uv_async_send(&f->client_done);
    return NULL;
}

static void on_stopped(void *data)
{
    struct fx *f = data;
    f->stop_done = true;
}

static void fx_stop(struct fx *f)
{
    if (f->stopped)
        return;
    f->stopped = true;
    http_server_stop(f->srv, on_stopped, f);
}

static void on_client_done(uv_async_t *a)
{
    struct fx *f = a->data;
    fx_stop(f);
    uv_close((uv_handle_t *)&f->client_done, NULL);
    uv_close((uv_handle_t *)&f->timer, NULL);
    uv_close((uv_handle_t *)&f->stop_timer, NULL);
}

static void fx_run(struct fx *f, http_handler_cb handler, client_fn client)
{
    char err[BASE_ERRMSG_LEN];
    pthread_t th;

    assert_int_equal(uv_loop_init(&f->loop), 0);
    if (!f->cfg.host)
        f->cfg.host = "127.0.0.1";
    assert_int_equal(uv_async_init(&f->loop, &f->client_done, on_client_done), 0);
    f->client_done.data = f;
    uv_timer_init(&f->loop, &f->timer);
    f->timer.data = f;
    uv_timer_init(&f->loop, &f->stop_timer);
    f->stop_timer.data = f;
    assert_int_equal(http_server_start(&f->loop, &f->cfg, handler, f, &f->srv, err), 0);
    f->port = http_server_port(f->srv);
    assert_true(f->port > 0);
    f->client = client;
    f->heap0 = heap_used();
    assert_int_equal(pthread_create(&th, NULL, client_main, f), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    assert_true(f->stop_done);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static struct fx *fx_new(void)
{
    struct fx *f = calloc(1, sizeof *f);
    atomic_init(&f->parked_count, 0);
    atomic_init(&f->aborts, 0);
    atomic_init(&f->aborts_before_stop, 0);
    atomic_init(&f->measured, 0);
    return f;
}

/* ---- handlers -------------------------------------------------------------------------- */

/* Answers with what it saw, one "key=value" line each. */
static void respond_echo(struct fx *f, struct http_req *r)
{
    struct base_arena *a = http_req_arena(r);
    size_t blen;
    const char *body = http_req_body(r, &blen);
    const char *h = http_req_header(r, "x-TEST");
    char *txt = base_arena_printf(a, "method=%s\npath=%s\nraw=%s\nheader=%s\nbody=%s\nblen=%zu\n",
                                  http_req_method(r), http_req_path(r), http_req_raw_path(r),
                                  h ? h : "(null)", body, blen);
    for (size_t i = 0; i < http_req_query_count(r); i++) {
        const char *n = http_req_query_name(r, i);
        txt = base_arena_printf(a, "%sq[%s]=%s\n", txt, n, http_req_query(r, n));
    }
    txt = base_arena_printf(a, "%speer=%s\n", txt, http_req_peer(r));
    if (f->nreq <= (int)BASE_ARRAY_LEN(f->seen))
        snprintf(f->seen[f->nreq - 1], sizeof f->seen[0], "%s", http_req_path(r));
    http_resp_header(r, "X-Consul-Index", "7");
    http_resp_header(r, "X-Evil", "a\r\nInjected: 1");
    http_resp_header(r, "Bad Name", "x");
    http_respond(r, 200, "text/plain", txt, strlen(txt));
}

static void h_echo(void *data, struct http_req *r)
{
    struct fx *f = data;
    f->nreq++;
    respond_echo(f, r);
}

/* ---- simple requests ------------------------------------------------------------------- */

static void cl_get_query(struct fx *f)
{
    int fd = cl_connect(f->port);
    cl_send(fd, "GET /v1/kv/a%20b%2Fc?stale&index=5&wait=&x=a%2Bb+c&bad=%zz&k%20y=v&&z HTTP/1.1\r\n"
                "Host: x\r\nX-Test: Hello\r\nConnection: close\r\n\r\n");
    f->outlen[0] = cl_read_all(fd, f->out[0], OUT_CAP, &f->eof[0]);
    close(fd);
}

static void test_get_query_and_decoding(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    fx_run(f, h_echo, cl_get_query);
    const char *o = f->out[0];
    assert_int_equal(f->nreq, 1);
    assert_true(f->eof[0]);
    assert_non_null(strstr(o, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(o, "\r\nContent-Type: text/plain\r\n"));
    assert_non_null(strstr(o, "\r\nContent-Length: "));
    assert_non_null(strstr(o, "\r\nDate: "));
    assert_non_null(strstr(o, "\r\nConnection: close\r\n"));
    assert_non_null(strstr(o, "\r\nX-Consul-Index: 7\r\n"));
    assert_non_null(strstr(o, "\r\nX-Evil: a  Injected: 1\r\n")); /* no header splitting */
    assert_null(strstr(o, "Bad Name"));
    assert_non_null(strstr(o, "method=GET\n"));
    assert_non_null(strstr(o, "path=/v1/kv/a b/c\n"));
    assert_non_null(strstr(o, "raw=/v1/kv/a%20b%2Fc\n"));
    assert_non_null(strstr(o, "header=Hello\n"));
    assert_non_null(strstr(o, "q[stale]=\n"));
    assert_non_null(strstr(o, "q[index]=5\n"));
    assert_non_null(strstr(o, "q[wait]=\n"));
    assert_non_null(strstr(o, "q[x]=a+b+c\n"));
    assert_non_null(strstr(o, "q[k y]=v\n"));
    assert_non_null(strstr(o, "q[z]=\n"));
    assert_null(strstr(o, "q[bad]")); /* a malformed pair is dropped */
    assert_non_null(strstr(o, "peer=127.0.0.1:"));
    assert_non_null(strstr(o, "body=\nblen=0\n"));
    free(f);
}

static void cl_put_body(struct fx *f)
{
    int fd = cl_connect(f->port);
    cl_send(fd, "PUT /v1/kv/k?flags=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
                "Connection: close\r\n\r\nhello");
    usleep(20000); /* the body arrives in two reads */
    cl_send(fd, " world");
    f->outlen[0] = cl_read_all(fd, f->out[0], OUT_CAP, &f->eof[0]);
    close(fd);
    /* chunked, with a trailer */
    fd = cl_connect(f->port);
    cl_send(fd,
            "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            "5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n");
    f->outlen[1] = cl_read_all(fd, f->out[1], OUT_CAP, &f->eof[1]);
    close(fd);
}

static void test_put_with_body(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    fx_run(f, h_echo, cl_put_body);
    assert_int_equal(f->nreq, 2);
    assert_non_null(strstr(f->out[0], "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(f->out[0], "method=PUT\n"));
    assert_non_null(strstr(f->out[0], "body=hello world\nblen=11\n"));
    assert_non_null(strstr(f->out[0], "q[flags]=3\n"));
    assert_non_null(strstr(f->out[1], "method=POST\n"));
    assert_non_null(strstr(f->out[1], "body=hello!\nblen=6\n"));
    free(f);
}

static void cl_keepalive(struct fx *f)
{
    int fd = cl_connect(f->port);
    cl_send(fd, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
    f->outlen[0] = cl_read_one(fd, f->out[0], OUT_CAP);
    cl_send(fd, "GET /two HTTP/1.1\r\nHost: x\r\n\r\n");
    f->outlen[1] = cl_read_one(fd, f->out[1], OUT_CAP);
    cl_send(fd, "GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    f->outlen[2] = cl_read_all(fd, f->out[2], OUT_CAP, &f->eof[2]);
    close(fd);
    /* HTTP/1.0: closes unless keep-alive is asked for, and then says so */
    fd = cl_connect(f->port);
    cl_send(fd, "GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    f->outlen[3] = cl_read_one(fd, f->out[3], OUT_CAP);
    cl_send(fd, "GET /ten2 HTTP/1.0\r\n\r\n");
    size_t n = strlen(f->out[3]);
    cl_read_all(fd, f->out[3] + n, OUT_CAP - n, &f->eof[3]);
    close(fd);
}

static void test_keepalive_two_requests(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    fx_run(f, h_echo, cl_keepalive);
    assert_int_equal(f->nreq, 5);
    assert_non_null(strstr(f->out[0], "path=/one\n"));
    assert_null(strstr(f->out[0], "Connection:"));
    assert_non_null(strstr(f->out[1], "path=/two\n"));
    assert_null(strstr(f->out[1], "Connection:"));
    assert_non_null(strstr(f->out[2], "path=/three\n"));
    assert_non_null(strstr(f->out[2], "Connection: close\r\n"));
    assert_true(f->eof[2]);
    assert_non_null(strstr(f->out[3], "Connection: keep-alive\r\n"));
    assert_non_null(strstr(f->out[3], "path=/ten\n"));
    assert_non_null(strstr(f->out[3], "path=/ten2\n"));
    assert_true(f->eof[3]);
    free(f);
}

/* ---- pipelining and deferred responses ------------------------------------------------- */

static void on_deferred(uv_timer_t *t)
{
    struct fx *f = t->data;
    struct http_req *r = f->parked;
    f->parked = NULL;
    f->inflight--;
    respond_echo(f, r);
}

/* Parks /a and /slow for a while, answers everything else at once. */
static void h_park_some(void *data, struct http_req *r)
{
    struct fx *f = data;
    f->nreq++;
    f->inflight++;
    if (f->inflight > f->max_inflight)
        f->max_inflight = f->inflight;
    if (strcmp(http_req_path(r), "/a") == 0 || strcmp(http_req_path(r), "/slow") == 0) {
        f->parked = r;
        uv_timer_start(&f->timer, on_deferred, 100, 0);
        return;
    }
    f->inflight--;
    respond_echo(f, r);
}

static void cl_pipeline(struct fx *f)
{
    int fd = cl_connect(f->port);
    cl_send(fd, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                "PUT /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
                "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    f->outlen[0] = cl_read_all(fd, f->out[0], OUT_CAP, &f->eof[0]);
    close(fd);
}

static void test_pipelined_in_order(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    fx_run(f, h_park_some, cl_pipeline);
    assert_int_equal(f->nreq, 3);
    assert_int_equal(f->max_inflight, 1);
    assert_true(f->eof[0]);
    const char *a = strstr(f->out[0], "path=/a\n");
    const char *b = strstr(f->out[0], "path=/b\n");
    const char *c = strstr(f->out[0], "path=/c\n");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a < b && b < c);
    assert_non_null(strstr(f->out[0], "body=hi\n"));
    free(f);
}

/* A client that half-closes after pipelining still gets every answer. */
static void cl_half_close(struct fx *f)
{
    int fd = cl_connect(f->port);
    cl_send(fd, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    shutdown(fd, SHUT_WR);
    f->outlen[0] = cl_read_all(fd, f->out[0], OUT_CAP, &f->eof[0]);
    close(fd);
}

static void test_half_close_after_pipelined(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    fx_run(f, h_park_some, cl_half_close);
    assert_int_equal(f->nreq, 2);
    assert_true(f->eof[0]);
    const char *a = strstr(f->out[0], "path=/a\n");
    const char *b = strstr(f->out[0], "path=/b\n");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a < b);
    assert_null(memmem(f->out[0], (size_t)(a - f->out[0]), "Connection:", 11));
    assert_non_null(strstr(a, "Connection: close\r\n")); /* the last answer closes */
    free(f);
}

static void cl_slow(struct fx *f)
{
    long t0 = now_ms();
    int fd = cl_connect(f->port);
    cl_send(fd, "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    f->outlen[0] = cl_read_all(fd, f->out[0], OUT_CAP, &f->eof[0]);
    f->elapsed_ms = now_ms() - t0;
    close(fd);
}

static void test_deferred_response(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    fx_run(f, h_park_some, cl_slow);
    assert_int_equal(f->nreq, 1);
    assert_non_null(strstr(f->out[0], "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(f->out[0], "path=/slow\n"));
    assert_true(f->elapsed_ms >= 90);
    free(f);
}

/* ---- aborts ---------------------------------------------------------------------------- */

static void on_abort(void *data, struct http_req *r)
{
    struct fx *f = data;
    assert_ptr_equal(r, f->parked);
    f->parked = NULL;
    /* answering from the abort callback is harmless */
    http_respond_text(r, 500, "gone");
    atomic_fetch_add(&f->aborts, 1);
    if (!f->stopped)
        atomic_fetch_add(&f->aborts_before_stop, 1);
}

static void h_park_abort(void *data, struct http_req *r)
{
    struct fx *f = data;
    f->nreq++;
    f->parked = r;
    /* the arena is usable and lives as long as the request */
    memset(base_arena_alloc(http_req_arena(r), 100), 0, 100);
    http_req_set_abort(r, on_abort, f);
    atomic_fetch_add(&f->parked_count, 1);
}

static void cl_disconnect(struct fx *f)
{
    int fd = cl_connect(f->port);
    cl_send(fd, "GET /v1/health/service/web?index=9&wait=5m HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_for(&f->parked_count, 1);
    close(fd);
    wait_for(&f->aborts, 1);
}

static void test_disconnect_while_parked_aborts(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    fx_run(f, h_park_abort, cl_disconnect);
    assert_int_equal(f->nreq, 1);
    assert_int_equal(atomic_load(&f->aborts), 1);
    assert_int_equal(atomic_load(&f->aborts_before_stop), 1);
    assert_null(f->parked);
    free(f);
}

static void on_stop_timer(uv_timer_t *t)
{
    struct fx *f = t->data;
    fx_stop(f);
}

static void h_park_then_stop(void *data, struct http_req *r)
{
    struct fx *f = data;
    h_park_abort(data, r);
    uv_timer_start(&f->stop_timer, on_stop_timer, 0, 0);
}

static void cl_wait_eof(struct fx *f)
{
    int fd = cl_connect(f->port);
    cl_send(fd, "GET /parked HTTP/1.1\r\nHost: x\r\n\r\n");
    f->outlen[0] = cl_read_all(fd, f->out[0], OUT_CAP, &f->eof[0]);
    close(fd);
}

static void test_stop_aborts_parked(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    fx_run(f, h_park_then_stop, cl_wait_eof);
    assert_int_equal(atomic_load(&f->aborts), 1);
    assert_int_equal(atomic_load(&f->aborts_before_stop), 0);
    assert_true(f->eof[0]);
    assert_int_equal(f->outlen[0], 0);
    free(f);
}

/* Without an abort callback, a request whose connection died stays valid until answered. */
static void h_park_no_abort(void *data, struct http_req *r)
{
    struct fx *f = data;
    f->nreq++;
    f->parked = r;
    atomic_fetch_add(&f->parked_count, 1);
}

static void on_check_detached(uv_timer_t *t)
{
    struct fx *f = t->data;
    if (http_server_conns(f->srv) != 0)
        return;
    uv_timer_stop(t);
    /* still readable, and answering frees it */
    assert_string_equal(http_req_path(f->parked), "/detach");
    assert_string_equal(http_req_query(f->parked, "q"), "1");
    http_respond(f->parked, 200, NULL, "x", 1);
    f->parked = NULL;
    f->detached_responded = 1;
    atomic_fetch_add(&f->aborts, 1);
}

static void h_park_detach(void *data, struct http_req *r)
{
    struct fx *f = data;
    h_park_no_abort(data, r);
    uv_timer_start(&f->timer, on_check_detached, 5, 5);
}

static void cl_disconnect_detach(struct fx *f)
{
    int fd = cl_connect(f->port);
    cl_send(fd, "GET /detach?q=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_for(&f->parked_count, 1);
    close(fd);
    wait_for(&f->aborts, 1);
}

static void test_detached_request_stays_valid(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    fx_run(f, h_park_detach, cl_disconnect_detach);
    assert_int_equal(f->detached_responded, 1);
    free(f);
}

/* A handler may stop the server: its request is aborted once it returns, or answered. */
static void h_stop_inside(void *data, struct http_req *r)
{
    struct fx *f = data;
    f->nreq++;
    fx_stop(f);
    if (strcmp(http_req_path(r), "/answer") == 0) {
        http_respond(r, 200, NULL, "late", 4); /* detached by the stop: just freed */
        return;
    }
    f->parked = r;
    http_req_set_abort(r, on_abort, f); /* still valid after the stop, until we return */
    assert_int_equal(atomic_load(&f->aborts), 0);
}

static void cl_stop_inside(struct fx *f)
{
    int fd = cl_connect(f->port);
    cl_send(fd, "GET /park HTTP/1.1\r\nHost: x\r\n\r\n");
    f->outlen[0] = cl_read_all(fd, f->out[0], OUT_CAP, &f->eof[0]);
    close(fd);
}

static void cl_stop_inside_answer(struct fx *f)
{
    int fd = cl_connect(f->port);
    cl_send(fd, "GET /answer HTTP/1.1\r\nHost: x\r\n\r\n");
    f->outlen[0] = cl_read_all(fd, f->out[0], OUT_CAP, &f->eof[0]);
    close(fd);
}

static void test_stop_inside_handler(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    fx_run(f, h_stop_inside, cl_stop_inside);
    assert_int_equal(f->nreq, 1);
    assert_int_equal(atomic_load(&f->aborts), 1);
    assert_null(f->parked);
    assert_true(f->eof[0]);
    free(f);
    f = fx_new();
    fx_run(f, h_stop_inside, cl_stop_inside_answer);
    assert_int_equal(f->nreq, 1);
    assert_int_equal(atomic_load(&f->aborts), 0);
    assert_true(f->eof[0]);
    assert_int_equal(f->outlen[0], 0);
    free(f);
}

/* ---- limits and errors ----------------------------------------------------------------- */

static void cl_too_big(struct fx *f)
{
    int fd = cl_connect(f->port);
    cl_send(fd, "PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
    f->outlen[0] = cl_read_all(fd, f->out[0], OUT_CAP, &f->eof[0]);
    close(fd);
    fd = cl_connect(f->port);
    cl_send(fd, "PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n");
    f->outlen[1] = cl_read_all(fd, f->out[1], OUT_CAP, &f->eof[1]);
    close(fd);
    fd = cl_connect(f->port);
    char big[2048];
    memset(big, 'x', sizeof big);
    big[sizeof big - 1] = '\0';
    cl_send(fd, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    cl_send(fd, big);
    cl_send(fd, "\r\n\r\n");
    f->outlen[2] = cl_read_all(fd, f->out[2], OUT_CAP, &f->eof[2]);
    close(fd);
}

static void test_limits_413_431(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->cfg.max_body = 16;
    f->cfg.max_header_bytes = 1024;
    fx_run(f, h_echo, cl_too_big);
    assert_int_equal(f->nreq, 0);
    assert_non_null(strstr(f->out[0], "HTTP/1.1 413 Request Entity Too Large\r\n"));
    assert_non_null(strstr(f->out[0], "Connection: close\r\n"));
    assert_non_null(strstr(f->out[0], "\r\n\r\nRequest body too large\n"));
    assert_true(f->eof[0]);
    assert_non_null(strstr(f->out[1], "HTTP/1.1 413 "));
    assert_true(f->eof[1]);
    assert_non_null(strstr(f->out[2], "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    assert_true(f->eof[2]);
    free(f);
}

static void cl_body_limits(struct fx *f)
{
    static const char *const reqs[4] = {
        "PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nConnection: close\r\n\r\n",
        "PUT /up?stale HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: "
        "close\r\n\r\n",
        "PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\nConnection: close\r\n\r\n",
        "PUT /up/x HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nConnection: close\r\n\r\n",
    };
    char body[66];
    memset(body, 'b', sizeof body);
    body[sizeof body - 1] = '\0';
    for (int i = 0; i < 4; i++) {
        int fd = cl_connect(f->port);
        cl_send(fd, reqs[i]);
        if (i == 1) {
            cl_send(fd, "28\r\n");
            body[40] = '\0';
            cl_send(fd, body);
            body[40] = 'b';
            cl_send(fd, "\r\n0\r\n\r\n");
        } else {
            body[i == 2 ? 65 : 40] = '\0';
            cl_send(fd, body);
            body[i == 2 ? 65 : 40] = 'b';
        }
        f->outlen[i] = cl_read_all(fd, f->out[i], OUT_CAP, &f->eof[i]);
        close(fd);
    }
}

/* A path with its own body limit: larger bodies there (with a query, chunked too), the
 * server's limit on every other path, even one below it. */
static void test_body_limit_per_path(void **state)
{
    (void)state;
    static const struct http_body_limit limits[] = {{"/up", 64, 0}};
    struct fx *f = fx_new();
    f->cfg.max_body = 16;
    f->cfg.body_limits = limits;
    f->cfg.n_body_limits = 1;
    fx_run(f, h_echo, cl_body_limits);
    assert_int_equal(f->nreq, 2);
    assert_non_null(strstr(f->out[0], "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(f->out[0], "blen=40\n"));
    assert_non_null(strstr(f->out[1], "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(f->out[1], "blen=40\n"));
    assert_non_null(strstr(f->out[2], "HTTP/1.1 413 "));
    assert_non_null(strstr(f->out[3], "HTTP/1.1 413 "));
    free(f);
}

static void cl_malformed(struct fx *f)
{
    int fd = cl_connect(f->port);
    cl_send(fd, "GARBAGE\r\n\r\n");
    f->outlen[0] = cl_read_all(fd, f->out[0], OUT_CAP, &f->eof[0]);
    close(fd);
    fd = cl_connect(f->port);
    cl_send(fd, "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n");
    f->outlen[1] = cl_read_all(fd, f->out[1], OUT_CAP, &f->eof[1]);
    close(fd);
    fd = cl_connect(f->port);
    cl_send(fd, "GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n");
    f->outlen[2] = cl_read_all(fd, f->out[2], OUT_CAP, &f->eof[2]);
    close(fd);
}

static void test_malformed_gets_400_and_close(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    fx_run(f, h_echo, cl_malformed);
    assert_int_equal(f->nreq, 0);
    for (int i = 0; i < 3; i++) {
        assert_non_null(strstr(f->out[i], "HTTP/1.1 400 Bad Request\r\n"));
        assert_non_null(strstr(f->out[i], "\r\n\r\nBad Request\n"));
        assert_true(f->eof[i]);
    }
    free(f);
}

static void cl_timeouts(struct fx *f)
{
    long t0 = now_ms();
    int a = cl_connect(f->port);
    int b = cl_connect(f->port);
    cl_send(a, "GET / HTTP/1.1\r\nHost: x\r\n");
    f->outlen[0] = cl_read_all(a, f->out[0], OUT_CAP, &f->eof[0]);
    f->outlen[1] = cl_read_all(b, f->out[1], OUT_CAP, &f->eof[1]);
    f->elapsed_ms = now_ms() - t0;
    close(a);
    close(b);
    /* keep-alive idle */
    a = cl_connect(f->port);
    cl_send(a, "GET /idle HTTP/1.1\r\nHost: x\r\n\r\n");
    f->outlen[2] = cl_read_all(a, f->out[2], OUT_CAP, &f->eof[2]);
    close(a);
}

static void test_header_and_idle_timeouts(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->cfg.header_timeout_ms = 200;
    f->cfg.idle_timeout_ms = 300;
    fx_run(f, h_echo, cl_timeouts);
    assert_non_null(strstr(f->out[0], "HTTP/1.1 408 Request Timeout\r\n"));
    assert_true(f->eof[0]);
    assert_int_equal(f->outlen[1], 0); /* nothing sent: closed without a response */
    assert_true(f->eof[1]);
    assert_true(f->elapsed_ms < 2000);
    assert_non_null(strstr(f->out[2], "path=/idle\n")); /* answered, then closed when idle */
    assert_true(f->eof[2]);
    assert_int_equal(f->nreq, 1);
    free(f);
}

static void cl_max_conns(struct fx *f)
{
    int a = cl_connect(f->port);
    int b = cl_connect(f->port);
    int c = cl_connect(f->port);
    f->outlen[0] = cl_read_all(c, f->out[0], OUT_CAP, &f->eof[0]);
    close(c);
    cl_send(a, "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    f->outlen[1] = cl_read_all(a, f->out[1], OUT_CAP, &f->eof[1]);
    cl_send(b, "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    f->outlen[2] = cl_read_all(b, f->out[2], OUT_CAP, &f->eof[2]);
    close(a);
    close(b);
}

static void test_max_conns(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->cfg.max_conns = 2;
    fx_run(f, h_echo, cl_max_conns);
    assert_int_equal(f->outlen[0], 0);
    assert_true(f->eof[0]);
    assert_non_null(strstr(f->out[1], "path=/a\n"));
    assert_non_null(strstr(f->out[2], "path=/b\n"));
    assert_int_equal(f->nreq, 2);
    free(f);
}

static void cl_expect(struct fx *f)
{
    int fd = cl_connect(f->port);
    cl_send(fd, "PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    f->outlen[0] = cl_read_one(fd, f->out[0], OUT_CAP); /* the interim response only */
    cl_send(fd, "abcde");
    f->outlen[1] = cl_read_one(fd, f->out[1], OUT_CAP);
    close(fd);
    /* over the limit: 413 instead of 100 */
    fd = cl_connect(f->port);
    cl_send(fd,
            "PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
    f->outlen[2] = cl_read_all(fd, f->out[2], OUT_CAP, &f->eof[2]);
    close(fd);
}

static void test_expect_100_continue(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->cfg.max_body = 1000;
    fx_run(f, h_echo, cl_expect);
    assert_string_equal(f->out[0], "HTTP/1.1 100 Continue\r\n\r\n");
    assert_non_null(strstr(f->out[1], "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(f->out[1], "body=abcde\n"));
    assert_int_equal(strncmp(f->out[2], "HTTP/1.1 413 ", 13), 0);
    assert_true(f->eof[2]);
    free(f);
}

/* HEAD gets the length but no body; 204 carries neither. */
static void h_status(void *data, struct http_req *r)
{
    struct fx *f = data;
    f->nreq++;
    if (strcmp(http_req_path(r), "/204") == 0)
        http_respond(r, 204, NULL, "ignored", 7);
    else
        http_respond_text(r, 404, "no such thing");
}

static void cl_status(struct fx *f)
{
    int fd = cl_connect(f->port);
    cl_send(fd, "HEAD /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    f->outlen[0] = cl_read_all(fd, f->out[0], OUT_CAP, &f->eof[0]);
    close(fd);
    fd = cl_connect(f->port);
    cl_send(fd, "DELETE /204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    f->outlen[1] = cl_read_all(fd, f->out[1], OUT_CAP, &f->eof[1]);
    close(fd);
    fd = cl_connect(f->port);
    cl_send(fd, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    f->outlen[2] = cl_read_all(fd, f->out[2], OUT_CAP, &f->eof[2]);
    close(fd);
}

static void test_head_204_and_text_errors(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    fx_run(f, h_status, cl_status);
    assert_non_null(strstr(f->out[0], "HTTP/1.1 404 Not Found\r\n"));
    assert_non_null(strstr(f->out[0], "Content-Length: 14\r\n"));
    assert_non_null(strstr(f->out[0], "\r\n\r\n"));
    assert_string_equal(strstr(f->out[0], "\r\n\r\n"), "\r\n\r\n");
    assert_non_null(strstr(f->out[1], "HTTP/1.1 204 No Content\r\n"));
    assert_null(strstr(f->out[1], "Content-Length"));
    assert_string_equal(strstr(f->out[1], "\r\n\r\n"), "\r\n\r\n");
    assert_non_null(strstr(f->out[2], "Content-Type: text/plain; charset=utf-8\r\n"));
    assert_non_null(strstr(f->out[2], "\r\n\r\nno such thing\n"));
    free(f);
}

/* ---- start errors, stop without traffic ------------------------------------------------ */

static void noop_handler(void *data, struct http_req *r)
{
    (void)data;
    http_respond(r, 200, NULL, NULL, 0);
}

static void on_done_flag(void *data)
{
    *(bool *)data = true;
}

static void test_start_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct http_server *a = NULL, *b = NULL;
    struct http_config cfg = {.host = "127.0.0.1"};
    char err[BASE_ERRMSG_LEN];
    bool done = false;

    assert_int_equal(uv_loop_init(&loop), 0);
    cfg.host = "not-an-ip";
    assert_true(http_server_start(&loop, &cfg, noop_handler, NULL, &a, err) < 0);
    assert_string_equal(err, "listen not-an-ip:0: not an IP address");
    cfg.host = "127.0.0.1";
    assert_int_equal(http_server_start(&loop, &cfg, noop_handler, NULL, &a, err), 0);
    cfg.port = http_server_port(a);
    int rc = http_server_start(&loop, &cfg, noop_handler, NULL, &b, err);
    assert_int_equal(rc, UV_EADDRINUSE);
    assert_null(b);
    char want[BASE_ERRMSG_LEN];
    snprintf(want, sizeof want, "listen 127.0.0.1:%d: address already in use", cfg.port);
    assert_string_equal(err, want);
    assert_int_equal(http_server_conns(a), 0);
    http_server_stop(a, on_done_flag, &done);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(done);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_ipv6_listen(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct http_server *s = NULL;
    struct http_config cfg = {.host = "::1"};
    char err[BASE_ERRMSG_LEN];
    bool done = false;

    assert_int_equal(uv_loop_init(&loop), 0);
    int rc = http_server_start(&loop, &cfg, noop_handler, NULL, &s, err);
    if (rc == 0) {
        assert_true(http_server_port(s) > 0);
        http_server_stop(s, on_done_flag, &done);
    } else {
        print_message("no IPv6 loopback here: %s\n", err);
        done = true;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(done);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- per-client connection cap, body timeout, chunk sizes, Host and version ------------- */

/* A request on fd answered 200 and kept alive: the server accepted (and counts) fd. */
static bool cl_served(int fd)
{
    char buf[4096];
    cl_send(fd, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
    size_t n = cl_read_one(fd, buf, sizeof buf);
    return n > 0 && strncmp(buf, "HTTP/1.1 200 ", 13) == 0;
}

/* A connection the server closes at once: EOF (or a reset) with no bytes. */
static bool cl_refused(int fd)
{
    char buf[64];
    cl_send(fd, "GET /no HTTP/1.1\r\nHost: x\r\n\r\n");
    return recv(fd, buf, sizeof buf, 0) <= 0;
}

static void cl_per_client(struct fx *f)
{
    const char *me = strchr(f->cfg.host, ':') ? "::1" : "127.0.0.1";
    int a = cl_connect_from(f, me), b = cl_connect_from(f, me);
    f->outlen[0] = (size_t)cl_served(a) + (size_t)cl_served(b);
    int c = cl_connect_from(f, me);
    f->outlen[1] = (size_t)cl_refused(c);
    close(c);
    if (!strchr(f->cfg.host, ':')) { /* another client address is not affected */
        int d = cl_connect_from(f, "127.0.0.2");
        f->outlen[2] = (size_t)cl_served(d);
        close(d);
    } else {
        f->outlen[2] = 1;
    }
    /* a closed connection frees its slot (once the server has seen the close) */
    close(a);
    f->outlen[3] = 0;
    for (int i = 0; i < 200 && !f->outlen[3]; i++) {
        int e = cl_connect_from(f, me);
        f->outlen[3] = (size_t)cl_served(e);
        close(e);
        if (!f->outlen[3])
            usleep(10000);
    }
    close(b);
}

static void test_max_conns_per_client(void **state)
{
    (void)state;
    const char *hosts[] = {"127.0.0.1", "::1"};
    for (size_t i = 0; i < BASE_ARRAY_LEN(hosts); i++) {
        struct fx *f = fx_new();
        f->cfg.host = hosts[i];
        f->cfg.max_conns_per_client = 2;
        int probe = socket(i ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        if (i && bind(probe, (struct sockaddr *)&lo6, sizeof lo6) < 0) {
            print_message("no IPv6 loopback here\n");
            close(probe);
            free(f);
            continue;
        }
        close(probe);
        fx_run(f, h_echo, cl_per_client);
        assert_int_equal(f->outlen[0], 2);
        assert_int_equal(f->outlen[1], 1);
        assert_int_equal(f->outlen[2], 1);
        assert_int_equal(f->outlen[3], 1);
        free(f);
    }
}

static void cl_trickle(struct fx *f)
{
    long t0 = now_ms();
    int fd = cl_connect(f->port);
    cl_send(fd, "PUT /t HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n");
    struct timeval tv = {.tv_usec = 50000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    /* one byte per 50 ms, each well inside the idle timeout, the whole far over the body
     * timeout: answered 408 once the body timeout has run out */
    for (int i = 0; i < 40; i++) {
        cl_send(fd, "x");
        ssize_t r = recv(fd, f->out[0], OUT_CAP - 1, 0);
        if (r >= 0) {
            f->outlen[0] = (size_t)r;
            f->out[0][r] = '\0';
            break;
        }
    }
    f->elapsed_ms = now_ms() - t0;
    close(fd);
}

static void test_body_timeout(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->cfg.body_timeout_ms = 400;
    f->cfg.idle_timeout_ms = 5000;
    fx_run(f, h_echo, cl_trickle);
    assert_int_equal(f->nreq, 0);
    assert_non_null(strstr(f->out[0], "HTTP/1.1 408 Request Timeout\r\n"));
    assert_true(f->elapsed_ms >= 350 && f->elapsed_ms < 1900);
    free(f);
}

static void cl_chunk_sizes(struct fx *f)
{
    /* no chunk data follows: the answer comes from the size line alone */
    static const char *const reqs[3] = {
        "PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n",
        "PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "a\r\n0123456789\r\n7\r\n",
        "PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "ffffffffffffffff\r\n",
    };
    for (int i = 0; i < 3; i++) {
        long t0 = now_ms();
        int fd = cl_connect(f->port);
        cl_send(fd, reqs[i]);
        f->outlen[i] = cl_read_all(fd, f->out[i], OUT_CAP, &f->eof[i]);
        if (now_ms() - t0 > f->elapsed_ms)
            f->elapsed_ms = now_ms() - t0;
        close(fd);
    }
}

static void test_chunk_size_over_limit_413_at_once(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->cfg.max_body = 16;
    fx_run(f, h_echo, cl_chunk_sizes);
    assert_int_equal(f->nreq, 0);
    for (int i = 0; i < 3; i++) {
        assert_non_null(strstr(f->out[i], "HTTP/1.1 413 "));
        assert_true(f->eof[i]);
    }
    assert_true(f->elapsed_ms < 2000); /* not the 5 s read timeout */
    free(f);
}

static void cl_versions(struct fx *f)
{
    static const char *const reqs[8] = {
        "GET /nohost HTTP/1.1\r\n\r\n",
        "GET /twohosts HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
        "GET /v2 HTTP/2.0\r\nHost: x\r\n\r\n",
        "GET /v3 HTTP/3.0\r\nHost: x\r\n\r\n",
        "GET /v09 HTTP/0.9\r\nHost: x\r\n\r\n",
        "GET /v1x HTTP/1.x\r\nHost: x\r\n\r\n",
        "GET /ten HTTP/1.0\r\n\r\n",
        "GET /emptyhost HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
    };
    for (int i = 0; i < 8; i++) {
        int fd = cl_connect(f->port);
        cl_send(fd, reqs[i]);
        bool eof;
        char *o = f->out[i % 4];
        size_t off = strlen(o);
        cl_read_all(fd, o + off, OUT_CAP / 2 - off, &eof);
        o[strlen(o)] = '\0';
        strcat(o, "|");
        close(fd);
    }
}

static void test_host_and_version(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    fx_run(f, h_echo, cl_versions);
    /* out[i % 4] holds answers i and i + 4, separated by "|" */
    assert_int_equal(strncmp(f->out[0], "HTTP/1.1 400 Bad Request\r\n", 26), 0);
    assert_non_null(strstr(f->out[0], "\r\n\r\nBad Request: missing required Host header\n|"));
    assert_non_null(strstr(f->out[1], "\r\n\r\nBad Request: too many Host headers\n|"));
    assert_int_equal(strncmp(f->out[2], "HTTP/1.1 505 HTTP Version Not Supported\r\n", 41), 0);
    assert_non_null(strstr(f->out[2], "\r\n\r\nHTTP Version Not Supported\n|"));
    assert_int_equal(strncmp(f->out[3], "HTTP/1.1 505 ", 13), 0);
    /* 0.9 is 505 too; a malformed version 400 */
    assert_non_null(strstr(f->out[0], "|HTTP/1.1 505 "));
    assert_non_null(strstr(f->out[1], "|HTTP/1.1 400 "));
    /* HTTP/1.0 needs no Host; an empty Host is a Host (RFC 9112 §3.2) */
    assert_non_null(strstr(f->out[2], "|HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(f->out[2], "path=/ten\n"));
    assert_non_null(strstr(f->out[3], "|HTTP/1.1 200 OK\r\n"));
    assert_int_equal(f->nreq, 2);
    free(f);
}

/* ---- memory of parked requests --------------------------------------------------------- */

#define NPARK 1000

static size_t heap_used(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void on_abort_count(void *data, struct http_req *r)
{
    struct fx *f = data;
    (void)r;
    atomic_fetch_add(&f->aborts, 1);
}

static void h_park_count(void *data, struct http_req *r)
{
    struct fx *f = data;
    f->nreq++;
    http_req_set_abort(r, on_abort_count, f);
    if (f->nreq == NPARK) {
        f->heap_per_conn = (heap_used() - f->heap0) / NPARK;
        atomic_store(&f->measured, 1);
    }
}

static void cl_many(struct fx *f)
{
    static int fds[NPARK];
    for (int i = 0; i < NPARK; i++) {
        fds[i] = cl_connect(f->port);
        cl_send(fds[i], "GET /v1/health/service/web?index=42&wait=10m HTTP/1.1\r\n"
                        "Host: 127.0.0.1:8500\r\nUser-Agent: python-consul\r\n"
                        "Accept: */*\r\n\r\n");
    }
    wait_for(&f->measured, 1);
    for (int i = 0; i < NPARK; i++)
        close(fds[i]);
    wait_for(&f->aborts, NPARK);
}

static void test_parked_requests_are_small(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->cfg.max_conns_per_client = NPARK;
    fx_run(f, h_park_count, cl_many);
    assert_int_equal(f->nreq, NPARK);
    assert_int_equal(atomic_load(&f->aborts), NPARK);
#if !defined(__SANITIZE_ADDRESS__) /* ASan's allocator is invisible to mallinfo2 */
    print_message("heap per parked connection: %zu bytes\n", f->heap_per_conn);
    assert_true(f->heap_per_conn < 3000);
#endif
    free(f);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the daemon does */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_query_and_decoding),
        cmocka_unit_test(test_put_with_body),
        cmocka_unit_test(test_keepalive_two_requests),
        cmocka_unit_test(test_pipelined_in_order),
        cmocka_unit_test(test_half_close_after_pipelined),
        cmocka_unit_test(test_deferred_response),
        cmocka_unit_test(test_disconnect_while_parked_aborts),
        cmocka_unit_test(test_stop_aborts_parked),
        cmocka_unit_test(test_detached_request_stays_valid),
        cmocka_unit_test(test_stop_inside_handler),
        cmocka_unit_test(test_limits_413_431),
        cmocka_unit_test(test_body_limit_per_path),
        cmocka_unit_test(test_malformed_gets_400_and_close),
        cmocka_unit_test(test_header_and_idle_timeouts),
        cmocka_unit_test(test_max_conns),
        cmocka_unit_test(test_expect_100_continue),
        cmocka_unit_test(test_head_204_and_text_errors),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_ipv6_listen),
        cmocka_unit_test(test_max_conns_per_client),
        cmocka_unit_test(test_body_timeout),
        cmocka_unit_test(test_chunk_size_over_limit_413_at_once),
        cmocka_unit_test(test_host_and_version),
        cmocka_unit_test(test_parked_requests_are_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
