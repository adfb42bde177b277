/* The raft_uv_transport: how Raft servers reach each other on the server port.
 *
 * For now this is libraft's own TCP transport (raft_uv_tcp_init), bound to the server address
 * given to raft_init. It is enough for one voter, which only listens. DESIGN.md 2.6 asks for
 * our own transport before clusters of several servers: TCP_NODELAY, framed and size-bounded
 * messages, reconnect with backoff, and room for server RPC (write forwarding) on the same
 * port. That transport replaces the two functions below; nothing else in consensus/ knows
 * which transport runs. */
#include "internal.h"

int cons__transport_init(struct cons *c, char *errmsg)
{
    c->transport.version = 1; /* raft_uv_tcp_init refuses a transport without a version */
    int rv = raft_uv_tcp_init(&c->transport, c->loop);
    if (rv != 0)
        return base_errf(errmsg, BASE_EINVAL, "raft transport: %s", raft_strerror(rv));
    return 0;
}

void cons__transport_close(struct cons *c)
{
    raft_uv_tcp_close(&c->transport);
}
