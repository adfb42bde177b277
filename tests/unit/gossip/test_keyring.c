/* Tests gossip/keyring.c: memberlist's keyring operations with their error texts, the keyring a
 * configuration asks for, serf's key request in go-msgpack's bytes, a member's answers to each
 * keyring query (serf's nodeKeyResponse), and the asker's tally of the answers (serf's
 * KeyResponse: counts, messages by member, its error sentences), malformed answers included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/gossip.h"
#include "gossip/wire.h"

static const uint8_t k1[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static uint8_t k2[32], k3[24];
#define K1 "AAECAwQFBgcICQoLDA0ODw=="

static void keys_init(void)
{
    for (int i = 0; i < 32; i++)
        k2[i] = (uint8_t)(100 + i);
    for (int i = 0; i < 24; i++)
        k3[i] = (uint8_t)(200 + i);
}

static bool is_key(const struct gossip_keyring *r, size_t i, const uint8_t *k, size_t len)
{
    return i < r->n && r->keys[i].len == len && memcmp(r->keys[i].key, k, len) == 0;
}

static void test_keyring_ops(void **state)
{
    (void)state;
    keys_init();
    struct gossip_keyring r;
    memset(&r, 0, sizeof(r));
    assert_string_equal(gossip__keyring_add(&r, k1, 15), "key size must be 16, 24 or 32 bytes");
    assert_null(gossip__keyring_add(&r, k1, 16));
    assert_null(gossip__keyring_add(&r, k2, 32));
    assert_null(gossip__keyring_add(&r, k1, 16)); /* installed already: nothing */
    assert_null(gossip__keyring_add(&r, k3, 24));
    assert_int_equal(r.n, 3);
    assert_true(is_key(&r, 0, k1, 16)); /* the first stays the primary */

    assert_string_equal(gossip__keyring_use(&r, k2, 16), "Requested key is not in the keyring");
    assert_null(gossip__keyring_use(&r, k3, 24));
    /* memberlist's installKeys: the new primary first, the others in their order */
    assert_true(is_key(&r, 0, k3, 24) && is_key(&r, 1, k1, 16) && is_key(&r, 2, k2, 32));

    assert_string_equal(gossip__keyring_remove(&r, k3, 24),
                        "Removing the primary key is not allowed");
    assert_null(gossip__keyring_remove(&r, k2, 16)); /* not installed: nothing */
    assert_int_equal(r.n, 3);
    assert_null(gossip__keyring_remove(&r, k1, 16));
    assert_int_equal(r.n, 2);
    assert_true(is_key(&r, 0, k3, 24) && is_key(&r, 1, k2, 32));

    /* at most GOSSIP_KEYRING_MAX */
    memset(&r, 0, sizeof(r));
    for (int i = 0; i < GOSSIP_KEYRING_MAX; i++) {
        uint8_t k[16] = {(uint8_t)i};
        assert_null(gossip__keyring_add(&r, k, 16));
    }
    uint8_t extra[16] = {99};
    assert_non_null(gossip__keyring_add(&r, extra, 16));
    assert_int_equal(r.n, GOSSIP_KEYRING_MAX);
}

static void test_keyring_from_config(void **state)
{
    (void)state;
    keys_init();
    struct gossip_config c;
    gossip_config_defaults(&c);
    struct gossip_keyring r;
    assert_int_equal(gossip__keyring_from_config(&c, &r), 0);
    assert_int_equal(r.n, 0);
    c.key = k2;
    c.key_len = 32;
    assert_int_equal(gossip__keyring_from_config(&c, &r), 0);
    assert_true(r.n == 1 && is_key(&r, 0, k2, 32));
    /* a keyring wins over the key; its first is the primary */
    const char *ring[2] = {K1, "yMnKy8zNzs/Q0dLT1NXW19jZ2tvc3d7f"};
    c.keyring = ring;
    c.n_keyring = 2;
    assert_int_equal(gossip__keyring_from_config(&c, &r), 0);
    assert_true(r.n == 2 && is_key(&r, 0, k1, 16) && is_key(&r, 1, k3, 24));
    const char *bad[2] = {K1, "AAEC"}; /* 3 bytes */
    c.keyring = bad;
    assert_int_equal(gossip__keyring_from_config(&c, &r), BASE_EINVAL);
    const char *not_b64[1] = {"not base64!"};
    c.keyring = not_b64;
    c.n_keyring = 1;
    assert_int_equal(gossip__keyring_from_config(&c, &r), BASE_EINVAL);
    const char *many[GOSSIP_KEYRING_MAX + 1];
    for (size_t i = 0; i < BASE_ARRAY_LEN(many); i++)
        many[i] = K1;
    c.keyring = many;
    c.n_keyring = BASE_ARRAY_LEN(many);
    assert_int_equal(gossip__keyring_from_config(&c, &r), BASE_EINVAL);
}

static void test_query_names(void **state)
{
    (void)state;
    assert_int_equal(gossip__keyring_query_op("_serf_install-key"), GOSSIP_KEYRING_INSTALL);
    assert_int_equal(gossip__keyring_query_op("_serf_use-key"), GOSSIP_KEYRING_USE);
    assert_int_equal(gossip__keyring_query_op("_serf_remove-key"), GOSSIP_KEYRING_REMOVE);
    assert_int_equal(gossip__keyring_query_op("_serf_list-keys"), GOSSIP_KEYRING_LIST);
    assert_int_equal(gossip__keyring_query_op("_serf_ping"), -1);
    assert_int_equal(gossip__keyring_query_op("_serf_list-keys2"), -1);
    assert_string_equal(gossip__keyring_query_name(GOSSIP_KEYRING_USE), "_serf_use-key");
    assert_string_equal(gossip_keyring_op_name(GOSSIP_KEYRING_REMOVE), "remove");
}

/* serf's keyRequest{Key: 16 bytes} as go-msgpack writes it: the type byte, a one-entry map,
 * "Key" as fixraw, the key as raw (fixraw for < 32 bytes). */
static void test_key_request_bytes(void **state)
{
    (void)state;
    struct base_buf b;
    base_buf_init(&b);
    gossip__key_request_encode(&b, k1, 16);
    static const uint8_t want[] = {7, 0x81, 0xa3, 'K', 'e', 'y', 0xb0, 0,  1,  2,  3, 4,
                                   5, 6,    7,    8,   9,   10,  11,   12, 13, 14, 15};
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_serf_msg m;
    assert_int_equal(gossip__serf_decode(b.data, b.len, &a, &m), 0);
    assert_int_equal(m.type, GOSSIP_SERF_KEY_REQUEST);
    assert_int_equal(m.u.key_request.key.n, 16);
    base_arena_close(&a);
    base_buf_free(&b);
}

static void request(struct base_buf *b, const uint8_t *k, size_t n)
{
    b->len = 0;
    gossip__key_request_encode(b, k, n);
}

static void test_answers(void **state)
{
    (void)state;
    keys_init();
    struct base_arena a;
    base_arena_init(&a);
    struct base_buf b;
    base_buf_init(&b);
    struct gossip_keyring r;
    memset(&r, 0, sizeof(r));
    struct gossip_serf_key_response resp;

    /* no encryption: nothing to change, nothing to list (serf's texts) */
    request(&b, k2, 32);
    assert_false(gossip__keyring_answer(&r, GOSSIP_KEYRING_INSTALL, b.data, b.len, &a, &resp));
    assert_false(resp.result);
    assert_string_equal(resp.message, "No keyring to modify (encryption not enabled)");
    assert_false(gossip__keyring_answer(&r, GOSSIP_KEYRING_LIST, NULL, 0, &a, &resp));
    assert_false(resp.result);
    assert_string_equal(resp.message, "Keyring is empty (encryption not enabled)");
    assert_int_equal(r.n, 0);

    assert_null(gossip__keyring_add(&r, k1, 16));
    assert_true(gossip__keyring_answer(&r, GOSSIP_KEYRING_INSTALL, b.data, b.len, &a, &resp));
    assert_true(resp.result);
    assert_string_equal(resp.message, "");
    assert_int_equal(r.n, 2);
    /* again: a success that changes nothing (no persisting) */
    assert_false(gossip__keyring_answer(&r, GOSSIP_KEYRING_INSTALL, b.data, b.len, &a, &resp));
    assert_true(resp.result);

    request(&b, k1, 15);
    assert_false(gossip__keyring_answer(&r, GOSSIP_KEYRING_INSTALL, b.data, b.len, &a, &resp));
    assert_string_equal(resp.message, "key size must be 16, 24 or 32 bytes");
    request(&b, k3, 24);
    assert_false(gossip__keyring_answer(&r, GOSSIP_KEYRING_USE, b.data, b.len, &a, &resp));
    assert_string_equal(resp.message, "Requested key is not in the keyring");
    request(&b, k1, 16);
    assert_false(gossip__keyring_answer(&r, GOSSIP_KEYRING_REMOVE, b.data, b.len, &a, &resp));
    assert_false(resp.result);
    assert_string_equal(resp.message, "Removing the primary key is not allowed");

    request(&b, k2, 32);
    assert_true(gossip__keyring_answer(&r, GOSSIP_KEYRING_USE, b.data, b.len, &a, &resp));
    assert_true(resp.result && is_key(&r, 0, k2, 32));

    assert_false(gossip__keyring_answer(&r, GOSSIP_KEYRING_LIST, NULL, 0, &a, &resp));
    assert_true(resp.result);
    assert_int_equal(resp.n_keys, 2);
    assert_string_equal(resp.keys[0], "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=");
    assert_string_equal(resp.keys[1], K1);
    assert_string_equal(resp.primary_key, resp.keys[0]);

    /* malformed requests: refused with a message, the keyring untouched */
    static const uint8_t junk[][4] = {{7, 0xc1}, {4, 0x80}, {7, 0x81, 0xa3, 'K'}};
    for (size_t i = 0; i < BASE_ARRAY_LEN(junk); i++) {
        assert_false(gossip__keyring_answer(&r, GOSSIP_KEYRING_INSTALL, junk[i], 4, &a, &resp));
        assert_false(resp.result);
        assert_string_equal(resp.message, "Failed to decode key request");
    }
    assert_false(gossip__keyring_answer(&r, GOSSIP_KEYRING_REMOVE, NULL, 0, &a, &resp));
    assert_string_equal(resp.message, "Failed to decode key request");
    assert_int_equal(r.n, 2);
    base_buf_free(&b);
    base_arena_close(&a);
}

/* A member's answer as it travels: serf's nodeKeyResponse with its type byte. */
static void answer(struct base_buf *b, bool ok, const char *msg, const char **keys, size_t n,
                   const char *primary)
{
    b->len = 0;
    struct gossip_serf_msg m = {.type = GOSSIP_SERF_KEY_RESPONSE};
    m.u.key_response = (struct gossip_serf_key_response){ok, msg, n, keys, primary};
    gossip__serf_encode(b, &m);
}

static size_t count_of(const struct gossip_key_count *v, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].key, key) == 0)
            return v[i].count;
    return 0;
}

static const char *message_of(const struct gossip_keyring_result *r, const char *node)
{
    for (size_t i = 0; i < r->n_messages; i++)
        if (strcmp(r->messages[i].node, node) == 0)
            return r->messages[i].message;
    return NULL;
}

static void test_tally(void **state)
{
    (void)state;
    struct base_arena a;
    base_arena_init(&a);
    struct base_buf b;
    base_buf_init(&b);
    struct gossip_key_tally t;
    gossip__key_tally_init(&t);
    const char *both[2] = {"KB==", "KA=="}, *one[1] = {"KA=="};
    answer(&b, true, "", both, 2, "KB==");
    assert_true(gossip__key_tally_add(&t, "n1", b.data, b.len, 8));
    assert_false(gossip__key_tally_add(&t, "n1", b.data, b.len, 8)); /* a duplicate */
    answer(&b, true, "", one, 1, "KA==");
    assert_true(gossip__key_tally_add(&t, "n2", b.data, b.len, 8));
    struct gossip_keyring_result r;
    gossip__key_tally_result(&t, 2, &a, &r);
    assert_int_equal(r.status, 0);
    assert_null(r.error);
    assert_int_equal(r.num_resp, 2);
    assert_int_equal(r.n_keys, 2);
    assert_int_equal(count_of(r.keys, r.n_keys, "KA=="), 2);
    assert_int_equal(count_of(r.keys, r.n_keys, "KB=="), 1);
    assert_int_equal(count_of(r.primary_keys, r.n_primary_keys, "KB=="), 1);
    assert_int_equal(count_of(r.primary_keys, r.n_primary_keys, "KA=="), 1);
    assert_int_equal(r.n_messages, 0);
    /* a third member was alive when it started and never answered */
    gossip__key_tally_result(&t, 3, &a, &r);
    assert_int_equal(r.status, BASE_EUNKNOWN);
    assert_string_equal(r.error, "2/3 nodes reported success");

    /* a refusal, a success with a message, and two answers that are not key responses */
    answer(&b, false, "Removing the primary key is not allowed", NULL, 0, "");
    assert_true(gossip__key_tally_add(&t, "n3", b.data, b.len, 8));
    answer(&b, true, "truncated key list response, showing first 1 of 2 keys", one, 1, "KA==");
    assert_true(gossip__key_tally_add(&t, "n4", b.data, b.len, 8));
    static const uint8_t wrong_type[] = {5, 0x80}, bad_msgpack[] = {8, 0xc1};
    assert_true(gossip__key_tally_add(&t, "n5", wrong_type, sizeof(wrong_type), 8));
    assert_true(gossip__key_tally_add(&t, "n6", bad_msgpack, sizeof(bad_msgpack), 8));
    assert_true(gossip__key_tally_add(&t, "n7", NULL, 0, 8));
    /* max_from members counted at most */
    assert_true(gossip__key_tally_add(&t, "n8", b.data, b.len, 8));
    assert_false(gossip__key_tally_add(&t, "n9", b.data, b.len, 8));
    gossip__key_tally_result(&t, 8, &a, &r);
    assert_int_equal(r.num_resp, 8);
    assert_int_equal(r.num_err, 4);
    assert_int_equal(r.status, BASE_EINVAL);
    assert_string_equal(r.error, "4/8 nodes reported failure");
    assert_string_equal(message_of(&r, "n3"), "Removing the primary key is not allowed");
    assert_string_equal(message_of(&r, "n4"),
                        "truncated key list response, showing first 1 of 2 keys");
    assert_string_equal(message_of(&r, "n5"), "Invalid key query response type: 5");
    assert_string_equal(message_of(&r, "n6"), "Failed to decode key query response");
    assert_string_equal(message_of(&r, "n7"), "Invalid key query response type: -1");
    assert_int_equal(count_of(r.keys, r.n_keys, "KA=="), 4);
    assert_null(message_of(&r, "n1"));
    gossip__key_tally_close(&t);

    /* at most 64 distinct keys are counted, however many a member lists */
    gossip__key_tally_init(&t);
    const char *many[100];
    for (int i = 0; i < 100; i++)
        many[i] = base_arena_printf(&a, "K%d", i);
    answer(&b, true, "", many, 100, "K0");
    assert_true(gossip__key_tally_add(&t, "n1", b.data, b.len, 8));
    gossip__key_tally_result(&t, 1, &a, &r);
    assert_int_equal(r.n_keys, 64);
    gossip__key_tally_close(&t);
    base_buf_free(&b);
    base_arena_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyring_ops), cmocka_unit_test(test_keyring_from_config),
        cmocka_unit_test(test_query_names), cmocka_unit_test(test_key_request_bytes),
        cmocka_unit_test(test_answers),     cmocka_unit_test(test_tally),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
