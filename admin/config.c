/* Agent configuration: Consul's JSON config keys (from -config-file and -config-dir, in the
 * order given; files of a directory in name order) and then the flags, which win.
 * Any unknown key or flag, or a bad value, is an error that names it. */
#include "internal.h"

#include <arpa/inet.h>
#include <dirent.h>
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

static void set_str(char **dst, const char *v)
{
    base_free(*dst);
    *dst = base_strdup(v);
}

static void defaults(struct adm_config *c)
{
    char host[256] = "localhost";
    memset(c, 0, sizeof *c);
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    char *dot = strchr(host, '.');
    if (dot)
        *dot = '\0';
    c->node_name = base_strdup(host);
    c->datacenter = base_strdup("dc1");
    c->client_addr = base_strdup("127.0.0.1");
    c->domain = base_strdup("consul.");
    c->http_port = 8500;
    c->dns_port = 8600;
    c->server_port = 8300;
    c->serf_lan_port = 8301;
    c->log_level = BASE_LOG_INFO;
    c->http_max_conns = 16384; /* thousands of parked blocking queries are normal */
    c->dns.allow_stale = true;
    c->dns.max_stale_ms = 87600ull * 3600 * 1000; /* Consul's default, 10 years */
    c->dns.enable_truncate = true;
    c->dns.soa_refresh = 3600;
    c->dns.soa_retry = 600;
    c->dns.soa_expire = 86400;
    c->dns.soa_min_ttl = 0;
    c->dns.recursor_timeout_ms = 2000;
    c->dns.recursion = RSV_RECURSION_FORWARD;
    c->dns.cache_size = 32ull << 20;
    c->dns.recursor_max_queries = 1000;
}

void adm_config_free(struct adm_config *c)
{
    base_free(c->data_dir);
    base_free(c->node_name);
    base_free(c->datacenter);
    base_free(c->bind_addr);
    base_free(c->advertise_addr);
    base_free(c->client_addr);
    base_free(c->http_addr);
    base_free(c->domain);
    base_free(c->alt_domain);
    base_free(c->dns_addr);
    for (size_t i = 0; i < c->dns.n_service_ttl; i++)
        base_free((void *)c->dns.service_ttl[i].pattern);
    base_free(c->dns.service_ttl);
    adm_strv_free(&c->retry_join);
    adm_strv_free(&c->recursors);
    adm_strv_free(&c->allow_recursion);
    adm_strv_free(&c->dns.allow_recursion);
    base_free(c->dns.root_hints);
    base_free(c->dns.trust_anchor);
    base_free(c->dns.allow);
    adm_strv_free(&c->services);
    base_free(c->encrypt);
    if (c->key)
        memset(c->key, 0, c->key_len);
    base_free(c->key);
    adm_strv_free(&c->join_allow);
    base_free(c->join_nets);
    memset(c, 0, sizeof *c);
}

/* ---- values ---------------------------------------------------------------------------- */

static int parse_port(const char *s, int *out)
{
    uint64_t v;
    if (base_u64_parse(s, &v) || v == 0 || v > 65535)
        return -1;
    *out = (int)v;
    return 0;
}

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

/* ---- JSON config ----------------------------------------------------------------------- */

static int j_str(json_t *v, const char *key, const char *file, char **dst, char *err)
{
    if (!json_is_string(v))
        return base_errf(err, BASE_EINVAL, "%s: \"%s\" must be a string", file, key);
    set_str(dst, json_string_value(v));
    return 0;
}

static int j_port(json_t *v, const char *key, const char *file, int *dst, char *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535)
        return base_errf(err, BASE_EINVAL, "%s: \"%s\" must be a port number 1..65535", file, key);
    *dst = (int)json_integer_value(v);
    return 0;
}

static int j_strv(json_t *v, const char *key, const char *file, struct adm_strv *dst, char *err)
{
    size_t i;
    json_t *e;
    if (!json_is_array(v))
        return base_errf(err, BASE_EINVAL, "%s: \"%s\" must be an array of strings", file, key);
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e))
            return base_errf(err, BASE_EINVAL, "%s: \"%s\" must be an array of strings", file, key);
        adm_strv_push(dst, json_string_value(e));
    }
    return 0;
}

static int j_service(json_t *v, const char *file, struct adm_config *c, char *err)
{
    if (!json_is_object(v))
        return base_errf(err, BASE_EINVAL, "%s: each of \"services\" must be an object", file);
    char *text = json_dumps(v, JSON_COMPACT);
    adm_strv_push(&c->services, text);
    free(text);
    return 0;
}

/* A TTL in whole seconds: a duration string ("10s", "1m") or a number of seconds. */
static int j_ttl(json_t *v, const char *key, const char *file, uint32_t *dst, char *err)
{
    uint64_t ms;
    if (json_is_integer(v) && json_integer_value(v) >= 0 &&
        json_integer_value(v) <= (json_int_t)INT32_MAX) {
        *dst = (uint32_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v) || base_duration_parse(json_string_value(v), &ms) ||
        ms / 1000 > INT32_MAX)
        return base_errf(err, BASE_EINVAL, "%s: \"%s\" must be a duration such as \"30s\"", file,
                         key);
    *dst = (uint32_t)(ms / 1000);
    return 0;
}

static int j_duration(json_t *v, const char *key, const char *file, uint64_t *dst, char *err)
{
    if (!json_is_string(v) || base_duration_parse(json_string_value(v), dst))
        return base_errf(err, BASE_EINVAL, "%s: \"%s\" must be a duration such as \"2s\"", file,
                         key);
    return 0;
}

static int j_bool(json_t *v, const char *key, const char *file, bool *dst, char *err)
{
    if (!json_is_boolean(v))
        return base_errf(err, BASE_EINVAL, "%s: \"%s\" must be true or false", file, key);
    *dst = json_is_true(v);
    return 0;
}

static int j_uint(json_t *v, const char *key, const char *file, json_int_t min, json_int_t max,
                  uint64_t *dst, char *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return base_errf(err, BASE_EINVAL, "%s: \"%s\" must be an integer %lld..%lld", file, key,
                         (long long)min, (long long)max);
    *dst = (uint64_t)json_integer_value(v);
    return 0;
}

/* dns_config: Consul's keys that Herald uses (or accepts for compatibility). */
static int j_dns_config(json_t *obj, const char *file, struct adm_config *c, char *err)
{
    struct adm_dns_config *d = &c->dns;
    const char *k;
    json_t *v;
    uint64_t u;
    int rc = 0;

    if (!json_is_object(obj))
        return base_errf(err, BASE_EINVAL, "%s: \"dns_config\" must be an object", file);
    json_object_foreach(obj, k, v)
    {
        char full[128];
        snprintf(full, sizeof full, "dns_config.%s", k);
        if (strcmp(k, "node_ttl") == 0)
            rc = j_ttl(v, full, file, &d->node_ttl, err);
        else if (strcmp(k, "service_ttl") == 0) {
            const char *pk;
            json_t *pv;
            if (!json_is_object(v)) {
                rc = base_errf(err, BASE_EINVAL, "%s: \"%s\" must be an object", file, full);
                break;
            }
            json_object_foreach(v, pk, pv)
            {
                char sub[400];
                uint32_t ttl;
                size_t i;
                snprintf(sub, sizeof sub, "dns_config.service_ttl.%s", pk);
                if (!*pk || strlen(pk) > ZONE_NAME_MAX) {
                    rc = base_errf(err, BASE_EINVAL, "%s: \"%s\" is not a service name or pattern",
                                   file, sub);
                    break;
                }
                if ((rc = j_ttl(pv, sub, file, &ttl, err)))
                    break;
                for (i = 0; i < d->n_service_ttl; i++)
                    if (base_strcasecmp(d->service_ttl[i].pattern, pk) == 0)
                        break;
                if (i == d->n_service_ttl) {
                    d->service_ttl = base_realloc(d->service_ttl,
                                                  (d->n_service_ttl + 1) * sizeof *d->service_ttl);
                    d->service_ttl[i].pattern = base_strdup(pk);
                    d->n_service_ttl++;
                }
                d->service_ttl[i].ttl = ttl;
            }
        } else if (strcmp(k, "allow_stale") == 0)
            rc = j_bool(v, full, file, &d->allow_stale, err);
        else if (strcmp(k, "max_stale") == 0)
            rc = j_duration(v, full, file, &d->max_stale_ms, err);
        else if (strcmp(k, "only_passing") == 0)
            rc = j_bool(v, full, file, &d->only_passing, err);
        else if (strcmp(k, "enable_truncate") == 0)
            rc = j_bool(v, full, file, &d->enable_truncate, err);
        else if (strcmp(k, "udp_answer_limit") == 0) {
            if (!(rc = j_uint(v, full, file, 0, 65535, &u, err)))
                d->udp_answer_limit = (unsigned)u;
        } else if (strcmp(k, "a_record_limit") == 0) {
            if (!(rc = j_uint(v, full, file, 0, 65535, &u, err)))
                d->a_record_limit = (unsigned)u;
        } else if (strcmp(k, "workers") == 0) {
            if (!(rc = j_uint(v, full, file, 1, 256, &u, err)))
                c->dns_workers = (unsigned)u;
        } else if (strcmp(k, "recursor_timeout") == 0) {
            if (!(rc = j_duration(v, full, file, &d->recursor_timeout_ms, err)) &&
                (d->recursor_timeout_ms == 0 || d->recursor_timeout_ms > 60000))
                rc = base_errf(err, BASE_EINVAL, "%s: \"%s\" must be between 1ms and 60s", file,
                               full);
        } else if (strcmp(k, "recursion") == 0) {
            const char *m = json_is_string(v) ? json_string_value(v) : "";
            if (strcmp(m, "forward") == 0)
                d->recursion = RSV_RECURSION_FORWARD;
            else if (strcmp(m, "iterative") == 0)
                d->recursion = RSV_RECURSION_ITERATIVE;
            else
                rc = base_errf(err, BASE_EINVAL, "%s: \"%s\" must be \"forward\" or \"iterative\"",
                               file, full);
        } else if (strcmp(k, "root_hints") == 0)
            rc = j_str(v, full, file, &d->root_hints, err);
        else if (strcmp(k, "trust_anchor") == 0)
            rc = j_str(v, full, file, &d->trust_anchor, err);
        else if (strcmp(k, "dnssec_validation") == 0)
            rc = j_bool(v, full, file, &d->dnssec_validation, err);
        else if (strcmp(k, "cache_size") == 0) {
            uint64_t bytes = 0;
            if (json_is_integer(v) && json_integer_value(v) > 0)
                bytes = (uint64_t)json_integer_value(v);
            else if (!json_is_string(v) || base_size_parse(json_string_value(v), &bytes))
                bytes = 0;
            if (bytes < (1u << 20) || bytes > (64ull << 30))
                rc = base_errf(err, BASE_EINVAL,
                               "%s: \"%s\" must be a size from 1MB to 64GB such as \"32MB\"", file,
                               full);
            else
                d->cache_size = bytes;
        } else if (strcmp(k, "recursor_max_queries") == 0) {
            if (!(rc = j_uint(v, full, file, 1, 65535, &u, err)))
                d->recursor_max_queries = (unsigned)u;
        } else if (strcmp(k, "allow_recursion") == 0) {
            adm_strv_free(&d->allow_recursion);
            if (!(rc = j_strv(v, full, file, &d->allow_recursion, err)))
                for (size_t i = 0; i < d->allow_recursion.n && !rc; i++) {
                    struct rsv_cidr cidr;
                    if (rsv_cidr_parse(d->allow_recursion.v[i], &cidr))
                        rc = base_errf(err, BASE_EINVAL,
                                       "%s: \"%s\": \"%s\" is not a network such as "
                                       "\"10.0.0.0/8\"",
                                       file, full, d->allow_recursion.v[i]);
                }
        } else if (strcmp(k, "soa") == 0) {
            const char *sk;
            json_t *sv;
            if (!json_is_object(v)) {
                rc = base_errf(err, BASE_EINVAL, "%s: \"%s\" must be an object", file, full);
                break;
            }
            json_object_foreach(v, sk, sv)
            {
                char sub[128];
                uint32_t *dst = strcmp(sk, "refresh") == 0   ? &d->soa_refresh
                                : strcmp(sk, "retry") == 0   ? &d->soa_retry
                                : strcmp(sk, "expire") == 0  ? &d->soa_expire
                                : strcmp(sk, "min_ttl") == 0 ? &d->soa_min_ttl
                                                             : NULL;
                snprintf(sub, sizeof sub, "dns_config.soa.%s", sk);
                if (!dst)
                    rc = base_errf(err, BASE_EINVAL, "%s: unknown key \"%s\"", file, sub);
                else if (!(rc = j_uint(sv, sub, file, 0, INT32_MAX, &u, err)))
                    *dst = (uint32_t)u;
                if (rc)
                    break;
            }
        } else
            rc = base_errf(err, BASE_EINVAL, "%s: unknown key \"%s\"", file, full);
        if (rc)
            break;
    }
    return rc;
}

static int load_json(const char *file, struct adm_config *c, char *err)
{
    json_error_t jerr;
    json_t *root = json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
    const char *k;
    json_t *v;
    int rc = 0;

    if (!root)
        return base_errf(err, BASE_EINVAL, "%s: %s (line %d)", file, jerr.text, jerr.line);
    if (!json_is_object(root)) {
        json_decref(root);
        return base_errf(err, BASE_EINVAL, "%s: top level must be an object", file);
    }
    json_object_foreach(root, k, v)
    {
        if (strcmp(k, "datacenter") == 0)
            rc = j_str(v, k, file, &c->datacenter, err);
        else if (strcmp(k, "node_name") == 0)
            rc = j_str(v, k, file, &c->node_name, err);
        else if (strcmp(k, "data_dir") == 0)
            rc = j_str(v, k, file, &c->data_dir, err);
        else if (strcmp(k, "bind_addr") == 0)
            rc = j_str(v, k, file, &c->bind_addr, err);
        else if (strcmp(k, "advertise_addr") == 0)
            rc = j_str(v, k, file, &c->advertise_addr, err);
        else if (strcmp(k, "client_addr") == 0)
            rc = j_str(v, k, file, &c->client_addr, err);
        else if (strcmp(k, "domain") == 0)
            rc = j_str(v, k, file, &c->domain, err);
        else if (strcmp(k, "alt_domain") == 0)
            rc = j_str(v, k, file, &c->alt_domain, err);
        else if (strcmp(k, "server") == 0) {
            if (!json_is_boolean(v))
                rc = base_errf(err, BASE_EINVAL, "%s: \"server\" must be true or false", file);
            else
                c->server = json_is_true(v);
        } else if (strcmp(k, "bootstrap_expect") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 9)
                rc = base_errf(err, BASE_EINVAL, "%s: \"bootstrap_expect\" must be 0..9", file);
            else
                c->bootstrap_expect = (unsigned)json_integer_value(v);
        } else if (strcmp(k, "log_level") == 0) {
            c->log_level_set = true;
            if (!json_is_string(v) || base_log_level_parse(json_string_value(v), &c->log_level))
                rc = base_errf(err, BASE_EINVAL,
                               "%s: \"log_level\" must be one of trace, debug, info, warn, err",
                               file);
        } else if (strcmp(k, "log_json") == 0) {
            if (!json_is_boolean(v))
                rc = base_errf(err, BASE_EINVAL, "%s: \"log_json\" must be true or false", file);
            else
                c->log_json = json_is_true(v);
        } else if (strcmp(k, "retry_join") == 0)
            rc = j_strv(v, k, file, &c->retry_join, err);
        else if (strcmp(k, "encrypt") == 0)
            rc = j_str(v, k, file, &c->encrypt, err);
        else if (strcmp(k, "join_allow") == 0)
            rc = j_strv(v, k, file, &c->join_allow, err);
        else if (strcmp(k, "recursors") == 0)
            rc = j_strv(v, k, file, &c->recursors, err);
        else if (strcmp(k, "ports") == 0 || strcmp(k, "addresses") == 0) {
            const char *pk;
            json_t *pv;
            bool ports = k[0] == 'p';
            if (!json_is_object(v)) {
                rc = base_errf(err, BASE_EINVAL, "%s: \"%s\" must be an object", file, k);
                break;
            }
            json_object_foreach(v, pk, pv)
            {
                char full[64];
                snprintf(full, sizeof full, "%s.%s", k, pk);
                if (ports && strcmp(pk, "http") == 0)
                    rc = j_port(pv, full, file, &c->http_port, err);
                else if (ports && strcmp(pk, "dns") == 0)
                    rc = j_port(pv, full, file, &c->dns_port, err);
                else if (ports && strcmp(pk, "server") == 0)
                    rc = j_port(pv, full, file, &c->server_port, err);
                else if (ports && strcmp(pk, "serf_lan") == 0)
                    rc = j_port(pv, full, file, &c->serf_lan_port, err);
                else if (!ports && strcmp(pk, "http") == 0)
                    rc = j_str(pv, full, file, &c->http_addr, err);
                else if (!ports && strcmp(pk, "dns") == 0)
                    rc = j_str(pv, full, file, &c->dns_addr, err);
                else
                    rc = base_errf(err, BASE_EINVAL, "%s: unknown key \"%s\"", file, full);
                if (rc)
                    break;
            }
        } else if (strcmp(k, "performance") == 0) {
            const char *pk;
            json_t *pv;
            if (!json_is_object(v)) {
                rc = base_errf(err, BASE_EINVAL, "%s: \"performance\" must be an object", file);
                break;
            }
            json_object_foreach(v, pk, pv)
            {
                if (strcmp(pk, "raft_multiplier") != 0)
                    rc =
                        base_errf(err, BASE_EINVAL, "%s: unknown key \"performance.%s\"", file, pk);
                else if (!json_is_integer(pv) || json_integer_value(pv) < 1 ||
                         json_integer_value(pv) > 10)
                    rc = base_errf(err, BASE_EINVAL,
                                   "%s: \"performance.raft_multiplier\" must be 1..10", file);
                else
                    c->raft_multiplier = (unsigned)json_integer_value(pv);
                if (rc)
                    break;
            }
        } else if (strcmp(k, "raft_snapshot_threshold") == 0 ||
                   strcmp(k, "raft_trailing_logs") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > 100000000)
                rc = base_errf(err, BASE_EINVAL, "%s: \"%s\" must be a positive integer", file, k);
            else if (k[5] == 's')
                c->raft_snapshot_threshold = (unsigned)json_integer_value(v);
            else
                c->raft_snapshot_trailing = (unsigned)json_integer_value(v);
        } else if (strcmp(k, "limits") == 0) {
            /* Herald's HTTP limits (total connections, header and idle timeouts). */
            const char *lk;
            json_t *lv;
            if (!json_is_object(v)) {
                rc = base_errf(err, BASE_EINVAL, "%s: \"limits\" must be an object", file);
                break;
            }
            json_object_foreach(v, lk, lv)
            {
                uint64_t *dst = strcmp(lk, "http_header_timeout") == 0 ? &c->http_header_timeout_ms
                                : strcmp(lk, "http_idle_timeout") == 0 ? &c->http_idle_timeout_ms
                                : strcmp(lk, "rpc_idle_timeout") == 0  ? &c->rpc_idle_timeout_ms
                                                                       : NULL;
                if (strcmp(lk, "rpc_max_conns_per_client") == 0) {
                    /* Consul's name: incoming server-port connections per source IP */
                    if (!json_is_integer(lv) || json_integer_value(lv) < 1 ||
                        json_integer_value(lv) > 100000)
                        rc = base_errf(err, BASE_EINVAL,
                                       "%s: \"limits.rpc_max_conns_per_client\" must be 1..100000",
                                       file);
                    else
                        c->rpc_max_conns_per_client = (unsigned)json_integer_value(lv);
                } else if (strcmp(lk, "http_max_conns") == 0) {
                    if (!json_is_integer(lv) || json_integer_value(lv) < 1 ||
                        json_integer_value(lv) > 1000000)
                        rc = base_errf(err, BASE_EINVAL,
                                       "%s: \"limits.http_max_conns\" must be 1..1000000", file);
                    else
                        c->http_max_conns = (uint64_t)json_integer_value(lv);
                } else if (strcmp(lk, "http_max_conns_per_client") == 0) {
                    /* Consul's name and default (200): connections per client IP address */
                    if (!json_is_integer(lv) || json_integer_value(lv) < 1 ||
                        json_integer_value(lv) > 1000000)
                        rc = base_errf(err, BASE_EINVAL,
                                       "%s: \"limits.http_max_conns_per_client\" must be "
                                       "1..1000000",
                                       file);
                    else
                        c->http_max_conns_per_client = (uint64_t)json_integer_value(lv);
                } else if (strcmp(lk, "http_body_timeout") == 0) {
                    /* the whole request body must arrive within this of the head */
                    if (!json_is_string(lv) ||
                        base_duration_parse(json_string_value(lv), &c->http_body_timeout_ms) ||
                        c->http_body_timeout_ms == 0 || c->http_body_timeout_ms > 86400000)
                        rc = base_errf(err, BASE_EINVAL,
                                       "%s: \"limits.http_body_timeout\" must be a duration such "
                                       "as \"30s\", at most 24h",
                                       file);
                } else if (dst) {
                    if (!json_is_string(lv) || base_duration_parse(json_string_value(lv), dst) ||
                        *dst == 0)
                        rc = base_errf(err, BASE_EINVAL,
                                       "%s: \"limits.%s\" must be a duration such as \"10s\"", file,
                                       lk);
                } else
                    rc = base_errf(err, BASE_EINVAL, "%s: unknown key \"limits.%s\"", file, lk);
                if (rc)
                    break;
            }
        } else if (strcmp(k, "dns_config") == 0) {
            rc = j_dns_config(v, file, c, err);
        } else if (strcmp(k, "services") == 0) {
            size_t i;
            json_t *e;
            if (!json_is_array(v)) {
                rc = base_errf(err, BASE_EINVAL, "%s: \"services\" must be an array", file);
                break;
            }
            json_array_foreach(v, i, e) if ((rc = j_service(e, file, c, err))) break;
        } else if (strcmp(k, "service") == 0)
            rc = j_service(v, file, c, err);
        else
            rc = base_errf(err, BASE_EINVAL, "%s: unknown key \"%s\"", file, k);
        if (rc)
            break;
    }
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

enum flag_kind { F_BOOL, F_STR, F_PORT, F_UINT, F_STRV, F_LOG, F_WORKERS };

struct flag {
    const char *name;
    enum flag_kind kind;
    size_t off;
};

#define OFF(f) offsetof(struct adm_config, f)
static const struct flag flags[] = {
    {"dev", F_BOOL, OFF(dev)},
    {"server", F_BOOL, OFF(server)},
    {"bootstrap-expect", F_UINT, OFF(bootstrap_expect)},
    {"data-dir", F_STR, OFF(data_dir)},
    {"node", F_STR, OFF(node_name)},
    {"datacenter", F_STR, OFF(datacenter)},
    {"bind", F_STR, OFF(bind_addr)},
    {"advertise", F_STR, OFF(advertise_addr)},
    {"client", F_STR, OFF(client_addr)},
    {"http-port", F_PORT, OFF(http_port)},
    {"dns-port", F_PORT, OFF(dns_port)},
    {"dns-workers", F_WORKERS, OFF(dns_workers)},
    {"server-port", F_PORT, OFF(server_port)},
    {"serf-lan-port", F_PORT, OFF(serf_lan_port)},
    {"encrypt", F_STR, OFF(encrypt)},
    {"join-allow", F_STRV, OFF(join_allow)},
    {"retry-join", F_STRV, OFF(retry_join)},
    {"join", F_STRV, OFF(retry_join)},
    {"recursor", F_STRV, OFF(recursors)},
    {"allow-recursion", F_STRV, OFF(allow_recursion)},
    {"domain", F_STR, OFF(domain)},
    {"alt-domain", F_STR, OFF(alt_domain)},
    {"log-level", F_LOG, OFF(log_level)},
    {"log-json", F_BOOL, OFF(log_json)},
    {"config-file", F_STR, 0}, /* handled in the first pass */
    {"config-dir", F_STR, 0},
};

static const struct flag *find_flag(const char *name, size_t n)
{
    for (size_t i = 0; i < BASE_ARRAY_LEN(flags); i++)
        if (strlen(flags[i].name) == n && strncmp(flags[i].name, name, n) == 0)
            return &flags[i];
    return NULL;
}

static int apply_flag(const struct flag *f, const char *val, struct adm_config *c, char *err)
{
    void *p = (char *)c + f->off;
    uint64_t u;
    switch (f->kind) {
    case F_BOOL:
        if (!val || strcmp(val, "true") == 0 || strcmp(val, "1") == 0)
            *(bool *)p = true;
        else if (strcmp(val, "false") == 0 || strcmp(val, "0") == 0)
            *(bool *)p = false;
        else
            return base_errf(err, BASE_EINVAL, "invalid value \"%s\" for flag -%s", val, f->name);
        return 0;
    case F_STR:
        if (!*val)
            return base_errf(err, BASE_EINVAL, "flag -%s needs a non-empty value", f->name);
        set_str((char **)p, val);
        return 0;
    case F_PORT:
        if (parse_port(val, (int *)p))
            return base_errf(err, BASE_EINVAL, "invalid value \"%s\" for flag -%s: not a port", val,
                             f->name);
        return 0;
    case F_UINT:
        if (base_u64_parse(val, &u) || u > 9)
            return base_errf(err, BASE_EINVAL, "invalid value \"%s\" for flag -%s", val, f->name);
        *(unsigned *)p = (unsigned)u;
        return 0;
    case F_WORKERS:
        if (base_u64_parse(val, &u) || u < 1 || u > 256)
            return base_errf(err, BASE_EINVAL, "invalid value \"%s\" for flag -%s: must be 1..256",
                             val, f->name);
        *(unsigned *)p = (unsigned)u;
        return 0;
    case F_STRV:
        adm_strv_push((struct adm_strv *)p, val);
        return 0;
    case F_LOG:
        c->log_level_set = true;
        if (base_log_level_parse(val, (enum base_log_level *)p))
            return base_errf(err, BASE_EINVAL, "invalid value \"%s\" for flag -%s", val, f->name);
        return 0;
    }
    return 0;
}

/* Walks argv calling fn for each flag; config-file flags in pass 1, the rest in pass 2. */
static int walk(int argc, char **argv, int pass, struct adm_config *c, char *err)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0')
            return base_errf(err, BASE_EINVAL, "unexpected argument \"%s\"", a);
        a += a[1] == '-' ? 2 : 1;
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        const struct flag *f = find_flag(a, n);
        if (!f)
            return base_errf(err, BASE_EINVAL, "flag provided but not defined: -%.*s", (int)n, a);
        const char *val = eq ? eq + 1 : NULL;
        if (!val && f->kind != F_BOOL) {
            if (i + 1 >= argc)
                return base_errf(err, BASE_EINVAL, "flag needs an argument: -%s", f->name);
            val = argv[++i];
        }
        bool is_config = strcmp(f->name, "config-file") == 0 || strcmp(f->name, "config-dir") == 0;
        int rc = 0;
        if (pass == 1 && is_config)
            rc = f->name[7] == 'f' ? load_json(val, c, err) : load_dir(val, c, err);
        else if (pass == 2 && !is_config)
            rc = apply_flag(f, val, c, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* A DNS domain as the zone wants it: lowercase, with the trailing dot ("Consul" -> "consul."). */
static int norm_domain(char **d, const char *what, char *err)
{
    char buf[256];
    size_t n = strlen(*d);

    if (n && (*d)[n - 1] == '.')
        n--;
    if (n == 0 || n > 253)
        return base_errf(err, BASE_EINVAL, "%s \"%s\" is not a domain name", what, *d);
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
            return base_errf(err, BASE_EINVAL, "%s \"%s\" is not a domain name", what, *d);
    }
    buf[n] = '.';
    buf[n + 1] = '\0';
    set_str(d, buf);
    return 0;
}

static bool readable(const char *path)
{
    return access(path, R_OK) == 0;
}

/* Recursion: the recursor syntax, the allow list, and the keys that only make sense
 * together. */
static int validate_recursion(struct adm_config *c, char *err)
{
    struct adm_dns_config *d = &c->dns;
    const struct adm_strv *allow = c->allow_recursion.n ? &c->allow_recursion : &d->allow_recursion;
    const char *allow_what =
        c->allow_recursion.n ? "-allow-recursion" : "dns_config.allow_recursion";
    char buf[80];

    for (size_t i = 0; i < c->recursors.n; i++)
        if (rsv_recursor_parse(c->recursors.v[i], buf, sizeof buf))
            return base_errf(err, BASE_EINVAL,
                             "recursor \"%s\" (-recursor, recursors) is not an IP address with "
                             "an optional port",
                             c->recursors.v[i]);
    base_free(d->allow);
    d->allow = NULL;
    d->n_allow = 0;
    if (allow->n) {
        d->allow = base_calloc(allow->n, sizeof *d->allow);
        for (size_t i = 0; i < allow->n; i++)
            if (rsv_cidr_parse(allow->v[i], &d->allow[i]))
                return base_errf(err, BASE_EINVAL,
                                 "%s \"%s\" is not a network such as \"10.0.0.0/8\"", allow_what,
                                 allow->v[i]);
        d->n_allow = allow->n;
    }
    if (d->recursion == RSV_RECURSION_ITERATIVE && c->recursors.n)
        return base_errf(err, BASE_EINVAL,
                         "dns_config.recursion \"iterative\" resolves from the root: give no "
                         "recursors (-recursor, recursors)");
    if (d->root_hints && d->recursion != RSV_RECURSION_ITERATIVE)
        return base_errf(err, BASE_EINVAL,
                         "dns_config.root_hints is only for dns_config.recursion \"iterative\"");
    if (d->root_hints && !readable(d->root_hints))
        return base_errf(err, BASE_EINVAL, "dns_config.root_hints \"%s\": cannot read it",
                         d->root_hints);
    if (d->trust_anchor && !d->dnssec_validation)
        return base_errf(err, BASE_EINVAL,
                         "dns_config.trust_anchor needs dns_config.dnssec_validation true");
    if (d->dnssec_validation && !d->trust_anchor) {
        /* Debian's dns-root-data: the root KSKs, as unbound uses them. */
        static const char root_key[] = "/usr/share/dns/root.key";
        if (!readable(root_key))
            return base_errf(err, BASE_EINVAL,
                             "dns_config.dnssec_validation needs dns_config.trust_anchor (%s "
                             "is not there)",
                             root_key);
        d->trust_anchor = base_strdup(root_key);
    }
    if (d->trust_anchor && !readable(d->trust_anchor))
        return base_errf(err, BASE_EINVAL, "dns_config.trust_anchor \"%s\": cannot read it",
                         d->trust_anchor);
    return 0;
}

/* The cluster key (as Consul's: base64 of 16, 24 or 32 bytes) and the join allow list. */
static int validate_server_port(struct adm_config *c, char *err)
{
    base_free(c->key);
    c->key = NULL;
    c->key_len = 0;
    if (c->encrypt) {
        struct base_arena a;
        uint8_t *k;
        size_t n;
        base_arena_init(&a);
        int rc = base_b64_decode(&a, c->encrypt, &k, &n);
        if (rc == 0 && (n == 16 || n == 24 || n == 32)) {
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
    }
    base_free(c->join_nets);
    c->join_nets = NULL;
    c->n_join_nets = 0;
    if (c->join_allow.n) {
        c->join_nets = base_calloc(c->join_allow.n, sizeof *c->join_nets);
        for (size_t i = 0; i < c->join_allow.n; i++)
            if (rsv_cidr_parse(c->join_allow.v[i], &c->join_nets[i]))
                return base_errf(err, BASE_EINVAL,
                                 "join_allow (-join-allow) \"%s\" is not a network such as "
                                 "\"10.0.0.0/8\"",
                                 c->join_allow.v[i]);
        c->n_join_nets = c->join_allow.n;
    }
    return 0;
}

static int validate(struct adm_config *c, char *err)
{
    if (!valid_label(c->node_name))
        return base_errf(err, BASE_EINVAL,
                         "node name \"%s\" is not a valid DNS label (letters, digits, hyphens; "
                         "at most 63)",
                         c->node_name);
    if (!valid_label(c->datacenter))
        return base_errf(err, BASE_EINVAL, "datacenter \"%s\" is not a valid DNS label",
                         c->datacenter);
    if (!c->bind_addr)
        c->bind_addr = base_strdup(c->dev ? "127.0.0.1" : "0.0.0.0");
    if (!valid_ip(c->bind_addr))
        return base_errf(err, BASE_EINVAL, "bind address \"%s\" is not an IP address",
                         c->bind_addr);
    if (!valid_ip(c->client_addr))
        return base_errf(err, BASE_EINVAL, "client address \"%s\" is not an IP address",
                         c->client_addr);
    if (c->http_addr && !valid_ip(c->http_addr))
        return base_errf(err, BASE_EINVAL, "addresses.http \"%s\" is not an IP address",
                         c->http_addr);
    if (c->dns_addr && !valid_ip(c->dns_addr))
        return base_errf(err, BASE_EINVAL, "addresses.dns \"%s\" is not an IP address",
                         c->dns_addr);
    if (norm_domain(&c->domain, "domain", err))
        return BASE_EINVAL;
    if (c->alt_domain && !*c->alt_domain) {
        base_free(c->alt_domain);
        c->alt_domain = NULL;
    }
    if (c->alt_domain && norm_domain(&c->alt_domain, "alt_domain", err))
        return BASE_EINVAL;
    if (!c->advertise_addr) {
        if (strcmp(c->bind_addr, "0.0.0.0") == 0 || strcmp(c->bind_addr, "::") == 0)
            c->advertise_addr = base_strdup("127.0.0.1"); /* TODO(gossip): pick a private IP */
        else
            c->advertise_addr = base_strdup(c->bind_addr);
    }
    if (!valid_ip(c->advertise_addr))
        return base_errf(err, BASE_EINVAL, "advertise address \"%s\" is not an IP address",
                         c->advertise_addr);
    if (c->dev) {
        /* As Consul: dev mode is its own single-node cluster. */
        if (c->bootstrap_expect > 0)
            return base_errf(err, BASE_EINVAL, "'bootstrap_expect > 0' not allowed in dev mode");
        c->server = true;
        c->bootstrap_expect = 1;
    }
    if (!c->dev && !c->data_dir)
        return base_errf(err, BASE_EINVAL, "data_dir is required (-data-dir) unless -dev");
    if (!c->dev && !c->server)
        return base_errf(err, BASE_EINVAL,
                         "client agents are not supported yet: start with -server or -dev");
    /* A new server with neither -bootstrap-expect nor a join address forms a cluster of its
     * own (a convenience Consul does not have); with join addresses and no -bootstrap-expect it
     * joins the running cluster through them. A server with data ignores both. */
    if (c->server && c->bootstrap_expect == 0 && c->retry_join.n == 0)
        c->bootstrap_expect = 1;
    if (c->bootstrap_expect > 1 && c->retry_join.n == 0)
        return base_errf(err, BASE_EINVAL,
                         "-bootstrap-expect %u needs -retry-join addresses of the other servers",
                         c->bootstrap_expect);
    return validate_server_port(c, err) ? BASE_EINVAL : validate_recursion(c, err);
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
