/* Tests zone/record.c: stored records round-trip with and without copying, point into their
 * input when not copying, and refuse every truncation and an unknown version; the peeks of the
 * DNS path read the same fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "zone/internal.h"

static const char *tags[] = {"a", "bb"};
static struct zone_pair pairs[] = {{"k1", "v1"}, {"k2", ""}};

static void test_node_record(void **state)
{
    (void)state;
    struct zone_node n = {.name = "Node",
                          .id = "id",
                          .address = "10.0.0.1",
                          .datacenter = "dc1",
                          .tagged_addresses = pairs,
                          .n_tagged_addresses = 2,
                          .meta = pairs,
                          .n_meta = 1,
                          .create_index = 3,
                          .modify_index = UINT64_MAX};
    struct zone_node out;
    struct base_buf b;
    struct base_arena a;

    base_buf_init(&b);
    base_arena_init(&a);
    zone__node_encode(&n, &b);
    for (int copy = 0; copy < 2; copy++) {
        assert_int_equal(zone__node_decode(b.data, b.len, copy, &a, &out), 0);
        assert_string_equal(out.name, "Node");
        assert_string_equal(out.datacenter, "dc1");
        assert_int_equal(out.n_tagged_addresses, 2);
        assert_string_equal(out.tagged_addresses[1].key, "k2");
        assert_string_equal(out.tagged_addresses[1].value, "");
        assert_int_equal(out.n_meta, 1);
        assert_true(out.create_index == 3 && out.modify_index == UINT64_MAX);
        /* without copy the strings are the input's bytes */
        bool inside =
            (const uint8_t *)out.name >= b.data && (const uint8_t *)out.name < b.data + b.len;
        assert_int_equal(inside, !copy);
    }
    /* the address alone, for the DNS path; cut records refused */
    const char *addr;
    assert_int_equal(zone__node_peek_address(b.data, b.len, &addr), 0);
    assert_string_equal(addr, "10.0.0.1");
    assert_true((const uint8_t *)addr > b.data && (const uint8_t *)addr < b.data + b.len);
    assert_int_equal(zone__node_peek_address(b.data, 1 + 9 + 7 + 4 + 5, &addr), BASE_EPARSE);
    /* the 8 bytes before the checksum are ModifyIndex (the store patches them) */
    assert_int_equal(b.data[b.len - ZONE__REC_CRC_LEN - 1], 0xff);
    b.data[0] = 3; /* unknown version */
    assert_int_equal(zone__node_decode(b.data, b.len, false, &a, &out), BASE_EPARSE);
    assert_int_equal(zone__node_peek_address(b.data, b.len, &addr), BASE_EPARSE);
    base_buf_free(&b);
    base_arena_close(&a);
}

static void test_service_check_kv_records(void **state)
{
    (void)state;
    struct zone_service s = {.node = "n",
                             .id = "web-1",
                             .name = "web",
                             .kind = "",
                             .tags = tags,
                             .n_tags = 2,
                             .address = "",
                             .port = 65535,
                             .meta = pairs,
                             .n_meta = 2,
                             .weight_passing = 3,
                             .weight_warning = 1,
                             .enable_tag_override = true,
                             .create_index = 1,
                             .modify_index = 2};
    struct zone_check c = {.node = "n",
                           .check_id = "c",
                           .name = "c",
                           .status = ZONE_HEALTH_MAINT,
                           .notes = "",
                           .output = "out",
                           .service_id = "web-1",
                           .service_name = "web",
                           .service_tags = tags,
                           .n_service_tags = 2,
                           .type = "http",
                           .interval_ms = 10,
                           .http = "h",
                           .method = "GET",
                           .tcp = "",
                           .create_index = 4,
                           .modify_index = 5};
    struct zone_kv kv = {.key = "k",
                         .value = (const uint8_t *)"\0\1",
                         .value_len = 2,
                         .flags = 9,
                         .lock_index = 2,
                         .session = "sess",
                         .create_index = 6,
                         .modify_index = 7};
    struct zone_service so;
    struct zone_check co;
    struct zone_kv ko;
    struct base_buf b;
    struct base_arena a;
    enum zone_health st;
    const char *sid;

    base_buf_init(&b);
    base_arena_init(&a);
    zone__service_encode(&s, &b);
    assert_int_equal(zone__service_decode(b.data, b.len, true, &a, &so), 0);
    assert_string_equal(so.id, "web-1");
    assert_int_equal(so.n_tags, 2);
    assert_string_equal(so.tags[1], "bb");
    assert_int_equal(so.port, 65535);
    assert_int_equal(so.weight_passing, 3);
    assert_true(so.enable_tag_override);
    assert_true(so.create_index == 1 && so.modify_index == 2);

    b.len = 0;
    zone__check_encode(&c, &b);
    assert_int_equal(zone__check_decode(b.data, b.len, false, &a, &co), 0);
    assert_int_equal(co.status, ZONE_HEALTH_MAINT);
    assert_string_equal(co.service_name, "web");
    assert_int_equal(co.n_service_tags, 2);
    assert_true(co.interval_ms == 10 && co.ttl_ms == 0);
    assert_string_equal(co.method, "GET");
    assert_true(co.create_index == 4 && co.modify_index == 5);
    assert_int_equal(zone__check_peek(b.data, b.len, &st, &sid), 0);
    assert_int_equal(st, ZONE_HEALTH_MAINT);
    assert_string_equal(sid, "web-1");

    b.len = 0;
    zone__kv_encode(&kv, &b);
    assert_int_equal(zone__kv_decode(b.data, b.len, false, &a, &ko), 0);
    assert_int_equal(ko.value_len, 2);
    assert_memory_equal(ko.value, "\0\1", 2);
    assert_true(ko.flags == 9 && ko.lock_index == 2);
    assert_string_equal(ko.session, "sess");
    assert_true(ko.create_index == 6 && ko.modify_index == 7);
    base_buf_free(&b);
    base_arena_close(&a);
}

/* Every strict prefix of every record is refused, reading nothing past it. */
static void test_truncated_records(void **state)
{
    (void)state;
    struct zone_node n = {.name = "n", .meta = pairs, .n_meta = 2};
    struct zone_service s = {.node = "n", .id = "i", .name = "s", .tags = tags, .n_tags = 2};
    struct zone_check c = {.node = "n", .check_id = "c", .service_tags = tags, .n_service_tags = 1};
    struct zone_kv kv = {.key = "k", .value = (const uint8_t *)"v", .value_len = 1};
    struct base_buf b[4];
    struct base_arena a;

    for (int i = 0; i < 4; i++)
        base_buf_init(&b[i]);
    base_arena_init(&a);
    zone__node_encode(&n, &b[0]);
    zone__service_encode(&s, &b[1]);
    zone__check_encode(&c, &b[2]);
    zone__kv_encode(&kv, &b[3]);
    for (int i = 0; i < 4; i++) {
        for (size_t len = 0; len <= b[i].len; len++) {
            uint8_t *p = malloc(len ? len : 1);
            union {
                struct zone_node n;
                struct zone_service s;
                struct zone_check c;
                struct zone_kv kv;
            } u;
            int rc;
            memcpy(p, b[i].data, len);
            switch (i) {
            case 0:
                rc = zone__node_decode(p, len, false, &a, &u.n);
                break;
            case 1:
                rc = zone__service_decode(p, len, false, &a, &u.s);
                break;
            case 2:
                rc = zone__check_decode(p, len, false, &a, &u.c);
                break;
            default:
                rc = zone__kv_decode(p, len, false, &a, &u.kv);
                break;
            }
            assert_int_equal(rc, len == b[i].len ? 0 : BASE_EPARSE);
            free(p);
            base_arena_reset(&a);
        }
        base_buf_free(&b[i]);
    }
    base_arena_close(&a);
}

/* The minimum body sizes used to bound array counts are true minimums. */
static void test_min_sizes(void **state)
{
    (void)state;
    struct zone_service s;
    struct zone_check c;
    struct base_buf b;

    memset(&s, 0, sizeof s);
    memset(&c, 0, sizeof c);
    base_buf_init(&b);
    zone__service_body_put(&b, &s);
    assert_int_equal(b.len, ZONE__SERVICE_BODY_MIN);
    b.len = 0;
    zone__check_body_put(&b, &c);
    assert_int_equal(b.len, ZONE__CHECK_BODY_MIN + ZONE__CHECK_EXT_MIN);
    base_buf_free(&b);
}

/* A check record written before the definition's extension (its body ends after the TCP
 * target) still decodes, with the extension's fields empty; a new one carries them. */
static void test_check_record_extension(void **state)
{
    (void)state;
    const char *args[] = {"/bin/check", "-w", ""};
    struct zone_pair hdr[] = {{"X-A", "1"}, {"X-A", "2"}};
    struct zone_check c = {
        .node = "n", .check_id = "c", .type = "tcp", .tcp = "h:1", .interval_ms = 1000};
    struct zone_check co;
    struct base_buf b;
    struct base_arena a;

    base_buf_init(&b);
    base_arena_init(&a);
    base_buf_put_u8(&b, ZONE__RECORD_VERSION);
    zone__check_body_put(&b, &c);
    b.len -= ZONE__CHECK_EXT_MIN; /* an empty extension: what an older record lacks */
    base_buf_put_u64(&b, 4);
    base_buf_put_u64(&b, 5);
    base_buf_put_u32(&b, 0);
    zone__rec_reseal(b.data, b.len);
    assert_int_equal(zone__check_decode(b.data, b.len, true, &a, &co), 0);
    assert_string_equal(co.tcp, "h:1");
    assert_true(co.interval_ms == 1000 && co.create_index == 4 && co.modify_index == 5);
    assert_true(co.n_args == 0 && co.n_header == 0 && !co.tls_skip_verify);
    assert_string_equal(co.body, "");
    assert_string_equal(co.udp, "");
    assert_true(co.success_before_passing == 0 && co.failures_before_critical == 0);

    c.type = "script";
    c.args = args;
    c.n_args = 3;
    c.header = hdr;
    c.n_header = 2;
    c.body = "b";
    c.udp = "u:2";
    c.tls_skip_verify = true;
    c.success_before_passing = 2;
    c.failures_before_warning = 3;
    c.failures_before_critical = 4;
    b.len = 0;
    zone__check_encode(&c, &b);
    assert_int_equal(zone__check_decode(b.data, b.len, false, &a, &co), 0);
    assert_int_equal(co.n_args, 3);
    assert_string_equal(co.args[0], "/bin/check");
    assert_string_equal(co.args[2], "");
    assert_int_equal(co.n_header, 2);
    assert_string_equal(co.header[1].value, "2");
    assert_string_equal(co.body, "b");
    assert_string_equal(co.udp, "u:2");
    assert_true(co.tls_skip_verify);
    assert_true(co.success_before_passing == 2 && co.failures_before_warning == 3 &&
                co.failures_before_critical == 4);
    /* an unknown extension version is refused, not misread */
    struct zone_check plain = c;
    struct base_buf p;
    plain.args = NULL;
    plain.n_args = 0;
    plain.header = NULL;
    plain.n_header = 0;
    plain.body = plain.udp = "";
    base_buf_init(&p);
    zone__check_body_put(&p, &plain);
    size_t at = 1 + p.len - ZONE__CHECK_EXT_MIN; /* the extension's version byte */
    assert_int_equal(b.data[at], 1);
    b.data[at] = 2;
    zone__rec_reseal(b.data, b.len);
    assert_int_equal(zone__check_decode(b.data, b.len, false, &a, &co), BASE_EPARSE);
    base_buf_free(&p);
    base_buf_free(&b);
    base_arena_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_record),
        cmocka_unit_test(test_service_check_kv_records),
        cmocka_unit_test(test_truncated_records),
        cmocka_unit_test(test_min_sizes),
        cmocka_unit_test(test_check_record_extension),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
