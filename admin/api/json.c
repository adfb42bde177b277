/* JSON in and out: strict field helpers that name the offending field, and the Consul shapes
 * of nodes, services and checks.
 *
 * Field names match the way Consul's decoder matches them: case-insensitively, and with
 * underscores ignored, so "Name", "name", "EnableTagOverride", "enabletagoverride" and
 * "enable_tag_override" are one field (python-consul sends lowercase keys; config files use
 * snake_case). Any other key is an error, as DESIGN.md 1.3 asks. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

bool api__key_is(const char *key, const char *name)
{
    const char *k = key, *n = name;
    for (;;) {
        while (*k == '_')
            k++;
        while (*n == '_')
            n++;
        char ck = *k >= 'A' && *k <= 'Z' ? (char)(*k + 32) : *k;
        char cn = *n >= 'A' && *n <= 'Z' ? (char)(*n + 32) : *n;
        if (ck != cn)
            return false;
        if (!ck)
            return true;
        k++;
        n++;
    }
}

json_t *api__json_field(json_t *obj, const char *name)
{
    const char *k;
    json_t *v, *last = NULL;
    json_object_foreach(obj, k, v)
    {
        if (api__key_is(k, name))
            last = v; /* "Address" then "address": the last one wins, as in Go */
    }
    return last;
}

int api__unknown_field(const char *key, char *errmsg)
{
    return base_errf(errmsg, BASE_EINVAL, "Request decode failed: unknown field \"%s\"", key);
}

static const char *type_name(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "bool";
    default:
        return "null";
    }
}

static int type_err(json_t *v, const char *field, const char *want, char *errmsg)
{
    return base_errf(errmsg, BASE_EINVAL,
                     "Request decode failed: field \"%s\": expected %s, got %s", field, want,
                     type_name(v));
}

int api__get_str(json_t *v, const char *field, struct base_arena *ar, const char **out,
                 char *errmsg)
{
    if (json_is_null(v)) {
        *out = "";
        return 0;
    }
    if (!json_is_string(v))
        return type_err(v, field, "a string", errmsg);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return base_errf(errmsg, BASE_EINVAL, "Request decode failed: field \"%s\": NUL byte",
                         field);
    *out = base_arena_strdup(ar, json_string_value(v));
    return 0;
}

int api__get_bool(json_t *v, const char *field, bool *out, char *errmsg)
{
    if (json_is_null(v)) {
        *out = false;
        return 0;
    }
    if (!json_is_boolean(v))
        return type_err(v, field, "a bool", errmsg);
    *out = json_is_true(v);
    return 0;
}

int api__get_uint(json_t *v, const char *field, uint64_t max, uint64_t *out, char *errmsg)
{
    if (json_is_null(v)) {
        *out = 0;
        return 0;
    }
    if (!json_is_integer(v))
        return type_err(v, field, "an integer", errmsg);
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x > max)
        return base_errf(errmsg, BASE_EINVAL,
                         "Request decode failed: field \"%s\": %lld out of range 0..%llu", field,
                         (long long)x, (unsigned long long)max);
    *out = (uint64_t)x;
    return 0;
}

int api__get_strlist(json_t *v, const char *field, struct base_arena *ar, const char ***out,
                     size_t *n, char *errmsg)
{
    *out = NULL;
    *n = 0;
    if (json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return type_err(v, field, "an array of strings", errmsg);
    size_t len = json_array_size(v);
    const char **arr = base_arena_alloc(ar, (len ? len : 1) * sizeof *arr);
    for (size_t i = 0; i < len; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e))
            return type_err(e, field, "an array of strings", errmsg);
        arr[i] = base_arena_strdup(ar, json_string_value(e));
    }
    *out = arr;
    *n = len;
    return 0;
}

int api__get_strmap(json_t *v, const char *field, struct base_arena *ar, struct zone_pair **out,
                    size_t *n, char *errmsg)
{
    const char *k;
    json_t *e;
    size_t i = 0;

    *out = NULL;
    *n = 0;
    if (json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return type_err(v, field, "an object of strings", errmsg);
    struct zone_pair *p = base_arena_alloc(ar, (json_object_size(v) + 1) * sizeof *p);
    json_object_foreach(v, k, e)
    {
        if (!json_is_string(e))
            return base_errf(errmsg, BASE_EINVAL,
                             "Request decode failed: field \"%s.%s\": expected a string, got %s",
                             field, k, type_name(e));
        if (!*k)
            return base_errf(errmsg, BASE_EINVAL, "Request decode failed: field \"%s\": empty key",
                             field);
        p[i].key = base_arena_strdup(ar, k);
        p[i].value = base_arena_strdup(ar, json_string_value(e));
        i++;
    }
    *out = p;
    *n = i;
    return 0;
}

int api__get_duration(json_t *v, const char *field, uint64_t *ms, char *errmsg)
{
    if (json_is_null(v)) {
        *ms = 0;
        return 0;
    }
    if (json_is_integer(v)) { /* Go marshals time.Duration as nanoseconds */
        json_int_t ns = json_integer_value(v);
        if (ns < 0)
            return base_errf(errmsg, BASE_EINVAL,
                             "Request decode failed: field \"%s\": negative duration", field);
        *ms = (uint64_t)ns / 1000000 + ((uint64_t)ns % 1000000 ? 1 : 0);
        return 0;
    }
    if (!json_is_string(v))
        return type_err(v, field, "a duration string such as \"10s\"", errmsg);
    const char *s = json_string_value(v);
    if (!*s) {
        *ms = 0;
        return 0;
    }
    if (base_duration_parse(s, ms))
        return base_errf(errmsg, BASE_EINVAL,
                         "Request decode failed: field \"%s\": invalid duration \"%s\"", field, s);
    return 0;
}

json_t *api__parse_body(struct http_req *req, char *errmsg)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    json_error_t jerr;

    if (len == 0) {
        base_errf(errmsg, BASE_EINVAL, "Request decode failed: empty body");
        return NULL;
    }
    /* Duplicate keys: the last value wins, as with Go's decoder (no JSON_REJECT_DUPLICATES). */
    json_t *v = json_loadb(body, len, 0, &jerr);
    if (!v) {
        base_errf(errmsg, BASE_EINVAL, "Request decode failed: %s (line %d, column %d)", jerr.text,
                  jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(v)) {
        base_errf(errmsg, BASE_EINVAL, "Request decode failed: expected a JSON object, got %s",
                  type_name(v));
        json_decref(v);
        return NULL;
    }
    return v;
}

/* ---- output ---------------------------------------------------------------------------- */

static json_t *jstr(const char *s)
{
    json_t *v = json_string(s ? s : "");
    return v ? v : json_string(""); /* stored strings are validated UTF-8; be safe anyway */
}

json_t *api__json_strmap(const struct zone_pair *p, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(o, p[i].key, jstr(p[i].value));
    return o;
}

json_t *api__json_strlist(const char *const *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, jstr(s[i]));
    return a;
}

json_t *api__json_node(const struct zone_node *n)
{
    json_t *o = json_object();
    json_object_set_new(o, "ID", jstr(n->id));
    json_object_set_new(o, "Node", jstr(n->name));
    json_object_set_new(o, "Address", jstr(n->address));
    json_object_set_new(o, "Datacenter", jstr(n->datacenter));
    json_object_set_new(o, "TaggedAddresses",
                        api__json_strmap(n->tagged_addresses, n->n_tagged_addresses));
    json_object_set_new(o, "Meta", api__json_strmap(n->meta, n->n_meta));
    json_object_set_new(o, "CreateIndex", json_integer((json_int_t)n->create_index));
    json_object_set_new(o, "ModifyIndex", json_integer((json_int_t)n->modify_index));
    return o;
}

static json_t *json_weights(const struct zone_service *s)
{
    return json_pack("{s:I,s:I}", "Passing", (json_int_t)s->weight_passing, "Warning",
                     (json_int_t)s->weight_warning);
}

json_t *api__json_service_agent(const struct zone_service *s, const char *datacenter)
{
    json_t *o = json_object();
    json_object_set_new(o, "Kind", jstr(s->kind));
    json_object_set_new(o, "ID", jstr(s->id));
    json_object_set_new(o, "Service", jstr(s->name));
    json_object_set_new(o, "Tags", api__json_strlist(s->tags, s->n_tags));
    json_object_set_new(o, "Meta", api__json_strmap(s->meta, s->n_meta));
    json_object_set_new(o, "Port", json_integer(s->port));
    json_object_set_new(o, "Address", jstr(s->address));
    json_object_set_new(o, "TaggedAddresses",
                        api__json_strmap(s->tagged_addresses, s->n_tagged_addresses));
    json_object_set_new(o, "Weights", json_weights(s));
    json_object_set_new(o, "EnableTagOverride", json_boolean(s->enable_tag_override));
    if (datacenter)
        json_object_set_new(o, "Datacenter", jstr(datacenter));
    json_object_set_new(o, "CreateIndex", json_integer((json_int_t)s->create_index));
    json_object_set_new(o, "ModifyIndex", json_integer((json_int_t)s->modify_index));
    return o;
}

json_t *api__json_service_catalog(const struct zone_node *n, const struct zone_service *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "ID", jstr(n->id));
    json_object_set_new(o, "Node", jstr(n->name));
    json_object_set_new(o, "Address", jstr(n->address));
    json_object_set_new(o, "Datacenter", jstr(n->datacenter));
    json_object_set_new(o, "TaggedAddresses",
                        api__json_strmap(n->tagged_addresses, n->n_tagged_addresses));
    json_object_set_new(o, "NodeMeta", api__json_strmap(n->meta, n->n_meta));
    json_object_set_new(o, "ServiceKind", jstr(s->kind));
    json_object_set_new(o, "ServiceID", jstr(s->id));
    json_object_set_new(o, "ServiceName", jstr(s->name));
    json_object_set_new(o, "ServiceTags", api__json_strlist(s->tags, s->n_tags));
    json_object_set_new(o, "ServiceAddress", jstr(s->address));
    json_object_set_new(o, "ServiceTaggedAddresses",
                        api__json_strmap(s->tagged_addresses, s->n_tagged_addresses));
    json_object_set_new(o, "ServiceWeights", json_weights(s));
    json_object_set_new(o, "ServiceMeta", api__json_strmap(s->meta, s->n_meta));
    json_object_set_new(o, "ServicePort", json_integer(s->port));
    json_object_set_new(o, "ServiceEnableTagOverride", json_boolean(s->enable_tag_override));
    json_object_set_new(o, "CreateIndex", json_integer((json_int_t)s->create_index));
    json_object_set_new(o, "ModifyIndex", json_integer((json_int_t)s->modify_index));
    return o;
}

static json_t *json_duration(uint64_t ms)
{
    char buf[32];
    if (ms == 0)
        return json_string("0s");
    if (ms % 1000 == 0)
        snprintf(buf, sizeof buf, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(buf, sizeof buf, "%llums", (unsigned long long)ms);
    return json_string(buf);
}

json_t *api__json_check(const struct zone_check *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "Node", jstr(c->node));
    json_object_set_new(o, "CheckID", jstr(c->check_id));
    json_object_set_new(o, "Name", jstr(c->name));
    json_object_set_new(o, "Status", jstr(zone_health_name(c->status)));
    json_object_set_new(o, "Notes", jstr(c->notes));
    json_object_set_new(o, "Output", jstr(c->output));
    json_object_set_new(o, "ServiceID", jstr(c->service_id));
    json_object_set_new(o, "ServiceName", jstr(c->service_name));
    json_object_set_new(o, "ServiceTags", api__json_strlist(c->service_tags, c->n_service_tags));
    json_object_set_new(o, "Type", jstr(c->type));
    json_t *def = json_object();
    if (c->http && *c->http) {
        json_object_set_new(def, "HTTP", jstr(c->http));
        json_object_set_new(def, "Method", jstr(c->method));
    }
    if (c->tcp && *c->tcp)
        json_object_set_new(def, "TCP", jstr(c->tcp));
    if (c->interval_ms)
        json_object_set_new(def, "Interval", json_duration(c->interval_ms));
    if (c->timeout_ms)
        json_object_set_new(def, "Timeout", json_duration(c->timeout_ms));
    if (c->ttl_ms)
        json_object_set_new(def, "TTL", json_duration(c->ttl_ms));
    if (c->deregister_after_ms)
        json_object_set_new(def, "DeregisterCriticalServiceAfter",
                            json_duration(c->deregister_after_ms));
    json_object_set_new(o, "Definition", def);
    json_object_set_new(o, "CreateIndex", json_integer((json_int_t)c->create_index));
    json_object_set_new(o, "ModifyIndex", json_integer((json_int_t)c->modify_index));
    return o;
}
