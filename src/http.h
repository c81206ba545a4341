/* http: the evhttp server.  Turns each request into an lhost_request,
 * runs the current script generation, sends the answer with X-Request-Id,
 * writes one JSON access-log line, and answers 500/503 itself when a
 * script fails.  Also owns the signals that reload and stop the server. */
#ifndef TAGWAY_HTTP_H
#define TAGWAY_HTTP_H
#include <stddef.h>
#include "gw.h"

/* Binds g->opt.listen and installs the callbacks.
 * 0 ok, -1 with err filled. */
int http_start(gw *g, char *err, size_t errlen);
/* The port actually bound (for --listen 127.0.0.1:0). */
int http_port(const gw *g);
void http_free(gw *g);
/* After every worker's http_start: what is open now is not a client. */
void http_ready(gw *g);
/* Wakes the other workers' loops (stop, or a generation to take). */
void http_wake_all(gw *g);
/* The signal thread's asks (signals_cb; ud: the gw_shared): every loop
 * stops; worker 0 reloads.  Safe from any thread while the workers'
 * http state exists. */
void http_ask_stop(void *shared);
void http_ask_reload(void *shared);

#endif
