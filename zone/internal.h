/* zone internals: the store and read handles, LMDB key building, the record codec shared by
 * the stored records and the commands, and a prefix scan. Never included from outside zone/. */
#ifndef HERALD_ZONE_INTERNAL_H
#define HERALD_ZONE_INTERNAL_H

#include "zone/zone.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

/* Named databases, in the order snapshots carry them (addrs came with snapshot version 2,
 * staging with version 3 and sessions with version 4, each added last: a version 1 snapshot is
 * the first six, a version 2 the first seven, a version 3 the first eight). */
enum zone__db {
    ZONE__DB_NODES = 0,
    ZONE__DB_SERVICES,
    ZONE__DB_SVCIDX,
    ZONE__DB_CHECKS,
    ZONE__DB_KV,
    ZONE__DB_META,
    ZONE__DB_ADDRS,
    ZONE__DB_STAGING,
    ZONE__DB_SESSIONS,
    ZONE__DB_COUNT
};
extern const char *const zone__db_names[ZONE__DB_COUNT];

/* meta keys of the per-table indexes, by enum zone_table */
extern const char *const zone__table_keys[ZONE_TABLE_COUNT];
#define ZONE__META_APPLIED  "applied"
#define ZONE__META_INDEX    "index"
#define ZONE__META_RESTORED "restored"
/* The store's format: absent in a store written before record checksums (its records are
 * version 1, upgraded once at open), ZONE__FORMAT once every record carries one. */
#define ZONE__META_FORMAT "format"
#define ZONE__FORMAT      2
/* Format 2: the CRC-32C of the other meta rows (each key's length byte, key and value, in key
 * order), rewritten by every transaction that writes meta (zone__meta_seal) and checked by
 * every reader of the indexes (zone__meta_all) and by apply. */
#define ZONE__META_CRC "crc"

/* Room for a damaged record's name ("services/node/id"), cut with "..." beyond. */
#define ZONE__DAMAGED_NAME 160

struct zone_read {
    struct zone_store *s;
    char damaged[ZONE__DAMAGED_NAME]; /* the first record of this read that failed its check */
    MDB_txn *txn;
    struct zone_read *next; /* in the store's pool of reset transactions */
    /* Cursors kept across transactions (mdb_cursor_renew), so that the DNS path opens none:
     * mdb_cursor_open allocates. cur_gen[d] == gen when cur[d] is bound to the current txn. */
    MDB_cursor *cur[ZONE__DB_COUNT];
    uint32_t cur_gen[ZONE__DB_COUNT];
    uint32_t gen;
};

/* The read's cursor on database d, bound to its current transaction; NULL on an LMDB error.
 * Valid until the read ends; one user at a time (a scan must finish before the next starts). */
MDB_cursor *zone__read_cursor(struct zone_read *r, enum zone__db d);

struct zone_store {
    MDB_env *env;
    MDB_dbi dbi[ZONE__DB_COUNT];
    size_t max_key; /* mdb_env_get_maxkeysize */
    /* Reset read transactions kept for reuse (mdb_txn_renew is cheaper than a new txn). */
    pthread_mutex_t pool_mu;
    struct zone_read *pool;
    size_t n_pool;
    /* Apply scratch, reused so that a steady stream of entries allocates nothing. */
    struct base_arena arena;
    struct base_buf rec;
    /* Sessions renewed by the last apply (zone_store_renewed_each): NUL-separated ids. */
    struct base_buf renewed;
    /* Lock delays (zone_store_lock_delay): keys and when their delay ends (base_now_ms). */
    struct zone__delay {
        char *key;
        uint64_t until_ms;
    } * delays;
    size_t n_delays, cap_delays;
    /* Records that failed their check on a read (verify.c), and when one was last logged. */
    _Atomic uint64_t n_damaged;
    _Atomic uint64_t damaged_log_ms;
};

/* ---- damage (verify.c) ----------------------------------------------------------------- */
/* Names the record with key k of database d into out ("kv/foo", "services/node/id"). */
void zone__rec_name(enum zone__db d, const void *k, size_t kn, char *out, size_t cap);
/* A record read through r failed its checksum or does not decode: names it in r, counts and
 * logs it (rate-limited). Returns BASE_EDAMAGED. Any thread. */
int zone__damaged(struct zone_read *r, enum zone__db d, const MDB_val *k);
/* Open steps, each BASE_EDAMAGED with errmsg naming the file (and the record) on damage: the
 * data file holds LMDB's last used page (before any database is opened); the one-time upgrade
 * of version 1 records in t; the walk over every record and the service index. */
int zone__store_verify_file(MDB_env *env, const char *dir, char *errmsg) BASE_MUSTCHECK;
/* LMDB's page structure of dir/data.mdb, read with pread before LMDB reads a page (pages.c). */
int zone__store_check_pages(const char *dir, char *errmsg) BASE_MUSTCHECK;
int zone__store_migrate(struct zone_store *s, MDB_txn *t, const char *dir,
                        char *errmsg) BASE_MUSTCHECK;
int zone__store_check(struct zone_store *s, const char *dir, char *errmsg) BASE_MUSTCHECK;

/* ---- keys and prefix scans (key.c, whose top comment describes the layout) ------------- */
/* Larger than any LMDB key (511 bytes by default); a key that outgrows it is flagged. */
#define ZONE__KEY_CAP 1024
struct zone__key {
    size_t n;
    bool over;
    uint8_t b[ZONE__KEY_CAP];
};
/* nodes: lower(node). */
void zone__key_node(struct zone__key *k, const char *node);
/* services and checks: lower(node) \0 id; id NULL: the prefix of all the node's rows. */
void zone__key_row(struct zone__key *k, const char *node, const char *id);
/* svcidx: lower(name) \0 lower(node) \0 id; node NULL: the prefix of the name's instances. */
void zone__key_svcidx(struct zone__key *k, const char *name, const char *node, const char *id);
/* The services key of the svcidx row ix found under prefix (zone__key_svcidx(name, NULL)). */
MDB_val zone__svcidx_row(const struct zone__key *prefix, const MDB_val *ix);
/* sessions: the id as given. */
void zone__key_session(struct zone__key *k, const char *id);
/* kv: the key as given; also the prefix of a recursive read or delete. */
void zone__key_kv(struct zone__key *k, const char *key);
/* addrs: family (4 or 6), the address's bytes, lower(node) \0 sid (NULL: ""); node NULL: the
 * prefix of the address's rows. */
void zone__key_addr(struct zone__key *k, int family, const uint8_t ip[16], const char *node,
                    const char *sid);
/* meta: the row's name (ZONE__META_*, zone__table_keys). */
void zone__key_meta(struct zone__key *k, const char *name);
/* staging: the header row, one chunk's row, the prefix of every chunk row. */
void zone__key_staging_header(struct zone__key *k);
void zone__key_staging_chunk(struct zone__key *k, uint64_t offset);
void zone__key_staging_chunks(struct zone__key *k);
/* What a staging key is: ZONE__STAGING_HEADER, ZONE__STAGING_CHUNK (*offset gets the chunk's
 * offset when offset is not NULL), or 0 (malformed). */
enum { ZONE__STAGING_HEADER = 1, ZONE__STAGING_CHUNK = 2 };
int zone__staging_key(const uint8_t *k, size_t kn, uint64_t *offset);
/* A copy of a key read from the store (to write under it after its cursor moved on). */
void zone__key_copy(struct zone__key *k, const MDB_val *v);
/* Whether some row can have key k: not over the buffer, not empty, at most max_key bytes. */
bool zone__key_fits(const struct zone__key *k, size_t max_key);
/* Whether k is exactly the n bytes at p. */
bool zone__key_eq(const struct zone__key *k, const void *p, size_t n);
/* The key as an MDB_val (pointing into k). */
MDB_val zone__key_val(const struct zone__key *k);

/* Calls fn for every row of dbi whose key starts with prefix (NULL or empty: every row), in key
 * order; a prefix over LMDB's key size selects nothing. Returns fn's first non-zero value,
 * BASE_ESTORE on an LMDB error, else 0. */
typedef int (*zone__scan_fn)(void *ctx, const MDB_val *k, const MDB_val *v);
int zone__scan(MDB_txn *t, MDB_dbi dbi, const struct zone__key *prefix, zone__scan_fn fn,
               void *ctx);
/* The same scan on a cursor the caller keeps (the DNS path's cached cursors): the first or
 * next row under prefix into *k, *v. 0, MDB_NOTFOUND past the last one, or an LMDB error. */
int zone__cursor_first(MDB_cursor *c, const struct zone__key *prefix, MDB_val *k, MDB_val *v);
int zone__cursor_next(MDB_cursor *c, const struct zone__key *prefix, MDB_val *k, MDB_val *v);
/* Calls fn once per service name in svcidx (the name as stored, lowercased, not terminated),
 * in order, skipping the name's other rows. fn's first non-zero value, BASE_ESTORE, or 0. */
typedef int (*zone__name_fn)(void *ctx, const char *name, size_t len);
int zone__svcidx_names(MDB_txn *t, MDB_dbi dbi, zone__name_fn fn, void *ctx);

/* ---- record codec (record.c) ----------------------------------------------------------- */
/* Strings are base_buf_put_bytes of the string and its NUL, so a reader can hand out pointers
 * into LMDB pages. A decoder with copy=false points into the input; with copy=true every string
 * and byte field is copied into the arena. Arrays always go to the arena. */
#define ZONE__RECORD_VERSION 2
#define ZONE__RECORD_V1      1 /* before checksums: upgraded at open and on snapshot load */
#define ZONE__REC_CRC_LEN    4

/* Whether p is a current record (version 2) whose checksum matches. */
bool zone__rec_ok(const void *p, size_t len);
/* Recomputes the checksum trailer of a record whose bytes changed in place (len >= 5). */
void zone__rec_reseal(uint8_t *p, size_t len);
/* Into out (emptied first): a version 1 record made version 2 (returns 1), or a version 2
 * record whose checksum matches, copied (returns 0); BASE_EPARSE for anything else. */
int zone__rec_upgrade(const void *p, size_t len, struct base_buf *out) BASE_MUSTCHECK;

void zone__put_cstr(struct base_buf *b, const char *s);
const char *zone__rd_cstr(struct base_rd *r, bool copy, struct base_arena *a);

/* Smallest encoded sizes of the bodies, to bound array counts by the bytes left. */
#define ZONE__STR_MIN          5 /* length + NUL */
#define ZONE__PAIR_MIN         (2 * ZONE__STR_MIN)
#define ZONE__CHECK_BODY_MIN   (11 * ZONE__STR_MIN + 1 + 4 + 4 * 8)
#define ZONE__SERVICE_BODY_MIN (5 * ZONE__STR_MIN + 4 + 4 + 4 + 4 + 4 + 4 + 1)

/* Bodies: every field but CreateIndex/ModifyIndex. Getters set r->err on malformed input. */
void zone__node_body_put(struct base_buf *b, const struct zone_node *n);
void zone__node_body_get(struct base_rd *r, bool copy, struct base_arena *a, struct zone_node *n);
void zone__service_body_put(struct base_buf *b, const struct zone_service *s);
void zone__service_body_get(struct base_rd *r, bool copy, struct base_arena *a,
                            struct zone_service *s);
void zone__check_body_put(struct base_buf *b, const struct zone_check *c);
void zone__check_body_get(struct base_rd *r, bool copy, struct base_arena *a, struct zone_check *c);

/* Records: version byte, body, CreateIndex, ModifyIndex, CRC-32C. Decoders return BASE_EPARSE
 * when the bytes are not exactly one record or the checksum does not match. */
void zone__node_encode(const struct zone_node *n, struct base_buf *b);
int zone__node_decode(const void *p, size_t len, bool copy, struct base_arena *a,
                      struct zone_node *out) BASE_MUSTCHECK;
void zone__service_encode(const struct zone_service *s, struct base_buf *b);
int zone__service_decode(const void *p, size_t len, bool copy, struct base_arena *a,
                         struct zone_service *out) BASE_MUSTCHECK;
void zone__check_encode(const struct zone_check *c, struct base_buf *b);
int zone__check_decode(const void *p, size_t len, bool copy, struct base_arena *a,
                       struct zone_check *out) BASE_MUSTCHECK;
void zone__session_body_put(struct base_buf *b, const struct zone_session *ss);
void zone__session_body_get(struct base_rd *r, bool copy, struct base_arena *a,
                            struct zone_session *ss);
void zone__session_encode(const struct zone_session *ss, struct base_buf *b);
int zone__session_decode(const void *p, size_t len, bool copy, struct base_arena *a,
                         struct zone_session *out) BASE_MUSTCHECK;
void zone__kv_encode(const struct zone_kv *kv, struct base_buf *b);
int zone__kv_decode(const void *p, size_t len, bool copy, struct base_arena *a,
                    struct zone_kv *out) BASE_MUSTCHECK;
/* One decoded record of a record database (nodes, services, checks, kv, sessions). */
union zone__rec {
    struct zone_node n;
    struct zone_service s;
    struct zone_check c;
    struct zone_kv kv;
    struct zone_session ss;
};
/* Whether database d holds records (the five above) rather than index, meta or staging rows. */
bool zone__is_record_db(int d);
/* Decodes (p, len), a record of database d, into the member of *u for d (copy as above).
 * 0, or BASE_EPARSE (also when d holds no records). */
int zone__rec_decode(enum zone__db d, const void *p, size_t len, bool copy, struct base_arena *a,
                     union zone__rec *u) BASE_MUSTCHECK;
/* The key a record of database d is stored under (key.c). */
void zone__key_of_rec(struct zone__key *k, enum zone__db d, const union zone__rec *u);
/* The address of a node record without decoding the rest (the DNS path). *address points
 * into p, NUL-terminated. */
int zone__node_peek_address(const void *p, size_t len, const char **address) BASE_MUSTCHECK;
/* Status and service id of a check record without allocating (the DNS health path).
 * *sid points into p, NUL-terminated. */
int zone__check_peek(const void *p, size_t len, enum zone_health *status,
                     const char **sid) BASE_MUSTCHECK;

/* ---- addrs: IP -> node / service, for PTR (addrs.c) ----------------------------------- */
/* Rows: zone__key_addr (key.c). Only addresses that are IP literals have rows. */
/* Parses an IP literal: 4 or 6 with the bytes in ip[16], 0 when s is not one (a hostname). */
int zone__addr_parse(const char *s, uint8_t ip[16]);
/* Row of (addr, node, sid): put (name: the service name, "" or NULL for a node) or delete. Both
 * do nothing when addr is not an IP literal or the key would be over LMDB's limit. 0 or
 * BASE_ESTORE. */
int zone__addrs_put(MDB_txn *t, MDB_dbi dbi, size_t max_key, const char *addr, const char *node,
                    const char *sid, const char *name) BASE_MUSTCHECK;
int zone__addrs_del(MDB_txn *t, MDB_dbi dbi, size_t max_key, const char *addr, const char *node,
                    const char *sid) BASE_MUSTCHECK;
/* Whether the row of (addr, node, sid) is there with the value name: 1 when it is, 0 when no
 * row is expected (not an IP literal, or a key over the limit), BASE_ENOTFOUND when it is
 * missing or differs (the store's check at open). */
int zone__addrs_has(MDB_txn *t, MDB_dbi dbi, size_t max_key, const char *addr, const char *node,
                    const char *sid, const char *name) BASE_MUSTCHECK;
/* Empties addrs and fills it from the nodes and services databases (store open after an
 * upgrade, restore of a version 1 snapshot). */
int zone__addrs_rebuild(struct zone_store *s, MDB_txn *t) BASE_MUSTCHECK;

/* ---- snapshots (snapshot.c) and staged restores (restore.c) --------------------------- */
/* CRC-32C (Castagnoli), the snapshot's checksum. */
uint32_t zone__crc32c(const uint8_t *p, size_t n);
/* The CRC-32C of what prev covered followed by p (zone__crc32c(p, n) == ..._more(0, p, n)). */
uint32_t zone__crc32c_more(uint32_t prev, const uint8_t *p, size_t n);
/* zone_snapshot_check with keys bounded by max_key (the store's LMDB limit). */
int zone__snapshot_check(const uint8_t *p, size_t n, size_t max_key,
                         struct zone_snapshot_info *info, char *errmsg) BASE_MUSTCHECK;
/* Empties every database in t and loads a snapshot that passed zone__snapshot_check; its
 * staging rows only when with_staging. 0 or BASE_ESTORE. */
int zone__snapshot_load(struct zone_store *s, MDB_txn *t, const uint8_t *p, size_t n,
                        bool with_staging) BASE_MUSTCHECK;
/* Applies a RESTORE_* command in t (the command's nested transaction) of the entry at idx. Returns
 * 0, the command's own failure (its writes are rolled back), or BASE_ESTORE. *result gets a failure
 * to report although the writes commit (an END that fails and clears the staging); *mask the tables
 * changed. */
int zone__restore_apply(struct zone_store *s, MDB_txn *t, uint64_t idx, const struct zone_cmd *c,
                        uint32_t *mask, int *result) BASE_MUSTCHECK;
/* Whether a staging row (key k, value v) is well-formed (snapshot checks). */
bool zone__staging_row_ok(const uint8_t *k, size_t kn, size_t vn);

/* u64 values of the meta database (little-endian, 8 bytes); absent reads as 0. */
int zone__meta_read(MDB_txn *t, MDB_dbi dbi, const char *key, uint64_t *v) BASE_MUSTCHECK;
int zone__meta_write(MDB_txn *t, MDB_dbi dbi, const char *key, uint64_t v) BASE_MUSTCHECK;
/* All of struct zone_meta from one transaction; BASE_EDAMAGED when the meta rows fail their
 * checksum. */
int zone__meta_all(struct zone_store *s, MDB_txn *t, struct zone_meta *m) BASE_MUSTCHECK;
/* Writes the meta checksum row after the other meta rows changed in t. 0 or BASE_ESTORE. */
int zone__meta_seal(MDB_txn *t, MDB_dbi dbi) BASE_MUSTCHECK;
/* 0 when the meta rows match their checksum row, BASE_EDAMAGED when not (or it is missing),
 * BASE_ESTORE. */
int zone__meta_verify(MDB_txn *t, MDB_dbi dbi) BASE_MUSTCHECK;

#endif
