/* Tests admin/config.c: the defaults, the flag syntaxes Go's flag package accepts (-f v, -f=v,
 * --f), Consul's JSON config keys from -config-file and -config-dir (files of a directory in
 * name order), flags winning over files wherever they stand in argv, and each refusal with a
 * message that names the flag, key or file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin/internal.h"

/* ---- fixture --------------------------------------------------------------------------- */

#define MAX_PATHS 16
#define MAX_ARGS  32

struct fx {
    char dir[64];               /* a fresh temporary directory */
    char paths[MAX_PATHS][160]; /* files and folders made in it, removed in reverse */
    int n_paths;
    struct adm_config cfg;
    bool loaded;
    char err[BASE_ERRMSG_LEN];
};

static int setup(void **state)
{
    static struct fx f0;
    struct fx *f = &f0;
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/herald-test-config-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->loaded)
        adm_config_free(&f->cfg);
    for (int i = f->n_paths - 1; i >= 0; i--)
        assert_int_equal(remove(f->paths[i]), 0);
    assert_int_equal(rmdir(f->dir), 0);
    return 0;
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static const char *track(struct fx *f, const char *rel)
{
    assert_true(f->n_paths < MAX_PATHS);
    char buf[sizeof f->paths[0]];
    snprintf(buf, sizeof buf, "%s/%s", f->dir, rel);
    char *p = f->paths[f->n_paths++];
    memcpy(p, buf, sizeof buf);
    return p;
}

/* Makes a folder under the test directory; returns its path. */
static const char *make_dir(struct fx *f, const char *rel)
{
    const char *p = track(f, rel);
    assert_int_equal(mkdir(p, 0700), 0);
    return p;
}

/* Writes a file under the test directory; returns its path. */
static const char *write_file(struct fx *f, const char *rel, const char *text)
{
    const char *p = track(f, rel);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
    return p;
}

/* Runs adm_config_load on the NULL-terminated arguments (freeing an earlier result). */
static int load(struct fx *f, ...)
{
    char *argv[MAX_ARGS];
    int argc = 0;
    va_list ap;
    va_start(ap, f);
    for (const char *a; (a = va_arg(ap, const char *));) {
        assert_true(argc < MAX_ARGS);
        argv[argc++] = (char *)a;
    }
    va_end(ap);
    if (f->loaded)
        adm_config_free(&f->cfg);
    f->err[0] = '\0';
    f->loaded = true; /* freed even after an error: defaults were allocated */
    return adm_config_load(argc, argv, &f->cfg, f->err);
}

#define LOAD_OK(f, ...)                                                                            \
    do {                                                                                           \
        if (load(f, __VA_ARGS__, NULL))                                                            \
            fail_msg("config refused: %s", (f)->err);                                              \
    } while (0)

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* The load returned rc: it must be BASE_EINVAL with a message holding want1 and want2 (when
 * not NULL). */
static void check_bad(struct fx *f, int rc, const char *want1, const char *want2)
{
    if (rc == 0)
        fail_msg("config accepted, want error \"%s\"", want1);
    assert_int_equal(rc, BASE_EINVAL);
    assert_contains(f->err, want1);
    if (want2)
        assert_contains(f->err, want2);
}

#define LOAD_BAD(f, want1, want2, ...) check_bad(f, load(f, __VA_ARGS__, NULL), want1, want2)

/* A config file with one JSON text; returns its path for -config-file. */
static const char *cfg_file(struct fx *f, const char *name, const char *json)
{
    return write_file(f, name, json);
}

/* ---- defaults -------------------------------------------------------------------------- */

static void test_defaults_dev(void **state)
{
    struct fx *f = *state;
    char host[256] = "";
    assert_int_equal(gethostname(host, sizeof host - 1), 0);
    char *dot = strchr(host, '.');
    if (dot)
        *dot = '\0';

    LOAD_OK(f, "-dev");
    assert_true(f->cfg.dev);
    assert_true(f->cfg.server); /* -dev is a server */
    assert_int_equal(f->cfg.bootstrap_expect, 1);
    assert_string_equal(f->cfg.node_name, host);
    assert_string_equal(f->cfg.datacenter, "dc1");
    assert_string_equal(f->cfg.client_addr, "127.0.0.1");
    assert_string_equal(f->cfg.bind_addr, "127.0.0.1"); /* -dev binds loopback */
    assert_string_equal(f->cfg.advertise_addr, "127.0.0.1");
    assert_null(f->cfg.http_addr);
    assert_null(f->cfg.data_dir);
    assert_string_equal(f->cfg.domain, "consul.");
    assert_null(f->cfg.alt_domain);
    assert_int_equal(f->cfg.http_port, 8500);
    assert_int_equal(f->cfg.dns_port, 8600);
    assert_int_equal(f->cfg.server_port, 8300);
    assert_int_equal(f->cfg.serf_lan_port, 8301);
    assert_int_equal(f->cfg.retry_join.n, 0);
    assert_int_equal(f->cfg.recursors.n, 0);
    assert_int_equal(f->cfg.services.n, 0);
    assert_int_equal(f->cfg.log_level, BASE_LOG_INFO);
    assert_false(f->cfg.log_json);
    assert_true(f->cfg.http_max_conns == 16384);
    assert_true(f->cfg.http_header_timeout_ms == 0);
    assert_true(f->cfg.http_idle_timeout_ms == 0);
    assert_true(f->cfg.http_max_conns_per_client == 0); /* http's default, 200 */
    assert_true(f->cfg.http_body_timeout_ms == 0);      /* http's default, 30 s */
    assert_int_equal(f->cfg.raft_snapshot_threshold, 0);
    assert_int_equal(f->cfg.raft_snapshot_trailing, 0);
}

static void test_defaults_client(void **state)
{
    struct fx *f = *state;
    LOAD_OK(f, "-data-dir", f->dir); /* no -server: a client agent */
    assert_false(f->cfg.server);
    assert_int_equal(f->cfg.bootstrap_expect, 0);
    assert_true(f->cfg.leave_on_terminate); /* Consul's client defaults */
    assert_false(f->cfg.skip_leave_on_interrupt);
    assert_int_equal(f->cfg.ae_interval_ms, 60000);
    assert_int_equal(f->cfg.check_update_interval_ms, 300000);
}

static void test_defaults_server(void **state)
{
    struct fx *f = *state;
    LOAD_OK(f, "-server", "-data-dir", f->dir);
    assert_false(f->cfg.dev);
    assert_true(f->cfg.server);
    assert_int_equal(f->cfg.bootstrap_expect, 0); /* as Consul: it waits to be joined */
    assert_false(f->cfg.leave_on_terminate);      /* Consul's server defaults */
    assert_true(f->cfg.skip_leave_on_interrupt);
    assert_string_equal(f->cfg.data_dir, f->dir);
    assert_string_equal(f->cfg.bind_addr, "0.0.0.0");
    assert_string_equal(f->cfg.serf_lan_addr, "0.0.0.0");
    assert_int_equal(f->cfg.serf_lan_port, 8301);
    assert_int_equal(f->cfg.retry_interval_ms, 30000);
    assert_int_equal(f->cfg.reconnect_timeout_ms, 72ull * 3600 * 1000);
    /* a wildcard bind advertises the host's one private IPv4 address, else loopback */
    assert_true(strcmp(f->cfg.advertise_addr, "127.0.0.1") == 0 ||
                strncmp(f->cfg.advertise_addr, "10.", 3) == 0 ||
                strncmp(f->cfg.advertise_addr, "172.", 4) == 0 ||
                strncmp(f->cfg.advertise_addr, "192.168.", 8) == 0 ||
                strncmp(f->cfg.advertise_addr, "100.", 4) == 0);
    assert_string_equal(f->cfg.client_addr, "127.0.0.1");

    /* advertise follows a specific bind address */
    LOAD_OK(f, "-server", "-data-dir", f->dir, "-bind", "10.1.2.3");
    assert_string_equal(f->cfg.bind_addr, "10.1.2.3");
    assert_string_equal(f->cfg.advertise_addr, "10.1.2.3");
    LOAD_OK(f, "-server", "-data-dir", f->dir, "-bind", "::");
    assert_string_equal(f->cfg.advertise_addr, "127.0.0.1");
    LOAD_OK(f, "-server", "-data-dir", f->dir, "-bind", "10.1.2.3", "-advertise", "10.9.9.9");
    assert_string_equal(f->cfg.advertise_addr, "10.9.9.9");
    LOAD_OK(f, "-dev", "-bind", "::1", "-client", "::1");
    assert_string_equal(f->cfg.bind_addr, "::1");
    assert_string_equal(f->cfg.advertise_addr, "::1");
    assert_string_equal(f->cfg.client_addr, "::1");
}

/* ---- flags ----------------------------------------------------------------------------- */

static void test_flag_syntaxes(void **state)
{
    struct fx *f = *state;
    LOAD_OK(f, "-dev", "-node", "n1");
    assert_string_equal(f->cfg.node_name, "n1");
    LOAD_OK(f, "-dev", "-node=n2");
    assert_string_equal(f->cfg.node_name, "n2");
    LOAD_OK(f, "--dev", "--node", "n3");
    assert_true(f->cfg.dev);
    assert_string_equal(f->cfg.node_name, "n3");
    LOAD_OK(f, "--dev", "--node=n4");
    assert_string_equal(f->cfg.node_name, "n4");

    LOAD_OK(f, "-dev", "-http-port", "9500", "-dns-port=9600", "--server-port", "9300",
            "--serf-lan-port=9301", "-datacenter", "east-1", "-client=0.0.0.0", "-domain",
            "example.", "-alt-domain", "alt.", "-log-level", "debug");
    assert_int_equal(f->cfg.http_port, 9500);
    assert_int_equal(f->cfg.dns_port, 9600);
    assert_int_equal(f->cfg.server_port, 9300);
    assert_int_equal(f->cfg.serf_lan_port, 9301);
    assert_string_equal(f->cfg.datacenter, "east-1");
    assert_string_equal(f->cfg.client_addr, "0.0.0.0");
    assert_string_equal(f->cfg.domain, "example.");
    assert_string_equal(f->cfg.alt_domain, "alt.");
    assert_int_equal(f->cfg.log_level, BASE_LOG_DEBUG);
    assert_int_equal(f->cfg.bootstrap_expect, 1);

    /* a later flag wins over an earlier one */
    LOAD_OK(f, "-dev", "-node", "first", "-node=second");
    assert_string_equal(f->cfg.node_name, "second");
    /* the value after "=" may itself hold "=" */
    LOAD_BAD(f, "node_name (-node) \"a=b\"", NULL, "-dev", "-node=a=b");
}

static void test_bool_flags(void **state)
{
    struct fx *f = *state;
    LOAD_OK(f, "-dev", "-log-json");
    assert_true(f->cfg.log_json);
    LOAD_OK(f, "-dev", "-log-json=true");
    assert_true(f->cfg.log_json);
    LOAD_OK(f, "-dev", "-log-json=1");
    assert_true(f->cfg.log_json);
    LOAD_OK(f, "-dev", "-log-json", "-log-json=false");
    assert_false(f->cfg.log_json);
    LOAD_OK(f, "-dev", "-log-json=0");
    assert_false(f->cfg.log_json);
    LOAD_OK(f, "-dev=false", "-server", "-data-dir", f->dir);
    assert_false(f->cfg.dev);
    assert_true(f->cfg.server);
    assert_string_equal(f->cfg.bind_addr, "0.0.0.0");
    LOAD_OK(f, "-server=true", "-data-dir", f->dir);
    assert_true(f->cfg.server);

    LOAD_BAD(f, "invalid value \"yes\" for flag -server", NULL, "-server=yes", "-data-dir", f->dir);
    LOAD_BAD(f, "invalid value \"\" for flag -dev", NULL, "-dev=");
    /* a bool flag takes no separate value, as in Go */
    LOAD_BAD(f, "unexpected argument \"false\"", NULL, "-dev", "-log-json", "false");
}

static void test_repeated_list_flags(void **state)
{
    struct fx *f = *state;
    LOAD_OK(f, "-dev", "-retry-join", "10.0.0.1", "-retry-join=10.0.0.2", "-join", "10.0.0.3",
            "--retry-join", "host4:8301", "-recursor", "1.1.1.1", "-recursor=8.8.8.8");
    assert_int_equal(f->cfg.retry_join.n, 4);
    assert_string_equal(f->cfg.retry_join.v[0], "10.0.0.1");
    assert_string_equal(f->cfg.retry_join.v[1], "10.0.0.2");
    assert_string_equal(f->cfg.retry_join.v[2], "10.0.0.3");
    assert_string_equal(f->cfg.retry_join.v[3], "host4:8301");
    assert_int_equal(f->cfg.recursors.n, 2);
    assert_string_equal(f->cfg.recursors.v[0], "1.1.1.1");
    assert_string_equal(f->cfg.recursors.v[1], "8.8.8.8");
}

/* The server port: -encrypt (base64 of 16, 24 or 32 bytes, decoded), -join-allow CIDRs,
 * limits.rpc_*; from flags and files. */
static void test_server_port_security(void **state)
{
    struct fx *f = *state;
    LOAD_OK(f, "-dev");
    assert_null(f->cfg.key);
    assert_int_equal(f->cfg.n_join_nets, 0);
    LOAD_OK(f, "-dev", "-encrypt", "MDEyMzQ1Njc4OWFiY2RlZg==", "-join-allow", "10.0.0.0/8",
            "-join-allow", "::1/128");
    assert_int_equal(f->cfg.key_len, 16);
    assert_memory_equal(f->cfg.key, "0123456789abcdef", 16);
    assert_int_equal(f->cfg.n_join_nets, 2);
    const char *path = cfg_file(f, "sec.json",
                                "{\"encrypt\": \"a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=\", "
                                "\"join_allow\": [\"192.168.0.0/16\"], \"limits\": "
                                "{\"rpc_max_conns_per_client\": 7, \"rpc_idle_timeout\": \"3s\"}}");
    LOAD_OK(f, "-dev", "-config-file", path);
    assert_int_equal(f->cfg.key_len, 32);
    assert_int_equal(f->cfg.n_join_nets, 1);
    assert_int_equal(f->cfg.rpc_max_conns_per_client, 7);
    assert_true(f->cfg.rpc_idle_timeout_ms == 3000);

    LOAD_BAD(f, "encrypt (-encrypt): the key must be base64 of 16, 24 or 32 bytes", NULL, "-dev",
             "-encrypt", "c2hvcnQ=");
    LOAD_BAD(f, "encrypt (-encrypt)", NULL, "-dev", "-encrypt", "not base64!");
    LOAD_BAD(f, "join_allow (-join-allow) \"10.0.0.0/33\" is not a network", NULL, "-dev",
             "-join-allow", "10.0.0.0/33");
    path = cfg_file(f, "bad.json", "{\"limits\": {\"rpc_max_conns_per_client\": 0}}");
    LOAD_BAD(f, "limits.rpc_max_conns_per_client", NULL, "-dev", "-config-file", path);
    path = cfg_file(f, "bad2.json", "{\"limits\": {\"rpc_idle_timeout\": \"soon\"}}");
    LOAD_BAD(f, "limits.rpc_idle_timeout", NULL, "-dev", "-config-file", path);
}

static void test_flag_errors(void **state)
{
    struct fx *f = *state;
    LOAD_BAD(f, "flag provided but not defined: -bogus", NULL, "-dev", "-bogus");
    LOAD_BAD(f, "flag provided but not defined: -bogus", NULL, "--bogus=1", "-dev");
    LOAD_BAD(f, "flag provided but not defined: -config", NULL, "-config", "x");
    LOAD_BAD(f, "flag provided but not defined: -nod", NULL, "-nod", "x"); /* no prefixes */
    LOAD_BAD(f, "unexpected argument \"agent\"", NULL, "agent", "-dev");
    LOAD_BAD(f, "unexpected argument \"-\"", NULL, "-dev", "-");

    LOAD_BAD(f, "flag needs an argument: -node", NULL, "-dev", "-node");
    LOAD_BAD(f, "flag needs an argument: -http-port", NULL, "-dev", "--http-port");
    LOAD_BAD(f, "flag needs an argument: -retry-join", NULL, "-dev", "-retry-join");
    LOAD_BAD(f, "flag needs an argument: -config-file", NULL, "-dev", "-config-file");
    LOAD_BAD(f, "flag -node needs a non-empty value", NULL, "-dev", "-node=");
    LOAD_BAD(f, "flag -data-dir needs a non-empty value", NULL, "-server", "-data-dir", "");

    static const char *const bad_ports[] = {"0", "65536", "abc", "-1", "+80", "80x", ""};
    for (size_t i = 0; i < BASE_ARRAY_LEN(bad_ports); i++) {
        char want[64];
        snprintf(want, sizeof want, "invalid value \"%s\" for flag -http-port", bad_ports[i]);
        LOAD_BAD(f, want, "must be a port number 1..65535", "-dev", "-http-port", bad_ports[i]);
    }
    LOAD_BAD(f, "for flag -dns-port", "must be a port number", "-dev", "-dns-port=99999");
    LOAD_BAD(f, "for flag -server-port", "must be a port number", "-dev", "-server-port=x");
    LOAD_BAD(f, "for flag -serf-lan-port", "must be a port number", "-dev", "-serf-lan-port=0");
    LOAD_OK(f, "-dev", "-http-port", "65535", "-dns-port", "1");
    assert_int_equal(f->cfg.http_port, 65535);
    assert_int_equal(f->cfg.dns_port, 1);

    LOAD_BAD(f, "invalid value \"loud\" for flag -log-level", NULL, "-dev", "-log-level", "loud");
    LOAD_BAD(f, "invalid value \"ten\" for flag -bootstrap-expect", NULL, "-server", "-data-dir",
             f->dir, "-bootstrap-expect", "ten");
    LOAD_BAD(f, "invalid value \"10\" for flag -bootstrap-expect", NULL, "-server", "-data-dir",
             f->dir, "-bootstrap-expect", "10");
}

static void test_validation_errors(void **state)
{
    struct fx *f = *state;
    LOAD_BAD(f, "node_name (-node) \"my.node\" is not a valid DNS label", NULL, "-dev", "-node",
             "my.node");
    LOAD_BAD(f, "node_name (-node) \"-n\"", "not a valid DNS label", "-dev", "-node=-n");
    LOAD_BAD(f, "node_name (-node) \"n-\"", "not a valid DNS label", "-dev", "-node", "n-");
    LOAD_BAD(f, "node_name (-node) \"a b\"", "not a valid DNS label", "-dev", "-node", "a b");
    char long_name[65];
    memset(long_name, 'n', 64);
    long_name[64] = '\0';
    LOAD_BAD(f, "not a valid DNS label", NULL, "-dev", "-node", long_name);
    long_name[63] = '\0'; /* 63 is fine */
    LOAD_OK(f, "-dev", "-node", long_name);
    LOAD_OK(f, "-dev", "-node", "Node_1-a");

    LOAD_BAD(f, "datacenter (-datacenter) \"dc.1\" is not a valid DNS label", NULL, "-dev",
             "-datacenter", "dc.1");
    LOAD_BAD(f, "bind_addr (-bind) \"localhost\" is not an IP address", NULL, "-dev", "-bind",
             "localhost");
    LOAD_BAD(f, "client_addr (-client) \"127.0.0.1 ::1\" is not an IP address", NULL, "-dev",
             "-client", "127.0.0.1 ::1");
    LOAD_BAD(f, "advertise_addr (-advertise) \"10.0.0\" is not an IP address", NULL, "-dev",
             "-advertise", "10.0.0");

    LOAD_BAD(f, "data_dir is required", NULL, "-server");
    LOAD_BAD(f, "data_dir is required", NULL, "-server", "-bootstrap-expect", "1");
    /* without -server the agent is a client: bootstrap_expect is a server's (Consul's text) */
    LOAD_BAD(f, "'bootstrap_expect > 0' requires 'server = true'", NULL, "-data-dir", f->dir,
             "-bootstrap-expect", "3");
    check_bad(f, load(f, NULL), "data_dir is required", NULL); /* no flags at all */

    /* the other servers may come by `herald join` rather than -retry-join (as Consul) */
    LOAD_OK(f, "-server", "-data-dir", f->dir, "-bootstrap-expect", "3");
    assert_int_equal(f->cfg.bootstrap_expect, 3);
    LOAD_OK(f, "-server", "-data-dir", f->dir, "-serf-lan-bind", "127.0.0.9", "-retry-interval",
            "2s", "-retry-max", "5");
    assert_string_equal(f->cfg.serf_lan_addr, "127.0.0.9");
    assert_int_equal(f->cfg.retry_interval_ms, 2000);
    assert_int_equal(f->cfg.retry_max, 5);
    LOAD_BAD(f, "reconnect_timeout", NULL, "-server", "-data-dir", f->dir, "-config-file",
             write_file(f, "rt.json", "{\"reconnect_timeout\": \"1h\"}"));
    LOAD_OK(f, "-server", "-data-dir", f->dir, "-bootstrap-expect", "3", "-retry-join", "127.0.0.2",
            "-retry-join", "127.0.0.3");
    assert_int_equal(f->cfg.bootstrap_expect, 3);
    /* join addresses without -bootstrap-expect: join a running cluster, never bootstrap */
    LOAD_OK(f, "-server", "-data-dir", f->dir, "-retry-join", "127.0.0.2");
    assert_int_equal(f->cfg.bootstrap_expect, 0);
    LOAD_OK(f, "-server", "-data-dir", f->dir, "-bootstrap-expect", "1");
    assert_int_equal(f->cfg.bootstrap_expect, 1);
    LOAD_OK(f, "-server", "-data-dir", f->dir, "-bootstrap-expect", "0");
    assert_int_equal(f->cfg.bootstrap_expect, 0);
}

/* ---- config files ---------------------------------------------------------------------- */

static void test_config_file_keys(void **state)
{
    struct fx *f = *state;
    char json[2048];
    snprintf(json, sizeof json,
             "{\"datacenter\": \"west\", \"node_name\": \"file-node\", \"data_dir\": \"%s\", "
             "\"bind_addr\": \"127.0.0.2\", \"advertise_addr\": \"127.0.0.3\", "
             "\"client_addr\": \"0.0.0.0\", \"domain\": \"example.\", \"alt_domain\": \"alt.\", "
             "\"server\": true, \"bootstrap_expect\": 1, \"log_level\": \"DEBUG\", "
             "\"log_json\": true, \"retry_join\": [\"a\", \"b\"], "
             "\"recursors\": [\"9.9.9.9\"], "
             "\"ports\": {\"http\": 18500, \"dns\": 18600, \"server\": 18300, "
             "\"serf_lan\": 18301}, "
             "\"addresses\": {\"http\": \"127.0.0.4\", \"dns\": \"127.0.0.5\"}, "
             "\"raft_snapshot_threshold\": 1000, \"raft_trailing_logs\": 500, "
             "\"limits\": {\"http_max_conns\": 100, \"http_header_timeout\": \"5s\", "
             "\"http_idle_timeout\": \"2m\", \"http_max_conns_per_client\": 7, "
             "\"http_body_timeout\": \"45s\"}, "
             "\"services\": [{\"name\": \"web\", \"port\": 80}, {\"Name\": \"db\"}], "
             "\"service\": {\"name\": \"cache\"}}",
             f->dir);
    const char *p = cfg_file(f, "all.json", json);
    LOAD_OK(f, "-config-file", p);
    assert_false(f->cfg.dev);
    assert_true(f->cfg.server);
    assert_string_equal(f->cfg.datacenter, "west");
    assert_string_equal(f->cfg.node_name, "file-node");
    assert_string_equal(f->cfg.data_dir, f->dir);
    assert_string_equal(f->cfg.bind_addr, "127.0.0.2");
    assert_string_equal(f->cfg.advertise_addr, "127.0.0.3");
    assert_string_equal(f->cfg.client_addr, "0.0.0.0");
    assert_string_equal(f->cfg.http_addr, "127.0.0.4");
    assert_string_equal(f->cfg.domain, "example.");
    assert_string_equal(f->cfg.alt_domain, "alt.");
    assert_int_equal(f->cfg.bootstrap_expect, 1);
    assert_int_equal(f->cfg.log_level, BASE_LOG_DEBUG);
    assert_true(f->cfg.log_json);
    assert_int_equal(f->cfg.retry_join.n, 2);
    assert_string_equal(f->cfg.retry_join.v[0], "a");
    assert_string_equal(f->cfg.retry_join.v[1], "b");
    assert_int_equal(f->cfg.recursors.n, 1);
    assert_string_equal(f->cfg.recursors.v[0], "9.9.9.9");
    assert_int_equal(f->cfg.http_port, 18500);
    assert_int_equal(f->cfg.dns_port, 18600);
    assert_int_equal(f->cfg.server_port, 18300);
    assert_int_equal(f->cfg.serf_lan_port, 18301);
    assert_int_equal(f->cfg.raft_snapshot_threshold, 1000);
    assert_int_equal(f->cfg.raft_snapshot_trailing, 500);
    assert_true(f->cfg.http_max_conns == 100);
    assert_true(f->cfg.http_header_timeout_ms == 5000);
    assert_true(f->cfg.http_idle_timeout_ms == 120000);
    assert_true(f->cfg.http_max_conns_per_client == 7);
    assert_true(f->cfg.http_body_timeout_ms == 45000);
    /* service definitions are kept as JSON text, for admin/api to decode */
    assert_int_equal(f->cfg.services.n, 3);
    assert_string_equal(f->cfg.services.v[0], "{\"name\":\"web\",\"port\":80}");
    assert_string_equal(f->cfg.services.v[1], "{\"Name\":\"db\"}");
    assert_string_equal(f->cfg.services.v[2], "{\"name\":\"cache\"}");

    /* -config-file=path works too, and an empty object changes nothing */
    char arg[256];
    snprintf(arg, sizeof arg, "-config-file=%s", cfg_file(f, "empty.json", "{}"));
    LOAD_OK(f, "-dev", arg);
    assert_string_equal(f->cfg.datacenter, "dc1");
    assert_int_equal(f->cfg.http_port, 8500);
}

static void test_config_file_order(void **state)
{
    struct fx *f = *state;
    const char *a = cfg_file(f, "a.json",
                             "{\"datacenter\": \"dc-a\", \"node_name\": \"node-a\", "
                             "\"retry_join\": [\"from-a\"], \"service\": {\"name\": \"sa\"}}");
    const char *b = cfg_file(f, "b.json",
                             "{\"datacenter\": \"dc-b\", \"retry_join\": [\"from-b\"], "
                             "\"service\": {\"name\": \"sb\"}}");
    /* files apply in argv order: the later one wins, lists accumulate */
    LOAD_OK(f, "-dev", "-config-file", a, "-config-file", b);
    assert_string_equal(f->cfg.datacenter, "dc-b");
    assert_string_equal(f->cfg.node_name, "node-a");
    assert_int_equal(f->cfg.retry_join.n, 2);
    assert_string_equal(f->cfg.retry_join.v[0], "from-a");
    assert_string_equal(f->cfg.retry_join.v[1], "from-b");
    assert_int_equal(f->cfg.services.n, 2);

    LOAD_OK(f, "-dev", "-config-file", b, "-config-file", a);
    assert_string_equal(f->cfg.datacenter, "dc-a");
    assert_string_equal(f->cfg.retry_join.v[0], "from-b");
    assert_string_equal(f->cfg.retry_join.v[1], "from-a");
}

static void test_config_dir_name_order(void **state)
{
    struct fx *f = *state;
    const char *d = make_dir(f, "conf.d");
    /* written out of order: the loader sorts by name */
    write_file(f, "conf.d/20-b.json", "{\"datacenter\": \"dc-b\", \"retry_join\": [\"b\"]}");
    write_file(f, "conf.d/10-a.json",
               "{\"datacenter\": \"dc-a\", \"node_name\": \"node-a\", \"retry_join\": [\"a\"]}");
    write_file(f, "conf.d/30-c.json", "{\"retry_join\": [\"c\"], \"node_name\": \"node-c\"}");
    /* only *.json files are read */
    write_file(f, "conf.d/00-z.hcl", "this is not json");
    write_file(f, "conf.d/README", "not json either");
    write_file(f, "conf.d/.json", "{\"bogus\": 1}"); /* no name before the extension */
    write_file(f, "conf.d/x.json.bak", "{\"bogus\": 1}");

    LOAD_OK(f, "-dev", "-config-dir", d);
    assert_string_equal(f->cfg.datacenter, "dc-b");
    assert_string_equal(f->cfg.node_name, "node-c");
    assert_int_equal(f->cfg.retry_join.n, 3);
    assert_string_equal(f->cfg.retry_join.v[0], "a");
    assert_string_equal(f->cfg.retry_join.v[1], "b");
    assert_string_equal(f->cfg.retry_join.v[2], "c");

    /* -config-file and -config-dir interleave in argv order */
    const char *late = cfg_file(f, "late.json", "{\"datacenter\": \"dc-late\"}");
    char arg[256];
    snprintf(arg, sizeof arg, "--config-dir=%s", d);
    LOAD_OK(f, "-dev", arg, "-config-file", late);
    assert_string_equal(f->cfg.datacenter, "dc-late");
    LOAD_OK(f, "-dev", "-config-file", late, "-config-dir", d);
    assert_string_equal(f->cfg.datacenter, "dc-b");

    /* an empty directory is fine */
    const char *empty = make_dir(f, "empty.d");
    LOAD_OK(f, "-dev", "-config-dir", empty);
    assert_string_equal(f->cfg.datacenter, "dc1");
}

static void test_flags_override_files(void **state)
{
    struct fx *f = *state;
    char json[512];
    snprintf(json, sizeof json,
             "{\"node_name\": \"file-node\", \"datacenter\": \"file-dc\", \"server\": true, "
             "\"data_dir\": \"%s\", \"log_level\": \"warn\", \"log_json\": true, "
             "\"ports\": {\"http\": 18500}, \"retry_join\": [\"file-peer\"]}",
             f->dir);
    const char *p = cfg_file(f, "base.json", json);
    const char *d = make_dir(f, "d");
    write_file(f, "d/x.json", "{\"node_name\": \"dir-node\"}");

    /* flags after the file */
    LOAD_OK(f, "-config-file", p, "-node", "flag-node", "-http-port", "9500", "-log-level", "err",
            "-log-json=false", "-retry-join", "flag-peer");
    assert_string_equal(f->cfg.node_name, "flag-node");
    assert_string_equal(f->cfg.datacenter, "file-dc");
    assert_int_equal(f->cfg.http_port, 9500);
    assert_int_equal(f->cfg.log_level, BASE_LOG_ERR);
    assert_false(f->cfg.log_json);
    /* lists: the file's entries, then the flags' */
    assert_int_equal(f->cfg.retry_join.n, 2);
    assert_string_equal(f->cfg.retry_join.v[0], "file-peer");
    assert_string_equal(f->cfg.retry_join.v[1], "flag-peer");

    /* flags before the file win just the same */
    LOAD_OK(f, "-node", "flag-node", "-http-port=9500", "-config-file", p, "-config-dir", d);
    assert_string_equal(f->cfg.node_name, "flag-node");
    assert_int_equal(f->cfg.http_port, 9500);
    assert_true(f->cfg.server);

    LOAD_OK(f, "-config-file", p, "-config-dir", d);
    assert_string_equal(f->cfg.node_name, "dir-node");
    assert_int_equal(f->cfg.http_port, 18500);
    assert_int_equal(f->cfg.log_level, BASE_LOG_WARN);
}

static void test_config_file_errors(void **state)
{
    struct fx *f = *state;
    const char *p;

    p = cfg_file(f, "unknown.json", "{\"datacenter\": \"dc1\", \"bogus_key\": 1}");
    LOAD_BAD(f, "unknown key \"bogus_key\"", p, "-dev", "-config-file", p);
    p = cfg_file(f, "ports.json", "{\"ports\": {\"http\": 8500, \"nope\": 1}}");
    LOAD_BAD(f, "unknown key \"ports.nope\"", p, "-dev", "-config-file", p);
    p = cfg_file(f, "addresses.json", "{\"addresses\": {\"grpc\": \"127.0.0.1\"}}");
    LOAD_BAD(f, "unknown key \"addresses.grpc\"", p, "-dev", "-config-file", p);
    p = cfg_file(f, "limits.json", "{\"limits\": {\"rpc_rate\": 10}}");
    LOAD_BAD(f, "unknown key \"limits.rpc_rate\"", p, "-dev", "-config-file", p);
    /* keys are Consul's snake_case, exactly */
    p = cfg_file(f, "case.json", "{\"Datacenter\": \"dc1\"}");
    LOAD_BAD(f, "unknown key \"Datacenter\"", NULL, "-dev", "-config-file", p);
    /* ports are per-protocol only under "ports" */
    p = cfg_file(f, "crossed.json", "{\"addresses\": {\"serf_lan\": \"127.0.0.1\"}}");
    LOAD_BAD(f, "unknown key \"addresses.serf_lan\"", NULL, "-dev", "-config-file", p);

    p = cfg_file(f, "loglevel.json", "{\"log_level\": \"loud\"}");
    LOAD_BAD(f, "\"log_level\" must be one of", p, "-dev", "-config-file", p);
    p = cfg_file(f, "loglevel2.json", "{\"log_level\": 3}");
    LOAD_BAD(f, "\"log_level\" must be one of", NULL, "-dev", "-config-file", p);

    p = cfg_file(f, "port0.json", "{\"ports\": {\"http\": 0}}");
    LOAD_BAD(f, "\"ports.http\" must be a port number 1..65535", p, "-dev", "-config-file", p);
    p = cfg_file(f, "portbig.json", "{\"ports\": {\"dns\": 65536}}");
    LOAD_BAD(f, "\"ports.dns\" must be a port number", NULL, "-dev", "-config-file", p);
    p = cfg_file(f, "portstr.json", "{\"ports\": {\"server\": \"8300\"}}");
    LOAD_BAD(f, "\"ports.server\" must be a port number", NULL, "-dev", "-config-file", p);
    p = cfg_file(f, "portneg.json", "{\"ports\": {\"serf_lan\": -1}}");
    LOAD_BAD(f, "\"ports.serf_lan\" must be a port number", NULL, "-dev", "-config-file", p);
    p = cfg_file(f, "portsobj.json", "{\"ports\": 8500}");
    LOAD_BAD(f, "\"ports\" must be an object", NULL, "-dev", "-config-file", p);
    p = cfg_file(f, "addrobj.json", "{\"addresses\": []}");
    LOAD_BAD(f, "\"addresses\" must be an object", NULL, "-dev", "-config-file", p);
}

static void test_config_file_type_errors(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"datacenter\": 1}", "\"datacenter\" must be a string"},
        {"{\"node_name\": null}", "\"node_name\" must be a string"},
        {"{\"data_dir\": [\"/x\"]}", "\"data_dir\" must be a string"},
        {"{\"bind_addr\": true}", "\"bind_addr\" must be a string"},
        {"{\"server\": \"yes\"}", "\"server\" must be true or false"},
        {"{\"server\": 1}", "\"server\" must be true or false"},
        {"{\"log_json\": 1}", "\"log_json\" must be true or false"},
        {"{\"bootstrap_expect\": 10}", "\"bootstrap_expect\" must be 0..9"},
        {"{\"bootstrap_expect\": -1}", "\"bootstrap_expect\" must be 0..9"},
        {"{\"bootstrap_expect\": \"1\"}", "\"bootstrap_expect\" must be 0..9"},
        {"{\"retry_join\": \"10.0.0.1\"}", "\"retry_join\" must be an array of strings"},
        {"{\"retry_join\": [\"a\", 1]}", "\"retry_join\" must be an array of strings"},
        {"{\"recursors\": {}}", "\"recursors\" must be an array of strings"},
        {"{\"addresses\": {\"http\": 1}}", "\"addresses.http\" must be a string"},
        {"{\"addresses\": {\"dns\": 1}}", "\"addresses.dns\" must be a string"},
        {"{\"raft_snapshot_threshold\": 0}", "\"raft_snapshot_threshold\" must be 1..100000000"},
        {"{\"raft_trailing_logs\": 100000001}", "\"raft_trailing_logs\" must be 1..100000000"},
        {"{\"raft_trailing_logs\": \"10\"}", "\"raft_trailing_logs\" must be 1..100000000"},
        {"{\"limits\": 1}", "\"limits\" must be an object"},
        {"{\"limits\": {\"http_max_conns\": 0}}", "\"limits.http_max_conns\" must be 1..1000000"},
        {"{\"limits\": {\"http_max_conns\": 1000001}}", "\"limits.http_max_conns\""},
        {"{\"limits\": {\"http_header_timeout\": \"soon\"}}",
         "\"limits.http_header_timeout\" must be a duration"},
        {"{\"limits\": {\"http_idle_timeout\": \"0s\"}}",
         "\"limits.http_idle_timeout\" must be a duration"},
        {"{\"limits\": {\"http_idle_timeout\": 5}}", "\"limits.http_idle_timeout\""},
        {"{\"limits\": {\"http_max_conns_per_client\": 0}}",
         "\"limits.http_max_conns_per_client\" must be 1..1000000"},
        {"{\"limits\": {\"http_max_conns_per_client\": \"5\"}}",
         "\"limits.http_max_conns_per_client\""},
        {"{\"limits\": {\"http_body_timeout\": \"0s\"}}",
         "\"limits.http_body_timeout\" must be a duration"},
        {"{\"limits\": {\"http_body_timeout\": \"25h\"}}",
         "must be a duration such as \"10s\", from 1ms to 24h"},
        {"{\"services\": {\"name\": \"web\"}}", "\"services\" must be an array"},
        {"{\"services\": [\"web\"]}", "each of \"services\" must be an object"},
        {"{\"service\": [\"web\"]}", "each of \"services\" must be an object"},
    };
    for (size_t i = 0; i < BASE_ARRAY_LEN(cases); i++) {
        char name[32];
        snprintf(name, sizeof name, "t%zu.json", i);
        const char *p = cfg_file(f, name, cases[i].json);
        LOAD_BAD(f, cases[i].want, p, "-dev", "-config-file", p);
        assert_int_equal(remove(p), 0);
        f->n_paths--;
    }
}

/* ---- recursion ------------------------------------------------------------------------- */

static void test_recursion_defaults_and_keys(void **state)
{
    struct fx *f = *state;
    LOAD_OK(f, "-dev");
    assert_int_equal(f->cfg.recursors.n, 0);
    assert_int_equal(f->cfg.dns.recursion, RSV_RECURSION_FORWARD);
    assert_int_equal(f->cfg.dns.recursor_timeout_ms, 2000);
    assert_int_equal(f->cfg.dns.cache_size, 32u << 20);
    assert_int_equal(f->cfg.dns.recursor_max_queries, 1000);
    assert_false(f->cfg.dns.dnssec_validation);
    assert_null(f->cfg.dns.allow); /* the resolver's default list */

    const char *ta = write_file(f, "ta.ds", ". IN DS 1 8 2 00\n");
    const char *hints = write_file(f, "root.hints", ". NS a.root.\n");
    char json[1024];
    snprintf(json, sizeof json,
             "{\"recursors\": [\"10.0.0.2\", \"[::1]:5353\"], \"dns_config\": {"
             "\"recursor_timeout\": \"1500ms\", \"cache_size\": \"8MB\", "
             "\"recursor_max_queries\": 50, \"dnssec_validation\": true, "
             "\"trust_anchor\": \"%s\", \"allow_recursion\": [\"10.0.0.0/8\", \"fd00::/8\"]}}",
             ta);
    const char *p = cfg_file(f, "rec.json", json);
    LOAD_OK(f, "-dev", "-config-file", p, "-recursor", "192.0.2.1:54");
    assert_int_equal(f->cfg.recursors.n, 3); /* file and flags are merged, as Consul does */
    assert_string_equal(f->cfg.recursors.v[2], "192.0.2.1:54");
    assert_int_equal(f->cfg.dns.recursor_timeout_ms, 1500);
    assert_int_equal(f->cfg.dns.cache_size, 8000000);
    assert_int_equal(f->cfg.dns.recursor_max_queries, 50);
    assert_true(f->cfg.dns.dnssec_validation);
    assert_string_equal(f->cfg.dns.trust_anchor, ta);
    assert_int_equal(f->cfg.dns.n_allow, 2);
    assert_int_equal(f->cfg.dns.allow[1].family, AF_INET6);

    /* -allow-recursion replaces the file's list */
    LOAD_OK(f, "-dev", "-config-file", p, "-allow-recursion", "192.0.2.0/24",
            "-allow-recursion=127.0.0.1");
    assert_int_equal(f->cfg.dns.n_allow, 2);
    assert_int_equal(f->cfg.dns.allow[0].prefix, 24);
    assert_int_equal(f->cfg.dns.allow[1].prefix, 32);

    snprintf(json, sizeof json,
             "{\"dns_config\": {\"recursion\": \"iterative\", \"root_hints\": \"%s\", "
             "\"cache_size\": 4194304}}",
             hints);
    p = cfg_file(f, "iter.json", json);
    LOAD_OK(f, "-dev", "-config-file", p);
    assert_int_equal(f->cfg.dns.recursion, RSV_RECURSION_ITERATIVE);
    assert_string_equal(f->cfg.dns.root_hints, hints);
    assert_int_equal(f->cfg.dns.cache_size, 4194304);

    /* validation without a trust anchor: Debian's root key, when it is there */
    p = cfg_file(f, "dnssec.json", "{\"dns_config\": {\"dnssec_validation\": true}}");
    if (access("/usr/share/dns/root.key", R_OK) == 0) {
        LOAD_OK(f, "-dev", "-config-file", p);
        assert_string_equal(f->cfg.dns.trust_anchor, "/usr/share/dns/root.key");
    } else {
        LOAD_BAD(f, "dns_config.dnssec_validation needs dns_config.trust_anchor", NULL, "-dev",
                 "-config-file", p);
    }
}

static void test_recursion_errors(void **state)
{
    struct fx *f = *state;
    LOAD_BAD(f, "recursors (-recursor) \"dns.example\"", "-recursor", "-dev", "-recursor",
             "dns.example");
    LOAD_BAD(f, "recursors (-recursor) \"10.0.0.1:0\"", NULL, "-dev", "-recursor", "10.0.0.1:0");
    LOAD_BAD(f, "-allow-recursion \"10.0.0.0/40\"", NULL, "-dev", "-allow-recursion",
             "10.0.0.0/40");
    LOAD_BAD(f, "-allow-recursion \"10.0.0.1/8\"", NULL, "-dev", "-allow-recursion", "10.0.0.1/8");
    LOAD_BAD(f, "flag needs an argument: -allow-recursion", NULL, "-dev", "-allow-recursion");

    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"recursors\": [\"10.0.0.1:x\"]}", "\"recursors\": \"10.0.0.1:x\" is not"},
        {"{\"dns_config\": {\"recursion\": \"forwarding\"}}",
         "\"dns_config.recursion\" must be \"forward\" or \"iterative\""},
        {"{\"dns_config\": {\"recursion\": 1}}", "\"dns_config.recursion\""},
        {"{\"recursors\": [\"10.0.0.1\"], \"dns_config\": {\"recursion\": \"iterative\"}}",
         "dns_config.recursion \"iterative\" resolves from the root"},
        {"{\"dns_config\": {\"root_hints\": \"/etc/hostname\"}}",
         "dns_config.root_hints is only for dns_config.recursion \"iterative\""},
        {"{\"dns_config\": {\"recursion\": \"iterative\", \"root_hints\": \"/no/such\"}}",
         "dns_config.root_hints \"/no/such\" is not a file it can read"},
        {"{\"dns_config\": {\"root_hints\": 5}}", "\"dns_config.root_hints\" must be a string"},
        {"{\"dns_config\": {\"dnssec_validation\": 1}}",
         "\"dns_config.dnssec_validation\" must be true or false"},
        {"{\"dns_config\": {\"trust_anchor\": \"/etc/hostname\"}}",
         "dns_config.trust_anchor needs dns_config.dnssec_validation true"},
        {"{\"dns_config\": {\"dnssec_validation\": true, \"trust_anchor\": \"/no/such\"}}",
         "dns_config.trust_anchor \"/no/such\" is not a file it can read"},
        {"{\"dns_config\": {\"cache_size\": \"big\"}}", "\"dns_config.cache_size\" must be a size"},
        {"{\"dns_config\": {\"cache_size\": \"512KB\"}}", "\"dns_config.cache_size\""},
        {"{\"dns_config\": {\"cache_size\": \"1TB\"}}", "\"dns_config.cache_size\""},
        {"{\"dns_config\": {\"cache_size\": -1}}", "\"dns_config.cache_size\""},
        {"{\"dns_config\": {\"recursor_max_queries\": 0}}",
         "\"dns_config.recursor_max_queries\" must be 1..65535"},
        {"{\"dns_config\": {\"recursor_timeout\": \"0s\"}}",
         "\"dns_config.recursor_timeout\" must be a duration such as \"10s\", from 1ms to 1m"},
        {"{\"dns_config\": {\"recursor_timeout\": \"2m\"}}", "\"dns_config.recursor_timeout\""},
        {"{\"dns_config\": {\"allow_recursion\": \"10.0.0.0/8\"}}",
         "\"dns_config.allow_recursion\" must be an array of strings"},
        {"{\"dns_config\": {\"allow_recursion\": [\"10.0.0.0/8\", \"x\"]}}",
         "\"dns_config.allow_recursion\": \"x\" is not a network"},
    };
    for (size_t i = 0; i < BASE_ARRAY_LEN(cases); i++) {
        char name[32];
        snprintf(name, sizeof name, "r%zu.json", i);
        const char *p = cfg_file(f, name, cases[i].json);
        LOAD_BAD(f, cases[i].want, NULL, "-dev", "-config-file", p);
        assert_int_equal(remove(p), 0);
        f->n_paths--;
    }
    /* a bad entry is refused, naming its file, even when a later file replaces the list */
    const char *a = cfg_file(f, "a.json", "{\"dns_config\": {\"allow_recursion\": [\"x\"]}}");
    const char *b =
        cfg_file(f, "b.json", "{\"dns_config\": {\"allow_recursion\": [\"10.0.0.0/8\"]}}");
    LOAD_BAD(f, a, "\"x\" is not a network", "-dev", "-config-file", a, "-config-file", b);
}

static void test_config_file_unreadable(void **state)
{
    struct fx *f = *state;
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing.json", f->dir);
    LOAD_BAD(f, missing, NULL, "-dev", "-config-file", missing);

    const char *p = cfg_file(f, "broken.json", "{\"datacenter\": \"dc1\",\n\"node_name\": }");
    LOAD_BAD(f, p, "(line 2)", "-dev", "-config-file", p);
    p = cfg_file(f, "array.json", "[\"datacenter\"]");
    LOAD_BAD(f, "top level must be an object", p, "-dev", "-config-file", p);
    p = cfg_file(f, "dup.json", "{\"datacenter\": \"a\", \"datacenter\": \"b\"}");
    LOAD_BAD(f, p, "duplicate", "-dev", "-config-file", p);
    p = cfg_file(f, "blank.json", "");
    LOAD_BAD(f, p, NULL, "-dev", "-config-file", p);

    char nodir[128];
    snprintf(nodir, sizeof nodir, "%s/no-such-dir", f->dir);
    LOAD_BAD(f, "-config-dir", "cannot open", "-dev", "-config-dir", nodir);
    assert_contains(f->err, nodir);

    /* a bad file inside a directory is named */
    const char *d = make_dir(f, "d");
    write_file(f, "d/1-good.json", "{\"datacenter\": \"dc2\"}");
    const char *bad = write_file(f, "d/2-bad.json", "{\"nope\": true}");
    LOAD_BAD(f, bad, "unknown key \"nope\"", "-dev", "-config-dir", d);

    /* a file's value that fails validation is refused like a flag's */
    p = cfg_file(f, "badnode.json", "{\"node_name\": \"a.b\"}");
    LOAD_BAD(f, "node_name (-node) \"a.b\" is not a valid DNS label", NULL, "-dev", "-config-file",
             p);
    p = cfg_file(f, "gossip.json", "{\"gossip_lan\": {\"probe_interval\": \"0s\"}}");
    LOAD_BAD(f, "gossip_lan.probe_interval", NULL, "-data-dir", f->dir, "-server", "-config-file",
             p);
    p = cfg_file(f, "server.json", "{\"server\": true}");
    LOAD_BAD(f, "data_dir is required", NULL, "-config-file", p);
    p = cfg_file(f, "httpaddr.json", "{\"addresses\": {\"http\": \"localhost\"}}");
    LOAD_BAD(f, "addresses.http \"localhost\" is not an IP address", NULL, "-dev", "-config-file",
             p);
}

/* Consul refuses bootstrap_expect in dev mode; it must not be silently dropped. */
static void test_dev_refuses_bootstrap_expect(void **state)
{
    struct fx *f = *state;
    check_bad(f, load(f, "-dev", "-bootstrap-expect", "3", NULL), "dev mode", NULL);
    const char *p = write_file(f, "be.json", "{\"bootstrap_expect\": 3}");
    check_bad(f, load(f, "-dev", "-config-file", p, NULL), "dev mode", NULL);
}

/* -dev logs at debug unless a level was given. */
static void test_dev_log_level(void **state)
{
    struct fx *f = *state;
    LOAD_OK(f, "-dev");
    assert_false(f->cfg.log_level_set);
    LOAD_OK(f, "-dev", "-log-level", "info");
    assert_true(f->cfg.log_level_set);
    assert_int_equal(f->cfg.log_level, BASE_LOG_INFO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_dev_refuses_bootstrap_expect),
        TEST(test_dev_log_level),
        TEST(test_recursion_defaults_and_keys),
        TEST(test_recursion_errors),
        TEST(test_defaults_dev),
        TEST(test_defaults_server),
        TEST(test_flag_syntaxes),
        TEST(test_bool_flags),
        TEST(test_repeated_list_flags),
        TEST(test_flag_errors),
        TEST(test_validation_errors),
        TEST(test_defaults_client),
        TEST(test_config_file_keys),
        TEST(test_config_file_order),
        TEST(test_config_dir_name_order),
        TEST(test_flags_override_files),
        TEST(test_server_port_security),
        TEST(test_config_file_errors),
        TEST(test_config_file_type_errors),
        TEST(test_config_file_unreadable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
