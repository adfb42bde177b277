/* libFuzzer target over the server port (rpc/port.c, call.c, with consensus's methods from
 * consensus/transport.c): a real one-server cluster (id 7, bootstrapped, no key, joins
 * refused) on its rpc, listening on 127.0.0.1; each input is
 * written into one new connection, and the connection is then half-closed, so the server reads
 * it all and closes. The input's first byte picks how:
 *   even: a valid RPC handshake (id 99, our address) comes first and the rest of the input
 *         follows it: frame headers, bodies, HELLO decoding, the refusals of FORWARD, JOIN,
 *         REMOVE and READ_INDEX from a non-member;
 *   odd:  the rest of the input is the handshake itself (after the RPC preamble, which is
 *         forced: Raft streams belong to libraft's reader and its own target);
 *   2 mod 8: after a valid handshake, FOLLOW requests (consensus/replica.c: a client
 *         replica's stream, allowed from loopback): the rest of the input is cut into bodies
 *         (a length byte, then that many bytes), each sent in a well-formed frame, so the
 *         fuzzer works on FOLLOW's decoding, its snapshot pieces and held requests;
 *   6 mod 8: no connection: the rest of the input is a FOLLOW reply as a client replica
 *         receives it (after the status), given to its decoder (cons__follow_reply_check),
 *         which must refuse or accept it without reading outside it.
 * An input is done when the server has closed the connection (bounded: 5 s, then abort).
 * Besides the sanitizers' findings, the server must answer every input by closing, and its
 * loop must go on serving.
 *
 * Build and run: make fuzz FUZZ_TARGETS=server_port (FUZZ_SECONDS, default 600). */
#include "consensus/consensus.h"
#include "consensus/internal.h"
#include "rpc/rpc.h"
#include "zone/zone.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t g_loop;
static struct zone_store *g_store;
static struct rpc *g_rpc;
static struct cons *g_cons;
static char g_root[64];
static int g_port;

static bool refuse_joins(void *data, const struct sockaddr *sa)
{
    (void)data;
    (void)sa;
    return false;
}

/* Client agents (FOLLOW, FORWARD, READ_INDEX) are allowed only in the FOLLOW mode, so that the
 * other modes keep exercising the refusals (and fuzzed writes never reach the store). */
static bool g_clients;
static bool allow_clients(void *data, const struct sockaddr *sa)
{
    (void)data;
    (void)sa;
    return g_clients;
}

static int free_port(void)
{
    uv_tcp_t t;
    struct sockaddr_in sa;
    struct sockaddr_storage got;
    int len = sizeof got;
    uv_tcp_init(&g_loop, &t);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    if (uv_tcp_bind(&t, (const struct sockaddr *)&sa, 0) != 0 ||
        uv_tcp_getsockname(&t, (struct sockaddr *)&got, &len) != 0)
        abort();
    int port = ntohs(((struct sockaddr_in *)&got)->sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    return port;
}

static void rm_tree(const char *root)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
}

/* At exit: stop the cons and free everything, so that leak checks see only real leaks. */
static void teardown(void)
{
    if (!g_cons)
        return;
    cons_stop(g_cons, NULL, NULL);
    g_cons = NULL;
    for (int i = 0; i < 10000 && uv_run(&g_loop, UV_RUN_NOWAIT); i++)
        ;
    rpc_stop(g_rpc, NULL, NULL);
    g_rpc = NULL;
    for (int i = 0; i < 10000 && uv_run(&g_loop, UV_RUN_NOWAIT); i++)
        ;
    zone_store_close(g_store);
    uv_loop_close(&g_loop);
    rm_tree(g_root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char errmsg[BASE_ERRMSG_LEN];
    char path[128], raft[128], addr[64];
    base_log_set_level(BASE_LOG_ERR);
    base_loop_thread_set();
    if (uv_loop_init(&g_loop) != 0)
        abort();
    snprintf(g_root, sizeof g_root, "/tmp/herald-fuzz-port-XXXXXX");
    if (!mkdtemp(g_root))
        abort();
    snprintf(path, sizeof path, "%s/zone", g_root);
    snprintf(raft, sizeof raft, "%s/raft", g_root);
    mkdir(path, 0700);
    if (zone_store_open(path, 64u << 20, &g_store, errmsg) != 0) {
        fprintf(stderr, "zone_store_open: %s\n", errmsg);
        abort();
    }
    g_port = free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", g_port);
    struct rpc_config rc = {.id = 7, .address = addr};
    if (rpc_start(&g_loop, &rc, &g_rpc, errmsg) != 0) {
        fprintf(stderr, "rpc_start: %s\n", errmsg);
        abort();
    }
    struct cons_config cfg = {
        .dir = raft,
        .id = 7,
        .address = addr,
        .rpc = g_rpc,
        .bootstrap = true,
        .store = g_store,
        .join_allowed = refuse_joins,
        .client_allowed = allow_clients,
    };
    if (cons_start(&g_loop, &cfg, &g_cons, errmsg) != 0) {
        fprintf(stderr, "cons_start: %s\n", errmsg);
        abort();
    }
    uint64_t deadline = uv_now(&g_loop) + 5000;
    while (!cons_is_leader(g_cons) && uv_now(&g_loop) < deadline)
        uv_run(&g_loop, UV_RUN_ONCE);
    if (!cons_is_leader(g_cons))
        abort();
    atexit(teardown);
    return 0;
}

/* ---- one connection -------------------------------------------------------------------- */

struct client {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_shutdown_t shutdown;
    uint8_t *out;
    size_t out_len;
    uint8_t in[4096];
    bool eof, closed;
};

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct client *cl = h->data;
    (void)suggested;
    buf->base = (char *)cl->in;
    buf->len = sizeof cl->in; /* replies are read and dropped */
}

static void client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct client *cl = s->data;
    (void)buf;
    if (nread < 0)
        cl->eof = true;
}

static void client_shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

static void client_write_cb(uv_write_t *w, int status)
{
    struct client *cl = w->data;
    if (status == 0)
        uv_shutdown(&cl->shutdown, (uv_stream_t *)&cl->tcp, client_shutdown_cb);
}

static void client_connect_cb(uv_connect_t *req, int status)
{
    struct client *cl = req->data;
    if (status != 0) {
        fprintf(stderr, "connect: %s\n", uv_strerror(status));
        abort();
    }
    uv_read_start((uv_stream_t *)&cl->tcp, client_alloc, client_read);
    uv_buf_t b = uv_buf_init((char *)cl->out, (unsigned)cl->out_len);
    cl->write.data = cl;
    if (uv_write(&cl->write, (uv_stream_t *)&cl->tcp, &b, 1, client_write_cb) != 0)
        cl->eof = true;
}

static void client_closed(uv_handle_t *h)
{
    struct client *cl = h->data;
    cl->closed = true;
}

static size_t put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return (size_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20))
        return 0;
    if (data[0] % 8 == 6) {
        /* a copy of exactly the input, so that ASan sees any read past it */
        uint8_t *body = malloc(size - 1 ? size - 1 : 1);
        memcpy(body, data + 1, size - 1);
        struct cons_follow_reply h;
        const char *why = NULL;
        if (cons__follow_reply_check(body, size - 1, &h, &why) == 0 &&
            h.kind == CONS_FOLLOW_ENTRIES) {
            struct base_rd r = h.entries;
            for (uint32_t i = 0; i < h.n_entries; i++) {
                size_t l;
                base_rd_u64(&r);
                base_rd_bytes(&r, &l);
                if (r.err)
                    abort(); /* checked whole: reading it again cannot fail */
            }
        }
        free(body);
        return 0;
    }
    struct client cl;
    memset(&cl, 0, sizeof cl);
    static const char me[] = "127.0.0.1:9";
    size_t n = 0;
    cl.out = malloc(64 + 17 * size);
    memcpy(cl.out, "HRLDRPC2", 8);
    n = 8;
    if ((data[0] & 1) == 0) {
        n += put_le(cl.out + n, 99, 8);
        n += put_le(cl.out + n, 0, 8);
        n += put_le(cl.out + n, sizeof me - 1, 4);
        n += put_le(cl.out + n, 0, 4);
        memcpy(cl.out + n, me, sizeof me - 1);
        n += sizeof me - 1;
    }
    g_clients = data[0] % 8 == 2;
    if (g_clients) {
        /* FOLLOW frames: u32 length, u8 type 6, 3 zeros, u64 id, body */
        uint64_t id = 1;
        for (size_t i = 1; i < size;) {
            size_t len = data[i++];
            if (len > size - i)
                len = size - i;
            n += put_le(cl.out + n, 12 + len, 4);
            n += put_le(cl.out + n, 6, 4);
            n += put_le(cl.out + n, id++, 8);
            memcpy(cl.out + n, data + i, len);
            n += len;
            i += len;
        }
        cl.out_len = n;
    } else {
        memcpy(cl.out + n, data + 1, size - 1);
        cl.out_len = n + size - 1;
    }

    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", g_port, &sa);
    uv_tcp_init(&g_loop, &cl.tcp);
    cl.tcp.data = &cl;
    cl.connect.data = &cl;
    if (uv_tcp_connect(&cl.connect, &cl.tcp, (const struct sockaddr *)&sa, client_connect_cb))
        abort();
    uint64_t deadline = uv_now(&g_loop) + 5000;
    while (!cl.eof && uv_now(&g_loop) < deadline)
        uv_run(&g_loop, UV_RUN_ONCE);
    if (!cl.eof) {
        fprintf(stderr, "the server neither closed nor finished the connection in 5 s\n");
        abort();
    }
    uv_close((uv_handle_t *)&cl.tcp, client_closed);
    while (!cl.closed)
        uv_run(&g_loop, UV_RUN_ONCE);
    free(cl.out);
    return 0;
}
