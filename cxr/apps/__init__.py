"""Application layer: what the command-line tools drive.

Checkpoint evaluation and the COCO-JSON file mode (:mod:`.evaluate`, :mod:`.coco_json`),
prediction on image files (:mod:`.predictor`) and the tools' bodies (:mod:`.tools`); models
come from :mod:`cxr.engine.inference`. It imports :mod:`cxr.engine` and
:mod:`cxr.evaluation`; nothing below it imports it.
"""

from .coco_json import dataset_to_coco, export_coco, load_coco_files  # noqa: F401
from .evaluate import evaluate_checkpoints, evaluate_files, find_checkpoints  # noqa: F401
from .paths import check_output_dir, check_predict_output  # noqa: F401
from .predictor import XrayPredictor, predict_files  # noqa: F401
