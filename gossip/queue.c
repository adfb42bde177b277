/* gossip/queue.c: the broadcast queue (queue.h). An array scanned per take: the queue holds a
 * few broadcasts per member that changed lately, and a take picks a handful. */
#include "gossip/queue.h"

#include <math.h>
#include <string.h>

void gossip__queue_init(struct gossip_queue *q, uint32_t retransmit_mult)
{
    memset(q, 0, sizeof(*q));
    q->retransmit_mult = retransmit_mult;
}

static void drop(struct gossip_queue *q, size_t i)
{
    base_free(q->v[i].name);
    base_free(q->v[i].msg);
    q->v[i] = q->v[--q->n];
}

void gossip__queue_close(struct gossip_queue *q)
{
    while (q->n)
        drop(q, q->n - 1);
    base_free(q->v);
    memset(q, 0, sizeof(*q));
}

void gossip__queue_push(struct gossip_queue *q, const char *name, const uint8_t *msg, size_t len)
{
    if (name)
        for (size_t i = 0; i < q->n; i++)
            if (q->v[i].name && strcmp(q->v[i].name, name) == 0) {
                drop(q, i);
                break;
            }
    if (q->n == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 16;
        q->v = base_realloc(q->v, q->cap * sizeof(*q->v));
    }
    struct gossip_bcast *b = &q->v[q->n++];
    b->name = name ? base_strdup(name) : NULL;
    b->msg = base_malloc(len ? len : 1);
    if (len)
        memcpy(b->msg, msg, len);
    b->len = len;
    b->transmits = 0;
    b->id = ++q->id_gen;
}

uint32_t gossip__retransmit_limit(uint32_t mult, size_t n_nodes)
{
    return mult * (uint32_t)ceil(log10((double)n_nodes + 1.0));
}

size_t gossip__queue_take(struct gossip_queue *q, size_t overhead, size_t limit, size_t n_nodes,
                          gossip_queue_cb cb, void *ctx)
{
    if (q->n == 0)
        return 0;
    uint32_t tlimit = gossip__retransmit_limit(q->retransmit_mult, n_nodes);
    uint32_t min_t = UINT32_MAX, max_t = 0;
    for (size_t i = 0; i < q->n; i++) {
        if (q->v[i].transmits < min_t)
            min_t = q->v[i].transmits;
        if (q->v[i].transmits > max_t)
            max_t = q->v[i].transmits;
    }
    /* chosen marks what this take sent: it is not chosen twice */
    bool *chosen = base_calloc(q->n, sizeof(*chosen));
    size_t used = 0, sent = 0;
    for (uint64_t t = min_t; t <= max_t;) {
        if (limit <= used + overhead)
            break;
        size_t free_bytes = limit - used - overhead;
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < q->n; i++) {
            const struct gossip_bcast *b = &q->v[i];
            if (chosen[i] || b->transmits != t || b->len > free_bytes)
                continue;
            if (best == SIZE_MAX || b->len > q->v[best].len ||
                (b->len == q->v[best].len && b->id > q->v[best].id))
                best = i;
        }
        if (best == SIZE_MAX) {
            t++;
            continue;
        }
        chosen[best] = true;
        used += overhead + q->v[best].len;
        sent++;
        if (cb)
            cb(ctx, q->v[best].msg, q->v[best].len);
    }
    /* count the sends; drop what reached the limit (from the end: drop moves the last in) */
    for (size_t i = q->n; i-- > 0;) {
        if (!chosen[i])
            continue;
        if (q->v[i].transmits + 1 >= tlimit)
            drop(q, i);
        else
            q->v[i].transmits++;
    }
    base_free(chosen);
    return sent;
}
