/* Runs every case of the rfc-vectors/dns .vec files (format: rfc-vectors/dns/README.md) through
 * zone/ against the standard fixture, over UDP and TCP limits as each case says, and checks
 * the expected rcode, flags, counts, EDNS and RRs. Every response is also parsed by ldns
 * (ldns_wire2pkt: an independent check of our wire writer), its compression pointers must all
 * point into the question, the question must be echoed byte for byte, a UDP response must fit
 * the client's size, and the permutable RRs of the layout must permute into an equivalent
 * response. One cmocka test per case, named file:case.
 *
 * The cases come from rfc-vectors/dns/vectors.py (`--json`), the one parser of the format, which
 * the integration runner uses too. Run from the repository root (make does).
 * HERALD_VECTOR_SEEDS=DIR also writes every query into DIR, one file per case: the fuzzer's seed
 * corpus (make fuzz). HERALD_VECTOR_RESPONSES=DIR writes every response as
 * DIR/<file>-<case>.<udp|tcp> (to test other runners' checkers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <jansson.h>
#include <strings.h>
#include <sys/stat.h>

#include "zone/dns_fixture.h"
#include "zone/dns_test.h"

#define VECTORS_CMD "/usr/bin/python3 rfc-vectors/dns/vectors.py --json"
#define MAX_RRS     128

enum cmp { CMP_NONE, CMP_EQ, CMP_GE, CMP_LE };
struct count {
    enum cmp op;
    unsigned n;
};

/* A case as rfc-vectors/dns/vectors.py read it: that script is the one parser of the .vec
 * format, and hands every case over as JSON (the query already in wire form). */
struct vcase {
    char title[200]; /* file:name */
    char file[64];
    char name[128];
    uint8_t *wire;
    size_t wire_len;
    int transport; /* 0 both, 1 udp, 2 tcp */
    struct zone_dns_config cfg;
    char alt_domain[256];
    /* expectations */
    bool expect_drop;
    int rcode;           /* -1: any */
    int flags;           /* -1: any; else the exact set (bits of the header word) */
    struct count cnt[3]; /* an ns ar */
    int opt, do_bit, version;
    struct count len;
    json_t *rrs[3]; /* arrays of token arrays; NULL: not given */
};

static struct dnsfx g_fx;
static struct vcase **g_cases;
static size_t g_n_cases;
static const char *g_seed_dir;
static const char *g_resp_dir;

/* ---- the cases, from vectors.py ----------------------------------------------------------- */
static void die(const char *what, const char *title)
{
    fprintf(stderr, "vectors: %s%s%s\n", title ? title : "", title ? ": " : "", what);
    exit(1);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void read_count(const json_t *v, struct count *c, const char *title)
{
    const char *op = json_string_value(json_array_get(v, 0));
    json_int_t n = json_integer_value(json_array_get(v, 1));
    if (!op || n < 0)
        die("bad count", title);
    c->op = strcmp(op, ">=") == 0 ? CMP_GE : strcmp(op, "<=") == 0 ? CMP_LE : CMP_EQ;
    c->n = (unsigned)n;
}

/* The overrides of the standard configuration (README: config KEY=VALUE). */
static void read_config(struct vcase *c, json_t *cfg)
{
    const char *k;
    json_t *v;
    json_object_foreach(cfg, k, v)
    {
        const char *val = json_string_value(v);
        if (!val)
            die("bad config value", c->title);
        bool yes = strcmp(val, "yes") == 0 || strcmp(val, "1") == 0 || strcmp(val, "true") == 0;
        unsigned long n = strtoul(val, NULL, 0);
        if (strcmp(k, "only_passing") == 0)
            c->cfg.only_passing = yes;
        else if (strcmp(k, "enable_truncate") == 0)
            c->cfg.enable_truncate = yes;
        else if (strcmp(k, "udp_answer_limit") == 0)
            c->cfg.udp_answer_limit = (unsigned)n;
        else if (strcmp(k, "a_record_limit") == 0)
            c->cfg.a_record_limit = (unsigned)n;
        else if (strcmp(k, "node_ttl") == 0)
            c->cfg.node_ttl = (uint32_t)n;
        else if (strcmp(k, "soa_min_ttl") == 0)
            c->cfg.soa_min_ttl = (uint32_t)n;
        else if (strcmp(k, "alt_domain") == 0) {
            snprintf(c->alt_domain, sizeof c->alt_domain, "%s", val);
            c->cfg.alt_domain = strcmp(val, "none") == 0 ? NULL : c->alt_domain;
        } else
            die("unknown config key", c->title);
    }
}

static struct vcase *case_from_json(json_t *j)
{
    struct vcase *c = calloc(1, sizeof *c);
    const char *file = json_string_value(json_object_get(j, "file"));
    const char *name = json_string_value(json_object_get(j, "name"));
    const char *wire = json_string_value(json_object_get(j, "wire"));
    const char *tr = json_string_value(json_object_get(j, "transport"));
    json_t *e = json_object_get(j, "expect");

    if (!file || !name || !wire || !tr || !json_is_object(e))
        die("a case without file, name, wire, transport or expect", NULL);
    snprintf(c->file, sizeof c->file, "%s", file);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->title, sizeof c->title, "%s:%s", file, name);
    size_t hl = strlen(wire);
    c->wire = malloc(hl / 2 + 1);
    for (size_t i = 0; i < hl; i += 2) {
        int hi = hexval(wire[i]), lo = hexval(wire[i + 1]);
        if (hi < 0 || lo < 0)
            die("bad wire hex", c->title);
        c->wire[c->wire_len++] = (uint8_t)(hi << 4 | lo);
    }
    c->transport = strcmp(tr, "udp") == 0 ? 1 : strcmp(tr, "tcp") == 0 ? 2 : 0;
    dnsfx_config(&c->cfg);
    read_config(c, json_object_get(j, "config"));

    c->expect_drop = json_is_true(json_object_get(j, "drop"));
    c->rcode = c->flags = c->opt = c->do_bit = c->version = -1;
    json_t *v;
    if ((v = json_object_get(e, "rcode")))
        c->rcode = (int)json_integer_value(v);
    if ((v = json_object_get(e, "flags")))
        c->flags = (int)json_integer_value(v);
    if ((v = json_object_get(e, "opt")))
        c->opt = json_is_true(v);
    if ((v = json_object_get(e, "do")))
        c->do_bit = json_is_true(v);
    if ((v = json_object_get(e, "version")))
        c->version = (int)json_integer_value(v);
    static const char *const cnt_keys[] = {"an", "ns", "ar"};
    for (int s = 0; s < 3; s++)
        if ((v = json_object_get(e, cnt_keys[s])))
            read_count(v, &c->cnt[s], c->title);
    if ((v = json_object_get(e, "len")))
        read_count(v, &c->len, c->title);
    static const char *const sec_keys[] = {"answer", "authority", "additional"};
    json_t *rrs = json_object_get(j, "rrs");
    for (int s = 0; s < 3; s++) {
        v = json_object_get(rrs, sec_keys[s]);
        if (json_is_array(v))
            c->rrs[s] = json_incref(v);
    }
    return c;
}

static void case_free(struct vcase *c)
{
    for (int s = 0; s < 3; s++)
        json_decref(c->rrs[s]);
    free(c->wire);
    free(c);
}

/* Every case of every .vec file, in vectors.py's order (run from the repository root). */
static void load_all(void)
{
    json_error_t err;
    FILE *p = popen(VECTORS_CMD, "r");
    if (!p)
        die("cannot run " VECTORS_CMD, NULL);
    json_t *all = json_loadf(p, 0, &err);
    int rc = pclose(p);
    if (!all || rc != 0 || !json_is_array(all)) {
        fprintf(stderr, "vectors: %s failed (exit %d): %s\n", VECTORS_CMD, rc,
                all ? "not an array" : err.text);
        exit(1);
    }
    size_t i;
    json_t *j;
    g_cases = calloc(json_array_size(all) + 1, sizeof *g_cases);
    json_array_foreach(all, i, j) g_cases[g_n_cases++] = case_from_json(j);
    json_decref(all);
}

/* ---- checking a response --------------------------------------------------------------- */
/* The OPT RR of a response: its offset, or 0. */
static size_t find_opt(const uint8_t *p, size_t len)
{
    size_t at = 12;
    unsigned qd = dnst_get16(p + 4);
    unsigned n = dnst_get16(p + 6) + dnst_get16(p + 8) + dnst_get16(p + 10);

    for (unsigned i = 0; i < qd; i++) {
        while (at < len && p[at] && (p[at] & 0xc0) != 0xc0)
            at += 1 + (size_t)p[at];
        at += (at < len && p[at]) ? 2 : 1;
        at += 4;
    }
    for (unsigned i = 0; i < n && at < len; i++) {
        size_t start = at;
        while (at < len && p[at] && (p[at] & 0xc0) != 0xc0)
            at += 1 + (size_t)p[at];
        at += (at < len && p[at]) ? 2 : 1;
        if (at + 10 > len)
            return 0;
        if (dnst_get16(p + at) == 41)
            return start;
        at += 10 + dnst_get16(p + at + 8);
    }
    return 0;
}

static bool count_ok(const struct count *c, unsigned v)
{
    switch (c->op) {
    case CMP_NONE:
        return true;
    case CMP_EQ:
        return v == c->n;
    case CMP_GE:
        return v >= c->n;
    case CMP_LE:
        return v <= c->n;
    }
    return false;
}

static bool tok_eq(const char *want, const char *got)
{
    return strcmp(want, "*") == 0 || strcasecmp(want, got) == 0;
}

static const char *tok_at(const json_t *toks, size_t i)
{
    return json_string_value(json_array_get(toks, i));
}

/* Whether an expected RR (tokens: owner ttl type rdata...) matches an RR; '*' for any field. */
static bool rr_matches(const json_t *toks, const ldns_rr *rr)
{
    size_t nrd = ldns_rr_rd_count(rr);
    bool ok;

    if (json_array_size(toks) != 3 + nrd)
        return false;
    char *owner = ldns_rdf2str(ldns_rr_owner(rr));
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%u", ldns_rr_ttl(rr));
    char *type = ldns_rr_type2str(ldns_rr_get_type(rr));
    ok = tok_eq(tok_at(toks, 0), owner) && tok_eq(tok_at(toks, 1), ttl) &&
         tok_eq(tok_at(toks, 2), type);
    free(owner);
    free(type);
    for (size_t i = 0; ok && i < nrd; i++) {
        char *s = ldns_rdf2str(ldns_rr_rdf(rr, i));
        ok = tok_eq(tok_at(toks, 3 + i), s);
        free(s);
    }
    return ok;
}

static void print_section(const char *what, const ldns_rr_list *l)
{
    for (size_t i = 0; l && i < ldns_rr_list_rr_count(l); i++) {
        char *s = ldns_rr2str(ldns_rr_list_rr(l, i));
        fprintf(stderr, "    %s: %s", what, s);
        free(s);
    }
}

static const char *sec_names[] = {"answer", "authority", "additional"};

static void check_rrs(const struct vcase *c, int sec, const ldns_rr_list *l, const char *tr)
{
    size_t n = l ? ldns_rr_list_rr_count(l) : 0;
    bool used[512] = {false};
    const json_t *want = c->rrs[sec];

    if (!want)
        return;
    bool ok = n == json_array_size(want) && n <= BASE_ARRAY_LEN(used);
    for (size_t i = 0; ok && i < json_array_size(want); i++) {
        bool found = false;
        for (size_t j = 0; j < n && !found; j++)
            if (!used[j] && rr_matches(json_array_get(want, i), ldns_rr_list_rr(l, j)))
                used[j] = found = true;
        ok = found;
    }
    if (!ok) {
        fprintf(stderr, "  %s (%s): %s section differs; expected:\n", c->title, tr, sec_names[sec]);
        for (size_t i = 0; i < json_array_size(want); i++) {
            const json_t *t = json_array_get(want, i);
            fprintf(stderr, "   ");
            for (size_t k = 0; k < json_array_size(t); k++)
                fprintf(stderr, " %s", tok_at(t, k));
            fprintf(stderr, "\n");
        }
        fprintf(stderr, "  got:\n");
        print_section(sec_names[sec], l);
        fail_msg("%s: %s section", c->title, sec_names[sec]);
    }
}

static void check_one(const struct vcase *c, const uint8_t *qw, size_t ql, bool tcp)
{
    struct dnst_res *r = malloc(sizeof *r);
    struct zone_read *rd;
    struct base_arena ar;
    struct zone_dns_query q;
    char why[256];
    const char *tr = tcp ? "tcp" : "udp";

    base_arena_init(&ar);
    assert_int_equal(zone_read_begin(g_fx.s, &rd), 0);
    dnst_run(rd, &c->cfg, qw, ql, tcp, 1, &ar, r);
    zone_read_end(rd);
    base_arena_close(&ar);
    zone_dns_parse(qw, ql, &q);

    if (r->answer_rc && r->answer_rc != BASE_ENOTFOUND)
        fail_msg("%s (%s): zone_dns_answer: %s", c->title, tr, base_strerror(r->answer_rc));
    if (g_resp_dir) { /* HERALD_VECTOR_RESPONSES: to check other runners' checkers */
        char path[1024];
        mkdir(g_resp_dir, 0755);
        snprintf(path, sizeof path, "%s/%s-%s.%s", g_resp_dir, c->file, c->name, tr);
        FILE *fp = fopen(path, "wb");
        if (fp) {
            fwrite(r->resp, 1, r->dropped ? 0 : r->len, fp);
            fclose(fp);
        }
    }
    if (c->expect_drop) {
        if (!r->dropped)
            fail_msg("%s (%s): expected no response, got %zu bytes", c->title, tr, r->len);
        free(r);
        return;
    }
    if (r->dropped || r->len == 0)
        fail_msg("%s (%s): no response (parse %d)", c->title, tr, r->parse_rc);

    const uint8_t *p = r->resp;
    ldns_pkt *pkt = NULL;
    ldns_status st = ldns_wire2pkt(&pkt, p, r->len);
    if (st != LDNS_STATUS_OK)
        fail_msg("%s (%s): ldns cannot parse the response: %s", c->title, tr,
                 ldns_get_errorstr_by_id(st));

    /* header */
    uint16_t flags = dnst_get16(p + 2);
    if (dnst_get16(p) != dnst_get16(qw))
        fail_msg("%s (%s): ID %04x, query had %04x", c->title, tr, dnst_get16(p), dnst_get16(qw));
    if (!(flags & 0x8000))
        fail_msg("%s (%s): QR clear", c->title, tr);
    if (((flags >> 11) & 15) != ((dnst_get16(qw + 2) >> 11) & 15))
        fail_msg("%s (%s): opcode not copied", c->title, tr);
    if (!tcp && r->len > r->limit)
        fail_msg("%s (udp): %zu bytes over the limit %zu", c->title, r->len, r->limit);

    size_t opt = find_opt(p, r->len);
    unsigned rcode = flags & 15;
    if (opt)
        rcode |= (unsigned)p[opt + 5] << 4;
    if (c->rcode >= 0 && (int)rcode != c->rcode)
        fail_msg("%s (%s): rcode %u, expected %d", c->title, tr, rcode, c->rcode);
    if (c->flags >= 0 && (flags & 0x87f0) != c->flags)
        fail_msg("%s (%s): flags %04x, expected %04x", c->title, tr, flags & 0x87f0, c->flags);

    /* counts: an, ns, ar (ar without the OPT) */
    unsigned cnt[3] = {dnst_get16(p + 6), dnst_get16(p + 8), dnst_get16(p + 10) - (opt ? 1u : 0u)};
    for (int s = 0; s < 3; s++)
        if (!count_ok(&c->cnt[s], cnt[s]))
            fail_msg("%s (%s): %s count %u, expected %u", c->title, tr, sec_names[s], cnt[s],
                     c->cnt[s].n);
    if (!count_ok(&c->len, (unsigned)r->len))
        fail_msg("%s (%s): length %zu", c->title, tr, r->len);

    /* EDNS: no OPT in the query, none in the response (RFC 6891 §7); ours is version 0,
     * size 1232, Z clear, no options */
    int want_opt = c->opt >= 0 ? c->opt : (q.edns ? -1 : 0);
    if (want_opt >= 0 && (opt != 0) != (want_opt != 0))
        fail_msg("%s (%s): OPT %s", c->title, tr, opt ? "present" : "absent");
    if (opt) {
        uint16_t ef = dnst_get16(p + opt + 7);
        if (p[opt] != 0 || dnst_get16(p + opt + 3) != ZONE_DNS_OUR_UDP_SIZE || p[opt + 6] != 0 ||
            (ef & 0x7fff) || dnst_get16(p + opt + 9) != 0)
            fail_msg("%s (%s): our OPT is not {root, 1232, version 0, Z 0, no options}", c->title,
                     tr);
        if (c->do_bit >= 0 && ((ef & 0x8000) != 0) != c->do_bit)
            fail_msg("%s (%s): DO %d", c->title, tr, (ef & 0x8000) != 0);
        if (c->version >= 0 && p[opt + 6] != c->version)
            fail_msg("%s (%s): EDNS version %u", c->title, tr, p[opt + 6]);
    }

    /* the question, byte for byte (RFC 4343 §4.1) */
    if (dnst_get16(p + 4) == 1) {
        if (!q.question_end || r->len < q.question_end ||
            memcmp(p + 12, qw + 12, q.question_end - 12) != 0)
            fail_msg("%s (%s): question not echoed byte for byte", c->title, tr);
    }
    if (!dnst_pointers_ok(p, r->len, why))
        fail_msg("%s (%s): %s", c->title, tr, why);
    if (!dnst_layout_ok(p, r->len, &r->layout, why))
        fail_msg("%s (%s): layout: %s", c->title, tr, why);

    check_rrs(c, 0, ldns_pkt_answer(pkt), tr);
    check_rrs(c, 1, ldns_pkt_authority(pkt), tr);
    check_rrs(c, 2, ldns_pkt_additional(pkt), tr);
    ldns_pkt_free(pkt);
    free(r);
}

static void write_seed(const struct vcase *c, const uint8_t *w, size_t n)
{
    char path[1024];
    mkdir(g_seed_dir, 0755);
    snprintf(path, sizeof path, "%s/%s-%s", g_seed_dir, c->file, c->name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(w, 1, n, f);
        fclose(f);
    }
}

static void run_case(void **state)
{
    const struct vcase *c = *state;
    uint8_t *w = malloc(70000);
    size_t n = c->wire_len;

    assert_true(n <= 70000);
    if (n)
        memcpy(w, c->wire, n);
    if (g_seed_dir)
        write_seed(c, w, n);
    if (c->transport != 2)
        check_one(c, w, n, false);
    if (c->transport != 1)
        check_one(c, w, n, true);
    free(w);
}

int main(void)
{
    int rc;

    g_seed_dir = getenv("HERALD_VECTOR_SEEDS");
    g_resp_dir = getenv("HERALD_VECTOR_RESPONSES");
    load_all();
    if (dnsfx_open(&g_fx, NULL)) {
        fprintf(stderr, "cannot load the DNS fixture\n");
        return 1;
    }
    struct CMUnitTest *tests = calloc(g_n_cases, sizeof *tests);
    for (size_t i = 0; i < g_n_cases; i++) {
        tests[i].name = g_cases[i]->title;
        tests[i].test_func = run_case;
        tests[i].initial_state = g_cases[i];
    }
    rc = _cmocka_run_group_tests("dns_vectors", tests, g_n_cases, NULL, NULL);
    free(tests);
    for (size_t i = 0; i < g_n_cases; i++)
        case_free(g_cases[i]);
    free(g_cases);
    dnsfx_close(&g_fx);
    return rc;
}
