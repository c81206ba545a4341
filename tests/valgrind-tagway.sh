#!/usr/bin/env bash
# Runs build/tagway under valgrind (memcheck): `make valgrind` points the
# HTTP suite here.  Any memory error makes the process exit 99, which the
# tests notice (a stopped server must exit 0).
here=$(cd "$(dirname "$0")/.." && pwd)
# The binary links jemalloc: the synonym lets memcheck replace its malloc.
# Valgrind runs one thread at a time; --fair-sched hands the lock round in
# turn, so the watchdog thread gets to stop a script looping on a worker
# (without it a slow VM saw the 300 ms budget kept after 4-12 s, with this
# binary and the one before it alike).
exec valgrind --quiet --fair-sched=yes --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
     --soname-synonyms=somalloc='*jemalloc*' \
     --track-fds=no --log-file="${VALGRIND_LOG:-/tmp/tagway-valgrind.%p.log}" \
     "$here/build/tagway" "$@"
