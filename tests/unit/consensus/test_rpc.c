/* Tests consensus/rpc.c (and the request handlers' framing): calls between two servers on
 * loopback, each a one-voter cons; responses matched by id; outcomes that say whether the
 * request may have run (unsent vs lost vs timed out); backoff after a failed connect; a peer
 * that sends an oversized frame is dropped; unknown request types and non-leaders answer with
 * a status; stop ends every call and frees everything (uv_loop_close() == 0). Fake peers are
 * raw libuv listeners on the same loop. */
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
        .key = keyed ? test_key : NULL,
        .key_len = keyed ? sizeof test_key : 0,
    };
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

/* ---- calls ----------------------------------------------------------------------------- */

struct call {
    bool done;
    int status;
    uint8_t body[256];
    size_t len;
};

static bool in_call;

static void call_cb(void *data, int status, const uint8_t *body, size_t len)
{
    struct call *c = data;
    assert_false(in_call); /* never inside cons__rpc_call */
    assert_false(c->done);
    c->done = true;
    c->status = status;
    c->len = len < sizeof c->body ? len : sizeof c->body;
    if (body && c->len)
        memcpy(c->body, body, c->len);
}

static void call(struct fx *f, struct cons *from, const char *to, uint8_t type,
                 const struct base_buf *body, unsigned timeout_ms, struct call *c)
{
    memset(c, 0, sizeof *c);
    in_call = true;
    cons__rpc_call(from, to, type, body, timeout_ms, call_cb, c);
    in_call = false;
    BASE_UNUSED(f);
}

static int32_t status_of(const struct call *c)
{
    assert_true(c->len >= 4);
    return (int32_t)((uint32_t)c->body[0] | (uint32_t)c->body[1] << 8 | (uint32_t)c->body[2] << 16 |
                     (uint32_t)c->body[3] << 24);
}

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

/* ---- a fake peer: accepts the RPC handshake, then misbehaves -------------------------- */

enum fake_mode { FAKE_SILENT, FAKE_CLOSE_AFTER_READ, FAKE_HUGE_REPLY };

struct fake {
    uv_tcp_t listener;
    uv_tcp_t conn;
    bool accepted, conn_closed, listener_closed;
    enum fake_mode mode;
    uint8_t in[4096];
    size_t got;
    uv_write_t w;
    uint8_t out[16];
    char address[48];
};

static void fake_closed(uv_handle_t *h)
{
    struct fake *k = h->data;
    if (h == (uv_handle_t *)&k->conn)
        k->conn_closed = true;
    else
        k->listener_closed = true;
}

static void fake_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct fake *k = h->data;
    BASE_UNUSED(suggested);
    buf->base = (char *)k->in + k->got;
    buf->len = sizeof k->in - k->got;
}

static void fake_write_cb(uv_write_t *w, int status)
{
    BASE_UNUSED(w);
    BASE_UNUSED(status);
}

static void fake_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct fake *k = s->data;
    BASE_UNUSED(buf);
    if (nread < 0) {
        if (!uv_is_closing((uv_handle_t *)&k->conn))
            uv_close((uv_handle_t *)&k->conn, fake_closed);
        return;
    }
    k->got += (size_t)nread;
    /* the handshake (no key): preamble, 24-byte header, the dialer's address */
    if (k->got < 32)
        return;
    size_t hs = 32 + (size_t)(k->in[24] | k->in[25] << 8);
    if (k->got < hs + CONS_RPC_HEADER)
        return;
    if (k->mode == FAKE_CLOSE_AFTER_READ && !uv_is_closing((uv_handle_t *)&k->conn)) {
        uv_close((uv_handle_t *)&k->conn, fake_closed);
    } else if (k->mode == FAKE_HUGE_REPLY && k->got == hs + 4 + (size_t)k->in[hs]) {
        /* a reply header announcing a frame over the limit */
        uint32_t len = CONS_RPC_FRAME_MAX + 100;
        for (int i = 0; i < 4; i++)
            k->out[i] = (uint8_t)(len >> (8 * i));
        k->out[4] = CONS_RPC_HELLO | CONS_RPC_REPLY;
        memset(k->out + 5, 0, 3);
        memcpy(k->out + 8, k->in + hs + 8, 8); /* the request's id */
        uv_buf_t b = uv_buf_init((char *)k->out, 16);
        uv_write(&k->w, s, &b, 1, fake_write_cb);
    }
}

static void fake_listen_cb(uv_stream_t *server, int status)
{
    struct fake *k = server->data;
    assert_int_equal(status, 0);
    uv_tcp_init(server->loop, &k->conn);
    k->conn.data = k;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&k->conn), 0);
    k->accepted = true;
    uv_read_start((uv_stream_t *)&k->conn, fake_alloc, fake_read);
}

static void fake_up(struct fx *f, struct fake *k, enum fake_mode mode)
{
    struct sockaddr_in sa;
    memset(k, 0, sizeof *k);
    k->mode = mode;
    int port = free_port();
    snprintf(k->address, sizeof k->address, "127.0.0.1:%d", port);
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(&f->loop, &k->listener);
    k->listener.data = k;
    assert_int_equal(uv_tcp_bind(&k->listener, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&k->listener, 8, fake_listen_cb), 0);
}

static void fake_down(struct fx *f, struct fake *k)
{
    if (k->accepted && !uv_is_closing((uv_handle_t *)&k->conn))
        uv_close((uv_handle_t *)&k->conn, fake_closed);
    uv_close((uv_handle_t *)&k->listener, fake_closed);
    assert_true(run_until(&f->loop, &k->listener_closed, 2000));
    if (k->accepted)
        assert_true(run_until(&f->loop, &k->conn_closed, 2000));
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
        call(&f, f.s[0].c, f.s[1].address, CONS_RPC_HELLO, &b, 2000, &c[i]);
    base_buf_free(&b);
    for (int i = 0; i < 3; i++) {
        assert_true(run_until(&f.loop, &c[i].done, 3000));
        assert_int_equal(c[i].status, 0);
        assert_int_equal(status_of(&c[i]), 0);
        assert_int_equal(c[i].body[4], 2); /* server 2's HELLO: its id first */
    }

    /* an unknown request type: a status, the connection stays */
    call(&f, f.s[0].c, f.s[1].address, 77, NULL, 2000, &c[0]);
    assert_true(run_until(&f.loop, &c[0].done, 3000));
    assert_int_equal(c[0].status, 0);
    assert_int_equal(status_of(&c[0]), BASE_EINVAL);

    /* a malformed HELLO: a status */
    base_buf_init(&b);
    base_buf_put_u8(&b, 1);
    call(&f, f.s[0].c, f.s[1].address, CONS_RPC_HELLO, &b, 2000, &c[0]);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &c[0].done, 3000));
    assert_int_equal(status_of(&c[0]), BASE_EPARSE);

    /* READ_INDEX on a leader: its applied index */
    base_buf_init(&b);
    base_buf_put_u8(&b, 1);
    call(&f, f.s[0].c, f.s[1].address, CONS_RPC_READ_INDEX, &b, 2000, &c[0]);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &c[0].done, 3000));
    assert_int_equal(c[0].status, 0);
    assert_int_equal(status_of(&c[0]), 0);
    assert_int_equal(c[0].len, 12);

    /* a FORWARD of zero commands, then one malformed */
    base_buf_init(&b);
    base_buf_put_u32(&b, 0);
    call(&f, f.s[0].c, f.s[1].address, CONS_RPC_FORWARD, &b, 2000, &c[0]);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &c[0].done, 3000));
    assert_int_equal(status_of(&c[0]), 0);
    base_buf_init(&b);
    base_buf_put_u32(&b, 5);
    base_buf_put_u32(&b, 1000);
    call(&f, f.s[0].c, f.s[1].address, CONS_RPC_FORWARD, &b, 2000, &c[0]);
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
    call(&f, f.s[0].c, f.s[1].address, CONS_RPC_FORWARD, &b, 2000, &c);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(c.status, 0);
    assert_int_equal(status_of(&c), BASE_ENOLEADER); /* nothing proposed: retry elsewhere */

    base_buf_init(&b);
    base_buf_put_u8(&b, 0);
    call(&f, f.s[0].c, f.s[1].address, CONS_RPC_READ_INDEX, &b, 2000, &c);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(status_of(&c), BASE_ENOLEADER);

    base_buf_init(&b);
    base_buf_put_u64(&b, 9);
    base_buf_put_str(&b, "127.0.0.1:9");
    base_buf_put_u8(&b, 0);
    call(&f, f.s[0].c, f.s[1].address, CONS_RPC_JOIN, &b, 2000, &c);
    base_buf_free(&b);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(status_of(&c), BASE_ENOLEADER);
    fx_close(&f);
}

static void test_unsent_and_backoff(void **state)
{
    (void)state;
    struct fx f;
    struct call c;
    char dead[48];
    fx_init(&f);
    srv_up(&f, 0, true);
    snprintf(dead, sizeof dead, "127.0.0.1:%d", free_port());
    uint64_t t0 = uv_hrtime();
    call(&f, f.s[0].c, dead, CONS_RPC_HELLO, NULL, 5000, &c);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(c.status, CONS_RPC_UNSENT);
    /* backing off: the next call is failed as unsent by the tick, not held for the backoff */
    call(&f, f.s[0].c, dead, CONS_RPC_HELLO, NULL, 5000, &c);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(c.status, CONS_RPC_UNSENT);
    print_message("# two calls to a dead peer failed as unsent within %.0f ms\n",
                  (double)(uv_hrtime() - t0) / 1e6);
    fx_close(&f);
}

static void test_timeout_and_lost(void **state)
{
    (void)state;
    struct fx f;
    struct fake k;
    struct call c;
    fx_init(&f);
    srv_up(&f, 0, true);

    /* written, never answered: timed out (the request may have run) */
    fake_up(&f, &k, FAKE_SILENT);
    uint64_t t0 = uv_hrtime();
    call(&f, f.s[0].c, k.address, CONS_RPC_HELLO, NULL, 300, &c);
    assert_true(run_until(&f.loop, &c.done, 3000));
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    print_message("# call timed out after %.0f ms (timeout 300)\n", ms);
    assert_int_equal(c.status, -ETIMEDOUT);
    assert_true(ms >= 290 && ms < 1000);
    fake_down(&f, &k);

    /* written, then the connection dropped: lost */
    fake_up(&f, &k, FAKE_CLOSE_AFTER_READ);
    call(&f, f.s[0].c, k.address, CONS_RPC_HELLO, NULL, 3000, &c);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(c.status, CONS_RPC_LOST);
    fake_down(&f, &k);

    /* a response over the frame limit: the connection is dropped, the call lost */
    fake_up(&f, &k, FAKE_HUGE_REPLY);
    call(&f, f.s[0].c, k.address, CONS_RPC_HELLO, NULL, 3000, &c);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(c.status, CONS_RPC_LOST);
    fake_down(&f, &k);
    fx_close(&f);
}

static void test_stop_ends_calls(void **state)
{
    (void)state;
    struct fx f;
    struct fake k;
    struct call sent, queued;
    fx_init(&f);
    srv_up(&f, 0, true);
    fake_up(&f, &k, FAKE_SILENT);
    call(&f, f.s[0].c, k.address, CONS_RPC_HELLO, NULL, 10000, &sent);
    assert_true(run_until(&f.loop, &k.accepted, 3000));
    uv_run(&f.loop, UV_RUN_NOWAIT);
    /* queued behind a dial that has not completed */
    char other[48];
    snprintf(other, sizeof other, "127.0.0.1:%d", free_port());
    call(&f, f.s[0].c, other, CONS_RPC_HELLO, NULL, 10000, &queued);
    srv_down(&f, 0);
    assert_true(sent.done);
    assert_true(sent.status == CONS_RPC_LOST || sent.status == BASE_ESHUTDOWN);
    assert_true(queued.done);
    assert_int_equal(queued.status, BASE_ESHUTDOWN);
    fake_down(&f, &k);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_and_reply),     cmocka_unit_test(test_not_leader_answers),
        cmocka_unit_test(test_unsent_and_backoff), cmocka_unit_test(test_timeout_and_lost),
        cmocka_unit_test(test_stop_ends_calls),
    };
    base_log_set_level(BASE_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
