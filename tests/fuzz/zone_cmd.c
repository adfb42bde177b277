/* libFuzzer target over the zone commands that Raft carries: zone_cmd_decode of the input,
 * then the input applied as one entry (zone_store_apply, which decodes again) to one store
 * kept across inputs, at a growing index. Every command type is reachable, transactions
 * (ZONE_CMD_TXN) with their node, service, check and KV ops included; the first byte picks
 * whether a fixed valid command (a node, a service, a KV key) goes first in the same entry so
 * that the ops find records to compare with.
 *
 * Besides the sanitizers' findings (reads past the input, leaks, use after free), the target
 * aborts when a decoded command does not encode back to a command that decodes, when the apply
 * fails as a whole (anything but 0: a bad command must fail alone), when a failed TXN's result
 * does not name one of its ops, or when the dry run of that TXN (zone_store_txn_errors, on the
 * store the failure left unchanged) does not fail first at the same op for the same reason.
 *
 * Build and run: make fuzz FUZZ_TARGETS=zone_cmd (FUZZ_SECONDS, default 600). */
#include "zone/zone.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct zone_store *g_store;
static char g_dir[64];
static uint64_t g_idx;
static struct base_buf g_seed;

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "zone_cmd: invariant broken: %s\n", what);
        abort();
    }
}

static void close_store(void)
{
    char cmd[128];
    zone_store_close(g_store);
    base_buf_free(&g_seed);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)!system(cmd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char errmsg[BASE_ERRMSG_LEN];
    (void)argc;
    (void)argv;
    base_log_set_level(BASE_LOG_ERR);
    base_loop_thread_set();
    snprintf(g_dir, sizeof g_dir, "/tmp/herald-fuzz-zone_cmd-XXXXXX");
    if (!mkdtemp(g_dir) || zone_store_open(g_dir, (size_t)1 << 30, &g_store, errmsg)) {
        fprintf(stderr, "zone_cmd: cannot open a store in /tmp\n");
        exit(1);
    }
    /* a node with a service and a check, and a KV key: what the fuzzed ops compare with */
    struct zone_service svc = {
        .node = "n1", .id = "web", .name = "web", .kind = "", .address = "", .port = 80};
    struct zone_cmd c = {.type = ZONE_CMD_REGISTER, .service = &svc};
    c.node.name = "n1";
    c.node.address = "10.0.0.1";
    base_buf_init(&g_seed);
    zone_cmd_encode(&c, &g_seed);
    atexit(close_store);
    return 0;
}

struct first {
    size_t n, op;
    enum zone_txn_why why;
};

static void first_add(void *data, size_t op, enum zone_txn_why why)
{
    struct first *f = data;
    if (f->n++ == 0) {
        f->op = op;
        f->why = why;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct base_arena a;
    struct zone_cmd cmd;
    struct base_buf again;

    base_arena_init(&a);
    base_buf_init(&again);
    if (zone_cmd_decode(data, size, &a, &cmd) == 0) {
        zone_cmd_encode(&cmd, &again);
        struct zone_cmd back;
        check(zone_cmd_decode(again.data, again.len, &a, &back) == 0, "re-encoded command");
        check(back.type == cmd.type, "re-encoded type");
        if (cmd.type == ZONE_CMD_TXN)
            check(back.n_txn == cmd.n_txn && cmd.n_txn >= 1 && cmd.n_txn <= ZONE_TXN_MAX_OPS,
                  "txn op count");
    }
    struct base_slice cmds[2];
    int results[2];
    uint32_t touched;
    size_t n = 0;
    if (size && (data[0] & 1)) {
        cmds[n].p = g_seed.data;
        cmds[n++].n = g_seed.len;
    }
    cmds[n].p = data;
    cmds[n++].n = size;
    int rc = zone_store_apply(g_store, ++g_idx, cmds, n, results, &touched);
    check(rc == 0, "the entry applies (a bad command fails alone)");
    int last = results[n - 1];
    size_t op;
    enum zone_txn_why why;
    if (zone_txn_failed(last, &op, &why)) {
        check(cmd.type == ZONE_CMD_TXN && op < cmd.n_txn, "a txn failure names one of its ops");
        /* the failed txn left the store as it was: its dry run fails first where it did */
        struct first f = {.n = 0};
        check(zone_store_txn_errors(g_store, cmd.txn, cmd.n_txn, first_add, &f) == 0,
              "the dry run runs");
        check(f.n >= 1 && f.op == op && f.why == why, "the dry run agrees with the apply");
    }
    base_buf_free(&again);
    base_arena_close(&a);
    return 0;
}
