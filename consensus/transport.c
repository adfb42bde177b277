/* The server port: our raft_uv_transport over libuv TCP, and the RPC connections beside it.
 *
 * One listener on the server port carries two protocols (DESIGN.md 2.6). Every connection
 * opens with a handshake: an 8-byte preamble ("HRLDRAF3" for Raft, "HRLDRPC2" for server RPC,
 * rpc.c), then a header (u64 sender id, u64 receiver id: 0 for RPC, u32 address length, u8
 * flags: bit 0 "keyed", 3 zero bytes) and the sender's address. It is read with an alloc
 * callback that offers exactly the bytes still missing, so not one byte of what follows is
 * consumed here: raft_stream.c's reader (or rpc.c's) then starts on the stream at its first
 * own byte. A handshake is bounded in time (5 s), size (addresses up to 255 bytes, no NUL) and
 * number (128 at once: a new one drops the oldest, so silent connections cannot lock members
 * out; with RPC connections, limits.rpc_max_conns_per_client per source IP); anything else
 * closes the connection. Raft streams go to raft_stream.c (which decodes and checks every
 * message before libraft sees it; libraft's own reader never runs) once libraft gave its
 * accept callback to listen(); until then (the server is still forming, Raft not started)
 * they are closed and the peer's raft_uv retries later.
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
 * Authorization. A Raft stream is accepted only from a server in the current configuration
 * (its sender id) and, without a key, only from that member's own address (source IP =
 * the IP of its configured address; names never match, so keyless clusters advertise IPs).
 * Outgoing connections leave from the bind address when it names one, so that the source
 * address is the member address. A server whose configuration is still empty (new, or wiped,
 * waiting for the leader to add and catch it up) cannot tell the leader from anyone else and
 * accepts any stream that passed the handshake. RPC requests (rpc.c asks cons__peer_may):
 * with a key every authenticated peer is a cluster server and may ask anything; without one,
 * FORWARD (writes), REMOVE and READ_INDEX come only from a member's address, JOIN from a
 * member's address (a relay) or from join_allow (-join-allow; default loopback), and HELLO
 * from anyone, but a forming server merges a HELLO only from the address it claims, and only
 * when that address is known to it or in join_allow (form.c's form_trusts).
 *
 * A limit of the rule: a server whose configuration is so stale that it does not list the
 * current leader (it was down while that leader joined) refuses the leader's streams and is
 * not caught up; wipe its data dir and it joins again as a new server.
 *
 * What an unauthenticated peer can still do. Without a key: anyone who reaches the port can
 * open connections (bounded by the caps), read the formation state and configuration (HELLO),
 * take part in a formation and ask to join from join_allow or a known address; anyone who
 * can send from a member's IP (the same host, a spoofing router) is that member. With a key,
 * an outsider gets no further than the handshake; but the key authenticates only the
 * handshake: the stream after it is neither encrypted nor integrity-protected, so an attacker
 * on the path can read the catalog as it replicates and inject into or cut an established
 * connection. A server still waiting to be added accepts Raft from any key holder (without a
 * key: from anyone), and a removed server that still has the key can still connect (only
 * members' Raft streams are accepted, but RPC is open to key holders). Confidentiality and
 * per-message integrity need TLS (a later issue).
 *
 * The receiver id. A Raft stream is meant for one server, not for whoever listens at the
 * address now: a server whose data dir was wiped comes back at the same address with a new
 * id, and must not take the messages (votes, appends, snapshots) meant for its former self,
 * which the leader still addresses there until it replaces that server (member.c). So the
 * dialer names the id it wants and the listener closes a stream for any other id.
 *
 * Ownership follows libraft's own TCP transport: a stream handed over (a connected one to
 * libraft, an accepted Raft stream to raft_stream.c) is a uv_tcp_t allocated with
 * raft_malloc, alone in its allocation, because its new owner closes it and frees it with
 * raft_free. RPC streams are allocated the same way (the
 * preamble decides the kind only after the accept), and rpc.c frees them alike.
 *
 * Dialing. connect() and cons__dial_rpc() share one dialer: resolve (numeric addresses
 * directly, names through uv_getaddrinfo), TCP connect with TCP_NODELAY (without it small
 * appends wait ~40 ms for delayed ACKs) and keepalive, the connect bounded by cons__connect_ms
 * and the connection given TCP_USER_TIMEOUT cons__silent_ms (failover.c: silent peers), then
 * write the handshake (and with a key check the server's proof and send ours, within 2 s of
 * the connect) before handing the stream over.
 * libraft retries a failed connect after its retry delay (set to 50 ms in cons.c); the dialer
 * adds an exponential backoff per Raft peer on top (50 ms doubling to 250 ms, reset by a
 * Raft connection from that peer, which also starts a dial still waiting out its delay: a
 * restarted server is reached as soon as it reaches us; or reset by a
 * successful connect), so a dead peer costs little and a restarted one is found again fast.
 * RPC connections keep their own backoff in rpc.c.
 *
 * Closing. libraft's io closes the transport inside raft_close: the listener closes, stalled
 * handshakes are aborted, pending dials are cancelled (libraft's connect callbacks get
 * RAFT_CANCELED, RPC dials UV_ECANCELED) and the close callback runs once the last of those
 * handles is closed; only then does cons.c free the transport (cons__transport_close). */
#include "internal.h"

#include <inttypes.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define PREAMBLE_LEN         8
#define HANDSHAKE_TIMEOUT_MS 5000
#define HANDSHAKES_MAX       128
#define CONNECT_TIMEOUT_MS   2000 /* the connect and, with a key, the whole handshake */
#define ADDRESS_MAX          255
#define HEADER_LEN           24 /* sender id, receiver id, address length, flags, 3 zeros */
#define FLAG_KEYED           0x01u
#define NONCE_LEN            32
#define MAC_LEN              SHA256_DIGEST_SIZE
#define TRANSCRIPT_MAX       (PREAMBLE_LEN + HEADER_LEN + ADDRESS_MAX + 2 * NONCE_LEN)
#define REFUSE_LOG_MS        10000
#define BACKOFF_MIN_MS       50
#define BACKOFF_MAX_MS       250
#define DEFAULT_SERVER_PORT  8300
#define LISTEN_BACKLOG       128
#define KEEPALIVE_S          30

static const uint8_t preamble_raft[PREAMBLE_LEN] = {'H', 'R', 'L', 'D', 'R', 'A', 'F', '3'};
static const uint8_t preamble_rpc[PREAMBLE_LEN] = {'H', 'R', 'L', 'D', 'R', 'P', 'C', '2'};
/* MAC labels: the server's proof and the client's differ, so neither can be reflected. */
static const char label_server[] = "herald server-port v1 server";
static const char label_client[] = "herald server-port v1 client";

struct tp;

enum { IN_PREAMBLE, IN_HEADER, IN_ADDRESS, IN_NONCE, IN_MAC };

/* An accepted connection whose handshake is being read. buf keeps the transcript (preamble,
 * header, address, the client's nonce, ours) that both MACs cover. */
struct incoming {
    struct incoming *prev, *next;
    struct tp *tp;
    uv_tcp_t *tcp; /* raft_malloc'd */
    uint64_t started;
    int phase;
    bool raft;
    uint8_t *dst; /* where the current part goes */
    size_t need, got;
    size_t tlen; /* transcript bytes in buf */
    struct cons_peer peer;
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
struct cons_ipcount {
    uint8_t ip[16];
    int family;
    unsigned n;
};

struct cons_dial {
    struct cons_dial *prev, *next;
    struct tp *tp;
    bool raft;
    struct raft_uv_connect *req; /* Raft: libraft's request */
    raft_id peer;                /* Raft: the peer's id (backoff) */
    cons_dial_cb cb;             /* RPC */
    void *data;
    char host[ADDRESS_MAX + 1];
    int port;
    struct sockaddr_storage sa;
    uv_tcp_t *tcp; /* raft_malloc'd; NULL before the connect and once handed over */
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

struct backoff {
    raft_id id;
    unsigned failures;
};

struct tp {
    struct cons *c;
    uv_loop_t *loop;
    raft_id id;
    char *address;
    uv_tcp_t *listener; /* NULL once closed */
    raft_uv_accept_cb accept_cb;
    struct incoming *incoming;
    unsigned n_incoming;
    struct cons_dial *dials;
    struct backoff *backoff;
    size_t n_backoff;
    unsigned closing_handles; /* listener and aborted handshakes being closed */
    bool closing;
    raft_uv_transport_close_cb close_cb;
    uint64_t warn_at;
    int listen_error;            /* why tp_init failed (a libuv code), for cons_start */
    struct sockaddr_storage src; /* outgoing connections bind to it (family 0: not) */
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

static void free_raft_tcp(uv_handle_t *h)
{
    raft_free(h);
}

static void tp_maybe_closed(struct tp *tp)
{
    if (!tp->closing || !tp->close_cb || tp->listener || tp->incoming || tp->dials ||
        tp->closing_handles)
        return;
    raft_uv_transport_close_cb cb = tp->close_cb;
    tp->close_cb = NULL;
    cb(&tp->c->transport);
}

/* ---- peers: addresses, counts, policy -------------------------------------------------- */

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

bool cons__peer_at(const struct cons_peer *p, const char *address)
{
    char host[ADDRESS_MAX + 1];
    int port;
    struct sockaddr_storage sa;
    if (!address || base_hostport_parse(address, DEFAULT_SERVER_PORT, host, sizeof host, &port) ||
        numeric_addr(host, port, &sa) != 0)
        return false;
    return same_ip(&sa, &p->sa);
}

bool cons__peer_is_member(struct cons *c, const struct cons_peer *p)
{
    if (p->keyed)
        return true;
    if (!c->raft_started)
        return false;
    const struct raft_configuration *conf = &c->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id != c->id && cons__peer_at(p, conf->servers[i].address))
            return true;
    return false;
}

void cons__refuse_log(struct cons *c, const struct sockaddr_storage *sa, const char *why)
{
    char ip[64];
    uint64_t now = uv_now(c->loop);
    /* rate-limited per reason (why is a string literal): a flood of one kind does not hide
     * another */
    size_t slot = 0;
    for (size_t i = 0; i < BASE_ARRAY_LEN(c->refuse_log); i++) {
        if (c->refuse_log[i].why == why) {
            slot = i;
            break;
        }
        if (c->refuse_log[i].at < c->refuse_log[slot].at)
            slot = i;
    }
    if (c->refuse_log[slot].why == why && now < c->refuse_log[slot].at) {
        LOG_DEBUG("consensus", "server port: refused %s: %s", ip_str(sa, ip, sizeof ip), why);
        return;
    }
    c->refuse_log[slot].why = why;
    c->refuse_log[slot].at = now + REFUSE_LOG_MS;
    LOG_WARN("consensus", "server port: refused %s: %s", ip_str(sa, ip, sizeof ip), why);
}

static bool is_loopback(const struct sockaddr_storage *sa)
{
    uint8_t b[16];
    int family;
    size_t n = ip_bytes(sa, b, &family);
    static const uint8_t v6_loop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return (n == 4 && b[0] == 127) || (n == 16 && memcmp(b, v6_loop, 16) == 0);
}

bool cons__join_allowed(struct cons *c, const struct sockaddr_storage *sa)
{
    return c->join_allowed ? c->join_allowed(c->join_allowed_data, (const struct sockaddr *)sa)
                           : is_loopback(sa);
}

int cons__peer_may(struct cons *c, const struct cons_peer *p, uint8_t type)
{
    const char *why = NULL;
    if (p->keyed || type == CONS_RPC_HELLO || cons__peer_is_member(c, p))
        return 0;
    if (type == CONS_RPC_JOIN) {
        /* joining is what servers outside the configuration do: without a key, only from
         * the addresses the operator allows (-join-allow; default loopback) */
        if (cons__join_allowed(c, &p->sa))
            return 0;
        why = "JOIN from an address not in join_allow (set encrypt, or list it)";
    } else {
        why = type == CONS_RPC_FORWARD  ? "forwarded write from a non-member address"
              : type == CONS_RPC_REMOVE ? "REMOVE from a non-member address"
                                        : "request from a non-member address";
    }
    cons__refuse_log(c, &p->sa, why);
    return BASE_EACL;
}

static struct cons_ipcount *ipcount_find(struct cons *c, const struct sockaddr_storage *sa,
                                         bool add)
{
    uint8_t b[16];
    int family;
    size_t n = ip_bytes(sa, b, &family);
    for (size_t i = 0; i < c->n_ipcounts; i++)
        if (c->ipcounts[i].family == family && memcmp(c->ipcounts[i].ip, b, n) == 0)
            return &c->ipcounts[i];
    if (!add)
        return NULL;
    c->ipcounts = base_realloc(c->ipcounts, (c->n_ipcounts + 1) * sizeof *c->ipcounts);
    struct cons_ipcount *e = &c->ipcounts[c->n_ipcounts++];
    memset(e, 0, sizeof *e);
    memcpy(e->ip, b, n);
    e->family = family;
    return e;
}

bool cons__peer_count(struct cons *c, const struct sockaddr_storage *sa)
{
    struct cons_ipcount *e = ipcount_find(c, sa, true);
    if (e->n >= c->max_per_client)
        return false;
    e->n++;
    return true;
}

void cons__peer_release(struct cons *c, const struct sockaddr_storage *sa)
{
    struct cons_ipcount *e = ipcount_find(c, sa, false);
    assert(e && e->n > 0);
    if (--e->n == 0) { /* keep the table as small as the set of IPs connected now */
        *e = c->ipcounts[--c->n_ipcounts];
        if (c->n_ipcounts == 0) {
            base_free(c->ipcounts);
            c->ipcounts = NULL;
        }
    }
}

/* Why a Raft stream from p is refused (NULL: accepted). Only a member of the configuration
 * may send Raft messages; without a key it must also come from that member's address. A
 * server whose configuration is empty has not been added yet (a new or wiped server waiting
 * for the leader to catch it up): it cannot tell the leader from anyone else who passed the
 * handshake, and accepts them. */
static const char *raft_refusal(struct tp *tp, struct cons_peer *p)
{
    const struct raft_configuration *conf = &tp->c->raft.configuration;
    if (!tp->accept_cb || conf->n == 0)
        return NULL;
    for (unsigned i = 0; i < conf->n; i++) {
        if (conf->servers[i].id != p->id)
            continue;
        if (!p->keyed && !cons__peer_at(p, conf->servers[i].address))
            return "raft stream for a member from another address (set encrypt)";
        /* libraft learns the leader's address from its messages: the configuration's, not
         * whatever the handshake claimed */
        snprintf(p->address, sizeof p->address, "%s", conf->servers[i].address);
        return NULL;
    }
    return "raft stream from an id not in the configuration";
}

/* ---- the handshake's proof --------------------------------------------------------------- */

static void hs_mac(const struct cons *c, const char *label, const uint8_t *t, size_t n,
                   uint8_t out[MAC_LEN])
{
    struct hmac_sha256_ctx ctx;
    hmac_sha256_set_key(&ctx, c->key_len, c->key);
    hmac_sha256_update(&ctx, strlen(label) + 1, (const uint8_t *)label);
    hmac_sha256_update(&ctx, n, t);
    hmac_sha256_digest(&ctx, MAC_LEN, out);
}

static int hs_nonce(uint8_t out[NONCE_LEN])
{
    return getrandom(out, NONCE_LEN, 0) == NONCE_LEN ? 0 : -errno;
}

/* Preamble, header and address (and with a key our nonce) for a dial to receiver `to`. */
static size_t hs_build(struct tp *tp, const uint8_t *preamble, uint64_t to,
                       uint8_t out[TRANSCRIPT_MAX])
{
    struct cons *c = tp->c;
    size_t alen = strlen(tp->address);
    memcpy(out, preamble, PREAMBLE_LEN);
    uint8_t *h = out + PREAMBLE_LEN;
    base_put_le64(h, tp->id);
    base_put_le64(h + 8, to);
    base_put_le32(h + 16, (uint32_t)alen);
    h[20] = c->key_len ? FLAG_KEYED : 0;
    h[21] = h[22] = h[23] = 0;
    memcpy(h + HEADER_LEN, tp->address, alen);
    size_t n = PREAMBLE_LEN + HEADER_LEN + alen;
    if (c->key_len) {
        if (hs_nonce(out + n) != 0) {
            LOG_ERR("consensus", "getrandom: %s", strerror(errno));
            abort();
        }
        n += NONCE_LEN;
    }
    return n;
}

/* ---- incoming connections -------------------------------------------------------------- */

/* Off the handshake list; its count against the source IP stays with the stream. */
static void in_detach(struct incoming *in)
{
    struct tp *tp = in->tp;
    if (in->prev)
        in->prev->next = in->next;
    else
        tp->incoming = in->next;
    if (in->next)
        in->next->prev = in->prev;
    tp->n_incoming--;
}

static void in_unlink(struct incoming *in)
{
    in_detach(in);
    cons__peer_release(in->tp->c, &in->peer.sa);
}

static void in_closed(uv_handle_t *h)
{
    struct incoming *in = h->data;
    struct tp *tp = in->tp;
    raft_free(in->tcp);
    base_free(in);
    tp->closing_handles--;
    tp_maybe_closed(tp);
}

static void in_abort(struct incoming *in, const char *why)
{
    LOG_DEBUG("consensus", "server port: closing a connection: %s", why);
    in_unlink(in);
    in->tp->closing_handles++;
    uv_close((uv_handle_t *)in->tcp, in_closed);
}

/* A refusal worth telling the operator about (a peer without the key, a forged handshake). */
static void in_refuse(struct incoming *in, const char *why)
{
    cons__refuse_log(in->tp->c, &in->peer.sa, why);
    in_abort(in, why);
}

static void in_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct incoming *in = h->data;
    BASE_UNUSED(suggested);
    /* exactly the bytes of the current part: nothing of the next protocol is read here */
    buf->base = (char *)in->dst + in->got;
    buf->len = in->need - in->got;
}

static void in_expect(struct incoming *in, int phase, uint8_t *dst, size_t need)
{
    in->phase = phase;
    in->dst = dst;
    in->need = need;
    in->got = 0;
}

static void dial_timer_cb(uv_timer_t *t);
static struct backoff *backoff_of(struct tp *tp, raft_id id);

/* A Raft connection from id: it is up, so our dials to it need not wait. */
static void peer_is_back(struct tp *tp, raft_id id)
{
    backoff_of(tp, id)->failures = 0;
    for (struct cons_dial *d = tp->dials; d; d = d->next)
        if (d->raft && d->peer == id && !d->started && !d->finishing && d->status == 0)
            uv_timer_start(&d->timer, dial_timer_cb, 0, 0);
}

/* The handshake is complete: the stream changes hands (its reads stopped, nothing buffered). */
static void in_hand_over(struct incoming *in)
{
    struct tp *tp = in->tp;
    uv_tcp_t *tcp = in->tcp;
    bool raft = in->raft;
    if (raft && !tp->closing) {
        const char *why = raft_refusal(tp, &in->peer);
        if (why) {
            in_refuse(in, why);
            return;
        }
    }
    uv_read_stop((uv_stream_t *)tcp);
    struct cons_peer peer = in->peer;
    in_detach(in);
    tcp->data = NULL;
    if (tp->closing || (raft && !tp->accept_cb)) {
        /* Raft not started yet (still forming): the peer's raft_uv connects again later */
        cons__peer_release(tp->c, &peer.sa);
        uv_close((uv_handle_t *)tcp, free_raft_tcp);
    } else if (raft) {
        /* ours now (raft_stream.c), not libraft's reader (tp->accept_cb), which trusts the
         * bytes: every message is decoded and checked before libraft sees it. A member's
         * one stream is not counted against it. */
        cons__peer_release(tp->c, &peer.sa);
        peer_is_back(tp, peer.id);
        LOG_DEBUG("consensus", "raft connection from id=%" PRIu64 " address=%s%s", peer.id,
                  peer.address, peer.keyed ? " (key proved)" : "");
        cons__wire_accept(tp->c, peer.id, peer.address, tcp);
    } else {
        cons__rpc_accept(tp->c, tcp, &peer);
    }
    base_free(in);
}

static void hs_write_cb(uv_write_t *w, int status)
{
    BASE_UNUSED(status); /* a failed write shows as a failed read, or the peer never answers */
    base_free(w->data);
}

/* Keyed: the client's nonce is in; answer with ours and our proof, then wait for theirs. */
static void in_challenge(struct incoming *in)
{
    struct cons *c = in->tp->c;
    struct hs_write *hw = base_malloc(sizeof *hw);
    uint8_t *nonce = in->buf + in->tlen;
    if (hs_nonce(nonce) != 0) {
        base_free(hw);
        in_abort(in, "getrandom failed");
        return;
    }
    in->tlen += NONCE_LEN;
    memcpy(hw->data, nonce, NONCE_LEN);
    hs_mac(c, label_server, in->buf, in->tlen, hw->data + NONCE_LEN);
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
    struct incoming *in = s->data;
    struct cons *c = in->tp->c;
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
            in->raft = false;
        else if (memcmp(in->buf, preamble_raft, PREAMBLE_LEN) == 0)
            in->raft = true;
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
        if (in->raft && to != in->tp->id) {
            char why[96];
            snprintf(why, sizeof why, "raft connection meant for id %" PRIu64 ", not us", to);
            in_abort(in, why);
            return;
        }
        if ((h[20] & FLAG_KEYED) && !c->key_len) {
            in_refuse(in, "the peer uses a cluster key and we have none (set encrypt)");
            return;
        }
        if (!(h[20] & FLAG_KEYED) && c->key_len) {
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
        if (c->key_len)
            in_expect(in, IN_NONCE, in->buf + in->tlen, NONCE_LEN);
        else
            in_hand_over(in);
        return;
    case IN_NONCE:
        in_challenge(in);
        return;
    default: {
        uint8_t want[MAC_LEN];
        hs_mac(c, label_client, in->buf, in->tlen, want);
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
    struct tp *tp = server->data;
    if (status < 0) {
        uint64_t now = uv_now(tp->loop);
        if (now >= tp->warn_at) {
            tp->warn_at = now + 10000;
            LOG_WARN("consensus", "server port: accept: %s", uv_strerror(status));
        }
        return;
    }
    uv_tcp_t *tcp = raft_malloc(sizeof *tcp);
    if (!tcp) {
        LOG_ERR("consensus", "out of memory accepting a connection");
        abort();
    }
    uv_tcp_init(tp->loop, tcp);
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    memset(&sa, 0, sizeof sa);
    if (uv_accept(server, (uv_stream_t *)tcp) != 0 || tp->closing ||
        uv_tcp_getpeername(tcp, (struct sockaddr *)&sa, &salen) != 0) {
        uv_close((uv_handle_t *)tcp, free_raft_tcp);
        return;
    }
    if (!cons__peer_count(tp->c, &sa)) {
        cons__refuse_log(tp->c, &sa,
                         "too many connections from this address (rpc_max_conns_per_client)");
        uv_close((uv_handle_t *)tcp, free_raft_tcp);
        return;
    }
    if (tp->n_incoming >= HANDSHAKES_MAX) {
        /* Make room by dropping the oldest handshake rather than refusing this one: a server's
         * handshake completes in a round trip, so whoever holds the table full with silent
         * connections loses them first, and members still get through. */
        struct incoming *oldest = tp->incoming;
        while (oldest->next)
            oldest = oldest->next; /* new ones are pushed at the head */
        cons__refuse_log(tp->c, &oldest->peer.sa,
                         "too many handshakes at once: the oldest dropped");
        in_abort(oldest, "too many handshakes at once");
    }
    uv_tcp_nodelay(tcp, 1);
    uv_tcp_keepalive(tcp, 1, KEEPALIVE_S);
    struct incoming *in = base_calloc(1, sizeof *in);
    in->tp = tp;
    in->tcp = tcp;
    in->peer.sa = sa;
    in->started = uv_now(tp->loop);
    in_expect(in, IN_PREAMBLE, in->buf, PREAMBLE_LEN);
    tcp->data = in;
    in->next = tp->incoming;
    if (tp->incoming)
        tp->incoming->prev = in;
    tp->incoming = in;
    tp->n_incoming++;
    if (uv_read_start((uv_stream_t *)tcp, in_alloc, in_read) != 0)
        in_abort(in, "read start");
}

void cons__transport_sweep(struct cons *c)
{
    struct tp *tp = c->transport.impl;
    if (!tp || tp->closing)
        return;
    uint64_t now = uv_now(tp->loop);
    struct incoming *in = tp->incoming, *next;
    for (; in; in = next) {
        next = in->next;
        if (now - in->started >= HANDSHAKE_TIMEOUT_MS)
            in_abort(in, "handshake timed out");
    }
}

/* ---- dialing --------------------------------------------------------------------------- */

static struct backoff *backoff_of(struct tp *tp, raft_id id)
{
    for (size_t i = 0; i < tp->n_backoff; i++)
        if (tp->backoff[i].id == id)
            return &tp->backoff[i];
    tp->backoff = base_realloc(tp->backoff, (tp->n_backoff + 1) * sizeof *tp->backoff);
    tp->backoff[tp->n_backoff] = (struct backoff){.id = id, .failures = 0};
    return &tp->backoff[tp->n_backoff++];
}

static unsigned backoff_delay(unsigned failures)
{
    if (failures == 0)
        return 0;
    unsigned d = BACKOFF_MIN_MS;
    for (unsigned i = 1; i < failures && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    return d < BACKOFF_MAX_MS ? d : BACKOFF_MAX_MS;
}

static void dial_unlink(struct cons_dial *d)
{
    struct tp *tp = d->tp;
    if (d->prev)
        d->prev->next = d->next;
    else
        tp->dials = d->next;
    if (d->next)
        d->next->prev = d->prev;
}

/* Runs the user's callback once (failure or cancel: no stream). */
static void dial_deliver(struct cons_dial *d, uv_tcp_t *tcp)
{
    if (d->delivered)
        return;
    d->delivered = true;
    if (d->raft) {
        int st = tcp ? 0 : d->status == UV_ECANCELED ? RAFT_CANCELED : RAFT_NOCONNECTION;
        d->req->cb(d->req, (uv_stream_t *)tcp, st);
    } else {
        d->cb(d->data, tcp, tcp ? 0 : d->status);
    }
}

static void dial_unpend(struct cons_dial *d)
{
    assert(d->pending > 0);
    if (--d->pending > 0)
        return;
    struct tp *tp = d->tp;
    dial_unlink(d);
    dial_deliver(d, NULL);
    base_free(d->hs);
    base_free(d);
    tp_maybe_closed(tp);
}

static void dial_timer_closed(uv_handle_t *h)
{
    dial_unpend(h->data);
}

static void dial_tcp_closed(uv_handle_t *h)
{
    struct cons_dial *d = h->data;
    raft_free(h);
    dial_unpend(d);
}

/* Failure, cancel or success: close what is ours; the last close frees the dial. */
static void dial_finish(struct cons_dial *d, int status)
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
    if (status != 0 && status != UV_ECANCELED && d->raft)
        backoff_of(d->tp, d->peer)->failures++;
}

static void dial_write_cb(uv_write_t *w, int status);

static void dial_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct cons_dial *d = h->data;
    BASE_UNUSED(suggested);
    /* exactly the server's nonce and proof: what follows belongs to the protocol */
    buf->base = (char *)d->reply + d->reply_got;
    buf->len = sizeof d->reply - d->reply_got;
}

/* Keyed: the server's nonce and proof. It proved the key: prove ours. */
static void dial_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct cons_dial *d = s->data;
    struct cons *c = d->tp->c;
    BASE_UNUSED(buf);
    if (d->finishing || nread == 0)
        return;
    if (nread < 0) {
        if (uv_now(d->tp->loop) >= c->refuse_warn_at) {
            c->refuse_warn_at = uv_now(d->tp->loop) + REFUSE_LOG_MS;
            LOG_WARN("consensus",
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
    hs_mac(c, label_server, t, d->hs_len + NONCE_LEN, want);
    if (!memeql_sec(want, d->reply + NONCE_LEN, MAC_LEN)) {
        if (uv_now(d->tp->loop) >= c->refuse_warn_at) {
            c->refuse_warn_at = uv_now(d->tp->loop) + REFUSE_LOG_MS;
            LOG_WARN("consensus", "server port: %s:%d does not prove our cluster key", d->host,
                     d->port);
        }
        dial_finish(d, UV_EACCES);
        return;
    }
    hs_mac(c, label_client, t, d->hs_len + NONCE_LEN, d->mac);
    d->proving = true;
    uv_buf_t b = uv_buf_init((char *)d->mac, MAC_LEN);
    int rv = uv_write(&d->write, (uv_stream_t *)d->tcp, &b, 1, dial_write_cb);
    if (rv != 0)
        dial_finish(d, rv);
}

static void dial_write_cb(uv_write_t *w, int status)
{
    struct cons_dial *d = w->data;
    if (d->finishing)
        return;
    if (status != 0) {
        LOG_DEBUG("consensus", "dial %s:%d: handshake: %s", d->host, d->port, uv_strerror(status));
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
    if (d->raft)
        backoff_of(d->tp, d->peer)->failures = 0;
    uv_timer_stop(&d->timer);
    dial_deliver(d, tcp);
    dial_finish(d, 0);
}

static void dial_connect_cb(uv_connect_t *req, int status)
{
    struct cons_dial *d = req->data;
    if (d->finishing)
        return;
    if (status != 0) {
        LOG_DEBUG("consensus", "dial %s:%d: %s", d->host, d->port, uv_strerror(status));
        dial_finish(d, status);
        return;
    }
    uv_tcp_nodelay(d->tcp, 1);
    uv_tcp_keepalive(d->tcp, 1, KEEPALIVE_S);
    /* failover.c: a silent peer (partition) aborts the connection: redial, not backoff */
    uv_os_fd_t fd;
    unsigned silent = cons__silent_ms(d->tp->c);
    if (uv_fileno((uv_handle_t *)d->tcp, &fd) == 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &silent, sizeof silent);
    uv_timer_start(&d->timer, dial_timer_cb, CONNECT_TIMEOUT_MS, 0); /* now the handshake */
    uv_buf_t b = uv_buf_init((char *)d->hs, (unsigned)d->hs_len);
    d->write.data = d;
    int rv = uv_write(&d->write, (uv_stream_t *)d->tcp, &b, 1, dial_write_cb);
    if (rv != 0)
        dial_finish(d, rv);
}

static void dial_connect(struct cons_dial *d)
{
    d->tcp = raft_malloc(sizeof *d->tcp);
    if (!d->tcp) {
        LOG_ERR("consensus", "out of memory dialing %s", d->host);
        abort();
    }
    uv_tcp_init(d->tp->loop, d->tcp);
    d->tcp->data = d;
    uv_tcp_nodelay(d->tcp, 1); /* applied when libuv creates the socket */
    d->connect.data = d;
    int rv = 0;
    /* From our bind address, so that a peer without the key can tie us to our member address
     * (the kernel would pick 127.0.0.1 for every loopback peer, say). */
    if (d->tp->src.ss_family == d->sa.ss_family)
        rv = uv_tcp_bind(d->tcp, (const struct sockaddr *)&d->tp->src, 0);
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
    struct cons_dial *d = req->data;
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
        LOG_DEBUG("consensus", "resolve %s: %s", d->host,
                  status ? uv_strerror(status) : "no address");
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

/* The timer: first the start (after the backoff delay, or at once), then the connect bound. */
static void dial_timer_cb(uv_timer_t *t)
{
    struct cons_dial *d = t->data;
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
    /* failover.c: a short bound on the TCP connect (a lost SYN is retried only after 1 s) */
    uv_timer_start(&d->timer, dial_timer_cb, cons__connect_ms(d->tp->c), 0);
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
    int rv = uv_getaddrinfo(d->tp->loop, &d->gai, dial_gai_cb, d->host, service, &hints);
    if (rv != 0) {
        d->resolving = false;
        dial_finish(d, rv);
    }
}

/* A dial that starts after delay_ms; the preamble (and handshake) is hs. Callbacks always
 * come later, from the loop. */
static struct cons_dial *dial_new(struct tp *tp, const char *address, const uint8_t *hs,
                                  size_t hs_len, unsigned delay_ms)
{
    struct cons_dial *d = base_calloc(1, sizeof *d);
    d->tp = tp;
    d->keyed = tp->c->key_len != 0;
    d->hs = base_malloc(hs_len);
    memcpy(d->hs, hs, hs_len);
    d->hs_len = hs_len;
    uv_timer_init(tp->loop, &d->timer);
    d->timer.data = d;
    if (base_hostport_parse(address, DEFAULT_SERVER_PORT, d->host, sizeof d->host, &d->port) != 0) {
        LOG_WARN("consensus", "bad server address \"%s\"", address);
        d->status = UV_EINVAL;
        delay_ms = 0;
    } else if (numeric_addr(d->host, d->port, &d->sa) != 0) {
        d->sa.ss_family = 0; /* a name: resolved when the dial starts */
    }
    d->next = tp->dials;
    if (tp->dials)
        tp->dials->prev = d;
    tp->dials = d;
    uv_timer_start(&d->timer, dial_timer_cb, delay_ms, 0);
    return d;
}

struct cons_dial *cons__dial_rpc(struct cons *c, const char *address, cons_dial_cb cb, void *data)
{
    struct tp *tp = c->transport.impl;
    assert(tp && !tp->closing);
    uint8_t hs[TRANSCRIPT_MAX];
    size_t n = hs_build(tp, preamble_rpc, 0, hs);
    struct cons_dial *d = dial_new(tp, address, hs, n, 0);
    d->cb = cb;
    d->data = data;
    return d;
}

void cons__dial_cancel(struct cons_dial *d)
{
    dial_finish(d, UV_ECANCELED);
}

/* ---- the raft_uv_transport ------------------------------------------------------------- */

static void listener_free(uv_handle_t *h)
{
    base_free(h);
}

static void listener_closed(uv_handle_t *h)
{
    struct tp *tp = h->data;
    base_free(h);
    tp->listener = NULL;
    tp_maybe_closed(tp);
}

/* Binds and listens at once, so that a taken port fails cons_start, and so that RPC (HELLO)
 * works before Raft starts. */
static int tp_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct tp *tp = t->impl;
    struct cons *c = tp->c;
    const char *bind = c->bind_address ? c->bind_address : address;
    char host[ADDRESS_MAX + 1];
    int port;
    struct sockaddr_storage sa;
    int rv;

    if (base_hostport_parse(bind, DEFAULT_SERVER_PORT, host, sizeof host, &port) != 0 ||
        numeric_addr(host, port, &sa) != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "bad bind address \"%s\" (ip:port)", bind);
        return RAFT_INVALID;
    }
    if (strlen(address) > ADDRESS_MAX) {
        snprintf(t->errmsg, sizeof t->errmsg, "address too long");
        return RAFT_INVALID;
    }
    tp->id = id;
    tp->address = base_strdup(address);
    uv_tcp_t *l = base_malloc(sizeof *l);
    uv_tcp_init(tp->loop, l);
    l->data = tp;
    rv = uv_tcp_bind(l, (const struct sockaddr *)&sa, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)l, LISTEN_BACKLOG, listen_cb);
    if (rv != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "listen on %s: %s", bind, uv_strerror(rv));
        tp->listen_error = rv;
        uv_close((uv_handle_t *)l, listener_free);
        base_free(tp->address);
        tp->address = NULL;
        return RAFT_IOERR;
    }
    tp->listener = l;
    LOG_INFO("consensus", "server port listening on %s%s", bind,
             c->key_len ? " (cluster key required)" : "");
    if (!c->key_len)
        LOG_WARN("consensus",
                 "server port %s is open to anyone who can reach it: set encrypt (peers are only "
                 "tied to members by their source address)",
                 bind);
    /* outgoing connections leave from the bind address when it names one */
    struct sockaddr_storage any;
    if (numeric_addr(host, 0, &tp->src) == 0) {
        bool unspecified = false;
        if (tp->src.ss_family == AF_INET)
            unspecified = ((struct sockaddr_in *)&tp->src)->sin_addr.s_addr == htonl(INADDR_ANY);
        else if (numeric_addr("::", 0, &any) == 0)
            unspecified = memcmp(&((struct sockaddr_in6 *)&tp->src)->sin6_addr,
                                 &((struct sockaddr_in6 *)&any)->sin6_addr, 16) == 0;
        if (unspecified)
            tp->src.ss_family = 0;
    }
    return 0;
}

static int tp_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct tp *tp = t->impl;
    tp->accept_cb = cb;
    return 0;
}

static int tp_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                      const char *address, raft_uv_connect_cb cb)
{
    struct tp *tp = t->impl;
    uint8_t hs[TRANSCRIPT_MAX];

    assert(!tp->closing);
    size_t n = hs_build(tp, preamble_raft, id, hs);
    req->cb = cb;
    struct cons_dial *d = dial_new(tp, address, hs, n, backoff_delay(backoff_of(tp, id)->failures));
    d->raft = true;
    d->req = req;
    d->peer = id;
    return 0;
}

static void tp_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct tp *tp = t->impl;
    assert(!tp->closing);
    tp->closing = true;
    tp->close_cb = cb;
    if (tp->listener)
        uv_close((uv_handle_t *)tp->listener, listener_closed);
    while (tp->incoming)
        in_abort(tp->incoming, "closing");
    for (struct cons_dial *d = tp->dials; d; d = d->next)
        dial_finish(d, UV_ECANCELED);
    tp_maybe_closed(tp);
}

int cons__transport_init(struct cons *c, char *errmsg)
{
    BASE_UNUSED(errmsg);
    struct tp *tp = base_calloc(1, sizeof *tp);
    tp->c = c;
    tp->loop = c->loop;
    memset(&c->transport, 0, sizeof c->transport);
    c->transport.version = 1;
    c->transport.impl = tp;
    c->transport.init = tp_init;
    c->transport.listen = tp_listen;
    c->transport.connect = tp_connect;
    c->transport.close = tp_close;
    return 0;
}

int cons__transport_error(struct cons *c)
{
    struct tp *tp = c->transport.impl;
    return tp ? tp->listen_error : 0;
}

void cons__transport_close(struct cons *c)
{
    struct tp *tp = c->transport.impl;
    if (!tp)
        return;
    assert(!tp->listener && !tp->incoming && !tp->dials && !tp->closing_handles);
    base_free(tp->address);
    base_free(tp->backoff);
    base_free(tp);
    c->transport.impl = NULL;
}
