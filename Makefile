# speechmesh: `make run` starts the suite, `make test` runs the tests.
# Every target installs what it needs on a fresh clone.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
# The ASR model `make run` serves: the real tiny.en weights beside the repo when present,
# otherwise the service default (downloaded from the Hugging Face hub on first start).
ASR_MODEL ?= $(if $(wildcard $(SHARED)/models/whisper-tiny.en/config.json),$(SHARED)/models/whisper-tiny.en,openai/whisper-large-v3-turbo)
PROTO_STAMP := services/asr/v1/asr_pb2.py
PROTOS := $(shell find protos -name '*.proto')

.PHONY: install protos test lint bench run clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel of torch 2.13.0 first; the project's range keeps it.
	$(BIN)/pip install -q torch==2.13.0
	# The generated protobuf packages are part of the distribution: generate them first.
	$(BIN)/pip install -q 'grpcio-tools>=1.66'
	$(BIN)/python tools/gen_protos.py
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

protos: $(PROTO_STAMP)

$(PROTO_STAMP): $(PROTOS) tools/gen_protos.py | $(VENV)/.installed
	$(BIN)/python tools/gen_protos.py

test: install protos
	$(BIN)/python -m pytest -q

# `make lint` (run by .ci/run before the tests; seconds): ruff, `buf lint`, and `buf breaking`
# against protos/baseline.binpb, a committed image of the contracts as published. A committed
# image works on a fresh clone (no git history, tags or network needed) and fails any change
# that would break a client built on the baseline (a field renumbered, renamed or removed, an
# enum value renamed, a message moved to another package); adding fields, messages and RPCs
# passes. `make proto-baseline` rewrites it: do that only when a release accepts the protos as
# they are (never to silence a break).
lint: install protos
	$(BIN)/ruff check services tests tools bench
	$(BIN)/ruff format --check services tests tools bench
	$(BIN)/buf lint
	$(BIN)/buf breaking protos --against protos/baseline.binpb

.PHONY: proto-baseline
proto-baseline: install
	$(BIN)/buf build protos --exclude-source-info -o protos/baseline.binpb

# `make docs`: docs/api.md (the API reference) and docs/openapi.yaml (the REST face) from the
# protos' comments and google.api.http annotations, and gateway/envoy.yaml (`make gateway`);
# tests/gateway/test_docs.py and test_rendered_config.py check that the committed files are current.
.PHONY: docs gateway
docs: install gateway
	$(BIN)/python tools/gen_api_docs.py
	$(BIN)/python tools/gen_openapi.py

# `make gateway`: gateway/envoy.yaml, the Envoy bootstrap the gateway container runs with the
# default settings (compose and Kubernetes), rendered with the descriptor set of protos/.
gateway: install
	$(BIN)/python tools/gen_gateway_config.py

# `make go-client`: build/go/bin/speechmesh-go, the Go client of examples/go, compiled offline
# from the stubs of examples/go/buf.gen.yaml with Debian's Go, grpc-go and protobuf packages
# (GOPATH mode; which packages and why: examples/go/README.md).
.PHONY: go-client
go-client: install
	$(BIN)/buf generate --template examples/go/buf.gen.yaml
	GO111MODULE=off GOPATH="$(CURDIR)/build/go:/usr/share/gocode" go build -o build/go/bin/speechmesh-go ./examples/go

bench: install protos
	$(BIN)/python -m bench.asr --model $(ASR_MODEL)
	$(BIN)/python -m bench.sensevoice --model $(ASR_MODEL)
	$(BIN)/python -m bench.jobs --model $(ASR_MODEL)
	$(BIN)/python -m bench.realtime --model $(ASR_MODEL)
	$(BIN)/python -m bench.translate $(if $(TRANSLATE_MODEL),--model $(TRANSLATE_MODEL))
	$(BIN)/python -m bench.tts $(if $(TTS_MODEL),--model $(TTS_MODEL))
	$(BIN)/python -m bench.cascade
	$(BIN)/python -m bench.gateway

# `make run`: the whole suite (`speechmesh up`: every service, Envoy on :8080), offline. ASR and
# TTS serve the ASR_MODEL and TTS_MODEL you give, else the real checkpoints of ../shared/models
# when the checkout has them beside it (`--models-dir`: whisper-tiny.en, and vits-en-joe with a
# tiny CSM beside it for cloning); every other model is a tiny random checkpoint, built offline.
RUN_MODELS_DIR = $(wildcard $(SHARED)/models)
given = $(filter command line environment,$(origin $(1)))
RUN_FLAGS = $(if $(RUN_MODELS_DIR),--models-dir $(RUN_MODELS_DIR)) \
	$(if $(call given,ASR_MODEL),--model asr=$(ASR_MODEL)) \
	$(if $(call given,TTS_MODEL),--model tts=$(TTS_MODEL))

run: install protos
	$(BIN)/speechmesh up --offline $(strip $(RUN_FLAGS))

clean:
	rm -rf build services/audio services/common services/*/v1 .pytest_cache
