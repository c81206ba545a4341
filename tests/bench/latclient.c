/* latclient: a closed-loop HTTP/1.1 load client on libevent's evhttp that
 * records the latency of every request (CLOCK_MONOTONIC, from sending to the
 * complete answer) and prints exact percentiles.  bench.py uses it next to
 * wrk: wrk gives the throughput, but the latency distribution printed by the
 * Debian wrk 4.1.0 on this machine does not add up (its mean latency times
 * its request count exceeds the run's duration times the connections, by
 * up to 30x at one connection), so the latency figures come from here.
 *
 *   latclient PORT METHOD PATH BODY|- CONNS SECS
 *
 * Each of CONNS keep-alive connections sends its next request as soon as the
 * previous answer is complete.  Prints one JSON object on stdout. */
#define _GNU_SOURCE
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SAMPLES (16u << 20)

typedef struct conn conn;
struct conn {
    struct evhttp_connection *evcon;
    double t0;
};

static struct event_base *base;
static const char *method, *path, *body;
static int port;
static double deadline, started;
static float *samples;   /* ms */
static size_t nsamples;
static unsigned long long non2xx, errors;
static int active;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void send_next(conn *c);

static void done_cb(struct evhttp_request *req, void *arg)
{
    conn *c = arg;
    double t = now_ms();
    if (!req || evhttp_request_get_response_code(req) == 0) {
        errors++;
    } else {
        int st = evhttp_request_get_response_code(req);
        if (st < 200 || st > 399)
            non2xx++;
        if (nsamples < MAX_SAMPLES)
            samples[nsamples++] = (float)(t - c->t0);
    }
    if (t >= deadline) {
        if (--active == 0)
            event_base_loopbreak(base);
        return;
    }
    send_next(c);
}

static void send_next(conn *c)
{
    struct evhttp_request *req = evhttp_request_new(done_cb, c);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", "127.0.0.1");
    evhttp_add_header(h, "Connection", "keep-alive");
    if (body) {
        evhttp_add_header(h, "Content-Type", "application/json");
        evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    }
    c->t0 = now_ms();
    if (evhttp_make_request(c->evcon, req, strcmp(method, "POST") ? EVHTTP_REQ_GET : EVHTTP_REQ_POST,
                            path) != 0) {
        fprintf(stderr, "latclient: cannot send\n");
        exit(1);
    }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    size_t i = (size_t)(p / 100.0 * (double)nsamples);
    return nsamples ? samples[i >= nsamples ? nsamples - 1 : i] : 0;
}

int main(int argc, char **argv)
{
    int conns;
    double secs, elapsed, sum = 0;
    conn *cs;
    if (argc != 7) {
        fprintf(stderr, "usage: latclient PORT METHOD PATH BODY|- CONNS SECS\n");
        return 2;
    }
    port = atoi(argv[1]);
    method = argv[2];
    path = argv[3];
    body = strcmp(argv[4], "-") ? argv[4] : NULL;
    conns = atoi(argv[5]);
    secs = atof(argv[6]);
    if (!(samples = malloc(MAX_SAMPLES * sizeof *samples)) || !(base = event_base_new()) ||
        !(cs = calloc((size_t)conns, sizeof *cs)))
        return 1;
    started = now_ms();
    deadline = started + secs * 1e3;
    for (int i = 0; i < conns; i++) {
        cs[i].evcon = evhttp_connection_base_new(base, NULL, "127.0.0.1", (unsigned short)port);
        evhttp_connection_set_timeout(cs[i].evcon, 30);
        active++;
        send_next(&cs[i]);
    }
    event_base_dispatch(base);
    elapsed = (now_ms() - started) / 1e3;
    for (size_t i = 0; i < nsamples; i++)
        sum += samples[i];
    qsort(samples, nsamples, sizeof *samples, cmp_float);
    printf("{\"requests\":%zu,\"secs\":%.3f,\"rps\":%.1f,\"mean_ms\":%.4f,\"p50_ms\":%.4f,"
           "\"p90_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f,\"non2xx\":%llu,\"errors\":%llu}\n",
           nsamples, elapsed, (double)nsamples / elapsed, nsamples ? sum / (double)nsamples : 0,
           pct(50), pct(90), pct(99), nsamples ? samples[nsamples - 1] : 0, non2xx, errors);
    return 0;
}
