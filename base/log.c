/* One line per event on stderr: "2026-11-25T19:13:41Z info consensus: became leader", or one
 * JSON object per line with -log-json. The loop-thread identity lives here too. */
#include "base.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum base_log_level g_level = BASE_LOG_INFO;
static bool g_json;
static pthread_t g_loop_thread;
static bool g_loop_thread_set;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

void base_log_set_level(enum base_log_level lvl)
{
    g_level = lvl;
}

enum base_log_level base_log_get_level(void)
{
    return g_level;
}

void base_log_set_json(bool json)
{
    g_json = json;
}

int base_log_level_parse(const char *s, enum base_log_level *lvl)
{
    if (!s)
        return BASE_EPARSE;
    for (size_t i = 0; i < BASE_ARRAY_LEN(level_names); i++) {
        if (base_strcasecmp(s, level_names[i]) == 0) {
            *lvl = (enum base_log_level)i;
            return 0;
        }
    }
    if (base_strcasecmp(s, "err") == 0) {
        *lvl = BASE_LOG_ERR;
        return 0;
    }
    if (base_strcasecmp(s, "warning") == 0) {
        *lvl = BASE_LOG_WARN;
        return 0;
    }
    return BASE_EPARSE;
}

static void json_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

void base_log(enum base_log_level lvl, const char *module, const char *fmt, ...)
{
    char msg[1024], ts[32];
    struct timespec now;
    struct tm tm;
    va_list ap;

    if (lvl > g_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    flockfile(stderr);
    if (g_json) {
        fprintf(stderr, "{\"@timestamp\":\"%s\",\"@level\":\"%s\",\"@module\":\"", ts,
                level_names[lvl]);
        json_escape(stderr, module);
        fputs("\",\"@message\":\"", stderr);
        json_escape(stderr, msg);
        fputs("\"}\n", stderr);
    } else {
        fprintf(stderr, "%s %s %s: %s\n", ts, level_names[lvl], module, msg);
    }
    funlockfile(stderr);
}

void base_loop_thread_set(void)
{
    g_loop_thread = pthread_self();
    g_loop_thread_set = true;
}

bool base_on_loop_thread(void)
{
    return !g_loop_thread_set || pthread_equal(pthread_self(), g_loop_thread);
}
