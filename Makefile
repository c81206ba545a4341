# tagway: build, run, test, bench.  `make run` and `make test` are the two
# commands a fresh Debian machine needs; both install missing packages first.

BUILD    ?= build
CC       ?= cc
PKGS     := lua5.4 lua5.4-cjson libevent sqlite3
OPT      ?= -O2
SANITIZE ?=
CFLAGS   := $(OPT) -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $(SANITIZE) \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS  := $(SANITIZE)
# jemalloc, Redis's allocator: 10-15% less CPU per request here than glibc's
# malloc (GET tags, batch create; the raw evhttp ceiling does not change).
# Sanitizer builds keep the allocator their runtime replaces (MALLOC=).
MALLOC   ?= -ljemalloc
# Lua, lua-cjson, SQLite and libevent, where requests spend their time, are
# linked from the static archives their -dev packages ship: calls into and
# within them then skip the PLT and the shared objects' interposable entry
# points. wrk -t2 -c64 at 10^5 images, 3 runs each: durable batch create
# 15,455 -> 17,124 req/s (+11%), typical query 15,450 -> 17,727 (+15%).
# Sanitizer builds link the shared objects (STATIC=).
STATIC   ?= -Wl,-Bstatic
LDLIBS   := $(STATIC) $(shell pkg-config --libs $(PKGS) 2>/dev/null) -Wl,-Bdynamic \
            -lroaring -lpthread -lm -ldl $(MALLOC)
PYTHON   := /usr/bin/python3

LIB_SRC  := $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/%)

.PHONY: all deps binaries run test unit http asan bench demo check clean install fuzz valgrind

# Packages are installed first and the build runs in a second make, because
# CFLAGS and LDLIBS come from pkg-config when this file is parsed: on a fresh
# machine that parse happens before the packages exist. The second make
# parses again with them present, and `make -j` cannot start compiling
# before apt-get has finished.
all: deps
	@$(MAKE) --no-print-directory binaries

deps:
	@bash .ci/deps.sh

REPLAY   := $(BUILD)/replay_fuzz_request $(BUILD)/replay_fuzz_aksk

binaries: $(BUILD)/tagway $(UNIT_BIN) $(REPLAY)

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libtagway.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/tagway: $(BUILD)/obj/main.o $(BUILD)/libtagway.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test_%: tests/unit/test_%.c $(BUILD)/libtagway.a tests/unit/unit.h
	$(CC) $(CFLAGS) -Isrc -o $@ $< $(BUILD)/libtagway.a $(LDLIBS)

# Fails the index's allocations one at a time: the test wraps the allocator
# (and mmap, which the bulk loader's chunks come from).
$(BUILD)/test_tagidx_oom: tests/unit/test_tagidx_oom.c $(BUILD)/libtagway.a tests/unit/unit.h
	$(CC) $(CFLAGS) -Isrc -o $@ $< $(BUILD)/libtagway.a $(LDLIBS) \
	  -Wl,--wrap=malloc,--wrap=realloc,--wrap=calloc,--wrap=mmap \
	  -Wl,--wrap=roaring_bitmap_create,--wrap=roaring_bitmap_of_ptr,--wrap=roaring_bitmap_and,--wrap=roaring_bitmap_copy \
	  -Wl,--wrap=roaring_bitmap_portable_deserialize_safe

# The fuzz harnesses without libFuzzer: tests/http/test_fuzz_regressions.py
# replays the kept inputs through them (tests/fuzz/replay.c).
$(BUILD)/replay_%: tests/fuzz/%.c tests/fuzz/replay.c $(BUILD)/libtagway.a
	$(CC) $(CFLAGS) -Isrc -DTAGWAY_ROOT='"$(CURDIR)"' -o $@ $< tests/fuzz/replay.c \
	  $(BUILD)/libtagway.a $(LDLIBS)

# make run LISTEN=127.0.0.1:9090 DB=/srv/tags.db ARGS="--watch on"
LISTEN = 127.0.0.1:8080
DB     = ./data/tagway.db
ARGS   =
run: all
	@mkdir -p $(dir $(DB))
	$(BUILD)/tagway serve --listen $(LISTEN) --db $(DB) $(ARGS)

unit: all
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; ./$$t; done

http: all
	TAGWAY_BIN=$(abspath $(BUILD)/tagway) $(PYTHON) -m pytest -q -p no:cacheprovider tests/http

# One after the other: the HTTP suite's timing checks assume it has the cores.
test: all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory http

asan:
	@TAGWAY_DEPS_EXTRA=asan bash .ci/deps.sh
	$(MAKE) BUILD=build-asan CC=clang OPT=-O1 MALLOC= STATIC= \
	  SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  ASAN_OPTIONS=detect_leaks=1 test

bench: all
	$(PYTHON) tests/bench/bench.py --bin $(abspath $(BUILD)/tagway)
	$(PYTHON) tests/bench/reload_bench.py --bin $(abspath $(BUILD)/tagway) | tee $(BUILD)/bench-reload.md

# The HTTP suite against the binary under valgrind memcheck (slow: minutes).
valgrind: all
	@TAGWAY_DEPS_EXTRA=valgrind bash .ci/deps.sh
	rm -f /tmp/tagway-valgrind.*.log
	TAGWAY_BIN=$(abspath tests/valgrind-tagway.sh) $(PYTHON) -m pytest -q -p no:cacheprovider \
	  tests/http/test_tags_batch.py tests/http/test_tags_single.py tests/http/test_images.py \
	  tests/http/test_lifecycle.py tests/http/test_ops.py tests/http/test_conventions.py \
	  tests/http/test_throttle.py tests/http/test_deadline.py
	@if cat /tmp/tagway-valgrind.*.log 2>/dev/null | grep -q .; then cat /tmp/tagway-valgrind.*.log; exit 1; fi
	@echo "valgrind: no memory errors"

demo: all
	TAGWAY_BIN=$(abspath $(BUILD)/tagway) bash examples/demo.sh

fuzz: all
	@TAGWAY_DEPS_EXTRA=asan bash .ci/deps.sh
	bash tests/fuzz/run.sh

check: all
	$(BUILD)/tagway check

install: all
	install -D -m 0755 $(BUILD)/tagway $(DESTDIR)/usr/local/bin/tagway

clean:
	rm -rf build build-asan
