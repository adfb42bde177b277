/* The health-check runner: this agent's TTL, TCP and HTTP checks.
 *
 * The catalog is the source of truth. After every commit that touches checks (and at start)
 * adm_checks_sync re-reads this node's checks and keeps one runner entry per TTL/TCP/HTTP
 * check: new checks get a timer, changed definitions are re-armed, vanished ones are dropped.
 * A TTL check's timer restarts on every pass/warn/fail/update through the API
 * (adm_checks_ttl_reset) and, when it fires, the check goes critical with "TTL expired".
 * TCP and HTTP checks probe every Interval (the first probe after a random part of it, so
 * checks registered together do not fire together) with their Timeout.
 *
 * Results are written through Raft like any other write, but only when status or output
 * differ from what the catalog holds, so a steady check costs no writes. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct probe;

struct chk {
    struct adm_checks *owner;
    char *id;
    char type[8];
    uint64_t ttl_ms, interval_ms, timeout_ms;
    char *target; /* TCP "host:port" or HTTP URL */
    char *method;
    uv_timer_t timer;
    struct probe *probe; /* in flight */
    bool seen;
    struct base_list link; /* on owner->list */
};

struct adm_checks {
    uv_loop_t *loop;
    struct zone_store *store;
    struct api *api;
    char *node;
    struct base_list list; /* of struct chk.link, newest first */
    unsigned open_handles;
    bool closing;
    void (*done)(void *);
    void *done_data;
    uint64_t rng;
};

struct probe {
    struct chk *chk; /* NULL once the check went away */
    struct adm_checks *owner;
    uv_getaddrinfo_t gai;
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t wr;
    uv_timer_t timeout;
    char host[256];
    char port[8];
    char *request;
    char resp[512];
    size_t resp_len;
    bool tcp_open, finished;
    bool gai_pending;
    int handles; /* open handles; the probe is freed when none is left and gai is done */
};

static void handle_closed(uv_handle_t *h);

static char *heap_printf(const char *fmt, ...) BASE_PRINTF(1, 2);
static char *heap_printf(const char *fmt, ...)
{
    struct base_buf b;
    va_list ap;
    base_buf_init(&b);
    va_start(ap, fmt);
    char tmp[4096];
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    base_buf_append(&b, tmp, strlen(tmp) + 1);
    return (char *)b.data;
}

/* ---- writing results ------------------------------------------------------------------- */

static void update_cb(void *data, int status, int result, uint64_t index)
{
    BASE_UNUSED(data);
    BASE_UNUSED(index);
    if (status || result)
        LOG_WARN("checks", "updating a check failed: %s", base_strerror(status ? status : result));
}

static void set_status(struct adm_checks *c, const char *id, enum zone_health st,
                       const char *output)
{
    struct zone_read *rd;
    struct base_arena ar;
    struct zone_check cur;
    bool same = false;

    if (c->closing || !c->api)
        return;
    base_arena_init(&ar);
    if (zone_read_begin(c->store, &rd) == 0) {
        if (zone_check_get(rd, c->node, id, &ar, &cur) == 0)
            same = cur.status == st && strcmp(cur.output, output) == 0;
        else
            same = true; /* gone: nothing to update */
        zone_read_end(rd);
    }
    base_arena_close(&ar);
    if (same)
        return;
    LOG_DEBUG("checks", "check %s is now %s: %s", id, zone_health_name(st), output);
    struct zone_cmd cmd = {.type = ZONE_CMD_CHECK_UPDATE};
    cmd.node.name = c->node;
    cmd.check_id = id;
    cmd.status = st;
    cmd.output = output;
    api_propose(c->api, &cmd, update_cb, NULL);
}

/* ---- probes ---------------------------------------------------------------------------- */

static void probe_release(struct probe *p)
{
    if (p->handles || p->gai_pending)
        return;
    if (p->chk)
        p->chk->probe = NULL;
    p->owner->open_handles--;
    base_free(p->request);
    base_free(p);
    handle_closed(NULL);
}

static void probe_closed(uv_handle_t *h)
{
    struct probe *p = h->data;
    p->handles--;
    probe_release(p);
}

static void probe_finish(struct probe *p, enum zone_health st, const char *output)
{
    if (p->finished)
        return;
    p->finished = true;
    if (p->chk && !p->owner->closing)
        set_status(p->owner, p->chk->id, st, output);
    uv_timer_stop(&p->timeout);
    uv_close((uv_handle_t *)&p->timeout, probe_closed);
    if (p->tcp_open)
        uv_close((uv_handle_t *)&p->tcp, probe_closed);
}

static void probe_timeout(uv_timer_t *t)
{
    struct probe *p = t->data;
    char out[512];
    snprintf(out, sizeof out, "%s %s: timed out", p->chk && p->chk->type[0] == 'h' ? "HTTP" : "TCP",
             p->chk ? p->chk->target : "");
    if (p->gai_pending)
        uv_cancel((uv_req_t *)&p->gai);
    probe_finish(p, ZONE_HEALTH_CRITICAL, out);
}

static void http_read_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct probe *p = h->data;
    BASE_UNUSED(suggested);
    if (p->resp_len >= sizeof p->resp - 1) {
        static char sink[4096]; /* we keep only the start of the answer */
        *buf = uv_buf_init(sink, sizeof sink);
        return;
    }
    *buf = uv_buf_init(p->resp + p->resp_len, (unsigned)(sizeof p->resp - 1 - p->resp_len));
}

static void http_eval(struct probe *p, bool eof)
{
    char out[768];
    p->resp[p->resp_len] = '\0';
    char *eol = strstr(p->resp, "\r\n");
    if (!eol && !eof && p->resp_len < sizeof p->resp - 1)
        return; /* wait for the whole status line */
    int code = 0;
    if (sscanf(p->resp, "HTTP/%*d.%*d %d", &code) != 1) {
        snprintf(out, sizeof out, "HTTP %s %s: malformed response", p->chk->method, p->chk->target);
        probe_finish(p, ZONE_HEALTH_CRITICAL, out);
        return;
    }
    if (eol)
        *eol = '\0';
    snprintf(out, sizeof out, "HTTP %s %s: %s", p->chk->method, p->chk->target,
             p->resp + 9 > p->resp + strlen(p->resp) ? "" : p->resp + 9);
    /* Consul: 2xx passing, 429 warning, anything else critical. */
    probe_finish(p,
                 code >= 200 && code < 300 ? ZONE_HEALTH_PASSING
                 : code == 429             ? ZONE_HEALTH_WARNING
                                           : ZONE_HEALTH_CRITICAL,
                 out);
}

static void http_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct probe *p = s->data;
    if (p->finished || !p->chk)
        return;
    if (n > 0 && buf->base == p->resp + p->resp_len)
        p->resp_len += (size_t)n;
    if (n < 0 || p->resp_len > 0)
        http_eval(p, n < 0);
}

static void http_written(uv_write_t *w, int status)
{
    struct probe *p = w->data;
    if (status && !p->finished) {
        char out[512];
        snprintf(out, sizeof out, "HTTP %s: %s", p->chk ? p->chk->target : "", uv_strerror(status));
        probe_finish(p, ZONE_HEALTH_CRITICAL, out);
    }
}

static void connected(uv_connect_t *req, int status)
{
    struct probe *p = req->data;
    char out[512];
    if (p->finished)
        return;
    if (!p->chk) {
        probe_finish(p, ZONE_HEALTH_CRITICAL, "");
        return;
    }
    if (status) {
        snprintf(out, sizeof out, "%s %s: %s", p->chk->type[0] == 'h' ? "HTTP" : "TCP",
                 p->chk->target, uv_strerror(status));
        probe_finish(p, ZONE_HEALTH_CRITICAL, out);
        return;
    }
    if (p->chk->type[0] == 't') {
        snprintf(out, sizeof out, "TCP connect %s: Success", p->chk->target);
        probe_finish(p, ZONE_HEALTH_PASSING, out);
        return;
    }
    uv_buf_t b = uv_buf_init(p->request, (unsigned)strlen(p->request));
    p->wr.data = p;
    uv_read_start((uv_stream_t *)&p->tcp, http_read_alloc, http_read);
    uv_write(&p->wr, (uv_stream_t *)&p->tcp, &b, 1, http_written);
}

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct probe *p = req->data;
    char out[512];
    p->gai_pending = false;
    if (p->finished || !p->chk) {
        uv_freeaddrinfo(res);
        if (!p->finished)
            probe_finish(p, ZONE_HEALTH_CRITICAL, "");
        probe_release(p);
        return;
    }
    if (status || !res) {
        snprintf(out, sizeof out, "%s %s: %s", p->chk->type[0] == 'h' ? "HTTP" : "TCP",
                 p->chk->target, uv_strerror(status ? status : UV_EAI_NONAME));
        uv_freeaddrinfo(res);
        probe_finish(p, ZONE_HEALTH_CRITICAL, out);
        return;
    }
    uv_tcp_init(p->owner->loop, &p->tcp);
    p->tcp.data = p;
    p->tcp_open = true;
    p->handles++;
    p->conn.data = p;
    int rc = uv_tcp_connect(&p->conn, &p->tcp, res->ai_addr, connected);
    uv_freeaddrinfo(res);
    if (rc) {
        snprintf(out, sizeof out, "%s %s: %s", p->chk->type[0] == 'h' ? "HTTP" : "TCP",
                 p->chk->target, uv_strerror(rc));
        probe_finish(p, ZONE_HEALTH_CRITICAL, out);
    }
}

/* Splits "host:port" or an http:// URL into host, port and path. */
static int split_target(const struct chk *k, struct probe *p, char *path, size_t path_len)
{
    const char *s = k->target;
    int port = 80;
    char hostport[300];

    if (k->type[0] == 'h') {
        if (strncmp(s, "http://", 7) != 0)
            return BASE_EINVAL;
        s += 7;
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (n >= sizeof hostport)
            return BASE_EINVAL;
        memcpy(hostport, s, n);
        hostport[n] = '\0';
        snprintf(path, path_len, "%s", slash ? slash : "/");
    } else {
        snprintf(hostport, sizeof hostport, "%s", s);
        port = 0;
    }
    if (base_hostport_parse(hostport, port, p->host, sizeof p->host, &port) || port == 0)
        return BASE_EINVAL;
    snprintf(p->port, sizeof p->port, "%d", port);
    return 0;
}

static void probe_start(struct chk *k)
{
    struct adm_checks *c = k->owner;
    char path[2048];
    if (k->probe)
        return; /* previous probe still running: its timeout bounds it */
    struct probe *p = base_calloc(1, sizeof *p);
    p->chk = k;
    p->owner = c;
    if (split_target(k, p, path, sizeof path)) {
        char out[512];
        snprintf(out, sizeof out, "invalid check target \"%s\"", k->target);
        base_free(p);
        set_status(c, k->id, ZONE_HEALTH_CRITICAL, out);
        return;
    }
    if (k->type[0] == 'h')
        p->request =
            heap_printf("%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: Consul Health Check\r\nAccept: "
                        "text/plain, text/*, */*\r\nConnection: close\r\n\r\n",
                        k->method, path, p->host);
    k->probe = p;
    c->open_handles++;
    uv_timer_init(c->loop, &p->timeout);
    p->timeout.data = p;
    p->handles = 1;
    uv_timer_start(&p->timeout, probe_timeout, k->timeout_ms ? k->timeout_ms : 10000, 0);
    p->gai.data = p;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    p->gai_pending = true;
    int rc = uv_getaddrinfo(c->loop, &p->gai, resolved, p->host, p->port, &hints);
    if (rc) {
        p->gai_pending = false;
        char out[512];
        snprintf(out, sizeof out, "resolving %s: %s", p->host, uv_strerror(rc));
        probe_finish(p, ZONE_HEALTH_CRITICAL, out);
    }
}

/* ---- timers ---------------------------------------------------------------------------- */

static void chk_fire(uv_timer_t *t)
{
    struct chk *k = t->data;
    if (strcmp(k->type, "ttl") == 0) {
        char out[128];
        snprintf(out, sizeof out, "TTL expired");
        set_status(k->owner, k->id, ZONE_HEALTH_CRITICAL, out);
        return;
    }
    probe_start(k);
}

static void chk_arm(struct chk *k)
{
    if (strcmp(k->type, "ttl") == 0) {
        uv_timer_start(&k->timer, chk_fire, k->ttl_ms, 0);
    } else {
        struct adm_checks *c = k->owner;
        c->rng ^= c->rng << 13;
        c->rng ^= c->rng >> 7;
        c->rng ^= c->rng << 17;
        uint64_t first = k->interval_ms ? c->rng % k->interval_ms : 0;
        uv_timer_start(&k->timer, chk_fire, first, k->interval_ms);
    }
}

static void chk_free_cb(uv_handle_t *h)
{
    struct chk *k = h->data;
    struct adm_checks *c = k->owner;
    base_free(k->id);
    base_free(k->target);
    base_free(k->method);
    base_free(k);
    c->open_handles--;
    handle_closed(NULL);
}

/* Ends a probe early (its check went away or the runner stops). */
static void probe_abandon(struct probe *p)
{
    p->chk = NULL;
    if (p->gai_pending)
        uv_cancel((uv_req_t *)&p->gai);
    probe_finish(p, ZONE_HEALTH_CRITICAL, "");
}

static struct chk *chk_of(struct base_list *l)
{
    return BASE_CONTAINER_OF(l, struct chk, link);
}

/* Takes k off its runner's list and frees it once its timer closed. */
static void chk_drop(struct chk *k)
{
    base_list_remove(&k->link);
    if (k->probe)
        probe_abandon(k->probe);
    k->probe = NULL;
    uv_timer_stop(&k->timer);
    uv_close((uv_handle_t *)&k->timer, chk_free_cb);
}

/* ---- sync with the catalog ------------------------------------------------------------- */

static bool same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static int sync_one(void *data, const struct zone_check *zc)
{
    struct adm_checks *c = data;
    const char *target = strcmp(zc->type, "http") == 0 ? zc->http : zc->tcp;
    if (strcmp(zc->type, "ttl") != 0 && strcmp(zc->type, "http") != 0 &&
        strcmp(zc->type, "tcp") != 0)
        return 0;
    struct chk *k = NULL;
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &c->list)
    {
        if (strcmp(chk_of(pos)->id, zc->check_id) == 0) {
            k = chk_of(pos);
            break;
        }
    }
    if (k && strcmp(k->type, zc->type) == 0 && k->ttl_ms == zc->ttl_ms &&
        k->interval_ms == zc->interval_ms && k->timeout_ms == zc->timeout_ms &&
        (strcmp(zc->type, "ttl") == 0 || same_str(k->target, target)) &&
        same_str(k->method, zc->method)) {
        k->seen = true; /* unchanged: keep its timer running */
        return 0;
    }
    if (k) { /* definition changed: re-arm from scratch */
        base_free(k->target);
        base_free(k->method);
        if (k->probe)
            probe_abandon(k->probe);
        k->probe = NULL;
    } else {
        k = base_calloc(1, sizeof *k);
        k->owner = c;
        k->id = base_strdup(zc->check_id);
        uv_timer_init(c->loop, &k->timer);
        k->timer.data = k;
        c->open_handles++;
        base_list_insert_head(&c->list, &k->link);
    }
    snprintf(k->type, sizeof k->type, "%s", zc->type);
    k->ttl_ms = zc->ttl_ms;
    k->interval_ms = zc->interval_ms;
    k->timeout_ms = zc->timeout_ms;
    k->target = base_strdup(target ? target : "");
    k->method = base_strdup(zc->method && *zc->method ? zc->method : "GET");
    k->seen = true;
    chk_arm(k);
    return 0;
}

void adm_checks_sync(struct adm_checks *c)
{
    struct zone_read *rd;
    struct base_arena ar;

    if (c->closing)
        return;
    if (zone_read_begin(c->store, &rd))
        return;
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &c->list)
    {
        chk_of(pos)->seen = false;
    }
    base_arena_init(&ar);
    zone_node_checks_each(rd, c->node, &ar, sync_one, c);
    zone_read_end(rd);
    base_arena_close(&ar);
    BASE_LIST_FOREACH_SAFE(pos, tmp, &c->list)
    {
        if (!chk_of(pos)->seen)
            chk_drop(chk_of(pos));
    }
}

void adm_checks_ttl_reset(void *data, const char *check_id)
{
    struct adm_checks *c = data;
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &c->list)
    {
        struct chk *k = chk_of(pos);
        if (strcmp(k->id, check_id) == 0 && strcmp(k->type, "ttl") == 0)
            uv_timer_start(&k->timer, chk_fire, k->ttl_ms, 0);
    }
}

struct adm_checks *adm_checks_new(uv_loop_t *loop, struct zone_store *store, const char *node_name)
{
    struct adm_checks *c = base_calloc(1, sizeof *c);
    base_list_init(&c->list);
    c->loop = loop;
    c->store = store;
    c->node = base_strdup(node_name);
    c->rng = base_wall_ms() | 1;
    return c;
}

void adm_checks_set_api(struct adm_checks *c, struct api *api)
{
    c->api = api;
}

static struct adm_checks *g_closing; /* the runner being freed (one per process) */

static void handle_closed(uv_handle_t *h)
{
    BASE_UNUSED(h);
    struct adm_checks *c = g_closing;
    if (!c || c->open_handles)
        return;
    g_closing = NULL;
    void (*done)(void *) = c->done;
    void *data = c->done_data;
    base_free(c->node);
    base_free(c);
    if (done)
        done(data);
}

void adm_checks_free(struct adm_checks *c, void (*done)(void *), void *data)
{
    c->closing = true;
    c->api = NULL;
    c->done = done;
    c->done_data = data;
    g_closing = c;
    while (!base_list_empty(&c->list))
        chk_drop(chk_of(base_list_first(&c->list)));
    handle_closed(NULL);
}
