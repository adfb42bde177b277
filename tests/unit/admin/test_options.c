/* Tests that admin/config.c's option table drives both the flags and the JSON config files.
 * For every row, a value made from the row alone (its type and range) is loaded as its flag
 * and as its JSON key (nested by the dots of its path), and both land as that same value in
 * the row's field; values outside the row's range, or ones its type refuses, are refused both
 * ways with a message that names the flag or the key. Rows with only a flag or only a key are
 * loaded that one way. Also: the table itself is consistent and `herald agent -h` lists every
 * row. A new row needs nothing here unless it brings a new type or a rule between options
 * (context(), below). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/internal.h"

#define MAX_ARGS 16
#define TEXT_LEN 512

struct fx {
    char dir[64];      /* a fresh temporary directory */
    char file[96];     /* the row's JSON config file in it */
    char ctx_file[96]; /* a context file (context()) */
    char readable[96]; /* a file any PATH row may name */
    struct adm_config flag_cfg, json_cfg;
    char err[BASE_ERRMSG_LEN];
};

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_true(fputs(text, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
}

static int setup(void **state)
{
    static struct fx f0;
    struct fx *f = &f0;
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/herald-test-options-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->file, sizeof f->file, "%.63s/row.json", f->dir);
    snprintf(f->ctx_file, sizeof f->ctx_file, "%.63s/context.json", f->dir);
    snprintf(f->readable, sizeof f->readable, "%.63s/readable.txt", f->dir);
    write_text(f->readable, ". IN DS 1 8 2 00\n");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    unlink(f->file);
    unlink(f->ctx_file);
    assert_int_equal(unlink(f->readable), 0);
    assert_int_equal(rmdir(f->dir), 0);
    return 0;
}

/* ---- values made from a row ------------------------------------------------------------ */

static size_t n_names(const struct adm_option *o)
{
    size_t n = 0;
    while (o->names[n])
        n++;
    return n;
}

/* A good value for o, other than its default: as a flag's text, as JSON, and what the field
 * must then hold (want for numbers, want_str for strings and the one list entry). */
struct sample {
    char flag[TEXT_LEN], json[TEXT_LEN + 8];
    uint64_t want;
    char want_str[TEXT_LEN];
};

static void good_value(struct fx *f, const struct adm_option *o, struct sample *s)
{
    const char *str = "";
    memset(s, 0, sizeof *s);
    switch (o->type) {
    case ADM_OPT_BOOL:
        s->want = !o->def;
        snprintf(s->flag, sizeof s->flag, "%s", s->want ? "true" : "false");
        snprintf(s->json, sizeof s->json, "%s", s->flag);
        return;
    case ADM_OPT_UINT:
    case ADM_OPT_PORT:
    case ADM_OPT_SIZE:
        s->want = o->type == ADM_OPT_PORT ? 65535 : o->max;
        snprintf(s->flag, sizeof s->flag, "%llu", (unsigned long long)s->want);
        snprintf(s->json, sizeof s->json, "%s", s->flag);
        return;
    case ADM_OPT_DURATION:
        s->want = o->max ? o->max : o->min > 3600000 ? 2 * o->min : 3600000;
        snprintf(s->flag, sizeof s->flag, "%llums", (unsigned long long)s->want);
        snprintf(s->json, sizeof s->json, "\"%s\"", s->flag);
        return;
    case ADM_OPT_TTL:
        s->want = 3600;
        snprintf(s->flag, sizeof s->flag, "1h");
        snprintf(s->json, sizeof s->json, "\"1h\"");
        return;
    case ADM_OPT_ENUM:
        s->want = n_names(o) - 1;
        snprintf(s->flag, sizeof s->flag, "%s", o->names[s->want]);
        snprintf(s->json, sizeof s->json, "\"%s\"", s->flag);
        return;
    case ADM_OPT_LOG_LEVEL:
        s->want = BASE_LOG_TRACE;
        snprintf(s->flag, sizeof s->flag, "trace");
        snprintf(s->json, sizeof s->json, "\"trace\"");
        return;
    case ADM_OPT_STRING:
        /* encrypt is checked as a key by validate() */
        str = o->key && strcmp(o->key, "encrypt") == 0 ? "MDEyMzQ1Njc4OWFiY2RlZg==" : "/var/x";
        break;
    case ADM_OPT_LABEL:
        str = "Node_1-a";
        break;
    case ADM_OPT_DOMAIN:
        str = "Example.ORG";
        snprintf(s->want_str, sizeof s->want_str, "example.org.");
        break;
    case ADM_OPT_ADDR:
        str = "::1";
        break;
    case ADM_OPT_PATH:
        str = f->readable;
        break;
    case ADM_OPT_LIST:
        str = "10.0.0.7";
        break;
    case ADM_OPT_NETS:
        str = "10.0.0.0/8";
        break;
    case ADM_OPT_RECURSORS:
        str = "[::1]:5353";
        break;
    case ADM_OPT_JSON:
    case ADM_OPT_CONFIG:
        fail_msg("no sample for %s", o->key ? o->key : o->flag);
        return;
    }
    snprintf(s->flag, sizeof s->flag, "%s", str);
    snprintf(s->json, sizeof s->json, adm_opt_is_list(o) ? "[\"%s\"]" : "\"%s\"", str);
    if (!s->want_str[0])
        snprintf(s->want_str, sizeof s->want_str, "%s", str);
}

/* Values o refuses, each as a flag's text and as JSON (NULL: not given that way). */
struct bad {
    const char *flag, *json;
    char flag_buf[64], json_buf[64];
};

static size_t bad_values(const struct adm_option *o, struct bad *b, size_t max)
{
    size_t n = 0;
#define BAD(fl, js)                                                                                \
    do {                                                                                           \
        assert_true(n < max);                                                                      \
        b[n].flag = (fl);                                                                          \
        b[n].json = (js);                                                                          \
        n++;                                                                                       \
    } while (0)
#define BAD_NUMBER(fmt_flag, fmt_json, v)                                                          \
    do {                                                                                           \
        assert_true(n < max);                                                                      \
        snprintf(b[n].flag_buf, sizeof b[n].flag_buf, fmt_flag, (unsigned long long)(v));          \
        snprintf(b[n].json_buf, sizeof b[n].json_buf, fmt_json, (unsigned long long)(v));          \
        BAD(b[n].flag_buf, b[n].json_buf);                                                         \
    } while (0)

    switch (o->type) {
    case ADM_OPT_BOOL:
        BAD("maybe", "\"true\"");
        break;
    case ADM_OPT_UINT:
    case ADM_OPT_SIZE:
        BAD_NUMBER("%llu", "%llu", o->max + 1);
        if (o->min)
            BAD_NUMBER("%llu", "%llu", o->min - 1);
        BAD("ten", "\"10\"");
        break;
    case ADM_OPT_PORT:
        BAD("0", "0");
        BAD("65536", "65536");
        BAD("http", "\"8500\"");
        break;
    case ADM_OPT_DURATION:
        if (o->max)
            BAD_NUMBER("%llums", "\"%llums\"", o->max + 1);
        if (o->min)
            BAD_NUMBER("%llums", "\"%llums\"", o->min - 1);
        BAD("soon", "10");
        break;
    case ADM_OPT_TTL:
        BAD("soon", "\"soon\"");
        BAD("-1s", "-1");
        break;
    case ADM_OPT_ENUM:
        BAD("nope", "1");
        break;
    case ADM_OPT_LOG_LEVEL:
        BAD("loud", "3");
        break;
    case ADM_OPT_STRING:
        if (o->key && strcmp(o->key, "encrypt") == 0)
            BAD("c2hvcnQ=", "\"c2hvcnQ=\"");
        BAD("", "5");
        break;
    case ADM_OPT_LABEL:
        BAD("a.b", "\"a.b\"");
        BAD("", "5");
        break;
    case ADM_OPT_DOMAIN:
        BAD("a..b", "\"a..b\"");
        BAD("", "5");
        break;
    case ADM_OPT_ADDR:
        BAD("localhost", "\"localhost\"");
        BAD("", "[\"::1\"]");
        break;
    case ADM_OPT_PATH:
        BAD("/no/such/file", "\"/no/such/file\"");
        BAD("", "true");
        break;
    case ADM_OPT_LIST:
        BAD(NULL, "\"10.0.0.1\"");
        BAD(NULL, "[1]");
        break;
    case ADM_OPT_NETS:
        BAD("10.0.0.0/33", "[\"10.0.0.0/33\"]");
        BAD(NULL, "\"10.0.0.0/8\"");
        break;
    case ADM_OPT_RECURSORS:
        BAD("not-an-ip", "[\"not-an-ip\"]");
        BAD("10.0.0.1:99999", "[\"10.0.0.1:99999\"]");
        break;
    case ADM_OPT_JSON:
    case ADM_OPT_CONFIG:
        break;
    }
    return n;
#undef BAD
#undef BAD_NUMBER
}

/* ---- loading --------------------------------------------------------------------------- */

/* The arguments a row needs beside its own value: the rules between options (validate()). */
static size_t context(struct fx *f, const struct adm_option *o, const char **argv)
{
    const char *name = o->key ? o->key : o->flag;
    size_t n = 0;
    if (strcmp(name, "server") == 0) { /* -dev is a server anyway */
        argv[n++] = "-data-dir";
        argv[n++] = f->dir;
        return n;
    }
    if (strcmp(name, "bootstrap_expect") == 0) { /* refused with -dev; over 1 wants joins */
        argv[n++] = "-server";
        argv[n++] = "-data-dir";
        argv[n++] = f->dir;
        argv[n++] = "-retry-join";
        argv[n++] = "10.0.0.1";
        return n;
    }
    if (strcmp(name, "dev") == 0)
        return 0;
    argv[n++] = "-dev";
    char json[TEXT_LEN] = "";
    if (strcmp(name, "dns_config.root_hints") == 0)
        snprintf(json, sizeof json, "{\"dns_config\": {\"recursion\": \"iterative\"}}");
    else if (strcmp(name, "dns_config.trust_anchor") == 0)
        snprintf(json, sizeof json, "{\"dns_config\": {\"dnssec_validation\": true}}");
    else if (strcmp(name, "dns_config.dnssec_validation") == 0)
        snprintf(json, sizeof json, "{\"dns_config\": {\"trust_anchor\": \"%s\"}}", f->readable);
    if (json[0]) {
        write_text(f->ctx_file, json);
        argv[n++] = "-config-file";
        argv[n++] = f->ctx_file;
    }
    return n;
}

/* {"a": {"b": value}} for the key "a.b". */
static void nest(char *buf, size_t len, const char *key, const char *value)
{
    size_t at = 0;
    int depth = 0;
    for (const char *p = key;; depth++) {
        const char *dot = strchr(p, '.');
        int n = dot ? (int)(dot - p) : (int)strlen(p);
        at += (size_t)snprintf(buf + at, len - at, "{\"%.*s\": ", n, p);
        if (!dot)
            break;
        p = dot + 1;
    }
    at += (size_t)snprintf(buf + at, len - at, "%s", value);
    while (depth-- >= 0)
        at += (size_t)snprintf(buf + at, len - at, "}");
    assert_true(at < len);
}

/* Loads o's value given as its flag (json NULL) or as its key (flag NULL) into cfg. */
static int load_one(struct fx *f, const struct adm_option *o, const char *flag, const char *json,
                    struct adm_config *cfg)
{
    const char *argv[MAX_ARGS];
    char arg[TEXT_LEN + 64], text[TEXT_LEN * 2];
    size_t n = context(f, o, argv);
    if (flag) {
        snprintf(arg, sizeof arg, "-%s=%s", o->flag, flag);
        argv[n++] = arg;
    } else {
        nest(text, sizeof text, o->key, json);
        write_text(f->file, text);
        argv[n++] = "-config-file";
        argv[n++] = f->file;
    }
    f->err[0] = '\0';
    return adm_config_load((int)n, (char **)argv, cfg, f->err);
}

static uint64_t number_of(const struct adm_config *c, const struct adm_option *o)
{
    const char *p = (const char *)c + o->off;
    if (o->size == sizeof(uint64_t)) {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    if (o->size == sizeof(uint32_t)) {
        uint32_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    return *(const bool *)p;
}

/* The row's field holds what s says it must. */
static void check_field(const struct adm_config *c, const struct adm_option *o,
                        const struct sample *s, const char *how)
{
    const char *name = o->key ? o->key : o->flag;
    const void *p = (const char *)c + o->off;
    if (adm_opt_is_number(o)) {
        if (number_of(c, o) != s->want)
            fail_msg("%s as %s: %llu, want %llu", name, how, (unsigned long long)number_of(c, o),
                     (unsigned long long)s->want);
    } else if (adm_opt_is_string(o)) {
        const char *got = *(char *const *)p;
        if (!got || strcmp(got, s->want_str) != 0)
            fail_msg("%s as %s: \"%s\", want \"%s\"", name, how, got ? got : "(null)", s->want_str);
    } else {
        const struct adm_strv *l = p;
        /* -join's list also holds nothing else; a flag's list follows a file's */
        if (l->n != 1 || strcmp(l->v[0], s->want_str) != 0)
            fail_msg("%s as %s: %zu entries (first \"%s\"), want [\"%s\"]", name, how, l->n,
                     l->n ? l->v[0] : "", s->want_str);
    }
}

static bool testable(const struct adm_option *o)
{
    return o->type != ADM_OPT_JSON && o->type != ADM_OPT_CONFIG;
}

/* ---- tests ----------------------------------------------------------------------------- */

/* The same value as the flag and as the key: the same field, holding that value. */
static void test_flag_and_key_give_the_same_value(void **state)
{
    struct fx *f = *state;
    size_t both = 0;
    for (size_t i = 0; i < adm_n_options; i++) {
        const struct adm_option *o = &adm_options[i];
        struct sample s;
        if (!testable(o))
            continue;
        good_value(f, o, &s);
        if (adm_opt_is_number(o) && s.want == o->def)
            fail_msg("%s: the sample is the default", o->key ? o->key : o->flag);
        if (o->flag) {
            if (load_one(f, o, s.flag, NULL, &f->flag_cfg))
                fail_msg("-%s=%s refused: %s", o->flag, s.flag, f->err);
            check_field(&f->flag_cfg, o, &s, "flag");
        }
        if (o->key) {
            if (load_one(f, o, NULL, s.json, &f->json_cfg))
                fail_msg("%s: %s refused: %s", o->key, s.json, f->err);
            check_field(&f->json_cfg, o, &s, "key");
        }
        if (o->flag)
            adm_config_free(&f->flag_cfg);
        if (o->key)
            adm_config_free(&f->json_cfg);
        both += o->flag && o->key;
    }
    assert_true(both >= 20); /* most of Consul's flags have a key */
}

/* Out of range, or not of the row's type: refused both ways, naming the flag or the key. */
static void test_bad_values_are_refused_naming_the_option(void **state)
{
    struct fx *f = *state;
    for (size_t i = 0; i < adm_n_options; i++) {
        const struct adm_option *o = &adm_options[i];
        struct bad b[8];
        size_t n = testable(o) ? bad_values(o, b, BASE_ARRAY_LEN(b)) : 0;
        if (testable(o))
            assert_true(n > 0);
        for (size_t k = 0; k < n; k++) {
            char want[128];
            if (o->flag && b[k].flag) {
                int rc = load_one(f, o, b[k].flag, NULL, &f->flag_cfg);
                adm_config_free(&f->flag_cfg);
                if (rc != BASE_EINVAL)
                    fail_msg("-%s=%s: rc %d, want refused", o->flag, b[k].flag, rc);
                snprintf(want, sizeof want, "-%s", o->flag);
                if (!strstr(f->err, want))
                    fail_msg("-%s=%s: \"%s\" does not name %s", o->flag, b[k].flag, f->err, want);
            }
            if (o->key && b[k].json) {
                int rc = load_one(f, o, NULL, b[k].json, &f->json_cfg);
                adm_config_free(&f->json_cfg);
                if (rc != BASE_EINVAL)
                    fail_msg("%s: %s: rc %d, want refused", o->key, b[k].json, rc);
                if (!strstr(f->err, o->key))
                    fail_msg("%s: %s: \"%s\" does not name it", o->key, b[k].json, f->err);
            }
        }
    }
}

/* Flags and keys are unique, fields fit their type, defaults are in range (or 0: the
 * module's own default), and -h lists every flag and key. */
static void test_table_is_consistent(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    assert_non_null(mem);
    adm_options_usage(mem);
    assert_int_equal(fclose(mem), 0);

    for (size_t i = 0; i < adm_n_options; i++) {
        const struct adm_option *o = &adm_options[i];
        const char *name = o->key ? o->key : o->flag;
        assert_non_null(name);
        for (size_t k = i + 1; k < adm_n_options; k++) {
            const struct adm_option *p = &adm_options[k];
            if (o->flag && p->flag && strcmp(o->flag, p->flag) == 0)
                fail_msg("flag -%s twice", o->flag);
            if (o->key && p->key && strcmp(o->key, p->key) == 0)
                fail_msg("key %s twice", o->key);
            /* a key is a value or an object of keys, not both */
            if (o->key && p->key && strncmp(o->key, p->key, strlen(o->key)) == 0 &&
                p->key[strlen(o->key)] == '.')
                fail_msg("key %s holds %s", o->key, p->key);
        }
        if (o->type == ADM_OPT_BOOL)
            assert_int_equal(o->size, sizeof(bool));
        else if (adm_opt_is_number(o) && o->size != sizeof(uint32_t) && o->size != sizeof(uint64_t))
            fail_msg("%s: a number field of %zu bytes", name, o->size);
        if (adm_opt_is_string(o))
            assert_int_equal(o->size, sizeof(char *));
        if (adm_opt_is_list(o))
            assert_int_equal(o->size, sizeof(struct adm_strv));
        if (o->type == ADM_OPT_UINT && o->max == 0)
            fail_msg("%s: an integer with no maximum", name);
        if (o->max && o->def && (o->def < o->min || o->def > o->max))
            fail_msg("%s: default %llu out of its range", name, (unsigned long long)o->def);
        if (o->type == ADM_OPT_ENUM)
            assert_non_null(o->names);
        if (o->names)
            assert_true(o->def < n_names(o));
        if (o->type == ADM_OPT_JSON)
            assert_non_null(o->json);
        if (o->type == ADM_OPT_CONFIG)
            assert_true(o->load && o->flag && !o->key);
        char want[96];
        if (o->flag) {
            snprintf(want, sizeof want, "  -%s", o->flag);
            if (!strstr(text, want))
                fail_msg("-h does not list %s", want);
        }
        if (o->key && !strstr(text, o->key))
            fail_msg("-h does not list %s", o->key);
    }
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_table_is_consistent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flag_and_key_give_the_same_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_values_are_refused_naming_the_option, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
