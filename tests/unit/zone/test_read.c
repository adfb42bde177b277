/* Tests zone/read.c: getters and iterators (order, prefixes that must not bleed into longer
 * names, case-insensitive lookups, early stop), instance health, read isolation, and read
 * transactions used from another thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zone/fixture.h"
#include "zone/zone.h"

/* ---- fixture --------------------------------------------------------------------------- */
struct fx {
    char dir[64];
    struct zone_store *s;
    struct base_arena a;
    uint64_t idx;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    tmp_store_open(f->dir, "zone", &f->s);
    base_arena_init(&f->a);
    f->idx = 1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    base_arena_close(&f->a);
    tmp_store_close(f->dir, f->s);
    free(f);
    return 0;
}

static void reg(struct fx *f, const char *node, const char *addr, const char *sid,
                const char *sname, const char **tags, size_t n_tags)
{
    struct zone_service s = {
        .id = sid, .name = sname, .tags = tags, .n_tags = n_tags, .port = 8080};
    store_reg(f->s, f->idx++, node, addr, NULL, sid ? &s : NULL);
}

static void reg_check(struct fx *f, const char *node, const char *cid, const char *sid,
                      enum zone_health st)
{
    store_check(f->s, f->idx++, node, cid, sid, st);
}

static void kv_set(struct fx *f, const char *key, const void *v, size_t n)
{
    store_kv_set(f->s, f->idx++, key, v, n);
}

/* Collects "a|b|c" from iterator callbacks. */
struct seen {
    char s[512];
    int n;
    int stop_after; /* 0: never */
};

static int seen_add(struct seen *w, const char *a, const char *b)
{
    if (w->n++)
        strcat(w->s, "|");
    strcat(w->s, a);
    if (b) {
        strcat(w->s, "/");
        strcat(w->s, b);
    }
    return w->stop_after && w->n == w->stop_after ? 99 : 0;
}

static int on_node(void *data, const struct zone_node *n)
{
    return seen_add(data, n->name, NULL);
}

static int on_service(void *data, const struct zone_service *s)
{
    return seen_add(data, s->node, s->id);
}

static int on_check(void *data, const struct zone_check *c)
{
    return seen_add(data, c->node, c->check_id);
}

static int on_kv(void *data, const struct zone_kv *kv)
{
    return seen_add(data, kv->key, NULL);
}

static int on_name(void *data, const char *name)
{
    return seen_add(data, name, NULL);
}

/* ---- tests ----------------------------------------------------------------------------- */
static void test_nodes(void **state)
{
    struct fx *f = *state;
    struct zone_read *r;
    struct zone_node n;
    struct seen w = {.n = 0};

    reg(f, "beta", "10.0.0.2", NULL, NULL, NULL, 0);
    reg(f, "Alpha", "10.0.0.1", NULL, NULL, NULL, 0);
    reg(f, "alpha-2", "10.0.0.3", NULL, NULL, NULL, 0);
    assert_int_equal(zone_read_begin(f->s, &r), 0);
    assert_int_equal(zone_node_get(r, "ALPHA", &f->a, &n), 0);
    assert_string_equal(n.name, "Alpha");
    assert_string_equal(n.address, "10.0.0.1");
    assert_int_equal(zone_node_get(r, "alph", &f->a, &n), BASE_ENOTFOUND);
    assert_int_equal(zone_node_get(r, "", &f->a, &n), BASE_ENOTFOUND);
    assert_int_equal(zone_nodes_each(r, &f->a, on_node, &w), 0);
    assert_string_equal(w.s, "Alpha|alpha-2|beta");
    memset(&w, 0, sizeof w);
    w.stop_after = 2;
    assert_int_equal(zone_nodes_each(r, &f->a, on_node, &w), 99);
    assert_string_equal(w.s, "Alpha|alpha-2");
    zone_read_end(r);
}

static void test_services(void **state)
{
    struct fx *f = *state;
    const char *tags[] = {"primary"};
    struct zone_read *r;
    struct zone_service s;
    struct seen w = {.n = 0};

    reg(f, "n2", "10.0.0.2", "web-b", "Web", NULL, 0);
    reg(f, "n1", "10.0.0.1", "web-a", "web", tags, 1);
    reg(f, "n1", "10.0.0.1", "db", "db", NULL, 0);
    reg(f, "n1-x", "10.0.0.3", "web-c", "web", NULL, 0);
    reg(f, "n1", "10.0.0.1", "web-2", "web", NULL, 0);
    reg(f, "n3", "10.0.0.4", "x", "webby", NULL, 0);

    assert_int_equal(zone_read_begin(f->s, &r), 0);
    assert_int_equal(zone_service_get(r, "N1", "web-a", &f->a, &s), 0);
    assert_string_equal(s.name, "web");
    assert_int_equal(s.n_tags, 1);
    assert_string_equal(s.tags[0], "primary");
    assert_int_equal(s.port, 8080);
    assert_int_equal(zone_service_get(r, "n1", "web", &f->a, &s), BASE_ENOTFOUND);

    /* one node's services, by id, not n1-x's */
    assert_int_equal(zone_node_services_each(r, "n1", &f->a, on_service, &w), 0);
    assert_string_equal(w.s, "n1/db|n1/web-2|n1/web-a");

    /* instances of a name, any case, by node then id, not "webby" */
    memset(&w, 0, sizeof w);
    assert_int_equal(zone_service_instances_each(r, "WEB", &f->a, on_service, &w), 0);
    assert_string_equal(w.s, "n1/web-2|n1/web-a|n1-x/web-c|n2/web-b");
    memset(&w, 0, sizeof w);
    assert_int_equal(zone_service_instances_each(r, "we", &f->a, on_service, &w), 0);
    assert_int_equal(w.n, 0);

    memset(&w, 0, sizeof w);
    assert_int_equal(zone_service_names_each(r, &f->a, on_name, &w), 0);
    assert_string_equal(w.s, "db|web|webby");
    memset(&w, 0, sizeof w);
    w.stop_after = 1;
    assert_int_equal(zone_service_names_each(r, &f->a, on_name, &w), 99);
    assert_string_equal(w.s, "db");

    memset(&w, 0, sizeof w);
    assert_int_equal(zone_services_each(r, &f->a, on_service, &w), 0);
    assert_int_equal(w.n, 6);
    zone_read_end(r);
}

static void test_checks_and_health(void **state)
{
    struct fx *f = *state;
    struct zone_read *r;
    struct zone_check c;
    struct seen w = {.n = 0};
    enum zone_health h;

    reg(f, "n1", "10.0.0.1", "web", "web", NULL, 0);
    reg(f, "n1", "10.0.0.1", "db", "db", NULL, 0);
    reg(f, "n2", "10.0.0.2", "web", "web", NULL, 0);
    reg(f, "n1-b", "10.0.0.3", NULL, NULL, NULL, 0);

    assert_int_equal(zone_read_begin(f->s, &r), 0);
    assert_int_equal(zone_instance_health(r, "n1", "web", &h), 0);
    assert_int_equal(h, ZONE_HEALTH_PASSING); /* no checks */
    zone_read_end(r);

    reg_check(f, "n1", "web-http", "web", ZONE_HEALTH_WARNING);
    reg_check(f, "n1", "db-tcp", "db", ZONE_HEALTH_CRITICAL);
    reg_check(f, "n1", "serf", "", ZONE_HEALTH_PASSING);
    reg_check(f, "n2", "serf", "", ZONE_HEALTH_MAINT);
    reg_check(f, "n1-b", "serf", "", ZONE_HEALTH_CRITICAL);

    assert_int_equal(zone_read_begin(f->s, &r), 0);
    assert_int_equal(zone_check_get(r, "N1", "db-tcp", &f->a, &c), 0);
    assert_int_equal(c.status, ZONE_HEALTH_CRITICAL);
    assert_string_equal(c.service_name, "db");
    assert_int_equal(zone_check_get(r, "n1", "nope", &f->a, &c), BASE_ENOTFOUND);
    assert_int_equal(zone_node_checks_each(r, "n1", &f->a, on_check, &w), 0);
    assert_string_equal(w.s, "n1/db-tcp|n1/serf|n1/web-http");
    memset(&w, 0, sizeof w);
    assert_int_equal(zone_checks_each(r, &f->a, on_check, &w), 0);
    assert_int_equal(w.n, 5);

    /* worst of the node's own checks and the instance's; others ignored */
    assert_int_equal(zone_instance_health(r, "n1", "web", &h), 0);
    assert_int_equal(h, ZONE_HEALTH_WARNING);
    assert_int_equal(zone_instance_health(r, "N1", "db", &h), 0);
    assert_int_equal(h, ZONE_HEALTH_CRITICAL);
    assert_int_equal(zone_instance_health(r, "n1", "", &h), 0);
    assert_int_equal(h, ZONE_HEALTH_PASSING);
    assert_int_equal(zone_instance_health(r, "n2", "web", &h), 0);
    assert_int_equal(h, ZONE_HEALTH_MAINT); /* node in maintenance */
    assert_int_equal(zone_instance_health(r, "nobody", "web", &h), 0);
    assert_int_equal(h, ZONE_HEALTH_PASSING);
    zone_read_end(r);
}

static void test_kv(void **state)
{
    struct fx *f = *state;
    const uint8_t bin[] = {0, 1, 2, 0, 255};
    struct zone_read *r;
    struct zone_kv kv;
    struct seen w = {.n = 0};

    kv_set(f, "b", "2", 1);
    kv_set(f, "a/2", "x", 1);
    kv_set(f, "a/1", bin, sizeof bin);
    kv_set(f, "a", "", 0);
    kv_set(f, "A/1", "upper", 5);

    assert_int_equal(zone_read_begin(f->s, &r), 0);
    assert_int_equal(zone_kv_get(r, "a/1", &f->a, &kv), 0);
    assert_int_equal(kv.value_len, sizeof bin);
    assert_memory_equal(kv.value, bin, sizeof bin);
    assert_int_equal(zone_kv_get(r, "A/1", &f->a, &kv), 0); /* keys are case-sensitive */
    assert_memory_equal(kv.value, "upper", 5);
    assert_int_equal(zone_kv_get(r, "a/3", &f->a, &kv), BASE_ENOTFOUND);
    assert_int_equal(zone_kv_get(r, "", &f->a, &kv), BASE_ENOTFOUND);
    assert_int_equal(zone_kv_each(r, "a", &f->a, on_kv, &w), 0);
    assert_string_equal(w.s, "a|a/1|a/2");
    memset(&w, 0, sizeof w);
    assert_int_equal(zone_kv_each(r, "", &f->a, on_kv, &w), 0);
    assert_string_equal(w.s, "A/1|a|a/1|a/2|b");
    memset(&w, 0, sizeof w);
    assert_int_equal(zone_kv_each(r, "c", &f->a, on_kv, &w), 0);
    assert_int_equal(w.n, 0);
    zone_read_end(r);
}

/* A read sees the catalog as of its begin, whatever is applied meanwhile. */
static void test_read_isolation(void **state)
{
    struct fx *f = *state;
    struct zone_read *old, *now;
    struct zone_kv kv;
    struct zone_meta m;

    kv_set(f, "k", "1", 1);
    assert_int_equal(zone_read_begin(f->s, &old), 0);
    kv_set(f, "k", "2", 1);
    kv_set(f, "k2", "x", 1);
    assert_int_equal(zone_read_begin(f->s, &now), 0);
    assert_int_equal(zone_kv_get(old, "k", &f->a, &kv), 0);
    assert_memory_equal(kv.value, "1", 1);
    assert_int_equal(zone_kv_get(old, "k2", &f->a, &kv), BASE_ENOTFOUND);
    assert_int_equal(zone_meta_get(old, &m), 0);
    assert_true(m.applied == 1);
    assert_int_equal(zone_kv_get(now, "k", &f->a, &kv), 0);
    assert_memory_equal(kv.value, "2", 1);
    assert_int_equal(zone_meta_get(now, &m), 0);
    assert_true(m.applied == 3 && m.table_index[ZONE_TABLE_KV] == 3);
    zone_read_end(old);
    zone_read_end(now);
}

struct thread_arg {
    struct zone_read *r;
    struct zone_store *s;
    int found;
};

static void *reader_thread(void *p)
{
    struct thread_arg *t = p;
    struct base_arena a;
    struct zone_kv kv;

    base_arena_init(&a);
    /* a read begun on another thread, used here (MDB_NOTLS) */
    t->found = zone_kv_get(t->r, "k", &a, &kv) == 0;
    /* and reads begun and ended here */
    for (int i = 0; i < 50; i++) {
        struct zone_read *r;
        if (zone_read_begin(t->s, &r) != 0)
            break;
        t->found += zone_kv_get(r, "k", &a, &kv) == 0;
        zone_read_end(r);
        base_arena_reset(&a);
    }
    base_arena_close(&a);
    return NULL;
}

static void test_reads_on_other_threads(void **state)
{
    struct fx *f = *state;
    pthread_t th[4];
    struct thread_arg args[4];

    kv_set(f, "k", "v", 1);
    for (int i = 0; i < 4; i++) {
        args[i].s = f->s;
        args[i].found = 0;
        assert_int_equal(zone_read_begin(f->s, &args[i].r), 0);
        assert_int_equal(pthread_create(&th[i], NULL, reader_thread, &args[i]), 0);
    }
    for (int i = 0; i < 10; i++)
        kv_set(f, "other", "x", 1); /* the writer goes on meanwhile */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        zone_read_end(args[i].r);
        assert_int_equal(args[i].found, 51);
    }
}

/* Many more reads than the pool keeps, begun and ended in every order. */
static void test_read_pool(void **state)
{
    struct fx *f = *state;
    struct zone_read *r[100];
    struct zone_meta m;

    kv_set(f, "k", "v", 1);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 100; i++)
            assert_int_equal(zone_read_begin(f->s, &r[i]), 0);
        for (int i = 0; i < 100; i += 2)
            zone_read_end(r[i]);
        for (int i = 1; i < 100; i += 2) {
            assert_int_equal(zone_meta_get(r[i], &m), 0);
            assert_true(m.applied == 1);
            zone_read_end(r[i]);
        }
    }
    zone_read_end(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_services, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checks_and_health, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_on_other_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_pool, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
