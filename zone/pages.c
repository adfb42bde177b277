/* LMDB's page structure, checked before LMDB reads a page (STYLE.md: bounds-check before a
 * library sees the bytes).
 *
 * LMDB trusts its file: a changed page header, node offset or size, or child page number makes
 * it read outside the page, or follow a pointer anywhere, and crash. The record checksums
 * (record.c) cannot help there, since LMDB crashes before a record is handed out. So at open,
 * before any database is opened, every page reachable from the current meta page is read
 * (pread, never through the mapping) and checked against the on-disk format of LMDB 0.9 (data
 * version 1, stable since 0.9.0; lmdb.h MDB_VERSION_*):
 *   page:  u64 pgno, u16 pad, u16 flags (P_BRANCH 1, P_LEAF 2, P_OVERFLOW 4), then u16 lower
 *          and u16 upper (free space bounds) or, for an overflow page, u32 page count; then the
 *          u16 node offsets, lower - 16 bytes of them.
 *   node:  u16 lo, u16 hi, u16 flags, u16 key size, key, data. In a branch, the child page is
 *          lo | hi << 16 | flags << 32; in a leaf, lo | hi << 16 is the data size, the data
 *          either inline or (F_BIGDATA 1) a u64 overflow page number; F_SUBDATA 2 marks a named
 *          database's record (an MDB_db) in the main database.
 *   meta:  pages 0 and 1, at offset 16: u32 magic, u32 version, u64 address, u64 mapsize, two
 *          MDB_db (free pages, main) of 48 bytes each (u32 page size for the first, u16 flags,
 *          u16 depth, 4 x u64 counts, u64 root), u64 last page, u64 txnid; the higher txnid is
 *          the current one.
 * Each tree is walked from its root with its depth: a page must be inside the file and the
 * last used page, carry its own number, be a branch above the leaves and a leaf at the bottom,
 * have sane free-space bounds, nodes inside the page, children and overflow runs in range, and
 * be reached once. The free-page database's values must be page lists within range. */
#include "zone/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HDR          16
#define P_BRANCH     0x01
#define P_LEAF       0x02
#define P_OVERFLOW   0x04
#define F_BIGDATA    0x01
#define F_SUBDATA    0x02
#define NODE         8
#define DB_SIZE      48
#define META_DB0     (HDR + 24)
#define META_LAST    (HDR + 24 + 2 * DB_SIZE)
#define META_TXNID   (META_LAST + 8)
#define LMDB_MAGIC   0xBEEFC0DEu
#define LMDB_VERSION 1
#define P_INVALID    UINT64_MAX
#define MAX_DEPTH    32

struct pages {
    int fd;
    const char *path;
    uint32_t psize;
    uint64_t last; /* last used page */
    uint8_t *seen; /* one bit per page */
    char *errmsg;
};

static uint16_t u16(const uint8_t *p)
{
    return base_le16(p);
}

static int bad(struct pages *w, uint64_t pgno, const char *what)
{
    return base_errf(w->errmsg, BASE_EDAMAGED, "catalog %s: page %" PRIu64 " %s", w->path, pgno,
                     what);
}

static int read_page(struct pages *w, uint64_t pgno, uint8_t *buf)
{
    if (pgno < 2 || pgno > w->last)
        return bad(w, pgno, "is out of range");
    if (w->seen[pgno / 8] & (1u << (pgno % 8)))
        return bad(w, pgno, "is reached twice");
    w->seen[pgno / 8] |= (uint8_t)(1u << (pgno % 8));
    ssize_t n = pread(w->fd, buf, w->psize, (off_t)(pgno * w->psize));
    if (n != (ssize_t)w->psize)
        return bad(w, pgno, "cannot be read");
    if (base_le64(buf) != pgno)
        return bad(w, pgno, "does not carry its number");
    return 0;
}

/* An overflow run of a leaf's big value of dsize bytes. */
static int check_overflow(struct pages *w, uint64_t pgno, uint64_t dsize)
{
    uint8_t hdr[HDR];

    if (pgno < 2 || pgno > w->last)
        return bad(w, pgno, "(overflow) is out of range");
    if (pread(w->fd, hdr, HDR, (off_t)(pgno * w->psize)) != HDR)
        return bad(w, pgno, "cannot be read");
    uint32_t count = base_le32(hdr + 12);
    if (base_le64(hdr) != pgno || !(u16(hdr + 10) & P_OVERFLOW) || count == 0 ||
        count - 1 > w->last - pgno || dsize > (uint64_t)count * w->psize - HDR)
        return bad(w, pgno, "is not the overflow run its node says");
    for (uint64_t p = pgno; p < pgno + count; p++) {
        if (w->seen[p / 8] & (1u << (p % 8)))
            return bad(w, p, "is reached twice");
        w->seen[p / 8] |= (uint8_t)(1u << (p % 8));
    }
    return 0;
}

static int walk(struct pages *w, uint64_t pgno, unsigned depth, bool main_db, bool free_db);

/* A named database's record in the main database: walk its tree. */
static int sub_db(struct pages *w, uint64_t at, const uint8_t *db)
{
    uint16_t depth = u16(db + 6);
    uint64_t root = base_le64(db + 40);

    if (root == P_INVALID)
        return depth == 0 ? 0 : bad(w, at, "names an empty database with a depth");
    if (depth == 0 || depth > MAX_DEPTH)
        return bad(w, at, "names a database of impossible depth");
    return walk(w, root, depth, false, false);
}

static int walk_page(struct pages *w, uint64_t pgno, unsigned depth, bool main_db, bool free_db,
                     uint8_t *p);

/* Each page gets its own buffer: a named database's tree is walked from inside a leaf of the
 * main one, and the walk is at most MAX_DEPTH pages deep per tree. */
static int walk(struct pages *w, uint64_t pgno, unsigned depth, bool main_db, bool free_db)
{
    uint8_t *p = base_malloc(w->psize);
    int rc = walk_page(w, pgno, depth, main_db, free_db, p);
    base_free(p);
    return rc;
}

static int walk_page(struct pages *w, uint64_t pgno, unsigned depth, bool main_db, bool free_db,
                     uint8_t *p)
{
    int rc = read_page(w, pgno, p);

    if (rc)
        return rc;
    uint16_t flags = u16(p + 10), lower = u16(p + 12), upper = u16(p + 14);
    uint16_t type = flags & (P_BRANCH | P_LEAF | P_OVERFLOW | 0x08 | 0x20 | 0x40);
    if (type != (depth > 1 ? P_BRANCH : P_LEAF))
        return bad(w, pgno, depth > 1 ? "is not a branch page" : "is not a leaf page");
    if (lower < HDR + 2 || lower > upper || upper > w->psize || (lower - HDR) % 2)
        return bad(w, pgno, "has impossible free-space bounds");
    unsigned n = (lower - HDR) / 2;
    for (unsigned i = 0; i < n; i++) {
        uint16_t off = u16(p + HDR + 2 * i);
        if (off < upper || off % 2 || (uint32_t)off + NODE > w->psize)
            return bad(w, pgno, "has a node outside the page");
        const uint8_t *node = p + off;
        uint32_t lo = u16(node), hi = u16(node + 2), nflags = u16(node + 4), ksize = u16(node + 6);
        uint32_t room = w->psize - off - NODE;
        if (ksize > room)
            return bad(w, pgno, "has a key outside the page");
        if (depth > 1) {
            uint64_t child = lo | (uint64_t)hi << 16 | (uint64_t)nflags << 32;
            if ((rc = walk(w, child, depth - 1, main_db, free_db)))
                return rc;
            continue;
        }
        uint64_t dsize = lo | (uint64_t)hi << 16;
        const uint8_t *data = node + NODE + ksize;
        if (nflags & ~(uint32_t)(F_BIGDATA | F_SUBDATA))
            return bad(w, pgno, "has a node with unknown flags");
        if (nflags & F_BIGDATA) {
            if (8 > room - ksize)
                return bad(w, pgno, "has a value outside the page");
            if ((rc = check_overflow(w, base_le64(data), dsize)))
                return rc;
            continue;
        }
        if (dsize > room - ksize)
            return bad(w, pgno, "has a value outside the page");
        if (nflags & F_SUBDATA) {
            if (!main_db || dsize != DB_SIZE)
                return bad(w, pgno, "has a database record where none can be");
            if ((rc = sub_db(w, pgno, data)))
                return rc;
        } else if (free_db) {
            if (dsize < 8 || dsize % 8 || base_le64(data) != dsize / 8 - 1)
                return bad(w, pgno, "has a free-page list of the wrong size");
            for (uint64_t j = 1; j < dsize / 8; j++)
                if (base_le64(data + 8 * j) > w->last)
                    return bad(w, pgno, "lists a free page beyond the last");
        }
    }
    return 0;
}

int zone__store_check_pages(const char *dir, char *errmsg)
{
    char path[4096];
    uint8_t meta[2][HDR + 160];
    struct stat st;
    struct pages w = {.path = path, .errmsg = errmsg};
    int rc = 0;

    snprintf(path, sizeof path, "%s/data.mdb", dir);
    w.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (w.fd < 0)
        return errno == ENOENT ? 0
                               : base_errf(errmsg, -errno, "catalog %s: %s", path, strerror(errno));
    if (fstat(w.fd, &st) != 0 || st.st_size == 0) {
        close(w.fd);
        return 0; /* a new, empty file: LMDB writes its meta pages */
    }
    if (pread(w.fd, meta[0], sizeof meta[0], 0) != (ssize_t)sizeof meta[0]) {
        close(w.fd);
        return base_errf(errmsg, BASE_EDAMAGED, "catalog %s: too short for its header", path);
    }
    w.psize = base_le32(meta[0] + META_DB0);
    if (w.psize < 512 || w.psize > 65536 || (w.psize & (w.psize - 1)) ||
        pread(w.fd, meta[1], sizeof meta[1], (off_t)w.psize) != (ssize_t)sizeof meta[1]) {
        close(w.fd);
        return base_errf(errmsg, BASE_EDAMAGED, "catalog %s: its header is damaged", path);
    }
    int cur = -1;
    for (int i = 0; i < 2; i++) {
        if (base_le32(meta[i] + HDR) != LMDB_MAGIC || base_le32(meta[i] + HDR + 4) != LMDB_VERSION)
            continue;
        if (cur < 0 || base_le64(meta[i] + META_TXNID) > base_le64(meta[cur] + META_TXNID))
            cur = i;
    }
    if (cur < 0) {
        close(w.fd);
        return base_errf(errmsg, BASE_EDAMAGED, "catalog %s: neither meta page is LMDB's", path);
    }
    w.last = base_le64(meta[cur] + META_LAST);
    if (w.last < 1 || w.last >= (uint64_t)st.st_size / w.psize) {
        close(w.fd);
        return base_errf(errmsg, BASE_EDAMAGED,
                         "catalog %s is truncated: its last page %" PRIu64 " is past its %" PRIu64
                         " bytes",
                         path, w.last, (uint64_t)st.st_size);
    }
    w.seen = base_calloc((size_t)(w.last / 8 + 1), 1);
    for (int d = 0; d < 2 && !rc; d++) {
        const uint8_t *db = meta[cur] + META_DB0 + d * DB_SIZE;
        uint16_t depth = u16(db + 6);
        uint64_t root = base_le64(db + 40);
        if (root == P_INVALID)
            continue;
        if (depth == 0 || depth > MAX_DEPTH)
            rc = base_errf(errmsg, BASE_EDAMAGED, "catalog %s: meta names a tree of depth %u", path,
                           depth);
        else
            rc = walk(&w, root, depth, d == 1, d == 0);
    }
    base_free(w.seen);
    close(w.fd);
    return rc;
}
