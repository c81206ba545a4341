/* http: the libevent evhttp front end of one worker (event loop).  Each
 * request runs the script generation current when it arrived, start to
 * finish.  With several workers each binds its own SO_REUSEPORT socket on
 * the same port, so the kernel spreads connections over the loops.
 * Other threads reach a worker through its wake-up eventfd: the syncer
 * (answers may go), other workers (a generation to take), and the signal
 * thread (signals.h): a stop makes every loop stop accepting, answer what
 * it has read (its writes made durable first), let the answers drain, and
 * leave; a reload runs on worker 0.
 * Uses libevent, config, deadline, jobs, lhost, store, util. */
#include "http.h"
#include "config.h"
#include "deadline.h"
#include "jobs.h"
#include "lhost.h"
#include "metrics.h"
#include "store.h"
#include "util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netdb.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>

#define JSON_TYPE "application/json;charset=UTF-8"
#define DRAIN_MS 500  /* a stopping loop leaves this long after its last answer */
#define DRAIN_TICK_MS 20
#define LOG_FLUSH_BYTES 65536
#define WRITING_READ_AHEAD (64 * 1024) /* bytes read on while an answer is written */

typedef struct reply reply;

typedef struct http_state {
    struct evhttp_bound_socket *bound;
    uint64_t request_seq;
    struct event *commit_ev;
    struct event *pass_ev;            /* ends the pass's read transaction */
    gw *g;
    int accept_paused;                /* at the cap: this loop's listener is off */
    int max_conns, base_sockets;      /* sockets not clients: the listener... */
    struct event *cap_timer;
    int wake_fd;                      /* eventfd: other threads wake this loop */
    struct event *wake_ev;
    struct evbuffer *log;             /* access-log lines of this loop pass */
    struct event *log_ev;             /* writes them once the pass is done */
    int64_t log_second;               /* the second log_date formats */
    char log_date[20];
    reply *waiting, **waiting_tail;   /* answers held for this pass's group commit */
    reply *parked, **parked_tail;     /* answers held for the syncer, oldest group first */
    char id_prefix[17];
    int port;
    deadlines *deadlines;             /* NULL: --request-timeout-s 0 */
    struct event *drain_ev;           /* stopping: leaves once all is answered */
    int stopping;
    int64_t stop_us;                  /* when the stop was taken */
    int64_t quiet_since_us;           /* stopping: the last answer of a request run */
} http_state;

static http_state *state_of(const gw *g) { return (http_state *)g->http_state; }
static void enforce_cap(http_state *st);

/* A header's value without the whitespace before it: evhttp drops the
 * spaces there but keeps a tab, which is as much not part of the value
 * (RFC 9110 5.5) and made a valid date, token or project id look wrong. */
static const char *find_header(void *ud, const char *name)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(ud), name);
    while (v && (*v == ' ' || *v == '\t'))
        v++;
    return v;
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "UNKNOWN";
}

/* One answer, from request to the wire.  The answer of a request that
 * wrote waits here until its group is committed and synced: nothing is
 * acknowledged before it is durable (readers may see a group between its
 * COMMIT and its sync). */
struct reply {
    struct evhttp_request *ev;
    char id[40];
    const char *method;
    int64_t start_us;
    uint64_t group;             /* the write group it waits for, 0: none */
    int close_after;            /* framing in doubt: nothing more is read */
    int turned_away;            /* read late in a stop: answered 503 unrun */
    lhost_response resp;
    struct reply *next;
};

/* The lines of a pass go out in one write after it (not one write per
 * request), under stderr's lock so workers' lines never interleave. */
static void log_flush(http_state *st)
{
    size_t len = evbuffer_get_length(st->log);
    if (!len)
        return;
    fwrite(evbuffer_pullup(st->log, -1), 1, len, stderr);
    fflush(stderr);
    evbuffer_drain(st->log, len);
}

static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    log_flush(arg);
}

/* Appends s (at most cap - *n - 1 bytes) to buf. */
static void put_str(char *buf, size_t cap, size_t *n, const char *s)
{
    size_t len = strlen(s);
    if (len > cap - *n - 1)
        len = cap - *n - 1;
    memcpy(buf + *n, s, len);
    *n += len;
}

static void put_u64(char *buf, size_t cap, size_t *n, uint64_t v)
{
    char digits[24];
    size_t k = sizeof digits;
    digits[--k] = '\0';
    do
        digits[--k] = (char)('0' + v % 10);
    while ((v /= 10) && k > 0);
    put_str(buf, cap, n, digits + k);
}

/* s inside a JSON string: quote and backslash escaped, control characters
 * dropped (route templates and, with auth off, X-Project-Id are words the
 * scripts or the client chose). */
static void put_json_chars(char *buf, size_t cap, size_t *n, const char *s)
{
    for (; *s && *n + 8 < cap; s++) {
        if (*s == '"' || *s == '\\')
            buf[(*n)++] = '\\';
        if ((unsigned char)*s >= 0x20)
            buf[(*n)++] = *s;
    }
}

/* One line per request, formatted by hand (it is on every request's path):
 * the date part of the time is formatted once per second. */
static void access_log(http_state *st, const reply *rp, size_t bytes)
{
    char line[1024];
    const char *r = rp->resp.route[0] ? rp->resp.route : "-";
    size_t n = 0;
    int64_t now = util_now_ms(), latency = util_mono_us() - rp->start_us;
    int was_empty = evbuffer_get_length(st->log) == 0;
    if (now / 1000 != st->log_second) {
        char when[32];
        st->log_second = now / 1000;
        util_iso8601_ms(st->log_second * 1000, when);
        when[19] = '\0';                /* keep YYYY-MM-DDTHH:MM:SS */
        memcpy(st->log_date, when, 20);
    }
    put_str(line, sizeof line, &n, "{\"time\":\"");
    put_str(line, sizeof line, &n, st->log_date);
    line[n++] = '.';
    line[n++] = (char)('0' + now % 1000 / 100);
    line[n++] = (char)('0' + now % 100 / 10);
    line[n++] = (char)('0' + now % 10);
    put_str(line, sizeof line, &n, "Z\",\"request_id\":\"");
    put_str(line, sizeof line, &n, rp->id);
    put_str(line, sizeof line, &n, "\",\"project\":\"");
    put_json_chars(line, sizeof line, &n, rp->resp.project);
    put_str(line, sizeof line, &n, "\",\"method\":\"");
    put_str(line, sizeof line, &n, rp->method);
    put_str(line, sizeof line, &n, "\",\"route\":\"");
    put_json_chars(line, sizeof line, &n, r);
    put_str(line, sizeof line, &n, "\",\"status\":");
    put_u64(line, sizeof line, &n, (uint64_t)rp->resp.status);
    put_str(line, sizeof line, &n, ",\"bytes\":");
    put_u64(line, sizeof line, &n, bytes);
    put_str(line, sizeof line, &n, ",\"latency_us\":");
    put_u64(line, sizeof line, &n, latency > 0 ? (uint64_t)latency : 0);
    put_str(line, sizeof line, &n, "}\n");
    if (line[n - 1] != '\n')
        line[n - 1] = '\n';            /* truncated: still one line */
    evbuffer_add(st->log, line, n);
    if (evbuffer_get_length(st->log) >= LOG_FLUSH_BYTES)
        log_flush(st);
    else if (was_empty)
        event_active(st->log_ev, EV_TIMEOUT, 0);
}

static void reply_free(reply *rp)
{
    if (rp->resp.body)
        evbuffer_free(rp->resp.body);
    free(rp);
}

static struct bufferevent *bev_of(struct evhttp_request *ev)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(ev);
    return conn ? evhttp_connection_get_bufferevent(conn) : NULL;
}

/* evhttp's hook once an answer is written to the socket: reading is
 * unbounded again (send_reply bounded it). */
static void answer_written(struct evhttp_request *ev, void *arg)
{
    struct bufferevent *bev = bev_of(ev);
    (void)arg;
    if (bev)
        bufferevent_setwatermark(bev, EV_READ, 0, 0);
}

/* The same for a CONNECT, whose connection then ends: what the peer sent
 * after the request is dropped (evhttp has read it already and would run
 * it next: a pipelined write done behind an answer that said the
 * connection closes), no more is read or sent, and evhttp then sees the
 * end and frees the connection. */
static void answer_written_shut(struct evhttp_request *ev, void *arg)
{
    struct bufferevent *bev = bev_of(ev);
    (void)arg;
    if (!bev)
        return;
    evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
    if (bufferevent_getfd(bev) >= 0)
        shutdown(bufferevent_getfd(bev), SHUT_RDWR);
}

/* The status line's reason: libevent 2.1 knows the phrases up to 417 and
 * says "Client Error" for 422 and 429. */
static const char *reason_phrase(int status)
{
    switch (status) {
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    default: return NULL; /* libevent's own */
    }
}

/* Whether the request says a body follows: one evhttp does not read for
 * HEAD, TRACE or a method it does not know would be taken for the next
 * request. */
static int announces_body(struct evhttp_request *ev)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(ev);
    const char *len = evhttp_find_header(in, "Content-Length");
    return evhttp_find_header(in, "Transfer-Encoding") || (len && strspn(len, " 0") != strlen(len));
}

static void send_reply(gw *g, reply *rp)
{
    struct evkeyvalq *out_headers = evhttp_request_get_output_headers(rp->ev);
    struct bufferevent *bev;
    size_t bytes = evbuffer_get_length(rp->resp.body);
    evhttp_add_header(out_headers, "X-Request-Id", rp->id);
    if (rp->resp.retry_after_s > 0) {
        char secs[16];
        snprintf(secs, sizeof secs, "%d", rp->resp.retry_after_s);
        evhttp_add_header(out_headers, "Retry-After", secs);
    }
    if (bytes)
        evhttp_add_header(out_headers, "Content-Type", rp->resp.content_type);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(rp->ev);
    if (cmd == EVHTTP_REQ_HEAD || cmd == EVHTTP_REQ_CONNECT) {
        /* evhttp sends whatever body it is given but counts none for
         * these: HEAD gets the GET answer's headers without its body, which
         * a keep-alive client would read as the start of its next answer;
         * CONNECT's 404 keeps its body, which a client reads to the length */
        char length[24];
        snprintf(length, sizeof length, "%zu", bytes);
        evhttp_add_header(out_headers, "Content-Length", length);
        if (cmd == EVHTTP_REQ_HEAD)
            evbuffer_drain(rp->resp.body, bytes);
    }
    /* evhttp reads no body after HEAD, TRACE or a method it does not know:
     * what of one follows must not be taken for the next request.  It
     * keeps a CONNECT's connection open whatever the headers say (a
     * tunnel), and would run what was pipelined behind it, so that one is
     * shut here once the answer is out. */
    if (rp->close_after || cmd == EVHTTP_REQ_CONNECT || !strcmp(rp->method, "UNKNOWN") ||
        ((cmd == EVHTTP_REQ_HEAD || cmd == EVHTTP_REQ_TRACE) && announces_body(rp->ev)) ||
        state_of(g)->stopping ||     /* no next request the loop would not answer */
        atomic_load(&g->shared->crowded)) { /* its place to the backlog (enforce_cap) */
        evhttp_add_header(out_headers, "Connection", "close");
        /* evhttp adds "Connection: keep-alive" to the answer of an HTTP/1.0
         * request that asked for it: both would be sent */
        while (evhttp_remove_header(evhttp_request_get_input_headers(rp->ev), "Connection") == 0)
            ;                   /* every one: it removes the first it finds */
    }
    if (state_of(g)->stopping && !rp->turned_away)
        state_of(g)->quiet_since_us = util_mono_us();
    /* evhttp reads on while it writes (to see the peer close) and kept
     * all a client pipelined without reading: one took 414 MB in a
     * second.  While this answer is written at most this much more is
     * read; the kernel's buffers then push back on the client.  Not for
     * the whole connection: evhttp keeps a body in the bufferevent until
     * all of it has come, so a bound there would stall any body above it. */
    if ((bev = bev_of(rp->ev)))
        bufferevent_setwatermark(bev, EV_READ, 0, WRITING_READ_AHEAD);
    evhttp_request_set_on_complete_cb(rp->ev, rp->close_after || cmd == EVHTTP_REQ_CONNECT
                                                  ? answer_written_shut : answer_written, NULL);
    evhttp_send_reply(rp->ev, rp->resp.status, reason_phrase(rp->resp.status), rp->resp.body);
    access_log(state_of(g), rp, bytes);
    metrics_request(g->metrics, rp->resp.route[0] ? rp->resp.route : "-", rp->resp.status,
                    util_mono_us() - rp->start_us);
    reply_free(rp);
}

/* The only bodies not made by the scripts (when they failed, when the
 * store did, or before they run): an answer in the IMS shape, in place of
 * whatever resp held.  message is JSON-safe text of ours. */
static void ims_answer(lhost_response *resp, int status, const char *code, const char *message)
{
    evbuffer_drain(resp->body, evbuffer_get_length(resp->body));
    resp->status = status;
    util_copy(resp->content_type, sizeof resp->content_type, JSON_TYPE);
    evbuffer_add_printf(resp->body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, message);
}

static void script_failure_body(lhost_response *resp, lhost_rc rc)
{
    ims_answer(resp, rc == LHOST_BUDGET ? 503 : 500, "IMG.0061",
               rc == LHOST_BUDGET ? "Service busy: the request exceeded its script budget"
                                  : "Internal error while processing the request");
}

/* What makes the end of the request's body doubtful, or NULL.  evhttp
 * reads a body by the first Content-Length, through strtoll, and runs what
 * follows as the next request; a proxy in front that went by a second
 * field, or refused a value such as "+2" that RFC 9110 does not allow
 * (1*DIGIT), would have drawn the line elsewhere, and the two would
 * disagree on where every later request starts (request smuggling).  So
 * may a proxy that reads a header name with whitespace before its colon
 * as the name without it.
 * Transfer-Encoding with Content-Length evhttp refuses itself. */
static const char *framing_fault(struct evhttp_request *ev)
{
    const struct evkeyvalq *in = evhttp_request_get_input_headers(ev);
    int n = 0;
    for (const struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next) {
        const char *v = kv->value;
        size_t digits;
        /* "Content-Length : 5" is stored under "Content-Length ", which
         * evhttp then ignores (an empty body, the rest run as the next
         * request) where a lenient proxy took it for the length */
        if (kv->key[strcspn(kv->key, " \t")] != '\0')
            return "a header name with whitespace before its colon (RFC 9112 5.1)";
        if (evutil_ascii_strcasecmp(kv->key, "Content-Length") != 0)
            continue;
        if (++n > 1)
            return "Content-Length: given more than once; a request has at most one";
        v += strspn(v, " \t");
        digits = strspn(v, "0123456789");
        if (digits == 0 || v[digits + strspn(v + digits, " \t")] != '\0')
            return "Content-Length: must be decimal digits only";
    }
    return NULL;
}

/* The answer to a request whose body's end is in doubt: 400 (API.md §0.1's
 * "other format errors"), and the connection closed once it is out. */
static void framing_refused(reply *rp, const char *fault)
{
    char message[256];

    snprintf(message, sizeof message, "%s, so where its body ends is in doubt (the connection "
             "is closed)", fault);
    rp->close_after = 1;
    ims_answer(&rp->resp, 400, "IMG.0001", message);
}

static void fill_request(gw *g, struct evhttp_request *ev, reply *rp, char *uri,
                         lhost_request *r)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(ev);
    size_t body_len = evbuffer_get_length(in);
    char *q;
    if ((q = strchr(uri, '?')))
        *q++ = '\0';
    r->id = rp->id;
    r->method = rp->method;
    r->path = uri;
    r->query = q;
    r->too_large = body_len > g->opt.body_limit;
    r->body_limit = g->opt.body_limit;
    r->body = r->too_large ? "" : (const char *)evbuffer_pullup(in, -1);
    r->body_len = r->too_large ? 0 : body_len;
    r->remote = evhttp_request_get_host(ev);
    r->header = find_header;
    r->header_ud = ev;
}

/* A request read more than DRAIN_MS into a stop: keep-alive clients that
 * kept sending would hold the stop until the forced exit, which cuts
 * answers whose writes were kept.  It is answered without running, so a
 * retry is safe. */
static void stopping_refused(reply *rp)
{
    ims_answer(&rp->resp, 503, "IMG.0061", "the gateway is stopping; nothing of this request was done");
    rp->resp.retry_after_s = 1;
    rp->turned_away = 1;
}

static void on_request(struct evhttp_request *ev, void *arg)
{
    gw *g = arg;
    http_state *st = state_of(g);
    reply *rp = calloc(1, sizeof *rp);
    char *uri = strdup(evhttp_request_get_uri(ev));
    lhost_request r = {0};
    lhost_rc rc;
    const char *fault;
    if (st->deadlines)
        deadlines_request_read(st->deadlines, bev_of(ev));
    if (!rp || !uri || !(rp->resp.body = evbuffer_new())) {
        evhttp_send_error(ev, 500, NULL);
        if (rp)
            reply_free(rp);
        free(uri);
        return;
    }
    rp->ev = ev;
    rp->start_us = util_mono_us();
    rp->method = method_name(evhttp_request_get_command(ev));
    snprintf(rp->id, sizeof rp->id, "%s%016llx", st->id_prefix, (unsigned long long)++st->request_seq);
    if ((fault = framing_fault(ev))) {
        framing_refused(rp, fault);
        free(uri);
        send_reply(g, rp);
        return;
    }
    if (st->stopping && rp->start_us - st->stop_us >= DRAIN_MS * 1000LL) {
        stopping_refused(rp);
        free(uri);
        send_reply(g, rp);
        return;
    }
    fill_request(g, ev, rp, uri, &r);
    gw_settle(g);               /* a reload on another worker reaches this one here */

    g->in_request = 1;
    store_request_start(g->store);
    rc = lhost_handle(g->lua, &r, &rp->resp);
    g->in_request = 0;
    store_release(g->store);
    if (rc != LHOST_OK)
        script_failure_body(&rp->resp, rc);
    rp->group = store_request_end(g->store, rp->resp.status < 300);
    free(uri);
    if (rp->group) {
        *st->waiting_tail = rp;
        st->waiting_tail = &rp->next;
    } else {
        send_reply(g, rp);
    }
    gw_settle(g);
}

/* The write of this request was not stored (or not made durable): the
 * answer says so, whatever the script had answered.  Not logged here: the
 * access log has the request and its 503, the store logs the group's
 * reason (at most once a second; a full disk fails every request). */
static void storage_failure_body(reply *rp)
{
    ims_answer(&rp->resp, 503, "IMG.0061", "storage commit failed; nothing of this request was stored");
}

/* Sends the parked answers whose groups are done (durable, or failed:
 * then they say so), oldest first, and tells the store which group the
 * rest wait for. */
static void flush_parked(gw *g)
{
    http_state *st = state_of(g);
    reply *rp;
    int state;
    do {
        while ((rp = st->parked) && (state = store_group_state(g->store, rp->group)) != 1) {
            if (!(st->parked = rp->next))
                st->parked_tail = &st->parked;
            if (state < 0)
                storage_failure_body(rp);
            send_reply(g, rp);
        }
    } while (store_park(g->store, rp ? rp->group : 0));
}

/* Runs after the requests of this loop pass: the COMMIT of the group
 * holding their writes (unless another worker's came first), handed to the
 * syncer; answers go once their group is durable, parked until then while
 * this loop serves on. */
static void on_commit(evutil_socket_t fd, short what, void *arg)
{
    gw *g = arg;
    http_state *st = state_of(g);
    (void)fd, (void)what;
    store_group_commit(g->store);
    if (g->jobs_submitted) {            /* its job is visible to the runner now */
        g->jobs_submitted = 0;
        jobs_kick(g->jobs);
    }
    if (st->waiting) {                  /* groups only grow: the list stays in order */
        *st->parked_tail = st->waiting;
        st->parked_tail = st->waiting_tail;
        st->waiting = NULL;
        st->waiting_tail = &st->waiting;
    }
    flush_parked(g);
}

static void on_pass_end(evutil_socket_t fd, short what, void *arg)
{
    gw *g = arg;
    (void)fd, (void)what;
    store_pass_end(g->store);
}

/* store's hook: this pass's read transaction just opened. */
static void schedule_pass_end(void *arg)
{
    gw *g = arg;
    event_active(state_of(g)->pass_ev, EV_TIMEOUT, 0);
}

/* store's hook: a commit group just opened. */
static void schedule_commit(void *arg)
{
    gw *g = arg;
    event_active(state_of(g)->commit_ev, EV_TIMEOUT, 0);
}

/* SIGHUP, on worker 0's loop. */
static void reload_on_signal(gw *g)
{
    char err[2048];
    gw_reload_log(g, "SIGHUP", gw_reload(g, err, sizeof err), err);
    gw_settle(g);
}

/* Stopping: commits what waits for a commit, and leaves once every
 * answer is out and DRAIN_MS have passed without one to a request that
 * ran (so the last ones reach their clients; requests read later than
 * DRAIN_MS into the stop are turned away unrun, so clients that keep on
 * sending cannot hold it).  An answer parked for the syncer is sent when its
 * group is durable, or says it failed: a request that was read and
 * written is answered, never dropped with its write kept.  What cannot
 * finish (a stuck fsync) meets the signal thread's forced exit. */
static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    gw *g = arg;
    http_state *st = state_of(g);
    struct timeval tick = {0, DRAIN_TICK_MS * 1000};
    (void)fd, (void)what;
    if (st->waiting)
        on_commit(-1, 0, g);
    flush_parked(g);
    if (!st->waiting && !st->parked && util_mono_us() - st->quiet_since_us >= DRAIN_MS * 1000LL) {
        /* a few more passes: a 503 turned away just now goes out too */
        struct timeval flush = {0, 50 * 1000};
        event_base_loopexit(g->base, &flush);
    } else {
        evtimer_add(st->drain_ev, &tick);
    }
}

/* Stop accepting, answer what was read, let the answers reach their
 * clients, then leave (on_drain). */
static void stop_worker(gw *g)
{
    http_state *st = state_of(g);
    if (st->stopping)
        return;
    st->stopping = 1;
    st->stop_us = st->quiet_since_us = util_mono_us();
    if (st->bound) {
        struct evhttp_bound_socket *b = st->bound;
        st->bound = NULL;       /* the connection cap must not re-enable it */
        evhttp_del_accept_socket(g->http, b);
    }
    log_flush(st);
    if (!(st->drain_ev = evtimer_new(g->base, on_drain, g))) {
        struct timeval drain = {0, DRAIN_MS * 1000};
        event_base_loopexit(g->base, &drain);   /* the old way: a fixed drain */
        return;
    }
    on_drain(-1, 0, g);
}

static void wake(gw *w)
{
    uint64_t one = 1;
    http_state *st = state_of(w);
    if (st && st->wake_fd >= 0 && write(st->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"cannot wake worker %d\"}\n", w->worker);
}

/* store's hook, on the syncer's thread: parked answers can go. */
static void synced(void *arg)
{
    wake(arg);
}

/* Another thread asked: stop, or take the new generation while idle. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    gw *g = arg;
    uint64_t n;
    (void)what;
    if (read(fd, &n, sizeof n) < 0 && errno != EAGAIN)
        return;
    flush_parked(g);            /* the syncer made groups durable */
    if (atomic_load(&g->shared->stopping)) {
        stop_worker(g);
        return;
    }
    if (g->worker == 0 && atomic_exchange(&g->shared->reload_asked, 0))
        reload_on_signal(g);
    gw_settle(g);
    if (atomic_load(&g->shared->conns) >= state_of(g)->max_conns)
        enforce_cap(state_of(g));
}

/* The signal thread's callbacks (signals.h): they only ask. */
void http_ask_stop(void *shared)
{
    gw_shared *sh = shared;
    atomic_store(&sh->stopping, 1);
    for (int i = 0; i < sh->nworkers; i++)
        wake(sh->workers[i]);
}

void http_ask_reload(void *shared)
{
    gw_shared *sh = shared;
    atomic_store(&sh->reload_asked, 1);
    wake(sh->workers[0]);
}

void http_wake_all(gw *g)
{
    gw_shared *sh = g->shared;
    for (int i = 0; i < sh->nworkers; i++)
        if (sh->workers[i] != g)
            wake(sh->workers[i]);
}

/* Connection cap.  evhttp 2.1 says when a connection is accepted (the
 * bufferevent callback) but not when it ends, so accepts are counted
 * exactly and, near the cap, the real number of open sockets is read from
 * /proc/self/fd.  At the cap the listener pauses (further clients wait in
 * the kernel's backlog, holding none of our fds) and a timer resumes it
 * once connections have gone.  While at the cap every answer closes its
 * connection: keep-alive clients busy enough never to meet the idle
 * timeout held every place, and a new client (a health check too) waited
 * in the backlog for as long as they kept on; now they come back through
 * the backlog beside it. */
#define CAP_RECHECK_MS 100

static int open_sockets(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    char link[64];
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d))) {
        ssize_t len = readlinkat(dirfd(d), e->d_name, link, sizeof link - 1);
        if (len > 7 && strncmp(link, "socket:", 7) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void set_accepting(http_state *st, int on)
{
    struct evconnlistener *l = st->bound ? evhttp_bound_socket_get_listener(st->bound) : NULL;
    if (!l || st->accept_paused == !on)
        return;
    if (on)
        evconnlistener_enable(l);
    else
        evconnlistener_disable(l);
    st->accept_paused = !on;
}

/* Recounts; pauses or resumes accepting; rechecks later while paused (or
 * when the count could not be taken: EMFILE is likeliest at the cap). */
static void enforce_cap(http_state *st)
{
    struct timeval tv = {0, CAP_RECHECK_MS * 1000};
    int n = open_sockets();
    if (n >= 0) {
        /* the count is the process's: every worker's clients */
        atomic_store(&st->g->shared->conns, n - st->base_sockets);
        atomic_store(&st->g->shared->crowded, n - st->base_sockets >= st->max_conns);
        set_accepting(st, n - st->base_sockets < st->max_conns);
    }
    if (n < 0 || st->accept_paused)
        evtimer_add(st->cap_timer, &tv);
}

static void on_cap_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    enforce_cap(arg);
}

static struct bufferevent *new_connection(struct event_base *base, void *arg)
{
    http_state *st = arg;
    gw_shared *sh = st->g->shared;
    int conns = atomic_fetch_add(&sh->conns, 1) + 1;
    if (conns >= st->max_conns) {
        enforce_cap(st);
        if (st->accept_paused)
            http_wake_all(st->g);   /* the others stop accepting too */
    }
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        return NULL;
    /* out of memory to track it, the connection runs with the idle
     * timeout only (evhttp would make a bufferevent of its own anyway) */
    if (st->deadlines)
        deadlines_track(st->deadlines, bev);
    return bev;
}

/* A request not read whole within --request-timeout-s: answered 408 when
 * nothing of an earlier answer is still queued (written straight to the
 * socket: evhttp has no request to answer through), logged and counted
 * like any answer; the deadline module then closes the connection. */
static void on_deadline(void *ud, evutil_socket_t fd, int64_t waited_us, int can_answer)
{
    http_state *st = ud;
    gw *g = st->g;
    reply rp = {0};
    char body[256], head[512];
    int blen, hlen;
    snprintf(rp.id, sizeof rp.id, "%s%016llx", st->id_prefix, (unsigned long long)++st->request_seq);
    rp.method = "-";
    rp.start_us = util_mono_us() - waited_us;
    rp.resp.status = 408;
    blen = snprintf(body, sizeof body,
                    "{\"error_code\":\"TGW.0002\",\"error_msg\":\"Request not received in "
                    "%d s (--request-timeout-s): its headers and body must arrive within it\","
                    "\"request_id\":\"%s\"}", g->opt.request_timeout_s, rp.id);
    hlen = snprintf(head, sizeof head,
                    "HTTP/1.1 408 Request Timeout\r\nContent-Type: " JSON_TYPE "\r\n"
                    "Content-Length: %d\r\nConnection: close\r\nX-Request-Id: %s\r\n\r\n",
                    blen, rp.id);
    if (can_answer) {
        /* best effort: a client that sends this slowly may read slowly too */
        if (send(fd, head, (size_t)hlen, MSG_NOSIGNAL | MSG_DONTWAIT) == hlen)
            (void)!send(fd, body, (size_t)blen, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    access_log(st, &rp, can_answer ? (size_t)blen : 0);
    metrics_request(g->metrics, "-", 408, waited_us);
}

static int fd_port(evutil_socket_t fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int bound_port(struct evhttp_bound_socket *b)
{
    return fd_port(evhttp_bound_socket_get_fd(b));
}

/* A listening socket on host:port; with reuseport set, one of several
 * that share the port.  Returns the fd, or -1 with err filled. */
static evutil_socket_t listen_socket(const char *host, int port, int reuseport, int backlog,
                                     char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *ai = NULL;
    char service[16];
    evutil_socket_t fd = -1;
    int one = 1, rc;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof service, "%d", port);
    if ((rc = getaddrinfo(host[0] ? host : NULL, service, &hints, &ai)) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, gai_strerror(rc));
        return -1;
    }
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || (backlog && listen(fd, backlog) != 0)) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* The worker's listening socket.  Several workers each bind their own
 * SO_REUSEPORT socket to the port and the kernel spreads new connections
 * over them; worker 0 first binds a plain socket as a probe, so a port
 * that another process holds is an error here, never silently shared with
 * it (SO_REUSEPORT would allow that for the same user); with port 0 the
 * probe also picks the port.  One worker binds a plain socket. */
static int bind_listener(gw *g, http_state *st, const char *host, int port, char *err, size_t errlen)
{
    evutil_socket_t fd;
    int shared = g->shared->nworkers > 1;
    if (shared && g->worker == 0) {
        if ((fd = listen_socket(host, port, 0, 0, err, errlen)) < 0)
            return -1;
        port = fd_port(fd);
        close(fd);
    } else if (shared) {
        port = http_port(g->shared->workers[0]);
    }
    if ((fd = listen_socket(host, port, shared, SOMAXCONN, err, errlen)) < 0)
        return -1;
    if (!(st->bound = evhttp_accept_socket_with_handle(g->http, fd))) {
        close(fd);
        snprintf(err, errlen, "cannot listen on %s", g->opt.listen);
        return -1;
    }
    return 0;
}

int http_start(gw *g, char *err, size_t errlen)
{
    char host[256];
    int port;
    http_state *st = calloc(1, sizeof *st);
    if (!st || !(g->http = evhttp_new(g->base))) {
        snprintf(err, errlen, "out of memory");
        free(st);
        return -1;
    }
    st->wake_fd = -1;
    st->g = g;
    g->http_state = st;
    if (config_split_listen(g->opt.listen, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "--listen %s: expected ADDR:PORT", g->opt.listen);
        return -1;
    }
    if (util_random_hex(st->id_prefix, 8) != 0) {
        snprintf(err, errlen, "no randomness available");
        return -1;
    }
    evhttp_set_gencb(g->http, on_request, g);
    /* evhttp answers bodies past this itself (413, its own HTML body and
     * the connection closed; a Content-Length past it before reading any);
     * between body_limit and this the scripts answer the JSON 413.  evhttp
     * 2.1 has no hook between a request's headers and its body, so a body
     * in that band is read whole first: at 32x the limit, 16 uploads of
     * 31 MiB held 480 MB.  At 2x a connection holds at most what two
     * requests within the limit would. */
    evhttp_set_max_body_size(g->http, (ev_ssize_t)(g->opt.body_limit * 2 + 4096));
    evhttp_set_max_headers_size(g->http, 16 * 1024);
    evhttp_set_timeout(g->http, g->opt.timeout_s);
    /* every method reaches the router, which answers 404 APIGW.0101 for
     * those a path does not take (API.md §0.1).  Every bit: libevent 2.1
     * marks a method it does not know (FOO, a lowercase get) with a bit of
     * its own, (1 << 15), and answered those with its HTML 501 itself */
    evhttp_set_allowed_methods(g->http, 0xffff);
    if (bind_listener(g, st, host, port, err, errlen) != 0)
        return -1;
    st->port = bound_port(st->bound);
    st->max_conns = g->opt.max_connections;
    st->base_sockets = open_sockets();
    if (!(st->cap_timer = evtimer_new(g->base, on_cap_timer, st)) ||
        !(st->log = evbuffer_new()) ||
        !(st->log_ev = event_new(g->base, -1, 0, on_log_flush, st))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if ((st->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
        !(st->wake_ev = event_new(g->base, st->wake_fd, EV_READ | EV_PERSIST, on_wake, g)) ||
        event_add(st->wake_ev, NULL) != 0) {
        snprintf(err, errlen, "cannot create the wake-up eventfd: %s", strerror(errno));
        return -1;
    }
    if (g->opt.request_timeout_s > 0 &&
        !(st->deadlines = deadlines_new(g->base, g->opt.request_timeout_s, on_deadline, st))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    evhttp_set_bevcb(g->http, new_connection, st);
    st->waiting_tail = &st->waiting;
    st->parked_tail = &st->parked;
    if (!(st->commit_ev = event_new(g->base, -1, 0, on_commit, g))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    store_group_enable(g->store, schedule_commit, synced, g);
    if (!(st->pass_ev = event_new(g->base, -1, 0, on_pass_end, g))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    store_pass_reads(g->store, schedule_pass_end, g);
    return 0;
}

int http_port(const gw *g) { return state_of(g)->port; }

void http_ready(gw *g)
{
    state_of(g)->base_sockets = open_sockets();
}

void http_free(gw *g)
{
    http_state *st = state_of(g);
    if (g->http)
        evhttp_free(g->http);
    g->http = NULL;
    if (st) {
        deadlines_free(st->deadlines);  /* after evhttp_free: its connections are gone */
        if (st->commit_ev) event_free(st->commit_ev);
        if (st->drain_ev) event_free(st->drain_ev);
        /* answers never sent (their requests went with evhttp) */
        for (reply *lists[] = {st->waiting, st->parked}, **l = lists; l < lists + 2; l++)
            for (reply *rp = *l, *next; rp; rp = next) {
                next = rp->next;
                reply_free(rp);
            }
        if (st->pass_ev) {
            store_pass_end(g->store);
            event_free(st->pass_ev);
        }
        if (st->cap_timer) event_free(st->cap_timer);
        if (st->wake_ev) event_free(st->wake_ev);
        if (st->wake_fd >= 0) close(st->wake_fd);
        if (st->log) {
            log_flush(st);
            evbuffer_free(st->log);
        }
        if (st->log_ev) event_free(st->log_ev);
        free(st);
    }
    g->http_state = NULL;
}
