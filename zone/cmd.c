/* The write commands that Raft carries (struct zone_cmd), as bytes.
 *
 * Layout: u8 format version (1), u8 type, then the fields of that type only:
 *   REGISTER      node body, u8 skip_node_update, u8 has_service, [service body],
 *                 u32 n_checks, check bodies
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
 * (types 9 to 13 came with sessions; the format version stays 1: an older Herald refuses the
 * new types as unknown, and every older command keeps its bytes.)
 * Bodies and strings are the record codec's (record.c); CreateIndex/ModifyIndex are not
 * carried: the store assigns them at apply. Trailing bytes are an error, so a decoder never
 * half-understands a newer format: a new field means a new version.
 *
 * The bytes come from the Raft log, which a peer wrote: decoding checks every bound and every
 * count against the bytes left, and never trusts the input to be well-formed. */
#include "zone/internal.h"

#include <string.h>

#define CMD_VERSION 1

void zone_cmd_encode(const struct zone_cmd *cmd, struct base_buf *out)
{
    base_buf_put_u8(out, CMD_VERSION);
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

static void decode_register(struct base_rd *r, struct base_arena *a, struct zone_cmd *cmd)
{
    zone__node_body_get(r, true, a, &cmd->node);
    cmd->skip_node_update = rd_bool(r);
    if (rd_bool(r)) {
        struct zone_service *svc = base_arena_alloc(a, sizeof *svc);
        zone__service_body_get(r, true, a, svc);
        cmd->service = svc;
    }
    uint32_t n = base_rd_u32(r);
    if (r->err || n > r->left / ZONE__CHECK_BODY_MIN) {
        r->err = true;
        return;
    }
    if (n) {
        struct zone_check *checks = base_arena_alloc(a, n * sizeof *checks);
        for (uint32_t i = 0; i < n && !r->err; i++)
            zone__check_body_get(r, true, a, &checks[i]);
        cmd->checks = checks;
        cmd->n_checks = n;
    }
}

int zone_cmd_decode(const void *p, size_t n, struct base_arena *a, struct zone_cmd *cmd)
{
    struct base_rd r;

    cmd_defaults(cmd);
    base_rd_init(&r, p, n);
    if (base_rd_u8(&r) != CMD_VERSION)
        return BASE_EPARSE;
    cmd->type = (enum zone_cmd_type)base_rd_u8(&r);
    switch (cmd->type) {
    case ZONE_CMD_REGISTER:
        decode_register(&r, a, cmd);
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
    default:
        return BASE_EPARSE;
    }
    if (r.err || r.left) {
        cmd_defaults(cmd);
        return BASE_EPARSE;
    }
    return 0;
}
