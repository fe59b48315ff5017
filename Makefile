# vmci: one build for everything.
#
#   make deps    install the Debian packages of packages.txt (only the missing ones)
#   make         build/vmci and the guest agents
#   make test    unit, VM and end-to-end tests
#   make asan    the same tests built with AddressSanitizer + UBSan
#   make check   check-layers, fmt-check, lint, test, then asan: what CI runs
#   make check-layers  the layer rule of docs/design.md on every #include
#   make bench   benchmarks (never part of make test)
#   make fmt     clang-format every source file
#   make fmt-check  fail when a file is not clang-format clean
#   make lint    cppcheck
#
# Everything is built under $(BUILD); `make asan` uses build-asan.

BUILD      ?= build
CC         ?= cc
PKG_CONFIG ?= pkg-config
CFLAGS     ?= -O2 -g
SAN        ?=

LIB_PKGS  := libarchive jansson libcrypto yaml-0.1 libcurl libgit2 sqlite3 libmicrohttpd
TEST_PKGS := cmocka

# Debian packages for building, testing and running vmci: the first field
# of every line of packages.txt that is not a comment. The same table is
# compiled into vmci (common/packages.c), for vmci doctor and error messages.
DEB_PACKAGES := $(shell awk 'NF && $$1 !~ /^\043/ { print $$1 }' packages.txt)

WARNINGS := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wvla
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SAN_FLAGS := $(if $(SAN),$(SANITIZE))

# pkg-config is asked only when building, so `make deps` works on a bare machine.
pkg_cflags = $(shell $(PKG_CONFIG) --cflags $(1) 2>/dev/null)
pkg_libs   = $(shell $(PKG_CONFIG) --libs $(1) 2>/dev/null)

ALL_CFLAGS := -std=gnu11 -D_GNU_SOURCE -I. $(WARNINGS) $(SAN_FLAGS) $(CFLAGS) -MMD -MP \
	$(call pkg_cflags,$(LIB_PKGS))
LIBS := $(call pkg_libs,$(LIB_PKGS)) -lpthread
TEST_LIBS := $(call pkg_libs,$(TEST_PKGS))

# ---- sources ---------------------------------------------------------

LIB_DIRS := common vmcore images pipelines runner runner/store runner/service runner/http
GEN_SRCS := $(BUILD)/gen/packages_txt.c
LIB_SRCS := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c)) agent/protocol.c $(GEN_SRCS)
CLI_SRCS := $(wildcard cli/*.c)
AGENT_SRCS := $(wildcard agent/*.c)
TEST_SUPPORT_SRCS := $(wildcard tests/support/*.c)
UNIT_TESTS := $(patsubst %.c,$(BUILD)/%,$(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort))
VM_TESTS := $(patsubst %.c,$(BUILD)/%,$(sort $(wildcard tests/vm/test_*.c)))
# Programs the tests run (stand-ins for what a test cannot make real on demand).
TEST_HELPERS := $(patsubst %.c,$(BUILD)/%,$(sort $(wildcard tests/helpers/*.c)))
BENCHES := $(patsubst %.c,$(BUILD)/%,$(sort $(wildcard bench/bench_*.c)))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIB := $(BUILD)/libvmci.a
TEST_SUPPORT := $(BUILD)/libvmcitest.a

# Guest agents: static, never sanitized (they run inside the guest).
AGENT_CFLAGS := -std=gnu11 -D_GNU_SOURCE -I. $(WARNINGS) -Os -g0 -static
AGENT_x86_64 := $(BUILD)/agent/vmci-agent-x86_64
AGENT_aarch64 := $(BUILD)/agent/vmci-agent-aarch64
CC_x86_64 := $(if $(filter x86_64,$(shell uname -m)),$(CC),x86_64-linux-gnu-gcc)
CC_aarch64 := $(if $(filter aarch64,$(shell uname -m)),$(CC),aarch64-linux-gnu-gcc)
AGENTS := $(AGENT_x86_64) $(if $(shell command -v $(CC_aarch64) 2>/dev/null),$(AGENT_aarch64))

.PHONY: all deps test asan check check-layers bench fmt fmt-check lint clean fuzz check-libs
all: check-libs $(BUILD)/vmci $(AGENTS)

check-libs:
	@for p in $(LIB_PKGS) $(TEST_PKGS); do \
		$(PKG_CONFIG) --exists $$p || { echo "missing library '$$p': run 'make deps'" >&2; exit 1; }; \
	done

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	if [ -z "$$missing" ]; then echo "all Debian packages present"; \
	else echo "installing:$$missing"; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing || exit 1; \
	fi; \
	if [ "$$(dpkg --print-architecture)" != arm64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then \
		echo "adding arm64 to dpkg's architectures (the busybox-aarch64 image takes its kernel and busybox from there)"; \
		$$SUDO dpkg --add-architecture arm64 && $$SUDO apt-get update -q; \
	fi

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# packages.txt as the C string vmci_packages_txt, for common/packages.c.
$(BUILD)/gen/packages_txt.c: packages.txt
	@mkdir -p $(dir $@)
	{ echo '/* Made from packages.txt by the Makefile. */'; \
	  echo 'const char vmci_packages_txt[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/.*/"&\\n"/' $<; \
	  echo ';'; } > $@.tmp && mv $@.tmp $@

$(LIB): $(call obj,$(LIB_SRCS))
	@rm -f $@
	$(AR) rcs $@ $^

$(TEST_SUPPORT): $(call obj,$(TEST_SUPPORT_SRCS))
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/vmci: $(call obj,$(CLI_SRCS)) $(LIB)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)

$(AGENT_x86_64): $(AGENT_SRCS) $(wildcard agent/*.h)
	@mkdir -p $(dir $@)
	$(CC_x86_64) $(AGENT_CFLAGS) -o $@ $(AGENT_SRCS)

$(AGENT_aarch64): $(AGENT_SRCS) $(wildcard agent/*.h)
	@mkdir -p $(dir $@)
	$(CC_aarch64) $(AGENT_CFLAGS) -o $@ $(AGENT_SRCS)

$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-format-truncation $(call pkg_cflags,$(TEST_PKGS)) -Itests/support -o $@ $< $(TEST_SUPPORT) $(LIB) $(LIBS) $(TEST_LIBS)

$(BUILD)/tests/helpers/%: tests/helpers/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBS)

# Every benchmark prints and records its rows with bench/results.c.
$(BUILD)/bench/%: bench/%.c bench/results.c bench/results.h $(TEST_SUPPORT) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/support -o $@ $< bench/results.c $(TEST_SUPPORT) $(LIB) $(LIBS) $(TEST_LIBS)

test: all $(UNIT_TESTS) $(VM_TESTS) $(TEST_HELPERS)
	@VMCI_BUILD=$(BUILD) tests/run-tests $(UNIT_TESTS) $(VM_TESTS) -- tests/e2e

# The same suite under the sanitizers. The accelerator is vmci's own choice
# here too (the canary's verdict), never forced by the build.
asan:
	$(MAKE) BUILD=build-asan SAN=1 test

# The static checks first (seconds), then the tests (minutes).
check: check-layers fmt-check lint test asan

check-layers:
	@tests/check-layers

bench: all $(BENCHES)
	@VMCI_BUILD=$(BUILD) bench/run-benches $(BENCHES)

fmt:
	clang-format -i $$(git ls-files '*.c' '*.h')

# Part of `make check`: the tree stays clang-format clean.
fmt-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
		--inline-suppr --suppress=missingIncludeSystem -I. -D_GNU_SOURCE \
		$$(git ls-files '*.c')

clean:
	rm -rf build build-asan build-fuzz

# ---- fuzzing ---------------------------------------------------------
# `make fuzz` builds the pipeline fuzzer (libFuzzer + ASan + UBSan, clang)
# into build-fuzz/ and runs it for FUZZ_SECONDS (default 60), seeded from
# tests/fuzz/corpus; new inputs go to build-fuzz/corpus, crashes to build-fuzz/.

FUZZ_BUILD   := build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_CFLAGS  := -std=gnu11 -D_GNU_SOURCE -I. $(WARNINGS) -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_SRCS    := tests/fuzz/fuzz_pipelines.c $(wildcard pipelines/*.c) \
	$(addprefix common/,buf.c err.c fs.c io.c suggest.c units.c)

$(FUZZ_BUILD)/fuzz_pipelines: $(FUZZ_SRCS) $(wildcard pipelines/*.h) common/common.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(call pkg_cflags,yaml-0.1) -o $@ $(FUZZ_SRCS) $(call pkg_libs,yaml-0.1)

fuzz: $(FUZZ_BUILD)/fuzz_pipelines
	@mkdir -p $(FUZZ_BUILD)/corpus
	$< -max_total_time=$(FUZZ_SECONDS) -dict=tests/fuzz/pipelines.dict \
		-artifact_prefix=$(FUZZ_BUILD)/ $(FUZZ_BUILD)/corpus tests/fuzz/corpus

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
