/* admin/http: an HTTP/1.1 server on libuv with llhttp in strict mode, and a small blocking
 * client for the CLI. It knows nothing of Consul: it parses requests, enforces limits and
 * timeouts, and writes the responses its handler gives, now or later (long polls).
 *
 * Threads: the server runs on the loop it is started on; every function on a request runs on
 * that loop. The client is blocking and is for the CLI only.
 *
 * Ownership: a struct http_req is owned by the server. It stays valid from the handler call
 * until the handler's code calls http_respond, or until the abort callback returns if the
 * connection dies first (the request must then never be used again). Strings returned from a
 * request live as long as the request.
 *
 * Limits and errors are answered by the server itself: malformed HTTP 400 and close; an
 * HTTP/1.1 request without exactly one Host header 400 (RFC 9112 §3.2); an HTTP version other
 * than 1.0 and 1.1 505; headers over max_header_bytes 431; a body over max_body 413 (decided
 * from Content-Length, or from each chunk-size line, before the body bytes are read); the head
 * must arrive within header_timeout and the whole body within body_timeout of the head (408);
 * the idle timeout closes a quiet connection; over max_conns, or over max_conns_per_client from
 * one IP address, new connections are closed at once. A path listed in body_limits has its own
 * body limit and body timeout (uploads such as a snapshot restore).
 * Requests on one connection are answered in order: reading pauses while one is in flight.
 */
#ifndef HERALD_HTTP_H
#define HERALD_HTTP_H

#include "base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct http_server;
struct http_req;

/* A larger (or smaller) body limit for one path, matched exactly against the request target
 * as sent, without its query. */
struct http_body_limit {
    const char *path;
    size_t max_body;
    unsigned body_timeout_ms; /* 0: the server's body_timeout_ms */
};

struct http_config {
    const char *host;              /* listen address, e.g. "127.0.0.1" (IPv4 or IPv6 literal) */
    int port;                      /* 0 picks a free port (see http_server_port) */
    size_t max_body;               /* default 1 MiB when 0 */
    size_t max_header_bytes;       /* default 64 KiB when 0 */
    unsigned header_timeout_ms;    /* default 10 s when 0: the whole head must arrive in this */
    unsigned idle_timeout_ms;      /* default 60 s when 0: keep-alive idle */
    unsigned body_timeout_ms;      /* default 30 s when 0: the whole body must arrive in this */
    unsigned max_conns;            /* default 4096 when 0 */
    unsigned max_conns_per_client; /* default 200 when 0: per client IP address */
    /* Per-path body limits (borrowed: they must outlive the server). */
    const struct http_body_limit *body_limits;
    size_t n_body_limits;
};

/* Called once per complete request, on the loop thread. */
typedef void (*http_handler_cb)(void *data, struct http_req *req);
/* Called when a request's connection dies before its response was given. */
typedef void (*http_abort_cb)(void *data, struct http_req *req);

/* Binds and listens. Loop thread. errmsg names what failed ("listen 127.0.0.1:8500: address
 * already in use"). */
int http_server_start(uv_loop_t *loop, const struct http_config *cfg, http_handler_cb handler,
                      void *data, struct http_server **out, char *errmsg) BASE_MUSTCHECK;
int http_server_port(const struct http_server *s);
/* Stops listening, aborts parked requests (abort callbacks run), closes every connection,
 * then calls done (may be NULL) and frees the server. Loop thread. */
void http_server_stop(struct http_server *s, void (*done)(void *), void *data);
unsigned http_server_conns(const struct http_server *s);

/* ---- request accessors ----------------------------------------------------------------- */
const char *http_req_method(const struct http_req *r); /* "GET", "PUT", ... */
/* The path, percent-decoded ("/v1/kv/a b"), without the query string. */
const char *http_req_path(const struct http_req *r);
/* The raw path as sent, without the query (for KV keys where %2F matters). */
const char *http_req_raw_path(const struct http_req *r);
/* A query parameter, percent-decoded: NULL when absent, "" for "?stale" or "?stale=". */
const char *http_req_query(const struct http_req *r, const char *name);
/* Number of query parameters and the i-th name (for rejecting unknown ones). */
size_t http_req_query_count(const struct http_req *r);
const char *http_req_query_name(const struct http_req *r, size_t i);
/* A header's value (case-insensitive name), NULL when absent. */
const char *http_req_header(const struct http_req *r, const char *name);
const char *http_req_body(const struct http_req *r, size_t *len); /* NUL-terminated too */
/* The peer's address as text. */
const char *http_req_peer(const struct http_req *r);
/* An arena that lives as long as the request. */
struct base_arena *http_req_arena(struct http_req *r);

void http_req_set_abort(struct http_req *r, http_abort_cb cb, void *data);

/* ---- responding ------------------------------------------------------------------------ */
/* Adds a response header (copied). Call before http_respond. */
void http_resp_header(struct http_req *r, const char *name, const char *value);
/* Sends the response (body copied; Content-Length set; Connection handled) and releases the
 * request. content_type may be NULL for none. Loop thread. */
void http_respond(struct http_req *r, int status, const char *content_type, const void *body,
                  size_t len);
/* Shorthand for a text/plain one-line error: body is msg plus "\n". */
void http_respond_text(struct http_req *r, int status, const char *msg);

/* ---- blocking client (CLI) ------------------------------------------------------------- */
struct http_client_resp {
    int status;
    char *body; /* NUL-terminated, base_malloc'd: the caller frees with base_free */
    size_t body_len;
    char *headers; /* raw header block, base_malloc'd */
};
/* One request to host:port over a fresh connection, waiting at most timeout_ms.
 * body may be NULL. errmsg names connection or protocol failures. */
int http_client_do(const char *host, int port, const char *method, const char *target,
                   const char *body, size_t body_len, unsigned timeout_ms,
                   struct http_client_resp *resp, char *errmsg) BASE_MUSTCHECK;
void http_client_resp_free(struct http_client_resp *resp);

/* Percent-decodes s into the arena; "+" stays "+". NULL when an escape is malformed. */
char *http_url_decode(struct base_arena *a, const char *s, size_t n);

#endif
