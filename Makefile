# facetrain: `make demo` and `make test` are all a newcomer needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev
JOBS   ?= 2

.PHONY: setup setup-dev demo test lint bench accuracy compare gpu-check clean

# What running needs (the demo, every command): no test or benchmark tools.
setup: $(STAMP)

# Idempotent: re-installs only when pyproject.toml changed or the venv is missing.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "facetrain needs Python 3.11, found " + sys.version' || exit 1
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[onnx,tensorboard,web]'
	touch $(STAMP)

# The test and benchmark tools on top (`make test`, `make bench`): pytest, hypothesis,
# playwright, ruff, dlib-bin (the parity oracle), and the system's chromium and exiftool.
setup-dev: $(DEV)

$(DEV): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[onnx,tensorboard,web,dev]'
	@# the web UI's browser test drives Debian's chromium; installed where we may, else skipped
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && timeout 600 apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; } \
	  || echo "note: chromium not installed; the web UI browser test will be skipped"
	@# the plots' test of names in Chinese, Japanese and Korean draws them with a CJK font
	@fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" || { [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null && timeout 600 apt-get install -y \
	  --no-install-recommends fonts-wqy-zenhei >/dev/null 2>&1; } \
	  || echo "note: no CJK font installed; the plots' CJK test will be skipped"
	@# the XMP test reads sidecars back with ExifTool, as other photo programs would
	@command -v exiftool >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && timeout 600 apt-get install -y --no-install-recommends libimage-exiftool-perl >/dev/null 2>&1; } \
	  || echo "note: exiftool not installed; the XMP read-back test will be skipped"
	touch $(DEV)

demo: setup
	$(BIN)/python -m facetrain.demo

lint: setup-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

test: lint
	$(BIN)/python -m pytest -n $(JOBS) --dist worksteal --durations=15

bench: setup-dev
	$(BIN)/python bench/align.py
	$(BIN)/python bench/loader.py
	$(BIN)/python bench/cpu_memory.py
	$(BIN)/python bench/resumable_cost.py
	$(BIN)/python bench/cpu_layout.py
	$(BIN)/python bench/photo_batches.py
	$(BIN)/python bench/cpu_training_layout.py

# the best from-scratch recipe end to end: train on mini-train + more-train, evaluate on
# LFW's 6,000 pairs (accuracy printed last); about 2 hours on 2 cores, resumable (run it
# again after an interruption); `--set device=cuda` after the recipe for a GPU
accuracy: setup-dev
	$(BIN)/python -m facetrain.experiment recipes/scratch-cosface512-b256-40.toml

# the loss comparison of docs/benchmarks.md (same backbone and budget for every loss)
compare: setup-dev
	$(BIN)/python -m facetrain.experiment recipes/compare-*.toml

# the GPU proof (issue 10): on a GPU its figures; without one, its CPU dry run
gpu-check: setup-dev
	$(BIN)/python bench/gpu_check.py --out bench/out

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache demo-output
