#!/usr/bin/env python
"""Train (or evaluate, with ``--eval-only``) a cxr model with detectron2's launcher.

Examples::

    python tools/train_net.py --config-file configs/nih/retinanet_R_18_FPN.yaml
    python tools/train_net.py --config-file CFG --resume            # continue from last_checkpoint
    python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS output/.../model_final.pth
    python tools/train_net.py --config-file CFG --num-gpus 8 SOLVER.IMS_PER_BATCH 64
    python tools/train_net.py --config-file configs/nih/efficientdet_d0.py train.max_iter=100

A ``.py`` config is a LazyConfig with ``key=value`` overrides (tools/lazyconfig_train_net.py).

Runs on CPU when CUDA is absent. Logic lives in :mod:`cxr.engine`.
"""
import cxr  # noqa: F401  (registers datasets, models, evaluators; applies compat shims)
from cxr.engine import Trainer, setup
from detectron2.engine import default_argument_parser, launch


def main(args):
    cfg = setup(args)
    if args.eval_only:
        return Trainer.eval_only(cfg, resume=args.resume, allow_pickle=args.allow_pickle)
    trainer = Trainer(cfg)
    trainer.checkpointer.allow_pickle = args.allow_pickle
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def argument_parser():
    parser = default_argument_parser()
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow pickle-based .pkl weights (unpickling can run code: trusted files only)",
    )
    return parser


def cli(argv=None):
    args = argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    cli()
