# The commands the README names. Each one installs what it needs first (pinned,
# checksummed scripts under scripts/), so they work on a fresh machine.

CARGO ?= cargo
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: deps python-deps deploy-deps deploy-tools test-deps build run test test-rust test-python lint fmt bench loadtest validate-deploy fuzz clean

deps:
	./scripts/install-deps.sh
	./scripts/install-ort-openvino.sh

python-deps:
	./scripts/setup-python.sh

## What the deployment tests use: Go tools (kustomize, compose and Dockerfile checkers,
## grpc-health-probe), the Kubernetes schemas, ONNX Runtime's CUDA build (staged by the
## CUDA image test; about 1.8 GB of wheels, downloaded once). Not ghz: no test runs it,
## and `make loadtest` builds it when missing.
deploy-deps: deploy-tools
	./scripts/install-ort-cuda.sh

deploy-tools:
	./scripts/install-go-tools.sh grpc-health-probe kustomize composecheck dockerfilecheck
	./scripts/install-kubernetes-validate.sh

## Servers the end-to-end tests start on loopback ports (PostgreSQL).
test-deps:
	./scripts/install-test-deps.sh

## The release build, as the images ship it (tests use the dev profile).
build: deps
	$(CARGO) build --release --bins

## Start the service on its embedded defaults: gRPC 127.0.0.1:50051, metrics 127.0.0.1:9464, data in ./data.
run: build
	$(CARGO) run --release --bin vargid

## Every test: Rust unit and end-to-end tests, Python tests, formatting and lints, and
## each fuzz target for 15 s (scripts/fuzz.sh). The Python venv and ONNX Runtime's CUDA
## build (python-deps, deploy-deps) download while cargo builds: both are network-bound.
test: deps deploy-tools test-deps
	./scripts/build-while-downloading.sh $(CARGO) build --bins
	$(MAKE) lint
	$(CARGO) test --workspace
	$(PY) -m pytest training -q
	./scripts/fuzz.sh --seconds 15

## Fuzz each target for FUZZ_RUNS executions (docs/fuzzing.md).
FUZZ_RUNS ?= 1000000
fuzz:
	./scripts/fuzz.sh --runs $(FUZZ_RUNS)

## Batching benchmark (not a test): raw ONNX Runtime vs the service under load.
bench: deps
	$(CARGO) build --bins
	$(CARGO) run --bin vargid-bench -- batching

## Load test (not a test): ghz against Identify on a fresh local vargid, 30 s at
## concurrency 16 with LFW photos (scripts/loadtest.sh; VARGID_LOADTEST_* to change).
loadtest:
	./scripts/loadtest.sh

## Validate the Kubernetes manifests, docker-compose.yml and the Dockerfile (also a test).
validate-deploy:
	./scripts/validate-deploy.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml

clean:
	$(CARGO) clean
