/* The /v1 router, the read and write plumbing, and blocking queries.
 *
 * Reads. Every catalog, health and KV read is a re-runnable function over a zone read
 * transaction that returns a JSON value and an index (api_read_fn). api__read applies
 * Consul's consistency modes: ?stale reads the local replica at once; the default mode reads
 * the leader's view through a Raft read index (the leader's applied index, which this replica
 * waits for before reading locally, so followers never ship reads to the leader); ?consistent
 * does the same after a barrier on the leader, which proves its leadership to a quorum. Then
 * Consul's blocking-query rule: with ?index=N the request is answered as soon as the read's
 * index is greater than N, or when ?wait (default 5m, at most 10m, plus up to wait/16 of
 * jitter as Consul adds) runs out, whichever is first. The event list (event.c), whose
 * index is a hash of its last event's ID, answers as soon as its index differs from N
 * (api_result.unequal) and is woken by api_on_user_event (API_WAKE_EVENTS), not by commits.
 *
 * Blocking. A read whose index is not past N parks as a struct api_wait with the mask of the
 * tables that can change its answer. Commits call api_on_applied with the tables they
 * touched; that only marks the mask and arms an idle handle, so the re-runs happen once per
 * loop iteration after all of that iteration's commits (a burst of writes wakes each waiter
 * once). A woken waiter re-runs its read: if the index moved past N it is answered, otherwise
 * it parks again (a write to another key of the same table is a spurious wake-up, cheap and
 * invisible). Nothing polls: an idle agent with thousands of parked queries does no work.
 *
 * One owner. Several things can happen to a read, in any order: its read index arrives, its
 * wait timer fires, a commit wakes it, its client goes away, its reader job (below) comes
 * back, api_free. Each of them only marks the waiter (index_pending, expired, job, req = NULL)
 * and calls wait_step, which alone answers the request (at most once: only when the read
 * index is in) and alone releases the waiter (once neither the client, a pending read index
 * nor a running job refers to it). A wait that runs out before the read index arrives is
 * answered as soon as the index is in.
 *
 * Big reads. Lists (api__read_list) are answered from a reader thread, so the loop thread,
 * which heartbeats Raft, never spends a second building tens of MB of JSON: see "reader jobs".
 *
 * Writes. A handler validates the whole body before anything is proposed, encodes one zone
 * command and proposes it; the client is answered from the proposal's callback, after commit.
 * If the client goes away first, the context forgets the request and the answer is dropped;
 * the write itself still happens (it may already be in the log). */
#include "internal.h"

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define WAIT_DEFAULT_MS (5 * 60 * 1000)
#define WAIT_MAX_MS     (10 * 60 * 1000)

struct api_wait {
    struct api *api;
    struct http_req *req; /* NULL once answered or once the client went away */
    api_read_fn fn;
    uint32_t tables;
    uint64_t min_index;
    bool blocking;
    bool parked;        /* on api->waiters */
    bool index_pending; /* cons_read_index holds a pointer to this waiter */
    int index_status;   /* of the read index, once it arrived */
    bool expired;       /* the wait ran out (or the api is closing): answer at the next run */
    bool finished;      /* wait_step released it: its timer is closing, then it is freed */
    bool heavy;         /* fn may run on a reader thread (api__read_list) */
    enum { JOB_NONE, JOB_QUEUED, JOB_RUNNING } job;
    uv_timer_t timer;
    struct base_list link; /* on api->waiters (parked) or api->jobq (JOB_QUEUED) */
    /* The reader job: what it read, serialized on the reader thread. */
    uv_work_t work;
    int job_status;
    char *job_body; /* base_malloc'd */
    size_t job_len;
    char *job_ctype; /* base_malloc'd, NULL for none */
    uint64_t job_index;
};

struct api_wctx {
    struct api *api;
    struct http_req *req; /* NULL once the client went away */
    enum api_write_reply reply;
    const char *notfound_msg;
    char *invalid_msg;   /* owned; NULL: BASE_EINVAL is a plain failure */
    bool agent;          /* an agent endpoint's write: the local state hears how it ended */
    struct base_buf cmd; /* then its command */
    uint64_t index;      /* its index, while the local state writes its file */
};

/* ---- responses ------------------------------------------------------------------------- */

static void set_read_headers(struct api *a, struct http_req *req, uint64_t index)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)(index ? index : 1));
    http_resp_header(req, "X-Consul-Index", buf);
    uint64_t leader_id;
    const char *leader_addr;
    cons_leader(a->cfg.cons, &leader_id, &leader_addr);
    http_resp_header(req, "X-Consul-KnownLeader", leader_id ? "true" : "false");
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)cons_last_contact_ms(a->cfg.cons));
    http_resp_header(req, "X-Consul-LastContact", buf);
}

void api__respond_json(struct api *a, struct http_req *req, int status, json_t *v, uint64_t index)
{
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    if (http_req_query(req, "pretty"))
        flags = JSON_INDENT(4) | JSON_ENCODE_ANY;
    char *body = json_dumps(v ? v : json_null(), flags);
    set_read_headers(a, req, index);
    http_respond(req, status, "application/json", body, body ? strlen(body) : 0);
    free(body);
    json_decref(v);
}

void api__error(struct http_req *req, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    http_respond_text(req, status, msg);
}

bool api__method(struct http_req *req, const char *allowed)
{
    const char *m = http_req_method(req);
    size_t ml = strlen(m);
    for (const char *p = allowed; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == ml && strncmp(p, m, n) == 0)
            return true;
        p += n + (end ? 1 : 0);
    }
    /* Allow lists methods comma-separated (RFC 9110 §10.2.1). */
    char hdr[96];
    size_t k = 0;
    for (const char *c = allowed; *c && k + 3 < sizeof hdr; c++) {
        hdr[k++] = *c;
        if (*c == ',')
            hdr[k++] = ' ';
    }
    hdr[k] = '\0';
    http_resp_header(req, "Allow", hdr);
    api__error(req, 405, "method %s not allowed", m);
    return false;
}

bool api__get_named(struct http_req *req, const char *name, const char *missing)
{
    if (!api__method(req, "GET"))
        return false;
    if (*name)
        return true;
    api__error(req, 400, "%s", missing);
    return false;
}

/* ---- consistency and blocking ---------------------------------------------------------- */

static uint64_t rng_next(struct api *a)
{
    uint64_t x = a->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    a->rng = x;
    return x;
}

static struct api_wait *wait_of(struct base_list *l)
{
    return BASE_CONTAINER_OF(l, struct api_wait, link);
}

static void wait_unlink(struct api_wait *w)
{
    struct api *a = w->api;
    if (!w->parked)
        return;
    base_list_remove(&w->link);
    w->parked = false;
    a->n_waiters--;
}

static void wait_free_cb(uv_handle_t *h)
{
    base_free(h->data);
}

static void wait_park(struct api_wait *w)
{
    struct api *a = w->api;
    w->parked = true;
    base_list_insert_head(&a->waiters, &w->link);
    a->n_waiters++;
}

/* ---- reader jobs ----------------------------------------------------------------------- */

/* A list read (api__read_list) is built on a reader thread of libuv's pool: its own zone read
 * transaction (MDB_NOTLS), the read function, and the JSON text, so a read of tens of MB
 * never holds the loop thread that heartbeats Raft. At most API_JOBS_MAX run at once (the
 * pool's other threads stay free for libraft's disk work); the others wait in api->jobq, in
 * order, and still go when their client leaves. A running job holds its request: its abort
 * callback is off (admin/http then detaches the request on a disconnect and keeps it until
 * http_respond, which only frees it), so the job may read the request's query. */
#define API_JOBS_MAX   2
#define API_TRIM_BYTES (1u << 20) /* after a response this big, give freed memory back */

static void wait_step(struct api_wait *w);
static void wait_abort(void *data, struct http_req *req);
static void jobs_pump(struct api *a);
static void api_release(struct api *a);

static void job_queue(struct api_wait *w)
{
    struct api *a = w->api;
    w->job = JOB_QUEUED;
    base_list_insert_tail(&a->jobq, &w->link);
    jobs_pump(a);
}

static void job_unqueue(struct api_wait *w)
{
    base_list_remove(&w->link);
    w->job = JOB_NONE;
}

/* Frees what a read's result holds and makes it a fresh one with status. */
static void result_reset(struct api_result *res, int status)
{
    json_decref(res->json);
    base_buf_free(&res->owned);
    *res = (struct api_result){.status = status};
}

/* A read that met a record failing its checksum: res becomes a 500 naming it, never a partial
 * 200 nor a listing without it. Returns whether it did. */
static bool result_damaged(struct zone_read *rd, struct base_arena *ar, struct api_result *res)
{
    const char *damaged = zone_read_damaged(rd);
    if (!damaged)
        return false;
    result_reset(res, 500);
    res->error = base_arena_printf(ar, "catalog record %s failed its checksum", damaged);
    return true;
}

/* Reader thread: reads and serializes; touches only the store, the request's accessors (the
 * request is held) and its own memory. */
static void job_work(uv_work_t *req_work)
{
    struct api_wait *w = req_work->data;
    struct api *a = w->api;
    struct zone_read *rd;
    struct base_arena ar;
    struct api_result res = {.status = 200};

    int rc = zone_read_begin(a->cfg.store, &rd);
    if (rc) {
        char msg[128];
        snprintf(msg, sizeof msg, "catalog read failed: %s\n", base_strerror(rc));
        w->job_status = 500;
        w->job_body = base_strdup(msg);
        w->job_len = strlen(msg);
        w->job_ctype = base_strdup("text/plain; charset=utf-8");
        return;
    }
    base_arena_init(&ar);
    w->fn(a, w->req, rd, &ar, &res);
    (void)result_damaged(rd, &ar, &res);
    w->job_status = res.status;
    w->job_index = res.index;
    if (res.status >= 400 && res.error) {
        size_t n = strlen(res.error);
        w->job_body = base_malloc(n + 1);
        memcpy(w->job_body, res.error, n);
        w->job_body[n] = '\n';
        w->job_len = n + 1;
        w->job_ctype = base_strdup("text/plain; charset=utf-8");
    } else if (res.raw_set && res.raw_len && res.raw == res.owned.data) {
        w->job_body = (char *)res.owned.data; /* the text the result owns: taken, not copied */
        w->job_len = res.raw_len;
        base_buf_init(&res.owned);
        w->job_ctype = res.content_type ? base_strdup(res.content_type) : NULL;
    } else if (res.raw_set) {
        w->job_body = base_malloc(res.raw_len ? res.raw_len : 1);
        if (res.raw_len)
            memcpy(w->job_body, res.raw, res.raw_len);
        w->job_len = res.raw_len;
        w->job_ctype = res.content_type ? base_strdup(res.content_type) : NULL;
    } else {
        size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
        if (http_req_query(w->req, "pretty"))
            flags = JSON_INDENT(4) | JSON_ENCODE_ANY;
        w->job_body = json_dumps(res.json ? res.json : json_null(), flags);
        w->job_len = w->job_body ? strlen(w->job_body) : 0;
        w->job_ctype = base_strdup("application/json");
    }
    result_reset(&res, 0);
    zone_read_end(rd);
    base_arena_close(&ar);
}

/* Loop thread: answers (or only frees the request when the api is closing: its connection is
 * gone by then), then lets wait_step release the waiter. */
static void job_after(uv_work_t *req_work, int status)
{
    struct api_wait *w = req_work->data;
    struct api *a = w->api;
    struct http_req *req = w->req;

    a->jobs_running--;
    w->job = JOB_NONE;
    w->req = NULL;
    if (a->closing || status) {
        http_respond(req, 503, NULL, "", 0);
    } else {
        set_read_headers(a, req, w->job_index);
        http_respond(req, w->job_status, w->job_ctype, w->job_body ? w->job_body : "", w->job_len);
    }
    /* json_dumps allocates with jansson's allocator, which is malloc here, as base_malloc. */
    free(w->job_body);
    base_free(w->job_ctype);
    w->job_body = w->job_ctype = NULL;
    if (w->job_len >= API_TRIM_BYTES)
        malloc_trim(0); /* the reader thread's arena keeps what the build freed */
    wait_step(w);
    if (a->closing) {
        if (!a->jobs_running)
            api_release(a);
    } else {
        jobs_pump(a);
    }
}

static void jobs_pump(struct api *a)
{
    while (!base_list_empty(&a->jobq) && a->jobs_running < API_JOBS_MAX) {
        struct api_wait *w = wait_of(base_list_first(&a->jobq));
        job_unqueue(w);
        w->job = JOB_RUNNING;
        http_req_set_abort(w->req, NULL, NULL);
        a->jobs_running++;
        w->work.data = w;
        int rc = uv_queue_work(a->loop, &w->work, job_work, job_after);
        if (rc) { /* cannot happen with a valid loop and callbacks; answer on the loop */
            a->jobs_running--;
            w->job = JOB_NONE;
            http_req_set_abort(w->req, wait_abort, w);
            w->heavy = false;
            wait_step(w);
        }
    }
}

/* Answers the request once (the client is still there): the abort callback goes first, so a
 * later disconnect never reaches this waiter. */
static struct http_req *wait_take_req(struct api_wait *w)
{
    struct http_req *req = w->req;
    w->req = NULL;
    http_req_set_abort(req, NULL, NULL);
    return req;
}

/* Whether a blocking query's read is due: its index moved past min (catalog reads), or away
 * from it (res->unequal: the event list). */
static bool index_moved(const struct api_result *res, uint64_t min)
{
    return res->unequal ? res->index != min : res->index > min;
}

/* Runs the read; answers unless the query blocks and its index has not moved past min, in
 * which case the waiter parks. Only wait_step calls it, with w->req set. */
static void wait_run(struct api_wait *w)
{
    struct api *a = w->api;
    struct http_req *req = w->req;
    struct zone_read *rd;
    struct base_arena ar;
    struct api_result res = {.status = 200};
    bool answer_now = !w->blocking || w->expired || a->closing;

    if (w->heavy && answer_now && !a->closing) {
        job_queue(w);
        return;
    }
    int rc = zone_read_begin(a->cfg.store, &rd);
    if (rc) {
        api__error(wait_take_req(w), 500, "catalog read failed: %s", base_strerror(rc));
        return;
    }
    base_arena_init(&ar);
    /* A woken or first-run blocking query asks for the index alone first: a write elsewhere in
     * the table wakes it, and building a body just to throw it away is the expensive part. */
    res.probe = !answer_now;
    w->fn(a, req, rd, &ar, &res);
    if (res.probed && index_moved(&res, w->min_index) && w->heavy) {
        zone_read_end(rd);
        base_arena_close(&ar);
        result_reset(&res, 0);
        job_queue(w);
        return;
    }
    if (res.probed && index_moved(&res, w->min_index)) {
        result_reset(&res, 200);
        base_arena_reset(&ar);
        w->fn(a, req, rd, &ar, &res);
    }
    if (!result_damaged(rd, &ar, &res) && !answer_now && !index_moved(&res, w->min_index)) {
        zone_read_end(rd);
        base_arena_close(&ar);
        result_reset(&res, 0);
        wait_park(w);
        return;
    }
    req = wait_take_req(w);
    if (res.status >= 400 && res.error) {
        set_read_headers(a, req, res.index);
        http_respond_text(req, res.status, res.error);
        json_decref(res.json);
    } else if (res.raw_set) {
        set_read_headers(a, req, res.index);
        http_respond(req, res.status, res.content_type, res.raw, res.raw_len);
        json_decref(res.json);
    } else {
        api__respond_json(a, req, res.status, res.json, res.index);
    }
    base_buf_free(&res.owned);
    zone_read_end(rd);
    base_arena_close(&ar);
}

/* The one function that moves a waiter on; every event (first run, read index, wait timer,
 * wake-up, disconnect, api_free) only marks the waiter and calls it. Idempotent: it answers
 * the request at most once (when the read index is in and the read is due), and releases the
 * waiter once nothing refers to it any more (no request, no pending read index). */
static void wait_step(struct api_wait *w)
{
    if (w->finished || w->job == JOB_RUNNING)
        return; /* a running reader job holds the request; its completion moves it on */
    wait_unlink(w);
    if (w->job == JOB_QUEUED) {
        if (w->req)
            return; /* answered when a reader is free */
        job_unqueue(w);
    }
    if (w->req && !w->index_pending) {
        if (w->index_status) {
            int st = w->index_status;
            api__error(wait_take_req(w), 500, "%s",
                       st == BASE_ENOTLEADER || st == BASE_ENOLEADER ? "No cluster leader"
                       : st == -ETIMEDOUT ? "Timed out waiting for this server to catch up"
                                          : base_strerror(st));
        } else {
            wait_run(w);
            if (w->parked || w->job != JOB_NONE)
                return;
        }
    }
    if (w->req || w->index_pending)
        return; /* the read index, the timer or the client moves it on */
    w->finished = true;
    uv_close((uv_handle_t *)&w->timer, wait_free_cb);
}

static void wait_abort(void *data, struct http_req *req)
{
    struct api_wait *w = data;
    BASE_UNUSED(req);
    w->req = NULL; /* freed by admin/http once this returns */
    wait_step(w);
}

static void wait_timeout(uv_timer_t *t)
{
    struct api_wait *w = t->data;
    w->expired = true;
    wait_step(w);
}

/* The read index arrived (this replica has applied everything the leader had): read locally,
 * unless the client went away meanwhile. */
static void read_index_done(void *data, int status, uint64_t index)
{
    struct api_wait *w = data;
    BASE_UNUSED(index);
    w->index_pending = false;
    w->index_status = status;
    wait_step(w);
}

static void read_start(struct api *a, struct http_req *req, uint32_t tables, api_read_fn fn,
                       bool local, bool heavy)
{
    const char *stale = local ? "" : http_req_query(req, "stale");
    const char *consistent = http_req_query(req, "consistent");
    const char *idx = http_req_query(req, "index");
    const char *wait = http_req_query(req, "wait");
    const char *dc = http_req_query(req, "dc");
    uint64_t min_index = 0, wait_ms = WAIT_DEFAULT_MS;

    if (local)
        consistent = NULL; /* agent endpoints answer from this agent, as Consul's do */
    if (stale && consistent) {
        api__error(req, 400, "Cannot specify ?stale with ?consistent, conflicting semantics.");
        return;
    }
    if (api__other_dc_named(a, req, dc))
        return;
    if (idx && base_u64_parse(idx, &min_index)) {
        api__error(req, 400, "Invalid index");
        return;
    }
    if (wait && base_duration_parse_strict(wait, &wait_ms)) {
        api__error(req, 400, "Invalid wait time");
        return;
    }
    if (wait_ms > WAIT_MAX_MS)
        wait_ms = WAIT_MAX_MS;

    struct api_wait *w = base_calloc(1, sizeof *w);
    w->api = a;
    base_list_init(&w->link);
    w->req = req;
    w->fn = fn;
    w->tables = tables;
    w->min_index = min_index;
    w->blocking = min_index > 0;
    w->heavy = heavy;
    uv_timer_init(a->loop, &w->timer);
    w->timer.data = w;
    http_req_set_abort(req, wait_abort, w);
    if (w->blocking) {
        uint64_t jitter = wait_ms >= 16 ? rng_next(a) % (wait_ms / 16) : 0;
        uv_timer_start(&w->timer, wait_timeout, wait_ms + jitter, 0);
    }
    if (!stale) {
        /* Default mode and ?consistent: read the leader's view without sending the read to
         * the leader (Raft read index; ?consistent adds a barrier on the leader first). The
         * wait runs once; a parked query re-runs locally on later commits. */
        w->index_pending = true;
        cons_read_index(a->cfg.cons, consistent != NULL, read_index_done, w);
        return;
    }
    wait_step(w);
}

void api__read(struct api *a, struct http_req *req, uint32_t tables, api_read_fn fn)
{
    read_start(a, req, tables, fn, false, false);
}

void api__read_list(struct api *a, struct http_req *req, uint32_t tables, api_read_fn fn)
{
    read_start(a, req, tables, fn, false, true);
}

void api__read_local(struct api *a, struct http_req *req, uint32_t tables, api_read_fn fn)
{
    read_start(a, req, tables, fn, true, false);
}

static void wake_pass(uv_idle_t *h)
{
    struct api *a = h->data;
    uint32_t woken = a->woken;
    a->woken = 0;
    uv_idle_stop(&a->wake);
    a->wake_armed = false;

    /* Detach the woken waiters first: a re-run may park again (at the head of the list). */
    struct base_list ready, *pos, *tmp;
    base_list_init(&ready);
    BASE_LIST_FOREACH_SAFE(pos, tmp, &a->waiters)
    {
        struct api_wait *w = wait_of(pos);
        if (w->tables & woken) {
            wait_unlink(w);
            base_list_insert_head(&ready, &w->link); /* oldest first */
        }
    }
    while (!base_list_empty(&ready)) {
        struct api_wait *w = wait_of(base_list_first(&ready));
        base_list_remove(&w->link);
        wait_step(w);
    }
}

void api_on_applied(struct api *a, uint64_t index, uint32_t touched)
{
    BASE_UNUSED(index);
    if (!a->closing && !(touched & API_WAKE_EVENTS))
        api__sessions_applied(a, touched);
    if (!touched || a->closing)
        return;
    a->woken |= touched;
    if (!a->wake_armed && !base_list_empty(&a->waiters)) {
        a->wake_armed = true;
        uv_idle_start(&a->wake, wake_pass);
    }
}

/* ---- writes ---------------------------------------------------------------------------- */

static void wctx_abort(void *data, struct http_req *req)
{
    struct api_wctx *c = data;
    BASE_UNUSED(req);
    c->req = NULL;
}

bool api__propose_failed(struct http_req *req, int status)
{
    if (status == BASE_ENOLEADER || status == BASE_ENOTLEADER)
        api__error(req, 500, "No cluster leader");
    else if (status == BASE_EUNKNOWN)
        api__error(req, 500, "leadership lost while committing: the write may have been applied");
    else if (status == BASE_ESHUTDOWN)
        api__error(req, 500, "agent is shutting down");
    else if (status == BASE_ETOOBIG)
        api__error(req, 413, "command too large");
    else if (status)
        api__error(req, 500, "write failed: %s", base_strerror(status));
    return status != 0;
}

static void wctx_free(struct api_wctx *c)
{
    base_buf_free(&c->cmd);
    base_free(c->invalid_msg);
    base_free(c);
}

static void write_answer(struct api_wctx *c, int status, int result, uint64_t index)
{
    struct http_req *req = c->req;

    if (!req) {
        wctx_free(c);
        return;
    }
    http_req_set_abort(req, NULL, NULL);
    if (api__propose_failed(req, status)) {
        /* answered */
    } else if (result == BASE_ENOTFOUND) {
        api__error(req, 404, "%s", c->notfound_msg ? c->notfound_msg : "not found");
    } else if (result == BASE_EINVAL && c->invalid_msg) {
        /* as is, without the newline of api__error: clients compare the whole text */
        http_respond(req, 500, "text/plain; charset=utf-8", c->invalid_msg, strlen(c->invalid_msg));
    } else if (result == BASE_EPARSE) {
        api__error(req, 400, "invalid command");
    } else if (result && result != BASE_ECONFLICT) {
        api__error(req, 500, "write failed: %s", base_strerror(result));
    } else {
        char buf[32];
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)index);
        http_resp_header(req, "X-Consul-Index", buf);
        if (c->reply == API_REPLY_BOOL) {
            const char *b = result == BASE_ECONFLICT ? "false" : "true";
            http_respond(req, 200, "application/json", b, strlen(b));
        } else {
            http_respond(req, 200, NULL, "", 0);
        }
    }
    wctx_free(c);
}

static void agent_kept(void *data)
{
    struct api_wctx *c = data;
    write_answer(c, 0, 0, c->index);
}

/* An agent write is answered once the local state owns what it committed and keeps it on disk
 * (admin/local.c), so that an agent restarted right after still owns it. */
static void write_done(void *data, int status, int result, uint64_t index)
{
    struct api_wctx *c = data;
    struct api_local_hooks *h = &c->api->cfg.local;

    if (c->agent && h->written) {
        struct base_arena ar;
        struct zone_cmd cmd;
        base_arena_init(&ar);
        if (status == 0 && result == 0 &&
            zone_cmd_decode(c->cmd.data, c->cmd.len, &ar, &cmd) == 0) {
            c->index = index;
            h->written(h->data, &cmd, agent_kept, c);
            base_arena_close(&ar);
            return;
        }
        h->written(h->data, NULL, NULL, NULL);
        base_arena_close(&ar);
    }
    write_answer(c, status, result, index);
}

bool api__other_dc_named(struct api *a, struct http_req *req, const char *dc)
{
    if (!dc || !*dc || strcmp(dc, a->cfg.datacenter) == 0)
        return false;
    api__error(req, 500, "No path to datacenter");
    return true;
}

bool api__other_dc(struct api *a, struct http_req *req)
{
    return api__other_dc_named(a, req, http_req_query(req, "dc"));
}

static void write_with(struct api *a, struct http_req *req, const struct zone_cmd *cmd,
                       enum api_write_reply reply, const char *notfound_msg,
                       const char *invalid_msg, bool agent)
{
    /* Every write of the HTTP API comes here (a restore starts in snapshot.c, a TTL refresh
     * that changes nothing stops in agent.c): one naming another datacenter is refused before
     * anything is proposed, as reads are. */
    if (api__other_dc(a, req))
        return;
    struct api_wctx *c = base_calloc(1, sizeof *c);
    c->api = a;
    c->req = req;
    c->reply = reply;
    c->notfound_msg = notfound_msg;
    c->invalid_msg = invalid_msg ? base_strdup(invalid_msg) : NULL;
    base_buf_init(&c->cmd);
    if (agent && a->cfg.local.written) {
        c->agent = true;
        zone_cmd_encode(cmd, &c->cmd);
        if (a->cfg.local.begin)
            a->cfg.local.begin(a->cfg.local.data);
    }
    http_req_set_abort(req, wctx_abort, c);
    api_propose(a, cmd, write_done, c);
}

void api__write(struct api *a, struct http_req *req, const struct zone_cmd *cmd,
                enum api_write_reply reply, const char *notfound_msg)
{
    write_with(a, req, cmd, reply, notfound_msg, NULL, false);
}

void api__agent_write(struct api *a, struct http_req *req, const struct zone_cmd *cmd,
                      enum api_write_reply reply, const char *notfound_msg)
{
    write_with(a, req, cmd, reply, notfound_msg, NULL, true);
}

void api__write_invalid(struct api *a, struct http_req *req, const struct zone_cmd *cmd,
                        enum api_write_reply reply, const char *invalid_msg)
{
    write_with(a, req, cmd, reply, NULL, invalid_msg, false);
}

static void propose_ignore(void *data, int status, int result, uint64_t index)
{
    BASE_UNUSED(data);
    BASE_UNUSED(index);
    if (status || result)
        LOG_WARN("api", "internal write failed: %s", base_strerror(status ? status : result));
}

void api_propose(struct api *a, const struct zone_cmd *cmd, cons_propose_cb cb, void *data)
{
    struct base_buf b;
    base_buf_init(&b);
    zone_cmd_encode(cmd, &b);
    cons_propose(a->cfg.cons, b.data, b.len, cb ? cb : propose_ignore, data);
    base_buf_free(&b);
}

/* ---- router ---------------------------------------------------------------------------- */

void api_handle(void *data, struct http_req *req)
{
    struct api *a = data;
    const char *path = http_req_path(req);

    LOG_DEBUG("api", "%s %s", http_req_method(req), path);
    if (a->closing) {
        api__error(req, 503, "agent is shutting down");
        return;
    }
    if (strncmp(path, "/v1/", 4) != 0) {
        api__error(req, 404, "404 page not found");
        return;
    }
    if (api__kv_route(a, req, path) || api__agent_route(a, req, path) ||
        api__catalog_route(a, req, path) || api__health_route(a, req, path) ||
        api__status_route(a, req, path) || api__member_route(a, req, path) ||
        api__snapshot_route(a, req, path) || api__keyring_route(a, req, path) ||
        api__event_route(a, req, path) || api__session_route(a, req, path) ||
        api__txn_route(a, req, path))
        return;
    api__error(req, 404, "404 page not found");
}

int api_new(uv_loop_t *loop, const struct api_config *cfg, struct api **out)
{
    struct api *a = base_calloc(1, sizeof *a);
    a->loop = loop;
    a->cfg = *cfg;
    a->rng = base_wall_ms() | 1;
    base_list_init(&a->waiters);
    base_list_init(&a->jobq);
    /* No mallopt(M_MMAP_THRESHOLD) here: a fixed threshold also fixes glibc's trim threshold,
     * and every Raft entry and LMDB page buffer over it became an mmap/munmap pair; it doubled
     * the CPU per replicated write (30 -> 62 us). Big bodies are given back by the
     * malloc_trim after a big response instead (job_done). */
    uv_idle_init(loop, &a->wake);
    a->wake.data = a;
    api__sessions_init(a);
    *out = a;
    return 0;
}

static void api_free_cb(uv_handle_t *h)
{
    base_free(h->data);
}

static void api_release(struct api *a)
{
    uv_close((uv_handle_t *)&a->wake, api_free_cb);
}

void api_free(struct api *a)
{
    a->closing = true;
    api__sessions_free(a);
    /* Answer every queued and parked query now, as if its wait ran out (on the loop: no new
     * reader job starts); a running job frees the api once it is back. */
    while (!base_list_empty(&a->jobq)) {
        struct api_wait *w = wait_of(base_list_first(&a->jobq));
        job_unqueue(w);
        w->expired = true;
        wait_step(w);
    }
    while (!base_list_empty(&a->waiters)) {
        struct api_wait *w = wait_of(base_list_first(&a->waiters));
        w->expired = true;
        wait_step(w); /* unlinks it */
    }
    api__events_free(a); /* after the lists parked on them were answered */
    if (!a->jobs_running)
        api_release(a);
}
