/* The scaffolding of the unit tests that keep a zone store (zone, resolver, consensus),
 * header-only (static inline): temp directories and their removal, a store in a fresh temp
 * directory, commands applied with their results checked, the usual registrations, and a
 * CRC-32C written from its definition (to build snapshots by hand, not to test the sliced
 * one with itself). */
#ifndef HERALD_TEST_ZONE_FIXTURE_H
#define HERALD_TEST_ZONE_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zone/zone.h"

/* ---- temp directories ------------------------------------------------------------------ */

static inline int rm_tree_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes the tree at path (0, or -1 with errno). */
static inline int rm_tree(const char *path)
{
    return nftw(path, rm_tree_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory /tmp/herald-<name>-XXXXXX in dir. */
static inline void tmp_dir(char dir[64], const char *name)
{
    snprintf(dir, 64, "/tmp/herald-%s-XXXXXX", name);
    assert_non_null(mkdtemp(dir));
}

/* ---- a store --------------------------------------------------------------------------- */

static inline void store_open_at(const char *dir, struct zone_store **s)
{
    char errmsg[BASE_ERRMSG_LEN];
    assert_int_equal(zone_store_open(dir, 0, s, errmsg), 0);
}

/* A store (default map size) in a fresh temp directory. */
static inline void tmp_store_open(char dir[64], const char *name, struct zone_store **s)
{
    tmp_dir(dir, name);
    store_open_at(dir, s);
}

/* Closes the store and removes its directory. */
static inline void tmp_store_close(const char *dir, struct zone_store *s)
{
    zone_store_close(s);
    assert_int_equal(rm_tree(dir), 0);
}

/* The fixture of a store test (a cmocka group state): a store in a fresh temp dir, and an
 * arena for reads. */
struct store_fx {
    char dir[64];
    struct zone_store *s;
    struct base_arena a;
};

static inline int store_fx_setup(void **state, const char *name)
{
    struct store_fx *f = calloc(1, sizeof *f);
    tmp_store_open(f->dir, name, &f->s);
    base_arena_init(&f->a);
    *state = f;
    return 0;
}

static inline int store_fx_teardown(void **state)
{
    struct store_fx *f = *state;
    base_arena_close(&f->a);
    tmp_store_close(f->dir, f->s);
    free(f);
    return 0;
}

/* Applies the n commands (n <= 8) as one entry at idx, which goes in: their results in res,
 * the tables they touched in *touched. */
static inline void store_apply_n(struct zone_store *s, uint64_t idx, const struct zone_cmd *cmds,
                                 size_t n, int *res, uint32_t *touched)
{
    struct base_buf bufs[8];
    struct base_slice sl[8];

    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        base_buf_init(&bufs[i]);
        zone_cmd_encode(&cmds[i], &bufs[i]);
        sl[i].p = bufs[i].data;
        sl[i].n = bufs[i].len;
    }
    assert_int_equal(zone_store_apply(s, idx, sl, n, res, touched), 0);
    for (size_t i = 0; i < n; i++)
        base_buf_free(&bufs[i]);
}

/* Applies c alone as the entry at idx; returns its result, *touched the mask (may be NULL). */
static inline int store_apply1(struct zone_store *s, uint64_t idx, const struct zone_cmd *c,
                               uint32_t *touched)
{
    int res = 12345;
    uint32_t t = 0xdead; /* not written: seen */
    store_apply_n(s, idx, c, 1, &res, &t);
    if (touched)
        *touched = t;
    return res;
}

/* Applies c alone as the entry at idx; the command succeeds. */
static inline void store_apply(struct zone_store *s, uint64_t idx, const struct zone_cmd *c)
{
    assert_int_equal(store_apply1(s, idx, c, NULL), 0);
}

/* Registers node at addr (in datacenter dc, or none) with service svc (NULL: none). */
static inline void store_reg(struct zone_store *s, uint64_t idx, const char *node, const char *addr,
                             const char *dc, const struct zone_service *svc)
{
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_REGISTER;
    c.node.name = node;
    c.node.address = addr;
    c.node.datacenter = dc;
    c.service = svc;
    store_apply(s, idx, &c);
}

/* Registers check cid (of service sid, or of the node) on node, leaving the node as it is. */
static inline void store_check(struct zone_store *s, uint64_t idx, const char *node,
                               const char *cid, const char *sid, enum zone_health st)
{
    struct zone_cmd c;
    struct zone_check ck;

    memset(&c, 0, sizeof c);
    memset(&ck, 0, sizeof ck);
    c.type = ZONE_CMD_REGISTER;
    c.node.name = node;
    c.skip_node_update = true;
    ck.check_id = cid;
    ck.name = cid;
    ck.service_id = sid;
    ck.status = st;
    c.checks = &ck;
    c.n_checks = 1;
    store_apply(s, idx, &c);
}

static inline void store_kv_set(struct zone_store *s, uint64_t idx, const char *key, const void *v,
                                size_t n)
{
    struct zone_cmd c;
    memset(&c, 0, sizeof c);
    c.type = ZONE_CMD_KV_SET;
    c.kv.key = key;
    c.kv.value = v;
    c.kv.value_len = n;
    store_apply(s, idx, &c);
}

/* ---- CRC-32C from its definition ------------------------------------------------------- */

static inline uint32_t crc32c(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
    }
    return ~crc;
}

#endif
