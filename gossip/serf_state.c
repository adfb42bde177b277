/* gossip/serf_state.c: serf's state on top of memberlist's (swim.c's note, "serf on top"):
 * its member list (alive, leaving, left, failed, with the Lamport time of the last intent),
 * join and leave intents (buffered for members not known yet), its three Lamport clocks, the
 * user-event ring that deduplicates events, and the merge of a push-pull's serf state. */
#include "gossip/swim.h"

/* ---- serf's member list ------------------------------------------------------------------- */

static struct smember *sm_find(const struct gossip *g, const char *name, size_t *idx)
{
    for (size_t i = 0; i < g->n_sm; i++)
        if (strcmp(g->sm[i]->name, name) == 0) {
            if (idx)
                *idx = i;
            return g->sm[i];
        }
    return NULL;
}

static void sm_copy(struct smember *s, const struct gossip_member *m)
{
    memcpy(s->addr, m->addr, sizeof(s->addr));
    s->addr_len = m->addr_len;
    s->port = m->port;
    memcpy(s->meta, m->meta, m->meta_len);
    s->meta_len = m->meta_len;
    memcpy(s->vsn, m->vsn, GOSSIP_VSN_LEN);
    s->incarnation = m->incarnation;
}

void gossip__node_fill(const struct smember *s, struct base_arena *a, struct gossip_node *n)
{
    memset(n, 0, sizeof(*n));
    n->name = s->name;
    addr_text(s->addr, s->addr_len, n->addr);
    n->port = s->port;
    n->status = s->status;
    n->incarnation = s->incarnation;
    memcpy(n->vsn, s->vsn, sizeof(n->vsn));
    struct gossip_tag *tags = NULL;
    size_t nt = 0;
    if (s->meta_len && gossip__tags_decode(s->meta, s->meta_len, a, &tags, &nt) == 0) {
        n->tags = tags;
        n->n_tags = nt;
    }
}

static void emit_member(struct gossip *g, enum gossip_event_kind kind, const struct smember *s)
{
    if (kind != GOSSIP_EVENT_UPDATE)
        LOG_INFO(MOD, "%s: member %s %s", g->name, s->name, gossip_event_name(kind));
    if (!g->cfg.on_event || g->stopping)
        return;
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_node n;
    gossip__node_fill(s, &a, &n);
    struct gossip_event ev = {.kind = kind, .node = &n};
    g->cfg.on_event(g->cfg.ctx, &ev);
    base_arena_close(&a);
}

static struct intent *intent_find(struct gossip *g, const char *name)
{
    for (size_t i = 0; i < g->n_intents; i++)
        if (strcmp(g->intents[i].name, name) == 0)
            return &g->intents[i];
    return NULL;
}

void gossip__intent_drop(struct gossip *g, size_t i)
{
    base_free(g->intents[i].name);
    g->intents[i] = g->intents[--g->n_intents];
}

/* serf's upsertIntent: keeps the newest intent about a member not known yet. */
static bool intent_upsert(struct gossip *g, const char *name, uint8_t type, uint64_t ltime)
{
    struct intent *it = intent_find(g, name);
    if (it) {
        if (ltime <= it->ltime)
            return false;
    } else {
        if (g->n_intents >= INTENTS_MAX)
            return false;
        if (!g->intents)
            g->intents = base_calloc(INTENTS_MAX, sizeof(*g->intents));
        it = &g->intents[g->n_intents++];
        it->name = base_strdup(name);
    }
    it->type = type;
    it->ltime = ltime;
    it->when_ms = now_ms(g);
    return true;
}

void gossip__sm_join(struct gossip *g, const struct gossip_member *m)
{
    struct smember *s = sm_find(g, m->name, NULL);
    if (!s) {
        /* serf keeps failed and left members for days, after memberlist has forgotten them:
         * at the cap the one gone longest is reaped early, else the newcomer is not listed */
        if (g->cfg.max_members && g->n_sm >= g->cfg.max_members) {
            size_t old = SIZE_MAX;
            for (size_t i = 0; i < g->n_sm; i++) {
                const struct smember *o = g->sm[i];
                if ((o->status == GOSSIP_MEMBER_FAILED || o->status == GOSSIP_MEMBER_LEFT) &&
                    (old == SIZE_MAX || o->leave_ms < g->sm[old]->leave_ms))
                    old = i;
            }
            if (old == SIZE_MAX)
                return;
            gossip__sm_remove(g, old);
        }
        if (g->n_sm == g->cap_sm) {
            g->cap_sm = g->cap_sm ? 2 * g->cap_sm : 16;
            g->sm = base_realloc(g->sm, g->cap_sm * sizeof(*g->sm));
        }
        s = base_calloc(1, sizeof(*s));
        s->name = base_strdup(m->name);
        g->sm[g->n_sm++] = s;
        s->status = GOSSIP_MEMBER_ALIVE;
        for (size_t i = 0; i < g->n_intents; i++) {
            struct intent *it = &g->intents[i];
            if (strcmp(it->name, m->name) != 0)
                continue;
            s->status_ltime = it->ltime;
            if (it->type == GOSSIP_SERF_LEAVE)
                s->status = GOSSIP_MEMBER_LEAVING;
            gossip__intent_drop(g, i);
            break;
        }
    } else {
        s->status = GOSSIP_MEMBER_ALIVE;
        s->leave_ms = 0;
    }
    sm_copy(s, m);
    emit_member(g, GOSSIP_EVENT_JOIN, s);
}

void gossip__sm_update(struct gossip *g, const struct gossip_member *m)
{
    struct smember *s = sm_find(g, m->name, NULL);
    if (!s)
        return;
    sm_copy(s, m);
    emit_member(g, GOSSIP_EVENT_UPDATE, s);
}

void gossip__sm_leave(struct gossip *g, const struct gossip_member *m)
{
    struct smember *s = sm_find(g, m->name, NULL);
    if (!s)
        return;
    s->incarnation = m->incarnation;
    switch (s->status) {
    case GOSSIP_MEMBER_LEAVING:
        s->status = GOSSIP_MEMBER_LEFT;
        break;
    case GOSSIP_MEMBER_ALIVE:
        s->status = GOSSIP_MEMBER_FAILED;
        break;
    default:
        return;
    }
    s->leave_ms = now_ms(g);
    emit_member(g, s->status == GOSSIP_MEMBER_LEFT ? GOSSIP_EVENT_LEAVE : GOSSIP_EVENT_FAIL, s);
}

void gossip__serf_queue(struct gossip *g, const struct gossip_serf_msg *m)
{
    struct base_buf b;
    base_buf_init(&b);
    base_buf_put_u8(&b, GOSSIP_USER);
    gossip__serf_encode(&b, m);
    gossip__queue_push(&g->sq, NULL, b.data, b.len);
    gossip__queue_prune(&g->sq, g->cfg.max_queue);
    base_buf_free(&b);
}

static bool handle_join_intent(struct gossip *g, const struct gossip_serf_join *j);

/* serf's broadcastJoin: our join intent at ltime, applied here and gossiped. */
void gossip__serf_broadcast_join(struct gossip *g, uint64_t ltime)
{
    struct gossip_serf_msg m = {.type = GOSSIP_SERF_JOIN};
    m.u.join = (struct gossip_serf_join){ltime, g->name, false};
    witness(&g->clock, ltime);
    handle_join_intent(g, &m.u.join);
    gossip__serf_queue(g, &m);
}

static bool handle_join_intent(struct gossip *g, const struct gossip_serf_join *j)
{
    witness(&g->clock, j->ltime);
    struct smember *s = sm_find(g, j->node, NULL);
    if (!s)
        return intent_upsert(g, j->node, GOSSIP_SERF_JOIN, j->ltime);
    if (j->ltime <= s->status_ltime)
        return false;
    s->status_ltime = j->ltime;
    if (s->status == GOSSIP_MEMBER_LEAVING)
        s->status = GOSSIP_MEMBER_ALIVE;
    return true;
}

bool gossip__serf_leave_intent(struct gossip *g, const struct gossip_serf_join *l)
{
    witness(&g->clock, l->ltime);
    size_t idx;
    struct smember *s = sm_find(g, l->node, &idx);
    if (!s)
        return intent_upsert(g, l->node, GOSSIP_SERF_LEAVE, l->ltime);
    if (l->ltime <= s->status_ltime)
        return false;
    if (is_self(g, l->node) && g->leave_phase == 0) {
        /* an older leave intent about us: refuted by a newer join intent */
        gossip__serf_broadcast_join(g, g->clock);
        return false;
    }
    switch (s->status) {
    case GOSSIP_MEMBER_ALIVE:
        s->status = GOSSIP_MEMBER_LEAVING;
        s->status_ltime = l->ltime;
        return true;
    case GOSSIP_MEMBER_FAILED:
        /* a forced leave (serf's RemoveFailedNode): failed becomes left */
        s->status = GOSSIP_MEMBER_LEFT;
        s->status_ltime = l->ltime;
        emit_member(g, GOSSIP_EVENT_LEAVE, s);
        if (l->prune)
            gossip__sm_remove(g, idx);
        return true;
    default:
        /* leaving or left already: only a prune (forget it now) has something to do */
        s->status_ltime = l->ltime;
        if (!l->prune || is_self(g, l->node))
            return false;
        gossip__sm_remove(g, idx);
        return true;
    }
}

void gossip__ring_clear(struct gossip *g, struct ring_slot *slot)
{
    for (size_t i = 0; i < slot->n; i++) {
        g->ring_bytes -= slot->ev[i].len + strlen(slot->ev[i].name);
        base_free(slot->ev[i].name);
        base_free(slot->ev[i].payload);
    }
    slot->n = 0;
}

/* serf's handleUserEvent: true when the event is new (delivered, and to be rebroadcast). */
bool gossip__serf_user_event(struct gossip *g, uint64_t ltime, const char *name,
                             const uint8_t *payload, size_t len, bool cc)
{
    witness(&g->event_clock, ltime);
    if (ltime < g->event_min_time)
        return false;
    uint64_t cur = g->event_clock;
    if (cur > RING && ltime < cur - RING)
        return false; /* too old for the ring: it may have been seen and forgotten */
    struct ring_slot *slot = &g->ring[ltime % RING];
    size_t nl = strlen(name);
    if (slot->n && slot->ltime == ltime) {
        for (size_t i = 0; i < slot->n; i++)
            if (strcmp(slot->ev[i].name, name) == 0 && slot->ev[i].len == len &&
                (len == 0 || memcmp(slot->ev[i].payload, payload, len) == 0))
                return false;
        if (slot->n >= RING_SLOT_MAX)
            return false;
    } else {
        gossip__ring_clear(g, slot);
        slot->ltime = ltime;
    }
    if (g->ring_bytes + len + nl > RING_BYTES_MAX)
        return false;
    struct ring_ev *e = &slot->ev[slot->n++];
    e->name = base_strdup(name);
    e->payload = base_malloc(len ? len : 1);
    if (len)
        memcpy(e->payload, payload, len);
    e->len = len;
    g->ring_bytes += len + nl;
    LOG_DEBUG(MOD, "%s: user event %s ltime=%llu", g->name, name, (unsigned long long)ltime);
    if (g->cfg.on_event && !g->stopping) {
        struct gossip_event ev = {.kind = GOSSIP_EVENT_USER,
                                  .name = name,
                                  .payload = payload,
                                  .payload_len = len,
                                  .ltime = ltime,
                                  .coalesce = cc};
        g->cfg.on_event(g->cfg.ctx, &ev);
    }
    return true;
}

void gossip__serf_merge(struct gossip *g, const struct gossip_serf_push_pull *pp, bool ignore_old)
{
    if (pp->ltime > 0)
        witness(&g->clock, pp->ltime - 1);
    if (pp->event_ltime > 0)
        witness(&g->event_clock, pp->event_ltime - 1);
    if (pp->query_ltime > 0)
        witness(&g->query_clock, pp->query_ltime - 1);
    for (size_t i = 0; i < pp->n_left; i++) {
        struct gossip_serf_join l = {0, pp->left[i], false};
        for (size_t k = 0; k < pp->n_status; k++)
            if (strcmp(pp->status[k].node, pp->left[i]) == 0)
                l.ltime = pp->status[k].ltime;
        gossip__serf_leave_intent(g, &l);
    }
    for (size_t k = 0; k < pp->n_status; k++) {
        bool left = false;
        for (size_t i = 0; i < pp->n_left && !left; i++)
            left = strcmp(pp->status[k].node, pp->left[i]) == 0;
        if (left)
            continue;
        struct gossip_serf_join j = {pp->status[k].ltime, pp->status[k].node, false};
        handle_join_intent(g, &j);
    }
    /* serf's eventJoinIgnore (Consul's joins): the events the pool had before we joined it are
     * not ours to replay */
    if (ignore_old && pp->event_ltime > g->event_min_time)
        g->event_min_time = pp->event_ltime;
    for (size_t i = 0; i < pp->n_events; i++)
        for (size_t k = 0; k < pp->events[i].n; k++) {
            const struct gossip_serf_event *e = &pp->events[i].events[k];
            gossip__serf_user_event(g, pp->events[i].ltime, e->name, e->payload.p, e->payload.n,
                                    false);
        }
}

/* Whether a query's filters select us. Node filters are matched; a tag filter (a regular
 * expression in Go's syntax, which a remote peer chooses) is not evaluated here: such a query
 * is passed on but not acknowledged. */
static bool query_for_us(const struct gossip *g, const struct gossip_serf_query *q,
                         struct base_arena *a)
{
    for (size_t i = 0; i < q->n_filters; i++) {
        struct gossip_serf_filter f;
        if (gossip__serf_filter_decode(q->filters[i].p, q->filters[i].n, a, &f) != 0 ||
            f.type != GOSSIP_SERF_FILTER_NODE)
            return false;
        bool named = false;
        for (size_t k = 0; k < f.n_nodes && !named; k++)
            named = is_self(g, f.nodes[k]);
        if (!named)
            return false;
    }
    return true;
}

bool gossip__query_seen(struct gossip *g, uint64_t ltime, uint32_t id)
{
    witness(&g->query_clock, ltime);
    uint64_t cur = g->query_clock;
    if (cur > QRING && ltime < cur - QRING)
        return false;
    struct query_slot *slot = &g->qring[ltime % QRING];
    if (slot->n && slot->ltime == ltime) {
        for (size_t i = 0; i < slot->n; i++)
            if (slot->ids[i] == id)
                return false;
        if (slot->n >= QRING_IDS)
            return false;
    } else {
        slot->ltime = ltime;
        slot->n = 0;
    }
    slot->ids[slot->n++] = id;
    return true;
}

/* serf's handleQuery: deduplicated in serf's query buffer by Lamport time and ID,
 * acknowledged to the querier when it asks for acks and the filters select us, answered when
 * it is one of serf's internal keyring queries (query.c; other queries are not delivered),
 * passed on unless it says not to. */
static bool handle_query(struct gossip *g, const struct gossip_serf_query *q, struct base_arena *a)
{
    if (!gossip__query_seen(g, q->ltime, q->id))
        return false;
    bool for_us = query_for_us(g, q, a);
    struct sockaddr_storage to;
    if ((q->flags & GOSSIP_SERF_QUERY_ACK) && for_us &&
        to_sockaddr(q->addr.p, q->addr.n, q->port, &to)) {
        struct gossip_serf_msg r = {.type = GOSSIP_SERF_QUERY_RESPONSE};
        r.u.response = (struct gossip_serf_query_response){
            q->ltime, q->id, g->name, GOSSIP_SERF_QUERY_ACK, {NULL, 0}};
        struct base_buf b;
        base_buf_init(&b);
        base_buf_put_u8(&b, GOSSIP_USER);
        gossip__serf_encode(&b, &r);
        struct gossip_bytes part = {b.data, b.len};
        gossip__send_parts(g, (const struct sockaddr *)&to, NULL, &part, 1, false);
        base_buf_free(&b);
    }
    if (for_us)
        gossip__query_answer(g, q, a);
    return !(q->flags & GOSSIP_SERF_QUERY_NO_BROADCAST);
}

/* A serf message from a packet or a stream. */
void gossip__serf_handle(struct gossip *g, const uint8_t *p, size_t n, bool rebroadcast)
{
    struct base_arena a;
    base_arena_init(&a);
    struct gossip_serf_msg m;
    if (gossip__serf_decode(p, n, &a, &m) != 0) {
        g->st.udp_bad++;
        base_arena_close(&a);
        return;
    }
    bool again = false;
    switch (m.type) {
    case GOSSIP_SERF_JOIN:
        again = handle_join_intent(g, &m.u.join);
        break;
    case GOSSIP_SERF_LEAVE:
        again = gossip__serf_leave_intent(g, &m.u.join);
        break;
    case GOSSIP_SERF_USER_EVENT:
        again = gossip__serf_user_event(g, m.u.event.ltime, m.u.event.name, m.u.event.payload.p,
                                        m.u.event.payload.n, m.u.event.cc);
        break;
    case GOSSIP_SERF_QUERY:
        again = handle_query(g, &m.u.query, &a);
        break;
    case GOSSIP_SERF_QUERY_RESPONSE:
        gossip__query_response(g, &m.u.response);
        break;
    default:
        break;
    }
    if (again && rebroadcast) {
        struct base_buf b;
        base_buf_init(&b);
        base_buf_put_u8(&b, GOSSIP_USER);
        base_buf_append(&b, p, n);
        gossip__queue_push(&g->sq, NULL, b.data, b.len);
        gossip__queue_prune(&g->sq, g->cfg.max_queue);
        base_buf_free(&b);
    }
    base_arena_close(&a);
}

void gossip__sm_remove(struct gossip *g, size_t i)
{
    struct smember *s = g->sm[i];
    emit_member(g, GOSSIP_EVENT_REAP, s);
    base_free(s->name);
    base_free(s);
    g->sm[i] = g->sm[--g->n_sm];
}
