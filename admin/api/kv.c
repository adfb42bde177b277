/* /v1/kv: Consul's key/value store. Values are opaque bytes (up to 512 KiB), returned
 * base64-encoded in JSON or as-is with ?raw. */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define KV_PREFIX "/v1/kv/"

static const char *kv_key(struct http_req *req)
{
    return http_req_path(req) + strlen(KV_PREFIX);
}

static json_t *kv_json(const struct zone_kv *kv, struct base_arena *ar)
{
    json_t *o = json_object();
    json_object_set_new(o, "LockIndex", json_integer((json_int_t)kv->lock_index));
    json_object_set_new(o, "Key", json_string(kv->key));
    json_object_set_new(o, "Flags", json_integer((json_int_t)kv->flags));
    json_object_set_new(o, "Value",
                        kv->value_len ? json_string(base_b64_encode(ar, kv->value, kv->value_len))
                                      : json_null());
    if (kv->session && *kv->session)
        json_object_set_new(o, "Session", json_string(kv->session));
    api__json_indexes(o, kv->create_index, kv->modify_index);
    return o;
}

/* Flags are unsigned 64-bit, as in Consul, and jansson's integers are signed: an entry whose
 * flags do not fit an int64 is written as text, with the same fields in the same order. */
static bool kv_flags_fit(const struct zone_kv *kv)
{
    return kv->flags <= (uint64_t)INT64_MAX;
}

static void put_json_str(struct base_buf *b, const char *s)
{
    json_t *v = json_string(s);
    char *t = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    if (t)
        base_buf_append(b, t, strlen(t));
    else
        base_buf_append(b, "\"\"", 2);
    free(t);
    json_decref(v);
}

static void kv_text(struct base_buf *b, const struct zone_kv *kv, struct base_arena *ar)
{
    char num[96];
    int n = snprintf(num, sizeof num, "{\"LockIndex\":%" PRIu64 ",\"Key\":", kv->lock_index);
    base_buf_append(b, num, (size_t)n);
    put_json_str(b, kv->key);
    n = snprintf(num, sizeof num, ",\"Flags\":%" PRIu64 ",\"Value\":", kv->flags);
    base_buf_append(b, num, (size_t)n);
    if (kv->value_len)
        put_json_str(b, base_b64_encode(ar, kv->value, kv->value_len));
    else
        base_buf_append(b, "null", 4);
    if (kv->session && *kv->session) {
        base_buf_append(b, ",\"Session\":", 11);
        put_json_str(b, kv->session);
    }
    n = snprintf(num, sizeof num, ",\"CreateIndex\":%" PRIu64 ",\"ModifyIndex\":%" PRIu64 "}",
                 kv->create_index, kv->modify_index);
    base_buf_append(b, num, (size_t)n);
}

struct list_ctx {
    struct api_list out;
    struct base_arena *ar;
    const char *prefix;
    const char *sep; /* ?keys&separator */
    bool keys;
    const char *last; /* last key emitted with a separator (dedup of "dir/" entries) */
};

static int add_kv(void *data, const struct zone_kv *kv)
{
    struct list_ctx *c = data;
    if (!c->keys) {
        if (kv_flags_fit(kv)) {
            api__list_add(&c->out, kv_json(kv, c->ar));
        } else {
            struct base_buf t;
            base_buf_init(&t);
            kv_text(&t, kv, c->ar);
            api__list_add_raw(&c->out, (const char *)t.data, t.len);
            base_buf_free(&t);
        }
        return 0;
    }
    size_t plen = strlen(c->prefix);
    const char *rest = kv->key + plen;
    const char *cut = c->sep && *c->sep ? strstr(rest, c->sep) : NULL;
    if (cut) {
        size_t n = (size_t)(cut - kv->key) + strlen(c->sep);
        if (c->last && strlen(c->last) == n && strncmp(c->last, kv->key, n) == 0)
            return 0;
        c->last = base_arena_strndup(c->ar, kv->key, n);
        api__list_add(&c->out, json_string(c->last));
    } else {
        api__list_add(&c->out, json_string(kv->key));
    }
    return 0;
}

static void read_kv(struct api *a, struct http_req *req, struct zone_read *rd,
                    struct base_arena *ar, struct api_result *res)
{
    const char *key = kv_key(req);
    bool recurse = http_req_query(req, "recurse") != NULL;
    bool keys = http_req_query(req, "keys") != NULL;
    BASE_UNUSED(a);

    res->index = api__table_max(rd, ZONE_TABLE_BIT(ZONE_TABLE_KV));
    if (recurse || keys) {
        if (api__probe_at(res, res->index))
            return;
        struct list_ctx c = {{0}, ar, key, http_req_query(req, "separator"), keys, NULL};
        api__list_init(&c.out, req);
        zone_kv_each(rd, key, ar, add_kv, &c);
        if (c.out.n == 0) {
            api__list_drop(&c.out);
            res->status = 404;
            res->raw = "";
            res->raw_set = true;
            return;
        }
        api__list_finish(&c.out, res);
        return;
    }
    struct zone_kv kv;
    if (zone_kv_get(rd, key, ar, &kv)) {
        res->status = 404;
        res->raw = "";
        res->raw_set = true;
        return;
    }
    if (api__probe_at(res, api__record_index(rd, kv.modify_index)))
        return;
    if (http_req_query(req, "raw")) {
        res->raw = kv.value;
        res->raw_len = kv.value_len;
        res->raw_set = true;
        return;
    }
    if (kv_flags_fit(&kv)) {
        res->json = json_pack("[o]", kv_json(&kv, ar));
        return;
    }
    base_buf_free(&res->owned);
    base_buf_append(&res->owned, "[", 1);
    kv_text(&res->owned, &kv, ar);
    base_buf_append(&res->owned, "]", 1);
    res->raw = res->owned.data;
    res->raw_len = res->owned.len;
    res->raw_set = true;
    res->content_type = "application/json";
}

static int parse_u64_param(struct http_req *req, const char *name, bool *has, uint64_t *v)
{
    const char *s = http_req_query(req, name);
    *has = s != NULL;
    if (!s)
        return 0;
    if (base_u64_parse(s, v)) {
        api__error(req, 400, "Invalid %s value \"%s\": must be an unsigned integer", name, s);
        return -1;
    }
    return 0;
}

static bool check_key(struct http_req *req, const char *key)
{
    size_t n = strlen(key);
    if (n > ZONE_KV_MAX_KEY) {
        api__error(req, 400, "Key is too long (limit: %d characters)", ZONE_KV_MAX_KEY);
        return false;
    }
    json_t *t = json_stringn(key, n); /* keys must be UTF-8 to be returned in JSON */
    if (!t) {
        api__error(req, 400, "Invalid key: not valid UTF-8");
        return false;
    }
    json_decref(t);
    return true;
}

static void kv_put(struct api *a, struct http_req *req)
{
    const char *key = kv_key(req);
    struct zone_cmd cmd = {.type = ZONE_CMD_KV_SET};
    uint64_t flags = 0;
    bool has_flags;
    size_t len;
    const char *body = http_req_body(req, &len);

    if (!*key) {
        api__error(req, 400, "Missing key name");
        return;
    }
    if (!check_key(req, key))
        return;
    const char *acquire = http_req_query(req, "acquire");
    const char *release = http_req_query(req, "release");
    if (acquire && release) {
        api__error(req, 400, "Conflicting flags: acquire with release");
        return;
    }
    if (parse_u64_param(req, "cas", &cmd.has_cas, &cmd.cas) ||
        parse_u64_param(req, "flags", &has_flags, &flags))
        return;
    if (release && cmd.has_cas) {
        api__error(req, 400, "Conflicting flags: cas with release");
        return;
    }
    if (len > ZONE_KV_MAX_VALUE) {
        api__error(req, 413, "Request body(%zu bytes) too large, max size: %d bytes", len,
                   ZONE_KV_MAX_VALUE);
        return;
    }
    cmd.kv.key = key;
    cmd.kv.value = (const uint8_t *)body;
    cmd.kv.value_len = len;
    cmd.kv.flags = flags;
    cmd.kv.session = "";
    if (!acquire && !release) {
        api__write(a, req, &cmd, API_REPLY_BOOL, NULL);
        return;
    }
    /* Consul's lock rules (zone.h, KV_LOCK and KV_UNLOCK). The lock delay after a session
     * was invalidated is this server's own, as in Consul: the acquire answers false. */
    if (acquire) {
        char msg[ZONE_SESSION_ID_MAX + 32];
        if (api__other_dc(a, req))
            return;
        if (zone_store_lock_delay(a->cfg.store, key) > 0) {
            http_respond(req, 200, "application/json", "false", 5);
            return;
        }
        cmd.type = ZONE_CMD_KV_LOCK;
        cmd.kv.session = acquire;
        snprintf(msg, sizeof msg, "invalid session \"%.*s\"", ZONE_SESSION_ID_MAX, acquire);
        api__write_invalid(a, req, &cmd, API_REPLY_BOOL, msg);
        return;
    }
    cmd.type = ZONE_CMD_KV_UNLOCK;
    cmd.kv.session = release;
    api__write(a, req, &cmd, API_REPLY_BOOL, NULL);
}

static void kv_delete(struct api *a, struct http_req *req)
{
    const char *key = kv_key(req);
    struct zone_cmd cmd = {.type = ZONE_CMD_KV_DELETE};

    cmd.recurse = http_req_query(req, "recurse") != NULL;
    if (!*key && !cmd.recurse) {
        api__error(req, 400, "Missing key name");
        return;
    }
    if (!check_key(req, key) || parse_u64_param(req, "cas", &cmd.has_cas, &cmd.cas))
        return;
    if (cmd.has_cas && cmd.recurse) {
        api__error(req, 400, "Conflicting flags: cas with recurse");
        return;
    }
    cmd.kv.key = key;
    api__write(a, req, &cmd, API_REPLY_BOOL, NULL);
}

bool api__kv_route(struct api *a, struct http_req *req, const char *path)
{
    if (strncmp(path, KV_PREFIX, strlen(KV_PREFIX)) != 0 && strcmp(path, "/v1/kv") != 0)
        return false;
    if (strcmp(path, "/v1/kv") == 0) {
        api__error(req, 400, "Missing key name");
        return true;
    }
    if (!api__method(req, "GET,PUT,DELETE"))
        return true;
    const char *m = http_req_method(req);
    if (strcmp(m, "GET") == 0) {
        bool list = http_req_query(req, "recurse") || http_req_query(req, "keys");
        if (check_key(req, kv_key(req)))
            (list ? api__read_list : api__read)(a, req, ZONE_TABLE_BIT(ZONE_TABLE_KV), read_kv);
    } else if (strcmp(m, "PUT") == 0) {
        kv_put(a, req);
    } else {
        kv_delete(a, req);
    }
    return true;
}
