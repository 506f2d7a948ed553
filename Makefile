# The commands the README names. Each one installs what it needs first (pinned,
# checksummed scripts under scripts/), so they work on a fresh machine.

CARGO ?= cargo
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: deps python-deps build run test test-rust test-python lint fmt bench clean

deps:
	./scripts/install-deps.sh

python-deps:
	./scripts/setup-python.sh

build: deps
	$(CARGO) build --bins

## Start the service on its embedded defaults: gRPC 127.0.0.1:50051, metrics 127.0.0.1:9464, data in ./data.
run: build
	$(CARGO) run --bin vargid

## Every test: Rust unit and end-to-end tests, Python tests, formatting and lints.
test: deps python-deps
	$(CARGO) build --bins
	$(MAKE) lint
	$(CARGO) test --workspace
	$(PY) -m pytest training -q

## Batching benchmark (not a test): raw ONNX Runtime vs the service under load.
bench: deps
	$(CARGO) build --bins
	$(CARGO) run --bin vargid-bench -- batching

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
