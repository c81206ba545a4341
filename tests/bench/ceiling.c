/* ceiling: the smallest libevent evhttp server, answering every request with
 * a fixed small JSON body (the size of a typical GET-tags answer) and the
 * same Content-Type as tagway.  Its throughput is the ceiling of the HTTP core
 * on this machine, against which bench.py puts every gateway figure.
 *
 *   ceiling PORT [THREADS]      PORT 0 picks a free port
 *
 * Prints "port N" on stdout once listening.  With THREADS > 1, each thread
 * runs its own event loop on its own SO_REUSEPORT socket bound to the same
 * port (the kernel spreads connections), for comparison with a multi-loop
 * gateway.  Runs until killed. */
#define _GNU_SOURCE
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char BODY[] =
    "{\"tags\":[{\"key\":\"key0\",\"value\":\"v0\"},{\"key\":\"key1\",\"value\":\"v3\"}]}";

static void answer(struct evhttp_request *req, void *arg)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    (void)arg;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json;charset=UTF-8");
    evbuffer_add_reference(out, BODY, sizeof BODY - 1, NULL, NULL);
    evhttp_send_reply(req, 200, "OK", NULL);
}

static int listen_on(int port)
{
    struct sockaddr_in sa;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *loop(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct event_base *base = event_base_new();
    struct evhttp *http = base ? evhttp_new(base) : NULL;
    if (!http || !evhttp_accept_socket_with_handle(http, fd)) {
        fprintf(stderr, "ceiling: cannot start an event loop\n");
        exit(1);
    }
    evhttp_set_gencb(http, answer, NULL);
    event_base_dispatch(base);
    return NULL;
}

int main(int argc, char **argv)
{
    int port, threads, fd;
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    pthread_t tid;
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: ceiling PORT [THREADS]\n");
        return 2;
    }
    port = atoi(argv[1]);
    threads = argc == 3 ? atoi(argv[2]) : 1;
    signal(SIGPIPE, SIG_IGN);
    if ((fd = listen_on(port)) < 0 || getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        perror("ceiling: listen");
        return 1;
    }
    port = ntohs(sa.sin_port);
    for (int i = 1; i < threads; i++) {
        int fdi = listen_on(port);
        if (fdi < 0 || pthread_create(&tid, NULL, loop, (void *)(intptr_t)fdi) != 0) {
            perror("ceiling: thread");
            return 1;
        }
    }
    printf("port %d\n", port);
    fflush(stdout);
    loop((void *)(intptr_t)fd);
    return 0;
}
