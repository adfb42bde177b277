/* The scaffolding of the consensus unit tests, header-only (static inline), included by each
 * test binary: a free port, a loop with a temp tree (removed by rm_tree, zone/fixture.h),
 * bounded runs of the loop, and one cons server with its own zone store in a directory of its
 * own (dir/raft, dir/zone). */
#ifndef HERALD_TEST_CONSENSUS_FIXTURE_H
#define HERALD_TEST_CONSENSUS_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "consensus/consensus.h"
#include "zone/fixture.h"

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

/* A loop on this thread and a fresh temp tree /tmp/herald-<name>-XXXXXX in root. */
static inline void loop_init(uv_loop_t *loop, char root[64], const char *name)
{
    base_loop_thread_set();
    assert_int_equal(uv_loop_init(loop), 0);
    tmp_dir(root, name);
}

/* The loop closes (nothing is left on it) and the temp tree goes. */
static inline void loop_done(uv_loop_t *loop, const char *root)
{
    assert_int_equal(uv_loop_close(loop), 0);
    rm_tree(root);
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

/* ---- one cons server ------------------------------------------------------------------- */

struct srv {
    char dir[96], raft_dir[128], zone_dir[128], address[48];
    int port;
    struct zone_store *store;
    struct cons *c;
    bool stopped;
};

/* s lives in dir (dir/raft, dir/zone) and listens on a free port of ip. */
static inline void srv_init(struct srv *s, const char *dir, const char *ip)
{
    char d[sizeof s->dir];
    snprintf(d, sizeof d, "%s", dir);
    memcpy(s->dir, d, sizeof d);
    snprintf(s->raft_dir, sizeof s->raft_dir, "%s/raft", d);
    snprintf(s->zone_dir, sizeof s->zone_dir, "%s/zone", d);
    s->port = free_port_on(ip);
    snprintf(s->address, sizeof s->address, "%s:%d", ip, s->port);
}

static inline void srv_store_open(struct srv *s)
{
    char errmsg[BASE_ERRMSG_LEN];
    mkdir(s->dir, 0700);
    mkdir(s->zone_dir, 0700);
    assert_int_equal(zone_store_open(s->zone_dir, 64u << 20, &s->store, errmsg), 0);
}

/* Starts s with cfg (its dir, address and store filled in from s; the store opened first if
 * it is not open). */
static inline void srv_start(uv_loop_t *loop, struct srv *s, struct cons_config *cfg)
{
    char errmsg[BASE_ERRMSG_LEN] = "";
    if (!s->store)
        srv_store_open(s);
    cfg->dir = s->raft_dir;
    cfg->address = s->address;
    cfg->store = s->store;
    if (cons_start(loop, cfg, &s->c, errmsg) != 0)
        fail_msg("cons_start %s: %s", s->address, errmsg);
    s->stopped = false;
}

/* Stops s and runs the loop until its stop callback has run. */
static inline void srv_stop(uv_loop_t *loop, struct srv *s)
{
    s->stopped = false;
    cons_stop(s->c, set_flag, &s->stopped);
    s->c = NULL;
    assert_true(run_until(loop, &s->stopped, 5000));
}

#endif
