/* util: clock, formatting, randomness and file helpers used by every module.
 * Uses only libc and getrandom(2). */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void util_iso8601_ms(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(ms % 1000) % 1000u);
}

int util_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

int util_random_hex(char *out, size_t nbytes)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char raw[64];
    if (nbytes > sizeof raw || util_random(raw, nbytes) != 0)
        return -1;
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = digits[raw[i] >> 4];
        out[2 * i + 1] = digits[raw[i] & 15];
    }
    out[2 * nbytes] = '\0';
    return 0;
}

int util_uuid(char out[37])
{
    char hex[33];
    if (util_random_hex(hex, 16) != 0)
        return -1;
    hex[12] = '4';                                  /* version 4 */
    int nibble = hex[16] <= '9' ? hex[16] - '0' : hex[16] - 'a' + 10;
    hex[16] = "89ab"[nibble & 3];                   /* RFC 4122 variant */
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
             hex + 16, hex + 20);
    return 0;
}

char *util_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int err;
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0)
        goto fail;
    if (!S_ISREG(st.st_mode)) {     /* a folder "has" a size too: no "out of memory" */
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        goto fail;
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        errno = ENOMEM;
        goto fail;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EAGAIN;     /* cut short while being read: "try again" */
            goto fail;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    if (len)
        *len = got;
    close(fd);
    return buf;
fail:
    err = errno;
    free(buf);
    close(fd);
    errno = err;
    return NULL;
}

int util_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (cap == 0)
        return -1;
    if (n >= cap) {
        size_t k = cap - 1;
        /* never inside a UTF-8 sequence: the text may reach a JSON answer
         * (a job's 256-byte reason echoing a CJK object name did) */
        for (int back = 0; back < 3 && k > 0 && ((unsigned char)src[k] & 0xc0) == 0x80; back++)
            k--;                /* a sequence has at most 3 after its lead */
        memcpy(dst, src, k);
        dst[k] = '\0';
        return -1;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

int util_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        uint32_t c = *p, min;
        size_t more;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) more = 1, c &= 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef) more = 2, c &= 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4) more = 3, c &= 0x07, min = 0x10000;
        else return 0;
        if ((size_t)(end - p) <= more)
            return 0;
        for (size_t i = 1; i <= more; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            c = c << 6 | (p[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return 0;
        p += more + 1;
    }
    return 1;
}

int util_is_hex(const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[i] == '\0';
}

void util_log_json(const char *value, const char *head, ...)
{
    va_list ap;

    flockfile(stderr);
    va_start(ap, head);
    vfprintf(stderr, head, ap);
    va_end(ap);
    util_fjson_string(stderr, value);
    fputs("}\n", stderr);
    funlockfile(stderr);
}

void util_fjson_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}
