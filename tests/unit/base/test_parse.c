/* Tests base/parse.c: durations, sizes, integers, host:port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/base.h"

static void test_duration_units(void **state)
{
    (void)state;
    uint64_t ms;
    assert_int_equal(base_duration_parse("10s", &ms), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(base_duration_parse("1m30s", &ms), 0);
    assert_int_equal(ms, 90000);
    assert_int_equal(base_duration_parse("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(base_duration_parse("1.5h", &ms), 0);
    assert_int_equal(ms, 5400000);
    assert_int_equal(base_duration_parse("5us", &ms), 0);
    assert_int_equal(ms, 1);
    assert_int_equal(base_duration_parse("0", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(base_duration_parse("7", &ms), 0);
    assert_int_equal(ms, 7000);
}

static void test_duration_rejects_garbage(void **state)
{
    (void)state;
    uint64_t ms;
    assert_int_not_equal(base_duration_parse("", &ms), 0);
    assert_int_not_equal(base_duration_parse("s", &ms), 0);
    assert_int_not_equal(base_duration_parse("10x", &ms), 0);
    assert_int_not_equal(base_duration_parse("-5s", &ms), 0);
    assert_int_not_equal(base_duration_parse("99999999999999999999h", &ms), 0);
}

/* Go's time.ParseDuration: a number needs a unit, "0" alone excepted. */
static void test_duration_strict(void **state)
{
    (void)state;
    uint64_t ms = 99;
    assert_int_equal(base_duration_parse_strict("0", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(base_duration_parse_strict("1s", &ms), 0);
    assert_int_equal(ms, 1000);
    assert_int_equal(base_duration_parse_strict("1m30s", &ms), 0);
    assert_int_equal(ms, 90000);
    assert_int_not_equal(base_duration_parse_strict("1", &ms), 0);
    assert_int_not_equal(base_duration_parse_strict("00", &ms), 0);
    assert_int_not_equal(base_duration_parse_strict("300", &ms), 0);
    assert_int_not_equal(base_duration_parse_strict("", &ms), 0);
    assert_int_not_equal(base_duration_parse_strict("5x", &ms), 0);
}

static void test_size(void **state)
{
    (void)state;
    uint64_t b;
    assert_int_equal(base_size_parse("512", &b), 0);
    assert_int_equal(b, 512);
    assert_int_equal(base_size_parse("512KiB", &b), 0);
    assert_int_equal(b, 512 * 1024);
    assert_int_equal(base_size_parse("1MB", &b), 0);
    assert_int_equal(b, 1000000);
    assert_int_not_equal(base_size_parse("1XB", &b), 0);
    assert_int_not_equal(base_size_parse("", &b), 0);
}

static void test_u64(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(base_u64_parse("18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(base_u64_parse("18446744073709551616", &v), BASE_ETOOBIG);
    assert_int_equal(base_u64_parse("12a", &v), BASE_EPARSE);
    assert_int_equal(base_u64_parse("+1", &v), BASE_EPARSE);
    assert_int_equal(base_u64_parse("", &v), BASE_EPARSE);
}

static void test_hostport(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(base_hostport_parse("127.0.0.2:8301", 1, host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.2");
    assert_int_equal(port, 8301);
    assert_int_equal(base_hostport_parse("10.0.0.2", 53, host, sizeof host, &port), 0);
    assert_int_equal(port, 53);
    assert_int_equal(base_hostport_parse("[::1]:8600", 53, host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8600);
    assert_int_equal(base_hostport_parse("::1", 53, host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_not_equal(base_hostport_parse("a:0", 53, host, sizeof host, &port), 0);
    assert_int_not_equal(base_hostport_parse("a:70000", 53, host, sizeof host, &port), 0);
    assert_int_not_equal(base_hostport_parse(":53", 53, host, sizeof host, &port), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_units),
        cmocka_unit_test(test_duration_rejects_garbage),
        cmocka_unit_test(test_duration_strict),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_u64),
        cmocka_unit_test(test_hostport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
