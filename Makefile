# The README names two commands: `make run` and `make test`. Everything they need is created here,
# idempotently, on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
NATIVE_SOURCES := $(shell find native/src -name '*.rs') native/Cargo.toml Cargo.toml pyproject.toml
BUILD_STAMP := $(VENV)/.stamp-build
DEPS_STAMP  := $(VENV)/.stamp-deps

.PHONY: run test build venv test-rust test-py lint bench clean

run: build
	$(BIN)/agentgateway $(ARGS)

test: build test-rust test-py

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

test-rust:
	cargo test --quiet --workspace

test-py: build
	$(BIN)/python -m pytest -q

lint: build
	$(BIN)/ruff check agentgateway tests benchmarks
	$(BIN)/python -m mypy.stubtest agentgateway._native

bench: build
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) target
