/* Runs every case of the rfc-vectors/dns .vec files (format: rfc-vectors/dns/README.md) through
 * zone/ against the standard fixture, over UDP and TCP limits as each case says, and checks
 * the expected rcode, flags, counts, EDNS and RRs. Every response is also parsed by ldns
 * (ldns_wire2pkt: an independent check of our wire writer), its compression pointers must all
 * point into the question, the question must be echoed byte for byte, a UDP response must fit
 * the client's size, and the permutable RRs of the layout must permute into an equivalent
 * response. One cmocka test per case, named file:case.
 *
 * Run from the repository root (make does). HERALD_VECTOR_SEEDS=DIR also writes every query
 * into DIR, one file per case: the fuzzer's seed corpus (make fuzz). HERALD_VECTOR_RESPONSES=DIR
 * writes every response as DIR/<file>-<case>.<udp|tcp> (to test other runners' checkers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <strings.h>
#include <sys/stat.h>

#include "zone/dns_fixture.h"
#include "zone/dns_test.h"

#define VEC_DIR    "rfc-vectors/dns"
#define MAX_RRS    128
#define MAX_TOKENS 32

enum cmp { CMP_NONE, CMP_EQ, CMP_GE, CMP_LE };
struct count {
    enum cmp op;
    unsigned n;
};

struct vcase {
    char file[64];
    char name[128];
    char title[200]; /* file:name */
    int line;
    /* the query */
    struct dnst_q q;
    char qname[1024];
    uint8_t *raw;
    size_t raw_len;
    bool has_raw;
    int transport; /* 0 both, 1 udp, 2 tcp */
    struct zone_dns_config cfg;
    char alt_domain[256];
    /* expectations */
    bool has_expect;
    bool expect_drop;
    int rcode;           /* -1: any */
    int flags;           /* -1: any; else the exact set (bits of the header word) */
    struct count cnt[3]; /* an ns ar */
    int opt, do_bit, version;
    struct count len;
    char *rrs[3][MAX_RRS];
    size_t n_rrs[3];
    bool rrs_given[3];
};

static struct dnsfx g_fx;
static struct vcase **g_cases;
static size_t g_n_cases;
static const char *g_seed_dir;
static const char *g_resp_dir;

/* ---- parsing the .vec files ------------------------------------------------------------ */
static size_t tokenize(char *s, char **tok, size_t max)
{
    size_t n = 0;
    while (*s && n < max) {
        while (isspace((unsigned char)*s))
            s++;
        if (!*s || *s == '#')
            break;
        char *start = s;
        bool q = false;
        while (*s && (q || !isspace((unsigned char)*s))) {
            if (*s == '\\' && s[1])
                s++;
            else if (*s == '"')
                q = !q;
            s++;
        }
        if (*s)
            *s++ = 0;
        tok[n++] = start;
    }
    return n;
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

static bool hex_append(uint8_t **buf, size_t *len, const char *s)
{
    for (; *s; s++) {
        if (isspace((unsigned char)*s))
            continue;
        int hi = hexval(*s), lo = s[1] ? hexval(s[1]) : -1;
        if (hi < 0 || lo < 0)
            return false;
        *buf = realloc(*buf, *len + 1);
        (*buf)[(*len)++] = (uint8_t)(hi << 4 | lo);
        s++;
    }
    return true;
}

static const struct {
    const char *name;
    uint16_t bit;
} flag_names[] = {
    {"qr", 0x8000}, {"aa", 0x0400}, {"tc", 0x0200}, {"rd", 0x0100},
    {"ra", 0x0080}, {"z", 0x0040},  {"ad", 0x0020}, {"cd", 0x0010},
};

static int flag_bit(const char *s)
{
    for (size_t i = 0; i < BASE_ARRAY_LEN(flag_names); i++)
        if (strcmp(s, flag_names[i].name) == 0)
            return flag_names[i].bit;
    return -1;
}

static const char *const rcode_names[] = {
    [0] = "NOERROR", [1] = "FORMERR", [2] = "SERVFAIL", [3] = "NXDOMAIN",
    [4] = "NOTIMP",  [5] = "REFUSED", [16] = "BADVERS",
};

static int rcode_of(const char *s)
{
    for (size_t i = 0; i < BASE_ARRAY_LEN(rcode_names); i++)
        if (rcode_names[i] && strcmp(s, rcode_names[i]) == 0)
            return (int)i;
    return -1;
}

static bool parse_count(const char *s, struct count *c)
{
    char *end;
    if (s[0] == '>' && s[1] == '=')
        c->op = CMP_GE, s += 2;
    else if (s[0] == '<' && s[1] == '=')
        c->op = CMP_LE, s += 2;
    else if (s[0] == '=')
        c->op = CMP_EQ, s += 1;
    else
        return false;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    c->n = (unsigned)v;
    return !errno && !*end && end != s;
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *v)
{
    char *end;
    errno = 0;
    *v = strtoul(s, &end, 0);
    return !errno && !*end && end != s && *v <= max;
}

static bool yes_no(const char *s, int *v)
{
    if (strcmp(s, "yes") == 0 || strcmp(s, "1") == 0 || strcmp(s, "true") == 0)
        *v = 1;
    else if (strcmp(s, "no") == 0 || strcmp(s, "0") == 0 || strcmp(s, "false") == 0)
        *v = 0;
    else
        return false;
    return true;
}

static struct vcase *case_new(const char *file, const char *name, int line)
{
    struct vcase *c = calloc(1, sizeof *c);
    snprintf(c->file, sizeof c->file, "%s", file);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->title, sizeof c->title, "%s:%s", file, name);
    c->line = line;
    dnst_q_init(&c->q, "", 1);
    c->rcode = -1;
    c->flags = -1;
    c->opt = c->do_bit = c->version = -1;
    dnsfx_config(&c->cfg);
    return c;
}

static void case_free(struct vcase *c)
{
    for (int s = 0; s < 3; s++)
        for (size_t i = 0; i < c->n_rrs[s]; i++)
            free(c->rrs[s][i]);
    free(c->raw);
    free(c);
}

static bool parse_expect(struct vcase *c, char **tok, size_t n)
{
    c->has_expect = true;
    for (size_t i = 1; i < n; i++) {
        char *t = tok[i], *eq;
        unsigned long v;
        if (strcmp(t, "drop") == 0) {
            c->expect_drop = true;
            continue;
        }
        eq = strpbrk(t, "=<>");
        if (!eq)
            return false;
        size_t kl = (size_t)(eq - t);
        const char *val = *eq == '=' ? eq + 1 : eq;
        if (kl == 5 && strncmp(t, "rcode", 5) == 0) {
            if ((c->rcode = rcode_of(val)) < 0)
                return false;
        } else if (kl == 5 && strncmp(t, "flags", 5) == 0) {
            char buf[128], *sv = NULL;
            snprintf(buf, sizeof buf, "%s", val);
            c->flags = 0;
            for (char *f = strtok_r(buf, ",", &sv); f; f = strtok_r(NULL, ",", &sv)) {
                int b = flag_bit(f);
                if (b < 0)
                    return false;
                c->flags |= b;
            }
        } else if (kl == 2 && (strncmp(t, "an", 2) == 0 || strncmp(t, "ns", 2) == 0 ||
                               strncmp(t, "ar", 2) == 0)) {
            int s = t[0] == 'a' && t[1] == 'n' ? 0 : t[0] == 'n' ? 1 : 2;
            if (!parse_count(eq, &c->cnt[s]))
                return false;
        } else if (kl == 3 && strncmp(t, "len", 3) == 0) {
            if (!parse_count(eq, &c->len))
                return false;
        } else if (kl == 3 && strncmp(t, "opt", 3) == 0) {
            if (!yes_no(val, &c->opt))
                return false;
        } else if (kl == 2 && strncmp(t, "do", 2) == 0) {
            if (!yes_no(val, &c->do_bit))
                return false;
        } else if (kl == 7 && strncmp(t, "version", 7) == 0) {
            if (!parse_uint(val, 255, &v))
                return false;
            c->version = (int)v;
        } else {
            return false;
        }
    }
    return true;
}

static bool parse_edns(struct vcase *c, char **tok, size_t n)
{
    c->q.edns = true;
    for (size_t i = 1; i < n; i++) {
        unsigned long v;
        if (strcmp(tok[i], "do") == 0) {
            c->q.do_bit = true;
        } else if (strncmp(tok[i], "version=", 8) == 0 && parse_uint(tok[i] + 8, 255, &v)) {
            c->q.version = (unsigned)v;
        } else if (strncmp(tok[i], "size=", 5) == 0 && parse_uint(tok[i] + 5, 65535, &v)) {
            c->q.size = (unsigned)v;
        } else if (strncmp(tok[i], "flags=", 6) == 0 && parse_uint(tok[i] + 6, 65535, &v)) {
            c->q.eflags = (int)v;
        } else if (strncmp(tok[i], "opt=", 4) == 0 && c->q.n_opts < DNST_MAX_OPTS) {
            struct dnst_opt *o = &c->q.opts[c->q.n_opts++];
            char *colon = strchr(tok[i] + 4, ':');
            uint8_t *data = NULL;
            size_t dl = 0;
            if (colon)
                *colon = 0;
            if (!parse_uint(tok[i] + 4, 65535, &v))
                return false;
            o->code = (uint16_t)v;
            if (colon && (!hex_append(&data, &dl, colon + 1) || dl > sizeof o->data)) {
                free(data);
                return false;
            }
            if (dl)
                memcpy(o->data, data, dl);
            o->len = dl;
            free(data);
        } else {
            return false;
        }
    }
    return true;
}

static bool parse_config(struct vcase *c, char **tok, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        char *eq = strchr(tok[i], '=');
        unsigned long v;
        int b;
        if (!eq)
            return false;
        *eq = 0;
        const char *k = tok[i], *val = eq + 1;
        if (strcmp(k, "only_passing") == 0 && yes_no(val, &b))
            c->cfg.only_passing = b;
        else if (strcmp(k, "enable_truncate") == 0 && yes_no(val, &b))
            c->cfg.enable_truncate = b;
        else if (strcmp(k, "udp_answer_limit") == 0 && parse_uint(val, 65535, &v))
            c->cfg.udp_answer_limit = (unsigned)v;
        else if (strcmp(k, "a_record_limit") == 0 && parse_uint(val, 65535, &v))
            c->cfg.a_record_limit = (unsigned)v;
        else if (strcmp(k, "node_ttl") == 0 && parse_uint(val, 0xffffffffu, &v))
            c->cfg.node_ttl = (uint32_t)v;
        else if (strcmp(k, "soa_min_ttl") == 0 && parse_uint(val, 0xffffffffu, &v))
            c->cfg.soa_min_ttl = (uint32_t)v;
        else if (strcmp(k, "alt_domain") == 0) {
            snprintf(c->alt_domain, sizeof c->alt_domain, "%s", val);
            c->cfg.alt_domain = strcmp(val, "none") == 0 ? NULL : c->alt_domain;
        } else
            return false;
    }
    return true;
}

/* One line of a case. False on a syntax error. */
static bool parse_line(struct vcase *c, char *line, char *orig)
{
    char *tok[MAX_TOKENS];
    size_t n = tokenize(line, tok, MAX_TOKENS);
    unsigned long v;

    if (n == 0)
        return true;
    const char *k = tok[0];
    if (strcmp(k, "query") == 0) {
        if (n < 2 || n > 4)
            return false;
        snprintf(c->qname, sizeof c->qname, "%s", tok[1]);
        c->q.name = c->qname;
        c->q.type = n > 2 ? (uint16_t)ldns_get_rr_type_by_name(tok[2]) : 1;
        c->q.cls = n > 3 ? (uint16_t)ldns_get_rr_class_by_name(tok[3]) : 1;
        return c->q.type != 0 && c->q.cls != 0;
    }
    if (strcmp(k, "flags") == 0) {
        for (size_t i = 1; i < n; i++) {
            int b = flag_bit(tok[i]);
            if (b < 0)
                return false;
            c->q.flags |= (uint16_t)b;
        }
        return true;
    }
    if (strcmp(k, "opcode") == 0 && n == 2 && parse_uint(tok[1], 15, &v)) {
        c->q.opcode = (unsigned)v;
        return true;
    }
    if (strcmp(k, "id") == 0 && n == 2 && parse_uint(tok[1], 65535, &v)) {
        c->q.id = (uint16_t)v;
        return true;
    }
    if (strcmp(k, "qdcount") == 0 && n == 2 && parse_uint(tok[1], 65535, &v)) {
        c->q.qdcount = (int)v;
        return true;
    }
    if (strcmp(k, "edns") == 0)
        return parse_edns(c, tok, n);
    if (strcmp(k, "raw") == 0) {
        c->has_raw = true;
        for (size_t i = 1; i < n; i++)
            if (!hex_append(&c->raw, &c->raw_len, tok[i]))
                return false;
        return true;
    }
    if (strcmp(k, "tcp-mode") == 0 && n == 2) /* a hint for the integration runner */
        return strcmp(tok[1], "whole") == 0 || strcmp(tok[1], "split") == 0 ||
               strcmp(tok[1], "pipeline") == 0;
    if (strcmp(k, "transport") == 0 && n == 2) {
        c->transport = strcmp(tok[1], "udp") == 0 ? 1 : strcmp(tok[1], "tcp") == 0 ? 2 : 0;
        return c->transport || strcmp(tok[1], "both") == 0;
    }
    if (strcmp(k, "config") == 0)
        return parse_config(c, tok, n);
    if (strcmp(k, "expect") == 0)
        return parse_expect(c, tok, n);
    int sec = strcmp(k, "answer") == 0       ? 0
              : strcmp(k, "authority") == 0  ? 1
              : strcmp(k, "additional") == 0 ? 2
                                             : -1;
    if (sec >= 0 && n >= 4 && c->n_rrs[sec] < MAX_RRS) {
        /* keep the original text (after the keyword) for tokenizing at compare time */
        char *p = orig + strlen(k);
        while (isspace((unsigned char)*p))
            p++;
        c->rrs[sec][c->n_rrs[sec]++] = strdup(p);
        c->rrs_given[sec] = true;
        return true;
    }
    return false;
}

static void load_file(const char *dir, const char *file)
{
    char path[512], line[4096], orig[4096];
    FILE *f;
    struct vcase *cur = NULL;
    int ln = 0;

    snprintf(path, sizeof path, "%s/%s", dir, file);
    f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    while (fgets(line, sizeof line, f)) {
        ln++;
        line[strcspn(line, "\r\n")] = 0;
        snprintf(orig, sizeof orig, "%s", line);
        char *tok[2];
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s", line);
        size_t n = tokenize(tmp, tok, 2);
        if (n == 0)
            continue;
        if (strcmp(tok[0], "case") == 0) {
            if (n < 2) {
                fprintf(stderr, "%s:%d: case without a name\n", path, ln);
                exit(1);
            }
            cur = case_new(file, tok[1], ln);
            g_cases = realloc(g_cases, (g_n_cases + 1) * sizeof *g_cases);
            g_cases[g_n_cases++] = cur;
            continue;
        }
        if (!cur || !parse_line(cur, line, orig)) {
            fprintf(stderr, "%s:%d: cannot parse: %s\n", path, ln, orig);
            exit(1);
        }
    }
    fclose(f);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_all(void)
{
    DIR *d = opendir(VEC_DIR);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0;

    if (!d) {
        fprintf(stderr, "cannot open %s (run from the repository root)\n", VEC_DIR);
        exit(1);
    }
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".vec") == 0) {
            names = realloc(names, (n + 1) * sizeof *names);
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        load_file(VEC_DIR, names[i]);
        free(names[i]);
    }
    free(names);
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

/* Whether an expected RR line matches an RR: owner ttl type rdata..., '*' for any field. */
static bool rr_matches(const char *line, const ldns_rr *rr)
{
    char buf[1024];
    char *tok[MAX_TOKENS];
    snprintf(buf, sizeof buf, "%s", line);
    size_t n = tokenize(buf, tok, MAX_TOKENS);
    size_t nrd = ldns_rr_rd_count(rr);
    bool ok;

    if (n != 3 + nrd)
        return false;
    char *owner = ldns_rdf2str(ldns_rr_owner(rr));
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%u", ldns_rr_ttl(rr));
    char *type = ldns_rr_type2str(ldns_rr_get_type(rr));
    ok = tok_eq(tok[0], owner) && tok_eq(tok[1], ttl) && tok_eq(tok[2], type);
    free(owner);
    free(type);
    for (size_t i = 0; ok && i < nrd; i++) {
        char *s = ldns_rdf2str(ldns_rr_rdf(rr, i));
        ok = tok_eq(tok[3 + i], s);
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

    if (!c->rrs_given[sec])
        return;
    bool ok = n == c->n_rrs[sec] && n <= BASE_ARRAY_LEN(used);
    for (size_t i = 0; ok && i < c->n_rrs[sec]; i++) {
        bool found = false;
        for (size_t j = 0; j < n && !found; j++)
            if (!used[j] && rr_matches(c->rrs[sec][i], ldns_rr_list_rr(l, j)))
                used[j] = found = true;
        ok = found;
    }
    if (!ok) {
        fprintf(stderr, "  %s (%s): %s section differs; expected:\n", c->title, tr, sec_names[sec]);
        for (size_t i = 0; i < c->n_rrs[sec]; i++)
            fprintf(stderr, "    %s\n", c->rrs[sec][i]);
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
    size_t n;

    if (!c->has_expect)
        fail_msg("%s: no expect line", c->title);
    if (c->has_raw) {
        n = c->raw_len;
        if (n)
            memcpy(w, c->raw, n);
    } else {
        n = dnst_build(&c->q, w, 70000);
        assert_true(n > 0);
    }
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
