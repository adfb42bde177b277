/* Tests admin/http/client.c: http_client_do against the real server (on its own loop, the
 * client on a thread) and against canned responses from a one-shot socket server (chunked,
 * EOF-delimited, interim 100, malformed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin/http/http.h"

#define BIG (2 * 1024 * 1024)

/* ---- against the server ---------------------------------------------------------------- */

struct call {
    const char *method;
    const char *target;
    const char *body;
    size_t body_len;
    unsigned timeout_ms;
    int rc;
    struct http_client_resp resp;
    char err[BASE_ERRMSG_LEN];
};

struct fx {
    uv_loop_t loop;
    uv_async_t client_done;
    struct http_server *srv;
    int port;
    struct call calls[8];
    size_t ncalls;
    struct http_req *parked;
    bool stopped;
};

static void *client_main(void *arg)
{
    struct fx *f = arg;
    for (size_t i = 0; i < f->ncalls; i++) {
        struct call *c = &f->calls[i];
        c->rc = http_client_do("127.0.0.1", f->port, c->method, c->target, c->body, c->body_len,
                               c->timeout_ms ? c->timeout_ms : 5000, &c->resp, c->err);
    }
    uv_async_send(&f->client_done);
    return NULL;
}

static void on_stopped(void *data)
{
    struct fx *f = data;
    f->stopped = true;
}

static void on_client_done(uv_async_t *a)
{
    struct fx *f = a->data;
    http_server_stop(f->srv, on_stopped, f);
    uv_close((uv_handle_t *)&f->client_done, NULL);
}

static void on_abort(void *data, struct http_req *r)
{
    struct fx *f = data;
    (void)r;
    f->parked = NULL;
}

/* /echo answers method, body length and body; /big answers BIG bytes; /park never answers. */
static void handler(void *data, struct http_req *r)
{
    struct fx *f = data;
    size_t blen;
    const char *body = http_req_body(r, &blen);

    if (strcmp(http_req_path(r), "/park") == 0) {
        f->parked = r;
        http_req_set_abort(r, on_abort, f);
        return;
    }
    if (strcmp(http_req_path(r), "/big") == 0) {
        char *b = malloc(BIG);
        for (size_t i = 0; i < BIG; i++)
            b[i] = (char)('a' + i % 26);
        http_respond(r, 200, "application/octet-stream", b, BIG);
        free(b);
        return;
    }
    const char *host = http_req_header(r, "Host");
    char *txt = base_arena_printf(http_req_arena(r), "%s %s host=%s x=%s len=%zu first=%c",
                                  http_req_method(r), http_req_path(r), host ? host : "",
                                  http_req_query(r, "x") ? http_req_query(r, "x") : "", blen,
                                  blen ? body[0] : '-');
    http_resp_header(r, "X-Consul-Index", "12");
    http_respond(r, 200, "text/plain", txt, strlen(txt));
}

static void fx_run(struct fx *f, size_t max_body)
{
    char err[BASE_ERRMSG_LEN];
    struct http_config cfg = {.host = "127.0.0.1", .max_body = max_body};
    pthread_t th;

    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_async_init(&f->loop, &f->client_done, on_client_done);
    f->client_done.data = f;
    assert_int_equal(http_server_start(&f->loop, &cfg, handler, f, &f->srv, err), 0);
    f->port = http_server_port(f->srv);
    assert_int_equal(pthread_create(&th, NULL, client_main, f), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    assert_true(f->stopped);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void fx_free(struct fx *f)
{
    for (size_t i = 0; i < f->ncalls; i++)
        http_client_resp_free(&f->calls[i].resp);
    free(f);
}

static void test_get_and_put_against_server(void **state)
{
    (void)state;
    struct fx *f = calloc(1, sizeof *f);
    char *big = malloc(100 * 1024);
    memset(big, 'B', 100 * 1024);
    f->calls[0] = (struct call){.method = "GET", .target = "/echo?x=a%20b"};
    f->calls[1] =
        (struct call){.method = "PUT", .target = "/echo", .body = big, .body_len = 100 * 1024};
    f->calls[2] = (struct call){.method = "PUT", .target = "/echo"}; /* no body */
    f->calls[3] = (struct call){.method = "GET", .target = "/big"};
    f->calls[4] = (struct call){.method = "HEAD", .target = "/big"};
    f->ncalls = 5;
    fx_run(f, 0);

    char want[128];
    struct call *c = &f->calls[0];
    assert_int_equal(c->rc, 0);
    assert_int_equal(c->resp.status, 200);
    snprintf(want, sizeof want, "GET /echo host=127.0.0.1:%d x=a b len=0 first=-", f->port);
    assert_string_equal(c->resp.body, want);
    assert_int_equal(c->resp.body_len, strlen(want));
    assert_non_null(strstr(c->resp.headers, "X-Consul-Index: 12\r\n"));
    assert_non_null(strstr(c->resp.headers, "Content-Type: text/plain\r\n"));
    c = &f->calls[1];
    assert_int_equal(c->rc, 0);
    assert_int_equal(c->resp.status, 200);
    assert_non_null(strstr(c->resp.body, "PUT /echo "));
    assert_non_null(strstr(c->resp.body, " len=102400 first=B"));
    c = &f->calls[2];
    assert_int_equal(c->rc, 0);
    assert_non_null(strstr(c->resp.body, " len=0 first=-"));
    c = &f->calls[3];
    assert_int_equal(c->rc, 0);
    assert_int_equal(c->resp.body_len, BIG);
    assert_int_equal(c->resp.body[BIG - 1], 'a' + (BIG - 1) % 26);
    assert_int_equal(c->resp.body[BIG], '\0');
    c = &f->calls[4];
    assert_int_equal(c->rc, 0);
    assert_int_equal(c->resp.status, 200);
    assert_int_equal(c->resp.body_len, 0);
    free(big);
    fx_free(f);
}

static void test_timeout_and_413(void **state)
{
    (void)state;
    struct fx *f = calloc(1, sizeof *f);
    char *big = calloc(1, 300 * 1024);
    f->calls[0] = (struct call){.method = "GET", .target = "/park", .timeout_ms = 300};
    f->calls[1] =
        (struct call){.method = "PUT", .target = "/echo", .body = big, .body_len = 300 * 1024};
    f->ncalls = 2;
    fx_run(f, 1024);

    struct call *c = &f->calls[0];
    assert_int_equal(c->rc, -ETIMEDOUT);
    char want[128];
    snprintf(want, sizeof want, "127.0.0.1:%d: timed out waiting for the response", f->port);
    assert_string_equal(c->err, want);
    assert_null(c->resp.body);
    c = &f->calls[1];
    assert_int_equal(c->rc, 0);
    assert_int_equal(c->resp.status, 413);
    assert_string_equal(c->resp.body, "Request body too large\n");
    assert_null(f->parked); /* the timed-out request was aborted */
    free(big);
    fx_free(f);
}

static void test_connection_refused(void **state)
{
    (void)state;
    struct http_client_resp resp;
    char err[BASE_ERRMSG_LEN];
    struct sockaddr_in a;
    socklen_t al = sizeof a;

    /* a port that was free a moment ago */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &al);
    int port = ntohs(a.sin_port);
    close(fd);
    int rc = http_client_do("127.0.0.1", port, "GET", "/", NULL, 0, 1000, &resp, err);
    assert_int_equal(rc, -ECONNREFUSED);
    char want[128];
    snprintf(want, sizeof want, "connect 127.0.0.1:%d: connection refused", port);
    assert_string_equal(err, want);
    http_client_resp_free(&resp); /* safe after a failure */
}

/* ---- against canned responses ---------------------------------------------------------- */

struct canned {
    int lfd;
    int port;
    const char *reply;
    char request[4096];
    pthread_t th;
};

static void *canned_main(void *arg)
{
    struct canned *cn = arg;
    int fd = accept(cn->lfd, NULL, NULL);
    size_t n = 0;
    if (fd < 0)
        return NULL;
    cn->request[0] = '\0';
    while (!strstr(cn->request, "\r\n\r\n") && n + 1 < sizeof cn->request) {
        ssize_t r = recv(fd, cn->request + n, sizeof cn->request - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
        cn->request[n] = '\0';
    }
    send(fd, cn->reply, strlen(cn->reply), MSG_NOSIGNAL);
    close(fd);
    return NULL;
}

static void canned_start(struct canned *cn, const char *reply)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    cn->lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(bind(cn->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(cn->lfd, 4), 0);
    getsockname(cn->lfd, (struct sockaddr *)&a, &al);
    cn->port = ntohs(a.sin_port);
    cn->reply = reply;
    assert_int_equal(pthread_create(&cn->th, NULL, canned_main, cn), 0);
}

static int canned_do(struct canned *cn, const char *host, const char *reply,
                     struct http_client_resp *resp, char *err)
{
    canned_start(cn, reply);
    int rc = http_client_do(host, cn->port, "GET", "/x", NULL, 0, 2000, resp, err);
    pthread_join(cn->th, NULL);
    close(cn->lfd);
    return rc;
}

static void test_chunked_and_interim(void **state)
{
    (void)state;
    struct canned cn;
    struct http_client_resp resp;
    char err[BASE_ERRMSG_LEN];

    int rc = canned_do(&cn, "127.0.0.1",
                       "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
                       "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n"
                       "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                       &resp, err);
    assert_int_equal(rc, 0);
    assert_int_equal(resp.status, 201);
    assert_string_equal(resp.body, "hello world");
    assert_int_equal(resp.body_len, 11);
    assert_string_equal(resp.headers, "Transfer-Encoding: chunked\r\nX-A: b\r\n");
    assert_non_null(strstr(cn.request, "GET /x HTTP/1.1\r\n"));
    assert_non_null(strstr(cn.request, "Connection: close\r\n"));
    assert_null(strstr(cn.request, "Content-Length"));
    http_client_resp_free(&resp);
}

static void test_eof_delimited_body_and_names(void **state)
{
    (void)state;
    struct canned cn;
    struct http_client_resp resp;
    char err[BASE_ERRMSG_LEN];

    /* "localhost" goes through getaddrinfo; the canned server listens on IPv4 only, so an
     * IPv6 ::1 answer first must fall through to 127.0.0.1. */
    int rc = canned_do(&cn, "localhost", "HTTP/1.0 200 OK\r\n\r\nuntil the end", &resp, err);
    assert_int_equal(rc, 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body, "until the end");
    char want[64];
    snprintf(want, sizeof want, "Host: localhost:%d\r\n", cn.port);
    assert_non_null(strstr(cn.request, want));
    http_client_resp_free(&resp);
}

static void test_bad_responses(void **state)
{
    (void)state;
    struct canned cn;
    struct http_client_resp resp;
    char err[BASE_ERRMSG_LEN];

    int rc = canned_do(&cn, "127.0.0.1", "NOT HTTP AT ALL\r\n\r\n", &resp, err);
    assert_int_equal(rc, BASE_EPARSE);
    assert_non_null(strstr(err, "malformed response"));
    assert_null(resp.body);
    rc = canned_do(&cn, "127.0.0.1", "", &resp, err);
    assert_int_equal(rc, BASE_EPARSE);
    assert_non_null(strstr(err, "connection closed without a response"));
    rc = canned_do(&cn, "127.0.0.1", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", &resp,
                   err);
    assert_true(rc < 0);
    assert_non_null(strstr(err, "malformed response") ? strstr(err, "malformed response")
                                                      : strstr(err, "mid-response"));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the daemon does */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_and_put_against_server),
        cmocka_unit_test(test_timeout_and_413),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_chunked_and_interim),
        cmocka_unit_test(test_eof_delimited_body_and_names),
        cmocka_unit_test(test_bad_responses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
