/* Parsing of durations, sizes, integers and host:port strings as Consul writes them. */
#include "base.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int base_u64_parse(const char *s, uint64_t *v)
{
    uint64_t x = 0;
    if (!s || !*s)
        return BASE_EPARSE;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return BASE_EPARSE;
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10)
            return BASE_ETOOBIG;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

/* Go's time.ParseDuration units, in nanoseconds. */
static const struct {
    const char *name;
    uint64_t ns;
} units[] = {
    {"ns", 1ULL},         {"us", 1000ULL},       {"\xc2\xb5s", 1000ULL},  {"ms", 1000000ULL},
    {"s", 1000000000ULL}, {"m", 60000000000ULL}, {"h", 3600000000000ULL},
};

int base_duration_parse(const char *s, uint64_t *ms)
{
    uint64_t total_ns = 0;
    bool bare = true;

    if (!s || !*s)
        return BASE_EPARSE;
    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return 0;
    }
    /* A bare integer means seconds (Consul accepts it in several places). */
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            bare = false;
    if (bare) {
        uint64_t v;
        int rc = base_u64_parse(s, &v);
        if (rc)
            return rc;
        if (v > UINT64_MAX / 1000)
            return BASE_ETOOBIG;
        *ms = v * 1000;
        return 0;
    }
    while (*s) {
        uint64_t whole = 0, frac = 0, scale = 1;
        bool digits = false;
        while (*s >= '0' && *s <= '9') {
            if (whole > (UINT64_MAX - 9) / 10)
                return BASE_ETOOBIG;
            whole = whole * 10 + (uint64_t)(*s++ - '0');
            digits = true;
        }
        if (*s == '.') {
            s++;
            while (*s >= '0' && *s <= '9') {
                if (scale < 1000000000ULL) {
                    frac = frac * 10 + (uint64_t)(*s - '0');
                    scale *= 10;
                }
                s++;
                digits = true;
            }
        }
        if (!digits)
            return BASE_EPARSE;
        size_t best = 0, bi = 0;
        for (size_t i = 0; i < BASE_ARRAY_LEN(units); i++) {
            size_t n = strlen(units[i].name);
            if (strncmp(s, units[i].name, n) == 0 && n > best) {
                best = n;
                bi = i;
            }
        }
        if (!best)
            return BASE_EPARSE;
        s += best;
        uint64_t u = units[bi].ns;
        if (whole && u > UINT64_MAX / whole)
            return BASE_ETOOBIG;
        uint64_t add = whole * u + (frac * u) / scale;
        if (total_ns > UINT64_MAX - add)
            return BASE_ETOOBIG;
        total_ns += add;
    }
    *ms = total_ns / 1000000ULL + (total_ns % 1000000ULL ? 1 : 0);
    return 0;
}

int base_duration_parse_strict(const char *s, uint64_t *ms)
{
    if (s && *s && strcmp(s, "0") != 0 && strspn(s, "0123456789") == strlen(s))
        return BASE_EPARSE; /* a bare number: Go says "missing unit in duration" */
    return base_duration_parse(s, ms);
}

int base_size_parse(const char *s, uint64_t *bytes)
{
    static const struct {
        const char *name;
        uint64_t mul;
    } sz[] = {
        {"", 1},
        {"b", 1},
        {"k", 1024},
        {"kb", 1000},
        {"kib", 1024},
        {"m", 1 << 20},
        {"mb", 1000000},
        {"mib", 1 << 20},
        {"g", 1ULL << 30},
        {"gb", 1000000000ULL},
        {"gib", 1ULL << 30},
    };
    char num[32];
    size_t i = 0;
    uint64_t v;

    if (!s)
        return BASE_EPARSE;
    while (s[i] >= '0' && s[i] <= '9' && i < sizeof num - 1) {
        num[i] = s[i];
        i++;
    }
    num[i] = '\0';
    if (base_u64_parse(num, &v))
        return BASE_EPARSE;
    const char *unit = s + i;
    for (size_t k = 0; k < BASE_ARRAY_LEN(sz); k++) {
        if (base_strcasecmp(unit, sz[k].name) == 0) {
            if (v && sz[k].mul > UINT64_MAX / v)
                return BASE_ETOOBIG;
            *bytes = v * sz[k].mul;
            return 0;
        }
    }
    return BASE_EPARSE;
}

int base_hostport_parse(const char *s, int def_port, char *host, size_t host_len, int *port)
{
    const char *colon;
    size_t hl;

    if (!s || !*s)
        return BASE_EPARSE;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end)
            return BASE_EPARSE;
        hl = (size_t)(end - s - 1);
        if (hl == 0 || hl >= host_len)
            return BASE_EPARSE;
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        colon = end[1] == ':' ? end + 1 : NULL;
        if (!colon && end[1])
            return BASE_EPARSE;
    } else {
        colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon) /* bare IPv6 without brackets */
            colon = NULL;
        hl = colon ? (size_t)(colon - s) : strlen(s);
        if (hl == 0 || hl >= host_len)
            return BASE_EPARSE;
        memcpy(host, s, hl);
        host[hl] = '\0';
    }
    if (colon) {
        uint64_t p;
        if (base_u64_parse(colon + 1, &p) || p == 0 || p > 65535)
            return BASE_EPARSE;
        *port = (int)p;
    } else {
        *port = def_port;
    }
    return 0;
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

int base_strcasecmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int x = lower((unsigned char)*a), y = lower((unsigned char)*b);
        if (x != y || !x)
            return x - y;
    }
}

void base_str_lower(char *s)
{
    for (; *s; s++)
        *s = (char)lower((unsigned char)*s);
}

uint64_t base_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t base_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
