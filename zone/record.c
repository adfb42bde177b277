/* Binary encoding of the catalog records (node, service, check, kv) as stored in LMDB, and of
 * the record bodies that the commands carry (cmd.c).
 *
 * A record is a version byte, the body, then CreateIndex and ModifyIndex, then (version 2) the
 * CRC-32C of all the bytes before it. Every decoder checks the version and the checksum before
 * it reads a field, so a byte changed on disk is refused rather than served as data (the
 * readers report the record as damaged: read.c). Version 1 records (no checksum) are the same
 * bytes without the trailer: zone__rec_upgrade turns one into version 2, which is what the
 * store's one-time migration at open and a snapshot load do; the decoders refuse them. Strings are
 * stored with their NUL (base_buf_put_bytes of len + 1 bytes) so that a read hands out pointers
 * into the LMDB page instead of copying (zone.h: valid until the read transaction ends); only the
 * arrays of tags and pairs go to the caller's arena. Every decoder is bounds-checked through
 * base_rd and bounds array counts by the bytes left before allocating, since snapshots and
 * commands arrive from the network. */
#include "zone/internal.h"

#include <string.h>

void zone__put_cstr(struct base_buf *b, const char *s)
{
    if (!s)
        s = "";
    base_buf_put_bytes(b, s, strlen(s) + 1);
}

const char *zone__rd_cstr(struct base_rd *r, bool copy, struct base_arena *a)
{
    size_t n;
    const uint8_t *p = base_rd_bytes(r, &n);

    /* exactly one NUL, at the end: an inner NUL would silently shorten the string */
    if (!p || n == 0 || p[n - 1] != 0 || memchr(p, 0, n - 1)) {
        r->err = true;
        return "";
    }
    return copy ? base_arena_strndup(a, (const char *)p, n - 1) : (const char *)p;
}

/* An array count, rejected when the bytes left cannot hold that many elements of at least
 * min bytes each: a forged count never makes us allocate more than the input justifies. */
static size_t rd_count(struct base_rd *r, size_t min)
{
    uint32_t n = base_rd_u32(r);
    if (r->err || n > r->left / min) {
        r->err = true;
        return 0;
    }
    return n;
}

static void put_pairs(struct base_buf *b, const struct zone_pair *p, size_t n)
{
    base_buf_put_u32(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        zone__put_cstr(b, p[i].key);
        zone__put_cstr(b, p[i].value);
    }
}

static struct zone_pair *get_pairs(struct base_rd *r, bool copy, struct base_arena *a, size_t *n)
{
    size_t cnt = rd_count(r, ZONE__PAIR_MIN);
    struct zone_pair *p = NULL;

    *n = 0;
    if (!cnt)
        return NULL;
    p = base_arena_alloc(a, cnt * sizeof *p);
    for (size_t i = 0; i < cnt; i++) {
        p[i].key = zone__rd_cstr(r, copy, a);
        p[i].value = zone__rd_cstr(r, copy, a);
    }
    if (r->err)
        return NULL;
    *n = cnt;
    return p;
}

static void put_strs(struct base_buf *b, const char *const *s, size_t n)
{
    base_buf_put_u32(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        zone__put_cstr(b, s[i]);
}

static const char **get_strs(struct base_rd *r, bool copy, struct base_arena *a, size_t *n)
{
    size_t cnt = rd_count(r, ZONE__STR_MIN);
    const char **s;

    *n = 0;
    if (!cnt)
        return NULL;
    s = base_arena_alloc(a, cnt * sizeof *s);
    for (size_t i = 0; i < cnt; i++)
        s[i] = zone__rd_cstr(r, copy, a);
    if (r->err)
        return NULL;
    *n = cnt;
    return s;
}

static enum zone_health get_health(struct base_rd *r)
{
    uint8_t v = base_rd_u8(r);
    if (v > ZONE_HEALTH_MAINT) {
        r->err = true;
        return ZONE_HEALTH_CRITICAL;
    }
    return (enum zone_health)v;
}

static bool get_bool(struct base_rd *r)
{
    uint8_t v = base_rd_u8(r);
    if (v > 1)
        r->err = true;
    return v == 1;
}

/* ---- bodies ---------------------------------------------------------------------------- */
void zone__node_body_put(struct base_buf *b, const struct zone_node *n)
{
    zone__put_cstr(b, n->name);
    zone__put_cstr(b, n->id);
    zone__put_cstr(b, n->address);
    zone__put_cstr(b, n->datacenter);
    put_pairs(b, n->tagged_addresses, n->n_tagged_addresses);
    put_pairs(b, n->meta, n->n_meta);
}

void zone__node_body_get(struct base_rd *r, bool copy, struct base_arena *a, struct zone_node *n)
{
    memset(n, 0, sizeof *n);
    n->name = zone__rd_cstr(r, copy, a);
    n->id = zone__rd_cstr(r, copy, a);
    n->address = zone__rd_cstr(r, copy, a);
    n->datacenter = zone__rd_cstr(r, copy, a);
    n->tagged_addresses = get_pairs(r, copy, a, &n->n_tagged_addresses);
    n->meta = get_pairs(r, copy, a, &n->n_meta);
}

void zone__service_body_put(struct base_buf *b, const struct zone_service *s)
{
    zone__put_cstr(b, s->node);
    zone__put_cstr(b, s->id);
    zone__put_cstr(b, s->name);
    zone__put_cstr(b, s->kind);
    put_strs(b, s->tags, s->n_tags);
    zone__put_cstr(b, s->address);
    base_buf_put_u32(b, s->port);
    put_pairs(b, s->meta, s->n_meta);
    put_pairs(b, s->tagged_addresses, s->n_tagged_addresses);
    base_buf_put_u32(b, s->weight_passing);
    base_buf_put_u32(b, s->weight_warning);
    base_buf_put_u8(b, s->enable_tag_override ? 1 : 0);
}

void zone__service_body_get(struct base_rd *r, bool copy, struct base_arena *a,
                            struct zone_service *s)
{
    memset(s, 0, sizeof *s);
    s->node = zone__rd_cstr(r, copy, a);
    s->id = zone__rd_cstr(r, copy, a);
    s->name = zone__rd_cstr(r, copy, a);
    s->kind = zone__rd_cstr(r, copy, a);
    s->tags = get_strs(r, copy, a, &s->n_tags);
    s->address = zone__rd_cstr(r, copy, a);
    s->port = base_rd_u32(r);
    s->meta = get_pairs(r, copy, a, &s->n_meta);
    s->tagged_addresses = get_pairs(r, copy, a, &s->n_tagged_addresses);
    s->weight_passing = base_rd_u32(r);
    s->weight_warning = base_rd_u32(r);
    s->enable_tag_override = get_bool(r);
}

void zone__check_body_put(struct base_buf *b, const struct zone_check *c)
{
    zone__put_cstr(b, c->node);
    zone__put_cstr(b, c->check_id);
    zone__put_cstr(b, c->name);
    base_buf_put_u8(b, (uint8_t)c->status);
    zone__put_cstr(b, c->notes);
    zone__put_cstr(b, c->output);
    zone__put_cstr(b, c->service_id);
    zone__put_cstr(b, c->service_name);
    put_strs(b, c->service_tags, c->n_service_tags);
    zone__put_cstr(b, c->type);
    base_buf_put_u64(b, c->ttl_ms);
    base_buf_put_u64(b, c->interval_ms);
    base_buf_put_u64(b, c->timeout_ms);
    base_buf_put_u64(b, c->deregister_after_ms);
    zone__put_cstr(b, c->http);
    zone__put_cstr(b, c->method);
    zone__put_cstr(b, c->tcp);
}

void zone__check_body_get(struct base_rd *r, bool copy, struct base_arena *a, struct zone_check *c)
{
    memset(c, 0, sizeof *c);
    c->node = zone__rd_cstr(r, copy, a);
    c->check_id = zone__rd_cstr(r, copy, a);
    c->name = zone__rd_cstr(r, copy, a);
    c->status = get_health(r);
    c->notes = zone__rd_cstr(r, copy, a);
    c->output = zone__rd_cstr(r, copy, a);
    c->service_id = zone__rd_cstr(r, copy, a);
    c->service_name = zone__rd_cstr(r, copy, a);
    c->service_tags = get_strs(r, copy, a, &c->n_service_tags);
    c->type = zone__rd_cstr(r, copy, a);
    c->ttl_ms = base_rd_u64(r);
    c->interval_ms = base_rd_u64(r);
    c->timeout_ms = base_rd_u64(r);
    c->deregister_after_ms = base_rd_u64(r);
    c->http = zone__rd_cstr(r, copy, a);
    c->method = zone__rd_cstr(r, copy, a);
    c->tcp = zone__rd_cstr(r, copy, a);
}

/* ---- records --------------------------------------------------------------------------- */
static void put_indexes(struct base_buf *b, uint64_t create, uint64_t modify)
{
    base_buf_put_u64(b, create);
    base_buf_put_u64(b, modify);
}

/* The version byte, checked before anything else so that a future format is refused rather
 * than misread. */
static void rd_version(struct base_rd *r)
{
    if (base_rd_u8(r) != ZONE__RECORD_VERSION)
        r->err = true;
}

void zone__rec_reseal(uint8_t *p, size_t len)
{
    uint32_t crc = zone__crc32c(p, len - ZONE__REC_CRC_LEN);
    for (int i = 0; i < 4; i++)
        p[len - ZONE__REC_CRC_LEN + (size_t)i] = (uint8_t)(crc >> (8 * i));
}

static void seal(struct base_buf *b, size_t start)
{
    base_buf_put_u32(b, 0);
    zone__rec_reseal(b->data + start, b->len - start);
}

bool zone__rec_ok(const void *p, size_t len)
{
    const uint8_t *b = p;
    return len >= 1 + ZONE__REC_CRC_LEN && b[0] == ZONE__RECORD_VERSION &&
           zone__crc32c(b, len - ZONE__REC_CRC_LEN) == base_le32(b + len - ZONE__REC_CRC_LEN);
}

int zone__rec_upgrade(const void *p, size_t len, struct base_buf *out)
{
    const uint8_t *b = p;

    out->len = 0;
    if (len >= 1 && b[0] == ZONE__RECORD_V1) {
        base_buf_append(out, b, len);
        out->data[0] = ZONE__RECORD_VERSION;
        seal(out, 0);
        return 1;
    }
    if (!zone__rec_ok(p, len))
        return BASE_EPARSE;
    base_buf_append(out, b, len);
    return 0;
}

/* A reader over a record's fields, after its checksum and its version byte were checked: past
 * the version byte, without the checksum. */
static void rd_init(struct base_rd *r, const void *p, size_t len)
{
    if (!zone__rec_ok(p, len)) {
        base_rd_init(r, p, 0);
        r->err = true;
        return;
    }
    base_rd_init(r, p, len - ZONE__REC_CRC_LEN);
    rd_version(r);
}

/* A record is the version byte, its body, its CreateIndex and ModifyIndex, and the checksum
 * of all that: rec_begin writes the first, rec_end the last three. */
static size_t rec_begin(struct base_buf *b)
{
    size_t start = b->len;
    base_buf_put_u8(b, ZONE__RECORD_VERSION);
    return start;
}

static void rec_end(struct base_buf *b, size_t start, uint64_t create, uint64_t modify)
{
    put_indexes(b, create, modify);
    seal(b, start);
}

static int rd_end(struct base_rd *r, uint64_t *create, uint64_t *modify)
{
    *create = base_rd_u64(r);
    *modify = base_rd_u64(r);
    return r->err || r->left ? BASE_EPARSE : 0;
}

void zone__node_encode(const struct zone_node *n, struct base_buf *b)
{
    size_t start = rec_begin(b);
    zone__node_body_put(b, n);
    rec_end(b, start, n->create_index, n->modify_index);
}

int zone__node_decode(const void *p, size_t len, bool copy, struct base_arena *a,
                      struct zone_node *out)
{
    struct base_rd r;
    rd_init(&r, p, len);
    zone__node_body_get(&r, copy, a, out);
    return rd_end(&r, &out->create_index, &out->modify_index);
}

void zone__service_encode(const struct zone_service *s, struct base_buf *b)
{
    size_t start = rec_begin(b);
    zone__service_body_put(b, s);
    rec_end(b, start, s->create_index, s->modify_index);
}

int zone__service_decode(const void *p, size_t len, bool copy, struct base_arena *a,
                         struct zone_service *out)
{
    struct base_rd r;
    rd_init(&r, p, len);
    zone__service_body_get(&r, copy, a, out);
    return rd_end(&r, &out->create_index, &out->modify_index);
}

void zone__check_encode(const struct zone_check *c, struct base_buf *b)
{
    size_t start = rec_begin(b);
    zone__check_body_put(b, c);
    rec_end(b, start, c->create_index, c->modify_index);
}

int zone__check_decode(const void *p, size_t len, bool copy, struct base_arena *a,
                       struct zone_check *out)
{
    struct base_rd r;
    rd_init(&r, p, len);
    zone__check_body_get(&r, copy, a, out);
    return rd_end(&r, &out->create_index, &out->modify_index);
}

int zone__check_peek(const void *p, size_t len, enum zone_health *status, const char **sid)
{
    struct base_rd r;
    size_t n;

    rd_init(&r, p, len);
    base_rd_bytes(&r, &n); /* node */
    base_rd_bytes(&r, &n); /* check id */
    base_rd_bytes(&r, &n); /* name */
    *status = get_health(&r);
    base_rd_bytes(&r, &n); /* notes */
    base_rd_bytes(&r, &n); /* output */
    *sid = zone__rd_cstr(&r, false, NULL);
    return r.err ? BASE_EPARSE : 0;
}

int zone__node_peek_address(const void *p, size_t len, const char **address)
{
    struct base_rd r;
    size_t n;

    rd_init(&r, p, len);
    base_rd_bytes(&r, &n); /* name */
    base_rd_bytes(&r, &n); /* id */
    *address = zone__rd_cstr(&r, false, NULL);
    return r.err ? BASE_EPARSE : 0;
}

void zone__kv_encode(const struct zone_kv *kv, struct base_buf *b)
{
    size_t start = rec_begin(b);
    zone__put_cstr(b, kv->key);
    base_buf_put_bytes(b, kv->value, kv->value_len);
    base_buf_put_u64(b, kv->flags);
    base_buf_put_u64(b, kv->lock_index);
    zone__put_cstr(b, kv->session);
    rec_end(b, start, kv->create_index, kv->modify_index);
}

int zone__kv_decode(const void *p, size_t len, bool copy, struct base_arena *a, struct zone_kv *out)
{
    struct base_rd r;
    const uint8_t *v;

    memset(out, 0, sizeof *out);
    rd_init(&r, p, len);
    out->key = zone__rd_cstr(&r, copy, a);
    v = base_rd_bytes(&r, &out->value_len);
    if (v && copy) {
        uint8_t *c = base_arena_alloc(a, out->value_len);
        memcpy(c, v, out->value_len);
        v = c;
    }
    out->value = v ? v : (const uint8_t *)"";
    out->flags = base_rd_u64(&r);
    out->lock_index = base_rd_u64(&r);
    out->session = zone__rd_cstr(&r, copy, a);
    return rd_end(&r, &out->create_index, &out->modify_index);
}

/* A session: id, name, node, node checks, service checks, u8 behavior, u64 TTL and lock delay
 * in milliseconds. */
void zone__session_body_put(struct base_buf *b, const struct zone_session *ss)
{
    zone__put_cstr(b, ss->id);
    zone__put_cstr(b, ss->name);
    zone__put_cstr(b, ss->node);
    put_strs(b, ss->node_checks, ss->n_node_checks);
    put_strs(b, ss->service_checks, ss->n_service_checks);
    base_buf_put_u8(b, (uint8_t)ss->behavior);
    base_buf_put_u64(b, ss->ttl_ms);
    base_buf_put_u64(b, ss->lock_delay_ms);
}

void zone__session_body_get(struct base_rd *r, bool copy, struct base_arena *a,
                            struct zone_session *ss)
{
    memset(ss, 0, sizeof *ss);
    ss->id = zone__rd_cstr(r, copy, a);
    ss->name = zone__rd_cstr(r, copy, a);
    ss->node = zone__rd_cstr(r, copy, a);
    ss->node_checks = get_strs(r, copy, a, &ss->n_node_checks);
    ss->service_checks = get_strs(r, copy, a, &ss->n_service_checks);
    uint8_t bh = base_rd_u8(r);
    if (bh > ZONE_SESSION_DELETE)
        r->err = true;
    ss->behavior = (enum zone_session_behavior)bh;
    ss->ttl_ms = base_rd_u64(r);
    ss->lock_delay_ms = base_rd_u64(r);
}

void zone__session_encode(const struct zone_session *ss, struct base_buf *b)
{
    size_t start = rec_begin(b);
    zone__session_body_put(b, ss);
    rec_end(b, start, ss->create_index, ss->modify_index);
}

int zone__session_decode(const void *p, size_t len, bool copy, struct base_arena *a,
                         struct zone_session *out)
{
    struct base_rd r;
    rd_init(&r, p, len);
    zone__session_body_get(&r, copy, a, out);
    return rd_end(&r, &out->create_index, &out->modify_index);
}

bool zone__is_record_db(int d)
{
    return d == ZONE__DB_NODES || d == ZONE__DB_SERVICES || d == ZONE__DB_CHECKS ||
           d == ZONE__DB_KV || d == ZONE__DB_SESSIONS;
}

int zone__rec_decode(enum zone__db d, const void *p, size_t len, bool copy, struct base_arena *a,
                     union zone__rec *u)
{
    switch (d) {
    case ZONE__DB_NODES:
        return zone__node_decode(p, len, copy, a, &u->n);
    case ZONE__DB_SERVICES:
        return zone__service_decode(p, len, copy, a, &u->s);
    case ZONE__DB_CHECKS:
        return zone__check_decode(p, len, copy, a, &u->c);
    case ZONE__DB_KV:
        return zone__kv_decode(p, len, copy, a, &u->kv);
    case ZONE__DB_SESSIONS:
        return zone__session_decode(p, len, copy, a, &u->ss);
    default:
        return BASE_EPARSE;
    }
}
