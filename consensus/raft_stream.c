/* Accepted Raft streams: read here, decoded by raft_wire.c, delivered to libraft.
 *
 * libraft's uv io would read an accepted stream itself (the accept callback it gave to our
 * transport) and trusts what it reads (raft_wire.c says how that crashes a server). Instead
 * the server port (rpc/, through transport.c) hands each stream whose handshake named us to
 * cons__wire_accept, and libraft gets only complete, checked messages, through the same
 * receive hook its own reader calls (io.c's, then libraft's). Its accept callback is never
 * called, so its io never owns an outside stream; its send side (our dialer's streams) is
 * untouched. The end of a stream (EOF, a reset, a refusal) is seen here, in wire_close: the
 * one place to tell consensus that a peer's connection dropped.
 *
 * Reading. Like libraft's reader, exactly the bytes of the current part are read: the 16-byte
 * preamble, then the header it announces, into a staging buffer (4 KiB, grown to the largest
 * header a message announces, at most CONS_WIRE_CONF_MAX + 72 bytes), decoded from there;
 * then the payload (entries, snapshot data) straight into its own raft_malloc'd buffer, which
 * is allocated whole up to 64 MiB (every append, most snapshots: no copies) and beyond that
 * grows as the bytes arrive (doubling), so a message announcing a huge payload costs only what
 * the peer really sends; libraft takes the buffer over. Reading
 * ahead instead (64 KiB at a time, several messages per read, fewer system calls) was
 * measured slower: on a 3-server PUT benchmark (wrk c=64 to the leader, 2 cores) the leader's
 * group commit put fewer requests in each entry (15 against 18-21) and throughput dropped by
 * about 10%, exact reads matched libraft's own reader; why the batching changes was not
 * pinned down. (wire_process still handles a buffer holding more than one part.)
 *
 * Refusals. A malformed message, one our state rules out (cons__wire_check: a term beyond the
 * bound, a second leader in our term, ...), or an allocation that fails closes the stream (logged,
 * warnings rate-limited to one per 10 s); the peer's raft_uv reconnects if it is real. What was
 * decoded and not delivered is freed here.
 *
 * Lifetime. Each stream counts in c->pending until its close callback freed it; close_raft
 * closes them all (cons__wire_stop) before raft_close, and nothing is delivered once
 * c->stopping is set. One owner: wire_close ends a stream, from any path, once. */
#include "internal.h"

#include <inttypes.h>
#include <string.h>

#define STAGE_MIN     4096u
#define PAYLOAD_CHUNK (64u << 20)
#define WARN_EVERY_MS 10000

struct cons_wire_conn {
    struct base_list link; /* c->wire_conns, newest first */
    struct cons *c;
    uv_tcp_t *tcp; /* base_malloc'd (rpc/) */
    uint64_t id;
    char *address;
    bool closing;
    /* staging: preambles and headers */
    uint8_t *buf;
    size_t cap, len;
    /* the message whose payload is being read (payload != NULL) */
    struct raft_message msg;
    uint8_t *payload; /* raft_malloc'd, payload_cap bytes */
    size_t payload_len, payload_got, payload_cap;
};

static void wire_closed(uv_handle_t *h)
{
    struct cons_wire_conn *w = h->data;
    struct cons *c = w->c;
    if (w->payload) {
        cons__wire_free(&w->msg);
        raft_free(w->payload);
    }
    base_free(w->tcp); /* base_malloc'd by the rpc */
    base_free(w->buf);
    base_free(w->address);
    base_free(w);
    cons__unpend(c);
}

/* Whether a Raft stream from server id is still open. */
static bool wire_from(struct cons *c, uint64_t id)
{
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &c->wire_conns)
    {
        if (BASE_CONTAINER_OF(pos, struct cons_wire_conn, link)->id == id)
            return true;
    }
    return false;
}

/* Ends the stream (idempotent). why: a refusal to log, NULL for an ordinary end. */
static void wire_close(struct cons_wire_conn *w, const char *why)
{
    if (w->closing)
        return;
    w->closing = true;
    if (why) {
        struct cons *c = w->c;
        uint64_t now = uv_now(c->loop);
        if (now >= c->wire_warn_at) {
            c->wire_warn_at = now + WARN_EVERY_MS;
            LOG_WARN("consensus",
                     "server port: dropping a Raft stream from id=%" PRIu64 " (%s): %s", w->id,
                     w->address, why);
        } else {
            LOG_DEBUG("consensus", "server port: dropping a Raft stream from id=%" PRIu64 ": %s",
                      w->id, why);
        }
    }
    base_list_remove(&w->link);
    uv_read_stop((uv_stream_t *)w->tcp);
    uv_close((uv_handle_t *)w->tcp, wire_closed);
}

/* Whether m fits our state now (cons__wire_check); if not, m is freed and the stream closed.
 * Checked once the header is in (no payload read for nothing) and again before delivery (our
 * term or state may have changed meanwhile). */
static bool wire_acceptable(struct cons_wire_conn *w, struct raft_message *m)
{
    struct raft *r = &w->c->raft;
    const char *why = cons__wire_check(m, raft_current_term(r), raft_state(r) == RAFT_LEADER);
    if (!why)
        return true;
    char msg[160];
    snprintf(msg, sizeof msg, "%s (type %d, term %" PRIu64 ", ours %" PRIu64 ")", why, (int)m->type,
             cons__wire_term(m), (uint64_t)raft_current_term(r));
    cons__wire_free(m);
    wire_close(w, msg);
    return false;
}

/* m is complete: to libraft (which takes what it owns), unless we are stopping. */
static void wire_deliver(struct cons_wire_conn *w, struct raft_message *m)
{
    struct cons *c = w->c;
    if (c->stopping) {
        cons__wire_free(m);
        wire_close(w, NULL);
        return;
    }
    if (!wire_acceptable(w, m))
        return;
    m->server_id = w->id;
    m->server_address = w->address;
    cons__io_recv(c, m);
    cons__observe(c); /* a vote won, a new leader heard: told at once, not at the next tick */
}

/* Decodes what the staging buffer holds: every complete message, then the start of a payload. */
static void wire_process(struct cons_wire_conn *w)
{
    size_t off = 0;
    while (!w->closing) {
        struct cons_wire_pre pre;
        struct raft_message m;
        size_t plen;
        const char *why = NULL;
        if (w->len - off < CONS_WIRE_PREAMBLE)
            break;
        if (cons__wire_preamble(w->buf + off, &pre, &why) != 0) {
            wire_close(w, why);
            return;
        }
        size_t need = CONS_WIRE_PREAMBLE + pre.header_len;
        if (need > w->cap) { /* a header larger than the buffer: make room for it */
            memmove(w->buf, w->buf + off, w->len - off);
            w->len -= off;
            off = 0;
            w->buf = base_realloc(w->buf, need);
            w->cap = need;
        }
        if (w->len - off < need)
            break;
        if (cons__wire_header(&pre, w->buf + off + CONS_WIRE_PREAMBLE, w->id, &m, &plen, &why) !=
            0) {
            wire_close(w, why);
            return;
        }
        if (!wire_acceptable(w, &m))
            return;
        off += need;
        if (plen == 0) {
            wire_deliver(w, &m);
            continue;
        }
        size_t have = w->len - off;
        size_t k = have < plen ? have : plen; /* payload bytes already here */
        size_t first = plen < PAYLOAD_CHUNK ? plen : PAYLOAD_CHUNK;
        if (first < k)
            first = k;
        uint8_t *p = raft_malloc(first);
        if (!p) {
            cons__wire_free(&m);
            wire_close(w, "out of memory for a payload");
            return;
        }
        memcpy(p, w->buf + off, k);
        off += k;
        if (k == plen) {
            cons__wire_payload(&m, p);
            wire_deliver(w, &m);
            continue;
        }
        /* the rest of the payload is read straight into p; the staging buffer is empty */
        assert(off == w->len);
        w->msg = m;
        w->payload = p;
        w->payload_len = plen;
        w->payload_got = k;
        w->payload_cap = first;
        break;
    }
    if (w->closing)
        return;
    memmove(w->buf, w->buf + off, w->len - off);
    w->len -= off;
}

static void wire_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct cons_wire_conn *w = h->data;
    BASE_UNUSED(suggested);
    if (w->payload) {
        if (w->payload_got == w->payload_cap) {
            size_t cap = w->payload_cap * 2;
            if (cap > w->payload_len || cap < w->payload_cap)
                cap = w->payload_len;
            uint8_t *p = raft_realloc(w->payload, cap);
            if (!p) { /* a zero-length buffer: the read callback gets UV_ENOBUFS */
                buf->base = NULL;
                buf->len = 0;
                return;
            }
            w->payload = p;
            w->payload_cap = cap;
        }
        buf->base = (char *)w->payload + w->payload_got;
        buf->len = w->payload_cap - w->payload_got;
        return;
    }
    /* exactly the rest of the current part: the preamble, then the header it announced
     * (already checked by wire_process, and the buffer grown for it) */
    size_t want = CONS_WIRE_PREAMBLE;
    if (w->len >= CONS_WIRE_PREAMBLE)
        want += (size_t)base_le64(w->buf + 8);
    assert(want > w->len && want <= w->cap);
    buf->base = (char *)w->buf + w->len;
    buf->len = want - w->len;
}

static void wire_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct cons_wire_conn *w = s->data;
    BASE_UNUSED(buf);
    if (nread == 0 || w->closing)
        return;
    if (nread < 0) {
        struct cons *c = w->c;
        uint64_t id = w->id;
        wire_close(w, nread == UV_EOF       ? NULL
                      : nread == UV_ENOBUFS ? "out of memory for a payload"
                                            : uv_strerror((int)nread));
        if (nread != UV_ENOBUFS && !wire_from(c, id))
            cons__peer_lost(c, id); /* the peer closed it, or its host reset it */
        return;
    }
    if (w->payload) {
        w->payload_got += (size_t)nread;
        assert(w->payload_got <= w->payload_cap);
        if (w->payload_got < w->payload_len)
            return;
        struct raft_message m = w->msg;
        uint8_t *p = w->payload;
        w->payload = NULL;
        memset(&w->msg, 0, sizeof w->msg);
        cons__wire_payload(&m, p);
        wire_deliver(w, &m);
        return;
    }
    w->len += (size_t)nread;
    assert(w->len <= w->cap);
    wire_process(w);
}

void cons__wire_accept(struct cons *c, uint64_t id, const char *address, uv_tcp_t *tcp)
{
    struct cons_wire_conn *w = base_calloc(1, sizeof *w);
    w->c = c;
    w->tcp = tcp;
    w->id = id;
    w->address = base_strdup(address);
    w->cap = STAGE_MIN;
    w->buf = base_malloc(w->cap);
    tcp->data = w;
    c->pending++;
    base_list_insert_head(&c->wire_conns, &w->link);
    if (c->stopping) {
        wire_close(w, NULL);
        return;
    }
    int rv = uv_read_start((uv_stream_t *)tcp, wire_alloc, wire_read);
    if (rv != 0)
        wire_close(w, uv_strerror(rv));
}

void cons__wire_stop(struct cons *c)
{
    struct base_list *first;
    while ((first = base_list_first(&c->wire_conns)))
        wire_close(BASE_CONTAINER_OF(first, struct cons_wire_conn, link), NULL);
}
