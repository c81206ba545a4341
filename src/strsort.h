#ifndef TAGWAY_STRSORT_H
#define TAGWAY_STRSORT_H

#include <stddef.h>

/* Sorts n C strings in place in byte order (strcmp's, bytes unsigned).
 * Returns 0, or -1 when its scratch memory (32 bytes a string) cannot be
 * had, leaving v as it was. */
int strsort(const char **v, size_t n);

#endif
