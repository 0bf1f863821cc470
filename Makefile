# cxr — one-command environment, tests, demo and benchmarks.
#   make setup   create .venv and install everything (idempotent; quick when nothing changed)
#   make test    setup + the test suite
#   make demo    setup + phantom data -> train -> evaluate (docs/demo.md)
#   make bench   setup + benchmarks against the peers (docs/benchmarks.md)
#   make serve   setup + the web app and HTTP API on the demo model (docs/app.md)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.cxr-setup-stamp
PYTEST_ARGS ?=

.PHONY: setup test demo phantom demo-weights bench serve clean-venv

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

# The main job on the embedded default data (tools/demo.py prints each step's command): render
# the phantom set from the shipped NIH boxes (cached), evaluate the shipped phantom-pretrained
# weights (starting figures), train on from them (validating on phantom_nih_val: the best
# checkpoint and its per-class operating points), evaluate that model on phantom_nih_test at
# those operating points (report.html: metrics, plots, galleries of false positives and missed
# lesions), then print the wall time and the report path; output/demo/run.json records time,
# threads, CPU, both AP50s and the operating points.
# FULL=1 trains from scratch, longer, without the shipped weights.
PHANTOM_DIR := datasets/phantom_nih
PHANTOM_ARGS := --output $(PHANTOM_DIR) --size 512 --seed 0 --negatives 300
DEMO_WEIGHTS := datasets/weights/retinanet_demo_phantom.pth
DEMO_OUT := output/demo
FULL ?= 0

phantom: setup
	$(PY) datasets/prepare_phantom.py $(PHANTOM_ARGS)

demo: setup
	$(PY) tools/demo.py --output $(DEMO_OUT) $(if $(filter 1,$(FULL)),--full,)

# Re-creates the shipped phantom-pretrained weights: configs/phantom/retinanet_demo.yaml from
# scratch (2,000 iterations), then 1,000 more from those weights at LR 0.02 (docs/demo.md).
DW := output/demo_weights
demo-weights: phantom
	$(PY) tools/train_net.py --config-file configs/phantom/retinanet_demo.yaml OUTPUT_DIR $(DW)/stage1
	$(PY) tools/export_weights.py $(DW)/stage1/model_final.pth $(DW)/stage1_weights.pth
	$(PY) tools/train_net.py --config-file configs/phantom/retinanet_demo.yaml \
		MODEL.WEIGHTS $(DW)/stage1_weights.pth SOLVER.BASE_LR 0.02 SOLVER.WARMUP_ITERS 50 \
		SOLVER.MAX_ITER 1000 SOLVER.CHECKPOINT_PERIOD 250 TEST.EVAL_PERIOD 0 OUTPUT_DIR $(DW)/stage2
	$(PY) tools/export_weights.py $(DW)/stage2/model_final.pth $(DEMO_WEIGHTS)

# Benchmarks against the peers (effdet's EfficientDet, detectron2's DatasetMapper, pycocotools),
# each comparison in its own process; CPU unless DEVICE=cuda. The code lives in benchmarks/ (not
# installed with cxr; docs/benchmarks.md). Writes output/bench/results.json, results.md (table +
# machine) and details.json (every run). BENCH_ARGS: e.g. --repeats 3
DEVICE ?= cpu
BENCH_OUT := output/bench
BENCH_ARGS ?=

bench: setup
	$(PIP) install --disable-pip-version-check -q -r requirements-bench.txt
	$(PY) tools/benchmark.py --task all --device $(DEVICE) --output $(BENCH_OUT)/results.json $(BENCH_ARGS)
	@echo "Results: $(BENCH_OUT)/results.json and $(BENCH_OUT)/results.md"

# The web app and HTTP API (docs/app.md) on the shipped demo model, exported to ONNX the first
# time (output/serve/model.onnx); then tools/serve.py on http://127.0.0.1:$(PORT)/.
# SERVE_ARGS: more tools/serve.py flags, e.g. --token-file token.txt
SERVE_MODEL := output/serve/model.onnx
PORT ?= 8000
SERVE_ARGS ?=
NIH_CLASSES := Atelectasis,Cardiomegaly,Effusion,Infiltrate,Mass,Nodule,Pneumonia,Pneumothorax

$(SERVE_MODEL): $(DEMO_WEIGHTS) configs/phantom/retinanet_demo.yaml | setup
	$(PY) tools/export.py --config-file configs/phantom/retinanet_demo.yaml \
		--checkpoint $(DEMO_WEIGHTS) --classes $(NIH_CLASSES) --output $(dir $(SERVE_MODEL)) \
		MODEL.DEVICE cpu

serve: setup $(SERVE_MODEL)
	$(PY) tools/serve.py --checkpoint $(SERVE_MODEL) --port $(PORT) $(SERVE_ARGS)

clean-venv:
	rm -rf $(VENV)
