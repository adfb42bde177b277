/* /v1/health: service instances with their node and checks, and check listings. */
#include "internal.h"

#include <string.h>

/* "?passing" alone or with a true value filters; "?passing=false" (or 0) does not. */
static bool query_flag(struct http_req *req, const char *name)
{
    const char *v = http_req_query(req, name);
    if (!v)
        return false;
    return !(strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcmp(v, "False") == 0);
}

struct inst_ctx {
    struct zone_read *rd;
    struct base_arena *ar;
    const char *tag;
    bool passing;
    struct api_list out;
};

struct checks_ctx {
    json_t *arr;
    const char *service_id;
    bool node_only;
    enum zone_health worst;
};

static int add_instance_check(void *data, const struct zone_check *c)
{
    struct checks_ctx *cc = data;
    if (c->service_id[0] && strcmp(c->service_id, cc->service_id) != 0)
        return 0;
    if (c->status > cc->worst)
        cc->worst = c->status;
    json_array_append_new(cc->arr, api__json_check(c));
    return 0;
}

static int add_instance(void *data, const struct zone_service *s)
{
    struct inst_ctx *c = data;
    struct zone_node n;
    if (c->tag) {
        bool found = false;
        for (size_t i = 0; i < s->n_tags && !found; i++)
            found = base_strcasecmp(s->tags[i], c->tag) == 0;
        if (!found)
            return 0;
    }
    if (zone_node_get(c->rd, s->node, c->ar, &n))
        return 0;
    struct checks_ctx cc = {json_array(), s->id, false, ZONE_HEALTH_PASSING};
    zone_node_checks_each(c->rd, s->node, c->ar, add_instance_check, &cc);
    if (c->passing && cc.worst != ZONE_HEALTH_PASSING) {
        json_decref(cc.arr);
        return 0;
    }
    json_t *svc = api__json_service_agent(s, NULL);
    api__list_add(&c->out, json_pack("{s:o,s:o,s:o}", "Node", api__json_node(&n), "Service", svc,
                                     "Checks", cc.arr));
    return 0;
}

static void read_service(struct api *a, struct http_req *req, struct zone_read *rd,
                         struct base_arena *ar, struct api_result *res)
{
    const char *name = http_req_path(req) + strlen("/v1/health/service/");
    struct inst_ctx c = {rd, ar, http_req_query(req, "tag"), query_flag(req, "passing"), {0}};
    BASE_UNUSED(a);
    if (api__probe_tables(rd, API_TABLES_HEALTH, res))
        return;
    api__list_init(&c.out, req);
    zone_service_instances_each(rd, name, ar, add_instance, &c);
    api__list_finish(&c.out, res);
}

static int add_check(void *data, const struct zone_check *c)
{
    api__list_add(data, api__json_check(c));
    return 0;
}

static void read_node(struct api *a, struct http_req *req, struct zone_read *rd,
                      struct base_arena *ar, struct api_result *res)
{
    const char *name = http_req_path(req) + strlen("/v1/health/node/");
    BASE_UNUSED(a);
    if (api__probe_tables(rd, API_TABLES_HEALTH, res))
        return;
    struct api_list l;
    api__list_init(&l, req);
    zone_node_checks_each(rd, name, ar, add_check, &l);
    api__list_finish(&l, res);
}

struct filter_ctx {
    const char *service; /* by service name, case-insensitive */
    bool any;
    enum zone_health state;
    struct api_list out;
};

static int add_filtered(void *data, const struct zone_check *c)
{
    struct filter_ctx *f = data;
    if (f->service && base_strcasecmp(c->service_name, f->service) != 0)
        return 0;
    if (!f->service && !f->any && c->status != f->state)
        return 0;
    api__list_add(&f->out, api__json_check(c));
    return 0;
}

/* Every check that f keeps, as a list (or the index alone for a probe). */
static void list_filtered(struct filter_ctx *f, struct http_req *req, struct zone_read *rd,
                          struct base_arena *ar, struct api_result *res)
{
    if (api__probe_tables(rd, API_TABLES_HEALTH, res))
        return;
    api__list_init(&f->out, req);
    zone_checks_each(rd, ar, add_filtered, f);
    api__list_finish(&f->out, res);
}

static void read_checks(struct api *a, struct http_req *req, struct zone_read *rd,
                        struct base_arena *ar, struct api_result *res)
{
    struct filter_ctx f = {http_req_path(req) + strlen("/v1/health/checks/"), true, 0, {0}};
    BASE_UNUSED(a);
    list_filtered(&f, req, rd, ar, res);
}

static void read_state(struct api *a, struct http_req *req, struct zone_read *rd,
                       struct base_arena *ar, struct api_result *res)
{
    const char *state = http_req_path(req) + strlen("/v1/health/state/");
    struct filter_ctx f = {NULL, strcmp(state, "any") == 0, 0, {0}};
    BASE_UNUSED(a);
    if (!f.any && zone_health_parse(state, &f.state)) {
        res->status = 400;
        res->error = "Invalid check state";
        return;
    }
    list_filtered(&f, req, rd, ar, res);
}

bool api__health_route(struct api *a, struct http_req *req, const char *path)
{
    static const struct {
        const char *prefix;
        api_read_fn fn;
        const char *missing;
    } routes[] = {
        {"/v1/health/service/", read_service, "Missing service name"},
        {"/v1/health/node/", read_node, "Missing node name"},
        {"/v1/health/checks/", read_checks, "Missing service name"},
        {"/v1/health/state/", read_state, "Missing check state"},
    };
    for (size_t i = 0; i < BASE_ARRAY_LEN(routes); i++) {
        size_t n = strlen(routes[i].prefix);
        if (strncmp(path, routes[i].prefix, n) != 0)
            continue;
        if (api__get_named(req, path + n, routes[i].missing))
            api__read_list(a, req, API_TABLES_HEALTH, routes[i].fn);
        return true;
    }
    return false;
}
