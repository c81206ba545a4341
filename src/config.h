/* config: the options of `tagway serve` and `tagway check`: defaults, the
 * optional Lua configuration file (a table; keys are option names with
 * '-' written '_'), and the command line, which wins. */
#ifndef TAGWAY_CONFIG_H
#define TAGWAY_CONFIG_H
#include <stddef.h>
#include "gw.h"

void config_defaults(gw_options *o);
/* Applies one option by name ("listen", "db", ...; '-' or '_').  Paths are
 * taken as given.  0 ok, -1 unknown name or bad value (err says). */
int config_set(gw_options *o, const char *name, const char *value, char *err, size_t errlen);
/* Applies the configuration file o->config, given its bytes, to o; paths
 * in it are relative to its folder.  0 ok, -1 with err, which names the
 * file.  (lhost_load_config reads it through a reload's snapshot.) */
int config_load_text(gw_options *o, const char *text, size_t len, char *err, size_t errlen);
/* 1 if name ('-' or '_') is an option config_set takes. */
int config_is_option(const char *name);
/* The names of the options a and b hold different values of, as
 * "name, name" in out (empty when none; cut short at cap). */
void config_diff(const gw_options *a, const gw_options *b, char *out, size_t cap);
/* ADDR:PORT (ADDR may be [v6], PORT 0-65535) split into host and port.
 * 0 ok, -1 not of that form or the host longer than cap. */
int config_split_listen(const char *listen, char *host, size_t cap, int *port);
/* 1 if the listen address is loopback (auth may be off). */
int config_is_loopback(const char *listen);

/* Cores this process may run on (1..64): the default of --workers. */
int config_default_workers(void);

#endif
