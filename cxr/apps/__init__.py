"""Application layer: what the command-line tools drive.

Checkpoint evaluation and the COCO-JSON file mode (:mod:`.evaluate`, :mod:`.coco_json`),
prediction on image files (:mod:`.predictor`), building a model from a config and a checkpoint
(:mod:`.model`) and the tools' bodies (:mod:`.tools`). It imports :mod:`cxr.engine` and
:mod:`cxr.evaluation`; nothing below it imports it.
"""

from .coco_json import dataset_to_coco, export_coco, load_coco_files  # noqa: F401
from .evaluate import evaluate_checkpoints, evaluate_files, find_checkpoints  # noqa: F401
from .model import load_inference_model, weights_digest  # noqa: F401
from .paths import check_output_dir, check_predict_output  # noqa: F401
from .predictor import XrayPredictor, predict_files  # noqa: F401
