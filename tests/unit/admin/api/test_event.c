/* Tests admin/api/event.c's pure parts and its ring: Consul's uuidToUint64 (the event list's
 * X-Consul-Index), the filters' regular expressions (POSIX extended, RE2's \d, RE2's refusals:
 * back-references, repetition over 1000, nesting over 1000), and what api_on_user_event keeps:
 * the node filter against our node name, "_rexec" ignored, a Version above 1 still kept, the
 * last 256 in order.
 *
 * The api here has no store and no consensus: a service filter finds no service, so it drops
 * the event, as on an agent with no services. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "admin/api/internal.h"

struct fx {
    uv_loop_t loop;
    struct api *api;
};

static int setup(void **state)
{
    static struct fx f0;
    struct fx *f = &f0;
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    struct api_config cfg = {
        .node_name = "web-1",
        .datacenter = "dc1",
        .node_id = "11111111-2222-3333-4444-555555555555",
        .advertise_addr = "127.0.0.1",
    };
    assert_int_equal(api_new(&f->loop, &cfg, &f->api), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    api_free(f->api);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    return 0;
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* ---- uuidToUint64 ------------------------------------------------------------------------ */

static void test_index_is_the_xor_of_the_halves(void **state)
{
    (void)state;
    /* 0xaf4e204e90a54cd8 ^ 0x91685b1b40188013, as Consul computes it */
    assert_true(api__event_index("af4e204e-90a5-4cd8-9168-5b1b40188013") == 4478402487971073227ULL);
    /* the example of Consul's event docs */
    assert_true(api__event_index("b54fe110-7af5-cafc-d1fb-afc8ba432b1c") == 0x64b44ed8c0b6e1e0ULL);
    /* upper case hex is hex to ParseUint too */
    assert_true(api__event_index("AF4E204E-90A5-4CD8-9168-5B1B40188013") == 4478402487971073227ULL);
    /* equal halves */
    assert_true(api__event_index("00000000-0000-0001-0000-000000000001") == 0);
}

static void test_index_of_a_non_uuid_is_zero(void **state)
{
    (void)state;
    assert_true(api__event_index(NULL) == 0);
    assert_true(api__event_index("") == 0);
    assert_true(api__event_index("af4e204e-90a5-4cd8-9168-5b1b4018801") == 0); /* 35 */
    assert_true(api__event_index("zf4e204e-90a5-4cd8-9168-5b1b40188013") == 0);
    assert_true(api__event_index("af4e204e-90a5-4cd8-9168-5b1b4018801g") == 0);
}

/* ---- filters ----------------------------------------------------------------------------- */

static bool compiles(const char *re_text, char *err)
{
    regex_t re;
    if (api__event_regcomp(re_text, &re, err))
        return false;
    regfree(&re);
    return true;
}

static bool matches(const char *re_text, const char *s)
{
    regex_t re;
    char err[BASE_ERRMSG_LEN];
    if (api__event_regcomp(re_text, &re, err))
        fail_msg("%s: %s", re_text, err);
    bool m = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return m;
}

static void test_filters_match_unanchored_as_go(void **state)
{
    char err[BASE_ERRMSG_LEN];
    (void)state;
    assert_true(matches("web", "my-web-1"));
    assert_false(matches("^web$", "web-1"));
    assert_true(matches("^(web|db)-[0-9]+$", "db-12"));
    assert_true(matches("a{2,3}", "xaax"));
    assert_true(matches("[[:alpha:]]+", "abc"));
    assert_true(matches("[]a]", "]"));
    /* RE2's \d and \D (POSIX has none), glibc's \w \s \b */
    assert_true(matches("^web-\\d+$", "web-12"));
    assert_false(matches("^web-\\d+$", "web-d"));
    assert_true(matches("^[a\\d]+$", "a1a2"));
    assert_true(matches("^\\D+$", "web"));
    assert_false(matches("^\\D+$", "web1"));
    assert_true(matches("\\bweb\\w*\\s", "my web1 x"));
    assert_true(compiles("(a{10}){100}", err)); /* 1000: RE2's limit, allowed */
    /* RE2 takes a '{' that starts no repetition as a literal; glibc refuses it (a difference
     * event.c documents) */
    assert_false(compiles("a{", err));
}

static void test_filters_refused(void **state)
{
    char err[BASE_ERRMSG_LEN];
    (void)state;
    assert_false(compiles("(", err));
    assert_non_null(strstr(err, "error parsing regexp"));
    assert_false(compiles("(a)\\1", err));
    assert_non_null(strstr(err, "invalid escape sequence"));
    assert_false(compiles("a{1001}", err));
    assert_non_null(strstr(err, "invalid repeat count"));
    assert_false(compiles("a{2,1001}", err));
    assert_false(compiles("(a{100}){100}", err));
    assert_non_null(strstr(err, "bad repetition operator"));
    assert_false(compiles("((a{40}){40})", err));
    /* a bracket's content is not syntax: "{" and "\1" in one are members */
    assert_true(compiles("[\\1{]", err));

    /* unrolled, at most 10000 atoms: glibc builds them all (11000: about 2.5 MB and 4 ms; a
     * 9 KB filter of them from a member of the pool would be 240 MB) */
    char wide[16 * 12 + 1] = "";
    for (int i = 0; i < 9; i++)
        strcat(wide, i ? "|x{1000}" : "x{1000}");
    assert_true(compiles(wide, err));
    strcat(wide, "|y{1000}|z{1000}");
    assert_false(compiles(wide, err));
    assert_non_null(strstr(err, "expression too large"));
    assert_true(compiles("((a{10}){10}){10}", err));
    assert_true(compiles("((ab{10}){10}c{100}){10}", err)); /* 2100 atoms */
    assert_false(compiles("(abcdefghijk){1000}", err));     /* 11000 */

    char deep[2 * 1001 + 2];
    memset(deep, '(', 1001);
    memset(deep + 1001, ')', 1001);
    deep[2002] = '\0';
    assert_false(compiles(deep, err));
    assert_non_null(strstr(err, "nests too deeply"));
    deep[0] = 'a'; /* 1000 deep: fine for RE2, and for glibc */
    deep[2001] = '\0';
    assert_true(compiles(deep, err));
}

/* ---- what an agent keeps ---------------------------------------------------------------- */

static void fire(struct api *a, const char *id, const char *name, const char *node_filter,
                 int64_t version, uint64_t ltime)
{
    struct api_user_event ev = {
        .id = id,
        .name = name,
        .node_filter = node_filter,
        .service_filter = "",
        .tag_filter = "",
        .version = version,
        .ltime = ltime,
    };
    api_on_user_event(a, &ev);
}

static void test_node_filter_and_rexec(void **state)
{
    struct fx *f = *state;
    struct api *a = f->api;
    fire(a, "00000000-0000-0000-0000-000000000001", "deploy", "", 1, 1);
    fire(a, "00000000-0000-0000-0000-000000000002", "deploy", "^web-", 1, 2);
    fire(a, "00000000-0000-0000-0000-000000000003", "deploy", "^db-", 1, 3);
    fire(a, "00000000-0000-0000-0000-000000000004", "deploy", "(", 1, 4); /* dropped */
    fire(a, "00000000-0000-0000-0000-000000000005", "_rexec", "", 1, 5);
    fire(a, "00000000-0000-0000-0000-000000000006", "future", "", 2, 6); /* kept, as Consul */
    struct api_user_event svc = {.id = "00000000-0000-0000-0000-000000000007",
                                 .name = "svc",
                                 .service_filter = "web",
                                 .ltime = 7};
    api_on_user_event(a, &svc); /* no service here */
    assert_int_equal(a->events_n, 3);
    assert_string_equal(a->events[0].id, "00000000-0000-0000-0000-000000000001");
    assert_string_equal(a->events[1].id, "00000000-0000-0000-0000-000000000002");
    assert_string_equal(a->events[2].name, "future");
    assert_true(a->events[2].ltime == 6);
}

static void test_the_last_256_are_kept(void **state)
{
    struct fx *f = *state;
    struct api *a = f->api;
    char id[40];
    for (unsigned i = 1; i <= 300; i++) {
        snprintf(id, sizeof id, "00000000-0000-0000-0000-%012u", i);
        fire(a, id, "e", "", 1, i);
    }
    assert_int_equal(a->events_n, API_EVENTS_MAX);
    const struct api__event *oldest = &a->events[a->events_head];
    const struct api__event *newest =
        &a->events[(a->events_head + a->events_n - 1) % API_EVENTS_MAX];
    assert_true(oldest->ltime == 300 - API_EVENTS_MAX + 1);
    assert_true(newest->ltime == 300);
}

int main(void)
{
    base_log_set_level(BASE_LOG_ERR); /* the dropped events' lines */
    const struct CMUnitTest tests[] = {
        TEST(test_index_is_the_xor_of_the_halves), TEST(test_index_of_a_non_uuid_is_zero),
        TEST(test_filters_match_unanchored_as_go), TEST(test_filters_refused),
        TEST(test_node_filter_and_rexec),          TEST(test_the_last_256_are_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
