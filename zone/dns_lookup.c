/* The catalog reads behind the DNS answers, on the zone_read's own cursors (no allocation but
 * the arena): a service's instances with their health, the owners of an address, the serial.
 *
 * One service lookup is a range scan of svcidx (name -> node/id) and, per instance, one get of
 * the service record, one range scan of the node's checks (status and service id peeked, not
 * decoded), and one get of the node record (its address peeked, not decoded) when the
 * service has no address of its own. An
 * instance is hidden when the worst of its node's checks and its own checks is critical or
 * maintenance, and also when it is warning under only_passing (Consul's DNS filter). */
#include "zone/dns.h"

#include <string.h>

static bool tag_match(const struct zone_service *sv, const char *tag)
{
    for (size_t i = 0; i < sv->n_tags; i++)
        if (base_strcasecmp(sv->tags[i], tag) == 0)
            return true;
    return false;
}

static int node_addr(struct zone_read *r, const char *node, int *family, uint8_t ip[16],
                     const char **host)
{
    struct zone__key k;
    MDB_val key, val;
    const char *addr;
    int rc;

    *family = 0;
    *host = NULL;
    zone__key_node(&k, node);
    if (!zone__key_fits(&k, r->s->max_key))
        return 0;
    key = zone__key_val(&k);
    rc = mdb_get(r->txn, r->s->dbi[ZONE__DB_NODES], &key, &val);
    if (rc == MDB_NOTFOUND)
        return 0; /* the index names a node that is gone: no address */
    if (rc)
        return BASE_ESTORE;
    if (zone__node_peek_address(val.mv_data, val.mv_size, &addr))
        return zone__damaged(r, ZONE__DB_NODES, &key);
    *family = zone__addr_parse(addr, ip);
    if (!*family && *addr)
        *host = addr;
    return 0;
}

int zone__dns_instances(struct zone_read *r, const struct zone_dns_config *cfg, const char *name,
                        const char *tag, bool want_node, struct base_arena *a,
                        struct zone__inst **out, size_t *n)
{
    MDB_cursor *c = zone__read_cursor(r, ZONE__DB_SVCIDX);
    struct zone__inst *v = NULL;
    size_t cap = 0, cnt = 0;
    struct zone__key k;
    MDB_val key, val;
    int rc;

    *out = NULL;
    *n = 0;
    if (!c)
        return BASE_ESTORE;
    zone__key_svcidx(&k, name, NULL, NULL);
    for (rc = zone__cursor_first(c, &k, &key, &val); rc == 0;
         rc = zone__cursor_next(c, &k, &key, &val)) {
        MDB_val sk = zone__svcidx_row(&k, &key), sv_val;
        struct zone_service sv;
        enum zone_health h;

        rc = mdb_get(r->txn, r->s->dbi[ZONE__DB_SERVICES], &sk, &sv_val);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc)
            return BASE_ESTORE;
        if (zone__service_decode(sv_val.mv_data, sv_val.mv_size, false, a, &sv))
            return zone__damaged(r, ZONE__DB_SERVICES, &sk);
        if (*tag && !tag_match(&sv, tag))
            continue;
        if ((rc = zone_instance_health(r, sv.node, sv.id, &h)))
            return rc;
        if (h >= ZONE_HEALTH_CRITICAL || (h == ZONE_HEALTH_WARNING && cfg->only_passing))
            continue;

        v = base_arena_grow(a, v, cnt, &cap, sizeof *v, 16);
        struct zone__inst *in = &v[cnt];
        uint32_t wt = h == ZONE_HEALTH_WARNING ? sv.weight_warning : sv.weight_passing;
        memset(in, 0, sizeof *in);
        in->node = sv.node;
        in->port = (uint16_t)(sv.port > 0xffff ? 0xffff : sv.port);
        in->weight = (uint16_t)(wt > 0xffff ? 0xffff : wt);
        const char *node_host = NULL;
        if (!*sv.address || want_node) {
            if ((rc = node_addr(r, sv.node, &in->node_family, in->node_ip, &node_host)))
                return rc;
        }
        if (*sv.address) {
            in->own = true;
            in->family = zone__addr_parse(sv.address, in->ip);
            if (!in->family)
                in->host = sv.address;
        } else {
            in->family = in->node_family;
            memcpy(in->ip, in->node_ip, sizeof in->ip);
            in->host = node_host;
            if (!in->family && !in->host)
                continue; /* neither the service nor its node has an address */
        }
        cnt++;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        return BASE_ESTORE;
    *out = v;
    *n = cnt;
    return 0;
}

int zone__dns_ptrs(struct zone_read *r, int family, const uint8_t *ip, struct base_arena *a,
                   struct zone__ptr **out, size_t *n)
{
    MDB_cursor *c = zone__read_cursor(r, ZONE__DB_ADDRS);
    size_t cap = 0, cnt = 0;
    struct zone__ptr *v = NULL;
    struct zone__key prefix;
    MDB_val key, val;
    int rc;

    *out = NULL;
    *n = 0;
    if (!c)
        return BASE_ESTORE;
    zone__key_addr(&prefix, family, ip, NULL, NULL);
    size_t plen = prefix.n;
    for (rc = zone__cursor_first(c, &prefix, &key, &val); rc == 0;
         rc = zone__cursor_next(c, &prefix, &key, &val)) {
        const uint8_t *kp = key.mv_data, *vp = val.mv_data;
        const uint8_t *sep = memchr(kp + plen, 0, key.mv_size - plen);
        if (!sep || (val.mv_size && vp[val.mv_size - 1] != 0))
            return BASE_ESTORE;
        v = base_arena_grow(a, v, cnt, &cap, sizeof *v, 8);
        v[cnt].node = (const char *)kp + plen;
        v[cnt].node_len = (size_t)(sep - (kp + plen));
        v[cnt].service = val.mv_size ? (const char *)vp : NULL;
        cnt++;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        return BASE_ESTORE;
    *out = v;
    *n = cnt;
    return 0;
}

int zone__dns_serial(struct zone_read *r, uint32_t *serial)
{
    uint64_t idx;
    int rc = zone__meta_read(r->txn, r->s->dbi[ZONE__DB_META], ZONE__META_INDEX, &idx);

    *serial = (uint32_t)idx; /* RFC 1982 serial arithmetic wraps; the low 32 bits grow too */
    return rc;
}
