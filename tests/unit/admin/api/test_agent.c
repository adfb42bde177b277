/* Tests admin/api/agent.c's service and check definition decoders (the agent register bodies
 * and the config file's services): Consul's defaults (ID from Name, weights 1/1, check IDs
 * "service:<id>[:n]", default check names, critical until proven otherwise), the lowercase keys
 * python-consul sends, and every refusal with a message that names the field.
 *
 * Decoding touches only the api's config (node name), never the store or consensus, so the api
 * here has neither; each test makes its own loop and proves it closes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "admin/api/internal.h"

/* ---- fixture --------------------------------------------------------------------------- */

struct fx {
    uv_loop_t loop;
    struct api *api;
    struct base_arena ar;
    char err[BASE_ERRMSG_LEN];
    struct zone_service svc;
    struct zone_check *checks;
    size_t n_checks;
    struct zone_check chk;
};

static int setup(void **state)
{
    static struct fx f0;
    struct fx *f = &f0;
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    struct api_config cfg = {
        .node_name = "node1",
        .datacenter = "dc1",
        .node_id = "11111111-2222-3333-4444-555555555555",
        .advertise_addr = "127.0.0.1",
        .store = NULL, /* decoding never reads or writes */
        .cons = NULL,
    };
    assert_int_equal(api_new(&f->loop, &cfg, &f->api), 0);
    base_arena_init(&f->ar);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    base_arena_close(&f->ar);
    api_free(f->api);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    return 0;
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static json_t *J(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!v)
        fail_msg("bad test JSON %s: %s", text, jerr.text);
    return v;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

static int decode_svc_json(struct fx *f, json_t *v)
{
    f->err[0] = '\0';
    f->checks = NULL;
    f->n_checks = 0;
    return api__decode_service_def(f->api, v, &f->ar, true, &f->svc, &f->checks, &f->n_checks,
                                   f->err);
}

static int decode_svc(struct fx *f, const char *text)
{
    json_t *v = J(text);
    int rc = decode_svc_json(f, v);
    json_decref(v);
    return rc;
}

static void svc_ok(struct fx *f, const char *text)
{
    if (decode_svc(f, text))
        fail_msg("service %s refused: %s", text, f->err);
}

/* The decode fails with BASE_EINVAL and a message holding every given piece. */
static void svc_bad(struct fx *f, const char *text, const char *want1, const char *want2)
{
    int rc = decode_svc(f, text);
    if (rc == 0)
        fail_msg("service %s accepted, want error \"%s\"", text, want1);
    assert_int_equal(rc, BASE_EINVAL);
    assert_contains(f->err, want1);
    if (want2)
        assert_contains(f->err, want2);
}

static void svc_bad_json(struct fx *f, json_t *v, const char *want1, const char *want2)
{
    int rc = decode_svc_json(f, v);
    json_decref(v);
    assert_int_equal(rc, BASE_EINVAL);
    assert_contains(f->err, want1);
    if (want2)
        assert_contains(f->err, want2);
}

/* A node check (no service), as /v1/agent/check/register decodes it. */
static int decode_chk(struct fx *f, const char *text)
{
    json_t *v = J(text);
    f->err[0] = '\0';
    int rc = api__decode_check_def(f->api, v, &f->ar, NULL, 0, 1, true, &f->chk, f->err);
    json_decref(v);
    return rc;
}

static void chk_ok(struct fx *f, const char *text)
{
    if (decode_chk(f, text))
        fail_msg("check %s refused: %s", text, f->err);
}

static void chk_bad(struct fx *f, const char *text, const char *want1, const char *want2)
{
    int rc = decode_chk(f, text);
    if (rc == 0)
        fail_msg("check %s accepted, want error \"%s\"", text, want1);
    assert_int_equal(rc, BASE_EINVAL);
    assert_contains(f->err, want1);
    if (want2)
        assert_contains(f->err, want2);
}

static const char *pair_value(const struct zone_pair *p, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].key, key) == 0)
            return p[i].value;
    return NULL;
}

/* ---- services: defaults and fields ------------------------------------------------------ */

static void test_service_defaults(void **state)
{
    struct fx *f = *state;
    svc_ok(f, "{\"Name\": \"web\"}");
    assert_string_equal(f->svc.node, "node1");
    assert_string_equal(f->svc.name, "web");
    assert_string_equal(f->svc.id, "web"); /* ID defaults to Name */
    assert_string_equal(f->svc.kind, "");
    assert_string_equal(f->svc.address, "");
    assert_int_equal(f->svc.port, 0);
    assert_int_equal(f->svc.n_tags, 0);
    assert_int_equal(f->svc.n_meta, 0);
    assert_int_equal(f->svc.n_tagged_addresses, 0);
    assert_int_equal(f->svc.weight_passing, 1);
    assert_int_equal(f->svc.weight_warning, 1);
    assert_false(f->svc.enable_tag_override);
    assert_int_equal(f->n_checks, 0);
    assert_non_null(f->checks);

    /* empty ID and null fields fall back the same way */
    svc_ok(f, "{\"Name\": \"web\", \"ID\": \"\", \"Tags\": null, \"Meta\": null, \"Port\": null, "
              "\"Weights\": null, \"Check\": null, \"Checks\": null, \"Address\": null, "
              "\"TaggedAddresses\": null, \"Kind\": \"\"}");
    assert_string_equal(f->svc.id, "web");
    assert_int_equal(f->svc.weight_passing, 1);
    assert_int_equal(f->svc.weight_warning, 1);
    assert_int_equal(f->n_checks, 0);

    /* "Service" is Name's alias (the catalog's spelling) */
    svc_ok(f, "{\"Service\": \"db\"}");
    assert_string_equal(f->svc.name, "db");
    assert_string_equal(f->svc.id, "db");
}

static void test_service_all_fields(void **state)
{
    struct fx *f = *state;
    svc_ok(f, "{\"ID\": \"web-1\", \"Name\": \"web\", \"Tags\": [\"primary\", \"v2\"], "
              "\"Address\": \"10.0.0.5\", \"Port\": 8080, "
              "\"Meta\": {\"version\": \"1.2\", \"ENV_x-y\": \"\"}, "
              "\"TaggedAddresses\": {\"lan\": {\"Address\": \"10.0.0.5\", \"Port\": 8080}, "
              "\"wan\": \"203.0.113.5\"}, "
              "\"EnableTagOverride\": true, \"Weights\": {\"Passing\": 10, \"Warning\": 0}}");
    assert_string_equal(f->svc.id, "web-1");
    assert_string_equal(f->svc.name, "web");
    assert_int_equal(f->svc.n_tags, 2);
    assert_string_equal(f->svc.tags[0], "primary");
    assert_string_equal(f->svc.tags[1], "v2");
    assert_string_equal(f->svc.address, "10.0.0.5");
    assert_int_equal(f->svc.port, 8080);
    assert_int_equal(f->svc.n_meta, 2);
    assert_string_equal(pair_value(f->svc.meta, f->svc.n_meta, "version"), "1.2");
    assert_string_equal(pair_value(f->svc.meta, f->svc.n_meta, "ENV_x-y"), "");
    assert_int_equal(f->svc.n_tagged_addresses, 2);
    assert_string_equal(pair_value(f->svc.tagged_addresses, 2, "lan"), "10.0.0.5");
    assert_string_equal(pair_value(f->svc.tagged_addresses, 2, "wan"), "203.0.113.5");
    assert_true(f->svc.enable_tag_override);
    assert_int_equal(f->svc.weight_passing, 10);
    assert_int_equal(f->svc.weight_warning, 0);

    svc_ok(f, "{\"Name\": \"web\", \"Port\": 65535}");
    assert_int_equal(f->svc.port, 65535);
}

static void test_service_lowercase_keys(void **state)
{
    struct fx *f = *state;
    /* what python-consul's agent.service.register sends */
    svc_ok(f, "{\"name\": \"web\", \"id\": \"web1\", \"address\": \"10.1.1.1\", \"port\": 80, "
              "\"tags\": [\"a\"], \"enabletagoverride\": true, "
              "\"check\": {\"ttl\": \"10s\"}}");
    assert_string_equal(f->svc.name, "web");
    assert_string_equal(f->svc.id, "web1");
    assert_string_equal(f->svc.address, "10.1.1.1");
    assert_int_equal(f->svc.port, 80);
    assert_int_equal(f->svc.n_tags, 1);
    assert_true(f->svc.enable_tag_override);
    assert_int_equal(f->n_checks, 1);
    assert_string_equal(f->checks[0].check_id, "service:web1");
    assert_string_equal(f->checks[0].type, "ttl");
    assert_true(f->checks[0].ttl_ms == 10000);

    /* and the config file's snake_case */
    svc_ok(f, "{\"name\": \"web\", \"enable_tag_override\": true, "
              "\"weights\": {\"passing\": 5, \"warning\": 2}, "
              "\"checks\": [{\"check_id\": \"c1\", \"name\": \"alive\", \"tcp\": \"127.0.0.1:80\", "
              "\"interval\": \"5s\", \"timeout\": \"1s\", "
              "\"deregister_critical_service_after\": \"1m\"}]}");
    assert_true(f->svc.enable_tag_override);
    assert_int_equal(f->svc.weight_passing, 5);
    assert_int_equal(f->svc.weight_warning, 2);
    assert_int_equal(f->n_checks, 1);
    assert_string_equal(f->checks[0].check_id, "c1");
    assert_string_equal(f->checks[0].name, "alive");
    assert_string_equal(f->checks[0].type, "tcp");
    assert_true(f->checks[0].interval_ms == 5000);
    assert_true(f->checks[0].timeout_ms == 1000);
    assert_true(f->checks[0].deregister_after_ms == 60000);
}

static void test_service_tolerated_fields(void **state)
{
    struct fx *f = *state;
    /* Fields Herald does not implement pass when empty, and a few are always ignored. */
    svc_ok(f, "{\"Name\": \"web\", \"Connect\": {}, \"Proxy\": null, \"Namespace\": \"\", "
              "\"Partition\": \"\", \"SocketPath\": \"\", \"Locality\": null, "
              "\"Token\": \"secret\", \"Datacenter\": \"dc9\", \"CreateIndex\": 4, "
              "\"ModifyIndex\": 5}");
    assert_string_equal(f->svc.name, "web");
}

/* ---- services: checks ------------------------------------------------------------------- */

static void test_service_single_check_defaults(void **state)
{
    struct fx *f = *state;
    svc_ok(f, "{\"Name\": \"web\", \"ID\": \"web-1\", \"Check\": {\"TTL\": \"30s\"}}");
    assert_int_equal(f->n_checks, 1);
    const struct zone_check *c = &f->checks[0];
    assert_string_equal(c->node, "node1");
    assert_string_equal(c->check_id, "service:web-1");
    assert_string_equal(c->name, "Service 'web' check");
    assert_int_equal(c->status, ZONE_HEALTH_CRITICAL);
    assert_string_equal(c->service_id, "web-1");
    assert_string_equal(c->service_name, "web");
    assert_string_equal(c->type, "ttl");
    assert_true(c->ttl_ms == 30000);
    assert_string_equal(c->notes, "");
    assert_string_equal(c->output, "");

    /* one entry in Checks is numbered the same way: no suffix */
    svc_ok(f, "{\"Name\": \"web\", \"Checks\": [{\"TTL\": \"30s\"}]}");
    assert_int_equal(f->n_checks, 1);
    assert_string_equal(f->checks[0].check_id, "service:web");
}

static void test_service_multiple_checks_numbered(void **state)
{
    struct fx *f = *state;
    svc_ok(f, "{\"Name\": \"web\", \"Checks\": [{\"TTL\": \"10s\"}, "
              "{\"TCP\": \"127.0.0.1:80\", \"Interval\": \"10s\"}]}");
    assert_int_equal(f->n_checks, 2);
    assert_string_equal(f->checks[0].check_id, "service:web:1");
    assert_string_equal(f->checks[1].check_id, "service:web:2");
    assert_string_equal(f->checks[0].name, "Service 'web' check");
    assert_string_equal(f->checks[1].name, "Service 'web' check");
    assert_string_equal(f->checks[0].type, "ttl");
    assert_string_equal(f->checks[1].type, "tcp");

    /* Check comes first, then Checks */
    svc_ok(f, "{\"Name\": \"web\", \"ID\": \"w\", \"Check\": {\"TTL\": \"10s\"}, "
              "\"Checks\": [{\"TTL\": \"20s\"}, {\"TTL\": \"30s\", \"CheckID\": \"own\"}]}");
    assert_int_equal(f->n_checks, 3);
    assert_string_equal(f->checks[0].check_id, "service:w:1");
    assert_true(f->checks[0].ttl_ms == 10000);
    assert_string_equal(f->checks[1].check_id, "service:w:2");
    assert_true(f->checks[1].ttl_ms == 20000);
    assert_string_equal(f->checks[2].check_id, "own");

    /* an empty list is no checks */
    svc_ok(f, "{\"Name\": \"web\", \"Checks\": []}");
    assert_int_equal(f->n_checks, 0);
}

static void test_service_check_status_and_service_id(void **state)
{
    struct fx *f = *state;
    svc_ok(f, "{\"Name\": \"web\", \"Checks\": [{\"TTL\": \"10s\", \"Status\": \"passing\"}, "
              "{\"TTL\": \"10s\", \"Status\": \"warning\"}, "
              "{\"TTL\": \"10s\", \"Status\": \"critical\"}, {\"TTL\": \"10s\", \"Status\": \"\"}, "
              "{\"TTL\": \"10s\", \"ServiceID\": \"other\", \"Name\": \"mine\", "
              "\"Notes\": \"n\"}]}");
    assert_int_equal(f->n_checks, 5);
    assert_int_equal(f->checks[0].status, ZONE_HEALTH_PASSING);
    assert_int_equal(f->checks[1].status, ZONE_HEALTH_WARNING);
    assert_int_equal(f->checks[2].status, ZONE_HEALTH_CRITICAL);
    assert_int_equal(f->checks[3].status, ZONE_HEALTH_CRITICAL);
    /* a service's check belongs to that service whatever its body says */
    assert_string_equal(f->checks[4].service_id, "web");
    assert_string_equal(f->checks[4].name, "mine");
    assert_string_equal(f->checks[4].notes, "n");
}

static void test_service_check_errors_are_wrapped(void **state)
{
    struct fx *f = *state;
    svc_bad(f, "{\"Name\": \"web\", \"Check\": {\"TTL\": \"10s\", \"Bogus\": 1}}",
            "Check: ", "unknown field \"Bogus\"");
    svc_bad(f, "{\"Name\": \"web\", \"Checks\": [{\"TTL\": \"10s\"}, {\"TTL\": 1.5}]}",
            "Checks[1]: ", "\"TTL\"");
    svc_bad(f, "{\"Name\": \"web\", \"Checks\": [\"ttl\"]}",
            "Checks[0]: ", "check must be an object");
    svc_bad(f, "{\"Name\": \"web\", \"Check\": 5}", "Check: ", "check must be an object");
    svc_bad(f, "{\"Name\": \"web\", \"Checks\": {\"TTL\": \"10s\"}}", "\"Checks\"",
            "expected an array");
    svc_bad(f, "{\"Name\": \"web\", \"Check\": {\"TTL\": \"10s\", \"Status\": \"bogus\"}}",
            "Invalid check status", "bogus");
}

static void test_service_duplicate_check_ids(void **state)
{
    struct fx *f = *state;
    svc_bad(f,
            "{\"Name\": \"web\", \"Checks\": [{\"TTL\": \"10s\", \"ID\": \"c1\"}, "
            "{\"TTL\": \"10s\", \"CheckID\": \"c1\"}]}",
            "Duplicate check ID", "\"c1\"");
    /* an explicit ID that collides with a generated one */
    svc_bad(f,
            "{\"Name\": \"web\", \"Checks\": [{\"TTL\": \"10s\"}, "
            "{\"TTL\": \"10s\", \"CheckID\": \"service:web:1\"}]}",
            "Duplicate check ID", "\"service:web:1\"");
}

static void test_service_too_many_checks(void **state)
{
    struct fx *f = *state;
    json_t *list = json_array();
    for (int i = 0; i < 64; i++)
        json_array_append_new(list, json_pack("{s:s}", "TTL", "10s"));
    json_t *v = json_pack("{s:s,s:O}", "Name", "web", "Checks", list);
    assert_int_equal(decode_svc_json(f, v), 0);
    assert_int_equal(f->n_checks, 64);
    assert_string_equal(f->checks[63].check_id, "service:web:64");
    json_decref(v);

    json_array_append_new(list, json_pack("{s:s}", "TTL", "10s"));
    svc_bad_json(f, json_pack("{s:s,s:O}", "Name", "web", "Checks", list), "more than 64 checks",
                 NULL);
    /* Check counts toward the limit too */
    json_array_remove(list, 64);
    svc_bad_json(
        f, json_pack("{s:s,s:O,s:{s:s}}", "Name", "web", "Checks", list, "Check", "TTL", "1s"),
        "more than 64 checks", NULL);
    json_decref(list);
}

/* ---- services: refusals ----------------------------------------------------------------- */

static void test_service_refuses_unknown_field(void **state)
{
    struct fx *f = *state;
    svc_bad(f, "{\"Name\": \"web\", \"Bogus\": 1}", "unknown field", "\"Bogus\"");
    svc_bad(f, "{\"Name\": \"web\", \"Weights\": {\"Passing\": 1, \"Heavy\": 2}}", "unknown field",
            "\"Heavy\"");
    svc_bad(f, "{\"Name\": \"web\", \"Tag\": [\"a\"]}", "unknown field", "\"Tag\"");
}

static void test_service_refuses_missing_name(void **state)
{
    struct fx *f = *state;
    svc_bad(f, "{}", "Missing service name", NULL);
    svc_bad(f, "{\"ID\": \"web\"}", "Missing service name", NULL);
    svc_bad(f, "{\"Name\": \"\"}", "Missing service name", NULL);
    svc_bad(f, "{\"Name\": null}", "Missing service name", NULL);
}

static void test_service_refuses_wrong_types(void **state)
{
    struct fx *f = *state;
    svc_bad(f, "{\"Name\": 5}", "\"Name\"", "expected a string");
    svc_bad(f, "{\"name\": [\"web\"]}", "\"name\"", "expected a string");
    svc_bad(f, "{\"Name\": \"web\", \"ID\": 1}", "\"ID\"", "expected a string");
    svc_bad(f, "{\"Name\": \"web\", \"Tags\": \"a\"}", "\"Tags\"", "array of strings");
    svc_bad(f, "{\"Name\": \"web\", \"Tags\": [1]}", "\"Tags\"", "array of strings");
    svc_bad(f, "{\"Name\": \"web\", \"Address\": 1}", "\"Address\"", "expected a string");
    svc_bad(f, "{\"Name\": \"web\", \"Port\": \"80\"}", "\"Port\"", "expected an integer");
    svc_bad(f, "{\"Name\": \"web\", \"Port\": 65536}", "\"Port\"", "out of range");
    svc_bad(f, "{\"Name\": \"web\", \"Port\": -1}", "\"Port\"", "out of range");
    svc_bad(f, "{\"Name\": \"web\", \"EnableTagOverride\": \"yes\"}", "\"EnableTagOverride\"",
            "expected a bool");
    svc_bad(f, "{\"Name\": \"web\", \"Meta\": []}", "\"Meta\"", "object of strings");
    svc_bad(f, "{\"Name\": \"web\", \"Meta\": {\"k\": 1}}", "\"Meta.k\"", "expected a string");
    svc_bad(f, "{\"Name\": \"web\", \"Kind\": 1}", "\"Kind\"", "expected a string");
    svc_bad(f, "{\"Name\": \"web\", \"TaggedAddresses\": []}", "\"TaggedAddresses\"",
            "expected an object");
    svc_bad(f, "{\"Name\": \"web\", \"TaggedAddresses\": {\"lan\": 5}}", "\"TaggedAddresses.lan\"",
            "Address");
    svc_bad(f, "{\"Name\": \"web\", \"TaggedAddresses\": {\"lan\": {\"Port\": 80}}}",
            "\"TaggedAddresses.lan\"", "Address");
}

static void test_service_refuses_bad_weights(void **state)
{
    struct fx *f = *state;
    svc_bad(f, "{\"Name\": \"web\", \"Weights\": {\"Passing\": 0, \"Warning\": 1}}",
            "Passing must be greater than 0", NULL);
    svc_bad(f, "{\"Name\": \"web\", \"Weights\": {\"Warning\": 1, \"Passing\": null}}",
            "Passing must be greater than 0", NULL);
    svc_bad(f, "{\"Name\": \"web\", \"Weights\": {\"Passing\": 65536}}", "\"Weights.Passing\"",
            "out of range");
    svc_bad(f, "{\"Name\": \"web\", \"Weights\": {\"Passing\": 1, \"Warning\": -1}}",
            "\"Weights.Warning\"", "out of range");
    svc_bad(f, "{\"Name\": \"web\", \"Weights\": {\"Passing\": \"1\"}}", "\"Weights.Passing\"",
            "expected an integer");
    svc_bad(f, "{\"Name\": \"web\", \"Weights\": 1}", "\"Weights\"", "expected an object");
}

static void test_service_refuses_bad_meta(void **state)
{
    struct fx *f = *state;
    svc_bad(f, "{\"Name\": \"web\", \"Meta\": {\"a b\": \"x\"}}", "Invalid Meta",
            "\"a b\" contains invalid characters");
    svc_bad(f, "{\"Name\": \"web\", \"Meta\": {\"a.b\": \"x\"}}", "Invalid Meta",
            "invalid characters");
    svc_bad(f, "{\"Name\": \"web\", \"Meta\": {\"consul-version\": \"x\"}}", "Invalid Meta",
            "reserved prefix \"consul-\"");
    svc_bad(f, "{\"Name\": \"web\", \"Meta\": {\"\": \"x\"}}", "\"Meta\"", "empty key");

    char key[130], val[514];
    memset(key, 'k', sizeof key - 1);
    memset(val, 'v', sizeof val - 1);
    key[sizeof key - 1] = '\0';
    val[sizeof val - 1] = '\0';

    /* 128-character keys and 512-character values are the limits */
    key[128] = '\0';
    val[512] = '\0';
    json_t *v = json_pack("{s:s,s:{s:s}}", "Name", "web", "Meta", key, val);
    assert_int_equal(decode_svc_json(f, v), 0);
    json_decref(v);

    key[128] = 'k'; /* 129 and 513: one over */
    val[512] = 'v';
    svc_bad_json(f, json_pack("{s:s,s:{s:s}}", "Name", "web", "Meta", key, "x"), "Invalid Meta",
                 "key longer than 128");
    svc_bad_json(f, json_pack("{s:s,s:{s:s}}", "Name", "web", "Meta", "k", val), "Invalid Meta",
                 "value for \"k\" longer than 512");

    /* at most 64 pairs */
    json_t *meta = json_object();
    for (int i = 0; i < 64; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        json_object_set_new(meta, k, json_string("v"));
    }
    v = json_pack("{s:s,s:O}", "Name", "web", "Meta", meta);
    assert_int_equal(decode_svc_json(f, v), 0);
    assert_int_equal(f->svc.n_meta, 64);
    json_decref(v);
    json_object_set_new(meta, "k64", json_string("v"));
    svc_bad_json(f, json_pack("{s:s,s:o}", "Name", "web", "Meta", meta), "Invalid Meta",
                 "more than 64 pairs");
}

static void test_service_refuses_bad_names(void **state)
{
    struct fx *f = *state;
    char name[ZONE_NAME_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0'; /* 256 characters */

    svc_bad_json(f, json_pack("{s:s}", "Name", name), "Invalid service name", "longer than 255");
    svc_bad_json(f, json_pack("{s:s,s:s}", "Name", "web", "ID", name), "Invalid service ID",
                 "longer than 255");
    name[ZONE_NAME_MAX] = '\0'; /* 255 is fine */
    json_t *v = json_pack("{s:s}", "Name", name);
    assert_int_equal(decode_svc_json(f, v), 0);
    json_decref(v);

    svc_bad(f, "{\"Name\": \"we\\nb\"}", "Invalid service name", "control character");
    svc_bad(f, "{\"Name\": \"web\", \"ID\": \"w\\u0001\"}", "Invalid service ID",
            "control character");
    svc_bad(f, "{\"Name\": \"web\", \"ID\": \"w\\u007f\"}", "Invalid service ID",
            "control character");
    svc_bad(f, "{\"Name\": \"web\", \"Address\": \"10.0.0.1\\t\"}", "Invalid service Address",
            "control character");
}

static void test_service_refuses_unsupported(void **state)
{
    struct fx *f = *state;
    svc_bad(f, "{\"Name\": \"web\", \"Kind\": \"connect-proxy\"}", "Invalid service Kind",
            "connect-proxy");
    svc_bad(f, "{\"Name\": \"web\", \"Connect\": {\"Native\": true}}",
            "Service field \"Connect\" is not supported", NULL);
    svc_bad(f, "{\"Name\": \"web\", \"Proxy\": {\"DestinationServiceName\": \"x\"}}",
            "Service field \"Proxy\" is not supported", NULL);
    svc_bad(f, "{\"Name\": \"web\", \"Namespace\": \"team\"}",
            "Service field \"Namespace\" is not supported", NULL);
    svc_bad(f, "{\"Name\": \"web\", \"socket_path\": \"/run/x.sock\"}",
            "Service field \"socket_path\" is not supported", NULL);
}

/* ---- checks ----------------------------------------------------------------------------- */

static void test_check_node_defaults(void **state)
{
    struct fx *f = *state;
    chk_ok(f, "{\"Name\": \"mem\", \"TTL\": \"15s\"}");
    assert_string_equal(f->chk.node, "node1");
    assert_string_equal(f->chk.name, "mem");
    assert_string_equal(f->chk.check_id, "mem"); /* CheckID defaults to Name */
    assert_int_equal(f->chk.status, ZONE_HEALTH_CRITICAL);
    assert_string_equal(f->chk.type, "ttl");
    assert_true(f->chk.ttl_ms == 15000);
    assert_null(f->chk.service_id); /* the endpoint fills "" */
    assert_string_equal(f->chk.notes, "");
    assert_string_equal(f->chk.output, "");

    chk_ok(f, "{\"name\": \"mem\", \"id\": \"m1\", \"ttl\": \"1m\", \"status\": \"passing\", "
              "\"notes\": \"watch\", \"service_id\": \"web\"}");
    assert_string_equal(f->chk.check_id, "m1");
    assert_int_equal(f->chk.status, ZONE_HEALTH_PASSING);
    assert_true(f->chk.ttl_ms == 60000);
    assert_string_equal(f->chk.notes, "watch");
    assert_string_equal(f->chk.service_id, "web");

    chk_ok(f, "{\"Name\": \"mem\", \"CheckID\": \"m2\", \"TTL\": 5000000000}");
    assert_string_equal(f->chk.check_id, "m2");
    assert_true(f->chk.ttl_ms == 5000);

    chk_bad(f, "{\"TTL\": \"10s\"}", "Missing check name", NULL);
    chk_bad(f, "{\"TTL\": \"10s\", \"ID\": \"x\"}", "Missing check name", NULL);
}

static void test_check_http(void **state)
{
    struct fx *f = *state;
    chk_ok(f, "{\"Name\": \"h\", \"HTTP\": \"http://127.0.0.1:8080/health\", "
              "\"Interval\": \"10s\"}");
    assert_string_equal(f->chk.type, "http");
    assert_string_equal(f->chk.http, "http://127.0.0.1:8080/health");
    assert_string_equal(f->chk.method, "GET");
    assert_true(f->chk.interval_ms == 10000);
    assert_true(f->chk.timeout_ms == 10000); /* Consul's default timeout */
    assert_true(f->chk.ttl_ms == 0);

    chk_ok(f, "{\"Name\": \"h\", \"HTTP\": \"http://x/\", \"Method\": \"POST\", "
              "\"Interval\": \"30s\", \"Timeout\": \"2s\", "
              "\"DeregisterCriticalServiceAfter\": \"90s\"}");
    assert_string_equal(f->chk.method, "POST");
    assert_true(f->chk.interval_ms == 30000);
    assert_true(f->chk.timeout_ms == 2000);
    assert_true(f->chk.deregister_after_ms == 90000);

    chk_bad(f, "{\"Name\": \"h\", \"HTTP\": \"http://x/\"}", "Interval must be > 0", NULL);
    chk_bad(f, "{\"Name\": \"h\", \"HTTP\": \"http://x/\", \"Interval\": \"0s\"}",
            "Interval must be > 0", NULL);
    chk_bad(f, "{\"Name\": \"h\", \"HTTP\": \"https://x/\", \"Interval\": \"10s\"}",
            "HTTP must be an http:// URL", NULL);
    chk_bad(f, "{\"Name\": \"h\", \"HTTP\": \"x:80/\", \"Interval\": \"10s\"}",
            "HTTP must be an http:// URL", NULL);
}

static void test_check_tcp_and_interval_clamp(void **state)
{
    struct fx *f = *state;
    chk_ok(f, "{\"Name\": \"t\", \"TCP\": \"127.0.0.1:22\", \"Interval\": \"5s\"}");
    assert_string_equal(f->chk.type, "tcp");
    assert_string_equal(f->chk.tcp, "127.0.0.1:22");
    assert_true(f->chk.interval_ms == 5000);
    assert_true(f->chk.timeout_ms == 10000);

    /* Consul clamps intervals below one second up to one second */
    chk_ok(f, "{\"Name\": \"t\", \"TCP\": \"127.0.0.1:22\", \"Interval\": \"100ms\"}");
    assert_true(f->chk.interval_ms == 1000);
    chk_ok(f, "{\"Name\": \"t\", \"TCP\": \"127.0.0.1:22\", \"Interval\": 1}");
    assert_true(f->chk.interval_ms == 1000);
    chk_ok(f, "{\"Name\": \"t\", \"HTTP\": \"http://x/\", \"Interval\": \"999ms\"}");
    assert_true(f->chk.interval_ms == 1000);
    chk_ok(f, "{\"Name\": \"t\", \"TCP\": \"127.0.0.1:22\", \"Interval\": \"1001ms\"}");
    assert_true(f->chk.interval_ms == 1001);

    chk_bad(f, "{\"Name\": \"t\", \"TCP\": \"127.0.0.1:22\"}", "Interval must be > 0", NULL);
}

static void test_check_needs_exactly_one_kind(void **state)
{
    struct fx *f = *state;
    chk_bad(f, "{\"Name\": \"c\"}", "must provide TTL or HTTP or TCP", NULL);
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": \"0s\"}", "must provide TTL or HTTP or TCP", NULL);
    chk_bad(f, "{\"Name\": \"c\", \"HTTP\": \"\", \"TCP\": \"\", \"Interval\": \"10s\"}",
            "must provide TTL or HTTP or TCP", NULL);
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": \"10s\", \"HTTP\": \"http://x/\", \"Interval\": \"1s\"}",
            "only one of TTL, HTTP, TCP", NULL);
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": \"10s\", \"TCP\": \"x:1\"}",
            "only one of TTL, HTTP, TCP", NULL);
    chk_bad(f, "{\"Name\": \"c\", \"HTTP\": \"http://x/\", \"TCP\": \"x:1\", \"Interval\": \"1s\"}",
            "only one of TTL, HTTP, TCP", NULL);
    chk_bad(f,
            "{\"Name\": \"c\", \"TTL\": \"1s\", \"HTTP\": \"http://x/\", \"TCP\": \"x:1\", "
            "\"Interval\": \"1s\"}",
            "only one of TTL, HTTP, TCP", NULL);
}

static void test_check_refuses_scripts(void **state)
{
    struct fx *f = *state;
    /* a shell line is not run: scripts are argv only */
    chk_bad(f, "{\"Name\": \"s\", \"Script\": \"/bin/true\", \"Interval\": \"10s\"}",
            "is not supported by Herald", "\"Script\"");
    chk_bad(f, "{\"Name\": \"s\", \"docker_container_id\": \"abc\", \"Interval\": \"10s\"}",
            "is not supported by Herald", "\"docker_container_id\"");
    chk_bad(f, "{\"Name\": \"s\", \"Shell\": \"/bin/sh\", \"TTL\": \"10s\"}",
            "is not supported by Herald", "\"Shell\"");
    /* Args over HTTP need enable_script_checks (off in this fixture): Consul's words */
    assert_int_equal(
        decode_chk(f, "{\"Name\": \"s\", \"Args\": [\"/bin/true\"], \"Interval\": \"10s\"}"),
        BASE_EACL);
    assert_contains(f->err, "Scripts are disabled on this agent from remote calls");
    assert_int_equal(decode_chk(f, "{\"Name\": \"s\", \"ScriptArgs\": [\"/bin/true\"], "
                                   "\"Interval\": \"10s\"}"),
                     BASE_EACL);
    chk_bad(f, "{\"Name\": \"s\", \"Args\": [\"/bin/true\", 1], \"Interval\": \"10s\"}", "\"Args\"",
            "element 1");
    /* empty script fields, as some clients always send them, are fine */
    chk_ok(f, "{\"Name\": \"s\", \"TTL\": \"10s\", \"Script\": \"\", \"Args\": [], "
              "\"ScriptArgs\": null, \"DockerContainerID\": \"\", \"Shell\": \"\"}");
    /* and a service's check says which one it was */
    f->err[0] = '\0';
    json_t *v = J("{\"Name\": \"web\", \"Check\": {\"Args\": [\"x\"], \"Interval\": \"1s\"}}");
    assert_int_equal(decode_svc_json(f, v), BASE_EACL);
    json_decref(v);
    assert_contains(f->err, "Check: Scripts are disabled");
}

static void test_check_unsupported_fields(void **state)
{
    struct fx *f = *state;
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": \"10s\", \"OutputMaxSize\": 10}",
            "Check field \"OutputMaxSize\" is not supported", NULL);
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": \"10s\", \"GRPC\": \"127.0.0.1:9000\"}",
            "Check field \"GRPC\" is not supported", NULL);
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": \"10s\", \"alias_service\": \"web\"}",
            "Check field \"alias_service\" is not supported", NULL);
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": \"10s\", \"SuccessBeforePassing\": -3}",
            "\"SuccessBeforePassing\"", "out of range");
    /* empty ones pass, and read-only fields a client echoes back are ignored */
    chk_ok(f, "{\"Name\": \"c\", \"TTL\": \"10s\", \"TLSSkipVerify\": false, \"Header\": {}, "
              "\"Body\": \"\", \"SuccessBeforePassing\": null, \"GRPC\": \"\", "
              "\"Output\": \"stale\", \"Node\": \"other\", \"ServiceName\": \"x\", "
              "\"ServiceTags\": [\"t\"], \"Type\": \"http\", \"CreateIndex\": 3, "
              "\"ModifyIndex\": 4, \"Definition\": {\"TTL\": \"1s\"}}");
    assert_string_equal(f->chk.node, "node1");
    assert_string_equal(f->chk.output, "");
    assert_string_equal(f->chk.type, "ttl");
    assert_null(f->chk.service_name);
}

static void test_check_refuses(void **state)
{
    struct fx *f = *state;
    f->err[0] = '\0';
    json_t *v = json_array();
    assert_int_equal(api__decode_check_def(f->api, v, &f->ar, NULL, 0, 1, true, &f->chk, f->err),
                     BASE_EINVAL);
    assert_contains(f->err, "check must be an object");
    json_decref(v);

    chk_bad(f, "{\"Name\": \"c\", \"TTL\": \"10s\", \"Bogus\": 1}", "unknown field", "\"Bogus\"");
    chk_bad(f, "{\"Name\": 5, \"TTL\": \"10s\"}", "\"Name\"", "expected a string");
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": 1.5}", "\"TTL\"", "duration");
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": \"soon\"}", "\"TTL\"", "invalid duration");
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": -1}", "\"TTL\"", "negative duration");
    chk_bad(f, "{\"Name\": \"c\", \"TCP\": \"x:1\", \"Interval\": \"often\"}", "\"Interval\"",
            "invalid duration");
    chk_bad(f, "{\"Name\": \"c\", \"TCP\": \"x:1\", \"Interval\": \"1s\", \"Timeout\": true}",
            "\"Timeout\"", "duration");
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": \"1s\", \"DeregisterCriticalServiceAfter\": \"x\"}",
            "\"DeregisterCriticalServiceAfter\"", "invalid duration");
    chk_bad(f, "{\"Name\": \"c\", \"HTTP\": 80, \"Interval\": \"1s\"}", "\"HTTP\"",
            "expected a string");
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": \"1s\", \"Status\": \"bogus\"}", "Invalid check status",
            "\"bogus\"");
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": \"1s\", \"Status\": \"maintenance\"}",
            "Invalid check status", NULL);
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": \"1s\", \"Status\": 0}", "\"Status\"",
            "expected a string");
    chk_bad(f, "{\"Name\": \"c\", \"TTL\": \"1s\", \"CheckID\": \"a\\u0007b\"}", "Invalid CheckID",
            "control character");

    char id[ZONE_NAME_MAX + 2];
    memset(id, 'c', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    v = json_pack("{s:s,s:s,s:s}", "Name", "c", "TTL", "1s", "CheckID", id);
    f->err[0] = '\0';
    assert_int_equal(api__decode_check_def(f->api, v, &f->ar, NULL, 0, 1, true, &f->chk, f->err),
                     BASE_EINVAL);
    assert_contains(f->err, "Invalid CheckID");
    assert_contains(f->err, "longer than 255");
    json_decref(v);
}

/* ---- api_service_def_decode: the register command built from a body --------------------- */

static void test_service_def_decode_command(void **state)
{
    struct fx *f = *state;
    struct zone_cmd cmd;
    const char *body = "{\"Name\": \"web\", \"Port\": 80, \"Check\": {\"TTL\": \"10s\"}}";
    assert_int_equal(api_service_def_decode(f->api, body, strlen(body), &f->ar, &cmd, f->err), 0);
    assert_int_equal(cmd.type, ZONE_CMD_REGISTER);
    assert_true(cmd.skip_node_update);
    assert_string_equal(cmd.node.name, "node1");
    assert_string_equal(cmd.node.id, "11111111-2222-3333-4444-555555555555");
    assert_string_equal(cmd.node.address, "127.0.0.1");
    assert_string_equal(cmd.node.datacenter, "dc1");
    assert_non_null(cmd.service);
    assert_string_equal(cmd.service->id, "web");
    assert_int_equal(cmd.service->port, 80);
    assert_int_equal(cmd.n_checks, 1);
    assert_string_equal(cmd.checks[0].check_id, "service:web");

    /* duplicate keys, exact or in another case: the last one wins, as with Go's decoder */
    const char *dup = "{\"Name\": \"a\", \"Port\": 1, \"Name\": \"b\", \"port\": 2, "
                      "\"Meta\": {\"k\": \"1\", \"k\": \"2\"}}";
    assert_int_equal(api_service_def_decode(f->api, dup, strlen(dup), &f->ar, &cmd, f->err), 0);
    assert_string_equal(cmd.service->name, "b");
    assert_int_equal(cmd.service->port, 2);
    assert_int_equal(cmd.service->n_meta, 1);
    assert_string_equal(cmd.service->meta[0].value, "2");
    /* in document order, across spellings and escapes, and in nested objects whose earlier
     * occurrence was dropped */
    static const struct {
        const char *body, *name, *ttl;
    } last[] = {
        {"{\"Name\": \"a\", \"name\": \"b\", \"Name\": \"c\"}", "c", NULL},
        {"{\"Name\": \"a\", \"name\": \"b\", \"Name\": \"c\", \"name\": \"d\"}", "d", NULL},
        {"{\"N\\u0061me\": \"a\", \"name\": \"b\", \"Name\": \"c\"}", "c", NULL},
        {"{\"Name\": \"a\", \"n\\u0061me\": \"b\", \"name\": \"c\", \"NAME\": \"d\", "
         "\"name\": \"e\"}",
         "e", NULL},
        {"{\"Name\": \"x\", \"Check\": {\"ttl\": \"1s\", \"TTL\": \"2s\"}, \"check\": 5, "
         "\"Check\": {\"TTL\": \"4s\", \"ttl\": \"5s\", \"TTL\": \"6s\"}}",
         "x", "6s"},
        {"{\"Name\": \"x\", \"Check\": {\"TTL\": \"4s\", \"ttl\": \"5s\", \"TTL\": \"6s\"}, "
         "\"Check\": {\"ttl\": \"7s\", \"TTL\": \"8s\", \"ttl\": \"9s\"}}",
         "x", "9s"},
    };
    for (size_t i = 0; i < BASE_ARRAY_LEN(last); i++) {
        f->err[0] = '\0';
        int rc = api_service_def_decode(f->api, last[i].body, strlen(last[i].body), &f->ar, &cmd,
                                        f->err);
        if (rc)
            fail_msg("%s: %s", last[i].body, f->err);
        assert_string_equal(cmd.service->name, last[i].name);
        if (last[i].ttl) {
            assert_int_equal(cmd.n_checks, 1);
            assert_int_equal(cmd.checks[0].ttl_ms, (uint64_t)(last[i].ttl[0] - '0') * 1000);
        }
    }

    static const struct {
        const char *body, *want;
    } bad[] = {
        {"", "empty body"},
        {"{\"Name\": ", "Request decode failed"},
        {"[\"web\"]", "expected an object"},
        {"\"web\"", "Request decode failed"},
        {"{\"Name\": \"web\", \"Nope\": 1}", "\"Nope\""},
    };
    for (size_t i = 0; i < BASE_ARRAY_LEN(bad); i++) {
        f->err[0] = '\0';
        assert_int_equal(
            api_service_def_decode(f->api, bad[i].body, strlen(bad[i].body), &f->ar, &cmd, f->err),
            BASE_EINVAL);
        assert_contains(f->err, bad[i].want);
    }
}

/* Consul's documented service definition spells the tagged address entry's fields in
 * lowercase: {"lan": {"address": "10.0.0.5", "port": 8080}}. */
static void test_service_tagged_addresses_lowercase_keys(void **state)
{
    struct fx *f = *state;
    svc_ok(f, "{\"name\": \"web\", \"tagged_addresses\": "
              "{\"lan\": {\"address\": \"10.0.0.5\", \"port\": 8080}}}");
    assert_int_equal(f->svc.n_tagged_addresses, 1);
    assert_string_equal(f->svc.tagged_addresses[0].key, "lan");
    assert_string_equal(f->svc.tagged_addresses[0].value, "10.0.0.5");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_service_tagged_addresses_lowercase_keys),
        TEST(test_service_defaults),
        TEST(test_service_all_fields),
        TEST(test_service_lowercase_keys),
        TEST(test_service_tolerated_fields),
        TEST(test_service_single_check_defaults),
        TEST(test_service_multiple_checks_numbered),
        TEST(test_service_check_status_and_service_id),
        TEST(test_service_check_errors_are_wrapped),
        TEST(test_service_duplicate_check_ids),
        TEST(test_service_too_many_checks),
        TEST(test_service_refuses_unknown_field),
        TEST(test_service_refuses_missing_name),
        TEST(test_service_refuses_wrong_types),
        TEST(test_service_refuses_bad_weights),
        TEST(test_service_refuses_bad_meta),
        TEST(test_service_refuses_bad_names),
        TEST(test_service_refuses_unsupported),
        TEST(test_check_node_defaults),
        TEST(test_check_http),
        TEST(test_check_tcp_and_interval_clamp),
        TEST(test_check_needs_exactly_one_kind),
        TEST(test_check_refuses_scripts),
        TEST(test_check_unsupported_fields),
        TEST(test_check_refuses),
        TEST(test_service_def_decode_command),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
