/* /v1/txn: Consul's transactions (agent/txn_endpoint.go, consul/txn_endpoint.go,
 * state/txn.go).
 *
 * The body is a JSON array of ops, each an object with one member "KV", "Node", "Service",
 * "Check" or "Session" (delete only, as in Consul). Everything is checked here before
 * anything is proposed: the body size and the op count (413, Consul's texts), then each op
 * (400 naming the op and the field). A transaction with a write is ONE zone command
 * (ZONE_CMD_TXN) in one Raft entry, applied in one LMDB transaction: the first op that fails
 * rolls it all back and its index and reason come back as the command's result, which this
 * file turns into Consul's 409 {"Results": null, "Errors": [{"OpIndex", "What"}]}. On success
 * the results are read from the local replica once the entry applied there (the proposer
 * waits for that, consensus.h): each write's entry as stored (without its Value), get's and
 * get-tree's entries with their values. A transaction of reads only is answered from a read
 * (Consul's Txn.Read, with ?stale / ?consistent), without Raft; it reports every failing op.
 * A failed write transaction lists every failing op as Consul does: the apply names the first,
 * and a dry run of the ops on the store (zone_store_txn_errors, aborted) finds the others.
 * Difference from Consul: a write's result shows its entry as stored when the answer is built
 * (a write committed in between shows through, as it would in the dry run's list). */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define TXN_MAX_BODY (512 * 1024) /* Consul's txn_max_req_len default */

struct txn {
    struct zone_txn_op ops[ZONE_TXN_MAX_OPS];
    size_t n;
    bool writes;
};

/* ---- decoding -------------------------------------------------------------------------- */

static enum zone_txn_verb verb_of(enum zone_txn_kind kind, const char *verb)
{
    for (int vb = ZONE_TXN_KV_SET; vb <= ZONE_TXN_VERB_MAX; vb++)
        if (zone_txn_verb_kind((enum zone_txn_verb)vb) == kind &&
            strcmp(verb, zone_txn_verb_name((enum zone_txn_verb)vb)) == 0)
            return (enum zone_txn_verb)vb;
    return 0;
}

static const char *svc_id(const struct zone_txn_op *op)
{
    return *op->service.id ? op->service.id : op->service.name;
}

static const char *const kind_names[] = {"", "KV", "Node", "Service", "Check", "Session"};

/* A catalog object's ModifyIndex (the op's Index), taken out of obj (a copy). */
static int take_index(json_t *obj, const char *field, uint64_t *out, char *errmsg)
{
    const char *k;
    json_t *v, *tmp;
    *out = 0;
    json_object_foreach_safe(obj, tmp, k, v)
    {
        int rc = 0;
        if (api__key_is(k, "ModifyIndex"))
            rc = api__get_uint(v, field, UINT64_MAX, out, errmsg);
        if (rc)
            return rc;
        if (api__key_is(k, "ModifyIndex") || api__key_is(k, "CreateIndex"))
            json_object_del(obj, k);
    }
    return 0;
}

/* A Session op: {"Verb": "delete", "Session": {"ID": ...}} (Consul's only Session verb; the
 * session's other fields are not used). */
static int session_op(json_t *obj, size_t i, struct base_arena *ar, struct zone_txn_op *op,
                      char *errmsg)
{
    const char *verb = NULL, *k;
    json_t *v, *body = NULL;
    int rc = 0;

    if (!json_is_object(obj))
        return base_errf(errmsg, BASE_EINVAL, "op %zu: field \"Session\": expected an object", i);
    json_object_foreach(obj, k, v)
    {
        if (api__key_is(k, "Verb"))
            rc = api__get_str(v, "Session.Verb", ar, &verb, errmsg);
        else if (api__key_is(k, "Session"))
            body = v;
        else
            rc = base_errf(errmsg, BASE_EINVAL, "unknown field \"Session.%.40s\"", k);
        if (rc) {
            char inner[BASE_ERRMSG_LEN];
            snprintf(inner, sizeof inner, "%s", errmsg);
            return base_errf(errmsg, BASE_EINVAL, "op %zu: %s", i, inner);
        }
    }
    if (!verb || !(op->verb = verb_of(ZONE_TXN_SESSION, verb)))
        return base_errf(errmsg, BASE_EINVAL,
                         "op %zu: field \"Session.Verb\": unknown Session verb \"%.64s\"", i,
                         verb ? verb : "");
    json_t *id = body && json_is_object(body) ? api__json_field(body, "ID") : NULL;
    op->kv.key = "";
    op->kv.value = (const uint8_t *)"";
    if (!id || api__get_str(id, "Session.Session.ID", ar, &op->kv.session, errmsg) ||
        !*op->kv.session || strlen(op->kv.session) > ZONE_SESSION_ID_MAX)
        return base_errf(errmsg, BASE_EINVAL,
                         "op %zu: field \"Session.Session.ID\": Must provide a session ID", i);
    return 0;
}

/* Node, Service and Check ops (Consul's api.TxnOp shapes). obj is the op's object. */
static int catalog_op(struct api *a, enum zone_txn_kind kind, json_t *obj, size_t i,
                      struct base_arena *ar, struct zone_txn_op *op, char *errmsg)
{
    const char *kn = kind_names[kind], *verb = NULL, *k;
    json_t *v, *body = NULL;
    const char *node = NULL;
    char inner[BASE_ERRMSG_LEN];
    int rc = 0;

    if (!json_is_object(obj))
        return base_errf(errmsg, BASE_EINVAL, "op %zu: field \"%s\": expected an object", i, kn);
    json_object_foreach(obj, k, v)
    {
        if (api__key_is(k, "Verb"))
            rc = api__get_str(v, "Verb", ar, &verb, errmsg);
        else if (kind == ZONE_TXN_SERVICE && api__key_is(k, "Node"))
            rc = api__get_str(v, "Service.Node", ar, &node, errmsg);
        else if (api__key_is(k, kn))
            body = v;
        else
            rc = base_errf(errmsg, BASE_EINVAL, "unknown field \"%s.%.40s\"", kn, k);
        if (rc) {
            snprintf(inner, sizeof inner, "%s", errmsg);
            return base_errf(errmsg, BASE_EINVAL, "op %zu: %s", i, inner);
        }
    }
    if (!verb || !(op->verb = verb_of(kind, verb)))
        return base_errf(errmsg, BASE_EINVAL,
                         "op %zu: field \"%s.Verb\": unknown %s verb \"%.64s\"", i, kn, kn,
                         verb ? verb : "");
    if (!body || !json_is_object(body))
        return base_errf(errmsg, BASE_EINVAL, "op %zu: field \"%s.%s\": expected an object", i, kn,
                         kn);
    json_t *copy = json_copy(body);
    snprintf(inner, sizeof inner, "%s.%s.ModifyIndex", kn, kn);
    uint64_t index = 0;
    rc = take_index(copy, inner, &index, errmsg);
    if (!rc && kind == ZONE_TXN_NODE) {
        struct zone_node *n = &op->node;
        n->name = n->id = n->address = "";
        n->datacenter = a->cfg.datacenter;
        json_object_foreach(copy, k, v)
        {
            if (api__key_is(k, "Node"))
                rc = api__get_str(v, "Node.Node.Node", ar, &n->name, errmsg);
            else if (api__key_is(k, "ID"))
                rc = api__get_str(v, "Node.Node.ID", ar, &n->id, errmsg);
            else if (api__key_is(k, "Address"))
                rc = api__get_str(v, "Node.Node.Address", ar, &n->address, errmsg);
            else if (api__key_is(k, "Datacenter")) {
                const char *dc = "";
                rc = api__get_str(v, "Node.Node.Datacenter", ar, &dc, errmsg);
                if (!rc && *dc && strcmp(dc, a->cfg.datacenter) != 0)
                    rc = base_errf(errmsg, BASE_EINVAL,
                                   "field \"Node.Node.Datacenter\": not this datacenter");
            } else if (api__key_is(k, "TaggedAddresses"))
                rc = api__get_strmap(v, "Node.Node.TaggedAddresses", ar, &n->tagged_addresses,
                                     &n->n_tagged_addresses, errmsg);
            else if (api__key_is(k, "Meta"))
                rc = api__get_strmap(v, "Node.Node.Meta", ar, &n->meta, &n->n_meta, errmsg);
            else if (api__key_is(k, "Partition") || api__key_is(k, "PeerName"))
                rc = api__empty_value(v) ? 0
                                         : base_errf(errmsg, BASE_EINVAL,
                                                     "field \"Node.Node.%s\": not supported", k);
            else
                rc = base_errf(errmsg, BASE_EINVAL, "unknown field \"Node.Node.%.40s\"", k);
            if (rc)
                break;
        }
        n->modify_index = index;
        if (!rc && (!*n->name || strlen(n->name) > ZONE_NAME_MAX))
            rc = base_errf(errmsg, BASE_EINVAL, "field \"Node.Node.Node\": %s",
                           *n->name ? "too long" : "Must provide node");
    } else if (!rc && kind == ZONE_TXN_SERVICE) {
        struct zone_check *ignored;
        size_t n_ignored;
        op->node.name = node ? node : "";
        op->node.id = op->node.address = op->node.datacenter = "";
        if (!*op->node.name || strlen(op->node.name) > ZONE_NAME_MAX)
            rc = base_errf(errmsg, BASE_EINVAL, "field \"Service.Node\": %s",
                           *op->node.name ? "too long" : "Must provide node");
        else if (!zone_txn_verb_writes(op->verb) || op->verb == ZONE_TXN_SERVICE_DELETE ||
                 op->verb == ZONE_TXN_SERVICE_DELETE_CAS) {
            /* get and the deletes name the instance only: its ID (or name) */
            json_t *id = api__json_field(copy, "ID"), *name = api__json_field(copy, "Service");
            memset(&op->service, 0, sizeof op->service);
            op->service.name = op->service.kind = op->service.address = "";
            if (!(rc = api__get_str(id ? id : json_null(), "Service.Service.ID", ar,
                                    &op->service.id, errmsg)) &&
                !(rc = api__get_str(name ? name : json_null(), "Service.Service.Service", ar,
                                    &op->service.name, errmsg)) &&
                strlen(svc_id(op)) > ZONE_NAME_MAX)
                rc = base_errf(errmsg, BASE_EINVAL, "field \"Service.Service.ID\": too long");
        } else if ((rc = api__decode_service_def(a, copy, ar, true, &op->service, &ignored,
                                                 &n_ignored, errmsg))) {
            base_err_wrap(errmsg, "Service.Service");
        }
        op->service.node = op->node.name;
        op->service.modify_index = index;
        if (!rc && !*op->service.id && !*op->service.name)
            rc = base_errf(errmsg, BASE_EINVAL, "field \"Service.Service.ID\": Must provide ID");
    } else if (!rc) {
        const char *cnode = "";
        json_t *nv = api__json_field(copy, "Node");
        if ((rc = api__get_str(nv ? nv : json_null(), "Check.Check.Node", ar, &cnode, errmsg)) ==
                0 &&
            (!*cnode || strlen(cnode) > ZONE_NAME_MAX))
            rc = base_errf(errmsg, BASE_EINVAL, "field \"Check.Check.Node\": %s",
                           *cnode ? "too long" : "Must provide node");
        if (!rc && (rc = api__decode_check(copy, cnode, ar, &op->check, errmsg)))
            base_err_wrap(errmsg, "Check.Check");
        if (!rc) {
            struct zone_check *c = &op->check;
            if (!c->check_id || !*c->check_id)
                c->check_id = c->name ? c->name : "";
            if (!*c->check_id)
                rc = base_errf(errmsg, BASE_EINVAL,
                               "field \"Check.Check.CheckID\": Missing check ID");
            if (!c->name || !*c->name)
                c->name = c->check_id;
            c->node = cnode;
            c->type = "";
            if (!c->service_id)
                c->service_id = "";
            if (!c->notes)
                c->notes = "";
            if (!c->output)
                c->output = "";
            c->modify_index = index;
        }
        op->node.name = cnode;
        op->node.id = op->node.address = op->node.datacenter = "";
    }
    json_decref(copy);
    if (rc) {
        snprintf(inner, sizeof inner, "%s", errmsg);
        return base_errf(errmsg, BASE_EINVAL, "op %zu: %s", i, inner);
    }
    return 0;
}

static int kv_op(json_t *kv, size_t i, struct base_arena *ar, struct zone_txn_op *op, char *errmsg)
{
    const char *key, *verb = NULL, *val = "";
    bool has_key = false;
    char field[64];

    if (!json_is_object(kv))
        return base_errf(errmsg, BASE_EINVAL, "op %zu: field \"KV\": expected an object", i);
    op->kv.key = op->kv.session = "";
    op->kv.value = (const uint8_t *)"";
    json_t *v;
    json_object_foreach(kv, key, v)
    {
        snprintf(field, sizeof field, "KV.%.40s", key);
        int rc = 0;
        if (api__key_is(key, "Verb")) {
            rc = api__get_str(v, "KV.Verb", ar, &verb, errmsg);
        } else if (api__key_is(key, "Key")) {
            rc = api__get_str(v, "KV.Key", ar, &op->kv.key, errmsg);
            has_key = true;
        } else if (api__key_is(key, "Value")) {
            rc = api__get_str(v, "KV.Value", ar, &val, errmsg);
        } else if (api__key_is(key, "Flags")) {
            rc = api__get_uint(v, "KV.Flags", UINT64_MAX, &op->kv.flags, errmsg);
        } else if (api__key_is(key, "Index")) {
            rc = api__get_uint(v, "KV.Index", UINT64_MAX, &op->kv.modify_index, errmsg);
        } else if (api__key_is(key, "Session")) {
            rc = api__get_str(v, "KV.Session", ar, &op->kv.session, errmsg);
        } else if (api__key_is(key, "Namespace") || api__key_is(key, "Partition")) {
            if (!api__empty_value(v) &&
                !(json_is_string(v) && strcmp(json_string_value(v), "default") == 0))
                return base_errf(errmsg, BASE_EINVAL, "op %zu: field \"%s\": not supported", i,
                                 field);
        } else {
            return base_errf(errmsg, BASE_EINVAL, "op %zu: unknown field \"%s\"", i, field);
        }
        if (rc) {
            char inner[BASE_ERRMSG_LEN];
            snprintf(inner, sizeof inner, "%s", errmsg);
            return base_errf(errmsg, BASE_EINVAL, "op %zu: %s", i, inner);
        }
    }
    if (!verb || !*verb)
        return base_errf(errmsg, BASE_EINVAL, "op %zu: missing field \"KV.Verb\"", i);
    op->verb = verb_of(ZONE_TXN_KV, verb);
    if (!op->verb)
        return base_errf(errmsg, BASE_EINVAL,
                         "op %zu: field \"KV.Verb\": unknown KV verb \"%.64s\"", i, verb);
    /* kvsPreApply: every verb but delete-tree names a key */
    if (op->verb != ZONE_TXN_KV_DELETE_TREE && (!has_key || !*op->kv.key))
        return base_errf(errmsg, BASE_EINVAL, "op %zu: field \"KV.Key\": Must provide key", i);
    if (strlen(op->kv.key) > ZONE_KV_MAX_KEY)
        return base_errf(errmsg, BASE_EINVAL,
                         "op %zu: field \"KV.Key\": Key is too long (limit: %d characters)", i,
                         ZONE_KV_MAX_KEY);
    if (strlen(op->kv.session) > ZONE_SESSION_ID_MAX)
        return base_errf(errmsg, BASE_EINVAL, "op %zu: field \"KV.Session\": too long", i);
    if (*val) {
        uint8_t *bytes;
        size_t n;
        if (base_b64_decode(ar, val, &bytes, &n))
            return base_errf(errmsg, BASE_EINVAL,
                             "op %zu: field \"KV.Value\": failed to decode value: illegal base64 "
                             "data",
                             i);
        op->kv.value = bytes;
        op->kv.value_len = n;
    }
    return 0;
}

/* 0, or the status to answer (the error is answered). */
static int txn_decode(struct api *a, struct http_req *req, struct base_arena *ar, struct txn *t)
{
    char errmsg[BASE_ERRMSG_LEN];
    size_t len;
    const char *body = http_req_body(req, &len);
    json_error_t jerr;

    t->n = 0;
    t->writes = false;
    if (len > TXN_MAX_BODY) {
        api__error(req, 413, "Request body too large, max size: %d bytes", TXN_MAX_BODY);
        return 413;
    }
    if (len == 0) {
        api__error(req, 400, "Failed to parse body: empty body");
        return 400;
    }
    json_t *root = api__json_loadb(body, len, &jerr);
    if (!root) {
        api__error(req, 400, "Failed to parse body: %s (line %d, column %d)", jerr.text, jerr.line,
                   jerr.column);
        return 400;
    }
    if (!json_is_array(root)) {
        json_decref(root);
        api__error(req, 400, "Failed to parse body: expected a JSON array of operations");
        return 400;
    }
    size_t n = json_array_size(root);
    char msg[BASE_ERRMSG_LEN + 64] = "";
    int st = 0;
    if (n > ZONE_TXN_MAX_OPS) {
        st = 413;
        snprintf(msg, sizeof msg, "Transaction contains too many operations (%zu > %d)", n,
                 ZONE_TXN_MAX_OPS);
    } else if (n == 0) {
        st = 400;
        snprintf(msg, sizeof msg, "Failed to parse body: no operations");
    }
    for (size_t i = 0; i < n && !st; i++) {
        json_t *o = json_array_get(root, i), *kv = NULL, *v;
        const char *key;
        int kinds = 0;
        enum zone_txn_kind kind = 0;
        struct zone_txn_op *op = &t->ops[i];
        memset(op, 0, sizeof *op);
        st = 400;
        if (!json_is_object(o)) {
            snprintf(msg, sizeof msg, "Failed to parse body: op %zu: expected an object", i);
            break;
        }
        json_object_foreach(o, key, v)
        {
            if (json_is_null(v))
                continue;
            enum zone_txn_kind k = 0;
            for (int kk = ZONE_TXN_KV; kk <= ZONE_TXN_SESSION; kk++)
                if (api__key_is(key, kind_names[kk]))
                    k = (enum zone_txn_kind)kk;
            if (k) {
                kv = v;
                kind = k;
                kinds++;
            } else if (api__key_is(key, "Intention")) {
                snprintf(msg, sizeof msg,
                         "Failed to parse body: op %zu: field \"%.64s\": not supported", i, key);
                break;
            } else {
                snprintf(msg, sizeof msg, "Failed to parse body: op %zu: unknown field \"%.64s\"",
                         i, key);
                break;
            }
        }
        if (*msg)
            break;
        if (kinds != 1) {
            snprintf(msg, sizeof msg, "Failed to parse body: op %zu: %s", i,
                     kinds ? "more than one of KV, Node, Service, Check, Session"
                           : "no operation specified");
            break;
        }
        if (kind == ZONE_TXN_KV        ? kv_op(kv, i, ar, op, errmsg)
            : kind == ZONE_TXN_SESSION ? session_op(kv, i, ar, op, errmsg)
                                       : catalog_op(a, kind, kv, i, ar, op, errmsg)) {
            snprintf(msg, sizeof msg, "Failed to parse body: %s", errmsg);
            break;
        }
        if (op->kv.value_len > ZONE_KV_MAX_VALUE) {
            st = 413;
            snprintf(msg, sizeof msg, "Value for key \"%.64s\" is too large (%zu > %d bytes)",
                     op->kv.key, op->kv.value_len, ZONE_KV_MAX_VALUE);
            break;
        }
        if (zone_txn_verb_writes(op->verb))
            t->writes = true;
        st = 0;
    }
    json_decref(root);
    if (st) {
        api__error(req, st, "%s", msg);
        return st;
    }
    t->n = n;
    return 0;
}

/* ---- results and errors ---------------------------------------------------------------- */

static json_t *kv_result(const struct zone_kv *kv, bool value, struct base_arena *ar)
{
    json_t *o = json_object();
    json_object_set_new(o, "LockIndex", json_integer((json_int_t)kv->lock_index));
    json_object_set_new(o, "Key", json_string(kv->key));
    json_object_set_new(o, "Flags", json_integer((json_int_t)kv->flags));
    json_object_set_new(o, "Value",
                        value && kv->value_len
                            ? json_string(base_b64_encode(ar, kv->value, kv->value_len))
                            : json_null());
    if (kv->session && *kv->session)
        json_object_set_new(o, "Session", json_string(kv->session));
    api__json_indexes(o, kv->create_index, kv->modify_index);
    return json_pack("{s:o}", "KV", o);
}

static char *quoted(struct base_arena *ar, const char *s)
{
    json_t *v = json_string(s);
    char *t = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    char *out = base_arena_strdup(ar, t ? t : "\"\"");
    free(t);
    json_decref(v);
    return out;
}

/* Consul's What for an op that failed (state/txn.go, kvs.go). cur is the key's entry as read
 * now (NULL when absent): the index and session checks name what they found. */
static json_t *txn_error(size_t i, const struct zone_txn_op *op, enum zone_txn_why why,
                         const struct zone_kv *cur, struct base_arena *ar)
{
    char what[1024];
    const char *k = quoted(ar, op->kv.key);
    enum zone_txn_kind kind = zone_txn_verb_kind(op->verb);

    if (kind == ZONE_TXN_SESSION) {
        snprintf(what, sizeof what, "failed to delete session: %s",
                 why == ZONE_TXN_NO_SESSION ? "missing session" : "invalid session");
        return json_pack("{s:I,s:s}", "OpIndex", (json_int_t)i, "What", what);
    }
    if (kind != ZONE_TXN_KV) {
        const char *n = quoted(ar, op->node.name);
        bool del = op->verb == ZONE_TXN_NODE_DELETE_CAS ||
                   op->verb == ZONE_TXN_SERVICE_DELETE_CAS || op->verb == ZONE_TXN_CHECK_DELETE_CAS;
        char thing[700];
        if (kind == ZONE_TXN_NODE)
            snprintf(thing, sizeof thing, "node %s", n);
        else if (kind == ZONE_TXN_SERVICE)
            snprintf(thing, sizeof thing, "service %s on node %s", quoted(ar, svc_id(op)), n);
        else
            snprintf(thing, sizeof thing, "check %s on node %s", quoted(ar, op->check.check_id), n);
        if (why == ZONE_TXN_MISSING)
            snprintf(what, sizeof what, "%s doesn't exist", thing);
        else if (why == ZONE_TXN_STALE)
            snprintf(what, sizeof what, "failed to %s %s, index is stale", del ? "delete" : "set",
                     thing);
        else if (why == ZONE_TXN_NO_NODE)
            snprintf(what, sizeof what, "Missing node registration");
        else if (why == ZONE_TXN_NO_SERVICE)
            snprintf(what, sizeof what, "Missing service registration");
        else
            snprintf(what, sizeof what, "invalid operation on %s", thing);
        return json_pack("{s:I,s:s}", "OpIndex", (json_int_t)i, "What", what);
    }
    switch (why) {
    case ZONE_TXN_STALE:
        snprintf(what, sizeof what, "failed to %s key %s, index is stale",
                 op->verb == ZONE_TXN_KV_DELETE_CAS ? "delete" : "set", k);
        break;
    case ZONE_TXN_HELD:
        snprintf(what, sizeof what, "failed to lock key %s, lock is already held", k);
        break;
    case ZONE_TXN_NOT_HELD:
        snprintf(what, sizeof what,
                 "failed to unlock key %s, lock isn't held, or is held by another session", k);
        break;
    case ZONE_TXN_MISSING:
        if (op->verb == ZONE_TXN_KV_CHECK_INDEX)
            snprintf(what, sizeof what, "failed to check index, key %s doesn't exist", k);
        else if (op->verb == ZONE_TXN_KV_CHECK_SESSION)
            snprintf(what, sizeof what, "failed to check session, key %s doesn't exist", k);
        else
            snprintf(what, sizeof what, "key %s doesn't exist", k);
        break;
    case ZONE_TXN_EXISTS:
        snprintf(what, sizeof what, "key %s exists", k);
        break;
    case ZONE_TXN_INDEX:
        snprintf(what, sizeof what,
                 "failed index check for key %s, current modify index %" PRIu64 " != %" PRIu64, k,
                 cur ? cur->modify_index : 0, op->kv.modify_index);
        break;
    case ZONE_TXN_OTHER_SESSION:
        snprintf(what, sizeof what, "failed session check for key %s, current session %s != %s", k,
                 quoted(ar, cur ? cur->session : ""), quoted(ar, op->kv.session));
        break;
    case ZONE_TXN_INVALID_SESSION:
        snprintf(what, sizeof what, "invalid session %s", quoted(ar, op->kv.session));
        break;
    case ZONE_TXN_NO_SESSION:
        snprintf(what, sizeof what, "missing session");
        break;
    default:
        snprintf(what, sizeof what, "invalid operation on key %s", k);
        break;
    }
    return json_pack("{s:I,s:s}", "OpIndex", (json_int_t)i, "What", what);
}

static json_t *txn_body(json_t *results, json_t *errors)
{
    return json_pack("{s:o,s:o}", "Results", results ? results : json_null(), "Errors",
                     errors ? errors : json_null());
}

struct tree_ctx {
    json_t *results;
    struct base_arena *ar;
};

static int tree_add(void *data, const struct zone_kv *kv)
{
    struct tree_ctx *c = data;
    json_array_append_new(c->results, kv_result(kv, true, c->ar));
    return 0;
}

/* A node, service or check op's result read from rd: 0 (a result added unless the record is
 * gone), ZONE_TXN_MISSING for a get (with check) of a missing record, or a storage error. */
static int catalog_result(struct zone_read *rd, const struct zone_txn_op *op, bool check,
                          struct base_arena *ar, json_t *results)
{
    enum zone_txn_kind kind = zone_txn_verb_kind(op->verb);
    json_t *item = NULL;
    int rc;

    switch (op->verb) {
    case ZONE_TXN_NODE_DELETE:
    case ZONE_TXN_NODE_DELETE_CAS:
    case ZONE_TXN_SERVICE_DELETE:
    case ZONE_TXN_SERVICE_DELETE_CAS:
    case ZONE_TXN_CHECK_DELETE:
    case ZONE_TXN_CHECK_DELETE_CAS:
        return 0;
    default:
        break;
    }
    if (kind == ZONE_TXN_NODE) {
        struct zone_node n;
        if (!(rc = zone_node_get(rd, op->node.name, ar, &n)))
            item = json_pack("{s:o}", "Node", api__json_node(&n));
    } else if (kind == ZONE_TXN_SERVICE) {
        struct zone_service sv;
        if (!(rc = zone_service_get(rd, op->node.name, svc_id(op), ar, &sv)))
            item = json_pack("{s:o}", "Service", api__json_service_agent(&sv, NULL));
    } else {
        struct zone_check ck;
        if (!(rc = zone_check_get(rd, op->check.node, op->check.check_id, ar, &ck)))
            item = json_pack("{s:o}", "Check", api__json_check(&ck));
    }
    if (rc == BASE_ENOTFOUND)
        return check ? ZONE_TXN_MISSING : 0;
    if (rc)
        return rc;
    json_array_append_new(results, item);
    return 0;
}

/* The result of op i read from rd; with check, also whether it holds (0 or a why): the
 * read-only path. A write's entry absent now (deleted later in its transaction or since) is
 * given as the op wrote it, at index. */
static int op_result(struct zone_read *rd, const struct zone_txn_op *op, bool check, uint64_t index,
                     struct base_arena *ar, json_t *results, struct zone_kv *cur, bool *found)
{
    *found = false;
    if (zone_txn_verb_kind(op->verb) == ZONE_TXN_SESSION)
        return 0; /* Consul's txnSession gives no result */
    if (zone_txn_verb_kind(op->verb) != ZONE_TXN_KV)
        return catalog_result(rd, op, check, ar, results);
    if (op->verb == ZONE_TXN_KV_GET_TREE) {
        struct tree_ctx c = {results, ar};
        return zone_kv_each(rd, op->kv.key, ar, tree_add, &c) == BASE_ESTORE ? BASE_ESTORE : 0;
    }
    if (op->verb == ZONE_TXN_KV_DELETE || op->verb == ZONE_TXN_KV_DELETE_TREE ||
        op->verb == ZONE_TXN_KV_DELETE_CAS)
        return 0;
    int rc = zone_kv_get(rd, op->kv.key, ar, cur);
    if (rc && rc != BASE_ENOTFOUND)
        return rc;
    *found = rc == 0;
    if (op->verb == ZONE_TXN_KV_CHECK_NOT_EXISTS)
        return check && *found ? ZONE_TXN_EXISTS : 0;
    if (!*found) {
        if (check)
            return ZONE_TXN_MISSING;
        struct zone_kv w = op->kv;
        w.lock_index = 0;
        w.create_index = w.modify_index = index;
        if (op->verb == ZONE_TXN_KV_UNLOCK)
            w.session = "";
        json_array_append_new(results, kv_result(&w, false, ar));
        return 0;
    }
    if (check && op->verb == ZONE_TXN_KV_CHECK_INDEX && cur->modify_index != op->kv.modify_index)
        return ZONE_TXN_INDEX;
    if (check && op->verb == ZONE_TXN_KV_CHECK_SESSION && strcmp(cur->session, op->kv.session))
        return ZONE_TXN_OTHER_SESSION;
    json_array_append_new(results, kv_result(cur, op->verb == ZONE_TXN_KV_GET, ar));
    return 0;
}

/* ---- reads only ------------------------------------------------------------------------ */

static void read_txn(struct api *a, struct http_req *req, struct zone_read *rd,
                     struct base_arena *ar, struct api_result *res)
{
    struct txn *t = base_arena_alloc(ar, sizeof *t);

    res->index = api__table_max(rd, ZONE_TABLE_ALL);
    if (api__probe_at(res, res->index))
        return;
    /* the body was checked before the read started; it is the same bytes */
    memset(t, 0, sizeof *t);
    if (txn_decode(a, req, ar, t)) {
        res->status = 500;
        res->error = "txn: body changed";
        return;
    }
    json_t *results = json_array(), *errors = json_array();
    for (size_t i = 0; i < t->n; i++) {
        struct zone_kv cur;
        bool found;
        int rc = op_result(rd, &t->ops[i], true, 0, ar, results, &cur, &found);
        if (rc < 0) {
            json_decref(results);
            json_decref(errors);
            res->status = 500;
            res->error = "catalog read failed";
            return;
        }
        if (rc > 0)
            json_array_append_new(
                errors, txn_error(i, &t->ops[i], (enum zone_txn_why)rc, found ? &cur : NULL, ar));
    }
    if (json_array_size(errors)) {
        json_decref(results);
        res->status = 409;
        res->json = txn_body(NULL, errors);
    } else {
        json_decref(errors);
        res->json = txn_body(results, NULL);
    }
}

/* ---- writes ---------------------------------------------------------------------------- */

struct txn_wctx {
    struct api *api;
    struct http_req *req; /* NULL once the client went away */
    struct base_arena ar;
    struct txn t;
};

static void wctx_abort(void *data, struct http_req *req)
{
    struct txn_wctx *c = data;
    BASE_UNUSED(req);
    c->req = NULL;
}

static void respond(struct api *a, struct http_req *req, int status, json_t *body, uint64_t idx)
{
    api__respond_json(a, req, status, body, idx);
}

struct failures {
    size_t op[ZONE_TXN_MAX_OPS];
    enum zone_txn_why why[ZONE_TXN_MAX_OPS];
    size_t n;
};

static void failure_add(void *data, size_t op, enum zone_txn_why why)
{
    struct failures *f = data;
    if (f->n < ZONE_TXN_MAX_OPS) {
        f->op[f->n] = op;
        f->why[f->n++] = why;
    }
}

static void write_done(void *data, int status, int result, uint64_t index)
{
    struct txn_wctx *c = data;
    struct http_req *req = c->req;
    struct zone_read *rd = NULL;
    size_t op;
    enum zone_txn_why why;

    if (!req)
        goto out;
    http_req_set_abort(req, NULL, NULL);
    if (api__propose_failed(req, status))
        goto out;
    if (result && !zone_txn_failed(result, &op, &why)) {
        api__error(req, 500, "txn failed: %s", base_strerror(result));
        goto out;
    }
    if (zone_read_begin(c->api->cfg.store, &rd)) {
        api__error(req, 500, "catalog read failed");
        goto out;
    }
    if (result) {
        /* the apply named its first failing op; a dry run on the store as it is now lists
         * every one, as Consul does (unless the store moved on and no longer agrees) */
        struct failures f = {.n = 0};
        if (zone_store_txn_errors(c->api->cfg.store, c->t.ops, c->t.n, failure_add, &f) ||
            f.n == 0 || f.op[0] != op) {
            f.n = 1;
            f.op[0] = op;
            f.why[0] = why;
        }
        json_t *errors = json_array();
        for (size_t i = 0; i < f.n && f.op[i] < c->t.n; i++) {
            const struct zone_txn_op *o = &c->t.ops[f.op[i]];
            struct zone_kv cur;
            bool found = zone_txn_verb_kind(o->verb) == ZONE_TXN_KV &&
                         zone_kv_get(rd, o->kv.key, &c->ar, &cur) == 0;
            json_array_append_new(errors,
                                  txn_error(f.op[i], o, f.why[i], found ? &cur : NULL, &c->ar));
        }
        respond(c->api, req, 409, txn_body(NULL, errors), index);
        goto out;
    }
    json_t *results = json_array();
    for (size_t i = 0; i < c->t.n; i++) {
        struct zone_kv cur;
        bool found;
        if (op_result(rd, &c->t.ops[i], false, index, &c->ar, results, &cur, &found) < 0) {
            json_decref(results);
            api__error(req, 500, "catalog read failed");
            goto out;
        }
    }
    respond(c->api, req, 200, txn_body(results, NULL), index);
out:
    if (rd)
        zone_read_end(rd);
    base_arena_close(&c->ar);
    base_free(c);
}

static void txn_put(struct api *a, struct http_req *req)
{
    struct txn_wctx *c = base_calloc(1, sizeof *c);
    base_arena_init(&c->ar);
    if (txn_decode(a, req, &c->ar, &c->t)) {
        base_arena_close(&c->ar);
        base_free(c);
        return;
    }
    if (api__other_dc(a, req)) {
        base_arena_close(&c->ar);
        base_free(c);
        return;
    }
    if (!c->t.writes) {
        base_arena_close(&c->ar);
        base_free(c);
        api__read(a, req, ZONE_TABLE_ALL, read_txn);
        return;
    }
    /* Consul's Txn.Apply preCheck: a lock within this server's lock delay fails first */
    for (size_t i = 0; i < c->t.n; i++) {
        const struct zone_txn_op *op = &c->t.ops[i];
        if (op->verb == ZONE_TXN_KV_LOCK && zone_store_lock_delay(a->cfg.store, op->kv.key)) {
            char what[700];
            snprintf(what, sizeof what, "failed to lock key %s due to lock delay",
                     quoted(&c->ar, op->kv.key));
            json_t *errors = json_array();
            json_array_append_new(errors,
                                  json_pack("{s:I,s:s}", "OpIndex", (json_int_t)i, "What", what));
            respond(a, req, 409, txn_body(NULL, errors), 0);
            base_arena_close(&c->ar);
            base_free(c);
            return;
        }
    }
    struct zone_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = ZONE_CMD_TXN;
    cmd.txn = c->t.ops;
    cmd.n_txn = c->t.n;
    c->api = a;
    c->req = req;
    http_req_set_abort(req, wctx_abort, c);
    api_propose(a, &cmd, write_done, c);
}

bool api__txn_route(struct api *a, struct http_req *req, const char *path)
{
    if (strcmp(path, "/v1/txn") != 0)
        return false;
    if (!api__method(req, "PUT"))
        return true;
    txn_put(a, req);
    return true;
}
