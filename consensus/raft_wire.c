/* The Raft wire decoder: libraft's uv message format, decoded and bounds-checked by us.
 *
 * libraft 0.22.1's own reader (src/uv_recv.c, src/uv_encoding.c) trusts every count and length
 * it reads: an AppendEntries claiming 0xffffffff entries makes it allocate for them and read
 * their headers far past the frame, a configuration's length or server count walks off its
 * buffer, a zero-length or unpadded entry leaves pointers uninitialised. Raft streams from the
 * server port therefore never reach it: raft_stream.c reads them and this file decodes each
 * message completely into a struct raft_message, checking it against the frame and against
 * what a Herald server can legitimately send, before libraft's receive callback sees it.
 *
 * The format (little endian), as libraft 0.22.1 writes it:
 *   preamble  u8 type, u8 0, u8 version, u8 0, u32 0, u64 header length
 *   header    AppendEntries      term, prev_log_index, prev_log_term, leader_commit, u64 n,
 *                                n x (u64 term, u8 type, 3 x u8, u32 length), u64 0
 *             AppendEntriesResult term, rejected, last_log_index [, u16 features, u16 capacity,
 *                                u32 0]
 *             RequestVote        term, candidate_id, last_log_index, last_log_term [, u64 flags]
 *             RequestVoteResult  term, vote_granted [, u8 flags, u8 0, u16 features,
 *                                u16 capacity, u16 0]
 *             InstallSnapshot    term, last_index, last_term, conf_index, u64 conf length,
 *                                configuration, u64 data length, u64 0
 *             TimeoutNow         term, last_log_index, last_log_term
 *   payload   AppendEntries: the entries' data back to back; InstallSnapshot: the data.
 * A configuration: u8 format (1), u64 n, n x (u64 id, address NUL-terminated, u8 role), zero
 * padding to a multiple of 8.
 *
 * What is refused beyond the frame's own consistency (exact header lengths for each type and
 * version, entry headers inside the header, a configuration that fills its length exactly):
 *  - more than CONS_WIRE_ENTRIES_MAX entries (libraft sends at most max_inflight_entries, 32 by
 *    default, which consensus keeps), an entry that is empty, not a multiple of 8 bytes (every
 *    entry libraft or consensus makes is padded: entry.c, barriers, configurations; libraft's
 *    own decoder assumes the padding and reads past the payload otherwise) or over
 *    CONS_WIRE_ENTRY_MAX, an unknown entry type;
 *  - a snapshot over CONS_WIRE_SNAPSHOT_MAX or empty, a configuration over
 *    CONS_WIRE_CONF_MAX, with no server, a zero id, an empty, over-long or unterminated address,
 *    an unknown role, a duplicate id or address, non-zero padding;
 *  - terms and indices above CONS_WIRE_TERM_MAX / CONS_WIRE_INDEX_MAX (2^62: far beyond any
 *    real cluster, and sums like prev_log_index + n cannot overflow), an entry, prev_log_term,
 *    last_log_term or snapshot last_term above the message's own term (in Raft no log term
 *    exceeds the sender's current term), a snapshot configuration index past its last index,
 *    a RequestVote whose candidate is not the stream's sender.
 * What needs our own state is checked separately, just before delivery (cons__wire_check):
 * the term bound relative to ours (cons__wire_term_ok) and the messages libraft 0.22.1 assumes
 * cannot arrive (its asserts are compiled out in Debian's build, so it goes on with broken
 * state): an AppendEntries or InstallSnapshot in our own term while we lead (a second leader in
 * one term; libraft then writes "the leader" into its follower state, which shares a union with
 * the leader's), a granted vote from a term beyond the one we could be asking for.
 *
 * Ownership follows uv_recv.c exactly, so that libraft frees what it gets as it frees what its
 * own reader gives it: entries in one raft_malloc'd array, their data in one raft_malloc'd
 * payload (each entry's batch), the configuration built with raft_configuration_add, the
 * snapshot data raft_malloc'd. Pure code: no logging, no loop. */
#include "internal.h"

#include <string.h>

#define ENCODING_FORMAT 1 /* libraft's configuration encoding */

static uint64_t get64(const uint8_t **p)
{
    uint64_t v = base_le64(*p);
    *p += 8;
    return v;
}

static uint8_t get8(const uint8_t **p)
{
    return *(*p)++;
}

static uint16_t get16(const uint8_t **p)
{
    uint16_t v = base_le16(*p);
    *p += 2;
    return v;
}

static uint32_t get32(const uint8_t **p)
{
    uint32_t v = base_le32(*p);
    *p += 4;
    return v;
}

/* The smallest and largest header each type may have (exact sizes are checked per type). */
static bool header_len_ok(uint8_t type, uint64_t len)
{
    switch (type) {
    case RAFT_APPEND_ENTRIES:
        return len >= 48 && len <= 48 + 16 * (uint64_t)CONS_WIRE_ENTRIES_MAX;
    case RAFT_APPEND_ENTRIES_RESULT:
        return len == 24 || len == 32;
    case RAFT_REQUEST_VOTE:
        return len == 32 || len == 40;
    case RAFT_REQUEST_VOTE_RESULT:
        return len == 16 || len == 24;
    case RAFT_INSTALL_SNAPSHOT:
        return len >= 56 + 24 && len <= 56 + (uint64_t)CONS_WIRE_CONF_MAX;
    case RAFT_TIMEOUT_NOW:
        return len == 24;
    default:
        return false;
    }
}

int cons__wire_preamble(const uint8_t *p, struct cons_wire_pre *pre, const char **why)
{
    /* byte 0 the type, byte 2 the version; libraft ignores the others (room for later
     * versions), so do we */
    pre->type = p[0];
    pre->version = p[2];
    uint64_t len = base_le64(p + 8);
    if (pre->type < RAFT_APPEND_ENTRIES || pre->type > RAFT_TIMEOUT_NOW) {
        *why = "unknown message type";
        return BASE_EPARSE;
    }
    if (!header_len_ok(pre->type, len)) {
        *why = "bad header length";
        return BASE_EPARSE;
    }
    pre->header_len = (size_t)len;
    return 0;
}

static int fail(const char **why, const char *reason)
{
    *why = reason;
    return BASE_EPARSE;
}

static bool term_ok(uint64_t t)
{
    return t <= CONS_WIRE_TERM_MAX;
}

static bool index_ok(uint64_t i)
{
    return i <= CONS_WIRE_INDEX_MAX;
}

static int decode_append(uint8_t version, const uint8_t *h, size_t len,
                         struct raft_append_entries *a, size_t *payload, const char **why)
{
    const uint8_t *p = h;
    a->version = version;
    a->term = get64(&p);
    a->prev_log_index = get64(&p);
    a->prev_log_term = get64(&p);
    a->leader_commit = get64(&p);
    uint64_t n = get64(&p);
    if (!term_ok(a->term) || a->prev_log_term > a->term)
        return fail(why, "bad term");
    if (n > CONS_WIRE_ENTRIES_MAX || len != 48 + 16 * n)
        return fail(why, "entry count does not match the frame");
    if (!index_ok(a->prev_log_index) || !index_ok(a->leader_commit))
        return fail(why, "bad index");
    /* check every entry header before allocating anything */
    uint64_t total = 0;
    const uint8_t *q = p;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t term = get64(&q);
        uint8_t type = get8(&q);
        q += 3;
        uint32_t elen = get32(&q);
        if (term == 0 || term > a->term)
            return fail(why, "bad entry term");
        if (type != RAFT_COMMAND && type != RAFT_BARRIER && type != RAFT_CHANGE)
            return fail(why, "bad entry type");
        if (elen == 0 || elen % 8 != 0 || elen > CONS_WIRE_ENTRY_MAX)
            return fail(why, "bad entry length");
        total += elen;
    }
    if (get64(&q) != 0)
        return fail(why, "bad trailer");
    a->n_entries = (unsigned)n;
    a->entries = NULL;
    *payload = (size_t)total; /* at most 1024 x ~4 MiB: no overflow, and n > 0 -> total > 0 */
    if (n == 0)
        return 0;
    a->entries = raft_calloc(n, sizeof *a->entries);
    if (!a->entries)
        return fail(why, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        struct raft_entry *e = &a->entries[i];
        e->term = get64(&p);
        e->type = (enum raft_entry_type)get8(&p);
        p += 3;
        e->buf.len = get32(&p);
    }
    return 0;
}

static int decode_conf(const uint8_t *p, size_t len, struct raft_configuration *conf,
                       const char **why)
{
    const uint8_t *end = p + len;
    raft_configuration_init(conf);
    if (len < 9 || len % 8 != 0 || get8(&p) != ENCODING_FORMAT)
        return fail(why, "bad configuration format");
    uint64_t n = get64(&p);
    /* each server takes at least 11 bytes (id, one address byte, NUL, role) */
    if (n == 0 || n > (uint64_t)(end - p) / 11)
        return fail(why, "bad configuration server count");
    for (uint64_t i = 0; i < n; i++) {
        if (end - p < 11)
            return fail(why, "configuration truncated");
        raft_id id = get64(&p);
        size_t room = (size_t)(end - p);
        size_t alen = strnlen((const char *)p, room < 256 ? room : 256);
        if (alen == 0 || alen > 255 || alen + 2 > room)
            return fail(why, "bad configuration address");
        const char *address = (const char *)p;
        p += alen + 1;
        uint8_t role = get8(&p);
        if (id == 0 || (role != RAFT_STANDBY && role != RAFT_VOTER && role != RAFT_SPARE))
            return fail(why, "bad configuration server");
        int rv = raft_configuration_add(conf, id, address, role);
        if (rv != 0) {
            raft_configuration_close(conf);
            raft_configuration_init(conf);
            return fail(why, rv == RAFT_NOMEM ? "out of memory" : "duplicate configuration server");
        }
    }
    if (end - p >= 8)
        return fail(why, "configuration longer than its servers");
    for (; p < end; p++)
        if (*p != 0)
            return fail(why, "bad configuration padding");
    return 0;
}

static int decode_snapshot(uint8_t version, const uint8_t *h, size_t len,
                           struct raft_install_snapshot *s, size_t *payload, const char **why)
{
    const uint8_t *p = h;
    s->version = version;
    s->term = get64(&p);
    s->last_index = get64(&p);
    s->last_term = get64(&p);
    s->conf_index = get64(&p);
    uint64_t conf_len = get64(&p);
    raft_configuration_init(&s->conf);
    if (!term_ok(s->term) || s->last_term == 0 || s->last_term > s->term)
        return fail(why, "bad term");
    if (s->last_index == 0 || !index_ok(s->last_index) || s->conf_index > s->last_index)
        return fail(why, "bad index");
    if (conf_len != len - 56)
        return fail(why, "configuration length does not match the frame");
    const uint8_t *tail = p + conf_len;
    uint64_t data_len = get64(&tail);
    if (get64(&tail) != 0)
        return fail(why, "bad trailer");
    if (data_len == 0 || data_len > CONS_WIRE_SNAPSHOT_MAX)
        return fail(why, "bad snapshot length");
    int rv = decode_conf(p, (size_t)conf_len, &s->conf, why);
    if (rv != 0) {
        raft_configuration_close(&s->conf);
        raft_configuration_init(&s->conf);
        return rv;
    }
    s->data.base = NULL;
    s->data.len = (size_t)data_len;
    *payload = (size_t)data_len;
    return 0;
}

int cons__wire_header(const struct cons_wire_pre *pre, const uint8_t *h, uint64_t sender,
                      struct raft_message *m, size_t *payload, const char **why)
{
    const uint8_t *p = h;
    size_t len = pre->header_len;
    uint8_t version = pre->version;
    int rv = 0;

    memset(m, 0, sizeof *m);
    m->type = (enum raft_message_type)pre->type;
    *payload = 0;
    if (!header_len_ok(pre->type, len))
        return fail(why, "bad header length");
    switch (pre->type) {
    case RAFT_APPEND_ENTRIES:
        rv = decode_append(version, h, len, &m->append_entries, payload, why);
        break;
    case RAFT_APPEND_ENTRIES_RESULT: {
        struct raft_append_entries_result *r = &m->append_entries_result;
        /* libraft: a version-0 sender that wrote the longer form is version 2; the short form
         * carries no features (a version above 0 with it would make libraft read past it) */
        if (len == 24)
            version = 0;
        else if (version == 0)
            version = 2;
        r->version = version;
        r->term = get64(&p);
        r->rejected = get64(&p);
        r->last_log_index = get64(&p);
        if (version >= 1)
            r->features = get16(&p);
        if (version >= 2)
            r->capacity = get16(&p);
        if (!term_ok(r->term))
            rv = fail(why, "bad term");
        else if (!index_ok(r->rejected) || !index_ok(r->last_log_index))
            rv = fail(why, "bad index");
        break;
    }
    case RAFT_REQUEST_VOTE: {
        struct raft_request_vote *v = &m->request_vote;
        v->version = version ? version : len == 32 ? 1 : 2;
        v->term = get64(&p);
        v->candidate_id = get64(&p);
        v->last_log_index = get64(&p);
        v->last_log_term = get64(&p);
        if (len == 40) {
            uint64_t flags = get64(&p);
            v->disrupt_leader = (flags & 1) != 0;
            v->pre_vote = (flags & 2) != 0;
        }
        if (!term_ok(v->term) || v->last_log_term > v->term)
            rv = fail(why, "bad term");
        else if (!index_ok(v->last_log_index))
            rv = fail(why, "bad index");
        else if (v->candidate_id != sender)
            rv = fail(why, "candidate is not the sender");
        break;
    }
    case RAFT_REQUEST_VOTE_RESULT: {
        struct raft_request_vote_result *v = &m->request_vote_result;
        v->version = version ? version : len == 16 ? 1 : 2;
        v->term = get64(&p);
        v->vote_granted = get64(&p) != 0;
        if (len == 24 && v->version >= 2) {
            uint8_t flags = get8(&p);
            p++;
            v->version = 2;
            v->pre_vote = (flags & 1) != 0;
            v->features = get16(&p);
            v->capacity = get16(&p);
        }
        if (!term_ok(v->term))
            rv = fail(why, "bad term");
        break;
    }
    case RAFT_INSTALL_SNAPSHOT:
        rv = decode_snapshot(version, h, len, &m->install_snapshot, payload, why);
        break;
    case RAFT_TIMEOUT_NOW: {
        struct raft_timeout_now *t = &m->timeout_now;
        t->version = 0;
        t->term = get64(&p);
        t->last_log_index = get64(&p);
        t->last_log_term = get64(&p);
        if (!term_ok(t->term) || t->last_log_term > t->term)
            rv = fail(why, "bad term");
        else if (!index_ok(t->last_log_index))
            rv = fail(why, "bad index");
        break;
    }
    default:
        rv = fail(why, "unknown message type");
        break;
    }
    if (rv != 0) {
        cons__wire_free(m);
        *payload = 0;
    }
    return rv;
}

void cons__wire_payload(struct raft_message *m, uint8_t *payload)
{
    if (m->type == RAFT_INSTALL_SNAPSHOT) {
        m->install_snapshot.data.base = payload;
        return;
    }
    assert(m->type == RAFT_APPEND_ENTRIES);
    uint8_t *p = payload;
    for (unsigned i = 0; i < m->append_entries.n_entries; i++) {
        struct raft_entry *e = &m->append_entries.entries[i];
        e->batch = payload;
        e->buf.base = p;
        p += e->buf.len; /* lengths are multiples of 8: no padding between entries */
    }
}

void cons__wire_free(struct raft_message *m)
{
    switch (m->type) {
    case RAFT_APPEND_ENTRIES:
        if (m->append_entries.n_entries > 0 && m->append_entries.entries)
            raft_free(m->append_entries.entries[0].batch);
        raft_free(m->append_entries.entries);
        m->append_entries.entries = NULL;
        m->append_entries.n_entries = 0;
        break;
    case RAFT_INSTALL_SNAPSHOT:
        raft_configuration_close(&m->install_snapshot.conf);
        raft_configuration_init(&m->install_snapshot.conf);
        raft_free(m->install_snapshot.data.base);
        m->install_snapshot.data.base = NULL;
        break;
    default:
        break;
    }
}

uint64_t cons__wire_term(const struct raft_message *m)
{
    switch (m->type) {
    case RAFT_APPEND_ENTRIES:
        return m->append_entries.term;
    case RAFT_APPEND_ENTRIES_RESULT:
        return m->append_entries_result.term;
    case RAFT_REQUEST_VOTE:
        return m->request_vote.term;
    case RAFT_REQUEST_VOTE_RESULT:
        return m->request_vote_result.term;
    case RAFT_INSTALL_SNAPSHOT:
        return m->install_snapshot.term;
    case RAFT_TIMEOUT_NOW:
        return m->timeout_now.term;
    default:
        return 0;
    }
}

/* A term that moves ours forward by more than CONS_WIRE_TERM_JUMP is refused. Terms grow by one
 * per election attempt (and with pre-vote only when a pre-vote round was won), so a real
 * cluster moves a few terms per leader loss; a server that was down for a long time sees the
 * cluster's term ahead of its own by the number of elections it missed. Relative to
 * max(ours, CONS_WIRE_TERM_FLOOR): a server with an empty or young state (a new or wiped
 * server joining a long-lived cluster, at term 0) accepts any term up to 2^32, far more
 * elections than any cluster holds; above that, a jump of up to 2^20 elections missed at once
 * passes. Why it matters: a forged vote request with term 2^64-2 used to move a leader there,
 * stored on disk; the next elections reached 2^64-1 and then none could ever win. With this
 * bound, forged messages (port-auth keeps non-members out; this is the second line) need about
 * 2^42 accepted messages to push a term to CONS_WIRE_TERM_MAX. */
bool cons__wire_term_ok(uint64_t ours, uint64_t theirs)
{
    uint64_t base = ours > CONS_WIRE_TERM_FLOOR ? ours : CONS_WIRE_TERM_FLOOR;
    return theirs <= CONS_WIRE_TERM_MAX && (theirs <= base || theirs - base <= CONS_WIRE_TERM_JUMP);
}

const char *cons__wire_check(const struct raft_message *m, uint64_t ours, bool leader)
{
    uint64_t term = cons__wire_term(m);
    if (!cons__wire_term_ok(ours, term))
        return "term too far beyond ours";
    switch (m->type) {
    case RAFT_APPEND_ENTRIES:
    case RAFT_INSTALL_SNAPSHOT:
        if (leader && term == ours)
            return "another leader in our term";
        return NULL;
    case RAFT_REQUEST_VOTE_RESULT:
        /* a vote (or pre-vote) is granted in the candidate's term, at most ours + 1 */
        if (m->request_vote_result.vote_granted && term > ours + 1)
            return "a vote granted for a term we never asked";
        return NULL;
    default:
        return NULL;
    }
}
