/* Consul's user events on the LAN pool: the serf side of agent/user_event.go (the envelope),
 * consul/internal_endpoint.go's EventFire and server_serf.go's localEvent.
 *
 * Firing: the envelope (gossip_consul_event_encode) travels as serf's user event
 * "consul:event:<name>", not coalesced. Serf's limit is checked first, as serf.UserEvent does:
 * the serf name and the envelope together at most 512 bytes (serf's DefaultConfig
 * UserEventSizeLimit, which Consul keeps), "user event exceeds configured limit of 512 bytes
 * before encoding" otherwise.
 *
 * Receiving: every user event of the pool, ours included (gossip delivers our own too). Only
 * "consul:event:" names carry Consul's envelope; other names (a plain `serf event`, Consul's
 * internal "consul:new-leader") are not user events to Consul's agent and are ignored. An
 * envelope that does not decode is logged and dropped. The api applies the filters. Loop
 * thread. */
#include "internal.h"

#include <string.h>

#define EVENT_PREFIX     "consul:event:"
#define EVENT_SIZE_LIMIT 512

int adm_event_fire(struct gossip *g, const struct api_user_event *ev, char *errmsg)
{
    struct gossip_consul_event ce = {
        .id = ev->id,
        .name = ev->name,
        .payload = ev->payload,
        .payload_len = ev->payload_len,
        .node_filter = ev->node_filter,
        .service_filter = ev->service_filter,
        .tag_filter = ev->tag_filter,
        .version = ev->version,
    };
    struct base_buf env, name;
    int rc = 0;

    if (!g)
        return base_errf(errmsg, BASE_ESHUTDOWN, "agent is shutting down");
    base_buf_init(&env);
    base_buf_init(&name);
    gossip_consul_event_encode(&ce, &env);
    base_buf_printf(&name, EVENT_PREFIX "%s", ev->name);
    if (name.len + env.len > EVENT_SIZE_LIMIT)
        rc = base_errf(errmsg, BASE_ETOOBIG,
                       "user event exceeds configured limit of %d bytes before encoding",
                       EVENT_SIZE_LIMIT);
    else if ((rc = gossip_event_fire(g, (const char *)name.data, env.data, env.len, false)))
        base_errf(errmsg, rc, "user event could not be sent: %s", base_strerror(rc));
    base_buf_free(&env);
    base_buf_free(&name);
    return rc;
}

void adm_event_received(struct api *api, const struct gossip_event *ev)
{
    struct gossip_consul_event ce;
    struct base_arena ar;
    size_t plen = strlen(EVENT_PREFIX);

    if (!api || !ev->name || strncmp(ev->name, EVENT_PREFIX, plen) != 0) {
        if (ev->name && strncmp(ev->name, "consul:", 7) == 0)
            LOG_DEBUG("agent", "Unhandled local event: %s", ev->name);
        return;
    }
    base_arena_init(&ar);
    if (gossip_consul_event_decode(ev->payload, ev->payload_len, &ar, &ce)) {
        LOG_WARN("agent", "Failed to decode event %s: not Consul's envelope", ev->name);
    } else {
        struct api_user_event ue = {
            .id = ce.id,
            .name = ce.name,
            .payload = ce.payload,
            .payload_len = ce.payload_len,
            .node_filter = ce.node_filter,
            .service_filter = ce.service_filter,
            .tag_filter = ce.tag_filter,
            .version = ce.version,
            .ltime = ev->ltime,
        };
        api_on_user_event(api, &ue);
    }
    base_arena_close(&ar);
}
