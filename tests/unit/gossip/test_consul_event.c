/* Tests gossip/consul_event.c: Consul's user-event envelope against bytes built by hand to
 * go-msgpack 0.5.5's rules with Consul's agent handle (WriteExt: str8 for a 32..255-byte
 * string, bin for the payload; fields in sorted key order; omitempty), the older raw form
 * Consul wrote before WriteExt, and input that is not an envelope. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "gossip/gossip.h"

#define ID36 "8a7c0b1e-0000-4000-8000-000000000001"
#define ID36_BYTES                                                                                 \
    '8', 'a', '7', 'c', '0', 'b', '1', 'e', '-', '0', '0', '0', '0', '-', '4', '0', '0', '0', '-', \
        '8', '0', '0', '0', '-', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '1'

/* ID (36 bytes: str8), n, p (bin8), v: what `consul event -name deploy hi` puts in serf */
static const uint8_t with_payload[] = {0x84, 0xa2, 'I', 'D', 0xd9, 36,  ID36_BYTES, 0xa1, 'n',
                                       0xa6, 'd',  'e', 'p', 'l',  'o', 'y',        0xa1, 'p',
                                       0xc4, 0x02, 'h', 'i', 0xa1, 'v', 0x01};

/* every filter, no payload ("p" omitted) */
static const uint8_t with_filters[] = {0x86, 0xa2, 'I',  'D', 0xa1, 'x',  0xa1, 'n', 0xa3, 'd',
                                       'e',  'p',  0xa2, 'n', 'f',  0xa6, 'w',  'e', 'b',  '-',
                                       '.',  '*',  0xa2, 's', 'f',  0xa3, 'a',  'p', 'i',  0xa2,
                                       't',  'f',  0xa2, 'v', '1',  0xa1, 'v',  0x01};

static void test_encode_is_consuls_bytes(void **state)
{
    (void)state;
    struct base_buf b;
    base_buf_init(&b);
    struct gossip_consul_event ev = {ID36, "deploy", (const uint8_t *)"hi", 2, "", NULL, "", 1};
    gossip_consul_event_encode(&ev, &b);
    assert_int_equal(b.len, sizeof(with_payload));
    assert_memory_equal(b.data, with_payload, sizeof(with_payload));
    base_buf_free(&b);

    base_buf_init(&b);
    ev = (struct gossip_consul_event){"x", "dep", NULL, 0, "web-.*", "api", "v1", 1};
    gossip_consul_event_encode(&ev, &b);
    assert_int_equal(b.len, sizeof(with_filters));
    assert_memory_equal(b.data, with_filters, sizeof(with_filters));
    base_buf_free(&b);
}

static void test_decode_round_trip(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_consul_event ev;
    assert_int_equal(gossip_consul_event_decode(with_payload, sizeof(with_payload), &a, &ev), 0);
    assert_string_equal(ev.id, ID36);
    assert_string_equal(ev.name, "deploy");
    assert_int_equal(ev.payload_len, 2);
    assert_memory_equal(ev.payload, "hi", 2);
    assert_string_equal(ev.node_filter, "");
    assert_string_equal(ev.service_filter, "");
    assert_string_equal(ev.tag_filter, "");
    assert_int_equal(ev.version, 1);

    assert_int_equal(gossip_consul_event_decode(with_filters, sizeof(with_filters), &a, &ev), 0);
    assert_string_equal(ev.id, "x");
    assert_string_equal(ev.name, "dep");
    assert_null(ev.payload);
    assert_int_equal(ev.payload_len, 0);
    assert_string_equal(ev.node_filter, "web-.*");
    assert_string_equal(ev.service_filter, "api");
    assert_string_equal(ev.tag_filter, "v1");

    /* a payload of 300 bytes (bin16) and back */
    uint8_t big[300];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)i;
    struct base_buf b;
    base_buf_init(&b);
    struct gossip_consul_event in = {ID36, "n", big, sizeof(big), NULL, NULL, NULL, 1};
    gossip_consul_event_encode(&in, &b);
    assert_int_equal(gossip_consul_event_decode(b.data, b.len, &a, &ev), 0);
    assert_int_equal(ev.payload_len, sizeof(big));
    assert_memory_equal(ev.payload, big, sizeof(big));
    base_buf_free(&b);
    base_arena_close(&a);
}

/* What older Consul wrote (go-msgpack without WriteExt: raw16 for a long string, raw for the
 * payload), an unknown key, keys in another order and trailing bytes: read as go-msgpack
 * reads them. */
static void test_decode_tolerates_older_forms(void **state)
{
    (void)state;
    static const uint8_t raw[] = {0x85, 0xa1, 'v',  0x01, 0xa5, 'L',  'T',  'i',  'm', 'e',
                                  0xcd, 0x01, 0x00, 0xa2, 'I',  'D',  0xda, 0x00, 36,  ID36_BYTES,
                                  0xa1, 'p',  0xa2, 'h',  'i',  0xa1, 'n',  0xa1, 'e', 0xc0};
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_consul_event ev;
    assert_int_equal(gossip_consul_event_decode(raw, sizeof(raw), &a, &ev), 0);
    assert_string_equal(ev.id, ID36);
    assert_string_equal(ev.name, "e");
    assert_int_equal(ev.payload_len, 2);
    assert_memory_equal(ev.payload, "hi", 2);
    assert_int_equal(ev.version, 1);
    /* a version from the future decodes: the caller skips it, as Consul */
    static const uint8_t v2[] = {0x82, 0xa1, 'n', 0xa1, 'e', 0xa1, 'v', 0x02};
    assert_int_equal(gossip_consul_event_decode(v2, sizeof(v2), &a, &ev), 0);
    assert_int_equal(ev.version, 2);
    assert_string_equal(ev.id, "");
    base_arena_close(&a);
}

static void test_decode_refuses_what_is_no_envelope(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_consul_event ev;
    static const uint8_t nil[] = {0xc0}, arr[] = {0x91, 0x01}, str[] = {0xa1, 'x'};
    static const uint8_t name_int[] = {0x81, 0xa1, 'n', 0x05};
    static const uint8_t name_nul[] = {0x81, 0xa1, 'n', 0xa2, 'a', 0x00};
    static const uint8_t version_str[] = {0x81, 0xa1, 'v', 0xa1, '1'};
    static const uint8_t huge_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'n'};
    assert_int_equal(gossip_consul_event_decode(nil, sizeof(nil), &a, &ev), BASE_EPARSE);
    assert_int_equal(gossip_consul_event_decode(arr, sizeof(arr), &a, &ev), BASE_EPARSE);
    assert_int_equal(gossip_consul_event_decode(str, sizeof(str), &a, &ev), BASE_EPARSE);
    assert_int_equal(gossip_consul_event_decode(name_int, sizeof(name_int), &a, &ev), BASE_EPARSE);
    assert_int_equal(gossip_consul_event_decode(name_nul, sizeof(name_nul), &a, &ev), BASE_EPARSE);
    assert_int_equal(gossip_consul_event_decode(version_str, sizeof(version_str), &a, &ev),
                     BASE_EPARSE);
    assert_int_equal(gossip_consul_event_decode(huge_map, sizeof(huge_map), &a, &ev), BASE_EPARSE);
    assert_int_equal(gossip_consul_event_decode(NULL, 0, &a, &ev), BASE_EPARSE);
    /* every strict prefix of a real envelope is refused, never read past */
    for (size_t n = 0; n < sizeof(with_payload); n++)
        assert_int_equal(gossip_consul_event_decode(with_payload, n, &a, &ev), BASE_EPARSE);
    base_arena_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_is_consuls_bytes),
        cmocka_unit_test(test_decode_round_trip),
        cmocka_unit_test(test_decode_tolerates_older_forms),
        cmocka_unit_test(test_decode_refuses_what_is_no_envelope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
