/* Consensus on the server port (rpc/): our raft_uv_transport over rpc streams, the server
 * RPC methods consensus serves, and who counts as a member.
 *
 * The transport. libraft's uv io dials its peers through transport->connect: we dial an rpc
 * stream to the peer's id (rpc_dial_stream: the handshake, the key proof, the per-peer
 * backoff and the silent-peer bound are the rpc's), its handle allocated with raft_malloc
 * because libraft frees the streams it is given with raft_free. Streams to us arrive through
 * rpc_set_streams and go to raft_stream.c, which decodes and checks every message before
 * libraft sees it (libraft's own reader, the accept callback it gives to listen(), never
 * runs); until libraft gave that callback (the server is still forming, Raft not started)
 * they are closed and the peer's raft_uv retries later. The listener is the rpc's (bound
 * before consensus starts), so init only records who we are.
 *
 * Timing of our connections (cons__port_open sets it from the heartbeat; why: failover.c's
 * "Silent peers"): a Raft stream's dial is bounded by cons__connect_ms (4 heartbeats), data
 * unacknowledged on any of our connections by cons__silent_ms (10 heartbeats; both at least
 * 200 ms) (rpc_link.dial_timeout_ms, user_timeout_ms: TCP_USER_TIMEOUT), and a failed server is
 * redialed after 50 ms doubling to 250 ms (streams and our RPC client alike; libraft adds its
 * 100 ms connect retry delay on top), so that a server cut off by a partition notices its
 * dead connections within a few heartbeats and, once the partition heals, is connected again
 * well within a second. RPC dials keep the rpc's default 2 s bound (a JOIN or a forwarded
 * write has its own longer timeout).
 *
 * Authorization. A Raft stream is accepted only from a server in the current configuration
 * (its sender id) and, without a key, only from that member's own address (source IP = the IP
 * of its configured address; names never match, so keyless clusters advertise IPs). A server
 * whose configuration is still empty (new, or wiped, waiting for the leader to add and catch
 * it up) cannot tell the leader from anyone else and accepts any stream that passed the
 * handshake. RPC: with a key every authenticated peer is a cluster server and may ask
 * anything; without one, FORWARD (writes), REMOVE and READ_INDEX come only from a member's
 * address, JOIN from a member's address (a relay) or from join_allow (-join-allow; default
 * loopback), and HELLO from anyone, but a forming server merges a HELLO only from the address
 * it claims, and only when that address is known to it or in join_allow (form.c's
 * form_trusts). Client agents (no Raft, replica.c) FOLLOW the committed entries, FORWARD
 * writes and ask READ_INDEX: with a key every authenticated peer may; without one a member's
 * address, or a source address client_allowed accepts (cons_config.client_allowed; default
 * none), and such a peer may send those methods' frames over the non-member frame cap
 * (a forwarded write carries up to an entry's worth). A server whose configuration is so stale that
 * it does not list the current leader (it was down while that leader joined) refuses the leader's
 * streams and is not caught up; wipe its data dir and it joins again as a new server. A server
 * still waiting to be added accepts Raft from any key holder (without a key: from anyone), and a
 * removed server that still has the key can still connect (only members' Raft streams are accepted,
 * but RPC is open to key holders).
 *
 * Methods. consensus's request types and their handlers are the table `methods` below: a new
 * one is a row there and an enum value in internal.h.
 *
 * Closing. libraft's io closes the transport inside raft_close: pending dials are cancelled
 * (libraft's connect callbacks get RAFT_CANCELED) and the close callback runs once the last
 * of them delivered; only then does cons.c free the transport (cons__transport_close). */
#include "internal.h"

#include <inttypes.h>
#include <string.h>

#define LINK_BOUND_MIN_MS   200
#define LINK_BACKOFF_MIN_MS 50
#define LINK_BACKOFF_MAX_MS 250

struct tp_dial {
    struct base_list link; /* tp->dials, newest first */
    struct tp *tp;
    struct raft_uv_connect *req;
    struct rpc_dial *d;
};

struct tp {
    struct cons *c;
    raft_uv_accept_cb accept_cb;
    struct base_list dials; /* struct tp_dial */
    bool closing;
    raft_uv_transport_close_cb close_cb;
};

/* ---- members --------------------------------------------------------------------------- */

bool cons__peer_is_member(struct cons *c, const struct rpc_peer *p)
{
    if (p->keyed)
        return true;
    if (!c->raft_started)
        return false;
    const struct raft_configuration *conf = &c->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id != c->id && rpc_peer_at(p, conf->servers[i].address))
            return true;
    return false;
}

static bool is_member(void *data, const struct rpc_peer *p)
{
    return cons__peer_is_member(data, p);
}

bool cons__join_allowed(struct cons *c, const struct sockaddr_storage *sa)
{
    return c->join_allowed ? c->join_allowed(c->join_allowed_data, (const struct sockaddr *)sa)
                           : rpc_is_loopback(sa);
}

static bool join_allow(void *data, const struct rpc_peer *p)
{
    return cons__join_allowed(data, &p->sa);
}

bool cons__client_allowed(struct cons *c, const struct sockaddr_storage *sa)
{
    /* NULL: nobody (not loopback, unlike join_allowed): every 127/8 address is loopback, and
     * an outsider there must not forward writes (tests/integration/test_server_port_auth) */
    return c->client_allowed &&
           c->client_allowed(c->client_allowed_data, (const struct sockaddr *)sa);
}

static bool client_allow(void *data, const struct rpc_peer *p)
{
    return cons__client_allowed(data, &p->sa);
}

/* ---- streams to us --------------------------------------------------------------------- */

/* Why a Raft stream from p is refused (NULL: accepted). *address: the member's configured
 * address (libraft learns the leader's address from its messages: the configuration's, not
 * whatever the handshake claimed). */
static const char *raft_refusal(struct cons *c, const struct rpc_peer *p, const char **address)
{
    const struct raft_configuration *conf = &c->raft.configuration;
    *address = p->address;
    if (conf->n == 0)
        return NULL;
    for (unsigned i = 0; i < conf->n; i++) {
        if (conf->servers[i].id != p->id)
            continue;
        if (!p->keyed && !rpc_peer_at(p, conf->servers[i].address))
            return "raft stream for a member from another address (set encrypt)";
        *address = conf->servers[i].address;
        return NULL;
    }
    return "raft stream from an id not in the configuration";
}

static bool on_stream(void *data, uv_tcp_t *tcp, const struct rpc_peer *p, const char **why)
{
    struct cons *c = data;
    struct tp *tp = c->transport.impl;
    const char *address;
    if (c->stopping || !tp || tp->closing || !tp->accept_cb)
        return false; /* Raft not started yet (still forming): the peer connects again later */
    if ((*why = raft_refusal(c, p, &address)) != NULL)
        return false;
    LOG_DEBUG("consensus", "raft connection from id=%" PRIu64 " address=%s%s", p->id, address,
              p->keyed ? " (key proved)" : "");
    cons__wire_accept(c, p->id, address, tcp);
    return true;
}

/* ---- the raft_uv_transport ------------------------------------------------------------- */

static void tp_maybe_closed(struct tp *tp)
{
    if (!tp->closing || !tp->close_cb || !base_list_empty(&tp->dials))
        return;
    raft_uv_transport_close_cb cb = tp->close_cb;
    tp->close_cb = NULL;
    cb(&tp->c->transport);
}

static void *tcp_alloc(size_t n)
{
    return raft_malloc(n);
}

static void tcp_free(void *p)
{
    raft_free(p);
}

static void tp_dial_cb(void *data, uv_tcp_t *tcp, int status)
{
    struct tp_dial *td = data;
    struct tp *tp = td->tp;
    base_list_remove(&td->link);
    struct raft_uv_connect *req = td->req;
    base_free(td);
    int st = tcp ? 0 : status == UV_ECANCELED ? RAFT_CANCELED : RAFT_NOCONNECTION;
    req->cb(req, (uv_stream_t *)tcp, st);
    tp_maybe_closed(tp);
}

static int tp_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct tp *tp = t->impl;
    BASE_UNUSED(address);
    assert(id == rpc_id(tp->c->rpc));
    return 0;
}

static int tp_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct tp *tp = t->impl;
    tp->accept_cb = cb;
    return 0;
}

static int tp_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                      const char *address, raft_uv_connect_cb cb)
{
    struct tp *tp = t->impl;
    struct cons *c = tp->c;
    assert(!tp->closing);
    req->cb = cb;
    struct tp_dial *td = base_calloc(1, sizeof *td);
    td->tp = tp;
    td->req = req;
    base_list_insert_head(&tp->dials, &td->link);
    struct rpc_stream_dial sd = {
        .to = id,
        .address = address,
        .link = &c->stream_link,
        .alloc = tcp_alloc,
        .free = tcp_free,
        .cb = tp_dial_cb,
        .data = td,
    };
    td->d = rpc_dial_stream(c->rpc, &sd);
    return 0;
}

static void tp_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct tp *tp = t->impl;
    assert(!tp->closing);
    tp->closing = true;
    tp->close_cb = cb;
    struct base_list *pos, *tmp;
    /* safe walk: a cancel may end the dial (and free it) at once */
    BASE_LIST_FOREACH_SAFE(pos, tmp, &tp->dials)
    {
        rpc_dial_cancel(BASE_CONTAINER_OF(pos, struct tp_dial, link)->d);
    }
    tp_maybe_closed(tp);
}

int cons__transport_init(struct cons *c, char *errmsg)
{
    BASE_UNUSED(errmsg);
    struct tp *tp = base_calloc(1, sizeof *tp);
    tp->c = c;
    base_list_init(&tp->dials);
    memset(&c->transport, 0, sizeof c->transport);
    c->transport.version = 1;
    c->transport.impl = tp;
    c->transport.init = tp_init;
    c->transport.listen = tp_listen;
    c->transport.connect = tp_connect;
    c->transport.close = tp_close;
    return 0;
}

void cons__transport_close(struct cons *c)
{
    struct tp *tp = c->transport.impl;
    if (!tp)
        return;
    assert(base_list_empty(&tp->dials));
    base_free(tp);
    c->transport.impl = NULL;
}

/* ---- the server port: methods, members, streams ---------------------------------------- */

static void serve_hello(void *data, struct rpc_req *req, const uint8_t *body, size_t len)
{
    cons__hello_serve(data, req, body, len);
}

static void serve_forward(void *data, struct rpc_req *req, const uint8_t *body, size_t len)
{
    cons__forward_serve(data, req, body, len);
}

static void serve_read_index(void *data, struct rpc_req *req, const uint8_t *body, size_t len)
{
    cons__read_serve(data, req, body, len);
}

static void serve_follow(void *data, struct rpc_req *req, const uint8_t *body, size_t len)
{
    cons__follow_serve(data, req, body, len);
}

static void serve_join(void *data, struct rpc_req *req, const uint8_t *body, size_t len)
{
    cons__join_serve(data, req, body, len);
}

static void serve_remove(void *data, struct rpc_req *req, const uint8_t *body, size_t len)
{
    cons__remove_serve(data, req, body, len);
}

/* What follows BASE_EACL in a refusal: the shape each caller reads (a message, a count, an
 * index). */
enum refusal { REFUSAL_NONE, REFUSAL_MESSAGE, REFUSAL_COUNT, REFUSAL_INDEX };

/* Who besides members may ask without the key. */
enum allow { ALLOW_MEMBERS, ALLOW_JOIN, ALLOW_CLIENT };

/* consensus's request types: the one place to add one. */
static const struct {
    uint8_t type;
    const char *name;
    enum rpc_access access;
    enum allow allow; /* also from join_allow's or client_allowed's addresses without the key */
    const char *refused;
    enum refusal refusal;
    rpc_serve_cb serve;
} methods[] = {
    {CONS_RPC_HELLO, "HELLO", RPC_ANYONE, ALLOW_MEMBERS, NULL, REFUSAL_NONE, serve_hello},
    {CONS_RPC_FORWARD, "FORWARD", RPC_MEMBERS, ALLOW_CLIENT,
     "forwarded write from a non-member address", REFUSAL_COUNT, serve_forward},
    {CONS_RPC_READ_INDEX, "READ_INDEX", RPC_MEMBERS, ALLOW_CLIENT,
     "request from a non-member address", REFUSAL_INDEX, serve_read_index},
    {CONS_RPC_JOIN, "JOIN", RPC_MEMBERS, ALLOW_JOIN,
     "JOIN from an address not in join_allow (set encrypt, or list it)", REFUSAL_MESSAGE,
     serve_join},
    {CONS_RPC_REMOVE, "REMOVE", RPC_MEMBERS, ALLOW_MEMBERS, "REMOVE from a non-member address",
     REFUSAL_MESSAGE, serve_remove},
    {CONS_RPC_FOLLOW, "FOLLOW", RPC_MEMBERS, ALLOW_CLIENT,
     "FOLLOW from an address not in client_allowed (set encrypt, or allow it)", REFUSAL_NONE,
     serve_follow},
};

void cons__port_open(struct cons *c)
{
    struct rpc *r = c->rpc;
    if (!c->is_client) { /* a client serves nothing: its rpc answers requests BASE_EINVAL */
        rpc_set_members(r, is_member, c);
        rpc_set_streams(r, on_stream, c);
    }
    for (size_t i = 0; !c->is_client && i < BASE_ARRAY_LEN(methods); i++) {
        struct base_buf refusal;
        base_buf_init(&refusal);
        if (methods[i].refusal == REFUSAL_MESSAGE)
            base_buf_put_str(&refusal, "refused: not authorized on the server port");
        else if (methods[i].refusal == REFUSAL_COUNT)
            base_buf_put_u32(&refusal, 0);
        else if (methods[i].refusal == REFUSAL_INDEX)
            base_buf_put_u64(&refusal, 0);
        struct rpc_method m = {
            .type = methods[i].type,
            .name = methods[i].name,
            .access = methods[i].access,
            .allow = methods[i].allow == ALLOW_JOIN     ? join_allow
                     : methods[i].allow == ALLOW_CLIENT ? client_allow
                                                        : NULL,
            .refused = methods[i].refused,
            .refusal = refusal.data,
            .refusal_len = refusal.len,
            .serve = methods[i].serve,
            .data = c,
        };
        rpc_handle(r, &m);
        base_buf_free(&refusal);
    }
    unsigned dial = cons__connect_ms(c), silent = cons__silent_ms(c);
    dial = dial < LINK_BOUND_MIN_MS ? LINK_BOUND_MIN_MS : dial;
    silent = silent < LINK_BOUND_MIN_MS ? LINK_BOUND_MIN_MS : silent;
    c->stream_link = (struct rpc_link){
        .dial_timeout_ms = dial,
        .user_timeout_ms = silent,
        .backoff_min_ms = LINK_BACKOFF_MIN_MS,
        .backoff_max_ms = LINK_BACKOFF_MAX_MS,
    };
    /* our calls go to servers too: the same silent-peer bound and redial backoff (a write
     * forwarded right after a partition heals is not refused for seconds of backoff) */
    struct rpc_client_config cc = {.link = {.user_timeout_ms = silent,
                                            .backoff_min_ms = LINK_BACKOFF_MIN_MS,
                                            .backoff_max_ms = LINK_BACKOFF_MAX_MS}};
    c->client = rpc_client_new(r, &cc);
}

void cons__port_close(struct cons *c)
{
    struct rpc *r = c->rpc;
    if (!c->client)
        return;
    if (!c->is_client) {
        for (size_t i = 0; i < BASE_ARRAY_LEN(methods); i++)
            rpc_unhandle(r, methods[i].type);
        rpc_set_streams(r, NULL, NULL);
        rpc_set_members(r, NULL, NULL);
    }
    rpc_client_close(c->client); /* fails every call: sent ones RPC_LOST */
    c->client = NULL;
}
