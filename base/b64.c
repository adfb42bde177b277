/* Base64 (RFC 4648 §4) for KV values in JSON, as Consul encodes them. */
#include "base.h"

#include <string.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *base_b64_encode(struct base_arena *a, const void *p, size_t n)
{
    const uint8_t *in = p;
    char *out = base_arena_alloc(a, (n + 2) / 3 * 4 + 1);
    size_t o = 0, i = 0;

    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

static int val(char c)
{
    const char *p = c ? strchr(alphabet, c) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

int base_b64_decode(struct base_arena *a, const char *s, uint8_t **out, size_t *n)
{
    size_t len = strlen(s);
    if (len % 4)
        return BASE_EPARSE;
    uint8_t *buf = base_arena_alloc(a, len / 4 * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v0 = val(s[i]), v1 = val(s[i + 1]);
        bool last = i + 4 == len;
        int v2 = last && s[i + 2] == '=' && s[i + 3] == '=' ? -2 : val(s[i + 2]);
        int v3 = last && s[i + 3] == '=' ? -2 : val(s[i + 3]);
        if (v0 < 0 || v1 < 0 || v2 == -1 || v3 == -1 || (v2 == -2 && v3 != -2))
            return BASE_EPARSE;
        buf[o++] = (uint8_t)(v0 << 2 | v1 >> 4);
        if (v2 >= 0)
            buf[o++] = (uint8_t)((v1 & 15) << 4 | v2 >> 2);
        if (v3 >= 0)
            buf[o++] = (uint8_t)((v2 & 3) << 6 | v3);
    }
    *out = buf;
    *n = o;
    return 0;
}
