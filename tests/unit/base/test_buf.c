/* Tests base/buf.c and base/alloc.c: the binary codec round-trips, bounds are checked, the
 * arena keeps one block after reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "base/base.h"

static void test_codec_roundtrip(void **state)
{
    (void)state;
    struct base_buf b;
    struct base_arena a;
    struct base_rd r;

    base_buf_init(&b);
    base_arena_init(&a);
    base_buf_put_u8(&b, 7);
    base_buf_put_u32(&b, 0xdeadbeef);
    base_buf_put_u64(&b, UINT64_MAX - 1);
    base_buf_put_str(&b, "web");
    base_buf_put_str(&b, NULL);
    base_rd_init(&r, b.data, b.len);
    assert_int_equal(base_rd_u8(&r), 7);
    assert_true(base_rd_u32(&r) == 0xdeadbeef);
    assert_true(base_rd_u64(&r) == UINT64_MAX - 1);
    assert_string_equal(base_rd_str(&r, &a), "web");
    assert_string_equal(base_rd_str(&r, &a), "");
    assert_false(r.err);
    assert_int_equal(r.left, 0);
    base_buf_free(&b);
    base_arena_close(&a);
}

static void test_reader_bounds(void **state)
{
    (void)state;
    struct base_rd r;
    struct base_arena a;
    /* a string claiming 1000 bytes in a 6-byte input */
    const uint8_t in[] = {0xe8, 0x03, 0, 0, 'a', 'b'};

    base_arena_init(&a);
    base_rd_init(&r, in, sizeof in);
    assert_string_equal(base_rd_str(&r, &a), "");
    assert_true(r.err);
    assert_int_equal(base_rd_u32(&r), 0); /* sticky */
    base_arena_close(&a);
}

static void test_arena_reset_keeps_one_block(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    for (int i = 0; i < 100; i++)
        memset(base_arena_alloc(&a, 1000), 1, 1000);
    char *s = base_arena_printf(&a, "%s-%d", "x", 42);
    assert_string_equal(s, "x-42");
    base_arena_reset(&a);
    assert_non_null(a.head);
    assert_int_equal(a.used, 0);
    base_arena_close(&a);
    assert_null(a.head);
}

static void test_arena_grow(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    int *v = NULL;
    size_t cap = 0;
    for (int i = 0; i < 100; i++) {
        int *before = v;
        v = base_arena_grow(&a, v, (size_t)i, &cap, sizeof *v, 4);
        assert_true(cap > (size_t)i);
        if ((size_t)i != 0 && (size_t)i != 4 && (size_t)i != 8 && (size_t)i != 16 &&
            (size_t)i != 32 && (size_t)i != 64)
            assert_ptr_equal(v, before); /* room left: no copy */
        v[i] = i;
    }
    assert_int_equal(cap, 128);
    for (int i = 0; i < 100; i++)
        assert_int_equal(v[i], i);
    base_arena_close(&a);
}

static void test_b64(void **state)
{
    (void)state;
    struct base_arena a;
    uint8_t *out;
    size_t n;
    base_arena_init(&a);
    assert_string_equal(base_b64_encode(&a, "", 0), "");
    assert_string_equal(base_b64_encode(&a, "f", 1), "Zg==");
    assert_string_equal(base_b64_encode(&a, "fo", 2), "Zm8=");
    assert_string_equal(base_b64_encode(&a, "foobar", 6), "Zm9vYmFy");
    assert_int_equal(base_b64_decode(&a, "Zm9vYg==", &out, &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "foob", 4);
    assert_int_not_equal(base_b64_decode(&a, "Zm9", &out, &n), 0);
    assert_int_not_equal(base_b64_decode(&a, "Z=9v", &out, &n), 0);
    assert_int_not_equal(base_b64_decode(&a, "Zm9v!A==", &out, &n), 0);
    base_arena_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_roundtrip),
        cmocka_unit_test(test_reader_bounds),
        cmocka_unit_test(test_arena_reset_keeps_one_block),
        cmocka_unit_test(test_arena_grow),
        cmocka_unit_test(test_b64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
