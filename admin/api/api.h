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
    void *data;
    /* This server left the cluster (agent/leave): stop the agent. */
    void (*leave)(void *leave_data);
    void *leave_data;
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
    struct zone_store *store;
    struct cons *cons;
    struct api_check_hooks hooks;
};

int api_new(uv_loop_t *loop, const struct api_config *cfg, struct api **out) BASE_MUSTCHECK;
/* The admin/http handler: pass api as its data. */
void api_handle(void *api, struct http_req *req);
/* Wire from consensus' on_applied: wakes blocking queries whose tables changed. */
void api_on_applied(struct api *a, uint64_t index, uint32_t touched);
/* Answers every parked request (as if its wait ran out) and frees the api. */
void api_free(struct api *a);

/* ---- helpers shared with admin (config file services, CLI) ----------------------------- */
/* Decodes an agent service definition (Consul's /v1/agent/service/register body, also the
 * config file's "services" entries) into a REGISTER command for this node. Strings live in
 * the arena. errmsg names the offending field. */
int api_service_def_decode(struct api *a, const char *json_text, size_t len, struct base_arena *ar,
                           struct zone_cmd *cmd, char *errmsg) BASE_MUSTCHECK;

/* Proposes a command built by admin (e.g. config services, TTL expiry); cb may be NULL. */
void api_propose(struct api *a, const struct zone_cmd *cmd, cons_propose_cb cb, void *data);

#endif
