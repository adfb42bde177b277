/* consensus: libraft on the main loop, with the zone store as its state machine.
 *
 * How a write travels. cons_propose queues a copy of an encoded zone command. Once per loop
 * iteration the flush (propose.c) packs everything queued into ONE entry and calls raft_apply
 * with ONE buffer: libraft 0.22 appends only the first buffer of a batch, so batching happens
 * here, at the application level (group commit). When the entry commits, the FSM (fsm.c)
 * applies all its commands in one LMDB transaction together with the entry's index, and
 * libraft's apply callback gives each proposer its own command's result.
 *
 * Padding. libraft writes entries into segments it can load back only when each payload is a
 * multiple of 8 bytes long. The entry frame (entry.c) is padded with zeros and carries its real
 * length, so decoding never reads the padding as a command.
 *
 * Unknown outcomes. Once an entry is appended, only its commit says it happened. If the apply
 * callback fails (leadership lost, shutdown: libraft fails every pending request with
 * RAFT_LEADERSHIPLOST) the entry may still be committed by the next leader, so the proposer
 * learns BASE_EUNKNOWN, never "not written". Only requests refused before the append
 * (not leader, shutdown before the flush, too big) are definite failures.
 *
 * Idempotent replay. The catalog stores the last applied index in the same transaction as the
 * data. libraft replays the log after its last snapshot at every start; zone_store_apply skips
 * entries at or below the stored index and zone_store_restore skips snapshots not newer than
 * the catalog, so a restart never applies anything twice.
 *
 * Close order (DESIGN.md 2.6). cons_stop ends the queued commands (BASE_ESHUTDOWN), stops
 * formation and membership requests, ends parked forwarded work, leaves the server port
 * (transport.c: our methods and streams removed, our rpc client closed, which fails every
 * call: forwarded writes already sent end BASE_EUNKNOWN), closes the Raft streams, then
 * raft_close: libraft fails its pending requests synchronously (our callbacks report
 * BASE_EUNKNOWN) and closes its io, which closes the transport (its dials are cancelled).
 * Deferred completions then run, still inside cons_stop. In raft_close's callback the io and
 * transport memory is released (raft_uv_close, then the transport), then our own handles
 * close (the flush idle handle, the tick timer); the cons is freed and done called once the
 * last of those and of the Raft streams (c->pending) is gone. Requests being served still
 * hold their rpc connection until answered; the rpc is the caller's to stop after that. The
 * loop then holds nothing of ours. A start that fails after raft_init takes the same path
 * without a done callback.
 *
 * Leadership and the tick. A single voter elects itself inside raft_start (libraft converts a
 * lone voter to leader at once). State and leader are sampled after every message libraft
 * gets (raft_stream.c) and by a timer every min(heartbeat, 50 ms) (elections that time out,
 * leaders that step down): changes are logged and told to on_leader, and the time a leader
 * was last known is kept (cons_last_contact_ms). The timer also drives everything here that
 * waits on time: formation and join retries, parked work, membership requests and the
 * leader's reconciler (the server port's own timeouts are the rpc's).
 *
 * Timing (DESIGN.md 2.6). LAN base: election 500 ms, heartbeat 50 ms, pre-vote on, both
 * scaled by raft_multiplier (default 1). libraft randomizes the election timeout between 1x
 * and 2x and, with pre-vote, a follower grants a vote only once it has itself stopped
 * following the old leader (it rejects while it "has a leader"), so a leader that merely goes
 * silent (a partition) is replaced after the SLOWER follower's randomized timeout, about
 * 1.5-2 election timeouts, plus a vote round: that measured about 0.9 s (0.7-1.6 s) from a
 * kill -9 to the first acknowledged write. A leader that dies on a running host has its
 * connections closed by the kernel, and failover.c starts the election at once then, in
 * turns by id: about 0.2 s (tests/bench/cluster.sh: the figures and their spread are in
 * tests/bench/RESULTS.md). A LAN round trip is well under a millisecond, so 500 ms still
 * leaves a wide margin against spurious elections (a follower stopped for 300 ms at a time
 * causes none: cluster.sh --soak); WANs raise the multiplier.
 * libraft's connect retry delay drops from 1 s to 100 ms (the transport adds its own backoff
 * per peer), so a restarted server is caught up quickly. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_ELECTION_MS  500
#define DEFAULT_HEARTBEAT_MS 50
#define DEFAULT_THRESHOLD    1024
#define DEFAULT_TRAILING     1024
#define MAX_MULTIPLIER       10
#define TICK_MAX_MS          50
#define CONNECT_RETRY_MS     100
#define RPC_TIMEOUT_MIN_MS   5000

/* mkdir -p with mode 0700 for the directories it creates. */
static int mkdir_p(const char *dir, char *errmsg)
{
    char *p = base_strdup(dir);
    int rv = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            rv = base_errf(errmsg, -errno, "create %s: %s", p, strerror(errno));
            break;
        }
        *s = saved;
        if (saved == '\0')
            break;
    }
    base_free(p);
    if (rv == 0) {
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            rv = base_errf(errmsg, BASE_EINVAL, "%s is not a directory", dir);
    }
    return rv;
}

/* ---- leadership tracking --------------------------------------------------------------- */

void cons__observe(struct cons *c)
{
    if (!c->raft_started)
        return;
    unsigned short state = (unsigned short)raft_state(&c->raft);
    raft_id leader = 0;
    const char *address = NULL;
    raft_leader(&c->raft, &leader, &address);
    if (leader != 0)
        c->contact_at = uv_now(c->loop);
    bool leading = state == RAFT_LEADER;
    if (c->on_leader && !c->stopping && (leading != c->told_leading || leader != c->told_leader)) {
        c->told_leading = leading;
        c->told_leader = leader;
        c->on_leader(c->data, leading, leader, leader && address ? address : "");
    }
    if (state == c->last_state && leader == c->last_leader)
        return;
    bool new_leader = leader != 0 && leader != c->last_leader;
    c->last_state = state;
    c->last_leader = leader;
    if (new_leader && !c->stopping)
        cons__forward_tick(c); /* parked writes and reads go to it now, not at the next tick */
    if (state == RAFT_LEADER)
        LOG_INFO("consensus", "became leader term=%llu index=%llu", raft_current_term(&c->raft),
                 raft_last_index(&c->raft));
    else if (leader != 0)
        LOG_INFO("consensus", "following leader id=%llu address=%s term=%llu", leader,
                 address ? address : "", raft_current_term(&c->raft));
    else
        LOG_INFO("consensus", "no leader (%s) term=%llu", raft_state_name(state),
                 raft_current_term(&c->raft));
}

static void tick_cb(uv_timer_t *t)
{
    struct cons *c = t->data;
    if (c->is_client) {
        cons__forward_tick(c);
        cons__repl_tick(c);
        return;
    }
    cons__observe(c);
    cons__repl_tick(c);
    cons__io_tick(c);
    cons__form_tick(c);
    cons__forward_tick(c);
    cons__member_tick(c);
}

/* ---- close ----------------------------------------------------------------------------- */

/* Frees the cons once Raft is closed and nothing of ours is left (handles, connections). */
static void maybe_free(struct cons *c)
{
    if (!c->stopping || !c->raft_done || c->pending > 0)
        return;
    /* proposals, barriers and the rest asked for while stopping */
    do {
        cons__propose_fail_queued(c, BASE_ESHUTDOWN);
        cons__forward_stop(c);
        cons__member_stop(c, true);
        cons__run_done(c);
    } while (c->queue.head || c->barriers || c->parked.head || c->reads || c->waiters ||
             !base_list_empty(&c->ops) || c->tasks || c->props_done.head);
    assert(base_list_empty(&c->inflight) && base_list_empty(&c->changes));
    void (*done)(void *) = c->done;
    void *data = c->done_data;
    cons__form_free(c);
    cons__repl_free(c);
    base_arena_close(&c->arena);
    base_free(c->address);
    base_free(c->dir);
    base_free(c);
    if (done)
        done(data);
}

void cons__unpend(struct cons *c)
{
    assert(c->pending > 0);
    c->pending--;
    maybe_free(c);
}

static void handle_closed(uv_handle_t *h)
{
    cons__unpend(h->data);
}

static void raft_closed(struct raft *r)
{
    struct cons *c = r->data;
    /* libraft's io is closed and has closed the transport: release both */
    raft_uv_close(&c->io);
    cons__transport_close(c);
    c->raft_done = true;
    c->pending += 3;
    uv_close((uv_handle_t *)&c->flush, handle_closed);
    uv_close((uv_handle_t *)&c->tick, handle_closed);
    uv_close((uv_handle_t *)&c->lost_timer, handle_closed);
}

static void close_raft(struct cons *c)
{
    c->stopping = true;
    uv_idle_stop(&c->flush);
    uv_timer_stop(&c->tick);
    uv_timer_stop(&c->lost_timer);
    cons__form_stop(c);
    cons__member_stop(c, false);
    cons__forward_stop(c);
    cons__repl_stop(c);
    cons__port_close(c);
    if (c->is_client) {
        /* no Raft: our handles are all there is to close */
        c->raft_done = true;
        c->pending += 3;
        uv_close((uv_handle_t *)&c->flush, handle_closed);
        uv_close((uv_handle_t *)&c->tick, handle_closed);
        uv_close((uv_handle_t *)&c->lost_timer, handle_closed);
        cons__run_done(c);
        return;
    }
    cons__wire_stop(c);
    cons__io_stop(c);
    raft_close(&c->raft, raft_closed);
    cons__run_done(c);
}

void cons_stop(struct cons *c, void (*done)(void *), void *data)
{
    BASE_ASSERT_LOOP();
    assert(!c->stopping);
    assert(!c->in_apply); /* not from on_applied: libraft is inside raft_step there */
    if (c->is_client)
        LOG_INFO("consensus", "stopping client replica at index %" PRIu64, c->applied);
    else
        LOG_INFO("consensus", "stopping term=%llu index=%llu", raft_current_term(&c->raft),
                 raft_last_index(&c->raft));
    c->done = done;
    c->done_data = data;
    c->stopping = true;
    cons__propose_fail_queued(c, BASE_ESHUTDOWN);
    close_raft(c);
}

/* ---- start ----------------------------------------------------------------------------- */

/* libraft leaves its message in one of three places, or nowhere (a failed listen). */
static const char *raft_message(struct cons *c, int rv)
{
    if (raft_errmsg(&c->raft)[0])
        return raft_errmsg(&c->raft);
    if (c->io.errmsg[0])
        return c->io.errmsg;
    if (c->transport.errmsg[0])
        return c->transport.errmsg;
    return raft_strerror(rv);
}

static int start_error(int raft_rv)
{
    switch (raft_rv) {
    case RAFT_IOERR:
    case RAFT_CORRUPT:
    case RAFT_NOSPACE:
        return BASE_ESTORE;
    case RAFT_NOMEM:
        return -ENOMEM;
    default:
        return BASE_EINVAL;
    }
}

/* Raft log damage. libraft drops a damaged entry at the end of its log (a batch whose
 * checksum fails in the last segment is taken for a write cut short), with no word. Entries
 * the catalog has applied were committed, so the log loaded must reach the catalog's applied
 * index: when it stops short, entries were lost, and the segment that held the first lost
 * one is named (the segment files as they were before libraft loaded and rewrote them:
 * closed ones are "first-last", open ones "open-N" and follow every closed one). */
struct seg_list {
    char (*name)[64];
    size_t n, cap;
};

/* The segment files of dir (closed "first-last", open "open-N"), as found before the load. */
static void segments_list(const char *dir, struct seg_list *l)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    memset(l, 0, sizeof *l);
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        unsigned long long first, last;
        int used = 0;
        bool seg =
            strncmp(e->d_name, "open-", 5) == 0 ||
            (sscanf(e->d_name, "%llu-%llu%n", &first, &last, &used) == 2 && e->d_name[used] == 0);
        if (!seg || strlen(e->d_name) >= sizeof l->name[0])
            continue;
        if (l->n == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 16;
            l->name = base_realloc(l->name, l->cap * sizeof l->name[0]);
        }
        memcpy(l->name[l->n++], e->d_name, strlen(e->d_name) + 1); /* checked: it fits */
    }
    closedir(d);
}

/* Names the segment(s) that held entry idx into out: the closed one whose range has it, else
 * the open ones (they follow every closed one). */
static void segments_holding(const struct seg_list *l, const char *dir, uint64_t idx, char *out,
                             size_t cap)
{
    size_t n = 0;

    out[0] = 0;
    for (size_t i = 0; i < l->n; i++) {
        unsigned long long first, last;
        if (sscanf(l->name[i], "%llu-%llu", &first, &last) == 2 && first <= idx && idx <= last) {
            snprintf(out, cap, "%s/%s", dir, l->name[i]);
            return;
        }
    }
    for (size_t i = 0; i < l->n && n + 1 < cap; i++) {
        if (strncmp(l->name[i], "open-", 5) != 0)
            continue;
        int w = snprintf(out + n, cap - n, "%s%s/%s", n ? " or " : "", dir, l->name[i]);
        if (w < 0)
            break;
        n = n + (size_t)w < cap ? n + (size_t)w : cap - 1;
    }
    if (!out[0])
        snprintf(out, cap, "%s (no segment held it)", dir);
}

int cons__raft_start(struct cons *c)
{
    struct zone_meta meta;
    struct seg_list segs;

    /* the catalog's applied index is the floor of what the loaded log must reach */
    if (zone_store_meta(c->store, &meta) == 0 && meta.applied > c->applied)
        c->applied = meta.applied;
    segments_list(c->dir, &segs);
    int rv = raft_start(&c->raft);
    if (rv != 0) {
        base_free(segs.name);
        LOG_ERR("consensus", "raft start (address %s, dir %s): %s", c->address, c->dir,
                raft_message(c, rv));
        return rv;
    }
    c->raft_started = true;
    uint64_t last = raft_last_index(&c->raft);
    LOG_INFO("consensus", "started id=%" PRIu64 " address=%s dir=%s term=%llu index=%" PRIu64,
             c->id, c->address, c->dir, raft_current_term(&c->raft), last);
    if (c->applied > last) {
        char where[1024];
        segments_holding(&segs, c->dir, last + 1, where, sizeof where);
        LOG_WARN("consensus",
                 "raft log damaged: it ends at index %" PRIu64
                 " but the catalog has applied %" PRIu64 ": entries from %" PRIu64
                 " on were dropped while loading segment %s",
                 last, c->applied, last + 1, where);
        /* New entries would take indexes the catalog already holds and be skipped as replays:
         * writes answered but never applied. A cluster's leader sends this replica the entries
         * again (so does it to a server still joining one); a server alone has nobody to get
         * them from. */
        const struct raft_configuration *conf = &c->raft.configuration;
        if (conf->n == 1 && conf->servers[0].id == c->id) {
            LOG_ERR("consensus",
                    "a single server whose Raft log lost committed entries cannot go on: "
                    "restore %s, or move the catalog (%" PRIu64 " applied) aside to rebuild it "
                    "from the log as loaded (losing entries %" PRIu64 " to %" PRIu64 ")",
                    where, c->applied, last + 1, c->applied);
            rv = RAFT_CORRUPT;
        }
    }
    base_free(segs.name);
    if (rv)
        return rv;
    c->last_state = 0xffff; /* log the first state */
    cons__observe(c);
    return 0;
}

/* A client (cons_config.client): no Raft, a replica fed by replica.c's stream. */
static int client_start(uv_loop_t *loop, const struct cons_config *cfg, unsigned election,
                        unsigned heartbeat, struct cons **out)
{
    struct cons *c = base_calloc(1, sizeof *c);
    c->loop = loop;
    c->is_client = true;
    c->store = cfg->store;
    c->on_applied = cfg->on_applied;
    c->on_leader = cfg->on_leader;
    c->data = cfg->data;
    c->rpc = cfg->rpc;
    c->id = cfg->id;
    c->address = base_strdup(cfg->address);
    c->election_ms = election;
    c->heartbeat_ms = heartbeat;
    c->wait_ms = 3 * election;
    c->rpc_timeout_ms = 5 * election > RPC_TIMEOUT_MIN_MS ? 5 * election : RPC_TIMEOUT_MIN_MS;
    base_arena_init(&c->arena);
    struct zone_meta meta;
    if (zone_store_meta(c->store, &meta) == 0)
        c->applied = meta.applied;
    cons__repl_init(c);
    cons__propose_init(c);
    cons__port_open(c);
    int rv = uv_timer_init(loop, &c->tick);
    assert(rv == 0);
    c->tick.data = c;
    uv_unref((uv_handle_t *)&c->tick);
    cons__failover_init(c);
    c->contact_at = uv_now(loop);
    unsigned tick = heartbeat < TICK_MAX_MS ? heartbeat : TICK_MAX_MS;
    rv = uv_timer_start(&c->tick, tick_cb, tick, tick);
    assert(rv == 0);
    BASE_UNUSED(rv);
    LOG_INFO("consensus", "started client replica id=%" PRIu64 " at index %" PRIu64, c->id,
             c->applied);
    *out = c;
    return 0;
}

int cons_start(uv_loop_t *loop, const struct cons_config *cfg, struct cons **out, char *errmsg)
{
    BASE_ASSERT_LOOP();
    *out = NULL;
    if (cfg->client && (cfg->bootstrap || cfg->bootstrap_expect || cfg->n_join))
        return base_errf(errmsg, BASE_EINVAL,
                         "consensus: a client has no Raft: bootstrap, bootstrap_expect and join "
                         "are for servers");
    if (!cfg->client && (!cfg->dir || !*cfg->dir))
        return base_errf(errmsg, BASE_EINVAL, "consensus: no data directory");
    if (!cfg->address || !*cfg->address)
        return base_errf(errmsg, BASE_EINVAL, "consensus: no server address");
    if (cfg->id == 0)
        return base_errf(errmsg, BASE_EINVAL, "consensus: server id must not be 0");
    if (!cfg->store)
        return base_errf(errmsg, BASE_EINVAL, "consensus: no store");
    if (!cfg->rpc)
        return base_errf(errmsg, BASE_EINVAL, "consensus: no server port");
    if (rpc_id(cfg->rpc) != cfg->id || strcmp(rpc_address(cfg->rpc), cfg->address) != 0)
        return base_errf(errmsg, BASE_EINVAL,
                         "consensus: the server port is id %" PRIu64 " at %s, not %" PRIu64
                         " at %s",
                         rpc_id(cfg->rpc), rpc_address(cfg->rpc), cfg->id, cfg->address);
    if (cfg->bootstrap && cfg->bootstrap_expect > 1)
        return base_errf(errmsg, BASE_EINVAL,
                         "consensus: bootstrap (one voter) contradicts bootstrap_expect %u",
                         cfg->bootstrap_expect);
    if (cfg->raft_multiplier > MAX_MULTIPLIER)
        return base_errf(errmsg, BASE_EINVAL, "consensus: raft_multiplier %u is over %d",
                         cfg->raft_multiplier, MAX_MULTIPLIER);
    if (cfg->n_join && !cfg->join)
        return base_errf(errmsg, BASE_EINVAL, "consensus: join addresses missing");
    unsigned mult = cfg->raft_multiplier ? cfg->raft_multiplier : 1;
    unsigned election =
        cfg->election_timeout_ms ? cfg->election_timeout_ms : DEFAULT_ELECTION_MS * mult;
    unsigned heartbeat =
        cfg->heartbeat_timeout_ms ? cfg->heartbeat_timeout_ms : DEFAULT_HEARTBEAT_MS * mult;
    if (heartbeat >= election)
        return base_errf(errmsg, BASE_EINVAL,
                         "consensus: heartbeat timeout %ums must be below election timeout %ums",
                         heartbeat, election);
    unsigned threshold = cfg->snapshot_threshold ? cfg->snapshot_threshold : DEFAULT_THRESHOLD;
    unsigned trailing = cfg->snapshot_trailing ? cfg->snapshot_trailing : DEFAULT_TRAILING;
    if (trailing < threshold) /* DESIGN.md 2.6: trailing >= threshold */
        trailing = threshold;

    /* A write to a peer that closed its connection raises SIGPIPE, whose default action kills
     * the process: a dead peer would take a healthy server down with it. libuv reports EPIPE
     * instead once the signal is ignored. The daemon ignores it at start-up; doing it here
     * too keeps every embedding (tests, tools) safe. Idempotent. */
    signal(SIGPIPE, SIG_IGN);

    if (cfg->client)
        return client_start(loop, cfg, election, heartbeat, out);
    int rv = mkdir_p(cfg->dir, errmsg);
    if (rv != 0) {
        base_err_wrap(errmsg, "consensus");
        return rv;
    }

    struct cons *c = base_calloc(1, sizeof *c);
    c->loop = loop;
    c->store = cfg->store;
    c->on_applied = cfg->on_applied;
    c->on_leader = cfg->on_leader;
    c->data = cfg->data;
    c->rpc = cfg->rpc;
    c->id = cfg->id;
    c->address = base_strdup(cfg->address);
    c->dir = base_strdup(cfg->dir);
    c->election_ms = election;
    c->heartbeat_ms = heartbeat;
    c->wait_ms = 3 * election;
    c->rpc_timeout_ms = 5 * election > RPC_TIMEOUT_MIN_MS ? 5 * election : RPC_TIMEOUT_MIN_MS;
    c->join_allowed = cfg->join_allowed;
    c->join_allowed_data = cfg->join_allowed_data;
    c->client_allowed = cfg->client_allowed;
    c->client_allowed_data = cfg->client_allowed_data;
    base_arena_init(&c->arena);
    struct zone_meta meta;
    if (zone_store_meta(c->store, &meta) == 0)
        c->applied = meta.applied;
    cons__repl_init(c);

    rv = cons__transport_init(c, errmsg);
    if (rv != 0) {
        base_err_wrap(errmsg, "consensus");
        goto err_free;
    }
    int rrv = raft_uv_init(&c->io, loop, c->dir, &c->transport);
    if (rrv != 0) {
        rv = base_errf(errmsg, start_error(rrv), "consensus: raft io on %s: %s", c->dir,
                       c->io.errmsg);
        goto err_transport;
    }
    raft_uv_set_connect_retry_delay(&c->io, CONNECT_RETRY_MS);
    cons__io_hook(c);
    cons__fsm_init(c);
    rrv = raft_init(&c->raft, &c->io, &c->fsm, c->id, c->address);
    if (rrv != 0) {
        rv = base_errf(errmsg, start_error(rrv), "consensus: raft init: %s", raft_errmsg(&c->raft));
        raft_uv_close(&c->io);
        goto err_transport;
    }
    c->raft.data = c;
    raft_set_election_timeout(&c->raft, election);
    raft_set_heartbeat_timeout(&c->raft, heartbeat);
    raft_set_pre_vote(&c->raft, true);
    raft_set_snapshot_threshold(&c->raft, threshold);
    raft_set_snapshot_trailing(&c->raft, trailing);

    /* From here on, failures close asynchronously through raft_close. */
    cons__propose_init(c);
    cons__port_open(c);
    rv = uv_timer_init(loop, &c->tick);
    assert(rv == 0);
    c->tick.data = c;
    c->flush.data = c;
    uv_unref((uv_handle_t *)&c->tick);
    cons__failover_init(c);
    c->contact_at = uv_now(loop);
    c->last_state = (unsigned short)raft_state(&c->raft);

    rv = cons__form_start(c, cfg, errmsg);
    if (rv != 0) {
        base_err_wrap(errmsg, "consensus");
        goto err_close;
    }
    unsigned tick = heartbeat < TICK_MAX_MS ? heartbeat : TICK_MAX_MS;
    rv = uv_timer_start(&c->tick, tick_cb, tick, tick);
    assert(rv == 0);
    *out = c;
    return 0;

err_close:
    close_raft(c); /* frees c from the last close callback; the caller runs the loop */
    return rv;
err_transport:
    cons__transport_close(c);
err_free:
    cons__repl_free(c);
    base_arena_close(&c->arena);
    base_free(c->address);
    base_free(c->dir);
    base_free(c);
    return rv;
}

/* ---- queries --------------------------------------------------------------------------- */

/* libraft's getters take a non-const raft but only read it. */
static struct raft *raft_of(const struct cons *c)
{
    return (struct raft *)&c->raft;
}

bool cons_is_leader(const struct cons *c)
{
    if (c->is_client)
        return false;
    return raft_state(raft_of(c)) == RAFT_LEADER;
}

void cons_leader(const struct cons *c, uint64_t *id, const char **address)
{
    raft_id lid = 0;
    const char *laddr = NULL;
    if (c->is_client) {
        cons__repl_leader(c, id, address);
        return;
    }
    raft_leader(raft_of(c), &lid, &laddr);
    *id = lid;
    *address = lid && laddr ? laddr : "";
}

uint64_t cons_last_contact_ms(const struct cons *c)
{
    struct raft *r = raft_of(c);
    if (c->is_client) {
        uint64_t now = uv_now(c->loop);
        return now > c->contact_at ? now - c->contact_at : 0;
    }
    if (raft_state(r) == RAFT_LEADER)
        return 0;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(r, &lid, &laddr);
    /* A follower restarts its election timer on every message of the current leader, so with
     * a known leader the timer's start is the last contact (libraft has no getter for it; the
     * field is public and on the io's clock, io->time: uv_now plus failover.c's skew). Without
     * one, the last time the leadership timer saw a leader. */
    if (lid != 0 && raft_state(r) == RAFT_FOLLOWER) {
        uint64_t rnow = c->io.time((struct raft_io *)&c->io);
        return rnow > r->election_timer_start ? rnow - r->election_timer_start : 0;
    }
    uint64_t now = uv_now(c->loop);
    return now > c->contact_at ? now - c->contact_at : 0;
}

void cons_servers_each(const struct cons *c, void (*cb)(void *data, const struct cons_server *s),
                       void *data)
{
    if (c->is_client) {
        cons__repl_servers_each(c, cb, data);
        return;
    }
    const struct raft_configuration *conf = &c->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++) {
        struct cons_server s = {
            .id = conf->servers[i].id,
            .address = conf->servers[i].address,
            .role = conf->servers[i].role,
        };
        cb(data, &s);
    }
}

uint64_t cons_term(const struct cons *c)
{
    if (c->is_client)
        return cons__repl_term(c);
    return raft_current_term(&c->raft);
}

uint64_t cons_last_index(const struct cons *c)
{
    if (c->is_client)
        return c->applied;
    return raft_last_index(raft_of(c));
}

uint64_t cons_applied_index(const struct cons *c)
{
    return c->applied;
}

uint64_t cons_id_from_node_id(const char *node_id)
{
    uint64_t id = 0;
    for (int n = 0; *node_id && n < 16; node_id++) {
        char ch = *node_id;
        int v = ch >= '0' && ch <= '9'                 ? ch - '0'
                : (ch | 32) >= 'a' && (ch | 32) <= 'f' ? (ch | 32) - 'a' + 10
                                                       : -1;
        if (v < 0)
            continue;
        id = id << 4 | (uint64_t)v;
        n++;
    }
    return id ? id : 1;
}

int cons__role_of(struct cons *c, uint64_t id)
{
    const struct raft_configuration *conf = &c->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id == id)
            return conf->servers[i].role;
    return -1;
}

const char *cons__leader_address(struct cons *c)
{
    raft_id lid = 0;
    const char *laddr = NULL;
    if (c->is_client) {
        uint64_t id;
        cons__repl_leader(c, &id, &laddr);
        return id && *laddr ? laddr : NULL;
    }
    if (!c->raft_started)
        return NULL;
    raft_leader(&c->raft, &lid, &laddr);
    return lid && lid != c->id && laddr && *laddr ? laddr : NULL;
}
