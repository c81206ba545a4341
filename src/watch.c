/* watch: inotify on the script folders (and their subfolders), the policy
 * folder and the configuration file's folder.  Events are read by the
 * event loop; 150 ms after the last one, gw_reload runs and its outcome is
 * logged.  Uses libevent, inotify(7), lhost, sha256, util. */
#include "watch.h"
#include "lhost.h"
#include "sha256.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define DEBOUNCE_MS 150
#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE)

struct watch {
    gw *g;
    int fd;
    struct event *readable, *debounce;
};

/* Adds dir and, below it, every folder (scripts keep handlers/ etc.). */
static int add_tree(watch *w, const char *dir, int depth)
{
    DIR *d;
    struct dirent *e;
    char sub[PATH_MAX];
    if (inotify_add_watch(w->fd, dir, WATCH_MASK) < 0)
        return -1;
    if (depth == 0 || !(d = opendir(dir)))
        return 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || e->d_type != DT_DIR)
            continue;
        if (snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name) < (int)sizeof sub)
            add_tree(w, sub, depth - 1);
    }
    closedir(d);
    return 0;
}

static void on_debounce(evutil_socket_t fd, short what, void *arg)
{
    watch *w = arg;
    char err[2048];
    struct timeval tv = {0, DEBOUNCE_MS * 1000};
    int rc;
    (void)fd, (void)what;
    if ((rc = gw_reload_try(w->g, err, sizeof err)) == GW_RELOAD_BUSY) {
        /* another worker's /admin/reload is building, from files read
         * before this change perhaps: dropping this one left the edit
         * unloaded until the next */
        gw_settle(w->g);        /* "still settling": this worker's own last one */
        evtimer_add(w->debounce, &tv);
        return;
    }
    gw_reload_log(w->g, "watch", rc, err);
    gw_settle(w->g);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    watch *w = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    struct timeval tv = {0, DEBOUNCE_MS * 1000};
    (void)what;
    while (read(fd, buf, sizeof buf) > 0)
        ;                       /* which file changed does not matter: all reload */
    evtimer_add(w->debounce, &tv);
}

static int was_loaded(const lhost_file *f, size_t n, const char *path)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(f[i].path, path) == 0)
            return 1;
    return 0;
}

/* Whether what the serving generation loaded differs on disk now: an
 * edit made while start built the workers' states (after the build read
 * the file, before the watch began) raised no event.  Every file it
 * loaded, and the policy folder, all of whose *.lua files it loads (one
 * added meanwhile is missing from the generation). */
static int loaded_files_changed(gw *g)
{
    size_t n, len;
    const lhost_file *f = lhost_files(g->lua, &n);
    DIR *d;
    struct dirent *e;
    char path[PATH_MAX];
    int changed = 0;
    for (size_t i = 0; i < n; i++) {
        char hex[65], *text = util_read_file(f[i].path, &len);
        if (!text)
            return 1;
        sha256_hex(text, len, hex);
        free(text);
        if (strcmp(hex, f[i].sha256) != 0)
            return 1;
    }
    if (!(d = opendir(g->opt.policies)))
        return 1;
    while (!changed && (e = readdir(d)))
        if (lhost_is_script_name(e->d_name) &&
            snprintf(path, sizeof path, "%s/%s", g->opt.policies, e->d_name) < (int)sizeof path)
            changed = !was_loaded(f, n, path);
    closedir(d);
    return changed;
}

watch *watch_start(gw *g, char *err, size_t errlen)
{
    struct timeval tv = {0, DEBOUNCE_MS * 1000};
    watch *w = calloc(1, sizeof *w);
    char dir[PATH_MAX];
    const char *slash = strrchr(g->opt.config, '/');
    if (!w || (w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
        snprintf(err, errlen, "inotify: %s", strerror(errno));
        free(w);
        return NULL;
    }
    w->g = g;
    if (add_tree(w, g->opt.scripts, 4) != 0 || add_tree(w, g->opt.policies, 0) != 0) {
        snprintf(err, errlen, "cannot watch %s or %s: %s", g->opt.scripts, g->opt.policies, strerror(errno));
        goto fail;
    }
    if (g->opt.config[0]) {
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - g->opt.config) : 1,
                 slash ? g->opt.config : ".");
        add_tree(w, dir, 0);
    }
    w->readable = event_new(g->base, w->fd, EV_READ | EV_PERSIST, on_readable, w);
    w->debounce = evtimer_new(g->base, on_debounce, w);
    if (!w->readable || !w->debounce || event_add(w->readable, NULL) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (loaded_files_changed(g))
        evtimer_add(w->debounce, &tv);
    return w;
fail:
    watch_free(w);
    return NULL;
}

void watch_free(watch *w)
{
    if (!w)
        return;
    if (w->readable)
        event_free(w->readable);
    if (w->debounce)
        event_free(w->debounce);
    if (w->fd >= 0)
        close(w->fd);
    free(w);
}
