/* The write commands that Raft carries (struct zone_cmd), as bytes.
 *
 * Layout: u8 format version (1; 2 for REGISTER), u8 type, then the fields of that type only:
 *   REGISTER      node body, u8 skip_node_update, u8 has_service, [service body],
 *                 u32 n_checks, check bodies (version 2: each followed by its extension,
 *                 record.c; a version 1 REGISTER, from an older log, has none)
 *   DEREGISTER    node name, service id, check id
 *   CHECK_UPDATE  node name, check id, u8 status, output
 *   KV_SET        key, value bytes, u64 flags, u8 has_cas, u64 cas
 *   KV_DELETE     key, u8 has_cas, u64 cas, u8 recurse
 *   RESTORE_BEGIN u64 id, u64 total, u32 crc
 *   RESTORE_CHUNK u64 id, u64 offset, data bytes
 *   RESTORE_END   u64 id
 *   SESSION_CREATE  session body (record.c)
 *   SESSION_DESTROY session id
 *   SESSION_RENEW   session id
 *   KV_LOCK       key, value bytes, u64 flags, session id, u8 has_cas, u64 cas
 *   KV_UNLOCK     key, value bytes, u64 flags, session id
 *   TXN           u32 n (1 to ZONE_TXN_MAX_OPS), n ops: u8 verb, then by its kind
 *                   KV       key, value bytes, u64 flags, u64 index, session id
 *                   node     node body, u64 index
 *                   service  node name, service body, u64 index
 *                   check    check body with its extension, u64 index
 *                   session  session id
 * (types 9 to 13 came with sessions, 14 with transactions; the format version stays 1: an older
 * Herald refuses the new types as unknown, and every older command keeps its bytes.) Bodies and
 * strings are the record codec's (record.c); CreateIndex/ModifyIndex are not carried: the store
 * assigns them at apply. Trailing bytes are an error, so a decoder never half-understands a newer
 * format: a new field means a new version.
 *
 * The bytes come from the Raft log, which a peer wrote: decoding checks every bound and every
 * count against the bytes left, and never trusts the input to be well-formed. */
#include "zone/internal.h"

#include <string.h>

#define CMD_VERSION          1
#define CMD_VERSION_REGISTER 2
/* The smallest op of a TXN: a session delete, its verb and an empty id (length and NUL). */
#define TXN_OP_MIN (1 + 5)

static const char *const txn_verbs[] = {
    [ZONE_TXN_KV_SET] = "set",
    [ZONE_TXN_KV_CAS] = "cas",
    [ZONE_TXN_KV_LOCK] = "lock",
    [ZONE_TXN_KV_UNLOCK] = "unlock",
    [ZONE_TXN_KV_GET] = "get",
    [ZONE_TXN_KV_GET_TREE] = "get-tree",
    [ZONE_TXN_KV_CHECK_INDEX] = "check-index",
    [ZONE_TXN_KV_CHECK_SESSION] = "check-session",
    [ZONE_TXN_KV_CHECK_NOT_EXISTS] = "check-not-exists",
    [ZONE_TXN_KV_DELETE] = "delete",
    [ZONE_TXN_KV_DELETE_TREE] = "delete-tree",
    [ZONE_TXN_KV_DELETE_CAS] = "delete-cas",
    [ZONE_TXN_NODE_SET] = "set",
    [ZONE_TXN_NODE_CAS] = "cas",
    [ZONE_TXN_NODE_GET] = "get",
    [ZONE_TXN_NODE_DELETE] = "delete",
    [ZONE_TXN_NODE_DELETE_CAS] = "delete-cas",
    [ZONE_TXN_SERVICE_SET] = "set",
    [ZONE_TXN_SERVICE_CAS] = "cas",
    [ZONE_TXN_SERVICE_GET] = "get",
    [ZONE_TXN_SERVICE_DELETE] = "delete",
    [ZONE_TXN_SERVICE_DELETE_CAS] = "delete-cas",
    [ZONE_TXN_CHECK_SET] = "set",
    [ZONE_TXN_CHECK_CAS] = "cas",
    [ZONE_TXN_CHECK_GET] = "get",
    [ZONE_TXN_CHECK_DELETE] = "delete",
    [ZONE_TXN_CHECK_DELETE_CAS] = "delete-cas",
    [ZONE_TXN_SESSION_DELETE] = "delete",
};

enum zone_txn_kind zone_txn_verb_kind(enum zone_txn_verb v)
{
    if (v >= ZONE_TXN_KV_SET && v <= ZONE_TXN_KV_DELETE_CAS)
        return ZONE_TXN_KV;
    if (v >= ZONE_TXN_NODE_SET && v <= ZONE_TXN_NODE_DELETE_CAS)
        return ZONE_TXN_NODE;
    if (v >= ZONE_TXN_SERVICE_SET && v <= ZONE_TXN_SERVICE_DELETE_CAS)
        return ZONE_TXN_SERVICE;
    if (v >= ZONE_TXN_CHECK_SET && v <= ZONE_TXN_CHECK_DELETE_CAS)
        return ZONE_TXN_CHECK;
    if (v == ZONE_TXN_SESSION_DELETE)
        return ZONE_TXN_SESSION;
    return 0;
}

const char *zone_txn_verb_name(enum zone_txn_verb v)
{
    return v >= ZONE_TXN_KV_SET && v <= ZONE_TXN_VERB_MAX ? txn_verbs[v] : NULL;
}

bool zone_txn_verb_writes(enum zone_txn_verb v)
{
    switch (v) {
    case ZONE_TXN_KV_GET:
    case ZONE_TXN_KV_GET_TREE:
    case ZONE_TXN_KV_CHECK_INDEX:
    case ZONE_TXN_KV_CHECK_SESSION:
    case ZONE_TXN_KV_CHECK_NOT_EXISTS:
    case ZONE_TXN_NODE_GET:
    case ZONE_TXN_SERVICE_GET:
    case ZONE_TXN_CHECK_GET:
        return false;
    default:
        return zone_txn_verb_kind(v) != 0;
    }
}

bool zone_txn_failed(int result, size_t *op, enum zone_txn_why *why)
{
    if (result > -ZONE__TXN_FAIL_BASE)
        return false;
    int v = -result - ZONE__TXN_FAIL_BASE;
    if (v / 16 >= ZONE_TXN_MAX_OPS || v % 16 < ZONE_TXN_STALE || v % 16 > ZONE_TXN_NO_SERVICE)
        return false;
    *op = (size_t)(v / 16);
    *why = (enum zone_txn_why)(v % 16);
    return true;
}

void zone_cmd_encode(const struct zone_cmd *cmd, struct base_buf *out)
{
    base_buf_put_u8(out, cmd->type == ZONE_CMD_REGISTER ? CMD_VERSION_REGISTER : CMD_VERSION);
    base_buf_put_u8(out, (uint8_t)cmd->type);
    switch (cmd->type) {
    case ZONE_CMD_REGISTER:
        zone__node_body_put(out, &cmd->node);
        base_buf_put_u8(out, cmd->skip_node_update ? 1 : 0);
        base_buf_put_u8(out, cmd->service ? 1 : 0);
        if (cmd->service)
            zone__service_body_put(out, cmd->service);
        base_buf_put_u32(out, (uint32_t)cmd->n_checks);
        for (size_t i = 0; i < cmd->n_checks; i++)
            zone__check_body_put(out, &cmd->checks[i]);
        break;
    case ZONE_CMD_DEREGISTER:
        zone__put_cstr(out, cmd->node.name);
        zone__put_cstr(out, cmd->service_id);
        zone__put_cstr(out, cmd->check_id);
        break;
    case ZONE_CMD_CHECK_UPDATE:
        zone__put_cstr(out, cmd->node.name);
        zone__put_cstr(out, cmd->check_id);
        base_buf_put_u8(out, (uint8_t)cmd->status);
        zone__put_cstr(out, cmd->output);
        break;
    case ZONE_CMD_KV_SET:
        zone__put_cstr(out, cmd->kv.key);
        base_buf_put_bytes(out, cmd->kv.value, cmd->kv.value_len);
        base_buf_put_u64(out, cmd->kv.flags);
        base_buf_put_u8(out, cmd->has_cas ? 1 : 0);
        base_buf_put_u64(out, cmd->cas);
        break;
    case ZONE_CMD_KV_DELETE:
        zone__put_cstr(out, cmd->kv.key);
        base_buf_put_u8(out, cmd->has_cas ? 1 : 0);
        base_buf_put_u64(out, cmd->cas);
        base_buf_put_u8(out, cmd->recurse ? 1 : 0);
        break;
    case ZONE_CMD_RESTORE_BEGIN:
        base_buf_put_u64(out, cmd->restore.id);
        base_buf_put_u64(out, cmd->restore.total);
        base_buf_put_u32(out, cmd->restore.crc);
        break;
    case ZONE_CMD_RESTORE_CHUNK:
        base_buf_put_u64(out, cmd->restore.id);
        base_buf_put_u64(out, cmd->restore.offset);
        base_buf_put_bytes(out, cmd->restore.data, cmd->restore.len);
        break;
    case ZONE_CMD_RESTORE_END:
        base_buf_put_u64(out, cmd->restore.id);
        break;
    case ZONE_CMD_SESSION_CREATE:
        zone__session_body_put(out, &cmd->session);
        break;
    case ZONE_CMD_SESSION_DESTROY:
    case ZONE_CMD_SESSION_RENEW:
        zone__put_cstr(out, cmd->session.id);
        break;
    case ZONE_CMD_KV_LOCK:
    case ZONE_CMD_KV_UNLOCK:
        zone__put_cstr(out, cmd->kv.key);
        base_buf_put_bytes(out, cmd->kv.value, cmd->kv.value_len);
        base_buf_put_u64(out, cmd->kv.flags);
        zone__put_cstr(out, cmd->kv.session);
        if (cmd->type == ZONE_CMD_KV_LOCK) {
            base_buf_put_u8(out, cmd->has_cas ? 1 : 0);
            base_buf_put_u64(out, cmd->cas);
        }
        break;
    case ZONE_CMD_TXN:
        base_buf_put_u32(out, (uint32_t)cmd->n_txn);
        for (size_t i = 0; i < cmd->n_txn; i++) {
            const struct zone_txn_op *op = &cmd->txn[i];
            base_buf_put_u8(out, (uint8_t)op->verb);
            switch (zone_txn_verb_kind(op->verb)) {
            case ZONE_TXN_NODE:
                zone__node_body_put(out, &op->node);
                base_buf_put_u64(out, op->node.modify_index);
                break;
            case ZONE_TXN_SERVICE:
                zone__put_cstr(out, op->node.name);
                zone__service_body_put(out, &op->service);
                base_buf_put_u64(out, op->service.modify_index);
                break;
            case ZONE_TXN_CHECK:
                zone__check_body_put(out, &op->check); /* with its extension */
                base_buf_put_u64(out, op->check.modify_index);
                break;
            case ZONE_TXN_SESSION:
                zone__put_cstr(out, op->kv.session);
                break;
            default:
                zone__put_cstr(out, op->kv.key);
                base_buf_put_bytes(out, op->kv.value, op->kv.value_len);
                base_buf_put_u64(out, op->kv.flags);
                base_buf_put_u64(out, op->kv.modify_index);
                zone__put_cstr(out, op->kv.session);
                break;
            }
        }
        break;
    }
}

static bool rd_bool(struct base_rd *r)
{
    uint8_t v = base_rd_u8(r);
    if (v > 1)
        r->err = true;
    return v == 1;
}

/* Every string of the command starts as "" so that apply never meets a NULL. */
static void cmd_defaults(struct zone_cmd *cmd)
{
    memset(cmd, 0, sizeof *cmd);
    cmd->node.name = cmd->node.id = cmd->node.address = cmd->node.datacenter = "";
    cmd->service_id = cmd->check_id = cmd->output = "";
    cmd->kv.key = cmd->kv.session = "";
    cmd->kv.value = (const uint8_t *)"";
    cmd->restore.data = (const uint8_t *)"";
    cmd->session.id = cmd->session.name = cmd->session.node = "";
}

static void decode_register(struct base_rd *r, struct base_arena *a, struct zone_cmd *cmd, bool ext)
{
    zone__node_body_get(r, true, a, &cmd->node);
    cmd->skip_node_update = rd_bool(r);
    if (rd_bool(r)) {
        struct zone_service *svc = base_arena_alloc(a, sizeof *svc);
        zone__service_body_get(r, true, a, svc);
        cmd->service = svc;
    }
    uint32_t n = base_rd_u32(r);
    if (r->err || n > r->left / (ZONE__CHECK_BODY_MIN + (ext ? ZONE__CHECK_EXT_MIN : 0))) {
        r->err = true;
        return;
    }
    if (n) {
        struct zone_check *checks = base_arena_alloc(a, n * sizeof *checks);
        for (uint32_t i = 0; i < n && !r->err; i++) {
            zone__check_body_get(r, true, a, &checks[i]);
            if (ext)
                zone__check_ext_get(r, true, a, &checks[i]);
        }
        cmd->checks = checks;
        cmd->n_checks = n;
    }
}

static const uint8_t *rd_value(struct base_rd *r, struct base_arena *a, size_t *len)
{
    const uint8_t *v = base_rd_bytes(r, len);
    if (!v) {
        *len = 0;
        return (const uint8_t *)"";
    }
    uint8_t *c = base_arena_alloc(a, *len ? *len : 1);
    memcpy(c, v, *len);
    return c;
}

static void decode_txn(struct base_rd *r, struct base_arena *a, struct zone_cmd *cmd)
{
    uint32_t n = base_rd_u32(r);
    if (r->err || n == 0 || n > ZONE_TXN_MAX_OPS || n > r->left / TXN_OP_MIN) {
        r->err = true;
        return;
    }
    struct zone_txn_op *ops = base_arena_alloc(a, n * sizeof *ops);
    memset(ops, 0, n * sizeof *ops);
    for (uint32_t i = 0; i < n && !r->err; i++) {
        struct zone_txn_op *op = &ops[i];
        uint8_t verb = base_rd_u8(r);
        op->verb = (enum zone_txn_verb)verb;
        op->kv.key = op->kv.session = "";
        op->kv.value = (const uint8_t *)"";
        op->node.name = op->node.id = op->node.address = op->node.datacenter = "";
        switch (zone_txn_verb_kind(op->verb)) {
        case ZONE_TXN_KV:
            op->kv.key = zone__rd_cstr(r, true, a);
            op->kv.value = rd_value(r, a, &op->kv.value_len);
            op->kv.flags = base_rd_u64(r);
            op->kv.modify_index = base_rd_u64(r);
            op->kv.session = zone__rd_cstr(r, true, a);
            break;
        case ZONE_TXN_NODE:
            zone__node_body_get(r, true, a, &op->node);
            op->node.modify_index = base_rd_u64(r);
            break;
        case ZONE_TXN_SERVICE:
            op->node.name = zone__rd_cstr(r, true, a);
            zone__service_body_get(r, true, a, &op->service);
            op->service.modify_index = base_rd_u64(r);
            break;
        case ZONE_TXN_CHECK:
            zone__check_body_get(r, true, a, &op->check);
            zone__check_ext_get(r, true, a, &op->check);
            op->check.modify_index = base_rd_u64(r);
            op->node.name = op->check.node;
            break;
        case ZONE_TXN_SESSION:
            op->kv.session = zone__rd_cstr(r, true, a);
            break;
        default:
            r->err = true;
            break;
        }
    }
    cmd->txn = ops;
    cmd->n_txn = n;
}

int zone_cmd_decode(const void *p, size_t n, struct base_arena *a, struct zone_cmd *cmd)
{
    struct base_rd r;

    cmd_defaults(cmd);
    base_rd_init(&r, p, n);
    uint8_t version = base_rd_u8(&r);
    if (version != CMD_VERSION && version != CMD_VERSION_REGISTER)
        return BASE_EPARSE;
    cmd->type = (enum zone_cmd_type)base_rd_u8(&r);
    if (version == CMD_VERSION_REGISTER && cmd->type != ZONE_CMD_REGISTER)
        return BASE_EPARSE;
    switch (cmd->type) {
    case ZONE_CMD_REGISTER:
        decode_register(&r, a, cmd, version == CMD_VERSION_REGISTER);
        break;
    case ZONE_CMD_DEREGISTER:
        cmd->node.name = zone__rd_cstr(&r, true, a);
        cmd->service_id = zone__rd_cstr(&r, true, a);
        cmd->check_id = zone__rd_cstr(&r, true, a);
        break;
    case ZONE_CMD_CHECK_UPDATE: {
        cmd->node.name = zone__rd_cstr(&r, true, a);
        cmd->check_id = zone__rd_cstr(&r, true, a);
        uint8_t st = base_rd_u8(&r);
        if (st > ZONE_HEALTH_MAINT)
            r.err = true;
        cmd->status = (enum zone_health)st;
        cmd->output = zone__rd_cstr(&r, true, a);
        break;
    }
    case ZONE_CMD_SESSION_CREATE:
        zone__session_body_get(&r, true, a, &cmd->session);
        break;
    case ZONE_CMD_SESSION_DESTROY:
    case ZONE_CMD_SESSION_RENEW:
        cmd->session.id = zone__rd_cstr(&r, true, a);
        break;
    case ZONE_CMD_KV_LOCK:
    case ZONE_CMD_KV_UNLOCK:
    case ZONE_CMD_KV_SET: {
        size_t len;
        cmd->kv.key = zone__rd_cstr(&r, true, a);
        const uint8_t *v = base_rd_bytes(&r, &len);
        if (v) {
            uint8_t *c = base_arena_alloc(a, len);
            memcpy(c, v, len);
            cmd->kv.value = c;
            cmd->kv.value_len = len;
        }
        cmd->kv.flags = base_rd_u64(&r);
        if (cmd->type != ZONE_CMD_KV_SET)
            cmd->kv.session = zone__rd_cstr(&r, true, a);
        if (cmd->type != ZONE_CMD_KV_UNLOCK) {
            cmd->has_cas = rd_bool(&r);
            cmd->cas = base_rd_u64(&r);
        }
        break;
    }
    case ZONE_CMD_KV_DELETE:
        cmd->kv.key = zone__rd_cstr(&r, true, a);
        cmd->has_cas = rd_bool(&r);
        cmd->cas = base_rd_u64(&r);
        cmd->recurse = rd_bool(&r);
        break;
    case ZONE_CMD_RESTORE_BEGIN:
        cmd->restore.id = base_rd_u64(&r);
        cmd->restore.total = base_rd_u64(&r);
        cmd->restore.crc = base_rd_u32(&r);
        break;
    case ZONE_CMD_RESTORE_CHUNK: {
        size_t len;
        cmd->restore.id = base_rd_u64(&r);
        cmd->restore.offset = base_rd_u64(&r);
        const uint8_t *v = base_rd_bytes(&r, &len);
        if (v) {
            uint8_t *c = base_arena_alloc(a, len ? len : 1);
            memcpy(c, v, len);
            cmd->restore.data = c;
            cmd->restore.len = len;
        }
        break;
    }
    case ZONE_CMD_RESTORE_END:
        cmd->restore.id = base_rd_u64(&r);
        break;
    case ZONE_CMD_TXN:
        decode_txn(&r, a, cmd);
        break;
    default:
        return BASE_EPARSE;
    }
    if (r.err || r.left) {
        cmd_defaults(cmd);
        return BASE_EPARSE;
    }
    return 0;
}
