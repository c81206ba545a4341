/* watch: `--watch on` reloads the scripts when a file in the script,
 * policy or configuration folders changes (inotify, through the event
 * loop, debounced so an editor's burst of writes is one reload). */
#ifndef TAGWAY_WATCH_H
#define TAGWAY_WATCH_H
#include <stddef.h>
#include "gw.h"

typedef struct watch watch;

watch *watch_start(gw *g, char *err, size_t errlen);
void watch_free(watch *w);

#endif
