# SegContrast: two commands on a fresh machine: `make demo` and `make test`.
# Everything is installed into .venv inside the clone; nothing is installed system-wide.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The stamp is keyed on everything that decides what gets installed or built (the compiled
# kernels' sources too), so `make setup` reinstalls only when one of these files changes.
SETUP_INPUTS := requirements.txt requirements-nodeps.txt tools/install_detectron2.py pyproject.toml \
	setup.py $(sort $(wildcard projects/SegContrast/src/kernels/*))
SETUP_KEY := $(shell cat $(SETUP_INPUTS) 2>/dev/null | sha1sum | cut -c1-12)
STAMP := $(VENV)/.setup-stamp-$(SETUP_KEY)

.PHONY: setup demo test test-install lint bench study clean-demo

setup: $(STAMP)

$(STAMP): $(SETUP_INPUTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(PY) tools/install_detectron2.py
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.setup-stamp-*
	@touch $@
	@echo "setup: done ($(VENV))"

# The main job: generate `shapes`, train Mask R-CNN with the focal mask head on the CPU,
# evaluate the saved final weights, print the contrast table (untrained vs trained) and leave
# overlays and plots under output/demo/.
demo: setup
	$(PY) tools/demo.py

# Two pytest processes (pytest-xdist), a test file's tests in one of them: the suite is mostly
# single-threaded tools and trainings, so on 2 cores it takes about half the time of one.
TEST_WORKERS ?= 2

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# `pip install .` without the training extra into a fresh environment, then `segcontrast
# evaluate` there (minutes of downloads and building; CI runs it after `make test`).
test-install: setup
	$(PY) -m pytest -q -m install tests/test_install.py

lint: setup
	$(VENV)/bin/ruff check .

# Benchmarks: each script writes its figures, with the command and machine, to docs/BENCHMARKS.md.
bench: setup
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(PY) bench/bench_losses.py --write-docs
	$(PY) bench/bench_train_step.py --write-docs
	$(PY) bench/bench_semantic_step.py --write-docs
	$(PY) bench/bench_semantic_step.py --arch panoptic --write-docs
	$(PY) bench/bench_evaluator.py --write-docs
	$(PY) bench/bench_evaluator.py --scaling --write-docs
	$(PY) bench/bench_whole_process.py --write-docs --scaling --breakdown
	$(PY) bench/reliability_report.py --write-docs

# The loss study (hours on a CPU; resumable): docs/STUDY.md and its plots in docs/study/; mask
# losses in Mask R-CNN, then pixel losses in a semantic model and semantic vs instance model.
study: setup
	$(PY) bench/run_study.py

clean-demo:
	rm -rf output/demo
