/* gossip/wire.h (internal to gossip/): memberlist's and serf's messages as C structs, their
 * encoders, and the decoders of packets and streams from the network. The wire format itself
 * is described at the top of wire.c.
 *
 * Decoders: every byte from outside is scanned by gossip__mp_scan (lengths against the bytes
 * left, depth, object count) before msgpack-c unpacks it, then converted field by field with
 * type and range checks into these structs. Strings and byte fields are copied into the
 * caller's arena (strings NUL-terminated; a name holding a NUL is refused), so a decoded
 * message lives until the arena is reset and borrows nothing from the input. A decoder never
 * reads past its input, never allocates more than a bound derived from the input's size, and
 * returns BASE_EPARSE (malformed), BASE_ETOOBIG (over a limit) or -EAGAIN (a stream needs more
 * bytes); on error the arena may hold partial results (reset it).
 *
 * Encoders append to a base_buf exactly the bytes memberlist 0.2.2 / serf 0.9.x (go-msgpack
 * 0.5.5) produce for the same message: map keys in Go's sorted field order, strings and
 * []byte as msgpack "raw" (fixraw/raw16/raw32, never str8 or bin), omitempty fields left out.
 *
 * Pure code: no I/O, no logging, any thread. */
#ifndef HERALD_GOSSIP_WIRE_H
#define HERALD_GOSSIP_WIRE_H

#include "base/base.h"
#include "gossip/gossip.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* memberlist's messageType (net.go), the first byte of every message. */
enum gossip_msg_type {
    GOSSIP_PING = 0,
    GOSSIP_INDIRECT_PING = 1,
    GOSSIP_ACK = 2,
    GOSSIP_SUSPECT = 3,
    GOSSIP_ALIVE = 4,
    GOSSIP_DEAD = 5,
    GOSSIP_PUSH_PULL = 6,
    GOSSIP_COMPOUND = 7,
    GOSSIP_USER = 8,
    GOSSIP_COMPRESS = 9,
    GOSSIP_ENCRYPT = 10,
    GOSSIP_NACK = 11,
    GOSSIP_HAS_CRC = 12,
    GOSSIP_ERR = 13,
};

/* memberlist's NodeStateType. */
enum gossip_node_state {
    GOSSIP_STATE_ALIVE = 0,
    GOSSIP_STATE_SUSPECT = 1,
    GOSSIP_STATE_DEAD = 2,
    GOSSIP_STATE_LEFT = 3,
};

/* Limits of the decoders. */
#define GOSSIP_WIRE_DEPTH_MAX    4           /* nesting of compound/compress wrappers */
#define GOSSIP_WIRE_MSGS_MAX     512         /* messages in one packet, all wrappers flattened */
#define GOSSIP_WIRE_MP_DEPTH_MAX 16          /* msgpack nesting */
#define GOSSIP_WIRE_MP_OBJS_MAX  (1 << 18)   /* msgpack objects in one value */
#define GOSSIP_WIRE_UDP_MAX      65536       /* a packet, and a packet's decompressed payload */
#define GOSSIP_WIRE_STREAM_MAX   (20u << 20) /* memberlist's maxPushStateBytes */
#define GOSSIP_WIRE_NODES_MAX    65536       /* nodes in one push-pull */
#define GOSSIP_VSN_LEN           6           /* pmin pmax pcur dmin dmax dcur */

/* Bytes in the decoder's arena (or borrowed by an encoder for the call). */
struct gossip_bytes {
    const uint8_t *p;
    size_t n;
};

struct gossip_ping {
    uint32_t seq;
    const char *node; /* the target's name, "" when unknown */
    /* omitempty: the sender's address for a direct reply (an indirect probe's relay) */
    struct gossip_bytes source_addr;
    uint16_t source_port;
    const char *source_node;
};

struct gossip_indirect_ping {
    uint32_t seq;
    struct gossip_bytes target; /* IPv4 (4) or IPv6 (16) address bytes */
    uint16_t port;
    const char *node;
    bool nack;
    struct gossip_bytes source_addr; /* omitempty, as in ping */
    uint16_t source_port;
    const char *source_node;
};

struct gossip_ack {
    uint32_t seq;
    struct gossip_bytes payload; /* serf: 1 version byte + a msgpack network coordinate */
};

struct gossip_nack {
    uint32_t seq;
};

struct gossip_err {
    const char *error;
};

/* suspect and dead have the same fields; a dead whose from equals node is a graceful leave. */
struct gossip_suspect {
    uint32_t incarnation;
    const char *node;
    const char *from;
};

struct gossip_alive {
    uint32_t incarnation;
    const char *node;
    struct gossip_bytes addr;
    uint16_t port;
    struct gossip_bytes meta; /* serf: its tags (gossip__tags_decode) */
    bool has_vsn;             /* false: no Vsn on the wire (memberlist then ignores a new node) */
    uint8_t vsn[GOSSIP_VSN_LEN];
};

struct gossip_push_node {
    const char *name;
    struct gossip_bytes addr;
    uint16_t port;
    struct gossip_bytes meta;
    uint32_t incarnation;
    uint8_t state; /* enum gossip_node_state */
    bool has_vsn;
    uint8_t vsn[GOSSIP_VSN_LEN];
};

struct gossip_push_pull {
    bool join;
    size_t n_nodes;
    struct gossip_push_node *nodes;
    struct gossip_bytes user_state; /* serf: a serf push-pull message (gossip__serf_decode) */
};

/* One message of a packet or a stream. GOSSIP_USER's body is the delegate's (serf's) bytes. */
struct gossip_msg {
    uint8_t type; /* enum gossip_msg_type */
    union {
        struct gossip_ping ping;
        struct gossip_indirect_ping indirect;
        struct gossip_ack ack;
        struct gossip_nack nack;
        struct gossip_err err;
        struct gossip_suspect suspect; /* GOSSIP_SUSPECT and GOSSIP_DEAD */
        struct gossip_alive alive;
        struct gossip_push_pull push_pull;
        struct gossip_bytes user;
    } u;
};

/* The keyring: the first key encrypts, every key is tried to decrypt (keyring.c). */
#define GOSSIP_KEYS_MAX GOSSIP_KEYRING_MAX
struct gossip_key {
    size_t len; /* 16, 24 or 32: AES-128, -192, -256 */
    uint8_t key[32];
};
struct gossip_keyring {
    size_t n;
    struct gossip_key keys[GOSSIP_KEYS_MAX];
};

/* A decoded UDP packet: every message, with the compound and compress wrappers flattened in
 * order. */
struct gossip_packet {
    size_t n;
    struct gossip_msg *msgs; /* arena */
    bool encrypted, crc, compressed;
    unsigned truncated; /* compound parts lost to a short packet (memberlist tolerates them) */
    unsigned unknown;   /* messages of an unknown type, skipped as memberlist does */
    unsigned bad;       /* compound parts that did not decode, skipped as memberlist does */
};

/* Decodes one UDP packet. With keys (n > 0) the packet must be encrypted and decrypt with one
 * of them; without, it must not be. */
int gossip__packet_decode(const uint8_t *p, size_t n, const struct gossip_keyring *keys,
                          struct base_arena *a, struct gossip_packet *out) BASE_MUSTCHECK;

/* Decodes one message at the start of a TCP stream's bytes p/n (a push-pull, a user message, a
 * ping, an ack, an error, possibly encrypted and/or compressed). 0: *out filled and *used bytes
 * consumed; -EAGAIN: p/n is a prefix of a message, read more (only up to max bytes); other
 * negative codes: refuse the stream. out->type is the inner message's type; *encrypted says
 * whether it came encrypted (with keys, memberlist refuses a plain stream; the caller does). */
int gossip__stream_decode(const uint8_t *p, size_t n, size_t max, const struct gossip_keyring *keys,
                          struct base_arena *a, struct gossip_msg *out, bool *encrypted,
                          size_t *used) BASE_MUSTCHECK;

/* Appends one message (type byte and body). Compound, compress, encrypt and CRC wrappers are
 * the functions below; GOSSIP_PUSH_PULL appends the stream form (header, nodes, user state). */
void gossip__msg_encode(struct base_buf *b, const struct gossip_msg *m);

/* Appends a reliable user message in its stream form: [8]{UserMsgLen}[msg]. */
void gossip__user_stream_encode(struct base_buf *b, const uint8_t *msg, size_t n);

/* Appends a compound message of n (1..255) messages, each under 65536 bytes. */
void gossip__compound_encode(struct base_buf *b, const struct gossip_bytes *msgs, size_t n);

/* Appends the CRC wrapper (type 12, CRC-32/IEEE of msg, big-endian) and msg. */
void gossip__crc_encode(struct base_buf *b, const uint8_t *msg, size_t n);

/* Appends memberlist's AES-GCM encryption of msg with key (16, 24 or 32 bytes): version byte
 * vsn (1: no padding; 0: PKCS#7 padding, protocol 1), the 12-byte nonce, ciphertext and tag.
 * ad/ad_n is the additional data (a stream's 5-byte encrypt header; nothing for a packet). The
 * nonce must be random and never reused with the key. */
void gossip__encrypt(struct base_buf *b, uint8_t vsn, const uint8_t *key, size_t key_len,
                     const uint8_t nonce[12], const uint8_t *msg, size_t n, const uint8_t *ad,
                     size_t ad_n);

/* Appends a stream's encrypted frame: type 10, the u32 big-endian length, and the encryption
 * (version 1) of msg with that 5-byte header as additional data. */
void gossip__encrypt_stream(struct base_buf *b, const uint8_t *key, size_t key_len,
                            const uint8_t nonce[12], const uint8_t *msg, size_t n);

/* Decrypts msg (version, nonce, ciphertext, tag) with each key in turn into out (arena).
 * BASE_EPARSE when too short or of an unknown version; BASE_EACL when no key opens it. */
int gossip__decrypt(const struct gossip_keyring *keys, const uint8_t *msg, size_t n,
                    const uint8_t *ad, size_t ad_n, struct base_arena *a,
                    struct gossip_bytes *out) BASE_MUSTCHECK;

/* Go's compress/lzw (LSB order, 8-bit literals), as memberlist's compress message carries it.
 * Decompresses at most max bytes (BASE_ETOOBIG past it) into the arena. */
int gossip__lzw_decode(const uint8_t *p, size_t n, size_t max, struct base_arena *a,
                       struct gossip_bytes *out) BASE_MUSTCHECK;
/* Compresses p/n (Go's writer's output, which Go's reader and gossip__lzw_decode read). */
void gossip__lzw_encode(struct base_buf *b, const uint8_t *p, size_t n);

/* Appends a compress message (type 9, {Algo: 0, Buf: lzw(msg)}). */
void gossip__compress_encode(struct base_buf *b, const uint8_t *msg, size_t n);

/* Length of the one msgpack value at p/n: 0 and *len, -EAGAIN if p/n is a prefix of one,
 * BASE_EPARSE if malformed (a reserved byte, too deep), BASE_ETOOBIG past the object bound. */
int gossip__mp_scan(const uint8_t *p, size_t n, size_t *len) BASE_MUSTCHECK;

/* ---- serf's messages, carried in memberlist user messages --------------------------------- */
/* serf's messageType (serf/messages.go), the first byte of a user message's body. */
enum gossip_serf_type {
    GOSSIP_SERF_LEAVE = 0,
    GOSSIP_SERF_JOIN = 1,
    GOSSIP_SERF_PUSH_PULL = 2,
    GOSSIP_SERF_USER_EVENT = 3,
    GOSSIP_SERF_QUERY = 4,
    GOSSIP_SERF_QUERY_RESPONSE = 5,
    GOSSIP_SERF_CONFLICT_RESPONSE = 6,
    GOSSIP_SERF_KEY_REQUEST = 7,
    GOSSIP_SERF_KEY_RESPONSE = 8,
    GOSSIP_SERF_RELAY = 9,
};

#define GOSSIP_SERF_QUERY_ACK          1u         /* queryFlagAck */
#define GOSSIP_SERF_QUERY_NO_BROADCAST 2u         /* queryFlagNoBroadcast */
#define GOSSIP_SERF_EVENT_SIZE_MAX     (9 * 1024) /* UserEventSizeLimit: name + payload */

struct gossip_serf_join { /* join intent; leave adds prune */
    uint64_t ltime;
    const char *node;
    bool prune;
};

struct gossip_serf_event { /* one event of a user-event message or of push-pull's buffer */
    const char *name;
    struct gossip_bytes payload;
};

struct gossip_serf_user_event {
    uint64_t ltime;
    const char *name;
    struct gossip_bytes payload;
    bool cc; /* may coalesce */
};

struct gossip_serf_events { /* the events of one Lamport time */
    uint64_t ltime;
    size_t n;
    struct gossip_serf_event *events;
};

struct gossip_serf_status { /* a member's status Lamport time */
    const char *node;
    uint64_t ltime;
};

struct gossip_serf_push_pull {
    uint64_t ltime;
    size_t n_status;
    struct gossip_serf_status *status;
    size_t n_left;
    const char **left;
    uint64_t event_ltime;
    size_t n_events; /* serf sends its whole event ring: nil slots are left out here */
    struct gossip_serf_events *events;
    uint64_t query_ltime;
};

struct gossip_serf_query {
    uint64_t ltime;
    uint32_t id;
    struct gossip_bytes addr;
    uint16_t port;
    const char *source_node;
    size_t n_filters;
    struct gossip_bytes *filters; /* each: a filter type byte and msgpack (left undecoded) */
    uint32_t flags;
    uint8_t relay_factor;
    int64_t timeout_ns;
    const char *name;
    struct gossip_bytes payload;
};

struct gossip_serf_query_response {
    uint64_t ltime;
    uint32_t id;
    const char *from;
    uint32_t flags;
    struct gossip_bytes payload;
};

struct gossip_serf_key_request {
    struct gossip_bytes key;
};

struct gossip_serf_key_response {
    bool result;
    const char *message;
    size_t n_keys;
    const char **keys; /* base64 */
    const char *primary_key;
};

struct gossip_serf_relay {
    struct gossip_bytes dest_ip;
    int64_t dest_port;
    const char *dest_zone;
    const char *dest_name;
    struct gossip_bytes msg; /* the relayed serf message, its type byte first */
};

struct gossip_serf_msg {
    uint8_t type; /* enum gossip_serf_type */
    union {
        struct gossip_serf_join join; /* GOSSIP_SERF_JOIN and GOSSIP_SERF_LEAVE */
        struct gossip_serf_push_pull push_pull;
        struct gossip_serf_user_event event;
        struct gossip_serf_query query;
        struct gossip_serf_query_response response;
        struct gossip_serf_key_request key_request;
        struct gossip_serf_key_response key_response;
        struct gossip_serf_relay relay;
        struct gossip_bytes conflict; /* a serf Member, left undecoded */
    } u;
};

/* A query's filter (serf's filterNode / filterTag): its type byte then msgpack. */
#define GOSSIP_SERF_FILTER_NODE 0
#define GOSSIP_SERF_FILTER_TAG  1
struct gossip_serf_filter {
    uint8_t type;
    size_t n_nodes; /* node: the names it matches */
    const char **nodes;
    const char *tag, *expr; /* tag: the tag's value must match the regular expression */
};
/* Decodes one filter of a query (struct gossip_serf_query's filters[i]); BASE_EPARSE for an
 * unknown type, as serf refuses it. */
int gossip__serf_filter_decode(const uint8_t *p, size_t n, struct base_arena *a,
                               struct gossip_serf_filter *out) BASE_MUSTCHECK;

/* Decodes a serf message (a user message's body). */
int gossip__serf_decode(const uint8_t *p, size_t n, struct base_arena *a,
                        struct gossip_serf_msg *out) BASE_MUSTCHECK;
/* Appends a serf message, its type byte first. */
void gossip__serf_encode(struct base_buf *b, const struct gossip_serf_msg *m);

/* ---- memberlist's keyring and serf's keyring queries (keyring.c) ----------------------------- */
/* memberlist's AddKey, UseKey and RemoveKey: NULL when done (installing an installed key and
 * removing a key not installed are no-ops), else memberlist's error text (a static string). */
const char *gossip__keyring_add(struct gossip_keyring *k, const uint8_t *key, size_t len);
const char *gossip__keyring_use(struct gossip_keyring *k, const uint8_t *key, size_t len);
const char *gossip__keyring_remove(struct gossip_keyring *k, const uint8_t *key, size_t len);
/* The keyring a configuration asks for (its keyring, else its key, else none); BASE_EINVAL
 * when a key does not decode to 16, 24 or 32 bytes or there are too many. */
int gossip__keyring_from_config(const struct gossip_config *c,
                                struct gossip_keyring *out) BASE_MUSTCHECK;

/* serf's internal keyring queries: the name of op's ("_serf_install-key", ...), and the op a
 * query's name is (-1: none of them). */
const char *gossip__keyring_query_name(enum gossip_keyring_op op);
int gossip__keyring_query_op(const char *name);
/* Appends a keyring query's payload: serf's key request, [7]{Key}. */
void gossip__key_request_encode(struct base_buf *b, const uint8_t *key, size_t len);
/* What a member does with a keyring query's payload (outside bytes): applies op to ring and
 * fills resp (serf's nodeKeyResponse; strings static or in the arena) with serf's texts.
 * Returns true when ring changed. */
bool gossip__keyring_answer(struct gossip_keyring *ring, enum gossip_keyring_op op,
                            const uint8_t *payload, size_t n, struct base_arena *a,
                            struct gossip_serf_key_response *resp);

/* The asker's tally of the answers to one keyring query (serf's streamKeyResp). */
struct gossip_key_tally_count {
    char *key;
    size_t count;
};
struct gossip_key_tally {
    size_t num_resp, num_err;
    char **from; /* who answered */
    size_t n_from;
    struct {
        char *node, *message;
    } * msgs;
    size_t n_msgs;
    struct gossip_key_tally_count *keys, *primary;
    size_t n_keys, n_primary; /* at most 64 distinct keys each */
};
void gossip__key_tally_init(struct gossip_key_tally *t);
void gossip__key_tally_close(struct gossip_key_tally *t);
/* Counts the answer of member from: payload is its query response's (outside bytes: serf's
 * [8]{nodeKeyResponse}, anything else counted as a failure with serf's message). False (not
 * counted) when from has answered already or max_from members have. */
bool gossip__key_tally_add(struct gossip_key_tally *t, const char *from, const uint8_t *payload,
                           size_t n, size_t max_from);
/* The result so far, borrowing t's strings (arrays in the arena); status and error as serf's
 * KeyManager says them against num_nodes. */
void gossip__key_tally_result(const struct gossip_key_tally *t, size_t num_nodes,
                              struct base_arena *a, struct gossip_keyring_result *r);

/* serf's tags in a node's Meta: byte 255 then a msgpack map of strings (struct gossip_tag in
 * gossip.h). */
/* Decodes meta into tags (arena). Meta not starting with 255 is serf's old role-only form:
 * one tag role=<meta>. */
int gossip__tags_decode(const uint8_t *p, size_t n, struct base_arena *a, struct gossip_tag **tags,
                        size_t *n_tags) BASE_MUSTCHECK;
/* Appends the tags, sorted by key (Go's map order is random; any order decodes). */
void gossip__tags_encode(struct base_buf *b, const struct gossip_tag *tags, size_t n);

#endif
