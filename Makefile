# Kraken in C - build, run and test.
#
#   make run     build everything and start the server in the foreground (port 12355;
#                PORT=13000 for another, RUN_ARGS="-kraken NAME VALUE ..." for any option)
#   make test    build and run every test (C units, sanitizer build, Erlang, black-box)
#   make bench   load benchmarks (see bench/README.md); make bench-cluster: the cluster's alone
#   make install PREFIX=/usr/local DESTDIR=   install the engine, the OTP application,
#                bin/kraken, docs and examples (contrib/) under DESTDIR/PREFIX
#   make test-redis  the Redis-port tests (REDIS_TARGETS="redis kraken" also runs them
#                    against a real redis-server, which checks the tests themselves)
#
# Missing build tools are installed with apt-get on Debian (see `deps`).

# build/deps.mk installs what is missing and records where erl_interface is;
# make reads it, and when it had to be made, restarts with it (GNU make's
# remaking of included makefiles), so a fresh machine needs no second run.
# Goals that build nothing (clean, help) do not read it, so they never run
# the installer (GNU make remakes an included makefile even under -n).
NO_DEPS_GOALS := clean help
ifneq ($(filter-out $(NO_DEPS_GOALS),$(or $(MAKECMDGOALS),all)),)
include build/deps.mk
endif
CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror
CPPFLAGS_K := -Iinclude -Ic_src -I$(ERL_INTERFACE)/include
LDLIBS_K   := -L$(ERL_INTERFACE)/lib -lei -levent -lpthread
SAN     := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

CORE_SRC := c_src/protocol.c c_src/resp.c c_src/glob.c c_src/table.c c_src/subset.c c_src/topic.c \
            c_src/entry.c c_src/queue.c c_src/retain.c c_src/router.c c_src/router_pattern.c \
            c_src/stats.c c_src/engine.c c_src/conn.c c_src/proto_kraken.c c_src/proto_kraken_link.c c_src/proto_redis.c \
            c_src/redis_pubsub.c c_src/redis_deliver.c c_src/budget.c c_src/server.c c_src/conn_io.c c_src/loop.c c_src/clock.c c_src/config.c c_src/log.c \
            c_src/control_decode.c c_src/metrics.c c_src/health.c c_src/http.c \
            c_src/cluster_hash.c c_src/cluster_pin.c c_src/cluster_ack.c c_src/cluster.c c_src/cluster_upstream.c c_src/cluster_pattern.c c_src/cluster_pattern_lost.c c_src/cluster_shard.c c_src/cluster_link.c \
            c_src/cluster_move.c c_src/cluster_pub.c c_src/cluster_retro.c c_src/cluster_retro_answer.c c_src/cluster_relay.c \
            c_src/cluster_served.c c_src/cluster_entered.c c_src/cluster_fresh.c c_src/cluster_missing.c c_src/cluster_subref.c \
            c_src/cluster_metrics.c c_src/cluster_origin.c \
            c_src/proto_link.c
ENGINE_SRC := $(CORE_SRC) c_src/control.c c_src/control_call.c c_src/control_log.c c_src/cluster_control.c c_src/main.c
HEADERS := $(wildcard c_src/*.h include/kraken/*.h)
UNIT_TESTS := test_protocol test_router test_proto_kraken test_proto_redis test_resp test_control test_metrics \
              test_cluster_hash test_cluster_ack test_cluster_entered test_cluster_pin test_table test_redis_frames \
              test_proto_link
APT_PACKAGES := build-essential pkg-config erlang-nox erlang-dev erlang-eunit \
                erlang-common-test erlang-tools rebar3 libevent-dev libcmocka-dev \
                python3-pymemcache valgrind clang libclang-rt-14-dev \
                redis-server redis-tools python3-redis prometheus nats-server \
                iproute2 nftables

.PHONY: all help deps engine erlang run test test-c test-erlang test-blackbox test-docs test-hostile test-fault \
        test-valgrind soak bench bench-cluster clean fuzz fuzz-smoke fuzz-build test-glob-diff test-resp-diff test-redis test-control test-http test-http-opt \
        install test-install test-partition test-hostile-opt test-control-opt test-c-and-redis \
        test-original test-lint

all: engine erlang

# Installs what the build needs when it is missing (Debian; needs root or sudo).
deps: build/deps.mk
build/deps.mk: Makefile
	@mkdir -p build
	@missing=0; \
	for f in /usr/include/event2/event.h /usr/include/cmocka.h /usr/bin/rebar3 /usr/bin/erlc \
	         /usr/lib/python3/dist-packages/pymemcache /usr/bin/valgrind /usr/bin/clang \
	         /usr/bin/pkg-config /usr/bin/redis-server /usr/bin/redis-cli \
	         /usr/lib/python3/dist-packages/redis /usr/bin/promtool /usr/sbin/nats-server \
	         /usr/sbin/ip /usr/sbin/nft; do \
	  [ -e $$f ] || { echo "missing: $$f"; missing=1; }; \
	done; \
	ls -d /usr/lib/erlang/lib/erl_interface-*/include/ei.h >/dev/null 2>&1 || missing=1; \
	if [ $$missing = 1 ]; then \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y $(APT_PACKAGES); \
	fi; \
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y nodejs npm; \
	fi
	@echo "ERL_INTERFACE := $$(ls -d /usr/lib/erlang/lib/erl_interface-* | sort -V | tail -1)" > $@

engine: priv/kraken_engine priv/kraken_engine_asan priv/kraken_options.eterm

# The engine's option table (names, ranges, defaults) as Erlang terms:
# kraken_config validates the configuration against it.
priv/kraken_options.eterm: priv/kraken_engine
	priv/kraken_engine --options > $@.tmp && mv $@.tmp $@

priv/kraken_engine: $(ENGINE_SRC) $(HEADERS)
	@mkdir -p priv
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_K) -o $@ $(ENGINE_SRC) $(LDLIBS_K)

# The sanitizer build's objects are compiled once and shared by the engine and
# every unit test (gcc).
SAN_OBJ := $(patsubst c_src/%.c,build/san/%.o,$(CORE_SRC))
build/san/%.o: c_src/%.c $(HEADERS)
	@mkdir -p build/san
	$(CC) $(WARN) $(SAN) $(CPPFLAGS_K) -c -o $@ $<

# clang's sanitizer build of the same objects, shared by the unit tests' clang
# build and every fuzzing harness: instrumented for the fuzzer's coverage too
# (fuzzer-no-link: the hooks are the sanitizer runtime's no-ops when libFuzzer
# is not linked in), so the 49 objects are compiled once, not twice.
FUZZ_OBJ_FLAGS := -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
                  -fno-sanitize-recover=all
FUZZ_OBJ := $(patsubst c_src/%.c,build/fuzz-obj/%.o,$(CORE_SRC))
build/fuzz-obj/%.o: c_src/%.c $(HEADERS)
	@mkdir -p build/fuzz-obj
	clang $(WARN) $(FUZZ_OBJ_FLAGS) $(CPPFLAGS_K) -c -o $@ $<

priv/kraken_engine_asan: $(patsubst c_src/%.c,build/san/%.o,$(ENGINE_SRC))
	@mkdir -p priv
	$(CC) $(SAN) -o $@ $^ $(LDLIBS_K)

# make test builds it once, first; its suites' own `all' (each suite runs in
# a sub-make) then skips the rebar3 run (ERLANG_BUILT=yes, about a second each).
erlang:
	$(if $(ERLANG_BUILT),@true,rebar3 compile)

# PORT chooses tcp_server_port; RUN_ARGS adds bin/kraken run arguments
# (-kraken NAME VALUE, -config FILE, -noshell). erl also reads ERL_FLAGS
# from the environment.
run: all
	bin/kraken run $(if $(PORT),-kraken tcp_server_port $(PORT)) $(RUN_ARGS)

# ---- installation ----
#
# PREFIX/bin/kraken                      the script; it finds the code in PREFIX/lib/kraken
# PREFIX/lib/kraken/ebin                 the compiled OTP application
# PREFIX/lib/kraken/priv                 the engine and its option table
# PREFIX/lib/systemd/system/kraken.service   contrib/kraken.service, paths under PREFIX
# PREFIX/share/doc/kraken                README.md, docs/*.md, examples/ (config, unit, logrotate)
PREFIX  ?= /usr/local
DESTDIR ?=
INSTALL ?= install
KRAKEN_LIB := $(DESTDIR)$(PREFIX)/lib/kraken
KRAKEN_DOC := $(DESTDIR)$(PREFIX)/share/doc/kraken

install: priv/kraken_engine priv/kraken_options.eterm erlang
	$(INSTALL) -d $(DESTDIR)$(PREFIX)/bin $(KRAKEN_LIB)/ebin $(KRAKEN_LIB)/priv \
	  $(DESTDIR)$(PREFIX)/lib/systemd/system $(KRAKEN_DOC)/examples
	$(INSTALL) -m 755 bin/kraken $(DESTDIR)$(PREFIX)/bin/kraken
	$(INSTALL) -m 644 _build/default/lib/kraken/ebin/*.app _build/default/lib/kraken/ebin/*.beam \
	  $(KRAKEN_LIB)/ebin/
	$(INSTALL) -m 755 priv/kraken_engine $(KRAKEN_LIB)/priv/
	$(INSTALL) -m 644 priv/kraken_options.eterm $(KRAKEN_LIB)/priv/
	sed 's|/usr/local|$(PREFIX)|g' contrib/kraken.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/kraken.service
	chmod 644 $(DESTDIR)$(PREFIX)/lib/systemd/system/kraken.service
	$(INSTALL) -m 644 README.md docs/*.md $(KRAKEN_DOC)/
	$(INSTALL) -m 644 contrib/kraken.config contrib/kraken.service contrib/kraken.logrotate \
	  $(KRAKEN_DOC)/examples/

help:
	@echo "make [all]        build the engine (priv/) and the OTP application (_build/)"
	@echo "make run          build, then bin/kraken run in the foreground; PORT=13000 and"
	@echo "                  RUN_ARGS='-kraken NAME VALUE ...' choose options"
	@echo "make test         every test suite (about 8 minutes on 2 CPUs)"
	@echo "make test-lint | test-c | test-erlang | test-blackbox | test-docs | test-hostile"
	@echo "     | test-fault | test-valgrind | test-partition | fuzz-smoke   one suite"
	@echo "make bench | bench-cluster | soak | fuzz   longer runs, not in make test"
	@echo "make test-original KRAKEN_ORIGINAL=DIR   a proxy in front of the original Kraken"
	@echo "                  (built by test/build_original.sh; not in make test)"
	@echo "make install PREFIX=/usr/local DESTDIR=   install (bin, lib/kraken, systemd unit, docs)"
	@echo "make test-install  install into a temporary DESTDIR, start it as the unit does"
	@echo "make clean        remove what the build made"

# ---- tests ----

# The modules' include graph has no cycles (docs/architecture.md, "Layers");
# reads the sources only, well under a second.
test-lint:
	/usr/bin/python3 test/lint/include_cycles.py

TEST_HEADERS := test/c/test_util.h test/c/test_conn.h test/c/test_cluster_net.h
build/test/%: test/c/%.c $(SAN_OBJ) $(HEADERS) $(TEST_HEADERS)
	@mkdir -p build/test
	$(CC) $(WARN) $(SAN) $(CPPFLAGS_K) -o $@ $< $(SAN_OBJ) $(LDLIBS_K) -lcmocka

# The same unit tests built with clang too: its UBSan flags things gcc's does
# not (e.g. an offset applied to a null pointer).
build/test-clang/%: test/c/%.c $(FUZZ_OBJ) $(HEADERS) $(TEST_HEADERS)
	@mkdir -p build/test-clang
	clang $(WARN) $(SAN) $(CPPFLAGS_K) -o $@ $< $(FUZZ_OBJ) $(LDLIBS_K) -lcmocka

test-c: $(addprefix build/test/,$(UNIT_TESTS)) $(addprefix build/test-clang/,$(UNIT_TESTS))
	@rc=0; for t in $^; do echo "== $$t"; $$t || rc=1; done; exit $$rc

# Every EUnit module but the cluster's with the optimised engine; then the
# black-box module again, and the cluster modules (kraken_cluster*), with the
# sanitizer build.  The cluster runs on the optimised engine in
# test-partition; kraken_ops_tests (the script and configuration, the
# longest module) runs once: the engine build changes nothing there.
comma := ,
ERL_TESTS := $(basename $(notdir $(wildcard test/*_tests.erl)))
ERL_CLUSTER_TESTS := $(filter kraken_cluster%,$(ERL_TESTS))
test-erlang: all
	rebar3 eunit --module=$(subst $() ,$(comma),$(filter-out $(ERL_CLUSTER_TESTS),$(ERL_TESTS)))
	KRAKEN_ENGINE=$(CURDIR)/priv/kraken_engine_asan rebar3 eunit \
	  --module=$(subst $() ,$(comma),kraken_blackbox_tests $(ERL_CLUSTER_TESTS))

test-blackbox: all
	/usr/bin/python3 test/pymemcache_test.py

# The Node.js clients of docs/clients.md and of the Redis-port tests
# (memcached, redis v4), from package-lock.json, into the project's own
# node_modules/ (npm ci writes node_modules/.package-lock.json).
node_modules/.package-lock.json: package.json package-lock.json
	npm ci

# docs/protocol.md's byte-exact examples and docs/clients.md's code, run
# against a real server.
test-docs: all node_modules/.package-lock.json
	/usr/bin/python3 test/protocol_doc_test.py
	/usr/bin/python3 test/clients_doc_test.py

# The HTTP endpoint (/metrics through promtool, /readyz with a stopped
# engine, paging), against the sanitizer build (the optimised one serves
# the same code; `make test-http-opt` runs it too).
test-http: all
	KRAKEN_ENGINE=$(CURDIR)/priv/kraken_engine_asan /usr/bin/python3 test/http_test.py

test-http-opt: all
	/usr/bin/python3 test/http_test.py

# Hostile clients, limits, exhaustion and engine kill, against the sanitizer
# build (test-hostile-opt: the optimised one, which the other suites run).
test-hostile: all
	KRAKEN_ENGINE=$(CURDIR)/priv/kraken_engine_asan /usr/bin/python3 test/hostile_test.py

test-hostile-opt: all
	/usr/bin/python3 test/hostile_test.py

# The Redis protocol port (issue 10), with clients nobody here wrote, against
# each of REDIS_TARGETS: `redis` (a real redis-server the tests start, which
# proves the tests) and `kraken` (bin/kraken with redis_port).  The
# differential test, redis-py and redis-cli, node-redis; for kraken also the
# cross-protocol and hostile tests.  `make test` runs them against kraken
# (the differential test compares with a real redis-server either way).
REDIS_TARGETS ?= kraken
test-redis: node_modules/.package-lock.json $(if $(filter kraken,$(REDIS_TARGETS)),all)
	@rc=0; for t in $(REDIS_TARGETS); do \
	  echo "== Redis port tests against $$t"; \
	  REDIS_TARGET=$$t /usr/bin/python3 test/redis_diff_test.py || rc=1; \
	  REDIS_TARGET=$$t /usr/bin/python3 test/redis_clients_test.py || rc=1; \
	  REDIS_TARGET=$$t node --test test/redis_node_test.js || rc=1; \
	  REDIS_TARGET=$$t /usr/bin/python3 test/redis_hostile_test.py || rc=1; \
	  if [ $$t = kraken ]; then /usr/bin/python3 test/redis_cross_test.py || rc=1; fi; \
	done; exit $$rc

# Minutes of random clients with a delivery checker (not part of make test).
SOAK_SECONDS ?= 120
soak: all
	/usr/bin/python3 test/soak.py --duration $(SOAK_SECONDS)

# A failed allocation ends one client's request, not the engine.
build/failmalloc.so: test/fault/failmalloc.c
	@mkdir -p build
	$(CC) $(WARN) -shared -fPIC -O2 -o $@ $< -ldl

test-fault: engine build/failmalloc.so
	/usr/bin/python3 test/fault_test.py

# The control channel driven as the Erlang node drives it (bad packets,
# stdio that is not a pipe, failures at start-up, log rate), against the
# sanitizer build (test-control-opt: the optimised one).
test-control: engine build/failmalloc.so
	KRAKEN_ENGINE=$(CURDIR)/priv/kraken_engine_asan /usr/bin/python3 test/control_test.py

test-control-opt: engine build/failmalloc.so
	/usr/bin/python3 test/control_test.py

# make install into a temporary DESTDIR; the installed copy started with the
# systemd unit's ExecStart line (free port, pid file in a temporary
# directory), checked, stopped with ExecStop.
test-install: engine erlang
	/usr/bin/python3 test/install_test.py

# Network partitions: three nodes in network namespaces, nftables rules
# cutting a proxy from a core, the two cores from each other, the proxy
# from both (test/partition_test.py; needs root, `ip` and `nft`: without
# them it fails, saying so).  Against the optimised build (the cluster's
# EUnit modules run the sanitizer build; KRAKEN_ENGINE=priv/kraken_engine_asan
# for this one too); about 70 s.
test-partition: all
	/usr/bin/python3 test/partition_test.py

# A proxy in front of the original Erlang Kraken as a static upstream
# (test/original_upstream_test.py; docs/cluster.md, "Tests").  Not in `make
# test`: the original is not in this repository.  Build it first with
# test/build_original.sh SRC DIR, then KRAKEN_ORIGINAL=DIR; without it this
# target fails, saying the test was not run.  About 15 s.
test-original: all
	@if [ -z "$(KRAKEN_ORIGINAL)" ]; then \
	  echo "test-original: NOT RUN: give KRAKEN_ORIGINAL=DIR, a built original Kraken" \
	       "(test/build_original.sh SRC DIR)"; exit 1; fi
	KRAKEN_ORIGINAL="$(KRAKEN_ORIGINAL)" /usr/bin/python3 test/original_upstream_test.py

test-valgrind: engine
	/usr/bin/python3 test/valgrind_test.py

# glob_match() against redis-server's PSUBSCRIBE matching (needs
# redis-server, which make deps installs).
build/glob_match: test/diff/glob_match.c c_src/glob.c c_src/glob.h
	@mkdir -p build
	$(CC) $(WARN) $(SAN) -Ic_src -o $@ test/diff/glob_match.c c_src/glob.c

test-glob-diff: build/glob_match
	/usr/bin/python3 test/glob_diff.py

# resp_parse() against redis-server's replies to the same byte streams
# (needs redis-server, which make deps installs).
build/resp_replay: test/diff/resp_replay.c c_src/resp.c c_src/resp.h
	@mkdir -p build
	$(CC) $(WARN) $(SAN) -Ic_src -o $@ test/diff/resp_replay.c c_src/resp.c -levent -lm

test-resp-diff: build/resp_replay
	/usr/bin/python3 test/resp_diff.py

# libFuzzer harnesses: both parsers, whole connection byte streams (both
# protocols), control packets from the Erlang node, and what an upstream
# link reads from a core or a static upstream (fuzz_link).
FUZZERS := fuzz_protocol fuzz_session fuzz_resp fuzz_control fuzz_link
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_SECONDS ?= 10
.SECONDARY: $(SAN_OBJ) $(FUZZ_OBJ)

# The engine's objects (clang's sanitizer build, FUZZ_OBJ above) are
# instrumented for coverage (fuzzer-no-link) once and shared by every harness.
build/fuzz/%: test/fuzz/%.c $(FUZZ_OBJ) $(HEADERS) $(TEST_HEADERS) test/fuzz/fuzz_checks.h
	@mkdir -p build/fuzz
	clang $(WARN) $(FUZZ_FLAGS) $(CPPFLAGS_K) -o $@ $< $(FUZZ_OBJ) $(LDLIBS_K)

# Runs each harness from its checked-in corpus for FUZZ_SECONDS; new inputs
# go to build/fuzz/corpus-*, crashes to build/fuzz/ (add them to the corpus).
# Two harnesses at a time (each is one process: two CPUs, half the wait);
# FUZZ_PARALLEL=1: one at a time.
FUZZ_PARALLEL ?= 2
fuzz-smoke: $(addprefix build/fuzz/,$(FUZZERS))
	@run() { \
	  mkdir -p build/fuzz/corpus-$$1; \
	  build/fuzz/$$1 -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=0 \
	    -artifact_prefix=build/fuzz/ build/fuzz/corpus-$$1 test/fuzz/corpus/$${1#fuzz_} \
	    2>build/fuzz/$$1.log || { echo "== $$1 FAILED"; tail -50 build/fuzz/$$1.log; return 1; }; \
	  echo "== $$1 for $(FUZZ_SECONDS) s: $$(grep -E '^Done' build/fuzz/$$1.log)"; \
	}; \
	set -- $(FUZZERS); rc=0; \
	while [ $$# -gt 0 ]; do \
	  run $$1 & a=$$!; b=; \
	  if [ $$# -gt 1 ] && [ $(FUZZ_PARALLEL) -gt 1 ]; then run $$2 & b=$$!; shift; fi; \
	  wait $$a || rc=1; if [ -n "$$b" ]; then wait $$b || rc=1; fi; \
	  shift; \
	done; exit $$rc

fuzz:
	$(MAKE) fuzz-smoke FUZZ_SECONDS=600

# What needs the CPUs runs beside the Redis-port suites (mostly waiting on
# quiet lines, at normal priority, their output printed when they end): the
# unit tests' and fuzzers' build and the unit tests (compiling and running
# under the sanitizers, on both CPUs, niced so that they yield), then the
# glob differential test and the fuzzers' smoke run, two harnesses at a
# time, niced (the Redis-port suites need little CPU and get it first; the
# harnesses take the rest: FUZZ_SECONDS is wall-clock time, and one at a
# time made this phase wait for the fuzzers, not for the Redis-port suites,
# once there were five).  The RESP differential
# test (0.4 s windows) follows the Redis-port suites.  Each part says how
# long it took.  The other suites run one at a time: several measure deadlines
# (failure detection within 3 s, readiness within 2 s) that a loaded machine
# could miss.
fuzz-build: $(addprefix build/fuzz/,$(FUZZERS))

BESIDE_REDIS := test-glob-diff fuzz-smoke
test-c-and-redis: all node_modules/.package-lock.json build/glob_match build/resp_replay
	@mkdir -p build; s=$$(date +%s); \
	{ $(MAKE) --no-print-directory test-redis; rc=$$?; \
	  echo "== test-redis: $$(( $$(date +%s) - s )) s"; s1=$$(date +%s); \
	  $(MAKE) --no-print-directory test-resp-diff || rc=1; \
	  echo "== test-resp-diff: $$(( $$(date +%s) - s1 )) s"; echo "rc=$$rc"; } >build/test-redis.log 2>&1 & \
	nice -n 10 $(MAKE) --no-print-directory -j2 --output-sync=target test-c fuzz-build; c=$$?; \
	echo "== test-c, fuzz-build: $$(( $$(date +%s) - s )) s"; \
	for t in $(BESIDE_REDIS); do [ $$c = 0 ] || break; s1=$$(date +%s); \
	  nice -n 10 $(MAKE) --no-print-directory $$t FUZZ_PARALLEL=2 || c=1; \
	  echo "== $$t: $$(( $$(date +%s) - s1 )) s"; done; \
	wait; grep -v '^rc=' build/test-redis.log; \
	[ $$c = 0 ] && tail -1 build/test-redis.log | grep -qx 'rc=0'

# Every suite, one after the other (each says how long it took: make test
# must stay under 10 minutes); test-lint (the include graph) first.  The
# build first, on both CPUs.
TEST_SUITES := test-lint test-c-and-redis test-erlang test-blackbox test-docs \
               test-hostile test-http test-fault test-control test-install test-partition \
               test-valgrind
test:
	@$(MAKE) --no-print-directory -j2 all
	@t0=$$(date +%s); for t in $(TEST_SUITES); do s=$$(date +%s); \
	  $(MAKE) --no-print-directory $$t ERLANG_BUILT=yes || { echo "make test: $$t FAILED"; exit 1; }; \
	  echo "== $$t: $$(( $$(date +%s) - s )) s"; done; \
	echo "make test: all suites passed in $$(( $$(date +%s) - t0 )) s"

BENCH_SRC := $(wildcard bench/*.c)
bench/kraken_bench: $(BENCH_SRC) bench/kb.h
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $(BENCH_SRC) -lm

# All four workloads, three times each, against a server it starts (fresh
# for every run) and against its null responder; prints every run and the
# medians (about 4 minutes).  Then (--peers) the push comparison: latency and
# fanout against Kraken's Redis port, redis-server, nats-server, Kraken push
# and polling clients and the RESP and Kraken null responders, three times
# each, one table (about 5 minutes more), then bench-cluster (below; about
# 2 minutes more).  BENCH_ARGS adds options
# (bench/README.md), e.g. BENCH_ARGS="--reps 1" for one quick run.
BENCH_REPS ?= 3
bench: all bench/kraken_bench
	bench/kraken_bench --null --peers --reps $(BENCH_REPS) $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-cluster

# The cluster (docs/cluster.md, plan item 6): one core and two proxies started
# by bin/kraken start; push subscribers on the core, then behind the proxies,
# saturated and at half the direct saturation rate (about 2 minutes).
bench-cluster: all bench/kraken_bench
	bench/kraken_bench --cluster-only --workloads latency --reps $(BENCH_REPS) $(BENCH_ARGS)

clean:
	rm -rf build/test build/test-clang build/fuzz build/*.so build/glob_match build/resp_replay \
	       priv/kraken_engine priv/kraken_engine_asan priv/kraken_options.eterm _build node_modules
