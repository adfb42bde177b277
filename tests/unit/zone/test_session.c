/* zone: the sessions table and the lock rules, through zone_store_apply (pure apply): create
 * and its checks, destroy, renew, invalidation (critical check, deleted check, deleted service,
 * deregistered node), acquire/release and LockIndex, behavior delete, the lock delay, and
 * snapshots carrying sessions. */
#include "zone/fixture.h"

static int setup(void **state)
{
    return store_fx_setup(state, "session");
}

static int teardown(void **state)
{
    return store_fx_teardown(state);
}

static const char *serf[] = {"serfHealth"};

static struct zone_cmd cmd_create(const char *id, const char *node, const char **checks, size_t n,
                                  enum zone_session_behavior b, uint64_t delay_ms)
{
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_SESSION_CREATE;
    c.session.id = id;
    c.session.name = "test";
    c.session.node = node;
    c.session.node_checks = checks;
    c.session.n_node_checks = n;
    c.session.behavior = b;
    c.session.ttl_ms = 10000;
    c.session.lock_delay_ms = delay_ms;
    return c;
}

static struct zone_cmd cmd_id(enum zone_cmd_type t, const char *id)
{
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.type = t;
    c.session.id = id;
    return c;
}

static struct zone_cmd cmd_lock(enum zone_cmd_type t, const char *key, const char *v,
                                const char *sid)
{
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.type = t;
    c.kv.key = key;
    c.kv.value = (const uint8_t *)v;
    c.kv.value_len = strlen(v);
    c.kv.session = sid;
    return c;
}

static bool has_session(struct store_fx *f, const char *id, struct zone_session *out)
{
    struct zone_read *r;
    assert_int_equal(zone_read_begin(f->s, &r), 0);
    int rc = zone_session_get(r, id, &f->a, out);
    if (rc == 0) { /* copy what the test reads after the read ends */
        out->id = base_arena_strdup(&f->a, out->id);
        out->node = base_arena_strdup(&f->a, out->node);
    }
    zone_read_end(r);
    assert_true(rc == 0 || rc == BASE_ENOTFOUND);
    return rc == 0;
}

static bool get_kv(struct store_fx *f, const char *key, struct zone_kv *out)
{
    struct zone_read *r;
    assert_int_equal(zone_read_begin(f->s, &r), 0);
    int rc = zone_kv_get(r, key, &f->a, out);
    if (rc == 0)
        out->session = base_arena_strdup(&f->a, out->session);
    zone_read_end(r);
    assert_true(rc == 0 || rc == BASE_ENOTFOUND);
    return rc == 0;
}

/* node n1 with serfHealth passing and a service web with check web-chk */
static void base_catalog(struct store_fx *f)
{
    struct zone_service web = {.id = "web", .name = "web"};
    store_reg(f->s, 2, "n1", "10.0.0.1", "dc1", &web);
    store_check(f->s, 3, "n1", "serfHealth", "", ZONE_HEALTH_PASSING);
    store_check(f->s, 4, "n1", "web-chk", "web", ZONE_HEALTH_PASSING);
}

static void test_create_get_destroy(void **state)
{
    struct store_fx *f = *state;
    struct zone_session ss;
    uint32_t touched;

    base_catalog(f);
    struct zone_cmd c = cmd_create("s1", "N1", serf, 1, ZONE_SESSION_RELEASE, 15000);
    assert_int_equal(store_apply1(f->s, 10, &c, &touched), 0);
    assert_int_equal(touched, ZONE_TABLE_BIT(ZONE_TABLE_SESSIONS));
    assert_true(has_session(f, "s1", &ss));
    assert_true(ss.create_index == 10 && ss.modify_index == 10);
    assert_int_equal(ss.n_node_checks, 1);
    assert_int_equal(ss.ttl_ms, 10000);
    assert_int_equal(ss.lock_delay_ms, 15000);
    /* the same id again */
    assert_int_equal(store_apply1(f->s, 11, &c, &touched), BASE_ECONFLICT);
    /* unknown node, unknown check, critical check */
    c = cmd_create("s2", "nope", NULL, 0, ZONE_SESSION_RELEASE, 0);
    assert_int_equal(store_apply1(f->s, 12, &c, NULL), BASE_ENOTFOUND);
    const char *missing[] = {"missing"};
    c = cmd_create("s2", "n1", missing, 1, ZONE_SESSION_RELEASE, 0);
    assert_int_equal(store_apply1(f->s, 13, &c, NULL), BASE_ENOTFOUND);
    store_check(f->s, 14, "n1", "bad", "", ZONE_HEALTH_CRITICAL);
    const char *bad[] = {"bad"};
    c = cmd_create("s2", "n1", bad, 1, ZONE_SESSION_RELEASE, 0);
    assert_int_equal(store_apply1(f->s, 15, &c, NULL), BASE_ECONFLICT);
    c = cmd_create("", "n1", NULL, 0, ZONE_SESSION_RELEASE, 0);
    assert_int_equal(store_apply1(f->s, 16, &c, NULL), BASE_EPARSE);
    assert_false(has_session(f, "s2", &ss));
    /* renew: found, listed; unknown: ENOTFOUND */
    c = cmd_id(ZONE_CMD_SESSION_RENEW, "s1");
    assert_int_equal(store_apply1(f->s, 17, &c, &touched), 0);
    assert_int_equal(touched, 0);
    c = cmd_id(ZONE_CMD_SESSION_RENEW, "zz");
    assert_int_equal(store_apply1(f->s, 18, &c, NULL), BASE_ENOTFOUND);
    /* destroy, twice */
    c = cmd_id(ZONE_CMD_SESSION_DESTROY, "s1");
    assert_int_equal(store_apply1(f->s, 19, &c, &touched), 0);
    assert_int_equal(touched, ZONE_TABLE_BIT(ZONE_TABLE_SESSIONS));
    assert_false(has_session(f, "s1", &ss));
    assert_int_equal(store_apply1(f->s, 20, &c, &touched), 0);
    assert_int_equal(touched, 0);
}

static void collect_renewed(void *data, const char *id)
{
    char *buf = data;
    strcat(buf, id);
    strcat(buf, ",");
}

static void test_renewed_list(void **state)
{
    struct store_fx *f = *state;
    char seen[64] = "";

    base_catalog(f);
    struct zone_cmd c[3] = {cmd_create("a", "n1", NULL, 0, ZONE_SESSION_RELEASE, 0),
                            cmd_create("b", "n1", NULL, 0, ZONE_SESSION_RELEASE, 0)};
    int res[3];
    uint32_t touched;
    store_apply_n(f->s, 10, c, 2, res, &touched);
    c[0] = cmd_id(ZONE_CMD_SESSION_RENEW, "b");
    c[1] = cmd_id(ZONE_CMD_SESSION_RENEW, "gone");
    c[2] = cmd_id(ZONE_CMD_SESSION_RENEW, "a");
    store_apply_n(f->s, 11, c, 3, res, &touched);
    assert_true(res[0] == 0 && res[1] == BASE_ENOTFOUND && res[2] == 0);
    zone_store_renewed_each(f->s, collect_renewed, seen);
    assert_string_equal(seen, "b,a,");
    /* the next entry starts a new list; a replay lists nothing */
    seen[0] = 0;
    store_apply_n(f->s, 11, c, 3, res, &touched);
    zone_store_renewed_each(f->s, collect_renewed, seen);
    assert_string_equal(seen, "");
}

static void test_lock_index_sequence(void **state)
{
    struct store_fx *f = *state;
    struct zone_kv kv;

    base_catalog(f);
    struct zone_cmd c = cmd_create("s1", "n1", NULL, 0, ZONE_SESSION_RELEASE, 0);
    store_apply(f->s, 10, &c);
    c = cmd_create("s2", "n1", NULL, 0, ZONE_SESSION_RELEASE, 0);
    store_apply(f->s, 11, &c);

    /* acquire a new key: LockIndex 1 */
    c = cmd_lock(ZONE_CMD_KV_LOCK, "lk", "v1", "s1");
    assert_int_equal(store_apply1(f->s, 12, &c, NULL), 0);
    assert_true(get_kv(f, "lk", &kv));
    assert_true(kv.lock_index == 1 && strcmp(kv.session, "s1") == 0);
    assert_true(kv.create_index == 12 && kv.modify_index == 12);
    /* the holder re-acquires: value updated, LockIndex kept */
    c = cmd_lock(ZONE_CMD_KV_LOCK, "lk", "v2", "s1");
    assert_int_equal(store_apply1(f->s, 13, &c, NULL), 0);
    assert_true(get_kv(f, "lk", &kv));
    assert_true(kv.lock_index == 1 && kv.modify_index == 13);
    assert_memory_equal(kv.value, "v2", 2);
    /* another session: refused */
    c = cmd_lock(ZONE_CMD_KV_LOCK, "lk", "x", "s2");
    assert_int_equal(store_apply1(f->s, 14, &c, NULL), BASE_ECONFLICT);
    /* unknown session: invalid */
    c = cmd_lock(ZONE_CMD_KV_LOCK, "lk", "x", "nope");
    assert_int_equal(store_apply1(f->s, 15, &c, NULL), BASE_EINVAL);
    c = cmd_lock(ZONE_CMD_KV_LOCK, "lk", "x", "");
    assert_int_equal(store_apply1(f->s, 16, &c, NULL), BASE_EINVAL);
    /* release by a non-holder: refused; by the holder: Session cleared, LockIndex kept */
    c = cmd_lock(ZONE_CMD_KV_UNLOCK, "lk", "r", "s2");
    assert_int_equal(store_apply1(f->s, 17, &c, NULL), BASE_ECONFLICT);
    c = cmd_lock(ZONE_CMD_KV_UNLOCK, "lk", "r", "s1");
    assert_int_equal(store_apply1(f->s, 18, &c, NULL), 0);
    assert_true(get_kv(f, "lk", &kv));
    assert_true(kv.lock_index == 1 && kv.session[0] == 0 && kv.modify_index == 18);
    /* a plain set keeps lock index and session */
    store_kv_set(f->s, 19, "lk", "p", 1);
    assert_true(get_kv(f, "lk", &kv) && kv.lock_index == 1);
    /* a free key acquired again: LockIndex 2 */
    c = cmd_lock(ZONE_CMD_KV_LOCK, "lk", "v3", "s2");
    assert_int_equal(store_apply1(f->s, 20, &c, NULL), 0);
    assert_true(get_kv(f, "lk", &kv));
    assert_true(kv.lock_index == 2 && strcmp(kv.session, "s2") == 0);
    /* release of a missing key */
    c = cmd_lock(ZONE_CMD_KV_UNLOCK, "none", "", "s2");
    assert_int_equal(store_apply1(f->s, 21, &c, NULL), BASE_ECONFLICT);
}

static void test_invalidation_releases_or_deletes(void **state)
{
    struct store_fx *f = *state;
    struct zone_kv kv;
    struct zone_session ss;
    uint32_t touched;

    base_catalog(f);
    struct zone_cmd c = cmd_create("rel", "n1", serf, 1, ZONE_SESSION_RELEASE, 0);
    store_apply(f->s, 10, &c);
    c = cmd_create("del", "n1", serf, 1, ZONE_SESSION_DELETE, 5000);
    store_apply(f->s, 11, &c);
    c = cmd_lock(ZONE_CMD_KV_LOCK, "a", "1", "rel");
    store_apply(f->s, 12, &c);
    c = cmd_lock(ZONE_CMD_KV_LOCK, "b", "2", "del");
    store_apply(f->s, 13, &c);
    assert_int_equal(zone_store_lock_delay(f->s, "b"), 0);

    /* serfHealth goes critical: both sessions invalidated */
    struct zone_cmd u;
    memset(&u, 0, sizeof u);
    u.type = ZONE_CMD_CHECK_UPDATE;
    u.node.name = "N1";
    u.check_id = "serfHealth";
    u.status = ZONE_HEALTH_CRITICAL;
    u.output = "down";
    assert_int_equal(store_apply1(f->s, 14, &u, &touched), 0);
    assert_int_equal(touched, ZONE_TABLE_BIT(ZONE_TABLE_CHECKS) |
                                  ZONE_TABLE_BIT(ZONE_TABLE_SESSIONS) |
                                  ZONE_TABLE_BIT(ZONE_TABLE_KV));
    assert_false(has_session(f, "rel", &ss));
    assert_false(has_session(f, "del", &ss));
    assert_true(get_kv(f, "a", &kv));
    assert_true(kv.session[0] == 0 && kv.lock_index == 1 && kv.modify_index == 14);
    assert_false(get_kv(f, "b", &kv));
    /* the delete session had a lock delay: b is delayed, a is not */
    uint64_t d = zone_store_lock_delay(f->s, "b");
    assert_true(d > 0 && d <= 5000);
    assert_int_equal(zone_store_lock_delay(f->s, "a"), 0);
}

static void test_invalidation_by_register_and_deletes(void **state)
{
    struct store_fx *f = *state;
    struct zone_session ss;
    const char *web[] = {"web-chk"};

    base_catalog(f);
    /* a REGISTER that sets serfHealth critical (the leader's reconcile) */
    struct zone_cmd c = cmd_create("s1", "n1", serf, 1, ZONE_SESSION_RELEASE, 0);
    store_apply(f->s, 10, &c);
    store_check(f->s, 11, "n1", "serfHealth", "", ZONE_HEALTH_CRITICAL);
    assert_false(has_session(f, "s1", &ss));
    store_check(f->s, 12, "n1", "serfHealth", "", ZONE_HEALTH_PASSING);

    /* a service check deleted with its service */
    c = cmd_create("s2", "n1", NULL, 0, ZONE_SESSION_RELEASE, 0);
    c.session.service_checks = web;
    c.session.n_service_checks = 1;
    store_apply(f->s, 13, &c);
    c = cmd_create("s3", "n1", NULL, 0, ZONE_SESSION_RELEASE, 0); /* tied to nothing */
    store_apply(f->s, 14, &c);
    struct zone_cmd d;
    memset(&d, 0, sizeof d);
    d.type = ZONE_CMD_DEREGISTER;
    d.node.name = "n1";
    d.service_id = "web";
    store_apply(f->s, 15, &d);
    assert_false(has_session(f, "s2", &ss));
    assert_true(has_session(f, "s3", &ss));

    /* a node check deregistered alone */
    c = cmd_create("s4", "n1", serf, 1, ZONE_SESSION_RELEASE, 0);
    store_apply(f->s, 16, &c);
    d.service_id = "";
    d.check_id = "serfHealth";
    store_apply(f->s, 17, &d);
    assert_false(has_session(f, "s4", &ss));
    assert_true(has_session(f, "s3", &ss));

    /* the node deregistered: every session of it goes */
    d.check_id = "";
    store_apply(f->s, 18, &d);
    assert_false(has_session(f, "s3", &ss));
}

static void test_snapshot_carries_sessions(void **state)
{
    struct store_fx *f = *state;
    struct zone_session ss;
    struct base_buf b;
    struct zone_snapshot_info info;
    char errmsg[BASE_ERRMSG_LEN];

    base_catalog(f);
    struct zone_cmd c = cmd_create("s1", "n1", serf, 1, ZONE_SESSION_DELETE, 0);
    store_apply(f->s, 10, &c);
    base_buf_init(&b);
    assert_int_equal(zone_store_snapshot(f->s, &b), 0);
    assert_int_equal(zone_snapshot_check(b.data, b.len, &info, errmsg), 0);
    assert_int_equal(info.version, 4);
    assert_int_equal(info.rows[ZONE_TABLE_SESSIONS], 1);

    char dir2[64];
    struct zone_store *s2;
    bool skipped;
    tmp_store_open(dir2, "session2", &s2);
    assert_int_equal(zone_store_restore(s2, b.data, b.len, &skipped), 0);
    assert_false(skipped);
    struct zone_read *r;
    assert_int_equal(zone_read_begin(s2, &r), 0);
    assert_int_equal(zone_session_get(r, "s1", &f->a, &ss), 0);
    assert_int_equal(ss.behavior, ZONE_SESSION_DELETE);
    assert_string_equal(ss.node, "n1");
    zone_read_end(r);
    tmp_store_close(dir2, s2);
    /* and the store reopens with its sessions checked */
    zone_store_close(f->s);
    store_open_at(f->dir, &f->s);
    assert_true(has_session(f, "s1", &ss));
    base_buf_free(&b);
}

/* A version 3 snapshot (before sessions: eight databases) still restores, with no sessions. */
static void test_version_3_snapshot_restores(void **state)
{
    struct store_fx *f = *state;
    struct base_buf b;
    struct zone_snapshot_info info;
    char errmsg[BASE_ERRMSG_LEN];
    static const uint8_t sessions_section[] = {8,   0,   0, 0, 's', 'e', 's', 's', 'i', 'o',
                                               'n', 's', 0, 0, 0,   0,   0,   0,   0,   0};
    size_t sec = sizeof sessions_section;

    base_catalog(f);
    base_buf_init(&b);
    assert_int_equal(zone_store_snapshot(f->s, &b), 0);
    assert_memory_equal(b.data + b.len - 4 - sec, sessions_section, sec);
    b.len -= 4 + sec;
    b.data[8] = 3;  /* version */
    b.data[20] = 8; /* databases */
    base_buf_put_u32(&b, crc32c(b.data, b.len));
    assert_int_equal(zone_snapshot_check(b.data, b.len, &info, errmsg), 0);
    assert_int_equal(info.version, 3);

    char dir2[64];
    struct zone_store *s2;
    bool skipped;
    tmp_store_open(dir2, "session3", &s2);
    struct zone_cmd c = cmd_create("s1", "n1", NULL, 0, ZONE_SESSION_RELEASE, 0);
    store_reg(s2, 1, "n1", "10.0.0.1", "dc1", NULL);
    store_apply(s2, 2, &c);
    assert_int_equal(zone_store_restore(s2, b.data, b.len, &skipped), 0);
    assert_false(skipped);
    struct zone_read *r;
    struct zone_session ss;
    assert_int_equal(zone_read_begin(s2, &r), 0);
    assert_int_equal(zone_session_get(r, "s1", &f->a, &ss), BASE_ENOTFOUND);
    zone_read_end(r);
    tmp_store_close(dir2, s2);
    base_buf_free(&b);
}

static void test_cmd_roundtrip(void **state)
{
    struct store_fx *f = *state;
    struct base_buf b;
    struct zone_cmd c = cmd_create("s1", "n1", serf, 1, ZONE_SESSION_DELETE, 7), d;
    c.session.service_checks = serf;
    c.session.n_service_checks = 1;

    base_buf_init(&b);
    zone_cmd_encode(&c, &b);
    assert_int_equal(zone_cmd_decode(b.data, b.len, &f->a, &d), 0);
    assert_string_equal(d.session.id, "s1");
    assert_int_equal(d.session.n_service_checks, 1);
    assert_int_equal(d.session.lock_delay_ms, 7);
    /* every truncation is refused */
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(zone_cmd_decode(b.data, n, &f->a, &d), BASE_EPARSE);
    b.len = 0;
    c = cmd_lock(ZONE_CMD_KV_LOCK, "k", "v", "s1");
    c.has_cas = true;
    c.cas = 9;
    zone_cmd_encode(&c, &b);
    assert_int_equal(zone_cmd_decode(b.data, b.len, &f->a, &d), 0);
    assert_true(d.has_cas && d.cas == 9 && strcmp(d.kv.session, "s1") == 0);
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(zone_cmd_decode(b.data, n, &f->a, &d), BASE_EPARSE);
    base_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_get_destroy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renewed_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_index_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalidation_releases_or_deletes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalidation_by_register_and_deletes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_carries_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_3_snapshot_restores, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmd_roundtrip, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
