# cxr — one-command environment, tests, demo and benchmarks.
#   make setup   create .venv and install everything (idempotent; quick when nothing changed)
#   make test    setup + the test suite
#   make demo    setup + phantom data -> train -> evaluate (see README)
#   make bench   setup + benchmarks against the peers (see README)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.cxr-setup-stamp
PYTEST_ARGS ?=

.PHONY: setup test demo bench clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.py tools/install_detectron2.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q -r requirements.txt -r requirements-dev.txt
	$(PY) tools/install_detectron2.py
	$(PIP) install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	$(PY) -c "import cxr, detectron2; assert detectron2.__version__ == '0.6'; print('cxr environment ready')"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

# The main job on the embedded default data: render the phantom set from the shipped NIH boxes
# (cached), train the CPU demo config, evaluate on phantom_nih_test, print where TensorBoard is.
# FULL=1 trains longer for better figures.
PHANTOM_DIR := datasets/phantom_nih
PHANTOM_ARGS := --output $(PHANTOM_DIR) --size 512 --seed 0 --negatives 300
DEMO_CONFIG := configs/phantom/retinanet_demo.yaml
DEMO_OUT := output/demo
FULL ?= 0
DEMO_OPTS := $(if $(filter 1,$(FULL)),SOLVER.MAX_ITER 3000 SOLVER.CHECKPOINT_PERIOD 500 TEST.EVAL_PERIOD 500,)

demo: setup
	$(PY) datasets/prepare_phantom.py $(PHANTOM_ARGS)
	$(PY) tools/train_net.py --config-file $(DEMO_CONFIG) OUTPUT_DIR $(DEMO_OUT) $(DEMO_OPTS)
	$(PY) tools/eval.py --config-file $(DEMO_CONFIG) --checkpoint $(DEMO_OUT)/model_final.pth \
		--dataset phantom_nih_test --output $(DEMO_OUT)/eval OUTPUT_DIR $(DEMO_OUT)
	@echo ""
	@echo "Evaluation files: $(DEMO_OUT)/eval (metrics.json, per_class.csv, plots)"
	@echo "TensorBoard:      $(VENV)/bin/tensorboard --logdir $(DEMO_OUT)"

# Benchmarks against the peers (effdet's EfficientDet, detectron2's DatasetMapper, pycocotools),
# each comparison in its own process; CPU unless DEVICE=cuda. Writes output/bench/results.json,
# results.md (README table + machine) and details.json (every run). BENCH_ARGS: e.g. --repeats 3
DEVICE ?= cpu
BENCH_OUT := output/bench
BENCH_ARGS ?=

bench: setup
	$(PIP) install --disable-pip-version-check -q -r requirements-bench.txt
	$(PY) tools/benchmark.py --task all --device $(DEVICE) --output $(BENCH_OUT)/results.json $(BENCH_ARGS)
	@echo "Results: $(BENCH_OUT)/results.json and $(BENCH_OUT)/results.md"

clean-venv:
	rm -rf $(VENV)
