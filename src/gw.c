/* gw: operations on the whole process state that more than one module
 * triggers: swapping in a new script generation (reload from SIGHUP,
 * /admin/reload or --watch) and freeing the one it replaced.
 * Uses lhost. */
#include "gw.h"
#include "lhost.h"

#include <stdio.h>
#include <string.h>

void gw_settle(gw *g)
{
    if (g->retired && !g->in_request) {
        lhost_free(g->retired);
        g->retired = NULL;
    }
}

int gw_reload(gw *g, char *err, size_t errlen)
{
    lhost *next;
    char *tb;
    if (g->retired) {
        snprintf(err, errlen, "a reload is still settling; try again");
        g->stats.reloads_failed++;
        return -1;
    }
    next = lhost_new(g, g->generation + 1, err, errlen);
    if (!next) {
        if ((tb = strstr(err, "\nstack traceback:")))
            *tb = '\0';       /* the client gets file:line: what */
        g->stats.reloads_failed++;
        return -1;
    }
    g->retired = g->lua;
    g->lua = next;
    g->generation++;
    g->stats.reloads_ok++;
    return 0;
}
