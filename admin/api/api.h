/* admin/api: Consul's /v1 HTTP API on top of admin/http. Handlers validate JSON with jansson,
 * read the catalog through zone read transactions, and write by proposing zone commands to
 * consensus; a write is answered only after it commits. Blocking queries (?index&wait) park
 * the request and are woken by commits (api_on_applied), never by polling.
 *
 * Threads: every function runs on the main loop thread.
 * Ownership: the config's pointers (store, cons, strings) are borrowed for the api's life.
 */
#ifndef HERALD_API_H
#define HERALD_API_H

#include "admin/http/http.h"
#include "base/base.h"
#include "consensus/consensus.h"
#include "zone/zone.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct api;

/* Hooks into the agent (admin wires them). */
struct api_check_hooks {
    /* A check of this agent was refreshed (pass/warn/fail/update): restart its TTL timer. */
    void (*ttl_reset)(void *data, const char *check_id);
    /* A status from the API that changes something: true when only the output changed and
     * it waits for check_update_interval (the runner writes it then), false to write now. */
    bool (*defer_output)(void *data, const char *check_id, bool status_changed, enum zone_health st,
                         const char *output);
    void *data;
    /* This server left the cluster (agent/leave): stop the agent. */
    void (*leave)(void *leave_data);
    void *leave_data;
};

/* A member of the agent's LAN gossip pool, as admin reads it from gossip/ (serf.Member). */
struct api_tag {
    const char *key, *value;
};
struct api_member {
    const char *name;
    const char *addr;
    uint16_t port;
    const struct api_tag *tags;
    size_t n_tags;
    int status; /* serf's: 1 alive, 2 leaving, 3 left, 4 failed */
    uint8_t
        vsn[6]; /* ProtocolMin, ProtocolMax, ProtocolCur, DelegateMin, DelegateMax, DelegateCur */
};
typedef void (*api_member_cb)(void *ctx, const struct api_member *m);
/* A keyring operation's outcome across the pool (serf's KeyResponse; gossip.h has the
 * meaning of each field). Valid during the callback. */
struct api_key_count {
    const char *key;
    size_t count;
};
struct api_keyring_result {
    int status;        /* 0 or a negative code (error then says why) */
    const char *error; /* serf's sentence, e.g. "1/3 nodes reported failure" */
    size_t num_nodes, num_resp, num_err;
    const struct api_tag *messages; /* node name -> its message */
    size_t n_messages;
    const struct api_key_count *keys, *primary_keys;
    size_t n_keys, n_primary_keys;
};
enum api_keyring_op { API_KEYRING_INSTALL, API_KEYRING_USE, API_KEYRING_REMOVE, API_KEYRING_LIST };
typedef void (*api_keyring_cb)(void *ctx, const struct api_keyring_result *r);
typedef void (*api_join_cb)(void *ctx, size_t joined, int status);
/* A Consul user event (agent/user_event.go's UserEvent): what PUT /v1/event/fire builds and
 * what admin decodes from the gossip pool. Strings NUL-terminated; filters "" when none. */
struct api_user_event {
    const char *id; /* a UUID */
    const char *name;
    const uint8_t *payload; /* NULL: none (JSON null) */
    size_t payload_len;
    const char *node_filter, *service_filter, *tag_filter; /* regular expressions */
    int64_t version;                                       /* 1 */
    uint64_t ltime; /* the serf event's Lamport time (0 when firing) */
};
/* The gossip pool, through admin (all may be NULL: no pool). */
struct api_gossip_hooks {
    /* calls cb for every member (ourselves included) */
    void (*members)(void *data, api_member_cb cb, void *ctx);
    /* joins the pool through addr (a member's gossip address); done(ctx, joined, status)
     * exactly once unless it returns non-zero (errmsg says why) */
    int (*join)(void *data, const char *addr, api_join_cb done, void *ctx, char *errmsg);
    /* serf's RemoveFailedNode (force-leave); prune forgets it at once */
    int (*force_leave)(void *data, const char *node, bool prune);
    /* serf's keyring operation across the pool (key: base64, NULL for a list); done(ctx,
     * result) exactly once, later, unless it returns non-zero */
    int (*keyring)(void *data, enum api_keyring_op op, const char *key, api_keyring_cb done,
                   void *ctx);
    /* fires ev to the pool (serf's user event "consul:event:<name>" carrying Consul's
     * envelope, not coalesced); non-zero with errmsg (serf's text for a size limit) */
    int (*event_fire)(void *data, const struct api_user_event *ev, char *errmsg);
    void *data;
};

/* The agent's own services and checks (admin/local.c: local state and anti-entropy). Every
 * write of the agent endpoints (service and check register/deregister, TTL updates,
 * maintenance) calls begin when it is proposed and written once it ended: with the command
 * when it committed, and then the request is answered when done(ctx) runs (exactly once: once
 * what it changed is on disk, or at once); with NULL (and no done) when it failed. stats fills
 * /v1/agent/self's Stats.agent. All may be NULL. */
struct api_sync_stats {
    size_t services, checks; /* owned */
    uint64_t passes, failures, repairs;
    uint64_t last_sync_ms_ago; /* UINT64_MAX: no pass succeeded yet */
    const char *last_error;    /* "" when the last pass succeeded */
};
struct api_local_hooks {
    void (*begin)(void *data);
    void (*written)(void *data, const struct zone_cmd *cmd, void (*done)(void *ctx), void *ctx);
    void (*stats)(void *data, struct api_sync_stats *out);
    void *data;
};

struct api_config {
    const char *node_name;
    const char *node_id;
    const char *datacenter;
    const char *advertise_addr; /* this node's address in the catalog */
    const char *server_addr;    /* "ip:port" of the server port (status/leader, peers) */
    const char *client_addr;
    int http_port, dns_port, server_port, serf_lan_port;
    bool server;
    uint64_t raft_id; /* this server's Raft id */
    const char *version;
    /* script checks: from config files (local) or also over HTTP (script) */
    bool enable_script_checks, enable_local_script_checks;
    struct zone_store *store;
    struct cons *cons;
    struct api_check_hooks hooks;
    struct api_gossip_hooks gossip;
    struct api_local_hooks local;
};

int api_new(uv_loop_t *loop, const struct api_config *cfg, struct api **out) BASE_MUSTCHECK;
/* The admin/http handler: pass api as its data. */
void api_handle(void *api, struct http_req *req);
/* Wire from consensus' on_applied: wakes blocking queries whose tables changed. */
void api_on_applied(struct api *a, uint64_t index, uint32_t touched);
/* Wire from the pool: a Consul user event arrived (ours included). The api applies its
 * filters to this agent (node name, this node's services and tags), keeps the last 256 that
 * pass for GET /v1/event/list and wakes the blocking lists. ev is borrowed for the call. */
void api_on_user_event(struct api *a, const struct api_user_event *ev);
/* Wire from consensus' on_leader: the leader times session TTLs (admin/api/session.c). */
void api_on_leader(struct api *a, bool is_leader);
/* Answers every parked request (as if its wait ran out) and frees the api. */
void api_free(struct api *a);

/* ---- helpers shared with admin (config file services, CLI) ----------------------------- */
/* Decodes a config file's "services" entry (Consul's agent service definition) into a
 * REGISTER command for this node. Strings live in the arena. errmsg names the offending field.
 * A script check in it needs enable_local_script_checks or enable_script_checks (BASE_EACL
 * with Consul's message otherwise); the HTTP endpoint decodes with the stricter remote rule. */
int api_service_def_decode(struct api *a, const char *json_text, size_t len, struct base_arena *ar,
                           struct zone_cmd *cmd, char *errmsg) BASE_MUSTCHECK;

/* The same for a config file's "checks" entry: one check of this node (or of one of its
 * services, by ServiceID) as a REGISTER command. */
int api_check_def_decode(struct api *a, const char *json_text, size_t len, struct base_arena *ar,
                         struct zone_cmd *cmd, char *errmsg) BASE_MUSTCHECK;

/* Proposes a command built by admin (e.g. config services, TTL expiry); cb may be NULL. */
void api_propose(struct api *a, const struct zone_cmd *cmd, cons_propose_cb cb, void *data);

#endif
