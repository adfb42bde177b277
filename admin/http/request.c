/* Requests and responses: a request is built once its message is complete, as one allocation
 * holding the parsed strings (headers, decoded path, query parameters, body), so a parked long
 * poll costs a few hundred bytes plus what its handler puts in the request's arena (which
 * allocates nothing until first used). Responses are formatted into one write request that
 * owns a copy of the body. */
#include "admin/http/internal.h"

#include <stdalign.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

const char *http__reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Request Entity Too Large";
    case 414:
        return "Request URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

static const char *hdr_find(const struct http__kv *kv, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (base_strcasecmp(kv[i].name, name) == 0)
            return kv[i].value;
    return NULL;
}

/* Splits a request target into path and query: origin-form "/p?q", absolute-form
 * "http://host/p?q" (RFC 7230 §5.3.2: a server must accept it), or anything else ("*") as
 * a path. A fragment is never sent, but is cut off if it is. */
static void split_target(const char *url, const char **path, size_t *plen, const char **query,
                         size_t *qlen)
{
    const char *p = url;

    if (*p != '/') {
        const char *sch = strstr(p, "://");
        if (sch && !memchr(p, '/', (size_t)(sch - p))) {
            p = sch + 3;
            p += strcspn(p, "/?#");
        }
    }
    size_t n = strcspn(p, "?#");
    *path = p;
    *plen = n;
    *query = "";
    *qlen = 0;
    if (p[n] == '?') {
        *query = p + n + 1;
        *qlen = strcspn(*query, "#");
    }
}

/* Parses name=value&... into kv, decoding each part into *mem. Pairs with a malformed escape
 * are dropped, as Go's net/url does for Consul. Returns the number kept. */
static size_t parse_query(const char *q, size_t qlen, struct http__kv *kv, char **mem)
{
    size_t n = 0;
    const char *end = q + qlen;

    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *seg_end = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(seg_end - q));
        const char *name_end = eq ? eq : seg_end;
        if (seg_end > q) {
            char *name = *mem;
            long nl = http__url_decode_into(name, q, (size_t)(name_end - q));
            if (nl >= 0) {
                char *value = name + nl + 1;
                long vl = 0;
                if (eq)
                    vl = http__url_decode_into(value, eq + 1, (size_t)(seg_end - eq - 1));
                else
                    value[0] = '\0';
                if (vl >= 0) {
                    kv[n].name = name;
                    kv[n].value = value;
                    n++;
                    *mem = value + vl + 1;
                }
            }
        }
        q = amp ? amp + 1 : end;
    }
    return n;
}

struct http_req *http__req_new(struct http__conn *c)
{
    const char *url = (const char *)c->acc.data;
    const char *path, *query;
    size_t plen, qlen;

    split_target(url, &path, &plen, &query, &qlen);
    size_t qmax = 0;
    if (qlen) {
        qmax = 1;
        for (size_t i = 0; i < qlen; i++)
            qmax += query[i] == '&';
    }
    size_t peer_len = strlen(c->peer);
    size_t kv_bytes = (c->nheaders + qmax) * sizeof(struct http__kv);
    size_t str_bytes = (c->acc.len + 1) + 2 * (plen + 1) + (qlen + 2 * qmax) + (peer_len + 1);
    struct http_req *r = base_malloc(sizeof *r + kv_bytes + str_bytes);
    _Static_assert(sizeof(struct http_req) % alignof(struct http__kv) == 0, "kv alignment");

    memset(r, 0, sizeof *r);
    base_arena_init(&r->arena);
    base_buf_init(&r->resp_hdrs);
    r->hdrs = (struct http__kv *)(r + 1);
    r->query = r->hdrs + c->nheaders;
    char *mem = (char *)(r->query + qmax);

    /* The parsed bytes: URL, header records, body; the copy is NUL-terminated for the body. */
    char *acc = mem;
    memcpy(acc, c->acc.data, c->acc.len);
    acc[c->acc.len] = '\0';
    mem += c->acc.len + 1;
    /* The target's pointers move to the copy. */
    path = acc + (path - url);
    query = acc + (query - url);
    const char *h = acc + strlen(acc) + 1;
    for (size_t i = 0; i < c->nheaders; i++) {
        r->hdrs[i].name = h;
        h += strlen(h) + 1;
        r->hdrs[i].value = h;
        h += strlen(h) + 1;
    }
    r->nhdrs = c->nheaders;
    r->body = acc + c->body_off;
    r->body_len = c->acc.len - c->body_off;

    char *raw = mem;
    memcpy(raw, path, plen);
    raw[plen] = '\0';
    mem += plen + 1;
    r->raw_path = raw;
    if (http__url_decode_into(mem, path, plen) < 0) {
        http__req_free(r);
        return NULL;
    }
    r->path = mem;
    mem += plen + 1;
    r->nquery = parse_query(query, qlen, r->query, &mem);
    memcpy(mem, c->peer, peer_len + 1);
    r->peer = mem;

    r->method = llhttp_method_name((llhttp_method_t)c->parser.method);
    r->head = c->parser.method == HTTP_HEAD;
    r->http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
    r->keep_alive = c->keep_alive;
    r->conn = c;
    return r;
}

void http__req_free(struct http_req *r)
{
    base_arena_close(&r->arena);
    base_buf_free(&r->resp_hdrs);
    base_free(r);
}

void http__req_abort(struct http_req *r)
{
    r->conn = NULL;
    if (!r->abort_cb)
        return; /* detached: its http_respond frees it */
    r->aborting = true;
    r->abort_cb(r->abort_data, r);
    http__req_free(r);
}

/* ---- accessors ------------------------------------------------------------------------- */

const char *http_req_method(const struct http_req *r)
{
    return r->method;
}

const char *http_req_path(const struct http_req *r)
{
    return r->path;
}

const char *http_req_raw_path(const struct http_req *r)
{
    return r->raw_path;
}

const char *http_req_query(const struct http_req *r, const char *name)
{
    for (size_t i = 0; i < r->nquery; i++)
        if (strcmp(r->query[i].name, name) == 0)
            return r->query[i].value;
    return NULL;
}

size_t http_req_query_count(const struct http_req *r)
{
    return r->nquery;
}

const char *http_req_query_name(const struct http_req *r, size_t i)
{
    return i < r->nquery ? r->query[i].name : NULL;
}

const char *http_req_header(const struct http_req *r, const char *name)
{
    return hdr_find(r->hdrs, r->nhdrs, name);
}

const char *http_req_body(const struct http_req *r, size_t *len)
{
    if (len)
        *len = r->body_len;
    return r->body;
}

const char *http_req_peer(const struct http_req *r)
{
    return r->peer;
}

struct base_arena *http_req_arena(struct http_req *r)
{
    return &r->arena;
}

void http_req_set_abort(struct http_req *r, http_abort_cb cb, void *data)
{
    r->abort_cb = cb;
    r->abort_data = data;
}

/* ---- responses ------------------------------------------------------------------------- */

/* RFC 7230 §3.2.6 token characters. */
static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 32 || ch >= 127 || strchr("\"(),/:;<=>?@[\\]{}", ch))
            return false;
    }
    return true;
}

void http_resp_header(struct http_req *r, const char *name, const char *value)
{
    /* Names and values may come from request data: a bad name is dropped and line breaks in
     * a value become spaces, so a response can never be split. */
    if (!is_token(name))
        return;
    base_buf_printf(&r->resp_hdrs, "%s: ", name);
    size_t at = r->resp_hdrs.len;
    base_buf_append(&r->resp_hdrs, value, strlen(value));
    for (size_t i = at; i < r->resp_hdrs.len; i++)
        if (r->resp_hdrs.data[i] == '\r' || r->resp_hdrs.data[i] == '\n')
            r->resp_hdrs.data[i] = ' ';
    base_buf_append(&r->resp_hdrs, "\r\n", 2);
}

/* RFC 7231 §7.1.1.1 IMF-fixdate, without the locale strftime would use. */
static void http_date(char out[32])
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    snprintf(out, 32, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

struct http__wreq *http__resp_build(int status, const char *content_type,
                                    const struct base_buf *extra, const void *body, size_t len,
                                    bool close, bool keep_alive_10, bool head)
{
    struct base_buf h;
    char date[32];

    if (status < 100 || status > 999)
        status = 500;
    /* RFC 7230 §3.3.2-3.3.3: no body and no Content-Length for 1xx, 204 and 304. */
    bool bodyless = status < 200 || status == 204 || status == 304;
    if (bodyless || head)
        body = NULL;
    http_date(date);
    base_buf_init(&h);
    base_buf_printf(&h, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, http__reason(status), date);
    if (content_type)
        base_buf_printf(&h, "Content-Type: %s\r\n", content_type);
    if (!bodyless)
        base_buf_printf(&h, "Content-Length: %zu\r\n", len);
    if (extra && extra->len)
        base_buf_append(&h, extra->data, extra->len);
    if (close)
        base_buf_printf(&h, "Connection: close\r\n");
    else if (keep_alive_10)
        base_buf_printf(&h, "Connection: keep-alive\r\n");
    base_buf_append(&h, "\r\n", 2);

    size_t blen = body ? len : 0;
    struct http__wreq *w = http__wreq_new(h.len + blen);
    memcpy(w->data, h.data, h.len);
    if (blen)
        memcpy(w->data + h.len, body, blen);
    base_buf_free(&h);
    return w;
}

/* A big response (a full catalog can be tens of MB) is written from its own mapping, so that
 * its memory goes back to the system as soon as it is written: from glibc's heap, freed
 * blocks of that size mostly stay with the process (its mmap threshold rises to the size of
 * the largest block freed). */
#define WREQ_MMAP_MIN (1u << 20)

struct http__wreq *http__wreq_new(size_t len)
{
    struct http__wreq *w;
    size_t total = sizeof *w + len;
    if (total >= WREQ_MMAP_MIN) {
        void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) {
            w = p;
            w->mapped = total;
            w->len = len;
            w->conn = NULL;
            return w;
        }
    }
    w = base_malloc(total);
    w->mapped = 0;
    w->len = len;
    w->conn = NULL;
    return w;
}

void http__wreq_free(struct http__wreq *w)
{
    if (w && w->mapped)
        munmap(w, w->mapped);
    else
        base_free(w);
}

void http_respond(struct http_req *r, int status, const char *content_type, const void *body,
                  size_t len)
{
    BASE_ASSERT_LOOP();
    if (r->aborting) {
        r->responded = true; /* the connection is gone; the abort path frees r */
        return;
    }
    struct http__conn *c = r->conn;
    if (!c) {
        /* Detached: its connection died without an abort callback, or during its handler. */
        if (r->orphan_of)
            r->orphan_of->in_handler = NULL;
        http__req_free(r);
        return;
    }
    bool close = !r->keep_alive || c->srv->stopping || (c->eof && c->pending.len == 0);
    struct http__wreq *w = http__resp_build(status, content_type, &r->resp_hdrs, body, len, close,
                                            r->http10 && r->keep_alive, r->head);
    c->req = NULL;
    if (c->srv->in_handler == r)
        c->srv->in_handler = NULL;
    http__req_free(r);
    http__conn_write_response(c, w, close);
}

void http_respond_text(struct http_req *r, int status, const char *msg)
{
    size_t n = strlen(msg);
    char *b = base_malloc(n + 1);
    memcpy(b, msg, n);
    b[n] = '\n';
    http_respond(r, status, "text/plain; charset=utf-8", b, n + 1);
    base_free(b);
}
