"""Run tools/train_net.py in a child process on the tiny dataset (used by the SIGKILL tests).

Usage: python -m tests.engine.train_subprocess IMAGE_DIR -- <train_net args>
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tools"))

import train_net  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402

from tests.conftest import write_tiny_images  # noqa: E402


def tiny_child_args(argv: list[str]) -> list[str]:
    """Register the tiny dataset in this child from ``IMAGE_DIR -- <tool args>``; returns the
    tool's arguments."""
    image_dir, sep, *tool_argv = argv
    assert sep == "--"
    dicts = write_tiny_images(image_dir)
    DatasetCatalog.register("cxr_test_tiny", lambda: dicts)
    MetadataCatalog.get("cxr_test_tiny").set(thing_classes=["a", "b"], evaluator_type="coco")
    return tool_argv


if __name__ == "__main__":
    train_net.cli(tiny_child_args(sys.argv[1:]))
