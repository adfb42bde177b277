/* Tests consensus/entry.c: the entry frame round-trips, is always padded to a multiple of 8
 * bytes (libraft cannot load back a log holding other lengths), and decoding rejects
 * truncated, padded-with-garbage and malformed input without reading outside it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/consensus.h"

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* n commands; command i is i*step+base bytes of (i+1). */
static void make_cmds(struct base_slice *cmds, uint8_t **bufs, size_t n, size_t base, size_t step)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = base + i * step;
        bufs[i] = malloc(len ? len : 1);
        memset(bufs[i], (int)(i + 1), len);
        cmds[i].p = bufs[i];
        cmds[i].n = len;
    }
}

static void free_cmds(uint8_t **bufs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
}

static void test_roundtrip_and_padding(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    for (size_t n = 0; n <= 5; n++) {
        for (size_t base = 0; base <= 40; base++) {
            struct base_slice cmds[5];
            uint8_t *bufs[5];
            struct base_buf out;
            struct base_slice *got;
            size_t got_n;

            make_cmds(cmds, bufs, n, base, 3);
            base_buf_init(&out);
            base_buf_put_u8(&out, 0xaa); /* encode appends: keep what was there */
            cons_entry_encode(cmds, n, &out);
            assert_int_equal(out.data[0], 0xaa);
            size_t len = out.len - 1;
            assert_int_equal(len % 8, 0);
            size_t real = 16;
            for (size_t i = 0; i < n; i++)
                real += 4 + cmds[i].n;
            assert_true(len >= real && len - real < 8);

            /* decode from an 8-aligned copy, as libraft hands it over */
            uint8_t *p = aligned_alloc(8, len ? len : 8);
            memcpy(p, out.data + 1, len);
            assert_int_equal(cons_entry_decode(p, len, &got, &got_n, &a), 0);
            assert_int_equal(got_n, n);
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(got[i].n, cmds[i].n);
                assert_memory_equal(got[i].p, cmds[i].p, cmds[i].n);
                /* slices borrow from the input */
                assert_true(got[i].p >= p && got[i].p + got[i].n <= p + len);
            }
            free(p);
            base_buf_free(&out);
            free_cmds(bufs, n);
            base_arena_reset(&a);
        }
    }
    base_arena_close(&a);
}

static void encode_sample(struct base_buf *out)
{
    const char *cmds_s[] = {"alpha", "", "gamma-gamma"};
    struct base_slice cmds[3];
    for (int i = 0; i < 3; i++) {
        cmds[i].p = (const uint8_t *)cmds_s[i];
        cmds[i].n = strlen(cmds_s[i]);
    }
    base_buf_init(out);
    cons_entry_encode(cmds, 3, out);
}

static int decode(const uint8_t *p, size_t len)
{
    struct base_arena a;
    struct base_slice *cmds;
    size_t n;
    base_arena_init(&a);
    /* a heap copy of exactly len bytes, so ASan catches any read past it */
    uint8_t *copy = malloc(len ? len : 1);
    if (len)
        memcpy(copy, p, len);
    int rv = cons_entry_decode(copy, len, &cmds, &n, &a);
    if (rv != 0) {
        assert_null(cmds);
        assert_int_equal(n, 0);
    }
    free(copy);
    base_arena_close(&a);
    return rv;
}

static void test_decode_rejects_truncation(void **state)
{
    (void)state;
    struct base_buf b;
    encode_sample(&b);
    assert_int_equal(decode(b.data, b.len), 0);
    for (size_t len = 0; len < b.len; len++)
        assert_int_equal(decode(b.data, len), BASE_EPARSE);
    /* longer by 8 zero bytes: the padding would be 8 or more */
    uint8_t *longer = calloc(1, b.len + 8);
    memcpy(longer, b.data, b.len);
    assert_int_equal(decode(longer, b.len + 8), BASE_EPARSE);
    free(longer);
    base_buf_free(&b);
}

static void test_decode_rejects_garbage(void **state)
{
    (void)state;
    struct base_buf b;
    encode_sample(&b);
    uint8_t *p = malloc(b.len);
    size_t real = 16 + 4 + 5 + 4 + 0 + 4 + 11;
    assert_true(b.len > real); /* the sample has padding */

#define MUTATE(stmt, want)                                                                         \
    do {                                                                                           \
        memcpy(p, b.data, b.len);                                                                  \
        stmt;                                                                                      \
        assert_int_equal(decode(p, b.len), want);                                                  \
    } while (0)

    MUTATE(p[0] ^= 1, BASE_EPARSE);                   /* magic */
    MUTATE(p[4] = 0, BASE_EPARSE);                    /* version 0 */
    MUTATE(p[4] = 2, BASE_EINVAL);                    /* a newer version */
    MUTATE(p[6] = 1, BASE_EPARSE);                    /* flags */
    MUTATE(put_u32(p + 8, 4), BASE_EPARSE);           /* count too high */
    MUTATE(put_u32(p + 8, 2), BASE_EPARSE);           /* count too low: bytes left over */
    MUTATE(put_u32(p + 8, 0xffffffffu), BASE_EPARSE); /* absurd count, no huge allocation */
    MUTATE(put_u32(p + 12, (uint32_t)b.len + 8), BASE_EPARSE); /* real length past the end */
    MUTATE(put_u32(p + 12, 8), BASE_EPARSE);                   /* real length inside the header */
    MUTATE(put_u32(p + 12, (uint32_t)real - 1), BASE_EPARSE);
    MUTATE(put_u32(p + 16, 6), BASE_EPARSE);           /* first command longer */
    MUTATE(put_u32(p + 16, 0xfffffff0u), BASE_EPARSE); /* a command past everything */
    MUTATE(p[b.len - 1] = 7, BASE_EPARSE);             /* padding must be zeros */
#undef MUTATE

    /* random bytes and random mutations: never a crash, never a read outside (ASan) */
    srand(42);
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(rand() % 96);
        uint8_t buf[96];
        if (round % 2) {
            for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)rand();
        } else {
            len = b.len;
            memcpy(buf, b.data, b.len);
            for (int k = 0; k < 1 + rand() % 3; k++)
                buf[rand() % (int)len] = (uint8_t)rand();
        }
        int rv = decode(buf, len);
        assert_true(rv == 0 || rv == BASE_EPARSE || rv == BASE_EINVAL);
    }
    free(p);
    base_buf_free(&b);
}

static void test_empty_entry(void **state)
{
    (void)state;
    struct base_buf b;
    base_buf_init(&b);
    cons_entry_encode(NULL, 0, &b);
    assert_int_equal(b.len, 16);
    assert_int_equal(decode(b.data, b.len), 0);
    base_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_padding),
        cmocka_unit_test(test_decode_rejects_truncation),
        cmocka_unit_test(test_decode_rejects_garbage),
        cmocka_unit_test(test_empty_entry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
