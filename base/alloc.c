/* Allocation that aborts on out-of-memory, and per-request arenas.
 *
 * An arena is a list of blocks; allocations bump a pointer in the newest block. Reset keeps
 * the first block (the biggest one ever needed is kept as first after a reset), so a request
 * loop that reuses one arena stops allocating once it has seen its largest request. */
#include "base.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
    fprintf(stderr, "herald: out of memory allocating %zu bytes\n", n);
    abort();
}

void *base_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *base_calloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p)
        oom(count * n);
    return p;
}

void *base_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *base_strdup(const char *s)
{
    return base_strndup(s, strlen(s));
}

char *base_strndup(const char *s, size_t n)
{
    char *p = base_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void base_free(void *p)
{
    free(p);
}

struct base_arena_block {
    struct base_arena_block *next;
    size_t cap;
    size_t off;
    _Alignas(16) unsigned char mem[];
};

#define ARENA_MIN_BLOCK 4096

void base_arena_init(struct base_arena *a)
{
    a->head = NULL;
    a->used = 0;
}

void *base_arena_alloc(struct base_arena *a, size_t n)
{
    struct base_arena_block *b = a->head;
    size_t need = (n + 15) & ~(size_t)15;

    if (need < n)
        oom(n);
    if (!b || b->cap - b->off < need) {
        size_t cap = need > ARENA_MIN_BLOCK ? need : ARENA_MIN_BLOCK;
        if (b && cap < b->cap * 2 && b->cap * 2 >= need)
            cap = b->cap * 2;
        b = base_malloc(sizeof *b + cap);
        b->cap = cap;
        b->off = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->mem + b->off;
    b->off += need;
    a->used += need;
    return p;
}

void *base_arena_grow(struct base_arena *a, void *p, size_t n, size_t *cap, size_t size,
                      size_t first)
{
    if (n < *cap)
        return p;
    size_t ncap = *cap ? *cap * 2 : first;
    if (ncap <= n)
        ncap = n + 1;
    if (size && ncap > SIZE_MAX / size)
        oom(SIZE_MAX);
    void *np = base_arena_alloc(a, ncap * size);
    if (n)
        memcpy(np, p, n * size);
    *cap = ncap;
    return np;
}

char *base_arena_strndup(struct base_arena *a, const char *s, size_t n)
{
    char *p = base_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *base_arena_strdup(struct base_arena *a, const char *s)
{
    return base_arena_strndup(a, s, strlen(s));
}

char *base_arena_printf(struct base_arena *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = base_arena_alloc(a, (size_t)(n < 0 ? 0 : n) + 1);
    vsnprintf(p, (size_t)(n < 0 ? 0 : n) + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void base_arena_reset(struct base_arena *a)
{
    struct base_arena_block *keep = NULL, *b = a->head;

    /* keep the largest block */
    for (struct base_arena_block *it = b; it; it = it->next)
        if (!keep || it->cap > keep->cap)
            keep = it;
    while (b) {
        struct base_arena_block *next = b->next;
        if (b != keep)
            free(b);
        b = next;
    }
    if (keep) {
        keep->next = NULL;
        keep->off = 0;
    }
    a->head = keep;
    a->used = 0;
}

void base_arena_close(struct base_arena *a)
{
    struct base_arena_block *b = a->head;
    while (b) {
        struct base_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->used = 0;
}
