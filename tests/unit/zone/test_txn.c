/* zone: ZONE_CMD_TXN (Consul's KV transactions) through zone_store_apply: all or nothing with a
 * failing op in the middle (the KV rows and indexes stay byte-identical), one index bump for
 * the whole transaction, each verb's failure reason and op index, and the command codec's
 * bounds (op count, verbs, truncation). */
#include "zone/fixture.h"

static int setup(void **state)
{
    return store_fx_setup(state, "txn");
}

static int teardown(void **state)
{
    return store_fx_teardown(state);
}

/* With HERALD_ZONE_CMD_SEEDS=dir, the encoded commands of the codec tests are written there:
 * the seeds of the zone_cmd fuzz target (make fuzz). */
static void seed(const char *name, const struct base_buf *b)
{
    const char *dir = getenv("HERALD_ZONE_CMD_SEEDS");
    char path[512];
    if (!dir)
        return;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b->data, 1, b->len, fp), b->len);
    fclose(fp);
}

static struct zone_txn_op op(enum zone_txn_verb verb, const char *key, const char *value,
                             uint64_t index, const char *session)
{
    struct zone_txn_op o;
    memset(&o, 0, sizeof o);
    o.verb = verb;
    o.kv.key = key;
    o.kv.value = (const uint8_t *)(value ? value : "");
    o.kv.value_len = value ? strlen(value) : 0;
    o.kv.modify_index = index;
    o.kv.session = session ? session : "";
    return o;
}

static int txn(struct store_fx *f, uint64_t idx, const struct zone_txn_op *ops, size_t n,
               uint32_t *touched)
{
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_TXN;
    c.txn = ops;
    c.n_txn = n;
    return store_apply1(f->s, idx, &c, touched);
}

/* Every KV row, byte for byte as the read gives it, and the meta indexes but "applied". */
static int dump_kv(void *data, const struct zone_kv *kv)
{
    struct base_buf *b = data;
    base_buf_put_str(b, kv->key);
    base_buf_put_bytes(b, kv->value, kv->value_len);
    base_buf_put_u64(b, kv->flags);
    base_buf_put_u64(b, kv->lock_index);
    base_buf_put_str(b, kv->session);
    base_buf_put_u64(b, kv->create_index);
    base_buf_put_u64(b, kv->modify_index);
    return 0;
}

static void dump(struct store_fx *f, struct base_buf *b)
{
    struct zone_read *r;
    struct zone_meta m;
    base_buf_init(b);
    assert_int_equal(zone_read_begin(f->s, &r), 0);
    assert_int_equal(zone_kv_each(r, "", &f->a, dump_kv, b), 0);
    assert_int_equal(zone_meta_get(r, &m), 0);
    base_buf_put_u64(b, m.index);
    for (int i = 0; i < ZONE_TABLE_COUNT; i++)
        base_buf_put_u64(b, m.table_index[i]);
    zone_read_end(r);
}

static bool kv_get(struct store_fx *f, const char *key, struct zone_kv *out)
{
    struct zone_read *r;
    assert_int_equal(zone_read_begin(f->s, &r), 0);
    int rc = zone_kv_get(r, key, &f->a, out);
    if (rc == 0) {
        out->session = base_arena_strdup(&f->a, out->session);
        uint8_t *v = base_arena_alloc(&f->a, out->value_len + 1);
        memcpy(v, out->value, out->value_len);
        out->value = v;
    }
    zone_read_end(r);
    return rc == 0;
}

static void expect_fail(int result, size_t want_op, enum zone_txn_why want_why)
{
    size_t op_i = 999;
    enum zone_txn_why why = 0;
    assert_true(zone_txn_failed(result, &op_i, &why));
    assert_int_equal(op_i, want_op);
    assert_int_equal(why, want_why);
}

static void test_all_or_nothing(void **state)
{
    struct store_fx *f = *state;
    struct base_buf before, after;
    uint32_t touched = 0xdead;

    store_kv_set(f->s, 10, "a", "1", 1);
    store_kv_set(f->s, 11, "b", "2", 1);
    dump(f, &before);
    /* the third of five ops fails (b's ModifyIndex is 11): nothing of the others stays */
    struct zone_txn_op ops[] = {
        op(ZONE_TXN_KV_SET, "a", "changed", 0, NULL), op(ZONE_TXN_KV_SET, "c", "new", 0, NULL),
        op(ZONE_TXN_KV_CAS, "b", "x", 999, NULL),     op(ZONE_TXN_KV_DELETE, "a", NULL, 0, NULL),
        op(ZONE_TXN_KV_SET, "d", "new", 0, NULL),
    };
    expect_fail(txn(f, 20, ops, 5, &touched), 2, ZONE_TXN_STALE);
    assert_int_equal(touched, 0);
    dump(f, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    base_buf_free(&after);

    /* the same with the cas right: everything applies */
    ops[2].kv.modify_index = 11;
    assert_int_equal(txn(f, 21, ops, 5, &touched), 0);
    assert_int_equal(touched, ZONE_TABLE_BIT(ZONE_TABLE_KV));
    struct zone_kv kv;
    assert_false(kv_get(f, "a", &kv));
    assert_true(kv_get(f, "c", &kv));
    assert_int_equal(kv.modify_index, 21);
    assert_true(kv_get(f, "b", &kv));
    assert_int_equal(kv.value_len, 1);
    assert_memory_equal(kv.value, "x", 1);
    base_buf_free(&before);
}

static void test_index_bumps_once(void **state)
{
    struct store_fx *f = *state;
    struct zone_txn_op ops[64];
    char keys[64][16];
    uint32_t touched;

    for (int i = 0; i < 64; i++) {
        snprintf(keys[i], sizeof keys[i], "k/%02d", i);
        ops[i] = op(ZONE_TXN_KV_SET, keys[i], "v", 0, NULL);
    }
    assert_int_equal(txn(f, 30, ops, 64, &touched), 0);
    struct zone_meta m;
    assert_int_equal(zone_store_meta(f->s, &m), 0);
    assert_int_equal(m.index, 30);
    assert_int_equal(m.applied, 30);
    assert_int_equal(m.table_index[ZONE_TABLE_KV], 30);
    for (int i = 0; i < 64; i++) {
        struct zone_kv kv;
        assert_true(kv_get(f, keys[i], &kv));
        assert_int_equal(kv.create_index, 30);
        assert_int_equal(kv.modify_index, 30);
    }
    /* reads only: nothing touched, the catalog index stays */
    struct zone_txn_op rd[] = {op(ZONE_TXN_KV_GET, "k/00", NULL, 0, NULL),
                               op(ZONE_TXN_KV_CHECK_INDEX, "k/01", NULL, 30, NULL)};
    assert_int_equal(txn(f, 31, rd, 2, &touched), 0);
    assert_int_equal(touched, 0);
    assert_int_equal(zone_store_meta(f->s, &m), 0);
    assert_int_equal(m.index, 30);
}

static void test_verbs_and_reasons(void **state)
{
    struct store_fx *f = *state;
    struct zone_cmd c;

    store_reg(f->s, 5, "n1", "127.0.0.1", "dc1", NULL);
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_SESSION_CREATE;
    c.session.id = "s1";
    c.session.name = "x";
    c.session.node = "n1";
    store_apply(f->s, 6, &c);
    c.session.id = "s2";
    store_apply(f->s, 7, &c);
    store_kv_set(f->s, 10, "k", "v", 1);

    struct {
        struct zone_txn_op o;
        enum zone_txn_why why; /* 0: succeeds */
    } cases[] = {
        {op(ZONE_TXN_KV_GET, "missing", NULL, 0, NULL), ZONE_TXN_MISSING},
        {op(ZONE_TXN_KV_GET, "k", NULL, 0, NULL), 0},
        {op(ZONE_TXN_KV_CHECK_INDEX, "k", NULL, 9, NULL), ZONE_TXN_INDEX},
        {op(ZONE_TXN_KV_CHECK_INDEX, "k", NULL, 10, NULL), 0},
        {op(ZONE_TXN_KV_CHECK_INDEX, "missing", NULL, 10, NULL), ZONE_TXN_MISSING},
        {op(ZONE_TXN_KV_CHECK_SESSION, "k", NULL, 0, "s1"), ZONE_TXN_OTHER_SESSION},
        {op(ZONE_TXN_KV_CHECK_SESSION, "k", NULL, 0, ""), 0},
        {op(ZONE_TXN_KV_CHECK_NOT_EXISTS, "k", NULL, 0, NULL), ZONE_TXN_EXISTS},
        {op(ZONE_TXN_KV_CHECK_NOT_EXISTS, "missing", NULL, 0, NULL), 0},
        {op(ZONE_TXN_KV_CAS, "new", "v", 1, NULL), ZONE_TXN_STALE},
        {op(ZONE_TXN_KV_CAS, "k", "v", 0, NULL), ZONE_TXN_STALE},
        {op(ZONE_TXN_KV_DELETE_CAS, "k", NULL, 3, NULL), ZONE_TXN_STALE},
        {op(ZONE_TXN_KV_LOCK, "k", "v", 0, NULL), ZONE_TXN_NO_SESSION},
        {op(ZONE_TXN_KV_LOCK, "k", "v", 0, "nope"), ZONE_TXN_INVALID_SESSION},
        {op(ZONE_TXN_KV_UNLOCK, "k", "v", 0, "s1"), ZONE_TXN_NOT_HELD},
        {op(ZONE_TXN_KV_GET_TREE, "", NULL, 0, NULL), 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* each case as the second op after a set that must not stay */
        struct zone_txn_op ops[2] = {op(ZONE_TXN_KV_SET, "side", "effect", 0, NULL), cases[i].o};
        int rc = txn(f, 20 + 2 * i, ops, 2, NULL);
        if (cases[i].why) {
            expect_fail(rc, 1, cases[i].why);
            struct zone_kv kv;
            assert_false(kv_get(f, "side", &kv));
        } else {
            assert_int_equal(rc, 0);
            struct zone_txn_op del = op(ZONE_TXN_KV_DELETE, "side", NULL, 0, NULL);
            assert_int_equal(txn(f, 21 + 2 * i, &del, 1, NULL), 0);
        }
    }
    /* lock, a second session refused, unlock, delete-tree */
    struct zone_txn_op l1[] = {op(ZONE_TXN_KV_LOCK, "lk", "a", 0, "s1"),
                               op(ZONE_TXN_KV_CHECK_SESSION, "lk", NULL, 0, "s1")};
    assert_int_equal(txn(f, 200, l1, 2, NULL), 0);
    struct zone_kv kv;
    assert_true(kv_get(f, "lk", &kv));
    assert_string_equal(kv.session, "s1");
    assert_int_equal(kv.lock_index, 1);
    struct zone_txn_op l2 = op(ZONE_TXN_KV_LOCK, "lk", "b", 0, "s2");
    expect_fail(txn(f, 201, &l2, 1, NULL), 0, ZONE_TXN_HELD);
    struct zone_txn_op u1[] = {op(ZONE_TXN_KV_UNLOCK, "lk", "c", 0, "s1"),
                               op(ZONE_TXN_KV_DELETE_TREE, "", NULL, 0, NULL)};
    assert_int_equal(txn(f, 202, u1, 2, NULL), 0);
    assert_false(kv_get(f, "lk", &kv));
    assert_false(kv_get(f, "k", &kv));
}

static void test_codec(void **state)
{
    struct store_fx *f = *state;
    struct base_buf b;
    struct zone_cmd c, d;
    struct zone_txn_op ops[ZONE_TXN_MAX_OPS + 1];

    for (size_t i = 0; i <= ZONE_TXN_MAX_OPS; i++)
        ops[i] = op(ZONE_TXN_KV_CAS, "key", "value", 77, "sess");
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_TXN;
    c.txn = ops;
    c.n_txn = 3;
    base_buf_init(&b);
    zone_cmd_encode(&c, &b);
    seed("txn-kv", &b);
    assert_int_equal(zone_cmd_decode(b.data, b.len, &f->a, &d), 0);
    assert_int_equal(d.type, ZONE_CMD_TXN);
    assert_int_equal(d.n_txn, 3);
    assert_int_equal(d.txn[2].verb, ZONE_TXN_KV_CAS);
    assert_string_equal(d.txn[2].kv.key, "key");
    assert_int_equal(d.txn[2].kv.value_len, 5);
    assert_memory_equal(d.txn[2].kv.value, "value", 5);
    assert_int_equal(d.txn[2].kv.modify_index, 77);
    assert_string_equal(d.txn[2].kv.session, "sess");
    /* every truncation is refused */
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(zone_cmd_decode(b.data, n, &f->a, &d), BASE_EPARSE);
    /* an unknown verb: the first op's verb byte follows version, type and the count */
    b.data[6] = 0;
    assert_int_equal(zone_cmd_decode(b.data, b.len, &f->a, &d), BASE_EPARSE);
    b.data[6] = ZONE_TXN_VERB_MAX + 1;
    assert_int_equal(zone_cmd_decode(b.data, b.len, &f->a, &d), BASE_EPARSE);
    /* a count over the bytes, over the maximum, zero */
    b.data[6] = ZONE_TXN_KV_SET;
    b.data[2] = 200;
    assert_int_equal(zone_cmd_decode(b.data, b.len, &f->a, &d), BASE_EPARSE);
    base_buf_free(&b);
    c.n_txn = ZONE_TXN_MAX_OPS + 1;
    base_buf_init(&b);
    zone_cmd_encode(&c, &b);
    assert_int_equal(zone_cmd_decode(b.data, b.len, &f->a, &d), BASE_EPARSE);
    base_buf_free(&b);
    c.n_txn = ZONE_TXN_MAX_OPS;
    base_buf_init(&b);
    zone_cmd_encode(&c, &b);
    assert_int_equal(zone_cmd_decode(b.data, b.len, &f->a, &d), 0);
    base_buf_free(&b);
    c.n_txn = 0;
    base_buf_init(&b);
    zone_cmd_encode(&c, &b);
    assert_int_equal(zone_cmd_decode(b.data, b.len, &f->a, &d), BASE_EPARSE);
    base_buf_free(&b);
    /* results: ours decode, others do not */
    size_t o;
    enum zone_txn_why w;
    assert_false(zone_txn_failed(0, &o, &w));
    assert_false(zone_txn_failed(BASE_ECONFLICT, &o, &w));
    assert_false(zone_txn_failed(BASE_EDAMAGED, &o, &w));
    expect_fail(ZONE_TXN_FAILURE(127, ZONE_TXN_BAD), 127, ZONE_TXN_BAD);
    assert_int_equal(zone_txn_verb_name(0), NULL);
    assert_string_equal(zone_txn_verb_name(ZONE_TXN_KV_CHECK_NOT_EXISTS), "check-not-exists");
}

static struct zone_txn_op node_op(enum zone_txn_verb verb, const char *node, const char *addr,
                                  uint64_t index)
{
    struct zone_txn_op o;
    memset(&o, 0, sizeof o);
    o.verb = verb;
    o.node.name = node;
    o.node.id = "";
    o.node.address = addr ? addr : "";
    o.node.datacenter = "dc1";
    o.node.modify_index = index;
    return o;
}

static struct zone_txn_op svc_op(enum zone_txn_verb verb, const char *node, const char *id,
                                 uint64_t index)
{
    struct zone_txn_op o = node_op(verb, node, NULL, 0);
    o.service.node = node;
    o.service.id = id;
    o.service.name = "web";
    o.service.kind = o.service.address = "";
    o.service.port = 80;
    o.service.modify_index = index;
    return o;
}

static struct zone_txn_op chk_op(enum zone_txn_verb verb, const char *node, const char *id,
                                 const char *sid, uint64_t index)
{
    struct zone_txn_op o = node_op(verb, node, NULL, 0);
    o.check.node = node;
    o.check.check_id = id;
    o.check.name = id;
    o.check.status = ZONE_HEALTH_PASSING;
    o.check.notes = o.check.output = o.check.service_name = o.check.type = "";
    o.check.http = o.check.method = o.check.tcp = o.check.body = o.check.udp = "";
    o.check.service_id = sid;
    o.check.modify_index = index;
    return o;
}

static bool has_row(struct store_fx *f, enum zone_txn_kind kind, const char *node, const char *id)
{
    struct zone_read *r;
    int rc;
    assert_int_equal(zone_read_begin(f->s, &r), 0);
    if (kind == ZONE_TXN_NODE) {
        struct zone_node n;
        rc = zone_node_get(r, node, &f->a, &n);
    } else if (kind == ZONE_TXN_SERVICE) {
        struct zone_service sv;
        rc = zone_service_get(r, node, id, &f->a, &sv);
    } else {
        struct zone_check ck;
        rc = zone_check_get(r, node, id, &f->a, &ck);
    }
    zone_read_end(r);
    return rc == 0;
}

static void test_catalog_ops(void **state)
{
    struct store_fx *f = *state;
    uint32_t touched;

    /* a service on a node that is not registered: nothing of the txn stays */
    struct zone_txn_op a[] = {op(ZONE_TXN_KV_SET, "k", "v", 0, NULL),
                              svc_op(ZONE_TXN_SERVICE_SET, "n1", "web1", 0)};
    expect_fail(txn(f, 10, a, 2, &touched), 1, ZONE_TXN_NO_NODE);
    assert_int_equal(touched, 0);
    /* node, service and check in one txn, at one index */
    struct zone_txn_op b[] = {node_op(ZONE_TXN_NODE_SET, "n1", "10.0.0.1", 0),
                              svc_op(ZONE_TXN_SERVICE_SET, "n1", "web1", 0),
                              chk_op(ZONE_TXN_CHECK_SET, "n1", "c1", "web1", 0),
                              node_op(ZONE_TXN_NODE_GET, "n1", NULL, 0)};
    assert_int_equal(txn(f, 11, b, 4, &touched), 0);
    assert_int_equal(touched, ZONE_TABLE_BIT(ZONE_TABLE_NODES) |
                                  ZONE_TABLE_BIT(ZONE_TABLE_SERVICES) |
                                  ZONE_TABLE_BIT(ZONE_TABLE_CHECKS));
    assert_true(has_row(f, ZONE_TXN_SERVICE, "n1", "web1"));
    assert_true(has_row(f, ZONE_TXN_CHECK, "n1", "c1"));
    /* reasons */
    struct {
        struct zone_txn_op o;
        enum zone_txn_why why;
    } cases[] = {
        {node_op(ZONE_TXN_NODE_GET, "nope", NULL, 0), ZONE_TXN_MISSING},
        {node_op(ZONE_TXN_NODE_CAS, "n1", "10.0.0.2", 5), ZONE_TXN_STALE},
        {node_op(ZONE_TXN_NODE_CAS, "n1", "10.0.0.2", 0), ZONE_TXN_STALE},
        {node_op(ZONE_TXN_NODE_CAS, "n2", "10.0.0.2", 3), ZONE_TXN_STALE},
        {node_op(ZONE_TXN_NODE_DELETE_CAS, "n1", NULL, 5), ZONE_TXN_STALE},
        {node_op(ZONE_TXN_NODE_DELETE_CAS, "nope", NULL, 0), ZONE_TXN_STALE},
        {svc_op(ZONE_TXN_SERVICE_GET, "n1", "nope", 0), ZONE_TXN_MISSING},
        {svc_op(ZONE_TXN_SERVICE_CAS, "n1", "web1", 3), ZONE_TXN_STALE},
        {svc_op(ZONE_TXN_SERVICE_DELETE_CAS, "n1", "web1", 3), ZONE_TXN_STALE},
        {chk_op(ZONE_TXN_CHECK_SET, "n1", "c2", "nosvc", 0), ZONE_TXN_NO_SERVICE},
        {chk_op(ZONE_TXN_CHECK_SET, "n9", "c2", "", 0), ZONE_TXN_NO_NODE},
        {chk_op(ZONE_TXN_CHECK_GET, "n1", "nope", "", 0), ZONE_TXN_MISSING},
        {chk_op(ZONE_TXN_CHECK_CAS, "n1", "c1", "web1", 3), ZONE_TXN_STALE},
        {chk_op(ZONE_TXN_CHECK_DELETE_CAS, "n1", "c1", "", 3), ZONE_TXN_STALE},
        {node_op(ZONE_TXN_NODE_SET, "", NULL, 0), ZONE_TXN_BAD},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct zone_txn_op ops[2] = {node_op(ZONE_TXN_NODE_SET, "side", "10.9.9.9", 0), cases[i].o};
        expect_fail(txn(f, 20 + i, ops, 2, NULL), 1, cases[i].why);
        assert_false(has_row(f, ZONE_TXN_NODE, "side", NULL));
    }
    /* the right indexes: cas and delete-cas go through */
    struct zone_txn_op c[] = {svc_op(ZONE_TXN_SERVICE_CAS, "n1", "web1", 11),
                              chk_op(ZONE_TXN_CHECK_DELETE_CAS, "n1", "c1", "", 11),
                              node_op(ZONE_TXN_NODE_CAS, "n2", "10.0.0.2", 0)};
    assert_int_equal(txn(f, 50, c, 3, NULL), 0);
    assert_false(has_row(f, ZONE_TXN_CHECK, "n1", "c1"));
    assert_true(has_row(f, ZONE_TXN_NODE, "n2", NULL));
    /* deleting a node takes its services */
    struct zone_txn_op d[] = {node_op(ZONE_TXN_NODE_DELETE, "n1", NULL, 0),
                              svc_op(ZONE_TXN_SERVICE_DELETE, "n2", "nothing", 0),
                              node_op(ZONE_TXN_NODE_DELETE_CAS, "n2", NULL, 50)};
    assert_int_equal(txn(f, 51, d, 3, NULL), 0);
    assert_false(has_row(f, ZONE_TXN_NODE, "n1", NULL));
    assert_false(has_row(f, ZONE_TXN_SERVICE, "n1", "web1"));
    assert_false(has_row(f, ZONE_TXN_NODE, "n2", NULL));
}

static void test_catalog_codec(void **state)
{
    struct store_fx *f = *state;
    struct base_buf b;
    struct zone_cmd c, d;
    struct zone_txn_op ops[] = {node_op(ZONE_TXN_NODE_CAS, "n1", "10.0.0.1", 7),
                                svc_op(ZONE_TXN_SERVICE_DELETE_CAS, "n1", "web1", 8),
                                chk_op(ZONE_TXN_CHECK_SET, "n1", "c1", "web1", 9),
                                op(ZONE_TXN_SESSION_DELETE, "", NULL, 0, "s1")};
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_TXN;
    c.txn = ops;
    c.n_txn = 4;
    base_buf_init(&b);
    zone_cmd_encode(&c, &b);
    seed("txn-catalog", &b);
    assert_int_equal(zone_cmd_decode(b.data, b.len, &f->a, &d), 0);
    assert_int_equal(d.n_txn, 4);
    assert_int_equal(d.txn[3].verb, ZONE_TXN_SESSION_DELETE);
    assert_string_equal(d.txn[3].kv.session, "s1");
    assert_string_equal(d.txn[0].node.address, "10.0.0.1");
    assert_int_equal(d.txn[0].node.modify_index, 7);
    assert_string_equal(d.txn[1].node.name, "n1");
    assert_string_equal(d.txn[1].service.id, "web1");
    assert_int_equal(d.txn[1].service.modify_index, 8);
    assert_string_equal(d.txn[2].check.check_id, "c1");
    assert_string_equal(d.txn[2].node.name, "n1");
    assert_int_equal(d.txn[2].check.modify_index, 9);
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(zone_cmd_decode(b.data, n, &f->a, &d), BASE_EPARSE);
    base_buf_free(&b);
}

/* A check set critical in a txn invalidates the sessions tied to it; when a later op fails,
 * that rolls back with the rest, and the lock delay it would have started is not started. */
static void test_rolled_back_invalidation_leaves_no_lock_delay(void **state)
{
    struct store_fx *f = *state;
    static const char *checks[] = {"c1"};
    struct zone_cmd c;

    store_reg(f->s, 5, "n1", "10.0.0.1", "dc1", NULL);
    store_check(f->s, 6, "n1", "c1", "", ZONE_HEALTH_PASSING);
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_SESSION_CREATE;
    c.session.id = "s1";
    c.session.name = "x";
    c.session.node = "n1";
    c.session.node_checks = checks;
    c.session.n_node_checks = 1;
    c.session.lock_delay_ms = 60000;
    store_apply(f->s, 7, &c);
    struct zone_txn_op lk = op(ZONE_TXN_KV_LOCK, "lk", "v", 0, "s1");
    assert_int_equal(txn(f, 8, &lk, 1, NULL), 0);

    struct zone_txn_op ops[] = {chk_op(ZONE_TXN_CHECK_SET, "n1", "c1", "", 0),
                                op(ZONE_TXN_KV_GET, "missing", NULL, 0, NULL)};
    ops[0].check.status = ZONE_HEALTH_CRITICAL;
    expect_fail(txn(f, 9, ops, 2, NULL), 1, ZONE_TXN_MISSING);
    assert_int_equal(zone_store_lock_delay(f->s, "lk"), 0);
    struct zone_kv kv;
    assert_true(kv_get(f, "lk", &kv));
    assert_string_equal(kv.session, "s1");

    /* a session delete in a txn that fails: the session and its lock stay */
    struct zone_txn_op sd[] = {op(ZONE_TXN_SESSION_DELETE, "", NULL, 0, "s1"),
                               op(ZONE_TXN_KV_CHECK_NOT_EXISTS, "lk", NULL, 0, NULL)};
    expect_fail(txn(f, 20, sd, 2, NULL), 1, ZONE_TXN_EXISTS);
    assert_true(kv_get(f, "lk", &kv));
    assert_string_equal(kv.session, "s1");
    assert_int_equal(zone_store_lock_delay(f->s, "lk"), 0);
    struct zone_txn_op none = op(ZONE_TXN_SESSION_DELETE, "", NULL, 0, "");
    expect_fail(txn(f, 21, &none, 1, NULL), 0, ZONE_TXN_NO_SESSION);
    struct zone_txn_op gone = op(ZONE_TXN_SESSION_DELETE, "", NULL, 0, "no-such-session");
    assert_int_equal(txn(f, 22, &gone, 1, NULL), 0);

    /* the same txn without the failing op: the session goes, its lock delay starts */
    assert_int_equal(txn(f, 30, ops, 1, NULL), 0);
    assert_true(zone_store_lock_delay(f->s, "lk") > 0);
    assert_true(kv_get(f, "lk", &kv));
    assert_string_equal(kv.session, "");
}

struct errs {
    size_t op[8];
    enum zone_txn_why why[8];
    size_t n;
};

static void err_add(void *data, size_t op_i, enum zone_txn_why why)
{
    struct errs *e = data;
    assert_true(e->n < 8);
    e->op[e->n] = op_i;
    e->why[e->n++] = why;
}

/* The dry run lists every failing op, each op seeing the ones before it (a failed one
 * skipped), and keeps nothing. */
static void test_txn_errors_lists_every_failure(void **state)
{
    struct store_fx *f = *state;
    struct base_buf before, after;
    struct errs e = {.n = 0};

    store_kv_set(f->s, 10, "b", "1", 1);
    dump(f, &before);
    struct zone_txn_op ops[] = {
        op(ZONE_TXN_KV_CAS, "b", "x", 999, NULL),             /* stale */
        op(ZONE_TXN_KV_SET, "x", "1", 0, NULL),               /* fine */
        op(ZONE_TXN_KV_CHECK_NOT_EXISTS, "x", NULL, 0, NULL), /* x is set by op 1 */
        op(ZONE_TXN_KV_GET, "missing", NULL, 0, NULL),        /* missing */
        op(ZONE_TXN_KV_CHECK_INDEX, "b", NULL, 10, NULL),     /* fine: op 0 did not apply */
    };
    assert_int_equal(zone_store_txn_errors(f->s, ops, 5, err_add, &e), 0);
    assert_int_equal(e.n, 3);
    assert_int_equal(e.op[0], 0);
    assert_int_equal(e.why[0], ZONE_TXN_STALE);
    assert_int_equal(e.op[1], 2);
    assert_int_equal(e.why[1], ZONE_TXN_EXISTS);
    assert_int_equal(e.op[2], 3);
    assert_int_equal(e.why[2], ZONE_TXN_MISSING);
    dump(f, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    base_buf_free(&before);
    base_buf_free(&after);
    /* the real apply names the first */
    expect_fail(txn(f, 11, ops, 5, NULL), 0, ZONE_TXN_STALE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_bumps_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verbs_and_reasons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_catalog_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_catalog_codec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_errors_lists_every_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rolled_back_invalidation_leaves_no_lock_delay, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
