# Herald build. Output only under build/ (release) and build/asan/ (ASan+UBSan).
#   make            build build/herald
#   make run        install deps, build, start a dev agent (DNS :8600, HTTP :8500)
#   make test       install deps, build, unit tests plain and under ASan/UBSan, integration tests
SHELL := /bin/bash

BUILD ?= build
SAN ?= 0
CC ?= cc

PKGS := libuv lmdb jansson raft ldns libunbound nettle
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
ifeq ($(SAN),1)
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1 -g $(SANFLAGS)
else
SANFLAGS :=
OPT := -O2 -g
endif
CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(OPT) -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
LDFLAGS := $(SANFLAGS)
# msgpack-c is gossip/'s alone (DESIGN.md 2.1); it is linked only where gossip/ is (the agent,
# gossip's and admin's tests, the gossip tools and fuzz target).
MSGPACK_CFLAGS := $(shell pkg-config --cflags msgpack 2>/dev/null)
MSGPACK_LIBS := $(shell pkg-config --libs msgpack 2>/dev/null)
GOSSIP_LIBS := $(MSGPACK_LIBS) -lm
CFLAGS += $(MSGPACK_CFLAGS)

# llhttp ships as C sources in Debian's node-llhttp (STYLE.md): compiled here, strict mode.
LLHTTP_SRC_DIR := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp
LLHTTP_OBJS := $(patsubst $(LLHTTP_SRC_DIR)/%.c,$(BUILD)/llhttp/%.o,$(wildcard $(LLHTTP_SRC_DIR)/*.c))

# Modules: folder -> archive. Order matters for static linking (dependents first).
MODULES := $(foreach m,admin/api admin/http resolver consensus rpc zone gossip base,$(if $(wildcard $(m)/*.c),$(m)))
mod_lib = $(BUILD)/lib$(subst /,_,$(1)).a
mod_srcs = $(wildcard $(1)/*.c)
mod_objs = $(patsubst %.c,$(BUILD)/%.o,$(call mod_srcs,$(1)))
LIBS := $(foreach m,$(MODULES),$(call mod_lib,$(m)))

# admin/ (the composition root) is an archive too, so unit tests can link it; main.o is the
# only object outside it.
MAIN_OBJ := $(BUILD)/admin/main.o
ADMIN_LIB := $(BUILD)/libadmin.a
ADMIN_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(filter-out admin/main.c,$(wildcard admin/*.c)))

UNIT_SRCS := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
UNIT_BINS := $(patsubst %.c,$(BUILD)/%,$(UNIT_SRCS))

.PHONY: all deps run test unit unit-asan integration check-deps fmt fmt-check clean fuzz FORCE

all: $(BUILD)/herald

deps:
	@bash scripts/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(if $(findstring admin/http,$<),-I$(LLHTTP_INC) -DLLHTTP_STRICT_MODE=1) -MMD -MP -c $< -o $@

$(BUILD)/llhttp/%.o: $(LLHTTP_SRC_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -g $(SANFLAGS) -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) -c $< -o $@

define MODULE_RULE
$(call mod_lib,$(1)): $(call mod_objs,$(1)) $(if $(findstring admin/http,$(1)),$(LLHTTP_OBJS))
	@mkdir -p $$(dir $$@)
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach m,$(MODULES),$(eval $(call MODULE_RULE,$(m))))

$(ADMIN_LIB): $(ADMIN_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/herald: $(MAIN_OBJ) $(ADMIN_LIB) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $(MAIN_OBJ) $(ADMIN_LIB) $(LIBS) $(LDLIBS) $(GOSSIP_LIBS)

# Unit tests: tests/unit/<module>/test_x.c links its module's archive and those below it.
DEPS_base := base
DEPS_zone := zone base
DEPS_rpc := rpc base
DEPS_consensus := consensus rpc zone base
DEPS_resolver := resolver zone base
DEPS_gossip := gossip base
DEPS_admin/http := admin/http base
DEPS_admin/api := admin/api admin/http consensus rpc zone base
DEPS_admin := admin $(MODULES)
libs_for = $(foreach m,$(DEPS_$(1)),$(if $(filter admin,$(m)),$(ADMIN_LIB),$(call mod_lib,$(m))))
mod_of = $(patsubst %/,%,$(dir $(1)))
.SECONDEXPANSION:
$(BUILD)/tests/unit/%: tests/unit/%.c $$(call libs_for,$$(call mod_of,$$*))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -MMD -MP -MT $@ -MF $@.d $(LDFLAGS) -o $@ $< $(call libs_for,$(call mod_of,$*)) $(LDLIBS) \
	  $(if $(filter gossip,$(DEPS_$(call mod_of,$*))),$(GOSSIP_LIBS)) $(shell pkg-config --libs cmocka)

# Test tools: programs the integration tests and benchmarks run (tests/tools/x.c links gossip and
# base): gossip_node (one engine as a process), gossip_sim (many engines on a simulated network).
$(BUILD)/tests/tools/%: tests/tools/%.c $(call mod_lib,gossip) $(call mod_lib,base)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -MT $@ -MF $@.d $(LDFLAGS) -o $@ $< $(call mod_lib,gossip) \
	  $(call mod_lib,base) $(LDLIBS) $(GOSSIP_LIBS)

unit: $(UNIT_BINS)
	@set -e; n=0; for t in $(UNIT_BINS); do echo "== $$t"; $$t; n=$$((n+1)); done; \
	  echo "unit ($(BUILD)): $$n test binaries passed"

unit-asan:
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=1 unit build/asan/herald

ifneq ($(BUILD),build/asan)
build/asan/herald build/asan/tests/tools/gossip_node build/asan/tests/tools/gossip_sim: FORCE
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=1 $@
endif

# Integration tests drive the ASan/UBSan build of the real binary (HERALD_BIN overrides).
integration: build/asan/herald build/asan/tests/tools/gossip_node build/asan/tests/tools/gossip_sim \
	  $(BUILD)/tests/unit/gossip/test_wire
	cd tests/integration && /usr/bin/python3 -m pytest -q -p no:cacheprovider .

# The module arrows (DESIGN.md 2.1) on every source and header, the unit tests, and the linked
# archives (nm): scripts/check_deps.py says which rules.
check-deps: $(LIBS) $(ADMIN_LIB)
	@/usr/bin/python3 scripts/check_deps.py --build $(BUILD)

fmt:
	@clang-format -i $$(git ls-files '*.c' '*.h')

fmt-check:
	@out=$$(for f in $$(git ls-files '*.c' '*.h'); do clang-format --dry-run -Werror $$f 2>&1 >/dev/null || echo $$f; done); \
	  if [ -n "$$out" ]; then echo "fmt-check: not formatted (run make fmt):"; echo "$$out"; exit 1; fi

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory check-deps fmt-check
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory unit-asan
	@$(MAKE) --no-print-directory integration

run: deps
	@$(MAKE) --no-print-directory all
	./$(BUILD)/herald agent -dev

# Fuzzing, not part of make test: libFuzzer (clang) with ASan/UBSan. `make fuzz` runs every
# target of FUZZ_TARGETS for FUZZ_SECONDS each (FUZZ_TARGETS=http_lifecycle picks one):
#   dns_query       the DNS query path of zone/, seeded with every query of rfc-vectors/dns
#                   (written by the vectors test at run time);
#   http_lifecycle  the life of HTTP requests: admin/http and admin/api on a single-node
#                   consensus, scripts of reads, writes, loop runs and client disconnects.
#   server_port     the server port's handshake and RPC framing (rpc/port.c, call.c) with
#                   consensus's methods, on a one-server cluster, one connection per input.
#   raft_wire       the Raft message decoder (consensus/raft_wire.c): a stream after the
#                   handshake, seeded with the messages of tests/unit/consensus/test_raft_wire.
#   gossip_wire     gossip/'s decoders (memberlist packets and streams, serf messages, tags,
#                   LZW, AES-GCM), seeded with the serf captures of tests/unit/gossip/test_wire.
#   zone_cmd        the zone commands Raft carries (transactions included): decoded, then
#                   applied as entries to one store kept across inputs, seeded with the
#                   transactions of tests/unit/zone/test_txn.
FUZZ_BUILD := build/fuzz
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= dns_query http_lifecycle server_port raft_wire gossip_wire zone_cmd
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -O1 -g -fno-omit-frame-pointer \
	-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -I. \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(MSGPACK_CFLAGS)
FUZZ_OBJS := $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(wildcard zone/*.c base/*.c))
FUZZ_HTTP_OBJS := $(patsubst %.c,$(FUZZ_BUILD)/%.o,\
	$(wildcard admin/api/*.c admin/http/*.c consensus/*.c rpc/*.c zone/*.c base/*.c)) \
	$(patsubst $(LLHTTP_SRC_DIR)/%.c,$(FUZZ_BUILD)/llhttp/%.o,$(wildcard $(LLHTTP_SRC_DIR)/*.c))

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) $(if $(findstring admin/http,$<),-I$(LLHTTP_INC) -DLLHTTP_STRICT_MODE=1) \
	  -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/llhttp/%.o: $(LLHTTP_SRC_DIR)/%.c
	@mkdir -p $(dir $@)
	clang -std=c11 -O1 -g -fsanitize=fuzzer-no-link,address,undefined -DLLHTTP_STRICT_MODE=1 \
	  -I$(LLHTTP_INC) -c $< -o $@

$(FUZZ_BUILD)/dns_query: tests/fuzz/dns_query.c $(FUZZ_OBJS)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -Itests/unit -o $@ $^ $(LDLIBS)

$(FUZZ_BUILD)/zone_cmd: tests/fuzz/zone_cmd.c $(FUZZ_OBJS)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

$(FUZZ_BUILD)/http_lifecycle: tests/fuzz/http_lifecycle.c $(FUZZ_HTTP_OBJS)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

FUZZ_CONS_OBJS := $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(wildcard consensus/*.c rpc/*.c zone/*.c base/*.c))
$(FUZZ_BUILD)/server_port: tests/fuzz/server_port.c $(FUZZ_CONS_OBJS)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

$(FUZZ_BUILD)/raft_wire: tests/fuzz/raft_wire.c $(FUZZ_BUILD)/consensus/raft_wire.o
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

FUZZ_GOSSIP_OBJS := $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(wildcard gossip/*.c base/*.c))
$(FUZZ_BUILD)/gossip_wire: tests/fuzz/gossip_wire.c $(FUZZ_GOSSIP_OBJS)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS) $(GOSSIP_LIBS)

FUZZ_RUN = -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	-artifact_prefix=$(FUZZ_BUILD)/$(1)-

fuzz: $(foreach t,$(FUZZ_TARGETS),$(FUZZ_BUILD)/$(t)) \
	$(if $(filter dns_query,$(FUZZ_TARGETS)),build/tests/unit/zone/test_dns_vectors) \
	$(if $(filter raft_wire,$(FUZZ_TARGETS)),build/tests/unit/consensus/test_raft_wire) \
	$(if $(filter gossip_wire,$(FUZZ_TARGETS)),build/tests/unit/gossip/test_wire) \
	$(if $(filter zone_cmd,$(FUZZ_TARGETS)),build/tests/unit/zone/test_txn)
ifneq ($(filter dns_query,$(FUZZ_TARGETS)),)
	@mkdir -p $(FUZZ_BUILD)/corpus
	HERALD_VECTOR_SEEDS=$(FUZZ_BUILD)/corpus build/tests/unit/zone/test_dns_vectors >/dev/null
	$(FUZZ_BUILD)/dns_query $(call FUZZ_RUN,dns_query) -max_len=65535 $(FUZZ_BUILD)/corpus
endif
ifneq ($(filter http_lifecycle,$(FUZZ_TARGETS)),)
	@mkdir -p $(FUZZ_BUILD)/corpus-http_lifecycle
	$(FUZZ_BUILD)/http_lifecycle $(call FUZZ_RUN,http_lifecycle) -max_len=256 \
	  $(FUZZ_BUILD)/corpus-http_lifecycle
endif
ifneq ($(filter server_port,$(FUZZ_TARGETS)),)
	@mkdir -p $(FUZZ_BUILD)/corpus-server_port
	$(FUZZ_BUILD)/server_port $(call FUZZ_RUN,server_port) -max_len=70000 \
	  $(FUZZ_BUILD)/corpus-server_port
endif
ifneq ($(filter raft_wire,$(FUZZ_TARGETS)),)
	@mkdir -p $(FUZZ_BUILD)/corpus-raft_wire
	HERALD_WIRE_SEEDS=$(FUZZ_BUILD)/corpus-raft_wire build/tests/unit/consensus/test_raft_wire >/dev/null
	$(FUZZ_BUILD)/raft_wire $(call FUZZ_RUN,raft_wire) -max_len=65536 $(FUZZ_BUILD)/corpus-raft_wire
endif
ifneq ($(filter gossip_wire,$(FUZZ_TARGETS)),)
	@mkdir -p $(FUZZ_BUILD)/corpus-gossip_wire
	HERALD_GOSSIP_SEEDS=$(FUZZ_BUILD)/corpus-gossip_wire build/tests/unit/gossip/test_wire >/dev/null
	$(FUZZ_BUILD)/gossip_wire $(call FUZZ_RUN,gossip_wire) -max_len=4096 \
	  $(FUZZ_BUILD)/corpus-gossip_wire
endif
ifneq ($(filter zone_cmd,$(FUZZ_TARGETS)),)
	@mkdir -p $(FUZZ_BUILD)/corpus-zone_cmd
	HERALD_ZONE_CMD_SEEDS=$(FUZZ_BUILD)/corpus-zone_cmd build/tests/unit/zone/test_txn >/dev/null
	$(FUZZ_BUILD)/zone_cmd $(call FUZZ_RUN,zone_cmd) -max_len=4096 $(FUZZ_BUILD)/corpus-zone_cmd
endif

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
