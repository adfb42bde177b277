/* gossip/query.c: serf's queries in the engine (serf/query.go, serf/internal_query.go,
 * serf/keymanager.go), for the keyring (gossip.h's "Keyring").
 *
 * Answering. serf_state.c's handle_query deduplicates every query, acks it when asked and
 * passes it on; a query that selects us and is one of serf's internal keyring queries comes
 * here: memberlist's keyring is changed (keyring.c), on_keyring is told so the caller can
 * persist it, and serf's nodeKeyResponse goes back in a query response, one UDP packet to the
 * address and port the query names (serf's SendToAddress). Other queries (user queries, serf's
 * _serf_ping and _serf_conflict) get no answer.
 *
 * Asking. gossip_keyring builds the query as serf's Query does (our query clock's time, a
 * random ID, our address, no filters, no acks, serf's default timeout), records it in the
 * query buffer as seen (so its echoes are not answered twice), answers it locally at once
 * without the network (serf answers its own query over UDP to itself), and queues it for
 * gossip. Responses are matched by Lamport time and ID and tallied per member (keyring.c). A
 * query ends when every member alive at its start has answered or at its timeout, on its
 * timer: the caller's callback always runs from that timer (or during gossip_stop), never from
 * inside gossip_keyring or a packet's handling.
 *
 * Ownership: query_finish is the one place a query ends (timer, last answer, stop); its timer
 * is closed there and the query freed in the close callback, which counts in g->handles.
 */
#include "gossip/swim.h"

#include <math.h>

#define QUERIES_MAX        16 /* our queries running at once */
#define QUERY_TIMEOUT_MULT 16 /* serf's QueryTimeoutMult */
#define KEY_LEN_MAX        64 /* raw bytes of a key we send (each member checks 16/24/32) */

struct query_op {
    struct base_list link;
    struct gossip *g;
    uv_timer_t timer;
    uint64_t ltime;
    uint32_t id;
    enum gossip_keyring_op op;
    gossip_keyring_cb cb;
    void *ctx;
    size_t num_nodes;
    struct gossip_key_tally tally;
    bool done;
};

/* ---- a member's answer (ours included) ------------------------------------------------------ */

/* Applies a keyring query's payload to our keyring and appends our nodeKeyResponse (its type
 * byte first) to out. */
static void keyring_answer(struct gossip *g, enum gossip_keyring_op op, const char *from,
                           const uint8_t *payload, size_t n, struct base_arena *a,
                           struct base_buf *out)
{
    struct gossip_serf_key_response resp;
    bool changed = gossip__keyring_answer(&g->keys, op, payload, n, a, &resp);
    LOG_INFO(MOD, "%s: %s-key query from %s", g->name, gossip_keyring_op_name(op), from);
    if (changed) {
        const char **keys;
        size_t nk;
        gossip_keyring_keys(g, a, &keys, &nk);
        LOG_INFO(MOD, "%s: keyring changed (%s): %zu keys", g->name, gossip_keyring_op_name(op),
                 nk);
        char why[256] = "";
        if (g->cfg.on_keyring && g->cfg.on_keyring(g->cfg.ctx, keys, nk, why, sizeof(why)) != 0) {
            why[sizeof(why) - 1] = 0;
            resp.result = false;
            resp.message = base_arena_strdup(a, why[0] ? why : "Failed to write keyring file");
        }
    }
    if (!resp.result)
        LOG_WARN(MOD, "%s: %s-key query from %s failed here: %s", g->name,
                 gossip_keyring_op_name(op), from, resp.message);
    struct gossip_serf_msg m = {.type = GOSSIP_SERF_KEY_RESPONSE};
    m.u.key_response = resp;
    gossip__serf_encode(out, &m);
}

void gossip__query_answer(struct gossip *g, const struct gossip_serf_query *q, struct base_arena *a)
{
    int op = gossip__keyring_query_op(q->name);
    struct sockaddr_storage to;
    if (op < 0 || g->stopping || !to_sockaddr(q->addr.p, q->addr.n, q->port, &to))
        return;
    struct base_buf payload, b;
    base_buf_init(&payload);
    base_buf_init(&b);
    keyring_answer(g, (enum gossip_keyring_op)op, q->source_node, q->payload.p, q->payload.n, a,
                   &payload);
    struct gossip_serf_msg r = {.type = GOSSIP_SERF_QUERY_RESPONSE};
    r.u.response = (struct gossip_serf_query_response){
        q->ltime, q->id, g->name, 0, {payload.data, payload.len}};
    base_buf_put_u8(&b, GOSSIP_USER);
    gossip__serf_encode(&b, &r);
    struct gossip_bytes part = {b.data, b.len};
    gossip__send_parts(g, (const struct sockaddr *)&to, NULL, &part, 1, false);
    base_buf_free(&payload);
    base_buf_free(&b);
}

/* ---- our queries ---------------------------------------------------------------------------- */

static void op_closed(uv_handle_t *h)
{
    struct query_op *op = h->data;
    struct gossip *g = op->g;
    gossip__key_tally_close(&op->tally);
    base_free(op);
    g->handles--;
    gossip__maybe_free(g);
}

static void query_finish(struct query_op *op, int status)
{
    if (op->done)
        return;
    op->done = true;
    struct gossip *g = op->g;
    base_list_remove(&op->link);
    g->n_queries--;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_keyring_result r;
    gossip__key_tally_result(&op->tally, op->num_nodes, &a, &r);
    if (status != 0) {
        r.status = status;
        r.error = base_strerror(status);
    }
    if (r.status == 0)
        LOG_INFO(MOD, "%s: keyring %s: %zu/%zu members answered", g->name,
                 gossip_keyring_op_name(op->op), r.num_resp, r.num_nodes);
    else
        LOG_WARN(MOD, "%s: keyring %s: %s", g->name, gossip_keyring_op_name(op->op), r.error);
    if (op->cb)
        op->cb(op->ctx, &r);
    base_arena_close(&a);
    uv_close((uv_handle_t *)&op->timer, op_closed);
}

static void on_query_timer(uv_timer_t *t)
{
    query_finish(t->data, 0);
}

static bool all_answered(const struct query_op *op)
{
    return op->tally.num_resp >= op->num_nodes;
}

void gossip__query_response(struct gossip *g, const struct gossip_serf_query_response *r)
{
    if (r->flags & GOSSIP_SERF_QUERY_ACK)
        return; /* we never ask for acks */
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &g->queries)
    {
        struct query_op *op = BASE_CONTAINER_OF(pos, struct query_op, link);
        if (op->ltime != r->ltime || op->id != r->id)
            continue;
        size_t cap = g->cfg.max_members ? g->cfg.max_members : SIZE_MAX;
        if (gossip__key_tally_add(&op->tally, r->from, r->payload.p, r->payload.n, cap) &&
            all_answered(op))
            uv_timer_start(&op->timer, on_query_timer, 0, 0); /* the callback off this stack */
        return;
    }
    LOG_DEBUG(MOD, "%s: a response from %s to no query of ours (ltime %llu)", g->name, r->from,
              (unsigned long long)r->ltime);
}

void gossip__queries_stop(struct gossip *g)
{
    while (!base_list_empty(&g->queries))
        query_finish(BASE_CONTAINER_OF(base_list_first(&g->queries), struct query_op, link),
                     BASE_ESHUTDOWN);
}

int gossip_keyring(struct gossip *g, enum gossip_keyring_op op, const char *key,
                   gossip_keyring_cb cb, void *ctx)
{
    BASE_ASSERT_LOOP();
    if (g->stopping)
        return BASE_ESHUTDOWN;
    if ((unsigned)op > GOSSIP_KEYRING_LIST)
        return BASE_EINVAL;
    struct base_arena a;
    base_arena_init(&a);
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    if (op != GOSSIP_KEYRING_LIST &&
        (!key || base_b64_decode(&a, key, &raw, &raw_len) != 0 || raw_len > KEY_LEN_MAX)) {
        base_arena_close(&a);
        return BASE_EINVAL;
    }
    if (g->n_queries >= QUERIES_MAX) {
        base_arena_close(&a);
        return BASE_ETOOBIG;
    }
    /* serf's NumMembers and DefaultQueryTimeout */
    size_t alive = 0;
    for (size_t i = 0; i < g->mt.n; i++)
        alive += live(g->mt.v[i]);
    uint64_t timeout_ms =
        g->cfg.gossip_interval_ms * QUERY_TIMEOUT_MULT * (uint64_t)ceil(log10((double)alive + 1.0));

    struct query_op *qo = base_calloc(1, sizeof(*qo));
    qo->g = g;
    qo->op = op;
    qo->cb = cb;
    qo->ctx = ctx;
    qo->num_nodes = alive;
    qo->ltime = g->query_clock;
    qo->id = (uint32_t)(rnd(g) & 0x7fffffff); /* serf: rand.Int31 */
    gossip__key_tally_init(&qo->tally);
    uv_timer_init(g->loop, &qo->timer);
    qo->timer.data = qo;
    g->handles++;
    base_list_insert_tail(&g->queries, &qo->link);
    g->n_queries++;

    struct base_buf payload, mine;
    base_buf_init(&payload);
    base_buf_init(&mine);
    gossip__key_request_encode(&payload, raw, raw_len);
    struct gossip_serf_msg m = {.type = GOSSIP_SERF_QUERY};
    struct gossip_serf_query *q = &m.u.query;
    self_addr_fields(g, &q->addr, &q->port, &q->source_node);
    q->ltime = qo->ltime;
    q->id = qo->id;
    q->timeout_ns = (int64_t)timeout_ms * 1000000;
    q->name = gossip__keyring_query_name(op);
    q->payload = (struct gossip_bytes){payload.data, payload.len};
    (void)gossip__query_seen(g, q->ltime, q->id);
    LOG_INFO(MOD, "%s: keyring %s across %zu members (timeout %llu ms)", g->name,
             gossip_keyring_op_name(op), alive, (unsigned long long)timeout_ms);
    /* our own answer first: a use-key's query then already goes out under the new key, as
     * every member has it installed */
    keyring_answer(g, op, g->name, payload.data, payload.len, &a, &mine);
    (void)gossip__key_tally_add(&qo->tally, g->name, mine.data, mine.len, SIZE_MAX);
    gossip__serf_queue(g, &m);
    uv_timer_start(&qo->timer, on_query_timer, all_answered(qo) ? 0 : timeout_ms, 0);
    base_buf_free(&payload);
    base_buf_free(&mine);
    base_arena_close(&a);
    return 0;
}

void gossip_keyring_keys(const struct gossip *g, struct base_arena *a, const char ***keys,
                         size_t *n)
{
    BASE_ASSERT_LOOP();
    *n = g->keys.n;
    *keys = NULL;
    if (!g->keys.n)
        return;
    const char **v = base_arena_alloc(a, g->keys.n * sizeof(*v));
    for (size_t i = 0; i < g->keys.n; i++)
        v[i] = base_b64_encode(a, g->keys.keys[i].key, g->keys.keys[i].len);
    *keys = v;
}
