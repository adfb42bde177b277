/* The DNS test fixture: rfc-vectors/dns/fixture.json (a JSON array of Consul catalog-register
 * bodies) loaded into a fresh store through zone_store_apply, as the HTTP API would load it,
 * and the standard dns_config the vectors assume (rfc-vectors/dns/README.md).
 * Header-only: shared by the zone DNS unit tests and tests/fuzz/dns_query.c. */
#ifndef HERALD_TEST_DNS_FIXTURE_H
#define HERALD_TEST_DNS_FIXTURE_H

#include "zone/zone.h"

#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DNSFX_PATH "rfc-vectors/dns/fixture.json"

struct dnsfx {
    char dir[64];
    struct zone_store *s;
};

/* The standard configuration of rfc-vectors/dns/README.md. */
static const struct zone_dns_ttl dnsfx_service_ttl[] = {{"*", 5}, {"svc1*", 20}, {"svc1", 30}};

static inline void dnsfx_config(struct zone_dns_config *c)
{
    memset(c, 0, sizeof *c);
    c->domain = "consul.";
    c->alt_domain = "alt.test.";
    c->datacenter = "dc1";
    c->node_ttl = 10;
    c->service_ttl = dnsfx_service_ttl;
    c->n_service_ttl = sizeof dnsfx_service_ttl / sizeof dnsfx_service_ttl[0];
    c->only_passing = false;
    c->enable_truncate = true;
    c->udp_answer_limit = 0;
    c->a_record_limit = 0;
    c->soa_refresh = 3600;
    c->soa_retry = 600;
    c->soa_expire = 86400;
    c->soa_min_ttl = 30;
}

static inline const char *dnsfx_str(json_t *o, const char *k, const char *def)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : def;
}

static inline struct zone_pair *dnsfx_pairs(json_t *o, struct base_arena *a, size_t *n)
{
    const char *k;
    json_t *v;
    struct zone_pair *p;
    size_t i = 0;

    *n = 0;
    if (!json_is_object(o) || json_object_size(o) == 0)
        return NULL;
    p = base_arena_alloc(a, json_object_size(o) * sizeof *p);
    json_object_foreach(o, k, v)
    {
        p[i].key = base_arena_strdup(a, k);
        p[i].value = base_arena_strdup(a, json_is_string(v) ? json_string_value(v) : "");
        i++;
    }
    *n = i;
    return p;
}

/* One catalog-register body as a REGISTER command, with the defaults of /v1/catalog/register
 * (service ID = name, weights 1/1, check status critical, check ID = name). */
static inline int dnsfx_cmd(json_t *b, struct base_arena *a, struct zone_cmd *c)
{
    json_t *svc = json_object_get(b, "Service"), *checks = json_object_get(b, "Checks");

    memset(c, 0, sizeof *c);
    c->type = ZONE_CMD_REGISTER;
    c->node.name = dnsfx_str(b, "Node", "");
    c->node.id = dnsfx_str(b, "ID", "");
    c->node.address = dnsfx_str(b, "Address", "");
    c->node.datacenter = "dc1";
    c->node.meta = dnsfx_pairs(json_object_get(b, "NodeMeta"), a, &c->node.n_meta);
    c->skip_node_update = json_is_true(json_object_get(b, "SkipNodeUpdate"));
    if (json_is_object(svc)) {
        struct zone_service *s = base_arena_alloc(a, sizeof *s);
        json_t *tags = json_object_get(svc, "Tags"), *w = json_object_get(svc, "Weights");
        memset(s, 0, sizeof *s);
        s->name = dnsfx_str(svc, "Service", dnsfx_str(svc, "Name", ""));
        s->id = dnsfx_str(svc, "ID", s->name);
        s->kind = "";
        s->address = dnsfx_str(svc, "Address", "");
        s->port = (uint32_t)json_integer_value(json_object_get(svc, "Port"));
        s->weight_passing = s->weight_warning = 1;
        if (json_is_object(w)) {
            if (json_is_integer(json_object_get(w, "Passing")))
                s->weight_passing = (uint32_t)json_integer_value(json_object_get(w, "Passing"));
            if (json_is_integer(json_object_get(w, "Warning")))
                s->weight_warning = (uint32_t)json_integer_value(json_object_get(w, "Warning"));
        }
        if (json_is_array(tags) && json_array_size(tags)) {
            s->n_tags = json_array_size(tags);
            s->tags = base_arena_alloc(a, s->n_tags * sizeof *s->tags);
            for (size_t i = 0; i < s->n_tags; i++)
                s->tags[i] = json_string_value(json_array_get(tags, i));
        }
        s->node = c->node.name;
        c->service = s;
    }
    if (json_is_array(checks) && json_array_size(checks)) {
        size_t n = json_array_size(checks);
        struct zone_check *ck = base_arena_alloc(a, n * sizeof *ck);
        for (size_t i = 0; i < n; i++) {
            json_t *o = json_array_get(checks, i);
            memset(&ck[i], 0, sizeof ck[i]);
            ck[i].node = c->node.name;
            ck[i].name = dnsfx_str(o, "Name", "");
            ck[i].check_id = dnsfx_str(o, "CheckID", ck[i].name);
            ck[i].service_id = dnsfx_str(o, "ServiceID", "");
            ck[i].notes = ck[i].output = ck[i].type = "";
            ck[i].status = ZONE_HEALTH_CRITICAL;
            if (zone_health_parse(dnsfx_str(o, "Status", "critical"), &ck[i].status))
                return -1;
        }
        c->checks = ck;
        c->n_checks = n;
    }
    return *c->node.name ? 0 : -1;
}

/* Applies every body of the fixture as one Raft entry at index idx. 0, or -1 with a message
 * on stderr. */
static inline int dnsfx_load(struct zone_store *s, const char *path, uint64_t idx)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    struct base_arena a;
    struct base_buf *bufs;
    struct base_slice *sl;
    int *res, rc = 0;
    uint32_t touched;

    if (!json_is_array(root)) {
        fprintf(stderr, "dns fixture %s: %s\n", path, jerr.text);
        json_decref(root);
        return -1;
    }
    size_t n = json_array_size(root);
    base_arena_init(&a);
    bufs = calloc(n, sizeof *bufs);
    sl = calloc(n, sizeof *sl);
    res = calloc(n, sizeof *res);
    for (size_t i = 0; i < n && !rc; i++) {
        struct zone_cmd c;
        base_buf_init(&bufs[i]);
        if (dnsfx_cmd(json_array_get(root, i), &a, &c)) {
            fprintf(stderr, "dns fixture %s: entry %zu is not a registration\n", path, i);
            rc = -1;
            break;
        }
        zone_cmd_encode(&c, &bufs[i]);
        sl[i].p = bufs[i].data;
        sl[i].n = bufs[i].len;
    }
    if (!rc && zone_store_apply(s, idx, sl, n, res, &touched) != 0)
        rc = -1;
    for (size_t i = 0; i < n && !rc; i++)
        if (res[i]) {
            fprintf(stderr, "dns fixture %s: entry %zu: %s\n", path, i, base_strerror(res[i]));
            rc = -1;
        }
    for (size_t i = 0; i < n; i++)
        base_buf_free(&bufs[i]);
    free(bufs);
    free(sl);
    free(res);
    base_arena_close(&a);
    json_decref(root);
    return rc;
}

static inline int dnsfx_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* A temp store with the fixture at index 100 (so the SOA serial is 100). */
static inline int dnsfx_open(struct dnsfx *f, const char *path)
{
    char errmsg[BASE_ERRMSG_LEN];

    strcpy(f->dir, "/tmp/herald-dns-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    if (zone_store_open(f->dir, 0, &f->s, errmsg)) {
        fprintf(stderr, "%s\n", errmsg);
        return -1;
    }
    return dnsfx_load(f->s, path ? path : DNSFX_PATH, 100);
}

static inline void dnsfx_close(struct dnsfx *f)
{
    zone_store_close(f->s);
    f->s = NULL;
    nftw(f->dir, dnsfx_rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

#endif
