/* gossip/member.h (internal to gossip/): the member table and its state machine, as pure
 * functions of the messages received and a clock the caller passes in (milliseconds), so the
 * tests drive it with a fake clock and no network.
 *
 * The rules are memberlist 0.2.2's (state.go: aliveNode, suspectNode, deadNode, mergeState,
 * refute; suspicion.go), which serf peers expect:
 *   - a member's incarnation only grows; an alive message with a higher incarnation (or with
 *     an equal one for a node not yet known, or a new address of a member that left) makes it
 *     alive; suspect and dead messages with an incarnation below the member's are stale;
 *   - a suspect of an alive member makes it suspect and starts its suspicion (Lifeguard's
 *     dynamic timeout: it starts at max = SuspicionMaxTimeoutMult × min and shrinks towards
 *     min, min = SuspicionMult × max(1, log10(n)) × ProbeInterval, as k = SuspicionMult − 2
 *     independent suspects confirm it); when it runs out the member is declared dead by us;
 *   - a suspect or dead message about ourselves is refuted: we broadcast an alive with an
 *     incarnation above the accusation, and our health score (Lifeguard's local health
 *     awareness) worsens by one; a dead message from a member about itself is a graceful
 *     leave (state left);
 *   - push-pull state merges as alive for alive, dead for left, and suspect (never dead) for
 *     suspect and dead.
 * Every accepted change is re-broadcast (the caller queues it for piggybacking) and, for
 * joins, meta updates and deaths, reported as an event.
 *
 * Threads: a table is used by one thread at a time (the loop thread); nothing here blocks.
 * Ownership: the table copies what it keeps; effects point into the table or the message and
 * are valid during the callback only. */
#ifndef HERALD_GOSSIP_MEMBER_H
#define HERALD_GOSSIP_MEMBER_H

#include "gossip/wire.h"

struct gossip_member {
    char *name;
    uint8_t addr[16];
    size_t addr_len;
    uint16_t port;
    uint8_t meta[512]; /* memberlist's MetaMaxSize */
    size_t meta_len;
    uint8_t vsn[GOSSIP_VSN_LEN];
    uint32_t incarnation;
    uint8_t state; /* enum gossip_node_state */
    uint64_t state_change_ms;
    /* suspicion, while state is suspect and suspecting is true */
    bool suspecting;
    uint32_t susp_k, susp_n; /* confirmations expected, received */
    uint64_t susp_start_ms, susp_min_ms, susp_max_ms, susp_deadline_ms;
    char **susp_from; /* who accused it (the first) and confirmed it: one each */
    size_t n_susp_from;
};

struct gossip_member_config {
    uint64_t probe_interval_ms;  /* memberlist LAN: 1000 */
    uint32_t suspicion_mult;     /* 4 */
    uint32_t suspicion_max_mult; /* 6 */
    uint32_t awareness_max;      /* 8 */
    size_t max_members;          /* newcomers past this many members are ignored; 0: no cap */
};

struct gossip_members {
    struct gossip_member_config cfg;
    char *local; /* our name: its member is in the table too */
    bool leaving;
    uint32_t incarnation_seq; /* our next incarnation comes after this */
    uint32_t health;          /* Lifeguard's health score, 0 (healthy) .. awareness_max - 1 */
    struct gossip_member **v;
    size_t n, cap;
};

/* What a transition asks of the caller. */
enum gossip_fx_kind {
    GOSSIP_FX_BROADCAST, /* gossip msg on (queue it for piggybacking) */
    GOSSIP_FX_JOIN,      /* member became alive (new, or back from dead or left) */
    GOSSIP_FX_UPDATE,    /* an alive member's meta changed */
    GOSSIP_FX_LEAVE,     /* member is dead or left (member->state says which) */
};
struct gossip_fx {
    enum gossip_fx_kind kind;
    const struct gossip_member *member;
    const struct gossip_msg *msg; /* GOSSIP_FX_BROADCAST */
};
typedef void (*gossip_fx_cb)(void *ctx, const struct gossip_fx *fx);

/* local: our name; addr/port/meta/vsn as we advertise them. Our member starts alive with
 * incarnation 1 (the caller broadcasts that alive, as memberlist's setAlive does). */
void gossip__members_init(struct gossip_members *t, const struct gossip_member_config *cfg,
                          const char *local, const uint8_t *addr, size_t addr_len, uint16_t port,
                          const uint8_t *meta, size_t meta_len, const uint8_t vsn[GOSSIP_VSN_LEN],
                          uint64_t now_ms);
void gossip__members_close(struct gossip_members *t);

struct gossip_member *gossip__members_find(const struct gossip_members *t, const char *name);

/* The transitions. bootstrap (alive): our own alive at start, never refuted. */
void gossip__members_alive(struct gossip_members *t, const struct gossip_alive *a, bool bootstrap,
                           uint64_t now_ms, gossip_fx_cb cb, void *ctx);
void gossip__members_suspect(struct gossip_members *t, const struct gossip_suspect *s,
                             uint64_t now_ms, gossip_fx_cb cb, void *ctx);
void gossip__members_dead(struct gossip_members *t, const struct gossip_suspect *d, uint64_t now_ms,
                          gossip_fx_cb cb, void *ctx);
void gossip__members_merge(struct gossip_members *t, const struct gossip_push_node *nodes, size_t n,
                           uint64_t now_ms, gossip_fx_cb cb, void *ctx);

/* Our graceful leave: a dead message about us from us (memberlist's Leave), which marks us
 * left; from then on alives about us are ignored. */
void gossip__members_leave(struct gossip_members *t, uint64_t now_ms, gossip_fx_cb cb, void *ctx);

/* Forgets the member at index i of t->v (not ourselves): memberlist drops a dead node from
 * its list once it has been gossiped to for GossipToTheDeadTime. */
void gossip__members_remove(struct gossip_members *t, size_t i);

/* Declares dead (from us) every suspect whose suspicion ran out by now_ms. */
void gossip__members_tick(struct gossip_members *t, uint64_t now_ms, gossip_fx_cb cb, void *ctx);
/* The earliest suspicion deadline, or UINT64_MAX: when to call tick next. */
uint64_t gossip__members_next_deadline(const struct gossip_members *t);

/* Lifeguard's local health awareness: delta +1 on a refute or a missed ack, -1 on a probe
 * answered in time; the score stays within 0 .. awareness_max - 1. A probe's interval and
 * timeout are scaled by (score + 1). */
void gossip__members_health(struct gossip_members *t, int delta);
uint64_t gossip__members_scale(const struct gossip_members *t, uint64_t ms);

/* memberlist's suspicionTimeout: mult × max(1, log10(max(1, n))) × interval. */
uint64_t gossip__suspicion_min_ms(uint32_t mult, size_t n, uint64_t interval_ms);
/* memberlist's remainingSuspicionTime, as an absolute timeout from the start: max − log(c+1)
 * / log(k+1) × (max − min), at least min (whole milliseconds, as memberlist rounds). */
uint64_t gossip__suspicion_timeout_ms(uint32_t c, uint32_t k, uint64_t min_ms, uint64_t max_ms);

#endif
