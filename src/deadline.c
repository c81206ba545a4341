/* deadline: whole-request deadlines (deadline.h).
 *
 * evhttp 2.1 says neither when a request begins nor when a connection
 * ends, so each connection gets a tracker built from what it does expose:
 * - the bufferevent is ours (evhttp_set_bevcb), and a callback on its
 *   input buffer sees bytes arrive: the first after a request was read
 *   starts the next request's clock;
 * - the request callback says when a request has been read whole, and
 *   finds the tracker by the connection's socket (by_fd);
 * - the connection's close callback says when it goes.  It is set on the
 *   loop pass after the accept, once evhttp has made the connection (the
 *   bufferevent's callback argument); until a tracker is released it holds
 *   a reference on the bufferevent, so the bufferevent (and with it the
 *   socket, which it closes when freed) outlives evhttp's use of it and is
 *   never freed under the tracker, nor its socket number reused.
 * evhttp's own free of a bufferevent clears its callbacks: a tracker that
 * finds them cleared lets go, which a sweep also checks now and then, in
 * case some path of evhttp ends a connection without its close callback
 * (a review of libevent 2.1.12 found none).
 * Uses libevent, util. */
#include "deadline.h"
#include "util.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct tracker tracker;

struct tracker {
    deadlines *d;
    struct bufferevent *bev;        /* one reference is the tracker's */
    struct evbuffer_cb_entry *watch;
    struct event *timer;
    evutil_socket_t fd;             /* its by_fd slot; -1: none (not yet, or no memory) */
    int fresh, adopted;             /* fresh: on the list of trackers to adopt */
    int armed;                      /* a request's clock runs, since first_byte_us */
    int pending;                    /* the timer is set (it may outlive the clock) */
    int64_t first_byte_us;
    tracker *prev, *next;           /* every tracker */
    tracker *next_fresh;            /* made since the last adoption pass */
};

struct deadlines {
    struct event_base *base;
    const struct timeval *timeout;  /* a common timeout: queued in O(1) */
    int seconds;
    deadline_expired_fn expired;
    void *ud;
    tracker *all, *fresh;
    struct event *adopt_ev, *sweep_ev;
    tracker **by_fd;
    size_t nfd;
};

/* Whether evhttp still has the connection: its free of the bufferevent
 * clears every callback (the memory stays while the tracker's reference
 * does).  The event callback it is: evhttp clears the read callback
 * itself while it writes an answer (a review caught trackers let go of
 * live connections, then released again by their close).  The callback
 * argument is evhttp's connection. */
static struct evhttp_connection *conn_of(const tracker *t)
{
    bufferevent_event_cb eventcb = NULL;
    void *arg = NULL;
    bufferevent_getcb(t->bev, NULL, NULL, &eventcb, &arg);
    return eventcb ? arg : NULL;
}

static void release(tracker *t)
{
    deadlines *d = t->d;
    struct evhttp_connection *conn = t->adopted ? conn_of(t) : NULL;
    if (conn)                       /* its close must never reach a freed tracker */
        evhttp_connection_set_closecb(conn, NULL, NULL);
    if (t->fresh)
        for (tracker **p = &d->fresh; *p; p = &(*p)->next_fresh)
            if (*p == t) {
                *p = t->next_fresh;
                break;
            }
    if (t->fd >= 0 && (size_t)t->fd < d->nfd && d->by_fd[t->fd] == t)
        d->by_fd[t->fd] = NULL;
    if (t->prev)
        t->prev->next = t->next;
    else
        d->all = t->next;
    if (t->next)
        t->next->prev = t->prev;
    event_free(t->timer);
    evbuffer_remove_cb_entry(bufferevent_get_input(t->bev), t->watch);
    bufferevent_decref(t->bev);     /* evhttp's free may have been the other */
    free(t);
}

/* evhttp writes an answer with no read callback (evhttp_write_buffer),
 * reading on only to see the peer close: bytes it reads then are the
 * next request's, and its clock starts when they are taken in, not while
 * the client is slow to read this answer. */
static int writing(const tracker *t)
{
    bufferevent_data_cb readcb = NULL;
    bufferevent_getcb(t->bev, &readcb, NULL, NULL, NULL);
    return readcb == NULL;
}

static int fd_slot(deadlines *d, evutil_socket_t fd)
{
    size_t n = d->nfd ? d->nfd : 64;
    tracker **grown;
    if ((size_t)fd < d->nfd)
        return 0;
    while (n <= (size_t)fd)
        n *= 2;
    if (!(grown = realloc(d->by_fd, n * sizeof *grown)))
        return -1;
    memset(grown + d->nfd, 0, (n - d->nfd) * sizeof *grown);
    d->by_fd = grown;
    d->nfd = n;
    return 0;
}

static void on_close(struct evhttp_connection *conn, void *arg)
{
    evhttp_connection_set_closecb(conn, NULL, NULL);
    release(arg);
}

/* 0, or -1 when the tracker was released (its connection had gone). */
static int adopt(tracker *t)
{
    struct evhttp_connection *conn = conn_of(t);
    evutil_socket_t fd = bufferevent_getfd(t->bev);
    deadlines *d = t->d;
    if (t->adopted)
        return 0;
    if (!conn) {
        release(t);
        return -1;
    }
    t->adopted = 1;
    evhttp_connection_set_closecb(conn, on_close, t);
    /* without a slot the request callback cannot stop the clock, so the
     * connection is never timed (out of memory only) */
    if (fd >= 0 && fd_slot(d, fd) == 0) {
        d->by_fd[fd] = t;
        t->fd = fd;
    }
    return 0;
}

static void on_adopt(evutil_socket_t fd, short what, void *arg)
{
    deadlines *d = arg;
    (void)fd, (void)what;
    while (d->fresh) {
        tracker *t = d->fresh;
        d->fresh = t->next_fresh;
        t->next_fresh = NULL;
        t->fresh = 0;
        adopt(t);
    }
}

static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    tracker *t = arg;
    (void)buf;
    if (info->n_added == 0 || t->armed || adopt(t) != 0 || t->fd < 0 || writing(t))
        return;
    t->first_byte_us = util_mono_us();
    t->armed = 1;
    /* the timer is left set when a request ends in time, and checks at
     * its end whether a later request's clock has run out: a request
     * costs no timer operation of its own */
    if (!t->pending)
        t->pending = evtimer_add(t->timer, t->d->timeout) == 0;
}

static void on_timer(evutil_socket_t sock, short what, void *arg)
{
    tracker *t = arg;
    deadlines *d = t->d;
    struct evhttp_connection *conn;
    char sink[4096];
    evutil_socket_t fd = bufferevent_getfd(t->bev);
    int64_t now = util_mono_us(), left = d->seconds * INT64_C(1000000) - (now - t->first_byte_us);
    (void)sock, (void)what;
    t->pending = 0;
    if (!(conn = conn_of(t)) || fd < 0) {
        release(t);
        return;
    }
    if (!t->armed)
        return;
    if (left > 0) {             /* a later request's clock: the rest of its time */
        struct timeval tv = {(time_t)(left / 1000000), (suseconds_t)(left % 1000000)};
        t->pending = evtimer_add(t->timer, &tv) == 0;
        return;
    }
    t->armed = 0;
    d->expired(d->ud, fd, now - t->first_byte_us,
               evbuffer_get_length(bufferevent_get_output(t->bev)) == 0);
    /* The connection ends here.  A shut socket still yields what the
     * kernel holds of it, from which evhttp completed the request after
     * its 408 and ran it (a review stored images that way).  The clock
     * runs only while evhttp reads a request it has handed to no one
     * (on_input starts none while it writes), so freeing the connection
     * drops nobody's request; its close callback releases t.  What the
     * kernel holds unread is taken first: it would make the close a
     * reset, which may cost the client the 408 it has not read yet. */
    for (int i = 0; i < 16 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
        ;
    evhttp_connection_free(conn);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    deadlines *d = arg;
    (void)fd, (void)what;
    for (tracker *t = d->all, *next; t; t = next) {
        next = t->next;
        if (t->adopted && !conn_of(t))
            release(t);
    }
}

deadlines *deadlines_new(struct event_base *base, int seconds, deadline_expired_fn expired,
                         void *ud)
{
    struct timeval tv = {seconds, 0}, sweep = {seconds > 10 ? 10 : seconds, 0};
    deadlines *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->base = base;
    d->seconds = seconds;
    d->expired = expired;
    d->ud = ud;
    if (!(d->timeout = event_base_init_common_timeout(base, &tv)) ||
        !(d->adopt_ev = event_new(base, -1, 0, on_adopt, d)) ||
        !(d->sweep_ev = event_new(base, -1, EV_PERSIST, on_sweep, d)) ||
        event_add(d->sweep_ev, &sweep) != 0)
        goto fail;
    return d;
fail:
    deadlines_free(d);
    return NULL;
}

void deadlines_free(deadlines *d)
{
    if (!d)
        return;
    while (d->all)
        release(d->all);
    if (d->adopt_ev)
        event_free(d->adopt_ev);
    if (d->sweep_ev)
        event_free(d->sweep_ev);
    free(d->by_fd);
    free(d);
}

int deadlines_track(deadlines *d, struct bufferevent *bev)
{
    tracker *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    t->d = d;
    t->bev = bev;
    t->fd = -1;
    if (!(t->timer = evtimer_new(d->base, on_timer, t)) ||
        !(t->watch = evbuffer_add_cb(bufferevent_get_input(bev), on_input, t))) {
        if (t->timer)
            event_free(t->timer);
        free(t);
        return -1;
    }
    bufferevent_incref(bev);
    t->next = d->all;
    if (d->all)
        d->all->prev = t;
    d->all = t;
    t->next_fresh = d->fresh;
    t->fresh = 1;
    d->fresh = t;
    event_active(d->adopt_ev, EV_TIMEOUT, 0);
    return 0;
}

void deadlines_request_read(deadlines *d, struct bufferevent *bev)
{
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    tracker *t = fd >= 0 && (size_t)fd < d->nfd ? d->by_fd[fd] : NULL;
    if (t && t->bev == bev)
        t->armed = 0;
}
