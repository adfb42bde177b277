/* Tests zone/store.c: opening and reopening, and apply's semantics (Consul's catalog and KV
 * rules, per-command rollback, idempotent replay, the index bookkeeping). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zone/fixture.h"
#include "zone/zone.h"

/* ---- fixture --------------------------------------------------------------------------- */

static int setup(void **state)
{
    return store_fx_setup(state, "zone");
}

static int teardown(void **state)
{
    return store_fx_teardown(state);
}

/* Applies one command; returns its result, *touched the mask (may be NULL). */
static int apply1(struct store_fx *f, uint64_t idx, const struct zone_cmd *c, uint32_t *touched)
{
    return store_apply1(f->s, idx, c, touched);
}

static struct zone_cmd cmd_node(const char *node, const char *addr)
{
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_REGISTER;
    c.node.name = node;
    c.node.address = addr;
    c.node.datacenter = "dc1";
    return c;
}

static struct zone_cmd cmd_dereg(const char *node, const char *sid, const char *cid)
{
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_DEREGISTER;
    c.node.name = node;
    c.service_id = sid;
    c.check_id = cid;
    return c;
}

static struct zone_cmd cmd_kv_set(const char *key, const char *value)
{
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_KV_SET;
    c.kv.key = key;
    c.kv.value = (const uint8_t *)value;
    c.kv.value_len = strlen(value);
    return c;
}

static struct zone_cmd cmd_kv_del(const char *key, bool recurse)
{
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_KV_DELETE;
    c.kv.key = key;
    c.recurse = recurse;
    return c;
}

static struct zone_cmd cmd_check_update(const char *node, const char *cid, enum zone_health st,
                                        const char *output)
{
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_CHECK_UPDATE;
    c.node.name = node;
    c.check_id = cid;
    c.status = st;
    c.output = output;
    return c;
}

static struct zone_service svc(const char *id, const char *name, const char **tags, size_t n)
{
    struct zone_service s;
    memset(&s, 0, sizeof s);
    s.id = id;
    s.name = name;
    s.tags = tags;
    s.n_tags = n;
    s.port = 80;
    return s;
}

static struct zone_check chk(const char *id, const char *sid, enum zone_health st)
{
    struct zone_check c;
    memset(&c, 0, sizeof c);
    c.check_id = id;
    c.name = id;
    c.service_id = sid;
    c.status = st;
    c.type = "ttl";
    return c;
}

static struct zone_meta meta(struct store_fx *f)
{
    struct zone_meta m;
    assert_int_equal(zone_store_meta(f->s, &m), 0);
    return m;
}

static bool has_node(struct store_fx *f, const char *name, struct zone_node *out)
{
    struct zone_read *r;
    struct zone_node n;
    assert_int_equal(zone_read_begin(f->s, &r), 0);
    int rc = zone_node_get(r, name, &f->a, &n);
    if (rc == 0 && out) { /* copy the strings we look at out of the LMDB page */
        *out = n;
        out->name = base_arena_strdup(&f->a, n.name);
        out->address = base_arena_strdup(&f->a, n.address);
    }
    zone_read_end(r);
    assert_true(rc == 0 || rc == BASE_ENOTFOUND);
    return rc == 0;
}

static bool has_service(struct store_fx *f, const char *node, const char *id,
                        struct zone_service *out)
{
    struct zone_read *r;
    struct zone_service s;
    assert_int_equal(zone_read_begin(f->s, &r), 0);
    int rc = zone_service_get(r, node, id, &f->a, &s);
    if (rc == 0 && out) {
        *out = s;
        out->name = base_arena_strdup(&f->a, s.name);
        out->node = base_arena_strdup(&f->a, s.node);
        out->n_tags = 0; /* tags not kept past the read */
        out->tags = NULL;
    }
    zone_read_end(r);
    assert_true(rc == 0 || rc == BASE_ENOTFOUND);
    return rc == 0;
}

static bool has_check(struct store_fx *f, const char *node, const char *id, struct zone_check *out)
{
    struct zone_read *r;
    struct zone_check c;
    assert_int_equal(zone_read_begin(f->s, &r), 0);
    int rc = zone_check_get(r, node, id, &f->a, &c);
    if (rc == 0 && out) {
        *out = c;
        out->service_name = base_arena_strdup(&f->a, c.service_name);
        out->output = base_arena_strdup(&f->a, c.output);
        out->service_id = base_arena_strdup(&f->a, c.service_id);
        const char **tags = base_arena_alloc(&f->a, (c.n_service_tags + 1) * sizeof *tags);
        for (size_t i = 0; i < c.n_service_tags; i++)
            tags[i] = base_arena_strdup(&f->a, c.service_tags[i]);
        out->service_tags = tags;
    }
    zone_read_end(r);
    assert_true(rc == 0 || rc == BASE_ENOTFOUND);
    return rc == 0;
}

static bool has_kv(struct store_fx *f, const char *key, struct zone_kv *out)
{
    struct zone_read *r;
    struct zone_kv kv;
    assert_int_equal(zone_read_begin(f->s, &r), 0);
    int rc = zone_kv_get(r, key, &f->a, &kv);
    if (rc == 0 && out) {
        *out = kv;
        uint8_t *v = base_arena_alloc(&f->a, kv.value_len + 1);
        memcpy(v, kv.value, kv.value_len);
        v[kv.value_len] = 0;
        out->value = v;
        out->key = base_arena_strdup(&f->a, kv.key);
        out->session = base_arena_strdup(&f->a, kv.session);
    }
    zone_read_end(r);
    assert_true(rc == 0 || rc == BASE_ENOTFOUND);
    return rc == 0;
}

static int count_name(void *data, const char *name)
{
    (void)name;
    (*(int *)data)++;
    return 0;
}

static int svcidx_names(struct store_fx *f)
{
    struct zone_read *r;
    int n = 0;
    assert_int_equal(zone_read_begin(f->s, &r), 0);
    assert_int_equal(zone_service_names_each(r, &f->a, count_name, &n), 0);
    zone_read_end(r);
    return n;
}

#define T_NODES    ZONE_TABLE_BIT(ZONE_TABLE_NODES)
#define T_SERVICES ZONE_TABLE_BIT(ZONE_TABLE_SERVICES)
#define T_CHECKS   ZONE_TABLE_BIT(ZONE_TABLE_CHECKS)
#define T_KV       ZONE_TABLE_BIT(ZONE_TABLE_KV)

/* ---- tests ----------------------------------------------------------------------------- */
static void test_open_empty(void **state)
{
    struct store_fx *f = *state;
    struct zone_meta m = meta(f);
    assert_true(m.applied == 0 && m.index == 0);
    for (int i = 0; i < ZONE_TABLE_COUNT; i++)
        assert_true(m.table_index[i] == 0);
    assert_false(has_node(f, "x", NULL));
}

static void test_open_fails_cleanly(void **state)
{
    (void)state;
    char errmsg[BASE_ERRMSG_LEN] = "";
    struct zone_store *s = (struct zone_store *)1;
    assert_int_equal(zone_store_open("/proc/herald-no/such", 0, &s, errmsg), BASE_ESTORE);
    assert_null(s);
    assert_non_null(strstr(errmsg, "zone:"));
}

static void test_register_everything(void **state)
{
    struct store_fx *f = *state;
    const char *tags[] = {"primary", "v1"};
    struct zone_pair meta_rack[] = {{"rack", "r1"}};
    struct zone_service s = svc("web-1", "web", tags, 2);
    struct zone_check checks[] = {chk("serfHealth", "", ZONE_HEALTH_PASSING),
                                  chk("web-alive", "web-1", ZONE_HEALTH_WARNING)};
    struct zone_cmd c = cmd_node("Node-1", "10.0.0.1");
    uint32_t touched;
    struct zone_node n;
    struct zone_service sv;
    struct zone_check ck;

    c.node.meta = meta_rack;
    c.node.n_meta = 1;
    c.service = &s;
    c.checks = checks;
    c.n_checks = 2;
    assert_int_equal(apply1(f, 5, &c, &touched), 0);
    assert_int_equal(touched, T_NODES | T_SERVICES | T_CHECKS);

    assert_true(has_node(f, "node-1", &n));
    assert_string_equal(n.name, "Node-1");
    assert_string_equal(n.address, "10.0.0.1");
    assert_true(n.create_index == 5 && n.modify_index == 5);
    assert_true(has_service(f, "NODE-1", "web-1", &sv));
    assert_string_equal(sv.node, "Node-1");
    assert_true(sv.create_index == 5 && sv.modify_index == 5);
    assert_int_equal(sv.weight_passing, 1); /* 0, 0 given: the default */
    assert_int_equal(sv.weight_warning, 1);
    assert_true(has_check(f, "node-1", "web-alive", &ck));
    assert_int_equal(ck.status, ZONE_HEALTH_WARNING);
    assert_string_equal(ck.service_name, "web"); /* filled from the service */
    assert_int_equal(ck.n_service_tags, 2);
    assert_string_equal(ck.service_tags[1], "v1");
    assert_true(has_check(f, "node-1", "serfHealth", &ck));
    assert_string_equal(ck.service_name, "");
    assert_false(has_service(f, "node-1", "WEB-1", NULL)); /* ids are case-sensitive */

    struct zone_meta m = meta(f);
    assert_true(m.applied == 5 && m.index == 5);
    assert_true(m.table_index[ZONE_TABLE_NODES] == 5);
    assert_true(m.table_index[ZONE_TABLE_SERVICES] == 5);
    assert_true(m.table_index[ZONE_TABLE_CHECKS] == 5);
    assert_true(m.table_index[ZONE_TABLE_KV] == 0);
}

static void test_reregister_unchanged_touches_nothing(void **state)
{
    struct store_fx *f = *state;
    struct zone_service s = svc("web-1", "web", NULL, 0);
    struct zone_check ck = chk("c1", "web-1", ZONE_HEALTH_PASSING);
    struct zone_cmd c = cmd_node("n1", "10.0.0.1");
    uint32_t touched;
    struct zone_node n;
    struct zone_service sv;
    struct zone_check cc;

    c.service = &s;
    c.checks = &ck;
    c.n_checks = 1;
    assert_int_equal(apply1(f, 3, &c, &touched), 0);
    assert_int_equal(apply1(f, 4, &c, &touched), 0);
    assert_int_equal(touched, 0);
    struct zone_meta m = meta(f);
    assert_true(m.applied == 4 && m.index == 3);
    assert_true(has_node(f, "n1", &n) && n.modify_index == 3);
    assert_true(has_service(f, "n1", "web-1", &sv) && sv.modify_index == 3);
    assert_true(has_check(f, "n1", "c1", &cc) && cc.modify_index == 3);

    /* a changed node address bumps only the node */
    c.node.address = "10.0.0.2";
    assert_int_equal(apply1(f, 7, &c, &touched), 0);
    assert_int_equal(touched, T_NODES);
    assert_true(has_node(f, "n1", &n));
    assert_true(n.create_index == 3 && n.modify_index == 7);
    assert_string_equal(n.address, "10.0.0.2");
    assert_true(has_service(f, "n1", "web-1", &sv) && sv.modify_index == 3);
    m = meta(f);
    assert_true(m.index == 7 && m.table_index[ZONE_TABLE_NODES] == 7);
    assert_true(m.table_index[ZONE_TABLE_SERVICES] == 3);

    /* a changed check status bumps only the check */
    ck.status = ZONE_HEALTH_CRITICAL;
    assert_int_equal(apply1(f, 8, &c, &touched), 0);
    assert_int_equal(touched, T_CHECKS);
    assert_true(has_check(f, "n1", "c1", &cc));
    assert_true(cc.create_index == 3 && cc.modify_index == 8);
    assert_int_equal(cc.status, ZONE_HEALTH_CRITICAL);
}

static void test_skip_node_update(void **state)
{
    struct store_fx *f = *state;
    struct zone_service s = svc("db", "db", NULL, 0);
    struct zone_cmd c = cmd_node("n1", "10.0.0.1");
    uint32_t touched;
    struct zone_node n;
    struct zone_service sv;

    /* the node is missing: created from the command even with skip_node_update */
    c.skip_node_update = true;
    assert_int_equal(apply1(f, 2, &c, &touched), 0);
    assert_int_equal(touched, T_NODES);
    /* now it exists: its fields are kept, the service still goes in */
    c = cmd_node("N1", "192.0.2.9");
    c.skip_node_update = true;
    c.service = &s;
    assert_int_equal(apply1(f, 3, &c, &touched), 0);
    assert_int_equal(touched, T_SERVICES);
    assert_true(has_node(f, "n1", &n));
    assert_string_equal(n.address, "10.0.0.1");
    assert_string_equal(n.name, "n1");
    assert_true(n.modify_index == 2);
    assert_true(has_service(f, "n1", "db", &sv));
    assert_string_equal(sv.node, "n1"); /* the stored node's name */
}

static void test_check_on_unknown_service_changes_nothing(void **state)
{
    struct store_fx *f = *state;
    struct zone_check checks[] = {chk("node-check", "", ZONE_HEALTH_PASSING),
                                  chk("svc-check", "nope", ZONE_HEALTH_PASSING)};
    struct zone_cmd c = cmd_node("n1", "10.0.0.1");
    uint32_t touched;

    c.checks = checks;
    c.n_checks = 2;
    assert_int_equal(apply1(f, 9, &c, &touched), BASE_ENOTFOUND);
    assert_int_equal(touched, 0);
    assert_false(has_node(f, "n1", NULL));
    assert_false(has_check(f, "n1", "node-check", NULL));
    struct zone_meta m = meta(f);
    assert_true(m.applied == 9 && m.index == 0);
}

static void test_failed_command_rolls_back_alone(void **state)
{
    struct store_fx *f = *state;
    struct zone_cmd cmds[4];
    int res[4];
    uint32_t touched;

    cmds[0] = cmd_kv_set("a", "1");
    cmds[1] = cmd_kv_set("b", "2");
    cmds[1].has_cas = true;
    cmds[1].cas = 77; /* b does not exist: conflict */
    cmds[2] = cmd_node("n1", "10.0.0.1");
    cmds[3] = cmd_node("", "10.0.0.1"); /* invalid */
    store_apply_n(f->s, 10, cmds, 4, res, &touched);
    assert_int_equal(res[0], 0);
    assert_int_equal(res[1], BASE_ECONFLICT);
    assert_int_equal(res[2], 0);
    assert_int_equal(res[3], BASE_EPARSE);
    assert_int_equal(touched, T_KV | T_NODES);
    assert_true(has_kv(f, "a", NULL));
    assert_false(has_kv(f, "b", NULL));
    assert_true(has_node(f, "n1", NULL));
}

static void test_malformed_command_bytes(void **state)
{
    struct store_fx *f = *state;
    struct zone_cmd good = cmd_kv_set("k", "v");
    struct base_buf b;
    const uint8_t junk[] = {1, 4, 0xff, 0xff, 0xff, 0x7f};
    struct base_slice sl[3];
    int res[3];
    uint32_t touched;

    base_buf_init(&b);
    zone_cmd_encode(&good, &b);
    sl[0] = (struct base_slice){junk, sizeof junk};
    sl[1] = (struct base_slice){b.data, b.len};
    sl[2] = (struct base_slice){NULL, 0};
    assert_int_equal(zone_store_apply(f->s, 4, sl, 3, res, &touched), 0);
    assert_int_equal(res[0], BASE_EPARSE);
    assert_int_equal(res[1], 0);
    assert_int_equal(res[2], BASE_EPARSE);
    assert_int_equal(touched, T_KV);
    base_buf_free(&b);
}

static void test_validation(void **state)
{
    struct store_fx *f = *state;
    char long_name[ZONE_NAME_MAX + 2];
    char long_key[600];
    static uint8_t big[ZONE_KV_MAX_VALUE + 1];
    struct zone_cmd c;
    struct zone_service s = svc("", "", NULL, 0);
    struct zone_check ck = chk("", "", ZONE_HEALTH_PASSING);

    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    c = cmd_node(long_name, "1.2.3.4");
    assert_int_equal(apply1(f, 1, &c, NULL), BASE_ETOOBIG);
    c = cmd_node("n", "1.2.3.4");
    c.service = &s; /* no name, no id */
    assert_int_equal(apply1(f, 2, &c, NULL), BASE_EPARSE);
    c.service = NULL;
    c.checks = &ck; /* no id, no name */
    c.n_checks = 1;
    assert_int_equal(apply1(f, 3, &c, NULL), BASE_EPARSE);
    c = cmd_kv_set("", "v");
    assert_int_equal(apply1(f, 4, &c, NULL), BASE_EPARSE);
    c = cmd_kv_set("k", "");
    c.kv.value = big;
    c.kv.value_len = sizeof big;
    assert_int_equal(apply1(f, 5, &c, NULL), BASE_ETOOBIG);
    /* a key LMDB cannot hold */
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = 0;
    c = cmd_kv_set(long_key, "v");
    assert_int_equal(apply1(f, 6, &c, NULL), BASE_ETOOBIG);
    /* the longest key allowed is storable (ZONE_KV_MAX_KEY matches LMDB's limit) */
    long_key[ZONE_KV_MAX_KEY] = 0;
    c = cmd_kv_set(long_key, "v");
    assert_int_equal(apply1(f, 7, &c, NULL), 0);
    assert_true(has_kv(f, long_key, NULL));
    c = cmd_kv_del(long_key, false);
    assert_int_equal(apply1(f, 8, &c, NULL), 0);
    assert_false(has_kv(f, long_key, NULL));
    /* the longest names are storable alone, but not as one service's index key */
    long_name[ZONE_NAME_MAX] = 0;
    c = cmd_node(long_name, "1.2.3.4");
    s = svc(long_name, long_name, NULL, 0);
    c.service = &s;
    assert_int_equal(apply1(f, 9, &c, NULL), BASE_ETOOBIG);
    assert_false(has_node(f, long_name, NULL));
    c.service = NULL;
    assert_int_equal(apply1(f, 10, &c, NULL), 0);
    assert_true(has_node(f, long_name, NULL));
    c = cmd_dereg(long_name, NULL, NULL);
    assert_int_equal(apply1(f, 11, &c, NULL), 0);
    struct zone_meta m0 = meta(f);
    assert_true(m0.index == 11 && m0.table_index[ZONE_TABLE_KV] == 8);

    c = cmd_kv_del("", false);
    assert_int_equal(apply1(f, 17, &c, NULL), BASE_EPARSE);
    c = cmd_dereg("", NULL, NULL);
    assert_int_equal(apply1(f, 18, &c, NULL), BASE_EPARSE);
    c = cmd_check_update("n", "", ZONE_HEALTH_PASSING, "");
    assert_int_equal(apply1(f, 19, &c, NULL), BASE_EPARSE);
    struct zone_meta m = meta(f);
    assert_true(m.applied == 19 && m.index == 11);

    /* ids default to names */
    s = svc("", "api", NULL, 0);
    ck = chk("", "", ZONE_HEALTH_PASSING);
    ck.name = "alive";
    c = cmd_node("n", "1.2.3.4");
    c.service = &s;
    c.checks = &ck;
    c.n_checks = 1;
    assert_int_equal(apply1(f, 20, &c, NULL), 0);
    assert_true(has_service(f, "n", "api", NULL));
    assert_true(has_check(f, "n", "alive", NULL));
}

static void register_two_services(struct store_fx *f, uint64_t idx)
{
    struct zone_service s1 = svc("web-1", "web", NULL, 0), s2 = svc("db-1", "db", NULL, 0);
    struct zone_check c1[] = {chk("node-ok", "", ZONE_HEALTH_PASSING),
                              chk("web-ok", "web-1", ZONE_HEALTH_PASSING)};
    struct zone_check c2[] = {chk("db-ok", "db-1", ZONE_HEALTH_PASSING)};
    struct zone_cmd cmds[2];
    int res[2];
    uint32_t touched;

    cmds[0] = cmd_node("n1", "10.0.0.1");
    cmds[0].service = &s1;
    cmds[0].checks = c1;
    cmds[0].n_checks = 2;
    cmds[1] = cmd_node("n1", "10.0.0.1");
    cmds[1].service = &s2;
    cmds[1].checks = c2;
    cmds[1].n_checks = 1;
    store_apply_n(f->s, idx, cmds, 2, res, &touched);
    assert_int_equal(res[0], 0);
    assert_int_equal(res[1], 0);
}

static void test_deregister_node_cascades(void **state)
{
    struct store_fx *f = *state;
    struct zone_cmd c;
    uint32_t touched;

    register_two_services(f, 3);
    /* a node whose name extends n1's must survive */
    c = cmd_node("n1-b", "10.0.0.2");
    assert_int_equal(apply1(f, 4, &c, NULL), 0);
    assert_int_equal(svcidx_names(f), 2);

    c = cmd_dereg("N1", NULL, NULL);
    assert_int_equal(apply1(f, 6, &c, &touched), 0);
    assert_int_equal(touched, T_NODES | T_SERVICES | T_CHECKS);
    assert_false(has_node(f, "n1", NULL));
    assert_false(has_service(f, "n1", "web-1", NULL));
    assert_false(has_service(f, "n1", "db-1", NULL));
    assert_false(has_check(f, "n1", "node-ok", NULL));
    assert_false(has_check(f, "n1", "web-ok", NULL));
    assert_false(has_check(f, "n1", "db-ok", NULL));
    assert_int_equal(svcidx_names(f), 0);
    assert_true(has_node(f, "n1-b", NULL));
    struct zone_meta m = meta(f);
    assert_true(m.index == 6);
    assert_true(m.table_index[ZONE_TABLE_NODES] == 6);
    assert_true(m.table_index[ZONE_TABLE_SERVICES] == 6);
    assert_true(m.table_index[ZONE_TABLE_CHECKS] == 6);

    /* gone already: success, nothing touched */
    assert_int_equal(apply1(f, 7, &c, &touched), 0);
    assert_int_equal(touched, 0);
    assert_true(meta(f).index == 6);
}

static void test_deregister_service_and_check(void **state)
{
    struct store_fx *f = *state;
    struct zone_cmd c;
    uint32_t touched;

    register_two_services(f, 3);
    c = cmd_dereg("n1", "web-1", NULL);
    assert_int_equal(apply1(f, 4, &c, &touched), 0);
    assert_int_equal(touched, T_SERVICES | T_CHECKS);
    assert_false(has_service(f, "n1", "web-1", NULL));
    assert_false(has_check(f, "n1", "web-ok", NULL));
    assert_true(has_check(f, "n1", "node-ok", NULL));
    assert_true(has_service(f, "n1", "db-1", NULL));
    assert_true(has_check(f, "n1", "db-ok", NULL));
    assert_true(has_node(f, "n1", NULL));
    assert_int_equal(svcidx_names(f), 1);

    c = cmd_dereg("n1", NULL, "node-ok");
    assert_int_equal(apply1(f, 5, &c, &touched), 0);
    assert_int_equal(touched, T_CHECKS);
    assert_false(has_check(f, "n1", "node-ok", NULL));

    /* missing service or check: success, nothing touched */
    c = cmd_dereg("n1", "web-1", "node-ok");
    assert_int_equal(apply1(f, 6, &c, &touched), 0);
    assert_int_equal(touched, 0);
    c = cmd_dereg("nobody", "x", NULL);
    assert_int_equal(apply1(f, 7, &c, &touched), 0);
    assert_int_equal(touched, 0);
    struct zone_meta m = meta(f);
    assert_true(m.applied == 7 && m.index == 5);
    assert_true(m.table_index[ZONE_TABLE_SERVICES] == 4);
}

static void test_check_update(void **state)
{
    struct store_fx *f = *state;
    struct zone_check ck = chk("ttl", "", ZONE_HEALTH_CRITICAL), got;
    struct zone_cmd c = cmd_node("n1", "10.0.0.1");
    uint32_t touched;

    c.checks = &ck;
    c.n_checks = 1;
    assert_int_equal(apply1(f, 2, &c, NULL), 0);
    c = cmd_check_update("N1", "ttl", ZONE_HEALTH_PASSING, "ok");
    assert_int_equal(apply1(f, 3, &c, &touched), 0);
    assert_int_equal(touched, T_CHECKS);
    assert_true(has_check(f, "n1", "ttl", &got));
    assert_int_equal(got.status, ZONE_HEALTH_PASSING);
    assert_string_equal(got.output, "ok");
    assert_true(got.create_index == 2 && got.modify_index == 3);
    /* same status and output: no change (TTL heartbeats do not wake watchers) */
    assert_int_equal(apply1(f, 4, &c, &touched), 0);
    assert_int_equal(touched, 0);
    assert_true(has_check(f, "n1", "ttl", &got) && got.modify_index == 3);
    /* output alone changes */
    c.output = "still ok";
    assert_int_equal(apply1(f, 5, &c, &touched), 0);
    assert_int_equal(touched, T_CHECKS);
    /* missing */
    c = cmd_check_update("n1", "gone", ZONE_HEALTH_PASSING, "");
    assert_int_equal(apply1(f, 6, &c, &touched), BASE_ENOTFOUND);
    assert_int_equal(touched, 0);
    assert_true(meta(f).table_index[ZONE_TABLE_CHECKS] == 5);
}

static void test_service_rename_and_retag(void **state)
{
    struct store_fx *f = *state;
    const char *t1[] = {"a"}, *t2[] = {"a", "b"};
    struct zone_service s = svc("s1", "web", t1, 1);
    struct zone_check ck = chk("c", "s1", ZONE_HEALTH_PASSING), got;
    struct zone_cmd c = cmd_node("n1", "10.0.0.1");
    uint32_t touched;

    c.service = &s;
    c.checks = &ck;
    c.n_checks = 1;
    assert_int_equal(apply1(f, 2, &c, NULL), 0);
    /* the same service under another name, re-registered without its check */
    s = svc("s1", "api", t2, 2);
    c.checks = NULL;
    c.n_checks = 0;
    assert_int_equal(apply1(f, 3, &c, &touched), 0);
    assert_int_equal(touched, T_SERVICES | T_CHECKS);
    assert_int_equal(svcidx_names(f), 1); /* "web" is gone from the index */
    assert_true(has_check(f, "n1", "c", &got));
    assert_string_equal(got.service_name, "api");
    assert_int_equal(got.n_service_tags, 2);
    assert_true(got.modify_index == 3);

    /* a change of case only keeps the index row */
    s = svc("s1", "API", t2, 2);
    assert_int_equal(apply1(f, 4, &c, &touched), 0);
    assert_int_equal(touched, T_SERVICES | T_CHECKS);
    assert_int_equal(svcidx_names(f), 1);
}

static void test_kv_set_and_cas(void **state)
{
    struct store_fx *f = *state;
    struct zone_cmd c = cmd_kv_set("cfg/a", "one");
    struct zone_kv kv;
    uint32_t touched;

    c.kv.flags = 42;
    assert_int_equal(apply1(f, 2, &c, &touched), 0);
    assert_int_equal(touched, T_KV);
    assert_true(has_kv(f, "cfg/a", &kv));
    assert_string_equal((const char *)kv.value, "one");
    assert_true(kv.flags == 42 && kv.create_index == 2 && kv.modify_index == 2);
    assert_string_equal(kv.session, "");

    /* cas 0: only when absent */
    c = cmd_kv_set("cfg/a", "two");
    c.has_cas = true;
    c.cas = 0;
    assert_int_equal(apply1(f, 3, &c, &touched), BASE_ECONFLICT);
    assert_int_equal(touched, 0);
    /* stale cas */
    c.cas = 1;
    assert_int_equal(apply1(f, 4, &c, NULL), BASE_ECONFLICT);
    assert_true(has_kv(f, "cfg/a", &kv));
    assert_string_equal((const char *)kv.value, "one");
    assert_true(kv.modify_index == 2);
    /* matching cas */
    c.cas = 2;
    assert_int_equal(apply1(f, 5, &c, &touched), 0);
    assert_int_equal(touched, T_KV);
    assert_true(has_kv(f, "cfg/a", &kv));
    assert_string_equal((const char *)kv.value, "two");
    assert_true(kv.create_index == 2 && kv.modify_index == 5 && kv.flags == 0);
    /* cas 0 on an absent key creates it; non-zero cas on an absent key fails */
    c = cmd_kv_set("cfg/b", "x");
    c.has_cas = true;
    c.cas = 9;
    assert_int_equal(apply1(f, 6, &c, NULL), BASE_ECONFLICT);
    c.cas = 0;
    assert_int_equal(apply1(f, 7, &c, NULL), 0);
    /* a set of the same value still counts as a write (Consul bumps ModifyIndex) */
    c = cmd_kv_set("cfg/b", "x");
    assert_int_equal(apply1(f, 8, &c, &touched), 0);
    assert_int_equal(touched, T_KV);
    assert_true(has_kv(f, "cfg/b", &kv) && kv.modify_index == 8 && kv.create_index == 7);
    /* empty value */
    c = cmd_kv_set("cfg/empty", "");
    assert_int_equal(apply1(f, 9, &c, NULL), 0);
    assert_true(has_kv(f, "cfg/empty", &kv) && kv.value_len == 0);
    struct zone_meta m = meta(f);
    assert_true(m.index == 9 && m.table_index[ZONE_TABLE_KV] == 9);
    assert_true(m.table_index[ZONE_TABLE_NODES] == 0);
}

static void test_kv_delete(void **state)
{
    struct store_fx *f = *state;
    const char *keys[] = {"app/a", "app/b", "app/c/d", "apple", "b"};
    struct zone_cmd c;
    struct zone_kv kv;
    uint32_t touched;

    for (size_t i = 0; i < BASE_ARRAY_LEN(keys); i++) {
        c = cmd_kv_set(keys[i], "v");
        assert_int_equal(apply1(f, 10 + i, &c, NULL), 0);
    }
    /* single key, cas mismatch then match */
    c = cmd_kv_del("b", false);
    c.has_cas = true;
    c.cas = 3;
    assert_int_equal(apply1(f, 20, &c, &touched), BASE_ECONFLICT);
    assert_int_equal(touched, 0);
    assert_true(has_kv(f, "b", &kv));
    c.cas = kv.modify_index;
    assert_int_equal(apply1(f, 21, &c, &touched), 0);
    assert_int_equal(touched, T_KV);
    assert_false(has_kv(f, "b", NULL));
    /* missing key: success whatever the cas (Consul's kvsDeleteCASTxn), nothing touched */
    assert_int_equal(apply1(f, 22, &c, &touched), 0);
    assert_int_equal(touched, 0);
    c.has_cas = false;
    assert_int_equal(apply1(f, 23, &c, &touched), 0);
    assert_int_equal(touched, 0);
    /* prefix */
    c = cmd_kv_del("app/", true);
    assert_int_equal(apply1(f, 24, &c, &touched), 0);
    assert_int_equal(touched, T_KV);
    assert_false(has_kv(f, "app/a", NULL));
    assert_false(has_kv(f, "app/c/d", NULL));
    assert_true(has_kv(f, "apple", NULL));
    /* a prefix that matches nothing touches nothing */
    assert_int_equal(apply1(f, 25, &c, &touched), 0);
    assert_int_equal(touched, 0);
    assert_true(meta(f).table_index[ZONE_TABLE_KV] == 24);
    /* "" with recurse: everything */
    c = cmd_kv_del("", true);
    assert_int_equal(apply1(f, 26, &c, &touched), 0);
    assert_int_equal(touched, T_KV);
    assert_false(has_kv(f, "apple", NULL));
}

static void test_replay_is_noop(void **state)
{
    struct store_fx *f = *state;
    struct zone_cmd c = cmd_kv_set("k", "first");
    struct zone_kv kv;
    uint32_t touched;
    int res;

    assert_int_equal(apply1(f, 10, &c, &touched), 0);
    c = cmd_kv_set("k", "second");
    c.has_cas = true; /* would fail, were it applied */
    c.cas = 1;
    res = apply1(f, 10, &c, &touched);
    assert_int_equal(res, 0);
    assert_int_equal(touched, 0);
    res = apply1(f, 3, &c, &touched);
    assert_int_equal(res, 0);
    assert_int_equal(touched, 0);
    assert_true(has_kv(f, "k", &kv));
    assert_string_equal((const char *)kv.value, "first");
    assert_true(meta(f).applied == 10);
    /* an empty entry still advances applied */
    assert_int_equal(zone_store_apply(f->s, 11, NULL, 0, NULL, &touched), 0);
    assert_int_equal(touched, 0);
    struct zone_meta m = meta(f);
    assert_true(m.applied == 11 && m.index == 10);
}

static void test_indexes_only_grow(void **state)
{
    struct store_fx *f = *state;
    struct zone_meta prev, m;
    uint64_t idx = 1;

    memset(&prev, 0, sizeof prev);
    for (int round = 0; round < 30; round++, idx += 1 + (uint64_t)(round % 3)) {
        struct zone_cmd c;
        uint32_t touched;
        char key[16];
        snprintf(key, sizeof key, "k%d", round % 4);
        switch (round % 5) {
        case 0:
            c = cmd_kv_set(key, "v");
            break;
        case 1:
            c = cmd_kv_del(key, false);
            break;
        case 2:
            c = cmd_node(key, round % 2 ? "10.0.0.1" : "10.0.0.2");
            break;
        case 3:
            c = cmd_dereg(key, NULL, NULL);
            break;
        default:
            c = cmd_kv_del("", true);
            break;
        }
        assert_int_equal(apply1(f, idx, &c, &touched), 0);
        m = meta(f);
        assert_true(m.applied == idx);
        assert_true(m.index >= prev.index);
        for (int t = 0; t < ZONE_TABLE_COUNT; t++) {
            assert_true(m.table_index[t] >= prev.table_index[t]);
            /* a table's index moves exactly when apply says it touched it */
            bool moved = m.table_index[t] != prev.table_index[t];
            assert_int_equal(moved, (touched & ZONE_TABLE_BIT(t)) != 0);
            if (moved)
                assert_true(m.table_index[t] == idx);
        }
        assert_int_equal(m.index != prev.index, touched != 0);
        prev = m;
    }
}

static void test_reopen_keeps_data(void **state)
{
    struct store_fx *f = *state;
    struct zone_cmd c = cmd_node("n1", "10.0.0.1");
    struct zone_kv kv;

    assert_int_equal(apply1(f, 5, &c, NULL), 0);
    c = cmd_kv_set("k", "v");
    assert_int_equal(apply1(f, 6, &c, NULL), 0);
    zone_store_close(f->s);
    store_open_at(f->dir, &f->s);
    assert_true(has_node(f, "n1", NULL));
    assert_true(has_kv(f, "k", &kv));
    assert_string_equal((const char *)kv.value, "v");
    struct zone_meta m = meta(f);
    assert_true(m.applied == 6 && m.index == 6);
    assert_true(m.table_index[ZONE_TABLE_NODES] == 5);
    /* replay of the log after the restart skips what is there */
    c = cmd_kv_set("k", "replayed");
    uint32_t touched;
    assert_int_equal(apply1(f, 6, &c, &touched), 0);
    assert_int_equal(touched, 0);
    assert_true(has_kv(f, "k", &kv));
    assert_string_equal((const char *)kv.value, "v");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_empty, setup, teardown),
        cmocka_unit_test(test_open_fails_cleanly),
        cmocka_unit_test_setup_teardown(test_register_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reregister_unchanged_touches_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_skip_node_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_on_unknown_service_changes_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_command_rolls_back_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_command_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deregister_node_cascades, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deregister_service_and_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_rename_and_retag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv_set_and_cas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_is_noop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indexes_only_grow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
