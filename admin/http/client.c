/* The blocking client for the CLI: one request over a fresh connection with Connection: close,
 * every step bounded by one deadline (poll on a non-blocking socket), the response parsed with
 * llhttp as it arrives. */
#include "admin/http/internal.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLIENT_MAX_BODY ((size_t)256 * 1024 * 1024)

struct cparse {
    struct base_buf hdrs;
    struct base_buf body;
    int status;
    bool head; /* the request was HEAD: the response has no body whatever it says */
    bool done;
    bool too_big;
};

static struct cparse *cparse_of(llhttp_t *p)
{
    return p->data;
}

/* A piece of a header's name or value (either one: the completions add the separators). */
static int c_on_header_data(llhttp_t *p, const char *at, size_t n)
{
    base_buf_append(&cparse_of(p)->hdrs, at, n);
    return 0;
}

static int c_on_header_field_complete(llhttp_t *p)
{
    base_buf_append(&cparse_of(p)->hdrs, ": ", 2);
    return 0;
}

static int c_on_header_value_complete(llhttp_t *p)
{
    base_buf_append(&cparse_of(p)->hdrs, "\r\n", 2);
    return 0;
}

static int c_on_headers_complete(llhttp_t *p)
{
    struct cparse *cp = cparse_of(p);
    cp->status = p->status_code;
    if (cp->status < 200) {
        cp->hdrs.len = 0; /* an interim response (100 Continue): the real one follows */
        return 0;
    }
    return cp->head ? 1 : 0;
}

static int c_on_body(llhttp_t *p, const char *at, size_t n)
{
    struct cparse *cp = cparse_of(p);
    if (cp->body.len + n > CLIENT_MAX_BODY) {
        cp->too_big = true;
        return HPE_USER;
    }
    base_buf_append(&cp->body, at, n);
    return 0;
}

static int c_on_message_complete(llhttp_t *p)
{
    struct cparse *cp = cparse_of(p);
    if (cp->status < 200)
        return 0;
    cp->done = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t client_settings = {
    .on_header_field = c_on_header_data,
    .on_header_field_complete = c_on_header_field_complete,
    .on_header_value = c_on_header_data,
    .on_header_value_complete = c_on_header_value_complete,
    .on_headers_complete = c_on_headers_complete,
    .on_body = c_on_body,
    .on_message_complete = c_on_message_complete,
};

/* Milliseconds left before the deadline, 0 when it has passed. */
static int remaining(uint64_t deadline)
{
    uint64_t now = base_now_ms();
    if (now >= deadline)
        return 0;
    uint64_t left = deadline - now;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Waits for events on fd until the deadline. 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        int left = remaining(deadline);
        if (left == 0)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

static int connect_one(const struct addrinfo *ai, uint64_t deadline, int *out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        rc = errno == EINPROGRESS ? 0 : -errno;
        if (rc == 0)
            rc = wait_fd(fd, POLLOUT, deadline);
        if (rc == 0) {
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                rc = -errno;
            else
                rc = -err;
        }
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

static int send_all(int fd, const uint8_t *p, size_t n, uint64_t deadline)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(fd, POLLOUT, deadline);
            if (rc < 0)
                return rc;
            continue;
        }
        return -errno;
    }
    return 0;
}

/* Reads and parses until the response is complete. */
static int read_response(int fd, llhttp_t *parser, struct cparse *cp, uint64_t deadline,
                         char *errmsg, const char *what)
{
    char buf[16384];
    size_t total = 0;

    while (!cp->done) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(fd, POLLIN, deadline);
            if (rc == -ETIMEDOUT)
                return base_errf(errmsg, rc, "%s: timed out waiting for the response", what);
            if (rc < 0)
                return base_errf(errmsg, rc, "%s: %s", what, uv_strerror(rc));
            continue;
        }
        if (r < 0)
            return base_errf(errmsg, -errno, "%s: %s", what, uv_strerror(-errno));
        llhttp_errno_t e;
        if (r == 0) {
            if (total == 0)
                return base_errf(errmsg, BASE_EPARSE, "%s: connection closed without a response",
                                 what);
            e = llhttp_finish(parser); /* a body delimited by the end of the connection */
            if (e == HPE_OK && !cp->done)
                return base_errf(errmsg, BASE_EPARSE, "%s: connection closed mid-response", what);
        } else {
            total += (size_t)r;
            e = llhttp_execute(parser, buf, (size_t)r);
        }
        if (e == HPE_PAUSED && cp->done)
            break;
        if (cp->too_big)
            return base_errf(errmsg, BASE_ETOOBIG, "%s: response body over %zu bytes", what,
                             CLIENT_MAX_BODY);
        if (e != HPE_OK)
            return base_errf(errmsg, BASE_EPARSE, "%s: malformed response: %s", what,
                             llhttp_get_error_reason(parser));
    }
    return 0;
}

int http_client_do(const char *host, int port, const char *method, const char *target,
                   const char *body, size_t body_len, unsigned timeout_ms,
                   struct http_client_resp *resp, char *errmsg)
{
    uint64_t deadline = base_now_ms() + timeout_ms;
    bool v6 = strchr(host, ':') != NULL;
    char what[BASE_ERRMSG_LEN / 2];
    char portstr[16];
    struct addrinfo hints, *res = NULL;
    int fd = -1, rc;

    memset(resp, 0, sizeof *resp);
    snprintf(what, sizeof what, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
    snprintf(portstr, sizeof portstr, "%d", port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int g = getaddrinfo(host, portstr, &hints, &res);
    if (g != 0)
        return base_errf(errmsg, g == EAI_SYSTEM ? -errno : BASE_ENOTFOUND, "resolve %s: %s", host,
                         gai_strerror(g));
    rc = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        rc = connect_one(ai, deadline, &fd);
        if (rc == 0 || rc == -ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    if (rc == -ETIMEDOUT)
        return base_errf(errmsg, rc, "connect %s: timed out after %u ms", what, timeout_ms);
    if (rc < 0)
        return base_errf(errmsg, rc, "connect %s: %s", what, uv_strerror(rc));

    struct base_buf req;
    base_buf_init(&req);
    base_buf_printf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: herald\r\nAccept: */*\r\n",
                    method, target, what);
    if (body || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0)
        base_buf_printf(&req, "Content-Length: %zu\r\n", body ? body_len : 0);
    base_buf_printf(&req, "Connection: close\r\n\r\n");
    if (body)
        base_buf_append(&req, body, body_len);
    rc = send_all(fd, req.data, req.len, deadline);
    base_buf_free(&req);
    /* A server may answer early (413) and close: its response is still worth reading. */
    if (rc == -ETIMEDOUT) {
        close(fd);
        return base_errf(errmsg, rc, "%s: timed out sending the request", what);
    }

    struct cparse cp;
    llhttp_t parser;
    memset(&cp, 0, sizeof cp);
    base_buf_init(&cp.hdrs);
    base_buf_init(&cp.body);
    cp.head = strcmp(method, "HEAD") == 0;
    llhttp_init(&parser, HTTP_RESPONSE, &client_settings);
    parser.data = &cp;
    int send_rc = rc;
    rc = read_response(fd, &parser, &cp, deadline, errmsg, what);
    close(fd);
    if (rc < 0 && send_rc < 0)
        rc = base_errf(errmsg, send_rc, "%s: %s", what, uv_strerror(send_rc));
    if (rc < 0) {
        base_buf_free(&cp.hdrs);
        base_buf_free(&cp.body);
        return rc;
    }
    base_buf_append(&cp.hdrs, "", 1);
    base_buf_append(&cp.body, "", 1);
    resp->status = cp.status;
    resp->headers = (char *)cp.hdrs.data;
    resp->body = (char *)cp.body.data;
    resp->body_len = cp.body.len - 1;
    return 0;
}

void http_client_resp_free(struct http_client_resp *resp)
{
    base_free(resp->body);
    base_free(resp->headers);
    memset(resp, 0, sizeof *resp);
}
