/* The server port: the listener, the handshake and its key proof, the dialer, streams.
 *
 * One listener carries two protocols (DESIGN.md 2.6). Every connection opens with a
 * handshake: an 8-byte preamble ("HRLDRAF3" for a stream, Raft's; "HRLDRPC2" for RPC,
 * call.c), then a header (u64 sender id, u64 receiver id: 0 for RPC, u32 address length, u8
 * flags: bit 0 "keyed", 3 zero bytes) and the sender's address. It is read with an alloc
 * callback that offers exactly the bytes still missing, so not one byte of what follows is
 * consumed here: the stream owner's reader (consensus/raft_stream.c) or call.c's then starts
 * on the stream at its first own byte. A handshake is bounded in time (5 s), size (addresses
 * up to 255 bytes, no NUL) and number (128 at once: a new one drops the oldest, so silent
 * connections cannot lock members out; with RPC connections, max_conns_per_client per source
 * IP); anything else closes the connection. A stream names the server it is for: one for
 * another id is closed (a server whose data dir was wiped comes back at the same address
 * with a new id, and must not take the messages meant for its former self). Streams go to
 * the owner's on_stream (rpc_set_streams), which may refuse them (consensus takes Raft
 * streams only from members); without an owner they are closed and the peer redials later.
 *
 * Authentication (the cluster key, -encrypt). With a key, the dialer's header says "keyed"
 * and is followed by its 32-byte nonce; the listener answers with its own nonce and
 * HMAC-SHA256(key, "herald server-port v1 server" NUL, transcript), the transcript being
 * every byte so far (preamble, header, address, both nonces); the dialer checks it and
 * answers HMAC(key, "... client" NUL, transcript). Both sides prove the key, on fresh nonces
 * from getrandom, with labels that differ so neither proof can be reflected; MACs are
 * compared in constant time (nettle's memeql_sec). A peer without the key, with another key,
 * or keyed when we are not, is refused and logged (rate-limited per reason). The step is
 * in_challenge/dial_read: TLS certificates (later) replace it there.
 *
 * Authorization is the owner's: rpc_set_members says which peers without the key are tied
 * to a member (consensus: the source IP is the IP of a member's configured address; names
 * never match), each method says who may call it (call.c), on_stream who may stream.
 * Outgoing connections leave from the bind address when it names one, so that the source
 * address is the member address.
 *
 * What an unauthenticated peer can still do. Without a key: anyone who reaches the port can
 * open connections (bounded by the caps) and make the requests open to anyone (consensus:
 * HELLO); anyone who can send from a member's IP (the same host, a spoofing router) is that
 * member. With a key, an outsider gets no further than the handshake; but the key
 * authenticates only the handshake: the stream after it is neither encrypted nor
 * integrity-protected, so an attacker on the path can read what travels and inject into or
 * cut an established connection. Confidentiality and per-message integrity need TLS (a later
 * issue).
 *
 * Dialing. Streams and RPC connections share one dialer: resolve (numeric addresses
 * directly, names through uv_getaddrinfo), TCP connect with TCP_NODELAY (without it small
 * appends wait ~40 ms for delayed ACKs), keepalive and the link's TCP_USER_TIMEOUT (a silent
 * peer: data unacknowledged that long resets the connection), bounded by the link's dial
 * timeout, then write the handshake (and with a key check the server's proof and send ours,
 * all within that bound) before handing the stream over. Stream dials back off per server id
 * (the link's min doubling to its max, reset by a success or by a stream from that id, which
 * also starts a dial still waiting out its delay: a restarted server is reached as soon as it
 * reaches us). RPC clients keep their own backoff (call.c).
 *
 * Ownership. Handles are allocated alone (a stream changes owner with its handle): accepted
 * ones and RPC ones with base_malloc, dialed streams with the dial's allocator (libraft frees
 * the streams consensus hands it with raft_free). One owner finishes each thing: a handshake
 * ends handed over or aborted, a dial delivers its callback exactly once, from the last close.
 *
 * Closing. rpc_stop closes the listener, aborts handshakes, cancels dials (their callbacks
 * get UV_ECANCELED), closes connections (call.c) and the tick; the rpc is freed and done
 * called once the last of those is gone (r->pending). */
#include "internal.h"

#include <inttypes.h>
#include <netinet/tcp.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define PREAMBLE_LEN         8
#define HANDSHAKE_TIMEOUT_MS 5000
#define HANDSHAKES_MAX       128
#define ADDRESS_MAX          RPC_ADDRESS_MAX
#define HEADER_LEN           24 /* sender id, receiver id, address length, flags, 3 zeros */
#define FLAG_KEYED           0x01u
#define NONCE_LEN            32
#define MAC_LEN              SHA256_DIGEST_SIZE
#define TRANSCRIPT_MAX       (PREAMBLE_LEN + HEADER_LEN + ADDRESS_MAX + 2 * NONCE_LEN)
#define REFUSE_LOG_MS        10000
#define DIAL_TIMEOUT_MS      2000
#define BACKOFF_MIN_MS       50
#define LISTEN_BACKLOG       128
#define KEEPALIVE_S          30
#define TICK_MS              25

static const uint8_t preamble_stream[PREAMBLE_LEN] = {'H', 'R', 'L', 'D', 'R', 'A', 'F', '3'};
static const uint8_t preamble_rpc[PREAMBLE_LEN] = {'H', 'R', 'L', 'D', 'R', 'P', 'C', '2'};
/* MAC labels: the server's proof and the client's differ, so neither can be reflected. */
static const char label_server[] = "herald server-port v1 server";
static const char label_client[] = "herald server-port v1 client";

enum { IN_PREAMBLE, IN_HEADER, IN_ADDRESS, IN_NONCE, IN_MAC };

/* An accepted connection whose handshake is being read. buf keeps the transcript (preamble,
 * header, address, the client's nonce, ours) that both MACs cover. */
struct rpc__incoming {
    struct base_list node; /* on r->incoming */
    struct rpc *r;
    uv_tcp_t *tcp; /* base_malloc'd */
    uint64_t started;
    int phase;
    bool stream;
    uint8_t *dst; /* where the current part goes */
    size_t need, got;
    size_t tlen; /* transcript bytes in buf */
    struct rpc_peer peer;
    uint8_t mac[MAC_LEN];
    uint8_t buf[TRANSCRIPT_MAX];
};

/* Our part of a keyed handshake in flight (its own allocation: the stream may change hands
 * before the write's callback runs). */
struct hs_write {
    uv_write_t w;
    uint8_t data[NONCE_LEN + MAC_LEN];
};

/* Incoming connections per source IP. */
struct rpc__ipcount {
    uint8_t ip[16];
    int family;
    unsigned n;
};

struct rpc_dial {
    struct base_list node; /* on r->dials until freed */
    struct rpc *r;
    bool stream;
    uint64_t to; /* stream: the peer's id (backoff) */
    struct rpc_link link;
    void *(*alloc)(size_t);
    void (*free)(void *);
    rpc_dial_cb cb;
    void *data;
    char host[ADDRESS_MAX + 1];
    int port;
    struct sockaddr_storage sa;
    uv_tcp_t *tcp; /* NULL before the connect and once handed over */
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    uv_getaddrinfo_t gai;
    uint8_t *hs; /* what we send first; with a key it ends with our nonce */
    size_t hs_len;
    bool keyed;
    bool proving; /* keyed: our MAC is being written */
    uint8_t reply[NONCE_LEN + MAC_LEN];
    size_t reply_got;
    uint8_t mac[MAC_LEN];
    int status;   /* failure to report, set before the timer fires when known early */
    int pending;  /* close callbacks (and a running getaddrinfo) still to come */
    bool started; /* resolving or connecting: the timer now bounds the connect */
    bool resolving;
    bool finishing; /* failed, cancelled or handed over: callbacks only count down */
    bool delivered; /* the user's callback ran */
};

static struct rpc__incoming *in_of(struct base_list *n)
{
    return BASE_CONTAINER_OF(n, struct rpc__incoming, node);
}

static struct rpc_dial *dial_of(struct base_list *n)
{
    return BASE_CONTAINER_OF(n, struct rpc_dial, node);
}

struct rpc__backoff {
    uint64_t id;
    unsigned failures;
};

/* ---- helpers --------------------------------------------------------------------------- */

/* A numeric "ip:port" / "[v6]:port" into sa. BASE_EPARSE when not numeric. */
static int numeric_addr(const char *host, int port, struct sockaddr_storage *sa)
{
    memset(sa, 0, sizeof *sa);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)sa) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa) == 0)
        return 0;
    return BASE_EPARSE;
}

static void free_handle(uv_handle_t *h)
{
    base_free(h);
}

struct rpc_link rpc__link(const struct rpc_link *l, unsigned def_backoff_max)
{
    struct rpc_link k = l ? *l : (struct rpc_link){0};
    if (!k.dial_timeout_ms)
        k.dial_timeout_ms = DIAL_TIMEOUT_MS;
    if (!k.backoff_min_ms)
        k.backoff_min_ms = BACKOFF_MIN_MS;
    if (!k.backoff_max_ms)
        k.backoff_max_ms = def_backoff_max;
    if (k.backoff_max_ms < k.backoff_min_ms)
        k.backoff_max_ms = k.backoff_min_ms;
    return k;
}

unsigned rpc__backoff_ms(const struct rpc_link *l, unsigned failures)
{
    if (failures == 0)
        return 0;
    unsigned d = l->backoff_min_ms;
    for (unsigned i = 1; i < failures && d < l->backoff_max_ms; i++)
        d *= 2;
    return d < l->backoff_max_ms ? d : l->backoff_max_ms;
}

/* Sets what every connection we make or take gets: no delayed small writes, keepalive, and
 * (outgoing, user_ms non-zero) the bound on unacknowledged data. */
static void tcp_tune(uv_tcp_t *tcp, unsigned user_ms)
{
    uv_tcp_nodelay(tcp, 1);
    uv_tcp_keepalive(tcp, 1, KEEPALIVE_S);
#ifdef TCP_USER_TIMEOUT
    uv_os_fd_t fd;
    if (user_ms && uv_fileno((uv_handle_t *)tcp, &fd) == 0) {
        unsigned v = user_ms;
        if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof v) != 0)
            LOG_DEBUG("rpc", "TCP_USER_TIMEOUT: %s", strerror(errno));
    }
#else
    BASE_UNUSED(user_ms);
#endif
}

/* ---- peers: addresses, counts ---------------------------------------------------------- */

/* The IP of sa as bytes (IPv4-mapped IPv6 as IPv4). Returns the length (4, 16) or 0. */
static size_t ip_bytes(const struct sockaddr_storage *sa, uint8_t out[16], int *family)
{
    if (sa->ss_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        *family = AF_INET;
        return 4;
    }
    if (sa->ss_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0) {
            memcpy(out, a + 12, 4);
            *family = AF_INET;
            return 4;
        }
        memcpy(out, a, 16);
        *family = AF_INET6;
        return 16;
    }
    *family = 0;
    return 0;
}

static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    uint8_t x[16], y[16];
    int fx, fy;
    size_t nx = ip_bytes(a, x, &fx), ny = ip_bytes(b, y, &fy);
    return nx && nx == ny && fx == fy && memcmp(x, y, nx) == 0;
}

static const char *ip_str(const struct sockaddr_storage *sa, char *buf, size_t n)
{
    uint8_t b[16];
    int family;
    size_t len = ip_bytes(sa, b, &family);
    if (!len || !inet_ntop(family, b, buf, (socklen_t)n))
        snprintf(buf, n, "?");
    return buf;
}

bool rpc_peer_at(const struct rpc_peer *p, const char *address)
{
    char host[ADDRESS_MAX + 1];
    int port;
    struct sockaddr_storage sa;
    if (!address || base_hostport_parse(address, RPC__DEFAULT_PORT, host, sizeof host, &port) ||
        numeric_addr(host, port, &sa) != 0)
        return false;
    return same_ip(&sa, &p->sa);
}

bool rpc_is_loopback(const struct sockaddr_storage *sa)
{
    uint8_t b[16];
    int family;
    size_t n = ip_bytes(sa, b, &family);
    static const uint8_t v6_loop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return (n == 4 && b[0] == 127) || (n == 16 && memcmp(b, v6_loop, 16) == 0);
}

bool rpc__is_member(struct rpc *r, const struct rpc_peer *p)
{
    return p->keyed || (r->is_member && r->is_member(r->is_member_data, p));
}

void rpc_refuse_log(struct rpc *r, const struct sockaddr_storage *sa, const char *why)
{
    char ip[64];
    uint64_t now = uv_now(r->loop);
    /* rate-limited per reason (why is a string literal): a flood of one kind does not hide
     * another */
    size_t slot = 0;
    for (size_t i = 0; i < BASE_ARRAY_LEN(r->refuse_log); i++) {
        if (r->refuse_log[i].why == why) {
            slot = i;
            break;
        }
        if (r->refuse_log[i].at < r->refuse_log[slot].at)
            slot = i;
    }
    if (r->refuse_log[slot].why == why && now < r->refuse_log[slot].at) {
        LOG_DEBUG("rpc", "server port: refused %s: %s", ip_str(sa, ip, sizeof ip), why);
        return;
    }
    r->refuse_log[slot].why = why;
    r->refuse_log[slot].at = now + REFUSE_LOG_MS;
    LOG_WARN("rpc", "server port: refused %s: %s", ip_str(sa, ip, sizeof ip), why);
}

static struct rpc__ipcount *ipcount_find(struct rpc *r, const struct sockaddr_storage *sa, bool add)
{
    uint8_t b[16];
    int family;
    size_t n = ip_bytes(sa, b, &family);
    for (size_t i = 0; i < r->n_ipcounts; i++)
        if (r->ipcounts[i].family == family && memcmp(r->ipcounts[i].ip, b, n) == 0)
            return &r->ipcounts[i];
    if (!add)
        return NULL;
    r->ipcounts = base_realloc(r->ipcounts, (r->n_ipcounts + 1) * sizeof *r->ipcounts);
    struct rpc__ipcount *e = &r->ipcounts[r->n_ipcounts++];
    memset(e, 0, sizeof *e);
    memcpy(e->ip, b, n);
    e->family = family;
    return e;
}

bool rpc__ip_count(struct rpc *r, const struct sockaddr_storage *sa)
{
    struct rpc__ipcount *e = ipcount_find(r, sa, true);
    if (e->n >= r->max_per_client)
        return false;
    e->n++;
    return true;
}

void rpc__ip_release(struct rpc *r, const struct sockaddr_storage *sa)
{
    struct rpc__ipcount *e = ipcount_find(r, sa, false);
    assert(e && e->n > 0);
    if (--e->n == 0) { /* keep the table as small as the set of IPs connected now */
        *e = r->ipcounts[--r->n_ipcounts];
        if (r->n_ipcounts == 0) {
            base_free(r->ipcounts);
            r->ipcounts = NULL;
        }
    }
}

/* ---- the handshake's proof --------------------------------------------------------------- */

static void hs_mac(const struct rpc *r, const char *label, const uint8_t *t, size_t n,
                   uint8_t out[MAC_LEN])
{
    struct hmac_sha256_ctx ctx;
    hmac_sha256_set_key(&ctx, r->key_len, r->key);
    hmac_sha256_update(&ctx, strlen(label) + 1, (const uint8_t *)label);
    hmac_sha256_update(&ctx, n, t);
    hmac_sha256_digest(&ctx, MAC_LEN, out);
}

static int hs_nonce(uint8_t out[NONCE_LEN])
{
    return getrandom(out, NONCE_LEN, 0) == NONCE_LEN ? 0 : -errno;
}

/* Preamble, header and address (and with a key our nonce) for a dial to receiver `to`. */
static size_t hs_build(struct rpc *r, const uint8_t *preamble, uint64_t to,
                       uint8_t out[TRANSCRIPT_MAX])
{
    size_t alen = strlen(r->address);
    memcpy(out, preamble, PREAMBLE_LEN);
    uint8_t *h = out + PREAMBLE_LEN;
    base_put_le64(h, r->id);
    base_put_le64(h + 8, to);
    base_put_le32(h + 16, (uint32_t)alen);
    h[20] = r->key_len ? FLAG_KEYED : 0;
    h[21] = h[22] = h[23] = 0;
    memcpy(h + HEADER_LEN, r->address, alen);
    size_t n = PREAMBLE_LEN + HEADER_LEN + alen;
    if (r->key_len) {
        if (hs_nonce(out + n) != 0) {
            LOG_ERR("rpc", "getrandom: %s", strerror(errno));
            abort();
        }
        n += NONCE_LEN;
    }
    return n;
}

/* ---- incoming connections -------------------------------------------------------------- */

/* Off the handshake list; its count against the source IP stays with the stream. */
static void in_detach(struct rpc__incoming *in)
{
    base_list_remove(&in->node);
    in->r->n_incoming--;
}

static void in_closed(uv_handle_t *h)
{
    struct rpc__incoming *in = h->data;
    struct rpc *r = in->r;
    base_free(in->tcp);
    base_free(in);
    rpc__unpend(r);
}

static void in_abort(struct rpc__incoming *in, const char *why)
{
    LOG_DEBUG("rpc", "server port: closing a connection: %s", why);
    in_detach(in);
    rpc__ip_release(in->r, &in->peer.sa);
    uv_close((uv_handle_t *)in->tcp, in_closed); /* in counts in pending until then */
}

/* A refusal worth telling the operator about (a peer without the key, a forged handshake). */
static void in_refuse(struct rpc__incoming *in, const char *why)
{
    rpc_refuse_log(in->r, &in->peer.sa, why);
    in_abort(in, why);
}

static void in_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct rpc__incoming *in = h->data;
    BASE_UNUSED(suggested);
    /* exactly the bytes of the current part: nothing of the next protocol is read here */
    buf->base = (char *)in->dst + in->got;
    buf->len = in->need - in->got;
}

static void in_expect(struct rpc__incoming *in, int phase, uint8_t *dst, size_t need)
{
    in->phase = phase;
    in->dst = dst;
    in->need = need;
    in->got = 0;
}

static void dial_timer_cb(uv_timer_t *t);
static struct rpc__backoff *backoff_of(struct rpc *r, uint64_t id);

/* A stream from id: it is up, so our dials to it need not wait. */
static void peer_is_back(struct rpc *r, uint64_t id)
{
    backoff_of(r, id)->failures = 0;
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &r->dials)
    {
        struct rpc_dial *d = dial_of(pos);
        if (d->stream && d->to == id && !d->started && !d->finishing && d->status == 0)
            uv_timer_start(&d->timer, dial_timer_cb, 0, 0);
    }
}

/* The handshake is complete: the stream changes hands (its reads stopped, nothing buffered). */
static void in_hand_over(struct rpc__incoming *in)
{
    struct rpc *r = in->r;
    uv_tcp_t *tcp = in->tcp;
    if (in->stream) {
        const char *why = NULL;
        uv_read_stop((uv_stream_t *)tcp);
        tcp->data = NULL;
        if (r->stopping || !r->on_stream || !r->on_stream(r->stream_data, tcp, &in->peer, &why)) {
            tcp->data = in;
            if (why)
                in_refuse(in, why);
            else
                in_abort(in, "no one takes streams now");
            return;
        }
        /* the owner's now (it logs it); a member's one stream is not counted against it */
        in_detach(in);
        rpc__ip_release(r, &in->peer.sa);
        peer_is_back(r, in->peer.id);
        base_free(in);
        rpc__unpend(r);
        return;
    }
    uv_read_stop((uv_stream_t *)tcp);
    struct rpc_peer peer = in->peer;
    in_detach(in);
    tcp->data = NULL;
    base_free(in);
    rpc__accept(r, tcp, &peer); /* counts in pending itself */
    rpc__unpend(r);
}

static void hs_write_cb(uv_write_t *w, int status)
{
    BASE_UNUSED(status); /* a failed write shows as a failed read, or the peer never answers */
    base_free(w->data);
}

/* Keyed: the client's nonce is in; answer with ours and our proof, then wait for theirs. */
static void in_challenge(struct rpc__incoming *in)
{
    struct hs_write *hw = base_malloc(sizeof *hw);
    uint8_t *nonce = in->buf + in->tlen;
    if (hs_nonce(nonce) != 0) {
        base_free(hw);
        in_abort(in, "getrandom failed");
        return;
    }
    in->tlen += NONCE_LEN;
    memcpy(hw->data, nonce, NONCE_LEN);
    hs_mac(in->r, label_server, in->buf, in->tlen, hw->data + NONCE_LEN);
    hw->w.data = hw;
    uv_buf_t b = uv_buf_init((char *)hw->data, sizeof hw->data);
    if (uv_write(&hw->w, (uv_stream_t *)in->tcp, &b, 1, hs_write_cb) != 0) {
        base_free(hw);
        in_abort(in, "write failed");
        return;
    }
    in_expect(in, IN_MAC, in->mac, MAC_LEN);
}

static void in_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct rpc__incoming *in = s->data;
    struct rpc *r = in->r;
    BASE_UNUSED(buf);
    if (nread == 0)
        return;
    if (nread < 0) {
        if (in->phase == IN_MAC)
            in_refuse(in, "closed during the key handshake (a wrong cluster key?)");
        else
            in_abort(in, uv_strerror((int)nread));
        return;
    }
    in->got += (size_t)nread;
    assert(in->got <= in->need);
    if (in->got < in->need)
        return;
    if (in->phase != IN_MAC)
        in->tlen += in->need;
    switch (in->phase) {
    case IN_PREAMBLE:
        if (memcmp(in->buf, preamble_rpc, PREAMBLE_LEN) == 0)
            in->stream = false;
        else if (memcmp(in->buf, preamble_stream, PREAMBLE_LEN) == 0)
            in->stream = true;
        else {
            in_refuse(in, "unknown preamble (not a Herald server of this version)");
            return;
        }
        in_expect(in, IN_HEADER, in->buf + in->tlen, HEADER_LEN);
        return;
    case IN_HEADER: {
        const uint8_t *h = in->buf + PREAMBLE_LEN;
        uint64_t to = base_le64(h + 8);
        uint32_t len = base_le32(h + 16);
        in->peer.id = base_le64(h);
        if (in->peer.id == 0 || len == 0 || len > ADDRESS_MAX || (h[20] & ~FLAG_KEYED) || h[21] ||
            h[22] || h[23]) {
            in_refuse(in, "bad handshake");
            return;
        }
        if (in->stream && to != r->id) {
            char why[96];
            snprintf(why, sizeof why, "stream meant for id %" PRIu64 ", not us", to);
            in_abort(in, why);
            return;
        }
        if ((h[20] & FLAG_KEYED) && !r->key_len) {
            in_refuse(in, "the peer uses a cluster key and we have none (set encrypt)");
            return;
        }
        if (!(h[20] & FLAG_KEYED) && r->key_len) {
            in_refuse(in, "the peer does not prove the cluster key");
            return;
        }
        in_expect(in, IN_ADDRESS, in->buf + in->tlen, len);
        return;
    }
    case IN_ADDRESS:
        if (memchr(in->dst, '\0', in->need)) {
            in_refuse(in, "bad handshake address");
            return;
        }
        memcpy(in->peer.address, in->dst, in->need);
        in->peer.address[in->need] = '\0';
        if (r->key_len)
            in_expect(in, IN_NONCE, in->buf + in->tlen, NONCE_LEN);
        else
            in_hand_over(in);
        return;
    case IN_NONCE:
        in_challenge(in);
        return;
    default: {
        uint8_t want[MAC_LEN];
        hs_mac(r, label_client, in->buf, in->tlen, want);
        if (!memeql_sec(want, in->mac, MAC_LEN)) {
            in_refuse(in, "wrong cluster key");
            return;
        }
        in->peer.keyed = true;
        in_hand_over(in);
        return;
    }
    }
}

static void listen_cb(uv_stream_t *server, int status)
{
    struct rpc *r = server->data;
    if (status < 0) {
        uint64_t now = uv_now(r->loop);
        if (now >= r->accept_warn_at) {
            r->accept_warn_at = now + REFUSE_LOG_MS;
            LOG_WARN("rpc", "server port: accept: %s", uv_strerror(status));
        }
        return;
    }
    uv_tcp_t *tcp = base_malloc(sizeof *tcp);
    uv_tcp_init(r->loop, tcp);
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    memset(&sa, 0, sizeof sa);
    if (uv_accept(server, (uv_stream_t *)tcp) != 0 || r->stopping ||
        uv_tcp_getpeername(tcp, (struct sockaddr *)&sa, &salen) != 0) {
        uv_close((uv_handle_t *)tcp, free_handle);
        return;
    }
    if (!rpc__ip_count(r, &sa)) {
        rpc_refuse_log(r, &sa, "too many connections from this address (rpc_max_conns_per_client)");
        uv_close((uv_handle_t *)tcp, free_handle);
        return;
    }
    if (r->n_incoming >= HANDSHAKES_MAX) {
        /* Make room by dropping the oldest handshake rather than refusing this one: a server's
         * handshake completes in a round trip, so whoever holds the table full with silent
         * connections loses them first, and members still get through. */
        struct rpc__incoming *oldest = in_of(base_list_last(&r->incoming)); /* newest first */
        rpc_refuse_log(r, &oldest->peer.sa, "too many handshakes at once: the oldest dropped");
        in_abort(oldest, "too many handshakes at once");
    }
    tcp_tune(tcp, 0);
    struct rpc__incoming *in = base_calloc(1, sizeof *in);
    in->r = r;
    in->tcp = tcp;
    in->peer.sa = sa;
    in->started = uv_now(r->loop);
    in_expect(in, IN_PREAMBLE, in->buf, PREAMBLE_LEN);
    tcp->data = in;
    base_list_insert_head(&r->incoming, &in->node);
    r->n_incoming++;
    r->pending++; /* until handed over or closed */
    if (uv_read_start((uv_stream_t *)tcp, in_alloc, in_read) != 0)
        in_abort(in, "read start");
}

/* Closes handshakes that stalled. */
static void in_sweep(struct rpc *r)
{
    uint64_t now = uv_now(r->loop);
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &r->incoming)
    {
        if (now - in_of(pos)->started >= HANDSHAKE_TIMEOUT_MS)
            in_abort(in_of(pos), "handshake timed out"); /* calls nothing back */
    }
}

/* ---- dialing --------------------------------------------------------------------------- */

static struct rpc__backoff *backoff_of(struct rpc *r, uint64_t id)
{
    for (size_t i = 0; i < r->n_backoff; i++)
        if (r->backoff[i].id == id)
            return &r->backoff[i];
    r->backoff = base_realloc(r->backoff, (r->n_backoff + 1) * sizeof *r->backoff);
    r->backoff[r->n_backoff] = (struct rpc__backoff){.id = id, .failures = 0};
    return &r->backoff[r->n_backoff++];
}

/* Runs the user's callback once (failure or cancel: no stream). */
static void dial_deliver(struct rpc_dial *d, uv_tcp_t *tcp)
{
    if (d->delivered)
        return;
    d->delivered = true;
    d->cb(d->data, tcp, tcp ? 0 : d->status);
}

static void dial_unpend(struct rpc_dial *d)
{
    assert(d->pending > 0);
    if (--d->pending > 0)
        return;
    struct rpc *r = d->r;
    base_list_remove(&d->node);
    dial_deliver(d, NULL);
    base_free(d->hs);
    base_free(d);
    rpc__unpend(r);
}

static void dial_timer_closed(uv_handle_t *h)
{
    dial_unpend(h->data);
}

static void dial_tcp_closed(uv_handle_t *h)
{
    struct rpc_dial *d = h->data;
    d->free(h);
    dial_unpend(d);
}

/* Failure, cancel or success: close what is ours; the last close frees the dial. */
static void dial_finish(struct rpc_dial *d, int status)
{
    if (d->finishing)
        return;
    d->finishing = true;
    if (d->status == 0)
        d->status = status;
    d->pending++; /* the timer */
    uv_close((uv_handle_t *)&d->timer, dial_timer_closed);
    if (d->tcp) {
        d->pending++;
        uv_close((uv_handle_t *)d->tcp, dial_tcp_closed);
        d->tcp = NULL;
    }
    if (d->resolving) {
        d->pending++; /* its callback still comes, cancelled or not */
        uv_cancel((uv_req_t *)&d->gai);
    }
    if (status != 0 && status != UV_ECANCELED && d->stream)
        backoff_of(d->r, d->to)->failures++;
}

static void dial_write_cb(uv_write_t *w, int status);

static void dial_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct rpc_dial *d = h->data;
    BASE_UNUSED(suggested);
    /* exactly the server's nonce and proof: what follows belongs to the protocol */
    buf->base = (char *)d->reply + d->reply_got;
    buf->len = sizeof d->reply - d->reply_got;
}

/* Keyed: the server's nonce and proof. It proved the key: prove ours. */
static void dial_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct rpc_dial *d = s->data;
    struct rpc *r = d->r;
    BASE_UNUSED(buf);
    if (d->finishing || nread == 0)
        return;
    if (nread < 0) {
        if (uv_now(r->loop) >= r->refuse_warn_at) {
            r->refuse_warn_at = uv_now(r->loop) + REFUSE_LOG_MS;
            LOG_WARN("rpc",
                     "server port: %s:%d closed the key handshake (%s): a different "
                     "cluster key, or none?",
                     d->host, d->port, uv_strerror((int)nread));
        }
        dial_finish(d, UV_ECONNRESET);
        return;
    }
    d->reply_got += (size_t)nread;
    if (d->reply_got < sizeof d->reply)
        return;
    uv_read_stop(s);
    uint8_t t[TRANSCRIPT_MAX];
    uint8_t want[MAC_LEN];
    memcpy(t, d->hs, d->hs_len);
    memcpy(t + d->hs_len, d->reply, NONCE_LEN);
    hs_mac(r, label_server, t, d->hs_len + NONCE_LEN, want);
    if (!memeql_sec(want, d->reply + NONCE_LEN, MAC_LEN)) {
        if (uv_now(r->loop) >= r->refuse_warn_at) {
            r->refuse_warn_at = uv_now(r->loop) + REFUSE_LOG_MS;
            LOG_WARN("rpc", "server port: %s:%d does not prove our cluster key", d->host, d->port);
        }
        dial_finish(d, UV_EACCES);
        return;
    }
    hs_mac(r, label_client, t, d->hs_len + NONCE_LEN, d->mac);
    d->proving = true;
    uv_buf_t b = uv_buf_init((char *)d->mac, MAC_LEN);
    int rv = uv_write(&d->write, (uv_stream_t *)d->tcp, &b, 1, dial_write_cb);
    if (rv != 0)
        dial_finish(d, rv);
}

static void dial_write_cb(uv_write_t *w, int status)
{
    struct rpc_dial *d = w->data;
    if (d->finishing)
        return;
    if (status != 0) {
        LOG_DEBUG("rpc", "dial %s:%d: handshake: %s", d->host, d->port, uv_strerror(status));
        dial_finish(d, status);
        return;
    }
    if (d->keyed && !d->proving) {
        int rv = uv_read_start((uv_stream_t *)d->tcp, dial_alloc, dial_read);
        if (rv != 0)
            dial_finish(d, rv);
        return;
    }
    /* connected and introduced: the stream is the caller's now */
    uv_tcp_t *tcp = d->tcp;
    d->tcp = NULL;
    tcp->data = NULL;
    if (d->stream)
        backoff_of(d->r, d->to)->failures = 0;
    uv_timer_stop(&d->timer);
    dial_deliver(d, tcp);
    dial_finish(d, 0);
}

static void dial_connect_cb(uv_connect_t *req, int status)
{
    struct rpc_dial *d = req->data;
    if (d->finishing)
        return;
    if (status != 0) {
        LOG_DEBUG("rpc", "dial %s:%d: %s", d->host, d->port, uv_strerror(status));
        dial_finish(d, status);
        return;
    }
    tcp_tune(d->tcp, d->link.user_timeout_ms);
    uv_buf_t b = uv_buf_init((char *)d->hs, (unsigned)d->hs_len);
    d->write.data = d;
    int rv = uv_write(&d->write, (uv_stream_t *)d->tcp, &b, 1, dial_write_cb);
    if (rv != 0)
        dial_finish(d, rv);
}

static void dial_connect(struct rpc_dial *d)
{
    d->tcp = d->alloc(sizeof *d->tcp);
    if (!d->tcp) {
        LOG_ERR("rpc", "out of memory dialing %s", d->host);
        abort();
    }
    uv_tcp_init(d->r->loop, d->tcp);
    d->tcp->data = d;
    uv_tcp_nodelay(d->tcp, 1); /* applied when libuv creates the socket */
    d->connect.data = d;
    int rv = 0;
    /* From our bind address, so that a peer without the key can tie us to our member address
     * (the kernel would pick 127.0.0.1 for every loopback peer, say). */
    if (d->r->src.ss_family == d->sa.ss_family)
        rv = uv_tcp_bind(d->tcp, (const struct sockaddr *)&d->r->src, 0);
    if (rv != 0) {
        dial_finish(d, rv);
        return;
    }
    rv = uv_tcp_connect(&d->connect, d->tcp, (const struct sockaddr *)&d->sa, dial_connect_cb);
    if (rv != 0)
        dial_finish(d, rv);
}

static void dial_gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct rpc_dial *d = req->data;
    d->resolving = false;
    if (d->finishing) {
        uv_freeaddrinfo(res);
        dial_unpend(d);
        return;
    }
    struct addrinfo *ai = res;
    while (ai && ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
        ai = ai->ai_next;
    if (status != 0 || !ai) {
        LOG_DEBUG("rpc", "resolve %s: %s", d->host, status ? uv_strerror(status) : "no address");
        uv_freeaddrinfo(res);
        dial_finish(d, status ? status : UV_EAI_NONAME);
        return;
    }
    memset(&d->sa, 0, sizeof d->sa);
    memcpy(&d->sa, ai->ai_addr, ai->ai_addrlen);
    uv_freeaddrinfo(res);
    if (d->sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&d->sa)->sin_port = htons((uint16_t)d->port);
    else
        ((struct sockaddr_in6 *)&d->sa)->sin6_port = htons((uint16_t)d->port);
    dial_connect(d);
}

/* The timer: first the start (after the backoff delay, or at once), then the dial bound. */
static void dial_timer_cb(uv_timer_t *t)
{
    struct rpc_dial *d = t->data;
    if (d->finishing)
        return;
    if (d->started) {
        dial_finish(d, UV_ETIMEDOUT);
        return;
    }
    if (d->status != 0) { /* refused early (bad address) */
        dial_finish(d, d->status);
        return;
    }
    d->started = true;
    uv_timer_start(&d->timer, dial_timer_cb, d->link.dial_timeout_ms, 0);
    if (d->sa.ss_family != 0) {
        dial_connect(d);
        return;
    }
    struct addrinfo hints;
    char service[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(service, sizeof service, "%d", d->port);
    d->gai.data = d;
    d->resolving = true;
    int rv = uv_getaddrinfo(d->r->loop, &d->gai, dial_gai_cb, d->host, service, &hints);
    if (rv != 0) {
        d->resolving = false;
        dial_finish(d, rv);
    }
}

/* A dial that starts after delay_ms; the preamble (and handshake) is hs. Callbacks always
 * come later, from the loop. */
static struct rpc_dial *dial_new(struct rpc *r, const char *address, const uint8_t *hs,
                                 size_t hs_len, const struct rpc_link *link, unsigned delay_ms,
                                 rpc_dial_cb cb, void *data)
{
    BASE_ASSERT_LOOP();
    assert(!r->stopping);
    struct rpc_dial *d = base_calloc(1, sizeof *d);
    d->r = r;
    d->link = *link;
    d->alloc = base_malloc;
    d->free = base_free;
    d->cb = cb;
    d->data = data;
    d->keyed = r->key_len != 0;
    d->hs = base_malloc(hs_len);
    memcpy(d->hs, hs, hs_len);
    d->hs_len = hs_len;
    uv_timer_init(r->loop, &d->timer);
    d->timer.data = d;
    if (!address ||
        base_hostport_parse(address, RPC__DEFAULT_PORT, d->host, sizeof d->host, &d->port) != 0) {
        LOG_WARN("rpc", "bad server address \"%s\"", address ? address : "");
        d->status = UV_EINVAL;
        delay_ms = 0;
    } else if (numeric_addr(d->host, d->port, &d->sa) != 0) {
        d->sa.ss_family = 0; /* a name: resolved when the dial starts */
    }
    base_list_insert_head(&r->dials, &d->node);
    r->pending++; /* until freed */
    uv_timer_start(&d->timer, dial_timer_cb, delay_ms, 0);
    return d;
}

struct rpc_dial *rpc__dial_rpc(struct rpc *r, const char *address, const struct rpc_link *link,
                               rpc_dial_cb cb, void *data)
{
    uint8_t hs[TRANSCRIPT_MAX];
    struct rpc_link k = rpc__link(link, 0); /* no backoff here */
    size_t n = hs_build(r, preamble_rpc, 0, hs);
    return dial_new(r, address, hs, n, &k, 0, cb, data);
}

struct rpc_dial *rpc_dial_stream(struct rpc *r, const struct rpc_stream_dial *sd)
{
    uint8_t hs[TRANSCRIPT_MAX];
    assert(sd->to != 0 && sd->cb);
    struct rpc_link link = rpc__link(sd->link, 250);
    size_t n = hs_build(r, preamble_stream, sd->to, hs);
    unsigned delay = rpc__backoff_ms(&link, backoff_of(r, sd->to)->failures);
    struct rpc_dial *d = dial_new(r, sd->address, hs, n, &link, delay, sd->cb, sd->data);
    d->stream = true;
    d->to = sd->to;
    if (sd->alloc) {
        d->alloc = sd->alloc;
        d->free = sd->free;
    }
    return d;
}

void rpc_dial_cancel(struct rpc_dial *d)
{
    dial_finish(d, UV_ECANCELED);
}

/* ---- start and stop -------------------------------------------------------------------- */

void rpc__unpend(struct rpc *r)
{
    assert(r->pending > 0);
    if (--r->pending > 0 || !r->stopping)
        return;
    assert(!r->listener && base_list_empty(&r->incoming) && base_list_empty(&r->dials) &&
           base_list_empty(&r->conns) && base_list_empty(&r->clients));
    void (*done)(void *) = r->done;
    void *data = r->done_data;
    rpc__methods_free(r);
    base_free(r->address);
    base_free(r->backoff);
    base_free(r->ipcounts);
    memset(r->key, 0, sizeof r->key);
    base_free(r);
    if (done)
        done(data);
}

static void listener_closed(uv_handle_t *h)
{
    struct rpc *r = h->data;
    base_free(h);
    r->listener = NULL;
    rpc__unpend(r);
}

static void tick_closed(uv_handle_t *h)
{
    rpc__unpend(h->data);
}

static void tick_cb(uv_timer_t *t)
{
    struct rpc *r = t->data;
    in_sweep(r);
    rpc__call_tick(r);
}

int rpc_start(uv_loop_t *loop, const struct rpc_config *cfg, struct rpc **out, char *errmsg)
{
    BASE_ASSERT_LOOP();
    *out = NULL;
    if (cfg->id == 0)
        return base_errf(errmsg, BASE_EINVAL, "server port: id must not be 0");
    if (!cfg->address || !*cfg->address)
        return base_errf(errmsg, BASE_EINVAL, "server port: no address");
    if (strlen(cfg->address) > ADDRESS_MAX)
        return base_errf(errmsg, BASE_EINVAL, "server port: address too long");
    if (cfg->key && cfg->key_len && cfg->key_len != 16 && cfg->key_len != 24 && cfg->key_len != 32)
        return base_errf(errmsg, BASE_EINVAL, "server port: a key of %zu bytes (16, 24 or 32)",
                         cfg->key_len);
    const char *bind = cfg->bind_address && *cfg->bind_address ? cfg->bind_address : cfg->address;
    char host[ADDRESS_MAX + 1];
    int port;
    struct sockaddr_storage sa;
    if (base_hostport_parse(bind, RPC__DEFAULT_PORT, host, sizeof host, &port) != 0 ||
        numeric_addr(host, port, &sa) != 0)
        return base_errf(errmsg, BASE_EINVAL, "server port: bad bind address \"%s\" (ip:port)",
                         bind);

    uv_tcp_t *l = base_malloc(sizeof *l);
    uv_tcp_init(loop, l);
    int rv = uv_tcp_bind(l, (const struct sockaddr *)&sa, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)l, LISTEN_BACKLOG, listen_cb);
    if (rv != 0) {
        uv_close((uv_handle_t *)l, free_handle);
        return base_errf(errmsg, rv, "server port: listen on %s: %s", bind, uv_strerror(rv));
    }

    struct rpc *r = base_calloc(1, sizeof *r);
    r->loop = loop;
    r->id = cfg->id;
    base_list_init(&r->incoming);
    base_list_init(&r->dials);
    base_list_init(&r->conns);
    base_list_init(&r->clients);
    r->address = base_strdup(cfg->address);
    if (cfg->key && cfg->key_len) {
        memcpy(r->key, cfg->key, cfg->key_len);
        r->key_len = cfg->key_len;
    }
    r->max_per_client = cfg->max_conns_per_client ? cfg->max_conns_per_client : 100;
    r->idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : 60000;
    l->data = r;
    r->listener = l;
    r->pending = 2; /* the listener and the tick */
    uv_timer_init(loop, &r->tick);
    r->tick.data = r;
    uv_unref((uv_handle_t *)&r->tick);
    uv_timer_start(&r->tick, tick_cb, TICK_MS, TICK_MS);

    LOG_INFO("rpc", "server port listening on %s%s", bind,
             r->key_len ? " (cluster key required)" : "");
    if (!r->key_len)
        LOG_WARN("rpc",
                 "server port %s is open to anyone who can reach it: set encrypt (peers are only "
                 "tied to members by their source address)",
                 bind);
    /* outgoing connections leave from the bind address when it names one */
    struct sockaddr_storage any;
    if (numeric_addr(host, 0, &r->src) == 0) {
        bool unspecified = false;
        if (r->src.ss_family == AF_INET)
            unspecified = ((struct sockaddr_in *)&r->src)->sin_addr.s_addr == htonl(INADDR_ANY);
        else if (numeric_addr("::", 0, &any) == 0)
            unspecified = memcmp(&((struct sockaddr_in6 *)&r->src)->sin6_addr,
                                 &((struct sockaddr_in6 *)&any)->sin6_addr, 16) == 0;
        if (unspecified)
            r->src.ss_family = 0;
    }
    *out = r;
    return 0;
}

void rpc_stop(struct rpc *r, void (*done)(void *), void *data)
{
    BASE_ASSERT_LOOP();
    assert(!r->stopping);
    assert(base_list_empty(&r->clients)); /* the users stopped first */
    r->stopping = true;
    r->done = done;
    r->done_data = data;
    r->on_stream = NULL;
    r->is_member = NULL;
    if (r->listener)
        uv_close((uv_handle_t *)r->listener, listener_closed);
    while (!base_list_empty(&r->incoming))
        in_abort(in_of(base_list_first(&r->incoming)), "stopping");
    struct base_list *pos, *tmp;
    BASE_LIST_FOREACH_SAFE(pos, tmp, &r->dials)
    {
        dial_finish(dial_of(pos), UV_ECANCELED); /* each leaves the list once closed */
    }
    rpc__call_stop(r);
    uv_close((uv_handle_t *)&r->tick, tick_closed);
}

uint64_t rpc_id(const struct rpc *r)
{
    return r->id;
}

const char *rpc_address(const struct rpc *r)
{
    return r->address;
}

bool rpc_keyed(const struct rpc *r)
{
    return r->key_len != 0;
}

void rpc_set_members(struct rpc *r, rpc_peer_cb is_member, void *data)
{
    r->is_member = is_member;
    r->is_member_data = data;
}

void rpc_set_streams(struct rpc *r, rpc_stream_cb on_stream, void *data)
{
    r->on_stream = on_stream;
    r->stream_data = data;
}
