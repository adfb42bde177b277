/* libFuzzer target over the server port's Raft decoder (consensus/raft_wire.c): the input is a
 * Raft stream after the handshake, decoded message by message as raft_stream.c does (preamble,
 * header, payload copied into a raft_malloc'd buffer of exactly its size), then freed. The
 * input's first byte picks the sender id (so a vote's candidate matches it or not).
 *
 * Besides the sanitizers' findings (reads past the input, leaks, double frees), every decoded
 * message must hold what libraft relies on, or the target aborts: entries inside the payload,
 * back to back, each within the entry bound; a configuration with at least one server, each
 * with a non-empty NUL-terminated address and a known role; snapshot data of the announced
 * size; terms and indices within the decoder's bounds.
 *
 * Build and run: make fuzz (FUZZ_SECONDS, default 600), seeded with the messages of
 * tests/unit/consensus/test_raft_wire (HERALD_WIRE_SEEDS). */
#include "consensus/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "raft_wire: invariant broken: %s\n", what);
        abort();
    }
}

static void check_message(const struct raft_message *m, size_t plen)
{
    check(cons__wire_term(m) <= CONS_WIRE_TERM_MAX, "term bound");
    switch (m->type) {
    case RAFT_APPEND_ENTRIES: {
        const struct raft_append_entries *a = &m->append_entries;
        check(a->n_entries <= CONS_WIRE_ENTRIES_MAX, "entry count");
        check(a->prev_log_index <= CONS_WIRE_INDEX_MAX, "index bound");
        const uint8_t *batch = a->n_entries ? a->entries[0].batch : NULL;
        size_t off = 0;
        for (unsigned i = 0; i < a->n_entries; i++) {
            const struct raft_entry *e = &a->entries[i];
            check(e->batch == batch, "one batch");
            check(e->buf.len > 0 && e->buf.len <= CONS_WIRE_ENTRY_MAX, "entry length");
            check((const uint8_t *)e->buf.base == batch + off, "entries back to back");
            check(e->term <= a->term, "entry term");
            off += e->buf.len;
        }
        check(off == plen, "entries fill the payload");
        if (off)
            check(batch[off - 1] == batch[off - 1], "payload readable");
        break;
    }
    case RAFT_INSTALL_SNAPSHOT: {
        const struct raft_install_snapshot *s = &m->install_snapshot;
        check(s->conf.n >= 1, "configuration not empty");
        for (unsigned i = 0; i < s->conf.n; i++) {
            size_t n = strlen(s->conf.servers[i].address);
            check(n > 0 && n < 256, "address length");
            check(s->conf.servers[i].id != 0, "server id");
        }
        check(s->data.len == plen && s->data.base, "snapshot data");
        check(s->conf_index <= s->last_index, "configuration index");
        break;
    }
    default:
        check(plen == 0, "no payload");
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint64_t sender = data[0] % 8;
    size_t off = 1;
    while (size - off >= CONS_WIRE_PREAMBLE) {
        struct cons_wire_pre pre;
        struct raft_message m;
        size_t plen;
        const char *why = NULL;
        if (cons__wire_preamble(data + off, &pre, &why) != 0) {
            check(why != NULL, "a reason");
            return 0;
        }
        off += CONS_WIRE_PREAMBLE;
        if (size - off < pre.header_len)
            return 0;
        /* the header in a buffer of its exact size: ASan sees any read past it */
        uint8_t *h = malloc(pre.header_len);
        memcpy(h, data + off, pre.header_len);
        int rv = cons__wire_header(&pre, h, sender, &m, &plen, &why);
        free(h);
        if (rv != 0) {
            check(why != NULL && plen == 0, "a reason");
            return 0;
        }
        off += pre.header_len;
        (void)cons__wire_check(&m, sender << 60, sender & 1);
        if (size - off < plen) {
            cons__wire_free(&m);
            return 0;
        }
        if (plen > 0) {
            uint8_t *p = raft_malloc(plen);
            check(p != NULL, "payload allocation");
            memcpy(p, data + off, plen);
            cons__wire_payload(&m, p);
            off += plen;
        }
        check_message(&m, plen);
        cons__wire_free(&m);
    }
    return 0;
}
