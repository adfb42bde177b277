/* Tests consensus/raft_wire.c: every message type libraft sends decodes into the struct
 * raft_message libraft's own reader would build (entries pointing into one payload, the
 * configuration, the snapshot data); counts, lengths, configurations, indices and terms that
 * do not fit are refused; every truncation of a valid message is incomplete, never read past
 * (each input is copied to a buffer of its exact size, so ASan sees an over-read); nothing
 * leaks on any path; and the term bound lets a lagging server through but not a jump to 2^64.
 *
 * HERALD_WIRE_SEEDS=DIR also writes every valid message (and all of them back to back) into
 * DIR, one file each, after one byte naming the sender (SENDER): the fuzzer's seed corpus
 * (make fuzz; tests/fuzz/raft_wire.c reads the sender from that byte). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/internal.h"
#include "consensus/wire_enc.h"

#define SENDER 7

/* Decodes one message from p/n as raft_stream.c does. 0: complete (m filled, *used bytes);
 * 1: incomplete; <0: refused. */
static int decode(const uint8_t *in, size_t n, struct raft_message *m, size_t *used)
{
    uint8_t *p = malloc(n ? n : 1); /* exact size: ASan catches any read past it */
    memcpy(p, in, n);
    struct cons_wire_pre pre;
    const char *why = NULL;
    size_t plen;
    int rv = 1;
    if (n < CONS_WIRE_PREAMBLE)
        goto out;
    if ((rv = cons__wire_preamble(p, &pre, &why)) != 0)
        goto out;
    rv = 1;
    if (n - CONS_WIRE_PREAMBLE < pre.header_len)
        goto out;
    if ((rv = cons__wire_header(&pre, p + CONS_WIRE_PREAMBLE, SENDER, m, &plen, &why)) != 0) {
        assert_non_null(why);
        goto out;
    }
    size_t off = CONS_WIRE_PREAMBLE + pre.header_len;
    if (n - off < plen) {
        cons__wire_free(m);
        rv = 1;
        goto out;
    }
    if (plen > 0) {
        uint8_t *pl = raft_malloc(plen);
        memcpy(pl, p + off, plen);
        cons__wire_payload(m, pl);
    }
    *used = off + plen;
out:
    free(p);
    return rv;
}

static const struct wenc_server servers3[] = {
    {1, "10.0.0.1:8300", RAFT_VOTER},
    {2, "10.0.0.2:8300", RAFT_VOTER},
    {3, "server-three.example:8300", RAFT_STANDBY},
};

/* Every valid message, one per slot. */
#define N_VALID 9
static void valid(int i, struct wenc *e)
{
    const struct wenc_entry ents[] = {
        {5, RAFT_COMMAND, 24, 0xaa},
        {5, RAFT_BARRIER, 8, 0},
        {6, RAFT_CHANGE, 40, 0x11},
    };
    e->n = 0;
    switch (i) {
    case 0:
        wenc_append(e, 6, 100, 5, 99, ents, 3);
        break;
    case 1:
        wenc_append(e, 6, 100, 5, 99, NULL, 0); /* heartbeat */
        break;
    case 2:
        wenc_append_result(e, 6, 0, 103);
        break;
    case 3:
        wenc_vote(e, 7, SENDER, 103, 6, 1);
        break;
    case 4:
        wenc_vote(e, 7, SENDER, 103, 6, 2); /* pre-vote */
        break;
    case 5:
        wenc_vote_result(e, 7, 1, 1);
        break;
    case 6:
        wenc_snapshot(e, 6, 1000, 5, 990, servers3, 3, 333 * 8);
        break;
    case 7:
        wenc_timeout_now(e, 6, 103, 6);
        break;
    default:
        wenc_append(e, 6, 0, 0, 0, ents + 2, 1);
        break;
    }
}

static void test_valid_messages_decode(void **state)
{
    (void)state;
    struct wenc e;
    struct raft_message m;
    size_t used;

    valid(0, &e);
    assert_int_equal(decode(e.b, e.n, &m, &used), 0);
    assert_int_equal(used, e.n);
    assert_int_equal(m.type, RAFT_APPEND_ENTRIES);
    assert_int_equal(m.append_entries.term, 6);
    assert_int_equal(m.append_entries.prev_log_index, 100);
    assert_int_equal(m.append_entries.prev_log_term, 5);
    assert_int_equal(m.append_entries.leader_commit, 99);
    assert_int_equal(m.append_entries.n_entries, 3);
    struct raft_entry *en = m.append_entries.entries;
    assert_int_equal(en[0].type, RAFT_COMMAND);
    assert_int_equal(en[0].buf.len, 24);
    assert_int_equal(en[1].type, RAFT_BARRIER);
    assert_int_equal(en[2].term, 6);
    assert_ptr_equal(en[0].buf.base, en[0].batch);
    assert_ptr_equal((uint8_t *)en[1].buf.base, (uint8_t *)en[0].buf.base + 24);
    assert_ptr_equal((uint8_t *)en[2].buf.base, (uint8_t *)en[0].buf.base + 32);
    assert_ptr_equal(en[2].batch, en[0].batch);
    assert_int_equal(((uint8_t *)en[0].buf.base)[23], 0xaa);
    assert_int_equal(((uint8_t *)en[2].buf.base)[39], 0x11);
    cons__wire_free(&m);

    valid(1, &e);
    assert_int_equal(decode(e.b, e.n, &m, &used), 0);
    assert_int_equal(m.append_entries.n_entries, 0);
    assert_null(m.append_entries.entries);

    valid(2, &e);
    assert_int_equal(decode(e.b, e.n, &m, &used), 0);
    assert_int_equal(m.type, RAFT_APPEND_ENTRIES_RESULT);
    assert_int_equal(m.append_entries_result.last_log_index, 103);
    assert_int_equal(m.append_entries_result.features, 1);
    assert_int_equal(m.append_entries_result.capacity, 7);

    valid(3, &e);
    assert_int_equal(decode(e.b, e.n, &m, &used), 0);
    assert_int_equal(m.type, RAFT_REQUEST_VOTE);
    assert_int_equal(m.request_vote.candidate_id, SENDER);
    assert_true(m.request_vote.disrupt_leader);
    assert_false(m.request_vote.pre_vote);
    valid(4, &e);
    assert_int_equal(decode(e.b, e.n, &m, &used), 0);
    assert_true(m.request_vote.pre_vote);

    valid(5, &e);
    assert_int_equal(decode(e.b, e.n, &m, &used), 0);
    assert_int_equal(m.type, RAFT_REQUEST_VOTE_RESULT);
    assert_true(m.request_vote_result.vote_granted);
    assert_true(m.request_vote_result.pre_vote);
    assert_int_equal(m.request_vote_result.capacity, 3);

    valid(6, &e);
    assert_int_equal(decode(e.b, e.n, &m, &used), 0);
    assert_int_equal(used, e.n);
    assert_int_equal(m.type, RAFT_INSTALL_SNAPSHOT);
    assert_int_equal(m.install_snapshot.last_index, 1000);
    assert_int_equal(m.install_snapshot.conf_index, 990);
    assert_int_equal(m.install_snapshot.conf.n, 3);
    assert_string_equal(m.install_snapshot.conf.servers[2].address, "server-three.example:8300");
    assert_int_equal(m.install_snapshot.conf.servers[2].role, RAFT_STANDBY);
    assert_int_equal(m.install_snapshot.data.len, 333 * 8);
    assert_int_equal(((uint8_t *)m.install_snapshot.data.base)[100], 100);
    cons__wire_free(&m);

    valid(7, &e);
    assert_int_equal(decode(e.b, e.n, &m, &used), 0);
    assert_int_equal(m.type, RAFT_TIMEOUT_NOW);
    assert_int_equal(m.timeout_now.last_log_index, 103);
}

static void test_every_truncation_is_incomplete(void **state)
{
    (void)state;
    struct wenc e;
    struct raft_message m;
    size_t used;
    for (int i = 0; i < N_VALID; i++) {
        valid(i, &e);
        for (size_t n = 0; n < e.n; n++)
            assert_int_equal(decode(e.b, n, &m, &used), 1);
        assert_int_equal(decode(e.b, e.n, &m, &used), 0);
        cons__wire_free(&m);
    }
}

static void patch64(struct wenc *e, size_t at, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        e->b[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}

static void assert_refused(const struct wenc *e)
{
    struct raft_message m;
    size_t used;
    int rv = decode(e->b, e->n, &m, &used);
    if (rv == 0)
        cons__wire_free(&m);
    assert_true(rv < 0);
}

static void test_malformed_is_refused(void **state)
{
    (void)state;
    struct wenc e;
    const struct wenc_entry one = {5, RAFT_COMMAND, 16, 1};
    struct wenc_entry bad;

    /* the reported crash: 0xffffffff entries, no entry headers */
    valid(1, &e);
    patch64(&e, 16 + 32, 0xffffffffu);
    assert_refused(&e);
    /* count beyond the frame, count below it */
    wenc_append((e.n = 0, &e), 6, 1, 5, 0, &one, 1);
    patch64(&e, 16 + 32, 2);
    assert_refused(&e);
    patch64(&e, 16 + 32, 0);
    assert_refused(&e);
    /* entries: 4 GiB, not padded, empty, over the limit, bad type, term 0, term above the
     * message's */
    uint32_t lens[] = {0xffffffffu, 12, 0, CONS_WIRE_ENTRY_MAX + 8};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        bad = one;
        bad.len = 8;
        wenc_append((e.n = 0, &e), 6, 1, 5, 0, &bad, 1);
        e.b[16 + 40 + 12] = (uint8_t)lens[i];
        e.b[16 + 40 + 13] = (uint8_t)(lens[i] >> 8);
        e.b[16 + 40 + 14] = (uint8_t)(lens[i] >> 16);
        e.b[16 + 40 + 15] = (uint8_t)(lens[i] >> 24);
        assert_refused(&e);
    }
    bad = one;
    bad.type = 9;
    wenc_append((e.n = 0, &e), 6, 1, 5, 0, &bad, 1);
    assert_refused(&e);
    bad = one;
    bad.term = 0;
    wenc_append((e.n = 0, &e), 6, 1, 5, 0, &bad, 1);
    assert_refused(&e);
    bad = one;
    bad.term = 7;
    wenc_append((e.n = 0, &e), 6, 1, 5, 0, &bad, 1);
    assert_refused(&e);
    /* indices near 2^64, prev term above term, nonzero trailer */
    wenc_append((e.n = 0, &e), 6, UINT64_MAX, 5, 0, &one, 1);
    assert_refused(&e);
    wenc_append((e.n = 0, &e), 6, 1, 5, UINT64_MAX - 1, NULL, 0);
    assert_refused(&e);
    wenc_append((e.n = 0, &e), 6, 1, 9, 0, NULL, 0);
    assert_refused(&e);
    wenc_append((e.n = 0, &e), 6, 1, 5, 0, NULL, 0);
    e.b[e.n - 1] = 1;
    assert_refused(&e);

    /* preambles: unknown types, zero and huge header lengths, wrong fixed lengths */
    uint8_t types[] = {0, 7, 255};
    for (size_t i = 0; i < sizeof types; i++) {
        valid(7, &e);
        e.b[0] = types[i];
        assert_refused(&e);
    }
    uint64_t hlens[] = {0, 8, 23, 25, (uint64_t)1 << 63, UINT64_MAX};
    for (size_t i = 0; i < sizeof hlens / sizeof hlens[0]; i++) {
        valid(7, &e);
        patch64(&e, 8, hlens[i]);
        assert_refused(&e);
    }
    valid(0, &e);
    patch64(&e, 8, 48 + 16 * (uint64_t)CONS_WIRE_ENTRIES_MAX + 16);
    assert_refused(&e);

    /* votes: a candidate that is not the sender, terms past the absolute bound */
    wenc_vote((e.n = 0, &e), 7, SENDER + 1, 103, 6, 0);
    assert_refused(&e);
    wenc_vote((e.n = 0, &e), UINT64_MAX - 1, SENDER, 103, 6, 1);
    assert_refused(&e);
    wenc_vote((e.n = 0, &e), 7, SENDER, 103, 8, 0);
    assert_refused(&e);
    wenc_vote_result((e.n = 0, &e), UINT64_MAX - 1, 1, 0);
    assert_refused(&e);
    wenc_append_result((e.n = 0, &e), UINT64_MAX, 0, 1);
    assert_refused(&e);
    wenc_timeout_now((e.n = 0, &e), (uint64_t)1 << 63, 1, 1);
    assert_refused(&e);

    /* snapshots */
    const struct wenc_server dup[] = {{1, "a:1", RAFT_VOTER}, {1, "b:1", RAFT_VOTER}};
    const struct wenc_server dupaddr[] = {{1, "a:1", RAFT_VOTER}, {2, "a:1", RAFT_VOTER}};
    const struct wenc_server zero[] = {{0, "a:1", RAFT_VOTER}};
    const struct wenc_server role[] = {{1, "a:1", 3}};
    const struct wenc_server empty[] = {{1, "", RAFT_VOTER}};
    wenc_snapshot((e.n = 0, &e), 6, 10, 5, 5, dup, 2, 8);
    assert_refused(&e);
    wenc_snapshot((e.n = 0, &e), 6, 10, 5, 5, dupaddr, 2, 8);
    assert_refused(&e);
    wenc_snapshot((e.n = 0, &e), 6, 10, 5, 5, zero, 1, 8);
    assert_refused(&e);
    wenc_snapshot((e.n = 0, &e), 6, 10, 5, 5, role, 1, 8);
    assert_refused(&e);
    wenc_snapshot((e.n = 0, &e), 6, 10, 5, 5, empty, 1, 8);
    assert_refused(&e);
    wenc_snapshot((e.n = 0, &e), 6, 10, 5, 5, servers3, 0, 8); /* no server */
    assert_refused(&e);
    wenc_snapshot((e.n = 0, &e), 6, 10, 5, 11, servers3, 3, 8); /* conf index past last */
    assert_refused(&e);
    wenc_snapshot((e.n = 0, &e), 6, 10, 7, 5, servers3, 3, 8); /* last term above term */
    assert_refused(&e);
    wenc_snapshot((e.n = 0, &e), 6, 0, 5, 0, servers3, 3, 8); /* index 0 */
    assert_refused(&e);
    wenc_snapshot((e.n = 0, &e), 6, 10, 5, 5, servers3, 3, 0); /* no data */
    assert_refused(&e);
    size_t conf_len_at = 16 + 32, conf_at = 16 + 40;
    uint64_t bad_conf_lens[] = {0, 8, 16, (uint64_t)1 << 62, UINT64_MAX};
    for (size_t i = 0; i < sizeof bad_conf_lens / sizeof bad_conf_lens[0]; i++) {
        wenc_snapshot((e.n = 0, &e), 6, 10, 5, 5, servers3, 3, 8);
        patch64(&e, conf_len_at, bad_conf_lens[i]);
        assert_refused(&e);
    }
    uint64_t counts[] = {0, 4, 2, (uint64_t)1 << 40, UINT64_MAX};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        wenc_snapshot((e.n = 0, &e), 6, 10, 5, 5, servers3, 3, 8);
        patch64(&e, conf_at + 1, counts[i]);
        assert_refused(&e);
    }
    wenc_snapshot((e.n = 0, &e), 6, 10, 5, 5, servers3, 3, 8);
    e.b[conf_at] = 2; /* format */
    assert_refused(&e);
    /* an address with no NUL before the end of the configuration */
    const struct wenc_server one_srv[] = {{1, "abcdefg", RAFT_VOTER}};
    wenc_snapshot((e.n = 0, &e), 6, 10, 5, 5, one_srv, 1, 8);
    e.b[conf_at + 9 + 8 + 7] = 'h'; /* the NUL */
    e.b[conf_at + 9 + 8 + 8] = 'i'; /* the role */
    for (size_t k = conf_at + 9 + 8 + 9; k < conf_at + 32; k++)
        e.b[k] = 'j';
    assert_refused(&e);
    /* non-zero padding */
    wenc_snapshot((e.n = 0, &e), 6, 10, 5, 5, one_srv, 1, 8);
    e.b[conf_at + 31] = 1;
    assert_refused(&e);
    /* snapshot sizes: over the bound, 2^64-1 */
    uint64_t data_lens[] = {CONS_WIRE_SNAPSHOT_MAX + 1, UINT64_MAX};
    for (size_t i = 0; i < 2; i++) {
        wenc_snapshot((e.n = 0, &e), 6, 10, 5, 5, servers3, 3, 8);
        patch64(&e, e.n - 8 - 16, data_lens[i]);
        assert_refused(&e);
    }
}

static void test_term_bound(void **state)
{
    (void)state;
    const uint64_t floor = CONS_WIRE_TERM_FLOOR, jump = CONS_WIRE_TERM_JUMP;
    assert_true(cons__wire_term_ok(1, 500)); /* a restarted server, a busy cluster */
    assert_true(cons__wire_term_ok(0, 1));
    assert_true(cons__wire_term_ok(0, floor + jump));
    assert_false(cons__wire_term_ok(0, floor + jump + 1));
    assert_true(cons__wire_term_ok(floor * 4, floor * 4 + jump));
    assert_false(cons__wire_term_ok(floor * 4, floor * 4 + jump + 1));
    assert_true(cons__wire_term_ok(floor * 4, 3)); /* older terms: libraft answers them */
    assert_false(cons__wire_term_ok(0, UINT64_MAX - 1));
    assert_false(cons__wire_term_ok(CONS_WIRE_TERM_MAX, CONS_WIRE_TERM_MAX + 1));
    assert_false(cons__wire_term_ok(UINT64_MAX, UINT64_MAX));
}

static void test_state_checks(void **state)
{
    (void)state;
    struct raft_message m;
    memset(&m, 0, sizeof m);
    m.type = RAFT_APPEND_ENTRIES;
    m.append_entries.term = 5;
    assert_null(cons__wire_check(&m, 5, false));    /* our leader */
    assert_null(cons__wire_check(&m, 4, true));     /* a newer leader: we step down */
    assert_null(cons__wire_check(&m, 6, true));     /* an old one: libraft rejects it */
    assert_non_null(cons__wire_check(&m, 5, true)); /* a second leader in our term */
    m.type = RAFT_INSTALL_SNAPSHOT;
    m.install_snapshot.term = 5;
    assert_non_null(cons__wire_check(&m, 5, true));
    assert_null(cons__wire_check(&m, 5, false));
    m.type = RAFT_REQUEST_VOTE_RESULT;
    m.request_vote_result.term = 7;
    m.request_vote_result.vote_granted = true;
    assert_null(cons__wire_check(&m, 6, false)); /* a pre-vote for our term + 1 */
    assert_non_null(cons__wire_check(&m, 5, false));
    m.request_vote_result.vote_granted = false;
    assert_null(cons__wire_check(&m, 5, false)); /* a refusal from a newer term */
    m.type = RAFT_REQUEST_VOTE;
    m.request_vote.term = UINT64_MAX - 1;
    assert_non_null(cons__wire_check(&m, 5, true));
    m.request_vote.term = CONS_WIRE_TERM_FLOOR + CONS_WIRE_TERM_JUMP + 1;
    assert_non_null(cons__wire_check(&m, 5, true));
    m.request_vote.term = 500;
    assert_null(cons__wire_check(&m, 1, false));
}

static void write_seeds(const char *dir)
{
    struct wenc e, all;
    char path[4096];
    const uint8_t sender = SENDER;
    all.n = 0;
    wenc_u8(&all, sender);
    for (int i = 0; i < N_VALID; i++) {
        valid(i, &e);
        snprintf(path, sizeof path, "%s/raft-%d", dir, i);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(&sender, 1, 1, f), 1);
        assert_int_equal(fwrite(e.b, 1, e.n, f), e.n);
        fclose(f);
        if (all.n + e.n <= sizeof all.b) {
            memcpy(all.b + all.n, e.b, e.n);
            all.n += e.n;
        }
    }
    snprintf(path, sizeof path, "%s/raft-all", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(all.b, 1, all.n, f), all.n);
    fclose(f);
}

static void test_seeds(void **state)
{
    (void)state;
    const char *dir = getenv("HERALD_WIRE_SEEDS");
    if (dir)
        write_seeds(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_messages_decode),
        cmocka_unit_test(test_every_truncation_is_incomplete),
        cmocka_unit_test(test_malformed_is_refused),
        cmocka_unit_test(test_term_bound),
        cmocka_unit_test(test_state_checks),
        cmocka_unit_test(test_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
