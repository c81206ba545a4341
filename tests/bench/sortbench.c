/* sortbench: src/strsort.c against qsort with strcmp on 143,129 shuffled
 * values (the bench vocabulary's count of distinct values at 10^6 images)
 * of four shapes, best of 5 runs each; every run's orders are compared.
 *
 *   cc -O2 -Isrc -o build/sortbench tests/bench/sortbench.c src/strsort.c && build/sortbench
 */
#include "strsort.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { N = 143129, RUNS = 5 };

static int cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static double now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(void)
{
    static const char *shapes[] = {"v%d", "%d", "sha256:%08x%08x", "build-2026-12-06-%07d"};
    static char *vals[N];
    static const char *a[N], *b[N];

    srand(1);
    for (size_t f = 0; f < sizeof shapes / sizeof *shapes; f++) {
        double best_strsort = 1e9, best_qsort = 1e9;
        for (int i = 0; i < N; i++) {
            char buf[64];
            if (f == 2)
                snprintf(buf, sizeof buf, shapes[f], (unsigned)rand(), (unsigned)rand());
            else
                snprintf(buf, sizeof buf, shapes[f], i);
            if (!(vals[i] = strdup(buf))) {
                fprintf(stderr, "sortbench: out of memory\n");
                return 1;
            }
        }
        for (int i = N - 1; i > 0; i--) {
            int j = rand() % (i + 1);
            char *t = vals[i];
            vals[i] = vals[j];
            vals[j] = t;
        }
        for (int r = 0; r < RUNS; r++) {
            double t0, t1, t2;
            memcpy(a, vals, sizeof a);
            memcpy(b, vals, sizeof b);
            t0 = now_ms();
            if (strsort(a, N) != 0) {
                fprintf(stderr, "sortbench: strsort out of memory\n");
                return 1;
            }
            t1 = now_ms();
            qsort(b, N, sizeof *b, cmp);
            t2 = now_ms();
            best_strsort = t1 - t0 < best_strsort ? t1 - t0 : best_strsort;
            best_qsort = t2 - t1 < best_qsort ? t2 - t1 : best_qsort;
            for (int i = 0; i < N; i++)
                if (strcmp(a[i], b[i]) != 0) {
                    fprintf(stderr, "sortbench: orders differ at %d for %s\n", i, shapes[f]);
                    return 1;
                }
        }
        printf("%-22s strsort %6.1f ms   qsort %6.1f ms\n", shapes[f], best_strsort, best_qsort);
        for (int i = 0; i < N; i++)
            free(vals[i]);
    }
    return 0;
}
