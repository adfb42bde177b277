/* gossip/serf.c: serf's messages, carried in memberlist user messages, and serf's tags in a
 * node's meta (the format is in wire.c's note). */
#include "gossip/mp.h"

#include <stdlib.h>
#include <string.h>

/* ---- serf's messages ------------------------------------------------------------------------ */

static const struct gossip_mp_field serf_leave_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_serf_join, "LTime", GOSSIP_MP_U64, ltime),
    GOSSIP_MP_FIELD(struct gossip_serf_join, "Node", GOSSIP_MP_STR, node),
    GOSSIP_MP_FIELD(struct gossip_serf_join, "Prune", GOSSIP_MP_BOOL, prune),
};
static const struct gossip_mp_field serf_join_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_serf_join, "LTime", GOSSIP_MP_U64, ltime),
    GOSSIP_MP_FIELD(struct gossip_serf_join, "Node", GOSSIP_MP_STR, node),
};
static const struct gossip_mp_field serf_event_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_serf_user_event, "CC", GOSSIP_MP_BOOL, cc),
    GOSSIP_MP_FIELD(struct gossip_serf_user_event, "LTime", GOSSIP_MP_U64, ltime),
    GOSSIP_MP_FIELD(struct gossip_serf_user_event, "Name", GOSSIP_MP_STR, name),
    GOSSIP_MP_FIELD(struct gossip_serf_user_event, "Payload", GOSSIP_MP_BYTES, payload),
};
static const struct gossip_mp_field serf_one_event_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_serf_event, "Name", GOSSIP_MP_STR, name),
    GOSSIP_MP_FIELD(struct gossip_serf_event, "Payload", GOSSIP_MP_BYTES, payload),
};
/* query's fields: Addr, then Filters (handled apart), then the rest */
static const struct gossip_mp_field serf_query_addr_field[] = {
    GOSSIP_MP_FIELD(struct gossip_serf_query, "Addr", GOSSIP_MP_BYTES, addr),
};
static const struct gossip_mp_field serf_query_rest_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_serf_query, "Flags", GOSSIP_MP_U32, flags),
    GOSSIP_MP_FIELD(struct gossip_serf_query, "ID", GOSSIP_MP_U32, id),
    GOSSIP_MP_FIELD(struct gossip_serf_query, "LTime", GOSSIP_MP_U64, ltime),
    GOSSIP_MP_FIELD(struct gossip_serf_query, "Name", GOSSIP_MP_STR, name),
    GOSSIP_MP_FIELD(struct gossip_serf_query, "Payload", GOSSIP_MP_BYTES, payload),
    GOSSIP_MP_FIELD(struct gossip_serf_query, "Port", GOSSIP_MP_U16, port),
    GOSSIP_MP_FIELD(struct gossip_serf_query, "RelayFactor", GOSSIP_MP_U8, relay_factor),
    GOSSIP_MP_FIELD(struct gossip_serf_query, "SourceNode", GOSSIP_MP_STR, source_node),
    GOSSIP_MP_FIELD(struct gossip_serf_query, "Timeout", GOSSIP_MP_I64, timeout_ns),
};
static const struct gossip_mp_field serf_response_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_serf_query_response, "Flags", GOSSIP_MP_U32, flags),
    GOSSIP_MP_FIELD(struct gossip_serf_query_response, "From", GOSSIP_MP_STR, from),
    GOSSIP_MP_FIELD(struct gossip_serf_query_response, "ID", GOSSIP_MP_U32, id),
    GOSSIP_MP_FIELD(struct gossip_serf_query_response, "LTime", GOSSIP_MP_U64, ltime),
    GOSSIP_MP_FIELD(struct gossip_serf_query_response, "Payload", GOSSIP_MP_BYTES, payload),
};
static const struct gossip_mp_field serf_key_request_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_serf_key_request, "Key", GOSSIP_MP_BYTES, key),
};
/* key response's scalar fields; Keys is handled apart (first in order) */
static const struct gossip_mp_field serf_key_response_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_serf_key_response, "Message", GOSSIP_MP_STR, message),
    GOSSIP_MP_FIELD(struct gossip_serf_key_response, "PrimaryKey", GOSSIP_MP_STR, primary_key),
    GOSSIP_MP_FIELD(struct gossip_serf_key_response, "Result", GOSSIP_MP_BOOL, result),
};
static const struct gossip_mp_field serf_pp_fields[] = {
    GOSSIP_MP_FIELD(struct gossip_serf_push_pull, "EventLTime", GOSSIP_MP_U64, event_ltime),
    GOSSIP_MP_FIELD(struct gossip_serf_push_pull, "LTime", GOSSIP_MP_U64, ltime),
    GOSSIP_MP_FIELD(struct gossip_serf_push_pull, "QueryLTime", GOSSIP_MP_U64, query_ltime),
};
struct relay_addr {
    struct gossip_bytes ip;
    int64_t port;
    const char *zone;
};
static const struct gossip_mp_field relay_addr_fields[] = {
    GOSSIP_MP_FIELD(struct relay_addr, "IP", GOSSIP_MP_BYTES, ip),
    GOSSIP_MP_FIELD(struct relay_addr, "Port", GOSSIP_MP_I64, port),
    GOSSIP_MP_FIELD(struct relay_addr, "Zone", GOSSIP_MP_STR, zone),
};
struct relay_header {
    const char *dest_name;
};
static const struct gossip_mp_field relay_header_fields[] = {
    GOSSIP_MP_FIELD(struct relay_header, "DestName", GOSSIP_MP_STR, dest_name),
};

/* An array (or nil) of strings. */
static int conv_str_array(const msgpack_object *o, struct base_arena *a, const char ***out,
                          size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!o || o->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return BASE_EPARSE;
    *n = o->via.array.size;
    if (*n == 0)
        return 0;
    *out = base_arena_alloc(a, *n * sizeof(**out));
    for (size_t i = 0; i < *n; i++) {
        int rv = gossip__mp_str(&o->via.array.ptr[i], a, &(*out)[i]);
        if (rv != 0)
            return rv;
    }
    return 0;
}

static int serf_push_pull_decode(const msgpack_object *o, struct base_arena *a,
                                 struct gossip_serf_push_pull *pp)
{
    int rv = GOSSIP_MP_DECODE(o, serf_pp_fields, a, pp);
    if (rv != 0)
        return rv;
    if (o->type != MSGPACK_OBJECT_MAP)
        return 0; /* nil */
    const msgpack_object *st = gossip__mp_get(o, "StatusLTimes");
    if (st && st->type != MSGPACK_OBJECT_NIL) {
        if (st->type != MSGPACK_OBJECT_MAP)
            return BASE_EPARSE;
        pp->n_status = st->via.map.size;
        pp->status = pp->n_status ? base_arena_alloc(a, pp->n_status * sizeof(*pp->status)) : NULL;
        for (size_t i = 0; i < pp->n_status; i++) {
            const msgpack_object_kv *kv = &st->via.map.ptr[i];
            if (kv->key.type == MSGPACK_OBJECT_NIL)
                return BASE_EPARSE;
            if ((rv = gossip__mp_str(&kv->key, a, &pp->status[i].node)) != 0 ||
                (rv = gossip__mp_uint(&kv->val, UINT64_MAX, &pp->status[i].ltime)) != 0)
                return rv;
        }
    }
    if ((rv = conv_str_array(gossip__mp_get(o, "LeftMembers"), a, &pp->left, &pp->n_left)) != 0)
        return rv;
    const msgpack_object *ev = gossip__mp_get(o, "Events");
    if (ev && ev->type != MSGPACK_OBJECT_NIL) {
        if (ev->type != MSGPACK_OBJECT_ARRAY)
            return BASE_EPARSE;
        size_t slots = ev->via.array.size, k = 0;
        pp->events = slots ? base_arena_alloc(a, slots * sizeof(*pp->events)) : NULL;
        for (size_t i = 0; i < slots; i++) {
            const msgpack_object *e = &ev->via.array.ptr[i];
            if (e->type == MSGPACK_OBJECT_NIL)
                continue;
            if (e->type != MSGPACK_OBJECT_MAP)
                return BASE_EPARSE;
            struct gossip_serf_events *dst = &pp->events[k++];
            memset(dst, 0, sizeof(*dst));
            const msgpack_object *lt = gossip__mp_get(e, "LTime");
            if (lt && (rv = gossip__mp_uint(lt, UINT64_MAX, &dst->ltime)) != 0)
                return rv;
            const msgpack_object *list = gossip__mp_get(e, "Events");
            if (!list || list->type == MSGPACK_OBJECT_NIL)
                continue;
            if (list->type != MSGPACK_OBJECT_ARRAY)
                return BASE_EPARSE;
            dst->n = list->via.array.size;
            dst->events = dst->n ? base_arena_alloc(a, dst->n * sizeof(*dst->events)) : NULL;
            for (size_t j = 0; j < dst->n; j++)
                if ((rv = GOSSIP_MP_DECODE(&list->via.array.ptr[j], serf_one_event_fields, a,
                                           &dst->events[j])) != 0)
                    return rv;
        }
        pp->n_events = k;
    }
    return 0;
}

static int serf_query_decode(const msgpack_object *o, struct base_arena *a,
                             struct gossip_serf_query *q)
{
    int rv = GOSSIP_MP_DECODE(o, serf_query_addr_field, a, q);
    if (rv == 0)
        rv = GOSSIP_MP_DECODE(o, serf_query_rest_fields, a, q);
    if (rv != 0)
        return rv;
    const msgpack_object *f = o->type == MSGPACK_OBJECT_MAP ? gossip__mp_get(o, "Filters") : NULL;
    if (!f || f->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (f->type != MSGPACK_OBJECT_ARRAY)
        return BASE_EPARSE;
    q->n_filters = f->via.array.size;
    q->filters = q->n_filters ? base_arena_alloc(a, q->n_filters * sizeof(*q->filters)) : NULL;
    for (size_t i = 0; i < q->n_filters; i++) {
        if ((rv = gossip__mp_bytes(&f->via.array.ptr[i], a, &q->filters[i])) != 0)
            return rv;
        if (q->filters[i].n == 0) /* serf reads the filter's type byte unchecked */
            return BASE_EPARSE;
    }
    return 0;
}

int gossip__serf_decode(const uint8_t *p, size_t n, struct base_arena *a,
                        struct gossip_serf_msg *out)
{
    memset(out, 0, sizeof(*out));
    if (n < 1)
        return BASE_EPARSE;
    out->type = p[0];
    if (out->type == GOSSIP_SERF_CONFLICT_RESPONSE) {
        uint8_t *copy = NULL;
        if (n > 1) {
            copy = base_arena_alloc(a, n - 1);
            memcpy(copy, p + 1, n - 1);
        }
        out->u.conflict = (struct gossip_bytes){copy, n - 1};
        return 0;
    }
    if (out->type > GOSSIP_SERF_RELAY)
        return BASE_EPARSE;
    msgpack_unpacked u;
    size_t len;
    int rv = gossip__mp_unpack_all(p + 1, n - 1, &u, &len);
    if (rv != 0)
        return rv;
    const msgpack_object *o = &u.data;
    switch (out->type) {
    case GOSSIP_SERF_LEAVE:
        rv = GOSSIP_MP_DECODE(o, serf_leave_fields, a, &out->u.join);
        break;
    case GOSSIP_SERF_JOIN:
        rv = GOSSIP_MP_DECODE(o, serf_join_fields, a, &out->u.join);
        break;
    case GOSSIP_SERF_PUSH_PULL:
        rv = serf_push_pull_decode(o, a, &out->u.push_pull);
        break;
    case GOSSIP_SERF_USER_EVENT:
        rv = GOSSIP_MP_DECODE(o, serf_event_fields, a, &out->u.event);
        break;
    case GOSSIP_SERF_QUERY:
        rv = serf_query_decode(o, a, &out->u.query);
        break;
    case GOSSIP_SERF_QUERY_RESPONSE:
        rv = GOSSIP_MP_DECODE(o, serf_response_fields, a, &out->u.response);
        break;
    case GOSSIP_SERF_KEY_REQUEST:
        rv = GOSSIP_MP_DECODE(o, serf_key_request_fields, a, &out->u.key_request);
        break;
    case GOSSIP_SERF_KEY_RESPONSE: {
        struct gossip_serf_key_response *k = &out->u.key_response;
        rv = GOSSIP_MP_DECODE(o, serf_key_response_fields, a, k);
        if (rv == 0 && o->type == MSGPACK_OBJECT_MAP)
            rv = conv_str_array(gossip__mp_get(o, "Keys"), a, &k->keys, &k->n_keys);
        break;
    }
    case GOSSIP_SERF_RELAY: {
        struct gossip_serf_relay *r = &out->u.relay;
        struct relay_header h;
        struct relay_addr ad;
        rv = GOSSIP_MP_DECODE(o, relay_header_fields, a, &h);
        const msgpack_object *d =
            o->type == MSGPACK_OBJECT_MAP ? gossip__mp_get(o, "DestAddr") : NULL;
        if (rv == 0)
            rv = d ? GOSSIP_MP_DECODE(d, relay_addr_fields, a, &ad) : BASE_EPARSE;
        if (rv != 0)
            break;
        r->dest_name = h.dest_name;
        r->dest_ip = ad.ip;
        r->dest_port = ad.port;
        r->dest_zone = ad.zone;
        size_t rest = n - 1 - len;
        if (rest == 0) {
            rv = BASE_EPARSE;
            break;
        }
        uint8_t *copy = base_arena_alloc(a, rest);
        memcpy(copy, p + 1 + len, rest);
        r->msg = (struct gossip_bytes){copy, rest};
        break;
    }
    }
    msgpack_unpacked_destroy(&u);
    return rv;
}

static void pk_str_array(msgpack_packer *pk, const char *const *s, size_t n)
{
    (void)msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        gossip__pk_str(pk, s[i]);
}

void gossip__serf_encode(struct base_buf *b, const struct gossip_serf_msg *m)
{
    msgpack_packer pk;
    gossip__pk_init(&pk, b);
    base_buf_put_u8(b, m->type);
    switch (m->type) {
    case GOSSIP_SERF_LEAVE:
        GOSSIP_MP_ENCODE(&pk, serf_leave_fields, &m->u.join);
        break;
    case GOSSIP_SERF_JOIN:
        GOSSIP_MP_ENCODE(&pk, serf_join_fields, &m->u.join);
        break;
    case GOSSIP_SERF_USER_EVENT:
        GOSSIP_MP_ENCODE(&pk, serf_event_fields, &m->u.event);
        break;
    case GOSSIP_SERF_QUERY_RESPONSE:
        GOSSIP_MP_ENCODE(&pk, serf_response_fields, &m->u.response);
        break;
    case GOSSIP_SERF_KEY_REQUEST:
        GOSSIP_MP_ENCODE(&pk, serf_key_request_fields, &m->u.key_request);
        break;
    case GOSSIP_SERF_KEY_RESPONSE: {
        const struct gossip_serf_key_response *k = &m->u.key_response;
        (void)msgpack_pack_map(&pk, 4);
        gossip__pk_str(&pk, "Keys");
        pk_str_array(&pk, k->keys, k->n_keys);
        gossip__pk_str(&pk, "Message");
        gossip__pk_str(&pk, k->message);
        gossip__pk_str(&pk, "PrimaryKey");
        gossip__pk_str(&pk, k->primary_key);
        gossip__pk_str(&pk, "Result");
        if (k->result)
            (void)msgpack_pack_true(&pk);
        else
            (void)msgpack_pack_false(&pk);
        break;
    }
    case GOSSIP_SERF_QUERY: {
        /* Go's order: Addr, Filters, Flags, ID, LTime, Name, Payload, Port, RelayFactor,
         * SourceNode, Timeout. Empty bytes go as nil, as Go sends fields it never set. */
        const struct gossip_serf_query *q = &m->u.query;
        (void)msgpack_pack_map(&pk, 11);
        gossip__pk_str(&pk, "Addr");
        if (q->addr.n)
            gossip__pk_raw(&pk, q->addr.p, q->addr.n);
        else
            (void)msgpack_pack_nil(&pk);
        gossip__pk_str(&pk, "Filters");
        if (q->n_filters) {
            (void)msgpack_pack_array(&pk, q->n_filters);
            for (size_t i = 0; i < q->n_filters; i++)
                gossip__pk_raw(&pk, q->filters[i].p, q->filters[i].n);
        } else {
            (void)msgpack_pack_nil(&pk);
        }
        gossip__pk_fields(&pk, serf_query_rest_fields, BASE_ARRAY_LEN(serf_query_rest_fields), q);
        break;
    }
    case GOSSIP_SERF_PUSH_PULL: {
        /* Go's order: EventLTime, Events, LTime, LeftMembers, QueryLTime, StatusLTimes */
        const struct gossip_serf_push_pull *pp = &m->u.push_pull;
        (void)msgpack_pack_map(&pk, 6);
        gossip__pk_str(&pk, "EventLTime");
        (void)msgpack_pack_uint64(&pk, pp->event_ltime);
        gossip__pk_str(&pk, "Events");
        (void)msgpack_pack_array(&pk, pp->n_events);
        for (size_t i = 0; i < pp->n_events; i++) {
            const struct gossip_serf_events *e = &pp->events[i];
            (void)msgpack_pack_map(&pk, 2);
            gossip__pk_str(&pk, "Events");
            (void)msgpack_pack_array(&pk, e->n);
            for (size_t j = 0; j < e->n; j++)
                GOSSIP_MP_ENCODE(&pk, serf_one_event_fields, &e->events[j]);
            gossip__pk_str(&pk, "LTime");
            (void)msgpack_pack_uint64(&pk, e->ltime);
        }
        gossip__pk_str(&pk, "LTime");
        (void)msgpack_pack_uint64(&pk, pp->ltime);
        gossip__pk_str(&pk, "LeftMembers");
        pk_str_array(&pk, pp->left, pp->n_left);
        gossip__pk_str(&pk, "QueryLTime");
        (void)msgpack_pack_uint64(&pk, pp->query_ltime);
        gossip__pk_str(&pk, "StatusLTimes");
        (void)msgpack_pack_map(&pk, pp->n_status);
        for (size_t i = 0; i < pp->n_status; i++) {
            gossip__pk_str(&pk, pp->status[i].node);
            (void)msgpack_pack_uint64(&pk, pp->status[i].ltime);
        }
        break;
    }
    case GOSSIP_SERF_RELAY: {
        const struct gossip_serf_relay *r = &m->u.relay;
        (void)msgpack_pack_map(&pk, 2);
        gossip__pk_str(&pk, "DestAddr");
        struct relay_addr ad = {r->dest_ip, r->dest_port, r->dest_zone};
        GOSSIP_MP_ENCODE(&pk, relay_addr_fields, &ad);
        gossip__pk_str(&pk, "DestName");
        gossip__pk_str(&pk, r->dest_name);
        base_buf_append(b, r->msg.p, r->msg.n);
        break;
    }
    case GOSSIP_SERF_CONFLICT_RESPONSE:
        base_buf_append(b, m->u.conflict.p, m->u.conflict.n);
        break;
    default:
        break;
    }
}

/* ---- tags ----------------------------------------------------------------------------------- */

#define TAG_MAGIC 255

int gossip__tags_decode(const uint8_t *p, size_t n, struct base_arena *a, struct gossip_tag **tags,
                        size_t *n_tags)
{
    *tags = NULL;
    *n_tags = 0;
    if (n == 0 || p[0] != TAG_MAGIC) {
        /* serf protocol < 3: the meta is the role */
        if (n && memchr(p, 0, n))
            return BASE_EPARSE;
        struct gossip_tag *t = base_arena_alloc(a, sizeof(*t));
        t->key = "role";
        t->value = base_arena_strndup(a, n ? (const char *)p : "", n);
        *tags = t;
        *n_tags = 1;
        return 0;
    }
    msgpack_unpacked u;
    size_t len;
    int rv = gossip__mp_unpack_all(p + 1, n - 1, &u, &len);
    if (rv != 0)
        return rv;
    const msgpack_object *o = &u.data;
    if (o->type == MSGPACK_OBJECT_MAP) {
        size_t k = o->via.map.size;
        struct gossip_tag *t = k ? base_arena_alloc(a, k * sizeof(*t)) : NULL;
        for (size_t i = 0; rv == 0 && i < k; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type == MSGPACK_OBJECT_NIL)
                rv = BASE_EPARSE;
            else if ((rv = gossip__mp_str(&kv->key, a, &t[i].key)) == 0)
                rv = gossip__mp_str(&kv->val, a, &t[i].value);
        }
        *tags = t;
        *n_tags = k;
    } else if (o->type != MSGPACK_OBJECT_NIL) {
        rv = BASE_EPARSE;
    }
    msgpack_unpacked_destroy(&u);
    return rv;
}

static int tag_cmp(const void *x, const void *y)
{
    return strcmp(((const struct gossip_tag *)x)->key, ((const struct gossip_tag *)y)->key);
}

void gossip__tags_encode(struct base_buf *b, const struct gossip_tag *tags, size_t n)
{
    struct gossip_tag *sorted = base_malloc((n ? n : 1) * sizeof(*sorted));
    if (n)
        memcpy(sorted, tags, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), tag_cmp);
    msgpack_packer pk;
    gossip__pk_init(&pk, b);
    base_buf_put_u8(b, TAG_MAGIC);
    (void)msgpack_pack_map(&pk, n);
    for (size_t i = 0; i < n; i++) {
        gossip__pk_str(&pk, sorted[i].key);
        gossip__pk_str(&pk, sorted[i].value);
    }
    base_free(sorted);
}
