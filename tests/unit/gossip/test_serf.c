/* Tests gossip/serf.c: serf's messages round-trip byte for byte (those the captures in
 * test_wire.c do not cover: push-pull with events, query with filters, responses, key
 * requests and answers, relay), and tags (sorted, and serf's old role-only meta). Malformed
 * serf messages are in test_wire.c's mangling. */
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
static const uint8_t fake_ip[4] = {127, 0, 0, 202};

static int serf(const uint8_t *in, size_t n, struct base_arena *a, struct gossip_serf_msg *out)
{
    uint8_t *p = malloc(n ? n : 1);
    if (n)
        memcpy(p, in, n);
    int rv = gossip__serf_decode(p, n, a, out);
    free(p);
    return rv;
}

static const char *tag(const struct gossip_tag *t, size_t n, const char *k)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].key, k) == 0)
            return t[i].value;
    return NULL;
}

/* serf's messages round-trip (those the captures did not cover). */
static void test_serf_messages_roundtrip(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_serf_event evs[2] = {{"deploy", {(const uint8_t *)"v1", 2}}, {"x", {NULL, 0}}};
    struct gossip_serf_events ring[1] = {{41, 2, evs}};
    struct gossip_serf_status st[2] = {{"a", 5}, {"b", UINT64_MAX}};
    const char *left[1] = {"c"};
    struct gossip_bytes filters[1] = {{(const uint8_t *)"\x00\x91\xa1\x61", 4}};
    const char *keys[2] = {"AAECAwQFBgcICQoLDA0ODw==", "k2"};
    struct gossip_serf_msg in[6];
    memset(in, 0, sizeof(in));
    in[0].type = GOSSIP_SERF_PUSH_PULL;
    in[0].u.push_pull = (struct gossip_serf_push_pull){9, 2, st, 1, left, 42, 1, ring, 7};
    in[1].type = GOSSIP_SERF_QUERY;
    in[1].u.query = (struct gossip_serf_query){3, 99, {fake_ip, 4}, 8301,     "n1", 1, filters, 2,
                                               3, -5, "_serf_ping", {NULL, 0}};
    in[2].type = GOSSIP_SERF_QUERY_RESPONSE;
    in[2].u.response =
        (struct gossip_serf_query_response){3, 99, "n2", 1, {(const uint8_t *)"ok", 2}};
    in[3].type = GOSSIP_SERF_KEY_RESPONSE;
    in[3].u.key_response = (struct gossip_serf_key_response){true, "", 2, keys, "k2"};
    in[4].type = GOSSIP_SERF_KEY_REQUEST;
    in[4].u.key_request.key = (struct gossip_bytes){key16, 16};
    in[5].type = GOSSIP_SERF_RELAY;
    in[5].u.relay =
        (struct gossip_serf_relay){{fake_ip, 4}, 8301, "", "n9", {(const uint8_t *)"\x05\x80", 2}};
    for (size_t i = 0; i < BASE_ARRAY_LEN(in); i++) {
        struct base_buf b, b2;
        base_buf_init(&b);
        base_buf_init(&b2);
        gossip__serf_encode(&b, &in[i]);
        struct gossip_serf_msg out;
        assert_int_equal(serf(b.data, b.len, &a, &out), 0);
        assert_int_equal(out.type, in[i].type);
        gossip__serf_encode(&b2, &out);
        assert_int_equal(b2.len, b.len);
        assert_memory_equal(b2.data, b.data, b.len);
        if (i == 0) {
            assert_int_equal(out.u.push_pull.n_events, 1);
            assert_int_equal(out.u.push_pull.events[0].ltime, 41);
            assert_string_equal(out.u.push_pull.events[0].events[0].name, "deploy");
            assert_int_equal(out.u.push_pull.status[1].ltime, UINT64_MAX);
        }
        if (i == 1)
            assert_int_equal(out.u.query.timeout_ns, -5);
        base_buf_free(&b);
        base_buf_free(&b2);
    }
    base_arena_close(&a);
}

static void test_tags(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_tag in[3] = {{"role", "consul"}, {"dc", "dc1"}, {"id", ""}};
    struct base_buf b;
    base_buf_init(&b);
    gossip__tags_encode(&b, in, 3);
    struct gossip_tag *t;
    size_t n;
    assert_int_equal(gossip__tags_decode(b.data, b.len, &a, &t, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(t[0].key, "dc"); /* sorted */
    assert_string_equal(tag(t, n, "role"), "consul");
    assert_string_equal(tag(t, n, "id"), "");
    /* serf protocol 2: the meta is the role */
    assert_int_equal(gossip__tags_decode((const uint8_t *)"web", 3, &a, &t, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(t[0].value, "web");
    /* a tag that is not a string, or trailing junk inside the map, is refused */
    static const uint8_t bad[] = {0xff, 0x81, 0xa1, 'a', 0x01};
    assert_int_equal(gossip__tags_decode(VEC(bad), &a, &t, &n), BASE_EPARSE);
    static const uint8_t cut[] = {0xff, 0x82, 0xa1, 'a', 0xa1};
    assert_int_equal(gossip__tags_decode(VEC(cut), &a, &t, &n), BASE_EPARSE);
    base_buf_free(&b);
    base_arena_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serf_messages_roundtrip),
        cmocka_unit_test(test_tags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
