/* /v1/operator/keyring: the gossip pool's keyring, as Consul's OperatorKeyringEndpoint.
 *
 * GET lists the keys (an array of one KeyringResponse: this datacenter's LAN pool, the only
 * pool Herald has), POST installs, PUT makes primary and DELETE removes the body's {"Key": K}.
 * Each is one serf keyring query across the pool (gossip/, through admin's hook), answered when
 * every member has answered or the query times out. A failure is a 500 whose text is Consul's
 * (go-multierror's list): "<dc> (LAN) error: <serf's sentence>" then "<node>: <message>" for
 * each member that said why.
 *
 * The request may go away first (client disconnect): the query still runs to its end, and
 * the answer is dropped. Loop thread. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct keyring_ctx {
    struct api *api;
    struct http_req *req; /* NULL once the client is gone */
    enum api_keyring_op op;
};

static void keyring_abort(void *data, struct http_req *req)
{
    struct keyring_ctx *k = data;
    BASE_UNUSED(req);
    k->req = NULL;
}

static int tag_cmp(const void *x, const void *y)
{
    return strcmp(((const struct api_tag *)x)->key, ((const struct api_tag *)y)->key);
}

/* Consul's keyringErrorsOrNil, in go-multierror's format. */
static void respond_error(struct api *a, struct http_req *req, const char *error,
                          const struct api_tag *msgs, size_t n)
{
    struct base_buf b;
    base_buf_init(&b);
    struct api_tag *sorted = base_malloc((n + 1) * sizeof *sorted);
    if (n)
        memcpy(sorted, msgs, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, tag_cmp);
    if (n == 0)
        base_buf_printf(&b, "1 error occurred:\n");
    else
        base_buf_printf(&b, "%zu errors occurred:\n", n + 1);
    base_buf_printf(&b, "\t* %s (LAN) error: %s\n", a->cfg.datacenter, error);
    for (size_t i = 0; i < n; i++)
        base_buf_printf(&b, "\t* %s: %s\n", sorted[i].key, sorted[i].value);
    base_buf_printf(&b, "\n");
    base_free(sorted);
    http_respond(req, 500, "text/plain; charset=utf-8", b.data, b.len);
    base_buf_free(&b);
}

static json_t *counts(const struct api_key_count *v, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(o, v[i].key, json_integer((json_int_t)v[i].count));
    return o;
}

static void keyring_done(void *ctx, const struct api_keyring_result *r)
{
    struct keyring_ctx *k = ctx;
    struct api *a = k->api;
    struct http_req *req = k->req;
    enum api_keyring_op op = k->op;
    base_free(k);
    if (!req)
        return;
    http_req_set_abort(req, NULL, NULL);
    if (r->status != 0) {
        respond_error(a, req, r->error ? r->error : base_strerror(r->status), r->messages,
                      r->n_messages);
        return;
    }
    if (op != API_KEYRING_LIST) {
        http_respond(req, 200, NULL, "", 0);
        return;
    }
    json_t *one = json_object();
    json_object_set_new(one, "WAN", json_false());
    json_object_set_new(one, "Datacenter", json_string(a->cfg.datacenter));
    json_object_set_new(one, "Segment", json_string(""));
    if (r->n_messages) {
        json_t *m = json_object();
        for (size_t i = 0; i < r->n_messages; i++)
            json_object_set_new(m, r->messages[i].key, json_string(r->messages[i].value));
        json_object_set_new(one, "Messages", m);
    }
    json_object_set_new(one, "Keys", counts(r->keys, r->n_keys));
    json_object_set_new(one, "PrimaryKeys", counts(r->primary_keys, r->n_primary_keys));
    json_object_set_new(one, "NumNodes", json_integer((json_int_t)r->num_nodes));
    json_t *arr = json_array();
    json_array_append_new(arr, one);
    api__respond_json(a, req, 200, arr, 0);
}

static void keyring_op(struct api *a, struct http_req *req)
{
    const char *m = http_req_method(req);
    enum api_keyring_op op = strcmp(m, "GET") == 0    ? API_KEYRING_LIST
                             : strcmp(m, "POST") == 0 ? API_KEYRING_INSTALL
                             : strcmp(m, "PUT") == 0  ? API_KEYRING_USE
                                                      : API_KEYRING_REMOVE;
    const char *key = NULL;
    struct base_arena *ar = http_req_arena(req);
    if (op != API_KEYRING_LIST) {
        char err[BASE_ERRMSG_LEN];
        json_t *body = api__parse_body(req, err);
        if (!body)
            return;
        const char *k;
        json_t *v;
        int rc = 0;
        json_object_foreach(body, k, v)
        {
            if (api__key_is(k, "Key"))
                rc = api__get_str(v, "Key", ar, &key, err);
            else if (!api__key_is(k, "Token") && !api__key_is(k, "RelayFactor") &&
                     !api__key_is(k, "LocalOnly"))
                rc = api__unknown_field(k, err);
            if (rc)
                break;
        }
        json_decref(body);
        if (rc) {
            api__error(req, 400, "Request decode failed: %s", err);
            return;
        }
        if (!key)
            key = ""; /* as Consul: an empty key, which every member refuses */
    }
    if (!a->cfg.gossip.keyring) {
        api__error(req, 500, "No gossip pool");
        return;
    }
    struct keyring_ctx *k = base_calloc(1, sizeof *k);
    *k = (struct keyring_ctx){a, req, op};
    http_req_set_abort(req, keyring_abort, k);
    int rc = a->cfg.gossip.keyring(a->cfg.gossip.data, op, key, keyring_done, k);
    if (rc) {
        http_req_set_abort(req, NULL, NULL);
        base_free(k);
        respond_error(a, req,
                      rc == BASE_EINVAL    ? "illegal base64 data in the key"
                      : rc == BASE_ETOOBIG ? "too many keyring operations running"
                                           : base_strerror(rc),
                      NULL, 0);
    }
}

bool api__keyring_route(struct api *a, struct http_req *req, const char *path)
{
    if (strcmp(path, "/v1/operator/keyring") != 0)
        return false;
    if (api__other_dc(a, req))
        return true;
    if (api__method(req, "GET,POST,PUT,DELETE"))
        keyring_op(a, req);
    return true;
}
