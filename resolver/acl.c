/* Who may recurse (-allow-recursion, dns_config.allow_recursion) and the recursor address
 * syntax (-recursor, recursors). A small linear matcher: the lists are a handful of networks
 * and the check is a few byte compares per query, cheaper than any index would be. */
#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define V4(a, b, c, d, p)                                                                          \
    {                                                                                              \
        AF_INET, p,                                                                                \
        {                                                                                          \
            a, b, c, d                                                                             \
        }                                                                                          \
    }
static const struct rsv_cidr defaults[] = {
    V4(127, 0, 0, 0, 8),    /* loopback */
    V4(10, 0, 0, 0, 8),     /* RFC 1918 */
    V4(172, 16, 0, 0, 12),  /* RFC 1918 */
    V4(192, 168, 0, 0, 16), /* RFC 1918 */
    V4(169, 254, 0, 0, 16), /* IPv4 link-local (RFC 3927) */
    {AF_INET6, 128, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}}, /* ::1 */
    {AF_INET6, 7, {0xfc}},                                             /* ULA (RFC 4193) */
    {AF_INET6, 10, {0xfe, 0x80}},                                      /* link-local */
};
#undef V4

const struct rsv_cidr *rsv_cidr_defaults(size_t *n)
{
    *n = BASE_ARRAY_LEN(defaults);
    return defaults;
}

int rsv_cidr_parse(const char *s, struct rsv_cidr *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    const char *slash;
    size_t len;
    unsigned max, prefix;

    memset(out, 0, sizeof *out);
    if (!s || (len = strlen(s)) == 0 || len >= sizeof buf)
        return BASE_EINVAL;
    memcpy(buf, s, len + 1);
    slash = strchr(s, '/');
    if (slash)
        buf[slash - s] = '\0';
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return BASE_EINVAL;
    }
    prefix = max;
    if (slash) {
        uint64_t v;
        if (base_u64_parse(slash + 1, &v) || v > max)
            return BASE_EINVAL;
        prefix = (unsigned)v;
    }
    out->prefix = (uint8_t)prefix;
    /* host bits must be zero */
    for (unsigned bit = prefix; bit < max; bit++)
        if (out->addr[bit / 8] & (0x80u >> (bit % 8)))
            return BASE_EINVAL;
    return 0;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

bool rsv_cidr_match(const struct rsv_cidr *nets, size_t n, const struct sockaddr *addr)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    uint8_t a[16];
    int family;

    if (!addr)
        return false;
    if (addr->sa_family == AF_INET) {
        family = AF_INET;
        memcpy(a, &((const struct sockaddr_in *)(const void *)addr)->sin_addr, 4);
    } else if (addr->sa_family == AF_INET6) {
        const uint8_t *p = ((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr.s6_addr;
        if (memcmp(p, mapped, 12) == 0) {
            family = AF_INET;
            memcpy(a, p + 12, 4);
        } else {
            family = AF_INET6;
            memcpy(a, p, 16);
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (nets[i].family == family && prefix_eq(nets[i].addr, a, nets[i].prefix))
            return true;
    return false;
}

int rsv_recursor_parse(const char *s, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN + 1];
    uint8_t bin[16];
    const char *port_s = NULL;
    uint64_t port = 53;
    size_t len;

    if (!s || !*s)
        return BASE_EINVAL;
    len = strlen(s);
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || (size_t)(rb - s - 1) >= sizeof host)
            return BASE_EINVAL;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = '\0';
        if (inet_pton(AF_INET6, host, bin) != 1)
            return BASE_EINVAL;
        if (rb[1] == ':')
            port_s = rb + 2;
        else if (rb[1] != '\0')
            return BASE_EINVAL;
    } else if (inet_pton(AF_INET6, s, bin) == 1) {
        if (len >= sizeof host)
            return BASE_EINVAL;
        memcpy(host, s, len + 1); /* a bare IPv6 literal: no port */
    } else {
        const char *colon = strchr(s, ':');
        size_t hl = colon ? (size_t)(colon - s) : len;
        if (hl == 0 || hl >= sizeof host)
            return BASE_EINVAL;
        memcpy(host, s, hl);
        host[hl] = '\0';
        if (inet_pton(AF_INET, host, bin) != 1)
            return BASE_EINVAL;
        if (colon)
            port_s = colon + 1;
    }
    if (port_s && (base_u64_parse(port_s, &port) || port == 0 || port > 65535))
        return BASE_EINVAL;
    if ((size_t)snprintf(out, cap, "%s@%u", host, (unsigned)port) >= cap)
        return BASE_EINVAL;
    return 0;
}
