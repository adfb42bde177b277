/* Tests admin/http/url.c: percent-decoding and its refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "admin/http/http.h"

static const char *dec(struct base_arena *a, const char *s)
{
    return http_url_decode(a, s, strlen(s));
}

static void test_decodes_escapes(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    assert_string_equal(dec(&a, ""), "");
    assert_string_equal(dec(&a, "plain"), "plain");
    assert_string_equal(dec(&a, "a%20b"), "a b");
    assert_string_equal(dec(&a, "%2F%2f"), "//");
    assert_string_equal(dec(&a, "%e2%82%AC"), "\xe2\x82\xac");
    assert_string_equal(dec(&a, "a+b"), "a+b"); /* "+" stays */
    assert_string_equal(dec(&a, "%25zz"), "%zz");
    assert_string_equal(dec(&a, "%41%42%43"), "ABC");
    /* only n bytes are read */
    assert_string_equal(http_url_decode(&a, "ab%20cd", 5), "ab ");
    base_arena_close(&a);
}

static void test_refuses_bad_escapes(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    assert_null(dec(&a, "%"));
    assert_null(dec(&a, "abc%"));
    assert_null(dec(&a, "%4"));
    assert_null(dec(&a, "%zz"));
    assert_null(dec(&a, "%g0"));
    assert_null(dec(&a, "%0g"));
    assert_null(dec(&a, "a%%41"));
    assert_null(dec(&a, "%00"));                 /* would cut the C string */
    assert_null(http_url_decode(&a, "ab%2", 4)); /* escape cut by n */
    assert_null(http_url_decode(&a, "a\0b", 3)); /* a raw NUL */
    base_arena_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decodes_escapes),
        cmocka_unit_test(test_refuses_bad_escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
