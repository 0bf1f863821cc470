#!/usr/bin/env bash
# Two-stage training on the phantom, measured: classifier pre-training on phantom_nih_cls, then
# RetinaNet (phantom/retinanet_demo.yaml) on phantom_nih_train from scratch and from the
# classifier's trunk with the same detection budget, and (RECIPES=1) the same budget with
# Mixup, CutMix, Mosaic and SWA. Prints the classifier's test AUROC table and one AP50 line per
# detection run (phantom_nih_test). A run whose test metrics exist in OUT is not repeated (delete
# OUT to start over). The phantom sets are rendered only when missing: existing ones are kept
# whatever their size (the runs resize to SIZE), and the script says so.
#
#   bash tools/two_stage_phantom.sh                       # defaults below
#   SIZE=160 CLS_ITERS=300 DET_ITERS=300 RECIPES=1 bash tools/two_stage_phantom.sh
set -euo pipefail
# the repository's environment (make setup) unless PY names another interpreter
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
SIZE=${SIZE:-160}            # input side (train and test), pixels
CLS_ITERS=${CLS_ITERS:-300}  # classifier iterations
DET_ITERS=${DET_ITERS:-300}  # detection iterations per run
CLS_IMAGES=${CLS_IMAGES:-3000}
OUT=${OUT:-output/two_stage_phantom}
RECIPES=${RECIPES:-0}
BATCH=${BATCH:-8}             # images per batch (classifier and detectors)
SIZES=(INPUT.MIN_SIZE_TRAIN "($SIZE,)" INPUT.MAX_SIZE_TRAIN "$SIZE" INPUT.MIN_SIZE_TEST "$SIZE"
       INPUT.MAX_SIZE_TEST "$SIZE" SOLVER.IMS_PER_BATCH "$BATCH" DATALOADER.NUM_WORKERS 1 SEED 0)

DATA=${DETECTRON2_DATASETS:-datasets}  # where the data sets are registered from

mkdir -p "$OUT" && rm -f "$OUT/summary.txt"
$PY datasets/prepare_phantom.py --output "$DATA/phantom_nih" --size 512 --seed 0 --negatives 300 \
  --keep-existing
$PY datasets/prepare_phantom.py --classification "$CLS_IMAGES" --output "$DATA/phantom_nih_cls" \
  --size 256 --seed 0 --keep-existing

[ -f "$OUT/classifier/inference/phantom_nih_cls_test/metrics.json" ] ||
$PY tools/train_net.py --config-file configs/phantom/classifier_R_50_slim.yaml "${SIZES[@]}" \
  SOLVER.MAX_ITER "$CLS_ITERS" SOLVER.WARMUP_ITERS 30 SOLVER.CHECKPOINT_PERIOD "$CLS_ITERS" \
  TEST.EVAL_PERIOD 0 TEST.BEST_METRIC "" DATASETS.TEST "('phantom_nih_cls_test',)" \
  CXR.EVAL.BOOTSTRAP 200 OUTPUT_DIR "$OUT/classifier"
cat "$OUT/classifier/inference/phantom_nih_cls_test/per_class.csv"

detect() {  # name, extra KEY VALUE pairs...
  local name=$1; shift
  [ -f "$OUT/$name/inference/phantom_nih_test/metrics.json" ] ||
  $PY tools/train_net.py --config-file configs/phantom/retinanet_demo.yaml "${SIZES[@]}" \
    SOLVER.MAX_ITER "$DET_ITERS" SOLVER.WARMUP_ITERS 30 SOLVER.CHECKPOINT_PERIOD "$DET_ITERS" \
    TEST.EVAL_PERIOD 0 TEST.BEST_METRIC "" DATASETS.TEST "('phantom_nih_test',)" \
    OUTPUT_DIR "$OUT/$name" "$@"
  $PY -c "import json,sys; m=json.load(open(sys.argv[1])); print(sys.argv[2], 'AP50', round(m['coco']['AP50'], 4), 'mAP@0.4', round(m['voc_map40'], 4))" \
    "$OUT/$name/inference/phantom_nih_test/metrics.json" "$name" | tee -a "$OUT/summary.txt"
}
detect scratch
detect two_stage MODEL.TRUNK_WEIGHTS "$OUT/classifier/model_final.pth"
if [ "$RECIPES" = 1 ]; then
  detect mixup INPUT.MIX.MIXUP_PROB 0.5
  detect cutmix INPUT.MIX.CUTMIX_PROB 0.5
  detect mosaic INPUT.MIX.MOSAIC_PROB 0.5
  detect swa SOLVER.SWA.ENABLED True SOLVER.SWA.START 0.5 SOLVER.SWA.PERIOD 10
  $PY -c "import json,sys; m=json.load(open(sys.argv[1])); print('swa (model_swa.pth) AP50', round(m['coco']['AP50'], 4), 'mAP@0.4', round(m['voc_map40'], 4))" \
    "$OUT/swa/inference_swa/phantom_nih_test/metrics.json" | tee -a "$OUT/summary.txt"
fi
cat "$OUT/summary.txt"
