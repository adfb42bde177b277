/* admin/http internals shared by server.c (connections), request.c (requests and
 * responses), client.c and url.c. Never included from outside admin/http. */
#ifndef HERALD_HTTP_INTERNAL_H
#define HERALD_HTTP_INTERNAL_H

#include "admin/http/http.h"

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP__READ_BUF    (64 * 1024) /* one per server, lent to every read */
#define HTTP__PENDING_CAP (64 * 1024) /* pipelined bytes kept while a request is in flight */
#define HTTP__LINGER_MS   1000        /* how long a closing connection drains input */
#define HTTP__PEER_LEN    64          /* "[v6 address]:port" and a NUL */

/* A client IP address (IPv4 as v4-mapped IPv6) and its open connections. */
struct http__ipcount {
    uint8_t ip[16];
    uint32_t count;
};

struct http__kv {
    const char *name;
    const char *value;
};

enum http__state {
    HTTP__HEAD,    /* reading a request head */
    HTTP__BODY,    /* reading a request body */
    HTTP__HANDLER, /* the handler owns the request; waiting for http_respond */
    HTTP__WRITING, /* the response is queued; waiting for the write callback */
    HTTP__LINGER,  /* write side shut down; draining input until EOF or a timer */
    HTTP__CLOSED,  /* uv_close called; freed once both handles are closed */
};

struct http_server {
    uv_tcp_t listener;
    uv_loop_t *loop;
    size_t max_body;
    const struct http_body_limit *body_limits; /* borrowed from the config */
    size_t n_body_limits;
    size_t max_header_bytes;
    unsigned header_timeout_ms;
    unsigned idle_timeout_ms;
    unsigned body_timeout_ms;
    unsigned max_conns;
    unsigned max_conns_per_client;
    /* Open connections per client IP address: open addressing, linear probing, count 0 is an
     * empty slot; ipc_cap is a power of two (0 before the first connection). */
    struct http__ipcount *ipc;
    size_t ipc_cap, ipc_used;
    int port;
    http_handler_cb handler;
    void *data;
    struct base_list conns; /* open connections (not yet CLOSED; http__conn.link), newest first */
    unsigned nconns;
    unsigned closing; /* handles whose close callback has not run yet */
    bool stopping;
    void (*done)(void *);
    void *done_data;
    char *rbuf; /* HTTP__READ_BUF bytes shared by every connection's reads */
    /* The request whose handler is running; NULL once it was answered during the call. */
    struct http_req *in_handler;
};

struct http__conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    llhttp_t parser;
    struct http_server *srv;
    struct base_list link; /* on srv->conns */
    struct http_req *req;  /* in flight (HANDLER state) */
    /* The request being parsed: URL NUL, then name NUL value NUL per header, then the body
     * from body_off. Freed once the request is built, so idle connections hold nothing. */
    struct base_buf acc;
    size_t body_off;
    size_t body_max;          /* the request's body limit, known once its head is complete */
    unsigned body_timeout_ms; /* the request's body timeout, known with body_max */
    size_t head_bytes;        /* URL and header bytes seen, against max_header_bytes */
    size_t nheaders;
    struct base_buf pending; /* bytes read past the request in flight */
    enum http__state state;
    int err_status;      /* set by a parser callback that refuses the request */
    const char *err_msg; /* its one-line text, NULL for the status's default */
    int open_handles;    /* handles not yet closed: the conn is freed at 0 */
    bool in_body;        /* head complete: header callbacks now see trailers */
    bool complete;       /* a whole request was parsed and awaits dispatch */
    bool keep_alive;     /* of the completed request */
    bool idle;           /* between requests: the idle timer runs until the next byte */
    bool got_bytes;      /* some bytes of the current request arrived */
    bool reading;        /* uv_read_start is in effect */
    bool eof;            /* the peer shut down its write side */
    bool close_after;    /* close once the queued response is written */
    bool ip_counted;     /* ip is counted in the server's per-client table */
    uint8_t ip[16];      /* the peer's address (IPv4 as v4-mapped IPv6) */
    char peer[HTTP__PEER_LEN];
};

struct http_req {
    struct http__conn *conn; /* NULL once the connection died (request detached) */
    struct base_arena arena; /* allocates nothing until first used */
    struct base_buf resp_hdrs;
    http_abort_cb abort_cb;
    void *abort_data;
    const char *method;
    const char *path;
    const char *raw_path;
    const char *peer;
    char *body;
    size_t body_len;
    struct http__kv *hdrs;
    size_t nhdrs;
    struct http__kv *query;
    size_t nquery;
    bool keep_alive;
    bool http10;    /* the request was HTTP/1.0: keep-alive must be said explicitly */
    bool head;      /* HEAD: the response carries no body */
    bool aborting;  /* inside the abort callback: http_respond only marks it answered */
    bool responded; /* http_respond was called during the abort callback */
    /* The connection died while the handler was running (it called http_server_stop): the
     * abort waits until the handler returns. */
    struct http_server *orphan_of;
};

/* A queued write: the uv request and the bytes it sends, in one allocation. */
struct http__wreq {
    uv_write_t req;
    struct http__conn *conn;
    size_t len;
    size_t mapped; /* bytes mmapped for this write (a big response), 0 when from the heap */
    char data[];
};

/* request.c */
/* Builds the request from the connection's parsed bytes. NULL when the target is malformed
 * (a bad escape in the path). */
struct http_req *http__req_new(struct http__conn *c);
void http__req_free(struct http_req *r);
/* The connection died: the abort callback runs and the request is freed, or without a
 * callback the request is detached and freed by its http_respond. */
void http__req_abort(struct http_req *r);
/* A complete response in one write request. keep_alive_10 adds "Connection: keep-alive". */
struct http__wreq *http__resp_build(int status, const char *content_type,
                                    const struct base_buf *extra, const void *body, size_t len,
                                    bool close, bool keep_alive_10, bool head);
/* A write of len bytes (w->data), mmapped when big so that it is given back once written; freed
 * only with http__wreq_free. */
struct http__wreq *http__wreq_new(size_t len);
void http__wreq_free(struct http__wreq *w);
/* "OK", "Not Found", ...; "Unknown" for codes without a phrase. */
const char *http__reason(int status);

/* server.c */
/* Queues a response on a connection in HANDLER state; takes ownership of w. */
void http__conn_write_response(struct http__conn *c, struct http__wreq *w, bool close);

/* url.c */
/* Percent-decodes s[0..n) into dst (room for n + 1 bytes), NUL-terminated. Returns the
 * decoded length, or -1 on a malformed escape or an escaped NUL. */
long http__url_decode_into(char *dst, const char *s, size_t n);

#endif
