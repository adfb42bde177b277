/* base: errors, logging, allocation, arenas, growable buffers with a small binary codec,
 * duration and size parsing, an intrusive list, and the loop-thread assertion.
 *
 * Threads: everything here is safe on any thread except the logger's level setter, which is
 * called once at start-up. Ownership: functions borrow their arguments for the call unless a
 * comment says otherwise. Pure code: nothing here exits except the allocator on out-of-memory.
 */
#ifndef HERALD_BASE_H
#define HERALD_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ---------------------------------------------------------------------------- */
/* Fallible functions return 0 or a negative code. -errno values (and so UV_E*) pass through;
 * Herald's own codes sit below -1000. */
enum {
    BASE_EPARSE = -1001,     /* malformed input */
    BASE_ETOOBIG = -1002,    /* input over a limit */
    BASE_ENOTLEADER = -1003, /* this server is not the Raft leader */
    BASE_ECONFLICT = -1004,  /* compare-and-set failed */
    BASE_ENOTFOUND = -1005,  /* no such record */
    BASE_EACL = -1006,       /* permission denied */
    BASE_EUNKNOWN = -1007,   /* outcome unknown: the write may or may not commit */
    BASE_ENOLEADER = -1008,  /* no cluster leader */
    BASE_EINVAL = -1009,     /* invalid argument or value */
    BASE_ESTORE = -1010,     /* storage failure */
    BASE_ESHUTDOWN = -1011,  /* shutting down */
    BASE_EDAMAGED = -1012,   /* stored data failed its checksum or structure check */
};

#define BASE_ERRMSG_LEN   256
#define BASE_MUSTCHECK    __attribute__((warn_unused_result))
#define BASE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define BASE_UNUSED(x)    ((void)(x))
#define BASE_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Names any error code (Herald's, errno, or libuv's). Never NULL. */
const char *base_strerror(int code);

/* Writes a message into errmsg (BASE_ERRMSG_LEN bytes). Returns code, so that
 * `return base_errf(msg, BASE_EINVAL, "bad port %d", p);` reads naturally. */
int base_errf(char *errmsg, int code, const char *fmt, ...) BASE_PRINTF(3, 4);

/* Prefixes errmsg with a context: "ctx: <old message>". */
void base_err_wrap(char *errmsg, const char *fmt, ...) BASE_PRINTF(2, 3);

/* ---- allocation ------------------------------------------------------------------------ */
/* These abort with a log line on out-of-memory, so call sites carry no NULL checks. */
void *base_malloc(size_t n);
void *base_calloc(size_t count, size_t n);
void *base_realloc(void *p, size_t n);
char *base_strdup(const char *s);
char *base_strndup(const char *s, size_t n);
void base_free(void *p);

/* ---- arena: one region per request, released in one call ------------------------------ */
struct base_arena_block;
struct base_arena {
    struct base_arena_block *head;
    size_t used; /* bytes handed out over the arena's life */
};
void base_arena_init(struct base_arena *a);
/* Aligned to 16 bytes; never NULL. Memory lives until base_arena_reset or _close. */
void *base_arena_alloc(struct base_arena *a, size_t n);
char *base_arena_strndup(struct base_arena *a, const char *s, size_t n);
char *base_arena_strdup(struct base_arena *a, const char *s);
char *base_arena_printf(struct base_arena *a, const char *fmt, ...) BASE_PRINTF(2, 3);
/* An arena array about to hold element n: p itself while n < *cap, else a copy of its n
 * elements (size bytes each) with twice the room (first elements the first time), *cap
 * updated. The old copy stays in the arena until it is reset. */
void *base_arena_grow(struct base_arena *a, void *p, size_t n, size_t *cap, size_t size,
                      size_t first);
/* Frees every block but the first, so a reused arena allocates nothing in the steady state. */
void base_arena_reset(struct base_arena *a);
void base_arena_close(struct base_arena *a);

/* ---- growable byte buffer and binary codec --------------------------------------------- */
/* Integers are little-endian; a string is a u32 length and its bytes (no NUL on the wire). */
struct base_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};
void base_buf_init(struct base_buf *b);
void base_buf_free(struct base_buf *b);
void base_buf_reserve(struct base_buf *b, size_t extra);
void base_buf_append(struct base_buf *b, const void *p, size_t n);
void base_buf_printf(struct base_buf *b, const char *fmt, ...) BASE_PRINTF(2, 3);
void base_buf_put_u8(struct base_buf *b, uint8_t v);
void base_buf_put_u32(struct base_buf *b, uint32_t v);
void base_buf_put_u64(struct base_buf *b, uint64_t v);
/* s may be NULL: encoded as the empty string. */
void base_buf_put_str(struct base_buf *b, const char *s);
void base_buf_put_bytes(struct base_buf *b, const void *p, size_t n);

/* The same little-endian integers at a fixed place in a buffer the caller sized (frame
 * headers written in place, a header field read at its offset). */
static inline uint16_t base_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t base_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t base_le64(const uint8_t *p)
{
    return base_le32(p) | (uint64_t)base_le32(p + 4) << 32;
}
static inline void base_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void base_put_le32(uint8_t *p, uint32_t v)
{
    base_put_le16(p, (uint16_t)v);
    base_put_le16(p + 2, (uint16_t)(v >> 16));
}
static inline void base_put_le64(uint8_t *p, uint64_t v)
{
    base_put_le32(p, (uint32_t)v);
    base_put_le32(p + 4, (uint32_t)(v >> 32));
}

/* Borrowed bytes. */
struct base_slice {
    const uint8_t *p;
    size_t n;
};

/* Reader over borrowed bytes. Every get checks bounds; after the first failure `err` is set and
 * every later get fails too, so a decoder checks once at the end. */
struct base_rd {
    const uint8_t *p;
    size_t left;
    bool err;
};
void base_rd_init(struct base_rd *r, const void *p, size_t n);
uint8_t base_rd_u8(struct base_rd *r);
uint32_t base_rd_u32(struct base_rd *r);
uint64_t base_rd_u64(struct base_rd *r);
/* Bytes of a length-prefixed field, borrowed from the input; *n gets the length. */
const uint8_t *base_rd_bytes(struct base_rd *r, size_t *n);
/* A length-prefixed string copied NUL-terminated into the arena. */
char *base_rd_str(struct base_rd *r, struct base_arena *a);

/* ---- parsing --------------------------------------------------------------------------- */
/* Go/Consul durations: "10s", "1m30s", "250ms", "1h", "5us", "0"; a bare number is seconds.
 * Result in milliseconds (sub-millisecond values round up to 1 when non-zero). */
int base_duration_parse(const char *s, uint64_t *ms) BASE_MUSTCHECK;
/* The same with Go's time.ParseDuration rule that every number has a unit ("0" alone
 * excepted): "10" is BASE_EPARSE. For the HTTP API, where Consul parses with Go. */
int base_duration_parse_strict(const char *s, uint64_t *ms) BASE_MUSTCHECK;
/* Sizes: "512", "512KiB", "1MB", "64k". Result in bytes. */
int base_size_parse(const char *s, uint64_t *bytes) BASE_MUSTCHECK;
/* Strict unsigned decimal (no sign, no spaces, no overflow, at least one digit). */
int base_u64_parse(const char *s, uint64_t *v) BASE_MUSTCHECK;
/* "host:port", "host", "[v6]:port"; port defaults to def_port. host out is NUL-terminated. */
int base_hostport_parse(const char *s, int def_port, char *host, size_t host_len,
                        int *port) BASE_MUSTCHECK;
/* Case-insensitive ASCII comparison helpers. */
int base_strcasecmp(const char *a, const char *b);
void base_str_lower(char *s);

/* Base64 (RFC 4648, with padding) into a NUL-terminated arena string. */
char *base_b64_encode(struct base_arena *a, const void *p, size_t n);
/* Decodes base64 (padding required, no whitespace) into the arena. BASE_EPARSE if malformed. */
int base_b64_decode(struct base_arena *a, const char *s, uint8_t **out, size_t *n) BASE_MUSTCHECK;

/* ---- intrusive doubly-linked list ------------------------------------------------------- */
/* A circular list with a sentinel head: the head and every node are a struct base_list; a node
 * lives inside its owner and BASE_CONTAINER_OF gets the owner back. A node that is on no list
 * points at itself (after base_list_init or base_list_remove), so removing twice is harmless
 * and base_list_linked tells whether it is on a list. Not thread-safe: one owner per list. */
#define BASE_CONTAINER_OF(ptr, type, member)                                                       \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct base_list {
    struct base_list *prev, *next;
};

/* Makes an empty head, or a node that is on no list. */
static inline void base_list_init(struct base_list *l)
{
    l->prev = l->next = l;
}
/* An empty head; for a node: on no list. */
static inline bool base_list_empty(const struct base_list *l)
{
    return l->next == l;
}
static inline bool base_list_linked(const struct base_list *n)
{
    return n->next != n;
}
/* n must be on no list. */
static inline void base_list_insert_head(struct base_list *head, struct base_list *n)
{
    n->prev = head;
    n->next = head->next;
    head->next->prev = n;
    head->next = n;
}
static inline void base_list_insert_tail(struct base_list *head, struct base_list *n)
{
    n->next = head;
    n->prev = head->prev;
    head->prev->next = n;
    head->prev = n;
}
/* Unlinks n and leaves it pointing at itself; a no-op for a node on no list. */
static inline void base_list_remove(struct base_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}
/* The first or last node, or NULL if the list is empty. */
static inline struct base_list *base_list_first(const struct base_list *head)
{
    return head->next == head ? NULL : head->next;
}
static inline struct base_list *base_list_last(const struct base_list *head)
{
    return head->prev == head ? NULL : head->prev;
}
/* Moves every node of src, in order, to the end of dst; src is left empty. For a walk whose
 * callbacks may remove any node (not only the current one): move the list aside, then take
 * its first node off until it is empty. */
static inline void base_list_splice_tail(struct base_list *dst, struct base_list *src)
{
    if (base_list_empty(src))
        return;
    src->next->prev = dst->prev;
    dst->prev->next = src->next;
    src->prev->next = dst;
    dst->prev = src->prev;
    base_list_init(src);
}
/* Visits every node of head in order, front to back; the body may remove `pos` (or free its
 * owner), since `tmp` already holds the next node. Removing other nodes is not safe. */
#define BASE_LIST_FOREACH_SAFE(pos, tmp, head)                                                     \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);                               \
         (pos) = (tmp), (tmp) = (pos)->next)

/* ---- time ------------------------------------------------------------------------------ */
uint64_t base_now_ms(void);  /* monotonic */
uint64_t base_wall_ms(void); /* realtime */

/* ---- logging --------------------------------------------------------------------------- */
enum base_log_level {
    BASE_LOG_ERR = 0,
    BASE_LOG_WARN,
    BASE_LOG_INFO,
    BASE_LOG_DEBUG,
    BASE_LOG_TRACE
};
void base_log_set_level(enum base_log_level lvl);
void base_log_set_json(bool json);
enum base_log_level base_log_get_level(void);
/* "trace", "debug", "info", "warn", "err"/"error". */
int base_log_level_parse(const char *s, enum base_log_level *lvl) BASE_MUSTCHECK;
void base_log(enum base_log_level lvl, const char *module, const char *fmt, ...) BASE_PRINTF(3, 4);

#define LOG_ERR(m, ...)  base_log(BASE_LOG_ERR, m, __VA_ARGS__)
#define LOG_WARN(m, ...) base_log(BASE_LOG_WARN, m, __VA_ARGS__)
#define LOG_INFO(m, ...)                                                                           \
    do {                                                                                           \
        if (base_log_get_level() >= BASE_LOG_INFO)                                                 \
            base_log(BASE_LOG_INFO, m, __VA_ARGS__);                                               \
    } while (0)
#define LOG_DEBUG(m, ...)                                                                          \
    do {                                                                                           \
        if (base_log_get_level() >= BASE_LOG_DEBUG)                                                \
            base_log(BASE_LOG_DEBUG, m, __VA_ARGS__);                                              \
    } while (0)

/* ---- loop-thread assertion ------------------------------------------------------------- */
/* The main loop thread registers itself once; functions that must run on it begin with
 * BASE_ASSERT_LOOP() (active when NDEBUG is not defined). */
void base_loop_thread_set(void);
bool base_on_loop_thread(void);
#ifndef NDEBUG
#include <assert.h>
#define BASE_ASSERT_LOOP() assert(base_on_loop_thread())
#else
#define BASE_ASSERT_LOOP() ((void)0)
#endif

#endif
