/* The scaffolding of the consensus unit tests, header-only (static inline), included by each
 * test binary: a loop with a temp tree (removed by rm_tree, zone/fixture.h) and, with a free
 * port and bounded runs of the loop from rpc/fixture.h, one cons server with its own zone store in
 * a directory of its own (dir/raft, dir/zone) and its own server port (an rpc, with the key set in
 * the srv). */
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
#include "rpc/fixture.h"
#include "rpc/rpc.h"
#include "zone/fixture.h"

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

/* ---- one cons server ------------------------------------------------------------------- */

struct srv {
    char dir[96], raft_dir[128], zone_dir[128], address[48];
    int port;
    struct zone_store *store;
    struct rpc *rpc; /* started by srv_start, stopped by srv_stop */
    struct cons *c;
    bool stopped;
    const uint8_t *key; /* the cluster key of its server port (NULL: none) */
    size_t key_len;
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

/* Starts s's server port (if not running) with id. */
static inline void srv_port_start(uv_loop_t *loop, struct srv *s, uint64_t id)
{
    char errmsg[BASE_ERRMSG_LEN] = "";
    if (s->rpc)
        return;
    struct rpc_config rc = {
        .id = id,
        .address = s->address,
        .key = s->key,
        .key_len = s->key_len,
    };
    if (rpc_start(loop, &rc, &s->rpc, errmsg) != 0)
        fail_msg("rpc_start %s: %s", s->address, errmsg);
}

/* Stops s's server port (if running; its cons stopped) and runs the loop until it is freed. */
static inline void srv_port_stop(uv_loop_t *loop, struct srv *s)
{
    bool done = false;
    if (!s->rpc)
        return;
    rpc_stop(s->rpc, set_flag, &done);
    s->rpc = NULL;
    assert_true(run_until(loop, &done, 5000));
}

/* Starts s with cfg (its dir, address, server port and store filled in from s; the store
 * opened and the port started first if they are not). */
static inline void srv_start(uv_loop_t *loop, struct srv *s, struct cons_config *cfg)
{
    char errmsg[BASE_ERRMSG_LEN] = "";
    if (!s->store)
        srv_store_open(s);
    srv_port_start(loop, s, cfg->id);
    cfg->dir = s->raft_dir;
    cfg->address = s->address;
    cfg->store = s->store;
    cfg->rpc = s->rpc;
    if (cons_start(loop, cfg, &s->c, errmsg) != 0)
        fail_msg("cons_start %s: %s", s->address, errmsg);
    s->stopped = false;
}

/* Stops s and its server port, and runs the loop until both are freed. */
static inline void srv_stop(uv_loop_t *loop, struct srv *s)
{
    s->stopped = false;
    cons_stop(s->c, set_flag, &s->stopped);
    s->c = NULL;
    assert_true(run_until(loop, &s->stopped, 5000));
    srv_port_stop(loop, s);
}

#endif
