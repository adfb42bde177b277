/* gossip/stream.c: the engine's TCP side (swim.c's note): push-pull exchanges (periodic,
 * joins, serf's reconnects), memberlist's TCP fallback ping, and stream messages from peers
 * (push-pull, ping, reliable user messages). Each connection is finished in conn_finish only;
 * inbound ones are capped per source and in all, every stream by size and time. */
#include "gossip/swim.h"

#include <errno.h>

/* ---- TCP: push-pull, joins, stream messages ------------------------------------------------ */

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct gossip *g = c->g;
    g->handles--;
    if (--c->open == 0) {
        base_buf_free(&c->in);
        base_free(c->ping_node);
        base_free(c);
    }
    gossip__maybe_free(g);
}

void gossip__join_op_done(struct join_op *op, bool ok, int err)
{
    if (ok)
        op->joined++;
    else if (err)
        op->err = err;
    if (--op->pending == 0) {
        if (op->cb)
            op->cb(op->ctx, op->joined, op->joined ? 0 : (op->err ? op->err : BASE_EINVAL));
        base_free(op);
    }
}

/* The one place a connection ends. */
void gossip__conn_finish(struct conn *c, int err)
{
    if (c->done)
        return;
    c->done = true;
    struct gossip *g = c->g;
    base_list_remove(&c->link);
    if (c->kind == CONN_ACCEPT)
        g->n_in_conns--;
    if (err && err != UV_EOF)
        LOG_DEBUG(MOD, "%s: stream ended: %s", g->name, base_strerror(err));
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
    if (c->op) {
        struct join_op *op = c->op;
        c->op = NULL;
        gossip__join_op_done(op, err == 0, err);
    }
}

static void on_conn_timeout(uv_timer_t *t)
{
    gossip__conn_finish(t->data, UV_ETIMEDOUT);
}

static struct conn *conn_new(struct gossip *g, enum conn_kind kind)
{
    struct conn *c = base_calloc(1, sizeof(*c));
    c->g = g;
    c->kind = kind;
    base_buf_init(&c->in);
    uv_tcp_init(g->loop, &c->tcp);
    uv_timer_init(g->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open = 2;
    g->handles += 2;
    base_list_insert_tail(&g->conns, &c->link);
    uv_timer_start(&c->timer, on_conn_timeout, g->cfg.tcp_timeout_ms, 0);
    return c;
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = req->data;
    struct conn *c = w->c;
    base_free(w->data);
    base_free(w);
    if (c->done)
        return;
    c->writes--;
    if (status < 0)
        gossip__conn_finish(c, status);
    else if (c->finish_after_write && c->writes == 0)
        gossip__conn_finish(c, 0);
}

/* Writes one stream message (encrypted when we have a key). */
static void conn_write(struct conn *c, const struct base_buf *msg)
{
    struct gossip *g = c->g;
    struct base_buf b;
    base_buf_init(&b);
    if (g->keys.n) {
        uint8_t nonce[12];
        if (uv_random(NULL, NULL, nonce, sizeof(nonce), 0, NULL) != 0) {
            base_buf_free(&b);
            gossip__conn_finish(c, UV_EIO);
            return;
        }
        gossip__encrypt_stream(&b, g->keys.keys[0].key, g->keys.keys[0].len, nonce, msg->data,
                               msg->len);
    } else {
        base_buf_append(&b, msg->data, msg->len);
    }
    struct write_req *w = base_calloc(1, sizeof(*w));
    w->c = c;
    w->data = b.data;
    w->req.data = w;
    uv_buf_t ub = uv_buf_init((char *)b.data, (unsigned)b.len);
    c->writes++;
    int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, on_write);
    if (rv < 0) {
        c->writes--;
        base_free(w->data);
        base_free(w);
        gossip__conn_finish(c, rv);
    }
}

/* Our push-pull: memberlist's nodes and serf's state, LZW-compressed as memberlist's
 * EnableCompression does (the field names repeated per node shrink it by about half: push-pull
 * is most of a large pool's idle bandwidth), unless compressing makes it no smaller. */
static void local_state_plain(struct gossip *g, bool join, struct base_buf *out);
static void local_state(struct gossip *g, bool join, struct base_buf *out)
{
    struct base_buf plain, z;
    base_buf_init(&plain);
    base_buf_init(&z);
    local_state_plain(g, join, &plain);
    gossip__compress_encode(&z, plain.data, plain.len);
    if (z.len < plain.len)
        base_buf_append(out, z.data, z.len);
    else
        base_buf_append(out, plain.data, plain.len);
    base_buf_free(&plain);
    base_buf_free(&z);
}

static void local_state_plain(struct gossip *g, bool join, struct base_buf *out)
{
    struct base_buf us;
    base_buf_init(&us);
    struct gossip_serf_push_pull spp = {
        .ltime = g->clock, .event_ltime = g->event_clock, .query_ltime = g->query_clock};
    spp.status = base_calloc(g->n_sm + 1, sizeof(*spp.status));
    spp.left = base_calloc(g->n_sm + 1, sizeof(*spp.left));
    for (size_t i = 0; i < g->n_sm; i++) {
        spp.status[spp.n_status++] =
            (struct gossip_serf_status){g->sm[i]->name, g->sm[i]->status_ltime};
        if (g->sm[i]->status == GOSSIP_MEMBER_LEFT)
            spp.left[spp.n_left++] = g->sm[i]->name;
    }
    size_t slots = 0;
    for (size_t i = 0; i < RING; i++)
        slots += g->ring[i].n > 0;
    spp.events = base_calloc(slots + 1, sizeof(*spp.events));
    struct gossip_serf_event *evs = base_calloc(slots * RING_SLOT_MAX + 1, sizeof(*evs));
    size_t ne = 0;
    for (size_t i = 0; i < RING; i++) {
        const struct ring_slot *s = &g->ring[i];
        if (!s->n)
            continue;
        struct gossip_serf_events *e = &spp.events[spp.n_events++];
        e->ltime = s->ltime;
        e->events = evs + ne;
        for (size_t k = 0; k < s->n; k++)
            evs[ne++] = (struct gossip_serf_event){s->ev[k].name, {s->ev[k].payload, s->ev[k].len}};
        e->n = s->n;
    }
    struct gossip_serf_msg sm = {.type = GOSSIP_SERF_PUSH_PULL};
    sm.u.push_pull = spp;
    gossip__serf_encode(&us, &sm);

    struct gossip_push_node *nodes = base_calloc(g->mt.n + 1, sizeof(*nodes));
    for (size_t i = 0; i < g->mt.n; i++) {
        const struct gossip_member *m = g->mt.v[i];
        nodes[i] = (struct gossip_push_node){.name = m->name,
                                             .addr = {m->addr, m->addr_len},
                                             .port = m->port,
                                             .meta = {m->meta, m->meta_len},
                                             .incarnation = m->incarnation,
                                             .state = m->state,
                                             .has_vsn = true};
        memcpy(nodes[i].vsn, m->vsn, GOSSIP_VSN_LEN);
    }
    struct gossip_msg msg = {.type = GOSSIP_PUSH_PULL};
    msg.u.push_pull = (struct gossip_push_pull){join, g->mt.n, nodes, {us.data, us.len}};
    gossip__msg_encode(out, &msg);
    base_free(nodes);
    base_free(evs);
    base_free(spp.events);
    base_free(spp.status);
    base_free(spp.left);
    base_buf_free(&us);
}

static int merge_remote(struct gossip *g, const struct gossip_push_pull *pp, bool ignore_old)
{
    /* a state larger than our member cap is not a pool we can hold: refused whole, which also
     * bounds the work of the merges below (each is linear in the table) */
    if (pp->n_nodes > g->cfg.max_members) {
        g->st.tcp_bad++;
        LOG_DEBUG(MOD, "%s: push-pull of %zu nodes refused", g->name, pp->n_nodes);
        return BASE_ETOOBIG;
    }
    int rv = gossip__merge_check(g, pp->nodes, pp->n_nodes, "push-pull");
    if (rv != 0)
        return rv;
    gossip__members_merge(&g->mt, pp->nodes, pp->n_nodes, now_ms(g), gossip__on_fx, g);
    if (pp->user_state.n) {
        struct base_arena a;
        base_arena_init(&a);
        struct gossip_serf_msg m;
        if (gossip__serf_decode(pp->user_state.p, pp->user_state.n, &a, &m) == 0 &&
            m.type == GOSSIP_SERF_PUSH_PULL && m.u.push_pull.n_status <= g->cfg.max_members &&
            m.u.push_pull.n_left <= g->cfg.max_members)
            gossip__serf_merge(g, &m.u.push_pull, ignore_old);
        else
            g->st.tcp_bad++;
        base_arena_close(&a);
    }
    gossip__rearm_susp(g);
    return 0;
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    BASE_UNUSED(suggested);
    struct conn *c = h->data;
    size_t room = c->g->cfg.max_stream + 1 - c->in.len;
    if (room > 65536)
        room = 65536;
    base_buf_reserve(&c->in, room);
    *buf = uv_buf_init((char *)c->in.data + c->in.len, (unsigned)room);
}

static void conn_message(struct conn *c, const struct gossip_msg *m)
{
    struct gossip *g = c->g;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (c->kind == CONN_PING) {
        /* memberlist's TCP fallback probe: an ack over the stream is as good as over UDP */
        if (m->type == GOSSIP_ACK && m->u.ack.seq == c->ping_seq && g->probe.phase != PROBE_IDLE &&
            g->probe.seq == c->ping_seq) {
            LOG_DEBUG(MOD, "%s: %s answered over TCP only", g->name, c->ping_node);
            gossip__probe_ack(g);
        }
        gossip__conn_finish(c, 0);
        return;
    }
    if (c->kind == CONN_PUSH_PULL) {
        if (m->type != GOSSIP_PUSH_PULL) {
            g->st.tcp_bad++;
            gossip__conn_finish(c, BASE_EPARSE);
            return;
        }
        gossip__conn_finish(c, merge_remote(g, &m->u.push_pull, c->op != NULL));
        return;
    }
    struct base_buf out;
    base_buf_init(&out);
    switch (m->type) {
    case GOSSIP_PUSH_PULL:
        local_state(g, m->u.push_pull.join, &out);
        c->finish_after_write = true;
        conn_write(c, &out);
        merge_remote(g, &m->u.push_pull, false);
        break;
    case GOSSIP_PING: {
        if (m->u.ping.node[0] && !is_self(g, m->u.ping.node)) {
            gossip__conn_finish(c, 0);
            break;
        }
        struct gossip_msg ack = {.type = GOSSIP_ACK};
        ack.u.ack.seq = m->u.ping.seq;
        gossip__msg_encode(&out, &ack);
        c->finish_after_write = true;
        conn_write(c, &out);
        break;
    }
    case GOSSIP_USER:
        gossip__serf_handle(g, m->u.user.p, m->u.user.n, true);
        gossip__conn_finish(c, 0);
        break;
    default:
        g->st.tcp_bad++;
        gossip__conn_finish(c, BASE_EPARSE);
        break;
    }
    base_buf_free(&out);
}

/* Decodes what has arrived: true when the connection is finished or the message handled,
 * false when more bytes are needed. */
static bool conn_try(struct conn *c)
{
    struct gossip *g = c->g;
    c->tried = c->in.len;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_msg m;
    bool enc = false;
    size_t used = 0;
    int rv = gossip__stream_decode(c->in.data, c->in.len, g->cfg.max_stream, &g->keys, &a, &m, &enc,
                                   &used);
    bool over = true;
    if (rv == -EAGAIN) {
        over = false;
    } else if (rv != 0) {
        g->st.tcp_bad++;
        if (rv == BASE_EACL)
            gossip__warn_key(g, (const struct sockaddr *)&c->peer,
                             "no installed key could decrypt a stream");
        else
            LOG_DEBUG(MOD, "%s: stream refused: %s", g->name, base_strerror(rv));
        gossip__conn_finish(c, rv);
    } else if (g->keys.n && !enc) {
        g->st.tcp_bad++; /* memberlist refuses plain state when it has a key */
        gossip__warn_key(g, (const struct sockaddr *)&c->peer,
                         "an unencrypted stream was refused (a key is installed)");
        gossip__conn_finish(c, BASE_EACL);
    } else {
        conn_message(c, &m);
    }
    base_arena_close(&a);
    return over;
}

/* The decoder is not incremental: it reads a message from its first byte each time. So it runs
 * once the socket is drained (a read that did not fill its buffer, or libuv's nread 0 for
 * EAGAIN) or closed, not after every full chunk: a large push-pull arriving in many reads is
 * decoded a few times, not once per 64 KiB. */
static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    struct gossip *g = c->g;
    if (c->done)
        return;
    if (nread > 0) {
        c->in.len += (size_t)nread;
        if (c->in.len > g->cfg.max_stream) {
            g->st.tcp_bad++;
            gossip__conn_finish(c, BASE_ETOOBIG);
            return;
        }
        /* a full buffer: more may be waiting and libuv reads on (nread 0 once drained, but
         * not when its loop of 32 reads ends first); so a try at each doubling too */
        if ((size_t)nread == buf->len && c->in.len < 2 * c->tried + 65536)
            return;
    }
    if (c->in.len > c->tried && conn_try(c))
        return;
    if (nread < 0) /* closed (or failed) before a whole message */
        gossip__conn_finish(c, nread == UV_EOF ? BASE_EPARSE : (int)nread);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->done)
        return;
    if (status < 0) {
        gossip__conn_finish(c, status);
        return;
    }
    struct base_buf b;
    base_buf_init(&b);
    if (c->kind == CONN_PING) {
        struct gossip_msg ping = {.type = GOSSIP_PING};
        ping.u.ping.seq = c->ping_seq;
        ping.u.ping.node = c->ping_node;
        self_addr_fields(c->g, &ping.u.ping.source_addr, &ping.u.ping.source_port,
                         &ping.u.ping.source_node);
        gossip__msg_encode(&b, &ping);
    } else {
        local_state(c->g, c->join, &b);
    }
    conn_write(c, &b);
    base_buf_free(&b);
    if (!c->done)
        uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
}

static int conn_dial_kind(struct gossip *g, const struct sockaddr_storage *to, bool join,
                          struct join_op *op, enum conn_kind kind, struct conn **out)
{
    if (g->stopping)
        return BASE_ESHUTDOWN;
    struct conn *c = conn_new(g, kind);
    if (out)
        *out = c;
    c->join = join;
    c->peer = *to;
    c->connect.data = c;
    g->st.tcp_out++;
    /* from our bind address when it names one (as our UDP does), so the peer sees the
     * address it knows us by, in its logs and in its address-based rules */
    const struct sockaddr_storage *from = &g->bind_from;
    if (from->ss_family == to->ss_family &&
        (from->ss_family == AF_INET
             ? ((const struct sockaddr_in *)from)->sin_addr.s_addr != htonl(INADDR_ANY)
             : !IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)from)->sin6_addr)))
        uv_tcp_bind(&c->tcp, (const struct sockaddr *)from, 0);
    int rv = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)to, on_connect);
    if (rv < 0) {
        gossip__conn_finish(c, rv);
        return rv;
    }
    c->op = op;
    return 0;
}

int gossip__conn_dial(struct gossip *g, const struct sockaddr_storage *to, bool join,
                      struct join_op *op)
{
    return conn_dial_kind(g, to, join, op, CONN_PUSH_PULL, NULL);
}

/* memberlist's TCP fallback ping, sent with the indirect probes to a member whose protocol
 * has it (PMax >= 3): it tells a UDP-only fault from a dead member. Ends by the probe's end. */
void gossip__probe_tcp(struct gossip *g, const struct gossip_member *target, uint64_t ms)
{
    struct sockaddr_storage ss;
    struct conn *c = NULL;
    if (target->vsn[1] < 3 || !member_sockaddr(target, &ss))
        return;
    if (conn_dial_kind(g, &ss, false, NULL, CONN_PING, &c) != 0 || c->done)
        return;
    c->ping_seq = g->probe.seq;
    c->ping_node = base_strdup(target->name);
    uv_timer_start(&c->timer, on_conn_timeout, ms ? ms : 1, 0);
}

void gossip__on_connection(uv_stream_t *s, int status)
{
    struct gossip *g = s->data;
    if (status < 0 || g->stopping)
        return;
    struct conn *c = conn_new(g, CONN_ACCEPT);
    g->n_in_conns++;
    g->st.tcp_in++;
    if (uv_accept(s, (uv_stream_t *)&c->tcp) != 0) {
        gossip__conn_finish(c, UV_EIO);
        return;
    }
    int len = sizeof(c->peer);
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len);
    size_t same = 0;
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &g->conns)
    {
        const struct conn *o = BASE_CONTAINER_OF(pos, struct conn, link);
        if (o != c && o->kind == CONN_ACCEPT && same_host(&o->peer, &c->peer))
            same++;
    }
    if (g->n_in_conns > g->cfg.max_conns || same >= g->cfg.max_conns_per_source) {
        g->st.tcp_refused++;
        gossip__conn_finish(c, BASE_ETOOBIG);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
}
