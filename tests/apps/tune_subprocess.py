"""Run tools/tune.py in a child process on the tiny dataset (a worker of the shared-study test).

Usage: python -m tests.apps.tune_subprocess IMAGE_DIR -- <tune args>
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tools"))

import tune  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402

from tests.conftest import write_tiny_images  # noqa: E402

if __name__ == "__main__":
    image_dir, sep, *argv = sys.argv[1:]
    assert sep == "--"
    dicts = write_tiny_images(image_dir)
    DatasetCatalog.register("cxr_test_tiny", lambda: dicts)
    MetadataCatalog.get("cxr_test_tiny").set(thing_classes=["a", "b"], evaluator_type="coco")
    tune.main(argv)
