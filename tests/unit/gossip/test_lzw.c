/* Tests gossip/lzw.c: our output round-trips at every code width and through table resets;
 * bounds and missing end codes are refused; a decompression bomb stops at a packet's bound.
 * Go's own output (serf's) is decoded in test_wire.c, and serf reads ours in
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

static int packet(const uint8_t *in, size_t n, struct base_arena *a, struct gossip_packet *out)
{
    uint8_t *p = malloc(n ? n : 1);
    if (n)
        memcpy(p, in, n);
    int rv = gossip__packet_decode(p, n, NULL, a, out);
    free(p);
    return rv;
}

/* LZW: Go's output (serf's) decodes; ours round-trips at every width, through table resets. */
static void test_lzw(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    size_t sizes[] = {0, 1, 2, 3, 255, 256, 1000, 5000, 70000};
    uint32_t x = 1;
    for (size_t s = 0; s < BASE_ARRAY_LEN(sizes); s++) {
        for (int kind = 0; kind < 3; kind++) {
            size_t n = sizes[s];
            uint8_t *p = malloc(n ? n : 1);
            for (size_t i = 0; i < n; i++) {
                x = x * 1103515245u + 12345u;
                p[i] = kind == 0   ? (uint8_t)(x >> 16) /* noise: codes grow fast */
                       : kind == 1 ? 'a'                /* one run: KwKwK every code */
                                   : (uint8_t)("abcab"[i % 5] + (x >> 30));
            }
            struct base_buf z;
            base_buf_init(&z);
            gossip__lzw_encode(&z, p, n);
            struct gossip_bytes out;
            assert_int_equal(gossip__lzw_decode(z.data, z.len, 1 << 20, &a, &out), 0);
            assert_int_equal(out.n, n);
            if (n)
                assert_memory_equal(out.p, p, n);
            if (n > 10) {
                /* over the caller's bound: refused */
                assert_int_equal(gossip__lzw_decode(z.data, z.len, n - 1, &a, &out), BASE_ETOOBIG);
                /* without its end code: refused */
                assert_int_not_equal(gossip__lzw_decode(z.data, z.len - 2, 1 << 20, &a, &out), 0);
            }
            base_buf_free(&z);
            free(p);
            base_arena_reset(&a);
        }
    }
    /* a small bomb: 'a' × 1 MiB compresses to ~2 KiB; a packet's bound stops it */
    size_t n = 1 << 20;
    uint8_t *p = malloc(n);
    memset(p, 'a', n);
    struct base_buf z;
    base_buf_init(&z);
    gossip__compress_encode(&z, p, n);
    assert_true(z.len < 4096);
    struct gossip_packet pk;
    assert_int_equal(packet(z.data, z.len, &a, &pk), BASE_ETOOBIG);
    /* nested: a compound of compressed parts each inflating to 40 KiB, under one budget */
    base_buf_free(&z);
    memset(p, 0x0b, 40000);
    p[1] = 0xc0; /* a nack with a nil body; the bytes after it are ignored, as in Go */
    base_buf_init(&z);
    gossip__compress_encode(&z, p, 40000);
    struct gossip_bytes parts[3] = {{z.data, z.len}, {z.data, z.len}, {z.data, z.len}};
    struct base_buf c;
    base_buf_init(&c);
    gossip__compound_encode(&c, parts, 1);
    assert_int_equal(packet(c.data, c.len, &a, &pk), 0); /* one fits */
    assert_int_equal(pk.n, 1);
    c.len = 0;
    gossip__compound_encode(&c, parts, 3);
    assert_int_equal(packet(c.data, c.len, &a, &pk), BASE_ETOOBIG); /* two: over the budget */
    base_buf_free(&c);
    base_buf_free(&z);
    free(p);
    /* a code that is not yet defined */
    static const uint8_t undef[] = {0x00, 0xfe, 0x03}; /* clear(256) then 510 */
    struct gossip_bytes out;
    assert_int_equal(gossip__lzw_decode(VEC(undef), 1 << 20, &a, &out), BASE_EPARSE);
    base_arena_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lzw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
