/* Tests gossip/queue.c: takes fill their room with the least-sent messages first, largest
 * fitting and newest first among those; overhead is counted per message; a named message
 * replaces the queued one of its name, unnamed ones never replace; messages are dropped after
 * the retransmit limit, which grows with the pool as memberlist's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "gossip/queue.h"

struct got {
    char s[512];
};

static void on_msg(void *ctx, const uint8_t *msg, size_t len)
{
    struct got *g = ctx;
    size_t l = strlen(g->s);
    snprintf(g->s + l, sizeof(g->s) - l, "%s%.*s", l ? " " : "", (int)len, (const char *)msg);
}

static void push(struct gossip_queue *q, const char *name, const char *msg)
{
    gossip__queue_push(q, name, (const uint8_t *)msg, strlen(msg));
}

static const char *take(struct gossip_queue *q, size_t overhead, size_t limit, size_t n,
                        struct got *g)
{
    g->s[0] = 0;
    gossip__queue_take(q, overhead, limit, n, on_msg, g);
    return g->s;
}

static void test_order_and_room(void **state)
{
    (void)state;
    struct gossip_queue q;
    struct got g;
    gossip__queue_init(&q, 4);
    push(&q, NULL, "aa");
    push(&q, NULL, "bbbb");
    push(&q, NULL, "cc");
    /* room 12, overhead 2: bbbb (largest) 6, then cc (newest of the equal sizes) 10; aa would
     * need 14 */
    assert_string_equal(take(&q, 2, 12, 10, &g), "bbbb cc");
    /* aa has been sent least: it goes first, then the others once more */
    assert_string_equal(take(&q, 2, 100, 10, &g), "aa bbbb cc");
    assert_string_equal(take(&q, 2, 3, 10, &g), ""); /* no room past the overhead */
    assert_string_equal(take(&q, 0, 100, 10, &g), "aa bbbb cc");
    gossip__queue_close(&q);
}

static void test_names_replace(void **state)
{
    (void)state;
    struct gossip_queue q;
    struct got g;
    gossip__queue_init(&q, 4);
    push(&q, "n1", "alive-n1");
    push(&q, "n2", "alive-n2");
    push(&q, "n1", "dead-n1");
    push(&q, NULL, "event");
    push(&q, NULL, "event");
    assert_int_equal(q.n, 4);
    assert_string_equal(take(&q, 0, 100, 10, &g), "alive-n2 dead-n1 event event");
    gossip__queue_close(&q);
}

static void test_retransmit_limit(void **state)
{
    (void)state;
    assert_int_equal(gossip__retransmit_limit(4, 0), 0);
    assert_int_equal(gossip__retransmit_limit(4, 1), 4);
    assert_int_equal(gossip__retransmit_limit(4, 9), 4);
    assert_int_equal(gossip__retransmit_limit(4, 10), 8);
    assert_int_equal(gossip__retransmit_limit(4, 100), 12);
    assert_int_equal(gossip__retransmit_limit(4, 1000), 16);

    struct gossip_queue q;
    struct got g;
    gossip__queue_init(&q, 4);
    push(&q, NULL, "m");
    for (int i = 0; i < 8; i++) /* n = 10: 8 sends */
        assert_string_equal(take(&q, 2, 100, 10, &g), "m");
    assert_int_equal(q.n, 0);
    assert_string_equal(take(&q, 2, 100, 10, &g), "");
    /* a pool of one: sent once, then dropped (limit 0 still lets the first through) */
    push(&q, NULL, "x");
    assert_string_equal(take(&q, 2, 100, 0, &g), "x");
    assert_int_equal(q.n, 0);
    gossip__queue_close(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_room),
        cmocka_unit_test(test_names_replace),
        cmocka_unit_test(test_retransmit_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
