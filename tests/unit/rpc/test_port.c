/* Tests rpc/port.c: the server port's listener and dialer. One listener carries streams and
 * RPC: the 8-byte preamble picks the protocol and not one byte after it is consumed by the
 * handshake; bad preambles and bad handshakes close the connection, so do streams for another
 * id and streams the owner refuses; dialed sockets have TCP_NODELAY; a dial to a closed port
 * fails, a cancelled one reports UV_ECANCELED; and everything closes with the rpc
 * (uv_loop_close() == 0). Raw clients are libuv handles on the same loop as the server. */
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>

#include "rpc/fixture.h"
#include "rpc/internal.h"

struct fx {
    uv_loop_t loop;
    struct rpc *r;
    int port;
    char address[48];
    uv_tcp_t *stream; /* the stream on_stream took */
    uint64_t stream_from;
    uint8_t stream_in[16];
    size_t stream_got;
    bool stream_closed;
};

/* The stream owner: takes one stream from id 7 (a "member"), refuses the others. */
static bool on_stream(void *data, uv_tcp_t *tcp, const struct rpc_peer *p, const char **why)
{
    struct fx *f = data;
    if (p->id != 7 || f->stream) {
        *why = "stream from an id not in the configuration";
        return false;
    }
    assert_null(tcp->data);
    f->stream = tcp;
    f->stream_from = p->id;
    return true;
}

static void stream_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct fx *f = h->data;
    BASE_UNUSED(suggested);
    buf->base = (char *)f->stream_in + f->stream_got;
    buf->len = sizeof f->stream_in - f->stream_got;
}

static void stream_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct fx *f = s->data;
    BASE_UNUSED(buf);
    if (nread > 0)
        f->stream_got += (size_t)nread;
}

/* A method: answers status 0 and the server's id. */
static void serve_id(void *data, struct rpc_req *req, const uint8_t *body, size_t len)
{
    struct fx *f = data;
    struct base_buf b;
    BASE_UNUSED(body);
    BASE_UNUSED(len);
    base_buf_init(&b);
    base_buf_put_u32(&b, 0);
    base_buf_put_u64(&b, rpc_id(f->r));
    rpc_reply(req, &b);
    base_buf_free(&b);
}

static void fx_up_key(struct fx *f, const uint8_t *key, size_t key_len)
{
    char errmsg[BASE_ERRMSG_LEN] = "";
    memset(f, 0, sizeof *f);
    base_loop_thread_set();
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->port = free_port();
    snprintf(f->address, sizeof f->address, "127.0.0.1:%d", f->port);
    struct rpc_config cfg = {.id = 7, .address = f->address, .key = key, .key_len = key_len};
    if (rpc_start(&f->loop, &cfg, &f->r, errmsg) != 0)
        fail_msg("rpc_start: %s", errmsg);
    rpc_set_streams(f->r, on_stream, f);
    struct rpc_method m = {
        .type = 1, .name = "ID", .access = RPC_ANYONE, .serve = serve_id, .data = f};
    rpc_handle(f->r, &m);
}

static void fx_up(struct fx *f)
{
    fx_up_key(f, NULL, 0);
}

static void stream_closed(uv_handle_t *h)
{
    struct fx *f = h->data;
    base_free(h);
    f->stream_closed = true;
}

static void fx_down(struct fx *f)
{
    bool done = false;
    if (f->stream) {
        f->stream->data = f;
        uv_close((uv_handle_t *)f->stream, stream_closed);
        f->stream = NULL;
        assert_true(run_until(&f->loop, &f->stream_closed, 2000));
    }
    rpc_stop(f->r, set_flag, &done);
    assert_true(run_until(&f->loop, &done, 5000));
    assert_int_equal(uv_run(&f->loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* ---- a raw client ---------------------------------------------------------------------- */

struct client {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    bool connected, eof, closed;
    uint8_t in[4096];
    size_t got;
    uint8_t out[512];
    size_t out_len;
};

static void client_closed(uv_handle_t *h)
{
    struct client *cl = h->data;
    cl->closed = true;
}

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct client *cl = h->data;
    BASE_UNUSED(suggested);
    buf->base = (char *)cl->in + cl->got;
    buf->len = sizeof cl->in - cl->got;
}

static void client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct client *cl = s->data;
    BASE_UNUSED(buf);
    if (nread < 0)
        cl->eof = true;
    else
        cl->got += (size_t)nread;
}

static void client_write_cb(uv_write_t *w, int status)
{
    BASE_UNUSED(w);
    BASE_UNUSED(status);
}

static void client_connect_cb(uv_connect_t *req, int status)
{
    struct client *cl = req->data;
    assert_int_equal(status, 0);
    cl->connected = true;
    uv_read_start((uv_stream_t *)&cl->tcp, client_alloc, client_read);
    if (cl->out_len) {
        uv_buf_t b = uv_buf_init((char *)cl->out, (unsigned)cl->out_len);
        uv_write(&cl->write, (uv_stream_t *)&cl->tcp, &b, 1, client_write_cb);
    }
}

/* Connects and writes bytes (all at once, in one write). */
static void client_open(struct fx *f, struct client *cl, const void *bytes, size_t n)
{
    struct sockaddr_in sa;
    memset(cl, 0, sizeof *cl);
    assert_true(n <= sizeof cl->out);
    memcpy(cl->out, bytes, n);
    cl->out_len = n;
    uv_ip4_addr("127.0.0.1", f->port, &sa);
    uv_tcp_init(&f->loop, &cl->tcp);
    cl->tcp.data = cl;
    cl->connect.data = cl;
    assert_int_equal(
        uv_tcp_connect(&cl->connect, &cl->tcp, (struct sockaddr *)&sa, client_connect_cb), 0);
    assert_true(run_until(&f->loop, &cl->connected, 2000));
}

static void client_close(struct fx *f, struct client *cl)
{
    uv_close((uv_handle_t *)&cl->tcp, client_closed);
    assert_true(run_until(&f->loop, &cl->closed, 2000));
}

/* A client that writes bytes is closed by the server (within 2 s). */
static void assert_closed(struct fx *f, const void *bytes, size_t n)
{
    struct client cl;
    client_open(f, &cl, bytes, n);
    assert_true(run_until(&f->loop, &cl.eof, 2000));
    client_close(f, &cl);
}

static size_t put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return 4;
}

static size_t put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return 8;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_bad_preamble_is_closed(void **state)
{
    (void)state;
    struct fx f;
    struct client cl;
    fx_up(&f);
    client_open(&f, &cl, "GET / HTTP/1.1\r\n\r\n", 18);
    assert_true(run_until(&f.loop, &cl.eof, 2000));
    assert_int_equal(cl.got, 0);
    client_close(&f, &cl);
    fx_down(&f);
}

/* A handshake without a key: preamble, sender id, receiver id, address length, flags 0, 3
 * zeros; the address follows. */
static size_t hs_hdr(uint8_t *b, const char *preamble, uint64_t from, uint64_t to, uint32_t alen)
{
    memcpy(b, preamble, 8);
    size_t n = 8 + put_u64(b + 8, from);
    n += put_u64(b + n, to);
    n += put_u32(b + n, alen);
    memset(b + n, 0, 4);
    return n + 4;
}

static size_t raft_hs(uint8_t *b, uint64_t from, uint64_t to, uint32_t alen)
{
    return hs_hdr(b, "HRLDRAF3", from, to, alen);
}

static void test_bad_raft_handshakes_are_closed(void **state)
{
    (void)state;
    struct fx f;
    uint8_t b[64];
    size_t n;
    fx_up(&f);

    /* id 0 */
    n = raft_hs(b, 0, 7, 4);
    memcpy(b + n, "x:1", 4);
    assert_closed(&f, b, n + 4);

    /* an address over 255 bytes */
    n = raft_hs(b, 3, 7, 100000);
    assert_closed(&f, b, n);

    /* a NUL inside the address */
    n = raft_hs(b, 3, 7, 4);
    memcpy(b + n, "a\0b\0", 4);
    assert_closed(&f, b, n + 4);

    /* the earlier versions' preambles (no receiver id; no flags, unauthenticated) */
    static const char *old[] = {"HRLDRAFT", "HRLDRAF2", "HRLDRPC1"};
    for (size_t i = 0; i < 3; i++) {
        n = raft_hs(b, 7, 7, 4);
        memcpy(b, old[i], 8);
        memcpy(b + n, "x:12", 4);
        assert_closed(&f, b, n + 4);
    }

    /* unknown flags, non-zero padding */
    n = raft_hs(b, 7, 7, 4);
    b[28] = 0x80;
    memcpy(b + n, "x:12", 4);
    assert_closed(&f, b, n + 4);
    n = raft_hs(b, 7, 7, 4);
    b[30] = 1;
    memcpy(b + n, "x:12", 4);
    assert_closed(&f, b, n + 4);

    /* keyed, while this server has no key */
    n = raft_hs(b, 7, 7, 4);
    b[28] = 1;
    memcpy(b + n, "x:12", 4);
    assert_closed(&f, b, n + 4);
    fx_down(&f);
}

/* A stream meant for another server id (this one is 7) is closed: a server that came back
 * with a new id at its former address must not take its former self's votes and appends.
 * A stream the owner refuses (from id 3) is closed too. One it takes (from 7) stays open, and
 * not one byte after the handshake was read by the rpc. */
static void test_raft_stream_for_another_id_is_closed(void **state)
{
    (void)state;
    struct fx f;
    struct client cl;
    uint8_t b[64];
    size_t n;
    fx_up(&f);

    n = raft_hs(b, 7, 8, 4);
    memcpy(b + n, "x:12", 4);
    assert_closed(&f, b, n + 4);

    n = raft_hs(b, 3, 7, 4);
    memcpy(b + n, "x:12", 4);
    assert_closed(&f, b, n + 4);

    n = raft_hs(b, 7, 7, 4);
    memcpy(b + n, "x:12xyz", 7);
    client_open(&f, &cl, b, n + 7);
    assert_false(run_until(&f.loop, &cl.eof, 300));
    assert_non_null(f.stream);
    assert_int_equal(f.stream_from, 7);
    f.stream->data = &f;
    uv_read_start((uv_stream_t *)f.stream, stream_alloc, stream_read);
    uint64_t deadline = uv_now(&f.loop) + 2000;
    while (f.stream_got < 3 && uv_now(&f.loop) < deadline)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_int_equal(f.stream_got, 3);
    assert_memory_equal(f.stream_in, "xyz", 3);
    client_close(&f, &cl);
    fx_down(&f);
}

/* The preamble and a whole HELLO request in ONE write: the RPC layer must see the frame from
 * its first byte (the preamble reader took exactly 8 bytes). */
static void test_rpc_after_preamble_in_one_write(void **state)
{
    (void)state;
    struct fx f;
    struct client cl;
    struct base_buf body, msg;
    fx_up(&f);

    base_buf_init(&body); /* any body: method 1 answers with our id */
    base_buf_put_u64(&body, 99);
    base_buf_put_str(&body, "127.0.0.1:1");
    base_buf_init(&msg);
    uint8_t hs[32];
    base_buf_append(&msg, hs, hs_hdr(hs, "HRLDRPC2", 99, 0, 11));
    base_buf_append(&msg, "127.0.0.1:1", 11);
    base_buf_put_u32(&msg, (uint32_t)(12 + body.len));
    base_buf_put_u8(&msg, 1);
    base_buf_put_u8(&msg, 0);
    base_buf_put_u8(&msg, 0);
    base_buf_put_u8(&msg, 0);
    base_buf_put_u64(&msg, 0x1122334455667788ull);
    base_buf_append(&msg, body.data, body.len);
    client_open(&f, &cl, msg.data, msg.len);
    base_buf_free(&body);
    base_buf_free(&msg);

    /* the response: same id, type | reply, status 0, then the server's id (7) */
    uint64_t deadline = uv_now(&f.loop) + 2000;
    while (cl.got < RPC_HEADER + 12 && uv_now(&f.loop) < deadline && !cl.eof)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_true(cl.got >= RPC_HEADER + 12);
    uint32_t len = get_u32(cl.in);
    assert_int_equal(cl.in[4], 1 | RPC_REPLY);
    assert_int_equal(cl.in[8], 0x88);
    assert_int_equal(cl.in[15], 0x11);
    assert_int_equal(get_u32(cl.in + RPC_HEADER), 0); /* status */
    assert_int_equal(cl.in[RPC_HEADER + 4], 7);       /* its id */
    deadline = uv_now(&f.loop) + 2000;
    while (cl.got < 4 + len && uv_now(&f.loop) < deadline)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_int_equal(cl.got, 4 + len);
    assert_false(cl.eof); /* the connection stays for more requests */
    client_close(&f, &cl);
    fx_down(&f);
}

static void test_rpc_frame_over_limit_is_closed(void **state)
{
    (void)state;
    struct fx f;
    struct client cl;
    uint8_t b[64];
    fx_up(&f);
    size_t h = hs_hdr(b, "HRLDRPC2", 99, 0, 4);
    memcpy(b + h, "x:12", 4);
    h += 4;
    put_u32(b + h, RPC_FRAME_MAX + 13);
    b[h + 4] = 1;
    b[h + 5] = b[h + 6] = b[h + 7] = 0;
    put_u64(b + h + 8, 1);
    client_open(&f, &cl, b, h + 16);
    assert_true(run_until(&f.loop, &cl.eof, 2000));
    assert_int_equal(cl.got, 0);
    client_close(&f, &cl);
    /* over 64 KiB from a peer that is no member (we are alone: 127.0.0.1 is only us) */
    put_u32(b + h, 12 + (100u << 10));
    client_open(&f, &cl, b, h + 16);
    assert_true(run_until(&f.loop, &cl.eof, 2000));
    assert_int_equal(cl.got, 0);
    client_close(&f, &cl);
    /* a header with non-zero padding too */
    put_u32(b + h, 12);
    b[h + 5] = 1;
    assert_closed(&f, b, h + 16);
    fx_down(&f);
}

struct dial {
    bool done;
    int status;
    uv_tcp_t *tcp;
    bool closed;
};

static void dial_cb(void *data, uv_tcp_t *tcp, int status)
{
    struct dial *d = data;
    assert_false(d->done);
    d->done = true;
    d->status = status;
    d->tcp = tcp;
}

static void dialed_closed(uv_handle_t *h)
{
    struct dial *d = h->data;
    base_free(h);
    d->closed = true;
}

static void test_dial(void **state)
{
    (void)state;
    struct fx f;
    struct dial d;
    char addr[48];
    fx_up(&f);

    /* to ourselves: connected, preamble written, TCP_NODELAY on */
    memset(&d, 0, sizeof d);
    rpc__dial_rpc(f.r, f.address, NULL, dial_cb, &d);
    assert_false(d.done);
    assert_true(run_until(&f.loop, &d.done, 3000));
    assert_int_equal(d.status, 0);
    assert_non_null(d.tcp);
    uv_os_fd_t fd;
    int on = 0;
    socklen_t len = sizeof on;
    assert_int_equal(uv_fileno((uv_handle_t *)d.tcp, &fd), 0);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    assert_int_equal(on, 1);
    d.tcp->data = &d;
    uv_close((uv_handle_t *)d.tcp, dialed_closed);
    assert_true(run_until(&f.loop, &d.closed, 2000));

    /* to a closed port */
    memset(&d, 0, sizeof d);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
    rpc__dial_rpc(f.r, addr, NULL, dial_cb, &d);
    assert_true(run_until(&f.loop, &d.done, 3000));
    assert_int_equal(d.status, UV_ECONNREFUSED);
    assert_null(d.tcp);

    /* a bad address fails later, never inside the call */
    memset(&d, 0, sizeof d);
    rpc__dial_rpc(f.r, "[::1", NULL, dial_cb, &d);
    assert_false(d.done);
    assert_true(run_until(&f.loop, &d.done, 3000));
    assert_int_not_equal(d.status, 0);

    /* cancelled */
    memset(&d, 0, sizeof d);
    struct rpc_dial *dl = rpc__dial_rpc(f.r, f.address, NULL, dial_cb, &d);
    rpc_dial_cancel(dl);
    assert_true(run_until(&f.loop, &d.done, 3000));
    assert_int_equal(d.status, UV_ECANCELED);

    /* a name is resolved */
    memset(&d, 0, sizeof d);
    snprintf(addr, sizeof addr, "localhost:%d", f.port);
    rpc__dial_rpc(f.r, addr, NULL, dial_cb, &d);
    assert_true(run_until(&f.loop, &d.done, 5000));
    if (d.status == 0) {
        d.tcp->data = &d;
        uv_close((uv_handle_t *)d.tcp, dialed_closed);
        assert_true(run_until(&f.loop, &d.closed, 2000));
    } else {
        print_message("# localhost did not resolve to our listener: %s\n", uv_strerror(d.status));
    }

    /* pending when the rpc stops: cancelled, then everything closes */
    memset(&d, 0, sizeof d);
    rpc__dial_rpc(f.r, f.address, NULL, dial_cb, &d);
    fx_down(&f);
    assert_true(d.done);
    assert_int_equal(d.status, UV_ECANCELED);
}

/* With a key: a dial to ourselves runs the challenge and response both ways and is handed
 * over; a raw client without the key, or keyed with a wrong proof, is closed. */
static void test_keyed_handshake(void **state)
{
    (void)state;
    struct fx f;
    struct dial d;
    struct client cl;
    uint8_t key[32], b[128];
    memset(key, 'k', sizeof key);
    fx_up_key(&f, key, sizeof key);

    memset(&d, 0, sizeof d);
    rpc__dial_rpc(f.r, f.address, NULL, dial_cb, &d);
    assert_true(run_until(&f.loop, &d.done, 3000));
    assert_int_equal(d.status, 0);
    d.tcp->data = &d;
    uv_close((uv_handle_t *)d.tcp, dialed_closed);
    assert_true(run_until(&f.loop, &d.closed, 2000));

    /* no key */
    size_t n = hs_hdr(b, "HRLDRPC2", 99, 0, 4);
    memcpy(b + n, "x:12", 4);
    assert_closed(&f, b, n + 4);

    /* keyed: the server answers its nonce and proof (64 bytes); a wrong proof is refused */
    n = hs_hdr(b, "HRLDRPC2", 99, 0, 4);
    b[28] = 1;
    memcpy(b + n, "x:12", 4);
    memset(b + n + 4, 'n', 32);
    client_open(&f, &cl, b, n + 4 + 32);
    uint64_t deadline = uv_now(&f.loop) + 2000;
    while (cl.got < 64 && !cl.eof && uv_now(&f.loop) < deadline)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_int_equal(cl.got, 64);
    memset(b, 0, 32);
    uv_buf_t wb = uv_buf_init((char *)b, 32);
    uv_write(&cl.write, (uv_stream_t *)&cl.tcp, &wb, 1, client_write_cb);
    assert_true(run_until(&f.loop, &cl.eof, 2000));
    client_close(&f, &cl);
    fx_down(&f);
}

/* A connection that says nothing is closed after the handshake timeout (5 s). */
static void test_silent_connection_times_out(void **state)
{
    (void)state;
    struct fx f;
    struct client cl;
    fx_up(&f);
    uint64_t t0 = uv_hrtime();
    client_open(&f, &cl, "", 0);
    assert_true(run_until(&f.loop, &cl.eof, 8000));
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    print_message("# silent connection closed after %.0f ms\n", ms);
    assert_true(ms >= 4900);
    client_close(&f, &cl);
    fx_down(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_preamble_is_closed),
        cmocka_unit_test(test_bad_raft_handshakes_are_closed),
        cmocka_unit_test(test_raft_stream_for_another_id_is_closed),
        cmocka_unit_test(test_rpc_after_preamble_in_one_write),
        cmocka_unit_test(test_rpc_frame_over_limit_is_closed),
        cmocka_unit_test(test_dial),
        cmocka_unit_test(test_keyed_handshake),
        cmocka_unit_test(test_silent_connection_times_out),
    };
    base_log_set_level(BASE_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
