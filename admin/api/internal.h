/* admin/api private declarations: the api object, the request context, the read/write
 * plumbing shared by the endpoint files, and the JSON field helpers. */
#ifndef HERALD_API_INTERNAL_H
#define HERALD_API_INTERNAL_H

#include "admin/api/api.h"

#include <jansson.h>
#include <regex.h>

struct api_wait;
/* One user event kept (event.c): copies of what arrived. */
struct api__event {
    char *id, *name, *node_filter, *service_filter, *tag_filter;
    uint8_t *payload; /* NULL: none */
    size_t payload_len;
    int64_t version;
    uint64_t ltime;
};

#define API_EVENTS_MAX 256 /* user events kept (Consul's agent eventBuf) */

struct api {
    uv_loop_t *loop;
    struct api_config cfg;
    struct base_list waiters; /* parked blocking queries (struct api_wait.link), newest first */
    size_t n_waiters;
    uv_idle_t wake;  /* runs once after commits to answer woken waiters */
    bool wake_armed; /* wake is started */
    uint32_t woken;  /* tables changed since the last wake pass */
    uint64_t rng;    /* xorshift state for wait jitter */
    /* List reads waiting for a reader thread (FIFO), and the number running (api.c). */
    struct base_list jobq; /* of struct api_wait.link */
    unsigned jobs_running;
    /* The last user events that passed our filters (event.c), a ring of API_EVENTS_MAX:
     * oldest at events_head. */
    struct api__event *events;
    size_t events_head, events_n;
    /* The leader's session TTL timers (session.c). */
    struct api__ttl *ttl;
    bool closing;
};

/* The outcome of a read handler: a JSON value (owned, may be NULL for "null") or raw bytes,
 * the status, and the index to report in X-Consul-Index and to compare with ?index. */
struct api_result {
    int status;
    json_t *json;
    const void *raw; /* borrowed from the read txn, the arena or `owned`; used when json is
                        NULL and raw_set */
    size_t raw_len;
    bool raw_set;
    const char *content_type; /* of raw (NULL: none) */
    struct base_buf owned;    /* bytes the result owns (a backup): freed once answered */
    const char *error;        /* text error (status >= 400) */
    uint64_t index;
    /* In: a woken blocking query only needs the index to decide whether to answer; a read
     * function may then set index and return without building the body (probed = true). */
    bool probe;
    bool probed;
    /* Set by a read whose index is not monotonic (the event list: a hash of the last event's
     * ID): a blocking query then answers as soon as the index differs from ?index, Consul's
     * "changed means unequal" rule, instead of waiting for one greater. */
    bool unequal;
};

/* A re-runnable read: called with an open read transaction; fills res. The tables mask says
 * which commits can change its answer. */
typedef void (*api_read_fn)(struct api *a, struct http_req *req, struct zone_read *rd,
                            struct base_arena *ar, struct api_result *res);

/* Runs a read with Consul's consistency and blocking-query semantics and answers it. */
void api__read(struct api *a, struct http_req *req, uint32_t tables, api_read_fn fn);
/* The same for reads whose answer may be big (lists, backups): the answer is built on a reader
 * thread (at most a few at once), never on the loop. fn must then touch only rd, ar, res and
 * req's accessors (no consensus, no api state but its config), and should support probe. */
void api__read_list(struct api *a, struct http_req *req, uint32_t tables, api_read_fn fn);
/* The same for agent endpoints: always answered from the local replica, leader or not. */
void api__read_local(struct api *a, struct http_req *req, uint32_t tables, api_read_fn fn);

/* ?dc naming another datacenter: answers 500 "No path to datacenter" (we have no WAN
 * federation) and returns true. */
bool api__other_dc(struct api *a, struct http_req *req);
/* The same for a datacenter named elsewhere (a body's Datacenter; NULL or "": ours). */
bool api__other_dc_named(struct api *a, struct http_req *req, const char *dc);

/* Proposes cmd and answers req after commit: with "true"/"false" (bool_body) or an empty 200.
 * A CAS conflict answers false; BASE_ENOTFOUND answers 404 with notfound_msg. */
enum api_write_reply { API_REPLY_EMPTY, API_REPLY_BOOL };
void api__write(struct api *a, struct http_req *req, const struct zone_cmd *cmd,
                enum api_write_reply reply, const char *notfound_msg);
/* The same for a write of the agent endpoints (this agent's own services and checks): the
 * local state (api_local_hooks) is told when it is proposed and how it ended. */
void api__agent_write(struct api *a, struct http_req *req, const struct zone_cmd *cmd,
                      enum api_write_reply reply, const char *notfound_msg);
/* The same, with a BASE_EINVAL result answered 500 with invalid_msg as is (copied): a lock's
 * `invalid session "<id>"`, which clients match on. */
void api__write_invalid(struct api *a, struct http_req *req, const struct zone_cmd *cmd,
                        enum api_write_reply reply, const char *invalid_msg);

/* When a proposal's status (cons_propose_cb) is not 0, answers req with the matching error
 * (500 no leader / unknown outcome / shutting down, 413 too large) and returns true. */
bool api__propose_failed(struct http_req *req, int status);

/* Answers req with a JSON value (consumed) and the standard read headers. */
void api__respond_json(struct api *a, struct http_req *req, int status, json_t *v, uint64_t index);
/* One-line text error. */
void api__error(struct http_req *req, int status, const char *fmt, ...) BASE_PRINTF(3, 4);

/* ---- JSON input helpers: each fills errmsg naming the field and returns non-zero ------- */
/* Keys match Consul's decoder: case-insensitive, underscores ignored ("enable_tag_override"
 * equals "EnableTagOverride"). */
bool api__key_is(const char *key, const char *name);
/* The member of obj whose key matches name as api__key_is does; NULL when none. */
json_t *api__json_field(json_t *obj, const char *name);
int api__get_str(json_t *v, const char *field, struct base_arena *ar, const char **out,
                 char *errmsg);
int api__get_bool(json_t *v, const char *field, bool *out, char *errmsg);
int api__get_uint(json_t *v, const char *field, uint64_t max, uint64_t *out, char *errmsg);
int api__get_strlist(json_t *v, const char *field, struct base_arena *ar, const char ***out,
                     size_t *n, char *errmsg);
int api__get_strmap(json_t *v, const char *field, struct base_arena *ar, struct zone_pair **out,
                    size_t *n, char *errmsg);
/* A Go duration string ("10s") or a number of nanoseconds. */
int api__get_duration(json_t *v, const char *field, uint64_t *ms, char *errmsg);
int api__unknown_field(const char *key, char *errmsg);
/* json_loadb where a key given twice keeps its last value and, in the object's iteration
 * order, the place of its last occurrence: decoders that take keys in order then end with the
 * last one, as Go's decoder does (also for "Name" then "name"). */
json_t *api__json_loadb(const char *text, size_t len, json_error_t *jerr);
/* Parses a request body as a JSON object. On failure answers 400 with the reason (also left
 * in errmsg) and returns NULL. */
json_t *api__parse_body(struct http_req *req, char *errmsg);

/* Service and check definitions (agent API and config file) -> zone records. */
/* remote: from the HTTP API rather than a config file (script checks need
 * enable_script_checks then; a refusal for that is BASE_EACL). */
int api__decode_service_def(struct api *a, json_t *obj, struct base_arena *ar, bool remote,
                            struct zone_service *svc, struct zone_check **checks, size_t *n_checks,
                            char *errmsg);
/* A check's fields (check.c), for both of its shapes: an agent check definition (catalog_node
 * NULL: TTL, HTTP, TCP, Interval ... at the top level) or a catalog check record (its node:
 * Output, Node, which must be that one, and a Definition object). Only the fields: defaults and
 * the kind of an agent check are the caller's. Status starts critical. */
int api__decode_check(json_t *obj, const char *catalog_node, struct base_arena *ar,
                      struct zone_check *chk, char *errmsg);
/* A field Consul knows and Herald does not implement is accepted when it is empty: null, "",
 * false, {} or []. */
bool api__empty_value(json_t *v);
int api__decode_check_def(struct api *a, json_t *obj, struct base_arena *ar,
                          const struct zone_service *svc, size_t ordinal, size_t total, bool remote,
                          struct zone_check *chk, char *errmsg);
/* The agent's own node record (for agent registrations). */
void api__self_node(struct api *a, struct zone_node *n);

/* The largest index of the given tables (ZONE_TABLE_BIT mask). */
uint64_t api__table_max(struct zone_read *rd, uint32_t tables);
/* Sets res->index to index; for a probe (res->probe) also res->probed, and returns true: the
 * read function returns without building its body. */
bool api__probe_at(struct api_result *res, uint64_t index);
/* The same with the largest index of tables (api__table_max). */
bool api__probe_tables(struct zone_read *rd, uint32_t tables, struct api_result *res);
/* The index of a read that answers with one record: its ModifyIndex, or the last backup
 * restore's index when later (zone_meta.restored), so a blocking query sees a restore. */
uint64_t api__record_index(struct zone_read *rd, uint64_t modify_index);

/* ---- JSON output ----------------------------------------------------------------------- */
/* A JSON array answer built item by item. Unless the client asked for ?pretty, each item is
 * written out as compact text as soon as it is added and then freed, so a list of tens of MB
 * never exists as a jansson tree (whose many small blocks cost several times the text and
 * are rarely given back); the text is the same json_dumps would give for the whole array. */
struct api_list {
    json_t *arr;          /* ?pretty: the tree */
    struct base_buf text; /* otherwise: "[item,item" so far */
    size_t n;
};
void api__list_init(struct api_list *l, struct http_req *req);
/* Adds item (consumed). */
void api__list_add(struct api_list *l, json_t *item);
/* Adds an item already written as compact JSON text (a value jansson cannot hold, such as an
 * unsigned 64-bit number over INT64_MAX); a ?pretty list then goes on as compact text. */
void api__list_add_raw(struct api_list *l, const char *text, size_t len);
/* Puts the array in res (as json, or as raw application/json text that res owns). */
void api__list_finish(struct api_list *l, struct api_result *res);
/* Drops what was built (an empty list answered otherwise). */
void api__list_drop(struct api_list *l);

/* Sets CreateIndex and ModifyIndex, the fields every record's JSON ends with. */
void api__json_indexes(json_t *o, uint64_t create_index, uint64_t modify_index);
json_t *api__json_node(const struct zone_node *n);
json_t *api__json_service_agent(const struct zone_service *s, const char *datacenter);
json_t *api__json_service_catalog(const struct zone_node *n, const struct zone_service *s);
json_t *api__json_check(const struct zone_check *c);
json_t *api__json_strmap(const struct zone_pair *p, size_t n);
json_t *api__json_strlist(const char *const *s, size_t n);

/* ---- endpoint groups: each returns true when it owned the path ------------------------- */
bool api__agent_route(struct api *a, struct http_req *req, const char *path);
bool api__catalog_route(struct api *a, struct http_req *req, const char *path);
bool api__health_route(struct api *a, struct http_req *req, const char *path);
bool api__kv_route(struct api *a, struct http_req *req, const char *path);
bool api__status_route(struct api *a, struct http_req *req, const char *path);
bool api__member_route(struct api *a, struct http_req *req, const char *path);
bool api__snapshot_route(struct api *a, struct http_req *req, const char *path);
bool api__keyring_route(struct api *a, struct http_req *req, const char *path);
bool api__event_route(struct api *a, struct http_req *req, const char *path);
bool api__session_route(struct api *a, struct http_req *req, const char *path);
bool api__txn_route(struct api *a, struct http_req *req, const char *path);

/* ---- sessions (session.c) -------------------------------------------------------------- */
void api__sessions_init(struct api *a);
/* After each applied entry: the leader re-times renewed sessions and new or gone ones. */
void api__sessions_applied(struct api *a, uint32_t touched);
void api__sessions_free(struct api *a);

/* ---- user events (event.c) ------------------------------------------------------------- */
/* Consul's uuidToUint64: the ID's hex digits 0-8, 9-13, 14-18 as one 64-bit number XOR the
 * digits 19-23, 24-36 as another; 0 when id is not a UUID's 36 characters of hex and dashes. */
uint64_t api__event_index(const char *id);
/* Compiles a filter as an event's regular expression (POSIX extended, unanchored, no
 * sub-matches) after refusing what RE2, Consul's engine, refuses and glibc would take at a
 * cost: back-references and repetition counts over 1000, nested ones included. 0 and *re
 * (regfree it); non-zero with errmsg saying why. */
int api__event_regcomp(const char *filter, regex_t *re, char *errmsg);
/* Frees the kept events (api_free). */
void api__events_free(struct api *a);

/* Checks the method against allowed ("GET", "PUT,POST", ...): answers 405 with Allow and
 * returns false when it does not match. */
bool api__method(struct http_req *req, const char *allowed);
/* A GET of a path that ends in a name (what follows the route's prefix): answers 405 for
 * another method, 400 with missing ("Missing node name") for an empty name, and returns
 * whether to read. */
bool api__get_named(struct http_req *req, const char *name, const char *missing);

/* Not a catalog table: the wake-up bit of user events (api_on_user_event), for the blocking
 * event lists' mask. */
#define API_WAKE_EVENTS (1u << 31)

#define API_TABLES_CATALOG (ZONE_TABLE_BIT(ZONE_TABLE_NODES) | ZONE_TABLE_BIT(ZONE_TABLE_SERVICES))
#define API_TABLES_HEALTH                                                                          \
    (ZONE_TABLE_BIT(ZONE_TABLE_NODES) | ZONE_TABLE_BIT(ZONE_TABLE_SERVICES) |                      \
     ZONE_TABLE_BIT(ZONE_TABLE_CHECKS))

#endif
