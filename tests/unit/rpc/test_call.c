/* Tests rpc/call.c (and the dial bounds of port.c): two server ports on loopback, each with
 * its own client. Methods registered by type answer their calls, several at once on one
 * connection, each matched by id; unknown types answer BASE_EINVAL, a removed type closes the
 * connection (the caller learns RPC_LOST, and the client's on_closed hears of it); a method
 * for members refuses others with BASE_EACL and its refusal bytes, unless the members hook or
 * its allow hook says yes; outcomes say whether the request may have run (unsent vs lost vs
 * timed out); a dead peer backs the client off; closing a client ends every call; stream
 * dials back off within the link's bound, carry its TCP_USER_TIMEOUT, and fail at its dial
 * timeout; stopping frees everything (uv_loop_close() == 0). Fake peers are raw libuv
 * listeners on the same loop. */
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>

#include "rpc/fixture.h"
#include "rpc/internal.h"

#define T_ECHO    10 /* anyone: answers status 0 and the body */
#define T_MEMBERS 11 /* members only: answers status 0 */
#define T_LATER   12 /* anyone: answered from a timer, 50 ms later */

struct port {
    struct rpc *r;
    struct rpc_client *cl;
    char address[48];
    int closed_calls; /* on_closed */
    int closed_status;
};

struct fx {
    uv_loop_t loop;
    struct port p[2];
    bool member; /* what the members hook of port 1 says */
    bool allow;  /* what T_MEMBERS's allow hook says */
    struct rpc_req *later;
    uv_timer_t later_timer;
};

static void on_closed(void *data, const char *address, int status)
{
    struct port *p = data;
    BASE_UNUSED(address);
    p->closed_calls++;
    p->closed_status = status;
}

static void serve_echo(void *data, struct rpc_req *req, const uint8_t *body, size_t len)
{
    struct base_buf b;
    BASE_UNUSED(data);
    base_buf_init(&b);
    base_buf_put_u32(&b, 0);
    base_buf_append(&b, body, len);
    rpc_reply(req, &b);
    base_buf_free(&b);
}

static void later_cb(uv_timer_t *t)
{
    struct fx *f = t->data;
    struct base_buf b;
    base_buf_init(&b);
    base_buf_put_u32(&b, 0);
    base_buf_put_u32(&b, 0x1a7e);
    rpc_reply(f->later, &b);
    f->later = NULL;
    base_buf_free(&b);
}

static void serve_later(void *data, struct rpc_req *req, const uint8_t *body, size_t len)
{
    struct fx *f = data;
    BASE_UNUSED(body);
    BASE_UNUSED(len);
    assert_null(f->later);
    f->later = req;
    uv_timer_start(&f->later_timer, later_cb, 50, 0);
}

static bool is_member(void *data, const struct rpc_peer *p)
{
    BASE_UNUSED(p);
    return ((struct fx *)data)->member;
}

static bool allow(void *data, const struct rpc_peer *p)
{
    BASE_UNUSED(p);
    return ((struct fx *)data)->allow;
}

static void port_up(struct fx *f, int i)
{
    char errmsg[BASE_ERRMSG_LEN] = "";
    struct port *p = &f->p[i];
    snprintf(p->address, sizeof p->address, "127.0.0.1:%d", free_port());
    struct rpc_config cfg = {.id = (uint64_t)(i + 1), .address = p->address};
    if (rpc_start(&f->loop, &cfg, &p->r, errmsg) != 0)
        fail_msg("rpc_start: %s", errmsg);
    struct rpc_client_config cc = {.on_closed = on_closed, .data = p};
    p->cl = rpc_client_new(p->r, &cc);
}

static void fx_init(struct fx *f)
{
    memset(f, 0, sizeof *f);
    base_loop_thread_set();
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->later_timer);
    f->later_timer.data = f;
    port_up(f, 0);
    port_up(f, 1);
    /* port 1 serves; port 0 calls it */
    struct rpc *r = f->p[1].r;
    rpc_handle(r, &(struct rpc_method){
                      .type = T_ECHO, .name = "ECHO", .access = RPC_ANYONE, .serve = serve_echo});
    rpc_handle(r, &(struct rpc_method){.type = T_MEMBERS,
                                       .name = "MEMBERS",
                                       .access = RPC_MEMBERS,
                                       .allow = allow,
                                       .refused = "MEMBERS from a non-member address",
                                       .refusal = "\x2a\0\0\0",
                                       .refusal_len = 4,
                                       .serve = serve_echo,
                                       .data = f});
    rpc_handle(r, &(struct rpc_method){.type = T_LATER,
                                       .name = "LATER",
                                       .access = RPC_ANYONE,
                                       .serve = serve_later,
                                       .data = f});
    rpc_set_members(r, is_member, f);
}

static void fx_close(struct fx *f)
{
    bool done[2] = {false, false};
    for (int i = 0; i < 2; i++) {
        if (f->p[i].cl)
            rpc_client_close(f->p[i].cl);
        rpc_stop(f->p[i].r, set_flag, &done[i]);
    }
    uv_close((uv_handle_t *)&f->later_timer, NULL);
    assert_true(run_until(&f->loop, &done[0], 5000));
    assert_true(run_until(&f->loop, &done[1], 5000));
    assert_int_equal(uv_run(&f->loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
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
    if (k->got < hs + RPC_HEADER)
        return;
    if (k->mode == FAKE_CLOSE_AFTER_READ && !uv_is_closing((uv_handle_t *)&k->conn)) {
        uv_close((uv_handle_t *)&k->conn, fake_closed);
    } else if (k->mode == FAKE_HUGE_REPLY && k->got == hs + 4 + (size_t)k->in[hs]) {
        /* a reply header announcing a frame over the limit */
        uint32_t len = RPC_FRAME_MAX + 100;
        for (int i = 0; i < 4; i++)
            k->out[i] = (uint8_t)(len >> (8 * i));
        k->out[4] = T_ECHO | RPC_REPLY;
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
    struct rpc_client *cl = f.p[0].cl;
    const char *to = f.p[1].address;

    /* three calls at once on one connection, each matched with its own response */
    for (int i = 0; i < 3; i++) {
        base_buf_init(&b);
        base_buf_put_u32(&b, (uint32_t)(100 + i));
        call(cl, to, T_ECHO, &b, 2000, &c[i]);
        base_buf_free(&b);
    }
    for (int i = 0; i < 3; i++) {
        assert_true(run_until(&f.loop, &c[i].done, 3000));
        assert_int_equal(c[i].status, 0);
        assert_int_equal(status_of(&c[i]), 0);
        assert_int_equal(c[i].len, 8);
        assert_int_equal(u32_at(c[i].body + 4), 100 + i);
    }

    /* answered later, from a timer: the connection waits for it */
    call(cl, to, T_LATER, NULL, 2000, &c[0]);
    assert_true(run_until(&f.loop, &c[0].done, 3000));
    assert_int_equal(status_of(&c[0]), 0);
    assert_int_equal(u32_at(c[0].body + 4), 0x1a7e);

    /* a type nobody registered: a status, the connection stays */
    call(cl, to, 77, NULL, 2000, &c[0]);
    assert_true(run_until(&f.loop, &c[0].done, 3000));
    assert_int_equal(c[0].status, 0);
    assert_int_equal(status_of(&c[0]), BASE_EINVAL);
    assert_int_equal(f.p[0].closed_calls, 0);

    /* a method registered now is served at once */
    rpc_handle(f.p[1].r, &(struct rpc_method){
                             .type = 77, .name = "NEW", .access = RPC_ANYONE, .serve = serve_echo});
    call(cl, to, 77, NULL, 2000, &c[0]);
    assert_true(run_until(&f.loop, &c[0].done, 3000));
    assert_int_equal(status_of(&c[0]), 0);

    /* removed: its requests close the connection as a stopped server would (fate unknown) */
    rpc_unhandle(f.p[1].r, 77);
    call(cl, to, 77, NULL, 2000, &c[0]);
    assert_true(run_until(&f.loop, &c[0].done, 3000));
    assert_int_equal(c[0].status, RPC_LOST);
    assert_int_equal(f.p[0].closed_calls, 1);
    assert_int_equal(f.p[0].closed_status, UV_EOF);
    /* and the next call connects again */
    call(cl, to, T_ECHO, NULL, 2000, &c[0]);
    assert_true(run_until(&f.loop, &c[0].done, 3000));
    assert_int_equal(status_of(&c[0]), 0);
    fx_close(&f);
}

static void test_members_only(void **state)
{
    (void)state;
    struct fx f;
    struct call c;
    fx_init(&f);
    struct rpc_client *cl = f.p[0].cl;
    const char *to = f.p[1].address;

    /* not a member, not allowed: refused with the method's refusal bytes */
    call(cl, to, T_MEMBERS, NULL, 2000, &c);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(c.status, 0);
    assert_int_equal(status_of(&c), BASE_EACL);
    assert_int_equal(c.len, 8);
    assert_int_equal(u32_at(c.body + 4), 0x2a);
    /* the members hook says yes */
    f.member = true;
    call(cl, to, T_MEMBERS, NULL, 2000, &c);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(status_of(&c), 0);
    /* or the method's allow hook does */
    f.member = false;
    f.allow = true;
    call(cl, to, T_MEMBERS, NULL, 2000, &c);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(status_of(&c), 0);
    fx_close(&f);
}

static void test_unsent_and_backoff(void **state)
{
    (void)state;
    struct fx f;
    struct call c;
    char dead[48];
    fx_init(&f);
    snprintf(dead, sizeof dead, "127.0.0.1:%d", free_port());
    uint64_t t0 = uv_hrtime();
    call(f.p[0].cl, dead, T_ECHO, NULL, 5000, &c);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(c.status, RPC_UNSENT);
    /* backing off: the next call is failed as unsent by the tick, not held for the backoff */
    call(f.p[0].cl, dead, T_ECHO, NULL, 5000, &c);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(c.status, RPC_UNSENT);
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
    struct rpc_client *cl = f.p[0].cl;

    /* written, never answered: timed out (the request may have run) */
    fake_up(&f, &k, FAKE_SILENT);
    uint64_t t0 = uv_hrtime();
    call(cl, k.address, T_ECHO, NULL, 300, &c);
    assert_true(run_until(&f.loop, &c.done, 3000));
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    print_message("# call timed out after %.0f ms (timeout 300)\n", ms);
    assert_int_equal(c.status, -ETIMEDOUT);
    assert_true(ms >= 290 && ms < 1000);
    fake_down(&f, &k);

    /* written, then the connection dropped: lost */
    fake_up(&f, &k, FAKE_CLOSE_AFTER_READ);
    call(cl, k.address, T_ECHO, NULL, 3000, &c);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(c.status, RPC_LOST);
    fake_down(&f, &k);

    /* a response over the frame limit: the connection is dropped, the call lost */
    fake_up(&f, &k, FAKE_HUGE_REPLY);
    call(cl, k.address, T_ECHO, NULL, 3000, &c);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(c.status, RPC_LOST);
    fake_down(&f, &k);
    fx_close(&f);
}

static void test_client_close_ends_calls(void **state)
{
    (void)state;
    struct fx f;
    struct fake k;
    struct call sent, queued;
    fx_init(&f);
    fake_up(&f, &k, FAKE_SILENT);
    call(f.p[0].cl, k.address, T_ECHO, NULL, 10000, &sent);
    assert_true(run_until(&f.loop, &k.accepted, 3000));
    uv_run(&f.loop, UV_RUN_NOWAIT);
    /* queued behind a dial that has not completed */
    char other[48];
    snprintf(other, sizeof other, "127.0.0.1:%d", free_port());
    call(f.p[0].cl, other, T_ECHO, NULL, 10000, &queued);
    rpc_client_close(f.p[0].cl);
    f.p[0].cl = NULL;
    assert_true(sent.done);
    assert_true(sent.status == RPC_LOST || sent.status == BASE_ESHUTDOWN);
    assert_true(queued.done);
    assert_int_equal(queued.status, BASE_ESHUTDOWN);
    assert_int_equal(f.p[0].closed_calls, 0); /* closed by us: not reported */
    fake_down(&f, &k);
    fx_close(&f);
}

/* A call's callback closes its own client (from the tick that expires it, with another call
 * on the same connection and one queued elsewhere): every call ends once, nothing is freed
 * under the tick. */
struct closer {
    struct fx *f;
    struct call first, second, third;
};

static void closer_cb(void *data, int status, const uint8_t *body, size_t len)
{
    struct closer *k = data;
    call_cb(&k->first, status, body, len);
    rpc_client_close(k->f->p[0].cl);
    k->f->p[0].cl = NULL;
}

static void test_close_from_callback(void **state)
{
    (void)state;
    struct fx f;
    struct fake k;
    struct closer c;
    char other[48];
    fx_init(&f);
    fake_up(&f, &k, FAKE_SILENT);
    memset(&c, 0, sizeof c);
    c.f = &f;
    rpc_call(f.p[0].cl, k.address, T_ECHO, NULL, 100, closer_cb, &c);
    call(f.p[0].cl, k.address, T_ECHO, NULL, 10000, &c.second);
    snprintf(other, sizeof other, "127.0.0.1:%d", free_port());
    assert_true(run_until(&f.loop, &k.accepted, 3000));
    call(f.p[0].cl, other, T_ECHO, NULL, 10000, &c.third);
    assert_true(run_until(&f.loop, &c.first.done, 3000));
    assert_int_equal(c.first.status, -ETIMEDOUT);
    assert_true(c.second.done);
    assert_true(c.second.status == RPC_LOST || c.second.status == BASE_ESHUTDOWN);
    assert_true(c.third.done);
    fake_down(&f, &k);
    fx_close(&f);
}

/* The callback of a call lost with its connection (the peer closed it) closes the client:
 * nothing of the client is used after (it was freed under the close of the connection). */
static void test_close_from_lost_callback(void **state)
{
    (void)state;
    struct fx f;
    struct fake k;
    struct closer c;
    fx_init(&f);
    fake_up(&f, &k, FAKE_CLOSE_AFTER_READ);
    memset(&c, 0, sizeof c);
    c.f = &f;
    rpc_call(f.p[0].cl, k.address, T_ECHO, NULL, 3000, closer_cb, &c);
    assert_true(run_until(&f.loop, &c.first.done, 3000));
    assert_int_equal(c.first.status, RPC_LOST);
    assert_null(f.p[0].cl);
    fake_down(&f, &k);
    fx_close(&f);
}

/* A call's callback, from the tick, closes another client of the same rpc, the one the tick
 * visits next (it has no peers: it is freed at once): the tick goes on without it. */
struct other_closer {
    struct fx *f;
    struct call first;
};

static void other_closer_cb(void *data, int status, const uint8_t *body, size_t len)
{
    struct other_closer *o = data;
    call_cb(&o->first, status, body, len);
    rpc_client_close(o->f->p[0].cl);
    o->f->p[0].cl = NULL;
}

static void test_close_other_client_from_callback(void **state)
{
    (void)state;
    struct fx f;
    struct fake k;
    struct other_closer o;
    fx_init(&f);
    fake_up(&f, &k, FAKE_SILENT);
    memset(&o, 0, sizeof o);
    o.f = &f;
    /* newer than p[0].cl: ticked just before it */
    struct rpc_client *cl = rpc_client_new(f.p[0].r, NULL);
    rpc_call(cl, k.address, T_ECHO, NULL, 100, other_closer_cb, &o);
    assert_true(run_until(&f.loop, &o.first.done, 3000));
    assert_int_equal(o.first.status, -ETIMEDOUT);
    assert_null(f.p[0].cl);
    /* the tick still runs for the client that is left */
    struct call c;
    call(cl, k.address, T_ECHO, NULL, 100, &c);
    assert_true(run_until(&f.loop, &c.done, 3000));
    assert_int_equal(c.status, -ETIMEDOUT);
    rpc_client_close(cl);
    fake_down(&f, &k);
    fx_close(&f);
}

/* ---- stream dials ------------------------------------------------------------------------ */

struct sdial {
    struct fx *f;
    bool done, closed;
    int status;
    uv_tcp_t *tcp;
    uint64_t at; /* uv_hrtime of the callback */
};

static void sdial_cb(void *data, uv_tcp_t *tcp, int status)
{
    struct sdial *d = data;
    assert_false(d->done);
    d->done = true;
    d->status = status;
    d->tcp = tcp;
    d->at = uv_hrtime();
}

static void sdial_closed(uv_handle_t *h)
{
    struct sdial *d = h->data;
    base_free(h);
    d->closed = true;
}

static struct rpc_dial *sdial(struct fx *f, struct sdial *d, uint64_t to, const char *address,
                              const struct rpc_link *link)
{
    memset(d, 0, sizeof *d);
    d->f = f;
    struct rpc_stream_dial sd = {
        .to = to, .address = address, .link = link, .cb = sdial_cb, .data = d};
    return rpc_dial_stream(f->p[0].r, &sd);
}

static void taken_closed(uv_handle_t *h)
{
    base_free(h);
}

static bool take_stream(void *data, uv_tcp_t *tcp, const struct rpc_peer *p, const char **why)
{
    BASE_UNUSED(data);
    BASE_UNUSED(why);
    BASE_UNUSED(p);
    uv_close((uv_handle_t *)tcp, taken_closed);
    return true;
}

/* A dead peer: each redial waits out the link's backoff, doubling from min to at most max;
 * a live one: the stream carries the link's TCP_USER_TIMEOUT. */
static void test_stream_backoff_and_user_timeout(void **state)
{
    (void)state;
    struct fx f;
    struct sdial d;
    char dead[48];
    fx_init(&f);
    snprintf(dead, sizeof dead, "127.0.0.1:%d", free_port());
    struct rpc_link link = {.backoff_min_ms = 40, .backoff_max_ms = 100, .user_timeout_ms = 300};
    double waits[6];
    uint64_t t = uv_hrtime();
    for (int i = 0; i < 6; i++) {
        sdial(&f, &d, 42, dead, &link);
        assert_true(run_until(&f.loop, &d.done, 3000));
        assert_int_equal(d.status, UV_ECONNREFUSED);
        waits[i] = (double)(d.at - t) / 1e6;
        t = d.at;
    }
    print_message("# redials to a dead peer after %.0f %.0f %.0f %.0f %.0f %.0f ms\n", waits[0],
                  waits[1], waits[2], waits[3], waits[4], waits[5]);
    assert_true(waits[0] < 40);                    /* the first dial does not wait */
    assert_true(waits[1] >= 35 && waits[1] < 200); /* 40 */
    assert_true(waits[2] >= 75 && waits[2] < 250); /* 80 */
    assert_true(waits[5] >= 95 && waits[5] < 250); /* capped at 100 */

    /* to a live server (port 1 as id 2): connected, with the link's user timeout */
    rpc_set_streams(f.p[1].r, take_stream, NULL);
    sdial(&f, &d, 2, f.p[1].address, &link);
    assert_true(run_until(&f.loop, &d.done, 3000));
    assert_int_equal(d.status, 0);
    uv_os_fd_t fd;
    unsigned ut = 0;
    socklen_t len = sizeof ut;
    assert_int_equal(uv_fileno((uv_handle_t *)d.tcp, &fd), 0);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, &len), 0);
    assert_int_equal(ut, 300);
    d.tcp->data = &d;
    uv_close((uv_handle_t *)d.tcp, sdial_closed);
    assert_true(run_until(&f.loop, &d.closed, 2000));
    fx_close(&f);
}

/* A peer that accepts and never completes the handshake (keyed: its proof never comes): the
 * dial fails at the link's dial timeout. */
static void test_dial_timeout(void **state)
{
    (void)state;
    struct fx f;
    struct fake k;
    struct sdial d;
    fx_init(&f);
    /* port 0 keyed, so its dial waits for the server's proof */
    memset(f.p[0].r->key, 'k', 32);
    f.p[0].r->key_len = 32;
    fake_up(&f, &k, FAKE_SILENT);
    struct rpc_link link = {.dial_timeout_ms = 200};
    uint64_t t0 = uv_hrtime();
    sdial(&f, &d, 9, k.address, &link);
    assert_true(run_until(&f.loop, &d.done, 3000));
    double ms = (double)(d.at - t0) / 1e6;
    print_message("# dial timed out after %.0f ms (bound 200)\n", ms);
    assert_int_equal(d.status, UV_ETIMEDOUT);
    assert_true(ms >= 190 && ms < 1000);
    fake_down(&f, &k);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_and_reply),
        cmocka_unit_test(test_members_only),
        cmocka_unit_test(test_unsent_and_backoff),
        cmocka_unit_test(test_timeout_and_lost),
        cmocka_unit_test(test_client_close_ends_calls),
        cmocka_unit_test(test_close_from_callback),
        cmocka_unit_test(test_close_from_lost_callback),
        cmocka_unit_test(test_close_other_client_from_callback),
        cmocka_unit_test(test_stream_backoff_and_user_timeout),
        cmocka_unit_test(test_dial_timeout),
    };
    base_log_set_level(BASE_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
