/* zone: the catalog data. Nodes, services, health checks and key/value entries in LMDB, their
 * change indexes, and the binary encoding of the write commands that Raft carries.
 * No sockets, no Raft, no JSON: consensus applies commands here, admin/api and the DNS workers
 * read through read transactions.
 *
 * Threads: one writer (the main loop thread, through zone_store_apply); any number of readers
 * on any thread, each with its own zone_read (LMDB read-only transactions, MDB_NOTLS).
 *
 * Ownership: every pointer in a record returned by a read function points into the caller's
 * arena or into LMDB pages; both stay valid until the arena is reset and the zone_read ends,
 * whichever comes first. Records passed in (commands) are borrowed for the call.
 *
 * LMDB layout: named databases nodes, services, svcidx (service name -> instances), checks,
 * kv, meta (u64 indexes), addrs (IP -> owners, for PTR), staging (a restore in pieces) and
 * sessions (Consul's sessions, by ID); the
 * keys of each are described at the top of zone/key.c, which builds every one of them.
 * Every record carries CreateIndex/ModifyIndex, the Raft index of the write. The catalog index
 * ("index") and each table's index only grow: they are the Raft index of the last write that
 * touched them (deletes included), so blocking queries wake on deletes too.
 */
#ifndef HERALD_ZONE_H
#define HERALD_ZONE_H

#include "base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum zone_table {
    ZONE_TABLE_NODES = 0,
    ZONE_TABLE_SERVICES,
    ZONE_TABLE_CHECKS,
    ZONE_TABLE_KV,
    ZONE_TABLE_SESSIONS,
    ZONE_TABLE_COUNT
};
#define ZONE_TABLE_BIT(t) (1u << (t))
#define ZONE_TABLE_ALL    ((1u << ZONE_TABLE_COUNT) - 1)

/* Health status, ordered so that a larger value is worse. */
enum zone_health {
    ZONE_HEALTH_PASSING = 0,
    ZONE_HEALTH_WARNING = 1,
    ZONE_HEALTH_CRITICAL = 2,
    ZONE_HEALTH_MAINT = 3,
};
/* "passing", "warning", "critical", "maintenance". */
const char *zone_health_name(enum zone_health h);
/* Parses the names above (not "maintenance"); "any" is not a status. BASE_EINVAL otherwise. */
int zone_health_parse(const char *s, enum zone_health *h) BASE_MUSTCHECK;

struct zone_pair {
    const char *key;
    const char *value;
};

struct zone_node {
    const char *name;
    const char *id; /* node ID (UUID), may be "" */
    const char *address;
    const char *datacenter;
    struct zone_pair *tagged_addresses;
    size_t n_tagged_addresses;
    struct zone_pair *meta;
    size_t n_meta;
    uint64_t create_index, modify_index;
};

struct zone_service {
    const char *node;
    const char *id;
    const char *name;
    const char *kind; /* "" for a typical service */
    const char **tags;
    size_t n_tags;
    const char *address; /* "" means: use the node's address */
    uint32_t port;
    struct zone_pair *meta;
    size_t n_meta;
    struct zone_pair *tagged_addresses;
    size_t n_tagged_addresses;
    uint32_t weight_passing, weight_warning; /* default 1, 1 (registered as 0, 0: 1, 1) */
    bool enable_tag_override;
    uint64_t create_index, modify_index;
};

struct zone_check {
    const char *node;
    const char *check_id;
    const char *name;
    enum zone_health status;
    const char *notes;
    const char *output;
    const char *service_id; /* "" for a node check */
    const char *service_name;
    const char **service_tags;
    size_t n_service_tags;
    const char *type; /* "ttl", "http", "tcp", "udp", "script", "" */
    /* definition, in milliseconds where a time */
    uint64_t ttl_ms, interval_ms, timeout_ms, deregister_after_ms;
    const char *http;
    const char *method;
    const char *tcp;
    /* the definition's extension (records and REGISTER commands written before it carry none:
     * then all of these are empty or 0) */
    const char **args; /* a script check's argv */
    size_t n_args;
    struct zone_pair *header; /* HTTP headers, one pair per value, in order */
    size_t n_header;
    const char *body; /* HTTP request body */
    const char *udp;  /* "host:port" */
    bool tls_skip_verify;
    uint32_t success_before_passing, failures_before_warning, failures_before_critical;
    uint64_t create_index, modify_index;
};

struct zone_kv {
    const char *key;
    const uint8_t *value;
    size_t value_len;
    uint64_t flags;
    uint64_t lock_index;
    const char *session; /* "" when unlocked */
    uint64_t create_index, modify_index;
};

/* A Consul session (state/session.go). Its checks all belong to its node: node_checks by check
 * ID, service_checks the IDs of service checks (Consul's ServiceChecks' ID). The session is
 * invalidated (destroyed, its locks released or deleted) when one of them goes critical or is
 * deleted, when its node is deregistered, or by SESSION_DESTROY (the API's destroy, or the
 * leader's TTL timer). */
enum zone_session_behavior {
    ZONE_SESSION_RELEASE = 0, /* "release": its locked keys are unlocked */
    ZONE_SESSION_DELETE = 1,  /* "delete": its locked keys are deleted */
};
struct zone_session {
    const char *id; /* a UUID, chosen by the proposer; case-sensitive key */
    const char *name;
    const char *node;
    const char **node_checks;
    size_t n_node_checks;
    const char **service_checks;
    size_t n_service_checks;
    enum zone_session_behavior behavior;
    uint64_t ttl_ms;        /* 0: no TTL */
    uint64_t lock_delay_ms; /* 0: none */
    uint64_t create_index, modify_index;
};
#define ZONE_SESSION_ID_MAX 128

#define ZONE_KV_MAX_VALUE (512 * 1024)
/* A KV key is an LMDB key as is: LMDB's compile-time maximum key size (511 bytes). */
#define ZONE_KV_MAX_KEY 511
/* Node names, service names and ids, check ids. A service's index key joins its name, node and
 * id, which together must also fit in 511 bytes (else BASE_ETOOBIG at apply). */
#define ZONE_NAME_MAX 255

/* ---- commands (the Raft log entries' payloads) ----------------------------------------- */
enum zone_cmd_type {
    /* Upsert a node, optionally one service and checks (catalog/register, agent register).
     * A service's or check's empty id defaults to its name. A check's service_name and
     * service_tags are taken from its service at apply; a check naming a service that the node
     * does not have fails the whole command with BASE_ENOTFOUND. */
    ZONE_CMD_REGISTER = 1,
    /* Delete: a whole node (service_id and check_id empty) with its services and checks, one
     * service of it and that service's checks, or one check (both ids: both). Deleting what
     * is not there succeeds. */
    ZONE_CMD_DEREGISTER = 2,
    /* Set a check's status and output; ENOTFOUND result if the check is gone. */
    ZONE_CMD_CHECK_UPDATE = 3,
    /* Put a KV entry; with has_cas, only if ModifyIndex == cas (0: only if absent), else
     * BASE_ECONFLICT. The stored lock_index and session are kept. */
    ZONE_CMD_KV_SET = 4,
    /* Delete a key, or a prefix with recurse; has_cas as above (ignored with recurse). A
     * missing key is deleted successfully whatever the cas (Consul's kvsDeleteCASTxn). */
    ZONE_CMD_KV_DELETE = 5,
    /* A backup restored through Raft in pieces (zone/restore.c has the design). BEGIN discards
     * any staged restore and stages a new one: restore.id (non-zero), restore.total bytes (at
     * most ZONE_BACKUP_MAX) whose last 4 are the CRC restore.crc; BASE_EPARSE or BASE_ETOOBIG
     * otherwise. CHUNK stores restore.len bytes (1 to ZONE_RESTORE_CHUNK) at restore.offset;
     * BASE_ENOTFOUND when restore.id is not the one staged, BASE_EPARSE when it runs past the
     * total. END replaces the whole catalog with the staged snapshot and clears the staging,
     * all in the entry's transaction: every table then counts as changed and every table index
     * becomes the entry's index. BASE_ENOTFOUND (nothing changes) when restore.id is not the
     * one staged; BASE_EPARSE when the staged bytes are incomplete or not a valid snapshot:
     * then the staging is cleared and nothing else changes. */
    ZONE_CMD_RESTORE_BEGIN = 6,
    ZONE_CMD_RESTORE_CHUNK = 7,
    ZONE_CMD_RESTORE_END = 8,
    /* Sessions and locks (Consul's state/session.go and kvs.go).
     * SESSION_CREATE stores cmd.session (CreateIndex = ModifyIndex = the entry's index):
     * BASE_EPARSE without id or node, BASE_ECONFLICT when the id is taken or a check is
     * critical, BASE_ENOTFOUND when the node or one of its checks is not registered.
     * SESSION_DESTROY invalidates session.id (success when it is not there).
     * SESSION_RENEW changes nothing: BASE_ENOTFOUND when the session is gone; otherwise the
     * id is listed by zone_store_renewed_each after the apply (the leader's TTL timers).
     * KV_LOCK (kv.key, value, flags, kv.session; has_cas): BASE_EINVAL when the session does
     * not exist, BASE_ECONFLICT when another session holds the key (or the cas fails). A free
     * key gets the session and LockIndex + 1 (1 when new); the holder re-acquiring updates the
     * value and flags and keeps LockIndex. KV_UNLOCK: BASE_ECONFLICT unless the key exists and
     * kv.session holds it; then the value and flags are set, Session cleared, LockIndex kept.
     * Invalidating a session (destroy, a tied check critical or deleted, its node deregistered)
     * deletes it and releases its keys (ModifyIndex moves) or, with ZONE_SESSION_DELETE, deletes
     * them; with a lock delay each such key is noted (zone_store_lock_delay). */
    ZONE_CMD_SESSION_CREATE = 9,
    ZONE_CMD_SESSION_DESTROY = 10,
    ZONE_CMD_SESSION_RENEW = 11,
    ZONE_CMD_KV_LOCK = 12,
    ZONE_CMD_KV_UNLOCK = 13,
    /* Consul's transaction (state/txn.go): cmd.txn's n_txn ops (1 to ZONE_TXN_MAX_OPS) applied
     * in order, all or nothing: the first op that fails rolls back the whole command and its
     * result is ZONE_TXN_FAILURE(op, why) (zone_txn_failed decodes it); 0 when all applied.
     * Read ops (get, get-tree, the checks) only check here: their results are the proposer's
     * to read. Node, service and check ops follow REGISTER and DEREGISTER's rules; cas and
     * delete-cas compare the op's Index with the record's ModifyIndex (cas 0: only when
     * absent; delete-cas of a missing record fails, as in Consul). */
    ZONE_CMD_TXN = 14,
};

/* ---- transactions ---------------------------------------------------------------------- */
#define ZONE_TXN_MAX_OPS 128 /* Consul's maxTxnOps */
/* The verbs of Consul's txn API by kind, in Consul's spelling (zone_txn_verb_name). */
enum zone_txn_verb {
    ZONE_TXN_KV_SET = 1,
    ZONE_TXN_KV_CAS,
    ZONE_TXN_KV_LOCK,
    ZONE_TXN_KV_UNLOCK,
    ZONE_TXN_KV_GET,
    ZONE_TXN_KV_GET_TREE,
    ZONE_TXN_KV_CHECK_INDEX,
    ZONE_TXN_KV_CHECK_SESSION,
    ZONE_TXN_KV_CHECK_NOT_EXISTS,
    ZONE_TXN_KV_DELETE,
    ZONE_TXN_KV_DELETE_TREE,
    ZONE_TXN_KV_DELETE_CAS,
    ZONE_TXN_NODE_SET,
    ZONE_TXN_NODE_CAS,
    ZONE_TXN_NODE_GET,
    ZONE_TXN_NODE_DELETE,
    ZONE_TXN_NODE_DELETE_CAS,
    ZONE_TXN_SERVICE_SET,
    ZONE_TXN_SERVICE_CAS,
    ZONE_TXN_SERVICE_GET,
    ZONE_TXN_SERVICE_DELETE,
    ZONE_TXN_SERVICE_DELETE_CAS,
    ZONE_TXN_CHECK_SET,
    ZONE_TXN_CHECK_CAS,
    ZONE_TXN_CHECK_GET,
    ZONE_TXN_CHECK_DELETE,
    ZONE_TXN_CHECK_DELETE_CAS,
    ZONE_TXN_SESSION_DELETE,
    ZONE_TXN_VERB_MAX = ZONE_TXN_SESSION_DELETE
};
enum zone_txn_kind {
    ZONE_TXN_KV = 1,
    ZONE_TXN_NODE,
    ZONE_TXN_SERVICE,
    ZONE_TXN_CHECK,
    ZONE_TXN_SESSION
};
/* "set", "cas", ... "delete-cas"; NULL for a value that is not a verb. */
const char *zone_txn_verb_name(enum zone_txn_verb v);
/* The kind of a verb (0 for a value that is not a verb). */
enum zone_txn_kind zone_txn_verb_kind(enum zone_txn_verb v);
/* True for the verbs that write (all but get, get-tree and the KV checks). */
bool zone_txn_verb_writes(enum zone_txn_verb v);
/* One op. KV: kv.key, kv.value/value_len, kv.flags, kv.session, and the op's Index in
 * kv.modify_index. Node: node, its Index in node.modify_index. Service: node.name and
 * service, its Index in service.modify_index. Check: check (check.node names the node), its
 * Index in check.modify_index. Session (delete only, as in Consul): kv.session is its ID; the
 * session is invalidated as by SESSION_DESTROY (deleting a missing one succeeds). */
struct zone_txn_op {
    enum zone_txn_verb verb;
    struct zone_kv kv;
    struct zone_node node;
    struct zone_service service;
    struct zone_check check;
};
/* Why an op failed (Consul's texts are the API's to write). */
enum zone_txn_why {
    ZONE_TXN_STALE = 1,       /* cas, delete-cas: "index is stale" */
    ZONE_TXN_HELD,            /* lock: held by another session */
    ZONE_TXN_NOT_HELD,        /* unlock: not held by this session */
    ZONE_TXN_MISSING,         /* get, check-index, check-session: the key does not exist */
    ZONE_TXN_EXISTS,          /* check-not-exists: the key exists */
    ZONE_TXN_INDEX,           /* check-index: another ModifyIndex */
    ZONE_TXN_OTHER_SESSION,   /* check-session: another session */
    ZONE_TXN_INVALID_SESSION, /* lock: no such session */
    ZONE_TXN_NO_SESSION,      /* lock, unlock: no session given */
    ZONE_TXN_BAD,             /* a malformed op: empty key, a key or value over the limits */
    ZONE_TXN_NO_NODE,         /* a service or check set: the node is not registered */
    ZONE_TXN_NO_SERVICE,      /* a check set: its service is not registered on the node */
};
#define ZONE__TXN_FAIL_BASE       (1 << 20)
#define ZONE_TXN_FAILURE(op, why) (-(ZONE__TXN_FAIL_BASE + (int)(op)*16 + (int)(why)))
/* Whether a TXN command's result is an op's failure: then *op and *why say which and why. */
bool zone_txn_failed(int result, size_t *op, enum zone_txn_why *why);

/* The largest backup a restore accepts, and the largest piece of it one command carries (a Raft
 * entry is capped at 4 MiB). */
#define ZONE_BACKUP_MAX    ((size_t)256 << 20)
#define ZONE_RESTORE_CHUNK ((size_t)1 << 20)

struct zone_cmd {
    enum zone_cmd_type type;
    /* REGISTER */
    struct zone_node node;
    const struct zone_service *service; /* NULL: node (and node checks) only */
    const struct zone_check *checks;
    size_t n_checks;
    bool skip_node_update; /* keep the stored node's fields when it exists (agent register) */
    /* DEREGISTER (node.name with service_id and/or check_id) and CHECK_UPDATE */
    const char *service_id;
    const char *check_id;
    enum zone_health status;
    const char *output;
    /* KV */
    struct zone_kv kv; /* key, value, flags for SET; key for DELETE */
    bool has_cas;
    uint64_t cas;
    bool recurse;
    /* TXN */
    const struct zone_txn_op *txn;
    size_t n_txn;
    /* SESSION_*: the session (only id for DESTROY and RENEW) */
    struct zone_session session;
    /* RESTORE_*: id for all three; total and crc for BEGIN; offset, data and len for CHUNK */
    struct {
        uint64_t id, total, offset;
        uint32_t crc;
        const uint8_t *data;
        size_t len;
    } restore;
};

/* Appends the command's encoding to out (only the fields of its type; NULL strings are ""). */
void zone_cmd_encode(const struct zone_cmd *cmd, struct base_buf *out);
/* Decodes into cmd with strings and arrays in the arena; the other type's strings are "", never
 * NULL. BASE_EPARSE when malformed (then cmd is zeroed). */
int zone_cmd_decode(const void *p, size_t n, struct base_arena *a,
                    struct zone_cmd *cmd) BASE_MUSTCHECK;

/* ---- the store ------------------------------------------------------------------------- */
struct zone_store;

/* Opens (creating) the LMDB environment in dir with room for map_size bytes (0: 16 GiB).
 * BASE_ESTORE with errmsg (may be NULL) on failure. A catalog whose file is shorter than its
 * content, or any of whose records fails its checksum or its key or index check, is not
 * opened: BASE_EDAMAGED, errmsg naming the file and the record. A catalog written before
 * record checksums gets them here, once. Main loop thread. */
int zone_store_open(const char *dir, size_t map_size, struct zone_store **out,
                    char *errmsg) BASE_MUSTCHECK;
void zone_store_close(struct zone_store *s);
/* Sets a damaged catalog aside: dir/data.mdb becomes dir/data.mdb.damaged (replacing an older
 * one), so that the next zone_store_open starts empty. 0 or -errno with errmsg. */
int zone_store_discard(const char *dir, char *errmsg) BASE_MUSTCHECK;

struct zone_meta {
    uint64_t applied; /* last Raft index applied */
    uint64_t index;   /* catalog index: last index that changed anything */
    uint64_t table_index[ZONE_TABLE_COUNT];
    /* Raft index of the last backup restore (RESTORE_END), 0 when none. Restored records keep
     * the indexes they had when saved, so a read that reports one record's ModifyIndex as its
     * index reports at least this one: else a blocking query on that record would not see
     * the restore. */
    uint64_t restored;
};

/* Applies the commands of one Raft entry at Raft index idx, all in one write transaction,
 * together with the new applied index. results[i] gets each command's outcome: 0, or
 * BASE_ECONFLICT (CAS failed), BASE_ENOTFOUND (check/service missing), BASE_EPARSE (malformed
 * or missing name), BASE_ETOOBIG (over a ZONE_ limit). A command that fails changes nothing
 * (except a failed RESTORE_END, which clears the staging); the others still apply. A ModifyIndex
 * (and a table's index) moves only when the record really changed, except that a KV set always
 * counts as a change (as in Consul). When idx <= the stored applied index the entry was applied
 * before a restart: nothing changes, results are 0 and *touched is 0 (idempotent replay). *touched
 * gets the ZONE_TABLE_BIT mask of tables changed. Returns BASE_ESTORE when the transaction cannot
 * commit, BASE_EDAMAGED (nothing applied) when a stored record it reads fails its checksum.
 * Main loop thread. */
int zone_store_apply(struct zone_store *s, uint64_t idx, const struct base_slice *cmds, size_t n,
                     int *results, uint32_t *touched) BASE_MUSTCHECK;

/* Every op of a transaction that would fail on the store as it is now, in order, as Consul's
 * txnDispatch lists them: each op runs after the ones before it, a failing one is skipped and
 * the others go on. Nothing is kept (the LMDB write transaction is aborted). A failed TXN's
 * result names its first failing op only; this lists the others for the answer. 0, or
 * BASE_ESTORE / BASE_EDAMAGED. Main loop thread. */
int zone_store_txn_errors(struct zone_store *s, const struct zone_txn_op *ops, size_t n,
                          void (*cb)(void *data, size_t op, enum zone_txn_why why),
                          void *data) BASE_MUSTCHECK;

/* The sessions that SESSION_RENEW commands of the last zone_store_apply found (in order; none
 * after a replayed entry). Main loop thread. */
void zone_store_renewed_each(struct zone_store *s, void (*cb)(void *data, const char *id),
                             void *data);
/* The milliseconds left of the lock delay of a KV key (0: none): set on this replica when the
 * key was released or deleted by the invalidation of a session with a lock delay, timed from
 * the apply (as Consul keeps it, in memory and per server: it is not replicated and not part
 * of snapshots). Main loop thread. */
uint64_t zone_store_lock_delay(struct zone_store *s, const char *key);

/* Snapshot (Raft's): the whole store (with its meta and any staged restore) serialized from one
 * read transaction, appended to out; BASE_EDAMAGED when a record fails its checksum. Any
 * thread. */
int zone_store_snapshot(struct zone_store *s, struct base_buf *out) BASE_MUSTCHECK;
/* Replaces the whole store with a Raft snapshot's content, unless the snapshot's applied index
 * is not newer than the store's (then *skipped is set and nothing changes). The input is
 * checked whole first: BASE_EPARSE when damaged, and nothing changes. Main loop thread. */
int zone_store_restore(struct zone_store *s, const void *p, size_t n, bool *skipped) BASE_MUSTCHECK;

struct zone_read;
/* A backup (GET /v1/snapshot, herald snapshot save) is a snapshot in the same format without
 * the staging of a restore in progress, read from the caller's read transaction (so its
 * content and any index the caller reads from r agree). Appended to out. */
int zone_read_backup(struct zone_read *r, struct base_buf *out) BASE_MUSTCHECK;

/* What a snapshot holds, from zone_snapshot_check. */
struct zone_snapshot_info {
    uint32_t version;
    uint64_t applied;                /* the Raft index it was taken at */
    uint64_t index;                  /* its catalog index (meta "index") */
    uint64_t rows[ZONE_TABLE_COUNT]; /* nodes, services, checks, KV entries, sessions */
    uint32_t crc;                    /* its CRC-32C (the last 4 bytes) */
};
/* Checks a snapshot or backup whole, as a restore would, without a store: 0 with info filled
 * (info may be NULL), or BASE_EPARSE with errmsg saying what is wrong in one line (empty,
 * not a snapshot, truncated, damaged, unsupported version, the first bad row). Any thread. */
int zone_snapshot_check(const void *p, size_t n, struct zone_snapshot_info *info,
                        char *errmsg) BASE_MUSTCHECK;

/* ---- reads ----------------------------------------------------------------------------- */
struct zone_read;
/* Any thread; a zone_read may move between threads but is used by one at a time. Every read
 * ends before zone_store_close. Read functions return BASE_ESTORE on a storage error and
 * BASE_EDAMAGED on a record that fails its checksum or does not decode (zone_read_damaged). */
int zone_read_begin(struct zone_store *s, struct zone_read **out) BASE_MUSTCHECK;
void zone_read_end(struct zone_read *r);

/* The first record this read met that failed its checksum ("kv/foo"), NULL when none: a read
 * function that returned BASE_EDAMAGED set it. Valid until the read ends. */
const char *zone_read_damaged(const struct zone_read *r);
/* How many reads of damaged records the store has seen since it opened. Any thread. */
uint64_t zone_store_damaged_count(struct zone_store *s);

int zone_meta_get(struct zone_read *r, struct zone_meta *m) BASE_MUSTCHECK;
/* Without a read transaction (a short one inside). */
int zone_store_meta(struct zone_store *s, struct zone_meta *m) BASE_MUSTCHECK;

/* Iteration callbacks return 0 to go on, anything else to stop (returned by the iterator). */
typedef int (*zone_node_cb)(void *data, const struct zone_node *n);
typedef int (*zone_service_cb)(void *data, const struct zone_service *s);
typedef int (*zone_check_cb)(void *data, const struct zone_check *c);
typedef int (*zone_kv_cb)(void *data, const struct zone_kv *kv);
typedef int (*zone_name_cb)(void *data, const char *name);
typedef int (*zone_session_cb)(void *data, const struct zone_session *s);

/* Node lookup is case-insensitive. BASE_ENOTFOUND when absent. */
int zone_node_get(struct zone_read *r, const char *name, struct base_arena *a,
                  struct zone_node *out) BASE_MUSTCHECK;
int zone_nodes_each(struct zone_read *r, struct base_arena *a, zone_node_cb cb, void *data);

int zone_service_get(struct zone_read *r, const char *node, const char *id, struct base_arena *a,
                     struct zone_service *out) BASE_MUSTCHECK;
/* Services of one node, by id. */
int zone_node_services_each(struct zone_read *r, const char *node, struct base_arena *a,
                            zone_service_cb cb, void *data);
/* Every instance of a service name (case-insensitive), ordered by node then id. */
int zone_service_instances_each(struct zone_read *r, const char *name, struct base_arena *a,
                                zone_service_cb cb, void *data);
/* Every distinct service name, sorted (lowercased names as stored in the index; use
 * zone_service_instances_each for the original case and tags). */
int zone_service_names_each(struct zone_read *r, struct base_arena *a, zone_name_cb cb, void *data);
/* Every service of every node. */
int zone_services_each(struct zone_read *r, struct base_arena *a, zone_service_cb cb, void *data);

int zone_check_get(struct zone_read *r, const char *node, const char *check_id,
                   struct base_arena *a, struct zone_check *out) BASE_MUSTCHECK;
int zone_node_checks_each(struct zone_read *r, const char *node, struct base_arena *a,
                          zone_check_cb cb, void *data);
int zone_checks_each(struct zone_read *r, struct base_arena *a, zone_check_cb cb, void *data);

/* Worst status of the checks that apply to one service instance: the node's own checks and the
 * checks whose service_id is the instance's. PASSING when there are none. */
int zone_instance_health(struct zone_read *r, const char *node, const char *service_id,
                         enum zone_health *out) BASE_MUSTCHECK;

int zone_kv_get(struct zone_read *r, const char *key, struct base_arena *a,
                struct zone_kv *out) BASE_MUSTCHECK;
/* Every key starting with prefix ("" for all), in byte order. */
int zone_kv_each(struct zone_read *r, const char *prefix, struct base_arena *a, zone_kv_cb cb,
                 void *data);

/* Sessions: by ID (BASE_ENOTFOUND when absent), and all of them in ID order. */
int zone_session_get(struct zone_read *r, const char *id, struct base_arena *a,
                     struct zone_session *out) BASE_MUSTCHECK;
int zone_sessions_each(struct zone_read *r, struct base_arena *a, zone_session_cb cb, void *data);

/* ---- DNS: the authoritative answers for the consul zone -------------------------------- */
/* zone/dns_*.c turn a DNS query into its response for the zone (and alt_domain): parsing with
 * bounds checks, name classification (service/node/addr/PTR/apex), the catalog lookups with
 * health filtering, and the wire answer with EDNS, truncation (Additional first, only glue of
 * kept targets, TC when an answer RR was dropped) and RFC 2308 negative answers. It is pure:
 * no sockets, no threads, no heap in the steady state (the caller gives the buffers and the
 * arena). The transport (resolver/) owns sockets, the answer cache, ACLs and recursion.
 * Everything here may run on any thread with its own zone_read. */

#define ZONE_DNS_MAX_NAME     255
#define ZONE_DNS_OUR_UDP_SIZE 1232 /* the EDNS size we advertise (DNS flag day 2020) */
#define ZONE_DNS_MAX_UDP      4096 /* client EDNS sizes are capped to this */
#define ZONE_DNS_MAX_SHUFFLE  256  /* answer RRs whose order can be permuted per query */

/* TTL for services: exact name, longest "prefix*", then "*" (Consul's dns_config.service_ttl). */
struct zone_dns_ttl {
    const char *pattern;
    uint32_t ttl;
};

struct zone_dns_config {
    const char *domain;     /* "consul." — lowercase, with the trailing dot */
    const char *alt_domain; /* NULL or "" when none */
    const char *datacenter; /* "dc1": the only datacenter label we answer for */
    uint32_t node_ttl;      /* default 0 */
    const struct zone_dns_ttl *service_ttl;
    size_t n_service_ttl;
    bool only_passing;         /* hide warning instances too (Consul's only_passing) */
    bool enable_truncate;      /* set TC when answers were dropped (Herald default: true) */
    unsigned udp_answer_limit; /* 0: as many as fit */
    unsigned a_record_limit;   /* 0: no limit, for UDP and TCP */
    uint32_t soa_refresh, soa_retry, soa_expire, soa_min_ttl; /* 3600 600 86400 0 */
};

/* A parsed query. Pointers borrow the packet, which must outlive the struct. */
struct zone_dns_query {
    const uint8_t *pkt;
    size_t len;
    uint16_t id;
    uint16_t flags; /* header flags word as received (bits 0-15 of bytes 2-3) */
    uint8_t opcode;
    size_t qname_len;                     /* wire length including the root label */
    uint8_t lname[ZONE_DNS_MAX_NAME + 1]; /* qname in wire form, ASCII lowercased */
    uint16_t qtype, qclass;
    size_t question_end; /* offset after the question (12 + qname_len + 4) */
    bool edns;           /* an OPT was present */
    uint8_t edns_version;
    bool edns_do;
    uint16_t edns_size; /* client's payload size as sent (0 without EDNS) */
};

/* zone_dns_parse results besides 0. */
enum zone_dns_rc {
    ZONE_DNS_DROP = 1,    /* no answer is possible or wise: header unreadable, QR=1 */
    ZONE_DNS_FORMERR = 2, /* answer with zone_dns_error(q, 1): QDCOUNT != 1, bad name, two OPTs */
    ZONE_DNS_NOTIMP = 3,  /* opcode other than QUERY: zone_dns_error(q, 4) */
    ZONE_DNS_BADVERS = 4, /* EDNS version > 0: zone_dns_error(q, 16) */
};

/* Parses and checks a query (RFC 1035 §4.1, RFC 6891). 0 or one of enum zone_dns_rc; q is
 * filled as far as parsing got, enough for zone_dns_error (question_end is 0 when the question
 * is not to be echoed; edns is false when the OPT was absent or damaged). edns_size is as sent:
 * the caller computes the UDP limit (under 512 counts as 512, over ZONE_DNS_MAX_UDP as that). */
int zone_dns_parse(const uint8_t *pkt, size_t len, struct zone_dns_query *q);

/* Whether the query name is at or below domain or alt_domain, or is a reverse name
 * (in-addr.arpa, ip6.arpa: PTR of catalog addresses, see zone_dns_answer). False for a query
 * whose question did not parse. */
bool zone_dns_in_zone(const struct zone_dns_config *cfg, const struct zone_dns_query *q);

/* Writes a response with no records for q: rcode 1 FORMERR, 2 SERVFAIL, 4 NOTIMP, 5 REFUSED, or
 * 16 BADVERS (extended, with OPT version 0). The question is echoed when it was parsed; OPT is
 * added when the query had a parsable one. ra sets RA. Returns the length (0 if cap is too
 * small). */
size_t zone_dns_error(const struct zone_dns_query *q, unsigned rcode, bool ra, uint8_t *out,
                      size_t cap);

/* Where the permutable answer RRs sit in a response, so a cached response can be shuffled per
 * query (ID, question case and order are patched into cached wire data). Every compression
 * pointer in a response points into the question, so permuting these RRs is safe. The RRs
 * are contiguous, in wire order (rr_off[i + 1] == rr_off[i] + rr_len[i]); n is 0 when fewer
 * than two; with more than ZONE_DNS_MAX_SHUFFLE (TCP only) the first ones are listed. */
struct zone_dns_layout {
    uint16_t rr_off[ZONE_DNS_MAX_SHUFFLE];
    uint16_t rr_len[ZONE_DNS_MAX_SHUFFLE];
    unsigned n; /* 0: nothing to shuffle */
};

/* The authoritative answer for an in-zone query. limit is the transport's size limit: for UDP
 * 512 without EDNS, else the client's size (at least 512, at most ZONE_DNS_MAX_UDP); for TCP
 * 65535. A limit over ZONE_DNS_MAX_UDP means TCP (udp_answer_limit does not apply); one under
 * 512 counts as 512 (RFC 6891 §6.2.5). Nothing is written past cap. Answers are shuffled (rng
 * is the caller's state, any seed). ra sets RA. *len gets the response length. ar is scratch
 * for the call (reset by the caller); the call allocates nothing else once the zone_read's
 * cursors and the arena's block exist. Other classes than IN/ANY and AXFR/IXFR get a REFUSED
 * response (returned 0). Returns 0, BASE_ENOTFOUND when the name is not the zone's to answer
 * (a reverse name for an address the catalog does not have, a type other than PTR/ANY there,
 * or a name outside the zone): the caller refuses or recurses, *len is 0; or BASE_ESTORE
 * (answer SERVFAIL). */
int zone_dns_answer(struct zone_read *rd, const struct zone_dns_config *cfg,
                    const struct zone_dns_query *q, size_t limit, bool ra, uint64_t *rng,
                    struct base_arena *ar, uint8_t *out, size_t cap, size_t *len,
                    struct zone_dns_layout *layout) BASE_MUSTCHECK;

#endif
