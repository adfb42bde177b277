/* The agent daemon: one libuv loop that owns the catalog store, Raft, the gossip pool, the
 * HTTP API and the health-check runner (DESIGN.md 2.2).
 *
 * Start: config -> data dir (node-id, catalog/, raft/) -> zone store -> server port (rpc:
 * listener, cluster key, caps) -> consensus on it (replays the log into the store; other
 * servers come from the gossip pool: discover) -> api -> gossip pool (serf.c: Consul's tags,
 * -retry-join, servers seen fed to consensus) and the leader's reconciliation of it into the
 * catalog (reconcile.c) -> HTTP listener -> check runner -> DNS workers (reading the replayed
 * store; every applied entry that changed the catalog publishes its index to them, so their
 * answer caches never serve data older than a write already answered), each with its
 * libunbound context when recursors (or iterative recursion) are configured. Once a leader is
 * known (consensus tells on_leader), the agent registers its own node (and the "consul"
 * service on a server; serfHealth is the leader's) and the services of its config files, through
 * whichever server leads: a follower forwards the write; a failed registration is retried
 * after 100 ms while a leader is known. From then on the leader keeps serfHealth in step with
 * gossip: failed makes it critical (the node's services leave DNS), left deregisters the node.
 *
 * Stop (SIGINT/SIGTERM; a leave of the pool first when leave_on_terminate or not
 * skip_leave_on_interrupt): the DNS workers stop (and are joined), HTTP stops (parked
 * requests are dropped), the gossip pool stops, Raft closes (pending proposals end as unknown
 * or shut down), the server port closes, then the api, the reconciliation and the check runner
 * are freed, the store is closed and the loop must close with nothing left on it. */
#define _XOPEN_SOURCE 700
#include "internal.h"

#include <inttypes.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

struct agent {
    uv_loop_t loop;
    struct adm_config cfg;
    struct zone_store *store;
    struct rpc *rpc;
    struct cons *cons;
    struct http_server *http;
    struct http_body_limit http_body_limits[1]; /* borrowed by http */
    struct rsv *rsv;
    struct zone_dns_config dns;
    struct api *api;
    struct adm_checks *checks;
    struct adm_serf *serf; /* the LAN gossip pool */
    struct adm_reconcile *reconcile;
    struct adm_local *local;
    uv_signal_t sigint, sigterm;
    uv_timer_t sync;  /* retries a failed registration */
    uv_timer_t stale; /* dns_config.max_stale: checks the contact with the servers */
    bool dns_stale;
    uint64_t leader; /* the leader consensus last told of (0: none) */
    char node_id[40];
    uint64_t raft_id;
    char server_addr[80];
    char bind_addr[80];
    struct base_arena arena; /* strings that live as long as the agent */
    char *tmpdir;            /* -dev data, removed at exit */
    bool registering, registered;
    bool stopping, leaving;
    int exit_code;
};

static int mkdir_p(const char *path, char *err)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) && errno != EEXIST)
            return base_errf(err, -errno, "mkdir %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0700) && errno != EEXIST)
        return base_errf(err, -errno, "mkdir %s: %s", buf, strerror(errno));
    return 0;
}

static int random_bytes(void *p, size_t n)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t r = read(fd, p, n);
    close(fd);
    return r == (ssize_t)n ? 0 : BASE_ESTORE;
}

/* The node ID (a UUID) lives in DATA/node-id; the Raft id is derived from it. */
static int load_node_id(struct agent *ag, const char *dir, char *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/node-id", dir);
    FILE *f = fopen(path, "r");
    if (f) {
        bool ok = fgets(ag->node_id, sizeof ag->node_id, f) != NULL;
        fclose(f);
        ag->node_id[strcspn(ag->node_id, "\r\n")] = '\0';
        if (!ok || strlen(ag->node_id) != 36)
            return base_errf(err, BASE_EPARSE, "%s: not a node ID", path);
    } else {
        uint8_t r[16];
        if (random_bytes(r, sizeof r))
            return base_errf(err, BASE_ESTORE, "cannot read /dev/urandom");
        r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
        r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
        snprintf(ag->node_id, sizeof ag->node_id,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
                 r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
                 r[15]);
        char tmp[4096 + 8];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        f = fopen(tmp, "w");
        if (!f || fprintf(f, "%s\n", ag->node_id) < 0 || fflush(f) || fsync(fileno(f)) ||
            fclose(f) || rename(tmp, path))
            return base_errf(err, BASE_ESTORE, "cannot write %s", path);
    }
    ag->raft_id = cons_id_from_node_id(ag->node_id);
    return 0;
}

/* ---- applied commits fan out to blocking queries and the check runner ------------------- */

/* consensus asks whether a server outside the cluster may join from sa (-join-allow). */
static bool join_allowed(void *data, const struct sockaddr *sa)
{
    const struct adm_config *c = data;
    return rsv_cidr_match(c->join_nets, c->n_join_nets, sa);
}

/* Without the cluster key, a client is heard from the address of a vouched member of the pool
 * (serf.c). */
static bool client_allowed(void *data, const struct sockaddr *sa)
{
    struct agent *ag = data;
    return adm_serf_client_allowed(ag->serf, sa);
}

static void on_applied(void *data, uint64_t index, uint32_t touched)
{
    struct agent *ag = data;
    /* Before anyone is answered: DNS caches built at an older index are not used again. */
    if (ag->rsv && touched)
        rsv_catalog_changed(ag->rsv, index);
    if (ag->api)
        api_on_applied(ag->api, index, touched);
    if (ag->checks && (touched & ZONE_TABLE_BIT(ZONE_TABLE_CHECKS)))
        adm_checks_sync(ag->checks);
}

/* ---- registering this node once we lead ------------------------------------------------ */

static void sync_retry(uv_timer_t *t);

static void registered_cb(void *data, int status, int result, uint64_t index)
{
    struct agent *ag = data;
    BASE_UNUSED(index);
    ag->registering = false;
    if (status || result) {
        LOG_WARN("agent", "registering this node failed: %s; will retry",
                 base_strerror(status ? status : result));
        if (!ag->stopping)
            uv_timer_start(&ag->sync, sync_retry, 100, 0);
        return;
    }
    ag->registered = true;
    LOG_INFO("agent", "synced node info node=%s address=%s", ag->cfg.node_name,
             ag->cfg.advertise_addr);
    adm_local_start(ag->local);
}

static void service_cb(void *data, int status, int result, uint64_t index)
{
    BASE_UNUSED(data);
    BASE_UNUSED(index);
    if (status || result)
        LOG_WARN("agent", "registering a configured service or check failed: %s",
                 base_strerror(status ? status : result));
}

static void register_self(struct agent *ag)
{
    struct zone_pair tagged[2] = {{"lan", ag->cfg.advertise_addr}, {"wan", ag->cfg.advertise_addr}};
    struct zone_service consul = {
        .node = ag->cfg.node_name,
        .id = "consul",
        .name = "consul",
        .kind = "",
        .address = "",
        .port = (uint32_t)ag->cfg.server_port,
        .weight_passing = 1,
        .weight_warning = 1,
    };
    struct zone_cmd cmd = {.type = ZONE_CMD_REGISTER};

    cmd.node.name = ag->cfg.node_name;
    cmd.node.id = ag->node_id;
    cmd.node.address = ag->cfg.advertise_addr;
    cmd.node.datacenter = ag->cfg.datacenter;
    cmd.node.tagged_addresses = tagged;
    cmd.node.n_tagged_addresses = 2;
    cmd.service = ag->cfg.server ? &consul : NULL;
    /* no serfHealth: as in Consul, only the leader sets it, from what gossip says (reconcile.c);
     * an agent restarted after a failure stays critical until the pool sees it alive */
    ag->registering = true;
    adm_local_set_node(ag->local, &cmd);
    api_propose(ag->api, &cmd, registered_cb, ag);

    for (size_t i = 0; i < ag->cfg.services.n; i++) {
        char err[BASE_ERRMSG_LEN];
        struct base_arena ar;
        struct zone_cmd sc;
        const char *text = ag->cfg.services.v[i];
        base_arena_init(&ar);
        if (api_service_def_decode(ag->api, text, strlen(text), &ar, &sc, err) == 0) {
            adm_local_own(ag->local, &sc);
            api_propose(ag->api, &sc, service_cb, ag);
        }
        base_arena_close(&ar);
    }
    for (size_t i = 0; i < ag->cfg.checks.n; i++) { /* after the services they may name */
        char err[BASE_ERRMSG_LEN];
        struct base_arena ar;
        struct zone_cmd cc;
        const char *text = ag->cfg.checks.v[i];
        base_arena_init(&ar);
        if (api_check_def_decode(ag->api, text, strlen(text), &ar, &cc, err) == 0) {
            adm_local_own(ag->local, &cc);
            api_propose(ag->api, &cc, service_cb, ag);
        }
        base_arena_close(&ar);
    }
}

/* Registers this node once a leader is known (any server can write: followers forward to
 * the leader), unless done or under way. */
static void sync_now(struct agent *ag)
{
    if (ag->stopping || ag->registered || ag->registering || !ag->api || !ag->leader)
        return;
    register_self(ag);
}

static void sync_retry(uv_timer_t *t)
{
    sync_now(t->data);
}

static void on_leader(void *data, bool is_leader, uint64_t leader_id, const char *leader_address)
{
    struct agent *ag = data;
    BASE_UNUSED(leader_address);
    ag->leader = leader_id;
    adm_reconcile_leader(ag->reconcile, is_leader);
    if (ag->api)
        api_on_leader(ag->api, is_leader);
    sync_now(ag);
}

/* ---- shutdown -------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    BASE_UNUSED(st);
    BASE_UNUSED(flag);
    BASE_UNUSED(ftw);
    return remove(path);
}

static void on_checks_freed(void *data)
{
    struct agent *ag = data;
    ag->checks = NULL;
}

static void on_rpc_stopped(void *data)
{
    struct agent *ag = data;
    ag->rpc = NULL;
}

static void on_cons_stopped(void *data)
{
    struct agent *ag = data;
    ag->cons = NULL;
    adm_reconcile_free(ag->reconcile);
    ag->reconcile = NULL;
    if (ag->api)
        api_free(ag->api);
    ag->api = NULL;
    adm_local_free(ag->local); /* its writes ended inside cons_stop */
    ag->local = NULL;
    if (ag->checks)
        adm_checks_free(ag->checks, on_checks_freed, ag);
    uv_close((uv_handle_t *)&ag->sync, NULL);
    uv_close((uv_handle_t *)&ag->stale, NULL);
    LOG_INFO("agent", "raft stopped");
    if (ag->rpc)
        rpc_stop(ag->rpc, on_rpc_stopped, ag);
}

static void on_serf_stopped(void *data)
{
    struct agent *ag = data;
    ag->serf = NULL;
    if (ag->cons)
        cons_stop(ag->cons, on_cons_stopped, ag);
    else
        on_cons_stopped(ag);
}

static void on_http_stopped(void *data)
{
    struct agent *ag = data;
    ag->http = NULL;
    if (ag->serf)
        adm_serf_stop(ag->serf, on_serf_stopped, ag);
    else
        on_serf_stopped(ag);
}

static void on_rsv_stopped(void *data)
{
    struct agent *ag = data;
    ag->rsv = NULL;
    if (ag->http)
        http_server_stop(ag->http, on_http_stopped, ag);
    else
        on_http_stopped(ag);
}

static void begin_stop(struct agent *ag)
{
    if (ag->stopping)
        return;
    ag->stopping = true;
    if (!ag->exit_code)
        LOG_INFO("agent", "caught signal, shutting down");
    uv_close((uv_handle_t *)&ag->sigint, NULL);
    uv_close((uv_handle_t *)&ag->sigterm, NULL);
    uv_timer_stop(&ag->sync);
    uv_timer_stop(&ag->stale);
    adm_reconcile_stop(ag->reconcile);
    adm_local_stop(ag->local);
    if (ag->rsv)
        rsv_stop(ag->rsv, on_rsv_stopped, ag);
    else
        on_rsv_stopped(ag);
}

static void on_pool_left(void *data)
{
    begin_stop(data);
}

/* Leaves the gossip pool gracefully (the others see "left" and the leader deregisters this
 * node), then stops; stops at once when that cannot start. */
static void leave_then_stop(struct agent *ag)
{
    if (ag->stopping || ag->leaving)
        return;
    ag->leaving = true;
    adm_local_stop(ag->local); /* else anti-entropy puts back the node the leader deregisters */
    if (!ag->serf || adm_serf_leave(ag->serf, on_pool_left, ag))
        begin_stop(ag);
}

/* SIGTERM leaves first when leave_on_terminate, SIGINT unless skip_leave_on_interrupt
 * (Consul's defaults: a client leaves on both, a server on neither); a second signal stops
 * at once. */
static void on_signal(uv_signal_t *h, int signum)
{
    struct agent *ag = h->data;
    bool leave = signum == SIGTERM ? ag->cfg.leave_on_terminate : !ag->cfg.skip_leave_on_interrupt;
    if (leave && !ag->leaving) {
        LOG_INFO("agent", "caught signal %d, leaving the cluster", signum);
        leave_then_stop(ag);
    } else {
        begin_stop(ag);
    }
}

/* agent/leave: this server left the Raft configuration; leave the pool, then stop. */
static void on_left(void *data)
{
    struct agent *ag = data;
    LOG_INFO("agent", "left the cluster");
    leave_then_stop(ag);
}

static void on_member(void *data, const struct gossip_event *ev)
{
    struct agent *ag = data;
    adm_reconcile_event(ag->reconcile, ev);
}

/* -retry-join gave up (retry_max). */
static void on_serf_fatal(void *data)
{
    struct agent *ag = data;
    ag->exit_code = 1;
    begin_stop(ag);
}

/* ---- the gossip pool, for the HTTP API ------------------------------------------------- */

struct member_view {
    api_member_cb cb;
    void *ctx;
};

static void member_view(void *ctx, const struct gossip_node *n)
{
    struct member_view *v = ctx;
    struct api_tag tags[64];
    struct api_member m = {
        .name = n->name,
        .addr = n->addr,
        .port = n->port,
        .tags = tags,
        .n_tags = n->n_tags < BASE_ARRAY_LEN(tags) ? n->n_tags : BASE_ARRAY_LEN(tags),
        .status = (int)n->status,
    };
    for (size_t i = 0; i < m.n_tags; i++)
        tags[i] = (struct api_tag){n->tags[i].key, n->tags[i].value};
    memcpy(m.vsn, n->vsn, sizeof m.vsn);
    v->cb(v->ctx, &m);
}

static void pool_members(void *data, api_member_cb cb, void *ctx)
{
    struct agent *ag = data;
    struct member_view v = {cb, ctx};
    if (ag->serf)
        adm_serf_members(ag->serf, member_view, &v);
}

static int pool_join(void *data, const char *addr, api_join_cb done, void *ctx, char *err)
{
    struct agent *ag = data;
    if (!ag->serf)
        return base_errf(err, BASE_ESHUTDOWN, "the agent is shutting down");
    return adm_serf_join(ag->serf, &addr, 1, done, ctx, err);
}

static int pool_force_leave(void *data, const char *node, bool prune)
{
    struct agent *ag = data;
    return ag->serf ? adm_serf_force_leave(ag->serf, node, prune) : BASE_ESHUTDOWN;
}

struct keyring_call {
    api_keyring_cb done;
    void *ctx;
};

static void keyring_done(void *data, const struct gossip_keyring_result *r)
{
    struct keyring_call *k = data;
    struct base_arena a;
    base_arena_init(&a);
    struct api_tag *msgs = base_arena_alloc(&a, (r->n_messages + 1) * sizeof *msgs);
    struct api_key_count *keys = base_arena_alloc(&a, (r->n_keys + 1) * sizeof *keys);
    struct api_key_count *prim = base_arena_alloc(&a, (r->n_primary_keys + 1) * sizeof *prim);
    for (size_t i = 0; i < r->n_messages; i++)
        msgs[i] = (struct api_tag){r->messages[i].node, r->messages[i].message};
    for (size_t i = 0; i < r->n_keys; i++)
        keys[i] = (struct api_key_count){r->keys[i].key, r->keys[i].count};
    for (size_t i = 0; i < r->n_primary_keys; i++)
        prim[i] = (struct api_key_count){r->primary_keys[i].key, r->primary_keys[i].count};
    struct api_keyring_result out = {.status = r->status,
                                     .error = r->error,
                                     .num_nodes = r->num_nodes,
                                     .num_resp = r->num_resp,
                                     .num_err = r->num_err,
                                     .messages = msgs,
                                     .n_messages = r->n_messages,
                                     .keys = keys,
                                     .primary_keys = prim,
                                     .n_keys = r->n_keys,
                                     .n_primary_keys = r->n_primary_keys};
    k->done(k->ctx, &out);
    base_arena_close(&a);
    base_free(k);
}

static int pool_keyring(void *data, enum api_keyring_op op, const char *key, api_keyring_cb done,
                        void *ctx)
{
    struct agent *ag = data;
    static const enum gossip_keyring_op ops[] = {GOSSIP_KEYRING_INSTALL, GOSSIP_KEYRING_USE,
                                                 GOSSIP_KEYRING_REMOVE, GOSSIP_KEYRING_LIST};
    if (!ag->serf)
        return BASE_ESHUTDOWN;
    struct keyring_call *k = base_calloc(1, sizeof *k);
    *k = (struct keyring_call){done, ctx};
    int rc = adm_serf_keyring(ag->serf, ops[op], key, keyring_done, k);
    if (rc)
        base_free(k);
    return rc;
}

static int pool_event_fire(void *data, const struct api_user_event *ev, char *err)
{
    struct agent *ag = data;
    return adm_event_fire(ag->serf ? adm_serf_gossip(ag->serf) : NULL, ev, err);
}

static void count_alive(void *ctx, const struct gossip_node *n)
{
    if (n->status == GOSSIP_MEMBER_ALIVE)
        ++*(size_t *)ctx;
}

/* The pool's alive members, for anti-entropy's interval. */
static size_t pool_size(void *data)
{
    struct agent *ag = data;
    size_t n = 0;
    if (ag->serf)
        adm_serf_members(ag->serf, count_alive, &n);
    return n ? n : 1;
}

/* A user event of the pool (ours included): Consul's reach the api (events.c). */
static void on_user_event(void *data, const struct gossip_event *ev)
{
    struct agent *ag = data;
    adm_event_received(ag->api, ev);
}

/* ---- how stale DNS may be ---------------------------------------------------------------- */
/* Consul's dns_config.allow_stale and max_stale, for answers that always come from the local
 * replica (a client's as a server's): once the agent has not heard from the leader (a client:
 * from the server it follows) for longer than max_stale, names of the zone answer SERVFAIL
 * until it hears again, as Consul's DNS fails when its stale read is too old and the leader
 * cannot be asked. allow_stale false bounds it to STALE_STRICT_MS (a few heartbeats of the
 * stream). The leader itself is never stale. */
#define STALE_CHECK_MS  250
#define STALE_STRICT_MS 1000

static void stale_check(uv_timer_t *t)
{
    struct agent *ag = t->data;
    if (!ag->cons || !ag->rsv || ag->stopping)
        return;
    uint64_t contact = cons_is_leader(ag->cons) ? 0 : cons_last_contact_ms(ag->cons);
    uint64_t bound = ag->cfg.dns.allow_stale ? ag->cfg.dns.max_stale_ms : STALE_STRICT_MS;
    bool stale = contact > bound;
    if (stale == ag->dns_stale)
        return;
    ag->dns_stale = stale;
    rsv_set_stale(ag->rsv, stale);
    if (stale)
        LOG_WARN("agent",
                 "DNS answers SERVFAIL: no contact with the servers for %" PRIu64
                 " ms (dns_config.%s %" PRIu64 " ms)",
                 contact, ag->cfg.dns.allow_stale ? "max_stale" : "allow_stale false:", bound);
    else
        LOG_INFO("agent", "DNS answers again: in contact with the servers");
}

/* ---- start ----------------------------------------------------------------------------- */

static int agent_start(struct agent *ag, char *err)
{
    struct adm_config *c = &ag->cfg;
    char path[4096];
    int rc;

    if (c->dev) {
        char tmpl[] = "/tmp/herald-dev-XXXXXX";
        if (!mkdtemp(tmpl))
            return base_errf(err, -errno, "mkdtemp: %s", strerror(errno));
        ag->tmpdir = base_strdup(tmpl);
        if (!c->data_dir)
            c->data_dir = base_strdup(tmpl);
    }
    if ((rc = mkdir_p(c->data_dir, err)) || (rc = load_node_id(ag, c->data_dir, err)))
        return rc;

    snprintf(path, sizeof path, "%s/catalog", c->data_dir);
    if ((rc = mkdir_p(path, err)))
        return rc;
    rc = zone_store_open(path, 0, &ag->store, err);
    /* A damaged catalog is never served. A server of a cluster sets it aside and starts with
     * an empty one, which Raft fills again from this server's snapshot and log and from the
     * leader, as for a wiped server; a single server has nowhere to catch up from: it stops. */
    if (rc == BASE_EDAMAGED && !c->dev &&
        (c->bootstrap_expect >= 2 || c->retry_join.n > 0 || !c->server)) {
        LOG_WARN("agent", "%s: setting it aside to catch up from the cluster", err);
        if ((rc = zone_store_discard(path, err)) == 0)
            rc = zone_store_open(path, 0, &ag->store, err);
    }
    if (rc) {
        if (rc == BASE_EDAMAGED)
            return rc; /* the message names the file */
        base_err_wrap(err, "catalog %s", path);
        return rc;
    }

    snprintf(ag->server_addr, sizeof ag->server_addr,
             strchr(c->advertise_addr, ':') ? "[%s]:%d" : "%s:%d", c->advertise_addr,
             c->server_port);
    snprintf(path, sizeof path, "%s/raft", c->data_dir);
    snprintf(ag->bind_addr, sizeof ag->bind_addr, strchr(c->bind_addr, ':') ? "[%s]:%d" : "%s:%d",
             c->bind_addr, c->server_port);
    struct rpc_config rc_port = {
        .id = ag->raft_id,
        .address = ag->server_addr,
        .bind_address = ag->bind_addr,
        .key = c->key,
        .key_len = c->key_len,
        .max_conns_per_client = c->rpc_max_conns_per_client,
        .idle_timeout_ms = (unsigned)c->rpc_idle_timeout_ms,
    };
    if ((rc = rpc_start(&ag->loop, &rc_port, &ag->rpc, err))) {
        base_err_wrap(err, "raft");
        return rc;
    }
    /* A client (no -server) keeps no Raft state: its catalog is a read-only replica that a
     * server streams to it, and its writes and reads go to the leader (consensus's client
     * mode). Without a key, servers hear a client only from the address of a member of the
     * pool with role=node (client_allowed). */
    struct cons_config cc = {
        .client = !c->server,
        .dir = c->server ? path : NULL,
        .id = ag->raft_id,
        .address = ag->server_addr,
        .rpc = ag->rpc,
        .bootstrap = c->server && c->bootstrap_expect == 1,
        .bootstrap_expect = c->server ? c->bootstrap_expect : 0,
        .discover = true, /* servers come from the gossip pool */
        .raft_multiplier = c->raft_multiplier,
        .snapshot_threshold = c->raft_snapshot_threshold,
        .snapshot_trailing = c->raft_snapshot_trailing,
        .store = ag->store,
        .on_applied = on_applied,
        .on_leader = on_leader,
        .data = ag,
        .join_allowed = c->n_join_nets ? join_allowed : NULL,
        .join_allowed_data = c,
        .client_allowed = client_allowed,
        .client_allowed_data = ag,
    };
    if ((rc = cons_start(&ag->loop, &cc, &ag->cons, err))) {
        base_err_wrap(err, "raft");
        return rc;
    }

    struct adm_local_config lc = {
        .node_name = c->node_name,
        .data_dir = c->dev ? NULL : c->data_dir,
        .server = c->server,
        .interval_ms = c->ae_interval_ms,
        .store = ag->store,
        .cons = ag->cons,
        .members = pool_size,
        .data = ag,
    };
    ag->local = adm_local_new(&ag->loop, &lc);
    ag->checks = adm_checks_new(&ag->loop, ag->store, c->node_name,
                                c->enable_script_checks || c->enable_local_script_checks,
                                (unsigned)c->max_running_scripts, c->check_update_interval_ms);
    struct api_config ac = {
        .node_name = c->node_name,
        .node_id = ag->node_id,
        .datacenter = c->datacenter,
        .advertise_addr = c->advertise_addr,
        .server_addr = ag->server_addr,
        .client_addr = c->client_addr,
        .http_port = c->http_port,
        .dns_port = c->dns_port,
        .server_port = c->server_port,
        .serf_lan_port = c->serf_lan_port,
        .server = c->server,
        .raft_id = ag->raft_id,
        .version = HERALD_VERSION,
        .enable_script_checks = c->enable_script_checks,
        .enable_local_script_checks = c->enable_local_script_checks,
        .store = ag->store,
        .cons = ag->cons,
        .hooks = {.ttl_reset = adm_checks_ttl_reset,
                  .defer_output = adm_checks_defer_output,
                  .data = ag->checks,
                  .leave = on_left,
                  .leave_data = ag},
        .gossip = {.members = pool_members,
                   .join = pool_join,
                   .force_leave = pool_force_leave,
                   .keyring = pool_keyring,
                   .event_fire = pool_event_fire,
                   .data = ag},
        .local = {.begin = adm_local_begin,
                  .written = adm_local_written,
                  .stats = adm_local_stats,
                  .data = ag->local},
    };
    if ((rc = api_new(&ag->loop, &ac, &ag->api)))
        return base_errf(err, rc, "api: %s", base_strerror(rc));
    adm_checks_set_api(ag->checks, ag->api);
    adm_local_set_api(ag->local, ag->api);
    api_on_leader(ag->api, cons_is_leader(ag->cons));
    struct adm_serf_hooks sh = {.on_member = on_member,
                                .on_user_event = on_user_event,
                                .on_fatal = on_serf_fatal,
                                .data = ag};
    if ((rc = adm_serf_start(&ag->loop, c, ag->node_id, ag->cons, &sh, &ag->serf, err)))
        return rc;
    ag->reconcile = adm_reconcile_new(&ag->loop, c, ag->store, ag->cons, ag->api, ag->serf);
    adm_reconcile_leader(ag->reconcile, cons_is_leader(ag->cons));
    /* Service definitions from config files are checked now, so a bad one stops the start
     * with its reason rather than failing later in the background. */
    for (size_t i = 0; i < c->services.n; i++) {
        struct base_arena ar;
        struct zone_cmd sc;
        base_arena_init(&ar);
        rc = api_service_def_decode(ag->api, c->services.v[i], strlen(c->services.v[i]), &ar, &sc,
                                    err);
        base_arena_close(&ar);
        if (rc) {
            base_err_wrap(err, "config: services[%zu]", i);
            return rc;
        }
    }
    for (size_t i = 0; i < c->checks.n; i++) {
        struct base_arena ar;
        struct zone_cmd chk;
        base_arena_init(&ar);
        rc = api_check_def_decode(ag->api, c->checks.v[i], strlen(c->checks.v[i]), &ar, &chk, err);
        base_arena_close(&ar);
        if (rc) {
            base_err_wrap(err, "config: checks[%zu]", i);
            return rc;
        }
    }
    adm_checks_sync(ag->checks);

    /* a snapshot restore uploads the whole backup (admin/api/snapshot.c): up to 256 MiB, so
     * it has 10 minutes (at least the configured body timeout) */
    ag->http_body_limits[0] = (struct http_body_limit){"/v1/snapshot", ZONE_BACKUP_MAX, 600000};
    if (c->http_body_timeout_ms > 600000)
        ag->http_body_limits[0].body_timeout_ms = (unsigned)c->http_body_timeout_ms;
    struct http_config hc = {
        .host = c->http_addr ? c->http_addr : c->client_addr,
        .port = c->http_port,
        .max_body = 1024 * 1024,
        .body_limits = ag->http_body_limits,
        .n_body_limits = BASE_ARRAY_LEN(ag->http_body_limits),
        .max_conns = (unsigned)c->http_max_conns,
        .max_conns_per_client = (unsigned)c->http_max_conns_per_client,
        .header_timeout_ms = (unsigned)c->http_header_timeout_ms,
        .idle_timeout_ms = (unsigned)c->http_idle_timeout_ms,
        .body_timeout_ms = (unsigned)c->http_body_timeout_ms,
    };
    if ((rc = http_server_start(&ag->loop, &hc, api_handle, ag->api, &ag->http, err)))
        return rc;

    /* DNS: the store is open and replayed; answers follow the catalog index from here on. */
    struct zone_meta meta;
    if ((rc = zone_store_meta(ag->store, &meta)))
        return base_errf(err, rc, "catalog: %s", base_strerror(rc));
    ag->dns = (struct zone_dns_config){
        .domain = c->domain,
        .alt_domain = c->alt_domain,
        .datacenter = c->datacenter,
        .node_ttl = c->dns.node_ttl,
        .service_ttl = c->dns.service_ttl,
        .n_service_ttl = c->dns.n_service_ttl,
        .only_passing = c->dns.only_passing,
        .enable_truncate = c->dns.enable_truncate,
        .udp_answer_limit = c->dns.udp_answer_limit,
        .a_record_limit = c->dns.a_record_limit,
        .soa_refresh = c->dns.soa_refresh,
        .soa_retry = c->dns.soa_retry,
        .soa_expire = c->dns.soa_expire,
        .soa_min_ttl = c->dns.soa_min_ttl,
    };
    /* Recursion: forward to the recursors, or iterate from the root; none otherwise. */
    struct rsv_recursion rec = {
        .mode = c->dns.recursion,
        .forwarders = (const char *const *)c->recursors.v,
        .n_forwarders = c->recursors.n,
        .root_hints = c->dns.root_hints,
        .dnssec = c->dns.dnssec_validation,
        .trust_anchor = c->dns.trust_anchor,
        .cache_bytes = c->dns.cache_size,
        .timeout_ms = (unsigned)c->dns.recursor_timeout_ms,
        .max_queries = c->dns.recursor_max_queries,
        .allow = c->dns.allow,
        .n_allow = c->dns.n_allow,
    };
    struct rsv_config rc_dns = {
        .host = c->dns_addr ? c->dns_addr : c->client_addr,
        .port = c->dns_port,
        .workers = c->dns_workers,
        .store = ag->store,
        .zone = &ag->dns,
        .catalog_index = meta.index,
        .recursion = &rec,
    };
    if ((rc = rsv_start(&ag->loop, &rc_dns, &ag->rsv, err)))
        return rc;

    uv_timer_start(&ag->stale, stale_check, STALE_CHECK_MS, STALE_CHECK_MS);
    sync_now(ag); /* a leader may be known already (a single server elects itself at once) */
    uv_signal_start(&ag->sigint, on_signal, SIGINT);
    uv_signal_start(&ag->sigterm, on_signal, SIGTERM);

    LOG_INFO("agent", "started node=%s id=%s datacenter=%s server=%s http=%s:%d raft=%s%s",
             c->node_name, ag->node_id, c->datacenter, c->server ? "true" : "false", hc.host,
             http_server_port(ag->http), ag->server_addr, c->dev ? " mode=dev" : "");
    return 0;
}

int adm_agent_main(int argc, char **argv)
{
    struct agent *ag = base_calloc(1, sizeof *ag);
    base_arena_init(&ag->arena);
    char err[BASE_ERRMSG_LEN] = "";
    int rc;

    signal(SIGPIPE, SIG_IGN); /* a dead peer's socket must not kill the agent */
    /* Thousands of parked blocking queries are thousands of sockets: take the hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if ((rc = adm_config_load(argc, argv, &ag->cfg, err))) {
        if (rc == ADM_CONFIG_HELP)
            adm_options_usage(stdout);
        else
            fprintf(stderr, "herald agent: %s\n", err);
        adm_config_free(&ag->cfg);
        base_free(ag);
        return rc == ADM_CONFIG_HELP ? 0 : 1;
    }
    /* -dev logs at debug (every DNS query) unless a level was given */
    base_log_set_level(ag->cfg.dev && !ag->cfg.log_level_set ? BASE_LOG_DEBUG : ag->cfg.log_level);
    base_log_set_json(ag->cfg.log_json);
    base_loop_thread_set();
    uv_loop_init(&ag->loop);
    uv_timer_init(&ag->loop, &ag->sync);
    ag->sync.data = ag;
    uv_timer_init(&ag->loop, &ag->stale);
    ag->stale.data = ag;
    uv_signal_init(&ag->loop, &ag->sigint);
    uv_signal_init(&ag->loop, &ag->sigterm);
    ag->sigint.data = ag->sigterm.data = ag;

    if ((rc = agent_start(ag, err))) {
        LOG_ERR("agent", "%s", err);
        ag->exit_code = 1;
        begin_stop(ag);
    }
    uv_run(&ag->loop, UV_RUN_DEFAULT);
    if (ag->store)
        zone_store_close(ag->store);
    rc = uv_loop_close(&ag->loop);
    if (rc)
        LOG_ERR("agent", "loop did not close cleanly: %s", uv_strerror(rc));
    if (ag->tmpdir) {
        nftw(ag->tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        base_free(ag->tmpdir);
    }
    int code = ag->exit_code;
    if (!code)
        LOG_INFO("agent", "shutdown complete");
    adm_config_free(&ag->cfg);
    base_arena_close(&ag->arena);
    base_free(ag);
    return code;
}
