/* deadline: a whole-request deadline for evhttp's server connections.
 * evhttp 2.1 has only an idle timeout, which every byte restarts: a client
 * that trickles a byte now and then holds its connection (a slot under
 * --max-connections) for as long as it likes.  Here a request's headers
 * and body must all arrive within the deadline, counted from its first
 * byte.  The time a kept-alive connection waits between requests, and the
 * time the gateway takes to answer, are not counted: the idle timeout
 * covers those.  One per worker; uses libevent only. */
#ifndef TAGWAY_DEADLINE_H
#define TAGWAY_DEADLINE_H
#include <stdint.h>
#include <event2/util.h>

struct event_base;
struct bufferevent;

typedef struct deadlines deadlines;

/* A request's deadline passed: fd is its connection, waited_us the time
 * since the request's first byte.  can_answer is 1 when nothing of an
 * earlier answer is still queued, so bytes written to fd now are the
 * next the client reads.  The connection is closed when this returns. */
typedef void (*deadline_expired_fn)(void *ud, evutil_socket_t fd, int64_t waited_us,
                                    int can_answer);

/* seconds >= 1.  NULL when out of memory. */
deadlines *deadlines_new(struct event_base *base, int seconds, deadline_expired_fn expired,
                         void *ud);
/* After evhttp_free: every connection it had is gone by then. */
void deadlines_free(deadlines *d);

/* Tracks the bufferevent made for a new connection (evhttp's bevcb).
 * -1 when out of memory: the connection then runs with no deadline. */
int deadlines_track(deadlines *d, struct bufferevent *bev);
/* The request on bev has been read whole (evhttp's request callback). */
void deadlines_request_read(deadlines *d, struct bufferevent *bev);

#endif
