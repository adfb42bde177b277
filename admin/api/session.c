/* /v1/session: Consul's sessions (agent/session_endpoint.go, consul/session_endpoint.go,
 * session_ttl.go), and the leader's TTL timers.
 *
 * A session lives in the Raft-replicated catalog (zone's sessions table): create, destroy and
 * renew are zone commands, proposed like every write (a follower forwards them to the
 * leader). Reads (info, node, list) are catalog reads with blocking queries on the sessions
 * table.
 *
 * TTL. Only the leader times sessions, as Consul does, and it gives each one twice its TTL
 * (Consul's SessionTTLMultiplier: clients such as Patroni renew at TTL/2 and count on the
 * grace). A renew is a SESSION_RENEW command that changes nothing in the catalog; once it
 * applies, the leader finds it in zone_store_renewed_each and restarts that session's clock.
 * When the leader changes, the new one first applies everything its predecessor committed (a
 * barrier), then arms every session's timer afresh at 2 x TTL; so does a leader after any
 * change to the sessions table, for the sessions it does not time yet. A timer that runs out
 * proposes SESSION_DESTROY, which invalidates the session in the catalog like a destroy: its
 * locks are released (or deleted, with behavior "delete") and the lock delay starts. The
 * timers are one uv timer set to the earliest deadline over a small array (sessions are few
 * next to the catalog). Loop thread. */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#define SESSION_PREFIX   "/v1/session/"
#define TTL_MIN_MS       (10ull * 1000)
#define TTL_MAX_MS       (24ull * 3600 * 1000)
#define TTL_MULTIPLIER   2
#define LOCK_DELAY_MS    15000ull
#define LOCK_DELAY_MAX   (60ull * 1000) /* Consul's maxLockDelay */
#define BARRIER_RETRY_MS 1000
#define SERF_CHECK       "serfHealth"

/* ---- JSON ------------------------------------------------------------------------------ */

/* A Go time.Duration's String() for whole milliseconds: "30s", "1m30s", "1h0m0s", "1.5s". */
static void go_duration(uint64_t ms, char *buf, size_t cap)
{
    uint64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
    size_t n = 0;

    if (ms == 0) {
        snprintf(buf, cap, "0s");
        return;
    }
    if (ms < 1000) {
        snprintf(buf, cap, "%" PRIu64 "ms", ms);
        return;
    }
    if (h)
        n += (size_t)snprintf(buf + n, cap - n, "%" PRIu64 "h", h);
    if (h || m)
        n += (size_t)snprintf(buf + n, cap - n, "%" PRIu64 "m", m);
    if (frac) {
        char f[8];
        snprintf(f, sizeof f, "%03" PRIu64, frac);
        for (int i = 2; i > 0 && f[i] == '0'; i--)
            f[i] = 0;
        snprintf(buf + n, cap - n, "%" PRIu64 ".%ss", s, f);
    } else {
        snprintf(buf + n, cap - n, "%" PRIu64 "s", s);
    }
}

static json_t *session_json(const struct zone_session *ss)
{
    json_t *o = json_object();
    char ttl[48] = "";

    if (ss->ttl_ms)
        go_duration(ss->ttl_ms, ttl, sizeof ttl);
    json_object_set_new(o, "ID", json_string(ss->id));
    json_object_set_new(o, "Name", json_string(ss->name));
    json_object_set_new(o, "Node", json_string(ss->node));
    json_object_set_new(o, "LockDelay", json_integer((json_int_t)(ss->lock_delay_ms * 1000000)));
    json_object_set_new(o, "Behavior",
                        json_string(ss->behavior == ZONE_SESSION_DELETE ? "delete" : "release"));
    json_object_set_new(o, "TTL", json_string(ttl));
    json_object_set_new(o, "NodeChecks", api__json_strlist(ss->node_checks, ss->n_node_checks));
    json_t *sc = json_array(), *all = api__json_strlist(ss->node_checks, ss->n_node_checks);
    for (size_t i = 0; i < ss->n_service_checks; i++) {
        json_array_append_new(sc,
                              json_pack("{s:s,s:s}", "ID", ss->service_checks[i], "Namespace", ""));
        json_array_append_new(all, json_string(ss->service_checks[i]));
    }
    json_object_set_new(o, "ServiceChecks", ss->n_service_checks ? sc : json_null());
    if (!ss->n_service_checks)
        json_decref(sc);
    json_object_set_new(o, "Checks", all); /* Consul's older field: every check */
    api__json_indexes(o, ss->create_index, ss->modify_index);
    return o;
}

/* ---- reads ----------------------------------------------------------------------------- */

#define T_SESSIONS ZONE_TABLE_BIT(ZONE_TABLE_SESSIONS)

static const char *path_arg(struct http_req *req, const char *prefix)
{
    return http_req_path(req) + strlen(prefix);
}

static void read_info(struct api *a, struct http_req *req, struct zone_read *rd,
                      struct base_arena *ar, struct api_result *res)
{
    struct zone_session ss;
    BASE_UNUSED(a);
    if (api__probe_tables(rd, T_SESSIONS, res))
        return;
    json_t *arr = json_array();
    if (zone_session_get(rd, path_arg(req, SESSION_PREFIX "info/"), ar, &ss) == 0)
        json_array_append_new(arr, session_json(&ss));
    res->json = arr;
}

struct list_ctx {
    struct api_list out;
    const char *node; /* NULL: every session */
};

static int add_session(void *data, const struct zone_session *ss)
{
    struct list_ctx *c = data;
    if (!c->node || base_strcasecmp(c->node, ss->node) == 0)
        api__list_add(&c->out, session_json(ss));
    return 0;
}

static void read_list(struct api *a, struct http_req *req, struct zone_read *rd,
                      struct base_arena *ar, struct api_result *res, const char *node)
{
    BASE_UNUSED(a);
    if (api__probe_tables(rd, T_SESSIONS, res))
        return;
    struct list_ctx c = {.node = node};
    api__list_init(&c.out, req);
    zone_sessions_each(rd, ar, add_session, &c);
    api__list_finish(&c.out, res);
}

static void read_all(struct api *a, struct http_req *req, struct zone_read *rd,
                     struct base_arena *ar, struct api_result *res)
{
    read_list(a, req, rd, ar, res, NULL);
}

static void read_node(struct api *a, struct http_req *req, struct zone_read *rd,
                      struct base_arena *ar, struct api_result *res)
{
    read_list(a, req, rd, ar, res, path_arg(req, SESSION_PREFIX "node/"));
}

/* ---- create ---------------------------------------------------------------------------- */

/* A random (version 4) UUID. */
static int new_uuid(char out[37])
{
    uint8_t r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return -errno;
    r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
    r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
    return 0;
}

/* LockDelay: a duration string, or a number: nanoseconds, except that one below 1000 means
 * seconds (Consul's FixupLockDelay, for clients that send 15 meaning 15 s). */
static int get_lock_delay(json_t *v, uint64_t *ms, char *errmsg)
{
    if (json_is_number(v)) {
        double x = json_number_value(v);
        if (x < 0)
            return base_errf(errmsg, BASE_EINVAL,
                             "Request decode failed: field \"LockDelay\": negative duration");
        if (x < 1000) {
            *ms = (uint64_t)(x * 1000 + 0.999);
            return 0;
        }
        if (json_is_integer(v))
            return api__get_duration(v, "LockDelay", ms, errmsg);
        *ms = (uint64_t)(x / 1e6);
        return 0;
    }
    return api__get_duration(v, "LockDelay", ms, errmsg);
}

/* Adds id to list (n so far) unless it is there. */
static void add_check(struct base_arena *ar, const char ***list, size_t *n, size_t *cap,
                      const char *id)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*list)[i], id) == 0)
            return;
    *list = base_arena_grow(ar, *list, *n, cap, sizeof **list, 4);
    (*list)[(*n)++] = id;
}

/* The body of PUT /v1/session/create into ss (strings in ar); errmsg names the field. */
static int decode_create(struct api *a, json_t *obj, struct base_arena *ar, struct zone_session *ss,
                         char *errmsg)
{
    const char **node_checks = NULL, **svc = NULL;
    size_t n_node = 0, cap_node = 0, n_svc = 0, cap_svc = 0;
    bool checks_given = false;
    json_t *v;
    int rc;

    ss->name = "";
    ss->node = a->cfg.node_name;
    ss->behavior = ZONE_SESSION_RELEASE;
    ss->lock_delay_ms = LOCK_DELAY_MS;
    if (!obj)
        goto checks;
    if ((v = api__json_field(obj, "Name")) && (rc = api__get_str(v, "Name", ar, &ss->name, errmsg)))
        return rc;
    if ((v = api__json_field(obj, "Node")) && !json_is_null(v)) {
        if ((rc = api__get_str(v, "Node", ar, &ss->node, errmsg)))
            return rc;
        if (!*ss->node)
            ss->node = a->cfg.node_name;
    }
    if ((v = api__json_field(obj, "Behavior")) && !json_is_null(v)) {
        const char *b;
        if ((rc = api__get_str(v, "Behavior", ar, &b, errmsg)))
            return rc;
        if (strcmp(b, "delete") == 0)
            ss->behavior = ZONE_SESSION_DELETE;
        else if (*b && strcmp(b, "release") != 0)
            return base_errf(errmsg, BASE_EINVAL,
                             "Invalid Behavior setting '%s': must be \"release\" or \"delete\"", b);
    }
    if ((v = api__json_field(obj, "TTL")) && !json_is_null(v)) {
        if ((rc = api__get_duration(v, "TTL", &ss->ttl_ms, errmsg)))
            return rc;
        if (ss->ttl_ms && (ss->ttl_ms < TTL_MIN_MS || ss->ttl_ms > TTL_MAX_MS)) {
            char got[48];
            go_duration(ss->ttl_ms, got, sizeof got);
            return base_errf(errmsg, BASE_EINVAL,
                             "Invalid Session TTL '%s', must be between [10s=24h0m0s]", got);
        }
    }
    if ((v = api__json_field(obj, "LockDelay")) && !json_is_null(v)) {
        if ((rc = get_lock_delay(v, &ss->lock_delay_ms, errmsg)))
            return rc;
        if (ss->lock_delay_ms > LOCK_DELAY_MAX)
            return base_errf(errmsg, BASE_EINVAL, "Invalid LockDelay: at most 60s");
    }
    static const char *const lists[] = {"Checks", "NodeChecks"};
    for (size_t l = 0; l < 2; l++) {
        const char **ids;
        size_t n;
        if (!(v = api__json_field(obj, lists[l])) || json_is_null(v))
            continue;
        if ((rc = api__get_strlist(v, lists[l], ar, &ids, &n, errmsg)))
            return rc;
        checks_given = true;
        for (size_t i = 0; i < n; i++)
            add_check(ar, &node_checks, &n_node, &cap_node, ids[i]);
    }
    if ((v = api__json_field(obj, "ServiceChecks")) && !json_is_null(v)) {
        if (!json_is_array(v))
            return base_errf(errmsg, BASE_EINVAL,
                             "Request decode failed: field \"ServiceChecks\": expected an array");
        checks_given = true;
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *e = json_array_get(v, i), *id = NULL;
            if (json_is_object(e))
                id = api__json_field(e, "ID");
            if (!id || !json_is_string(id) || !*json_string_value(id))
                return base_errf(errmsg, BASE_EINVAL,
                                 "Request decode failed: field \"ServiceChecks\": each entry "
                                 "needs an \"ID\"");
            add_check(ar, &svc, &n_svc, &cap_svc, base_arena_strdup(ar, json_string_value(id)));
        }
    }
checks:
    if (!checks_given) /* Consul: tied to the agent's serfHealth unless told otherwise */
        add_check(ar, &node_checks, &n_node, &cap_node, SERF_CHECK);
    ss->node_checks = node_checks;
    ss->n_node_checks = n_node;
    ss->service_checks = svc;
    ss->n_service_checks = n_svc;
    return 0;
}

/* The node and the checks, as the local replica sees them: a readable answer for the usual
 * mistakes (the apply checks again, authoritatively). Answers and returns false on a problem. */
static bool precheck(struct http_req *req, struct zone_read *rd, struct base_arena *ar,
                     const struct zone_session *ss)
{
    struct zone_node n;
    if (zone_node_get(rd, ss->node, ar, &n) != 0) {
        api__error(req, 400, "Invalid Node: node \"%s\" is not registered", ss->node);
        return false;
    }
    for (size_t l = 0; l < 2; l++) {
        const char *const *ids = l ? ss->service_checks : ss->node_checks;
        size_t cnt = l ? ss->n_service_checks : ss->n_node_checks;
        for (size_t i = 0; i < cnt; i++) {
            struct zone_check c;
            if (zone_check_get(rd, n.name, ids[i], ar, &c) != 0) {
                api__error(req, 500, "Missing check '%s' registration", ids[i]);
                return false;
            }
            if (c.status == ZONE_HEALTH_CRITICAL) {
                api__error(req, 500, "Check '%s' is in critical state", ids[i]);
                return false;
            }
        }
    }
    return true;
}

struct create_ctx {
    struct http_req *req;
    char id[37];
};

static void create_abort(void *data, struct http_req *req)
{
    struct create_ctx *c = data;
    BASE_UNUSED(req);
    c->req = NULL;
}

static void create_done(void *data, int status, int result, uint64_t index)
{
    struct create_ctx *c = data;
    struct http_req *req = c->req;

    if (req) {
        http_req_set_abort(req, NULL, NULL);
        if (api__propose_failed(req, status)) {
            /* answered */
        } else if (result == BASE_ENOTFOUND) {
            api__error(req, 500, "Missing node or check registration");
        } else if (result == BASE_ECONFLICT) {
            api__error(req, 500, "Session could not be created: a check is critical");
        } else if (result) {
            api__error(req, 500, "session create failed: %s", base_strerror(result));
        } else {
            char buf[32];
            snprintf(buf, sizeof buf, "%" PRIu64, index);
            http_resp_header(req, "X-Consul-Index", buf);
            json_t *o = json_pack("{s:s}", "ID", c->id);
            char *text = json_dumps(o, JSON_COMPACT);
            http_respond(req, 200, "application/json", text, strlen(text));
            free(text);
            json_decref(o);
        }
    }
    base_free(c);
}

static void session_create(struct api *a, struct http_req *req)
{
    char errmsg[BASE_ERRMSG_LEN];
    struct base_arena ar;
    struct zone_cmd cmd = {.type = ZONE_CMD_SESSION_CREATE};
    json_t *obj = NULL;
    size_t len;

    if (!api__method(req, "PUT") || api__other_dc(a, req))
        return;
    http_req_body(req, &len);
    if (len && !(obj = api__parse_body(req, errmsg)))
        return;
    base_arena_init(&ar);
    if (decode_create(a, obj, &ar, &cmd.session, errmsg)) {
        api__error(req, 400, "%s", errmsg);
        goto out;
    }
    struct zone_read *rd;
    if (zone_read_begin(a->cfg.store, &rd)) {
        api__error(req, 500, "cannot read the catalog");
        goto out;
    }
    bool ok = precheck(req, rd, &ar, &cmd.session);
    zone_read_end(rd);
    if (!ok)
        goto out;
    struct create_ctx *c = base_calloc(1, sizeof *c);
    if (new_uuid(c->id)) {
        base_free(c);
        api__error(req, 500, "cannot generate a session ID");
        goto out;
    }
    c->req = req;
    cmd.session.id = c->id;
    http_req_set_abort(req, create_abort, c);
    api_propose(a, &cmd, create_done, c);
out:
    json_decref(obj);
    base_arena_close(&ar);
}

/* ---- renew ----------------------------------------------------------------------------- */

struct renew_ctx {
    struct api *api;
    struct http_req *req;
    char *id;
};

static void renew_abort(void *data, struct http_req *req)
{
    struct renew_ctx *c = data;
    BASE_UNUSED(req);
    c->req = NULL;
}

static void renew_done(void *data, int status, int result, uint64_t index)
{
    struct renew_ctx *c = data;
    struct http_req *req = c->req;
    BASE_UNUSED(index);

    if (req) {
        http_req_set_abort(req, NULL, NULL);
        struct zone_read *rd = NULL;
        struct zone_session ss;
        struct base_arena ar;
        base_arena_init(&ar);
        if (api__propose_failed(req, status)) {
            /* answered */
        } else if (result == BASE_ENOTFOUND) {
            api__error(req, 404, "Session id '%s' not found", c->id);
        } else if (result) {
            api__error(req, 500, "session renew failed: %s", base_strerror(result));
        } else if (zone_read_begin(c->api->cfg.store, &rd) == 0 &&
                   zone_session_get(rd, c->id, &ar, &ss) == 0) {
            struct zone_meta m;
            uint64_t at = zone_meta_get(rd, &m) == 0 ? m.table_index[ZONE_TABLE_SESSIONS] : 0;
            api__respond_json(c->api, req, 200, json_pack("[o]", session_json(&ss)), at);
        } else { /* invalidated right after the renew */
            api__error(req, 404, "Session id '%s' not found", c->id);
        }
        zone_read_end(rd);
        base_arena_close(&ar);
    }
    base_free(c->id);
    base_free(c);
}

static void session_renew(struct api *a, struct http_req *req, const char *id)
{
    struct zone_cmd cmd = {.type = ZONE_CMD_SESSION_RENEW};
    if (!api__method(req, "PUT") || api__other_dc(a, req))
        return;
    if (!*id) {
        api__error(req, 400, "Missing session");
        return;
    }
    struct renew_ctx *c = base_calloc(1, sizeof *c);
    c->api = a;
    c->req = req;
    c->id = base_strdup(id);
    cmd.session.id = id;
    http_req_set_abort(req, renew_abort, c);
    api_propose(a, &cmd, renew_done, c);
}

static void session_destroy(struct api *a, struct http_req *req, const char *id)
{
    struct zone_cmd cmd = {.type = ZONE_CMD_SESSION_DESTROY};
    if (!api__method(req, "PUT"))
        return;
    if (!*id) {
        api__error(req, 400, "Missing session");
        return;
    }
    cmd.session.id = id;
    api__write(a, req, &cmd, API_REPLY_BOOL, NULL);
}

bool api__session_route(struct api *a, struct http_req *req, const char *path)
{
    if (strncmp(path, SESSION_PREFIX, strlen(SESSION_PREFIX)) != 0)
        return false;
    const char *rest = path + strlen(SESSION_PREFIX);
    if (strcmp(rest, "create") == 0) {
        session_create(a, req);
    } else if (strncmp(rest, "destroy/", 8) == 0) {
        session_destroy(a, req, rest + 8);
    } else if (strncmp(rest, "renew/", 6) == 0) {
        session_renew(a, req, rest + 6);
    } else if (strncmp(rest, "info/", 5) == 0) {
        if (api__get_named(req, rest + 5, "Missing session"))
            api__read(a, req, T_SESSIONS, read_info);
    } else if (strncmp(rest, "node/", 5) == 0) {
        if (api__get_named(req, rest + 5, "Missing node name"))
            api__read(a, req, T_SESSIONS, read_node);
    } else if (strcmp(rest, "list") == 0) {
        if (api__method(req, "GET"))
            api__read(a, req, T_SESSIONS, read_all);
    } else if (strcmp(rest, "destroy") == 0 || strcmp(rest, "renew") == 0 ||
               strcmp(rest, "info") == 0) {
        api__error(req, 400, "Missing session");
    } else {
        api__error(req, 404, "404 page not found");
    }
    return true;
}

/* ---- the leader's TTL timers ----------------------------------------------------------- */

struct ttl_entry {
    char *id;
    uint64_t ttl_ms;
    uint64_t deadline; /* base_now_ms */
};

struct api__ttl {
    struct api *api;
    uv_timer_t timer;
    struct ttl_entry *v;
    size_t n, cap;
    bool leader, ready, barrier_inflight, closing;
    uint64_t generation;
    unsigned refs; /* the timer handle, a barrier in flight, destroys in flight */
};

static void ttl_unref(struct api__ttl *t)
{
    if (--t->refs > 0)
        return;
    for (size_t i = 0; i < t->n; i++)
        base_free(t->v[i].id);
    base_free(t->v);
    base_free(t);
}

static void ttl_clear(struct api__ttl *t)
{
    for (size_t i = 0; i < t->n; i++)
        base_free(t->v[i].id);
    t->n = 0;
}

static struct ttl_entry *ttl_find(struct api__ttl *t, const char *id)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].id, id) == 0)
            return &t->v[i];
    return NULL;
}

static void ttl_fire(uv_timer_t *h);

/* The timer at the earliest deadline. */
static void ttl_arm(struct api__ttl *t)
{
    uint64_t first = UINT64_MAX, now = base_now_ms();
    uv_timer_stop(&t->timer);
    if (t->closing || !t->ready)
        return;
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].deadline < first)
            first = t->v[i].deadline;
    if (first != UINT64_MAX)
        uv_timer_start(&t->timer, ttl_fire, first > now ? first - now : 0, 0);
}

struct rescan_ctx {
    struct api__ttl *t;
    bool *seen;
    uint64_t now;
};

static int rescan_one(void *data, const struct zone_session *ss)
{
    struct rescan_ctx *c = data;
    struct api__ttl *t = c->t;
    if (!ss->ttl_ms)
        return 0;
    struct ttl_entry *e = ttl_find(t, ss->id);
    if (e) {
        c->seen[e - t->v] = true;
        return 0;
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->v = base_realloc(t->v, t->cap * sizeof *t->v);
        c->seen = base_realloc(c->seen, t->cap * sizeof *c->seen);
    }
    t->v[t->n] =
        (struct ttl_entry){base_strdup(ss->id), ss->ttl_ms, c->now + TTL_MULTIPLIER * ss->ttl_ms};
    c->seen[t->n] = true;
    t->n++;
    return 0;
}

/* Times every session with a TTL that is not timed yet; drops the timers of sessions gone. */
static void ttl_rescan(struct api__ttl *t)
{
    struct zone_read *rd;
    struct base_arena ar;
    struct rescan_ctx c = {.t = t, .now = base_now_ms()};

    if (zone_read_begin(t->api->cfg.store, &rd)) {
        LOG_WARN("session", "cannot read the catalog: session timers wait for the next change");
        return;
    }
    base_arena_init(&ar);
    c.seen = base_calloc(t->cap ? t->cap : 1, sizeof *c.seen);
    if (zone_sessions_each(rd, &ar, rescan_one, &c) == 0) {
        size_t j = 0;
        for (size_t i = 0; i < t->n; i++) {
            if (!c.seen[i]) {
                base_free(t->v[i].id);
                continue;
            }
            t->v[j++] = t->v[i];
        }
        t->n = j;
    }
    base_free(c.seen);
    base_arena_close(&ar);
    zone_read_end(rd);
    ttl_arm(t);
}

struct destroy_ctx {
    struct api__ttl *t;
    char *id;
};

static void destroyed(void *data, int status, int result, uint64_t index)
{
    struct destroy_ctx *d = data;
    struct api__ttl *t = d->t;
    BASE_UNUSED(index);
    if (status || result) {
        LOG_WARN("session", "destroying expired session %s failed: %s", d->id,
                 base_strerror(status ? status : result));
        if (!t->closing && t->ready) /* times it again (a full 2 x TTL) */
            ttl_rescan(t);
    }
    base_free(d->id);
    base_free(d);
    ttl_unref(t);
}

static void ttl_fire(uv_timer_t *h)
{
    struct api__ttl *t = h->data;
    uint64_t now = base_now_ms();
    size_t j = 0;

    if (t->closing || !t->ready)
        return;
    for (size_t i = 0; i < t->n; i++) {
        struct ttl_entry *e = &t->v[i];
        if (e->deadline > now) {
            t->v[j++] = *e;
            continue;
        }
        LOG_INFO("session",
                 "session %s expired (TTL %" PRIu64 " ms, not renewed in %" PRIu64
                 " ms): destroying it",
                 e->id, e->ttl_ms, TTL_MULTIPLIER * e->ttl_ms);
        struct zone_cmd cmd = {.type = ZONE_CMD_SESSION_DESTROY};
        cmd.session.id = e->id;
        struct destroy_ctx *d = base_malloc(sizeof *d);
        d->t = t;
        d->id = e->id; /* owned by d now */
        t->refs++;
        api_propose(t->api, &cmd, destroyed, d);
    }
    t->n = j;
    ttl_arm(t);
}

struct ttl_barrier {
    struct api__ttl *t;
    uint64_t generation;
};

static void ttl_start_barrier(struct api__ttl *t);

static void ttl_retry(uv_timer_t *h)
{
    struct api__ttl *t = h->data;
    if (!t->closing && t->leader && !t->ready)
        ttl_start_barrier(t);
}

static void ttl_barrier_done(void *data, int status)
{
    struct ttl_barrier *b = data;
    struct api__ttl *t = b->t;
    bool current = b->generation == t->generation;
    base_free(b);
    t->barrier_inflight = false;
    if (!t->closing && current && t->leader) {
        if (status) {
            LOG_WARN("session", "barrier failed: %s; session timers retry in %d ms",
                     base_strerror(status), BARRIER_RETRY_MS);
            uv_timer_start(&t->timer, ttl_retry, BARRIER_RETRY_MS, 0);
        } else {
            t->ready = true;
            ttl_clear(t); /* every session gets a full 2 x TTL from its new leader */
            ttl_rescan(t);
        }
    } else if (!t->closing && t->leader && !t->ready) {
        ttl_start_barrier(t); /* a newer term's barrier */
    }
    ttl_unref(t);
}

static void ttl_start_barrier(struct api__ttl *t)
{
    if (t->barrier_inflight)
        return;
    struct ttl_barrier *b = base_malloc(sizeof *b);
    b->t = t;
    b->generation = t->generation;
    t->barrier_inflight = true;
    t->refs++;
    cons_barrier(t->api->cfg.cons, ttl_barrier_done, b);
}

void api_on_leader(struct api *a, bool is_leader)
{
    struct api__ttl *t = a->ttl;
    if (!t || t->closing || is_leader == t->leader)
        return;
    t->leader = is_leader;
    t->ready = false;
    t->generation++;
    uv_timer_stop(&t->timer);
    ttl_clear(t);
    if (is_leader)
        ttl_start_barrier(t);
}

static void renewed(void *data, const char *id)
{
    struct api__ttl *t = data;
    struct ttl_entry *e = ttl_find(t, id);
    if (e)
        e->deadline = base_now_ms() + TTL_MULTIPLIER * e->ttl_ms;
}

void api__sessions_applied(struct api *a, uint32_t touched)
{
    struct api__ttl *t = a->ttl;
    if (!t || t->closing || !t->ready)
        return;
    if (touched & T_SESSIONS) {
        ttl_rescan(t);
    }
    zone_store_renewed_each(a->cfg.store, renewed, t);
    ttl_arm(t);
}

void api__sessions_init(struct api *a)
{
    struct api__ttl *t = base_calloc(1, sizeof *t);
    t->api = a;
    uv_timer_init(a->loop, &t->timer);
    t->timer.data = t;
    t->refs = 1;
    a->ttl = t;
}

static void ttl_closed(uv_handle_t *h)
{
    ttl_unref(h->data);
}

void api__sessions_free(struct api *a)
{
    struct api__ttl *t = a->ttl;
    if (!t)
        return;
    a->ttl = NULL;
    t->closing = true;
    t->leader = t->ready = false;
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, ttl_closed);
}
