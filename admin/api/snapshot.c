/* /v1/snapshot: backups of the catalog (Consul's snapshot endpoints).
 *
 * Save (GET). The backup is zone_read_backup from the read transaction of an ordinary read,
 * so it gets the consistency modes of every read: by default this server first catches up
 * with the leader's applied index (Raft read index), ?stale reads the local replica at once.
 * X-Consul-Index is the backup's own catalog index, read from the same transaction. The body
 * is opaque bytes (application/octet-stream); zone/snapshot.c documents the format.
 *
 * Restore (PUT, the backup as body, up to ZONE_BACKUP_MAX). A restore must reach every
 * server, so it goes through Raft like any write, and since a Raft entry is capped at 4 MiB it
 * goes in pieces (zone/restore.c has the design of the staging): the whole body is checked
 * first, so a damaged, truncated or empty file gets a 400 naming the problem and nothing is
 * proposed; then RESTORE_BEGIN, RESTORE_CHUNK for every 1 MiB piece, RESTORE_END, each
 * proposed after the previous step's commands applied (BEGIN before any chunk, END after
 * every chunk), with up to RESTORE_WINDOW chunks in flight at once so that group commit packs
 * several per entry. The client gets 200 only once END applied and replaced the catalog; an
 * unknown outcome of any step is a 500 as for every write. Each restore carries a random id:
 * should two run at once, the later BEGIN wins and the other one fails.
 *
 * If the client goes away, no more pieces are proposed; what was staged stays in the store
 * until the next restore's BEGIN discards it. The context lives until every proposal it made
 * has called back. */
#include "internal.h"

#include <inttypes.h>
#include <string.h>
#include <sys/random.h>

#define RESTORE_WINDOW 8 /* chunks proposed and not yet applied */

/* ---- save ------------------------------------------------------------------------------ */

static void read_backup(struct api *a, struct http_req *req, struct zone_read *rd,
                        struct base_arena *ar, struct api_result *res)
{
    struct zone_meta m;
    BASE_UNUSED(a);
    BASE_UNUSED(req);
    BASE_UNUSED(ar);
    if (zone_meta_get(rd, &m)) {
        res->status = 500;
        res->error = "catalog read failed";
        return;
    }
    /* a blocking query asks whether the catalog moved, not for the bytes */
    if (api__probe_at(res, m.index))
        return;
    if (zone_read_backup(rd, &res->owned)) {
        res->status = 500;
        res->error = "catalog read failed";
        return;
    }
    res->raw = res->owned.data;
    res->raw_len = res->owned.len;
    res->raw_set = true;
    res->content_type = "application/octet-stream";
}

/* ---- restore --------------------------------------------------------------------------- */

enum restore_step { STEP_BEGIN, STEP_CHUNKS, STEP_END, STEP_DONE };

struct restore {
    struct api *api;
    struct http_req *req; /* NULL once answered or gone */
    const uint8_t *body;  /* the request's body: valid while req is */
    size_t len;
    uint64_t id;
    uint32_t crc;
    enum restore_step step;
    size_t next;       /* offset of the next chunk to propose */
    unsigned inflight; /* proposals not yet called back */
};

static void restore_abort(void *data, struct http_req *req)
{
    struct restore *r = data;
    BASE_UNUSED(req);
    r->req = NULL;
    r->step = STEP_DONE;
    if (!r->inflight)
        base_free(r);
}

/* Answers (when the client is still there) and stops proposing. */
static void restore_answer(struct restore *r, int status, const char *msg)
{
    r->step = STEP_DONE;
    if (!r->req)
        return;
    http_req_set_abort(r->req, NULL, NULL);
    api__error(r->req, status, "%s", msg);
    r->req = NULL;
}

static void restore_cb(void *data, int status, int result, uint64_t index);

static void restore_propose(struct restore *r, const struct zone_cmd *cmd)
{
    r->inflight++;
    api_propose(r->api, cmd, restore_cb, r);
}

/* Proposes what the current step allows. */
static void restore_pump(struct restore *r)
{
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.restore.id = r->id;
    while (r->step == STEP_CHUNKS && r->inflight < RESTORE_WINDOW && r->next < r->len) {
        size_t n = r->len - r->next < ZONE_RESTORE_CHUNK ? r->len - r->next : ZONE_RESTORE_CHUNK;
        c.type = ZONE_CMD_RESTORE_CHUNK;
        c.restore.offset = r->next;
        c.restore.data = r->body + r->next;
        c.restore.len = n;
        r->next += n;
        restore_propose(r, &c);
    }
    if (r->step == STEP_CHUNKS && r->next == r->len && r->inflight == 0) {
        r->step = STEP_END;
        c.type = ZONE_CMD_RESTORE_END;
        restore_propose(r, &c);
    }
}

static void restore_cb(void *data, int status, int result, uint64_t index)
{
    struct restore *r = data;
    enum restore_step step = r->step;

    r->inflight--;
    if (step == STEP_DONE) {
        /* answered (or the client left) already: only waiting for the proposals made */
    } else if (status) {
        if (r->req) {
            http_req_set_abort(r->req, NULL, NULL);
            api__propose_failed(r->req, status);
            r->req = NULL;
        }
        r->step = STEP_DONE;
    } else if (result == BASE_ENOTFOUND) {
        restore_answer(r, 500, "restore interrupted: another snapshot restore began meanwhile");
    } else if (result == BASE_EPARSE && step == STEP_END) {
        restore_answer(r, 500,
                       "restore failed: the staged snapshot was incomplete or damaged; "
                       "the catalog was not changed");
    } else if (result) {
        restore_answer(r, 500, base_strerror(result));
    } else if (step == STEP_BEGIN) {
        r->step = STEP_CHUNKS;
        restore_pump(r);
    } else if (step == STEP_CHUNKS) {
        restore_pump(r);
    } else if (r->req) { /* END applied: the catalog is the snapshot's on every server */
        char buf[32];
        LOG_INFO("api", "snapshot restored: %zu bytes, catalog index %" PRIu64, r->len, index);
        http_req_set_abort(r->req, NULL, NULL);
        snprintf(buf, sizeof buf, "%" PRIu64, index);
        http_resp_header(r->req, "X-Consul-Index", buf);
        http_respond(r->req, 200, NULL, "", 0);
        r->req = NULL;
        r->step = STEP_DONE;
    }
    if (r->step == STEP_DONE && !r->inflight)
        base_free(r);
}

/* A restore id: random, so that restores started on different servers differ. */
static uint64_t restore_id(struct api *a)
{
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, GRND_NONBLOCK) != (ssize_t)sizeof id)
        id = base_wall_ms() ^ (uint64_t)(uintptr_t)a;
    return id ? id : 1;
}

static void restore_start(struct api *a, struct http_req *req)
{
    struct zone_snapshot_info info;
    char err[BASE_ERRMSG_LEN];
    size_t len;
    const char *body = http_req_body(req, &len);

    if (api__other_dc(a, req))
        return;
    if (zone_snapshot_check(body, len, &info, err)) {
        api__error(req, 400, "%s", err);
        return;
    }
    struct restore *r = base_calloc(1, sizeof *r);
    r->api = a;
    r->req = req;
    r->body = (const uint8_t *)body;
    r->len = len;
    r->id = restore_id(a);
    r->crc = info.crc;
    r->step = STEP_BEGIN;
    http_req_set_abort(req, restore_abort, r);

    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_RESTORE_BEGIN;
    c.restore.id = r->id;
    c.restore.total = len;
    c.restore.crc = r->crc;
    restore_propose(r, &c);
}

bool api__snapshot_route(struct api *a, struct http_req *req, const char *path)
{
    if (strcmp(path, "/v1/snapshot") != 0)
        return false;
    if (!api__method(req, "GET,PUT"))
        return true;
    if (strcmp(http_req_method(req), "GET") == 0)
        api__read_list(a, req, ZONE_TABLE_ALL, read_backup);
    else
        restore_start(a, req);
    return true;
}
