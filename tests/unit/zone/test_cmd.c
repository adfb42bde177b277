/* Tests zone/cmd.c: every command type round-trips with all its fields; truncated, extended,
 * bit-flipped and random inputs are refused without a crash or an outsized allocation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "zone/internal.h"
#include "zone/zone.h"

static void pairs_equal(const struct zone_pair *a, size_t na, const struct zone_pair *b, size_t nb)
{
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_string_equal(a[i].key, b[i].key);
        assert_string_equal(a[i].value, b[i].value);
    }
}

static void strs_equal(const char *const *a, size_t na, const char *const *b, size_t nb)
{
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++)
        assert_string_equal(a[i], b[i]);
}

static void node_equal(const struct zone_node *a, const struct zone_node *b)
{
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->address, b->address);
    assert_string_equal(a->datacenter, b->datacenter);
    pairs_equal(a->tagged_addresses, a->n_tagged_addresses, b->tagged_addresses,
                b->n_tagged_addresses);
    pairs_equal(a->meta, a->n_meta, b->meta, b->n_meta);
}

static void service_equal(const struct zone_service *a, const struct zone_service *b)
{
    assert_string_equal(a->node, b->node);
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->kind, b->kind);
    strs_equal(a->tags, a->n_tags, b->tags, b->n_tags);
    assert_string_equal(a->address, b->address);
    assert_int_equal(a->port, b->port);
    pairs_equal(a->meta, a->n_meta, b->meta, b->n_meta);
    pairs_equal(a->tagged_addresses, a->n_tagged_addresses, b->tagged_addresses,
                b->n_tagged_addresses);
    assert_int_equal(a->weight_passing, b->weight_passing);
    assert_int_equal(a->weight_warning, b->weight_warning);
    assert_int_equal(a->enable_tag_override, b->enable_tag_override);
}

static void check_equal(const struct zone_check *a, const struct zone_check *b)
{
    assert_string_equal(a->node, b->node);
    assert_string_equal(a->check_id, b->check_id);
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->status, b->status);
    assert_string_equal(a->notes, b->notes);
    assert_string_equal(a->output, b->output);
    assert_string_equal(a->service_id, b->service_id);
    assert_string_equal(a->service_name, b->service_name);
    strs_equal(a->service_tags, a->n_service_tags, b->service_tags, b->n_service_tags);
    assert_string_equal(a->type, b->type);
    assert_true(a->ttl_ms == b->ttl_ms);
    assert_true(a->interval_ms == b->interval_ms);
    assert_true(a->timeout_ms == b->timeout_ms);
    assert_true(a->deregister_after_ms == b->deregister_after_ms);
    assert_string_equal(a->http, b->http);
    assert_string_equal(a->method, b->method);
    assert_string_equal(a->tcp, b->tcp);
}

static struct zone_pair node_tagged[] = {{"lan", "10.0.0.1"}, {"wan", "203.0.113.1"}};
static struct zone_pair node_meta[] = {{"rack", "r1"}, {"env", ""}, {"", "empty-key"}};
static const char *svc_tags[] = {"primary", "v2", ""};
static struct zone_pair svc_meta[] = {{"version", "2.1"}};
static struct zone_pair svc_tagged[] = {{"lan_ipv4", "10.0.0.9"}};
static const char *chk_tags[] = {"x"};

static const struct zone_service full_service = {
    .node = "node-1",
    .id = "web-1",
    .name = "web",
    .kind = "connect-proxy",
    .tags = svc_tags,
    .n_tags = 3,
    .address = "10.0.0.9",
    .port = 8080,
    .meta = svc_meta,
    .n_meta = 1,
    .tagged_addresses = svc_tagged,
    .n_tagged_addresses = 1,
    .weight_passing = 10,
    .weight_warning = 3,
    .enable_tag_override = true,
};

static const struct zone_check full_checks[] = {
    {
        .node = "node-1",
        .check_id = "service:web-1",
        .name = "web alive",
        .status = ZONE_HEALTH_WARNING,
        .notes = "notes",
        .output = "HTTP 200 OK",
        .service_id = "web-1",
        .service_name = "web",
        .service_tags = chk_tags,
        .n_service_tags = 1,
        .type = "http",
        .ttl_ms = 0,
        .interval_ms = 10000,
        .timeout_ms = 2000,
        .deregister_after_ms = UINT64_MAX,
        .http = "http://10.0.0.9:8080/health",
        .method = "GET",
        .tcp = "",
    },
    {
        .node = "node-1",
        .check_id = "serfHealth",
        .name = "Serf",
        .status = ZONE_HEALTH_MAINT,
        .notes = "",
        .output = "",
        .service_id = "",
        .service_name = "",
        .type = "ttl",
        .ttl_ms = 30000,
        .http = "",
        .method = "",
        .tcp = "10.0.0.1:22",
    },
};

static struct zone_cmd full_register(void)
{
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_REGISTER;
    c.node.name = "node-1";
    c.node.id = "0b9f5a8e-1f6e-4c44-9d35-0e2f4c3a1b2c";
    c.node.address = "10.0.0.1";
    c.node.datacenter = "dc1";
    c.node.tagged_addresses = node_tagged;
    c.node.n_tagged_addresses = 2;
    c.node.meta = node_meta;
    c.node.n_meta = 3;
    c.service = &full_service;
    c.checks = full_checks;
    c.n_checks = 2;
    c.skip_node_update = true;
    return c;
}

static void roundtrip(const struct zone_cmd *in, struct base_arena *a, struct zone_cmd *out,
                      struct base_buf *b)
{
    base_buf_init(b);
    zone_cmd_encode(in, b);
    assert_int_equal(zone_cmd_decode(b->data, b->len, a, out), 0);
    assert_int_equal(out->type, in->type);
}

static void test_register_roundtrip(void **state)
{
    (void)state;
    struct zone_cmd in = full_register(), out;
    struct base_arena a;
    struct base_buf b;

    base_arena_init(&a);
    roundtrip(&in, &a, &out, &b);
    node_equal(&in.node, &out.node);
    assert_non_null(out.service);
    service_equal(in.service, out.service);
    assert_int_equal(out.n_checks, 2);
    for (size_t i = 0; i < 2; i++)
        check_equal(&in.checks[i], &out.checks[i]);
    assert_true(out.skip_node_update);
    /* the decoded command does not point into the encoding */
    memset(b.data, 0xaa, b.len);
    assert_string_equal(out.node.meta[2].value, "empty-key");
    assert_string_equal(out.checks[0].http, "http://10.0.0.9:8080/health");
    base_buf_free(&b);
    base_arena_close(&a);
}

static void test_register_minimal_roundtrip(void **state)
{
    (void)state;
    struct zone_cmd in, out;
    struct zone_check empty_check;
    struct base_arena a;
    struct base_buf b;

    /* NULL strings travel as "", no service, one all-empty check */
    memset(&in, 0, sizeof in);
    memset(&empty_check, 0, sizeof empty_check);
    in.type = ZONE_CMD_REGISTER;
    in.node.name = "n";
    in.checks = &empty_check;
    in.n_checks = 1;
    base_arena_init(&a);
    roundtrip(&in, &a, &out, &b);
    assert_string_equal(out.node.name, "n");
    assert_string_equal(out.node.address, "");
    assert_int_equal(out.node.n_meta, 0);
    assert_null(out.service);
    assert_false(out.skip_node_update);
    assert_int_equal(out.n_checks, 1);
    assert_string_equal(out.checks[0].check_id, "");
    assert_int_equal(out.checks[0].status, ZONE_HEALTH_PASSING);
    base_buf_free(&b);
    base_arena_close(&a);
}

static void test_deregister_and_check_update_roundtrip(void **state)
{
    (void)state;
    struct zone_cmd in, out;
    struct base_arena a;
    struct base_buf b;

    base_arena_init(&a);
    memset(&in, 0, sizeof in);
    in.type = ZONE_CMD_DEREGISTER;
    in.node.name = "Node-1";
    in.service_id = "web-1";
    in.check_id = "chk";
    roundtrip(&in, &a, &out, &b);
    assert_string_equal(out.node.name, "Node-1");
    assert_string_equal(out.service_id, "web-1");
    assert_string_equal(out.check_id, "chk");
    base_buf_free(&b);

    memset(&in, 0, sizeof in);
    in.type = ZONE_CMD_DEREGISTER;
    in.node.name = "n";
    roundtrip(&in, &a, &out, &b);
    assert_string_equal(out.service_id, "");
    assert_string_equal(out.check_id, "");
    base_buf_free(&b);

    memset(&in, 0, sizeof in);
    in.type = ZONE_CMD_CHECK_UPDATE;
    in.node.name = "n";
    in.check_id = "service:web";
    in.status = ZONE_HEALTH_CRITICAL;
    in.output = "connection refused";
    roundtrip(&in, &a, &out, &b);
    assert_string_equal(out.node.name, "n");
    assert_string_equal(out.check_id, "service:web");
    assert_int_equal(out.status, ZONE_HEALTH_CRITICAL);
    assert_string_equal(out.output, "connection refused");
    base_buf_free(&b);
    base_arena_close(&a);
}

static void test_kv_roundtrip(void **state)
{
    (void)state;
    struct zone_cmd in, out;
    struct base_arena a;
    struct base_buf b;
    uint8_t value[300];

    for (size_t i = 0; i < sizeof value; i++)
        value[i] = (uint8_t)i; /* binary, with NULs */
    base_arena_init(&a);
    memset(&in, 0, sizeof in);
    in.type = ZONE_CMD_KV_SET;
    in.kv.key = "config/app/db";
    in.kv.value = value;
    in.kv.value_len = sizeof value;
    in.kv.flags = 0xfeedfacecafebeefull;
    in.has_cas = true;
    in.cas = 42;
    roundtrip(&in, &a, &out, &b);
    assert_string_equal(out.kv.key, "config/app/db");
    assert_int_equal(out.kv.value_len, sizeof value);
    assert_memory_equal(out.kv.value, value, sizeof value);
    assert_true(out.kv.flags == 0xfeedfacecafebeefull);
    assert_true(out.has_cas);
    assert_true(out.cas == 42);
    assert_false(out.recurse);
    base_buf_free(&b);

    /* empty value, cas 0 */
    in.kv.value = NULL;
    in.kv.value_len = 0;
    in.cas = 0;
    roundtrip(&in, &a, &out, &b);
    assert_int_equal(out.kv.value_len, 0);
    assert_non_null(out.kv.value);
    assert_true(out.has_cas);
    assert_true(out.cas == 0);
    base_buf_free(&b);

    memset(&in, 0, sizeof in);
    in.type = ZONE_CMD_KV_DELETE;
    in.kv.key = "config/";
    in.recurse = true;
    roundtrip(&in, &a, &out, &b);
    assert_string_equal(out.kv.key, "config/");
    assert_true(out.recurse);
    assert_false(out.has_cas);
    base_buf_free(&b);

    in.recurse = false;
    in.has_cas = true;
    in.cas = UINT64_MAX;
    roundtrip(&in, &a, &out, &b);
    assert_false(out.recurse);
    assert_true(out.has_cas);
    assert_true(out.cas == UINT64_MAX);
    base_buf_free(&b);
    base_arena_close(&a);
}

static void test_restore_roundtrip(void **state)
{
    (void)state;
    struct zone_cmd in, out;
    struct base_arena a;
    struct base_buf b;
    uint8_t data[1000];

    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7);
    base_arena_init(&a);
    memset(&in, 0, sizeof in);
    in.type = ZONE_CMD_RESTORE_BEGIN;
    in.restore.id = 0x0123456789abcdefull;
    in.restore.total = 123456789;
    in.restore.crc = 0xdeadbeefu;
    roundtrip(&in, &a, &out, &b);
    assert_true(out.restore.id == 0x0123456789abcdefull);
    assert_true(out.restore.total == 123456789);
    assert_true(out.restore.crc == 0xdeadbeefu);
    base_buf_free(&b);

    memset(&in, 0, sizeof in);
    in.type = ZONE_CMD_RESTORE_CHUNK;
    in.restore.id = 5;
    in.restore.offset = 1u << 20;
    in.restore.data = data;
    in.restore.len = sizeof data;
    roundtrip(&in, &a, &out, &b);
    assert_true(out.restore.id == 5 && out.restore.offset == 1u << 20);
    assert_int_equal(out.restore.len, sizeof data);
    assert_memory_equal(out.restore.data, data, sizeof data);
    assert_true(out.restore.data != data); /* copied into the arena */
    base_buf_free(&b);

    memset(&in, 0, sizeof in);
    in.type = ZONE_CMD_RESTORE_END;
    in.restore.id = 5;
    roundtrip(&in, &a, &out, &b);
    assert_true(out.restore.id == 5);
    assert_int_equal(out.restore.len, 0);
    assert_non_null(out.restore.data);
    base_buf_free(&b);
    base_arena_close(&a);
}

/* Every encoding used by the tests below. */
static void encode_all(struct base_buf *bufs, size_t *n)
{
    struct zone_cmd c = full_register();
    uint8_t v[5] = {1, 0, 2, 0, 3};

    *n = 0;
    base_buf_init(&bufs[*n]);
    zone_cmd_encode(&c, &bufs[(*n)++]);
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_DEREGISTER;
    c.node.name = "n";
    c.service_id = "s";
    base_buf_init(&bufs[*n]);
    zone_cmd_encode(&c, &bufs[(*n)++]);
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_CHECK_UPDATE;
    c.node.name = "n";
    c.check_id = "c";
    c.status = ZONE_HEALTH_WARNING;
    c.output = "o";
    base_buf_init(&bufs[*n]);
    zone_cmd_encode(&c, &bufs[(*n)++]);
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_KV_SET;
    c.kv.key = "k";
    c.kv.value = v;
    c.kv.value_len = sizeof v;
    base_buf_init(&bufs[*n]);
    zone_cmd_encode(&c, &bufs[(*n)++]);
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_KV_DELETE;
    c.kv.key = "k";
    c.recurse = true;
    base_buf_init(&bufs[*n]);
    zone_cmd_encode(&c, &bufs[(*n)++]);
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_RESTORE_BEGIN;
    c.restore.id = 1;
    c.restore.total = 2;
    c.restore.crc = 3;
    base_buf_init(&bufs[*n]);
    zone_cmd_encode(&c, &bufs[(*n)++]);
    c.type = ZONE_CMD_RESTORE_CHUNK;
    c.restore.data = v;
    c.restore.len = sizeof v;
    base_buf_init(&bufs[*n]);
    zone_cmd_encode(&c, &bufs[(*n)++]);
    c.type = ZONE_CMD_RESTORE_END;
    base_buf_init(&bufs[*n]);
    zone_cmd_encode(&c, &bufs[(*n)++]);
}

static void test_truncated_refused(void **state)
{
    (void)state;
    struct base_buf bufs[8];
    struct base_arena a;
    struct zone_cmd out;
    size_t n;

    encode_all(bufs, &n);
    base_arena_init(&a);
    for (size_t i = 0; i < n; i++) {
        /* each prefix in its own heap copy, so ASan sees any read past its end */
        for (size_t len = 0; len < bufs[i].len; len++) {
            uint8_t *p = malloc(len ? len : 1);
            memcpy(p, bufs[i].data, len);
            assert_int_equal(zone_cmd_decode(p, len, &a, &out), BASE_EPARSE);
            assert_int_equal(out.type, 0);
            assert_null(out.service);
            assert_int_equal(out.n_checks, 0);
            free(p);
            base_arena_reset(&a);
        }
        /* and one byte too many */
        uint8_t *p = malloc(bufs[i].len + 1);
        memcpy(p, bufs[i].data, bufs[i].len);
        p[bufs[i].len] = 0;
        assert_int_equal(zone_cmd_decode(p, bufs[i].len + 1, &a, &out), BASE_EPARSE);
        free(p);
        base_buf_free(&bufs[i]);
    }
    base_arena_close(&a);
}

/* A KV_DELETE encoding written by hand: version, type, key bytes as given, cas, recurse. */
static void kv_delete_bytes(struct base_buf *b, uint8_t version, const void *key, uint32_t klen,
                            uint8_t recurse)
{
    b->len = 0;
    base_buf_put_u8(b, version);
    base_buf_put_u8(b, ZONE_CMD_KV_DELETE);
    base_buf_put_bytes(b, key, klen);
    base_buf_put_u8(b, 0);
    base_buf_put_u64(b, 0);
    base_buf_put_u8(b, recurse);
}

static void test_bad_header_refused(void **state)
{
    (void)state;
    struct base_arena a;
    struct base_buf b;
    struct zone_cmd out;
    const uint8_t bad_type[] = {1, 9};
    const uint8_t type_zero[] = {1, 0};

    base_arena_init(&a);
    base_buf_init(&b);
    kv_delete_bytes(&b, 1, "k", 2, 1);
    assert_int_equal(zone_cmd_decode(b.data, b.len, &a, &out), 0);
    assert_string_equal(out.kv.key, "k");
    assert_true(out.recurse);
    kv_delete_bytes(&b, 2, "k", 2, 1); /* unknown version */
    assert_int_equal(zone_cmd_decode(b.data, b.len, &a, &out), BASE_EPARSE);
    kv_delete_bytes(&b, 1, "k", 1, 1); /* a string without its NUL */
    assert_int_equal(zone_cmd_decode(b.data, b.len, &a, &out), BASE_EPARSE);
    kv_delete_bytes(&b, 1, "", 0, 1); /* not even the NUL */
    assert_int_equal(zone_cmd_decode(b.data, b.len, &a, &out), BASE_EPARSE);
    kv_delete_bytes(&b, 1, "k\0x", 4, 1); /* an inner NUL */
    assert_int_equal(zone_cmd_decode(b.data, b.len, &a, &out), BASE_EPARSE);
    kv_delete_bytes(&b, 1, "k", 2, 7); /* a bool that is neither 0 nor 1 */
    assert_int_equal(zone_cmd_decode(b.data, b.len, &a, &out), BASE_EPARSE);
    assert_int_equal(zone_cmd_decode(bad_type, sizeof bad_type, &a, &out), BASE_EPARSE);
    assert_int_equal(zone_cmd_decode(type_zero, sizeof type_zero, &a, &out), BASE_EPARSE);
    assert_int_equal(zone_cmd_decode(NULL, 0, &a, &out), BASE_EPARSE);
    base_buf_free(&b);
    base_arena_close(&a);
}

static void test_bad_status_refused(void **state)
{
    (void)state;
    struct zone_cmd c, out;
    struct base_buf b;
    struct base_arena a;

    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_CHECK_UPDATE;
    c.node.name = "n";
    c.check_id = "c";
    c.status = ZONE_HEALTH_MAINT;
    base_buf_init(&b);
    base_arena_init(&a);
    zone_cmd_encode(&c, &b);
    /* the status byte sits after version, type and two strings of 2 bytes each */
    size_t at = 2 + 6 + 6;
    assert_int_equal(b.data[at], ZONE_HEALTH_MAINT);
    assert_int_equal(zone_cmd_decode(b.data, b.len, &a, &out), 0);
    b.data[at] = 4;
    assert_int_equal(zone_cmd_decode(b.data, b.len, &a, &out), BASE_EPARSE);
    base_buf_free(&b);
    base_arena_close(&a);
}

/* A count that claims more elements than the bytes left could hold is refused before any
 * allocation: the arena stays small. */
static void test_huge_counts_refused(void **state)
{
    (void)state;
    struct zone_cmd c, out;
    struct base_buf b;
    struct base_arena a;

    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_REGISTER;
    c.node.name = "n";
    base_buf_init(&b);
    base_arena_init(&a);
    zone_cmd_encode(&c, &b);
    /* the last u32 is n_checks: make it 0xffffffff */
    memset(b.data + b.len - 4, 0xff, 4);
    assert_int_equal(zone_cmd_decode(b.data, b.len, &a, &out), BASE_EPARSE);
    /* the node's tagged address count (after version, type, 4 strings) */
    b.len = 0;
    zone_cmd_encode(&c, &b);
    size_t at = 2 + 6 + 5 + 5 + 5;
    assert_int_equal(b.data[at], 0);
    memset(b.data + at, 0xff, 4);
    assert_int_equal(zone_cmd_decode(b.data, b.len, &a, &out), BASE_EPARSE);
    assert_true(a.used < 4096);
    base_buf_free(&b);
    base_arena_close(&a);
}

/* Bit flips of valid encodings and random bytes: any outcome but a crash (ASan build). */
static void test_fuzz_no_crash(void **state)
{
    (void)state;
    struct base_buf bufs[8];
    struct base_arena a;
    struct zone_cmd out;
    size_t n;
    unsigned seed = 12345;

    encode_all(bufs, &n);
    base_arena_init(&a);
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = malloc(bufs[i].len);
        for (size_t bit = 0; bit < bufs[i].len * 8; bit++) {
            memcpy(p, bufs[i].data, bufs[i].len);
            p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            int rc = zone_cmd_decode(p, bufs[i].len, &a, &out);
            assert_true(rc == 0 || rc == BASE_EPARSE);
            base_arena_reset(&a);
        }
        free(p);
        base_buf_free(&bufs[i]);
    }
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(rand_r(&seed) % 200);
        uint8_t *p = malloc(len ? len : 1);
        for (size_t k = 0; k < len; k++)
            p[k] = (uint8_t)rand_r(&seed);
        if (len >= 2) { /* mostly a valid header, so the bodies get exercised */
            p[1] = (uint8_t)(1 + rand_r(&seed) % 5);
            p[0] = p[1] == ZONE_CMD_REGISTER ? (uint8_t)(1 + rand_r(&seed) % 2) : 1;
        }
        int rc = zone_cmd_decode(p, len, &a, &out);
        assert_true(rc == 0 || rc == BASE_EPARSE);
        free(p);
        base_arena_reset(&a);
    }
    base_arena_close(&a);
}

/* A REGISTER from a log written before the check definition's extension (command version 1:
 * check bodies end after the TCP target) still decodes; version 2 carries the extension. */
static void test_register_v1_without_extension(void **state)
{
    (void)state;
    const char *args[] = {"/bin/true"};
    struct zone_check chk = {.node = "n", .check_id = "c", .type = "tcp", .tcp = "h:1"};
    struct zone_cmd cmd = {.type = ZONE_CMD_REGISTER, .checks = &chk, .n_checks = 1};
    struct zone_cmd out;
    struct base_buf b;
    struct base_arena a;

    cmd.node.name = "n";
    base_arena_init(&a);
    base_buf_init(&b);
    zone_cmd_encode(&cmd, &b);
    assert_int_equal(b.data[0], 2);
    b.data[0] = 1;
    b.len -= ZONE__CHECK_EXT_MIN; /* the check is last: its (empty) extension goes */
    assert_int_equal(zone_cmd_decode(b.data, b.len, &a, &out), 0);
    assert_int_equal(out.n_checks, 1);
    assert_string_equal(out.checks[0].tcp, "h:1");
    assert_int_equal(out.checks[0].n_args, 0);
    assert_string_equal(out.checks[0].udp, "");

    chk.type = "script";
    chk.args = args;
    chk.n_args = 1;
    b.len = 0;
    zone_cmd_encode(&cmd, &b);
    assert_int_equal(zone_cmd_decode(b.data, b.len, &a, &out), 0);
    assert_int_equal(out.checks[0].n_args, 1);
    assert_string_equal(out.checks[0].args[0], "/bin/true");
    b.data[0] = 1; /* version 1 has no extension: the bytes left over make it malformed */
    assert_int_equal(zone_cmd_decode(b.data, b.len, &a, &out), BASE_EPARSE);
    base_buf_free(&b);
    base_arena_close(&a);
}

static void test_health_names(void **state)
{
    (void)state;
    enum zone_health h;

    assert_string_equal(zone_health_name(ZONE_HEALTH_PASSING), "passing");
    assert_string_equal(zone_health_name(ZONE_HEALTH_WARNING), "warning");
    assert_string_equal(zone_health_name(ZONE_HEALTH_CRITICAL), "critical");
    assert_string_equal(zone_health_name(ZONE_HEALTH_MAINT), "maintenance");
    assert_int_equal(zone_health_parse("passing", &h), 0);
    assert_int_equal(h, ZONE_HEALTH_PASSING);
    assert_int_equal(zone_health_parse("warning", &h), 0);
    assert_int_equal(h, ZONE_HEALTH_WARNING);
    assert_int_equal(zone_health_parse("critical", &h), 0);
    assert_int_equal(h, ZONE_HEALTH_CRITICAL);
    assert_int_equal(zone_health_parse("maintenance", &h), BASE_EINVAL);
    assert_int_equal(zone_health_parse("any", &h), BASE_EINVAL);
    assert_int_equal(zone_health_parse("Passing", &h), BASE_EINVAL);
    assert_int_equal(zone_health_parse("", &h), BASE_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_roundtrip),
        cmocka_unit_test(test_register_minimal_roundtrip),
        cmocka_unit_test(test_deregister_and_check_update_roundtrip),
        cmocka_unit_test(test_kv_roundtrip),
        cmocka_unit_test(test_restore_roundtrip),
        cmocka_unit_test(test_truncated_refused),
        cmocka_unit_test(test_bad_header_refused),
        cmocka_unit_test(test_bad_status_refused),
        cmocka_unit_test(test_huge_counts_refused),
        cmocka_unit_test(test_fuzz_no_crash),
        cmocka_unit_test(test_health_names),
        cmocka_unit_test(test_register_v1_without_extension),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
