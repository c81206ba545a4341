/* util: small helpers shared by every module: wall-clock milliseconds,
 * ISO-8601 formatting, random bytes as hex or a UUID, bounded string copy,
 * reading a whole file, UTF-8 validation.  No state. */
#ifndef TAGWAY_UTIL_H
#define TAGWAY_UTIL_H
#include <stddef.h>
#include <stdint.h>

int64_t util_now_ms(void);
int64_t util_mono_us(void);
/* "2024-11-06T06:21:08.769Z" into out (at least 25 bytes). */
void util_iso8601_ms(int64_t ms, char out[32]);
/* n random bytes from getrandom(2), 0 or -1. */
int util_random(void *buf, size_t n);
/* 2n lowercase hex characters of randomness plus NUL. */
int util_random_hex(char *out, size_t nbytes);
/* A random (version 4) UUID, lowercase, 36 characters plus NUL. */
int util_uuid(char out[37]);
/* Reads a whole regular file into a malloc'd buffer (NUL-terminated); NULL
 * on error with errno set (EISDIR for a folder, EAGAIN for a file cut
 * short while it was read). */
char *util_read_file(const char *path, size_t *len);
/* Copies at most cap-1 bytes and terminates; returns 0, or -1 if truncated
 * (then cut before a UTF-8 sequence the bytes would split). */
int util_copy(char *dst, size_t cap, const char *src);
/* 1 if the n bytes at s are UTF-8 as Lua's utf8.len takes it (no overlong
 * forms, surrogates or code points past U+10FFFF). */
int util_utf8_valid(const char *s, size_t n);
/* 1 if s is n lowercase hex characters. */
int util_is_hex(const char *s, size_t n);

/* Writes s as a JSON string literal (quoted, escaped) to f. */
#include <stdio.h>
void util_fjson_string(FILE *f, const char *s);
/* One log line on stderr: head (printf format, ending in a key's colon),
 * value as a JSON string, then "}\n".  Other threads' stderr output cannot
 * land inside it: stderr is line-buffered, and a line written in pieces
 * would share the buffer with theirs. */
void util_log_json(const char *value, const char *head, ...) __attribute__((format(printf, 2, 3)));

#endif
