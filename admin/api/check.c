/* The one decoder of a check's JSON fields, for the three places a check arrives:
 * /v1/agent/check/register, the Check/Checks of a service definition (agent endpoint and
 * config files), and the Check/Checks of /v1/catalog/register.
 *
 * One table says, per field, where it goes and which of the two shapes accepts it. An agent
 * check is a definition the agent runs (TTL, HTTP, TCP, Interval at the top level, Consul's
 * CheckType); a catalog check is a status record (Consul's structs.HealthCheck: Output and
 * Node are its own, the definition sits under "Definition" and is kept for display). Keys
 * match case-insensitively (api__key_is). Fields Consul knows and Herald does not implement
 * are accepted when empty or null, so that clients that always send them keep working, and
 * refused otherwise. What each caller adds after the fields (defaults, the kind of an agent
 * check) stays with the caller. */
#include "internal.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

enum field_kind {
    F_STR,      /* a string into the check */
    F_DUR,      /* a Go duration into the check (ms) */
    F_STATUS,   /* the status name, checked once every field is read */
    F_NODE,     /* catalog: the node, which must be the registration's */
    F_DEF,      /* catalog: the definition object */
    F_IGNORE,   /* read-only or informational: accepted, not kept */
    F_EMPTY_OK, /* not implemented: accepted only when empty */
    F_SCRIPT,   /* script checks: accepted only when empty, with their own message */
    F_ARGS,     /* a script check's argv: a non-empty array of strings */
    F_HEADER,   /* HTTP headers: an object of arrays of strings */
    F_BOOL,     /* a bool into the check */
    F_COUNT,    /* a uint32 counter into the check */
};

enum { AGENT = 1, CATALOG = 2, BOTH = AGENT | CATALOG };

struct field {
    const char *name;
    enum field_kind kind;
    size_t off; /* F_STR, F_DUR: the member of struct zone_check */
    unsigned where;
};

#define STR(m)   F_STR, offsetof(struct zone_check, m)
#define DUR(m)   F_DUR, offsetof(struct zone_check, m)
#define BOOL(m)  F_BOOL, offsetof(struct zone_check, m)
#define COUNT(m) F_COUNT, offsetof(struct zone_check, m)

/* Bounds of what one definition may carry (the whole request is bounded by the HTTP body). */
#define ARGS_MAX    256
#define HEADERS_MAX 64
#define COUNT_MAX   100000

static const struct field fields[] = {
    {"ID", STR(check_id), BOTH},
    {"CheckID", STR(check_id), BOTH},
    {"Name", STR(name), BOTH},
    {"Notes", STR(notes), BOTH},
    {"ServiceID", STR(service_id), BOTH},
    {"Status", F_STATUS, 0, BOTH},
    {"Output", STR(output), CATALOG},
    {"Output", F_IGNORE, 0, AGENT},
    {"TTL", DUR(ttl_ms), AGENT},
    {"HTTP", STR(http), AGENT},
    {"Method", STR(method), AGENT},
    {"TCP", STR(tcp), AGENT},
    {"UDP", STR(udp), AGENT},
    {"Interval", DUR(interval_ms), AGENT},
    {"Timeout", DUR(timeout_ms), AGENT},
    {"DeregisterCriticalServiceAfter", DUR(deregister_after_ms), AGENT},
    {"Node", F_NODE, 0, CATALOG},
    {"Definition", F_DEF, 0, CATALOG},
    {"Node", F_IGNORE, 0, AGENT},
    {"Definition", F_IGNORE, 0, AGENT},
    {"Type", F_IGNORE, 0, BOTH},
    {"ServiceName", F_IGNORE, 0, BOTH},
    {"ServiceTags", F_IGNORE, 0, BOTH},
    {"CreateIndex", F_IGNORE, 0, BOTH},
    {"ModifyIndex", F_IGNORE, 0, BOTH},
    {"Namespace", F_IGNORE, 0, CATALOG},
    {"Partition", F_IGNORE, 0, CATALOG},
    /* a script is argv run directly; Consul's "Script" (a shell line) is not supported */
    {"Script", F_SCRIPT, 0, AGENT},
    {"Args", F_ARGS, 0, AGENT},
    {"ScriptArgs", F_ARGS, 0, AGENT},
    {"DockerContainerID", F_SCRIPT, 0, AGENT},
    {"Shell", F_SCRIPT, 0, AGENT},
    {"TLSSkipVerify", BOOL(tls_skip_verify), AGENT},
    {"Header", F_HEADER, 0, AGENT},
    {"Body", STR(body), AGENT},
    {"OutputMaxSize", F_EMPTY_OK, 0, AGENT},
    {"SuccessBeforePassing", COUNT(success_before_passing), AGENT},
    {"FailuresBeforeCritical", COUNT(failures_before_critical), AGENT},
    {"FailuresBeforeWarning", COUNT(failures_before_warning), AGENT},
    {"GRPC", F_EMPTY_OK, 0, AGENT},
    {"GRPCUseTLS", F_EMPTY_OK, 0, AGENT},
    {"AliasNode", F_EMPTY_OK, 0, AGENT},
    {"AliasService", F_EMPTY_OK, 0, AGENT},
    {"H2PING", F_EMPTY_OK, 0, AGENT},
    {"TLSServerName", F_EMPTY_OK, 0, AGENT},
    {"Token", F_EMPTY_OK, 0, AGENT},
    {"Namespace", F_EMPTY_OK, 0, AGENT},
    {"Partition", F_EMPTY_OK, 0, AGENT},
};

/* A catalog check's Definition: the same definition fields, kept for display. */
static const struct field def_fields[] = {
    {"HTTP", STR(http), CATALOG},
    {"TCP", STR(tcp), CATALOG},
    {"Interval", DUR(interval_ms), CATALOG},
    {"Timeout", DUR(timeout_ms), CATALOG},
    {"DeregisterCriticalServiceAfter", DUR(deregister_after_ms), CATALOG},
    {"Method", F_IGNORE, 0, CATALOG},
    {"Header", F_IGNORE, 0, CATALOG},
    {"TLSSkipVerify", F_IGNORE, 0, CATALOG},
    {"Body", F_IGNORE, 0, CATALOG},
    {"UDP", STR(udp), CATALOG},
    /* a catalog check is a record nobody runs: a script's argv is not kept */
    {"ScriptArgs", F_IGNORE, 0, CATALOG},
    {"Args", F_IGNORE, 0, CATALOG},
    {"SuccessBeforePassing", F_IGNORE, 0, CATALOG},
    {"FailuresBeforeWarning", F_IGNORE, 0, CATALOG},
    {"FailuresBeforeCritical", F_IGNORE, 0, CATALOG},
};

#undef STR
#undef DUR
#undef BOOL
#undef COUNT

static int get_args(json_t *v, const char *name, struct base_arena *ar, struct zone_check *chk,
                    char *errmsg)
{
    if (json_is_null(v) || (json_is_array(v) && json_array_size(v) == 0))
        return 0; /* clients that always send the field: no script */
    if (!json_is_array(v) || json_array_size(v) > ARGS_MAX)
        return base_errf(errmsg, BASE_EINVAL,
                         "Request decode failed: field \"%s\": expected an array of 1 to %d "
                         "strings",
                         name, ARGS_MAX);
    size_t n = json_array_size(v);
    const char **args = base_arena_alloc(ar, n * sizeof *args);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e))
            return base_errf(errmsg, BASE_EINVAL,
                             "Request decode failed: field \"%s\": element %zu is not a string "
                             "without NUL bytes",
                             name, i);
        args[i] = base_arena_strdup(ar, json_string_value(e));
    }
    if (!*args[0])
        return base_errf(errmsg, BASE_EINVAL,
                         "Request decode failed: field \"%s\": the program (element 0) is empty",
                         name);
    chk->args = args;
    chk->n_args = n;
    return 0;
}

/* Consul's Header: map[string][]string. One pair per value, in order. */
static int get_header(json_t *v, const char *name, struct base_arena *ar, struct zone_check *chk,
                      char *errmsg)
{
    const char *k;
    json_t *vals;
    size_t n = 0, i = 0;

    if (json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return base_errf(errmsg, BASE_EINVAL,
                         "Request decode failed: field \"%s\": expected an object of arrays of "
                         "strings",
                         name);
    json_object_foreach(v, k, vals)
    {
        if (!json_is_array(vals))
            return base_errf(errmsg, BASE_EINVAL,
                             "Request decode failed: field \"%s.%s\": expected an array of "
                             "strings",
                             name, k);
        n += json_array_size(vals);
    }
    if (n > HEADERS_MAX)
        return base_errf(errmsg, BASE_EINVAL, "Invalid check: more than %d header values in %s",
                         HEADERS_MAX, name);
    struct zone_pair *p = base_arena_alloc(ar, (n ? n : 1) * sizeof *p);
    json_object_foreach(v, k, vals)
    {
        /* a header name is a token (RFC 9110 5.6.2); values carry no line breaks */
        if (!*k || strcspn(k, "()<>@,;:\\\"/[]?={} \t\r\n") != strlen(k))
            return base_errf(errmsg, BASE_EINVAL, "Invalid check: header name \"%s\" in %s", k,
                             name);
        for (size_t j = 0; j < json_array_size(vals); j++) {
            json_t *e = json_array_get(vals, j);
            if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e) ||
                strpbrk(json_string_value(e), "\r\n"))
                return base_errf(errmsg, BASE_EINVAL,
                                 "Invalid check: header \"%s\" in %s: values must be strings "
                                 "without line breaks",
                                 k, name);
            p[i].key = base_arena_strdup(ar, k);
            p[i].value = base_arena_strdup(ar, json_string_value(e));
            i++;
        }
    }
    chk->header = p;
    chk->n_header = i;
    return 0;
}

static const struct field *field_find(const struct field *t, size_t n, const char *key,
                                      unsigned where)
{
    for (size_t i = 0; i < n; i++)
        if ((t[i].where & where) && api__key_is(key, t[i].name))
            return &t[i];
    return NULL;
}

bool api__empty_value(json_t *v)
{
    return json_is_null(v) || (json_is_object(v) && json_object_size(v) == 0) ||
           (json_is_string(v) && !*json_string_value(v)) ||
           (json_is_array(v) && json_array_size(v) == 0) || json_is_false(v);
}

static int decode_fields(json_t *obj, const struct field *t, size_t n, unsigned where,
                         const char *prefix, const char *node, struct base_arena *ar,
                         struct zone_check *chk, const char **status, char *errmsg)
{
    const char *k;
    json_t *v;

    json_object_foreach(obj, k, v)
    {
        const struct field *f = field_find(t, n, k, where);
        char name[96];
        const char *node_given;
        int rc = 0;

        if (!f)
            return api__unknown_field(k, errmsg);
        snprintf(name, sizeof name, "%s%s", prefix, k);
        switch (f->kind) {
        case F_STR:
            rc = api__get_str(v, name, ar, (const char **)((char *)chk + f->off), errmsg);
            break;
        case F_DUR:
            rc = api__get_duration(v, name, (uint64_t *)((char *)chk + f->off), errmsg);
            break;
        case F_STATUS:
            rc = api__get_str(v, name, ar, status, errmsg);
            break;
        case F_NODE:
            rc = api__get_str(v, name, ar, &node_given, errmsg);
            if (!rc && *node_given && base_strcasecmp(node_given, node) != 0)
                return base_errf(errmsg, BASE_EINVAL, "Check node \"%s\" does not match \"%s\"",
                                 node_given, node);
            break;
        case F_DEF:
            if (json_is_null(v))
                break;
            if (!json_is_object(v))
                return base_errf(errmsg, BASE_EINVAL,
                                 "Request decode failed: field \"%s\": expected an object", name);
            rc = decode_fields(v, def_fields, BASE_ARRAY_LEN(def_fields), where, "Definition.",
                               node, ar, chk, status, errmsg);
            break;
        case F_BOOL:
            rc = api__get_bool(v, name, (bool *)((char *)chk + f->off), errmsg);
            break;
        case F_COUNT: {
            uint64_t x;
            rc = api__get_uint(v, name, COUNT_MAX, &x, errmsg);
            *(uint32_t *)((char *)chk + f->off) = (uint32_t)x;
            break;
        }
        case F_ARGS:
            rc = get_args(v, name, ar, chk, errmsg);
            break;
        case F_HEADER:
            rc = get_header(v, name, ar, chk, errmsg);
            break;
        case F_IGNORE:
            break;
        case F_EMPTY_OK:
            if (!api__empty_value(v))
                return base_errf(errmsg, BASE_EINVAL,
                                 "Check field \"%s\" is not supported by Herald", k);
            break;
        case F_SCRIPT:
            if (!api__empty_value(v))
                return base_errf(errmsg, BASE_EINVAL,
                                 "Check field \"%s\" is not supported by Herald: a script check "
                                 "is Args, run without a shell",
                                 k);
            break;
        }
        if (rc)
            return rc;
    }
    return 0;
}

int api__decode_check(json_t *obj, const char *catalog_node, struct base_arena *ar,
                      struct zone_check *chk, char *errmsg)
{
    const char *status = NULL;
    unsigned where = catalog_node ? CATALOG : AGENT;

    if (!json_is_object(obj))
        return base_errf(errmsg, BASE_EINVAL, "Request decode failed: %s must be an object",
                         catalog_node ? "Check" : "check");
    memset(chk, 0, sizeof *chk);
    chk->status = ZONE_HEALTH_CRITICAL; /* Consul: critical until proven otherwise */
    int rc = decode_fields(obj, fields, BASE_ARRAY_LEN(fields), where, "", catalog_node, ar, chk,
                           &status, errmsg);
    if (rc)
        return rc;
    if (status && *status && zone_health_parse(status, &chk->status))
        return base_errf(errmsg, BASE_EINVAL, "Invalid check status: \"%s\"", status);
    return 0;
}
