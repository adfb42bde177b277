/* Error codes and messages. */
#include "base.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *base_strerror(int code)
{
    switch (code) {
    case 0:
        return "ok";
    case BASE_EPARSE:
        return "malformed input";
    case BASE_ETOOBIG:
        return "too large";
    case BASE_ENOTLEADER:
        return "not the leader";
    case BASE_ECONFLICT:
        return "conflict";
    case BASE_ENOTFOUND:
        return "not found";
    case BASE_EACL:
        return "permission denied";
    case BASE_EUNKNOWN:
        return "outcome unknown";
    case BASE_ENOLEADER:
        return "No cluster leader";
    case BASE_EINVAL:
        return "invalid argument";
    case BASE_ESTORE:
        return "storage failure";
    case BASE_ESHUTDOWN:
        return "shutting down";
    case BASE_EDAMAGED:
        return "stored data is damaged";
    default:
        break;
    }
    if (code < 0 && code > -1000)
        return strerror(-code); /* libuv's UV_E* equal -errno on Unix */
    return "unknown error";
}

int base_errf(char *errmsg, int code, const char *fmt, ...)
{
    if (errmsg) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errmsg, BASE_ERRMSG_LEN, fmt, ap);
        va_end(ap);
    }
    return code;
}

void base_err_wrap(char *errmsg, const char *fmt, ...)
{
    char inner[BASE_ERRMSG_LEN];
    char ctx[BASE_ERRMSG_LEN];
    va_list ap;

    if (!errmsg)
        return;
    snprintf(inner, sizeof inner, "%s", errmsg);
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    /* Truncation is acceptable for a message; build it piecewise so the compiler sees it. */
    size_t n = strlen(ctx);
    if (n > BASE_ERRMSG_LEN - 3)
        n = BASE_ERRMSG_LEN - 3;
    memcpy(errmsg, ctx, n);
    memcpy(errmsg + n, ": ", 2);
    n += 2;
    size_t m = strlen(inner);
    if (m > BASE_ERRMSG_LEN - 1 - n)
        m = BASE_ERRMSG_LEN - 1 - n;
    memcpy(errmsg + n, inner, m);
    errmsg[n + m] = '\0';
}
