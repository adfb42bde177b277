/* The leader turns gossip membership into the catalog (Consul's leader.go: reconcileMember and
 * handle{Alive,Failed,Left,Reap}Member; issue 11).
 *
 * Only the leader writes, and only about members that are Consul agents of our datacenter
 * (role=consul with valid server tags, or role=node): a plain serf agent in the pool is never
 * registered.
 *   alive   the node at the member's address, its serfHealth check passing ("Agent alive and
 *           reachable"), and for a server the "consul" service on the server port;
 *   failed  serfHealth critical ("Agent not live or unreachable"), so every service of the node
 *           leaves DNS and ?passing at the next query; nothing when the node is not there;
 *   left, reaped  the node is deregistered (never our own: a leader that leaves has handed over
 *           first); a server is also removed from Raft.
 * Each write is compared with the catalog first, so a steady pool writes nothing; the writes of
 * one loop turn travel in one Raft entry (group commit).
 *
 * Events can be missed (leadership changes, a write that failed), so the leader also reconciles
 * the whole member list: after it is elected (once a barrier has applied everything the old
 * leader committed) and every reconcile_interval (60 s, Consul's ReconcileInterval). A catalog
 * node with a passing serfHealth that gossip does not know in two passes in a row (so not a pool
 * still converging) is set critical; that scan reads every node, so it runs on the thread pool.
 * Departure from Consul, which deregisters such a node (reconcileReaped): Herald keeps no serf
 * snapshot yet, so after every server restarted the pool has forgotten its failed members; a node
 * marked critical hides from DNS and comes back passing if it returns. Loop thread. */
#include "internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define BARRIER_RETRY_MS 5000
#define SERF_CHECK       "serfHealth"

struct adm_reconcile {
    uv_loop_t *loop;
    const struct adm_config *cfg;
    struct zone_store *store;
    struct cons *cons;
    struct api *api;
    struct adm_serf *serf;
    uv_timer_t timer;
    bool leader, ready, barrier_inflight, closing, scanning;
    unsigned refs;       /* the timer's handle, and a scan in flight */
    uint64_t generation; /* bumped on every leadership change: late barrier answers are stale */
    /* names of catalog nodes with a passing serfHealth that the last pass did not find in the
     * pool (lowercased) */
    struct adm_strv absent;
    uint64_t writes; /* proposals made */
};

/* ---- which members, and what they should look like ---------------------------------- */

/* A member the leader handles: a Consul agent of our datacenter. */
static bool handled(struct adm_reconcile *r, const struct gossip_node *m, struct adm_server *srv,
                    bool *server)
{
    const char *role = adm_tag(m, "role"), *dc = adm_tag(m, "dc");
    *server = adm_server_parse(m, srv);
    if (*server)
        return strcmp(srv->dc, r->cfg->datacenter) == 0;
    return role && strcmp(role, "node") == 0 && dc && strcmp(dc, r->cfg->datacenter) == 0;
}

static void proposed(void *data, int status, int result, uint64_t index)
{
    struct adm_reconcile *r = data;
    BASE_UNUSED(index);
    BASE_UNUSED(r);
    if (status || result)
        LOG_WARN("reconcile", "catalog write failed: %s (the next pass repairs it)",
                 base_strerror(status ? status : result));
}

static void propose(struct adm_reconcile *r, const struct zone_cmd *cmd)
{
    r->writes++;
    api_propose(r->api, cmd, proposed, r);
}

static struct zone_check serf_check(const char *node, enum zone_health st)
{
    return (struct zone_check){
        .node = node,
        .check_id = SERF_CHECK,
        .name = "Serf Health Status",
        .status = st,
        .notes = "",
        .output = st == ZONE_HEALTH_PASSING ? "Agent alive and reachable"
                                            : "Agent not live or unreachable",
        .service_id = "",
        .service_name = "",
        .type = "",
    };
}

static void handle_alive(struct adm_reconcile *r, struct zone_read *rd, struct base_arena *a,
                         const struct gossip_node *m, const struct adm_server *srv, bool server)
{
    struct zone_node node;
    struct zone_check chk;
    struct zone_service svc;
    bool have = zone_node_get(rd, m->name, a, &node) == 0;
    const char *id = adm_tag(m, "id");

    if (have && strcmp(node.address, m->addr) == 0 &&
        zone_check_get(rd, node.name, SERF_CHECK, a, &chk) == 0 &&
        chk.status == ZONE_HEALTH_PASSING &&
        (!server || (zone_service_get(rd, node.name, "consul", a, &svc) == 0 &&
                     svc.port == (uint32_t)srv->port)))
        return;

    struct zone_check check = serf_check(m->name, ZONE_HEALTH_PASSING);
    struct zone_service consul = {
        .node = m->name,
        .id = "consul",
        .name = "consul",
        .kind = "",
        .address = "",
        .port = server ? (uint32_t)srv->port : 0,
        .weight_passing = 1,
        .weight_warning = 1,
    };
    struct zone_pair tagged[2] = {{"lan", m->addr}, {"wan", m->addr}};
    struct zone_cmd cmd = {.type = ZONE_CMD_REGISTER};
    cmd.node.name = m->name;
    cmd.node.id = id && strlen(id) == 36 ? id : (have ? node.id : "");
    cmd.node.address = m->addr;
    cmd.node.datacenter = r->cfg->datacenter;
    if (have) { /* keep what the agent registered, at the address gossip sees */
        cmd.node.tagged_addresses = node.tagged_addresses;
        cmd.node.n_tagged_addresses = node.n_tagged_addresses;
        cmd.node.meta = node.meta;
        cmd.node.n_meta = node.n_meta;
        if (strcmp(node.address, m->addr) != 0) {
            LOG_WARN("reconcile", "node %s moved from %s to %s", m->name, node.address, m->addr);
            cmd.node.tagged_addresses = tagged;
            cmd.node.n_tagged_addresses = 2;
        }
    } else {
        cmd.node.tagged_addresses = tagged;
        cmd.node.n_tagged_addresses = 2;
    }
    cmd.service = server ? &consul : NULL;
    cmd.checks = &check;
    cmd.n_checks = 1;
    LOG_INFO("reconcile", "member %s alive: serfHealth passing", m->name);
    propose(r, &cmd);
}

static void set_critical(struct adm_reconcile *r, const char *name, const char *why)
{
    struct zone_check check = serf_check(name, ZONE_HEALTH_CRITICAL);
    struct zone_cmd cmd = {.type = ZONE_CMD_REGISTER, .skip_node_update = true};
    cmd.node.name = name;
    cmd.node.id = "";
    cmd.node.address = "";
    cmd.node.datacenter = r->cfg->datacenter;
    cmd.checks = &check;
    cmd.n_checks = 1;
    LOG_INFO("reconcile", "member %s %s: serfHealth critical", name, why);
    propose(r, &cmd);
}

static void handle_failed(struct adm_reconcile *r, struct zone_read *rd, struct base_arena *a,
                          const struct gossip_node *m)
{
    struct zone_node node;
    struct zone_check chk;
    if (zone_node_get(rd, m->name, a, &node) != 0)
        return;
    if (zone_check_get(rd, node.name, SERF_CHECK, a, &chk) == 0 &&
        chk.status == ZONE_HEALTH_CRITICAL)
        return;
    set_critical(r, node.name, "failed");
}

static void removed(void *data, int status, const char *msg)
{
    BASE_UNUSED(data);
    if (status && status != BASE_ENOTFOUND)
        LOG_WARN("reconcile", "removing a departed server from Raft: %s",
                 msg && *msg ? msg : base_strerror(status));
}

static void handle_gone(struct adm_reconcile *r, struct zone_read *rd, struct base_arena *a,
                        const struct gossip_node *m, const struct adm_server *srv, bool server,
                        const char *why)
{
    struct zone_node node;
    if (strcmp(m->name, r->cfg->node_name) == 0)
        return; /* deregistering ourselves is for a follower's leader to do */
    if (server && srv->raft_id)
        cons_remove_peer(r->cons, srv->raft_id, NULL, removed, r);
    if (zone_node_get(rd, m->name, a, &node) != 0)
        return;
    struct zone_cmd cmd = {.type = ZONE_CMD_DEREGISTER};
    cmd.node.name = node.name;
    cmd.service_id = "";
    cmd.check_id = "";
    LOG_INFO("reconcile", "member %s %s: deregistering its node", m->name, why);
    propose(r, &cmd);
}

/* One member against the catalog as rd sees it. */
static void reconcile_in(struct adm_reconcile *r, struct zone_read *rd, const struct gossip_node *m,
                         bool reaped)
{
    struct adm_server srv;
    struct base_arena a;
    bool server;

    if (!handled(r, m, &srv, &server))
        return;
    base_arena_init(&a);
    if (reaped)
        handle_gone(r, rd, &a, m, &srv, server, "reaped");
    else if (m->status == GOSSIP_MEMBER_ALIVE)
        handle_alive(r, rd, &a, m, &srv, server);
    else if (m->status == GOSSIP_MEMBER_FAILED)
        handle_failed(r, rd, &a, m);
    else if (m->status == GOSSIP_MEMBER_LEFT)
        handle_gone(r, rd, &a, m, &srv, server, "left");
    /* leaving: wait for its left */
    base_arena_close(&a);
}

static void reconcile_member(struct adm_reconcile *r, const struct gossip_node *m, bool reaped)
{
    struct zone_read *rd;
    if (zone_read_begin(r->store, &rd)) {
        LOG_WARN("reconcile", "cannot read the catalog: member %s waits for the next pass",
                 m->name);
        return;
    }
    reconcile_in(r, rd, m, reaped);
    zone_read_end(rd);
}

void adm_reconcile_event(struct adm_reconcile *r, const struct gossip_event *ev)
{
    if (!r || !r->ready || r->closing)
        return; /* not leading: the new leader's full pass covers it */
    switch (ev->kind) {
    case GOSSIP_EVENT_JOIN:
    case GOSSIP_EVENT_UPDATE:
    case GOSSIP_EVENT_FAIL:
    case GOSSIP_EVENT_LEAVE:
        reconcile_member(r, ev->node, false);
        break;
    case GOSSIP_EVENT_REAP:
        reconcile_member(r, ev->node, true);
        break;
    case GOSSIP_EVENT_USER:
        break;
    }
}

/* ---- the full pass ------------------------------------------------------------------ */

/* Every member against the catalog in one read, on the loop (members are capped by gossip's
 * max_members); then the scan for catalog nodes the pool does not know, which reads every node
 * and so runs on the thread pool (a catalog can be large; the loop must not stall). */
struct pass {
    struct adm_reconcile *r;
    struct zone_read *rd;
    struct adm_strv known; /* lowercased names of the pool's members */
};

struct scan {
    uv_work_t work;
    struct adm_reconcile *r;
    uint64_t generation;
    struct adm_strv known;   /* in: the pool's members, lowercased and sorted */
    struct adm_strv unknown; /* out: nodes with a passing serfHealth the pool does not know */
    int rc;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool sorted_has(const struct adm_strv *s, const char *x)
{
    return s->n && bsearch(&x, s->v, s->n, sizeof *s->v, cmp_str) != NULL;
}

static void pass_member(void *data, const struct gossip_node *m)
{
    struct pass *p = data;
    char *lower = base_strdup(m->name);
    base_str_lower(lower);
    adm_strv_push(&p->known, lower);
    base_free(lower);
    reconcile_in(p->r, p->rd, m, false);
}

struct scan_node {
    struct scan *sc;
    struct zone_read *rd;
    struct base_arena *a;
};

static int scan_node(void *data, const struct zone_node *n)
{
    struct scan_node *sn = data;
    struct zone_check chk;
    char *lower = base_strdup(n->name);
    base_str_lower(lower);
    if (!sorted_has(&sn->sc->known, lower) &&
        zone_check_get(sn->rd, n->name, SERF_CHECK, sn->a, &chk) == 0 &&
        chk.status == ZONE_HEALTH_PASSING)
        adm_strv_push(&sn->sc->unknown, n->name);
    base_free(lower);
    return 0;
}

static void scan_work(uv_work_t *w)
{
    struct scan *sc = w->data;
    struct zone_read *rd;
    struct base_arena a;
    if ((sc->rc = zone_read_begin(sc->r->store, &rd)))
        return;
    base_arena_init(&a);
    struct scan_node sn = {sc, rd, &a};
    sc->rc = zone_nodes_each(rd, &a, scan_node, &sn);
    base_arena_close(&a);
    zone_read_end(rd);
}

static void reconcile_unref(struct adm_reconcile *r);

static void scan_after(uv_work_t *w, int status)
{
    struct scan *sc = w->data;
    struct adm_reconcile *r = sc->r;
    r->scanning = false;
    if (status == 0 && sc->rc == 0 && !r->closing && r->ready && sc->generation == r->generation) {
        /* critical only when the last pass missed it too: not a pool still converging */
        for (size_t i = 0; i < sc->unknown.n; i++) {
            char *lower = base_strdup(sc->unknown.v[i]);
            base_str_lower(lower);
            bool before = false;
            for (size_t k = 0; k < r->absent.n && !before; k++)
                before = strcmp(r->absent.v[k], lower) == 0;
            if (before)
                set_critical(r, sc->unknown.v[i], "unknown to the pool");
            base_free(lower);
        }
        adm_strv_free(&r->absent);
        for (size_t i = 0; i < sc->unknown.n; i++) {
            char *lower = base_strdup(sc->unknown.v[i]);
            base_str_lower(lower);
            adm_strv_push(&r->absent, lower);
            base_free(lower);
        }
    }
    adm_strv_free(&sc->known);
    adm_strv_free(&sc->unknown);
    base_free(sc);
    reconcile_unref(r);
}

static void full_pass(struct adm_reconcile *r)
{
    struct pass p = {.r = r};
    uint64_t writes = r->writes;

    if (zone_read_begin(r->store, &p.rd)) {
        LOG_WARN("reconcile", "cannot read the catalog: the full pass waits for the next one");
        return;
    }
    adm_serf_members(r->serf, pass_member, &p);
    zone_read_end(p.rd);
    LOG_DEBUG("reconcile", "full pass over %zu members: %" PRIu64 " writes", p.known.n,
              r->writes - writes);
    if (r->scanning || p.known.n < 2) { /* alone: the pool has not formed, nothing is known */
        adm_strv_free(&p.known);
        return;
    }
    struct scan *sc = base_calloc(1, sizeof *sc);
    sc->r = r;
    sc->generation = r->generation;
    sc->known = p.known;
    qsort(sc->known.v, sc->known.n, sizeof *sc->known.v, cmp_str);
    sc->work.data = sc;
    if (uv_queue_work(r->loop, &sc->work, scan_work, scan_after) == 0) {
        r->scanning = true;
        r->refs++;
    } else {
        adm_strv_free(&sc->known);
        base_free(sc);
    }
}

static void on_timer(uv_timer_t *t);

struct barrier_ctx {
    struct adm_reconcile *r;
    uint64_t generation;
};

static void barrier_done(void *data, int status)
{
    struct barrier_ctx *b = data;
    struct adm_reconcile *r = b->r;
    bool current = b->generation == r->generation;
    base_free(b);
    r->barrier_inflight = false;
    if (r->closing || !current || !r->leader)
        return;
    if (status) {
        LOG_WARN("reconcile", "barrier failed: %s; retrying in %d ms", base_strerror(status),
                 BARRIER_RETRY_MS);
        uv_timer_start(&r->timer, on_timer, BARRIER_RETRY_MS, 0);
        return;
    }
    r->ready = true;
    full_pass(r);
    uv_timer_start(&r->timer, on_timer, r->cfg->reconcile_interval_ms, 0);
}

static void on_timer(uv_timer_t *t)
{
    struct adm_reconcile *r = t->data;
    if (!r->leader || r->closing)
        return;
    if (!r->ready) {
        if (r->barrier_inflight)
            return;
        struct barrier_ctx *b = base_malloc(sizeof *b);
        b->r = r;
        b->generation = r->generation;
        r->barrier_inflight = true;
        cons_barrier(r->cons, barrier_done, b);
        return;
    }
    full_pass(r);
    uv_timer_start(&r->timer, on_timer, r->cfg->reconcile_interval_ms, 0);
}

void adm_reconcile_leader(struct adm_reconcile *r, bool is_leader)
{
    if (!r || r->closing || is_leader == r->leader)
        return;
    r->leader = is_leader;
    r->ready = false;
    r->generation++;
    uv_timer_stop(&r->timer);
    adm_strv_free(&r->absent);
    if (is_leader)
        uv_timer_start(&r->timer, on_timer, 0, 0);
}

struct adm_reconcile *adm_reconcile_new(uv_loop_t *loop, const struct adm_config *cfg,
                                        struct zone_store *store, struct cons *cons,
                                        struct api *api, struct adm_serf *serf)
{
    struct adm_reconcile *r = base_calloc(1, sizeof *r);
    r->loop = loop;
    r->cfg = cfg;
    r->store = store;
    r->cons = cons;
    r->api = api;
    r->serf = serf;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    r->refs = 1;
    return r;
}

uint64_t adm_reconcile_writes(const struct adm_reconcile *r)
{
    return r ? r->writes : 0;
}

void adm_reconcile_stop(struct adm_reconcile *r)
{
    if (!r)
        return;
    r->closing = true;
    r->leader = r->ready = false;
    uv_timer_stop(&r->timer);
}

static void reconcile_unref(struct adm_reconcile *r)
{
    if (--r->refs > 0)
        return;
    adm_strv_free(&r->absent);
    base_free(r);
}

static void on_closed(uv_handle_t *h)
{
    reconcile_unref(h->data);
}

void adm_reconcile_free(struct adm_reconcile *r)
{
    if (!r)
        return;
    adm_reconcile_stop(r);
    uv_close((uv_handle_t *)&r->timer, on_closed);
}
