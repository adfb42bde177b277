/* gossip/queue.h (internal to gossip/): the broadcast queue, memberlist's TransmitLimitedQueue
 * (queue.go): what a member piggybacks on its probes and gossip.
 *
 * Each message is sent up to RetransmitMult × ceil(log10(n + 1)) times (n the members known),
 * then dropped. A take fills the room it is given with the messages sent least often first;
 * among those, the largest that still fits, and of equal sizes the newest. A message with a
 * name (memberlist's: the node an alive, suspect or dead is about) replaces the queued one of
 * that name, so only the latest news about a node travels; unnamed ones (serf's) never
 * replace anything.
 *
 * Threads: one at a time (the loop thread). Ownership: the queue copies what it is given. */
#ifndef HERALD_GOSSIP_QUEUE_H
#define HERALD_GOSSIP_QUEUE_H

#include "gossip/wire.h"

struct gossip_bcast {
    char *name; /* NULL: unnamed */
    uint8_t *msg;
    size_t len;
    uint32_t transmits;
    uint64_t id; /* order of arrival */
};

struct gossip_queue {
    uint32_t retransmit_mult; /* memberlist LAN: 4 */
    struct gossip_bcast *v;
    size_t n, cap;
    uint64_t id_gen;
};

void gossip__queue_init(struct gossip_queue *q, uint32_t retransmit_mult);
void gossip__queue_close(struct gossip_queue *q);

/* Queues a copy of msg, replacing the queued message named name (if name is not NULL). */
void gossip__queue_push(struct gossip_queue *q, const char *name, const uint8_t *msg, size_t len);

/* Calls cb for each message chosen to fill limit bytes, counting overhead bytes for each
 * (memberlist: 2, a compound's length field; 3 for a user message that also takes its type
 * byte); n_nodes sets the retransmit limit. msg is valid during cb only. Returns how many. */
typedef void (*gossip_queue_cb)(void *ctx, const uint8_t *msg, size_t len);
size_t gossip__queue_take(struct gossip_queue *q, size_t overhead, size_t limit, size_t n_nodes,
                          gossip_queue_cb cb, void *ctx);

/* memberlist's retransmitLimit: mult × ceil(log10(n + 1)). */
uint32_t gossip__retransmit_limit(uint32_t mult, size_t n_nodes);

#endif
