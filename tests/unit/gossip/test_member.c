/* Tests gossip/member.c over a fake clock: joins, stale and newer incarnations, meta updates,
 * suspicion with Lifeguard's shrinking timeout and its confirmations, death by timeout,
 * refutation of suspect, dead and conflicting alive messages about ourselves (with the health
 * score), graceful leave (ours and others'), address conflicts, and the push-pull merge rule
 * (a remote dead is only a suspicion). Each transition's effects are checked in order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "gossip/gossip.h"
#include "gossip/member.h"

/* The effects of one call, as a string: "B:alive(n2,1) J:n2" ... */
struct rec {
    char s[1024];
};

static void on_fx(void *ctx, const struct gossip_fx *fx)
{
    struct rec *r = ctx;
    size_t l = strlen(r->s);
    char *p = r->s + l;
    size_t room = sizeof(r->s) - l;
    switch (fx->kind) {
    case GOSSIP_FX_BROADCAST: {
        const struct gossip_msg *m = fx->msg;
        if (m->type == GOSSIP_ALIVE)
            snprintf(p, room, "%sB:alive(%s,%u)", l ? " " : "", m->u.alive.node,
                     m->u.alive.incarnation);
        else
            snprintf(p, room, "%sB:%s(%s,%u,%s)", l ? " " : "",
                     m->type == GOSSIP_SUSPECT ? "suspect" : "dead", m->u.suspect.node,
                     m->u.suspect.incarnation, m->u.suspect.from);
        break;
    }
    case GOSSIP_FX_JOIN:
        snprintf(p, room, "%sJ:%s", l ? " " : "", fx->member->name);
        break;
    case GOSSIP_FX_UPDATE:
        snprintf(p, room, "%sU:%s", l ? " " : "", fx->member->name);
        break;
    case GOSSIP_FX_LEAVE:
        snprintf(p, room, "%sL:%s(%s)", l ? " " : "", fx->member->name,
                 fx->member->state == GOSSIP_STATE_LEFT ? "left" : "dead");
        break;
    }
}

static const uint8_t vsn[6] = {1, 5, 2, 2, 5, 4};
static const uint8_t ip1[4] = {127, 0, 0, 1}, ip2[4] = {127, 0, 0, 2};
static const struct gossip_member_config cfg = {1000, 4, 6, 8, 0};

static void init(struct gossip_members *t)
{
    gossip__members_init(t, &cfg, "me", ip1, 4, 8301, (const uint8_t *)"m", 1, vsn, 0);
}

static struct gossip_alive alive_of(const char *node, uint32_t inc, const uint8_t *ip,
                                    const char *meta)
{
    struct gossip_alive a = {inc,  node, {ip, 4}, 8301, {(const uint8_t *)meta, strlen(meta)},
                             true, {0}};
    memcpy(a.vsn, vsn, 6);
    return a;
}

#define ALIVE(t, node, inc, ip, meta, now, want)                                                   \
    do {                                                                                           \
        struct rec r_ = {""};                                                                      \
        struct gossip_alive a_ = alive_of(node, inc, ip, meta);                                    \
        gossip__members_alive(t, &a_, false, now, on_fx, &r_);                                     \
        assert_string_equal(r_.s, want);                                                           \
    } while (0)

#define SUSPECT(t, node, inc, from, now, want)                                                     \
    do {                                                                                           \
        struct rec r_ = {""};                                                                      \
        struct gossip_suspect s_ = {inc, node, from};                                              \
        gossip__members_suspect(t, &s_, now, on_fx, &r_);                                          \
        assert_string_equal(r_.s, want);                                                           \
    } while (0)

#define DEAD(t, node, inc, from, now, want)                                                        \
    do {                                                                                           \
        struct rec r_ = {""};                                                                      \
        struct gossip_suspect d_ = {inc, node, from};                                              \
        gossip__members_dead(t, &d_, now, on_fx, &r_);                                             \
        assert_string_equal(r_.s, want);                                                           \
    } while (0)

#define TICK(t, now, want)                                                                         \
    do {                                                                                           \
        struct rec r_ = {""};                                                                      \
        gossip__members_tick(t, now, on_fx, &r_);                                                  \
        assert_string_equal(r_.s, want);                                                           \
    } while (0)

static void test_join_and_incarnations(void **state)
{
    (void)state;
    struct gossip_members t;
    init(&t);
    struct gossip_member *me = gossip__members_find(&t, "me");
    assert_non_null(me);
    assert_int_equal(me->state, GOSSIP_STATE_ALIVE);
    assert_int_equal(me->incarnation, 1);

    ALIVE(&t, "n2", 1, ip2, "a", 10, "B:alive(n2,1) J:n2");
    struct gossip_member *n2 = gossip__members_find(&t, "n2");
    assert_int_equal(n2->state, GOSSIP_STATE_ALIVE);
    assert_int_equal(n2->state_change_ms, 10);
    ALIVE(&t, "n2", 1, ip2, "a", 20, ""); /* the same: old news */
    ALIVE(&t, "n2", 0, ip2, "b", 20, ""); /* older */
    ALIVE(&t, "n2", 2, ip2, "b", 30, "B:alive(n2,2) U:n2");
    ALIVE(&t, "n2", 3, ip2, "b", 40, "B:alive(n2,3)"); /* newer, nothing changed but gossip */
    assert_int_equal(n2->state_change_ms, 10);
    assert_int_equal(n2->meta_len, 1);
    assert_int_equal(n2->meta[0], 'b');

    /* a newcomer without versions, with nonsense versions, or at incarnation 0: ignored */
    struct rec r = {""};
    struct gossip_alive a = alive_of("n3", 1, ip2, "");
    a.has_vsn = false;
    gossip__members_alive(&t, &a, false, 50, on_fx, &r);
    a = alive_of("n3", 1, ip2, "");
    a.vsn[0] = 6;
    gossip__members_alive(&t, &a, false, 50, on_fx, &r);
    a = alive_of("n3", 0, ip2, "");
    gossip__members_alive(&t, &a, false, 50, on_fx, &r);
    assert_string_equal(r.s, "");
    assert_null(gossip__members_find(&t, "n3"));
    gossip__members_close(&t);
}

static void add_members(struct gossip_members *t, int n)
{
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof(name), "p%d", i);
        struct gossip_alive a = alive_of(name, 1, ip2, "");
        a.port = (uint16_t)(9000 + i);
        gossip__members_alive(t, &a, false, 0, NULL, NULL);
    }
}

/* Lifeguard: suspicion starts at max, each distinct confirmation shrinks it towards min. */
static void test_suspicion_confirmations(void **state)
{
    (void)state;
    struct gossip_members t;
    init(&t);
    add_members(&t, 9); /* n = 10: min = 4 × log10(10) × 1 s = 4 s, max = 24 s, k = 2 */
    assert_int_equal(gossip__suspicion_min_ms(4, 10, 1000), 4000);
    SUSPECT(&t, "p0", 1, "p1", 1000, "B:suspect(p0,1,p1)");
    struct gossip_member *m = gossip__members_find(&t, "p0");
    assert_int_equal(m->state, GOSSIP_STATE_SUSPECT);
    assert_int_equal(m->susp_k, 2);
    assert_int_equal(m->susp_deadline_ms, 1000 + 24000);
    assert_int_equal(gossip__members_next_deadline(&t), 25000);
    SUSPECT(&t, "p0", 1, "p1", 2000, ""); /* the accuser again: no confirmation */
    SUSPECT(&t, "p0", 1, "p2", 2000, "B:suspect(p0,1,p2)");
    /* 24 s − ln 2 / ln 3 × 20 s = 11.381 s */
    assert_int_equal(m->susp_deadline_ms, 1000 + 11381);
    SUSPECT(&t, "p0", 1, "p2", 2500, "");
    SUSPECT(&t, "p0", 1, "p3", 3000, "B:suspect(p0,1,p3)");
    assert_int_equal(m->susp_deadline_ms, 1000 + 4000); /* k confirmations: min */
    SUSPECT(&t, "p0", 1, "p4", 3000, "");               /* no more than k */
    TICK(&t, 4999, "");
    TICK(&t, 5000, "B:dead(p0,1,me) L:p0(dead)");
    assert_int_equal(m->state, GOSSIP_STATE_DEAD);
    assert_int_equal(gossip__members_next_deadline(&t), UINT64_MAX);
    TICK(&t, 9000, "");
    /* it comes back with a newer incarnation */
    struct rec r = {""};
    struct gossip_alive a = alive_of("p0", 2, ip2, "");
    a.port = 9000;
    gossip__members_alive(&t, &a, false, 10000, on_fx, &r);
    assert_string_equal(r.s, "B:alive(p0,2) J:p0");
    gossip__members_close(&t);
}

/* With too few members to confirm, the timeout is min from the start. */
static void test_suspicion_small_pool(void **state)
{
    (void)state;
    struct gossip_members t;
    init(&t);
    ALIVE(&t, "n2", 1, ip2, "", 0, "B:alive(n2,1) J:n2");
    SUSPECT(&t, "n2", 1, "me", 100, "B:suspect(n2,1,me)");
    struct gossip_member *m = gossip__members_find(&t, "n2");
    assert_int_equal(m->susp_k, 0);
    assert_int_equal(m->susp_deadline_ms, 100 + 4000);
    /* an alive with a newer incarnation clears the suspicion: no death */
    ALIVE(&t, "n2", 2, ip2, "", 2000, "B:alive(n2,2)");
    assert_int_equal(m->state, GOSSIP_STATE_ALIVE);
    assert_false(m->suspecting);
    TICK(&t, 10000, "");
    /* a stale suspect (older incarnation) is ignored; a suspect of a dead member too */
    SUSPECT(&t, "n2", 1, "me", 11000, "");
    DEAD(&t, "n2", 2, "me", 11000, "B:dead(n2,2,me) L:n2(dead)");
    SUSPECT(&t, "n2", 2, "me", 11000, "");
    DEAD(&t, "n2", 2, "me", 11000, "");
    SUSPECT(&t, "nobody", 9, "me", 11000, "");
    gossip__members_close(&t);
}

/* Accusations about ourselves are refuted with a higher incarnation; health worsens. */
static void test_refute(void **state)
{
    (void)state;
    struct gossip_members t;
    init(&t);
    struct gossip_member *me = gossip__members_find(&t, "me");
    SUSPECT(&t, "me", 1, "n2", 100, "B:alive(me,2)");
    assert_int_equal(me->state, GOSSIP_STATE_ALIVE);
    assert_int_equal(me->incarnation, 2);
    assert_int_equal(t.health, 1);
    assert_int_equal(gossip__members_scale(&t, 500), 1000);
    SUSPECT(&t, "me", 7, "n2", 200, "B:alive(me,8)");
    DEAD(&t, "me", 8, "n2", 300, "B:alive(me,9)");
    assert_int_equal(me->state, GOSSIP_STATE_ALIVE);
    assert_int_equal(t.health, 3);
    SUSPECT(&t, "me", 3, "n2", 300, ""); /* stale */
    /* an alive about us: the same as ours is nothing, another meta is refuted */
    ALIVE(&t, "me", 9, ip1, "m", 400, "");
    ALIVE(&t, "me", 9, ip1, "other", 400, "B:alive(me,10)");
    assert_int_equal(me->meta_len, 1);
    ALIVE(&t, "me", 4, ip1, "other", 400, ""); /* older than ours */
    /* health stays within bounds */
    for (int i = 0; i < 20; i++)
        gossip__members_health(&t, 1);
    assert_int_equal(t.health, cfg.awareness_max - 1);
    for (int i = 0; i < 20; i++)
        gossip__members_health(&t, -1);
    assert_int_equal(t.health, 0);
    gossip__members_close(&t);
}

/* A dead from the member itself is a graceful leave; ours marks us left and stays so. */
static void test_leave(void **state)
{
    (void)state;
    struct gossip_members t;
    init(&t);
    ALIVE(&t, "n2", 3, ip2, "", 0, "B:alive(n2,3) J:n2");
    DEAD(&t, "n2", 2, "n2", 10, ""); /* stale */
    DEAD(&t, "n2", 3, "n2", 10, "B:dead(n2,3,n2) L:n2(left)");
    assert_int_equal(gossip__members_find(&t, "n2")->state, GOSSIP_STATE_LEFT);
    /* a member that left may come back at another address */
    ALIVE(&t, "n2", 3, ip1, "", 20, "B:alive(n2,3) J:n2");
    assert_int_equal(gossip__members_find(&t, "n2")->addr[3], 1);
    /* but an alive member's address is not taken over */
    ALIVE(&t, "n2", 9, ip2, "", 30, "");

    struct rec r = {""};
    gossip__members_leave(&t, 40, on_fx, &r);
    assert_string_equal(r.s, "B:dead(me,1,me) L:me(left)");
    assert_int_equal(gossip__members_find(&t, "me")->state, GOSSIP_STATE_LEFT);
    ALIVE(&t, "me", 5, ip1, "m", 50, ""); /* a late alive about us does not rejoin us */
    gossip__members_close(&t);
}

/* Push-pull: alive merges as alive, left as a leave, dead and suspect as suspicion only. */
static void test_merge(void **state)
{
    (void)state;
    struct gossip_members t;
    init(&t);
    ALIVE(&t, "a", 1, ip2, "", 0, "B:alive(a,1) J:a");
    ALIVE(&t, "b", 1, ip2, "", 0, "B:alive(b,1) J:b"); /* names, not addresses, are members */
    struct gossip_push_node nodes[4];
    memset(nodes, 0, sizeof(nodes));
    const char *names[4] = {"a", "c", "d", "me"};
    uint8_t states[4] = {GOSSIP_STATE_DEAD, GOSSIP_STATE_ALIVE, GOSSIP_STATE_LEFT,
                         GOSSIP_STATE_SUSPECT};
    for (int i = 0; i < 4; i++) {
        nodes[i].name = names[i];
        nodes[i].addr = (struct gossip_bytes){ip2, 4};
        nodes[i].port = (uint16_t)(8000 + i);
        nodes[i].incarnation = 1;
        nodes[i].state = states[i];
        nodes[i].has_vsn = true;
        memcpy(nodes[i].vsn, vsn, 6);
    }
    nodes[3].addr = (struct gossip_bytes){ip1, 4};
    nodes[3].port = 8301;
    struct rec r = {""};
    gossip__members_merge(&t, nodes, 4, 100, on_fx, &r);
    /* a: suspected (not dead); c: joins; d: unknown, so its leave is ignored; me: refuted */
    assert_string_equal(r.s, "B:suspect(a,1,me) B:alive(c,1) J:c B:alive(me,2)");
    assert_int_equal(gossip__members_find(&t, "a")->state, GOSSIP_STATE_SUSPECT);
    assert_null(gossip__members_find(&t, "d"));
    gossip__members_close(&t);
}

/* max_members: newcomers past the cap are ignored (a remote peer cannot grow the table),
 * known members still change, and a freed place takes a newcomer again */
static void test_member_cap(void **state)
{
    (void)state;
    struct gossip_members t;
    struct gossip_member_config c = cfg;
    c.max_members = 3;
    gossip__members_init(&t, &c, "me", ip1, 4, 8301, (const uint8_t *)"m", 1, vsn, 0);
    ALIVE(&t, "n2", 1, ip2, "", 0, "B:alive(n2,1) J:n2");
    ALIVE(&t, "n3", 1, ip2, "", 0, "B:alive(n3,1) J:n3");
    ALIVE(&t, "n4", 1, ip2, "", 0, "");
    assert_null(gossip__members_find(&t, "n4"));
    assert_int_equal(t.n, 3);
    ALIVE(&t, "n3", 2, ip2, "x", 0, "B:alive(n3,2) U:n3");
    for (size_t i = 0; i < t.n; i++)
        if (strcmp(t.v[i]->name, "n2") == 0)
            gossip__members_remove(&t, i);
    assert_null(gossip__members_find(&t, "n2"));
    gossip__members_remove(&t, 0); /* ourselves: never removed */
    assert_non_null(gossip__members_find(&t, "me"));
    ALIVE(&t, "n4", 1, ip2, "", 0, "B:alive(n4,1) J:n4");
    gossip__members_close(&t);
}

/* Herald's LAN defaults (gossip_config_defaults) through Lifeguard's formulas: the
 * suspicion of a member nobody confirms lasts 6 x min, two independent confirmations
 * (suspicion_mult - 2) bring it to min = 4 x max(1, log10 N) x probe interval, and a probe
 * interval plus min stays within the detection goals (2 s at N=10, 4 s at N=100) with room for
 * the gossip of the suspicion and of the death. */
static void test_lan_defaults_through_lifeguard(void **state)
{
    (void)state;
    struct gossip_config c;
    gossip_config_defaults(&c);
    assert_int_equal(c.probe_interval_ms, 250);
    assert_int_equal(c.probe_timeout_ms, 100);
    assert_int_equal(c.gossip_interval_ms, 100);
    assert_int_equal(c.suspicion_mult, 4);
    assert_int_equal(c.suspicion_max_timeout_mult, 6);
    struct gossip_member_config mc = {c.probe_interval_ms, c.suspicion_mult,
                                      c.suspicion_max_timeout_mult, c.awareness_max_multiplier, 0};
    struct gossip_members t;
    gossip__members_init(&t, &mc, "me", ip1, 4, 8301, (const uint8_t *)"m", 1, vsn, 0);
    add_members(&t, 9); /* N = 10 */
    SUSPECT(&t, "p0", 1, "p1", 1000, "B:suspect(p0,1,p1)");
    struct gossip_member *m = gossip__members_find(&t, "p0");
    assert_int_equal(m->susp_k, 2);
    assert_int_equal(m->susp_min_ms, 1000);
    assert_int_equal(m->susp_max_ms, 6000);
    assert_int_equal(m->susp_deadline_ms, 1000 + 6000); /* alone: a refutation has 6 s */
    SUSPECT(&t, "p0", 1, "p2", 1200, "B:suspect(p0,1,p2)");
    assert_int_equal(m->susp_deadline_ms, 1000 + 2845); /* 6 s - ln 2 / ln 3 x 5 s */
    SUSPECT(&t, "p0", 1, "p3", 1400, "B:suspect(p0,1,p3)");
    assert_int_equal(m->susp_deadline_ms, 1000 + 1000);
    TICK(&t, 1999, "");
    TICK(&t, 2000, "B:dead(p0,1,me) L:p0(dead)");
    assert_true(c.probe_interval_ms + m->susp_min_ms <= 2000 - 500);
    gossip__members_close(&t);

    /* N = 100: min 2 s, max 12 s */
    uint64_t min100 = gossip__suspicion_min_ms(c.suspicion_mult, 100, c.probe_interval_ms);
    assert_int_equal(min100, 2000);
    assert_int_equal(c.suspicion_max_timeout_mult * min100, 12000);
    assert_true(c.probe_interval_ms + min100 <= 4000 - 1000);
}

static void test_suspicion_formulas(void **state)
{
    (void)state;
    assert_int_equal(gossip__suspicion_min_ms(4, 0, 1000), 4000);
    assert_int_equal(gossip__suspicion_min_ms(4, 1, 1000), 4000);
    assert_int_equal(gossip__suspicion_min_ms(4, 100, 1000), 8000);
    assert_int_equal(gossip__suspicion_min_ms(4, 1000, 1000), 12000);
    assert_int_equal(gossip__suspicion_min_ms(4, 50, 200), 1358); /* log10 50 = 1.698 */
    assert_int_equal(gossip__suspicion_timeout_ms(0, 3, 1000, 6000), 6000);
    assert_int_equal(gossip__suspicion_timeout_ms(3, 3, 1000, 6000), 1000);
    assert_int_equal(gossip__suspicion_timeout_ms(9, 3, 1000, 6000), 1000);
    assert_int_equal(gossip__suspicion_timeout_ms(1, 0, 1000, 6000), 1000);
    /* 6 − ln 2 / ln 4 × 5 = 3.5 s */
    assert_int_equal(gossip__suspicion_timeout_ms(1, 3, 1000, 6000), 3500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_and_incarnations),
        cmocka_unit_test(test_suspicion_confirmations),
        cmocka_unit_test(test_suspicion_small_pool),
        cmocka_unit_test(test_refute),
        cmocka_unit_test(test_leave),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_suspicion_formulas),
        cmocka_unit_test(test_lan_defaults_through_lifeguard),
        cmocka_unit_test(test_member_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
