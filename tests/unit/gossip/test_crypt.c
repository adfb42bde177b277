/* Tests gossip/crypt.c's key decoding; encryption itself is tested against serf's encrypted
 * stream and by round trips in test_wire.c, and serf reads ours in
 * tests/integration/test_gossip_serf_wire.py. */
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

static const uint8_t key16[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static void test_key_decode(void **state)
{
    (void)state;
    uint8_t k[32];
    size_t n;
    assert_int_equal(gossip_key_decode("AAECAwQFBgcICQoLDA0ODw==", k, &n), 0);
    assert_int_equal(n, 16);
    assert_memory_equal(k, key16, 16);
    assert_int_equal(gossip_key_decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", k, &n), 0);
    assert_int_equal(n, 32);
    assert_int_equal(gossip_key_decode("AAECAwQFBgcICQoLDA0O", k, &n), BASE_EINVAL); /* 15 */
    assert_int_equal(gossip_key_decode("not base64!", k, &n), BASE_EINVAL);
    assert_int_equal(gossip_key_decode(NULL, k, &n), BASE_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
