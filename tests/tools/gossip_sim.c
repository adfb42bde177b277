/* gossip_sim: N gossip engines (gossip/gossip.h) in one process, on one libuv loop, over a
 * simulated network (issue 11, item 6's "simulation of 1,000 members").
 *
 *   gossip_sim [-n N] [-loss PCT] [-latency MS] [-jitter MS] [-settle S] [-idle S] [-tail S]
 *              [-timeout S] [-parallel K] [-join-rate R] [-push-pull MS] [-converge-wait S]
 *              [-slow K] [-seed X] [-net B] [-port P] [-fast] [-json] [-v]
 *
 * The network. Each engine's datagrams go through the engine's net.send hook (gossip.h's
 * struct gossip_net) into a queue ordered by delivery time, and reach the addressee through
 * gossip_net_deliver (the engine's own packet decoder) after latency ± jitter milliseconds
 * (uniform; libuv's clock has a millisecond resolution, so 1 ± 0.5 ms is delivered 1 or 2 ms
 * later), unless lost: each datagram is dropped with probability loss. TCP (joins, push-pull,
 * memberlist's fallback ping) is real, over loopback: engine i listens on 127.B.(i/250).(2+i%250)
 * port P, so every member has its own address as on a LAN. Time is real (the loop's clock):
 * when the process needs more than one core's worth of CPU, the loop lags and every delay grows
 * with it; the lag is measured (a 10 ms timer's lateness) and reported. -slow K runs in slow
 * motion: every duration of the engines' configuration and of the network is multiplied by K,
 * and every figure is given in simulated time (wall time / K; bytes per simulated second), so a
 * pool whose work does not fit one core in real time keeps its timing: the protocol behaves the
 * same at any time scale, and the CPU's own delays shrink K times relative to it (as they would
 * with a CPU per member). The phases' lengths (-settle, -idle, -tail, -timeout) are simulated.
 *
 * The run, in phases, each bounded by -timeout:
 *   join      member 0 starts; member i (1..N-1) starts at i / R seconds (-join-rate R, default
 *             50) and joins (gossip_join) a random member already joined, at most K at once
 *             (-parallel, default 16; a refused join is retried elsewhere, up to 5 times);
 *   converge  until every member lists N alive: "converge" is from the first join, and from
 *             the last one's end (-converge-wait S: at most S seconds after 99% of the members
 *             do, then the run goes on and says how many members missed how many);
 *   settle    S seconds for the joins' broadcasts to run out, then
 *   idle      S seconds: UDP bytes sent per member per second (gossip_stats' udp_bytes_out);
 *   join1     a new member joins a random one: the time until the first and every other member
 *             lists it alive;
 *   kill      2 s later a random member (not the seed, not the new one, one every member
 *             lists) is killed: the network
 *             drops everything to and from it, in flight too, and its engine is stopped (so its
 *             TCP port refuses, as a crashed agent's): the time until the first and every
 *             survivor lists it failed;
 *   tail      S more seconds of watching.
 * A false positive is any member listed failed by anyone while it is healthy (every member but
 * the killed one, over the whole run); refutes (a healthy member answering a suspicion) are
 * counted too.
 *
 * Timings are the engine's defaults (gossip_config_defaults) or, with -fast, the unit
 * tests' (probe 100 ms, gossip 20 ms); -push-pull MS replaces the push-pull interval (the
 * integration test's short run shortens the wait of a member a broadcast missed). Prints a summary;
 * -json prints it as one JSON object on the last line. Exit 0 when every phase completed, 1 when
 * one timed out (the summary says which), 2 on usage. Build: make build/tests/tools/gossip_sim
 * (links gossip and base only); tests/bench/gossip_sim.sh runs it for a table. */
#include "gossip/gossip.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- options ------------------------------------------------------------------------------- */

static int opt_n = 10;
static double opt_loss = 0, opt_latency = 1, opt_jitter = 0.5;
static double opt_settle = 10, opt_idle = 10, opt_tail = 5, opt_timeout = 300, opt_slow = 1;
static int opt_parallel = 16, opt_net = 120, opt_port;
static double opt_join_rate = 50, opt_push_pull = -1, opt_converge_wait = -1;
static uint64_t opt_seed;
static bool opt_fast, opt_json, opt_verbose;

/* ---- members ------------------------------------------------------------------------------- */

enum { V_NONE, V_ALIVE, V_FAILED, V_LEFT };

struct snode {
    int idx;
    struct gossip *g;
    char name[16], addr[32];
    struct sockaddr_in sa;
    bool started, killed, joined, joining;
    int join_tries;
    uint8_t *view; /* what this member lists about each other, by index */
    int n_alive;
    double saw_new_at, saw_victim_failed_at; /* seconds since the phase began, or -1 */
};

static uv_loop_t loop;
static struct snode *nodes;
static int n_total; /* opt_n + the new member */
static uint64_t rng;

static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

static double rnd01(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

/* Simulated seconds: wall seconds / -slow */
static double now_s(void)
{
    return (double)uv_hrtime() / 1e9 / opt_slow;
}

/* A duration of the engine's configuration, or the network's, in wall milliseconds. */
static uint64_t slowed(uint64_t ms)
{
    return (uint64_t)((double)ms * opt_slow);
}

/* ---- the results --------------------------------------------------------------------------- */

static struct {
    double t0;                        /* the run's start */
    double join_start, joins_done;    /* since t0 */
    double converge, converge99;      /* every member, 99% of them list N: since join_start */
    double bw, pps;                   /* idle: bytes and packets sent per member per second */
    double new_first, new_all;        /* join1 */
    double fail_first, fail_all;      /* kill */
    int stragglers;                   /* -converge-wait: members not listing all when it ran out */
    uint64_t missing;                 /* and the members they missed, in all */
    uint64_t false_positives;         /* fail events about a healthy member */
    int fp_members;                   /* distinct healthy members ever listed failed */
    uint64_t refutes, probe_failures; /* summed over the engines */
    uint64_t join_retries, sent, delivered, lost, dropped_dead, udp_bad;
    double lag_max_ms, lag_sum_ms;
    uint64_t lag_n, lag_over_100;
    const char *failed_phase;
} res = {.new_first = -1, .new_all = -1, .fail_first = -1, .fail_all = -1};
static uint8_t *fp_seen;
static int victim = -1, newcomer = -1;

/* ---- the simulated network ------------------------------------------------------------------ */

struct pkt {
    uint64_t due_us, seq;
    int from, to;
    size_t len;
    uint8_t data[];
};

static struct pkt **heap;
static size_t n_heap, cap_heap;
static uint64_t pkt_seq;
static uv_timer_t net_timer;
static uint64_t net_armed_ms = UINT64_MAX;

static bool pkt_before(const struct pkt *a, const struct pkt *b)
{
    return a->due_us < b->due_us || (a->due_us == b->due_us && a->seq < b->seq);
}

static void heap_push(struct pkt *p)
{
    if (n_heap == cap_heap) {
        cap_heap = cap_heap ? 2 * cap_heap : 1024;
        heap = base_realloc(heap, cap_heap * sizeof(*heap));
    }
    size_t i = n_heap++;
    heap[i] = p;
    while (i > 0 && pkt_before(heap[i], heap[(i - 1) / 2])) {
        struct pkt *t = heap[i];
        heap[i] = heap[(i - 1) / 2];
        heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static struct pkt *heap_pop(void)
{
    struct pkt *top = heap[0];
    heap[0] = heap[--n_heap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n_heap && pkt_before(heap[l], heap[m]))
            m = l;
        if (r < n_heap && pkt_before(heap[r], heap[m]))
            m = r;
        if (m == i)
            break;
        struct pkt *t = heap[i];
        heap[i] = heap[m];
        heap[m] = t;
        i = m;
    }
    return top;
}

static void on_net_timer(uv_timer_t *t);

static void net_arm(void)
{
    if (!n_heap)
        return;
    uint64_t due_ms = (heap[0]->due_us + 999) / 1000;
    if (due_ms >= net_armed_ms)
        return;
    uint64_t now = uv_now(&loop);
    net_armed_ms = due_ms;
    uv_timer_start(&net_timer, on_net_timer, due_ms > now ? due_ms - now : 0, 0);
}

static void on_net_timer(uv_timer_t *t)
{
    BASE_UNUSED(t);
    net_armed_ms = UINT64_MAX;
    uint64_t now_us = uv_now(&loop) * 1000;
    /* packets sent during these deliveries are due after now_us (latency >= 1 us) */
    while (n_heap && heap[0]->due_us <= now_us) {
        struct pkt *p = heap_pop();
        struct snode *to = &nodes[p->to];
        if (nodes[p->from].killed || to->killed || !to->started) {
            res.dropped_dead++;
        } else {
            res.delivered++;
            gossip_net_deliver(to->g, (const struct sockaddr *)&nodes[p->from].sa, p->data, p->len);
        }
        base_free(p);
    }
    net_arm();
}

/* The node an address names: 127.B.(i/250).(2+i%250), our port. */
static int node_of(const struct sockaddr *sa)
{
    if (sa->sa_family != AF_INET)
        return -1;
    const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
    const uint8_t *a = (const uint8_t *)&s->sin_addr;
    if (ntohs(s->sin_port) != opt_port || a[0] != 127 || a[1] != opt_net || a[3] < 2)
        return -1;
    int i = a[2] * 250 + (a[3] - 2);
    return i < n_total ? i : -1;
}

static int net_send(void *ctx, const struct sockaddr *to_sa, const uint8_t *p, size_t len)
{
    struct snode *from = ctx;
    res.sent++;
    int to = node_of(to_sa);
    if (to < 0 || from->killed || nodes[to].killed || !nodes[to].started) {
        res.dropped_dead++;
        return 0;
    }
    if (opt_loss > 0 && rnd01() * 100.0 < opt_loss) {
        res.lost++;
        return 0;
    }
    double lat = opt_latency + (opt_jitter > 0 ? (rnd01() * 2 - 1) * opt_jitter : 0);
    uint64_t lat_us = lat <= 0.001 ? 1 : (uint64_t)(lat * 1000.0 * opt_slow);
    struct pkt *k = base_malloc(sizeof(*k) + len);
    k->due_us = uv_now(&loop) * 1000 + lat_us;
    k->seq = pkt_seq++;
    k->from = from->idx;
    k->to = to;
    k->len = len;
    memcpy(k->data, p, len);
    heap_push(k);
    net_arm();
    return 0;
}

/* ---- events ---------------------------------------------------------------------------------- */

enum phase {
    PH_START,
    PH_JOIN,
    PH_CONVERGE,
    PH_SETTLE,
    PH_IDLE,
    PH_JOIN1,
    PH_GAP,
    PH_KILL,
    PH_TAIL,
    PH_DONE
};
static const char *const phase_names[] = {"start", "join", "converge", "settle", "idle",
                                          "join1", "gap",  "kill",     "tail",   "done"};
static enum phase phase;
static double phase_t0; /* now_s() when the phase began */

static int index_of(const char *name)
{
    if (name[0] != 'm')
        return -1;
    char *end;
    long i = strtol(name + 1, &end, 10);
    return *end == 0 && i >= 0 && i < n_total ? (int)i : -1;
}

static void set_view(struct snode *n, int j, uint8_t v)
{
    if (n->view[j] == V_ALIVE)
        n->n_alive--;
    n->view[j] = v;
    if (v == V_ALIVE)
        n->n_alive++;
}

static void on_event(void *ctx, const struct gossip_event *ev)
{
    struct snode *n = ctx;
    if (ev->kind == GOSSIP_EVENT_USER)
        return;
    int j = index_of(ev->node->name);
    if (j < 0)
        return;
    switch (ev->kind) {
    case GOSSIP_EVENT_JOIN:
    case GOSSIP_EVENT_UPDATE:
        set_view(n, j, V_ALIVE);
        if (j == newcomer && n->saw_new_at < 0 && phase == PH_JOIN1)
            n->saw_new_at = now_s() - phase_t0;
        break;
    case GOSSIP_EVENT_FAIL:
        set_view(n, j, V_FAILED);
        if (j == victim) {
            if (n->saw_victim_failed_at < 0)
                n->saw_victim_failed_at = now_s() - phase_t0;
        } else {
            res.false_positives++;
            if (!fp_seen[j]) {
                fp_seen[j] = 1;
                res.fp_members++;
            }
            if (opt_verbose && res.false_positives <= 20)
                fprintf(stderr, "gossip_sim: %.3f s: %s lists healthy %s failed (%s)\n",
                        now_s() - res.t0, n->name, ev->node->name, phase_names[phase]);
        }
        break;
    case GOSSIP_EVENT_LEAVE:
        set_view(n, j, V_LEFT);
        break;
    case GOSSIP_EVENT_REAP:
        set_view(n, j, V_NONE);
        break;
    default:
        break;
    }
}

/* ---- engines --------------------------------------------------------------------------------- */

static const struct gossip_tag tags[] = {
    /* about what a Consul client carries */
    {"role", "node"}, {"dc", "dc1"},
    {"segment", ""},  {"id", "00000000-0000-0000-0000-000000000000"},
    {"vsn", "2"},     {"vsn_min", "2"},
    {"vsn_max", "3"}, {"build", "1.10.0:sim"}};

static void node_start(struct snode *n)
{
    struct gossip_config c;
    gossip_config_defaults(&c);
    if (opt_fast) {
        c.probe_interval_ms = 100;
        c.probe_timeout_ms = 40;
        c.gossip_interval_ms = 20;
        c.push_pull_interval_ms = 500;
        c.leave_propagate_ms = 100;
    }
    if (opt_push_pull >= 0)
        c.push_pull_interval_ms = (uint64_t)opt_push_pull;
    c.probe_interval_ms = slowed(c.probe_interval_ms);
    c.probe_timeout_ms = slowed(c.probe_timeout_ms);
    c.gossip_interval_ms = slowed(c.gossip_interval_ms);
    c.push_pull_interval_ms = slowed(c.push_pull_interval_ms);
    c.gossip_to_the_dead_ms = slowed(c.gossip_to_the_dead_ms);
    c.tcp_timeout_ms = slowed(c.tcp_timeout_ms);
    c.reconnect_interval_ms = slowed(c.reconnect_interval_ms);
    c.leave_propagate_ms = slowed(c.leave_propagate_ms);
    /* on one host every dial comes from 127.0.0.1 (the engine does not bind its outgoing
     * connections): the per-source cap would take the whole pool for one source */
    c.max_conns_per_source = c.max_conns;
    c.node_name = n->name;
    c.bind_addr = n->addr;
    c.bind_port = (uint16_t)opt_port;
    c.tags = tags;
    c.n_tags = BASE_ARRAY_LEN(tags);
    c.on_event = on_event;
    c.ctx = n;
    c.net.send = net_send;
    c.net.ctx = n;
    int rv = gossip_start(&loop, &c, &n->g);
    if (rv != 0) {
        fprintf(stderr, "gossip_sim: start %s on %s:%d: %s\n", n->name, n->addr, opt_port,
                base_strerror(rv));
        exit(1);
    }
    n->started = true;
}

static void stats_sum(uint64_t *bytes, uint64_t *pkts)
{
    *bytes = *pkts = 0;
    for (int i = 0; i < n_total; i++) {
        if (!nodes[i].started || nodes[i].killed)
            continue;
        struct gossip_stats st;
        gossip_stats_get(nodes[i].g, &st);
        *bytes += st.udp_bytes_out;
        *pkts += st.udp_out;
    }
}

static void add_counters(struct snode *n)
{
    struct gossip_stats st;
    gossip_stats_get(n->g, &st);
    res.refutes += st.refutes;
    res.probe_failures += st.probe_failures;
    res.udp_bad += st.udp_bad;
}

/* ---- joins ----------------------------------------------------------------------------------- */

static int *joined_list, n_joined, next_joiner, joins_inflight, join_gave_up;

static void join_one(struct snode *n);

static void on_joined(void *ctx, size_t joined, int status)
{
    struct snode *n = ctx;
    n->joining = false;
    if (n->idx != newcomer)
        joins_inflight--;
    if (phase == PH_DONE || n->killed)
        return;
    if (joined && status == 0) {
        n->joined = true;
        joined_list[n_joined++] = n->idx;
        return;
    }
    res.join_retries++;
    if (++n->join_tries >= 5) {
        fprintf(stderr, "gossip_sim: %s could not join: %s\n", n->name, base_strerror(status));
        join_gave_up++;
        return;
    }
    join_one(n);
}

static void join_one(struct snode *n)
{
    int to = joined_list[rnd() % (uint64_t)n_joined];
    char addr[64];
    snprintf(addr, sizeof(addr), "%s:%d", nodes[to].addr, opt_port);
    const char *addrs[1] = {addr};
    n->joining = true;
    if (n->idx != newcomer)
        joins_inflight++;
    if (gossip_join(n->g, addrs, 1, on_joined, n) != 0) {
        fprintf(stderr, "gossip_sim: join refused\n");
        exit(1);
    }
}

/* ---- the phases ------------------------------------------------------------------------------ */

static uv_timer_t drive_timer, lag_timer;
static uint64_t idle_bytes0, idle_pkts0;
static double idle_t0;

static void set_phase(enum phase p)
{
    phase = p;
    phase_t0 = now_s();
    if (opt_verbose)
        fprintf(stderr, "gossip_sim: %.3f s: %s\n", phase_t0 - res.t0, phase_names[p]);
}

static void finish(void);

static bool all_see(int j, uint8_t v, double *first, double *last)
{
    double lo = -1, hi = -1;
    bool all = true;
    for (int i = 0; i < n_total; i++) {
        const struct snode *n = &nodes[i];
        if (!n->started || n->killed || i == j)
            continue;
        if (n->view[j] != v) {
            all = false;
            continue;
        }
        double t = v == V_ALIVE ? n->saw_new_at : n->saw_victim_failed_at;
        if (t >= 0 && (lo < 0 || t < lo))
            lo = t;
        if (t > hi)
            hi = t;
    }
    *first = lo;
    *last = hi;
    return all;
}

static void on_drive(uv_timer_t *t)
{
    BASE_UNUSED(t);
    double now = now_s(), in_phase = now - phase_t0;
    if (phase != PH_DONE && phase != PH_START && phase != PH_SETTLE && phase != PH_IDLE &&
        phase != PH_GAP && phase != PH_TAIL && in_phase > opt_timeout) {
        res.failed_phase = phase_names[phase];
        fprintf(stderr, "gossip_sim: phase %s timed out after %.0f s\n", phase_names[phase],
                opt_timeout);
        finish();
        return;
    }
    switch (phase) {
    case PH_START:
        node_start(&nodes[0]);
        joined_list[n_joined++] = 0;
        nodes[0].joined = true;
        next_joiner = 1;
        set_phase(PH_JOIN);
        res.join_start = now_s() - res.t0;
        break;
    case PH_JOIN:
        /* member i starts and joins at i / join-rate seconds (at most -parallel joins at once) */
        while (next_joiner < opt_n && (double)next_joiner / opt_join_rate <= in_phase &&
               joins_inflight < opt_parallel) {
            node_start(&nodes[next_joiner]);
            join_one(&nodes[next_joiner++]);
        }
        if (n_joined == opt_n) {
            res.joins_done = now_s() - res.t0 - res.join_start;
            set_phase(PH_CONVERGE);
        } else if (n_joined + join_gave_up == opt_n) { /* some gave up: no convergence */
            res.failed_phase = "join";
            finish();
            return;
        }
        /* fall through: convergence is checked from the first join on */
        /* FALLTHROUGH */
    case PH_CONVERGE: {
        int full = 0, least = opt_n;
        for (int i = 0; i < opt_n; i++) {
            full += nodes[i].n_alive == opt_n;
            if (nodes[i].n_alive < least)
                least = nodes[i].n_alive;
        }
        static double said;
        if (opt_verbose && now - said >= 1) {
            said = now;
            fprintf(stderr, "gossip_sim: %.3f s: %d of %d list all; the least lists %d\n",
                    now - res.t0, full, opt_n, least);
        }
        if (res.converge99 == 0 && 100 * full >= 99 * opt_n && n_joined == opt_n)
            res.converge99 = now_s() - res.t0 - res.join_start;
        if (full == opt_n && n_joined == opt_n) {
            res.converge = now_s() - res.t0 - res.join_start;
            set_phase(PH_SETTLE);
        } else if (opt_converge_wait >= 0 && res.converge99 > 0 &&
                   now - res.t0 - res.join_start - res.converge99 > opt_converge_wait) {
            /* the last few wait for a push-pull: go on without them */
            res.stragglers = opt_n - full;
            for (int i = 0; i < opt_n; i++)
                res.missing += (uint64_t)(opt_n - nodes[i].n_alive);
            set_phase(PH_SETTLE);
        }
        break;
    }
    case PH_SETTLE:
        if (in_phase >= opt_settle) {
            stats_sum(&idle_bytes0, &idle_pkts0);
            idle_t0 = now_s();
            set_phase(PH_IDLE);
        }
        break;
    case PH_IDLE:
        if (in_phase >= opt_idle) {
            uint64_t b, p;
            stats_sum(&b, &p);
            double dt = now_s() - idle_t0;
            res.bw = (double)(b - idle_bytes0) / dt / opt_n;
            res.pps = (double)(p - idle_pkts0) / dt / opt_n;
            newcomer = opt_n;
            set_phase(PH_JOIN1);
            node_start(&nodes[newcomer]);
            join_one(&nodes[newcomer]);
        }
        break;
    case PH_JOIN1: {
        double first, last;
        if (all_see(newcomer, V_ALIVE, &first, &last)) {
            res.new_first = first;
            res.new_all = last;
            set_phase(PH_GAP);
        }
        break;
    }
    case PH_GAP:
        if (in_phase >= 2) {
            /* a member every member lists (not one a straggler missed) */
            for (int tries = 0; tries < 10000; tries++) {
                victim = 1 + (int)(rnd() % (uint64_t)(opt_n - 1));
                bool all = true;
                for (int i = 0; i < n_total && all; i++)
                    all = i == victim || nodes[i].view[victim] == V_ALIVE;
                if (all)
                    break;
            }
            add_counters(&nodes[victim]);
            set_phase(PH_KILL);
            nodes[victim].killed = true;
            gossip_stop(nodes[victim].g, NULL, NULL);
        }
        break;
    case PH_KILL: {
        double first, last;
        if (all_see(victim, V_FAILED, &first, &last)) {
            res.fail_first = first;
            res.fail_all = last;
            set_phase(PH_TAIL);
        }
        break;
    }
    case PH_TAIL:
        if (in_phase >= opt_tail)
            finish();
        break;
    case PH_DONE:
        break;
    }
}

static double lag_last;
static void on_lag(uv_timer_t *t)
{
    BASE_UNUSED(t);
    double now = (double)uv_hrtime() / 1e9; /* wall time */
    if (lag_last > 0) {
        double late = (now - lag_last) * 1000.0 - 10.0;
        if (late < 0)
            late = 0;
        res.lag_sum_ms += late;
        res.lag_n++;
        res.lag_over_100 += late > 100;
        if (late > res.lag_max_ms)
            res.lag_max_ms = late;
    }
    lag_last = now;
}

static void finish(void)
{
    if (phase == PH_DONE)
        return;
    set_phase(PH_DONE);
    for (int i = 0; i < n_total; i++)
        if (nodes[i].started && !nodes[i].killed) {
            add_counters(&nodes[i]);
            gossip_stop(nodes[i].g, NULL, NULL);
        }
    uv_close((uv_handle_t *)&drive_timer, NULL);
    uv_close((uv_handle_t *)&lag_timer, NULL);
    uv_close((uv_handle_t *)&net_timer, NULL);
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: gossip_sim [-n N] [-loss PCT] [-latency MS] [-jitter MS] [-settle S] "
                    "[-idle S] [-tail S] [-timeout S] [-parallel K] [-join-rate R] [-push-pull MS] "
                    "[-converge-wait S] [-slow K] "
                    "[-seed X] "
                    "[-net B] [-port P] "
                    "[-fast] [-json] [-v]\n");
    exit(2);
}

static double num(const char *v)
{
    char *end;
    double d = strtod(v, &end);
    if (*end || d < 0 || d != d)
        usage();
    return d;
}

static void print_json_num(const char *k, double v, bool last)
{
    if (v < 0)
        printf("\"%s\":null%s", k, last ? "" : ",");
    else
        printf("\"%s\":%.3f%s", k, v, last ? "" : ",");
}

int main(int argc, char **argv)
{
    opt_port = 20000 + (int)(getpid() % 20000);
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-fast") == 0) {
            opt_fast = true;
            continue;
        }
        if (strcmp(a, "-json") == 0) {
            opt_json = true;
            continue;
        }
        if (strcmp(a, "-v") == 0) {
            opt_verbose = true;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "-n") == 0)
            opt_n = (int)num(v);
        else if (strcmp(a, "-loss") == 0)
            opt_loss = num(v);
        else if (strcmp(a, "-latency") == 0)
            opt_latency = num(v);
        else if (strcmp(a, "-jitter") == 0)
            opt_jitter = num(v);
        else if (strcmp(a, "-settle") == 0)
            opt_settle = num(v);
        else if (strcmp(a, "-idle") == 0)
            opt_idle = num(v);
        else if (strcmp(a, "-tail") == 0)
            opt_tail = num(v);
        else if (strcmp(a, "-converge-wait") == 0) /* -1: unbounded (the default) */
            opt_converge_wait = strcmp(v, "-1") == 0 ? -1 : num(v);
        else if (strcmp(a, "-push-pull") == 0)
            opt_push_pull = num(v);
        else if (strcmp(a, "-join-rate") == 0)
            opt_join_rate = num(v);
        else if (strcmp(a, "-slow") == 0)
            opt_slow = num(v);
        else if (strcmp(a, "-timeout") == 0)
            opt_timeout = num(v);
        else if (strcmp(a, "-parallel") == 0)
            opt_parallel = (int)num(v);
        else if (strcmp(a, "-seed") == 0)
            seed = (uint64_t)num(v);
        else if (strcmp(a, "-net") == 0)
            opt_net = (int)num(v);
        else if (strcmp(a, "-port") == 0)
            opt_port = (int)num(v);
        else
            usage();
    }
    if (opt_n < 3 || opt_n > 60000 || opt_loss > 100 || opt_parallel < 1 || opt_net < 1 ||
        opt_net > 255 || opt_port < 1 || opt_port > 65535 || opt_idle <= 0 || opt_slow < 1 ||
        opt_join_rate <= 0)
        usage();
    opt_seed = seed ? seed : (uint64_t)uv_hrtime() ^ ((uint64_t)getpid() << 32);
    rng = opt_seed ? opt_seed : 1;
    n_total = opt_n + 1;

    /* every engine holds a TCP listener, and joins and push-pulls open more */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)(4 * n_total + 64))
        fprintf(stderr, "gossip_sim: warning: %llu file descriptors for %d engines\n",
                (unsigned long long)rl.rlim_cur, n_total);

    signal(SIGPIPE, SIG_IGN);
    base_loop_thread_set();
    base_log_set_level(opt_verbose ? BASE_LOG_INFO : BASE_LOG_ERR);
    uv_loop_init(&loop);
    nodes = base_calloc((size_t)n_total, sizeof(*nodes));
    fp_seen = base_calloc((size_t)n_total, 1);
    joined_list = base_calloc((size_t)n_total, sizeof(*joined_list));
    for (int i = 0; i < n_total; i++) {
        struct snode *n = &nodes[i];
        n->idx = i;
        snprintf(n->name, sizeof(n->name), "m%d", i);
        snprintf(n->addr, sizeof(n->addr), "127.%d.%d.%d", opt_net, i / 250, 2 + i % 250);
        uv_ip4_addr(n->addr, (uint16_t)opt_port, &n->sa);
        n->view = base_calloc((size_t)n_total, 1);
        n->saw_new_at = n->saw_victim_failed_at = -1;
    }
    uv_timer_init(&loop, &net_timer);
    uv_timer_init(&loop, &drive_timer);
    uv_timer_init(&loop, &lag_timer);
    res.t0 = now_s();
    set_phase(PH_START);
    uv_timer_start(&drive_timer, on_drive, 1, opt_n >= 200 ? 20 : 1);
    uv_timer_start(&lag_timer, on_lag, 10, 10);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uv_run(&loop, UV_RUN_DEFAULT);
    getrusage(RUSAGE_SELF, &ru1);
    double wall = (now_s() - res.t0) * opt_slow;
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                          ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                          ru0.ru_stime.tv_usec) /
                     1e6;
    while (n_heap)
        base_free(heap_pop());
    base_free(heap);
    int rv = uv_loop_close(&loop);
    for (int i = 0; i < n_total; i++)
        base_free(nodes[i].view);
    base_free(nodes);
    base_free(fp_seen);
    base_free(joined_list);

    double lag_mean = res.lag_n ? res.lag_sum_ms / (double)res.lag_n : 0;
    printf("gossip_sim: N=%d loss=%.1f%% latency=%.2f±%.2f ms%s slow=%g seed=%llu (times in "
           "simulated seconds)\n",
           opt_n, opt_loss, opt_latency, opt_jitter, opt_fast ? " fast" : "", opt_slow,
           (unsigned long long)opt_seed);
    if (res.converge > 0)
        printf("  converge %.2f s after the first join, %.2f s after the last", res.converge,
               res.converge - res.joins_done);
    else
        printf("  no convergence");
    printf(" (99%% of members: %.2f s after the first; joins done in %.2f s, %llu retried)\n",
           res.converge99, res.joins_done, (unsigned long long)res.join_retries);
    if (res.stragglers)
        printf("  not converged %g s after 99%%: %d members missed %llu members in all "
               "(-converge-wait)\n",
               opt_converge_wait, res.stragglers, (unsigned long long)res.missing);
    printf("  idle: %.0f B/s and %.1f packets/s sent per member\n", res.bw, res.pps);
    printf("  a new member's join: first %.2f s, all %.2f s\n", res.new_first, res.new_all);
    printf("  a killed member failed: first %.2f s, all %.2f s\n", res.fail_first, res.fail_all);
    printf("  false positives: %llu (%d members); refutes %llu, probe failures %llu\n",
           (unsigned long long)res.false_positives, res.fp_members, (unsigned long long)res.refutes,
           (unsigned long long)res.probe_failures);
    printf("  datagrams: %llu sent, %llu delivered, %llu lost, %llu to or from the dead, %llu "
           "bad\n",
           (unsigned long long)res.sent, (unsigned long long)res.delivered,
           (unsigned long long)res.lost, (unsigned long long)res.dropped_dead,
           (unsigned long long)res.udp_bad);
    printf("  loop lag (wall): mean %.2f ms, max %.1f ms, %llu ticks over 100 ms; CPU %.1f s in "
           "%.1f s wall\n",
           lag_mean, res.lag_max_ms, (unsigned long long)res.lag_over_100, cpu, wall);
    if (res.failed_phase)
        printf("  FAILED: phase %s did not complete\n", res.failed_phase);
    if (opt_json) {
        printf("{\"n\":%d,\"loss\":%.3f,\"latency_ms\":%.3f,\"jitter_ms\":%.3f,\"fast\":%s,"
               "\"slow\":%g,\"seed\":%llu,",
               opt_n, opt_loss, opt_latency, opt_jitter, opt_fast ? "true" : "false", opt_slow,
               (unsigned long long)opt_seed);
        print_json_num("converge_s", res.converge > 0 ? res.converge : -1, false);
        print_json_num("converge99_s", res.converge99 == 0 ? -1 : res.converge99, false);
        print_json_num("joins_s", res.joins_done, false);
        print_json_num("converge_after_last_s",
                       res.converge > 0 ? res.converge - res.joins_done : -1, false);
        print_json_num("bw_bytes_s", res.bw, false);
        print_json_num("pkts_s", res.pps, false);
        print_json_num("join_first_s", res.new_first, false);
        print_json_num("join_all_s", res.new_all, false);
        print_json_num("fail_first_s", res.fail_first, false);
        print_json_num("fail_all_s", res.fail_all, false);
        printf("\"stragglers\":%d,\"missing\":%llu,", res.stragglers,
               (unsigned long long)res.missing);
        printf("\"false_positives\":%llu,\"fp_members\":%d,\"refutes\":%llu,"
               "\"probe_failures\":%llu,\"join_retries\":%llu,\"sent\":%llu,\"delivered\":%llu,"
               "\"lost\":%llu,\"dropped_dead\":%llu,\"udp_bad\":%llu,",
               (unsigned long long)res.false_positives, res.fp_members,
               (unsigned long long)res.refutes, (unsigned long long)res.probe_failures,
               (unsigned long long)res.join_retries, (unsigned long long)res.sent,
               (unsigned long long)res.delivered, (unsigned long long)res.lost,
               (unsigned long long)res.dropped_dead, (unsigned long long)res.udp_bad);
        print_json_num("lag_mean_ms", lag_mean, false);
        print_json_num("lag_max_ms", res.lag_max_ms, false);
        print_json_num("cpu_s", cpu, false);
        print_json_num("wall_s", wall, false);
        printf("\"failed_phase\":%s%s%s,\"loop_closed\":%s}\n", res.failed_phase ? "\"" : "",
               res.failed_phase ? res.failed_phase : "null", res.failed_phase ? "\"" : "",
               rv == 0 ? "true" : "false");
    }
    fflush(stdout);
    return res.failed_phase || rv != 0 ? 1 : 0;
}
