/* /v1/agent: the local agent's services and checks (writes go to the catalog under this
 * node's name through Raft), self and members. Also the service and check definition decoders
 * shared with the config file. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define CHECK_OUTPUT_MAX      4096 /* Consul's check_output_max_size default */
#define META_MAX_PAIRS        64
#define META_KEY_MAX          128
#define META_VALUE_MAX        512
#define CHECK_INTERVAL_MIN_MS 1000 /* Consul clamps intervals below 1s to 1s */

void api__self_node(struct api *a, struct zone_node *n)
{
    memset(n, 0, sizeof *n);
    n->name = a->cfg.node_name;
    n->id = a->cfg.node_id;
    n->address = a->cfg.advertise_addr;
    n->datacenter = a->cfg.datacenter;
}

static int check_meta(const struct zone_pair *p, size_t n, const char *field, char *errmsg)
{
    if (n > META_MAX_PAIRS)
        return base_errf(errmsg, BASE_EINVAL, "Invalid %s: more than %d pairs", field,
                         META_MAX_PAIRS);
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(p[i].key);
        if (kl > META_KEY_MAX)
            return base_errf(errmsg, BASE_EINVAL, "Invalid %s: key longer than %d characters",
                             field, META_KEY_MAX);
        for (const char *c = p[i].key; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
                return base_errf(errmsg, BASE_EINVAL,
                                 "Invalid %s: key \"%s\" contains invalid characters", field,
                                 p[i].key);
        if (strncmp(p[i].key, "consul-", 7) == 0)
            return base_errf(errmsg, BASE_EINVAL,
                             "Invalid %s: key \"%s\" uses the reserved prefix \"consul-\"", field,
                             p[i].key);
        if (strlen(p[i].value) > META_VALUE_MAX)
            return base_errf(errmsg, BASE_EINVAL,
                             "Invalid %s: value for \"%s\" longer than %d characters", field,
                             p[i].key, META_VALUE_MAX);
    }
    return 0;
}

static int check_name(const char *s, const char *field, char *errmsg)
{
    size_t n = strlen(s);
    if (n > ZONE_NAME_MAX)
        return base_errf(errmsg, BASE_EINVAL, "Invalid %s: longer than %d characters", field,
                         ZONE_NAME_MAX);
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return base_errf(errmsg, BASE_EINVAL, "Invalid %s: control character", field);
    return 0;
}

int api__decode_check_def(struct api *a, json_t *obj, struct base_arena *ar,
                          const struct zone_service *svc, size_t ordinal, size_t total,
                          struct zone_check *chk, char *errmsg)
{
    int rc = api__decode_check(obj, NULL, ar, chk, errmsg);
    if (rc)
        return rc;
    chk->node = a->cfg.node_name;
    int kinds = (chk->ttl_ms > 0) + (chk->http && *chk->http) + (chk->tcp && *chk->tcp);
    if (kinds != 1)
        return base_errf(errmsg, BASE_EINVAL,
                         kinds ? "Invalid check: give only one of TTL, HTTP or TCP"
                               : "Invalid check: must provide TTL or HTTP or TCP and Interval");
    if (chk->ttl_ms) {
        chk->type = "ttl";
    } else {
        chk->type = chk->http && *chk->http ? "http" : "tcp";
        if (!chk->interval_ms)
            return base_errf(errmsg, BASE_EINVAL,
                             "Invalid check: Interval must be > 0 for HTTP or TCP checks");
        if (chk->interval_ms < CHECK_INTERVAL_MIN_MS)
            chk->interval_ms = CHECK_INTERVAL_MIN_MS;
        if (!chk->timeout_ms)
            chk->timeout_ms = 10000;
        if (chk->http && *chk->http && strncmp(chk->http, "http://", 7) != 0)
            return base_errf(errmsg, BASE_EINVAL,
                             "Invalid check: HTTP must be an http:// URL (HTTPS checks are not "
                             "supported yet)");
        if (chk->http && *chk->http && (!chk->method || !*chk->method))
            chk->method = "GET";
    }
    if (svc) {
        chk->service_id = svc->id;
        chk->service_name = svc->name;
        if (!chk->check_id || !*chk->check_id)
            chk->check_id = total > 1
                                ? base_arena_printf(ar, "service:%s:%zu", svc->id, ordinal + 1)
                                : base_arena_printf(ar, "service:%s", svc->id);
        if (!chk->name || !*chk->name)
            chk->name = base_arena_printf(ar, "Service '%s' check", svc->name);
    } else {
        if (!chk->name || !*chk->name)
            return base_errf(errmsg, BASE_EINVAL, "Missing check name");
        if (!chk->check_id || !*chk->check_id)
            chk->check_id = chk->name;
    }
    if ((rc = check_name(chk->check_id, "CheckID", errmsg)))
        return rc;
    if (!chk->notes)
        chk->notes = "";
    if (!chk->output)
        chk->output = "";
    return 0;
}

int api__decode_service_def(struct api *a, json_t *obj, struct base_arena *ar,
                            struct zone_service *svc, struct zone_check **checks, size_t *n_checks,
                            char *errmsg)
{
    const char *k;
    json_t *v;
    json_t *check = NULL, *checkl = NULL, *weights = NULL;
    uint64_t port = 0;
    int rc = 0;

    memset(svc, 0, sizeof *svc);
    svc->node = a->cfg.node_name;
    svc->weight_passing = 1;
    svc->weight_warning = 1;
    json_object_foreach(obj, k, v)
    {
        if (api__key_is(k, "ID"))
            rc = api__get_str(v, k, ar, &svc->id, errmsg);
        else if (api__key_is(k, "Name") || api__key_is(k, "Service"))
            rc = api__get_str(v, k, ar, &svc->name, errmsg);
        else if (api__key_is(k, "Tags"))
            rc = api__get_strlist(v, k, ar, &svc->tags, &svc->n_tags, errmsg);
        else if (api__key_is(k, "Address"))
            rc = api__get_str(v, k, ar, &svc->address, errmsg);
        else if (api__key_is(k, "Port"))
            rc = api__get_uint(v, k, 65535, &port, errmsg);
        else if (api__key_is(k, "Meta"))
            rc = api__get_strmap(v, k, ar, &svc->meta, &svc->n_meta, errmsg);
        else if (api__key_is(k, "TaggedAddresses")) {
            /* Consul's service tagged addresses are {"lan": {"Address":..,"Port":..}}: keep
             * the addresses. */
            if (json_is_null(v))
                continue;
            if (!json_is_object(v))
                return base_errf(errmsg, BASE_EINVAL,
                                 "Request decode failed: field \"%s\": expected an object", k);
            const char *tk;
            json_t *tv;
            size_t i = 0;
            svc->tagged_addresses =
                base_arena_alloc(ar, (json_object_size(v) + 1) * sizeof(struct zone_pair));
            json_object_foreach(v, tk, tv)
            {
                json_t *addr = json_is_object(tv) ? api__json_field(tv, "Address") : tv;
                if (!json_is_string(addr))
                    return base_errf(errmsg, BASE_EINVAL,
                                     "Request decode failed: field \"%s.%s\": expected an "
                                     "object with an Address",
                                     k, tk);
                svc->tagged_addresses[i].key = base_arena_strdup(ar, tk);
                svc->tagged_addresses[i].value = base_arena_strdup(ar, json_string_value(addr));
                i++;
            }
            svc->n_tagged_addresses = i;
        } else if (api__key_is(k, "Kind"))
            rc = api__get_str(v, k, ar, &svc->kind, errmsg);
        else if (api__key_is(k, "EnableTagOverride"))
            rc = api__get_bool(v, k, &svc->enable_tag_override, errmsg);
        else if (api__key_is(k, "Weights"))
            weights = v;
        else if (api__key_is(k, "Check"))
            check = v;
        else if (api__key_is(k, "Checks"))
            checkl = v;
        else if (api__key_is(k, "Token") || api__key_is(k, "Namespace") ||
                 api__key_is(k, "Partition") || api__key_is(k, "Connect") ||
                 api__key_is(k, "Proxy") || api__key_is(k, "SocketPath") ||
                 api__key_is(k, "Locality") || api__key_is(k, "Datacenter") ||
                 api__key_is(k, "CreateIndex") || api__key_is(k, "ModifyIndex")) {
            if (api__empty_value(v) || api__key_is(k, "Token") || api__key_is(k, "Datacenter") ||
                api__key_is(k, "CreateIndex") || api__key_is(k, "ModifyIndex"))
                continue;
            return base_errf(errmsg, BASE_EINVAL, "Service field \"%s\" is not supported by Herald",
                             k);
        } else
            return api__unknown_field(k, errmsg);
        if (rc)
            return rc;
    }
    if (!svc->name || !*svc->name)
        return base_errf(errmsg, BASE_EINVAL, "Missing service name");
    if (!svc->id || !*svc->id)
        svc->id = svc->name;
    if (!svc->address)
        svc->address = "";
    if (!svc->kind)
        svc->kind = "";
    if (svc->kind[0])
        return base_errf(errmsg, BASE_EINVAL,
                         "Invalid service Kind \"%s\": only typical "
                         "services are supported",
                         svc->kind);
    if ((rc = check_name(svc->name, "service name", errmsg)) ||
        (rc = check_name(svc->id, "service ID", errmsg)) ||
        (rc = check_name(svc->address, "service Address", errmsg)) ||
        (rc = check_meta(svc->meta, svc->n_meta, "Meta", errmsg)))
        return rc;
    svc->port = (uint32_t)port;
    if (weights && !json_is_null(weights)) {
        uint64_t p = 1, w = 1;
        if (!json_is_object(weights))
            return base_errf(errmsg, BASE_EINVAL,
                             "Request decode failed: field \"Weights\": expected an object");
        json_object_foreach(weights, k, v)
        {
            if (api__key_is(k, "Passing"))
                rc = api__get_uint(v, "Weights.Passing", 65535, &p, errmsg);
            else if (api__key_is(k, "Warning"))
                rc = api__get_uint(v, "Weights.Warning", 65535, &w, errmsg);
            else
                rc = api__unknown_field(k, errmsg);
            if (rc)
                return rc;
        }
        if (p < 1)
            return base_errf(errmsg, BASE_EINVAL, "Passing must be greater than 0");
        svc->weight_passing = (uint32_t)p;
        svc->weight_warning = (uint32_t)w;
    }

    size_t total = (check && !json_is_null(check) ? 1 : 0) +
                   (checkl && json_is_array(checkl) ? json_array_size(checkl) : 0);
    if (checkl && !json_is_null(checkl) && !json_is_array(checkl))
        return base_errf(errmsg, BASE_EINVAL,
                         "Request decode failed: field \"Checks\": expected an array");
    if (total > 64)
        return base_errf(errmsg, BASE_EINVAL, "Invalid Checks: more than 64 checks");
    struct zone_check *chks = base_arena_alloc(ar, (total + 1) * sizeof *chks);
    size_t i = 0;
    if (check && !json_is_null(check)) {
        if ((rc = api__decode_check_def(a, check, ar, svc, i, total, &chks[i], errmsg))) {
            base_err_wrap(errmsg, "Check");
            return rc;
        }
        i++;
    }
    for (size_t j = 0; checkl && json_is_array(checkl) && j < json_array_size(checkl); j++) {
        if ((rc = api__decode_check_def(a, json_array_get(checkl, j), ar, svc, i, total, &chks[i],
                                        errmsg))) {
            base_err_wrap(errmsg, "Checks[%zu]", j);
            return rc;
        }
        i++;
    }
    for (size_t x = 0; x < i; x++)
        for (size_t y = x + 1; y < i; y++)
            if (strcmp(chks[x].check_id, chks[y].check_id) == 0)
                return base_errf(errmsg, BASE_EINVAL, "Duplicate check ID \"%s\"",
                                 chks[x].check_id);
    *checks = chks;
    *n_checks = i;
    return 0;
}

int api_service_def_decode(struct api *a, const char *json_text, size_t len, struct base_arena *ar,
                           struct zone_cmd *cmd, char *errmsg)
{
    json_error_t jerr;
    if (len == 0)
        return base_errf(errmsg, BASE_EINVAL, "Request decode failed: empty body");
    json_t *obj = api__json_loadb(json_text, len, &jerr);
    struct zone_service *svc = base_arena_alloc(ar, sizeof *svc);
    struct zone_check *checks;
    size_t n;

    if (!obj)
        return base_errf(errmsg, BASE_EINVAL, "Request decode failed: %s", jerr.text);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return base_errf(errmsg, BASE_EINVAL, "Request decode failed: expected an object");
    }
    int rc = api__decode_service_def(a, obj, ar, svc, &checks, &n, errmsg);
    json_decref(obj);
    if (rc)
        return rc;
    memset(cmd, 0, sizeof *cmd);
    cmd->type = ZONE_CMD_REGISTER;
    api__self_node(a, &cmd->node);
    cmd->skip_node_update = true;
    cmd->service = svc;
    cmd->checks = checks;
    cmd->n_checks = n;
    return 0;
}

/* ---- endpoints ------------------------------------------------------------------------- */

static void service_register(struct api *a, struct http_req *req)
{
    char err[BASE_ERRMSG_LEN];
    struct base_arena *ar = http_req_arena(req);
    size_t len;
    const char *body = http_req_body(req, &len);
    struct zone_cmd cmd;

    if (api_service_def_decode(a, body, len, ar, &cmd, err)) {
        api__error(req, 400, "%s", err);
        return;
    }
    api__write(a, req, &cmd, API_REPLY_EMPTY, NULL);
}

/* Reads one record of this node to decide 404 before proposing (the apply checks again). */
static bool own_service_exists(struct api *a, const char *id)
{
    struct zone_read *rd;
    struct base_arena ar;
    struct zone_service s;
    bool found = false;
    if (zone_read_begin(a->cfg.store, &rd))
        return false;
    base_arena_init(&ar);
    found = zone_service_get(rd, a->cfg.node_name, id, &ar, &s) == 0;
    zone_read_end(rd);
    base_arena_close(&ar);
    return found;
}

static void service_deregister(struct api *a, struct http_req *req, const char *id)
{
    struct zone_cmd cmd = {.type = ZONE_CMD_DEREGISTER};
    if (!own_service_exists(a, id)) {
        api__error(req, 404,
                   "Unknown service ID \"%s\". Ensure that the service ID is passed, not the "
                   "service name.",
                   id);
        return;
    }
    api__self_node(a, &cmd.node);
    cmd.service_id = id;
    api__write(a, req, &cmd, API_REPLY_EMPTY, "Unknown service ID");
}

static void read_services(struct api *a, struct http_req *req, struct zone_read *rd,
                          struct base_arena *ar, struct api_result *res);

struct svc_map_ctx {
    json_t *obj;
    const char *dc;
};

static int add_agent_service(void *data, const struct zone_service *s)
{
    struct svc_map_ctx *c = data;
    json_object_set_new(c->obj, s->id, api__json_service_agent(s, c->dc));
    return 0;
}

static void read_services(struct api *a, struct http_req *req, struct zone_read *rd,
                          struct base_arena *ar, struct api_result *res)
{
    struct zone_meta m;
    struct svc_map_ctx c = {json_object(), a->cfg.datacenter};
    BASE_UNUSED(req);
    zone_node_services_each(rd, a->cfg.node_name, ar, add_agent_service, &c);
    res->json = c.obj;
    res->index = zone_meta_get(rd, &m) ? 0 : m.table_index[ZONE_TABLE_SERVICES];
}

static void read_service_one(struct api *a, struct http_req *req, struct zone_read *rd,
                             struct base_arena *ar, struct api_result *res)
{
    const char *id = http_req_path(req) + strlen("/v1/agent/service/");
    struct zone_service s;
    if (zone_service_get(rd, a->cfg.node_name, id, ar, &s)) {
        res->status = 404;
        res->error = base_arena_printf(ar, "unknown service ID: %s", id);
        return;
    }
    res->json = api__json_service_agent(&s, a->cfg.datacenter);
    res->index = api__record_index(rd, s.modify_index);
}

static int add_agent_check(void *data, const struct zone_check *c)
{
    json_object_set_new(data, c->check_id, api__json_check(c));
    return 0;
}

static void read_checks(struct api *a, struct http_req *req, struct zone_read *rd,
                        struct base_arena *ar, struct api_result *res)
{
    struct zone_meta m;
    json_t *o = json_object();
    BASE_UNUSED(req);
    zone_node_checks_each(rd, a->cfg.node_name, ar, add_agent_check, o);
    res->json = o;
    res->index = zone_meta_get(rd, &m) ? 0 : m.table_index[ZONE_TABLE_CHECKS];
}

static void check_register(struct api *a, struct http_req *req)
{
    char err[BASE_ERRMSG_LEN];
    struct base_arena *ar = http_req_arena(req);
    json_t *obj = api__parse_body(req, err);
    struct zone_check *chk = base_arena_alloc(ar, sizeof *chk);
    struct zone_cmd cmd = {.type = ZONE_CMD_REGISTER};

    if (!obj)
        return;
    int rc = api__decode_check_def(a, obj, ar, NULL, 0, 1, chk, err);
    json_decref(obj);
    if (rc) {
        api__error(req, 400, "%s", err);
        return;
    }
    if (chk->service_id && *chk->service_id && !own_service_exists(a, chk->service_id)) {
        api__error(req, 400, "ServiceID \"%s\" does not exist", chk->service_id);
        return;
    }
    if (!chk->service_id)
        chk->service_id = "";
    api__self_node(a, &cmd.node);
    cmd.skip_node_update = true;
    cmd.checks = chk;
    cmd.n_checks = 1;
    api__write(a, req, &cmd, API_REPLY_EMPTY, "ServiceID does not exist");
}

static int own_check(struct api *a, const char *id, struct base_arena *ar, struct zone_check *c)
{
    struct zone_read *rd;
    int rc = zone_read_begin(a->cfg.store, &rd);
    if (rc)
        return rc;
    rc = zone_check_get(rd, a->cfg.node_name, id, ar, c);
    /* strings must outlive the txn: copy the ones we use */
    if (rc == 0) {
        c->type = base_arena_strdup(ar, c->type);
        c->output = base_arena_strdup(ar, c->output);
    }
    zone_read_end(rd);
    return rc;
}

static void unknown_check(struct http_req *req, const char *id)
{
    api__error(req, 404,
               "Unknown check ID \"%s\". Ensure that the check ID is passed, not the check name.",
               id);
}

static void check_deregister(struct api *a, struct http_req *req, const char *id)
{
    struct zone_check c;
    struct zone_cmd cmd = {.type = ZONE_CMD_DEREGISTER};
    if (own_check(a, id, http_req_arena(req), &c)) {
        unknown_check(req, id);
        return;
    }
    api__self_node(a, &cmd.node);
    cmd.check_id = id;
    api__write(a, req, &cmd, API_REPLY_EMPTY, NULL);
}

static void check_set(struct api *a, struct http_req *req, const char *id, enum zone_health st,
                      const char *output)
{
    struct base_arena *ar = http_req_arena(req);
    struct zone_check c;
    struct zone_cmd cmd = {.type = ZONE_CMD_CHECK_UPDATE};

    if (api__other_dc(a, req)) /* before the TTL refresh, which needs no write */
        return;
    if (own_check(a, id, ar, &c)) {
        unknown_check(req, id);
        return;
    }
    if (strcmp(c.type, "ttl") != 0) {
        api__error(req, 500, "CheckID \"%s\" does not have associated TTL", id);
        return;
    }
    if (strlen(output) > CHECK_OUTPUT_MAX) {
        char *o = base_arena_strndup(ar, output, CHECK_OUTPUT_MAX);
        output = base_arena_printf(ar, "%s ... (captured %d of %zu bytes)", o, CHECK_OUTPUT_MAX,
                                   strlen(output));
    }
    if (a->cfg.hooks.ttl_reset)
        a->cfg.hooks.ttl_reset(a->cfg.hooks.data, id);
    /* A refresh that changes nothing needs no write: the TTL timer is the agent's own. */
    if (c.status == st && strcmp(c.output, output) == 0) {
        http_respond(req, 200, NULL, "", 0);
        return;
    }
    api__self_node(a, &cmd.node);
    cmd.check_id = id;
    cmd.status = st;
    cmd.output = output;
    api__write(a, req, &cmd, API_REPLY_EMPTY, "Unknown check ID");
}

static void check_update(struct api *a, struct http_req *req, const char *id)
{
    char err[BASE_ERRMSG_LEN];
    struct base_arena *ar = http_req_arena(req);
    json_t *obj = api__parse_body(req, err);
    const char *k, *status = NULL, *output = "";
    json_t *v;
    enum zone_health st;
    int rc = 0;

    if (!obj)
        return;
    json_object_foreach(obj, k, v)
    {
        if (api__key_is(k, "Status"))
            rc = api__get_str(v, k, ar, &status, err);
        else if (api__key_is(k, "Output"))
            rc = api__get_str(v, k, ar, &output, err);
        else
            rc = api__unknown_field(k, err);
        if (rc)
            break;
    }
    json_decref(obj);
    if (rc) {
        api__error(req, 400, "%s", err);
        return;
    }
    if (!status || zone_health_parse(status, &st)) {
        api__error(req, 400, "Invalid check status: \"%s\"", status ? status : "");
        return;
    }
    check_set(a, req, id, st, output);
}

/* ---- the gossip pool's members (serf.Member's JSON) ------------------------------------ */

struct members {
    struct api *a;
    const char *only; /* just this member (NULL: all) */
    json_t *arr;
};

static void member_add(void *ctx, const struct api_member *m)
{
    struct members *ms = ctx;
    if (ms->only && strcmp(ms->only, m->name) != 0)
        return;
    json_t *tags = json_object();
    for (size_t i = 0; i < m->n_tags; i++)
        json_object_set_new(tags, m->tags[i].key, json_string(m->tags[i].value));
    json_array_append_new(ms->arr,
                          json_pack("{s:s,s:s,s:i,s:o,s:i,s:i,s:i,s:i,s:i,s:i,s:i}", "Name",
                                    m->name, "Addr", m->addr, "Port", (int)m->port, "Tags", tags,
                                    "Status", m->status, "ProtocolMin", m->vsn[0], "ProtocolMax",
                                    m->vsn[1], "ProtocolCur", m->vsn[2], "DelegateMin", m->vsn[3],
                                    "DelegateMax", m->vsn[4], "DelegateCur", m->vsn[5]));
}

static void read_self(struct api *a, struct http_req *req, struct zone_read *rd,
                      struct base_arena *ar, struct api_result *res)
{
    struct zone_meta m;
    BASE_UNUSED(req);
    BASE_UNUSED(ar);
    int rc = zone_meta_get(rd, &m);
    json_t *cfg =
        json_pack("{s:s,s:s,s:s,s:b,s:s,s:s,s:s}", "Datacenter", a->cfg.datacenter, "NodeName",
                  a->cfg.node_name, "NodeID", a->cfg.node_id, "Server", a->cfg.server, "Revision",
                  "", "Version", a->cfg.version, "PrimaryDatacenter", a->cfg.datacenter);
    struct members ms = {.a = a, .only = a->cfg.node_name, .arr = json_array()};
    if (a->cfg.gossip.members)
        a->cfg.gossip.members(a->cfg.gossip.data, member_add, &ms);
    json_t *member = json_incref(json_array_get(ms.arr, 0));
    json_decref(ms.arr);
    if (!member)
        member = json_object();
    json_t *raft = json_pack(
        "{s:s,s:I,s:I,s:I,s:I}", "state", cons_is_leader(a->cfg.cons) ? "Leader" : "Follower",
        "term", (json_int_t)cons_term(a->cfg.cons), "last_log_index",
        (json_int_t)cons_last_index(a->cfg.cons), "applied_index", (json_int_t)(rc ? 0 : m.applied),
        "catalog_index", (json_int_t)(rc ? 0 : m.index));
    json_t *catalog =
        json_pack("{s:I}", "damaged_reads", (json_int_t)zone_store_damaged_count(a->cfg.store));
    /* blocking queries parked now (waiting for a change): tests wait on it instead of sleeping */
    json_t *http = json_pack("{s:I}", "blocking_queries", (json_int_t)a->n_waiters);
    res->json = json_pack("{s:o,s:o,s:{s:o,s:o,s:o},s:{}}", "Config", cfg, "Member", member,
                          "Stats", "raft", raft, "catalog", catalog, "http", http, "Meta");
    res->index = rc ? 0 : m.index;
}

static void read_members(struct api *a, struct http_req *req, struct zone_read *rd,
                         struct base_arena *ar, struct api_result *res)
{
    struct zone_meta m;
    const char *wan = http_req_query(req, "wan");
    const char *segment = http_req_query(req, "segment");
    BASE_UNUSED(ar);
    bool is_wan = wan && strcmp(wan, "0") != 0 && strcmp(wan, "false") != 0;
    bool all = !segment || !*segment || strcmp(segment, "_all") == 0;
    if (is_wan && segment && *segment) {
        res->status = 400;
        res->error = "Cannot provide a segment with wan=true";
        return;
    }
    struct members ms = {.a = a, .arr = json_array()};
    /* the WAN pool does not exist yet (issue 17): no members; a named segment has none */
    if (!is_wan && all && a->cfg.gossip.members)
        a->cfg.gossip.members(a->cfg.gossip.data, member_add, &ms);
    res->json = ms.arr;
    res->index = zone_meta_get(rd, &m) ? 0 : m.index;
}

bool api__agent_route(struct api *a, struct http_req *req, const char *path)
{
    if (strncmp(path, "/v1/agent/", 10) != 0)
        return false;
    const char *p = path + 10;

    if (strcmp(p, "services") == 0) {
        if (api__method(req, "GET"))
            api__read_local(a, req, ZONE_TABLE_BIT(ZONE_TABLE_SERVICES), read_services);
    } else if (strcmp(p, "service/register") == 0) {
        if (api__method(req, "PUT"))
            service_register(a, req);
    } else if (strncmp(p, "service/deregister/", 19) == 0) {
        if (!api__method(req, "PUT,GET")) /* GET: pre-1.0 clients, see check/pass */
            return true;
        if (!p[19])
            api__error(req, 400, "Missing service ID");
        else
            service_deregister(a, req, p + 19);
    } else if (strncmp(p, "service/", 8) == 0 && p[8] && !strchr(p + 8, '/')) {
        if (api__method(req, "GET"))
            api__read_local(a, req, ZONE_TABLE_BIT(ZONE_TABLE_SERVICES), read_service_one);
    } else if (strcmp(p, "checks") == 0) {
        if (api__method(req, "GET"))
            api__read_local(a, req, ZONE_TABLE_BIT(ZONE_TABLE_CHECKS), read_checks);
    } else if (strcmp(p, "check/register") == 0) {
        if (api__method(req, "PUT"))
            check_register(a, req);
    } else if (strncmp(p, "check/deregister/", 17) == 0) {
        if (!api__method(req, "PUT,GET"))
            return true;
        if (!p[17])
            api__error(req, 400, "Missing check ID");
        else
            check_deregister(a, req, p + 17);
    } else if (strncmp(p, "check/pass/", 11) == 0 || strncmp(p, "check/warn/", 11) == 0 ||
               strncmp(p, "check/fail/", 11) == 0) {
        /* GET too: clients written for Consul before 1.0 (Debian's python3-consul among
         * them) still mark TTL checks with GET. */
        if (!api__method(req, "PUT,GET"))
            return true;
        const char *note = http_req_query(req, "note");
        enum zone_health st = p[6] == 'p'   ? ZONE_HEALTH_PASSING
                              : p[6] == 'w' ? ZONE_HEALTH_WARNING
                                            : ZONE_HEALTH_CRITICAL;
        if (!p[11])
            api__error(req, 400, "Missing check ID");
        else
            check_set(a, req, p + 11, st, note ? note : "");
    } else if (strncmp(p, "check/update/", 13) == 0) {
        if (!api__method(req, "PUT"))
            return true;
        if (!p[13])
            api__error(req, 400, "Missing check ID");
        else
            check_update(a, req, p + 13);
    } else if (strcmp(p, "self") == 0) {
        if (api__method(req, "GET"))
            api__read_local(a, req, 0, read_self);
    } else if (strcmp(p, "members") == 0) {
        if (api__method(req, "GET"))
            api__read_local(a, req, 0, read_members);
    } else {
        return false;
    }
    return true;
}
