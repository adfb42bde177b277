/* JSON in and out: strict field helpers that name the offending field, and the Consul shapes
 * of nodes, services and checks.
 *
 * Field names match the way Consul's decoder matches them: case-insensitively, and with
 * underscores ignored, so "Name", "name", "EnableTagOverride", "enabletagoverride" and
 * "enable_tag_override" are one field (python-consul sends lowercase keys; config files use
 * snake_case). Any other key is an error, as DESIGN.md 1.3 asks. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

bool api__key_is(const char *key, const char *name)
{
    const char *k = key, *n = name;
    for (;;) {
        while (*k == '_')
            k++;
        while (*n == '_')
            n++;
        char ck = *k >= 'A' && *k <= 'Z' ? (char)(*k + 32) : *k;
        char cn = *n >= 'A' && *n <= 'Z' ? (char)(*n + 32) : *n;
        if (ck != cn)
            return false;
        if (!ck)
            return true;
        k++;
        n++;
    }
}

json_t *api__json_field(json_t *obj, const char *name)
{
    const char *k;
    json_t *v, *last = NULL;
    json_object_foreach(obj, k, v)
    {
        if (api__key_is(k, name))
            last = v; /* "Address" then "address": the last one wins, as in Go */
    }
    return last;
}

int api__unknown_field(const char *key, char *errmsg)
{
    return base_errf(errmsg, BASE_EINVAL, "Request decode failed: unknown field \"%s\"", key);
}

static const char *type_name(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "bool";
    default:
        return "null";
    }
}

static int type_err(json_t *v, const char *field, const char *want, char *errmsg)
{
    return base_errf(errmsg, BASE_EINVAL,
                     "Request decode failed: field \"%s\": expected %s, got %s", field, want,
                     type_name(v));
}

int api__get_str(json_t *v, const char *field, struct base_arena *ar, const char **out,
                 char *errmsg)
{
    if (json_is_null(v)) {
        *out = "";
        return 0;
    }
    if (!json_is_string(v))
        return type_err(v, field, "a string", errmsg);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return base_errf(errmsg, BASE_EINVAL, "Request decode failed: field \"%s\": NUL byte",
                         field);
    *out = base_arena_strdup(ar, json_string_value(v));
    return 0;
}

int api__get_bool(json_t *v, const char *field, bool *out, char *errmsg)
{
    if (json_is_null(v)) {
        *out = false;
        return 0;
    }
    if (!json_is_boolean(v))
        return type_err(v, field, "a bool", errmsg);
    *out = json_is_true(v);
    return 0;
}

int api__get_uint(json_t *v, const char *field, uint64_t max, uint64_t *out, char *errmsg)
{
    if (json_is_null(v)) {
        *out = 0;
        return 0;
    }
    if (!json_is_integer(v))
        return type_err(v, field, "an integer", errmsg);
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x > max)
        return base_errf(errmsg, BASE_EINVAL,
                         "Request decode failed: field \"%s\": %lld out of range 0..%llu", field,
                         (long long)x, (unsigned long long)max);
    *out = (uint64_t)x;
    return 0;
}

int api__get_strlist(json_t *v, const char *field, struct base_arena *ar, const char ***out,
                     size_t *n, char *errmsg)
{
    *out = NULL;
    *n = 0;
    if (json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return type_err(v, field, "an array of strings", errmsg);
    size_t len = json_array_size(v);
    const char **arr = base_arena_alloc(ar, (len ? len : 1) * sizeof *arr);
    for (size_t i = 0; i < len; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e))
            return type_err(e, field, "an array of strings", errmsg);
        arr[i] = base_arena_strdup(ar, json_string_value(e));
    }
    *out = arr;
    *n = len;
    return 0;
}

int api__get_strmap(json_t *v, const char *field, struct base_arena *ar, struct zone_pair **out,
                    size_t *n, char *errmsg)
{
    const char *k;
    json_t *e;
    size_t i = 0;

    *out = NULL;
    *n = 0;
    if (json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return type_err(v, field, "an object of strings", errmsg);
    struct zone_pair *p = base_arena_alloc(ar, (json_object_size(v) + 1) * sizeof *p);
    json_object_foreach(v, k, e)
    {
        if (!json_is_string(e))
            return base_errf(errmsg, BASE_EINVAL,
                             "Request decode failed: field \"%s.%s\": expected a string, got %s",
                             field, k, type_name(e));
        if (!*k)
            return base_errf(errmsg, BASE_EINVAL, "Request decode failed: field \"%s\": empty key",
                             field);
        p[i].key = base_arena_strdup(ar, k);
        p[i].value = base_arena_strdup(ar, json_string_value(e));
        i++;
    }
    *out = p;
    *n = i;
    return 0;
}

int api__get_duration(json_t *v, const char *field, uint64_t *ms, char *errmsg)
{
    if (json_is_null(v)) {
        *ms = 0;
        return 0;
    }
    if (json_is_integer(v)) { /* Go marshals time.Duration as nanoseconds */
        json_int_t ns = json_integer_value(v);
        if (ns < 0)
            return base_errf(errmsg, BASE_EINVAL,
                             "Request decode failed: field \"%s\": negative duration", field);
        *ms = (uint64_t)ns / 1000000 + ((uint64_t)ns % 1000000 ? 1 : 0);
        return 0;
    }
    if (!json_is_string(v))
        return type_err(v, field, "a duration string such as \"10s\"", errmsg);
    const char *s = json_string_value(v);
    if (!*s) {
        *ms = 0;
        return 0;
    }
    if (base_duration_parse(s, ms))
        return base_errf(errmsg, BASE_EINVAL,
                         "Request decode failed: field \"%s\": invalid duration \"%s\"", field, s);
    return 0;
}

/* ---- duplicate keys: the last one wins, in document order -----------------------------
 *
 * Go's decoder assigns each key in document order, so of "Name", "name", "Name" the last
 * wins. jansson keeps the last value of a key given twice, but at the place of its first
 * occurrence, so the decoders (which take keys in iteration order) would see "name" last. When
 * a body has an exact duplicate, dup_walk re-reads the text (jansson has already accepted it)
 * and moves each key of each object to the end as it meets it, which leaves every object in
 * the order of its keys' last occurrences. An occurrence whose value jansson dropped is walked
 * against the kept value or against nothing: the kept value's own occurrence comes later and
 * fixes its order again. Every read is bounds-checked; on anything unexpected the walk stops
 * and jansson's order stays. */

struct dup_walk {
    const char *s;
    size_t n, i;
    struct base_buf key; /* the unescaped key being looked up */
};

#define DUP_MAX_DEPTH 4096 /* jansson refuses deeper nesting before we get here */

static void dup_ws(struct dup_walk *w)
{
    while (w->i < w->n &&
           (w->s[w->i] == ' ' || w->s[w->i] == '\t' || w->s[w->i] == '\r' || w->s[w->i] == '\n'))
        w->i++;
}

static int dup_hex4(struct dup_walk *w, unsigned *out)
{
    unsigned v = 0;
    if (w->n - w->i < 4)
        return -1;
    for (int k = 0; k < 4; k++) {
        char c = w->s[w->i++];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static void dup_utf8(struct base_buf *b, unsigned cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    base_buf_append(b, u, n);
}

/* A string at w->i (its opening quote); its unescaped bytes go to w->key when key is set. */
static int dup_string(struct dup_walk *w, bool key)
{
    if (key)
        w->key.len = 0;
    if (w->i >= w->n || w->s[w->i] != '"')
        return -1;
    w->i++;
    while (w->i < w->n) {
        char c = w->s[w->i++];
        if (c == '"')
            return 0;
        if (c != '\\') {
            if (key)
                base_buf_append(&w->key, &c, 1);
            continue;
        }
        if (w->i >= w->n)
            return -1;
        char e = w->s[w->i++];
        unsigned cp;
        switch (e) {
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u':
            if (dup_hex4(w, &cp))
                return -1;
            /* a surrogate pair is one code point (jansson refuses lone surrogates) */
            if (cp >= 0xd800 && cp < 0xdc00 && w->n - w->i >= 6 && w->s[w->i] == '\\' &&
                w->s[w->i + 1] == 'u') {
                unsigned lo;
                w->i += 2;
                if (dup_hex4(w, &lo) || lo < 0xdc00 || lo > 0xdfff)
                    return -1;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            break;
        default: /* '"', '\\', '/' */
            cp = (unsigned char)e;
            break;
        }
        if (key)
            dup_utf8(&w->key, cp);
    }
    return -1;
}

static int dup_value(struct dup_walk *w, json_t *node, int depth);

/* Opens a container at '{' or '[': 1 when it is empty (and consumed whole), else 0. */
static int dup_open(struct dup_walk *w, char close)
{
    w->i++;
    dup_ws(w);
    if (w->i < w->n && w->s[w->i] == close) {
        w->i++;
        return 1;
    }
    return 0;
}

/* After a member: 1 at the container's end, 0 after a ',', -1 on anything else. */
static int dup_next(struct dup_walk *w, char close)
{
    dup_ws(w);
    if (w->i >= w->n)
        return -1;
    char c = w->s[w->i++];
    return c == close ? 1 : c == ',' ? 0 : -1;
}

/* An object member's key and ':' (-1 when malformed); *child gets the key's value in the
 * parsed tree (NULL if none), moved to the end of node: the key's latest occurrence so far. */
static int dup_key(struct dup_walk *w, json_t *node, json_t **child)
{
    *child = NULL;
    dup_ws(w);
    if (dup_string(w, true))
        return -1;
    dup_ws(w);
    if (w->i >= w->n || w->s[w->i] != ':')
        return -1;
    w->i++;
    if (json_is_object(node)) {
        const char *k = (const char *)w->key.data;
        size_t kl = w->key.len;
        *child = json_object_getn(node, k ? k : "", kl);
        if (*child) {
            json_incref(*child);
            json_object_deln(node, k ? k : "", kl);
            json_object_setn_new(node, k ? k : "", kl, *child);
        }
    }
    return 0;
}

/* An object (close '}') or an array (']'): each member's value is walked with its node in the
 * parsed tree (the key's value, or the element at that index). */
static int dup_members(struct dup_walk *w, json_t *node, int depth, char close)
{
    if (dup_open(w, close))
        return 0;
    for (size_t k = 0;; k++) {
        json_t *child = NULL;
        if (close == '}') {
            if (dup_key(w, node, &child))
                return -1;
        } else if (json_is_array(node)) {
            child = json_array_get(node, k);
        }
        if (dup_value(w, child, depth + 1))
            return -1;
        int end = dup_next(w, close);
        if (end)
            return end > 0 ? 0 : -1;
    }
}

static int dup_value(struct dup_walk *w, json_t *node, int depth)
{
    if (depth > DUP_MAX_DEPTH)
        return -1;
    dup_ws(w);
    if (w->i >= w->n)
        return -1;
    switch (w->s[w->i]) {
    case '{':
        return dup_members(w, node, depth, '}');
    case '[':
        return dup_members(w, node, depth, ']');
    case '"':
        return dup_string(w, false);
    default: /* a number, true, false or null */
        while (w->i < w->n && w->s[w->i] != ',' && w->s[w->i] != '}' && w->s[w->i] != ']' &&
               w->s[w->i] != ' ' && w->s[w->i] != '\t' && w->s[w->i] != '\r' && w->s[w->i] != '\n')
            w->i++;
        return 0;
    }
}

json_t *api__json_loadb(const char *text, size_t len, json_error_t *jerr)
{
    /* Without exact duplicates jansson's order is the document's (the common case). */
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, jerr);
    if (v || json_error_code(jerr) != json_error_duplicate_key)
        return v;
    v = json_loadb(text, len, 0, jerr);
    if (!v)
        return NULL;
    struct dup_walk w = {.s = text, .n = len};
    base_buf_init(&w.key);
    (void)dup_value(&w, v, 0);
    base_buf_free(&w.key);
    return v;
}

static json_t *parse_body(struct http_req *req, char *errmsg)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    json_error_t jerr;

    if (len == 0) {
        base_errf(errmsg, BASE_EINVAL, "Request decode failed: empty body");
        return NULL;
    }
    json_t *v = api__json_loadb(body, len, &jerr);
    if (!v) {
        base_errf(errmsg, BASE_EINVAL, "Request decode failed: %s (line %d, column %d)", jerr.text,
                  jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(v)) {
        base_errf(errmsg, BASE_EINVAL, "Request decode failed: expected a JSON object, got %s",
                  type_name(v));
        json_decref(v);
        return NULL;
    }
    return v;
}

json_t *api__parse_body(struct http_req *req, char *errmsg)
{
    json_t *v = parse_body(req, errmsg);
    if (!v)
        api__error(req, 400, "%s", errmsg);
    return v;
}

/* ---- output ---------------------------------------------------------------------------- */

static json_t *jstr(const char *s)
{
    json_t *v = json_string(s ? s : "");
    return v ? v : json_string(""); /* stored strings are validated UTF-8; be safe anyway */
}

json_t *api__json_strmap(const struct zone_pair *p, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(o, p[i].key, jstr(p[i].value));
    return o;
}

json_t *api__json_strlist(const char *const *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, jstr(s[i]));
    return a;
}

void api__json_indexes(json_t *o, uint64_t create_index, uint64_t modify_index)
{
    json_object_set_new(o, "CreateIndex", json_integer((json_int_t)create_index));
    json_object_set_new(o, "ModifyIndex", json_integer((json_int_t)modify_index));
}

/* A node's fields as a node and a catalog service entry begin (meta named meta_key). */
static json_t *node_fields(const struct zone_node *n, const char *meta_key)
{
    json_t *o = json_object();
    json_object_set_new(o, "ID", jstr(n->id));
    json_object_set_new(o, "Node", jstr(n->name));
    json_object_set_new(o, "Address", jstr(n->address));
    json_object_set_new(o, "Datacenter", jstr(n->datacenter));
    json_object_set_new(o, "TaggedAddresses",
                        api__json_strmap(n->tagged_addresses, n->n_tagged_addresses));
    json_object_set_new(o, meta_key, api__json_strmap(n->meta, n->n_meta));
    return o;
}

json_t *api__json_node(const struct zone_node *n)
{
    json_t *o = node_fields(n, "Meta");
    api__json_indexes(o, n->create_index, n->modify_index);
    return o;
}

static json_t *json_weights(const struct zone_service *s)
{
    return json_pack("{s:I,s:I}", "Passing", (json_int_t)s->weight_passing, "Warning",
                     (json_int_t)s->weight_warning);
}

json_t *api__json_service_agent(const struct zone_service *s, const char *datacenter)
{
    json_t *o = json_object();
    json_object_set_new(o, "Kind", jstr(s->kind));
    json_object_set_new(o, "ID", jstr(s->id));
    json_object_set_new(o, "Service", jstr(s->name));
    json_object_set_new(o, "Tags", api__json_strlist(s->tags, s->n_tags));
    json_object_set_new(o, "Meta", api__json_strmap(s->meta, s->n_meta));
    json_object_set_new(o, "Port", json_integer(s->port));
    json_object_set_new(o, "Address", jstr(s->address));
    json_object_set_new(o, "TaggedAddresses",
                        api__json_strmap(s->tagged_addresses, s->n_tagged_addresses));
    json_object_set_new(o, "Weights", json_weights(s));
    json_object_set_new(o, "EnableTagOverride", json_boolean(s->enable_tag_override));
    if (datacenter)
        json_object_set_new(o, "Datacenter", jstr(datacenter));
    api__json_indexes(o, s->create_index, s->modify_index);
    return o;
}

json_t *api__json_service_catalog(const struct zone_node *n, const struct zone_service *s)
{
    json_t *o = node_fields(n, "NodeMeta");
    json_object_set_new(o, "ServiceKind", jstr(s->kind));
    json_object_set_new(o, "ServiceID", jstr(s->id));
    json_object_set_new(o, "ServiceName", jstr(s->name));
    json_object_set_new(o, "ServiceTags", api__json_strlist(s->tags, s->n_tags));
    json_object_set_new(o, "ServiceAddress", jstr(s->address));
    json_object_set_new(o, "ServiceTaggedAddresses",
                        api__json_strmap(s->tagged_addresses, s->n_tagged_addresses));
    json_object_set_new(o, "ServiceWeights", json_weights(s));
    json_object_set_new(o, "ServiceMeta", api__json_strmap(s->meta, s->n_meta));
    json_object_set_new(o, "ServicePort", json_integer(s->port));
    json_object_set_new(o, "ServiceEnableTagOverride", json_boolean(s->enable_tag_override));
    api__json_indexes(o, s->create_index, s->modify_index);
    return o;
}

static json_t *json_duration(uint64_t ms)
{
    char buf[32];
    if (ms == 0)
        return json_string("0s");
    if (ms % 1000 == 0)
        snprintf(buf, sizeof buf, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(buf, sizeof buf, "%llums", (unsigned long long)ms);
    return json_string(buf);
}

json_t *api__json_check(const struct zone_check *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "Node", jstr(c->node));
    json_object_set_new(o, "CheckID", jstr(c->check_id));
    json_object_set_new(o, "Name", jstr(c->name));
    json_object_set_new(o, "Status", jstr(zone_health_name(c->status)));
    json_object_set_new(o, "Notes", jstr(c->notes));
    json_object_set_new(o, "Output", jstr(c->output));
    json_object_set_new(o, "ServiceID", jstr(c->service_id));
    json_object_set_new(o, "ServiceName", jstr(c->service_name));
    json_object_set_new(o, "ServiceTags", api__json_strlist(c->service_tags, c->n_service_tags));
    json_object_set_new(o, "Type", jstr(c->type));
    json_t *def = json_object();
    if (c->http && *c->http) {
        json_object_set_new(def, "HTTP", jstr(c->http));
        json_object_set_new(def, "Method", jstr(c->method));
    }
    if (c->tcp && *c->tcp)
        json_object_set_new(def, "TCP", jstr(c->tcp));
    if (c->interval_ms)
        json_object_set_new(def, "Interval", json_duration(c->interval_ms));
    if (c->timeout_ms)
        json_object_set_new(def, "Timeout", json_duration(c->timeout_ms));
    if (c->ttl_ms)
        json_object_set_new(def, "TTL", json_duration(c->ttl_ms));
    if (c->deregister_after_ms)
        json_object_set_new(def, "DeregisterCriticalServiceAfter",
                            json_duration(c->deregister_after_ms));
    json_object_set_new(o, "Definition", def);
    api__json_indexes(o, c->create_index, c->modify_index);
    return o;
}

/* ---- lists ----------------------------------------------------------------------------- */

void api__list_init(struct api_list *l, struct http_req *req)
{
    l->n = 0;
    l->arr = http_req_query(req, "pretty") ? json_array() : NULL;
    base_buf_init(&l->text);
}

static int list_dump_cb(const char *buf, size_t size, void *data)
{
    base_buf_append(data, buf, size);
    return 0;
}

void api__list_add(struct api_list *l, json_t *item)
{
    if (l->arr) {
        json_array_append_new(l->arr, item);
    } else {
        base_buf_append(&l->text, l->n ? "," : "[", 1);
        json_dump_callback(item, list_dump_cb, &l->text, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(item);
    }
    l->n++;
}

void api__list_add_raw(struct api_list *l, const char *text, size_t len)
{
    if (l->arr) { /* ?pretty: the items so far become text, and the list stays text */
        size_t i;
        json_t *item;
        json_array_foreach(l->arr, i, item)
        {
            base_buf_append(&l->text, i ? "," : "[", 1);
            json_dump_callback(item, list_dump_cb, &l->text, JSON_COMPACT | JSON_ENCODE_ANY);
        }
        json_decref(l->arr);
        l->arr = NULL;
    }
    base_buf_append(&l->text, l->n ? "," : "[", 1);
    base_buf_append(&l->text, text, len);
    l->n++;
}

void api__list_finish(struct api_list *l, struct api_result *res)
{
    if (l->arr) {
        res->json = l->arr;
        l->arr = NULL;
        return;
    }
    base_buf_append(&l->text, l->n ? "]" : "[]", l->n ? 1 : 2);
    base_buf_free(&res->owned);
    res->owned = l->text;
    base_buf_init(&l->text);
    res->raw = res->owned.data;
    res->raw_len = res->owned.len;
    res->raw_set = true;
    res->content_type = "application/json";
}

void api__list_drop(struct api_list *l)
{
    json_decref(l->arr);
    l->arr = NULL;
    base_buf_free(&l->text);
}
