/* A cluster of cons instances for the consensus unit tests (test_cluster.c, test_replica.c),
 * header-only: up to NODES_MAX nodes on one loop, each a srv of fixture.h with its own
 * directories, zone store and loopback address (127.0.0.11...), all knowing the others'
 * addresses; what on_applied and on_leader said; bounded runs of the loop until a predicate
 * holds; a settled configuration; the servers' client_allowed (every client unless the node
 * says refuse). */
#ifndef HERALD_TEST_CONSENSUS_CLUSTER_H
#define HERALD_TEST_CONSENSUS_CLUSTER_H

#include "consensus/fixture.h"

#define NODES_MAX 6

struct cl;

struct node {
    struct cl *cl;
    int i;
    struct srv s;
    const char *join[NODES_MAX];
    struct cons_config cfg;
    unsigned restores; /* on_applied with ZONE_TABLE_ALL: a snapshot replaced the catalog */
    unsigned applied_calls;
    uint64_t last_index; /* the last on_applied index */
    bool refuse;         /* client_allowed says no to every client */
    /* what on_leader said last */
    unsigned told;
    bool told_leading;
    uint64_t told_id;
    char told_address[48];
};

struct cl {
    uv_loop_t loop;
    char root[64];
    int n;
    struct node node[NODES_MAX];
};

/* ---- fixture --------------------------------------------------------------------------- */

/* The servers' client_allowed: every client unless the node says refuse. */
static inline bool allow_unless_refused(void *data, const struct sockaddr *sa)
{
    struct node *nd = data;
    BASE_UNUSED(sa);
    return !nd->refuse;
}

static inline void on_applied(void *data, uint64_t index, uint32_t touched)
{
    struct node *nd = data;
    if (touched == ZONE_TABLE_ALL)
        nd->restores++;
    nd->applied_calls++;
    nd->last_index = index;
}

static inline void on_leader(void *data, bool is_leader, uint64_t leader_id,
                             const char *leader_address)
{
    struct node *nd = data;
    assert_true(is_leader != nd->told_leading || leader_id != nd->told_id);
    assert_true(!is_leader || leader_id == nd->cfg.id);
    nd->told++;
    nd->told_leading = is_leader;
    nd->told_id = leader_id;
    snprintf(nd->told_address, sizeof nd->told_address, "%s", leader_address);
}

/* n nodes, all knowing the others' addresses (join lists), bootstrap_expect expect. */
static inline void cl_init(struct cl *cl, int n, unsigned expect)
{
    memset(cl, 0, sizeof *cl);
    loop_init(&cl->loop, cl->root, "cluster");
    cl->n = n;
    for (int i = 0; i < NODES_MAX; i++) {
        struct node *nd = &cl->node[i];
        char ip[24], root[96];
        nd->cl = cl;
        nd->i = i;
        snprintf(ip, sizeof ip, "127.0.0.%u", 11u + (unsigned)i);
        snprintf(root, sizeof root, "%s/n%d", cl->root, i);
        srv_init(&nd->s, root, ip);
        nd->s.stopped = true;
    }
    for (int i = 0; i < NODES_MAX; i++) {
        struct node *nd = &cl->node[i];
        nd->cfg.id = (uint64_t)(100 + i);
        nd->cfg.bootstrap_expect = i < n ? expect : 0;
        size_t k = 0;
        for (int j = 0; j < n; j++)
            if (j != i)
                nd->join[k++] = cl->node[j].s.address;
        nd->cfg.join = nd->join;
        nd->cfg.n_join = i < n ? k : 0;
        nd->cfg.snapshot_threshold = 64;
        nd->cfg.snapshot_trailing = 64;
        nd->cfg.on_applied = on_applied;
        nd->cfg.on_leader = on_leader;
        nd->cfg.data = nd;
        nd->cfg.client_allowed = allow_unless_refused;
        nd->cfg.client_allowed_data = nd;
    }
}

static inline void start(struct node *nd)
{
    /* a new cons tells from scratch */
    nd->told = 0;
    nd->told_leading = false;
    nd->told_id = 0;
    nd->told_address[0] = '\0';
    srv_start(&nd->cl->loop, &nd->s, &nd->cfg);
}

struct cl_pred {
    struct cl *cl;
    bool (*pred)(struct cl *, void *);
    void *arg;
};

static inline bool cl_pred_call(void *arg)
{
    struct cl_pred *p = arg;
    return p->pred(p->cl, p->arg);
}

/* Runs the loop until pred is true or timeout_ms pass. */
static inline bool cl_until(struct cl *cl, bool (*pred)(struct cl *, void *), void *arg,
                            unsigned timeout_ms)
{
    struct cl_pred p = {cl, pred, arg};
    return run_pred(&cl->loop, cl_pred_call, &p, timeout_ms);
}

static inline bool never(void *arg)
{
    BASE_UNUSED(arg);
    return false;
}

static inline void run_for(struct cl *cl, unsigned ms)
{
    run_pred(&cl->loop, never, NULL, ms);
}

static inline void stop(struct node *nd)
{
    srv_stop(&nd->cl->loop, &nd->s);
}

static inline void cl_close(struct cl *cl)
{
    for (int i = 0; i < NODES_MAX; i++) {
        struct node *nd = &cl->node[i];
        if (nd->s.c)
            stop(nd);
        if (nd->s.store)
            zone_store_close(nd->s.store);
        nd->s.store = NULL;
    }
    /* nothing of ours is left on the loop */
    assert_int_equal(uv_run(&cl->loop, UV_RUN_NOWAIT), 0);
    loop_done(&cl->loop, cl->root);
}

static inline int leaders(struct cl *cl, int *which)
{
    int n = 0;
    for (int i = 0; i < NODES_MAX; i++) {
        if (cl->node[i].s.c && cons_is_leader(cl->node[i].s.c)) {
            n++;
            if (which)
                *which = i;
        }
    }
    return n;
}

struct conf {
    int n, voters;
    uint64_t ids[8];
    int roles[8];
};

static inline void conf_add(void *data, const struct cons_server *s)
{
    struct conf *cf = data;
    if (cf->n < 8) {
        cf->ids[cf->n] = s->id;
        cf->roles[cf->n] = s->role;
    }
    cf->n++;
    if (s->role == 1)
        cf->voters++;
}

static inline struct conf conf_of(struct node *nd)
{
    struct conf cf;
    memset(&cf, 0, sizeof cf);
    cons_servers_each(nd->s.c, conf_add, &cf);
    return cf;
}

/* One leader, and every running node follows it with a configuration of `want` voters. */
static inline bool settled(struct cl *cl, void *arg)
{
    int want = *(int *)arg, li = -1;
    if (leaders(cl, &li) != 1)
        return false;
    uint64_t lid;
    const char *laddr;
    cons_leader(cl->node[li].s.c, &lid, &laddr);
    for (int i = 0; i < NODES_MAX; i++) {
        struct node *nd = &cl->node[i];
        if (!nd->s.c)
            continue;
        uint64_t id;
        const char *addr;
        cons_leader(nd->s.c, &id, &addr);
        if (id != lid || conf_of(nd).voters != want)
            return false;
    }
    return true;
}

static inline int wait_settled(struct cl *cl, int voters, unsigned timeout_ms)
{
    int li = -1;
    if (!cl_until(cl, settled, &voters, timeout_ms)) {
        for (int i = 0; i < NODES_MAX; i++)
            if (cl->node[i].s.c)
                print_message("# node %d: leader=%d voters=%d\n", i,
                              cons_is_leader(cl->node[i].s.c), conf_of(&cl->node[i]).voters);
        fail_msg("no settled cluster of %d voters within %u ms", voters, timeout_ms);
    }
    leaders(cl, &li);
    return li;
}

/* Every running node was told (on_leader) what cons_is_leader and cons_leader say now. */
static inline bool told_right(struct cl *cl, void *arg)
{
    BASE_UNUSED(arg);
    for (int i = 0; i < NODES_MAX; i++) {
        struct node *nd = &cl->node[i];
        if (!nd->s.c)
            continue;
        uint64_t id;
        const char *addr;
        cons_leader(nd->s.c, &id, &addr);
        if (nd->told_leading != cons_is_leader(nd->s.c) || nd->told_id != id ||
            strcmp(nd->told_address, addr) != 0)
            return false;
    }
    return true;
}

#endif
