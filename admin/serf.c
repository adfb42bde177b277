/* The agent's LAN gossip pool (issue 11): gossip/ started with Consul's tags, the joins of
 * -retry-join and /v1/agent/join, and what member events mean to the agent.
 *
 * Tags, as Consul's servers set them (agent/consul/server_serf.go): role=consul, dc, segment
 * (empty), id (the node UUID), vsn/vsn_min/vsn_max, raft_vsn, build ("<version>:herald"),
 * port (the server port), expect (bootstrap_expect, when not 0), acls. Consul's tooling
 * (metadata.IsConsulServer) reads the same tags, so does adm_server_parse.
 *
 * Joins. -retry-join entries are gossip addresses (a bare host gets our -serf-lan-port, as
 * memberlist's resolveAddr); host names are resolved off the loop (uv_getaddrinfo), every
 * address a name has is tried. The whole list is tried every retry_interval until one attempt
 * joins any member (Consul's retryJoiner), at most retry_max times (0: forever); exhausted,
 * the agent exits 1.
 *
 * Discovery. A member whose tags make it a server of our datacenter is a sighting for
 * consensus (cons_server_seen: formation's HELLOs and a waiting join ask it). The caller of
 * cons_server_seen vouches for it: a pool with a key is closed to outsiders; without one, a
 * member counts only at an address we joined through (-retry-join, agent/join: the operator
 * named it) or one -join-allow accepts (default loopback), the rule form.c applies to HELLOs.
 *
 * Ownership: the struct lives until gossip's handles have closed and every resolution it
 * started has called back (refs). A join's callback runs exactly once: with its result, or
 * with BASE_ESHUTDOWN when the pool stops first. Loop thread throughout. */
#include "internal.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERF_BUILD_SUFFIX ":herald"

struct adm_serf {
    uv_loop_t *loop;
    const struct adm_config *cfg;
    struct cons *cons;
    struct gossip *g;
    uv_timer_t retry;
    unsigned attempts;
    bool joined, retrying, stopping, closed;
    bool encrypted;               /* a keyring: only holders of a key are in the pool */
    unsigned refs;                /* 1 for gossip and the timer, one per join in flight */
    struct base_list joins;       /* struct join in flight */
    struct adm_strv joined_addrs; /* IPs we joined through (-retry-join, agent/join): vouched */
    struct adm_snapshot *snap;
    struct adm_serf_hooks hooks;
    void (*stopped)(void *);
    void *stopped_data;
    void (*left)(void *);
    void *left_data;
    char node_id[40];
    char port_tag[8], expect_tag[8], build_tag[32];
};

/* ---- Consul's tags ------------------------------------------------------------------- */

static size_t server_tags(struct adm_serf *s, struct gossip_tag *t)
{
    const struct adm_config *c = s->cfg;
    size_t n = 0;
    snprintf(s->port_tag, sizeof s->port_tag, "%d", c->server_port);
    snprintf(s->expect_tag, sizeof s->expect_tag, "%u", c->bootstrap_expect);
    snprintf(s->build_tag, sizeof s->build_tag, "%s" SERF_BUILD_SUFFIX, HERALD_VERSION);
    t[n++] = (struct gossip_tag){"role", c->server ? "consul" : "node"};
    t[n++] = (struct gossip_tag){"dc", c->datacenter};
    t[n++] = (struct gossip_tag){"segment", ""};
    t[n++] = (struct gossip_tag){"id", s->node_id};
    t[n++] = (struct gossip_tag){"vsn", "2"};
    t[n++] = (struct gossip_tag){"vsn_min", "2"};
    t[n++] = (struct gossip_tag){"vsn_max", "3"};
    t[n++] = (struct gossip_tag){"build", s->build_tag};
    if (c->server) {
        t[n++] = (struct gossip_tag){"raft_vsn", "3"};
        t[n++] = (struct gossip_tag){"port", s->port_tag};
        t[n++] = (struct gossip_tag){"acls", "0"};
        if (c->bootstrap_expect)
            t[n++] = (struct gossip_tag){"expect", s->expect_tag};
    }
    return n;
}

const char *adm_tag(const struct gossip_node *m, const char *key)
{
    for (size_t i = 0; i < m->n_tags; i++)
        if (strcmp(m->tags[i].key, key) == 0)
            return m->tags[i].value;
    return NULL;
}

static bool tag_uint(const struct gossip_node *m, const char *key, uint64_t max, uint64_t *v)
{
    const char *s = adm_tag(m, key);
    return s && base_u64_parse(s, v) == 0 && *v <= max;
}

bool adm_server_parse(const struct gossip_node *m, struct adm_server *out)
{
    uint64_t port, vsn, expect = 0, raft_vsn = 0;
    const char *role = adm_tag(m, "role"), *dc = adm_tag(m, "dc"), *id = adm_tag(m, "id");
    const char *build = adm_tag(m, "build"), *x;
    unsigned maj, min, patch;

    memset(out, 0, sizeof *out);
    if (!role || strcmp(role, "consul") != 0 || !dc || !*dc)
        return false;
    /* metadata.IsConsulServer: port and vsn are integers, build carries a version */
    if (!tag_uint(m, "port", 65535, &port) || port == 0 || !tag_uint(m, "vsn", 255, &vsn) ||
        !build || sscanf(build, "%u.%u.%u", &maj, &min, &patch) != 3)
        return false;
    if ((x = adm_tag(m, "expect")) && !tag_uint(m, "expect", 1024, &expect))
        return false;
    if ((x = adm_tag(m, "raft_vsn")) && !tag_uint(m, "raft_vsn", 255, &raft_vsn))
        return false;
    if (!id || strlen(id) != 36)
        return false;
    out->dc = dc;
    out->node_id = id;
    out->raft_id = cons_id_from_node_id(id);
    out->port = (int)port;
    out->expect = (unsigned)expect;
    snprintf(out->address, sizeof out->address, strchr(m->addr, ':') ? "[%s]:%d" : "%s:%d", m->addr,
             out->port);
    return out->raft_id != 0;
}

/* ---- member events ------------------------------------------------------------------- */

static bool vouched(struct adm_serf *s, const struct gossip_node *m)
{
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
    memset(&u, 0, sizeof u);
    if (s->encrypted)
        return true; /* only holders of a key are in the pool */
    for (size_t i = 0; i < s->joined_addrs.n; i++)
        if (strcmp(s->joined_addrs.v[i], m->addr) == 0)
            return true; /* the operator named it */
    if (inet_pton(AF_INET, m->addr, &u.in.sin_addr) == 1)
        u.in.sin_family = AF_INET;
    else if (inet_pton(AF_INET6, m->addr, &u.in6.sin6_addr) == 1)
        u.in6.sin6_family = AF_INET6;
    else
        return false;
    if (s->cfg->n_join_nets)
        return rsv_cidr_match(s->cfg->join_nets, s->cfg->n_join_nets, &u.sa);
    return u.sa.sa_family == AF_INET ? (ntohl(u.in.sin_addr.s_addr) >> 24) == 127
                                     : IN6_IS_ADDR_LOOPBACK(&u.in6.sin6_addr);
}

static void on_event(void *data, const struct gossip_event *ev)
{
    struct adm_serf *s = data;
    struct adm_server srv;

    if (ev->kind == GOSSIP_EVENT_USER) {
        if (s->hooks.on_user_event)
            s->hooks.on_user_event(s->hooks.data, ev);
        return;
    }
    const struct gossip_node *m = ev->node; /* gossip/ logs the event itself */
    adm_snapshot_member(s->snap, ev);
    if ((ev->kind == GOSSIP_EVENT_JOIN || ev->kind == GOSSIP_EVENT_UPDATE) && s->cons &&
        adm_server_parse(m, &srv) && strcmp(srv.dc, s->cfg->datacenter) == 0 &&
        strcmp(m->name, s->cfg->node_name) != 0) {
        if (!vouched(s, m))
            LOG_WARN("serf",
                     "server %s at %s is not counted: no gossip key and its address is not "
                     "in -join-allow",
                     m->name, m->addr);
        else if (srv.expect && s->cfg->bootstrap_expect && srv.expect != s->cfg->bootstrap_expect)
            LOG_ERR("serf",
                    "Member %s has a conflicting expect value. All nodes should expect "
                    "the same number.",
                    m->name);
        else
            cons_server_seen(s->cons, srv.raft_id, srv.address);
    }
    if (s->hooks.on_member)
        s->hooks.on_member(s->hooks.data, ev);
}

/* serf's merge delegate, Consul's merge.go for the LAN pool: members of another datacenter,
 * and a node ID that another name already holds, are refused. */
static int on_merge(void *data, const struct gossip_node *nodes, size_t n, char *why,
                    size_t why_len)
{
    struct adm_serf *s = data;
    for (size_t i = 0; i < n; i++) {
        const char *dc = adm_tag(&nodes[i], "dc"), *id = adm_tag(&nodes[i], "id");
        const char *role = adm_tag(&nodes[i], "role");
        if (!role || (strcmp(role, "consul") != 0 && strcmp(role, "node") != 0))
            continue; /* not a Consul agent: Consul's merge lets it through too */
        if (dc && strcmp(dc, s->cfg->datacenter) != 0) {
            snprintf(why, why_len, "Member '%s' part of wrong datacenter '%s'", nodes[i].name, dc);
            return -1;
        }
        if (id && strcmp(id, s->node_id) == 0 && strcmp(nodes[i].name, s->cfg->node_name) != 0) {
            snprintf(why, why_len, "Member '%s' has conflicting node ID '%s' with this agent's ID",
                     nodes[i].name, id);
            return -1;
        }
        for (size_t j = 0; id && j < i; j++) {
            const char *other = adm_tag(&nodes[j], "id");
            if (other && strcmp(other, id) == 0 && strcmp(nodes[i].name, nodes[j].name) != 0) {
                snprintf(why, why_len, "Member '%s' has conflicting node ID '%s' with member '%s'",
                         nodes[i].name, id, nodes[j].name);
                return -1;
            }
        }
    }
    return 0;
}

/* ---- joins --------------------------------------------------------------------------- */

/* One join: its entries resolved (names off the loop), then gossip_join with all of them. */
struct join {
    struct base_list link;
    struct adm_serf *s;
    adm_serf_join_cb cb;
    void *ctx;
    char **addrs; /* resolved "ip:port" / "[v6]:port" */
    size_t n_addrs;
    unsigned pending; /* resolutions in flight */
    bool trusted;     /* the operator named these addresses: members there are vouched for */
    bool done;        /* cb called (shutdown) */
};

struct lookup {
    uv_getaddrinfo_t req;
    struct join *j;
    int port;
    char host[256];
};

static void serf_unref(struct adm_serf *s);
static void rejoin(struct adm_serf *s);

static void join_add(struct join *j, const char *ip, int port)
{
    bool known = !j->trusted;
    for (size_t i = 0; i < j->s->joined_addrs.n && !known; i++)
        known = strcmp(j->s->joined_addrs.v[i], ip) == 0;
    if (!known && j->s->joined_addrs.n < 256)
        adm_strv_push(&j->s->joined_addrs, ip);
    j->addrs = base_realloc(j->addrs, (j->n_addrs + 1) * sizeof *j->addrs);
    char buf[300];
    snprintf(buf, sizeof buf, strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, port);
    j->addrs[j->n_addrs++] = base_strdup(buf);
}

static void join_free(struct join *j)
{
    struct adm_serf *s = j->s;
    base_list_remove(&j->link);
    for (size_t i = 0; i < j->n_addrs; i++)
        base_free(j->addrs[i]);
    base_free(j->addrs);
    base_free(j);
    serf_unref(s);
}

static void join_finish(struct join *j, size_t joined, int status)
{
    if (!j->done) {
        j->done = true;
        j->cb(j->ctx, joined, status);
    }
}

static void gossip_joined(void *data, size_t joined, int status)
{
    struct join *j = data;
    join_finish(j, joined, status);
    join_free(j);
}

static void join_go(struct join *j)
{
    struct adm_serf *s = j->s;
    if (j->done || s->stopping || !s->g) {
        join_finish(j, 0, BASE_ESHUTDOWN);
        join_free(j);
        return;
    }
    if (j->n_addrs == 0) {
        join_finish(j, 0, BASE_ENOTFOUND);
        join_free(j);
        return;
    }
    int rc = gossip_join(s->g, (const char *const *)j->addrs, j->n_addrs, gossip_joined, j);
    if (rc) {
        join_finish(j, 0, rc);
        join_free(j);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct lookup *l = req->data;
    struct join *j = l->j;
    if (status)
        LOG_WARN("serf", "join: cannot resolve %s: %s", l->host, uv_strerror(status));
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char ip[INET6_ADDRSTRLEN];
        if (uv_ip_name(ai->ai_addr, ip, sizeof ip) == 0)
            join_add(j, ip, l->port);
    }
    uv_freeaddrinfo(res);
    base_free(l);
    if (--j->pending == 0)
        join_go(j);
}

static int join_start(struct adm_serf *s, const char *const *entries, size_t n, adm_serf_join_cb cb,
                      void *ctx, bool trusted, char *err)
{
    char host[256];
    int port;
    for (size_t i = 0; i < n; i++)
        if (base_hostport_parse(entries[i], s->cfg->serf_lan_port, host, sizeof host, &port) ||
            !*host)
            return base_errf(err, BASE_EINVAL, "invalid address \"%s\": expected host or host:port",
                             entries[i]);
    if (s->stopping)
        return base_errf(err, BASE_ESHUTDOWN, "the agent is shutting down");

    struct join *j = base_calloc(1, sizeof *j);
    j->s = s;
    j->cb = cb;
    j->ctx = ctx;
    j->trusted = trusted;
    s->refs++;
    base_list_insert_tail(&s->joins, &j->link);
    j->pending = 1; /* until every lookup is started */
    for (size_t i = 0; i < n; i++) {
        uint8_t bin[16];
        int rc;
        if (base_hostport_parse(entries[i], s->cfg->serf_lan_port, host, sizeof host, &port))
            continue; /* checked above */
        if (inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1) {
            join_add(j, host, port);
            continue;
        }
        struct lookup *l = base_calloc(1, sizeof *l);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        l->j = j;
        l->port = port;
        l->req.data = l;
        snprintf(l->host, sizeof l->host, "%s", host);
        j->pending++;
        if ((rc = uv_getaddrinfo(s->loop, &l->req, on_resolved, host, NULL, &hints))) {
            LOG_WARN("serf", "join: cannot resolve %s: %s", host, uv_strerror(rc));
            base_free(l);
            j->pending--;
        }
    }
    if (--j->pending == 0)
        join_go(j);
    return 0;
}

int adm_serf_join(struct adm_serf *s, const char *const *entries, size_t n, adm_serf_join_cb cb,
                  void *ctx, char *err)
{
    return join_start(s, entries, n, cb, ctx, true, err);
}

/* ---- -retry-join --------------------------------------------------------------------- */

static void retry_attempt(uv_timer_t *t);

static void retry_done(void *data, size_t joined, int status)
{
    struct adm_serf *s = data;
    s->retrying = false;
    if (status == BASE_ESHUTDOWN || s->stopping)
        return;
    if (status == 0 && joined > 0) {
        s->joined = true;
        LOG_INFO("serf", "Join cluster completed. Synced with %zu initial agents", joined);
        return;
    }
    s->attempts++;
    if (s->cfg->retry_max && s->attempts >= s->cfg->retry_max) {
        LOG_ERR("serf", "agent: max join LAN retry exhausted, exiting");
        if (s->hooks.on_fatal)
            s->hooks.on_fatal(s->hooks.data);
        return;
    }
    LOG_WARN("serf", "Join cluster failed, will retry: %s (retry_interval %" PRIu64 " ms)",
             base_strerror(status), s->cfg->retry_interval_ms);
    uv_timer_start(&s->retry, retry_attempt, s->cfg->retry_interval_ms, 0);
}

static void retry_attempt(uv_timer_t *t)
{
    struct adm_serf *s = t->data;
    char err[BASE_ERRMSG_LEN];
    if (s->stopping || s->joined || s->retrying)
        return;
    s->retrying = true;
    LOG_INFO("serf", "Joining cluster... %zu addresses", s->cfg->retry_join.n);
    if (adm_serf_join(s, (const char *const *)s->cfg->retry_join.v, s->cfg->retry_join.n,
                      retry_done, s, err))
        retry_done(s, 0, BASE_EINVAL); /* checked at start: cannot happen */
}

/* ---- the hooks the HTTP API uses ----------------------------------------------------- */

struct client_find {
    struct adm_serf *s;
    char addr[INET6_ADDRSTRLEN];
    bool found;
};

static void client_match(void *ctx, const struct gossip_node *m)
{
    struct client_find *f = ctx;
    const char *role = adm_tag(m, "role");
    if (!f->found && m->status == GOSSIP_MEMBER_ALIVE && strcmp(m->addr, f->addr) == 0 && role &&
        strcmp(role, "node") == 0 && vouched(f->s, m))
        f->found = true;
}

bool adm_serf_client_allowed(struct adm_serf *s, const struct sockaddr *sa)
{
    struct client_find f = {.s = s};
    const void *ip = sa->sa_family == AF_INET
                         ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                         : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!s || !s->g || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
        !inet_ntop(sa->sa_family, ip, f.addr, sizeof f.addr))
        return false;
    gossip_members(s->g, client_match, &f);
    return f.found;
}

void adm_serf_members(struct adm_serf *s, gossip_member_cb cb, void *ctx)
{
    if (s->g)
        gossip_members(s->g, cb, ctx);
}

int adm_serf_force_leave(struct adm_serf *s, const char *node, bool prune)
{
    return s->g ? gossip_force_leave(s->g, node, prune) : BASE_ESHUTDOWN;
}

struct gossip *adm_serf_gossip(struct adm_serf *s)
{
    return s->g;
}

int adm_serf_keyring(struct adm_serf *s, enum gossip_keyring_op op, const char *key,
                     gossip_keyring_cb cb, void *ctx)
{
    return s->g ? gossip_keyring(s->g, op, key, cb, ctx) : BASE_ESHUTDOWN;
}

/* gossip's on_keyring: every change of the keyring is saved (serf_keyring.c) */
static int on_keyring(void *data, const char *const *keys, size_t n, char *why, size_t why_len)
{
    struct adm_serf *s = data;
    return s->cfg->data_dir ? adm_keyring_save(s->cfg->data_dir, keys, n, why, why_len) : 0;
}

/* ---- start and stop ------------------------------------------------------------------ */

int adm_serf_start(uv_loop_t *loop, const struct adm_config *c, const char *node_id,
                   struct cons *cons, const struct adm_serf_hooks *hooks, struct adm_serf **out,
                   char *err)
{
    struct adm_serf *s = base_calloc(1, sizeof *s);
    struct gossip_config gc;
    struct gossip_tag tags[16];
    char host[256];
    int port, rc;

    for (size_t i = 0; i < c->retry_join.n; i++)
        if (base_hostport_parse(c->retry_join.v[i], c->serf_lan_port, host, sizeof host, &port) ||
            !*host) {
            base_free(s);
            return base_errf(err, BASE_EINVAL, "-retry-join \"%s\": expected host or host:port",
                             c->retry_join.v[i]);
        }
    struct adm_strv keyring = {0};
    if (c->data_dir && (rc = adm_keyring_load(c->data_dir, c, &keyring, err))) {
        base_free(s);
        return rc;
    }
    s->loop = loop;
    s->cfg = c;
    s->cons = cons;
    s->refs = 1;
    if (hooks)
        s->hooks = *hooks;
    base_list_init(&s->joins);
    snprintf(s->node_id, sizeof s->node_id, "%s", node_id);
    uv_timer_init(loop, &s->retry);
    s->retry.data = s;

    gossip_config_defaults(&gc);
    gc.node_name = c->node_name;
    gc.bind_addr = c->serf_lan_addr;
    gc.bind_port = (uint16_t)c->serf_lan_port;
    gc.advertise_addr = c->advertise_addr;
    gc.tags = tags;
    gc.n_tags = server_tags(s, tags);
    gc.key = c->key;
    gc.key_len = c->key_len;
    gc.keyring = (const char *const *)keyring.v;
    gc.n_keyring = keyring.n;
    gc.on_keyring = on_keyring;
    s->encrypted = keyring.n > 0 || c->key_len > 0;
    gc.reconnect_timeout_ms = c->reconnect_timeout_ms;
    if (c->gossip_lan.gossip_nodes)
        gc.gossip_nodes = c->gossip_lan.gossip_nodes;
    if (c->gossip_lan.gossip_interval_ms)
        gc.gossip_interval_ms = c->gossip_lan.gossip_interval_ms;
    if (c->gossip_lan.probe_interval_ms)
        gc.probe_interval_ms = c->gossip_lan.probe_interval_ms;
    if (c->gossip_lan.probe_timeout_ms)
        gc.probe_timeout_ms = c->gossip_lan.probe_timeout_ms;
    if (c->gossip_lan.retransmit_mult)
        gc.retransmit_mult = c->gossip_lan.retransmit_mult;
    if (c->gossip_lan.suspicion_mult)
        gc.suspicion_mult = c->gossip_lan.suspicion_mult;
    gc.on_event = on_event;
    gc.on_merge = on_merge;
    gc.ctx = s;
    *out = s;
    rc = gossip_start(loop, &gc, &s->g);
    adm_strv_free(&keyring);
    if (rc) {
        s->g = NULL;
        return base_errf(err, rc, "gossip: cannot start on %s:%d: %s", c->serf_lan_addr,
                         c->serf_lan_port, base_strerror(rc));
    }
    LOG_INFO("serf", "gossip pool on %s:%d, advertising %s%s", c->serf_lan_addr, c->serf_lan_port,
             c->advertise_addr, s->encrypted ? ", encrypted" : "");
    rejoin(s);
    if (c->retry_join.n)
        uv_timer_start(&s->retry, retry_attempt, 0, 0);
    return 0;
}

static void rejoined(void *data, size_t joined, int status)
{
    BASE_UNUSED(data);
    if (status == 0 && joined > 0)
        LOG_INFO("serf", "Re-joined to previously known node(s): %zu", joined);
    else if (status != BASE_ESHUTDOWN)
        LOG_WARN("serf", "Failed to re-join any previously known node: %s",
                 status ? base_strerror(status) : "no member answered");
}

/* The snapshot's members, as Consul's -rejoin: unless we left (and rejoin_after_leave is off). */
static void rejoin(struct adm_serf *s)
{
    struct adm_strv addrs = {0};
    bool left;
    char err[BASE_ERRMSG_LEN];
    if (!s->cfg->data_dir)
        return;
    s->snap = adm_snapshot_open(s->loop, s->cfg->data_dir, s->cfg->node_name, &addrs, &left);
    if (addrs.n && left && !s->cfg->rejoin_after_leave) {
        LOG_INFO("serf", "Ignoring previous join state: this agent left the pool (-rejoin to "
                         "rejoin anyway)");
    } else if (addrs.n) {
        LOG_INFO("serf", "Attempting re-join to %zu previously known node(s)", addrs.n);
        /* not vouched for: the snapshot holds whoever was in the pool, not whom we named */
        if (join_start(s, (const char *const *)addrs.v, addrs.n, rejoined, s, false, err))
            LOG_WARN("serf", "re-join: %s", err);
    }
    adm_strv_free(&addrs);
}

static void serf_unref(struct adm_serf *s)
{
    if (--s->refs > 0)
        return;
    void (*done)(void *) = s->stopped;
    void *data = s->stopped_data;
    adm_strv_free(&s->joined_addrs);
    base_free(s);
    if (done)
        done(data);
}

static void on_timer_closed(uv_handle_t *h)
{
    serf_unref(h->data);
}

static void on_gossip_stopped(void *data, int status)
{
    struct adm_serf *s = data;
    BASE_UNUSED(status);
    uv_close((uv_handle_t *)&s->retry, on_timer_closed);
}

void adm_serf_stop(struct adm_serf *s, void (*done)(void *), void *data)
{
    if (s->closed)
        return;
    s->closed = s->stopping = true;
    s->stopped = done;
    s->stopped_data = data;
    uv_timer_stop(&s->retry);
    adm_snapshot_close(s->snap);
    s->snap = NULL;
    /* joins still resolving: their callers hear now; their structs go when the lookups end */
    for (struct base_list *l = s->joins.next; l != &s->joins; l = l->next)
        join_finish(BASE_CONTAINER_OF(l, struct join, link), 0, BASE_ESHUTDOWN);
    if (s->g) {
        struct gossip *g = s->g;
        s->g = NULL;
        gossip_stop(g, on_gossip_stopped, s);
    } else {
        on_gossip_stopped(s, 0);
    }
}

static void on_left(void *data, int status)
{
    struct adm_serf *s = data;
    if (status)
        LOG_WARN("serf", "leave: %s", base_strerror(status));
    else
        LOG_INFO("serf", "left the gossip pool");
    if (s->left)
        s->left(s->left_data);
}

int adm_serf_leave(struct adm_serf *s, void (*done)(void *), void *data)
{
    if (!s->g || s->stopping)
        return BASE_ESHUTDOWN;
    s->left = done;
    s->left_data = data;
    uv_timer_stop(&s->retry);
    adm_snapshot_left(s->snap);
    return gossip_leave(s->g, on_left, s);
}
