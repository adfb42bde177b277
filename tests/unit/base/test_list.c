/* Tests the intrusive list in base/base.h: order, removal anywhere, double removal, safe
 * iteration that frees as it goes, container-of. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/base.h"

struct item {
    int v;
    struct base_list link;
};

static int item_v(struct base_list *n)
{
    return BASE_CONTAINER_OF(n, struct item, link)->v;
}

/* The values on the list front to back, and checks the back links agree. */
static size_t collect(struct base_list *head, int *out, size_t max)
{
    size_t n = 0;
    for (struct base_list *p = head->next; p != head; p = p->next) {
        assert_ptr_equal(p->next->prev, p);
        assert_ptr_equal(p->prev->next, p);
        assert_true(n < max);
        out[n++] = item_v(p);
    }
    return n;
}

static void test_empty(void **state)
{
    (void)state;
    struct base_list head;
    base_list_init(&head);
    assert_true(base_list_empty(&head));
    assert_null(base_list_first(&head));
    assert_null(base_list_last(&head));
    struct base_list *pos, *tmp;
    int visits = 0;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &head)
    {
        visits++;
    }
    assert_int_equal(visits, 0);
}

static void test_order_and_remove(void **state)
{
    (void)state;
    struct base_list head;
    struct item it[4];
    base_list_init(&head);
    for (int i = 0; i < 4; i++) {
        it[i].v = i;
        base_list_init(&it[i].link);
        assert_false(base_list_linked(&it[i].link));
    }
    base_list_insert_tail(&head, &it[1].link);
    base_list_insert_tail(&head, &it[2].link);
    base_list_insert_head(&head, &it[0].link);
    base_list_insert_tail(&head, &it[3].link);
    assert_false(base_list_empty(&head));
    assert_true(base_list_linked(&it[2].link));
    int got[8];
    assert_int_equal(collect(&head, got, 8), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(got[i], i);
    assert_int_equal(item_v(base_list_first(&head)), 0);
    assert_int_equal(item_v(base_list_last(&head)), 3);

    /* Middle, then the same node again (a no-op), then both ends. */
    base_list_remove(&it[2].link);
    assert_false(base_list_linked(&it[2].link));
    base_list_remove(&it[2].link);
    assert_int_equal(collect(&head, got, 8), 3);
    assert_int_equal(got[0], 0);
    assert_int_equal(got[1], 1);
    assert_int_equal(got[2], 3);
    base_list_remove(&it[0].link);
    base_list_remove(&it[3].link);
    assert_int_equal(collect(&head, got, 8), 1);
    assert_int_equal(got[0], 1);
    assert_ptr_equal(base_list_first(&head), base_list_last(&head));
    base_list_remove(&it[1].link);
    assert_true(base_list_empty(&head));
    assert_null(base_list_first(&head));

    /* A removed node goes back on a list. */
    base_list_insert_head(&head, &it[2].link);
    assert_int_equal(collect(&head, got, 8), 1);
    assert_int_equal(got[0], 2);
}

/* Safe iteration may remove and free the node it stands on. */
static void test_foreach_safe_frees(void **state)
{
    (void)state;
    struct base_list head;
    base_list_init(&head);
    for (int i = 0; i < 6; i++) {
        struct item *x = base_malloc(sizeof *x);
        x->v = i;
        base_list_insert_tail(&head, &x->link);
    }
    struct base_list *pos, *tmp;
    int seen = 0;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &head)
    {
        struct item *x = BASE_CONTAINER_OF(pos, struct item, link);
        assert_int_equal(x->v, seen);
        seen++;
        if (x->v % 2 == 0) {
            base_list_remove(pos);
            base_free(x);
        }
    }
    assert_int_equal(seen, 6);
    int got[8];
    assert_int_equal(collect(&head, got, 8), 3);
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], 3);
    assert_int_equal(got[2], 5);
    BASE_LIST_FOREACH_SAFE(pos, tmp, &head)
    {
        base_list_remove(pos);
        base_free(BASE_CONTAINER_OF(pos, struct item, link));
    }
    assert_true(base_list_empty(&head));
}

/* Splicing moves a whole list, in order, behind another; the source is left empty. */
static void test_splice_tail(void **state)
{
    (void)state;
    struct base_list a, b;
    struct item it[5];
    base_list_init(&a);
    base_list_init(&b);
    for (int i = 0; i < 5; i++) {
        it[i].v = i;
        base_list_init(&it[i].link);
    }
    base_list_splice_tail(&a, &b); /* both empty */
    assert_true(base_list_empty(&a) && base_list_empty(&b));
    base_list_insert_tail(&b, &it[0].link);
    base_list_insert_tail(&b, &it[1].link);
    base_list_splice_tail(&a, &b); /* into an empty list */
    assert_true(base_list_empty(&b));
    base_list_insert_tail(&b, &it[2].link);
    base_list_insert_tail(&b, &it[3].link);
    base_list_insert_tail(&b, &it[4].link);
    base_list_splice_tail(&a, &b); /* behind nodes */
    assert_true(base_list_empty(&b));
    base_list_splice_tail(&a, &b); /* an empty source changes nothing */
    int got[8];
    assert_int_equal(collect(&a, got, 8), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(got[i], i);
    assert_int_equal(collect(&b, got, 8), 0);
    base_list_remove(&it[4].link); /* the moved nodes link to their new head */
    assert_int_equal(item_v(base_list_last(&a)), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_order_and_remove),
        cmocka_unit_test(test_foreach_safe_frees),
        cmocka_unit_test(test_splice_tail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
