/* Cluster formation (DESIGN.md 2.5): how Raft starts on an empty data dir.
 *
 * A dir with Raft state (a metadata file) just starts: a restarted server needs nothing but
 * its dir. With join addresses it also sends a JOIN, retried until one succeeds: a no-op for
 * a member, while a server that left or was removed while it was down is added back with its
 * log, as Consul's servers rejoin (its own last configuration cannot tell: a removed server
 * never receives the entry that removes it). Otherwise, with bootstrap_expect N >= 2, Raft is
 * initialised but not started, and the server says HELLO (over server RPC) to its join
 * addresses and to every server it learns of. A HELLO, request or response alike, carries the
 * sender's id, address, expected count, state (forming or member), the servers it knows and,
 * for a member, its configuration. Every forming server merges what it hears, so knowledge
 * spreads both ways and transitively.
 *
 * Agreement. A server bootstraps only when it knows at least N servers AND every one of them
 * last reported, while forming, the same expected count and exactly the same set. Then all of
 * them write the same first entry: the set sorted by id, all voters; entry 1 at term 1 is
 * identical everywhere, so exactly one cluster forms whatever the start order and the delays.
 * The check matters when more than N servers start at once: sets only grow, so two servers
 * cannot each see everyone agree on different sets (each saw the other report its own set,
 * and a server that learned more before deciding would not have decided).
 *
 * Late arrivals. A server that bootstrapped reports its bootstrap set (held in memory) in its
 * HELLOs; a server still forming that finds itself in such a set bootstraps that very set
 * (identical entry 1, so it can vote at once: a formation never deadlocks waiting for
 * servers that started empty and cannot vote yet). A server that finds a running cluster
 * whose configuration lists it starts Raft empty and is caught up by the leader (a wiped
 * server rejoining: the leader replaces it, see member.c). Any other server starts Raft
 * empty and joins: a JOIN request through the
 * member it found (any member relays it to the leader), retried with backoff until the leader
 * added it. With bootstrap_expect 0 and join addresses a server joins the same way; with
 * neither it waits for cons_join.
 *
 * Decisions are taken in the tick, never inside an RPC callback, and progress is logged at
 * info (rate-limited while waiting). */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define HELLO_INTERVAL_MS  100
#define HELLO_BACKOFF_MAX  1000
#define HELLO_TIMEOUT_MS   2000
#define JOIN_TIMEOUT_MS    60000
#define JOIN_BACKOFF_MIN   100
#define JOIN_BACKOFF_MAX   5000
#define WAIT_LOG_MS        5000
#define HELLO_MAX_SERVERS  1024
#define FORM_STATE_FORMING 0
#define FORM_STATE_MEMBER  1

struct hello_srv {
    uint64_t id;
    char *address;
    uint8_t role;
};

struct hello {
    uint64_t id;
    char *address;
    uint32_t expect;
    uint8_t state;
    uint64_t leader_id;
    char *leader_address;
    struct hello_srv *servers; /* forming: the set it knows; member: its configuration */
    size_t n_servers;
    struct hello_srv *boot; /* member: the set it bootstrapped in this process */
    size_t n_boot;
};

/* ---- state on disk --------------------------------------------------------------------- */

/* libraft writes metadata1/metadata2 (32 bytes: format, version, term, vote) at bootstrap and
 * at every term change; a dir without a complete one is pristine (libraft's own test). */
static bool raft_dir_has_state(const char *dir)
{
    static const char *names[] = {"metadata1", "metadata2"};
    for (size_t i = 0; i < BASE_ARRAY_LEN(names); i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (stat(path, &st) == 0 && st.st_size == 32)
            return true;
    }
    return false;
}

/* ---- encoding -------------------------------------------------------------------------- */

static void put_srv(struct base_buf *b, uint64_t id, const char *address, uint8_t role)
{
    base_buf_put_u64(b, id);
    base_buf_put_str(b, address);
    base_buf_put_u8(b, role);
}

static void hello_encode(struct cons *c, struct base_buf *b)
{
    struct cons_form *f = &c->form;
    bool member = c->raft_started;
    raft_id lid = 0;
    const char *laddr = NULL;
    if (member)
        raft_leader(&c->raft, &lid, &laddr);
    base_buf_put_u64(b, c->id);
    base_buf_put_str(b, c->address);
    base_buf_put_u32(b, f->expect);
    base_buf_put_u8(b, member ? FORM_STATE_MEMBER : FORM_STATE_FORMING);
    base_buf_put_u64(b, lid);
    base_buf_put_str(b, lid && laddr ? laddr : "");
    if (member) {
        const struct raft_configuration *conf = &c->raft.configuration;
        base_buf_put_u32(b, conf->n);
        for (unsigned i = 0; i < conf->n; i++)
            put_srv(b, conf->servers[i].id, conf->servers[i].address,
                    (uint8_t)conf->servers[i].role);
    } else {
        base_buf_put_u32(b, (uint32_t)f->n_known);
        for (size_t i = 0; i < f->n_known; i++)
            put_srv(b, f->known[i].id, f->known[i].address, RAFT_VOTER);
    }
    base_buf_put_u32(b, (uint32_t)f->n_boot);
    for (size_t i = 0; i < f->n_boot; i++)
        put_srv(b, f->boot[i].id, f->boot[i].address, RAFT_VOTER);
}

static int srvs_decode(struct base_rd *r, struct base_arena *a, struct hello_srv **out, size_t *n)
{
    uint32_t count = base_rd_u32(r);
    if (r->err || count > HELLO_MAX_SERVERS)
        return BASE_EPARSE;
    *out = count ? base_arena_alloc(a, count * sizeof **out) : NULL;
    *n = count;
    for (uint32_t i = 0; i < count; i++) {
        (*out)[i].id = base_rd_u64(r);
        (*out)[i].address = base_rd_str(r, a);
        (*out)[i].role = base_rd_u8(r);
        if (r->err || (*out)[i].id == 0 || !*(*out)[i].address)
            return BASE_EPARSE;
    }
    return 0;
}

static int hello_decode(const uint8_t *p, size_t len, struct base_arena *a, struct hello *h)
{
    struct base_rd r;
    base_rd_init(&r, p, len);
    memset(h, 0, sizeof *h);
    h->id = base_rd_u64(&r);
    h->address = base_rd_str(&r, a);
    h->expect = base_rd_u32(&r);
    h->state = base_rd_u8(&r);
    h->leader_id = base_rd_u64(&r);
    h->leader_address = base_rd_str(&r, a);
    if (r.err || h->id == 0 || !*h->address || h->state > FORM_STATE_MEMBER)
        return BASE_EPARSE;
    if (srvs_decode(&r, a, &h->servers, &h->n_servers) || srvs_decode(&r, a, &h->boot, &h->n_boot))
        return BASE_EPARSE;
    return 0;
}

/* ---- what we know ---------------------------------------------------------------------- */

static void addr_add(struct cons *c, const char *address)
{
    struct cons_form *f = &c->form;
    struct cons_form_addr **pp = &f->addrs;
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->address, address) == 0)
            return;
    struct cons_form_addr *a = base_calloc(1, sizeof *a);
    a->address = base_strdup(address);
    a->self = strcmp(address, c->address) == 0;
    a->next_at = uv_now(c->loop);
    *pp = a;
}

static struct cons_form_srv *known_find(struct cons_form *f, uint64_t id)
{
    for (size_t i = 0; i < f->n_known; i++)
        if (f->known[i].id == id)
            return &f->known[i];
    return NULL;
}

/* Rate limit for repeated warnings. */
static bool warn_due(struct cons *c)
{
    uint64_t now = uv_now(c->loop);
    if (now < c->form.warn_at)
        return false;
    c->form.warn_at = now + WAIT_LOG_MS;
    return true;
}

static void known_add(struct cons *c, uint64_t id, const char *address)
{
    struct cons_form *f = &c->form;
    struct cons_form_srv *k = known_find(f, id);
    if (k) {
        if (strcmp(k->address, address) != 0 && warn_due(c))
            LOG_WARN("consensus", "formation: %s claims the id %" PRIu64 " of %s", address, id,
                     k->address);
        return;
    }
    size_t i = 0;
    while (i < f->n_known && f->known[i].id < id)
        i++;
    f->known = base_realloc(f->known, (f->n_known + 1) * sizeof *f->known);
    memmove(&f->known[i + 1], &f->known[i], (f->n_known - i) * sizeof *f->known);
    memset(&f->known[i], 0, sizeof f->known[i]);
    f->known[i].id = id;
    f->known[i].address = base_strdup(address);
    f->n_known++;
    LOG_INFO("consensus", "formation: found server id=%" PRIu64 " address=%s (%zu of %u)", id,
             address, f->n_known, f->expect);
    addr_add(c, address);
}

static void srvs_free(struct cons_form_srv *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        base_free(s[i].address);
        base_free(s[i].set);
    }
    base_free(s);
}

static void report_clear(struct cons_form *f)
{
    base_free(f->rep_address);
    srvs_free(f->rep_boot, f->n_rep_boot);
    f->rep_address = NULL;
    f->rep_boot = NULL;
    f->n_rep_boot = 0;
    f->rep_valid = f->rep_boot_has_us = f->rep_config_has_us = false;
}

/* A HELLO heard from another server (the reply to ours, or its request). */
static void form_heard(struct cons *c, const struct hello *h)
{
    struct cons_form *f = &c->form;
    if (f->phase != CONS_FORM_HELLO || h->id == c->id)
        return;
    if (h->state == FORM_STATE_MEMBER) {
        /* a running cluster: decided in the tick (the newest report wins) */
        report_clear(f);
        f->rep_valid = true;
        f->rep_address = base_strdup(h->address);
        for (size_t i = 0; i < h->n_boot; i++)
            if (h->boot[i].id == c->id && strcmp(h->boot[i].address, c->address) == 0)
                f->rep_boot_has_us = true;
        for (size_t i = 0; i < h->n_servers; i++)
            if (h->servers[i].id == c->id && strcmp(h->servers[i].address, c->address) == 0)
                f->rep_config_has_us = true;
        if (f->rep_boot_has_us) {
            f->rep_boot = base_calloc(h->n_boot, sizeof *f->rep_boot);
            f->n_rep_boot = h->n_boot;
            for (size_t i = 0; i < h->n_boot; i++) {
                f->rep_boot[i].id = h->boot[i].id;
                f->rep_boot[i].address = base_strdup(h->boot[i].address);
            }
        }
        return;
    }
    known_add(c, h->id, h->address);
    for (size_t i = 0; i < h->n_servers; i++)
        known_add(c, h->servers[i].id, h->servers[i].address);
    struct cons_form_srv *k = known_find(f, h->id);
    k->reported = true;
    k->expect = h->expect;
    base_free(k->set);
    k->set = base_malloc((h->n_servers ? h->n_servers : 1) * sizeof *k->set);
    k->n_set = h->n_servers;
    for (size_t i = 0; i < h->n_servers; i++) { /* sorted by the sender; sorted again here */
        size_t j = i;
        while (j > 0 && k->set[j - 1] > h->servers[i].id) {
            k->set[j] = k->set[j - 1];
            j--;
        }
        k->set[j] = h->servers[i].id;
    }
    if (h->expect != f->expect && warn_due(c))
        LOG_WARN("consensus", "formation: %s expects %u servers, this server %u", h->address,
                 (unsigned)h->expect, f->expect);
}

/* ---- decisions ------------------------------------------------------------------------- */

static void start_or_log(struct cons *c)
{
    if (cons__raft_start(c) != 0)
        LOG_ERR("consensus", "formation: Raft did not start; this server stays out of the "
                             "cluster until restarted");
}

/* Bootstraps set (sorted by id) and starts Raft. */
static void bootstrap_set(struct cons *c, const struct cons_form_srv *set, size_t n)
{
    struct cons_form *f = &c->form;
    struct raft_configuration conf;
    struct base_buf names;
    raft_configuration_init(&conf);
    base_buf_init(&names);
    int rv = 0;
    for (size_t i = 0; i < n && rv == 0; i++) {
        rv = raft_configuration_add(&conf, set[i].id, set[i].address, RAFT_VOTER);
        base_buf_printf(&names, "%s%" PRIu64 "@%s", i ? ", " : "", set[i].id, set[i].address);
    }
    base_buf_put_u8(&names, 0);
    if (rv == 0)
        rv = raft_bootstrap(&c->raft, &conf);
    raft_configuration_close(&conf);
    if (rv == 0) {
        LOG_INFO("consensus", "formation: bootstrapped a cluster of %zu servers: %s", n,
                 (char *)names.data);
        srvs_free(f->boot, f->n_boot);
        f->boot = base_calloc(n, sizeof *f->boot);
        f->n_boot = n;
        for (size_t i = 0; i < n; i++) {
            f->boot[i].id = set[i].id;
            f->boot[i].address = base_strdup(set[i].address);
        }
    } else if (rv == RAFT_CANTBOOTSTRAP) {
        LOG_INFO("consensus", "formation: Raft state appeared in %s: starting from it", c->dir);
    } else {
        LOG_ERR("consensus", "formation: bootstrap: %s", raft_strerror(rv));
    }
    base_buf_free(&names);
    f->phase = CONS_FORM_OFF;
    start_or_log(c);
}

static void join_begin(struct cons *c, const char *first)
{
    struct cons_form *f = &c->form;
    f->phase = CONS_FORM_JOIN;
    f->join_at = uv_now(c->loop);
    f->join_failures = 0;
    f->join_confirm = false;
    if (first) { /* the member we heard from goes first */
        f->join_via = base_realloc(f->join_via, (f->n_join_via + 1) * sizeof *f->join_via);
        memmove(f->join_via + 1, f->join_via, f->n_join_via * sizeof *f->join_via);
        f->join_via[0] = base_strdup(first);
        f->n_join_via++;
        f->join_next = 0;
    }
}

static bool sets_agree(const struct cons_form *f, const struct cons_form_srv *k)
{
    if (!k->reported || k->expect != f->expect || k->n_set != f->n_known)
        return false;
    for (size_t i = 0; i < f->n_known; i++)
        if (k->set[i] != f->known[i].id)
            return false;
    return true;
}

static void form_decide(struct cons *c)
{
    struct cons_form *f = &c->form;
    if (f->rep_valid) {
        if (f->rep_boot_has_us) {
            LOG_INFO("consensus",
                     "formation: %s bootstrapped a cluster with us in it: "
                     "bootstrapping the same configuration",
                     f->rep_address);
            struct cons_form_srv *boot = f->rep_boot;
            size_t n = f->n_rep_boot;
            f->rep_boot = NULL;
            f->n_rep_boot = 0;
            report_clear(f);
            bootstrap_set(c, boot, n);
            srvs_free(boot, n);
        } else if (f->rep_config_has_us) {
            LOG_INFO("consensus",
                     "formation: %s runs a cluster that lists us: starting empty "
                     "to be caught up by its leader",
                     f->rep_address);
            report_clear(f);
            f->phase = CONS_FORM_OFF;
            start_or_log(c);
        } else {
            LOG_INFO("consensus", "formation: %s runs a cluster already: joining it",
                     f->rep_address);
            char *via = base_strdup(f->rep_address);
            report_clear(f);
            join_begin(c, via);
            base_free(via);
            start_or_log(c);
        }
        return;
    }
    if (f->n_known < f->expect)
        return;
    for (size_t i = 0; i < f->n_known; i++)
        if (f->known[i].id != c->id && !sets_agree(f, &f->known[i]))
            return;
    bootstrap_set(c, f->known, f->n_known);
}

/* ---- discovery ------------------------------------------------------------------------- */

void cons_server_seen(struct cons *c, uint64_t id, const char *address)
{
    BASE_ASSERT_LOOP();
    struct cons_form *f = &c->form;
    if (id == c->id || !address || !*address || c->stopping)
        return;
    if (c->is_client) {
        cons__repl_seen(c, id, address);
        return;
    }
    if (f->phase == CONS_FORM_HELLO) {
        addr_add(c, address);
    } else if (f->phase == CONS_FORM_JOIN) {
        for (size_t i = 0; i < f->n_join_via; i++)
            if (strcmp(f->join_via[i], address) == 0)
                return;
        f->join_via = base_realloc(f->join_via, (f->n_join_via + 1) * sizeof *f->join_via);
        f->join_via[f->n_join_via++] = base_strdup(address);
    }
    LOG_DEBUG("consensus", "server id=%" PRIu64 " seen at %s", id, address);
}

/* ---- HELLO ----------------------------------------------------------------------------- */

struct hello_call {
    struct cons *c;
    struct cons_form_addr *a;
};

static void hello_reply(void *data, int status, const uint8_t *body, size_t len)
{
    struct hello_call *hc = data;
    struct cons *c = hc->c;
    struct cons_form_addr *a = hc->a;
    base_free(hc);
    a->inflight = false;
    uint64_t now = uv_now(c->loop);
    if (status == 0) {
        struct base_arena ar;
        struct hello h;
        struct base_rd r;
        base_arena_init(&ar);
        base_rd_init(&r, body, len);
        int st = rpc_status_dec(base_rd_u32(&r));
        if (!r.err && st == 0 && hello_decode(body + 4, len - 4, &ar, &h) == 0) {
            a->failures = 0;
            a->next_at = now + HELLO_INTERVAL_MS;
            if (h.id != c->id)
                form_heard(c, &h);
            else if (strcmp(h.address, c->address) == 0)
                a->self = true; /* a join address that is our own */
            else if (warn_due(c))
                LOG_WARN("consensus", "formation: %s uses our id %" PRIu64 ": ids must be unique",
                         h.address, c->id);
            base_arena_close(&ar);
            return;
        }
        base_arena_close(&ar);
        status = BASE_EPARSE;
    }
    a->failures++;
    unsigned d = 50u << (a->failures < 5 ? a->failures - 1 : 4);
    a->next_at = now + (d < HELLO_BACKOFF_MAX ? d : HELLO_BACKOFF_MAX);
    LOG_DEBUG("consensus", "formation: HELLO to %s: %s", a->address, base_strerror(status));
}

/* Who may take part in a formation. With a key: whoever proved it. Without: a server
 * speaking from the address it claims, and that address known to us (a join address, or a
 * server that a trusted server told us about: f->addrs holds nothing else) or allowed to join
 * (join_allow; default loopback). Otherwise anyone could add itself to the set that
 * bootstraps, as a voter. Our own HELLOs go only to f->addrs, so their replies are trusted. */
static bool form_trusts(struct cons *c, const struct rpc_peer *p, const char *claimed)
{
    if (p->keyed)
        return true;
    if (!rpc_peer_at(p, claimed))
        return false;
    for (struct cons_form_addr *a = c->form.addrs; a; a = a->next)
        if (rpc_peer_at(p, a->address))
            return true;
    return cons__join_allowed(c, &p->sa);
}

void cons__hello_serve(struct cons *c, struct rpc_req *req, const uint8_t *body, size_t len)
{
    struct base_arena ar;
    struct hello h;
    struct base_buf b;
    base_arena_init(&ar);
    base_buf_init(&b);
    if (hello_decode(body, len, &ar, &h) != 0) {
        base_buf_put_u32(&b, rpc_status_enc(BASE_EPARSE));
    } else {
        const struct rpc_peer *p = rpc_req_peer(req);
        if (h.id != c->id && c->form.phase == CONS_FORM_HELLO) {
            if (form_trusts(c, p, h.address)) {
                cons_server_seen(c, h.id, h.address); /* so that we say HELLO back to it */
                form_heard(c, &h);
            } else {
                rpc_refuse_log(c->rpc, &p->sa,
                               "HELLO from an address neither known nor in join_allow (set "
                               "encrypt, or list it)");
            }
        }
        base_buf_put_u32(&b, 0);
        hello_encode(c, &b);
    }
    rpc_reply(req, &b);
    base_buf_free(&b);
    base_arena_close(&ar);
}

static void log_waiting(struct cons *c)
{
    struct cons_form *f = &c->form;
    uint64_t now = uv_now(c->loop);
    if (now < f->warn_at)
        return;
    f->warn_at = now + WAIT_LOG_MS;
    struct base_buf names;
    base_buf_init(&names);
    for (size_t i = 0; i < f->n_known; i++)
        base_buf_printf(&names, "%s%" PRIu64 "@%s%s", i ? ", " : "", f->known[i].id,
                        f->known[i].address,
                        f->known[i].id == c->id || f->known[i].reported ? "" : "?");
    base_buf_put_u8(&names, 0);
    LOG_INFO("consensus", "formation: waiting for %u servers to agree, %zu known: %s", f->expect,
             f->n_known, (char *)names.data);
    base_buf_free(&names);
}

/* ---- the join loop --------------------------------------------------------------------- */

static void join_reply(void *data, int status, const char *msg)
{
    struct cons *c = data;
    struct cons_form *f = &c->form;
    f->join_inflight = false;
    if (f->phase != CONS_FORM_JOIN)
        return;
    const char *via = f->join_via[f->join_next % f->n_join_via];
    if (status == 0) {
        LOG_INFO("consensus", "joined the cluster through %s", via);
        f->phase = CONS_FORM_OFF;
        return;
    }
    f->join_failures++;
    unsigned d = JOIN_BACKOFF_MIN << (f->join_failures < 6 ? f->join_failures - 1 : 5);
    if (d > JOIN_BACKOFF_MAX || status == BASE_ECONFLICT)
        d = JOIN_BACKOFF_MAX;
    f->join_at = uv_now(c->loop) + d;
    f->join_next++;
    if (status == BASE_ECONFLICT || f->join_failures % 10 == 1)
        LOG_WARN("consensus", "join through %s: %s (%s); retrying", via, base_strerror(status),
                 msg);
}

static void join_tick(struct cons *c)
{
    struct cons_form *f = &c->form;
    if (f->join_inflight)
        return;
    if (cons__role_of(c, c->id) >= 0 && !f->join_confirm) {
        LOG_INFO("consensus", "the cluster's configuration lists us: joined");
        f->phase = CONS_FORM_OFF;
        return;
    }
    if (f->n_join_via == 0 || uv_now(c->loop) < f->join_at)
        return;
    f->join_inflight = true;
    cons__join_send(c, f->join_via[f->join_next % f->n_join_via], JOIN_TIMEOUT_MS, join_reply, c);
}

/* ---- lifecycle ------------------------------------------------------------------------- */

void cons__form_tick(struct cons *c)
{
    struct cons_form *f = &c->form;
    if (c->stopping)
        return;
    if (f->phase == CONS_FORM_JOIN) {
        join_tick(c);
        return;
    }
    if (f->phase != CONS_FORM_HELLO)
        return;
    form_decide(c);
    if (f->phase != CONS_FORM_HELLO)
        return;
    log_waiting(c);
    uint64_t now = uv_now(c->loop);
    for (struct cons_form_addr *a = f->addrs; a; a = a->next) {
        if (a->self || a->inflight || now < a->next_at)
            continue;
        struct base_buf b;
        struct hello_call *hc = base_malloc(sizeof *hc);
        hc->c = c;
        hc->a = a;
        a->inflight = true;
        base_buf_init(&b);
        hello_encode(c, &b);
        rpc_call(c->client, a->address, CONS_RPC_HELLO, &b, HELLO_TIMEOUT_MS, hello_reply, hc);
        base_buf_free(&b);
    }
}

void cons__form_abandon(struct cons *c)
{
    struct cons_form *f = &c->form;
    if (f->phase == CONS_FORM_HELLO) {
        LOG_INFO("consensus", "formation: abandoned for an explicit join");
        report_clear(f);
        f->phase = CONS_FORM_OFF;
        start_or_log(c);
    } else if (f->phase == CONS_FORM_JOIN) {
        f->phase = CONS_FORM_OFF;
    }
}

int cons__form_start(struct cons *c, const struct cons_config *cfg, char *errmsg)
{
    struct cons_form *f = &c->form;
    memset(f, 0, sizeof *f);
    f->expect = cfg->bootstrap_expect ? cfg->bootstrap_expect : cfg->bootstrap ? 1 : 0;
    for (size_t i = 0; i < cfg->n_join; i++) {
        if (!cfg->join[i] || !*cfg->join[i])
            continue;
        f->join_via = base_realloc(f->join_via, (f->n_join_via + 1) * sizeof *f->join_via);
        f->join_via[f->n_join_via++] = base_strdup(cfg->join[i]);
    }

    if (raft_dir_has_state(c->dir)) {
        LOG_INFO("consensus", "Raft state found in %s: starting from it", c->dir);
        if (cons__raft_start(c))
            return base_errf(errmsg, BASE_ESTORE, "raft start: %s", raft_errmsg(&c->raft));
        if (f->n_join_via > 0 || cfg->discover) {
            /* a JOIN is a no-op for a member, and adds back one that left or was removed */
            LOG_INFO("consensus",
                     "asking the cluster to keep us a member, through %zu join "
                     "addresses%s",
                     f->n_join_via, cfg->discover ? " and the servers gossip finds" : "");
            join_begin(c, NULL);
            f->join_confirm = true;
        }
        return 0;
    }
    if (f->expect == 1) {
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        int rv = raft_configuration_add(&conf, c->id, c->address, RAFT_VOTER);
        if (rv == 0)
            rv = raft_bootstrap(&c->raft, &conf);
        raft_configuration_close(&conf);
        if (rv == RAFT_CANTBOOTSTRAP) {
            LOG_DEBUG("consensus", "bootstrap skipped: %s already holds Raft state", c->dir);
        } else if (rv != 0) {
            return base_errf(errmsg, rv == RAFT_NOMEM ? -ENOMEM : BASE_ESTORE,
                             "bootstrap in %s: %s", c->dir, raft_strerror(rv));
        } else {
            LOG_INFO("consensus", "bootstrapped a one-voter cluster id=%" PRIu64 " address=%s",
                     c->id, c->address);
        }
        return cons__raft_start(c)
                   ? base_errf(errmsg, BASE_ESTORE, "raft start: %s", raft_errmsg(&c->raft))
                   : 0;
    }
    if (f->expect >= 2) {
        f->phase = CONS_FORM_HELLO;
        f->known = base_calloc(1, sizeof *f->known);
        f->known[0].id = c->id;
        f->known[0].address = base_strdup(c->address);
        f->n_known = 1;
        for (size_t i = 0; i < f->n_join_via; i++)
            addr_add(c, f->join_via[i]);
        LOG_INFO("consensus",
                 "formation: waiting for %u servers (bootstrap_expect), %zu join "
                 "addresses",
                 f->expect, f->n_join_via);
        if (f->n_join_via == 0 && !cfg->discover)
            LOG_WARN("consensus", "formation: no join addresses: waiting for others to "
                                  "contact this server");
        return 0;
    }
    int rv = cons__raft_start(c);
    if (rv != 0)
        return base_errf(errmsg, BASE_ESTORE, "raft start: %s", raft_errmsg(&c->raft));
    if (f->n_join_via > 0 || cfg->discover) {
        LOG_INFO("consensus", "no Raft state: joining a cluster through %zu addresses%s",
                 f->n_join_via, cfg->discover ? " and the servers gossip finds" : "");
        join_begin(c, NULL);
    } else {
        LOG_INFO("consensus", "no Raft state and nothing to bootstrap or join: waiting to be "
                              "added to a cluster");
    }
    return 0;
}

void cons__form_stop(struct cons *c)
{
    c->form.phase = CONS_FORM_OFF;
    report_clear(&c->form);
}

void cons__form_free(struct cons *c)
{
    struct cons_form *f = &c->form;
    srvs_free(f->known, f->n_known);
    srvs_free(f->boot, f->n_boot);
    while (f->addrs) {
        struct cons_form_addr *a = f->addrs;
        f->addrs = a->next;
        base_free(a->address);
        base_free(a);
    }
    for (size_t i = 0; i < f->n_join_via; i++)
        base_free(f->join_via[i]);
    base_free(f->join_via);
    memset(f, 0, sizeof *f);
}
