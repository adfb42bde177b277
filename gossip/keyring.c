/* gossip/keyring.c: memberlist's keyring (keyring.go) and the pure halves of serf's keyring
 * queries (serf/internal_query.go, serf/keymanager.go): what a member does with a query it
 * receives, and the tally of the members' answers at the member that asked.
 *
 * A keyring query is a serf query named "_serf_install-key", "_serf_use-key",
 * "_serf_remove-key" or "_serf_list-keys" whose payload is serf's key request, [7] then the
 * msgpack map {Key: the raw key bytes}. Each member answers with a query response whose payload
 * is serf's nodeKeyResponse, [8] then {Keys, Message, PrimaryKey, Result}: Keys and PrimaryKey
 * (base64) only for a list. Error texts are memberlist 0.2.2's and serf 0.9.4's (Debian's),
 * which Consul passes on to its users.
 *
 * Pure code: no I/O, no logging, any thread. */
#include "gossip/wire.h"

#include <stdio.h>
#include <string.h>

#define TALLY_KEYS_MAX    64  /* distinct keys counted for one query */
#define TALLY_MESSAGE_MAX 256 /* bytes kept of one member's message */

static const char *const op_names[] = {"install", "use", "remove", "list"};
static const char *const query_names[] = {"_serf_install-key", "_serf_use-key", "_serf_remove-key",
                                          "_serf_list-keys"};

const char *gossip_keyring_op_name(enum gossip_keyring_op op)
{
    return (size_t)op < BASE_ARRAY_LEN(op_names) ? op_names[op] : "unknown";
}

const char *gossip__keyring_query_name(enum gossip_keyring_op op)
{
    return (size_t)op < BASE_ARRAY_LEN(query_names) ? query_names[op] : "";
}

int gossip__keyring_query_op(const char *name)
{
    for (size_t i = 0; i < BASE_ARRAY_LEN(query_names); i++)
        if (strcmp(name, query_names[i]) == 0)
            return (int)i;
    return -1;
}

/* ---- memberlist's keyring -------------------------------------------------------------------- */

static int key_find(const struct gossip_keyring *k, const uint8_t *key, size_t len)
{
    for (size_t i = 0; i < k->n; i++)
        if (k->keys[i].len == len && memcmp(k->keys[i].key, key, len) == 0)
            return (int)i;
    return -1;
}

const char *gossip__keyring_add(struct gossip_keyring *k, const uint8_t *key, size_t len)
{
    if (len != 16 && len != 24 && len != 32)
        return "key size must be 16, 24 or 32 bytes";
    if (key_find(k, key, len) >= 0)
        return NULL; /* memberlist: installing an installed key is a no-op */
    if (k->n >= GOSSIP_KEYRING_MAX)
        return "the keyring is full (16 keys): remove one first";
    k->keys[k->n].len = len;
    memcpy(k->keys[k->n].key, key, len);
    k->n++;
    return NULL;
}

const char *gossip__keyring_use(struct gossip_keyring *k, const uint8_t *key, size_t len)
{
    int i = key_find(k, key, len);
    if (i < 0)
        return "Requested key is not in the keyring";
    /* memberlist's installKeys: the primary first, the others in their order */
    while (i > 0) {
        struct gossip_key t = k->keys[i];
        k->keys[i] = k->keys[i - 1];
        k->keys[i - 1] = t;
        i--;
    }
    return NULL;
}

const char *gossip__keyring_remove(struct gossip_keyring *k, const uint8_t *key, size_t len)
{
    int i = key_find(k, key, len);
    if (i == 0)
        return "Removing the primary key is not allowed";
    if (i > 0) {
        memmove(&k->keys[i], &k->keys[i + 1], (k->n - (size_t)i - 1) * sizeof(k->keys[0]));
        k->n--;
    }
    return NULL; /* memberlist: removing a key not installed is a no-op */
}

int gossip__keyring_from_config(const struct gossip_config *c, struct gossip_keyring *out)
{
    memset(out, 0, sizeof(*out));
    if (c->n_keyring == 0) {
        if (!c->key)
            return 0;
        return gossip__keyring_add(out, c->key, c->key_len) ? BASE_EINVAL : 0;
    }
    if (c->n_keyring > GOSSIP_KEYRING_MAX || !c->keyring)
        return BASE_EINVAL;
    for (size_t i = 0; i < c->n_keyring; i++) {
        uint8_t key[32];
        size_t len;
        if (gossip_key_decode(c->keyring[i], key, &len) != 0 || gossip__keyring_add(out, key, len))
            return BASE_EINVAL;
    }
    return 0;
}

static bool keyring_equal(const struct gossip_keyring *x, const struct gossip_keyring *y)
{
    if (x->n != y->n)
        return false;
    for (size_t i = 0; i < x->n; i++)
        if (x->keys[i].len != y->keys[i].len ||
            memcmp(x->keys[i].key, y->keys[i].key, x->keys[i].len) != 0)
            return false;
    return true;
}

/* ---- a member answers a keyring query -------------------------------------------------------- */

void gossip__key_request_encode(struct base_buf *b, const uint8_t *key, size_t len)
{
    struct gossip_serf_msg m = {.type = GOSSIP_SERF_KEY_REQUEST};
    m.u.key_request.key = (struct gossip_bytes){key, len};
    gossip__serf_encode(b, &m);
}

bool gossip__keyring_answer(struct gossip_keyring *ring, enum gossip_keyring_op op,
                            const uint8_t *payload, size_t n, struct base_arena *a,
                            struct gossip_serf_key_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    resp->message = "";
    resp->primary_key = "";
    if (op == GOSSIP_KEYRING_LIST) {
        if (ring->n == 0) {
            resp->message = "Keyring is empty (encryption not enabled)";
            return false;
        }
        const char **keys = base_arena_alloc(a, ring->n * sizeof(*keys));
        for (size_t i = 0; i < ring->n; i++)
            keys[i] = base_b64_encode(a, ring->keys[i].key, ring->keys[i].len);
        resp->keys = keys;
        resp->n_keys = ring->n;
        resp->primary_key = keys[0];
        resp->result = true;
        return false;
    }
    struct gossip_serf_msg req;
    if (n < 1 || payload[0] != GOSSIP_SERF_KEY_REQUEST ||
        gossip__serf_decode(payload, n, a, &req) != 0) {
        resp->message = "Failed to decode key request";
        return false;
    }
    if (ring->n == 0) {
        resp->message = "No keyring to modify (encryption not enabled)";
        return false;
    }
    const uint8_t *key = req.u.key_request.key.p;
    size_t len = req.u.key_request.key.n;
    struct gossip_keyring before = *ring;
    const char *err = op == GOSSIP_KEYRING_INSTALL ? gossip__keyring_add(ring, key, len)
                      : op == GOSSIP_KEYRING_USE   ? gossip__keyring_use(ring, key, len)
                                                   : gossip__keyring_remove(ring, key, len);
    if (err) {
        resp->message = err;
        return false;
    }
    resp->result = true;
    return !keyring_equal(&before, ring);
}

/* ---- the asker tallies the answers ----------------------------------------------------------- */

void gossip__key_tally_init(struct gossip_key_tally *t)
{
    memset(t, 0, sizeof(*t));
}

void gossip__key_tally_close(struct gossip_key_tally *t)
{
    for (size_t i = 0; i < t->n_from; i++)
        base_free(t->from[i]);
    base_free(t->from);
    for (size_t i = 0; i < t->n_msgs; i++) {
        base_free(t->msgs[i].node);
        base_free(t->msgs[i].message);
    }
    base_free(t->msgs);
    for (size_t i = 0; i < t->n_keys; i++)
        base_free(t->keys[i].key);
    base_free(t->keys);
    for (size_t i = 0; i < t->n_primary; i++)
        base_free(t->primary[i].key);
    base_free(t->primary);
    memset(t, 0, sizeof(*t));
}

static void count_key(struct gossip_key_tally_count **v, size_t *n, const char *key)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i].key, key) == 0) {
            (*v)[i].count++;
            return;
        }
    if (*n >= TALLY_KEYS_MAX)
        return;
    *v = base_realloc(*v, (*n + 1) * sizeof(**v));
    (*v)[*n].key = base_strdup(key);
    (*v)[*n].count = 1;
    (*n)++;
}

static void add_message(struct gossip_key_tally *t, const char *from, const char *msg)
{
    t->msgs = base_realloc(t->msgs, (t->n_msgs + 1) * sizeof(*t->msgs));
    t->msgs[t->n_msgs].node = base_strdup(from);
    t->msgs[t->n_msgs].message = base_strndup(msg, strnlen(msg, TALLY_MESSAGE_MAX));
    t->n_msgs++;
}

bool gossip__key_tally_add(struct gossip_key_tally *t, const char *from, const uint8_t *payload,
                           size_t n, size_t max_from)
{
    for (size_t i = 0; i < t->n_from; i++)
        if (strcmp(t->from[i], from) == 0)
            return false; /* serf: a member's duplicate answer is dropped */
    if (t->n_from >= max_from)
        return false;
    t->from = base_realloc(t->from, (t->n_from + 1) * sizeof(*t->from));
    t->from[t->n_from++] = base_strdup(from);
    t->num_resp++;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_serf_msg m;
    if (n < 1 || payload[0] != GOSSIP_SERF_KEY_RESPONSE) {
        char msg[64];
        snprintf(msg, sizeof(msg), "Invalid key query response type: %d", n ? payload[0] : -1);
        add_message(t, from, msg);
        t->num_err++;
    } else if (gossip__serf_decode(payload, n, &a, &m) != 0) {
        add_message(t, from, "Failed to decode key query response");
        t->num_err++;
    } else {
        const struct gossip_serf_key_response *r = &m.u.key_response;
        if (!r->result)
            t->num_err++;
        if (!r->result || r->message[0])
            add_message(t, from, r->message);
        for (size_t i = 0; i < r->n_keys; i++)
            count_key(&t->keys, &t->n_keys, r->keys[i]);
        /* serf counts "" too (every answer but a list's); only real keys here */
        if (r->primary_key[0])
            count_key(&t->primary, &t->n_primary, r->primary_key);
    }
    base_arena_close(&a);
    return true;
}

void gossip__key_tally_result(const struct gossip_key_tally *t, size_t num_nodes,
                              struct base_arena *a, struct gossip_keyring_result *r)
{
    memset(r, 0, sizeof(*r));
    r->num_nodes = num_nodes;
    r->num_resp = t->num_resp;
    r->num_err = t->num_err;
    if (t->n_msgs) {
        struct gossip_node_message *m = base_arena_alloc(a, t->n_msgs * sizeof(*m));
        for (size_t i = 0; i < t->n_msgs; i++)
            m[i] = (struct gossip_node_message){t->msgs[i].node, t->msgs[i].message};
        r->messages = m;
        r->n_messages = t->n_msgs;
    }
    struct gossip_key_count *k = base_arena_alloc(a, (t->n_keys + t->n_primary + 1) * sizeof(*k));
    for (size_t i = 0; i < t->n_keys; i++)
        k[i] = (struct gossip_key_count){t->keys[i].key, t->keys[i].count};
    for (size_t i = 0; i < t->n_primary; i++)
        k[t->n_keys + i] = (struct gossip_key_count){t->primary[i].key, t->primary[i].count};
    r->keys = t->n_keys ? k : NULL;
    r->n_keys = t->n_keys;
    r->primary_keys = t->n_primary ? k + t->n_keys : NULL;
    r->n_primary_keys = t->n_primary;
    /* serf's KeyManager.handleKeyRequest */
    if (t->num_err) {
        r->status = BASE_EINVAL;
        r->error = base_arena_printf(a, "%zu/%zu nodes reported failure", t->num_err, num_nodes);
    } else if (t->num_resp != num_nodes) {
        r->status = BASE_EUNKNOWN;
        r->error = base_arena_printf(a, "%zu/%zu nodes reported success", t->num_resp, num_nodes);
    }
}
