/* /v1/status and /v1/operator/raft: who leads, who votes. */
#include "internal.h"

#include <string.h>

struct peers_ctx {
    json_t *arr;
    bool voters_only;
    uint64_t leader;
    const char *self_name;
    uint64_t self_id;
};

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
    json_array_append_new(c->arr, json_pack("{s:s,s:s,s:s,s:b,s:b,s:s}", "ID", id, "Node",
                                            s->id == c->self_id ? c->self_name : "", "Address",
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
    struct peers_ctx c = {json_array(), true, 0, NULL, 0};
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
    struct peers_ctx c = {json_array(), false, 0, a->cfg.node_name, 0};
    BASE_UNUSED(req);
    BASE_UNUSED(ar);
    cons_leader(a->cfg.cons, &c.leader, &addr);
    c.self_id = a->cfg.raft_id;
    cons_servers_each(a->cfg.cons, add_peer, &c);
    res->json =
        json_pack("{s:o,s:I}", "Servers", c.arr, "Index", (json_int_t)cons_last_index(a->cfg.cons));
    res->index = api__table_max(rd, ZONE_TABLE_ALL);
}

bool api__status_route(struct api *a, struct http_req *req, const char *path)
{
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
