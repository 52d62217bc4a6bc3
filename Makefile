# The two commands: `make run` serves, `make test` runs the whole suite. Both set everything up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
# One stamp per requirements set; each is remade when any file it reads changes (dev and bench
# read requirements.txt through -r).
RUNTIME_STAMP := $(VENV)/.installed-runtime
BENCH_STAMP   := $(VENV)/.installed-bench
DEV_STAMP     := $(VENV)/.installed-dev
CHROMIUM      := /usr/bin/chromium

.PHONY: install install-dev install-bench browser console-assets run test test-unit test-api test-stack test-system test-multihost test-image lint bench bench-lfw bench-openset bench-unknowns bench-decode bench-identify bench-spectrum bench-db bench-db-1m bench-db-real bench-db-1m-indexes bench-db-1m-gallery bench-service bench-service-trims bench-profile bench-real bench-ceiling bench-gpu bench-backends bench-engine-levers bench-backends-openvino model-pack-int8-detector admin clean-data

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Runtime only: what the image installs (`make run`).
$(RUNTIME_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(BENCH_STAMP): requirements.txt requirements-bench.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $@

# Tests and development: runtime, benchmarks' packages and the test tools.
$(DEV_STAMP): requirements.txt requirements-bench.txt requirements-dev.txt clients/python/pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(RUNTIME_STAMP)
install-dev: $(DEV_STAMP)
install-bench: $(BENCH_STAMP)

run: install
	$(PY) -m stack.run

# The layers in order, fastest first (tests/unit, tests/api, tests/stack, tests/system): each one's
# duration is printed, and the first failing layer stops the run. Coverage adds up over the layers.
LAYERS := unit api stack system

test: install-dev browser
	$(PY) -m ruff check .
	$(PY) -m coverage erase
	@for layer in $(LAYERS); do \
		start=$$(date +%s); \
		$(PY) -m pytest tests/$$layer --cov --cov-append --cov-report= $(PYTEST_ARGS) \
			|| { echo "== layer $$layer FAILED after $$(($$(date +%s) - start)) s"; exit 1; }; \
		echo "== layer $$layer passed in $$(($$(date +%s) - start)) s"; \
	done
	$(PY) -m coverage report --skip-covered --skip-empty | tail -n 3

# One layer alone: unit (about 20 s), api, stack, system.
test-unit test-api test-stack test-system: install-dev
	$(PY) -m pytest tests/$(subst test-,,$@) $(PYTEST_ARGS)

# The console's browser tests (tests/stack/test_console_browser.py) drive Debian's Chromium through
# Playwright: installed here when missing and running as root, else one line says how.
test-stack: browser

# The console's front-end libraries (htmx; fflate, to read a ZIP's photo in the browser), from npm
# as pinned in web/console/package-lock.json, into
# the committed static/vendor/ (the app serves it; nothing is fetched at run time). Needs npm.
console-assets:
	cd web/console && npm ci --no-audit --no-fund && cp node_modules/htmx.org/dist/htmx.min.js static/vendor/htmx.min.js \
		&& cp node_modules/fflate/umd/index.js static/vendor/fflate.min.js
	sha256sum web/console/static/vendor/htmx.min.js web/console/static/vendor/fflate.min.js

browser:
	@test -x $(CHROMIUM) || { if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "The console's browser tests need Chromium: run 'sudo apt-get install -y chromium' (Debian's package, at $(CHROMIUM))."; exit 1; fi; }

# Four hosts on this machine (network namespaces: needs root and iproute2), a worker host cut off
# mid-batch; about 2 minutes. Part of `make test` (and of test-system); skipped where not allowed.
test-multihost: install-dev
	$(PY) -m pytest tests/system/test_multihost.py $(PYTEST_ARGS)

# The production image built and its compose stack run end to end (deploy/image-test/run.sh,
# docs/DEPLOYMENT.md): Docker (installed and started when run as root), about 15-30 minutes.
# Not part of `make test`.
test-image: install
	deploy/image-test/run.sh

lint: install-dev
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

# Every benchmark writes to bench/results/ (PERFORMANCE.md, docs/RECOGNITION.md). `make bench` runs
# them all (about an hour on 2 cores without the 1M size); each has its own target.
bench: bench-lfw bench-identify bench-spectrum bench-db bench-service bench-service-trims bench-profile bench-real

bench-lfw: install-bench
	$(PY) -m bench.lfw --lfw-dir $${LFW_DIR:-../shared/datasets/lfw-dev}

# Open-set (1:N) FPIR/FNIR by gallery size, the impostor tail (rewrites domain/openset_tail.json) and
# 1M synthetic distractors; embeddings cached in /tmp/faceapi-bench-cache (about 8 min the first time).
# Recurring unknown faces: grouping purity and completeness against the threshold on LFW (embeddings
# from bench-openset's cache; about 15 min on 2 busy cores), which chose UNKNOWNS_GROUP_THRESHOLD.
bench-unknowns: install-bench
	$(PY) -m bench.unknowns --lfw-dir $${LFW_DIR:-../shared/datasets/lfw-dev}

bench-openset: install-bench
	$(PY) -m bench.openset --lfw-dir $${LFW_DIR:-../shared/datasets/lfw-dev}

# Reduced-scale decoding vs full decoding, validation and worker side, with the quality checks (5-9 min).
bench-decode: install-bench
	$(PY) -m bench.decode --faces-dir $${FACES_DATASET_DIR:-../shared/datasets/faces} --lfw-dir $${LFW_DIR:-../shared/datasets/lfw-dev}

bench-identify: install-bench
	$(PY) -m bench.identify --faces-dir $${FACES_DATASET_DIR:-../shared/datasets/faces}

# Covariances of real LFW embeddings, for bench-db-real's synthetic faces.
bench-spectrum: install-bench
	$(PY) -m bench.spectrum --lfw-dir $${LFW_DIR:-../shared/datasets/lfw-dev}

bench-db: install-bench
	$(PY) -m bench.db --sizes 10000,100000 --queries 200 --latent-dim 64

bench-db-1m: install-bench
	$(PY) -m bench.db --sizes 1000000 --queries 200 --latent-dim 64 --maintenance-work-mem 8GB --merge

# 10k, 100k and 1M faces sampled from the real-embedding model (about 35 min, 8 GB of memory).
bench-db-real: install-bench
	$(PY) -m bench.db --sizes 10000,100000,1000000 --spectrum bench/results/lfw_spectrum.json --queries 500 \
		--maintenance-work-mem 8GB --ef-sweep 10,20,40,64,100,200,400 --output db_spectrum

# The same 1M rows with the first index (m 16 / ef_construction 64) and migration 0007's (m 24 / 100): 75 min.
bench-db-1m-indexes: install-bench
	$(PY) -m bench.db --sizes 1000000 --spectrum bench/results/lfw_spectrum.json --queries 500 \
		--maintenance-work-mem 6GB --shared-buffers 8GB --indexes 16:64,24:100 \
		--ef-sweep 20,40,64,100,150,200,400 --output db_spectrum_1m_indexes

# The same 1M rows in 10 galleries, one partial HNSW index each (domain.gallery_indexes): about 30 min.
bench-db-1m-gallery: install-bench
	$(PY) -m bench.db --sizes 1000000 --spectrum bench/results/lfw_spectrum.json --queries 500 \
		--maintenance-work-mem 6GB --shared-buffers 8GB --hnsw-max-size 100000 --gallery-index 16:64 \
		--ef-scoped 20,40,64,100 --output db_spectrum_1m_gallery

bench-service: install-bench
	$(PY) -m bench.service --configs 2x1 --clients 1,2,4,8,16,32 --modes longpoll,webhook,poll:0.02 \
		--bare-fixed-640 --requests-per-level 120 --requests-per-level-high 100
	$(PY) -m bench.service --configs 2x1 --clients 1,4,16,32 --modes submitwait,longpoll --bare-fixed-640 \
		--requests-per-level 120 --requests-per-level-high 100 --output service_submitwait

# A/B of settings that trim per-job work, alternating stacks over 2 rounds (about 12 min).
bench-service-trims: install-bench
	$(PY) -m bench.service --configs 2x1 --clients 4,16 --modes longpoll --rounds 2 --bare-passes 1 \
		--variants "defaults:;no_size_cache:GALLERY_SIZE_CACHE_SECONDS=0;no_task_events:CELERY_TASK_EVENTS=0" \
		--requests-per-level 150 --requests-per-level-high 150 --output service_trims

# py-spy profile of the web, worker and Flower processes at 16 clients (GIL-holding samples).
bench-profile: install-bench
	$(PY) -m bench.service --configs 2x1 --clients 16 --modes longpoll --requests-per-level-high 300 \
		--bare-passes 1 --profile-clients 16 --output service_profile

# Issue 15: the labelled real photos (single and group, as they are) and LFW against one stack,
# POST /recognize?wait=30, beside the hand-written InsightFace loop and the service's engine
# (bench/loop.py), alternating; WAL and CPU per job, face counts, rank-1, a py-spy profile (10-13 min on 2 busy cores).
# The queue's ceiling: the whole stack with a null engine (bench/null_engine/, selected only here),
# 16 clients of single-photo jobs and 4 of 16-photo batch jobs, alternating rounds.
bench-ceiling: install-bench
	$(PY) -m bench.ceiling --clients 16 --batch 16 --rounds 3 --faces-dir $${FACES_DATASET_DIR:-../shared/datasets/faces}

# The same on one NVIDIA GPU (onnxruntime-gpu in .venv-gpu), the real model beside the null engine.
bench-gpu:
	bench/gpu.sh

bench-real: install-bench
	$(PY) -m bench.service --sets lfw,real --configs 2x1 --modes submitwait --clients 1,2,4,8,16 \
		--rounds 2 --repeat-clients 1,8 --requests-per-level 120 --requests-per-level-high 120 --profile-clients 8 \
		--batch 16 --batch-clients 4 \
		--faces-dir $${FACES_DATASET_DIR:-../shared/datasets/faces} --output service_real

# Issue 15: onnxruntime's CPU provider vs OpenVINO, fp32 vs int8 models (quantized at bench time into
# /tmp/faceapi-bench-cache/backends, never committed: the models' licence is non-commercial), timed
# interleaved, with LFW accuracy, rank-1 and face counts for the faster ones (PERFORMANCE.md, section 10).
# The OpenVINO variants are skipped here (this onnxruntime has no OpenVINO); bench-backends-openvino runs
# every variant from a separate venv, because onnxruntime-openvino replaces the `onnxruntime` module.
OV_VENV ?= /tmp/faceapi-openvino-venv
OV_PACKAGE ?= onnxruntime-openvino==1.24.1
BACKENDS_ARGS = --lfw-dir $${LFW_DIR:-../shared/datasets/lfw-dev} --faces-dir $${FACES_DATASET_DIR:-../shared/datasets/faces}

# The engine's model-level levers (PRelu rewrite, aspect-keeping detector input), old vs new in one run.
bench-engine-levers: install-bench
	$(PY) -m bench.engine_levers --faces-dir $${FACES_DATASET_DIR:-../shared/datasets/faces} --lfw-dir $${LFW_DIR:-../shared/datasets/lfw-dev} --rounds 3

bench-backends: install-bench
	$(PY) -m bench.backends $(BACKENDS_ARGS)

bench-backends-openvino:
	test -x $(OV_VENV)/bin/python || $(PYTHON) -m venv $(OV_VENV)
	$(OV_VENV)/bin/pip install --quiet -r requirements-bench.txt
	$(OV_VENV)/bin/pip uninstall --quiet -y onnxruntime onnxruntime-openvino
	$(OV_VENV)/bin/pip install --quiet $(OV_PACKAGE)
	$(OV_VENV)/bin/python -m bench.backends $(BACKENDS_ARGS)

# The opt-in pack for OpenVINO workers: SCRFD quantized to int8 (calibrated on LFW dev photos outside
# the View 2 pairs) beside the bundled recognizer; then MODEL_PACK_DIR=$(INT8_PACK_DIR) with
# ORT_PROVIDERS=OpenVINOExecutionProvider (PERFORMANCE.md, section 10). Never committed (licence).
INT8_PACK_DIR ?= .data/model-pack-openvino-int8-detector
model-pack-int8-detector: install-bench
	$(PY) -m bench.backends --lfw-dir $${LFW_DIR:-../shared/datasets/lfw-dev} --write-pack $(INT8_PACK_DIR)

admin: install
	$(PY) -m stack.cli create-admin $(EMAIL)

clean-data:
	rm -rf .data
