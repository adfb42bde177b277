/* gossip_node: one gossip engine (gossip/gossip.h) as a process, for the integration tests
 * (tests/integration/test_gossip_serf_pool.py) to put in a pool with real serf agents.
 *
 *   gossip_node -node NAME -bind IP:PORT [-advertise IP:PORT] [-join IP[:PORT]]... [-tag K=V]...
 *               [-encrypt BASE64] [-keyring BASE64]... [-keyring-fail] [-merge-dc DC] [-fast]
 *               [-set NAME=VALUE]...
 *
 * Timings are gossip_config_defaults' (Herald's LAN defaults), or with -fast the unit tests'
 * (probe 100 ms); -set overrides one (Consul's gossip_lan names: probe_interval,
 * probe_timeout, gossip_interval, gossip_nodes, suspicion_mult, suspicion_max_timeout_mult,
 * retransmit_mult, push_pull_interval, indirect_checks, awareness_max_multiplier; durations
 * in milliseconds), so the bench can run memberlist's own LAN timings. Prints one JSON object per
 * line on stdout, flushed:
 *   {"event":"started"}  {"event":"joined","n":1,"status":0}
 *   {"event":"join"|"update"|"leave"|"fail"|"reap","ts":..,"name":..,"addr":..,"port":..,
 *    "status":..,"incarnation":..,"vsn":[pmin,pmax,pcur,dmin,dmax,dcur],"tags":{..}}
 *   {"event":"user","name":..,"payload":..,"ltime":..}
 *   {"event":"members","members":[{member fields}...]}
 *   {"event":"left"}  {"event":"stopped"}
 *   {"event":"stats",...gossip_stats fields}
 *   {"event":"keyring","op":..,"status":..,"error":..,"num_nodes":..,"num_resp":..,"num_err":..,
 *    "messages":{node:message},"keys":{key:count},"primary_keys":{key:count}}
 *   {"event":"keys","keys":[primary, ...]}  {"event":"keyring_changed","keys":[primary, ...]}
 * Commands on stdin, one per line: "members", "stats", "event NAME PAYLOAD", "keyring list",
 * "keyring install|use|remove KEY" (gossip_keyring across the pool), "keys" (the local keyring),
 * "leave" (graceful leave, then exit 0), "quit" (stop without leave, exit 0). SIGTERM and SIGINT
 * leave gracefully. -keyring (repeated) starts with that keyring, the first the primary;
 * -keyring-fail makes the keyring hook (which prints keyring_changed) report a failure to
 * persist. */
#include "gossip/gossip.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uv_loop_t loop;
static struct gossip *g;
static uv_pipe_t in;
static uv_signal_t sig_term, sig_int;
static char line[16384];
static size_t line_len;
static bool leaving, stopping, in_open;

static void json_str(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void json_cstr(const char *s)
{
    json_str(s, strlen(s));
}

static void node_fields(const struct gossip_node *n)
{
    printf("\"name\":");
    json_cstr(n->name);
    printf(",\"addr\":\"%s\",\"port\":%u,\"status\":\"%s\",\"incarnation\":%u,"
           "\"vsn\":[%u,%u,%u,%u,%u,%u],\"tags\":{",
           n->addr, n->port, gossip_status_name(n->status), n->incarnation, n->vsn[0], n->vsn[1],
           n->vsn[2], n->vsn[3], n->vsn[4], n->vsn[5]);
    for (size_t i = 0; i < n->n_tags; i++) {
        printf("%s", i ? "," : "");
        json_cstr(n->tags[i].key);
        putchar(':');
        json_cstr(n->tags[i].value);
    }
    putchar('}');
}

static void on_event(void *ctx, const struct gossip_event *ev)
{
    BASE_UNUSED(ctx);
    /* ts: the wall clock at the event, for the bench's timings */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    printf("{\"event\":\"%s\",\"ts\":%lld.%06ld,", gossip_event_name(ev->kind),
           (long long)now.tv_sec, now.tv_nsec / 1000);
    if (ev->kind == GOSSIP_EVENT_USER) {
        printf("\"name\":");
        json_cstr(ev->name);
        printf(",\"payload\":");
        json_str((const char *)ev->payload, ev->payload_len);
        printf(",\"ltime\":%llu", (unsigned long long)ev->ltime);
    } else {
        node_fields(ev->node);
    }
    printf("}\n");
    fflush(stdout);
}

static int n_members;
static void on_member(void *ctx, const struct gossip_node *n)
{
    BASE_UNUSED(ctx);
    printf("%s{", n_members++ ? "," : "");
    node_fields(n);
    putchar('}');
}

static void json_keys(const char *const *keys, size_t n)
{
    putchar('[');
    for (size_t i = 0; i < n; i++) {
        printf("%s", i ? "," : "");
        json_cstr(keys[i]);
    }
    putchar(']');
}

static void json_counts(const struct gossip_key_count *v, size_t n)
{
    putchar('{');
    for (size_t i = 0; i < n; i++) {
        printf("%s", i ? "," : "");
        json_cstr(v[i].key);
        printf(":%zu", v[i].count);
    }
    putchar('}');
}

static bool keyring_fail;
static int on_keyring(void *ctx, const char *const *keys, size_t n, char *why, size_t why_len)
{
    BASE_UNUSED(ctx);
    printf("{\"event\":\"keyring_changed\",\"keys\":");
    json_keys(keys, n);
    printf("}\n");
    fflush(stdout);
    if (keyring_fail) {
        snprintf(why, why_len, "Failed to write keyring file: test says no");
        return 1;
    }
    return 0;
}

static void on_keyring_done(void *ctx, const struct gossip_keyring_result *r)
{
    printf("{\"event\":\"keyring\",\"op\":\"%s\",\"status\":%d,\"error\":",
           gossip_keyring_op_name((enum gossip_keyring_op)(intptr_t)ctx), r->status);
    if (r->error)
        json_cstr(r->error);
    else
        printf("null");
    printf(",\"num_nodes\":%zu,\"num_resp\":%zu,\"num_err\":%zu,\"messages\":{", r->num_nodes,
           r->num_resp, r->num_err);
    for (size_t i = 0; i < r->n_messages; i++) {
        printf("%s", i ? "," : "");
        json_cstr(r->messages[i].node);
        putchar(':');
        json_cstr(r->messages[i].message);
    }
    printf("},\"keys\":");
    json_counts(r->keys, r->n_keys);
    printf(",\"primary_keys\":");
    json_counts(r->primary_keys, r->n_primary_keys);
    printf("}\n");
    fflush(stdout);
}

static void keyring_command(const char *s)
{
    static const char *const ops[] = {"install ", "use ", "remove ", "list"};
    for (size_t i = 0; i < BASE_ARRAY_LEN(ops); i++) {
        size_t n = strlen(ops[i]);
        if (strncmp(s, ops[i], n) != 0)
            continue;
        int rv = gossip_keyring(g, (enum gossip_keyring_op)i, s + n, on_keyring_done,
                                (void *)(intptr_t)i);
        if (rv != 0) {
            printf("{\"event\":\"keyring\",\"op\":\"%s\",\"status\":%d,\"error\":\"refused\"}\n",
                   gossip_keyring_op_name((enum gossip_keyring_op)i), rv);
            fflush(stdout);
        }
        return;
    }
}

static void on_stopped(void *ctx, int status)
{
    BASE_UNUSED(ctx);
    BASE_UNUSED(status);
    printf("{\"event\":\"stopped\"}\n");
    fflush(stdout);
}

static void stop_all(void)
{
    if (stopping)
        return;
    stopping = true;
    gossip_stop(g, on_stopped, NULL);
    if (in_open)
        uv_close((uv_handle_t *)&in, NULL);
    in_open = false;
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
}

static void on_left(void *ctx, int status)
{
    BASE_UNUSED(ctx);
    printf("{\"event\":\"left\",\"status\":%d}\n", status);
    fflush(stdout);
    stop_all();
}

static void leave(void)
{
    if (leaving || stopping)
        return;
    leaving = true;
    if (gossip_leave(g, on_left, NULL) != 0)
        stop_all();
}

static void command(char *s)
{
    if (strcmp(s, "members") == 0) {
        n_members = 0;
        printf("{\"event\":\"members\",\"members\":[");
        gossip_members(g, on_member, NULL);
        printf("]}\n");
        fflush(stdout);
    } else if (strncmp(s, "event ", 6) == 0) {
        char *name = s + 6, *payload = strchr(name, ' ');
        if (payload)
            *payload++ = 0;
        else
            payload = name + strlen(name);
        int rv = gossip_event_fire(g, name, (const uint8_t *)payload, strlen(payload), false);
        printf("{\"event\":\"fired\",\"status\":%d}\n", rv);
        fflush(stdout);
    } else if (strcmp(s, "stats") == 0) {
        struct gossip_stats st;
        gossip_stats_get(g, &st);
        printf("{\"event\":\"stats\",\"udp_in\":%llu,\"udp_out\":%llu,\"udp_bytes_in\":%llu,"
               "\"udp_bytes_out\":%llu,\"udp_bad\":%llu,\"tcp_in\":%llu,\"tcp_out\":%llu,"
               "\"tcp_bad\":%llu,\"probes\":%llu,\"probe_failures\":%llu,\"refutes\":%llu,"
               "\"health\":%u}\n",
               (unsigned long long)st.udp_in, (unsigned long long)st.udp_out,
               (unsigned long long)st.udp_bytes_in, (unsigned long long)st.udp_bytes_out,
               (unsigned long long)st.udp_bad, (unsigned long long)st.tcp_in,
               (unsigned long long)st.tcp_out, (unsigned long long)st.tcp_bad,
               (unsigned long long)st.probes, (unsigned long long)st.probe_failures,
               (unsigned long long)st.refutes, st.health);
        fflush(stdout);
    } else if (strncmp(s, "force-leave ", 12) == 0) {
        int rv = gossip_force_leave(g, s + 12, false);
        printf("{\"event\":\"forced\",\"status\":%d}\n", rv);
        fflush(stdout);
    } else if (strncmp(s, "keyring ", 8) == 0) {
        keyring_command(s + 8);
    } else if (strcmp(s, "keys") == 0) {
        struct base_arena a;
        base_arena_init(&a);
        const char **keys;
        size_t n;
        gossip_keyring_keys(g, &a, &keys, &n);
        printf("{\"event\":\"keys\",\"keys\":");
        json_keys(keys, n);
        printf("}\n");
        fflush(stdout);
        base_arena_close(&a);
    } else if (strcmp(s, "leave") == 0) {
        leave();
    } else if (strcmp(s, "quit") == 0) {
        stop_all();
    }
}

static void in_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    BASE_UNUSED(h);
    BASE_UNUSED(s);
    static char buf[4096];
    *b = uv_buf_init(buf, sizeof(buf));
}

static void in_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    BASE_UNUSED(s);
    if (n < 0) {
        /* stdin closed: the test is gone; leave as a stopped agent would */
        leave();
        return;
    }
    for (ssize_t i = 0; i < n && !stopping; i++) {
        char c = b->base[i];
        if (c == '\n') {
            line[line_len] = 0;
            line_len = 0;
            command(line);
        } else if (line_len + 1 < sizeof(line)) {
            line[line_len++] = c;
        }
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    BASE_UNUSED(h);
    BASE_UNUSED(signum);
    leave();
}

static void on_joined(void *ctx, size_t joined, int status)
{
    BASE_UNUSED(ctx);
    printf("{\"event\":\"joined\",\"n\":%zu,\"status\":%d}\n", joined, status);
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr, "usage: gossip_node -node NAME -bind IP:PORT [-advertise IP:PORT] "
                    "[-join IP[:PORT]]... [-tag K=V]... [-encrypt KEY] [-keyring KEY]... "
                    "[-keyring-fail] [-merge-dc DC] [-fast] [-set NAME=VALUE]...\n");
    exit(2);
}

/* -merge-dc DC: the merge hook refuses a node whose "dc" tag is another (Consul's merge.go) */
static const char *merge_dc;
static int on_merge(void *ctx, const struct gossip_node *nodes, size_t n, char *why, size_t why_len)
{
    BASE_UNUSED(ctx);
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < nodes[i].n_tags; t++)
            if (strcmp(nodes[i].tags[t].key, "dc") == 0 &&
                strcmp(nodes[i].tags[t].value, merge_dc) != 0) {
                snprintf(why, why_len, "member '%s' part of wrong datacenter '%s'", nodes[i].name,
                         nodes[i].tags[t].value);
                return 1;
            }
    return 0;
}

/* -set NAME=VALUE: one gossip_lan timing (durations in ms); false for an unknown name */
static bool set_timing(struct gossip_config *c, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || !eq[1])
        return false;
    char *end;
    unsigned long long v = strtoull(eq + 1, &end, 10);
    if (*end)
        return false;
    size_t n = (size_t)(eq - kv);
#define IS(name) (n == strlen(name) && strncmp(kv, name, n) == 0)
    if (IS("probe_interval"))
        c->probe_interval_ms = v;
    else if (IS("probe_timeout"))
        c->probe_timeout_ms = v;
    else if (IS("gossip_interval"))
        c->gossip_interval_ms = v;
    else if (IS("gossip_nodes"))
        c->gossip_nodes = (uint32_t)v;
    else if (IS("suspicion_mult"))
        c->suspicion_mult = (uint32_t)v;
    else if (IS("suspicion_max_timeout_mult"))
        c->suspicion_max_timeout_mult = (uint32_t)v;
    else if (IS("retransmit_mult"))
        c->retransmit_mult = (uint32_t)v;
    else if (IS("push_pull_interval"))
        c->push_pull_interval_ms = v;
    else if (IS("indirect_checks"))
        c->indirect_checks = (uint32_t)v;
    else if (IS("awareness_max_multiplier"))
        c->awareness_max_multiplier = (uint32_t)v;
    else
        return false;
#undef IS
    return true;
}

static void split_hostport(const char *s, char *host, size_t hl, uint16_t *port)
{
    int p;
    if (base_hostport_parse(s, 8301, host, hl, &p) != 0 || p <= 0 || p > 65535)
        usage();
    *port = (uint16_t)p;
}

int main(int argc, char **argv)
{
    struct gossip_config c;
    gossip_config_defaults(&c);
    static struct gossip_tag tags[32];
    static const char *joins[32];
    static char bind_host[256], adv_host[256];
    size_t n_tags = 0, n_joins = 0;
    uint8_t key[32];
    size_t key_len = 0;
    static const char *keyring[GOSSIP_KEYRING_MAX + 1];
    size_t n_keyring = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-keyring-fail") == 0) {
            keyring_fail = true;
            continue;
        }
        if (strcmp(a, "-fast") == 0) {
            c.probe_interval_ms = 100;
            c.probe_timeout_ms = 40;
            c.gossip_interval_ms = 20;
            c.push_pull_interval_ms = 500;
            c.leave_propagate_ms = 100;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (strcmp(a, "-node") == 0) {
            c.node_name = v;
        } else if (strcmp(a, "-bind") == 0) {
            split_hostport(v, bind_host, sizeof(bind_host), &c.bind_port);
            c.bind_addr = bind_host;
        } else if (strcmp(a, "-advertise") == 0) {
            split_hostport(v, adv_host, sizeof(adv_host), &c.advertise_port);
            c.advertise_addr = adv_host;
        } else if (strcmp(a, "-merge-dc") == 0) {
            merge_dc = v;
            c.on_merge = on_merge;
        } else if (strcmp(a, "-join") == 0 && n_joins < BASE_ARRAY_LEN(joins)) {
            joins[n_joins++] = v;
        } else if (strcmp(a, "-tag") == 0 && n_tags < BASE_ARRAY_LEN(tags)) {
            char *kv = strdup(v), *eq = strchr(kv, '=');
            if (!eq)
                usage();
            *eq = 0;
            tags[n_tags++] = (struct gossip_tag){kv, eq + 1};
        } else if (strcmp(a, "-set") == 0) {
            if (!set_timing(&c, v))
                usage();
        } else if (strcmp(a, "-keyring") == 0 && n_keyring < BASE_ARRAY_LEN(keyring)) {
            keyring[n_keyring++] = v;
        } else if (strcmp(a, "-encrypt") == 0) {
            if (gossip_key_decode(v, key, &key_len) != 0)
                usage();
            c.key = key;
            c.key_len = key_len;
        } else {
            usage();
        }
    }
    if (!c.node_name || !c.bind_addr)
        usage();
    c.tags = tags;
    c.n_tags = n_tags;
    c.on_event = on_event;
    c.on_keyring = on_keyring;
    c.keyring = keyring;
    c.n_keyring = n_keyring;
    signal(SIGPIPE, SIG_IGN);
    base_loop_thread_set();
    uv_loop_init(&loop);
    int rv = gossip_start(&loop, &c, &g);
    if (rv != 0) {
        fprintf(stderr, "gossip_node: start: %s\n", base_strerror(rv));
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return 1;
    }
    printf("{\"event\":\"started\"}\n");
    fflush(stdout);
    uv_signal_init(&loop, &sig_term);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_init(&loop, &sig_int);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_pipe_init(&loop, &in, 0);
    if (uv_pipe_open(&in, 0) == 0 && uv_read_start((uv_stream_t *)&in, in_alloc, in_read) == 0)
        in_open = true;
    else
        uv_close((uv_handle_t *)&in, NULL);
    if (n_joins && gossip_join(g, joins, n_joins, on_joined, NULL) != 0)
        fprintf(stderr, "gossip_node: join refused\n");
    uv_run(&loop, UV_RUN_DEFAULT);
    rv = uv_loop_close(&loop);
    for (size_t i = 0; i < n_tags; i++)
        free((char *)tags[i].key);
    return rv == 0 ? 0 : 1;
}
