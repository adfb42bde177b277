/* gossip/member.c: the member table's state machine (member.h says the rules and where they
 * come from). Members are kept in an array searched by name: the table is small (a LAN pool
 * of hundreds) and the probe order, shuffled, will be the protocol's own list. */
#include "gossip/member.h"

#include <math.h>
#include <string.h>

static struct gossip_member *member_new(struct gossip_members *t, const char *name)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->v = base_realloc(t->v, t->cap * sizeof(*t->v));
    }
    struct gossip_member *m = base_calloc(1, sizeof(*m));
    m->name = base_strdup(name);
    m->state = GOSSIP_STATE_DEAD; /* as memberlist: a new node is dead until its alive lands */
    t->v[t->n++] = m;
    return m;
}

static void susp_clear(struct gossip_member *m)
{
    for (size_t i = 0; i < m->n_susp_from; i++)
        base_free(m->susp_from[i]);
    base_free(m->susp_from);
    m->susp_from = NULL;
    m->n_susp_from = 0;
    m->suspecting = false;
}

static void set_addr(struct gossip_member *m, const uint8_t *addr, size_t addr_len, uint16_t port)
{
    m->addr_len = addr_len > sizeof(m->addr) ? sizeof(m->addr) : addr_len;
    if (m->addr_len)
        memcpy(m->addr, addr, m->addr_len);
    m->port = port;
}

static void set_meta(struct gossip_member *m, const uint8_t *meta, size_t n)
{
    m->meta_len = n > sizeof(m->meta) ? sizeof(m->meta) : n;
    if (m->meta_len)
        memcpy(m->meta, meta, m->meta_len);
}

void gossip__members_init(struct gossip_members *t, const struct gossip_member_config *cfg,
                          const char *local, const uint8_t *addr, size_t addr_len, uint16_t port,
                          const uint8_t *meta, size_t meta_len, const uint8_t vsn[GOSSIP_VSN_LEN],
                          uint64_t now_ms)
{
    memset(t, 0, sizeof(*t));
    t->cfg = *cfg;
    if (t->cfg.awareness_max == 0)
        t->cfg.awareness_max = 1;
    t->local = base_strdup(local);
    struct gossip_member *me = member_new(t, local);
    set_addr(me, addr, addr_len, port);
    set_meta(me, meta, meta_len);
    memcpy(me->vsn, vsn, GOSSIP_VSN_LEN);
    me->incarnation = ++t->incarnation_seq;
    me->state = GOSSIP_STATE_ALIVE;
    me->state_change_ms = now_ms;
}

void gossip__members_close(struct gossip_members *t)
{
    for (size_t i = 0; i < t->n; i++) {
        susp_clear(t->v[i]);
        base_free(t->v[i]->name);
        base_free(t->v[i]);
    }
    base_free(t->v);
    base_free(t->local);
    memset(t, 0, sizeof(*t));
}

struct gossip_member *gossip__members_find(const struct gossip_members *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i]->name, name) == 0)
            return t->v[i];
    return NULL;
}

static bool is_local(const struct gossip_members *t, const struct gossip_member *m)
{
    return strcmp(m->name, t->local) == 0;
}

static void emit(gossip_fx_cb cb, void *ctx, enum gossip_fx_kind kind,
                 const struct gossip_member *m, const struct gossip_msg *msg)
{
    if (!cb)
        return;
    struct gossip_fx fx = {kind, m, msg};
    cb(ctx, &fx);
}

void gossip__members_health(struct gossip_members *t, int delta)
{
    int64_t h = (int64_t)t->health + delta;
    if (h < 0)
        h = 0;
    if (h > (int64_t)t->cfg.awareness_max - 1)
        h = (int64_t)t->cfg.awareness_max - 1;
    t->health = (uint32_t)h;
}

uint64_t gossip__members_scale(const struct gossip_members *t, uint64_t ms)
{
    return ms * (t->health + 1);
}

/* memberlist's refute: an incarnation above the accusation, broadcast in an alive of ours. */
static void refute(struct gossip_members *t, struct gossip_member *me, uint32_t accused,
                   gossip_fx_cb cb, void *ctx)
{
    uint32_t inc = ++t->incarnation_seq;
    if (accused >= inc)
        inc = t->incarnation_seq = accused + 1;
    me->incarnation = inc;
    gossip__members_health(t, 1);
    struct gossip_msg msg = {.type = GOSSIP_ALIVE};
    msg.u.alive = (struct gossip_alive){
        inc, me->name, {me->addr, me->addr_len}, me->port, {me->meta, me->meta_len}, true, {0}};
    memcpy(msg.u.alive.vsn, me->vsn, GOSSIP_VSN_LEN);
    emit(cb, ctx, GOSSIP_FX_BROADCAST, me, &msg);
}

void gossip__members_alive(struct gossip_members *t, const struct gossip_alive *a, bool bootstrap,
                           uint64_t now_ms, gossip_fx_cb cb, void *ctx)
{
    if (t->leaving && strcmp(a->node, t->local) == 0)
        return;
    if (a->has_vsn && (a->vsn[0] == 0 || a->vsn[1] == 0 || a->vsn[0] > a->vsn[1]))
        return; /* protocol versions that make no sense */
    struct gossip_member *m = gossip__members_find(t, a->node);
    bool updates_node = false;
    if (!m) {
        if (!a->has_vsn)
            return; /* memberlist (with serf's alive delegate) ignores such a newcomer */
        if (a->incarnation == 0)
            return; /* memberlist keeps a dead placeholder at 0 and stops there: we keep none */
        if (t->cfg.max_members && t->n >= t->cfg.max_members)
            return; /* a cap on what a remote peer makes us hold */
        m = member_new(t, a->node);
        set_addr(m, a->addr.p, a->addr.n, a->port);
        set_meta(m, a->meta.p, a->meta.n);
        memcpy(m->vsn, a->vsn, GOSSIP_VSN_LEN);
    } else if (m->addr_len != a->addr.n ||
               (a->addr.n && memcmp(m->addr, a->addr.p, a->addr.n) != 0) || m->port != a->port) {
        /* another address under a known name: only a member that left may be replaced */
        if (m->state != GOSSIP_STATE_LEFT)
            return;
        updates_node = true;
    }
    bool local = is_local(t, m);
    if (a->incarnation <= m->incarnation && !local && !updates_node)
        return;
    if (a->incarnation < m->incarnation && local)
        return;
    susp_clear(m);
    uint8_t old_state = m->state;
    bool meta_changed =
        m->meta_len != a->meta.n || (a->meta.n && memcmp(m->meta, a->meta.p, a->meta.n) != 0);
    if (!bootstrap && local) {
        if (a->incarnation == m->incarnation && !meta_changed && a->has_vsn &&
            memcmp(a->vsn, m->vsn, GOSSIP_VSN_LEN) == 0)
            return;
        refute(t, m, a->incarnation, cb, ctx);
        return; /* our own state stands */
    }
    struct gossip_msg msg = {.type = GOSSIP_ALIVE};
    msg.u.alive = *a;
    emit(cb, ctx, GOSSIP_FX_BROADCAST, m, &msg);
    if (a->has_vsn)
        memcpy(m->vsn, a->vsn, GOSSIP_VSN_LEN);
    m->incarnation = a->incarnation;
    set_meta(m, a->meta.p, a->meta.n);
    set_addr(m, a->addr.p, a->addr.n, a->port);
    if (m->state != GOSSIP_STATE_ALIVE) {
        m->state = GOSSIP_STATE_ALIVE;
        m->state_change_ms = now_ms;
    }
    if (old_state == GOSSIP_STATE_DEAD || old_state == GOSSIP_STATE_LEFT)
        emit(cb, ctx, GOSSIP_FX_JOIN, m, NULL);
    else if (meta_changed)
        emit(cb, ctx, GOSSIP_FX_UPDATE, m, NULL);
}

uint64_t gossip__suspicion_min_ms(uint32_t mult, size_t n, uint64_t interval_ms)
{
    double scale = log10(n > 1 ? (double)n : 1.0);
    if (scale < 1.0)
        scale = 1.0;
    /* as memberlist: the scale kept to three decimals, in integer arithmetic after that */
    uint64_t scale1000 = (uint64_t)(scale * 1000.0);
    return (uint64_t)mult * scale1000 * interval_ms / 1000;
}

uint64_t gossip__suspicion_timeout_ms(uint32_t c, uint32_t k, uint64_t min_ms, uint64_t max_ms)
{
    if (k == 0)
        return min_ms;
    double frac = log((double)c + 1.0) / log((double)k + 1.0);
    double raw = (double)max_ms - frac * ((double)max_ms - (double)min_ms);
    double t = floor(raw);
    uint64_t timeout = t < 0 ? 0 : (uint64_t)t;
    return timeout < min_ms ? min_ms : timeout;
}

static bool susp_has(const struct gossip_member *m, const char *from)
{
    for (size_t i = 0; i < m->n_susp_from; i++)
        if (strcmp(m->susp_from[i], from) == 0)
            return true;
    return false;
}

static void susp_add(struct gossip_member *m, const char *from)
{
    m->susp_from = base_realloc(m->susp_from, (m->n_susp_from + 1) * sizeof(*m->susp_from));
    m->susp_from[m->n_susp_from++] = base_strdup(from);
}

void gossip__members_suspect(struct gossip_members *t, const struct gossip_suspect *s,
                             uint64_t now_ms, gossip_fx_cb cb, void *ctx)
{
    struct gossip_member *m = gossip__members_find(t, s->node);
    if (!m || s->incarnation < m->incarnation)
        return;
    struct gossip_msg msg = {.type = GOSSIP_SUSPECT};
    msg.u.suspect = *s;
    if (m->suspecting) {
        /* a confirmation: Lifeguard shortens the timeout, one per distinct accuser */
        if (m->susp_n >= m->susp_k || susp_has(m, s->from))
            return;
        susp_add(m, s->from);
        m->susp_n++;
        m->susp_deadline_ms =
            m->susp_start_ms +
            gossip__suspicion_timeout_ms(m->susp_n, m->susp_k, m->susp_min_ms, m->susp_max_ms);
        emit(cb, ctx, GOSSIP_FX_BROADCAST, m, &msg);
        return;
    }
    if (m->state != GOSSIP_STATE_ALIVE)
        return;
    if (is_local(t, m)) {
        refute(t, m, s->incarnation, cb, ctx);
        return;
    }
    emit(cb, ctx, GOSSIP_FX_BROADCAST, m, &msg);
    m->incarnation = s->incarnation;
    m->state = GOSSIP_STATE_SUSPECT;
    m->state_change_ms = now_ms;
    /* k such that the nominal timeout is hit two probe intervals short of SuspicionMult; no
     * confirmations expected when the pool has too few other members to give them */
    uint32_t k = t->cfg.suspicion_mult > 2 ? t->cfg.suspicion_mult - 2 : 0;
    if (t->n < 2 || t->n - 2 < k)
        k = 0;
    m->suspecting = true;
    m->susp_k = k;
    m->susp_n = 0;
    m->susp_start_ms = now_ms;
    m->susp_min_ms =
        gossip__suspicion_min_ms(t->cfg.suspicion_mult, t->n, t->cfg.probe_interval_ms);
    m->susp_max_ms = (uint64_t)t->cfg.suspicion_max_mult * m->susp_min_ms;
    m->susp_deadline_ms = now_ms + (k < 1 ? m->susp_min_ms : m->susp_max_ms);
    susp_add(m, s->from);
}

void gossip__members_dead(struct gossip_members *t, const struct gossip_suspect *d, uint64_t now_ms,
                          gossip_fx_cb cb, void *ctx)
{
    struct gossip_member *m = gossip__members_find(t, d->node);
    if (!m || d->incarnation < m->incarnation)
        return;
    susp_clear(m);
    if (m->state == GOSSIP_STATE_DEAD || m->state == GOSSIP_STATE_LEFT)
        return;
    if (is_local(t, m) && !t->leaving) {
        refute(t, m, d->incarnation, cb, ctx);
        return;
    }
    struct gossip_msg msg = {.type = GOSSIP_DEAD};
    msg.u.suspect = *d;
    emit(cb, ctx, GOSSIP_FX_BROADCAST, m, &msg);
    m->incarnation = d->incarnation;
    m->state = strcmp(d->node, d->from) == 0 ? GOSSIP_STATE_LEFT : GOSSIP_STATE_DEAD;
    m->state_change_ms = now_ms;
    emit(cb, ctx, GOSSIP_FX_LEAVE, m, NULL);
}

void gossip__members_merge(struct gossip_members *t, const struct gossip_push_node *nodes, size_t n,
                           uint64_t now_ms, gossip_fx_cb cb, void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        const struct gossip_push_node *r = &nodes[i];
        switch (r->state) {
        case GOSSIP_STATE_ALIVE: {
            struct gossip_alive a = {r->incarnation, r->name,    r->addr, r->port,
                                     r->meta,        r->has_vsn, {0}};
            memcpy(a.vsn, r->vsn, GOSSIP_VSN_LEN);
            gossip__members_alive(t, &a, false, now_ms, cb, ctx);
            break;
        }
        case GOSSIP_STATE_LEFT: {
            struct gossip_suspect d = {r->incarnation, r->name, r->name};
            gossip__members_dead(t, &d, now_ms, cb, ctx);
            break;
        }
        default: {
            /* a remote dead is only a suspicion here: we let it be refuted */
            struct gossip_suspect s = {r->incarnation, r->name, t->local};
            gossip__members_suspect(t, &s, now_ms, cb, ctx);
            break;
        }
        }
    }
}

void gossip__members_leave(struct gossip_members *t, uint64_t now_ms, gossip_fx_cb cb, void *ctx)
{
    struct gossip_member *me = gossip__members_find(t, t->local);
    t->leaving = true;
    struct gossip_suspect d = {me->incarnation, me->name, me->name};
    gossip__members_dead(t, &d, now_ms, cb, ctx);
}

void gossip__members_remove(struct gossip_members *t, size_t i)
{
    struct gossip_member *m = t->v[i];
    if (is_local(t, m))
        return;
    susp_clear(m);
    base_free(m->name);
    base_free(m);
    t->v[i] = t->v[--t->n];
}

void gossip__members_tick(struct gossip_members *t, uint64_t now_ms, gossip_fx_cb cb, void *ctx)
{
    for (size_t i = 0; i < t->n; i++) {
        struct gossip_member *m = t->v[i];
        if (!m->suspecting || m->state != GOSSIP_STATE_SUSPECT || now_ms < m->susp_deadline_ms)
            continue;
        struct gossip_suspect d = {m->incarnation, m->name, t->local};
        gossip__members_dead(t, &d, now_ms, cb, ctx);
    }
}

uint64_t gossip__members_next_deadline(const struct gossip_members *t)
{
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i]->suspecting && t->v[i]->susp_deadline_ms < next)
            next = t->v[i]->susp_deadline_ms;
    return next;
}
