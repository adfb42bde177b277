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

/* Consul's rule (agent.addCheck): a script check from a config file needs
 * enable_local_script_checks or enable_script_checks, one over HTTP needs enable_script_checks:
 * scripts accepted over HTTP are remote code execution. Consul's words. */
static int script_allowed(struct api *a, bool remote, char *errmsg)
{
    if (remote && !a->cfg.enable_script_checks)
        return base_errf(errmsg, BASE_EACL,
                         "Scripts are disabled on this agent from remote calls; to enable, "
                         "configure 'enable_script_checks' to true");
    if (!remote && !a->cfg.enable_script_checks && !a->cfg.enable_local_script_checks)
        return base_errf(errmsg, BASE_EACL,
                         "Scripts are disabled on this agent; to enable, configure "
                         "'enable_script_checks' or 'enable_local_script_checks' to true");
    return 0;
}

int api__decode_check_def(struct api *a, json_t *obj, struct base_arena *ar,
                          const struct zone_service *svc, size_t ordinal, size_t total, bool remote,
                          struct zone_check *chk, char *errmsg)
{
    int rc = api__decode_check(obj, NULL, ar, chk, errmsg);
    if (rc)
        return rc;
    chk->node = a->cfg.node_name;
    int kinds = (chk->ttl_ms > 0) + (chk->http && *chk->http) + (chk->tcp && *chk->tcp) +
                (chk->udp && *chk->udp) + (chk->n_args > 0);
    if (kinds != 1)
        return base_errf(errmsg, BASE_EINVAL,
                         kinds ? "Invalid check: give only one of TTL, HTTP, TCP, UDP or Args"
                               : "Invalid check: must provide TTL or HTTP or TCP or UDP or Args "
                                 "and Interval");
    if (chk->failures_before_warning > chk->failures_before_critical &&
        chk->failures_before_critical)
        return base_errf(errmsg, BASE_EINVAL,
                         "Invalid check: FailuresBeforeWarning (%u) is greater than "
                         "FailuresBeforeCritical (%u)",
                         chk->failures_before_warning, chk->failures_before_critical);
    if (chk->n_args && (rc = script_allowed(a, remote, errmsg)))
        return rc;
    if (chk->ttl_ms) {
        chk->type = "ttl";
    } else {
        chk->type = chk->http && *chk->http ? "http"
                    : chk->tcp && *chk->tcp ? "tcp"
                    : chk->udp && *chk->udp ? "udp"
                                            : "script";
        if (!chk->interval_ms)
            return base_errf(errmsg, BASE_EINVAL,
                             "Invalid check: Interval must be > 0 for %s checks",
                             chk->n_args ? "script" : "HTTP, TCP or UDP");
        if (chk->interval_ms < CHECK_INTERVAL_MIN_MS)
            chk->interval_ms = CHECK_INTERVAL_MIN_MS;
        if (!chk->timeout_ms) /* Consul: 30s for a script, 10s for the others */
            chk->timeout_ms = chk->n_args ? 30000 : 10000;
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

int api__decode_service_def(struct api *a, json_t *obj, struct base_arena *ar, bool remote,
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
        if ((rc = api__decode_check_def(a, check, ar, svc, i, total, remote, &chks[i], errmsg))) {
            base_err_wrap(errmsg, "Check");
            return rc;
        }
        i++;
    }
    for (size_t j = 0; checkl && json_is_array(checkl) && j < json_array_size(checkl); j++) {
        if ((rc = api__decode_check_def(a, json_array_get(checkl, j), ar, svc, i, total, remote,
                                        &chks[i], errmsg))) {
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

/* remote: from the HTTP API (not a config file), for the script check rule. */
static int service_def_decode(struct api *a, const char *json_text, size_t len,
                              struct base_arena *ar, bool remote, struct zone_cmd *cmd,
                              char *errmsg)
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
    int rc = api__decode_service_def(a, obj, ar, remote, svc, &checks, &n, errmsg);
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

int api_service_def_decode(struct api *a, const char *json_text, size_t len, struct base_arena *ar,
                           struct zone_cmd *cmd, char *errmsg)
{
    return service_def_decode(a, json_text, len, ar, false, cmd, errmsg);
}

int api_check_def_decode(struct api *a, const char *json_text, size_t len, struct base_arena *ar,
                         struct zone_cmd *cmd, char *errmsg)
{
    json_error_t jerr;
    json_t *obj = api__json_loadb(json_text, len, &jerr);
    struct zone_check *chk = base_arena_alloc(ar, sizeof *chk);

    if (!obj)
        return base_errf(errmsg, BASE_EINVAL, "Request decode failed: %s", jerr.text);
    int rc = api__decode_check_def(a, obj, ar, NULL, 0, 1, false, chk, errmsg);
    json_decref(obj);
    if (rc)
        return rc;
    if (!chk->service_id)
        chk->service_id = "";
    memset(cmd, 0, sizeof *cmd);
    cmd->type = ZONE_CMD_REGISTER;
    api__self_node(a, &cmd->node);
    cmd->skip_node_update = true;
    cmd->checks = chk;
    cmd->n_checks = 1;
    return 0;
}

/* A definition refused by the script rule is answered as Consul does: its error from
 * AddService/AddCheck is a plain error, so 500; anything else the decoder refuses is 400. */
static int decode_status(int rc)
{
    return rc == BASE_EACL ? 500 : 400;
}

/* ---- endpoints ------------------------------------------------------------------------- */

static void service_register(struct api *a, struct http_req *req)
{
    char err[BASE_ERRMSG_LEN];
    struct base_arena *ar = http_req_arena(req);
    size_t len;
    const char *body = http_req_body(req, &len);
    struct zone_cmd cmd;

    int rc = service_def_decode(a, body, len, ar, true, &cmd, err);
    if (rc) {
        api__error(req, decode_status(rc), "%s", err);
        return;
    }
    api__agent_write(a, req, &cmd, API_REPLY_EMPTY, NULL);
}

/* The services of this agent: this node's, but not the "consul" service a server's node carries
 * (registered by the leader, admin/agent.c and reconcile.c). As in Consul, where it is in the
 * catalog and never in the agent's local state: /v1/agent/services does not list it, and
 * /v1/agent/service/consul, its deregistration and its health by ID are 404s. */
static bool agent_owns(const struct zone_service *s)
{
    return strcmp(s->id, "consul") != 0;
}

/* The same for checks: the serfHealth check of this node is the leader's (reconcile.c), in the
 * catalog only, as in Consul; not listed by /v1/agent/checks nor counted by
 * /v1/agent/health/service, unknown to the check endpoints. */
static bool agent_owns_check(const char *check_id)
{
    return strcmp(check_id, "serfHealth") != 0;
}

/* This agent's service id (0), or not one of its own (non-zero). */
static int own_service_get(struct api *a, struct zone_read *rd, const char *id,
                           struct base_arena *ar, struct zone_service *s)
{
    if (zone_service_get(rd, a->cfg.node_name, id, ar, s))
        return -1;
    return agent_owns(s) ? 0 : -1;
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
    found = own_service_get(a, rd, id, &ar, &s) == 0;
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
    api__agent_write(a, req, &cmd, API_REPLY_EMPTY, "Unknown service ID");
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
    if (!agent_owns(s))
        return 0;
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
    if (own_service_get(a, rd, id, ar, &s)) {
        res->status = 404;
        res->error = base_arena_printf(ar, "unknown service ID: %s", id);
        return;
    }
    res->json = api__json_service_agent(&s, a->cfg.datacenter);
    res->index = api__record_index(rd, s.modify_index);
}

static int add_agent_check(void *data, const struct zone_check *c)
{
    if (!agent_owns_check(c->check_id))
        return 0;
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
    int rc = api__decode_check_def(a, obj, ar, NULL, 0, 1, true, chk, err);
    json_decref(obj);
    if (rc) {
        api__error(req, decode_status(rc), "%s", err);
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
    api__agent_write(a, req, &cmd, API_REPLY_EMPTY, "ServiceID does not exist");
}

static int own_check(struct api *a, const char *id, struct base_arena *ar, struct zone_check *c)
{
    struct zone_read *rd;
    int rc = zone_read_begin(a->cfg.store, &rd);
    if (rc)
        return rc;
    rc = agent_owns_check(id) ? zone_check_get(rd, a->cfg.node_name, id, ar, c) : -1;
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
    api__agent_write(a, req, &cmd, API_REPLY_EMPTY, NULL);
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
    /* nor does an output-only change within check_update_interval (written later) */
    if (a->cfg.hooks.defer_output &&
        a->cfg.hooks.defer_output(a->cfg.hooks.data, id, c.status != st, st, output)) {
        http_respond(req, 200, NULL, "", 0);
        return;
    }
    api__self_node(a, &cmd.node);
    cmd.check_id = id;
    cmd.status = st;
    cmd.output = output;
    api__agent_write(a, req, &cmd, API_REPLY_EMPTY, "Unknown check ID");
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

/* ---- maintenance mode ------------------------------------------------------------------ */
/* Consul's: a critical check the agent registers (_node_maintenance, or
 * _service_maintenance:<id> on the service) hides the node's or the instance's answers until it
 * is deregistered. It is nobody's probe: the check runner ignores its type. */

#define NODE_MAINT_ID    "_node_maintenance"
#define SERVICE_MAINT_ID "_service_maintenance:"
#define NODE_MAINT_REASON                                                                          \
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default "    \
    "message."
#define SERVICE_MAINT_REASON                                                                       \
    "Maintenance mode is enabled for this service, but no reason was provided. This is a "         \
    "default message."

/* Go's strconv.ParseBool. */
static int parse_go_bool(const char *s, bool *out)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < BASE_ARRAY_LEN(t); i++) {
        if (strcmp(s, t[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, f[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return BASE_EINVAL;
}

/* ?enable= as Consul reads it; answers 400 and returns false when missing or invalid. */
static bool maint_enable(struct http_req *req, bool *enable)
{
    const char *raw = http_req_query(req, "enable");
    if (!raw) {
        api__error(req, 400, "Missing value for enable");
        return false;
    }
    if (parse_go_bool(raw, enable)) {
        api__error(req, 400, "Invalid value for enable: \"%s\"", raw);
        return false;
    }
    return true;
}

/* Registers (enable) or deregisters the maintenance check check_id; either is a no-op when the
 * check already is (or is not) there. svc: the service in maintenance, NULL for the node. */
static void maint_set(struct api *a, struct http_req *req, bool enable, const char *check_id,
                      const char *svc_id, const char *name, const char *def_reason)
{
    struct base_arena *ar = http_req_arena(req);
    struct zone_check cur;
    bool exists = own_check(a, check_id, ar, &cur) == 0;
    if (enable == exists) {
        http_respond(req, 200, NULL, "", 0);
        return;
    }
    struct zone_cmd cmd = {.type = enable ? ZONE_CMD_REGISTER : ZONE_CMD_DEREGISTER};
    api__self_node(a, &cmd.node);
    if (!enable) {
        cmd.check_id = check_id;
        api__agent_write(a, req, &cmd, API_REPLY_EMPTY, NULL);
        return;
    }
    const char *reason = http_req_query(req, "reason");
    struct zone_check *chk = base_arena_alloc(ar, sizeof *chk);
    memset(chk, 0, sizeof *chk);
    chk->node = a->cfg.node_name;
    chk->check_id = check_id;
    chk->name = name;
    chk->status = ZONE_HEALTH_CRITICAL;
    chk->notes = reason && *reason ? reason : def_reason;
    chk->output = "";
    chk->service_id = svc_id ? svc_id : "";
    chk->type = "maintenance";
    if (strlen(chk->notes) > CHECK_OUTPUT_MAX) {
        api__error(req, 400, "Invalid reason: longer than %d bytes", CHECK_OUTPUT_MAX);
        return;
    }
    cmd.skip_node_update = true;
    cmd.checks = chk;
    cmd.n_checks = 1;
    api__agent_write(a, req, &cmd, API_REPLY_EMPTY, "No service registered with that ID");
}

static void node_maintenance(struct api *a, struct http_req *req)
{
    bool enable;
    if (!maint_enable(req, &enable))
        return;
    maint_set(a, req, enable, NODE_MAINT_ID, NULL, "Node Maintenance Mode", NODE_MAINT_REASON);
}

static void service_maintenance(struct api *a, struct http_req *req, const char *id)
{
    bool enable;
    if (!*id) {
        api__error(req, 400, "Missing service ID");
        return;
    }
    if (!maint_enable(req, &enable))
        return;
    if (!own_service_exists(a, id)) {
        api__error(req, 404, "No service registered with ID \"%s\"", id);
        return;
    }
    char *check_id = base_arena_printf(http_req_arena(req), SERVICE_MAINT_ID "%s", id);
    maint_set(a, req, enable, check_id, id, "Service Maintenance Mode", SERVICE_MAINT_REASON);
}

/* ---- /v1/agent/health/service: an instance's health for load balancers --------------- */
/* Consul's AgentHealthServiceByID/ByName: the instance's checks (the node's included), their
 * aggregated status (maintenance when a maintenance check is among them) and the status code a
 * load balancer reads: 200 passing, 429 warning, 503 critical or maintenance, 404 unknown. */

struct inst_health {
    const char *sid;
    json_t *checks;
    bool passing, warning, critical, maint;
};

static int add_inst_check(void *data, const struct zone_check *c)
{
    struct inst_health *h = data;
    if (!agent_owns_check(c->check_id))
        return 0;
    if (*c->service_id && strcmp(c->service_id, h->sid) != 0)
        return 0;
    json_array_append_new(h->checks, api__json_check(c));
    if (strcmp(c->check_id, NODE_MAINT_ID) == 0 ||
        strncmp(c->check_id, SERVICE_MAINT_ID, strlen(SERVICE_MAINT_ID)) == 0)
        h->maint = true;
    else if (c->status == ZONE_HEALTH_PASSING)
        h->passing = true;
    else if (c->status == ZONE_HEALTH_WARNING)
        h->warning = true;
    else
        h->critical = true;
    return 0;
}

/* One instance's AgentServiceChecksInfo; *code gets its status code, *status its text. */
static json_t *inst_health(struct api *a, struct zone_read *rd, struct base_arena *ar,
                           const struct zone_service *s, int *code, const char **status)
{
    struct inst_health h = {.sid = s->id, .checks = json_array()};
    zone_node_checks_each(rd, a->cfg.node_name, ar, add_inst_check, &h);
    *status = h.maint ? "maintenance" : h.critical ? "critical" : h.warning ? "warning" : "passing";
    *code = h.maint || h.critical ? 503 : h.warning ? 429 : 200;
    return json_pack("{s:s,s:o,s:o}", "AggregatedStatus", *status, "Service",
                     api__json_service_agent(s, a->cfg.datacenter), "Checks", h.checks);
}

/* Consul's returnTextPlain: an Accept of text/plain, or ?format=text. */
static bool wants_text(struct http_req *req)
{
    const char *accept = http_req_header(req, "Accept");
    const char *format = http_req_query(req, "format");
    if (accept && strncmp(accept, "text/plain", 10) == 0)
        return true;
    return format && strcmp(format, "text") == 0;
}

static void text_result(struct api_result *res, int code, const char *text)
{
    res->status = code;
    res->raw = text;
    res->raw_len = strlen(text);
    res->raw_set = true;
    res->content_type = "text/plain";
}

static void read_health_by_id(struct api *a, struct http_req *req, struct zone_read *rd,
                              struct base_arena *ar, struct api_result *res)
{
    const char *id = http_req_path(req) + strlen("/v1/agent/health/service/id/");
    struct zone_service s;
    int code;
    const char *status;
    struct zone_meta m;

    res->index = zone_meta_get(rd, &m) ? 0 : m.index;
    if (own_service_get(a, rd, id, ar, &s)) {
        const char *why = base_arena_printf(ar, "ServiceId %s not found", id);
        if (wants_text(req)) {
            text_result(res, 404, why);
            return;
        }
        res->status = 404;
        res->json = json_pack("{s:s,s:n,s:n}", "AggregatedStatus", "critical", "Checks", "Service");
        return;
    }
    json_t *info = inst_health(a, rd, ar, &s, &code, &status);
    if (wants_text(req)) {
        json_decref(info);
        text_result(res, code, status);
        return;
    }
    res->status = code;
    res->json = info;
}

struct by_name {
    struct api *a;
    struct zone_read *rd;
    struct base_arena *ar;
    const char *name;
    json_t *arr;
    int code;
    const char *status;
};

static int add_by_name(void *data, const struct zone_service *s)
{
    struct by_name *b = data;
    int code;
    const char *status;
    if (!agent_owns(s) || base_strcasecmp(s->name, b->name) != 0)
        return 0;
    json_array_append_new(b->arr, inst_health(b->a, b->rd, b->ar, s, &code, &status));
    /* the worst of all: 200 < 429 < 503 (a first instance replaces the 404) */
    if (b->code == 404 || b->code < code) {
        b->code = code;
        b->status = status;
    }
    return 0;
}

static void read_health_by_name(struct api *a, struct http_req *req, struct zone_read *rd,
                                struct base_arena *ar, struct api_result *res)
{
    const char *name = http_req_path(req) + strlen("/v1/agent/health/service/name/");
    struct zone_meta m;
    struct by_name b = {.a = a, .rd = rd, .ar = ar, .name = name, .arr = json_array(), .code = 404};
    b.status = base_arena_printf(ar, "ServiceName %s Not Found", name);
    res->index = zone_meta_get(rd, &m) ? 0 : m.index;
    zone_node_services_each(rd, a->cfg.node_name, ar, add_by_name, &b);
    if (wants_text(req)) {
        json_decref(b.arr);
        text_result(res, b.code, b.status);
        return;
    }
    res->status = b.code;
    res->json = b.arr;
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
    json_t *raft = json_pack("{s:I,s:s,s:I,s:I,s:I,s:I}", "last_contact_ms",
                             (json_int_t)cons_last_contact_ms(a->cfg.cons), "state",
                             cons_is_leader(a->cfg.cons) ? "Leader"
                             : a->cfg.server             ? "Follower"
                                                         : "Client",
                             "term", (json_int_t)cons_term(a->cfg.cons), "last_log_index",
                             (json_int_t)cons_last_index(a->cfg.cons), "applied_index",
                             (json_int_t)(rc ? 0 : m.applied), "catalog_index",
                             (json_int_t)(rc ? 0 : m.index));
    json_t *catalog =
        json_pack("{s:I}", "damaged_reads", (json_int_t)zone_store_damaged_count(a->cfg.store));
    /* blocking queries parked now (waiting for a change): tests wait on it instead of sleeping */
    json_t *http = json_pack("{s:I}", "blocking_queries", (json_int_t)a->n_waiters);
    /* this agent's services and checks and its anti-entropy (admin/local.c) */
    struct api_sync_stats st = {.last_sync_ms_ago = UINT64_MAX, .last_error = ""};
    if (a->cfg.local.stats)
        a->cfg.local.stats(a->cfg.local.data, &st);
    json_t *agent = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:o,s:s}", "services", (json_int_t)st.services, "checks",
        (json_int_t)st.checks, "sync_passes", (json_int_t)st.passes, "sync_failures",
        (json_int_t)st.failures, "sync_repairs", (json_int_t)st.repairs, "last_sync_ms_ago",
        st.last_sync_ms_ago == UINT64_MAX ? json_null()
                                          : json_integer((json_int_t)st.last_sync_ms_ago),
        "last_sync_error", st.last_error);
    res->json =
        json_pack("{s:o,s:o,s:{s:o,s:o,s:o,s:o},s:{}}", "Config", cfg, "Member", member, "Stats",
                  "agent", agent, "raft", raft, "catalog", catalog, "http", http, "Meta");
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
    } else if (strncmp(p, "health/service/id/", 18) == 0) {
        if (!api__method(req, "GET"))
            return true;
        if (!p[18])
            api__error(req, 400, "Missing serviceID");
        else
            api__read_local(a, req,
                            ZONE_TABLE_BIT(ZONE_TABLE_SERVICES) | ZONE_TABLE_BIT(ZONE_TABLE_CHECKS),
                            read_health_by_id);
    } else if (strncmp(p, "health/service/name/", 20) == 0) {
        if (!api__method(req, "GET"))
            return true;
        if (!p[20])
            api__error(req, 400, "Missing service Name");
        else
            api__read_local(a, req,
                            ZONE_TABLE_BIT(ZONE_TABLE_SERVICES) | ZONE_TABLE_BIT(ZONE_TABLE_CHECKS),
                            read_health_by_name);
    } else if (strcmp(p, "maintenance") == 0) {
        if (api__method(req, "PUT"))
            node_maintenance(a, req);
    } else if (strncmp(p, "service/maintenance/", 20) == 0) {
        if (api__method(req, "PUT"))
            service_maintenance(a, req, p + 20);
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
