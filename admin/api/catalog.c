/* /v1/catalog: register and deregister entries for any node, and the catalog reads. */
#include "internal.h"

#include <string.h>

/* A catalog check is a status record: no TTL or interval needed (Consul's structs.HealthCheck).
 * The definition, when present, is kept for display. */
static int decode_catalog_check(json_t *obj, const char *node, struct base_arena *ar,
                                struct zone_check *c, char *err)
{
    int rc = api__decode_check(obj, node, ar, c, err);
    if (rc)
        return rc;
    if (!c->check_id || !*c->check_id)
        c->check_id = c->name;
    if (!c->check_id || !*c->check_id)
        return base_errf(err, BASE_EINVAL, "Missing check ID");
    if (!c->name || !*c->name)
        c->name = c->check_id;
    c->node = node;
    c->type = "";
    if (!c->service_id)
        c->service_id = "";
    if (!c->notes)
        c->notes = "";
    if (!c->output)
        c->output = "";
    return 0;
}

/* The fields both catalog writes take: Node, Datacenter, and those Herald accepts and
 * ignores (no ACLs, namespaces or partitions). Returns whether k is one of them, with the
 * decoder's result in *rc. */
static bool common_field(const char *k, json_t *v, struct base_arena *ar, struct zone_cmd *cmd,
                         const char **dc, int *rc, char *err)
{
    if (api__key_is(k, "Node"))
        *rc = api__get_str(v, k, ar, &cmd->node.name, err);
    else if (api__key_is(k, "Datacenter"))
        *rc = api__get_str(v, k, ar, dc, err);
    else if (api__key_is(k, "Token") || api__key_is(k, "Namespace") || api__key_is(k, "Partition"))
        *rc = 0;
    else
        return false;
    return true;
}

static void catalog_register(struct api *a, struct http_req *req)
{
    char err[BASE_ERRMSG_LEN];
    struct base_arena *ar = http_req_arena(req);
    json_t *obj = api__parse_body(req, err);
    struct zone_cmd cmd = {.type = ZONE_CMD_REGISTER};
    json_t *svc_json = NULL, *check = NULL, *checks = NULL;
    const char *k, *dc = NULL;
    json_t *v;
    int rc = 0;

    if (!obj)
        return;
    json_object_foreach(obj, k, v)
    {
        if (api__key_is(k, "ID"))
            rc = api__get_str(v, k, ar, &cmd.node.id, err);
        else if (api__key_is(k, "Address"))
            rc = api__get_str(v, k, ar, &cmd.node.address, err);
        else if (api__key_is(k, "TaggedAddresses"))
            rc = api__get_strmap(v, k, ar, &cmd.node.tagged_addresses, &cmd.node.n_tagged_addresses,
                                 err);
        else if (api__key_is(k, "NodeMeta"))
            rc = api__get_strmap(v, k, ar, &cmd.node.meta, &cmd.node.n_meta, err);
        else if (api__key_is(k, "Service"))
            svc_json = v;
        else if (api__key_is(k, "Check"))
            check = v;
        else if (api__key_is(k, "Checks"))
            checks = v;
        else if (api__key_is(k, "SkipNodeUpdate"))
            rc = api__get_bool(v, k, &cmd.skip_node_update, err);
        else if (api__key_is(k, "Locality"))
            continue;
        else if (!common_field(k, v, ar, &cmd, &dc, &rc, err))
            rc = api__unknown_field(k, err);
        if (rc)
            goto bad;
    }
    if (!cmd.node.name || !*cmd.node.name) {
        rc = base_errf(err, BASE_EINVAL, "Missing node name");
        goto bad;
    }
    if (!cmd.node.address || !*cmd.node.address) {
        rc = base_errf(err, BASE_EINVAL, "Missing node address");
        goto bad;
    }
    if (strlen(cmd.node.name) > 63 || strchr(cmd.node.name, '.') || strchr(cmd.node.name, '/')) {
        rc = base_errf(err, BASE_EINVAL, "Invalid node name \"%s\": must be a DNS label",
                       cmd.node.name);
        goto bad;
    }
    if (api__other_dc_named(a, req, dc)) {
        json_decref(obj);
        return;
    }
    cmd.node.datacenter = a->cfg.datacenter;
    if (!cmd.node.id)
        cmd.node.id = "";
    struct zone_service *svc = NULL;
    if (svc_json && !json_is_null(svc_json)) {
        struct zone_check *ignored;
        size_t n_ignored;
        svc = base_arena_alloc(ar, sizeof *svc);
        if (!json_is_object(svc_json)) {
            rc = base_errf(err, BASE_EINVAL, "Request decode failed: Service must be an object");
            goto bad;
        }
        if ((rc = api__decode_service_def(a, svc_json, ar, true, svc, &ignored, &n_ignored, err))) {
            base_err_wrap(err, "Service");
            goto bad;
        }
        svc->node = cmd.node.name;
        cmd.service = svc;
    }
    size_t total = (check && !json_is_null(check) ? 1 : 0) +
                   (checks && json_is_array(checks) ? json_array_size(checks) : 0);
    if (checks && !json_is_null(checks) && !json_is_array(checks)) {
        rc = base_errf(err, BASE_EINVAL,
                       "Request decode failed: field \"Checks\": expected an array");
        goto bad;
    }
    struct zone_check *chks = base_arena_alloc(ar, (total + 1) * sizeof *chks);
    size_t n = 0;
    if (check && !json_is_null(check)) {
        if ((rc = decode_catalog_check(check, cmd.node.name, ar, &chks[n++], err))) {
            base_err_wrap(err, "Check");
            goto bad;
        }
    }
    for (size_t i = 0; checks && json_is_array(checks) && i < json_array_size(checks); i++) {
        if ((rc = decode_catalog_check(json_array_get(checks, i), cmd.node.name, ar, &chks[n++],
                                       err))) {
            base_err_wrap(err, "Checks[%zu]", i);
            goto bad;
        }
    }
    cmd.checks = chks;
    cmd.n_checks = n;
    json_decref(obj);
    api__write(a, req, &cmd, API_REPLY_BOOL, "Check refers to a service that does not exist");
    return;
bad:
    json_decref(obj);
    api__error(req, 400, "%s", err);
}

static void catalog_deregister(struct api *a, struct http_req *req)
{
    char err[BASE_ERRMSG_LEN];
    struct base_arena *ar = http_req_arena(req);
    json_t *obj = api__parse_body(req, err);
    struct zone_cmd cmd = {.type = ZONE_CMD_DEREGISTER};
    const char *k, *dc = NULL;
    json_t *v;
    int rc = 0;

    if (!obj)
        return;
    json_object_foreach(obj, k, v)
    {
        if (api__key_is(k, "ServiceID"))
            rc = api__get_str(v, k, ar, &cmd.service_id, err);
        else if (api__key_is(k, "CheckID"))
            rc = api__get_str(v, k, ar, &cmd.check_id, err);
        else if (!common_field(k, v, ar, &cmd, &dc, &rc, err))
            rc = api__unknown_field(k, err);
        if (rc)
            break;
    }
    json_decref(obj);
    if (!rc && (!cmd.node.name || !*cmd.node.name))
        rc = base_errf(err, BASE_EINVAL, "Missing node name");
    if (rc) {
        api__error(req, 400, "%s", err);
        return;
    }
    if (api__other_dc_named(a, req, dc))
        return;
    api__write(a, req, &cmd, API_REPLY_BOOL, NULL);
}

uint64_t api__table_max(struct zone_read *rd, uint32_t tables)
{
    struct zone_meta m;
    uint64_t best = 0;
    if (zone_meta_get(rd, &m))
        return 0;
    for (int t = 0; t < ZONE_TABLE_COUNT; t++)
        if ((tables & ZONE_TABLE_BIT(t)) && m.table_index[t] > best)
            best = m.table_index[t];
    return best;
}

bool api__probe_at(struct api_result *res, uint64_t index)
{
    res->index = index;
    if (res->probe)
        res->probed = true;
    return res->probe;
}

bool api__probe_tables(struct zone_read *rd, uint32_t tables, struct api_result *res)
{
    return api__probe_at(res, api__table_max(rd, tables));
}

/* catalog/services: name -> union of tags, in name order. */
struct names_ctx {
    struct zone_read *rd;
    struct base_arena *ar;
    json_t *out;
};

static int add_tags(void *data, const struct zone_service *s)
{
    json_t *tags = data;
    for (size_t i = 0; i < s->n_tags; i++) {
        bool seen = false;
        for (size_t j = 0; j < json_array_size(tags) && !seen; j++)
            seen = strcmp(json_string_value(json_array_get(tags, j)), s->tags[i]) == 0;
        if (!seen)
            json_array_append_new(tags, json_string(s->tags[i]));
    }
    return 0;
}

struct first_name {
    const char *name;
    struct base_arena *ar;
};

static int first_service_name(void *data, const struct zone_service *s)
{
    struct first_name *f = data;
    if (!f->name)
        f->name = base_arena_strdup(f->ar, s->name);
    return 0;
}

static int add_service_name(void *data, const char *name)
{
    struct names_ctx *c = data;
    struct first_name f = {NULL, c->ar};
    json_t *tags = json_array();
    zone_service_instances_each(c->rd, name, c->ar, first_service_name, &f);
    zone_service_instances_each(c->rd, name, c->ar, add_tags, tags);
    json_object_set_new(c->out, f.name ? f.name : name, tags);
    return 0;
}

static void read_services(struct api *a, struct http_req *req, struct zone_read *rd,
                          struct base_arena *ar, struct api_result *res)
{
    BASE_UNUSED(a);
    BASE_UNUSED(req);
    if (api__probe_tables(rd, ZONE_TABLE_BIT(ZONE_TABLE_SERVICES), res))
        return;
    struct names_ctx c = {rd, ar, json_object()};
    zone_service_names_each(rd, ar, add_service_name, &c);
    res->json = c.out;
}

static bool has_tag(const struct zone_service *s, const char *tag)
{
    for (size_t i = 0; i < s->n_tags; i++)
        if (base_strcasecmp(s->tags[i], tag) == 0)
            return true;
    return false;
}

struct svc_ctx {
    struct zone_read *rd;
    struct base_arena *ar;
    const char *tag;
    struct api_list out;
};

static int add_catalog_service(void *data, const struct zone_service *s)
{
    struct svc_ctx *c = data;
    struct zone_node n;
    if (c->tag && !has_tag(s, c->tag))
        return 0;
    if (zone_node_get(c->rd, s->node, c->ar, &n))
        return 0;
    api__list_add(&c->out, api__json_service_catalog(&n, s));
    return 0;
}

static void read_service(struct api *a, struct http_req *req, struct zone_read *rd,
                         struct base_arena *ar, struct api_result *res)
{
    const char *name = http_req_path(req) + strlen("/v1/catalog/service/");
    struct svc_ctx c = {rd, ar, http_req_query(req, "tag"), {0}};
    BASE_UNUSED(a);
    if (api__probe_tables(rd, API_TABLES_CATALOG, res))
        return;
    api__list_init(&c.out, req);
    zone_service_instances_each(rd, name, ar, add_catalog_service, &c);
    api__list_finish(&c.out, res);
}

static int add_node(void *data, const struct zone_node *n)
{
    api__list_add(data, api__json_node(n));
    return 0;
}

static void read_nodes(struct api *a, struct http_req *req, struct zone_read *rd,
                       struct base_arena *ar, struct api_result *res)
{
    BASE_UNUSED(a);
    if (api__probe_tables(rd, ZONE_TABLE_BIT(ZONE_TABLE_NODES), res))
        return;
    struct api_list l;
    api__list_init(&l, req);
    zone_nodes_each(rd, ar, add_node, &l);
    api__list_finish(&l, res);
}

static int add_node_service(void *data, const struct zone_service *s)
{
    json_object_set_new(data, s->id, api__json_service_agent(s, NULL));
    return 0;
}

static void read_node(struct api *a, struct http_req *req, struct zone_read *rd,
                      struct base_arena *ar, struct api_result *res)
{
    const char *name = http_req_path(req) + strlen("/v1/catalog/node/");
    struct zone_node n;
    BASE_UNUSED(a);
    res->index = api__table_max(rd, API_TABLES_CATALOG);
    if (zone_node_get(rd, name, ar, &n)) {
        res->json = json_null(); /* Consul answers null for an unknown node */
        return;
    }
    json_t *svcs = json_object();
    zone_node_services_each(rd, n.name, ar, add_node_service, svcs);
    res->json = json_pack("{s:o,s:o}", "Node", api__json_node(&n), "Services", svcs);
}

static void read_dcs(struct api *a, struct http_req *req, struct zone_read *rd,
                     struct base_arena *ar, struct api_result *res)
{
    BASE_UNUSED(req);
    BASE_UNUSED(ar);
    res->json = json_pack("[s]", a->cfg.datacenter);
    res->index = api__table_max(rd, ZONE_TABLE_ALL);
}

bool api__catalog_route(struct api *a, struct http_req *req, const char *path)
{
    if (strncmp(path, "/v1/catalog/", 12) != 0)
        return false;
    const char *p = path + 12;
    if (strcmp(p, "register") == 0) {
        if (api__method(req, "PUT"))
            catalog_register(a, req);
    } else if (strcmp(p, "deregister") == 0) {
        if (api__method(req, "PUT"))
            catalog_deregister(a, req);
    } else if (strcmp(p, "services") == 0) {
        if (api__method(req, "GET"))
            api__read_list(a, req, ZONE_TABLE_BIT(ZONE_TABLE_SERVICES), read_services);
    } else if (strncmp(p, "service/", 8) == 0) {
        if (api__get_named(req, p + 8, "Missing service name"))
            api__read_list(a, req, API_TABLES_CATALOG, read_service);
    } else if (strcmp(p, "nodes") == 0) {
        if (api__method(req, "GET"))
            api__read_list(a, req, ZONE_TABLE_BIT(ZONE_TABLE_NODES), read_nodes);
    } else if (strncmp(p, "node/", 5) == 0) {
        if (api__get_named(req, p + 5, "Missing node name"))
            api__read(a, req, API_TABLES_CATALOG, read_node);
    } else if (strcmp(p, "datacenters") == 0) {
        if (api__method(req, "GET"))
            api__read_local(a, req, 0, read_dcs);
    } else {
        return false;
    }
    return true;
}

uint64_t api__record_index(struct zone_read *rd, uint64_t modify_index)
{
    struct zone_meta m;
    if (zone_meta_get(rd, &m) == 0 && m.restored > modify_index)
        return m.restored;
    return modify_index;
}
