"""The sub-commands of ``tools/convert_weights.py``: read a source, convert, write, report."""
from __future__ import annotations

import argparse
import logging
import os

from ..modeling.backbone.timm_trunk import fetch_timm_state_dict, load_state_dict_file
from ..torch_io import load_weights_only
from .common import ConversionReport, check_against_model, write_checkpoint, write_config
from .effdet import EFFDET_ARCHS, convert_effdet_state, effdet_config_body, effdet_reference_state
from .resnet import convert_torchvision_resnet
from .torchxrayvision import convert_xrv_state, load_xrv_model

__all__ = ["add_subcommands"]

logger = logging.getLogger(__name__)


def _report(report: ConversionReport, output: str) -> None:
    print(report.summary())
    print(f"wrote {output}")


def _effdet(args: argparse.Namespace) -> None:
    arch = EFFDET_ARCHS[args.arch]
    state = load_weights_only(args.input, error=ValueError)
    converted, report = convert_effdet_state(state, num_classes=args.num_classes)
    num_classes = converted["head.cls_score.1.weight"].shape[0] // (
        converted["head.bbox_pred.1.weight"].shape[0] // 4
    )
    base = args.base or os.path.join(args.configs, "nih", arch.zoo_config)
    reference = effdet_reference_state(args.arch, num_classes, base)
    check_against_model(converted, reference, args.arch)  # before anything is written
    meta = {"source": os.path.basename(args.input), "arch": args.arch, "converter": "effdet"}
    write_checkpoint(args.output, converted, meta)
    yaml_path = os.path.splitext(args.output)[0] + ".yaml"
    write_config(yaml_path, base, args.output, effdet_config_body(args.arch, num_classes),
                 f"{args.arch} converted from effdet ({os.path.basename(args.input)})")  # fmt: skip
    _report(report, args.output)
    print(f"wrote {yaml_path} (run it with --config-file {yaml_path})")


def _torchvision(args: argparse.Namespace) -> None:
    converted, report = convert_torchvision_resnet(load_state_dict_file(args.input))
    write_checkpoint(args.output, converted, {"source": os.path.basename(args.input)})
    _report(report, args.output)


def _torchxrayvision(args: argparse.Namespace) -> None:
    model = load_xrv_model(args.weights, args.cache_dir)
    converted, report = convert_xrv_state(args.weights, model.state_dict())
    write_checkpoint(args.output, converted, {"source": f"torchxrayvision:{args.weights}"})
    _report(report, args.output)


def _timm(args: argparse.Namespace) -> None:
    state = fetch_timm_state_dict(args.name)
    write_checkpoint(args.output, state, {"source": f"timm:{args.name}"})
    _report(ConversionReport(kept=sorted(state)), args.output)


def add_subcommands(parser: argparse.ArgumentParser, configs_dir: str) -> None:
    """Add the effdet / torchvision / torchxrayvision / timm sub-commands to ``parser``.

    Args:
        parser: the tool's parser; each sub-command sets ``args.func``.
        configs_dir: the repository's ``configs/`` folder (zoo configs for ``_BASE_``).
    """
    sub = parser.add_subparsers(dest="source", required=True)
    p = sub.add_parser("effdet", help="effdet EfficientDet .pth -> cxr checkpoint + config")
    p.add_argument("--arch", required=True, choices=sorted(EFFDET_ARCHS))
    p.add_argument("--input", required=True, help="effdet state dict (.pth)")
    p.add_argument("--output", required=True, help="cxr checkpoint (.pth); OUT.yaml beside it")
    p.add_argument("--num-classes", type=int, help="class count (default: the source's)")
    p.add_argument("--base", default="", help="zoo config to extend (default: configs/nih/...)")
    p.set_defaults(func=_effdet, configs=configs_dir)

    p = sub.add_parser("torchvision", help="torchvision ResNet .pth -> detectron2 ResNet trunk")
    p.add_argument("--input", required=True, help="torchvision ResNet state dict (.pth)")
    p.add_argument("--output", required=True)
    p.set_defaults(func=_torchvision)

    p = sub.add_parser("torchxrayvision", help="torchxrayvision weights -> cxr trunk")
    p.add_argument("--weights", required=True, help="e.g. densenet121-res224-all")
    p.add_argument("--output", required=True)
    p.add_argument("--cache-dir", default=None, help="torchxrayvision's weights folder")
    p.set_defaults(func=_torchxrayvision)

    p = sub.add_parser("timm", help="fetch a timm model's pretrained weights into a .pth")
    p.add_argument("--name", required=True, help="timm model name, e.g. densenet121")
    p.add_argument("--output", required=True)
    p.set_defaults(func=_timm)
