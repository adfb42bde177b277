/* Tests gossip/mp.c: the scan that bounds every msgpack value before msgpack-c sees it
 * (counts and lengths beyond the input, depth, reserved bytes); the conversions are tested
 * through the messages in test_wire.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/gossip.h"
#include "gossip/wire.h"

#define VEC(x) x, sizeof(x)

/* The msgpack scan: counts and lengths beyond the input, depth, reserved bytes. */
static void test_mp_scan_bounds(void **state)
{
    (void)state;
    size_t len;
    static const uint8_t arr4g[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
    assert_int_equal(gossip__mp_scan(VEC(arr4g), &len), -EAGAIN);
    static const uint8_t map4g[] = {0xdf, 0x7f, 0xff, 0xff, 0xff};
    assert_int_equal(gossip__mp_scan(VEC(map4g), &len), -EAGAIN);
    static const uint8_t str4g[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    assert_int_equal(gossip__mp_scan(VEC(str4g), &len), -EAGAIN);
    static const uint8_t ext[] = {0xc7, 0x02, 0x01, 'a', 'b', 0xd4, 0x01, 0x00};
    assert_int_equal(gossip__mp_scan(VEC(ext), &len), 0);
    assert_int_equal(len, 5);
    static const uint8_t reserved[] = {0x91, 0xc1};
    assert_int_equal(gossip__mp_scan(VEC(reserved), &len), BASE_EPARSE);
    uint8_t deep[40];
    memset(deep, 0x91, sizeof(deep));
    deep[39] = 0xc0;
    assert_int_equal(gossip__mp_scan(deep, 17, &len), -EAGAIN);
    assert_int_equal(gossip__mp_scan(VEC(deep), &len), BASE_EPARSE);
    assert_int_equal(gossip__mp_scan(deep + 24, 16, &len), 0); /* 15 arrays and a nil */
    assert_int_equal(len, 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mp_scan_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
