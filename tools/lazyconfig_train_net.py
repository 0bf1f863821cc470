#!/usr/bin/env python
"""Train (or evaluate) a cxr model from a LazyConfig ``.py`` file, detectron2's convention.

Examples::

    python tools/lazyconfig_train_net.py --config-file configs/phantom/retinanet_demo.py
    python tools/lazyconfig_train_net.py --config-file configs/nih/efficientdet_d0.py \\
        train.max_iter=20000 optimizer.lr=0.02 'dataloader.train.dataset.names=[nih_bbox_train]'
    python tools/lazyconfig_train_net.py --config-file CFG.py --resume
    python tools/lazyconfig_train_net.py --config-file CFG.py --eval-only \\
        train.init_checkpoint=output/demo/model_final.pth

Overrides are ``key=value`` (Hydra's override grammar). The file's values become the CfgNode of
the same Trainer as ``tools/train_net.py`` (EMA, SWA, best checkpoint, cxr evaluators,
TensorBoard, validation loss, exact resume; see :mod:`cxr.engine.lazy`); the resolved LazyConfig
is saved as ``OUTPUT_DIR/config.yaml``, which ``--config-file`` takes back.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from train_net import argument_parser, cli, main  # noqa: E402,F401  (one training path)

if __name__ == "__main__":
    cli()
