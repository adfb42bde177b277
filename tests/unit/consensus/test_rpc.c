/* Tests consensus's server RPC methods (transport.c's table and their handlers' framing):
 * calls between two servers on loopback, each a one-voter cons, through the calling cons's
 * own rpc client; several at once, each matched with its response; unknown request types,
 * malformed requests and non-leaders answer with a status. The rpc module's own behaviour
 * (outcomes, backoff, bounds) is tested in tests/unit/rpc/test_call.c. */
#include "consensus/fixture.h"
#include "consensus/internal.h"

struct fx {
    uv_loop_t loop;
    char root[64];
    struct srv s[2];
};

/* Server i: a one-voter cluster (bootstrap true) or a lone server with no cluster. */
/* Servers of separate one-server clusters share this key in the tests where they call each
 * other: without a key, only members may forward writes and ask for read indexes. */
static const uint8_t test_key[16] = "0123456789abcdef";
static bool keyed;

static void srv_up(struct fx *f, int i, bool bootstrap)
{
    struct srv *s = &f->s[i];
    char dir[96];
    snprintf(dir, sizeof dir, "%s/s%d", f->root, i);
    srv_init(s, dir, "127.0.0.1");
    struct cons_config cfg = {
        .id = (uint64_t)(i + 1),
        .bootstrap = bootstrap,
    };
    s->key = keyed ? test_key : NULL;
    s->key_len = keyed ? sizeof test_key : 0;
    srv_start(&f->loop, s, &cfg);
}

static void fx_init(struct fx *f)
{
    memset(f, 0, sizeof *f);
    loop_init(&f->loop, f->root, "rpc");
}

static void srv_down(struct fx *f, int i)
{
    struct srv *s = &f->s[i];
    if (!s->c)
        return;
    srv_stop(&f->loop, s);
    zone_store_close(s->store);
}

static void fx_close(struct fx *f)
{
    srv_down(f, 0);
    srv_down(f, 1);
    assert_int_equal(uv_run(&f->loop, UV_RUN_NOWAIT), 0);
    loop_done(&f->loop, f->root);
}

/* ---- calls (rpc/fixture.h's call, from a cons's own client) ----------------------------- */

static void hello_body(struct base_buf *b)
{
    base_buf_init(b);
    base_buf_put_u64(b, 42);
    base_buf_put_str(b, "127.0.0.1:9");
    base_buf_put_u32(b, 0);
    base_buf_put_u8(b, 0);
    base_buf_put_u64(b, 0);
    base_buf_put_str(b, "");
    base_buf_put_u32(b, 0);
    base_buf_put_u32(b, 0);
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_call_and_reply(void **state)
{
    (void)state;
    struct fx f;
    struct call c[3];
    struct base_buf b;
    fx_init(&f);
    keyed = true;
    srv_up(&f, 0, true);
    srv_up(&f, 1, true);
    keyed = false;

    /* three calls at once on one connection, each matched with its own response */
    hello_body(&b);
    for (int i = 0; i < 3; i++)
        call(f.s[0].c->client, f.s[1].address, CONS_RPC_HELLO, &b, 2000, &c[i]);
    base_buf_free(&b);
    for (int i = 0; i < 3; i++) {
        assert_true(run_until(&f.loop, &c[i].done, 3000));
        assert_int_equal(c[i].status, 0);
        assert_int_equal(status_of(&c[i]), 0);
        assert_int_equal(c[i].body[4], 2); /* server 2's HELLO: its id first */
    }

    /* an unknown request type: a status, the connection stays */
    call(f.s[0].c->client, f.s[1].address, 77, NULL, 2000, &c[0]);
    assert_true(run_until(&f.loop, &c[0].done, 3000));
    assert_int_equal(c[0].status, 0);
    assert_int_equal(status_of(&c[0]), BASE_EINVAL);

    /* a malformed HELLO: a status */
    base_buf_init(&b);
    base_buf_put_u8(&b, 1);
    call(f.s[0].c->client, f.s[1].address, CONS_RPC_HELLO, &b, 2000, &c[0]);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &c[0].done, 3000));
    assert_int_equal(status_of(&c[0]), BASE_EPARSE);

    /* READ_INDEX on a leader: its applied index */
    base_buf_init(&b);
    base_buf_put_u8(&b, 1);
    call(f.s[0].c->client, f.s[1].address, CONS_RPC_READ_INDEX, &b, 2000, &c[0]);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &c[0].done, 3000));
    assert_int_equal(c[0].status, 0);
    assert_int_equal(status_of(&c[0]), 0);
    assert_int_equal(c[0].len, 12);

    /* a FORWARD of zero commands, then one malformed */
    base_buf_init(&b);
    base_buf_put_u32(&b, 0);
    call(f.s[0].c->client, f.s[1].address, CONS_RPC_FORWARD, &b, 2000, &c[0]);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &c[0].done, 3000));
    assert_int_equal(status_of(&c[0]), 0);
    base_buf_init(&b);
    base_buf_put_u32(&b, 5);
    base_buf_put_u32(&b, 1000);
    call(f.s[0].c->client, f.s[1].address, CONS_RPC_FORWARD, &b, 2000, &c[0]);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &c[0].done, 3000));
    assert_int_equal(status_of(&c[0]), BASE_EPARSE);
    fx_close(&f);
}

static void test_not_leader_answers(void **state)
{
    (void)state;
    struct fx f;
    struct call c;
    struct base_buf b;
    fx_init(&f);
    keyed = true;
    srv_up(&f, 0, true);
    srv_up(&f, 1, false); /* a lone server, no cluster: no leader */
    keyed = false;
    base_buf_init(&b);
    base_buf_put_u32(&b, 1);
    base_buf_put_bytes(&b, "cmd", 3);
    call(f.s[0].c->client, f.s[1].address, CONS_RPC_FORWARD, &b, 2000, &c);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(c.status, 0);
    assert_int_equal(status_of(&c), BASE_ENOLEADER); /* nothing proposed: retry elsewhere */

    base_buf_init(&b);
    base_buf_put_u8(&b, 0);
    call(f.s[0].c->client, f.s[1].address, CONS_RPC_READ_INDEX, &b, 2000, &c);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(status_of(&c), BASE_ENOLEADER);

    base_buf_init(&b);
    base_buf_put_u64(&b, 9);
    base_buf_put_str(&b, "127.0.0.1:9");
    base_buf_put_u8(&b, 0);
    call(f.s[0].c->client, f.s[1].address, CONS_RPC_JOIN, &b, 2000, &c);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(status_of(&c), BASE_ENOLEADER);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_and_reply),
        cmocka_unit_test(test_not_leader_answers),
    };
    base_log_set_level(BASE_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
