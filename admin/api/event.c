/* /v1/event: Consul's user events (agent/event_endpoint.go, agent/user_event.go).
 *
 * Fire. PUT /v1/event/fire/:name with ?node=, ?service=, ?tag= (regular expressions) and the
 * body as payload: checked as validateUserEventParams does (a missing name 400 "Missing name";
 * a tag filter without a service filter, or a filter that does not compile, 500 with Consul's
 * text), given a random ID and Version 1, then handed to admin (gossip hook event_fire), which
 * sends it to the LAN pool as serf's user event "consul:event:<name>" with Consul's envelope;
 * serf's size limit answers 500 with serf's text. The reply is the event (LTime 0).
 *
 * Receive. Every event of the pool, ours included, comes back through api_on_user_event
 * (admin decodes the envelope). As shouldProcessUserEvent: a node filter must match our node
 * name; a service filter must match the ID of one of this node's services (Consul walks the
 * agent's services by ID), and a tag filter one tag of such a service; a filter that does not
 * compile drops the event; a Version above 1 is logged and still taken. "_rexec" (consul exec)
 * is ignored: remote exec is disabled, as Consul's default. The last API_EVENTS_MAX events that
 * pass are kept (the agent's eventBuf), each with the serf event's Lamport time.
 *
 * List. GET /v1/event/list (?name= keeps one name), oldest first. X-Consul-Index is
 * uuidToUint64 of the last listed event's ID, 1 when none; with ?index=N the list blocks while
 * its index EQUALS N (the index is a hash, not a counter: any other value is a change) until
 * an event arrives or ?wait runs out. The blocking is api.c's (res.unequal), so a parked list
 * counts in Stats.http.blocking_queries and is answered at shutdown.
 *
 * Regular expressions. Consul compiles filters with Go's regexp (RE2 syntax); Herald with
 * POSIX extended expressions (regcomp REG_EXTENDED|REG_NOSUB), unanchored as Go's MatchString.
 * The common syntax (literals, ., [], [^], *, +, ?, {n,m}, |, (), ^, $) means the same, and so
 * do \w \W \s \S \b \B (glibc's extensions), POSIX classes ([[:alpha:]]) and non-greedy
 * operators (*? is (*)? to glibc: for a yes/no match the same); \d and \D become [0-9] and
 * [^0-9]. Not the same: other Perl and Unicode classes (\pL) are literals here, flags ((?i))
 * and non-capturing groups ((?:)) are errors, and a '{' that starts no repetition ("a{") is a
 * literal to RE2, an error here. Back-references, which
 * RE2 refuses and glibc evaluates by backtracking, are refused here too, and so are repetition
 * counts over 1000 (nested ones multiplied) and nesting deeper than 1000, RE2's limits, and
 * expressions over 10000 atoms once counted repetitions are unrolled (RE2's memory budget is
 * larger): a filter arrives from any member of the pool and must not cost the loop more than a
 * quick match. */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#define EVENT_VERSION    1 /* userEventMaxVersion */
#define REMOTE_EXEC_NAME "_rexec"
#define RE_REPEAT_MAX    1000  /* RE2's maximum repetition count */
#define RE_NEST_MAX      1000  /* RE2's maximum nesting depth */
#define RE_SIZE_MAX      10000 /* atoms once counted repetitions are unrolled */
#define EVENT_ID_LEN     36

/* ---- pure helpers ---------------------------------------------------------------------- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The hex digits of id at [from, to) appended to v; false on a non-hex one. */
static bool hex_run(const char *id, size_t from, size_t to, uint64_t *v)
{
    for (size_t i = from; i < to; i++) {
        int d = hex_digit(id[i]);
        if (d < 0)
            return false;
        *v = (*v << 4) | (uint64_t)d;
    }
    return true;
}

uint64_t api__event_index(const char *id)
{
    uint64_t lo = 0, hi = 0;
    if (!id || strnlen(id, EVENT_ID_LEN) < EVENT_ID_LEN)
        return 0;
    if (!hex_run(id, 0, 8, &lo) || !hex_run(id, 9, 13, &lo) || !hex_run(id, 14, 18, &lo) ||
        !hex_run(id, 19, 23, &hi) || !hex_run(id, 24, 36, &hi))
        return 0;
    return lo ^ hi;
}

/* A repetition count "{n}", "{n,}" or "{n,m}" at p ('{'): its largest count and its end
 * (after '}'); NULL when p does not start one (then '{' is a literal, as in RE2). */
static const char *repeat_count(const char *p, uint64_t *count)
{
    uint64_t n = 0, m = 0;
    bool digits = false, comma = false, digits2 = false;
    for (p++; *p >= '0' && *p <= '9'; p++, digits = true)
        n = n > 100000 ? n : n * 10 + (uint64_t)(*p - '0');
    if (!digits)
        return NULL;
    if (*p == ',') {
        comma = true;
        for (p++; *p >= '0' && *p <= '9'; p++, digits2 = true)
            m = m > 100000 ? m : m * 10 + (uint64_t)(*p - '0');
    }
    if (*p != '}')
        return NULL;
    *count = comma && digits2 && m > n ? m : n;
    return p + 1;
}

/* The end of the bracket expression at p ('['): after its ']' (or at the NUL). A ']' first
 * (after '^') is a member; [:x:], [.x.] and [=x=] nest. */
static const char *bracket_end(const char *p)
{
    p++;
    if (*p == '^')
        p++;
    if (*p == ']')
        p++;
    while (*p && *p != ']') {
        if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
            char kind = p[1];
            const char *q = p + 2;
            while (*q && !(q[0] == kind && q[1] == ']'))
                q++;
            p = *q ? q + 2 : q;
        } else {
            p++;
        }
    }
    return *p ? p + 1 : p;
}

/* RE2's \d and \D, which POSIX lacks (glibc reads a literal 'd'): [0-9] and [^0-9], and 0-9
 * for \d inside a bracket. base_malloc'd. */
static char *digits_translated(const char *s)
{
    struct base_buf b;
    base_buf_init(&b);
    for (const char *p = s; *p;) {
        if (*p == '[') {
            const char *end = bracket_end(p);
            for (; p < end; p++) {
                if (p[0] == '\\' && p[1] == 'd' && p + 1 < end) {
                    base_buf_append(&b, "0-9", 3);
                    p++;
                } else {
                    base_buf_append(&b, p, 1);
                }
            }
        } else if (p[0] == '\\' && (p[1] == 'd' || p[1] == 'D')) {
            base_buf_printf(&b, "%s", p[1] == 'd' ? "[0-9]" : "[^0-9]");
            p += 2;
        } else {
            base_buf_append(&b, p, p[0] == '\\' && p[1] ? 2 : 1);
            p += p[0] == '\\' && p[1] ? 2 : 1;
        }
    }
    base_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* RE2's limits over the pattern's syntax (see the file's comment); 0 or an error. Also the
 * size of the expression once its counted repetitions are unrolled (what glibc builds: about
 * 200 bytes per atom), at most RE_SIZE_MAX atoms, where RE2 stops at its memory budget. */
static int re2_limits(const char *s, char *errmsg)
{
    uint16_t level_max[RE_NEST_MAX + 1]; /* the largest repetition in each open group */
    uint32_t size[RE_NEST_MAX + 1];      /* the atoms of each open group, unrolled */
    size_t depth = 0;
    uint64_t last = 1;      /* the repetition product of the last atom */
    uint64_t last_size = 0; /* and its size */
    level_max[0] = 1;
    size[0] = 0;
    for (const char *p = s; *p;) {
        uint64_t count, grown;
        const char *end;
        switch (*p) {
        case '\\':
            if (p[1] >= '1' && p[1] <= '9')
                return base_errf(errmsg, BASE_EINVAL, "invalid escape sequence: `\\%c`", p[1]);
            p += p[1] ? 2 : 1;
            last = last_size = 1;
            size[depth]++;
            break;
        case '[':
            p = bracket_end(p);
            last = last_size = 1;
            size[depth]++;
            break;
        case '(':
            if (depth == RE_NEST_MAX)
                return base_errf(errmsg, BASE_EINVAL, "expression nests too deeply");
            depth++;
            level_max[depth] = 1;
            size[depth] = 0;
            p++;
            last = 1;
            last_size = 0;
            break;
        case ')':
            last = depth ? level_max[depth] : 1;
            last_size = depth ? size[depth] : 0;
            if (depth) {
                depth--;
                size[depth] += (uint32_t)last_size;
            }
            p++;
            break;
        case '{':
            if (!(end = repeat_count(p, &count))) {
                p++;
                last = last_size = 1;
                size[depth]++;
                break;
            }
            if (count > RE_REPEAT_MAX)
                return base_errf(errmsg, BASE_EINVAL, "invalid repeat count: `%.*s`",
                                 (int)(end - p), p);
            last *= count ? count : 1;
            if (last > RE_REPEAT_MAX)
                return base_errf(errmsg, BASE_EINVAL, "bad repetition operator: `%.*s`",
                                 (int)(end - p), p);
            grown = last_size * (count ? count : 1);
            size[depth] += (uint32_t)(grown > RE_SIZE_MAX ? RE_SIZE_MAX + 1 : grown - last_size);
            last_size = grown > RE_SIZE_MAX ? RE_SIZE_MAX + 1 : grown;
            p = end;
            break;
        default:
            p++;
            last = last_size = 1;
            size[depth]++;
            break;
        }
        if (last > level_max[depth])
            level_max[depth] = (uint16_t)last; /* at most RE_REPEAT_MAX */
        if (size[depth] > RE_SIZE_MAX)
            return base_errf(errmsg, BASE_EINVAL, "expression too large");
    }
    return 0;
}

int api__event_regcomp(const char *filter, regex_t *re, char *errmsg)
{
    int rc = re2_limits(filter, errmsg);
    if (rc)
        return rc;
    char *posix = digits_translated(filter);
    rc = regcomp(re, posix, REG_EXTENDED | REG_NOSUB);
    base_free(posix);
    if (rc) {
        char why[200];
        regerror(rc, re, why, sizeof why);
        return base_errf(errmsg, BASE_EINVAL, "error parsing regexp: %s: `%s`", why, filter);
    }
    return 0;
}

/* The length of the UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates, at most
 * U+10FFFF), 0 when it is not one. */
static size_t utf8_len(const unsigned char *p)
{
    uint32_t cp;
    size_t n;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0)
        n = 2, cp = p[0] & 0x1fu;
    else if ((p[0] & 0xf0) == 0xe0)
        n = 3, cp = p[0] & 0x0fu;
    else if ((p[0] & 0xf8) == 0xf0)
        n = 4, cp = p[0] & 0x07u;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0; /* also stops at the NUL */
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* Text for JSON: jansson takes UTF-8 only; other bytes become U+FFFD, as Go's encoder does. */
static json_t *json_text(const char *s)
{
    json_t *v = json_string(s ? s : "");
    if (v)
        return v;
    struct base_buf b;
    base_buf_init(&b);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_len(p);
        if (n) {
            base_buf_append(&b, p, n);
            p += n;
        } else {
            base_buf_append(&b, "\xef\xbf\xbd", 3);
            p++;
        }
    }
    v = json_stringn(b.len ? (const char *)b.data : "", b.len);
    base_buf_free(&b);
    return v ? v : json_string("");
}

/* ---- the events kept --------------------------------------------------------------------- */

static void event_clear(struct api__event *e)
{
    base_free(e->id);
    base_free(e->name);
    base_free(e->node_filter);
    base_free(e->service_filter);
    base_free(e->tag_filter);
    base_free(e->payload);
    memset(e, 0, sizeof *e);
}

void api__events_free(struct api *a)
{
    for (size_t i = 0; a->events && i < a->events_n; i++)
        event_clear(&a->events[(a->events_head + i) % API_EVENTS_MAX]);
    base_free(a->events);
    a->events = NULL;
    a->events_head = a->events_n = 0;
}

static void events_push(struct api *a, const struct api_user_event *ev)
{
    struct api__event *e;
    if (!a->events)
        a->events = base_calloc(API_EVENTS_MAX, sizeof *a->events);
    if (a->events_n < API_EVENTS_MAX) {
        e = &a->events[(a->events_head + a->events_n++) % API_EVENTS_MAX];
    } else {
        e = &a->events[a->events_head];
        event_clear(e);
        a->events_head = (a->events_head + 1) % API_EVENTS_MAX;
    }
    e->id = base_strdup(ev->id ? ev->id : "");
    e->name = base_strdup(ev->name ? ev->name : "");
    e->node_filter = base_strdup(ev->node_filter ? ev->node_filter : "");
    e->service_filter = base_strdup(ev->service_filter ? ev->service_filter : "");
    e->tag_filter = base_strdup(ev->tag_filter ? ev->tag_filter : "");
    if (ev->payload) {
        e->payload = base_malloc(ev->payload_len ? ev->payload_len : 1);
        if (ev->payload_len)
            memcpy(e->payload, ev->payload, ev->payload_len);
        e->payload_len = ev->payload_len;
    }
    e->version = ev->version;
    e->ltime = ev->ltime;
}

/* Consul's api.UserEvent as JSON (its field order). */
static json_t *event_json(const struct api_user_event *ev, struct base_arena *ar)
{
    json_t *o = json_object();
    json_object_set_new(o, "ID", json_text(ev->id));
    json_object_set_new(o, "Name", json_text(ev->name));
    json_object_set_new(o, "Payload",
                        ev->payload ? json_string(base_b64_encode(ar, ev->payload, ev->payload_len))
                                    : json_null());
    json_object_set_new(o, "NodeFilter", json_text(ev->node_filter));
    json_object_set_new(o, "ServiceFilter", json_text(ev->service_filter));
    json_object_set_new(o, "TagFilter", json_text(ev->tag_filter));
    json_object_set_new(o, "Version", json_integer((json_int_t)ev->version));
    json_object_set_new(o, "LTime", json_integer((json_int_t)ev->ltime));
    return o;
}

static struct api_user_event event_view(const struct api__event *e)
{
    return (struct api_user_event){
        .id = e->id,
        .name = e->name,
        .payload = e->payload,
        .payload_len = e->payload_len,
        .node_filter = e->node_filter,
        .service_filter = e->service_filter,
        .tag_filter = e->tag_filter,
        .version = e->version,
        .ltime = e->ltime,
    };
}

/* ---- receiving --------------------------------------------------------------------------- */

struct svc_match {
    regex_t *service, *tag; /* tag NULL: any service whose ID matches */
    bool found;
};

static int svc_match_cb(void *data, const struct zone_service *s)
{
    struct svc_match *m = data;
    if (regexec(m->service, s->id, 0, NULL, 0) != 0)
        return 0;
    for (size_t i = 0; m->tag && i < s->n_tags && !m->found; i++)
        m->found = regexec(m->tag, s->tags[i], 0, NULL, 0) == 0;
    if (!m->tag)
        m->found = true;
    return m->found ? 1 : 0;
}

/* One filter compiled, or the event dropped with Consul's log line. */
static bool filter_compile(const struct api_user_event *ev, const char *what, const char *filter,
                           regex_t *re)
{
    char err[BASE_ERRMSG_LEN];
    if (api__event_regcomp(filter, re, err) == 0)
        return true;
    LOG_ERR("agent", "Failed to parse %s filter '%s' for event '%s': %s", what, filter, ev->name,
            err);
    return false;
}

/* shouldProcessUserEvent: whether ev's filters select this agent. */
static bool event_for_us(struct api *a, const struct api_user_event *ev)
{
    regex_t node, service, tag;
    if (ev->version > EVENT_VERSION)
        LOG_WARN("agent", "Event version %lld may have unsupported features (%s)",
                 (long long)ev->version, ev->name);
    if (ev->node_filter && *ev->node_filter) {
        if (!filter_compile(ev, "node", ev->node_filter, &node))
            return false;
        bool match = regexec(&node, a->cfg.node_name, 0, NULL, 0) == 0;
        regfree(&node);
        if (!match)
            return false;
    }
    if (!ev->service_filter || !*ev->service_filter)
        return true;
    if (!filter_compile(ev, "service", ev->service_filter, &service))
        return false;
    bool has_tag = ev->tag_filter && *ev->tag_filter;
    if (has_tag && !filter_compile(ev, "tag", ev->tag_filter, &tag)) {
        regfree(&service);
        return false;
    }
    struct svc_match m = {&service, has_tag ? &tag : NULL, false};
    struct zone_read *rd;
    if (a->cfg.store && zone_read_begin(a->cfg.store, &rd) == 0) {
        struct base_arena ar;
        base_arena_init(&ar);
        (void)zone_node_services_each(rd, a->cfg.node_name, &ar, svc_match_cb, &m);
        zone_read_end(rd);
        base_arena_close(&ar);
    }
    regfree(&service);
    if (has_tag)
        regfree(&tag);
    return m.found;
}

void api_on_user_event(struct api *a, const struct api_user_event *ev)
{
    if (a->closing || !event_for_us(a, ev))
        return;
    if (strcmp(ev->name, REMOTE_EXEC_NAME) == 0) {
        LOG_INFO("agent", "ignoring remote exec event (%s), disabled.", ev->id);
        return;
    }
    LOG_DEBUG("agent", "new event: %s (%s) ltime=%llu", ev->name, ev->id,
              (unsigned long long)ev->ltime);
    events_push(a, ev);
    api_on_applied(a, 0, API_WAKE_EVENTS); /* wakes the parked lists, not a commit */
}

/* ---- endpoints --------------------------------------------------------------------------- */

static void read_events(struct api *a, struct http_req *req, struct zone_read *rd,
                        struct base_arena *ar, struct api_result *res)
{
    const char *name = http_req_query(req, "name");
    const struct api__event *last = NULL;
    struct api_list l;
    BASE_UNUSED(rd);
    api__list_init(&l, req);
    for (size_t i = 0; i < a->events_n; i++) {
        const struct api__event *e = &a->events[(a->events_head + i) % API_EVENTS_MAX];
        if (name && *name && strcmp(e->name, name) != 0)
            continue;
        struct api_user_event v = event_view(e);
        api__list_add(&l, event_json(&v, ar));
        last = e;
    }
    api__list_finish(&l, res);
    /* none: 1, so a watch with no matching event does not spin (Consul's comment); an ID
     * that is not a UUID (a foreign sender's) counts as none */
    res->index = last ? api__event_index(last->id) : 0;
    if (!res->index)
        res->index = 1;
    res->unequal = true;
}

static int random_id(char out[EVENT_ID_LEN + 1])
{
    uint8_t r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return BASE_ESTORE;
    r[6] = (uint8_t)((r[6] & 0x0f) | 0x40); /* version 4 */
    r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
    snprintf(out, EVENT_ID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
             r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
             r[15]);
    return 0;
}

/* validateUserEventParams, past the name: 0, or 500 answered with Consul's text. */
static bool filters_valid(struct http_req *req, const struct api_user_event *ev)
{
    static const char *const what[] = {"node", "service", "tag"};
    const char *filters[] = {ev->node_filter, ev->service_filter, ev->tag_filter};
    char err[BASE_ERRMSG_LEN];
    regex_t re;
    if (*ev->tag_filter && !*ev->service_filter) {
        api__error(req, 500, "Cannot provide tag filter without service filter");
        return false;
    }
    for (size_t i = 0; i < BASE_ARRAY_LEN(filters); i++) {
        if (!*filters[i])
            continue;
        if (api__event_regcomp(filters[i], &re, err)) {
            api__error(req, 500, "Invalid %s filter: %s", what[i], err);
            return false;
        }
        regfree(&re);
    }
    return true;
}

static const char *query_or_empty(struct http_req *req, const char *name)
{
    const char *v = http_req_query(req, name);
    return v ? v : "";
}

static void event_fire(struct api *a, struct http_req *req, const char *name)
{
    char id[EVENT_ID_LEN + 1], err[BASE_ERRMSG_LEN];
    size_t len;
    const char *body = http_req_body(req, &len);
    struct api_user_event ev = {
        .id = id,
        .name = name,
        .payload = len ? (const uint8_t *)body : NULL,
        .payload_len = len,
        .node_filter = query_or_empty(req, "node"),
        .service_filter = query_or_empty(req, "service"),
        .tag_filter = query_or_empty(req, "tag"),
        .version = EVENT_VERSION,
    };
    if (!*name) {
        api__error(req, 400, "Missing name");
        return;
    }
    if (!filters_valid(req, &ev))
        return;
    if (random_id(id)) {
        api__error(req, 500, "UUID generation failed");
        return;
    }
    if (api__other_dc(a, req))
        return;
    if (!a->cfg.gossip.event_fire) {
        api__error(req, 500, "No gossip pool");
        return;
    }
    if (a->cfg.gossip.event_fire(a->cfg.gossip.data, &ev, err)) {
        api__error(req, 500, "%s", err);
        return;
    }
    json_t *o = event_json(&ev, http_req_arena(req));
    char *text = json_dumps(o, http_req_query(req, "pretty") ? JSON_INDENT(4) : JSON_COMPACT);
    json_decref(o);
    http_respond(req, 200, "application/json", text ? text : "null", text ? strlen(text) : 4);
    free(text);
}

bool api__event_route(struct api *a, struct http_req *req, const char *path)
{
    if (strncmp(path, "/v1/event/fire/", 15) == 0) {
        if (api__method(req, "PUT"))
            event_fire(a, req, path + 15);
    } else if (strcmp(path, "/v1/event/fire") == 0) {
        if (api__method(req, "PUT"))
            api__error(req, 400, "Missing name");
    } else if (strcmp(path, "/v1/event/list") == 0) {
        if (api__method(req, "GET"))
            api__read_local(a, req, API_WAKE_EVENTS, read_events);
    } else {
        return false;
    }
    return true;
}
