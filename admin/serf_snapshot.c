/* The gossip pool's snapshot, DATA/serf/local.snapshot (as serf's snapshotter and Consul's
 * -rejoin use it): the members last seen alive, so a restarted agent rejoins its pool by itself,
 * and whether this agent left gracefully (then it does not rejoin unless rejoin_after_leave).
 *
 * Format (a subset of serf's, one record per line): "alive: NAME ADDR:PORT", and "leave" once
 * this agent left gracefully. It is rewritten whole (to a .tmp, then renamed) at most twice a
 * second while members change, on the thread pool; reading it at start is the agent's start-up
 * I/O, before the loop runs. A missing or unreadable file is an empty one. Loop thread. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAPSHOT_DELAY_MS 500
#define SNAPSHOT_MAX      4096 /* members remembered (gossip's own cap) */

struct adm_snapshot {
    uv_loop_t *loop;
    char *path;
    struct adm_strv names, addrs; /* alive members (not ourselves), parallel */
    bool left;                    /* we left gracefully */
    bool dirty, writing, closing;
    uv_timer_t timer;
    unsigned refs; /* the timer, a write in flight */
    char *self;
};

struct write_job {
    uv_work_t work;
    struct adm_snapshot *sn;
    char *path;
    struct base_buf text;
    int rc;
};

static void snap_unref(struct adm_snapshot *sn)
{
    if (--sn->refs > 0)
        return;
    adm_strv_free(&sn->names);
    adm_strv_free(&sn->addrs);
    base_free(sn->path);
    base_free(sn->self);
    base_free(sn);
}

static void write_work(uv_work_t *w)
{
    struct write_job *j = w->data;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", j->path);
    FILE *f = fopen(tmp, "w");
    if (!f || (j->text.len && fwrite(j->text.data, 1, j->text.len, f) != j->text.len) ||
        fflush(f) || fsync(fileno(f))) {
        j->rc = -errno;
        if (f)
            fclose(f);
        return;
    }
    if (fclose(f) || rename(tmp, j->path))
        j->rc = -errno;
}

static void flush(struct adm_snapshot *sn);

static void on_timer(uv_timer_t *t)
{
    flush(t->data);
}

static void write_after(uv_work_t *w, int status)
{
    struct write_job *j = w->data;
    struct adm_snapshot *sn = j->sn;
    if (status == 0 && j->rc)
        LOG_WARN("serf", "cannot write %s: %s", j->path, base_strerror(j->rc));
    base_buf_free(&j->text);
    base_free(j->path);
    base_free(j);
    sn->writing = false;
    if (sn->dirty && sn->closing)
        flush(sn); /* a leave marker written while closing */
    else if (sn->dirty)
        uv_timer_start(&sn->timer, on_timer, SNAPSHOT_DELAY_MS, 0);
    snap_unref(sn);
}

static void flush(struct adm_snapshot *sn)
{
    if (sn->writing || !sn->dirty)
        return;
    struct write_job *j = base_calloc(1, sizeof *j);
    j->sn = sn;
    j->path = base_strdup(sn->path);
    j->work.data = j;
    base_buf_init(&j->text);
    for (size_t i = 0; i < sn->names.n; i++)
        base_buf_printf(&j->text, "alive: %s %s\n", sn->names.v[i], sn->addrs.v[i]);
    if (sn->left)
        base_buf_printf(&j->text, "leave\n");
    sn->dirty = false;
    if (uv_queue_work(sn->loop, &j->work, write_work, write_after)) {
        base_buf_free(&j->text);
        base_free(j->path);
        base_free(j);
        return;
    }
    sn->writing = true;
    sn->refs++;
}

static void changed(struct adm_snapshot *sn)
{
    sn->dirty = true;
    if (!sn->writing && !sn->closing && !uv_is_active((uv_handle_t *)&sn->timer))
        uv_timer_start(&sn->timer, on_timer, SNAPSHOT_DELAY_MS, 0);
}

static int find(const struct adm_snapshot *sn, const char *name)
{
    for (size_t i = 0; i < sn->names.n; i++)
        if (strcmp(sn->names.v[i], name) == 0)
            return (int)i;
    return -1;
}

static void drop(struct adm_snapshot *sn, size_t i)
{
    base_free(sn->names.v[i]);
    base_free(sn->addrs.v[i]);
    sn->names.v[i] = sn->names.v[sn->names.n - 1];
    sn->addrs.v[i] = sn->addrs.v[sn->addrs.n - 1];
    sn->names.n--;
    sn->addrs.n--;
}

void adm_snapshot_member(struct adm_snapshot *sn, const struct gossip_event *ev)
{
    const struct gossip_node *m = ev->node;
    if (!sn || sn->closing || !m || strcmp(m->name, sn->self) == 0)
        return;
    char addr[80];
    snprintf(addr, sizeof addr, strchr(m->addr, ':') ? "[%s]:%u" : "%s:%u", m->addr, m->port);
    int i = find(sn, m->name);
    if (ev->kind == GOSSIP_EVENT_JOIN || ev->kind == GOSSIP_EVENT_UPDATE) {
        if (i >= 0 && strcmp(sn->addrs.v[i], addr) == 0)
            return;
        if (i >= 0) {
            base_free(sn->addrs.v[i]);
            sn->addrs.v[i] = base_strdup(addr);
        } else if (sn->names.n < SNAPSHOT_MAX) {
            adm_strv_push(&sn->names, m->name);
            adm_strv_push(&sn->addrs, addr);
        }
        changed(sn);
    } else if (i >= 0 && ev->kind != GOSSIP_EVENT_USER) {
        drop(sn, (size_t)i); /* failed, left, reaped: not someone to rejoin through */
        changed(sn);
    }
}

void adm_snapshot_left(struct adm_snapshot *sn)
{
    if (!sn || sn->closing)
        return;
    sn->left = true;
    changed(sn);
    uv_timer_stop(&sn->timer);
    flush(sn); /* now: the agent stops soon after */
}

struct adm_snapshot *adm_snapshot_open(uv_loop_t *loop, const char *data_dir, const char *self,
                                       struct adm_strv *rejoin, bool *left)
{
    struct adm_snapshot *sn = base_calloc(1, sizeof *sn);
    char dir[4096], line[1024];
    snprintf(dir, sizeof dir, "%s/serf", data_dir);
    if (mkdir(dir, 0700) && errno != EEXIST)
        LOG_WARN("serf", "mkdir %s: %s", dir, strerror(errno));
    sn->loop = loop;
    sn->path = base_malloc(strlen(dir) + 32);
    sprintf(sn->path, "%s/local.snapshot", dir);
    sn->self = base_strdup(self);
    sn->refs = 1;
    uv_timer_init(loop, &sn->timer);
    sn->timer.data = sn;
    *left = false;

    FILE *f = fopen(sn->path, "r");
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char name[512], addr[128];
        if (strcmp(line, "leave") == 0) {
            *left = true;
        } else if (sscanf(line, "alive: %511s %127s", name, addr) == 2 && strcmp(name, self) != 0 &&
                   find(sn, name) < 0 && sn->names.n < SNAPSHOT_MAX) {
            adm_strv_push(&sn->names, name);
            adm_strv_push(&sn->addrs, addr);
            adm_strv_push(rejoin, addr);
        }
    }
    if (f)
        fclose(f);
    return sn;
}

static void on_closed(uv_handle_t *h)
{
    snap_unref(h->data);
}

void adm_snapshot_close(struct adm_snapshot *sn)
{
    if (!sn || sn->closing)
        return;
    sn->closing = true;
    uv_timer_stop(&sn->timer);
    if (sn->dirty && !sn->writing)
        flush(sn); /* the last word (a leave marker) still goes to disk */
    uv_close((uv_handle_t *)&sn->timer, on_closed);
}
