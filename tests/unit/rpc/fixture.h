/* The scaffolding of the tests that run a loop with sockets (rpc, and consensus above it),
 * header-only (static inline): a free port, bounded runs of the loop, and a flag set by a
 * callback. */
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
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

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

#endif
