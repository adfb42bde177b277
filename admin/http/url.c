/* Percent-decoding (RFC 3986 §2.1) for paths and query parameters. "+" is left alone: it is a
 * space only in HTML forms, and Consul clients escape spaces as %20. An escaped NUL is refused
 * because every decoded string is handed out as a C string. */
#include "admin/http/internal.h"

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

long http__url_decode_into(char *dst, const char *s, size_t n)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            if (s[i] == '\0')
                return -1;
            dst[o++] = s[i];
            continue;
        }
        if (n - i < 3)
            return -1;
        int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return -1;
        dst[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    dst[o] = '\0';
    return (long)o;
}

char *http_url_decode(struct base_arena *a, const char *s, size_t n)
{
    char *dst = base_arena_alloc(a, n + 1);
    if (http__url_decode_into(dst, s, n) < 0)
        return NULL;
    return dst;
}
