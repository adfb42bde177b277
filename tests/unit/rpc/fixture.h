/* The scaffolding of the tests that run a loop with sockets (rpc, and consensus above it),
 * header-only (static inline): a free port, bounded runs of the loop, a flag set by a
 * callback, and rpc calls whose outcome is kept (call: never called back inside rpc_call). */
#ifndef HERALD_TEST_RPC_FIXTURE_H
#define HERALD_TEST_RPC_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "rpc/rpc.h"

/* A TCP port nobody listens on, on ip (a loopback address). */
static inline int free_port_on(const char *ip)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    assert_int_equal(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &len), 0);
    close(s);
    return ntohs(sa.sin_port);
}

static inline int free_port(void)
{
    return free_port_on("127.0.0.1");
}

static inline void timeout_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until pred(arg) is true or timeout_ms pass (a timer bounds every wait). */
static inline bool run_pred(uv_loop_t *loop, bool (*pred)(void *), void *arg, unsigned timeout_ms)
{
    uv_timer_t t;
    bool expired = false, ok;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, timeout_cb, timeout_ms, 0);
    while (!(ok = pred(arg)) && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static inline bool flag_set(void *arg)
{
    return *(const bool *)arg;
}

/* Runs the loop until *flag is true or timeout_ms pass. */
static inline bool run_until(uv_loop_t *loop, const bool *flag, unsigned timeout_ms)
{
    return run_pred(loop, flag_set, (void *)flag, timeout_ms);
}

static inline void set_flag(void *data)
{
    *(bool *)data = true;
}

/* ---- rpc calls --------------------------------------------------------------------------- */

struct call {
    bool done;
    int status;
    uint8_t body[256];
    size_t len;
};

static bool in_call; /* inside rpc_call (call): a callback then is a bug */

static inline void call_cb(void *data, int status, const uint8_t *body, size_t len)
{
    struct call *c = data;
    assert_false(in_call); /* never inside rpc_call */
    assert_false(c->done);
    c->done = true;
    c->status = status;
    c->len = len < sizeof c->body ? len : sizeof c->body;
    if (body && c->len)
        memcpy(c->body, body, c->len);
}

static inline void call(struct rpc_client *cl, const char *to, uint8_t type,
                        const struct base_buf *body, unsigned timeout_ms, struct call *c)
{
    memset(c, 0, sizeof *c);
    in_call = true;
    rpc_call(cl, to, type, body, timeout_ms, call_cb, c);
    in_call = false;
}

static inline uint32_t u32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The status a reply body starts with. */
static inline int32_t status_of(const struct call *c)
{
    assert_true(c->len >= 4);
    return rpc_status_dec(u32_at(c->body));
}

#endif
