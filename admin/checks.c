/* The health-check runner: this agent's TTL, TCP, UDP, HTTP and script checks.
 *
 * The catalog is the source of truth. After every commit that touches checks (and at start)
 * adm_checks_sync re-reads this node's checks and keeps one runner entry per check it runs:
 * new checks get a timer, changed definitions are re-armed, vanished ones are dropped.
 * A TTL check's timer restarts on every pass/warn/fail/update through the API
 * (adm_checks_ttl_reset) and, when it fires, the check goes critical with "TTL expired".
 * The others probe every Interval (the first probe after a random part of it, so checks
 * registered together do not fire together) with their Timeout; a probe still running when the
 * next is due delays it (never two of one check at once).
 *
 * Script checks (Consul's CheckMonitor) run Args with uv_spawn, no shell, detached: the child
 * leads its own session and process group, so a timeout kills the whole group (SIGKILL to
 * -pid) and nothing it started outlives it. stdout and stderr share one pipe; the last 4 KB are
 * kept. Exit 0 is passing, 1 warning, anything else (a signal included) critical. The probe
 * ends when the process was reaped and its pipe reached EOF, or when its timeout killed the
 * group and it was reaped: libuv reaps it (SIGCHLD), the loop never blocks. At most
 * max_running_scripts run at once; a check due while the cap is reached waits for its next
 * interval.
 *
 * A probe's result goes through the check's counters (Consul's StatusHandler):
 * success_before_passing consecutive successes before passing (or warning) is written,
 * failures_before_critical consecutive failures before critical, failures_before_warning (by
 * default the same) before warning. The counters start at their thresholds, so the first
 * result counts at once, as in Consul.
 *
 * Results are written through Raft like any other write, but only when status or output
 * differ from what the catalog holds, so a steady check costs no writes. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OUTPUT_MAX 4096 /* Consul's DefaultBufSize: a script keeps the last 4 KB of its output */

struct probe;

struct chk {
    struct adm_checks *owner;
    char *id;
    char type[8];
    uint64_t ttl_ms, interval_ms, timeout_ms;
    char *target; /* TCP/UDP "host:port" or HTTP URL */
    char *method;
    char **argv;                       /* script: NULL-terminated */
    char *headers;                     /* HTTP: "Name: value\r\n" lines */
    bool has_host, has_ua, has_accept; /* HTTP: headers given that replace our defaults */
    char *body;
    struct base_buf def; /* the definition as compared by sync_one */
    /* Consul's StatusHandler */
    uint32_t succ_thr, warn_thr, crit_thr, succ_n, fail_n;
    uv_timer_t timer;
    struct probe *probe; /* in flight */
    bool seen;
    struct base_list link; /* on owner->list */
    /* check_update_interval: when the output was last written alone, and the output (with its
     * status) waiting for the interval to pass, on the defer timer */
    uint64_t out_ms;
    char *deferred;
    enum zone_health deferred_st;
    uv_timer_t defer;
    int handles; /* timer and defer: freed when both closed */
};

struct adm_checks {
    uv_loop_t *loop;
    struct zone_store *store;
    struct api *api;
    char *node;
    struct base_list list; /* of struct chk.link, newest first */
    unsigned open_handles;
    bool closing;
    bool scripts;         /* script checks may run */
    unsigned max_scripts; /* at once */
    unsigned scripts_running;
    void (*done)(void *);
    void *done_data;
    uint64_t rng;
    uint64_t update_interval_ms; /* check_update_interval; 0: every change is written */
};

struct probe {
    struct chk *chk; /* NULL once the check went away */
    struct adm_checks *owner;
    uv_getaddrinfo_t gai;
    uv_tcp_t tcp;
    uv_udp_t udp;
    uv_connect_t conn;
    uv_write_t wr;
    uv_timer_t timeout;
    char host[256];
    char port[8];
    char *request;
    char resp[512];
    size_t resp_len;
    bool tcp_open, udp_open, finished;
    bool gai_pending;
    /* script */
    uv_process_t proc;
    uv_pipe_t out;
    bool proc_open, pipe_open, exited, eof, killed, timed_out;
    int64_t exit_status;
    int term_signal;
    char *ring; /* the last OUTPUT_MAX bytes of output, from ring_start */
    size_t ring_len, ring_start;
    uint64_t out_total;
    char readbuf[4096];
    int handles; /* open handles; the probe is freed when none is left and gai is done */
};

static void handle_closed(uv_handle_t *h);

/* ---- writing results ------------------------------------------------------------------- */

static void update_cb(void *data, int status, int result, uint64_t index)
{
    BASE_UNUSED(data);
    BASE_UNUSED(index);
    if (status || result)
        LOG_WARN("checks", "updating a check failed: %s", base_strerror(status ? status : result));
}

static struct chk *chk_find(struct adm_checks *c, const char *id);
static void set_status(struct adm_checks *c, const char *id, enum zone_health st,
                       const char *output);

static void defer_fire(uv_timer_t *t)
{
    struct chk *k = t->data;
    char *o = k->deferred;
    k->deferred = NULL;
    if (o) {
        k->out_ms = 0; /* the interval passed: this one is written */
        set_status(k->owner, k->id, k->deferred_st, o);
        base_free(o);
    }
}

static void defer_clear(struct chk *k)
{
    base_free(k->deferred);
    k->deferred = NULL;
    uv_timer_stop(&k->defer);
}

/* Consul's check_update_interval (its local state's DeferCheck): a result that changes only
 * the output is written at most once per interval; the latest output waits on the check's
 * defer timer and is written when the interval has passed. A status change is written at once
 * and drops what waited. True: this write waits. */
static bool defer_output(struct adm_checks *c, struct chk *k, enum zone_health st,
                         const char *output)
{
    uint64_t now = uv_now(c->loop);
    if (!c->update_interval_ms || !k || c->closing)
        return false;
    if (!k->out_ms || now - k->out_ms >= c->update_interval_ms) {
        k->out_ms = now;
        defer_clear(k);
        return false;
    }
    base_free(k->deferred);
    k->deferred = base_strdup(output);
    k->deferred_st = st;
    if (!uv_is_active((uv_handle_t *)&k->defer))
        uv_timer_start(&k->defer, defer_fire, k->out_ms + c->update_interval_ms - now, 0);
    LOG_DEBUG("checks", "check %s: output-only change deferred", k->id);
    return true;
}

bool adm_checks_defer_output(void *data, const char *check_id, bool status_changed,
                             enum zone_health st, const char *output)
{
    struct adm_checks *c = data;
    struct chk *k = chk_find(c, check_id);
    if (status_changed) {
        if (k) {
            defer_clear(k);
            k->out_ms = uv_now(c->loop);
        }
        return false;
    }
    return defer_output(c, k, st, output);
}

static void set_status(struct adm_checks *c, const char *id, enum zone_health st,
                       const char *output)
{
    struct zone_read *rd;
    struct base_arena ar;
    struct zone_check cur;
    bool same = false, output_only = false;

    if (c->closing || !c->api)
        return;
    base_arena_init(&ar);
    if (zone_read_begin(c->store, &rd) == 0) {
        if (zone_check_get(rd, c->node, id, &ar, &cur) == 0) {
            same = cur.status == st && strcmp(cur.output, output) == 0;
            output_only = !same && cur.status == st;
        } else {
            same = true; /* gone: nothing to update */
        }
        zone_read_end(rd);
    }
    base_arena_close(&ar);
    if (same)
        return;
    struct chk *k = chk_find(c, id);
    if (output_only && defer_output(c, k, st, output))
        return;
    if (!output_only && k) {
        defer_clear(k);
        k->out_ms = uv_now(c->loop);
    }
    LOG_DEBUG("checks", "check %s is now %s: %s", id, zone_health_name(st), output);
    struct zone_cmd cmd = {.type = ZONE_CMD_CHECK_UPDATE};
    cmd.node.name = c->node;
    cmd.check_id = id;
    cmd.status = st;
    cmd.output = output;
    api_propose(c->api, &cmd, update_cb, NULL);
}

/* A probe's result through the check's counters (Consul's StatusHandler.updateCheck). */
static void report(struct chk *k, enum zone_health st, const char *output)
{
    if (st == ZONE_HEALTH_PASSING || st == ZONE_HEALTH_WARNING) {
        k->succ_n = k->succ_n < UINT32_MAX ? k->succ_n + 1 : k->succ_n;
        k->fail_n = 0;
        if (k->succ_n >= k->succ_thr)
            set_status(k->owner, k->id, st, output);
        else
            LOG_DEBUG("checks", "check %s passed %u of %u times needed", k->id, k->succ_n,
                      k->succ_thr);
        return;
    }
    k->fail_n = k->fail_n < UINT32_MAX ? k->fail_n + 1 : k->fail_n;
    k->succ_n = 0;
    if (k->fail_n >= k->crit_thr)
        set_status(k->owner, k->id, st, output);
    else if (k->fail_n >= k->warn_thr)
        set_status(k->owner, k->id, ZONE_HEALTH_WARNING, output);
    else
        LOG_DEBUG("checks", "check %s failed %u of %u times needed", k->id, k->fail_n, k->crit_thr);
}

/* Output from outside (a script, a server) as valid UTF-8 without NULs: other bytes become
 * '?', so that the stored string is what the API shows. In place. */
static void sanitize(char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len && i + len <= n && c != 0;
        for (size_t j = 1; ok && j < len; j++)
            ok = ((unsigned char)s[i + j] >> 6) == 2;
        unsigned char c1 = ok && len > 1 ? (unsigned char)s[i + 1] : 0x80;
        if (ok && ((len == 2 && c < 0xc2) || (c == 0xe0 && c1 < 0xa0) || (c == 0xf0 && c1 < 0x90)))
            ok = false; /* overlong */
        if (ok && ((c == 0xed && c1 >= 0xa0) || c > 0xf4 || (c == 0xf4 && c1 >= 0x90)))
            ok = false; /* a surrogate, or past U+10FFFF */
        if (!ok) {
            s[i++] = '?';
            continue;
        }
        i += len;
    }
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
    base_free(p->ring);
    base_free(p);
    handle_closed(NULL);
}

static void probe_closed(uv_handle_t *h)
{
    struct probe *p = h->data;
    p->handles--;
    probe_release(p);
}

/* The one end of a probe: reports (unless the check went away) and closes its handles. A
 * script's process handle is closed only once it was reaped (script_done). direct: past the
 * counters (Consul reports a script's timeout so). */
static void probe_end(struct probe *p, enum zone_health st, const char *output, bool direct)
{
    if (p->finished)
        return;
    p->finished = true;
    if (p->chk && !p->owner->closing) {
        if (direct)
            set_status(p->owner, p->chk->id, st, output);
        else
            report(p->chk, st, output);
    }
    uv_timer_stop(&p->timeout);
    uv_close((uv_handle_t *)&p->timeout, probe_closed);
    if (p->tcp_open)
        uv_close((uv_handle_t *)&p->tcp, probe_closed);
    if (p->udp_open)
        uv_close((uv_handle_t *)&p->udp, probe_closed);
    if (p->pipe_open)
        uv_close((uv_handle_t *)&p->out, probe_closed);
    if (p->proc_open)
        uv_close((uv_handle_t *)&p->proc, probe_closed);
}

static void probe_finish(struct probe *p, enum zone_health st, const char *output)
{
    probe_end(p, st, output, false);
}

static const char *kind_name(const struct chk *k)
{
    return k->type[0] == 'h' ? "HTTP" : k->type[0] == 'u' ? "UDP" : "TCP";
}

static void probe_timeout(uv_timer_t *t)
{
    struct probe *p = t->data;
    char out[512];
    if (p->udp_open && p->chk) {
        /* Consul's CheckUDP: no answer and no ICMP error within the timeout is passing */
        snprintf(out, sizeof out, "UDP connect %s: Success", p->chk->target);
        probe_finish(p, ZONE_HEALTH_PASSING, out);
        return;
    }
    snprintf(out, sizeof out, "%s %s: timed out", p->chk ? kind_name(p->chk) : "",
             p->chk ? p->chk->target : "");
    if (p->gai_pending)
        uv_cancel((uv_req_t *)&p->gai);
    probe_finish(p, ZONE_HEALTH_CRITICAL, out);
}

/* ---- UDP ------------------------------------------------------------------------------- */

static void udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct probe *p = h->data;
    BASE_UNUSED(suggested);
    *buf = uv_buf_init(p->resp, sizeof p->resp);
}

static void udp_recv(uv_udp_t *u, ssize_t n, const uv_buf_t *buf, const struct sockaddr *addr,
                     unsigned flags)
{
    struct probe *p = u->data;
    char out[512];
    BASE_UNUSED(buf);
    BASE_UNUSED(flags);
    if (p->finished || !p->chk || (n == 0 && !addr))
        return;  /* n 0 without an address: nothing more to read now */
    if (n < 0) { /* an ICMP error on the connected socket: port unreachable and the like */
        snprintf(out, sizeof out, "UDP %s: %s", p->chk->target, uv_strerror((int)n));
        probe_finish(p, ZONE_HEALTH_CRITICAL, out);
        return;
    }
    snprintf(out, sizeof out, "UDP connect %s: Success", p->chk->target);
    probe_finish(p, ZONE_HEALTH_PASSING, out);
}

static void udp_start(struct probe *p, const struct sockaddr *addr)
{
    char out[512];
    uv_udp_init(p->owner->loop, &p->udp);
    p->udp.data = p;
    p->udp_open = true;
    p->handles++;
    int rc = uv_udp_connect(&p->udp, addr);
    if (!rc)
        rc = uv_udp_recv_start(&p->udp, udp_alloc, udp_recv);
    if (!rc) {
        /* Consul sends its (empty by default) message: an empty datagram */
        uv_buf_t b = uv_buf_init(p->resp, 0);
        int n = uv_udp_try_send(&p->udp, &b, 1, NULL);
        rc = n < 0 && n != UV_EAGAIN ? n : 0;
    }
    if (rc) {
        snprintf(out, sizeof out, "UDP %s: %s", p->chk->target, uv_strerror(rc));
        probe_finish(p, ZONE_HEALTH_CRITICAL, out);
    }
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
        snprintf(out, sizeof out, "%s %s: %s", kind_name(p->chk), p->chk->target,
                 uv_strerror(status));
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
        snprintf(out, sizeof out, "%s %s: %s", kind_name(p->chk), p->chk->target,
                 uv_strerror(status ? status : UV_EAI_NONAME));
        uv_freeaddrinfo(res);
        probe_finish(p, ZONE_HEALTH_CRITICAL, out);
        return;
    }
    if (p->chk->type[0] == 'u') {
        udp_start(p, res->ai_addr);
        uv_freeaddrinfo(res);
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
        snprintf(out, sizeof out, "%s %s: %s", kind_name(p->chk), p->chk->target, uv_strerror(rc));
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

/* ---- scripts --------------------------------------------------------------------------- */

static void ring_append(struct probe *p, const char *d, size_t n)
{
    p->out_total += n;
    if (n >= OUTPUT_MAX) {
        memcpy(p->ring, d + n - OUTPUT_MAX, OUTPUT_MAX);
        p->ring_start = 0;
        p->ring_len = OUTPUT_MAX;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t at = (p->ring_start + p->ring_len) % OUTPUT_MAX;
        p->ring[at] = d[i];
        if (p->ring_len < OUTPUT_MAX)
            p->ring_len++;
        else
            p->ring_start = (p->ring_start + 1) % OUTPUT_MAX;
    }
}

/* Consul's format: the kept tail, announced when output was cut. Heap, NUL-terminated. */
static char *script_output(struct probe *p, const char *prefix)
{
    struct base_buf b;
    base_buf_init(&b);
    if (prefix)
        base_buf_printf(&b, "%s", prefix);
    if (prefix && p->ring_len)
        base_buf_printf(&b, "\n\n");
    if (p->out_total > p->ring_len)
        base_buf_printf(&b, "Captured %zu of %llu bytes\n...\n", p->ring_len,
                        (unsigned long long)p->out_total);
    size_t at = b.len;
    for (size_t i = 0; i < p->ring_len; i++)
        base_buf_append(&b, &p->ring[(p->ring_start + i) % OUTPUT_MAX], 1);
    sanitize((char *)b.data + at, b.len - at);
    base_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* Go's time.Duration text for whole milliseconds ("30s", "1.5s", "250ms", "2m0s"). */
static void duration_text(uint64_t ms, char *out, size_t n)
{
    if (ms < 1000)
        snprintf(out, n, "%llums", (unsigned long long)ms);
    else if (ms < 60000 && ms % 1000)
        snprintf(out, n, "%llu.%03llus", (unsigned long long)(ms / 1000),
                 (unsigned long long)(ms % 1000));
    else if (ms < 60000)
        snprintf(out, n, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(out, n, "%llum%llus", (unsigned long long)(ms / 60000),
                 (unsigned long long)(ms % 60000 / 1000));
    /* Go trims trailing zeros of the fraction: 1.500s is 1.5s */
    char *dot = strchr(out, '.');
    if (dot) {
        char *s = out + strlen(out) - 1; /* the 's' */
        char *e = s - 1;
        while (e > dot && *e == '0')
            e--;
        memmove(e + 1, s, 2);
    }
}

/* Ends a script probe once its process was reaped and its output read to the end (or its
 * group was killed: a grandchild that left the group may hold the pipe forever). */
static void script_done(struct probe *p)
{
    if (p->finished || !p->exited || (!p->eof && !p->killed))
        return;
    struct chk *k = p->chk;
    char *out;
    if (!k) {
        probe_end(p, ZONE_HEALTH_CRITICAL, "", true);
        return;
    }
    if (p->timed_out) {
        char d[32], msg[96];
        duration_text(k->timeout_ms, d, sizeof d);
        snprintf(msg, sizeof msg, "Timed out (%s) running check", d);
        out = script_output(p, msg);
        probe_end(p, ZONE_HEALTH_CRITICAL, out, true);
    } else {
        out = script_output(p, NULL);
        enum zone_health st = p->term_signal        ? ZONE_HEALTH_CRITICAL
                              : p->exit_status == 0 ? ZONE_HEALTH_PASSING
                              : p->exit_status == 1 ? ZONE_HEALTH_WARNING
                                                    : ZONE_HEALTH_CRITICAL;
        probe_finish(p, st, out);
    }
    base_free(out);
}

static void script_kill(struct probe *p)
{
    if (p->killed)
        return;
    p->killed = true;
    /* the child leads its own process group (UV_PROCESS_DETACHED: setsid) */
    if (p->proc.pid > 0 && kill(-p->proc.pid, SIGKILL) && errno != ESRCH)
        LOG_WARN("checks", "killing the process group of a script check: %s", strerror(errno));
}

static void script_exited(uv_process_t *proc, int64_t status, int term_signal)
{
    struct probe *p = proc->data;
    p->exited = true;
    p->exit_status = status;
    p->term_signal = term_signal;
    p->owner->scripts_running--;
    if (!p->chk && !p->killed)
        script_kill(p); /* abandoned meanwhile: its children go too */
    script_done(p);
}

static void script_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct probe *p = h->data;
    BASE_UNUSED(suggested);
    *buf = uv_buf_init(p->readbuf, sizeof p->readbuf);
}

static void script_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct probe *p = s->data;
    if (n > 0) {
        ring_append(p, buf->base, (size_t)n);
        return;
    }
    if (n < 0) {
        p->eof = true;
        uv_read_stop(s);
        script_done(p);
    }
}

static void script_timeout(uv_timer_t *t)
{
    struct probe *p = t->data;
    if (!p->exited)
        p->timed_out = true;
    script_kill(p); /* also any child still holding the pipe after the leader exited */
    script_done(p);
}

static void script_start(struct chk *k)
{
    struct adm_checks *c = k->owner;
    char out[600];
    int fds[2];

    if (!c->scripts) {
        set_status(c, k->id, ZONE_HEALTH_CRITICAL,
                   "Scripts are disabled on this agent; to enable, configure "
                   "'enable_script_checks' or 'enable_local_script_checks' to true");
        return;
    }
    if (c->scripts_running >= c->max_scripts) {
        LOG_DEBUG("checks", "check %s waits: %u scripts are running", k->id, c->scripts_running);
        return;
    }
    if (pipe2(fds, O_CLOEXEC)) {
        snprintf(out, sizeof out, "running %s: %s", k->argv[0], strerror(errno));
        set_status(c, k->id, ZONE_HEALTH_CRITICAL, out);
        return;
    }
    struct probe *p = base_calloc(1, sizeof *p);
    p->chk = k;
    p->owner = c;
    p->ring = base_malloc(OUTPUT_MAX);
    k->probe = p;
    c->open_handles++;
    uv_timer_init(c->loop, &p->timeout);
    p->timeout.data = p;
    p->handles = 1;
    uv_pipe_init(c->loop, &p->out, 0);
    p->out.data = p;
    p->pipe_open = true;
    p->handles++;
    int rc = uv_pipe_open(&p->out, fds[0]);
    if (rc) {
        close(fds[0]);
        close(fds[1]);
        snprintf(out, sizeof out, "running %s: %s", k->argv[0], uv_strerror(rc));
        probe_end(p, ZONE_HEALTH_CRITICAL, out, true);
        return;
    }
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = fds[1]},
        {.flags = UV_INHERIT_FD, .data.fd = fds[1]},
    };
    uv_process_options_t opt = {
        .exit_cb = script_exited,
        .file = k->argv[0],
        .args = k->argv,
        .flags = UV_PROCESS_DETACHED,
        .stdio_count = 3,
        .stdio = stdio,
    };
    p->proc.data = p;
    rc = uv_spawn(c->loop, &p->proc, &opt);
    close(fds[1]);       /* the child has it: EOF once every holder is gone */
    p->proc_open = true; /* initialised even when the spawn failed: closed in probe_end */
    p->handles++;
    if (rc) {
        /* Consul reports the failure to start as critical with the error */
        snprintf(out, sizeof out, "running %s: %s", k->argv[0], uv_strerror(rc));
        probe_end(p, ZONE_HEALTH_CRITICAL, out, true);
        return;
    }
    c->scripts_running++;
    uv_read_start((uv_stream_t *)&p->out, script_alloc, script_read);
    uv_timer_start(&p->timeout, script_timeout, k->timeout_ms ? k->timeout_ms : 30000, 0);
}

/* ---- TCP, UDP, HTTP -------------------------------------------------------------------- */

static void probe_start(struct chk *k)
{
    struct adm_checks *c = k->owner;
    char path[2048];
    if (k->probe)
        return; /* previous probe still running: its timeout bounds it */
    if (k->type[0] == 's') {
        script_start(k);
        return;
    }
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
    if (k->type[0] == 'h') {
        struct base_buf b;
        size_t blen = k->body ? strlen(k->body) : 0;
        base_buf_init(&b);
        base_buf_printf(&b, "%s %s HTTP/1.1\r\n", k->method, path);
        if (!k->has_host)
            base_buf_printf(&b, "Host: %s\r\n", p->host);
        if (!k->has_ua)
            base_buf_printf(&b, "User-Agent: Consul Health Check\r\n");
        if (!k->has_accept)
            base_buf_printf(&b, "Accept: text/plain, text/*, */*\r\n");
        if (k->headers)
            base_buf_append(&b, k->headers, strlen(k->headers));
        if (blen)
            base_buf_printf(&b, "Content-Length: %zu\r\n", blen);
        base_buf_printf(&b, "Connection: close\r\n\r\n");
        if (blen)
            base_buf_append(&b, k->body, blen);
        base_buf_append(&b, "", 1);
        p->request = (char *)b.data;
    }
    k->probe = p;
    c->open_handles++;
    uv_timer_init(c->loop, &p->timeout);
    p->timeout.data = p;
    p->handles = 1;
    uv_timer_start(&p->timeout, probe_timeout, k->timeout_ms ? k->timeout_ms : 10000, 0);
    p->gai.data = p;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = k->type[0] == 'u' ? SOCK_DGRAM : SOCK_STREAM};
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

static void chk_free_def(struct chk *k)
{
    base_free(k->target);
    base_free(k->method);
    base_free(k->headers);
    base_free(k->body);
    for (size_t i = 0; k->argv && k->argv[i]; i++)
        base_free(k->argv[i]);
    base_free(k->argv);
    base_buf_free(&k->def);
    k->target = k->method = k->headers = k->body = NULL;
    k->argv = NULL;
}

static void chk_free_cb(uv_handle_t *h)
{
    struct chk *k = h->data;
    struct adm_checks *c = k->owner;
    c->open_handles--;
    if (--k->handles) {
        handle_closed(NULL);
        return;
    }
    base_free(k->deferred);
    base_free(k->id);
    chk_free_def(k);
    base_free(k);
    handle_closed(NULL);
}

/* Ends a probe early (its check went away or the runner stops). */
static void probe_abandon(struct probe *p)
{
    p->chk = NULL;
    if (p->proc_open && !p->exited) { /* a running script: killed, ended once reaped */
        uv_timer_stop(&p->timeout);
        script_kill(p);
        return;
    }
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
    uv_close((uv_handle_t *)&k->defer, chk_free_cb);
}

static struct chk *chk_find(struct adm_checks *c, const char *id)
{
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &c->list)
    {
        if (strcmp(chk_of(pos)->id, id) == 0)
            return chk_of(pos);
    }
    return NULL;
}

/* ---- sync with the catalog ------------------------------------------------------------- */

/* What decides how a check runs, as bytes: a change re-arms it. */
static void def_bytes(const struct zone_check *zc, struct base_buf *b)
{
    base_buf_printf(b, "%s|%llu|%llu|%llu|%s|%s|%s|%s|%u|%u|%u|%u|", zc->type,
                    (unsigned long long)zc->ttl_ms, (unsigned long long)zc->interval_ms,
                    (unsigned long long)zc->timeout_ms, zc->http ? zc->http : "",
                    zc->method ? zc->method : "", zc->tcp ? zc->tcp : "", zc->udp ? zc->udp : "",
                    zc->success_before_passing, zc->failures_before_warning,
                    zc->failures_before_critical, (unsigned)zc->n_args);
    for (size_t i = 0; i < zc->n_args; i++)
        base_buf_append(b, zc->args[i], strlen(zc->args[i]) + 1);
    for (size_t i = 0; i < zc->n_header; i++) {
        base_buf_append(b, zc->header[i].key, strlen(zc->header[i].key) + 1);
        base_buf_append(b, zc->header[i].value, strlen(zc->header[i].value) + 1);
    }
    if (zc->body)
        base_buf_append(b, zc->body, strlen(zc->body) + 1);
}

static bool runs(const char *type)
{
    return strcmp(type, "ttl") == 0 || strcmp(type, "http") == 0 || strcmp(type, "tcp") == 0 ||
           strcmp(type, "udp") == 0 || strcmp(type, "script") == 0;
}

static int sync_one(void *data, const struct zone_check *zc)
{
    struct adm_checks *c = data;
    if (!runs(zc->type))
        return 0;
    if (strcmp(zc->type, "script") == 0 && !zc->n_args)
        return 0;
    const char *target = strcmp(zc->type, "http") == 0  ? zc->http
                         : strcmp(zc->type, "udp") == 0 ? zc->udp
                                                        : zc->tcp;
    struct chk *k = NULL;
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &c->list)
    {
        if (strcmp(chk_of(pos)->id, zc->check_id) == 0) {
            k = chk_of(pos);
            break;
        }
    }
    struct base_buf def;
    base_buf_init(&def);
    def_bytes(zc, &def);
    if (k && k->def.len == def.len && memcmp(k->def.data, def.data, def.len) == 0) {
        base_buf_free(&def);
        k->seen = true; /* unchanged: keep its timer running */
        return 0;
    }
    if (k) { /* definition changed: re-arm from scratch */
        chk_free_def(k);
        if (k->probe)
            probe_abandon(k->probe);
        k->probe = NULL;
    } else {
        k = base_calloc(1, sizeof *k);
        k->owner = c;
        k->id = base_strdup(zc->check_id);
        uv_timer_init(c->loop, &k->timer);
        uv_timer_init(c->loop, &k->defer);
        k->timer.data = k->defer.data = k;
        k->handles = 2;
        c->open_handles += 2;
        base_list_insert_head(&c->list, &k->link);
    }
    k->def = def;
    snprintf(k->type, sizeof k->type, "%s", zc->type);
    k->ttl_ms = zc->ttl_ms;
    k->interval_ms = zc->interval_ms;
    k->timeout_ms = zc->timeout_ms;
    k->target = base_strdup(target ? target : "");
    k->method = base_strdup(zc->method && *zc->method ? zc->method : "GET");
    if (zc->n_args) {
        k->argv = base_calloc(zc->n_args + 1, sizeof *k->argv);
        for (size_t i = 0; i < zc->n_args; i++)
            k->argv[i] = base_strdup(zc->args[i]);
    }
    k->has_host = k->has_ua = k->has_accept = false;
    if (zc->n_header) {
        struct base_buf h;
        base_buf_init(&h);
        for (size_t i = 0; i < zc->n_header; i++) {
            const char *name = zc->header[i].key;
            k->has_host |= base_strcasecmp(name, "Host") == 0;
            k->has_ua |= base_strcasecmp(name, "User-Agent") == 0;
            k->has_accept |= base_strcasecmp(name, "Accept") == 0;
            if (base_strcasecmp(name, "Content-Length") == 0 ||
                base_strcasecmp(name, "Connection") == 0 ||
                base_strcasecmp(name, "Transfer-Encoding") == 0)
                continue; /* ours: the request is framed by us */
            base_buf_printf(&h, "%s: %s\r\n", name, zc->header[i].value);
        }
        base_buf_append(&h, "", 1);
        k->headers = (char *)h.data;
    }
    k->body = zc->body && *zc->body ? base_strdup(zc->body) : NULL;
    /* Consul: FailuresBeforeWarning defaults to FailuresBeforeCritical; counters start at
     * their thresholds so that the first result counts */
    k->succ_thr = zc->success_before_passing;
    k->crit_thr = zc->failures_before_critical;
    k->warn_thr = zc->failures_before_warning ? zc->failures_before_warning : k->crit_thr;
    k->succ_n = k->succ_thr;
    k->fail_n = k->crit_thr;
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

struct adm_checks *adm_checks_new(uv_loop_t *loop, struct zone_store *store, const char *node_name,
                                  bool scripts, unsigned max_scripts, uint64_t update_interval_ms)
{
    struct adm_checks *c = base_calloc(1, sizeof *c);
    c->update_interval_ms = update_interval_ms;
    c->scripts = scripts;
    c->max_scripts = max_scripts ? max_scripts : 32;
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
