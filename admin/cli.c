/* The CLI: each command is one or a few HTTP calls to the local agent, printed the way
 * Consul's CLI prints them. Exit 0 on success, 1 with one line on stderr on error. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CLI_TIMEOUT_MS 15000
/* A snapshot moves the whole catalog (up to ZONE_BACKUP_MAX) and a restore waits for it to
 * commit on the servers. */
#define CLI_SNAPSHOT_TIMEOUT_MS (10 * 60 * 1000)

struct cli {
    char host[256];
    int port;
    struct adm_strv args; /* positional arguments and command flags, -http-addr removed */
};

static int fail(const char *fmt, ...) BASE_PRINTF(1, 2);
static int fail(const char *fmt, ...)
{
    va_list ap;
    fputs("Error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static int set_addr(struct cli *c, const char *addr)
{
    if (strncmp(addr, "http://", 7) == 0)
        addr += 7;
    if (base_hostport_parse(addr, 8500, c->host, sizeof c->host, &c->port))
        return fail("invalid HTTP address \"%s\"", addr);
    return 0;
}

/* Percent-encodes a KV key for a URL path, keeping '/'. */
static void url_path_escape(struct base_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("/-_.~", ch))
            base_buf_append(b, s, 1);
        else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            base_buf_append(b, e, 3);
        }
    }
}

/* One request; on HTTP >= 400 prints the agent's message and returns 1. */
static int call_timeout(struct cli *c, const char *method, const char *target, const char *body,
                        size_t body_len, struct http_client_resp *resp, bool allow_404,
                        unsigned timeout_ms)
{
    char err[BASE_ERRMSG_LEN];
    if (http_client_do(c->host, c->port, method, target, body, body_len, timeout_ms, resp, err))
        return fail("%s", err);
    if (resp->status >= 400 && !(allow_404 && resp->status == 404)) {
        char *msg = resp->body;
        msg[strcspn(msg, "\n")] = '\0';
        fail("Unexpected response code: %d (%s)", resp->status, msg);
        http_client_resp_free(resp);
        return 1;
    }
    return 0;
}

static int call(struct cli *c, const char *method, const char *target, const char *body,
                size_t body_len, struct http_client_resp *resp, bool allow_404)
{
    return call_timeout(c, method, target, body, body_len, resp, allow_404, CLI_TIMEOUT_MS);
}

/* prefix, then arg percent-encoded (url_path_escape), then "?query" unless query is NULL;
 * base_malloc'd. */
static char *path_with(const char *prefix, const char *arg, const char *query)
{
    struct base_buf b;
    base_buf_init(&b);
    base_buf_printf(&b, "%s", prefix);
    url_path_escape(&b, arg);
    if (query)
        base_buf_printf(&b, "?%s", query);
    base_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* A request whose answer only matters by its status (printed when an error). */
static int call_ok(struct cli *c, const char *method, const char *target, const void *body,
                   size_t body_len)
{
    struct http_client_resp r;
    int rc = call(c, method, target, body, body_len, &r, false);
    if (!rc)
        http_client_resp_free(&r);
    return rc;
}

/* call_ok on path_with(prefix, arg, query). */
static int call_ok_at(struct cli *c, const char *method, const char *prefix, const char *arg,
                      const char *query, const void *body, size_t body_len)
{
    char *path = path_with(prefix, arg, query);
    int rc = call_ok(c, method, path, body, body_len);
    base_free(path);
    return rc;
}

static json_t *call_json(struct cli *c, const char *target, int *rc)
{
    struct http_client_resp r;
    json_error_t jerr;
    if ((*rc = call(c, "GET", target, NULL, 0, &r, false)))
        return NULL;
    json_t *v = json_loadb(r.body, r.body_len, JSON_DECODE_ANY, &jerr);
    http_client_resp_free(&r);
    if (!v)
        *rc = fail("bad JSON from agent: %s", jerr.text);
    return v;
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* ---- commands -------------------------------------------------------------------------- */

/* `herald members`, as `consul members` prints it: servers first, then by name. */
static const char *status_name(json_t *m)
{
    static const char *const names[] = {"none", "alive", "leaving", "left", "failed"};
    json_int_t st = json_integer_value(json_object_get(m, "Status"));
    return st >= 0 && st < (json_int_t)BASE_ARRAY_LEN(names) ? names[st] : "unknown";
}

static bool is_server(json_t *m)
{
    return strcmp(jstr(json_object_get(m, "Tags"), "role"), "consul") == 0;
}

static int member_cmp(const void *pa, const void *pb)
{
    json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
    if (is_server(a) != is_server(b))
        return is_server(a) ? -1 : 1;
    return strcmp(jstr(a, "Name"), jstr(b, "Name"));
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Prints rows of cells (n_cols each) in columns two spaces apart (Consul's columnize). */
static void columns(char ***rows, size_t n_rows, size_t n_cols)
{
    size_t w[16] = {0};
    for (size_t r = 0; r < n_rows; r++)
        for (size_t k = 0; k < n_cols; k++)
            if (strlen(rows[r][k]) > w[k])
                w[k] = strlen(rows[r][k]);
    for (size_t r = 0; r < n_rows; r++) {
        for (size_t k = 0; k < n_cols; k++)
            printf(k + 1 < n_cols ? "%-*s  " : "%-*s", k + 1 < n_cols ? (int)w[k] : 0, rows[r][k]);
        printf("\n");
    }
}

static int cmd_members(struct cli *c, char **argv, size_t argc)
{
    static const char usage[] = "usage: herald members [-detailed] [-status REGEX] [-wan]";
    bool detailed = false, wan = false;
    const char *status_re = NULL;
    regex_t re;
    int rc;

    for (size_t i = 0; i < argc; i++) {
        const char *a = argv[i][0] == '-' && argv[i][1] == '-' ? argv[i] + 1 : argv[i];
        if (strcmp(a, "-detailed") == 0)
            detailed = true;
        else if (strcmp(a, "-wan") == 0)
            wan = true;
        else if (strncmp(a, "-status=", 8) == 0)
            status_re = a + 8;
        else if (strcmp(a, "-status") == 0 && i + 1 < argc)
            status_re = argv[++i];
        else
            return fail("%s", usage);
    }
    if (status_re && regcomp(&re, status_re, REG_EXTENDED | REG_NOSUB))
        return fail("Failed to compile status regexp: %s", status_re);
    json_t *arr = call_json(c, wan ? "/v1/agent/members?wan=1" : "/v1/agent/members", &rc);
    if (!arr) {
        if (status_re)
            regfree(&re);
        return rc;
    }
    size_t n = json_array_size(arr), kept = 0;
    json_t **ms = base_calloc(n + 1, sizeof *ms);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(arr, i);
        if (!status_re || regexec(&re, status_name(m), 0, NULL, 0) == 0)
            ms[kept++] = m;
    }
    if (status_re)
        regfree(&re);
    qsort(ms, kept, sizeof *ms, member_cmp);

    struct base_arena a;
    base_arena_init(&a);
    size_t n_cols = detailed ? 4 : 9;
    char ***rows = base_arena_alloc(&a, (kept + 1) * sizeof *rows);
    static const char *const head[] = {"Node",     "Address", "Status",    "Type",   "Build",
                                       "Protocol", "DC",      "Partition", "Segment"};
    static const char *const head_detailed[] = {"Node", "Address", "Status", "Tags"};
    rows[0] = (char **)(detailed ? head_detailed : head);
    for (size_t r = 0; r < kept; r++) {
        json_t *m = ms[r], *tags = json_object_get(m, "Tags");
        char **row = base_arena_alloc(&a, n_cols * sizeof *row);
        rows[r + 1] = row;
        row[0] = base_arena_printf(&a, "%s", jstr(m, "Name"));
        row[1] = base_arena_printf(&a, strchr(jstr(m, "Addr"), ':') ? "[%s]:%lld" : "%s:%lld",
                                   jstr(m, "Addr"),
                                   (long long)json_integer_value(json_object_get(m, "Port")));
        row[2] = base_arena_printf(&a, "%s", status_name(m));
        if (detailed) {
            size_t nt = json_object_size(tags), k = 0;
            const char **keys = base_arena_alloc(&a, (nt + 1) * sizeof *keys);
            const char *key;
            json_t *v;
            json_object_foreach(tags, key, v) keys[k++] = key;
            qsort(keys, k, sizeof *keys, key_cmp);
            struct base_buf b;
            base_buf_init(&b);
            for (size_t t = 0; t < k; t++)
                base_buf_printf(&b, "%s%s=%s", t ? "," : "", keys[t], jstr(tags, keys[t]));
            row[3] = base_arena_printf(&a, "%.*s", (int)b.len, (const char *)b.data);
            base_buf_free(&b);
            continue;
        }
        const char *role = jstr(tags, "role");
        bool server = strcmp(role, "consul") == 0, client = strcmp(role, "node") == 0;
        const char *build = jstr(tags, "build");
        row[3] = server ? "server" : client ? "client" : "unknown";
        if (!server && !client) {
            for (size_t k = 4; k < 9; k++)
                row[k] = "";
            continue;
        }
        row[4] = base_arena_printf(&a, "%.*s", (int)strcspn(build, ":"), build);
        row[5] = base_arena_printf(&a, "%s", jstr(tags, "vsn"));
        row[6] = base_arena_printf(&a, "%s", jstr(tags, "dc"));
        row[7] = "default";
        row[8] = server ? "<all>" : "<default>";
    }
    columns(rows, kept + 1, n_cols);
    base_arena_close(&a);
    base_free(ms);
    json_decref(arr);
    return status_re && kept == 0 ? 2 : 0; /* consul members: nothing matched -status */
}

static int cmd_force_leave(struct cli *c, char **argv, size_t argc)
{
    static const char usage[] = "usage: herald force-leave [-prune] [-wan] NODE";
    bool prune = false, wan = false;
    const char *node = NULL;
    for (size_t i = 0; i < argc; i++) {
        const char *a = argv[i][0] == '-' && argv[i][1] == '-' ? argv[i] + 1 : argv[i];
        if (strcmp(a, "-prune") == 0)
            prune = true;
        else if (strcmp(a, "-wan") == 0)
            wan = true;
        else if (a[0] != '-' && !node)
            node = a;
        else
            return fail("%s", usage);
    }
    if (!node)
        return fail("%s", usage);
    const char *q = prune && wan ? "prune=1&wan=1" : prune ? "prune=1" : wan ? "wan=1" : NULL;
    return call_ok_at(c, "PUT", "/v1/agent/force-leave/", node, q, NULL, 0);
}

/* consul maint: node or service maintenance mode through the agent's API. */
static int cmd_maint(struct cli *c, char **argv, size_t argc)
{
    static const char usage[] = "usage: herald maint -enable|-disable [-service ID] [-reason R]";
    int enable = -1;
    const char *service = NULL, *reason = NULL;
    for (size_t i = 0; i < argc; i++) {
        const char *a = argv[i][0] == '-' && argv[i][1] == '-' ? argv[i] + 1 : argv[i];
        const char *eq = strchr(a, '=');
        size_t klen = eq ? (size_t)(eq - a) : strlen(a);
        if (strcmp(a, "-enable") == 0 && enable < 0)
            enable = 1;
        else if (strcmp(a, "-disable") == 0 && enable < 0)
            enable = 0;
        else if ((klen == 8 && strncmp(a, "-service", 8) == 0) ||
                 (klen == 7 && strncmp(a, "-reason", 7) == 0)) {
            const char *v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
            if (!v)
                return fail("%s", usage);
            if (klen == 8)
                service = v;
            else
                reason = v;
        } else
            return fail("%s", usage);
    }
    if (enable < 0 || (service && !*service) || (reason && !enable))
        return fail("%s", usage);
    struct base_buf q;
    base_buf_init(&q);
    base_buf_printf(&q, "enable=%s", enable ? "true" : "false");
    if (reason) {
        base_buf_printf(&q, "&reason=");
        url_path_escape(&q, reason);
    }
    base_buf_append(&q, "", 1);
    int rc = service
                 ? call_ok_at(c, "PUT", "/v1/agent/service/maintenance/", service,
                              (const char *)q.data, NULL, 0)
                 : call_ok_at(c, "PUT", "/v1/agent/maintenance", "", (const char *)q.data, NULL, 0);
    base_buf_free(&q);
    if (!rc)
        printf("%s maintenance mode %s\n", service ? "Service" : "Node",
               enable ? "enabled" : "disabled");
    return rc;
}

static int cmd_services(struct cli *c, char **argv, size_t argc)
{
    if (argc < 1)
        return fail("usage: herald services register FILE.json | -name N ... | deregister ID");
    if (strcmp(argv[0], "deregister") == 0) {
        if (argc != 2)
            return fail("usage: herald services deregister ID");
        const char *id = argv[1];
        if (strncmp(id, "-id=", 4) == 0)
            id += 4;
        int rc = call_ok_at(c, "PUT", "/v1/agent/service/deregister/", id, NULL, NULL, 0);
        if (rc)
            return rc;
        printf("Deregistered service: %s\n", id);
        return 0;
    }
    if (strcmp(argv[0], "register") != 0)
        return fail("unknown services subcommand \"%s\"", argv[0]);

    json_t *def = NULL;
    if (argc == 2 && argv[1][0] != '-') {
        json_error_t jerr;
        json_t *file = json_load_file(argv[1], JSON_REJECT_DUPLICATES, &jerr);
        if (!file)
            return fail("%s: %s", argv[1], jerr.text);
        /* Accept {"service": {...}} (Consul's service file) or the definition itself. */
        json_t *inner = json_object_get(file, "service");
        if (!inner)
            inner = json_object_get(file, "Service");
        def = json_incref(inner ? inner : file);
        json_decref(file);
    } else {
        def = json_object();
        json_t *tags = json_array();
        for (size_t i = 1; i < argc; i++) {
            const char *f = argv[i];
            if (f[0] != '-')
                return fail("unexpected argument \"%s\"", f);
            f += f[1] == '-' ? 2 : 1;
            const char *eq = strchr(f, '=');
            char name[32];
            size_t n = eq ? (size_t)(eq - f) : strlen(f);
            if (n >= sizeof name)
                return fail("unknown flag -%s", f);
            memcpy(name, f, n);
            name[n] = '\0';
            const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!val)
                return fail("flag -%s needs a value", name);
            if (strcmp(name, "name") == 0)
                json_object_set_new(def, "Name", json_string(val));
            else if (strcmp(name, "id") == 0)
                json_object_set_new(def, "ID", json_string(val));
            else if (strcmp(name, "address") == 0)
                json_object_set_new(def, "Address", json_string(val));
            else if (strcmp(name, "tag") == 0)
                json_array_append_new(tags, json_string(val));
            else if (strcmp(name, "port") == 0) {
                uint64_t p;
                if (base_u64_parse(val, &p) || p > 65535) {
                    json_decref(tags);
                    json_decref(def);
                    return fail("invalid port \"%s\"", val);
                }
                json_object_set_new(def, "Port", json_integer((json_int_t)p));
            } else {
                json_decref(tags);
                json_decref(def);
                return fail("unknown flag -%s", name);
            }
        }
        json_object_set_new(def, "Tags", tags);
    }
    char *body = json_dumps(def, JSON_COMPACT);
    const char *name = jstr(def, "Name");
    char shown[256];
    snprintf(shown, sizeof shown, "%s", *name ? name : jstr(def, "name"));
    json_decref(def);
    int rc = call_ok(c, "PUT", "/v1/agent/service/register", body, strlen(body));
    free(body);
    if (rc)
        return rc;
    printf("Registered service: %s\n", shown);
    return 0;
}

static int cmd_catalog(struct cli *c, char **argv, size_t argc)
{
    int rc;
    if (argc >= 1 && strcmp(argv[0], "services") == 0) {
        json_t *o = call_json(c, "/v1/catalog/services", &rc);
        const char *k;
        json_t *v;
        if (!o)
            return rc;
        json_object_foreach(o, k, v) printf("%s\n", k);
        json_decref(o);
        return 0;
    }
    if (argc >= 1 && strcmp(argv[0], "nodes") == 0) {
        json_t *arr = call_json(c, "/v1/catalog/nodes", &rc);
        size_t i;
        json_t *n;
        if (!arr)
            return rc;
        printf("%-20s %-8s %-16s %s\n", "Node", "ID", "Address", "DC");
        json_array_foreach(arr, i, n)
            printf("%-20s %-8.8s %-16s %s\n", jstr(n, "Node"), jstr(n, "ID"), jstr(n, "Address"),
                   jstr(n, "Datacenter"));
        json_decref(arr);
        return 0;
    }
    if (argc == 2 && strcmp(argv[0], "service") == 0) {
        char *path = path_with("/v1/catalog/service/", argv[1], NULL);
        json_t *arr = call_json(c, path, &rc);
        base_free(path);
        size_t i;
        json_t *s;
        if (!arr)
            return rc;
        printf("%-20s %-20s %-16s %-6s %s\n", "Node", "ServiceID", "Address", "Port", "Tags");
        json_array_foreach(arr, i, s)
        {
            const char *addr = jstr(s, "ServiceAddress");
            char tags[512] = "";
            size_t j;
            json_t *t;
            json_array_foreach(json_object_get(s, "ServiceTags"), j, t)
            {
                if (j)
                    strncat(tags, ",", sizeof tags - strlen(tags) - 1);
                strncat(tags, json_string_value(t), sizeof tags - strlen(tags) - 1);
            }
            printf("%-20s %-20s %-16s %-6lld %s\n", jstr(s, "Node"), jstr(s, "ServiceID"),
                   *addr ? addr : jstr(s, "Address"),
                   (long long)json_integer_value(json_object_get(s, "ServicePort")), tags);
        }
        json_decref(arr);
        return 0;
    }
    return fail("usage: herald catalog services | nodes | service NAME");
}

static char *kv_path(const char *key, const char *query)
{
    return path_with("/v1/kv/", key, query);
}

static int kv_put(struct cli *c, const char *key, const void *val, size_t len, uint64_t flags)
{
    char q[40];
    snprintf(q, sizeof q, "flags=%llu", (unsigned long long)flags);
    return call_ok_at(c, "PUT", "/v1/kv/", key, flags ? q : NULL, val, len);
}

static int cmd_kv(struct cli *c, char **argv, size_t argc)
{
    struct http_client_resp r;
    int rc;

    if (argc == 2 && strcmp(argv[0], "get") == 0) {
        char *path = kv_path(argv[1], "raw");
        rc = call(c, "GET", path, NULL, 0, &r, true);
        base_free(path);
        if (rc)
            return rc;
        if (r.status == 404) {
            http_client_resp_free(&r);
            fprintf(stderr, "Error! No key exists at: %s\n", argv[1]);
            return 1;
        }
        fwrite(r.body, 1, r.body_len, stdout);
        fputc('\n', stdout);
        http_client_resp_free(&r);
        return 0;
    }
    if ((argc == 3 || argc == 2) && strcmp(argv[0], "put") == 0) {
        const char *val = argc == 3 ? argv[2] : "";
        if ((rc = kv_put(c, argv[1], val, strlen(val), 0)))
            return rc;
        printf("Success! Data written to: %s\n", argv[1]);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[0], "delete") == 0) {
        bool recurse = false;
        const char *key = NULL;
        for (size_t i = 1; i < argc; i++) {
            if (strcmp(argv[i], "-recurse") == 0 || strcmp(argv[i], "--recurse") == 0)
                recurse = true;
            else if (!key)
                key = argv[i];
            else
                return fail("usage: herald kv delete [-recurse] KEY");
        }
        if (!key)
            key = "";
        if (!*key && !recurse)
            return fail("usage: herald kv delete [-recurse] KEY");
        rc = call_ok_at(c, "DELETE", "/v1/kv/", key, recurse ? "recurse" : NULL, NULL, 0);
        if (rc)
            return rc;
        if (recurse)
            printf("Success! Deleted keys with prefix: %s\n", key);
        else
            printf("Success! Deleted key: %s\n", key);
        return 0;
    }
    if (argc <= 2 && argc >= 1 && strcmp(argv[0], "export") == 0) {
        char *path = kv_path(argc == 2 ? argv[1] : "", "recurse");
        rc = call(c, "GET", path, NULL, 0, &r, true);
        base_free(path);
        if (rc)
            return rc;
        json_t *out = json_array();
        if (r.status != 404) {
            json_t *arr = json_loadb(r.body, r.body_len, 0, NULL);
            size_t i;
            json_t *e;
            json_array_foreach(arr, i, e)
            {
                json_t *val = json_object_get(e, "Value");
                json_array_append_new(
                    out, json_pack("{s:s,s:I,s:s}", "key", jstr(e, "Key"), "flags",
                                   json_integer_value(json_object_get(e, "Flags")), "value",
                                   json_is_string(val) ? json_string_value(val) : ""));
            }
            json_decref(arr);
        }
        http_client_resp_free(&r);
        char *text = json_dumps(out, JSON_INDENT(2));
        puts(text);
        free(text);
        json_decref(out);
        return 0;
    }
    if (argc == 2 && strcmp(argv[0], "import") == 0) {
        json_error_t jerr;
        json_t *arr = strcmp(argv[1], "-") == 0 ? json_loadf(stdin, 0, &jerr)
                                                : json_load_file(argv[1], 0, &jerr);
        size_t i;
        json_t *e;
        if (!arr || !json_is_array(arr)) {
            json_decref(arr);
            return fail("%s: expected a JSON array as written by kv export", argv[1]);
        }
        json_array_foreach(arr, i, e)
        {
            struct base_arena ar;
            uint8_t *val;
            size_t n;
            base_arena_init(&ar);
            if (!json_is_string(json_object_get(e, "key")) ||
                base_b64_decode(&ar, jstr(e, "value"), &val, &n)) {
                base_arena_close(&ar);
                json_decref(arr);
                return fail("entry %zu: needs \"key\" and base64 \"value\"", i);
            }
            rc = kv_put(c, jstr(e, "key"), val, n,
                        (uint64_t)json_integer_value(json_object_get(e, "flags")));
            base_arena_close(&ar);
            if (rc) {
                json_decref(arr);
                return rc;
            }
            printf("Imported: %s\n", jstr(e, "key"));
        }
        json_decref(arr);
        return 0;
    }
    return fail("usage: herald kv get KEY | put KEY VALUE | delete [-recurse] KEY | export "
                "[PREFIX] | import FILE");
}

static int cmd_leave(struct cli *c, size_t argc)
{
    if (argc)
        return fail("usage: herald leave");
    if (call_ok(c, "PUT", "/v1/agent/leave", NULL, 0))
        return 1;
    printf("Graceful leave complete\n");
    return 0;
}

static int cmd_join(struct cli *c, char **argv, size_t argc)
{
    if (argc < 1)
        return fail("usage: herald join ADDR...");
    for (size_t i = 0; i < argc; i++) {
        int rc = call_ok_at(c, "PUT", "/v1/agent/join/", argv[i], NULL, NULL, 0);
        if (rc)
            return rc;
    }
    printf("Successfully joined cluster by contacting %zu nodes.\n", argc);
    return 0;
}

/* `herald event`, as `consul event`: fires a user event through the agent and prints its ID.
 * Flags come first (Go's flag package stops at the first argument that is not one); the one
 * argument after them is the payload. */
static int cmd_event(struct cli *c, char **argv, size_t argc)
{
    static const char usage[] =
        "usage: herald event -name NAME [-node RE] [-service RE] [-tag RE] [PAYLOAD]";
    static const char *const names[] = {"name", "node", "service", "tag"};
    const char *val[4] = {"", "", "", ""};
    const char *payload = NULL;
    size_t i = 0;

    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i] + (argv[i][1] == '-' ? 2 : 1);
        if (!*a && argv[i][1] == '-') { /* "--": the flags end */
            i++;
            break;
        }
        size_t k, n = strcspn(a, "=");
        for (k = 0; k < BASE_ARRAY_LEN(names); k++)
            if (strlen(names[k]) == n && strncmp(a, names[k], n) == 0)
                break;
        if (k == BASE_ARRAY_LEN(names))
            return fail("flag provided but not defined: %s (%s)", argv[i], usage);
        if (a[n] == '=')
            val[k] = a + n + 1;
        else if (i + 1 < argc)
            val[k] = argv[++i];
        else
            return fail("flag needs an argument: %s", argv[i]);
    }
    if (i + 1 < argc)
        return fail("Too many command line arguments. (%s)", usage);
    if (i < argc)
        payload = argv[i];
    if (!*val[0])
        return fail("Event name must be specified (%s)", usage);
    if (*val[3] && !*val[2])
        return fail("Cannot provide tag filter without service filter.");

    struct base_buf q;
    base_buf_init(&q);
    for (size_t k = 1; k < BASE_ARRAY_LEN(names); k++) {
        if (!*val[k])
            continue;
        base_buf_printf(&q, "%s%s=", q.len ? "&" : "", names[k]);
        url_path_escape(&q, val[k]);
    }
    base_buf_append(&q, "", 1);
    char *path = path_with("/v1/event/fire/", val[0], q.len > 1 ? (const char *)q.data : NULL);
    base_buf_free(&q);
    struct http_client_resp r;
    int rc = call(c, "PUT", path, payload, payload ? strlen(payload) : 0, &r, false);
    base_free(path);
    if (rc)
        return rc;
    json_error_t jerr;
    json_t *ev = json_loadb(r.body, r.body_len, 0, &jerr);
    http_client_resp_free(&r);
    if (!ev || !*jstr(ev, "ID")) {
        json_decref(ev);
        return fail("bad JSON from agent: %s", ev ? "no event ID" : jerr.text);
    }
    printf("Event ID: %s\n", jstr(ev, "ID"));
    json_decref(ev);
    return 0;
}

static int cmd_operator(struct cli *c, char **argv, size_t argc)
{
    int rc;
    if (argc >= 2 && strcmp(argv[0], "raft") == 0 && strcmp(argv[1], "list-peers") == 0) {
        json_t *cfg = call_json(c, "/v1/operator/raft/configuration", &rc);
        size_t i;
        json_t *s;
        if (!cfg)
            return rc;
        printf("%-20s %-22s %-22s %-10s %s\n", "Node", "ID", "Address", "State", "Voter");
        json_array_foreach(json_object_get(cfg, "Servers"), i, s)
        {
            printf("%-20s %-22s %-22s %-10s %s\n", jstr(s, "Node"), jstr(s, "ID"),
                   jstr(s, "Address"),
                   json_is_true(json_object_get(s, "Leader")) ? "leader" : "follower",
                   json_is_true(json_object_get(s, "Voter")) ? "true" : "false");
        }
        json_decref(cfg);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[0], "raft") == 0 && strcmp(argv[1], "remove-peer") == 0) {
        const char *addr = NULL, *id = NULL;
        for (size_t i = 2; i < argc; i++) {
            const char *f = argv[i];
            if (strncmp(f, "-address=", 9) == 0)
                addr = f + 9;
            else if (strcmp(f, "-address") == 0 && i + 1 < argc)
                addr = argv[++i];
            else if (strncmp(f, "-id=", 4) == 0)
                id = f + 4;
            else if (strcmp(f, "-id") == 0 && i + 1 < argc)
                id = argv[++i];
            else
                return fail("usage: herald operator raft remove-peer -address IP:PORT | -id ID");
        }
        if (!addr && !id)
            return fail("usage: herald operator raft remove-peer -address IP:PORT | -id ID");
        rc = call_ok_at(c, "DELETE",
                        addr ? "/v1/operator/raft/peer?address=" : "/v1/operator/raft/peer?id=",
                        addr ? addr : id, NULL, NULL, 0);
        if (rc)
            return rc;
        printf("Removed peer with %s \"%s\"\n", addr ? "address" : "id", addr ? addr : id);
        return 0;
    }
    return fail("usage: herald operator raft list-peers | remove-peer -address IP:PORT");
}

/* ---- snapshot -------------------------------------------------------------------------- */

/* Reads a whole backup file (at most ZONE_BACKUP_MAX bytes) into *out (base_malloc'd). */
static int read_backup_file(const char *path, char **out, size_t *len)
{
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail("%s: %s", path, strerror(errno));
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        return fail("%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(f);
        return fail("%s: %s", path, S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file");
    }
    if ((uint64_t)st.st_size > ZONE_BACKUP_MAX) {
        fclose(f);
        return fail("%s: %lld bytes, over the %zu bytes a restore accepts", path,
                    (long long)st.st_size, ZONE_BACKUP_MAX);
    }
    char *buf = base_malloc((size_t)st.st_size + 1);
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    int e = ferror(f) ? errno : 0;
    fclose(f);
    if (e || n != (size_t)st.st_size) {
        base_free(buf);
        return fail("%s: %s", path, e ? strerror(e) : "changed while being read");
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Writes data to path.tmp, syncs it, then renames it over path. */
static int write_file_atomic(const char *path, const void *data, size_t len)
{
    size_t n = strlen(path);
    char *tmp = base_malloc(n + 5);
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    int e = 0;
    if (!f)
        e = errno;
    else if (fwrite(data, 1, len, f) != len || fflush(f) != 0 || fsync(fileno(f)) != 0)
        e = errno ? errno : EIO;
    if (f && fclose(f) != 0 && !e)
        e = errno;
    if (!e && rename(tmp, path) != 0)
        e = errno;
    if (e && f)
        unlink(tmp);
    base_free(tmp);
    if (e)
        return fail("%s: %s", path, strerror(e));
    return 0;
}

static int snapshot_save(struct cli *c, const char *path, bool stale)
{
    struct http_client_resp r;
    struct zone_snapshot_info info;
    char err[BASE_ERRMSG_LEN];
    int rc = call_timeout(c, "GET", stale ? "/v1/snapshot?stale" : "/v1/snapshot", NULL, 0, &r,
                          false, CLI_SNAPSHOT_TIMEOUT_MS);
    if (rc)
        return rc;
    /* verified before it replaces anything on disk */
    if (zone_snapshot_check(r.body, r.body_len, &info, err))
        rc = fail("snapshot from the agent failed verification: %s", err);
    else if (!(rc = write_file_atomic(path, r.body, r.body_len)))
        printf("Saved and verified snapshot to index %" PRIu64 "\n", info.index);
    http_client_resp_free(&r);
    return rc;
}

static int snapshot_restore(struct cli *c, const char *path)
{
    struct http_client_resp r;
    char err[BASE_ERRMSG_LEN];
    char *buf;
    size_t len;
    int rc = read_backup_file(path, &buf, &len);
    if (rc)
        return rc;
    if (zone_snapshot_check(buf, len, NULL, err)) {
        base_free(buf);
        return fail("%s: %s", path, err);
    }
    rc = call_timeout(c, "PUT", "/v1/snapshot", buf, len, &r, false, CLI_SNAPSHOT_TIMEOUT_MS);
    base_free(buf);
    if (rc)
        return rc;
    http_client_resp_free(&r);
    printf("Restored snapshot\n");
    return 0;
}

/* Offline: what the file holds, or why it is no snapshot. */
static int snapshot_inspect(const char *path)
{
    struct zone_snapshot_info info;
    char err[BASE_ERRMSG_LEN];
    char *buf;
    size_t len;
    int rc = read_backup_file(path, &buf, &len);
    if (rc)
        return rc;
    rc = zone_snapshot_check(buf, len, &info, err);
    base_free(buf);
    if (rc)
        return fail("%s: %s", path, err);
    printf("%-10s %zu\n", "Size", len);
    printf("%-10s %" PRIu32 "\n", "Version", info.version);
    printf("%-10s %" PRIu64 "\n", "Index", info.index);
    printf("%-10s %" PRIu64 "\n", "Applied", info.applied);
    printf("%-10s %" PRIu64 "\n", "Nodes", info.rows[ZONE_TABLE_NODES]);
    printf("%-10s %" PRIu64 "\n", "Services", info.rows[ZONE_TABLE_SERVICES]);
    printf("%-10s %" PRIu64 "\n", "Checks", info.rows[ZONE_TABLE_CHECKS]);
    printf("%-10s %" PRIu64 "\n", "KV", info.rows[ZONE_TABLE_KV]);
    printf("%-10s %" PRIu64 "\n", "Sessions", info.rows[ZONE_TABLE_SESSIONS]);
    return 0;
}

static int cmd_snapshot(struct cli *c, char **argv, size_t argc)
{
    static const char usage[] = "usage: herald snapshot save [-stale] FILE | restore FILE | "
                                "inspect FILE";
    bool stale = false;
    const char *file = NULL;
    if (argc < 1)
        return fail("%s", usage);
    for (size_t i = 1; i < argc; i++) {
        if (strcmp(argv[0], "save") == 0 &&
            (strcmp(argv[i], "-stale") == 0 || strcmp(argv[i], "--stale") == 0))
            stale = true;
        else if (!file && (argv[i][0] != '-' || !argv[i][1]))
            file = argv[i];
        else
            return fail("%s", usage);
    }
    if (!file)
        return fail("%s", usage);
    if (strcmp(argv[0], "save") == 0)
        return snapshot_save(c, file, stale);
    if (strcmp(argv[0], "restore") == 0)
        return snapshot_restore(c, file);
    if (strcmp(argv[0], "inspect") == 0)
        return snapshot_inspect(file);
    return fail("%s", usage);
}

/* `herald keyring`, as `consul keyring`: one of -list, -list-primary, -install K, -use K,
 * -remove K. */
static int cmd_keyring(struct cli *c, char **argv, size_t argc)
{
    static const char usage[] =
        "usage: herald keyring [-list | -list-primary | -install KEY | -use KEY | -remove KEY]";
    static const char *const flags[] = {"-list", "-install", "-use", "-remove", "-list-primary"};
    static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "GET"};
    static const char *const say[] = {
        "Gathering installed encryption keys...", "Installing new gossip encryption key...",
        "Changing primary gossip encryption key...", "Removing gossip encryption key...",
        "Gathering installed encryption keys..."};
    int op = -1;
    const char *key = NULL;
    for (size_t i = 0; i < argc; i++) {
        const char *a = argv[i][0] == '-' && argv[i][1] == '-' ? argv[i] + 1 : argv[i];
        int f = -1;
        for (int k = 0; k < 5; k++) {
            size_t n = strlen(flags[k]);
            if (strncmp(a, flags[k], n) == 0 && (a[n] == 0 || a[n] == '='))
                f = k;
        }
        if (f < 0 || op >= 0)
            return fail(op >= 0 ? "Only a single action is allowed" : "%s", usage);
        op = f;
        if (f == 0 || f == 4) {
            if (strchr(a, '='))
                return fail("%s", usage);
            continue;
        }
        const char *eq = strchr(a, '=');
        if (eq)
            key = eq + 1;
        else if (i + 1 < argc)
            key = argv[++i];
        else
            return fail("%s", usage);
    }
    if (op < 0)
        return fail("%s", usage);
    printf("==> %s\n", say[op]);
    fflush(stdout);
    char *body = NULL;
    if (key) {
        json_t *o = json_pack("{s:s}", "Key", key);
        body = json_dumps(o, JSON_COMPACT);
        json_decref(o);
    }
    struct http_client_resp r;
    char err[BASE_ERRMSG_LEN];
    int rc = http_client_do(c->host, c->port, methods[op], "/v1/operator/keyring", body,
                            body ? strlen(body) : 0, CLI_TIMEOUT_MS, &r, err);
    free(body);
    if (rc)
        return fail("%s", err);
    if (r.status >= 400) {
        size_t n = r.body_len;
        while (n && (r.body[n - 1] == '\n' || r.body[n - 1] == '\r'))
            n--;
        fprintf(stderr, "error: Unexpected response code: %d (%.*s)\n", r.status, (int)n, r.body);
        http_client_resp_free(&r);
        return 1;
    }
    if (op != 0 && op != 4) {
        http_client_resp_free(&r);
        return 0;
    }
    json_error_t jerr;
    json_t *arr = json_loadb(r.body, r.body_len, 0, &jerr);
    http_client_resp_free(&r);
    if (!json_is_array(arr)) {
        json_decref(arr);
        return fail("bad JSON from agent");
    }
    size_t i;
    json_t *pool;
    json_array_foreach(arr, i, pool)
    {
        json_t *keys = json_object_get(pool, op == 4 ? "PrimaryKeys" : "Keys");
        long long total = (long long)json_integer_value(json_object_get(pool, "NumNodes"));
        const char *seg = jstr(pool, "Segment");
        if (json_is_true(json_object_get(pool, "WAN")))
            printf("\nWAN:\n");
        else if (*seg)
            printf("\n%s (LAN) [%s]:\n", jstr(pool, "Datacenter"), seg);
        else
            printf("\n%s (LAN):\n", jstr(pool, "Datacenter"));
        size_t nk = json_object_size(keys), k = 0;
        const char **names = base_malloc((nk + 1) * sizeof *names);
        const char *name;
        json_t *v;
        json_object_foreach(keys, name, v) names[k++] = name;
        qsort(names, k, sizeof *names, key_cmp);
        for (size_t j = 0; j < k; j++)
            printf("  %s [%lld/%lld]\n", names[j],
                   (long long)json_integer_value(json_object_get(keys, names[j])), total);
        base_free(names);
    }
    json_decref(arr);
    return 0;
}

/* ---- herald lock and herald watch: blocking queries from the CLI ---------------------------- */

/* Consul's api package marks the keys of its locks and semaphores with these flags, so a lock
 * and a semaphore (or a plain key) on one prefix are told apart. */
#define LOCK_FLAG_VALUE      0x2ddccbc058a50c18ULL
#define SEMAPHORE_FLAG_VALUE 0xe0f69a2baa414de0ULL
/* Consul's DefaultLockSessionTTL; renewed every half of it */
#define LOCK_SESSION_TTL_S 15
/* the wait of one blocking query of the lock loops: the bound on how late a signal or the
 * -timeout is seen while acquiring, and on how long the monitor thread takes to stop */
#define LOCK_STEP_WAIT "500ms"
/* after an acquire refused by the lock-delay */
#define LOCK_RETRY_MS 1000
/* SIGTERM, then SIGKILL after this */
#define LOCK_KILL_GRACE_MS 5000
/* between failed queries of the monitor (Consul's DefaultMonitorRetryTime): -monitor-retry 3
 * rides out a leader election of several seconds */
#define LOCK_MONITOR_RETRY_MS 2000
/* how often the holding loop looks at the child, the signals and the monitor */
#define LOCK_CHILD_POLL_MS 20

static volatile sig_atomic_t cli_signal;

static void cli_on_signal(int sig)
{
    cli_signal = sig;
}

/* SIGINT, SIGTERM and SIGHUP set cli_signal, which the loops look at between calls. */
static void cli_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cli_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !cli_signal)
        ;
}

/* The X-Consul-Index of an answer (0 without one). */
static uint64_t resp_index(const struct http_client_resp *r)
{
    static const char name[] = "x-consul-index:";
    for (const char *p = r->headers; p && *p;) {
        if (strncasecmp(p, name, sizeof name - 1) == 0) {
            uint64_t v = strtoull(p + sizeof name - 1, NULL, 10);
            return v;
        }
        const char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : NULL;
    }
    return 0;
}

/* KV Flags are unsigned 64-bit, beyond jansson's integers: the answer's "Flags":<digits> become
 * "Flags":"<digits>" before decoding (inside a JSON string the quotes would be escaped, so only
 * the key matches). base_malloc'd, NUL-terminated; *len its length. */
static char *quote_flags(const char *body, size_t n, size_t *len)
{
    static const char key[] = "\"Flags\":";
    struct base_buf b;
    base_buf_init(&b);
    size_t i = 0;
    while (i < n) {
        const char *hit = memmem(body + i, n - i, key, sizeof key - 1);
        if (!hit) {
            base_buf_append(&b, body + i, n - i);
            break;
        }
        size_t at = (size_t)(hit - body) + sizeof key - 1, end = at;
        base_buf_append(&b, body + i, at - i);
        while (end < n && body[end] >= '0' && body[end] <= '9')
            end++;
        if (end > at) {
            base_buf_append(&b, "\"", 1);
            base_buf_append(&b, body + at, end - at);
            base_buf_append(&b, "\"", 1);
        }
        i = end;
    }
    *len = b.len;
    base_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* A GET of path (which may hold a query already) as a blocking query on *index (none when 0)
 * waiting at most `wait`. *out: the JSON answer, NULL on 404; *index: the answer's index.
 * Returns 0, or 1 (printed) on a transport error or a status other than 200/404. */
static int get_blocking(struct cli *c, const char *path, uint64_t *index, const char *wait,
                        json_t **out)
{
    char target[2048];
    uint64_t wait_ms = 0;
    if (base_duration_parse_strict(wait, &wait_ms))
        wait_ms = 0;
    if (*index)
        snprintf(target, sizeof target, "%s%cindex=%" PRIu64 "&wait=%s", path,
                 strchr(path, '?') ? '&' : '?', *index, wait);
    else
        snprintf(target, sizeof target, "%s", path);
    struct http_client_resp r;
    *out = NULL;
    /* the server adds up to wait/16 of jitter */
    if (call_timeout(c, "GET", target, NULL, 0, &r, true,
                     (unsigned)(wait_ms + wait_ms / 8 + CLI_TIMEOUT_MS)))
        return 1;
    uint64_t got = resp_index(&r);
    /* as Consul's clients: an index that goes backwards restarts the wait from 0 */
    *index = got < *index ? 0 : got;
    if (r.status == 200) {
        json_error_t jerr;
        size_t qlen;
        char *q = quote_flags(r.body, r.body_len, &qlen);
        *out = json_loadb(q, qlen, JSON_DECODE_ANY, &jerr);
        base_free(q);
        if (!*out) {
            http_client_resp_free(&r);
            return fail("bad JSON from agent: %s", jerr.text);
        }
    }
    http_client_resp_free(&r);
    return 0;
}

/* A KV write answering JSON true/false: 1 true, 0 false, -1 (printed) on an error. */
static int req_bool(struct cli *c, const char *method, const char *target, const void *body,
                    size_t len)
{
    struct http_client_resp r;
    if (call(c, method, target, body, len, &r, false))
        return -1;
    int v = r.body_len >= 4 && strncmp(r.body, "true", 4) == 0;
    http_client_resp_free(&r);
    return v;
}

struct lock_run {
    struct cli *c;
    const char *prefix;
    unsigned limit;      /* 1: a lock on PREFIX/.lock; more: a semaphore of that many slots */
    const char *name;    /* session name */
    char sid[64];        /* the session */
    char *lock_key;      /* PREFIX/.lock */
    char *contender_key; /* PREFIX/<session> (semaphore) */
    uint64_t next_renew; /* base_now_ms */
    bool verbose;
    unsigned monitor_retry;
};

static void lk_say(struct lock_run *l, const char *msg)
{
    if (l->verbose)
        fprintf(stderr, "%s\n", msg);
}

static int lk_session_create(struct lock_run *l)
{
    json_t *body = json_pack("{s:s, s:s}", "Name", l->name, "TTL", "15s");
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct http_client_resp r;
    int rc = call(l->c, "PUT", "/v1/session/create", text, strlen(text), &r, false);
    free(text);
    if (rc)
        return rc;
    json_error_t jerr;
    json_t *v = json_loadb(r.body, r.body_len, 0, &jerr);
    http_client_resp_free(&r);
    const char *id = v ? jstr(v, "ID") : "";
    if (!*id || strlen(id) >= sizeof l->sid) {
        json_decref(v);
        return fail("bad JSON from agent: %s", v ? "no session ID" : jerr.text);
    }
    snprintf(l->sid, sizeof l->sid, "%s", id);
    json_decref(v);
    l->next_renew = base_now_ms() + LOCK_SESSION_TTL_S * 1000 / 2;
    return 0;
}

/* Renews the session when due. Returns 0 (renewed or not due), 1 when the session is gone. A
 * failed call is retried at the next step, up to monitor_retry times in a row. */
static int lk_renew(struct lock_run *l, unsigned *errors)
{
    if (base_now_ms() < l->next_renew)
        return 0;
    char *path = path_with("/v1/session/renew/", l->sid, NULL);
    struct http_client_resp r;
    int rc = call(l->c, "PUT", path, NULL, 0, &r, true);
    base_free(path);
    if (rc) {
        if (++*errors > l->monitor_retry)
            return 1;
        l->next_renew = base_now_ms() + 1000;
        return 0;
    }
    int status = r.status;
    http_client_resp_free(&r);
    if (status == 404)
        return 1;
    *errors = 0;
    l->next_renew = base_now_ms() + LOCK_SESSION_TTL_S * 1000 / 2;
    return 0;
}

/* A KV entry's Flags (a string: quote_flags). */
static uint64_t kv_flags(json_t *e)
{
    return strtoull(jstr(e, "Flags"), NULL, 10);
}

/* The semaphore's PREFIX/.lock value: {"Limit":N,"Holders":{"<session>":true}}; a new one
 * when e is NULL. NULL (printed) when it does not decode. */
static json_t *sem_decode(json_t *e, unsigned limit)
{
    if (!e)
        return json_pack("{s:I, s:{}}", "Limit", (json_int_t)limit, "Holders");
    const char *v64 = jstr(e, "Value");
    struct base_arena a;
    base_arena_init(&a);
    uint8_t *raw = NULL;
    size_t n = 0;
    json_t *v = NULL;
    if (!base_b64_decode(&a, v64, &raw, &n))
        v = json_loadb((const char *)raw, n, 0, NULL);
    base_arena_close(&a);
    if (!v || !json_is_object(json_object_get(v, "Holders")) ||
        !json_is_integer(json_object_get(v, "Limit"))) {
        json_decref(v);
        fail("Failed to decode semaphore lock");
        return NULL;
    }
    return v;
}

/* The entry named key in a recursive KV answer (NULL when absent). */
static json_t *kv_find(json_t *arr, const char *key)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) if (strcmp(jstr(e, "Key"), key) == 0) return e;
    return NULL;
}

/* Drops the holders whose contender key no longer carries their session. */
static void sem_prune(json_t *sem, json_t *arr)
{
    json_t *holders = json_object_get(sem, "Holders");
    const char *h;
    json_t *v, *tmp;
    json_object_foreach_safe(holders, tmp, h, v)
    {
        bool alive = false;
        size_t i;
        json_t *e;
        json_array_foreach(arr, i, e) if (strcmp(jstr(e, "Session"), h) == 0) alive = true;
        if (!alive)
            json_object_del(holders, h);
    }
}

/* One step of acquiring: 0 acquired, 2 not yet (wait done), 1 error (printed). *index is the
 * blocking query's index across steps. */
static int lk_try(struct lock_run *l, uint64_t *index)
{
    json_t *ans = NULL;
    if (l->limit == 1) {
        char *path = path_with("/v1/kv/", l->lock_key, NULL);
        int rc = get_blocking(l->c, path, index, LOCK_STEP_WAIT, &ans);
        base_free(path);
        if (rc)
            return 1;
        json_t *e = ans ? json_array_get(ans, 0) : NULL;
        if (e && kv_flags(e) != LOCK_FLAG_VALUE) {
            json_decref(ans);
            return fail("Existing key does not match lock use");
        }
        bool held = e && *jstr(e, "Session") && strcmp(jstr(e, "Session"), l->sid) != 0;
        json_decref(ans);
        if (held)
            return 2;
        char q[128];
        snprintf(q, sizeof q, "acquire=%s&flags=%" PRIu64, l->sid, (uint64_t)LOCK_FLAG_VALUE);
        path = path_with("/v1/kv/", l->lock_key, q);
        int ok = req_bool(l->c, "PUT", path, NULL, 0);
        base_free(path);
        if (ok < 0)
            return 1;
        if (ok)
            return 0;
        /* refused: held meanwhile (the next blocking query waits for it), or the lock-delay
         * of a session invalidated while holding it (retry after a pause) */
        *index = 0;
        sleep_ms(LOCK_RETRY_MS);
        return 2;
    }
    char *path = path_with("/v1/kv/", l->prefix, "recurse");
    int rc = get_blocking(l->c, path, index, LOCK_STEP_WAIT, &ans);
    base_free(path);
    if (rc)
        return 1;
    json_t *e = ans ? kv_find(ans, l->lock_key) : NULL;
    if (e && kv_flags(e) != SEMAPHORE_FLAG_VALUE) {
        json_decref(ans);
        return fail("Existing key does not match semaphore use");
    }
    json_t *sem = sem_decode(e, l->limit);
    if (!sem) {
        json_decref(ans);
        return 1;
    }
    json_int_t lim = json_integer_value(json_object_get(sem, "Limit"));
    if (lim != (json_int_t)l->limit) {
        json_decref(sem);
        json_decref(ans);
        return fail("Semaphore limit conflict (lock: %lld, local: %u)", (long long)lim, l->limit);
    }
    sem_prune(sem, ans);
    json_t *holders = json_object_get(sem, "Holders");
    if (json_object_get(holders, l->sid)) {
        json_decref(sem);
        json_decref(ans);
        return 0;
    }
    if (json_object_size(holders) >= l->limit) {
        json_decref(sem);
        json_decref(ans);
        return 2;
    }
    json_object_set_new(holders, l->sid, json_true());
    char q[128];
    snprintf(q, sizeof q, "cas=%" PRIu64 "&flags=%" PRIu64,
             e ? (uint64_t)json_integer_value(json_object_get(e, "ModifyIndex")) : 0,
             (uint64_t)SEMAPHORE_FLAG_VALUE);
    json_decref(ans);
    char *text = json_dumps(sem, JSON_COMPACT);
    json_decref(sem);
    path = path_with("/v1/kv/", l->lock_key, q);
    int ok = req_bool(l->c, "PUT", path, text, strlen(text));
    base_free(path);
    free(text);
    if (ok < 0)
        return 1;
    if (ok)
        return 0;
    *index = 0; /* the CAS lost a race: read again at once */
    return 2;
}

/* One step of holding: a blocking query on what proves the lock held. 0 held, 1 lost, 2 the
 * query failed (the caller counts these). */
static int lk_check(struct lock_run *l, uint64_t *index)
{
    json_t *ans = NULL;
    bool held;
    if (l->limit == 1) {
        char *path = path_with("/v1/kv/", l->lock_key, NULL);
        int rc = get_blocking(l->c, path, index, LOCK_STEP_WAIT, &ans);
        base_free(path);
        if (rc)
            return 2;
        json_t *e = ans ? json_array_get(ans, 0) : NULL;
        held = e && strcmp(jstr(e, "Session"), l->sid) == 0;
    } else {
        char *path = path_with("/v1/kv/", l->prefix, "recurse");
        int rc = get_blocking(l->c, path, index, LOCK_STEP_WAIT, &ans);
        base_free(path);
        if (rc)
            return 2;
        json_t *e = ans ? kv_find(ans, l->lock_key) : NULL;
        json_t *mine = ans ? kv_find(ans, l->contender_key) : NULL;
        json_t *sem = e ? sem_decode(e, l->limit) : NULL;
        held = sem && json_object_get(json_object_get(sem, "Holders"), l->sid) && mine &&
               strcmp(jstr(mine, "Session"), l->sid) == 0;
        json_decref(sem);
    }
    json_decref(ans);
    return held ? 0 : 1;
}

/* DELETE PREFIX-key ?cas=<ModifyIndex of e>: removes it only if unchanged since read. */
static void lk_delete_cas(struct lock_run *l, const char *key, json_t *e)
{
    char q[64];
    snprintf(q, sizeof q, "cas=%" PRIu64,
             (uint64_t)json_integer_value(json_object_get(e, "ModifyIndex")));
    char *path = path_with("/v1/kv/", key, q);
    (void)req_bool(l->c, "DELETE", path, NULL, 0);
    base_free(path);
}

/* Gives the lock or the slot back and removes what is left unused (Consul's Destroy: the
 * lock key when free, the semaphore's .lock when it has no holder and no contender). Errors
 * are printed; the session's destruction releases whatever is left anyway. */
static void lk_release(struct lock_run *l, bool held)
{
    json_t *ans = NULL;
    uint64_t idx = 0;
    char q[160];
    char *path;
    if (l->limit == 1) {
        if (held) {
            snprintf(q, sizeof q, "release=%s&flags=%" PRIu64, l->sid, (uint64_t)LOCK_FLAG_VALUE);
            path = path_with("/v1/kv/", l->lock_key, q);
            (void)req_bool(l->c, "PUT", path, NULL, 0);
            base_free(path);
        }
        path = path_with("/v1/kv/", l->lock_key, NULL);
        int rc = get_blocking(l->c, path, &idx, LOCK_STEP_WAIT, &ans);
        base_free(path);
        json_t *e = !rc && ans ? json_array_get(ans, 0) : NULL;
        if (e && !*jstr(e, "Session") && kv_flags(e) == LOCK_FLAG_VALUE)
            lk_delete_cas(l, l->lock_key, e);
        json_decref(ans);
        return;
    }
    /* out of the holders (CAS, retried on a race), then the contender key goes */
    for (int tries = 0; held && tries < 8; tries++) {
        idx = 0;
        path = path_with("/v1/kv/", l->prefix, "recurse");
        int rc = get_blocking(l->c, path, &idx, LOCK_STEP_WAIT, &ans);
        base_free(path);
        json_t *e = !rc && ans ? kv_find(ans, l->lock_key) : NULL;
        json_t *sem = e && kv_flags(e) == SEMAPHORE_FLAG_VALUE ? sem_decode(e, l->limit) : NULL;
        if (!sem || !json_object_get(json_object_get(sem, "Holders"), l->sid)) {
            json_decref(sem);
            json_decref(ans);
            ans = NULL;
            break;
        }
        json_object_del(json_object_get(sem, "Holders"), l->sid);
        snprintf(q, sizeof q, "cas=%" PRIu64 "&flags=%" PRIu64,
                 (uint64_t)json_integer_value(json_object_get(e, "ModifyIndex")),
                 (uint64_t)SEMAPHORE_FLAG_VALUE);
        char *text = json_dumps(sem, JSON_COMPACT);
        json_decref(sem);
        json_decref(ans);
        ans = NULL;
        path = path_with("/v1/kv/", l->lock_key, q);
        int ok = req_bool(l->c, "PUT", path, text, strlen(text));
        base_free(path);
        free(text);
        if (ok != 0)
            break;
    }
    path = path_with("/v1/kv/", l->contender_key, NULL);
    (void)call_ok(l->c, "DELETE", path, NULL, 0);
    base_free(path);
    /* the .lock goes when no holder is left and nobody else contends */
    idx = 0;
    path = path_with("/v1/kv/", l->prefix, "recurse");
    int rc = get_blocking(l->c, path, &idx, LOCK_STEP_WAIT, &ans);
    base_free(path);
    json_t *e = !rc && ans ? kv_find(ans, l->lock_key) : NULL;
    if (e && kv_flags(e) == SEMAPHORE_FLAG_VALUE && json_array_size(ans) == 1) {
        json_t *sem = sem_decode(e, l->limit);
        if (sem) {
            sem_prune(sem, ans);
            if (json_object_size(json_object_get(sem, "Holders")) == 0)
                lk_delete_cas(l, l->lock_key, e);
        }
        json_decref(sem);
    }
    json_decref(ans);
}

/* The thread that watches a held lock: blocking queries (lk_check) until stop is set or the
 * lock is lost (lost set: the key released or taken, or monitor_retry failed queries in a
 * row). */
struct lk_monitor {
    struct lock_run *l;
    pthread_t thread;
    atomic_int stop;
    atomic_int lost;
};

static void *lk_monitor_main(void *arg)
{
    struct lk_monitor *m = arg;
    uint64_t index = 0;
    unsigned errors = 0;
    while (!atomic_load(&m->stop)) {
        int ck = lk_check(m->l, &index);
        if (atomic_load(&m->stop))
            break;
        if (ck == 2) {
            if (++errors > m->l->monitor_retry) {
                atomic_store(&m->lost, 1);
                break;
            }
            index = 0;
            sleep_ms(LOCK_MONITOR_RETRY_MS);
        } else if (ck == 1) {
            atomic_store(&m->lost, 1);
            break;
        } else {
            errors = 0;
        }
    }
    return NULL;
}

/* The child: its own process group (so a shell's children are stopped with it), stdin from
 * /dev/null unless pass_stdin, through `sh -c "<args joined by spaces>"` when shell. */
static pid_t lk_spawn(char **argv, size_t argc, bool shell, bool pass_stdin)
{
    struct base_buf cmd;
    base_buf_init(&cmd);
    for (size_t i = 0; i < argc; i++)
        base_buf_printf(&cmd, "%s%s", i ? " " : "", argv[i]);
    base_buf_append(&cmd, "", 1);
    char **av = base_calloc(argc + 1, sizeof *av);
    for (size_t i = 0; i < argc; i++)
        av[i] = argv[i];
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        if (!pass_stdin) {
            int fd = open("/dev/null", O_RDONLY);
            if (fd >= 0 && fd != 0) {
                dup2(fd, 0);
                close(fd);
            }
        }
        if (shell)
            execl("/bin/sh", "sh", "-c", (const char *)cmd.data, (char *)NULL);
        else
            execvp(av[0], av);
        fprintf(stderr, "Error: cannot run %s: %s\n", shell ? "/bin/sh" : av[0], strerror(errno));
        _exit(127);
    }
    if (pid > 0)
        setpgid(pid, pid);
    base_buf_free(&cmd);
    base_free(av);
    return pid;
}

static int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

/* SIGTERM to the child's group, SIGKILL after LOCK_KILL_GRACE_MS; reaps it. */
static int lk_kill(pid_t pid)
{
    int status = 0;
    kill(-pid, SIGTERM);
    uint64_t until = base_now_ms() + LOCK_KILL_GRACE_MS;
    while (base_now_ms() < until) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            return exit_code(status);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    kill(-pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return exit_code(status);
}

/* Go's strconv.ParseBool. */
static int parse_bool(const char *s, bool *v)
{
    static const char *const t[] = {"1", "t", "T", "true", "TRUE", "True"};
    static const char *const f[] = {"0", "f", "F", "false", "FALSE", "False"};
    for (size_t i = 0; i < BASE_ARRAY_LEN(t); i++) {
        if (strcmp(s, t[i]) == 0)
            return *v = true, 0;
        if (strcmp(s, f[i]) == 0)
            return *v = false, 0;
    }
    return 1;
}

/* Flags in Go's style (-f V, -f=V, --f; booleans without a value or with =V), up to the first
 * argument that is not one or "--". names[k] ending in '?' is a boolean. Sets val[k] (the value,
 * "true" for a bare boolean); returns the index of the first positional argument, or -1
 * (printed). */
static int parse_flags(char **argv, size_t argc, const char *const *names, size_t n_names,
                       const char **val, const char *usage)
{
    size_t i = 0;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *a = argv[i] + (argv[i][1] == '-' ? 2 : 1);
        if (!*a && argv[i][1] == '-')
            return (int)i + 1;
        size_t k, n = strcspn(a, "=");
        bool boolean = false;
        for (k = 0; k < n_names; k++) {
            size_t len = strlen(names[k]);
            boolean = names[k][len - 1] == '?';
            if (len - boolean == n && strncmp(a, names[k], n) == 0)
                break;
        }
        if (k == n_names) {
            fail("flag provided but not defined: %s (%s)", argv[i], usage);
            return -1;
        }
        if (a[n] == '=')
            val[k] = a + n + 1;
        else if (boolean)
            val[k] = "true";
        else if (i + 1 < argc)
            val[k] = argv[++i];
        else {
            fail("flag needs an argument: %s", argv[i]);
            return -1;
        }
    }
    return (int)i;
}

/* `herald lock`, as `consul lock`: a session (TTL 15 s, renewed every half of it), then the
 * lock PREFIX/.lock (-n 1) or a slot of a semaphore of N (contender key PREFIX/<session>,
 * holders in PREFIX/.lock, CAS updates); runs the child while it holds, stops the child
 * (SIGTERM, SIGKILL after 5 s) when the lock is lost; releases, cleans up and destroys the
 * session on exit. Exit code: the child's; 1 when the lock was lost, not acquired in time, or
 * on a signal. */
static int cmd_lock(struct cli *c, char **argv, size_t argc)
{
    static const char usage[] = "usage: herald lock [-n N] [-name NAME] [-timeout D] "
                                "[-shell=false] [-pass-stdin] [-verbose] PREFIX CMD...";
    static const char *const names[] = {
        "n",           "name",     "timeout",          "try",      "monitor-retry", "shell?",
        "pass-stdin?", "verbose?", "child-exit-code?", "http-addr"};
    const char *val[BASE_ARRAY_LEN(names)] = {"1",    "",      "0",     "",      "3",
                                              "true", "false", "false", "false", ""};
    int first = parse_flags(argv, argc, names, BASE_ARRAY_LEN(names), val, usage);
    if (first < 0 || (*val[9] && set_addr(c, val[9])))
        return 1;
    argv += first;
    argc -= (size_t)first;
    if (argc < 2)
        return fail("Key prefix and child command must be specified (%s)", usage);
    uint64_t n = 0, retries = 0, timeout_ms = 0;
    bool shell = true, pass_stdin = false, verbose = false, dummy = false;
    if (base_u64_parse(val[0], &n) || n < 1 || n > 65536)
        return fail("invalid -n \"%s\": a number of slots from 1", val[0]);
    if (base_duration_parse_strict(*val[3] ? val[3] : val[2], &timeout_ms))
        return fail("invalid -timeout \"%s\"", *val[3] ? val[3] : val[2]);
    if (base_u64_parse(val[4], &retries) || retries > 1000)
        return fail("invalid -monitor-retry \"%s\"", val[4]);
    if (parse_bool(val[5], &shell) || parse_bool(val[6], &pass_stdin) ||
        parse_bool(val[7], &verbose) || parse_bool(val[8], &dummy))
        return fail("invalid boolean flag value (%s)", usage);

    struct lock_run l = {
        .c = c, .limit = (unsigned)n, .verbose = verbose, .monitor_retry = (unsigned)retries};
    /* the prefix without its leading and trailing slashes */
    char *prefix = base_strdup(argv[0] + strspn(argv[0], "/"));
    size_t plen = strlen(prefix);
    while (plen && prefix[plen - 1] == '/')
        prefix[--plen] = '\0';
    if (!plen) {
        base_free(prefix);
        return fail("Key prefix must not be empty (%s)", usage);
    }
    struct base_buf b;
    base_buf_init(&b);
    base_buf_printf(&b, "%s/", prefix);
    base_buf_append(&b, "", 1);
    l.prefix = (const char *)b.data;
    struct base_buf lk;
    base_buf_init(&lk);
    base_buf_printf(&lk, "%s/.lock", prefix);
    base_buf_append(&lk, "", 1);
    l.lock_key = (char *)lk.data;
    struct base_buf name;
    base_buf_init(&name);
    if (*val[1])
        base_buf_printf(&name, "%s", val[1]);
    else {
        base_buf_printf(&name, "Herald lock for '");
        for (size_t i = 1; i < argc; i++)
            base_buf_printf(&name, "%s%s", i > 1 ? " " : "", argv[i]);
        base_buf_printf(&name, "' at '%s'", prefix);
    }
    base_buf_append(&name, "", 1);
    l.name = (const char *)name.data;

    int rc = 1;
    bool held = false;
    struct base_buf ck;
    base_buf_init(&ck);
    cli_catch_signals();
    if (lk_session_create(&l))
        goto out;
    base_buf_printf(&ck, "%s/%s", prefix, l.sid);
    base_buf_append(&ck, "", 1);
    l.contender_key = (char *)ck.data;
    if (l.limit > 1) {
        char q[128];
        snprintf(q, sizeof q, "acquire=%s&flags=%" PRIu64, l.sid, (uint64_t)SEMAPHORE_FLAG_VALUE);
        char *path = path_with("/v1/kv/", l.contender_key, q);
        int ok = req_bool(c, "PUT", path, NULL, 0);
        base_free(path);
        if (ok <= 0) {
            if (ok == 0)
                fail("Failed to acquire the contender key %s", l.contender_key);
            goto out_session;
        }
    }

    /* acquire */
    lk_say(&l, "Attempting lock acquisition");
    uint64_t deadline = timeout_ms ? base_now_ms() + timeout_ms : 0, index = 0;
    unsigned errors = 0;
    for (;;) {
        if (cli_signal || (deadline && base_now_ms() >= deadline)) {
            fail("Shutdown triggered or timeout during lock acquisition");
            goto out_release;
        }
        if (lk_renew(&l, &errors)) {
            fail("Session lost during lock acquisition");
            goto out_release;
        }
        int t = lk_try(&l, &index);
        if (t == 0)
            break;
        if (t == 1)
            goto out_release;
    }
    held = true;
    lk_say(&l, "Lock acquired, starting child");

    pid_t pid = lk_spawn(argv + 1, argc - 1, shell, pass_stdin);
    if (pid < 0) {
        fail("cannot start the child: %s", strerror(errno));
        goto out_release;
    }
    /* hold: the child's exit, a signal, or the lock lost ends it. The lock is watched by a
     * thread of its own (blocking queries), so the child's exit is seen at once. */
    struct lk_monitor mon = {.l = &l};
    if (pthread_create(&mon.thread, NULL, lk_monitor_main, &mon) != 0) {
        fail("cannot start the lock monitor");
        (void)lk_kill(pid);
        goto out_release;
    }
    errors = 0;
    for (;;) {
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            rc = exit_code(status);
            lk_say(&l, "Child exited, releasing lock");
            break;
        }
        if (cli_signal) {
            lk_say(&l, "Shutdown triggered, killing child");
            (void)lk_kill(pid);
            rc = 1;
            break;
        }
        if (atomic_load(&mon.lost) || lk_renew(&l, &errors)) {
            fail("Lock lost, killing child");
            (void)lk_kill(pid);
            held = false;
            rc = 1;
            break;
        }
        sleep_ms(LOCK_CHILD_POLL_MS);
    }
    /* released before the monitor's last blocking query returns (at most LOCK_STEP_WAIT) */
    atomic_store(&mon.stop, 1);
    if (held) {
        lk_release(&l, true);
        held = false;
    }
    pthread_join(mon.thread, NULL);
out_release:
    lk_release(&l, held);
out_session:;
    char *path = path_with("/v1/session/destroy/", l.sid, NULL);
    (void)call_ok(c, "PUT", path, NULL, 0);
    base_free(path);
out:
    base_buf_free(&ck);
    base_buf_free(&name);
    base_buf_free(&lk);
    base_buf_free(&b);
    base_free(prefix);
    return rc;
}

/* The reverse of quote_flags on jansson's indented output ("Flags": "<digits>"). */
static char *unquote_flags(const char *text)
{
    static const char key[] = "\"Flags\": \"";
    struct base_buf b;
    base_buf_init(&b);
    const char *p = text;
    for (;;) {
        const char *hit = strstr(p, key);
        if (!hit) {
            base_buf_printf(&b, "%s", p);
            break;
        }
        const char *digits = hit + sizeof key - 1, *end = digits;
        while (*end >= '0' && *end <= '9')
            end++;
        if (end > digits && *end == '"') {
            base_buf_append(&b, p, (size_t)(hit - p));
            base_buf_printf(&b, "\"Flags\": %.*s", (int)(end - digits), digits);
            p = end + 1;
        } else {
            base_buf_append(&b, p, (size_t)(digits - p));
            p = digits;
        }
    }
    base_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* Runs the handler through sh -c with text on its stdin and CONSUL_INDEX in its environment;
 * returns its exit code (printed when not 0). */
static int watch_run_handler(const char *handler, const char *text, uint64_t index)
{
    int fds[2];
    if (pipe(fds))
        return fail("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return fail("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        char idx[32];
        snprintf(idx, sizeof idx, "%" PRIu64, index);
        setenv("CONSUL_INDEX", idx, 1);
        dup2(fds[0], 0);
        close(fds[0]);
        close(fds[1]);
        signal(SIGPIPE, SIG_DFL);
        execl("/bin/sh", "sh", "-c", handler, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    /* a handler that does not read its stdin must not kill us: SIGPIPE ignored meanwhile */
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fds[1], text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(fds[1]);
    signal(SIGPIPE, old);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    int code = exit_code(status);
    if (code)
        fail("handler exited %d", code);
    return code;
}

/* `herald watch`, as `consul watch`: blocking queries on one view (-type key, keyprefix,
 * services, nodes, service, checks or event); on the first answer and on every change (a new
 * index whose data differs) the view's JSON (indented as Consul's) goes to the handler's stdin
 * (through sh -c, CONSUL_INDEX set), or to stdout without a handler. Consul's CLI without a
 * handler prints once and exits; Herald's keeps printing each change (-once: the first only).
 * The event view passes only the events not seen before. Runs until killed; errors are
 * retried with a backoff up to 5 s. */
static int cmd_watch(struct cli *c, char **argv, size_t argc)
{
    static const char usage[] =
        "usage: herald watch -type key|keyprefix|services|nodes|service|checks|event "
        "[-key K] [-prefix P] [-service S] [-tag T] [-passingonly] [-state S] [-name N] "
        "[-stale] [-once] [handler]";
    static const char *const names[] = {"type",         "key",        "prefix", "service", "tag",
                                        "passingonly?", "state",      "name",   "stale?",  "once?",
                                        "http-addr",    "datacenter", "token"};
    const char *val[BASE_ARRAY_LEN(names)] = {"", "",      "",      "", "", "false", "",
                                              "", "false", "false", "", "", ""};
    int first = parse_flags(argv, argc, names, BASE_ARRAY_LEN(names), val, usage);
    if (first < 0 || (*val[10] && set_addr(c, val[10])))
        return 1;
    argv += first;
    argc -= (size_t)first;
    bool passing = false, stale = false, once = false;
    if (parse_bool(val[5], &passing) || parse_bool(val[8], &stale) || parse_bool(val[9], &once))
        return fail("invalid boolean flag value (%s)", usage);
    const char *type = val[0], *handler = NULL;
    if (argc > 1)
        return fail("Too many command line arguments. (%s)", usage);
    if (argc == 1)
        handler = argv[0];

    struct base_buf q, path;
    base_buf_init(&q);
    base_buf_init(&path);
    bool single = false, events = false;
    if (strcmp(type, "key") == 0) {
        if (!*val[1])
            return fail("Must specify a single key to watch");
        base_buf_printf(&path, "/v1/kv/");
        url_path_escape(&path, val[1]);
        single = true;
    } else if (strcmp(type, "keyprefix") == 0) {
        if (!*val[2])
            return fail("Must specify a key prefix to watch");
        base_buf_printf(&path, "/v1/kv/");
        url_path_escape(&path, val[2]);
        base_buf_printf(&q, "&recurse");
    } else if (strcmp(type, "services") == 0) {
        base_buf_printf(&path, "/v1/catalog/services");
    } else if (strcmp(type, "nodes") == 0) {
        base_buf_printf(&path, "/v1/catalog/nodes");
    } else if (strcmp(type, "service") == 0) {
        if (!*val[3])
            return fail("Must specify a single service to watch");
        base_buf_printf(&path, "/v1/health/service/");
        url_path_escape(&path, val[3]);
        if (*val[4]) {
            base_buf_printf(&q, "&tag=");
            url_path_escape(&q, val[4]);
        }
        if (passing)
            base_buf_printf(&q, "&passing=1");
    } else if (strcmp(type, "checks") == 0) {
        if (*val[3] && *val[6])
            return fail("Cannot specify service and state");
        if (*val[3]) {
            base_buf_printf(&path, "/v1/health/checks/");
            url_path_escape(&path, val[3]);
        } else {
            base_buf_printf(&path, "/v1/health/state/");
            url_path_escape(&path, *val[6] ? val[6] : "any");
        }
    } else if (strcmp(type, "event") == 0) {
        base_buf_printf(&path, "/v1/event/list");
        if (*val[7]) {
            base_buf_printf(&q, "&name=");
            url_path_escape(&q, val[7]);
        }
        events = true;
    } else {
        base_buf_free(&q);
        base_buf_free(&path);
        return fail("Unsupported watch type: \"%s\" (%s)", type, usage);
    }
    if (stale)
        base_buf_printf(&q, "&stale");
    base_buf_append(&q, "", 1);
    base_buf_append(&path, "", 1);

    uint64_t index = 0;
    bool have = false;
    char *last_text = NULL, last_event[64] = "";
    unsigned backoff_ms = 0;
    int rc = 0;
    for (;;) {
        char target[4096];
        const char *qs = (const char *)q.data;
        if (have)
            snprintf(target, sizeof target, "%s?index=%" PRIu64 "&wait=5m%s", path.data, index, qs);
        else
            snprintf(target, sizeof target, "%s%s%s", path.data, *qs ? "?" : "", *qs ? qs + 1 : "");
        struct http_client_resp r;
        if (call_timeout(c, "GET", target, NULL, 0, &r, true, 5 * 60 * 1000 + 60 * 1000)) {
            backoff_ms = backoff_ms ? (backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2) : 500;
            sleep_ms(backoff_ms);
            continue;
        }
        backoff_ms = 0;
        uint64_t got = resp_index(&r);
        if (have && got == index) {
            http_client_resp_free(&r);
            continue;
        }
        /* as Consul's watches: an index gone backwards restarts from 0 (not for events,
         * whose index is a hash) */
        index = !events && got < index ? 0 : got;
        json_t *v = NULL;
        if (r.status == 200) {
            size_t qlen;
            char *qb = quote_flags(r.body, r.body_len, &qlen);
            json_error_t jerr;
            v = json_loadb(qb, qlen, JSON_DECODE_ANY, &jerr);
            base_free(qb);
            if (!v) {
                http_client_resp_free(&r);
                rc = fail("bad JSON from agent: %s", jerr.text);
                break;
            }
        }
        http_client_resp_free(&r);
        if (single) {
            json_t *e = json_incref(json_array_get(v, 0));
            json_decref(v);
            v = e;
        }
        if (events && v) {
            /* only the events after the last one passed on */
            size_t n = json_array_size(v), from = 0;
            for (size_t i = 0; *last_event && i < n; i++)
                if (strcmp(jstr(json_array_get(v, i), "ID"), last_event) == 0)
                    from = i + 1;
            if (n)
                snprintf(last_event, sizeof last_event, "%s", jstr(json_array_get(v, n - 1), "ID"));
            json_t *fresh = json_array();
            for (size_t i = from; i < n; i++)
                json_array_append(fresh, json_array_get(v, i));
            json_decref(v);
            v = fresh;
        }
        char *dumped = v ? json_dumps(v, JSON_INDENT(4) | JSON_ENCODE_ANY) : NULL;
        json_decref(v);
        char *text = unquote_flags(dumped ? dumped : "null");
        free(dumped);
        bool changed = !last_text || strcmp(text, last_text) != 0;
        if (events && have && strcmp(text, "[]") == 0)
            changed = false;
        have = true;
        if (changed) {
            base_free(last_text);
            last_text = text;
            if (handler) {
                struct base_buf in;
                base_buf_init(&in);
                base_buf_printf(&in, "%s\n", text);
                base_buf_append(&in, "", 1);
                (void)watch_run_handler(handler, (const char *)in.data, index);
                base_buf_free(&in);
            } else {
                printf("%s\n", text);
                fflush(stdout);
            }
            if (once)
                break;
        } else {
            base_free(text);
        }
    }
    base_free(last_text);
    base_buf_free(&q);
    base_buf_free(&path);
    return rc;
}

int adm_cli_main(const char *cmd, int argc, char **argv)
{
    struct cli c = {.port = 8500};
    const char *addr = getenv("HERALD_HTTP_ADDR");
    int rc = 0;

    if (!addr || !*addr)
        addr = getenv("CONSUL_HTTP_ADDR");
    if (!addr || !*addr)
        addr = "127.0.0.1:8500";
    /* lock and watch end their flags at the first other argument: what follows (the child's
     * command, the handler) is theirs, -http-addr in it included. */
    bool flags_end = strcmp(cmd, "lock") == 0 || strcmp(cmd, "watch") == 0;
    bool in_flags = true;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (flags_end && in_flags && (a[0] != '-' || strcmp(a, "--") == 0))
            in_flags = false;
        if (flags_end && !in_flags) {
            adm_strv_push(&c.args, a);
            continue;
        }
        if (strncmp(a, "-http-addr", 10) == 0 || strncmp(a, "--http-addr", 11) == 0) {
            const char *eq = strchr(a, '=');
            if (eq)
                addr = eq + 1;
            else if (i + 1 < argc)
                addr = argv[++i];
            else
                return fail("flag -http-addr needs a value");
            continue;
        }
        adm_strv_push(&c.args, a);
    }
    if (set_addr(&c, addr)) {
        adm_strv_free(&c.args);
        return 1;
    }
    if (strcmp(cmd, "members") == 0)
        rc = cmd_members(&c, c.args.v, c.args.n);
    else if (strcmp(cmd, "force-leave") == 0)
        rc = cmd_force_leave(&c, c.args.v, c.args.n);
    else if (strcmp(cmd, "services") == 0)
        rc = cmd_services(&c, c.args.v, c.args.n);
    else if (strcmp(cmd, "maint") == 0)
        rc = cmd_maint(&c, c.args.v, c.args.n);
    else if (strcmp(cmd, "catalog") == 0)
        rc = cmd_catalog(&c, c.args.v, c.args.n);
    else if (strcmp(cmd, "kv") == 0)
        rc = cmd_kv(&c, c.args.v, c.args.n);
    else if (strcmp(cmd, "leave") == 0)
        rc = cmd_leave(&c, c.args.n);
    else if (strcmp(cmd, "join") == 0)
        rc = cmd_join(&c, c.args.v, c.args.n);
    else if (strcmp(cmd, "event") == 0)
        rc = cmd_event(&c, c.args.v, c.args.n);
    else if (strcmp(cmd, "operator") == 0)
        rc = cmd_operator(&c, c.args.v, c.args.n);
    else if (strcmp(cmd, "snapshot") == 0)
        rc = cmd_snapshot(&c, c.args.v, c.args.n);
    else if (strcmp(cmd, "keyring") == 0)
        rc = cmd_keyring(&c, c.args.v, c.args.n);
    else if (strcmp(cmd, "lock") == 0)
        rc = cmd_lock(&c, c.args.v, c.args.n);
    else if (strcmp(cmd, "watch") == 0)
        rc = cmd_watch(&c, c.args.v, c.args.n);
    else
        rc = fail("unknown command \"%s\" (see herald --help)", cmd);
    adm_strv_free(&c.args);
    return rc;
}
