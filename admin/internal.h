/* admin: the composition root. main dispatches to the agent or the CLI; config merges config
 * files and flags; agent wires zone, consensus, admin/http and admin/api on one loop and the
 * DNS resolver's workers beside it; checks runs this agent's TTL, TCP and HTTP health checks. */
#ifndef HERALD_ADMIN_INTERNAL_H
#define HERALD_ADMIN_INTERNAL_H

#include "admin/api/api.h"
#include "admin/http/http.h"
#include "base/base.h"
#include "consensus/consensus.h"
#include "gossip/gossip.h"
#include "rpc/rpc.h"
#include "resolver/resolver.h"
#include "zone/zone.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HERALD_VERSION "0.1.0"

struct adm_strv {
    char **v;
    size_t n;
};
void adm_strv_push(struct adm_strv *s, const char *x);
void adm_strv_free(struct adm_strv *s);

struct adm_config {
    bool dev;
    bool server;
    unsigned bootstrap_expect;
    char *data_dir;
    char *node_name;
    char *datacenter;
    char *bind_addr;
    char *advertise_addr;
    char *client_addr;
    char *http_addr; /* addresses.http, defaults to client_addr */
    int http_port, dns_port, server_port, serf_lan_port;
    struct adm_strv retry_join; /* gossip addresses of members to join */
    char *serf_lan_addr;        /* the gossip bind address (serf_lan), default bind_addr */
    uint64_t retry_interval_ms;
    unsigned retry_max;
    bool rejoin_after_leave; /* -rejoin: rejoin the snapshot's members even after a leave */
    uint64_t reconnect_timeout_ms;
    uint64_t reconcile_interval_ms;
    uint64_t ae_interval_ms, check_update_interval_ms;
    bool leave_on_terminate, leave_on_terminate_set;
    bool skip_leave_on_interrupt, skip_leave_on_interrupt_set;
    struct adm_gossip_config { /* gossip_lan.*, 0: gossip's default */
        unsigned gossip_nodes, retransmit_mult, suspicion_mult;
        uint64_t gossip_interval_ms, probe_interval_ms, probe_timeout_ms;
    } gossip_lan;
    struct adm_strv recursors;       /* -recursor and "recursors", merged (as Consul) */
    struct adm_strv allow_recursion; /* -allow-recursion: replaces dns_config.allow_recursion */
    char *domain;
    char *alt_domain;
    enum base_log_level log_level;
    bool log_level_set; /* given by a flag or a file (else -dev logs at debug) */
    bool log_json;
    struct adm_strv services; /* JSON text of each service definition, from config files */
    struct adm_strv checks;   /* JSON text of each node check definition, from config files */
    /* script checks: also over HTTP (enable_script_checks), from config files only (local) */
    bool enable_script_checks, enable_local_script_checks;
    uint64_t max_running_scripts; /* script checks running at once; more wait for the next round */
    /* the server port (rpc/port.c): -encrypt (base64; key/key_len: its bytes,
     * decoded by validation), -join-allow CIDRs (join_nets: parsed), limits.rpc_* */
    char *encrypt;
    uint8_t *key;
    size_t key_len;
    struct adm_strv join_allow;
    struct rsv_cidr *join_nets;
    size_t n_join_nets;
    unsigned rpc_max_conns_per_client;
    uint64_t rpc_idle_timeout_ms;
    uint64_t http_max_conns;
    uint64_t http_header_timeout_ms, http_idle_timeout_ms;
    uint64_t http_max_conns_per_client, http_body_timeout_ms; /* limits.*, 0: http's default */
    unsigned raft_snapshot_threshold, raft_snapshot_trailing;
    unsigned raft_multiplier; /* performance.raft_multiplier, 0: consensus default */
    /* DNS: addresses.dns (defaults to client_addr), -dns-workers, dns_config */
    char *dns_addr;
    unsigned dns_workers; /* 0: the number of cores */
    struct adm_dns_config {
        uint32_t node_ttl;
        struct zone_dns_ttl *service_ttl; /* patterns owned (base_strdup) */
        size_t n_service_ttl;
        bool allow_stale;      /* accepted; DNS reads are always local */
        uint64_t max_stale_ms; /* accepted, unused */
        bool only_passing;
        bool enable_truncate;
        unsigned udp_answer_limit, a_record_limit;
        uint32_t soa_refresh, soa_retry, soa_expire, soa_min_ttl;
        uint64_t recursor_timeout_ms; /* upstreams silent this long: SERVFAIL (default 2s) */
        /* recursion (Herald's keys beside Consul's recursors and recursor_timeout) */
        enum rsv_recursion_mode recursion; /* "forward" (default) or "iterative" */
        char *root_hints;                  /* iterative mode; NULL: libunbound's built-in */
        bool dnssec_validation;
        char *trust_anchor;              /* NULL with dnssec_validation: Debian's root.key */
        uint64_t cache_size;             /* libunbound's caches over all workers, bytes */
        unsigned recursor_max_queries;   /* outstanding per worker; default 1000 */
        struct adm_strv allow_recursion; /* CIDRs from config files */
        /* The effective allow list (flags, else files, else NULL: the resolver's default),
         * parsed by validation. */
        struct rsv_cidr *allow;
        size_t n_allow;
    } dns;
};

/* The option table (config.c): one row per option, read by the flags, the JSON config files,
 * the defaults, validation and `herald agent -h`. How to add an option: above the table. */
enum adm_opt_type {
    /* numbers: from a flag's text or a JSON value, refused outside [min, max] when given */
    ADM_OPT_BOOL,      /* bool: true/false (a flag alone, 1 and 0 too) */
    ADM_OPT_UINT,      /* unsigned, uint32_t or uint64_t in [min, max] */
    ADM_OPT_PORT,      /* int, 1..65535 */
    ADM_OPT_DURATION,  /* uint64_t milliseconds: "10s"; [min, max] (max 0: none) */
    ADM_OPT_TTL,       /* uint32_t seconds: "30s", or a JSON number of seconds */
    ADM_OPT_SIZE,      /* uint64_t bytes: "32MB", or a JSON number; [min, max] */
    ADM_OPT_ENUM,      /* an enum: the index of its name in names */
    ADM_OPT_LOG_LEVEL, /* enum base_log_level: base_log_level_parse's names (names: its own) */
    /* strings (char *): any string, checked by validation once files and flags are merged */
    ADM_OPT_STRING,
    ADM_OPT_LABEL,  /* a DNS label (node, datacenter) */
    ADM_OPT_DOMAIN, /* a domain name, lowercased with its trailing dot; "" unsets one with no
                     * default */
    ADM_OPT_ADDR,   /* an IPv4 or IPv6 address */
    ADM_OPT_PATH,   /* a file this process can read */
    /* lists (struct adm_strv): a repeated flag or a JSON array of strings, appended */
    ADM_OPT_LIST,
    ADM_OPT_NETS,      /* of CIDRs ("10.0.0.0/8") */
    ADM_OPT_RECURSORS, /* of IP[:PORT] */
    /* the odd ones */
    ADM_OPT_JSON,   /* a JSON-only key decoded by the row's json() */
    ADM_OPT_CONFIG, /* -config-file, -config-dir: the row's load() reads them first */
};

struct json_t;
struct adm_option {
    const char *flag; /* without its dash ("http-port"), or NULL: no flag */
    const char *key;  /* the JSON key's path ("ports.http"), or NULL: no key */
    enum adm_opt_type type;
    size_t off, size;         /* the field in struct adm_config (ADM_OPT_AT) */
    uint64_t min, max;        /* UINT, DURATION (ms), SIZE (bytes): the range; max 0: no maximum */
    uint64_t def;             /* numbers: the default (else 0) */
    const char *def_str;      /* strings: the default (else NULL) */
    const char *const *names; /* ENUM, LOG_LEVEL: the names of values 0, 1, ..., then NULL */
    size_t given;             /* when not 0: the offset of a bool set when the option is given */
    bool replace;             /* lists: a config file's list replaces the one before it */
    int (*json)(struct json_t *v, const char *key, const char *file, struct adm_config *c,
                char *errmsg);
    int (*load)(const char *path, struct adm_config *c, char *errmsg);
};
/* The three kinds of rows, by the order of enum adm_opt_type. */
static inline bool adm_opt_is_number(const struct adm_option *o)
{
    return o->type <= ADM_OPT_LOG_LEVEL;
}
static inline bool adm_opt_is_string(const struct adm_option *o)
{
    return o->type >= ADM_OPT_STRING && o->type <= ADM_OPT_PATH;
}
static inline bool adm_opt_is_list(const struct adm_option *o)
{
    return o->type >= ADM_OPT_LIST && o->type <= ADM_OPT_RECURSORS;
}
#define ADM_OPT_AT(field)                                                                          \
    .off = offsetof(struct adm_config, field), .size = sizeof(((struct adm_config *)0)->field)
extern const struct adm_option adm_options[];
extern const size_t adm_n_options;
/* Prints `herald agent -h`: every flag and JSON key with what it takes and its default. */
void adm_options_usage(FILE *f);

/* Fills cfg from config files and flags (flags win). On error returns non-zero with errmsg
 * naming the flag, key or file; ADM_CONFIG_HELP for -h or -help (print adm_options_usage). */
#define ADM_CONFIG_HELP 1
int adm_config_load(int argc, char **argv, struct adm_config *cfg, char *errmsg);
void adm_config_free(struct adm_config *cfg);

int adm_agent_main(int argc, char **argv);
int adm_cli_main(const char *cmd, int argc, char **argv);

/* Health-check runner (this agent's checks). Loop thread. */
struct adm_checks;
/* scripts: script checks may run (enable_script_checks or enable_local_script_checks); at most
 * max_scripts of them at once. */
/* update_interval_ms: check_update_interval (0: every output change is written). */
struct adm_checks *adm_checks_new(uv_loop_t *loop, struct zone_store *store, const char *node_name,
                                  bool scripts, unsigned max_scripts, uint64_t update_interval_ms);
void adm_checks_set_api(struct adm_checks *c, struct api *api);
/* Re-reads this node's checks and (re)arms their timers. */
void adm_checks_sync(struct adm_checks *c);
void adm_checks_ttl_reset(void *c, const char *check_id);
/* check_update_interval for a status written through the API (a TTL check's update): true
 * when only the output changed too soon after its last write (the runner writes it later);
 * a status change is written now and starts the interval. */
bool adm_checks_defer_output(void *c, const char *check_id, bool status_changed,
                             enum zone_health st, const char *output);
/* Stops every check (timers, probes in flight) and frees the runner; done (may be NULL) runs
 * once its last handle is closed, later. Loop thread. */
void adm_checks_free(struct adm_checks *c, void (*done)(void *), void *data);

/* The LAN gossip pool (serf.c): gossip/ with Consul's tags, joins, discovery of servers. */
struct adm_serf;
struct adm_serf_hooks {
    /* every member event, after the pool's own handling (may be NULL) */
    void (*on_member)(void *data, const struct gossip_event *ev);
    /* user events (may be NULL) */
    void (*on_user_event)(void *data, const struct gossip_event *ev);
    /* -retry-join gave up (retry_max): the agent exits 1 */
    void (*on_fatal)(void *data);
    void *data;
};
/* Starts the pool on cfg's serf_lan address and port and begins -retry-join. cfg and cons are
 * borrowed for the pool's life (cons may be NULL: no discovery). *out is set even on error
 * (stop it then). */
int adm_serf_start(uv_loop_t *loop, const struct adm_config *cfg, const char *node_id,
                   struct cons *cons, const struct adm_serf_hooks *hooks, struct adm_serf **out,
                   char *errmsg) BASE_MUSTCHECK;
/* Stops at once (no leave); done(data) once everything is closed and freed. */
void adm_serf_stop(struct adm_serf *s, void (*done)(void *), void *data);
/* Graceful leave of the pool; done(data) once it has had time to spread. */
int adm_serf_leave(struct adm_serf *s, void (*done)(void *), void *data) BASE_MUSTCHECK;
/* Joins through entries (host, ip, ip:port, [v6]:port; a bare one gets serf_lan_port; names
 * are resolved off the loop). cb(ctx, joined, status) exactly once, BASE_ESHUTDOWN if the
 * pool stops first. Non-zero (errmsg says why, cb not called) for a malformed entry. */
typedef void (*adm_serf_join_cb)(void *ctx, size_t joined, int status);
int adm_serf_join(struct adm_serf *s, const char *const *entries, size_t n, adm_serf_join_cb cb,
                  void *ctx, char *errmsg) BASE_MUSTCHECK;
void adm_serf_members(struct adm_serf *s, gossip_member_cb cb, void *ctx);
/* Whether a client agent may follow this server and write through it from sa without the
 * cluster key: sa is the address of an alive member of the pool with role=node whose sighting
 * is vouched for (as servers' are: an address joined through, -join-allow, loopback by
 * default). */
bool adm_serf_client_allowed(struct adm_serf *s, const struct sockaddr *sa);
int adm_serf_force_leave(struct adm_serf *s, const char *node, bool prune) BASE_MUSTCHECK;
struct gossip *adm_serf_gossip(struct adm_serf *s); /* NULL once stopping */
/* gossip_keyring across the pool (BASE_ESHUTDOWN once stopping). */
int adm_serf_keyring(struct adm_serf *s, enum gossip_keyring_op op, const char *key,
                     gossip_keyring_cb cb, void *ctx) BASE_MUSTCHECK;
/* DATA/serf/local.keyring (serf_keyring.c): the keyring to start with (a file wins over
 * -encrypt; -encrypt alone starts the file; neither: keys stays empty), and its rewrite after
 * a change (0; else a message for the query's answer in why). Loop thread. */
int adm_keyring_load(const char *data_dir, const struct adm_config *c, struct adm_strv *keys,
                     char *err) BASE_MUSTCHECK;
int adm_keyring_save(const char *data_dir, const char *const *keys, size_t n, char *why,
                     size_t why_len);
/* A member's tag (NULL when absent). */
const char *adm_tag(const struct gossip_node *m, const char *key);
/* A Consul server by its tags (metadata.IsConsulServer's rules: role=consul, dc, integer port
 * and vsn, a build with a version, integer expect and raft_vsn when present, a UUID id). */
struct adm_server {
    const char *dc, *node_id; /* borrowed from the member */
    uint64_t raft_id;
    int port;
    unsigned expect;
    char address[64]; /* the server port's "ip:port" */
};
bool adm_server_parse(const struct gossip_node *m, struct adm_server *out);

/* Consul's user events on the pool (events.c). Fires ev as serf's user event
 * "consul:event:<name>" carrying Consul's envelope (not coalesced) through g (NULL: the pool
 * is stopping); serf's 512-byte limit on name and envelope applies (errmsg: serf's text). */
int adm_event_fire(struct gossip *g, const struct api_user_event *ev, char *errmsg) BASE_MUSTCHECK;
/* A user event of the pool (ours included): a Consul event's envelope goes to the api (its
 * filters, list and blocking lists); other names are not Consul's and are ignored. */
void adm_event_received(struct api *api, const struct gossip_event *ev);

/* The pool's snapshot, DATA/serf/local.snapshot (serf_snapshot.c): members last seen alive and
 * whether we left. open reads it (rejoin gets the addresses to rejoin through, *left whether we
 * left gracefully) and keeps it up to date from member events; close writes what is pending.
 * Loop thread. */
struct adm_snapshot;
struct adm_snapshot *adm_snapshot_open(uv_loop_t *loop, const char *data_dir, const char *self,
                                       struct adm_strv *rejoin, bool *left);
void adm_snapshot_member(struct adm_snapshot *sn, const struct gossip_event *ev);
void adm_snapshot_left(struct adm_snapshot *sn);
void adm_snapshot_close(struct adm_snapshot *sn);

/* This agent's own services and checks, and anti-entropy (local.c has the design). Borrowed
 * for its life: store, cons, api. Loop thread. */
struct adm_local;
typedef size_t (*adm_local_size_fn)(void *data);
struct adm_local_config {
    const char *node_name;
    const char *data_dir; /* DATA/local/state; NULL: nothing kept */
    bool server;          /* its "consul" service is the agent's own */
    uint64_t interval_ms; /* ae_interval */
    struct zone_store *store;
    struct cons *cons;
    struct api *api;           /* may be set later (adm_local_set_api) */
    adm_local_size_fn members; /* the pool's size, for the interval's scale (may be NULL) */
    void *data;
};
/* Reads DATA/local/state (what the API registered before a restart). */
struct adm_local *adm_local_new(uv_loop_t *loop, const struct adm_local_config *cfg);
void adm_local_set_api(struct adm_local *l, struct api *api);
/* The node's own registration, made again when the node is missing from the catalog. */
void adm_local_set_node(struct adm_local *l, const struct zone_cmd *node_cmd);
/* A config file's service or check registration (not kept in DATA/local/state). */
void adm_local_own(struct adm_local *l, const struct zone_cmd *cmd);
/* api_local_hooks (data: the local). */
void adm_local_begin(void *data);
void adm_local_written(void *data, const struct zone_cmd *cmd, void (*done)(void *ctx), void *ctx);
void adm_local_stats(void *data, struct api_sync_stats *out);
/* Full passes begin (the node is registered) and go on every scaled ae_interval. */
void adm_local_start(struct adm_local *l);
/* No pass after this (before consensus stops); frees after consensus stopped. */
void adm_local_stop(struct adm_local *l);
void adm_local_free(struct adm_local *l);

/* The leader's reconciliation of gossip members into the catalog (reconcile.c). Borrowed for
 * its life: cfg, store, cons, api, serf. Loop thread. */
struct adm_reconcile;
struct adm_reconcile *adm_reconcile_new(uv_loop_t *loop, const struct adm_config *cfg,
                                        struct zone_store *store, struct cons *cons,
                                        struct api *api, struct adm_serf *serf);
/* From consensus' on_leader: leading starts a barrier, then a full pass, then one every 60 s. */
void adm_reconcile_leader(struct adm_reconcile *r, bool is_leader);
/* From the pool's member events (r may be NULL). */
void adm_reconcile_event(struct adm_reconcile *r, const struct gossip_event *ev);
uint64_t adm_reconcile_writes(const struct adm_reconcile *r);
/* No pass or write after this (call before the pool stops); a barrier still pending is
 * answered by consensus and ignored. */
void adm_reconcile_stop(struct adm_reconcile *r);
/* Frees it (after consensus stopped: no barrier callback can come); the handle closes later. */
void adm_reconcile_free(struct adm_reconcile *r);

#endif
