/* gossip/consul_event.c: Consul's user-event envelope (gossip.h, gossip_consul_event_*), the
 * msgpack map Consul's agent puts in the payload of a serf user event named
 * "consul:event:<name>". Written as Consul's agent writes it: go-msgpack 0.5.5 with WriteExt
 * (strings as str, the payload as bin), a struct as a map of its fields in sorted key order
 * (ID, n, nf, p, sf, tf, v; wire.c's note), "p", "nf", "sf", "tf" left out when empty, the
 * Lamport time not encoded (the serf event carries it). Read tolerantly as go-msgpack reads:
 * str or bin (and old raw) for strings and bytes, unknown keys skipped, missing ones zero. */
#include "gossip/mp.h"

#include <string.h>

struct envelope {
    const char *id, *name, *node_filter, *service_filter, *tag_filter;
    struct gossip_bytes payload;
    int64_t version;
};

/* in Go's sorted order of the encoded names */
static const struct gossip_mp_field envelope_fields[] = {
    GOSSIP_MP_FIELD(struct envelope, "ID", GOSSIP_MP_STR, id),
    GOSSIP_MP_FIELD(struct envelope, "n", GOSSIP_MP_STR, name),
    GOSSIP_MP_FIELD_OMIT(struct envelope, "nf", GOSSIP_MP_STR, node_filter),
    GOSSIP_MP_FIELD_OMIT(struct envelope, "p", GOSSIP_MP_BYTES, payload),
    GOSSIP_MP_FIELD_OMIT(struct envelope, "sf", GOSSIP_MP_STR, service_filter),
    GOSSIP_MP_FIELD_OMIT(struct envelope, "tf", GOSSIP_MP_STR, tag_filter),
    GOSSIP_MP_FIELD(struct envelope, "v", GOSSIP_MP_I64, version),
};

static bool empty(const char *s)
{
    return !s || !s[0];
}

static void pk_key(msgpack_packer *pk, const char *k)
{
    size_t n = strlen(k);
    (void)msgpack_pack_str(pk, n);
    (void)msgpack_pack_str_body(pk, k, n);
}

static void pk_text(msgpack_packer *pk, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    (void)msgpack_pack_str(pk, n);
    if (n)
        (void)msgpack_pack_str_body(pk, s, n);
}

void gossip_consul_event_encode(const struct gossip_consul_event *ev, struct base_buf *out)
{
    /* msgpack-c's str (fixstr, str8, str16, str32) and bin (bin8, 16, 32) are go-msgpack's
     * with WriteExt, which Consul's agent handle sets */
    msgpack_packer pk;
    gossip__pk_init(&pk, out);
    bool p = ev->payload_len > 0, nf = !empty(ev->node_filter), sf = !empty(ev->service_filter),
         tf = !empty(ev->tag_filter);
    (void)msgpack_pack_map(&pk, 3 + (size_t)p + nf + sf + tf);
    pk_key(&pk, "ID");
    pk_text(&pk, ev->id);
    pk_key(&pk, "n");
    pk_text(&pk, ev->name);
    if (nf) {
        pk_key(&pk, "nf");
        pk_text(&pk, ev->node_filter);
    }
    if (p) {
        pk_key(&pk, "p");
        (void)msgpack_pack_bin(&pk, ev->payload_len);
        (void)msgpack_pack_bin_body(&pk, ev->payload, ev->payload_len);
    }
    if (sf) {
        pk_key(&pk, "sf");
        pk_text(&pk, ev->service_filter);
    }
    if (tf) {
        pk_key(&pk, "tf");
        pk_text(&pk, ev->tag_filter);
    }
    pk_key(&pk, "v");
    (void)msgpack_pack_int64(&pk, ev->version);
}

int gossip_consul_event_decode(const uint8_t *p, size_t n, struct base_arena *a,
                               struct gossip_consul_event *out)
{
    memset(out, 0, sizeof(*out));
    msgpack_unpacked u;
    size_t used;
    int rv = gossip__mp_unpack_all(p, n, &u, &used);
    if (rv != 0)
        return rv;
    struct envelope e;
    if (u.data.type != MSGPACK_OBJECT_MAP)
        rv = BASE_EPARSE; /* nil is no event */
    else
        rv = GOSSIP_MP_DECODE(&u.data, envelope_fields, a, &e);
    msgpack_unpacked_destroy(&u);
    if (rv != 0)
        return rv;
    *out = (struct gossip_consul_event){e.id,          e.name,           e.payload.p,  e.payload.n,
                                        e.node_filter, e.service_filter, e.tag_filter, e.version};
    return 0;
}
