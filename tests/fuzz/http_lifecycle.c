/* libFuzzer target over the life of HTTP requests: the real admin/http server and admin/api on a
 * single-node consensus (its Raft log and LMDB catalog in a temp dir, on /dev/shm when there
 * is one), all on one uv loop on this thread, driven by plain non-blocking client sockets.
 *
 * The input is a script of operations, one byte each plus arguments:
 *   open a connection; send a read (an endpoint, ?index none/1/current/huge, ?wait 0/0s/1ns/
 *   1ms/5ms/20ms/30ms/bad, and consistency default/?stale/?consistent/both), pipelined or not; send
 *   a write (KV PUT or DELETE, a catalog register, a user event fired and delivered back, a
 *   transaction);
 *   run the loop N non-blocking iterations; run one blocking iteration bounded by 2 ms (lets
 *   short wait timers fire); read what arrived; close a connection gracefully or with a reset.
 * So the wait timer, the Raft read index, commit wake-ups, write completions and client
 * disconnects happen in every order, under ASan/UBSan. After the script every client goes
 * away, and the loop runs until the server has no connection left: a request that is never
 * finished, or finished twice, shows as a hang (libFuzzer's -timeout), a sanitizer report, or
 * a leak at exit (the harness stops http, consensus and api as the agent does and proves the
 * loop closes).
 *
 * Build and run: make fuzz FUZZ_TARGETS=http_lifecycle (FUZZ_SECONDS, default 600). */
#include "admin/api/api.h"
#include "admin/http/http.h"
#include "consensus/consensus.h"
#include "rpc/rpc.h"
#include "zone/zone.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SLOTS 6

static struct {
    uv_loop_t loop;
    char dir[96], raft_dir[128], zone_dir[128], address[48];
    struct zone_store *store;
    struct rpc *rpc;
    struct cons *cons;
    struct api *api;
    struct http_server *http;
    int port;
    bool stopped;
} g;

static int fds[SLOTS];

static void die(const char *what)
{
    fprintf(stderr, "http_lifecycle: %s\n", what);
    abort();
}

/* The gossip pool of one: a fired user event comes straight back, as gossip delivers ours. */
static int event_loopback(void *data, const struct api_user_event *ev, char *errmsg)
{
    static uint64_t ltime;
    struct api_user_event e = *ev;
    (void)data;
    (void)errmsg;
    e.ltime = ++ltime;
    api_on_user_event(g.api, &e);
    return 0;
}

static void on_applied(void *data, uint64_t index, uint32_t touched)
{
    (void)data;
    if (g.api)
        api_on_applied(g.api, index, touched);
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) ||
        getsockname(s, (struct sockaddr *)&sa, &len))
        die("no free port");
    close(s);
    return ntohs(sa.sin_port);
}

static void guard_cb(uv_timer_t *t)
{
    (void)t;
}

/* One blocking loop iteration that lasts at most ms. */
static void run_once_bounded(unsigned ms)
{
    uv_timer_t t;
    uv_timer_init(&g.loop, &t);
    uv_timer_start(&t, guard_cb, ms, 0);
    uv_run(&g.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&g.loop, UV_RUN_NOWAIT);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void stopped_cb(void *data)
{
    (void)data;
    g.stopped = true;
}

static void cons_stopped(void *data)
{
    (void)data;
    g.cons = NULL;
    api_free(g.api);
    g.api = NULL;
    rpc_stop(g.rpc, stopped_cb, NULL);
    g.rpc = NULL;
}

/* Stops everything as the agent does (http, then consensus, then api) and proves the loop
 * closes, so LeakSanitizer sees any request or waiter that was never released. */
static void shutdown_all(void)
{
    for (int i = 0; i < SLOTS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    g.stopped = false;
    http_server_stop(g.http, stopped_cb, NULL);
    while (!g.stopped)
        run_once_bounded(10);
    g.stopped = false;
    cons_stop(g.cons, cons_stopped, NULL);
    while (!g.stopped)
        run_once_bounded(10);
    uv_run(&g.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&g.loop) != 0)
        die("loop not empty at exit");
    zone_store_close(g.store);
    nftw(g.dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char errmsg[BASE_ERRMSG_LEN] = "";
    (void)argc;
    (void)argv;
    base_log_set_level(BASE_LOG_ERR);
    base_loop_thread_set();
    if (uv_loop_init(&g.loop))
        die("uv_loop_init");
    struct stat st;
    snprintf(g.dir, sizeof g.dir, "%s/herald-fuzz-http-XXXXXX",
             stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(g.dir))
        die("mkdtemp");
    snprintf(g.raft_dir, sizeof g.raft_dir, "%s/raft", g.dir);
    snprintf(g.zone_dir, sizeof g.zone_dir, "%s/zone", g.dir);
    mkdir(g.zone_dir, 0700);
    if (zone_store_open(g.zone_dir, 256u << 20, &g.store, errmsg))
        die(errmsg);
    snprintf(g.address, sizeof g.address, "127.0.0.1:%d", free_port());
    struct rpc_config rc = {.id = 1, .address = g.address};
    if (rpc_start(&g.loop, &rc, &g.rpc, errmsg))
        die(errmsg);
    struct cons_config cc = {
        .dir = g.raft_dir,
        .id = 1,
        .address = g.address,
        .rpc = g.rpc,
        .bootstrap = true,
        .store = g.store,
        .on_applied = on_applied,
    };
    if (cons_start(&g.loop, &cc, &g.cons, errmsg))
        die(errmsg);
    struct api_config ac = {
        .node_name = "fuzz",
        .node_id = "11111111-2222-3333-4444-555555555555",
        .datacenter = "dc1",
        .advertise_addr = "127.0.0.1",
        .server_addr = g.address,
        .client_addr = "127.0.0.1",
        .server = true,
        .raft_id = 1,
        .version = "fuzz",
        .store = g.store,
        .cons = g.cons,
        .gossip = {.event_fire = event_loopback},
    };
    if (api_new(&g.loop, &ac, &g.api))
        die("api_new");
    struct http_config hc = {.host = "127.0.0.1", .port = 0};
    if (http_server_start(&g.loop, &hc, api_handle, g.api, &g.http, errmsg))
        die(errmsg);
    g.port = http_server_port(g.http);
    for (int i = 0; i < 5000 && !cons_is_leader(g.cons); i++)
        run_once_bounded(10);
    if (!cons_is_leader(g.cons))
        die("no leadership");
    for (int i = 0; i < SLOTS; i++)
        fds[i] = -1;
    atexit(shutdown_all);
    return 0;
}

/* ---- the script ------------------------------------------------------------------------ */

struct in {
    const uint8_t *p;
    size_t n;
};

static unsigned take(struct in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static void conn_open(int slot)
{
    if (fds[slot] >= 0)
        return;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)g.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (s < 0)
        die("socket");
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS) {
        close(s);
        return;
    }
    fds[slot] = s;
}

static void conn_close(int slot, bool reset)
{
    if (fds[slot] < 0)
        return;
    if (reset) {
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fds[slot], SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(fds[slot]);
    fds[slot] = -1;
}

static void conn_drain(int slot)
{
    char buf[65536];
    if (fds[slot] < 0)
        return;
    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(fds[slot], buf, sizeof buf, 0);
        if (n == 0) {
            conn_close(slot, false);
            return;
        }
        if (n < 0)
            return;
    }
}

static void conn_send(int slot, const char *text)
{
    conn_open(slot);
    if (fds[slot] >= 0)
        (void)!send(fds[slot], text, strlen(text), MSG_NOSIGNAL);
}

static const char *const paths[] = {
    "/v1/kv/a",
    "/v1/kv/?recurse",
    "/v1/kv/?keys",
    "/v1/catalog/services",
    "/v1/catalog/nodes",
    "/v1/catalog/service/web",
    "/v1/catalog/node/fuzz",
    "/v1/health/state/any",
    "/v1/health/service/web",
    "/v1/health/node/fuzz",
    "/v1/health/checks/web",
    "/v1/snapshot",
    "/v1/agent/services",
    "/v1/status/leader",
    "/v1/operator/raft/configuration",
    "/v1/kv/missing",
    "/v1/catalog/nodes?pretty",
    "/v1/kv/?recurse&pretty",
    "/v1/event/list",
    "/v1/event/list?name=e1",
    "/v1/session/list",
    "/v1/session/node/fuzz",
};
/* Every wait is short and a blocking read always has one (the default is 5 minutes): a client
 * that half-closes after pipelining keeps its parked request until the wait runs out (the
 * server cannot tell a half-close from a close), and every input must end with no
 * connection left. */
static const char *const waits[] = {"&wait=30ms", "&wait=0s",   "&wait=1ns", "&wait=1ms",
                                    "&wait=5ms",  "&wait=20ms", "&wait=0",   "&wait=x"};
static const char *const modes[] = {"", "&stale", "&consistent", "&stale&consistent"};

static void send_read(struct in *in, int slot)
{
    unsigned p = take(in), i = take(in), w = take(in), m = take(in);
    char idx[40] = "";
    switch (i % 4) {
    case 1:
        snprintf(idx, sizeof idx, "index=1");
        break;
    case 2:
        snprintf(idx, sizeof idx, "index=%llu",
                 (unsigned long long)(cons_applied_index(g.cons) + (i >> 2) % 3));
        break;
    case 3:
        snprintf(idx, sizeof idx, "index=18446744073709551615");
        break;
    }
    const char *path = paths[p % (sizeof paths / sizeof *paths)];
    char req[512];
    snprintf(req, sizeof req, "GET %s%s%s%s%s HTTP/1.1\r\nHost: f\r\n%s\r\n", path,
             strchr(path, '?') ? "&" : "?", idx, waits[w % 8], modes[m % 4],
             (p >> 4) & 1 ? "Connection: close\r\n" : "");
    conn_send(slot, req);
}

static void send_write(struct in *in, int slot)
{
    unsigned k = take(in);
    char req[512];
    if (k & 1)
        snprintf(req, sizeof req,
                 "PUT /v1/kv/%c HTTP/1.1\r\nHost: f\r\nContent-Length: 1\r\n\r\n%c", 'a' + k % 3,
                 'x' + (k >> 4) % 3);
    else if (k & 2) {
        char body[128];
        snprintf(body, sizeof body,
                 "{\"Node\":\"n%u\",\"Address\":\"10.0.0.1\",\"Service\":{\"Service\":\"web\"}}",
                 k % 10);
        snprintf(req, sizeof req,
                 "PUT /v1/catalog/register HTTP/1.1\r\nHost: f\r\nContent-Length: %zu\r\n\r\n%s",
                 strlen(body), body);
    } else if ((k >> 2) % 4 == 1) {
        /* a user event: delivered back at once (event_loopback), it wakes parked lists */
        static const char *const filters[] = {"", "?node=fuzz", "?node=other",
                                              "?service=web&tag=x"};
        snprintf(req, sizeof req,
                 "PUT /v1/event/fire/e%u%s HTTP/1.1\r\nHost: f\r\nContent-Length: 1\r\n\r\nz",
                 (k >> 4) % 2, filters[(k >> 5) % 4]);
    } else if ((k >> 2) % 4 == 2) {
        /* a session (tied to no check) or a lock attempt with an unknown session */
        if ((k >> 4) & 1)
            snprintf(req, sizeof req,
                     "PUT /v1/session/create HTTP/1.1\r\nHost: f\r\nContent-Length: 13\r\n\r\n"
                     "{\"Checks\":[]}");
        else
            snprintf(req, sizeof req,
                     "PUT /v1/kv/%c?acquire=s%u HTTP/1.1\r\nHost: f\r\nContent-Length: 1\r\n\r\nl",
                     'a' + k % 3, (k >> 5) % 2);
    } else if ((k >> 4) & 1) {
        /* a transaction: writes, one that fails at its second op, reads only, a node op */
        static const char *const txns[] = {
            "[{\"KV\":{\"Verb\":\"set\",\"Key\":\"a\",\"Value\":\"eA==\"}},"
            "{\"KV\":{\"Verb\":\"cas\",\"Key\":\"b\",\"Index\":0}}]",
            "[{\"KV\":{\"Verb\":\"set\",\"Key\":\"c\"}},"
            "{\"KV\":{\"Verb\":\"check-not-exists\",\"Key\":\"a\"}}]",
            "[{\"KV\":{\"Verb\":\"get-tree\",\"Key\":\"\"}}]",
            "[{\"Node\":{\"Verb\":\"set\",\"Node\":{\"Node\":\"t\",\"Address\":\"10.0.0.9\"}}}]",
        };
        const char *body = txns[(k >> 5) % 4];
        snprintf(req, sizeof req,
                 "PUT /v1/txn HTTP/1.1\r\nHost: f\r\nContent-Length: %zu\r\n\r\n%s", strlen(body),
                 body);
    } else
        snprintf(req, sizeof req, "DELETE /v1/kv/%c HTTP/1.1\r\nHost: f\r\n\r\n", 'a' + k % 3);
    conn_send(slot, req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = {data, size};
    size_t ops = 0;

    while (in.n && ops++ < 64) {
        unsigned op = take(&in);
        int slot = (int)((op >> 4) % SLOTS);
        switch (op % 9) {
        case 0:
            conn_open(slot);
            break;
        case 1:
        case 2:
            send_read(&in, slot);
            break;
        case 3:
            send_write(&in, slot);
            break;
        case 4: {
            unsigned n = take(&in) % 16 + 1;
            for (unsigned i = 0; i < n; i++)
                uv_run(&g.loop, UV_RUN_NOWAIT);
            break;
        }
        case 5:
            run_once_bounded(2);
            break;
        case 6:
            conn_drain(slot);
            break;
        case 7:
            conn_close(slot, false);
            break;
        case 8:
            conn_close(slot, true);
            break;
        }
    }
    /* Every client goes; the server must notice each and release what it held. */
    for (int i = 0; i < SLOTS; i++)
        conn_close(i, i & 1);
    for (int i = 0; i < 400 && http_server_conns(g.http); i++)
        run_once_bounded(5);
    if (http_server_conns(g.http))
        die("connections left after every client went away");
    return 0;
}
