/* Agent configuration: Consul's JSON config keys (from -config-file and -config-dir, in the
 * order given; files of a directory in name order) and then the flags, which win.
 * Any unknown key or flag, or a bad value, is an error that names it.
 *
 * Every option is one row of the table below: its flag, its JSON key, its type and range,
 * its default and its field. The flags, the JSON decoder, the defaults, validation, freeing
 * and `herald agent -h` all read that table; the few rules that tie options together
 * (-dev and -server, bootstrap_expect and retry_join, recursion mode and its keys) are the
 * explicit checks at the end of validate(). */
#include "internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <ifaddrs.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void adm_strv_push(struct adm_strv *s, const char *x)
{
    s->v = base_realloc(s->v, (s->n + 1) * sizeof *s->v);
    s->v[s->n++] = base_strdup(x);
}

void adm_strv_free(struct adm_strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        base_free(s->v[i]);
    base_free(s->v);
    s->v = NULL;
    s->n = 0;
}

static int load_json(const char *file, struct adm_config *c, char *err);
static int load_dir(const char *dir, struct adm_config *c, char *err);
static int json_services(json_t *v, const char *key, const char *file, struct adm_config *c,
                         char *err);
static int json_service_ttl(json_t *v, const char *key, const char *file, struct adm_config *c,
                            char *err);
static int json_checks(json_t *v, const char *key, const char *file, struct adm_config *c,
                       char *err);

/* ---- the table ------------------------------------------------------------------------- */

/* How to add an option: add one row (and its field to struct adm_config in internal.h).
 *   {"flag-name", "json.key.path", ADM_OPT_<type>, ADM_OPT_AT(field), .def = ..., ...}
 * - flag: Consul's flag name without the dash, or NULL for a config-file-only key; key: the
 *   JSON key, with dots for nesting ("limits.http_max_conns" is {"limits": {...}}; the
 *   enclosing objects need no row), or NULL for a flag-only option.
 * - type (enum adm_opt_type in internal.h) decides how a flag's text and a JSON value are
 *   read, what the errors say the option takes, and what validation checks once files and
 *   flags are merged. .min/.max bound numbers (checked wherever the value comes from), .def
 *   or .def_str is the default (0 and NULL need nothing).
 * - Nothing else: the flag, the key, the default, the range, the error messages naming the
 *   option, freeing, `herald agent -h` and tests/unit/admin/test_options.c (which loads each
 *   row both ways) follow from the row. A rule between two options goes to validate(). */
static const char *const recursion_names[] = {"forward", "iterative", NULL};
static const char *const log_names[] = {"err", "warn", "info", "debug", "trace", NULL};

const struct adm_option adm_options[] = {
    {"config-file", NULL, ADM_OPT_CONFIG, .load = load_json},
    {"config-dir", NULL, ADM_OPT_CONFIG, .load = load_dir},
    {"dev", NULL, ADM_OPT_BOOL, ADM_OPT_AT(dev)},
    {"server", "server", ADM_OPT_BOOL, ADM_OPT_AT(server)},
    {"bootstrap-expect", "bootstrap_expect", ADM_OPT_UINT, ADM_OPT_AT(bootstrap_expect), .max = 9},
    {"data-dir", "data_dir", ADM_OPT_STRING, ADM_OPT_AT(data_dir)},
    /* default: the host name up to its first dot (defaults()) */
    {"node", "node_name", ADM_OPT_LABEL, ADM_OPT_AT(node_name)},
    {"datacenter", "datacenter", ADM_OPT_LABEL, ADM_OPT_AT(datacenter), .def_str = "dc1"},
    /* bind: default 127.0.0.1 with -dev, else 0.0.0.0; advertise: default the bind address,
     * 127.0.0.1 for a wildcard one (validate()) */
    {"bind", "bind_addr", ADM_OPT_ADDR, ADM_OPT_AT(bind_addr)},
    {"advertise", "advertise_addr", ADM_OPT_ADDR, ADM_OPT_AT(advertise_addr)},
    {"client", "client_addr", ADM_OPT_ADDR, ADM_OPT_AT(client_addr), .def_str = "127.0.0.1"},
    {NULL, "addresses.http", ADM_OPT_ADDR, ADM_OPT_AT(http_addr)}, /* default client_addr */
    {NULL, "addresses.dns", ADM_OPT_ADDR, ADM_OPT_AT(dns_addr)},   /* default client_addr */
    {"http-port", "ports.http", ADM_OPT_PORT, ADM_OPT_AT(http_port), .def = 8500},
    {"dns-port", "ports.dns", ADM_OPT_PORT, ADM_OPT_AT(dns_port), .def = 8600},
    {"server-port", "ports.server", ADM_OPT_PORT, ADM_OPT_AT(server_port), .def = 8300},
    {"serf-lan-port", "ports.serf_lan", ADM_OPT_PORT, ADM_OPT_AT(serf_lan_port), .def = 8301},
    /* the LAN gossip pool: bind address (default bind_addr), members to join (their gossip
     * address: host, ip, ip:port or [v6]:port; a bare one gets our -serf-lan-port), how often
     * and how many times a join is tried (0: until it succeeds) */
    {"serf-lan-bind", "serf_lan", ADM_OPT_ADDR, ADM_OPT_AT(serf_lan_addr)},
    {"retry-join", "retry_join", ADM_OPT_LIST, ADM_OPT_AT(retry_join)},
    {"join", NULL, ADM_OPT_LIST, ADM_OPT_AT(retry_join)},
    {"retry-interval", "retry_interval", ADM_OPT_DURATION, ADM_OPT_AT(retry_interval_ms),
     .min = 100, .def = 30000},
    {"retry-max", "retry_max", ADM_OPT_UINT, ADM_OPT_AT(retry_max), .max = 1000000},
    /* a restarted agent rejoins the members of its snapshot (DATA/serf), even after it left */
    {"rejoin", "rejoin_after_leave", ADM_OPT_BOOL, ADM_OPT_AT(rejoin_after_leave)},
    /* a failed member is reaped (and deregistered) after this; Consul's minimum is 8h */
    {NULL, "reconnect_timeout", ADM_OPT_DURATION, ADM_OPT_AT(reconnect_timeout_ms),
     .min = 8ull * 3600 * 1000, .def = 72ull * 3600 * 1000},
    /* the leader reconciles the whole pool into the catalog this often (Consul: a constant
     * 60s, ReconcileInterval) */
    {NULL, "reconcile_interval", ADM_OPT_DURATION, ADM_OPT_AT(reconcile_interval_ms), .min = 100,
     .max = 3600000, .def = 60000},
    /* anti-entropy (local.c): a full sync of this agent's services and checks this often,
     * before Consul's scaling with the pool's size (Consul: 1 minute, ae_interval) */
    {NULL, "ae_interval", ADM_OPT_DURATION, ADM_OPT_AT(ae_interval_ms), .min = 100, .max = 3600000,
     .def = 60000},
    /* a check whose status did not change writes its new output at most this often (Consul's
     * check_update_interval; 0: every change) */
    {NULL, "check_update_interval", ADM_OPT_DURATION, ADM_OPT_AT(check_update_interval_ms),
     .max = 24ull * 3600 * 1000, .def = 300000},
    /* defaults: leave on SIGTERM for a client, never on SIGINT for a server (validate()) */
    {NULL, "leave_on_terminate", ADM_OPT_BOOL, ADM_OPT_AT(leave_on_terminate),
     .given = offsetof(struct adm_config, leave_on_terminate_set)},
    {NULL, "skip_leave_on_interrupt", ADM_OPT_BOOL, ADM_OPT_AT(skip_leave_on_interrupt),
     .given = offsetof(struct adm_config, skip_leave_on_interrupt_set)},
    /* gossip timings (Consul's gossip_lan); 0: gossip's own LAN defaults (gossip.h) */
    {NULL, "gossip_lan.gossip_nodes", ADM_OPT_UINT, ADM_OPT_AT(gossip_lan.gossip_nodes), .min = 1,
     .max = 64},
    {NULL, "gossip_lan.gossip_interval", ADM_OPT_DURATION,
     ADM_OPT_AT(gossip_lan.gossip_interval_ms), .min = 1, .max = 60000},
    {NULL, "gossip_lan.probe_interval", ADM_OPT_DURATION, ADM_OPT_AT(gossip_lan.probe_interval_ms),
     .min = 1, .max = 600000},
    {NULL, "gossip_lan.probe_timeout", ADM_OPT_DURATION, ADM_OPT_AT(gossip_lan.probe_timeout_ms),
     .min = 1, .max = 600000},
    {NULL, "gossip_lan.retransmit_mult", ADM_OPT_UINT, ADM_OPT_AT(gossip_lan.retransmit_mult),
     .min = 1, .max = 100},
    {NULL, "gossip_lan.suspicion_mult", ADM_OPT_UINT, ADM_OPT_AT(gossip_lan.suspicion_mult),
     .min = 1, .max = 100},
    /* the cluster key: base64 of 16, 24 or 32 bytes, decoded into key by validate(); it keys
     * the gossip pool (memberlist's AES-GCM) and proves membership on the server port */
    {"encrypt", "encrypt", ADM_OPT_STRING, ADM_OPT_AT(encrypt)},
    {"join-allow", "join_allow", ADM_OPT_NETS, ADM_OPT_AT(join_allow)},
    {"domain", "domain", ADM_OPT_DOMAIN, ADM_OPT_AT(domain), .def_str = "consul."},
    {"alt-domain", "alt_domain", ADM_OPT_DOMAIN, ADM_OPT_AT(alt_domain)},
    {"log-level", "log_level", ADM_OPT_LOG_LEVEL, ADM_OPT_AT(log_level), .def = BASE_LOG_INFO,
     .names = log_names, .given = offsetof(struct adm_config, log_level_set)},
    {"log-json", "log_json", ADM_OPT_BOOL, ADM_OPT_AT(log_json)},
    /* service definitions, kept as JSON text for admin/api to decode */
    {NULL, "services", ADM_OPT_JSON, .json = json_services},
    {NULL, "service", ADM_OPT_JSON, .json = json_services},
    /* check definitions of the node itself (Consul's top-level "checks" / "check") */
    {NULL, "checks", ADM_OPT_JSON, .json = json_checks},
    {NULL, "check", ADM_OPT_JSON, .json = json_checks},
    /* script checks (Consul's): off by default; local: from config files only, script: also
     * over HTTP, which is remote code execution for whoever reaches the HTTP port */
    {"enable-script-checks", "enable_script_checks", ADM_OPT_BOOL,
     ADM_OPT_AT(enable_script_checks)},
    {"enable-local-script-checks", "enable_local_script_checks", ADM_OPT_BOOL,
     ADM_OPT_AT(enable_local_script_checks)},
    /* Herald's own: how many script checks run at once (a check due while the cap is reached
     * waits for its next interval) */
    {NULL, "max_running_scripts", ADM_OPT_UINT, ADM_OPT_AT(max_running_scripts), .min = 1,
     .max = 4096, .def = 32},
    {NULL, "raft_snapshot_threshold", ADM_OPT_UINT, ADM_OPT_AT(raft_snapshot_threshold), .min = 1,
     .max = 100000000},
    {NULL, "raft_trailing_logs", ADM_OPT_UINT, ADM_OPT_AT(raft_snapshot_trailing), .min = 1,
     .max = 100000000},
    /* 0: consensus's default */
    {NULL, "performance.raft_multiplier", ADM_OPT_UINT, ADM_OPT_AT(raft_multiplier), .min = 1,
     .max = 10},
    /* limits: 0 is admin/http's or consensus's own default */
    {NULL, "limits.http_max_conns", ADM_OPT_UINT, ADM_OPT_AT(http_max_conns), .min = 1,
     .max = 1000000, .def = 16384}, /* thousands of parked blocking queries are normal */
    {NULL, "limits.http_max_conns_per_client", ADM_OPT_UINT, ADM_OPT_AT(http_max_conns_per_client),
     .min = 1, .max = 1000000},
    {NULL, "limits.http_header_timeout", ADM_OPT_DURATION, ADM_OPT_AT(http_header_timeout_ms),
     .min = 1},
    {NULL, "limits.http_idle_timeout", ADM_OPT_DURATION, ADM_OPT_AT(http_idle_timeout_ms),
     .min = 1},
    /* the whole request body must arrive within this of the head */
    {NULL, "limits.http_body_timeout", ADM_OPT_DURATION, ADM_OPT_AT(http_body_timeout_ms), .min = 1,
     .max = 86400000},
    /* server-port connections per source IP */
    {NULL, "limits.rpc_max_conns_per_client", ADM_OPT_UINT, ADM_OPT_AT(rpc_max_conns_per_client),
     .min = 1, .max = 100000},
    {NULL, "limits.rpc_idle_timeout", ADM_OPT_DURATION, ADM_OPT_AT(rpc_idle_timeout_ms), .min = 1},
    /* DNS; 0 workers: one per core */
    {"dns-workers", "dns_config.workers", ADM_OPT_UINT, ADM_OPT_AT(dns_workers), .min = 1,
     .max = 256},
    {NULL, "dns_config.node_ttl", ADM_OPT_TTL, ADM_OPT_AT(dns.node_ttl)},
    {NULL, "dns_config.service_ttl", ADM_OPT_JSON, .json = json_service_ttl},
    {NULL, "dns_config.allow_stale", ADM_OPT_BOOL, ADM_OPT_AT(dns.allow_stale), .def = true},
    {NULL, "dns_config.max_stale", ADM_OPT_DURATION, ADM_OPT_AT(dns.max_stale_ms),
     .def = 87600ull * 3600 * 1000}, /* Consul's default, 10 years */
    {NULL, "dns_config.only_passing", ADM_OPT_BOOL, ADM_OPT_AT(dns.only_passing)},
    {NULL, "dns_config.enable_truncate", ADM_OPT_BOOL, ADM_OPT_AT(dns.enable_truncate),
     .def = true},
    {NULL, "dns_config.udp_answer_limit", ADM_OPT_UINT, ADM_OPT_AT(dns.udp_answer_limit),
     .max = 65535},
    {NULL, "dns_config.a_record_limit", ADM_OPT_UINT, ADM_OPT_AT(dns.a_record_limit), .max = 65535},
    {NULL, "dns_config.soa.refresh", ADM_OPT_UINT, ADM_OPT_AT(dns.soa_refresh), .max = INT32_MAX,
     .def = 3600},
    {NULL, "dns_config.soa.retry", ADM_OPT_UINT, ADM_OPT_AT(dns.soa_retry), .max = INT32_MAX,
     .def = 600},
    {NULL, "dns_config.soa.expire", ADM_OPT_UINT, ADM_OPT_AT(dns.soa_expire), .max = INT32_MAX,
     .def = 86400},
    {NULL, "dns_config.soa.min_ttl", ADM_OPT_UINT, ADM_OPT_AT(dns.soa_min_ttl), .max = INT32_MAX},
    /* recursion */
    {"recursor", "recursors", ADM_OPT_RECURSORS, ADM_OPT_AT(recursors)},
    /* the flag's list replaces the files' (validate()) */
    {"allow-recursion", NULL, ADM_OPT_NETS, ADM_OPT_AT(allow_recursion)},
    {NULL, "dns_config.allow_recursion", ADM_OPT_NETS, ADM_OPT_AT(dns.allow_recursion),
     .replace = true},
    {NULL, "dns_config.recursor_timeout", ADM_OPT_DURATION, ADM_OPT_AT(dns.recursor_timeout_ms),
     .min = 1, .max = 60000, .def = 2000},
    {NULL, "dns_config.recursor_max_queries", ADM_OPT_UINT, ADM_OPT_AT(dns.recursor_max_queries),
     .min = 1, .max = 65535, .def = 1000},
    {NULL, "dns_config.cache_size", ADM_OPT_SIZE, ADM_OPT_AT(dns.cache_size), .min = 1u << 20,
     .max = 64ull << 30, .def = 32u << 20},
    {NULL, "dns_config.recursion", ADM_OPT_ENUM, ADM_OPT_AT(dns.recursion),
     .names = recursion_names, .def = RSV_RECURSION_FORWARD},
    {NULL, "dns_config.root_hints", ADM_OPT_PATH, ADM_OPT_AT(dns.root_hints)},
    {NULL, "dns_config.dnssec_validation", ADM_OPT_BOOL, ADM_OPT_AT(dns.dnssec_validation)},
    {NULL, "dns_config.trust_anchor", ADM_OPT_PATH, ADM_OPT_AT(dns.trust_anchor)},
};
const size_t adm_n_options = BASE_ARRAY_LEN(adm_options);

_Static_assert(offsetof(struct adm_config, log_level_set) != 0, ".given 0 means none");

/* ---- values ---------------------------------------------------------------------------- */

static void *field(struct adm_config *c, const struct adm_option *o)
{
    return (char *)c + o->off;
}

/* Numbers are stored by their field's size (bool, 32-bit or 64-bit). */
static void put_number(struct adm_config *c, const struct adm_option *o, uint64_t v)
{
    if (o->size == sizeof(uint64_t)) {
        memcpy(field(c, o), &v, sizeof v);
    } else if (o->size == sizeof(uint32_t)) {
        uint32_t u = (uint32_t)v;
        memcpy(field(c, o), &u, sizeof u);
    } else {
        bool b = v != 0;
        memcpy(field(c, o), &b, sizeof b);
    }
}

static void set_str(char **dst, const char *v)
{
    base_free(*dst);
    *dst = base_strdup(v);
}

/* "1h", "2m", "10s", "250ms": a duration as base_duration_parse reads it back. */
static void fmt_ms(char *buf, size_t len, uint64_t ms)
{
    static const struct {
        uint64_t ms;
        const char *unit;
    } units[] = {{3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
    size_t i = 0;
    while (ms % units[i].ms)
        i++;
    snprintf(buf, len, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].unit);
}

/* "64GiB", "1MiB": a size as base_size_parse reads it back. */
static void fmt_bytes(char *buf, size_t len, uint64_t b)
{
    static const struct {
        uint64_t n;
        const char *unit;
    } units[] = {{1ull << 30, "GiB"}, {1u << 20, "MiB"}, {1u << 10, "KiB"}, {1, ""}};
    size_t i = 0;
    while (b % units[i].n)
        i++;
    snprintf(buf, len, "%llu%s", (unsigned long long)(b / units[i].n), units[i].unit);
}

#define WHAT_LEN 128 /* what() */

/* What an option takes, as its errors say: "a port number 1..65535". */
static const char *what(const struct adm_option *o, char *buf, size_t len)
{
    char lo[32], hi[32];
    void (*fmt)(char *, size_t, uint64_t) = o->type == ADM_OPT_SIZE ? fmt_bytes : fmt_ms;
    const char *example =
        o->type == ADM_OPT_SIZE ? "a size such as \"32MB\"" : "a duration such as \"10s\"";

    switch (o->type) {
    case ADM_OPT_BOOL:
        return "true or false";
    case ADM_OPT_UINT:
        snprintf(buf, len, "%llu..%llu", (unsigned long long)o->min, (unsigned long long)o->max);
        return buf;
    case ADM_OPT_PORT:
        return "a port number 1..65535";
    case ADM_OPT_TTL:
        return example;
    case ADM_OPT_DURATION:
    case ADM_OPT_SIZE:
        fmt(lo, sizeof lo, o->min);
        fmt(hi, sizeof hi, o->max);
        if (o->max)
            snprintf(buf, len, "%s, from %s to %s", example, lo, hi);
        else if (o->min)
            snprintf(buf, len, "%s, at least %s", example, lo);
        else
            snprintf(buf, len, "%s", example);
        return buf;
    case ADM_OPT_ENUM: {
        size_t n = 0, at = 0;
        while (o->names[n])
            n++;
        buf[0] = '\0';
        for (size_t i = 0; i < n && at < len; i++)
            at += (size_t)snprintf(buf + at, len - at, "%s\"%s\"",
                                   i == 0       ? ""
                                   : i + 1 == n ? " or "
                                                : ", ",
                                   o->names[i]);
        return buf;
    }
    case ADM_OPT_LOG_LEVEL:
        return "one of trace, debug, info, warn, err";
    case ADM_OPT_STRING:
    case ADM_OPT_LABEL:
    case ADM_OPT_DOMAIN:
    case ADM_OPT_ADDR:
    case ADM_OPT_PATH:
        return "a string";
    case ADM_OPT_LIST:
    case ADM_OPT_NETS:
    case ADM_OPT_RECURSORS:
        return "an array of strings";
    case ADM_OPT_JSON:
        return "a JSON value";
    case ADM_OPT_CONFIG:
        return "a path";
    }
    return "";
}

/* The number a flag's text s (NULL: a bool flag alone) or a JSON value j gives for a number
 * option, in its unit; BASE_EPARSE for none, or for one outside the option's range. */
static int parse_number(const struct adm_option *o, const char *s, json_t *j, uint64_t *v)
{
    uint64_t lo = o->min, hi = o->max ? o->max : UINT64_MAX, ms;
    enum base_log_level level;

    if (o->type == ADM_OPT_PORT) {
        lo = 1;
        hi = 65535;
    } else if (o->type == ADM_OPT_TTL) {
        hi = INT32_MAX;
    }
    if (j) {
        /* JSON: a boolean for BOOL; an integer for UINT and PORT, or in place of the text of
         * a SIZE (bytes) or a TTL (seconds); else the same text as the flag's */
        bool integer = o->type == ADM_OPT_UINT || o->type == ADM_OPT_PORT;
        if (o->type == ADM_OPT_BOOL) {
            s = json_is_true(j) ? "true" : json_is_false(j) ? "false" : "";
        } else if (json_is_integer(j) &&
                   (integer || o->type == ADM_OPT_SIZE || o->type == ADM_OPT_TTL)) {
            if (json_integer_value(j) < 0)
                return BASE_EPARSE;
            *v = (uint64_t)json_integer_value(j);
            return *v < lo || *v > hi ? BASE_EPARSE : 0;
        } else if (integer || !json_is_string(j)) {
            return BASE_EPARSE;
        } else {
            s = json_string_value(j);
        }
    }
    switch (o->type) {
    case ADM_OPT_BOOL:
        if (!s || strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
            *v = 1;
        else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
            *v = 0;
        else
            return BASE_EPARSE;
        return 0;
    case ADM_OPT_UINT:
    case ADM_OPT_PORT:
        if (base_u64_parse(s, v))
            return BASE_EPARSE;
        break;
    case ADM_OPT_DURATION:
        if (base_duration_parse(s, v))
            return BASE_EPARSE;
        break;
    case ADM_OPT_TTL:
        if (base_duration_parse(s, &ms))
            return BASE_EPARSE;
        *v = ms / 1000;
        break;
    case ADM_OPT_SIZE:
        if (base_size_parse(s, v))
            return BASE_EPARSE;
        break;
    case ADM_OPT_ENUM:
        for (*v = 0; o->names[*v]; (*v)++)
            if (strcmp(s, o->names[*v]) == 0)
                return 0;
        return BASE_EPARSE;
    case ADM_OPT_LOG_LEVEL:
        if (base_log_level_parse(s, &level))
            return BASE_EPARSE;
        *v = (uint64_t)level;
        return 0;
    default:
        return BASE_EPARSE;
    }
    return *v < lo || *v > hi ? BASE_EPARSE : 0;
}

static void set_number(struct adm_config *c, const struct adm_option *o, uint64_t v)
{
    put_number(c, o, v);
    if (o->given)
        *(bool *)((char *)c + o->given) = true;
}

/* A flag's value: val is NULL for a bool flag given alone. */
static int set_flag(const struct adm_option *o, const char *val, struct adm_config *c, char *err)
{
    char buf[WHAT_LEN];
    uint64_t v;

    if (adm_opt_is_number(o)) {
        if (parse_number(o, val, NULL, &v))
            return base_errf(err, BASE_EINVAL, "invalid value \"%s\" for flag -%s: must be %s", val,
                             o->flag, what(o, buf, sizeof buf));
        set_number(c, o, v);
    } else if (adm_opt_is_string(o)) {
        if (!*val)
            return base_errf(err, BASE_EINVAL, "flag -%s needs a non-empty value", o->flag);
        set_str(field(c, o), val);
    } else if (adm_opt_is_list(o)) {
        adm_strv_push(field(c, o), val);
    }
    return 0;
}

static bool valid(const struct adm_option *o, char **s);
static const char *valid_what(const struct adm_option *o);

/* A JSON value for the option o at key (its full path). */
static int set_json(const struct adm_option *o, const char *key, json_t *v, const char *file,
                    struct adm_config *c, char *err)
{
    char buf[WHAT_LEN];
    uint64_t n;
    size_t i;
    json_t *e;

    if (o->type == ADM_OPT_JSON)
        return o->json(v, key, file, c, err);
    if (adm_opt_is_number(o) && !parse_number(o, NULL, v, &n)) {
        set_number(c, o, n);
        return 0;
    }
    if (adm_opt_is_string(o) && json_is_string(v)) {
        set_str(field(c, o), json_string_value(v));
        return 0;
    }
    if (adm_opt_is_list(o) && json_is_array(v)) {
        json_array_foreach(v, i, e) if (!json_is_string(e)) break;
        if (i == json_array_size(v)) {
            /* checked here too, naming the file: a later file may replace this list */
            json_array_foreach(v, i, e)
            {
                char *s = base_strdup(json_string_value(e)); /* valid() may normalize */
                bool ok = valid(o, &s);
                base_free(s);
                if (!ok)
                    return base_errf(err, BASE_EINVAL, "%s: \"%s\": \"%s\" is not %s", file, key,
                                     json_string_value(e), valid_what(o));
            }
            if (o->replace)
                adm_strv_free(field(c, o));
            json_array_foreach(v, i, e) adm_strv_push(field(c, o), json_string_value(e));
            return 0;
        }
    }
    return base_errf(err, BASE_EINVAL, "%s: \"%s\" must be %s", file, key,
                     what(o, buf, sizeof buf));
}

/* ---- JSON config ----------------------------------------------------------------------- */

static const struct adm_option *find_key(const char *key)
{
    for (size_t i = 0; i < adm_n_options; i++)
        if (adm_options[i].key && strcmp(adm_options[i].key, key) == 0)
            return &adm_options[i];
    return NULL;
}

/* An object that holds keys of the table ("limits" for "limits.http_max_conns"). */
static bool is_group(const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < adm_n_options; i++)
        if (adm_options[i].key && strncmp(adm_options[i].key, key, n) == 0 &&
            adm_options[i].key[n] == '.')
            return true;
    return false;
}

/* The keys of obj, an object at the path prefix ("" at the top level). */
static int load_object(json_t *obj, const char *prefix, const char *file, struct adm_config *c,
                       char *err)
{
    const char *k;
    json_t *v;
    int rc = 0;

    json_object_foreach(obj, k, v)
    {
        char key[256];
        snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", k);
        /* a dot only nests ("ports.http" as one key is unknown) */
        const struct adm_option *o = strchr(k, '.') ? NULL : find_key(key);
        if (o)
            rc = set_json(o, key, v, file, c, err);
        else if (strchr(k, '.') || !is_group(key))
            rc = base_errf(err, BASE_EINVAL, "%s: unknown key \"%s\"", file, key);
        else if (!json_is_object(v))
            rc = base_errf(err, BASE_EINVAL, "%s: \"%s\" must be an object", file, key);
        else
            rc = load_object(v, key, file, c, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int one_service(json_t *v, const char *file, struct adm_config *c, char *err)
{
    if (!json_is_object(v))
        return base_errf(err, BASE_EINVAL, "%s: each of \"services\" must be an object", file);
    char *text = json_dumps(v, JSON_COMPACT);
    adm_strv_push(&c->services, text);
    free(text);
    return 0;
}

/* "checks": an array of check definitions; "check": one. Kept as JSON text like services. */
static int json_checks(json_t *v, const char *key, const char *file, struct adm_config *c,
                       char *err)
{
    size_t i;
    json_t *e;

    if (strcmp(key, "check") == 0)
        v = json_pack("[O]", v);
    else if (!json_is_array(v))
        return base_errf(err, BASE_EINVAL, "%s: \"checks\" must be an array", file);
    else
        json_incref(v);
    int rc = 0;
    json_array_foreach(v, i, e)
    {
        if (!json_is_object(e)) {
            rc = base_errf(err, BASE_EINVAL, "%s: each of \"checks\" must be an object", file);
            break;
        }
        char *text = json_dumps(e, JSON_COMPACT);
        adm_strv_push(&c->checks, text);
        free(text);
    }
    json_decref(v);
    return rc;
}

/* "services": an array of service definitions; "service": one. */
static int json_services(json_t *v, const char *key, const char *file, struct adm_config *c,
                         char *err)
{
    size_t i;
    json_t *e;
    int rc;

    if (strcmp(key, "service") == 0)
        return one_service(v, file, c, err);
    if (!json_is_array(v))
        return base_errf(err, BASE_EINVAL, "%s: \"services\" must be an array", file);
    json_array_foreach(v, i, e) if ((rc = one_service(e, file, c, err))) return rc;
    return 0;
}

/* dns_config.service_ttl: {"web": "30s", "db*": "10s", "*": "5s"}. */
static int json_service_ttl(json_t *v, const char *key, const char *file, struct adm_config *c,
                            char *err)
{
    static const struct adm_option ttl_option = {.type = ADM_OPT_TTL}; /* each TTL */
    struct adm_dns_config *d = &c->dns;
    char buf[WHAT_LEN];
    const char *pk;
    json_t *pv;

    if (!json_is_object(v))
        return base_errf(err, BASE_EINVAL, "%s: \"%s\" must be an object", file, key);
    json_object_foreach(v, pk, pv)
    {
        uint64_t ttl;
        size_t i;
        if (!*pk || strlen(pk) > ZONE_NAME_MAX)
            return base_errf(err, BASE_EINVAL, "%s: \"%s.%s\" is not a service name or pattern",
                             file, key, pk);
        if (parse_number(&ttl_option, NULL, pv, &ttl))
            return base_errf(err, BASE_EINVAL, "%s: \"%s.%s\" must be %s", file, key, pk,
                             what(&ttl_option, buf, sizeof buf));
        for (i = 0; i < d->n_service_ttl; i++)
            if (base_strcasecmp(d->service_ttl[i].pattern, pk) == 0)
                break;
        if (i == d->n_service_ttl) {
            d->service_ttl =
                base_realloc(d->service_ttl, (d->n_service_ttl + 1) * sizeof *d->service_ttl);
            d->service_ttl[i].pattern = base_strdup(pk);
            d->n_service_ttl++;
        }
        d->service_ttl[i].ttl = (uint32_t)ttl;
    }
    return 0;
}

static int load_json(const char *file, struct adm_config *c, char *err)
{
    json_error_t jerr;
    json_t *root = json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
    int rc;

    if (!root)
        return base_errf(err, BASE_EINVAL, "%s: %s (line %d)", file, jerr.text, jerr.line);
    if (!json_is_object(root))
        rc = base_errf(err, BASE_EINVAL, "%s: top level must be an object", file);
    else
        rc = load_object(root, "", file, c, err);
    json_decref(root);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_dir(const char *dir, struct adm_config *c, char *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    struct adm_strv files = {0};
    int rc = 0;

    if (!d)
        return base_errf(err, BASE_EINVAL, "-config-dir %s: cannot open", dir);
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 5 && strcmp(e->d_name + n - 5, ".json") == 0) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            adm_strv_push(&files, path);
        }
    }
    closedir(d);
    if (files.n)
        qsort(files.v, files.n, sizeof *files.v, cmp_str);
    for (size_t i = 0; i < files.n && !rc; i++)
        rc = load_json(files.v[i], c, err);
    adm_strv_free(&files);
    return rc;
}

/* ---- flags ----------------------------------------------------------------------------- */

static const struct adm_option *find_flag(const char *name, size_t n)
{
    for (size_t i = 0; i < adm_n_options; i++)
        if (adm_options[i].flag && strlen(adm_options[i].flag) == n &&
            strncmp(adm_options[i].flag, name, n) == 0)
            return &adm_options[i];
    return NULL;
}

/* Walks argv as Go's flag package reads it (-f v, -f=v, --f; a bool flag takes no separate
 * value): pass 1 reads the config files, pass 2 sets the other flags over them. */
static int walk(int argc, char **argv, int pass, struct adm_config *c, char *err)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0')
            return base_errf(err, BASE_EINVAL, "unexpected argument \"%s\"", a);
        a += a[1] == '-' ? 2 : 1;
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        const struct adm_option *o = find_flag(a, n);
        if (!o && ((n == 1 && a[0] == 'h') || (n == 4 && strncmp(a, "help", 4) == 0)))
            return ADM_CONFIG_HELP;
        if (!o)
            return base_errf(err, BASE_EINVAL, "flag provided but not defined: -%.*s", (int)n, a);
        const char *val = eq ? eq + 1 : NULL;
        if (!val && o->type != ADM_OPT_BOOL) {
            if (i + 1 >= argc)
                return base_errf(err, BASE_EINVAL, "flag needs an argument: -%s", o->flag);
            val = argv[++i];
        }
        int rc = 0;
        if (pass == 1 && o->type == ADM_OPT_CONFIG)
            rc = o->load(val, c, err);
        else if (pass == 2 && o->type != ADM_OPT_CONFIG)
            rc = set_flag(o, val, c, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- defaults, usage, free ------------------------------------------------------------- */

static void defaults(struct adm_config *c)
{
    char host[256] = "localhost";
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < adm_n_options; i++) {
        const struct adm_option *o = &adm_options[i];
        if (adm_opt_is_number(o))
            put_number(c, o, o->def);
        else if (adm_opt_is_string(o) && o->def_str)
            set_str(field(c, o), o->def_str);
    }
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    char *dot = strchr(host, '.');
    if (dot)
        *dot = '\0';
    set_str(&c->node_name, host);
}

void adm_config_free(struct adm_config *c)
{
    for (size_t i = 0; i < adm_n_options; i++) {
        const struct adm_option *o = &adm_options[i];
        char **s = field(c, o);
        if (adm_opt_is_string(o)) {
            base_free(*s);
            *s = NULL;
        } else if (adm_opt_is_list(o)) {
            adm_strv_free(field(c, o));
        }
    }
    for (size_t i = 0; i < c->dns.n_service_ttl; i++)
        base_free((void *)c->dns.service_ttl[i].pattern);
    base_free(c->dns.service_ttl);
    adm_strv_free(&c->services);
    adm_strv_free(&c->checks);
    base_free(c->dns.allow);
    if (c->key)
        memset(c->key, 0, c->key_len);
    base_free(c->key);
    base_free(c->join_nets);
    memset(c, 0, sizeof *c);
}

/* ---- validation ------------------------------------------------------------------------ */

static bool valid_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return false;
    return true;
}

static bool valid_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static bool readable(const char *path)
{
    return access(path, R_OK) == 0;
}

/* A DNS domain as the zone wants it: lowercase, with the trailing dot ("Consul" -> "consul."). */
static bool norm_domain(char **d)
{
    char buf[256];
    size_t n = strlen(*d);

    if (n && (*d)[n - 1] == '.')
        n--;
    if (n == 0 || n > 253)
        return false;
    memcpy(buf, *d, n);
    buf[n] = '\0';
    base_str_lower(buf);
    for (char *label = buf, *end; label; label = end ? end + 1 : NULL) {
        end = strchr(label, '.');
        if (end)
            *end = '\0';
        bool ok = valid_label(label);
        if (end)
            *end = '.';
        if (!ok)
            return false;
    }
    buf[n] = '.';
    buf[n + 1] = '\0';
    set_str(d, buf);
    return true;
}

/* One string of an option, checked (and a domain normalized) by its type. */
static bool valid(const struct adm_option *o, char **s)
{
    char buf[80];
    struct rsv_cidr cidr;
    switch (o->type) {
    case ADM_OPT_LABEL:
        return valid_label(*s);
    case ADM_OPT_DOMAIN:
        return norm_domain(s);
    case ADM_OPT_ADDR:
        return valid_ip(*s);
    case ADM_OPT_PATH:
        return readable(*s);
    case ADM_OPT_NETS:
        return rsv_cidr_parse(*s, &cidr) == 0;
    case ADM_OPT_RECURSORS:
        return rsv_recursor_parse(*s, buf, sizeof buf) == 0;
    default:
        return true;
    }
}

static const char *valid_what(const struct adm_option *o)
{
    switch (o->type) {
    case ADM_OPT_LABEL:
        return "a valid DNS label (letters, digits, hyphens, underscores; at most 63)";
    case ADM_OPT_DOMAIN:
        return "a domain name";
    case ADM_OPT_ADDR:
        return "an IP address";
    case ADM_OPT_PATH:
        return "a file it can read";
    case ADM_OPT_NETS:
        return "a network such as \"10.0.0.0/8\"";
    case ADM_OPT_RECURSORS:
        return "an IP address with an optional port";
    default:
        return "valid";
    }
}

void adm_options_usage(FILE *f)
{
    char buf[WHAT_LEN];
    fprintf(f, "Usage: herald agent [flags]\n\n"
               "Flags (-flag value, -flag=value or --flag), beside their config file keys; "
               "flags win over\nconfig files, which are read in the order given:\n");
    for (size_t i = 0; i < adm_n_options; i++) {
        const struct adm_option *o = &adm_options[i];
        char name[64], def[64] = "";
        snprintf(name, sizeof name, "%s%s%s%s", o->flag ? "-" : "", o->flag ? o->flag : "",
                 o->flag && o->key ? ", " : "", o->key ? o->key : "");
        if (o->type == ADM_OPT_DURATION && o->def)
            fmt_ms(def, sizeof def, o->def);
        else if (o->type == ADM_OPT_SIZE)
            fmt_bytes(def, sizeof def, o->def);
        else if (o->names)
            snprintf(def, sizeof def, "%s", o->names[o->def]);
        else if (o->type == ADM_OPT_BOOL && o->def)
            snprintf(def, sizeof def, "true");
        else if (adm_opt_is_number(o) && o->def)
            snprintf(def, sizeof def, "%llu", (unsigned long long)o->def);
        else if (o->def_str)
            snprintf(def, sizeof def, "%s", o->def_str);
        const char *takes = what(o, buf, sizeof buf);
        if (adm_opt_is_list(o) || (adm_opt_is_string(o) && o->type != ADM_OPT_STRING))
            takes = o->type == ADM_OPT_LIST ? "a string" : valid_what(o);
        fprintf(f, "  %-36s %s%s%s%s\n", name, adm_opt_is_list(o) ? "a list, each " : "", takes,
                *def ? "; default " : "", def);
    }
}

/* The table's pass over the merged values: the strings and lists that their type checks. A
 * message names the option by its key and its flag: `node_name (-node) "a.b" is not ...`. */
static int validate_options(struct adm_config *c, char *err)
{
    for (size_t i = 0; i < adm_n_options; i++) {
        const struct adm_option *o = &adm_options[i];
        struct adm_strv one = {field(c, o), 1}, *all = adm_opt_is_list(o) ? field(c, o) : &one;
        char name[96];
        if (!adm_opt_is_string(o) && !adm_opt_is_list(o))
            continue;
        if (o->type == ADM_OPT_DOMAIN && !o->def_str && *one.v && !**one.v) {
            base_free(*one.v); /* "alt_domain": "" is none */
            *one.v = NULL;
        }
        for (size_t k = 0; k < all->n; k++) {
            if (!all->v[k] || valid(o, &all->v[k]))
                continue;
            snprintf(name, sizeof name, "%s%s%s%s%s", o->key ? o->key : "",
                     o->key && o->flag ? " (" : "", o->flag ? "-" : "", o->flag ? o->flag : "",
                     o->key && o->flag ? ")" : "");
            return base_errf(err, BASE_EINVAL, "%s \"%s\" is not %s", name, all->v[k],
                             valid_what(o));
        }
    }
    return 0;
}

/* A list of CIDRs (already checked by validate_options) into an array. */
static void nets_of(const struct adm_strv *list, struct rsv_cidr **nets, size_t *n)
{
    base_free(*nets);
    *nets = list->n ? base_calloc(list->n, sizeof **nets) : NULL;
    *n = 0;
    for (size_t i = 0; i < list->n; i++)
        if (rsv_cidr_parse(list->v[i], &(*nets)[*n]) == 0)
            (*n)++;
}

/* The cluster key, as Consul's: base64 of 16, 24 or 32 bytes. */
static int decode_key(struct adm_config *c, char *err)
{
    base_free(c->key);
    c->key = NULL;
    c->key_len = 0;
    if (!c->encrypt)
        return 0;
    struct base_arena a;
    uint8_t *k;
    size_t n;
    base_arena_init(&a);
    if (base_b64_decode(&a, c->encrypt, &k, &n) == 0 && (n == 16 || n == 24 || n == 32)) {
        c->key = base_malloc(n);
        memcpy(c->key, k, n);
        c->key_len = n;
        memset(k, 0, n);
    }
    base_arena_close(&a);
    if (!c->key)
        return base_errf(err, BASE_EINVAL,
                         "encrypt (-encrypt): the key must be base64 of 16, 24 or 32 bytes "
                         "(herald keygen, or head -c 32 /dev/urandom | base64)");
    return 0;
}

/* Recursion: the keys that only make sense together. */
static int validate_recursion(struct adm_config *c, char *err)
{
    struct adm_dns_config *d = &c->dns;
    /* Debian's dns-root-data: the root KSKs, as unbound uses them. */
    static const char root_key[] = "/usr/share/dns/root.key";

    nets_of(c->allow_recursion.n ? &c->allow_recursion : &d->allow_recursion, &d->allow,
            &d->n_allow);
    if (d->recursion == RSV_RECURSION_ITERATIVE && c->recursors.n)
        return base_errf(err, BASE_EINVAL,
                         "dns_config.recursion \"iterative\" resolves from the root: give no "
                         "recursors (-recursor, recursors)");
    if (d->root_hints && d->recursion != RSV_RECURSION_ITERATIVE)
        return base_errf(err, BASE_EINVAL,
                         "dns_config.root_hints is only for dns_config.recursion \"iterative\"");
    if (d->trust_anchor && !d->dnssec_validation)
        return base_errf(err, BASE_EINVAL,
                         "dns_config.trust_anchor needs dns_config.dnssec_validation true");
    if (d->dnssec_validation && !d->trust_anchor) {
        if (!readable(root_key))
            return base_errf(err, BASE_EINVAL,
                             "dns_config.dnssec_validation needs dns_config.trust_anchor (%s "
                             "is not there)",
                             root_key);
        d->trust_anchor = base_strdup(root_key);
    }
    return 0;
}

/* The address a wildcard bind advertises, as Consul picks it: the host's one private IPv4
 * address (RFC 1918 or RFC 6598); several is an error, as in Consul. A host with none
 * advertises 127.0.0.1 (Consul refuses to start): only loopback could reach it anyway. */
static int private_ipv4(char **out, char *err)
{
    struct ifaddrs *ifs, *i;
    char found[INET_ADDRSTRLEN] = "";
    int n = 0;

    if (getifaddrs(&ifs) == 0) {
        for (i = ifs; i; i = i->ifa_next) {
            if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
                continue;
            uint32_t a = ntohl(((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
            bool private = (a >> 24) == 10 || (a >> 20) == 0xac1 || (a >> 16) == 0xc0a8 ||
                           (a >> 22) == (100u << 2 | 1);
            char text[INET_ADDRSTRLEN];
            if (!private ||
                !inet_ntop(AF_INET, &((const struct sockaddr_in *)i->ifa_addr)->sin_addr, text,
                           sizeof text))
                continue;
            if (n == 0 || strcmp(found, text) != 0)
                n++;
            snprintf(found, sizeof found, "%s", text);
        }
        freeifaddrs(ifs);
    }
    if (n > 1)
        return base_errf(err, BASE_EINVAL,
                         "Multiple private IPv4 addresses found. Please configure one with "
                         "'bind' and/or 'advertise'.");
    *out = base_strdup(n ? found : "127.0.0.1");
    return 0;
}

static int validate(struct adm_config *c, char *err)
{
    int rc;

    /* the defaults that depend on other options */
    if (!c->bind_addr)
        c->bind_addr = base_strdup(c->dev ? "127.0.0.1" : "0.0.0.0");
    if (!c->advertise_addr) {
        if (strcmp(c->bind_addr, "0.0.0.0") == 0 || strcmp(c->bind_addr, "::") == 0) {
            if ((rc = private_ipv4(&c->advertise_addr, err)))
                return rc;
        } else {
            c->advertise_addr = base_strdup(c->bind_addr);
        }
    }
    if (!c->serf_lan_addr)
        c->serf_lan_addr = base_strdup(c->bind_addr);
    if ((rc = validate_options(c, err)))
        return rc;

    /* the rules between options */
    if (c->dev) {
        /* As Consul: dev mode is its own single-node cluster. */
        if (c->bootstrap_expect > 0)
            return base_errf(err, BASE_EINVAL, "'bootstrap_expect > 0' not allowed in dev mode");
        c->server = true;
        c->bootstrap_expect = 1;
    }
    /* Consul's defaults: a client leaves the pool on SIGTERM, a server on neither signal (it
     * stays a Raft voter across a restart) */
    if (!c->leave_on_terminate_set)
        c->leave_on_terminate = !c->server;
    if (!c->skip_leave_on_interrupt_set)
        c->skip_leave_on_interrupt = c->server;
    if (!c->dev && !c->data_dir)
        return base_errf(err, BASE_EINVAL, "data_dir is required (-data-dir) unless -dev");
    /* Without -server the agent is a client (Consul's rule for bootstrap_expect) */
    if (!c->server && c->bootstrap_expect > 0)
        return base_errf(err, BASE_EINVAL, "'bootstrap_expect > 0' requires 'server = true'");
    /* As Consul: a new server bootstraps only with -bootstrap-expect (1: alone; N: once the
     * gossip pool shows N servers); without it, it waits to be joined (-retry-join, or a
     * `herald join` from anywhere), never forming a second cluster in the same pool. A server
     * with data ignores it. */
    if ((rc = decode_key(c, err)))
        return rc;
    nets_of(&c->join_allow, &c->join_nets, &c->n_join_nets);
    return validate_recursion(c, err);
}

int adm_config_load(int argc, char **argv, struct adm_config *c, char *err)
{
    int rc;
    defaults(c);
    if ((rc = walk(argc, argv, 1, c, err)) || (rc = walk(argc, argv, 2, c, err)) ||
        (rc = validate(c, err)))
        return rc;
    return 0;
}
