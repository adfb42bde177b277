/* The agent's local state and anti-entropy (Consul's agent/local and agent/ae).
 *
 * What the agent owns: the services and checks registered through its /v1/agent/ endpoints
 * (maintenance mode's checks included) and those of its config files. Each is kept as the
 * REGISTER command that recreates it (zone_cmd_encode's bytes): a service with the checks of
 * its definition, a check alone; each check of a service definition is also owned on its own,
 * so that it comes back when only it was removed. A status set through the API (TTL
 * pass/warn/fail/update) is written into the owned check's command, so a check registered
 * again says what it last said (the runner's probes correct the others on their next round).
 * What came through the API is kept in DATA/local/state (rewritten whole, to a .tmp renamed
 * over it, off the loop, after each change), and the agent write is answered only once the
 * file holds it: an agent restarted right after its 200 still owns what it registered (else its
 * first pass would remove it as not its own). Config files are read again at start. A
 * restarted agent thus owns what its config and its state say, and its first pass registers
 * anything missing: registration by ID replaces, so nothing is duplicated.
 *
 * Anti-entropy. At once on change: the agent endpoints write the catalog themselves and tell
 * us when committed (adm_local_written). Fully: every ae_interval (Consul's 1 minute), scaled
 * as Consul's aeScale does with the pool's size (x1 up to 128 members, one more per doubling
 * beyond) plus a random part of up to half of that (Consul staggers the same way), a pass reads
 * this node's entries in the catalog at a read index (Consul's default consistency; on a
 * client its replica once caught up) and repairs both ways:
 *  - the node, an owned service or check missing, or an owned service whose name, address,
 *    port or tags differ, is registered again from its command;
 *  - a service or check of this node that the agent does not own is deregistered, except the
 *    leader's serfHealth and a server's "consul" service.
 * A pass while agent writes are in flight removes nothing (a write committed but not yet told
 * to us would look unowned). A pass that fails (no leader, a write refused) logs its reason,
 * is counted in /v1/agent/self's Stats.agent (sync_failures, last_sync_error) and is retried
 * after at most 15 s (Consul's retryFailIntv).
 *
 * Loop thread. A pass's proposals end inside cons_stop at the latest, so local is freed after
 * consensus stopped (and after the state file's last write came back). */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_MAGIC     "HLS1"
#define STATE_MAX       (64u << 20) /* DATA/local/state larger than this is not read */
#define RETRY_MS        15000
#define SCALE_THRESHOLD 128
#define FIRST_PASS_MS   200 /* after the node is registered */
#define SERF_HEALTH     "serfHealth"
#define CONSUL_SERVICE  "consul"

enum own_kind { OWN_SERVICE = 's', OWN_CHECK = 'c' };

struct owned {
    char kind;
    char *id;
    char *service_id;    /* a check's service ("" for a node check); a service's own id */
    struct base_buf cmd; /* the REGISTER command that recreates it */
    bool persist;        /* through the API: kept in DATA/local/state */
};

struct kept {
    struct kept *next;
    void (*done)(void *ctx);
    void *ctx;
};

struct adm_local {
    uv_loop_t *loop;
    char *node;
    bool server;
    uint64_t interval_ms;
    struct zone_store *store;
    struct cons *cons;
    struct api *api;
    adm_local_size_fn members;
    void *members_data;
    struct owned *v;
    size_t n;
    struct base_buf node_cmd; /* the node's registration (empty until set) */
    uv_timer_t timer;
    bool started, stopped, passing;
    unsigned pending; /* agent writes in flight */
    /* the pass in flight */
    unsigned outstanding;
    int pass_rc;
    char pass_err[BASE_ERRMSG_LEN];
    /* figures */
    uint64_t passes, failures, repairs, last_ok_ms;
    char last_error[BASE_ERRMSG_LEN];
    /* DATA/local/state, and the agent writes answered once it holds them: those of the write
     * in flight (inflight) and those for the next one (waiting) */
    char *path, *tmp;
    bool dirty, writing, freeing;
    struct kept *waiting, *inflight;
    uv_work_t work;
    struct base_buf wbuf;
    int wrc;
};

/* ---- owned entries --------------------------------------------------------------------- */

static struct owned *find(struct adm_local *l, char kind, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].kind == kind && strcmp(l->v[i].id, id) == 0)
            return &l->v[i];
    return NULL;
}

static void drop_at(struct adm_local *l, size_t i)
{
    base_free(l->v[i].id);
    base_free(l->v[i].service_id);
    base_buf_free(&l->v[i].cmd);
    l->v[i] = l->v[--l->n];
}

static void drop(struct adm_local *l, char kind, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].kind == kind && strcmp(l->v[i].id, id) == 0) {
            drop_at(l, i);
            return;
        }
}

static void put(struct adm_local *l, char kind, const char *id, const char *service_id,
                const struct zone_cmd *cmd, bool persist)
{
    struct owned *o = find(l, kind, id);
    if (!o) {
        l->v = base_realloc(l->v, (l->n + 1) * sizeof(*l->v));
        o = &l->v[l->n++];
        memset(o, 0, sizeof(*o));
        o->kind = kind;
        o->id = base_strdup(id);
        base_buf_init(&o->cmd);
    } else {
        o->cmd.len = 0;
        base_free(o->service_id);
    }
    o->service_id = base_strdup(service_id ? service_id : "");
    o->persist = persist;
    zone_cmd_encode(cmd, &o->cmd);
}

/* Owns what a committed REGISTER brings: its service (with the checks of its definition) and
 * each check on its own. */
static void own_register(struct adm_local *l, const struct zone_cmd *cmd, bool persist)
{
    if (cmd->service) {
        const char *sid = *cmd->service->id ? cmd->service->id : cmd->service->name;
        put(l, OWN_SERVICE, sid, sid, cmd, persist);
    }
    for (size_t i = 0; i < cmd->n_checks; i++) {
        struct zone_check c = cmd->checks[i];
        const char *cid = *c.check_id ? c.check_id : c.name;
        struct zone_cmd one = {.type = ZONE_CMD_REGISTER,
                               .node = cmd->node,
                               .skip_node_update = true,
                               .checks = &c,
                               .n_checks = 1};
        if (cmd->service && (!c.service_id || !*c.service_id))
            c.service_id = *cmd->service->id ? cmd->service->id : cmd->service->name;
        put(l, OWN_CHECK, cid, c.service_id, &one, persist);
    }
}

/* A status set through the API goes into the owned check's command. */
static bool own_status(struct adm_local *l, const char *check_id, enum zone_health st,
                       const char *output)
{
    struct owned *o = find(l, OWN_CHECK, check_id);
    struct base_arena ar;
    struct zone_cmd cmd;
    if (!o)
        return false;
    base_arena_init(&ar);
    if (zone_cmd_decode(o->cmd.data, o->cmd.len, &ar, &cmd) == 0 && cmd.n_checks == 1) {
        struct zone_check c = cmd.checks[0];
        c.status = st;
        c.output = output ? output : "";
        cmd.checks = &c;
        o->cmd.len = 0;
        zone_cmd_encode(&cmd, &o->cmd);
    }
    base_arena_close(&ar);
    return o->persist;
}

/* ---- DATA/local/state ------------------------------------------------------------------ */
/* "HLS1", then per entry: kind (1 byte), persist-ignored, length (4 bytes, big-endian), the
 * command. Only the API's entries are written. */

static void state_work(uv_work_t *w)
{
    struct adm_local *l = w->data;
    FILE *f = fopen(l->tmp, "wb");
    int rc = 0;
    if (!f || fwrite(l->wbuf.data, 1, l->wbuf.len, f) != l->wbuf.len || fflush(f) ||
        fsync(fileno(f)))
        rc = -errno;
    if (f && fclose(f) && !rc)
        rc = -errno;
    if (!rc && rename(l->tmp, l->path))
        rc = -errno;
    l->wrc = rc;
}

static void local_free(struct adm_local *l);
static void state_save(struct adm_local *l);

/* Answers the agent writes in list (reversed: oldest first). */
static void kept_fire(struct kept *list)
{
    struct kept *rev = NULL;
    while (list) {
        struct kept *k = list;
        list = k->next;
        k->next = rev;
        rev = k;
    }
    while (rev) {
        struct kept *k = rev;
        rev = k->next;
        k->done(k->ctx);
        base_free(k);
    }
}

static void state_after(uv_work_t *w, int status)
{
    struct adm_local *l = w->data;
    l->writing = false;
    struct kept *done = l->inflight;
    l->inflight = NULL;
    kept_fire(done); /* a failed write is logged below; the catalog has it either way */
    if (status || l->wrc)
        LOG_WARN("agent", "writing %s: %s", l->path, base_strerror(status ? status : l->wrc));
    if (l->freeing) {
        local_free(l);
        return;
    }
    if (l->dirty)
        state_save(l);
}

static void state_save(struct adm_local *l)
{
    l->dirty = true;
    if (l->writing || !l->path)
        return;
    l->dirty = false;
    l->wbuf.len = 0;
    base_buf_append(&l->wbuf, STATE_MAGIC, 4);
    for (size_t i = 0; i < l->n; i++) {
        if (!l->v[i].persist)
            continue;
        uint8_t h[5] = {(uint8_t)l->v[i].kind, (uint8_t)(l->v[i].cmd.len >> 24),
                        (uint8_t)(l->v[i].cmd.len >> 16), (uint8_t)(l->v[i].cmd.len >> 8),
                        (uint8_t)l->v[i].cmd.len};
        base_buf_append(&l->wbuf, h, sizeof h);
        base_buf_append(&l->wbuf, l->v[i].cmd.data, l->v[i].cmd.len);
    }
    l->work.data = l;
    l->inflight = l->waiting;
    l->waiting = NULL;
    if (uv_queue_work(l->loop, &l->work, state_work, state_after) == 0) {
        l->writing = true;
    } else {
        struct kept *done = l->inflight;
        l->inflight = NULL;
        kept_fire(done);
    }
}

/* Reads DATA/local/state (start-up, before the loop runs anything): entries that do not
 * decode, or name another node, are skipped with a warning; the file is ours, but disks and
 * editors happen. */
static void state_load(struct adm_local *l)
{
    FILE *f = fopen(l->path, "rb");
    if (!f)
        return;
    struct base_buf b;
    base_buf_init(&b);
    uint8_t chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len <= STATE_MAX)
        base_buf_append(&b, chunk, got);
    fclose(f);
    size_t at = 4, bad = 0;
    if (b.len < 4 || b.len > STATE_MAX || memcmp(b.data, STATE_MAGIC, 4) != 0) {
        LOG_WARN("agent", "%s: not a local state file, ignored", l->path);
        base_buf_free(&b);
        return;
    }
    while (at < b.len) {
        if (b.len - at < 5) {
            bad++;
            break;
        }
        char kind = (char)b.data[at];
        size_t len = (size_t)b.data[at + 1] << 24 | (size_t)b.data[at + 2] << 16 |
                     (size_t)b.data[at + 3] << 8 | b.data[at + 4];
        at += 5;
        if (len > b.len - at) {
            bad++;
            break;
        }
        struct base_arena ar;
        struct zone_cmd cmd;
        base_arena_init(&ar);
        if ((kind != OWN_SERVICE && kind != OWN_CHECK) ||
            zone_cmd_decode(b.data + at, len, &ar, &cmd) || cmd.type != ZONE_CMD_REGISTER ||
            strcmp(cmd.node.name, l->node) != 0 || (kind == OWN_SERVICE && !cmd.service) ||
            (kind == OWN_CHECK && cmd.n_checks != 1)) {
            bad++;
        } else if (kind == OWN_SERVICE) {
            const char *sid = *cmd.service->id ? cmd.service->id : cmd.service->name;
            put(l, OWN_SERVICE, sid, sid, &cmd, true);
        } else {
            const struct zone_check *c = &cmd.checks[0];
            put(l, OWN_CHECK, *c->check_id ? c->check_id : c->name, c->service_id, &cmd, true);
        }
        base_arena_close(&ar);
        at += len;
    }
    if (bad)
        LOG_WARN("agent", "%s: %zu damaged entries skipped", l->path, bad);
    base_buf_free(&b);
}

/* ---- anti-entropy ---------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void pass_schedule(struct adm_local *l, uint64_t ms)
{
    if (!l->stopped && l->started)
        uv_timer_start(&l->timer, on_timer, ms, 0);
}

/* Consul's aeScale: x1 up to 128 members, then one more per doubling. */
static uint64_t scaled_interval(struct adm_local *l)
{
    size_t n = l->members ? l->members(l->members_data) : 1;
    uint64_t f = 1;
    for (size_t m = SCALE_THRESHOLD; n > m; m *= 2)
        f++;
    uint64_t d = l->interval_ms * f;
    return d + (uint64_t)(random() % (long)(d / 2 + 1));
}

static void pass_end(struct adm_local *l)
{
    l->passing = false;
    l->passes++;
    if (l->pass_rc) {
        l->failures++;
        snprintf(l->last_error, sizeof l->last_error, "%s", l->pass_err);
        LOG_WARN("agent", "anti-entropy: syncing node %s failed: %s", l->node, l->pass_err);
        uint64_t next = scaled_interval(l);
        pass_schedule(l, next < RETRY_MS ? next : RETRY_MS);
        return;
    }
    l->last_ok_ms = uv_now(l->loop);
    l->last_error[0] = '\0';
    pass_schedule(l, scaled_interval(l));
}

static void pass_fail(struct adm_local *l, int rc, const char *fmt, const char *what)
{
    if (!l->pass_rc) {
        l->pass_rc = rc;
        snprintf(l->pass_err, sizeof l->pass_err, fmt, what, base_strerror(rc));
    }
}

struct repair {
    struct adm_local *l;
    char *what;
};

static void repaired(void *data, int status, int result, uint64_t index)
{
    struct repair *r = data;
    struct adm_local *l = r->l;
    BASE_UNUSED(index);
    if (status || result)
        pass_fail(l, status ? status : result, "%s: %s", r->what);
    base_free(r->what);
    base_free(r);
    if (--l->outstanding == 0)
        pass_end(l);
}

static void propose(struct adm_local *l, const struct zone_cmd *cmd, const char *what)
{
    struct repair *r = base_malloc(sizeof *r);
    r->l = l;
    r->what = base_strdup(what);
    l->outstanding++;
    l->repairs++;
    LOG_INFO("agent", "anti-entropy: %s", what);
    api_propose(l->api, cmd, repaired, r);
}

static void propose_owned(struct adm_local *l, const struct owned *o, const char *why)
{
    struct base_arena ar;
    struct zone_cmd cmd;
    char what[600];
    base_arena_init(&ar);
    snprintf(what, sizeof what, "%s %s %s", why, o->kind == OWN_SERVICE ? "service" : "check",
             o->id);
    if (zone_cmd_decode(o->cmd.data, o->cmd.len, &ar, &cmd) == 0)
        propose(l, &cmd, what);
    base_arena_close(&ar);
}

/* What the catalog holds for this node. */
struct seen {
    struct adm_local *l;
    struct base_arena *ar;
    char **chk;
    size_t n_svc, n_chk;
    const struct zone_service **svcs;
};

static int seen_service(void *data, const struct zone_service *s)
{
    struct seen *x = data;
    struct zone_service *c = base_arena_alloc(x->ar, sizeof *c);
    *c = *s;
    c->id = base_arena_strdup(x->ar, s->id);
    c->name = base_arena_strdup(x->ar, s->name);
    c->address = base_arena_strdup(x->ar, s->address);
    const char **tags = base_arena_alloc(x->ar, (s->n_tags + 1) * sizeof(*tags));
    for (size_t i = 0; i < s->n_tags; i++)
        tags[i] = base_arena_strdup(x->ar, s->tags[i]);
    c->tags = tags;
    if ((x->n_svc & (x->n_svc - 1)) == 0) {
        const struct zone_service **v =
            base_arena_alloc(x->ar, (x->n_svc ? 2 * x->n_svc : 1) * sizeof(*v));
        if (x->n_svc)
            memcpy(v, x->svcs, x->n_svc * sizeof(*v));
        x->svcs = v;
    }
    x->svcs[x->n_svc++] = c;
    return 0;
}

static int seen_check(void *data, const struct zone_check *c)
{
    struct seen *x = data;
    if ((x->n_chk & (x->n_chk - 1)) == 0) {
        char **v = base_arena_alloc(x->ar, (x->n_chk ? 2 * x->n_chk : 1) * sizeof(*v));
        if (x->n_chk)
            memcpy(v, x->chk, x->n_chk * sizeof(*v));
        x->chk = v;
    }
    x->chk[x->n_chk++] = base_arena_strdup(x->ar, c->check_id);
    return 0;
}

static bool same_service(const struct owned *o, const struct zone_service *s)
{
    struct base_arena ar;
    struct zone_cmd cmd;
    bool same = false;
    base_arena_init(&ar);
    if (zone_cmd_decode(o->cmd.data, o->cmd.len, &ar, &cmd) == 0 && cmd.service) {
        const struct zone_service *w = cmd.service;
        same = strcmp(w->name, s->name) == 0 && strcmp(w->address, s->address) == 0 &&
               w->port == s->port && w->n_tags == s->n_tags;
        for (size_t i = 0; same && i < s->n_tags; i++)
            same = strcmp(w->tags[i], s->tags[i]) == 0;
    }
    base_arena_close(&ar);
    return same;
}

static const struct zone_service *seen_find(const struct seen *x, const char *id)
{
    for (size_t i = 0; i < x->n_svc; i++)
        if (strcmp(x->svcs[i]->id, id) == 0)
            return x->svcs[i];
    return NULL;
}

static bool seen_has_check(const struct seen *x, const char *id)
{
    for (size_t i = 0; i < x->n_chk; i++)
        if (strcmp(x->chk[i], id) == 0)
            return true;
    return false;
}

static void pass_compare(struct adm_local *l)
{
    struct base_arena ar;
    struct zone_read *rd;
    struct zone_node node;
    struct seen x = {.l = l, .ar = &ar};
    int rc;

    base_arena_init(&ar);
    if ((rc = zone_read_begin(l->store, &rd))) {
        pass_fail(l, rc, "%s: %s", "reading the catalog");
        base_arena_close(&ar);
        pass_end(l);
        return;
    }
    bool have_node = zone_node_get(rd, l->node, &ar, &node) == 0;
    if (have_node) {
        zone_node_services_each(rd, l->node, &ar, seen_service, &x);
        zone_node_checks_each(rd, l->node, &ar, seen_check, &x);
    }
    zone_read_end(rd);

    l->outstanding = 1; /* held while proposing, so that no callback ends the pass early */
    if (!have_node && l->node_cmd.len) {
        struct base_arena na;
        struct zone_cmd cmd;
        base_arena_init(&na);
        if (zone_cmd_decode(l->node_cmd.data, l->node_cmd.len, &na, &cmd) == 0)
            propose(l, &cmd, "registering node again");
        base_arena_close(&na);
    }
    for (size_t i = 0; i < l->n; i++) {
        const struct owned *o = &l->v[i];
        if (o->kind != OWN_SERVICE)
            continue;
        const struct zone_service *s = seen_find(&x, o->id);
        if (!s)
            propose_owned(l, o, "registering missing");
        else if (!same_service(o, s))
            propose_owned(l, o, "registering changed");
    }
    for (size_t i = 0; i < l->n; i++) {
        const struct owned *o = &l->v[i];
        if (o->kind == OWN_CHECK && !seen_has_check(&x, o->id))
            propose_owned(l, o, "registering missing");
    }
    if (l->pending == 0) {
        for (size_t i = 0; i < x.n_svc; i++) {
            const char *id = x.svcs[i]->id;
            if (find(l, OWN_SERVICE, id) || (l->server && strcmp(id, CONSUL_SERVICE) == 0))
                continue;
            struct zone_cmd cmd = {.type = ZONE_CMD_DEREGISTER, .service_id = id};
            char what[600];
            cmd.node.name = l->node;
            snprintf(what, sizeof what, "deregistering service %s, not this agent's", id);
            propose(l, &cmd, what);
        }
        for (size_t i = 0; i < x.n_chk; i++) {
            const char *id = x.chk[i];
            if (find(l, OWN_CHECK, id) || strcmp(id, SERF_HEALTH) == 0)
                continue;
            struct zone_cmd cmd = {.type = ZONE_CMD_DEREGISTER, .check_id = id};
            char what[600];
            cmd.node.name = l->node;
            snprintf(what, sizeof what, "deregistering check %s, not this agent's", id);
            propose(l, &cmd, what);
        }
    }
    base_arena_close(&ar);
    if (--l->outstanding == 0)
        pass_end(l);
}

static void pass_read(void *data, int status, uint64_t index)
{
    struct adm_local *l = data;
    BASE_UNUSED(index);
    if (l->stopped) {
        l->passing = false;
        return;
    }
    if (status) {
        pass_fail(l, status, "%s: %s", "reading the catalog at the leader's index");
        pass_end(l);
        return;
    }
    pass_compare(l);
}

static void on_timer(uv_timer_t *t)
{
    struct adm_local *l = t->data;
    if (l->stopped || l->passing)
        return;
    l->passing = true;
    l->pass_rc = 0;
    l->pass_err[0] = '\0';
    cons_read_index(l->cons, false, pass_read, l);
}

/* ---- public ---------------------------------------------------------------------------- */

struct adm_local *adm_local_new(uv_loop_t *loop, const struct adm_local_config *cfg)
{
    struct adm_local *l = base_calloc(1, sizeof *l);
    char path[4096];
    l->loop = loop;
    l->node = base_strdup(cfg->node_name);
    l->server = cfg->server;
    l->interval_ms = cfg->interval_ms ? cfg->interval_ms : 60000;
    l->store = cfg->store;
    l->cons = cfg->cons;
    l->api = cfg->api;
    l->members = cfg->members;
    l->members_data = cfg->data;
    base_buf_init(&l->node_cmd);
    base_buf_init(&l->wbuf);
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    if (cfg->data_dir) {
        snprintf(path, sizeof path, "%s/local", cfg->data_dir);
        if (mkdir(path, 0700) && errno != EEXIST)
            LOG_WARN("agent", "%s: %s", path, strerror(errno));
        snprintf(path, sizeof path, "%s/local/state", cfg->data_dir);
        l->path = base_strdup(path);
        snprintf(path, sizeof path, "%s/local/state.tmp", cfg->data_dir);
        l->tmp = base_strdup(path);
        state_load(l);
    }
    return l;
}

void adm_local_set_api(struct adm_local *l, struct api *api)
{
    l->api = api;
}

void adm_local_set_node(struct adm_local *l, const struct zone_cmd *node_cmd)
{
    l->node_cmd.len = 0;
    zone_cmd_encode(node_cmd, &l->node_cmd);
}

void adm_local_own(struct adm_local *l, const struct zone_cmd *cmd)
{
    if (cmd->type == ZONE_CMD_REGISTER)
        own_register(l, cmd, false);
}

void adm_local_begin(void *data)
{
    struct adm_local *l = data;
    l->pending++;
}

void adm_local_written(void *data, const struct zone_cmd *cmd, void (*done)(void *ctx), void *ctx)
{
    struct adm_local *l = data;
    bool changed = true;
    if (l->pending)
        l->pending--;
    if (!cmd)
        return;
    switch (cmd->type) {
    case ZONE_CMD_REGISTER:
        own_register(l, cmd, true);
        break;
    case ZONE_CMD_DEREGISTER:
        if (cmd->service_id && *cmd->service_id) {
            drop(l, OWN_SERVICE, cmd->service_id);
            for (size_t i = l->n; i-- > 0;)
                if (l->v[i].kind == OWN_CHECK && strcmp(l->v[i].service_id, cmd->service_id) == 0)
                    drop_at(l, i);
        }
        if (cmd->check_id && *cmd->check_id)
            drop(l, OWN_CHECK, cmd->check_id);
        break;
    case ZONE_CMD_CHECK_UPDATE:
        changed = own_status(l, cmd->check_id, cmd->status, cmd->output);
        break;
    default:
        changed = false;
        break;
    }
    if (!changed || !l->path || l->freeing) {
        done(ctx);
        return;
    }
    struct kept *k = base_malloc(sizeof *k);
    *k = (struct kept){l->waiting, done, ctx};
    l->waiting = k;
    state_save(l);
}

void adm_local_start(struct adm_local *l)
{
    if (l->started || l->stopped)
        return;
    l->started = true;
    pass_schedule(l, FIRST_PASS_MS);
}

void adm_local_stats(void *data, struct api_sync_stats *out)
{
    struct adm_local *l = data;
    out->services = out->checks = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].kind == OWN_SERVICE)
            out->services++;
        else
            out->checks++;
    }
    out->passes = l->passes;
    out->failures = l->failures;
    out->repairs = l->repairs;
    out->last_sync_ms_ago = l->last_ok_ms ? uv_now(l->loop) - l->last_ok_ms : UINT64_MAX;
    out->last_error = l->last_error;
}

void adm_local_stop(struct adm_local *l)
{
    if (!l)
        return;
    l->stopped = true;
    uv_timer_stop(&l->timer);
}

static void local_free(struct adm_local *l)
{
    kept_fire(l->waiting); /* none: a write starts whenever one waits */
    while (l->n)
        drop_at(l, l->n - 1);
    base_free(l->v);
    base_free(l->node);
    base_free(l->path);
    base_free(l->tmp);
    base_buf_free(&l->node_cmd);
    base_buf_free(&l->wbuf);
    base_free(l);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct adm_local *l = h->data;
    if (l->writing)
        l->freeing = true; /* state_after frees it */
    else
        local_free(l);
}

void adm_local_free(struct adm_local *l)
{
    if (!l)
        return;
    l->stopped = true;
    uv_close((uv_handle_t *)&l->timer, on_timer_closed);
}
