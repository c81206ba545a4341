/* main: the tagway command line: serve, credentials, load, check.  Parses
 * options (command line over configuration file over defaults), wires the
 * modules into one gw struct and runs the event loop.
 * Exit status: 0 success, 1 runtime failure, 2 bad usage. */
#include "auth.h"
#include "config.h"
#include "gw.h"
#include "http.h"
#include "jobs.h"
#include "lhost.h"
#include "metrics.h"
#include "loader.h"
#include "store.h"
#include "sha256.h"
#include "signals.h"
#include "tagidx.h"
#include "tagcache.h"
#include "util.h"
#include "watch.h"

#include <errno.h>
#include <malloc.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define MAX_ARGS 32

static const char serve_help[] =
    "tagway serve [options]      run the gateway\n"
    "  --config FILE             Lua configuration file (a table; command line wins)\n"
    "  --listen ADDR:PORT        default 127.0.0.1:8080 (:0 picks a free port)\n"
    "  --db PATH                 SQLite database, default ./data/tagway.db\n"
    "  --scripts DIR             route/handler/shape scripts, default ./lua\n"
    "  --policies DIR            tag policies, default ./policies\n"
    "  --obs-root DIR            local object store for imports, default ./data/obs\n"
    "  --auth on|off             off only on a loopback address, default on\n"
    "  --watch on|off            reload when script/policy/config files change, default off\n"
    "  --body-limit BYTES        larger request bodies get 413, default 1048576\n"
    "  --script-time-ms MS       time budget of one request's scripts, default 1000\n"
    "  --script-instructions N   also count VM instructions per request (costs ~12%), default 0 = off\n"
    "  --script-memory-mb MB     memory cap of a script generation, default 64\n"
    "  --timeout-s S             idle timeout (nothing sent or read), default 30\n"
    "  --request-timeout-s S     a request's headers and body must arrive within S\n"
    "                            of its first byte, default 60 (0: no limit)\n"
    "  --max-connections N       client connections held at once, default 4096\n"
    "  --workers N               event loops (threads), default: the cores available\n"
    "  --tags-cache N            GET tags answers kept in memory (0 = none), default 16384\n";
static const char credentials_help[] =
    "tagway credentials create --db PATH --project ID [--role member|admin]\n"
    "tagway credentials list   --db PATH\n"
    "tagway credentials revoke --db PATH (--token T | --token - | --ak AK)\n"
    "  ID is 32 lowercase hex characters; create prints token, ak and sk once;\n"
    "  --token - reads the token from stdin (out of sight of ps).\n";
static const char load_help[] =
    "tagway load --db PATH FILE.jsonl   bulk-register images with tags (all or nothing)\n"
    "  each line: {\"id\"?, \"project_id\", \"name\", \"status\"?, \"tags\": [{\"key\", \"value\"}]}\n";
static const char check_help[] =
    "tagway check [--config FILE] [--scripts DIR] [--policies DIR]\n"
    "  load every script and policy as serve would and run the policy examples\n";

#define SERVE_HINT "tagway serve [options]      run the gateway (tagway serve --help lists them)\n"

static void print_usage(FILE *out)
{
    fprintf(out, "usage:\n%s%s%s%s", serve_help, credentials_help, load_help, check_help);
}

/* A usage error: what was wrong, then the lines of the command's own
 * usage (all of them only when there is no command). */
static int usage_of(const char *help, const char *why)
{
    if (why)
        fprintf(stderr, "tagway: %s\n", why);
    if (help)
        fprintf(stderr, "usage:\n%s", help);
    else
        print_usage(stderr);
    return 2;
}

static int usage(const char *why)
{
    return usage_of(NULL, why);
}

typedef struct {
    const char *name[MAX_ARGS], *value[MAX_ARGS];
    size_t n;
    const char *positional[4];
    size_t npositional;
    int help;
    char why[160];        /* what parse_args refused */
    const char *dangling; /* the option it refused for want of a value */
} args;

/* --name value | --name=value | positional.  -1, with a->why, on an option
 * without its value or too many arguments. */
static int parse_args(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 0; i < argc; i++) {
        char *arg = argv[i], *eq;
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            a->help = 1;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            if (a->npositional == 4) {
                snprintf(a->why, sizeof a->why, "unexpected argument '%.100s'", arg);
                return -1;
            }
            a->positional[a->npositional++] = arg;
            continue;
        }
        if (a->n == MAX_ARGS) {
            snprintf(a->why, sizeof a->why, "more than %d options", MAX_ARGS);
            return -1;
        }
        if ((eq = strchr(arg, '='))) {
            *eq = '\0';
            a->value[a->n] = eq + 1;
        } else if (i + 1 < argc) {
            a->value[a->n] = argv[++i];
        } else {
            snprintf(a->why, sizeof a->why, "%.100s needs a value (--name VALUE or --name=VALUE)", arg);
            a->dangling = arg + 2;
            return -1;
        }
        a->name[a->n++] = arg + 2;
    }
    return 0;
}

/* Which options a command takes. */
typedef int (*option_known)(const char *name);

static int load_option(const char *name)
{
    return !strcmp(name, "db");
}

static int credentials_option(const char *name)
{
    static const char *const names[] = { "db", "project", "role", "token", "ak" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i]))
            return 1;
    return 0;
}

/* The usage error of a command whose arguments parse_args refused, or
 * which takes no positional argument and was given one.  An option it
 * does not know, last and so without a value ("--bogus"), is named as
 * unknown rather than as wanting a value. */
static int bad_args(const char *help, const char *cmd, const args *a, option_known known)
{
    char why[256];

    if (a->dangling && !known(a->dangling))
        snprintf(why, sizeof why, "%s: unknown option '%.100s'", cmd, a->dangling);
    else if (a->why[0])
        snprintf(why, sizeof why, "%s: %s", cmd, a->why);
    else
        snprintf(why, sizeof why, "%s: unexpected argument '%.100s'", cmd,
                 a->npositional ? a->positional[0] : "");
    return usage_of(help, why);
}

/* The usage error of the first option the command does not take, or 0. */
static int bad_option(const char *help, const char *cmd, const args *a, option_known known)
{
    char why[256];

    for (size_t i = 0; i < a->n; i++)
        if (!known(a->name[i])) {
            snprintf(why, sizeof why, "%s: unknown option '%.100s'", cmd, a->name[i]);
            return usage_of(help, why);
        }
    return 0;
}

/* A usage error of cmd, with its usage lines. */
static int cmd_usage(const char *help, const char *cmd, const char *why)
{
    char line[1280];

    snprintf(line, sizeof line, "%s: %s", cmd, why);
    return usage_of(help, line);
}

/* The last value given for an option: every command reads a repeated one
 * as `serve` applies its options, in order, so a wrapper that appends
 * `--role member` gets a member whatever came before. */
static const char *arg_get(const args *a, const char *name)
{
    for (size_t i = a->n; i-- > 0;)
        if (!strcmp(a->name[i], name))
            return a->value[i];
    return NULL;
}

/* Defaults, then the configuration file (read through snap, which the
 * scripts' build is given too), then the command line.  file_opt, when
 * not NULL, receives the options before the command line: what the file
 * set, which a reload compares its file's to. */
static int build_options(const args *a, gw_options *o, gw_options *file_opt, lhost_snap *snap,
                         const char *help, const char *cmd)
{
    char err[1024];
    const char *config = arg_get(a, "config");
    config_defaults(o);
    if (config && config_set(o, "config", config, err, sizeof err) != 0)
        return cmd_usage(help, cmd, err);
    if (lhost_load_config(o, snap, err, sizeof err) != 0) {
        fprintf(stderr, "tagway: configuration %s\n", err);
        return 1;
    }
    if (file_opt)
        *file_opt = *o;
    for (size_t i = 0; i < a->n; i++)
        if (config_set(o, a->name[i], a->value[i], err, sizeof err) != 0)
            return cmd_usage(help, cmd, err);
    return 0;
}

static int mkdirs_for(const char *file)
{
    char path[PATH_MAX];
    util_copy(path, sizeof path, file);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

static int open_store(const char *path, store **s)
{
    char err[1024];
    if (mkdirs_for(path) != 0) {
        fprintf(stderr, "tagway: cannot create the folder of %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (store_open(s, path, err, sizeof err) != 0) {
        fprintf(stderr, "tagway: %s\n", err);
        return -1;
    }
    return 0;
}

/* First start with no credentials: one admin credential for a new
 * project, printed once with a command to paste. */
static int bootstrap_credentials(gw *g)
{
    char project[33], token[65], ak[33], sk[65], err[512], where[300];
    const char *colon = strrchr(g->opt.listen, ':');
    if (!g->opt.auth || store_cred_count(g->store) != 0)
        return 0;
    if (util_random_hex(project, 16) != 0 ||
        auth_issue(g->store, project, "admin", token, ak, sk, err, sizeof err) != 0) {
        fprintf(stderr, "tagway: cannot create the first credential: %s\n", err);
        return -1;
    }
    /* written outside any request: committed (durable) on return, before
     * the credential is shown or any worker serves */
    store_pass_end(g->store);
    /* the address to paste: with --listen HOST:0 the port actually bound */
    snprintf(where, sizeof where, "%.*s:%d", colon ? (int)(colon - g->opt.listen) : 0,
             g->opt.listen, http_port(g));
    printf("First start: created project %s with an admin credential (shown once).\n"
           "{\"project_id\": \"%s\", \"role\": \"admin\", \"token\": \"%s\", \"ak\": \"%s\", \"sk\": \"%s\"}\n"
           "Try:\n"
           "  curl -s -X POST http://%s/v2/images -H 'X-Auth-Token: %s' \\\n"
           "       -H 'Content-Type: application/json' -d '{\"name\": \"demo\"}'\n"
           "  curl -s http://%s/v2/%s/images/tags -H 'X-Auth-Token: %s'\n",
           project, project, token, ak, sk, where, token, where, project, token);
    fflush(stdout);
    return 0;
}

/* jemalloc's control call when the binary is linked with it (the default
 * build), else NULL: a weak reference, so `make MALLOC=` still links. */
extern int mallctl(const char *, void *, size_t *, void *, size_t) __attribute__((weak));

/* Hands the pages freed by the start-up rebuild (the loader's arrays, the
 * rows read) back to the kernel now, not after the allocator's decay time,
 * which only runs when something allocates. */
static void return_free_memory(void)
{
    if (mallctl)
        mallctl("arena.4096.purge", NULL, NULL, NULL, 0); /* 4096: MALLCTL_ARENAS_ALL */
    else
        malloc_trim(0);
}

/* Makes room for --max-connections clients and the gateway's own files
 * (listeners, eventfds, SQLite's database, WAL and shm per connection):
 * the soft limit is often 1024, where accept() fails with EMFILE long
 * before a cap of 4096 is reached, and the cap's recount cannot even open
 * /proc/self/fd.  Raised up to the hard limit; where that is too low the
 * cap is lowered to fit, and said. */
static void fit_open_files(gw_options *opt)
{
    struct rlimit rl;
    rlim_t reserve = 64 + 8 * (rlim_t)opt->workers, want = (rlim_t)opt->max_connections + reserve;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur >= want)
        return;
    int fit = rl.rlim_cur > 2 * reserve ? (int)(rl.rlim_cur - reserve) : (int)(rl.rlim_cur / 2);
    fprintf(stderr, "{\"level\":\"warn\",\"msg\":\"--max-connections %d needs %llu open files and the "
                    "limit is %llu (ulimit -Hn): serving at most %d connections\"}\n",
            opt->max_connections, (unsigned long long)want, (unsigned long long)rl.rlim_cur, fit > 1 ? fit : 1);
    opt->max_connections = fit > 1 ? fit : 1;
}

/* jemalloc hands freed pages back only when something allocates (its
 * decay runs then): after a burst of large bodies, an idle gateway kept
 * 288 MB resident until traffic came back.  Its background thread purges
 * on a timer.  Turned on after the signals are blocked (signals_start), so
 * that thread, made then, inherits the mask and never takes a SIGTERM;
 * off (joined) at the end, so no thread outlives serve. */
static void purge_in_background(_Bool on)
{
    if (mallctl)
        mallctl("background_thread", NULL, NULL, &on, sizeof on);
}

static int load_index(gw *g)
{
    int64_t t0 = util_mono_us();
    tagidx_mem mem;

    if (!(g->index = tagidx_new()) || store_index_build(g->store, g->index) != 0) {
        fprintf(stderr, "tagway: cannot build the tag index: %s\n",
                g->index ? store_errmsg(g->store) : "out of memory");
        return -1;
    }
    store_attach_index(g->store, g->index);
    return_free_memory();
    purge_in_background(1);
    tagidx_memory_parts(g->index, &mem);
    fprintf(stderr, "{\"level\":\"info\",\"msg\":\"index built\",\"images\":%llu,\"tags\":%llu,"
                    "\"ms\":%lld,\"bytes\":%zu,\"names_bytes\":%zu,\"bitmaps_bytes\":%zu,"
                    "\"pools_bytes\":%zu,\"values_bytes\":%zu}\n",
            (unsigned long long)tagidx_images(g->index), (unsigned long long)tagidx_tags(g->index),
            (long long)((util_mono_us() - t0) / 1000), mem.total, mem.names,
            mem.bitmaps, mem.pools, mem.values);
    return 0;
}

/* Waiting for another worker's write lock is not the script's time: the
 * running call (in the current generation, or the retired one finishing
 * its request) gets it back. */
static void write_waited(void *ud, int64_t us)
{
    gw *g = ud;
    lhost_extend_budget(g->lua, us);
    lhost_extend_budget(g->retired, us);
}

/* One worker's own parts: SQLite connection, event loop, Lua generation.
 * The index, metrics and job runner are worker 0's, shared. */
static int worker_open(gw *g, lhost_snap *snap, char *err, size_t errlen)
{
    gw *first = g->shared->workers[0];
    if (g->worker > 0) {
        if (open_store(g->opt.db, &g->store) != 0)
            return -1;
        g->index = first->index;
        store_attach_index(g->store, g->index);
    }
    if (store_share(g->store, g->shared->writer, write_waited, g) != 0) {
        fprintf(stderr, "tagway: out of memory\n");
        return -1;
    }
    g->metrics = first->metrics;
    if (!(g->base = event_base_new())) {
        snprintf(err, errlen, "cannot create an event loop");
        return -1;
    }
    if (!(g->lua = lhost_new(g, g->generation, snap, err, errlen))) {
        fprintf(stderr, "tagway: scripts failed to load: %s\n", err);
        return -1;
    }
    return 0;
}

static void worker_close(gw *g)
{
    if (g->http)
        http_free(g);
    lhost_free(g->lua);
    lhost_free(g->retired);
    store_close(g->store);
    if (g->base)
        event_base_free(g->base);
}

static void *worker_run(void *arg)
{
    gw *g = arg;
    if (event_base_dispatch(g->base) < 0)
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"worker %d: event loop failed\"}\n", g->worker);
    return NULL;
}

/* Workers 1..n-1 on their own threads (which, like every thread of serve,
 * leave SIGTERM/SIGINT/SIGHUP to the signal thread). */
static int start_threads(gw *w, int n)
{
    for (int i = 1; i < n; i++) {
        if (pthread_create(&w[i].thread, NULL, worker_run, &w[i]) != 0)
            return -1;
        w[i].started = 1;
    }
    return 0;
}

static void stop_threads(gw *w, int n)
{
    atomic_store(&w[0].shared->stopping, 1);
    http_wake_all(&w[0]);
    for (int i = 1; i < n; i++)
        if (w[i].started)
            pthread_join(w[i].thread, NULL);
}

/* snap: what start reads of the configuration and scripts, from the
 * configuration file's first read to the last worker's build (the index
 * is built between the two); freed once every worker has its state. */
static int serve(int argc, char **argv, lhost_snap **snapp)
{
    gw_options opt, file_opt;
    gw_shared shared;
    gw *w = NULL, *g;
    args a;
    char err[4096];
    int rc, n = 0, claim = -1;
    signals *sigs = NULL;
    lhost_snap *snap = *snapp;
    if (parse_args(argc, argv, &a) != 0 || a.npositional)
        return bad_args(SERVE_HINT, "serve", &a, config_is_option);
    if (a.help)
        return fputs(serve_help, stdout), 0;
    if ((rc = build_options(&a, &opt, &file_opt, snap, SERVE_HINT, "serve")) != 0)
        return rc;
    if (!opt.auth && !config_is_loopback(opt.listen))
        return cmd_usage(SERVE_HINT, "serve", "--auth off is allowed only on a loopback address");
    signal(SIGPIPE, SIG_IGN);
    /* one write per log line: stderr is unbuffered by default, which
     * would cost a system call per character of every access-log line */
    setvbuf(stderr, NULL, _IOLBF, 1 << 16);
    /* before any other thread: they all inherit the block (signals.h) */
    if (!(sigs = signals_start(err, sizeof err))) {
        fprintf(stderr, "tagway: %s\n", err);
        return 1;
    }
    fit_open_files(&opt);
    n = opt.workers;
    if (gw_shared_init(&shared, n) != 0 || !(w = calloc((size_t)n, sizeof *w))) {
        fprintf(stderr, "tagway: out of memory\n");
        free(w);
        signals_free(sigs);
        return 1;
    }
    shared.file_opt = file_opt;
    for (int i = 0; i < n; i++) {
        gw_worker_init(&w[i], &shared, i, &opt);
        w[i].started_ms = util_now_ms();
    }
    g = &w[0];
    g->thread = pthread_self();
    rc = 1;
    if (mkdirs_for(g->opt.db) == 0 && (claim = store_claim(g->opt.db, err, sizeof err)) < 0) {
        fprintf(stderr, "tagway: %s\n", err);
        goto done;
    }
    if (open_store(g->opt.db, &g->store) != 0 || load_index(g) != 0 ||
        open_store(g->opt.db, &shared.writer) != 0)
        goto done;
    store_attach_index(shared.writer, g->index);
    if (g->opt.tags_cache && !(shared.tags_cache = tagcache_new((uint32_t)g->opt.tags_cache))) {
        fprintf(stderr, "tagway: out of memory\n");
        goto done;
    }
    store_attach_tags_cache(shared.writer, shared.tags_cache);
    if (store_writer_init(shared.writer, &shared.write_lock, &shared.index_lock, g->opt.db,
                          err, sizeof err) != 0) {
        fprintf(stderr, "tagway: %s\n", err);
        goto done;
    }
    if (!(g->metrics = metrics_new()))
        goto done;
    for (int i = 0; i < n; i++)
        if (worker_open(&w[i], snap, err, sizeof err) != 0)
            goto done;
    lhost_snap_free(snap);      /* every worker starts on the same bytes */
    *snapp = NULL;
    if (!(g->jobs = jobs_new(g))) {
        fprintf(stderr, "tagway: out of memory\n");
        goto done;
    }
    for (int i = 1; i < n; i++)
        w[i].jobs = g->jobs;
    jobs_kick(g->jobs);         /* resume jobs a crash left INIT or RUNNING */
    if (g->opt.watch && !(g->watch = watch_start(g, err, sizeof err))) {
        fprintf(stderr, "tagway: --watch: %s\n", err);
        goto done;
    }
    for (int i = 0; i < n; i++)
        if (http_start(&w[i], err, sizeof err) != 0) {
            fprintf(stderr, "tagway: %s\n", err);
            goto done;
        }
    for (int i = 0; i < n; i++)
        http_ready(&w[i]);
    if (bootstrap_credentials(g) != 0)
        goto done;
    {
        signals_cb cb = {http_ask_stop, http_ask_reload, &shared};
        signals_arm(sigs, &cb);
    }
    if (start_threads(w, n) != 0) {
        fprintf(stderr, "tagway: cannot start the worker threads\n");
        goto done;
    }
    /* the workers may log already: one line, whole (util_log_json) */
    util_log_json(g->opt.db, "{\"level\":\"info\",\"msg\":\"listening\",\"listen\":\"%s\",\"port\":%d,"
                             "\"auth\":%s,\"workers\":%d,\"generation\":1,\"db\":",
                  g->opt.listen, http_port(g), g->opt.auth ? "true" : "false", n);
    rc = event_base_dispatch(g->base) < 0 ? 1 : 0;
    fprintf(stderr, "{\"level\":\"info\",\"msg\":\"stopped\"}\n");
done:
    stop_threads(w, n);
    signals_detach(sigs);               /* its callbacks wake workers */
    store_syncer_stop(shared.writer);   /* it wakes workers: stop it before they go */
    jobs_free(g->jobs);
    watch_free(g->watch);
    for (int i = n - 1; i >= 0; i--)
        worker_close(&w[i]);
    store_close(shared.writer);     /* after the workers: their groups end here */
    tagcache_free(shared.tags_cache);
    metrics_free(g->metrics);
    tagidx_free(g->index);
    gw_shared_destroy(&shared);
    free(w);
    store_unclaim(claim); /* every connection to the file is closed */
    purge_in_background(0);
    signals_free(sigs);   /* last: the deadline covered everything above */
    return rc;
}

static int print_cred(void *ud, const store_cred *c)
{
    char created[32];
    (void)ud;
    util_iso8601_ms(c->created_ms, created);
    printf("{\"project_id\": \"%s\", \"role\": \"%s\", \"ak\": \"%s\", \"created_at\": \"%s\", "
           "\"revoked\": %s}\n",
           c->project, c->role, c->ak, created, c->revoked_ms ? "true" : "false");
    return 0;
}

static int cred_create(store *s, const args *a)
{
    const char *project = arg_get(a, "project"), *role = arg_get(a, "role");
    char token[65], ak[33], sk[65], err[512];
    if (!role)
        role = "member";
    if (!project || strlen(project) != 32 || !util_is_hex(project, 32))
        return usage_of(credentials_help, "credentials create: --project must be 32 lowercase hex characters");
    if (strcmp(role, "member") != 0 && strcmp(role, "admin") != 0)
        return usage_of(credentials_help, "credentials create: --role must be member or admin");
    if (auth_issue(s, project, role, token, ak, sk, err, sizeof err) != 0) {
        fprintf(stderr, "tagway: %s\n", err);
        return 1;
    }
    printf("{\"project_id\": \"%s\", \"role\": \"%s\", \"token\": \"%s\", \"ak\": \"%s\", \"sk\": \"%s\"}\n",
           project, role, token, ak, sk);
    return 0;
}

/* A token given as "-" is read from stdin, one line: a token in argv is
 * in every `ps` and /proc/PID/cmdline for as long as the command runs. */
static const char *token_from_stdin(char *buf, size_t cap)
{
    if (!fgets(buf, (int)cap, stdin))
        return NULL;
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf[0] ? buf : NULL;
}

static int cred_revoke(store *s, const args *a)
{
    const char *token = arg_get(a, "token"), *ak = arg_get(a, "ak");
    char hash[65], line[512];
    store_rc rc;
    if (!token == !ak)
        return usage_of(credentials_help, "credentials revoke: give exactly one of --token or --ak");
    if (token && !strcmp(token, "-") && !(token = token_from_stdin(line, sizeof line))) {
        fprintf(stderr, "tagway: credentials revoke --token -: no token on stdin\n");
        return 1;
    }
    if (token)
        sha256_hex(token, strlen(token), hash);
    rc = store_cred_revoke(s, token ? hash : NULL, ak);
    if (rc == STORE_NOT_FOUND) {
        fprintf(stderr, "tagway: no active credential with that %s\n", token ? "token" : "ak");
        return 1;
    }
    if (rc != STORE_OK) {
        fprintf(stderr, "tagway: %s\n", store_errmsg(s));
        return 1;
    }
    printf("{\"revoked\": true}\n");
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    lhost_snap *snap = lhost_snap_new();
    int rc;
    if (!snap) {
        fprintf(stderr, "tagway: out of memory\n");
        return 1;
    }
    rc = serve(argc, argv, &snap);
    lhost_snap_free(snap);
    return rc;
}

static int cmd_credentials(int argc, char **argv)
{
    args a;
    const char *db;
    store *s = NULL;
    int rc;
    if (argc < 1)
        return usage_of(credentials_help, "credentials: create, list or revoke?");
    if (parse_args(argc - 1, argv + 1, &a) != 0 || a.npositional)
        return bad_args(credentials_help, "credentials", &a, credentials_option);
    if (a.help)
        return fputs(credentials_help, stdout), 0;
    if ((rc = bad_option(credentials_help, "credentials", &a, credentials_option)) != 0)
        return rc;
    if (strcmp(argv[0], "create") && strcmp(argv[0], "list") && strcmp(argv[0], "revoke"))
        return usage_of(credentials_help, "credentials: create, list or revoke?");
    /* no default: a credential made in whatever ./data the shell is in
     * would be a silent success for a database no gateway serves */
    if (!(db = arg_get(&a, "db")))
        return usage_of(credentials_help, "credentials: --db PATH is required");
    /* only create may start a database (credentials before the first
     * start); list or revoke of a mistyped path made an empty one and
     * answered "no active credential", as if the key were revoked */
    if (strcmp(argv[0], "create") && access(db, F_OK) != 0) {
        fprintf(stderr, "tagway: no database at %s: %s\n", db, strerror(errno));
        return 1;
    }
    if (open_store(db, &s) != 0)
        return 1;
    if (!strcmp(argv[0], "create"))
        rc = cred_create(s, &a);
    else if (!strcmp(argv[0], "list"))
        rc = store_cred_each(s, print_cred, NULL) == 0 ? 0 : 1;
    else
        rc = cred_revoke(s, &a);
    store_close(s);
    return rc;
}

static int cmd_check(int argc, char **argv)
{
    gw g = {0};
    args a;
    char err[4096];
    size_t n;
    const lhost_file *files;
    lhost_snap *snap;
    int rc;
    if (parse_args(argc, argv, &a) != 0 || a.npositional)
        return bad_args(check_help, "check", &a, config_is_option);
    if (a.help)
        return fputs(check_help, stdout), 0;
    if (!(snap = lhost_snap_new())) {
        fprintf(stderr, "tagway check: out of memory\n");
        return 1;
    }
    if ((rc = build_options(&a, &g.opt, NULL, snap, check_help, "check")) != 0) {
        lhost_snap_free(snap);
        return rc;
    }
    g.lua = lhost_new(&g, 1, snap, err, sizeof err);
    lhost_snap_free(snap);
    if (!g.lua) {
        char *tb = strstr(err, "\nstack traceback:");
        if (tb)
            *tb = '\0';        /* file:line: what is the answer; the rest is noise */
        fprintf(stderr, "tagway check: %s\n", err);
        return 1;
    }
    files = lhost_files(g.lua, &n);
    for (size_t i = 0; i < n; i++)
        printf("ok  %s  %s\n", files[i].sha256, files[i].path);
    printf("%zu files loaded, policy examples passed\n", n);
    lhost_free(g.lua);
    return 0;
}

static int cmd_load(int argc, char **argv)
{
    args a;
    const char *db;
    int rc, existed;
    int parsed = parse_args(argc, argv, &a);
    if (parsed == 0 && a.help)
        return fputs(load_help, stdout), 0;
    if (parsed != 0)
        return bad_args(load_help, "load", &a, load_option);
    if ((rc = bad_option(load_help, "load", &a, load_option)) != 0)
        return rc;
    if (a.npositional != 1)
        return usage_of(load_help, "load: expected --db PATH FILE.jsonl");
    if (!(db = arg_get(&a, "db")))
        return usage_of(load_help, "load: expected --db PATH FILE.jsonl");
    existed = access(db, F_OK) == 0;
    if (mkdirs_for(db) != 0) {
        fprintf(stderr, "tagway: cannot create the folder of %s: %s\n", db, strerror(errno));
        return 1;
    }
    rc = loader_run(db, a.positional[0]);
    /* Said, not done: removing what looks new could take a file that only
     * looked so (a device, a link, a database another command just wrote
     * to), so the operator decides. */
    if (rc != 0 && !existed && access(db, F_OK) == 0)
        fprintf(stderr, "tagway load: %s did not exist before this run, which created it empty; "
                        "remove it if the path was a mistake\n", db);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(NULL);
    if (!strcmp(argv[1], "serve"))
        return cmd_serve(argc - 2, argv + 2);
    if (!strcmp(argv[1], "credentials"))
        return cmd_credentials(argc - 2, argv + 2);
    if (!strcmp(argv[1], "check"))
        return cmd_check(argc - 2, argv + 2);
    if (!strcmp(argv[1], "load"))
        return cmd_load(argc - 2, argv + 2);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "help"))
        return print_usage(stdout), 0;
    {
        char why[160];
        snprintf(why, sizeof why, "unknown command '%.100s' (serve, credentials, load, check, help)",
                 argv[1]);
        return usage(why);
    }
}
