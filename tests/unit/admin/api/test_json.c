/* Tests admin/api/json.c's input helpers: key matching the way Consul's decoder matches
 * (case and underscores ignored), and each typed field getter: the types it takes, null, the
 * types it refuses with a message that names the field, and its limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "admin/api/internal.h"

/* Parses a JSON text (any top-level value) for a test; the caller decrefs. */
static json_t *J(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!v)
        fail_msg("bad test JSON %s: %s", text, jerr.text);
    return v;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* ---- api__key_is ----------------------------------------------------------------------- */

static void test_key_is_ignores_case_and_underscores(void **state)
{
    (void)state;
    assert_true(api__key_is("Name", "Name"));
    assert_true(api__key_is("name", "Name"));
    assert_true(api__key_is("NAME", "Name"));
    assert_true(api__key_is("nAmE", "Name"));
    assert_true(api__key_is("enable_tag_override", "EnableTagOverride"));
    assert_true(api__key_is("enabletagoverride", "EnableTagOverride"));
    assert_true(api__key_is("ENABLE_TAG_OVERRIDE", "EnableTagOverride"));
    assert_true(api__key_is("EnableTagOverride", "enable_tag_override"));
    assert_true(api__key_is("deregister_critical_service_after", "DeregisterCriticalServiceAfter"));
    assert_true(api__key_is("ttl", "TTL"));
    assert_true(api__key_is("check_id", "CheckID"));
    assert_true(api__key_is("_id_", "ID"));
    assert_true(api__key_is("", ""));
}

static void test_key_is_rejects_other_keys(void **state)
{
    (void)state;
    assert_false(api__key_is("Names", "Name"));
    assert_false(api__key_is("Nam", "Name"));
    assert_false(api__key_is("", "Name"));
    assert_false(api__key_is("Name", ""));
    assert_false(api__key_is("ID", "CheckID"));
    assert_false(api__key_is("CheckID", "ID"));
    assert_false(api__key_is("enable-tag-override", "EnableTagOverride")); /* '-' is not '_' */
    assert_false(api__key_is("Tag", "Tags"));
    assert_false(api__key_is("Tags", "Tag"));
    assert_false(api__key_is("Nane", "Name"));
    assert_false(api__key_is("Name ", "Name"));
    /* only ASCII letters fold: '@' (0x40) and '`' (0x60) stay different */
    assert_false(api__key_is("@", "`"));
    assert_false(api__key_is("[", "{"));
}

static void test_unknown_field_names_key(void **state)
{
    (void)state;
    char err[BASE_ERRMSG_LEN] = "";
    assert_int_equal(api__unknown_field("Bogus", err), BASE_EINVAL);
    assert_contains(err, "unknown field");
    assert_contains(err, "\"Bogus\"");
}

/* ---- api__get_str ---------------------------------------------------------------------- */

static void test_get_str(void **state)
{
    (void)state;
    struct base_arena ar;
    char err[BASE_ERRMSG_LEN] = "";
    const char *out = NULL;
    base_arena_init(&ar);

    json_t *v = json_string("web");
    assert_int_equal(api__get_str(v, "Name", &ar, &out, err), 0);
    assert_string_equal(out, "web");
    assert_ptr_not_equal(out, json_string_value(v)); /* copied into the arena */
    json_decref(v);
    assert_string_equal(out, "web"); /* outlives the JSON value */

    v = json_string("");
    assert_int_equal(api__get_str(v, "Name", &ar, &out, err), 0);
    assert_string_equal(out, "");
    json_decref(v);

    v = json_null();
    out = NULL;
    assert_int_equal(api__get_str(v, "Name", &ar, &out, err), 0);
    assert_non_null(out);
    assert_string_equal(out, "");

    base_arena_close(&ar);
}

static void test_get_str_refuses_other_types(void **state)
{
    (void)state;
    static const struct {
        const char *json, *got;
    } cases[] = {
        {"1", "number"},   {"1.5", "number"}, {"true", "bool"},
        {"false", "bool"}, {"[]", "array"},   {"{}", "object"},
    };
    struct base_arena ar;
    base_arena_init(&ar);
    for (size_t i = 0; i < BASE_ARRAY_LEN(cases); i++) {
        char err[BASE_ERRMSG_LEN] = "";
        const char *out = "untouched";
        json_t *v = J(cases[i].json);
        assert_int_equal(api__get_str(v, "Address", &ar, &out, err), BASE_EINVAL);
        assert_contains(err, "\"Address\"");
        assert_contains(err, "expected a string");
        assert_contains(err, cases[i].got);
        json_decref(v);
    }
    base_arena_close(&ar);
}

static void test_get_str_refuses_nul_byte(void **state)
{
    (void)state;
    struct base_arena ar;
    char err[BASE_ERRMSG_LEN] = "";
    const char *out = NULL;
    base_arena_init(&ar);
    json_t *v = json_stringn("a\0b", 3);
    assert_non_null(v);
    assert_int_equal(api__get_str(v, "Notes", &ar, &out, err), BASE_EINVAL);
    assert_contains(err, "\"Notes\"");
    assert_contains(err, "NUL");
    json_decref(v);
    base_arena_close(&ar);
}

/* ---- api__get_bool --------------------------------------------------------------------- */

static void test_get_bool(void **state)
{
    (void)state;
    char err[BASE_ERRMSG_LEN] = "";
    bool out = false;

    assert_int_equal(api__get_bool(json_true(), "EnableTagOverride", &out, err), 0);
    assert_true(out);
    assert_int_equal(api__get_bool(json_false(), "EnableTagOverride", &out, err), 0);
    assert_false(out);
    out = true;
    assert_int_equal(api__get_bool(json_null(), "EnableTagOverride", &out, err), 0);
    assert_false(out);

    static const char *const bad[] = {"\"true\"", "1", "0", "[]", "{}"};
    for (size_t i = 0; i < BASE_ARRAY_LEN(bad); i++) {
        json_t *v = J(bad[i]);
        err[0] = '\0';
        assert_int_equal(api__get_bool(v, "EnableTagOverride", &out, err), BASE_EINVAL);
        assert_contains(err, "\"EnableTagOverride\"");
        assert_contains(err, "expected a bool");
        json_decref(v);
    }
}

/* ---- api__get_uint --------------------------------------------------------------------- */

static void test_get_uint(void **state)
{
    (void)state;
    char err[BASE_ERRMSG_LEN] = "";
    uint64_t out = 99;
    json_t *v;

    v = json_integer(0);
    assert_int_equal(api__get_uint(v, "Port", 65535, &out, err), 0);
    assert_true(out == 0);
    json_decref(v);

    v = json_integer(8080);
    assert_int_equal(api__get_uint(v, "Port", 65535, &out, err), 0);
    assert_true(out == 8080);
    json_decref(v);

    v = json_integer(65535); /* max itself is in range */
    assert_int_equal(api__get_uint(v, "Port", 65535, &out, err), 0);
    assert_true(out == 65535);
    json_decref(v);

    v = json_integer(INT64_MAX);
    assert_int_equal(api__get_uint(v, "Big", UINT64_MAX, &out, err), 0);
    assert_true(out == (uint64_t)INT64_MAX);
    json_decref(v);

    out = 99;
    assert_int_equal(api__get_uint(json_null(), "Port", 65535, &out, err), 0);
    assert_true(out == 0);
}

static void test_get_uint_range(void **state)
{
    (void)state;
    char err[BASE_ERRMSG_LEN] = "";
    uint64_t out = 7;
    json_t *v;

    v = json_integer(65536);
    assert_int_equal(api__get_uint(v, "Port", 65535, &out, err), BASE_EINVAL);
    assert_contains(err, "\"Port\"");
    assert_contains(err, "65536");
    assert_contains(err, "out of range 0..65535");
    assert_true(out == 7); /* untouched on error */
    json_decref(v);

    v = json_integer(-1);
    err[0] = '\0';
    assert_int_equal(api__get_uint(v, "Port", 65535, &out, err), BASE_EINVAL);
    assert_contains(err, "\"Port\"");
    assert_contains(err, "-1");
    json_decref(v);

    v = json_integer(1);
    err[0] = '\0';
    assert_int_equal(api__get_uint(v, "Weights.Passing", 0, &out, err), BASE_EINVAL);
    assert_contains(err, "\"Weights.Passing\"");
    json_decref(v);
}

static void test_get_uint_refuses_other_types(void **state)
{
    (void)state;
    static const char *const bad[] = {"1.0", "1.5", "\"80\"", "true", "[]", "{}"};
    for (size_t i = 0; i < BASE_ARRAY_LEN(bad); i++) {
        char err[BASE_ERRMSG_LEN] = "";
        uint64_t out = 0;
        json_t *v = J(bad[i]);
        assert_int_equal(api__get_uint(v, "Port", 65535, &out, err), BASE_EINVAL);
        assert_contains(err, "\"Port\"");
        assert_contains(err, "expected an integer");
        json_decref(v);
    }
}

/* ---- api__get_strlist ------------------------------------------------------------------ */

static void test_get_strlist(void **state)
{
    (void)state;
    struct base_arena ar;
    char err[BASE_ERRMSG_LEN] = "";
    const char **out = NULL;
    size_t n = 99;
    base_arena_init(&ar);

    json_t *v = J("[\"a\", \"\", \"c\"]");
    assert_int_equal(api__get_strlist(v, "Tags", &ar, &out, &n, err), 0);
    json_decref(v);
    assert_int_equal(n, 3);
    assert_string_equal(out[0], "a");
    assert_string_equal(out[1], "");
    assert_string_equal(out[2], "c");

    v = J("[]");
    out = NULL;
    assert_int_equal(api__get_strlist(v, "Tags", &ar, &out, &n, err), 0);
    json_decref(v);
    assert_int_equal(n, 0);
    assert_non_null(out);

    n = 99;
    assert_int_equal(api__get_strlist(json_null(), "Tags", &ar, &out, &n, err), 0);
    assert_int_equal(n, 0);
    assert_null(out);

    base_arena_close(&ar);
}

static void test_get_strlist_refuses(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\"a\"", "{}", "1", "true", "[1]", "[\"a\", null]", "[\"a\", [\"b\"]]", "[{}]",
    };
    struct base_arena ar;
    base_arena_init(&ar);
    for (size_t i = 0; i < BASE_ARRAY_LEN(bad); i++) {
        char err[BASE_ERRMSG_LEN] = "";
        const char **out = NULL;
        size_t n = 5;
        json_t *v = J(bad[i]);
        assert_int_equal(api__get_strlist(v, "Tags", &ar, &out, &n, err), BASE_EINVAL);
        assert_contains(err, "\"Tags\"");
        assert_contains(err, "array of strings");
        json_decref(v);
    }
    base_arena_close(&ar);
}

/* ---- api__get_strmap ------------------------------------------------------------------- */

static const char *pair_value(const struct zone_pair *p, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].key, key) == 0)
            return p[i].value;
    return NULL;
}

static void test_get_strmap(void **state)
{
    (void)state;
    struct base_arena ar;
    char err[BASE_ERRMSG_LEN] = "";
    struct zone_pair *out = NULL;
    size_t n = 99;
    base_arena_init(&ar);

    json_t *v = J("{\"version\": \"1.2\", \"env\": \"\"}");
    assert_int_equal(api__get_strmap(v, "Meta", &ar, &out, &n, err), 0);
    json_decref(v);
    assert_int_equal(n, 2);
    assert_string_equal(pair_value(out, n, "version"), "1.2");
    assert_string_equal(pair_value(out, n, "env"), "");

    v = J("{}");
    assert_int_equal(api__get_strmap(v, "Meta", &ar, &out, &n, err), 0);
    json_decref(v);
    assert_int_equal(n, 0);

    n = 99;
    assert_int_equal(api__get_strmap(json_null(), "Meta", &ar, &out, &n, err), 0);
    assert_int_equal(n, 0);
    assert_null(out);

    base_arena_close(&ar);
}

static void test_get_strmap_refuses(void **state)
{
    (void)state;
    struct base_arena ar;
    struct zone_pair *out;
    size_t n;
    base_arena_init(&ar);

    static const char *const not_obj[] = {"[]", "\"a\"", "1", "true"};
    for (size_t i = 0; i < BASE_ARRAY_LEN(not_obj); i++) {
        char err[BASE_ERRMSG_LEN] = "";
        json_t *v = J(not_obj[i]);
        assert_int_equal(api__get_strmap(v, "Meta", &ar, &out, &n, err), BASE_EINVAL);
        assert_contains(err, "\"Meta\"");
        assert_contains(err, "object of strings");
        json_decref(v);
    }

    /* a non-string value: the message names the field and the key */
    static const char *const bad_val[] = {"{\"k\": 1}", "{\"k\": null}", "{\"k\": [\"x\"]}",
                                          "{\"k\": {}}", "{\"k\": true}"};
    for (size_t i = 0; i < BASE_ARRAY_LEN(bad_val); i++) {
        char err[BASE_ERRMSG_LEN] = "";
        json_t *v = J(bad_val[i]);
        assert_int_equal(api__get_strmap(v, "Meta", &ar, &out, &n, err), BASE_EINVAL);
        assert_contains(err, "\"Meta.k\"");
        assert_contains(err, "expected a string");
        json_decref(v);
    }

    char err[BASE_ERRMSG_LEN] = "";
    json_t *v = J("{\"\": \"v\"}");
    assert_int_equal(api__get_strmap(v, "Meta", &ar, &out, &n, err), BASE_EINVAL);
    assert_contains(err, "\"Meta\"");
    assert_contains(err, "empty key");
    json_decref(v);

    base_arena_close(&ar);
}

/* ---- api__get_duration ----------------------------------------------------------------- */

static uint64_t dur_ok(const char *json)
{
    char err[BASE_ERRMSG_LEN] = "";
    uint64_t ms = 12345;
    json_t *v = J(json);
    int rc = api__get_duration(v, "TTL", &ms, err);
    json_decref(v);
    if (rc)
        fail_msg("duration %s refused: %s", json, err);
    return ms;
}

static void test_get_duration_strings(void **state)
{
    (void)state;
    assert_true(dur_ok("\"10s\"") == 10000);
    assert_true(dur_ok("\"1m30s\"") == 90000);
    assert_true(dur_ok("\"250ms\"") == 250);
    assert_true(dur_ok("\"1h\"") == 3600000);
    assert_true(dur_ok("\"1.5s\"") == 1500);
    assert_true(dur_ok("\"2m\"") == 120000);
    assert_true(dur_ok("\"0\"") == 0);
    assert_true(dur_ok("\"30\"") == 30000); /* a bare number is seconds (base.h) */
    assert_true(dur_ok("\"0s\"") == 0);
    assert_true(dur_ok("\"100us\"") == 1); /* sub-millisecond rounds up to 1 */
    assert_true(dur_ok("\"\"") == 0);      /* empty means unset */
    assert_true(dur_ok("null") == 0);
}

static void test_get_duration_nanoseconds(void **state)
{
    (void)state;
    /* Go marshals time.Duration as an integer number of nanoseconds */
    assert_true(dur_ok("10000000000") == 10000);
    assert_true(dur_ok("90000000000") == 90000);
    assert_true(dur_ok("1000000") == 1);
    assert_true(dur_ok("0") == 0);
    assert_true(dur_ok("1") == 1);       /* 1ns rounds up, never to 0 */
    assert_true(dur_ok("1500000") == 2); /* 1.5ms rounds up */
    assert_true(dur_ok("2000000") == 2);
}

static void test_get_duration_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"\"ten seconds\"", "invalid duration"},
        {"\"10x\"", "invalid duration"},
        {"\"s\"", "invalid duration"},
        {"\"-1s\"", "invalid duration"},
        {"\"10s \"", "invalid duration"},
        {"\"1m30\"", "invalid duration"},
        {"\"99999999999999999999h\"", "invalid duration"}, /* overflow */
        {"-1", "negative duration"},
        {"1.5", "duration string"},
        {"true", "duration string"},
        {"[]", "duration string"},
        {"{}", "duration string"},
    };
    for (size_t i = 0; i < BASE_ARRAY_LEN(cases); i++) {
        char err[BASE_ERRMSG_LEN] = "";
        uint64_t ms = 777;
        json_t *v = J(cases[i].json);
        assert_int_equal(api__get_duration(v, "Interval", &ms, err), BASE_EINVAL);
        assert_contains(err, "\"Interval\"");
        assert_contains(err, cases[i].want);
        json_decref(v);
    }
}

/* ---- api__json_loadb: duplicate keys end in the order of their last occurrence ---------- */

/* The keys of obj in iteration order, "," separated, with each value when a string. */
static void keys_of(json_t *obj, char *out, size_t cap)
{
    const char *k;
    json_t *v;
    out[0] = '\0';
    json_object_foreach(obj, k, v)
    {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s=%s", n ? "," : "", k,
                 json_is_string(v) ? json_string_value(v) : "*");
    }
}

static void test_json_loadb_last_occurrence_order(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want; /* want: the top object's keys, or of its "o" member's */
        bool inner;
    } cases[] = {
        /* no exact duplicate: jansson's own order, which is the document's */
        {"{\"Name\": \"a\", \"name\": \"b\"}", "Name=a,name=b", false},
        {"{\"Name\": \"a\", \"name\": \"b\", \"Name\": \"c\"}", "name=b,Name=c", false},
        {"{\"a\": \"1\", \"b\": \"2\", \"a\": \"3\", \"b\": \"4\", \"c\": \"5\"}", "a=3,b=4,c=5",
         false},
        {"{\"a\": \"1\", \"b\": \"2\", \"b\": \"4\", \"a\": \"3\"}", "b=4,a=3", false},
        /* escapes in keys: the same key however spelled */
        {"{\"N\\u0061me\": \"a\", \"name\": \"b\", \"Name\": \"c\"}", "name=b,Name=c", false},
        {"{\"q\\\"k\": \"a\", \"x\": \"b\", \"q\\u0022k\": \"c\"}", "x=b,q\"k=c", false},
        {"{\"\\ud83d\\ude00\": \"a\", \"x\": \"b\", \"\\ud83d\\ude00\": \"c\"}",
         "x=b,\xf0\x9f\x98\x80=c", false},
        {"{\"\": \"a\", \"x\": \"b\", \"\": \"c\"}", "x=b,=c", false},
        /* nested: the kept value's own occurrence decides, whatever a dropped one said */
        {"{\"o\": {\"a\": \"1\", \"b\": \"2\", \"a\": \"3\"}, \"o\": {\"b\": \"4\", \"a\": \"5\", "
         "\"b\": \"6\"}}",
         "a=5,b=6", true},
        {"{\"o\": [{\"b\": 1}], \"o\": {\"x\": \"1\", \"y\": \"2\", \"x\": \"3\"}}", "y=2,x=3",
         true},
        {"{\"o\": {\"x\": \"1\", \"y\": \"2\", \"x\": \"3\"}, \"o\": 5, \"o\": {\"y\": \"7\"}}",
         "y=7", true},
        {"{\"l\": [{\"k\": 1, \"k\": 2}, [{\"a\": 1}]], \"o\": {\"p\": \"1\", \"q\": \"2\", "
         "\"p\": \"3\"}}",
         "q=2,p=3", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_error_t jerr;
        char got[256];
        json_t *v = api__json_loadb(cases[i].text, strlen(cases[i].text), &jerr);
        if (!v)
            fail_msg("%s: %s", cases[i].text, jerr.text);
        keys_of(cases[i].inner ? json_object_get(v, "o") : v, got, sizeof got);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("%s: got %s, want %s", cases[i].text, got, cases[i].want);
        json_decref(v);
    }
    /* errors are jansson's, duplicates or not */
    json_error_t jerr;
    assert_null(api__json_loadb("{\"a\": 1, \"a\": ", 14, &jerr));
    assert_null(api__json_loadb("{\"a\": \"\\ud800\", \"a\": 1}", 23, &jerr));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_is_ignores_case_and_underscores),
        cmocka_unit_test(test_json_loadb_last_occurrence_order),
        cmocka_unit_test(test_key_is_rejects_other_keys),
        cmocka_unit_test(test_unknown_field_names_key),
        cmocka_unit_test(test_get_str),
        cmocka_unit_test(test_get_str_refuses_other_types),
        cmocka_unit_test(test_get_str_refuses_nul_byte),
        cmocka_unit_test(test_get_bool),
        cmocka_unit_test(test_get_uint),
        cmocka_unit_test(test_get_uint_range),
        cmocka_unit_test(test_get_uint_refuses_other_types),
        cmocka_unit_test(test_get_strlist),
        cmocka_unit_test(test_get_strlist_refuses),
        cmocka_unit_test(test_get_strmap),
        cmocka_unit_test(test_get_strmap_refuses),
        cmocka_unit_test(test_get_duration_strings),
        cmocka_unit_test(test_get_duration_nanoseconds),
        cmocka_unit_test(test_get_duration_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
