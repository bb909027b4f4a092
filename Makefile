# PoP edge appliance — developer entry points.
#   make run     start the appliance on embedded defaults (loopback only, state under var/)
#   make test    install everything into .venv, then lint, type-check and run the test suite
#   make bench-sip   signalling benchmark against the sippy B2BUA (see bench/README.md)
#   make prompts render the IVR's default prompts with espeak-ng (apt-get install espeak-ng)

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit system bench-sip install clean prompts

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==24.3.1
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/appliance run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests --ignore=tests/system

system: $(STAMP)
	$(BIN)/pytest -q tests/system

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider tests

# The IVR's default prompts in every language, spoken by espeak-ng from appliance/ivr/prompts/texts.toml.
# The rendered files are committed, so that `make run` needs no synthesizer; render them again after
# changing the texts or the renderer (manifest.json holds each file's SHA-256, checked by the tests).
prompts: $(STAMP)
	$(BIN)/python -m appliance.ivr.render_prompts

bench-sip: $(STAMP)
	$(BIN)/python -m bench.sip

# Relay benchmark against rtpengine-daemon (needs: apt-get install rtpengine-daemon), with the C load
# generator built first (bench/loadgen.py builds it with the same flags when run without make).
.PHONY: bench-relay
build/loadgen: bench/loadgen.c bench/rtpbench.h
	@mkdir -p build
	cc -O2 -Wall -Wextra -Werror -o $@ $<

bench-relay: $(STAMP) build/loadgen
	$(BIN)/python -m bench.relay

# IVR benchmark: sessions one media worker plays with < 2 ms p99 pacing error and no RFC 4733 digit lost,
# with the C load client built first (bench/ivr_client.py builds it with the same flags without make).
.PHONY: bench-ivr
build/ivrload: bench/ivrload.c bench/rtpbench.h
	@mkdir -p build
	cc -O2 -Wall -Wextra -Werror -o $@ $<

bench-ivr: $(STAMP) build/ivrload
	$(BIN)/python -m bench.ivr

# Sync benchmark: durable outbox appends (against a naive one-commit-per-event outbox), draining a
# 1,000,000-event backlog over loopback TLS, and WAN cut to SURVIVABLE in network namespaces (needs root).
.PHONY: bench-sync
bench-sync: $(STAMP)
	$(BIN)/python -m bench.sync

# PRI benchmark: two simulated E1 spans, 60 simultaneous calls in the local IVR; control and media CPU and
# the prompt audio's pacing on the B-channels, against the far ends' own floor (see bench/README.md).
.PHONY: bench-pri
bench-pri: $(STAMP)
	$(BIN)/python -m bench.pri

# Coverage-guided fuzzing of the PRI D-channel receive path (LAPD and Q.931, both sides) with atheris, not part
# of `make test`; FUZZ_ARGS are libFuzzer's. The corpus and any crash input are kept under var/fuzz-pri/.
.PHONY: fuzz-pri
FUZZ_ARGS ?= -max_total_time=300
fuzz-pri: $(STAMP)
	$(BIN)/python -m pip install --quiet atheris==3.0.0
	@mkdir -p var/fuzz-pri/corpus
	$(BIN)/python -m tests.fuzz.run_pri -artifact_prefix=var/fuzz-pri/ $(FUZZ_ARGS) var/fuzz-pri/corpus

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
