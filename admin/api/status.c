/* /v1/status and /v1/operator/raft: who leads, who votes. */
#include "internal.h"

#include <string.h>

struct peers_ctx {
    json_t *arr;
    bool voters_only;
    uint64_t leader;
    json_t *names; /* Raft id (decimal) -> node name */
    struct zone_read *rd;
};

/* Every server registers its node with the "consul" service (agent.c), under a node ID from
 * which its Raft id derives: that names the node of each server. */
static int server_node(void *data, const struct zone_service *s)
{
    struct peers_ctx *c = data;
    struct zone_node n;
    struct base_arena a;
    char id[24];
    base_arena_init(&a);
    if (zone_node_get(c->rd, s->node, &a, &n) == 0 && n.id[0]) {
        snprintf(id, sizeof id, "%llu", (unsigned long long)cons_id_from_node_id(n.id));
        json_object_set_new(c->names, id, json_string(n.name));
    }
    base_arena_close(&a);
    return 0;
}

static void add_peer(void *data, const struct cons_server *s)
{
    struct peers_ctx *c = data;
    if (c->voters_only) {
        if (s->role == 1)
            json_array_append_new(c->arr, json_string(s->address));
        return;
    }
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)s->id);
    json_t *name = json_object_get(c->names, id);
    json_array_append_new(c->arr, json_pack("{s:s,s:s,s:s,s:b,s:b,s:s}", "ID", id, "Node",
                                            name ? json_string_value(name) : "", "Address",
                                            s->address, "Leader", s->id == c->leader, "Voter",
                                            s->role == 1, "ProtocolVersion", "3"));
}

static void read_leader(struct api *a, struct http_req *req, struct zone_read *rd,
                        struct base_arena *ar, struct api_result *res)
{
    uint64_t id;
    const char *addr;
    BASE_UNUSED(req);
    BASE_UNUSED(ar);
    cons_leader(a->cfg.cons, &id, &addr);
    res->json = json_string(addr ? addr : "");
    res->index = api__table_max(rd, ZONE_TABLE_ALL);
}

static void read_peers(struct api *a, struct http_req *req, struct zone_read *rd,
                       struct base_arena *ar, struct api_result *res)
{
    struct peers_ctx c = {json_array(), true, 0, NULL, rd};
    BASE_UNUSED(req);
    BASE_UNUSED(ar);
    cons_servers_each(a->cfg.cons, add_peer, &c);
    res->json = c.arr;
    res->index = api__table_max(rd, ZONE_TABLE_ALL);
}

static void read_raft_config(struct api *a, struct http_req *req, struct zone_read *rd,
                             struct base_arena *ar, struct api_result *res)
{
    const char *addr;
    char self[24];
    struct peers_ctx c = {json_array(), false, 0, json_object(), rd};
    BASE_UNUSED(req);
    cons_leader(a->cfg.cons, &c.leader, &addr);
    snprintf(self, sizeof self, "%llu", (unsigned long long)a->cfg.raft_id);
    json_object_set_new(c.names, self, json_string(a->cfg.node_name)); /* before our sync */
    (void)zone_service_instances_each(rd, "consul", ar, server_node, &c);
    cons_servers_each(a->cfg.cons, add_peer, &c);
    json_decref(c.names);
    res->json =
        json_pack("{s:o,s:I}", "Servers", c.arr, "Index", (json_int_t)cons_last_index(a->cfg.cons));
    res->index = api__table_max(rd, ZONE_TABLE_ALL);
}

/* Herald's own: a digest of the whole local catalog (FNV-1a 64 over its snapshot encoding,
 * which holds every table and the applied index), so operators and tests can check that
 * servers hold identical replicas. Cost: one pass over the catalog; not for hot paths. */
static void read_digest(struct api *a, struct http_req *req, struct zone_read *rd,
                        struct base_arena *ar, struct api_result *res)
{
    struct base_buf b;
    struct zone_meta m;
    uint64_t h = 0xcbf29ce484222325ULL;
    char hex[17];
    BASE_UNUSED(req);
    BASE_UNUSED(ar);
    base_buf_init(&b);
    if (zone_store_snapshot(a->cfg.store, &b) || zone_meta_get(rd, &m)) {
        base_buf_free(&b);
        res->status = 500;
        res->error = "catalog read failed";
        return;
    }
    for (size_t i = 0; i < b.len; i++) {
        h ^= b.data[i];
        h *= 0x100000001b3ULL;
    }
    base_buf_free(&b);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    res->json = json_pack("{s:s,s:I,s:I}", "Digest", hex, "AppliedIndex", (json_int_t)m.applied,
                          "CatalogIndex", (json_int_t)m.index);
    res->index = m.index;
}

bool api__status_route(struct api *a, struct http_req *req, const char *path)
{
    if (strcmp(path, "/v1/operator/catalog/digest") == 0) {
        if (api__method(req, "GET"))
            api__read_local(a, req, 0, read_digest);
        return true;
    }
    if (strcmp(path, "/v1/status/leader") == 0) {
        if (api__method(req, "GET"))
            api__read_local(a, req, 0, read_leader);
    } else if (strcmp(path, "/v1/status/peers") == 0) {
        if (api__method(req, "GET"))
            api__read_local(a, req, 0, read_peers);
    } else if (strcmp(path, "/v1/operator/raft/configuration") == 0) {
        if (api__method(req, "GET"))
            api__read(a, req, 0, read_raft_config);
    } else {
        return false;
    }
    return true;
}

/* ---- membership: operator raft peer, agent join and leave ------------------------------- */

struct member_ctx {
    struct api *api;
    struct http_req *req; /* NULL once the client went away */
    bool leave;           /* agent/leave: stop the agent after answering */
};

static void member_abort(void *data, struct http_req *req)
{
    struct member_ctx *m = data;
    BASE_UNUSED(req);
    m->req = NULL;
}

static void member_done(void *data, int status, const char *msg)
{
    struct member_ctx *m = data;
    struct api *a = m->api;
    if (m->req) {
        http_req_set_abort(m->req, NULL, NULL);
        if (status == 0)
            http_respond(m->req, 200, NULL, "", 0);
        else
            api__error(m->req,
                       status == BASE_ENOTFOUND                         ? 404
                       : status == BASE_EINVAL || status == BASE_EPARSE ? 400
                                                                        : 500,
                       "%s", msg && *msg ? msg : base_strerror(status));
    }
    if (m->leave && status == 0 && a->cfg.hooks.leave)
        a->cfg.hooks.leave(a->cfg.hooks.leave_data);
    base_free(m);
}

static struct member_ctx *member_ctx_new(struct api *a, struct http_req *req)
{
    struct member_ctx *m = base_calloc(1, sizeof *m);
    m->api = a;
    m->req = req;
    http_req_set_abort(req, member_abort, m);
    return m;
}

static void raft_peer_delete(struct api *a, struct http_req *req)
{
    const char *id_s = http_req_query(req, "id");
    const char *addr = http_req_query(req, "address");
    uint64_t id = 0;
    if ((!id_s || !*id_s) && (!addr || !*addr)) {
        api__error(req, 400,
                   "Must specify either ?id with the server's ID or ?address with "
                   "IP:port of peer to remove");
        return;
    }
    if (id_s && *id_s && base_u64_parse(id_s, &id)) {
        api__error(req, 400, "Invalid ?id \"%s\": must be the server's numeric Raft ID", id_s);
        return;
    }
    cons_remove_peer(a->cfg.cons, id, id ? NULL : addr, member_done, member_ctx_new(a, req));
}

/* agent/join: the address is a member's gossip address (Consul's), joined through admin. */
static void join_done(void *data, size_t joined, int status)
{
    struct member_ctx *m = data;
    if (m->req) {
        http_req_set_abort(m->req, NULL, NULL);
        if (status == 0 && joined > 0)
            http_respond(m->req, 200, NULL, "", 0);
        else
            api__error(m->req, 500, "Error joining the cluster: %s",
                       status ? base_strerror(status) : "no member answered");
    }
    base_free(m);
}

static void agent_join(struct api *a, struct http_req *req, const char *addr)
{
    const char *wan = http_req_query(req, "wan");
    char err[BASE_ERRMSG_LEN];
    if (wan && strcmp(wan, "0") != 0 && strcmp(wan, "false") != 0) {
        api__error(req, 500, "WAN join not available: this agent has no WAN pool");
        return;
    }
    if (!a->cfg.gossip.join) {
        api__error(req, 500, "No gossip pool");
        return;
    }
    struct member_ctx *m = member_ctx_new(a, req);
    if (a->cfg.gossip.join(a->cfg.gossip.data, addr, join_done, m, err)) {
        http_req_set_abort(req, NULL, NULL);
        base_free(m);
        api__error(req, 400, "%s", err);
    }
}

/* agent/force-leave/:node: a failed member becomes left (prune: forgotten at once). */
static void agent_force_leave(struct api *a, struct http_req *req, const char *node)
{
    const char *prune = http_req_query(req, "prune");
    const char *wan = http_req_query(req, "wan");
    if (wan && strcmp(wan, "0") != 0 && strcmp(wan, "false") != 0) {
        api__error(req, 500, "This agent has no WAN pool");
        return;
    }
    int rc = a->cfg.gossip.force_leave
                 ? a->cfg.gossip.force_leave(a->cfg.gossip.data, node,
                                             prune && strcmp(prune, "0") != 0 &&
                                                 strcmp(prune, "false") != 0)
                 : BASE_ESHUTDOWN;
    if (rc)
        api__error(req, 500, "%s", base_strerror(rc));
    else
        http_respond(req, 200, NULL, "", 0);
}

static void agent_leave(struct api *a, struct http_req *req)
{
    struct member_ctx *m = member_ctx_new(a, req);
    m->leave = true;
    cons_leave(a->cfg.cons, member_done, m);
}

bool api__member_route(struct api *a, struct http_req *req, const char *path)
{
    if (strcmp(path, "/v1/operator/raft/peer") == 0) {
        if (api__method(req, "DELETE"))
            raft_peer_delete(a, req);
    } else if (strncmp(path, "/v1/agent/join/", 15) == 0) {
        /* GET too: python-consul 0.7 joins with GET (pre-1.0 Consul). */
        if (!api__method(req, "PUT,GET"))
            return true;
        if (!path[15])
            api__error(req, 400, "Missing address to join");
        else
            agent_join(a, req, path + 15);
    } else if (strncmp(path, "/v1/agent/force-leave/", 22) == 0) {
        if (!api__method(req, "PUT"))
            return true;
        if (!path[22])
            api__error(req, 400, "Missing node name");
        else
            agent_force_leave(a, req, path + 22);
    } else if (strcmp(path, "/v1/agent/leave") == 0) {
        if (api__method(req, "PUT"))
            agent_leave(a, req);
    } else {
        return false;
    }
    return true;
}
