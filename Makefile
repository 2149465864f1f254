# memoryd: `make up` starts the stack, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := tools/node_modules/.bin/buf
STAMP := $(VENV)/.installed
# The LLM extractor's end-to-end tests run a real OpenAI-compatible server
# (llama-cpp-python, built from source) in a virtualenv of its own.
LLM_VENV := .venv-llm
LLM_STAMP := $(LLM_VENV)/.installed
PROTOS := $(wildcard proto/memoryd/v1/*.proto)
TS := clients/typescript
TS_STAMP := $(TS)/node_modules/.installed

.PHONY: help up smoke venv test test-unit lint typecheck format proto proto-check buf-lint bench \
	bench-sessions bench-search bench-encryption bench-recall bench-peers soak lock clean test-llm ts-deps ts-proto \
	ts-proto-check test-ts deploy-check

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

up: venv  ## install (first time) and start the whole stack on embedded defaults
	$(VENV)/bin/memoryd up

smoke: venv  ## start `make up` on a fresh data dir, check it serves, SIGTERM it, check nothing is left
	scripts/smoke-up.sh

venv: $(STAMP)  ## create .venv from requirements.lock

$(STAMP): requirements.lock pyproject.toml clients/python/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "installing pinned dependencies (first time: a few minutes)..."
	$(PY) -m pip install --progress-bar on -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e clients/python -e .
	@if $(PY) -m pip list 2>/dev/null | grep -iE '^(nvidia-|cuda-)'; then \
	  echo "CUDA packages were installed; memoryd wants the CPU build of torch (requirements.lock)"; exit 1; fi
	@touch $@

tools/node_modules/.bin/buf: tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund --silent
	@touch $@

test: venv $(BUF)  ## install and run all the tests (unit, integration, e2e) and the checks
	$(MAKE) --no-print-directory proto-check buf-lint lint typecheck
	$(PY) -m pytest -q

# LLAVA_BUILD=OFF: the vision library is not needed for text and is a third of the build.
$(LLM_STAMP): requirements-llm.txt
	@test -x $(LLM_VENV)/bin/python || $(PYTHON) -m venv $(LLM_VENV)
	$(LLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	@echo "building llama-cpp-python from source (first time: 10 minutes or more)..."
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(LLM_VENV)/bin/python -m pip install --progress-bar off \
	  --no-deps -r requirements-llm.txt
	@touch $@

test-llm: venv $(LLM_STAMP)  ## the LLM extractor against a real llama.cpp server (slow first build)
	MEMORYD_TEST_LLAMA_PYTHON=$(CURDIR)/$(LLM_VENV)/bin/python $(PY) -m pytest -q -m llm tests/llm tests/integration/test_llm_extraction_job.py

test-unit: venv  ## unit tests only (no servers)
	$(PY) -m pytest -q tests/unit

lint: venv  ## ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv  ## apply ruff and buf formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(BUF) format -w

typecheck: venv  ## mypy --strict
	$(VENV)/bin/mypy server workers tests bench \
	  clients/python/memoryd/client clients/python/memoryd/integrations examples

buf-lint: $(BUF)  ## buf lint and buf format --diff
	$(BUF) lint
	$(BUF) format --diff --exit-code

proto: venv  ## regenerate the Python stubs in clients/python from proto/
	rm -f clients/python/memoryd/v1/*_pb2*.py*
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -Iproto \
	  --python_out=clients/python --pyi_out=clients/python \
	  --grpc_python_out=clients/python --mypy_grpc_out=clients/python $(PROTOS)

proto-check: proto  ## fail when the committed stubs differ from freshly generated ones
	@git diff --exit-code --stat -- clients/python/memoryd/v1 || \
	  { echo "generated stubs are stale: run 'make proto' and commit"; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard clients/python/memoryd/v1)" || \
	  { echo "new generated stubs are not committed: run 'make proto' and commit"; exit 1; }

$(TS_STAMP): $(TS)/package.json $(TS)/package-lock.json
	cd $(TS) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

ts-deps: $(TS_STAMP)  ## install the TypeScript client's packages (npm ci)

ts-proto: $(TS_STAMP)  ## regenerate the TypeScript stubs in clients/typescript from proto/
	cd $(TS) && npm run --silent generate

ts-proto-check: ts-proto  ## fail when the committed TypeScript stubs differ from freshly generated ones
	@git diff --exit-code --stat -- $(TS)/src/gen || \
	  { echo "generated TypeScript stubs are stale: run 'make ts-proto' and commit"; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard $(TS)/src/gen)" || \
	  { echo "new generated TypeScript stubs are not committed: run 'make ts-proto' and commit"; exit 1; }

test-ts: venv $(TS_STAMP)  ## the TypeScript client: stubs check, typecheck, tests against a real `memoryd up`
	$(MAKE) --no-print-directory ts-proto-check
	cd $(TS) && MEMORYD_PYTHON=$${MEMORYD_PYTHON:-$(CURDIR)/$(PY)} npm test

bench: venv  ## all benchmarks on their own stacks (bench/); figures go to stdout
	$(MAKE) --no-print-directory bench-sessions bench-search

bench-sessions: venv  ## session memory latency vs Health/Check and LRANGE
	$(PY) -m bench.cli sessions

bench-search: venv  ## ingest, embedding rate, search latency, ANN recall (bench/results/search.json)
	$(PY) -m bench.cli search

SOAK_ARGS ?=
soak: venv  ## 10 min of mixed traffic on its own stack: p50/p99/p999, errors, RSS, acked writes (SOAK_ARGS)
	$(PY) -m bench.soak $(SOAK_ARGS)

bench-encryption: venv  ## the same calls with and without MEMORYD_ENCRYPTION_KEY (bench/results/encryption.json)
	$(PY) -m bench.encryption

DATASET ?= bench/data/tiny.jsonl
TARGET ?= 127.0.0.1:50051
bench-recall: venv  ## evidence recall@k on DATASET (JSONL) against a running memoryd at TARGET
	$(PY) -m bench.cli recall --dataset $(DATASET) --target $(TARGET)

PEERS_ARGS ?=
bench-peers: venv  ## memoryd vs mem0, agent-memory-server and direct SQL (bench/results/peers.*)
	$(PY) -m bench.peers.runner $(PEERS_ARGS)

lock:  ## re-pin requirements.lock from requirements.in
	$(PY) -m piptools compile --quiet --strip-extras --no-emit-find-links --no-emit-index-url \
	  -o requirements.lock requirements.in

clean:  ## remove the virtualenvs (memoryd's, the LLM server's, the peers') and tool installs
	rm -rf $(VENV) $(LLM_VENV) .peers tools/node_modules $(TS)/node_modules $(TS)/dist

deploy-check:  ## validate deploy/ offline: manifests and rendered chart (strict schemas), compose, Dockerfile
	deploy/check.sh
