#!/usr/bin/env bash
# Runs build/tagway under valgrind (memcheck): `make valgrind` points the
# HTTP suite here.  Any memory error makes the process exit 99, which the
# tests notice (a stopped server must exit 0).
here=$(cd "$(dirname "$0")/.." && pwd)
# The binary links jemalloc: the synonym lets memcheck replace its malloc.
exec valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
     --soname-synonyms=somalloc='*jemalloc*' \
     --track-fds=no --log-file="${VALGRIND_LOG:-/tmp/tagway-valgrind.%p.log}" \
     "$here/build/tagway" "$@"
